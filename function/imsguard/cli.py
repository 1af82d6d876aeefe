"""``imsguard`` on the command line: run the function locally on an event file.

``imsguard invoke EVENT.json --fake`` runs the real handler, through the real
SDK, against the built-in fake IMS seeded with sample images, and shows what
it decided and the exact requests it sent. Without ``--fake`` it talks to the
cloud with the SDK's credentials (HUAWEICLOUD_SDK_AK/SK) and IMSGUARD_REGION.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from imsguard import __version__
from imsguard.context import LocalContext
from imsguard.logs import log_to


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imsguard", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"imsguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    invoke = commands.add_parser("invoke", help="run the handler on an event file")
    invoke.add_argument("event", type=Path, help="a JSON event file (as FunctionGraph sends it)")
    invoke.add_argument("--fake", action="store_true",
                        help="use the built-in fake IMS with sample images instead of the cloud")
    invoke.add_argument("--dry-run", action="store_true", help="decide, but send no update")
    invoke.add_argument("--policy", type=Path, help="policy file (default: IMSGUARD_POLICY "
                                                   "or the built-in function/policy.yaml)")
    invoke.add_argument("--output", choices=("text", "json"), default="text")
    invoke.add_argument("--log-level", default="WARNING",
                        help="level of the JSON log lines, written to stderr (default WARNING)")
    args = parser.parse_args(argv)
    return _invoke(args)


def _invoke(args: argparse.Namespace) -> int:
    try:
        event = json.loads(args.event.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"imsguard: cannot read event {args.event}: {exc}", file=sys.stderr)
        return 2
    user_data = {"IMSGUARD_LOG_LEVEL": args.log_level.upper()}
    if args.dry_run:
        user_data["IMSGUARD_DRY_RUN"] = "true"
    if args.policy:
        user_data["IMSGUARD_POLICY"] = str(args.policy.resolve())
    log_to("stderr")
    from imsguard.app import handler

    if not args.fake:
        result = handler(event, LocalContext(user_data=user_data))
        _print(args, result, None)
        return _exit_status(result)

    from imsguard.testing import SAMPLE_PROJECT_ID, FakeIms

    fake = FakeIms.seeded()
    user_data.update(IMSGUARD_REGION=fake.region, RUNTIME_PROJECT_ID=SAMPLE_PROJECT_ID,
                     IMSGUARD_IMS_ENDPOINT=fake.endpoint)
    context = LocalContext(user_data=user_data, access_key="FAKE-AK", secret_key="FAKE-SK",
                           security_token="FAKE-TOKEN")
    with fake:
        result = handler(event, context)
    _print(args, result, fake)
    return _exit_status(result)


def _exit_status(result: dict[str, Any]) -> int:
    failed = result.get("status") in ("error", "invalid")
    return 1 if failed or any(r.get("outcome") == "error" for r in result["results"]) else 0


def _print(args: argparse.Namespace, result: dict[str, Any], fake: Any) -> None:
    if args.output == "json":
        print(json.dumps(result, indent=2, ensure_ascii=False))
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
            subject = f"images named {entry.get('name')!r}"
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
