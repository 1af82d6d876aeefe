"""Pure policy evaluation: (policy, image, project, today) -> Decision.

No I/O and no clock reads (today's date is an argument): the same inputs always
give the same verdicts and the same minimal JSON Patch, so the function, the
CLI's ``test`` and ``explain``, and the tests all share this code.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from imsguard.attributes import canonical, same_value
from imsguard.match import has_tag, matches
from imsguard.policy import Exemption, Policy
from imsguard.rules.base import Mode, RuleKind, Verdict

if TYPE_CHECKING:
    from imsguard.results import Outcome

MAX_ROUNDS = 3  # a rename can make a rule that matches on the name apply: evaluate again

Scope = Literal["in_scope", "not_applicable", "deferred", "exempt"]


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

    outcome: Outcome
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
        if not exemption_covers(exemption, image):
            continue
        if today is not None and exemption.expires is not None and today > exemption.expires:
            notes.append(
                f"exemption ({exemption.reason}) expired on {exemption.expires}; "
                "the rules apply again"
            )
        else:
            holding.append(exemption)
    return holding, tuple(notes)


def exemption_covers(exemption: Exemption, image: dict[str, Any]) -> bool:
    """Whether the exemption names the image (by id, or by a tag it has), expired or not."""
    if exemption.images is not None:
        return str(image.get("id", "")).lower() in {i.lower() for i in exemption.images}
    return has_tag(image.get("tags"), exemption.tag or "")


def expiring_soon(policy: Policy, today: date, days: int) -> list[int]:
    """The indices of the exemptions whose ``expires`` falls from today to ``days`` days on
    (an expired one no longer applies: its images are reported by the rules themselves)."""
    last = today + timedelta(days=days)
    return [
        index
        for index, exemption in enumerate(policy.exemptions)
        if exemption.expires is not None and today <= exemption.expires <= last
    ]


def _exempt_reason(exemption: Exemption) -> str:
    until = f" (until {exemption.expires})" if exemption.expires else ""
    return f"exempt: {exemption.reason}{until}"


def _check_rule(
    rule: RuleKind,
    image: dict[str, Any],
    mode: Mode,
    uefi_versions: Collection[str] | None,
) -> Verdict:
    mismatch = matches(rule.match, image)
    if mismatch:
        return Verdict(rule.name, "not_applicable", mismatch, mode=mode)
    if rule.exclude is not None and matches(rule.exclude, image) is None:
        return Verdict(rule.name, "not_applicable", "excluded by the rule's exclude", mode=mode)
    return rule.check(image, mode, uefi_versions)
