"""`build_package`: the FunctionGraph ZIP runs on its own, holds only what it should, and
is reproducible. The package is built once per module (pip caches the wheels)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from imsguard import __version__
from imsguard_tools import package
from imsguard_tools.package import (
    MAX_ZIP_BYTES,
    PackageError,
    PackageResult,
    build_package,
    bundled_sources,
    code_files,
)

ROOT = Path(__file__).resolve().parent.parent
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# What of imsguard's own a package holds, and nothing more: the handler file, the policy and
# the runtime package's modules (listed from the source tree, not from the builder).
ALLOWED = {
    "index.py",
    "policy.yaml",
    *(
        f"imsguard/{p.relative_to(ROOT / 'function/imsguard').as_posix()}"
        for p in (ROOT / "function/imsguard").rglob("*.py")
        if "__pycache__" not in p.parts
    ),
}

# Runs in a fresh interpreter whose sys.path is the standard library and the unzipped
# package, nothing else: what FunctionGraph gives the function.
RUN_HANDLER = r"""
import json, sys
folder, out = sys.argv[1], sys.argv[2]
sys.path[:] = [folder] + [p for p in sys.path
                          if "site-packages" not in p and "dist-packages" not in p]
import index
results = {
    "ignored": index.handler({"cts": {"service_type": "FunctionGraph", "resource_type": "graph",
                                      "trace_name": "deleteGraph"}}, None),
    "invalid": index.handler({"image_id": "not-a-uuid"}, None),
}
import imsguard.fgs, imsguard.ims, imsguard.sweep  # the SDK-backed modules load too
modules = {}
for name in ("imsguard", "huaweicloudsdkcore", "huaweicloudsdkims",
             "huaweicloudsdkfunctiongraph", "pydantic", "pydantic_core", "yaml", "requests",
             "urllib3"):
    modules[name] = __import__(name).__file__
with open(out, "w") as f:
    json.dump({"results": results, "modules": modules, "path": sys.path}, f)
"""


PROBE_TIMEOUT_S = 60


def index_unreachable(folder: Path) -> str | None:
    """Why pip cannot fetch the runtime wheels here (no network, the index is down), or
    None: one small download, as the build makes them (pip's own configuration: index,
    mirrors, proxies, cache), with a short timeout and no retries."""
    requirement = next(
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    )
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        *(f"--platform={p}" for p in package.PLATFORMS),
        "--implementation",
        "cp",
        "--python-version",
        PYTHON,
        "--timeout",
        "10",
        "--retries",
        "0",
        "--dest",
        str(folder),
        requirement,
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return (
            f"the package index did not answer in {PROBE_TIMEOUT_S} s (pip download "
            f"{requirement}): the package build tests need it"
        )
    if done.returncode != 0:
        said = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        return (
            f"the package index is unreachable (pip download {requirement}: "
            f"{said[-1] if said else f'exit code {done.returncode}'}): the package build "
            "tests need it"
        )
    return None


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skips, saying why, the tests that build a real package when pip cannot reach the
    package index (offline): they need its wheels. Probed once per run of this module."""
    reason = index_unreachable(tmp_path_factory.mktemp("probe"))
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def built(index: None, tmp_path_factory: pytest.TempPathFactory) -> PackageResult:
    return build_package(PYTHON, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def names(built: PackageResult) -> list[str]:
    with zipfile.ZipFile(built.path) as archive:
        return archive.namelist()


@pytest.mark.network  # needs the package index: skipped with the reason offline
def test_the_unzipped_package_runs_the_handler_on_its_own(built, tmp_path):
    folder = tmp_path / "code"
    folder.mkdir()
    with zipfile.ZipFile(built.path) as archive:
        archive.extractall(folder)
    out = tmp_path / "out.json"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMSGUARD_", "HUAWEICLOUD_", "RUNTIME_", "PYTHON"))
    }

    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RUN_HANDLER, str(folder), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    seen = json.loads(out.read_text())
    ignored, invalid = seen["results"]["ignored"], seen["results"]["invalid"]
    assert ignored["status"] == "ignored", ignored
    assert ignored["results"] == []
    assert invalid["status"] == "invalid", invalid
    assert not [p for p in seen["path"] if "site-packages" in p or "dist-packages" in p]
    for name, file in seen["modules"].items():  # every dependency came from the zip
        assert file.startswith(str(folder) + os.sep), (name, file)


@pytest.mark.network  # needs the package index: skipped with the reason offline
def test_the_zip_holds_the_code_root_and_dependencies_only(built, names):
    assert built.path == built.path.parent / f"imsguard-{__version__}.zip"
    assert built.size == built.path.stat().st_size < MAX_ZIP_BYTES
    assert built.files == len(names) == len(set(names))
    assert {
        "index.py",
        "policy.yaml",
        "imsguard/__init__.py",
        "imsguard/app.py",
        "yaml/__init__.py",
        "pydantic/__init__.py",
        "huaweicloudsdkims/__init__.py",
    } <= set(names)
    assert not [n for n in names if n.startswith(("imsguard_tools", "tests/", "bin/"))]
    ours = {n for n in names if n in ("index.py", "policy.yaml") or n.startswith("imsguard/")}
    assert ours == ALLOWED
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if ".egg-info" in n or n.startswith(("responses", "pytest"))]
    assert not [
        n
        for n in names  # pip's install-time records
        if n.rsplit("/", 1)[-1] in {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    ]
    assert [n for n in names if n.endswith(".dist-info/METADATA")]  # importlib.metadata works


def test_the_code_root_is_an_allow_list_of_the_runtime_modules():
    """No tooling module goes in: the code is index.py and the runtime package's modules."""
    files = {name for name, _ in code_files(bundled_sources())}

    assert files | {"policy.yaml"} == ALLOWED
    tools = {p.stem for p in (ROOT / "tools/imsguard_tools").glob("*.py")} - {"__init__"}
    assert {"cli", "cases", "template", "package", "deploy", "testing", "revert"} <= tools
    assert not [f for f in files if f.rsplit("/", 1)[-1].removesuffix(".py") in tools]


@pytest.mark.network  # needs the package index: skipped with the reason offline
def test_the_zip_entries_are_sorted_with_fixed_metadata(built, names):
    assert names == sorted(names)
    with zipfile.ZipFile(built.path) as archive:
        infos = archive.infolist()
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr for i in infos} == {0o100644 << 16}
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
    assert not [i for i in infos if i.is_dir()]


def test_the_index_probe_says_why_the_build_tests_are_skipped(tmp_path, monkeypatch):
    calls = []

    def pip(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(
            command, 1, "", "WARNING: Retrying\nERROR: No matching distribution found\n"
        )

    monkeypatch.setattr(subprocess, "run", pip)
    reason = index_unreachable(tmp_path)

    assert reason == (
        "the package index is unreachable (pip download huaweicloudsdkcore==3.1.219"
        ": ERROR: No matching distribution found): the package build tests need it"
    )
    assert calls[0][1:4] == ["-m", "pip", "download"] and "--timeout" in calls[0]

    def slow(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", slow)
    assert "did not answer in 60 s" in index_unreachable(tmp_path)

    monkeypatch.setattr(
        subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(command, 0, "", "")
    )
    assert index_unreachable(tmp_path) is None


@pytest.mark.network  # needs the package index: skipped with the reason offline
def test_two_builds_are_byte_identical(built, tmp_path):
    again = build_package(PYTHON, tmp_path)

    assert again.path != built.path
    assert again.sha256 == built.sha256
    assert again.path.read_bytes() == built.path.read_bytes()


@pytest.mark.parametrize(
    "version",
    [
        "2.7",
        "3",
        "3.9",
        "3.10; rm -rf /",
        "3.10\n",
        " 3.10",
        "3.1",
        "3.10.1",
        "python3.10",
        "",
        None,
    ],
)
def test_a_bad_python_version_is_refused_before_pip_runs(version, tmp_path, monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip ran")

    monkeypatch.setattr(package.subprocess, "run", no_pip)

    with pytest.raises(PackageError, match="Python version"):
        build_package(version, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_pip_failure_is_reported_with_its_last_lines(tmp_path, monkeypatch):
    def failing_pip(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "install"]
        assert "--no-deps" in command and "--no-compile" in command
        assert command[command.index("--python-version") + 1] == "3.12"
        return subprocess.CompletedProcess(command, 1, "", "noise\n" * 50 + "ERROR: no wheel\n")

    monkeypatch.setattr(package.subprocess, "run", failing_pip)

    with pytest.raises(PackageError, match="pip failed") as caught:
        build_package("3.12", tmp_path)
    assert str(caught.value).endswith("ERROR: no wheel")
    assert str(caught.value).count("noise") < 50
    assert list(tmp_path.iterdir()) == []


def test_a_package_over_the_limit_is_refused_and_removed(tmp_path, monkeypatch):
    def no_dependencies(command, **kwargs):  # pip "installs" nothing: the code root alone
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(package.subprocess, "run", no_dependencies)
    monkeypatch.setattr(package, "MAX_ZIP_BYTES", 1000)

    with pytest.raises(PackageError, match=r"MB \(\d+ bytes\), over"):
        build_package("3.10", tmp_path)
    assert list(tmp_path.iterdir()) == []


def _wheel(folder: Path, name: str, platform: str) -> Path:
    """A minimal wheel of ``name`` 1.0 for ``platform`` (compiled-looking, any Python 3)."""
    path = folder / f"{name}-1.0-py3-none-{platform}.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}/__init__.py": "",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: py3-none-{platform}\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as archive:
        for entry, text in files.items():
            archive.writestr(entry, text)
    return path


@pytest.mark.parametrize(
    ("platform", "taken"),
    [
        ("manylinux_2_24_x86_64", True),  # between manylinux2014 and 2.28: was refused
        ("manylinux_2_28_x86_64", True),
        ("manylinux2014_x86_64", True),
        ("manylinux1_x86_64", True),
        ("manylinux_2_31_x86_64", False),  # newer than the runtime's glibc
        ("manylinux_2_28_aarch64", False),  # another machine
    ],
)
def test_wheels_for_every_glibc_up_to_the_runtimes_are_taken(
    platform, taken, tmp_path, monkeypatch
):
    """pip takes only the platform tags it is given: a dependency that publishes wheels for
    one glibc only must still be found when the runtime's glibc (2.28) can load them."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "onlyone", platform)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("onlyone==1.0\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))

    if taken:
        package.install_dependencies(requirements, "3.10", tmp_path / "site")
        assert (tmp_path / "site/onlyone/__init__.py").is_file()
    else:
        with pytest.raises(PackageError, match="pip failed"):
            package.install_dependencies(requirements, "3.10", tmp_path / "site")


# Runs with sys.path = the installed wheels' folder + the dependencies only (no checkout, no
# editable install): the tools must find their template, default policy and samples there.
RUN_INSTALLED_TOOLS = r"""
import contextlib, io, json, sys
folder, site, event = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:] = [folder, site] + [p for p in sys.path if "site-packages" not in p]
from imsguard_tools.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    iam = main(["iam-policy", "--output", "json"])
    invoked = main(["invoke", event, "--fake", "--output", "json"])
import imsguard, imsguard_tools, imsguard_tools.bundled as bundled
print(json.dumps({"iam": iam, "invoke": invoked, "out": out.getvalue(),
                  "files": [imsguard.__file__, imsguard_tools.__file__, str(bundled.TEMPLATE)]}))
"""


@pytest.mark.network  # pip builds the wheels with setuptools from the package index
def test_the_installed_tools_need_no_checkout(index, tmp_path):
    """Both distributions built as wheels and unpacked (as pip would install them) run the
    CLI with its bundled template.yaml, default policy and sample images."""
    source = tmp_path / "source"  # a copy: pip builds in the tree and leaves build/ there
    litter = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, symlinks=True, ignore=litter)
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels)]
    done = subprocess.run(
        [*build, str(source), str(source / "tools")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    installed = tmp_path / "installed"
    built = sorted(p.name for p in wheels.glob("*.whl"))
    assert [n.split("-")[0] for n in built] == ["imsguard", "imsguard_tools"], built
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(installed)
    assert not (installed / "imsguard_tools/bundled/template.yaml").is_symlink()
    site = next(p for p in sys.path if p.endswith("site-packages"))
    event = ROOT / "tests/events/cts_create_image.json"

    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", RUN_INSTALLED_TOOLS, str(installed), site, str(event)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["iam"] == 0 and seen["invoke"] == 0, seen["out"][-3000:] + done.stderr[-3000:]
    assert all(f.startswith(str(installed)) for f in seen["files"]), seen["files"]
    assert '"outcome": "updated"' in seen["out"]


def test_a_checkout_without_symbolic_links_still_finds_the_bundled_files(tmp_path):
    """git with core.symlinks=false writes each link of bundled/ as a text file holding its
    target: the tools read the file it names, never the link's text."""
    from imsguard_tools.bundled import locate

    (tmp_path / "function").mkdir()
    real = tmp_path / "function/policy.yaml"
    real.write_text("version: 1\n")
    folder = tmp_path / "tools/imsguard_tools/bundled"
    (folder / "function").mkdir(parents=True)
    (folder / "function/policy.yaml").write_text("../../../../function/policy.yaml")
    (folder / "gone.yaml").write_text("../../../nothing.yaml")
    (folder / "copy.yaml").write_text("version: 1\n")  # a wheel's copy: read as it is

    assert locate(folder, "function/policy.yaml") == real.resolve()
    assert locate(folder, "copy.yaml") == folder / "copy.yaml"
    with pytest.raises(FileNotFoundError, match=r"gone\.yaml is a link to"):
        locate(folder, "gone.yaml")


@pytest.mark.network  # needs the package index: skipped with the reason offline
def test_the_source_built_obs_sdk_is_pure_python_and_built_by_the_pinned_backend(
    built, names, tmp_path
):
    from imsguard_tools.package import BUILD_BACKEND

    assert not [n for n in names if "_crcfunext" in n]  # compiled for this machine: left out
    setuptools = next(p for p in BUILD_BACKEND if p.startswith("setuptools=="))
    with zipfile.ZipFile(built.path) as archive:
        wheels = [n for n in names if n.endswith(".dist-info/WHEEL") and "crcmod" in n]
        assert wheels
        generator = archive.read(wheels[0]).decode()
        archive.extractall(tmp_path / "code")
    assert f"Generator: setuptools ({setuptools.split('==')[1]})" in generator
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import obs, crcmod; print(obs.__file__, crcmod.__file__)",
            str(tmp_path / "code"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(str(tmp_path / "code")) == 2  # both from the zip
