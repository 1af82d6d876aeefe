"""Policy loading and pure evaluation (no I/O): verdicts, names, the minimal patch."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imsguard.evaluate import evaluate, plan_patch
from imsguard.events import is_image_name
from imsguard.naming import normalize_name
from imsguard.policy import PolicyError, load_policy, parse_policy
from imsguard.rules.base import KEBAB_CASE
from imsguard.settings import DEFAULT_POLICY

PROJECT = "0b1e494e2660441a957313163095fe5c"
SAMPLE = json.loads(
    (Path(__file__).parents[1] / "tools/imsguard_tools/samples/example-image.json").read_text()
)


@pytest.fixture(scope="module")
def default_policy():
    return load_policy(DEFAULT_POLICY)


def image(**attrs):
    base = copy.deepcopy(SAMPLE)
    base.update(attrs)
    return {k: v for k, v in base.items() if v is not ...}


def test_sample_image_needs_rename_and_uefi(default_policy):
    decision = evaluate(default_policy, image(), PROJECT)

    assert decision.operations == (
        {"op": "replace", "path": "/name", "value": "ims-test"},
        {"op": "replace", "path": "/hw_firmware_type", "value": "uefi"},
    )


def test_missing_attributes_are_added_not_replaced(default_policy):
    decision = evaluate(
        default_policy,
        image(name="web", hw_firmware_type=..., hw_vif_multiqueue_enabled=...),
        PROJECT,
    )

    assert decision.operations == (
        {"op": "add", "path": "/hw_firmware_type", "value": "uefi"},
        {"op": "add", "path": "/hw_vif_multiqueue_enabled", "value": "true"},
    )


def test_null_attribute_is_added(default_policy):
    decision = evaluate(default_policy, image(name="web", hw_firmware_type=None), PROJECT)

    assert decision.operations == ({"op": "add", "path": "/hw_firmware_type", "value": "uefi"},)


def test_applying_the_plan_leaves_nothing_to_do(default_policy):
    before = image(name="My Web_Server!!", hw_vif_multiqueue_enabled="false")
    after = dict(before)
    for op in evaluate(default_policy, before, PROJECT).operations:
        after[op["path"][1:]] = op["value"]

    assert after["name"] == "my-web-server"
    assert evaluate(default_policy, after, PROJECT).operations == ()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ims_test", "ims-test"),
        ("Ubuntu 22.04 Web", "ubuntu-22-04-web"),
        ("--a__b--", "a-b"),
        ("already-fine", "already-fine"),
        ("___", ""),
        ("镜像", "jing-xiang"),  # transliterated, never dropped
        ("Ünïcödé Ímage", "unicode-image"),
        ("Web服务器_01", "web-fu-wu-qi-01"),
    ],
)
def test_normalize_name(name, expected):
    assert normalize_name(name) == expected


@given(st.text(max_size=300))
def test_normalized_names_are_valid_and_stable(name):
    fixed = normalize_name(name)
    if fixed:
        assert is_image_name(fixed)
        assert len(fixed) <= 128
        assert normalize_name(fixed) == fixed


def test_name_that_normalizes_to_nothing_is_reported_not_renamed(default_policy):
    decision = evaluate(default_policy, image(name="___"), PROJECT)

    verdict = decision.verdicts[0]
    assert verdict.status == "violation" and not verdict.fixable
    assert "no valid name" in verdict.reason
    assert all(op["path"] != "/name" for op in decision.operations)


def test_uefi_is_never_set_on_an_os_that_cannot_boot_it(default_policy):
    decision = evaluate(default_policy, image(__os_version="Ubuntu 12.04 server 64bit"), PROJECT)

    uefi = next(v for v in decision.verdicts if v.rule == "uefi-boot")
    assert uefi.status == "violation" and not uefi.fixable
    assert "OS not UEFI-capable" in uefi.reason
    assert all(op["path"] != "/hw_firmware_type" for op in decision.operations)


@pytest.mark.parametrize(
    "os_version",
    [
        "Ubuntu 22.04 server 64bit",
        "Debian GNU/Linux 11.3.0 64bit",
        "EulerOS 2.5 64bit",
        "openEuler 22.03 64bit",
    ],
)
def test_uefi_capable_versions_get_uefi(default_policy, os_version):
    platform = os_version.split()[0]
    decision = evaluate(
        default_policy, image(__os_version=os_version, __platform=platform), PROJECT
    )

    assert {"op": "replace", "path": "/hw_firmware_type", "value": "uefi"} in decision.operations


def test_boot_and_nic_rules_skip_non_system_disk_images(default_policy):
    # ISO images are not system disks: no boot mode or NIC settings for them
    decision = evaluate(default_policy, image(name="x", virtual_env_type="IsoImage"), PROJECT)

    assert {v.rule: v.status for v in decision.verdicts}["uefi-boot"] == "not_applicable"


def test_match_is_case_insensitive(default_policy):
    decision = evaluate(default_policy, image(name="x", __platform="UBUNTU"), PROJECT)

    assert {v.rule: v.status for v in decision.verdicts}["uefi-boot"] == "violation"


@pytest.mark.parametrize(
    ("attrs", "scope"),
    [
        ({"__imagetype": "gold"}, "not_applicable"),
        ({"__imagetype": "shared"}, "not_applicable"),
        ({"owner": "ffffffffffffffffffffffffffffffff"}, "not_applicable"),
        ({"status": "saving"}, "deferred"),
        ({"status": "killed"}, "not_applicable"),
        ({"protected": True}, "not_applicable"),
        ({"virtual_env_type": "DataImage"}, "not_applicable"),
    ],
)
def test_out_of_scope_images_get_no_operations(default_policy, attrs, scope):
    decision = evaluate(default_policy, image(**attrs), PROJECT)

    assert decision.scope == scope
    assert decision.operations == ()


def test_numbers_compare_as_strings():
    policy = parse_policy(
        {"version": 1, "rules": [{"name": "ram", "kind": "set", "set": {"min_ram": "1024"}}]}
    )

    assert evaluate(policy, image(name="x", min_ram=1024), PROJECT).operations == ()
    assert plan_patch(image(min_ram=0), {"min_ram": "1024"}) == (
        {"op": "replace", "path": "/min_ram", "value": "1024"},
    )


def test_os_version_pattern_and_report_only_names():
    policy = parse_policy(
        {
            "version": 1,
            "rules": [
                {"name": "names", "kind": "name", "pattern": "^img-", "fix": "report"},
                {
                    "name": "old-ubuntu",
                    "kind": "set",
                    "match": {"os_version": r"^Ubuntu 14\."},
                    "set": {"__description": "legacy"},
                },
            ],
        }
    )

    decision = evaluate(policy, image(), PROJECT)

    assert decision.operations == ({"op": "replace", "path": "/__description", "value": "legacy"},)
    assert "only reports" in decision.verdicts[0].reason


BAD_POLICIES = [
    ({"version": 2, "rules": []}, ["field version", "field rules"]),
    (
        {"version": 1, "rules": [{"name": "a", "kind": "set", "set": {"hw_firmware_type": "efi"}}]},
        ["rule 'a' (rules[0]), field set", "'bios' or 'uefi'"],
    ),
    (
        {
            "version": 1,
            "rules": [{"name": "q", "kind": "set", "set": {"hw_vif_multiqueue_enabled": True}}],
        },
        ["rule 'q'", 'write "true" in quotes'],
    ),
    (
        {"version": 1, "rules": [{"name": "p", "kind": "set", "set": {"status": "active"}}]},
        ["rule 'p'", "managed by IMS"],
    ),
    (
        {"version": 1, "rules": [{"name": "p", "kind": "set", "set": {"Bad/Path": "x"}}]},
        ["rule 'p'", "not an attribute name"],
    ),
    (
        {"version": 1, "rules": [{"name": "r", "kind": "name", "pattern": "(unclosed"}]},
        ["rule 'r' (rules[0]), field pattern", "invalid regular expression"],
    ),
    (
        {"version": 1, "rules": [{"name": "m", "kind": "set", "set": {"min_ram": "lots"}}]},
        ["rule 'm'", "whole number"],
    ),
    (
        {
            "version": 1,
            "rules": [
                {"name": "u", "kind": "set", "set": {"x": "1"}, "match": {"platfrom": "Ubuntu"}}
            ],
        },
        ["rule 'u' (rules[0]), field match.platfrom", "Extra inputs"],
    ),
    ({"version": 1, "rules": [{"name": "k", "kind": "rename"}]}, ["rule 'k'", "kind"]),
    ({"version": 1, "rules": [{"name": "Not Kebab", "kind": "name"}]}, ["field name"]),
    (
        {"version": 1, "rules": [{"name": "a", "kind": "name"}, {"name": "a", "kind": "name"}]},
        ["two rules are named 'a'"],
    ),
    (
        {
            "version": 1,
            "rules": [
                {"name": "a", "kind": "set", "set": {"hw_firmware_type": "uefi"}},
                {"name": "b", "kind": "set", "set": {"hw_firmware_type": "bios"}},
            ],
        },
        ["rules 'a' and 'b' set hw_firmware_type to different values"],
    ),
    (
        {"version": 1, "rules": [{"name": "d", "kind": "set", "set": {"__description": "<b>"}}]},
        ["rule 'd'", "__description"],
    ),
    ({"version": 1, "rules": "none"}, ["field rules"]),
    (
        {"version": 1, "rules": [{"name": "m", "kind": "set", "set": {"min_ram": "01024"}}]},
        ["rule 'm'", "whole number"],
    ),
    (
        {
            "version": 1,
            "rules": [{"name": "e", "kind": "set", "set": {"x": "1"}, "match": {"platform": None}}],
        },
        ["rule 'e' (rules[0]), field match.platform: empty; give a value"],
    ),
    (
        {
            "version": 1,
            "rules": [{"name": "e", "kind": "set", "set": {"x": "1"}, "match": {"os_type": []}}],
        },
        ["field match.os_type: empty"],
    ),
    (
        {"version": 1, "rules": [{"name": "n", "kind": "set", "set": {"foo\n": "1"}}]},
        ["rule 'n'", "is not an attribute IMS lets a PATCH change"],
    ),
    (["not", "a", "mapping"], ["must be a mapping"]),
]


@pytest.mark.parametrize(("document", "words"), BAD_POLICIES)
def test_load_errors_name_rule_and_field(document, words):
    with pytest.raises(PolicyError) as error:
        parse_policy(document)

    text = str(error.value)
    for word in words:
        assert word in text


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: a\n    kind: set\n"
        "    set: {hw_firmware_type: uefi, hw_firmware_type: bios}\n"
    )

    with pytest.raises(PolicyError, match="duplicate key 'hw_firmware_type'") as error:
        load_policy(path)
    assert "dup.yaml" in str(error.value) and "line 5" in str(error.value)


def test_unreadable_and_invalid_yaml_files(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nrules: [\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(broken)


def test_default_policy_rules(default_policy):
    names, uefi, multiqueue = default_policy.rules
    assert (names.kind, names.pattern, names.fix) == ("name", KEBAB_CASE, "normalize")
    assert uefi.set == {"hw_firmware_type": "uefi"}
    assert uefi.match.platform == ["Ubuntu", "Debian", "EulerOS", "openEuler"]
    assert multiqueue.set == {"hw_vif_multiqueue_enabled": "true"}
    assert multiqueue.match.os_type == ["Linux"]
    for rule in (uefi, multiqueue):
        assert rule.match.virtual_env_type == ["FusionCompute", "Ironic"]
