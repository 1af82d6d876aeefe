"""SMN notice routing (``IMSGUARD_NOTIFY_ROUTES``) and expiring exemptions listed by image:
through the handler and the real SMN SDK against the fake IMS and SMN."""

from __future__ import annotations

import json

import pytest

from helpers import SECRETS, load_event, use_policy
from imsguard.app import handler
from imsguard.results import ImageResult
from imsguard.settings import SettingsError, load_settings
from imsguard_tools.local_context import LocalContext
from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms, FakeSmn

REGION = "ap-southeast-1"


def topic(name: str) -> str:
    return f"urn:smn:{REGION}:{SAMPLE_PROJECT_ID}:{name}"


DEFAULT, WEB, DB, PROD = (topic(n) for n in ("imsguard-notices", "web", "db", "prod"))
ROUTES = json.dumps({"team=web": WEB, "team=db": DB, "env=prod": PROD})
POLICY = """
version: 1
exemptions:
  - tag: legacy
    reason: the legacy fleet is replaced in January
    expires: 2026-01-10
    rules: [owner-tag]
  - tag: frozen
    reason: frozen for the audit
    expires: 2026-06-30
rules:
  - name: owner-tag
    kind: tags
    require: [owner]
"""


@pytest.fixture
def clouds():
    smn = FakeSmn(SAMPLE_PROJECT_ID, REGION, topics=(DEFAULT, WEB, DB, PROD))
    with FakeIms(project_id=SAMPLE_PROJECT_ID).attach(smn) as ims:
        yield ims, smn
    for fake in (ims, smn):
        fake.assert_injections_met()


@pytest.fixture
def routed(context, tmp_path):
    use_policy(context, tmp_path, POLICY)
    context.user_data.update(IMSGUARD_NOTIFY_TOPIC_URN=DEFAULT, IMSGUARD_NOTIFY_ROUTES=ROUTES)
    return context


def emails(smn: FakeSmn) -> dict[str, str]:
    """Each topic's message text; one message per topic at most."""
    topics = [m["topic_urn"] for m in smn.published]
    assert len(topics) == len(set(topics)), f"a topic got two messages: {topics}"
    return {m["topic_urn"]: json.loads(m["message_structure"])["email"] for m in smn.published}


def fill(ims):
    """Images without the owner tag (each needs a person), with various team and env tags."""
    add = ims.add_image
    return {
        "web": add({"name": "web-base", "tags": ["team=web"]})["id"],
        "db": add({"name": "db-base", "tags": ["team=db"]})["id"],
        "web_prod": add({"name": "web-prod", "tags": ["team=web", "env=prod"]})["id"],
        "other": add({"name": "misc", "tags": ["team=ops"]})["id"],
        "owned": add({"name": "fine", "tags": ["team=web", "owner=ann"]})["id"],
    }


def test_a_sweep_publishes_one_digest_per_topic_each_with_its_own_images(clouds, routed):
    ims, smn = clouds
    ids = fill(ims)

    report = handler({"action": "sweep"}, routed)

    sent = emails(smn)
    assert set(sent) == {DEFAULT, WEB, DB, PROD}
    listed = {
        urn: {name for name, image_id in ids.items() if image_id in text}
        for urn, text in sent.items()
    }
    assert listed == {
        WEB: {"web", "web_prod"},
        DB: {"db"},
        PROD: {"web_prod"},  # an image in two routes goes to both topics
        DEFAULT: {"other"},  # no route matches: the default topic
    }
    outcome = report["sinks"]["smn"]
    assert outcome["published"] == 4 and sorted(outcome["topic_urns"]) == sorted(sent)
    assert len(outcome["message_ids"]) == 4 and "error" not in outcome
    assert "1 need a person" in next(m["subject"] for m in smn.published if m["topic_urn"] == DB)


def test_routes_naming_one_topic_twice_send_it_one_message_listing_each_image_once(clouds, routed):
    ims, smn = clouds
    routed.user_data["IMSGUARD_NOTIFY_ROUTES"] = json.dumps({"team=web": WEB, "env=prod": WEB})
    ids = fill(ims)

    handler({"action": "sweep"}, routed)

    sent = emails(smn)
    assert set(sent) == {DEFAULT, WEB}
    assert sent[WEB].count(ids["web_prod"]) == 1
    assert ids["db"] in sent[DEFAULT] and ids["web"] not in sent[DEFAULT]


def test_an_event_notice_goes_to_its_images_topics_only(clouds, routed):
    ims, smn = clouds
    ids = fill(ims)

    report = handler({"image_id": ids["web_prod"]}, routed)

    assert report["results"][0]["outcome"] == "non_compliant"
    assert set(emails(smn)) == {WEB, PROD}
    assert sorted(report["sinks"]["smn"]["topic_urns"]) == sorted([WEB, PROD])


def test_one_failing_topic_leaves_the_others_published_and_says_which_failed(clouds, routed):
    ims, smn = clouds
    fill(ims)
    smn.fail_next("POST", 500, "SYS.0500")

    report = handler({"action": "sweep"}, routed)

    outcome = report["sinks"]["smn"]
    assert outcome["published"] == 3 and len(smn.published) == 3
    failed = ({DEFAULT, WEB, DB, PROD} - set(outcome["topic_urns"])).pop()
    assert f"topic {failed}: " in outcome["error"] and "500" in outcome["error"]


def test_routing_leaves_the_json_results_unchanged(clouds, routed):
    ims, _ = clouds
    ids = fill(ims)
    plain = LocalContext(
        {k: v for k, v in routed.user_data.items() if k != "IMSGUARD_NOTIFY_ROUTES"},
        *SECRETS,
    )

    with_routes = handler({"action": "sweep", "dry_run": True}, routed)
    without = handler({"action": "sweep", "dry_run": True}, plain)
    event_with = handler({"image_id": ids["web"]}, routed)
    event_without = handler({"image_id": ids["web"]}, plain)

    for key in ("results", "summary", "needs_attention", "would_change", "changed", "rules"):
        assert with_routes[key] == without[key]
    assert event_with["results"] == event_without["results"]
    assert with_routes["sinks"]["smn"]["published"] == 4
    assert without["sinks"]["smn"]["published"] == 1
    entry_keys = {key for entry in with_routes["results"] for key in entry}
    assert "tags" not in entry_keys and "tags" not in event_with["results"][0]


def test_results_keep_the_tags_of_images_that_were_read_only():
    read = ImageResult("i", "compliant", "ok", tags=ImageResult.tags_of({"tags": ["a=b", 3]}))
    unresolved = ImageResult(None, "error", "job failed", job_id="j")

    assert read.tags == ("a=b",) and unresolved.tags is None
    assert "tags" not in read.to_json()


# -- expiring exemptions, by image ------------------------------------------------------


def test_a_sweep_lists_each_image_an_expiring_exemption_covers_in_its_topic(clouds, routed):
    ims, smn = clouds
    web = ims.add_image({"name": "Legacy Web", "tags": ["legacy", "team=web", "owner=x"]})["id"]
    plain = ims.add_image({"name": "Legacy Misc", "tags": ["legacy", "owner=y"]})["id"]

    handler({"action": "sweep"}, routed)

    sent = emails(smn)
    line = (
        f'- {web} "Legacy Web" rule owner-tag: expires 2026-01-10: exemption tag legacy: '
        "the legacy fleet is replaced in January"
    )
    assert line in sent[WEB].splitlines()
    assert f'- {plain} "Legacy Misc" rule owner-tag: expires 2026-01-10' in sent[DEFAULT]
    assert web not in sent[DEFAULT] and "- tag legacy" not in sent[DEFAULT]
    assert "frozen" not in json.dumps(sent)  # expires in June: not within 14 days


def test_an_expiring_exemption_covering_no_examined_image_is_listed_itself(clouds, routed):
    ims, smn = clouds
    ims.add_image({"name": "misc", "tags": ["owner=z"]})

    handler({"action": "sweep"}, routed)

    assert set(emails(smn)) == {DEFAULT}
    assert "- tag legacy rule owner-tag: expires 2026-01-10: the legacy" in emails(smn)[DEFAULT]


def test_images_beyond_the_results_limit_are_summarised_per_exemption(clouds, routed):
    ims, smn = clouds
    routed.user_data["IMSGUARD_RESULTS_LIMIT"] = "2"
    for n in range(5):
        ims.add_image({"name": f"legacy-{n}", "tags": ["legacy", "owner=q"]})

    handler({"action": "sweep"}, routed)

    lines = emails(smn)[DEFAULT].splitlines()
    listed = [line for line in lines if line.startswith("- ") and "legacy-" in line]
    assert len(listed) == 2
    assert "- tag legacy rule owner-tag: expires 2026-01-10: and 3 more images it covers: " in (
        "\n".join(lines)
    )


def test_an_event_publishes_nothing_for_an_exempt_image_whose_exemption_expires_soon(
    clouds, routed
):
    """An event notifies only when its image needs a person: the sweep's digest lists the
    images of exemptions that expire soon."""
    ims, smn = clouds
    image = ims.add_image({"name": "legacy-db", "tags": ["legacy", "team=db"]})["id"]

    report = handler({"image_id": image}, routed)

    assert report["results"][0]["outcome"] == "compliant"  # the exemption covers its rule
    assert smn.published == [] and report["sinks"]["smn"]["published"] == 0


# -- the setting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ("team=web>" + WEB, "is not JSON"),
        (json.dumps([["team=web", WEB]]), "not a JSON object"),
        ("{}", "not a JSON object with routes"),
        (f'{{"team=web": "{WEB}", "team=web": "{DB}"}}', "names the tag 'team=web' twice"),
        (json.dumps({"": WEB}), "'' is not a tag"),
        (json.dumps({"=web": WEB}), "'=web' is not a tag"),
        (json.dumps({"team=web=x": WEB}), "is not a tag"),
        (json.dumps({"team=web": "urn:smn:ap-southeast-1:web"}), "is not an SMN topic URN"),
        (json.dumps({"team=web": {"urn": WEB}}), "is not an SMN topic URN"),
        (json.dumps({"team=web": ""}), "is not an SMN topic URN"),
        (
            json.dumps({"team=web": WEB.replace(REGION, "eu-west-101")}),
            "is in region eu-west-101, not the function's region ap-southeast-1",
        ),
        (
            json.dumps({"team=web": WEB.replace(SAMPLE_PROJECT_ID, "0" * 32)}),
            "is in project " + "0" * 32 + ", not the function's project",
        ),
        (
            json.dumps({f"team=t{n}": topic(f"t{n}") for n in range(21)}),
            "21 routes, more than 20",
        ),
    ],
)
def test_bad_routes_are_configuration_errors_and_nothing_is_called(clouds, routes, message):
    ims, smn = clouds
    context = LocalContext(
        {"IMSGUARD_NOTIFY_TOPIC_URN": DEFAULT, "IMSGUARD_NOTIFY_ROUTES": routes}, *SECRETS
    )
    environ = {"IMSGUARD_REGION": REGION, "RUNTIME_PROJECT_ID": SAMPLE_PROJECT_ID}
    with pytest.raises(SettingsError, match="IMSGUARD_NOTIFY_ROUTES") as raised:
        load_settings(context, environ)
    assert message in str(raised.value)

    report = handler(load_event("direct_image.json"), context)

    assert report["status"] == "error" and report["reason"].startswith("configuration:")
    assert message in report["reason"]
    assert ims.calls == [] and smn.calls == []


def test_routes_without_a_default_topic_are_refused(clouds):
    ims, smn = clouds
    context = LocalContext({"IMSGUARD_NOTIFY_ROUTES": ROUTES}, *SECRETS)

    report = handler(load_event("direct_image.json"), context)

    assert report["status"] == "error"
    assert "IMSGUARD_NOTIFY_ROUTES needs IMSGUARD_NOTIFY_TOPIC_URN" in report["reason"]
    assert ims.calls == [] and smn.calls == []


def test_good_routes_are_read_in_order():
    context = LocalContext(
        {"IMSGUARD_NOTIFY_TOPIC_URN": DEFAULT, "IMSGUARD_NOTIFY_ROUTES": ROUTES}, *SECRETS
    )

    settings = load_settings(context, {})

    assert settings.notify_routes == (("team=web", WEB), ("team=db", DB), ("env=prod", PROD))
    assert load_settings(LocalContext({}, *SECRETS), {}).notify_routes == ()


def test_changes_held_back_by_the_guardrail_go_to_their_images_topics(clouds, routed, tmp_path):
    ims, smn = clouds
    held = POLICY.replace("rules:\n", "max_updates: 0\nrules:\n") + (
        "  - name: kebab-case-name\n"
        "    kind: name\n"
        "    pattern: '^[a-z0-9]+(-[a-z0-9]+)*$'\n"
        "    fix: normalize\n"
    )
    use_policy(routed, tmp_path, held)
    web = ims.add_image({"name": "Web_Box", "tags": ["team=web", "owner=a"]})["id"]
    other = ims.add_image({"name": "Misc_Box", "tags": ["owner=b"]})["id"]

    report = handler({"action": "sweep"}, routed)

    assert report["guardrail"] and report["summary"] == {"would_update": 2}
    sent = emails(smn)
    assert set(sent) == {WEB, DEFAULT}
    assert f'- {web} "Web_Box" rule kebab-case-name: guardrail' in sent[WEB]
    assert web not in sent[DEFAULT] and other in sent[DEFAULT]
