"""Every way an image appears: slow creation, copies, drift, EventGrid, replays.

All through the handler and the real SDK against the fake IMS; time is a FakeClock.
"""

from __future__ import annotations

import threading

import pytest

from helpers import load_event
from imsguard.app import handler
from imsguard_tools.local_context import LocalContext
from imsguard_tools.testing import EXAMPLE_IMAGE_ID, EXAMPLE_JOB_ID

COPY_JOB = "ff8080814dbd65d7014dbe0d84db0077"
DEBIAN = "c5cd3163-9030-43cb-a7c2-640c237702c7"
SAMPLE_FIX = [
    {"op": "replace", "path": "/name", "value": "ims-test"},
    {"op": "replace", "path": "/hw_firmware_type", "value": "uefi"},
]


def new_image(fake, pending_reads=0, final_status="active", **attrs):
    attrs = {"name": "Web_Server_01", "hw_firmware_type": "bios", **attrs}
    return fake.add_image(attrs, pending_reads=pending_reads, final_status=final_status)


def job_only_event(job_id=EXAMPLE_JOB_ID):
    event = load_event("cts_create_image_job_only.json")
    event["cts"]["response"] = f'{{"job_id": "{job_id}"}}'
    return event


def kinds(fake):
    """The requests, as ("job" | "image" | "patch")."""
    return [
        "patch" if c.method == "PATCH" else "job" if "/job" in c.path else "image"
        for c in fake.calls
    ]


@pytest.mark.parametrize("k", [0, 1, 3, 5])
def test_image_active_after_k_polls_costs_only_the_polls_and_one_patch(fake, context, clock, k):
    image = new_image(fake, pending_reads=k)
    job = "0123456789abcdef0123456789abcdef"
    fake.add_job(job, image_id=image["id"], pending_reads=2)
    context.timeout_ms = 120_000

    result = handler(job_only_event(job), context)

    assert kinds(fake) == ["job"] * 3 + ["image"] * (k + 1) + ["patch"]
    (entry,) = result["results"]
    assert entry["outcome"] == "updated"
    assert clock.monotonic() <= 120 - 10  # the whole wait stayed inside the budget and margin
    assert len(clock.sleeps) == 2 + k


def test_backoff_grows_with_jitter_and_stays_in_the_budget(fake, context, clock):
    image = new_image(fake, pending_reads=6)
    context.timeout_ms = 600_000

    handler({"image_id": image["id"]}, context)

    bounds = [(0.5, 1), (1, 2), (2, 4), (4, 8), (8, 16), (10, 20)]
    assert len(clock.sleeps) == 6
    for sleep, (low, high) in zip(clock.sleeps, bounds, strict=True):
        assert low <= sleep <= high


def test_not_ready_in_time_is_deferred_before_the_budget_ends(fake, context, clock):
    image = new_image(fake, pending_reads=1000)
    context.timeout_ms = 60_000
    context.user_data["IMSGUARD_SAFETY_MARGIN_SECONDS"] = "15"

    result = handler({"image_id": image["id"]}, context)

    (entry,) = result["results"]
    assert entry["outcome"] == "deferred"
    assert "still saving" in entry["reason"] and "out of time" in entry["reason"]
    assert fake.patches == []
    assert 44 <= clock.monotonic() <= 60 - 15


def test_slow_job_out_of_time_is_deferred(fake, context, clock):
    fake.add_job("0123456789abcdef0123456789abcdef", image_id=EXAMPLE_IMAGE_ID, pending_reads=1000)
    context.timeout_ms = 30_000

    result = handler(job_only_event("0123456789abcdef0123456789abcdef"), context)

    assert result["results"][0]["outcome"] == "deferred"
    assert "still RUNNING" in result["results"][0]["reason"]
    assert set(kinds(fake)) == {"job"}
    assert clock.monotonic() <= 20


class NoBudgetContext:
    """A context that does not say how much time is left (e.g. an old runtime)."""

    def getSecurityAccessKey(self):
        return "AK"

    def getSecuritySecretKey(self):
        return "SK"


def test_context_without_a_budget_reads_once_and_defers(fake):
    image = new_image(fake, pending_reads=1)

    result = handler({"image_id": image["id"]}, NoBudgetContext())

    assert kinds(fake) == ["image"]
    assert result["results"][0]["outcome"] == "deferred"


def test_context_with_no_time_left_calls_nothing(fake, context):
    context.timeout_ms = 0

    result = handler(load_event("cts_create_image.json"), context)

    assert fake.calls == []
    assert result["results"][0]["outcome"] == "deferred"
    assert "about to end" in result["results"][0]["reason"]


@pytest.mark.parametrize("remaining", [float("inf"), 10**19, 12 * 3600 * 1000, float("nan"), -5])
def test_odd_remaining_times_end_in_a_result(fake, context, clock, monkeypatch, remaining):
    image = new_image(fake, pending_reads=10**6)
    monkeypatch.setattr(type(context), "getRemainingTimeInMilliSeconds", lambda self: remaining)

    result = handler({"image_id": image["id"]}, context)

    assert result["status"] == "ok"
    assert result["results"][0]["outcome"] == "deferred"
    assert clock.monotonic() <= 900  # IMSGUARD_MAX_WAIT_SECONDS bounds any wait


def test_no_call_can_outlive_the_invocation(fake, context, clock):
    """Each request is slow (8 s of fake time); every call's timeouts fit in what is left."""
    image = new_image(fake, pending_reads=5)
    context.timeout_ms = 60_000
    started = clock.monotonic()
    calls = []

    def slow_request(method, path):
        import imsguard.ims as ims

        connect, read = ims.call_timeouts()  # this call's, not the shared client's
        calls.append((clock.monotonic(), connect + read))
        clock.elapsed += 8

    fake.before_request = slow_request

    result = handler({"image_id": image["id"]}, context)

    assert result["results"][0]["outcome"] in ("updated", "deferred")
    for at, longest in calls:
        assert at + longest <= started + 60


def test_failed_job_is_not_applicable(fake, context):
    job = "0123456789abcdef0123456789abcdef"
    fake.add_job(job, status="FAIL", fail_reason="Ims.0199 disk unreadable", pending_reads=2)

    result = handler(job_only_event(job), context)

    (entry,) = result["results"]
    assert (entry["outcome"], entry["job_id"]) == ("not_applicable", job)
    assert "Ims.0199" in entry["reason"]
    assert fake.patches == []


def test_killed_image_is_not_applicable(fake, context):
    image = new_image(fake, pending_reads=2, final_status="killed")

    result = handler({"image_id": image["id"]}, context)

    assert result["results"][0]["outcome"] == "not_applicable"
    assert "killed" in result["results"][0]["reason"]
    assert fake.patches == []


def test_image_deleted_while_being_created(fake, context):
    image = new_image(fake, pending_reads=5)
    fake.before_request = lambda method, path: (
        fake.images.pop(image["id"], None) if len(fake.calls) == 2 else None
    )

    result = handler({"image_id": image["id"]}, context)

    assert result["results"][0]["outcome"] == "not_applicable"
    assert "disappeared" in result["results"][0]["reason"]


def test_finished_job_in_a_system_action_trace(fake, context):
    result = handler(load_event("cts_create_image_job_done.json"), context)

    assert kinds(fake) == ["image", "patch"]
    assert result["results"][0]["outcome"] == "updated"


def test_failed_job_in_a_system_action_trace_is_not_applicable(fake, context):
    result = handler(load_event("cts_create_image_job_failed.json"), context)

    (entry,) = result["results"]
    assert (entry["outcome"], entry["job_id"]) == ("not_applicable", EXAMPLE_JOB_ID)
    assert "Ims.0199" in entry["reason"]
    assert fake.calls == []


def test_resource_id_that_is_not_an_image_falls_back_to_the_job(fake, context):
    event = load_event("cts_create_image.json")
    event["cts"]["resource_id"] = "877a2cda-ba63-4e1e-b95f-e67e48b6129a"  # the server, say

    result = handler(event, context)

    assert kinds(fake) == ["image", "job", "image", "patch"]
    assert [r["image_id"] for r in result["results"]] == [EXAMPLE_IMAGE_ID]


def test_name_only_trace_finds_recent_private_images_of_that_name(fake, context):
    first = new_image(fake)
    second = new_image(
        fake, hw_firmware_type="uefi", hw_vif_multiqueue_enabled="true", name="web_server_01"
    )
    new_image(fake, name="web_server_01", __imagetype="gold", owner="f" * 32, visibility="public")
    fake.images[first["id"]]["name"] = "web_server_01"

    result = handler(load_event("cts_create_image_name_only.json"), context)

    lookup = fake.calls[0]
    assert lookup.query["name"] == "web_server_01"
    assert lookup.query["__imagetype"] == "private"
    assert lookup.query["created_at"] == "gt:2025-11-27T07:00:00Z"  # an hour before the trace
    outcomes = {r["image_id"]: r["outcome"] for r in result["results"]}
    assert outcomes == {first["id"]: "updated", second["id"]: "updated"}
    assert len(fake.patches) == 2


def test_name_only_trace_without_a_match(fake, context):
    result = handler(load_event("cts_create_image_name_only.json"), context)

    (entry,) = result["results"]
    assert entry["outcome"] == "not_applicable"
    assert "no private image named 'web_server_01'" in entry["reason"]


@pytest.mark.parametrize("name", ["web*", "web%", "a/b", " padded", "x" * 129])
def test_name_with_wildcards_or_invalid_characters_is_not_looked_up(fake, context, name):
    event = load_event("cts_create_image_name_only.json")
    event["cts"]["request"] = {"name": name}

    result = handler(event, context)

    assert result["status"] == "invalid"
    assert "not a valid image name" in result["reason"]
    assert fake.calls == []


def test_copy_follows_its_job_to_the_new_image(fake, context):
    copy = new_image(fake, pending_reads=2, name="ims_test_copy")
    fake.add_job(COPY_JOB, image_id=copy["id"], job_type="copyImageInRegion", pending_reads=1)

    result = handler(load_event("cts_copy_image.json"), context)

    assert kinds(fake) == ["job", "job", "image", "image", "image", "patch"]
    assert [(r["image_id"], r["outcome"]) for r in result["results"]] == [(copy["id"], "updated")]
    assert fake.images[copy["id"]]["name"] == "ims-test-copy"
    assert fake.images[EXAMPLE_IMAGE_ID]["name"] == "ims_test"  # the source is left alone


def test_copy_without_a_job_is_found_by_its_name(fake, context):
    copy = new_image(fake, name="ims_test_copy")
    event = load_event("cts_copy_image.json")
    event["cts"]["response"] = ""

    result = handler(event, context)

    assert [(r["image_id"], r["outcome"]) for r in result["results"]] == [(copy["id"], "updated")]


def test_copy_with_only_the_source_checks_the_source(fake, context):
    event = load_event("cts_copy_image.json")
    event["cts"].update(response="", request="{}", resource_name="")

    result = handler(event, context)

    assert [r["image_id"] for r in result["results"]] == [EXAMPLE_IMAGE_ID]


def test_copy_completion_trace_needs_no_job_read(fake, context):
    copy = new_image(fake, name="ims_test_copy")
    event = load_event("cts_copy_image_done.json")
    event["cts"]["response"] = event["cts"]["response"].replace(
        "4d7c3e1a-5b6f-4a80-9c2d-1e3f5a7b9c0d", copy["id"]
    )

    result = handler(event, context)

    assert kinds(fake) == ["image", "patch"]
    assert result["results"][0]["image_id"] == copy["id"]


def test_drift_is_fixed_and_own_update_trace_costs_one_read(fake, context):
    fake.images[DEBIAN]["hw_vif_multiqueue_enabled"] = "false"  # someone switched it off
    drift = load_event("cts_update_image.json")
    drift["cts"]["resource_id"] = DEBIAN
    drift["cts"]["response"] = {"id": DEBIAN}

    first = handler(drift, context)
    own = load_event("cts_update_image.json")  # the trace of imsguard's own PATCH
    own["cts"]["resource_id"] = DEBIAN
    own["cts"]["request"] = fake.patches[0].body
    own["cts"]["response"] = {"id": DEBIAN}
    fake.reset_calls()
    second = handler(own, context)

    assert first["results"][0]["outcome"] == "updated"
    assert second["results"][0]["outcome"] == "compliant"
    assert kinds(fake) == ["image"]


def test_loop_guard_when_ims_does_not_keep_an_update(fake, context):
    own = load_event("cts_update_image.json")
    own["cts"]["request"] = SAMPLE_FIX  # the image still differs exactly by what was sent

    result = handler(own, context)

    assert fake.patches == []
    assert result["results"][0]["outcome"] == "error"
    assert "loop guard" in result["results"][0]["reason"]


def test_no_event_loop_can_form(fake, context):
    """Feed every PATCH's trace back to the handler, as CTS would: it ends at once."""
    event = load_event("cts_create_image.json")
    for _ in range(5):
        before = len(fake.patches)
        handler(event, context)
        if len(fake.patches) == before:
            break
        event = load_event("cts_update_image.json")
        event["cts"]["request"] = fake.patches[-1].body
    assert len(fake.patches) == 1


def test_the_same_event_twice_gives_one_patch(fake, context):
    for _ in range(2):
        handler(load_event("cts_create_image.json"), context)

    assert len(fake.patches) == 1


def test_two_concurrent_deliveries_send_identical_patches(fake):
    both_read = threading.Barrier(2, timeout=10)
    fake.before_request = lambda method, path: both_read.wait() if method == "PATCH" else None
    results = []

    def deliver():
        context = LocalContext(access_key="AK", secret_key="SK")
        results.append(handler(load_event("cts_create_image.json"), context))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert [p.body for p in fake.patches] == [SAMPLE_FIX, SAMPLE_FIX]
    assert [r["results"][0]["outcome"] for r in results] == ["updated", "updated"]


def test_eventgrid_single_event(fake, context):
    result = handler(load_event("eventgrid_create_image.json"), context)

    assert result["trigger"].startswith("EventGrid CTS createImage")
    assert result["results"][0]["operations"] == SAMPLE_FIX
    assert kinds(fake) == ["image", "patch"]


def test_eventgrid_data_may_wrap_the_trace(fake, context):
    event = load_event("eventgrid_create_image.json")
    event["data"] = {"cts": event["data"]}

    result = handler(event, context)

    assert result["results"][0]["outcome"] == "updated"


def test_eventgrid_batch_skips_foreign_events_and_says_so(fake, context):
    result = handler(load_event("eventgrid_batch.json"), context)

    assert [r["outcome"] for r in result["results"]] == ["updated"]
    assert result["skipped"] == ["events[1]: EventGrid event from 'HC.OBS', not HC.IMS"]


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"source": "HC.OBS"}, "ignored"),
        ({"type": "IMS:CloudTrace:ObsSDK"}, "ignored"),
        ({"data": "not an object"}, "invalid"),
        ({"data": {"service_type": "IMS"}}, "invalid"),
    ],
)
def test_eventgrid_events_that_are_not_ours_or_broken(fake, context, change, status):
    event = {**load_event("eventgrid_create_image.json"), **change}

    result = handler(event, context)

    assert result["status"] == status
    assert fake.calls == []


@pytest.mark.parametrize("events", [[], "x", [1, 2]])
def test_broken_eventgrid_batches(fake, context, events):
    result = handler({"events": events}, context)

    assert result["status"] == "invalid"
    assert fake.calls == []


@pytest.mark.parametrize(
    "event",
    [
        {"image_id": EXAMPLE_JOB_ID},  # a job id is not an image id
        {
            "cts": {
                **load_event("cts_create_image.json")["cts"],
                "resource_id": EXAMPLE_JOB_ID,
                "response": '{"job_id": 42}',
                "request": "{}",
                "resource_name": "",
            }
        },
        {"cts": {**load_event("cts_create_image.json")["cts"], "response": '{"job_id": '}},
    ],
)
def test_bad_ids_and_broken_responses_make_no_call(fake, context, event):
    result = handler(event, context)

    assert result["status"] == "invalid"
    assert fake.calls == []


def test_max_wait_setting_bounds_the_wait(fake, context, clock):
    image = new_image(fake, pending_reads=10**6)
    context.timeout_ms = 3_600_000
    context.user_data["IMSGUARD_MAX_WAIT_SECONDS"] = "120"

    result = handler({"image_id": image["id"]}, context)

    assert result["results"][0]["outcome"] == "deferred"
    assert 100 <= clock.monotonic() <= 120
