"""Hostile input: random events and policies never crash the handler or reach IMS."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import EVENTS
from imsguard.app import InvalidPolicy, TransientFailure, handler
from imsguard.policy import PolicyError, load_policy, parse_policy
from imsguard_tools.local_context import LocalContext
from imsguard_tools.testing import FakeIms

FIXTURES = [json.loads(p.read_text()) for p in sorted(EVENTS.glob("*.json"))]
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SECRET = "SK-FUZZ-SECRET-9876"
text = st.one_of(
    st.text(max_size=50),
    st.text(max_size=5000),
    st.sampled_from(
        [
            "",
            "\x00",
            "../../",
            "%2e%2e",
            "é" * 300,
            "33ad552d-1149-471c-8190-ff6776174a00\n",
            "ff8080814dbd65d7014dbe0d84db0013",
        ]
    ),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(text, children, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def mutated_fixtures(draw):
    """A real event with parts removed, retyped or replaced, at any depth."""
    event = json.loads(json.dumps(draw(st.sampled_from(FIXTURES))))
    node = event
    for _ in range(draw(st.integers(1, 4))):
        if not isinstance(node, dict) or not node:
            break
        key = draw(st.sampled_from(sorted(node)))
        action = draw(st.sampled_from(["delete", "replace", "descend", "stringify"]))
        if action == "delete":
            del node[key]
        elif action == "replace":
            node[key] = draw(json_values)
        elif action == "stringify":
            node[key] = json.dumps(node[key])[: draw(st.integers(0, 200))]
        else:
            node = node[key]
    return event


def deeply_nested(depth):
    event = {"cts": {}}
    for _ in range(depth):
        event = {"cts": event}
    return event


def run(event):
    fake = FakeIms.seeded()
    context = LocalContext(access_key="AK-FUZZ", secret_key=SECRET)
    with fake:
        try:
            result = handler(event, context)
        except TransientFailure:
            return None, fake
    text = json.dumps(result)
    assert isinstance(result["results"], list)
    assert SECRET not in text
    assert "internal error" not in text  # the handler's catch-all would hide a crash
    if result["status"] in ("invalid", "ignored"):
        assert fake.calls == []  # bad or foreign input never reaches IMS
    return result, fake


FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@FUZZ
@given(json_values)
def test_random_json_events(event):
    run(event)


@FUZZ
@given(mutated_fixtures())
def test_mutated_real_events(event):
    run(event)


@settings(max_examples=20, deadline=None)
@given(st.integers(50, 5000))
def test_deeply_nested_events(depth):
    run(deeply_nested(depth))


@FUZZ
@given(text)
def test_image_ids_are_checked_before_any_url(value):
    result, fake = run({"image_id": value})
    if not UUID.fullmatch(value):  # an independent check, not the code under test's
        assert result["status"] == "invalid" and fake.calls == []


@FUZZ
@given(json_values)
def test_random_policy_documents(document):
    try:
        parse_policy(document)
    except PolicyError as exc:
        assert exc.problems


@FUZZ
@given(st.one_of(st.text(max_size=2000), json_values.map(json.dumps)))
def test_random_policy_files_through_the_handler(tmp_path_factory, content):
    """A broken policy file raises InvalidPolicy for every event, and makes no call."""
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(content, encoding="utf-8")
    try:
        load_policy(path)
        valid = True
    except PolicyError as exc:
        assert exc.problems
        valid = False
    fake = FakeIms.seeded()
    context = LocalContext(
        access_key="AK-FUZZ",
        secret_key=SECRET,
        user_data={"IMSGUARD_POLICY": str(path), "IMSGUARD_DRY_RUN": "true"},
    )
    with fake:
        try:
            result = handler({"image_id": "33ad552d-1149-471c-8190-ff6776174a00"}, context)
        except InvalidPolicy as exc:  # loud, so FunctionGraph's alarms see it
            assert not valid and exc.problems and fake.calls == []
            return
    assert valid and "internal error" not in json.dumps(result)
