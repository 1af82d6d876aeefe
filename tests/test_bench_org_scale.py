"""bench/org_scale.py runs, at tiny sizes, and its JSON has the projection's keys (a smoke
test: the figures themselves are the script's to print, not a test's to judge)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "org_scale.py"


@pytest.mark.bench
def test_org_scale_runs_and_projects() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMSGUARD_", "RUNTIME_"))}
    sizes = ["--measure-sizes", "1x0,2x0,1x20"]
    projected = ["--shards", "120", "--images", "10000", "--concurrency", "50", "--timeout-s", "30"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", *sizes, *projected],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    measured, projection = figures["measured"], figures["projection"]
    assert measured["counts_ok"] is True
    assert {"shard_fixed_s", "per_image_s", "per_patch_s", "fix_share"} <= measured.keys()
    fan_out, sequential = projection["fan_out"], projection["sequential"]
    assert {"wall_s", "invocations", "gb_s", "ims_requests"} <= fan_out.keys()
    assert {"wall_s", "ims_requests"} <= sequential.keys()
    assert {"ratio", "shard", "coordinator"} <= projection.keys()
    shard = projection["shard"]
    # 10,000 images: 20 list pages; at 20/s with a 30 s timeout, more than one hop
    assert shard["list_requests"] == 20 and shard["hops"] > 1
    assert projection["coordinator"]["hops"] == 3  # ceil(120 / 50)
    assert fan_out["invocations"] == 120 * shard["hops"] + 3
    assert fan_out["ims_requests"] == sequential["ims_requests"] == 120 * shard["ims_requests"]
    assert sequential["wall_s"] > fan_out["wall_s"]
    bounded = projection["bounded"]  # the coordinator that keeps its run in OBS
    assert {"wall_s", "invocations", "gb_s", "ims_requests"} <= bounded.keys()
    assert fan_out["wall_s"] < bounded["wall_s"] < sequential["wall_s"]
    assert bounded["gb_s"] > fan_out["gb_s"]  # the coordinator waits, and is billed for it
