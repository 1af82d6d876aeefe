"""imsguard deploy's Config rules (template.yaml config_rules) against a faked Config and
FunctionGraph, through the official SDKs."""

from __future__ import annotations

import copy
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from imsguard.context import Credentials
from imsguard_tools.cli import main
from imsguard_tools.deploy import (
    ConfigRules,
    Deployer,
    DeployError,
    build_client,
    build_config_client,
)
from imsguard_tools.fake_config import FakeConfig
from imsguard_tools.template import TemplateError, load_template
from imsguard_tools.testing import DEFAULT_REGION, SAMPLE_PROJECT_ID, FakeFunctionGraph

ROOT = Path(__file__).parents[1]
DOMAIN = "d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0"
URN = f"urn:fss:ap-southeast-1:{SAMPLE_PROJECT_ID}:function:default:imsguard:latest"
IMS_TYPES = [{"name": "images", "track": "tracked"}, {"name": "private_image", "track": "tracked"}]
PROVIDERS = [
    {"provider": "ecs", "resource_types": [{"name": "cloudservers"}]},
    {"provider": "ims", "resource_types": IMS_TYPES},
]
RULES = [
    {
        "name": "imsguard-uefi-boot",
        "description": "UEFI images boot in UEFI mode",
        "rule": "uefi-boot",
        "trigger": "resource",
        "agency": "rms-fgs-agency",
    },
    {
        "name": "imsguard-daily",
        "trigger": "period",
        "period": "TwentyFour_Hours",
        "agency": "rms-fgs-agency",
    },
]


@pytest.fixture
def clouds():
    config = FakeConfig(DOMAIN, providers=PROVIDERS)
    with FakeFunctionGraph(SAMPLE_PROJECT_ID, DEFAULT_REGION).attach(config) as fgs:
        yield fgs, config
    for fake in (fgs, config):
        fake.assert_injections_met()


@pytest.fixture
def package(tmp_path):
    path = tmp_path / "imsguard.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("policy.yaml", (ROOT / "function/policy.yaml").read_bytes())
    return path


def template_data(rules=None):
    data = yaml.safe_load((ROOT / "template.yaml").read_text())
    function = data["function"]
    function["settings"]["IMSGUARD_CONFIG_RULES"] = "true"
    function["agency"]["permissions"].append("rms:policyStates:update")
    data["config_rules"] = copy.deepcopy(RULES if rules is None else rules)
    return data


def write(tmp_path, data):
    """The template beside a code root holding the policy it names (policy.yaml)."""
    (tmp_path / "function").mkdir(exist_ok=True)
    shutil.copy(ROOT / "function/policy.yaml", tmp_path / "function/policy.yaml")
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def template(tmp_path, change=None):
    data = template_data()
    if change:
        change(data)
    return load_template(write(tmp_path, data))


def deploy(fgs, tmpl, package, force=False, dry_run=False):
    client = build_client(None, fgs.fgs_endpoint, SAMPLE_PROJECT_ID, Credentials("AK", "SK"))
    config = build_config_client(DOMAIN, None, Credentials("AK", "SK"))
    deployer = Deployer(
        client, SAMPLE_PROJECT_ID, DEFAULT_REGION, tmpl, package, ConfigRules(config, force)
    )
    steps = deployer.plan()
    return steps if dry_run else deployer.apply(steps)


def config_steps(steps):
    return [(s.action, s.what) for s in steps if "Config" in s.what]


def writes(config):
    return [(c.method, c.path.rsplit("/domains/", 1)[1], c.body) for c in config.writes]


CUSTOM = {
    "function_urn": URN,
    "auth_type": "agency",
    "auth_value": {"agency_name": "rms-fgs-agency"},
}
UEFI_BODY = {
    "policy_assignment_type": "custom",
    "name": "imsguard-uefi-boot",
    "description": "UEFI images boot in UEFI mode",
    "policy_filter": {
        "region_id": "ap-southeast-1",
        "resource_provider": "ims",
        "resource_type": "images",
    },
    "custom_policy": CUSTOM,
    "parameters": {"rule": {"value": "uefi-boot"}},
}
DAILY_PARAMETERS = {"resource_type": {"value": "images"}}  # the type its states name
DAILY_BODY = {
    "policy_assignment_type": "custom",
    "name": "imsguard-daily",
    "description": "",
    "period": "TwentyFour_Hours",
    "custom_policy": CUSTOM,
    "parameters": {"resource_type": {"value": "images"}},
}


# -- the template ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            lambda r: r[0].update(name="imsguard uefi"),
            "config_rules.0.name (line",
        ),
        (lambda r: r[0].update(name="x" * 65), "1-64 letters, digits, _ or -"),
        (lambda r: r[0].update(schedule="1d"), "config_rules.0.schedule"),
        (lambda r: r[0].update(period="One_Hour"), "period is only for trigger: period"),
        (lambda r: r[1].pop("period"), "a period rule needs a period, one of ['One_Hour'"),
        (lambda r: r[1].update(period="Two_Hours"), "config_rules.1.period"),
        (lambda r: r[0].update(trigger="change"), "config_rules.0.trigger"),
        (lambda r: r[1].update(name="imsguard-uefi-boot"), "two Config rules share the name"),
        (
            lambda r: r[0].update(rule="no-such-rule"),
            "config_rules.0.rule (line 48): 'no-such-rule' is not a rule of the policy",
        ),
        (lambda r: r[0].update(resource_type="cloudservers"), "answers Config only for IMS"),
        (lambda r: r[0].pop("agency"), "config_rules.0.agency"),
        (lambda r: r[0].update(description="d" * 513), "config_rules.0.description"),
    ],
)
def test_config_rules_config_would_refuse_or_imsguard_ignore_are_refused(tmp_path, change, words):
    rules = [dict(rule) for rule in RULES]
    change(rules)

    with pytest.raises(TemplateError) as refused:
        load_template(write(tmp_path, template_data(rules)))

    assert words in str(refused.value)


def test_config_rules_need_the_functions_config_mode(tmp_path):
    data = template_data()
    data["function"]["settings"].pop("IMSGUARD_CONFIG_RULES")
    data["function"]["agency"]["permissions"].remove("rms:policyStates:update")

    with pytest.raises(TemplateError, match="needs IMSGUARD_CONFIG_RULES"):
        load_template(write(tmp_path, data))


@pytest.mark.parametrize("on", ["yes", "on", "1", "True"])
def test_config_mode_is_on_as_the_function_reads_it(tmp_path, on):
    data = template_data()
    data["function"]["settings"]["IMSGUARD_CONFIG_RULES"] = on

    assert [r.name for r in load_template(write(tmp_path, data)).config_rules]


def test_the_shipped_template_deploys_no_config_rule(tmp_path):
    assert load_template(ROOT / "template.yaml").config_rules == []


# -- deploy ------------------------------------------------------------------------------


def test_the_first_deploy_creates_the_rules_with_exact_bodies(clouds, tmp_path, package):
    fgs, config = clouds

    steps = deploy(fgs, template(tmp_path), package)

    assert config_steps(steps) == [
        ("check", "Config resource types"),  # ims/images: both rules' type
        ("create", "Config rule imsguard-uefi-boot"),
        ("create", "Config rule imsguard-daily"),
    ]
    assert writes(config) == [
        ("PUT", f"{DOMAIN}/policy-assignments", UEFI_BODY),
        ("PUT", f"{DOMAIN}/policy-assignments", DAILY_BODY),
    ]
    # The function is created before Config is told to invoke it.
    order = [s.what for s in steps]
    assert order.index("function") < order.index("Config rule imsguard-uefi-boot")
    assert all(c.headers.get("X-Domain-Id") == DOMAIN for c in config.calls)


def test_the_second_deploy_writes_nothing(clouds, tmp_path, package):
    fgs, config = clouds
    deploy(fgs, template(tmp_path), package)
    fgs.reset_calls()
    config.reset_calls()

    steps = deploy(fgs, template(tmp_path), package)

    assert {s.action for s in steps} <= {"keep", "check"}
    assert config.writes == []
    assert [c for c in fgs.calls if c.method != "GET"] == []


def test_a_changed_rule_is_updated_in_place(clouds, tmp_path, package):
    fgs, config = clouds
    deploy(fgs, template(tmp_path), package)
    ids = [a["id"] for a in config.assignments]
    config.reset_calls()

    def change(data):
        data["config_rules"][0]["rule"] = "nic-multiqueue"
        data["config_rules"][1]["period"] = "Six_Hours"

    steps = deploy(fgs, template(tmp_path, change), package)

    assert [(s.action, s.what, s.detail) for s in steps if s.action == "update"] == [
        ("update", "Config rule imsguard-uefi-boot", "its parameters changed"),
        ("update", "Config rule imsguard-daily", "its period changed"),
    ]
    assert writes(config) == [
        (
            "PUT",
            f"{DOMAIN}/policy-assignments/{ids[0]}",
            {**UEFI_BODY, "parameters": {"rule": {"value": "nic-multiqueue"}}},
        ),
        ("PUT", f"{DOMAIN}/policy-assignments/{ids[1]}", {**DAILY_BODY, "period": "Six_Hours"}),
    ]
    assert [a["id"] for a in config.assignments] == ids
    assert config.assignments[1]["period"] == "Six_Hours"


def test_a_rule_switched_from_period_to_resource_is_refused(clouds, tmp_path, package):
    """Whether Config's update clears the old trigger is undocumented: no switch in place."""
    fgs, config = clouds
    deploy(fgs, template(tmp_path), package)
    config.reset_calls()

    def change(data):
        data["config_rules"][1].pop("period")
        data["config_rules"][1]["trigger"] = "resource"

    with pytest.raises(DeployError) as refused:
        deploy(fgs, template(tmp_path, change), package)

    assert "'imsguard-daily' would change from a period to a resource trigger" in str(refused.value)
    assert "delete the rule in the Config console" in str(refused.value)
    assert config.writes == []


def test_a_rule_with_a_console_filter_v2_is_refused_an_update(clouds, tmp_path, package):
    fgs, config = clouds
    deploy(fgs, template(tmp_path), package)
    config.assignments[0]["policy_filter_v2"] = {"tag_key_logic": None, "tag_filters": []}
    config.reset_calls()
    steps = deploy(fgs, template(tmp_path), package)  # empty members: nothing set there
    assert ("keep", "Config rule imsguard-uefi-boot") in config_steps(steps)
    config.assignments[0]["policy_filter_v2"] = {"tag_key_logic": "AND"}
    steps = deploy(fgs, template(tmp_path), package)  # set, but no update needed
    assert ("keep", "Config rule imsguard-uefi-boot") in config_steps(steps)

    def change(data):
        data["config_rules"][0]["description"] = "changed"

    with pytest.raises(DeployError, match="has a policy_filter_v2"):
        deploy(fgs, template(tmp_path, change), package)

    assert config.writes == []


def test_a_disabled_rule_is_named_in_the_plan(clouds, tmp_path, package):
    fgs, config = clouds
    deploy(fgs, template(tmp_path), package)
    config.assignments[0]["state"] = "Disabled"

    steps = deploy(fgs, template(tmp_path), package)

    warned = [s.detail for s in steps if s.action == "warn"]
    assert warned and warned[0].startswith("disabled in Config")


def test_rules_imsguard_did_not_make_are_left_untouched(clouds, tmp_path, package):
    fgs, config = clouds
    builtin = config.add_assignment(
        name="access-keys-rotated", policy_definition_id="5f8d549bffeecc14f1fb522a"
    )
    other = config.add_assignment(
        name="someone-elses",
        policy_assignment_type="custom",
        custom_policy={**CUSTOM, "function_urn": URN.replace("imsguard", "other")},
        period="One_Hour",
    )
    retired = config.add_assignment(
        name="imsguard-retired",
        policy_assignment_type="custom",
        custom_policy=CUSTOM,
        period="One_Hour",
    )
    before = [dict(a) for a in (builtin, other, retired)]

    steps = deploy(fgs, template(tmp_path), package)

    assert [a for a in config.assignments if a["id"] in {b["id"] for b in before}] == before
    assert ("keep", "Config rule imsguard-retired") in config_steps(steps)
    kept = next(s for s in steps if s.what == "Config rule imsguard-retired")
    assert "imsguard deletes no Config rule" in kept.detail
    assert [w[0] for w in writes(config)] == ["PUT", "PUT"]  # the two creations only
    assert config.calls[-1].method == "PUT"


@pytest.mark.parametrize("kind", ["builtin", "other function"])
def test_a_rule_of_the_same_name_that_is_not_imsguards_is_refused(clouds, tmp_path, package, kind):
    fgs, config = clouds
    if kind == "builtin":
        config.add_assignment(name="imsguard-daily", policy_definition_id="5f8d549bffeecc14")
    else:
        config.add_assignment(
            name="imsguard-daily",
            policy_assignment_type="custom",
            custom_policy={**CUSTOM, "function_urn": URN.replace("imsguard", "other")},
        )

    with pytest.raises(DeployError, match="'imsguard-daily' that is not this function's"):
        deploy(fgs, template(tmp_path), package)

    assert config.writes == []
    assert [c for c in fgs.calls if c.method != "GET"] == []  # refused while planning


def test_every_page_of_rules_is_read(clouds, tmp_path, package, monkeypatch):
    fgs, config = clouds
    monkeypatch.setattr("imsguard_tools.deploy.CONFIG_PAGE", 2)
    for index in range(4):
        config.add_assignment(name=f"other-{index}", policy_definition_id="5f8d549bffeecc14")
    config.add_assignment(
        name="imsguard-daily",
        policy_assignment_type="custom",
        **{"custom_policy": CUSTOM, "period": "TwentyFour_Hours", "parameters": DAILY_PARAMETERS},
    )

    steps = deploy(fgs, template(tmp_path), package)

    assert ("keep", "Config rule imsguard-daily") in config_steps(steps)
    listed = [c for c in config.calls if c.path.endswith("/policy-assignments")]
    assert [c.query.get("marker") is None for c in listed if c.method == "GET"] == [
        True,
        False,
        False,
    ]


def test_dry_run_plans_the_rules_and_writes_nothing(clouds, tmp_path, package):
    fgs, config = clouds

    steps = deploy(fgs, template(tmp_path), package, dry_run=True)

    assert ("create", "Config rule imsguard-uefi-boot") in config_steps(steps)
    assert config.writes == [] and config.assignments == []


# -- Config's providers list ---------------------------------------------------------------


def test_a_resource_rule_for_a_type_config_does_not_list_is_refused(clouds, tmp_path, package):
    fgs, config = clouds
    config.providers = [{"provider": "ims", "resource_types": [{"name": "private_image"}]}]

    with pytest.raises(DeployError) as refused:
        deploy(fgs, template(tmp_path), package)

    message = str(refused.value)
    assert "Config's providers list has no ims/images (its ims types: private_image)" in message
    assert "['imsguard-uefi-boot'] would never be triggered" in message
    assert "--force-config-type" in message
    assert config.writes == [] and [c for c in fgs.calls if c.method != "GET"] == []


def test_forced_resource_rules_are_created_with_a_warning(clouds, tmp_path, package):
    fgs, config = clouds
    config.providers = [{"provider": "ecs", "resource_types": [{"name": "cloudservers"}]}]

    steps = deploy(fgs, template(tmp_path), package, force=True)

    warnings = [s.detail for s in steps if s.action == "warn"]
    assert warnings == [
        "Config's providers list has no ims/images (it lists no ims service at all): "
        "resource rules ['imsguard-uefi-boot'] are created anyway (--force-config-type); "
        "period rules ['imsguard-daily'] are created; their states name ims/images, "
        "which Config may not accept",
    ]
    assert [a["name"] for a in config.assignments] == ["imsguard-uefi-boot", "imsguard-daily"]


def test_period_rules_are_created_with_a_warning_when_config_lists_no_images(
    clouds, tmp_path, package
):
    fgs, config = clouds
    config.providers = [{"provider": "ims", "resource_types": []}]

    steps = deploy(fgs, template(tmp_path, lambda d: d["config_rules"].pop(0)), package)

    assert [(s.action, s.detail.split(":")[0]) for s in steps if "types" in s.what] == [
        (
            "warn",
            "Config's providers list has no ims/images (it lists ims with no resource types)",
        )
    ]
    assert [a["name"] for a in config.assignments] == ["imsguard-daily"]


def test_every_page_of_providers_is_read(clouds, tmp_path, package, monkeypatch):
    fgs, config = clouds
    monkeypatch.setattr("imsguard_tools.deploy.PROVIDERS_PAGE", 1)
    config.providers = [{"provider": f"svc{i}", "resource_types": []} for i in range(3)]
    config.providers.append({"provider": "ims", "resource_types": IMS_TYPES})

    steps = deploy(fgs, template(tmp_path), package)

    assert [s.detail for s in steps if s.action == "check"] == ["ims/images listed"]
    pages = [c.query for c in config.calls if c.path.endswith("/providers")]
    assert pages == [
        {"limit": "1"},
        {"limit": "1", "offset": "1"},
        {"limit": "1", "offset": "2"},
        {"limit": "1", "offset": "3"},
    ]


# -- Config's failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "status", "code", "words"),
    [
        ("GET", 403, "RMS.00010006", "Config answered 403 RMS.00010006: Access denied."),
        ("GET", 500, "RMS.00010500", "Config answered 500 RMS.00010500"),
        ("PUT", 403, "RMS.00010006", "Config answered 403 RMS.00010006: Access denied."),
        ("PUT", 500, "RMS.00010500", "Config answered 500 RMS.00010500"),
    ],
)
def test_a_config_failure_is_a_clear_deploy_error(
    clouds, tmp_path, package, method, status, code, words
):
    fgs, config = clouds
    config.fail_next(method, status, code)

    with pytest.raises(DeployError) as failed:
        deploy(fgs, template(tmp_path), package)

    assert words in str(failed.value)
    if method == "PUT":  # while applying: says what was done and what was not
        assert str(failed.value).startswith("create Config rule imsguard-uefi-boot: ")
        assert [s.what for s in failed.value.left] == [
            "Config rule imsguard-uefi-boot",
            "Config rule imsguard-daily",
        ]
        assert config.assignments == []


def test_the_fake_config_refuses_rule_bodies_config_documents_it_refuses(clouds):
    from huaweicloudsdkconfig.v1 import (
        CreatePolicyAssignmentsRequest,
        PolicyAssignmentRequestBody,
        PolicyFilterDefinition,
    )
    from huaweicloudsdkcore.exceptions.exceptions import ServiceResponseException

    _, config = clouds
    client = build_config_client(DOMAIN, None, Credentials("AK", "SK"))
    refused = [
        PolicyAssignmentRequestBody(name="x" * 65, policy_definition_id="p"),
        PolicyAssignmentRequestBody(name="a", policy_assignment_type="custom"),
        PolicyAssignmentRequestBody(name="a", policy_definition_id="p", period="Daily"),
        PolicyAssignmentRequestBody(
            name="a",
            policy_definition_id="p",
            period="One_Hour",
            policy_filter=PolicyFilterDefinition(resource_provider="ims"),
        ),
        PolicyAssignmentRequestBody(name="a", policy_assignment_type="custom", custom_policy={}),
    ]
    for body in refused:
        with pytest.raises(ServiceResponseException) as answer:
            client.create_policy_assignments(CreatePolicyAssignmentsRequest(body=body))
        assert answer.value.status_code == 400
    assert config.assignments == []


# -- the command ------------------------------------------------------------------------


def test_deploy_fake_dry_run_prints_the_config_rules(tmp_path, package, capsys):
    path = write(tmp_path, template_data())

    status = main(
        ["deploy", "--fake", "--dry-run", "--template", str(path), "--package", str(package)]
    )

    out = capsys.readouterr().out
    assert status == 0, out
    assert "check    Config resource types: ims/images listed" in out
    assert (
        "create   Config rule imsguard-uefi-boot: on changes of ims/images, rule uefi-boot" in out
    )
    assert "create   Config rule imsguard-daily: every TwentyFour_Hours, every rule decides" in out
    assert "6 change(s) would reach FunctionGraph and Config" in out


def test_a_period_rule_names_the_type_its_states_carry(clouds, tmp_path, package):
    """A period rule's resource_type is checked in the providers list and sent to the
    function as rule_parameter, so its states name a type Config lists."""
    fgs, config = clouds
    config.providers = [{"provider": "ims", "resource_types": [{"name": "private_image"}]}]

    def private(document):
        document["config_rules"].pop(0)
        document["config_rules"][0]["resource_type"] = "private_image"

    steps = deploy(fgs, template(tmp_path, private), package)

    assert [s.detail for s in steps if s.action == "check"] == ["ims/private_image listed"]
    (created,) = config.assignments
    assert created["parameters"] == {"resource_type": {"value": "private_image"}}
