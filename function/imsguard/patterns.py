"""Policy regular expressions, run by RE2: linear time, whatever the pattern and the text.

Image names come from anyone who can create an image. With Python's backtracking
engine a pattern such as ``^([a-z0-9]+-?)+$`` takes seconds on a 30-character name and
minutes on a longer one, stalling the function. RE2 never backtracks; what it cannot
run in linear time (backreferences, lookaround) it refuses, and so does the policy,
when it loads.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=256)
def compiled(pattern: str) -> Any:
    """The pattern compiled by RE2; ValueError, saying what RE2 cannot run, if it cannot."""
    try:
        import re2
    except ImportError as exc:  # a package built for another platform: loud, never re
        raise ValueError(f"the regular-expression engine RE2 (google-re2) does not load "
                         f"here: {exc}") from None
    options = re2.Options()
    options.log_errors = False  # RE2 would print its own complaint to stderr
    try:
        return re2.compile(_re2_escapes(pattern), options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
    try:  # compiling (never matching) with Python's engine tells a typo from a feature
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    raise ValueError(f"the regular expression {pattern!r} cannot be run in linear time "
                     f"(RE2: {detail}): backreferences, lookaround ((?=...), (?!...), "
                     "(?<=...)) and the like are not supported, as image names come from "
                     "anyone")


_PYTHON_ESCAPE = re.compile(r"(\\\\)|\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})")


def _re2_escapes(pattern: str) -> str:
    """Python's \\uXXXX escapes, as policies write them, in RE2's spelling \\x{XXXX}."""
    def spell(match: re.Match[str]) -> str:
        if match.group(1):  # an escaped backslash stays as it is
            return match.group(1)
        return "\\x{" + (match.group(2) or match.group(3)) + "}"
    return _PYTHON_ESCAPE.sub(spell, pattern)


def search(pattern: str, text: str) -> bool:
    """Whether the pattern matches somewhere in the text (as ``re.search``)."""
    return compiled(pattern).search(text) is not None
