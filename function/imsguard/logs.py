"""Structured logs: one JSON object per line, with the invocation's request id.

FunctionGraph ships stdout to LTS, where JSON lines can be searched by field
(``image_id``, ``outcome``...). Only fields passed explicitly are logged; the
handler never passes credentials.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

LOGGER_NAME = "imsguard"
# The invocation's fields (its request id): one per invocation, not one per module, as one
# FunctionGraph instance may run several at once. Threads a sweep starts copy it (in_context).
_context: ContextVar[Mapping[str, Any]] = ContextVar(
    "imsguard_log_context", default=MappingProxyType({})
)
_secrets: set[str] = set()


PREFIX = 10  # a secret's first 10 characters are already too many to show


def keep_secret(*values: str | None) -> None:
    """Values (AK, SK, token) that must never be written: log lines and errors redact them,
    and their base64 forms (headers and tokens carry them so)."""
    import base64

    for value in values:
        if value and len(value) >= 4:
            encoded = base64.b64encode(value.encode()).decode()
            _secrets.update(
                {
                    value,
                    encoded,
                    encoded.rstrip("="),
                    base64.urlsafe_b64encode(value.encode()).decode().rstrip("="),
                }
            )


def redact(text: str) -> str:
    """Every kept secret, and every run of 10 or more of its first characters, as ***."""
    # A copy (made under the GIL, at once): another thread (an org sweep's local shards)
    # may keep a secret meanwhile.
    for secret in tuple(_secrets):
        head = secret[:PREFIX] if len(secret) >= PREFIX else secret
        if head in text:
            text = _hide(text, secret, head)
    return text


def _hide(text: str, secret: str, head: str) -> str:
    """Each occurrence of ``head`` and as much of the secret as follows it, as ***."""
    out, start = [], 0
    while (found := text.find(head, start)) != -1:
        end = found + len(head)
        while end < len(text) and end - found < len(secret) and text[end] == secret[end - found]:
            end += 1
        out.append(text[start:found] + "***")
        start = end
    return "".join(out) + text[start:]


def redact_all(data: Any) -> Any:
    """A JSON-serialisable value with every secret replaced (for reports)."""
    text = json.dumps(data, ensure_ascii=False, default=str)
    cleaned = redact(text)
    return data if cleaned == text else json.loads(cleaned)


class RedactingFilter(logging.Filter):
    """For loggers not ours (the SDK's): their records lose the secrets too."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context.get(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class _StreamHandler(logging.Handler):
    """Writes to whatever ``sys.stdout`` (or the chosen stream) is at emit time."""

    def __init__(self, stream_name: str = "stdout"):
        super().__init__()
        self.stream_name = stream_name

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = getattr(sys, self.stream_name)
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def get_logger(level: str | None = None) -> logging.Logger:
    """The imsguard logger, configured once for JSON lines on stdout (INFO unless told)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, _StreamHandler) for h in logger.handlers):
        handler = _StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
    if level is not None:
        logger.setLevel(level)
    return logger


def log_to(stream_name: str) -> None:
    """Send the JSON lines to ``stdout`` or ``stderr`` (the CLI keeps stdout for people)."""
    for handler in get_logger().handlers:
        if isinstance(handler, _StreamHandler):
            handler.stream_name = stream_name


def set_context(**fields: Any) -> None:
    """Fields added to every line of this invocation (e.g. the request id)."""
    _context.set({k: v for k, v in fields.items() if v is not None})


def context_field(name: str) -> Any:
    """One of the invocation's fields (``request_id``), or None: for what names its output
    after the invocation (the OBS report's keys)."""
    return _context.get().get(name)


def in_context(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` as it should run in another thread: in this invocation's context (its
    log fields, its IMS limits); each call gets its own copy, as threads may run at once."""
    context = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> Any:
        return context.copy().run(function, *args, **kwargs)

    return run


def log(level: int, message: str, **fields: Any) -> None:
    logging.getLogger(LOGGER_NAME).log(level, message, extra={"fields": fields})
