"""Rule kind ``name``: the image name must match a pattern; the fix renames it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from imsguard.attributes import attribute_text
from imsguard.events import is_cjk
from imsguard.match import Regex
from imsguard.naming import (
    MissingTemplateField,
    check_template,
    ims_safe,
    name_problem,
    normalize_name,
    render_template,
)
from imsguard.patterns import search
from imsguard.rules.base import KEBAB_CASE, Clash, Mode, RuleKind, Verdict


class NameRule(RuleKind):
    """The image name must match ``pattern``. The fix: ``normalize`` (lower-case, runs of
    other characters become one '-'), ``template`` (built from image attributes), or
    ``report`` (no fix)."""

    kind: Literal["name"]
    pattern: Regex = KEBAB_CASE
    fix: Literal["normalize", "template", "report"] | None = None
    template: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _fix_and_template(self) -> NameRule:
        if self.fix is None:
            self.fix = "template" if self.template is not None else "normalize"
        if self.fix == "template" and self.template is None:
            raise ValueError("template: fix: template needs a template")
        if self.fix != "template" and self.template is not None:
            raise ValueError(f"template: only used with fix: template, not {self.fix}")
        if self.template is not None:
            try:
                check_template(self.template)
            except ValueError as exc:
                raise ValueError(f"template: {exc}") from None
        return self

    def check(
        self, image: dict[str, Any], mode: Mode, uefi_versions: Collection[str] | None
    ) -> Verdict:
        name = attribute_text(image.get("name")) or ""
        if search(self.pattern, name):
            return Verdict(
                self.name, "compliant", f"name {name!r} matches {self.pattern!r}", mode=mode
            )
        problem = f"name {name!r} does not match {self.pattern!r}"
        if self.fix == "report":
            return Verdict(self.name, "violation", f"{problem}; the rule only reports", mode=mode)
        try:
            fixed, why_not = name_fix(self, image)
        except MissingTemplateField as exc:
            return Verdict(
                self.name,
                "error",
                f"{problem}, and the template cannot be filled: {exc}",
                mode=mode,
            )
        if fixed is None:
            return Verdict(
                self.name,
                "violation",
                f"{problem}, and {self.fix} makes no valid name "
                f"that matches it ({why_not}); not renamed",
                mode=mode,
            )
        return Verdict(
            self.name, "violation", f"{problem}; rename to {fixed!r}", {"name": fixed}, mode=mode
        )

    @classmethod
    def conflicts(cls, rules: Sequence[tuple[int, RuleKind]]) -> list[Clash]:
        """Two name rules that fix would rename images back and forth."""
        fixers: list[str] = []
        for index, rule in rules:
            if isinstance(rule, cls) and rule.fix != "report":
                fixers.append(rule.name)
                if len(fixers) == 2:
                    return [
                        Clash(
                            ("rules", index, "fix"),
                            f"rules {fixers} would both rename images; "
                            "keep one name rule that fixes, make the others fix: report",
                        )
                    ]
        return []


def fixed_name(rule: NameRule, image: dict[str, Any]) -> str | None:
    """The name the rule's fix gives: a valid IMS name that matches the pattern, or None."""
    return name_fix(rule, image)[0]


def name_fix(rule: NameRule, image: dict[str, Any]) -> tuple[str | None, str]:
    """The fixed name, or None and why each candidate could not be used."""
    name = attribute_text(image.get("name")) or ""
    source = render_template(rule.template or "", image) if rule.fix == "template" else name
    candidates = [ims_safe(source)] if rule.fix == "template" else []
    if any(is_cjk(c) for c in source):  # kept where the pattern allows them (IMS names may)
        candidates.append(normalize_name(source, keep_cjk=True))
    candidates.append(normalize_name(source))
    reasons = []
    for candidate in dict.fromkeys(candidates):
        problem = name_problem(candidate)
        if problem is None and search(rule.pattern, candidate):
            return candidate, ""
        reasons.append(f"{candidate!r} {problem or f'does not match {rule.pattern!r}'}")
    return None, "; ".join(reasons)
