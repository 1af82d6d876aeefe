"""A stand-in for FunctionGraph's runtime context, for local runs: tests and the CLI."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from imsguard.clock import Clock
from imsguard.context import LocalRun


class LocalContext(LocalRun):
    """A context for local runs: user data from a dict, no credentials unless given.

    It is also the one seam through which a local run injects what FunctionGraph never
    does: ``clock`` (tests: a fake one, so nothing really sleeps; None: the system's) and
    ``progress`` (the CLI's progress line during a sweep). The handler reads both from a
    LocalRun only, into the invocation it builds.
    """

    # The clock of a context made without one. The tests' autouse fixture sets a fake
    # clock here for the test's duration, so that contexts a test builds itself never
    # really sleep either.
    clock: Clock | None = None

    def __init__(
        self,
        user_data: dict[str, str] | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        security_token: str | None = None,
        timeout_ms: int = 30_000,
        request_id: str | None = None,
        clock: Clock | None = None,
        progress: Callable[[dict[str, int]], None] | None = None,
    ):
        self.user_data = dict(user_data or {})
        self.access_key = access_key
        self.secret_key = secret_key
        self.security_token = security_token
        self.timeout_ms = timeout_ms
        self.request_id = request_id or uuid.uuid4().hex
        if clock is not None:  # else the class's (tests set a fake clock there)
            self.clock = clock
        self.progress = progress
        self._started = time.monotonic()

    def __repr__(self) -> str:
        return f"LocalContext(user_data={self.user_data!r}, timeout_ms={self.timeout_ms})"

    def getRequestID(self) -> str:
        return self.request_id

    def getRemainingTimeInMilliSeconds(self) -> int:
        elapsed_ms = int((time.monotonic() - self._started) * 1000)
        return max(0, self.timeout_ms - elapsed_ms)

    def getUserData(self, key: str) -> str | None:
        return self.user_data.get(key)

    def getSecurityAccessKey(self) -> str | None:
        return self.access_key

    def getSecuritySecretKey(self) -> str | None:
        return self.secret_key

    def getSecurityToken(self) -> str | None:
        return self.security_token
