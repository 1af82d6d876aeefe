"""What every rule kind has: a name, a mode, the images it applies to; and what it gives back.

A kind is one class (see ``imsguard.rules``): its pydantic fields are its schema, ``check``
says what it finds on an image that it applies to, and ``conflicts`` what no single rule of
the kind shows (two rules that want different things).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

from imsguard.match import STRICT, Match

KEBAB_CASE = r"^[a-z0-9]+(-[a-z0-9]+)*$"

Mode = Literal["enforce", "audit"]
VerdictStatus = Literal["compliant", "violation", "not_applicable", "exempt", "error"]
NO_CHANGES: Mapping[str, str] = MappingProxyType({})


class Verdict(NamedTuple):
    """One rule's finding. ``changes`` is what would fix it (empty: cannot be fixed);
    ``blocked`` is true when part of the fix was refused for safety."""

    rule: str
    status: VerdictStatus
    reason: str
    changes: Mapping[str, str] = NO_CHANGES
    blocked: bool = False
    mode: Mode = "enforce"

    @property
    def fixable(self) -> bool:
        return self.status == "violation" and bool(self.changes)


class Clash(NamedTuple):
    """Rules that cannot all hold: where to change the policy (as pydantic locates errors),
    and why."""

    loc: tuple[Any, ...]
    message: str


class RuleKind(BaseModel):
    """The fields every rule has. A kind adds ``kind: Literal["its-name"]`` and its own."""

    model_config = STRICT

    name: str = Field(pattern=KEBAB_CASE, max_length=64)
    description: str = ""
    mode: Mode | None = None  # None: the policy's mode
    match: Match = Field(default_factory=Match)
    exclude: Match | None = None  # images matching this are left out of the rule

    def check(
        self, image: dict[str, Any], mode: Mode, uefi_versions: Collection[str] | None
    ) -> Verdict:
        """The verdict on an image the rule applies to. Pure: no I/O, no clock."""
        raise NotImplementedError

    @classmethod
    def conflicts(cls, rules: Sequence[tuple[int, RuleKind]]) -> list[Clash]:
        """What the kind's rules among the policy's ``rules`` (with their indexes) clash on."""
        return []
