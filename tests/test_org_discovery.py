"""Organization scale, groundwork: accounts, regions and assumed agencies, through the real
Organizations, STS and IAM SDKs against the fakes (tools/imsguard_tools/fake_org.py)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from helpers import modules_after_an_event
from imsguard.clock import Budget
from imsguard.context import Credentials
from imsguard.org.calls import AccessDenied, OrganizationsNotEnabled, Throttled
from imsguard.org.credentials import AgencyCredentials, agency_urn, assume, duration_for
from imsguard.org.discovery import list_accounts, list_regions, project_region
from imsguard.settings import SettingsError, load_settings
from imsguard_tools.fake_org import MANAGEMENT_ACCOUNT
from imsguard_tools.local_context import LocalContext
from imsguard_tools.testing import (
    SAMPLE_PROJECT_ID,
    FakeAccount,
    FakeClock,
    FakeIam,
    FakeOrganizations,
    FakeSts,
)

REGION = "ap-southeast-1"
CALLER = Credentials("CALLERAKEXAMPLE0001", "caller-secret-key-example", "caller-token-example")
AGENCY = "imsguard-member"


def budget(clock: FakeClock, seconds: float = 600) -> Budget:
    return Budget(clock, clock.monotonic() + seconds, clock.monotonic() + seconds + 10)


def agency_holder(account: str, sts, clock: FakeClock, seconds: float = 600) -> AgencyCredentials:
    """The agency's credentials in ``account``, for a shard with ``seconds`` left."""
    return AgencyCredentials(
        account,
        AGENCY,
        "imsguard-shard",
        900,
        CALLER,
        SAMPLE_PROJECT_ID,
        sts.endpoint,
        budget(clock, seconds),
        clock,
    )


@pytest.fixture
def org(clock: FakeClock):
    accounts = [
        FakeAccount(f"{i:032x}", f"acct-{i:04d}", parent_id="ou-a" if i % 2 else "ou-b")
        for i in range(1, 1201)
    ]
    accounts[2].status = "suspended"
    accounts[4].tags = {"env": "prod", "team": "web"}
    accounts[6].tags = {"env": "dev"}
    organizations = FakeOrganizations(accounts)
    sts = FakeSts(SAMPLE_PROJECT_ID, REGION, {a.id: {AGENCY} for a in accounts[:10]}, clock=clock)
    iam = FakeIam(sts)
    for account in accounts[:10]:
        iam.projects[account.id] = [
            FakeIam.project(account.id, name)
            for name in ("MOS", REGION, f"{REGION}_dev", "eu-west-101", "cn-north-4")
        ] + [FakeIam.project(account.id, "la-south-2", enabled=False)]
    with organizations.attach(sts, iam):
        yield organizations, sts, iam
    organizations.assert_injections_met()
    sts.assert_injections_met()


def test_accounts_are_listed_across_every_page(org, clock):
    organizations, _, _ = org

    accounts = list_accounts(CALLER, MANAGEMENT_ACCOUNT, budget(clock))

    assert [a.id for a in accounts] == [a.id for a in organizations.accounts]
    pages = [c for c in organizations.calls if c.path == "/v1/organizations/accounts"]
    assert [c.query.get("limit") for c in pages] == ["500", "500", "500"]
    assert "marker" not in pages[0].query
    assert [c.query["marker"] for c in pages[1:]] == [
        organizations.accounts[499].id,
        organizations.accounts[999].id,
    ]


def test_an_ou_lists_only_its_members_and_a_tag_only_the_tagged(org, clock):
    organizations, _, _ = org

    in_ou = list_accounts(CALLER, MANAGEMENT_ACCOUNT, budget(clock), ou="ou-a")
    tagged = list_accounts(
        CALLER, MANAGEMENT_ACCOUNT, budget(clock), ou="ou-a", tag=("env", "prod")
    )

    assert len(in_ou) == 600 and all(int(a.id, 16) % 2 for a in in_ou)
    assert organizations.calls[0].query["parent_id"] == "ou-a"
    assert [a.name for a in tagged] == ["acct-0005"]


def test_accounts_that_are_not_active_are_flagged_with_the_reason(org, clock):
    accounts = list_accounts(CALLER, MANAGEMENT_ACCOUNT, budget(clock))

    flagged = [a for a in accounts if a.skipped]
    assert [(a.name, a.status) for a in flagged] == [("acct-0003", "suspended")]
    assert flagged[0].skipped == "account status is suspended, not active"


def test_organizations_not_enabled_is_a_clear_error(clock):
    with FakeOrganizations(enabled=False), pytest.raises(OrganizationsNotEnabled) as raised:
        list_accounts(CALLER, MANAGEMENT_ACCOUNT, budget(clock))

    assert "Organizations.1001" in str(raised.value)
    assert "management account" in str(raised.value)


def test_throttling_is_retried_then_given_up_within_the_budget(org, clock):
    organizations, _, _ = org
    organizations.fail_next("GET", 429, "APIGW.0308", times=2)

    assert len(list_accounts(CALLER, MANAGEMENT_ACCOUNT, budget(clock), ou="ou-b")) == 600
    assert len(clock.sleeps) == 2

    organizations.fail_next("GET", 429, "APIGW.0308", times=4)
    with pytest.raises(Throttled, match="after 4 attempts"):
        list_accounts(CALLER, MANAGEMENT_ACCOUNT, budget(clock))
    assert len(clock.sleeps) == 5  # three more pauses, then it gives up


def test_throttling_stops_at_the_end_of_the_budget(org, clock):
    organizations, _, _ = org
    organizations.fail_next("GET", 503, "APIGW.0203", times=1)

    with pytest.raises(Throttled, match="HTTP 503"):
        list_accounts(CALLER, MANAGEMENT_ACCOUNT, budget(clock, seconds=0))
    assert clock.sleeps == []


def test_an_agency_is_assumed_per_account_with_its_urn_and_duration(org, clock):
    organizations, sts, _ = org
    account = organizations.accounts[0].id

    assumed = assume(
        agency_urn(account, AGENCY),
        "imsguard-shard",
        900,
        CALLER,
        SAMPLE_PROJECT_ID,
        sts.endpoint,
        budget(clock),
    )

    body = sts.calls[-1].body
    assert body == {
        "agency_urn": f"iam::{account}:agency:{AGENCY}",
        "agency_session_name": "imsguard-shard",
        "duration_seconds": 900,
    }
    assert sts.issued[assumed.credentials.access_key].account_id == account
    assert assumed.expiration == clock.utcnow() + timedelta(seconds=900)


@pytest.mark.parametrize(
    ("budget_s", "chained", "expected"),
    [
        (0, True, 900),
        (1200.2, True, 1201),
        (7200, True, 3600),
        (7200, False, 7200),
        (90_000, False, 43_200),
    ],
)
def test_the_duration_is_the_shortest_that_fits(budget_s, chained, expected):
    assert duration_for(budget_s, chained) == expected


def test_a_missing_agency_is_a_clear_access_denied(org, clock):
    organizations, sts, _ = org
    account = organizations.accounts[20].id  # no agency there

    with pytest.raises(AccessDenied) as raised:
        assume(
            agency_urn(account, AGENCY),
            "imsguard-shard",
            900,
            CALLER,
            SAMPLE_PROJECT_ID,
            sts.endpoint,
            budget(clock),
        )

    assert "STS5.1106" in str(raised.value) and account in str(raised.value)
    assert "does the agency exist" in str(raised.value)


def test_agency_credentials_refresh_before_expiry(org, clock):
    organizations, sts, _iam = org
    account = organizations.accounts[0].id
    holder = agency_holder(account, sts, clock, seconds=3600)

    first = holder.get()
    clock.sleep(500)  # 400 s left: kept
    assert holder.get() is first
    clock.sleep(150)  # 250 s left: refreshed
    second = holder.get()

    assert second.access_key != first.access_key and holder.assumed == 2
    assert "secret" not in repr(holder) and first.secret_key not in repr(holder)


def test_projects_become_regions_with_sub_projects_and_without_mos(org, clock):
    organizations, sts, _iam = org
    account = organizations.accounts[1].id
    holder = agency_holder(account, sts, clock)

    projects = list_regions(holder.get(), account, budget(clock))
    wanted = list_regions(holder.get(), account, budget(clock), wanted=(REGION,))

    assert [(p.name, p.region) for p in projects] == [
        (REGION, REGION),
        (f"{REGION}_dev", REGION),
        ("eu-west-101", "eu-west-101"),
        ("cn-north-4", "cn-north-4"),
    ]
    assert [p.name for p in wanted] == [REGION, f"{REGION}_dev"]
    assert projects[0].id == FakeIam.project(account, REGION)["id"]
    assert project_region("MOS") is None


def test_iam_answers_only_the_account_whose_credentials_call(org, clock):
    organizations, sts, iam = org
    mine, other = organizations.accounts[0].id, organizations.accounts[1].id
    holder = agency_holder(mine, sts, clock)
    iam.projects[mine] = [FakeIam.project(mine, "eu-west-101")]

    assert [p.name for p in list_regions(holder.get(), mine, budget(clock))] == ["eu-west-101"]
    from imsguard.org.calls import OrgError

    with pytest.raises(OrgError, match=r"HTTP 401 APIGW\.0301"):
        list_regions(holder.get(), other, budget(clock))  # signed for another account
    with pytest.raises(OrgError, match=r"HTTP 401 APIGW\.0301"):
        list_regions(CALLER, mine, budget(clock))  # credentials STS never issued


def test_no_secret_reaches_the_logs(org, clock, caplog):
    organizations, sts, _ = org
    caplog.set_level(logging.DEBUG)
    account = organizations.accounts[0].id
    holder = agency_holder(account, sts, clock)
    got = holder.get()
    list_regions(got, account, budget(clock))
    logging.getLogger("HuaweiCloud-SDK-IamClient").warning("leak? %s %s", got.secret_key, got)

    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert got.secret_key not in text and got.security_token not in text
    assert CALLER.secret_key not in text


def test_org_settings_are_read_and_checked():
    context = LocalContext(
        {
            "IMSGUARD_ORG_AGENCY": AGENCY,
            "IMSGUARD_ORG_REGIONS": "ap-southeast-1, eu-west-101,ap-southeast-1",
            "IMSGUARD_ORG_CONCURRENCY": "200",
        }
    )
    settings = load_settings(context, {"IMSGUARD_REGION": REGION})

    assert settings.org_agency == AGENCY and settings.org_concurrency == 200
    assert settings.org_regions == ("ap-southeast-1", "eu-west-101")
    assert settings.sts_endpoint == f"https://sts.{REGION}.myhuaweicloud.com"
    assert settings.iam_endpoint == "https://iam.myhuaweicloud.com"
    assert settings.organizations_endpoint == "https://organizations.myhuaweicloud.com"
    assert load_settings(LocalContext({}), {}).org_concurrency == 50
    for key, value in [
        ("IMSGUARD_ORG_AGENCY", "has space"),
        ("IMSGUARD_ORG_REGIONS", "ap-southeast-1,Mars"),
        ("IMSGUARD_ORG_REGIONS", " , "),
        ("IMSGUARD_ORG_CONCURRENCY", "1001"),
        ("IMSGUARD_STS_ENDPOINT", "sts.example"),
    ]:
        with pytest.raises(SettingsError, match=key):
            load_settings(LocalContext({key: value}), {"IMSGUARD_REGION": REGION})


def test_the_agency_policy_gains_the_org_actions_only_for_org_deployments():
    from imsguard_tools.iam import actions, all_permissions, needed

    base = set(actions(needed(all_permissions(), {})))
    org = set(actions(needed(all_permissions(), {"IMSGUARD_ORG_AGENCY": AGENCY})))
    kept = {"IMSGUARD_ORG_AGENCY": AGENCY, "IMSGUARD_REPORT_BUCKET": "reports"}
    run_in_obs = set(actions(needed(all_permissions(), kept)))

    # The coordinator starts its shards asynchronously, whether sweeps continue or not.
    assert org - base == {
        "organizations:accounts:list",
        "organizations:tags:list",
        "sts:agencies:assume",
        "functiongraph:function:invokeAsync",
    }
    assert run_in_obs - org == {
        "obs:object:PutObject",
        "obs:object:GetObject",
        "obs:bucket:ListBucket",
    }


def test_an_ordinary_event_imports_none_of_the_org_sdks():
    loaded = modules_after_an_event()
    assert not {m for m in loaded if m.startswith("imsguard.org") or m.split(".")[0] in ORG_SDKS}


ORG_SDKS = ("huaweicloudsdkorganizations", "huaweicloudsdksts", "huaweicloudsdkiam")


def test_a_refused_listing_is_a_clear_access_denied(org, clock):
    organizations, _, _ = org
    organizations.fail_next("GET", 403, "Organizations.1007")

    with pytest.raises(AccessDenied, match=r"HTTP 403 Organizations\.1007 Policy doesn't allow"):
        list_accounts(CALLER, MANAGEMENT_ACCOUNT, budget(clock))
    assert clock.sleeps == []  # a refusal is not retried
