"""Where the tools find what they ship with, installed or run from a checkout.

``bundled/`` beside this module is laid out like the repository root: ``template.yaml``,
``requirements.txt`` and ``function/`` with ``index.py`` and the default ``policy.yaml``.
In a checkout these are links to the real files; a built wheel holds copies. The runtime
package is wherever ``imsguard`` is imported from.
"""

from __future__ import annotations

from pathlib import Path

import imsguard

BUNDLED = Path(__file__).resolve().parent / "bundled"
TEMPLATE = BUNDLED / "template.yaml"
REQUIREMENTS = BUNDLED / "requirements.txt"
INDEX = BUNDLED / "function" / "index.py"
DEFAULT_POLICY = BUNDLED / "function" / "policy.yaml"


def runtime_package() -> Path:
    """The folder of the runtime package ``imsguard`` (what the function zip holds)."""
    return Path(imsguard.__file__).resolve().parent
