"""A stateful, in-memory fake of the Huawei Cloud IMS API for tests.

The fake speaks HTTP, so tests drive the real ``huaweicloudsdkims`` client
against it instead of mocking SDK objects: request building, signing, JSON
decoding and error parsing all run for real. It is wired in either through
``responses`` (``with fake:``) or through a loopback HTTP server
(``with fake.serve() as endpoint:``). Both transports call ``dispatch``.

Where the published API reference is silent, the behaviour chosen here is
marked "assumption" in a comment.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import hashlib
import itertools
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
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import requests
import responses

SAMPLE_PROJECT_ID = "0b1e494e2660441a957313163095fe5c"
EXAMPLE_IMAGE_ID = "33ad552d-1149-471c-8190-ff6776174a00"
EXAMPLE_JOB_ID = "ff8080814dbd65d7014dbe0d84db0013"  # the job that created the example image
COPY_IMAGE_ID = "4d7c3e1a-5b6f-4a80-9c2d-1e3f5a7b9c0d"  # tests/events/cts_copy_image*.json
COPY_JOB_ID = "ff8080814dbd65d7014dbe0d84db0077"
NATIVE_IMAGE_ID = "8b7e2d2f-3c1a-4f6e-9d0b-5a4c3b2a1f00"  # tests/events/cts_native_create_image
DEFAULT_REGION = "ap-southeast-1"

_SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
_SAMPLE_FILES = ("example-image.json", "images.json")
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

# Attributes the documented update API lists explicitly.
PATCHABLE_ATTRIBUTES = frozenset(
    {
        "name",
        "__description",
        "__support_kvm",
        "__support_xen",
        "__support_largememory",
        "__support_diskintensive",
        "__support_highperformance",
        "__support_xen_gpu_type",
        "__support_kvm_gpu_type",
        "__support_xen_hana",
        "__is_config_init",
        "enterprise_project_id",
        "min_ram",
        "max_ram",
        "hw_vif_multiqueue_enabled",
        "hw_firmware_type",
        "__support_kvm_infiniband",
        "__support_fc_inject",
        "__support_amd",
        "__support_kvm_hi1822_hisriov",
        "__support_kvm_hi1822_hivirtionet",
    }
)

# Attributes managed by the service; they can never be set as extension attributes.
SYSTEM_ATTRIBUTES = frozenset(
    {
        "id",
        "status",
        "owner",
        "visibility",
        "created_at",
        "updated_at",
        "deleted",
        "deleted_at",
        "active_at",
        "__imagetype",
        "__platform",
        "__os_type",
        "__os_version",
        "__os_bit",
        "virtual_env_type",
        "checksum",
        "size",
        "virtual_size",
        "min_disk",
        "self",
        "file",
        "schema",
        "disk_format",
        "container_format",
        "protected",
        "tags",
        "__image_source_type",
        "__originalimagename",
        "__backup_id",
        "__image_size",
        "__data_origin",
        "__isregistered",
        "__productcode",
    }
)

# Error messages as worded in the IMS error-code table.
_MESSAGES = {
    "IMG.0001": "The request message format is invalid.",
    "IMG.0002": "The image name contains more than 128 characters.",
    "IMG.0003": "The image name format is invalid.",
    "IMG.0004": "The description contains more than 1024 characters.",
    "IMG.0007": "The request body is empty.",
    "IMG.0027": "The image ID in the request does not exist.",
    "IMG.0028": "The image in the request is protected.",
    "IMG.0046": "The image is unavailable.",
    "IMG.0047": "This operation can be performed only by the image owner.",
    "IMG.0054": "The image description format is invalid.",
    "IMG.0055": "The memory or disk size is invalid.",
    "IMG.0060": "The number of tasks exceeds the flow control limit.",
    "IMG.0141": "The value of hw_firmware_type is not uefi or bios.",
    "IMG.0168": "Data disk images cannot be updated.",
    "APIGW.0101": "The API does not exist or has not been published",
    # FunctionGraph's trigger errors, as its API reference words them
    "FSS.1109": "Invalid timer trigger parameters.",
    "FSS.1305": "Invalid CTS trigger parameters.",
    "FSS.1307": "The trigger name already exists.",
    "FSS.1313": "The number of operation resources has reached the maximum allowed limit.",
    "FSS.1314": "The operation resource must be specified.",
    "FSS.1316": "The resource operation has already been selected.",
    "FSS.1317": "The trigger name is too long.",
    "FSS.1318": "Invalid trigger operation.",
    "FSS.1319": "Invalid trigger name.",
    "APIGW.0301": "Incorrect IAM authentication information: verify aksk signature fail",
}

_NAME_RE = re.compile(r"[A-Za-z0-9\-._ \u4e00-\u9fff]+")
_DIGITS_RE = re.compile(r"[0-9]+")
_LIST_FILTERS = (
    "id",
    "name",
    "status",
    "__imagetype",
    "__platform",
    "__os_type",
    "visibility",
    "virtual_env_type",
    "owner",
)
_TIME_OPERATORS: dict[str, Callable[[datetime, datetime], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class FakeCall:
    """One request that reached the fake, with the status it got."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    headers: dict[str, str]


class _ApiError(Exception):
    """Raised inside a handler to turn into an IMS-style error response."""

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
        self.message = message or _MESSAGES.get(code, code)
        self.headers = headers or {}


def _bad_request(code: str = "IMG.0001", message: str | None = None) -> _ApiError:
    return _ApiError(400, code, message)


def sample_images() -> list[dict]:
    """Fresh copies of the packaged sample images (the example image first)."""
    images: list[dict] = []
    for filename in _SAMPLE_FILES:
        data = json.loads((_SAMPLES_DIR / filename).read_text(encoding="utf-8"))
        images.extend(data if isinstance(data, list) else [data])
    return images


def _parse_time(value: str) -> datetime:
    """Parse an ISO 8601 UTC timestamp; Python 3.10 does not accept a trailing 'Z'."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _format_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _sort_key(image: Mapping[str, Any]) -> tuple[float, str]:
    """Newest first, then by id, so paging order is total and stable."""
    try:
        created = _parse_time(image["created_at"])
    except (KeyError, TypeError, ValueError):
        created = _EPOCH
    return (-created.timestamp(), str(image.get("id", "")))


def _tag_matches(wanted: str, tags: Any) -> bool:
    """Match "key=value" against tags stored as "key=value" or the old "key.value".

    assumption: a bare "key" matches that key with any value.
    """
    key, _, value = wanted.partition("=")
    for tag in tags or []:
        sep = "=" if "=" in tag else "."
        tag_key, _, tag_value = tag.partition(sep)
        if tag_key == key and ("=" not in wanted or tag_value == value):
            return True
    return False


def _time_filter(expression: str) -> Callable[[Any], bool]:
    """Build a predicate from "op:timestamp", e.g. "gt:2018-10-28T10:00:00Z"."""
    operator, _, stamp = expression.partition(":")
    if operator not in _TIME_OPERATORS:
        raise _bad_request()
    try:
        bound = _parse_time(stamp)
    except ValueError:
        raise _bad_request() from None
    compare = _TIME_OPERATORS[operator]

    def predicate(value: Any) -> bool:
        try:
            return compare(_parse_time(value), bound)
        except (TypeError, ValueError):
            return False

    return predicate


def _parse_limit(raw: str | None) -> int:
    if raw is None:
        return 500
    if not _DIGITS_RE.fullmatch(raw) or not 1 <= int(raw) <= 1000:
        raise _bad_request(message="limit must be an integer from 1 to 1000.")
    return int(raw)


def _validate_value(attr: str, value: str) -> Any:
    """Check a new attribute value and return it as it is stored."""
    if attr == "name":
        if len(value) > 128:
            raise _bad_request("IMG.0002")
        if not _NAME_RE.fullmatch(value) or value != value.strip(" "):
            raise _bad_request("IMG.0003")
    elif attr == "__description":
        if len(value) > 1024:
            raise _bad_request("IMG.0004")
        # assumption: line feeds are rejected along with the documented carriage return.
        if any(char in value for char in "\r\n<>"):
            raise _bad_request("IMG.0054")
    elif attr == "hw_firmware_type":
        if value not in ("bios", "uefi"):
            raise _bad_request("IMG.0141")
    elif attr == "hw_vif_multiqueue_enabled":
        # assumption: the flag only takes the two strings the API itself returns.
        if value not in ("true", "false"):
            raise _bad_request(message="hw_vif_multiqueue_enabled must be 'true' or 'false'.")
    elif attr in ("min_ram", "max_ram"):
        # assumption: max_ram is checked like min_ram but kept as a string (the SDK types it str).
        if not _DIGITS_RE.fullmatch(value):
            raise _bad_request("IMG.0055")
        return int(value) if attr == "min_ram" else value
    return value


def _is_patchable(attr: str) -> bool:
    """Documented attributes, or extension attributes that don't clash with system ones."""
    if attr in PATCHABLE_ATTRIBUTES:
        return True
    return bool(attr) and attr not in SYSTEM_ATTRIBUTES and attr == attr.lower()


def _apply_operation(image: dict, operation: Any) -> None:
    """Validate one JSON-patch operation against ``image`` and apply it in place."""
    if not isinstance(operation, dict):
        raise _bad_request()
    op, path = operation.get("op"), operation.get("path")
    if op not in ("add", "replace", "remove"):
        raise _bad_request(message=f"Unsupported op: {op!r}.")
    if not isinstance(path, str) or not path.startswith("/") or "/" in path[1:]:
        raise _bad_request(message=f"Invalid path: {path!r}.")
    attr = path[1:]
    if not _is_patchable(attr) or (op == "remove" and attr == "name"):
        raise _bad_request(message=f"The attribute {attr!r} cannot be updated.")
    if op in ("replace", "remove") and attr not in image:
        raise _bad_request(message=f"The attribute {attr!r} does not exist.")
    if op == "remove":
        # assumption: a value sent with remove is ignored, as JSON Patch does.
        del image[attr]
        return
    value = operation.get("value")
    if not isinstance(value, str):
        raise _bad_request(message="The value must be a string.")
    image[attr] = _validate_value(attr, value)


class FakeIms:
    """In-memory IMS: images, jobs and a log of every request it answered."""

    def __init__(
        self,
        project_id: str = SAMPLE_PROJECT_ID,
        region: str = DEFAULT_REGION,
        endpoint: str | None = None,
    ) -> None:
        self.project_id = project_id
        self.region = region
        self.endpoint = (endpoint or f"https://ims.{region}.myhuaweicloud.com").rstrip("/")
        self.images: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.calls: list[FakeCall] = []
        # assumption: a fake clock that ticks one second per use keeps timestamps
        # deterministic and makes every update visibly newer than what came before.
        self._clock = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._lock = threading.RLock()
        self._mock: responses.RequestsMock | None = None
        self._injected: list[tuple[str, Any]] = []
        self._chaos: tuple[float, random.Random, tuple[str, ...]] | None = None
        self.faults: Counter[str] = Counter()  # faults injected by inject_faults, by kind
        # Listing order, cached: rebuilt when images are added or removed.
        self._added = 0
        self._order_stamp: tuple[int, int] | None = None
        self._order: tuple[list[dict], list[tuple[float, str]]] = ([], [])
        self.page_info = False  # True: list answers carry page_info, as newer IMS may
        # Most images one list answer holds, whatever limit asked for (None: no cap); IMS
        # documents no maximum, so a short page never means the end of the list.
        self.max_page_size: int | None = None
        # False: this region's API gateway does not know ShowJobProgress (404 APIGW.0101).
        self.job_progress_api = True
        # Slow creation: reads seen, reads that still show work in progress, final status.
        self._image_progress: dict[str, list[Any]] = {}
        self._job_progress: dict[str, list[Any]] = {}
        # Called with (method, path) before each request, outside the lock: lets a test
        # hold requests back (e.g. a threading.Barrier to make two deliveries overlap).
        self.before_request: Callable[[str, str], None] | None = None
        # Served over HTTP (serve()): answers' bodies go out one byte per this many seconds
        # (the status line and headers too, with trickle_headers).
        self.trickle_seconds = 0.0
        self.trickle_headers = False
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]] = [
            ("GET", re.compile(r"/v2/cloudimages"), self._list_images),
            ("PATCH", re.compile(r"/v2/cloudimages/([^/]+)"), self._update_image),
            ("GET", re.compile(r"/v1/cloudimages/job/([^/]+)"), self._show_job_progress),
            ("GET", re.compile(r"/v1/([^/]+)/jobs/([^/]+)"), self._show_job),
            ("GET", re.compile(r"/v1/cloudimages/os_version"), self._list_os_versions),
            (
                "POST",
                re.compile(r"/v2/([^/]+)/fgs/functions/([^/]+)/invocations-async"),
                self._invoke_async,
            ),
            ("POST", re.compile(r"/v2/([^/]+)/fgs/functions"), self._fgs_create_function),
            ("GET", re.compile(r"/v2/([^/]+)/fgs/functions/([^/]+)/config"), self._fgs_config),
            (
                "PUT",
                re.compile(r"/v2/([^/]+)/fgs/functions/([^/]+)/config"),
                self._fgs_update_config,
            ),
            ("PUT", re.compile(r"/v2/([^/]+)/fgs/functions/([^/]+)/code"), self._fgs_update_code),
            ("GET", re.compile(r"/v2/([^/]+)/fgs/triggers/([^/]+)"), self._fgs_triggers),
            ("POST", re.compile(r"/v2/([^/]+)/fgs/triggers/([^/]+)"), self._fgs_create_trigger),
            (
                "PUT",
                re.compile(r"/v2/([^/]+)/fgs/triggers/([^/]+)/([^/]+)/([^/]+)"),
                self._fgs_update_trigger,
            ),
            (
                "DELETE",
                re.compile(r"/v2/([^/]+)/fgs/triggers/([^/]+)/([^/]+)/([^/]+)"),
                self._fgs_delete_trigger,
            ),
            (
                "GET",
                re.compile(r"/v2/([^/]+)/fgs/functions/([^/]+)/async-invoke-config"),
                self._fgs_async_config,
            ),
            (
                "PUT",
                re.compile(r"/v2/([^/]+)/fgs/functions/([^/]+)/async-invoke-config"),
                self._fgs_update_async_config,
            ),
        ]
        # FunctionGraph's function API, for deploy tests: functions by URN, their triggers
        # and asynchronous invocation settings.
        self.functions: dict[str, dict[str, Any]] = {}
        self.function_triggers: dict[str, list[dict[str, Any]]] = {}
        self.echo_user_event = False  # see _trigger_answer
        self.async_configs: dict[str, dict[str, Any]] = {}
        # FunctionGraph's asynchronous invocation API, served too: a sweep that runs out of
        # time invokes its own function through it.
        self.fgs_endpoint = f"https://functiongraph.{region}.myhuaweicloud.com"
        self.invocations: list[dict[str, Any]] = []
        # What GET /v1/cloudimages/os_version?tag=uefi lists (IMS's UEFI-capable OSs).
        # (os_bit is a number there, unlike an image's __os_bit.)
        self.uefi_os_versions: list[dict[str, Any]] = [
            {
                "platform": "Ubuntu",
                "os_version": "Ubuntu 22.04 server 64bit",
                "os_bit": 64,
                "os_type": "Linux",
                "os_version_key": "Ubuntu 22.04 64bit",
            },
            {
                "platform": "Ubuntu",
                "os_version": "Ubuntu 20.04 server 64bit",
                "os_bit": 64,
                "os_type": "Linux",
                "os_version_key": "Ubuntu 20.04 64bit",
            },
            {
                "platform": "Debian",
                "os_version": "Debian GNU/Linux 12.0.0 64bit",
                "os_bit": 64,
                "os_type": "Linux",
                "os_version_key": "Debian 12.0.0 64bit",
            },
        ]

    @classmethod
    def seeded(cls, project_id: str = SAMPLE_PROJECT_ID, region: str = DEFAULT_REGION) -> FakeIms:
        """A fake preloaded with the packaged sample images and the example's creation job."""
        fake = cls(project_id=project_id, region=region)
        for image in sample_images():
            fake.add_image(image)
        fake.add_job(EXAMPLE_JOB_ID, status="SUCCESS", image_id=EXAMPLE_IMAGE_ID)
        return fake

    @classmethod
    def with_sample_events(cls) -> FakeIms:
        """The seeded fake, plus what the sample events in tests/events/ point at: a copy
        still being made (and its job), an image found by its name, an image uploaded
        through the native API. ``imsguard invoke --fake`` runs every sample event on it."""
        fake = cls.seeded()
        fake.add_image({"id": COPY_IMAGE_ID, "name": "ims_test_copy"}, pending_reads=1)
        fake.add_job(
            COPY_JOB_ID, image_id=COPY_IMAGE_ID, job_type="imsCopyImageInRegionJob", pending_reads=1
        )
        fake.add_image({"name": "web_server_01"})
        fake.add_image({"id": NATIVE_IMAGE_ID, "name": "Native_Upload"}, pending_reads=1)
        return fake

    # -- state -------------------------------------------------------------

    def _tick(self) -> str:
        with self._lock:
            self._clock += timedelta(seconds=1)
            return _format_time(self._clock)

    def add_image(
        self, attrs: Mapping[str, Any], pending_reads: int = 0, final_status: str = "active"
    ) -> dict:
        """Store a copy of ``attrs``, completed with the defaults of a private Linux image.

        With ``pending_reads`` k > 0 the image is still being created: reads of it by id
        show ``queued`` (the first) then ``saving``; read k+1 shows ``final_status``
        (``active``, or ``killed`` for a failed upload), and so does the store from then on.
        """
        image = copy.deepcopy(dict(attrs))
        image_id = image.setdefault("id", str(uuid.uuid4()))
        now = self._tick()
        # Spellings and types as real IMS answers hold them (a recorded list response and
        # IMS's reference): yes/no flags as "True" as well as "true", a JSON boolean, min_ram
        # and min_disk as numbers beside max_ram as text.
        defaults = {
            "name": f"image-{image_id[:8]}",
            "status": "active",
            "owner": self.project_id,
            "__imagetype": "private",
            "visibility": "private",
            "created_at": now,
            "updated_at": now,
            "active_at": now,
            "min_ram": 0,
            "max_ram": "0",
            "min_disk": 40,
            "tags": [],
            "virtual_env_type": "FusionCompute",
            "__os_type": "Linux",
            "__platform": "Ubuntu",
            "__os_version": "Ubuntu 22.04 server 64bit",
            "__os_bit": "64",
            "__isregistered": "True",
            "__lazyloading": "True",
            "__support_kvm": "True",
            "__system_support_market": False,
            "protected": False,
            "disk_format": "zvhd2",
            "enterprise_project_id": "0",
            "container_format": "bare",
            "__image_source_type": "uds",
            "schema": "/v2/schemas/image",
            "self": f"/v2/images/{image_id}",
            "file": f"/v2/images/{image_id}/file",
            "checksum": "d41d8cd98f00b204e9800998ecf8427e",
            "size": 0,
            "virtual_size": 0,
            "__originalimagename": image_id,
            "__backup_id": "",
            "__productcode": "",
            "__image_size": "0",
            "__data_origin": None,
        }
        for key, value in defaults.items():
            image.setdefault(key, value)
        with self._lock:
            self.images[image_id] = image
            self._added += 1
            if pending_reads > 0:
                image["status"] = "queued"
                self._image_progress[image_id] = [0, pending_reads, final_status]
        return image

    def add_fleet(self, count: int, seed: int = 1, bad_ratio: float = 0.3) -> int:
        """``count`` more private Linux images, a share of them out of line with the default
        policy (a name to fix, UEFI or multi-queue off); returns how many. Deterministic."""
        rng = random.Random(seed)
        bad = 0
        for index in range(count):
            wrong = rng.random() < bad_ratio
            bad += wrong
            flaw = rng.randrange(3) if wrong else -1
            # multi-queue on or off in each spelling IMS uses; only "off" is out of line
            spellings = ("False", "false", False) if flaw == 2 else ("True", "true", True)
            self.add_image(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "name": f"Fleet_{index:06d}" if flaw == 0 else f"fleet-{index:06d}",
                    "__os_version": "Ubuntu 22.04 server 64bit",
                    "__platform": "Ubuntu",
                    "hw_firmware_type": "bios" if flaw == 1 else "uefi",
                    "hw_vif_multiqueue_enabled": spellings[index % 3],
                }
            )
        return bad

    def add_job(
        self,
        job_id: str,
        status: str = "SUCCESS",
        image_id: str | None = None,
        job_type: str = "imsCreateImageByInstance",
        fail_reason: str | None = None,
        pending_reads: int = 0,
    ) -> dict:
        """Store an asynchronous job as ``show_job`` reports it.

        With ``pending_reads`` k > 0 the job is still running: its first read shows
        ``INIT``, the next ones ``RUNNING`` (without the image id), read k+1 ``status``.
        """
        begin = self._tick()
        finished = status in ("SUCCESS", "FAIL")
        # As ShowJobProgress documents it: ISO times with milliseconds, "" for a job that
        # has not ended, null error_code and fail_reason when there is none.
        job = {
            "status": status,
            "job_id": job_id,
            "job_type": job_type,
            "begin_time": begin.replace("Z", ".000Z"),
            "end_time": self._tick().replace("Z", ".000Z") if finished else "",
            "error_code": None,
            "fail_reason": fail_reason,
            "entities": {},
        }
        if image_id is not None:
            job["entities"]["image_id"] = image_id
            if image_id in self.images:
                job["entities"]["image_name"] = self.images[image_id].get("name")
        with self._lock:
            self.jobs[job_id] = job
            if pending_reads > 0:
                self._job_progress[job_id] = [0, pending_reads, status]
        return job

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
            self._injected.append((method.upper(), _ApiError(status, code, message, headers)))

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
            "429": _ApiError(429, "APIGW.0308", "The throttling threshold has been reached"),
            "429-retry-after": _ApiError(
                429, "APIGW.0308", "The throttling threshold has been reached", {"Retry-After": "1"}
            ),
            "500": _ApiError(500, "IMG.0500", "Internal error"),
            "503": _ApiError(503, "APIGW.0203", "Service unavailable"),
            "img-0060": _ApiError(400, "IMG.0060"),
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
                injected = self._take_injected(method) or self._chaos_fault(method)
                if isinstance(injected, tuple) and isinstance(injected[0], BaseException):
                    exception, after = injected  # a transport failure: recorded as status 0
                    if after:
                        self._route(method, parts.path, query, headers, text)
                    self.calls.append(
                        FakeCall(method, parts.path, query, _try_json(text), 0, dict(headers))
                    )
                    raise exception
                if isinstance(injected, tuple):
                    status, payload = injected
                elif isinstance(injected, _ApiError):
                    raise injected
                else:
                    status, payload = self._route(method, parts.path, query, headers, text)
            except _ApiError as error:
                status = error.status
                payload = {"error": {"code": error.code, "message": error.message}}
                extra_headers = error.headers
            self.calls.append(
                FakeCall(method, parts.path, query, _try_json(text), status, dict(headers))
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
        raise _ApiError(404, "APIGW.0101")

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
            raise _ApiError(401, "APIGW.0301")

    # -- handlers -------------------------------------------------------------

    def _visible(self, image: Mapping[str, Any]) -> bool:
        """Own images plus public ones; other projects' private images stay hidden."""
        return (
            image.get("owner") == self.project_id
            or image.get("__imagetype") in ("gold", "market")
            or image.get("visibility") == "public"
        )

    def _list_images(self, *, query: dict[str, str], body: str | None) -> tuple[int, Any]:
        limit = _parse_limit(query.get("limit"))
        if self.max_page_size is not None:
            limit = min(limit, self.max_page_size)
        if query.get("id") in self._image_progress:
            self._advance_image(query["id"])
        if "id" in query:  # the common read of one image: no need to sort the store
            image = self.images.get(query["id"])
            order = [image] if image is not None and self._visible(image) else []
            start = 0
        else:
            order, keys = self._sorted_visible()
            start = 0
            marker = query.get("marker")
            if marker is not None:
                marker_image = self.images.get(marker)
                # assumption: an unknown or hidden marker is a bad request, as in Glance.
                if marker_image is None or not self._visible(marker_image):
                    raise _bad_request(message=f"Invalid marker: {marker!r}.")
                start = bisect.bisect_right(keys, _sort_key(marker_image))
        page: list[dict] = []
        more = False
        for image in itertools.islice(order, start, None):
            if self._matches(image, query):
                if len(page) == limit:
                    more = True
                    break
                page.append(image)
        # Serialized at once by dispatch, under the lock: no copy needed.
        payload: dict[str, Any] = {"images": page}
        if self.page_info:  # assumption: newer IMS answers carry page_info (the SDK models it)
            payload["page_info"] = {"next_marker": page[-1]["id"]} if more else {}
        return 200, payload

    def _sorted_visible(self) -> tuple[list[dict], list[tuple[float, str]]]:
        """Visible images newest first, and their sort keys; rebuilt when images come or go."""
        stamp = (len(self.images), self._added)
        if self._order_stamp != stamp:
            visible = sorted(
                ((_sort_key(img), img) for img in self.images.values() if self._visible(img)),
                key=lambda pair: pair[0],
            )
            self._order = ([img for _, img in visible], [key for key, _ in visible])
            self._order_stamp = stamp
        return self._order

    @staticmethod
    def _matches(image: Mapping[str, Any], query: dict[str, str]) -> bool:
        for key in _LIST_FILTERS:
            if key in query and image.get(key) != query[key]:
                return False
        if "created_at" in query and not _time_filter(query["created_at"])(image.get("created_at")):
            return False
        return "tag" not in query or _tag_matches(query["tag"], image.get("tags"))

    def _update_image(
        self, image_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        image = self.images.get(image_id)
        # IMS's error table answers a missing image with HTTP 400 and IMG.0027.
        if image is None or not self._visible(image):
            raise _bad_request("IMG.0027")
        if image.get("owner") != self.project_id:
            raise _bad_request("IMG.0047")
        # assumption: a non-active image gets IMG.0046 ("The image is unavailable").
        if image.get("status") != "active":
            raise _bad_request("IMG.0046")
        if image.get("protected") is True:
            raise _bad_request("IMG.0028")
        if image.get("virtual_env_type") == "DataImage":
            raise _bad_request("IMG.0168")
        operations = _parse_patch_body(body)
        # Apply to a copy so that one bad operation leaves the image untouched.
        updated = copy.deepcopy(image)
        for operation in operations:
            _apply_operation(updated, operation)
        updated["updated_at"] = self._tick()
        image.clear()
        image.update(updated)
        return 200, copy.deepcopy(image)

    def _show_job(
        self, project_id: str, job_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        """ShowJob (deprecated): the job under the project."""
        # assumption: a foreign project in the path fails authentication like a bad header.
        if project_id != self.project_id:
            raise _ApiError(401, "APIGW.0301")
        return self._job(job_id)

    def _show_job_progress(
        self, job_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        """ShowJobProgress, the job API IMS recommends (no project in the path)."""
        if not self.job_progress_api:
            raise _ApiError(404, "APIGW.0101")
        return self._job(job_id)

    def _job(self, job_id: str) -> tuple[int, Any]:
        job = self.jobs.get(job_id)
        # assumption: an unknown job is a 404 with a generic IMS error code.
        if job is None:
            raise _ApiError(404, "IMG.0001", f"The job {job_id} does not exist.")
        progress = self._job_progress.get(job_id)
        if progress is None:
            return 200, copy.deepcopy(job)
        progress[0] += 1
        reads, pending, final_status = progress
        if reads > pending:
            del self._job_progress[job_id]
            job.update(status=final_status, end_time=self._tick().replace("Z", ".000Z"))
            return 200, copy.deepcopy(job)
        running = copy.deepcopy(job)
        running.update(status="INIT" if reads == 1 else "RUNNING", end_time="")
        # ShowJobProgress's example shows the progress, the task, and the image's name and id
        running["entities"].update(
            process_percent=round(reads / (pending + 1), 2), current_task="CreateImageTask:"
        )
        return 200, running

    def _invoke_async(
        self, project_id: str, function_urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        """FunctionGraph: record the invocation; 202 with a request id."""
        if project_id != self.project_id:
            raise _ApiError(401, "APIGW.0301")
        payload = _try_json(body)
        if not isinstance(payload, dict):
            raise _ApiError(400, "FSS.0400", "The request body must be a JSON object.")
        self.invocations.append({"function_urn": function_urn, "body": payload})
        return 202, {"request_id": uuid.uuid4().hex}

    # -- FunctionGraph (deploy) ------------------------------------------------------------

    def _fgs_function(self, project_id: str, urn: str) -> dict[str, Any]:
        if project_id != self.project_id:
            raise _ApiError(401, "APIGW.0301")
        function = self.functions.get(urn)
        if function is None:
            raise _ApiError(404, "FSS.1051", "Not found the function")
        return function

    def _fgs_body(self, body: str | None) -> dict[str, Any]:
        data = _try_json(body)
        if not isinstance(data, dict):
            raise _ApiError(400, "FSS.0400", "The request body must be a JSON object.")
        return data

    def _fgs_create_function(
        self, project_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        if project_id != self.project_id:
            raise _ApiError(401, "APIGW.0301")
        data = self._fgs_body(body)
        urn = (
            f"urn:fss:{self.region}:{project_id}:function:{data.get('package', 'default')}"
            f":{data.get('func_name')}:latest"
        )
        if urn in self.functions:
            raise _ApiError(409, "FSS.1061", "The function already exists")
        _require_code_filename(data)
        config = _stored_config({k: v for k, v in data.items() if k != "func_code"})
        config.update(func_urn=urn, digest=_digest(data.get("func_code")))
        self.functions[urn] = config
        self.function_triggers[urn] = []
        return 200, config

    def _fgs_config(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        return 200, self._fgs_function(project_id, urn)

    def _fgs_update_config(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        function = self._fgs_function(project_id, urn)
        function.update(_stored_config(self._fgs_body(body)))
        return 200, function

    def _fgs_update_code(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        function = self._fgs_function(project_id, urn)
        data = self._fgs_body(body)
        _require_code_filename(data)
        function["digest"] = _digest(data.get("func_code"))
        return 200, {"func_urn": urn, "digest": function["digest"]}

    def _fgs_triggers(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._fgs_function(project_id, urn)
        return 200, [self._trigger_answer(t) for t in self.function_triggers[urn]]

    def _trigger_answer(self, trigger: dict[str, Any]) -> dict[str, Any]:
        """A trigger as FunctionGraph's answers show one: every documented TIMER example
        returns event_data without user_event (``echo_user_event`` sends it back anyway,
        as the SDK's response model would allow)."""
        answer = copy.deepcopy(trigger)
        if answer.get("trigger_type_code") == "TIMER" and not self.echo_user_event:
            answer["event_data"].pop("user_event", None)
        return answer

    def _fgs_create_trigger(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._fgs_function(project_id, urn)
        data = self._fgs_body(body)
        _check_trigger(data)
        name = (data.get("event_data") or {}).get("name")
        if any(
            t["trigger_type_code"] == data.get("trigger_type_code")
            and t["event_data"].get("name") == name
            for t in self.function_triggers[urn]
        ):
            raise _ApiError(400, "FSS.1307")
        now = self._tick().replace("T", " ").removesuffix("Z")  # "2022-11-09 16:37:24"
        trigger = {
            "trigger_id": uuid.uuid4().hex,
            **data,
            "last_updated_time": now,
            "created_time": now,
        }
        self.function_triggers[urn].append(trigger)
        return 201, self._trigger_answer(trigger)  # 201, as the current API reference shows

    def _fgs_trigger(
        self, project_id: str, urn: str, type_code: str, trigger_id: str
    ) -> dict[str, Any]:
        self._fgs_function(project_id, urn)
        for trigger in self.function_triggers[urn]:
            if trigger["trigger_id"] == trigger_id and trigger["trigger_type_code"] == type_code:
                return trigger
        raise _ApiError(404, "FSS.1053", "Not found the trigger")

    def _fgs_update_trigger(
        self,
        project_id: str,
        urn: str,
        type_code: str,
        trigger_id: str,
        *,
        query: dict[str, str],
        body: str | None,
    ) -> tuple[int, Any]:
        trigger = self._fgs_trigger(project_id, urn, type_code, trigger_id)
        data = self._fgs_body(body)
        # Like the real API (as the SDK models it): the status changes, event data does not.
        trigger["trigger_status"] = data.get("trigger_status", trigger["trigger_status"])
        return 200, trigger

    def _fgs_delete_trigger(
        self,
        project_id: str,
        urn: str,
        type_code: str,
        trigger_id: str,
        *,
        query: dict[str, str],
        body: str | None,
    ) -> tuple[int, Any]:
        trigger = self._fgs_trigger(project_id, urn, type_code, trigger_id)
        self.function_triggers[urn].remove(trigger)
        return 204, {}

    def _fgs_async_config(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._fgs_function(project_id, urn)
        if urn not in self.async_configs:
            raise _ApiError(404, "FSS.1051", "No asynchronous invocation settings")
        return 200, self.async_configs[urn]

    def _fgs_update_async_config(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._fgs_function(project_id, urn)
        self.async_configs[urn] = {"func_urn": urn, **self._fgs_body(body)}
        return 200, self.async_configs[urn]

    def _list_os_versions(self, *, query: dict[str, str], body: str | None) -> tuple[int, Any]:
        """OS versions grouped by platform; only the uefi tag is modelled (assumption)."""
        if query.get("tag") not in (None, "uefi"):
            return 200, []
        platforms: dict[str, list[dict[str, str]]] = {}
        for entry in self.uefi_os_versions:
            platforms.setdefault(entry["platform"], []).append(dict(entry))
        return 200, [{"platform": p, "version_list": v} for p, v in platforms.items()]

    def _advance_image(self, image_id: str) -> None:
        """One read of an image still being created moves it one step on."""
        progress = self._image_progress[image_id]
        progress[0] += 1
        reads, pending, final_status = progress
        image = self.images.get(image_id)
        if image is None:  # a test deleted it while it was being created
            del self._image_progress[image_id]
        elif reads > pending:
            del self._image_progress[image_id]
            image.update(status=final_status, updated_at=self._tick())
        else:
            image["status"] = "queued" if reads == 1 else "saving"

    # -- transports ------------------------------------------------------------

    def start(self) -> None:
        """Route every request for ``endpoint`` to the fake; other URLs fail to connect."""
        if self._mock is not None:
            return
        mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        for endpoint in (self.endpoint, self.fgs_endpoint):
            url = re.compile(re.escape(endpoint) + r"(?:[/?#].*)?")
            for method in _HTTP_METHODS:
                mock.add_callback(method, url, callback=self._responses_callback)
        mock.start()
        self._mock = mock

    def stop(self) -> None:
        if self._mock is None:
            return
        self._mock.stop()
        self._mock.reset()
        self._mock = None

    def __enter__(self) -> FakeIms:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _responses_callback(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        return self.dispatch(request.method, request.url, request.headers, request.body)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the fake over real HTTP on a free loopback port; yields its base URL.

        Use it without ``start()``: while ``responses`` is active it would intercept
        the loopback calls too.
        """
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        # A short poll interval keeps shutdown fast (the default waits up to half a second).
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-ims",
            daemon=True,
        )
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def _stored_config(config: dict[str, Any]) -> dict[str, Any]:
    """User data kept as data, not as the text sent (spacing and key order may change)."""
    if isinstance(config.get("user_data"), str):
        with contextlib.suppress(ValueError):  # not JSON: kept as sent
            config["user_data"] = json.dumps(json.loads(config["user_data"]), indent=1)
    return config


# FunctionGraph's trigger rules (its CTS and TIMER event maps) and the error codes its API
# reference gives for them: CTS names take letters (Chinese too), digits and underscores;
# timer names start with a letter; a timer's user_event stays under 2 KB; operations are
# <service>:<resource type>[;<type>]:<trace name>[;<name>], at most 100.
_TRIGGER_NAME = {
    "CTS": re.compile(r"[A-Za-z0-9_\u4e00-\u9fa5]+"),
    "TIMER": re.compile(r"[A-Za-z][A-Za-z0-9_-]*"),
}
_CTS_OPERATION = re.compile(r"[A-Za-z]+:[A-Za-z]+(;[A-Za-z]+)*:[A-Za-z]+(;[A-Za-z]+)*")


def _check_trigger(data: dict[str, Any]) -> None:
    event_data = data.get("event_data")
    kind = data.get("trigger_type_code")
    if not isinstance(event_data, dict):
        raise _ApiError(400, "FSS.1305" if kind == "CTS" else "FSS.1109")
    name = event_data.get("name")
    if kind == "TIMER" and (
        not isinstance(name, str) or len(name) > 64 or not _TRIGGER_NAME[kind].fullmatch(name)
    ):
        raise _ApiError(400, "FSS.1109")  # the timer's own error: invalid parameters
    if kind == "CTS":
        if not isinstance(name, str) or not _TRIGGER_NAME[kind].fullmatch(name):
            raise _ApiError(502, "FSS.1319")  # documented with HTTP 502
        if len(name) > 64:
            raise _ApiError(400, "FSS.1317")
        operations = event_data.get("operations")
        if not isinstance(operations, list) or not operations:
            raise _ApiError(400, "FSS.1314")
        if len(operations) > 100:
            raise _ApiError(400, "FSS.1313")
        if not all(isinstance(o, str) and _CTS_OPERATION.fullmatch(o) for o in operations):
            raise _ApiError(400, "FSS.1318")
        if len(set(operations)) != len(operations):
            raise _ApiError(400, "FSS.1316")
        if data.get("trigger_status") == "DISABLED":  # assumption: only some types disable
            raise _ApiError(400, "FSS.1305")
    elif kind == "TIMER" and len(str(event_data.get("user_event", "")).encode()) >= 2048:
        raise _ApiError(400, "FSS.1109")


def _require_code_filename(data: dict[str, Any]) -> None:
    """The SDK documents code_filename as required for ZIP code."""
    if data.get("code_type") == "zip" and not data.get("code_filename"):
        raise _ApiError(400, "FSS.0400", "code_filename is required when code_type is zip")


def _digest(func_code: Any) -> str | None:
    """FunctionGraph's code digest: SHA-512 of the ZIP (assumption, as the deploy uses)."""
    if not isinstance(func_code, dict) or not isinstance(func_code.get("file"), str):
        return None
    return hashlib.sha512(base64.b64decode(func_code["file"])).hexdigest()


def _try_json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _parse_patch_body(body: str | None) -> list:
    """The update body must be a non-empty JSON array."""
    if not body or not body.strip():
        raise _bad_request("IMG.0007")
    try:
        operations = json.loads(body)
    except ValueError:
        raise _bad_request() from None
    if not isinstance(operations, list):
        raise _bad_request()
    if not operations:
        raise _bad_request("IMG.0007")
    return operations


def _handler_for(fake: FakeIms) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``fake``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so a benchmark measures the fake
        # Headers and body go out in two writes: without TCP_NODELAY the second waits
        # ~40 ms for the client's delayed ACK, which a benchmark would count as our time.
        disable_nagle_algorithm = True

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            host, port = self.server.server_address[:2]
            url = f"http://{host}:{port}{self.path}"
            status, headers, payload = fake.dispatch(self.command, url, dict(self.headers), body)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            if self.command == "HEAD":
                payload = b""
            if fake.trickle_headers:  # the status line and headers too, byte by byte
                self._headers_buffer.append(b"\r\n")
                head, self._headers_buffer = b"".join(self._headers_buffer), []
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


class FakeClock:
    """Time for tests: ``sleep`` advances it at once, so nothing really waits.

    ``utcnow`` starts half an hour after the fake IMS's own clock, so images the fake
    creates count as "created in the last hour".
    """

    def __init__(self, start: datetime = datetime(2026, 1, 1, 0, 30, tzinfo=timezone.utc)):
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()  # sweeps sleep from several threads

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.elapsed += max(0.0, seconds)

    def utcnow(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)
