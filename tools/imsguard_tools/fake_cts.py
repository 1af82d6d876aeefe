"""A fake of CTS's tracker list, as far as ``imsguard doctor`` reads it (ListTrackers).

It answers ``GET /v3/{project_id}/trackers`` as CTS's API reference documents it ("Querying a
Tracker", cts_api_0323, and its example, cts_api_0502): ``{"trackers": [...]}``, each tracker
with ``tracker_type`` system (management) or data, ``tracker_name`` ("system" for the
management tracker), ``status`` enabled, disabled or error (``detail`` saying why for error),
filtered by the optional ``tracker_name`` and ``tracker_type``. A fresh fake holds the
enabled system tracker of a region where CTS was enabled. Assumptions, marked so: a region
without a tracker lists none, and the error codes and body (``{"error_code", "error_msg"}``).
"""

from __future__ import annotations

import re
import uuid
from typing import Any, ClassVar

from imsguard_tools.fake_http import ApiError, FakeHttpApi

TRACKER_TYPES = ("system", "data")


class FakeCts(FakeHttpApi):
    """One region's trackers (``trackers``: as CTS lists them, mutable by tests)."""

    messages: ClassVar[dict[str, str]] = {
        **FakeHttpApi.messages,
        # assumption: codes of our own, in CTS's style
        "CTS.0001": "The request parameters are invalid.",
        "CTS.0403": "The operation is not allowed.",
    }

    def __init__(self, project_id: str, region: str, domain_id: str = "0" * 32) -> None:
        super().__init__(project_id, region)
        self.endpoint = f"https://cts.{region}.myhuaweicloud.com"
        self.domain_id = domain_id
        self.trackers: list[dict[str, Any]] = [self.tracker()]
        self._routes += [("GET", re.compile(r"/v3/([^/]+)/trackers"), self._list_trackers)]

    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint,)

    def error_body(self, code: str, message: str) -> Any:
        return {"error_code": code, "error_msg": message}

    def tracker(
        self, tracker_type: str = "system", status: str = "enabled", detail: str | None = None
    ) -> dict[str, Any]:
        """A tracker as CTS's example lists it (a data tracker named after its bucket)."""
        system = tracker_type == "system"
        tracker: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "create_time": 1_589_886_034_121,
            "tracker_type": tracker_type,
            "tracker_name": "system" if system else "data-tracker",
            "domain_id": self.domain_id,
            "project_id": self.project_id,
            "status": status,
            "is_support_validate": False,
            "is_support_trace_files_encryption": False,
            "obs_info": {
                "is_obs_created": False,
                "bucket_name": "",
                "is_authorized_bucket": False,
                "file_prefix_name": "",
                "bucket_lifecycle": 0,
            },
        }
        if system:
            tracker["lts"] = {
                "log_group_name": "CTS",
                "is_lts_enabled": True,
                "log_topic_name": "system-trace",
            }
        else:
            tracker["data_bucket"] = {"data_event": ["READ", "WRITE"], "data_bucket_name": "logs"}
        if detail is not None:
            tracker["detail"] = detail
        return tracker

    def _list_trackers(
        self, project_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        if project_id != self.project_id:
            raise ApiError(401, "APIGW.0301")
        kind = query.get("tracker_type")
        if kind is not None and kind not in TRACKER_TYPES:
            raise ApiError(400, "CTS.0001", f"tracker_type must be one of {TRACKER_TYPES}")
        name = query.get("tracker_name")
        listed = [
            t
            for t in self.trackers
            if (kind is None or t["tracker_type"] == kind)
            and (name is None or t["tracker_name"] == name)
        ]
        return 200, {"trackers": listed}
