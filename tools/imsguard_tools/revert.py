"""Undo what a report says imsguard changed: each image back to its ``before`` values.

A report (an event's result or a sweep report, as JSON) lists each image imsguard
updated, the operations it sent and what each attribute held before. An image is
restored only where every attribute still holds the value imsguard set; one that was
changed since is left alone and said so, so a revert never overwrites a person's work.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from imsguard.attributes import attribute_text, same_value
from imsguard.events import is_image_id
from imsguard.ims import ImsError, ImsGateway


class Undo(NamedTuple):
    """One image's change, as the report recorded it."""

    image_id: str
    sent: tuple[dict[str, str], ...]
    before: dict[str, Any]


def read_report(text: str) -> Any:
    """A report as JSON, or the function's JSON log lines (one object a line, as LTS keeps
    them: an enforcing timer sweep leaves no other record of what it changed)."""
    try:
        report = json.loads(text)
    except ValueError:  # several lines
        report = None
    log_line = isinstance(report, dict) and "message" in report and "results" not in report
    if report is not None and not log_line:
        return report
    try:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        raise ValueError("neither a JSON report nor JSON log lines") from None
    return {
        "results": [
            line
            for line in lines
            if isinstance(line, dict) and line.get("message") == "image updated"
        ]
    }


def changes_in(report: Any) -> list[Undo]:
    """The updated images a report lists (in ``results`` and a sweep's ``changed``), each
    once; ValueError says why the report cannot be used, or cannot be used whole."""
    if not isinstance(report, dict):
        raise ValueError("a report is a JSON object (an imsguard result or sweep report)")
    entries = [
        e for key in ("results", "changed") for e in report.get(key) or [] if isinstance(e, dict)
    ]
    undos: dict[str, Undo] = {}
    for entry in entries:
        if entry.get("outcome", "updated") != "updated" or entry.get("image_id") in undos:
            continue
        image_id, sent, held = entry.get("image_id"), entry.get("operations"), entry.get("before")
        if (
            not isinstance(image_id, str)
            or not is_image_id(image_id)
            or not isinstance(sent, list)
            or not isinstance(held, dict)
        ):
            raise ValueError(
                f"entry for {image_id!r} lacks an image id, its operations or its "
                "before values (reports from imsguard 0.1 have none)"
            )
        for op in sent:
            if not (
                isinstance(op, dict)
                and op.get("op") in ("add", "replace")
                and isinstance(op.get("value"), str)
                and str(op.get("path"))[1:] in held
            ):
                raise ValueError(
                    f"entry for {image_id}: operation {op!r} is not one imsguard "
                    "sends, or has no before value"
                )
        undos[image_id] = Undo(image_id, tuple(sent), held)
    updated = (report.get("summary") or {}).get("updated")
    if isinstance(updated, int) and updated > len(undos):
        raise ValueError(
            f"the report lists {len(undos)} of the {updated} images it updated "
            "(its lists stop at IMSGUARD_RESULTS_LIMIT): revert from the "
            "function's log lines, which hold every image"
        )
    return list(undos.values())


def undo_operations(undo: Undo) -> list[dict[str, str]]:
    """The patch that gives each attribute back what it held (removing what was absent)."""
    operations = []
    for op in undo.sent:
        key = op["path"][1:]
        previous = undo.before[key]
        if previous is None:
            operations.append({"op": "remove", "path": op["path"]})
        else:
            operations.append(
                {"op": "replace", "path": op["path"], "value": attribute_text(previous) or ""}
            )
    return operations


def revert(undo: Undo, gateway: ImsGateway, dry_run: bool) -> dict[str, Any]:
    """Restore one image if it still holds what imsguard set; the result says what happened."""
    result: dict[str, Any] = {"image_id": undo.image_id, "operations": []}
    try:
        image = gateway.get_image(undo.image_id)
    except ImsError as exc:
        return {**result, "outcome": "error", "reason": str(exc)}
    if image is None:
        return {**result, "outcome": "gone", "reason": "no such image any more"}
    changed = [
        op["path"][1:]
        for op in undo.sent
        if not same_value(op["path"][1:], image.get(op["path"][1:]), op["value"])
    ]
    if changed:
        return {
            **result,
            "outcome": "changed_since",
            "reason": f"{', '.join(changed)} changed since imsguard set them; left alone",
        }
    operations = undo_operations(undo)
    if dry_run:
        return {
            **result,
            "operations": operations,
            "outcome": "would_revert",
            "reason": "dry run: nothing was sent",
        }
    try:
        gateway.update_image(undo.image_id, operations)
    except ImsError as exc:
        return {**result, "operations": operations, "outcome": "error", "reason": str(exc)}
    return {
        **result,
        "operations": operations,
        "outcome": "reverted",
        "reason": f"{len(operations)} attribute(s) restored",
    }
