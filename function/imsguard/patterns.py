"""Policy regular expressions, run by RE2: linear time, whatever the pattern and the text.

Image names come from anyone who can create an image. With Python's backtracking
engine a pattern such as ``^([a-z0-9]+-?)+$`` takes seconds on a 30-character name and
minutes on a longer one, stalling the function. RE2 never backtracks; what it cannot
run in linear time (backreferences, lookaround) it refuses, and so does the policy,
when it loads.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=256)
def compiled(pattern: str) -> Any:
    """The pattern compiled by RE2; ValueError, saying what RE2 cannot run, if it cannot."""
    try:
        import re2
    except ImportError as exc:  # a package built for another platform: loud, never re
        raise ValueError(
            f"the regular-expression engine RE2 (google-re2) does not load here: {exc}"
        ) from None
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
    raise ValueError(
        f"the regular expression {pattern!r} cannot be run in linear time "
        f"(RE2: {detail}): imsguard runs patterns with RE2, as image names come "
        "from anyone, and RE2 has no backreferences, lookaround ((?=...), (?!...), "
        "(?<=...)), verbose mode or repeats over 1000"
    )


# What Python's escapes mean, in RE2's terms: RE2's \\d, \\w and \\s are ASCII only, so a
# pattern such as ^[\\w-]+$ would stop matching "Web服务器" (and the image be renamed).
_IN_CLASS = {"d": r"\p{Nd}", "w": r"\p{L}\p{N}_", "s": r"\s\p{Z}", "D": r"\P{Nd}"}
_ALONE = {
    "d": r"\p{Nd}",
    "w": r"[\p{L}\p{N}_]",
    "s": r"[\s\p{Z}]",
    "D": r"\P{Nd}",
    "W": r"[^\p{L}\p{N}_]",
    "S": r"[^\s\p{Z}]",
    "Z": r"\z",
}


def _re2_escapes(pattern: str) -> str:
    """A pattern written for Python's engine, as RE2 must read it to match the same text:
    \\uXXXX and \\UXXXXXXXX as \\x{...}, \\Z as \\z, and \\d \\w \\s (\\D \\W \\S) as the
    Unicode classes they are in Python. Escaped backslashes and everything else stay."""
    out, index, in_class = [], 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            code = pattern[index + 1]
            width = {"u": 4, "U": 8}.get(code)
            digits = pattern[index + 2 : index + 2 + width] if width else ""
            if width and len(digits) == width and all(c in string.hexdigits for c in digits):
                out.append("\\x{" + digits + "}")
                index += 2 + width
                continue
            if in_class and code in "WS":  # a class cannot hold the complement of a class
                raise ValueError(
                    f"the regular expression {pattern!r} uses \\{code} inside "
                    "[...], which RE2 cannot give its Unicode meaning: write the "
                    f"class the other way round, with \\{code.lower()} in [^...]"
                )
            table = _IN_CLASS if in_class else _ALONE
            out.append(table.get(code, char + code))
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            index += 1
            for literal in ("^", "]"):  # "[]...]" and "[^]...]" hold a literal ]
                if pattern.startswith(literal, index):
                    out.append(literal)
                    index += 1
            continue
        if char == "]" and in_class:
            in_class = False
        out.append(char)
        index += 1
    return "".join(out)


def search(pattern: str, text: str) -> bool:
    """Whether the pattern matches somewhere in the text (as ``re.search``). RE2 reads
    UTF-8, so a lone surrogate (which no real name holds) is read as U+FFFD."""
    try:
        return compiled(pattern).search(text) is not None
    except UnicodeEncodeError:
        clean = text.encode("utf-8", "replace").decode("utf-8")
        return compiled(pattern).search(clean) is not None
