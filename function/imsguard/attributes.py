"""IMS image attributes: one table of what each one is, which a PATCH may change, and with
what values; and how values compare.

Validation (set rules), evaluation (safety refusals, comparisons), the policy's JSON schema
and the fake IMS all read the table, so adding an attribute is one row.

IMS stores values in more than one spelling: a recorded list answer holds
``"hw_vif_multiqueue_enabled": "False"``, ``"__isregistered": "True"``, JSON booleans,
``min_ram`` as a number next to ``max_ram`` as text. Comparing text as it is would
patch an image holding ``"True"`` to ``"true"`` on every sweep, so values are
compared by what they mean: boolean-like attributes without regard to case, whole
numbers as numbers, everything else as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Set
from typing import Any, Literal, NamedTuple, TypeVar

_T = TypeVar("_T")

WHOLE_NUMBER_TEXT = r"0|[1-9][0-9]{0,8}"  # as IMS stores it: no sign, no leading 0 (fullmatch)
UUID = r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}"
# The virtual_env_type (lower case) of system-disk images: the only ones that boot.
SYSTEM_DISK_TYPES = frozenset({"fusioncompute", "ironic"})


class Attribute(NamedTuple):
    """One IMS image attribute. ``patchable``: IMS's "Updating Image Information" API lists it
    as changeable; otherwise IMS manages it (a system attribute, never written)."""

    name: str
    patchable: bool = False
    type: Literal["text", "boolean", "whole_number"] = "text"
    values: tuple[str, ...] = ()  # the only values IMS takes, when it lists them
    unit: str = ""  # of a whole number, for messages
    pattern: str = ""  # a format the value must have (fullmatch), checked after blankness
    problem: str = ""  # the message when it has not ({name}, {value!r})
    may_be_blank: bool = False
    json_number: bool = False  # IMS stores and returns it as a JSON number, not text
    zero_is_unlimited: bool = False  # 0 means "no limit" (real images: max_ram "0")
    system_disk_only: bool = False  # meaningless, and refused, on data disk or ISO images
    boot_critical: bool = False  # a wrong value leaves servers unbootable: changed only
    # when evaluation has a safety check for it
    rule_kind: str = ""  # set by a rule kind of its own, not by set rules

    @property
    def allowed(self) -> tuple[str, ...]:
        """The listed values: a yes/no attribute takes the two IMS documents."""
        return ("true", "false") if self.type == "boolean" and self.patchable else self.values


def _patchable(name: str, **facts: Any) -> Attribute:
    return Attribute(name, patchable=True, **facts)


def _system(name: str, **facts: Any) -> Attribute:
    return Attribute(name, **facts)


_YES_NO: dict[str, Any] = {"type": "boolean"}
_MEGABYTES: dict[str, Any] = {"type": "whole_number", "unit": "MB"}

# Every attribute IMS documents. Patchable ones: PATCH /v2/cloudimages/{id} ("Updating Image
# Information"). System ones: every other attribute of the SDK's image model (a test checks).
TABLE: dict[str, Attribute] = {
    row.name: row
    for row in (
        _patchable("name", rule_kind="name"),
        _patchable(
            "__description",
            pattern=r"[^\r\n<>]{0,1024}",
            problem="{name} must be at most 1024 characters without <, > or newlines",
            may_be_blank=True,
        ),
        _patchable("__support_kvm", **_YES_NO),
        _patchable("__support_xen", **_YES_NO),
        _patchable("__support_largememory", **_YES_NO),
        _patchable("__support_diskintensive", **_YES_NO),
        _patchable("__support_highperformance", **_YES_NO),
        _patchable("__support_xen_gpu_type"),
        _patchable("__support_kvm_gpu_type"),
        _patchable("__support_xen_hana", **_YES_NO),
        _patchable("__is_config_init", **_YES_NO),
        _patchable(
            "enterprise_project_id",
            pattern=f"0|{UUID}",
            problem="{name} must be 0 (default) or a UUID, not {value!r}",
        ),
        _patchable("min_ram", json_number=True, **_MEGABYTES),
        _patchable("max_ram", zero_is_unlimited=True, **_MEGABYTES),
        _patchable(
            "hw_firmware_type", values=("bios", "uefi"), system_disk_only=True, boot_critical=True
        ),
        _patchable("hw_vif_multiqueue_enabled", system_disk_only=True, **_YES_NO),
        _patchable("__support_kvm_infiniband", **_YES_NO),
        _patchable("__support_fc_inject", **_YES_NO),
        _patchable("__support_amd", **_YES_NO),
        _patchable("__support_kvm_hi1822_hisriov", **_YES_NO),
        _patchable("__support_kvm_hi1822_hivirtionet", **_YES_NO),
        *(
            _system(name)
            for name in (
                "id",
                "status",
                "owner",
                "visibility",
                "created_at",
                "updated_at",
                "active_at",
                "deleted_at",
                "checksum",
                "self",
                "file",
                "schema",
                "disk_format",
                "container_format",
                "tags",
                "virtual_env_type",
                "__imagetype",
                "__platform",
                "__os_type",
                "__os_version",
                "__os_bit",
                "__image_source_type",
                "__originalimagename",
                "__backup_id",
                "__data_origin",
                "__productcode",
                "__os_feature_list",
                "__root_origin",
                "__sequence_num",
                "__support_arm",
                "__is_offshelved",
                "__system__cmkid",
                "__account_code",
                "__image_displayname",
                "__support_agent_list",
                "os_shutdown_timeout",
            )
        ),
        *(
            _system(name, **_YES_NO)
            for name in (
                "deleted",
                "protected",
                "__isregistered",
                "__lazyloading",
                "__whole_image",
                "__system_support_market",
            )
        ),
        *(
            _system(name, type="whole_number")
            for name in ("size", "virtual_size", "min_disk", "__image_size")
        ),
    )
}


class _View(Set[str]):
    """The names of the table's rows that ``wanted`` accepts, read when asked (so a row added
    to the table is in every view)."""

    def __init__(self, wanted: Callable[[Attribute], bool]):
        self._wanted = wanted

    def __contains__(self, name: object) -> bool:
        row = TABLE.get(name) if isinstance(name, str) else None
        return row is not None and self._wanted(row)

    def __iter__(self) -> Iterator[str]:
        return (name for name, row in TABLE.items() if self._wanted(row))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{{{', '.join(sorted(map(repr, self)))}}}"

    @classmethod
    def _from_iterable(cls, names: Iterable[_T]) -> frozenset[_T]:  # what | & - of a view give
        return frozenset(names)


PATCHABLE: Set[str] = _View(lambda row: row.patchable)  # what a PATCH may change (with name)
SETTABLE: Set[str] = _View(lambda row: row.patchable and not row.rule_kind)  # by set rules
SYSTEM_ATTRIBUTES: Set[str] = _View(lambda row: not row.patchable)  # managed by IMS
DOCUMENTED: Set[str] = _View(lambda row: True)
BOUNDED: Set[str] = _View(lambda row: row.patchable and row.type == "whole_number")
SYSTEM_DISK_ONLY: Set[str] = _View(lambda row: row.system_disk_only)
BOOT_CRITICAL: Set[str] = _View(lambda row: row.boot_critical)


def value_problem(name: str, value: str) -> str | None:
    """Why IMS would refuse ``value`` for attribute ``name`` in a PATCH, or None. An attribute
    the table does not hold is an extension attribute: any value but a blank one."""
    row = TABLE.get(name) or Attribute(name, patchable=True)
    if not row.patchable:
        return f"{name} is managed by IMS and cannot be changed"
    if row.allowed and value not in row.allowed:
        listed = " or ".join(repr(v) for v in row.allowed)
        return f"{name} must be {listed}, not {value!r}"
    if row.type == "whole_number" and not re.fullmatch(WHOLE_NUMBER_TEXT, value):
        return f"{name} must be a whole number of {row.unit} as a string, not {value!r}"
    if not row.may_be_blank and not value.strip():
        return f"{name}: an empty value"
    if row.pattern and not re.fullmatch(row.pattern, value):
        return row.problem.format(name=name, value=value)
    return None


def stored_value(name: str, value: str) -> Any:
    """A PATCHed value as IMS stores and returns it (min_ram becomes a number)."""
    row = TABLE.get(name)
    return int(value) if row is not None and row.json_number else value


def value_schema(row: Attribute) -> dict[str, Any]:
    """The JSON Schema of the values a set rule may give ``row``, for editors."""
    if row.allowed:
        return {"type": "string", "enum": list(row.allowed)}
    if row.type == "whole_number":
        number = {"type": "string", "pattern": f"^(?:{WHOLE_NUMBER_TEXT})$"}
        bounds = {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {"at_least": number, "at_most": number},
        }
        return {"anyOf": [number, bounds], "description": f"a whole number of {row.unit}"}
    if row.pattern:
        return {"type": "string", "pattern": f"^(?:{row.pattern})$"}
    return {"type": "string", "minLength": 1}


def set_schema(schema: dict[str, Any]) -> None:
    """The ``set`` mapping's JSON Schema: each attribute a set rule may write, with its values;
    any other name is an extension attribute declared in custom_attributes."""
    schema.clear()
    schema.update(
        {
            "type": "object",
            "minProperties": 1,
            "properties": {name: value_schema(TABLE[name]) for name in SETTABLE},
            "additionalProperties": {"type": "string"},
        }
    )


def is_boolean(key: str) -> bool:
    """A yes/no attribute: a known one, or any ``__support_*`` flag IMS adds later."""
    row = TABLE.get(key)
    return (row is not None and row.type == "boolean") or (
        key.startswith("__support_") and not key.endswith("_type")
    )


def is_whole_number(key: str) -> bool:
    row = TABLE.get(key)
    return row is not None and row.type == "whole_number"


def attribute_text(value: Any) -> str | None:
    """A value as text, as IMS would send it in a PATCH (JSON ``true`` becomes "true")."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def canonical(key: str, value: Any) -> str | None:
    """The value's meaning, for comparison: "True", "true" and ``true`` are one value of a
    boolean-like attribute; 2048, "2048" and "02048" one value of a whole-number one."""
    text = attribute_text(value)
    if text is None:
        return None
    if is_boolean(key) and text.strip().lower() in ("true", "false"):
        return text.strip().lower()
    if is_whole_number(key):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        digits = text.strip()
        if digits.isascii() and digits.isdigit():  # as text: int() refuses 4,300+ digits
            return digits.lstrip("0") or "0"
    return text


def same_value(key: str, current: Any, wanted: Any) -> bool:
    """Whether an image holding ``current`` already has ``wanted`` for attribute ``key``."""
    return canonical(key, current) == canonical(key, wanted)
