"""Reports in OBS: through the handler and the real OBS SDK (``esdk-obs-python``) against the
fake OBS on a loopback server, beside the fake IMS."""

from __future__ import annotations

import csv
import io
import json
import ssl

import pytest

from helpers import SECRETS, run_fresh, use_policy
from imsguard.app import _run, handler
from imsguard.context import Credentials
from imsguard.settings import SettingsError, load_settings
from imsguard.sinks.obs import obs_client
from imsguard.sinks.report_files import CSV_HEADER, csv_cell, report_csv
from imsguard_tools.local_context import LocalContext
from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms, FakeObs

REGION = "ap-southeast-1"
BUCKET = "imsguard-reports"
DAY = "2026/01/01"  # the tests' fake clock
MULTIQUEUE = {"hw_vif_multiqueue_enabled": "true"}  # what the audit rule asks for
POLICY = """
version: 1
rules:
  - name: kebab-case-name
    kind: name
    pattern: '^[a-z0-9]+(-[a-z0-9]+)*$'
    fix: normalize
  - name: owner-tag
    kind: tags
    require: [team]
  - name: multiqueue
    kind: set
    mode: audit
    set: {hw_vif_multiqueue_enabled: "true"}
"""


@pytest.fixture
def clouds():
    """The fake IMS (on ``responses``) and the fake OBS (a loopback server) with its endpoint."""
    obs = FakeObs((BUCKET,), token=SECRETS[2])
    with FakeIms(project_id=SAMPLE_PROJECT_ID) as ims, obs.serve() as endpoint:
        yield ims, obs, endpoint
    ims.assert_injections_met()
    obs.assert_faults_met()


def reporting(clouds, tmp_path, request_id="req-0001", **extra):
    """A context with reports on, the test policy, and this request id."""
    _, _, endpoint = clouds
    ak, sk, token = SECRETS
    data = {"IMSGUARD_REPORT_BUCKET": BUCKET, "IMSGUARD_OBS_ENDPOINT": endpoint, **extra}
    context = LocalContext(data, ak, sk, token, request_id=request_id, **_timeout(extra))
    use_policy(context, tmp_path, POLICY)
    return context


def _timeout(extra):
    return {"timeout_ms": 2500} if extra.get("IMSGUARD_SAFETY_MARGIN_SECONDS") == "0" else {}


def fill(ims):
    """Three images: compliant but for audit, fixable, and one no rule can fix."""
    add = ims.add_image
    return {
        "ok": add({"name": "web-base", "tags": ["team=web"], **MULTIQUEUE})["id"],
        "fixable": add({"name": "Web_Base_2", "tags": ["team=web"]})["id"],
        "untagged": add({"name": "=HYPERLINK(1)", "tags": []})["id"],
    }


def keys(request_id="req-0001", hop=0):
    stem = f"imsguard/{DAY}/sweep-{request_id}-hop-{hop}"
    return [f"{stem}.json", f"{stem}.csv", "imsguard/latest.json"]


def test_a_sweep_writes_the_dated_json_and_csv_then_latest(clouds, tmp_path):
    ims, obs, _ = clouds
    fill(ims)

    report = handler({"action": "sweep"}, reporting(clouds, tmp_path))

    assert report["sinks"]["obs"] == {"written": keys(), "bucket": BUCKET}
    assert [call.key for call in obs.puts] == keys()  # in this order: latest.json last
    assert obs.keys() == sorted(keys())
    for call in obs.puts:
        assert call.headers["x-amz-security-token"] == SECRETS[2]  # path-style: v2 signing
        assert call.headers["authorization"].startswith(f"AWS {SECRETS[0]}:")
        assert call.status == 200
    assert obs.content_types[(BUCKET, keys()[0])] == "application/json"
    assert obs.content_types[(BUCKET, keys()[1])].startswith("text/csv")


def test_the_json_lists_every_image_with_verdicts_and_before_beyond_the_results_limit(
    clouds, tmp_path
):
    ims, obs, _ = clouds
    ids = fill(ims)
    context = reporting(clouds, tmp_path, IMSGUARD_RESULTS_LIMIT="1")

    report = handler({"action": "sweep"}, context)

    document = json.loads(obs.text(keys()[0]))
    assert len(report["results"]) == 1 and report["truncated"] is True
    assert {k: document[k] for k in ("sweep_id", "request_id", "region", "project_id", "hop")} == {
        "sweep_id": "req-0001",
        "request_id": "req-0001",
        "region": REGION,
        "project_id": SAMPLE_PROJECT_ID,
        "hop": 0,
    }
    assert document["generated_at"] == "2026-01-01T00:30:00Z"
    assert document["summary"] == report["summary"] and document["examined"] == 3
    images = {image["image_id"]: image for image in document["images"]}
    assert set(images) == set(ids.values())
    fixed = images[ids["fixable"]]
    assert fixed["outcome"] == "updated"
    assert fixed["before"] == {"name": "Web_Base_2"}
    assert fixed["operations"] == [{"op": "replace", "path": "/name", "value": "web-base-2"}]
    assert fixed["rules"] == [
        {"rule": "kebab-case-name", "verdict": "violation", "reason": fixed["rules"][0]["reason"],
         "fix": "fixed"},
        {"rule": "owner-tag", "verdict": "compliant", "reason": fixed["rules"][1]["reason"]},
        {"rule": "multiqueue", "verdict": "violation", "reason": fixed["rules"][2]["reason"],
         "mode": "audit", "fix": "would_fix"},
    ]  # fmt: skip
    untagged = images[ids["untagged"]]
    owner = next(rule for rule in untagged["rules"] if rule["rule"] == "owner-tag")
    assert owner["fix"] == "cannot_fix" and untagged["before"] == {"name": "=HYPERLINK(1)"}
    assert images[ids["ok"]]["before"] == {} and images[ids["ok"]]["outcome"] == "compliant"
    assert json.loads(obs.text("imsguard/latest.json")) == {  # one hop: the index lists it
        "imsguard": document["imsguard"],
        "kind": "sweep-index",
        "sweep_id": "req-0001",
        "generated_at": "2026-01-01T00:30:00Z",
        "region": REGION,
        "project_id": SAMPLE_PROJECT_ID,
        "hops": [keys()[0]],
    }


def test_the_csv_has_one_row_per_image_and_rule_and_quotes_formulas(clouds, tmp_path):
    ims, obs, _ = clouds
    ids = fill(ims)

    handler({"action": "sweep"}, reporting(clouds, tmp_path))

    rows = list(csv.reader(io.StringIO(obs.text(keys()[1]))))
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows[1:]) == 3 * 3  # three images, three rules each
    by_rule = {(row[0], row[3]): row for row in rows[1:]}
    assert by_rule[(ids["fixable"], "kebab-case-name")][2:6] == [
        "updated",
        "kebab-case-name",
        "violation",
        "fixed",
    ]
    untagged = by_rule[(ids["untagged"], "owner-tag")]
    assert untagged[1] == "'=HYPERLINK(1)"  # shown as text, never run as a formula
    assert untagged[5] == "cannot_fix"


def test_an_image_without_verdicts_gets_one_csv_row_and_formula_cells_are_quoted():
    images = [
        ("img-1", None, "error", "-internal error: boom", [], None, ()),
        ("img-2", "+x", "compliant", "ok", [], None, (("r", "compliant", "@fine", "enforce", ""),)),
    ]

    rows = list(csv.reader(io.StringIO(report_csv(images).getvalue().decode())))

    assert rows[1] == ["img-1", "", "error", "", "", "", "'-internal error: boom"]
    assert rows[2] == ["img-2", "'+x", "compliant", "r", "compliant", "", "'@fine"]
    assert [csv_cell(v) for v in ("=1", "a=1", "\tx", None, 5)] == ["'=1", "a=1", "'\tx", "", "5"]


def test_each_sweep_replaces_latest_json(clouds, tmp_path):
    ims, obs, _ = clouds
    fill(ims)
    handler({"action": "sweep", "dry_run": True}, reporting(clouds, tmp_path, "req-a"))
    first = obs.text("imsguard/latest.json")

    handler({"action": "sweep", "dry_run": True}, reporting(clouds, tmp_path, "req-b"))

    assert json.loads(first)["hops"] == [keys("req-a")[0]]
    assert json.loads(obs.text("imsguard/latest.json"))["hops"] == [keys("req-b")[0]]
    assert set(keys("req-a")[:2]) <= set(obs.keys())  # the dated ones stay


@pytest.mark.parametrize(
    ("fault", "attempts", "says"),
    [
        ({"status": 403}, 1, "HTTP 403 AccessDenied"),
        ({"status": 500, "times": 3}, 3, "HTTP 500 InternalError"),
        ({"delay": 1.6, "times": 3}, 3, "could not be reached"),
        ({"status": 503, "times": 3}, 3, "HTTP 503 SlowDown"),
        ({"status": 400, "times": 3}, 3, "HTTP 400 RequestTimeout"),
    ],
    ids=["403", "500", "timeout", "503-slowdown", "400-request-timeout"],
)
def test_a_failing_write_changes_nothing_for_images_and_is_reported(
    clouds, tmp_path, caplog, fault, attempts, says
):
    ims, obs, _ = clouds
    fill(ims)
    context = reporting(clouds, tmp_path, IMSGUARD_SAFETY_MARGIN_SECONDS="0")
    baseline = handler({"action": "sweep", "dry_run": True}, context)
    obs.calls.clear()
    obs.fail_next(**fault)

    report = handler({"action": "sweep", "dry_run": True}, context)
    obs.settle(attempts)  # a delayed request is recorded when its late answer goes out

    assert report["results"] == baseline["results"] and report["summary"] == baseline["summary"]
    assert report["status"] == "ok" and ims.patches == []
    error = report["sinks"]["obs"]["error"]
    assert says in error and keys()[0] in error
    # 5xx and timeouts are retried, a refusal is not; the CSV waits for its JSON, and the
    # index is written all the same (an older sweep's must not pass for this one's)
    # (timeouts: the tries and the index share what time the invocation has left)
    if "delay" not in fault:
        assert len(obs.calls) == attempts + 1
        assert [c.key for c in obs.calls][-1] == "imsguard/latest.json"
    assert SECRETS[0] not in error and SECRETS[2] not in error


def test_a_failed_write_leaves_an_enforcing_sweeps_fixes_in_place(clouds, tmp_path):
    ims, obs, _ = clouds
    ids = fill(ims)
    obs.fail_next(500, times=3)

    report = handler({"action": "sweep"}, reporting(clouds, tmp_path))

    assert report["summary"] == {"compliant": 1, "updated": 2}
    assert ims.images[ids["fixable"]]["name"] == "web-base-2"
    assert "HTTP 500" in report["sinks"]["obs"]["error"]


def test_a_write_that_succeeds_on_a_retry_is_written(clouds, tmp_path):
    ims, obs, _ = clouds
    fill(ims)
    obs.fail_next(500)

    report = handler({"action": "sweep"}, reporting(clouds, tmp_path))

    assert report["sinks"]["obs"]["written"] == keys()
    assert [call.status for call in obs.calls] == [500, 200, 200, 200]


def test_an_event_writes_no_report(clouds, tmp_path):
    ims, obs, _ = clouds
    image = ims.add_image({"name": "Web_Base", "tags": ["team=web"]})["id"]

    report = handler({"image_id": image}, reporting(clouds, tmp_path))

    assert report["results"][0]["outcome"] == "updated"
    assert report["sinks"]["obs"] == {"skipped": "reports are written after sweeps only"}
    assert obs.calls == []


def test_a_sweep_keeps_the_examined_images_only_when_reports_are_on(clouds, tmp_path):
    ims, _, _ = clouds
    fill(ims)
    off = reporting(clouds, tmp_path)
    del off.user_data["IMSGUARD_REPORT_BUCKET"]

    assert _run({"action": "sweep", "dry_run": True}, off).examined_images is None
    kept = _run({"action": "sweep", "dry_run": True}, reporting(clouds, tmp_path))
    assert len(kept.examined_images) == 3
    assert all(isinstance(image, tuple) for image in kept.examined_images)


def test_secrets_never_reach_the_report_objects(clouds, tmp_path):
    ims, obs, _ = clouds
    ims.add_image({"name": f"box {SECRETS[1]}", "tags": []})  # renamed: the old name is kept

    report = handler({"action": "sweep"}, reporting(clouds, tmp_path))

    assert report["summary"] == {"updated": 1}
    for key in keys()[:2]:  # latest.json is an index: keys, no image
        assert SECRETS[1][:10] not in obs.text(key) and "***" in obs.text(key)


def test_without_a_bucket_nothing_loads_the_obs_sdk_and_an_event_never_does():
    """Sweeps without a bucket, and events with one, never import the OBS SDK (``obs``)."""
    code = (
        "import sys, imsguard.app\n"
        "from imsguard_tools.testing import FakeIms\n"
        "from imsguard_tools.local_context import LocalContext\n"
        "with FakeIms.seeded() as f:\n"
        "    imsguard.app.handler({'action': 'sweep'}, LocalContext(None, 'a'*8, 'b'*8))\n"
        "    on = LocalContext({'IMSGUARD_REPORT_BUCKET': 'imsguard-reports'}, 'a'*8, 'b'*8)\n"
        "    image = next(iter(f.images))\n"
        "    print(imsguard.app.handler({'image_id': image}, on)['sinks'])\n"
        "print(sorted(m for m in sys.modules if m == 'obs' or m.startswith(('obs.', 'Crypto'))))\n"
    )
    out = run_fresh(code, IMSGUARD_REGION=REGION)
    assert "'obs': {'skipped'" in out
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"IMSGUARD_REPORT_BUCKET": "ab"}, "3 to 63 characters"),
        ({"IMSGUARD_REPORT_BUCKET": "a" * 64}, "3 to 63 characters"),
        ({"IMSGUARD_REPORT_BUCKET": "Reports"}, "lowercase letters"),
        ({"IMSGUARD_REPORT_BUCKET": "my_reports"}, "lowercase letters"),
        ({"IMSGUARD_REPORT_BUCKET": "-reports"}, "starting and ending with a letter or digit"),
        ({"IMSGUARD_REPORT_BUCKET": "my..reports"}, r"no '\.\.'"),
        ({"IMSGUARD_REPORT_BUCKET": "my-.reports"}, r"no '\.\.', '\.-' or '-\.'"),
        ({"IMSGUARD_REPORT_BUCKET": "192.168.10.1"}, "must not be an IP address"),
        ({"IMSGUARD_REPORT_BUCKET": "my.reports"}, "no '.': .* wildcard certificate"),
        (
            {"IMSGUARD_OBS_ENDPOINT": "http://obs.ap-southeast-1.myhuaweicloud.com"},
            "http:// would send the security token in clear",
        ),
        ({"IMSGUARD_OBS_ENDPOINT": "http://10.0.0.8:8080"}, "only for a loopback address"),
        ({"IMSGUARD_REPORT_PREFIX": "/reports/"}, "starts with '/'"),
        ({"IMSGUARD_REPORT_PREFIX": "r" * 257}, "longer than 256 characters"),
        ({"IMSGUARD_REPORT_PREFIX": "a\nb/"}, "control character"),
        ({"IMSGUARD_OBS_ENDPOINT": "obs.example"}, "not an endpoint URL"),
    ],
)
def test_bad_report_settings_are_configuration_errors(clouds, data, message):
    ims, obs, _ = clouds
    ak, sk, token = SECRETS
    context = LocalContext(data, ak, sk, token)
    with pytest.raises(SettingsError, match=message):
        load_settings(context, {"IMSGUARD_REGION": REGION})

    report = handler({"action": "sweep"}, context)

    assert report["status"] == "error" and report["reason"].startswith("configuration:")
    assert ims.calls == [] and obs.calls == []


def test_report_settings_defaults_and_a_bucket_without_region_or_endpoint():
    on = {"IMSGUARD_REPORT_BUCKET": "my-reports-2026"}

    settings = load_settings(None, {**on, "IMSGUARD_REGION": REGION})

    assert settings.report_bucket == "my-reports-2026" and settings.report_prefix == "imsguard/"
    assert settings.obs_endpoint == f"https://obs.{REGION}.myhuaweicloud.com"
    assert load_settings(None, {"IMSGUARD_REGION": REGION}).obs_endpoint is None
    with pytest.raises(SettingsError, match="needs IMSGUARD_REGION or IMSGUARD_OBS_ENDPOINT"):
        load_settings(None, on)


def test_the_client_checks_tls_certificates_and_host_names():
    client = obs_client(f"https://obs.{REGION}.myhuaweicloud.com", Credentials("a", "b", "t"), 3)

    assert client.context.verify_mode == ssl.CERT_REQUIRED and client.context.check_hostname
    assert client.context.cert_store_stats()["x509_ca"] > 0  # certifi's CA bundle is loaded
    assert client.max_retry_count == 0 and client.timeout == 3


def test_the_agency_policy_gains_put_object_only_with_a_bucket():
    from imsguard_tools.iam import actions, all_permissions, needed

    base = set(actions(needed(all_permissions(), {})))
    with_bucket = set(actions(needed(all_permissions(), {"IMSGUARD_REPORT_BUCKET": BUCKET})))

    assert with_bucket - base == {"obs:object:PutObject"}
    assert "obs:object:PutObject" not in base
    for bucket in ("off", "false", "no"):  # bucket names, not switches
        named = set(actions(needed(all_permissions(), {"IMSGUARD_REPORT_BUCKET": bucket})))
        assert "obs:object:PutObject" in named


def test_imsguard_report_reads_what_a_sweep_wrote_to_obs(clouds, tmp_path, capsys, monkeypatch):
    """The sink's report, read back through obs:// with the real OBS SDK, gives the numbers
    the sweep itself reported: the sink's format and the report command agree."""
    from imsguard_tools.cli import main

    ims, obs, endpoint = clouds
    ids = fill(ims)
    sweep = handler({"action": "sweep"}, reporting(clouds, tmp_path))
    assert sweep["sinks"]["obs"]["written"]
    ak, sk, token = SECRETS
    for name, value in {
        "HUAWEICLOUD_SDK_AK": ak,
        "HUAWEICLOUD_SDK_SK": sk,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": token,
        "IMSGUARD_OBS_ENDPOINT": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()

    assert main(["report", f"obs://{BUCKET}/imsguard/latest.json", "--output", "json"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "sweep" and summary["complete"] is True
    assert summary["examined"] == sweep["examined"] == 3
    assert summary["outcomes"] == sweep["summary"]
    judged = {r["rule"]: (r["compliant"], r["violations"]) for r in summary["rules"]}
    assert judged == {
        rule: (counts.get("compliant", 0), counts.get("violation", 0))
        for rule, counts in sweep["rules"].items()
    }
    assert {(c["image_id"], c["attribute"], c["after"]) for c in summary["changes"]} == {
        (ids["fixable"], "name", "web-base-2"),
        (ids["untagged"], "name", "hyperlink-1"),
    }
    assert ids["untagged"] in {r["image_id"] for r in summary["needs_attention"]}
    gets = [c for c in obs.calls if c.method == "GET"]
    assert [c.key for c in gets] == ["imsguard/latest.json", keys()[0]]  # the index, its hop
    assert all(c.headers["x-amz-security-token"] == token for c in gets)
    assert summary["sweep_id"] == "req-0001" and summary["hops"] == 1


def test_imsguard_report_says_when_obs_has_no_such_report(clouds, capsys, monkeypatch):
    from imsguard_tools.cli import main

    _, _, endpoint = clouds
    ak, sk, token = SECRETS
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", ak)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", sk)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SECURITY_TOKEN", token)
    monkeypatch.setenv("IMSGUARD_OBS_ENDPOINT", endpoint)

    assert main(["report", f"obs://{BUCKET}/imsguard/nothing.json"]) == 2

    err = capsys.readouterr().err
    assert f"cannot read obs://{BUCKET}/imsguard/nothing.json: OBS answered 404" in err


def test_a_client_for_obs_itself_uses_virtual_hosted_addressing_and_obs_signing():
    """Against OBS's domain endpoint the SDK names the bucket in the host (the reason a
    dotted bucket name fails TLS) and signs the OBS way; only an IP endpoint (the tests'
    fake) gets path style and v2 signing. Read from the client: nothing is sent."""
    credentials = Credentials("a", "b", "t")
    client = obs_client(f"https://obs.{REGION}.myhuaweicloud.com", credentials, 3)
    local = obs_client("http://127.0.0.1:9000", credentials, 3)

    assert client.path_style is False and client.is_cname is False
    assert client.signature == "obs" and client.is_secure
    host = client.calling_format.get_server(client.server, BUCKET)
    assert host == f"{BUCKET}.obs.{REGION}.myhuaweicloud.com"
    assert local.path_style is True and local.signature == "v2"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost"])
def test_plain_http_is_accepted_for_a_loopback_obs_endpoint_only(host):
    on = {"IMSGUARD_REPORT_BUCKET": BUCKET, "IMSGUARD_REGION": REGION}

    settings = load_settings(None, {**on, "IMSGUARD_OBS_ENDPOINT": f"http://{host}:9000"})

    assert settings.obs_endpoint == f"http://{host}:9000"
    with pytest.raises(SettingsError, match="in clear"):
        load_settings(None, {**on, "IMSGUARD_OBS_ENDPOINT": "http://127.0.0.1.example.com"})


# -- a sweep in several hops -------------------------------------------------------------

URN = f"urn:fss:{REGION}:{SAMPLE_PROJECT_ID}:function:default:imsguard:latest"


def continuing(ims, context, clock):
    """Sweeps that continue themselves: pages of 2, each request 2 s of the hop's time."""
    context.user_data.update(
        IMSGUARD_SWEEP_PAGE_SIZE="2",
        IMSGUARD_SWEEP_CONTINUE="true",
        IMSGUARD_FUNCTION_URN=URN,
        IMSGUARD_FGS_ENDPOINT=ims.fgs_endpoint,
    )
    context.timeout_ms = 17_000
    ims.before_request = lambda method, path: setattr(clock, "elapsed", clock.elapsed + 2)


def run_hops(ims, context, clock, event):
    """The sweep's hops, each with its own request id, each the payload the previous one
    invoked (as FunctionGraph would deliver them)."""
    reports = []
    while True:
        context.request_id = f"req-{len(reports)}"
        clock.elapsed = 0
        reports.append(handler(event, context))
        if not reports[-1].get("continued", {}).get("started"):
            return reports
        event = ims.invocations[-1]["body"]


def test_a_sweep_in_hops_writes_each_hops_report_and_one_index_on_its_last_hop(
    clouds, tmp_path, clock
):
    ims, obs, _ = clouds
    fill(ims)
    for n in range(5):
        ims.add_image({"name": f"App_{n}", "tags": ["team=web"]})
    context = reporting(clouds, tmp_path)
    continuing(ims, context, clock)

    reports = run_hops(ims, context, clock, {"action": "sweep"})

    assert len(reports) >= 3
    hop_keys = [keys("req-0", hop)[0] for hop in range(len(reports))]  # hop 0 names the sweep
    for hop, report in enumerate(reports):
        written = report["sinks"]["obs"]["written"]
        assert written[:2] == keys("req-0", hop)[:2]
        assert ("imsguard/latest.json" in written) == (hop == len(reports) - 1)
        document = json.loads(obs.text(hop_keys[hop]))
        assert (document["sweep_id"], document["hop"]) == ("req-0", hop)
        assert document["request_id"] == f"req-{hop}"
        assert document["examined"] == report["examined"]
    assert [c.key for c in obs.puts].count("imsguard/latest.json") == 1
    index = json.loads(obs.text("imsguard/latest.json"))
    assert index["kind"] == "sweep-index" and index["sweep_id"] == "req-0"
    assert index["hops"] == hop_keys
    payloads = [call["body"] for call in ims.invocations]
    for hop, payload in enumerate(payloads, start=1):  # each hop hands on the keys so far
        assert payload["sweep_id"] == "req-0" and payload["report_keys"] == hop_keys[:hop]


def test_imsguard_report_merges_the_hops_an_index_lists(
    clouds, tmp_path, clock, capsys, monkeypatch
):
    from imsguard_tools.cli import main

    ims, _, endpoint = clouds
    ids = fill(ims)
    for n in range(5):
        ims.add_image({"name": f"App_{n}", "tags": ["team=web"]})
    context = reporting(clouds, tmp_path)
    continuing(ims, context, clock)
    reports = run_hops(ims, context, clock, {"action": "sweep"})
    for name, value in zip(
        ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN"),
        SECRETS,
        strict=True,
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IMSGUARD_OBS_ENDPOINT", endpoint)
    capsys.readouterr()
    latest = f"obs://{BUCKET}/imsguard/latest.json"

    assert main(["report", latest, "--output", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(["report", latest]) == 0
    text = capsys.readouterr().out

    # Patches deferred to a next hop (timing decides) make it examine images again: every
    # number counts each image once, and a note says how many examinations were repeats.
    repeats = sum(r["examined"] for r in reports) - 8
    assert summary["examined"] == 8 and repeats >= 0
    assert (summary["sweep_id"], summary["hops"]) == ("req-0", len(reports))
    assert summary["outcomes"] == {"compliant": 1, "updated": 7}
    owner = next(r for r in summary["rules"] if r["rule"] == "owner-tag")
    assert (owner["compliant"], owner["violations"]) == (7, 1)
    assert len(summary["changes"]) == 7  # every hop's changes
    assert [r["image_id"] for r in summary["needs_attention"]] == [ids["untagged"]]
    assert summary["complete"] is True
    assert summary["notes"] == (
        [
            f"{repeats} examination(s) were of an image an earlier hop had examined (a patch "
            "deferred to the next hop, or a listing that started again): every number counts "
            "each image once, as the last hop found it, or as the hop that changed it"
        ]
        if repeats
        else []
    )
    assert f"sweep req-0, {len(reports)} hops" in text and "went on" not in text


def test_a_hop_lists_in_its_index_only_keys_under_its_prefix(clouds, tmp_path):
    ims, obs, _ = clouds
    fill(ims)
    handed = [
        "elsewhere/2026/01/01/sweep-s-1-hop-0.json",
        "imsguard/2026/01/01/sweep-s-1-hop-1.json",
    ]
    event = {"action": "sweep", "hop": 2, "sweep_id": "s-1", "report_keys": handed}

    report = handler(event, reporting(clouds, tmp_path))

    assert report["sinks"]["obs"]["index_left_out"] == 1
    index = json.loads(obs.text("imsguard/latest.json"))
    assert index["hops"] == [handed[1], "imsguard/2026/01/01/sweep-s-1-hop-2.json"]


BAD_CARRIES = {
    "sweep id at hop 0": ({"sweep_id": "s-1"}, "only with a continuation"),
    "a sweep id with a slash": ({"hop": 1, "sweep_id": "a/b"}, "sweep_id"),
    "a long sweep id": ({"hop": 1, "sweep_id": "a" * 129}, "sweep_id"),
    "keys without sweep id": ({"hop": 1, "report_keys": ["x"]}, "come with the sweep_id"),
    "more keys than hops": (
        {"hop": 1, "sweep_id": "s", "report_keys": ["p/2026/01/01/sweep-s-hop-0.json"] * 2},
        "more report_keys than hops",
    ),
    "another sweep's key": (
        {"hop": 1, "sweep_id": "s", "report_keys": ["p/2026/01/01/sweep-t-hop-0.json"]},
        "report_keys[0] is not the key of this sweep's hop 0",
    ),
    "a key out of order": (
        {"hop": 2, "sweep_id": "s", "report_keys": ["p/2026/01/01/sweep-s-hop-0.json"]},
        "report_keys[0] is not the key of this sweep's hop 1",
    ),
    "a key with a control character": (
        {"hop": 1, "sweep_id": "s", "report_keys": ["p\n/2026/01/01/sweep-s-hop-0.json"]},
        "report_keys[0]",
    ),
    "a key that is not a report": (
        {"hop": 1, "sweep_id": "s", "report_keys": ["p/latest.json"]},
        "report_keys[0]",
    ),
    "too many keys": ({"hop": 1000, "sweep_id": "s", "report_keys": ["k"] * 1001}, "1000"),
}


@pytest.mark.parametrize("case", BAD_CARRIES, ids=list(BAD_CARRIES))
def test_a_continuations_report_keys_are_validated(case):
    from imsguard.event_models import SweepOptions, validated

    options, message = BAD_CARRIES[case]

    problem = validated(SweepOptions, options)

    assert isinstance(problem, str) and message in problem
    good = {"hop": 1, "sweep_id": "s", "report_keys": ["reports-2026/01/01/sweep-s-hop-0.json"]}
    assert isinstance(validated(SweepOptions, good), SweepOptions)


def test_a_reports_memory_peaks_near_its_largest_object_not_at_the_whole_document(monkeypatch):
    """3,000 images: each image is serialised on its own, the CSV only once the JSON is
    sent. The report's peak of Python allocations stays within 1.5 times its largest
    object (building the document as a dict, then the CSV beside it, took about 5 times)."""
    import tracemalloc
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from imsguard.results import SweepReport
    from imsguard.sinks.obs import ObsReports

    rules = ("kebab-case-name", "owner-tag", "multiqueue")
    images = [
        (
            f"{n:08d}-1149-471c-8190-ff6776174a00",
            f"Image_{n}",
            "updated",
            "1 attribute(s) changed",
            [{"op": "replace", "path": "/name", "value": f"image-{n}"}],
            {"name": f"Image_{n}"},
            tuple(
                (rule, "violation", f"'Image_{n}' breaks it", "enforce", "fixed") for rule in rules
            ),
        )
        for n in range(3000)
    ]
    report = SweepReport("timer", False, 3000, {"updated": 3000}, {}, [], [], [], [], True,
                         examined_images=images)  # fmt: skip
    sizes: list[int] = []
    monkeypatch.setattr(ObsReports, "put", lambda self, b, k, body, t, i: sizes.append(len(body)))
    utc = SimpleNamespace(utcnow=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    settings = SimpleNamespace(report_bucket=BUCKET, report_prefix="imsguard/", region=REGION)
    invocation = SimpleNamespace(settings=settings, clock=utc, project_id=SAMPLE_PROJECT_ID)

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ObsReports().finish(report, invocation, None)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()

    assert len(sizes) == 3 and max(sizes) > 1_000_000
    assert peak < 1.5 * max(sizes)


def test_a_sweep_rerun_by_hand_from_a_later_hop_goes_on_with_its_reports(clouds, tmp_path, clock):
    """A stopped sweep rerun with its continuation's marker and hop: the hops after it
    accept the report keys handed to them (they start at that hop, not at hop 0)."""
    ims, obs, _ = clouds
    fill(ims)
    for n in range(5):
        ims.add_image({"name": f"App_{n}", "tags": ["team=web"]})
    context = reporting(clouds, tmp_path)
    continuing(ims, context, clock)

    reports = run_hops(ims, context, clock, {"action": "sweep", "hop": 2})

    assert len(reports) >= 2 and all(r["status"] == "ok" for r in reports)
    index = json.loads(obs.text("imsguard/latest.json"))
    assert [k.rsplit("-hop-", 1)[1] for k in index["hops"]] == [
        f"{2 + n}.json" for n in range(len(reports))
    ]
    assert index["hops_not_listed"] == 2  # hops 0 and 1 are not this run's
