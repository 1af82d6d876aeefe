"""One shard of an organization sweep: one account's project in one region, swept as an
ordinary sweep hop under the agency that account lends imsguard.

The handler (imsguard.app) runs the hop itself; this module does what is the shard's own:
assume ``iam::<account>:agency:<IMSGUARD_ORG_AGENCY>`` with the function's credentials for the
shortest duration that covers the invocation, open the IMS gateway of the shard's region and
project with those credentials, end the hop before they expire (the next hop, a continuation,
assumes the agency anew), word a failure so the coordinator can report it, and build the
continuation's event. The assumed credentials live only in the gateway (and in
logs.keep_secret's list): never in a payload, a report or a log line.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from imsguard.clock import Budget
from imsguard.ims import gateway_for
from imsguard.logs import log
from imsguard.org.calls import AccessDenied, OrgError, Throttled
from imsguard.org.credentials import agency_urn, assume, duration_for
from imsguard.settings import IMS_ENDPOINT, ORG_AGENCY

if TYPE_CHECKING:
    from imsguard.context import Credentials
    from imsguard.event_models import OrgShard
    from imsguard.ims import ImsGateway
    from imsguard.results import SweepReport
    from imsguard.settings import Settings

SESSION_PREFIX = "imsguard-"  # the assumed session's name: imsguard-<org run>, in the account's CTS
MAX_SESSION_NAME = 64
NO_TIME_S = 900  # the duration asked for when the context does not say how long it runs
# Credentials are used up to this long before they expire (STS's clock and ours may differ).
SKEW_S = 60


class ShardFailed(Exception):
    """The shard cannot run. ``transient`` (STS throttled or unreachable): raise, for
    FunctionGraph to retry the invocation; else a permanent failure, reported as status
    "error" and not retried. The message names the account and why, never a secret."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def ims_endpoint(shard: OrgShard, settings: Settings) -> str:
    """Where the shard's IMS is: ``IMSGUARD_IMS_ENDPOINT`` when set (tests, a private
    endpoint), else the region's public endpoint."""
    return settings.ims_endpoint or f"https://ims.{shard.region}.myhuaweicloud.com"


def open_shard(
    shard: OrgShard, settings: Settings, caller: Credentials, budget: Budget
) -> tuple[ImsGateway, Budget]:
    """The IMS gateway of the shard's project under the account's assumed agency, and the
    budget the hop keeps to: the invocation's, cut to end before the credentials expire.
    ``caller``: the function's own credentials. Raises ShardFailed."""
    if not settings.org_agency or not settings.sts_endpoint or not settings.project_id:
        raise ShardFailed(
            f"configuration: org shards need {ORG_AGENCY} (and the function's region)"
        )
    if settings.org_regions and shard.region not in settings.org_regions:
        raise ShardFailed(
            f"region {shard.region} is not one of IMSGUARD_ORG_REGIONS "
            f"({', '.join(settings.org_regions)}): not swept"
        )
    time_left = budget.time_left()
    chained = bool(caller.security_token)  # a function's own credentials are temporary
    urn = agency_urn(shard.account, settings.org_agency)
    duration_s = duration_for(NO_TIME_S if time_left is None else time_left + SKEW_S, chained)
    try:
        assumed = assume(
            urn,
            (SESSION_PREFIX + shard.org_run)[:MAX_SESSION_NAME],
            duration_s,
            caller,
            settings.project_id,
            settings.sts_endpoint,
            budget,
        )
    except AccessDenied as exc:
        raise ShardFailed(
            f"the agency of account {shard.account} cannot be assumed: {exc}"
        ) from None
    except Throttled as exc:
        raise ShardFailed(f"STS: {exc}", transient=True) from None
    except OrgError as exc:
        raise ShardFailed(f"the agency of account {shard.account} was not assumed: {exc}") from None
    log(
        logging.INFO,
        "org shard: agency assumed",
        agency_urn=urn,
        duration_s=duration_s,
        **shard.fields(),
    )
    try:
        gateway = gateway_for(
            shard.region, ims_endpoint(shard, settings), shard.project_id, assumed.credentials
        )
    except ValueError as exc:  # not expected with an endpoint given; kept as an answer
        raise ShardFailed(f"configuration: {exc}") from None
    usable_s = (assumed.expiration - budget.clock.utcnow()).total_seconds() - SKEW_S
    return gateway, within(budget, usable_s, settings.safety_margin_s)


def within(budget: Budget, seconds: float, margin_s: float) -> Budget:
    """``budget``, its work done ``margin_s`` before ``seconds`` from now at the latest: a hop
    whose credentials would expire before the invocation ends runs out of time first and
    continues (the invocation's own end is kept: the continuation is started with the
    function's own credentials), and the next hop assumes the agency anew."""
    deadline = min(budget.deadline, budget.clock.monotonic() + seconds - margin_s)
    return Budget(budget.clock, deadline, budget.end, budget.rng)


def explain(report: SweepReport, shard: OrgShard, settings: Settings) -> None:
    """A shard whose IMS could not be read at all (no IMS in that region for the account, an
    endpoint that does not answer) says so in its error."""
    if report.error is None or report.examined:
        return
    where = f"IMS of account {shard.account} in {shard.region} (project {shard.project_id})"
    endpoint = "" if settings.ims_endpoint is None else f" (at {IMS_ENDPOINT})"
    report.error = (
        f"{where}{endpoint} could not be read: {report.error}; is IMS offered in that region, "
        "and is the project the account's? Nothing was changed"
    )


def continuation_event(shard: OrgShard, options: dict[str, Any]) -> dict[str, Any]:
    """The event that continues the shard: the same shard, the next hop's sweep options
    (no credentials: the next hop assumes the agency itself)."""
    fields = {k: v for k, v in shard.fields().items() if v is not None}
    return {"action": "org-shard", **fields, "sweep": options}
