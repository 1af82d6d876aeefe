"""The fleet sweep: every active private image of the project, checked and fixed.

A sweep runs in hops, one per invocation (:class:`SweepHop`): a hop that runs out of
time hands its marker to the next one.

Two phases. First the images are listed page by page (only the page in hand is
kept) and evaluated; what needs changing is kept as a small plan (id, name and
patch). Then the guardrail is checked against all the plans, and only if it
holds are they applied, a few at a time, under a request rate limit. A sweep that
runs out of time returns a ``continuation`` marker (and may invoke itself with it).
"""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from imsguard.clock import RateLimiter
from imsguard.evaluate import (
    Decision,
    before,
    evaluate,
    exemption_covers,
    expiring_soon,
    fix_label,
    plan,
)
from imsguard.event_models import SweepOptions
from imsguard.events import parse_time
from imsguard.ims import ImsError
from imsguard.invocation import Invocation
from imsguard.logs import get_logger, in_context
from imsguard.policy import Policy
from imsguard.resolve import failure
from imsguard.results import (
    WOULD_CHANGE,
    Covered,
    ImageResult,
    Outcome,
    SweepReport,
    needs_a_person,
)

if TYPE_CHECKING:
    from imsguard.results import Examined, Found

# An image's Config state is sent only with at least this many seconds to spare for it (the
# sink keeps within what it is given, timeouts and retries included).
MIN_STATE_S = 2.0


class PlannedPatch(NamedTuple):
    """An image that needs changing: kept until every page has been read."""

    image_id: str
    image_name: Any
    send: tuple[dict[str, str], ...]
    resume_after: str | None  # the image listed just before it: a rerun starts there
    fix_labels: dict[str, str]
    before: dict[str, Any]  # what the changed attributes held: the change can be undone
    examined_at: int  # images this hop examined before it, and of those, the ones
    changes_at: int  # it would change: a hop that defers it hands these counts on
    tags: tuple[str, ...]  # the image's tags (for notice routing)
    found: tuple[Found, ...] = ()  # its verdicts, for the OBS report (only when that is on)


class SweepTally:
    """Counts for every image, details for the first ``limit`` of them; each result goes
    to the invocation's sinks (its log line) as it is added."""

    def __init__(
        self,
        limit: int,
        publish: Callable[[ImageResult], ImageResult],
        keep_images: bool = False,
    ):
        self.limit = limit
        self.publish = publish
        self.outcomes: Counter[Outcome] = Counter()
        self.rules: dict[str, Counter[str]] = defaultdict(Counter)
        self.results: list[ImageResult] = []
        self.changed: list[dict[str, Any]] = []
        self.would_change: list[dict[str, Any]] = []
        self.attention: list[dict[str, Any]] = []
        self.attention_total = 0  # images that need a person, listed or not
        # For the report sinks: each listed image's result by id (shared, not copied), and
        # the images exemptions expiring soon cover (the first ``limit``, then counts).
        self.listed: dict[str, ImageResult] = {}
        self.covered: list[Covered] = []
        self.covered_beyond: Counter[int] = Counter()
        # For SMN's digest of a hop that defers patches (the next hop examines those images
        # again): where in this hop's listing each listed or covered image was examined, and
        # each image that needs a person (listed or not).
        self.at: dict[str, int] = {}
        self.attention_at: array[int] = array("l")
        self.covered_beyond_at: dict[int, array[int]] = {}
        # For the OBS report: every examined image, however many (None: that sink is off).
        self.images: list[Examined] | None = [] if keep_images else None

    def cover(self, exemption: int, image: dict[str, Any], at: int) -> None:
        """An examined image that an exemption expiring soon covers (the ``at``-th examined)."""
        if len(self.covered) < self.limit:
            tags = ImageResult.tags_of(image)
            self.covered.append((exemption, str(image.get("id")), image.get("name"), tags))
            self.at[str(image.get("id"))] = at
        else:
            self.covered_beyond[exemption] += 1
            self.covered_beyond_at.setdefault(exemption, array("l")).append(at)

    def add(self, result: ImageResult, at: int, found: tuple[Found, ...] = ()) -> None:
        """One image's result (the ``at``-th this hop examined): counted, listed while under
        the limit, published, and kept for the OBS report with its verdicts (``found``) and
        final fix labels when it is on."""
        outcome = result.outcome
        if self.images is not None:
            fixes = result.fixes or {}
            rows = tuple(
                (rule, verdict, reason, mode, fixes.get(rule, ""))
                for rule, verdict, reason, mode in found
            )
            self.images.append(
                (
                    result.image_id,
                    result.image_name,
                    outcome,
                    result.reason,
                    result.operations,
                    result.before,
                    rows,
                )
            )
        self.outcomes[outcome] += 1
        short = {
            "image_id": result.image_id,
            "image_name": result.image_name,
            "reason": result.reason,
        }
        changes = {
            **short,
            "operations": result.operations,
            "before": {} if result.before is None else result.before,
        }
        listed = False
        if outcome == "updated" and len(self.changed) < self.limit:
            self.changed.append(changes)
            listed = True
        if outcome in WOULD_CHANGE and len(self.would_change) < self.limit:
            self.would_change.append(changes)
            listed = True
        if needs_a_person(result):
            self.attention_total += 1
            self.attention_at.append(at)
            if len(self.attention) < self.limit:
                self.attention.append({**short, "outcome": outcome})
                listed = True
        if len(self.results) < self.limit:
            self.results.append(result)
            listed = True
        if listed and result.image_id:
            self.listed[result.image_id] = result
            self.at[result.image_id] = at
        self.publish(result)


class SweepHop:
    """One invocation's share of a sweep: list from the request's marker on, plan, check
    the guardrail, apply; out of time, a continuation says where the next hop resumes."""

    def __init__(
        self,
        invocation: Invocation,
        policy: Policy,
        options: SweepOptions,
        dry_run: bool,
        uefi_versions: frozenset[str] | None,
    ):
        settings = invocation.settings
        self.gateway = invocation.gateway
        self.policy = policy
        self.project_id = invocation.project_id
        self.budget = invocation.budget
        self.dry_run = dry_run
        self.options = options
        self.page_size = settings.sweep_page_size
        self.concurrency = settings.sweep_concurrency
        self.uefi_versions = uefi_versions
        self.progress = invocation.progress
        self.tally = SweepTally(
            settings.results_limit, invocation.publish, keep_images=bool(settings.report_bucket)
        )
        self.today = invocation.clock.utcnow().date()
        # Exemptions expiring soon, whose images SMN's digest lists (only when it is on; each
        # hop lists those it examines, and the sweep's one digest gathers them).
        self.expiring = (
            expiring_soon(policy, self.today, settings.notify_expiry_days)
            if settings.notify_topic_urn
            else []
        )
        self.limiter = RateLimiter(settings.sweep_rate, invocation.clock)
        self.examined = 0
        # The first deferred image's place in this hop's listing: the next hop examines it,
        # and every image after it, again (None: nothing deferred).
        self.deferred_at: int | None = None
        self.seen: set[str] = set()  # ids examined by this run: each counted once
        self.would_change = 0  # images the enforce-mode rules would change (dry run or not)
        self.restarted = ""  # says how the listing went on when IMS refused a marker
        self.last_created: str | None = None  # created_at of the last image examined
        self.request_seconds = 0.5  # a guess until requests have been timed
        # Told each image's evaluation before anything is sent (Config's states), with the
        # seconds the hop can spare for it: the state is sent then, within them (its worst
        # case, so a Config that never answers cannot take the time the fixes need).
        self.observe: Callable[[dict[str, Any], Decision, float], None] | None = None
        # The last image whose state was sent (id, created_at), by this hop or an earlier
        # one: images up to it, listed again, are not reported again.
        self.reported: tuple[str, str | None] | None = (
            (options.config_reported, options.config_reported_at)
            if options.config_reported and options.config_reported != options.marker
            else None
        )
        self.reporting = self.reported is None  # past the last image reported

    def run(self, trigger: str) -> SweepReport:
        """The hop's report; ``trigger`` says what asked for the sweep."""
        plans, continuation, error = self._plan()
        if continuation is not None and error is None:
            # What this sweep found so far: the next hop's guardrail counts it too.
            continuation["examined_before"] = self.options.examined_before + self.examined
            continuation["planned_before"] = self.options.planned_before + self.would_change
        held = self._guardrail()
        if error is not None:
            # Nothing is applied: the rerun starts where this run started.
            self._hold(plans, f"not applied: {error}")
        elif held:
            self._hold(plans, held)
        else:
            continuation = self._apply(plans) or continuation
        if continuation is not None:
            continuation.setdefault("examined_before", self.options.examined_before)
            continuation.setdefault("planned_before", self.options.planned_before)
            if (
                self.observe is not None
                and self.reported is not None
                and self.reported[0] != continuation["marker"]  # else none is listed again
            ):
                continuation["config_reported"], continuation["config_reported_at"] = self.reported
        tally = self.tally
        return SweepReport(
            trigger,
            self.dry_run,
            self.examined,
            dict(sorted(tally.outcomes.items())),
            {rule: dict(sorted(c.items())) for rule, c in tally.rules.items()},
            tally.changed,
            tally.would_change,
            tally.attention,
            tally.results,
            sum(tally.outcomes.values()) > len(tally.results),
            notes=[self.restarted] if self.restarted else None,
            error=error,
            guardrail=held,
            continuation=continuation,
            needs_attention_total=tally.attention_total,
            listed=tally.listed,
            covered=tally.covered,
            covered_beyond=dict(tally.covered_beyond),
            hop=self.options.hop,
            examined_images=tally.images,
            examined_at=tally.at,
            attention_at=tally.attention_at,
            covered_beyond_at=tally.covered_beyond_at,
            deferred_at=self.deferred_at,
        )

    # -- phase 1: list and evaluate -----------------------------------------------------

    def _plan(self) -> tuple[list[PlannedPatch], dict[str, Any] | None, str | None]:
        """Plans for every image that needs changing; the continuation if the listing
        stopped early (time, or the ``limit`` option); an error if a page could not be read."""
        since = self._since()
        marker = self.options.marker
        plans: dict[str, PlannedPatch] = {}  # by id: after a restart an image may come again
        previous: list[str] = []  # the last page's ids: IMS must not answer it again
        limit = self.options.limit
        while True:
            if limit is not None and self.examined >= limit:
                return list(plans.values()), self._continuation(marker, "limit"), None
            if not self._time_for_a_page(len(plans)):
                return list(plans.values()), self._continuation(marker, "time"), None
            size = self.page_size if limit is None else min(self.page_size, limit - self.examined)
            try:
                images, more, marker = self._page(marker, size, since)
            except ImsError as exc:
                start = self._continuation(self.options.marker, "error")
                return (
                    list(plans.values()),
                    start,
                    f"listing images after {marker or 'the start'}: {exc}",
                )
            ids = [image["id"] for image in images]
            if ids and (ids == previous or ids[-1] == marker):  # no continuation: it would loop
                return (
                    list(plans.values()),
                    None,
                    f"IMS answered the same page again after {marker or 'the start'}: it "
                    "does not page with marker, so the listing cannot go on",
                )
            previous = ids
            for image in images:
                if image["id"] in self.seen:  # listed again after a restart: counted once
                    marker = image["id"]
                    continue
                within = self._time_for_a_state(len(plans)) if self._to_report(image) else None
                if within == 0:
                    # its state is not sent: the next hop resumes at this image
                    return list(plans.values()), self._continuation(marker, "time"), None
                self.seen.add(image["id"])
                self.examined += 1
                planned = self._evaluate_safely(image, marker, within)
                if planned is not None:
                    plans[planned.image_id] = planned
                marker, self.last_created = image["id"], image.get("created_at")
            self.progress({"examined": self.examined, "planned": len(plans)})
            if not more or not images:
                return list(plans.values()), None, None

    def _page(
        self, marker: str | None, size: int, since: str | None
    ) -> tuple[list[dict[str, Any]], bool, str | None]:
        """One page (and the marker it was read after); the gateway retries transient
        failures. If IMS refuses the marker (the image was deleted meanwhile), the listing
        goes on from the marker's creation time, or starts again from the newest image
        when that is not known: images seen twice are planned once."""
        created = None
        while True:
            self.limiter.acquire()
            started = self.budget.clock.monotonic()
            try:
                if created is not None:  # IMS filters one created_at operator: since by hand
                    images, more = self.gateway.list_page(marker, size, f"lte:{created}")
                    kept = [i for i in images if not since or str(i.get("created_at")) > since]
                    page = (kept, more and len(kept) == len(images))
                else:
                    page = self.gateway.list_page(marker, size, since and f"gt:{since}")
            except ImsError as exc:
                refused = exc.kind == "permanent" and exc.status in (400, 404)  # IMS's answer
                if refused and marker is not None and not self.restarted:
                    marker, created = None, self.last_created
                    self.restarted = (
                        "the marker's image no longer exists; the listing went on from its "
                        "creation time"
                        if created
                        else "the marker no longer exists; the "
                        "listing started again from the newest image"
                    )
                    continue
                raise
            elapsed = self.budget.clock.monotonic() - started
            self.request_seconds = max(0.05, 0.7 * self.request_seconds + 0.3 * elapsed)
            return (*page, marker)

    def _time_for_a_page(self, planned: int) -> bool:
        """Another page only if the plans so far can still be applied after it."""
        per_patch = max(self.request_seconds / self.concurrency, 1 / self.limiter.rate)
        applying = (planned + 1) * per_patch * 2 + self.request_seconds
        return self.budget.remaining() > self.request_seconds * 2 + applying

    def _to_report(self, image: dict[str, Any]) -> bool:
        """Whether the image's state is to be sent: not if an earlier hop sent it (the
        images up to the last one reported, listed newest first, come again when patches
        were deferred)."""
        if self.observe is None:
            return False
        if self.reporting:
            return True
        assert self.reported is not None
        last_id, last_created = self.reported
        if image["id"] == last_id:  # reported; the images after it are not
            self.reporting = True
            return False
        created = image.get("created_at")
        if last_created and created and str(created) < last_created:  # it was deleted
            self.reporting = True
            return True
        return False

    def _time_for_a_state(self, planned: int) -> float:
        """The seconds another image's state may take with the plans so far still applied
        after it; 0 when fewer than MIN_STATE_S are left for it."""
        per_patch = max(self.request_seconds / self.concurrency, 1 / self.limiter.rate)
        applying = (planned + 1) * per_patch * 2 + self.request_seconds
        spare = self.budget.remaining() - applying
        return spare if spare >= MIN_STATE_S else 0.0

    def _observe(self, image: dict[str, Any], decision: Decision, within: float) -> None:
        """Send the image's state, in ``within`` seconds at most; a failure never costs the
        image its fix."""
        assert self.observe is not None
        try:
            self.observe(image, decision, within)
        except Exception as exc:
            _log_unexpected(exc, image.get("id"))
        self.reported = (image["id"], image.get("created_at"))

    def _since(self) -> str | None:
        if self.options.since is None:
            return None
        moment = parse_time(self.options.since)
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None

    def _evaluate_safely(
        self, image: dict[str, Any], listed_after: str | None, state_within: float | None = None
    ) -> PlannedPatch | None:
        """One odd image must not stop the sweep: its error is its result, the rest go on."""
        for index in self.expiring:
            if exemption_covers(self.policy.exemptions[index], image):
                self.tally.cover(index, image, self.examined - 1)
        try:
            return self._evaluate(image, listed_after, state_within)
        except Exception as exc:
            _log_unexpected(exc, image.get("id"))
            self.tally.add(
                ImageResult(
                    image.get("id"),
                    "error",
                    f"internal error: {type(exc).__name__}: {exc}",
                    image_name=image.get("name"),
                    tags=ImageResult.tags_of(image),
                ),
                self.examined - 1,
            )
            return None

    def _evaluate(
        self, image: dict[str, Any], listed_after: str | None, state_within: float | None = None
    ) -> PlannedPatch | None:
        """``state_within``: the seconds for the image's Config state (None: none is sent)."""
        examined_at, changes_at = self.examined - 1, self.would_change
        decision = evaluate(self.policy, image, self.project_id, self.today, self.uefi_versions)
        if state_within is not None:
            self._observe(image, decision, state_within)
        planned = plan(decision, self.dry_run)
        sent = [op["path"][1:] for op in planned.send]
        labels = {}
        found: tuple[Found, ...] = ()
        if self.tally.images is not None:  # the OBS report lists every verdict
            found = tuple((v.rule, v.status, v.reason, v.mode) for v in decision.verdicts)
        for verdict in decision.verdicts:
            self.tally.rules[verdict.rule][verdict.status] += 1
            label = fix_label(verdict, sent)
            if label:
                labels[verdict.rule] = label
        if decision.enforced:
            self.would_change += 1
        if planned.send:
            return PlannedPatch(
                image["id"],
                image.get("name"),
                planned.send,
                listed_after,
                labels,
                before(image, planned.send),
                examined_at,
                changes_at,
                ImageResult.tags_of(image),
                found,
            )
        self.tally.add(
            ImageResult(
                image["id"],
                planned.outcome,
                planned.reason,
                list(decision.operations),
                image_name=image.get("name"),
                notes=list(decision.notes),
                before=before(image, decision.operations)
                if planned.outcome == "would_update"
                else None,
                fixes=labels,
                tags=ImageResult.tags_of(image),
            ),
            examined_at,
            found,
        )
        return None

    # -- phase 2: guardrail and apply -----------------------------------------------------

    def _guardrail(self) -> str | None:
        """Why no change may be made: the changes this sweep would make (over all its
        hops so far) exceed the policy's limits."""
        changes = self.options.planned_before + self.would_change
        examined = self.options.examined_before + self.examined
        most = self.policy.max_updates
        percent = self.policy.max_updates_percent
        done = (
            "nothing was changed" if not self.dry_run else "a real run would change nothing"
        ) + "; the changes held back are listed under would_change"
        if most is not None and changes > most:
            return f"{changes} images would change, more than max_updates {most}; {done}"
        cap = self.options.max_changes
        if cap is not None and changes > cap:
            return (
                f"{changes} images would change, more than the {cap} its organization's plan "
                f"allowed this project (images changed since the plan); {done}"
            )
        if percent is not None and examined and 100 * changes / examined > percent:
            return (
                f"{changes} of {examined} images would change "
                f"({100 * changes / examined:.1f}%), more than max_updates_percent "
                f"{percent:g}; {done}"
            )
        return None

    def _hold(self, plans: list[PlannedPatch], reason: str) -> None:
        for planned in plans:
            result = self._result(planned, "would_update", reason, "would_fix")
            self.tally.add(result, planned.examined_at, planned.found)

    def _apply(self, plans: list[PlannedPatch]) -> dict[str, Any] | None:
        """PATCH each plan, ``concurrency`` at a time; the continuation if time ran out.
        The next hop lists the deferred images again, so the continuation counts for the
        guardrail only what this hop examined before the first of them, plus the changes
        made after it (those images will no longer need changing)."""
        first_late: PlannedPatch | None = None
        changed_after = 0
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            patch = in_context(self._patch)  # the workers log this invocation's request id
            for index, (planned, result) in enumerate(
                zip(plans, pool.map(patch, plans), strict=True)
            ):
                self.tally.add(result, planned.examined_at, planned.found)
                self.progress({"applied": index + 1})
                if result.outcome == "deferred" and first_late is None:
                    first_late = planned
                elif result.outcome == "updated" and first_late is not None:
                    changed_after += 1
        if first_late is None:
            return None
        self.deferred_at = first_late.examined_at
        continuation = self._continuation(first_late.resume_after, "time")
        continuation["examined_before"] = self.options.examined_before + first_late.examined_at
        continuation["planned_before"] = (
            self.options.planned_before + first_late.changes_at + changed_after
        )
        return continuation

    def _patch(self, planned: PlannedPatch) -> ImageResult:
        self.limiter.acquire()
        if self.budget.remaining() <= 0:  # the margin is for the report and the continuation
            return self._result(
                planned, "deferred", "out of time; the continuation covers it", "not_fixed"
            )
        try:
            self.gateway.update_image(planned.image_id, list(planned.send))
        except ImsError as exc:
            outcome, retryable = failure(exc)
            return self._result(
                planned, outcome, f"not updated: {exc}", "not_fixed", retryable=retryable
            )
        except Exception as exc:  # one odd image must not stop the others
            _log_unexpected(exc, planned.image_id)
            return self._result(
                planned, "error", f"internal error: {type(exc).__name__}: {exc}", "not_fixed"
            )
        return self._result(
            planned, "updated", f"{len(planned.send)} attribute(s) changed", "fixed"
        )

    def _result(
        self,
        planned: PlannedPatch,
        outcome: Outcome,
        reason: str,
        fixed: str,
        retryable: bool = False,
    ) -> ImageResult:
        """A planned image's result; its "fixed" labels become ``fixed`` (sent),
        ``would_fix`` (held back) or ``not_fixed`` (failed)."""
        fixes = {
            rule: label.replace("fixed", fixed)
            if label.endswith("_fixed") or label == "fixed"
            else label
            for rule, label in planned.fix_labels.items()
        }
        return ImageResult(
            planned.image_id,
            outcome,
            reason,
            list(planned.send),
            image_name=planned.image_name,
            before=planned.before,
            retryable=retryable,
            fixes=fixes,
            tags=planned.tags,
        )

    def _continuation(self, marker: str | None, cause: str) -> dict[str, Any]:
        """Where a next run resumes; ``cause``: time (a next hop may follow), limit (the
        ``limit`` option was reached) or error (rerun from where this run started)."""
        reasons = {
            "time": "out of time",
            "limit": "the limit of images was reached",
            "error": "a page could not be read",
        }
        return {
            "marker": marker,
            "hop": self.options.hop + 1,
            "cause": cause,
            "reason": reasons[cause],
        }


def _log_unexpected(exc: Exception, image_id: str | None) -> None:
    """A bug hit one image: its traceback goes to the log; the sweep goes on."""
    get_logger().exception(
        "unexpected failure",
        exc_info=exc,
        extra={"fields": {"image_id": image_id, "error": f"{type(exc).__name__}: {exc}"}},
    )
