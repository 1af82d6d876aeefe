"""``imsguard org-report``: an organization sweep's report, rendered for people.

It reads the one document an org sweep writes (``imsguard.org.merge``, ``kind:
"org-report"``: ``<prefix>org/<org_run>/report.json`` or ``<prefix>org-latest.json`` in
OBS, or a file), checks it, and turns it into one summary (``summarize``); the text, the
JSON and the HTML page are views of that summary, so they cannot disagree. Reading, the
compliance numbers and the page's parts are ``imsguard report``'s (``report``).
"""

from __future__ import annotations

from typing import Any

from imsguard.org.merge import HOP_KIND, KIND, LIST_MOST, LISTS, REPORT_LIST_MOST, SHARD_KEYS
from imsguard_tools.report import (
    INDEX_KIND,
    ReportError,
    change_rows,
    changes_table,
    changes_text,
    chart,
    check_counts,
    check_list,
    compliance,
    escape,
    image_name,
    is_count,
    page,
    quoted,
    rules_table,
    rules_text,
    shown,
    table,
)

STATUSES = ("ok", "held", "incomplete")
# The document's keys besides kind, and the type each must have (counts are checked apart).
_TYPED: dict[str, tuple[type, ...]] = {
    "org_run": (str,),
    "generated_at": (str,),
    "dry_run": (bool,),
    "status": (str,),
    "reason": (str, type(None)),
    "limit": (dict, type(None)),
    "shards": (list,),
    **{name: (list,) for name in LISTS},
    "failed": (list,),
}
_COUNTED = ("examined", "summary", "rules", "needs_attention_total")
_SHARD_TYPED: dict[str, tuple[type, ...]] = {
    "account": (str,),
    "account_name": (str, type(None)),
    "region": (str,),
    "project_id": (str, type(None)),
    "status": (str,),
    "reason": (str, type(None)),
    "report_keys": (list,),
    **{name: (list,) for name in LISTS},
}
_JSON_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    dict: "an object",
    list: "a list",
    type(None): "null",
}
# What each change list's entries became, as ``imsguard report`` names the outcome.
_CHANGE_LISTS = (("changed", "updated"), ("would_change", "would_update"))


# -- checking --------------------------------------------------------------------------------


def check(report: Any, source: str) -> dict[str, Any]:
    """The organization report, checked for every key the views read; ReportError names
    what is wrong, and points a sweep's report to ``imsguard report``."""
    if not isinstance(report, dict):
        raise ReportError(
            f"{source} holds a JSON {type(report).__name__}, not an organization report object"
        )
    kind = report.get("kind")
    if kind != KIND:
        raise ReportError(_not_an_org_report(report, source))
    missing = [key for key in (*_TYPED, *_COUNTED) if key not in report]
    if missing:
        raise ReportError(f"{source}: an organization report without {', '.join(missing)}")
    _check_types(report, _TYPED, source)
    if report["status"] not in STATUSES:
        raise ReportError(
            f"{source}: status {report['status']!r} is not one of {', '.join(STATUSES)}"
        )
    check_counts(report, source)
    if not is_count(report["needs_attention_total"]):
        raise ReportError(f"{source}: 'needs_attention_total' is not a count of images")
    for index, shard in enumerate(report["shards"]):
        _check_shard(shard, f"{source}: shards[{index}]")
    for name in LISTS:
        for index, entry in enumerate(report[name]):
            where = f"{source}: {name}[{index}]"
            if not isinstance(entry, dict):
                raise ReportError(f"{where} is a {type(entry).__name__}, not an image object")
            check_list(entry, "operations", ("path",), where)
            if not isinstance(entry.get("before"), (dict, type(None))):
                raise ReportError(f"{where}: 'before' is not an object")
    for index, entry in enumerate(report["failed"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("status"), str):
            raise ReportError(f"{source}: failed[{index}] is not a shard with a status")
    return report


def _not_an_org_report(report: dict[str, Any], source: str) -> str:
    """Why a JSON object is not an organization report, with what to do when it is another
    imsguard document."""
    kind = report.get("kind")
    if "imsguard" in report or kind == INDEX_KIND:
        what = "a sweep index (latest.json)" if kind == INDEX_KIND else "a sweep's report"
        return (
            f"{source} is {what}, not an organization report: "
            f"render it with `imsguard report {source}`"
        )
    if kind == HOP_KIND:
        return (
            f"{source} is one shard hop's record, not the organization report: give "
            "<prefix>org/<org_run>/report.json or <prefix>org-latest.json"
        )
    if kind is None:
        keys = ", ".join(sorted(map(str, report))[:12]) or "none"
        return f"{source} is not an organization report: it has no 'kind' (keys: {keys})"
    return f"{source} is not an organization report: its kind is {kind!r}, not {KIND!r}"


def _check_shard(shard: Any, where: str) -> None:
    if not isinstance(shard, dict):
        raise ReportError(f"{where} is a {type(shard).__name__}, not a shard object")
    missing = [key for key in SHARD_KEYS if key not in shard]
    if missing:
        raise ReportError(f"{where}: a shard without {', '.join(missing)}")
    _check_types(shard, _SHARD_TYPED, where)
    check_counts(shard, where)
    if not is_count(shard["needs_attention_total"]):
        raise ReportError(f"{where}: 'needs_attention_total' is not a count of images")


def _check_types(document: dict[str, Any], types: dict[str, tuple[type, ...]], where: str) -> None:
    for key, allowed in types.items():
        if not isinstance(document[key], allowed):
            wanted = " or ".join(_JSON_NAMES[t] for t in allowed)
            got = _JSON_NAMES.get(type(document[key]), type(document[key]).__name__)
            raise ReportError(f"{where}: '{key}' is {got}, not {wanted}")


# -- the summary -----------------------------------------------------------------------------


def summarize(report: Any, source: str) -> dict[str, Any]:
    """The machine-readable summary every view is drawn from; ReportError when ``report``
    is not an organization report, saying what is wrong with it."""
    report = check(report, source)
    changes = [
        {"account": entry.get("account"), "region": entry.get("region"), **row}
        for name, outcome in _CHANGE_LISTS
        for entry in report[name]
        for row in change_rows(entry, outcome)
    ]
    attention = [
        {
            key: entry.get(key)
            for key in ("account", "region", "image_id", "image_name", "outcome", "reason")
        }
        for entry in report["needs_attention"]
    ]
    total = report["needs_attention_total"]
    return {
        "source": source,
        "kind": KIND,
        "org_run": report["org_run"],
        "generated_at": report["generated_at"],
        "dry_run": report["dry_run"],
        "status": report["status"],
        "reason": report["reason"],
        "limit": report["limit"],
        "examined": report["examined"],
        "outcomes": dict(sorted(report["summary"].items())),
        "failed": [
            {key: entry.get(key) for key in ("account", "region", "project_id", "status", "reason")}
            for entry in report["failed"]
        ],
        "accounts": _accounts(report["shards"]),
        # An organization report keeps each rule's counts, not each image's fix labels:
        # how many violations were fixed is not known here.
        "rules": [
            {k: v for k, v in row.items() if k != "fixed"}
            for row in compliance(report["rules"], [])
        ],
        "changes": changes,
        "needs_attention": attention,
        "needs_attention_total": total,
        "needs_attention_more": max(total - len(attention), 0),
        "notes": _notes(report),
    }


def _accounts(shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The shards grouped by account, accounts and their regions in the run's order."""
    accounts: dict[str, dict[str, Any]] = {}
    for shard in shards:
        account = accounts.setdefault(
            shard["account"],
            {
                "account": shard["account"],
                "account_name": shard["account_name"],
                "examined": 0,
                "outcomes": {},
                "regions": [],
            },
        )
        account["account_name"] = account["account_name"] or shard["account_name"]
        account["examined"] += shard["examined"]
        for outcome, count in shard["summary"].items():
            account["outcomes"][outcome] = account["outcomes"].get(outcome, 0) + count
        account["regions"].append(
            {
                "region": shard["region"],
                "project_id": shard["project_id"],
                "status": shard["status"],
                "reason": shard["reason"],
                "examined": shard["examined"],
                "outcomes": dict(sorted(shard["summary"].items())),
                "needs_attention_total": shard["needs_attention_total"],
            }
        )
    for account in accounts.values():
        account["outcomes"] = dict(sorted(account["outcomes"].items()))
    return list(accounts.values())


def _notes(report: dict[str, Any]) -> list[str]:
    """Lists cut short: the counts cover every image, the lists only their first entries."""
    notes = []
    for name, outcome in _CHANGE_LISTS:
        listed, counted = len(report[name]), report["summary"].get(outcome, 0)
        if listed < counted:
            notes.append(
                f"{name} lists {listed} of the {counted} {outcome} image(s): the report keeps "
                f"the first {LIST_MOST} per shard and {REPORT_LIST_MOST} over the "
                "organization; each shard's full reports are in OBS under its report_keys"
            )
    return notes


# -- text ------------------------------------------------------------------------------------


def render_text(summary: dict[str, Any]) -> str:
    lines = [f"imsguard org-report: {summary['source']}"]
    lines.append("  " + " · ".join(_header_facts(summary)))
    if summary["reason"]:
        lines.append(f"  {summary['status']}: {summary['reason']}")
    if summary["limit"] is not None:
        lines.append(f"  limit: {_limit_text(summary['limit'])}")
    failed = summary["failed"]
    if failed:
        lines.append(f"\n  did not finish: {len(failed)} shard(s)")
        lines += [
            f"    account {shown(f['account'])} {shown(f['region'])} "
            f"[{f['status']}]: {shown(f['reason'])}"
            for f in failed
        ]
    shards = sum(len(a["regions"]) for a in summary["accounts"])
    lines.append(
        f"\n  examined {summary['examined']} image(s) in {len(summary['accounts'])} "
        f"account(s), {shards} shard(s)"
    )
    if summary["outcomes"]:
        lines.append(f"\n  {'outcome':<16}{'images':>8}")
        lines += [f"  {o:<16}{n:>8}" for o, n in summary["outcomes"].items()]
    for account in summary["accounts"]:
        lines.append(
            f"\n  account {_account_label(account)}: examined {account['examined']}"
            f"{_outcomes_text(account['outcomes'], ', ')}"
        )
        for region in account["regions"]:
            why = f" ({region['reason']})" if region["reason"] else ""
            lines.append(
                f"    {shown(region['region']):<18}{region['status']:<12}"
                f"examined {region['examined']}{_outcomes_text(region['outcomes'], ', ')}{why}"
            )
    lines += rules_text(summary["rules"], "errors")
    lines += changes_text(
        summary["changes"],
        lambda r: (
            f"account {shown(r['account'])} {shown(r['region'])}: "
            f"{r['image_id']} {quoted(r['image_name'])}"
        ),
    )
    attention, more = summary["needs_attention"], summary["needs_attention_more"]
    lines.append(f"\n  needs attention: {summary['needs_attention_total'] or 'nothing'}")
    lines += [
        f"    account {shown(r['account'])} {shown(r['region'])}: {r['image_id']} "
        f"{quoted(r['image_name'])} [{r['outcome']}]: {r['reason']}"
        for r in attention
    ]
    if more:
        lines.append(f"    ... and {more} more (each shard's reports in OBS list them)")
    lines += [f"\n  note: {note}" for note in summary["notes"]]
    return "\n".join(lines)


def _header_facts(summary: dict[str, Any]) -> list[str]:
    facts = [f"org run {summary['org_run']}", f"generated at {summary['generated_at']}"]
    facts.append(f"status {summary['status']}")
    if summary["dry_run"]:
        facts.append("dry run")
    return facts


def _limit_text(limit: dict[str, Any]) -> str:
    """The organization's limit and the plan's counts, as the report gives them."""
    return " · ".join(f"{key} {shown(value)}" for key, value in limit.items()) or "set"


def _outcomes_text(outcomes: dict[str, int], lead: str = "") -> str:
    return (lead + ", ".join(f"{o} {n}" for o, n in outcomes.items())) if outcomes else ""


def _account_label(account: dict[str, Any]) -> str:
    name = f" ({account['account_name']})" if account["account_name"] else ""
    return f"{shown(account['account'])}{name}"


# -- HTML ------------------------------------------------------------------------------------


def render_html(summary: dict[str, Any]) -> str:
    """One self-contained page, in ``imsguard report``'s page: shards that did not finish
    first, then totals, each account's regions, compliance, changes and attention."""
    notes = [f"{summary['status']}: {summary['reason']}"] if summary["reason"] else []
    if summary["limit"] is not None:
        notes.append(f"limit: {_limit_text(summary['limit'])}")
    notes += summary["notes"]
    parts = []
    if summary["failed"]:
        parts.append(f'<h2 class="alert">Did not finish: {len(summary["failed"])} shard(s)</h2>')
        parts.append(
            table(
                "failed",
                ("account", "region", "project", "status", "reason"),
                [
                    (f["account"], f["region"], shown(f["project_id"]), f["status"], f["reason"])
                    for f in summary["failed"]
                ],
            )
        )
    parts.append('<h2>Totals</h2><table id="totals"><tr><th>images</th><th>count</th></tr>')
    totals = {"examined": summary["examined"], **summary["outcomes"]}
    for label, count in totals.items():
        parts.append(
            f'<tr><td>{escape(label)}</td><td class="n" data-total="{escape(label)}">'
            f"{escape(count)}</td></tr>"
        )
    parts.append("</table>")
    parts.append("<h2>Accounts</h2>")
    for number, account in enumerate(summary["accounts"]):
        parts.append(
            f"<h3>{escape(_account_label(account))}: examined {escape(account['examined'])}</h3>"
        )
        parts.append(
            table(
                f"account-{number}",
                ("region", "status", "reason", "examined", "outcomes", "needs attention"),
                [
                    (
                        r["region"],
                        r["status"],
                        r["reason"] or "",
                        r["examined"],
                        _outcomes_text(r["outcomes"]),
                        r["needs_attention_total"],
                    )
                    for r in account["regions"]
                ],
            )
        )
    if not summary["accounts"]:
        parts.append('<p id="accounts">No shard was run.</p>')
    parts.append("<h2>Compliance per rule</h2>")
    parts.append(chart(summary["rules"]) if summary["rules"] else "<p>No rule was evaluated.</p>")
    parts.append(
        rules_table(
            summary["rules"], ("compliant", "violations", "errors", "exempt", "not_applicable")
        )
    )
    parts.append("<h2>Changes</h2>")
    parts.append(changes_table(summary["changes"], ("account", "region")))
    parts.append(f"<h2>Needs attention: {escape(summary['needs_attention_total'])}</h2>")
    parts.append(
        table(
            "attention",
            ("account", "region", "image", "name", "outcome", "reason"),
            [
                (
                    r["account"],
                    r["region"],
                    r["image_id"],
                    image_name(r["image_name"]),
                    r["outcome"],
                    r["reason"],
                )
                for r in summary["needs_attention"]
            ],
            "Nothing needs a person.",
        )
    )
    if summary["needs_attention_more"]:
        parts.append(
            f'<p id="attention-more">… and {escape(summary["needs_attention_more"])} more '
            "(each shard's reports in OBS list them)</p>"
        )
    return page("imsguard org-report", summary["source"], _header_facts(summary), notes, parts)
