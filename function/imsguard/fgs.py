"""FunctionGraph clients, and continuing a sweep in a new invocation.

A sweep of a large fleet that runs out of time invokes its own function again,
asynchronously, with the marker where it stopped; ``imsguard deploy`` uses the same
client. The FunctionGraph SDK loads only then, so it costs nothing at cold start.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException
from huaweicloudsdkfunctiongraph.v2 import (
    AsyncInvokeFunctionRequest,
    FunctionGraphClient,
    ListAsyncInvocationsRequest,
)
from huaweicloudsdkfunctiongraph.v2.region.functiongraph_region import FunctionGraphRegion

from imsguard.clients import client_builder
from imsguard.context import Credentials
from imsguard.logs import RedactingFilter, redact
from imsguard.permissions import INVOKE_ASYNC, LIST_ASYNC_INVOCATIONS, requires

logging.getLogger("HuaweiCloud-SDK-FunctionGraphClient").addHandler(logging.NullHandler())
logging.getLogger("HuaweiCloud-SDK-FunctionGraphClient").addFilter(RedactingFilter())


class ContinueError(Exception):
    """The next invocation could not be started; the message says why."""


def own_urn(region: str | None, project_id: str) -> str | None:
    """This function's URN from FunctionGraph's reserved variables (package "default"
    unless RUNTIME_PACKAGE says otherwise: unconfirmed), or None outside FunctionGraph."""
    name = os.environ.get("RUNTIME_FUNC_NAME")
    if not name or not region:
        return None
    package = os.environ.get("RUNTIME_PACKAGE") or "default"
    version = os.environ.get("RUNTIME_FUNC_VERSION") or "latest"
    return f"urn:fss:{region}:{project_id}:function:{package}:{name}:{version}"


def client_for(
    region: str | None,
    endpoint: str | None,
    project_id: str,
    credentials: Credentials,
    timeout: tuple[float, float],
) -> FunctionGraphClient:
    """A FunctionGraph client (project id always given: no IAM look-up); KeyError when
    the SDK knows no endpoint for the region."""
    builder = client_builder(FunctionGraphClient, credentials, timeout, project_id=project_id)
    if endpoint:
        return builder.with_endpoints([endpoint]).build()
    return builder.with_region(FunctionGraphRegion.value_of(region or "")).build()


@requires(INVOKE_ASYNC)
def invoke_async(
    function_urn: str,
    payload: dict[str, Any],
    region: str | None,
    endpoint: str | None,
    project_id: str,
    credentials: Credentials,
    time_left: float | None = None,
) -> str:
    """Start ``function_urn`` with ``payload``; returns FunctionGraph's request id. The
    call's timeouts fit in ``time_left`` (seconds), so the invocation is never cut off."""
    left = 35.0 if time_left is None else time_left
    if left < 1:
        raise ContinueError("no time left to start the next invocation")
    connect = min(5.0, left / 3)
    try:
        client = client_for(
            region, endpoint, project_id, credentials, (connect, min(30.0, left - connect - 0.2))
        )
        response = client.async_invoke_function(
            AsyncInvokeFunctionRequest(function_urn=function_urn, body=payload)
        )
    except (KeyError, ValueError) as exc:
        raise ContinueError(f"no FunctionGraph endpoint for region {region!r}: {exc}") from None
    except SdkException as exc:
        message = getattr(exc, "error_msg", None) or type(exc).__name__
        raise ContinueError(redact(f"FunctionGraph refused the invocation: {message}")) from None
    except requests.RequestException as exc:
        raise ContinueError(f"FunctionGraph could not be reached: {type(exc).__name__}") from None
    return response.request_id or ""


# What FunctionGraph says of an asynchronous invocation that ended without success.
ENDED_BADLY = ("FAIL", "DISCARD")


@requires(LIST_ASYNC_INVOCATIONS)
def invocation_status(
    function_urn: str,
    request_id: str,
    started: datetime,
    region: str | None,
    endpoint: str | None,
    project_id: str,
    credentials: Credentials,
    time_left: float | None = None,
) -> tuple[str, str] | None:
    """FunctionGraph's record of one asynchronous invocation started at ``started``: its
    status (WAIT, RUNNING, SUCCESS, FAIL or DISCARD) and error message; None when it has
    no record of it (yet) or cannot be asked (the caller then waits for the record, or
    for its own deadline). The search starts a minute before ``started``: by default
    FunctionGraph searches only the last hour."""
    left = 35.0 if time_left is None else time_left
    if left < 1:
        return None
    connect = min(5.0, left / 3)
    begin = started.astimezone(timezone.utc) - timedelta(minutes=1)
    try:
        client = client_for(
            region, endpoint, project_id, credentials, (connect, min(30.0, left - connect - 0.2))
        )
        response = client.list_async_invocations(
            ListAsyncInvocationsRequest(
                function_urn=function_urn,
                request_id=request_id,
                query_begin_time=begin.replace(tzinfo=None, microsecond=0),
            )
        )
    except (KeyError, ValueError, SdkException, requests.RequestException) as exc:
        logging.getLogger("imsguard").warning(
            "invocation status unknown: %s", redact(type(exc).__name__)
        )
        return None
    for record in response.invocations or []:
        if record.request_id == request_id and record.status:
            return str(record.status), redact(str(record.error_message or ""))
    return None
