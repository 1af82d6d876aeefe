"""The cloud coordinator that keeps its run in OBS: shards bounded while they run, followed
through their hop records and FunctionGraph's invocation records, the organization's limit
in two phases, and one organization report; through the real SDKs against the fakes (the
OBS SDK against the loopback fake OBS)."""

from __future__ import annotations

import json

import pytest

from helpers import SECRETS
from imsguard import app
from imsguard.org import collect, coordinator
from imsguard.org.calls import Throttled
from imsguard_tools.fake_obs import FakeObs
from imsguard_tools.local_context import LocalContext
from imsguard_tools.org_local import FakeOrg
from imsguard_tools.testing import FakeClock, FakeFunctionGraph

BUCKET = "imsguard-reports"
PREFIX = "imsguard/"  # IMSGUARD_REPORT_PREFIX's default
URN_TAIL = "function:default:imsguard:latest"


class Platform(FakeClock):
    """FunctionGraph for the test, on a fake clock: while the coordinator sleeps between two
    looks, the shard invocations it started run (through the handler), as the platform would
    run them meanwhile. ``fail``: request ids FunctionGraph gives up on (FAIL, not run);
    ``most_waiting``: the most shard invocations started and not yet run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.fgs: FakeFunctionGraph | None = None
        self.context_for = None
        self.fail: set[tuple[str, str]] = set()  # (account, region) whose invocations fail
        self.silent: set[tuple[str, str]] = set()  # never run, never recorded
        self.no_record: set[tuple[str, str]] = set()  # run without the bucket: no record
        self.shard_timeout_ms: int | None = None  # else the coordinator's
        self.fail_after: dict[tuple[str, str], float] = {}  # silent, then FAIL after s
        self.on_sleep: list = []  # one called after each sleep's shards ran, in order
        self.most_waiting = 0
        self._running = False

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if self._running or self.fgs is None:
            return  # a shard's own waits only pass time
        self._running = True
        try:
            self.run_waiting()
        finally:
            self._running = False

    def waiting(self) -> list[dict]:
        return [
            i
            for i in self.fgs.invocations
            if i["status"] == "WAIT" and i["body"]["action"] == "org-shard"
        ]

    def run_waiting(self) -> None:
        waiting = self.waiting()
        self.most_waiting = max(self.most_waiting, len(waiting))
        for invocation in waiting:
            body = invocation["body"]
            where = (body["account"], body["region"])
            if where in self.fail_after:
                if self.elapsed >= self.fail_after[where]:
                    self.fgs.set_status(invocation["request_id"], "FAIL", "timed out")
                continue
            if where in self.silent:
                continue
            if where in self.fail:
                self.fgs.set_status(invocation["request_id"], "FAIL", "RuntimeError: boom")
                continue
            context = self.context_for(body)
            context.timeout_ms = self.shard_timeout_ms or context.timeout_ms
            if where in self.no_record:
                context.user_data.pop("IMSGUARD_REPORT_BUCKET")
            self.fgs.set_status(invocation["request_id"], "RUNNING")
            try:
                app.handler(body, context)
            except Exception as exc:  # what FunctionGraph records, after its retries
                self.fgs.set_status(invocation["request_id"], "FAIL", str(exc))
            else:
                self.fgs.set_status(invocation["request_id"], "SUCCESS")
        if self.on_sleep:
            self.on_sleep.pop(0)()


@pytest.fixture
def platform(monkeypatch):
    clock = Platform()
    monkeypatch.setattr(LocalContext, "clock", clock)
    return clock


@pytest.fixture
def cloud(platform, tmp_path):
    """3 accounts x 2 regions x 4 images; the coordinator's context (2 shards at once, its
    run in the fake OBS); what FunctionGraph and OBS saw."""
    org = FakeOrg(3, 2, 4, platform)
    fgs = FakeFunctionGraph(org.sts.project_id, "ap-southeast-1", platform)
    fgs.fgs_endpoint = "https://fgs.home.example.com"
    urn = f"urn:fss:ap-southeast-1:{org.sts.project_id}:{URN_TAIL}"
    obs = FakeObs((BUCKET,))
    with org.serving(), obs.serve() as endpoint:
        org.organizations.attach(fgs)
        ak, sk, token = SECRETS
        data = {
            **org.user_data(2),
            "IMSGUARD_FUNCTION_URN": urn,
            "IMSGUARD_FGS_ENDPOINT": fgs.fgs_endpoint,
            "IMSGUARD_REPORT_BUCKET": BUCKET,
            "IMSGUARD_OBS_ENDPOINT": endpoint,
            "IMSGUARD_SWEEP_CONTINUE": "true",
        }
        context = LocalContext(data, ak, sk, token, timeout_ms=120_000)
        platform.fgs = fgs
        platform.context_for = org.shard_context(context)
        yield org, fgs, obs, context
    obs.assert_faults_met()


def coordinate(fgs, context, event=None):
    """Every coordinator hop, as FunctionGraph delivers each continuation; their answers."""
    hops = [app.handler({"action": "org-sweep", **(event or {})}, context)]
    while (hops[-1].get("continued") or {}).get("started"):
        hops.append(app.handler(hops[-1]["continued"]["payload"], context))
    return hops


def org_report(obs) -> dict:
    return json.loads(obs.text(f"{PREFIX}org-latest.json", BUCKET))


def patches(org) -> int:
    return sum(len(fake.patches) for fake in org.ims.values())


def use_policy(context, tmp_path, limits: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: 1\n{limits}\nrules:\n  - {{name: names, kind: name}}\n")
    context.user_data["IMSGUARD_POLICY"] = str(path)


def test_one_report_for_the_organization_with_at_most_the_concurrency_running(cloud, platform):
    org, fgs, obs, context = cloud

    hops = coordinate(fgs, context)

    assert hops[-1]["status"] == "ok" and hops[-1]["report"].endswith("/report.json")
    report = org_report(obs)
    assert report["kind"] == "org-report" and report["status"] == "ok"
    assert [(s["account"], s["region"]) for s in report["shards"]] == list(org.ims)
    assert all(s["status"] == "ok" and s["examined"] == 4 for s in report["shards"])
    assert report["examined"] == 24 == hops[-1]["examined"]
    assert report["summary"]["updated"] == patches(org) > 0
    assert report["failed"] == [] and report["dry_run"] is False
    assert {(c["account"], c["region"]) for c in report["changed"]} <= set(org.ims)
    assert sum(c["compliant"] + c["violation"] for c in report["rules"].values()) > 0
    assert platform.most_waiting == 2  # IMSGUARD_ORG_CONCURRENCY, never more at once
    run_report = f"{PREFIX}org/{report['org_run']}/report.json"
    assert obs.text(run_report, BUCKET) == obs.text(f"{PREFIX}org-latest.json", BUCKET)


def test_no_credentials_in_any_payload_record_or_report(cloud):
    org, fgs, obs, context = cloud

    hops = coordinate(fgs, context)

    stored = [obs.text(key, BUCKET) for key in obs.keys(BUCKET)]
    text = json.dumps([fgs.invocations, hops, stored])
    secrets = [*SECRETS, *(s for ak, i in org.sts.issued.items() for s in (ak, i.secret_key))]
    assert org.sts.issued and not any(secret in text for secret in secrets)


def test_a_continued_coordinator_goes_on_from_its_state_and_a_duplicate_hop_stops(cloud):
    org, fgs, _obs, context = cloud
    context.timeout_ms = 30_000  # one look per hop: the run takes several hops

    hops = coordinate(fgs, context)

    assert len(hops) >= 2 and hops[-1]["status"] == "ok"
    assert [h["continued"]["payload"]["hop"] for h in hops[:-1]] == list(range(1, len(hops)))
    assert set(hops[0]["continued"]["payload"]) == {"action", "org_run", "hop"}
    discovered = [c for c in org.organizations.calls if c.path == "/v1/organizations/accounts"]
    assert len(discovered) == 1  # later hops read the shards from the run
    started = [i["body"] for i in fgs.invocations if i["body"]["action"] == "org-shard"]
    assert len(started) == len(org.ims)  # none started twice
    later = {**hops[-2]["continued"]["payload"], "hop": len(hops) + 3}
    for payload in (hops[0]["continued"]["payload"], hops[-2]["continued"]["payload"], later):
        again = app.handler(payload, context)  # FunctionGraph delivering a hop twice
        assert again["status"] == "ignored" and "duplicate" in again["reason"]
    assert len(fgs.invocations) == len(started) + len(hops) - 1
    restarted = app.handler({"action": "org-sweep", "org_run": hops[0]["org_run"]}, context)
    assert restarted["status"] == "error" and "exists already" in restarted["reason"]
    assert len(fgs.invocations) == len(started) + len(hops) - 1


def test_over_the_org_limit_nothing_changes_anywhere_and_every_plan_is_reported(cloud, tmp_path):
    org, fgs, obs, context = cloud
    use_policy(context, tmp_path, "org_max_updates: 1")

    hops = coordinate(fgs, context)

    assert patches(org) == 0
    report = org_report(obs)
    assert report["status"] == "held" and "org_max_updates 1" in report["reason"]
    assert report["limit"]["planned"] == report["summary"]["would_update"] > 1
    assert {s["status"] for s in report["shards"]} == {"held"}
    assert len(report["would_change"]) == report["summary"]["would_update"]
    assert {i["body"]["phase"] for i in fgs.invocations if "phase" in i["body"]} == {"plan"}
    assert hops[-1]["status"] == "held"


def test_within_the_org_limit_every_shard_plans_then_applies_what_it_planned(cloud, tmp_path):
    org, fgs, obs, context = cloud
    use_policy(context, tmp_path, "org_max_updates: 100")

    coordinate(fgs, context)

    report = org_report(obs)
    assert report["status"] == "ok" and report["limit"]["planned"] == patches(org) > 0
    assert report["summary"]["updated"] == patches(org)
    plans = [i["body"] for i in fgs.invocations if i["body"].get("phase") == "plan"]
    applies = [i["body"] for i in fgs.invocations if i["body"].get("phase") == "apply"]
    assert len(plans) == len(applies) == len(org.ims)
    assert sum(a["sweep"]["max_changes"] for a in applies) == patches(org)
    approvals = [k for k in obs.keys(BUCKET) if k.endswith("/approved.json")]
    assert len(approvals) == len(org.ims)


def test_a_forged_apply_shard_changes_nothing_under_the_org_limit(cloud, tmp_path):
    org, _fgs, _obs, context = cloud
    use_policy(context, tmp_path, "org_max_updates: 100")
    account, region = next(iter(org.ims))
    project = org.ims[account, region].project_id
    forged = {
        "action": "org-shard",
        "org_run": "20260101T000000-forged",
        "account": account,
        "region": region,
        "project_id": project,
        "phase": "apply",
        "sweep": {"max_changes": 1000},
    }

    answer = app.handler(forged, context)

    assert answer["status"] == "error" and "did not approve this shard" in answer["reason"]
    assert patches(org) == 0 and org.sts.calls == []


def test_a_shard_functiongraph_gives_up_on_is_reported_while_the_others_finish(cloud, platform):
    org, fgs, obs, context = cloud
    platform.fail.add(next(iter(org.ims)))

    hops = coordinate(fgs, context)

    report = org_report(obs)
    assert report["status"] == "incomplete" and hops[-1]["status"] == "incomplete"
    failed = report["failed"]
    assert [(f["account"], f["region"], f["status"]) for f in failed] == [
        (*next(iter(org.ims)), "failed")
    ]
    assert "ended FAIL: RuntimeError: boom" in failed[0]["reason"]
    assert sum(s["status"] == "ok" for s in report["shards"]) == len(org.ims) - 1


def test_a_shard_that_ends_without_its_record_is_lost_not_waited_for(cloud, platform):
    org, fgs, obs, context = cloud
    where = list(org.ims)[1]
    platform.no_record.add(where)

    coordinate(fgs, context)

    failed = org_report(obs)["failed"]
    assert [(f["account"], f["region"], f["status"]) for f in failed] == [(*where, "lost")]
    assert "without writing its record" in failed[0]["reason"]


def test_a_shard_never_heard_of_again_is_lost_after_the_deadline(cloud, platform, monkeypatch):
    org, fgs, obs, context = cloud
    monkeypatch.setattr(collect, "EVENT_AGE_S", 60.0)
    where = list(org.ims)[2]
    platform.silent.add(where)

    hops = coordinate(fgs, context)

    failed = org_report(obs)["failed"]
    assert [(f["account"], f["region"], f["status"]) for f in failed] == [(*where, "lost")]
    assert "no record of hop 0" in failed[0]["reason"]
    assert len(hops) > 1  # it waited across coordinator hops, then gave up


def test_a_dry_run_plans_only_and_reports_what_would_change(cloud):
    org, fgs, obs, context = cloud

    coordinate(fgs, context, {"dry_run": True})

    report = org_report(obs)
    assert report["dry_run"] is True and patches(org) == 0
    assert report["summary"]["would_update"] == len(report["would_change"]) > 0


def test_obs_failing_part_way_through_a_look_counts_no_record_twice(cloud, platform):
    org, fgs, obs, context = cloud

    def fail_the_second_read():  # the first shard's record is read, the next one fails
        obs.fail_next(None)
        obs.fail_next(500, times=3)

    # after the claim's wait, and the first shards ran
    platform.on_sleep += [lambda: None, fail_the_second_read]

    hops = coordinate(fgs, context)

    report = org_report(obs)
    assert report["status"] == "ok" and report["examined"] == 24
    assert report["summary"]["updated"] == patches(org)
    assert all(s["hops"] == 1 for s in report["shards"])
    assert len(hops) > 1  # the hop that met the failure went on in a new one


def test_a_dry_run_under_the_org_limit_says_a_real_run_would_be_held(cloud, tmp_path):
    org, fgs, obs, context = cloud
    use_policy(context, tmp_path, "org_max_updates: 1")

    coordinate(fgs, context, {"dry_run": True})

    report = org_report(obs)
    assert report["status"] == "held" and "org_max_updates 1" in report["reason"]
    assert report["limit"]["planned"] == report["summary"]["would_update"] > 1
    assert patches(org) == 0


def test_an_account_still_throttled_holds_the_org_limit(cloud, tmp_path, monkeypatch):
    org, fgs, obs, context = cloud
    use_policy(context, tmp_path, "org_max_updates: 100")
    first = org.organizations.accounts[0].id
    listed = coordinator.list_regions

    def throttled_for_the_first(credentials, account, *args):
        if account == first:
            raise Throttled(f"IAM refused keystone_list_auth_projects for account {account}")
        return listed(credentials, account, *args)

    monkeypatch.setattr(coordinator, "list_regions", throttled_for_the_first)

    coordinate(fgs, context)

    report = org_report(obs)
    assert report["status"] == "held" and "did not plan" in report["reason"]
    assert patches(org) == 0


def test_a_shard_functiongraph_refuses_to_start_is_started_at_the_next_look(cloud):
    org, fgs, obs, context = cloud
    fgs.fail_next("POST", 429, "FSS.0429", "Too many requests")

    coordinate(fgs, context)

    report = org_report(obs)
    assert report["status"] == "ok" and report["examined"] == 24
    started = [i["body"] for i in fgs.invocations if i["body"]["action"] == "org-shard"]
    assert len(started) == len(org.ims)


def test_a_shard_failing_after_an_hour_is_found_through_functiongraphs_records(cloud, platform):
    org, fgs, obs, context = cloud
    where = list(org.ims)[3]
    platform.fail_after[where] = 3700.0  # queued, given up on after more than an hour

    coordinate(fgs, context)

    failed = org_report(obs)["failed"]
    assert [(f["account"], f["region"], f["status"]) for f in failed] == [(*where, "failed")]
    assert "ended FAIL: timed out" in failed[0]["reason"]


def test_a_shard_that_continues_itself_is_followed_through_every_hop(cloud, platform):
    org, fgs, obs, context = cloud
    context.user_data["IMSGUARD_SWEEP_RATE"] = "1"  # a request a second on the fake clock
    context.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "1"
    platform.shard_timeout_ms = 16_000  # 6 s of work per shard hop: they continue

    hops = coordinate(fgs, context)

    report = org_report(obs)
    assert report["status"] == "ok" and report["examined"] == 24
    assert report["summary"]["updated"] == patches(org) > 0
    assert all(s["status"] == "ok" for s in report["shards"])
    assert max(s["hops"] for s in report["shards"]) > 1
    assert all(len(s["report_keys"]) == s["hops"] for s in report["shards"])
    shard_hops = [i for i in fgs.invocations if i["body"]["action"] == "org-shard"]
    assert len(shard_hops) == sum(s["hops"] for s in report["shards"]) > len(org.ims)
    assert hops[-1]["status"] == "ok"
    assert platform.most_waiting == 2  # shards in flight across looks: never more at once


def test_an_account_whose_discovery_was_throttled_is_tried_again_in_a_later_hop(cloud, monkeypatch):
    org, fgs, obs, context = cloud
    monkeypatch.setattr(coordinator, "DISCOVERY_THREADS", 1)  # the first account is throttled
    org.iam.fail_next("GET", 429, "APIGW.0308", times=4)  # more than the call's own retries

    hops = coordinate(fgs, context)

    report = org_report(obs)
    assert report["status"] == "ok" and report["failed"] == []
    assert sorted((s["account"], s["region"]) for s in report["shards"]) == sorted(org.ims)
    assert all(s["status"] == "ok" and s["examined"] == 4 for s in report["shards"])
    first = org.organizations.accounts[0].id
    assert [s["account"] for s in report["shards"]][-2:] == [first, first]  # found later
    assert len(hops) > 1


def test_an_account_throttled_in_every_try_is_reported_not_dropped(cloud, monkeypatch):
    org, fgs, obs, context = cloud
    first = org.organizations.accounts[0].id
    listed = coordinator.list_regions
    tried = []

    def throttled_for_the_first(credentials, account, *args):
        tried.append(account)
        if account == first:  # IAM answers 429 beyond the call's retries (test_org_discovery)
            raise Throttled(f"IAM refused keystone_list_auth_projects for account {account}")
        return listed(credentials, account, *args)

    monkeypatch.setattr(coordinator, "list_regions", throttled_for_the_first)
    tries = 1 + collect.REDISCOVERIES

    hops = coordinate(fgs, context)

    report = org_report(obs)
    assert report["status"] == "incomplete"
    assert [(f["account"], f["status"]) for f in report["failed"]] == [(first, "throttled")]
    assert "regions not listed" in report["failed"][0]["reason"]
    assert sum(s["status"] == "ok" for s in report["shards"]) == 4
    assert tried.count(first) == tries and len(hops) >= tries


def test_an_approved_apply_shard_replayed_after_it_ended_changes_nothing(cloud, tmp_path):
    org, fgs, _obs, context = cloud
    use_policy(context, tmp_path, "org_max_updates: 100")
    coordinate(fgs, context)
    done = patches(org)
    applied = [i["body"] for i in fgs.invocations if i["body"].get("phase") == "apply"]
    org.ims[applied[0]["account"], applied[0]["region"]].add_image({"name": "Out_Of_Line"})

    answer = app.handler(applied[0], context)  # the coordinator's own event, again

    assert answer["status"] == "error" and "revoked" in answer["reason"]
    assert patches(org) == done


def approve(obs, event, most, token="a" * 32):
    """An approval as the coordinator writes it, for a hand-made apply event."""
    key = f"{PREFIX}org/{event['org_run']}/apply/{event['account']}/{event['region']}/"
    put(obs, key + f"{event['project_id']}/approved.json", {"token": token, "max_changes": most})
    return {**event, "approval": token}


def put(obs, key, document):
    obs.objects[BUCKET, key] = json.dumps(document).encode()
    obs.content_types[BUCKET, key] = "application/json"


def apply_event(org, **sweep):
    account, region = next(iter(org.ims))
    return {
        "action": "org-shard",
        "org_run": "20260101T000000-run",
        "account": account,
        "region": region,
        "project_id": org.ims[account, region].project_id,
        "phase": "apply",
        "sweep": sweep,
    }


@pytest.mark.parametrize(
    ("sweep", "token", "words"),
    [
        ({"max_changes": 6}, "a" * 32, "approved at most 5 change(s)"),
        ({"max_changes": 5}, "b" * 32, "did not approve this shard"),
        ({"max_changes": 5, "hop": 1}, "a" * 32, "does not follow this shard's earlier hops"),
    ],
)
def test_an_apply_event_beyond_its_approval_changes_nothing(cloud, tmp_path, sweep, token, words):
    org, _fgs, obs, context = cloud
    use_policy(context, tmp_path, "org_max_updates: 100")
    event = approve(obs, apply_event(org, **sweep), 5)

    answer = app.handler({**event, "approval": token}, context)

    assert answer["status"] == "error" and words in answer["reason"]
    assert patches(org) == 0 and org.sts.calls == []


def test_a_continued_apply_event_must_count_what_its_earlier_hops_changed(cloud, tmp_path):
    org, _fgs, obs, context = cloud
    use_policy(context, tmp_path, "org_max_updates: 100")
    event = approve(obs, apply_event(org, max_changes=5, hop=1, planned_before=0), 5)
    first = f"{PREFIX}org/{event['org_run']}/apply/{event['account']}/{event['region']}/"
    first += f"{event['project_id']}/hop-0.json"
    record = {"kind": "org-shard-hop", "summary": {"updated": 4}, "continued": "r" * 32}
    put(obs, first, record)

    answer = app.handler(event, context)

    assert answer["status"] == "error" and "changed 4 image(s)" in answer["reason"]
    assert patches(org) == 0


@pytest.mark.parametrize(("value", "expected"), [("7200", 7200.0), ("30", None), ("soon", None)])
def test_the_shard_deadline_setting_is_checked(value, expected):
    from imsguard.settings import SettingsError, load_settings

    context = LocalContext({"IMSGUARD_ORG_SHARD_DEADLINE_SECONDS": value})
    if expected is None:
        with pytest.raises(SettingsError, match="IMSGUARD_ORG_SHARD_DEADLINE_SECONDS"):
            load_settings(context)
    else:
        assert load_settings(context).org_shard_deadline_s == expected


def test_a_first_hop_retried_after_a_crash_starts_no_shard_twice(cloud, monkeypatch):
    org, fgs, obs, context = cloud
    follow, looks = collect.OrgRun.follow, []

    def killed_at_the_second_look(run):
        looks.append(1)
        if len(looks) == 2:  # after the first shards started: the platform stops the hop
            raise SystemExit("killed")
        follow(run)

    monkeypatch.setattr(collect.OrgRun, "follow", killed_at_the_second_look)
    with pytest.raises(SystemExit):
        app.handler({"action": "org-sweep"}, context)
    monkeypatch.setattr(collect.OrgRun, "follow", follow)

    hops = coordinate(fgs, context)  # FunctionGraph retries it: the same request id

    assert hops[-1]["status"] == "ok" and org_report(obs)["examined"] == 24
    started = [i["body"] for i in fgs.invocations if i["body"]["action"] == "org-shard"]
    assert len(started) == len(org.ims)
