"""Helping with typos: the nearest known word, and how far apart two words are."""

from __future__ import annotations

from typing import Any


def did_you_mean(word: str, known: Any) -> str:
    """ "; did you mean 'x'?" for the nearest known word, or nothing."""
    import difflib  # only when a policy is wrong

    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    if not close:
        return ""
    spelled = known[close[0]] if isinstance(known, dict) else close[0]
    return f"; did you mean {spelled!r}?"


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    row = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, char_b in enumerate(b, 1):
            previous, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, previous + (char_a != char_b)),
            )
    return row[-1]
