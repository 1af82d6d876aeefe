"""template.yaml must describe the code that is actually here."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from imsguard import settings
from imsguard.events import IMAGE_TRACES

ROOT = Path(__file__).parents[1]


def test_template_points_at_the_real_handler_and_known_settings():
    template = yaml.safe_load((ROOT / "template.yaml").read_text())
    function = template["function"]

    module_name, function_name = function["handler"].split(".")
    assert (ROOT / function["codeRoot"] / f"{module_name}.py").is_file()
    assert callable(getattr(importlib.import_module(module_name), function_name))
    assert function["runtime"] in ("Python3.10", "Python3.12")
    assert 3 <= function["timeout"] <= 900 and function["memorySize"] >= 128
    known = {settings.REGION, settings.POLICY, settings.DRY_RUN, settings.IMS_ENDPOINT,
             settings.PROJECT_ID, settings.LOG_LEVEL, settings.SAFETY_MARGIN,
             settings.MAX_WAIT, settings.UEFI_FROM_IMS}
    assert set(function["settings"]) <= known
    assert (ROOT / function["codeRoot"] / function["settings"]["IMSGUARD_POLICY"]).is_file()
    (trigger,) = template["triggers"]
    assert trigger["type"] == "CTS"
    traced = {operation.split(":")[2] for operation in trigger["operations"]}
    assert traced == IMAGE_TRACES
    assert function["timeout"] > float(function["settings"]["IMSGUARD_SAFETY_MARGIN_SECONDS"])
