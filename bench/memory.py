"""Peak memory of the function, beside the floor of its dependencies and FunctionGraph's
smallest memory size.

FunctionGraph bills memory size x duration, and its smallest size is 128 MB. This
measures what the function really needs, each figure the peak resident set size
(``ru_maxrss``) of a fresh interpreter, the median of ``--runs`` runs:

* **deps-only**: importing the SDK, pydantic and PyYAML and building one model
  (``bench/cold_start.py``'s baseline child): the floor no function can go below;
* **event**: ``index.handler`` on one CTS ``createImage`` event, one GET and one PATCH
  against the fake IMS on loopback (``bench/cold_start.py``'s function child);
* **sweep**: the handler sweeping ``--images`` generated images (about 30% out of line,
  so it PATCHes about 3,000 of 10,000) from a fake IMS in its own process
  (``bench/sweep.py``'s sweep child, concurrency 4), and the bare SDK making the same
  requests (its baseline child);
* **sweep + reports**: the same sweep with ``IMSGUARD_REPORT_BUCKET`` set, writing its OBS
  report (every image's verdicts as JSON, then the CSV) to a fake OBS in the fake IMS's
  process, so only the function's side is measured.

The FunctionGraph runtime's own process is not in these figures (it is not published);
the headroom column is what is left of 128 MB for it.

Usage: python bench/memory.py [--images 10000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cold_start
import sweep

BUDGET_MB = 128  # FunctionGraph's smallest memory size


def measure(images: int, runs: int) -> dict[str, Any]:
    fake = cold_start.FakeIms.seeded()
    original = cold_start.copy.deepcopy(fake.images[cold_start.EXAMPLE_IMAGE_ID])
    peaks: dict[str, list[float]] = {
        "deps-only": [],
        "event": [],
        "sweep": [],
        "sweep + reports": [],
        "bare SDK": [],
    }
    with fake.serve() as endpoint:
        env = cold_start.function_env(endpoint)
        cold_start.run_child(cold_start.BASELINE_CHILD, cold_start.base_env())  # warm-up
        for _ in range(runs):
            peaks["deps-only"].append(
                cold_start.run_child(cold_start.BASELINE_CHILD, cold_start.base_env())["maxrss_kb"]
                / 1024
            )
            peaks["event"].append(cold_start.run_function(fake, original, env)["maxrss_kb"] / 1024)
    with tempfile.TemporaryDirectory() as tmp:
        workdir, recorded = Path(tmp), Path(tmp) / "patches.json"
        for _ in range(runs):
            peaks["sweep"].append(sweep.run("sweep", images, 4, recorded, workdir)["rss_kb"] / 1024)
            reported = sweep.run("sweep", images, 4, None, workdir, reports=True)
            peaks["sweep + reports"].append(reported["rss_kb"] / 1024)
            peaks["bare SDK"].append(
                sweep.run("baseline", images, 1, recorded, workdir)["rss_kb"] / 1024
            )
    floor = statistics.median(peaks["deps-only"])
    return {
        "python": sys.version.split()[0],
        "runs": runs,
        "images": images,
        "budget_mb": BUDGET_MB,
        "peak_rss_mb": {
            kind: round(statistics.median(values), 1) for kind, values in peaks.items()
        },
        "peak_rss_mb_max": {kind: round(max(values), 1) for kind, values in peaks.items()},
        "ratio_to_deps_only": {
            kind: round(statistics.median(values) / floor, 2) for kind, values in peaks.items()
        },
    }


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
        f"imsguard peak memory: CPython {figures['python']}, {args.runs} run(s) each, "
        "fresh interpreter per run (ru_maxrss)"
    )
    print(f"\n{'':<34}{'median MB':>10}{'max MB':>8}{'/ deps-only':>13}{'/ 128 MB':>10}")
    labels = {
        "deps-only": "deps-only (SDK, pydantic, YAML)",
        "event": "one CTS event (GET + PATCH)",
        "sweep": f"sweep of {args.images:,} images",
        "sweep + reports": "the same sweep, reports in OBS",
        "bare SDK": f"bare SDK, same {args.images:,} requests",
    }
    for kind, label in labels.items():
        median = figures["peak_rss_mb"][kind]
        print(
            f"{label:<34}{median:>10.1f}{figures['peak_rss_mb_max'][kind]:>8.1f}"
            f"{figures['ratio_to_deps_only'][kind]:>13.2f}{median / BUDGET_MB:>10.2f}"
        )
    worst = max(figures["peak_rss_mb_max"].values())
    print(
        f"\nheadroom at 128 MB for the runtime's own process: {BUDGET_MB - worst:.0f} MB "
        f"(the largest peak: {worst:.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
