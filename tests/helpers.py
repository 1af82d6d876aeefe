"""What tests share besides fixtures: the sample events, test secrets, small helpers.
Tests import these from here (fixtures come from conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imsguard_tools.local_context import LocalContext

EVENTS = Path(__file__).parent / "events"
SECRETS = ("AK-TEST-0001", "SK-TEST-SECRET-0002", "TOKEN-TEST-SECRET-0003")


def use_policy(context: LocalContext, folder: Path, text: str) -> Path:
    """Write a policy file and make the context's function use it."""
    path = folder / "policy.yaml"
    path.write_text(text)
    context.user_data["IMSGUARD_POLICY"] = str(path)
    return path


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))
