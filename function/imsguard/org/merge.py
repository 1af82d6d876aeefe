"""One organization report from its shards' hops: pure merging, no I/O.

Each hop of each shard is summed into its shard's entry (``add_hop``): the cloud coordinator
reads every hop's record from OBS (``hop_record``, written by the hop itself); the local
engine makes the same records from the shards' answers. ``org_report`` then merges the
entries into the document ``imsguard org-report`` renders (``kind: "org-report"``):

- ``org_run``, ``generated_at``, ``dry_run``, ``status`` ("ok"; "held": the organization's
  limit, or a plan that did not finish, kept every shard from applying; "incomplete": some
  shard failed) and ``reason``; ``limit``: the organization's limit and the plan's counts
  (null when the policy sets none);
- ``examined``, ``summary``, ``rules`` (per rule, its verdict counts over every shard);
- ``shards``: one entry per account and region (``SHARD_KEYS``), in the run's order;
- ``changed``, ``would_change``, ``needs_attention``: the first ``REPORT_LIST_MOST`` entries
  over the organization, each naming its ``account`` and ``region`` (every hop's full report
  is in OBS under its shard's ``report_keys``); ``needs_attention_total`` counts them all;
- ``failed``: the shards that did not finish (``FAILED``), with why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

KIND = "org-report"
HOP_KIND = "org-shard-hop"
LIST_MOST = 10  # per shard: the first changed / would-change / attention entries kept
REPORT_LIST_MOST = 200  # per organization report list
LISTS = ("changed", "would_change", "needs_attention")
# A shard's status: "ok"; "held" (planned, then kept from applying by the organization's
# limit); "skipped" (nothing to sweep: no project in the region, not a member); and the
# statuses of a shard that did not finish:
FAILED = (
    "error",  # it said why (an agency that cannot be assumed, IMS unreachable)
    "failed",  # FunctionGraph gave up on one of its invocations (its records say so)
    "lost",  # an invocation ended without writing its record
    "unfinished",  # a hop ran out of time and could not continue itself
    "throttled",  # its account's regions could not be listed: STS or IAM throttled
)
SHARD_KEYS = (
    "account",
    "account_name",
    "region",
    "project_id",
    "status",
    "reason",
    "examined",
    "summary",
    "rules",
    "changed",
    "would_change",
    "needs_attention",
    "needs_attention_total",
    "hops",
    "report_keys",
)


def new_entry(
    identity: Mapping[str, Any], status: str = "pending", reason: str | None = None
) -> dict[str, Any]:
    """A shard's entry before any hop is added (``identity``: account, account_name,
    region, project_id)."""
    return {
        "account": identity.get("account"),
        "account_name": identity.get("account_name"),
        "region": identity.get("region"),
        "project_id": identity.get("project_id"),
        "status": status,
        "reason": reason,
        "examined": 0,
        "summary": {},
        "rules": {},
        "changed": [],
        "would_change": [],
        "needs_attention": [],
        "needs_attention_total": 0,
        "hops": 0,
        "report_keys": [],
    }


def hop_record(answer: Mapping[str, Any], hop: int, report_key: str | None) -> dict[str, Any]:
    """What one shard hop tells its coordinator, from the hop's answer (a sweep report, or
    the answer of a shard that could not run): counts, the first entries of its lists, its
    report's key, and the request id of the hop it continued as (None: its last)."""
    continued = answer.get("continued") or {}
    reason = answer.get("error") or answer.get("reason") or answer.get("guardrail")
    record: dict[str, Any] = {
        "kind": HOP_KIND,
        "hop": hop,
        "status": "ok" if answer.get("status") == "ok" else "error",
        "reason": reason,
        "examined": _count(answer.get("examined")),
        "summary": _counts(answer.get("summary")),
        "rules": {
            str(rule): _counts(counts)
            for rule, counts in dict(answer.get("rules") or {}).items()
            if isinstance(counts, Mapping)
        },
        "needs_attention_total": _count(
            answer.get("needs_attention_total", len(answer.get("needs_attention") or []))
        ),
        "report_key": report_key,
        "continued": continued.get("request_id") if continued.get("started") else None,
    }
    for name in LISTS:
        record[name] = [e for e in list(answer.get(name) or [])[:LIST_MOST] if isinstance(e, dict)]
    if answer.get("continuation") and not continued.get("started"):
        record["status"] = "unfinished"
        record["reason"] = (
            f"the shard ran out of time and was not continued: {continued.get('reason') or ''}"
        ).rstrip(": ")
    return record


def add_hop(entry: dict[str, Any], record: Mapping[str, Any]) -> None:
    """Sum one hop's record into its shard's entry. The entry ends ("ok", or the hop's
    failure) when the hop did not continue."""
    entry["hops"] += 1
    entry["examined"] += _count(record.get("examined"))
    _add(entry["summary"], _counts(record.get("summary")))
    for rule, counts in dict(record.get("rules") or {}).items():
        _add(entry["rules"].setdefault(rule, {}), _counts(counts))
    for name in LISTS:
        room = LIST_MOST - len(entry[name])
        entry[name] += list(record.get(name) or [])[: max(room, 0)]
    entry["needs_attention_total"] += _count(record.get("needs_attention_total"))
    if record.get("report_key"):
        entry["report_keys"].append(record["report_key"])
    status = str(record.get("status") or "error")
    if status != "ok":
        entry["status"], entry["reason"] = status, record.get("reason")
    elif record.get("continued"):
        entry["status"] = "running"
    else:
        entry["status"], entry["reason"] = "ok", record.get("reason")


def org_report(
    org_run: str,
    entries: Iterable[Mapping[str, Any]],
    generated_at: str,
    dry_run: bool,
    reason: str | None = None,
    limit: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The organization's report from its shards' entries (in the run's order). ``reason``:
    why no shard applied (the report's status is then "held")."""
    shards = [{key: entry.get(key) for key in SHARD_KEYS} for entry in entries]
    summary: dict[str, int] = {}
    rules: dict[str, dict[str, int]] = {}
    lists: dict[str, list[dict[str, Any]]] = {name: [] for name in LISTS}
    for shard in shards:
        _add(summary, _counts(shard["summary"]))
        for rule, counts in dict(shard["rules"] or {}).items():
            _add(rules.setdefault(rule, {}), _counts(counts))
        where = {"account": shard["account"], "region": shard["region"]}
        for name in LISTS:
            room = REPORT_LIST_MOST - len(lists[name])
            lists[name] += [{**where, **e} for e in list(shard[name] or [])[: max(room, 0)]]
    failed = [
        {k: s[k] for k in ("account", "region", "project_id", "status", "reason")}
        for s in shards
        if s["status"] in FAILED
    ]
    status = "held" if reason else ("incomplete" if failed else "ok")
    if status == "incomplete":
        reason = f"{len(failed)} of {len(shards)} shard(s) did not finish: see failed"
    return {
        "kind": KIND,
        "org_run": org_run,
        "generated_at": generated_at,
        "dry_run": dry_run,
        "status": status,
        "reason": reason,
        "limit": dict(limit) if limit is not None else None,
        "examined": sum(_count(s["examined"]) for s in shards),
        "summary": dict(sorted(summary.items())),
        "rules": {rule: dict(sorted(c.items())) for rule, c in sorted(rules.items())},
        "shards": shards,
        **lists,
        "needs_attention_total": sum(_count(s["needs_attention_total"]) for s in shards),
        "failed": failed,
    }


def _add(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, count in counts.items():
        into[key] = into.get(key, 0) + count


def _counts(value: Any) -> dict[str, int]:
    """A summary's counts, each a whole number (anything else is left out)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
