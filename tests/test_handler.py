"""End to end: events through the handler and the real SDK, against the fake IMS."""

from __future__ import annotations

import json

import pytest

from helpers import SECRETS, load_event, use_policy
from imsguard.app import InvalidPolicy, TransientFailure, handler
from imsguard_tools.local_context import LocalContext
from imsguard_tools.testing import EXAMPLE_IMAGE_ID

DEBIAN = "c5cd3163-9030-43cb-a7c2-640c237702c7"  # compliant with the default policy
WINDOWS = "d78cf625-30e2-4d93-b5b1-47be6bad25fc"  # "Win2019 Golden", bios
GOLD = "da07e77d-a235-4013-aad2-c480a949d1ff"  # public image of another project
DATA_DISK = "69a48be3-bf34-4e0d-88e4-b40b634d76d9"
QUEUED = "b5d22771-5091-4b3f-b87c-6c1a0bf6c1a4"
OTHER_PROJECT = "5faaa991-912d-4610-9937-3d3fed62adbe"
JOB_ID = "ff8080814dbd65d7014dbe0d84db0013"
SAMPLE_FIX = [
    {"op": "replace", "path": "/name", "value": "ims-test"},
    {"op": "replace", "path": "/hw_firmware_type", "value": "uefi"},
]


def test_created_image_gets_one_read_and_one_patch(fake, context):
    result = handler(load_event("cts_create_image.json"), context)

    assert [c.method for c in fake.calls] == ["GET", "PATCH"]
    assert fake.patches[0].body == SAMPLE_FIX
    assert fake.patches[0].path == f"/v2/cloudimages/{EXAMPLE_IMAGE_ID}"
    (entry,) = result["results"]
    assert entry["image_id"] == EXAMPLE_IMAGE_ID
    assert entry["outcome"] == "updated"
    assert entry["operations"] == SAMPLE_FIX
    image = fake.images[EXAMPLE_IMAGE_ID]
    assert (image["name"], image["hw_firmware_type"]) == ("ims-test", "uefi")
    assert image["hw_vif_multiqueue_enabled"] == "true"
    verdicts = {r["rule"]: (r["verdict"], r.get("fix")) for r in entry["rules"]}
    assert verdicts == {
        "kebab-case-name": ("violation", "fixed"),
        "uefi-boot": ("violation", "fixed"),
        "nic-multiqueue": ("compliant", None),
    }
    json.dumps(result)  # the contract: JSON-serialisable


def test_second_invocation_sends_no_patch(fake, context):
    handler(load_event("cts_create_image.json"), context)
    fake.reset_calls()

    result = handler(load_event("cts_create_image.json"), context)

    assert [c.method for c in fake.calls] == ["GET"]
    assert result["results"][0]["outcome"] == "compliant"
    assert result["results"][0]["operations"] == []


def test_own_update_trace_costs_one_read_and_no_patch(fake, context):
    handler(load_event("cts_create_image.json"), context)
    fake.reset_calls()

    result = handler(load_event("cts_update_image.json"), context)

    assert [c.method for c in fake.calls] == ["GET"]
    assert result["results"][0]["outcome"] == "compliant"


def test_update_trace_fixes_drift(fake, context):
    fake.images[DEBIAN]["hw_vif_multiqueue_enabled"] = "false"
    event = load_event("cts_update_image.json")
    event["cts"]["resource_id"] = DEBIAN
    event["cts"]["response"] = {"id": DEBIAN}

    result = handler(event, context)

    assert fake.patches[0].body == [
        {"op": "replace", "path": "/hw_vif_multiqueue_enabled", "value": "true"}
    ]
    assert result["results"][0]["outcome"] == "updated"


@pytest.mark.parametrize("where", ["env", "user_data"])
def test_dry_run_setting_sends_no_patch(fake, context, monkeypatch, where):
    if where == "env":
        monkeypatch.setenv("IMSGUARD_DRY_RUN", "true")
    else:
        context.user_data["IMSGUARD_DRY_RUN"] = "true"

    result = handler(load_event("cts_create_image.json"), context)

    assert fake.patches == []
    assert result["dry_run"] is True
    assert result["results"][0]["outcome"] == "would_update"
    assert result["results"][0]["rules"][0]["fix"] == "would_fix"
    assert result["results"][0]["operations"] == SAMPLE_FIX
    assert fake.images[EXAMPLE_IMAGE_ID]["name"] == "ims_test"


def test_user_data_wins_over_environment(fake, context, monkeypatch):
    monkeypatch.setenv("IMSGUARD_DRY_RUN", "true")
    context.user_data["IMSGUARD_DRY_RUN"] = "false"

    result = handler(load_event("direct_image.json"), context)

    assert result["results"][0]["outcome"] == "updated"


def test_direct_dry_run_event(fake, context):
    result = handler(load_event("direct_images_dry_run.json"), context)

    assert fake.patches == []
    outcomes = {r["image_id"]: r["outcome"] for r in result["results"]}
    assert outcomes == {EXAMPLE_IMAGE_ID: "would_update", DEBIAN: "compliant"}
    assert result["summary"] == {"compliant": 1, "would_update": 1}


def test_compliant_image_sends_no_patch(fake, context):
    result = handler({"image_id": DEBIAN}, context)

    assert [c.method for c in fake.calls] == ["GET"]
    assert result["results"][0]["outcome"] == "compliant"


@pytest.mark.parametrize(
    ("image_id", "outcome", "reason"),
    [
        (GOLD, "not_applicable", "only private images"),
        (OTHER_PROJECT, "not_applicable", "not visible to this project"),  # IMS hides it
        (DATA_DISK, "not_applicable", "data disk"),
        (QUEUED, "deferred", "queued"),
    ],
)
def test_images_out_of_scope_are_never_patched(fake, context, image_id, outcome, reason):
    result = handler({"image_id": image_id}, context)

    assert fake.patches == []
    (entry,) = result["results"]
    assert entry["outcome"] == outcome
    assert reason in entry["reason"]
    assert entry["operations"] == []


def test_public_image_not_patched_even_when_policy_matches_it(fake, context, tmp_path):
    use_policy(
        context,
        tmp_path,
        "version: 1\nrules:\n  - name: any-name\n    kind: name\n"
        "    match: {imagetype: [gold, private]}\n",
    )

    result = handler({"image_ids": [GOLD, OTHER_PROJECT]}, context)

    assert fake.patches == []
    assert {r["outcome"] for r in result["results"]} == {"not_applicable"}


def test_a_transient_read_failure_is_retried(fake, context, clock):
    fake.fail_next("GET", 503, "APIGW.0203", "Service unavailable")

    result = handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    assert result["results"][0]["outcome"] == "updated"
    assert [c.status for c in fake.calls] == [503, 200, 200]
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 0.5


def test_retry_after_is_honoured(fake, context, clock):
    fake.fail_next("GET", 429, "APIGW.0308", "throttled", retry_after=3)

    handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    assert clock.sleeps == [3.0]


def test_still_failing_after_retries_raises_for_functiongraph_to_retry(fake, context):
    fake.fail_next("GET", 503, "APIGW.0203", "Service unavailable", times=4)

    with pytest.raises(TransientFailure, match="1 image"):
        handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    assert [c.status for c in fake.calls] == [503] * 4 and fake.patches == []


def test_backoff_ceilings_grow_and_jitter_is_full(fake, context, clock, monkeypatch):
    from imsguard import ims

    monkeypatch.setattr(ims.random.Random, "uniform", lambda self, low, high: high)
    fake.fail_next("GET", 503, "APIGW.0203", "Service unavailable", times=3)

    handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_no_retry_wait_beyond_the_time_budget(fake, context, clock):
    context.timeout_ms = 20_000  # 10 s margin: 10 s to spend
    fake.fail_next("GET", 429, "APIGW.0308", "throttled", retry_after=15)

    with pytest.raises(TransientFailure):
        handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    assert clock.sleeps == [] and len(fake.calls) == 1


def test_a_gateway_404_is_a_wrong_endpoint_not_a_missing_image(fake, context):
    fake.fail_next("GET", 404, "APIGW.0101", "The API does not exist or has not been published")

    result = handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    assert result["results"][0]["outcome"] == "error"
    assert "APIGW.0101" in result["results"][0]["reason"]


def test_the_last_ambiguous_patch_is_still_read_again(fake, context):
    import requests

    fake.fail_next("PATCH", 429, "APIGW.0308", "throttled", times=3)
    fake.raise_next("PATCH", requests.exceptions.ReadTimeout("answer lost"), after=True)

    result = handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    assert result["results"][0]["outcome"] == "updated"
    assert fake.images[EXAMPLE_IMAGE_ID]["name"] == "ims-test"


def test_a_permanent_error_is_reported_not_retried(fake, context):
    fake.fail_next("PATCH", 403, "IMG.0047", "This operation can be performed only by the owner.")

    result = handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    (entry,) = result["results"]
    assert entry["outcome"] == "error" and "IMG.0047" in entry["reason"]
    assert "request id" in entry["reason"] and len(fake.patches) == 1


def test_unknown_image_is_not_applicable(fake, context):
    result = handler({"image_id": "00000000-0000-4000-8000-000000000000"}, context)

    assert fake.patches == []
    assert result["results"][0]["outcome"] == "not_applicable"
    assert "no such image" in result["results"][0]["reason"]


def test_violation_without_a_valid_fix_is_non_compliant_and_not_patched(fake, context):
    image = fake.add_image(
        {
            "name": "___",
            "__platform": "Windows",
            "__os_type": "Windows",
            "__os_version": "Windows Server 2019 Standard 64bit",
        }
    )

    result = handler({"image_id": image["id"]}, context)

    assert fake.patches == []
    (entry,) = result["results"]
    assert entry["outcome"] == "non_compliant"
    assert "kebab-case-name" in entry["reason"]
    assert entry["rules"][0]["fix"] == "cannot_fix"


def test_windows_name_fixed_but_not_uefi_or_multiqueue(fake, context):
    result = handler({"image_id": WINDOWS}, context)

    assert fake.patches[0].body == [{"op": "replace", "path": "/name", "value": "win2019-golden"}]
    rules = {r["rule"]: r["verdict"] for r in result["results"][0]["rules"]}
    assert rules["uefi-boot"] == rules["nic-multiqueue"] == "not_applicable"


def test_job_only_trace_reads_the_job_then_the_image(fake, context):
    fake.add_job(JOB_ID, status="SUCCESS", image_id=EXAMPLE_IMAGE_ID)

    result = handler(load_event("cts_create_image_job_only.json"), context)

    assert [(c.method, c.path.split("/")[1]) for c in fake.calls] == [
        ("GET", "v1"),
        ("GET", "v2"),
        ("PATCH", "v2"),
    ]
    assert result["results"][0]["image_id"] == EXAMPLE_IMAGE_ID
    assert result["results"][0]["outcome"] == "updated"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("RUNNING", "deferred"), ("INIT", "deferred"), ("FAIL", "not_applicable")],
)
def test_unfinished_or_failed_job_sends_no_patch(fake, context, status, outcome):
    fake.add_job(JOB_ID, status=status, image_id=None, fail_reason="disk error")

    result = handler(load_event("cts_create_image_job_only.json"), context)

    assert {(c.method, c.path) for c in fake.calls} == {("GET", f"/v1/cloudimages/job/{JOB_ID}")}
    assert (len(fake.calls) == 1) == (status == "FAIL")  # unfinished jobs are polled
    assert result["results"] == [
        {
            "image_id": None,
            "job_id": JOB_ID,
            "operations": [],
            "outcome": outcome,
            "reason": result["results"][0]["reason"],
        }
    ]
    assert JOB_ID in result["results"][0]["reason"]


def test_unknown_job_gives_a_reason_and_no_patch(fake, context):
    fake.jobs.clear()

    result = handler(load_event("cts_create_image_job_only.json"), context)

    assert fake.patches == []
    assert result["results"][0]["outcome"] == "not_applicable"
    assert JOB_ID in result["results"][0]["reason"]


def test_successful_job_without_image_id_is_an_error(fake, context):
    fake.add_job(JOB_ID, status="SUCCESS", image_id=None)

    result = handler(load_event("cts_create_image_job_only.json"), context)

    assert fake.patches == []
    assert result["results"][0]["outcome"] == "error"
    assert "names no image id" in result["results"][0]["reason"]


def test_finished_job_in_trace_needs_no_job_read(fake, context):
    result = handler(load_event("cts_create_image_job_done.json"), context)

    assert [c.method for c in fake.calls] == ["GET", "PATCH"]
    assert result["results"][0]["outcome"] == "updated"


def test_rejected_patch_reports_ims_code_and_request_id(fake, context):
    fake.fail_next("PATCH", 400, "IMG.0035", "An attribute conflict occurred.")

    result = handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    (entry,) = result["results"]
    assert entry["outcome"] == "error"
    assert "IMG.0035" in entry["reason"] and "request id" in entry["reason"]
    assert entry["operations"] == SAMPLE_FIX  # what was attempted


@pytest.mark.parametrize(
    "name",
    [
        "cts_create_image_failed.json",
        "cts_delete_image.json",
        "cts_other_service.json",
    ],
)
def test_irrelevant_events_do_nothing_and_say_why(fake, context, name):
    result = handler(load_event(name), context)

    assert result["results"] == []
    assert result["status"] == "ignored"
    assert result["reason"]
    assert fake.calls == []


@pytest.mark.parametrize(
    "event",
    [
        None,
        "image",
        [],
        42,
        {"image_id": "not-a-uuid"},
        {"image_id": "../../v2/cloudimages/33ad552d-1149-471c-8190-ff6776174a00"},
        {"image_id": "33ad552d-1149-471c-8190-ff6776174a00/../x"},
        {"image_id": "x" * 1_000_000},
        {"image_id": "33ad552d-1149-471c-8190-ff6776174a00\n"},
        {"image_id": None},
        {"image_ids": None},
        {"image_id": 12345},
        {"image_ids": []},
        {"image_ids": ["33ad552d-1149-471c-8190-ff6776174a00", None]},
        {"image_ids": "33ad552d-1149-471c-8190-ff6776174a00"},
        {"image_id": "33ad552d-1149-471c-8190-ff6776174a00", "dry_run": "yes"},
        {"image_id": "33ad552d-1149-471c-8190-ff6776174a00", "surprise": 1},
        {
            "image_id": "33ad552d-1149-471c-8190-ff6776174a00",
            "image_ids": ["33ad552d-1149-471c-8190-ff6776174a00"],
        },
        {"cts": "not an object"},
        {"cts": {"service_type": "IMS"}},
        {
            "cts": {
                "service_type": "IMS",
                "resource_type": "ims",
                "trace_name": "createImage",
                "code": "teapot",
            }
        },
        {
            "cts": {
                "service_type": "IMS",
                "resource_type": "ims",
                "trace_name": "createImage",
                "resource_id": "../../etc",
                "response": "{not json",
            }
        },
        {
            "cts": {
                "service_type": "IMS",
                "resource_type": "ims",
                "trace_name": "createImage",
                "resource_id": "",
                "response": {"job_id": "../jobs/1"},
            }
        },
        {
            "cts": {
                "service_type": "IMS",
                "resource_type": "ims",
                "trace_name": "createImage",
                "resource_id": "33ad552d-1149-471c-8190-ff6776174a00\n",
                "response": {"job_id": "ff8080814dbd65d7014dbe0d84db0013\n"},
            }
        },
        {
            "cts": {
                "service_type": "IMS",
                "resource_type": "ims",
                "trace_name": "createImage",
                "response": "[" * 100_000,
            }
        },
        {
            "cts": {
                "service_type": "IMS",
                "resource_type": "ims",
                "trace_name": "createImage",
                "response": '{"job_id": "' + "0" * (1 << 20) + '"}',
            }
        },
    ],
)
def test_malformed_events_make_no_api_call(fake, context, event):
    result = handler(event, context)

    assert result["status"] == "invalid"
    assert result["results"] == []
    assert len(result["reason"]) < 1000
    assert fake.calls == []


def test_invalid_policy_is_reported_on_every_invocation_and_calls_nothing(fake, context, tmp_path):
    use_policy(
        context,
        tmp_path,
        "version: 1\nrules:\n  - name: uefi-boot\n    kind: set\n"
        "    set: {hw_firmware_type: efi}\n",
    )

    for _ in range(2):  # raised, so FunctionGraph's retries and failure destination see it
        with pytest.raises(InvalidPolicy) as raised:
            handler(load_event("cts_create_image.json"), context)
        assert "uefi-boot" in str(raised.value) and "hw_firmware_type" in str(raised.value)
        assert raised.value.problems == [
            "rule 'uefi-boot' (rules[0]), field set (line 5): hw_firmware_type must be 'bios' "
            "or 'uefi', not 'efi'"
        ]
    assert fake.calls == []


def test_an_invalid_policy_is_an_error_log_line_every_time(fake, context, tmp_path, capsys):
    use_policy(context, tmp_path, "version: 2\nrules: []\n")

    for _ in range(2):
        with pytest.raises(InvalidPolicy):
            handler(load_event("cts_create_image.json"), context)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert len(errors) == 2 and all("field version" in str(e["problems"]) for e in errors)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"RUNTIME_PROJECT_ID": None}, "no project id"),
        ({"RUNTIME_PROJECT_ID": "not-a-project"}, "project id"),
        ({"IMSGUARD_REGION": "mars-north-9"}, "not a region the IMS SDK knows"),
        ({"IMSGUARD_REGION": None}, "no region"),
        ({"IMSGUARD_DRY_RUN": "maybe"}, "IMSGUARD_DRY_RUN"),
        ({"IMSGUARD_IMS_ENDPOINT": "ftp://x"}, "IMSGUARD_IMS_ENDPOINT"),
        ({"IMSGUARD_POLICY": "~no-such-user-here/policy.yaml"}, "IMSGUARD_POLICY"),
    ],
)
def test_bad_configuration_is_a_clear_error(fake, context, monkeypatch, change, message):
    for key, value in change.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)

    result = handler(load_event("cts_create_image.json"), context)

    assert result["status"] == "error"
    assert message in result["reason"]
    assert fake.calls == []


def test_no_credentials_is_a_clear_error(fake):
    result = handler(load_event("cts_create_image.json"), LocalContext())

    assert result["status"] == "error"
    assert "no credentials" in result["reason"]
    assert fake.calls == []


def test_sdk_environment_credentials_work_outside_functiongraph(fake, monkeypatch):
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "ENV-AK")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "ENV-SK")

    result = handler(load_event("cts_create_image.json"), LocalContext())

    assert result["results"][0]["outcome"] == "updated"
    assert "Access=ENV-AK" in fake.calls[0].headers["Authorization"]


def test_requests_are_signed_with_the_context_credentials(fake, context):
    handler(load_event("cts_create_image.json"), context)

    headers = {k.lower(): v for k, v in fake.patches[0].headers.items()}
    assert headers["authorization"].startswith("SDK-HMAC-SHA256 Access=AK-TEST-0001")
    assert headers["x-security-token"] == "TOKEN-TEST-SECRET-0003"


def test_one_json_log_line_per_image_without_secrets(fake, context, capsys):
    context.request_id = "req-123"

    result = handler(load_event("direct_images_dry_run.json"), context)

    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    image_lines = [line for line in lines if "image_id" in line]
    assert [line["image_id"] for line in image_lines] == [EXAMPLE_IMAGE_ID, DEBIAN]
    assert image_lines[0]["outcome"] == "would_update"
    assert image_lines[0]["operations"] == SAMPLE_FIX
    assert image_lines[0]["request_id"] == "req-123"
    assert {r["rule"] for r in image_lines[0]["rules"]} == {
        "kebab-case-name",
        "uefi-boot",
        "nic-multiqueue",
    }
    assert all(secret not in out and secret not in json.dumps(result) for secret in SECRETS)


def test_function_entry_point_is_index_handler(fake, context):
    import index

    assert index.handler is handler
    assert (
        index.handler(load_event("direct_image.json"), context)["results"][0]["outcome"]
        == "updated"
    )


def test_huge_fields_are_not_echoed_back(fake, context):
    event = load_event("cts_other_service.json")
    event["cts"]["service_type"] = "S" * 1_000_000

    result = handler(event, context)

    assert result["status"] == "ignored"
    assert len(json.dumps(result)) < 1000


def test_invalid_policy_is_reported_even_for_events_that_need_no_work(fake, context, tmp_path):
    use_policy(context, tmp_path, "version: 2\nrules: []\n")

    with pytest.raises(InvalidPolicy, match="field version"):
        handler(load_event("timer.json"), context)


def test_policy_is_loaded_once_per_container(fake, context, monkeypatch):
    from imsguard import policy

    loads = []
    original = policy.load_policy
    monkeypatch.setattr(policy, "load_policy", lambda path: loads.append(path) or original(path))

    for _ in range(3):
        handler(load_event("direct_image.json"), context)

    assert len(loads) == 1


def test_audit_mode_policy_sends_nothing(fake, context, tmp_path):
    use_policy(
        context, tmp_path, "version: 1\nmode: audit\nrules:\n  - {name: names, kind: name}\n"
    )

    result = handler(load_event("direct_image.json"), context)

    assert fake.patches == []
    assert result["results"][0]["outcome"] == "would_update"
    assert result["results"][0]["rules"][0]["mode"] == "audit"
    assert result["results"][0]["rules"][0]["fix"] == "would_fix"


def test_patch_that_ims_did_not_apply_is_an_error(fake, context):
    unchanged = dict(fake.images[EXAMPLE_IMAGE_ID])
    fake.respond_next("PATCH", 200, unchanged)

    result = handler(load_event("direct_image.json"), context)

    (entry,) = result["results"]
    assert entry["outcome"] == "error"
    assert "IMS answered 200 but did not keep the change to" in entry["reason"]
    assert "'name'" in entry["reason"]


def test_a_timed_out_patch_is_read_again_then_sent_again(fake, context):
    import requests

    fake.raise_next("PATCH", requests.exceptions.ReadTimeout("read timed out"))

    result = handler(load_event("direct_image.json"), context)

    assert result["results"][0]["outcome"] == "updated"
    assert [(c.method, c.status) for c in fake.calls] == [
        ("GET", 200),
        ("PATCH", 0),
        ("GET", 200),
        ("PATCH", 200),
    ]


def test_a_patch_applied_before_its_timeout_is_not_sent_again(fake, context):
    import requests

    fake.raise_next("PATCH", requests.exceptions.ReadTimeout("answer lost"), after=True)

    result = handler(load_event("direct_image.json"), context)

    assert result["results"][0]["outcome"] == "updated"
    assert [c.method for c in fake.calls] == ["GET", "PATCH", "GET"]
    assert fake.images[EXAMPLE_IMAGE_ID]["name"] == "ims-test"


def test_ims_gone_code_means_not_applicable(fake, context):
    fake.fail_next("PATCH", 400, "IMG.0027", "The image ID in the request does not exist.")

    result = handler(load_event("direct_image.json"), context)

    assert result["results"][0]["outcome"] == "not_applicable"


def test_an_unreadable_image_spoils_only_its_own_result(fake, context):
    odd = fake.add_image({"name": "odd", "min_ram": "lots", "__os_version": 14})

    result = handler({"image_ids": [odd["id"], DEBIAN]}, context)

    outcomes = [r["outcome"] for r in result["results"]]
    assert outcomes == ["error", "compliant"]
    assert "unreadable response" in result["results"][0]["reason"]


def test_odd_attribute_types_are_evaluated_not_crashed(fake, context):
    odd = fake.add_image(
        {
            "name": "odd-types",
            "__os_version": 14,
            "__platform": None,
            "protected": "false",
            "hw_vif_multiqueue_enabled": True,
        }
    )

    result = handler({"image_id": odd["id"]}, context)

    assert result["results"][0]["outcome"] == "compliant"


def test_owner_is_checked_even_when_ims_shows_another_projects_private_image(fake, context):
    fake.images[OTHER_PROJECT]["visibility"] = "public"  # visible, still private and foreign

    result = handler({"image_id": OTHER_PROJECT}, context)

    assert fake.patches == []
    assert result["results"][0]["reason"] == "owned by another project"


def test_uefi_refusal_keeps_the_rest_of_the_rule(fake, context, tmp_path):
    use_policy(
        context,
        tmp_path,
        "version: 1\nrules:\n  - name: boot\n    kind: set\n    set:\n"
        "      hw_firmware_type: uefi\n      __support_kvm: 'true'\n",
    )
    old = fake.add_image(
        {"name": "old", "__os_version": "Ubuntu 12.04 server 64bit", "__support_kvm": "False"}
    )

    result = handler({"image_id": old["id"]}, context)

    assert fake.patches[0].body == [{"op": "replace", "path": "/__support_kvm", "value": "true"}]
    (rule,) = result["results"][0]["rules"]
    assert rule["fix"] == "partly_fixed"
    assert "OS not UEFI-capable" in rule["reason"]


def test_boot_settings_are_refused_on_non_system_disk_images(fake, context, tmp_path):
    use_policy(
        context,
        tmp_path,
        "version: 1\nrules:\n  - name: boot\n    kind: set\n    set: {hw_firmware_type: uefi}\n",
    )
    iso = fake.add_image({"name": "iso", "virtual_env_type": "IsoImage"})

    result = handler({"image_id": iso["id"]}, context)

    assert fake.patches == []
    assert result["results"][0]["outcome"] == "non_compliant"
    assert "system-disk images only" in result["results"][0]["rules"][0]["reason"]


def test_no_secret_on_error_paths(fake, context, capsys):
    fake.fail_next("GET", 401, "APIGW.0301", "Incorrect IAM authentication information")
    context.user_data["IMSGUARD_LOG_LEVEL"] = "DEBUG"

    result = handler(load_event("direct_image.json"), context)

    assert result["results"][0]["outcome"] == "error"
    everything = capsys.readouterr().out + json.dumps(result)
    assert "APIGW.0301" in everything
    assert all(secret not in everything for secret in SECRETS)


def test_uefi_list_can_come_from_ims_once_per_container(fake, context):
    context.user_data["IMSGUARD_UEFI_FROM_IMS"] = "true"  # the fake lists Ubuntu 20.04/22.04

    first = handler({"image_id": EXAMPLE_IMAGE_ID}, context)  # Ubuntu 14.04: not listed
    fake.images[DEBIAN]["hw_firmware_type"] = "bios"
    second = handler({"image_id": DEBIAN}, context)  # Debian 12: listed

    lists = [c for c in fake.calls if c.path == "/v1/cloudimages/os_version"]
    assert len(lists) == 1 and lists[0].query == {"tag": "uefi"}
    assert fake.patches[0].body == [{"op": "replace", "path": "/name", "value": "ims-test"}]
    assert "OS not UEFI-capable" in first["results"][0]["rules"][1]["reason"]
    assert fake.patches[1].body == [{"op": "replace", "path": "/hw_firmware_type", "value": "uefi"}]
    assert second["results"][0]["outcome"] == "updated"


def test_uefi_list_failure_falls_back_to_the_built_in_table(fake, context):
    context.user_data["IMSGUARD_UEFI_FROM_IMS"] = "true"
    fake.fail_next("GET", 500, "IMG.0002", "Internal error", times=4)  # the list, tried 4 times

    result = handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    assert fake.patches[0].body == SAMPLE_FIX  # the table lists Ubuntu 14.04
    assert result["results"][0]["outcome"] == "updated"


def test_audit_rules_are_held_back_and_reported(fake, context, tmp_path):
    use_policy(
        context,
        tmp_path,
        "version: 1\nrules:\n  - {name: names, kind: name}\n"
        "  - {name: boot, kind: set, mode: audit, set: {hw_firmware_type: uefi}}\n",
    )

    result = handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    (entry,) = result["results"]
    assert fake.patches[0].body == SAMPLE_FIX[:1]
    assert entry["operations"] == SAMPLE_FIX[:1]
    assert entry["held_back"] == SAMPLE_FIX[1:]
    assert [r.get("fix") for r in entry["rules"]] == ["fixed", "would_fix"]


def test_exempt_and_expired_exemptions_through_the_handler(fake, context, tmp_path, clock):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nexemptions:\n"
        "  - {images: [" + EXAMPLE_IMAGE_ID + "], reason: frozen, "
        "expires: 2025-12-31}\n"
        "  - {tag: team, reason: team images}\n"
        "rules:\n  - {name: names, kind: name}\n"
    )
    context.user_data["IMSGUARD_POLICY"] = str(policy)
    fake.images[DEBIAN]["tags"] = ["team=platform"]  # the fake's sample already has it

    result = handler({"image_ids": [EXAMPLE_IMAGE_ID, DEBIAN]}, context)

    expired, exempt = result["results"]
    assert clock.utcnow().date().isoformat() == "2026-01-01"
    assert expired["outcome"] == "updated"
    assert expired["notes"] == ["exemption (frozen) expired on 2025-12-31; the rules apply again"]
    assert (exempt["outcome"], exempt["reason"]) == ("exempt", "exempt: team images")
    assert len(fake.patches) == 1


def test_a_failed_job_without_an_id_still_reports_its_job_id_key(fake, context):
    """Result keys users already see stay: a job result holds job_id, null when the trace
    names no job (a failed creation whose answer carried none)."""
    event = load_event("cts_create_image.json")
    event["cts"]["response"] = json.dumps({"status": "FAIL", "fail_reason": "disk error"})
    event["cts"]["resource_id"] = ""

    (result,) = handler(event, context)["results"]

    assert result["job_id"] is None and result["image_id"] is None
    assert result["outcome"] == "not_applicable" and "disk error" in result["reason"]


def test_only_a_local_run_may_bring_a_clock_or_progress(fake, monkeypatch):
    """A platform context that answers any attribute (a bridge to another language's
    object) is not a local run: its "clock" is never used in place of the system's."""
    from imsguard.clock import SystemClock

    class AnswersAnything:
        def __getattr__(self, name):
            return lambda *args: None

    used = []
    monkeypatch.setattr(SystemClock, "monotonic", lambda self: used.append(1) or 0.0)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AK")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "SK")

    report = handler(load_event("direct_image.json"), AnswersAnything())

    assert [r["outcome"] for r in report["results"]] == ["updated"], report
    assert used  # the system's clock kept the time, not the context's "clock"
