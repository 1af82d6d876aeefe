"""The registry of envelopes and the table of trace specs: what each is, and that adding an
event source or a trace is one change in one place."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import EVENTS, load_event
from imsguard import events
from imsguard.events import (
    ENVELOPES,
    IMAGE_TRACES,
    TRACE_SPECS,
    Envelope,
    Skip,
    Target,
    TraceSpec,
    Trigger,
    image_traces,
    parse_event,
)

IMAGE = "33ad552d-1149-471c-8190-ff6776174a00"
JOB = "ff8080814dbd65d7014dbe0d84db0013"

# What every sample event gave before envelopes were a registry: (source or skip status,
# summary or skip reason). The registry must give the same, word for word.
PARSED = {
    "bad_path_like_job_id.json": (
        "invalid",
        "the createImage trace names no image id, no job id and no image name "
        "(resource_id, response and request hold none)",
    ),
    "bad_resource_id_is_a_job_id.json": (
        "invalid",
        "the createImage trace names no image id, no job id and no image name "
        "(resource_id, response and request hold none)",
    ),
    "bad_response_not_json.json": (
        "invalid",
        "the trace response is not valid JSON (or nested too deeply)",
    ),
    "bad_wildcard_name.json": (
        "invalid",
        "the createImage trace names no image id or job id, and the requested name "
        "'web-*' is not a valid image name, so it is not looked up",
    ),
    "cts_copy_image.json": ("cts", "CTS copyImage (ApiCall)"),
    "cts_copy_image_done.json": ("cts", "CTS copyImage (SystemAction)"),
    "cts_create_image.json": ("cts", "CTS createImage (ConsoleAction)"),
    "cts_create_image_documented_shape.json": ("cts", "CTS createImage (ConsoleAction)"),
    "cts_create_image_failed.json": (
        "ignored",
        "the traced createImage call failed (code 400); it changed nothing",
    ),
    "cts_create_image_job_done.json": ("cts", "CTS createImage (SystemAction)"),
    "cts_create_image_job_failed.json": ("cts", "CTS createImage (SystemAction)"),
    "cts_create_image_job_only.json": ("cts", "CTS createImage (ApiCall)"),
    "cts_create_image_job_only_objects.json": ("cts", "CTS createImage (ApiCall)"),
    "cts_create_image_name_only.json": ("cts", "CTS createImage (ApiCall)"),
    "cts_create_image_text_time.json": ("cts", "CTS createImage (ApiCall)"),
    "cts_delete_image.json": (
        "ignored",
        "IMS trace 'deleteImage' does not create or change an image",
    ),
    "cts_native_create_image.json": ("cts", "CTS createImage on the native image API (ApiCall)"),
    "cts_native_delete_image.json": (
        "ignored",
        "IMS trace 'deleteImage' on the native image API does not create or change an image",
    ),
    "cts_native_delete_tag.json": ("cts", "CTS deleteTag on the native image API (ApiCall)"),
    "cts_native_update_image.json": ("cts", "CTS updateImage on the native image API (ApiCall)"),
    "cts_other_service.json": ("ignored", "trace of service 'FunctionGraph', not IMS"),
    "cts_update_image.json": ("cts", "CTS updateImage (ApiCall)"),
    "direct_image.json": ("direct", "direct invocation for 1 image(s)"),
    "direct_images_dry_run.json": ("direct", "direct invocation for 2 image(s)"),
    "eventgrid_batch.json": ("eventgrid", "EventGrid batch of 2 event(s)"),
    "eventgrid_create_image.json": ("eventgrid", "EventGrid CTS createImage (ConsoleAction)"),
    "eventgrid_create_image_systemaction_wrapped.json": (
        "eventgrid",
        "EventGrid CTS createImage (SystemAction)",
    ),
    "eventgrid_update_image_apicall.json": ("eventgrid", "EventGrid CTS updateImage (ApiCall)"),
    "timer.json": ("timer", "sweep (timer)"),
}


@pytest.mark.parametrize("name", sorted(path.name for path in EVENTS.glob("*.json")))
def test_every_sample_event_parses_as_before(name):
    parsed = parse_event(load_event(name))

    if isinstance(parsed, Skip):
        assert (parsed.status, parsed.reason) == PARSED[name]
    else:
        assert (parsed.source, parsed.summary) == PARSED[name]
        assert parsed.source in {envelope.source for envelope in ENVELOPES}


@pytest.mark.parametrize("name", sorted(path.name for path in EVENTS.glob("*.json")))
def test_every_sample_event_matches_one_envelope(name):
    """The registry's order only decides events made of several kinds at once."""
    event = load_event(name)

    assert len([e for e in ENVELOPES if e.matches(event)]) == 1


@pytest.mark.parametrize(
    ("event", "parsed"),
    [
        ({"action": "sweep", "image_id": IMAGE}, "invalid sweep options: image_id"),
        ({"cts": {}, "events": []}, "invalid CTS event: cts.service_type"),
        ({"events": [], "source": "HC.IMS", "type": "x", "data": {}}, "'events' must be"),
        ({"image_id": IMAGE, "trigger_type": "TIMER"}, "trigger_type: Extra inputs"),
    ],
)
def test_the_first_envelope_in_the_registry_wins(event, parsed):
    assert parsed in parse_event(event).reason


def test_the_trace_table_is_what_the_template_check_reads():
    handled = image_traces(TRACE_SPECS)

    assert handled == IMAGE_TRACES
    assert handled == {
        "ims": {"createImage", "updateImage", "copyImage"},
        "image": {"createImage", "updateImage", "addTag", "deleteTag"},
    }


class ConfigRuleEnvelope(Envelope):
    """A made-up source: a rule evaluation naming one image."""

    source = "config"

    def matches(self, event: dict[str, Any]) -> bool:
        return "invoking_event" in event

    def unwrap(self, event: dict[str, Any]) -> Trigger:
        image_id = event["invoking_event"]["resource_id"]
        return self.trigger("config rule", (Target(f"image {image_id}", image_ids=(image_id,)),))


def test_adding_an_event_source_is_one_registered_class(monkeypatch):
    event = {"invoking_event": {"resource_id": IMAGE}}
    monkeypatch.setattr(events, "ENVELOPES", [*ENVELOPES, ConfigRuleEnvelope()])

    parsed = parse_event(event)

    assert parsed == Trigger("config", "config rule", (Target(f"image {IMAGE}", (IMAGE,)),))
    monkeypatch.undo()
    assert parse_event(event).status == "ignored"


def import_trace() -> dict[str, Any]:
    """A made-up IMS trace whose response keeps the new image under "image"."""
    event = load_event("cts_create_image.json")
    event["cts"].update(
        trace_name="testOnlyImportImage",
        resource_id="",
        response={"image": {"id": IMAGE.upper()}, "job": {"id": JOB}},
    )
    return event


def test_adding_a_trace_is_one_row(monkeypatch):
    row = TraceSpec(image_id_paths=(("image", "id"),), job_id_paths=(("job", "id"),), creates=True)
    monkeypatch.setitem(TRACE_SPECS, ("ims", "testOnlyImportImage"), row)

    (target,) = parse_event(import_trace()).targets

    assert (target.image_ids, target.job_ids, target.name) == ((IMAGE,), (JOB,), "ims_test")
    assert "testOnlyImportImage" in image_traces(TRACE_SPECS)["ims"]
    monkeypatch.undo()
    assert parse_event(import_trace()).status == "ignored"


@pytest.mark.parametrize(
    ("row", "field", "expected"),
    [
        (TraceSpec(), "image_ids", (IMAGE,)),
        (TraceSpec(resource_id_is_source=True), "fallback_ids", (IMAGE,)),
        (TraceSpec(), "name", None),
        (TraceSpec(creates=True), "name", "ims_test"),
        (TraceSpec(), "traced_operations", None),
        (TraceSpec(carries_patch=True), "traced_operations", (("add", "/x", "y"),)),
        (TraceSpec(job_id_paths=()), "job_ids", ()),
        (TraceSpec(), "job_ids", (JOB,)),
    ],
)
def test_each_column_of_a_trace_spec_is_read(monkeypatch, row, field, expected):
    monkeypatch.setitem(TRACE_SPECS, ("ims", "testOnlyTrace"), row)
    event = load_event("cts_create_image.json")
    event["cts"].update(
        trace_name="testOnlyTrace",
        request=[{"op": "add", "path": "/x", "value": "y"}] if row.carries_patch else "{}",
    )

    (target,) = parse_event(event).targets

    assert getattr(target, field) == expected
