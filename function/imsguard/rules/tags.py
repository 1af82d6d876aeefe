"""Rule kind ``tags``: the image must carry some tags (``key`` or ``key=value``).

IMS's image update (the one PATCH imsguard sends) cannot change tags, so a missing tag is
reported and never fixed: the verdict has no changes, and its fix label is ``cannot_fix``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from pydantic import field_validator

from imsguard.match import Tags, has_tag
from imsguard.rules.base import Mode, RuleKind, Verdict


class TagsRule(RuleKind):
    """The image must carry every tag of ``require``; the rule only reports."""

    kind: Literal["tags"]
    require: Tags

    @field_validator("require")
    @classmethod
    def _one_value_per_key(cls, tags: list[str]) -> list[str]:
        values: dict[str, str] = {}
        for tag in tags:
            key, sep, value = tag.partition("=")
            if sep and values.setdefault(key, value) != value:
                raise ValueError(f"tag {key!r} cannot have two values ({values[key]!r}, {value!r})")
        return tags

    def check(
        self, image: dict[str, Any], mode: Mode, uefi_versions: Collection[str] | None
    ) -> Verdict:
        missing = [tag for tag in self.require if not has_tag(image.get("tags"), tag)]
        if not missing:
            return Verdict(self.name, "compliant", f"the image has tags {self.require}", mode=mode)
        return Verdict(
            self.name,
            "violation",
            f"the image has no tag {', '.join(map(repr, missing))}; "
            "tags cannot be set by an image update, so imsguard only reports",
            mode=mode,
        )
