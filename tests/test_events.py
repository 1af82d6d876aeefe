"""Event parsing: every fixture under tests/events/ gives the expected trigger or skip."""

from __future__ import annotations

import json

import pytest

from helpers import load_event
from imsguard.events import CtsTrace, Skip, Trigger, parse_event, read_trace

IMAGE = "33ad552d-1149-471c-8190-ff6776174a00"
JOB = "ff8080814dbd65d7014dbe0d84db0013"


@pytest.mark.parametrize(
    ("name", "image_ids", "job_ids"),
    [
        ("cts_create_image.json", (IMAGE,), (JOB,)),  # the job is only followed if needed
        ("cts_create_image_job_only.json", (), (JOB,)),
        ("cts_create_image_job_done.json", (IMAGE,), (JOB,)),  # finished job: entities.image_id
        ("cts_update_image.json", (IMAGE,), ()),
    ],
)
def test_cts_image_traces(name, image_ids, job_ids):
    trigger = parse_event(load_event(name))

    assert isinstance(trigger, Trigger)
    (target,) = trigger.targets
    assert (trigger.source, target.image_ids, target.job_ids) == ("cts", image_ids, job_ids)


def test_request_and_response_may_be_json_strings_or_objects():
    event = load_event("cts_create_image_job_only.json")
    event["cts"]["response"] = json.loads(event["cts"]["response"])
    event["cts"]["request"] = json.loads(event["cts"]["request"])

    assert parse_event(event).targets[0].job_ids == (JOB,)


def test_code_may_be_a_string():
    event = load_event("cts_create_image.json")
    event["cts"]["code"] = "403"

    assert parse_event(event) == Skip(
        "ignored", "the traced createImage call failed (code 403); it changed nothing"
    )


def test_glance_resource_type_counts_as_image():
    event = load_event("cts_update_image.json")
    event["cts"]["resource_type"] = "image"

    assert parse_event(event).targets[0].image_ids == (IMAGE,)


def test_failed_job_in_trace_needs_no_call():
    event = load_event("cts_create_image_job_done.json")
    event["cts"]["response"] = {"status": "FAIL", "job_id": JOB, "entities": {}}

    (target,) = parse_event(event).targets
    assert target.failure and "failed" in target.failure


def test_trace_without_any_id_or_name_is_invalid():
    event = load_event("cts_create_image_job_only.json")
    event["cts"]["response"] = {}
    event["cts"]["request"] = {}
    event["cts"]["resource_name"] = ""

    skip = parse_event(event)
    assert skip.status == "invalid"
    assert "no image id, no job id and no image name" in skip.reason


def test_ids_are_normalised_and_deduplicated():
    trigger = parse_event({"image_ids": [IMAGE.upper(), IMAGE]})

    assert [t.image_ids for t in trigger.targets] == [(IMAGE,)]


def test_too_many_images_in_one_event():
    skip = parse_event({"image_ids": [IMAGE] * 101})

    assert skip.status == "invalid" and "image_ids" in skip.reason


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ({"image_id": "abc"}, "image_id: not an image id"),
        ({"image_ids": [IMAGE, "x"]}, "item 1 is not an image id"),
        ({"image_id": IMAGE, "dry_run": "true"}, "dry_run"),
        ({"image_id": IMAGE, "extra": 1}, "extra"),
        ({"cts": {"trace_name": "createImage"}}, "service_type"),
    ],
)
def test_invalid_events_name_the_field(event, words):
    skip = parse_event(event)

    assert skip.status == "invalid"
    assert words in skip.reason


JSON_VALUES = [{}, [], {"a": 1}, [1, "x"], 0, 12.5, True, None, "", "text"]
TEXT_FIELDS = ("resource_id", "resource_name", "resource_type", "trace_type", "trace_id")


@pytest.mark.parametrize(
    "field",
    [
        "resource_id",
        "resource_name",
        "resource_type",
        "trace_type",
        "trace_id",
        "time",
        "record_time",
        "user",
        "code",
        "request",
        "trace_status",
        "tracker_name",
    ],
)
@pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
def test_any_json_type_in_a_trace_field_is_never_a_type_error(field, value):
    """FunctionGraph's own CTS sample has "resource_id": {}; a field imsguard reads as text
    is absent when it is not text, and the event is judged on what remains."""
    event = load_event("cts_create_image.json")
    event["cts"][field] = value

    parsed = parse_event(event)

    assert not (isinstance(parsed, Skip) and "Input should be" in parsed.reason), parsed
    if field in ("resource_id", "resource_name", "user", "time", "record_time", "trace_id"):
        (target,) = parsed.targets  # the job id in the response still finds the image
        assert target.job_ids == (JOB,)
    if field in TEXT_FIELDS:  # read as text: absent when it is not text, never str({})
        trace = read_trace(event["cts"], "cts")
        assert isinstance(trace, CtsTrace)
        assert getattr(trace, field) == (value if isinstance(value, str) else None)
    if field == "resource_id":
        assert parsed.targets[0].image_ids == ()  # "" and "text" are not image ids either


def test_the_documented_sample_shape_with_an_object_resource_id_is_followed_by_its_job():
    trigger = parse_event(load_event("cts_create_image_documented_shape.json"))

    (target,) = trigger.targets
    assert (target.image_ids, target.job_ids, target.name) == ((), (JOB,), "ims_test")


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        (1660927593570, "2022-08-19T16:46:33.570000+00:00"),  # CTS's trace structure: epoch ms
        ("1660927593570", "2022-08-19T16:46:33.570000+00:00"),
        (1660927593570.0, "2022-08-19T16:46:33.570000+00:00"),
        ("2016/12/08 11:07:28 GMT+08:00", "2016-12-08T11:07:28+08:00"),  # older trace examples
        ("12/01/2016 11:07:28 GMT+08:00", "2016-12-01T11:07:28+08:00"),
        ("2016/12/08 11:07:28 GMT-03:30", "2016-12-08T11:07:28-03:30"),
        ("2016/12/08 11:07:28 GMT", "2016-12-08T11:07:28+00:00"),  # no offset: UTC
        ("2016/12/08 11:07:28", "2016-12-08T11:07:28+00:00"),
        ("2026-11-30T10:00:00Z", "2026-11-30T10:00:00+00:00"),
        ("", None),
        ("yesterday", None),
        ("13/45/2016 11:07:28 GMT+08:00", None),
        ({}, None),
        (True, None),
        (10**30, None),
    ],
)
def test_trace_times_in_every_documented_form(value, iso):
    event = load_event("cts_create_image_name_only.json")
    event["cts"]["time"] = value

    (target,) = parse_event(event).targets

    assert (target.time.isoformat() if target.time else None) == iso


@pytest.mark.parametrize(
    ("code", "ignored"),
    [
        (200, False),
        ("200", False),
        (204.0, False),
        (" 403 ", True),
        (403, True),
        ("403", True),
        (500.0, True),
        ("abc", False),
        ({}, False),
        (True, False),
        (None, False),
    ],
)
def test_code_may_be_a_number_or_text(code, ignored):
    event = load_event("cts_create_image.json")
    event["cts"]["code"] = code

    parsed = parse_event(event)

    assert (isinstance(parsed, Skip) and parsed.status == "ignored") is ignored


@pytest.mark.parametrize(
    ("resource_type", "trace", "handled"),
    [
        ("image", "createImage", True),
        ("image", "updateImage", True),
        ("image", "addTag", True),
        ("image", "deleteTag", True),
        ("image", "copyImage", False),
        ("image", "deleteImage", False),
        ("ims", "addTag", False),
        ("ims", "copyImage", True),
        ("Image", "updateImage", True),
    ],
)
def test_native_image_api_traces(resource_type, trace, handled):
    event = load_event("cts_update_image.json")
    event["cts"].update(resource_type=resource_type, trace_name=trace)

    parsed = parse_event(event)

    assert isinstance(parsed, Trigger) is handled
    if handled:  # a copy's resource_id is its source: found only if nothing else is
        (target,) = parsed.targets
        assert (target.fallback_ids if trace == "copyImage" else target.image_ids) == (IMAGE,)
    else:
        assert parsed.status == "ignored" and trace in parsed.reason


@pytest.mark.parametrize("code", ["\u00b2", "9" * 5000])
def test_a_code_of_digits_int_refuses_is_an_invalid_trace_not_a_crash(code):
    """str.isdigit() holds for "²" and for 5,000 digits, which int() refuses: the event is
    invalid, said as ever, never an internal error."""
    event = load_event("cts_create_image.json")
    event["cts"]["code"] = code
    eventgrid = {"source": "HC.IMS", "type": "IMS:CloudTrace:ApiCall", "data": event["cts"]}

    for parsed, where in ((parse_event(event), "cts.code"), (parse_event(eventgrid), "code")):
        assert isinstance(parsed, Skip) and parsed.status == "invalid", parsed
        assert f"{where}: " in parsed.reason, parsed.reason
