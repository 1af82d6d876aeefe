"""The doctor's access checks (cts-tracker, agency-actions) through the real CTS and IAM SDKs
against the fakes: each one's ok, fail and unknown paths, and no check writes anything."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from imsguard.selfcheck import Check, CheckResult
from imsguard_tools import bundled
from imsguard_tools.cli import main
from imsguard_tools.doctor import applies, probe_for, run_checks
from imsguard_tools.doctor_access import (
    ACCESS_CHECKS,
    CTS_ENDPOINT,
    AgencyActions,
    CtsTracker,
    held,
    wanted_actions,
)
from imsguard_tools.doctor_fake import CREDENTIALS, PROJECT_ID, FakeCloud, fake_cloud
from imsguard_tools.fake_iam_agency import TENANT_ADMINISTRATOR
from imsguard_tools.template import Template, load_template

REGION = "ap-southeast-1"
TEMPLATE = load_template(bundled.TEMPLATE)
AGENCY = TEMPLATE.function.agency.name


@contextmanager
def cloud(template: Template | None = TEMPLATE) -> Iterator[FakeCloud]:
    with fake_cloud(REGION, template, list(ACCESS_CHECKS)) as fakes:
        yield fakes


def check(
    fakes: FakeCloud,
    kind: type[Check],
    template: Template | None = TEMPLATE,
    region: str = REGION,
    **environ: str | None,
) -> CheckResult:
    """One check's result against the fakes (``environ``: endpoint settings changed, None:
    removed), after making sure it wrote nothing."""
    given = {**fakes.endpoints, **environ}
    env = {k: v for k, v in given.items() if v is not None}
    probe = probe_for(template, region, 30, CREDENTIALS, PROJECT_ID, env)
    [result] = run_checks(probe, [kind])
    assert fakes.writes() == []
    return result


def cts(fakes: FakeCloud) -> Any:
    return fakes.others["cts"]


def iam(fakes: FakeCloud) -> Any:
    return fakes.others["iam"]


# -- cts-tracker ---------------------------------------------------------------------------


def test_cts_tracker_ok_with_the_enabled_system_tracker() -> None:
    with cloud() as fakes:
        assert check(fakes, CtsTracker).status == "ok"
        [call] = cts(fakes).reads
    assert call.path == f"/v3/{PROJECT_ID}/trackers"
    assert call.query == {"tracker_type": "system"}


def test_cts_tracker_fails_without_a_system_tracker() -> None:
    with cloud() as fakes:
        cts(fakes).trackers = [cts(fakes).tracker("data")]  # a data tracker is not enough
        result = check(fakes, CtsTracker)
    assert result.status == "fail"
    assert f"no system (management) tracker in {REGION}" in (result.reason or "")
    assert "Tracker List" in (result.fix or "")


@pytest.mark.parametrize(("status", "detail"), [("disabled", None), ("error", "bucketPolicyError")])
def test_cts_tracker_fails_when_the_system_tracker_is_not_enabled(
    status: str, detail: str | None
) -> None:
    with cloud() as fakes:
        cts(fakes).trackers = [cts(fakes).tracker("system", status, detail)]
        result = check(fakes, CtsTracker)
    assert result.status == "fail"
    assert f"system is {status}" in (result.reason or "")
    assert detail is None or detail in (result.reason or "")
    assert "enable the tracker named system" in (result.fix or "")


def test_cts_tracker_refused_fails_naming_the_action() -> None:
    with cloud() as fakes:
        CtsTracker.refuse(fakes)
        result = check(fakes, CtsTracker)
    assert result.status == "fail"
    assert "HTTP 403" in (result.reason or "")
    assert result.fix == "allow cts:tracker:list to who runs doctor"


@pytest.mark.parametrize("fault", ["503", "no answer"])
def test_cts_tracker_unknown_when_cts_does_not_answer(fault: str) -> None:
    with cloud() as fakes:
        if fault == "503":
            cts(fakes).fail_next("GET", 503, "APIGW.0203", "Service unavailable")
        else:
            cts(fakes).raise_next("GET", requests.exceptions.ConnectionError("reset"))
        result = check(fakes, CtsTracker)
        cts(fakes).assert_injections_met()
    assert result.status == "unknown"
    assert "CTS could not tell (ListTrackers)" in (result.reason or "")


def test_cts_tracker_uses_the_regions_endpoint_unless_overridden() -> None:
    with cloud() as fakes:
        # The fake sits where the SDK puts the region's CTS: no override is needed.
        assert check(fakes, CtsTracker, **{CTS_ENDPOINT: None}).status == "ok"
        elsewhere = check(fakes, CtsTracker, **{CTS_ENDPOINT: "https://cts.example.invalid"})
        assert elsewhere.status == "unknown"  # the override was followed: nothing there
        unknown_region = check(fakes, CtsTracker, region="xx-nowhere-9", **{CTS_ENDPOINT: None})
    assert unknown_region.status == "unknown"
    assert CTS_ENDPOINT in (unknown_region.reason or "")


def test_cts_tracker_applies_only_with_a_cts_trigger() -> None:
    no_cts = TEMPLATE.model_copy(
        update={"triggers": [t for t in TEMPLATE.triggers if t.type != "CTS"]}
    )

    def probe(template: Template | None) -> Any:
        return probe_for(template, REGION, 30, CREDENTIALS, PROJECT_ID, {})

    assert applies(CtsTracker, probe(TEMPLATE))
    assert applies(CtsTracker, probe(None))
    assert not applies(CtsTracker, probe(no_cts))


# -- agency-actions ------------------------------------------------------------------------


def test_agency_actions_ok_with_the_iam_policy_for_all_projects() -> None:
    with cloud() as fakes:
        assert check(fakes, AgencyActions).status == "ok"
        paths = [c.path for c in iam(fakes).reads]
    assert paths[0] == "/v3.0/OS-AGENCY/agencies"
    assert any(p.startswith("/v3/roles/") for p in paths)  # the policy read by its id


@pytest.mark.parametrize("scope", ["global services", "the project", "all projects"])
def test_agency_actions_ok_with_tenant_administrator_in_any_scope(scope: str) -> None:
    with cloud() as fakes:
        [agency] = iam(fakes).agencies.values()
        agency.inherited_roles.clear()
        admin = TENANT_ADMINISTRATOR["id"]
        if scope == "global services":
            agency.domain_roles.append(admin)
        elif scope == "the project":
            agency.project_roles[PROJECT_ID] = [admin]
        else:
            agency.inherited_roles.append(admin)
        assert check(fakes, AgencyActions).status == "ok"


def test_agency_actions_fails_naming_the_missing_actions() -> None:
    wanted = wanted_actions(TEMPLATE, REGION)
    with cloud() as fakes:
        [agency] = iam(fakes).agencies.values()
        partial = [a for a in wanted if a != "ims:images:update"]
        agency.inherited_roles = [iam(fakes).add_policy("partial", partial)]
        result = check(fakes, AgencyActions)
    assert result.status == "fail"
    assert result.reason == (
        f"the agency {AGENCY} lacks 1 of the {len(wanted)} actions imsguard's calls need with "
        "these settings: ims:images:update"
    )
    assert "`imsguard iam-policy`'s output as a custom policy" in (result.fix or "")
    assert AGENCY in (result.fix or "")


def test_agency_actions_cannot_tell_an_agency_with_no_listed_permissions() -> None:
    # an agency granted only by identity policies lists none here: no false alarm
    with cloud() as fakes:
        [agency] = iam(fakes).agencies.values()
        agency.inherited_roles.clear()
        result = check(fakes, AgencyActions)
    assert result.status == "unknown"
    assert "identity policies" in (result.reason or "")


def test_agency_actions_an_unconditional_deny_wins() -> None:
    with cloud() as fakes:
        [agency] = iam(fakes).agencies.values()
        denying = iam(fakes).add_policy("deny", ["*:*:*"], deny=["ims:images:update"])
        agency.inherited_roles.append(denying)
        result = check(fakes, AgencyActions)
    assert result.status == "fail"
    assert "lacks 1 of the" in (result.reason or "")
    assert (result.reason or "").endswith(": ims:images:update")


def test_agency_actions_follow_the_templates_settings() -> None:
    metrics = TEMPLATE.model_copy(deep=True)
    metrics.function.settings["IMSGUARD_METRICS"] = "true"
    with cloud() as fakes:  # the agency holds the policy of the template without metrics
        result = check(fakes, AgencyActions, template=metrics)
    assert result.status == "fail"
    assert (result.reason or "").endswith(": ces:metricData:create")


@pytest.mark.parametrize(
    ("pattern", "action", "allowed"),
    [
        ("*:*:*", "ims:images:update", True),
        ("ims:*:*", "ims:images:update", True),
        ("IMS:Images:*", "ims:images:update", True),
        ("ims:*:get*", "ims:images:update", False),
        ("ims:images:list", "ims:images:update", False),
        ("smn:topic:publish", "smn:topic:publish", True),
    ],
)
def test_held_reads_iam_wildcards(pattern: str, action: str, allowed: bool) -> None:
    from huaweicloudsdkiam.v3 import PolicyStatement, RolePolicy

    policy = RolePolicy(statement=[PolicyStatement(action=[pattern], effect="Allow")])
    assert held(action, [policy]) is allowed


def test_agency_actions_fails_when_the_agency_is_missing() -> None:
    with cloud() as fakes:
        iam(fakes).agencies.clear()
        result = check(fakes, AgencyActions)
    assert result.status == "fail"
    assert (result.reason or "").startswith(f"no agency {AGENCY} in account")
    assert "Create Agency" in (result.fix or "")


@pytest.mark.parametrize(
    ("path", "action"),
    [
        (r"^/v3\.0/OS-AGENCY/agencies$", "iam:agencies:listAgencies"),
        (r"/OS-AGENCY/domains/.*/roles$", "iam:permissions:listRolesForAgencyOnDomain (unconf"),
        (r"/OS-AGENCY/projects/.*/roles$", "iam:permissions:listRolesForAgencyOnProject for"),
        (r"/inherited_to_projects$", "iam:permissions:listRolesForAgency (unconfirmed)"),
        (r"^/v3/roles/", "iam:roles:getRole (unconfirmed)"),
    ],
)
def test_agency_actions_unknown_naming_the_refused_read(path: str, action: str) -> None:
    with cloud() as fakes:
        iam(fakes).refuse("GET", path, 403, "IAM.0003")
        result = check(fakes, AgencyActions)
    assert result.status == "unknown"
    assert (result.reason or "").startswith("IAM refused reading")
    assert action in (result.reason or "")


def test_agency_actions_unknown_when_iam_does_not_answer() -> None:
    with cloud() as fakes:
        iam(fakes).fail_next("GET", 503, "APIGW.0203", "Service unavailable")
        result = check(fakes, AgencyActions)
        iam(fakes).assert_injections_met()
    assert result.status == "unknown"
    assert "IAM did not answer reading the agencies: HTTP 503" in (result.reason or "")


def test_agency_actions_unknown_without_the_account_id_or_a_template() -> None:
    with cloud() as fakes:
        no_domain = check(fakes, AgencyActions, IMSGUARD_DOMAIN_ID=None)
        no_template = check(fakes, AgencyActions, template=None)
        assert iam(fakes).calls == []
    assert no_domain.status == "unknown"
    assert "IMSGUARD_DOMAIN_ID" in (no_domain.reason or "")
    assert no_template.status == "unknown"
    assert "template" in (no_template.reason or "")


# -- imsguard doctor --fake ----------------------------------------------------------------


def test_doctor_fake_shows_both_checks_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--fake", "--output", "json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["cts-tracker"]["status"] == "ok"
    assert checks["agency-actions"]["status"] == "ok"


def test_doctor_fake_refuse_cts_tracker_shows_its_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["doctor", "--fake", "--refuse", "cts-tracker"]) == 1
    out = capsys.readouterr().out
    assert "fail    cts-tracker: CTS refused ListTrackers: HTTP 403" in out
    assert "fix: allow cts:tracker:list to who runs doctor" in out
    assert "ok      agency-actions" in out


def test_doctor_fake_refuse_agency_actions_shows_the_missing_action(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # --refuse denies the agency one action imsguard needs: the check's failure shows.
    assert main(["doctor", "--fake", "--refuse", "agency-actions"]) == 1
    out = capsys.readouterr().out
    assert "fail    agency-actions: the agency" in out
    assert "lacks 1 of the" in out and "ims:images:update" in out
    assert "ok      cts-tracker" in out
