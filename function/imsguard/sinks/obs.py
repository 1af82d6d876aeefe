"""Reports in OBS (``IMSGUARD_REPORT_BUCKET``; ``IMSGUARD_REPORT_PREFIX``, endpoint
``IMSGUARD_OBS_ENDPOINT``): after each sweep hop, the hop's full report as JSON and CSV under
a dated key named by the sweep's id (its first hop's request id) and the hop; the sweep's last
hop then replaces ``latest.json`` with an index of every hop's JSON. Events write nothing.

Written with the official OBS SDK (``esdk-obs-python``), imported only when a report is written:
an event, or a function without a bucket, never loads it. The SDK does not use ``requests``;
its own retries are off and each write is tried here at most ATTEMPTS times."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from datetime import timezone
from http.client import HTTPException
from typing import TYPE_CHECKING, Any

from imsguard import __version__
from imsguard.logs import context_field, log, redact
from imsguard.permissions import GET_OBJECT, LIST_BUCKET, PUT_OBJECT, requires
from imsguard.results import SweepReport
from imsguard.sinks import REPORT_KEYS_BYTES, SinkError, call_timeouts
from imsguard.sinks.report_files import (
    hop_stem,
    index_json,
    latest_key,
    report_csv,
    report_json,
    sweep_id_of,
)

if TYPE_CHECKING:
    from imsguard.clock import Budget
    from imsguard.context import Credentials
    from imsguard.invocation import Invocation
    from imsguard.policy import Policy
    from imsguard.results import EventReport

ATTEMPTS = 3
BACKOFF_S = 0.25  # before the second try; doubled before the third
JSON_TYPE = "application/json"
CSV_TYPE = "text/csv; charset=utf-8"


class ObsReports:
    """Writes one sweep hop's report to OBS: its JSON, its CSV, and on the sweep's last hop
    the index ``latest.json``."""

    def finish(
        self, report: EventReport | SweepReport, invocation: Invocation, policy: Policy
    ) -> dict[str, Any]:
        if not isinstance(report, SweepReport):
            return {"skipped": "reports are written after sweeps only"}
        settings = invocation.settings
        bucket = settings.report_bucket or ""
        sweep_id, stem = hop_report(report, invocation)
        now = invocation.clock.utcnow().astimezone(timezone.utc)
        about = {
            "sweep_id": sweep_id,
            "hop": report.hop,
            "request_id": str(context_field("request_id") or ""),
            "generated_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "region": settings.region,
            "project_id": invocation.project_id,
        }
        written: list[str] = []
        failed: list[str] = []
        # One object at a time, each freed once sent: a report of 10,000 images is MBs.
        body = report_json(report, about).getvalue()
        self.send(bucket, f"{stem}.json", body, JSON_TYPE, invocation, written, failed)
        size = len(body)
        del body
        if not failed:  # the CSV only beside its JSON
            body = report_csv(report.examined_images or []).getvalue()
            self.send(bucket, f"{stem}.csv", body, CSV_TYPE, invocation, written, failed)
            del body
        outcome: dict[str, Any] = {"written": written, "bucket": bucket}
        if not (report.continued or {}).get("started"):  # the sweep's last hop
            prefix = settings.report_prefix
            hops = [key for key in report.report_keys_before if key.startswith(prefix)]
            if len(hops) < len(report.report_keys_before):  # handed on by an earlier hop
                left_out = len(report.report_keys_before) - len(hops)
                outcome["index_left_out"] = left_out
                log(logging.WARNING, "hop keys not under the prefix left out", keys=left_out)
            index = {
                "imsguard": __version__,
                "kind": "sweep-index",
                "sweep_id": sweep_id,
                "generated_at": about["generated_at"],
                "region": settings.region,
                "project_id": invocation.project_id,
            }
            unlisted = report.hop - len(report.report_keys_before)  # dropped to stay small
            if unlisted > 0:
                index["hops_not_listed"] = outcome["hops_not_listed"] = unlisted
            # Written even when this hop's own objects failed: an older sweep's index must
            # not pass for this one's (imsguard report names the hop it cannot read).
            body = index_json(index, [*hops, f"{stem}.json"])
            self.send(bucket, latest_key(prefix), body, JSON_TYPE, invocation, written, failed)
        if failed:
            raise SinkError("; ".join(failed))
        log(logging.INFO, "report written", bucket=bucket, keys=written, bytes=size)
        return outcome

    def send(
        self,
        bucket: str,
        key: str,
        body: bytes,
        content_type: str,
        invocation: Invocation,
        written: list[str],
        failed: list[str],
    ) -> None:
        """PUT one object: its key goes to ``written``, or why not to ``failed`` (naming
        those written before it), so the objects after it are still tried."""
        try:
            self.put(bucket, key, body, content_type, invocation)
        except SinkError as exc:
            done = f" (written before it: {', '.join(written)})" if written else ""
            failed.append(f"{exc}{done}")
        else:
            written.append(key)

    @requires(PUT_OBJECT)
    def put(
        self, bucket: str, key: str, body: bytes, content_type: str, invocation: Invocation
    ) -> None:
        """PUT one object with the invocation's own credentials (put_object)."""
        settings = invocation.settings
        put_object(
            settings.obs_endpoint or "",
            invocation.credentials,
            invocation.budget,
            bucket,
            key,
            body,
            content_type,
        )


def put_object(
    endpoint: str,
    credentials: Credentials,
    budget: Budget,
    bucket: str,
    key: str,
    body: bytes,
    content_type: str,
) -> None:
    """PUT one object, up to ATTEMPTS times while OBS fails transiently (no answer, a
    timeout, 429, 5xx such as 503 SlowDown, 400 RequestTimeout; never again after a
    refusal such as 403 or 404), each try's timeout fitting in the invocation's time left."""
    from obs import PutObjectHeader  # the SDK loads only when a report is written

    digest = hashlib.md5(body, usedforsecurity=False).digest()
    md5 = base64.b64encode(digest).decode()  # OBS checks the body against it
    headers = PutObjectHeader(md5=md5, contentType=content_type)
    _retried(
        "writing",
        key,
        budget,
        lambda c: c.putContent(bucket, key, body, headers=headers),
        endpoint,
        credentials,
    )


@requires(GET_OBJECT, LIST_BUCKET)
def get_object(
    endpoint: str, credentials: Credentials, budget: Budget, bucket: str, key: str
) -> bytes | None:
    """GET one object (None: there is none, 404 NoSuchKey), retried as put_object is."""
    answer = _retried(
        "reading",
        key,
        budget,
        lambda c: c.getObject(bucket, key, loadStreamInMemory=True),
        endpoint,
        credentials,
        missing_ok=True,
    )
    if answer is None:
        return None
    return bytes(getattr(answer.body, "buffer", None) or b"")


def _retried(
    doing: str,
    key: str,
    budget: Budget,
    call: Callable[[Any], Any],
    endpoint: str,
    credentials: Credentials,
    missing_ok: bool = False,
) -> Any:
    """One OBS call, tried up to ATTEMPTS times while OBS fails transiently; its answer, or
    None for a missing object when ``missing_ok``. Raises SinkError saying why not."""
    reason = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            log(logging.WARNING, f"OBS {doing} retried", key=key, reason=reason)
            budget.clock.sleep(BACKOFF_S * 2 ** (attempt - 1))
        try:
            connect, read = call_timeouts(budget.time_left())
        except SinkError as exc:
            raise SinkError(f"{reason}; {exc}" if reason else str(exc)) from None
        # One timeout serves connecting and each read: their mean keeps both within the
        # time left (connect + read).
        client = obs_client(endpoint, credentials, (connect + read) / 2)
        try:
            answer = call(client)
        except (OSError, HTTPException) as exc:
            reason = redact(f"OBS could not be reached {doing} {key}: {type(exc).__name__}")
            continue
        finally:
            client.close()
        status = int(answer.status or 0)
        if status < 300:
            return answer
        code = answer.errorCode or ""
        if missing_ok and status == 404 and code == "NoSuchKey":
            return None
        message = answer.errorMessage or answer.reason or ""
        reason = redact(f"OBS refused {doing} {key}: HTTP {status} {code} {message}".strip())
        if status < 500 and status != 429 and code != "RequestTimeout":
            break
    raise SinkError(reason)


def hop_report(report: SweepReport, invocation: Invocation) -> tuple[str, str]:
    """The sweep's id and this hop's key without ``.json``/``.csv``, fixed on first use (by
    the hop handing them on, or by this sink) so the next hop is told the key written.
    Hop 0's request id names the sweep; the date is the invocation clock's (UTC)."""
    if report.sweep_id is None:
        report.sweep_id = sweep_id_of(str(context_field("request_id") or uuid.uuid4().hex))
    if report.report_stem is None:
        now = invocation.clock.utcnow().astimezone(timezone.utc)
        prefix = invocation.settings.report_prefix
        report.report_stem = hop_stem(prefix, now, report.sweep_id, report.hop)
    return report.sweep_id, report.report_stem


def handed_on(report: SweepReport, invocation: Invocation) -> dict[str, Any]:
    """The options the next hop needs for the sweep's index: the sweep's id and the JSON
    keys of every hop so far, this one's last (computed, not waited for: it is written after
    the next hop starts)."""
    sweep_id, stem = hop_report(report, invocation)
    keys = [*report.report_keys_before, f"{stem}.json"]
    while len(json.dumps(keys)) > REPORT_KEYS_BYTES:  # the payload stays small: the oldest
        keys.pop(0)  # hops go unlisted (the index says how many)
    return {"sweep_id": sweep_id, "report_keys": keys}


def obs_client(endpoint: str, credentials: Credentials, timeout: float) -> Any:
    """An ObsClient with the invocation's temporary credentials, no retries of its own, this
    timeout, and TLS certificates checked (the SDK checks none unless told: ``ssl_verify``
    names the CA bundle, and its context is made to check the host name too)."""
    import certifi
    from obs import ObsClient

    client = ObsClient(
        access_key_id=credentials.access_key,
        secret_access_key=credentials.secret_key,
        security_token=credentials.security_token,
        server=endpoint,
        ssl_verify=certifi.where(),
        max_retry_count=0,
        timeout=timeout,
        is_signature_negotiation=False,
    )
    if client.context is not None:  # https only
        client.context.check_hostname = True
    return client
