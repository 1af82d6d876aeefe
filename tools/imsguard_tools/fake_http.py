"""The part every fake cloud API shares: HTTP in, JSON out, every request recorded.

A fake speaks HTTP, so tests drive the real Huawei Cloud SDK clients against it instead of
mocking SDK objects: request building, signing, JSON decoding and error parsing all run
for real. It is wired in either through ``responses`` (``with fake:``) or through a
loopback HTTP server (``with fake.serve() as endpoint:``); both transports call
``dispatch``. Faults can be injected (``fail_next``, ``respond_next``, ``raise_next``,
``inject_faults``). The services themselves live in fake_ims.py and fake_fgs.py.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import requests
import responses

FAULT_KINDS = (
    "429",
    "429-retry-after",
    "500",
    "503",
    "img-0060",
    "reset",
    "read-timeout",
    "timeout-after-patch",
)

_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

Route = tuple[str, "re.Pattern[str]", Callable[..., tuple[int, Any]]]
_Fake = TypeVar("_Fake", bound="FakeHttpApi")


@dataclass(frozen=True)
class FakeCall:
    """One request that reached the fake, with the status it got."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    headers: dict[str, str]


class ApiError(Exception):
    """Raised inside a handler to turn into an error answer in the service's own shape
    (``message`` None: the service's wording for ``code``, see ``FakeHttpApi.messages``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class FakeHttpApi:
    """Recording, fault injection, routing, signing checks and the two transports."""

    # Error messages by code, as the services' error-code tables word them.
    messages: ClassVar[dict[str, str]] = {
        "APIGW.0101": "The API does not exist or has not been published",
        "APIGW.0301": "Incorrect IAM authentication information: verify aksk signature fail",
    }

    def __init__(self, project_id: str, region: str) -> None:
        self.project_id = project_id
        self.region = region
        self.calls: list[FakeCall] = []
        # assumption: a fake clock that ticks one second per use keeps timestamps
        # deterministic and makes every update visibly newer than what came before.
        self._clock = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._lock = threading.RLock()
        self._mock: responses.RequestsMock | None = None
        self._injected: list[tuple[str, Any]] = []
        self._chaos: tuple[float, random.Random, tuple[str, ...]] | None = None
        self.faults: Counter[str] = Counter()  # faults injected by inject_faults, by kind
        # Called with (method, path) before each request, outside the lock: lets a test
        # hold requests back (e.g. a threading.Barrier to make two deliveries overlap).
        self.before_request: Callable[[str, str], None] | None = None
        # Served over HTTP (serve()): answers' bodies go out one byte per this many seconds
        # (the status line and headers too, with trickle_headers).
        self.trickle_seconds = 0.0
        self.trickle_headers = False
        self._routes: list[Route] = []  # each service adds its own
        # never_answer(): (the clock a silent request costs, the methods that get no answer)
        self._silent: tuple[Any, frozenset[str]] | None = None
        self._attached: list[FakeHttpApi] = []  # other fakes served by this one's mock
        # refuse(): (method, path pattern, the error) answered to every matching request
        self._refusals: list[tuple[str, re.Pattern[str], ApiError]] = []

    def attach(self: _Fake, *others: FakeHttpApi) -> _Fake:
        """Serve these fakes too (e.g. SMN and Cloud Eye beside the fake IMS): their
        endpoints join this fake's ``responses`` mock, now if it is running or when it
        starts, so one ``with`` block intercepts every service. Returns this fake."""
        for other in others:
            self._attached.append(other)
            if self._mock is not None:
                _route_to(self._mock, other)
        return self

    def endpoints(self) -> tuple[str, ...]:
        """The base URLs ``with fake:`` intercepts (each service adds its own)."""
        return ()

    def _tick(self) -> str:
        with self._lock:
            self._clock += timedelta(seconds=1)
            return format_time(self._clock)

    @property
    def patches(self) -> list[FakeCall]:
        return [call for call in self.calls if call.method == "PATCH"]

    @property
    def reads(self) -> list[FakeCall]:
        return [call for call in self.calls if call.method == "GET"]

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    # -- transport-independent core -----------------------------------------

    def fail_next(
        self,
        method: str,
        status: int,
        code: str,
        message: str | None = None,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` requests of ``method`` with this IMS error instead
        (with a Retry-After header when ``retry_after`` is given)."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        for _ in range(times):
            self._injected.append((method.upper(), ApiError(status, code, message, headers)))

    def refuse(self, method: str, path: str, status: int, code: str) -> None:
        """Answer every ``method`` request whose path matches the regular expression
        ``path`` with this error (e.g. 403: one call an account's policy does not allow),
        whatever other requests come first."""
        self._refusals.append((method.upper(), re.compile(path), ApiError(status, code)))

    def assert_injections_met(self) -> None:
        """Fail if an answer injected with fail_next, respond_next or raise_next was never
        met by a request: a fault test whose fault was not hit proves nothing."""
        assert not self._injected, f"injected answers never used: {self._injected}"

    def respond_next(self, method: str, status: int, payload: Any) -> None:
        """Answer the next request of ``method`` with this body, without touching any state
        (e.g. an IMS that says 200 but did not apply the change)."""
        self._injected.append((method.upper(), (status, payload)))

    def raise_next(self, method: str, exception: BaseException, after: bool = False) -> None:
        """Make the next request of ``method`` fail in transport, e.g. with
        ``requests.exceptions.ReadTimeout()`` (only under ``with fake:``); ``after``: once
        the request has been carried out (a PATCH applied, its answer lost)."""
        self._injected.append((method.upper(), (exception, after)))

    def never_answer(self, clock: Any, *methods: str) -> None:
        """From now on, requests of ``methods`` get no answer (only under ``with fake:``):
        each costs ``clock`` the whole timeout its client set (connect plus read, the worst
        case), then fails with a ReadTimeout, as a service that accepts and never answers."""
        self._silent = (clock, frozenset(m.upper() for m in methods))

    def inject_faults(
        self, rate: float, seed: int = 1, kinds: tuple[str, ...] = FAULT_KINDS
    ) -> None:
        """From now on, fail each request with probability ``rate``, with one of ``kinds``:
        429 (with or without Retry-After), 500, 503, a connection reset, a read timeout, or
        a read timeout after a PATCH was applied. Seeded: the same run, the same faults."""
        self._chaos = (rate, random.Random(seed), kinds)

    def _chaos_fault(self, method: str) -> Any:
        """The fault chaos picks for this request, in the form of an injected one."""
        if self._chaos is None:
            return None
        rate, rng, kinds = self._chaos
        if rng.random() >= rate:
            return None
        kind = rng.choice([k for k in kinds if k != "timeout-after-patch" or method == "PATCH"])
        self.faults[kind] += 1
        return {
            "429": ApiError(429, "APIGW.0308", "The throttling threshold has been reached"),
            "429-retry-after": ApiError(
                429, "APIGW.0308", "The throttling threshold has been reached", {"Retry-After": "1"}
            ),
            "500": ApiError(500, "IMG.0500", "Internal error"),
            "503": ApiError(503, "APIGW.0203", "Service unavailable"),
            "img-0060": ApiError(400, "IMG.0060"),
            "reset": (requests.exceptions.ConnectionError("Connection reset by peer"), False),
            "read-timeout": (requests.exceptions.ReadTimeout("Read timed out"), False),
            "timeout-after-patch": (requests.exceptions.ReadTimeout("Read timed out"), True),
        }[kind]

    def _take_injected(self, method: str) -> Any:
        for index, (injected_method, action) in enumerate(self._injected):
            if injected_method == method:
                del self._injected[index]
                return action
        return None

    def dispatch(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | str | None
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one HTTP request and record it; returns (status, headers, body)."""
        method = method.upper()
        parts = urlsplit(url)
        if self.before_request is not None:
            self.before_request(method, parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        with self._lock:
            extra_headers: dict[str, str] = {}
            try:
                refused = [e for m, p, e in self._refusals if m == method and p.search(parts.path)]
                if refused:
                    raise refused[0]
                injected = self._take_injected(method) or self._chaos_fault(method)
                if isinstance(injected, tuple) and isinstance(injected[0], BaseException):
                    exception, after = injected  # a transport failure: recorded as status 0
                    if after:
                        self._route(method, parts.path, query, headers, text)
                    self.calls.append(
                        FakeCall(method, parts.path, query, try_json(text), 0, dict(headers))
                    )
                    raise exception
                if isinstance(injected, tuple):
                    status, payload = injected
                elif isinstance(injected, ApiError):
                    raise injected
                else:
                    status, payload = self._route(method, parts.path, query, headers, text)
            except ApiError as error:
                status = error.status
                message = error.message or self.messages.get(error.code, error.code)
                payload = self.error_body(error.code, message)
                extra_headers = error.headers
            self.calls.append(
                FakeCall(method, parts.path, query, try_json(text), status, dict(headers))
            )
        response_headers = {
            "Content-Type": "application/json",
            "X-Request-Id": uuid.uuid4().hex,
            **extra_headers,
        }
        content = b"" if status == 204 else json.dumps(payload).encode("utf-8")  # no body
        return status, response_headers, content

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: Mapping[str, str],
        body: str | None,
    ) -> tuple[int, Any]:
        # assumption: like API Gateway, an unknown API is reported before authentication.
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                self._authenticate(headers)
                args = [unquote(group) for group in match.groups()]
                return handler(*args, query=query, body=body)
        raise ApiError(404, "APIGW.0101")

    def error_body(self, code: str, message: str) -> Any:
        """An error answer's body in the service's documented shape (this default: the shared
        {"error": {"code", "message"}}; services that document another override it)."""
        return {"error": {"code": code, "message": message}}

    @staticmethod
    def authenticate_global(headers: Mapping[str, str], domain_id: str) -> None:
        """Accept only requests signed the way the SDK's GlobalCredentials sign them for this
        account (a domain id, no project): Organizations and IAM."""
        lowered = {key.lower(): value for key, value in headers.items()}
        if not lowered.get("authorization", "").startswith("SDK-HMAC-SHA256 "):
            raise ApiError(401, "APIGW.0301")
        if lowered.get("x-domain-id") != domain_id:
            raise ApiError(401, "APIGW.0301")

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        """Accept only requests signed the way the SDK's BasicCredentials sign them."""
        lowered = {key.lower(): value for key, value in headers.items()}
        authorization = lowered.get("authorization", "")
        signed = (
            authorization.startswith("SDK-HMAC-SHA256 ")
            and "Access=" in authorization
            and "Signature=" in authorization
        )
        if not signed or lowered.get("x-project-id") != self.project_id:
            raise ApiError(401, "APIGW.0301")

    # -- transports ------------------------------------------------------------

    def start(self) -> None:
        """Route every request for ``endpoint`` to the fake; other URLs fail to connect."""
        if self._mock is not None:
            return
        mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        for fake in (self, *self._attached):
            _route_to(mock, fake)
        mock.start()
        self._mock = mock

    def stop(self) -> None:
        if self._mock is None:
            return
        self._mock.stop()
        self._mock.reset()
        self._mock = None

    def __enter__(self: _Fake) -> _Fake:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _responses_callback(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        method = request.method.upper()
        if self._silent is not None and method in self._silent[1]:
            timeout = getattr(request, "req_kwargs", {}).get("timeout")
            waited = sum(timeout) if isinstance(timeout, tuple) else float(timeout or 0)
            self._silent[0].sleep(waited)
            parts, body = urlsplit(request.url), request.body
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            with self._lock:
                self.calls.append(
                    FakeCall(
                        method,
                        parts.path,
                        dict(parse_qsl(parts.query)),
                        try_json(text),
                        0,
                        dict(request.headers),
                    )
                )
            raise requests.exceptions.ReadTimeout(f"Read timed out (no answer in {waited:g} s)")
        return self.dispatch(request.method, request.url, request.headers, request.body)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the fake over real HTTP on a free loopback port; yields its base URL.

        Use it without ``start()``: while ``responses`` is active it would intercept
        the loopback calls too.
        """
        with serve_loopback(_handler_for(self), f"fake-{type(self).__name__}") as url:
            yield url


@contextmanager
def serve_loopback(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port in a thread; yields the base URL. For the
    fakes of clients that do not use ``requests`` (which ``responses`` cannot intercept)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # A short poll interval keeps shutdown fast (the default waits up to half a second).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _route_to(mock: responses.RequestsMock, fake: FakeHttpApi) -> None:
    for endpoint in fake.endpoints():
        url = re.compile(re.escape(endpoint) + r"(?:[/?#].*)?")
        for method in _HTTP_METHODS:
            mock.add_callback(method, url, callback=fake._responses_callback)


def format_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def try_json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _handler_for(fake: FakeHttpApi) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``fake``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so a benchmark measures the fake
        # Headers and body go out in two writes: without TCP_NODELAY the second waits
        # ~40 ms for the client's delayed ACK, which a benchmark would count as our time.
        disable_nagle_algorithm = True

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            host, port = cast("tuple[str, int]", self.server.server_address)[:2]
            url = f"http://{host}:{port}{self.path}"
            status, headers, payload = fake.dispatch(self.command, url, dict(self.headers), body)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            if self.command == "HEAD":
                payload = b""
            if fake.trickle_headers:  # the status line and headers too, byte by byte
                buffered: list[bytes] = getattr(self, "_headers_buffer", [])
                head = b"".join([*buffered, b"\r\n"])
                setattr(self, "_headers_buffer", [])  # noqa: B010 (the base class's buffer)
                self._write(head + payload)
                return
            self.end_headers()
            self._write(payload)

        def _write(self, payload: bytes) -> None:
            if not fake.trickle_seconds:
                self.wfile.write(payload)
                return
            self.wfile.flush()  # what was written before at once, then byte by byte
            try:
                for index in range(len(payload)):
                    time.sleep(fake.trickle_seconds)
                    self.wfile.write(payload[index : index + 1])
                    self.wfile.flush()
            except OSError:  # the client gave up and closed the connection
                self.close_connection = True

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler
