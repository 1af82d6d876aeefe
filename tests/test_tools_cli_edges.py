"""The command line's rough edges (issue 11): closed pipes, resume hints, time, counts of a
truncated sweep, dry-run listings, explain's defaults, out-of-scope cases, log levels, BOMs."""

from __future__ import annotations

import codecs
import json
import os
import re
import subprocess
import sys

import pytest

from helpers import EVENTS
from imsguard_tools.cases import complete_image
from imsguard_tools.cli import main

ROOT = EVENTS.parents[1]
DEFAULT_POLICY = ROOT / "function/policy.yaml"
SAMPLE_IMAGE_ID = "33ad552d-1149-471c-8190-ff6776174a00"


def run_until_the_reader_goes(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with stdout on a pipe whose reader closes it after 100 bytes (``| head``)."""
    command = [sys.executable, "-m", "imsguard_tools.cli", *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.read(100)
    process.stdout.close()
    err = process.stderr.read()
    process.wait(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, first, err)


def test_a_reader_that_goes_away_ends_the_output_quietly():
    # half a megabyte: far more than a pipe holds, so writing meets the closed pipe
    done = run_until_the_reader_goes("sweep", "--fake", "--images", "3000", "--output", "json")

    assert done.stdout  # it did write
    assert b"Traceback" not in done.stderr and b"BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 0


def test_a_sweep_out_of_time_before_any_image_says_run_it_again(capsys):
    # 0.5 s beyond the 10 s safety margin: no time for a single page
    assert main(["sweep", "--fake", "--timeout", "10.5"]) == 0

    out = capsys.readouterr().out
    assert "None" not in out
    assert (
        "not finished (out of time): no image was finished in time: run `imsguard sweep "
        "--fake` again with a --timeout longer than 10.5 s"
    ) in out


def test_a_sweep_out_of_time_after_a_marker_says_where_to_go_on(capsys):
    assert (
        main(
            [
                "sweep",
                "--fake",
                "--dry-run",
                "--since",
                "2020-01-01",
                "--timeout",
                "10.5",
                "--marker",
                SAMPLE_IMAGE_ID,
            ]
        )
        == 0
    )

    assert (
        "continue with: imsguard sweep --fake --dry-run --since 2020-01-01 --timeout 10.5 "
        f"--marker {SAMPLE_IMAGE_ID}\n"
    ) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("timeout", "margin"),
    [("5", None), ("10", None), ("30", "30"), ("-1", None), ("nan", None), ("inf", "20")],
)
def test_a_timeout_within_the_safety_margin_is_refused(capsys, monkeypatch, timeout, margin):
    from imsguard import app

    if margin is not None:
        monkeypatch.setenv("IMSGUARD_SAFETY_MARGIN_SECONDS", margin)
    monkeypatch.setattr(app, "handler", lambda *a: pytest.fail("the sweep ran"))

    assert main(["sweep", "--fake", "--timeout", timeout]) == 2

    err = capsys.readouterr().err
    shown = f"{float(timeout):g}"
    assert f"--timeout {shown} s leaves no time" in err
    assert f"keeps the last {margin or 10} s (IMSGUARD_SAFETY_MARGIN_SECONDS)" in err


def test_a_truncated_sweep_counts_every_image_and_says_its_lists_are_cut(capsys, monkeypatch):
    monkeypatch.setenv("IMSGUARD_RESULTS_LIMIT", "5")

    assert main(["sweep", "--fake", "--images", "40"]) == 0

    out = capsys.readouterr().out
    updated = int(re.search(r"^  updated +(\d+)$", out, re.M).group(1))
    assert updated > 5
    assert f"\n  changed: {updated} (the report lists 5):\n" in out
    assert "the report's lists stop at 5 entries (IMSGUARD_RESULTS_LIMIT)" in out


def test_a_short_list_is_shown_whole_with_its_count(capsys):
    assert main(["sweep", "--fake"]) == 0

    out = capsys.readouterr().out
    updated = int(re.search(r"^  updated +(\d+)$", out, re.M).group(1))
    assert f"\n  changed: {updated}:\n" in out
    assert "report lists" not in out and "stop at" not in out


def test_a_dry_run_sweep_lists_the_images_that_would_change(capsys):
    assert main(["sweep", "--fake", "--images", "12", "--dry-run"]) == 0

    out = capsys.readouterr().out
    would = int(re.search(r"^  would_update +(\d+)$", out, re.M).group(1))
    assert f"\n  would change: {would}" in out
    listed = re.findall(r"^    [0-9a-f-]{36} '.*': .*\((?:replace|add) /", out, re.M)
    assert len(listed) == min(would, 10)


def test_the_sweep_text_lists_what_the_report_holds(capsys, monkeypatch):
    """The printing alone, on a report as the sweep writes it: counts from the summary."""
    from imsguard import app

    entry = {
        "image_id": SAMPLE_IMAGE_ID,
        "image_name": None,
        "reason": "held back",
        "operations": [{"op": "replace", "path": "/name", "value": "x"}],
    }
    report = {
        "status": "ok",
        "trigger": "sweep",
        "dry_run": False,
        "examined": 3000,
        "summary": {"would_update": 1500, "compliant": 1500},
        "rules": {},
        "changed": [],
        "would_change": [entry] * 12,
        "needs_attention": [entry] * 12,
        "results": [entry] * 12,
        "truncated": True,
    }
    monkeypatch.setattr(app, "handler", lambda event, context: report)

    assert main(["sweep", "--fake"]) == 0

    out = capsys.readouterr().out
    assert "\n  would change: 1500 (the report lists 12), the first 10:\n" in out
    assert f"    {SAMPLE_IMAGE_ID} (no name): held back (replace /name = 'x')" in out
    assert "needs a human: 12 listed, perhaps more (the report's lists are truncated)" in out
    assert "changed:" not in out and "None" not in out


def test_explain_completes_an_image_file_as_test_cases_do(tmp_path, capsys):
    from imsguard.policy import load_policy
    from imsguard_tools.cases import CASE_PROJECT, load_cases, run_cases

    image = tmp_path / "image.json"
    image.write_text('{"name": "ims_test"}')
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases: [{name: x, image: {name: ims_test}, expect: {}}]\n")
    (case,) = run_cases(load_policy(DEFAULT_POLICY), load_cases(cases), None)

    assert main(["explain", str(DEFAULT_POLICY), "--image", str(image), "--output", "json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["outcome"] == case.actual["outcome"] == "updated"
    assert report["operations"] == case.actual["operations"]
    assert report["assumed"] == {
        k: v for k, v in complete_image({}, CASE_PROJECT).items() if k != "name"
    }


def test_explain_text_says_what_it_assumed_and_never_none(tmp_path, capsys):
    image = tmp_path / "image.json"
    image.write_text('{"name": "ims_test", "__os_version": null}')

    assert main(["explain", str(DEFAULT_POLICY), "--image", str(image)]) == 0

    header, assumed = capsys.readouterr().out.splitlines()[:2]
    assert header.endswith("'ims_test' (not set, FusionCompute)")
    assert "None" not in header
    assert assumed.startswith("  not in the file, taken as in test cases: __imagetype, ")
    assert "__os_version" not in assumed  # the file gave it (as null)


def test_explain_keeps_the_files_owner(capsys):
    sample = ROOT / "tools/imsguard_tools/samples/example-image.json"

    assert (
        main(["explain", str(DEFAULT_POLICY), "--image", str(sample), "--project-id", "f" * 32])
        == 0
    )
    assert "ran now: not_applicable (owned by another project)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("image", "why"),
    [
        (
            "{name: ims_test, owner: ffffffffffffffffffffffffffffffff}",
            "the image is out of scope (owned by another project)",
        ),
        ("{name: ims_test, status: queued}", "the image is out of scope (the image is queued"),
        ("{name: ims_test, tags: [imsguard-exempt=yes]}", "the image is exempt ("),
    ],
)
def test_test_says_an_image_out_of_scope_is_out_of_scope(tmp_path, capsys, image, why):
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n"
        f"  - name: out\n    image: {image}\n"
        "    expect: {rules: {kebab-case-name: violation},\n"
        "             fixes: {kebab-case-name: fixed}}\n"
    )

    assert main(["test", str(DEFAULT_POLICY), str(cases)]) == 1

    out = capsys.readouterr().out
    assert "has no rule" not in out
    assert f"rule kebab-case-name: expected violation, but no rule was checked: {why}" in out
    assert f"fix of kebab-case-name: expected fixed, but no rule was checked: {why}" in out


def test_test_still_says_when_the_policy_has_no_such_rule(tmp_path, capsys):
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases: [{name: x, image: {owner: ffffffffffffffffffffffffffffffff},\n"
        "          expect: {rules: {no-such-rule: violation}}}]\n"
    )

    assert main(["test", str(DEFAULT_POLICY), str(cases)]) == 1
    assert "rule no-such-rule: the policy has no rule 'no-such-rule'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", [["invoke", str(EVENTS / "direct_image.json"), "--fake"], ["sweep", "--fake"]]
)
def test_the_log_level_is_one_of_the_four(capsys, command):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--log-level", "LOUD"])

    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "argument --log-level: invalid choice: 'LOUD'" in err
    assert "DEBUG" in err and "IMSGUARD_LOG_LEVEL" not in err
    assert main([*command, "--log-level", "error"]) == 0  # any case


def test_files_with_a_byte_order_mark_are_read(tmp_path, capsys):
    bom = codecs.BOM_UTF8
    event = tmp_path / "event.json"
    event.write_bytes(bom + (EVENTS / "direct_image.json").read_bytes())
    image = tmp_path / "image.json"
    image.write_bytes(bom + b'{"name": "ims_test"}')
    cases = tmp_path / "cases.yaml"
    cases.write_bytes(bom + b"cases: [{name: x, image: {name: ims-test}, expect: {}}]\n")

    assert main(["invoke", str(event), "--fake"]) == 0
    assert main(["explain", str(DEFAULT_POLICY), "--image", str(image)]) == 0
    assert main(["test", str(DEFAULT_POLICY), str(cases)]) == 0
    assert "UPDATED" in capsys.readouterr().out


def test_quiet_stream_passes_everything_through_until_the_reader_goes():
    import io

    from imsguard_tools.cli import _QuietStream

    class Closing(io.StringIO):
        def write(self, text):
            if "boom" in text:
                raise BrokenPipeError
            return super().write(text)

        def fileno(self):
            raise io.UnsupportedOperation

    inner = Closing()
    stream = _QuietStream(inner)

    assert stream.write("one\n") == 4
    stream.write("boom\n")
    stream.write("three\n")
    stream.flush()

    assert inner.getvalue() == "one\n" and stream.gone


def test_after_the_reader_goes_the_interpreters_last_flush_is_quiet():
    """What is still buffered when the reader goes must not fail again at exit."""
    from imsguard_tools.cli import _QuietStream

    read_end, write_end = os.pipe()
    with open(write_end, "w", encoding="utf-8") as stream:
        quiet = _QuietStream(stream)
        quiet.write("still in the buffer\n")
        os.close(read_end)
        quiet.flush()  # the pipe is closed: the wrapper stops quietly

        assert quiet.gone
        stream.flush()  # as the interpreter does on exit: no BrokenPipeError now
