"""Property-based tests: random images against random valid policies."""

from __future__ import annotations

import re
import string
import time
from datetime import date, datetime
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from imsguard import app
from imsguard.evaluate import evaluate, plan
from imsguard.events import is_image_name
from imsguard.naming import MissingTemplateField
from imsguard.patterns import search
from imsguard.policy import Policy, load_policy, parse_policy
from imsguard.rules.base import KEBAB_CASE
from imsguard.rules.name import NameRule, fixed_name
from imsguard_tools.local_context import LocalContext
from imsguard_tools.testing import FakeIms

PROJECT = "0b1e494e2660441a957313163095fe5c"
OS_VERSIONS = [
    "Ubuntu 22.04 server 64bit",
    "Ubuntu 12.04 server 64bit",
    "Debian GNU/Linux 11.3.0 64bit",
    "CentOS 6.8 64bit",
    "EulerOS 2.5 64bit",
    "Windows Server 2019 Standard 64bit",
    "Other",
    "",
]
NAME_CHARACTERS = string.ascii_letters + string.digits + "-_. 镜像/*#é"

names = st.text(alphabet=NAME_CHARACTERS, min_size=0, max_size=140)
images = st.fixed_dictionaries(
    {
        "id": st.uuids().map(str),
        "name": names,
        "status": st.just("active"),
        "owner": st.just(PROJECT),
        "__imagetype": st.just("private"),
        "__platform": st.sampled_from(
            ["Ubuntu", "Debian", "CentOS", "EulerOS", "Windows", "Other"]
        ),
        "__os_type": st.sampled_from(["Linux", "Windows", "Other"]),
        "__os_version": st.sampled_from(OS_VERSIONS),
        "__os_bit": st.sampled_from(["32", "64"]),
        "virtual_env_type": st.sampled_from(["FusionCompute", "Ironic", "IsoImage"]),
        "created_at": st.datetimes(
            min_value=datetime(2015, 1, 1), max_value=datetime(2030, 1, 1)
        ).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
        "tags": st.lists(
            st.sampled_from(["team=web", "team.ops", "imsguard-exempt=1", "naming=free"]),
            max_size=3,
        ),
    },
    optional={
        "hw_firmware_type": st.sampled_from(["bios", "uefi", None]),
        "hw_vif_multiqueue_enabled": st.sampled_from(["true", "false"]),
        "__support_arm": st.sampled_from(["true", "false"]),
        "min_ram": st.sampled_from([0, 1024, 2048]),
        "__description": st.sampled_from(["", "old"]),
    },
)
conditions = st.fixed_dictionaries(
    {},
    optional={
        "platform": st.sampled_from([["Ubuntu"], ["Ubuntu", "Debian"], "Windows"]),
        "os_type": st.sampled_from(["Linux", ["Linux", "Windows"]]),
        "virtual_env_type": st.sampled_from([["system_disk", "bare_metal"], "iso"]),
        "name": st.sampled_from(["^u", "-", "^[a-z0-9-]+$"]),
        "tags": st.sampled_from([["team"], ["team=web"]]),
        "architecture": st.sampled_from(["x86", "arm"]),
        "not": st.just({"os_version": "^CentOS 6"}),
        "any": st.just([{"platform": "Debian"}, {"name": "^ubuntu-"}]),
    },
)
matches = conditions.map(lambda match: {"match": match} if match else {})
SET_VALUES = {
    "hw_firmware_type": ["bios", "uefi"],
    "hw_vif_multiqueue_enabled": ["true", "false"],
    "__description": ["managed", "x y z"],
    "min_ram": ["0", "1024", {"at_least": "2048"}],
    "max_ram": ["0", {"at_most": "4096"}, {"at_least": "1024", "at_most": "8192"}],
    "__support_kvm": ["true"],
    "owner_team": ["platform"],  # an extension attribute of the team's own: declared
}
TEMPLATES = [
    "{platform}-{os_version}",
    "{platform}-{created:%Y%m%d}-{id8}",
    "img {name}",
    "{os_type}_{os_bit}",
    "{platform}-{os_version_number}-{tag:team}",
]
PATTERNS = [KEBAB_CASE, "^[a-z]", "^img-", "^[a-z0-9 ._-]+$", "^[a-z0-9-]*$"]


@st.composite
def policies(draw):
    rules = []
    if draw(st.booleans()):
        fix = draw(st.sampled_from(["normalize", "template", "report"]))
        rule = {
            "name": "names",
            "kind": "name",
            "pattern": draw(st.sampled_from(PATTERNS)),
            "fix": fix,
            **draw(matches),
        }
        if fix == "template":
            rule["template"] = draw(st.sampled_from(TEMPLATES))
        rules.append(rule)
    keys = draw(st.lists(st.sampled_from(sorted(SET_VALUES)), unique=True, max_size=4))
    for index, key in enumerate(keys):
        rule = {
            "name": f"set-{index}",
            "kind": "set",
            **draw(matches),
            "set": {key: draw(st.sampled_from(SET_VALUES[key]))},
        }
        if draw(st.booleans()):
            rule["mode"] = draw(st.sampled_from(["enforce", "audit"]))
        if draw(st.booleans()):
            rule["exclude"] = {"tags": ["naming=free"]}
        rules.append(rule)
    if not rules:
        rules.append({"name": "names", "kind": "name"})
    rules = draw(st.permutations(rules))  # rule order must not matter
    document = {
        "version": 1,
        "mode": draw(st.sampled_from(["enforce", "audit"])),
        "rules": rules,
        "custom_attributes": ["owner_team"],
    }
    if draw(st.booleans()):
        document["exemptions"] = [
            {
                "tag": "imsguard-exempt",
                "reason": "opted out",
                "expires": draw(st.dates(date(2025, 1, 1), date(2028, 1, 1))),
            }
        ]
    return parse_policy(document)


def apply(image, operations):
    fixed = dict(image)
    for operation in operations:
        fixed[operation["path"][1:]] = operation["value"]
    return fixed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), images, st.dates(date(2025, 1, 1), date(2028, 1, 1)))
def test_applying_the_plan_leaves_nothing_to_do(policy, image, today):
    decision = evaluate(policy, image, PROJECT, today)
    after = evaluate(policy, apply(image, decision.operations), PROJECT, today)
    after_enforced = evaluate(policy, apply(image, decision.enforced), PROJECT, today)

    assert after.operations == ()
    assert after_enforced.enforced == ()  # what is sent settles the enforce-mode rules too


@settings(max_examples=300, deadline=None)
@given(names, images, st.sampled_from(PATTERNS), st.sampled_from([*TEMPLATES, None]))
def test_fixed_names_are_valid_match_and_are_stable(name, image, pattern, template):
    rule = NameRule(name="n", kind="name", pattern=pattern, template=template)
    image = {**image, "name": name}

    try:
        fixed = fixed_name(rule, image)
    except MissingTemplateField:  # the image lacks a field the template names: reported, no rename
        return

    if fixed is not None:
        assert is_image_name(fixed) and 1 <= len(fixed) <= 128
        assert fixed == fixed.strip()
        assert re.search(pattern, fixed)
        policy = parse_policy(
            {
                "version": 1,
                "rules": [
                    rule.model_dump(exclude_none=True, exclude_defaults=True) | {"kind": "name"}
                ],
            }
        )
        assert evaluate(policy, {**image, "name": fixed}, PROJECT).operations == ()


@settings(max_examples=200, deadline=None)
@given(policies(), images)
def test_audit_and_dry_run_send_nothing(policy, image):
    decision = evaluate(policy, image, PROJECT, date(2026, 11, 27))

    assert plan(decision, dry_run=True).send == ()
    audit = policy.model_copy(update={"mode": "audit"})
    audit.rules = [r.model_copy(update={"mode": None}) for r in policy.rules]
    assert plan(evaluate(audit, image, PROJECT, date(2026, 11, 27)), dry_run=False).send == ()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies(), images, st.booleans())
def test_audit_mode_never_sends_a_request_that_changes_anything(policy, image, by_setting):
    """Through the handler and the SDK: an audit policy, or IMSGUARD_DRY_RUN, sends no PATCH."""
    if not by_setting:
        policy = policy.model_copy(
            update={
                "mode": "audit",
                "rules": [r.model_copy(update={"mode": None}) for r in policy.rules],
            }
        )
    context = LocalContext(
        user_data={
            "IMSGUARD_REGION": "ap-southeast-1",
            "RUNTIME_PROJECT_ID": PROJECT,
            "IMSGUARD_DRY_RUN": "true" if by_setting else "false",
        },
        access_key="AK",
        secret_key="SK",
    )
    original_policy = app.cached_policy
    app.cached_policy = lambda path: policy
    try:
        with FakeIms.seeded(project_id=PROJECT) as fake:
            fake.add_image(image)
            result = app.handler({"image_id": image["id"]}, context)
    finally:
        app.cached_policy = original_policy

    assert [c.method for c in fake.calls] == ["GET"]
    assert result["results"][0]["outcome"] != "updated"


# -- names: any Unicode, every example pattern (issue 11) ---------------------------------

POLICY_FILES = [
    Path(__file__).parents[1] / "function/policy.yaml",
    *sorted(
        p
        for p in (Path(__file__).parent / "policies").glob("*.yaml")
        if not p.name.endswith(".cases.yaml")
    ),
]
NAME_RULES = [
    rule
    for path in POLICY_FILES
    for rule in load_policy(path).rules
    if isinstance(rule, NameRule) and rule.fix != "report"
]


def named(name: str) -> dict:
    return {
        "id": "33ad552d-1149-471c-8190-ff6776174a00",
        "owner": PROJECT,
        "__imagetype": "private",
        "status": "active",
        "name": name,
        "virtual_env_type": "FusionCompute",
        "__platform": "Ubuntu",
        "__os_type": "Linux",
        "__os_version": "Ubuntu 22.04 server 64bit",
        "__os_bit": "64",
        "created_at": "2026-11-20T08:00:00Z",
        "tags": ["team=web"],
    }


def test_the_example_policies_hold_name_rules_with_several_patterns():
    assert len({rule.pattern for rule in NAME_RULES}) >= 4


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from(NAME_RULES))
def test_a_fixed_name_is_a_valid_ims_name_that_matches_and_is_stable(name, rule):
    fixed = fixed_name(rule, named(name))

    if fixed is not None:
        assert is_image_name(fixed) and search(rule.pattern, fixed)
        assert fixed_name(rule, named(fixed)) == (
            fixed if rule.fix == "normalize" else fixed_name(rule, named(name))
        )
        policy = Policy(version=1, rules=[rule])
        assert evaluate(policy, named(fixed), PROJECT).operations == ()  # nothing more to do


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=300))
@example("a")  # "aaa…a!": the worst case for nested quantifiers such as ^([a-z0-9]+-?)+$
@example("a-")
@example("Ünïcödé 镜像 ")
def test_a_10000_character_name_evaluates_in_linear_time(text):
    """RE2 and the normalizing never backtrack: whatever the name, every example policy
    judges a 10,000-character one in well under 50 ms (Python's engine: minutes)."""
    name = (text * (10_000 // len(text) + 1))[:9_999] + "!"
    policies = [load_policy(path) for path in POLICY_FILES]
    for policy in policies:
        evaluate(policy, named("warm-up é 镜"), PROJECT)  # imports and caches, once
        fastest = min(_timed(policy, named(name)) for _ in range(2))
        assert fastest < 0.050, (policy, fastest)


def _timed(policy, image):
    started = time.perf_counter()
    evaluate(policy, image, PROJECT)
    return time.perf_counter() - started


# IMS's name rule as its API reference words it, written independently as a regex.
IMS_NAME = re.compile(r"[A-Za-z0-9\u4e00-\u9fff._\- ]{1,128}")


@given(
    st.text(
        alphabet=st.sampled_from(
            [*"aZ09._- \t\n=/\u00e9", "\u4e00", "\u9fff", "\u3fff", "\ua000", "\u670d", "\uff21"]
        ),
        max_size=140,
    )
)
@example("a" * 128)
@example("a" * 129)
@example(" web")
@example("")
def test_image_names_are_checked_as_ims_words_its_rule(name):
    expected = IMS_NAME.fullmatch(name) is not None and name == name.strip()
    assert is_image_name(name) is expected
