"""Build the FunctionGraph code package: ``dist/imsguard-<version>.zip``.

FunctionGraph runs the handler file at the root of the ZIP with the code root on
``sys.path``, so everything lies at the zip root: the runtime dependencies from
``requirements.txt`` (Linux x86_64 wheels for the target Python, whatever machine
builds the package) and, from an allow-list, the handler file, the policy and the runtime
package ``imsguard`` (never the tools).

The zip is reproducible: the same inputs give a byte-identical file (entries sorted,
fixed timestamps and permissions, fixed compression level, and pip's install-time
records left out). Only the standard library is used here, and nothing runs on import.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple

MAX_ZIP_BYTES = 40 * 1024 * 1024  # the FunctionGraph console's upload limit
# The FunctionGraph runtimes: Linux on x86_64 with glibc 2.28 or newer (an assumption:
# FunctionGraph does not say; google-re2 ships only glibc 2.28 wheels). pip takes only the
# platform tags it is given, so every manylinux tag such a runtime accepts is given: glibc
# 2.5 to 2.28 in PEP 600's spelling, and the older aliases (manylinux1, 2010, 2014).
RUNTIME_GLIBC = (2, 28)
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(RUNTIME_GLIBC[1], 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
# Published as source only (no wheel on the index; the OBS SDK and its crcmod): pip builds them
# here. Both run as pure Python: crcmod's optional C extension, compiled for this machine and
# not for the runtime, is left out (crcmod then uses its pure-Python code).
SOURCE_ONLY = ("esdk-obs-python", "crcmod")
# The build backend pip may use for them, pinned (through PIP_CONSTRAINT, which pip's isolated
# build environment honours): the same sources build the same files, so the ZIP's digest
# changes only when imsguard or a pin does.
BUILD_BACKEND = ("setuptools==80.9.0", "wheel==0.45.1")
_BUILT_FOR_THIS_MACHINE = "crcmod/_crcfunext"
PIP_TIMEOUT_S = 1800
STDERR_LINES = 20  # lines of pip's stderr a PackageError quotes

_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a ZIP can store
_FILE_MODE = 0o100644  # regular file, rw-r--r--
_COMPRESS_LEVEL = 9
_PYTHON_VERSION = re.compile(r"3\.(\d{2})")  # used with fullmatch: 3.10, 3.12, ...
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]*")

# The code root is built from an allow-list: index.py, the policy (as the template's
# IMSGUARD_POLICY names it, default policy.yaml) and the runtime package's own modules.
# Nothing else of the checkout or of the tools goes in.
DEFAULT_POLICY_NAME = "policy.yaml"
_CODE_PACKAGE = "imsguard"
_RUNTIME_FILES = ("*.py",)  # relative to the runtime package, searched recursively
# pip writes these at install time; they describe the install (files we drop, the
# installer, how it was asked for), not the package, and may differ between builds.
_INSTALL_RECORDS = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})


class PackageError(Exception):
    """The package cannot be built; the message says why."""


class PackageResult(NamedTuple):
    path: Path  # the zip
    size: int  # bytes
    files: int  # entries in the zip (files only)
    sha256: str  # hex digest of the zip


class Sources(NamedTuple):
    """What a package is built from: the handler file, the runtime package's folder and the
    pinned runtime requirements (the tools' bundled copies, see imsguard_tools.bundled)."""

    handler_file: Path
    runtime_package: Path
    requirements: Path


def bundled_sources() -> Sources:
    from imsguard_tools.bundled import INDEX, REQUIREMENTS, runtime_package

    return Sources(INDEX, runtime_package(), REQUIREMENTS)


def build_package(
    python_version: str,
    out_dir: Path | None = None,
    policy: Path | None = None,
    policy_name: str = DEFAULT_POLICY_NAME,
    sources: Sources | None = None,
) -> PackageResult:
    """Build ``<out_dir>/imsguard-<version>.zip`` for FunctionGraph's ``python_version``
    ("3.10", "3.12", ...); ``out_dir`` defaults to ``dist`` in the working directory. The
    policy file ``policy`` (default: the bundled default policy) goes in as ``policy_name``,
    the path the function's IMSGUARD_POLICY names, relative to the code root; checking it is
    the caller's. Raises PackageError (and leaves no zip behind) if the version is not a
    Python 3 minor version from 3.10 on, pip fails, or the zip is over 40 MB."""
    python_version = check_python_version(python_version)
    policy_name = check_policy_name(policy_name)
    sources = sources or bundled_sources()
    for needed in sources:
        if not needed.exists():
            raise PackageError(f"{needed} is missing; is imsguard installed completely?")
    if policy is None:
        from imsguard_tools.bundled import DEFAULT_POLICY

        policy = DEFAULT_POLICY
    policy = Path(policy)
    if not policy.is_file():
        raise PackageError(f"no policy file at {policy}")
    version = read_version(sources.runtime_package / "__init__.py")
    out_dir = Path(out_dir) if out_dir is not None else Path.cwd() / "dist"

    with tempfile.TemporaryDirectory(prefix="imsguard-package-") as work:
        target = Path(work) / "site"
        install_dependencies(sources.requirements, python_version, target)
        entries: dict[str, Path] = {}
        _add(entries, _dependency_files(target), "the dependencies")
        _add(entries, code_files(sources), "the code root")
        _add(entries, iter([(policy_name, policy)]), "the policy")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"imsguard-{version}.zip"
        _write_zip(path, entries)

    size = path.stat().st_size
    if size > MAX_ZIP_BYTES:
        path.unlink()
        raise PackageError(
            f"the package would be {size / 2**20:.1f} MB ({size} bytes), over "
            f"FunctionGraph's {MAX_ZIP_BYTES / 2**20:g} MB upload limit"
        )
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return PackageResult(path=path, size=size, files=len(entries), sha256=sha256)


def python_of(package: Path) -> str | None:
    """The Python a package was built for ("3.10"), from its compiled extensions' tags;
    None when it has none (or is not a ZIP)."""
    try:
        with zipfile.ZipFile(package) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return None
    for name in names:
        match = re.search(r"\.cpython-3(\d+)-", name)
        if match:
            return f"3.{match.group(1)}"
    return None


def check_policy_name(name: str) -> str:
    """The policy's path inside the package ("policy.yaml", "policies/team.yaml"), as
    IMSGUARD_POLICY gives it relative to the code root; PackageError for a path the
    package cannot hold (absolute, or leaving the code root)."""
    path = PurePosixPath(name) if isinstance(name, str) else None
    if (
        path is None
        or not name.strip()
        or path.is_absolute()
        or "\\" in name
        or ".." in path.parts
        or path.name in ("", ".")
    ):
        raise PackageError(
            f"IMSGUARD_POLICY={name!r}: the policy ships inside the package, so "
            "it must be a path relative to the code root, such as policy.yaml"
        )
    return path.as_posix()


def check_python_version(python_version: str) -> str:
    """``python_version`` if it is a plain "3.X" from 3.10 on, else PackageError."""
    if not isinstance(python_version, str):
        raise PackageError(
            f"the Python version must be text like 3.10, not {type(python_version).__name__}"
        )
    found = _PYTHON_VERSION.fullmatch(python_version)
    if found is None or int(found.group(1)) < 10:
        raise PackageError(
            f"invalid Python version {python_version[:40]!r}: give the "
            f"FunctionGraph runtime's version as 3.X, from 3.10 on "
            f"(e.g. 3.10 or 3.12)"
        )
    return python_version


def read_version(init_file: Path) -> str:
    """``__version__`` from the package's ``__init__.py``, read without importing it (the
    package built is the one under ``root``, not necessarily the one running)."""
    try:
        tree = ast.parse(init_file.read_text(encoding="utf-8"), str(init_file))
    except (OSError, SyntaxError, ValueError) as exc:
        raise PackageError(f"cannot read the version from {init_file}: {exc}") from exc
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
        ):
            version = node.value.value
            if isinstance(version, str) and _VERSION.fullmatch(version):
                return version
            raise PackageError(f"unusable __version__ {version!r} in {init_file}")
    raise PackageError(f"no __version__ in {init_file}")


def install_dependencies(requirements: Path, python_version: str, target: Path) -> None:
    """pip-install the pinned wheels for FunctionGraph's platform into ``target``.
    requirements.txt pins every runtime dependency, transitive ones too: hence --no-deps."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--no-cache-dir",  # a wheel cached from another build backend would slip in
        "--use-pep517",  # older pips would "setup.py install" the source-only ones (egg-info)
        "--no-deps",
        "--only-binary=:all:",
        f"--no-binary={','.join(SOURCE_ONLY)}",
        *(f"--platform={p}" for p in PLATFORMS),
        "--implementation",
        "cp",
        "--python-version",
        check_python_version(python_version),
        "--target",
        str(target),
        "-r",
        str(requirements),
    ]
    constraints = target.parent / f"{target.name}-build-constraints.txt"
    constraints.write_text("\n".join(BUILD_BACKEND) + "\n", encoding="utf-8")
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PIP_TIMEOUT_S,
            check=False,
            env={**os.environ, "PIP_CONSTRAINT": str(constraints)},
        )
    except subprocess.TimeoutExpired as exc:
        raise PackageError(f"pip did not finish in {PIP_TIMEOUT_S} s") from exc
    except OSError as exc:
        raise PackageError(f"cannot run pip: {exc}") from exc
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
        tail = "\n".join(lines[-STDERR_LINES:]) or "(no output)"
        raise PackageError(
            f"pip failed (exit code {done.returncode}) installing "
            f"{requirements.name} for Python {python_version}:\n{tail}"
        )


def _dependency_files(target: Path) -> Iterator[tuple[str, Path]]:
    """What pip installed, minus console scripts, bytecode and pip's install records."""
    for name, path in _walk(target):
        top, _, rest = name.partition("/")
        if top == "bin":
            continue
        if top.endswith(".dist-info") and rest in _INSTALL_RECORDS:
            continue
        if name.startswith(_BUILT_FOR_THIS_MACHINE):
            continue
        yield name, path


def code_files(sources: Sources) -> Iterator[tuple[str, Path]]:
    """The allow-list: index.py and the runtime package's modules (the policy is added on
    its own, under the name the settings give it)."""
    if not sources.handler_file.is_file():
        raise PackageError(f"{sources.handler_file} is missing")
    yield "index.py", sources.handler_file
    for pattern in _RUNTIME_FILES:
        for path in sorted(sources.runtime_package.rglob(pattern)):
            relative = path.relative_to(sources.runtime_package)
            if "__pycache__" not in relative.parts and not relative.name.startswith("."):
                yield f"{_CODE_PACKAGE}/{relative.as_posix()}", path


def _walk(folder: Path) -> Iterator[tuple[str, Path]]:
    """(zip name, path) of every file under ``folder``, without ``__pycache__``,
    compiled bytecode or hidden files (editor and OS litter)."""
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        relative = Path(parent).relative_to(folder).as_posix()
        base = "" if relative == "." else relative
        for file in files:
            if file.endswith((".pyc", ".pyo")) or file.startswith("."):
                continue
            path = Path(parent, file)
            if path.is_file():
                yield (f"{base}/{file}" if base else file), path


def _add(entries: dict[str, Path], found: Iterator[tuple[str, Path]], source: str) -> None:
    for name, path in found:
        if name in entries:
            raise PackageError(f"{name} from {source} would overwrite {entries[name]}")
        entries[name] = path


def _write_zip(path: Path, entries: dict[str, Path]) -> None:
    """Write the entries sorted by name with fixed metadata; replace ``path`` only once
    the zip is complete."""
    partial = path.with_name(path.name + ".partial")
    try:
        with zipfile.ZipFile(
            partial, "w", zipfile.ZIP_DEFLATED, compresslevel=_COMPRESS_LEVEL
        ) as archive:
            for name in sorted(entries):
                info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
                info.create_system = 3  # Unix, whichever system builds it
                info.external_attr = _FILE_MODE << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(
                    info,
                    entries[name].read_bytes(),
                    compress_type=zipfile.ZIP_DEFLATED,
                    compresslevel=_COMPRESS_LEVEL,
                )
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
