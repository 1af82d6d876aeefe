"""``imsguard report``: a sweep's (or an event's) report, rendered for people.

It reads the report the OBS sink keeps (the sweep report plus an ``images`` list with
every image's verdicts and ``before`` values), a plain sweep result (``imsguard sweep
--output json``) or an event report (``imsguard invoke --output json``), from a file or
from ``obs://bucket/key``. Every form is first turned into one summary (``summarize``);
the text, the JSON and the HTML page are views of that summary, so they cannot disagree.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imsguard.settings import OBS_ENDPOINT, bucket_problem, obs_endpoint_problem

OBS_SCHEME = "obs://"
INDEX_KIND = "sweep-index"  # latest.json: the keys of a sweep's hop reports (sinks.obs)
# Verdicts that count towards a rule's compliance: "not_applicable" and "exempt" do not.
_JUDGED = ("compliant", "violation", "error")
_CHANGE_OUTCOMES = ("updated", "would_update")
_ATTENTION_OUTCOMES = ("non_compliant", "error")
BAR_WIDTH = 300  # px of a 100 % bar in the HTML chart
READ_TIMEOUT_S = 60.0  # reading one report object from OBS


class ReportError(ValueError):
    """Why there is no report to render: said to the user as it is, exit status 2."""


# -- reading -------------------------------------------------------------------------------


def parse_obs_uri(source: str) -> tuple[str, str]:
    """The bucket and key of ``obs://bucket/key``, checked before anything is fetched, so a
    typo is named rather than sent to OBS."""
    rest = source[len(OBS_SCHEME) :]
    bucket, slash, key = rest.partition("/")
    if not bucket:
        raise ReportError(f"{source!r} names no bucket: write obs://bucket/key")
    problem = bucket_problem(bucket)
    if problem:
        raise ReportError(f"{source!r}: {bucket!r} is not an OBS bucket name: {problem}")
    if not slash or not key:
        raise ReportError(f"{source!r} names no object: write obs://{bucket}/<key>")
    if key.endswith("/"):
        raise ReportError(f"{source!r} names a folder, not a report object")
    if len(key.encode("utf-8")) > 1024:
        raise ReportError(f"{source!r}: the object key is longer than OBS's 1024 bytes")
    return bucket, key


def read_report_source(source: str) -> Any:
    """The parsed JSON of a report file or ``obs://`` object, a sweep index with the hop
    reports it lists; ReportError says why not."""
    report = read_json_source(source)
    if isinstance(report, dict) and report.get("kind") == INDEX_KIND:
        return _read_hops(report, source)
    return report


def read_json_source(source: str) -> Any:
    """The parsed JSON of a file or ``obs://`` object, as it is (``imsguard org-report``
    reads its report through here too); ReportError says why not."""
    if source.startswith(OBS_SCHEME):
        bucket, key = parse_obs_uri(source)
        data = _read_obs(bucket, key)
    elif "://" in source:
        raise ReportError(f"{source!r}: only files and obs://bucket/key can be read")
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ReportError(f"cannot read {source}: {exc.strerror or exc}") from None
    return _parse(data, source)


def _parse(data: bytes, source: str) -> Any:
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise ReportError(f"{source} is not a JSON report: it is not UTF-8 text") from None
    except ValueError as exc:
        raise ReportError(f"{source} is not a JSON report: {exc}") from None


def _read_hops(index: dict[str, Any], source: str) -> dict[str, Any]:
    """A sweep index (``latest.json``) with every hop's report it lists, read from the
    index's bucket; a hop that cannot be read is named in ``unread``, not fatal. A local
    index is refused: its keys name OBS objects, and only OBS holds them."""
    hops = index.get("hops")
    if not isinstance(hops, list) or not hops or not all(isinstance(k, str) for k in hops):
        raise ReportError(f"{source}: a sweep index whose 'hops' is not a list of object keys")
    if not source.startswith(OBS_SCHEME):
        raise ReportError(
            f"{source} is a sweep index (latest.json): it lists the keys of its "
            f"{len(hops)} hop report(s) in OBS, not their images. Read it as "
            "obs://<bucket>/<its key>, and imsguard report reads every hop from that bucket; "
            "or give one hop's report file"
        )
    bucket, _ = parse_obs_uri(source)
    reports: list[tuple[str, Any]] = []
    unread: list[str] = []
    for key in hops:
        hop_source = f"{OBS_SCHEME}{bucket}/{key}"
        try:
            _, key = parse_obs_uri(hop_source)
            hop_report = _parse(_read_obs(bucket, key), hop_source)
            if isinstance(hop_report, dict) and hop_report.get("kind") == "sweep-index":
                raise ReportError(f"{hop_source} is a sweep index, not a hop's report")
            summarize(hop_report, hop_source)  # a malformed hop is named, not fatal
            reports.append((hop_source, hop_report))
        except ReportError as exc:
            unread.append(str(exc))
    unlisted = index.get("hops_not_listed")
    if isinstance(unlisted, int) and unlisted > 0:
        unread.append(
            f"the sweep's first {unlisted} hop(s), which its index does not list (a sweep "
            "rerun from a later hop, or keys left out to keep the continuation small)"
        )
    return {**index, "hop_reports": reports, "unread": unread}


def _read_obs(bucket: str, key: str) -> bytes:
    """The object's bytes, read with the official OBS SDK (imported only here: nothing
    else of the tools needs it) and the SDK's usual credential variables."""
    from imsguard.context import read_credentials

    endpoint = os.environ.get(OBS_ENDPOINT, "").strip()
    if not endpoint:
        raise ReportError(
            f"reading obs://{bucket}/{key} needs {OBS_ENDPOINT}, the OBS endpoint "
            "(such as https://obs.ap-southeast-1.myhuaweicloud.com)"
        )
    problem = obs_endpoint_problem(endpoint)
    if problem:
        raise ReportError(f"{OBS_ENDPOINT}={endpoint!r}: {problem}")
    credentials = read_credentials(None)
    if credentials is None:
        raise ReportError(
            f"reading obs://{bucket}/{key} needs credentials: set HUAWEICLOUD_SDK_AK and "
            "HUAWEICLOUD_SDK_SK (and HUAWEICLOUD_SDK_SECURITY_TOKEN for temporary ones)"
        )
    try:
        from imsguard.sinks.obs import obs_client

        client = obs_client(endpoint, credentials, READ_TIMEOUT_S)
    except ImportError:
        raise ReportError(
            f"reading obs://{bucket}/{key} needs the OBS SDK: pip install esdk-obs-python"
        ) from None
    try:
        response = client.getObject(bucket, key, loadStreamInMemory=True)
    except Exception as exc:  # the SDK raises its own and the socket's errors
        raise ReportError(f"cannot read obs://{bucket}/{key}: {exc}") from None
    finally:
        client.close()
    if response.status >= 300:
        why = response.errorCode or response.reason or "no reason given"
        raise ReportError(
            f"cannot read obs://{bucket}/{key}: OBS answered {response.status} ({why})"
        )
    return bytes(response.body.buffer or b"")


# -- the summary -----------------------------------------------------------------------------


def summarize(report: Any, source: str) -> dict[str, Any]:
    """The machine-readable summary every view is drawn from; ReportError when ``report``
    is not one of the three report forms, saying what is wrong with it."""
    if not isinstance(report, dict):
        raise ReportError(
            f"{source} holds a JSON {type(report).__name__}, not an imsguard report object"
        )
    if "imsguard" not in report:
        raise ReportError(
            f"{source} is not an imsguard report: it has no 'imsguard' version key "
            f"(keys: {', '.join(sorted(map(str, report))[:12]) or 'none'})"
        )
    if report.get("kind") == INDEX_KIND:
        return _summarize_sweep(report, source)
    if "images" in report:
        kind, images = "sweep", _entries(report, "images", source)
    elif "results" in report:
        images = _entries(report, "results", source)
        kind = "sweep_result" if "examined" in report else "event"
    else:
        raise ReportError(
            f"{source} is not an imsguard report: it has neither 'images' nor 'results'"
        )
    if kind != "event":
        check_counts(report, source)
    if kind == "sweep_result":  # its results carry fix labels, not verdicts
        images = [{**entry, "rules": _rules_from_fixes(entry)} for entry in images]
    complete = kind != "sweep_result" or not report.get("truncated")
    counts = report["rules"] if kind != "event" else _rule_counts(images)
    outcomes = report["summary"] if kind != "event" else dict(Counter(i["outcome"] for i in images))
    summary: dict[str, Any] = {
        "source": source,
        "kind": kind,
        "complete": complete,
        "imsguard": report.get("imsguard"),
        "trigger": report.get("trigger"),
        "dry_run": bool(report.get("dry_run")),
        "status": report.get("status", "ok"),
    }
    for key in ("generated_at", "region", "project_id", "request_id", "hop", "sweep_id"):
        summary[key] = report.get(key)
    summary["hops"] = None  # a sweep's hops merged: only from its index
    summary["examined"] = report["examined"] if kind != "event" else len(images)
    summary["outcomes"] = dict(sorted(outcomes.items()))
    summary["rules"] = compliance(counts, images)
    summary["changes"] = _changes(report, images, kind)
    summary["needs_attention"] = _attention(report, images, kind)
    summary["notes"] = _notes(report, complete)
    return summary


def _summarize_sweep(index: dict[str, Any], source: str) -> dict[str, Any]:
    """One summary of every hop a sweep index lists: images by id, the last hop's entry
    winning (a hop that defers patches leaves those images to the next, which examines them
    again), and every number (examined, outcomes, rules, changes, needs attention) drawn
    from those images, each counted once."""
    hops = [summarize(report, hop_source) for hop_source, report in index["hop_reports"]]
    if any(hop["kind"] != "sweep" for hop in hops):
        raise ReportError(f"{source}: a hop it lists is not a report the OBS sink wrote")
    if not hops:
        raise ReportError(f"{source}: no hop of the sweep could be read: {index['unread'][0]}")
    images: dict[Any, dict[str, Any]] = {}
    for hop_source, report in index["hop_reports"]:
        for number, image in enumerate(report["images"]):
            key = image.get("image_id") or (hop_source, number)
            if images.get(key, {}).get("outcome") == "updated" != image.get("outcome"):
                continue  # a change made stays in the report (with its before values)
            images[key] = image
    merged = list(images.values())
    outcomes = Counter(str(image["outcome"]) for image in merged)
    examinations = sum(hop["examined"] for hop in hops)
    notes = [f"not in these numbers: {why}" for why in index["unread"]]
    if examinations > len(merged):
        notes.append(
            f"{examinations - len(merged)} examination(s) were of an image an earlier hop "
            "had examined (a patch deferred to the next hop, or a listing that started again): "
            "every number counts each image once, as the last hop found it, or as the hop "
            "that changed it"
        )
    for hop in hops:
        notes += [f"hop {hop['hop']}: {note}" for note in hop["notes"] if "went on" not in note]
    first, last = hops[0], hops[-1]
    return {
        "source": source,
        "kind": "sweep",
        "complete": not index["unread"],
        "imsguard": index.get("imsguard"),
        "trigger": first["trigger"],
        "dry_run": any(hop["dry_run"] for hop in hops),
        "status": "ok" if all(hop["status"] == "ok" for hop in hops) else "error",
        "generated_at": index.get("generated_at") or last["generated_at"],
        "region": index.get("region"),
        "project_id": index.get("project_id"),
        "request_id": None,
        "hop": None,
        "sweep_id": index.get("sweep_id"),
        "hops": len(index["hops"]),
        "examined": len(merged),
        "outcomes": dict(sorted(outcomes.items())),
        "rules": compliance(_rule_counts(merged), merged),
        "changes": _changes({}, merged, "sweep"),
        "needs_attention": _attention({}, merged, "sweep"),
        "notes": notes,
    }


def _entries(report: dict[str, Any], key: str, source: str) -> list[dict[str, Any]]:
    """The report's per-image entries, each checked for the keys the views read."""
    entries = report[key]
    if not isinstance(entries, list):
        raise ReportError(f"{source}: '{key}' is a {type(entries).__name__}, not a list")
    for index, entry in enumerate(entries):
        where = f"{source}: {key}[{index}]"
        if not isinstance(entry, dict):
            raise ReportError(f"{where} is a {type(entry).__name__}, not an image object")
        if not isinstance(entry.get("outcome"), str):
            raise ReportError(f"{where} has no 'outcome'")
        check_list(entry, "operations", ("path",), where)
        check_list(entry, "rules", ("rule", "verdict"), where)
        for name in ("before", "fixes"):
            if name in entry and not isinstance(entry[name], dict):
                raise ReportError(f"{where}: '{name}' is not an object")
    return entries


def check_list(entry: dict[str, Any], key: str, needed: tuple[str, ...], where: str) -> None:
    items = entry.get(key, [])
    if not isinstance(items, list) or not all(
        isinstance(item, dict) and all(isinstance(item.get(k), str) for k in needed)
        for item in items
    ):
        raise ReportError(f"{where}: '{key}' is not a list of objects with {', '.join(needed)}")


def check_counts(report: dict[str, Any], source: str) -> None:
    """A report's counts (a sweep's, an organization's, a shard's): examined, outcomes and
    per-rule verdict counts, all whole numbers."""
    if not is_count(report.get("examined")):
        raise ReportError(f"{source}: 'examined' is not a count of images")
    for key in ("summary", "rules"):
        if not isinstance(report.get(key), dict):
            raise ReportError(f"{source}: '{key}' is missing or not an object")
    if not all(is_count(n) for n in report["summary"].values()):
        raise ReportError(f"{source}: 'summary' is not a count per outcome")
    for rule, counts in report["rules"].items():
        if not isinstance(counts, dict) or not all(is_count(n) for n in counts.values()):
            raise ReportError(f"{source}: rules[{rule!r}] is not a count per verdict")


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rules_from_fixes(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A sweep result keeps only each violated rule's fix label (its results are many)."""
    return [
        {"rule": rule, "verdict": "violation", "fix": label, "reason": entry.get("reason")}
        for rule, label in (entry.get("fixes") or {}).items()
    ]


def _rule_counts(images: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for image in images:
        for verdict in image.get("rules", []):
            counts.setdefault(verdict["rule"], Counter())[verdict["verdict"]] += 1
    return {rule: dict(c) for rule, c in counts.items()}


def compliance(
    counts: dict[str, dict[str, int]], images: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per rule: compliant, violations and fixed images, and the percent compliant as
    found (before any fix: what Config records too) of the images the rule judged."""
    fixed: Counter[str] = Counter(
        verdict["rule"]
        for image in images
        for verdict in image.get("rules", [])
        if verdict.get("fix") == "fixed"
    )
    rows = []
    for rule, verdicts in counts.items():
        judged = sum(verdicts.get(v, 0) for v in _JUDGED)
        compliant = verdicts.get("compliant", 0)
        rows.append(
            {
                "rule": rule,
                "compliant": compliant,
                "violations": verdicts.get("violation", 0),
                "fixed": fixed[rule],
                "errors": verdicts.get("error", 0),
                "exempt": verdicts.get("exempt", 0),
                "not_applicable": verdicts.get("not_applicable", 0),
                "judged": judged,
                "percent_compliant": round(100 * compliant / judged, 1) if judged else None,
            }
        )
    return rows


def _changes(
    report: dict[str, Any], images: list[dict[str, Any]], kind: str
) -> list[dict[str, Any]]:
    """One row per attribute changed (or that would change): before, and after from the
    operation sent. A sweep result lists its changes apart from its (shorter) results."""
    if kind == "sweep_result":
        sources = [("updated", e) for e in report.get("changed") or []]
        sources += [("would_update", e) for e in report.get("would_change") or []]
    else:
        sources = [(i["outcome"], i) for i in images if i["outcome"] in _CHANGE_OUTCOMES]
    return [row for outcome, entry in sources for row in change_rows(entry, outcome)]


def change_rows(entry: dict[str, Any], outcome: str) -> list[dict[str, Any]]:
    """One image's changes (a report entry with ``operations`` and ``before``), a row per
    attribute: before, and after from the operation sent."""
    before = entry.get("before") or {}
    rows = []
    for op in entry.get("operations") or []:
        attribute = str(op.get("path", "")).lstrip("/")
        rows.append(
            {
                "image_id": entry.get("image_id"),
                "image_name": entry.get("image_name"),
                "outcome": outcome,
                "attribute": attribute,
                "before": before.get(attribute),
                "after": None if op.get("op") == "remove" else op.get("value"),
            }
        )
    return rows


def _attention(
    report: dict[str, Any], images: list[dict[str, Any]], kind: str
) -> list[dict[str, Any]]:
    """One row per image and rule a person should look at (the runtime's needs_a_person:
    non_compliant or error, or a violation that cannot be fixed); a row without a rule
    when the image's trouble is not a rule's (IMS failed)."""
    if kind == "sweep_result":
        by_id = {i.get("image_id"): i for i in images}
        flagged = [
            {**by_id.get(e.get("image_id"), {}), **e} for e in report.get("needs_attention") or []
        ]
    else:
        flagged = [i for i in images if _needs_a_person(i)]
    rows = []
    for image in flagged:
        verdicts = image.get("rules") or []
        if image.get("outcome") in _ATTENTION_OUTCOMES:
            picked = [
                v
                for v in verdicts
                if v["verdict"] == "error"
                or (v["verdict"] == "violation" and v.get("fix") != "fixed")
            ]
        else:
            picked = [v for v in verdicts if v.get("fix") == "cannot_fix"]
        for verdict in picked or [{"rule": None, "reason": image.get("reason")}]:
            rows.append(
                {
                    "image_id": image.get("image_id"),
                    "image_name": image.get("image_name"),
                    "outcome": image.get("outcome"),
                    "rule": verdict["rule"],
                    "reason": verdict.get("reason") or image.get("reason"),
                }
            )
    return rows


def _needs_a_person(image: dict[str, Any]) -> bool:
    if image["outcome"] in _ATTENTION_OUTCOMES:
        return True
    return any(v.get("fix") == "cannot_fix" for v in image.get("rules", []))


def _notes(report: dict[str, Any], complete: bool) -> list[str]:
    """What a reader must know to trust the numbers: lists cut short, a guardrail, an
    error, a sweep not finished, or an event that was not about an image."""
    notes = []
    if not complete:
        notes.append(
            "the report's lists stop at IMSGUARD_RESULTS_LIMIT entries: counts cover every "
            "image, changes, fixed and needs-attention rows only the listed ones"
        )
    for key in ("guardrail", "error"):
        if report.get(key):
            notes.append(f"{key}: {report[key]}")
    continuation = report.get("continuation")
    if isinstance(continuation, dict):
        notes.append(_continuation_note(continuation, report.get("continued")))
    if report.get("status") not in (None, "ok") and report.get("reason"):
        notes.append(f"{report['status']}: {report['reason']}")
    if isinstance(report.get("notes"), list):
        notes += [str(note) for note in report["notes"]]
    return notes


def _continuation_note(continuation: dict[str, Any], continued: Any) -> str:
    """Where the sweep stopped, and whether a next hop went on: from ``continued.started``
    and the continuation's cause (time, limit, error)."""
    reason = continuation.get("reason") or continuation.get("cause") or "not finished"
    marker = continuation.get("marker")
    rerun = f"rerun with marker {marker}" if marker else "rerun the sweep from the start"
    continued = continued if isinstance(continued, dict) else {}
    if continued.get("started"):
        return (
            f"not finished ({reason}): hop {continuation.get('hop')} went on in another "
            "invocation; the sweep's index (latest.json) lists every hop's report"
        )
    if continuation.get("cause") == "time" and continued.get("reason"):
        return f"stopped ({reason}; no next hop was started: {continued['reason']}): {rerun}"
    return f"stopped ({reason}): {rerun}"


# -- text ------------------------------------------------------------------------------------


def render_text(summary: dict[str, Any]) -> str:
    lines = [f"imsguard report: {summary['source']}"]
    lines.append("  " + " · ".join(_header_facts(summary)))
    lines.append(f"  examined {summary['examined']} image(s)")
    if summary["outcomes"]:
        lines.append(f"\n  {'outcome':<16}{'images':>8}")
        lines += [f"  {o:<16}{n:>8}" for o, n in summary["outcomes"].items()]
    lines += rules_text(summary["rules"], "fixed")
    lines += changes_text(
        summary["changes"], lambda r: f"{r['image_id']} {quoted(r['image_name'])}"
    )
    attention = summary["needs_attention"]
    lines.append(f"\n  needs attention: {len(attention) or 'nothing'}")
    lines += [
        f"    {r['image_id']} {quoted(r['image_name'])} [{r['outcome']}] "
        f"{r['rule'] or '(no rule)'}: {r['reason']}"
        for r in attention
    ]
    lines += [f"\n  note: {note}" for note in summary["notes"]]
    return "\n".join(lines)


def rules_text(rules: list[dict[str, Any]], third: str) -> list[str]:
    """The per-rule compliance table: compliant, violations, ``third`` (a count column of
    each row: "fixed" in a sweep's report, "errors" in an organization's) and the percent."""
    if not rules:
        return []
    width = len(third) + 2
    lines = [
        f"\n  {'rule':<24}{'compliant':>10}{'violations':>12}{third:>{width}}{'compliant %':>13}"
    ]
    lines += [
        f"  {row['rule']:<24}{row['compliant']:>10}{row['violations']:>12}"
        f"{row[third]:>{width}}{percent_text(row['percent_compliant']):>13}"
        for row in rules
    ]
    return lines


def rules_table(rules: list[dict[str, Any]], counts: tuple[str, ...]) -> str:
    """The per-rule HTML table: the rule, then each of ``counts`` (a row's keys; the
    headings are the keys in words)."""
    return table(
        "rules",
        ("rule", *(key.replace("_", " ") for key in counts)),
        [(row["rule"], *(row[key] for key in counts)) for row in rules],
    )


def changes_table(changes: list[dict[str, Any]], where: tuple[str, ...] = ()) -> str:
    """The HTML table of changes, a row per attribute; ``where``: the row's keys that say
    where the image is (an organization's: account and region), in the first columns."""
    return table(
        "changes",
        (*where, "image", "name", "outcome", "attribute", "before", "after"),
        [
            (
                *(r[key] for key in where),
                r["image_id"],
                image_name(r["image_name"]),
                r["outcome"],
                r["attribute"],
                shown(r["before"]),
                shown(r["after"]),
            )
            for r in changes
        ],
        "No image was changed.",
    )


def changes_text(
    changes: list[dict[str, Any]], image: Callable[[dict[str, Any]], str]
) -> list[str]:
    """What changed, then what would change: a line per image (``image`` words it), then
    one per attribute with its value before and after."""
    lines: list[str] = []
    for outcome, title in (("updated", "changed"), ("would_update", "would change, not sent")):
        rows = [r for r in changes if r["outcome"] == outcome]
        if rows:
            lines.append(f"\n  {title}:")
        last = None
        for r in rows:
            if image(r) != last:
                last = image(r)
                lines.append(f"    {last}")
            lines.append(f"      {r['attribute']}: {literal(r['before'])} -> {literal(r['after'])}")
    return lines


def _header_facts(summary: dict[str, Any]) -> list[str]:
    facts = [str(summary["trigger"] or summary["kind"])]
    if summary["hops"] is not None:  # a sweep's hops, merged
        facts.append(f"sweep {summary['sweep_id']}, {summary['hops']} hops")
    for key in ("generated_at", "region", "project_id", "request_id"):
        if summary[key]:
            facts.append(f"{key.replace('_', ' ')} {summary[key]}")
    if summary["hop"] is not None:
        facts.append(f"hop {summary['hop']}")
    facts.append(f"status {summary['status']}")
    if summary["dry_run"]:
        facts.append("dry run")
    return facts


def percent_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}%"


def shown(value: Any) -> str:
    """A value for people: strings as they are, "not set" for None, others as JSON."""
    if value is None:
        return "not set"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def literal(value: Any) -> str:
    """A value in text, where a string's spaces must show: quoted."""
    return repr(value) if isinstance(value, str) else shown(value)


def quoted(name: Any) -> str:
    return "(no name)" if name is None else repr(name)


# -- HTML ------------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.n{text-align:right}.facts{color:#555}.note{background:#fff4d6;padding:.4em .6em}
svg text{font:13px system-ui,sans-serif}.track{fill:#eee}.bar{fill:#2e7d32}
.alert{color:#b71c1c}
"""


def render_html(summary: dict[str, Any]) -> str:
    """One self-contained page: inline CSS, the chart drawn here as SVG, no script and no
    URL; every value from the report is escaped, and the page's policy forbids scripts and
    fetches should anything slip through."""
    e = escape
    parts = ['<h2>Totals</h2><table id="totals"><tr><th>images</th><th>count</th></tr>']
    totals = {"examined": summary["examined"], **summary["outcomes"]}
    for label, count in totals.items():
        parts.append(
            f'<tr><td>{e(label)}</td><td class="n" data-total="{e(label)}">{e(count)}</td></tr>'
        )
    parts.append("</table>")
    parts.append("<h2>Compliance per rule</h2>")
    parts.append(chart(summary["rules"]) if summary["rules"] else "<p>No rule was evaluated.</p>")
    parts.append(
        rules_table(
            summary["rules"],
            ("compliant", "violations", "fixed", "errors", "exempt", "not_applicable"),
        )
    )
    parts.append("<h2>Changes</h2>")
    parts.append(changes_table(summary["changes"]))
    parts.append("<h2>Needs attention</h2>")
    parts.append(
        table(
            "attention",
            ("image", "name", "outcome", "rule", "reason"),
            [
                (
                    r["image_id"],
                    image_name(r["image_name"]),
                    r["outcome"],
                    r["rule"] or "",
                    r["reason"],
                )
                for r in summary["needs_attention"]
            ],
            "Nothing needs a person.",
        )
    )
    return page(
        "imsguard report", summary["source"], _header_facts(summary), summary["notes"], parts
    )


def page(heading: str, source: str, facts: list[str], notes: list[str], sections: list[str]) -> str:
    """The page every report renders into: no script and no URL, inline CSS, and a policy
    that forbids scripts and fetches should anything slip through. ``sections`` are HTML
    already escaped; every other value is escaped here."""
    e = escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{e(heading)}: {e(source)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{e(heading)}</h1>",
        f'<p class="facts">{e(source)}<br>{e(" · ".join(facts))}</p>',
    ]
    parts += [f'<p class="note">{e(note)}</p>' for note in notes]
    parts += sections
    parts.append("</body></html>\n")
    return "\n".join(parts)


def chart(rules: list[dict[str, Any]]) -> str:
    """Horizontal bars, one per rule: its name, a bar as wide as its percent compliant of
    BAR_WIDTH, and the percent as text (n/a when the rule judged no image)."""
    label_width, row = 200, 28
    width = label_width + BAR_WIDTH + 70
    parts = [
        f'<svg id="chart" width="{width}" '
        f'height="{row * len(rules) + 8}" role="img" aria-label="percent compliant per rule">'
    ]
    for index, rule in enumerate(rules):
        y = index * row + 4
        percent = rule["percent_compliant"]
        bar = BAR_WIDTH * (percent or 0) / 100
        parts.append(
            f'<g class="rule-bar" data-rule="{escape(rule["rule"])}" '
            f'data-percent="{"" if percent is None else percent}">'
            f'<text x="0" y="{y + 15}">{escape(_clip(rule["rule"]))}</text>'
            f'<rect class="track" x="{label_width}" y="{y}" width="{BAR_WIDTH}" height="20"/>'
            f'<rect class="bar" x="{label_width}" y="{y}" width="{bar:.1f}" height="20"/>'
            f'<text class="percent" x="{label_width + BAR_WIDTH + 8}" y="{y + 15}">'
            f"{percent_text(percent)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, most: int = 28) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def table(
    table_id: str, headers: tuple[str, ...], rows: list[tuple[Any, ...]], empty: str = ""
) -> str:
    if not rows and empty:
        return f'<p id="{table_id}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def image_name(name: Any) -> str:
    return "(no name)" if name is None else str(name)


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)
