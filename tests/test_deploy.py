"""imsguard deploy against a faked FunctionGraph API, through the official SDK."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml
from huaweicloudsdkcore.exceptions.exceptions import ServiceResponseException
from huaweicloudsdkfunctiongraph.v2 import (
    CreateFunctionTriggerRequest,
    CreateFunctionTriggerRequestBody,
    TriggerEventDataRequestBody,
)

from imsguard.context import Credentials
from imsguard_tools.cli import main
from imsguard_tools.deploy import Deployer, DeployError, build_client
from imsguard_tools.template import TemplateError, load_template
from imsguard_tools.testing import DEFAULT_REGION, SAMPLE_PROJECT_ID, FakeFunctionGraph

ROOT = Path(__file__).parents[1]
URN = f"urn:fss:ap-southeast-1:{SAMPLE_PROJECT_ID}:function:default:imsguard:latest"


@pytest.fixture
def fgs():
    with FakeFunctionGraph(SAMPLE_PROJECT_ID, DEFAULT_REGION) as fake:
        yield fake


@pytest.fixture
def package(tmp_path):
    """A ZIP holding only the policy the template names: the bytes are what counts."""
    path = tmp_path / "imsguard.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("policy.yaml", (ROOT / "function/policy.yaml").read_bytes())
    return path


def template(tmp_path, change=None):
    data = yaml.safe_load((ROOT / "template.yaml").read_text())
    data["function"]["settings"]["IMSGUARD_POLICY"] = str(ROOT / "function/policy.yaml")
    if change:
        change(data)
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_template(path)


def deploy(fgs, tmpl, package):
    client = build_client(None, fgs.fgs_endpoint, SAMPLE_PROJECT_ID, Credentials("AK", "SK"))
    deployer = Deployer(client, SAMPLE_PROJECT_ID, "ap-southeast-1", tmpl, package)
    return deployer.apply(deployer.plan())


def writes(fgs):
    return [
        (c.method, c.path.split("/fgs/")[1].split("/")[0]) for c in fgs.calls if c.method != "GET"
    ]


def test_the_first_deploy_creates_everything(fgs, tmp_path, package):
    steps = deploy(fgs, template(tmp_path), package)

    assert [(s.action, s.what) for s in steps] == [
        ("create", "function"),
        ("create", "CTS trigger ims_image_events"),
        ("create", "TIMER trigger ims_fleet_sweep"),
        ("update", "async invocation"),
    ]
    function = fgs.functions[URN]
    assert (
        function["runtime"],
        function["handler"],
        function["memory_size"],
        function["timeout"],
        function["xrole"],
    ) == ("Python3.10", "index.handler", 128, 300, "imsguard-agency")
    assert '"IMSGUARD_REGION": "ap-southeast-1"' in function["user_data"]
    cts, timer = fgs.function_triggers[URN]
    assert cts["event_data"]["operations"] == [
        "IMS:ims:createImage",
        "IMS:ims:copyImage",
        "IMS:ims:updateImage",
        "IMS:image:createImage",
        "IMS:image:updateImage",
        "IMS:image:addTag",
        "IMS:image:deleteTag",
    ]
    assert timer["event_data"]["schedule"] == "1d"
    assert fgs.async_configs[URN]["max_async_retry_attempts"] == 2


def test_the_second_deploy_writes_nothing(fgs, tmp_path, package):
    deploy(fgs, template(tmp_path), package)
    fgs.reset_calls()

    steps = deploy(fgs, template(tmp_path), package)

    assert {s.action for s in steps} == {"keep"}
    assert writes(fgs) == []


def test_a_changed_trigger_status_is_updated_in_place(fgs, tmp_path, package):
    deploy(fgs, template(tmp_path), package)
    before = [t["trigger_id"] for t in fgs.function_triggers[URN]]
    fgs.reset_calls()

    steps = deploy(
        fgs, template(tmp_path, lambda d: d["triggers"][1].update(status="DISABLED")), package
    )

    assert [(s.action, s.what) for s in steps if s.action != "keep"] == [
        ("update", "TIMER trigger ims_fleet_sweep")
    ]
    assert writes(fgs) == [("PUT", "triggers")]
    assert [t["trigger_id"] for t in fgs.function_triggers[URN]] == before
    assert fgs.function_triggers[URN][1]["trigger_status"] == "DISABLED"


def test_changed_trigger_event_data_is_replaced(fgs, tmp_path, package):
    deploy(fgs, template(tmp_path), package)
    fgs.reset_calls()

    deploy(fgs, template(tmp_path, lambda d: d["triggers"][1].update(schedule="6h")), package)

    assert writes(fgs) == [("DELETE", "triggers"), ("POST", "triggers")]
    assert fgs.function_triggers[URN][-1]["event_data"]["schedule"] == "6h"
    assert len(fgs.function_triggers[URN]) == 2  # never a duplicate


def test_a_renamed_trigger_does_not_fire_twice(fgs, tmp_path, package):
    deploy(fgs, template(tmp_path), package)
    fgs.reset_calls()

    steps = deploy(
        fgs, template(tmp_path, lambda d: d["triggers"][0].update(name="ims_events")), package
    )

    # the new trigger first, then the old one goes: no event falls between them
    assert [(s.action, s.what) for s in steps if s.action != "keep"] == [
        ("create", "CTS trigger ims_events"),
        ("delete", "CTS trigger ims_image_events"),
    ]
    assert sorted(t["event_data"]["name"] for t in fgs.function_triggers[URN]) == [
        "ims_events",
        "ims_fleet_sweep",
    ]


def test_triggers_of_an_older_deployment_with_hyphenated_names_are_replaced(fgs, tmp_path, package):
    deploy(fgs, template(tmp_path), package)
    old = [
        {
            "trigger_id": "old-cts",
            "trigger_type_code": "CTS",
            "trigger_status": "ACTIVE",
            "event_data": {"name": "ims-image-events", "operations": ["IMS:ims:createImage"]},
        },
        {
            "trigger_id": "old-timer",
            "trigger_type_code": "TIMER",
            "trigger_status": "ACTIVE",
            "event_data": {"name": "ims-fleet-sweep", "schedule_type": "Rate", "schedule": "1d"},
        },
    ]
    fgs.function_triggers[URN] = old  # as imsguard 0.1's template left them
    fgs.reset_calls()

    steps = deploy(fgs, template(tmp_path), package)

    # the new triggers first, then the old ones go: no event falls between them
    assert [(s.action, s.what) for s in steps if s.action != "keep"] == [
        ("create", "CTS trigger ims_image_events"),
        ("create", "TIMER trigger ims_fleet_sweep"),
        ("delete", "CTS trigger ims-image-events"),
        ("delete", "TIMER trigger ims-fleet-sweep"),
    ]
    assert writes(fgs) == [("POST", "triggers")] * 2 + [("DELETE", "triggers")] * 2
    assert sorted(
        (t["trigger_type_code"], t["event_data"]["name"]) for t in fgs.function_triggers[URN]
    ) == [("CTS", "ims_image_events"), ("TIMER", "ims_fleet_sweep")]
    assert {s.action for s in deploy(fgs, template(tmp_path), package)} == {"keep"}


@pytest.mark.parametrize(
    ("trigger", "change"),
    [
        (0, {"name": "ims-image-events"}),
        (1, {"name": "1-sweep"}),
        (1, {"user_event": '{"since": "2026-11-01", "dry_run": true}' + " " * 2100}),
        (0, {"status": "DISABLED"}),
    ],
)
def test_triggers_functiongraph_would_refuse_are_refused_before_any_call(
    fgs, tmp_path, package, trigger, change
):
    with pytest.raises(TemplateError) as error:
        template(tmp_path, lambda d: d["triggers"][trigger].update(change))

    assert f"triggers.{trigger}." in str(error.value) and "(line " in str(error.value)
    assert fgs.calls == []


@pytest.mark.parametrize(
    ("event_data", "code"),
    [
        ({"name": "ims-image-events", "operations": ["IMS:ims:createImage"]}, "FSS.1319"),
        ({"name": "ims_image_events_2", "operations": []}, "FSS.1314"),
        ({"name": "ims_image_events", "operations": ["IMS:ims:createImage"]}, "FSS.1307"),
        ({"name": "x" * 65, "operations": ["IMS:ims:createImage"]}, "FSS.1317"),
        ({"name": "ims_2", "operations": ["IMS:ims;image:createImage;updateImage"]}, None),
    ],
)
def test_the_fake_functiongraph_takes_cts_triggers_as_documented(
    fgs, tmp_path, package, event_data, code
):
    deploy(fgs, template(tmp_path), package)
    client = build_client(None, fgs.fgs_endpoint, SAMPLE_PROJECT_ID, Credentials("AK", "SK"))
    request = CreateFunctionTriggerRequest(
        function_urn=URN,
        body=CreateFunctionTriggerRequestBody(
            trigger_type_code="CTS",
            trigger_status="ACTIVE",
            event_data=TriggerEventDataRequestBody(**event_data),
        ),
    )

    if code is None:
        client.create_function_trigger(request)
        return
    with pytest.raises(ServiceResponseException) as refused:
        client.create_function_trigger(request)

    assert refused.value.error_code == code


def test_no_write_for_what_only_looks_different(fgs, tmp_path, package):
    def change(data):
        data["triggers"][0]["operations"].reverse()  # the same operations, in another order
        data["async_invoke"]["on_failure"] = {"type": "SMN", "target": "urn:smn:x:y:z"}

    deploy(fgs, template(tmp_path, change), package)
    fgs.reset_calls()

    steps = deploy(fgs, template(tmp_path, change), package)

    assert {s.action for s in steps} == {"keep"} and writes(fgs) == []


def test_zip_code_is_sent_with_its_file_name(fgs, tmp_path, package):
    deploy(fgs, template(tmp_path), package)

    (create,) = [c for c in fgs.calls if c.method == "POST" and c.path.endswith("/functions")]
    assert create.body["code_filename"] == "imsguard.zip"
    assert create.body["code_type"] == "zip" and create.body["func_code"]["file"]


def test_new_code_and_settings_update_only_what_differs(fgs, tmp_path, package):
    deploy(fgs, template(tmp_path), package)
    fgs.reset_calls()
    package.write_bytes(package.read_bytes() + b"\n")

    steps = deploy(fgs, template(tmp_path, lambda d: d["function"].update(memorySize=512)), package)

    assert [(s.action, s.what) for s in steps if s.action != "keep"] == [
        ("update", "function configuration"),
        ("update", "function code"),
    ]
    assert steps[0].detail == "memory_size"
    assert writes(fgs) == [("PUT", "functions"), ("PUT", "functions")]


def test_a_failure_halfway_says_what_was_and_was_not_done(fgs, tmp_path, package):
    fgs.before_request = lambda method, path: (
        fgs.fail_next("PUT", 500, "FSS.0500", "internal error")
        if method == "POST" and path.endswith("/triggers/" + URN.replace(":", "%3A"))
        else None
    )

    with pytest.raises(DeployError) as failure:
        deploy(fgs, template(tmp_path), package)

    assert [s.what for s in failure.value.done] == [
        "function",
        "CTS trigger ims_image_events",
        "TIMER trigger ims_fleet_sweep",
    ]
    assert [s.what for s in failure.value.left] == ["async invocation"]
    assert "FSS.0500" in str(failure.value)
    assert URN in fgs.functions  # what was done stays working


def test_a_replacement_that_fails_halfway_is_reported_truly(fgs, tmp_path, package):
    deploy(fgs, template(tmp_path), package)
    fgs.fail_next("POST", 500, "FSS.0500", "internal error")

    with pytest.raises(DeployError) as failure:
        deploy(fgs, template(tmp_path, lambda d: d["triggers"][1].update(schedule="6h")), package)

    last_done, first_left = failure.value.done[-1], failure.value.left[0]
    assert (last_done.action, last_done.what) == ("delete", "TIMER trigger ims_fleet_sweep")
    assert (first_left.action, first_left.what) == ("create", "TIMER trigger ims_fleet_sweep")


def test_dry_run_prints_the_plan_and_changes_nothing(capsys, package, monkeypatch):
    def no_apply(self, steps):
        raise AssertionError("a dry run applied the plan")

    monkeypatch.setattr(Deployer, "apply", no_apply)

    status = main(["deploy", "--fake", "--dry-run", "--package", str(package)])

    out = capsys.readouterr().out
    assert status == 0
    assert "create   function: imsguard" in out
    assert "4 change(s) would reach FunctionGraph" in out


def test_a_package_for_another_python_is_refused(tmp_path, capsys, monkeypatch):
    package = tmp_path / "imsguard.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("pydantic_core/_pydantic_core.cpython-312-x86_64-linux-gnu.so", b"")
    monkeypatch.setattr("imsguard_tools.deploy.build_client", lambda *a: pytest.fail("called"))

    assert main(["deploy", "--fake", "--package", str(package)]) == 2
    assert "built for Python 3.12" in capsys.readouterr().err


def test_a_bad_template_stops_before_any_call(tmp_path, capsys, package):
    bad = tmp_path / "template.yaml"
    bad.write_text("templateVersion: 1\nfunction: {}\ntriggers: []\n")

    with FakeFunctionGraph(SAMPLE_PROJECT_ID, DEFAULT_REGION) as fgs:
        assert main(["deploy", "--template", str(bad), "--package", str(package)]) == 2
    assert "invalid template" in capsys.readouterr().err
    assert fgs.calls == []


def test_a_missing_package_is_a_clear_error(tmp_path, capsys):
    assert main(["deploy", "--fake", "--package", str(tmp_path / "none.zip")]) == 2
    assert "no package at" in capsys.readouterr().err


@pytest.mark.parametrize("echoed", [True, False])
def test_a_timers_user_event_is_compared_only_when_functiongraph_returns_it(
    fgs, tmp_path, package, echoed
):
    """Every documented TIMER answer leaves user_event out; the SDK's model would carry it."""
    fgs.echo_user_event = echoed
    deploy(fgs, template(tmp_path), package)
    fgs.reset_calls()
    changed = template(tmp_path, lambda d: d["triggers"][1].update(user_event='{"dry_run": true}'))

    steps = deploy(fgs, changed, package)

    timer = [s for s in steps if s.what == "TIMER trigger ims_fleet_sweep"]
    if echoed:
        assert next((s.action, s.detail) for s in timer) == ("delete", "its user_event changed")
        assert writes(fgs) == [("DELETE", "triggers"), ("POST", "triggers")]
    else:
        assert [(s.action, s.detail) for s in timer] == [
            (
                "keep",
                "unchanged (user_event not returned by FunctionGraph, so not compared: "
                "to change it, rename the trigger)",
            )
        ]
        assert writes(fgs) == []
    fgs.reset_calls()
    assert {s.action for s in deploy(fgs, changed, package)} == {"keep"}
    assert writes(fgs) == []


def test_a_timer_answered_with_a_null_user_event_is_not_replaced(fgs, tmp_path, package):
    deploy(fgs, template(tmp_path), package)
    timer = next(t for t in fgs.function_triggers[URN] if t["trigger_type_code"] == "TIMER")
    timer["event_data"]["user_event"] = None  # the SDK's model has the field; it may be null
    fgs.echo_user_event = True
    fgs.reset_calls()

    steps = deploy(fgs, template(tmp_path), package)

    assert {s.action for s in steps} == {"keep"} and writes(fgs) == []


def test_cts_operations_read_back_in_the_combined_form_are_the_same(fgs, tmp_path, package):
    deploy(fgs, template(tmp_path), package)
    cts = next(t for t in fgs.function_triggers[URN] if t["trigger_type_code"] == "CTS")
    cts["event_data"]["operations"] = [
        "IMS:ims:createImage;copyImage;updateImage",
        "IMS:image:createImage;updateImage;addTag;deleteTag",
    ]
    fgs.reset_calls()

    unchanged = deploy(fgs, template(tmp_path), package)
    fewer = deploy(fgs, template(tmp_path, lambda d: d["triggers"][0]["operations"].pop()), package)

    assert {s.action for s in unchanged} == {"keep"}
    assert next((s.action, s.detail) for s in fewer if s.action != "keep") == (
        "delete",
        "its operations changed",
    )


@pytest.mark.parametrize(
    ("kind", "event_data", "status", "code"),
    [
        (
            "TIMER",
            {"name": "1-sweep", "schedule_type": "Rate", "schedule": "1d"},
            "ACTIVE",
            "FSS.1109",
        ),
        (
            "TIMER",
            {"name": "sweep", "schedule_type": "Rate", "schedule": "1d", "user_event": "x" * 2048},
            "ACTIVE",
            "FSS.1109",
        ),
        (
            "CTS",
            {"name": "ims_events", "operations": ["IMS:ims:createImage"]},
            "DISABLED",
            "FSS.1305",
        ),
    ],
)
def test_the_fake_functiongraph_refuses_what_functiongraph_documents_it_refuses(
    fgs, tmp_path, package, kind, event_data, status, code
):
    deploy(fgs, template(tmp_path), package)
    client = build_client(None, fgs.fgs_endpoint, SAMPLE_PROJECT_ID, Credentials("AK", "SK"))

    with pytest.raises(ServiceResponseException) as refused:
        client.create_function_trigger(
            CreateFunctionTriggerRequest(
                function_urn=URN,
                body=CreateFunctionTriggerRequestBody(
                    trigger_type_code=kind,
                    trigger_status=status,
                    event_data=TriggerEventDataRequestBody(**event_data),
                ),
            )
        )

    assert refused.value.error_code == code
