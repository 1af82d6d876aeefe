"""Doctor checks of what the function relies on around it, each read-only: a CTS tracker is
enabled in its region (CTS records no operation, so delivers nothing to the CTS trigger,
without one), and its agency holds the actions ``imsguard iam-policy`` prints, as far as IAM
lets the caller read the agency's permissions."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from huaweicloudsdkcore.exceptions.exceptions import SdkException
from huaweicloudsdkcts.v3 import CtsClient, ListTrackersRequest
from huaweicloudsdkcts.v3.region.cts_region import CtsRegion
from huaweicloudsdkiam.v3 import (
    IamClient,
    KeystoneShowPermissionRequest,
    ListAgenciesRequest,
    ListAllProjectsPermissionsForAgencyRequest,
    ListDomainPermissionsForAgencyRequest,
    ListProjectPermissionsForAgencyRequest,
)

from imsguard.clients import client_builder
from imsguard.logs import RedactingFilter, redact
from imsguard.permissions import Permission
from imsguard.selfcheck import Check, CheckResult, verdict
from imsguard.settings import IAM_ENDPOINT, IAM_GLOBAL_ENDPOINT
from imsguard_tools.doctor import CheckNotRun

if TYPE_CHECKING:
    from imsguard_tools.doctor import Probe
    from imsguard_tools.doctor_fake import FakeCloud
    from imsguard_tools.template import Template

for _name in ("CtsClient", "IamClient"):
    logging.getLogger(f"HuaweiCloud-SDK-{_name}").addHandler(logging.NullHandler())
    logging.getLogger(f"HuaweiCloud-SDK-{_name}").addFilter(RedactingFilter())

# Only the tools call CTS, so its endpoint override is no function setting.
CTS_ENDPOINT = "IMSGUARD_CTS_ENDPOINT"
TRACKER_PAGE = "the CTS console's Tracker List page (Cloud Trace Service > Tracker List)"
LIST_TRACKERS = Permission(
    "GET /v3/{project_id}/trackers",
    "cts:tracker:list",
    "CTS API reference, Querying a Tracker (ListTrackers), authorization information "
    "(support.huaweicloud.com/intl/en-us/api-cts/cts_api_0323.html)",
)

# IAM's reads of an agency (the caller's, not the function's). The actions table's rows for
# the domain, all-projects and role reads were not read whole: those actions are unconfirmed.
IAM_ACTIONS = "IAM API reference, permissions and supported actions, agency management"
LIST_AGENCIES = Permission(
    "GET /v3.0/OS-AGENCY/agencies", "iam:agencies:listAgencies", f"{IAM_ACTIONS} (ListAgencies)"
)
LIST_PROJECT_ROLES = Permission(
    "GET /v3.0/OS-AGENCY/projects/{project_id}/agencies/{agency_id}/roles",
    "iam:permissions:listRolesForAgencyOnProject",
    f"{IAM_ACTIONS} (ListProjectPermissionsForAgency)",
)
LIST_DOMAIN_ROLES = Permission(
    "GET /v3.0/OS-AGENCY/domains/{domain_id}/agencies/{agency_id}/roles",
    None,
    f"{IAM_ACTIONS} (ListDomainPermissionsForAgency: its row not read)",
    unconfirmed="iam:permissions:listRolesForAgencyOnDomain",
)
LIST_ALL_PROJECTS_ROLES = Permission(
    "GET /v3.0/OS-INHERIT/domains/{domain_id}/agencies/{agency_id}/roles/inherited_to_projects",
    None,
    f"{IAM_ACTIONS} (ListAllProjectsPermissionsForAgency: its row not read)",
    unconfirmed="iam:permissions:listRolesForAgency",
)
SHOW_PERMISSION = Permission(
    "GET /v3/roles/{role_id}",
    None,
    "IAM API reference, permissions and supported actions, permissions management "
    "(KeystoneShowPermission: its row not read)",
    unconfirmed="iam:roles:getRole",
)


def _said(exc: SdkException) -> tuple[int | None, str]:
    """The HTTP status of an SDK failure (None: no answer) and how to say it."""
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "error_msg", None) or str(exc)
    if status is None:
        return None, redact(f"{type(exc).__name__}: {message}")
    return status, redact(f"HTTP {status} {getattr(exc, 'error_code', '') or ''}: {message}")


class CtsTracker(Check):
    """A system (management) tracker is enabled in the function's region: CTS records the
    image operations, and so delivers them to the CTS trigger, only with one."""

    name = "cts-tracker"
    needs = (LIST_TRACKERS,)

    @classmethod
    def applies(cls, probe: Probe) -> bool:
        return probe.template is None or any(t.type == "CTS" for t in probe.template.triggers)

    @staticmethod
    def fake_setup(cloud: FakeCloud) -> None:
        from imsguard_tools.fake_cts import FakeCts

        fake = cloud.attach("cts", FakeCts(cloud.ims.project_id, cloud.region))
        cloud.endpoints[CTS_ENDPOINT] = fake.endpoint

    @staticmethod
    def refuse(cloud: FakeCloud) -> None:
        """Make the fake CTS refuse ListTrackers (its 403 code: assumption)."""
        cloud.others["cts"].refuse("GET", r"/trackers$", 403, "CTS.0403")

    def run(self, probe: Probe) -> CheckResult:
        credentials = probe.need()
        builder = client_builder(
            CtsClient, credentials, probe.timeouts(), project_id=probe.project_id
        )
        endpoint = probe.endpoint(CTS_ENDPOINT)
        if endpoint:
            client = builder.with_endpoints([endpoint]).build()
        else:
            try:
                client = builder.with_region(CtsRegion.value_of(probe.region)).build()
            except KeyError:
                return self.unknown(
                    f"the CTS SDK knows no endpoint for region {probe.region}: set {CTS_ENDPOINT}"
                )
        try:
            listed = client.list_trackers(ListTrackersRequest(tracker_type="system")).trackers
        except SdkException as exc:
            status, said = _said(exc)
            fix = f"allow {LIST_TRACKERS.action} to who runs doctor"
            return verdict(self, "CTS", "ListTrackers", status, said, fix)
        system = [t for t in listed or [] if t.tracker_type == "system"]
        if any(t.status == "enabled" for t in system):
            return self.ok()
        fix = (
            f"in {TRACKER_PAGE}, region {probe.region}: enable the tracker named system, or "
            "enable CTS there if no tracker is listed (that creates it)"
        )
        if not system:
            return self.fail(
                f"no system (management) tracker in {probe.region}: CTS records no image "
                "operation there, so the CTS trigger gets none",
                fix,
            )
        states = ", ".join(
            f"{t.tracker_name} is {t.status}" + (f" ({t.detail})" if t.detail else "")
            for t in system
        )
        return self.fail(f"no enabled system tracker in {probe.region}: {states}", fix)


class _Unreadable(Exception):
    """An IAM read failed, so the check cannot tell; the message says which read and why."""


class _Rejected(Exception):
    """IAM did not accept the credentials (401): a failure, by the one rule."""

    def __init__(self, status: int, said: str) -> None:
        super().__init__(said)
        self.status = status


def _read(permission: Permission, what: str, method: Callable[[Any], Any], request: Any) -> Any:
    """``method(request)``, or _Unreadable naming the read and, when refused, the action
    that would let the caller make it."""
    try:
        return method(request)
    except SdkException as exc:
        status, said = _said(exc)
        if status == 401:  # not a permission IAM withholds: the credentials themselves
            raise _Rejected(status, said) from None
        if status == 403:
            action = permission.action or f"{permission.unconfirmed} (unconfirmed)"
            raise _Unreadable(
                f"IAM refused reading {what} ({permission.api}: {said}); {action} for who runs "
                "doctor would let it"
            ) from None
        raise _Unreadable(f"IAM did not answer reading {what}: {said}") from None


def wanted_actions(template: Template, region: str | None) -> list[str]:
    """The actions ``imsguard iam-policy`` prints for the template's settings in ``region``."""
    from imsguard_tools.iam import actions, all_permissions, needed

    settings = template.settings_for(region) if region else dict(template.function.settings)
    return actions(needed(all_permissions(), settings))


def _matches(pattern: str, action: str) -> bool:
    """IAM's wildcard: ``*`` stands for any text; case does not matter (the service name is
    lower case, resource types and operations are case-insensitive)."""
    parts = (re.escape(part) for part in pattern.strip().lower().split("*"))
    return re.fullmatch(".*".join(parts), action.lower()) is not None


def held(action: str, policies: Iterable[Any]) -> bool:
    """Whether these policies (the SDK's RolePolicy) allow ``action``: an Allow statement
    matches it and no unconditional Deny does (a Deny with a condition or resources cannot be
    judged here; an Allow's conditions are not either, and count as allowing)."""
    allowed = denied = False
    for policy in policies:
        for statement in getattr(policy, "statement", None) or []:
            patterns = statement.action or []
            if isinstance(patterns, str):
                patterns = [patterns]
            if not any(_matches(p, action) for p in patterns):
                continue
            effect = (statement.effect or "").lower()
            if effect == "allow":
                allowed = True
            elif effect == "deny" and not statement.condition and not statement.resource:
                denied = True
    return allowed and not denied


class AgencyActions(Check):
    """The function's agency (the template's ``function.agency.name``) holds every action
    ``imsguard iam-policy`` prints, in its role/policy-based permissions as IAM lists them:
    for global services, the function's project and all projects."""

    name = "agency-actions"
    needs = (
        LIST_AGENCIES,
        LIST_DOMAIN_ROLES,
        LIST_PROJECT_ROLES,
        LIST_ALL_PROJECTS_ROLES,
        SHOW_PERMISSION,
    )

    @staticmethod
    def fake_setup(cloud: FakeCloud) -> None:
        """A fake IAM whose agency holds `imsguard iam-policy`'s output for all projects."""
        from imsguard_tools.doctor_fake import DOMAIN_ID
        from imsguard_tools.fake_iam_agency import FakeAgencyIam

        iam = cloud.attach("iam", FakeAgencyIam(DOMAIN_ID))
        cloud.endpoints[IAM_ENDPOINT] = iam.endpoint
        if cloud.template is not None:
            agency = iam.add_agency(cloud.template.function.agency.name)
            policy = iam.add_policy("imsguard", wanted_actions(cloud.template, cloud.region))
            agency.inherited_roles.append(policy)

    @staticmethod
    def refuse(cloud: FakeCloud) -> None:
        """Make the account refuse the agency one action imsguard needs (an unconditional
        Deny of ims:images:update), so the check's failure shows; a refused IAM read gives
        unknown instead (tests/test_doctor_access.py)."""
        iam = cloud.others["iam"]
        denying = iam.add_policy("deny-update", [], deny=["ims:images:update"])
        for agency in iam.agencies.values():
            agency.inherited_roles.append(denying)

    def run(self, probe: Probe) -> CheckResult:
        template = probe.needs_template()
        credentials = probe.need()
        domain_id = probe.domain_id
        if not domain_id:
            raise CheckNotRun("IAM is read with the account (domain) id: set IMSGUARD_DOMAIN_ID")
        name = template.function.agency.name
        iam = (
            client_builder(IamClient, credentials, probe.timeouts(), domain_id=domain_id)
            .with_endpoints([probe.settings.iam_endpoint or IAM_GLOBAL_ENDPOINT])
            .build()
        )
        try:
            agencies = _read(
                LIST_AGENCIES,
                "the agencies",
                iam.list_agencies,
                ListAgenciesRequest(domain_id=domain_id, name=name),
            ).agencies
            agency = next((a for a in agencies or [] if a.name == name), None)
            if agency is None:
                return self.fail(
                    f"no agency {name} in account {domain_id}",
                    "create it in the IAM console (Agencies > Create Agency: a cloud service "
                    "agency for FunctionGraph) with `imsguard iam-policy`'s output as its custom "
                    "policy, then run imsguard deploy (README, Deploy)",
                )
            assert probe.project_id is not None  # probe.need() saw to it
            policies = _policies(iam, domain_id, probe.project_id, agency.id, name)
        except _Unreadable as exc:
            return self.unknown(str(exc))
        except _Rejected as exc:
            return verdict(self, "IAM", "reading the agency", exc.status, str(exc), "")
        wanted = wanted_actions(template, probe.region)
        if not policies:  # perhaps granted by identity policies, which IAM lists elsewhere
            return self.unknown(
                f"the agency {name} has no role or policy-based permission IAM lists: it may be "
                "granted by identity policies (IAM's new console), which doctor does not read; "
                f"look at the IAM console, Agencies, {name}, Permissions"
            )
        missing = [a for a in wanted if not held(a, policies)]
        if not missing:
            return self.ok()
        return self.fail(
            f"the agency {name} lacks {len(missing)} of the {len(wanted)} actions imsguard's "
            f"calls need with these settings: {', '.join(missing)}",
            f"attach `imsguard iam-policy`'s output as a custom policy to the agency {name} "
            f"(IAM console > Agencies > {name} > Authorize)",
        )


def _policies(iam: Any, domain_id: str, project_id: str, agency_id: str, name: str) -> list[Any]:
    """The policies of every permission the agency holds for global services, the function's
    project and all projects (the last listed without policies: each is read by its id)."""
    roles = list(
        _read(
            LIST_DOMAIN_ROLES,
            f"the agency {name}'s permissions for global services",
            iam.list_domain_permissions_for_agency,
            ListDomainPermissionsForAgencyRequest(domain_id=domain_id, agency_id=agency_id),
        ).roles
        or []
    )
    roles += (
        _read(
            LIST_PROJECT_ROLES,
            f"the agency {name}'s permissions for project {project_id}",
            iam.list_project_permissions_for_agency,
            ListProjectPermissionsForAgencyRequest(project_id=project_id, agency_id=agency_id),
        ).roles
        or []
    )
    inherited = (
        _read(
            LIST_ALL_PROJECTS_ROLES,
            f"the agency {name}'s permissions for all projects",
            iam.list_all_projects_permissions_for_agency,
            ListAllProjectsPermissionsForAgencyRequest(agency_id=agency_id, domain_id=domain_id),
        ).roles
        or []
    )
    policies = {r.id: r.policy for r in roles if r.policy is not None}
    for role_id in sorted({r.id for r in [*roles, *inherited]} - policies.keys()):
        shown = _read(
            SHOW_PERMISSION,
            f"the permission {role_id}",
            iam.keystone_show_permission,
            KeystoneShowPermissionRequest(role_id=role_id),
        ).role
        policies[role_id] = shown.policy
    return [p for p in policies.values() if p is not None]


ACCESS_CHECKS: tuple[type[Check], ...] = (CtsTracker, AgencyActions)
