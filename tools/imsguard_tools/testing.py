"""What tests, ours and yours, import: the fake IMS (with FunctionGraph's API beside it),
the fake FunctionGraph alone, SMN, Cloud Eye and OBS (a loopback server), Organizations, STS
and IAM (org sweeps), the sample ids, and a
clock that never really waits."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from imsguard_tools.fake_ces import FakeCes
from imsguard_tools.fake_fgs import FakeFunctionGraph
from imsguard_tools.fake_http import FAULT_KINDS, FakeCall
from imsguard_tools.fake_ims import (
    COPY_IMAGE_ID,
    COPY_JOB_ID,
    DEFAULT_REGION,
    EXAMPLE_IMAGE_ID,
    EXAMPLE_JOB_ID,
    NATIVE_IMAGE_ID,
    SAMPLE_PROJECT_ID,
    FakeIms,
    sample_images,
)
from imsguard_tools.fake_obs import FakeObs
from imsguard_tools.fake_org import FakeAccount, FakeIam, FakeOrganizations, FakeSts
from imsguard_tools.fake_smn import FakeSmn

__all__ = [
    "COPY_IMAGE_ID",
    "COPY_JOB_ID",
    "DEFAULT_REGION",
    "EXAMPLE_IMAGE_ID",
    "EXAMPLE_JOB_ID",
    "FAULT_KINDS",
    "NATIVE_IMAGE_ID",
    "SAMPLE_PROJECT_ID",
    "FakeAccount",
    "FakeCall",
    "FakeCes",
    "FakeClock",
    "FakeFunctionGraph",
    "FakeIam",
    "FakeIms",
    "FakeObs",
    "FakeOrganizations",
    "FakeSmn",
    "FakeSts",
    "sample_images",
]


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
