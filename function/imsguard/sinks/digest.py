"""What an SMN notice says, computed from the report alone (pure: no I/O, no clock but the
``today`` given), in a deterministic order, within SMN's limits.

SMN's limits (API reference, PublishMessage): ``subject`` at most 512 bytes, ``message`` at
most 256 KB, an SMS at most 490 characters and without "[]" or "【】". Beyond them the digest
lists the first items and then one summary line; no line is ever cut.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING, Any, NamedTuple

from imsguard.evaluate import expiring_soon
from imsguard.events import is_image_id, is_image_name
from imsguard.logs import log
from imsguard.match import has_tag
from imsguard.results import Covered, EventReport, ImageResult, SweepReport, needs_a_person

if TYPE_CHECKING:
    from imsguard.policy import Policy
    from imsguard.settings import Settings

SUBJECT_BYTES = 512
MESSAGE_BYTES = 256 * 1024
SMS_CHARS = 490
# The email text is sent twice (as "email" and as "default"), with the SMS beside it: each
# copy keeps within this, so the whole message_structure stays under MESSAGE_BYTES.
EMAIL_BYTES = 120 * 1024
FIELD_CHARS = 300  # an image name or reason longer than this is shortened, with "..."
# The JSON a sweep hop hands its next hop for the sweep's one digest, at most (the rest is
# summarised): the continuation's payload stays far below FunctionGraph's request limits.
CARRY_BYTES = 32 * 1024

NEED_A_PERSON = "Images that need a person"
HELD_BACK = "Changes held back"
EXPIRING = "Exemptions that expire soon"
SECTIONS = (NEED_A_PERSON, HELD_BACK, EXPIRING)
# The label of a line that stands for the images IMSGUARD_RESULTS_LIMIT kept out of a
# sweep's report: counted in its section, listed last, sent to the default topic.
NOT_LISTED = "not listed"
WHY_NOT_LISTED = "raise IMSGUARD_RESULTS_LIMIT or see the logs"


class Item(NamedTuple):
    """One line of a digest: an image (or an exemption) in a section."""

    section: str
    subject: str  # the image id, or the exemption's tag or images
    name: str  # the image's name ("" when unknown)
    rule: str  # the rule, "-" when the item concerns no one rule
    label: str  # cannot_fix, non_compliant, error, audit, guardrail, expires 2026-01-10 ...
    reason: str
    # The image's tags, which route the line to a topic (None: no image read, or the line
    # is about an exemption: it goes to the default topic).
    tags: tuple[str, ...] | None = None
    # The images the line stands for: 1 (an image, or an exemption listed itself; lines with
    # the same subject count once), or how many a summary line stands for.
    images: int = 1
    # An expiring exemption's line: the exemption's index in the policy (None: other lines).
    exemption: int | None = None
    # A line that stands for ``images`` images not listed (of its section, or of its
    # exemption): summary lines of several hops add up into one.
    summary: bool = False


class Digest(NamedTuple):
    subject: str
    email: str
    sms: str
    items: int  # items listed in the email text (the rest are summarised)
    total: int
    images: int = 0  # the images (and exemptions) the digest is about, listed or not

    def message_structure(self) -> str:
        """SMN's message_structure: the full text for email and by default, a short SMS."""
        return json.dumps(
            {"default": self.email, "email": self.email, "sms": self.sms}, ensure_ascii=False
        )


def items_for(
    report: EventReport | SweepReport,
    policy: Policy,
    today: date,
    expiry_days: int,
    final: bool = True,
) -> list[Item]:
    """Everything a person should hear about, in section order, then by image id and rule.
    A sweep's digest counts the images beyond IMSGUARD_RESULTS_LIMIT in one line per section
    (from the report's totals), and lists the exemptions expiring soon: the images each one
    covers (every hop's, handed on), and in the ``final`` digest the exemption itself when no
    hop examined an image it covers.
    An event lists only its images that need a person (never a result FunctionGraph will
    retry: it is not final yet), and no exemption: the sweep's digest covers those."""
    found: list[Item] = []
    if isinstance(report, SweepReport):
        by_id = {r.image_id: r for r in report.results}
        by_id.update(report.listed)
        for entry in report.needs_attention:
            result = by_id.get(entry["image_id"])
            found.extend(_attention(entry["image_id"], entry["image_name"], entry, result))
        beyond = report.needs_attention_total - len(report.needs_attention)
        cut = None if final else report.deferred_at
        if cut is not None:  # the images from the first deferred on are the next hop's
            at = report.examined_at
            found = [i for i in found if at.get(i.subject, -1) < cut]
            beyond = sum(1 for a in report.attention_at if a < cut) - sum(
                1 for e in report.needs_attention if at.get(str(e["image_id"]), -1) < cut
            )
        if beyond > 0:
            found.append(_not_listed(NEED_A_PERSON, beyond))
        if report.guardrail is not None:
            held = report.summary.get("would_update", 0) - len(report.would_change)
            if held > 0:
                found.append(_not_listed(HELD_BACK, held))
            for entry in report.would_change:
                result = by_id.get(entry["image_id"])
                rules = sorted((result.fixes or {}) if result else {}) or ["-"]
                for rule in rules:
                    found.append(
                        Item(
                            HELD_BACK,
                            str(entry["image_id"]),
                            _text(entry["image_name"]),
                            rule,
                            "guardrail",
                            _text(report.guardrail),
                            result.tags if result else None,
                        )
                    )
        for result in report.results:
            if cut is None or report.examined_at.get(str(result.image_id), -1) < cut:
                found.extend(_held_by_safety(result))
        beyond_covered = report.covered_beyond
        if cut is not None:  # the covered images from the first deferred on: the next hop's
            beyond_covered = {
                index: sum(1 for a in places if a < cut)
                for index, places in report.covered_beyond_at.items()
            }
        covered = expiring(policy, today, expiry_days, report.covered, beyond_covered, itself=False)
        if cut is not None:
            covered = [i for i in covered if report.examined_at.get(i.subject, -1) < cut]
        found += covered + report.notices_before  # the earlier hops': one digest in all
        if final:
            listed = {i.exemption for i in found if i.exemption is not None}
            found += [
                i for i in expiring(policy, today, expiry_days, []) if i.exemption not in listed
            ]
    else:
        for result in report.results:
            if result.retryable:
                continue
            if needs_a_person(result):
                found.extend(_attention(result.subject, result.image_name, None, result))
            found.extend(_held_by_safety(result))
    return ordered(found)


def ordered(items: list[Item]) -> list[Item]:
    """Items in digest order: by section, then image id and rule; an item listed twice
    (results and attention, or two hops) once; one summary line per section (and per
    expiring exemption) counting the images of all its summary lines."""
    order = {section: index for index, section in enumerate(SECTIONS)}
    counts: Counter[tuple[str, int | None]] = Counter()
    firsts: dict[tuple[str, int | None], Item] = {}
    kept: list[Item] = []
    for item in items:
        if item.summary:
            key = (item.section, item.exemption)
            counts[key] += item.images
            firsts.setdefault(key, item)
        else:
            kept.append(item)
    kept = list(dict.fromkeys(kept))
    for (section, exemption), images in counts.items():
        if exemption is None:
            kept.append(_not_listed(section, images))
        else:
            kept.append(firsts[section, exemption]._replace(images=images))
    return sorted(
        kept,
        key=lambda i: (order[i.section], i.label == NOT_LISTED, i.subject, i.rule, i.label),
    )


_NOT_LISTED_WHAT = {
    NEED_A_PERSON: "that need a person",
    HELD_BACK: "whose changes are held back",
    EXPIRING: "covered by exemptions that expire soon",
}


def carry(items: list[Item], budget_bytes: int = CARRY_BYTES) -> list[Item]:
    """What a sweep hop hands its next hop for the sweep's one digest: its items in digest
    order while they fit in ``budget_bytes`` of JSON (the continuation's payload stays small),
    the rest folded into summary lines (per section, and per expiring exemption) that count
    their images, each image once."""
    kept: list[Item] = []
    size = 0
    rest: list[Item] = []
    for item in ordered(items):
        cost = len(json.dumps(_wire(item), ensure_ascii=False).encode("utf-8")) + 2
        if rest or (not item.summary and size + cost > budget_bytes):
            rest.append(item)
            continue
        kept.append(item)
        size += cost
    listed = {(i.section, i.subject) for i in kept if not i.summary}
    groups: dict[tuple[str, int | None], list[Item]] = {}
    for item in rest:
        groups.setdefault((item.section, item.exemption), []).append(item)
    for (section, exemption), lines in groups.items():
        singles = {i.subject for i in lines if not i.summary and (section, i.subject) not in listed}
        images = len(singles) + sum(i.images for i in lines if i.summary)
        if not images:
            continue  # every image of these lines is listed already
        if exemption is None:
            kept.append(_not_listed(section, images))
        else:  # the receiving hop names the exemption again from the policy
            kept.append(lines[0]._replace(name="", tags=None, images=images, summary=True))
        listed |= {(section, subject) for subject in singles}
    return ordered(kept)


# What a notice handed from hop to hop is called on the wire (event_models.CarriedNotice).
SECTION_CODES = {NEED_A_PERSON: "attention", HELD_BACK: "held_back", EXPIRING: "expiring"}
# What an earlier hop's line says: the label's meaning (free text never crosses hops: a
# caller who can invoke the function cannot make it publish words of their own).
LABEL_REASONS = {
    "cannot_fix": "imsguard cannot fix this rule",
    "partly_fixed": "a safety check held part of the fix back",
    "partly_would_fix": "a safety check would hold part of the fix back",
    "partly_not_fixed": "the update failed",
    "not_fixed": "the update failed",
    "would_fix": "not fixed (dry run or audit)",
    "audit": "the rule is in audit mode: reported, never fixed",
    "non_compliant": "a violation imsguard did not fix",
    "error": "imsguard could not check or fix the image",
    "guardrail": "held back by the sweep's guardrail (max_updates)",
    "safety check": "a safety check held the change back",
}
EARLIER_HOP = "found by an earlier hop of this sweep; its log line has the details"


def _wire(item: Item) -> dict[str, Any]:
    """A line as a continuation carries it: ids, names, rule, label and counts; no text."""
    notice: dict[str, Any] = {
        "section": SECTION_CODES[item.section],
        "image_id": None if item.summary else item.subject,
        "name": item.name if is_image_name(item.name) else "",  # IMS's characters: no URL
        "rule": "-" if item.exemption is not None else item.rule,  # the policy's, on receipt
        "label": item.label,
        "tags": None if item.tags is None else list(item.tags),
        "images": item.images,
    }
    if item.exemption is not None:
        notice["exemption"] = item.exemption
    return notice


def handed_on(
    report: SweepReport, policy: Policy, today: date, settings: Settings
) -> list[dict[str, Any]]:
    """The digest lines (this hop's and those handed to it) a continuing sweep hop gives its
    next hop, as JSON for the continuation's payload: the sweep publishes one digest. Only
    lines about images (ids) and counts cross hops: an exemption that covers no image so far
    is named by the last hop."""
    found = items_for(report, policy, today, settings.notify_expiry_days, final=False)
    return [_wire(item) for item in carry(found) if item.summary or is_image_id(item.subject)]


def received(notices: Iterable[dict[str, Any]], policy: Policy) -> list[Item]:
    """The digest lines an earlier hop handed on (``handed_on``, checked by
    event_models.CarriedNotice), as items again: their words come from the label and the
    policy. A line about a rule or an exemption the policy no longer has is dropped."""
    sections = {code: section for section, code in SECTION_CODES.items()}
    rules = {rule.name for rule in policy.rules}
    lines: list[Item] = []
    dropped = 0
    for notice in notices:
        section, images = sections[notice["section"]], notice["images"]
        tags = None if notice.get("tags") is None else tuple(notice["tags"])
        index = notice.get("exemption")
        if section == EXPIRING:
            line = _exemption_line(policy, index, notice, tags)
            if line is None:
                dropped += 1
            else:
                lines.append(line)
        elif notice["label"] == NOT_LISTED:
            lines.append(_not_listed(section, images))
        elif notice["label"] not in LABEL_REASONS or notice["rule"] not in {"-", *rules}:
            dropped += 1
        else:
            reason = f"{LABEL_REASONS[notice['label']]}; {EARLIER_HOP}"
            subject = str(notice["image_id"])
            lines.append(
                Item(
                    section, subject, notice["name"], notice["rule"], notice["label"], reason, tags
                )
            )
    if dropped:
        log(
            logging.WARNING,
            "digest lines of earlier hops dropped: an unknown label, or a rule or exemption "
            "the policy no longer has",
            dropped=dropped,
        )
    return lines


def _exemption_line(
    policy: Policy, index: int | None, notice: dict[str, Any], tags: tuple[str, ...] | None
) -> Item | None:
    """An expiring exemption's line handed on, named again from the policy (None: the
    policy has no such exemption, or it no longer expires on the date the line says)."""
    if index is None or index >= len(policy.exemptions):
        return None
    exemption = policy.exemptions[index]
    label = _expires(exemption)
    if notice["label"] != label:
        return None
    if notice["image_id"] is None:
        return _covered_beyond(exemption, index, notice["images"])
    return _covered(exemption, index, str(notice["image_id"]), notice["name"], tags)


def _not_listed(section: str, images: int) -> Item:
    """The line for the images of a section that the results limit kept out of the report."""
    subject = f"and {images:,} more image{'s' if images != 1 else ''} {_NOT_LISTED_WHAT[section]}"
    return Item(section, subject, "", "-", NOT_LISTED, WHY_NOT_LISTED, None, images, summary=True)


def _label(result: ImageResult, verdict: Any) -> str | None:
    from imsguard.evaluate import fix_label

    return fix_label(verdict, result.sent, result.failed)


def _attention(
    subject: Any, name: Any, entry: dict[str, Any] | None, result: ImageResult | None
) -> list[Item]:
    """The lines of an image that needs a person: one per violated rule that was not fixed
    (the rule and its reason), else one for the image (an error, with its reason)."""
    image_name = "" if name is None or not isinstance(name, str) else _text(name)
    tags = result.tags if result is not None else None
    lines: list[Item] = []
    if result is not None:
        for verdict in result.verdicts:
            label = _label(result, verdict)
            if verdict.status == "violation" and label != "fixed":
                label = "audit" if verdict.mode == "audit" else (label or "non_compliant")
                lines.append(
                    Item(
                        NEED_A_PERSON,
                        str(subject),
                        image_name,
                        verdict.rule,
                        label,
                        _text(verdict.reason),
                        tags,
                    )
                )
        if not lines:
            for rule, label in sorted((result.fixes or {}).items()):
                if label != "fixed":  # a sweep keeps labels, not verdicts: the label's words
                    reason = LABEL_REASONS.get(label, result.reason)
                    lines.append(
                        Item(
                            NEED_A_PERSON,
                            str(subject),
                            image_name,
                            rule,
                            label,
                            _text(reason),
                            tags,
                        )
                    )
    if not lines:
        outcome = entry["outcome"] if entry else (result.outcome if result else "error")
        reason = entry["reason"] if entry else (result.reason if result else "")
        lines.append(
            Item(NEED_A_PERSON, str(subject), image_name, "-", outcome, _text(reason), tags)
        )
    return lines


def _held_by_safety(result: ImageResult) -> list[Item]:
    """An image whose change a safety check held back (e.g. UEFI on an OS IMS does not list)."""
    if not result.held_back:
        return []
    name = result.image_name if isinstance(result.image_name, str) else ""
    held = ", ".join(sorted(f"{op.get('path', '')}" for op in result.held_back))
    return [
        Item(
            HELD_BACK,
            result.subject,
            _text(name),
            "-",
            "safety check",
            _text(f"{held}: {result.reason}"),
            result.tags,
        )
    ]


def expiring(
    policy: Policy,
    today: date,
    days: int,
    covered: list[Covered] | None = None,
    beyond: dict[int, int] | None = None,
    itself: bool = True,
) -> list[Item]:
    """Exemptions whose ``expires`` falls from today to ``days`` days on (an expired one no
    longer applies: the sweep reports its images by the rules themselves). Each image one
    covers (``covered``) is a line: its id, name, the exemption's rules, expiry, which
    exemption and why; ``beyond`` counts the covered images not kept, summarised in one line
    per exemption. An exemption that covers no known image is listed itself (``itself``;
    always when ``covered`` is None: the images are not known)."""
    found: list[Item] = []
    for index in expiring_soon(policy, today, days):
        exemption = policy.exemptions[index]
        which, label = _which(exemption), _expires(exemption)
        images = [c for c in covered or () if c[0] == index]
        more = (beyond or {}).get(index, 0)
        for _, image_id, name, tags in images:
            image_name = _text(name) if isinstance(name, str) else ""
            found.append(_covered(exemption, index, image_id, image_name, tags))
        if more:
            found.append(_covered_beyond(exemption, index, more))
        if itself and not images and not more:
            found.extend(
                Item(
                    EXPIRING,
                    which,
                    "",
                    rule,
                    label,
                    _text(exemption.reason),
                    exemption=index,
                )
                for rule in sorted(exemption.rules or ["-"])
            )
    return found


def _covered(
    exemption: Any, index: int, image_id: str, name: str, tags: tuple[str, ...] | None
) -> Item:
    """The line of an image an expiring exemption covers."""
    reason = _text(f"exemption {_which(exemption)}: {exemption.reason}")
    return Item(
        EXPIRING, image_id, name, _rules(exemption), _expires(exemption), reason, tags, 1, index
    )


def _covered_beyond(exemption: Any, index: int, images: int) -> Item:
    """The line that counts the images an expiring exemption covers beyond those listed."""
    return Item(
        EXPIRING,
        _which(exemption),
        "",
        _rules(exemption),
        _expires(exemption),
        _text(exemption.reason),
        images=images,
        exemption=index,
        summary=True,
    )


def _rules(exemption: Any) -> str:
    return _text(", ".join(sorted(exemption.rules or ["-"])))


def _which(exemption: Any) -> str:
    """An exemption as a digest names it: its tag, or its images."""
    if exemption.tag:
        return _text(f"tag {exemption.tag}")
    return _text("images " + ", ".join(sorted(exemption.images or [])))


def _expires(exemption: Any) -> str:
    return f"expires {exemption.expires.isoformat() if exemption.expires else ''}"


def route(
    items: list[Item], routes: tuple[tuple[str, str], ...], default_topic: str
) -> dict[str, list[Item]]:
    """Each topic's items, in order: an item whose image has a route's tag goes to that
    route's topic (to each, if several match; once to a topic two routes name), the rest to
    ``default_topic``. Topics without items are left out; the default topic comes first."""
    topics: dict[str, list[Item]] = {default_topic: []}
    for item in items:
        tags = [*item.tags] if item.tags is not None else None
        matched = [urn for tag, urn in routes if tags is not None and has_tag(tags, tag)]
        for urn in dict.fromkeys(matched or [default_topic]):
            topics.setdefault(urn, []).append(item)
    return {urn: listed for urn, listed in topics.items() if listed}


def compose(
    items: list[Item],
    *,
    kind: str,
    region: str | None,
    project_id: str | None,
    dry_run: bool,
    examined: int | None = None,
    email_bytes: int = EMAIL_BYTES,
) -> Digest | None:
    """The digest of these items (None when there are none: nothing is published)."""
    if not items:
        return None
    where = f"{region or 'unknown region'}, project {project_id or 'unknown'}"
    counts = image_counts(items)
    parts = [f"{counts[s]} {_short(s)}" for s in SECTIONS if counts[s]]
    mode = " (dry run)" if dry_run else ""
    subject = _fit_bytes(f"imsguard {kind}{mode} in {where}: " + ", ".join(parts), SUBJECT_BYTES)
    head = [f"imsguard {kind}{mode} in {where}."]
    if examined is not None:
        head.append(f"Images examined: {examined:,}.")
    lines = [*head, ""]
    listed = 0
    section = None
    summary_reserve = 400  # room kept for the summary line
    size = _json_bytes("\n".join(lines))
    for item in items:
        new = []
        if item.section != section:
            new += ["", f"{item.section} ({counts[item.section]:,}):"]
        new.append(_line(item))
        cost = _json_bytes("\n".join(new)) + 2
        if size + cost + summary_reserve > email_bytes:
            break
        lines += new
        size += cost
        section = item.section
        listed += 1
    if listed < len(items):
        rest = Counter(i.label.split(" ")[0] for i in items[listed:])
        detail = ", ".join(f"{n:,} {label}" for label, n in sorted(rest.items()))
        lines += ["", f"and {len(items) - listed:,} more: {detail}"[: summary_reserve - 10]]
    email = "\n".join(lines).replace("\n\n\n", "\n\n").strip() + "\n"
    first = items[0]
    sms = _sms(
        f"imsguard {kind}{mode} {region or ''}: "
        + ", ".join(parts)
        + f". First: {first.subject} {first.rule} {first.label}. Details by email."
    )
    return Digest(subject, email, sms, listed, len(items), sum(counts.values()))


def image_counts(items: list[Item]) -> Counter[str]:
    """The images each section is about (not its lines: an image that breaks two rules is
    one), with those its summary lines stand for."""
    counts: Counter[str] = Counter()
    for section in SECTIONS:
        lines = [i for i in items if i.section == section]
        counts[section] = len({i.subject for i in lines if not i.summary}) + sum(
            i.images for i in lines if i.summary
        )
    return +counts


def _short(section: str) -> str:
    return {NEED_A_PERSON: "need a person", HELD_BACK: "held back", EXPIRING: "expiring"}[section]


def _line(item: Item) -> str:
    if item.label == NOT_LISTED:
        return f"- {item.subject} ({NOT_LISTED}: {item.reason})"
    if item.summary:  # an expiring exemption's images beyond those listed
        return (
            f"- {item.subject} rule {item.rule}: {item.label}: and {item.images:,} more images "
            f"it covers: {item.reason}"
        )
    name = f' "{item.name}"' if item.name else ""
    return f"- {item.subject}{name} rule {item.rule}: {item.label}: {item.reason}"


def _text(value: Any) -> str:
    """One line of text at most FIELD_CHARS long: a name or reason never breaks a line."""
    text = " ".join(str(value).split())
    return text if len(text) <= FIELD_CHARS else text[: FIELD_CHARS - 3] + "..."


def _json_bytes(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))


def _fit_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


def _sms(text: str) -> str:
    """SMS text: no brackets SMN refuses, at most SMS_CHARS characters."""
    for bracket in "[]【】":
        text = text.replace(bracket, "")
    text = " ".join(text.split())
    return text if len(text) <= SMS_CHARS else text[: SMS_CHARS - 3] + "..."
