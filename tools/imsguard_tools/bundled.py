"""Where the tools find what they ship with, installed or run from a checkout.

``bundled/`` beside this module is laid out like the repository root: ``template.yaml``,
``requirements.txt`` and ``function/`` with ``index.py`` and the default ``policy.yaml``.
In a checkout these are symbolic links to the real files; a built wheel holds copies. The
runtime package is wherever ``imsguard`` is imported from.
"""

from __future__ import annotations

from pathlib import Path

import imsguard

BUNDLED = Path(__file__).resolve().parent / "bundled"
_LINK_TEXT_MAX = 255  # bytes: more than any link in bundled/ holds


def locate(folder: Path, relative: str) -> Path:
    """The file ``folder / relative``. In a checkout made without symbolic links (git's
    core.symlinks=false, common on Windows) each link is a small text file holding its
    target: then the file that text names, so the tools never read a link as the file."""
    path = folder / relative
    if path.is_file() and not path.is_symlink() and path.stat().st_size <= _LINK_TEXT_MAX:
        target = path.read_text(encoding="utf-8", errors="replace").strip()
        if target.startswith("../") and "\n" not in target:
            linked = path.parent / target
            if not linked.is_file():
                raise FileNotFoundError(
                    f"{path} is a link to {target}, which is missing (a package built from a "
                    "checkout without symbolic links holds the links' text: build it from one "
                    "with them)"
                )
            return linked.resolve()
    return path


TEMPLATE = locate(BUNDLED, "template.yaml")
REQUIREMENTS = locate(BUNDLED, "requirements.txt")
INDEX = locate(BUNDLED, "function/index.py")
DEFAULT_POLICY = locate(BUNDLED, "function/policy.yaml")


def runtime_package() -> Path:
    """The folder of the runtime package ``imsguard`` (what the function zip holds)."""
    return Path(imsguard.__file__).resolve().parent
