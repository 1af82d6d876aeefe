"""The attribute table: one row per IMS attribute, read by validation, evaluation, the
policy's JSON schema and (through value_problem and PATCHABLE) the fake IMS."""

from __future__ import annotations

import pytest

from imsguard import attributes
from imsguard.attributes import (
    BOOT_CRITICAL,
    PATCHABLE,
    SETTABLE,
    SYSTEM_ATTRIBUTES,
    TABLE,
    Attribute,
    stored_value,
    value_problem,
)
from imsguard.evaluate import evaluate
from imsguard.policy import Policy, PolicyError, parse_policy
from imsguard.rules.set import BOOT_CHECKS
from imsguard_tools.cases import complete_image

PROJECT = "0b1e494e2660441a957313163095fe5c"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("hw_firmware_type", "efi", "hw_firmware_type must be 'bios' or 'uefi', not 'efi'"),
        ("hw_firmware_type", "", "hw_firmware_type must be 'bios' or 'uefi', not ''"),
        ("__support_kvm", "True", "__support_kvm must be 'true' or 'false', not 'True'"),
        ("min_ram", "01024", "min_ram must be a whole number of MB as a string, not '01024'"),
        ("max_ram", "", "max_ram must be a whole number of MB as a string, not ''"),
        (
            "__description",
            "a<b",
            "__description must be at most 1024 characters without <, > or newlines",
        ),
        (
            "__description",
            "x" * 1025,
            "__description must be at most 1024 characters without <, > or newlines",
        ),
        ("enterprise_project_id", " ", "enterprise_project_id: an empty value"),
        (
            "enterprise_project_id",
            "x!",
            "enterprise_project_id must be 0 (default) or a UUID, not 'x!'",
        ),
        ("__support_kvm_gpu_type", " ", "__support_kvm_gpu_type: an empty value"),
        ("team.owner", "", "team.owner: an empty value"),  # an extension attribute
        ("__os_version", "x", "__os_version is managed by IMS and cannot be changed"),
    ],
)
def test_value_problem_says_why_ims_would_refuse(name, value, problem):
    assert value_problem(name, value) == problem


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("hw_firmware_type", "uefi"),
        ("hw_vif_multiqueue_enabled", "false"),
        ("max_ram", "0"),
        ("__description", ""),
        ("__description", "x" * 1024),
        ("enterprise_project_id", "0"),
        ("enterprise_project_id", "0b1e494e-2660-441a-9573-13163095fe5c"),
        ("team.owner", "web"),
    ],
)
def test_value_problem_accepts_what_ims_takes(name, value):
    assert value_problem(name, value) is None


def test_views_of_the_table():
    assert "name" in PATCHABLE and "name" not in SETTABLE  # set by its own rule kind
    assert {"hw_firmware_type", "min_ram", "__description"} <= SETTABLE
    assert not PATCHABLE & SYSTEM_ATTRIBUTES
    assert set(PATCHABLE) | set(SYSTEM_ATTRIBUTES) == set(TABLE)
    assert stored_value("min_ram", "2048") == 2048
    assert stored_value("max_ram", "2048") == "2048"


def test_every_boot_critical_attribute_has_a_safety_check():
    assert set(BOOT_CHECKS) == set(BOOT_CRITICAL)


def test_the_schema_lists_each_settable_attribute_with_its_values():
    schema = Policy.model_json_schema(by_alias=True)
    attributes_schema = schema["$defs"]["SetRule"]["properties"]["set"]

    listed = attributes_schema["properties"]
    assert set(listed) == set(SETTABLE)
    assert listed["hw_firmware_type"]["enum"] == ["bios", "uefi"]
    assert listed["__support_kvm"]["enum"] == ["true", "false"]
    assert listed["enterprise_project_id"]["pattern"].startswith("^(?:0|")
    assert "at_least" in listed["min_ram"]["anyOf"][1]["properties"]
    assert attributes_schema["additionalProperties"] == {"type": "string"}  # declared ones


# Adding an attribute is one row: validation, evaluation, the schema and the views follow.
NEW_ROW = Attribute("hw_example_mode", patchable=True, values=("fast", "safe"))


def test_a_new_row_is_validated_from_the_table(monkeypatch):
    monkeypatch.setitem(TABLE, NEW_ROW.name, NEW_ROW)
    rule = {"name": "example", "kind": "set", "set": {"hw_example_mode": "safe"}}

    parse_policy({"version": 1, "rules": [rule]})
    with pytest.raises(PolicyError, match="hw_example_mode must be 'fast' or 'safe', not 'slow'"):
        parse_policy({"version": 1, "rules": [{**rule, "set": {"hw_example_mode": "slow"}}]})
    assert NEW_ROW.name in PATCHABLE and NEW_ROW.name in SETTABLE
    schema = Policy.model_json_schema()["$defs"]["SetRule"]["properties"]["set"]
    assert schema["properties"][NEW_ROW.name] == {"type": "string", "enum": ["fast", "safe"]}


def test_a_new_system_disk_row_is_refused_on_other_images(monkeypatch):
    monkeypatch.setitem(TABLE, NEW_ROW.name, NEW_ROW._replace(system_disk_only=True))
    policy = parse_policy(
        {"version": 1, "rules": [{"name": "e", "kind": "set", "set": {NEW_ROW.name: "safe"}}]}
    )

    on_iso = evaluate(policy, complete_image({"virtual_env_type": "IsoImage"}, PROJECT), PROJECT)
    on_disk = evaluate(policy, complete_image({}, PROJECT), PROJECT)

    assert on_iso.operations == () and on_iso.verdicts[0].blocked
    assert on_disk.operations == ({"op": "add", "path": f"/{NEW_ROW.name}", "value": "safe"},)


def test_a_new_boot_critical_row_without_a_safety_check_is_never_changed(monkeypatch):
    monkeypatch.setitem(TABLE, NEW_ROW.name, NEW_ROW._replace(boot_critical=True))
    policy = parse_policy(
        {"version": 1, "rules": [{"name": "e", "kind": "set", "set": {NEW_ROW.name: "safe"}}]}
    )

    decision = evaluate(policy, complete_image({}, PROJECT), PROJECT)

    assert decision.operations == ()
    assert "no safety check" in decision.verdicts[0].reason


def test_the_module_keeps_no_second_list():
    """Every frozenset the module exposes is a view of the table."""
    for name in ("PATCHABLE", "SETTABLE", "SYSTEM_ATTRIBUTES", "DOCUMENTED", "BOUNDED"):
        assert not isinstance(getattr(attributes, name), frozenset)
