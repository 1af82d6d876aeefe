"""The example policies under tests/policies/ pass their own `imsguard test` cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from imsguard_tools.cli import main

HERE = Path(__file__).parent / "policies"
ROOT = Path(__file__).parents[1]
CASES = sorted(HERE.glob("*.cases.yaml"))


def policy_for(cases: Path) -> Path:
    name = cases.name.removesuffix(".cases.yaml")
    return ROOT / "function/policy.yaml" if name == "default" else HERE / f"{name}.yaml"


def test_every_example_policy_has_cases():
    policies = {p for p in HERE.glob("*.yaml") if not p.name.endswith(".cases.yaml")}
    assert policies <= {policy_for(c) for c in CASES}
    assert len(CASES) >= 2


@pytest.mark.parametrize("cases", CASES, ids=lambda p: p.name)
def test_example_policy_passes_its_cases(cases, capsys):
    status = main(["test", str(policy_for(cases)), str(cases)])

    out = capsys.readouterr().out
    assert status == 0, out
    assert " 0 failed" in out


def test_the_readmes_complete_example_is_the_example_policy():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    head = "### A complete example (`tests/policies/platform-team.yaml`)\n\n```yaml\n"
    start = readme.index(head) + len(head)

    assert readme[start : readme.index("```", start)] == (HERE / "platform-team.yaml").read_text(
        encoding="utf-8"
    )
