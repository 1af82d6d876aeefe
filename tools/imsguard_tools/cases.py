"""Declarative policy tests (``imsguard test POLICY CASES.yaml``), in the style of
``kyverno test``: images, and the verdicts, outcome and operations expected of them.

Evaluation is the same pure code the function runs; nothing touches the cloud.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imsguard.evaluate import evaluate, fix_label, plan
from imsguard.policy import Policy, PolicyError, load_policy

CASE_PROJECT = "0" * 32


def complete_image(attrs: dict[str, Any], project_id: str) -> dict[str, Any]:
    """A case's image: what it says, on top of an active private Linux system-disk image
    owned by the project (so cases only spell out what matters to them). ``explain --image``
    fills in the same, so an image file and a case mean the same image."""
    image = default_image(project_id)
    image.update(attrs)
    return image


def default_image(project_id: str) -> dict[str, Any]:
    """What a case's or an explained image is unless it says otherwise."""
    return {
        "id": "00000000-0000-4000-8000-000000000000",
        "name": "image",
        "status": "active",
        "owner": project_id,
        "__imagetype": "private",
        "visibility": "private",
        "virtual_env_type": "FusionCompute",
        "__os_type": "Linux",
        "__platform": "Ubuntu",
        "__os_version": "Ubuntu 22.04 server 64bit",
        "__os_bit": "64",
        "tags": [],
        "created_at": "2026-01-01T00:00:00Z",
        "min_ram": 0,
        "min_disk": 40,
    }


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: str | None = None
    rules: dict[str, str] | None = None  # rule -> verdict
    fixes: dict[str, str] | None = None  # rule -> fix label
    operations: list[dict[str, str]] | None = None


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    image: dict[str, Any]
    dry_run: bool = False
    today: date | None = None
    expect: Expect


class CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: str = Field(default=CASE_PROJECT, pattern=r"^[0-9a-f]{32}$")
    today: date | None = None
    cases: list[Case] = Field(min_length=1)


@dataclass
class CaseResult:
    name: str
    failures: list[str] = field(default_factory=list)
    actual: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures


class CasesError(ValueError):
    """The cases file cannot be used; the message says why."""


def load_cases(path: Path) -> CaseFile:
    from imsguard.policy import yaml_loader

    try:
        with open(path, encoding="utf-8-sig") as stream:  # a BOM from a Windows editor is fine
            data = yaml.load(stream, Loader=yaml_loader())
        return CaseFile.model_validate(data)
    except OSError as exc:
        raise CasesError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CasesError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise CasesError(f"{path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise CasesError(f"{path}: {problems}") from None


def run_cases(policy: Policy, cases: CaseFile, today: date) -> list[CaseResult]:
    return [
        run_case(policy, case, cases.project_id, case.today or cases.today or today)
        for case in cases.cases
    ]


def run_case(policy: Policy, case: Case, project_id: str, today: date) -> CaseResult:
    image = complete_image(case.image, project_id)
    decision = evaluate(policy, image, project_id, today)
    planned = plan(decision, case.dry_run)
    sent = [op["path"][1:] for op in planned.send]
    actual: dict[str, Any] = {
        "outcome": planned.outcome,
        "rules": {v.rule: v.status for v in decision.verdicts},
        "fixes": {
            v.rule: label for v in decision.verdicts if (label := fix_label(v, sent)) is not None
        },
        "operations": list(decision.operations),
    }
    result = CaseResult(case.name, actual=actual)
    expect = case.expect
    if expect.outcome is not None and expect.outcome != actual["outcome"]:
        result.failures.append(
            f"outcome: expected {expect.outcome}, got {actual['outcome']} ({planned.reason})"
        )
    names = {r.name for r in policy.rules}
    for key, label in (("rules", "rule"), ("fixes", "fix of")):
        for rule, wanted in (getattr(expect, key) or {}).items():
            reason = next((v.reason for v in decision.verdicts if v.rule == rule), None)
            if rule not in names:
                result.failures.append(f"{label} {rule}: the policy has no rule {rule!r}")
            elif reason is None:  # the whole image is out of scope or exempt: no rule ran
                kind = "exempt" if decision.scope == "exempt" else "out of scope"
                result.failures.append(
                    f"{label} {rule}: expected {wanted}, but no rule was "
                    f"checked: the image is {kind} ({decision.reason})"
                )
            elif actual[key].get(rule) != wanted:
                result.failures.append(
                    f"{label} {rule}: expected {wanted}, got {actual[key].get(rule)} ({reason})"
                )
    if expect.operations is not None and expect.operations != actual["operations"]:
        result.failures.append(
            f"operations: expected {expect.operations}, got {actual['operations']}"
        )
    return result


class PolicyCheck(NamedTuple):
    """What ``package`` and ``deploy`` found out about the policy they would ship."""

    problems: list[str]  # empty: it may ship
    cases: Path | None  # the cases file that was run, if there is one
    passed: int  # cases that passed


def cases_beside(policy_path: Path) -> Path:
    """Where a policy's cases live: ``team.yaml`` -> ``team.cases.yaml`` beside it."""
    return policy_path.with_name(f"{policy_path.stem}.cases.yaml")


def check_policy(path: Path, today: date) -> PolicyCheck:
    """Every reason the policy at ``path`` must not ship: it does not load, or a case of the
    ``<stem>.cases.yaml`` beside it (when there is one) fails."""
    cases = cases_beside(path)
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        return PolicyCheck(list(exc.problems), None, 0)
    if not cases.is_file():
        return PolicyCheck([], None, 0)
    try:
        results = run_cases(policy, load_cases(cases), today)
    except CasesError as exc:
        return PolicyCheck([str(exc)], cases, 0)
    problems = [
        f"{cases}: case {r.name!r} fails: {failure}" for r in results for failure in r.failures
    ]
    return PolicyCheck(problems, cases, sum(r.passed for r in results))
