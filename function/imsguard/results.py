"""What an invocation found: one typed result per image (or job, or name), and the reports.

Results are values built along the path and turned into JSON only at the edge
(``to_json()``), so nothing downstream has to strip private keys, and the handler
tells a sweep report from an event report by its type.

(Plain classes rather than dataclasses: each dataclass costs about half a millisecond of
cold start, and every event with image work loads this module.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

from imsguard import __version__
from imsguard.evaluate import fix_label

if TYPE_CHECKING:
    from imsguard.rules.base import Verdict

# Every outcome a result can have ("exempt" comes with exemptions in policies). Declared
# once: the handler, the sweep and the CLI all read it from here.
Outcome = Literal[
    "updated",
    "would_update",
    "compliant",
    "non_compliant",
    "exempt",
    "not_applicable",
    "deferred",
    "error",
]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
# Outcomes a person should look at, and the one a dry run, audit mode or the guardrail
# gives an image that would change.
NEEDS_A_HUMAN: frozenset[Outcome] = frozenset({"non_compliant", "error"})
WOULD_CHANGE: frozenset[Outcome] = frozenset({"would_update"})

Operation = dict[str, str]
# An examined image an exemption that expires soon covers: (the exemption's index in the
# policy, image id, image name, image tags). Kept for SMN's digest; never reported as JSON.
Covered = tuple[int, str, Any, tuple[str, ...]]
if TYPE_CHECKING:  # types only: an event's cold start does not build them
    # One rule's finding as the OBS report lists it: (rule, verdict, reason, mode, fix label
    # or ""); and as a sweep keeps it until the image's result exists: (rule, verdict,
    # reason, mode).
    VerdictRow = tuple[str, str, str, str, str]
    Found = tuple[str, str, str, str]
    # An examined image as the OBS report lists it: (image id, name, outcome, reason,
    # operations, before, verdict rows). Kept only while the OBS sink is on; not in the JSON.
    Examined = tuple[
        str | None, Any, str, str, list[Operation], dict[str, Any] | None, tuple[VerdictRow, ...]
    ]


_UNLISTED: Any = object()  # a key not reported: image_name (no image read), job_id (no job)


class ImageResult:
    """One image's (or unresolved job's or name's) result. ``verdicts``, ``sent`` and
    ``failed`` make the per-rule ``rules`` entries of the event path; a sweep keeps only
    the ``fixes`` labels (its results are many)."""

    __slots__ = (
        "before",
        "failed",
        "fixes",
        "held_back",
        "image_id",
        "image_name",
        "job_id",
        "name",
        "notes",
        "operations",
        "outcome",
        "reason",
        "retryable",
        "sent",
        "tags",
        "verdicts",
    )

    def __init__(
        self,
        image_id: str | None,
        outcome: Outcome,
        reason: str,
        operations: list[Operation] | None = None,
        *,
        image_name: Any = _UNLISTED,
        job_id: Any = _UNLISTED,
        name: str | None = None,
        notes: list[str] | None = None,
        before: dict[str, Any] | None = None,
        held_back: list[Operation] | None = None,
        retryable: bool = False,
        fixes: dict[str, str] | None = None,
        verdicts: tuple[Verdict, ...] = (),
        sent: tuple[str, ...] = (),
        failed: bool = False,
        tags: tuple[str, ...] | None = None,
    ):
        self.image_id = image_id
        self.image_name = image_name  # may be None: an image without a name
        self.job_id = job_id
        self.name = name
        self.operations = list(operations or [])
        self.notes = notes
        self.before = before
        self.held_back = held_back
        self.outcome = outcome
        self.reason = reason
        self.retryable = retryable  # IMS failed transiently, even after our retries
        self.fixes = fixes
        self.verdicts = verdicts
        self.sent = sent  # the attribute names the PATCH carried
        self.failed = failed  # the PATCH failed: fixes are "not_fixed"
        # The image's tags, when the result is about an image that was read (None: none
        # was). For notice routing; not part of the JSON entry.
        self.tags = tags

    def __repr__(self) -> str:
        return f"ImageResult({self.to_json()!r})"

    @staticmethod
    def tags_of(image: dict[str, Any]) -> tuple[str, ...]:
        """An image's tags as a result keeps them (IMS's list of strings; others dropped)."""
        tags = image.get("tags")
        return tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()

    @property
    def subject(self) -> str:
        """What the result is about, for messages: the image, else the job, else the name."""
        job_id = None if self.job_id is _UNLISTED else self.job_id
        return str(self.image_id or job_id or self.name)

    def to_json(self) -> dict[str, Any]:
        """The result entry as the function reports and logs it."""
        entry: dict[str, Any] = {"image_id": self.image_id}
        if self.image_name is not _UNLISTED:
            entry["image_name"] = self.image_name
        if self.job_id is not _UNLISTED:  # a job's result: its id, even when unknown (null)
            entry["job_id"] = self.job_id
        if self.name is not None:
            entry["name"] = self.name
        entry["operations"] = list(self.operations)
        if self.notes:
            entry["notes"] = list(self.notes)
        if self.before is not None:
            entry["before"] = self.before
        if self.held_back:
            entry["held_back"] = self.held_back
        entry["outcome"] = self.outcome
        entry["reason"] = self.reason
        if self.retryable:
            entry["retryable"] = True
        if self.fixes is not None:
            entry["fixes"] = self.fixes
        if self.verdicts:
            entry["rules"] = [verdict_entry(v, self.sent, self.failed) for v in self.verdicts]
        return entry


def needs_a_person(result: ImageResult) -> bool:
    """Whether a person should look at this image: its outcome is one of NEEDS_A_HUMAN, or
    a rule it violates cannot be fixed (a sweep's ``fixes`` labels, an event's verdicts).
    The one definition: the sweep's needs_attention, SMN's notices and Cloud Eye use it."""
    if result.outcome in NEEDS_A_HUMAN or "cannot_fix" in (result.fixes or {}).values():
        return True
    return any(fix_label(v, result.sent, result.failed) == "cannot_fix" for v in result.verdicts)


def verdict_entry(verdict: Verdict, sent: Collection[str], failed: bool = False) -> dict[str, Any]:
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


class EventReport:
    """The report on an event's (or a batch's) images."""

    __slots__ = ("dry_run", "results", "sinks", "skipped", "trigger")

    def __init__(
        self, trigger: str, dry_run: bool, results: list[ImageResult], skipped: tuple[str, ...]
    ):
        self.trigger = trigger
        self.dry_run = dry_run
        self.results = results
        self.skipped = skipped
        self.sinks: dict[str, dict[str, Any]] | None = None  # what each report sink did

    @property
    def retryable(self) -> list[ImageResult]:
        """Results IMS failed transiently for: FunctionGraph should retry the event."""
        return [r for r in self.results if r.retryable]

    def to_json(self) -> dict[str, Any]:
        summary = Counter(r.outcome for r in self.results)
        report: dict[str, Any] = {
            "status": "ok",
            "imsguard": __version__,
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "summary": dict(sorted(summary.items())),
            "results": [r.to_json() for r in self.results],
        }
        if self.skipped:
            report["skipped"] = list(self.skipped)
        if self.sinks is not None:
            report["sinks"] = self.sinks
        return report


class SweepReport:
    """One sweep hop's report: counts for every image, details for the first of them, and
    where the next hop resumes (``continuation``) and whether it was started (``continued``).
    ``listed`` (each listed image's result, by id), ``covered`` and ``covered_beyond`` (the
    examined images that exemptions expiring soon cover: the first ones, then a count per
    exemption), ``hop``, ``examined_before``, ``notices_before`` and ``examined_images``
    (every examined image with its verdicts and ``before`` values, kept only when the OBS
    sink is on: None otherwise) are for the report sinks, not the JSON."""

    __slots__ = (
        "attention_at",
        "changed",
        "continuation",
        "continued",
        "covered",
        "covered_beyond",
        "covered_beyond_at",
        "deferred_at",
        "dry_run",
        "error",
        "examined",
        "examined_at",
        "examined_before",
        "examined_images",
        "guardrail",
        "hop",
        "ims_retries",
        "listed",
        "needs_attention",
        "needs_attention_total",
        "notes",
        "notices_before",
        "notices_handed",
        "report_keys_before",
        "report_stem",
        "results",
        "rules",
        "shard",
        "sinks",
        "summary",
        "sweep_id",
        "trigger",
        "truncated",
        "would_change",
    )

    def __init__(
        self,
        trigger: str,
        dry_run: bool,
        examined: int,
        summary: dict[str, int],
        rules: dict[str, dict[str, int]],
        changed: list[dict[str, Any]],
        would_change: list[dict[str, Any]],
        needs_attention: list[dict[str, Any]],
        results: list[ImageResult],
        truncated: bool,
        notes: list[str] | None = None,
        error: str | None = None,
        guardrail: str | None = None,
        continuation: dict[str, Any] | None = None,
        needs_attention_total: int | None = None,
        listed: dict[str, ImageResult] | None = None,
        covered: list[Covered] | None = None,
        covered_beyond: dict[int, int] | None = None,
        hop: int = 0,
        examined_images: list[Examined] | None = None,
        examined_at: dict[str, int] | None = None,
        attention_at: Sequence[int] = (),
        deferred_at: int | None = None,
        covered_beyond_at: Mapping[int, Sequence[int]] | None = None,
    ):
        self.trigger = trigger
        self.dry_run = dry_run
        self.examined = examined
        self.summary = summary
        self.rules = rules
        self.changed = changed
        self.would_change = would_change
        self.needs_attention = needs_attention
        # images that need a person, including those beyond the listed ones
        self.needs_attention_total = (
            len(needs_attention) if needs_attention_total is None else needs_attention_total
        )
        self.results = results
        self.truncated = truncated
        self.notes = notes
        self.error = error
        self.guardrail = guardrail
        self.continuation = continuation
        self.listed = {} if listed is None else listed
        self.covered = covered  # None: not known (the exemptions themselves are listed)
        self.covered_beyond = {} if covered_beyond is None else covered_beyond
        self.hop = hop  # which hop of its sweep (0: the first); for the sinks, not the JSON
        self.examined_images = examined_images
        # For SMN's digest when this hop deferred patches: the next hop examines the images
        # from the ``deferred_at``-th on again, so the lines handed to it leave them out.
        # ``examined_at``: each listed or covered image's place in this hop's listing;
        # ``attention_at``: the place of each image that needs a person.
        self.examined_at = {} if examined_at is None else examined_at
        self.attention_at = attention_at
        self.deferred_at = deferred_at
        # each exemption's covered images beyond the listed ones, by place (as attention_at)
        self.covered_beyond_at = {} if covered_beyond_at is None else covered_beyond_at
        # The images earlier hops examined, and the digest lines they handed on (SMN's
        # sinks.digest.Item values): a continued sweep publishes one digest, on its last hop.
        self.examined_before = 0
        self.notices_before: list[Any] = []
        self.notices_handed = False  # handed to the next hop, which publishes them
        self.ims_retries = 0
        # The OBS sink's: the sweep's id (its first hop's request id; None until known), the
        # JSON keys of the earlier hops' reports, and this hop's key without .json/.csv, set
        # once (sinks.obs.hop_report) so the key handed to the next hop is the one written.
        self.sweep_id: str | None = None
        self.report_keys_before: list[str] = []
        self.report_stem: str | None = None
        self.continued: dict[str, Any] | None = None
        self.sinks: dict[str, dict[str, Any]] | None = None  # what each report sink did
        self.shard: dict[str, Any] | None = None  # an org sweep's shard: which one it is

    @property
    def status(self) -> str:
        return "error" if self.error is not None else "ok"

    def to_json(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "imsguard": __version__,
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "status": self.status,
            "examined": self.examined,
            "summary": self.summary,
            "rules": self.rules,
            "changed": self.changed,
            "would_change": self.would_change,
            "needs_attention": self.needs_attention,
            "results": [r.to_json() for r in self.results],
            "truncated": self.truncated,
        }
        if self.shard is not None:
            report["shard"] = self.shard
        if self.notes:
            report["notes"] = list(self.notes)
        if self.error is not None:
            report["error"] = self.error
        if self.guardrail is not None:
            report["guardrail"] = self.guardrail
        if self.continuation is not None:
            report["continuation"] = self.continuation
        report["ims_retries"] = self.ims_retries
        if self.continued is not None:
            report["continued"] = self.continued
        if self.sinks is not None:
            report["sinks"] = self.sinks
        return report
