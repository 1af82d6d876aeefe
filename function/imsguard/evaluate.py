"""Pure policy evaluation: (policy, image, project, today) -> Decision.

No I/O and no clock reads (today's date is an argument): the same inputs always
give the same verdicts and the same minimal JSON Patch, so the function, the
CLI's ``test`` and ``explain``, and the tests all share this code.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from imsguard.attributes import attribute_text, canonical, same_value
from imsguard.events import is_image_name
from imsguard.patterns import search
from imsguard.policy import Bound, Exemption, Match, Mode, NameRule, Policy, SetRule
from imsguard.uefi import is_uefi_capable

MAX_NAME = 128
SYSTEM_DISK_TYPES = {"fusioncompute", "ironic"}
BOOT_AND_NIC_ATTRIBUTES = ("hw_firmware_type", "hw_vif_multiqueue_enabled")
MAX_ROUNDS = 3  # a rename can make a rule that matches on the name apply: evaluate again

NO_CHANGES: Mapping[str, str] = MappingProxyType({})
VerdictStatus = Literal["compliant", "violation", "not_applicable", "exempt", "error"]
Scope = Literal["in_scope", "not_applicable", "deferred", "exempt"]


class Verdict(NamedTuple):
    """One rule's finding. ``changes`` is what would fix it (empty: cannot be fixed);
    ``blocked`` is true when part of the fix was refused for safety."""

    rule: str
    status: VerdictStatus
    reason: str
    changes: Mapping[str, str] = NO_CHANGES
    blocked: bool = False
    mode: Mode = "enforce"

    @property
    def fixable(self) -> bool:
        return self.status == "violation" and bool(self.changes)


class Decision(NamedTuple):
    """Everything evaluation found out about one image, and the patch that fixes it.

    ``operations`` is the whole plan; ``enforced`` the part rules in enforce mode
    may send (the rest is audit only). ``notes`` are remarks such as expired exemptions.
    """

    image_id: str
    scope: Scope
    reason: str
    verdicts: tuple[Verdict, ...] = ()
    operations: tuple[dict[str, str], ...] = ()
    enforced: tuple[dict[str, str], ...] = ()
    notes: tuple[str, ...] = ()


class Plan(NamedTuple):
    """What to do about a decision: the outcome if all goes well, and the patch to send."""

    outcome: str
    reason: str
    send: tuple[dict[str, str], ...] = ()


def evaluate(
    policy: Policy,
    image: dict[str, Any],
    project_id: str | None,
    today: date | None = None,
    uefi_versions: Collection[str] | None = None,
) -> Decision:
    """Check one image (IMS JSON, keys as the API spells them) against the policy.

    ``today`` decides which exemptions have expired (None: none has). ``uefi_versions``
    is IMS's list of UEFI-capable OS versions, when it was read; else a built-in copy.
    """
    image_id = str(image.get("id", ""))
    scope, reason = scope_of(image, project_id)
    if scope != "in_scope":
        return Decision(image_id, scope, reason)
    exemptions, notes = exemptions_for(policy, image, today)
    whole = next((e for e in exemptions if e.rules is None), None)
    if whole is not None:
        return Decision(image_id, "exempt", _exempt_reason(whole), notes=notes)
    exempt_rules = {name: e for e in exemptions for name in e.rules or ()}
    verdicts, changes = _settle(policy, image, exempt_rules, uefi_versions, with_audit=True)
    operations = plan_patch(image, changes)
    enforced = operations
    if any(policy.mode_of(rule) == "audit" for rule in policy.rules):
        # What enforce-mode rules want of the image as it will really be: without the
        # audit rules' fixes (an audit rename must not bring another rule into play).
        _, enforced_changes = _settle(policy, image, exempt_rules, uefi_versions, with_audit=False)
        enforced = plan_patch(image, enforced_changes)
    return Decision(image_id, "in_scope", "", verdicts, operations, enforced, notes)


def _settle(
    policy: Policy,
    image: dict[str, Any],
    exempt_rules: dict[str, Exemption],
    uefi_versions: Collection[str] | None,
    with_audit: bool,
) -> tuple[tuple[Verdict, ...], dict[str, str]]:
    """Apply the fixes to a copy of the image until no rule wants more (a rename may
    bring a rule that matches on the name into play); audit rules' fixes only
    ``with_audit``. Verdicts describe the image as it is; a rule that only applies once
    other fixes are made says so."""
    virtual = dict(image)
    verdicts: dict[str, Verdict] = {}
    changes: dict[str, str] = {}
    for round_number in range(MAX_ROUNDS):
        snapshot = dict(virtual)  # every rule of a round sees the same image
        changed = False
        for rule in policy.rules:
            if rule.name in exempt_rules:
                verdicts[rule.name] = Verdict(
                    rule.name, "exempt", _exempt_reason(exempt_rules[rule.name])
                )
                continue
            verdict = _check_rule(rule, snapshot, policy.mode_of(rule), uefi_versions)
            earlier = verdicts.get(rule.name)
            if earlier is None:
                verdicts[rule.name] = verdict
            elif verdict.status == "violation" and earlier.status != "violation":
                verdicts[rule.name] = Verdict(
                    rule.name,
                    "violation",
                    f"{verdict.reason} (once the other fixes are made)",
                    verdict.changes,
                    verdict.blocked,
                    verdict.mode,
                )
            if not verdict.fixable or (verdict.mode == "audit" and not with_audit):
                continue
            for key, value in verdict.changes.items():
                if not same_value(key, virtual.get(key), value):
                    virtual[key] = value
                    changes[key] = value
                    changed = True
        if not changed:
            break
        if round_number == MAX_ROUNDS - 1:  # cannot happen with one fixing name rule
            raise ValueError("the policy's fixes do not settle")
    return tuple(verdicts[rule.name] for rule in policy.rules), changes


def plan_patch(image: dict[str, Any], changes: dict[str, str]) -> tuple[dict[str, str], ...]:
    """The minimal JSON Patch: only differing paths; ``add`` when absent, else ``replace``.

    An attribute present with a null value also gets ``add``: by RFC 6902 it
    creates or overwrites, whereas IMS's ``replace`` needs an existing value.
    """
    operations = []
    for key, value in changes.items():
        current = image.get(key)
        if same_value(key, current, value):
            continue
        op = "add" if current is None else "replace"
        operations.append({"op": op, "path": f"/{key}", "value": value})
    return tuple(operations)


def plan(decision: Decision, dry_run: bool) -> Plan:
    """The outcome a decision leads to, and what to send (nothing in a dry run)."""
    if decision.scope != "in_scope":
        return Plan(decision.scope, decision.reason)
    if not decision.operations:
        unfixed = [v.rule for v in decision.verdicts if v.status in ("violation", "error")]
        if unfixed:
            return Plan("non_compliant", "violations imsguard cannot fix: " + ", ".join(unfixed))
        return Plan("compliant", "every applicable rule holds")
    send = () if dry_run else decision.enforced
    if not send:
        why = "dry run" if dry_run else "the rules that want changes are in audit mode"
        return Plan("would_update", f"{why}: nothing was sent")
    held = len(decision.operations) - len(send)
    audit = f" ({held} more held back by audit mode)" if held else ""
    return Plan("updated", f"{len(send)} attribute(s) changed{audit}", send)


def before(image: dict[str, Any], operations: Any) -> dict[str, Any]:
    """What each attribute a patch changes held before it (None: absent), so that the change
    can be undone (``imsguard revert``)."""
    return {op["path"][1:]: image.get(op["path"][1:]) for op in operations}


def fix_label(verdict: Verdict, sent: Collection[str], failed: bool = False) -> str | None:
    """How a violation was dealt with: fixed, would_fix, not_fixed (the update failed) or
    cannot_fix; partly_... when a safety check held part of the fix back. ``sent``: the
    attribute names the PATCH carried."""
    if verdict.status != "violation":
        return None
    if not verdict.fixable:
        return "cannot_fix"
    prefix = "partly_" if verdict.blocked else ""
    if failed:
        return prefix + "not_fixed"
    return prefix + ("fixed" if set(verdict.changes) <= set(sent) else "would_fix")


def scope_of(image: dict[str, Any], project_id: str | None) -> tuple[Scope, str]:
    """imsguard only ever touches active, private images owned by its own project."""
    imagetype = image.get("__imagetype")
    if imagetype != "private":
        kind = imagetype or "untyped"
        return "not_applicable", f"a {kind} image; only private images are managed"
    if not project_id or image.get("owner") != project_id:
        return "not_applicable", "owned by another project"
    if image.get("virtual_env_type") == "DataImage":
        return "not_applicable", "a data disk image; IMS does not allow updating those"
    if canonical("protected", image.get("protected")) == "true":
        return "not_applicable", "a protected image; IMS refuses changes to it"
    status = image.get("status")
    if status in ("killed", "deleted"):
        return "not_applicable", f"the image is {status}"
    if status != "active":
        return (
            "deferred",
            f"the image is {status or 'in an unknown state'}; only active images "
            "can be changed (a later event or sweep will check it)",
        )
    return "in_scope", ""


def exemptions_for(
    policy: Policy, image: dict[str, Any], today: date | None
) -> tuple[list[Exemption], tuple[str, ...]]:
    """The exemptions that hold for this image today, and notes on those that expired."""
    holding, notes = [], []
    for exemption in policy.exemptions:
        if not _exemption_names(exemption, image):
            continue
        if today is not None and exemption.expires is not None and today > exemption.expires:
            notes.append(
                f"exemption ({exemption.reason}) expired on {exemption.expires}; "
                "the rules apply again"
            )
        else:
            holding.append(exemption)
    return holding, tuple(notes)


def _exemption_names(exemption: Exemption, image: dict[str, Any]) -> bool:
    if exemption.images is not None:
        return str(image.get("id", "")).lower() in {i.lower() for i in exemption.images}
    return has_tag(image.get("tags"), exemption.tag or "")


def _exempt_reason(exemption: Exemption) -> str:
    until = f" (until {exemption.expires})" if exemption.expires else ""
    return f"exempt: {exemption.reason}{until}"


def tag_pairs(tags: Any) -> list[tuple[str, str | None]]:
    """An image's tags as (key, value): "key=value", or "key.value" as images tagged the old
    way hold them (only when there is no "="), or a bare "key"."""
    pairs: list[tuple[str, str | None]] = []
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, str):
            separator = "=" if "=" in tag else "." if "." in tag else None
            key, _, value = tag.partition(separator) if separator else (tag, "", None)
            pairs.append((key, value))
    return pairs


def has_tag(tags: Any, wanted: str) -> bool:
    """``wanted`` is ``key`` (any value) or ``key=value``."""
    key, sep, value = wanted.partition("=")
    return any(k == key and (not sep or v == value) for k, v in tag_pairs(tags))


def architecture_of(image: dict[str, Any]) -> str:
    """``arm`` when IMS marks the image ``__support_arm`` (the SDK's only architecture field)."""
    return "arm" if canonical("__support_arm", image.get("__support_arm")) == "true" else "x86"


_LISTED = (
    ("platform", "__platform"),
    ("os_type", "__os_type"),
    ("os_bit", "__os_bit"),
    ("imagetype", "__imagetype"),
    ("virtual_env_type", "virtual_env_type"),
)


def matches(match: Match, image: dict[str, Any]) -> str | None:
    """None when every condition holds, else the first condition that does not."""
    for label, key in _LISTED:
        allowed = getattr(match, label)
        if allowed is not None:
            value = attribute_text(image.get(key)) or ""
            if not any(_listed(value) == _listed(a) for a in allowed):
                return f"{label} is {value or 'not set'!r}, not one of {allowed}"
    if match.architecture is not None and architecture_of(image) not in match.architecture:
        return f"architecture is {architecture_of(image)!r}, not one of {match.architecture}"
    for label, pattern, key in (
        ("os_version", match.os_version, "__os_version"),
        ("name", match.name, "name"),
    ):
        text = attribute_text(image.get(key)) or ""
        if pattern is not None and not search(pattern, text):
            return f"{label} {text!r} does not match {pattern!r}"
    for tag in match.tags or ():
        if not has_tag(image.get("tags"), tag):
            return f"the image has no tag {tag!r}"
    for sub in match.all or ():
        failed = matches(sub, image)
        if failed:
            return failed
    if match.any is not None:
        failures = [matches(sub, image) for sub in match.any]
        if all(failures):
            return "none of 'any' holds: " + "; ".join(f for f in failures if f)
    if match.not_ is not None and matches(match.not_, image) is None:
        return "a 'not' condition holds"
    return None


def _listed(value: str) -> str:
    """How listed values compare: "Red Hat", "RedHat" and "redhat" are one platform."""
    return value.lower().replace(" ", "")


def _check_rule(
    rule: NameRule | SetRule,
    image: dict[str, Any],
    mode: Mode,
    uefi_versions: Collection[str] | None,
) -> Verdict:
    mismatch = matches(rule.match, image)
    if mismatch:
        return Verdict(rule.name, "not_applicable", mismatch, mode=mode)
    if rule.exclude is not None and matches(rule.exclude, image) is None:
        return Verdict(rule.name, "not_applicable", "excluded by the rule's exclude", mode=mode)
    if isinstance(rule, NameRule):
        return _check_name(rule, image, mode)
    return _check_set(rule, image, mode, uefi_versions)


class TemplateError(ValueError):
    """A template names an attribute this image does not have."""


def _check_name(rule: NameRule, image: dict[str, Any], mode: Mode) -> Verdict:
    name = attribute_text(image.get("name")) or ""
    if search(rule.pattern, name):
        return Verdict(rule.name, "compliant", f"name {name!r} matches {rule.pattern!r}", mode=mode)
    problem = f"name {name!r} does not match {rule.pattern!r}"
    if rule.fix == "report":
        return Verdict(rule.name, "violation", f"{problem}; the rule only reports", mode=mode)
    try:
        fixed, why_not = name_fix(rule, image)
    except TemplateError as exc:
        return Verdict(
            rule.name, "error", f"{problem}, and the template cannot be filled: {exc}", mode=mode
        )
    if fixed is None:
        return Verdict(
            rule.name,
            "violation",
            f"{problem}, and {rule.fix} makes no valid name "
            f"that matches it ({why_not}); not renamed",
            mode=mode,
        )
    return Verdict(
        rule.name, "violation", f"{problem}; rename to {fixed!r}", {"name": fixed}, mode=mode
    )


def fixed_name(rule: NameRule, image: dict[str, Any]) -> str | None:
    """The name the rule's fix gives: a valid IMS name that matches the pattern, or None."""
    return name_fix(rule, image)[0]


def name_fix(rule: NameRule, image: dict[str, Any]) -> tuple[str | None, str]:
    """The fixed name, or None and why each candidate could not be used."""
    name = attribute_text(image.get("name")) or ""
    source = render_template(rule.template or "", image) if rule.fix == "template" else name
    candidates = [_ims_safe(source)] if rule.fix == "template" else []
    if re.search(CJK, source):  # kept where the pattern allows them (IMS names may hold them)
        candidates.append(normalize_name(source, keep_cjk=True))
    candidates.append(normalize_name(source))
    reasons = []
    for candidate in dict.fromkeys(candidates):
        problem = name_problem(candidate)
        if problem is None and search(rule.pattern, candidate):
            return candidate, ""
        reasons.append(f"{candidate!r} {problem or f'does not match {rule.pattern!r}'}")
    return None, "; ".join(reasons)


# Compiled on first use (re caches them): a Unicode class costs a millisecond to compile.
CJK = "[\u4e00-\u9fff]"  # the Chinese characters IMS allows in names
NOT_ASCII = "[^\x00-\x7f]+"


def name_problem(name: str) -> str | None:
    """Why IMS would refuse this name, or None."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if not is_image_name(name):
        return "is not a valid IMS name (letters, digits, Chinese, - . _ and inner spaces)"
    return None


def transliterate(text: str, keep_cjk: bool = False) -> str:
    """ASCII for what is not: "Ünïcödé" becomes "Unicode"; each Chinese character becomes
    its own syllable ("服务器" -> "fu wu qi"), so words stay readable once normalized."""
    if text.isascii():
        return text
    from anyascii import anyascii  # a 20 ms import: only when a name needs it

    def ascii_of(match: re.Match[str]) -> str:
        run = match.group()
        if keep_cjk:
            return "".join(c if re.match(CJK, c) else anyascii(c) for c in run)
        return "".join(f" {anyascii(c)} " if re.match(CJK, c) else anyascii(c) for c in run)

    return re.sub(NOT_ASCII, ascii_of, text)


def normalize_name(name: str, keep_cjk: bool = False) -> str:
    """Transliterated to ASCII (Chinese kept with ``keep_cjk``), lower-case; every run of
    other characters becomes one '-'; trimmed."""
    text = transliterate(name, keep_cjk).lower()
    other = "[^a-z0-9\u4e00-\u9fff]+" if keep_cjk else "[^a-z0-9]+"
    text = re.sub(other, "-", text).strip("-")
    return text[:MAX_NAME].rstrip("-")


def _ims_safe(text: str) -> str:
    """Characters IMS refuses in names become '-'; trimmed to 128 without edge spaces."""
    text = re.sub(r"[^A-Za-z0-9\u4e00-\u9fff._\- ]+", "-", text)
    text = re.sub(r"-{2,}", "-", text).strip(" -")
    return text[:MAX_NAME].rstrip(" -")


def tag_value(tags: Any, key: str) -> str | None:
    """The value of tag ``key``, if the image has it with a value."""
    return next((v for k, v in tag_pairs(tags) if k == key and v), None)


def os_version_number(os_version: str) -> str | None:
    """The version in an ``__os_version``: "Ubuntu 22.04 server 64bit" -> "22.04",
    "EulerOS 2.9 64bit" -> "2.9" (never the 64 of "64bit")."""
    match = re.search(r"(?<![\w.])(\d+(?:\.\d+)*)(?![\w.]*\s*bit)", os_version[:200])
    return match.group(1) if match else None


def render_template(template: str, image: dict[str, Any]) -> str:
    """Fill ``{platform}``, ``{os_version}``, ``{os_version_number}``, ``{tag:KEY}``,
    ``{created:%Y%m%d}``, ``{id8}``... from the image."""

    def value(key: str) -> str:
        text = attribute_text(image.get(key))
        if not text:
            raise TemplateError(f"the image has no {key}")
        return text

    def created(spec: str) -> str:
        raw = value("created_at")
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise TemplateError(f"created_at {raw!r} is not a timestamp") from None
        return moment.strftime(spec or "%Y%m%d")

    def tag(key: str) -> str:
        found = tag_value(image.get("tags"), key)
        if not found:
            raise TemplateError(f"the image has no tag {key!r} (with a value)")
        return found

    def version_number() -> str:
        number = os_version_number(value("__os_version"))
        if number is None:
            raise TemplateError(f"__os_version {value('__os_version')!r} holds no version number")
        return number

    fields = {
        "platform": "__platform",
        "os_type": "__os_type",
        "os_version": "__os_version",
        "os_bit": "__os_bit",
        "name": "name",
    }
    out = []
    for literal, field_name, spec, _ in string.Formatter().parse(template):
        out.append(literal)
        if field_name is None:
            continue
        if field_name == "created":
            out.append(created(spec or ""))
        elif field_name == "id8":
            out.append(value("id")[:8])
        elif field_name == "tag":
            out.append(tag(spec or ""))
        elif field_name == "os_version_number":
            out.append(version_number())
        else:
            out.append(value(fields[field_name]))
    return "".join(out)


def _check_set(
    rule: SetRule, image: dict[str, Any], mode: Mode, uefi_versions: Collection[str] | None
) -> Verdict:
    wrong = {}
    for key, wanted in rule.set.items():
        fix = fix_value(key, image.get(key), wanted)
        if fix is not None:
            wrong[key] = fix
    if not wrong:
        return Verdict(rule.name, "compliant", _describe(rule.set, image, "already"), mode=mode)
    refused = refusals(wrong, image, uefi_versions)
    allowed = {k: v for k, v in wrong.items() if k not in refused}
    reason = "; ".join(
        [_describe({k: rule.set[k] for k in wrong}, image, "should be"), *refused.values()]
    )
    return Verdict(rule.name, "violation", reason, allowed, blocked=bool(refused), mode=mode)


def fix_value(key: str, current: Any, wanted: str | Bound) -> str | None:
    """The value a set rule's fix gives the attribute, or None when it already holds: a
    bound is held by any whole number within it, and its fix is the bound that is broken.
    A max_ram of 0 is "no maximum": above any at_most, never below an at_least."""
    if not isinstance(wanted, Bound):
        return None if same_value(key, current, wanted) else wanted
    digits = canonical(key, current)
    if digits is None or not (digits.isascii() and digits.isdigit()):
        return str(wanted.at_least) if wanted.at_least is not None else None  # set a minimum
    unlimited = key == "max_ram" and digits == "0"
    number = HUGE if unlimited or len(digits) >= 19 else int(digits)  # never int() on 5,000
    if wanted.at_least is not None and number < wanted.at_least:
        return str(wanted.at_least)
    if wanted.at_most is not None and number > wanted.at_most:
        return str(wanted.at_most)
    return None


HUGE = 10**19  # above any bound (bounds have at most 9 digits)


def refusals(
    wanted: dict[str, str], image: dict[str, Any], uefi_versions: Collection[str] | None = None
) -> dict[str, str]:
    """Changes imsguard refuses whatever the policy says, because they could brick an image."""
    refused = {}
    env_type = attribute_text(image.get("virtual_env_type")) or ""
    if env_type.lower() not in SYSTEM_DISK_TYPES:
        for key in BOOT_AND_NIC_ATTRIBUTES:
            if key in wanted:
                refused[key] = (
                    f"{key} left unchanged: boot and NIC settings apply to "
                    f"system-disk images only, not {env_type or 'untyped'} images"
                )
    os_version = image.get("__os_version")
    firmware = wanted.get("hw_firmware_type")
    if firmware == "uefi" and not is_uefi_capable(os_version, uefi_versions):
        refused.setdefault(
            "hw_firmware_type",
            f"OS not UEFI-capable: {os_version!r} is not in IMS's list of UEFI "
            "boot OS versions; hw_firmware_type left unchanged",
        )
    if firmware == "bios" and architecture_of(image) == "arm":
        refused.setdefault(
            "hw_firmware_type", "ARM images boot in UEFI mode only; hw_firmware_type left unchanged"
        )
    return refused


def _describe(wanted: Mapping[str, str | Bound], image: dict[str, Any], verb: str) -> str:
    parts = []
    for key, value in wanted.items():
        current = attribute_text(image.get(key))
        shown = "not set" if current is None else repr(current)
        if verb == "already":
            parts.append(f"{key} is {value!r}")
        else:
            parts.append(f"{key} is {shown}, {verb} {value!r}")
    return "; ".join(parts)
