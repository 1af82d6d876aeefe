"""Every event fixture, end to end: the table of event variants and what each yields.

Each fixture runs through the handler and the real SDK against the fake IMS that
``imsguard invoke --fake`` uses: the sample images and what every sample event points
at (``FakeIms.with_sample_events``). A new fixture must be added to the table.
"""

from __future__ import annotations

import pytest

from helpers import EVENTS, load_event
from imsguard.app import handler
from imsguard.results import OUTCOMES
from imsguard_tools.testing import FakeIms

# fixture: (status, outcomes in order, PATCH requests)
TABLE = {
    "cts_create_image.json": ("ok", ["updated"], 1),
    "cts_create_image_job_only.json": ("ok", ["updated"], 1),
    "cts_create_image_job_only_objects.json": ("ok", ["updated"], 1),
    "cts_create_image_job_done.json": ("ok", ["updated"], 1),
    "cts_create_image_job_failed.json": ("ok", ["not_applicable"], 0),
    "cts_create_image_name_only.json": ("ok", ["updated"], 1),
    "cts_create_image_text_time.json": ("ok", ["updated"], 1),
    "cts_create_image_documented_shape.json": ("ok", ["updated"], 1),  # resource_id {}
    "cts_native_create_image.json": ("ok", ["updated"], 1),
    "cts_native_update_image.json": ("ok", ["updated"], 1),
    "cts_native_delete_tag.json": ("ok", ["updated"], 1),
    "cts_native_delete_image.json": ("ignored", [], 0),
    "cts_create_image_failed.json": ("ignored", [], 0),
    "cts_copy_image.json": ("ok", ["updated"], 1),
    "cts_copy_image_done.json": ("ok", ["updated"], 1),
    "cts_update_image.json": ("ok", ["updated"], 1),
    "cts_delete_image.json": ("ignored", [], 0),
    "cts_other_service.json": ("ignored", [], 0),
    "eventgrid_create_image.json": ("ok", ["updated"], 1),
    "eventgrid_create_image_systemaction_wrapped.json": ("ok", ["updated"], 1),
    "eventgrid_update_image_apicall.json": ("ok", ["updated"], 1),
    "eventgrid_batch.json": ("ok", ["updated"], 1),
    "direct_image.json": ("ok", ["updated"], 1),
    "direct_images_dry_run.json": ("ok", ["would_update", "compliant"], 0),
    "timer.json": ("ok", ["compliant", "not_applicable", "updated", "updated", "updated"], 3),
    "bad_resource_id_is_a_job_id.json": ("invalid", [], 0),
    "bad_path_like_job_id.json": ("invalid", [], 0),
    "bad_response_not_json.json": ("invalid", [], 0),
    "bad_wildcard_name.json": ("invalid", [], 0),
}


def test_every_fixture_is_in_the_table():
    assert {path.name for path in EVENTS.glob("*.json")} == set(TABLE)


@pytest.fixture
def fake():
    with FakeIms.with_sample_events() as sample_fake:
        yield sample_fake


@pytest.mark.parametrize("name", sorted(TABLE))
def test_fixture(fake, context, name):
    status, outcomes, patches = TABLE[name]

    result = handler(load_event(name), context)

    assert result["status"] == status
    assert [r["outcome"] for r in result["results"]] == outcomes
    assert len(fake.patches) == patches
    assert all(
        r["outcome"] in OUTCOMES and "operations" in r and "image_id" in r
        for r in result["results"]
    )
    if status != "ok":
        assert result["reason"] and fake.calls == []
