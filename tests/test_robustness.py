"""Issue 12: an IMS that misbehaves, hostile input, and secrets the process can see. Each
test was written to fail on the code before its fix."""

from __future__ import annotations

import pytest

from imsguard.app import handler
from imsguard.events import parse_event


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


# -- 9. deep input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"action": deep(5_000)},
        {"image_id": deep(5_000)},
        {"cts": {"service_type": "IMS", "resource_type": "ims", "trace_name": deep(5_000)}},
        {"cts": {"service_type": deep(5_000), "trace_name": "createImage"}},
        {"specversion": "1.0", "source": deep(5_000), "type": "x", "data": {}},
    ],
)
def test_deep_input_is_invalid_or_ignored_never_an_internal_error(fake, context, event):
    skip = parse_event(event)
    result = handler(event, context)

    assert skip.status in ("invalid", "ignored") and len(skip.reason) < 400
    assert result["status"] in ("invalid", "ignored") and "internal error" not in result["reason"]
    assert fake.calls == []


# -- 6. and 8. what IMS answers is checked before it is used --------------------------------


@pytest.fixture
def fleet():
    from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms

    with FakeIms(project_id=SAMPLE_PROJECT_ID) as fake:
        for index in range(30):
            fake.add_image(
                {
                    "name": f"Image_{index:02d}",
                    "hw_firmware_type": "uefi",
                    "hw_vif_multiqueue_enabled": "true",
                }
            )
        yield fake
    fake.assert_injections_met()


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ({"images": "x"}, "the answer holds no list of images"),
        ({"images": [1, "a", None, {}]}, "4 of 4 entries are not images with an id"),
        ([], "the answer holds no list of images"),
        ({"images": [{"id": "..", "name": "x"}]}, "1 of 1 entries are not images with an id"),
    ],
)
def test_a_malformed_page_is_an_ims_error_that_keeps_what_was_done(fleet, context, answer, words):
    context.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "10"
    pages = []

    def second_page_is_malformed(method, path):
        if method == "GET" and path == "/v2/cloudimages":
            pages.append(path)
            if len(pages) == 2:
                fleet.respond_next("GET", 200, answer)

    fleet.before_request = second_page_is_malformed

    report = handler({"action": "sweep"}, context)

    assert report["status"] == "error" and words in report["error"]
    assert report["examined"] == 10  # the first page, kept
    assert report["continuation"]["cause"] == "error"
    assert not any(c.path.endswith("/cloudimages/..") or c.path == "/v2/" for c in fleet.calls)
    assert fleet.patches == []  # as for a page IMS fails on: nothing is applied


def test_an_answer_that_is_not_json_is_an_ims_error():
    from types import SimpleNamespace

    from imsguard.ims import ImsError, _raw

    with pytest.raises(ImsError, match="list images: the answer is not JSON"):
        _raw(SimpleNamespace(raw_content=b"<html>gateway</html>"), "list images")


@pytest.mark.parametrize("image_id", ["..", "../jobs/1", "", "33ad552d", None])
def test_an_id_that_is_not_an_image_id_never_builds_a_url(fake, image_id):
    from imsguard.context import Credentials
    from imsguard.ims import ImsError, gateway_for

    gateway = gateway_for(None, fake.endpoint, fake.project_id, Credentials("AK", "SK"))

    for call in (
        lambda: gateway.update_image(image_id, [{"op": "add", "path": "/x", "value": "1"}]),
        lambda: gateway.get_image(image_id),
    ):
        with pytest.raises(ImsError, match="is not an image id"):
            call()
    assert fake.calls == []


# -- 5. and 7. an IMS that does not page, and images listed twice ------------------------------


def test_an_ims_that_ignores_marker_ends_the_sweep_with_an_error(fleet, context):
    context.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "10"
    first_page = []

    def ignore_marker(method, path):
        lists = [c for c in fleet.calls if c.path == "/v2/cloudimages"]
        if method == "GET" and path == "/v2/cloudimages" and lists:
            if not first_page:
                first_page.extend(json_page(fleet))
            fleet.respond_next("GET", 200, {"images": first_page})

    fleet.before_request = ignore_marker

    report = handler({"action": "sweep"}, context)

    assert report["status"] == "error" and "does not page with marker" in report["error"]
    assert "continuation" not in report and report["examined"] == 10
    assert len([c for c in fleet.calls if c.path == "/v2/cloudimages"]) == 2


def json_page(fleet):
    """The first page as IMS would send it (newest first)."""
    ordered = sorted(fleet.images.values(), key=lambda i: (i["created_at"], i["id"]), reverse=True)
    return [dict(image) for image in ordered[:10]]


def test_images_listed_again_after_a_restart_are_counted_once(fleet, context):
    for image in fleet.images.values():
        image["created_at"] = "2026-01-01T00:00:00Z"  # all in one second
    context.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "10"
    deleted = []

    def delete_the_marker(method, path):
        lists = [c for c in fleet.calls if c.path == "/v2/cloudimages"]
        if method == "GET" and len(lists) == 1 and not deleted:
            marker = json_page_ids(fleet)[9]
            deleted.append(marker)
            del fleet.images[marker]

    fleet.before_request = delete_the_marker

    report = handler({"action": "sweep"}, context)

    assert report["examined"] == 30  # 30 images were listed; one was deleted meanwhile
    assert sum(report["summary"].values()) == 30
    assert len({c.path for c in fleet.patches}) == len(fleet.patches)  # each patched once


def json_page_ids(fleet):
    return [i["id"] for i in sorted(fleet.images.values(), key=lambda i: (-0, i["id"]))]


# -- 10. every secret the process can see ------------------------------------------------------


ENV_SK = "ENV-ONLY-SECRET-KEY-778899"


@pytest.mark.parametrize(
    "echoed",
    [
        ENV_SK,  # in the environment, unused: the context supplies the credentials
        "base64:" + __import__("base64").b64encode(ENV_SK.encode()).decode(),
        "SK-TEST-SECRET-0002"[:12] + "…",  # a cut-off context secret
        __import__("base64").b64encode(b"TOKEN-TEST-SECRET-0003").decode().rstrip("="),
    ],
)
def test_secrets_in_any_form_never_reach_a_result_or_a_log_line(
    fake, context, monkeypatch, capsys, echoed
):
    import json

    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", ENV_SK)
    fake.fail_next("PATCH", 400, "IMG.0001", f"refused for {echoed}")

    result = handler({"image_id": "33ad552d-1149-471c-8190-ff6776174a00"}, context)

    text = json.dumps(result) + capsys.readouterr().out
    assert "***" in result["results"][0]["reason"]
    assert echoed not in text and echoed[:10] not in text
    assert fake.patches[0].status == 400  # the fault was hit


# -- weak spots: a 200 is not proof ---------------------------------------------------------------


@pytest.mark.parametrize("answer", [{}, None, {"id": "4d7c3e1a-5b6f-4a80-9c2d-1e3f5a7b9c0d"}])
def test_a_patch_answer_that_is_not_the_image_is_checked_by_reading_it(fake, context, answer):
    fake.respond_next("PATCH", 200, answer)  # IMS kept nothing: the answer is not the image

    result = handler({"image_id": "33ad552d-1149-471c-8190-ff6776174a00"}, context)

    (entry,) = result["results"]
    assert entry["outcome"] == "error" and "did not keep" in entry["reason"]
    assert [c.method for c in fake.calls] == ["GET", "PATCH", "GET"]  # read again to tell


def test_a_sweep_does_not_count_a_change_ims_did_not_keep(fleet, context):
    fleet.respond_next("PATCH", 200, {})

    report = handler({"action": "sweep"}, context)

    assert report["summary"] == {"error": 1, "updated": 29}
    assert "did not keep" in report["needs_attention"][0]["reason"]


def test_a_job_not_found_right_after_creation_is_read_again(fake, context, clock):
    from helpers import load_event

    fake.fail_next("GET", 404, "IMG.0001", "The job does not exist.")  # not there yet

    result = handler(load_event("cts_create_image_job_only.json"), context)

    assert result["results"][0]["outcome"] == "updated"
    assert [c.status for c in fake.calls if "/job/" in c.path] == [404, 200]
    assert len(clock.sleeps) == 1


def test_a_job_that_stays_missing_is_not_applicable_within_the_budget(fake, context, clock):
    from helpers import load_event

    fake.jobs.clear()

    result = handler(load_event("cts_create_image_job_only.json"), context)

    assert result["results"][0]["outcome"] == "not_applicable"
    assert len([c for c in fake.calls if "/job/" in c.path]) == 3


# -- 3. log lines name their own invocation ------------------------------------------------------


def test_concurrent_invocations_log_their_own_request_ids(capsys):
    """20 invocations at once in one process, as one FunctionGraph instance may run them,
    over a real loopback IMS: every per-image line names the invocation that wrote it."""
    import json
    import threading

    from imsguard_tools.local_context import LocalContext
    from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms

    fake = FakeIms(project_id=SAMPLE_PROJECT_ID)
    images = [fake.add_image({"name": f"Image_{i:02d}"})["id"] for i in range(20)]
    start = threading.Barrier(20)
    with fake.serve() as endpoint:

        def invoke(index: int) -> None:
            context = LocalContext(
                access_key="AK",
                secret_key="SK",
                request_id=f"req-{index:02d}",
                user_data={"IMSGUARD_IMS_ENDPOINT": endpoint},
            )
            start.wait()
            handler({"image_id": images[index]}, context)

        threads = [threading.Thread(target=invoke, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    per_image = [line for line in lines if line.get("image_id") in images]
    assert len(per_image) == 20
    assert all(
        line["request_id"] == f"req-{images.index(line['image_id']):02d}" for line in per_image
    )


def test_sweep_workers_log_the_sweeps_request_id(fleet, context, capsys):
    import json

    context.request_id = "sweep-request"
    context.user_data["IMSGUARD_SWEEP_CONCURRENCY"] = "4"

    handler({"action": "sweep"}, context)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    updated = [line for line in lines if line["message"] == "image updated"]
    assert len(updated) == 30 and {line["request_id"] for line in updated} == {"sweep-request"}


# -- 1. a hard deadline, however the bytes arrive ------------------------------------------------


@pytest.fixture
def real_clock(monkeypatch):
    """Invocations that really take seconds: their budgets must count real time."""
    from imsguard_tools.local_context import LocalContext

    monkeypatch.setattr(LocalContext, "clock", None)  # None: the system's clock


@pytest.mark.parametrize(
    "seconds, headers",
    [(0.3, False), (0.3, True), (60, False)],
    ids=["body-trickles", "headers-trickle", "body-stalls"],
)
@pytest.mark.parametrize(
    "event", [{"image_id": "IMAGE"}, {"action": "sweep"}], ids=["event", "sweep"]
)
def test_an_answer_that_trickles_in_ends_with_the_invocation(event, seconds, headers, real_clock):
    """IMS sends its answer a byte every 0.3 s (the body, or the headers too), or the
    headers and then nothing: no read timeout fires, yet the invocation (5 s, over a real
    loopback IMS) ends on time, with a transient failure rather than an internal error."""
    import time

    from imsguard.app import TransientFailure
    from imsguard_tools.local_context import LocalContext
    from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms

    fake = FakeIms(project_id=SAMPLE_PROJECT_ID)
    image = fake.add_image({"name": "Trickled_Image"})["id"]
    fake.trickle_seconds, fake.trickle_headers = seconds, headers
    event = {key: image if value == "IMAGE" else value for key, value in event.items()}
    with fake.serve() as endpoint:
        context = LocalContext(
            access_key="AK",
            secret_key="SK",
            timeout_ms=5_000,
            user_data={"IMSGUARD_IMS_ENDPOINT": endpoint, "IMSGUARD_SAFETY_MARGIN_SECONDS": "1"},
        )
        started = time.monotonic()
        try:
            result = handler(event, context)
        except TransientFailure:  # an event: FunctionGraph retries it
            result = {"status": "raised TransientFailure", "results": []}
        took = time.monotonic() - started

    assert took <= 5.0, f"ran {took:.1f} s of a 5 s invocation"
    assert "internal error" not in str(result), result
    if "action" in event:
        assert result["status"] == "error" and "continuation" in result, result
    else:
        assert result["status"] == "raised TransientFailure" or [
            r["outcome"] for r in result["results"]
        ] == ["deferred"], result
    assert fake.images[image]["name"] == "Trickled_Image"


# -- 2. each invocation keeps its own budget -------------------------------------------------------


@pytest.mark.parametrize("slow", ["short", "long"])
def test_concurrent_invocations_keep_their_own_budgets(slow, real_clock):
    """A 4 s and a 600 s invocation run at once in one process, through the one cached
    client, over a real loopback IMS; the ``slow`` one's PATCH takes 6 s and is sent only
    after the other has begun. The short one still ends within its 4 s; the long one
    still waits for its answer."""
    import threading
    import time

    from imsguard.app import TransientFailure
    from imsguard_tools.local_context import LocalContext
    from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms

    fake = FakeIms(project_id=SAMPLE_PROJECT_ID)
    images = {name: fake.add_image({"name": f"Image_{name}"})["id"] for name in ("short", "long")}
    other_began = threading.Event()
    reads = []

    def before_request(method: str, path: str) -> None:
        if method == "GET":
            reads.append(path)
            if len(reads) == 2:  # both invocations have begun
                other_began.set()
            other_began.wait(5)  # the first read is answered only then
        elif path.endswith(images[slow]):
            time.sleep(6)

    fake.before_request = before_request
    results, took = {}, {}
    with fake.serve() as endpoint:

        def invoke(name: str, timeout_ms: int) -> None:
            context = LocalContext(
                access_key="AK",
                secret_key="SK",
                timeout_ms=timeout_ms,
                user_data={
                    "IMSGUARD_IMS_ENDPOINT": endpoint,
                    "IMSGUARD_SAFETY_MARGIN_SECONDS": "1",
                },
            )
            started = time.monotonic()
            try:
                results[name] = handler({"image_id": images[name]}, context)["results"][0]
            except TransientFailure:  # raised for FunctionGraph to retry the event
                results[name] = {"outcome": "raised TransientFailure"}
            took[name] = time.monotonic() - started

        first, second = ("short", "long") if slow == "short" else ("long", "short")
        threads = [
            threading.Thread(target=invoke, args=(name, 4_000 if name == "short" else 600_000))
            for name in (first, second)
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.2)
        for thread in threads:
            thread.join()

    assert took["short"] <= 4.0, took
    outcomes = {name: result["outcome"] for name, result in results.items()}
    if slow == "short":
        assert outcomes["long"] == "updated", results
        assert outcomes["short"] in ("deferred", "error", "raised TransientFailure"), results
    else:
        assert outcomes == {"short": "updated", "long": "updated"}, results
        assert took["long"] >= 6


# -- 4. one object per invocation: nothing shared between concurrent ones -------------------------


def test_concurrent_sweeps_keep_their_own_clock_progress_and_budget():
    """Two sweeps run at once in one process, through the one cached client, each with its
    own clock, time budget and progress callback (as the CLI and tests inject them): each
    sees only its own. Both are inside their sweep together (the fake holds each one's first
    list request until the other's has arrived)."""
    import threading

    from imsguard_tools.local_context import LocalContext
    from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeClock, FakeIms

    fake = FakeIms(project_id=SAMPLE_PROJECT_ID)
    for index in range(10):
        fake.add_image({"name": f"Image_{index:02d}"})
    both_listing = threading.Barrier(2, timeout=10)
    lists = []

    def before_request(method: str, path: str) -> None:
        lists.append(path)
        if len(lists) <= 2:
            both_listing.wait()

    fake.before_request = before_request
    runs = {
        # name: (limit, requests per second, timeout in ms)
        "slow": (4, "1", 600_000),
        "fast": (None, "1000", 900_000),
    }
    clocks = {name: FakeClock() for name in runs}
    progress: dict[str, list[dict[str, int]]] = {name: [] for name in runs}
    reports = {}
    with fake.serve() as endpoint:

        def sweep(name: str) -> None:
            limit, rate, timeout_ms = runs[name]
            context = LocalContext(
                access_key="AK",
                secret_key="SK",
                timeout_ms=timeout_ms,
                clock=clocks[name],
                progress=progress[name].append,
                user_data={
                    "IMSGUARD_IMS_ENDPOINT": endpoint,
                    "IMSGUARD_SWEEP_RATE": rate,
                    "IMSGUARD_SWEEP_PAGE_SIZE": "2",
                    "IMSGUARD_DRY_RUN": "true",
                },
            )
            event = {"action": "sweep", **({"limit": limit} if limit else {})}
            reports[name] = handler(event, context)

        threads = [threading.Thread(target=sweep, args=(name,)) for name in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    examined = {name: [c["examined"] for c in progress[name] if "examined" in c] for name in runs}
    assert examined == {"slow": [2, 4], "fast": [2, 4, 6, 8, 10, 10]}
    assert reports["slow"]["examined"] == 4 and reports["fast"]["examined"] == 10
    assert reports["slow"]["continuation"]["cause"] == "limit"
    assert "continuation" not in reports["fast"]
    # One request a second: the slow sweep waited, on its own clock only.
    assert clocks["slow"].sleeps and not clocks["fast"].sleeps
    assert clocks["slow"].elapsed == sum(clocks["slow"].sleeps)
