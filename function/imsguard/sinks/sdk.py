"""What the sinks' SDK clients share: credentials, timeouts, and failures as SinkError."""

from __future__ import annotations

from typing import Any

import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from imsguard.clients import client_builder
from imsguard.context import Credentials
from imsguard.logs import redact
from imsguard.sinks import SinkError


def build_client(
    client_class: Any,
    region_class: Any,
    region: str | None,
    endpoint: str | None,
    project_id: str,
    credentials: Credentials,
    timeout: tuple[float, float],
    domain_id: str | None = None,
) -> Any:
    """A client of ``client_class`` with the invocation's credentials (project id always
    given: no IAM look-up), no retries of the SDK's own, and these timeouts; the region's
    endpoint unless ``endpoint`` is given. ``domain_id``: a global service's client
    (Config), with global credentials for that domain instead of the project's."""
    builder = client_builder(
        client_class, credentials, timeout, project_id=project_id, domain_id=domain_id
    )
    if endpoint:
        return builder.with_endpoints([endpoint]).build()
    try:
        return builder.with_region(region_class.value_of(region or "")).build()
    except (KeyError, ValueError) as exc:
        raise SinkError(f"no endpoint for region {region!r}: {exc}") from None


def failure(service: str, exc: Exception) -> SinkError:
    """The SDK's or the transport's failure as a SinkError naming the service and reason."""
    if isinstance(exc, SdkException):
        status = getattr(exc, "status_code", None)
        code = getattr(exc, "error_code", None) or ""
        message = getattr(exc, "error_msg", None) or type(exc).__name__
        return SinkError(redact(f"{service} refused the request: HTTP {status} {code} {message}"))
    if isinstance(exc, requests.RequestException):
        return SinkError(f"{service} could not be reached: {type(exc).__name__}")
    raise exc


def transient(exc: Exception) -> bool:
    """Whether a retry may succeed: no answer, throttling (429) or a server error (5xx)."""
    status = getattr(exc, "status_code", None) if isinstance(exc, SdkException) else None
    return status is None or status == 429 or status >= 500
