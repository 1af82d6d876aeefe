"""imsguard doctor's sink checks (Config resource type, SMN topic, Cloud Eye namespace, OBS
bucket) through the real SDKs against the fakes: ok, fail and unknown, only when their
setting is present, and never a write."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from imsguard.clock import SystemClock
from imsguard.settings import load_settings
from imsguard_tools.cli import main
from imsguard_tools.doctor import probe_for, run_checks
from imsguard_tools.doctor_fake import CREDENTIALS, PROJECT_ID, FakeCloud, fake_cloud
from imsguard_tools.doctor_sinks import (
    SINK_CHECKS,
    CesNamespace,
    ConfigResourceType,
    ObsBucket,
    SmnTopic,
)
from imsguard_tools.iam import actions, all_permissions, needed
from imsguard_tools.local_context import LocalContext
from imsguard_tools.template import Template, load_template

ROOT = Path(__file__).parents[1]
REGION = "ap-southeast-1"
TOPIC = f"urn:smn:{REGION}:{PROJECT_ID}:imsguard-notices"
WEB_TOPIC = f"urn:smn:{REGION}:{PROJECT_ID}:web-notices"
BUCKET = "team-reports"
SINKS = {
    "IMSGUARD_CONFIG_RULES": "true",
    "IMSGUARD_NOTIFY_TOPIC_URN": TOPIC,
    "IMSGUARD_NOTIFY_ROUTES": json.dumps({"team=web": WEB_TOPIC}),
    "IMSGUARD_METRICS": "true",
    "IMSGUARD_REPORT_BUCKET": BUCKET,
}
RULE = {"name": "imsguard-uefi-boot", "trigger": "resource", "agency": "rms-fgs-agency"}
NAMES = [check.name for check in SINK_CHECKS]


def write_template(folder: Path, settings: dict[str, str], rules: list[dict[str, str]]) -> Path:
    """The repository's template with these settings on (and the agency actions they need),
    beside a code root holding its policy."""
    data = yaml.safe_load((ROOT / "template.yaml").read_text())
    function = data["function"]
    function["settings"].update(settings)
    function["agency"]["permissions"] = actions(needed(all_permissions(), function["settings"]))
    if rules:
        data["config_rules"] = rules
    (folder / "function").mkdir(exist_ok=True)
    shutil.copy(ROOT / "function/policy.yaml", folder / "function/policy.yaml")
    path = folder / "template.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def template_path(tmp_path: Path) -> Path:
    return write_template(tmp_path, SINKS, [RULE])


@pytest.fixture
def cloud(template_path: Path) -> Iterator[FakeCloud]:
    with fake_cloud(REGION, load_template(template_path), list(SINK_CHECKS)) as fake:
        yield fake


def doctor(cloud: FakeCloud, deadline: float = 10.0) -> dict[str, tuple[str, str, str]]:
    """Each sink check that applies, by name: (status, reason, fix)."""
    probe = probe_for(cloud.template, REGION, deadline, CREDENTIALS, PROJECT_ID, cloud.endpoints)
    results = run_checks(probe, list(SINK_CHECKS))
    return {r.name: (r.status, r.reason or "", r.fix or "") for r in results}


def doctor_command(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["doctor", "--fake", *args])
    return status, capsys.readouterr().out


def lines(out: str) -> dict[str, str]:
    """The text output's check lines, by check name: its status."""
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("ok", "fail", "unknown"):
            found[parts[1].rstrip(":")] = parts[0]
    return found


def reads(cloud: FakeCloud) -> dict[str, list[str]]:
    """The calls each sink's fake received, as METHOD path."""
    found = {
        name: [f"{c.method} {unquote(c.path)}" for c in cloud.others[name].calls]
        for name in ("config", "smn", "ces")
    }
    found["obs"] = [f"{c.method} /{c.bucket}/{c.key}" for c in cloud.obs.calls]
    return found


@pytest.fixture
def closed_port() -> str:
    """A loopback endpoint nothing listens on: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback endpoint that takes connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- the command -------------------------------------------------------------------------


def test_doctor_fake_with_the_sinks_on_shows_them_ok(template_path, capsys):
    status, out = doctor_command("--template", str(template_path), capsys=capsys)

    assert status == 0, out
    shown = lines(out)
    assert {name: shown.get(name) for name in NAMES} == dict.fromkeys(NAMES, "ok")
    assert set(shown.values()) == {"ok"}


def test_doctor_fake_without_the_sinks_shows_none_of_their_checks(tmp_path, capsys):
    status, out = doctor_command("--template", str(write_template(tmp_path, {}, [])), capsys=capsys)

    assert status == 0, out
    assert "function" in lines(out)  # the other checks ran
    assert not set(lines(out)) & set(NAMES)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("config-resource-type", ["Config answered 403", "ListProviders", "IMSGUARD_DOMAIN_ID"]),
        ("smn-topic", ["SMN refused ListTopicAttributes", "smn:topic:listAttributes"]),
        ("ces-namespace", ["Cloud Eye refused ListMetrics", "ces:metrics:list"]),
        (
            "obs-bucket",
            ["OBS refused HEAD bucket", "obs:bucket:HeadBucket", "obs:object:PutObject"],
        ),
    ],
)
def test_refuse_shows_each_checks_failure_and_only_its(template_path, capsys, name, words):
    status, out = doctor_command("--template", str(template_path), "--refuse", name, capsys=capsys)

    assert status == 1
    shown = lines(out)
    assert shown[name] == "fail"
    assert {n for n, s in shown.items() if s != "ok"} == {name}
    failure = out[out.index(f"fail    {name}:") :]
    for word in words:
        assert word in failure.split("\n\n")[0]


def test_every_sink_endpoint_silent_ends_unknown_within_the_deadline(
    template_path, capsys, monkeypatch, silent_endpoint
):
    # --refuse acts once the template is deployed: here it makes each sink's endpoint silent
    for check, name in ((ConfigResourceType, "config"), (SmnTopic, "smn"), (CesNamespace, "ces")):
        monkeypatch.setattr(
            check,
            "refuse",
            lambda cloud, name=name: cloud.others[name].never_answer(SystemClock(), "GET"),
        )
    monkeypatch.setattr(
        ObsBucket,
        "refuse",
        lambda cloud: cloud.endpoints.update(IMSGUARD_OBS_ENDPOINT=silent_endpoint),
    )
    refused = [arg for name in NAMES for arg in ("--refuse", name)]
    started = time.monotonic()

    status, out = doctor_command(
        "--template",
        str(template_path),
        "--deadline",
        "2",
        "--output",
        "json",
        *refused,
        capsys=capsys,
    )

    assert time.monotonic() - started < 4.0
    assert status == 0  # nothing failed: nothing could be told
    results = {r["name"]: r for r in json.loads(out)["checks"]}
    for name in NAMES:
        assert results[name]["status"] == "unknown", results[name]
        assert results[name]["reason"]


# -- what each check reads, and never writes ------------------------------------------------


def test_the_checks_only_read_each_thing_once(cloud):
    results = doctor(cloud)

    assert {name: status for name, (status, _, _) in results.items()} == dict.fromkeys(NAMES, "ok")
    assert cloud.writes() == []
    called = reads(cloud)
    assert [c.split("?")[0] for c in called["config"]] == [
        "GET /v1/resource-manager/domains/" + cloud.endpoints["IMSGUARD_DOMAIN_ID"] + "/providers"
    ]
    assert sorted(called["smn"]) == sorted(
        f"GET /v2/{PROJECT_ID}/notifications/topics/{topic}/attributes"
        for topic in (TOPIC, WEB_TOPIC)
    )
    assert called["ces"] == [f"GET /V1.0/{PROJECT_ID}/metrics"]
    assert called["obs"] == [f"HEAD /{BUCKET}/"]
    assert not cloud.others["smn"].published
    assert not cloud.others["ces"].points
    assert not cloud.others["config"].states
    assert not cloud.obs.objects


@pytest.mark.parametrize("name", NAMES)
def test_a_refused_check_writes_nothing_either(cloud, name):
    check = next(c for c in SINK_CHECKS if c.name == name)
    check.refuse(cloud)

    assert doctor(cloud)[name][0] == "fail"
    assert cloud.writes() == []


# -- applies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        ({}, set()),
        ({"IMSGUARD_NOTIFY_TOPIC_URN": TOPIC}, {"smn-topic"}),
        ({"IMSGUARD_METRICS": "true"}, {"ces-namespace"}),
        ({"IMSGUARD_METRICS": "false"}, set()),
        ({"IMSGUARD_REPORT_BUCKET": BUCKET}, {"obs-bucket"}),
        ({"IMSGUARD_CONFIG_RULES": "true"}, {"config-resource-type"}),
    ],
)
def test_a_check_shows_only_when_its_setting_is_present(tmp_path, settings, shown):
    template = load_template(write_template(tmp_path, settings, []))

    with fake_cloud(REGION, template, list(SINK_CHECKS)) as cloud:
        results = doctor(cloud)

    assert set(results) == shown
    assert all(status == "ok" for status, _, _ in results.values())


def test_config_rules_in_the_template_make_the_config_check_apply(template_path):
    template = load_template(template_path)
    probe = probe_for(template, REGION, 5.0, CREDENTIALS, PROJECT_ID, {})
    bare = load_settings(LocalContext({"IMSGUARD_REGION": REGION}), environ={})

    assert ConfigResourceType.applies(probe)
    assert ConfigResourceType.applies(dataclasses.replace(probe, settings=bare))
    assert not ConfigResourceType.applies(
        dataclasses.replace(probe, settings=bare, template=Template.model_validate(_no_rules()))
    )


def _no_rules() -> dict:
    data = yaml.safe_load((ROOT / "template.yaml").read_text())
    data.pop("config_rules", None)
    return data


# -- config-resource-type ------------------------------------------------------------------


def _providers(cloud: FakeCloud, providers: list[dict]) -> None:
    cloud.others["config"].providers = providers


def test_config_fails_when_it_lists_no_ims_service(cloud):
    _providers(cloud, [{"provider": "ecs", "resource_types": [{"name": "cloudservers"}]}])

    status, reason, fix = doctor(cloud)["config-resource-type"]

    assert status == "fail"
    assert "no ims service" in reason
    assert "IMSGUARD_CONFIG_RULES" in fix


def test_config_fails_naming_the_types_it_lists_when_the_rules_type_is_not_among_them(cloud):
    _providers(cloud, [{"provider": "ims", "resource_types": [{"name": "private_image"}]}])

    status, reason, fix = doctor(cloud)["config-resource-type"]

    assert status == "fail"
    assert "Config lists no ims/images" in reason and "private_image" in reason
    assert "resource_type" in fix


def test_config_checks_the_type_each_rule_names(tmp_path):
    rule = {**RULE, "resource_type": "private_image"}
    template = load_template(write_template(tmp_path, SINKS, [rule]))

    with fake_cloud(REGION, template, list(SINK_CHECKS)) as cloud:
        assert doctor(cloud)["config-resource-type"][0] == "ok"  # the fake lists it
        images = {"provider": "ims", "resource_types": [{"name": "images"}]}
        _providers(cloud, [images])

        status, reason, _ = doctor(cloud)["config-resource-type"]

    assert status == "fail"
    assert "Config lists no ims/private_image (its ims types: images)" in reason


def test_config_reads_every_page_of_the_providers_list(cloud, monkeypatch):
    monkeypatch.setattr("imsguard_tools.deploy.PROVIDERS_PAGE", 1)
    other = {"provider": "ecs", "resource_types": [{"name": "cloudservers"}]}
    ims = {"provider": "ims", "resource_types": [{"name": "images", "track": "tracked"}]}
    _providers(cloud, [other, other, ims])

    assert doctor(cloud)["config-resource-type"][0] == "ok"
    assert len(cloud.others["config"].calls) == 3


def test_config_cannot_tell_whether_an_untracked_type_is_recorded(cloud):
    _providers(
        cloud, [{"provider": "ims", "resource_types": [{"name": "images", "track": "untracked"}]}]
    )

    status, reason, _ = doctor(cloud)["config-resource-type"]

    assert status == "unknown"
    assert "untracked" in reason and "Resource Recorder" in reason


def test_config_unknown_without_the_account_id(cloud):
    del cloud.endpoints["IMSGUARD_DOMAIN_ID"]

    status, reason, _ = doctor(cloud)["config-resource-type"]

    assert status == "unknown"
    assert "IMSGUARD_DOMAIN_ID" in reason
    assert cloud.others["config"].calls == []


def test_config_unknown_when_unreachable_or_unavailable(cloud):
    cloud.endpoints["IMSGUARD_CONFIG_ENDPOINT"] = "https://rms.unreachable.example"
    status, reason, _ = doctor(cloud)["config-resource-type"]
    assert status == "unknown" and "could not be reached" in reason

    del cloud.endpoints["IMSGUARD_CONFIG_ENDPOINT"]
    cloud.others["config"].refuse("GET", r"/providers$", 503, "RMS.00010500")
    status, reason, _ = doctor(cloud)["config-resource-type"]
    assert status == "unknown" and "503" in reason


# -- smn-topic -----------------------------------------------------------------------------


def test_smn_fails_naming_a_route_topic_that_does_not_exist(cloud):
    cloud.others["smn"].topics.discard(WEB_TOPIC)

    status, reason, fix = doctor(cloud)["smn-topic"]

    assert status == "fail"
    assert WEB_TOPIC in reason and TOPIC not in reason
    assert "IMSGUARD_NOTIFY_ROUTES" in fix


def test_smn_refused_names_the_read_action_and_leaves_publish_unconfirmed(cloud):
    cloud.others["smn"].refuse("GET", r"/attributes$", 403, "SMN.00011403")

    status, reason, fix = doctor(cloud)["smn-topic"]

    assert status == "fail"
    assert "403" in reason and "(and 1 more topic(s))" in reason
    assert "smn:topic:listAttributes" in fix
    assert "smn:topic:publish" in fix and "unconfirmed" in fix


def test_smn_wrong_credentials_are_not_a_missing_permission(cloud):
    cloud.others["smn"].project_id = "f" * 32  # the fake takes no other project's signature

    status, reason, fix = doctor(cloud)["smn-topic"]

    assert status == "fail"
    assert "did not accept the credentials" in reason and "HUAWEICLOUD_SDK_AK" in fix


def test_smn_unknown_when_unreachable(cloud):
    cloud.endpoints["IMSGUARD_SMN_ENDPOINT"] = "https://smn.unreachable.example"

    status, reason, _ = doctor(cloud)["smn-topic"]

    assert status == "unknown"
    assert "could not be reached" in reason and "smn:topic:publish" in reason


def test_smn_unknown_when_it_never_answers_within_the_deadline(cloud):
    cloud.others["smn"].never_answer(SystemClock(), "GET")
    started = time.monotonic()

    status, reason, _ = doctor(cloud, deadline=1.5)["smn-topic"]

    assert time.monotonic() - started < 3.0
    assert status == "unknown" and reason


# -- ces-namespace -------------------------------------------------------------------------


def test_ces_ok_with_no_metrics_yet_and_with_some(cloud):
    ces = cloud.others["ces"]
    assert doctor(cloud)["ces-namespace"][0] == "ok"  # before the first post: none listed
    ces.points.append(
        {
            "metric": {
                "namespace": "IMSGUARD.Images",
                "metric_name": "violations",
                "dimensions": [{"name": "project", "value": PROJECT_ID}],
            },
            "unit": "count",
        }
    )

    assert doctor(cloud)["ces-namespace"][0] == "ok"
    asked = [c.query for c in ces.calls]
    assert asked == [{"namespace": "IMSGUARD.Images", "limit": "1"}] * 2


def test_fake_ces_lists_the_metrics_of_one_namespace(cloud):
    from huaweicloudsdkces.v1 import CesClient, ListMetricsRequest

    from imsguard.sinks.sdk import build_client

    ces = cloud.others["ces"]
    for namespace in ("IMSGUARD.Images", "OTHER.Things"):
        dimensions = [{"name": "project", "value": PROJECT_ID}]
        metric = {"namespace": namespace, "metric_name": "errors", "dimensions": dimensions}
        ces.points += [{"metric": metric, "unit": "count"}] * 2
    client = build_client(
        CesClient, None, REGION, ces.endpoint, PROJECT_ID, CREDENTIALS, (5.0, 5.0)
    )

    listed = client.list_metrics(ListMetricsRequest(namespace="IMSGUARD.Images")).to_json_object()

    assert [m["namespace"] for m in listed["metrics"]] == ["IMSGUARD.Images"]
    assert listed["meta_data"]["total"] == 1


def test_ces_refused_names_the_action_and_leaves_posting_unconfirmed(cloud):
    CesNamespace.refuse(cloud)

    status, reason, fix = doctor(cloud)["ces-namespace"]

    assert status == "fail"
    assert "403" in reason
    assert "ces:metrics:list" in fix
    assert "ces:metricData:create" in fix and "unconfirmed" in fix


@pytest.mark.parametrize("how", ["unreachable", "unavailable"])
def test_ces_unknown_says_only_a_post_would_tell(cloud, how):
    if how == "unreachable":
        cloud.endpoints["IMSGUARD_CES_ENDPOINT"] = "https://ces.unreachable.example"
    else:
        cloud.others["ces"].refuse("GET", r"/metrics$", 503, "ces.0503")

    status, reason, _ = doctor(cloud)["ces-namespace"]

    assert status == "unknown"
    assert "only a write would prove it" in reason and "ces:metricData:create" in reason


def test_ces_fails_on_an_answer_that_is_neither_refusal_nor_outage(cloud):
    cloud.others["ces"].refuse("GET", r"/metrics$", 404, "APIGW.0101")

    status, reason, fix = doctor(cloud)["ces-namespace"]

    assert status == "fail" and "404" in reason and "endpoint" in fix


# -- obs-bucket ------------------------------------------------------------------------------


def test_obs_fails_when_the_bucket_does_not_exist(cloud):
    cloud.obs.buckets.discard(BUCKET)

    status, reason, fix = doctor(cloud)["obs-bucket"]

    assert status == "fail"
    assert f"no bucket {BUCKET}" in reason and "404" in reason
    assert "create it" in fix and "IMSGUARD_REPORT_BUCKET" in fix


def test_obs_refused_names_head_bucket_and_leaves_put_object_unconfirmed(cloud):
    ObsBucket.refuse(cloud)

    status, reason, fix = doctor(cloud)["obs-bucket"]

    assert status == "fail"
    assert "403" in reason
    assert "obs:bucket:HeadBucket" in fix
    assert "obs:object:PutObject" in fix and "unconfirmed here" in fix
    assert "OBS console" in fix


def test_obs_unknown_when_the_connection_is_refused(cloud, closed_port):
    cloud.endpoints["IMSGUARD_OBS_ENDPOINT"] = closed_port

    status, reason, _ = doctor(cloud)["obs-bucket"]

    assert status == "unknown"
    assert "could not be reached" in reason and "obs:object:PutObject" in reason


def test_obs_unknown_when_it_never_answers_within_the_deadline(cloud, silent_endpoint):
    cloud.endpoints["IMSGUARD_OBS_ENDPOINT"] = silent_endpoint
    started = time.monotonic()

    status, reason, _ = doctor(cloud, deadline=1.5)["obs-bucket"]

    assert time.monotonic() - started < 3.0
    assert status == "unknown"
    assert "could not be reached" in reason  # its own timeout, within the deadline


def test_obs_unknown_when_throttled(cloud):
    cloud.obs.refuse("HEAD", r"^/[^/]+/$", 503)

    status, reason, _ = doctor(cloud)["obs-bucket"]

    assert status == "unknown" and "503" in reason


def test_fake_obs_heads_a_bucket_and_refuses_on_request(cloud, closed_port):
    from imsguard.sinks.obs import obs_client

    client = obs_client(cloud.obs_endpoint, CREDENTIALS, 5)
    try:
        assert client.headBucket(BUCKET).status == 200
        assert client.headBucket("no-such-bucket").status == 404
        cloud.obs.refuse("HEAD", r"^/team-reports/$")
        assert client.headBucket(BUCKET).status == 403
        assert client.headBucket("imsguard-reports").status == 200
    finally:
        client.close()
