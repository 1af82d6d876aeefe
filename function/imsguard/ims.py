"""The IMS gateway: the only module that imports the Huawei Cloud SDK.

It builds one client per container (rebuilt only when the temporary
credentials rotate), returns images as the raw JSON IMS sent (the SDK models
drop unknown keys and coerce types, and policies may name any attribute), and
turns every SDK or transport failure into one :class:`ImsError` with a kind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

import requests
import urllib3.exceptions
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exception_handler import DefaultExceptionHandler
from huaweicloudsdkcore.exceptions.exceptions import SdkException, ServiceResponseException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkims.v2 import (
    ImsClient,
    ListImagesRequest,
    ListOsVersionsRequest,
    ShowJobProgressRequest,
    ShowJobRequest,
    UpdateImageRequest,
    UpdateImageRequestBody,
)
from huaweicloudsdkims.v2.region.ims_region import ImsRegion
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from imsguard.attributes import same_value
from imsguard.clock import Clock, SystemClock
from imsguard.context import Credentials
from imsguard.events import is_image_id, shorten
from imsguard.ims_errors import ErrorKind, error_kind
from imsguard.logs import RedactingFilter, redact
from imsguard.permissions import (
    LIST_IMAGES,
    LIST_OS_VERSIONS,
    SHOW_JOB,
    SHOW_JOB_PROGRESS,
    UPDATE_IMAGE,
    requires,
)

# The SDK's own logger has no handler, so Python would print its errors to stderr; the
# failures reach our JSON log lines (redacted) through ImsError instead.
logging.getLogger("HuaweiCloud-SDK-ImsClient").addHandler(logging.NullHandler())
logging.getLogger("HuaweiCloud-SDK-ImsClient").addFilter(RedactingFilter())

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
MIN_CALL_TIME_S = 1.0  # less time left than this: no call is started
REPORT_TIME_S = 0.3  # every call ends this long before the invocation does: time to report
RETRIES = 3  # after the first try, for transient failures
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
BODY_CHUNK_BYTES = 64 * 1024

# This call's (connect, read) timeouts and its deadline (time.monotonic()), set by the
# thread making the call: the client and its HttpConfig are shared by every invocation
# the instance runs at once, so nothing per call may live on them.
_call_limits: ContextVar[tuple[tuple[float, float], float] | None] = ContextVar(
    "imsguard_call_limits", default=None
)


class ImsError(Exception):
    """An IMS call failed. ``kind``: transient (retry may help), permanent, gone, or
    out_of_time (not made: the invocation would end first)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ):
        self.kind = kind
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after  # seconds IMS asked us to wait (Retry-After)
        message = redact(message)
        details = ", ".join(
            f"{k} {v}"
            for k, v in (("HTTP", status), ("code", code), ("request id", request_id))
            if v
        )
        super().__init__(f"{message} ({details})" if details else message)


class ImsGateway:
    """Image reads and writes for one project, through one SDK client."""

    def __init__(self, client: ImsClient, project_id: str):
        self.client = client
        self.project_id = project_id
        self.uefi_versions: frozenset[str] | None = None  # IMS's UEFI OS list, once read
        self.rng = random.Random()
        self.job_progress_missing = False  # this region's gateway lacks ShowJobProgress

    @staticmethod
    def begin(
        time_left: Callable[[], float | None], wait_left: Callable[[], float | None], clock: Clock
    ) -> ImsCalls:
        """The calling invocation's view of this shared gateway: its limits apply to the
        calls made from this thread (and the threads it hands its context to), as
        instances may run several invocations at once, all through this one gateway."""
        calls = ImsCalls(time_left, wait_left, clock)
        _ims_calls.set(calls)
        return calls

    @requires(LIST_IMAGES)
    def get_image(self, image_id: str) -> dict[str, Any] | None:
        """The image as IMS returns it, or None when IMS does not know it."""
        _check_id(image_id)
        response = self._call(
            "read image", self.client.list_images, ListImagesRequest(id=image_id, limit=1)
        )
        return next((i for i in _images(_raw(response)) if i.get("id") == image_id), None)

    @requires(LIST_IMAGES)
    def find_images(self, name: str, created_after: str) -> list[dict[str, Any]]:
        """Private images with this exact name created after ``created_after`` (ISO, UTC)."""
        request = ListImagesRequest(
            name=name, imagetype="private", created_at=f"gt:{created_after}", limit=100
        )
        response = self._call("find images by name", self.client.list_images, request)
        return [i for i in _images(_raw(response)) if i.get("name") == name]

    @requires(LIST_IMAGES)
    def list_page(
        self, marker: str | None, page_size: int, created_at: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of active private images (after ``marker``, newest first), and whether
        more may follow. IMS documents no end-of-list field and may answer with fewer
        images than asked for, so a short page ends nothing: the list ends with an empty
        page, or when a ``page_info`` (which newer IMS may send) names no next marker."""
        request = ListImagesRequest(
            imagetype="private", status="active", limit=page_size, marker=marker
        )
        if created_at:  # an IMS filter expression such as "gt:2026-11-01T00:00:00Z"
            request.created_at = created_at
        data = _raw(self._call("list images", self.client.list_images, request), "list images")
        listed = data.get("images")
        if not isinstance(listed, list):
            raise ImsError(
                "permanent",
                "list images: the answer holds no list of images "
                f"({shorten(listed)}); the listing cannot go on",
            )
        images = [i for i in listed if isinstance(i, dict) and is_image_id(i.get("id"))]
        if len(images) != len(listed):
            raise ImsError(
                "permanent",
                f"list images: {len(listed) - len(images)} of "
                f"{len(listed)} entries are not images with an id; "
                "the listing cannot go on",
            )
        page_info = data.get("page_info")
        if isinstance(page_info, dict):
            return images, bool(page_info.get("next_marker")) and bool(images)
        return images, bool(images)

    @requires(LIST_OS_VERSIONS)
    def uefi_os_versions(self) -> list[str]:
        """The OS versions IMS lists as UEFI-capable in this region."""
        response = self._call(
            "list UEFI OS versions", self.client.list_os_versions, ListOsVersionsRequest(tag="uefi")
        )
        content = getattr(response, "raw_content", None)
        platforms = json.loads(content) if content else []
        versions = []
        for platform in platforms if isinstance(platforms, list) else []:
            entries = platform.get("version_list") if isinstance(platform, dict) else None
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and isinstance(entry.get("os_version"), str):
                    versions.append(entry["os_version"])
        return versions

    @requires(UPDATE_IMAGE, LIST_IMAGES)
    def update_image(self, image_id: str, operations: list[dict[str, str]]) -> dict[str, Any]:
        """Send all operations for one image in one PATCH; returns the updated image.

        A PATCH that fails transiently may still have been applied (a timeout after IMS
        took it): the image is read again, and the PATCH sent again only if it is not."""
        _check_id(image_id)  # ids come from answers too: never an unchecked one in a URL
        body = [
            UpdateImageRequestBody(op=o["op"], path=o["path"], value=o.get("value"))
            for o in operations
        ]  # a remove has no value (the SDK then sends none)
        request = UpdateImageRequest(image_id=image_id, body=body)
        attempt = 0
        while True:
            try:
                answer = _raw(self._call_once("update image", self.client.update_image, request))
                return self._kept(image_id, operations, answer)
            except ImsError as exc:
                if exc.kind != "transient":
                    raise
                failure = exc
            try:  # applied or not? Read; never repeat blindly.
                current = self.get_image(image_id)
            except ImsError:
                raise ImsError(
                    "transient",
                    f"{failure} - it may have been applied: the image could not be read to tell",
                ) from None
            if current is None:
                raise ImsError("gone", "update image: the image is gone")
            if applied(current, operations):
                return current
            self._wait_before_retry(failure, attempt)
            attempt += 1

    def _kept(
        self, image_id: str, operations: list[dict[str, str]], answer: dict[str, Any]
    ) -> dict[str, Any]:
        """The image after a PATCH IMS answered 200 to: its answer when that is the image,
        else the image read again; ImsError when IMS did not keep what was asked."""
        image = answer if answer.get("id") == image_id else self.get_image(image_id)
        if image is None:
            raise ImsError("gone", "update image: the image is gone")
        if not applied(image, operations):
            raise ImsError(
                "permanent",
                "update image: IMS answered 200 but did not keep the "
                f"change to {sorted(o['path'][1:] for o in operations)}",
            )
        return image

    @requires(SHOW_JOB_PROGRESS, SHOW_JOB)
    def get_job(self, job_id: str) -> dict[str, Any]:
        """An asynchronous IMS job, read with ShowJobProgress (the API IMS recommends); in a
        region whose gateway does not know that API, with the deprecated ShowJob."""
        if not self.job_progress_missing:
            try:
                return _raw(
                    self._call(
                        "read job",
                        self.client.show_job_progress,
                        ShowJobProgressRequest(job_id=job_id),
                    )
                )
            except ImsError as exc:
                if not _unknown_api(exc):
                    raise
                self.job_progress_missing = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            response = self._call("read job", self.client.show_job, ShowJobRequest(job_id=job_id))
        return _raw(response)

    def _call(self, what: str, method: Any, request: Any) -> Any:
        """One request, retried on transient failures (429, 5xx, connection, timeout)."""
        attempt = 0
        while True:
            try:
                return self._call_once(what, method, request)
            except ImsError as exc:
                self._wait_before_retry(exc, attempt)
            attempt += 1

    def _wait_before_retry(self, exc: ImsError, attempt: int) -> None:
        """Raise ``exc`` unless another try is due: transient, tries left, time left.
        Exponential backoff with full jitter, or IMS's Retry-After when it gives one."""
        if exc.kind != "transient" or attempt >= RETRIES:
            raise exc
        delay = exc.retry_after
        if delay is None:
            delay = self.rng.uniform(0, min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2**attempt))
        calls = _current_calls()
        left = calls.wait_left()
        if left is not None and delay > left:  # IMS asks for more time than there is
            raise exc
        calls.count_retry()
        calls.clock.sleep(delay)

    def _call_once(self, what: str, method: Any, request: Any) -> Any:
        self._fit_timeouts(what)
        try:
            return method(request)
        except ServiceResponseException as exc:
            raise _classify(what, exc) from None
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as exc:
            raise ImsError(
                "permanent", f"{what}: the endpoint is not usable ({type(exc).__name__})"
            ) from None
        except (
            SdkException,
            requests.RequestException,
            urllib3.exceptions.HTTPError,
            OSError,
        ) as exc:
            # Connection failures, and PATCH read timeouts, which escape the SDK unwrapped.
            raise ImsError("transient", f"{what}: {type(exc).__name__}") from None
        except UnreadableAnswer as exc:
            # The SDK's models choke on an odd response (e.g. min_ram "abc"): IMS's answer,
            # not a bug of ours
            raise ImsError("permanent", f"{what}: unreadable response ({exc.__cause__})") from exc

    def _fit_timeouts(self, what: str) -> None:
        """No call may outlive the invocation: the timeouts shrink to the time left, and
        the whole answer must arrive before the invocation's deadline."""
        left = _current_calls().time_left()
        if left is None:
            _call_limits.set(None)
            return
        if left < MIN_CALL_TIME_S:
            raise ImsError("out_of_time", f"{what}: not started, the invocation is about to end")
        connect = min(CONNECT_TIMEOUT_S, left / 3)
        _call_limits.set(
            (
                (connect, min(READ_TIMEOUT_S, left - connect - REPORT_TIME_S)),
                time.monotonic() + left - REPORT_TIME_S,
            )
        )


class ImsCalls:
    """One invocation's IMS calls: the time they may take (to the invocation's end), the
    time retries may wait (to the safety margin), the clock (tests: a fake one), and the
    retries they needed. The invocation holds it (``Invocation.ims_calls``); the gateway
    finds it through a ContextVar, as the gateway is shared."""

    def __init__(
        self,
        time_left: Callable[[], float | None] = lambda: None,
        wait_left: Callable[[], float | None] = lambda: None,
        clock: Clock | None = None,
    ):
        self.time_left = time_left
        self.wait_left = wait_left
        self.clock = clock or SystemClock()
        self.retries = 0
        self._lock = threading.Lock()  # sweep workers retry at once

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1


_ims_calls: ContextVar[ImsCalls | None] = ContextVar("imsguard_ims_calls", default=None)


def _current_calls() -> ImsCalls:
    """The calls of the invocation this thread works for; outside one (a script), no limits."""
    calls = _ims_calls.get()
    if calls is None:
        calls = ImsCalls()
        _ims_calls.set(calls)
    return calls


class UnreadableAnswer(Exception):
    """The SDK could not turn IMS's answer into its models; the cause says why."""


def _deserialising_or_unreadable(handler: Callable[..., Any]) -> Callable[..., Any]:
    """The SDK's answer handler, with its deserialisation errors (the models' setters
    raise ValueError, TypeError or AttributeError on an odd value) as UnreadableAnswer,
    so that only those, and not every ValueError of a call, count as an unreadable answer."""

    def handle(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except (ValueError, TypeError, AttributeError) as exc:
            raise UnreadableAnswer(str(exc)) from exc

    return handle


def call_timeouts() -> tuple[float, float] | None:
    """The (connect, read) timeouts of the call this thread is making (None: the client's)."""
    limits = _call_limits.get()
    return None if limits is None else limits[0]


class _DeadlineAdapter(HTTPAdapter):
    """Reads each answer against the call's deadline. A read timeout bounds one wait for
    bytes, not the whole answer: headers or a body trickling in a byte at a time would run
    on."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _DeadlineHttpPool,
            "https": _DeadlineHttpsPool,
        }

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        limits = _call_limits.get()
        if limits is None:
            return super().send(request, stream, timeout, verify, cert, proxies)
        timeouts, deadline = limits
        response = super().send(request, True, timeouts, verify, cert, proxies)
        if not stream:  # what requests would read, against the deadline
            response._content = _read_before(response, deadline)
            response._content_consumed = True  # type: ignore[attr-defined]
        return response


class _DeadlineConnection:
    """Waits for the status line and headers only until the call's deadline: then the
    socket is shut down, and the wait ends as a transient failure."""

    sock: Any

    def getresponse(self) -> Any:
        limits = _call_limits.get()
        if limits is None or self.sock is None:
            return super().getresponse()  # type: ignore[misc]
        watchdog = threading.Timer(max(0.0, limits[1] - time.monotonic()), _shut, (self.sock,))
        watchdog.daemon = True
        watchdog.start()
        try:
            return super().getresponse()  # type: ignore[misc]
        finally:
            watchdog.cancel()


def _shut(sock: Any) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _DeadlineHttpConnection(_DeadlineConnection, HTTPConnection):
    pass


class _DeadlineHttpsConnection(_DeadlineConnection, HTTPSConnection):
    pass


class _DeadlineHttpPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHttpConnection


class _DeadlineHttpsPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHttpsConnection


def _read_before(response: requests.Response, deadline: float) -> bytes:
    """The whole body, or a ReadTimeout once the deadline passes (the connection closed).
    urllib3's own errors become requests' ones, as requests' reading would make them."""
    chunks = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise requests.exceptions.ReadTimeout(
                    "the answer was still arriving at the invocation's deadline"
                )
            sock = getattr(getattr(response.raw, "connection", None), "sock", None)
            if sock is not None:  # no single wait for bytes may pass the deadline either
                sock.settimeout(min(left, sock.gettimeout() or left))
            chunk = response.raw.read1(BODY_CHUNK_BYTES, decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
    except urllib3.exceptions.ReadTimeoutError as exc:
        response.close()
        raise requests.exceptions.ReadTimeout(str(exc)) from None
    except urllib3.exceptions.DecodeError as exc:
        response.close()
        raise requests.exceptions.ContentDecodingError(str(exc)) from None
    except urllib3.exceptions.HTTPError as exc:  # the connection dropped mid-body
        response.close()
        raise requests.exceptions.ChunkedEncodingError(str(exc)) from None
    except Exception:
        response.close()
        raise
    response.raw.release_conn()
    return b"".join(chunks)


def _classify(what: str, exc: ServiceResponseException) -> ImsError:
    """IMS's "not found" (a 404 with an IMS code) means gone; throttling and server errors
    are transient whatever code they carry; IMS's 400 answers go by its error-code table
    (imsguard.ims_errors: IMG.0060 flow control is transient); anything else is permanent."""
    status = exc.status_code or 0
    code = exc.error_code
    kind: ErrorKind
    if status == 404 and str(code).startswith("IMG."):
        kind = "gone"  # a 404 from the API gateway (APIGW.*) is a wrong endpoint
    elif status == 429 or status >= 500:
        kind = "transient"
    else:
        kind = error_kind(code) or "permanent"
    return ImsError(
        kind,
        f"{what}: {exc.error_msg}",
        exc.status_code,
        code,
        exc.request_id,
        getattr(exc, "retry_after", None),
    )


def _check_id(image_id: Any) -> None:
    """Refuse an id that is not an image id before it builds a URL (``..`` would make
    ``PATCH /v2/cloudimages/..`` a request for another resource)."""
    if not is_image_id(image_id):
        raise ImsError("permanent", f"refused: {shorten(image_id)} is not an image id")


def _unknown_api(exc: ImsError) -> bool:
    """The API gateway does not know this API here (404 not from IMS itself)."""
    return exc.status == 404 and not str(exc.code).startswith("IMG.")


def applied(image: dict[str, Any], operations: list[dict[str, str]]) -> bool:
    """Whether the image already holds what these operations would give it."""
    for op in operations:
        key = op["path"][1:]
        if op["op"] == "remove":
            if key in image:
                return False
        elif not same_value(key, image.get(key), op["value"]):
            return False
    return True


class _RetryAfterHandler(DefaultExceptionHandler):  # type: ignore[misc]  # untyped SDK
    """The SDK's error handling, keeping the Retry-After header a 429 or 503 may carry."""

    def handle_exception(self, request: Any, response: Any) -> None:
        try:
            super().handle_exception(request, response)
        except ServiceResponseException as exc:
            exc.retry_after = _seconds(response.headers.get("Retry-After"))
            raise


def _seconds(value: Any) -> float | None:
    """Retry-After as seconds (a number; HTTP dates are not used by API gateways here)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _images(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The image objects of a list answer's body, skipping anything that is not one."""
    return [i for i in data.get("images") or [] if isinstance(i, dict)]


def _raw(response: Any, what: str = "IMS") -> dict[str, Any]:
    """The JSON body IMS sent, not the SDK's lossy model; ImsError when it is not JSON."""
    content = getattr(response, "raw_content", None)
    if not content:
        data: dict[str, Any] = response.to_dict()
        return data
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        raise ImsError("permanent", f"{what}: the answer is not JSON") from None
    return data if isinstance(data, dict) else {}


_client_cache: dict[tuple[Any, ...], ImsGateway] = {}


def gateway_for(
    region: str | None, endpoint: str | None, project_id: str, credentials: Credentials
) -> ImsGateway:
    """One client per container; a new one only when settings or credentials change.

    The gateway is shared by every invocation the instance runs at once, so it holds
    nothing of any one of them: their limits and retry counts live in ImsCalls. What it
    does keep is of the container: the UEFI OS list (set once, then never changed) and
    whether this region lacks ShowJobProgress (only ever set to True)."""
    key = (region, endpoint, project_id, credentials)
    gateway = _client_cache.get(key)
    if gateway is None:
        _client_cache.clear()
        config = HttpConfig.get_default_config()
        client = _build_client(region, endpoint, project_id, credentials, config)
        gateway = ImsGateway(client, project_id)
        _client_cache[key] = gateway
    return gateway


def _build_client(
    region: str | None,
    endpoint: str | None,
    project_id: str,
    credentials: Credentials,
    config: HttpConfig,
) -> ImsClient:
    # project_id is always passed: without it, build() would ask IAM over the network.
    basic = BasicCredentials(credentials.access_key, credentials.secret_key, project_id)
    if credentials.security_token:
        basic = basic.with_security_token(credentials.security_token)
    config.timeout = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
    config.retry_times = 0  # retries are ours to decide (the SDK's never cover PATCH anyway)
    builder = (
        ImsClient.new_builder()
        .with_credentials(basic)
        .with_http_config(config)
        .with_exception_handler(_RetryAfterHandler())
    )
    if endpoint:
        builder = builder.with_endpoints([endpoint])
    elif region:
        try:
            builder = builder.with_region(ImsRegion.value_of(region))
        except (KeyError, ValueError):
            message = f"IMSGUARD_REGION={region!r} is not a region the IMS SDK knows"
            raise ValueError(message) from None
    else:
        raise ValueError("no region: set IMSGUARD_REGION (or IMSGUARD_IMS_ENDPOINT)")
    client = builder.build()
    _keep_throttling_answers(client, config)
    client.sync_response_handler = _deserialising_or_unreadable(client.sync_response_handler)
    return client


def _keep_throttling_answers(client: ImsClient, config: HttpConfig) -> None:
    """With ``retry_times`` 0 the SDK retries nothing, yet its urllib3 ``Retry`` still turns
    a 429 to a GET into a RetryError, dropping IMS's answer and its Retry-After header. A
    Retry without a status list lets the 429 come back whole, to our own retries. (SDK
    internals of the pinned version; if they change, 429s just lose Retry-After.)"""
    session = getattr(getattr(client, "_http_client", None), "_session", None)
    if session is None:
        return
    adapter = _DeadlineAdapter(
        pool_connections=config.pool_connections,
        pool_maxsize=config.pool_maxsize,
        max_retries=Retry(total=0, raise_on_status=False),
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
