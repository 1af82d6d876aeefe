"""An org sweep's shard: one account's project in one region, swept under the agency that
account lends imsguard, through the handler and the real STS and IMS SDKs against the fakes
(each STS-issued AK encodes its account, so the IMS requests show whose credentials they
carried)."""

from __future__ import annotations

import json
import logging
import re

import pytest

from helpers import SECRETS, modules_after_an_event, use_policy
from imsguard.app import TransientFailure, handler
from imsguard_tools.testing import (
    SAMPLE_PROJECT_ID,
    FakeFunctionGraph,
    FakeIms,
    FakeSts,
)

HOME = "ap-southeast-1"  # the function's own region (conftest's)
OTHER = "eu-west-101"
AGENCY = "imsguard-member"
ACCOUNT_A = f"{0xA:032x}"
ACCOUNT_B = f"{0xB:032x}"
NO_AGENCY = f"{0xC:032x}"
PROJECT_A = "a" * 32  # account A's project in HOME
PROJECT_A2 = "a2" * 16  # account A's project in OTHER
PROJECT_B = "b" * 32  # account B's project in HOME (its own IMS endpoint, see the fixture)
URN = f"urn:fss:{HOME}:{SAMPLE_PROJECT_ID}:function:default:imsguard:latest"
_ACCESS = re.compile(r"Access=([^,\s]+)")


class Org:
    """The fakes of one test: STS, each shard's IMS, the function's own FunctionGraph."""

    def __init__(self, clock):
        self.sts = FakeSts(
            SAMPLE_PROJECT_ID, HOME, {ACCOUNT_A: {AGENCY}, ACCOUNT_B: {AGENCY}}, clock=clock
        )
        self.ims = {
            (ACCOUNT_A, HOME): FakeIms(project_id=PROJECT_A, region=HOME),
            (ACCOUNT_A, OTHER): FakeIms(project_id=PROJECT_A2, region=OTHER),
            # account B in the same region: another IMS endpoint, so the fakes stay apart
            (ACCOUNT_B, HOME): FakeIms(
                project_id=PROJECT_B, region=HOME, endpoint="https://ims-b.example.com"
            ),
        }
        self.fgs = FakeFunctionGraph(SAMPLE_PROJECT_ID, HOME)
        self.fgs.fgs_endpoint = "https://fgs.home.example.com"  # not account A's IMS's own
        self.bad = {key: fill(fake, 9) for key, fake in self.ims.items()}

    def ims_calls(self):
        return [call for fake in self.ims.values() for call in fake.calls]

    def issued_secrets(self):
        return [s for ak, i in self.sts.issued.items() for s in (ak, i.secret_key, i.token)]


def fill(fake, count):
    """``count`` images, every third one badly named; the ids of the bad ones."""
    bad = []
    for index in range(count):
        wrong = index % 3 == 0
        image = fake.add_image(
            {
                "name": f"Image_{index:03d}" if wrong else f"image-{index:03d}",
                "hw_firmware_type": "uefi",
                "hw_vif_multiqueue_enabled": "true",
            }
        )
        if wrong:
            bad.append(image["id"])
    return bad


@pytest.fixture
def org(clock):
    fakes = Org(clock)
    with fakes.sts.attach(*fakes.ims.values(), fakes.fgs):
        yield fakes
    for fake in (fakes.sts, fakes.fgs, *fakes.ims.values()):
        fake.assert_injections_met()


@pytest.fixture
def shard_context(context):
    context.user_data["IMSGUARD_ORG_AGENCY"] = AGENCY
    return context


def shard(account=ACCOUNT_A, region=HOME, project_id=PROJECT_A, phase="apply", **extra):
    return {
        "action": "org-shard",
        "org_run": "run-2026.01_01",
        "account": account,
        "account_name": "web team",
        "region": region,
        "project_id": project_id,
        "phase": phase,
        **extra,
    }


def carried(call):
    """The access key an IMS request was signed with, and its security token."""
    headers = {k.lower(): v for k, v in call.headers.items()}
    match = _ACCESS.search(headers.get("authorization", ""))
    return (match.group(1) if match else None), headers.get("x-security-token")


@pytest.mark.parametrize(
    ("account", "region", "project_id", "endpoint"),
    [
        (ACCOUNT_A, HOME, PROJECT_A, None),
        (ACCOUNT_A, OTHER, PROJECT_A2, None),
        (ACCOUNT_B, HOME, PROJECT_B, "https://ims-b.example.com"),
    ],
)
def test_a_shard_sweeps_only_its_project_with_its_accounts_credentials(
    org, shard_context, account, region, project_id, endpoint
):
    if endpoint:
        shard_context.user_data["IMSGUARD_IMS_ENDPOINT"] = endpoint
    mine = org.ims[account, region]

    report = handler(shard(account, region, project_id), shard_context)

    assert report["status"] == "ok" and report["examined"] == 9
    assert report["summary"] == {"compliant": 6, "updated": 3}
    assert sorted(c.path.rsplit("/", 1)[1] for c in mine.patches) == sorted(
        org.bad[account, region]
    )
    assert all(c in mine.calls for c in org.ims_calls())  # no other project was touched
    assert report["shard"] == {
        "org_run": "run-2026.01_01",
        "account": account,
        "account_name": "web team",
        "region": region,
        "project_id": project_id,
        "phase": "apply",
    }
    (assumed,) = org.sts.calls
    assert assumed.body == {
        "agency_urn": f"iam::{account}:agency:{AGENCY}",
        "agency_session_name": "imsguard-run-2026.01_01",
        "duration_seconds": 900,  # the shortest STS allows covers the 30 s invocation
    }
    assert carried(assumed) == (SECRETS[0], SECRETS[2])  # STS: the function's own
    for call in mine.calls:  # IMS: the account's assumed agency, nothing else
        access_key, token = carried(call)
        assert org.sts.issued[access_key].account_id == account
        assert token == org.sts.issued[access_key].token


def test_the_plan_phase_changes_nothing_and_counts_the_planned_changes(org, shard_context):
    report = handler(shard(phase="plan", sweep={"dry_run": False}), shard_context)

    assert report["status"] == "ok" and report["dry_run"] is True
    assert report["examined"] == 9 and report["summary"] == {"compliant": 6, "would_update": 3}
    assert sorted(c["image_id"] for c in report["would_change"]) == sorted(org.bad[ACCOUNT_A, HOME])
    assert report["shard"]["phase"] == "plan"
    assert org.ims[ACCOUNT_A, HOME].patches == []


def test_sweep_options_apply_to_the_shard(org, shard_context):
    report = handler(shard(sweep={"limit": 4, "dry_run": True}), shard_context)

    assert report["examined"] == 4 and report["dry_run"] is True
    assert report["continuation"]["cause"] == "limit"
    assert org.ims_calls() and all(c.method == "GET" for c in org.ims_calls())


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (shard(NO_AGENCY), f"the agency of account {NO_AGENCY} cannot be assumed"),
        (shard(NO_AGENCY), "STS5.1106"),
        (shard(region="la-south-2"), "not one of IMSGUARD_ORG_REGIONS"),
    ],
)
def test_a_shard_that_cannot_assume_its_agency_is_an_error_and_changes_nothing(
    org, shard_context, event, words
):
    if "la-south-2" in event["region"]:
        shard_context.user_data["IMSGUARD_ORG_REGIONS"] = f"{HOME},{OTHER}"

    report = handler(event, shard_context)  # no raise: FunctionGraph must not retry it

    assert report["status"] == "error" and words in report["reason"]
    assert report["shard"]["account"] == event["account"]
    assert org.ims_calls() == []


def test_sts_throttling_raises_for_functiongraph_to_retry(org, shard_context):
    org.sts.fail_next("POST", 429, "APIGW.0308", times=4)

    with pytest.raises(TransientFailure, match="STS"):
        handler(shard(), shard_context)

    assert org.ims_calls() == []


@pytest.mark.parametrize("fault", ["no endpoint", "404"])
def test_a_region_without_ims_is_an_error_and_changes_nothing(org, shard_context, clock, fault):
    event = shard(region="la-south-2", project_id="c" * 32)  # no fake IMS there
    if fault == "404":
        shard_context.user_data["IMSGUARD_IMS_ENDPOINT"] = "https://ims-b.example.com"
        org.ims[ACCOUNT_B, HOME].fail_next("GET", 404, "APIGW.0101")
        event = shard(ACCOUNT_B, "la-south-2", PROJECT_B)

    report = handler(event, shard_context)

    assert report["status"] == "error" and report["examined"] == 0
    assert "in la-south-2" in report["error"] and "could not be read" in report["error"]
    assert "is IMS offered in that region" in report["error"]
    assert all(c.method == "GET" for c in org.ims_calls())
    assert report["continuation"]["cause"] == "error" and not report["continued"]["started"]


def test_without_an_org_agency_a_shard_is_refused(org, context):
    report = handler(shard(), context)

    assert report["status"] == "error"
    assert "configuration: an org-shard event needs IMSGUARD_ORG_AGENCY" in report["reason"]
    assert report["shard"]["account"] == ACCOUNT_A
    assert org.sts.calls == [] and org.ims_calls() == []


def short_of_time(org, context, clock, mine):
    """Pages of 5, 17 s to run, each IMS request 2 s long: the shard continues itself."""
    context.user_data.update(
        IMSGUARD_SWEEP_PAGE_SIZE="5",
        IMSGUARD_SWEEP_CONTINUE="true",
        IMSGUARD_FUNCTION_URN=URN,
        IMSGUARD_FGS_ENDPOINT=org.fgs.fgs_endpoint,
    )
    context.timeout_ms = 17_000
    mine.before_request = lambda method, path: setattr(clock, "elapsed", clock.elapsed + 2)


def test_a_shard_out_of_time_continues_as_the_same_shard(org, shard_context, clock):
    mine = org.ims[ACCOUNT_A, HOME]
    fill(mine, 21)  # 30 images in all
    short_of_time(org, shard_context, clock, mine)

    first = handler(shard(sweep={"since": "2025-01-01"}), shard_context)

    assert first["continued"]["started"] is True
    (invocation,) = org.fgs.invocations
    assert invocation["function_urn"] == URN
    assert invocation["body"] == {
        **shard(),
        "sweep": {
            "since": "2025-01-01",
            "hop": 1,
            "marker": first["continuation"]["marker"],
            "examined_before": first["continuation"]["examined_before"],
            "planned_before": first["continuation"]["planned_before"],
        },
    }
    reports = [first]
    for _ in range(20):  # what FunctionGraph would deliver, hop after hop
        clock.elapsed = 0
        reports.append(handler(org.fgs.invocations[-1]["body"], shard_context))
        if not reports[-1].get("continued", {}).get("started"):
            break
    assert reports[1]["trigger"].endswith("(apply, continuation 1)")
    assert all(r["shard"] == first["shard"] for r in reports)
    assert all(i["name"] == i["name"].lower() for i in mine.images.values())
    assert len(org.sts.calls) == len(reports)  # each hop assumes the agency itself


def test_a_hop_ends_before_its_credentials_expire(org, shard_context, clock):
    """A function may run for hours, chained credentials last one at most: the hop stops
    in time and the next one assumes the agency anew."""
    mine = org.ims[ACCOUNT_A, HOME]
    fill(mine, 291)  # 300 images in all, 100 to fix
    short_of_time(org, shard_context, clock, mine)
    shard_context.user_data["IMSGUARD_SWEEP_CONCURRENCY"] = "1"
    shard_context.timeout_ms = 7_200_000  # two hours
    sent = []

    def slow(method, path):  # each IMS request: sent now, answered 20 s later
        sent.append(clock.utcnow())
        clock.elapsed += 20

    mine.before_request = slow

    report = handler(shard(), shard_context)

    assert org.sts.calls[0].body["duration_seconds"] == 3600  # the most, with a token
    assert report["continuation"]["cause"] == "time" and report["continued"]["started"]
    (issued,) = org.sts.issued.values()
    assert len(sent) > 100 and max(sent) < issued.expiration  # none with expired credentials
    assert report["examined"] < 300


def test_no_credentials_in_the_result_the_logs_or_the_continuation(
    org, shard_context, clock, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    shard_context.user_data["IMSGUARD_LOG_LEVEL"] = "DEBUG"
    mine = org.ims[ACCOUNT_A, HOME]
    fill(mine, 21)
    short_of_time(org, shard_context, clock, mine)

    first = handler(shard(), shard_context)
    refused = handler(shard(NO_AGENCY), shard_context)

    assert first["continued"]["started"] is True and refused["status"] == "error"
    out = capsys.readouterr()
    texts = [
        json.dumps(first),
        json.dumps(refused),
        json.dumps(org.fgs.invocations),
        caplog.text,
        out.out,
        out.err,
    ]
    secrets = [*org.issued_secrets(), *SECRETS]
    assert len(secrets) == 6
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert "org shard: agency assumed" in out.out + out.err + caplog.text


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"account": "0123"}, "account: not an account (domain) id: 32 lower-case hex"),
        ({"account": ACCOUNT_A.upper()}, "account: not an account (domain) id"),
        ({"project_id": "x" * 32}, "project_id: not a project id"),
        ({"region": "Mars"}, "region: not a region id such as 'ap-southeast-1'"),
        ({"org_run": "run/1"}, "org_run: not 1 to 64 letters, digits"),
        ({"org_run": "r" * 65}, "org_run: not 1 to 64"),
        ({"phase": "go"}, "phase: Input should be 'plan' or 'apply'"),
        ({"account_name": "x" * 65}, "account_name: String should have at most 64"),
        ({"account_name": "a\nb"}, "account_name: holds a control character"),
        ({"sweep": {"limit": 0}}, "sweep.limit: Input should be greater than or equal to 1"),
        ({"sweep": {"bogus": 1}}, "sweep.bogus: Extra inputs are not permitted"),
        ({"sweep": "dry_run"}, "sweep: Input should be a valid dictionary"),
        ({"credentials": {"ak": "x"}}, "credentials: Extra inputs are not permitted"),
        ({"dry_run": True}, "dry_run: Extra inputs are not permitted"),
    ],
)
def test_malformed_shard_events_are_invalid_with_the_reason(org, shard_context, changes, words):
    report = handler({**shard(), **changes}, shard_context)

    assert report["status"] == "invalid"
    assert report["reason"].startswith("invalid org-shard event: ")
    assert words in report["reason"]
    assert org.sts.calls == [] and org.ims_calls() == []


def test_a_missing_field_is_named(org, shard_context):
    event = shard()
    del event["project_id"], event["phase"]

    report = handler(event, shard_context)

    assert report["status"] == "invalid"
    assert "project_id: Field required" in report["reason"]
    assert "phase: Field required" in report["reason"]


def test_an_unknown_action_names_every_action(shard_context):
    report = handler({"action": "org-shards"}, shard_context)

    assert report["status"] == "invalid"
    assert (
        report["reason"]
        == "unknown action 'org-shards'; the actions are 'sweep', 'org-shard', 'org-sweep'"
    )


def test_an_ordinary_event_loads_nothing_of_org_shards():
    loaded = modules_after_an_event(IMSGUARD_REGION=HOME, IMSGUARD_ORG_AGENCY=AGENCY)
    org_sdks = ("huaweicloudsdkorganizations", "huaweicloudsdksts", "huaweicloudsdkiam")
    assert not {
        m
        for m in loaded
        if m.startswith("imsguard.org")
        or m == "imsguard.event_models"
        or m.split(".")[0] in org_sdks
    }


def test_the_member_agency_policy_is_the_ims_calls_of_a_shard(capsys):
    from imsguard_tools.cli import main

    assert main(["iam-policy", "--member"]) == 0

    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "Version": "1.1",
        "Statement": [{"Effect": "Allow", "Action": ["ims:images:list", "ims:images:update"]}],
    }
    assert "the custom policy of the agency each member account lends an org sweep" in err


class CloudContext:
    """FunctionGraph's own context (not a LocalRun): settings and temporary credentials."""

    def __init__(self, local):
        self.local = local

    def getUserData(self, key):
        return self.local.user_data.get(key)

    def getSecurityAccessKey(self):
        return SECRETS[0]

    def getSecuritySecretKey(self):
        return SECRETS[1]

    def getSecurityToken(self):
        return SECRETS[2]

    def getRemainingTimeInMilliSeconds(self):
        return 600_000


def test_an_apply_shard_without_the_runs_bucket_changes_nothing_while_an_org_limit_is_set(
    org, shard_context, tmp_path
):
    """In the cloud, only a coordinator that keeps its run in OBS checks the organization's
    limit: a hand-made (or stale) apply shard without that bucket changes nothing."""
    use_policy(
        shard_context,
        tmp_path,
        "version: 1\norg_max_updates: 1\nrules:\n  - {name: kebab, kind: name, "
        "pattern: '^[a-z0-9]+(-[a-z0-9]+)*$', fix: normalize}\n",
    )

    report = handler(shard(), CloudContext(shard_context))

    assert report["status"] == "error" and "IMSGUARD_REPORT_BUCKET" in report["reason"]
    assert org.ims_calls() == [] and org.sts.calls == []


def test_a_shard_in_the_cloud_refuses_one_ims_endpoint_for_every_region(org, shard_context):
    """IMSGUARD_IMS_ENDPOINT would send every account's assumed credentials to one place."""
    shard_context.user_data["IMSGUARD_IMS_ENDPOINT"] = "https://ims.example.com"

    report = handler(shard(), CloudContext(shard_context))

    assert report["status"] == "error" and "IMSGUARD_IMS_ENDPOINT" in report["reason"]
    assert org.ims_calls() == [] and org.sts.calls == []
