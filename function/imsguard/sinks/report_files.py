"""The OBS report's objects, built from a sweep hop's report (pure: no SDK, no I/O).

The JSON is the hop's report (as the function returns it) plus every examined image with its
verdicts and ``before`` values, beyond ``IMSGUARD_RESULTS_LIMIT``; the CSV is one row per image
and rule, for a spreadsheet. Both are redacted, as everything imsguard writes is."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from imsguard.logs import redact

if TYPE_CHECKING:
    from imsguard.results import Examined, SweepReport

CSV_HEADER = ("image_id", "image_name", "outcome", "rule", "verdict", "fix", "reason")
# A spreadsheet runs a cell starting with these as a formula (OWASP, CSV injection): such a
# cell gets a leading ' so it is shown as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._-]")


def object_keys(prefix: str, when: datetime, request_id: str) -> tuple[str, str, str]:
    """The dated JSON and CSV keys of one hop's report, and the key of ``latest.json``."""
    stem = f"{prefix}{when:%Y/%m/%d}/sweep-{_UNSAFE_ID.sub('-', request_id)[:128]}"
    return f"{stem}.json", f"{stem}.csv", f"{prefix}latest.json"


def image_entry(image: Examined) -> dict[str, Any]:
    """One examined image as the JSON report lists it."""
    image_id, name, outcome, reason, operations, before, rows = image
    rules = []
    for rule, verdict, why, mode, fix in rows:
        entry: dict[str, Any] = {"rule": rule, "verdict": verdict, "reason": why}
        if mode == "audit":
            entry["mode"] = "audit"
        if fix:
            entry["fix"] = fix
        rules.append(entry)
    return {
        "image_id": image_id,
        "image_name": name,
        "outcome": outcome,
        "reason": reason,
        "operations": list(operations),
        "before": {} if before is None else before,
        "rules": rules,
    }


def report_json(report: SweepReport, about: dict[str, Any]) -> str:
    """The full report: ``about`` (request id, time, region, project, hop) first, then the
    hop's report, then ``images``."""
    document = {**about, **report.to_json()}
    document["images"] = [image_entry(image) for image in report.examined_images or ()]
    return redact(json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str))


def report_csv(images: list[Examined]) -> str:
    """One row per image and rule; an image without verdicts (an error) gets one row with an
    empty rule and the image's reason."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for image_id, name, outcome, reason, _, _, rows in images:
        head = (image_id, name, outcome)
        if not rows:
            writer.writerow([csv_cell(v) for v in (*head, "", "", "", reason)])
        for rule, verdict, why, _, fix in rows:
            writer.writerow([csv_cell(v) for v in (*head, rule, verdict, fix, why)])
    return redact(out.getvalue())


def csv_cell(value: Any) -> str:
    """A value as a CSV cell a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
