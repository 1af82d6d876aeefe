"""template.yaml must describe the code that is actually here."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from imsguard import settings
from imsguard.context import LocalContext
from imsguard.events import IMAGE_TRACES, Sweep, parse_event
from imsguard.settings import load_settings

ROOT = Path(__file__).parents[1]


def test_template_points_at_the_real_handler_and_known_settings():
    template = yaml.safe_load((ROOT / "template.yaml").read_text())
    function = template["function"]

    module_name, function_name = function["handler"].split(".")
    assert (ROOT / function["codeRoot"] / f"{module_name}.py").is_file()
    assert callable(getattr(importlib.import_module(module_name), function_name))
    assert function["runtime"] in ("Python3.10", "Python3.12")
    assert 3 <= function["timeout"] <= 900 and function["memorySize"] >= 128
    known = {value for name, value in vars(settings).items()
             if name.isupper() and isinstance(value, str) and value.startswith("IMSGUARD_")}
    assert set(function["settings"]) <= known
    assert load_settings(LocalContext(user_data=function["settings"]))  # all values valid
    assert (ROOT / function["codeRoot"] / function["settings"]["IMSGUARD_POLICY"]).is_file()
    cts, timer = template["triggers"]
    assert cts["type"] == "CTS"
    traced = {operation.split(":")[2] for operation in cts["operations"]}
    assert traced == IMAGE_TRACES
    assert timer["type"] == "TIMER"
    sweep = parse_event({"trigger_type": "TIMER", "user_event": timer["user_event"]})
    assert isinstance(sweep, Sweep)
    assert function["timeout"] > float(function["settings"]["IMSGUARD_SAFETY_MARGIN_SECONDS"])
