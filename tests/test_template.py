"""template.yaml must describe the code that is here, and bad templates are refused."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from imsguard.events import IMAGE_TRACES
from imsguard_tools.template import TemplateError, load_template

ROOT = Path(__file__).parents[1]


def test_the_template_is_valid_and_points_at_the_real_handler():
    template = load_template(ROOT / "template.yaml")

    module_name, function_name = template.function.handler.split(".")
    assert (ROOT / template.function.codeRoot / f"{module_name}.py").is_file()
    assert callable(getattr(importlib.import_module(module_name), function_name))
    policy = template.function.settings["IMSGUARD_POLICY"]
    assert (ROOT / template.function.codeRoot / policy).is_file()
    cts, timer = template.triggers
    subscribed = {tuple(op.split(":")[1:]) for op in cts.operations}
    assert subscribed == {
        (kind, trace) for kind, traces in IMAGE_TRACES.items() for trace in traces
    }
    assert timer.type == "TIMER"
    margin = float(template.function.settings["IMSGUARD_SAFETY_MARGIN_SECONDS"])
    assert template.function.timeout > margin


def write(tmp_path, change):
    data = yaml.safe_load((ROOT / "template.yaml").read_text())
    change(data)
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(data))
    (tmp_path / "function").mkdir(exist_ok=True)
    (tmp_path / "function" / "policy.yaml").write_text("")  # where the template says it is
    return path


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.update(extra=1), "extra (line 4): Extra inputs"),
        (lambda d: d["function"].update(runtime="Python2.7"), "function.runtime"),
        (lambda d: d["function"].update(memorySize=300), "not a FunctionGraph memory size"),
        (lambda d: d["function"].update(timeout=1), "function.timeout"),
        (lambda d: d["function"].update(handler="main.run"), "function.handler"),
        (lambda d: d["function"]["settings"].update(IMSGUARD_DRY_RUN="maybe"), "IMSGUARD_DRY_RUN"),
        (
            lambda d: d["function"]["settings"].update(OTHER="x"),
            "function.settings.OTHER (line 25): 'OTHER' is not an imsguard setting",
        ),
        (
            lambda d: d["function"]["agency"]["permissions"].append("ims:images:delete"),
            "['ims:images:delete'] are not actions imsguard's calls need",
        ),
        (
            lambda d: d["function"]["agency"]["permissions"].append("ims:osVersions:list"),
            "['ims:osVersions:list'] are not actions",
        ),  # no such IMS action
        (
            lambda d: d["function"]["agency"]["permissions"].append("ims:images:get"),
            "['ims:images:get'] are not actions",
        ),  # authorizes only GET /v2/images/{id}
        (
            lambda d: d["function"]["agency"]["permissions"].remove("ims:images:update"),
            "['ims:images:update'] are needed and missing",
        ),
        (
            lambda d: d["function"]["settings"].update(IMSGUARD_SWEEP_CONTINUE="false"),
            "['functiongraph:function:invokeAsync'] are not actions",
        ),
        (
            lambda d: d["triggers"][0].update(operations=["createImage"]),
            "is not IMS:<resource type>:<trace name>",
        ),
        (
            lambda d: d["triggers"][0].update(operations=["IMS:ims:deleteImage"]),
            "imsguard handles only",
        ),
        (
            lambda d: d["triggers"][0].update(operations=["IMS:image:copyImage"]),
            "imsguard handles only ['addTag', 'createImage', 'deleteTag', 'updateImage'] on "
            "resource type 'image'",
        ),
        (lambda d: d["triggers"][0].update(operations=["IMS:server:createImage"]), "not 'server'"),
        (lambda d: d["triggers"][0].update(operations=["IMS:ims:createImage"] * 2), "listed twice"),
        (
            lambda d: d["triggers"][0].update(name="ims-image-events"),
            "'ims-image-events': FunctionGraph takes only letters, "
            "digits and underscores in CTS trigger names, at most 64 (try 'ims_image_events')",
        ),
        (lambda d: d["triggers"][0].update(name="x" * 65), "at most 64"),
        (lambda d: d["triggers"][0].update(status="DISABLED"), "triggers.0.status (line"),
        (lambda d: d["triggers"][1].update(name="1_sweep"), "starts with a letter"),
        (
            lambda d: d["triggers"][1].update(user_event='{"since": "2026-11-01"}' + " " * 2030),
            "bytes: FunctionGraph keeps a timer's user_event under 2 KB",
        ),
        (lambda d: d["triggers"][1].update(schedule="every day"), "not a rate"),
        (lambda d: d["triggers"][1].update(schedule="999d"), "not a rate"),
        (lambda d: d["triggers"][1].update(schedule="61m"), "1-60m, 1-24h or 1-30d"),
        (lambda d: d["triggers"][1].update(schedule="25h"), "not a rate"),
        (lambda d: d["triggers"][1].update(schedule="31d"), "not a rate"),
        (
            lambda d: d["function"]["settings"].update(IMSGUARD_POLICY="nope.yaml"),
            "nope.yaml is not a file",
        ),
        (lambda d: d["triggers"][1].update(user_event='{"dry_run": "yes"}'), "dry_run"),
        (lambda d: d["triggers"][1].update(type="OBS"), "triggers.1"),
        (
            lambda d: d["triggers"][1].update(name=d["triggers"][0]["name"]),
            "two triggers share the name",
        ),
        (lambda d: d.update(async_invoke={"max_retries": 5}), "async_invoke.max_retries"),
        (
            lambda d: d.update(async_invoke={"on_failure": {"type": "EMAIL", "target": "x"}}),
            "async_invoke.on_failure.type",
        ),
    ],
)
def test_bad_templates_are_refused_by_field_and_line(tmp_path, change, words):
    with pytest.raises(TemplateError) as error:
        load_template(write(tmp_path, change))

    assert words in str(error.value)
    assert all("(line " in problem for problem in error.value.problems)


@pytest.mark.parametrize(
    ("change", "field", "key"),
    [
        (
            lambda d: d["triggers"][1].update(name="ims_image_events"),
            "triggers.1.name",
            "- name: ims_image_events",
        ),
        (
            lambda d: d["triggers"][0].update(name="ims-events"),
            "triggers.0.name",
            "- name: ims-events",
        ),
        (
            lambda d: d["function"]["settings"].update(IMSGUARD_POLICY="nope.yaml"),
            "function.settings.IMSGUARD_POLICY",
            "IMSGUARD_POLICY: nope.yaml",
        ),
        (
            lambda d: d["function"]["agency"]["permissions"].append("ims:images:get"),
            "function.agency.permissions",
            "- ims:images:list",
        ),  # the list's first line
    ],
)
def test_each_problem_names_the_line_of_its_field(tmp_path, change, field, key):
    path = write(tmp_path, change)
    lines = path.read_text().splitlines()
    wanted = max(
        number
        for number, text in enumerate(lines, 1)
        if text.strip() == key.strip() or text.strip().startswith(key)
    )

    with pytest.raises(TemplateError) as error:
        load_template(path)

    assert any(
        problem.startswith(f"{field} (line {wanted}):") for problem in error.value.problems
    ), error.value.problems


def test_the_job_action_named_in_one_edition_is_allowed_but_never_required(tmp_path):
    with_it = load_template(
        write(
            tmp_path,
            lambda d: d["function"]["agency"]["permissions"].append("ims:imageJobs:getPercentage"),
        )
    )

    assert "ims:imageJobs:getPercentage" in with_it.function.agency.permissions
    assert (
        "ims:imageJobs:getPercentage"
        not in load_template(ROOT / "template.yaml").function.agency.permissions
    )


def test_the_template_file_is_read_strictly(tmp_path):
    path = tmp_path / "template.yaml"
    path.write_text((ROOT / "template.yaml").read_text() + "templateVersion: 1\n")

    with pytest.raises(TemplateError) as error:
        load_template(path)

    assert "duplicate key 'templateVersion'" in str(error.value)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (
            "IMSGUARD_DRYRUN",
            "'IMSGUARD_DRYRUN' is not a known imsguard setting; did you mean IMSGUARD_DRY_RUN?",
        ),
        ("IMSGUARD_Dry_Run", "did you mean IMSGUARD_DRY_RUN?"),
        ("IMSGUARD_COLOUR", "'IMSGUARD_COLOUR' is not a known imsguard setting"),
    ],
)
def test_a_mistyped_setting_is_refused_by_name_and_line(tmp_path, name, words):
    """The README's emergency brake, mistyped, must not deploy a function that enforces."""
    path = write(tmp_path, lambda d: d["function"]["settings"].update({name: "true"}))
    line = next(
        n
        for n, text in enumerate(path.read_text().splitlines(), 1)
        if text.strip().startswith(f"{name}:")
    )

    with pytest.raises(TemplateError) as error:
        load_template(path)

    (problem,) = error.value.problems
    assert problem.startswith(f"function.settings.{name} (line {line}): ")
    assert words in problem


def test_every_mistyped_setting_is_reported(tmp_path):
    path = write(
        tmp_path,
        lambda d: d["function"]["settings"].update(
            IMSGUARD_DRYRUN="true", IMSGUARD_REGOIN="eu-west-101"
        ),
    )

    with pytest.raises(TemplateError) as error:
        load_template(path)

    assert [p.split(" (line")[0] for p in error.value.problems] == [
        "function.settings.IMSGUARD_DRYRUN",
        "function.settings.IMSGUARD_REGOIN",
    ]


def test_a_setting_given_twice_is_refused_with_its_line(tmp_path):
    text = (ROOT / "template.yaml").read_text()
    text = text.replace(
        '    IMSGUARD_DRY_RUN: "false"',
        '    IMSGUARD_DRY_RUN: "true"\n    IMSGUARD_DRY_RUN: "false"',
    )
    path = tmp_path / "template.yaml"
    path.write_text(text)
    line = next(
        n
        for n, t in enumerate(text.splitlines(), 1)
        if t.startswith('    IMSGUARD_DRY_RUN: "false"')
    )

    with pytest.raises(TemplateError) as error:
        load_template(path)

    assert "duplicate key 'IMSGUARD_DRY_RUN'" in str(error.value)
    assert f"line {line}" in str(error.value)


@pytest.mark.parametrize(
    "environment",
    [
        {"IMSGUARD_PROJECT_ID": "not-a-project"},
        {"IMSGUARD_DRY_RUN": "maybe"},
        {"IMSGUARD_LOG_LEVEL": "LOUD"},
        {"IMSGUARD_FUNCTION_URN": "nope"},
        {"IMSGUARD_SWEEP_RATE": "-1"},
        {"IMSGUARD_REGION": "Not A Region"},
    ],
)
def test_the_developers_shell_never_changes_template_validation(tmp_path, monkeypatch, environment):
    from imsguard_tools.template import template_settings

    monkeypatch.delenv("RUNTIME_PROJECT_ID")
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    # an empty value means "not set": the function then reads its own environment, not ours
    path = write(tmp_path, lambda d: d["function"]["settings"].update(IMSGUARD_DRY_RUN=""))

    assert load_template(ROOT / "template.yaml").function.settings["IMSGUARD_DRY_RUN"] == "false"
    assert load_template(path).function.settings["IMSGUARD_DRY_RUN"] == ""
    assert template_settings(ROOT / "template.yaml")["IMSGUARD_REGION"] == "ap-southeast-1"
