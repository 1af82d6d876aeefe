"""A stateful, in-memory fake of the Huawei Cloud IMS API for tests.

Images, jobs and the UEFI OS list, answered as IMS's API reference and recorded real
answers show them (tests/test_recorded.py keeps it honest). FunctionGraph's API is served
beside it (fake_fgs.py): a sweep that runs out of time invokes its own function.

Where the published API reference is silent, the behaviour chosen here is
marked "assumption" in a comment.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import json
import random
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from imsguard.attributes import PATCHABLE, SYSTEM_ATTRIBUTES, TABLE, stored_value
from imsguard_tools.fake_fgs import FakeFunctionGraph
from imsguard_tools.fake_http import ApiError

SAMPLE_PROJECT_ID = "0b1e494e2660441a957313163095fe5c"
EXAMPLE_IMAGE_ID = "33ad552d-1149-471c-8190-ff6776174a00"
EXAMPLE_JOB_ID = "ff8080814dbd65d7014dbe0d84db0013"  # the job that created the example image
COPY_IMAGE_ID = "4d7c3e1a-5b6f-4a80-9c2d-1e3f5a7b9c0d"  # tests/events/cts_copy_image*.json
COPY_JOB_ID = "ff8080814dbd65d7014dbe0d84db0077"
NATIVE_IMAGE_ID = "8b7e2d2f-3c1a-4f6e-9d0b-5a4c3b2a1f00"  # tests/events/cts_native_create_image
DEFAULT_REGION = "ap-southeast-1"

_SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
_SAMPLE_FILES = ("example-image.json", "images.json")

# The error codes IMS documents for refused values (others: IMG.0001 with the reason).
_VALUE_ERRORS = {"hw_firmware_type": "IMG.0141"}
_YES_NO = ("true", "false")  # in any case: IMS returns "True" and "true" alike

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


def _bad_request(code: str = "IMG.0001", message: str | None = None) -> ApiError:
    return ApiError(400, code, message)


def sample_images() -> list[dict[str, Any]]:
    """Fresh copies of the packaged sample images (the example image first)."""
    images: list[dict[str, Any]] = []
    for filename in _SAMPLE_FILES:
        data = json.loads((_SAMPLES_DIR / filename).read_text(encoding="utf-8"))
        images.extend(data if isinstance(data, list) else [data])
    return images


def _parse_time(value: str) -> datetime:
    """Parse an ISO 8601 UTC timestamp; Python 3.10 does not accept a trailing 'Z'."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


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
    """Check a new attribute value as IMS's API reference says IMS does, and return it as
    IMS stores it. Which attributes exist, their types and listed values come from
    imsguard's attribute table; the checks and the error codes are IMS's, not the stricter
    ones imsguard applies to a policy (IMS stores "True" as well as "true")."""
    row = TABLE.get(attr)
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
    elif row is None:
        return value  # an extension attribute: any text
    elif row.type == "whole_number":
        # assumption: max_ram is checked like min_ram (IMG.0055), and kept as text.
        if not _DIGITS_RE.fullmatch(value):
            raise _bad_request("IMG.0055")
    elif row.values and value not in row.values:
        raise _bad_request(_VALUE_ERRORS.get(attr, "IMG.0001"))
    elif row.type == "boolean" and value.lower() not in _YES_NO:
        # assumption: a yes/no flag takes the spellings IMS itself returns, in any case
        # (the __lazyloading reference lists true, false, True and False).
        raise _bad_request(message=f"{attr} must be 'true' or 'false'.")
    return stored_value(attr, value)


def _is_patchable(attr: str) -> bool:
    """Documented attributes, or extension attributes that don't clash with system ones."""
    if attr in PATCHABLE:
        return True
    return bool(attr) and attr not in SYSTEM_ATTRIBUTES and attr == attr.lower()


def _apply_operation(image: dict[str, Any], operation: Any) -> None:
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


def _parse_patch_body(body: str | None) -> list[Any]:
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


class FakeIms(FakeFunctionGraph):
    """In-memory IMS: images, jobs and a log of every request it answered (with
    FunctionGraph's API beside it, on its own endpoint)."""

    messages: ClassVar[dict[str, str]] = {
        **FakeFunctionGraph.messages,
        # as worded in the IMS error-code table
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
    }

    def __init__(
        self,
        project_id: str = SAMPLE_PROJECT_ID,
        region: str = DEFAULT_REGION,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(project_id, region)
        self.endpoint = (endpoint or f"https://ims.{region}.myhuaweicloud.com").rstrip("/")
        self.images: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        # Listing order, cached: rebuilt when images are added or removed.
        self._added = 0
        self._order_stamp: tuple[int, int] | None = None
        self._order: tuple[list[dict[str, Any]], list[tuple[float, str]]] = ([], [])
        self.page_info = False  # True: list answers carry page_info, as newer IMS may
        # Most images one list answer holds, whatever limit asked for (None: no cap); IMS
        # documents no maximum, so a short page never means the end of the list.
        self.max_page_size: int | None = None
        # False: this region's API gateway does not know ShowJobProgress (404 APIGW.0101).
        self.job_progress_api = True
        # Slow creation: reads seen, reads that still show work in progress, final status.
        self._image_progress: dict[str, list[Any]] = {}
        self._job_progress: dict[str, list[Any]] = {}
        self._routes += [
            ("GET", re.compile(r"/v2/cloudimages"), self._list_images),
            ("PATCH", re.compile(r"/v2/cloudimages/([^/]+)"), self._update_image),
            ("GET", re.compile(r"/v1/cloudimages/job/([^/]+)"), self._show_job_progress),
            ("GET", re.compile(r"/v1/([^/]+)/jobs/([^/]+)"), self._show_job),
            ("GET", re.compile(r"/v1/cloudimages/os_version"), self._list_os_versions),
        ]
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

    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint, *super().endpoints())

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

    def add_image(
        self, attrs: Mapping[str, Any], pending_reads: int = 0, final_status: str = "active"
    ) -> dict[str, Any]:
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
    ) -> dict[str, Any]:
        """Store an asynchronous job as ``show_job`` reports it.

        With ``pending_reads`` k > 0 the job is still running: its first read shows
        ``INIT``, the next ones ``RUNNING`` (without the image id), read k+1 ``status``.
        """
        begin = self._tick()
        finished = status in ("SUCCESS", "FAIL")
        # As ShowJobProgress documents it: ISO times with milliseconds, "" for a job that
        # has not ended, null error_code and fail_reason when there is none.
        job: dict[str, Any] = {
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
        page: list[dict[str, Any]] = []
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

    def _sorted_visible(self) -> tuple[list[dict[str, Any]], list[tuple[float, str]]]:
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
            raise ApiError(401, "APIGW.0301")
        return self._job(job_id)

    def _show_job_progress(
        self, job_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        """ShowJobProgress, the job API IMS recommends (no project in the path)."""
        if not self.job_progress_api:
            raise ApiError(404, "APIGW.0101")
        return self._job(job_id)

    def _job(self, job_id: str) -> tuple[int, Any]:
        job = self.jobs.get(job_id)
        # assumption: an unknown job is a 404 with a generic IMS error code.
        if job is None:
            raise ApiError(404, "IMG.0001", f"The job {job_id} does not exist.")
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
