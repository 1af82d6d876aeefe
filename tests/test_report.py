"""`imsguard report`: the OBS report, a plain sweep result and an event report, rendered as
text, JSON and one HTML page; everything else refused with exit status 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import EVENTS
from imsguard_tools import report
from imsguard_tools.cli import main

REPORTS = Path(__file__).parent / "reports"
OBS_SWEEP = REPORTS / "obs_sweep.json"  # the OBS sink's report: six images, every kind
EVIL = "<script>alert(1)</script>"  # an image name in OBS_SWEEP: user data


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["report", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def summary_of(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    status, out, _ = run(capsys, *argv, "--output", "json")
    assert status == 0
    return dict(json.loads(out))


def saved(tmp_path: Path, data: Any, name: str = "report.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


# -- the OBS report ------------------------------------------------------------------------


def test_text_shows_totals_compliance_changes_and_attention(capsys):
    status, out, _ = run(capsys, str(OBS_SWEEP))

    assert status == 0
    assert "examined 6 image(s)" in out
    assert "  updated                2" in out and "  error                  1" in out
    assert "  kebab-case-name                  3           2      2          60%" in out
    assert "  uefi-boot                        2           3      1          40%" in out
    assert "  nic-multiqueue                   4           1      0          80%" in out
    assert "    33ad552d-1149-471c-8190-ff6776174a00 'ims_test'\n" in out
    assert "      name: 'ims_test' -> 'ims-test'\n      hw_firmware_type: 'bios' -> 'uefi'" in out
    assert "needs attention: 3" in out
    assert (
        "    e1d2c3b4-a5f6-4789-9abc-def012345633 'db-golden' [error] uefi-boot: "
        "hw_firmware_type is 'bios', should be 'uefi'" in out
    )


def test_json_summary_has_its_documented_keys_and_numbers(capsys):
    summary = summary_of(capsys, str(OBS_SWEEP))

    assert list(summary) == [
        "source",
        "kind",
        "complete",
        "imsguard",
        "trigger",
        "dry_run",
        "status",
        "generated_at",
        "region",
        "project_id",
        "request_id",
        "hop",
        "sweep_id",
        "hops",
        "examined",
        "outcomes",
        "rules",
        "changes",
        "needs_attention",
        "notes",
    ]
    assert summary["kind"] == "sweep" and summary["complete"] is True
    assert summary["request_id"] == "0f4c2d9e-7b1a-4c3d-9e8f-112233445566"
    assert summary["examined"] == 6
    assert summary["outcomes"] == {
        "compliant": 1,
        "error": 1,
        "non_compliant": 1,
        "not_applicable": 1,
        "updated": 2,
    }
    assert summary["rules"][1] == {
        "rule": "uefi-boot",
        "compliant": 2,
        "violations": 3,
        "fixed": 1,
        "errors": 0,
        "exempt": 0,
        "not_applicable": 0,
        "judged": 5,
        "percent_compliant": 40.0,
    }
    assert [r["percent_compliant"] for r in summary["rules"]] == [60.0, 40.0, 80.0]
    assert summary["changes"][2] == {
        "image_id": "5f0e2a57-6a0b-4c1e-9d43-0b7d3c1c2a11",
        "image_name": EVIL,
        "outcome": "updated",
        "attribute": "name",
        "before": EVIL,
        "after": "script-alert-1-script",
    }
    assert [(r["image_name"], r["outcome"], r["rule"]) for r in summary["needs_attention"]] == [
        (EVIL, "updated", "nic-multiqueue"),  # a violation that cannot be fixed
        ("web-legacy", "non_compliant", "uefi-boot"),  # audit mode
        ("db-golden", "error", "uefi-boot"),  # the PATCH failed
    ]
    assert summary["notes"] == []


def test_html_page_is_self_contained_and_escapes_the_report(tmp_path, capsys):
    page = tmp_path / "report.html"

    status, out, err = run(capsys, str(OBS_SWEEP), "--html", str(page))

    text = page.read_text(encoding="utf-8")
    assert status == 0 and "examined 6 image(s)" in out and f"wrote {page}" in err
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower()
    for reference in ("http:", "https:", "src=", "href=", "url(", "@import"):
        assert reference not in text
    assert 'data-rule="kebab-case-name" data-percent="60.0"' in text
    assert '<td class="n" data-total="examined">6</td>' in text
    assert list(tmp_path.iterdir()) == [page]  # no part file left behind


def test_an_html_page_that_cannot_be_written_fails_cleanly(tmp_path, capsys):
    status, out, err = run(capsys, str(OBS_SWEEP), "--html", str(tmp_path / "no" / "r.html"))

    assert status == 2 and out == ""
    assert "cannot write" in err and "No such file or directory" in err


def test_a_rule_that_judged_no_image_has_no_percent(tmp_path, capsys):
    data = json.loads(OBS_SWEEP.read_text(encoding="utf-8"))
    data["rules"]["kebab-case-name"] = {"not_applicable": 6}
    page = tmp_path / "r.html"

    summary = summary_of(capsys, saved(tmp_path, data), "--html", str(page))

    assert summary["rules"][0]["percent_compliant"] is None
    assert 'data-rule="kebab-case-name" data-percent=""' in page.read_text(encoding="utf-8")
    assert "n/a" in page.read_text(encoding="utf-8")


# -- the other forms: a sweep's and an event's own report ----------------------------------


def test_a_plain_sweep_result_falls_back_to_its_results(tmp_path, capsys):
    assert main(["sweep", "--fake", "--output", "json"]) == 0
    sweep = saved(tmp_path, json.loads(capsys.readouterr().out))

    summary = summary_of(capsys, sweep)

    assert summary["kind"] == "sweep_result" and summary["complete"] is True
    assert summary["examined"] == 4
    assert summary["outcomes"] == {"compliant": 1, "not_applicable": 1, "updated": 2}
    by_rule = {r["rule"]: r for r in summary["rules"]}
    assert by_rule["kebab-case-name"]["percent_compliant"] == 33.3
    assert by_rule["kebab-case-name"]["fixed"] == 2
    assert by_rule["nic-multiqueue"]["percent_compliant"] == 100.0
    assert {
        (r["image_name"], r["attribute"], r["before"], r["after"]) for r in summary["changes"]
    } == {
        ("Win2019 Golden", "name", "Win2019 Golden", "win2019-golden"),
        ("ims_test", "name", "ims_test", "ims-test"),
        ("ims_test", "hw_firmware_type", "bios", "uefi"),
    }
    assert summary["needs_attention"] == []


def test_a_truncated_sweep_result_says_its_lists_are_partial(tmp_path, capsys):
    data = json.loads(OBS_SWEEP.read_text(encoding="utf-8"))
    del data["images"]
    data["truncated"] = True

    status, out, _ = run(capsys, saved(tmp_path, data))

    assert status == 0
    assert "note: the report's lists stop at IMSGUARD_RESULTS_LIMIT entries" in out
    assert "'db-golden' [error] uefi-boot: not updated: IMS answered 500" in out


def test_an_event_report_counts_its_verdicts(tmp_path, capsys):
    event = str(EVENTS / "cts_create_image.json")
    assert main(["invoke", event, "--fake", "--output", "json"]) == 0
    result = saved(tmp_path, json.loads(capsys.readouterr().out))

    summary = summary_of(capsys, result)

    assert summary["kind"] == "event" and summary["examined"] == 1
    assert summary["trigger"] == "CTS createImage (ConsoleAction)"
    assert [(r["rule"], r["compliant"], r["violations"], r["fixed"]) for r in summary["rules"]] == [
        ("kebab-case-name", 0, 1, 1),
        ("uefi-boot", 0, 1, 1),
        ("nic-multiqueue", 1, 0, 0),
    ]
    assert [(r["attribute"], r["before"], r["after"]) for r in summary["changes"]] == [
        ("name", "ims_test", "ims-test"),
        ("hw_firmware_type", "bios", "uefi"),
    ]


def test_an_ignored_event_report_says_why(tmp_path, capsys):
    event = str(EVENTS / "cts_other_service.json")
    main(["invoke", event, "--fake", "--output", "json"])
    result = saved(tmp_path, json.loads(capsys.readouterr().out))

    status, out, _ = run(capsys, result)

    assert status == 0
    assert "examined 0 image(s)" in out
    assert "note: ignored: trace of service 'FunctionGraph', not IMS" in out


# -- what is refused -------------------------------------------------------------------------


def expect_refused(capsys, tmp_path, source: str, message: str) -> None:
    """Exit 2, the reason on stderr, nothing on stdout and no page written."""
    page = tmp_path / "out.html"
    status, out, err = run(capsys, source, "--html", str(page))
    assert status == 2
    assert out == ""
    assert message in err
    assert not page.exists()


def test_a_missing_file_is_refused(tmp_path, capsys):
    missing = str(tmp_path / "nope.json")
    expect_refused(capsys, tmp_path, missing, f"cannot read {missing}: No such file or directory")


def test_a_file_that_is_not_json_is_refused(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text("imsguard 0.1.0: sweep against the cloud\n", encoding="utf-8")
    expect_refused(capsys, tmp_path, str(path), f"{path} is not a JSON report: Expecting value")


def test_a_file_that_is_not_text_is_refused(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_bytes(b"\xff\xfe\x00{")
    expect_refused(capsys, tmp_path, str(path), "is not a JSON report: it is not UTF-8 text")


def test_json_output_reports_the_error_as_json(tmp_path, capsys):
    status, out, _ = run(capsys, str(tmp_path / "nope.json"), "--output", "json")

    assert status == 2
    assert json.loads(out)["error"].startswith("cannot read")


BROKEN = {
    "a JSON array": ([1, 2], "holds a JSON list, not an imsguard report object"),
    "no version key": ({"results": []}, "it has no 'imsguard' version key (keys: results)"),
    "no image list": ({"imsguard": "0.1.0", "status": "ok"}, "neither 'images' nor 'results'"),
    "images not a list": (
        {"imsguard": "0.1.0", "images": {"a": 1}},
        "'images' is a dict, not a list",
    ),
    "an image that is a string": (
        {"imsguard": "0.1.0", "images": ["img"]},
        "images[0] is a str, not an image object",
    ),
    "an image without outcome": (
        {"imsguard": "0.1.0", "images": [{"image_id": "x"}]},
        "images[0] has no 'outcome'",
    ),
    "verdicts without a rule": (
        {"imsguard": "0.1.0", "results": [{"outcome": "updated", "rules": [{"verdict": "x"}]}]},
        "results[0]: 'rules' is not a list of objects with rule, verdict",
    ),
    "operations without a path": (
        {"imsguard": "0.1.0", "results": [{"outcome": "updated", "operations": ["/name"]}]},
        "results[0]: 'operations' is not a list of objects with path",
    ),
    "a sweep without counts": (
        {"imsguard": "0.1.0", "examined": 3, "results": []},
        "'summary' is missing or not an object",
    ),
    "a sweep with a bad count": (
        {"imsguard": "0.1.0", "examined": "3", "summary": {}, "rules": {}, "results": []},
        "'examined' is not a count of images",
    ),
    "rule counts that are not counts": (
        {
            "imsguard": "0.1.0",
            "examined": 1,
            "summary": {"compliant": 1},
            "rules": {"uefi-boot": {"compliant": True}},
            "images": [],
        },
        "rules['uefi-boot'] is not a count per verdict",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_a_report_of_the_wrong_shape_is_refused(case, tmp_path, capsys):
    data, message = BROKEN[case]
    expect_refused(capsys, tmp_path, saved(tmp_path, data), message)


# -- obs:// ---------------------------------------------------------------------------------

BAD_URIS = {
    "obs://": "names no bucket",
    "obs:///sweep.json": "names no bucket",
    "obs://My_Bucket/sweep.json": "'My_Bucket' is not an OBS bucket name",
    "obs://ab/sweep.json": "'ab' is not an OBS bucket name",
    "obs://-bucket/sweep.json": "'-bucket' is not an OBS bucket name",
    "obs://my..bucket/sweep.json": "'my..bucket' is not an OBS bucket name",
    "obs://reports.prod/sweep.json": "no '.': OBS accepts it, but the SDK addresses the bucket",
    "obs://reports": "names no object: write obs://reports/<key>",
    "obs://reports/": "names no object",
    "obs://reports/imsguard/2026/": "names a folder, not a report object",
    "obs://reports/" + "k" * 1025: "longer than OBS's 1024 bytes",
    "https://reports.obs.example.com/latest.json": "only files and obs://bucket/key",
}


@pytest.mark.parametrize("uri", BAD_URIS, ids=lambda uri: uri[:40])
def test_a_malformed_obs_uri_is_refused_before_reading(uri, tmp_path, capsys, monkeypatch):
    def no_reading(bucket, key):
        raise AssertionError("a malformed URI must not be read")

    monkeypatch.setattr(report, "_read_obs", no_reading)
    expect_refused(capsys, tmp_path, uri, BAD_URIS[uri])


def test_an_obs_uri_is_read_through_read_obs(tmp_path, capsys, monkeypatch):
    asked = []

    def read(bucket, key):
        asked.append((bucket, key))
        return OBS_SWEEP.read_bytes()

    monkeypatch.setattr(report, "_read_obs", read)
    uri = "obs://imsguard-reports-prod/imsguard/latest.json"

    summary = summary_of(capsys, uri)

    assert asked == [("imsguard-reports-prod", "imsguard/latest.json")]
    assert summary["source"] == uri and summary["examined"] == 6


def test_reading_obs_needs_an_endpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("IMSGUARD_OBS_ENDPOINT", raising=False)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AK-TEST-0001")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "SK-TEST-SECRET-0002")
    expect_refused(
        capsys, tmp_path, "obs://reports/imsguard/latest.json", "needs IMSGUARD_OBS_ENDPOINT"
    )


def test_reading_obs_needs_credentials(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IMSGUARD_OBS_ENDPOINT", "https://obs.ap-southeast-1.myhuaweicloud.com")
    expect_refused(
        capsys,
        tmp_path,
        "obs://reports/imsguard/latest.json",
        "needs credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK",
    )


def test_reading_obs_over_plain_http_is_refused_but_for_loopback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IMSGUARD_OBS_ENDPOINT", "http://obs.ap-southeast-1.myhuaweicloud.com")
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AK-TEST-0001")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "SK-TEST-SECRET-0002")
    expect_refused(
        capsys, tmp_path, "obs://reports/imsguard/latest.json", "security token in clear"
    )


# -- where a sweep stopped, and a sweep in several hops ------------------------------------


def hop_report(hop: int, images: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A hop's report as the OBS sink writes it, its counts drawn from ``images``."""
    rules: dict[str, dict[str, int]] = {}
    for image in images:
        for verdict in image["rules"]:
            counts = rules.setdefault(verdict["rule"], {})
            counts[verdict["verdict"]] = counts.get(verdict["verdict"], 0) + 1
    outcomes: dict[str, int] = {}
    for image in images:
        outcomes[image["outcome"]] = outcomes.get(image["outcome"], 0) + 1
    return {
        "sweep_id": "sweep-1",
        "hop": hop,
        "request_id": f"req-{hop}",
        "imsguard": "0.1.0",
        "trigger": "timer",
        "status": "ok",
        "examined": len(images),
        "summary": outcomes,
        "rules": rules,
        "images": images,
        **extra,
    }


def image(image_id: str, outcome: str, verdict: str, fix: str = "") -> dict[str, Any]:
    rule = {"rule": "kebab", "verdict": verdict, "reason": "why", **({"fix": fix} if fix else {})}
    updated = outcome in ("updated", "would_update")
    return {
        "image_id": image_id,
        "image_name": "Web_1",
        "outcome": outcome,
        "reason": "r",
        "operations": [{"op": "replace", "path": "/name", "value": "web-1"}] if updated else [],
        "before": {"name": "Web_1"} if updated else {},
        "rules": [rule],
    }


CONTINUED = {
    "limit": (
        {"cause": "limit", "reason": "the limit of images was reached", "marker": "m-9", "hop": 1},
        {"started": False, "reason": "the limit of images was reached: rerun ..."},
        "stopped (the limit of images was reached): rerun with marker m-9",
    ),
    "error": (
        {"cause": "error", "reason": "a page could not be read", "marker": None, "hop": 1},
        {"started": False, "reason": "a page could not be read: rerun ..."},
        "stopped (a page could not be read): rerun the sweep from the start",
    ),
    "time, not continued": (
        {"cause": "time", "reason": "out of time", "marker": "m-3", "hop": 1},
        {"started": False, "reason": "IMSGUARD_SWEEP_CONTINUE is not true: run it again"},
        "stopped (out of time; no next hop was started: IMSGUARD_SWEEP_CONTINUE is not true: "
        "run it again): rerun with marker m-3",
    ),
    "time, continued": (
        {"cause": "time", "reason": "out of time", "marker": "m-3", "hop": 4},
        {"started": True, "request_id": "r"},
        "not finished (out of time): hop 4 went on in another invocation",
    ),
}


@pytest.mark.parametrize("case", CONTINUED, ids=list(CONTINUED))
def test_a_continuation_is_worded_from_its_cause_and_whether_a_hop_went_on(case, tmp_path, capsys):
    continuation, continued, says = CONTINUED[case]
    data = hop_report(0, [image("a", "compliant", "compliant")])
    data.update(continuation=continuation, continued=continued)

    status, out, _ = run(capsys, saved(tmp_path, data))

    assert status == 0 and f"note: {says}" in out
    assert ("went on" in out) == continued["started"]
    assert "· hop 0 ·" in out  # one hop's report says which


def test_an_index_merges_its_hops_the_last_entry_of_an_image_winning(tmp_path, capsys, monkeypatch):
    """Hop 0 deferred image b's patch (out of time): hop 1 examined b again and fixed it.
    Every number counts b once, as hop 1 found it."""
    hop0 = hop_report(
        0,
        [image("a", "updated", "violation", "fixed"), image("b", "deferred", "violation")],
        continuation={"cause": "time", "reason": "out of time", "marker": "a", "hop": 1},
        continued={"started": True},
    )
    hop1 = hop_report(
        1, [image("b", "updated", "violation", "fixed"), image("c", "non_compliant", "violation")]
    )
    index = {
        "imsguard": "0.1.0",
        "kind": "sweep-index",
        "sweep_id": "sweep-1",
        "generated_at": "2026-01-01T00:40:00Z",
        "region": "ap-southeast-1",
        "project_id": "p",
        "hops": ["imsguard/2026/01/01/sweep-sweep-1-hop-0.json", "imsguard/x/hop-1.json"],
    }
    objects = {
        "imsguard/latest.json": index,
        index["hops"][0]: hop0,
        index["hops"][1]: hop1,
    }

    def read(bucket: str, key: str) -> bytes:
        if key not in objects:
            raise report.ReportError(f"cannot read obs://{bucket}/{key}: OBS answered 404")
        return json.dumps(objects[key]).encode()

    monkeypatch.setattr(report, "_read_obs", read)

    summary = summary_of(capsys, "obs://reports/imsguard/latest.json")
    status, out, _ = run(capsys, "obs://reports/imsguard/latest.json")

    assert (summary["sweep_id"], summary["hops"], summary["hop"]) == ("sweep-1", 2, None)
    assert summary["examined"] == 3  # image b: deferred by hop 0, updated by hop 1
    assert summary["outcomes"] == {"non_compliant": 1, "updated": 2}
    assert summary["rules"][0]["violations"] == 3 and summary["rules"][0]["fixed"] == 2
    assert [(r["image_id"], r["outcome"]) for r in summary["changes"]] == [
        ("a", "updated"),
        ("b", "updated"),
    ]
    assert [r["image_id"] for r in summary["needs_attention"]] == ["c"]
    assert summary["notes"] == [
        "1 examination(s) were of an image an earlier hop had examined (a patch deferred to "
        "the next hop, or a listing that started again): every number counts each image "
        "once, as the last hop found it, or as the hop that changed it"
    ]
    assert status == 0 and "timer · sweep sweep-1, 2 hops · generated at" in out

    del objects[index["hops"][1]]  # a hop's object that cannot be read is named, not hidden
    summary = summary_of(capsys, "obs://reports/imsguard/latest.json")
    assert summary["complete"] is False and summary["examined"] == 2
    assert "not in these numbers: " in summary["notes"][0]


def test_a_local_index_is_refused_saying_to_read_it_from_obs(tmp_path, capsys):
    index = {"imsguard": "0.1.0", "kind": "sweep-index", "sweep_id": "s", "hops": ["k.json"]}

    expect_refused(
        capsys, tmp_path, saved(tmp_path, index), "is a sweep index (latest.json): it lists"
    )


def index_of(*keys):
    return {
        "imsguard": "0.1.0",
        "kind": "sweep-index",
        "sweep_id": "s",
        "generated_at": "2026-01-01T00:40:00Z",
        "region": "ap-southeast-1",
        "project_id": "p",
        "hops": list(keys),
    }


def serve(monkeypatch, objects):
    def read(bucket: str, key: str) -> bytes:
        if key not in objects:
            raise report.ReportError(f"cannot read obs://{bucket}/{key}: OBS answered 404")
        return json.dumps(objects[key]).encode()

    monkeypatch.setattr(report, "_read_obs", read)


def test_a_change_an_earlier_hop_made_stays_when_a_later_hop_sees_the_image_again(
    capsys, monkeypatch
):
    """A listing that started again: hop 1 sees image a, which hop 0 fixed, as compliant."""
    hop0 = hop_report(0, [image("a", "updated", "violation", "fixed")])
    hop1 = hop_report(1, [image("a", "compliant", "compliant")])
    serve(
        monkeypatch,
        {"latest.json": index_of("h0.json", "h1.json"), "h0.json": hop0, "h1.json": hop1},
    )

    summary = summary_of(capsys, "obs://reports/latest.json")

    assert summary["outcomes"] == {"updated": 1}
    assert [c["image_id"] for c in summary["changes"]] == ["a"]


def test_a_hop_that_is_an_index_or_malformed_is_named_not_fatal(capsys, monkeypatch):
    hop0 = hop_report(0, [image("a", "updated", "violation", "fixed")])
    serve(
        monkeypatch,
        {
            "latest.json": index_of("h0.json", "nested.json", "bad.json"),
            "h0.json": hop0,
            "nested.json": index_of("h0.json"),
            "bad.json": {"imsguard": "0.1.0", "images": "nope"},
        },
    )

    summary = summary_of(capsys, "obs://reports/latest.json")

    assert summary["complete"] is False and summary["examined"] == 1
    assert len([n for n in summary["notes"] if n.startswith("not in these numbers")]) == 2
    assert any("is a sweep index, not a hop's report" in n for n in summary["notes"])
