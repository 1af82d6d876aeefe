"""imsguard deploy to several regions (issue 15, point 7): one fake FunctionGraph per region,
each with its own project, called through the official SDK on the regions' real endpoints."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml

from imsguard_tools.cli import main
from imsguard_tools.template import TemplateError, load_template
from imsguard_tools.testing import FakeFunctionGraph

ROOT = Path(__file__).parents[1]
ONE, THREE = "ap-southeast-1", "ap-southeast-3"
PROJECTS = {ONE: "1" * 32, THREE: "3" * 32}


def urn(region):
    return f"urn:fss:{region}:{PROJECTS[region]}:function:default:imsguard:latest"


@pytest.fixture
def fgs(monkeypatch):
    """A fake FunctionGraph in each region, on the endpoints the SDK knows for them."""
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AK")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "SK")
    for key in ("IMSGUARD_FGS_ENDPOINT", "HUAWEICLOUD_SDK_REGION", "HUAWEICLOUD_SDK_PROJECT_ID"):
        monkeypatch.delenv(key, raising=False)
    fakes = {r: FakeFunctionGraph(PROJECTS[r], r) for r in (ONE, THREE)}
    with fakes[ONE].attach(fakes[THREE]):
        yield fakes


@pytest.fixture
def package(tmp_path):
    path = tmp_path / "imsguard.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("policy.yaml", (ROOT / "function/policy.yaml").read_bytes())
    return path


def template(tmp_path, change=None):
    """The shipped template, in two regions, each with its own IMS endpoint."""
    data = yaml.safe_load((ROOT / "template.yaml").read_text())
    (tmp_path / "function").mkdir(exist_ok=True)  # the policy beside it, as shipped
    (tmp_path / "function/policy.yaml").write_bytes((ROOT / "function/policy.yaml").read_bytes())
    data["regions"] = [ONE, THREE]
    data["coordinator_region"] = ONE
    data["region_settings"] = {
        r: {"IMSGUARD_IMS_ENDPOINT": f"https://ims.{r}.myhuaweicloud.com"} for r in (ONE, THREE)
    }
    if change:
        change(data)
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def deploy(path, package, *extra):
    projects = [a for r in (ONE, THREE) for a in ("--project-id", f"{r}={PROJECTS[r]}")]
    return main(["deploy", "--template", str(path), "--package", str(package), *projects, *extra])


def writes(fake):
    return [
        (c.method, c.path.split("/fgs/")[1].split("/")[0]) for c in fake.calls if c.method != "GET"
    ]


def settings(fake, region):
    return json.loads(fake.functions[urn(region)]["user_data"])


def test_the_first_deploy_creates_the_function_in_each_region_with_its_settings(
    fgs, tmp_path, package, capsys
):
    assert deploy(template(tmp_path), package) == 0

    for region in (ONE, THREE):
        assert set(fgs[region].functions) == {urn(region)}  # its own project's
        assert settings(fgs[region], region)["IMSGUARD_REGION"] == region
        assert settings(fgs[region], region)["IMSGUARD_IMS_ENDPOINT"] == (
            f"https://ims.{region}.myhuaweicloud.com"
        )
        assert len(fgs[region].function_triggers[urn(region)]) == 2  # CTS is regional
    out = capsys.readouterr().out
    assert "imsguard deploy to 2 region(s), coordinator ap-southeast-1" in out
    assert f"region {ONE} (coordinator): {urn(ONE)}" in out
    assert f"region {THREE}: {urn(THREE)}" in out
    assert out.count("4 change(s) did reach FunctionGraph") == 2


def test_a_second_deploy_writes_nothing_in_any_region(fgs, tmp_path, package, capsys):
    deploy(template(tmp_path), package)
    for fake in fgs.values():
        fake.reset_calls()

    assert deploy(template(tmp_path), package) == 0

    assert writes(fgs[ONE]) == writes(fgs[THREE]) == []
    assert capsys.readouterr().out.count("nothing to change") == 2


def test_a_changed_setting_updates_only_the_region_where_it_differs(fgs, tmp_path, package):
    deploy(template(tmp_path), package)
    for fake in fgs.values():
        fake.reset_calls()

    def change(data):
        data["region_settings"][THREE]["IMSGUARD_IMS_ENDPOINT"] = "https://ims.example.com"

    assert deploy(template(tmp_path, change), package) == 0

    assert writes(fgs[ONE]) == []
    assert writes(fgs[THREE]) == [("PUT", "functions")]
    assert settings(fgs[THREE], THREE)["IMSGUARD_IMS_ENDPOINT"] == "https://ims.example.com"


def test_a_dry_run_plans_every_region_and_writes_nothing(fgs, tmp_path, package, capsys):
    assert deploy(template(tmp_path), package, "--dry-run") == 0

    assert writes(fgs[ONE]) == writes(fgs[THREE]) == []
    assert all(fake.calls for fake in fgs.values())  # each region was read
    out = capsys.readouterr().out
    assert "imsguard deploy (dry run) to 2 region(s)" in out
    assert out.count("create   function: imsguard") == 2
    assert out.count("4 change(s) would reach FunctionGraph") == 2


def test_region_picks_some_of_the_templates_regions(fgs, tmp_path, package):
    assert deploy(template(tmp_path), package, "--region", THREE) == 0

    assert fgs[ONE].functions == {} and fgs[ONE].calls == []
    assert set(fgs[THREE].functions) == {urn(THREE)}


@pytest.mark.parametrize("region", ["eu-west-101", "ap-southeast-1x"])
def test_a_region_the_template_does_not_list_is_refused_before_any_call(
    fgs, tmp_path, package, capsys, region
):
    assert deploy(template(tmp_path), package, "--region", ONE, "--region", region) == 2

    assert f"region {region} is not in the template's regions" in capsys.readouterr().err
    assert fgs[ONE].calls == fgs[THREE].calls == []


def test_a_template_without_regions_deploys_to_its_one_region_only(fgs, tmp_path, package, capsys):
    def single(data):
        for key in ("regions", "coordinator_region", "region_settings"):
            del data[key]

    path = template(tmp_path, single)
    args = ["--project-id", f"{ONE}={PROJECTS[ONE]}", "--region", THREE]

    assert main(["deploy", "--template", str(path), "--package", str(package), *args]) == 2
    assert "region ap-southeast-3 is not in the template" in capsys.readouterr().err
    assert fgs[ONE].calls == fgs[THREE].calls == []


def test_each_region_needs_its_project_id(fgs, tmp_path, package, capsys):
    path = template(tmp_path)
    given = ["--project-id", f"{ONE}={PROJECTS[ONE]}"]

    assert main(["deploy", "--template", str(path), "--package", str(package), *given]) == 2
    assert "missing: ap-southeast-3" in capsys.readouterr().err
    assert fgs[ONE].calls == []


def test_a_failure_in_the_second_region_says_what_each_region_got(fgs, tmp_path, package, capsys):
    fgs[THREE].fail_next("POST", 500, "FSS.0500", "internal error")  # creating the function

    assert deploy(template(tmp_path), package, "--output", "json") == 1

    report = json.loads(capsys.readouterr().out)
    one, three = report["regions"]
    assert (one["region"], one["status"], one["writes"]) == (ONE, "applied", 4)
    assert (three["region"], three["status"], three["done"]) == (THREE, "failed", [])
    assert three["not_done"][0]["what"] == "function"
    assert "FSS.0500" in report["error"]
    assert urn(ONE) in fgs[ONE].functions and fgs[THREE].functions == {}


def test_a_failure_is_said_region_by_region_in_text(fgs, tmp_path, package, capsys):
    fgs[THREE].fail_next("POST", 500, "FSS.0500", "internal error")

    assert deploy(template(tmp_path), package) == 1

    err = capsys.readouterr().err
    assert "imsguard deploy failed in region ap-southeast-3: " in err
    assert "  region ap-southeast-1: applied\n    4 change(s) reached FunctionGraph" in err
    assert "  region ap-southeast-3: failed\n    not done  create   function" in err


def test_a_region_that_cannot_be_planned_stops_before_any_write(fgs, tmp_path, package, capsys):
    fgs[THREE].fail_next("GET", 500, "FSS.0500", "internal error")

    assert deploy(template(tmp_path), package) == 1

    assert writes(fgs[ONE]) == writes(fgs[THREE]) == []
    err = capsys.readouterr().err
    assert "(while planning: nothing was written in any region)" in err
    assert "region ap-southeast-1: planned, nothing written" in err


def test_the_fake_deploys_to_every_region(package, capsys, tmp_path):
    path = template(tmp_path)

    assert main(["deploy", "--fake", "--template", str(path), "--package", str(package)]) == 0

    out = capsys.readouterr().out
    assert out.count("create   function: imsguard") == 2
    assert f"region {ONE} (coordinator): urn:fss:{ONE}:" in out
    assert f"region {THREE}: urn:fss:{THREE}:" in out


def drop(key):
    return lambda data: data["function"]["settings"].pop(key, None)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (  # an endpoint shared by both regions would send one region's calls to the other
            lambda d: d["function"]["settings"].update(
                IMSGUARD_IMS_ENDPOINT="https://ims.ap-southeast-1.myhuaweicloud.com"
            ),
            "function.settings.IMSGUARD_IMS_ENDPOINT (line",
        ),
        (
            lambda d: d["region_settings"][THREE].update(
                IMSGUARD_IMS_ENDPOINT="https://ims.ap-southeast-1.myhuaweicloud.com"
            ),
            "names region ap-southeast-1, not ap-southeast-3",
        ),
        (
            lambda d: d["region_settings"][THREE].update(
                IMSGUARD_NOTIFY_TOPIC_URN=f"urn:smn:{THREE}:{PROJECTS[THREE]}:notices"
            ),
            "every region sets the same keys",
        ),
        (
            lambda d: d["region_settings"].update(
                {
                    r: {
                        "IMSGUARD_IMS_ENDPOINT": f"https://ims.{r}.myhuaweicloud.com",
                        "IMSGUARD_NOTIFY_TOPIC_URN": f"urn:smn:{ONE}:{PROJECTS[ONE]}:notices",
                    }
                    for r in (ONE, THREE)
                }
            ),
            "region_settings.ap-southeast-3 (line",  # a topic of another region
        ),
        (lambda d: d["region_settings"][THREE].update(IMSGUARD_DRY_RUN="true"), "no regional"),
        (lambda d: d["region_settings"][THREE].update(IMSGUARD_REGION=ONE), "deploy sets it"),
        (lambda d: d["region_settings"].update({"eu-west-101": {}}), "not one of regions"),
        (lambda d: d.update(regions=[ONE, THREE, ONE]), "ap-southeast-1 is listed twice"),
        (lambda d: d.update(regions=[ONE, "Asia-1"]), "regions.1 (line"),
        (lambda d: d.update(regions=[THREE], region_settings={}), "IMSGUARD_REGION (line"),
        (lambda d: d.update(coordinator_region="eu-west-101"), "coordinator_region (line"),
        (
            lambda d: d["async_invoke"].update(
                on_failure={"type": "SMN", "target": f"urn:smn:{ONE}:{PROJECTS[ONE]}:x"}
            ),
            "a failure destination is one region's",
        ),
    ],
)
def test_settings_that_name_one_regions_resources_are_set_per_region(tmp_path, change, said):
    with pytest.raises(TemplateError) as refused:
        load_template(template(tmp_path, change))

    assert said in str(refused.value)


def test_config_rules_are_refused_with_several_regions(tmp_path):
    def change(data):
        data["function"]["settings"]["IMSGUARD_CONFIG_RULES"] = "true"
        data["function"]["agency"]["permissions"].append("rms:policyStates:update")
        data["config_rules"] = [{"name": "r", "trigger": "resource", "agency": "rms"}]

    with pytest.raises(TemplateError) as refused:
        load_template(template(tmp_path, change))

    assert "config_rules" in str(refused.value) and "Config is global" in str(refused.value)


def test_one_region_of_regions_may_keep_its_settings_shared(tmp_path):
    def change(data):
        data.update(regions=[ONE], region_settings={})
        data["function"]["settings"]["IMSGUARD_IMS_ENDPOINT"] = "https://ims.example.com"

    loaded = load_template(template(tmp_path, change))

    assert loaded.settings_for(ONE)["IMSGUARD_IMS_ENDPOINT"] == "https://ims.example.com"
    assert loaded.settings_for(ONE)["IMSGUARD_REGION"] == ONE


def test_a_project_id_for_a_region_the_template_does_not_list_is_refused(
    fgs, tmp_path, package, capsys
):
    extra = ["--project-id", "eu-west-101=" + "e" * 32]

    assert deploy(template(tmp_path), package, *extra) == 2
    assert "the template's regions are ap-southeast-1, ap-southeast-3" in capsys.readouterr().err
    assert fgs[ONE].calls == fgs[THREE].calls == []
