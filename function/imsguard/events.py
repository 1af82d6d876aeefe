"""Event parsing: every envelope imsguard accepts becomes one small Trigger.

Accepted today: a CTS trigger event (``{"cts": {...}}``) for IMS image traces,
and a direct invocation (``{"image_id": ...}`` / ``{"image_ids": [...]}``).
Anything else becomes a :class:`Skip` with a reason, never an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Always used with fullmatch: "$" would also accept a trailing newline.
IMAGE_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
JOB_ID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
IMS_SERVICE = "ims"
IMS_RESOURCE_TYPES = {"ims", "image"}  # "image": traces of the glance-native API
IMAGE_TRACES = {"createImage", "updateImage"}
MAX_IMAGES_PER_EVENT = 100
MAX_EMBEDDED_JSON = 1 << 20  # request/response strings larger than 1 MiB are not parsed


@dataclass(frozen=True)
class Trigger:
    """What an event asks for: images to check, or jobs whose image to check."""

    source: Literal["cts", "direct"]
    summary: str
    image_ids: tuple[str, ...] = ()
    job_ids: tuple[str, ...] = ()
    dry_run: bool | None = None


@dataclass(frozen=True)
class Skip:
    """An event that leads to no work: ``ignored`` (not ours) or ``invalid`` (malformed)."""

    status: Literal["ignored", "invalid"]
    reason: str


def is_image_id(value: Any) -> bool:
    return isinstance(value, str) and IMAGE_ID.fullmatch(value) is not None


def is_job_id(value: Any) -> bool:
    return isinstance(value, str) and JOB_ID.fullmatch(value) is not None


def shorten(value: Any, limit: int = 80) -> str:
    """repr() for messages, cut short: events may carry megabytes of text."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class CtsTrace(BaseModel):
    """A CTS trace as FunctionGraph's CTS trigger delivers it (fields we use)."""

    model_config = ConfigDict(extra="allow")

    service_type: str
    resource_type: str | None = None
    trace_name: str
    trace_type: str | None = None
    resource_id: str | None = None
    resource_name: str | None = None
    trace_id: str | None = None
    code: int | None = None
    # CTS documents request/response as JSON strings; FunctionGraph's samples show objects.
    request: Any = None
    response: dict[str, Any] | list[Any] | str | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _code_as_int(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if value == "":
            return None
        return value


class CtsEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    cts: CtsTrace


class DirectInvocation(BaseModel):
    """A hand-made invocation, e.g. a FunctionGraph console test event."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image_id: str | None = Field(default=None, max_length=64)
    image_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_IMAGES_PER_EVENT)
    dry_run: bool | None = None

    @field_validator("image_id")
    @classmethod
    def _check_id(cls, value: str | None) -> str | None:
        if value is not None and not is_image_id(value):
            raise ValueError("not an image id (expected a UUID)")
        return value

    @field_validator("image_ids")
    @classmethod
    def _check_ids(cls, value: list[str] | None) -> list[str] | None:
        for index, item in enumerate(value or []):
            if not is_image_id(item):
                raise ValueError(f"item {index} is not an image id (expected a UUID)")
        return value


def parse_event(event: Any) -> Trigger | Skip:
    """Turn a raw FunctionGraph event into a Trigger, or say why there is nothing to do."""
    if not isinstance(event, dict):
        return Skip("invalid", f"the event is a {type(event).__name__}, not a JSON object")
    if "cts" in event:
        return _parse_cts(event)
    if "image_id" in event or "image_ids" in event:
        return _parse_direct(event)
    if str(event.get("trigger_type", "")).upper() == "TIMER":
        return Skip("ignored", "timer events (the scheduled sweep) are not handled by this version")
    return Skip(
        "ignored",
        "not an event imsguard handles: expected a CTS trace {\"cts\": {...}} "
        "or a direct invocation {\"image_id\": \"...\"}",
    )


def _parse_direct(event: dict[str, Any]) -> Trigger | Skip:
    try:
        direct = DirectInvocation.model_validate(event)
    except ValidationError as exc:
        return Skip("invalid", f"invalid direct invocation: {describe_errors(exc)}")
    if direct.image_id and direct.image_ids:
        return Skip("invalid", "give either image_id or image_ids, not both")
    if not direct.image_id and not direct.image_ids:
        return Skip("invalid", "give an image_id or a non-empty image_ids list")
    ids = [direct.image_id] if direct.image_id else list(direct.image_ids or [])
    ids = _unique(i.lower() for i in ids)
    return Trigger("direct", f"direct invocation for {len(ids)} image(s)", tuple(ids),
                   dry_run=direct.dry_run)


def _parse_cts(event: dict[str, Any]) -> Trigger | Skip:
    try:
        trace = CtsEvent.model_validate(event).cts
    except ValidationError as exc:
        return Skip("invalid", f"invalid CTS event: {describe_errors(exc)}")
    if trace.service_type.lower() != IMS_SERVICE:
        return Skip("ignored", f"trace of service {shorten(trace.service_type)}, not IMS")
    resource_type = (trace.resource_type or "").lower()
    if resource_type not in IMS_RESOURCE_TYPES:
        return Skip("ignored", f"IMS trace on resource type {shorten(trace.resource_type)}, "
                               "not an image")
    if trace.trace_name not in IMAGE_TRACES:
        return Skip("ignored", f"IMS trace {shorten(trace.trace_name)} does not create or "
                               "change an image")
    if trace.code is not None and trace.code >= 400:
        return Skip("ignored", f"the traced {trace.trace_name} call failed (code {trace.code}); "
                               "it changed nothing")
    response = _embedded_json(trace.response)
    if isinstance(response, Skip):
        return response
    if isinstance(response, dict) and str(response.get("status", "")).upper() == "FAIL":
        return Skip("ignored", f"the {trace.trace_name} job failed; no image was created")
    image_ids, job_ids = _ids_in_trace(trace, response)
    summary = f"CTS {trace.trace_name}" + (f" ({trace.trace_type})" if trace.trace_type else "")
    if not image_ids and not job_ids:
        return Skip("invalid", f"the {trace.trace_name} trace names no image id and no job id "
                               "(resource_id and response hold neither)")
    return Trigger("cts", summary, tuple(image_ids), tuple(job_ids))


def _embedded_json(value: Any) -> Any:
    """CTS may carry request/response as JSON text; decode it, or Skip if unreadable."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    if len(value) > MAX_EMBEDDED_JSON:
        return Skip("invalid", "the trace response is too large to read")
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return Skip("invalid", "the trace response is not valid JSON (or nested too deeply)")


def _ids_in_trace(trace: CtsTrace, response: Any) -> tuple[list[str], list[str]]:
    """The image id from resource_id, else from the response (id, image_id,
    entities.image_id), else the response's job id.

    Which of these a real IMS createImage trace carries is unconfirmed (no public
    sample exists), so every plausible place is read, in that order.
    """
    image_ids: list[str] = []
    job_ids: list[str] = []
    if is_image_id(trace.resource_id):
        image_ids.append(trace.resource_id)
    elif isinstance(response, dict):
        entities = response.get("entities")
        candidates = [response.get("image_id"), response.get("id")]
        if isinstance(entities, dict):
            candidates.append(entities.get("image_id"))
        image_ids.extend([c for c in candidates if is_image_id(c)][:1])
        if is_job_id(response.get("job_id")) and not image_ids:
            job_ids.append(response["job_id"])
    return _unique(i.lower() for i in image_ids), _unique(job_ids)


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(items))


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """A short, human line per pydantic error: 'field: message (got ...)'."""
    parts = []
    for error in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "event"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
