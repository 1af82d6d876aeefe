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


def run_fresh(code: str, **settings: str) -> str:
    """Run ``code`` in a new interpreter with this checkout's runtime and tools (not an
    installed copy) and these settings in its environment; its standard output."""
    import os
    import subprocess
    import sys

    from imsguard_tools.testing import SAMPLE_PROJECT_ID

    root = Path(__file__).resolve().parents[1]
    env = {
        "IMSGUARD_REGION": "ap-southeast-1",
        "RUNTIME_PROJECT_ID": SAMPLE_PROJECT_ID,
        "PATH": "",
        "PYTHONPATH": os.pathsep.join(str(root / part) for part in ("function", "tools")),
        **settings,
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=root
    )
    return done.stdout


def modules_after_an_event(event_file: str = "cts_create_image.json", **settings: str) -> set[str]:
    """The modules loaded once a new interpreter has handled one sample event against the
    seeded fake IMS: what an ordinary event costs at cold start."""
    code = (
        "import sys, json, imsguard.app\n"
        "from imsguard_tools.testing import FakeIms\n"
        "from imsguard_tools.local_context import LocalContext\n"
        f"event = json.load(open('tests/events/{event_file}'))\n"
        "with FakeIms.seeded() as f:\n"
        "    imsguard.app.handler(event, LocalContext(None, 'a'*8, 'b'*8))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    return set(json.loads(run_fresh(code, **settings).strip().splitlines()[-1]))
