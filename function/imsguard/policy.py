"""The policy document: its schema, its load-time checks, and loading it once.

A policy is YAML (or JSON) with a list of rules. Every mistake is reported
when the file loads, naming the rule and the field, so a bad policy never
reaches an image. Each rule kind validates its own fields and names its own clashes
(imsguard.rules); this module checks what spans the document.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from imsguard.attributes import DOCUMENTED, SETTABLE
from imsguard.match import STRICT, TAG
from imsguard.rules import KINDS, Rule
from imsguard.rules.base import Mode, RuleKind
from imsguard.spelling import edit_distance

EXTENSION_NAME = re.compile(r"[a-z0-9_][a-z0-9_.:-]{0,63}")  # used with fullmatch


class PolicyError(ValueError):
    """The policy cannot be used; ``problems`` lists every reason, each naming rule and field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid policy {source}: " + "; ".join(problems))


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


def _none_declared() -> list[str]:
    """A new empty list. (Not ``list`` itself: pydantic reads a builtin's signature from its
    text, which compiles the tokenizer's regular expressions, ~8 ms of every cold start.)"""
    return []


class Policy(BaseModel):
    model_config = STRICT

    version: Literal[1]
    mode: Mode = "enforce"
    # Sweep guardrails: a sweep that would change more images than this changes none.
    max_updates: int | None = Field(default=None, ge=0)
    max_updates_percent: float | None = Field(default=None, ge=0, le=100)
    # The same limits for a whole organization sweep (imsguard.org.coordinator): shards plan
    # first, and none applies unless the organization's total is within them.
    org_max_updates: int | None = Field(default=None, ge=0)
    org_max_updates_percent: float | None = Field(default=None, ge=0, le=100)
    # Without this key, images tagged imsguard-exempt are exempt; a list replaces that.
    exemptions: list[Exemption] = Field(default_factory=_default_exemptions)
    # Extension attributes of the team's own that set rules may write; nothing else is
    # written that IMS does not document as patchable (a typo would reach every image).
    custom_attributes: list[str] = Field(default_factory=_none_declared)
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

    @property
    def org_limited(self) -> bool:
        """Whether the policy limits the changes of a whole organization's sweep."""
        return self.org_max_updates is not None or self.org_max_updates_percent is not None

    def mode_of(self, rule: RuleKind) -> Mode:
        return rule.mode or self.mode


def policy_problems(policy: Policy) -> list[dict[str, Any]]:
    """What no single rule shows: rules that clash, exemptions naming unknown rules.
    Each problem has the location of the field to change, as pydantic's errors do."""
    problems: list[dict[str, Any]] = []

    def problem(loc: tuple[Any, ...], message: str) -> None:
        problems.append({"loc": loc, "msg": message, "placed": True})

    names: dict[str, int] = {}
    for index, rule in enumerate(policy.rules):
        if rule.name in names:
            problem(("rules", index, "name"), f"two rules are named {rule.name!r}")
        names.setdefault(rule.name, index)
    indexed = list(enumerate(policy.rules))
    for kind in KINDS:
        for clash in kind.conflicts(indexed):
            problem(clash.loc, clash.message)
    for index, exemption in enumerate(policy.exemptions):
        unknown = sorted(set(exemption.rules or ()) - set(names))
        if unknown:
            problem(("exemptions", index, "rules"), f"names unknown rules {unknown}")
    return problems


def custom_attribute_problem(name: str) -> str | None:
    """Why ``name`` cannot be an extension attribute of the team's own, or None."""
    if name in SETTABLE:
        return f"{name!r} is documented by IMS: set it without declaring it"
    if name in DOCUMENTED:
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


def parse_policy(data: Any, source: str = "<policy>", node: Any = None) -> Policy:
    """Validate an already-parsed document; raise PolicyError with every problem.
    With the YAML ``node`` tree, each problem also gives its line."""
    if not isinstance(data, dict):
        raise PolicyError(source, ["the document must be a mapping with 'version' and 'rules'"])
    empty: list[dict[str, Any]] = [
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
        errors = empty + [dict(error) for error in exc.errors()]
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
    line: int = node.start_mark.line + 1
    return line


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
