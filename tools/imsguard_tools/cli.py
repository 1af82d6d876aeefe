"""``imsguard`` on the command line: run the function locally, and work on policies.

``imsguard invoke EVENT.json --fake`` runs the real handler, through the real
SDK, against the built-in fake IMS seeded with sample images, and shows what
it decided and the exact requests it sent. Without ``--fake`` it talks to the
cloud with the SDK's credentials (HUAWEICLOUD_SDK_AK/SK) and IMSGUARD_REGION.
``validate``, ``test``, ``explain`` and ``schema`` work on policy files offline.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from imsguard import __version__
from imsguard.context import Credentials
from imsguard.logs import log_to
from imsguard.policy import Policy, PolicyError, load_policy
from imsguard.settings import LOG_LEVELS
from imsguard_tools import bundled
from imsguard_tools.local_context import LocalContext

if TYPE_CHECKING:
    from imsguard.ims import ImsGateway

RESULTS_SHOWN = 10  # entries of each list a sweep's text output shows
DEFAULT_SWEEP_TIMEOUT_S = 3600.0


def main(argv: list[str] | None = None) -> int:
    """The command line; its output stops quietly when the reader goes (``| head``)."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _QuietStream(sys.stdout), _QuietStream(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams


class _QuietStream(io.TextIOBase):
    """A stream that stops writing, without a traceback, once its reader has gone
    (``imsguard sweep | head``): the command finishes and exits with its usual status."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._went()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._went()

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def writable(self) -> bool:
        return True

    def _went(self) -> None:
        """Later writes are dropped; what the interpreter still holds for the descriptor
        goes to /dev/null when it flushes on exit (else it prints the error there)."""
        self.gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="imsguard", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"imsguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    invoke = commands.add_parser("invoke", help="run the handler on an event file")
    invoke.add_argument("event", type=Path, help="a JSON event file (as FunctionGraph sends it)")
    invoke.add_argument(
        "--fake",
        action="store_true",
        help="use the built-in fake IMS with sample images instead of the cloud",
    )
    invoke.add_argument("--dry-run", action="store_true", help="decide, but send no update")
    invoke.add_argument(
        "--policy",
        type=Path,
        help="policy file (default: IMSGUARD_POLICY or the bundled default policy)",
    )
    _log_level_option(invoke)

    validate = commands.add_parser("validate", help="check a policy file")
    validate.add_argument("policy", type=Path)

    test = commands.add_parser("test", help="run a policy's declarative test cases")
    test.add_argument("policy", type=Path)
    test.add_argument("cases", type=Path, help="YAML file with the cases")

    explain = commands.add_parser("explain", help="per-rule verdicts and the plan for one image")
    explain.add_argument("policy", type=Path)
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="an image as IMS returns it (JSON file)")
    source.add_argument("--image-id", help="read the image from IMS (or --fake)")
    explain.add_argument("--fake", action="store_true", help="with --image-id: the fake IMS")
    explain.add_argument(
        "--project-id",
        help="the function's project (default: the image's "
        "owner for --image, the settings for --image-id)",
    )
    explain.add_argument(
        "--today",
        type=date.fromisoformat,
        help="the date exemptions are checked against (default: today)",
    )
    explain.add_argument("--dry-run", action="store_true")

    sweep = commands.add_parser("sweep", help="check every active private image of the project")
    sweep.add_argument("--fake", action="store_true", help="the fake IMS with sample images")
    sweep.add_argument(
        "--images",
        type=int,
        default=0,
        help="with --fake: this many more generated images, ~30%% out of line",
    )
    sweep.add_argument("--dry-run", action="store_true", help="decide, but send no update")
    sweep.add_argument("--since", help="only images created after this date or time")
    sweep.add_argument("--limit", type=int, help="examine at most this many images")
    sweep.add_argument("--marker", help="continue after this image id (a continuation)")
    sweep.add_argument("--policy", type=Path, help="policy file (default: the built-in one)")
    sweep.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_SWEEP_TIMEOUT_S,
        help=f"seconds the sweep may take (default {DEFAULT_SWEEP_TIMEOUT_S:g})",
    )
    _log_level_option(sweep)

    org_sweep = commands.add_parser(
        "org-sweep", help="sweep every account and region of an organization (local engine)"
    )
    org_sweep.add_argument(
        "--fake", action="store_true", required=True, help="a fake organization (required)"
    )
    org_sweep.add_argument("--accounts", type=int, default=3, help="member accounts (default 3)")
    org_sweep.add_argument("--regions", type=int, default=2, help="regions per account (1-10)")
    org_sweep.add_argument("--images", type=int, default=20, help="images per account and region")
    org_sweep.add_argument("--dry-run", action="store_true", help="plan, but send no update")
    org_sweep.add_argument("--policy", type=Path, help="policy file (default: the built-in one)")
    org_sweep.add_argument(
        "--concurrency", type=int, help="shards at once (default IMSGUARD_ORG_CONCURRENCY or 50)"
    )
    org_sweep.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="also write the organization's report there (for imsguard org-report)",
    )
    _log_level_option(org_sweep)
    package = commands.add_parser("package", help="build the FunctionGraph ZIP in dist/")
    package.add_argument(
        "--python-version",
        help="the runtime's Python, such as 3.10 (default: template.yaml's runtime)",
    )
    package.add_argument(
        "--policy",
        type=Path,
        help="ship this policy file (default: the one template.yaml's IMSGUARD_POLICY names)",
    )

    deploy = commands.add_parser("deploy", help="create or update the function from the template")
    deploy.add_argument("--template", type=Path, help="default: the bundled template.yaml")
    shipped = deploy.add_mutually_exclusive_group()
    shipped.add_argument("--package", type=Path, help="the ZIP to upload (default: build it)")
    shipped.add_argument(
        "--policy",
        type=Path,
        help="build the package with this policy file (default: the one the template names)",
    )
    deploy.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    deploy.add_argument("--fake", action="store_true", help="against the fake FunctionGraph")
    deploy.add_argument(
        "--region",
        action="append",
        metavar="REGION",
        help="deploy to this one of the template's regions (repeatable; default: every one "
        "listed, else the template's IMSGUARD_REGION)",
    )
    deploy.add_argument(
        "--project-id",
        action="append",
        default=[],
        metavar="REGION=ID",
        help="the project id of REGION (repeatable; every region needs its own with the "
        "template's regions; else IMSGUARD_PROJECT_ID)",
    )
    deploy.add_argument(
        "--force-config-type",
        action="store_true",
        help="create resource-triggered Config rules even when Config's providers list "
        "does not show their image type",
    )

    undo = commands.add_parser(
        "revert", help="undo what a result or sweep report says imsguard changed"
    )
    undo.add_argument(
        "report",
        type=Path,
        help="a result or sweep report (JSON, --output json), or the function's JSON log lines",
    )
    undo.add_argument("--dry-run", action="store_true", help="say what would be restored")

    iam = commands.add_parser("iam-policy", help="the custom IAM policy for the function's agency")
    iam.add_argument(
        "--template",
        type=Path,
        help="default: the bundled template.yaml (its settings decide the optional calls)",
    )
    iam.add_argument(
        "--member",
        action="store_true",
        help="the policy of the agency each member account lends an org sweep",
    )

    commands.add_parser("schema", help="the JSON Schema of the policy format, for editors")

    report = commands.add_parser(
        "report", help="a sweep's report for people: totals, compliance, changes, attention"
    )
    report.add_argument(
        "source",
        help="a report file (the OBS report, or a sweep's or invoke's --output json) "
        "or obs://bucket/key (needs IMSGUARD_OBS_ENDPOINT and HUAWEICLOUD_SDK_AK/SK)",
    )
    report.add_argument(
        "--html", type=Path, metavar="OUT.html", help="also write one self-contained HTML page"
    )

    org_report = commands.add_parser(
        "org-report", help="an org sweep's report for people: accounts, compliance, failures"
    )
    org_report.add_argument(
        "source",
        help="the org sweep's report (report.json or org-latest.json) as a file or "
        "obs://bucket/key (needs IMSGUARD_OBS_ENDPOINT and HUAWEICLOUD_SDK_AK/SK)",
    )
    org_report.add_argument(
        "--html", type=Path, metavar="OUT.html", help="also write one self-contained HTML page"
    )

    doctor = commands.add_parser(
        "doctor",
        help="read-only checks of a deployment: what works, what to fix, what cannot be told",
    )
    doctor.add_argument("--template", type=Path, help="template.yaml (default: the bundled one)")
    doctor.add_argument("--region", help="the region to check (default: the template's)")
    doctor.add_argument(
        "--deadline",
        type=float,
        default=60.0,
        help="seconds the whole command may take (default 60)",
    )
    doctor.add_argument(
        "--fake", action="store_true", help="check against the fakes (the template deployed)"
    )
    doctor.add_argument(
        "--refuse",
        action="append",
        metavar="CHECK",
        default=[],
        help="with --fake: make this check's call refused (403), to see its failure",
    )
    schema = commands.choices["schema"]
    for command in (
        doctor,
        invoke,
        validate,
        test,
        explain,
        sweep,
        org_sweep,
        package,
        deploy,
        undo,
        iam,
        schema,
        report,
        org_report,
    ):
        command.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    return {
        "invoke": _invoke,
        "validate": _validate,
        "test": _test,
        "explain": _explain,
        "sweep": _sweep,
        "org-sweep": _org_sweep,
        "package": _package,
        "deploy": _deploy,
        "revert": _revert,
        "iam-policy": _iam_policy,
        "schema": _schema,
        "report": _report,
        "org-report": _org_report,
        "doctor": _doctor,
    }[args.command](args)


def _log_level_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=LOG_LEVELS,
        help="level of the JSON log lines, written to stderr (any case; default WARNING)",
    )


def _load(path: Path, output: str) -> Policy | None:
    """The policy, or None after printing every problem with it."""
    try:
        return load_policy(path)
    except PolicyError as exc:
        if output == "json":
            _print_json({"policy": str(path), "valid": False, "problems": exc.problems})
        else:
            print(f"{path}: invalid policy", file=sys.stderr)
            for problem in exc.problems:
                print(f"  - {problem}", file=sys.stderr)
        return None


def _validate(args: argparse.Namespace) -> int:
    policy = _load(args.policy, args.output)
    if policy is None:
        return 1
    rules = [rule.name for rule in policy.rules]
    if args.output == "json":
        _print_json({"policy": str(args.policy), "valid": True, "problems": [], "rules": rules})
    else:
        print(
            f"{args.policy}: valid ({len(rules)} rules: {', '.join(rules)}; "
            f"{len(policy.exemptions)} exemption(s); mode {policy.mode})"
        )
    return 0


def _test(args: argparse.Namespace) -> int:
    from imsguard_tools.cases import CasesError, load_cases, run_cases

    policy = _load(args.policy, args.output)
    if policy is None:
        return 1
    try:
        cases = load_cases(args.cases)
    except CasesError as exc:
        return _fail(args, str(exc))
    results = run_cases(policy, cases, _today())
    failed = [r for r in results if not r.passed]
    if args.output == "json":
        _print_json(
            {
                "policy": str(args.policy),
                "cases": str(args.cases),
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "results": [
                    {"name": r.name, "passed": r.passed, "failures": r.failures, "actual": r.actual}
                    for r in results
                ],
            }
        )
    else:
        for result in results:
            print(f"{'PASS' if result.passed else 'FAIL'}  {result.name}")
            for failure in result.failures:
                print(f"      {failure}")
        print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _explain(args: argparse.Namespace) -> int:
    from imsguard.evaluate import evaluate, plan
    from imsguard.results import verdict_entry

    policy = _load(args.policy, args.output)
    if policy is None:
        return 1
    try:
        image, project_id, assumed = _image_to_explain(args)
    except ValueError as exc:
        return _fail(args, str(exc))
    decision = evaluate(policy, image, project_id, args.today or _today())
    planned = plan(decision, args.dry_run)
    sent = [op["path"][1:] for op in planned.send]
    rules = [verdict_entry(v, sent) for v in decision.verdicts]
    report = {
        "image_id": image.get("id"),
        "image_name": image.get("name"),
        "outcome": planned.outcome,
        "reason": planned.reason,
        "operations": list(decision.operations),
        "send": list(planned.send),
        "rules": rules,
        "notes": list(decision.notes),
        "assumed": assumed,
    }
    if args.output == "json":
        _print_json(report)
        return 0
    print(
        f"{args.policy} on image {_shown(image.get('id'))} {_name(image.get('name'))} "
        f"({_shown(image.get('__os_version'))}, {_shown(image.get('virtual_env_type'))})"
    )
    if assumed:
        print(f"  not in the file, taken as in test cases: {', '.join(sorted(assumed))}")
    for rule in rules:
        fix = f"[{rule['fix']}]" if "fix" in rule else ""
        mode = " (audit)" if rule.get("mode") == "audit" else ""
        print(f"  {rule['rule']:<24} {rule['verdict']:<15}{fix:<14}{rule['reason']}{mode}")
    for note in decision.notes:
        print(f"  note: {note}")
    print(f"  if the function ran now: {planned.outcome} ({planned.reason}); explain sends nothing")
    for op in decision.operations:
        held = "" if op in planned.send else "   (not sent)"
        print(f"    {op['op']} {op['path']} = {op['value']!r}{held}")
    return 0


def _image_to_explain(
    args: argparse.Namespace,
) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
    """The image, the project to judge it for, and the fields filled in because an image
    file left them out; ValueError says why there is none. A file's image is completed as a
    test case's is (an active private Ubuntu system-disk image of the project), so the two
    commands agree on the same few lines of YAML or JSON."""
    from imsguard_tools.cases import CASE_PROJECT, complete_image

    if args.image is None:
        return (*_read_image(args.image_id, args.fake, args.project_id), {})
    try:
        given = json.loads(args.image.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read image {args.image}: {exc}") from None
    if not isinstance(given, dict):
        raise ValueError(f"{args.image} does not hold one image object")
    project_id = args.project_id or given.get("owner") or CASE_PROJECT
    image = complete_image(given, project_id)
    return image, project_id, {k: v for k, v in image.items() if k not in given}


def _read_image(
    image_id: str, fake: bool, project_id: str | None
) -> tuple[dict[str, Any], str | None]:
    from imsguard.events import is_image_id
    from imsguard.ims import ImsError

    if not is_image_id(image_id):
        raise ValueError(f"{image_id!r} is not an image id (a UUID)")
    context = LocalContext()
    if fake:
        ims_fake = _point_at_fake(context)
        ims_fake.start()
    try:
        gateway = _gateway(context)
        image = gateway.get_image(image_id.lower())
    except (ImsError, ValueError) as exc:
        raise ValueError(f"cannot read image {image_id}: {exc}") from None
    finally:
        if fake:
            ims_fake.stop()
    if image is None:
        raise ValueError(f"no image {image_id} is visible to the project")
    return image, project_id or gateway.project_id


def _gateway(context: LocalContext) -> ImsGateway:
    """The IMS gateway the function would use, from the settings (user data, else the
    environment) and the SDK's credentials; ValueError says what is missing."""
    from imsguard.context import read_credentials
    from imsguard.ims import gateway_for
    from imsguard.settings import SettingsError, load_settings

    try:
        settings = load_settings(context)
    except SettingsError as exc:
        raise ValueError(str(exc)) from None
    credentials = read_credentials(context)
    if credentials is None or not settings.project_id:
        raise ValueError(
            "needs credentials (HUAWEICLOUD_SDK_AK/SK) and a project id (IMSGUARD_PROJECT_ID)"
        )
    return gateway_for(settings.region, settings.ims_endpoint, settings.project_id, credentials)


def _revert(args: argparse.Namespace) -> int:
    """Undo what a report says imsguard changed, image by image, only where the image still
    holds what imsguard set."""
    from imsguard_tools.revert import changes_in, read_report, revert

    try:
        undos = changes_in(read_report(args.report.read_text(encoding="utf-8-sig")))
        gateway = _gateway(LocalContext()) if undos else None
    except (OSError, ValueError) as exc:
        return _fail(args, f"cannot revert {args.report}: {exc}")
    results = [revert(undo, gateway, args.dry_run) for undo in undos] if gateway is not None else []
    summary = dict(sorted(Counter(r["outcome"] for r in results).items()))
    if args.output == "json":
        _print_json(
            {
                "report": str(args.report),
                "dry_run": args.dry_run,
                "summary": summary,
                "results": results,
            }
        )
    else:
        print(
            f"imsguard revert {args.report}{' (dry run)' if args.dry_run else ''}: "
            f"{len(results)} updated image(s) in the report"
        )
        for result in results:
            print(f"  {result['image_id']}: {result['outcome']} ({result['reason']})")
            for op in result["operations"]:
                value = f" = {op['value']!r}" if "value" in op else ""
                print(f"    -> {op['op']} {op['path']}{value}")
        print(f"  summary: {summary or 'nothing to revert'}")
    return 1 if summary.get("error") else 0


def _sweep(args: argparse.Namespace) -> int:
    """A sweep, as the timer would run it: a progress line on a terminal, then a summary."""
    options = {
        k: v
        for k, v in (
            ("dry_run", args.dry_run or None),
            ("since", args.since),
            ("limit", args.limit),
            ("marker", args.marker),
        )
        if v is not None
    }
    user_data = {"IMSGUARD_LOG_LEVEL": args.log_level.upper()}
    user_data.update(_policy_setting(args.policy))
    problem = _sweep_time_problem(args.timeout, LocalContext(user_data=user_data))
    if problem:
        return _fail(args, problem)
    log_to("stderr")
    context = LocalContext(user_data=user_data, timeout_ms=int(args.timeout * 1000))
    fake = None
    if args.fake:
        fake = _point_at_fake(context)
        fake.page_info = True
        fake.add_fleet(max(0, args.images))
        if "IMSGUARD_SWEEP_RATE" not in os.environ:  # the fake needs no protecting
            context.user_data["IMSGUARD_SWEEP_RATE"] = "1000"
        fake.start()
    show = args.output == "text" and sys.stderr.isatty()
    context.progress = _progress_line if show else None
    try:
        report = _call_handler({"action": "sweep", **options}, context)
    finally:
        if fake is not None:
            fake.stop()
    if show:
        print(file=sys.stderr)
    if args.output == "json":
        _print_json(report)
    else:
        _print_sweep(report, fake, _resume_command(args), args.timeout)
    return 0 if report.get("status") == "ok" else 1


def _org_sweep(args: argparse.Namespace) -> int:
    """An organization sweep on the local engine (imsguard_tools.org_local), on fakes."""
    import time

    from imsguard.org.coordinator import CoordinatorError
    from imsguard_tools import org_local

    if args.accounts < 1 or args.images < 0 or not 1 <= args.regions <= len(org_local.REGIONS):
        return _fail(
            args, f"--accounts at least 1, --regions 1 to {len(org_local.REGIONS)}, --images >= 0"
        )
    concurrency = args.concurrency or int(os.environ.get("IMSGUARD_ORG_CONCURRENCY") or 50)
    log_to("stderr")
    began = time.monotonic()
    org = org_local.FakeOrg(args.accounts, args.regions, args.images, LocalContext.clock)
    user_data = {
        **org.user_data(concurrency),
        "IMSGUARD_LOG_LEVEL": args.log_level.upper(),
        **_policy_setting(args.policy),
    }
    context = LocalContext(user_data, "FAKE-AK", "FAKE-SK", "FAKE-TOKEN", timeout_ms=900_000)
    built = time.monotonic()
    invoker = org_local.LocalInvoker(_call_handler, org.shard_context(context), concurrency)
    event = {"action": "org-sweep", **({"dry_run": True} if args.dry_run else {})}
    try:
        with org.serving():
            result = org_local.run_local(event, context, invoker)
    except (CoordinatorError, ValueError) as exc:
        return _fail(args, str(exc))
    finally:
        invoker.close()
    ended = time.monotonic()
    if args.report is not None:
        try:
            args.report.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            return _fail(args, f"the report was not written to {args.report}: {exc}")
    if args.output == "json":
        _print_json(org_local.public(result))
    else:
        print(org_local.render(result, built - began, ended - built, invoker.max_in_flight))
    return 0 if result["status"] == "ok" else 1


def _sweep_time_problem(timeout: float, context: LocalContext) -> str | None:
    """Why a sweep could not do anything in ``timeout`` seconds: the safety margin it keeps
    back for the report takes all of it."""
    from imsguard.settings import SAFETY_MARGIN, SettingsError, load_settings

    try:
        margin = load_settings(context).safety_margin_s
    except SettingsError:
        return None  # the handler reports broken settings, as in the cloud
    if not math.isfinite(timeout) or timeout <= margin:
        return (
            f"--timeout {timeout:g} s leaves no time: the sweep keeps the last "
            f"{margin:g} s ({SAFETY_MARGIN}) for its report, so give a --timeout longer "
            f"than {margin:g} s"
        )
    return None


def _resume_command(args: argparse.Namespace) -> list[str]:
    """The options to run this sweep again with, without its --marker and --timeout."""
    command = ["imsguard", "sweep"]
    if args.fake:
        command += ["--fake"] + (["--images", str(args.images)] if args.images else [])
    command += ["--dry-run"] if args.dry_run else []
    for flag, value in (
        ("--since", args.since),
        ("--limit", args.limit),
        ("--policy", args.policy),
    ):
        if value is not None:
            command += [flag, str(value)]
    return command


_progress_counts: dict[str, int] = {}


def _progress_line(counts: dict[str, int]) -> None:
    _progress_counts.update(counts)
    shown = " · ".join(f"{k} {v}" for k, v in _progress_counts.items())
    print(f"\r  {shown}", end="", file=sys.stderr, flush=True)


def _print_sweep(report: dict[str, Any], fake: Any, command: list[str], timeout: float) -> None:
    """Counts come from the report's summary, which counts every image; its lists stop at
    IMSGUARD_RESULTS_LIMIT entries, and this shows the first few of each."""
    target = f"fake IMS ({len(fake.images)} images)" if fake else "the cloud"
    print(f"imsguard {__version__}: {report.get('trigger', 'sweep')} against {target}")
    if report.get("status") not in ("ok", "error") or "examined" not in report:
        print(f"  {report.get('status')}: {report.get('reason')}")
        for problem in report.get("problems", []):
            print(f"    - {problem}")
        return
    dry = " (dry run)" if report.get("dry_run") else ""
    print(f"  examined {report['examined']} image(s){dry}")
    summary = report["summary"]
    if summary:
        print(f"\n  {'outcome':<16}{'images':>8}")
        for outcome, count in summary.items():
            print(f"  {outcome:<16}{count:>8}")
    from imsguard.rules.base import VerdictStatus

    statuses = get_args(VerdictStatus)
    if report["rules"]:
        print(f"\n  {'rule':<24}" + "".join(f"{s:>16}" for s in statuses))
    for rule, counts in report["rules"].items():
        print(f"  {rule:<24}" + "".join(f"{counts.get(s, 0):>16}" for s in statuses))
    truncated = bool(report.get("truncated"))
    _print_images("changed", report.get("changed", []), summary.get("updated", 0))
    _print_images("would change", report.get("would_change", []), summary.get("would_update", 0))
    attention = report.get("needs_attention", [])
    _print_images("needs a human", attention, None if truncated else len(attention))
    if truncated:
        print(
            f"\n  the report's lists stop at {len(report.get('results', []))} entries "
            "(IMSGUARD_RESULTS_LIMIT); the counts above and the log cover every image"
        )
    for key in ("guardrail", "error"):
        if key in report:
            print(f"\n  {key}: {report[key]}")
    if "continuation" in report:
        _print_resume(report, command, timeout)


def _print_images(title: str, items: list[dict[str, Any]], total: int | None) -> None:
    """A list of images: how many there are (None: not known, as the list was cut), and
    the first few."""
    if not items and not total:
        return
    if total is None:
        count = f"{len(items)} listed, perhaps more (the report's lists are truncated)"
    elif len(items) < total:
        count = f"{total} (the report lists {len(items)})"
    else:
        count = str(total)
    shown = items[:RESULTS_SHOWN]
    first = f", the first {len(shown)}" if len(shown) < len(items) else ""
    print(f"\n  {title}: {count}{first}:")
    for item in shown:
        operations = ", ".join(
            f"{op.get('op')} {op.get('path')} = {op.get('value')!r}"
            for op in item.get("operations") or []
        )
        print(
            f"    {item.get('image_id')} {_name(item.get('image_name'))}: {item.get('reason')}"
            + (f" ({operations})" if operations else "")
        )


def _print_resume(report: dict[str, Any], command: list[str], timeout: float) -> None:
    """How to go on: the marker to resume at, or (none: nothing was finished) a rerun."""
    continuation = report["continuation"]
    continued = report.get("continued") or {}
    if continued.get("started"):
        print(
            f"\n  not finished ({continuation['reason']}): continued in a new invocation "
            f"(request id {continued.get('request_id')})"
        )
        return
    marker = continuation.get("marker")
    if marker:
        if timeout != DEFAULT_SWEEP_TIMEOUT_S:
            command = [*command, "--timeout", f"{timeout:g}"]
        how = f"continue with: {' '.join(command)} --marker {marker}"
    elif continuation.get("cause") == "time":
        how = (
            f"no image was finished in time: run `{' '.join(command)}` again with a "
            f"--timeout longer than {timeout:g} s"
        )
    else:
        how = f"run the sweep again from the start: {' '.join(command)}"
    print(f"\n  not finished ({continuation['reason']}): {how}")


def _package(args: argparse.Namespace) -> int:
    """The ZIP to upload: the code root, the policy (checked first) and the runtime
    dependencies for the template's Python."""
    from imsguard_tools.package import PackageError, build_package, check_python_version
    from imsguard_tools.template import TemplateError, load_template

    path = _template_path(None)
    try:
        template = load_template(path)
        version = check_python_version(
            args.python_version or template.function.runtime.removeprefix("Python")
        )
        name, source = _shipped_policy(args, template, path.parent)
    except (PackageError, TemplateError) as exc:
        return _fail(args, str(exc))
    checked, problems = _check_shipped_policy(name, source)
    if problems:
        return _fail(args, problems[0], problems[1:])
    try:
        result = build_package(version, policy=source, policy_name=name)
    except PackageError as exc:
        return _fail(args, str(exc))
    if args.output == "json":
        _print_json(
            {
                "path": str(result.path),
                "size": result.size,
                "files": result.files,
                "sha256": result.sha256,
                "python_version": version,
                "policy": checked,
            }
        )
    else:
        print(
            f"{result.path}: {result.size / 2**20:.1f} MB, {result.files} files, "
            f"Python {version}, sha256 {result.sha256}"
        )
        print(f"  {_policy_line(checked)}")
    return 0


def _policy_setting(policy: Path | None) -> dict[str, str]:
    """IMSGUARD_POLICY for a local run: --policy, else the environment's, else the bundled
    default policy (an installed runtime has no code root holding one)."""
    if policy is None and os.environ.get("IMSGUARD_POLICY"):
        return {}
    return {"IMSGUARD_POLICY": str((policy or bundled.DEFAULT_POLICY).resolve())}


def _template_path(given: Path | None) -> Path:
    """--template, else the bundled template.yaml (in a checkout: the repository's)."""
    return given or bundled.TEMPLATE.resolve()


def _shipped_policy(args: argparse.Namespace, template: Any, folder: Path) -> tuple[str, Path]:
    """The policy a package holds: its name inside the package (the template's
    IMSGUARD_POLICY, relative to the code root; the function loads that) and the file whose
    bytes go in (--policy, else that file under the code root beside the template)."""
    from imsguard.settings import POLICY
    from imsguard_tools.package import DEFAULT_POLICY_NAME, check_policy_name

    function = template.function
    name = check_policy_name(function.settings.get(POLICY) or DEFAULT_POLICY_NAME)
    return name, args.policy or folder / function.codeRoot / name


def _check_shipped_policy(name: str, source: Path) -> tuple[dict[str, Any], list[str]]:
    """What shipping the policy ``source`` as ``name`` would ship, and every reason it must
    not: it does not load, or a case in the cases file beside it fails."""
    from imsguard_tools.cases import check_policy

    checked = check_policy(source, _today())
    why = "does not load" if checked.cases is None else "fails its cases"
    problems = (
        [f"the policy {source} {why}: nothing was built or deployed", *checked.problems]
        if checked.problems
        else []
    )
    return {
        "file": str(source),
        "packaged_as": name,
        "cases": str(checked.cases) if checked.cases else None,
        "cases_passed": checked.passed,
    }, problems


def _policy_line(checked: dict[str, Any]) -> str:
    cases = (
        f"{checked['cases_passed']} case(s) of {checked['cases']} pass"
        if checked["cases"]
        else "no cases file beside it"
    )
    return f"policy {checked['file']} (as {checked['packaged_as']}): valid, {cases}"


def _doctor(args: argparse.Namespace) -> int:
    """Read-only checks of a deployment (imsguard_tools.doctor); exit 1 when one failed."""
    from imsguard.context import read_credentials
    from imsguard_tools import doctor
    from imsguard_tools.doctor_fake import CREDENTIALS, PROJECT_ID, fake_cloud, refusal

    if not 1 <= args.deadline <= 3600:
        return _fail(args, "--deadline: 1 to 3600 seconds")
    template, why = doctor.template_or_none(_template_path(args.template))
    if why and args.template is not None:
        return _fail(args, why)
    region = (
        args.region
        or (template.function.settings.get("IMSGUARD_REGION") if template else None)
        or (template.regions[0] if template and template.regions else None)
        or os.environ.get("HUAWEICLOUD_SDK_REGION")
    )
    wanted = doctor.checks()
    names = {c.name: c for c in wanted}
    unknown = [n for n in args.refuse if n not in names]
    if unknown or (args.refuse and not args.fake):
        return _fail(
            args,
            "--refuse takes a check's name, with --fake: "
            + ", ".join(n for n in names if refusal(names[n]) is not None),
        )
    if args.fake:
        with fake_cloud(region or "ap-southeast-1", template, wanted) as cloud:
            probe = doctor.probe_for(
                template, cloud.region, args.deadline, CREDENTIALS, PROJECT_ID, cloud.endpoints
            )
            for name in args.refuse:
                refuse = refusal(names[name])
                if refuse is None or not doctor.applies(names[name], probe):
                    why = "makes no call" if refuse is None else "does not apply to this template"
                    return _fail(args, f"--refuse {name}: that check {why}")
                refuse(cloud)
            probe = doctor.probe_for(  # again: a refusal may point an endpoint elsewhere
                template, cloud.region, args.deadline, CREDENTIALS, PROJECT_ID, cloud.endpoints
            )
            results = doctor.run_checks(probe, wanted)
            writes = cloud.writes()
        if writes:  # a check must never change anything
            return _fail(args, f"a check wrote: {writes[0]}")
    else:
        project_id = os.environ.get("IMSGUARD_PROJECT_ID") or os.environ.get(
            "HUAWEICLOUD_SDK_PROJECT_ID"
        )
        probe = doctor.probe_for(
            template, region, args.deadline, read_credentials(None), project_id
        )
        results = doctor.run_checks(probe, wanted)
    if args.output == "json":
        print(doctor.render_json(results))
    else:
        print(doctor.header(template, region, bool(args.fake)))
        print(doctor.render_text(results))
    return 1 if any(r.status == "fail" for r in results) else 0


def _deploy(args: argparse.Namespace) -> int:
    """Make FunctionGraph match the template: create what is missing, update what differs."""
    from imsguard.context import read_credentials
    from imsguard_tools.deploy import (
        ConfigRules,
        Deployer,
        DeployError,
        RegionsError,
        build_client,
        build_config_client,
        deploy_regions,
    )
    from imsguard_tools.package import PackageError, build_package, python_of
    from imsguard_tools.template import TemplateError, load_template

    path = _template_path(args.template)
    checked = None
    try:  # everything is checked before the first API call
        template = load_template(path)
        python = template.function.runtime.removeprefix("Python")
        name, source = _shipped_policy(args, template, path.parent)
        if args.package is None:  # a package's policy was checked when it was built
            checked, problems = _check_shipped_policy(name, source)
            if problems:
                return _fail(args, problems[0], problems[1:])
        package = args.package or build_package(python, policy=source, policy_name=name).path
    except (TemplateError, PackageError) as exc:
        return _fail(args, str(exc))
    if not package.is_file():
        return _fail(args, f"no package at {package}")
    built_for = python_of(package)
    if built_for not in (None, python):
        return _fail(
            args,
            f"{package} was built for Python {built_for}, the template's runtime "
            f"is {template.function.runtime}: build it with "
            f"`imsguard package --python-version {python}`",
        )
    missing = _not_in_package(package, name)
    if missing:
        return _fail(args, missing)
    regions, projects, problem = _deploy_targets(args, template)
    if problem is not None:
        return _fail(args, problem)
    fake = None
    domain_id = os.environ.get("IMSGUARD_DOMAIN_ID") or os.environ.get("HUAWEICLOUD_SDK_DOMAIN_ID")
    config_endpoint = os.environ.get("IMSGUARD_CONFIG_ENDPOINT") or template.function.settings.get(
        "IMSGUARD_CONFIG_ENDPOINT"
    )
    endpoints: dict[str, str | None] = {}
    if args.fake:  # one fake FunctionGraph per region, all served by the first one's mock
        from imsguard_tools.fake_config import FakeConfig
        from imsguard_tools.testing import FakeIms

        fakes = {
            r: FakeIms(project_id=projects.get(r) or _fake_project(template, r), region=r)
            for r in regions
        }
        fake = fakes[regions[0]]
        projects = {r: f.project_id for r, f in fakes.items()}
        endpoints = {r: f.fgs_endpoint for r, f in fakes.items()}
        credentials: Credentials = Credentials("FAKE-AK", "FAKE-SK")
        domain_id = "0" * 32  # a fake account whose Config lists IMS images
        types = [{"name": t, "track": "tracked"} for t in ("images", "private_image")]
        fake_config = FakeConfig(domain_id, [{"provider": "ims", "resource_types": types}])
        config_endpoint = fake_config.endpoint
        fake.attach(fake_config, *list(fakes.values())[1:])
        fake.start()
    else:
        found_credentials = read_credentials(None)
        unknown = [r for r in regions if not projects.get(r)]
        if unknown or found_credentials is None:
            needs = (
                f"each region's project id (--project-id REGION=ID; missing: {', '.join(unknown)})"
                if template.regions
                else "a project id (IMSGUARD_PROJECT_ID) and IMSGUARD_REGION in the template"
            )
            return _fail(args, f"deploy needs HUAWEICLOUD_SDK_AK/SK, {needs}")
        credentials = found_credentials
        shared = os.environ.get("IMSGUARD_FGS_ENDPOINT")  # one region's endpoint
        if shared and len(regions) > 1:
            return _fail(
                args,
                "IMSGUARD_FGS_ENDPOINT names one region's FunctionGraph endpoint: with several "
                "regions, set it per region under the template's region_settings",
            )
        endpoints = {
            r: template.settings_for(r).get("IMSGUARD_FGS_ENDPOINT") or shared for r in regions
        }
    try:
        config = None
        if template.config_rules and domain_id:  # Config is global: the account's domain
            config_client = build_config_client(domain_id, config_endpoint, credentials)
            config = ConfigRules(config_client, args.force_config_type)
        deployers = {
            r: Deployer(
                build_client(r, endpoints.get(r), projects[r], credentials),
                projects[r],
                r,
                template,
                package,
                config,
            )
            for r in regions
        }
        result = deploy_regions(deployers, args.dry_run)
    except DeployError as exc:
        if template.regions and isinstance(exc, RegionsError):
            _print_regions(args, template, deployers, {}, exc, checked)
        else:
            _print_steps(args, [], exc)
        return 1
    finally:
        if fake is not None:
            fake.stop()
    if template.regions:
        _print_regions(args, template, deployers, result, None, checked)
    else:
        _print_steps(args, result[regions[0]], None, deployers[regions[0]].urn, checked)
    return 0


def _deploy_targets(
    args: argparse.Namespace, template: Any
) -> tuple[list[str], dict[str, str], str | None]:
    """The regions to deploy to (--region, else the template's regions, else its one
    IMSGUARD_REGION), the project ids given for them, and why not, if they will not do."""
    if template.regions:
        regions = list(dict.fromkeys(args.region or template.regions))
        unknown = [r for r in regions if r not in template.regions]
        if unknown:
            return (
                [],
                {},
                (
                    f"region {unknown[0]} is not in the template's regions "
                    f"({', '.join(template.regions)}): add it there first"
                ),
            )
    else:
        region = template.function.settings.get("IMSGUARD_REGION") or os.environ.get(
            "HUAWEICLOUD_SDK_REGION"
        )
        if not region:
            return [], {}, "no region: set IMSGUARD_REGION in the template's settings"
        other = [r for r in args.region or () if r != region]
        if other:
            return (
                [],
                {},
                (
                    f"region {other[0]} is not in the template: it deploys to {region} only "
                    "(IMSGUARD_REGION); list several regions under regions:"
                ),
            )
        regions = [region]
    projects: dict[str, str] = {}
    for given in args.project_id:
        region, sep, project = given.partition("=")
        if not sep or not project.strip():
            return [], {}, f"--project-id {given!r}: write REGION=ID"
        listed = template.regions or regions
        if region not in listed:
            return [], {}, f"--project-id {given!r}: the template's regions are {', '.join(listed)}"
        if region in regions:  # another listed region's id is fine: --region picked some
            projects[region] = project.strip()
    if not template.regions:  # one region, as before: the environment's project id
        env = os.environ.get("IMSGUARD_PROJECT_ID") or os.environ.get("HUAWEICLOUD_SDK_PROJECT_ID")
        projects.setdefault(regions[0], env or "")
    return regions, projects, None


def _fake_project(template: Any, region: str) -> str:
    """A fake project id: the sample one without regions, else one of the region's own (each
    region of an account has its own project)."""
    from imsguard_tools.testing import SAMPLE_PROJECT_ID

    if not template.regions:
        return SAMPLE_PROJECT_ID
    return hashlib.sha256(region.encode()).hexdigest()[:32]


def _not_in_package(package: Path, name: str) -> str | None:
    """Why the function could not run from this package: it is no ZIP, or it lacks the
    policy the settings name, or that policy does not load (every invocation would fail)."""
    import tempfile
    import zipfile

    try:
        with zipfile.ZipFile(package) as archive:
            if name not in set(archive.namelist()):
                return (
                    f"{package} holds no {name}, the policy the template's IMSGUARD_POLICY "
                    "names: build the package with `imsguard package`"
                )
            shipped = archive.read(name)
    except (OSError, zipfile.BadZipFile) as exc:
        return f"{package} is not a ZIP package: {exc}"
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / Path(name).name
        copy.write_bytes(shipped)
        try:
            load_policy(copy)
        except PolicyError as exc:
            return (
                f"{package}: its {name} does not load, so every invocation would fail: "
                + "; ".join(exc.problems)
            )
    return None


def _print_steps(
    args: argparse.Namespace,
    steps: list[Any],
    error: Any,
    urn: str | None = None,
    policy: dict[str, Any] | None = None,
) -> None:
    writes = [s for s in steps if s.run is not None]  # not keep, check or warn
    if args.output == "json":
        report = {
            "dry_run": args.dry_run,
            "function_urn": urn,
            "steps": [s.describe() for s in steps],
            "writes": len(writes),
            "policy": policy,
        }
        if error is not None:
            report.update(
                error=str(error),
                done=[s.describe() for s in error.done],
                not_done=[s.describe() for s in error.left],
            )
        _print_json(report)
        return
    if error is not None:
        print(f"imsguard deploy failed: {error}", file=sys.stderr)
        for label, items in (("done", error.done), ("not done", error.left)):
            for step in items:
                print(f"  {label:<9} {step.action:<8} {step.what}: {step.detail}", file=sys.stderr)
        print("  the function keeps its previous code and settings where not done", file=sys.stderr)
        return
    verb = "would" if args.dry_run else "did"
    print(f"imsguard deploy {'(dry run) ' if args.dry_run else ''}{urn}")
    if policy is not None:
        print(f"  {_policy_line(policy)}")
    for step in steps:
        print(f"  {step.action:<8} {step.what}: {step.detail}")
    where = "FunctionGraph"
    if any(s.what.startswith("Config rule") for s in writes):
        where = "FunctionGraph and Config"
    print(f"  {len(writes)} change(s) {verb} reach {where}" if writes else "  nothing to change")


def _print_regions(
    args: argparse.Namespace,
    template: Any,
    deployers: dict[str, Any],
    result: dict[str, list[Any]],
    error: Any,
    policy: dict[str, Any] | None,
) -> None:
    """A plan per region (a header line each), or, after a failure, what each region got."""
    entries = []
    for region, deployer in deployers.items():
        steps: list[Any] = result.get(region, [])
        status = "planned" if args.dry_run else "applied"
        if error is not None:
            steps = error.applied.get(region, [])
            if region == error.region:
                status = "failed while planning" if error.planning else "failed"
            elif region in error.not_started:
                status = "not planned" if error.planning else "not started"
            else:
                status = "planned, nothing written" if error.planning else "applied"
        entry: dict[str, Any] = {
            "region": region,
            "coordinator": region == template.coordinator_region,
            "function_urn": deployer.urn,
            "status": status,
            "steps": [s.describe() for s in steps],
            "writes": len([s for s in steps if s.run is not None]),
        }
        if error is not None and region == error.region:
            entry.update(
                error=str(error),
                done=[s.describe() for s in error.done],
                not_done=[s.describe() for s in error.left],
            )
        entries.append(entry)
    if args.output == "json":
        _print_json(
            {
                "dry_run": args.dry_run,
                "coordinator_region": template.coordinator_region,
                "regions": entries,
                "error": None if error is None else str(error),
                "policy": policy,
            }
        )
        return
    if error is not None:
        where = " (while planning: nothing was written in any region)" if error.planning else ""
        print(f"imsguard deploy failed in region {error.region}{where}: {error}", file=sys.stderr)
        for entry in entries:
            print(f"  region {entry['region']}: {entry['status']}", file=sys.stderr)
            if "error" in entry:
                for label, items in (("done", entry["done"]), ("not done", entry["not_done"])):
                    for step in items:
                        print(
                            f"    {label:<9} {step['action']:<8} {step['what']}: {step['detail']}",
                            file=sys.stderr,
                        )
            elif entry["status"] == "applied":
                print(f"    {entry['writes']} change(s) reached FunctionGraph", file=sys.stderr)
        return
    verb = "would" if args.dry_run else "did"
    coordinator = f", coordinator {template.coordinator_region}" * bool(template.coordinator_region)
    print(
        f"imsguard deploy {'(dry run) ' if args.dry_run else ''}to {len(entries)} region(s)"
        f"{coordinator}"
    )
    if policy is not None:
        print(f"  {_policy_line(policy)}")
    for entry in entries:
        role = " (coordinator)" if entry["coordinator"] else ""
        print(f"region {entry['region']}{role}: {entry['function_urn']}")
        for step in entry["steps"]:
            print(f"  {step['action']:<8} {step['what']}: {step['detail']}")
        writes = entry["writes"]
        print(
            f"  {writes} change(s) {verb} reach FunctionGraph" if writes else "  nothing to change"
        )


def _iam_policy(args: argparse.Namespace) -> int:
    """The agency's custom policy (IAM policy language 1.1), from the actions the function's
    calls declare and the template's settings; on stdout alone, so it can go to IAM as it is."""
    from imsguard_tools.iam import all_permissions, member_permissions, needed, policy_document
    from imsguard_tools.template import TemplateError, template_settings

    path = _template_path(args.template)
    try:
        settings = template_settings(path)
    except TemplateError as exc:
        return _fail(args, str(exc))
    used = needed(member_permissions() if args.member else all_permissions(), settings)
    _print_json(policy_document(used))
    if args.output == "text":
        whose = "the agency each member account lends an org sweep" if args.member else "the agency"
        print(
            f"# {path}: the custom policy of {whose}, exactly the actions imsguard's calls need "
            "with its settings:",
            file=sys.stderr,
        )
        width = max(len(permission.api) for permission in used)
        for permission in used:
            action = permission.action or "no IAM action documented"
            if permission.unconfirmed:
                action += (
                    f" ({permission.unconfirmed} in one edition only: add it if your "
                    "region's IAM knows it)"
                )
            print(f"#   {permission.api:<{width}}  {action}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from imsguard_tools import report

    def summarize() -> dict[str, Any]:
        return report.summarize(report.read_report_source(args.source), args.source)

    return _render_report(args, summarize, report.render_text, report.render_html, lambda _: 0)


def _org_report(args: argparse.Namespace) -> int:
    """Exit status 1 when the run was held or did not finish: the report is rendered anyway."""
    from imsguard_tools import org_report
    from imsguard_tools.report import read_json_source

    def summarize() -> dict[str, Any]:
        return org_report.summarize(read_json_source(args.source), args.source)

    def status(summary: dict[str, Any]) -> int:
        return 0 if summary["status"] == "ok" else 1

    return _render_report(args, summarize, org_report.render_text, org_report.render_html, status)


def _render_report(
    args: argparse.Namespace,
    summarize: Callable[[], dict[str, Any]],
    render_text: Callable[[dict[str, Any]], str],
    render_html: Callable[[dict[str, Any]], str],
    status: Callable[[dict[str, Any]], int],
) -> int:
    """Render a report's summary as text or JSON, and the HTML page with --html; nothing is
    written unless the report could be read and understood (exit status 2)."""
    from imsguard_tools.report import ReportError

    try:
        summary = summarize()
    except ReportError as exc:
        return _fail(args, str(exc))
    if args.html is not None:
        try:
            _write_atomically(args.html, render_html(summary))
        except OSError as exc:
            return _fail(args, f"cannot write {args.html}: {exc.strerror or exc}")
    if args.output == "json":
        _print_json(summary)
    else:
        print(render_text(summary))
    if args.html is not None:
        print(f"imsguard: wrote {args.html}", file=sys.stderr)
    return status(summary)


def _write_atomically(path: Path, text: str) -> None:
    """Write beside the target, then rename: a failed write leaves no half page."""
    part = path.with_name(f".{path.name}.part")
    try:
        part.write_text(text, encoding="utf-8")
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def _schema(args: argparse.Namespace) -> int:
    from imsguard.policy import Policy

    _print_json(Policy.model_json_schema(by_alias=True))
    return 0


def _fail(args: argparse.Namespace, message: str, problems: list[str] | None = None) -> int:
    """Bad input (exit 2): said on stderr, every problem on a line of its own, and as JSON
    on stdout with --output json."""
    if getattr(args, "output", "text") == "json":
        _print_json({"error": message, **({"problems": problems} if problems else {})})
    print(f"imsguard: {message}", file=sys.stderr)
    for problem in problems or ():
        print(f"  - {problem}", file=sys.stderr)
    return 2


def _shown(value: Any) -> str:
    """A value for people: "not set" rather than None."""
    return "not set" if value is None else str(value)


def _name(value: Any) -> str:
    """An image's name for people, quoted; "(no name)" when it has none."""
    return "(no name)" if value is None else repr(value)


def _today() -> date:
    """Today in UTC, as the function sees it (exemptions expire by this date)."""
    return datetime.now(timezone.utc).date()


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _invoke(args: argparse.Namespace) -> int:
    try:
        event = json.loads(args.event.read_text(encoding="utf-8-sig"))  # a BOM is fine
    except (OSError, ValueError) as exc:
        return _fail(args, f"cannot read event {args.event}: {exc}")
    user_data = {"IMSGUARD_LOG_LEVEL": args.log_level.upper()}
    if args.dry_run:
        user_data["IMSGUARD_DRY_RUN"] = "true"
    user_data.update(_policy_setting(args.policy))
    log_to("stderr")
    from imsguard.app import TransientFailure

    if not args.fake:
        try:
            result = _call_handler(event, LocalContext(user_data=user_data))
        except TransientFailure as exc:
            return _fail(args, f"{exc} (FunctionGraph would retry the event)")
        _print(args, result, None)
        return _exit_status(result)

    context = LocalContext(user_data=user_data)
    fake = _point_at_fake(context, sample_events=True)
    with fake:
        try:
            result = _call_handler(event, context)
        except TransientFailure as exc:
            return _fail(args, f"{exc} (FunctionGraph would retry the event)")
    _print(args, result, fake)
    return _exit_status(result)


def _call_handler(event: Any, context: LocalContext) -> dict[str, Any]:
    """The handler's report; when it raises InvalidPolicy (as it does on every invocation
    while the policy does not load), a report saying so, with every problem."""
    from imsguard import app

    try:
        return app.handler(event, context)
    except app.InvalidPolicy as exc:
        return {
            "status": "error",
            "reason": f"{exc} (the handler raised: in FunctionGraph "
            "every invocation fails until the policy is fixed)",
            "problems": exc.problems,
            "results": [],
        }


def _point_at_fake(context: LocalContext, sample_events: bool = False) -> Any:
    """The fake IMS with the sample images (not started), and the context set to use it;
    ``sample_events``: also what the sample events in tests/events/ point at."""
    from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms

    fake = FakeIms.with_sample_events() if sample_events else FakeIms.seeded()
    context.user_data.update(
        IMSGUARD_REGION=fake.region,
        IMSGUARD_IMS_ENDPOINT=fake.endpoint,
        RUNTIME_PROJECT_ID=SAMPLE_PROJECT_ID,
    )
    context.access_key, context.secret_key = "FAKE-AK", "FAKE-SK"
    context.security_token = "FAKE-TOKEN"
    return fake


def _exit_status(result: dict[str, Any]) -> int:
    failed = result.get("status") in ("error", "invalid")
    return 1 if failed or any(r.get("outcome") == "error" for r in result["results"]) else 0


def _print(args: argparse.Namespace, result: dict[str, Any], fake: Any) -> None:
    if args.output == "json":
        _print_json(result)
        return
    target = f"fake IMS ({len(fake.images)} sample images)" if fake else "the cloud"
    print(f"imsguard {__version__}: {args.event} against {target}")
    if result.get("status") != "ok":
        print(f"  {result['status']}: {result.get('reason')}")
        for problem in result.get("problems", []):
            print(f"    - {problem}")
        return
    print(f"  trigger: {result['trigger']}" + ("  [dry run]" if result["dry_run"] else ""))
    for entry in result["results"]:
        name = f" {entry['image_name']!r}" if entry.get("image_name") else ""
        if entry.get("image_id"):
            subject = f"image {entry['image_id']}{name}"
        elif entry.get("job_id"):
            subject = f"job {entry['job_id']}"
        else:
            subject = f"images named {_name(entry.get('name'))}"
        print(f"\n  {subject}: {entry['outcome'].upper()} ({entry['reason']})")
        for verdict in entry.get("rules", []):
            fix = f" [{verdict['fix']}]" if verdict.get("fix") else ""
            print(f"    {verdict['rule']:<24} {verdict['verdict']:<15}{fix} {verdict['reason']}")
        for op in entry["operations"]:
            print(f"    -> {op['op']} {op['path']} = {op['value']!r}")
    if fake is not None:
        print("\n  requests sent to the fake IMS:")
        for call in fake.calls:
            query = "&".join(f"{k}={v}" for k, v in call.query.items())
            url = f"{call.path}?{query}" if query else call.path
            print(f"    {call.method:<5} {url} -> {call.status}")
            if call.body is not None:
                print(f"          body: {json.dumps(call.body)}")
    print(f"\n  summary: {result['summary']}")


if __name__ == "__main__":
    sys.exit(main())
