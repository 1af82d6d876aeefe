"""Config custom-rule mode: each image's compliance, as found before any fix, reported to
Config with UpdatePolicyState (one call per image, sent when the image is evaluated).

Loaded, with the Config SDK, only for a Config evaluation event: an ordinary CTS event
imports neither. :class:`ConfigStates` is handed every evaluation as it happens (the event
check's and the sweep's ``observe`` hook), so an image that imsguard then fixes is still
reported ``NonCompliant``: the fix triggers Config's next evaluation, which records
``Compliant``. A rule that fixed silently would hide the violation, and could loop.

Each state is sent before the image's PATCH, retried in-process a few times (the SDK
retries nothing), with short timeouts and within STATE_MOST_S (and the time the sweep can
spare), so a Config that never answers cannot take a sweep's time: after BREAKER_STATES
states in a row that failed transiently, no more are sent in the invocation (counted as
``not_sent``; the images are still evaluated and fixed). A period evaluation sends no state
for an image that is not active (it was not evaluated; Config's next evaluation covers it).
A failure is logged and counted under the report's ``sinks.config``,
and the image is fixed all the same, with one exception: for a ``resource`` evaluation a
transient failure (HTTP 429 or 5xx, no answer) that outlasts the retries raises
ConfigStateNotReported before the PATCH and before any report sink, so FunctionGraph's
retry of the event finds the same violation and reports it. A ``period`` evaluation
never raises (a retry would sweep again): its failures are counted, and the sweep sends
each state as it examines the image, so a continuation resumes at the first image whose
state was not sent (and skips those already reported).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import requests
from huaweicloudsdkconfig.v1 import (
    ConfigClient,
    PolicyResource,
    PolicyStateRequestBody,
    UpdatePolicyStateRequest,
)
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from imsguard.events import CONFIG_IMAGE_PROVIDER, CONFIG_IMAGE_TYPE
from imsguard.logs import RedactingFilter, log, redact
from imsguard.permissions import UPDATE_POLICY_STATE, requires
from imsguard.settings import CONFIG_GLOBAL_ENDPOINT
from imsguard.sinks import ConfigStateNotReported, SinkError, call_timeouts
from imsguard.sinks.sdk import build_client, failure, transient

if TYPE_CHECKING:
    from imsguard.clock import Budget
    from imsguard.context import Credentials
    from imsguard.evaluate import Decision
    from imsguard.events import ConfigEvaluation
    from imsguard.policy import Policy

logging.getLogger("HuaweiCloud-SDK-ConfigClient").addHandler(logging.NullHandler())
logging.getLogger("HuaweiCloud-SDK-ConfigClient").addFilter(RedactingFilter())

# UpdatePolicyState's own retries (the SDK makes none): at most ATTEMPTS calls, waiting
# 0.5, 1, 2 s between them, while the invocation's budget allows and only if the next call
# can end within STATE_MOST_S of the state's start (or the time the caller can spare).
ATTEMPTS = 4
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 2.0
STATE_MOST_S = 20.0
MIN_CALL_S = 2.0  # no call is started with less time than this for it
# One call's timeouts: Config takes a state in well under a second, and each call of a
# Config that never answers costs its whole timeout.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 5.0
# States in a row that failed transiently even after their retries: then no more are sent
# in this invocation (a Config outage would otherwise cost every image STATE_MOST_S).
BREAKER_STATES = 2
COMPLIANT, NON_COMPLIANT = "Compliant", "NonCompliant"
# Verdicts that make an image non-compliant: a violation (fixable or not, enforce or audit
# mode) and a rule that could not decide (a person should look).
FAILING = frozenset({"violation", "error"})


def compliance(decision: Decision, rule: str | None) -> str:
    """The image's state as found: NonCompliant when the deciding rules (``rule`` alone, or
    every rule) have a violation or an error; out of scope and exempt images are Compliant."""
    if decision.scope != "in_scope":
        return COMPLIANT
    deciding = [v for v in decision.verdicts if rule is None or v.rule == rule]
    return NON_COMPLIANT if any(v.status in FAILING for v in deciding) else COMPLIANT


class ConfigStates:
    """Reports each evaluated image's state as it is evaluated (``observe``, the image
    check's and the sweep's hook, called before the image's PATCH); ``outcome`` says what
    was reported and what failed (counts, and the first ``limit`` images of each)."""

    def __init__(
        self,
        evaluation: ConfigEvaluation,
        policy: Policy,
        region: str | None,
        credentials: Credentials,
        endpoint: str | None,
        budget: Budget,
        limit: int,
    ):
        self.evaluation = evaluation
        self.region = region
        self.credentials = credentials
        self.endpoint = endpoint or CONFIG_GLOBAL_ENDPOINT
        self.budget = budget
        self.limit = limit
        self.client: Any = None
        self.timeout = (0.0, 0.0)  # the (connect, read) timeouts ``client`` was built with
        self.reported = 0
        self.compliance: Counter[str] = Counter()
        self.states: dict[str, str] = {}  # the first ``limit`` reported, by image id
        self.failed_total = 0
        self.failed: list[dict[str, str]] = []  # the first ``limit`` failures
        self.in_a_row = 0  # states that failed transiently since the last one taken
        self.stopped: str | None = None  # why no more states are sent (the breaker is open)
        self.not_sent = 0  # states not sent since then
        self.not_active = 0  # images a period evaluation sent no state for: not active
        self.lock = threading.Lock()
        names = [rule.name for rule in policy.rules]
        self.problem = (
            f"rule_parameter names the rule {evaluation.rule!r}, which the policy does not "
            f"have (it has {', '.join(names) or 'no rules'}); no state was reported"
            if evaluation.rule is not None and evaluation.rule not in names
            else None
        )

    def observe(
        self, image: dict[str, Any], decision: Decision, within: float | None = None
    ) -> None:
        """Report one image's state, before anything is sent to IMS, in ``within`` seconds
        at most (the sweep's share of its time; None: STATE_MOST_S). A failure is counted
        and logged, never raised, except the one a ``resource`` evaluation must not go
        past: a transient failure after the retries raises ConfigStateNotReported, so the
        image is not fixed and FunctionGraph's retry finds (and reports) the violation."""
        if self.problem is not None:
            return
        image_id = str(image.get("id"))
        period = self.evaluation.trigger_type == "period"
        with self.lock:
            if period and image.get("status") != "active":  # not evaluated: no state
                self.not_active += 1
                return
            if self.stopped is not None:
                self.not_sent += 1
                return
        try:
            state = compliance(decision, self.evaluation.rule)
            self._send(self.body(self._resource(image), state), within)
        except _Failure as exc:
            self._fail(image_id, str(exc))
            if exc.transient and not period:
                raise ConfigStateNotReported(f"Config did not take the state: {exc}") from None
            if exc.transient:
                self._failed_transiently(str(exc))
            return
        except Exception as exc:  # a bug here must not cost the image its fix
            logging.getLogger("imsguard").exception("Config state not reported")
            self._fail(image_id, redact(f"internal error: {type(exc).__name__}: {exc}"))
            return
        with self.lock:
            self.in_a_row = 0
            self.reported += 1
            self.compliance[state] += 1
            if len(self.states) < self.limit:
                self.states[image_id] = state

    def _fail(self, image_id: str, error: str) -> None:
        log(logging.ERROR, "Config state not reported", image_id=image_id, error=error)
        with self.lock:
            self.failed_total += 1
            if len(self.failed) < self.limit:
                self.failed.append({"image_id": image_id, "error": error})

    def _failed_transiently(self, error: str) -> None:
        """One more state in a row that Config did not take: at BREAKER_STATES, stop."""
        with self.lock:
            self.in_a_row += 1
            if self.in_a_row < BREAKER_STATES or self.stopped is not None:
                return
            self.stopped = (
                f"Config failed transiently (no answer, 429 or 5xx) for {self.in_a_row} states "
                f"in a row, even after retries (the last: {error}); no more states are sent in "
                "this invocation, its images are still fixed, and Config's next evaluation "
                "reports them"
            )
        log(logging.ERROR, "Config states no longer sent", reason=self.stopped)

    def _send(self, body: dict[str, Any], within: float | None) -> None:
        """One UpdatePolicyState, retried in-process (the SDK retries nothing) with a
        bounded backoff while the budget allows, all within STATE_MOST_S (or ``within``):
        the caller can count on that. _Failure when it still fails."""
        most = STATE_MOST_S if within is None else min(STATE_MOST_S, within)
        clock = self.budget.clock
        started = clock.monotonic()
        for attempt in range(ATTEMPTS):
            try:
                allowed = most - (clock.monotonic() - started)
                update_policy_state(self._client(allowed), self.evaluation.domain_id, body)
                return
            except _Failure as exc:
                delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2**attempt)
                spent = clock.monotonic() - started
                if (
                    not exc.transient
                    or attempt + 1 == ATTEMPTS
                    or spent + delay + MIN_CALL_S > most
                    or self.budget.remaining() < delay + 1
                ):
                    raise
                clock.sleep(delay)

    def _client(self, allowed: float) -> Any:
        """A client whose calls take CONNECT_TIMEOUT_S + READ_TIMEOUT_S at most, and fit in
        ``allowed`` seconds and in what is left of the invocation (a new client when the last
        one's timeouts differ); _Failure (transient) when too little is left."""
        left = self.budget.time_left()
        try:
            limit = allowed if left is None else min(left, allowed)
            connect, read = call_timeouts(limit, READ_TIMEOUT_S)
            timeout = (min(connect, CONNECT_TIMEOUT_S), read)
            if self.client is None or timeout != self.timeout:
                self.client = build_client(
                    ConfigClient,
                    None,
                    None,
                    self.endpoint,
                    "",
                    self.credentials,
                    timeout,
                    domain_id=self.evaluation.domain_id,
                )
                self.timeout = timeout
        except SinkError as exc:
            raise _Failure(str(exc), True) from None
        return self.client

    def _resource(self, image: dict[str, Any]) -> dict[str, Any]:
        """The policy_resource: the event's own values for a resource evaluation (its type
        echoed); for a periodic one, whose event names no image, Config's provider and type
        for IMS images (rule_parameter resource_type, else events.CONFIG_IMAGE_TYPE)."""
        evaluation = self.evaluation
        event = evaluation.resource
        if event is not None and event.get("id") == image["id"]:
            return {
                "resource_id": event["id"],
                "resource_name": event.get("name"),
                "resource_provider": event.get("provider"),
                "resource_type": event.get("type"),
                "region_id": event.get("region_id"),
                "domain_id": evaluation.domain_id,
            }
        return {
            "resource_id": image["id"],
            "resource_name": image.get("name"),
            "resource_provider": CONFIG_IMAGE_PROVIDER,
            "resource_type": evaluation.resource_type or CONFIG_IMAGE_TYPE,
            "region_id": self.region,
            "domain_id": evaluation.domain_id,
        }

    def body(self, resource: dict[str, Any], state: str) -> dict[str, Any]:
        """UpdatePolicyState's body for one image (the event's values echoed)."""
        evaluation = self.evaluation
        return {
            "policy_resource": resource,
            "trigger_type": evaluation.trigger_type,
            "compliance_state": state,
            "policy_assignment_id": evaluation.policy_assignment_id,
            "policy_assignment_name": evaluation.policy_assignment_name,
            "evaluation_time": evaluation.evaluation_time,
            "evaluation_hash": evaluation.evaluation_hash,
        }

    def outcome(self) -> dict[str, Any]:
        """What was reported (counts; the first ``limit`` states) and what failed."""
        outcome: dict[str, Any] = {
            "policy_assignment_id": self.evaluation.policy_assignment_id,
            "trigger_type": self.evaluation.trigger_type,
            "rule": self.evaluation.rule,
            "reported": self.reported,
            "compliance": dict(sorted(self.compliance.items())),
            "states": self.states,
        }
        if self.problem is not None:
            log(logging.ERROR, "Config states not reported", reason=self.problem)
            return {**outcome, "error": self.problem}
        if self.failed_total:
            outcome["failed_total"] = self.failed_total
            outcome["failed"] = self.failed
        if self.stopped is not None:
            outcome["not_sent"] = self.not_sent
            outcome["not_sent_reason"] = self.stopped
        if self.not_active:
            outcome["not_active"] = self.not_active
        return outcome


class _Failure(Exception):
    """UpdatePolicyState failed; ``transient`` when a retry may succeed."""

    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


@requires(UPDATE_POLICY_STATE)
def update_policy_state(client: ConfigClient, domain_id: str, body: dict[str, Any]) -> None:
    """``PUT /v1/resource-manager/domains/{domain_id}/policy-states`` (the domain comes from
    the client's global credentials)."""
    request = UpdatePolicyStateRequest(
        body=PolicyStateRequestBody(
            **{**body, "policy_resource": PolicyResource(**body["policy_resource"])}
        )
    )
    try:
        client.update_policy_state(request)
    except (SdkException, requests.RequestException) as exc:
        raise _Failure(str(failure("Config", exc)), transient(exc)) from None
