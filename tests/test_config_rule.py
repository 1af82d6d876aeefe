"""Config custom-rule mode: Config's evaluation events through the handler, states reported
with UpdatePolicyState through the real Config SDK client against a fake Config (on
``responses``, in the same ``with`` block as the fake IMS)."""

from __future__ import annotations

import json

import pytest
import requests

from helpers import SECRETS, load_event, modules_after_an_event, use_policy
from imsguard.app import ConfigStateNotReported, handler
from imsguard.events import (
    ConfigEvaluation,
    ConfigEvaluationEnvelope,
    Skip,
    SweepRequest,
    Trigger,
    parse_event,
)
from imsguard.sinks.config import ATTEMPTS, STATE_MOST_S
from imsguard_tools.fake_config import FakeConfig
from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms

REGION = "ap-southeast-1"
DOMAIN = "0b3c9d7e5f6a4b8c9d0e1f2a3b4c5d6e"
ASSIGNMENT = "6c1a2b3d4e5f60718293a4b5"
EVALUATED_AT = 1_767_225_600_000  # 2026-01-01 00:00 UTC
HASH = "89342b8f338165651991afb8bd471396"
POLICY = """
version: 1
exemptions:
  - tag: legacy
    reason: the legacy fleet is replaced in January
rules:
  - name: kebab-case-name
    kind: name
    pattern: '^[a-z0-9]+(-[a-z0-9]+)*$'
    fix: normalize
  - name: owner-tag
    kind: tags
    require: [team]
"""


def resource_event(image: dict, rule: str | None = None, **resource: str) -> dict:
    """Config's event for a resource evaluation of ``image`` (as its user guide shows it)."""
    event = {
        "domain_id": DOMAIN,
        "policy_assignment_id": ASSIGNMENT,
        "policy_assignment_name": "imsguard-images",
        "function_urn": f"urn:fss:{REGION}:{SAMPLE_PROJECT_ID}:function:default:imsguard",
        "trigger_type": "resource",
        "evaluation_time": EVALUATED_AT,
        "evaluation_hash": HASH,
        "rule_parameter": {},
        "invoking_event": {
            "id": image["id"],
            "name": image["name"],
            "provider": "ims",
            "type": "images",
            "region_id": REGION,
            "project_id": SAMPLE_PROJECT_ID,
            "tags": {},
            "properties": {},
            **resource,
        },
    }
    if rule is not None:
        event["rule_parameter"] = {"rule": {"value": rule}}
    return event


def period_event(rule: str | None = None) -> dict:
    event = resource_event({"id": DOMAIN, "name": "Account"}, rule)
    event["trigger_type"] = "period"
    event["invoking_event"] = {"id": DOMAIN, "name": "Account", "region_id": "global"}
    return event


def state(image: dict, compliance: str, trigger: str = "resource", kind: str = "images") -> dict:
    """The UpdatePolicyState body imsguard must send for ``image``."""
    return {
        "policy_resource": {
            "resource_id": image["id"],
            "resource_name": image["name"],
            "resource_provider": "ims",
            "resource_type": kind,
            "region_id": REGION,
            "domain_id": DOMAIN,
        },
        "trigger_type": trigger,
        "compliance_state": compliance,
        "policy_assignment_id": ASSIGNMENT,
        "policy_assignment_name": "imsguard-images",
        "evaluation_time": EVALUATED_AT,
        "evaluation_hash": HASH,
    }


@pytest.fixture
def clouds():
    config = FakeConfig(DOMAIN)
    with FakeIms(project_id=SAMPLE_PROJECT_ID).attach(config) as ims:
        yield ims, config
    for fake in (ims, config):
        fake.assert_injections_met()


@pytest.fixture
def ctx(context, tmp_path):
    use_policy(context, tmp_path, POLICY)
    context.user_data["IMSGUARD_CONFIG_RULES"] = "true"
    return context


def puts(config: FakeConfig) -> list:
    return [call for call in config.calls if call.method == "PUT"]


def test_a_violation_is_reported_non_compliant_before_imsguard_fixes_it(clouds, ctx):
    ims, config = clouds
    image = dict(ims.add_image({"name": "Web_Base_2", "tags": ["team=web"]}))

    report = handler(resource_event(image), ctx)

    assert report["results"][0]["outcome"] == "updated"  # fixed, in enforce mode
    assert ims.images[image["id"]]["name"] == "web-base-2"
    assert [call.body for call in puts(config)] == [state(image, "NonCompliant")]
    assert puts(config)[0].path == f"/v1/resource-manager/domains/{DOMAIN}/policy-states"
    assert puts(config)[0].headers["X-Domain-Id"] == DOMAIN
    assert report["sinks"]["config"] == {
        "policy_assignment_id": ASSIGNMENT,
        "trigger_type": "resource",
        "rule": None,
        "reported": 1,
        "compliance": {"NonCompliant": 1},
        "states": {image["id"]: "NonCompliant"},
    }
    # The fix makes Config evaluate the image again: now it is compliant, nothing is sent.
    fixed = {**image, "name": "web-base-2"}
    again = handler(resource_event(fixed), ctx)
    assert again["results"][0]["outcome"] == "compliant" and len(ims.patches) == 1
    assert puts(config)[-1].body == state(fixed, "Compliant")


def test_rule_parameter_makes_one_rule_decide(clouds, ctx):
    ims, config = clouds
    untagged = dict(ims.add_image({"name": "db-base", "tags": []}))  # breaks owner-tag only

    handler(resource_event(untagged), ctx)
    handler(resource_event(untagged, "kebab-case-name"), ctx)
    report = handler(resource_event(untagged, "owner-tag"), ctx)

    assert [call.body["compliance_state"] for call in puts(config)] == [
        "NonCompliant",
        "Compliant",
        "NonCompliant",
    ]
    assert report["sinks"]["config"]["rule"] == "owner-tag"
    # The selected rule decides compliance only: every rule is still enforced.
    misnamed = dict(ims.add_image({"name": "Db_Base", "tags": ["team=db"]}))
    fixed = handler(resource_event(misnamed, "owner-tag"), ctx)
    assert fixed["results"][0]["outcome"] == "updated"
    assert puts(config)[-1].body == state(misnamed, "Compliant")


def test_a_rule_parameter_naming_no_policy_rule_reports_nothing_and_says_so(clouds, ctx):
    ims, config = clouds
    image = dict(ims.add_image({"name": "Web_Base_2", "tags": ["team=web"]}))

    report = handler(resource_event(image, "uefi-boot"), ctx)

    assert puts(config) == []
    assert "'uefi-boot', which the policy does not have" in report["sinks"]["config"]["error"]
    assert report["results"][0]["outcome"] == "updated"  # enforcement goes on


def test_exempt_images_are_compliant_and_dry_runs_report_what_they_find(clouds, ctx):
    ims, config = clouds
    legacy = dict(ims.add_image({"name": "Legacy Box", "tags": ["legacy"]}))
    wrong = dict(ims.add_image({"name": "Web_Base_2", "tags": ["team=web"]}))
    ctx.user_data["IMSGUARD_DRY_RUN"] = "true"

    handler(resource_event(legacy), ctx)
    report = handler(resource_event(wrong), ctx)

    assert [call.body for call in puts(config)] == [
        state(legacy, "Compliant"),
        state(wrong, "NonCompliant"),
    ]
    assert report["results"][0]["outcome"] == "would_update" and ims.patches == []


def test_a_periodic_evaluation_reports_every_image_once(clouds, ctx):
    ims, config = clouds
    images = [
        dict(ims.add_image({"name": "web-base", "tags": ["team=web"]})),
        dict(ims.add_image({"name": "Web_Base_2", "tags": ["team=web"]})),
        dict(ims.add_image({"name": "db-base", "tags": []})),
        dict(ims.add_image({"name": "Legacy Box", "tags": ["legacy"]})),
    ]
    expected = dict(
        zip(
            [i["id"] for i in images],
            ["Compliant", "NonCompliant", "NonCompliant", "Compliant"],
            strict=True,
        )
    )

    report = handler(period_event(), ctx)

    bodies = {call.body["policy_resource"]["resource_id"]: call.body for call in puts(config)}
    assert len(puts(config)) == len(images)
    for image in images:
        assert bodies[image["id"]] == state(image, expected[image["id"]], "period", "images")
    assert report["summary"] == {"compliant": 1, "exempt": 1, "non_compliant": 1, "updated": 1}
    assert report["sinks"]["config"]["reported"] == 4
    assert report["sinks"]["config"]["states"] == expected


def test_a_periodic_evaluation_continues_as_one_and_every_hop_reports(clouds, ctx):
    ims, config = clouds
    for index in range(3):
        dict(ims.add_image({"name": f"web-{index}", "tags": ["team=web"]}))
    event = {**period_event("owner-tag"), "imsguard_sweep": {"limit": 2}}

    first = handler(event, ctx)

    assert first["continuation"]["cause"] == "limit" and len(puts(config)) == 2
    rest = {
        **period_event("owner-tag"),
        "imsguard_sweep": {"marker": first["continuation"]["marker"], "hop": 1},
    }
    parsed = parse_event(rest)
    assert isinstance(parsed, SweepRequest) and parsed.config is not None
    assert parsed.options.marker == first["continuation"]["marker"]
    second = handler(rest, ctx)
    assert second["examined"] == 1 and len(puts(config)) == 3
    assert len({call.body["policy_resource"]["resource_id"] for call in puts(config)}) == 3


@pytest.mark.parametrize(
    "fault",
    [(403, "APIGW.0302"), (500, "SYS.0500"), requests.exceptions.ReadTimeout("Read timed out")],
    ids=["403", "500", "timeout"],
)
def test_a_failing_config_leaves_a_sweeps_images_and_results_unchanged(clouds, ctx, fault, clock):
    ims, config = clouds
    dict(ims.add_image({"name": "Web_Base_2", "tags": ["team=web"]}))
    dict(ims.add_image({"name": "db-base", "tags": []}))
    ctx.user_data["IMSGUARD_DRY_RUN"] = "true"
    baseline = handler(period_event(), ctx)
    calls = 1 if fault == (403, "APIGW.0302") else ATTEMPTS  # transient ones are retried
    for _ in range(calls):
        if isinstance(fault, Exception):
            config.raise_next("PUT", fault)
        else:
            config.fail_next("PUT", fault[0], fault[1], f"refused for {SECRETS[0]}")

    report = handler(period_event(), ctx)  # a periodic evaluation never raises

    assert report["results"] == baseline["results"] and report["summary"] == baseline["summary"]
    outcome = report["sinks"]["config"]
    assert outcome["reported"] == 1 and len(outcome["failed"]) == outcome["failed_total"] == 1
    assert SECRETS[0] not in json.dumps(report)


@pytest.mark.parametrize(
    ("fault", "retried"),
    [
        ((403, "APIGW.0302"), False),
        ((500, "SYS.0500"), True),
        (requests.exceptions.ReadTimeout("Read timed out"), True),
    ],
    ids=["403", "500", "timeout"],
)
def test_a_failing_config_state_for_one_image(
    clouds, ctx, fault, retried, capsys, clock, monkeypatch
):
    """A refusal (4xx) is reported and the image fixed all the same; a transient failure
    that outlasts the in-process retries raises before the PATCH and before any other
    sink, so FunctionGraph's retry of the event finds the same violation and reports it."""
    import imsguard.sinks

    ims, config = clouds
    ctx.user_data["IMSGUARD_NOTIFY_TOPIC_URN"] = f"urn:smn:{REGION}:{SAMPLE_PROJECT_ID}:imsguard"
    sinks_run: list[str] = []  # SMN and CES: recorded, not called
    monkeypatch.setattr(imsguard.sinks, "finish_sinks", lambda *a: sinks_run.append("run") or {})
    image = dict(ims.add_image({"name": "Web_Base_2", "tags": ["team=web"]}))
    for _ in range(ATTEMPTS if retried else 1):
        if isinstance(fault, Exception):
            config.raise_next("PUT", fault)
        else:
            config.fail_next("PUT", fault[0], fault[1], f"refused for {SECRETS[1]}")

    if retried:
        with pytest.raises(ConfigStateNotReported):
            handler(resource_event(image), ctx)
        assert ims.patches == [] and sinks_run == []
        # the event's retry: the same violation, reported NonCompliant, then fixed
        report = handler(resource_event(image), ctx)
        # (the failed attempts and the retry's one call: every one NonCompliant)
        assert [c.body for c in puts(config)] == [state(image, "NonCompliant")] * (ATTEMPTS + 1)
        assert report["results"][0]["outcome"] == "updated"
    else:
        report = handler(resource_event(image), ctx)
        assert report["results"][0]["outcome"] == "updated"
        assert "HTTP 403" in report["sinks"]["config"]["failed"][0]["error"]
    assert len(ims.patches) == 1 and ims.images[image["id"]]["name"] == "web-base-2"
    assert all(secret not in capsys.readouterr().out for secret in SECRETS)


def test_a_transient_config_failure_is_retried_in_process_before_the_fix(clouds, ctx, clock):
    ims, config = clouds
    image = dict(ims.add_image({"name": "Web_Base_2", "tags": ["team=web"]}))
    config.fail_next("PUT", 500, "SYS.0500", "try again")

    report = handler(resource_event(image), ctx)  # no raise

    # the failed call and its retry: one NonCompliant state taken, then the fix
    assert [call.body for call in puts(config)] == [state(image, "NonCompliant")] * 2
    assert len(ims.patches) == 1 and report["results"][0]["outcome"] == "updated"
    assert report["sinks"]["config"]["reported"] == 1 and "failed" not in report["sinks"]["config"]


def test_a_failing_config_hook_never_costs_the_image_its_fix(clouds, ctx, monkeypatch):
    import imsguard.sinks.config as config_sink

    ims, _ = clouds
    image = dict(ims.add_image({"name": "Web_Base_2", "tags": ["team=web"]}))

    def broken(decision, rule):
        raise KeyError("a bug")

    monkeypatch.setattr(config_sink, "compliance", broken)
    report = handler(resource_event(image), ctx)

    assert report["results"][0]["outcome"] == "updated" and len(ims.patches) == 1
    outcome = report["sinks"]["config"]
    assert outcome["failed_total"] == 1 and "internal error" in outcome["failed"][0]["error"]


def test_config_endpoint_setting_is_used(clouds, ctx):
    ims, _ = clouds
    other = FakeConfig(DOMAIN, endpoint="https://rms.example.test")
    ims.attach(other)
    ctx.user_data["IMSGUARD_CONFIG_ENDPOINT"] = "https://rms.example.test"
    image = dict(ims.add_image({"name": "web-base", "tags": ["team=web"]}))

    handler(resource_event(image), ctx)

    assert [s["compliance_state"] for s in other.states] == ["Compliant"]


def test_config_mode_is_off_unless_its_setting_is_on(clouds, ctx):
    ims, config = clouds
    image = dict(ims.add_image({"name": "Web_Base_2", "tags": ["team=web"]}))
    del ctx.user_data["IMSGUARD_CONFIG_RULES"]

    report = handler(resource_event(image), ctx)

    assert report["status"] == "ignored" and "IMSGUARD_CONFIG_RULES=true" in report["reason"]
    assert ims.calls == [] and config.calls == []


def test_an_image_in_another_region_is_ignored(clouds, ctx):
    ims, config = clouds
    image = dict(ims.add_image({"name": "web-base", "tags": ["team=web"]}))

    report = handler(resource_event(image, region_id="eu-west-101"), ctx)

    assert report["status"] == "ignored" and "eu-west-101" in report["reason"]
    assert ims.calls == [] and config.calls == []


# -- the envelope -----------------------------------------------------------------------


def test_the_envelope_reads_a_resource_evaluation():
    image = {"id": "c5cd3163-9030-43cb-a7c2-640c237702c7", "name": "web"}
    parsed = parse_event(resource_event(image, "owner-tag"))

    assert isinstance(parsed, Trigger) and parsed.source == "config"
    assert parsed.targets[0].image_ids == (image["id"],)
    assert parsed.config == ConfigEvaluation(
        DOMAIN,
        ASSIGNMENT,
        "imsguard-images",
        "resource",
        EVALUATED_AT,
        HASH,
        "owner-tag",
        resource_event(image)["invoking_event"],
    )


@pytest.mark.parametrize(
    "spelling",
    [("ims", "images"), ("ims", "private_image"), ("IMS", "image"), ("ims", "cloudimages")],
)
def test_every_plausible_image_type_is_an_image(spelling):
    image = {"id": "c5cd3163-9030-43cb-a7c2-640c237702c7", "name": "web"}
    provider, kind = spelling
    assert isinstance(parse_event(resource_event(image, provider=provider, type=kind)), Trigger)


def test_another_resource_type_is_ignored():
    vm = {"id": "c5cd3163-9030-43cb-a7c2-640c237702c7", "name": "vm"}
    parsed = parse_event(resource_event(vm, provider="ecs", type="cloudservers"))
    assert parsed == Skip(
        "ignored",
        "Config evaluated a 'ecs'.'cloudservers' resource, not an IMS image: narrow the "
        "rule's scope to IMS images",
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"domain_id": None}, "domain_id: a non-empty string is required"),
        ({"evaluation_hash": ""}, "evaluation_hash: a non-empty string is required"),
        ({"trigger_type": "timer"}, "trigger_type: 'resource' or 'period' (got 'timer')"),
        ({"evaluation_time": "yesterday"}, "evaluation_time: epoch milliseconds"),
        ({"evaluation_time": True}, "evaluation_time: epoch milliseconds"),
        ({"invoking_event": []}, "invoking_event: an object is required"),
        ({"invoking_event": {"id": "not-a-uuid"}}, "invoking_event.id: the resource's id"),
        ({"rule_parameter": {"rules": {"value": "x"}}}, "unknown parameter(s) ['rules']"),
        ({"rule_parameter": {"rule": "owner-tag"}}, 'rule_parameter.rule: {"value"'),
        ({"rule_parameter": "owner-tag"}, "rule_parameter: an object is required"),
        ({"rule_parameter": {"resource_type": {"value": "ecs"}}}, "names for IMS images"),
        ({"rule_parameter": {"resource_type": "images"}}, 'resource_type: {"value": "images"}'),
        ({"policy_assignment_name": 7}, "policy_assignment_name: a non-empty string"),
    ],
)
def test_a_malformed_evaluation_is_invalid_with_its_reason(change, reason):
    event = {**resource_event({"id": "c5cd3163-9030-43cb-a7c2-640c237702c7", "name": "w"})}
    event.update(change)
    parsed = ConfigEvaluationEnvelope().unwrap(event)
    assert isinstance(parsed, Skip) and parsed.status == "invalid"
    assert parsed.reason.startswith("invalid Config evaluation event: ")
    assert reason in parsed.reason


def test_a_period_rule_parameter_names_the_type_its_states_carry(clouds, ctx):
    """imsguard deploy sends the type it found in Config's providers list; states name it."""
    ims, config = clouds
    image = dict(ims.add_image({"name": "web-base", "tags": ["team=web"]}))
    event = period_event("owner-tag")
    event["rule_parameter"]["resource_type"] = {"value": "private_image"}

    handler(event, ctx)

    (call,) = puts(config)
    assert call.body == state(image, "Compliant", "period", "private_image")


def test_period_options_are_validated():
    parsed = parse_event({**period_event(), "imsguard_sweep": {"marker": "nope"}})
    assert isinstance(parsed, Skip) and "marker" in parsed.reason
    assert isinstance(parse_event({**period_event(), "imsguard_sweep": 3}), Skip)


def test_the_timer_and_cts_events_are_not_config_events():
    assert parse_event(load_event("timer.json")).source == "timer"  # trigger_type "Timer"
    assert parse_event(load_event("cts_create_image.json")).source == "cts"


def test_an_ordinary_event_imports_neither_the_config_reporter_nor_its_sdk():
    loaded = modules_after_an_event()
    assert not {m for m in loaded if m == "imsguard.sinks.config" or "sdkconfig" in m}


def test_a_periodic_evaluation_out_of_time_continues_itself_as_a_config_event(clouds, ctx, clock):
    ims, config = clouds
    images = {
        dict(ims.add_image({"name": f"web-{index}", "tags": ["team=web"]}))["id"]
        for index in range(30)
    }
    urn = f"urn:fss:{REGION}:{SAMPLE_PROJECT_ID}:function:default:imsguard:latest"
    ctx.user_data.update(
        IMSGUARD_SWEEP_PAGE_SIZE="10",
        IMSGUARD_SWEEP_CONTINUE="true",
        IMSGUARD_FUNCTION_URN=urn,
        IMSGUARD_FGS_ENDPOINT=ims.fgs_endpoint,
    )
    ctx.timeout_ms = 17_000
    ims.before_request = lambda method, path: setattr(clock, "elapsed", clock.elapsed + 2)

    first = handler(period_event("owner-tag"), ctx)

    assert first["continued"]["started"] is True
    (invocation,) = ims.invocations
    body = invocation["body"]
    assert body == {
        "domain_id": DOMAIN,
        "policy_assignment_id": ASSIGNMENT,
        "policy_assignment_name": "imsguard-images",
        "trigger_type": "period",
        "evaluation_time": EVALUATED_AT,
        "evaluation_hash": HASH,
        "invoking_event": {"id": DOMAIN, "name": "Account"},
        "rule_parameter": {"rule": {"value": "owner-tag"}},
        "imsguard_sweep": {
            "hop": 1,
            "marker": first["continuation"]["marker"],
            "examined_before": first["examined"],
            "planned_before": 0,
        },
    }
    assert first["sinks"]["config"]["reported"] == first["examined"]
    reported = {call.body["policy_resource"]["resource_id"] for call in puts(config)}
    for _ in range(5):  # what FunctionGraph would deliver, hop after hop
        clock.elapsed = 0
        ims.invocations.clear()
        report = handler(body, ctx)
        reported |= {call.body["policy_resource"]["resource_id"] for call in puts(config)}
        if not ims.invocations:
            break
        body = ims.invocations[0]["body"]
    assert reported == images and len(puts(config)) == len(images)
    assert report["trigger"].startswith("Config periodic evaluation")


def run_hops(ims, ctx, clock, event: dict, most: int = 20) -> list[dict]:
    """The first hop and every continuation it starts, as FunctionGraph would deliver them."""
    reports = []
    for _ in range(most):
        clock.elapsed = 0
        ims.invocations.clear()
        reports.append(handler(event, ctx))
        if not ims.invocations:
            return reports
        event = ims.invocations[0]["body"]
    raise AssertionError("the sweep did not end")


def continuing(ctx, ims, timeout_ms: int) -> None:
    urn = f"urn:fss:{REGION}:{SAMPLE_PROJECT_ID}:function:default:imsguard:latest"
    ctx.user_data.update(
        IMSGUARD_SWEEP_PAGE_SIZE="50",
        IMSGUARD_SWEEP_CONTINUE="true",
        IMSGUARD_SWEEP_MAX_HOPS="30",
        IMSGUARD_FUNCTION_URN=urn,
        IMSGUARD_FGS_ENDPOINT=ims.fgs_endpoint,
    )
    ctx.timeout_ms = timeout_ms


def test_slow_states_for_many_images_are_each_sent_once_across_hops(clouds, ctx, clock):
    """200 images, each state taking 0.5 s: a hop sends states as it examines images and,
    out of time, the next one resumes at the first image whose state was not sent."""
    ims, config = clouds
    images = {ims.add_image({"name": f"web-{i}", "tags": ["team=web"]})["id"] for i in range(200)}
    continuing(ctx, ims, 40_000)

    def slow(method: str, path: str) -> None:
        if method == "PUT":
            clock.elapsed += 0.5

    config.before_request = slow

    reports = run_hops(ims, ctx, clock, period_event())

    assert len(reports) > 2  # far more than one hop's worth of states
    ids = [call.body["policy_resource"]["resource_id"] for call in puts(config)]
    assert sorted(ids) == sorted(images)  # every image, exactly once
    assert sum(r["sinks"]["config"]["reported"] for r in reports) == 200
    assert all("failed" not in r["sinks"]["config"] for r in reports)


def test_patches_deferred_to_a_continuation_are_not_reported_again(clouds, ctx, clock):
    """The next hop lists images whose patches were deferred again: it fixes them but
    reports none of them twice."""
    ims, config = clouds
    images = {ims.add_image({"name": f"Web_{i}", "tags": ["team=web"]})["id"] for i in range(40)}
    continuing(ctx, ims, 20_000)
    ctx.user_data["IMSGUARD_SWEEP_CONCURRENCY"] = "1"

    def slow(method: str, path: str) -> None:
        if method == "PATCH":  # slower than the hop's estimate: some are deferred
            clock.elapsed += 1.5

    ims.before_request = slow

    reports = run_hops(ims, ctx, clock, period_event())

    assert len(reports) >= 3
    assert any(r["summary"].get("deferred") for r in reports)  # listed again by a next hop
    ids = [call.body["policy_resource"]["resource_id"] for call in puts(config)]
    assert len(ids) == 40 and set(ids) == images
    assert {c.body["compliance_state"] for c in puts(config)} == {"NonCompliant"}
    assert all(ims.images[i]["name"].startswith("web-") for i in images)


def test_the_config_outcome_keeps_counts_and_the_first_few_states(clouds, ctx):
    ims, config = clouds
    for i in range(5):
        ims.add_image({"name": f"Web_{i}", "tags": []})
    ctx.user_data["IMSGUARD_RESULTS_LIMIT"] = "2"

    outcome = handler(period_event(), ctx)["sinks"]["config"]

    assert outcome["reported"] == 5 and outcome["compliance"] == {"NonCompliant": 5}
    assert len(outcome["states"]) == 2 and len(puts(config)) == 5


# -- a Config that fails or never answers ------------------------------------------------


def test_a_config_that_never_answers_costs_a_periodic_sweep_two_states_not_its_fixes(
    clouds, ctx, clock, capsys
):
    """Each silent call costs its whole timeout: after two states that failed even after
    their retries, no more are sent in this invocation; every image is still fixed."""
    ims, config = clouds
    images = [ims.add_image({"name": f"Web_{i}", "tags": ["team=web"]})["id"] for i in range(60)]
    continuing(ctx, ims, 300_000)
    ctx.user_data["IMSGUARD_SWEEP_MAX_HOPS"] = "10"
    config.never_answer(clock, "PUT")

    reports = run_hops(ims, ctx, clock, period_event())

    assert len(reports) == 1  # before: 11 hops of 1 or 2 images, cut off by the hop limit
    assert all(ims.images[i]["name"].startswith("web-") for i in images)
    outcome = reports[0]["sinks"]["config"]
    assert outcome["reported"] == 0 and outcome["failed_total"] == 2
    assert outcome["not_sent"] == 58 and "no answer" in outcome["not_sent_reason"]
    assert len(puts(config)) <= 2 * ATTEMPTS
    # short timeouts (3 s to connect, 5 s to read), each state within 20 s
    assert clock.elapsed < 2 * STATE_MOST_S + 10
    log = capsys.readouterr().out
    assert log.count("Config states no longer sent") == 1


def test_a_state_taken_between_failures_keeps_states_going(clouds, ctx, clock):
    ims, config = clouds
    for i in range(3):
        ims.add_image({"name": f"web-{i}", "tags": ["team=web"]})
    config.fail_next("PUT", 500, "SYS.0500", times=ATTEMPTS)  # the first image's state
    config.respond_next("PUT", 200, {})  # the second's
    config.fail_next("PUT", 503, "SYS.0503", times=ATTEMPTS)  # the third's

    outcome = handler(period_event(), ctx)["sinks"]["config"]

    assert outcome["failed_total"] == 2 and outcome["reported"] == 1
    assert "not_sent" not in outcome


def test_evaluation_time_is_echoed_as_received(clouds, ctx):
    """Config's example event sends epoch milliseconds as a number; the SDK's model and
    the API reference declare a string: whichever came, the same goes back."""
    ims, config = clouds
    image = dict(ims.add_image({"name": "web-base", "tags": ["team=web"]}))

    handler({**resource_event(image), "evaluation_time": str(EVALUATED_AT)}, ctx)
    handler(resource_event(image), ctx)

    assert [call.body["evaluation_time"] for call in puts(config)] == [
        str(EVALUATED_AT),
        EVALUATED_AT,
    ]


def test_a_periodic_evaluation_sends_no_state_for_an_image_that_is_not_active(clouds, ctx):
    """IMS lists active images, but one may come otherwise: it was not evaluated, so it has
    no state (Config's next evaluation covers it); public and shared ones stay Compliant."""
    ims, config = clouds
    active = dict(ims.add_image({"name": "web-base", "tags": ["team=web"]}))
    saving = dict(ims.add_image({"name": "Web_New", "tags": []}))
    page = [{**saving, "status": "saving"}, active]  # newest first
    ims.respond_next("GET", 200, {"images": page})

    report = handler(period_event(), ctx)

    assert [c.body["policy_resource"]["resource_id"] for c in puts(config)] == [active["id"]]
    assert report["sinks"]["config"]["reported"] == 1
    assert report["sinks"]["config"]["not_active"] == 1


def test_config_rules_need_the_region_the_states_name(clouds, ctx, monkeypatch):
    ims, config = clouds
    ims.add_image({"name": "web-base", "tags": ["team=web"]})
    monkeypatch.delenv("IMSGUARD_REGION")
    ctx.user_data["IMSGUARD_IMS_ENDPOINT"] = ims.endpoint  # enough for IMS, not for Config

    report = handler(period_event(), ctx)

    assert report["status"] == "error"
    assert "IMSGUARD_CONFIG_RULES=true needs IMSGUARD_REGION" in report["reason"]
    assert ims.calls == [] and config.calls == []


def test_a_periodic_evaluation_in_hops_carries_its_report_keys_in_its_sweep_options(
    clouds, ctx, clock
):
    """With reports in OBS, the sweep id and the hops' report keys ride in the nested
    ``imsguard_sweep`` options; every hop accepts them and the last writes the index."""
    from imsguard_tools.testing import FakeObs

    ims, _ = clouds
    for index in range(30):
        ims.add_image({"name": f"web-{index}", "tags": ["team=web"]})
    obs = FakeObs(token=SECRETS[2])
    with obs.serve() as endpoint:
        ctx.user_data.update(
            IMSGUARD_REPORT_BUCKET="imsguard-reports", IMSGUARD_OBS_ENDPOINT=endpoint
        )
        continuing(ctx, ims, 17_000)
        ctx.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "10"
        ims.before_request = lambda method, path: setattr(clock, "elapsed", clock.elapsed + 2)
        ctx.request_id = "config-sweep-1"

        reports = run_hops(ims, ctx, clock, period_event("owner-tag"))

    assert len(reports) >= 2 and all(r["status"] == "ok" for r in reports)
    assert sum(r["examined"] for r in reports) == 30
    index = json.loads(obs.text("imsguard/latest.json"))
    assert index["sweep_id"] == "config-sweep-1"
    assert len(index["hops"]) == len(reports)
    assert [json.loads(obs.text(key))["hop"] for key in index["hops"]] == list(range(len(reports)))
