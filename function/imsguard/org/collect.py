"""The cloud coordinator of an org sweep that keeps its run in OBS: it starts the shards, at
most ``IMSGUARD_ORG_CONCURRENCY`` running at once, follows each to its end through the
records its hops write (imsguard.org.store), and merges them into one organization report.

With an organization limit (``org_max_updates`` / ``org_max_updates_percent``) and a real
run, every shard first plans (a dry run); once all have, the planned changes are compared
with the limit: within it, every shard applies, each at most what it planned; beyond it, or
when any shard did not plan, none does, and the report lists every planned change.

One coordinator hop polls every POLL_S seconds until its time runs out, then writes the
run's state and continues itself with ``{"action": "org-sweep", "org_run", "hop"}`` only:
a single chain of coordinator hops, each the only one writing the state. A hop first claims
its number (claims/hop-<n>.json, read back after CLAIM_S: OBS has no conditional write, so
the later of two copies delivered at once wins and the other stops); a hop that finds the
state at its own hop or later, or the run done, is a duplicate and stops; the state is
written after every batch of starts, so a hop retried after a crash starts none twice. A
shard's hop that writes no record is followed through FunctionGraph's records of the
invocation once it is older than the function's timeout (failed, discarded, or ended without
one: "failed" or "lost"), and past the shard deadline without any sign it is "lost": a
shard that keeps failing is reported, never waited for forever.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from imsguard import __version__
from imsguard.fgs import ENDED_BADLY, ContinueError
from imsguard.logs import log
from imsguard.org.coordinator import (
    START_TIME_S,
    CoordinatorError,
    Shard,
    limit_of,
    plan_problem,
    shard_event,
)
from imsguard.org.merge import FAILED, add_hop, new_entry, org_report
from imsguard.org.store import (
    LATEST,
    REPORT,
    SHARDS,
    STATE,
    RunStore,
    approval_name,
    hop_name,
)
from imsguard.sinks import SinkError

if TYPE_CHECKING:
    from imsguard.clock import Budget
    from imsguard.event_models import OrgSweepEvent
    from imsguard.policy import Policy
    from imsguard.settings import Settings

POLL_S = 10.0  # between two looks at the running shards
REDISCOVERIES = 3  # coordinator hops that try a throttled account again, at most
REPLACED = "replaced"  # a throttled account's entry, once discovered: its shards follow
REDISCOVERY_WAIT_S = 60.0  # with only throttled accounts left, wait this long, then go on
CLAIM_S = 2.0  # between claiming a coordinator hop and reading the claim back
START_TRIES = 3  # FunctionGraph refusing to start a shard this often makes it an error
# A shard hop with no record and no word from FunctionGraph this long after it started is
# lost, unless IMSGUARD_ORG_SHARD_DEADLINE_SECONDS says otherwise: FunctionGraph keeps an
# async event an hour by default, then runs it (RUNTIME_TIMEOUT at most) and retries it up to
# twice (the template's max_retries).
EVENT_AGE_S = 3600.0
TRIES = 3


Rediscover = Callable[[Shard], list[Shard]]


class Watcher(Protocol):
    """Starts shards and says how their invocations ended (imsguard.org.cloud_invoker)."""

    def start(self, event: dict[str, Any]) -> str: ...

    def status(self, request_id: str, started: datetime) -> tuple[str, str] | None: ...


def run_observed(
    request: OrgSweepEvent,
    org_run: str,
    shards: list[Shard] | None,
    store: RunStore,
    watcher: Watcher,
    policy: Policy,
    settings: Settings,
    budget: Budget,
    timeout_s: float,
    rediscover: Rediscover,
    claim: str,
) -> dict[str, Any]:
    """One coordinator hop. ``shards``: what discovery found (hop 0), else None (read from
    the run); ``rediscover``: an account's shards, discovered again; ``claim``: this
    invocation's request id. Raises CoordinatorError when the run cannot go on, and
    sinks.SinkError when OBS fails before any shard of this hop started (FunctionGraph then
    retries the hop)."""
    state = store.read(STATE)
    if state is not None and request.hop == 0 and request.org_run is not None:
        raise CoordinatorError(
            f"org run {org_run} exists already (obs://{store.bucket}/{store.prefix}): a "
            "new org sweep names no org_run, and a run goes on only from its next hop"
        )
    if state is None:
        if shards is None:
            raise CoordinatorError(
                f"org run {org_run} has no state in obs://{store.bucket}/{store.prefix}: "
                "start a new org sweep"
            )
        store.write(SHARDS, [s._asdict() for s in shards])
        state = new_state(request, policy)
    else:  # a later hop, or the first one retried (its state says hop -1)
        if state["hop"] >= request.hop or state["phase"] == "done":
            return _ignored(org_run, f"the run is at hop {state['hop']}, {state['phase']}")
        listed = store.read(SHARDS)
        if not isinstance(listed, list):
            raise CoordinatorError(f"org run {org_run} has no shards.json: start a new org sweep")
        shards = [Shard(**s) for s in listed]
    store.write(f"claims/hop-{request.hop}.json", {"claim": claim})
    budget.clock.sleep(CLAIM_S)
    if (store.read(f"claims/hop-{request.hop}.json") or {}).get("claim") != claim:
        return _ignored(org_run, "another invocation of the same hop claimed it")
    run = OrgRun(org_run, state, shards, store, watcher, policy, settings, budget, timeout_s)
    poll_s = 0.0  # how long the last look took: the hop keeps that back, besides POLL_S
    try:
        if request.hop > 0:
            run.rediscover(rediscover)
        while True:
            began = budget.clock.monotonic()
            run.follow()
            if run.start_more():
                run.save(request.hop - 1)  # a retried hop starts none of them again
            poll_s = budget.clock.monotonic() - began
            left = budget.time_left()
            reserve = POLL_S + START_TIME_S + 2 * poll_s
            if not run.running and run.next_pending() is None:
                if run.retrying():  # only throttled accounts left: the next hop tries them
                    if left is None or left > REDISCOVERY_WAIT_S + reserve:
                        budget.clock.sleep(REDISCOVERY_WAIT_S)
                    break
                if run.next_phase():
                    continue
                return run.finish(request.hop)
            if left is not None and left < reserve:
                break
            budget.clock.sleep(POLL_S)
    except Exception as exc:  # the next hop goes on from the state this one writes
        log(logging.ERROR, "org sweep: hop cut short; continuing", org_run=org_run, error=repr(exc))
    try:
        run.save(request.hop)
    except SinkError as exc:  # a next hop would start again what this one started
        return {
            "status": "error",
            "org_run": org_run,
            "reason": f"the run's state was not written ({exc}): it stopped at coordinator "
            f"hop {request.hop}; shards started in this hop finish on their own, and "
            "no report is written. Start a new org sweep",
        }
    payload = {"action": "org-sweep", "org_run": org_run, "hop": request.hop + 1}
    answer: dict[str, Any] = {"status": "ok", "org_run": org_run, **run.progress()}
    try:
        answer["continued"] = {"started": True, "request_id": watcher.start(payload)}
    except ContinueError as exc:
        log(logging.ERROR, "org sweep not continued", org_run=org_run, reason=str(exc))
        answer["status"] = "error"
        answer["continued"] = {"started": False, "reason": f"{exc}: rerun with this payload"}
    answer["continued"]["payload"] = payload
    return answer


def _ignored(org_run: str, why: str) -> dict[str, Any]:
    """The answer of a coordinator hop that is a duplicate (FunctionGraph delivering it
    twice, a retry after the hop went on, or a hop of a finished run)."""
    return {
        "status": "ignored",
        "org_run": org_run,
        "reason": f"a retried or duplicate coordinator hop of run {org_run}: {why}",
    }


def new_state(request: OrgSweepEvent, policy: Policy) -> dict[str, Any]:
    """A run's state before its first shard starts."""
    limited = policy.org_limited and request.dry_run is not True
    return {
        "kind": "org-run",
        "hop": -1,
        "request": request.model_dump(
            exclude_none=True,
            include={"dry_run", "since", "accounts", "regions", "ou", "tag"},
        ),
        "phase": "plan" if limited or request.dry_run is True else "apply",
        "limited": limited,
        "next": 0,
        "running": [],
        "entries": {},
        "caps": None,
        "plan": None,
        "rediscovered": {},  # a throttled account's entry: how often it was tried again
        "start_failures": {},  # a shard's: how often FunctionGraph refused to start it
    }


class OrgRun:
    """A run's state, as one coordinator hop moves it on (every change is in ``state``,
    which the hop writes back before it continues)."""

    def __init__(
        self,
        org_run: str,
        state: dict[str, Any],
        shards: list[Shard],
        store: RunStore,
        watcher: Watcher,
        policy: Policy,
        settings: Settings,
        budget: Budget,
        timeout_s: float,
    ) -> None:
        self.org_run = org_run
        self.state = state
        self.shards = shards
        self.store = store
        self.watcher = watcher
        self.policy = policy
        self.concurrency = settings.org_concurrency
        self.budget = budget
        self.timeout_s = timeout_s
        self.stale_s = settings.org_shard_deadline_s or EVENT_AGE_S + TRIES * timeout_s

    @property
    def running(self) -> list[dict[str, Any]]:
        return self.state["running"]  # type: ignore[no-any-return]

    def now(self) -> datetime:
        return self.budget.clock.utcnow().astimezone(timezone.utc)

    def next_pending(self) -> int | None:
        """The next shard to start (None: every one was)."""
        index = self.state["next"]
        while index < len(self.shards) and self.shards[index].status != "pending":
            index += 1
        self.state["next"] = index
        return index if index < len(self.shards) else None

    def retrying(self) -> bool:
        """Whether a throttled account will be tried again (in the first phase only: an
        account found after the plan was never planned)."""
        if self.state["caps"] is not None:
            return False
        tried = self.state["rediscovered"]
        return any(
            s.status == "throttled" and tried.get(str(i), 0) < REDISCOVERIES
            for i, s in enumerate(self.shards)
        )

    def rediscover(self, discover: Rediscover) -> None:
        """Try each throttled account again: its shards join the run's order at the end
        (the entries of those before keep their places), and the run's shards are rewritten;
        after REDISCOVERIES tries it stays "throttled" (reported as not finished)."""
        if not self.retrying():
            return
        tried = self.state["rediscovered"]
        found: list[Shard] = []
        for index, shard in enumerate(self.shards):
            if shard.status != "throttled" or tried.get(str(index), 0) >= REDISCOVERIES:
                continue
            tried[str(index)] = tried.get(str(index), 0) + 1
            shards = discover(shard)
            if len(shards) == 1 and shards[0].status == "throttled":
                self.shards[index] = shards[0]
                continue
            self.shards[index] = shard._replace(status=REPLACED)
            found += shards
        self.shards += found
        self.store.write(SHARDS, [s._asdict() for s in self.shards])
        log(logging.INFO, "org sweep: throttled accounts tried again", shards=len(found))

    def save(self, hop: int) -> None:
        """Write the run's state as coordinator hop ``hop`` leaves it."""
        self.state["hop"] = hop
        self.store.write(STATE, self.state)

    def start_more(self) -> int:
        """Start shards while fewer than IMSGUARD_ORG_CONCURRENCY run; how many started. A
        shard FunctionGraph refuses to start is tried again at the next look, START_TRIES
        times at most. Under a limit, each apply shard's approval (a new token) is written
        just before it starts."""
        phase = self.state["phase"]
        request = _request(self.state)
        failures = self.state["start_failures"]
        started = 0
        index = self.next_pending()
        while index is not None and len(self.running) < self.concurrency:
            left = self.budget.time_left()
            if left is not None and left < START_TIME_S:
                break
            shard = self.shards[index]
            caps = self.state["caps"]
            cap = None if caps is None else caps.get(str(index), 0)
            token = None if cap is None else secrets.token_hex(16)
            if token is not None:
                approval = {"token": token, "max_changes": cap}
                self.store.write(approval_name(shard), approval)
            event = shard_event(shard, self.org_run, phase, request, cap, token)
            try:
                request_id = self.watcher.start(event)
            except ContinueError as exc:
                tries = failures[str(index)] = failures.get(str(index), 0) + 1
                if tries < START_TRIES:
                    break  # the next look tries it again, in order
                entry = new_entry(shard._asdict(), "error", f"not started: {exc}")
                self.state["entries"][str(index)] = entry
            else:
                self.running.append(
                    {
                        "index": index,
                        "hop": 0,
                        "request_id": request_id,
                        "started": self.now().isoformat(),
                        "entry": new_entry(shard._asdict()),
                        "token": token,
                    }
                )
                started += 1
            self.state["next"] = index + 1
            index = self.next_pending()
        return started

    def follow(self) -> None:
        """Add each running shard's new hop records; move each that ended to the entries at
        once (so a failure part-way never counts a record twice) and revoke its approval."""
        for item in list(self.running):
            if not self._ended(item):
                continue
            self.state["entries"][str(item["index"])] = item["entry"]
            self.running.remove(item)
            if item.get("token"):
                shard = self.shards[item["index"]]
                self.store.write(approval_name(shard), {"token": item["token"], "revoked": True})

    def _record(self, item: dict[str, Any]) -> Any:
        """The record of the running shard's current hop (None: not written yet)."""
        shard = self.shards[item["index"]]
        phase = self.state["phase"]
        return self.store.read(
            hop_name(phase, shard.account, shard.region, shard.project_id, item["hop"])
        )

    def _ended(self, item: dict[str, Any]) -> bool:
        """Follow one running shard through the records of its hops: whether it ended.
        FunctionGraph is asked about a hop only once it could have ended (older than the
        function's timeout), not at every look."""
        entry = item["entry"]
        while (record := self._record(item)) is not None:
            add_hop(entry, record)
            if entry["status"] != "running":
                return True
            started = record.get("continued_at") or self.now().isoformat()
            item.update(hop=item["hop"] + 1, request_id=record["continued"], started=started)
        started = datetime.fromisoformat(item["started"])
        age = (self.now() - started).total_seconds()
        where = f"hop {item['hop']} (request {item['request_id']})"
        said = self.watcher.status(item["request_id"], started) if age > self.timeout_s else None
        if said is not None and said[0] in ENDED_BADLY:
            entry["status"] = "failed"
            entry["reason"] = f"FunctionGraph: {where} ended {said[0]}: {said[1] or 'no message'}"
            return True
        if said is not None and said[0] == "SUCCESS":  # its record, if any, is written by now
            if self._record(item) is not None:
                return self._ended(item)
            entry["status"] = "lost"
            entry["reason"] = (
                f"{where} ended without writing its record (its log says why: a refused "
                "approval, a configuration error, or OBS failing)"
            )
            return True
        if age > self.stale_s:
            entry["status"] = "lost"
            entry["reason"] = f"no record of {where} {self.stale_s:.0f} s after it started"
            return True
        return False

    def next_phase(self) -> bool:
        """After every shard planned: whether they now apply (within the limit)."""
        state = self.state
        if state["phase"] != "plan" or not state["limited"]:
            return False
        entries = self.entries()  # in the order of the shards not replaced
        kept = [(i, s) for i, s in enumerate(self.shards) if s.status != REPLACED]
        runnable = [shard.status == "pending" for _, shard in kept]
        reason, state["plan"] = plan_problem(self.policy, entries, runnable)
        state["plan"]["reason"] = reason
        planned = state["plan"]["planned"]
        if state["plan"]["reason"]:
            return False
        state["caps"] = {
            str(i): int(e["summary"].get("would_update", 0))
            for (i, shard), e in zip(kept, entries, strict=True)
            if shard.status == "pending"
        }
        state.update(phase="apply", next=0, running=[], entries={})
        log(logging.INFO, "org sweep: planned within the limit; applying", planned=planned)
        return True

    def entries(self) -> list[dict[str, Any]]:
        """Every shard's entry, in the run's order (one that never ran says why)."""
        found = self.state["entries"]
        return [
            found.get(str(i)) or new_entry(s._asdict(), s.status, s.problem)
            for i, s in enumerate(self.shards)
            if s.status != REPLACED
        ]

    def finish(self, hop: int) -> dict[str, Any]:
        """Merge the entries into the organization's report and write it; the run's state
        then says it is done (at coordinator hop ``hop``), so a duplicate hop stops."""
        entries = self.entries()
        dry_run = _request(self.state).dry_run is True
        if dry_run and self.policy.org_limited:  # would a real run be held?
            runnable = [s.status == "pending" for s in self.shards if s.status != REPLACED]
            reason, self.state["plan"] = plan_problem(self.policy, entries, runnable)
            self.state["plan"]["reason"] = reason
        plan = self.state["plan"] or {}
        reason = plan.get("reason")
        if reason and not dry_run:  # held: what each shard planned is reported
            for entry in entries:
                if entry["status"] == "ok":
                    entry["status"] = "held"
        limit = limit_of(self.policy, plan)
        now = self.now().isoformat(timespec="seconds").replace("+00:00", "Z")
        org_run = self.org_run
        report = org_report(org_run, entries, now, dry_run, reason, limit)
        report["imsguard"] = __version__
        key = self.store.write(REPORT, report)
        self.store.write(LATEST, report, top_level=True)
        self.state.update(phase="done", running=[])
        self.save(hop)
        log(logging.INFO, "org sweep: report written", org_run=org_run, key=key)
        return {
            "status": report["status"],
            "org_run": org_run,
            "reason": report["reason"],
            "report": f"obs://{self.store.bucket}/{key}",
            "examined": report["examined"],
            "summary": report["summary"],
            "failed": len(report["failed"]),
        }

    def progress(self) -> dict[str, Any]:
        """Where the run is, for the hop's answer."""
        ended = self.state["entries"].values()
        return {
            "phase": self.state["phase"],
            "shards_total": len(self.shards),
            "running": len(self.running),
            "ended": len(self.state["entries"]),
            "failed": sum(1 for e in ended if e["status"] in FAILED),
        }


def _request(state: dict[str, Any]) -> OrgSweepEvent:
    from imsguard.event_models import OrgSweepEvent

    return OrgSweepEvent(action="org-sweep", **state["request"])
