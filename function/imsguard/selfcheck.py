"""Checks that turn the README's unconfirmed IMS assumptions into confirmed ones at the
user's site, each read-only: the IMS list call is allowed, the job API answers (an unknown
job is IMS's own "not found", not a refusal), and IMS's UEFI OS list is readable and agrees
with the built-in table.

One class per check, with its name, the permissions its calls need (``needs``, as
``@requires`` declares them on the gateway) and ``run``. ``imsguard doctor`` runs these with
the tools' checks (imsguard_tools.doctor); the function runs them once per container when
``IMSGUARD_SELF_CHECK=true`` (``log_once``), and logs one JSON line. This module loads only
then: an ordinary event never imports it.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from imsguard.ims import ImsError, ImsGateway
from imsguard.logs import log
from imsguard.permissions import LIST_IMAGES, LIST_OS_VERSIONS, SHOW_JOB_PROGRESS, Permission
from imsguard.uefi import is_uefi_capable, normalize_os_version

if TYPE_CHECKING:
    from imsguard.clock import Budget
    from imsguard.settings import Settings

Status = Literal["ok", "fail", "unknown"]


class CheckResult(NamedTuple):
    """One check's answer: ``reason`` for every status but ok, ``fix`` for a failure."""

    name: str
    status: Status
    reason: str | None = None
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason, "fix": self.fix}


class Check:
    """A read-only check. ``needs``: the permissions of the calls it makes. ``run`` gets the
    probe (what the check may call: a gateway, settings, clients) and never raises for a
    cloud answer: it says ok, fail (why, and the fix) or unknown (why it cannot tell)."""

    name: ClassVar[str]
    needs: ClassVar[tuple[Permission, ...]] = ()

    def run(self, probe: Any) -> CheckResult:
        raise NotImplementedError

    def ok(self) -> CheckResult:
        return CheckResult(self.name, "ok")

    def fail(self, reason: str, fix: str) -> CheckResult:
        return CheckResult(self.name, "fail", reason, fix)

    def unknown(self, reason: str) -> CheckResult:
        return CheckResult(self.name, "unknown", reason)


CREDENTIALS_FIX = "check HUAWEICLOUD_SDK_AK/SK (and the security token) and the project id"


def verdict(
    check: Check,
    service: str,
    call: str,
    status: int | None,
    said: str,
    refused_fix: str,
    also: str = "",
) -> CheckResult:
    """The one rule every check follows for a call that failed: no answer, 429 or a 5xx
    is unknown (it could not tell); 401 is the credentials (or the project) not accepted;
    403 a refusal (``refused_fix`` says what to allow); anything else a failure as the
    service said it. ``also`` is added to what it says (e.g. what a read cannot prove)."""
    tail = f"; {also}" if also else ""
    if status is None or status == 429 or status >= 500:
        return check.unknown(f"{service} could not tell ({call}): {said}{tail}")
    if status == 401:
        return check.fail(
            f"{service} did not accept the credentials ({call}): {said}", CREDENTIALS_FIX + tail
        )
    if status == 403:
        return check.fail(f"{service} refused {call}: {said}", refused_fix + tail)
    return check.fail(
        f"{service} answered {call}: {said}", "check the region and the endpoint" + tail
    )


def ims_answer(check: Check, exc: ImsError, action: str | None) -> CheckResult:
    """An IMS failure, by the one rule (the function's own calls: its agency needs ``action``)."""
    status = None if exc.kind == "out_of_time" else exc.status
    fix = f"grant {action} to the function's agency and to who runs doctor (imsguard iam-policy)"
    return verdict(check, "IMS", "the call", status, str(exc), fix if action else CREDENTIALS_FIX)


class ImsList(Check):
    """Credentials, region and project work, and the IMS list call is allowed."""

    name = "ims-list"
    needs = (LIST_IMAGES,)

    def run(self, probe: Any) -> CheckResult:
        gateway: ImsGateway = probe.gateway()
        try:
            gateway.list_page(None, 1, None)
        except ImsError as exc:
            return ims_answer(self, exc, LIST_IMAGES.action)
        return self.ok()


class JobApi(Check):
    """The job-progress API answers: an unknown job id gives IMS's own "not found" (a 404
    with an IMS code), never a refusal, so image creation can be followed."""

    name = "ims-job-api"
    needs = (SHOW_JOB_PROGRESS,)

    def run(self, probe: Any) -> CheckResult:
        gateway: ImsGateway = probe.gateway()
        job_id = uuid.uuid4().hex  # no such job
        missing_before = gateway.job_progress_missing
        try:
            gateway.get_job(job_id)
        except ImsError as exc:
            fell_back = gateway.job_progress_missing and not missing_before
            if exc.status == 404 and str(exc.code or "").startswith("IMG."):  # IMS's own
                if fell_back:  # ShowJobProgress is not there: the deprecated ShowJob answered
                    return CheckResult(
                        self.name,
                        "ok",
                        "this region's API gateway does not know ShowJobProgress; imsguard "
                        "reads jobs with the deprecated ShowJob, which answered",
                    )
                return self.ok()
            return ims_answer(self, exc, JOB_ACTION)
        finally:  # the made-up id must not change how this container reads jobs
            gateway.job_progress_missing = missing_before
        return self.fail(
            f"IMS showed a job for the made-up id {job_id}",
            "report this: imsguard expects IMS to answer 404 for an unknown job",
        )


# IMS's permissions table names no action for the job APIs; one edition names this one.
JOB_ACTION = f"{SHOW_JOB_PROGRESS.unconfirmed} (unconfirmed: one edition of IMS's table lists it)"


class UefiList(Check):
    """IMS's UEFI OS list is readable and the built-in table agrees with it (the
    differences are listed: set IMSGUARD_UEFI_FROM_IMS=true to follow IMS's list)."""

    name = "uefi-os-list"
    needs = (LIST_OS_VERSIONS, LIST_IMAGES)

    def run(self, probe: Any) -> CheckResult:
        gateway: ImsGateway = probe.gateway()
        settings: Settings = probe.settings
        try:
            listed = {normalize_os_version(v) for v in gateway.uefi_os_versions()}
        except ImsError as exc:
            return ims_answer(self, exc, LIST_OS_VERSIONS.action)
        if not listed:
            return self.unknown("IMS listed no UEFI-capable OS version in this region")
        missing = sorted(v for v in listed if not is_uefi_capable(v))
        try:  # the other way round on the images themselves: the dangerous difference
            images, _ = gateway.list_page(None, SAMPLE, None)
        except ImsError as exc:
            return ims_answer(self, exc, LIST_IMAGES.action)
        extra = sorted(
            {
                normalize_os_version(str(v))
                for v in (i.get("__os_version") for i in images)
                if isinstance(v, str)
                and is_uefi_capable(v)
                and normalize_os_version(v) not in listed
            }
        )
        fewer = (
            f"IMS lists {len(missing)} UEFI-capable OS version(s) the built-in table does not "
            f"(their images are not set to UEFI unless IMSGUARD_UEFI_FROM_IMS=true): "
            f"{_first(missing)}"
            if missing
            else None
        )
        if not extra:  # the table covers less than IMS at most: never harmful
            return CheckResult(self.name, "ok", fewer)
        danger = (
            f"the built-in table calls {len(extra)} OS version(s) of this project's images "
            f"UEFI-capable that IMS does not list here (of the {SAMPLE} newest images): "
            f"{_first(extra)}"
        )
        if settings.uefi_from_ims:  # the function follows IMS's list: nothing to fix
            return CheckResult(
                self.name, "ok", f"{danger} (IMSGUARD_UEFI_FROM_IMS=true follows IMS)"
            )
        reason = "; ".join(r for r in (danger, fewer) if r)
        return self.fail(reason, "set IMSGUARD_UEFI_FROM_IMS=true to follow IMS's own list")


def _first(values: list[str], most: int = 5) -> str:
    more = f" and {len(values) - most} more" if len(values) > most else ""
    return ", ".join(values[:most]) + more


SAMPLE = 100  # images whose OS versions the UEFI check compares


# The checks the function can run from inside (its own agency, its own IMS).
INSIDE: tuple[type[Check], ...] = (ImsList, JobApi, UefiList)

_done = threading.Event()  # once per container


class _InsideProbe:
    def __init__(self, gateway: ImsGateway, settings: Settings) -> None:
        self._gateway = gateway
        self.settings = settings

    def gateway(self) -> ImsGateway:
        return self._gateway


SELF_CHECK_S = 10.0  # the most the self check takes from the first event of a container


def _run_inside(probe: _InsideProbe, budget: Budget) -> list[CheckResult]:
    clock = budget.clock
    left = budget.time_left()
    end = clock.monotonic() + (SELF_CHECK_S if left is None else min(SELF_CHECK_S, left))
    ImsGateway.begin(lambda: end - clock.monotonic(), lambda: end - clock.monotonic() - 1, clock)
    results = []
    for check in INSIDE:
        try:
            results.append(check().run(probe))
        except Exception as exc:  # a bug in a check must not cost the event
            results.append(check().unknown(f"the check failed: {type(exc).__name__}: {exc}"))
    return results


def log_once(gateway: ImsGateway, settings: Settings, budget: Budget) -> list[CheckResult] | None:
    """Run the inside checks the first time a container is asked to (None after): one INFO
    JSON line with every result, and an ERROR line naming the fix for each failure."""
    if _done.is_set():
        return None
    _done.set()
    probe = _InsideProbe(gateway, settings)
    # Its calls get at most SELF_CHECK_S (and no more than the event has), in a context of
    # their own: the event's own IMS limits are left as they were.
    results = contextvars.copy_context().run(_run_inside, probe, budget)

    log(logging.INFO, "self check", checks=[r.to_json() for r in results])
    for result in results:
        if result.status == "fail":
            log(
                logging.ERROR,
                "self check failed",
                check=result.name,
                reason=result.reason,
                fix=result.fix,
            )
    return results
