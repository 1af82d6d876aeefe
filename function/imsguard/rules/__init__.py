"""The rule kinds, in one registry: the policy's ``rules`` list is a union of these, told
apart by ``kind``, and evaluation asks each rule's own class to check it.

Adding a kind: one module with one ``RuleKind`` class, and its line in ``KINDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from imsguard.rules.base import RuleKind
from imsguard.rules.name import NameRule
from imsguard.rules.set import SetRule
from imsguard.rules.tags import TagsRule

KINDS: tuple[type[RuleKind], ...] = (NameRule, SetRule, TagsRule)

if TYPE_CHECKING:
    Rule = RuleKind
else:  # pydantic picks the class by the rule's "kind"
    Rule = Annotated[Union[KINDS], Field(discriminator="kind")]  # noqa: UP007
