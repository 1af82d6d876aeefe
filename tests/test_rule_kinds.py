"""The registry of rule kinds: the policy's union, dispatch and clash checks all come from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from imsguard import evaluate as evaluate_module
from imsguard.policy import Policy, PolicyError, parse_policy
from imsguard.rules import KINDS


def test_the_policy_schema_offers_every_registered_kind():
    schema = Policy.model_json_schema()
    offered = schema["properties"]["rules"]["items"]["discriminator"]["mapping"]

    assert set(offered) == {kind.model_fields["kind"].annotation.__args__[0] for kind in KINDS}


def test_an_unknown_kind_is_refused_naming_the_registered_ones():
    with pytest.raises(PolicyError) as error:
        parse_policy({"version": 1, "rules": [{"name": "x", "kind": "sett"}]})

    assert "'name', 'set', 'tags'" in str(error.value)


def test_evaluate_asks_the_rule_not_its_kind():
    """No isinstance chain over kinds: evaluation calls each rule's own check."""
    tree = ast.parse(Path(evaluate_module.__file__).read_text(encoding="utf-8"))
    kind_names = {kind.__name__ for kind in KINDS}
    named = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}

    assert not named & kind_names


def test_clashes_keep_their_location_and_words():
    rules = [
        {"name": "a", "kind": "name"},
        {"name": "b", "kind": "set", "set": {"min_ram": "4096"}},
        {"name": "c", "kind": "name", "fix": "normalize"},
        {"name": "d", "kind": "set", "set": {"min_ram": "2048", "max_ram": "1024"}},
    ]

    with pytest.raises(PolicyError) as error:
        parse_policy({"version": 1, "rules": rules})

    assert error.value.problems == [
        "rule 'c' (rules[2]), field fix: rules ['a', 'c'] would both rename images; "
        "keep one name rule that fixes, make the others fix: report",
        "rule 'd' (rules[3]), field set.min_ram: rules 'b' and 'd' set min_ram to different "
        "values ('4096', '2048')",
        "rule 'd' (rules[3]), field set.max_ram: max_ram 1024 is below min_ram 4096",
    ]
