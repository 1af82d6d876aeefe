"""The FunctionGraph handler: event -> trigger -> image -> decision -> at most one PATCH.

Each image costs one read and at most one write. Every run re-reads the image
and patches only the difference, so duplicate events, replays and the traces
of imsguard's own updates are harmless.

Each call builds one :class:`~imsguard.invocation.Invocation` (clock, budget,
credentials, progress, sinks) and passes it down: an event goes to
:mod:`imsguard.event_check`, a sweep request to one hop of :mod:`imsguard.sweep`.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from imsguard import __version__
from imsguard.clock import Budget, SystemClock
from imsguard.context import LocalRun, call_getter, read_credentials
from imsguard.events import (
    CONFIG_MARKS,
    CONFIG_SWEEP,
    OrgSweepRequest,
    Skip,
    SweepRequest,
    config_event,
    parse_event,
    shorten,
)
from imsguard.logs import get_logger, keep_secret, log, redact, redact_all, set_context
from imsguard.policy import PolicyError, cached_policy
from imsguard.settings import (
    CONFIG_RULES,
    FUNCTION_URN,
    IMS_ENDPOINT,
    ORG_AGENCY,
    SWEEP_CONTINUE,
    SWEEP_MAX_HOPS,
    SettingsError,
    load_settings,
)
from imsguard.sinks import ConfigStateNotReported, SinkError
from imsguard.uefi import normalize_os_version

if TYPE_CHECKING:
    from imsguard.context import Credentials
    from imsguard.event_models import OrgShard, OrgSweepEvent
    from imsguard.ims import ImsGateway
    from imsguard.invocation import Invocation
    from imsguard.org.cloud_invoker import CloudInvoker
    from imsguard.policy import Policy
    from imsguard.results import EventReport, SweepReport
    from imsguard.settings import Settings
    from imsguard.sinks.config import ConfigStates

# Credentials the process may see besides the context's: redacted whether used or not.
ENVIRONMENT_SECRETS = ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN")


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
    (IMS kept failing) and InvalidPolicy (the policy does not load), never on bad input.

    Local runs (tests, the CLI) bring a clock and a progress callback on their context (a
    :class:`~imsguard.context.LocalRun`); nothing is read from module globals."""
    set_context(request_id=call_getter(context, "getRequestID"))
    try:
        report = _run(event, context)
        answer: dict[str, Any] = redact_all(
            report if isinstance(report, dict) else report.to_json()
        )
    except (InvalidPolicy, TransientFailure):
        raise
    except ConfigStateNotReported as exc:  # raised before the image's PATCH: retry the event
        log(logging.ERROR, "Config state not reported; raising for FunctionGraph to retry")
        raise ConfigStateNotReported(redact(str(exc))) from None
    except Exception as exc:  # a bug must still produce a report and a log line
        get_logger().exception("unexpected failure")
        return _stop("error", f"internal error: {type(exc).__name__}: {redact(str(exc))}")
    if isinstance(report, dict):  # no image work
        return answer
    from imsguard.results import EventReport  # loaded with the work, as the SDK is

    retryable = report.retryable if isinstance(report, EventReport) else []
    if retryable:  # events are retried by FunctionGraph; a sweep reports and goes on
        subjects = ", ".join(r.subject for r in retryable[:10])
        log(
            logging.ERROR,
            "transient IMS failures; raising for FunctionGraph to retry",
            images=len(retryable),
        )
        raise TransientFailure(
            redact(
                f"IMS failed transiently for {len(retryable)} image(s) after retries: {subjects}"
            )
        )
    return answer


def _run(event: Any, context: Any) -> dict[str, Any] | EventReport | SweepReport:
    """The report on an event, or the answer (a plain dict) when it leads to no image work."""
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
    if isinstance(parsed, OrgSweepRequest):
        return _run_org_sweep(parsed, settings, policy, context)
    shard = parsed.shard if isinstance(parsed, SweepRequest) else None
    named = {} if shard is None else {"shard": shard.fields()}  # a shard's answers name it
    if shard is not None and not settings.org_agency:
        return _stop(
            "error",
            f"configuration: an org-shard event needs {ORG_AGENCY}, the agency each member "
            "account lends imsguard; it is not set, so no account is swept",
            **named,
        )
    # One IMS endpoint for every shard would send each account's assumed credentials, for
    # every region, to that one place: in the cloud a shard uses its region's endpoint.
    if shard is not None and settings.ims_endpoint and not isinstance(context, LocalRun):
        return _stop(
            "error",
            f"configuration: {IMS_ENDPOINT} names one IMS endpoint, but an org shard calls "
            f"its own region's ({shard.region}): unset it for organization sweeps",
            **named,
        )
    config = parsed.config
    if config is not None and not settings.config_rules:
        return _stop(
            "ignored",
            f"a Config rule's evaluation, but Config custom-rule mode is off: set "
            f"{CONFIG_RULES}=true (the agency then needs rms:policyStates:update)",
        )
    region_id = (config.resource or {}).get("region_id") if config else None
    if region_id and settings.region and region_id != settings.region:
        return _stop(
            "ignored",
            f"Config evaluated an image in region {shorten(region_id)}; this function "
            f"checks {settings.region}: assign the rule per region, to that region's function",
        )
    if not settings.project_id:
        return _stop(
            "error",
            "configuration: no project id (RUNTIME_PROJECT_ID or IMSGUARD_PROJECT_ID)",
            **named,
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
            **named,
        )
    # The SDK, and what works with it, load only when there is work to do.
    from imsguard.event_check import EventCheck
    from imsguard.ims import gateway_for
    from imsguard.invocation import Invocation
    from imsguard.results import EventReport

    # A sweep waits for nothing: its budget is all the time to the safety margin.
    max_wait_s = float("inf") if isinstance(parsed, SweepRequest) else settings.max_wait_s
    _, budget = _clock_and_budget(context, settings, max_wait_s)
    # Only a local run brings a sweep's progress callback; FunctionGraph's context has none.
    progress = context.progress if isinstance(context, LocalRun) else None
    if shard is not None:  # another account's project, under the agency it lends us
        refused = _limit_refuses(parsed, policy, settings, credentials, budget, context)
        if refused is not None:
            log(logging.ERROR, "org shard refused", reason=refused, **named)
            return _stop("error", refused, **named)
        opened = _open_shard(shard, settings, credentials, budget)
        if isinstance(opened, dict):  # the coordinator reads why from its record
            if settings.report_bucket:
                from imsguard.org.store import record_hop

                hop = parsed.options.hop if isinstance(parsed, SweepRequest) else 0
                outcome = record_hop(settings, credentials, budget, shard, opened, hop)
                opened["sinks"] = {"org": outcome}
            return opened
        gateway, budget = opened
    else:
        try:
            gateway = gateway_for(
                settings.region, settings.ims_endpoint, settings.project_id, credentials
            )
        except ValueError as exc:
            return _stop("error", f"configuration: {exc}")
    invocation = Invocation(settings, credentials, budget, gateway, progress)
    if settings.self_check and shard is None:  # once per container: its module loads only then
        from imsguard.selfcheck import log_once

        log_once(gateway, settings, budget)
    uefi_versions = _uefi_versions(gateway) if settings.uefi_from_ims else None
    states: ConfigStates | None = None
    if config is not None:  # a Config rule's evaluation: its SDK loads only now
        from imsguard.sinks.config import ConfigStates

        states = ConfigStates(
            config,
            policy,
            settings.region,
            credentials,
            settings.config_endpoint,
            budget,
            settings.results_limit,
        )
    report: EventReport | SweepReport
    if isinstance(parsed, SweepRequest):
        report = _run_sweep_hop(parsed, invocation, policy, uefi_versions, states)
        if shard is not None:
            from imsguard.org.shard import explain

            explain(report, shard, settings)
            report.shard = shard.fields()
    else:
        dry_run = settings.dry_run or parsed.dry_run is True
        check = EventCheck(invocation, policy, dry_run, uefi_versions)
        check.observe = states.observe if states else None
        results = check.process(parsed)
        report = EventReport(parsed.summary, dry_run, results, parsed.skipped)
    from imsguard.sinks import finish_sinks, sinks_on

    # An event the handler will raise for is not final: FunctionGraph retries it, and the
    # try that ends it runs the sinks, once (never a notice or metrics twice).
    final = not (isinstance(report, EventReport) and report.retryable)
    if final and sinks_on(settings):  # each sink, and its SDK, loads only when it is on
        report.sinks = finish_sinks(report, invocation, policy)
    if states is not None:  # each state was sent as its image was evaluated
        report.sinks = {**(report.sinks or {}), "config": states.outcome()}
    if shard is not None and settings.report_bucket and not isinstance(report, EventReport):
        outcome = _record_shard_hop(report, invocation, shard)
        report.sinks = {**(report.sinks or {}), "org": outcome}
    return report


def _record_shard_hop(
    report: SweepReport, invocation: Invocation, shard: OrgShard
) -> dict[str, Any]:
    """Tell the org sweep's coordinator what this shard hop found (imsguard.org.store),
    naming this hop's report in OBS when the report sink wrote it."""
    from imsguard.org.store import record_hop

    written = ((report.sinks or {}).get("obs") or {}).get("written") or []
    key = f"{report.report_stem}.json"
    return record_hop(
        invocation.settings,
        invocation.credentials,
        invocation.budget,
        shard,
        report.to_json(),
        report.hop,
        key if key in written else None,
    )


def _run_org_sweep(
    request: OrgSweepRequest, settings: Settings, policy: Policy, context: Any
) -> dict[str, Any]:
    """Coordinate an organization sweep in the cloud: discover its shards, start this
    invocation's share of them asynchronously, continue with the rest (imsguard.org)."""
    if not settings.org_agency:
        return _stop("error", f"configuration: an org-sweep event needs {ORG_AGENCY}")
    if not settings.project_id:
        return _stop("error", "configuration: no project id (RUNTIME_PROJECT_ID)")
    credentials = read_credentials(context)
    if credentials is None:
        return _stop("error", "configuration: no credentials (give the function an agency)")
    keep_secret(*credentials)
    from imsguard.fgs import own_urn
    from imsguard.org.cloud_invoker import CloudInvoker
    from imsguard.org.coordinator import (
        CoordinatorError,
        carried_shards,
        discover,
        org_run_id,
        run_cloud,
    )

    urn = settings.function_urn or own_urn(settings.region, settings.project_id)
    if urn is None:
        return _stop("error", f"configuration: no function to invoke: set {FUNCTION_URN}")
    clock, budget = _clock_and_budget(context, settings, float("inf"))
    event = request.event
    org_run = event.org_run or org_run_id(clock, call_getter(context, "getRequestID"))
    invoker = CloudInvoker(urn, settings, credentials, budget)
    try:
        if settings.report_bucket:  # the run is kept in OBS, and followed to one report
            answer = _run_observed(
                event, org_run, invoker, policy, settings, credentials, budget, context
            )
        else:
            shards = carried_shards(event) or discover(event, settings, credentials, budget)
            answer = run_cloud(event, shards, org_run, invoker, policy, settings, budget)
    except CoordinatorError as exc:
        log(logging.ERROR, "org sweep not started", reason=str(exc))
        return _stop("error", redact(str(exc)), org_run=org_run)
    except SinkError as exc:  # OBS failed before this hop started a shard: a retry may not
        reason = redact(f"org sweep hop {event.hop}: {exc}")
        log(logging.ERROR, "org sweep: raising for FunctionGraph to retry", reason=reason)
        raise TransientFailure(reason) from None
    log(logging.INFO, "org sweep: coordinator hop done", org_run=org_run, hop=event.hop)
    # The coordinator examines no image itself: each shard reports its own (results: []).
    return {"imsguard": __version__, "summary": request.summary, **answer, "results": []}


def _run_observed(
    event: OrgSweepEvent,
    org_run: str,
    invoker: CloudInvoker,
    policy: Policy,
    settings: Settings,
    credentials: Credentials,
    budget: Budget,
    context: Any,
) -> dict[str, Any]:
    """One hop of a coordinator that keeps its run in OBS (imsguard.org.collect)."""
    import uuid

    from imsguard.org.collect import run_observed
    from imsguard.org.coordinator import discover, rediscover
    from imsguard.org.store import RunStore

    store = RunStore(settings, credentials, budget, org_run)
    shards = discover(event, settings, credentials, budget) if event.hop == 0 else None
    # How long a shard's invocation may run: the function's timeout (shards are this function)
    timeout_s = float(os.environ.get("RUNTIME_TIMEOUT") or 0) or (budget.time_left() or 900.0)
    again = lambda shard: rediscover(shard, event, settings, credentials, budget)  # noqa: E731
    claim = str(call_getter(context, "getRequestID") or uuid.uuid4().hex)
    return run_observed(
        event, org_run, shards, store, invoker, policy, settings, budget, timeout_s, again, claim
    )


def _limit_refuses(
    parsed: Any,
    policy: Policy,
    settings: Settings,
    credentials: Credentials,
    budget: Budget,
    context: Any,
) -> str | None:
    """Why an org shard may not apply under the organization's limit (None: it may). The
    local engine (no bucket) enforces the limit itself; anywhere else the coordinator's
    approval, in the run's OBS objects, must allow the shard's changes."""
    shard = parsed.shard
    if shard.phase != "apply" or not policy.org_limited:
        return None
    if isinstance(context, LocalRun) and not settings.report_bucket:
        return None
    from imsguard.org.store import approval_problem

    return approval_problem(settings, credentials, budget, shard, parsed.options)


def _open_shard(
    shard: OrgShard, settings: Settings, credentials: Credentials, budget: Budget
) -> tuple[ImsGateway, Budget] | dict[str, Any]:
    """An org shard's IMS gateway (the account's assumed agency) and the budget its hop keeps
    to; or the answer of a shard that cannot run (status "error": FunctionGraph does not retry
    a permanent failure). STS throttled or unreachable raises TransientFailure: a retry may
    succeed."""
    from imsguard.org.shard import ShardFailed, open_shard

    try:
        return open_shard(shard, settings, credentials, budget)
    except ShardFailed as exc:
        reason = redact(str(exc))
        if exc.transient:
            log(logging.ERROR, "org shard: raising for FunctionGraph to retry", reason=reason)
            raise TransientFailure(reason) from None
        log(logging.ERROR, "org shard failed", reason=reason, **shard.fields())
        return _stop("error", reason, shard=shard.fields())


def _clock_and_budget(context: Any, settings: Settings, max_wait_s: float) -> tuple[Any, Budget]:
    """The invocation's clock and time budget. Only a local run (tests, the CLI:
    imsguard_tools' LocalContext) brings its own clock; FunctionGraph's context has none."""
    local = isinstance(context, LocalRun)
    clock = (context.clock if local else None) or SystemClock()
    return clock, Budget.for_invocation(context, clock, settings.safety_margin_s, max_wait_s)


def _uefi_versions(gateway: ImsGateway) -> frozenset[str] | None:
    """IMS's UEFI-capable OS versions, read once per client (one per set of credentials in a
    container); if IMS cannot say, the built-in table is used and the next invocation asks
    again. The gateway keeps the list: set once, a frozenset, never changed."""
    from imsguard.ims import ImsError

    if gateway.uefi_versions is None:
        try:
            listed = gateway.uefi_os_versions()
        except ImsError as exc:
            log(logging.WARNING, "UEFI OS list not read; using the built-in table", error=str(exc))
            return None
        gateway.uefi_versions = frozenset(normalize_os_version(v) for v in listed)
    return gateway.uefi_versions


def _run_sweep_hop(
    request: SweepRequest,
    invocation: Invocation,
    policy: Policy,
    uefi_versions: frozenset[str] | None,
    states: ConfigStates | None = None,
) -> SweepReport:
    """This invocation's hop of a sweep: check every active private image from the
    request's marker on; continue in a new invocation if time runs out. ``states`` (a
    Config periodic evaluation) is told each image's evaluation."""
    from imsguard.sweep import SweepHop

    dry_run = invocation.settings.dry_run or request.options.dry_run is True
    hop = SweepHop(invocation, policy, request.options, dry_run, uefi_versions)
    hop.observe = states.observe if states else None
    report = hop.run(request.summary)
    report.ims_retries = invocation.ims_calls.retries
    report.examined_before = request.options.examined_before
    report.sweep_id = request.options.sweep_id  # reports in OBS: None on a sweep's hop 0
    report.report_keys_before = list(request.options.report_keys or ())
    if request.options.notices and invocation.settings.notify_topic_urn:
        from imsguard.sinks.digest import received

        report.notices_before = received((n.model_dump() for n in request.options.notices), policy)
    if report.continuation is not None:
        report.continued = _start_next_hop(request, report, invocation, policy)
    return report


def _start_next_hop(
    request: SweepRequest, report: SweepReport, invocation: Invocation, policy: Policy
) -> dict[str, Any]:
    """Invoke this function again, asynchronously, for the sweep's next hop (with SMN on,
    handing it this hop's digest lines: the sweep publishes one digest, on its last hop)."""
    from imsguard.fgs import ContinueError, invoke_async, own_urn

    settings = invocation.settings
    continuation = report.continuation
    assert continuation is not None
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
    progressed = continuation["marker"] != request.options.marker or report.summary.get("updated")
    if not progressed:
        return {"started": False, "reason": "no progress was made; not continuing"}
    project_id = settings.project_id or ""
    urn = settings.function_urn or own_urn(settings.region, project_id)
    if urn is None:
        return {"started": False, "reason": f"no function to invoke: set {FUNCTION_URN}"}
    options: dict[str, Any] = request.options.model_dump(
        exclude={
            "marker",
            "hop",
            "examined_before",
            "planned_before",
            "notices",
            "sweep_id",
            "report_keys",
            *CONFIG_MARKS,
        },
        exclude_none=True,
    )
    carried = ("hop", "examined_before", "planned_before", *CONFIG_MARKS)
    options.update({k: continuation[k] for k in carried if k in continuation})
    if continuation["marker"]:
        options["marker"] = continuation["marker"]
    if settings.report_bucket:  # the sweep's id and its hops' report keys, for its index
        from imsguard.sinks.obs import handed_on as reports_handed_on

        options.update(reports_handed_on(report, invocation))
    notices: list[dict[str, Any]] = []
    if settings.notify_topic_urn:
        from imsguard.sinks.digest import handed_on

        try:
            notices = handed_on(report, policy, invocation.clock.utcnow().date(), settings)
            report.notices_handed = True
        except Exception:  # a bug here must not stop the sweep: this hop publishes instead
            get_logger().exception("digest lines not handed on; this hop publishes its own")
        if notices:
            options["notices"] = notices
    if _hand_on_refused(options):  # what the next hop would refuse is not handed on
        notices = []
        report.notices_handed = False  # this hop publishes its digest itself
    payload = _next_event(request, options)
    try:
        request_id = invoke_async(
            urn,
            payload,
            settings.region,
            settings.fgs_endpoint,
            project_id,
            invocation.credentials,
            invocation.budget.time_left(),
        )
    except ContinueError as exc:
        log(logging.ERROR, "sweep not continued", reason=str(exc))
        return {"started": False, "reason": str(exc)}
    shown = {**options, "notices": len(notices)} if notices else options  # lines, not text
    if "report_keys" in shown:  # a count, not up to SWEEP_MAX_HOPS keys
        shown = {**shown, "report_keys": len(shown["report_keys"])}
    logged = _next_event(request, shown)
    log(logging.INFO, "sweep continued", function_urn=urn, request_id=request_id, **logged)
    return {"started": True, "function_urn": urn, "request_id": request_id, "payload": payload}


def _hand_on_refused(options: dict[str, Any]) -> bool:
    """Check the next hop's options as the next hop will. If they fail (a bug, or a tag no
    limit foresaw), the next hop gets the sweep's position without the digest lines and
    report keys, rather than refusing the whole continuation and ending the sweep."""
    from imsguard.event_models import SweepOptions, validated

    problem = validated(SweepOptions, options)
    if not isinstance(problem, str):
        return False
    log(logging.ERROR, "continuation options refused by their own check", problem=problem)
    for key in ("notices", "sweep_id", "report_keys"):
        options.pop(key, None)
    return True


def _next_event(request: SweepRequest, options: dict[str, Any]) -> dict[str, Any]:
    """The event that continues ``request`` with the next hop's sweep ``options``."""
    if request.shard is not None:  # an org shard goes on as the same shard
        from imsguard.org.shard import continuation_event

        return continuation_event(request.shard, options)
    if request.config is not None:  # a Config periodic evaluation goes on as one
        return {**config_event(request.config), CONFIG_SWEEP: options}
    return {"action": "sweep", **options}


def _stop(status: str, reason: str, **extra: Any) -> dict[str, Any]:
    """The answer for an event that leads to no image work."""
    return {"status": status, "imsguard": __version__, "reason": reason, **extra, "results": []}
