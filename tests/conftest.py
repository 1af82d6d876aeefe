"""Shared fixtures: the fake IMS, a FunctionGraph-like context, clean settings, events."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import settings

from helpers import SECRETS
from imsguard import ims, policy
from imsguard.logs import log_to
from imsguard_tools.local_context import LocalContext
from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeClock, FakeIms

# In CI, property tests draw the same examples every run: a failure there is reproducible.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the region and project of the fake, and nothing else."""
    for key in (
        "IMSGUARD_POLICY",
        "IMSGUARD_DRY_RUN",
        "IMSGUARD_IMS_ENDPOINT",
        "IMSGUARD_PROJECT_ID",
        "IMSGUARD_LOG_LEVEL",
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("IMSGUARD_REGION", "ap-southeast-1")
    monkeypatch.setenv("RUNTIME_PROJECT_ID", SAMPLE_PROJECT_ID)
    ims._client_cache.clear()
    policy._cache.clear()
    log_to("stdout")  # the CLI tests send log lines to stderr


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Waiting for slow images happens on a fake clock: no test really sleeps."""
    fake_clock = FakeClock()
    # Every LocalContext made without a clock uses this one, including those a test
    # builds itself; a context given its own clock keeps it.
    monkeypatch.setattr(LocalContext, "clock", fake_clock)
    return fake_clock


@pytest.fixture
def fake() -> Any:
    with FakeIms.seeded() as ims_fake:
        yield ims_fake
    # A fault a test injected and no request met proves nothing: the test must say so.
    ims_fake.assert_injections_met()


@pytest.fixture
def context() -> LocalContext:
    """What FunctionGraph gives a function with an agency: temporary AK/SK and token."""
    ak, sk, token = SECRETS
    return LocalContext(access_key=ak, secret_key=sk, security_token=token)
