"""template.yaml must describe the code that is here, and bad templates are refused."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from imsguard.events import IMAGE_TRACES
from imsguard.template import TemplateError, load_template

ROOT = Path(__file__).parents[1]


def test_the_template_is_valid_and_points_at_the_real_handler():
    template = load_template(ROOT / "template.yaml")

    module_name, function_name = template.function.handler.split(".")
    assert (ROOT / template.function.codeRoot / f"{module_name}.py").is_file()
    assert callable(getattr(importlib.import_module(module_name), function_name))
    policy = template.function.settings["IMSGUARD_POLICY"]
    assert (ROOT / template.function.codeRoot / policy).is_file()
    cts, timer = template.triggers
    assert {op.split(":")[2] for op in cts.operations} == IMAGE_TRACES
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


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.update(extra=1), "extra: Extra inputs"),
    (lambda d: d["function"].update(runtime="Python2.7"), "function.runtime"),
    (lambda d: d["function"].update(memorySize=300), "not a FunctionGraph memory size"),
    (lambda d: d["function"].update(timeout=1), "function.timeout"),
    (lambda d: d["function"].update(handler="main.run"), "function.handler"),
    (lambda d: d["function"]["settings"].update(IMSGUARD_DRY_RUN="maybe"), "IMSGUARD_DRY_RUN"),
    (lambda d: d["function"]["settings"].update(OTHER="x"), "not imsguard settings"),
    (lambda d: d["function"]["agency"]["permissions"].append("ims:images:delete"),
     "not actions imsguard calls"),
    (lambda d: d["triggers"][0].update(operations=["createImage"]),
     "is not IMS:<resource type>:<trace name>"),
    (lambda d: d["triggers"][0].update(operations=["IMS:ims:deleteImage"]),
     "imsguard handles only"),
    (lambda d: d["triggers"][1].update(schedule="every day"), "not a rate"),
    (lambda d: d["triggers"][1].update(schedule="999d"), "not a rate"),
    (lambda d: d["triggers"][1].update(schedule="61m"), "1-60m, 1-24h or 1-30d"),
    (lambda d: d["triggers"][1].update(schedule="25h"), "not a rate"),
    (lambda d: d["triggers"][1].update(schedule="31d"), "not a rate"),
    (lambda d: d["function"]["settings"].update(IMSGUARD_POLICY="nope.yaml"),
     "IMSGUARD_POLICY: nope.yaml is not a file"),
    (lambda d: d["triggers"][1].update(user_event="{\"dry_run\": \"yes\"}"), "dry_run"),
    (lambda d: d["triggers"][1].update(type="OBS"), "triggers.1"),
    (lambda d: d["triggers"][1].update(name=d["triggers"][0]["name"]), "share a name"),
    (lambda d: d.update(async_invoke={"max_retries": 5}), "async_invoke.max_retries"),
    (lambda d: d.update(async_invoke={"on_failure": {"type": "EMAIL", "target": "x"}}),
     "async_invoke.on_failure.type"),
])
def test_bad_templates_are_refused_by_field(tmp_path, change, words):
    with pytest.raises(TemplateError) as error:
        load_template(write(tmp_path, change))

    assert words in str(error.value)
