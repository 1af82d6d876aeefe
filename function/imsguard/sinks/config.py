"""Config custom-rule mode: each image's compliance, as found before any fix, reported to
Config with UpdatePolicyState (one call per image).

Loaded, with the Config SDK, only for a Config evaluation event: an ordinary CTS event
imports neither. :class:`ConfigStates` is handed every evaluation as it happens (the event
check's and the sweep's ``observe`` hook), so an image that imsguard then fixes is still
reported ``NonCompliant``: the fix triggers Config's next evaluation, which records
``Compliant``. A rule that fixed silently would hide the violation, and could loop.

A failing UpdatePolicyState never changes what happened to images: it is logged and
reported under the report's ``sinks.config``. For a ``resource`` evaluation a transient
failure (HTTP 429 or 5xx, no answer) also sets ``retry``: the handler then raises for
FunctionGraph to retry the event (imsguard is idempotent; a lost state is worse than a
retry). A ``period`` evaluation is not retried (the retry would sweep again, and start
continuations twice): Config's next period reports the images again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import requests
from huaweicloudsdkconfig.v1 import (
    ConfigClient,
    PolicyResource,
    PolicyStateRequestBody,
    UpdatePolicyStateRequest,
)
from huaweicloudsdkcore.auth.credentials import GlobalCredentials
from huaweicloudsdkcore.exceptions.exceptions import SdkException
from huaweicloudsdkcore.http.http_config import HttpConfig

from imsguard.logs import RedactingFilter, log, redact
from imsguard.permissions import UPDATE_POLICY_STATE, requires
from imsguard.sinks import SinkError, call_timeouts

if TYPE_CHECKING:
    from imsguard.clock import Budget
    from imsguard.context import Credentials
    from imsguard.evaluate import Decision
    from imsguard.events import ConfigEvaluation
    from imsguard.policy import Policy

logging.getLogger("HuaweiCloud-SDK-ConfigClient").addFilter(RedactingFilter())

DEFAULT_ENDPOINT = "https://rms.myhuaweicloud.com"  # Config is global
# What an image is called in states of a periodic evaluation (whose event names no image):
# TMS's names; Config's own are unconfirmed (README, Assumptions).
IMAGE_PROVIDER = "ims"
IMAGE_TYPE = "private_image"
COMPLIANT, NON_COMPLIANT = "Compliant", "NonCompliant"
# Verdicts that make an image non-compliant: a violation (fixable or not, enforce or audit
# mode) and a rule that could not decide (a person should look).
FAILING = frozenset({"violation", "error"})


def compliance(decision: Decision, rule: str | None) -> str:
    """The image's state as found: NonCompliant when the deciding rules (``rule`` alone, or
    every rule) have a violation or an error; out of scope and exempt images are Compliant."""
    if decision.scope != "in_scope":
        return COMPLIANT
    deciding = [v for v in decision.verdicts if rule is None or v.rule == rule]
    return NON_COMPLIANT if any(v.status in FAILING for v in deciding) else COMPLIANT


class ConfigStates:
    """Collects each evaluated image's state (``observe``), then reports them (``finish``)."""

    def __init__(self, evaluation: ConfigEvaluation, policy: Policy, region: str | None):
        self.evaluation = evaluation
        self.region = region
        self.states: dict[str, tuple[dict[str, Any], str]] = {}  # by image id, in order
        names = [rule.name for rule in policy.rules]
        self.problem = (
            f"rule_parameter names the rule {evaluation.rule!r}, which the policy does not "
            f"have (it has {', '.join(names) or 'no rules'}); no state was reported"
            if evaluation.rule is not None and evaluation.rule not in names
            else None
        )

    def observe(self, image: dict[str, Any], decision: Decision) -> None:
        """One image's evaluation, before anything is sent to IMS."""
        if self.problem is None:
            self.states[decision.image_id] = (
                self._resource(image),
                compliance(decision, self.evaluation.rule),
            )

    def _resource(self, image: dict[str, Any]) -> dict[str, Any]:
        """The policy_resource: the event's own values for a resource evaluation."""
        evaluation = self.evaluation
        event = evaluation.resource
        if event is not None and event.get("id") == image["id"]:
            return {
                "resource_id": event["id"],
                "resource_name": event.get("name"),
                "resource_provider": event.get("provider"),
                "resource_type": event.get("type"),
                "region_id": event.get("region_id"),
                "domain_id": evaluation.domain_id,
            }
        return {
            "resource_id": image["id"],
            "resource_name": image.get("name"),
            "resource_provider": IMAGE_PROVIDER,
            "resource_type": IMAGE_TYPE,
            "region_id": self.region,
            "domain_id": evaluation.domain_id,
        }

    def body(self, resource: dict[str, Any], state: str) -> dict[str, Any]:
        """UpdatePolicyState's body for one image (the event's values echoed)."""
        evaluation = self.evaluation
        return {
            "policy_resource": resource,
            "trigger_type": evaluation.trigger_type,
            "compliance_state": state,
            "policy_assignment_id": evaluation.policy_assignment_id,
            "policy_assignment_name": evaluation.policy_assignment_name,
            "evaluation_time": evaluation.evaluation_time,
            "evaluation_hash": evaluation.evaluation_hash,
        }

    def finish(
        self, credentials: Credentials, endpoint: str | None, budget: Budget
    ) -> dict[str, Any]:
        """Send every state; what was reported, what failed, and whether to retry."""
        outcome: dict[str, Any] = {
            "policy_assignment_id": self.evaluation.policy_assignment_id,
            "trigger_type": self.evaluation.trigger_type,
            "rule": self.evaluation.rule,
            "reported": 0,
            "states": {},
        }
        if self.problem is not None:
            log(logging.ERROR, "Config states not reported", reason=self.problem)
            return {**outcome, "error": self.problem}
        failed: list[dict[str, str]] = []
        transient = False
        client: ConfigClient | None = None
        limit = 0.0  # the longest a call of ``client`` may take
        for index, (image_id, (resource, state)) in enumerate(self.states.items()):
            try:
                left = budget.time_left()
                if client is None or (left is not None and left < limit + 1):
                    # a new client whose calls fit in what is left of the invocation
                    timeout = call_timeouts(left)
                    client = _client(credentials, self.evaluation.domain_id, endpoint, timeout)
                    limit = sum(timeout)
                update_policy_state(client, self.evaluation.domain_id, self.body(resource, state))
            except _Failure as exc:
                transient = transient or exc.transient
                failed.append({"image_id": image_id, "error": str(exc)})
                continue
            except SinkError as exc:  # out of time: the rest are not sent either
                unsent = list(self.states)[index:]
                failed.extend({"image_id": i, "error": str(exc)} for i in unsent)
                transient = True
                break
            outcome["reported"] += 1
            outcome["states"][image_id] = state
        if failed:
            log(logging.ERROR, "Config states not reported", images=len(failed))
            outcome["failed"] = failed
            # A resource evaluation is retried by FunctionGraph; a period one waits for
            # Config's next period.
            outcome["retry"] = transient and self.evaluation.trigger_type == "resource"
        return outcome


class _Failure(Exception):
    """UpdatePolicyState failed; ``transient`` when a retry may succeed."""

    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


def _client(
    credentials: Credentials,
    domain_id: str,
    endpoint: str | None,
    timeout: tuple[float, float],
) -> ConfigClient:
    """A Config client with the invocation's credentials and the event's domain id (global
    credentials: no IAM look-up), no retries of the SDK's own."""
    basic = GlobalCredentials(credentials.access_key, credentials.secret_key, domain_id)
    if credentials.security_token:
        basic = basic.with_security_token(credentials.security_token)
    config = HttpConfig.get_default_config()
    config.timeout = timeout
    config.retry_times = 0
    return (
        ConfigClient.new_builder()
        .with_credentials(basic)
        .with_http_config(config)
        .with_endpoints([endpoint or DEFAULT_ENDPOINT])
        .build()
    )


@requires(UPDATE_POLICY_STATE)
def update_policy_state(client: ConfigClient, domain_id: str, body: dict[str, Any]) -> None:
    """``PUT /v1/resource-manager/domains/{domain_id}/policy-states`` (the domain comes from
    the client's global credentials)."""
    request = UpdatePolicyStateRequest(
        body=PolicyStateRequestBody(
            **{**body, "policy_resource": PolicyResource(**body["policy_resource"])}
        )
    )
    try:
        client.update_policy_state(request)
    except SdkException as exc:
        status = getattr(exc, "status_code", None)
        code = getattr(exc, "error_code", None) or ""
        message = getattr(exc, "error_msg", None) or type(exc).__name__
        transient = status is None or status == 429 or status >= 500
        raise _Failure(
            redact(f"Config refused the state: HTTP {status} {code} {message}"), transient
        ) from None
    except requests.RequestException as exc:
        raise _Failure(f"Config could not be reached: {type(exc).__name__}", True) from None
