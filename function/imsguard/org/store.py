"""An org sweep's run, kept in OBS (``IMSGUARD_REPORT_BUCKET``) under
``<IMSGUARD_REPORT_PREFIX>org/<org run>/``:

- ``shards.json``: the shards discovery found, once, in the run's order (a later coordinator
  hop reads them instead of discovering again, however many there are);
- ``state.json``: where the coordinator is (its hop, the phase, the shards running and the
  entries of those that ended), rewritten by each coordinator hop;
- ``<phase>/<account>/<region>/<project id>/hop-<n>.json``: what each hop of each shard
  found (imsguard.org.merge.hop_record), written by that hop itself;
- ``report.json``: the organization's report; ``<prefix>org-latest.json`` is a copy of the
  newest.

Objects are read and written with the function's own credentials (never a member account's)
through the OBS SDK, as the report sink does (imsguard.sinks.obs).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import timezone
from typing import TYPE_CHECKING, Any

from imsguard.logs import log, redact
from imsguard.sinks.obs import JSON_TYPE, get_object, put_object

if TYPE_CHECKING:
    from imsguard.clock import Budget
    from imsguard.context import Credentials
    from imsguard.event_models import OrgShard, SweepOptions
    from imsguard.org.coordinator import Shard
    from imsguard.settings import Settings

SHARDS = "shards.json"
STATE = "state.json"
REPORT = "report.json"
LATEST = "org-latest.json"
RECORD_WAIT_S = 60.0  # a continued apply shard waits this long for the hop before's record
WAIT_STEP_S = 2.0


def run_prefix(report_prefix: str, org_run: str) -> str:
    return f"{report_prefix}org/{org_run}/"


def hop_name(phase: str, account: str, region: str | None, project_id: str | None, hop: int) -> str:
    """Where one shard hop's record is, under the run's prefix (the shard writes it, the
    coordinator reads it: one home for the name)."""
    return f"{phase}/{account}/{region}/{project_id}/hop-{hop}.json"


class RunStore:
    """One org run's objects in the report bucket. Raises sinks.SinkError when OBS fails
    (after its retries) or an object is not JSON."""

    def __init__(
        self, settings: Settings, credentials: Credentials, budget: Budget, org_run: str
    ) -> None:
        self.bucket = settings.report_bucket or ""
        self.endpoint = settings.obs_endpoint or ""
        self.report_prefix = settings.report_prefix
        self.prefix = run_prefix(settings.report_prefix, org_run)
        self._credentials = credentials
        self._budget = budget

    def read(self, name: str) -> Any:
        """The parsed object ``name`` under the run's prefix; None when there is none."""
        from imsguard.sinks import SinkError

        key = self.prefix + name
        body = get_object(self.endpoint, self._credentials, self._budget, self.bucket, key)
        if body is None:
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise SinkError(f"obs://{self.bucket}/{key} is not JSON") from None

    def wait_for(self, name: str, seconds: float) -> Any:
        """The object ``name``, read every WAIT_STEP_S until it is there or ``seconds``
        (and the invocation's time) have passed; None if it never came."""
        waited = 0.0
        while (found := self.read(name)) is None and waited < seconds:
            left = self._budget.time_left()
            if left is not None and left < WAIT_STEP_S:
                break
            self._budget.clock.sleep(WAIT_STEP_S)
            waited += WAIT_STEP_S
        return found

    def write(self, name: str, document: Any, top_level: bool = False) -> str:
        """Write ``document`` as JSON under the run's prefix (``top_level``: under the report
        prefix itself); returns its key."""
        key = (self.report_prefix if top_level else self.prefix) + name
        body = json.dumps(document, separators=(",", ":")).encode()
        put_object(
            self.endpoint, self._credentials, self._budget, self.bucket, key, body, JSON_TYPE
        )
        return key


def record_hop(
    settings: Settings,
    credentials: Credentials,
    budget: Budget,
    shard: OrgShard,
    answer: Mapping[str, Any],
    hop: int,
    report_key: str | None = None,
) -> dict[str, Any]:
    """Write what one shard hop found (its ``answer``) where its coordinator looks for it;
    what was written, or why not, as a report sink says it. A record that cannot be written
    is logged, and the coordinator reports the shard "lost" once FunctionGraph says the
    invocation ended."""
    from imsguard.org.merge import hop_record
    from imsguard.sinks import SinkError

    store = RunStore(settings, credentials, budget, shard.org_run)
    name = hop_name(shard.phase, shard.account, shard.region, shard.project_id, hop)
    record = hop_record(answer, hop, report_key)
    if record["continued"]:  # where FunctionGraph's records of the next hop begin
        record["continued_at"] = budget.clock.utcnow().astimezone(timezone.utc).isoformat()
    try:
        key = store.write(name, record)
    except SinkError as exc:
        reason = redact(str(exc))
        log(logging.ERROR, "org shard: record not written", reason=reason, **shard.fields())
        return {"error": reason}
    return {"written": [key]}


def apply_hop(shard: OrgShard, hop: int) -> str:
    return hop_name("apply", shard.account, shard.region, shard.project_id, hop)


def approval_name(shard: OrgShard | Shard) -> str:
    """Where the coordinator approves one shard's apply phase (its plan was within the
    organization's limit), under the run's prefix."""
    return f"apply/{shard.account}/{shard.region}/{shard.project_id}/approved.json"


def approval_problem(
    settings: Settings,
    credentials: Credentials,
    budget: Budget,
    shard: OrgShard,
    options: SweepOptions,
) -> str | None:
    """Why an apply shard under an organization limit may not change anything (None: it
    may). Its coordinator must have approved it, in the run's OBS objects that only the
    function's own credentials write: the approval names a token the event must carry, is
    revoked once the shard ended, and allows at most ``max_changes``; a later hop must
    follow the records of every hop before it, and count the changes they made. So an event
    forged, replayed after its shard ended, or claiming fewer changes so far, changes
    nothing."""
    from imsguard.sinks import SinkError

    refused = "the organization's limit is set (org_max_updates / org_max_updates_percent)"
    if not settings.report_bucket:
        return f"{refused}: its plan is checked through IMSGUARD_REPORT_BUCKET, which is unset"
    store = RunStore(settings, credentials, budget, shard.org_run)
    try:
        approval = store.read(approval_name(shard))
        earlier = [store.read(apply_hop(shard, hop)) for hop in range(options.hop - 1)]
        if options.hop:  # the hop before writes its record just after it started this one
            earlier.append(store.wait_for(apply_hop(shard, options.hop - 1), RECORD_WAIT_S))
    except SinkError as exc:
        return f"{refused} and this shard's approval could not be read: {redact(str(exc))}"
    if not isinstance(approval, dict) or approval.get("token") != shard.approval:
        return f"{refused} and the coordinator of run {shard.org_run} did not approve this shard"
    if approval.get("revoked"):
        return f"{refused} and this shard's approval was revoked: the shard already ended"
    most = approval.get("max_changes")
    if options.max_changes is None or not isinstance(most, int) or options.max_changes > most:
        return (
            f"{refused}: the coordinator approved at most {most} change(s) for this shard, "
            f"and the event allows {options.max_changes}"
        )
    if any(not isinstance(r, dict) for r in earlier) or (
        earlier and not earlier[-1].get("continued")
    ):
        return f"{refused} and hop {options.hop} does not follow this shard's earlier hops"
    made = sum(int((r.get("summary") or {}).get("updated", 0)) for r in earlier)
    if options.planned_before < made:
        return (
            f"{refused}: this shard's earlier hops changed {made} image(s), and the event "
            f"counts {options.planned_before}"
        )
    return None
