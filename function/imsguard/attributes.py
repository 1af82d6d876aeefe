"""IMS image attributes: which ones a PATCH may change, and how their values compare.

IMS stores values in more than one spelling: a recorded list answer holds
``"hw_vif_multiqueue_enabled": "False"``, ``"__isregistered": "True"``, JSON booleans,
``min_ram`` as a number next to ``max_ram`` as text. Comparing text as it is would
patch an image holding ``"True"`` to ``"true"`` on every sweep, so values are
compared by what they mean: boolean-like attributes without regard to case, whole
numbers as numbers, everything else as text.
"""

from __future__ import annotations

from typing import Any

# Attributes PATCH /v2/cloudimages/{id} documents as updatable ("name" has its own rule kind).
# imsguard_tools.testing keeps its own copy on purpose: the fake is an independent model of IMS.
PATCHABLE = frozenset(
    {
        "__description",
        "__support_kvm",
        "__support_xen",
        "__support_largememory",
        "__support_diskintensive",
        "__support_highperformance",
        "__support_xen_gpu_type",
        "__support_kvm_gpu_type",
        "__support_xen_hana",
        "__is_config_init",
        "enterprise_project_id",
        "min_ram",
        "max_ram",
        "hw_vif_multiqueue_enabled",
        "hw_firmware_type",
        "__support_kvm_infiniband",
        "__support_fc_inject",
        "__support_amd",
        "__support_kvm_hi1822_hisriov",
        "__support_kvm_hi1822_hivirtionet",
    }
)
# Attributes IMS manages itself: never settable, not even as extension attributes. Every
# attribute of the SDK's image model that a PATCH may not change is here (a test checks).
SYSTEM_ATTRIBUTES = frozenset(
    {
        "id",
        "name",
        "status",
        "owner",
        "visibility",
        "created_at",
        "updated_at",
        "active_at",
        "deleted_at",
        "deleted",
        "checksum",
        "size",
        "virtual_size",
        "min_disk",
        "self",
        "file",
        "schema",
        "disk_format",
        "container_format",
        "protected",
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
        "__image_size",
        "__data_origin",
        "__isregistered",
        "__productcode",
        "__lazyloading",
        "__os_feature_list",
        "__root_origin",
        "__sequence_num",
        "__support_arm",
        "__whole_image",
        "__system_support_market",
        "__is_offshelved",
        "__system__cmkid",
        "__account_code",
        "__image_displayname",
        "__support_agent_list",
        "os_shutdown_timeout",
    }
)
# Yes/no attributes. IMS documents "true"/"false" and returns "True"/"False" and JSON
# booleans too (the __lazyloading reference accepts all four spellings).
# (every __support_* flag too: see is_boolean)
BOOLEAN = frozenset(
    {
        "hw_vif_multiqueue_enabled",
        "__is_config_init",
        "__isregistered",
        "__lazyloading",
        "__system_support_market",
        "__whole_image",
        "protected",
        "deleted",
    }
)
# Whole numbers, which IMS returns as numbers (min_ram, min_disk) or as text (max_ram).
WHOLE_NUMBER = frozenset({"min_ram", "max_ram", "min_disk", "size", "virtual_size", "__image_size"})


def is_boolean(key: str) -> bool:
    """A yes/no attribute: a known one, or any ``__support_*`` flag IMS adds later."""
    return key in BOOLEAN or (key.startswith("__support_") and not key.endswith("_type"))


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
    if key in WHOLE_NUMBER:
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        digits = text.strip()
        if digits.isascii() and digits.isdigit():  # as text: int() refuses 4,300+ digits
            return digits.lstrip("0") or "0"
    return text


def same_value(key: str, current: Any, wanted: Any) -> bool:
    """Whether an image holding ``current`` already has ``wanted`` for attribute ``key``."""
    return canonical(key, current) == canonical(key, wanted)
