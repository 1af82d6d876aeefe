"""The policy language: matching, exclusions, exemptions, modes, templates, safety."""

from __future__ import annotations

from datetime import date

import pytest

from imsguard.evaluate import evaluate, plan
from imsguard.naming import render_template
from imsguard.policy import PolicyError, parse_policy
from imsguard_tools.cases import complete_image

PROJECT = "0b1e494e2660441a957313163095fe5c"
TODAY = date(2026, 11, 27)


def policy(*rules, **top):
    return parse_policy({"version": 1, "rules": list(rules), **top})


def image(**attrs):
    return complete_image(attrs, PROJECT)


def verdict(decision, rule):
    return next(v for v in decision.verdicts if v.rule == rule)


SET_DESCRIPTION = {"name": "describe", "kind": "set", "set": {"__description": "ok"}}


@pytest.mark.parametrize(
    ("match", "attrs", "applies"),
    [
        ({"os_bit": 64}, {"__os_bit": "64"}, True),
        ({"os_bit": "32"}, {"__os_bit": "64"}, False),
        ({"architecture": "arm"}, {"__support_arm": "true"}, True),
        ({"architecture": "x86"}, {"__support_arm": "true"}, False),
        ({"architecture": "x86"}, {}, True),
        ({"name": "^web-"}, {"name": "web-1"}, True),
        ({"name": "^web-"}, {"name": "api-1"}, False),
        ({"tags": ["team"]}, {"tags": ["team=web"]}, True),
        ({"tags": ["team"]}, {"tags": ["team.web"]}, True),  # tags set the old way
        ({"tags": ["team=web"]}, {"tags": ["team=api"]}, False),
        ({"tags": ["team", "env=prod"]}, {"tags": ["team=a"]}, False),
        ({"virtual_env_type": "bare_metal"}, {"virtual_env_type": "Ironic"}, True),
        ({"virtual_env_type": ["iso"]}, {"virtual_env_type": "FusionCompute"}, False),
        ({"imagetype": "private"}, {}, True),
        ({"os_type": "linux"}, {"__os_type": "Linux"}, True),
        ({"all": [{"platform": "Ubuntu"}, {"os_bit": "64"}]}, {}, True),
        ({"all": [{"platform": "Ubuntu"}, {"os_bit": "32"}]}, {}, False),
        ({"any": [{"platform": "Debian"}, {"os_bit": "64"}]}, {}, True),
        ({"any": [{"platform": "Debian"}, {"os_bit": "32"}]}, {}, False),
        ({"not": {"platform": "Ubuntu"}}, {}, False),
        ({"not": {"platform": "Debian"}}, {}, True),
        ({"any": [{"not": {"tags": ["a"]}}, {"tags": ["b"]}]}, {"tags": ["a"]}, False),
    ],
)
def test_match_conditions(match, attrs, applies):
    decision = evaluate(policy({**SET_DESCRIPTION, "match": match}), image(**attrs), PROJECT)

    assert (verdict(decision, "describe").status != "not_applicable") is applies


def test_exclude_leaves_an_image_out_of_a_rule():
    rule = {**SET_DESCRIPTION, "exclude": {"tags": ["keep"]}}

    decision = evaluate(policy(rule), image(tags=["keep=1"]), PROJECT)

    assert verdict(decision, "describe").status == "not_applicable"
    assert "excluded" in verdict(decision, "describe").reason


def test_default_exemption_is_the_imsguard_exempt_tag():
    decision = evaluate(policy(SET_DESCRIPTION), image(tags=["imsguard-exempt=yes"]), PROJECT)

    assert decision.scope == "exempt"
    assert plan(decision, False).outcome == "exempt"
    assert decision.operations == ()


@pytest.mark.parametrize(
    ("exemption", "attrs", "exempt"),
    [
        ({"tag": "freeze=yes"}, {"tags": ["freeze=yes"]}, True),
        ({"tag": "freeze=yes"}, {"tags": ["freeze=no"]}, False),
        ({"tag": "freeze=yes"}, {"tags": ["freeze.yes"]}, True),
        ({"tag": "freeze"}, {"tags": ["freeze=anything"]}, True),
        ({"images": ["00000000-0000-4000-8000-000000000000"]}, {}, True),
        ({"images": ["11111111-0000-4000-8000-000000000000"]}, {}, False),
    ],
)
def test_exemptions_by_tag_or_id(exemption, attrs, exempt):
    rules = policy(SET_DESCRIPTION, exemptions=[{**exemption, "reason": "because"}])

    decision = evaluate(rules, image(**attrs), PROJECT, TODAY)

    assert (decision.scope == "exempt") is exempt
    if exempt:
        assert decision.reason == "exempt: because"


def test_an_explicit_exemption_list_replaces_the_default_tag():
    rules = policy(SET_DESCRIPTION, exemptions=[{"tag": "other", "reason": "r"}])

    assert evaluate(rules, image(tags=["imsguard-exempt"]), PROJECT).scope == "in_scope"


def test_expired_exemption_no_longer_applies_and_says_so():
    rules = policy(
        SET_DESCRIPTION,
        exemptions=[{"tag": "freeze", "reason": "migration", "expires": "2026-11-26"}],
    )

    on_expiry = evaluate(rules, image(tags=["freeze"]), PROJECT, date(2026, 11, 26))
    after = evaluate(rules, image(tags=["freeze"]), PROJECT, TODAY)

    assert on_expiry.scope == "exempt" and "until 2026-11-26" in on_expiry.reason
    assert after.scope == "in_scope" and after.operations
    assert after.notes == ("exemption (migration) expired on 2026-11-26; the rules apply again",)


def test_exemption_for_some_rules_only():
    name_rule = {"name": "names", "kind": "name"}
    rules = policy(
        name_rule,
        SET_DESCRIPTION,
        exemptions=[{"tag": "legacy", "reason": "old names", "rules": ["names"]}],
    )

    decision = evaluate(rules, image(name="Old Name", tags=["legacy"]), PROJECT, TODAY)

    assert verdict(decision, "names").status == "exempt"
    assert decision.operations == ({"op": "add", "path": "/__description", "value": "ok"},)


def test_rule_in_audit_mode_is_planned_but_not_sent():
    rules = policy({"name": "names", "kind": "name"}, {**SET_DESCRIPTION, "mode": "audit"})

    decision = evaluate(rules, image(name="Web 1"), PROJECT)
    planned = plan(decision, dry_run=False)

    assert [op["path"] for op in decision.operations] == ["/name", "/__description"]
    assert [op["path"] for op in planned.send] == ["/name"]
    assert planned.outcome == "updated" and "held back by audit mode" in planned.reason


def test_policy_in_audit_mode_with_an_enforcing_rule():
    rules = policy(
        {"name": "names", "kind": "name", "mode": "enforce"}, SET_DESCRIPTION, mode="audit"
    )

    planned = plan(evaluate(rules, image(name="Web 1"), PROJECT), dry_run=False)

    assert [op["path"] for op in planned.send] == ["/name"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{platform}-{os_version}", "Ubuntu-Ubuntu 22.04 server 64bit"),
        ("{platform}-{created:%Y%m%d}-{id8}", "Ubuntu-20260101-00000000"),
        ("{created}", "20260101"),
        ("{os_type}/{os_bit}", "Linux/64"),
        ("img {name}", "img Web_1"),
    ],
)
def test_templates_fill_from_the_image(template, expected):
    assert render_template(template, image(name="Web_1")) == expected


def test_template_fix_is_made_valid_and_to_match_the_pattern():
    rule = {"name": "names", "kind": "name", "template": "{platform} {os_version}/{id8}"}

    decision = evaluate(policy(rule), image(name="x_y"), PROJECT)

    assert decision.operations == (
        {"op": "replace", "path": "/name", "value": "ubuntu-ubuntu-22-04-server-64bit-00000000"},
    )


def test_template_kept_as_is_when_it_already_fits_a_looser_pattern():
    rule = {
        "name": "names",
        "kind": "name",
        "pattern": "^[A-Za-z0-9 ._-]+$",
        "template": "{platform} {os_version}/{id8}",
    }

    decision = evaluate(policy(rule), image(name="x*y"), PROJECT)

    assert decision.operations[0]["value"] == "Ubuntu Ubuntu 22.04 server 64bit-00000000"


def test_template_field_the_image_lacks_is_an_error_verdict():
    rule = {"name": "names", "kind": "name", "template": "{platform}-{created}"}

    decision = evaluate(policy(rule), image(name="X", created_at=None), PROJECT)

    assert verdict(decision, "names").status == "error"
    assert "no created_at" in verdict(decision, "names").reason
    assert plan(decision, False).outcome == "non_compliant"


def test_bios_is_never_set_on_arm():
    rule = {"name": "boot", "kind": "set", "set": {"hw_firmware_type": "bios"}}

    decision = evaluate(policy(rule), image(__support_arm="true", hw_firmware_type="uefi"), PROJECT)

    assert decision.operations == ()
    assert "ARM images boot in UEFI mode only" in verdict(decision, "boot").reason


def test_uefi_list_from_ims_replaces_the_built_in_table():
    rule = {"name": "boot", "kind": "set", "set": {"hw_firmware_type": "uefi"}}
    listed = {"ubuntu 22.04 server 64bit"}

    allowed = evaluate(policy(rule), image(), PROJECT, uefi_versions=listed)
    refused = evaluate(
        policy(rule), image(__os_version="Ubuntu 20.04 server 64bit"), PROJECT, uefi_versions=listed
    )

    assert allowed.operations and not refused.operations


LOAD_ERRORS = [
    (
        {"rules": [{"name": "n", "kind": "name", "template": "{platfrom}"}]},
        "template field {platfrom} is unknown",
    ),
    ({"rules": [{"name": "n", "kind": "name", "template": "{name!r}"}]}, "no conversions"),
    (
        {"rules": [{"name": "n", "kind": "name", "template": "{name:>9}"}]},
        "only created (a strftime format) and tag (a tag key) take one",
    ),
    ({"rules": [{"name": "n", "kind": "name", "template": "{"}]}, "template"),
    ({"rules": [{"name": "n", "kind": "name", "fix": "template"}]}, "needs a template"),
    (
        {"rules": [{"name": "n", "kind": "name", "fix": "report", "template": "{name}"}]},
        "only used with fix: template",
    ),
    (
        {"rules": [{"name": "a", "kind": "name"}, {"name": "b", "kind": "name"}]},
        "would both rename images",
    ),
    (
        {
            "rules": [SET_DESCRIPTION],
            "exemptions": [{"tag": "x", "reason": "r", "expires": "2026-02-30"}],
        },
        "exemptions[0], field expires",
    ),
    (
        {
            "rules": [SET_DESCRIPTION],
            "exemptions": [{"tag": "x", "reason": "r", "expires": "2026-12-01T10:00:00"}],
        },
        "without a time",
    ),
    (
        {
            "rules": [SET_DESCRIPTION],
            "exemptions": [{"tag": "x", "reason": "r", "expires": "next year"}],
        },
        "field expires",
    ),
    (
        {
            "rules": [SET_DESCRIPTION],
            "exemptions": [
                {"tag": "x", "images": ["00000000-0000-4000-8000-000000000000"], "reason": "r"}
            ],
        },
        "not both",
    ),
    (
        {"rules": [SET_DESCRIPTION], "exemptions": [{"images": ["not-a-uuid"], "reason": "r"}]},
        "exemptions[0], field images.0",
    ),
    ({"rules": [SET_DESCRIPTION], "exemptions": [{"tag": "x"}]}, "field reason"),
    (
        {
            "rules": [SET_DESCRIPTION],
            "exemptions": [{"tag": "x", "reason": "r", "rules": ["nope"]}],
        },
        "unknown rules",
    ),
    (
        {"rules": [{**SET_DESCRIPTION, "match": {"virtual_env_type": "vm"}}]},
        "'vm' is not a virtual_env_type",
    ),
    ({"rules": [{**SET_DESCRIPTION, "match": {"os_type": "BSD"}}]}, "is not an os_type"),
    (
        {"rules": [{**SET_DESCRIPTION, "match": {"architecture": "riscv"}}]},
        "is not an architecture",
    ),
    ({"rules": [{**SET_DESCRIPTION, "match": {"tags": ["a=b=c"]}}]}, "is not a tag"),
    ({"rules": [{**SET_DESCRIPTION, "match": {"any": []}}]}, "field match"),
    ({"rules": [{**SET_DESCRIPTION, "match": {"name": "(["}}]}, "invalid regular expression"),
    ({"rules": [{**SET_DESCRIPTION, "mode": "warn"}]}, "field mode"),
    ({"rules": [{**SET_DESCRIPTION, "exclude": {"platfrom": "x"}}]}, "field exclude.platfrom"),
    ({"rules": [SET_DESCRIPTION], "mode": "strict"}, "field mode"),
    ({"rules": [{"name": "s", "kind": "set", "set": {"__support_arm": "true"}}]}, "managed by IMS"),
    ({"rules": [{**SET_DESCRIPTION, "exclude": {}}]}, "field exclude: empty"),
    ({"rules": [{"name": "n", "kind": "name", "template": "fixed-name"}]}, "has no field"),
    ({"rules": [{"name": "n", "kind": "name", "template": "{{name}}"}]}, "has no field"),
    (
        {"rules": [{"name": "n", "kind": "name", "template": "{created:%Q}"}]},
        "use strftime directives",
    ),
    (
        {"rules": [{"name": "n", "kind": "name", "template": "{created:{name}}"}]},
        "use strftime directives",
    ),
    (
        {"rules": [{"name": "e", "kind": "set", "set": {"enterprise_project_id": "x!"}}]},
        "enterprise_project_id must be 0",
    ),
    (
        {"rules": [{"name": "e", "kind": "set", "set": {"__support_kvm_gpu_type": " "}}]},
        "an empty value",
    ),
    ({"rules": [{"name": "e", "kind": "set", "set": {1.5: "y"}}]}, "attribute names are text"),
    (
        {
            "rules": [
                {"name": "a", "kind": "set", "set": {"min_ram": "4096"}},
                {"name": "b", "kind": "set", "set": {"max_ram": "1024"}},
            ]
        },
        "rule 'b' (rules[1]), field set.max_ram: max_ram 1024 is below min_ram 4096",
    ),
    (
        {"rules": [SET_DESCRIPTION, {**SET_DESCRIPTION, "set": {"__support_kvm": "true"}}]},
        "rule 'describe' (rules[1]), field name: two rules are named 'describe'",
    ),
    ({"rules": [{**SET_DESCRIPTION, "match": {"not": {}}}]}, "field match.not: empty"),
    ({"rules": [{**SET_DESCRIPTION, "mode": None}]}, "field mode: empty"),
    (
        {"rules": [SET_DESCRIPTION], "exemptions": [{"tag": "x", "reason": "r", "rules": []}]},
        "exemptions[0], field rules: empty",
    ),
    (
        {"rules": [SET_DESCRIPTION], "exemptions": [{"tag": "x", "reason": "r", "expires": None}]},
        "exemptions[0], field expires: empty",
    ),
]


@pytest.mark.parametrize(("document", "words"), LOAD_ERRORS)
def test_load_errors(document, words):
    with pytest.raises(PolicyError) as error:
        parse_policy({"version": 1, **document})

    assert words in str(error.value)


def test_an_audit_rename_never_lets_an_enforced_rule_act_on_the_renamed_image():
    rules = policy(
        {"name": "names", "kind": "name", "mode": "audit"},
        {**SET_DESCRIPTION, "match": {"name": "^web-"}},
    )

    decision = evaluate(rules, image(name="Web_1"), PROJECT)
    planned = plan(decision, dry_run=False)

    assert [op["path"] for op in decision.operations] == ["/name", "/__description"]
    assert decision.enforced == () and planned.send == ()
    assert planned.outcome == "would_update"
    assert verdict(decision, "describe").reason.endswith("(once the other fixes are made)")


@pytest.mark.parametrize(
    ("os_version", "capable"),
    [
        ("Ubuntu 14.04 server 64bit", True),
        ("Ubuntu 14.04 server 32bit", False),
        ("Windows 10 64bit", True),
        ("Windows 10 32bit", False),
        ("Red Hat Linux 6.6 32bit", True),
        ("Red Hat Linux 6.5 32bit", False),
        ("CentOS 7.6 64bit", True),
        ("CentOS 7.2 64bit", False),
        ("Ubuntu 12.04 server 64bit", False),
    ],
)
def test_built_in_uefi_table(os_version, capable):
    from imsguard.uefi import is_uefi_capable

    assert is_uefi_capable(os_version) is capable


def test_exemption_ids_match_whatever_their_case():
    rules = policy(
        SET_DESCRIPTION,
        exemptions=[{"images": ["ABCDEF00-0000-4000-8000-000000000000"], "reason": "r"}],
    )

    assert (
        evaluate(rules, image(id="abcdef00-0000-4000-8000-000000000000"), PROJECT).scope == "exempt"
    )


def test_template_date_format_that_gives_nothing_is_refused():
    with pytest.raises(PolicyError, match="formats to nothing"):
        parse_policy(
            {"version": 1, "rules": [{"name": "n", "kind": "name", "template": "{created: }"}]}
        )
