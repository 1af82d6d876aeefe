"""Organization scale: the costs of an org sweep measured on the fakes, projected to
1,000 shards x 10,000 images with the fan-out model, beside a c7n-org-style sequential run.

What is measured
----------------
The local engine (``imsguard_tools.org_local``: the real coordinator, handler and SDKs
against fakes of Organizations, IAM, STS and one IMS per shard, all behind one
``responses`` mock, no network) runs an organization sweep for each ``--measure-sizes``
entry ``SHARDSxIMAGES`` (SHARDS member accounts, one region each, IMAGES images in each,
about 30% out of line), twice: a dry run (every shard plans) and a real one (every shard
PATCHes). Shards run one at a time (``IMSGUARD_ORG_CONCURRENCY`` 1), so each shard's own
time is clean; each handler call is timed. One untimed warm-up run comes first (imports,
the policy cache), as a warm FunctionGraph container would have them. The rate limit is
lifted (``IMSGUARD_SWEEP_RATE`` 1000, and the sizes stay under its one-second burst):
these are the CPU costs of imsguard and the SDK in-process (no sockets), not IMS's.

* **per shard**: ``time = a + b * images`` over every shard of every size, ``a`` the median
  of the shards with no images when a size has none (else least squares' intercept). ``a``
  is the shard's fixed cost (the event, assuming the account's agency through STS, building
  the IMS client, a first list request, the report), ``b`` the cost per image
  (listing, evaluation and, for the out-of-line share, the PATCH). The dry run's ``b`` is
  evaluation alone; the difference, over the share PATCHed, is the cost per PATCH.
* **coordinator**: the run's time less its shards' (discovery: Organizations' pages, one
  agency and one IAM call per account; starting the shards; merging the reports) over its
  shards, the median of every run: a cost per shard, its fixed part included (a fitted
  intercept swings with a single garbage collection at these sizes). A negative fitted
  intercept for a shard (noise) counts as 0.
* **requests**: every fake's call log: IMS list pages (page size 500) and PATCHes per shard,
  checked against ceil(images / 500) (at least 1; the fakes answer with ``page_info``, so no
  empty last page) and the images out of line; STS calls.

What is projected
-----------------
For ``--shards`` shards of ``--images`` images each (default 1,000 x 10,000), with
``f`` the measured share of images PATCHed:

* **a shard**: ``requests = ceil(images / 500) + f * images`` IMS requests. Its work takes
  ``max(requests / rate, b * images + latency-bound)``: every IMS request waits for the
  rate limiter (``--rate``, ``IMSGUARD_SWEEP_RATE``, default 20/s), and the latency bound
  is the list pages one after another plus the PATCHes ``IMSGUARD_SWEEP_CONCURRENCY`` (4)
  at a time, each ``--latency-ms``. A hop (one invocation) has ``--timeout-s`` (the
  template's ``timeout``) less the safety margin (``IMSGUARD_SAFETY_MARGIN_SECONDS``, 10)
  less its fixed cost (``a`` plus one STS round trip); a shard needing more continues
  itself (``IMSGUARD_SWEEP_CONTINUE``): ``hops = ceil(work / that)``, at most
  ``IMSGUARD_SWEEP_MAX_HOPS`` + 1, each continuation started after ``--start-ms``.
* **the coordinator**: each invocation rediscovers the shards, starts
  ``IMSGUARD_ORG_CONCURRENCY`` (``--concurrency``, default 50) of them with one async
  invoke each (a ``--latency-ms`` round trip) and continues itself with the rest:
  ``ceil(shards / concurrency)`` hops. Accounts: ``shards / --regions``.
* **fan-out, in waves** (the model the issue asks for; the bound if at most
  ``concurrency`` shards run at once): ``wall = discovery + ceil(shards / concurrency) x
  (start + slowest shard)``, the slowest shard being any one here (all equal).
* **fan-out, not waiting** (what the cloud coordinator does today: it does not wait for
  the shards it started, so its next hop starts the next ``concurrency`` at once and all
  of them run together, if FunctionGraph's instance quota for the function allows, which
  is not checked here): ``wall = coordinator hops + start + slowest shard``.
* **fan-out, bounded** (the cloud coordinator that keeps its run in OBS,
  ``IMSGUARD_REPORT_BUCKET`` set): it discovers once, starts ``concurrency`` shards, looks
  every ``POLL_S`` (10 s) for those that ended and starts the next in their place, so at most
  ``concurrency`` run at once; equal shards end together, so ``wall = discovery +
  ceil(shards / concurrency) x (start + slowest shard + POLL_S / 2)`` plus the report; the
  coordinator runs the whole time (hops of ``--timeout-s``), which adds its GB-seconds.
* **sequential, c7n-org style**: one worker on one machine runs shard after shard (no
  timeout, so no hops; one agency assumption each): ``wall = discovery + shards x shard``.
  Same IMS requests; no FunctionGraph invocations (its machine is not costed).
* invocations = shards x hops + coordinator hops; GB-seconds = the invocations' summed
  durations x ``--memory-mb`` / 1024 (billed as memory x duration; no per-request fee).

Assumptions (each an option)
----------------------------
* IMS publishes no API rate limit: 20 requests/s is imsguard's own default, per shard (each
  shard has its own project and, in the cloud, its own limiter); raise it only if IMS takes it.
* ``--latency-ms`` 100: one IMS, STS or FunctionGraph API round trip from FunctionGraph in
  the same region (not published; not measured here, the fakes have none).
* ``--start-ms`` 1000: from an async invoke call to the handler running (queueing and a cold
  start; bench/cold_start.py measures the cold start part locally), not published.
* The CPU figures are this machine's; a 128 MB FunctionGraph instance gets a CPU share that
  Huawei Cloud does not publish, so ``--cpu-factor`` (default 1) scales them.
* Images are evenly spread (every shard the same size), and nothing fails or is retried.

Usage: python bench/org_scale.py [--shards 1000] [--images 10000] [--concurrency 50]
       [--rate 20] [--memory-mb 128] [--timeout-s 300] [--measure-sizes 2x0,8x0,4x1000,4x3000]
       [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "function"), str(ROOT / "tools")]

from imsguard import app  # noqa: E402
from imsguard.logs import log_to  # noqa: E402
from imsguard.org.collect import POLL_S  # noqa: E402
from imsguard.settings import DEFAULT_SAFETY_MARGIN_S, Settings  # noqa: E402
from imsguard_tools import org_local  # noqa: E402
from imsguard_tools.local_context import LocalContext  # noqa: E402

DEFAULTS = Settings(None, None, Path(), False, None)  # the settings' defaults
PAGE_SIZE = DEFAULTS.sweep_page_size
MEASURE_RATE = "1000"  # the highest IMSGUARD_SWEEP_RATE allows; its burst is one second's
TEMPLATE = ROOT / "template.yaml"


def template_value(key: str, fallback: int) -> int:
    """``function.<key>`` of template.yaml (memorySize, timeout): the deployed figures."""
    for line in TEMPLATE.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2 and words[0] == f"{key}:" and words[1].isdigit():
            return int(words[1])
    return fallback


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        shards, _, images = item.strip().lower().partition("x")
        if not (shards.isdigit() and images.isdigit() and int(shards) >= 1):
            raise argparse.ArgumentTypeError(f"{item!r}: SHARDSxIMAGES, e.g. 4x1000")
        sizes.append((int(shards), int(images)))
    if len({images for _, images in sizes}) < 2:
        raise argparse.ArgumentTypeError("at least two different image counts, to fit a line")
    return sizes


def run_once(shards: int, images: int, dry_run: bool) -> dict[str, Any]:
    """One org sweep on the local engine, shards one at a time; each shard timed."""
    org = org_local.FakeOrg(shards, 1, images)
    user_data = {
        **org.user_data(1),
        "IMSGUARD_SWEEP_RATE": MEASURE_RATE,
        "IMSGUARD_LOG_LEVEL": "ERROR",
    }
    context = LocalContext(user_data, "FAKE-AK", "FAKE-SK", "FAKE-TOKEN", timeout_ms=3_600_000)
    durations: list[float] = []

    def timed(event: dict[str, Any], shard_context: Any) -> dict[str, Any]:
        started = time.perf_counter()
        report = app.handler(event, shard_context)
        durations.append(time.perf_counter() - started)
        return report

    invoker = org_local.LocalInvoker(timed, org.shard_context(context), 1)
    event = {"action": "org-sweep", **({"dry_run": True} if dry_run else {})}
    try:
        started = time.perf_counter()
        with org.serving():
            result = org_local.run_local(event, context, invoker)
        total = time.perf_counter() - started
    finally:
        invoker.close()
    bad = [s for s in result["shards"] if s["status"] != "ok"]
    if result["status"] != "ok" or bad or len(durations) != shards:
        raise SystemExit(f"org sweep {shards}x{images} failed: {bad or result.get('reason')}")
    lists = patches = other = 0
    for fake in org.ims.values():
        for call in fake.calls:
            if call.method == "GET" and call.path == "/v2/cloudimages":
                lists += 1
            elif call.method == "PATCH" and call.status == 200:
                patches += 1
            else:
                other += 1
    out_of_line = sum(
        s["summary"].get("would_update" if dry_run else "updated", 0) for s in result["shards"]
    )
    return {
        "shards": shards,
        "images": images,
        "dry_run": dry_run,
        "wall_s": total,
        "shard_s": durations,
        "coordinator_s": total - sum(durations),
        "ims_lists": lists,
        "ims_patches": patches,
        "ims_other": other,
        "out_of_line": out_of_line,
        "sts_calls": len(org.sts.calls),
        "iam_calls": len(org.iam.calls),
        "organizations_calls": len(org.organizations.calls),
    }


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``y = a + b * x``; with points at ``x = 0``, the line goes through their
    median (what a shard with no images costs is measured, not extrapolated)."""
    at_zero = [y for x, y in points if x == 0]
    if at_zero and any(x for x, _ in points):
        a = statistics.median(at_zero)
        others = [(x, y) for x, y in points if x]
        return a, sum(x * (y - a) for x, y in others) / sum(x * x for x, _ in others)
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    b = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx if sxx else 0.0
    return mean_y - b * mean_x, b


def measure(sizes: list[tuple[int, int]]) -> dict[str, Any]:
    for dry in (True, False):  # warm-up: imports, the policy cache, both phases' paths
        run_once(1, min(images for _, images in sizes), dry)
    runs = [run_once(s, i, dry) for s, i in sizes for dry in (True, False)]
    figures: dict[str, Any] = {}
    for dry, name in ((True, "plan"), (False, "apply")):
        mine = [r for r in runs if r["dry_run"] is dry]
        a, b = fit([(r["images"], d) for r in mine for d in r["shard_s"]])
        a = max(0.0, a)  # a fit's negative intercept is noise: none
        figures[name] = {"shard_fixed_s": a, "per_image_s": b}
    applied = [r for r in runs if not r["dry_run"]]
    images_all = sum(r["shards"] * r["images"] for r in applied)
    patched = sum(r["ims_patches"] for r in applied)
    fix_share = patched / images_all if images_all else 0.0
    per_patch = (
        (figures["apply"]["per_image_s"] - figures["plan"]["per_image_s"]) / fix_share
        if fix_share
        else 0.0
    )
    counts_ok = all(
        r["ims_lists"] == r["shards"] * max(1, math.ceil(r["images"] / PAGE_SIZE))
        and r["ims_patches"] == (0 if r["dry_run"] else r["out_of_line"])
        and r["ims_other"] == 0
        for r in runs
    )
    return {
        "sizes": [f"{s}x{i}" for s, i in sizes],
        "runs": [{k: v for k, v in r.items() if k != "shard_s"} for r in runs],
        "shard_fixed_s": figures["apply"]["shard_fixed_s"],
        "per_image_s": figures["apply"]["per_image_s"],
        "per_image_eval_s": figures["plan"]["per_image_s"],
        "per_patch_s": per_patch,
        "coordinator_per_shard_s": statistics.median(
            r["coordinator_s"] / r["shards"] for r in runs
        ),
        "fix_share": fix_share,
        "sts_calls_per_shard": sum(r["sts_calls"] for r in applied)
        / sum(r["shards"] for r in applied),
        "counts_ok": counts_ok,
    }


def project(measured: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The fan-out and the sequential run of ``args.shards`` x ``args.images``."""
    latency = args.latency_ms / 1000
    start = args.start_ms / 1000
    cpu = args.cpu_factor
    images = args.images
    lists = max(1, math.ceil(images / PAGE_SIZE))
    patches = round(measured["fix_share"] * images)
    requests = lists + patches
    rate_bound = requests / args.rate
    latency_bound = lists * latency + patches * latency / DEFAULTS.sweep_concurrency
    work = max(rate_bound, cpu * measured["per_image_s"] * images + latency_bound)
    hop_fixed = cpu * measured["shard_fixed_s"] + latency  # + assuming the agency (STS)
    hop_room = args.timeout_s - DEFAULT_SAFETY_MARGIN_S - hop_fixed
    if hop_room <= 0:
        raise SystemExit(f"--timeout-s {args.timeout_s}: no room for a hop's work")
    hops = max(1, math.ceil(work / hop_room))
    shard_billed = work + hops * hop_fixed
    shard_wall = shard_billed + (hops - 1) * start

    accounts = math.ceil(args.shards / args.regions)
    discovery = (
        cpu * measured["coordinator_per_shard_s"] * accounts
        + math.ceil(accounts / 100) * latency  # Organizations' pages (assumption: 100 a page)
        + math.ceil(accounts / 8) * 2 * latency  # agency + IAM per account, 8 accounts at once
    )
    coord_hops = math.ceil(args.shards / args.concurrency)
    coord_hop = discovery + args.concurrency * latency  # one async invoke call per shard
    coord_billed = coord_hops * discovery + args.shards * latency + (coord_hops - 1) * latency
    waves = coord_hops
    fan_waves = discovery + waves * (start + shard_wall)
    fan_free = coord_hops * coord_hop + (coord_hops - 1) * start + start + shard_wall
    sequential = discovery + args.shards * (hop_fixed + work)
    invocations = args.shards * hops + coord_hops
    gb_s = (args.shards * shard_billed + coord_billed) * args.memory_mb / 1024
    bounded = discovery + waves * (start + shard_wall + POLL_S / 2) + latency
    bounded_hops = math.ceil(bounded / (args.timeout_s - DEFAULT_SAFETY_MARGIN_S))
    bounded_gb_s = (args.shards * shard_billed + bounded) * args.memory_mb / 1024
    return {
        "shards": args.shards,
        "images_per_shard": images,
        "rate_per_s": args.rate,
        "concurrency": args.concurrency,
        "memory_mb": args.memory_mb,
        "timeout_s": args.timeout_s,
        "latency_ms": args.latency_ms,
        "start_ms": args.start_ms,
        "shard": {
            "ims_requests": requests,
            "list_requests": lists,
            "patch_requests": patches,
            "rate_bound_s": rate_bound,
            "work_s": work,
            "hops": hops,
            "hops_ok": hops <= DEFAULTS.sweep_max_hops + 1,
            "wall_s": shard_wall,
            "billed_s": shard_billed,
        },
        "coordinator": {"hops": coord_hops, "discovery_s": discovery, "billed_s": coord_billed},
        "fan_out": {
            "model": "waves: discovery + ceil(shards/concurrency) x (start + slowest shard)",
            "wall_s": fan_waves,
            "wall_s_not_waiting": fan_free,
            "invocations": invocations,
            "gb_s": gb_s,
            "ims_requests": requests * args.shards,
        },
        "bounded": {
            "model": "run in OBS: discovery + ceil(shards/concurrency) x (start + slowest "
            "shard + poll/2); the coordinator runs throughout",
            "wall_s": bounded,
            "invocations": args.shards * hops + bounded_hops,
            "gb_s": bounded_gb_s,
            "ims_requests": requests * args.shards,
        },
        "sequential": {
            "model": "c7n-org style, one worker: discovery + shards x (agency + shard work)",
            "wall_s": sequential,
            "invocations": 0,
            "gb_s": None,
            "ims_requests": requests * args.shards,
        },
        "ratio": sequential / fan_waves,
        "ratio_not_waiting": sequential / fan_free,
        "wall_over_slowest_shard": fan_waves / shard_wall,
        "wall_over_slowest_shard_not_waiting": fan_free / shard_wall,
        "ratio_bounded": sequential / bounded,
        "wall_over_slowest_shard_bounded": bounded / shard_wall,
    }


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_table(figures: dict[str, Any]) -> None:
    m, p = figures["measured"], figures["projection"]
    print(
        f"org sweep scale, measured on the fakes ({', '.join(m['sizes'])}), CPython "
        f"{sys.version.split()[0]}"
    )
    print(f"\n{'measured':<44}{'apply':>12}{'plan':>12}")
    print(
        f"{'  per shard, fixed (agency, client, listing)':<44}"
        f"{m['shard_fixed_s'] * 1000:>9.1f} ms{'':>12}"
    )
    print(
        f"{'  per image (list + evaluate [+ PATCH])':<44}{m['per_image_s'] * 1e6:>9.0f} us"
        f"{m['per_image_eval_s'] * 1e6:>9.0f} us"
    )
    print(f"{'  per PATCH':<44}{m['per_patch_s'] * 1e6:>9.0f} us")
    print(
        f"{'  coordinator, per shard (discovery, start)':<44}"
        f"{m['coordinator_per_shard_s'] * 1000:>9.2f} ms"
    )
    print(
        f"  images PATCHed {m['fix_share']:.1%}; STS calls per shard "
        f"{m['sts_calls_per_shard']:.2f}; IMS lists = ceil(images/{PAGE_SIZE}) and PATCHes = "
        f"images out of line: {'ok' if m['counts_ok'] else 'MISMATCH'}"
    )
    s = p["shard"]
    print(
        f"\nprojected: {p['shards']:,} shards x {p['images_per_shard']:,} images, "
        f"rate {p['rate_per_s']:g}/s, concurrency {p['concurrency']}, "
        f"{p['memory_mb']} MB, timeout {p['timeout_s']} s, latency {p['latency_ms']:g} ms, "
        f"start {p['start_ms']:g} ms"
    )
    print(
        f"  a shard: {s['ims_requests']:,} IMS requests ({s['list_requests']} lists, "
        f"{s['patch_requests']:,} PATCHes), {duration(s['rate_bound_s'])} at the rate limit, "
        f"{s['hops']} hop(s){'' if s['hops_ok'] else ' (MORE than IMSGUARD_SWEEP_MAX_HOPS)'}, "
        f"wall {duration(s['wall_s'])}"
    )
    c = p["coordinator"]
    print(f"  coordinator: {c['hops']} hops, discovery {duration(c['discovery_s'])} each")
    f, b, q = p["fan_out"], p["bounded"], p["sequential"]
    print(
        f"\n{'':<28}{'fan-out (waves)':>18}{'bounded, OBS':>14}{'not waiting':>14}"
        f"{'sequential':>14}{'seq / bounded':>15}"
    )
    print(
        f"{'wall time':<28}{duration(f['wall_s']):>18}{duration(b['wall_s']):>14}"
        f"{duration(f['wall_s_not_waiting']):>14}{duration(q['wall_s']):>14}"
        f"{p['ratio_bounded']:>14.1f}x"
    )
    print(
        f"{'FunctionGraph invocations':<28}{f['invocations']:>18,}{b['invocations']:>14,}"
        f"{f['invocations']:>14,}{'-':>14}"
    )
    print(f"{'GB-seconds':<28}{f['gb_s']:>18,.0f}{b['gb_s']:>14,.0f}{f['gb_s']:>14,.0f}{'-':>14}")
    print(
        f"{'IMS requests':<28}{f['ims_requests']:>18,}{b['ims_requests']:>14,}"
        f"{f['ims_requests']:>14,}{q['ims_requests']:>14,}"
    )
    print(
        f"\nwall / slowest shard: {p['wall_over_slowest_shard']:.1f} in waves, "
        f"{p['wall_over_slowest_shard_bounded']:.1f} bounded, "
        f"{p['wall_over_slowest_shard_not_waiting']:.2f} not waiting "
        f"(sequential / not waiting: {p['ratio_not_waiting']:.0f}x)"
    )
    print(
        f"model, fan-out: {f['model']}\nmodel, bounded: {b['model']}\n"
        f"model, sequential: {q['model']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--images", type=int, default=10_000, help="images per shard")
    parser.add_argument("--concurrency", type=int, default=DEFAULTS.org_concurrency)
    parser.add_argument("--rate", type=float, default=DEFAULTS.sweep_rate, help="requests/s")
    parser.add_argument("--memory-mb", type=int, default=template_value("memorySize", 128))
    parser.add_argument("--timeout-s", type=int, default=template_value("timeout", 300))
    parser.add_argument("--regions", type=int, default=3, help="regions per account")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="one API round trip")
    parser.add_argument("--start-ms", type=float, default=1000.0, help="async invoke to start")
    parser.add_argument("--cpu-factor", type=float, default=1.0, help="FunctionGraph CPU / ours")
    parser.add_argument(
        "--measure-sizes", type=parse_sizes, default=parse_sizes("2x0,8x0,4x1000,4x3000")
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if min(args.shards, args.concurrency, args.regions, args.memory_mb) < 1 or args.rate <= 0:
        parser.error("--shards, --concurrency, --regions, --memory-mb at least 1; --rate > 0")
    log_to("stderr")
    measured = measure(args.measure_sizes)
    figures = {"measured": measured, "projection": project(measured, args)}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_table(figures)
    return 0 if measured["counts_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
