"""FunctionGraph entry point: the handler string is ``index.handler``."""

import os
import sys

_CODE_ROOT = os.path.dirname(os.path.abspath(__file__))
if _CODE_ROOT not in sys.path:  # the runtime normally has it; local runs may not
    sys.path.insert(0, _CODE_ROOT)

from imsguard.app import handler  # noqa: E402

__all__ = ["handler"]
