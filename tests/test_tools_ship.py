"""`imsguard package` and `imsguard deploy` ship only a policy that loads and passes its cases,
and `--policy FILE` ships that file as the policy the function's settings name."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from imsguard_tools import cli, package
from imsguard_tools.cli import main
from imsguard_tools.deploy import Deployer
from imsguard_tools.package import PackageError, build_package

ROOT = Path(__file__).parents[1]
DEFAULT_POLICY = ROOT / "function/policy.yaml"
# Two problems: an attribute value and a template field.
BROKEN = (
    "version: 1\n"
    "rules:\n"
    "  - {name: ram, kind: set, set: {min_ram: big}}\n"
    "  - {name: names, kind: name, template: '{nope}'}\n"
)
GOOD = "version: 1\nrules:\n  - {name: names, kind: name, pattern: '^[a-z0-9-]+$'}\n"
CASES = (
    "cases:\n"
    "  - name: a good name\n"
    "    image: {name: web-01}\n"
    "    expect: {outcome: compliant}\n"
    "  - name: a bad name\n"
    "    image: {name: Web_01}\n"
    "    expect: {outcome: %s}\n"
)


@pytest.fixture
def no_build(monkeypatch):
    """Building the package (pip) and reaching FunctionGraph fail the test."""
    monkeypatch.setattr(package, "build_package", lambda *a, **k: pytest.fail("built"))
    monkeypatch.setattr("imsguard_tools.deploy.build_client", lambda *a: pytest.fail("called"))


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A checkout whose template names function/team.yaml as the policy."""
    root = tmp_path / "checkout"
    (root / "function").mkdir(parents=True)
    data = yaml.safe_load((ROOT / "template.yaml").read_text())
    data["function"]["settings"]["IMSGUARD_POLICY"] = "team.yaml"
    (root / "template.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(cli, "_template_path", lambda given: given or root / "template.yaml")
    return root


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def no_pip(monkeypatch):
    """pip "installs" nothing: the package is the code root alone, built offline."""
    monkeypatch.setattr(
        package.subprocess,
        "run",
        lambda command, **kw: subprocess.CompletedProcess(command, 0, "", ""),
    )


@pytest.mark.parametrize("command", [["package"], ["deploy", "--fake", "--dry-run"]])
def test_an_invalid_policy_is_refused_with_every_problem_and_nothing_is_built(
    tmp_path, capsys, no_build, command
):
    bad = write(tmp_path, "bad.yaml", BROKEN)

    assert main([*command, "--policy", str(bad)]) == 2

    err = capsys.readouterr().err
    assert f"the policy {bad} does not load: nothing was built or deployed" in err
    assert "rule 'ram' (rules[0]), field set (line 3): min_ram" in err
    assert "rule 'names' (rules[1])" in err and "{nope}" in err


@pytest.mark.parametrize("command", [["package"], ["deploy", "--fake", "--dry-run"]])
def test_a_failing_case_beside_the_policy_is_refused(tmp_path, capsys, no_build, command):
    good = write(tmp_path, "team.yaml", GOOD)
    cases = write(tmp_path, "team.cases.yaml", CASES % "compliant")

    assert main([*command, "--policy", str(good)]) == 2

    err = capsys.readouterr().err
    assert f"the policy {good} fails its cases" in err
    assert f"{cases}: case 'a bad name' fails: outcome: expected compliant, got updated" in err
    assert "a good name" not in err


def test_a_broken_cases_file_is_refused(tmp_path, capsys, no_build):
    good = write(tmp_path, "team.yaml", GOOD)
    write(tmp_path, "team.cases.yaml", "cases: [{name: x, image: {}, expect: {outcom: y}}]\n")

    assert main(["package", "--policy", str(good), "--output", "json"]) == 2

    report = json.loads(capsys.readouterr().out)
    assert "fails its cases" in report["error"]
    assert ["expect.outcom" in p for p in report["problems"]] == [True]


def test_the_policy_the_template_names_is_the_one_checked(checkout, capsys, no_build):
    write(checkout / "function", "team.yaml", BROKEN)

    assert main(["package"]) == 2
    assert main(["deploy", "--fake", "--dry-run"]) == 2

    err = capsys.readouterr().err
    assert err.count(f"the policy {checkout / 'function/team.yaml'} does not load") == 2


def test_the_cases_beside_the_templates_policy_are_run(checkout, capsys, no_build):
    write(checkout / "function", "team.yaml", GOOD)
    write(checkout / "function", "team.cases.yaml", CASES % "compliant")

    assert main(["deploy", "--fake", "--dry-run"]) == 2
    assert "case 'a bad name' fails" in capsys.readouterr().err


def test_a_policy_that_passes_is_built_and_reported(checkout, capsys, monkeypatch, tmp_path):
    policy = write(checkout / "function", "team.yaml", GOOD)
    cases = write(checkout / "function", "team.cases.yaml", CASES % "updated")
    seen = {}

    def fake_build(python_version, out_dir=None, policy=None, policy_name=None):
        seen.update(policy=policy, name=policy_name)
        return package.PackageResult(tmp_path / "x.zip", 2**20, 10, "ab" * 32)

    monkeypatch.setattr(package, "build_package", fake_build)

    assert main(["package"]) == 0

    out = capsys.readouterr().out
    assert seen == {"policy": policy, "name": "team.yaml"}
    assert f"policy {policy} (as team.yaml): valid, 2 case(s) of {cases} pass" in out


def test_package_ships_exactly_the_given_policy(tmp_path, capsys, monkeypatch):
    given = write(tmp_path, "mine.yaml", "# ours\n" + GOOD)
    no_pip(monkeypatch)
    real = package.build_package
    monkeypatch.setattr(
        package, "build_package", lambda *a, **k: real(*a, out_dir=tmp_path / "dist", **k)
    )

    assert main(["package", "--policy", str(given), "--output", "json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["policy"] == {
        "file": str(given),
        "packaged_as": "policy.yaml",
        "cases": None,
        "cases_passed": 0,
    }
    with zipfile.ZipFile(report["path"]) as archive:
        assert archive.read("policy.yaml") == given.read_bytes()
        assert [n for n in archive.namelist() if n.endswith((".yaml", ".yml"))] == ["policy.yaml"]


def test_the_policy_goes_in_under_the_name_the_settings_give(tmp_path, monkeypatch):
    given = write(tmp_path, "mine.yaml", GOOD)
    no_pip(monkeypatch)

    built = build_package(
        "3.10", tmp_path / "dist", policy=given, policy_name="./policies/team.yaml"
    )

    with zipfile.ZipFile(built.path) as archive:
        assert archive.read("policies/team.yaml") == given.read_bytes()
        assert "policy.yaml" not in archive.namelist()
        assert "index.py" in archive.namelist()


@pytest.mark.parametrize(
    "name", ["/etc/policy.yaml", "../policy.yaml", "a/../../p.yaml", "", ".", "policies\\team.yaml"]
)
def test_a_policy_name_the_package_cannot_hold_is_refused_before_pip(tmp_path, monkeypatch, name):
    monkeypatch.setattr(package.subprocess, "run", lambda *a, **k: pytest.fail("pip ran"))

    with pytest.raises(PackageError, match="relative to the code root"):
        build_package("3.10", tmp_path, policy_name=name)
    assert list(tmp_path.iterdir()) == []


def test_a_policy_name_that_would_replace_code_is_refused(tmp_path, monkeypatch):
    no_pip(monkeypatch)

    with pytest.raises(PackageError, match=r"imsguard/app\.py from the policy would overwrite"):
        build_package("3.10", tmp_path, policy=DEFAULT_POLICY, policy_name="imsguard/app.py")


def test_an_absolute_policy_in_the_template_is_refused_by_package(checkout, capsys, no_build):
    data = yaml.safe_load((checkout / "template.yaml").read_text())
    data["function"]["settings"]["IMSGUARD_POLICY"] = str(DEFAULT_POLICY)
    (checkout / "template.yaml").write_text(yaml.safe_dump(data))

    assert main(["package"]) == 2
    assert "must be a path relative to the code root" in capsys.readouterr().err


def test_deploy_with_a_policy_uploads_it_where_the_settings_point(tmp_path, capsys, monkeypatch):
    given = write(tmp_path, "mine.yaml", "# ours\n" + GOOD)
    no_pip(monkeypatch)
    real = package.build_package
    monkeypatch.setattr(
        package, "build_package", lambda *a, **k: real(*a, out_dir=tmp_path / "dist", **k)
    )
    uploaded = {}

    def record(self, steps):
        uploaded.update(code=self.code, settings=dict(self.template.function.settings))
        return steps

    monkeypatch.setattr(Deployer, "apply", record)

    assert main(["deploy", "--fake", "--policy", str(given)]) == 0

    out = capsys.readouterr().out
    assert f"policy {given} (as policy.yaml): valid" in out
    # the function loads the policy its settings name (the default: policy.yaml) ...
    shipped_as = uploaded["settings"].get("IMSGUARD_POLICY", "policy.yaml")
    assert shipped_as == "policy.yaml"
    # ... and the code uploaded holds exactly the given file there
    with zipfile.ZipFile(io.BytesIO(uploaded["code"])) as sent:
        assert sent.read(shipped_as) == given.read_bytes()


def test_deploy_refuses_a_package_without_the_policy_the_settings_name(
    tmp_path, capsys, monkeypatch
):
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("index.py", "")
    monkeypatch.setattr("imsguard_tools.deploy.build_client", lambda *a: pytest.fail("called"))

    assert main(["deploy", "--fake", "--dry-run", "--package", str(empty)]) == 2
    assert (
        f"{empty} holds no policy.yaml, the policy the template's IMSGUARD_POLICY names"
        in capsys.readouterr().err
    )


def test_deploy_refuses_a_package_that_is_no_zip(tmp_path, capsys):
    text = write(tmp_path, "package.zip", "not a zip")

    assert main(["deploy", "--fake", "--dry-run", "--package", str(text)]) == 2
    assert "is not a ZIP package" in capsys.readouterr().err


def test_deploy_takes_a_policy_or_a_package_not_both(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["deploy", "--fake", "--policy", str(DEFAULT_POLICY), "--package", "x.zip"])

    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_deploy_refuses_a_package_whose_policy_does_not_load(tmp_path, capsys, monkeypatch):
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("index.py", "")
        archive.writestr(
            "policy.yaml",
            "version: 1\nrules:\n  - name: boot\n    kind: set\n    set: {hw_firmware_typ: uefi}\n",
        )
    monkeypatch.setattr("imsguard_tools.deploy.build_client", lambda *a: pytest.fail("called"))

    assert main(["deploy", "--fake", "--dry-run", "--package", str(broken)]) == 2

    err = capsys.readouterr().err
    assert "its policy.yaml does not load, so every invocation would fail" in err
    assert "did you mean 'hw_firmware_type'?" in err
