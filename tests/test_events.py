"""Event parsing: every fixture under tests/events/ gives the expected trigger or skip."""

from __future__ import annotations

import json

import pytest

from conftest import load_event
from imsguard.events import Skip, Trigger, parse_event

IMAGE = "33ad552d-1149-471c-8190-ff6776174a00"
JOB = "ff8080814dbd65d7014dbe0d84db0013"


@pytest.mark.parametrize(("name", "image_ids", "job_ids"), [
    ("cts_create_image.json", (IMAGE,), (JOB,)),  # the job is only followed if needed
    ("cts_create_image_job_only.json", (), (JOB,)),
    ("cts_create_image_job_done.json", (IMAGE,), (JOB,)),  # finished job: entities.image_id
    ("cts_update_image.json", (IMAGE,), ()),
])
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

    assert parse_event(event) == Skip("ignored", parse_event(event).reason)
    assert "403" in parse_event(event).reason


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


@pytest.mark.parametrize(("event", "words"), [
    ({"image_id": "abc"}, "image_id: not an image id"),
    ({"image_ids": [IMAGE, "x"]}, "item 1 is not an image id"),
    ({"image_id": IMAGE, "dry_run": "true"}, "dry_run"),
    ({"image_id": IMAGE, "extra": 1}, "extra"),
    ({"cts": {"trace_name": "createImage"}}, "service_type"),
])
def test_invalid_events_name_the_field(event, words):
    skip = parse_event(event)

    assert skip.status == "invalid"
    assert words in skip.reason
