"""`imsguard invoke`: the same handler on an event file, shown for people or as JSON."""

from __future__ import annotations

import json

from conftest import EVENTS
from imsguard.cli import main


def test_invoke_fake_shows_decision_and_the_patch_sent(capsys):
    status = main(["invoke", str(EVENTS / "cts_create_image.json"), "--fake"])

    out = capsys.readouterr().out
    assert status == 0
    assert "UPDATED" in out
    assert "-> replace /name = 'ims-test'" in out
    assert "PATCH /v2/cloudimages/33ad552d-1149-471c-8190-ff6776174a00 -> 200" in out
    assert '"path": "/hw_firmware_type", "value": "uefi"' in out


def test_invoke_fake_job_only_event_follows_the_seeded_job(capsys):
    status = main(["invoke", str(EVENTS / "cts_create_image_job_only.json"), "--fake"])

    out = capsys.readouterr().out
    assert status == 0
    assert "GET   /v1/0b1e494e2660441a957313163095fe5c/jobs/ff8080814dbd65d7014dbe0d84db0013" in out
    assert "UPDATED" in out


def test_invoke_fake_dry_run_sends_nothing(capsys):
    status = main(["invoke", str(EVENTS / "cts_create_image.json"), "--fake", "--dry-run"])

    out = capsys.readouterr().out
    assert status == 0
    assert "WOULD_UPDATE" in out
    assert "PATCH" not in out


def test_invoke_json_output_is_the_handler_result(capsys):
    status = main(["invoke", str(EVENTS / "direct_image.json"), "--fake", "--output", "json"])

    result = json.loads(capsys.readouterr().out)
    assert status == 0
    assert result["results"][0]["outcome"] == "updated"


def test_invoke_with_a_broken_policy_fails(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nrules: [{name: x, kind: set, set: {min_ram: big}}]\n")

    status = main(["invoke", str(EVENTS / "direct_image.json"), "--fake", "--policy",
                   str(policy)])

    out = capsys.readouterr().out
    assert status == 1
    assert "rule 'x'" in out and "min_ram" in out


def test_invoke_ignored_event_succeeds_and_says_why(capsys):
    status = main(["invoke", str(EVENTS / "timer.json"), "--fake"])

    assert status == 0
    assert "ignored: timer events" in capsys.readouterr().out


def test_invoke_unreadable_event_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")

    assert main(["invoke", str(bad), "--fake"]) == 2
    assert "cannot read event" in capsys.readouterr().err
