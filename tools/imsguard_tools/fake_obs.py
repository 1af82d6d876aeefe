"""A fake OBS on a loopback HTTP server, as far as imsguard's reports use it.

The OBS SDK (``esdk-obs-python``) speaks HTTP itself (``http.client``), so ``responses`` cannot
intercept it: tests run the real SDK against this server. Path-style addressing
(``/<bucket>/<key>``, what the SDK uses against an IP endpoint), objects in memory, PUT, GET and
HEAD of objects, and HEAD of a bucket (``headBucket``, ``getBucketMetadata``: 200 when it
exists, 404 NoSuchBucket when not). Each request must carry a signed ``Authorization`` header
and the temporary credentials' security token (``x-obs-security-token``, or
``x-amz-security-token`` in the SDK's path-style signing); a ``Content-MD5`` header is checked
against the body, as OBS does. Errors are OBS's XML (``<Error><Code>AccessDenied</Code>...``).
``fail_next`` answers the next requests with 400 RequestTimeout, 403, 500 or 503 SlowDown, or
delays them past the client's timeout; ``refuse`` answers every matching request with one of
those errors (a call a policy denies).
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

from imsguard_tools.fake_http import serve_loopback

# OBS's wording for the codes the fake answers (OBS API reference, error codes).
MESSAGES = {
    "AccessDenied": "Access Denied",
    "InternalError": "We encountered an internal error. Please try again.",
    "NoSuchBucket": "The specified bucket does not exist",
    "NoSuchKey": "The specified key does not exist.",
    "BadDigest": "The Content-MD5 you specified did not match what we received.",
    "InvalidAccessKeyId": "The access key Id you provided does not exist in our records.",
    "MethodNotAllowed": "The specified method is not allowed against this resource.",
    "SlowDown": "Please reduce your request rate.",
    "RequestTimeout": "Your socket connection to the server was not read from or written to "
    "within the timeout period.",
}
# The statuses fail_next can answer with, and OBS's code for each: 503 SlowDown (throttled)
# and 400 RequestTimeout (the upload stalled) are transient, as 500 is.
FAULTS = {400: "RequestTimeout", 403: "AccessDenied", 500: "InternalError", 503: "SlowDown"}


@dataclass(frozen=True)
class ObsCall:
    """One request that reached the fake, with the status it got."""

    method: str
    bucket: str
    key: str
    headers: dict[str, str]
    status: int


class FakeObs:
    """In-memory buckets; ``objects[(bucket, key)]`` holds each object's bytes and
    ``content_types`` its Content-Type. Serve it with ``with fake.serve() as endpoint:``."""

    def __init__(self, buckets: tuple[str, ...] = ("imsguard-reports",), token: str | None = None):
        self.buckets = set(buckets)
        self.token = token  # the security token requests must carry (None: any)
        self.objects: dict[tuple[str, str], bytes] = {}
        self.content_types: dict[tuple[str, str], str] = {}
        self.calls: list[ObsCall] = []
        self._faults: list[tuple[int | None, float]] = []
        self._refusals: list[tuple[str, re.Pattern[str], int]] = []
        self._lock = threading.Lock()

    def fail_next(self, status: int | None = None, times: int = 1, delay: float = 0.0) -> None:
        """Answer the next ``times`` requests with ``status`` (a FAULTS key) as OBS's XML error,
        or, with ``delay``, answer them normally only after ``delay`` seconds (a timeout)."""
        if status is not None and status not in FAULTS:
            raise ValueError(f"fail_next takes one of {sorted(FAULTS)}, not {status}")
        with self._lock:
            self._faults += [(status, delay)] * times

    def refuse(self, method: str, path: str, status: int = 403) -> None:
        """Answer every ``method`` request whose ``/<bucket>/<key>`` matches the regular
        expression ``path`` with ``status`` (a FAULTS key), as OBS's XML error."""
        if status not in FAULTS:
            raise ValueError(f"refuse takes one of {sorted(FAULTS)}, not {status}")
        with self._lock:
            self._refusals.append((method.upper(), re.compile(path), status))

    def assert_faults_met(self) -> None:
        """Fail if a fault was never met by a request: the test did not test it."""
        assert not self._faults, f"faults never met: {self._faults}"

    def settle(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests are recorded (delayed ones are, once answered)."""
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def keys(self, bucket: str = "imsguard-reports") -> list[str]:
        return sorted(key for b, key in self.objects if b == bucket)

    def text(self, key: str, bucket: str = "imsguard-reports") -> str:
        return self.objects[(bucket, key)].decode("utf-8")

    @property
    def puts(self) -> list[ObsCall]:
        return [call for call in self.calls if call.method == "PUT"]

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request and record it: (status, headers, body)."""
        bucket, _, key = unquote(urlsplit(path).path).lstrip("/").partition("/")
        with self._lock:
            status, delay = self._faults.pop(0) if self._faults else (None, 0.0)
        if delay:
            time.sleep(delay)
        lowered = {k.lower(): v for k, v in headers.items()}
        answer = self._answer(method, bucket, key, lowered, body, status)
        with self._lock:
            self.calls.append(ObsCall(method, bucket, key, lowered, answer[0]))
        return answer

    def _answer(
        self,
        method: str,
        bucket: str,
        key: str,
        headers: dict[str, str],
        body: bytes,
        fault: int | None,
    ) -> tuple[int, dict[str, str], bytes]:
        if fault is not None:
            return _error(fault, FAULTS[fault], bucket, key)
        for refused, path, status in self._refusals:
            if refused == method and path.search(f"/{bucket}/{key}"):
                return _error(status, FAULTS[status], bucket, key)
        token = headers.get("x-obs-security-token") or headers.get("x-amz-security-token")
        signed = headers.get("authorization", "").startswith(("OBS ", "AWS "))
        if not signed or ":" not in headers.get("authorization", ""):
            return _error(403, "InvalidAccessKeyId", bucket, key)
        if not token or (self.token is not None and token != self.token):
            return _error(403, "AccessDenied", bucket, key)
        if bucket not in self.buckets:
            return _error(404, "NoSuchBucket", bucket, key)
        if method == "PUT" and key:
            md5 = headers.get("content-md5")
            digest = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
            if md5 is not None and md5 != digest:
                return _error(400, "BadDigest", bucket, key)
            with self._lock:
                self.objects[(bucket, key)] = body
                self.content_types[(bucket, key)] = headers.get("content-type", "")
            etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
            return 200, {"ETag": f'"{etag}"', "x-obs-request-id": uuid.uuid4().hex}, b""
        if method in ("GET", "HEAD") and key:
            stored = self.objects.get((bucket, key))
            if stored is None:
                return _error(404, "NoSuchKey", bucket, key)
            return 200, {"Content-Type": self.content_types[(bucket, key)]}, stored
        if method == "HEAD" and not key:  # the bucket exists (checked above)
            return 200, {"x-obs-request-id": uuid.uuid4().hex}, b""
        return _error(405, "MethodNotAllowed", bucket, key)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the fake on a free loopback port; yields its endpoint URL."""
        with serve_loopback(_handler_for(self), "fake-obs") as url:
            yield url


def _error(status: int, code: str, bucket: str, key: str) -> tuple[int, dict[str, str], bytes]:
    """OBS's XML error body."""
    request_id = uuid.uuid4().hex
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{escape(MESSAGES[code])}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>fake-obs</HostId>"
        f"<Resource>/{escape(bucket)}/{escape(key)}</Resource></Error>"
    ).encode()
    return status, {"Content-Type": "application/xml", "x-obs-request-id": request_id}, body


def _handler_for(fake: FakeObs) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, payload = fake.handle(
                self.command, self.path, dict(self.headers), body
            )
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            except OSError:  # the client timed out and closed the connection
                self.close_connection = True

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler
