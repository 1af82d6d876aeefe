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
MAX_SWEEP_ID = 128  # event_models.SweepOptions.sweep_id allows as much


def sweep_id_of(request_id: str) -> str:
    """A sweep's id, from its first hop's request id: safe in an object key."""
    return _UNSAFE_ID.sub("-", request_id)[:MAX_SWEEP_ID]


def hop_stem(prefix: str, when: datetime, sweep_id: str, hop: int) -> str:
    """The key of one hop's report without ``.json``/``.csv``: dated by ``when`` (UTC)."""
    return f"{prefix}{when:%Y/%m/%d}/sweep-{sweep_id}-hop-{hop}"


def latest_key(prefix: str) -> str:
    """The sweep index the last hop of each sweep replaces."""
    return f"{prefix}latest.json"


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


def report_json(report: SweepReport, about: dict[str, Any]) -> io.BytesIO:
    """The full report as UTF-8 JSON: ``about`` (sweep id, hop, time, region, project)
    first, then the hop's report, then ``images``. Each image is serialised on its own into
    the buffer: the whole document never exists as objects (10,000 images would cost tens
    of MB at once)."""
    head = {**about, **report.to_json()}
    out = io.BytesIO()
    out.write(_dumps(head)[:-1].encode("utf-8"))  # without its closing brace
    out.write(b',"images":[' if head else b'{"images":[')
    for index, image in enumerate(report.examined_images or ()):
        if index:
            out.write(b",")
        out.write(_dumps(image_entry(image)).encode("utf-8"))
    out.write(b"]}")
    return out


def report_csv(images: list[Examined]) -> io.BytesIO:
    """UTF-8 CSV, one row per image and rule; an image without verdicts (an error) gets one
    row with an empty rule and the image's reason. Written image by image, as the JSON is."""
    out = io.BytesIO()
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(CSV_HEADER)
    for image_id, name, outcome, reason, _, _, rows in images:
        head = (image_id, name, outcome)
        if not rows:
            writer.writerow([csv_cell(v) for v in (*head, "", "", "", reason)])
        for rule, verdict, why, _, fix in rows:
            writer.writerow([csv_cell(v) for v in (*head, rule, verdict, fix, why)])
        out.write(redact(text.getvalue()).encode("utf-8"))
        text.seek(0)
        text.truncate()
    out.write(redact(text.getvalue()).encode("utf-8"))
    return out


def index_json(about: dict[str, Any], hops: list[str]) -> bytes:
    """``latest.json``: which objects hold the sweep's hops, in order (not their images)."""
    return _dumps({**about, "hops": hops}).encode("utf-8")


def _dumps(value: Any) -> str:
    return redact(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def csv_cell(value: Any) -> str:
    """A value as a CSV cell a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
