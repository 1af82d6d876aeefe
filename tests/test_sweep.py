"""The fleet sweep, through the handler and the real SDK against the fake IMS."""

from __future__ import annotations

import math
import threading

import pytest

from helpers import load_event, use_policy
from imsguard.app import handler
from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms

URN = f"urn:fss:ap-southeast-1:{SAMPLE_PROJECT_ID}:function:default:imsguard:latest"


@pytest.fixture
def fleet():
    """An empty project, to fill with images: a third of them need a change."""
    with FakeIms(project_id=SAMPLE_PROJECT_ID) as fake:
        yield fake
    fake.assert_injections_met()


def fill(fake, count, bad_every=3):
    ids = []
    for index in range(count):
        bad = index % bad_every == 0
        image = fake.add_image(
            {
                "name": f"Image_{index:05d}" if bad else f"image-{index:05d}",
                "hw_firmware_type": "uefi",
                "hw_vif_multiqueue_enabled": "true",
            }
        )
        ids.append((image["id"], bad))
    return ids


def sweep(context, **options):
    return handler({"action": "sweep", **options}, context)


def short_of_time(fleet, context, clock, **settings):
    """Sweeps that continue themselves: pages of 10, 17 s to run, each request 2 s long."""
    context.user_data.update(
        IMSGUARD_SWEEP_PAGE_SIZE="10",
        IMSGUARD_SWEEP_CONTINUE="true",
        IMSGUARD_FUNCTION_URN=URN,
        IMSGUARD_FGS_ENDPOINT=fleet.fgs_endpoint,
        **settings,
    )
    context.timeout_ms = 17_000
    fleet.before_request = lambda method, path: setattr(clock, "elapsed", clock.elapsed + 2)


def lists(fake):
    return [c for c in fake.calls if c.method == "GET"]


@pytest.mark.parametrize("page_info", [True, False])
def test_every_image_is_visited_once_across_pages_while_patching(fleet, context, page_info):
    fleet.page_info = page_info
    images = fill(fleet, 57)
    context.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "10"

    report = sweep(context)

    assert report["status"] == "ok" and report["examined"] == 57
    assert "continuation" not in report
    assert len(lists(fleet)) == math.ceil(57 / 10) + (0 if page_info else 1)  # an empty page
    patched = [c.path.rsplit("/", 1)[1] for c in fleet.patches]
    assert sorted(patched) == sorted(i for i, bad in images if bad)
    assert report["summary"] == {"compliant": 38, "updated": 19}
    assert all(i["name"] == i["name"].lower() for i in fleet.images.values())


def test_without_page_info_the_listing_ends_only_with_an_empty_page(fleet, context):
    fill(fleet, 20)
    context.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "10"

    sweep(context)
    without = len(lists(fleet))
    fleet.reset_calls()
    fleet.page_info = True
    sweep(context)

    assert (without, len(lists(fleet))) == (3, 2)


@pytest.mark.parametrize("page_info", [True, False])
def test_a_page_shorter_than_asked_for_is_not_the_end(fleet, context, page_info):
    fleet.page_info = page_info
    fleet.max_page_size = 7  # IMS documents no maximum: it may answer with fewer
    images = fill(fleet, 50)

    report = sweep(context)  # asks for 500 a page

    assert report["examined"] == 50 and report["status"] == "ok"
    assert sorted(c.path.rsplit("/", 1)[1] for c in fleet.patches) == sorted(
        i for i, bad in images if bad
    )
    assert len(lists(fleet)) == math.ceil(50 / 7) + (0 if page_info else 1)


def test_only_active_private_images_are_listed_and_since_filters_server_side(fleet, context):
    fill(fleet, 3)

    sweep(context, since="2026-01-01T00:00:01Z")

    query = lists(fleet)[0].query
    assert query == {
        "__imagetype": "private",
        "status": "active",
        "limit": "500",
        "created_at": "gt:2026-01-01T00:00:01Z",
    }


def test_guardrail_count_changes_nothing_and_reports_every_image(fleet, context, tmp_path):
    fill(fleet, 30)
    use_policy(
        context, tmp_path, "version: 1\nmax_updates: 5\nrules:\n  - {name: names, kind: name}\n"
    )

    report = sweep(context)

    assert fleet.patches == []
    assert report["summary"] == {"compliant": 20, "would_update": 10}
    assert report["guardrail"] == (
        "10 images would change, more than max_updates 5; nothing "
        "was changed; the changes held back are listed under "
        "would_change"
    )
    held = [r for r in report["results"] if r["outcome"] == "would_update"]
    assert len(held) == 10 and all(r["reason"] == report["guardrail"] for r in held)
    assert [(c["image_id"], c["before"]) for c in report["would_change"]] == [
        (r["image_id"], {"name": fleet.images[r["image_id"]]["name"]}) for r in held
    ]


def test_guardrail_percent(fleet, context, tmp_path):
    fill(fleet, 30)
    use_policy(
        context,
        tmp_path,
        "version: 1\nmax_updates_percent: 30\nrules:\n  - {name: n, kind: name}\n",
    )

    report = sweep(context)

    assert (
        fleet.patches == [] and "(33.3%), more than max_updates_percent 30" in report["guardrail"]
    )


def test_within_the_guardrail_changes_are_made(fleet, context, tmp_path):
    fill(fleet, 30)
    use_policy(
        context,
        tmp_path,
        "version: 1\nmax_updates: 10\nmax_updates_percent: 34\nrules:\n  - {name: n, kind: name}\n",
    )

    assert sweep(context)["summary"] == {"compliant": 20, "updated": 10}
    assert len(fleet.patches) == 10


def test_dry_run_sweep_sends_nothing(fleet, context):
    fill(fleet, 9)

    report = sweep(context, dry_run=True)

    assert fleet.patches == []
    assert report["dry_run"] is True and report["summary"] == {"compliant": 6, "would_update": 3}


def test_out_of_time_returns_a_continuation_and_the_next_run_finishes(fleet, context, clock):
    images = fill(fleet, 60)
    context.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "10"
    context.timeout_ms = 25_000  # 10 s margin: 15 s for requests of 2 s each
    fleet.before_request = lambda method, path: setattr(clock, "elapsed", clock.elapsed + 2)
    seen: set[str] = set()
    reports = []
    marker = None
    for _ in range(10):
        clock.elapsed = 0
        options = {"marker": marker} if marker else {}
        reports.append(sweep(context, **options))
        assert clock.monotonic() <= 25  # the whole invocation ended inside its 25 s
        seen.update(r["image_id"] for r in reports[-1]["results"])
        if "continuation" not in reports[-1]:
            break
        marker = reports[-1]["continuation"]["marker"]
        assert reports[-1]["continued"]["started"] is False  # not enabled in settings

    assert len(reports) > 1
    assert seen == {i for i, _ in images}
    assert sorted(c.path for c in fleet.patches) == sorted(
        f"/v2/cloudimages/{i}" for i, bad in images if bad
    )


def test_continuation_invokes_the_function_again_through_functiongraph(fleet, context, clock):
    fill(fleet, 30)
    short_of_time(fleet, context, clock)

    first = sweep(context, dry_run=True, since="2025-01-01")

    assert first["continued"]["started"] is True
    (invocation,) = fleet.invocations
    assert invocation["function_urn"] == URN
    assert invocation["body"] == {
        "action": "sweep",
        "dry_run": True,
        "since": "2025-01-01",
        "hop": 1,
        "marker": first["continuation"]["marker"],
        "examined_before": first["examined"],
        "planned_before": first["summary"]["would_update"],
    }
    clock.elapsed = 0
    second = handler(invocation["body"], context)  # what FunctionGraph would deliver
    assert second["trigger"] == "sweep (direct, continuation 1)"
    assert {r["image_id"] for r in first["results"]}.isdisjoint(
        r["image_id"] for r in second["results"]
    )


def test_continuations_stop_after_max_hops(fleet, context, clock):
    fill(fleet, 30)
    short_of_time(fleet, context, clock, IMSGUARD_SWEEP_MAX_HOPS="2")
    report = sweep(context, hop=2)

    assert report["continued"] == {
        "started": False,
        "reason": ("IMSGUARD_SWEEP_MAX_HOPS (2) continuations already made"),
    }
    assert fleet.invocations == []


def test_a_refused_invocation_is_reported(fleet, context, clock):
    fill(fleet, 30)
    short_of_time(fleet, context, clock)
    fleet.fail_next("POST", 403, "FSS.1403", "no permission to invoke")

    report = sweep(context)

    assert report["continued"]["started"] is False
    assert "no permission to invoke" in report["continued"]["reason"]


def test_results_are_capped_but_counts_are_whole(fleet, context):
    fill(fleet, 20)
    context.user_data["IMSGUARD_RESULTS_LIMIT"] = "5"

    report = sweep(context)

    assert len(report["results"]) == 5 and report["truncated"] is True
    assert sum(report["summary"].values()) == 20
    assert report["rules"]["kebab-case-name"] == {"compliant": 13, "violation": 7}
    assert len(report["changed"]) == 5


def test_needs_attention_lists_what_imsguard_cannot_fix(fleet, context):
    fleet.add_image(
        {"name": "___", "hw_firmware_type": "uefi", "hw_vif_multiqueue_enabled": "true"}
    )
    fill(fleet, 2)

    report = sweep(context)

    assert [(r["image_name"], r["outcome"]) for r in report["needs_attention"]] == [
        ("___", "non_compliant")
    ]


def test_patches_run_concurrently_but_never_more_than_the_setting(context):
    """Over real loopback HTTP (the in-process mock handles one request at a time)."""
    fake = FakeIms(project_id=SAMPLE_PROJECT_ID)
    fill(fake, 16, bad_every=1)
    lock = threading.Lock()
    state = {"now": 0, "most": 0, "started": 0}
    four_at_once = threading.Barrier(4, timeout=10)

    def before(method, path):
        if method != "PATCH":
            return
        with lock:
            state["now"] += 1
            state["started"] += 1
            state["most"] = max(state["most"], state["now"])
            first_four = state["started"] <= 4
        if first_four:
            four_at_once.wait()  # the first four really are in flight together
        with lock:
            state["now"] -= 1

    fake.before_request = before
    context.user_data["IMSGUARD_SWEEP_CONCURRENCY"] = "4"
    with fake.serve() as endpoint:
        context.user_data["IMSGUARD_IMS_ENDPOINT"] = endpoint
        report = sweep(context)

    assert report["summary"] == {"updated": 16}
    assert state["most"] == 4


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ({"action": "sweep", "since": "yesterday"}, "since: not a date"),
        ({"action": "sweep", "limit": -1}, "limit"),
        ({"action": "sweep", "limit": "10"}, "limit"),
        ({"action": "sweep", "bogus": 1}, "bogus"),
        ({"action": "sweep", "marker": "../x"}, "marker: not an image id"),
        ({"action": "clean"}, "unknown action 'clean'"),
        ({**load_event("timer.json"), "user_event": "please sweep"}, "user_event is not JSON"),
        ({**load_event("timer.json"), "user_event": "[1]"}, "must be a JSON object"),
        ({**load_event("timer.json"), "user_event": '{"dry_run": "yes"}'}, "dry_run"),
    ],
)
def test_invalid_sweep_options_change_nothing(fleet, context, event, words):
    fill(fleet, 3)

    report = handler(event, context)

    assert report["status"] == "invalid" and words in report["reason"]
    assert fleet.calls == []


def test_a_marker_the_api_rejects_starts_the_listing_again(fleet, context):
    fill(fleet, 3)

    report = sweep(context, marker="00000000-0000-4000-8000-000000000000")

    assert report["status"] == "ok" and report["examined"] == 3
    assert report["notes"] == [
        "the marker no longer exists; the listing started again from the newest image"
    ]
    assert [c.query.get("marker") for c in lists(fleet)][:2] == [
        "00000000-0000-4000-8000-000000000000",
        None,
    ]
    assert len(lists(fleet)) == 3  # then on from the last image, to an empty page
    assert len(fleet.patches) == 1


def test_an_image_deleted_under_the_marker_mid_sweep(fleet, context):
    images = fill(fleet, 30)
    context.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "10"

    def delete_marker(method, path):
        if method == "GET" and len(lists(fleet)) == 1:
            del fleet.images[images[-10][0]]  # the first page's last image

    fleet.before_request = delete_marker

    report = sweep(context)

    assert report["status"] == "ok"
    assert report["notes"] == [
        "the marker's image no longer exists; the listing went on from its creation time"
    ]
    assert "continuation" not in report
    patched = sorted(c.path.rsplit("/", 1)[1] for c in fleet.patches)
    assert patched == sorted(i for i, bad in images if bad and i in fleet.images)


def test_a_page_failing_after_retries_changes_nothing(fleet, context):
    fill(fleet, 30)
    context.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "10"
    calls = {"n": 0}

    def second_page_down(method, path):
        calls["n"] += 1
        if calls["n"] == 2:
            fleet.fail_next("GET", 503, "APIGW.0203", "Service unavailable", times=4)

    fleet.before_request = second_page_down

    report = sweep(context)

    assert report["status"] == "error" and "APIGW.0203" in report["error"]
    assert fleet.patches == []  # the first page's plans are not applied either
    assert report["continuation"]["marker"] is None  # where this run started
    assert report["summary"]["would_update"] == 3
    assert len(lists(fleet)) == 5  # the first page, then the second tried four times


def test_a_page_that_fails_once_is_retried(fleet, context):
    fill(fleet, 6)
    fleet.fail_next("GET", 503, "APIGW.0203", "Service unavailable")

    report = sweep(context)

    assert report["status"] == "ok" and report["summary"] == {"compliant": 4, "updated": 2}


@pytest.mark.parametrize(("count", "limit"), [(30, 15), (25, 23), (30, 10)])
def test_limit_examines_exactly_so_many_and_resumes_right_after(fleet, context, count, limit):
    fill(fleet, count)
    context.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "10"
    examined: list[str] = []
    marker = None
    for _ in range(10):
        report = sweep(context, limit=limit, **({"marker": marker} if marker else {}))
        examined += [r["image_id"] for r in report["results"]]
        assert report["examined"] <= limit
        if "continuation" not in report:
            break
        assert report["continuation"]["cause"] == "limit"
        assert report["continued"]["started"] is False
        marker = report["continuation"]["marker"]

    assert len(examined) == count == len(set(examined))


def test_the_guardrail_counts_the_whole_sweep_across_hops(fleet, context, clock, tmp_path):
    fill(fleet, 60)
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nmax_updates: 5\nrules:\n  - {name: names, kind: name}\n")
    context.user_data.update(
        IMSGUARD_POLICY=str(policy),
        IMSGUARD_SWEEP_PAGE_SIZE="10",
        IMSGUARD_SWEEP_CONTINUE="true",
        IMSGUARD_FUNCTION_URN=URN,
        IMSGUARD_FGS_ENDPOINT=fleet.fgs_endpoint,
    )
    context.timeout_ms = 17_000
    fleet.before_request = lambda method, path: setattr(clock, "elapsed", clock.elapsed + 2)
    event = {"action": "sweep"}
    for _ in range(10):
        clock.elapsed = 0
        report = handler(event, context)
        if not report.get("continued", {}).get("started"):
            break
        event = fleet.invocations[-1]["body"]

    assert len(fleet.patches) <= 5
    assert "guardrail" in report


def test_dry_run_reports_the_guardrail_too(fleet, context, tmp_path):
    fill(fleet, 30)
    use_policy(
        context, tmp_path, "version: 1\nmax_updates: 5\nrules:\n  - {name: names, kind: name}\n"
    )

    report = sweep(context, dry_run=True)

    assert "a real run would change nothing" in report["guardrail"]
    assert len(report["would_change"]) == 10 and report["changed"] == []
    assert fleet.patches == []


def test_a_hop_whose_first_page_ran_out_of_time_still_continues(fleet, context, clock):
    fill(fleet, 10, bad_every=1)
    context.user_data.update(
        IMSGUARD_SWEEP_CONTINUE="true",
        IMSGUARD_FUNCTION_URN=URN,
        IMSGUARD_FGS_ENDPOINT=fleet.fgs_endpoint,
        IMSGUARD_SWEEP_CONCURRENCY="1",
    )
    context.timeout_ms = 20_000
    fleet.before_request = lambda method, path: setattr(clock, "elapsed", clock.elapsed + 1)

    report = sweep(context)

    updated = report["summary"]["updated"]
    assert 0 < updated < 10
    assert report["continued"]["started"] is True
    assert report["continuation"]["marker"] == fleet.patches[-1].path.rsplit("/", 1)[1]


@pytest.mark.parametrize(("hop", "started"), [(1, True), (2, False)])
def test_max_hops_boundary(fleet, context, clock, hop, started):
    fill(fleet, 30)
    short_of_time(fleet, context, clock, IMSGUARD_SWEEP_MAX_HOPS="2")

    report = sweep(context, hop=hop)

    assert report["continued"]["started"] is started


def test_rate_limit_is_neither_exceeded_nor_overdone(fleet, context, clock):
    fill(fleet, 30, bad_every=1)  # two list requests (the last one empty), then 30 PATCHes
    context.user_data["IMSGUARD_SWEEP_RATE"] = "5"

    sweep(context)

    assert len(fleet.calls) == 32
    # a burst of 5, then one every 0.2 s: the 32nd request at (32 - 5) * 0.2 s
    assert clock.monotonic() == pytest.approx((32 - 5) / 5)


def test_a_since_out_of_range_is_refused(fleet, context):
    report = sweep(context, since="0001-01-01T00:00:00+05:00")

    assert report["status"] == "invalid" and "since" in report["reason"]


def test_images_deferred_while_applying_are_counted_once_by_the_guardrail(
    fleet, context, clock, tmp_path
):
    """Issue 12, point 4: a hop that runs out of time while applying hands its deferred
    images on; the next hop lists them again and must not count them a second time."""
    fill(fleet, 300, bad_every=3)  # 100 out of line
    use_policy(
        context, tmp_path, "version: 1\nmax_updates: 100\nrules:\n  - {name: names, kind: name}\n"
    )
    context.user_data.update(
        IMSGUARD_SWEEP_PAGE_SIZE="100",
        IMSGUARD_SWEEP_CONTINUE="true",
        IMSGUARD_FUNCTION_URN=URN,
        IMSGUARD_FGS_ENDPOINT=fleet.fgs_endpoint,
        IMSGUARD_SWEEP_RATE="1000",
    )
    context.timeout_ms = 40_000
    fleet.before_request = lambda method, path: setattr(
        clock, "elapsed", clock.elapsed + (2 if method == "GET" else 0.6)
    )
    event = {"action": "sweep"}
    reports = []
    for _ in range(10):
        clock.elapsed = 0
        reports.append(handler(event, context))
        if not reports[-1].get("continued", {}).get("started"):
            break
        event = fleet.invocations[-1]["body"]

    assert len(reports) >= 2 and any(r["summary"].get("deferred") for r in reports)
    assert not any("guardrail" in r for r in reports)
    assert len({c.path for c in fleet.patches}) == len(fleet.patches) == 100
    assert all(name == name.lower() for name in (i["name"] for i in fleet.images.values()))


@pytest.mark.parametrize("phase", ["evaluate", "patch"])
def test_a_bug_on_one_image_is_logged_with_its_traceback_and_the_sweep_goes_on(
    fleet, context, capsys, monkeypatch, phase
):
    import json

    from imsguard import sweep as sweep_module

    ids = fill(fleet, 3, bad_every=1)
    odd = ids[1][0]
    if phase == "evaluate":
        evaluate = sweep_module.evaluate

        def buggy(policy, image, *args):
            if image["id"] == odd:
                raise KeyError("a bug")
            return evaluate(policy, image, *args)

        monkeypatch.setattr(sweep_module, "evaluate", buggy)
    else:
        from imsguard.ims import ImsGateway

        update_image = ImsGateway.update_image

        def buggy(self, image_id, operations):
            if image_id == odd:
                raise KeyError("a bug")
            return update_image(self, image_id, operations)

        monkeypatch.setattr(ImsGateway, "update_image", buggy)

    report = sweep(context)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    failures = [line for line in lines if line["message"] == "unexpected failure"]
    assert len(failures) == 1 and failures[0]["image_id"] == odd
    assert "KeyError: 'a bug'" in failures[0]["exception"]  # the traceback
    assert report["summary"] == {"error": 1, "updated": 2}
