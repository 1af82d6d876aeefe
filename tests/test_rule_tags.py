"""Rule kind ``tags``: required tags are reported, never patched (IMS's update cannot set tags)."""

from __future__ import annotations

import pytest

from imsguard.evaluate import evaluate, fix_label, plan
from imsguard.policy import PolicyError, parse_policy
from imsguard_tools.cases import complete_image

PROJECT = "0b1e494e2660441a957313163095fe5c"
TAGGED = {"name": "tagged", "kind": "tags", "require": ["team", "cost-center=42"]}


def policy(*rules):
    return parse_policy({"version": 1, "rules": list(rules)})


def decide(rules, **attrs):
    return evaluate(policy(*rules), complete_image(attrs, PROJECT), PROJECT)


def test_an_image_with_every_required_tag_complies():
    decision = decide([TAGGED], tags=["team=web", "cost-center=42"])

    (verdict,) = decision.verdicts
    assert verdict.status == "compliant"
    assert plan(decision, dry_run=False).outcome == "compliant"


def test_tags_set_the_old_way_count():
    (verdict,) = decide([TAGGED], tags=["team.web", "cost-center.42"]).verdicts

    assert verdict.status == "compliant"


def test_a_missing_tag_is_a_violation_that_cannot_be_fixed():
    decision = decide([TAGGED], tags=["team=web", "cost-center=7"])

    (verdict,) = decision.verdicts
    assert verdict.status == "violation"
    assert "'cost-center=42'" in verdict.reason and "'team'" not in verdict.reason
    assert fix_label(verdict, sent=[]) == "cannot_fix"
    assert decision.operations == ()
    outcome = plan(decision, dry_run=False)
    assert (outcome.outcome, outcome.send) == ("non_compliant", ())


def test_a_missing_tag_never_enters_the_patch_of_other_rules():
    describe = {"name": "describe", "kind": "set", "set": {"__description": "ok"}}

    decision = decide([TAGGED, describe], tags=[])

    assert [op["path"] for op in decision.operations] == ["/__description"]
    assert [v.status for v in decision.verdicts] == ["violation", "violation"]


def test_a_single_tag_may_be_written_without_a_list():
    (verdict,) = decide([{**TAGGED, "require": "team"}], tags=["team=x"]).verdicts

    assert verdict.status == "compliant"


@pytest.mark.parametrize(
    ("require", "message"),
    [
        (["a=b=c"], "rule 'tagged' (rules[0]), field require: Value error, 'a=b=c' is not a tag"),
        (["team=a", "team=b"], "tag 'team' cannot have two values ('a', 'b')"),
        ([], "rule 'tagged' (rules[0]), field require: empty"),
    ],
)
def test_bad_required_tags_are_refused_with_the_field(require, message):
    with pytest.raises(PolicyError) as error:
        policy({**TAGGED, "require": require})

    assert message.replace("Value error, ", "") in str(error.value)


def test_a_tags_rule_takes_no_fields_of_other_kinds():
    with pytest.raises(PolicyError, match="field set: Extra inputs are not permitted"):
        policy({**TAGGED, "set": {"__description": "x"}})
