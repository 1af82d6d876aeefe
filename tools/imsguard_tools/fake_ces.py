"""A fake of Cloud Eye's custom metric API, as far as imsguard calls it: CreateMetricData,
and ListMetrics (``imsguard doctor``'s read of the namespace).

It checks what the API reference and the SDK's models document for ``POST /V1.0/
{project_id}/metric-data``: a JSON list of data points, each with ``metric`` {namespace
``Service.Item`` (letters, digits, underscores, not ``SYS.*``), metric_name, dimensions: 1
to 4 {name, value}}, ``ttl`` 1 to 604800, ``collect_time`` in ms within [now - 3 days,
now + 10 minutes] of the fake's clock (``now_ms``, set by the test), a numeric ``value``
and a ``unit`` of at most 32 characters. ``GET /V1.0/{project_id}/metrics`` lists the
metrics those points made (Cloud Eye API reference, "Querying Metrics", ces_03_0023):
filtered by ``namespace`` and ``metric_name``, at most ``limit`` (1 to 1000, default 1000),
as ``{"metrics": [...], "meta_data": {"count", "marker", "total"}}``; a namespace with no
data yet lists none. Error codes and the error body's shape are assumptions (the shared
{"error": {"code", "message"}}), marked so.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from imsguard_tools.fake_http import ApiError, FakeHttpApi, try_json

_NAMESPACE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}\.[A-Za-z][A-Za-z0-9_]{0,31}")
_METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_DIMENSION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_DIMENSION_VALUE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}")
DAY_MS = 86_400_000


class FakeCes(FakeHttpApi):
    """In-memory Cloud Eye metric data; ``points`` holds every data point accepted."""

    messages: ClassVar[dict[str, str]] = {
        **FakeHttpApi.messages,
        "ces.0014": "Some content in message body is not correct.",  # assumption
        "ces.0403": "Forbidden: the user has no permission for this operation.",  # assumption
    }

    def __init__(self, project_id: str, region: str, now_ms: int | None = None) -> None:
        super().__init__(project_id, region)
        self.endpoint = f"https://ces.{region}.myhuaweicloud.com"
        self.now_ms = now_ms  # None: collect_time is not checked against a clock
        self.points: list[dict[str, Any]] = []
        self._routes += [
            ("POST", re.compile(r"/V1\.0/([^/]+)/metric-data"), self._create_metric_data),
            ("GET", re.compile(r"/V1\.0/([^/]+)/metrics"), self._list_metrics),
        ]

    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint,)

    @property
    def requests(self) -> list[Any]:
        return [c for c in self.calls if c.method == "POST"]

    def _create_metric_data(
        self, project_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        if project_id != self.project_id:
            raise ApiError(401, "APIGW.0301")
        data = try_json(body)
        if not isinstance(data, list) or not data:
            raise ApiError(400, "ces.0014", "The body must be a non-empty list of data points.")
        for point in data:
            self._check(point)
        self.points.extend(data)
        return 201, {}

    def _list_metrics(
        self, project_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        """The metrics the points accepted so far make, one per name and dimensions."""
        if project_id != self.project_id:
            raise ApiError(401, "APIGW.0301")
        namespace = query.get("namespace")
        if namespace is not None and not _NAMESPACE.fullmatch(namespace):
            raise ApiError(400, "ces.0014", f"namespace {namespace!r} is not Service.Item")
        limit = query.get("limit", "1000")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000:
            raise ApiError(400, "ces.0014", "limit must be 1 to 1000")
        found: dict[str, dict[str, Any]] = {}
        for point in self.points:
            metric = point["metric"]
            if namespace is not None and metric["namespace"] != namespace:
                continue
            if query.get("metric_name") not in (None, metric["metric_name"]):
                continue
            listed = {**metric, "unit": point.get("unit", "")}
            found.setdefault(json.dumps(metric, sort_keys=True), listed)
        metrics = list(found.values())
        page = metrics[: int(limit)]
        marker = ""
        if page:  # the documented start format: namespace.metric_name.key:value
            last, dimension = page[-1], page[-1]["dimensions"][0]
            marker = f"{last['namespace']}.{last['metric_name']}.{dimension['name']}:"
            marker += str(dimension["value"])
        meta = {"count": len(page), "marker": marker, "total": len(metrics)}
        return 200, {"metrics": page, "meta_data": meta}

    def _check(self, point: Any) -> None:
        def invalid(why: str) -> ApiError:
            return ApiError(400, "ces.0014", f"Some content in message body is not correct: {why}")

        if not isinstance(point, dict):
            raise invalid("a data point is not an object")
        metric = point.get("metric")
        if not isinstance(metric, dict):
            raise invalid("metric is required")
        namespace = metric.get("namespace")
        if (
            not isinstance(namespace, str)
            or not 3 <= len(namespace) <= 32
            or not _NAMESPACE.fullmatch(namespace)
            or namespace.upper().startswith("SYS.")
        ):
            raise invalid(f"namespace {namespace!r} is not Service.Item")
        name = metric.get("metric_name")
        if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
            raise invalid(f"metric_name {name!r}")
        dimensions = metric.get("dimensions")
        if not isinstance(dimensions, list) or not 1 <= len(dimensions) <= 4:
            raise invalid("dimensions: 1 to 4 are required")
        for dimension in dimensions:
            if (
                not isinstance(dimension, dict)
                or not _DIMENSION_NAME.fullmatch(str(dimension.get("name", "")))
                or not _DIMENSION_VALUE.fullmatch(str(dimension.get("value", "")))
            ):
                raise invalid(f"dimension {dimension!r}")
        ttl = point.get("ttl")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 604_800:
            raise invalid("ttl must be a whole number from 1 to 604800")
        collect = point.get("collect_time")
        if not isinstance(collect, int) or isinstance(collect, bool):
            raise invalid("collect_time must be a UNIX time in milliseconds")
        if self.now_ms is not None and not (
            self.now_ms - 3 * DAY_MS + 10_000 <= collect <= self.now_ms + 600_000 - 10_000
        ):
            raise invalid("collect_time is outside [now - 3 days, now + 10 minutes]")
        value = point.get("value")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise invalid("value must be a number")
        unit = point.get("unit")
        if unit is not None and (not isinstance(unit, str) or len(unit) > 32):
            raise invalid("unit is at most 32 characters")
        if point.get("type") not in (None, "int", "float"):
            raise invalid("type is int or float")
