"""The local engine of an organization sweep: the coordinator (imsguard.org.coordinator),
with shards run in-process, concurrently, through the real handler and SDKs.

``FakeOrg`` builds an organization of fakes (Organizations, IAM, STS, one IMS per account
and region, all served by one ``responses`` mock); ``LocalInvoker`` runs each org-shard
event through the handler on a thread pool (``IMSGUARD_ORG_CONCURRENCY`` at once) and hands
the reports back, which lets the coordinator enforce the organization's limit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import timezone
from typing import Any

from imsguard.clock import Budget, SystemClock
from imsguard.context import read_credentials
from imsguard.event_models import OrgSweepEvent, validated
from imsguard.org.coordinator import discover, org_run_id, run_waiting
from imsguard.policy import cached_policy
from imsguard.settings import load_settings
from imsguard_tools.fake_ims import FakeIms
from imsguard_tools.fake_org import MANAGEMENT_ACCOUNT, FakeIam, FakeOrganizations, FakeSts
from imsguard_tools.local_context import LocalContext

HOME = "ap-southeast-1"  # the coordinator's own region
AGENCY = "imsguard-member"
PROJECT_ID = "0" * 31 + "2"  # the coordinator's own project
REGIONS = (
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "cn-north-4",
    "cn-east-3",
    "cn-south-1",
    "eu-west-101",
    "la-south-2",
    "af-south-1",
    "tr-west-1",
)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class LocalInvoker:
    """Runs shard events through ``handler`` on a pool of ``concurrency`` threads, each
    with the context ``context_for(event)`` gives; counts the most in flight at once."""

    def __init__(
        self,
        handler: Handler,
        context_for: Callable[[dict[str, Any]], Any],
        concurrency: int,
    ) -> None:
        self._handler = handler
        self._context_for = context_for
        self._pool = ThreadPoolExecutor(max_workers=concurrency)
        self._futures: dict[str, Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.events: list[dict[str, Any]] = []  # every event started, in order

    def start(self, event: dict[str, Any]) -> str:
        handle = f"local-{len(self._futures)}"
        self.events.append(event)
        self._futures[handle] = self._pool.submit(self._run, event)
        return handle

    def results(self, handles: list[str]) -> list[dict[str, Any]]:
        return [self._futures[h].result() for h in handles]

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _run(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._handler(event, self._context_for(event))
        except Exception as exc:  # what FunctionGraph would retry, then report as failed
            return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        finally:
            with self._lock:
                self.in_flight -= 1


def run_local(
    event: dict[str, Any], context: LocalContext, invoker: LocalInvoker
) -> dict[str, Any]:
    """An org-sweep ``event`` coordinated with the settings and credentials of ``context``,
    every shard run through ``invoker`` to the end; the organization's report
    (imsguard.org.merge, as the cloud coordinator writes it to OBS). Raises ValueError for
    a bad event and imsguard.org.coordinator.CoordinatorError when it cannot start."""
    settings = load_settings(context)
    policy = cached_policy(settings.policy_path)
    request = validated(OrgSweepEvent, event)
    if isinstance(request, str):
        raise ValueError(f"invalid org-sweep event: {request}")
    credentials = read_credentials(context)
    if credentials is None:
        raise ValueError("no credentials in the context")
    clock = context.clock or SystemClock()
    budget = Budget.for_invocation(context, clock, settings.safety_margin_s, float("inf"))
    shards = discover(request, settings, credentials, budget)
    org_run = request.org_run or org_run_id(clock, context.getRequestID())
    now = clock.utcnow().astimezone(timezone.utc).isoformat(timespec="seconds")
    return run_waiting(request, shards, org_run, invoker, policy, now.replace("+00:00", "Z"))


def ims_endpoint(account: str, region: str) -> str:
    """Each fake IMS's own endpoint (IMS's paths carry no project: one host each)."""
    return f"https://ims-{account}.{region}.example.com"


class FakeOrg:
    """``accounts`` member accounts, each with a project in the first ``regions`` of REGIONS
    (and a service project, no region's), and ``images`` images in each, ~30% out of line.
    ``clock``: what STS's expiry times follow (the shards' clock)."""

    def __init__(self, accounts: int, regions: int, images: int, clock: Any = None) -> None:
        if not 1 <= regions <= len(REGIONS):
            raise ValueError(f"regions: 1 to {len(REGIONS)}")
        self.regions = REGIONS[:regions]
        self.organizations = FakeOrganizations.with_accounts(accounts)
        ids = [a.id for a in self.organizations.accounts]
        self.sts = FakeSts(PROJECT_ID, HOME, {a: {AGENCY} for a in ids}, clock or SystemClock())
        self.iam = FakeIam(self.sts)
        self.ims: dict[tuple[str, str], FakeIms] = {}
        for number, account in enumerate(ids):
            projects = [FakeIam.project(account, "MOS")]
            for region in self.regions:
                project = FakeIam.project(account, region)
                projects.append(project)
                fake = FakeIms(project["id"], region, ims_endpoint(account, region))
                fake.page_info = True
                fake.add_fleet(images, seed=number * 100 + len(self.ims))
                self.ims[account, region] = fake
            self.iam.projects[account] = projects

    def serving(self) -> AbstractContextManager[Any]:
        """One ``responses`` mock for every fake: ``with org.serving(): ...``."""
        return self.organizations.attach(self.sts, self.iam, *self.ims.values())

    def user_data(self, concurrency: int) -> dict[str, str]:
        """The coordinator's settings for this organization."""
        return {
            "IMSGUARD_REGION": HOME,
            "RUNTIME_PROJECT_ID": PROJECT_ID,
            "IMSGUARD_ORG_AGENCY": AGENCY,
            "IMSGUARD_ORG_DOMAIN_ID": MANAGEMENT_ACCOUNT,
            "IMSGUARD_ORG_CONCURRENCY": str(concurrency),
            "IMSGUARD_SWEEP_RATE": "1000",  # the fakes need no protecting
        }

    def shard_context(self, base: LocalContext) -> Callable[[dict[str, Any]], LocalContext]:
        """Each shard's context: the coordinator's, with the shard's fake IMS endpoint."""

        def context_for(event: dict[str, Any]) -> LocalContext:
            data = {
                **base.user_data,
                "IMSGUARD_IMS_ENDPOINT": ims_endpoint(event["account"], event["region"]),
            }
            return LocalContext(
                data,
                base.access_key,
                base.secret_key,
                base.security_token,
                timeout_ms=base.timeout_ms,
                clock=base.clock,
            )

        return context_for


def public(result: dict[str, Any]) -> dict[str, Any]:
    """What ``imsguard org-sweep --output json`` shows: exactly ``shards`` (each exactly
    account, region, project_id, examined, summary, status) and the totals."""
    keys = ("account", "region", "project_id", "examined", "summary", "status")
    return {
        "shards": [{k: s[k] for k in keys} for s in result["shards"]],
        "examined": result["examined"],
        "summary": result["summary"],
    }


def render(result: dict[str, Any], setup_s: float, run_s: float, most_at_once: int) -> str:
    """The text output: a line per shard, the organization's totals, and the timing."""
    lines = [f"org sweep {result['org_run']}: {result['status']}"]
    if result.get("reason"):
        lines.append(f"  {result['reason']}")
    lines.append(f"  {'account':<32}  {'region':<15}  {'status':<7}  {'examined':>8}  summary")
    for shard in result["shards"]:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(shard["summary"].items()))
        lines.append(
            f"  {shard['account']:<32}  {shard['region'] or '-':<15}  {shard['status']:<7}  "
            f"{shard['examined']:>8}  {summary or shard.get('reason') or ''}"
        )
    totals = ", ".join(f"{k} {v}" for k, v in result["summary"].items())
    lines.append(f"organization: {len(result['shards'])} shards, {result['examined']} examined")
    lines.append(f"  {totals}")
    lines.append(
        f"time: {run_s:.1f} s (fakes built in {setup_s:.1f} s), at most {most_at_once} "
        "shards at once"
    )
    return "\n".join(lines)
