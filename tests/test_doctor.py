"""imsguard doctor: read-only checks with one deadline, through the real SDKs against the
fakes (the template deployed into the fake FunctionGraph); and the function's own self
check (IMSGUARD_SELF_CHECK)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import SECRETS, modules_after_an_event
from imsguard import app, selfcheck
from imsguard_tools import doctor
from imsguard_tools.bundled import TEMPLATE
from imsguard_tools.cli import main
from imsguard_tools.doctor_fake import CREDENTIALS, PROJECT_ID, fake_cloud
from imsguard_tools.local_context import LocalContext
from imsguard_tools.template import load_template
from imsguard_tools.testing import FakeIms

ROOT = Path(__file__).resolve().parent.parent
INSIDE_AND_FUNCTION = (
    "ims-list",
    "ims-job-api",
    "uefi-os-list",
    "function",
    "cts-trigger",
    "timer-trigger",
    "async-config",
)


def doctor_json(capsys, *args: str) -> tuple[int, list[dict]]:
    code = main(["doctor", *args, "--output", "json"])
    return code, json.loads(capsys.readouterr().out)["checks"]


def by_name(checks: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in checks}


def test_every_check_is_ok_against_the_fakes_with_exactly_the_documented_keys(capsys):
    code, checks = doctor_json(capsys, "--fake")

    assert code == 0
    assert {"credentials", *INSIDE_AND_FUNCTION} <= set(by_name(checks))
    for check in checks:
        assert set(check) == {"name", "status", "reason", "fix"}
        assert check["status"] == "ok", check


@pytest.mark.parametrize("name", INSIDE_AND_FUNCTION)
def test_a_refused_call_fails_its_check_with_the_reason_and_the_fix(capsys, name):
    code, checks = doctor_json(capsys, "--fake", "--refuse", name)

    assert code == 1
    failed = by_name(checks)[name]
    assert failed["status"] == "fail" and "refused" in failed["reason"] and failed["fix"]
    assert "403" in failed["reason"]
    assert all(c["reason"] for c in checks if c["status"] != "ok")


def test_the_text_says_each_check_and_the_fix(capsys):
    assert main(["doctor", "--fake", "--refuse", "function"]) == 1

    out = capsys.readouterr().out
    assert "ok      ims-list" in out
    assert "fail    function: FunctionGraph refused" in out
    assert "fix: allow functiongraph:function:getConfig" in out
    assert "1 failed" in out


def test_no_check_writes_anything():
    template = load_template(TEMPLATE)
    wanted = doctor.checks()
    with fake_cloud("ap-southeast-1", template, wanted) as cloud:
        probe = doctor.probe_for(
            template, "ap-southeast-1", 30, CREDENTIALS, PROJECT_ID, cloud.endpoints
        )
        results = doctor.run_checks(probe, wanted)
        assert cloud.writes() == []
        assert cloud.ims.reads  # it did read
    assert {r.status for r in results} == {"ok"}


def probe_of(cloud, template, deadline: float = 30, **settings: str) -> doctor.Probe:
    return doctor.probe_for(
        template, cloud.region, deadline, CREDENTIALS, PROJECT_ID, {**cloud.endpoints, **settings}
    )


def results_of(probe) -> dict[str, selfcheck.CheckResult]:
    return {r.name: r for r in doctor.run_checks(probe, doctor.checks())}


def test_a_function_that_differs_from_the_template_names_each_difference():
    template = load_template(TEMPLATE)
    with fake_cloud("ap-southeast-1", template, doctor.checks()) as cloud:
        (function,) = cloud.ims.functions.values()
        function.update(memory_size=512, timeout=30)
        cloud.ims.function_triggers[next(iter(cloud.ims.function_triggers))][:] = []
        found = results_of(probe_of(cloud, template))

    assert found["function"].status == "fail"
    assert "memory_size 512" in found["function"].reason
    assert "timeout 30" in found["function"].reason
    assert found["function"].fix.startswith("run imsguard deploy")
    assert found["cts-trigger"].status == "fail" and "create" in found["cts-trigger"].reason
    assert found["timer-trigger"].status == "fail"


def test_no_function_at_all_is_a_failure_that_says_deploy():
    with fake_cloud("ap-southeast-1", None, doctor.checks()) as cloud:
        template = load_template(TEMPLATE)
        found = results_of(probe_of(cloud, template))

    assert found["function"].status == "fail" and "no function" in found["function"].reason
    assert "imsguard deploy" in found["function"].fix


def test_uefi_lists_that_disagree_are_listed_and_fixed_by_following_ims():
    template = load_template(TEMPLATE)
    template.function.settings["IMSGUARD_UEFI_FROM_IMS"] = "false"  # the built-in table
    following = load_template(TEMPLATE)  # the bundled template follows IMS's list
    with fake_cloud("ap-southeast-1", template, doctor.checks()) as cloud:
        cloud.ims.uefi_os_versions.append(
            {"platform": "Ubuntu", "os_version": "Ubuntu 26.04 server 64bit", "os_bit": "64"}
        )
        cloud.ims.add_image({"name": "old-centos", "__os_version": "CentOS 7.6 64bit"})
        found = results_of(probe_of(cloud, template))
        followed = results_of(probe_of(cloud, following))

    uefi = found["uefi-os-list"]
    assert uefi.status == "fail"
    assert "ubuntu 26.04 server 64bit" in uefi.reason  # IMS lists it, the table does not
    assert "centos 7.6 64bit" in uefi.reason  # the table calls it UEFI, IMS does not here
    assert "IMSGUARD_UEFI_FROM_IMS=true" in uefi.fix
    assert followed["uefi-os-list"].status == "ok"
    assert "follows IMS" in followed["uefi-os-list"].reason


def test_the_job_api_must_answer_not_found_for_an_unknown_job():
    template = load_template(TEMPLATE)
    with fake_cloud("ap-southeast-1", template, doctor.checks()) as cloud:
        cloud.ims.refuse("GET", r"^/v1/cloudimages/job/", 404, "APIGW.0101")  # unknown API
        cloud.ims.refuse("GET", r"/jobs/", 403, "IMS.0003")  # and the old one refused
        found = results_of(probe_of(cloud, template))

    assert found["ims-job-api"].status == "fail"
    assert "refused" in found["ims-job-api"].reason


def test_without_credentials_every_check_says_why_and_nothing_is_called():
    template = load_template(TEMPLATE)
    with fake_cloud("ap-southeast-1", template, doctor.checks()) as cloud:
        probe = doctor.probe_for(template, "ap-southeast-1", 30, None, None, cloud.endpoints)
        found = results_of(probe)
        assert cloud.ims.calls == []

    assert found["credentials"].status == "fail"
    assert "HUAWEICLOUD_SDK_AK" in found["credentials"].reason
    others = [r for name, r in found.items() if name not in ("credentials", "settings")]
    assert {r.status for r in others} == {"unknown"}
    assert all("no credentials" in r.reason for r in others)


def loopback_server(answer) -> tuple[str, callable]:
    """A loopback HTTP endpoint whose every connection ``answer(connection, stop)`` serves;
    its URL, and a function that stops it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection = server.accept()[0]
            except OSError:
                continue
            held.append(connection)
            threading.Thread(target=answer, args=(connection, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()

    return f"http://127.0.0.1:{server.getsockname()[1]}", close


def never_answer(connection: socket.socket, stop: threading.Event) -> None:
    stop.wait()


def trickle(connection: socket.socket, stop: threading.Event) -> None:
    """Headers at once, then the body a byte a second: each read is quick, the answer never
    ends (what a per-read timeout alone does not stop)."""
    try:
        connection.recv(65536)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        while not stop.wait(1.0):
            connection.sendall(b" ")
    except OSError:
        pass


@pytest.fixture(params=[never_answer, trickle], ids=["silent", "trickling"])
def slow_endpoint(request):
    url, close = loopback_server(request.param)
    yield url
    close()


def test_the_command_ends_within_its_deadline_when_no_endpoint_answers(slow_endpoint):
    """A new process, as a user runs it: every endpoint silent or trickling, a 4 s deadline;
    the process itself ends soon after (no thread left to wait for)."""
    endpoints = {
        key: slow_endpoint
        for key in (
            "IMSGUARD_IMS_ENDPOINT",
            "IMSGUARD_FGS_ENDPOINT",
            "IMSGUARD_CONFIG_ENDPOINT",
            "IMSGUARD_SMN_ENDPOINT",
            "IMSGUARD_CES_ENDPOINT",
            "IMSGUARD_OBS_ENDPOINT",
            "IMSGUARD_CTS_ENDPOINT",
            "IMSGUARD_IAM_ENDPOINT",
        )
    }
    env = {
        "PATH": "/usr/bin:/bin",
        "HUAWEICLOUD_SDK_AK": "AK" * 10,
        "HUAWEICLOUD_SDK_SK": "SK" * 20,
        "IMSGUARD_PROJECT_ID": PROJECT_ID,
        "IMSGUARD_DOMAIN_ID": "0" * 32,
        **endpoints,
    }
    began = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "imsguard_tools.cli",
            "doctor",
            "--deadline",
            "4",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": f"{ROOT / 'function'}:{ROOT / 'tools'}"},
        timeout=60,
        check=False,
    )
    took = time.monotonic() - began

    assert took < 10, took  # the deadline and the interpreter's start
    assert "Traceback" not in done.stderr
    checks = json.loads(done.stdout)["checks"]
    assert done.returncode in (0, 1)
    for check in checks:
        if check["name"] not in ("credentials", "settings"):
            assert check["status"] in ("fail", "unknown") and check["reason"], check


def test_bad_options_are_refused_before_any_call(capsys):
    assert main(["doctor", "--refuse", "ims-list"]) == 2  # --refuse needs --fake
    assert main(["doctor", "--fake", "--refuse", "no-such-check"]) == 2
    assert main(["doctor", "--deadline", "0"]) == 2
    assert main(["doctor", "--template", "/no/such/template.yaml"]) == 2


# -- the function's own self check ---------------------------------------------------------


@pytest.fixture
def fresh_self_check(monkeypatch):
    monkeypatch.setattr(selfcheck, "_done", threading.Event())


def test_the_function_checks_itself_once_per_container_and_logs_one_line(fresh_self_check, capsys):
    settings = {"IMSGUARD_SELF_CHECK": "true", "IMSGUARD_UEFI_FROM_IMS": "true"}
    context = LocalContext(settings, *SECRETS)
    event = json.loads((ROOT / "tests/events/cts_create_image.json").read_text())
    with FakeIms.seeded():
        app.handler(event, context)
        app.handler(event, context)

    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    checks = [line for line in lines if line["message"] == "self check"]
    assert len(checks) == 1
    assert {c["name"]: c["status"] for c in checks[0]["checks"]} == {
        "ims-list": "ok",
        "ims-job-api": "ok",
        "uefi-os-list": "ok",
    }


def test_a_failing_self_check_is_an_error_line_that_names_the_fix(fresh_self_check, capsys):
    context = LocalContext({"IMSGUARD_SELF_CHECK": "true"}, *SECRETS)
    event = json.loads((ROOT / "tests/events/cts_create_image.json").read_text())
    with FakeIms.seeded() as fake:
        fake.refuse("GET", r"^/v1/cloudimages/os_version", 403, "IMS.0003")
        answer = app.handler(event, context)

    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    errors = [line for line in lines if line["message"] == "self check failed"]
    assert [e["check"] for e in errors] == ["uefi-os-list"]
    assert "ims:images:list" in errors[0]["fix"]
    assert answer["results"]  # the event itself was still handled


def test_an_ordinary_event_does_not_load_the_self_check():
    assert "imsguard.selfcheck" not in modules_after_an_event()
    assert "imsguard.selfcheck" in modules_after_an_event(IMSGUARD_SELF_CHECK="true")


def test_a_region_no_sdk_knows_fails_the_credentials_check_and_nothing_is_called():
    template = load_template(TEMPLATE)
    with fake_cloud("ap-southeast-1", template, doctor.checks()) as cloud:
        endpoints = {k: v for k, v in cloud.endpoints.items() if k != "IMSGUARD_IMS_ENDPOINT"}
        probe = doctor.probe_for(template, "xx-nowhere-9", 30, CREDENTIALS, PROJECT_ID, endpoints)
        found = results_of(probe)
        assert cloud.ims.calls == []

    assert found["credentials"].status == "fail" and "xx-nowhere-9" in found["credentials"].reason
    assert "ap-southeast-1" in found["credentials"].fix
    assert found["ims-list"].status == "unknown" and "xx-nowhere-9" in found["ims-list"].reason


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("ims-list", r"^/v2/cloudimages$"),
        ("ims-job-api", r"/job"),
        ("uefi-os-list", r"^/v1/cloudimages/os_version"),
        ("function", r"/config$"),
        ("cts-trigger", r"/fgs/triggers/"),
        ("async-config", r"/async-invoke-config$"),
    ],
)
def test_a_service_that_keeps_failing_leaves_its_check_unknown(name, path):
    template = load_template(TEMPLATE)
    with fake_cloud("ap-southeast-1", template, doctor.checks()) as cloud:
        cloud.ims.refuse("GET", path, 503, "SYS.0503")
        found = results_of(probe_of(cloud, template, deadline=20))

    assert found[name].status == "unknown", found[name]
    assert "503" in found[name].reason


def test_refusing_a_check_that_does_not_apply_is_refused(capsys):
    # the bundled template reports to no SMN topic: the check is not run, so not refused
    assert main(["doctor", "--fake", "--refuse", "smn-topic"]) == 2
    assert "does not apply" in capsys.readouterr().err


def test_settings_the_function_would_refuse_fail_and_nothing_else_is_checked():
    template = load_template(TEMPLATE)
    template.function.settings["IMSGUARD_SWEEP_RATE"] = "fast"
    with fake_cloud("ap-southeast-1", template, doctor.checks()) as cloud:
        found = results_of(probe_of(cloud, template))
        assert cloud.ims.calls == []

    assert found["settings"].status == "fail" and "IMSGUARD_SWEEP_RATE" in found["settings"].reason
    assert found["ims-list"].status == "unknown" and "settings" in found["ims-list"].reason


def test_a_region_without_show_job_progress_is_ok_through_show_job_and_keeps_the_gateway():
    template = load_template(TEMPLATE)
    with fake_cloud("ap-southeast-1", template, doctor.checks()) as cloud:
        cloud.ims.job_progress_api = False  # the gateway answers 404 APIGW.0101
        probe = probe_of(cloud, template)
        found = results_of(probe)
        gateway = probe.gateway()

    assert found["ims-job-api"].status == "ok"
    assert "deprecated ShowJob" in found["ims-job-api"].reason
    assert gateway.job_progress_missing is False  # the made-up id changed nothing


def test_ims_listing_more_uefi_versions_than_the_table_is_ok_and_said():
    template = load_template(TEMPLATE)
    template.function.settings["IMSGUARD_UEFI_FROM_IMS"] = "false"
    with fake_cloud("ap-southeast-1", template, doctor.checks()) as cloud:
        cloud.ims.uefi_os_versions.append(
            {"platform": "Ubuntu", "os_version": "Ubuntu 26.04 server 64bit", "os_bit": "64"}
        )
        found = results_of(probe_of(cloud, template))

    assert found["uefi-os-list"].status == "ok"
    assert "ubuntu 26.04 server 64bit" in found["uefi-os-list"].reason


def test_the_text_names_what_it_checked_and_the_regions_it_did_not():
    class Function:
        name = "imsguard"

    class Template:
        function = Function()
        regions = ["ap-southeast-1", "eu-west-101", "cn-north-4"]

    line = doctor.header(Template(), "eu-west-101", fake=False)

    assert line.startswith("imsguard doctor: function imsguard in eu-west-101")
    assert "other regions (ap-southeast-1, cn-north-4): run with --region each" in line


def declared(api: str) -> tuple[str, re.Pattern[str]]:
    """A Permission's API ("GET /v2/{project_id}/..."), as the method and a path pattern."""
    method, path = api.split(" (")[0].split(" ", 1)
    parts = re.split(r"\{[^}]+\}", path)
    return method, re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


def test_each_check_makes_only_the_calls_it_declares(tmp_path):
    """``needs`` is what a user grants to whoever runs doctor: every call a check makes,
    against the fakes with every sink on, is one it declares."""
    from test_doctor_sinks import RULE, SINKS, write_template

    template = load_template(write_template(tmp_path, SINKS, [RULE]))
    for check in doctor.checks():
        with fake_cloud("ap-southeast-1", template, doctor.checks()) as cloud:
            probe = probe_of(cloud, template)
            [result] = doctor.run_checks(probe, [check])
            fakes = [cloud.ims, *cloud.others.values()]
            calls = [(c.method, c.path) for f in fakes for c in getattr(f, "calls", [])]
            calls += [
                (c.method, f"/{c.bucket}" + (f"/{c.key}" if c.key else "")) for c in cloud.obs.calls
            ]
        allowed = [declared(p.api) for p in check.needs]
        undeclared = [c for c in calls if not any(m == c[0] and p.match(c[1]) for m, p in allowed)]
        assert result.status == "ok", result
        assert undeclared == [], (check.name, undeclared)
        assert bool(calls) == bool(check.needs), check.name  # a check that calls declares


def test_the_self_check_takes_at_most_its_own_time_from_the_first_event(fresh_self_check):
    """IMS throttling (503, Retry-After 5 s): the self check stops retrying at its own cap
    (SELF_CHECK_S), not at the event's 600 s, and says it could not tell."""
    from imsguard.clock import Budget
    from imsguard.ims import gateway_for
    from imsguard.settings import load_settings
    from imsguard_tools.testing import FakeClock

    clock = FakeClock()
    budget = Budget(clock, clock.monotonic() + 600, clock.monotonic() + 610)
    with FakeIms.seeded() as fake:
        fake.fail_next("GET", 503, "IMG.0503", times=4, retry_after=5)  # ims-list's tries
        gateway = gateway_for("ap-southeast-1", None, fake.project_id, CREDENTIALS)
        settings = load_settings(LocalContext({}))
        results = {r.name: r for r in selfcheck.log_once(gateway, settings, budget)}
        fake.reset_calls()

    assert results["ims-list"].status == "unknown"
    assert "could not tell" in results["ims-list"].reason
    assert clock.elapsed <= 10  # without the cap: 15 s of retries


def test_the_readme_lists_the_actions_whoever_runs_doctor_needs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Whoever runs doctor needs") : readme.index("A refused one")]
    named = set(re.findall(r"`([a-z]+:[A-Za-z]+:[A-Za-z]+)`", section))
    needs = {p.action or p.unconfirmed for c in doctor.checks() for p in c.needs}
    assert named == needs - {None}
