"""The policy document: its schema, its load-time checks, and loading it once.

A policy is YAML (or JSON) with a list of rules. Every mistake is reported
when the file loads, naming the rule and the field, so a bad policy never
reaches an image.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

KEBAB_CASE = r"^[a-z0-9]+(-[a-z0-9]+)*$"

# Attributes PATCH /v2/cloudimages/{id} documents as updatable ("name" has its own rule kind).
# imsguard.testing keeps its own copy on purpose: the fake is an independent model of IMS.
PATCHABLE = frozenset({
    "__description", "__support_kvm", "__support_xen", "__support_largememory",
    "__support_diskintensive", "__support_highperformance", "__support_xen_gpu_type",
    "__support_kvm_gpu_type", "__support_xen_hana", "__is_config_init", "enterprise_project_id",
    "min_ram", "max_ram", "hw_vif_multiqueue_enabled", "hw_firmware_type",
    "__support_kvm_infiniband", "__support_fc_inject", "__support_amd",
    "__support_kvm_hi1822_hisriov", "__support_kvm_hi1822_hivirtionet",
})
# Attributes IMS manages itself: never settable, not even as extension attributes.
SYSTEM_ATTRIBUTES = frozenset({
    "id", "name", "status", "owner", "visibility", "created_at", "updated_at", "active_at",
    "deleted_at", "checksum", "size", "virtual_size", "min_disk", "self", "file", "schema",
    "disk_format", "container_format", "protected", "tags", "virtual_env_type", "__imagetype",
    "__platform", "__os_type", "__os_version", "__os_bit", "__image_source_type",
    "__originalimagename", "__backup_id", "__image_size", "__data_origin", "__isregistered",
    "__productcode", "__lazyloading", "__os_feature_list", "__root_origin", "__sequence_num",
})
TRUE_FALSE_ATTRIBUTES = frozenset({"hw_vif_multiqueue_enabled", "__is_config_init"} | {
    p for p in PATCHABLE if p.startswith("__support_") and not p.endswith("_type")
})
EXTENSION_NAME = re.compile(r"[a-z0-9_][a-z0-9_.:-]{0,63}")  # used with fullmatch
WHOLE_NUMBER = re.compile(r"0|[1-9][0-9]{0,8}")  # as IMS stores it: no sign, no leading 0


class PolicyError(ValueError):
    """The policy cannot be used; ``problems`` lists every reason, each naming rule and field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid policy {source}: " + "; ".join(problems))


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


# A single string is accepted where a list is expected: `platform: Ubuntu`.
Names = Annotated[list[str], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]
Regex = Annotated[str, AfterValidator(_check_regex)]


class Match(BaseModel):
    """Which images a rule applies to; every given condition must hold.

    List conditions match one of their values, case-insensitively; ``os_version``
    is a regular expression searched in the image's ``__os_version``.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_empty_conditions(cls, data: Any) -> Any:
        # `platform:` with no value would silently match everything, `[]` nothing.
        for key, value in (data.items() if isinstance(data, dict) else ()):
            if value is None or value == [] or value == "":
                raise ValueError(f"{key}: empty condition; give a value or remove the key")
        return data

    platform: Names | None = None
    os_type: Names | None = None
    os_version: Regex | None = None
    imagetype: Names | None = None
    virtual_env_type: Names | None = None


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=KEBAB_CASE, max_length=64)
    description: str = ""
    match: Match = Field(default_factory=Match)


class NameRule(_Rule):
    """The image name must match ``pattern``; ``normalize`` fixes it, ``report`` only reports."""

    kind: Literal["name"]
    pattern: Regex = KEBAB_CASE
    fix: Literal["normalize", "report"] = "normalize"


class SetRule(_Rule):
    """Image attributes that must hold the given (string) values."""

    kind: Literal["set"]
    set: dict[str, Any] = Field(min_length=1)

    @field_validator("set", mode="before")
    @classmethod
    def _check_attributes(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        checked = {}
        for raw_key, value in values.items():
            key = str(raw_key).removeprefix("/")
            checked[key] = check_attribute_value(key, value)
        return checked


Rule = Annotated[NameRule | SetRule, Field(discriminator="kind")]


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    mode: Literal["enforce", "audit"] = "enforce"
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _rules_agree(self) -> Policy:
        names: set[str] = set()
        owners: dict[str, tuple[str, str]] = {}
        for rule in self.rules:
            if rule.name in names:
                raise ValueError(f"two rules are named {rule.name!r}")
            names.add(rule.name)
            for key, value in getattr(rule, "set", {}).items():
                other = owners.setdefault(key, (rule.name, value))
                if other[1] != value:
                    raise ValueError(f"rules {other[0]!r} and {rule.name!r} set {key} to "
                                     f"different values ({other[1]!r}, {value!r})")
        return self


def check_attribute_value(key: str, value: Any) -> str:
    """Refuse what IMS would refuse, at load time: unpatchable paths and bad values."""
    if "/" in key or not key:
        raise ValueError(f"{key!r} is not an attribute name")
    if key == "name":
        raise ValueError("set the name with a rule of kind 'name'")
    if key in SYSTEM_ATTRIBUTES:
        raise ValueError(f"{key} is managed by IMS and cannot be changed")
    if key not in PATCHABLE and not EXTENSION_NAME.fullmatch(key):
        raise ValueError(f"{key!r} is neither a patchable IMS attribute nor a valid extension "
                         "attribute name (lower case, digits, _ . : -)")
    if not isinstance(value, str):
        hint = f' (write "{str(value).lower()}" in quotes)' if isinstance(value, bool) else ""
        raise ValueError(f"{key}: IMS attribute values are strings{hint}")
    if key == "hw_firmware_type" and value not in ("bios", "uefi"):
        raise ValueError(f"hw_firmware_type must be 'bios' or 'uefi', not {value!r}")
    if key in TRUE_FALSE_ATTRIBUTES and value not in ("true", "false"):
        raise ValueError(f"{key} must be 'true' or 'false', not {value!r}")
    if key in ("min_ram", "max_ram") and not WHOLE_NUMBER.fullmatch(value):
        raise ValueError(f"{key} must be a whole number of MB as a string, not {value!r}")
    if key == "__description" and (len(value) > 1024 or re.search(r"[\r\n<>]", value)):
        raise ValueError("__description must be at most 1024 characters without <, > or newlines")
    return value


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    """Validate an already-parsed document; raise PolicyError with every problem."""
    if not isinstance(data, dict):
        raise PolicyError(source, ["the document must be a mapping with 'version' and 'rules'"])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, [_describe(error, data) for error in exc.errors()]) from None


def _describe(error: Any, data: dict[str, Any]) -> str:
    """'rule "x" (rules[1]), field set.hw_firmware_type: message'."""
    loc = list(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    where = "policy"
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules") or []
        raw = rules[loc[1]] if loc[1] < len(rules) else None
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"rule {name!r} (rules[{loc[1]}])" if name else f"rules[{loc[1]}]"
        loc = loc[2:]
        if loc and isinstance(raw, dict) and loc[0] == raw.get("kind"):
            loc = loc[1:]  # drop the discriminator pydantic puts in the location
    field = ".".join(str(p) for p in loc)
    return f"{where}, field {field}: {message}" if field else f"{where}: {message}"


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that refuses duplicate keys (plain YAML silently keeps the last one)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


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
    return parse_policy(data, source)


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
