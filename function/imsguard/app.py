"""The FunctionGraph handler: event -> trigger -> image -> decision -> at most one PATCH.

Each image costs one read and at most one write. Every run re-reads the image
and patches only the difference, so duplicate events, replays and the traces
of imsguard's own updates are harmless.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any

from imsguard import __version__
from imsguard.clock import Budget, Clock, SystemClock
from imsguard.context import Credentials, call_getter, read_credentials
from imsguard.evaluate import Decision, Verdict, before, evaluate, fix_label, plan
from imsguard.events import Skip, Sweep, Target, Trigger, parse_event
from imsguard.logs import get_logger, keep_secret, log, redact, redact_all, set_context
from imsguard.policy import Policy, PolicyError, cached_policy
from imsguard.settings import (
    FUNCTION_URN,
    SWEEP_CONTINUE,
    SWEEP_MAX_HOPS,
    Settings,
    SettingsError,
    load_settings,
)
from imsguard.uefi import normalize_os_version

CLOCK: Clock = SystemClock()  # tests put a FakeClock here: nothing really sleeps
PROGRESS: Any = None  # the CLI puts a progress callback here for sweeps
# Credentials the process may see besides the context's: redacted whether used or not.
ENVIRONMENT_SECRETS = ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN")
# Every outcome a result entry can have ("exempt" comes with exemptions in policies).
OUTCOMES = (
    "updated",
    "would_update",
    "compliant",
    "non_compliant",
    "exempt",
    "not_applicable",
    "deferred",
    "error",
)


class TransientFailure(RuntimeError):
    """IMS kept failing transiently (throttling, 5xx, timeouts) after our own retries.

    The one exception the handler raises: FunctionGraph then retries the asynchronous
    invocation and, in the end, sends the event to the failure destination. Every image
    is re-read on the next try, so the retry repeats nothing that already succeeded."""


class InvalidPolicy(RuntimeError):
    """The policy does not load. Raised on every invocation, so that FunctionGraph's retries,
    failure destination and alarms see it: an error result in an asynchronous invocation's
    return value is read by nobody. ``problems`` lists every one, by rule, field and line."""

    def __init__(self, message: str, problems: list[str]):
        self.problems = problems
        super().__init__(message)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """FunctionGraph entry point. Returns a JSON-serialisable report; raises TransientFailure
    (IMS kept failing) and InvalidPolicy (the policy does not load), never on bad input."""
    set_context(request_id=call_getter(context, "getRequestID"))
    try:
        report = redact_all(_handle(event, context))
    except InvalidPolicy:
        raise
    except Exception as exc:  # a bug must still produce a report and a log line
        get_logger().exception("unexpected failure")
        return _stop("error", f"internal error: {type(exc).__name__}: {redact(str(exc))}")
    retryable = [r for r in report["results"] if r.get("retryable")]
    if retryable and "examined" not in report:  # a sweep reports and goes on; events retry
        subjects = ", ".join(
            str(r.get("image_id") or r.get("job_id") or r.get("name")) for r in retryable[:10]
        )
        log(
            logging.ERROR,
            "transient IMS failures; raising for FunctionGraph to retry",
            images=len(retryable),
        )
        raise TransientFailure(
            f"IMS failed transiently for {len(retryable)} image(s) after retries: {subjects}"
        )
    return report


def _handle(event: Any, context: Any) -> dict[str, Any]:
    try:
        settings = load_settings(context)
    except SettingsError as exc:
        get_logger()
        return _stop("error", f"configuration: {exc}")
    get_logger(settings.log_level)
    try:  # before the event: while the policy is broken, every invocation says so, loudly
        policy = cached_policy(settings.policy_path)
    except PolicyError as exc:
        log(
            logging.ERROR,
            "invalid policy: every invocation fails until it is fixed",
            policy=exc.source,
            problems=exc.problems,
        )
        raise InvalidPolicy(redact(str(exc)), [redact(p) for p in exc.problems]) from None
    parsed = parse_event(event)
    if isinstance(parsed, Skip):
        log(logging.INFO, "event skipped", status=parsed.status, reason=parsed.reason)
        return _stop(parsed.status, parsed.reason)
    if not settings.project_id:
        return _stop(
            "error", "configuration: no project id (RUNTIME_PROJECT_ID or IMSGUARD_PROJECT_ID)"
        )
    credentials = read_credentials(context)
    if credentials is not None:
        keep_secret(*credentials)
    keep_secret(*(os.environ.get(key) for key in ENVIRONMENT_SECRETS))  # even if unused
    if credentials is None:
        return _stop(
            "error",
            "configuration: no credentials (give the function an agency, or "
            "set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK)",
        )
    from imsguard.ims import gateway_for  # the SDK loads only when there is work to do

    try:
        gateway = gateway_for(
            settings.region, settings.ims_endpoint, settings.project_id, credentials
        )
    except ValueError as exc:
        return _stop("error", f"configuration: {exc}")
    if isinstance(parsed, Sweep):
        return _sweep(parsed, context, settings, policy, gateway, credentials)
    dry_run = settings.dry_run or parsed.dry_run is True
    budget = Budget.for_invocation(context, CLOCK, settings.safety_margin_s, settings.max_wait_s)
    _prepare(gateway, budget)
    uefi_versions = _uefi_versions(gateway) if settings.uefi_from_ims else None
    run = _Run(gateway, policy, settings.project_id, dry_run, budget, uefi_versions)
    results = run.process(parsed)
    summary = Counter(r["outcome"] for r in results)
    report = {
        "status": "ok",
        "imsguard": __version__,
        "trigger": parsed.summary,
        "dry_run": dry_run,
        "summary": dict(sorted(summary.items())),
        "results": results,
    }
    if parsed.skipped:
        report["skipped"] = list(parsed.skipped)
    return report


def _prepare(gateway: Any, budget: Budget) -> None:
    """This invocation's limits for the container's client: no IMS call may outlive the
    invocation, and retries wait only up to the safety margin."""
    gateway.begin(budget.time_left, budget.retry_window, budget.clock)


def _uefi_versions(gateway: Any) -> frozenset[str] | None:
    """IMS's UEFI-capable OS versions, read once per client (so once per container); if
    IMS cannot say, the built-in table is used and the next invocation asks again."""
    from imsguard.ims import ImsError

    if gateway.uefi_versions is None:
        try:
            listed = gateway.uefi_os_versions()
        except ImsError as exc:
            log(logging.WARNING, "UEFI OS list not read; using the built-in table", error=str(exc))
            return None
        gateway.uefi_versions = frozenset(normalize_os_version(v) for v in listed)
    return gateway.uefi_versions


def _sweep(
    sweep: Sweep,
    context: Any,
    settings: Settings,
    policy: Policy,
    gateway: Any,
    credentials: Credentials,
) -> dict[str, Any]:
    """Check every active private image; continue in a new invocation if time runs out."""
    from imsguard.sweep import Sweeper

    dry_run = settings.dry_run or sweep.options.dry_run is True
    budget = Budget.for_invocation(context, CLOCK, settings.safety_margin_s, float("inf"))
    _prepare(gateway, budget)
    uefi_versions = _uefi_versions(gateway) if settings.uefi_from_ims else None
    report = Sweeper(
        gateway,
        policy,
        gateway.project_id,
        budget,
        dry_run,
        sweep.options,
        settings.sweep_page_size,
        settings.sweep_concurrency,
        settings.sweep_rate,
        settings.results_limit,
        uefi_versions,
        PROGRESS,
    ).run()
    report = {
        "imsguard": __version__,
        "trigger": sweep.summary,
        "dry_run": dry_run,
        **report,
        "ims_retries": gateway.retries,
    }
    if "continuation" in report:
        report["continued"] = _continue(sweep, report, settings, credentials, budget)
    return report


def _continue(
    sweep: Sweep,
    report: dict[str, Any],
    settings: Settings,
    credentials: Credentials,
    budget: Budget,
) -> dict[str, Any]:
    """Invoke this function again, asynchronously, to sweep on from the marker."""
    from imsguard.fgs import ContinueError, invoke_async, own_urn

    continuation = report["continuation"]
    if continuation["cause"] != "time":
        return {
            "started": False,
            "reason": f"{continuation['reason']}: rerun the sweep with "
            "the continuation's marker when ready",
        }
    if not settings.sweep_continue:
        return {
            "started": False,
            "reason": f"{SWEEP_CONTINUE} is not true: run the sweep "
            "again with the continuation's marker",
        }
    if continuation["hop"] > settings.sweep_max_hops:
        return {
            "started": False,
            "reason": f"{SWEEP_MAX_HOPS} ({settings.sweep_max_hops}) continuations already made",
        }
    progressed = continuation["marker"] != sweep.options.marker or report["summary"].get("updated")
    if not progressed:
        return {"started": False, "reason": "no progress was made; not continuing"}
    project_id = settings.project_id or ""
    urn = settings.function_urn or own_urn(settings.region, project_id)
    if urn is None:
        return {"started": False, "reason": f"no function to invoke: set {FUNCTION_URN}"}
    payload = {
        "action": "sweep",
        **sweep.options.model_dump(
            exclude={"marker", "hop", "examined_before", "planned_before"}, exclude_none=True
        ),
    }
    payload.update({k: continuation[k] for k in ("hop", "examined_before", "planned_before")})
    if continuation["marker"]:
        payload["marker"] = continuation["marker"]
    try:
        request_id = invoke_async(
            urn,
            payload,
            settings.region,
            settings.fgs_endpoint,
            project_id,
            credentials,
            budget.time_left(),
        )
    except ContinueError as exc:
        log(logging.ERROR, "sweep not continued", reason=str(exc))
        return {"started": False, "reason": str(exc)}
    log(logging.INFO, "sweep continued", function_urn=urn, request_id=request_id, **payload)
    return {"started": True, "function_urn": urn, "request_id": request_id, "payload": payload}


def _stop(status: str, reason: str, **extra: Any) -> dict[str, Any]:
    """The answer for an event that leads to no image work."""
    return {"status": status, "imsguard": __version__, "reason": reason, **extra, "results": []}


class _Run:
    """One invocation's work: find each target's images, then check each image once."""

    def __init__(
        self,
        gateway: Any,
        policy: Policy,
        project_id: str,
        dry_run: bool,
        budget: Budget,
        uefi_versions: frozenset[str] | None,
    ):
        from imsguard.resolve import Resolver

        self.gateway = gateway
        self.policy = policy
        self.project_id = project_id
        self.dry_run = dry_run
        self.today = budget.clock.utcnow().date()  # for exemption expiry
        self.uefi_versions = uefi_versions
        self.resolver = Resolver(gateway, budget, project_id)

    def process(self, trigger: Trigger) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        checked: set[str] = set()
        for target in dict.fromkeys(trigger.targets):  # a batch may repeat an event
            images, unresolved = self._resolve_safely(target)
            results.extend(_report(r) for r in unresolved)
            for image in images:
                if image["id"] not in checked:  # a batch may name one image twice
                    checked.add(image["id"])
                    results.append(_report(self._check_image_safely(image, target)))
        return results

    def _resolve_safely(self, target: Target) -> tuple[list[dict[str, Any]], list[Any]]:
        try:
            return self.resolver.images_of(target)
        except Exception as exc:
            return [], [_internal_error(exc, None)]

    def _check_image_safely(self, image: dict[str, Any], target: Target) -> dict[str, Any]:
        """One odd image must not cost the other images their results."""
        try:
            return self._check_image(image, target)
        except Exception as exc:
            return _internal_error(exc, image["id"])

    def _check_image(self, image: dict[str, Any], target: Target) -> dict[str, Any]:
        from imsguard.ims import ImsError
        from imsguard.resolve import failure

        image_id = image["id"]
        decision = evaluate(self.policy, image, self.project_id, self.today, self.uefi_versions)
        planned = plan(decision, self.dry_run)
        base: dict[str, Any] = {
            "image_id": image_id,
            "image_name": image.get("name"),
            "operations": list(decision.operations),
            "decision": decision,
        }
        if decision.notes:
            base["notes"] = list(decision.notes)
        send = list(planned.send)
        if not send:
            if planned.outcome == "would_update":
                base["before"] = before(image, decision.operations)
            return {**base, "outcome": planned.outcome, "reason": planned.reason}
        if target.traced_operations is not None and target.traced_operations == tuple(
            sorted((o["op"], o["path"], o["value"]) for o in send)
        ):
            return {
                **base,
                "outcome": "error",
                "reason": "this update trace records exactly the patch imsguard would send, "
                "yet the image still differs: IMS did not keep it; not sent again "
                "(loop guard)",
            }
        held_back = [op for op in decision.operations if op not in send]
        base.update(operations=send, _sent=send, before=before(image, send))
        if held_back:
            base["held_back"] = held_back
        try:
            updated = self.gateway.update_image(image_id, send)
        except ImsError as exc:
            return {**base, "_failed": True, **failure(exc), "reason": f"not updated: {exc}"}
        after = evaluate(self.policy, updated, self.project_id, self.today, self.uefi_versions)
        left = sorted({o["path"] for o in after.operations} & {o["path"] for o in send})
        if left:
            return {
                **base,
                "outcome": "error",
                "reason": f"IMS accepted the update but still differs on {left}",
            }
        return {**base, "outcome": planned.outcome, "reason": planned.reason}


def _internal_error(exc: Exception, image_id: str | None) -> dict[str, Any]:
    """A bug hit one target or image: log it with its traceback, report it, go on."""
    get_logger().exception("unexpected failure", extra={"fields": {"image_id": image_id}})
    return {
        "image_id": image_id,
        "operations": [],
        "outcome": "error",
        "reason": f"internal error: {type(exc).__name__}: {exc}",
    }


def _report(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON result entry (with per-rule verdicts) and its one log line."""
    decision: Decision | None = result.pop("decision", None)
    sent = [op["path"][1:] for op in result.pop("_sent", ())]
    failed = result.pop("_failed", False)
    if decision is not None and decision.verdicts:
        result["rules"] = [verdict_entry(v, sent, failed) for v in decision.verdicts]
    outcome = result["outcome"]
    level = logging.ERROR if outcome == "error" else logging.INFO
    log(level, f"image {outcome}", **result)
    return result


def verdict_entry(verdict: Verdict, sent: list[str], failed: bool = False) -> dict[str, Any]:
    """A rule's verdict as reported: verdict, reason, mode, and for a violation its fix."""
    entry: dict[str, Any] = {
        "rule": verdict.rule,
        "verdict": verdict.status,
        "reason": verdict.reason,
    }
    if verdict.mode == "audit":
        entry["mode"] = "audit"
    fix = fix_label(verdict, sent, failed)
    if fix:
        entry["fix"] = fix
    return entry
