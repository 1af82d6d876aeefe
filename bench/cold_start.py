"""Cold start of the imsguard function, compared with importing its dependencies alone.

What is measured
----------------
FunctionGraph starts a new Python process for a cold container, imports
``index`` and calls ``index.handler`` once. Most of that time goes to importing
the Huawei Cloud SDK, pydantic and PyYAML, which imsguard cannot avoid. This
benchmark shows how much imsguard adds on top of that floor:

* **deps-only**: a fresh interpreter that only imports the runtime
  dependencies (``huaweicloudsdkims.v2``, ``huaweicloudsdkcore``, ``yaml``,
  ``pydantic.BaseModel``) and defines and builds one trivial pydantic model (a
  bare ``import pydantic`` is lazy and would understate the floor).
* **function**: a fresh interpreter that imports ``function/index.py`` and
  handles one CTS ``createImage`` event along the real path: parse the event,
  load and validate the policy, build the SDK client, one GET and one PATCH
  against the fake IMS that this (parent) process serves on 127.0.0.1.

Each run is a new subprocess of ``sys.executable`` with a copy of the
environment (plus the ``IMSGUARD_*`` and ``HUAWEICLOUD_SDK_*`` variables for
function runs). ``PYTHONDONTWRITEBYTECODE`` is removed and one untimed warm-up
of each kind runs first, so .pyc caches exist as they do on FunctionGraph.
Baseline and function runs alternate, so drift (CPU frequency, other load)
hits both alike.

Two times are taken per run:

* wall: measured by the parent around the whole subprocess, so it includes
  interpreter start-up and shutdown. The headline ratio uses it.
* in-child: ``time.perf_counter()`` from the first line of the child script to
  the end of its work (no interpreter start-up, no shutdown).

Peak memory is the child's ``ru_maxrss``. Guard rails: the function child
exits non-zero unless the handler reports ``outcome == "updated"``, and the
parent checks that the fake saw exactly one GET and one PATCH per run, so a
failing (and faster) path is never measured. The exit status is 1 if any run
failed, else 0 whatever the ratio: this is a measurement, not a test.

Usage: python bench/cold_start.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FUNCTION_DIR = ROOT / "function"
EVENT_PATH = ROOT / "tests" / "events" / "cts_create_image.json"
POLICY_PATH = FUNCTION_DIR / "policy.yaml"

sys.path.insert(0, str(FUNCTION_DIR))
from imsguard_tools.testing import EXAMPLE_IMAGE_ID, SAMPLE_PROJECT_ID, FakeIms  # noqa: E402

TARGET_RATIO = 1.15
RESULT_MARKER = "COLD_START_RESULT "  # the prefix _REPORT prints
CHILD_TIMEOUT_S = 60

# Both children end with this: one marker line of JSON. json and resource are imported
# after the clock stops, so their (equal) cost stays out of the in-child times.
_REPORT = """
import json, resource
print("COLD_START_RESULT " + json.dumps({
    "import_ms": (t_import - t0) * 1000,
    "child_ms": (t_end - t0) * 1000,
    "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "outcome": outcome,
}), flush=True)
"""

BASELINE_CHILD = (
    """\
import time
t0 = time.perf_counter()
import huaweicloudsdkims.v2
import huaweicloudsdkcore
import yaml
from pydantic import BaseModel
t_import = time.perf_counter()

class Probe(BaseModel):
    name: str
    size: int = 0

Probe(name="probe", size=1)
t_end = time.perf_counter()
outcome = None
"""
    + _REPORT
)

# argv: the function directory (FunctionGraph's code root), then the event file.
FUNCTION_CHILD = (
    """\
import time
t0 = time.perf_counter()
import sys
sys.path.insert(0, sys.argv[1])
import index
t_import = time.perf_counter()
import json
with open(sys.argv[2], encoding="utf-8") as f:
    event = json.load(f)
result = index.handler(event, None)  # settings and credentials from the environment
t_end = time.perf_counter()
outcome = (result.get("results") or [{}])[0].get("outcome")
"""
    + _REPORT
    + """
if outcome != "updated":
    print("handler did not update the image: " + json.dumps(result, default=str),
          file=sys.stderr)
    sys.exit(3)
"""
)


class RunFailed(Exception):
    """A child exited badly, printed no result, or the fake saw unexpected calls."""


def base_env() -> dict[str, str]:
    """The parent's environment without anything that would change what is measured."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IMSGUARD_", "HUAWEICLOUD_SDK_"))
        and key not in ("RUNTIME_PROJECT_ID", "PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME")
    }
    # Never send the loopback calls through a proxy.
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = ",".join(filter(None, [env.get(key), "127.0.0.1", "localhost"]))
    return env


def function_env(endpoint: str) -> dict[str, str]:
    env = base_env()
    env.update(
        {
            "IMSGUARD_REGION": "ap-southeast-1",
            "IMSGUARD_PROJECT_ID": SAMPLE_PROJECT_ID,
            "IMSGUARD_IMS_ENDPOINT": endpoint,
            "IMSGUARD_DRY_RUN": "false",
            "IMSGUARD_POLICY": str(POLICY_PATH),
            "IMSGUARD_LOG_LEVEL": "INFO",
            "HUAWEICLOUD_SDK_AK": "BENCH-AK",
            "HUAWEICLOUD_SDK_SK": "BENCH-SK",
            "HUAWEICLOUD_SDK_SECURITY_TOKEN": "BENCH-TOKEN",
        }
    )
    return env


def run_child(code: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run one fresh interpreter; return its reported figures plus the parent's wall time."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise RunFailed(f"child timed out after {CHILD_TIMEOUT_S} s") from None
    wall_ms = (time.perf_counter() - start) * 1000
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RunFailed(f"child exited with status {proc.returncode}:\n{tail}")
    sample = json.loads(lines[-1][len(RESULT_MARKER) :])
    sample["wall_ms"] = wall_ms
    if sys.platform == "darwin":  # ru_maxrss is bytes on macOS, KiB on Linux
        sample["maxrss_kb"] /= 1024
    return sample


def run_function(fake: FakeIms, original: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Reset the example image so the run does the same GET + PATCH, then check it did."""
    fake.images[EXAMPLE_IMAGE_ID] = copy.deepcopy(original)
    fake.reset_calls()
    sample = run_child(FUNCTION_CHILD, env, str(FUNCTION_DIR), str(EVENT_PATH))
    calls = [(call.method, call.path, call.status) for call in fake.calls]
    if len(fake.reads) != 1 or len(fake.patches) != 1 or len(fake.calls) != 2:
        raise RunFailed(f"expected exactly 1 GET and 1 PATCH, the fake saw {calls}")
    if any(status != 200 for _, _, status in calls):
        raise RunFailed(f"the fake answered with an error: {calls}")
    return sample


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [s["wall_ms"] for s in samples]
    figures = {
        "wall_ms_median": statistics.median(walls),
        "wall_ms_min": min(walls),
        "wall_ms_max": max(walls),
        "child_ms_median": statistics.median(s["child_ms"] for s in samples),
        "import_ms_median": statistics.median(s["import_ms"] for s in samples),
        "peak_rss_mb_median": statistics.median(s["maxrss_kb"] for s in samples) / 1024,
    }
    figures = {key: round(value, 2) for key, value in figures.items()}
    figures["wall_ms"] = [round(w, 2) for w in walls]
    return figures


def measure(runs: int) -> dict[str, Any]:
    fake = FakeIms.seeded()
    original = copy.deepcopy(fake.images[EXAMPLE_IMAGE_ID])
    baseline_env = base_env()
    samples: dict[str, list[dict[str, Any]]] = {"baseline": [], "function": []}
    with fake.serve() as endpoint:
        env = function_env(endpoint)
        run_child(BASELINE_CHILD, baseline_env)  # warm-ups: write the .pyc files
        run_function(fake, original, env)
        for _ in range(runs):
            samples["baseline"].append(run_child(BASELINE_CHILD, baseline_env))
            samples["function"].append(run_function(fake, original, env))
    baseline = summarize(samples["baseline"])
    function = summarize(samples["function"])
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "runs": runs,
        "baseline": baseline,
        "function": function,
        "ratio_wall": round(function["wall_ms_median"] / baseline["wall_ms_median"], 3),
        "ratio_in_child": round(function["child_ms_median"] / baseline["child_ms_median"], 3),
        "ratio_rss": round(function["peak_rss_mb_median"] / baseline["peak_rss_mb_median"], 3),
        "target_ratio_wall": TARGET_RATIO,
    }


def print_table(figures: dict[str, Any]) -> None:
    print(
        f"imsguard cold start: {figures['python']}, {figures['runs']} runs each "
        "(alternating, fresh interpreter per run)"
    )
    print()
    print(f"{'':<10} {'wall ms (parent)':^26}  {'in-child ms':>11}  {'peak RSS MB':>11}")
    print(f"{'':<10} {'median':>8} {'min':>8} {'max':>8}  {'median':>11}  {'median':>11}")
    for label, key in (("deps-only", "baseline"), ("function", "function")):
        row = figures[key]
        print(
            f"{label:<10} {row['wall_ms_median']:>8.1f} {row['wall_ms_min']:>8.1f} "
            f"{row['wall_ms_max']:>8.1f}  {row['child_ms_median']:>11.1f}  "
            f"{row['peak_rss_mb_median']:>11.1f}"
        )
    function = figures["function"]
    print()
    print(
        f"function in-child split (median): import index {function['import_ms_median']:.1f} ms, "
        f"handler {function['child_ms_median'] - function['import_ms_median']:.1f} ms"
    )
    print(
        f"ratio (median wall, function / deps-only): {figures['ratio_wall']:.2f}  "
        f"target <= {TARGET_RATIO:.2f}"
    )
    print(f"ratio (median in-child, function / deps-only): {figures['ratio_in_child']:.2f}")
    print(f"ratio (median peak RSS, function / deps-only): {figures['ratio_rss']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=15, help="timed runs of each kind (default: 15)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        figures = measure(args.runs)
    except RunFailed as exc:
        print(f"cold_start: a run failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_table(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
