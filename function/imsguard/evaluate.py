"""Pure policy evaluation: (policy, image, project) -> Decision.

No I/O and no clock: the same inputs always give the same verdicts and the
same minimal JSON Patch, so this is what tests, ``imsguard invoke`` and the
function all share.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from imsguard.policy import Match, NameRule, Policy, SetRule
from imsguard.uefi import is_uefi_capable

MAX_NAME = 128
VALID_IMS_NAME = re.compile(r"[A-Za-z0-9\u4e00-\u9fff._\- ]{1,128}")  # used with fullmatch
SYSTEM_DISK_TYPES = {"fusioncompute", "ironic"}
BOOT_AND_NIC_ATTRIBUTES = ("hw_firmware_type", "hw_vif_multiqueue_enabled")

VerdictStatus = Literal["compliant", "violation", "not_applicable"]
Scope = Literal["in_scope", "not_applicable", "deferred"]


@dataclass(frozen=True)
class Verdict:
    """One rule's finding. ``changes`` is what would fix it (empty: cannot be fixed);
    ``blocked`` is true when part of the fix was refused for safety."""

    rule: str
    status: VerdictStatus
    reason: str
    changes: dict[str, str] = field(default_factory=dict)
    blocked: bool = False

    @property
    def fixable(self) -> bool:
        return self.status == "violation" and bool(self.changes)


@dataclass(frozen=True)
class Decision:
    """Everything evaluation found out about one image, and the patch that fixes it."""

    image_id: str
    scope: Scope
    reason: str
    verdicts: tuple[Verdict, ...] = ()
    operations: tuple[dict[str, str], ...] = ()


def evaluate(policy: Policy, image: dict[str, Any], project_id: str | None) -> Decision:
    """Check one image (IMS JSON, keys as the API spells them) against the policy."""
    image_id = str(image.get("id", ""))
    scope, reason = scope_of(image, project_id)
    if scope != "in_scope":
        return Decision(image_id, scope, reason)
    verdicts = tuple(_check_rule(rule, image) for rule in policy.rules)
    changes: dict[str, str] = {}
    for verdict in verdicts:
        if verdict.fixable:
            changes.update(verdict.changes)
    return Decision(image_id, "in_scope", "", verdicts, plan_patch(image, changes))


def plan_patch(image: dict[str, Any], changes: dict[str, str]) -> tuple[dict[str, str], ...]:
    """The minimal JSON Patch: only differing paths; ``add`` when absent, else ``replace``.

    An attribute present with a null value also gets ``add``: by RFC 6902 it
    creates or overwrites, whereas IMS's ``replace`` needs an existing value.
    """
    operations = []
    for key, value in changes.items():
        current = image.get(key)
        if attribute_text(current) == value:
            continue
        op = "add" if current is None else "replace"
        operations.append({"op": op, "path": f"/{key}", "value": value})
    return tuple(operations)


def attribute_text(value: Any) -> str | None:
    """IMS values as the strings the policy compares with (``min_ram`` comes as a number)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
    if attribute_text(image.get("protected")) in ("true", "True"):
        return "not_applicable", "a protected image; IMS refuses changes to it"
    status = image.get("status")
    if status in ("killed", "deleted"):
        return "not_applicable", f"the image is {status}"
    if status != "active":
        return "deferred", f"the image is {status or 'in an unknown state'}; only active images " \
                           "can be changed (a later event or sweep will check it)"
    return "in_scope", ""


def matches(match: Match, image: dict[str, Any]) -> str | None:
    """None when every condition holds, else the first condition that does not."""
    pairs = (
        ("platform", match.platform, "__platform"),
        ("os_type", match.os_type, "__os_type"),
        ("imagetype", match.imagetype, "__imagetype"),
        ("virtual_env_type", match.virtual_env_type, "virtual_env_type"),
    )
    for label, allowed, key in pairs:
        if allowed is not None:
            value = attribute_text(image.get(key)) or ""
            if value.lower() not in {a.lower() for a in allowed}:
                return f"{label} is {value or 'not set'!r}, not one of {allowed}"
    if match.os_version is not None:
        os_version = attribute_text(image.get("__os_version")) or ""
        if not re.search(match.os_version, os_version):
            return f"os_version {os_version!r} does not match {match.os_version!r}"
    return None


def _check_rule(rule: NameRule | SetRule, image: dict[str, Any]) -> Verdict:
    mismatch = matches(rule.match, image)
    if mismatch:
        return Verdict(rule.name, "not_applicable", mismatch)
    if isinstance(rule, NameRule):
        return _check_name(rule, image)
    return _check_set(rule, image)


def _check_name(rule: NameRule, image: dict[str, Any]) -> Verdict:
    name = attribute_text(image.get("name")) or ""
    if re.search(rule.pattern, name):
        return Verdict(rule.name, "compliant", f"name {name!r} matches {rule.pattern!r}")
    problem = f"name {name!r} does not match {rule.pattern!r}"
    if rule.fix == "report":
        return Verdict(rule.name, "violation", f"{problem}; the rule only reports")
    fixed = normalize_name(name)
    if not fixed or not VALID_IMS_NAME.fullmatch(fixed) or not re.search(rule.pattern, fixed):
        return Verdict(rule.name, "violation",
                       f"{problem}, and normalizing gives no valid name ({fixed!r}); not renamed")
    return Verdict(rule.name, "violation", f"{problem}; rename to {fixed!r}", {"name": fixed})


def normalize_name(name: str) -> str:
    """Lower-case; every run of characters outside [a-z0-9] becomes one '-'; trimmed."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return text[:MAX_NAME].rstrip("-")


def _check_set(rule: SetRule, image: dict[str, Any]) -> Verdict:
    wrong = {k: v for k, v in rule.set.items() if attribute_text(image.get(k)) != v}
    if not wrong:
        return Verdict(rule.name, "compliant", _describe(rule.set, image, "already"))
    refused = refusals(wrong, image)
    allowed = {k: v for k, v in wrong.items() if k not in refused}
    reason = "; ".join([_describe(wrong, image, "should be"), *refused.values()])
    return Verdict(rule.name, "violation", reason, allowed, blocked=bool(refused))


def refusals(wanted: dict[str, str], image: dict[str, Any]) -> dict[str, str]:
    """Changes imsguard refuses whatever the policy says, because they could brick an image."""
    refused = {}
    env_type = attribute_text(image.get("virtual_env_type")) or ""
    if env_type.lower() not in SYSTEM_DISK_TYPES:
        for key in BOOT_AND_NIC_ATTRIBUTES:
            if key in wanted:
                refused[key] = (f"{key} left unchanged: boot and NIC settings apply to "
                                f"system-disk images only, not {env_type or 'untyped'} images")
    os_version = image.get("__os_version")
    if wanted.get("hw_firmware_type") == "uefi" and not is_uefi_capable(os_version):
        refused.setdefault("hw_firmware_type",
                           f"OS not UEFI-capable: {os_version!r} is not in IMS's list of UEFI "
                           "boot OS versions; hw_firmware_type left unchanged")
    return refused


def _describe(wanted: dict[str, str], image: dict[str, Any], verb: str) -> str:
    parts = []
    for key, value in wanted.items():
        current = attribute_text(image.get(key))
        if verb == "already":
            parts.append(f"{key} is {value!r}")
        else:
            parts.append(f"{key} is {current!r}, {verb} {value!r}")
    return "; ".join(parts)
