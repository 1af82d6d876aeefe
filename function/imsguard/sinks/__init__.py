"""Report sinks: after an invocation's report exists, optional reporters consume it once.

Each sink is one class in its own module here (``smn.SmnNotices``, ``ces.CesMetrics``,
``obs.ObsReports``) with ``finish(report, invocation, policy) -> dict`` (what it did) and
``@requires`` on the method that calls its cloud API. A sink's module, and its SDK, load only
when its setting is on (``REGISTRY``; the OBS SDK only when a sweep's report is written);
Config's policy states are sent as images are evaluated, outside it. This module itself is
light: the handler imports it on every invocation with image work.

A failing sink never changes what happened to images: its failure is logged at ERROR and
reported as ``{"error": ...}`` under the report's ``sinks``; nothing is raised.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from imsguard.logs import log, redact

if TYPE_CHECKING:
    from imsguard.invocation import Invocation
    from imsguard.policy import Policy
    from imsguard.results import EventReport, SweepReport
    from imsguard.settings import Settings

# Each sink by the name it reports under: the Settings field that switches it on, and its
# module and class (imported only when that field is set).
REGISTRY: dict[str, tuple[str, str, str]] = {
    "smn": ("notify_topic_urn", "imsguard.sinks.smn", "SmnNotices"),
    "ces": ("metrics", "imsguard.sinks.ces", "CesMetrics"),
    "obs": ("report_bucket", "imsguard.sinks.obs", "ObsReports"),
}


# A sweep's continuation carries the keys of its earlier hops' OBS reports in at most this
# many bytes of JSON (the oldest beyond it go unlisted): with SMN's notices, the payload stays
# far below FunctionGraph's request limits.
REPORT_KEYS_BYTES = 64 * 1024


class SinkError(Exception):
    """A sink could not do its work; the message says why (and holds no secret)."""


class ConfigStateNotReported(RuntimeError):
    """Config's UpdatePolicyState kept failing transiently for a ``resource`` evaluation.
    Raised when the image is evaluated, before its PATCH and before any other sink runs, for
    FunctionGraph to retry the event: the retry finds the same violation and reports it.
    (Here, not in sinks.config, so the image check can let it through without the SDK.)"""


def sink_classes() -> list[type]:
    """Every sink's class (imports every sink's SDK: for the tools, never for events)."""
    return [getattr(importlib.import_module(module), name) for _, module, name in REGISTRY.values()]


def sinks_on(settings: Settings) -> bool:
    """Whether any report sink is on (none is, unless its setting is present)."""
    return any(getattr(settings, field) for field, _, _ in REGISTRY.values())


def finish_sinks(
    report: EventReport | SweepReport, invocation: Invocation, policy: Policy
) -> dict[str, dict[str, Any]]:
    """Run every sink that is on, in registry order; what each did, or why it failed."""
    outcomes: dict[str, dict[str, Any]] = {}
    for name, (field, module, class_name) in REGISTRY.items():
        if not getattr(invocation.settings, field):
            continue
        try:
            sink = getattr(importlib.import_module(module), class_name)()
            outcomes[name] = sink.finish(report, invocation, policy)
        except SinkError as exc:
            outcomes[name] = _failed(name, redact(str(exc)))
        except Exception as exc:  # a bug in a sink must not cost the images' report
            outcomes[name] = _failed(name, redact(f"internal error: {type(exc).__name__}: {exc}"))
    return outcomes


def _failed(name: str, reason: str) -> dict[str, Any]:
    log(logging.ERROR, "report sink failed", sink=name, reason=reason)
    return {"error": reason}


def call_timeouts(time_left: float | None, most: float = 30.0) -> tuple[float, float]:
    """(connect, read) timeouts for one sink call that fit in ``time_left`` seconds (None:
    not known), so the call never outlives the invocation; SinkError when too little is left."""
    left = most + 5.0 if time_left is None else time_left
    if left < 1:
        raise SinkError("no time left in the invocation for this call")
    connect = min(5.0, left / 3)
    return connect, max(0.1, min(most, left - connect - 0.2))
