"""A fleet sweep against the fake IMS, compared with the bare SDK doing the same requests.

What is measured
----------------
The fake IMS runs in its own process (a real HTTP server on 127.0.0.1), holding
``--images`` generated private images, about 30% of them out of line with the default
policy. Each measured run is a fresh process:

* **sweep**: ``imsguard``'s handler on ``{"action": "sweep"}`` (listing page by page,
  evaluating, the guardrail, PATCHes with the default concurrency of 4, the rate limit
  lifted), with ``--concurrency`` 1 as well, to see the machinery without parallelism;
* **baseline**: the bare SDK making the same requests: it pages through the same images
  and sends the same PATCH bodies (recorded by the fake during the sweep), one after
  another.

Every run gets a new fake process, so each starts from the same fleet. The fake answers
as IMS documents its list (no ``page_info``), so a listing ends with an empty page. The
fake counts the requests it answered: the list requests must equal ceil(N / page size)
+ 1 and the PATCH requests the number of images out of line. Wall time is measured
around the work inside the child; peak RSS is the child's ``ru_maxrss``. The ratio is
median sweep time over median baseline time.

Usage: python bench/sweep.py [--images 10000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "0b1e494e2660441a957313163095fe5c"
PAGE_SIZE = 500

SERVER = """\
import json, sys
sys.path.insert(0, sys.argv[1])
from contextlib import nullcontext
from imsguard_tools.testing import FakeIms, FakeObs
fake = FakeIms(project_id=sys.argv[2])
bad = fake.add_fleet(int(sys.argv[3]))
obs = FakeObs(("bench-reports",)) if sys.argv[5] == "reports" else None  # the OBS sink's
with fake.serve() as endpoint, (obs.serve() if obs else nullcontext()) as obs_endpoint:
    print(json.dumps({"endpoint": endpoint, "obs": obs_endpoint, "bad": bad}), flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
lists = [c for c in fake.calls if c.method == "GET" and c.path == "/v2/cloudimages"]
patches = [{"id": c.path.rsplit("/", 1)[1], "body": c.body} for c in fake.calls
           if c.method == "PATCH" and c.status == 200]
with open(sys.argv[4], "w") as out:
    json.dump({"lists": len(lists), "patches": patches}, out)
"""

SWEEP = """\
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from imsguard.app import handler
from imsguard_tools.local_context import LocalContext
import imsguard.ims, imsguard.sweep  # the SDK loads before the clock starts, as in the baseline
reports = ({"IMSGUARD_REPORT_BUCKET": "bench-reports", "IMSGUARD_OBS_ENDPOINT": sys.argv[5]}
           if len(sys.argv) > 5 else {})
context = LocalContext(access_key="AK", secret_key="SK", security_token="TOKEN",
    timeout_ms=3_600_000, user_data={
    "IMSGUARD_IMS_ENDPOINT": sys.argv[2], "RUNTIME_PROJECT_ID": sys.argv[3],
    "IMSGUARD_SWEEP_RATE": "1000", "IMSGUARD_SWEEP_CONCURRENCY": sys.argv[4],
    "IMSGUARD_LOG_LEVEL": "WARNING", **reports})
started = time.perf_counter()
report = handler({"action": "sweep"}, context)
wall = time.perf_counter() - started
assert report["status"] == "ok" and "continuation" not in report, report.get("error")
assert "error" not in report.get("sinks", {}).get("obs", {}), report["sinks"]
print(json.dumps({"wall": wall, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "examined": report["examined"], "updated": report["summary"].get("updated", 0)}))
"""

BASELINE = """\
import json, resource, sys, time
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkims.v2 import (ImsClient, ListImagesRequest, UpdateImageRequest,
                                  UpdateImageRequestBody)
with open(sys.argv[4]) as f:
    patches = json.load(f)["patches"]
config = HttpConfig.get_default_config()
config.retry_times = 0
client = (ImsClient.new_builder().with_credentials(BasicCredentials("AK", "SK", sys.argv[3]))
          .with_http_config(config).with_endpoints([sys.argv[2]]).build())
started = time.perf_counter()
marker, listed = None, 0
while True:
    page = json.loads(client.list_images(ListImagesRequest(
        imagetype="private", status="active", limit=int(sys.argv[5]), marker=marker)).raw_content)
    listed += len(page["images"])
    if not page["images"]:  # IMS documents no end-of-list field: an empty page ends it
        break
    marker = page["images"][-1]["id"]
for patch in patches:
    client.update_image(UpdateImageRequest(image_id=patch["id"], body=[
        UpdateImageRequestBody(op=o["op"], path=o["path"], value=o["value"])
        for o in patch["body"]]))
wall = time.perf_counter() - started
print(json.dumps({"wall": wall, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "examined": listed, "updated": len(patches)}))
"""


def child_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMSGUARD_", "HUAWEICLOUD_SDK_", "RUNTIME_"))
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["NO_PROXY"] = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    return env


def run(
    kind: str,
    images: int,
    concurrency: int,
    recorded: Path | None,
    workdir: Path,
    reports: bool = False,
) -> dict[str, Any]:
    """One measured run against a fresh fake; the fake's request counts come back too.
    ``reports``: the sweep writes its OBS report, to a fake OBS in the fake IMS's process."""
    counts_file = workdir / f"counts-{kind}.json"
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVER,
            str(ROOT / "function"),
            PROJECT,
            str(images),
            str(counts_file),
            "reports" if reports else "-",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        started = json.loads(server.stdout.readline())
        endpoint = started["endpoint"]
        if kind == "baseline":
            argv = [
                BASELINE,
                str(ROOT / "function"),
                endpoint,
                PROJECT,
                str(recorded),
                str(PAGE_SIZE),
            ]
        else:
            argv = [SWEEP, str(ROOT / "function"), endpoint, PROJECT, str(concurrency)]
            if reports:
                argv.append(started["obs"])
        done = subprocess.run(
            [sys.executable, "-c", *argv],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=1800,
        )
        if done.returncode != 0:
            raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        server.stdin.close()
        server.wait(timeout=120)
    counts = json.loads(counts_file.read_text())
    result.update(lists=counts["lists"], patches=len(counts["patches"]), bad=started["bad"])
    if kind == "sweep" and recorded is not None and not recorded.exists():
        recorded.write_text(json.dumps({"patches": counts["patches"]}))
    return result


def measure(images: int, runs: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {"sweep": [], "sweep-c1": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        recorded = workdir / "patches.json"
        for _ in range(runs):  # alternating, so drift hits all alike
            samples["sweep"].append(run("sweep", images, 4, recorded, workdir))
            samples["sweep-c1"].append(run("sweep", images, 1, None, workdir))
            samples["baseline"].append(run("baseline", images, 1, recorded, workdir))
    expected_lists = math.ceil(images / PAGE_SIZE) + 1  # the last page is empty
    figures: dict[str, Any] = {
        "images": images,
        "runs": runs,
        "page_size": PAGE_SIZE,
        "expected_lists": expected_lists,
    }
    for kind, runs_of_kind in samples.items():
        first = runs_of_kind[0]
        figures[kind] = {
            "wall_s_median": statistics.median(r["wall"] for r in runs_of_kind),
            "peak_rss_mb": max(r["rss_kb"] for r in runs_of_kind) / 1024,
            "list_requests": first["lists"],
            "patch_requests": first["patches"],
            "out_of_line": first["bad"],
            "counts_ok": all(
                r["lists"] == expected_lists and r["patches"] == r["bad"] for r in runs_of_kind
            ),
        }
    base = figures["baseline"]["wall_s_median"]
    figures["ratio"] = figures["sweep"]["wall_s_median"] / base
    figures["ratio_concurrency_1"] = figures["sweep-c1"]["wall_s_median"] / base
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure(args.images, args.runs)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(
        f"imsguard sweep: {args.images} images, page size {PAGE_SIZE}, {args.runs} run(s) "
        f"each, CPython {sys.version.split()[0]}"
    )
    print(f"\n{'':<22}{'lists':>7}{'PATCHes':>9}{'wall s':>9}{'peak RSS MB':>13}")
    for kind, label in (
        ("sweep", "sweep (concurrency 4)"),
        ("sweep-c1", "sweep (concurrency 1)"),
        ("baseline", "bare SDK baseline"),
    ):
        f = figures[kind]
        print(
            f"{label:<22}{f['list_requests']:>7}{f['patch_requests']:>9}"
            f"{f['wall_s_median']:>9.2f}{f['peak_rss_mb']:>13.1f}"
        )
    sweep = figures["sweep"]
    print(
        f"\nlist requests {sweep['list_requests']}, expected ceil({args.images}/{PAGE_SIZE})"
        f" + 1 = {figures['expected_lists']}; PATCH requests {sweep['patch_requests']}, "
        f"images out of line {sweep['out_of_line']}: "
        f"{'ok' if sweep['counts_ok'] else 'MISMATCH'}"
    )
    print(f"ratio (median wall, sweep / bare SDK): {figures['ratio']:.2f}  target <= 1.5")
    print(f"ratio with concurrency 1 (the machinery alone): {figures['ratio_concurrency_1']:.2f}")
    print(f"peak RSS of the sweep: {sweep['peak_rss_mb']:.1f} MB  target < 150")
    return 0 if all(figures[k]["counts_ok"] for k in ("sweep", "sweep-c1", "baseline")) else 1


if __name__ == "__main__":
    sys.exit(main())
