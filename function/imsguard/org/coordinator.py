"""The coordinator of an organization sweep: which shards there are, and starting them.

It lists the accounts (the request's, else Organizations'), each account's region projects
(IAM under that account's assumed agency), and turns them into shards in a deterministic
order: accounts as listed, then each account's projects by region and name. An account or
region that cannot be swept is a shard entry with a status and a reason, never the end of
the run.

Three ways to run the shards. The local engine (``run_waiting``, imsguard_tools.org_local)
runs them through an :class:`Invoker` that hands their answers back. In the cloud each shard
is an asynchronous invocation of this same function (org.cloud_invoker): with the run kept in
OBS the coordinator follows them to one report (org.collect); without a bucket
(``run_cloud``) it starts at most ``IMSGUARD_ORG_CONCURRENCY`` per coordinator invocation,
continues itself with an index into the shard order (never credentials) and does not wait.
The organization's limit (``org_max_updates`` / ``org_max_updates_percent``) is enforced in
two phases by the first two: every shard plans (a dry run), and only if the total is within
the limit does any shard apply (``plan_problem``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from imsguard.fgs import ContinueError
from imsguard.logs import log
from imsguard.org.calls import OrgError, Throttled
from imsguard.org.credentials import agency_urn, assume
from imsguard.org.discovery import Account, list_accounts, list_regions
from imsguard.org.merge import add_hop, hop_record, new_entry, org_report
from imsguard.org.shard import SESSION_PREFIX

if TYPE_CHECKING:
    from imsguard.clock import Budget, Clock
    from imsguard.context import Credentials
    from imsguard.event_models import OrgSweepEvent
    from imsguard.policy import Policy
    from imsguard.settings import Settings

DISCOVERY_THREADS = 8  # accounts whose regions are read at once
DISCOVERY_DURATION_S = 900  # the shortest STS allows: discovery needs one IAM call
PENDING_BYTES = 48 * 1024  # the shards a hop hands on, at most (JSON): else start_at
START_TIME_S = 5.0  # a coordinator with less time left continues itself instead


class Shard(NamedTuple):
    """One (account, project) unit, or an account or region that cannot be swept:
    ``problem`` says why (its ``status``: "error" or "skipped")."""

    account: str
    account_name: str | None
    region: str | None
    project_id: str | None
    status: str = "pending"
    problem: str | None = None

    def pending(self) -> dict[str, Any]:
        """The shard as a coordinator hop hands it on (event_models.PendingShard)."""
        fields = {"account": self.account, "region": self.region, "project_id": self.project_id}
        return {**fields, "account_name": self.account_name} if self.account_name else fields

    def entry(self) -> dict[str, Any]:
        """The shard's identity, as every report of it names it."""
        return {
            "account": self.account,
            "region": self.region,
            "project_id": self.project_id,
        }


class Starter(Protocol):
    """Starts shards (org.cloud_invoker.CloudInvoker: an async invocation each)."""

    def start(self, event: dict[str, Any]) -> str:
        """Start one invocation with ``event``; returns its handle (a request id)."""
        ...


class Invoker(Protocol):
    """Starts shards and hands back their answers (the local engine)."""

    def start(self, event: dict[str, Any]) -> str:
        """Start one invocation with ``event``; returns its handle (a request id)."""
        ...

    def results(self, handles: list[str]) -> list[dict[str, Any]]:
        """The reports of the invocations ``handles`` (in that order), once all ended."""
        ...


class CoordinatorError(Exception):
    """The org sweep cannot start at all (no accounts to list, an org limit in the cloud)."""


NOT_A_MEMBER = (
    "not an active member of the organization (Organizations' list of accounts): not swept"
)


def discover(
    request: OrgSweepEvent, settings: Settings, caller: Credentials, budget: Budget
) -> list[Shard]:
    """Every shard of the request, in a deterministic order. Raises CoordinatorError when
    the accounts cannot be listed; an account or region that fails is a shard with a
    status."""
    if not settings.org_agency or not settings.sts_endpoint or not settings.project_id:
        raise CoordinatorError("configuration: an org sweep needs IMSGUARD_ORG_AGENCY")
    accounts: list[Account]
    if request.accounts and not settings.org_domain_id:
        accounts = [Account(a, "", "active") for a in request.accounts]
    else:
        if not settings.org_domain_id:
            raise CoordinatorError(
                "configuration: listing the organization's accounts needs "
                "IMSGUARD_ORG_DOMAIN_ID (the management account's id), or give 'accounts'"
            )
        try:
            accounts = list_accounts(
                caller,
                settings.org_domain_id,
                budget,
                request.ou,
                request.tag_pair(),
                settings.organizations_endpoint,
            )
        except OrgError as exc:
            raise CoordinatorError(f"the organization's accounts were not listed: {exc}") from None
        if request.accounts:  # named accounts, checked against the organization's members
            members = {a.id: a for a in accounts}
            accounts = [
                members.get(a) or Account(a, "", "not a member", NOT_A_MEMBER)
                for a in request.accounts
            ]
    wanted = wanted_regions(request, settings)
    with ThreadPoolExecutor(max_workers=DISCOVERY_THREADS) as pool:
        found = pool.map(
            lambda a: _account_shards(a, request, wanted, settings, caller, budget), accounts
        )
        return [shard for shards in found for shard in shards]


def rediscover(
    shard: Shard, request: OrgSweepEvent, settings: Settings, caller: Credentials, budget: Budget
) -> list[Shard]:
    """The shards of an account whose discovery was throttled, discovered again."""
    account = Account(shard.account, shard.account_name or "", "active")
    return _account_shards(
        account, request, wanted_regions(request, settings), settings, caller, budget
    )


def wanted_regions(request: OrgSweepEvent, settings: Settings) -> tuple[str, ...]:
    """The request's regions within IMSGUARD_ORG_REGIONS (either alone when the other is
    unset; () for every region)."""
    asked = tuple(request.regions or ())
    allowed = settings.org_regions
    if asked and allowed:
        return tuple(r for r in asked if r in allowed)
    return asked or allowed


def _account_shards(
    account: Account,
    request: OrgSweepEvent,
    wanted: tuple[str, ...],
    settings: Settings,
    caller: Credentials,
    budget: Budget,
) -> list[Shard]:
    """One account's shards: one per region project, or one entry that says why none."""
    name = _shard_name(account.name)
    if account.skipped:
        return [Shard(account.id, name, None, None, "skipped", account.skipped)]
    if request.regions and not wanted:
        return [
            Shard(
                account.id,
                name,
                None,
                None,
                "skipped",
                "none of the regions asked for is in IMSGUARD_ORG_REGIONS",
            )
        ]
    assert settings.org_agency and settings.sts_endpoint and settings.project_id
    urn = agency_urn(account.id, settings.org_agency)
    try:
        assumed = assume(
            urn,
            f"{SESSION_PREFIX}discovery",
            DISCOVERY_DURATION_S,
            caller,
            settings.project_id,
            settings.sts_endpoint,
            budget,
        )
        projects = list_regions(
            assumed.credentials, account.id, budget, wanted, settings.iam_endpoint
        )
    except OrgError as exc:
        log(logging.ERROR, "org sweep: account not discovered", account=account.id, error=str(exc))
        # Throttled still, after the call's own retries: a coordinator that keeps its run in
        # OBS tries the account again in a later hop (imsguard.org.collect).
        status = "throttled" if isinstance(exc, Throttled) else "error"
        return [Shard(account.id, name, None, None, status, f"regions not listed ({urn}): {exc}")]
    projects.sort(key=lambda p: (p.region, p.name))
    shards = [Shard(account.id, name, p.region, p.id) for p in projects]
    seen = {p.region for p in projects}
    for region in request.regions or ():
        if region in wanted and region not in seen:
            shards.append(
                Shard(
                    account.id,
                    name,
                    region,
                    None,
                    "skipped",
                    f"account {account.id} has no enabled project in {region}",
                )
            )
    return shards


def _shard_name(name: str) -> str | None:
    """An account's name as a shard event may carry it (at most 64, no control characters)."""
    cleaned = re.sub(r"[\x00-\x1f\x7f]", " ", name)[:64]
    return cleaned or None


def org_run_id(clock: Clock, request_id: Any) -> str:
    """A new run's id: its day and the coordinator's request id (what STS session names and
    shard events allow). No time of day: FunctionGraph retrying the first hop the same day
    finds the same run, and goes on with it rather than start every shard again."""
    tail = re.sub(r"[^A-Za-z0-9._-]", "", str(request_id or ""))[:24]
    return f"{clock.utcnow():%Y%m%d}-{tail or 'local'}"


def shard_event(
    shard: Shard,
    org_run: str,
    phase: str,
    request: OrgSweepEvent,
    max_changes: int | None = None,
    approval: str | None = None,
) -> dict[str, Any]:
    """The org-shard event that sweeps ``shard`` (no credentials: it assumes its agency);
    ``max_changes``: the most it may change, as the organization's plan found it, and
    ``approval`` the token of the coordinator's approval of that, in the run's OBS objects."""
    sweep: dict[str, Any] = {}
    if max_changes is not None:
        sweep["max_changes"] = max_changes
    if request.dry_run is not None:
        sweep["dry_run"] = request.dry_run
    if request.since is not None:
        sweep["since"] = request.since
    event: dict[str, Any] = {
        "action": "org-shard",
        "org_run": org_run,
        "account": shard.account,
        "region": shard.region,
        "project_id": shard.project_id,
        "phase": phase,
        "sweep": sweep,
    }
    if shard.account_name:
        event["account_name"] = shard.account_name
    if approval is not None:
        event["approval"] = approval
    return event


def over_limit(policy: Policy, changes: int, examined: int) -> str | None:
    """Why no shard may apply: the organization's planned changes exceed its limit."""
    most = policy.org_max_updates
    percent = policy.org_max_updates_percent
    done = "nothing was changed in any account; the planned changes are reported per shard"
    if most is not None and changes > most:
        return f"{changes} images would change, more than org_max_updates {most}; {done}"
    if percent is not None and examined and 100 * changes / examined > percent:
        return (
            f"{changes} of {examined} images would change ({100 * changes / examined:.1f}%), "
            f"more than org_max_updates_percent {percent:g}; {done}"
        )
    return None


def _entry(shard: Shard, answer: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """A shard's entry from the answer of its one hop (the local engine runs each shard in
    one invocation: one that would go on in another is "unfinished")."""
    entry = new_entry(shard._asdict())
    add_hop(entry, hop_record(answer, 0, None))
    if status is not None and entry["status"] == "ok":
        entry["status"] = status
    return entry


def totals(entries: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
    """The organization's images examined and its summary (each shard's summed)."""
    summary: dict[str, int] = {}
    for entry in entries:
        for key, count in entry["summary"].items():
            summary[key] = summary.get(key, 0) + int(count)
    return sum(e["examined"] for e in entries), dict(sorted(summary.items()))


def limit_of(policy: Policy, plan: dict[str, Any] | None) -> dict[str, Any] | None:
    """The organization's limit and what its plan counted, for the report (None: no limit)."""
    if not policy.org_limited:
        return None
    return {
        "org_max_updates": policy.org_max_updates,
        "org_max_updates_percent": policy.org_max_updates_percent,
        "planned": (plan or {}).get("planned"),
        "examined": (plan or {}).get("examined"),
    }


def plan_problem(
    policy: Policy, entries: list[dict[str, Any]], runnable: list[bool]
) -> tuple[str | None, dict[str, Any]]:
    """Why no shard may apply after the plan (None: every one may), and the plan's counts.
    ``runnable``: which entries are shards that ran (not skipped before they could)."""
    # A shard that ran and did not plan, or an account still throttled (never discovered)
    failed = [
        e
        for e, ran in zip(entries, runnable, strict=True)
        if (ran and e["status"] != "ok") or e["status"] == "throttled"
    ]
    examined, summary = totals(entries)
    plan = {"examined": examined, "planned": summary.get("would_update", 0)}
    if failed:
        return (
            f"{len(failed)} shard(s) did not plan (first: account {failed[0]['account']} "
            f"{failed[0]['region']}): the organization's limit cannot be checked; "
            "nothing was changed in any account"
        ), plan
    return over_limit(policy, plan["planned"], examined), plan


def run_waiting(
    request: OrgSweepEvent,
    shards: list[Shard],
    org_run: str,
    invoker: Invoker,
    policy: Policy,
    generated_at: str,
) -> dict[str, Any]:
    """Every shard to the end, through an invoker that waits (the local engine); the
    organization's report (imsguard.org.merge). With an org limit and a real run: every
    shard plans, then all apply or none does."""
    runnable = [s for s in shards if s.status == "pending"]

    def run(phase: str, caps: list[int | None] | None = None) -> list[dict[str, Any]]:
        caps = caps or [None] * len(runnable)
        handles = [
            invoker.start(shard_event(s, org_run, phase, request, cap))
            for s, cap in zip(runnable, caps, strict=True)
        ]
        return invoker.results(handles)

    reason: str | None = None
    plan: dict[str, Any] | None = None
    if policy.org_limited and request.dry_run is not True:
        planned = [_entry(s, r) for s, r in zip(runnable, run("plan"), strict=True)]
        reason, plan = plan_problem(policy, planned, [True] * len(planned))
        if reason is None:  # each shard may change at most what it planned
            caps: list[int | None] = [int(e["summary"].get("would_update", 0)) for e in planned]
            entries = [_entry(s, r) for s, r in zip(runnable, run("apply", caps), strict=True)]
        else:
            entries = [
                {**e, "status": "held" if e["status"] == "ok" else e["status"]} for e in planned
            ]
    else:
        phase = "plan" if request.dry_run is True else "apply"
        entries = [_entry(s, r) for s, r in zip(runnable, run(phase), strict=True)]
        if policy.org_limited:  # a dry run says whether a real one would be held
            reason, plan = plan_problem(policy, entries, [True] * len(entries))
    by_shard = dict(zip(runnable, entries, strict=True))
    ordered = [by_shard.get(s) or new_entry(s._asdict(), s.status, s.problem) for s in shards]
    dry_run = request.dry_run is True
    return org_report(org_run, ordered, generated_at, dry_run, reason, limit_of(policy, plan))


def run_cloud(
    request: OrgSweepEvent,
    shards: list[Shard],
    org_run: str,
    invoker: Starter,
    policy: Policy,
    settings: Settings,
    budget: Budget,
) -> dict[str, Any]:
    """Start this invocation's share of the shards (IMSGUARD_ORG_CONCURRENCY at most, from
    ``request.start_at``), then continue with the rest; results are not awaited."""
    if policy.org_limited and request.dry_run is not True:
        raise CoordinatorError(
            "the policy sets org_max_updates / org_max_updates_percent: the cloud coordinator "
            "enforces them only while it keeps its run in OBS, and IMSGUARD_REPORT_BUCKET is "
            "unset; it started no shard rather than ignore the limit: set the bucket, run a "
            "dry run, or remove the limit"
        )
    phase = "plan" if request.dry_run is True else "apply"
    digest = shards_digest(shards)
    if request.shards_digest is not None and request.shards_digest != digest:
        raise CoordinatorError(
            f"the organization's shards changed since this run's first hop (accounts, regions "
            f"or agencies differ): the shards from position {request.start_at} on were not "
            "started, so none is skipped or started twice; run the org sweep again"
        )
    entries: list[dict[str, Any]] = []
    index = request.start_at
    started = 0
    while index < len(shards):
        shard = shards[index]
        if shard.status != "pending":
            entries.append(
                {**new_entry(shard._asdict(), shard.status, shard.problem), "index": index}
            )
            index += 1
            continue
        left = budget.time_left()
        if started >= settings.org_concurrency or (left is not None and left < START_TIME_S):
            break
        try:
            handle = invoker.start(shard_event(shard, org_run, phase, request))
        except ContinueError as exc:
            entries.append({**shard.entry(), "index": index, "status": "error", "reason": str(exc)})
        else:
            entries.append(
                {**shard.entry(), "index": index, "status": "started", "request_id": handle}
            )
        started += 1
        index += 1
    answer: dict[str, Any] = {
        "status": "ok",
        "org_run": org_run,
        "shards_total": len(shards),
        "shards": entries,
        "results": "each shard reports on its own (its sweep report, in OBS when configured)",
    }
    if index < len(shards) and index == request.start_at:  # no progress: do not loop
        answer["status"] = "error"
        answer["reason"] = (
            f"no shard could be started (too little time left after discovery, or "
            f"IMSGUARD_ORG_CONCURRENCY is 0): rerun from position {index} with a longer timeout"
        )
    elif index < len(shards):
        carried = [s.pending() for s in shards[index:] if s.status == "pending"]
        payload: dict[str, Any] | None = continuation(request, org_run, index, digest)
        if len(json.dumps(carried)) <= PENDING_BYTES:  # the next hop discovers nothing again
            entries += [
                {**new_entry(s._asdict(), s.status, s.problem), "index": at}
                for at, s in enumerate(shards[index:], index)
                if s.status != "pending"
            ]
            payload = continuation(request, org_run, 0, None, carried) if carried else None
        if payload is not None:
            try:
                answer["continued"] = {"started": True, "request_id": invoker.start(payload)}
            except ContinueError as exc:
                reason = f"{exc}: rerun with this payload"
                answer["continued"] = {"started": False, "reason": reason}
            answer["continued"]["payload"] = payload
    return answer


def continuation(
    request: OrgSweepEvent,
    org_run: str,
    start_at: int,
    digest: str | None,
    pending: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The event that continues the coordinator: with the shards still to start
    (``pending``), or else at shard ``start_at`` of the same order (``digest``)."""
    event = request.model_dump(
        exclude_none=True, exclude={"start_at", "hop", "org_run", "shards_digest", "pending"}
    )
    event.update(org_run=org_run, hop=request.hop + 1)
    if pending is not None:
        event["pending"] = pending
    else:
        event.update(start_at=start_at, shards_digest=digest)
    return event


def carried_shards(request: OrgSweepEvent) -> list[Shard] | None:
    """The shards an earlier hop handed on (None: discover them)."""
    if request.pending is None:
        return None
    return [Shard(p.account, p.account_name, p.region, p.project_id) for p in request.pending]


def shards_digest(shards: list[Shard]) -> str:
    """A short digest of the shard order (accounts, regions, projects and their status)."""
    keys = [(s.account, s.region, s.project_id, s.status) for s in shards]
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]
