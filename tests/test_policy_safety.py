"""Issue 11: typos never reach images, patterns cannot stall the function, names keep their
characters, bounds and template fields teams need. Through the handler and the real SDK
against the fake IMS where images are reached."""

from __future__ import annotations

import json
import time

import pytest

from helpers import use_policy
from imsguard.app import handler
from imsguard.evaluate import evaluate
from imsguard.policy import PolicyError, parse_policy
from imsguard_tools.testing import FakeIms

PROJECT = "0b1e494e2660441a957313163095fe5c"


@pytest.fixture
def fleet_with_one_to_fix():
    """A project holding one image whose name needs fixing, and nothing else."""
    with FakeIms(project_id=PROJECT) as fake:
        yield (
            fake,
            fake.add_image(
                {"name": "Web_02", "hw_firmware_type": "uefi", "hw_vif_multiqueue_enabled": "true"}
            ),
        )


def rule_policy(rule: dict, **top) -> dict:
    return {"version": 1, "rules": [{"name": "r", **rule}], **top}


def problems(document: dict) -> str:
    with pytest.raises(PolicyError) as error:
        parse_policy(document)
    return "; ".join(error.value.problems)


# -- 1. attribute typos ----------------------------------------------------------------------


def test_an_attribute_typo_is_refused_with_a_suggestion():
    said = problems(rule_policy({"kind": "set", "set": {"hw_firmware_typ": "uefi"}}))

    assert said == (
        "rule 'r' (rules[0]), field set: 'hw_firmware_typ' is not an attribute "
        "IMS lets a PATCH change; did you mean 'hw_firmware_type'?; an extension "
        "attribute of your own must be listed in custom_attributes first"
    )


def test_a_typo_is_reported_with_every_other_problem():
    said = problems(
        {
            "version": 1,
            "rules": [
                {
                    "name": "boot",
                    "kind": "set",
                    "match": {"platform": "Openeular"},
                    "set": {"hw_firmware_typ": "uefi"},
                },
                {"name": "names", "kind": "name", "pattern": "^(web)-\\1$"},
            ],
        }
    )

    assert "did you mean 'openEuler'?" in said and "did you mean 'hw_firmware_type'?" in said
    assert "cannot be run in linear time" in said


def test_a_typo_never_reaches_an_image(fake, context, tmp_path):
    use_policy(
        context,
        tmp_path,
        "version: 1\nrules:\n  - name: boot\n    kind: set\n    set: {hw_firmware_typ: uefi}\n",
    )

    with pytest.raises(Exception, match="hw_firmware_typ"):
        handler({"action": "sweep"}, context)

    assert fake.patches == []


def test_declared_extension_attributes_are_written():
    policy = parse_policy(
        rule_policy({"kind": "set", "set": {"owner_team": "web"}}, custom_attributes=["owner_team"])
    )

    decision = evaluate(
        policy,
        {
            "id": "x",
            "owner": PROJECT,
            "__imagetype": "private",
            "status": "active",
            "virtual_env_type": "FusionCompute",
        },
        PROJECT,
    )
    assert decision.operations == ({"op": "add", "path": "/owner_team", "value": "web"},)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("hw_firmware_typo", "too close to IMS's own 'hw_firmware_type'"),
        ("min_rams", "too close to IMS's own 'min_ram'"),
        ("__support_kvmm", "names starting with __ are IMS's own"),
        ("hw_firmware_type", "is documented by IMS: set it without declaring it"),
        ("status", "managed by IMS"),
        ("Owner-Team", "not an extension attribute name IMS takes"),
    ],
)
def test_custom_attributes_never_shadow_documented_ones(name, words):
    said = problems(rule_policy({"kind": "name"}, custom_attributes=[name]))

    assert "field custom_attributes" in said and words in said


# -- 2. unknown match values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        (
            "platform",
            "Openeular",
            "'Openeular' is not a platform IMS documents; did you mean 'openEuler'?",
        ),
        ("platform", "Ubunto", "did you mean 'Ubuntu'?"),
        ("os_type", "Linx", "did you mean 'Linux'?"),
        ("virtual_env_type", "FusionCompte", "did you mean 'FusionCompute'?"),
        ("imagetype", "privat", "did you mean 'private'?"),
        ("architecture", "amd64", "is not an architecture"),
        ("os_bit", "46", "is not an os_bit"),
    ],
)
def test_match_values_ims_never_holds_are_refused(field, value, words):
    said = problems(
        rule_policy({"kind": "set", "set": {"__support_kvm": "true"}, "match": {field: value}})
    )

    assert f"field match.{field}" in said and words in said


@pytest.mark.parametrize("spelling", ["Red Hat", "RedHat", "redhat", "RED HAT"])
def test_documented_platform_spellings_match_one_another(spelling):
    policy = parse_policy(
        rule_policy(
            {"kind": "set", "set": {"__support_kvm": "true"}, "match": {"platform": spelling}}
        )
    )
    image = {
        "id": "x",
        "owner": PROJECT,
        "__imagetype": "private",
        "status": "active",
        "__platform": "Red Hat" if spelling.islower() else "RedHat",
    }

    assert evaluate(policy, image, PROJECT).verdicts[0].status == "violation"


# -- 3. patterns cannot stall -------------------------------------------------------------------


def test_a_backtracking_pattern_runs_in_linear_time(fake, context, tmp_path):
    use_policy(
        context,
        tmp_path,
        "version: 1\nrules:\n  - name: names\n    kind: name\n"
        "    pattern: '^([a-z0-9]+-?)+$'\n    fix: report\n",
    )
    image = fake.add_image({"name": "a" * 120 + "!"})

    started = time.perf_counter()
    result = handler({"image_id": image["id"]}, context)

    assert time.perf_counter() - started < 2  # Python's engine: longer than the universe
    assert result["results"][0]["rules"][0]["verdict"] == "violation"


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        (r"^(a)\1$", "cannot be run in linear time (RE2: invalid escape sequence: \\1)"),
        ("^(?=web)", "cannot be run in linear time (RE2: invalid perl operator: (?=)"),
        ("^(?<!x)web", "cannot be run in linear time"),
        ("(unclosed", "invalid regular expression '(unclosed'"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_at_load(pattern, words):
    said = problems(rule_policy({"kind": "name", "pattern": pattern, "fix": "report"}))

    assert "field pattern" in said and words in said
    said = problems(
        rule_policy({"kind": "set", "set": {"__support_kvm": "true"}, "match": {"name": pattern}})
    )
    assert "field match.name" in said


# -- 4. renames keep their characters ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "pattern", "fixed"),
    [
        ("Ünïcödé Ímage", "^[a-z0-9]+(-[a-z0-9]+)*$", "unicode-image"),
        ("Web服务器_01", "^[a-z0-9]+(-[a-z0-9]+)*$", "web-fu-wu-qi-01"),
        ("Web服务器_01", "^[a-z0-9\u4e00-\u9fff]+(-[a-z0-9\u4e00-\u9fff]+)*$", "web服务器-01"),
    ],
)
def test_renames_transliterate_and_keep_what_the_pattern_allows(
    fake, context, tmp_path, name, pattern, fixed
):
    use_policy(
        context,
        tmp_path,
        f"version: 1\nrules:\n  - name: names\n    kind: name\n    pattern: '{pattern}'\n",
    )
    image = fake.add_image(
        {"name": name, "hw_firmware_type": "uefi", "hw_vif_multiqueue_enabled": "true"}
    )

    handler({"image_id": image["id"]}, context)

    assert fake.patches[0].body == [{"op": "replace", "path": "/name", "value": fixed}]
    assert fake.images[image["id"]]["name"] == fixed


# -- 7. bounds ------------------------------------------------------------------------------------


BOUNDS_POLICY = """\
version: 1
rules:
  - name: memory
    kind: set
    set:
      min_ram: {at_least: "2048"}
      max_ram: {at_most: "65536"}
"""


def test_a_bound_is_held_by_any_value_within_it_and_fixed_to_the_bound(fake, context, tmp_path):
    use_policy(context, tmp_path, BOUNDS_POLICY)
    low = fake.add_image({"min_ram": 1024, "max_ram": "131072"})
    high = fake.add_image({"min_ram": 4096, "max_ram": "32768"})  # never lowered

    result = handler({"image_ids": [low["id"], high["id"]]}, context)

    assert [r["outcome"] for r in result["results"]] == ["updated", "compliant"]
    assert fake.patches[0].body == [
        {"op": "replace", "path": "/min_ram", "value": "2048"},
        {"op": "replace", "path": "/max_ram", "value": "65536"},
    ]
    assert (
        "min_ram is '1024', should be at least 2048" in result["results"][0]["rules"][0]["reason"]
    )


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"at_least": 2048}, "at_least must be a whole number as a string"),
        ({"at_leest": "2048"}, "give at_least, at_most or both"),
        ({"at_least": "4096", "at_most": "1024"}, "at_least 4096 is above at_most 1024"),
        ({}, "give at_least, at_most or both"),
    ],
)
def test_bad_bounds_are_refused(value, words):
    assert words in problems(rule_policy({"kind": "set", "set": {"min_ram": value}}))


def test_bounds_are_for_whole_number_attributes_only():
    said = problems(rule_policy({"kind": "set", "set": {"__description": {"at_least": "1"}}}))

    assert "bounds (at_least, at_most) are for whole-number attributes" in said


# -- 8. template fields -------------------------------------------------------------------------


TEMPLATE_POLICY = """\
version: 1
rules:
  - name: names
    kind: name
    pattern: '^[a-z]+-[0-9]+(-[0-9]+)*-[a-z]+$'
    template: '{platform}-{os_version_number}-{tag:team}'
"""


def test_tag_and_version_number_fields(fake, context, tmp_path):
    use_policy(context, tmp_path, TEMPLATE_POLICY)
    tagged = fake.add_image(
        {
            "name": "X",
            "tags": ["team=web"],
            "hw_firmware_type": "uefi",
            "hw_vif_multiqueue_enabled": "true",
        }
    )
    untagged = fake.add_image({"name": "Y"})

    result = handler({"image_ids": [tagged["id"], untagged["id"]]}, context)

    assert fake.patches[0].body == [{"op": "replace", "path": "/name", "value": "ubuntu-22-04-web"}]
    (rule,) = result["results"][1]["rules"]
    assert "the image has no tag 'team'" in rule["reason"]
    assert len(fake.patches) == 1


def test_a_rendered_name_that_cannot_be_used_is_shown_with_why():
    policy = parse_policy(
        rule_policy(
            {"kind": "name", "pattern": "^img-", "template": "{platform} {os_version_number}"}
        )
    )
    image = {
        "id": "x",
        "owner": PROJECT,
        "__imagetype": "private",
        "status": "active",
        "name": "Y",
        "__platform": "Ubuntu",
        "__os_version": "Ubuntu 22.04 server 64bit",
    }

    (verdict,) = evaluate(policy, image, PROJECT).verdicts

    assert verdict.reason == (
        "name 'Y' does not match '^img-', and template makes no valid name that matches it "
        "('Ubuntu 22.04' does not match '^img-'; 'ubuntu-22-04' does not match '^img-'); "
        "not renamed"
    )


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{tag}", "name the tag's key"),
        ("{tag:a=b}", "name the tag's key"),
        ("{os_version_number:x}", "only created (a strftime format) and tag (a tag key) take one"),
    ],
)
def test_bad_template_fields_are_refused(template, words):
    assert words in problems(rule_policy({"kind": "name", "template": template}))


# -- 9. every change can be undone --------------------------------------------------------


def test_updated_and_would_update_entries_say_what_each_attribute_held(fake, context, capsys):
    image = fake.add_image({"name": "Web_01", "hw_firmware_type": "bios"})  # multiqueue absent

    result = handler({"image_id": image["id"]}, context)
    dry = handler(
        {"image_ids": [fake.add_image({"name": "Db_01"})["id"]], "dry_run": True}, context
    )

    assert result["results"][0]["before"] == {
        "name": "Web_01",
        "hw_firmware_type": "bios",
        "hw_vif_multiqueue_enabled": None,
    }
    assert dry["results"][0]["outcome"] == "would_update"
    assert dry["results"][0]["before"]["name"] == "Db_01"
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(line.get("before") == result["results"][0]["before"] for line in logged)


def test_sweep_reports_carry_before_in_results_and_changed(fleet_with_one_to_fix, context):
    _, image = fleet_with_one_to_fix

    report = handler({"action": "sweep"}, context)

    (changed,) = report["changed"]
    assert changed["before"] == {"name": "Web_02"}
    assert next(r for r in report["results"] if r["image_id"] == image["id"])["before"] == {
        "name": "Web_02"
    }


def test_needs_attention_lists_a_cannot_fix_verdict_whatever_the_outcome(
    fleet_with_one_to_fix, context, tmp_path
):
    fake, image = fleet_with_one_to_fix
    fake.images[image["id"]].update(
        __os_version="Ubuntu 12.04 server 64bit", hw_firmware_type="bios"
    )
    # the name is fixed (updated) but UEFI cannot be: a person must look at it

    report = handler({"action": "sweep"}, context)

    assert report["summary"] == {"updated": 1}
    assert [a["image_id"] for a in report["needs_attention"]] == [image["id"]]


@pytest.fixture
def gateway(fake):
    from imsguard.context import Credentials
    from imsguard.ims import gateway_for

    return gateway_for(None, fake.endpoint, PROJECT, Credentials("AK", "SK"))


def test_revert_restores_what_each_attribute_held(fake, context, gateway):
    from imsguard_tools.revert import changes_in, revert

    image = fake.add_image({"name": "Web_01", "hw_firmware_type": "bios"})
    report = handler({"image_id": image["id"]}, context)  # renamed, uefi, multiqueue added
    fake.reset_calls()

    (undo,) = changes_in(json.loads(json.dumps(report)))
    result = revert(undo, gateway, dry_run=False)

    assert result["outcome"] == "reverted"
    assert fake.patches[0].body == [
        {"op": "replace", "path": "/name", "value": "Web_01"},
        {"op": "replace", "path": "/hw_firmware_type", "value": "bios"},
        {"op": "remove", "path": "/hw_vif_multiqueue_enabled"},
    ]
    restored = fake.images[image["id"]]
    assert (restored["name"], restored["hw_firmware_type"]) == ("Web_01", "bios")
    assert "hw_vif_multiqueue_enabled" not in restored


def test_revert_leaves_an_image_changed_since_alone(fake, context, gateway):
    from imsguard_tools.revert import changes_in, revert

    image = fake.add_image({"name": "Web_01"})
    report = handler({"image_id": image["id"]}, context)
    fake.images[image["id"]]["name"] = "renamed-by-a-person"
    fake.reset_calls()

    (undo,) = changes_in(report)
    result = revert(undo, gateway, dry_run=False)

    assert (result["outcome"], fake.patches) == ("changed_since", [])
    assert "name changed since imsguard set them" in result["reason"]


def test_a_dry_run_revert_sends_nothing(fake, context, gateway):
    from imsguard_tools.revert import changes_in, revert

    image = fake.add_image({"name": "Web_01"})
    (undo,) = changes_in(handler({"image_id": image["id"]}, context))
    fake.reset_calls()

    result = revert(undo, gateway, dry_run=True)

    assert result["outcome"] == "would_revert" and result["operations"]
    assert fake.patches == []


@pytest.mark.parametrize(
    ("report", "words"),
    [
        ([], "a report is a JSON object"),
        (
            {
                "results": [
                    {
                        "image_id": "33ad552d-1149-471c-8190-ff6776174a00",
                        "outcome": "updated",
                        "operations": [{"op": "add", "path": "/x", "value": "1"}],
                    }
                ]
            },
            "lacks an image id, its operations or its before values",
        ),
        (
            {
                "results": [
                    {
                        "image_id": "33ad552d-1149-471c-8190-ff6776174a00",
                        "outcome": "updated",
                        "operations": [{"op": "add", "path": "/x", "value": "1"}],
                        "before": {},
                    }
                ]
            },
            "has no before value",
        ),
    ],
)
def test_reports_that_cannot_be_reverted_are_refused(report, words):
    from imsguard_tools.revert import changes_in

    with pytest.raises(ValueError, match=words):
        changes_in(report)


def test_an_absent_attribute_is_said_to_be_not_set():
    policy = parse_policy(
        rule_policy({"kind": "set", "set": {"hw_vif_multiqueue_enabled": "true"}})
    )
    image = {
        "id": "x",
        "owner": PROJECT,
        "__imagetype": "private",
        "status": "active",
        "virtual_env_type": "FusionCompute",
    }

    (verdict,) = evaluate(policy, image, PROJECT).verdicts

    assert verdict.reason == "hw_vif_multiqueue_enabled is not set, should be 'true'"


@pytest.mark.parametrize(
    ("key", "current", "wanted", "fix"),
    [
        ("max_ram", "0", {"at_least": "4096"}, None),  # 0 is no maximum: never lowered
        ("max_ram", "0", {"at_most": "65536"}, "65536"),  # no maximum breaks an upper bound
        ("max_ram", 0, {"at_least": "1024", "at_most": "65536"}, "65536"),
        ("min_ram", 0, {"at_least": "1024"}, "1024"),  # min_ram 0 is zero
        ("min_ram", None, {"at_least": "1024"}, "1024"),  # absent: the minimum is set
        ("min_ram", None, {"at_most": "4096"}, None),  # absent: nothing to lower
        ("min_ram", "lots", {"at_least": "1024"}, "1024"),  # not a number: the minimum is set
        ("min_ram", "9" * 5000, {"at_most": "4096"}, "4096"),  # huge, never int()-ed
        ("min_ram", "²", {"at_least": "2"}, "2"),
        ("min_ram", 2048.0, {"at_least": "1024", "at_most": "4096"}, None),
    ],
)
def test_bound_fixes_for_every_kind_of_value(key, current, wanted, fix):
    from imsguard.rules.set import Bound, fix_value

    assert fix_value(key, current, Bound(**{k: int(v) for k, v in wanted.items()})) == fix


@pytest.mark.parametrize(
    ("min_ram", "max_ram", "refused"),
    [
        ({"at_least": "8192"}, {"at_most": "4096"}, True),
        ({"at_least": "8192"}, "4096", True),
        ("8192", {"at_most": "4096"}, True),
        ({"at_least": "2048"}, {"at_most": "4096"}, False),
        ({"at_least": "8192"}, "0", False),  # no maximum
        ({"at_most": "8192"}, {"at_most": "4096"}, False),  # min_ram may be anything up to 8192
    ],
)
def test_memory_bounds_that_cannot_both_hold_are_refused(min_ram, max_ram, refused):
    document = {
        "version": 1,
        "rules": [
            {"name": "a", "kind": "set", "set": {"min_ram": min_ram}},
            {"name": "b", "kind": "set", "set": {"max_ram": max_ram}},
        ],
    }

    if refused:
        assert "is below min_ram" in problems(document)
    else:
        parse_policy(document)


def test_imss_own_attribute_names_are_known_to_imsguard():
    """Every attribute of the SDK's image model is either patchable or IMS's own, so none
    can be claimed as an extension attribute of a team."""
    from huaweicloudsdkims.v2.model.image_info import ImageInfo

    from imsguard.attributes import PATCHABLE, SYSTEM_ATTRIBUTES

    assert set(ImageInfo.attribute_map.values()) - PATCHABLE - SYSTEM_ATTRIBUTES == set()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("__system_support_market", "managed by IMS"),
        ("os_shutdown_timeout", "managed by IMS"),
        ("__my_flag", "names starting with __ are IMS's own"),
        ("hw_firmwar_typ", "too close to IMS's own 'hw_firmware_type'"),  # two edits away
        ("min_rams_x", None),  # three edits from min_ram: a name of its own
    ],
)
def test_custom_attributes_that_are_or_resemble_imss_own(name, words):
    document = rule_policy({"kind": "name"}, custom_attributes=[name])

    if words is None:
        parse_policy(document)
    else:
        assert words in problems(document)


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("__support_kvmm", "did you mean '__support_kvm'?"),
        ("owner_tem", "did you mean 'owner_team'?"),  # a declared name, not IMS's 'owner'
    ],
)
def test_undeclared_names_get_suggestions_they_can_use(key, words):
    said = problems(
        rule_policy({"kind": "set", "set": {key: "x"}}, custom_attributes=["owner_team"])
    )

    assert words in said


def test_revert_checks_every_attribute_not_only_the_first(fake, context, gateway):
    from imsguard_tools.revert import changes_in, revert

    image = fake.add_image({"name": "Web_01", "hw_firmware_type": "bios"})
    (undo,) = changes_in(handler({"image_id": image["id"]}, context))
    fake.images[image["id"]]["hw_firmware_type"] = "bios"  # the second attribute, by hand
    fake.reset_calls()

    result = revert(undo, gateway, dry_run=False)

    assert result["outcome"] == "changed_since" and "hw_firmware_type" in result["reason"]
    assert fake.patches == []


def test_revert_from_the_functions_log_lines(fake, context, gateway, capsys):
    from imsguard_tools.revert import changes_in, read_report, revert

    image = fake.add_image({"name": "Web_01"})
    handler({"image_id": image["id"]}, context)
    lines = capsys.readouterr().out  # what LTS keeps of an enforcing timer sweep

    (undo,) = changes_in(read_report(lines))

    assert revert(undo, gateway, dry_run=False)["outcome"] == "reverted"
    assert fake.images[image["id"]]["name"] == "Web_01"


@pytest.mark.parametrize(
    ("report", "words"),
    [
        ({"summary": {"updated": 3}, "results": [], "changed": []}, "lists 0 of the 3 images"),
        (
            {
                "results": [
                    {
                        "image_id": "33ad552d-1149-471c-8190-ff6776174a00",
                        "outcome": "updated",
                        "operations": [{"op": "add", "path": "/x"}],
                        "before": {"x": None},
                    }
                ]
            },
            "is not one imsguard sends",
        ),
    ],
)
def test_reports_that_would_be_reverted_wrongly_or_in_part_are_refused(report, words):
    from imsguard_tools.revert import changes_in

    with pytest.raises(ValueError, match=words):
        changes_in(report)


# -- the regular-expression engine ------------------------------------------------------------


def finishes_within(seconds: float, work) -> bool:
    """Whether ``work()`` ends in time (a daemon thread: a stalled engine cannot hang the
    suite, the test fails instead)."""
    import threading

    done = threading.Event()
    threading.Thread(target=lambda: (work(), done.set()), daemon=True).start()
    return done.wait(seconds)


@pytest.mark.parametrize(
    "name", ["a" * 40 + "!", "a-" * 40 + "!", "a" * 10_000 + "!", "a-" * 5_000 + "--!"]
)
def test_adversarial_names_against_nested_quantifiers_end_at_once(name):
    policy = parse_policy(
        rule_policy(
            {"kind": "name", "pattern": "^([a-z0-9]+-?)+$"},
        )
    )
    image = {
        "id": "x",
        "owner": PROJECT,
        "__imagetype": "private",
        "status": "active",
        "name": name,
    }

    assert finishes_within(2.0, lambda: evaluate(policy, image, PROJECT))  # Python's re: never


PATTERNS_AND_NAMES = [
    (r"^[\w-]+$", ["Web服务器", "web-01", "a b", "Ünïcödé", "x!"]),
    (r"^\d+$", ["123", "٣٤", "1.2", ""]),
    (r"^\w+\Z", ["abc", "abc\n", "é"]),
    (r"^\S+$", ["a b", "a\u3000b", "ab"]),
    (r"\s", ["a\u3000b", "ab", "a\tb"]),
    (r"^[^\d_]+$", ["abc", "ab1", "é"]),
    (r"^Ubuntu 22\b", ["Ubuntu 22.04", "Ubuntu 220"]),
    (r"^[a-z\u4e00-\u9fff]+$", ["ab镜", "AB"]),
    (r"\\u4e00", ["\\u4e00", "\u4e00"]),  # an escaped backslash stays a backslash
    (r"(?i)^web", ["WEB-1", "xweb"]),
]


@pytest.mark.parametrize(("pattern", "names"), PATTERNS_AND_NAMES)
def test_patterns_match_in_re2_what_they_match_in_python(pattern, names):
    """Existing policies keep matching the same names: Python's \\w \\d \\s are Unicode."""
    import re

    from imsguard.patterns import search

    for name in names:
        assert search(pattern, name) == (re.search(pattern, name) is not None), (pattern, name)


def test_a_complemented_class_inside_brackets_is_refused_not_misread():
    said = problems(rule_policy({"kind": "name", "pattern": r"^[^\W\d]+$"}))

    assert "uses \\W inside [...]" in said


@pytest.mark.parametrize(
    ("os_version", "number"),
    [
        ("Ubuntu 22.04 server 64bit", "22.04"),
        ("Ubuntu 18.04.2 server 64bit", "18.04.2"),
        ("EulerOS 2.9 64bit", "2.9"),
        ("Debian GNU/Linux 12.0.0 64bit", "12.0.0"),
        ("Windows Server 2019 Standard 64bit", "2019"),
        ("CentOS 7.3 64bit", "7.3"),
        ("SUSE Linux Enterprise Server 15 SP1 64bit", "15"),
        ("Other(32 bit)", None),
        ("Huawei Cloud EulerOS 2.0 64bit", "2.0"),
        ("Fedora 39 64bit", "39"),
        ("", None),
    ],
)
def test_the_version_number_of_each_documented_spelling(os_version, number):
    from imsguard.naming import os_version_number

    assert os_version_number(os_version) == number


@pytest.mark.parametrize(
    ("tags", "wanted", "has", "value"),
    [
        (["team=web"], "team", True, "web"),
        (["team.web"], "team", True, "web"),  # images tagged the old way
        (["cost.center=fin"], "cost", False, None),  # the key is cost.center
        (["cost.center=fin"], "cost.center", True, "fin"),
        (["cost.center"], "cost.center", True, None),  # a key with a dot, no value
        (["cost.center"], "cost", True, "center"),  # or the old way: both readings hold
        (["cost.center.fin"], "cost.center=fin", True, "fin"),  # split at any dot
        (["cost.center.fin"], "cost", True, "center.fin"),
        (["cost.center"], "cost.center=fin", False, None),
        (["team"], "team", True, None),
        (["team=web"], "team=web", True, "web"),
        (["team=web"], "team=ops", False, "web"),
    ],
)
def test_tags_are_read_one_way_for_matching_and_for_templates(tags, wanted, has, value):
    from imsguard.match import has_tag, tag_value

    assert has_tag(tags, wanted) is has
    assert tag_value(tags, wanted.partition("=")[0]) == value


def test_platform_names_are_accepted_as_they_are_compared():
    parse_policy(
        rule_policy(
            {
                "kind": "set",
                "set": {"__support_kvm": "true"},
                "match": {"platform": ["OracleLinux", "red hat", "OPENEULER"]},
            }
        )
    )
