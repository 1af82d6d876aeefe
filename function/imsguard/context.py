"""A typed view of FunctionGraph's runtime context, and a local stand-in for it.

FunctionGraph passes an object with Java-style getters (``getUserData``,
``getSecurityAccessKey`` ...). The handler only relies on the methods in
:class:`RuntimeContext`, and reads each one defensively: outside FunctionGraph
(tests, ``imsguard invoke``) a :class:`LocalContext` plays the part.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # a Protocol class costs cold-start time, and only type checkers read it
    from collections.abc import Callable
    from typing import Protocol

    from imsguard.clock import Clock

    class RuntimeContext(Protocol):
        """The subset of FunctionGraph's context object that imsguard uses."""

        def getRequestID(self) -> str: ...
        def getRemainingTimeInMilliSeconds(self) -> int: ...
        def getUserData(self, key: str) -> str | None: ...
        def getSecurityAccessKey(self) -> str | None: ...
        def getSecuritySecretKey(self) -> str | None: ...
        def getSecurityToken(self) -> str | None: ...


class LocalContext:
    """A context for local runs: user data from a dict, no credentials unless given.

    It is also the one seam through which a local run injects what FunctionGraph never
    does: ``clock`` (tests: a fake one, so nothing really sleeps; None: the system's) and
    ``progress`` (the CLI's progress line during a sweep). The handler reads both from a
    LocalContext only, into the invocation it builds.

    (Plain classes rather than dataclasses in the function's modules: each dataclass
    costs about half a millisecond of cold start.)
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


def call_getter(context: Any, name: str, *args: Any) -> Any:
    """Call ``context.<name>(*args)``; None when the context lacks it or it fails.

    Real contexts differ between runtime versions (and a console test may pass
    ``None``), so a missing getter must never crash the handler.
    """
    getter = getattr(context, name, None)
    if not callable(getter):
        return None
    try:
        value = getter(*args)
    except Exception:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    security_token: str | None = None

    def __repr__(self) -> str:  # never print secrets, even by accident
        return "Credentials(<redacted>)"

    def __str__(self) -> str:
        return self.__repr__()


def read_credentials(context: Any) -> Credentials | None:
    """The function's temporary agency credentials, else the SDK's own variables."""
    ak = call_getter(context, "getSecurityAccessKey")
    sk = call_getter(context, "getSecuritySecretKey")
    if ak and sk:
        return Credentials(ak, sk, call_getter(context, "getSecurityToken"))
    ak = os.environ.get("HUAWEICLOUD_SDK_AK", "").strip()
    sk = os.environ.get("HUAWEICLOUD_SDK_SK", "").strip()
    if ak and sk:
        token = os.environ.get("HUAWEICLOUD_SDK_SECURITY_TOKEN", "").strip() or None
        return Credentials(ak, sk, token)
    return None
