"""Doctor checks of what the report sinks and Config mode rely on, each only when its
setting is present: Config lists IMS images under the type imsguard reports, each SMN topic
exists, Cloud Eye answers for imsguard's namespace, the OBS bucket exists.

They read, with the credentials of whoever runs doctor, and never write: no publish, no
metric, no object. So none can prove that the function's agency may publish, post or put
(only a write would): where that is what is left to know, the result says so and names
where to look."""

from __future__ import annotations

from http.client import HTTPException
from typing import TYPE_CHECKING, Any

import requests
from huaweicloudsdkces.v1 import CesClient, ListMetricsRequest
from huaweicloudsdkces.v1.region.ces_region import CesRegion
from huaweicloudsdkcore.exceptions.exceptions import SdkException, ServiceResponseException
from huaweicloudsdksmn.v2 import ListTopicAttributesRequest, SmnClient
from huaweicloudsdksmn.v2.region.smn_region import SmnRegion

from imsguard.events import CONFIG_IMAGE_PROVIDER, CONFIG_IMAGE_TYPE
from imsguard.logs import redact
from imsguard.permissions import CREATE_METRIC_DATA, PUBLISH_MESSAGE, PUT_OBJECT, Permission
from imsguard.selfcheck import Check, CheckResult, verdict
from imsguard.settings import CONFIG_RULES, METRICS, NOTIFY_TOPIC_URN, REPORT_BUCKET
from imsguard.sinks import SinkError
from imsguard.sinks.ces import NAMESPACE
from imsguard.sinks.sdk import build_client
from imsguard_tools.deploy import ConfigRules, DeployError, build_config_client
from imsguard_tools.doctor import CheckNotRun

if TYPE_CHECKING:
    from imsguard.settings import Settings
    from imsguard_tools.doctor import Probe
    from imsguard_tools.doctor_fake import FakeCloud

# The reads these checks make (doctor's, with the caller's credentials; not the agency's).
LIST_PROVIDERS = Permission(
    "GET /v1/resource-manager/domains/{domain_id}/providers",
    None,
    "Config API reference, permissions policies and supported actions, resource query "
    '(rms_05_0200, Open Telekom Cloud edition): ListProviders "Not required"',
    CONFIG_RULES,
)
LIST_TOPIC_ATTRIBUTES = Permission(
    "GET /v2/{project_id}/notifications/topics/{topic_urn}/attributes",
    "smn:topic:listAttributes",
    "SMN API reference, Querying a Topic Policy (ListTopicAttributes), authorization "
    "information: smn:topic:listAttributes, alias smn:topic:list "
    "(support.huaweicloud.com/intl/en-us/api-smn/ListTopicAttributes.html)",
    NOTIFY_TOPIC_URN,
)
LIST_METRICS = Permission(
    "GET /V1.0/{project_id}/metrics",
    "ces:metrics:list",
    "Cloud Eye API reference, Querying Metrics (ListMetrics), authorization information "
    "(support.huaweicloud.com/intl/en-us/api-ces/ces_03_0023.html)",
    METRICS,
)
HEAD_BUCKET = Permission(
    "HEAD /{bucket}",
    "obs:bucket:HeadBucket",
    "OBS SDK for Python developer guide, Checking Whether a Bucket Exists, restrictions: "
    '"obs:bucket:HeadBucket in IAM or HeadBucket in a bucket policy" '
    "(support.huaweicloud.com/intl/tr-tr/sdk-python-devg-obs/obs_22_0803.html)",
    REPORT_BUCKET,
)
AGENCY_PAGE = "the IAM console, Agencies, the function's agency (imsguard iam-policy prints it)"


def unwritten(action: str | None, what: str) -> str:
    """Why a read leaves the function's own write unconfirmed, and where to look instead."""
    return (
        f"the function's agency needs {action} to {what}, which is unconfirmed here (only a "
        f"write would prove it, and doctor writes nothing): look at {AGENCY_PAGE}"
    )


def answered(status: int, *words: str | None) -> str:
    """A service's answer in one line: its status, code and message (secrets redacted)."""
    return redact(" ".join(["HTTP", str(status), *(w for w in words if w)]))


def sdk_answer(
    check: Check, service: str, call: str, exc: Exception, action: str, write: str
) -> CheckResult:
    """What one failed SDK call says: a refusal (fail: the credentials, or the action to
    allow), an outage or no answer (unknown), anything else (fail, as the service said)."""
    if not isinstance(exc, ServiceResponseException):
        return check.unknown(
            f"{service} could not be reached ({call}): {type(exc).__name__}; {write}"
        )
    said = answered(exc.status_code, exc.error_code, exc.error_msg)
    fix = f"allow {action} to who runs doctor"
    return verdict(check, service, call, exc.status_code, said, fix, write)


def fake_settings(cloud: FakeCloud) -> Settings:
    """The settings doctor --fake's probe reads: the deployed template's, in the fake."""
    from imsguard_tools.doctor import probe_for
    from imsguard_tools.doctor_fake import CREDENTIALS, PROJECT_ID

    return probe_for(
        cloud.template, cloud.region, 1.0, CREDENTIALS, PROJECT_ID, cloud.endpoints
    ).settings


class ConfigResourceType(Check):
    """Config lists IMS images (provider ``ims``) under every type imsguard's states name:
    each template rule's ``resource_type``, else ``images`` (events.CONFIG_IMAGE_TYPE). It
    reads what ``imsguard deploy`` reads (ConfigRules.image_types)."""

    name = "config-resource-type"
    needs = (LIST_PROVIDERS,)

    @staticmethod
    def applies(probe: Probe) -> bool:
        return probe.settings.config_rules or bool(probe.template and probe.template.config_rules)

    @staticmethod
    def wanted(template: Any) -> list[str]:
        """The types imsguard's states name: its rules', else the default one."""
        rules = template.config_rules if template is not None else []
        return sorted({rule.image_type for rule in rules} or {CONFIG_IMAGE_TYPE})

    def run(self, probe: Probe) -> CheckResult:
        credentials = probe.need()
        if not probe.domain_id:
            raise CheckNotRun("no account (domain) id: set IMSGUARD_DOMAIN_ID (Config is global)")
        client = build_config_client(
            probe.domain_id, probe.settings.config_endpoint, credentials, probe.timeouts()
        )
        try:
            listed = ConfigRules.image_types(client)
        except DeployError as exc:
            return self.refused(exc)
        if listed is None:
            return self.fail(
                f"Config's providers list has no {CONFIG_IMAGE_PROVIDER} service: it records "
                "no IMS images here, so it would take no state imsguard sends",
                f"set {CONFIG_RULES} to false and remove config_rules (the CTS trigger and "
                "the sweep still govern the images)",
            )
        wanted = self.wanted(probe.template)
        missing = [kind for kind in wanted if kind not in listed]
        if missing:
            return self.fail(
                f"Config lists no {CONFIG_IMAGE_PROVIDER}/{', '.join(missing)} (its "
                f"{CONFIG_IMAGE_PROVIDER} types: {', '.join(sorted(listed)) or 'none'})",
                "set each Config rule's resource_type in template.yaml to a type Config "
                "lists, and run imsguard deploy",
            )
        untracked = [kind for kind in wanted if listed[kind] not in (None, "tracked")]
        if untracked:
            return self.unknown(
                f"Config lists {CONFIG_IMAGE_PROVIDER}/{', '.join(untracked)} but does not "
                f"record it by default (track: {listed[untracked[0]]}); whether your resource "
                "recorder does is not read here: look at the Config console, Resource Recorder"
            )
        return self.ok()

    def refused(self, exc: DeployError) -> CheckResult:
        """Config's failure to list, by the one rule (selfcheck.verdict)."""
        fix = (
            "Config's permissions table names no action for ListProviders: check that "
            "IMSGUARD_DOMAIN_ID is the account of these credentials and that their user may "
            "use Config (the IAM console, the user's groups)"
        )
        return verdict(self, "Config", "ListProviders", exc.status, str(exc), fix)

    @classmethod
    def fake_setup(cls, cloud: FakeCloud) -> None:
        """A fake Config listing the types the deployed template reports, tracked."""
        from imsguard_tools.doctor_fake import DOMAIN_ID
        from imsguard_tools.fake_config import FakeConfig

        types = [{"name": kind, "track": "tracked"} for kind in cls.wanted(cloud.template)]
        providers = [{"provider": CONFIG_IMAGE_PROVIDER, "resource_types": types}]
        config = cloud.attach("config", FakeConfig(DOMAIN_ID, providers=providers))
        cloud.endpoints["IMSGUARD_CONFIG_ENDPOINT"] = config.endpoint

    @staticmethod
    def refuse(cloud: FakeCloud) -> None:
        """Config's "Access denied." (RMS.00010006, its error code table)."""
        cloud.others["config"].refuse("GET", r"/providers$", 403, "RMS.00010006")


class SmnTopic(Check):
    """Each topic imsguard publishes to (IMSGUARD_NOTIFY_TOPIC_URN, and each route's in
    IMSGUARD_NOTIFY_ROUTES) exists and can be read (ListTopicAttributes)."""

    name = "smn-topic"
    needs = (LIST_TOPIC_ATTRIBUTES,)
    allow = f"{LIST_TOPIC_ATTRIBUTES.action} (alias smn:topic:list)"

    @staticmethod
    def applies(probe: Probe) -> bool:
        return bool(probe.settings.notify_topic_urn)

    @staticmethod
    def topics(settings: Settings) -> list[str]:
        named = [settings.notify_topic_urn, *(urn for _, urn in settings.notify_routes)]
        return list(dict.fromkeys(urn for urn in named if urn))

    def run(self, probe: Probe) -> CheckResult:
        credentials = probe.need()
        assert probe.project_id is not None
        write = unwritten(PUBLISH_MESSAGE.action, "publish to them")
        missing: list[str] = []
        others: list[CheckResult] = []
        for topic in self.topics(probe.settings):
            try:
                client = build_client(
                    SmnClient,
                    SmnRegion,
                    probe.region,
                    probe.settings.smn_endpoint,
                    probe.project_id,
                    credentials,
                    probe.timeouts(),
                )
                client.list_topic_attributes(
                    ListTopicAttributesRequest(topic_urn=topic, name="access_policy")
                )
            except SinkError as exc:
                return self.fail(str(exc), "set IMSGUARD_SMN_ENDPOINT")
            except (SdkException, requests.RequestException) as exc:
                if isinstance(exc, ServiceResponseException) and exc.status_code == 404:
                    missing.append(topic)
                else:
                    call = f"ListTopicAttributes of {topic}"
                    others.append(sdk_answer(self, "SMN", call, exc, self.allow, write))
        if missing:
            return self.fail(
                f"SMN has no topic {', '.join(missing)} in this region and project",
                "create it in the SMN console, or fix IMSGUARD_NOTIFY_TOPIC_URN or "
                "IMSGUARD_NOTIFY_ROUTES",
            )
        if others:  # a failure before an outage; the first of them, and how many more
            first = min(others, key=lambda r: r.status != "fail")
            more = f" (and {len(others) - 1} more topic(s))" if len(others) > 1 else ""
            return first._replace(reason=f"{first.reason}{more}")
        return self.ok()

    @staticmethod
    def fake_setup(cloud: FakeCloud) -> None:
        """A fake SMN holding the deployed template's topics."""
        from imsguard_tools.doctor_fake import PROJECT_ID
        from imsguard_tools.fake_smn import FakeSmn

        topics = tuple(SmnTopic.topics(fake_settings(cloud)))
        smn = cloud.attach("smn", FakeSmn(PROJECT_ID, cloud.region, topics))
        cloud.endpoints["IMSGUARD_SMN_ENDPOINT"] = smn.endpoint

    @staticmethod
    def refuse(cloud: FakeCloud) -> None:
        """The fake SMN's 403 (its code: assumption)."""
        cloud.others["smn"].refuse("GET", r"/attributes$", 403, "SMN.00011403")


class CesNamespace(Check):
    """Cloud Eye answers ListMetrics for imsguard's namespace (IMSGUARD.Images); a
    namespace with no metrics yet is what a deployment has before its first post."""

    name = "ces-namespace"
    needs = (LIST_METRICS,)

    @staticmethod
    def applies(probe: Probe) -> bool:
        return probe.settings.metrics

    def run(self, probe: Probe) -> CheckResult:
        credentials = probe.need()
        assert probe.project_id is not None
        write = (
            unwritten(f"{CREATE_METRIC_DATA.action} (its name unconfirmed)", f"post to {NAMESPACE}")
            + "; after the first invocation its metrics show in the Cloud Eye console, "
            "Custom Monitoring"
        )
        try:
            client = build_client(
                CesClient,
                CesRegion,
                probe.region,
                probe.settings.ces_endpoint,
                probe.project_id,
                credentials,
                probe.timeouts(),
            )
            client.list_metrics(ListMetricsRequest(namespace=NAMESPACE, limit=1))
        except SinkError as exc:
            return self.fail(str(exc), "set IMSGUARD_CES_ENDPOINT")
        except (SdkException, requests.RequestException) as exc:
            call = f"ListMetrics of {NAMESPACE}"
            return sdk_answer(self, "Cloud Eye", call, exc, str(LIST_METRICS.action), write)
        return self.ok()

    @staticmethod
    def fake_setup(cloud: FakeCloud) -> None:
        """A fake Cloud Eye, with no metrics yet (as before the first post)."""
        from imsguard_tools.doctor_fake import PROJECT_ID
        from imsguard_tools.fake_ces import FakeCes

        ces = cloud.attach("ces", FakeCes(PROJECT_ID, cloud.region))
        cloud.endpoints["IMSGUARD_CES_ENDPOINT"] = ces.endpoint

    @staticmethod
    def refuse(cloud: FakeCloud) -> None:
        """The fake Cloud Eye's 403 (its code: assumption)."""
        cloud.others["ces"].refuse("GET", r"/metrics$", 403, "ces.0403")


class ObsBucket(Check):
    """The report bucket (IMSGUARD_REPORT_BUCKET) exists and these credentials reach it
    (HEAD bucket, with the OBS SDK client the function writes with)."""

    name = "obs-bucket"
    needs = (HEAD_BUCKET,)

    @staticmethod
    def applies(probe: Probe) -> bool:
        return bool(probe.settings.report_bucket)

    def run(self, probe: Probe) -> CheckResult:
        from imsguard.sinks.obs import obs_client  # loads the OBS SDK

        credentials = probe.need()
        bucket = probe.settings.report_bucket or ""
        write = (
            unwritten(PUT_OBJECT.action, f"write reports to {bucket}")
            + ", and the bucket's policy in the OBS console (the bucket, Permissions)"
        )
        connect, read = probe.timeouts()
        client = obs_client(probe.settings.obs_endpoint or "", credentials, (connect + read) / 2)
        try:
            answer = client.headBucket(bucket)
        except (OSError, HTTPException) as exc:
            return self.unknown(
                f"OBS could not be reached (HEAD bucket {bucket}): {type(exc).__name__}; {write}"
            )
        finally:
            client.close()
        status = int(answer.status or 0)
        if status < 300:
            return self.ok()
        code = answer.errorCode or ""
        said = answered(status, code, answer.errorMessage or answer.reason)
        if status == 404:
            return self.fail(
                f"OBS has no bucket {bucket} ({said})",
                f"create it in the OBS console, or fix {REPORT_BUCKET} (and "
                "IMSGUARD_OBS_ENDPOINT: the bucket's region)",
            )
        fix = (
            f"allow {HEAD_BUCKET.action} on it to who runs doctor (in IAM, or HeadBucket in the "
            "bucket policy), or check that these credentials are the bucket owner's account"
        )
        known = None if code == "RequestTimeout" else status  # a stalled request: no answer
        return verdict(self, "OBS", f"HEAD bucket {bucket}", known, said, fix, write)

    @staticmethod
    def fake_setup(cloud: FakeCloud) -> None:
        """The deployed template's bucket, in the fake OBS."""
        bucket = fake_settings(cloud).report_bucket
        if bucket:
            cloud.obs.buckets.add(bucket)

    @staticmethod
    def refuse(cloud: FakeCloud) -> None:
        """OBS's 403 AccessDenied to every HEAD of a bucket."""
        cloud.obs.refuse("HEAD", r"^/[^/]+/$", 403)


SINK_CHECKS: tuple[type[Check], ...] = (ConfigResourceType, SmnTopic, CesNamespace, ObsBucket)
