"""`imsguard org-report`: an organization sweep's report, made by the real merging of
``imsguard.org.merge`` from sweep-report-shaped answers, rendered as text, JSON and one HTML
page; exit 1 when held or incomplete; anything else refused with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import SECRETS
from imsguard.org.merge import add_hop, hop_record, new_entry, org_report
from imsguard_tools.cli import main
from imsguard_tools.testing import FakeObs

FINANCE = "a0" * 16  # account ids: 32 hex
WEB = "b1" * 16
EVIL = "<script>alert(1)</script>"  # an image name: anyone's text
BUCKET = "imsguard-reports"


# -- building reports as an org sweep does --------------------------------------------------


def answer(examined: int, summary: dict[str, int], rules: dict[str, Any], **lists: Any) -> Any:
    """A shard hop's answer: a sweep report (``imsguard sweep --output json``'s shape)."""
    return {
        "imsguard": "0.1.0",
        "trigger": "org-shard",
        "status": "ok",
        "examined": examined,
        "summary": summary,
        "rules": rules,
        "changed": lists.get("changed", []),
        "would_change": lists.get("would_change", []),
        "needs_attention": lists.get("needs_attention", []),
        "results": [],
        "truncated": False,
        **({"needs_attention_total": lists["total"]} if "total" in lists else {}),
    }


def change(image_id: str, name: str, new_name: str, firmware: bool = False) -> dict[str, Any]:
    """A sweep's ``changed`` / ``would_change`` entry: the operations sent and the before."""
    operations = [{"op": "replace", "path": "/name", "value": new_name}]
    before: dict[str, Any] = {"name": name}
    if firmware:
        operations.append({"op": "replace", "path": "/hw_firmware_type", "value": "uefi"})
        before["hw_firmware_type"] = "bios"
    return {
        "image_id": image_id,
        "image_name": name,
        "reason": f"{len(operations)} attribute(s) changed",
        "operations": operations,
        "before": before,
    }


def attention(image_id: str, name: str, outcome: str, reason: str) -> dict[str, Any]:
    return {"image_id": image_id, "image_name": name, "reason": reason, "outcome": outcome}


def shard(account: str, region: str, *answers: Any, name: str | None = None) -> dict[str, Any]:
    """A shard's entry with each hop's answer summed in, as the coordinator does."""
    identity = {"account": account, "account_name": name, "region": region, "project_id": region}
    entry = new_entry(identity)
    for hop, hop_answer in enumerate(answers):
        add_hop(entry, hop_record(hop_answer, hop, f"imsguard/{account}/{region}/hop-{hop}.json"))
    return entry


def incomplete_run() -> dict[str, Any]:
    """Two accounts, three shards, one that could not assume its agency."""
    finance_1 = answer(
        4,
        {"compliant": 1, "updated": 2, "non_compliant": 1},
        {"kebab-case-name": {"compliant": 2, "violation": 2}, "uefi-boot": {"compliant": 3}},
        changed=[change("img-1", "Web_1", "web-1", firmware=True), change("img-2", EVIL, "s")],
        needs_attention=[attention("img-3", "db-golden", "non_compliant", "audit: bios")],
        total=3,  # two more beyond the listed one
    )
    web = answer(
        2,
        {"compliant": 1, "error": 1},
        {"kebab-case-name": {"compliant": 1, "error": 1}, "uefi-boot": {"not_applicable": 2}},
        needs_attention=[attention("img-9", "legacy", "error", "IMS answered 500")],
    )
    entries = [
        shard(FINANCE, "ap-southeast-1", finance_1, name="finance"),
        shard(WEB, "ap-southeast-1", web),
        shard(FINANCE, "ap-southeast-3", {"status": "error", "error": "cannot assume agency"}),
    ]
    return org_report("nightly-1", entries, "2026-06-01T02:00:00Z", dry_run=False)


def held_run() -> dict[str, Any]:
    """A real run the organization's limit held: every shard planned, none applied."""
    planned = answer(
        3,
        {"would_update": 3},
        {"kebab-case-name": {"violation": 3}},
        would_change=[change("img-5", "App_1", "app-1")],
    )
    entry = shard(FINANCE, "ap-southeast-1", planned)
    entry["status"] = "held"
    reason = "3 images would change, more than org_max_updates 2; nothing was changed"
    limit = {"org_max_updates": 2, "org_max_updates_percent": None, "planned": 3}
    return org_report("run-held", [entry], "2026-06-01T03:00:00Z", False, reason, limit)


def dry_run() -> dict[str, Any]:
    planned = answer(
        2,
        {"compliant": 1, "would_update": 1},
        {"kebab-case-name": {"compliant": 1, "violation": 1}},
        would_change=[change("img-7", "Batch_Node", "batch-node")],
    )
    return org_report("run-dry", [shard(WEB, "eu-west-101", planned)], "2026-06-02", True)


def saved(tmp_path: Path, data: Any, name: str = "report.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["org-report", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def summary_of(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    _, out, _ = run(capsys, *argv, "--output", "json")
    return dict(json.loads(out))


# -- text ------------------------------------------------------------------------------------


def test_text_groups_shards_by_account_and_lists_failed_shards_first(tmp_path, capsys):
    status, out, _ = run(capsys, saved(tmp_path, incomplete_run()))

    assert status == 1  # incomplete: rendered anyway
    assert "org run nightly-1 · generated at 2026-06-01T02:00:00Z · status incomplete" in out
    assert "incomplete: 1 of 3 shard(s) did not finish: see failed" in out
    assert (
        f"  did not finish: 1 shard(s)\n    account {FINANCE} ap-southeast-3 [error]: "
        "cannot assume agency\n" in out
    )
    assert out.index("did not finish") < out.index("examined 6 image(s)")
    assert "examined 6 image(s) in 2 account(s), 3 shard(s)" in out
    finance = out.index(f"account {FINANCE} (finance): examined 4")
    web = out.index(f"account {WEB}: examined 2")
    assert finance < web
    finance_block = out[finance:web]  # both finance regions, though the run listed web between
    assert "ap-southeast-1    ok          examined 4, compliant 1" in finance_block
    assert "ap-southeast-3    error       examined 0 (cannot assume agency)" in finance_block


def test_text_shows_each_rules_percent_compliant_over_the_organization(tmp_path, capsys):
    _, out, _ = run(capsys, saved(tmp_path, incomplete_run()))

    # kebab-case-name: 3 compliant of 3 + 2 violations + 1 error judged
    assert "  kebab-case-name                  3           2       1          50%" in out
    # uefi-boot: not_applicable does not count
    assert "  uefi-boot                        3           0       0         100%" in out


def test_text_shows_changes_and_attention_with_how_many_more(tmp_path, capsys):
    _, out, _ = run(capsys, saved(tmp_path, incomplete_run()))

    assert (
        f"  changed:\n    account {FINANCE} ap-southeast-1: img-1 'Web_1'\n"
        "      name: 'Web_1' -> 'web-1'\n      hw_firmware_type: 'bios' -> 'uefi'\n" in out
    )
    assert "would change" not in out
    assert "needs attention: 4" in out
    assert (
        f"    account {FINANCE} ap-southeast-1: img-3 'db-golden' [non_compliant]: audit: bios"
        in out
    )
    assert f"    account {WEB} ap-southeast-1: img-9 'legacy' [error]: IMS answered 500" in out
    assert "    ... and 2 more" in out


def test_a_held_report_says_why_and_shows_the_limit(tmp_path, capsys):
    status, out, _ = run(capsys, saved(tmp_path, held_run()))

    assert status == 1
    assert "· status held" in out and "dry run" not in out
    assert "  held: 3 images would change, more than org_max_updates 2; nothing was changed" in out
    assert "  limit: org_max_updates 2 · org_max_updates_percent not set · planned 3" in out
    assert "ap-southeast-1    held" in out
    assert "  would change, not sent:\n" in out and "      name: 'App_1' -> 'app-1'" in out
    assert "did not finish" not in out


def test_a_dry_run_shows_what_would_change_and_exits_0(tmp_path, capsys):
    status, out, _ = run(capsys, saved(tmp_path, dry_run()))

    assert status == 0
    assert "· status ok · dry run" in out
    assert "limit:" not in out  # the policy sets none
    assert (
        f"  would change, not sent:\n    account {WEB} eu-west-101: img-7 'Batch_Node'\n"
        "      name: 'Batch_Node' -> 'batch-node'" in out
    )
    assert "  changed:" not in out
    assert "needs attention: nothing" in out


def test_a_list_cut_short_is_noted(tmp_path, capsys):
    report = dry_run()
    report["summary"]["would_update"] = 25  # more images than the list keeps

    _, out, _ = run(capsys, saved(tmp_path, report))

    assert "note: would_change lists 1 of the 25 would_update image(s)" in out


def test_a_real_sweeps_answer_renders_as_a_shard(tmp_path, capsys):
    """The changed entries of `imsguard sweep --fake --output json`, the sweep report a
    shard answers with, give the org report's before and after."""
    assert main(["sweep", "--fake", "--output", "json"]) == 0
    sweep = json.loads(capsys.readouterr().out)
    report = org_report("real", [shard(WEB, "ap-southeast-1", sweep)], "2026-06-03", False)

    summary = summary_of(capsys, saved(tmp_path, report))

    assert summary["examined"] == sweep["examined"] == 4
    assert {
        (c["image_name"], c["attribute"], c["before"], c["after"]) for c in summary["changes"]
    } == {
        ("Win2019 Golden", "name", "Win2019 Golden", "win2019-golden"),
        ("ims_test", "name", "ims_test", "ims-test"),
        ("ims_test", "hw_firmware_type", "bios", "uefi"),
    }
    assert {c["account"] for c in summary["changes"]} == {WEB}


# -- JSON ------------------------------------------------------------------------------------


def test_json_is_the_summary_the_views_are_made_of(tmp_path, capsys):
    source = saved(tmp_path, incomplete_run())

    summary = summary_of(capsys, source)

    assert list(summary) == [
        "source",
        "kind",
        "org_run",
        "generated_at",
        "dry_run",
        "status",
        "reason",
        "limit",
        "examined",
        "outcomes",
        "failed",
        "accounts",
        "rules",
        "changes",
        "needs_attention",
        "needs_attention_total",
        "needs_attention_more",
        "notes",
    ]
    assert (summary["source"], summary["kind"], summary["status"]) == (
        source,
        "org-report",
        "incomplete",
    )
    assert summary["outcomes"] == {"compliant": 2, "error": 1, "non_compliant": 1, "updated": 2}
    assert summary["failed"] == [
        {
            "account": FINANCE,
            "region": "ap-southeast-3",
            "project_id": "ap-southeast-3",
            "status": "error",
            "reason": "cannot assume agency",
        }
    ]
    assert [(a["account"], a["examined"]) for a in summary["accounts"]] == [(FINANCE, 4), (WEB, 2)]
    assert [(r["region"], r["status"]) for r in summary["accounts"][0]["regions"]] == [
        ("ap-southeast-1", "ok"),
        ("ap-southeast-3", "error"),
    ]
    assert summary["rules"][0] == {
        "rule": "kebab-case-name",
        "compliant": 3,
        "violations": 2,
        "errors": 1,
        "exempt": 0,
        "not_applicable": 0,
        "judged": 6,
        "percent_compliant": 50.0,
    }
    assert summary["changes"][0] == {
        "account": FINANCE,
        "region": "ap-southeast-1",
        "image_id": "img-1",
        "image_name": "Web_1",
        "outcome": "updated",
        "attribute": "name",
        "before": "Web_1",
        "after": "web-1",
    }
    assert [r["image_id"] for r in summary["needs_attention"]] == ["img-3", "img-9"]
    assert (summary["needs_attention_total"], summary["needs_attention_more"]) == (4, 2)


# -- HTML ------------------------------------------------------------------------------------


def test_html_page_shows_the_same_summary_and_escapes_every_name(tmp_path, capsys):
    page = tmp_path / "org.html"

    status, out, err = run(capsys, saved(tmp_path, incomplete_run()), "--html", str(page))

    text = page.read_text(encoding="utf-8")
    assert status == 1 and "examined 6 image(s)" in out and f"wrote {page}" in err
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower()
    for reference in ("http:", "https:", "src=", "href=", "url(", "@import"):
        assert reference not in text
    assert "default-src 'none'" in text
    assert text.index('id="failed"') < text.index('id="totals"')  # failures first
    assert f"<td>{FINANCE}</td><td>ap-southeast-3</td><td>ap-southeast-3</td><td>error</td>" in text
    assert f"<h3>{FINANCE} (finance): examined 4</h3>" in text
    assert 'data-rule="kebab-case-name" data-percent="50.0"' in text
    assert '<td class="n" data-total="examined">6</td>' in text
    assert "<td>hw_firmware_type</td><td>bios</td><td>uefi</td>" in text
    assert '<p id="attention-more">… and 2 more' in text
    assert sorted(tmp_path.iterdir()) == [page, tmp_path / "report.json"]  # no part file


def test_a_hostile_account_name_and_reason_are_escaped(tmp_path, capsys):
    report = incomplete_run()
    report["shards"][0]["account_name"] = EVIL
    report["failed"][0]["reason"] = f"agency {EVIL}"
    page = tmp_path / "org.html"

    run(capsys, saved(tmp_path, report), "--html", str(page))

    text = page.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert f"{FINANCE} (&lt;script&gt;alert(1)&lt;/script&gt;)" in text
    assert "<td>agency &lt;script&gt;alert(1)&lt;/script&gt;</td>" in text


def test_a_held_page_says_why_and_shows_the_limit(tmp_path, capsys):
    page = tmp_path / "org.html"

    run(capsys, saved(tmp_path, held_run()), "--html", str(page))

    text = page.read_text(encoding="utf-8")
    assert '<p class="note">held: 3 images would change, more than org_max_updates 2' in text
    assert '<p class="note">limit: org_max_updates 2 · org_max_updates_percent not set' in text
    assert "<td>would_update</td><td>name</td><td>App_1</td><td>app-1</td>" in text


# -- what is refused -------------------------------------------------------------------------


def expect_refused(capsys, tmp_path, source: str, message: str) -> None:
    """Exit 2, the reason on stderr, nothing on stdout and no page written."""
    page = tmp_path / "out.html"
    status, out, err = run(capsys, source, "--html", str(page))
    assert status == 2
    assert out == ""
    assert message in err
    assert not page.exists()


def without(key: str) -> dict[str, Any]:
    report = incomplete_run()
    del report[key]
    return report


def changed(path: str, value: Any) -> dict[str, Any]:
    """The incomplete run's report with one value replaced (``path``: keys and indexes)."""
    report = incomplete_run()
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    holder: Any = report
    for part in parents:
        holder = holder[part]
    holder[last] = value
    return report


BROKEN = {
    "a JSON array": ([1], "holds a JSON list, not an organization report object"),
    "a sweep report": (
        answer(1, {"compliant": 1}, {}),
        "is a sweep's report, not an organization report: render it with `imsguard report ",
    ),
    "a sweep index": (
        {"imsguard": "0.1.0", "kind": "sweep-index", "hops": ["k.json"]},
        "is a sweep index (latest.json), not an organization report: render it with "
        "`imsguard report",
    ),
    "a shard hop record": (
        hop_record(answer(1, {"compliant": 1}, {}), 0, "k"),
        "is one shard hop's record, not the organization report",
    ),
    "no kind": ({"org_run": "r", "shards": []}, "it has no 'kind' (keys: org_run, shards)"),
    "another kind": ({"kind": "org-sweep"}, "its kind is 'org-sweep', not 'org-report'"),
    "no shards": (without("shards"), "an organization report without shards"),
    "no summary": (without("summary"), "an organization report without summary"),
    "dry_run not a boolean": (changed("dry_run", "no"), "'dry_run' is a string, not a boolean"),
    "limit not an object": (changed("limit", 5), "'limit' is a number, not an object or null"),
    "an unknown status": (changed("status", "done"), "status 'done' is not one of ok, held"),
    "examined not a count": (changed("examined", -1), "'examined' is not a count of images"),
    "a rule's counts not counts": (
        changed("rules.uefi-boot", {"compliant": "3"}),
        "rules['uefi-boot'] is not a count per verdict",
    ),
    "a shard without keys": (changed("shards.1", {"account": WEB}), "shards[1]: a shard without"),
    "a shard's summary not counts": (
        changed("shards.0.summary", {"updated": True}),
        "shards[0]: 'summary' is not a count per outcome",
    ),
    "a shard without an account": (
        changed("shards.2.account", None),
        "shards[2]: 'account' is null, not a string",
    ),
    "a change without paths": (
        changed("changed.0.operations", ["/name"]),
        "changed[0]: 'operations' is not a list of objects with path",
    ),
    "attention that is not a list": (
        changed("needs_attention", {}),
        "'needs_attention' is an object, not a list",
    ),
    "a failed shard without status": (
        changed("failed.0", "ap-southeast-3"),
        "failed[0] is not a shard with a status",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_a_document_that_is_not_an_org_report_is_refused(case, tmp_path, capsys):
    data, message = BROKEN[case]
    expect_refused(capsys, tmp_path, saved(tmp_path, data), message)


def test_a_file_that_is_not_json_is_refused(tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text("imsguard org-sweep: 3 shard(s)\n", encoding="utf-8")
    expect_refused(capsys, tmp_path, str(path), f"{path} is not a JSON report: Expecting value")


def test_a_missing_file_is_refused(tmp_path, capsys):
    missing = str(tmp_path / "nope.json")
    expect_refused(capsys, tmp_path, missing, f"cannot read {missing}: No such file or directory")


def test_a_malformed_obs_uri_is_refused(tmp_path, capsys):
    expect_refused(capsys, tmp_path, "obs://reports", "names no object: write obs://reports/<key>")


# -- obs:// ---------------------------------------------------------------------------------


@pytest.fixture
def obs(monkeypatch):
    """The fake OBS on a loopback server, and the settings and credentials to read it."""
    ak, sk, token = SECRETS
    fake = FakeObs((BUCKET,), token=token)
    with fake.serve() as endpoint:
        for name, value in {
            "HUAWEICLOUD_SDK_AK": ak,
            "HUAWEICLOUD_SDK_SK": sk,
            "HUAWEICLOUD_SDK_SECURITY_TOKEN": token,
            "IMSGUARD_OBS_ENDPOINT": endpoint,
        }.items():
            monkeypatch.setenv(name, value)
        yield fake


def test_the_report_is_read_from_obs_through_the_sdk(obs, capsys):
    key = "imsguard/org/nightly-1/report.json"
    obs.objects[(BUCKET, key)] = json.dumps(incomplete_run()).encode()
    obs.content_types[(BUCKET, key)] = "application/json"

    status, out, _ = run(capsys, f"obs://{BUCKET}/{key}")

    assert status == 1
    assert f"imsguard org-report: obs://{BUCKET}/{key}" in out
    assert f"account {FINANCE} (finance): examined 4" in out
    assert [(c.method, c.key, c.status) for c in obs.calls] == [("GET", key, 200)]
    assert obs.calls[0].headers["x-amz-security-token"] == SECRETS[2]


def test_a_report_obs_does_not_have_is_refused(obs, tmp_path, capsys):
    expect_refused(
        capsys,
        tmp_path,
        f"obs://{BUCKET}/imsguard/org-latest.json",
        f"cannot read obs://{BUCKET}/imsguard/org-latest.json: OBS answered 404",
    )
