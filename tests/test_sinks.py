"""Report sinks: SMN digests and Cloud Eye metrics, through the handler and the real SDK
clients against the fake IMS, SMN and Cloud Eye (one ``with`` block, on ``responses``)."""

from __future__ import annotations

import json
from datetime import date

import pytest
import requests
import yaml

from helpers import SECRETS, load_event, run_fresh, use_policy
from imsguard.app import handler
from imsguard.policy import parse_policy
from imsguard.results import EventReport, ImageResult, SweepReport
from imsguard.settings import SettingsError, load_settings
from imsguard.sinks import digest
from imsguard.sinks.ces import metric_points
from imsguard.sinks.digest import SMS_CHARS, SUBJECT_BYTES, compose, expiring, items_for
from imsguard_tools.local_context import LocalContext
from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeCes, FakeIms, FakeSmn

REGION = "ap-southeast-1"
TOPIC = f"urn:smn:{REGION}:{SAMPLE_PROJECT_ID}:imsguard-notices"
DEBIAN = "c5cd3163-9030-43cb-a7c2-640c237702c7"  # compliant with the default policy
POLICY = """
version: 1
exemptions:
  - tag: legacy
    reason: the legacy fleet is replaced in January
    expires: 2026-01-10
  - tag: frozen
    reason: frozen for the audit
    expires: 2026-06-30
rules:
  - name: kebab-case-name
    kind: name
    pattern: '^[a-z0-9]+(-[a-z0-9]+)*$'
    fix: normalize
  - name: owner-tag
    kind: tags
    require: [team]
"""


@pytest.fixture
def clouds():
    """The fake IMS, with SMN and Cloud Eye served beside it in the same ``with`` block."""
    smn = FakeSmn(SAMPLE_PROJECT_ID, REGION)
    ces = FakeCes(SAMPLE_PROJECT_ID, REGION, now_ms=1_767_227_400_000)  # 2026-01-01 00:30
    with FakeIms(project_id=SAMPLE_PROJECT_ID).attach(smn, ces) as ims:
        yield ims, smn, ces
    for fake in (ims, smn, ces):
        fake.assert_injections_met()


@pytest.fixture
def sinks_on(context, tmp_path):
    use_policy(context, tmp_path, POLICY)
    context.user_data.update(IMSGUARD_NOTIFY_TOPIC_URN=TOPIC, IMSGUARD_METRICS="true")
    return context


def fill(ims):
    """Four images: compliant, fixable, without a team tag (cannot_fix), and exempt."""
    add = ims.add_image
    return {
        "ok": add({"name": "web-base", "tags": ["team=web"]})["id"],
        "fixable": add({"name": "Web_Base_2", "tags": ["team=web"]})["id"],
        "untagged": add({"name": "db-base", "tags": []})["id"],
        "exempt": add({"name": "Legacy Box", "tags": ["legacy"]})["id"],
    }


def test_a_sweep_publishes_one_digest_and_posts_one_metrics_request(clouds, sinks_on):
    ims, smn, ces = clouds
    ids = fill(ims)

    report = handler({"action": "sweep"}, sinks_on)

    assert report["summary"] == {"compliant": 1, "exempt": 1, "non_compliant": 1, "updated": 1}
    assert len(smn.published) == 1 and len(ces.requests) == 1
    assert report["sinks"]["smn"]["published"] == 1
    assert report["sinks"]["smn"]["topic_urns"] == [TOPIC]
    message = smn.published[0]
    structure = json.loads(message["message_structure"])
    email = structure["email"]
    assert structure["default"] == email and len(structure["sms"]) <= SMS_CHARS
    assert ids["untagged"] in email and "owner-tag: cannot_fix" in email
    assert ids["ok"] not in email
    # the exemption expires within 14 days of 2026-01-01: the image it covers is listed
    assert (
        f'- {ids["exempt"]} "Legacy Box" rule -: expires 2026-01-10: exemption tag legacy: '
        "the legacy fleet is replaced in January"
    ) in email
    assert "- tag legacy" not in email  # its image is known: not the exemption itself
    assert "frozen" not in email  # expires in June
    assert "1 need a person" in message["subject"] and "1 expiring" in message["subject"]
    names = {
        (p["metric"]["metric_name"], p["metric"]["dimensions"][0]["value"]): p["value"]
        for p in ces.points
    }
    assert names[("needs_attention", SAMPLE_PROJECT_ID)] == 1  # the untagged image
    assert names[("violations", "owner-tag")] == 1
    assert names[("violations", "kebab-case-name")] == 1
    assert names[("updated_images", SAMPLE_PROJECT_ID)] == 1
    assert ids["fixable"] not in email  # fixed: nobody needs to hear of it
    assert report["sinks"]["ces"] == {"posted": len(ces.points), "namespace": "IMSGUARD.Images"}
    assert {p["metric"]["namespace"] for p in ces.points} == {"IMSGUARD.Images"}
    assert {p["collect_time"] for p in ces.points} == {1_767_227_400_000}


def test_a_compliant_event_publishes_nothing_but_posts_its_metrics(clouds, sinks_on):
    ims, smn, ces = clouds
    image = ims.add_image({"name": "web-base", "tags": ["team=web"]})["id"]

    report = handler({"image_id": image}, sinks_on)

    assert report["results"][0]["outcome"] == "compliant"
    assert smn.published == [] and report["sinks"]["smn"] == {"published": 0, "topic_urns": []}
    assert len(ces.requests) == 1


def test_an_event_whose_image_needs_a_person_publishes_one_notice(clouds, sinks_on):
    ims, smn, _ = clouds
    image = ims.add_image({"name": "db-base", "tags": []})["id"]

    report = handler({"image_id": image}, sinks_on)

    assert report["results"][0]["outcome"] == "non_compliant"
    (message,) = smn.published
    assert image in json.loads(message["message_structure"])["email"]
    assert "expir" not in message["subject"]  # an event lists no exemptions


def test_no_sink_setting_means_no_sink_call_and_no_sinks_key(clouds, context):
    ims, smn, ces = clouds
    fill(ims)

    report = handler({"action": "sweep"}, context)

    assert "sinks" not in report
    assert smn.calls == [] and ces.calls == []


@pytest.mark.parametrize("sink", ["smn", "ces"])
@pytest.mark.parametrize(
    "fault",
    [(403, "APIGW.0302"), (500, "SYS.0500"), requests.exceptions.ReadTimeout("Read timed out")],
    ids=["403", "500", "timeout"],
)
def test_a_failing_sink_changes_nothing_for_images(clouds, sinks_on, sink, fault):
    ims, smn, ces = clouds
    fill(ims)
    baseline = handler({"action": "sweep", "dry_run": True}, sinks_on)
    fake = smn if sink == "smn" else ces
    if isinstance(fault, Exception):
        fake.raise_next("POST", fault)
    else:
        fake.fail_next("POST", fault[0], fault[1], "refused")

    report = handler({"action": "sweep", "dry_run": True}, sinks_on)

    assert report["results"] == baseline["results"] and report["summary"] == baseline["summary"]
    assert "error" in report["sinks"][sink]
    other = "ces" if sink == "smn" else "smn"
    assert "error" not in report["sinks"][other]
    reason = report["sinks"][sink]["error"]
    assert (
        ("timed out" in reason.lower() or "reached" in reason)
        if isinstance(fault, Exception)
        else str(fault[0]) in reason
    )


def test_a_failing_sink_never_makes_an_event_raise(clouds, sinks_on):
    ims, smn, ces = clouds
    image = ims.add_image({"name": "db-base", "tags": []})["id"]
    smn.fail_next("POST", 500, "SYS.0500")
    ces.fail_next("POST", 500, "SYS.0500")

    report = handler({"image_id": image}, sinks_on)

    assert report["status"] == "ok" and report["results"][0]["outcome"] == "non_compliant"
    assert set(report["sinks"]) == {"smn", "ces"}
    assert all("error" in outcome for outcome in report["sinks"].values())


def test_secrets_never_reach_notices_metrics_or_sink_errors(clouds, sinks_on, tmp_path, capsys):
    ims, smn, ces = clouds
    leaky = POLICY.replace("frozen for the audit", f"frozen, ask {SECRETS[1]}").replace(
        "2026-06-30", "2026-01-05"
    )
    use_policy(sinks_on, tmp_path, leaky)  # a reason holding a secret, in the digest
    ims.add_image({"name": "db-base", "tags": []})
    smn.fail_next("POST", 403, "APIGW.0302", f"denied for {SECRETS[0]}")

    failed = handler({"action": "sweep"}, sinks_on)
    published = handler({"action": "sweep"}, sinks_on)

    assert "error" in failed["sinks"]["smn"] and len(smn.published) == 1
    assert "frozen, ask ***" in json.loads(smn.published[0]["message_structure"])["email"]
    sent = json.dumps([smn.published, ces.points, failed, published])
    assert all(secret not in sent + capsys.readouterr().out for secret in SECRETS)


# -- the digest: a pure function of the report ------------------------------------------


def _policy(text: str = POLICY):
    import yaml

    return parse_policy(yaml.safe_load(text))


def _sweep_report(count: int) -> SweepReport:
    attention = [
        {
            "image_id": f"{index:08d}-0000-0000-0000-000000000000",
            "image_name": f"image-{index}",
            "reason": "line one\nline two",
            "outcome": "error" if index % 3 else "non_compliant",
        }
        for index in range(count)
    ]
    return SweepReport("sweep", False, count, {"error": count}, {}, [], [], attention, [], False)


def test_a_long_digest_lists_the_first_images_then_a_summary_line_never_a_cut_line():
    items = items_for(_sweep_report(3000), _policy(), date(2026, 1, 1), 14)

    digest = compose(
        items,
        kind="sweep",
        region=REGION,
        project_id=SAMPLE_PROJECT_ID,
        dry_run=False,
        email_bytes=20_000,
    )

    assert digest is not None and 0 < digest.items < 3000
    lines = digest.email.splitlines()
    listed = [line for line in lines if line.startswith("- ")]
    assert len(listed) == digest.items
    assert all(line.endswith("line one line two") or "expires" in line for line in listed)
    rest = 3000 + 1 - digest.items  # the expiring exemption is an item too
    assert lines[-1].startswith(f"and {rest:,} more: ")
    assert len(json.dumps(digest.email).encode()) <= 20_000
    assert len(digest.subject.encode()) <= SUBJECT_BYTES and len(digest.sms) <= SMS_CHARS
    assert len(digest.message_structure().encode()) <= 256 * 1024


def test_a_full_size_digest_stays_under_smn_limits():
    items = items_for(_sweep_report(20_000), _policy(), date(2026, 1, 1), 14)

    digest = compose(
        items, kind="sweep", region=REGION, project_id=SAMPLE_PROJECT_ID, dry_run=False
    )

    assert digest is not None
    assert len(digest.message_structure().encode()) <= 256 * 1024
    assert "[" not in digest.sms and "]" not in digest.sms


def test_the_digest_is_deterministic_and_sorted():
    report = _sweep_report(50)
    report.needs_attention.reverse()
    items = items_for(report, _policy(), date(2026, 1, 1), 14)

    again = items_for(_sweep_report(50), _policy(), date(2026, 1, 1), 14)

    assert items == again
    assert [i.subject for i in items[:3]] == sorted(i.subject for i in items)[:3]


def test_expiring_exemptions_are_those_within_the_days_given():
    policy = _policy()

    assert [i.label for i in expiring(policy, date(2026, 1, 1), 14)] == ["expires 2026-01-10"]
    assert expiring(policy, date(2026, 1, 11), 14) == []  # expired: no longer applies
    assert len(expiring(policy, date(2026, 6, 20), 14)) == 1
    assert expiring(policy, date(2026, 1, 1), 0) == []


def test_a_retryable_event_result_is_not_notified_yet():
    result = ImageResult("x", "error", "IMS kept failing", retryable=True)
    report = EventReport("event", False, [result], ())

    assert items_for(report, _policy(), date(2026, 1, 1), 14) == []


def test_metric_points_count_the_report():
    report = SweepReport(
        "sweep",
        False,
        5,
        {"compliant": 2, "updated": 1, "error": 1, "non_compliant": 1},
        {"owner-tag": {"violation": 2, "compliant": 3}, "kebab": {"compliant": 5}},
        [],
        [],
        [],
        [],
        False,
        needs_attention_total=2,
    )

    points = {(p["metric_name"], p["dimension"]): p["value"] for p in metric_points(report, "p")}

    assert points == {
        ("compliant_images", ("project", "p")): 2,
        ("updated_images", ("project", "p")): 1,
        ("violations", ("project", "p")): 2,
        ("errors", ("project", "p")): 1,
        ("needs_attention", ("project", "p")): 2,
        ("violations", ("rule", "kebab")): 0,
        ("violations", ("rule", "owner-tag")): 2,
    }


# -- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("IMSGUARD_NOTIFY_TOPIC_URN", "urn:smn:ap-southeast-1:notes", "not an SMN topic URN"),
        ("IMSGUARD_NOTIFY_TOPIC_URN", f"urn:fss:{REGION}:{SAMPLE_PROJECT_ID}:t", "SMN topic"),
        ("IMSGUARD_NOTIFY_EXPIRY_DAYS", "two weeks", "whole number from 0 to 3650"),
        ("IMSGUARD_NOTIFY_EXPIRY_DAYS", "-1", "whole number"),
        ("IMSGUARD_METRICS", "sometimes", "not a boolean"),
        ("IMSGUARD_SMN_ENDPOINT", "smn.example", "not an endpoint URL"),
        ("IMSGUARD_CES_ENDPOINT", "ftp://ces", "not an endpoint URL"),
    ],
)
def test_bad_sink_settings_are_configuration_errors(clouds, key, value, message):
    ims, smn, ces = clouds
    ak, sk, token = SECRETS
    context = LocalContext({key: value}, ak, sk, token)
    with pytest.raises(SettingsError, match=message):
        load_settings(context, {})

    report = handler(load_event("direct_image.json"), context)

    assert report["status"] == "error" and report["reason"].startswith("configuration:")
    assert ims.calls == [] and smn.calls == [] and ces.calls == []


def test_an_ordinary_event_imports_no_sink_and_no_new_sdk():
    """Only the sinks' registry (imsguard.sinks, a few lines) loads: no sink, no SDK."""
    code = (
        "import sys, imsguard.app\n"
        "from imsguard_tools.testing import FakeIms\n"
        "from imsguard_tools.local_context import LocalContext\n"
        "with FakeIms.seeded() as f:\n"
        "    before = set(sys.modules)\n"
        f"    imsguard.app.handler({{'image_id': '{DEBIAN}'}}, LocalContext(None, 'a'*8, 'b'*8))\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if 'sinks.' in m or 'smn' in m or 'ces' in m))\n"
    )
    out = run_fresh(code, IMSGUARD_REGION=REGION)
    assert out.strip().splitlines()[-1] == "[]"


def test_a_fixed_event_publishes_nothing(clouds, sinks_on):
    ims, smn, ces = clouds
    image = ims.add_image({"name": "Web_Base", "tags": ["team=web"]})["id"]

    report = handler({"image_id": image}, sinks_on)

    assert report["results"][0]["outcome"] == "updated"
    assert smn.published == [] and len(ces.requests) == 1


def test_the_agency_policy_gains_exactly_the_enabled_sinks_actions():
    from imsguard_tools.iam import actions, all_permissions, needed

    base = set(actions(needed(all_permissions(), {})))
    with_smn = set(actions(needed(all_permissions(), {"IMSGUARD_NOTIFY_TOPIC_URN": TOPIC})))
    with_ces = set(actions(needed(all_permissions(), {"IMSGUARD_METRICS": "true"})))
    off = set(actions(needed(all_permissions(), {"IMSGUARD_METRICS": "false"})))

    assert with_smn - base == {"smn:topic:publish"}
    assert with_ces - base == {"ces:metricData:create"}
    assert off == base


# -- review fixes ------------------------------------------------------------------------


def test_an_event_that_will_be_retried_runs_no_sink_then_the_retry_runs_each_once(clouds, sinks_on):
    from imsguard.app import TransientFailure

    ims, smn, ces = clouds
    image = ims.add_image({"name": "Db_Base", "tags": []})["id"]  # fixable, and cannot_fix
    ims.fail_next("PATCH", 400, "IMG.0060", times=4)  # flow control: the try and 3 retries

    with pytest.raises(TransientFailure):
        handler({"image_id": image}, sinks_on)

    assert smn.calls == [] and ces.calls == []  # not final: FunctionGraph retries it
    report = handler({"image_id": image}, sinks_on)  # the retry, which is final
    assert report["results"][0]["outcome"] == "updated"
    assert len(smn.published) == 1 and len(ces.requests) == 1


def test_an_updated_event_image_with_a_cannot_fix_rule_counts_as_needing_a_person(clouds, sinks_on):
    ims, smn, ces = clouds
    image = ims.add_image({"name": "Db_Base", "tags": []})["id"]

    report = handler({"image_id": image}, sinks_on)

    assert report["results"][0]["outcome"] == "updated"
    assert len(smn.published) == 1  # SMN says a person is needed ...
    needs = [p["value"] for p in ces.points if p["metric"]["metric_name"] == "needs_attention"]
    assert needs == [1]  # ... and Cloud Eye counts it


def test_needs_a_person_reads_fixes_and_verdicts():
    from imsguard.results import needs_a_person
    from imsguard.rules.base import Verdict

    ok = ImageResult("a", "updated", "", fixes={"r": "fixed"})
    fixes = ImageResult("b", "updated", "", fixes={"r": "fixed", "s": "cannot_fix"})
    error = ImageResult("c", "error", "IMS refused")
    verdict = Verdict("owner-tag", "violation", "no team tag")
    verdicts = ImageResult("d", "updated", "", verdicts=(verdict,), sent=("name",))

    assert [needs_a_person(r) for r in (ok, fixes, error, verdicts)] == [
        False,
        True,
        True,
        True,
    ]


def test_the_sweep_digest_counts_images_beyond_the_results_limit(clouds, sinks_on):
    ims, smn, _ = clouds
    sinks_on.user_data["IMSGUARD_RESULTS_LIMIT"] = "5"
    for n in range(20):
        ims.add_image({"name": f"db-{n}", "tags": []})  # no team tag: needs a person

    report = handler({"action": "sweep"}, sinks_on)

    assert len(report["needs_attention"]) == 5
    (message,) = smn.published
    assert "20 need a person" in message["subject"]
    email = json.loads(message["message_structure"])["email"]
    assert "Images that need a person (20):" in email
    assert (
        "- and 15 more images that need a person (not listed: raise IMSGUARD_RESULTS_LIMIT "
        "or see the logs)"
    ) in email
    assert email.count("rule owner-tag: cannot_fix") == 5  # the listed ones, one line each
    assert report["sinks"]["smn"]["images"] == 21  # and the expiring exemption, listed itself


def test_the_digest_counts_images_not_lines_in_subject_and_headers(clouds, sinks_on, tmp_path):
    ims, smn, _ = clouds
    two_rules = POLICY.replace(
        "require: [team]", "require: [team]\n  - name: env-tag\n    kind: tags\n    require: [env]"
    )
    use_policy(sinks_on, tmp_path, two_rules)
    ims.add_image({"name": "db-base", "tags": []})  # two rules violated: two lines, one image

    handler({"action": "sweep"}, sinks_on)

    (message,) = smn.published
    assert "1 need a person" in message["subject"]
    assert "Images that need a person (1):" in json.loads(message["message_structure"])["email"]


def test_the_guardrail_digest_counts_every_held_back_image(clouds, sinks_on, tmp_path):
    ims, smn, _ = clouds
    use_policy(sinks_on, tmp_path, POLICY.replace("rules:\n", "max_updates: 0\nrules:\n"))
    sinks_on.user_data["IMSGUARD_RESULTS_LIMIT"] = "3"
    for n in range(8):
        ims.add_image({"name": f"Web_Box_{n}", "tags": ["team=web"]})

    report = handler({"action": "sweep"}, sinks_on)

    assert report["guardrail"] and len(report["would_change"]) == 3
    (message,) = smn.published
    assert "8 held back" in message["subject"]
    email = json.loads(message["message_structure"])["email"]
    assert "Changes held back (8):" in email
    assert "- and 5 more images whose changes are held back (not listed" in email


def test_the_fake_smn_refuses_a_body_with_both_message_and_message_structure(clouds):
    """SMN takes exactly one of message, message_structure, message_template_name."""
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
    from huaweicloudsdksmn.v2 import PublishMessageRequest, PublishMessageRequestBody, SmnClient
    from huaweicloudsdksmn.v2.region.smn_region import SmnRegion

    from imsguard.context import read_credentials
    from imsguard.sinks.sdk import build_client

    _, smn, _ = clouds
    credentials = read_credentials(LocalContext({}, *SECRETS))
    assert credentials is not None
    client = build_client(
        SmnClient, SmnRegion, REGION, None, SAMPLE_PROJECT_ID, credentials, (5.0, 5.0)
    )
    body = PublishMessageRequestBody(
        subject="s", message="m", message_structure=json.dumps({"default": "m"})
    )

    with pytest.raises(ClientRequestException) as raised:
        client.publish_message(PublishMessageRequest(topic_urn=TOPIC, body=body))

    assert raised.value.status_code == 400 and raised.value.error_code == "SMN.00011006"
    assert "exactly one of" in raised.value.error_msg
    assert "got message, message_structure" in raised.value.error_msg
    assert smn.published == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "IMSGUARD_NOTIFY_TOPIC_URN",
            f"urn:smn:eu-west-101:{SAMPLE_PROJECT_ID}:imsguard-notices",
            "is in region eu-west-101, not the function's region ap-southeast-1",
        ),
        (
            "IMSGUARD_NOTIFY_TOPIC_URN",
            f"urn:smn:{REGION}:{'0' * 32}:imsguard-notices",
            f"is in project {'0' * 32}, not the function's project",
        ),
    ],
)
def test_a_topic_of_another_region_or_project_is_a_configuration_error(clouds, key, value, message):
    ims, smn, ces = clouds
    context = LocalContext({key: value}, *SECRETS)
    with pytest.raises(SettingsError, match=message):
        load_settings(context)

    report = handler(load_event("direct_image.json"), context)

    assert report["status"] == "error" and report["reason"].startswith("configuration:")
    assert message in report["reason"]
    assert ims.calls == [] and smn.calls == [] and ces.calls == []


def test_a_large_sweep_reports_bounded_sink_outcomes(clouds, sinks_on):
    ims, _, _ = clouds
    sinks_on.user_data["IMSGUARD_RESULTS_LIMIT"] = "2"
    ids = [ims.add_image({"name": f"db-{n}", "tags": []})["id"] for n in range(12)]

    report = handler({"action": "sweep"}, sinks_on)

    sinks = json.dumps(report["sinks"])
    assert not any(image in sinks for image in ids)  # counts, never per-image lists
    lists = [v for o in report["sinks"].values() for v in o.values() if isinstance(v, list)]
    assert all(len(v) <= 21 for v in lists)  # per topic: the routes' cap plus the default


URN = f"urn:fss:{REGION}:{SAMPLE_PROJECT_ID}:function:default:imsguard:latest"


def continuing(ims, context, clock, timeout_ms=17_000):
    """Sweeps that continue themselves: pages of 2, each request 2 s of the hop's time."""
    context.user_data.update(
        IMSGUARD_SWEEP_PAGE_SIZE="2",
        IMSGUARD_SWEEP_CONTINUE="true",
        IMSGUARD_FUNCTION_URN=URN,
        IMSGUARD_FGS_ENDPOINT=ims.fgs_endpoint,
    )
    context.timeout_ms = timeout_ms
    ims.before_request = lambda method, path: setattr(clock, "elapsed", clock.elapsed + 2)


def run_sweep(ims, context, clock):
    """The sweep's hops, each the payload the previous one invoked (as FunctionGraph would)."""
    reports = [handler({"action": "sweep"}, context)]
    while reports[-1].get("continued", {}).get("started"):
        clock.elapsed = 0
        reports.append(handler(ims.invocations[-1]["body"], context))
    return reports


def test_a_continued_sweep_publishes_one_digest_on_its_last_hop(clouds, sinks_on, clock):
    ims, smn, ces = clouds
    ids = fill(ims)
    more = [ims.add_image({"name": f"app-{n}", "tags": []})["id"] for n in range(4)]
    continuing(ims, sinks_on, clock)

    reports = run_sweep(ims, sinks_on, clock)

    assert len(reports) >= 3  # the sweep took several hops
    assert sum(r["examined"] for r in reports) == 8
    (message,) = smn.published  # one digest for the whole sweep
    for report in reports[:-1]:
        assert report["sinks"]["smn"]["published"] == 0
    assert sum(r["sinks"]["smn"].get("handed_on", 0) > 0 for r in reports[:-1]) >= 1
    assert reports[-1]["sinks"]["smn"]["published"] == 1
    email = json.loads(message["message_structure"])["email"]
    for image in [ids["untagged"], *more]:  # every hop's images that need a person
        assert email.count(f"- {image} ") == 1
    assert ids["exempt"] in email and "expires 2026-01-10" in email  # from the first hop
    assert "Images examined: 8." in email
    assert "5 need a person" in message["subject"] and "1 expiring" in message["subject"]
    assert len(ces.requests) == len(reports)  # Cloud Eye: one request per invocation


def test_a_hop_that_cannot_continue_publishes_what_it_was_handed(clouds, sinks_on, clock):
    ims, smn, _ = clouds
    fill(ims)
    for n in range(6):
        ims.add_image({"name": f"app-{n}", "tags": []})
    continuing(ims, sinks_on, clock)
    first = handler({"action": "sweep"}, sinks_on)
    assert first["continued"]["started"] and not smn.published
    payload = ims.invocations[-1]["body"]
    assert payload["notices"] and all(set(n) <= NOTICE_KEYS for n in payload["notices"])
    sinks_on.user_data["IMSGUARD_SWEEP_CONTINUE"] = "false"  # the next hop may not go on
    clock.elapsed = 0

    second = handler(payload, sinks_on)

    assert second["continued"]["started"] is False
    (message,) = smn.published
    email = json.loads(message["message_structure"])["email"]
    for notice in payload["notices"]:  # handed on by the first hop, published by the second
        assert f"- {notice['image_id']} " in email


NOTICE_KEYS = {"section", "image_id", "name", "rule", "label", "tags", "images", "exemption"}


def test_the_lines_handed_on_stay_small_and_are_counted_beyond(
    clouds, sinks_on, clock, monkeypatch
):
    ims, smn, _ = clouds
    untagged = [ims.add_image({"name": f"db-{n:03d}", "tags": []})["id"] for n in range(60)]
    continuing(ims, sinks_on, clock)
    sinks_on.user_data["IMSGUARD_SWEEP_PAGE_SIZE"] = "50"
    budget = 2_000
    carry = digest.carry
    monkeypatch.setattr(digest, "carry", lambda items: carry(items, budget_bytes=budget))

    reports = run_sweep(ims, sinks_on, clock)

    assert len(reports) >= 2
    for invocation in ims.invocations:
        assert len(json.dumps(invocation["body"]["notices"])) < budget + 200
    (message,) = smn.published
    email = json.loads(message["message_structure"])["email"]
    assert "60 need a person" in message["subject"]  # every image counted, listed or not
    assert "Images that need a person (60):" in email
    listed = sum(f"- {image} " in email for image in untagged)
    assert 0 < listed < 60
    assert f"- and {60 - listed} more images that need a person (not listed" in email


GOOD_NOTICE = {
    "section": "attention",
    "image_id": "00000000-0000-4000-8000-000000000001",
    "name": "db-base",
    "rule": "owner-tag",
    "label": "cannot_fix",
    "tags": [],
    "images": 1,
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"hop": 0}, "only with a continuation"),
        ({"reason": "log in at https://evil.example"}, "reason"),
        ({"name": "see https://evil.example/login"}, "not an image name IMS accepts"),
        ({"section": "Urgent"}, "section"),
        ({"label": "visit evil.example"}, "label"),
        ({"rule": "Owner Tag!"}, "rule"),
        ({"images": 10**12}, "images"),
        ({"images": 0}, "images"),
        ({"image_id": "not-an-id"}, "not an image id"),
        ({"section": "expiring"}, "an exemption is named on expiring lines"),
    ],
)
def test_a_forged_notice_is_refused_before_any_work(clouds, sinks_on, change, problem):
    ims, smn, _ = clouds
    fill(ims)
    hop = change.pop("hop", 1)
    event = {"action": "sweep", "hop": hop, "notices": [{**GOOD_NOTICE, **change}]}

    report = handler(event, sinks_on)

    assert report["status"] == "invalid" and report["results"] == []
    assert "notices" in report["reason"] and problem in report["reason"]
    assert ims.patches == [] and smn.published == []


def test_a_well_formed_notice_is_worded_by_the_function_not_the_caller(clouds, sinks_on):
    _, smn, _ = clouds
    notices = [
        GOOD_NOTICE,
        {**GOOD_NOTICE, "label": "made_up", "image_id": "00000000-0000-4000-8000-000000000002"},
        {**GOOD_NOTICE, "section": "expiring", "exemption": 7, "label": "expires 2026-01-10"},
    ]

    report = handler({"action": "sweep", "hop": 1, "notices": notices}, sinks_on)

    assert report["status"] == "ok"
    (message,) = smn.published
    email = json.loads(message["message_structure"])["email"]
    assert (
        '- 00000000-0000-4000-8000-000000000001 "db-base" rule owner-tag: cannot_fix: imsguard '
        "cannot fix this rule; found by an earlier hop of this sweep" in email
    )
    assert "000000000002" not in email  # an unknown label is dropped, never printed
    assert "1 need a person" in message["subject"]  # nor the exemption the policy lacks


def test_what_a_hop_hands_on_always_passes_the_next_hops_checks():
    """Lines cut by the budget between two exemptions of one image, long names and rules:
    whatever carry() keeps, the next hop's options accept."""
    from imsguard.event_models import SweepOptions
    from imsguard.sinks.digest import EXPIRING, NEED_A_PERSON, Item, _wire, carry

    image = "00000000-0000-4000-8000-000000000009"
    lines = [
        Item(
            NEED_A_PERSON, f"00000000-0000-4000-8000-{n:012d}", "x" * 300, "owner-tag", "error", "r"
        )
        for n in range(30)
    ] + [
        Item(EXPIRING, image, "Legacy Box", "a, b", "expires 2026-01-10", "x", ("legacy",), 1, 0),
        Item(EXPIRING, image, "Legacy Box", "a, b", "expires 2026-06-30", "x", ("legacy",), 1, 1),
    ]
    for budget in (0, 200, 700, 2_000, 10_000):
        notices = [_wire(i) for i in carry(lines, budget)]
        SweepOptions.model_validate({"hop": 1, "notices": json.loads(json.dumps(notices))})


def test_carried_lines_beyond_the_budget_keep_their_exemption_and_count_images():
    from imsguard.sinks.digest import EXPIRING, NEED_A_PERSON, Item, _wire, carry, received

    policy = parse_policy(yaml.safe_load(POLICY))
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(15)]
    lines = [
        Item(NEED_A_PERSON, ids[n], f"db-{n}", rule, "cannot_fix", "no team tag")
        for n in range(10)
        for rule in ("owner-tag", "kebab-case-name")  # two lines, one image
    ] + [
        Item(EXPIRING, ids[10 + n], "", "-", "expires 2026-01-10", "x", (), 1, 0) for n in range(5)
    ]

    wire = json.loads(json.dumps([_wire(i) for i in carry(lines, 1_500)]))
    carried = received(wire, policy)

    kept = [i for i in carried if not i.summary]
    summaries = [i for i in carried if i.summary]
    counted = len({i.subject for i in kept if i.section == NEED_A_PERSON}) + sum(
        i.images for i in summaries if i.section == NEED_A_PERSON
    )
    assert counted == 10 and summaries  # every image counted once, the rest summarised
    expiring_lines = [i for i in carried if i.section == EXPIRING]
    assert {i.exemption for i in expiring_lines} == {0}  # the exemption is still named
    assert sum(i.images for i in expiring_lines) == 5
    assert all("tag legacy" in i.reason or i.subject == "tag legacy" for i in expiring_lines)


def test_a_rule_imsguard_cannot_fix_on_an_updated_image_says_so(clouds, sinks_on):
    ims, smn, _ = clouds
    image = ims.add_image({"name": "DB_Base", "tags": []})["id"]

    report = handler({"action": "sweep"}, sinks_on)

    assert report["summary"] == {"updated": 1}  # its name was fixed; its tags cannot be
    email = json.loads(smn.published[0]["message_structure"])["email"]
    assert f'- {image} "DB_Base" rule owner-tag: cannot_fix: imsguard cannot fix this rule' in email


def deferring(ims, context, clock):
    """Sweeps whose patches run out of time (some are deferred to the next hop), listing at
    most 3 results per hop."""
    continuing(ims, context, clock, timeout_ms=20_000)
    context.user_data.update(
        IMSGUARD_SWEEP_PAGE_SIZE="50",
        IMSGUARD_SWEEP_CONCURRENCY="1",
        IMSGUARD_SWEEP_MAX_HOPS="30",
        IMSGUARD_RESULTS_LIMIT="3",
    )

    def slow(method: str, path: str) -> None:
        if method == "PATCH":  # slower than the hop's estimate: some are deferred
            clock.elapsed += 1.5

    ims.before_request = slow


def test_images_a_deferring_hop_leaves_to_the_next_are_counted_once(clouds, sinks_on, clock):
    """Patches run out of time: the next hop lists the deferred images, and every image
    after them, again. The digest counts and lists each image that needs a person once,
    listed or beyond IMSGUARD_RESULTS_LIMIT."""
    ims, smn, _ = clouds
    untagged = set()
    for n in range(20):
        ims.add_image({"name": f"Web_{n}", "tags": ["team=web"]})  # a patch each
        untagged.add(ims.add_image({"name": f"db-{n}", "tags": []})["id"])  # needs a person
    deferring(ims, sinks_on, clock)

    reports = run_sweep(ims, sinks_on, clock)

    assert any(r["summary"].get("deferred") for r in reports)
    assert sum(r["summary"].get("non_compliant", 0) for r in reports) > 20  # seen twice
    (message,) = smn.published
    assert "20 need a person" in message["subject"]
    email = json.loads(message["message_structure"])["email"]
    assert "Images that need a person (20):" in email
    listed = [image for image in untagged if f"- {image} " in email]
    assert all(email.count(f"- {image} ") == 1 for image in listed)
    assert f"- and {20 - len(listed)} more images that need a person" in email


def test_exempt_images_a_deferring_hop_leaves_to_the_next_are_counted_once(clouds, sinks_on, clock):
    ims, smn, _ = clouds
    for n in range(20):
        ims.add_image({"name": f"Web_{n}", "tags": ["team=web"]})  # a patch each
        ims.add_image({"name": f"old-{n}", "tags": ["legacy", "team=x"]})  # exempt
    deferring(ims, sinks_on, clock)

    reports = run_sweep(ims, sinks_on, clock)

    assert any(r["summary"].get("deferred") for r in reports)
    (message,) = smn.published
    assert "20 expiring" in message["subject"]


def test_an_image_with_the_longest_tags_ims_allows_is_carried_to_the_last_hop(
    clouds, sinks_on, clock
):
    ims, smn, _ = clouds
    tag = f"{'k' * 128}={'v' * 255}"  # IMS: a 128-character key, a 255-character value
    untagged = [ims.add_image({"name": f"db-{n}", "tags": [tag]})["id"] for n in range(6)]
    continuing(ims, sinks_on, clock)

    reports = run_sweep(ims, sinks_on, clock)

    assert len(reports) >= 2 and all(r["status"] == "ok" for r in reports)
    (message,) = smn.published
    email = json.loads(message["message_structure"])["email"]
    assert all(f"- {image} " in email for image in untagged)
