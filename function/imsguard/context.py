"""A typed view of FunctionGraph's runtime context.

FunctionGraph passes an object with Java-style getters (``getUserData``,
``getSecurityAccessKey`` ...). The handler only relies on the methods in
:class:`RuntimeContext`, and reads each one defensively: outside FunctionGraph
(tests, ``imsguard invoke``) the tools' LocalContext, a :class:`LocalRun`, plays the part.
"""

from __future__ import annotations

import os
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


class LocalRun:
    """A context that is not FunctionGraph's: a local run (tests, the CLI) may bring a clock
    and a sweep's progress callback. The handler reads them from instances of this class
    only, never from whatever attribute a platform's context object happens to answer."""

    clock: Clock | None = None
    progress: Callable[[dict[str, int]], None] | None = None


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
