"""The policy document: its schema, its load-time checks, and loading it once.

A policy is YAML (or JSON) with a list of rules. Every mistake is reported
when the file loads, naming the rule and the field, so a bad policy never
reaches an image.
"""

from __future__ import annotations

import re
import string
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from imsguard.attributes import PATCHABLE, SYSTEM_ATTRIBUTES, WHOLE_NUMBER, is_boolean
from imsguard.patterns import compiled

KEBAB_CASE = r"^[a-z0-9]+(-[a-z0-9]+)*$"

TRUE_FALSE_ATTRIBUTES = frozenset(p for p in PATCHABLE if is_boolean(p))
EXTENSION_NAME = re.compile(r"[a-z0-9_][a-z0-9_.:-]{0,63}")  # used with fullmatch
ENTERPRISE_PROJECT = re.compile(r"0|[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}")  # fullmatch
WHOLE_NUMBER_TEXT = re.compile(r"0|[1-9][0-9]{0,8}")  # as IMS stores it: no sign, no leading 0


class PolicyError(ValueError):
    """The policy cannot be used; ``problems`` lists every reason, each naming rule and field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid policy {source}: " + "; ".join(problems))


def _check_regex(value: str) -> str:
    compiled(value)  # RE2: linear time, or a ValueError saying why not
    return value


def _names(value: Any) -> Any:
    """A single value is accepted where a list is expected (``platform: Ubuntu``)."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [str(value)]
    return value


def _one_of(allowed: dict[str, str], what: str) -> Any:
    """A validator that maps values (case-insensitively, aliases too) to IMS's spelling, and
    refuses the rest with a suggestion: a value IMS never holds would never match."""

    def check(values: list[str]) -> list[str]:
        result = []
        spaceless = {key.replace(" ", ""): spelled for key, spelled in allowed.items()}
        for value in values:
            spelled = spaceless.get(value.lower().replace(" ", ""))  # as matching compares
            if spelled is None:
                choices = sorted(set(allowed.values()))
                raise ValueError(
                    f"{value!r} is not {what}{did_you_mean(value.lower(), allowed)}"
                    f" (one of {choices})"
                )
            result.append(spelled)
        return result

    return AfterValidator(check)


def did_you_mean(word: str, known: Any) -> str:
    """ "; did you mean 'x'?" for the nearest known word, or nothing."""
    import difflib  # only when a policy is wrong

    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    if not close:
        return ""
    spelled = known[close[0]] if isinstance(known, dict) else close[0]
    return f"; did you mean {spelled!r}?"


VIRTUAL_ENV_TYPES = {
    "fusioncompute": "FusionCompute",
    "ironic": "Ironic",
    "dataimage": "DataImage",
    "isoimage": "IsoImage",
    "system_disk": "FusionCompute",
    "bare_metal": "Ironic",
    "data_disk": "DataImage",
    "iso": "IsoImage",
}
OS_TYPES = {"linux": "Linux", "windows": "Windows", "other": "Other"}
# __platform as IMS documents it (API reference, image attributes: Windows, Ubuntu, RedHat or
# Red Hat, SUSE, CentOS, Debian, OpenSUSE, Oracle Linux, Fedora, Other, CoreOS, EulerOS), and
# openEuler, whose versions IMS's own OS lists hold. Matching ignores case and spaces.
PLATFORMS = {
    p.lower(): p
    for p in (
        "Windows",
        "Ubuntu",
        "Red Hat",
        "RedHat",
        "SUSE",
        "CentOS",
        "Debian",
        "OpenSUSE",
        "Oracle Linux",
        "Fedora",
        "Other",
        "CoreOS",
        "EulerOS",
        "openEuler",
    )
}
IMAGE_TYPES = {t: t for t in ("gold", "private", "shared", "market")}
OS_BITS = {"32": "32", "64": "64"}
ARCHITECTURES = {"x86": "x86", "arm": "arm"}
TAG = re.compile(r"[^=\s][^=]{0,127}(=[^=]{0,255})?")  # key, or key=value (used with fullmatch)

# For editors: a value or a list (the validator turns a single value into a list).
_ONE_OR_MORE = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string"},
            {"type": "integer"},
            {"type": "array", "items": {"type": "string"}, "minItems": 1},
        ]
    }
)
Names = Annotated[
    list[Annotated[str, Field(min_length=1)]],
    BeforeValidator(_names),
    Field(min_length=1),
    _ONE_OR_MORE,
]
Attributes = Annotated[
    dict[str, Any],
    Field(min_length=1),
    WithJsonSchema(
        {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "minProperties": 1,
                        "properties": {
                            "at_least": {"type": "string"},
                            "at_most": {"type": "string"},
                        },
                    },
                ]
            },
        }
    ),
]
Regex = Annotated[str, AfterValidator(_check_regex)]


def _check_tags(values: list[str]) -> list[str]:
    for value in values:
        if not TAG.fullmatch(value):
            raise ValueError(f"{value!r} is not a tag: write key or key=value")
    return values


STRICT = ConfigDict(extra="forbid", populate_by_name=True)


class Match(BaseModel):
    """Which images a rule applies to; every given condition must hold.

    Lists match one of their values, case-insensitively; ``os_version`` and ``name``
    are regular expressions searched in the attribute; ``tags`` must all be present
    (``key`` or ``key=value``); ``all``/``any``/``not`` combine further conditions.
    """

    model_config = STRICT

    platform: Annotated[Names, _one_of(PLATFORMS, "a platform IMS documents")] | None = None
    os_type: Annotated[Names, _one_of(OS_TYPES, "an os_type")] | None = None
    os_version: Regex | None = None
    os_bit: Annotated[Names, _one_of(OS_BITS, "an os_bit")] | None = None
    architecture: Annotated[Names, _one_of(ARCHITECTURES, "an architecture")] | None = None
    imagetype: Annotated[Names, _one_of(IMAGE_TYPES, "an imagetype")] | None = None
    virtual_env_type: Annotated[Names, _one_of(VIRTUAL_ENV_TYPES, "a virtual_env_type")] | None = (
        None
    )
    name: Regex | None = None
    tags: Annotated[Names, AfterValidator(_check_tags)] | None = None
    all: list[Match] | None = Field(default=None, min_length=1)
    any: list[Match] | None = Field(default=None, min_length=1)
    not_: Match | None = Field(default=None, alias="not")


Mode = Literal["enforce", "audit"]


class _Rule(BaseModel):
    model_config = STRICT

    name: str = Field(pattern=KEBAB_CASE, max_length=64)
    description: str = ""
    mode: Mode | None = None  # None: the policy's mode
    match: Match = Field(default_factory=Match)
    exclude: Match | None = None  # images matching this are left out of the rule


class NameRule(_Rule):
    """The image name must match ``pattern``. The fix: ``normalize`` (lower-case, runs of
    other characters become one '-'), ``template`` (built from image attributes), or
    ``report`` (no fix)."""

    kind: Literal["name"]
    pattern: Regex = KEBAB_CASE
    fix: Literal["normalize", "template", "report"] | None = None
    template: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _fix_and_template(self) -> NameRule:
        if self.fix is None:
            self.fix = "template" if self.template is not None else "normalize"
        if self.fix == "template" and self.template is None:
            raise ValueError("template: fix: template needs a template")
        if self.fix != "template" and self.template is not None:
            raise ValueError(f"template: only used with fix: template, not {self.fix}")
        if self.template is not None:
            try:
                check_template(self.template)
            except ValueError as exc:
                raise ValueError(f"template: {exc}") from None
        return self


STRFTIME = re.compile(r"(?:%[YymdHMSjUWbBaAp%]|[^%{}])+")  # used with fullmatch
TEMPLATE_FIELDS = {
    "platform",
    "os_type",
    "os_version",
    "os_version_number",
    "os_bit",
    "created",
    "id8",
    "name",
    "tag",
}


def check_template(template: str) -> None:
    """Only known fields; a format only for ``created`` (a strftime format)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"template {template!r}: {exc}") from None
    if all(field is None for _, field, _, _ in parts):
        raise ValueError(f"template {template!r} has no field: every image would get one name")
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            raise ValueError(
                f"template field {{{field}}} is unknown; use one of {sorted(TEMPLATE_FIELDS)}"
            )
        if conversion:
            raise ValueError(f"template field {{{field}!{conversion}}}: no conversions")
        if field == "tag":
            if not spec or not TAG.fullmatch(spec) or "=" in spec:
                raise ValueError(
                    f"template field {{tag:{spec}}}: name the tag's key, as in {{tag:team}}"
                )
            continue
        if spec and field != "created":
            raise ValueError(
                f"template field {{{field}:{spec}}}: only created (a strftime "
                "format) and tag (a tag key) take one"
            )
        if field == "created" and spec and not STRFTIME.fullmatch(spec):
            raise ValueError(
                f"template field {{created:{spec}}}: use strftime directives "
                "such as %Y, %m, %d, %H, %M"
            )
        if field == "created" and spec and not date(2026, 1, 2).strftime(spec).strip():
            raise ValueError(f"template field {{created:{spec}}} formats to nothing")


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


class SetRule(_Rule):
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
            if key not in PATCHABLE and key not in declared:
                problems.append(
                    f"{key!r} is not an attribute IMS lets a PATCH change"
                    f"{did_you_mean(key, PATCHABLE | set(declared))}; an extension "
                    "attribute of your own must be listed in custom_attributes first"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return checked


Rule = Annotated[NameRule | SetRule, Field(discriminator="kind")]
# pydantic's (Rust) regex: "$" is the very end, no trailing newline slips through
ImageId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")]
DEFAULT_EXEMPT_TAG = "imsguard-exempt"


class Exemption(BaseModel):
    """Images left alone: those with a tag (``key`` or ``key=value``), or listed by id.
    ``rules`` limits it to some rules; after ``expires`` (a date) it no longer applies."""

    model_config = STRICT

    tag: str | None = None
    images: list[ImageId] | None = Field(default=None, min_length=1)
    reason: str = Field(min_length=1, max_length=500)
    expires: date | None = None
    rules: list[str] | None = Field(default=None, min_length=1)

    @field_validator("expires", mode="before")
    @classmethod
    def _date_only(cls, value: Any) -> Any:
        if isinstance(value, datetime) or (isinstance(value, str) and "T" in value):
            raise ValueError("give a date such as 2027-03-31, without a time")
        return value

    @field_validator("tag")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        if value is not None and not TAG.fullmatch(value):
            raise ValueError(f"{value!r} is not a tag: write key or key=value")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Exemption:
        if (self.tag is None) == (self.images is None):
            raise ValueError("an exemption names either a tag or images, not both or neither")
        return self


def _default_exemptions() -> list[Exemption]:
    return [Exemption(tag=DEFAULT_EXEMPT_TAG, reason=f"the image is tagged {DEFAULT_EXEMPT_TAG}")]


class Policy(BaseModel):
    model_config = STRICT

    version: Literal[1]
    mode: Mode = "enforce"
    # Sweep guardrails: a sweep that would change more images than this changes none.
    max_updates: int | None = Field(default=None, ge=0)
    max_updates_percent: float | None = Field(default=None, ge=0, le=100)
    # Without this key, images tagged imsguard-exempt are exempt; a list replaces that.
    exemptions: list[Exemption] = Field(default_factory=_default_exemptions)
    # Extension attributes of the team's own that set rules may write; nothing else is
    # written that IMS does not document as patchable (a typo would reach every image).
    custom_attributes: list[str] = Field(default_factory=list)
    rules: list[Rule] = Field(min_length=1)

    @field_validator("custom_attributes")
    @classmethod
    def _custom_attributes(cls, names: list[str]) -> list[str]:
        problems = [
            problem for name in names for problem in [custom_attribute_problem(name)] if problem
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return names

    def mode_of(self, rule: NameRule | SetRule) -> Mode:
        return rule.mode or self.mode


def policy_problems(policy: Policy) -> list[dict[str, Any]]:
    """What no single rule shows: rules that clash, exemptions naming unknown rules.
    Each problem has the location of the field to change, as pydantic's errors do."""
    problems: list[dict[str, Any]] = []

    def problem(loc: tuple[Any, ...], message: str) -> None:
        problems.append({"loc": loc, "msg": message, "placed": True})

    names: dict[str, int] = {}
    owners: dict[str, tuple[str, str]] = {}
    fixers: list[str] = []
    for index, rule in enumerate(policy.rules):
        if rule.name in names:
            problem(("rules", index, "name"), f"two rules are named {rule.name!r}")
        names.setdefault(rule.name, index)
        if isinstance(rule, NameRule) and rule.fix != "report":
            fixers.append(rule.name)
            if len(fixers) == 2:
                problem(
                    ("rules", index, "fix"),
                    f"rules {fixers} would both rename images; "
                    "keep one name rule that fixes, make the others fix: report",
                )
        for key, value in getattr(rule, "set", {}).items():
            other = owners.setdefault(key, (rule.name, value))
            if other[1] != value:
                problem(
                    ("rules", index, "set", key),
                    f"rules {other[0]!r} and {rule.name!r} "
                    f"set {key} to different values ({other[1]!r}, {value!r})",
                )
    ram = {k: (owners[k][1], names[owners[k][0]]) for k in ("min_ram", "max_ram") if k in owners}
    if len(ram) == 2:
        lowest, highest = _least(ram["min_ram"][0]), _most(ram["max_ram"][0])
        # max_ram 0 is "no maximum": real images hold min_ram 1024 beside max_ram "0"
        if lowest is not None and highest and highest < lowest:
            problem(
                ("rules", ram["max_ram"][1], "set", "max_ram"),
                f"max_ram {ram['max_ram'][0]} is below min_ram {ram['min_ram'][0]}",
            )
    for index, exemption in enumerate(policy.exemptions):
        unknown = sorted(set(exemption.rules or ()) - set(names))
        if unknown:
            problem(("exemptions", index, "rules"), f"names unknown rules {unknown}")
    return problems


DOCUMENTED = PATCHABLE | SYSTEM_ATTRIBUTES  # every attribute name IMS documents
BOUNDED = WHOLE_NUMBER & PATCHABLE  # attributes a set rule may bound (min_ram, max_ram)


def custom_attribute_problem(name: str) -> str | None:
    """Why ``name`` cannot be an extension attribute of the team's own, or None."""
    if name in PATCHABLE:
        return f"{name!r} is documented by IMS: set it without declaring it"
    if name in SYSTEM_ATTRIBUTES:
        return f"{name!r} is managed by IMS and cannot be changed"
    if name.startswith("__"):
        return f"{name!r}: names starting with __ are IMS's own; choose another"
    if not EXTENSION_NAME.fullmatch(name):
        return (
            f"{name!r} is not an extension attribute name IMS takes (lower case, digits, "
            "_ . : -, at most 64)"
        )
    near = next((known for known in sorted(DOCUMENTED) if edit_distance(name, known) <= 2), None)
    if near is not None:
        return (
            f"{name!r} is too close to IMS's own {near!r} (a typo would reach every "
            "image): choose a name that differs more"
        )
    return None


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    row = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, char_b in enumerate(b, 1):
            previous, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, previous + (char_a != char_b)),
            )
    return row[-1]


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
    if key == "name":
        raise ValueError("set the name with a rule of kind 'name'")
    if key in SYSTEM_ATTRIBUTES:
        raise ValueError(f"{key} is managed by IMS and cannot be changed")
    if isinstance(value, dict):
        return _bound(key, value)
    if not isinstance(value, str):
        hint = f' (write "{str(value).lower()}" in quotes)' if isinstance(value, bool) else ""
        raise ValueError(f"{key}: IMS attribute values are strings{hint}")
    if key == "hw_firmware_type" and value not in ("bios", "uefi"):
        raise ValueError(f"hw_firmware_type must be 'bios' or 'uefi', not {value!r}")
    if key in TRUE_FALSE_ATTRIBUTES and value not in ("true", "false"):
        raise ValueError(f"{key} must be 'true' or 'false', not {value!r}")
    if key in ("min_ram", "max_ram") and not WHOLE_NUMBER_TEXT.fullmatch(value):
        raise ValueError(f"{key} must be a whole number of MB as a string, not {value!r}")
    if key == "__description" and (len(value) > 1024 or re.search(r"[\r\n<>]", value)):
        raise ValueError("__description must be at most 1024 characters without <, > or newlines")
    if key != "__description" and not value.strip():
        raise ValueError(f"{key}: an empty value")
    if key == "enterprise_project_id" and not ENTERPRISE_PROJECT.fullmatch(value):
        raise ValueError(f"enterprise_project_id must be 0 (default) or a UUID, not {value!r}")
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
        if not isinstance(number, str) or not WHOLE_NUMBER_TEXT.fullmatch(number):
            raise ValueError(
                f'{key}: {word} must be a whole number as a string, such as "2048", not {number!r}'
            )
        bounds[word] = int(number)
    bound = Bound(**bounds)
    if bound.at_least is not None and bound.at_most is not None and bound.at_least > bound.at_most:
        raise ValueError(f"{key}: at_least {bound.at_least} is above at_most {bound.at_most}")
    return bound


def parse_policy(data: Any, source: str = "<policy>", node: Any = None) -> Policy:
    """Validate an already-parsed document; raise PolicyError with every problem.
    With the YAML ``node`` tree, each problem also gives its line."""
    if not isinstance(data, dict):
        raise PolicyError(source, ["the document must be a mapping with 'version' and 'rules'"])
    empty = [
        {"loc": loc, "msg": "empty; give a value or remove the key"} for loc in _empty_values(data)
    ]
    try:
        # Each set rule checks its attribute names against the declared custom_attributes,
        # so that a typo is reported with every other problem, not after them.
        declared = data.get("custom_attributes")
        context = {
            "custom_attributes": [n for n in declared if isinstance(n, str)]
            if isinstance(declared, list)
            else []
        }
        policy = Policy.model_validate(
            _without(data, {loc for loc in map(_key, empty)}), context=context
        )
    except ValidationError as exc:
        errors = empty + exc.errors()
    else:
        errors = empty + policy_problems(policy)
    if errors:
        raise PolicyError(source, [_describe(error, data, node) for error in errors])
    return policy


def _key(error: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(error["loc"])


def _empty_values(value: Any, loc: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where a key is given without a value (``exclude: {}``, ``expires:``, ``rules: []``):
    left alone, it would quietly mean "everything", "never" or the default."""
    found: list[tuple[Any, ...]] = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value if isinstance(value, list) else ())
    )
    for key, item in items:
        if isinstance(value, dict) and (
            item is None
            or (isinstance(item, (dict, list, str)) and not item and key != "description")
        ):
            found.append((*loc, key))
        elif key != "set":  # attribute values are checked with IMS's own rules
            found.extend(_empty_values(item, (*loc, key)))
    return found


def _without(value: Any, locations: set[tuple[Any, ...]], loc: tuple[Any, ...] = ()) -> Any:
    if isinstance(value, dict):
        return {
            k: _without(v, locations, (*loc, k))
            for k, v in value.items()
            if (*loc, k) not in locations
        }
    if isinstance(value, list):
        return [_without(v, locations, (*loc, i)) for i, v in enumerate(value)]
    return value


def _describe(error: Any, data: dict[str, Any], node: Any) -> str:
    """'rule "x" (rules[1]), field set.hw_firmware_type (line 9): message'."""
    loc = list(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    where = "policy"
    if len(loc) >= 2 and loc[0] in ("rules", "exemptions") and isinstance(loc[1], int):
        items = data.get(loc[0]) or []
        raw = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"rule {name!r} ({loc[0]}[{loc[1]}])" if name else f"{loc[0]}[{loc[1]}]"
        if (
            len(loc) > 2
            and not error.get("placed")
            and isinstance(raw, dict)
            and loc[2] == raw.get("kind")
        ):
            del loc[2]  # the discriminator pydantic puts in the location
    line = f" (line {line_of(node, loc)})" if node is not None else ""
    field = ".".join(str(p) for p in (loc if where == "policy" else loc[2:]))
    return f"{where}, field {field}{line}: {message}" if field else f"{where}{line}: {message}"


def line_of(node: Any, loc: list[Any]) -> int:
    """The line of the YAML node a pydantic error location points at (as deep as it goes)."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            value = next((v for k, v in node.value if k.value == str(part)), None)
            if value is not None:  # else: a discriminator or model name; stay here
                node = value
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1


_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):  # type: ignore[misc,valid-type]
    """Safe YAML that refuses duplicate keys (plain YAML silently keeps the last one) and
    leaves dates as text, so that pydantic reports a typo such as 2026-02-30 by field."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
    }

    def _claim(self, node: Any) -> None:
        # An alias (*name) puts one node in two places; refusing aliases refuses "billion
        # laughs" documents that would expand exponentially when validated.
        claimed = self.__dict__.setdefault("_claimed", set())
        if id(node) in claimed:
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed in policies", node.start_mark
            )
        claimed.add(id(node))

    def construct_sequence(self, node: Any, deep: bool = False) -> Any:
        for child in node.value:
            self._claim(child)
        return super().construct_sequence(node, deep)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            self._claim(value_node)
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "keys must be plain text", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def yaml_loader() -> type:
    """The YAML loader for imsguard's files: safe, no duplicate keys, no aliases, dates as text."""
    return _StrictLoader


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; PolicyError names every problem."""
    source = str(path)
    try:
        with open(path, encoding="utf-8") as stream:  # a stream: YAML errors name the file
            data = yaml.load(stream, Loader=_StrictLoader)
    except OSError as exc:
        raise PolicyError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise PolicyError(source, ["the file is not UTF-8 text"]) from None
    except yaml.YAMLError as exc:
        raise PolicyError(source, [f"not valid YAML: {exc}"]) from None
    try:
        return parse_policy(data, source)
    except PolicyError:
        with open(path, encoding="utf-8") as stream:  # read again, for the lines of problems
            node = yaml.compose(stream, Loader=_StrictLoader)
        return parse_policy(data, source, node)


_cache: dict[tuple[str, int], Policy | PolicyError] = {}


def cached_policy(path: Path) -> Policy:
    """Load a policy once per container (again only if the file changes)."""
    try:
        key = (str(path), Path(path).stat().st_mtime_ns)
    except OSError:
        key = (str(path), -1)
    if key not in _cache:
        _cache.clear()
        try:
            _cache[key] = load_policy(path)
        except PolicyError as exc:
            _cache[key] = exc
    cached = _cache[key]
    if isinstance(cached, PolicyError):
        raise cached
    return cached
