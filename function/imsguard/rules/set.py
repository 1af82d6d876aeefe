"""Rule kind ``set``: image attributes must hold given values, or stay within bounds.

What may be set, and to what, is the attribute table's (imsguard.attributes); what is never
done, whatever the policy says, is ``refusals``: changes that could leave an image unbootable.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import Field, ValidationInfo, field_validator

from imsguard.attributes import (
    BOOT_CRITICAL,
    BOUNDED,
    SETTABLE,
    SYSTEM_DISK_ONLY,
    SYSTEM_DISK_TYPES,
    TABLE,
    WHOLE_NUMBER_TEXT,
    attribute_text,
    canonical,
    same_value,
    set_schema,
    value_problem,
)
from imsguard.match import architecture_of
from imsguard.rules.base import Clash, Mode, RuleKind, Verdict
from imsguard.spelling import did_you_mean
from imsguard.uefi import is_uefi_capable

# The schema lists each attribute with its values (read from the table when it is shown).
Attributes = Annotated[dict[str, Any], Field(min_length=1, json_schema_extra=set_schema)]


class Bound(NamedTuple):
    """Bounds on a whole-number attribute (``{at_least: "2048"}``): compliant while they hold;
    the fix sets the bound that is broken, so an image above a minimum is never lowered."""

    at_least: int | None = None
    at_most: int | None = None

    def __repr__(self) -> str:
        return " and ".join(
            f"{word.replace('_', ' ')} {value}"
            for word, value in (("at_least", self.at_least), ("at_most", self.at_most))
            if value is not None
        )


class SetRule(RuleKind):
    """Image attributes that must hold the given (string) values, or stay within bounds."""

    kind: Literal["set"]
    set: Attributes

    @field_validator("set", mode="before")
    @classmethod
    def _check_attributes(cls, values: Any, info: ValidationInfo) -> Any:
        """Only attributes IMS documents as patchable, or declared in the policy's
        custom_attributes (given as validation context), with values IMS takes."""
        if not isinstance(values, dict):
            return values
        declared = (info.context or {}).get("custom_attributes", ())
        checked, problems = {}, []
        for raw_key, value in values.items():
            if not isinstance(raw_key, str):
                problems.append(f"{raw_key!r}: attribute names are text")
                continue
            key = raw_key.removeprefix("/")
            try:
                checked[key] = check_attribute_value(key, value)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if key not in SETTABLE and key not in declared:
                problems.append(
                    f"{key!r} is not an attribute IMS lets a PATCH change"
                    f"{did_you_mean(key, SETTABLE | set(declared))}; an extension "
                    "attribute of your own must be listed in custom_attributes first"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return checked

    def check(
        self, image: dict[str, Any], mode: Mode, uefi_versions: Collection[str] | None
    ) -> Verdict:
        wrong = {}
        for key, wanted in self.set.items():
            fix = fix_value(key, image.get(key), wanted)
            if fix is not None:
                wrong[key] = fix
        if not wrong:
            return Verdict(self.name, "compliant", _describe(self.set, image, "already"), mode=mode)
        refused = refusals(wrong, image, uefi_versions)
        allowed = {k: v for k, v in wrong.items() if k not in refused}
        reason = "; ".join(
            [_describe({k: self.set[k] for k in wrong}, image, "should be"), *refused.values()]
        )
        return Verdict(self.name, "violation", reason, allowed, blocked=bool(refused), mode=mode)

    @classmethod
    def conflicts(cls, rules: Sequence[tuple[int, RuleKind]]) -> list[Clash]:
        """Rules that set one attribute to different values; a max_ram below the min_ram."""
        clashes = []
        owners: dict[str, tuple[str, str | Bound, int]] = {}
        for index, rule in rules:
            if not isinstance(rule, cls):
                continue
            for key, value in rule.set.items():
                other = owners.setdefault(key, (rule.name, value, index))
                if other[1] != value:
                    clashes.append(
                        Clash(
                            ("rules", index, "set", key),
                            f"rules {other[0]!r} and {rule.name!r} "
                            f"set {key} to different values ({other[1]!r}, {value!r})",
                        )
                    )
        if "min_ram" in owners and "max_ram" in owners:
            least, most = owners["min_ram"][1], owners["max_ram"][1]
            lowest, highest = _least(least), _most(most)
            # max_ram 0 is "no maximum": real images hold min_ram 1024 beside max_ram "0"
            if lowest is not None and highest and highest < lowest:
                clashes.append(
                    Clash(
                        ("rules", owners["max_ram"][2], "set", "max_ram"),
                        f"max_ram {most} is below min_ram {least}",
                    )
                )
        return clashes


def _least(wanted: str | Bound) -> int | None:
    """The smallest value a rule lets an attribute hold."""
    return wanted.at_least if isinstance(wanted, Bound) else int(wanted)


def _most(wanted: str | Bound) -> int | None:
    """The largest value a rule lets an attribute hold (None or 0: no maximum)."""
    return wanted.at_most if isinstance(wanted, Bound) else int(wanted)


def check_attribute_value(key: str, value: Any) -> str | Bound:
    """Refuse what IMS would refuse, at load time: unpatchable paths and bad values. (Whether
    an undocumented attribute is declared in custom_attributes is the policy's check.)"""
    if "/" in key or not key:
        raise ValueError(f"{key!r} is not an attribute name")
    row = TABLE.get(key)
    if row is not None and row.rule_kind:
        raise ValueError(f"set the {key} with a rule of kind {row.rule_kind!r}")
    if row is not None and not row.patchable:
        raise ValueError(f"{key} is managed by IMS and cannot be changed")
    if isinstance(value, dict):
        return _bound(key, value)
    if not isinstance(value, str):
        hint = f' (write "{str(value).lower()}" in quotes)' if isinstance(value, bool) else ""
        raise ValueError(f"{key}: IMS attribute values are strings{hint}")
    problem = value_problem(key, value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _bound(key: str, value: dict[Any, Any]) -> Bound:
    """``{at_least: "2048"}``, ``{at_most: "8192"}`` or both, for a whole-number attribute."""
    if key not in BOUNDED:
        raise ValueError(
            f"{key}: bounds (at_least, at_most) are for whole-number attributes "
            f"({sorted(BOUNDED)}); give a value"
        )
    unknown = sorted(str(k) for k in value if k not in ("at_least", "at_most"))
    if unknown or not value:
        raise ValueError(f"{key}: give at_least, at_most or both, not {unknown or 'nothing'}")
    bounds = {}
    for word, number in value.items():
        if not isinstance(number, str) or not re.fullmatch(WHOLE_NUMBER_TEXT, number):
            raise ValueError(
                f'{key}: {word} must be a whole number as a string, such as "2048", not {number!r}'
            )
        bounds[word] = int(number)
    bound = Bound(**bounds)
    if bound.at_least is not None and bound.at_most is not None and bound.at_least > bound.at_most:
        raise ValueError(f"{key}: at_least {bound.at_least} is above at_most {bound.at_most}")
    return bound


def fix_value(key: str, current: Any, wanted: str | Bound) -> str | None:
    """The value a set rule's fix gives the attribute, or None when it already holds: a
    bound is held by any whole number within it, and its fix is the bound that is broken.
    A max_ram of 0 is "no maximum": above any at_most, never below an at_least."""
    if not isinstance(wanted, Bound):
        return None if same_value(key, current, wanted) else wanted
    digits = canonical(key, current)
    if digits is None or not (digits.isascii() and digits.isdigit()):
        return str(wanted.at_least) if wanted.at_least is not None else None  # set a minimum
    unlimited = digits == "0" and TABLE[key].zero_is_unlimited
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
    """Changes imsguard refuses whatever the policy says, because they could brick an image:
    system-disk settings on other images; a boot-critical change its check does not clear."""
    refused = {}
    env_type = attribute_text(image.get("virtual_env_type")) or ""
    if env_type.lower() not in SYSTEM_DISK_TYPES:
        for key in SYSTEM_DISK_ONLY:
            if key in wanted:
                refused[key] = (
                    f"{key} left unchanged: boot and NIC settings apply to "
                    f"system-disk images only, not {env_type or 'untyped'} images"
                )
    for key in BOOT_CRITICAL:
        if key in wanted:
            safety = BOOT_CHECKS.get(key)
            why = (
                safety(wanted[key], image, uefi_versions)
                if safety is not None
                else f"{key} left unchanged: imsguard has no safety check for it"
            )
            if why is not None:
                refused.setdefault(key, why)
    return refused


def _firmware_refusal(
    firmware: str, image: dict[str, Any], uefi_versions: Collection[str] | None
) -> str | None:
    """UEFI only on an OS IMS lists as UEFI-capable; ARM images boot in UEFI mode only."""
    os_version = image.get("__os_version")
    if firmware == "uefi" and not is_uefi_capable(os_version, uefi_versions):
        return (
            f"OS not UEFI-capable: {os_version!r} is not in IMS's list of UEFI "
            "boot OS versions; hw_firmware_type left unchanged"
        )
    if firmware == "bios" and architecture_of(image) == "arm":
        return "ARM images boot in UEFI mode only; hw_firmware_type left unchanged"
    return None


# The safety check of each boot-critical attribute of the table (a test checks there is one).
BOOT_CHECKS = {"hw_firmware_type": _firmware_refusal}


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
