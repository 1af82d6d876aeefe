"""The org sweep's coordinator: discovery into shards, the local engine (shards run
concurrently through the handler and the real SDKs against the fakes), the organization's
limit, and the cloud fan-out through FunctionGraph's async invoke with continuation."""

from __future__ import annotations

import json
import time

import pytest

from helpers import SECRETS
from imsguard import app
from imsguard.org import coordinator, discovery
from imsguard_tools import org_local
from imsguard_tools.local_context import LocalContext
from imsguard_tools.org_local import FakeOrg, LocalInvoker, run_local
from imsguard_tools.testing import FakeFunctionGraph

URN_TAIL = "function:default:imsguard:latest"


def context_for(org: FakeOrg, concurrency: int = 50, **extra: str) -> LocalContext:
    ak, sk, token = SECRETS
    return LocalContext({**org.user_data(concurrency), **extra}, ak, sk, token)


def run(org: FakeOrg, event: dict | None = None, concurrency: int = 50, policy=None):
    """The local engine on ``event``; the result and the invoker (its events, in flight)."""
    extra = {"IMSGUARD_POLICY": str(policy)} if policy else {}
    context = context_for(org, concurrency, **extra)
    invoker = LocalInvoker(app.handler, org.shard_context(context), concurrency)
    try:
        with org.serving():
            result = run_local({"action": "org-sweep", **(event or {})}, context, invoker)
    finally:
        invoker.close()
    return result, invoker


def patches(org: FakeOrg) -> int:
    return sum(len(fake.patches) for fake in org.ims.values())


def write_policy(tmp_path, limits: str):
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: 1\n{limits}\nrules:\n  - {{name: names, kind: name}}\n")
    return path


def test_accounts_on_every_page_become_shards(clock, monkeypatch):
    monkeypatch.setattr(discovery, "PAGE_SIZE", 2)
    org = FakeOrg(5, 2, 6, clock)

    result, invoker = run(org)

    pages = [c for c in org.organizations.calls if c.path == "/v1/organizations/accounts"]
    assert len(pages) == 3
    ids = [a.id for a in org.organizations.accounts]
    assert [(s["account"], s["region"]) for s in result["shards"]] == [
        (a, r) for a in ids for r in org.regions
    ]
    assert all(s["status"] == "ok" and s["examined"] == 6 for s in result["shards"])
    assert result["examined"] == 60
    assert result["summary"]["updated"] == patches(org) > 0
    assert {e["phase"] for e in invoker.events} == {"apply"}


def test_explicit_accounts_and_regions_are_the_shards(clock):
    org = FakeOrg(4, 3, 3, clock)
    first, _, third, _ = (a.id for a in org.organizations.accounts)
    unknown = "f" * 32  # no agency there

    result, invoker = run(
        org, {"accounts": [third, first, unknown], "regions": ["ap-southeast-2", "cn-north-9"]}
    )

    entries = [(s["account"], s["region"], s["status"]) for s in result["shards"]]
    assert entries == [
        (third, "ap-southeast-2", "ok"),
        (third, "cn-north-9", "skipped"),
        (first, "ap-southeast-2", "ok"),
        (first, "cn-north-9", "skipped"),
        (unknown, None, "skipped"),  # not a member: its agency is never asked for
    ]
    assert "not an active member of the organization" in result["shards"][4]["reason"]
    assert "has no enabled project in cn-north-9" in result["shards"][1]["reason"]
    assert [e["region"] for e in invoker.events] == ["ap-southeast-2"] * 2
    assert not any(unknown in str(c.body) for c in org.sts.calls)
    touched = {key for key, fake in org.ims.items() if fake.calls}
    assert touched == {(third, "ap-southeast-2"), (first, "ap-southeast-2")}


def test_concurrency_is_bounded_as_set(clock):
    org = FakeOrg(4, 2, 5, clock)
    for fake in org.ims.values():  # each request really takes a while: shards overlap
        fake.before_request = lambda method, path: time.sleep(0.005)

    result, invoker = run(org, concurrency=3)

    assert len(invoker.events) == 8 and all(s["status"] == "ok" for s in result["shards"])
    assert invoker.max_in_flight == 3


def test_over_the_org_limit_nothing_changes_anywhere_and_every_plan_is_reported(clock, tmp_path):
    org = FakeOrg(3, 2, 10, clock)
    policy = write_policy(tmp_path, "org_max_updates: 5")

    result, invoker = run(org, policy=policy)

    assert patches(org) == 0
    assert {e["phase"] for e in invoker.events} == {"plan"}
    assert result["status"] == "held"
    assert "more than org_max_updates 5; nothing was changed in any account" in result["reason"]
    planned = result["summary"]["would_update"]
    assert planned > 5 and "updated" not in result["summary"]
    assert all(s["status"] == "held" for s in result["shards"])
    assert sum(len(s["would_change"]) for s in result["shards"]) == planned


def test_within_the_org_limit_every_shard_plans_then_applies(clock, tmp_path):
    org = FakeOrg(3, 2, 10, clock)
    policy = write_policy(tmp_path, "org_max_updates: 1000\norg_max_updates_percent: 90")

    result, invoker = run(org, policy=policy)

    phases = [e["phase"] for e in invoker.events]
    assert phases == ["plan"] * 6 + ["apply"] * 6
    assert result["status"] == "ok" and result["reason"] is None
    assert result["summary"]["updated"] == patches(org) > 0


def test_the_org_percent_limit_holds_too(clock, tmp_path):
    org = FakeOrg(2, 1, 20, clock)
    policy = write_policy(tmp_path, "org_max_updates_percent: 1")

    result, _ = run(org, policy=policy)

    assert result["status"] == "held" and "more than org_max_updates_percent 1" in result["reason"]
    assert patches(org) == 0


def test_a_failing_account_is_reported_while_the_others_finish(clock, tmp_path):
    org = FakeOrg(3, 2, 6, clock)
    refusing = org.organizations.accounts[1].id
    org.sts.agencies[refusing] = set()  # its agency is gone: STS answers 403

    result, _ = run(org)

    (failed,) = [s for s in result["shards"] if s["status"] != "ok"]
    assert failed["account"] == refusing and failed["status"] == "error"
    assert "STS5.1106" in failed["reason"] and f"iam::{refusing}:agency:" in failed["reason"]
    assert len([s for s in result["shards"] if s["status"] == "ok"]) == 4
    assert not any(fake.calls for (account, _), fake in org.ims.items() if account == refusing)
    assert result["summary"]["updated"] == patches(org) > 0


def test_with_an_org_limit_a_shard_that_cannot_plan_holds_every_change(clock, tmp_path):
    org = FakeOrg(2, 2, 6, clock)
    broken = org.ims[org.organizations.accounts[0].id, org.regions[1]]
    broken.fail_next("GET", 403, "APIGW.0302", times=1)
    policy = write_policy(tmp_path, "org_max_updates: 1000")

    result, invoker = run(org, policy=policy)

    assert patches(org) == 0 and {e["phase"] for e in invoker.events} == {"plan"}
    assert "the organization's limit cannot be checked" in result["reason"]
    broken.assert_injections_met()


def test_the_cli_json_has_exactly_the_documented_keys(capsys):
    from imsguard_tools.cli import main

    args = "org-sweep --fake --accounts 3 --regions 2 --images 20 --output json"
    code = main(args.split())

    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(out) == {"shards", "examined", "summary"}
    assert len(out["shards"]) == 6
    for shard in out["shards"]:
        assert set(shard) == {"account", "region", "project_id", "examined", "summary", "status"}
        assert shard["status"] == "ok" and shard["examined"] == 20
    assert out["examined"] == 120
    assert sum(out["summary"].values()) == 120


def test_the_cli_text_shows_each_shard_the_totals_and_the_time(capsys):
    from imsguard_tools.cli import main

    assert main(["org-sweep", "--fake", "--accounts", "2", "--regions", "1", "--dry-run"]) == 0

    out = capsys.readouterr().out
    assert out.count("ap-southeast-1") == 2 and "would_update" in out
    assert "organization: 2 shards, 40 examined" in out and "time: " in out


def test_the_local_engine_writes_the_organization_report_org_report_renders(capsys, tmp_path):
    from imsguard_tools.cli import main

    path = tmp_path / "org.json"
    assert (
        main(["org-sweep", "--fake", "--accounts", "2", "--regions", "2", "--report", str(path)])
        == 0
    )
    capsys.readouterr()

    report = json.loads(path.read_text())
    assert report["kind"] == "org-report" and report["status"] == "ok"
    assert report["examined"] == 80 and len(report["shards"]) == 4
    assert 0 < len(report["changed"]) <= report["summary"]["updated"]
    assert main(["org-report", str(path), "--output", "json"]) == 0
    rendered = json.loads(capsys.readouterr().out)
    assert rendered["examined"] == 80 and len(rendered["accounts"]) == 2


@pytest.fixture
def cloud(clock):
    org = FakeOrg(3, 2, 4, clock)
    fgs = FakeFunctionGraph(org.sts.project_id, "ap-southeast-1")
    fgs.fgs_endpoint = "https://fgs.home.example.com"
    urn = f"urn:fss:ap-southeast-1:{org.sts.project_id}:{URN_TAIL}"
    context = context_for(org, 2, IMSGUARD_FUNCTION_URN=urn, IMSGUARD_FGS_ENDPOINT=fgs.fgs_endpoint)
    org.organizations.attach(fgs)
    with org.serving():
        yield org, fgs, context


def test_the_cloud_coordinator_starts_its_share_and_continues_with_the_rest(cloud):
    org, fgs, context = cloud

    first = app.handler({"action": "org-sweep", "since": "2025-01-01"}, context)

    assert first["status"] == "ok" and first["shards_total"] == 6
    assert first["results"] == []  # the handler's contract: the shards report their images
    assert [s["status"] for s in first["shards"]] == ["started", "started"]
    shard_events = [i["body"] for i in fgs.invocations[:2]]
    assert all(e["action"] == "org-shard" and e["phase"] == "apply" for e in shard_events)
    assert shard_events[0]["sweep"] == {"since": "2025-01-01"}
    continued = fgs.invocations[2]["body"]
    assert continued == {
        "action": "org-sweep",
        "since": "2025-01-01",
        "org_run": first["org_run"],
        "hop": 1,
        "pending": continued["pending"],  # the 4 shards still to start
    }
    first_started = {(s["account"], s["region"]) for s in first["shards"]}
    handed = {(p["account"], p["region"]) for p in continued["pending"]}
    assert len(continued["pending"]) == 4 and first_started | handed == set(org.ims)
    discovery = len(org.sts.calls)
    hops = [first]
    while "continued" in hops[-1]:  # what FunctionGraph would deliver
        hops.append(app.handler(fgs.invocations[-1]["body"], context))
    assert len(hops) == 3
    assert len(org.sts.calls) == discovery  # later hops discover nothing again
    started = [i["body"] for i in fgs.invocations if i["body"]["action"] == "org-shard"]
    assert sorted((e["account"], e["region"]) for e in started) == sorted(org.ims)
    assert {e["org_run"] for e in started} == {first["org_run"]}
    assert all(fake.calls == [] for fake in org.ims.values())  # it never waits for a shard
    secrets = [*SECRETS, *(s for ak, i in org.sts.issued.items() for s in (ak, i.secret_key))]
    text = json.dumps([fgs.invocations, hops])
    assert org.sts.issued and not any(secret in text for secret in secrets)


def test_the_cloud_coordinator_refuses_an_org_limit_it_cannot_enforce(cloud, tmp_path):
    _, fgs, context = cloud
    context.user_data["IMSGUARD_POLICY"] = str(write_policy(tmp_path, "org_max_updates: 3"))

    answer = app.handler({"action": "org-sweep"}, context)

    assert answer["status"] == "error"
    assert "IMSGUARD_REPORT_BUCKET is unset" in answer["reason"]
    assert fgs.invocations == []


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ({"accounts": ["0123"]}, "accounts: Value error, [0] '0123' is not an account"),
        ({"regions": ["Mars"]}, "regions: Value error, [0] 'Mars' is not a region id"),
        ({"accounts": []}, "accounts: List should have at least 1 item"),
        ({"since": "soon"}, "since: not a date or time"),
        ({"tag": "no-equals"}, "tag: String should match pattern"),
        ({"start_at": 3}, "start_at, hop, shards_digest and pending come only with the org_run"),
        (
            {
                "pending": [
                    {"account": "a" * 32, "region": "ap-southeast-1", "project_id": "b" * 32}
                ]
            },
            "start_at, hop, shards_digest and pending come only with the org_run",
        ),
        (
            {"org_run": "r1", "pending": [{"account": "x", "region": "r", "project_id": "p"}]},
            "pending.0.account",
        ),
        ({"credentials": {"ak": "x"}}, "credentials: Extra inputs are not permitted"),
    ],
)
def test_malformed_org_sweep_events_are_invalid_with_the_reason(cloud, event, words):
    _, fgs, context = cloud

    answer = app.handler({"action": "org-sweep", **event}, context)

    assert answer["status"] == "invalid"
    assert answer["reason"].startswith("invalid org-sweep event: ")
    assert words.replace("Value error, ", "") in answer["reason"]
    assert fgs.invocations == []


def test_a_timer_can_start_the_org_sweep(cloud):
    _, fgs, context = cloud
    timer = {
        "trigger_type": "TIMER",
        "trigger_name": "nightly-org",
        "user_event": json.dumps({"action": "org-sweep", "regions": ["ap-southeast-1"]}),
    }

    answer = app.handler(timer, context)

    assert answer["status"] == "ok" and answer["shards_total"] == 3
    shards = [i["body"] for i in fgs.invocations if i["body"]["action"] == "org-shard"]
    assert {s["region"] for s in shards} == {"ap-southeast-1"} and len(shards) == 2


def test_each_apply_shard_may_change_at_most_what_it_planned(clock, tmp_path):
    org = FakeOrg(2, 2, 9, clock)
    policy = write_policy(tmp_path, "org_max_updates: 1000")

    result, invoker = run(org, policy=policy)

    plans = [e for e in invoker.events if e["phase"] == "plan"]
    applies = [e for e in invoker.events if e["phase"] == "apply"]
    assert len(plans) == len(applies) == 4
    caps = [e["sweep"]["max_changes"] for e in applies]
    assert sum(caps) == result["summary"]["updated"] == patches(org) > 0


def test_a_sweep_with_max_changes_changes_nothing_beyond_them():
    """What an apply shard does when its images went out of line after the plan."""
    from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms

    with FakeIms(project_id=SAMPLE_PROJECT_ID) as ims:
        for n in range(4):
            ims.add_image({"name": f"Bad_Name_{n}"})
        context = LocalContext({}, *SECRETS)
        report = app.handler({"action": "sweep", "max_changes": 3}, context)

    assert ims.patches == [] and report["summary"] == {"would_update": 4}
    assert "more than the 3 its organization's plan allowed" in report["guardrail"]


def test_a_continued_coordinator_whose_shards_changed_starts_none(cloud, monkeypatch):
    """Discovery runs again on each hop; if it finds other shards (an agency removed, an
    account joined), the positions no longer match: the hop stops and says so."""
    org, fgs, context = cloud
    monkeypatch.setattr(coordinator, "PENDING_BYTES", 0)  # too many shards to hand on
    first = app.handler({"action": "org-sweep"}, context)
    assert "shards_digest" in fgs.invocations[-1]["body"]
    org.sts.agencies[org.organizations.accounts[2].id] = set()  # a later account's agency goes
    started = len(fgs.invocations)

    second = app.handler(fgs.invocations[-1]["body"], context)

    assert first["status"] == "ok" and second["status"] == "error"
    assert "shards changed since this run's first hop" in second["reason"]
    assert len(fgs.invocations) == started  # nothing skipped, nothing started twice


def test_named_accounts_outside_the_organization_are_not_swept(clock):
    """With IMSGUARD_ORG_DOMAIN_ID set, an account the event names is swept only if it is an
    active member: an agency left behind by an account that left is not enough."""
    org = FakeOrg(2, 1, 4, clock)
    member = org.organizations.accounts[0].id
    outsider = f"{0xDEAD:032x}"
    org.sts.agencies[outsider] = {org_local.AGENCY}

    result, _ = run(org, {"action": "org-sweep", "accounts": [member, outsider]})

    by_account = {s["account"]: s for s in result["shards"]}
    assert by_account[member]["status"] == "ok"
    assert by_account[outsider]["status"] == "skipped"
    assert not any(fake.calls for (account, _), fake in org.ims.items() if account == outsider)
