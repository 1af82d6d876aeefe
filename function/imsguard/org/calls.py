"""What the org modules share: SDK clients from credentials (with endpoint overrides), failures
as typed errors with clear messages, and bounded retries of throttling within the time budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from imsguard.clients import client_builder
from imsguard.clock import Budget
from imsguard.context import Credentials
from imsguard.logs import redact

TIMEOUT = (5.0, 30.0)
MAX_ATTEMPTS = 4  # one call and at most three retries of throttling or a server error
Result = TypeVar("Result")


class OrgError(Exception):
    """An org call failed; the message names the service and why (never a secret)."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(redact(message))
        self.status = status
        self.code = code


class OrganizationsNotEnabled(OrgError):
    """The caller is not an organization's management account (or a delegated administrator):
    Organizations.1001 / Organizations.1002, HTTP 401, in Organizations' error code table."""


class AccessDenied(OrgError):
    """HTTP 403 (or a missing agency): the caller may not do this."""


class Throttled(OrgError):
    """Still throttled (429) or failing (5xx) after the bounded retries."""


NOT_ENABLED_CODES = ("Organizations.1001", "Organizations.1002")


def client(
    client_class: Any,
    endpoint: str,
    credentials: Credentials,
    *,
    project_id: str | None = None,
    domain_id: str | None = None,
) -> Any:
    """A client at ``endpoint``: global credentials for ``domain_id`` (Organizations, IAM),
    else project credentials (STS); both given, so the SDK never looks either up through an
    IAM endpoint of its own choosing. No retries of the SDK's own: ours respect the budget."""
    builder = client_builder(
        client_class, credentials, TIMEOUT, project_id=project_id, domain_id=domain_id
    )
    return builder.with_endpoints([endpoint]).build()


def call(
    service: str, what: str, method: Callable[[Any], Result], request: Any, budget: Budget
) -> Result:
    """``method(request)`` (an SDK client's method and its request), retried on throttling,
    server errors and lost connections at most MAX_ATTEMPTS times, with growing, jittered
    pauses cut to the budget; other failures at once. ``what`` names the request."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            return method(request)
        except SdkException as exc:
            status = getattr(exc, "status_code", None)
            code = str(getattr(exc, "error_code", None) or "")
            message = getattr(exc, "error_msg", None) or type(exc).__name__
            if status is None:  # the SDK's own transport failures carry no status
                last = Throttled(f"{service} could not be reached for {what}: {message}")
                if attempt + 1 == MAX_ATTEMPTS or not budget.pause(attempt):
                    raise last from None
                continue
            said = f"{service} refused {what}: HTTP {status} {code} {message}"
            if code in NOT_ENABLED_CODES:
                raise OrganizationsNotEnabled(
                    f"{said} (is Organizations enabled, and is this its management account or a "
                    "delegated administrator?)",
                    status,
                    code,
                ) from None
            if status == 403:
                raise AccessDenied(said, status, code) from None
            if status != 429 and status < 500:
                raise OrgError(said, status, code) from None
            last = Throttled(f"{said}, after {attempt + 1} attempts", status, code)
        except requests.RequestException as exc:
            last = Throttled(f"{service} could not be reached for {what}: {type(exc).__name__}")
        if attempt + 1 == MAX_ATTEMPTS or not budget.pause(attempt):
            raise last
    raise AssertionError("unreachable")
