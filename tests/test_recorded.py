"""Huawei's own examples, replayed: every file in tests/recorded/ is a response (or event)
from IMS's or FunctionGraph's documentation, or a recorded real answer, naming its
source. Each goes through the real SDK and the handler as it was published; and the fake
IMS must answer with the same keys and JSON types, so tests against the fake mean
something for the cloud."""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import responses
from huaweicloudsdkfunctiongraph.v2 import ListFunctionTriggersRequest
from huaweicloudsdkims.v2 import (
    ListImagesRequest,
    ListOsVersionsRequest,
    ShowJobProgressRequest,
    ShowJobRequest,
)

from helpers import use_policy
from imsguard import ims_errors
from imsguard.app import handler
from imsguard.context import Credentials
from imsguard_tools.deploy import build_client
from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms

RECORDED = Path(__file__).parent / "recorded"
ENDPOINT = "https://ims.recorded.example"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def body(name: str) -> Any:
    return copy.deepcopy(recorded(name)["body"])


def test_every_recorded_file_names_its_public_source():
    files = sorted(RECORDED.glob("*.json"))

    assert len(files) >= 12
    for path in files:
        source = json.loads(path.read_text(encoding="utf-8"))["source"]
        assert re.search(r"https://|@[0-9a-f]{7,}:", source), path.name


@pytest.fixture
def cloud(context):
    """The documented answers, served where the function's IMS endpoint points."""
    context.user_data["IMSGUARD_IMS_ENDPOINT"] = ENDPOINT
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


def image_query(image_id):
    return responses.matchers.query_param_matcher({"id": image_id, "limit": "1"})


# -- IMS ------------------------------------------------------------------------------------


def test_the_documented_list_answer_is_paged_to_an_empty_page(cloud, context):
    listed = body("ims_list_images.json")  # no page_info, as documented
    last = listed["images"][-1]["id"]
    cloud.get(
        f"{ENDPOINT}/v2/cloudimages",
        json=listed,
        match=[
            responses.matchers.query_param_matcher(
                {"__imagetype": "private", "status": "active", "limit": "500"}
            )
        ],
    )
    cloud.get(
        f"{ENDPOINT}/v2/cloudimages",
        json={"images": []},
        match=[
            responses.matchers.query_param_matcher(
                {"__imagetype": "private", "status": "active", "limit": "500", "marker": last}
            )
        ],
    )

    report = handler({"action": "sweep"}, context)

    assert report["status"] == "ok" and report["examined"] == 2
    assert report["summary"] == {"not_applicable": 2}  # gold images are never ours
    assert "a gold image" in report["results"][0]["reason"]


def test_the_documented_update_answer_is_read_as_the_updated_image(cloud, context, tmp_path):
    use_policy(
        context,
        tmp_path,
        "version: 1\nrules:\n  - name: description\n    kind: set\n"
        "    set: {__description: ims test}\n",
    )
    answer = body("ims_update_image.json")
    before = {**answer, "__description": "old"}
    image_id = answer["id"]
    cloud.get(
        f"{ENDPOINT}/v2/cloudimages", json={"images": [before]}, match=[image_query(image_id)]
    )
    patch = cloud.patch(f"{ENDPOINT}/v2/cloudimages/{image_id}", json=answer)

    result = handler({"image_id": image_id}, context)

    assert result["results"][0]["outcome"] == "updated"  # the answer holds the change
    assert json.loads(patch.calls[0].request.body) == [
        {"op": "replace", "path": "/__description", "value": "ims test"}
    ]


def test_a_job_read_as_show_job_progress_documents_it(cloud, context):
    running = body("ims_job_progress.json")  # RUNNING, end_time "", image id already known
    done = {**running, "status": "SUCCESS", "end_time": "2022-05-17T14:45:20.859Z"}  # derived
    image = {**body("ims_update_image.json"), "id": running["entities"]["image_id"]}
    job_url = f"{ENDPOINT}/v1/cloudimages/job/{running['job_id']}"
    cloud.get(job_url, json=running)
    cloud.get(job_url, json=done)
    cloud.get(
        f"{ENDPOINT}/v2/cloudimages", json={"images": [image]}, match=[image_query(image["id"])]
    )

    context.user_data["IMSGUARD_DRY_RUN"] = "true"

    result = handler(
        {
            "cts": {
                "service_type": "IMS",
                "resource_type": "ims",
                "trace_name": "copyImage",
                "code": 200,
                "response": {"job_id": running["job_id"]},
            }
        },
        context,
    )

    assert [(r["image_id"], r["outcome"]) for r in result["results"]] == [
        (image["id"], "would_update")
    ]


def test_the_deprecated_job_api_answers_as_documented_where_the_new_one_is_missing(cloud, context):
    legacy = body("ims_job_legacy.json")
    image = {
        **body("ims_update_image.json"),
        "id": legacy["entities"]["image_id"],
        "hw_firmware_type": "uefi",
        "name": "ims-test",
    }
    cloud.get(
        f"{ENDPOINT}/v1/cloudimages/job/{legacy['job_id']}",
        status=404,
        json={"error_code": "APIGW.0101", "error_msg": "The API does not exist"},
    )
    cloud.get(f"{ENDPOINT}/v1/{SAMPLE_PROJECT_ID}/jobs/{legacy['job_id']}", json=legacy)
    cloud.get(
        f"{ENDPOINT}/v2/cloudimages", json={"images": [image]}, match=[image_query(image["id"])]
    )

    result = handler(
        {
            "cts": {
                "service_type": "IMS",
                "resource_type": "ims",
                "trace_name": "createImage",
                "code": 200,
                "response": {"job_id": legacy["job_id"]},
            }
        },
        context,
    )

    assert [(r["image_id"], r["outcome"]) for r in result["results"]] == [
        (image["id"], "compliant")
    ]


def test_the_documented_os_version_list_decides_uefi(cloud, context):
    context.user_data["IMSGUARD_UEFI_FROM_IMS"] = "true"
    image = body("ims_update_image.json")  # Ubuntu 14.04: not in the documented list
    cloud.get(f"{ENDPOINT}/v1/cloudimages/os_version", json=body("ims_os_versions.json"))
    cloud.get(
        f"{ENDPOINT}/v2/cloudimages", json={"images": [image]}, match=[image_query(image["id"])]
    )
    cloud.patch(f"{ENDPOINT}/v2/cloudimages/{image['id']}", json={**image, "name": "ims-test"})

    result = handler({"image_id": image["id"]}, context)

    uefi = next(r for r in result["results"][0]["rules"] if r["rule"] == "uefi-boot")
    assert "not in IMS's list of UEFI boot OS versions" in uefi["reason"]
    assert uefi["fix"] == "cannot_fix"


def test_the_documented_error_body_reaches_the_result(cloud, context):
    error = recorded("ims_error_body.json")
    image = body("ims_update_image.json")
    cloud.get(
        f"{ENDPOINT}/v2/cloudimages", json={"images": [image]}, match=[image_query(image["id"])]
    )
    cloud.patch(
        f"{ENDPOINT}/v2/cloudimages/{image['id']}",
        status=error["status"],
        json=error["body"],
        headers={"X-Request-Id": "req-recorded"},
    )

    (result,) = handler({"image_id": image["id"]}, context)["results"]

    assert result["outcome"] == "error"
    assert (
        "The imagetype is invalid. (HTTP 400, code IMG.0024, request id req-recorded)"
        in (result["reason"])
    )


def test_every_documented_error_code_is_classified_once():
    documented = {c["code"]: c for c in recorded("ims_error_codes.json")["codes"]}
    table = (ims_errors.TRANSIENT, ims_errors.GONE, ims_errors.PERMANENT)

    assert set().union(*table) == set(documented)  # nothing missing, nothing invented
    assert sum(len(kind) for kind in table) == len(documented)  # each code once
    retry = re.compile(
        r"flow control|traffic has reached|exceeds the maximum number allowed "
        r"at a time|Unknown system error"
    )
    gone = re.compile(r"The image( ID in the request)? does not exist\.")
    assert {c for c, e in documented.items() if retry.search(e["message"])} == (
        ims_errors.TRANSIENT
    )
    assert {c for c, e in documented.items() if gone.fullmatch(e["message"])} == ims_errors.GONE


def test_recorded_real_images_are_patched_once_then_left_alone(fake, context):
    """Images as a real (native) list answer holds them, "__lazyloading": "True" included."""
    for image in body("ims_native_list_recorded.json")["images"]:
        fake.add_image(
            {
                **image,
                "owner": SAMPLE_PROJECT_ID,
                "__imagetype": "private",
                "visibility": "private",
                "protected": False,
            }
        )  # our own copies
    ids = [i["id"] for i in body("ims_native_list_recorded.json")["images"]]

    first = handler({"image_ids": ids}, context)
    fake.reset_calls()
    second = handler({"image_ids": ids}, context)

    assert {r["outcome"] for r in first["results"]} <= {"updated", "compliant"}
    assert fake.patches == []
    assert {r["outcome"] for r in second["results"]} == {"compliant"}


# -- FunctionGraph ------------------------------------------------------------------------


def test_functiongraphs_documented_cts_sample_is_ignored_with_its_reason(fake, context):
    result = handler(recorded("fgs_cts_trigger_event.json")["event"], context)

    assert (result["status"], result["reason"]) == (
        "ignored",
        "trace of service 'FunctionGraph', not IMS",
    )
    assert fake.calls == []


def test_functiongraphs_documented_timer_sample_is_refused_with_its_reason(fake, context):
    result = handler(recorded("fgs_timer_trigger_event.json")["event"], context)

    assert result["status"] == "invalid" and "user_event is not JSON" in result["reason"]
    assert fake.calls == []


def test_the_documented_async_invoke_answer_gives_the_request_id():
    from imsguard.fgs import invoke_async

    answer = recorded("fgs_async_invoke.json")
    urn = f"urn:fss:ap-southeast-1:{SAMPLE_PROJECT_ID}:function:default:imsguard:latest"
    endpoint = "https://functiongraph.recorded.example"
    with responses.RequestsMock() as mock:
        mock.post(
            f"{endpoint}/v2/{SAMPLE_PROJECT_ID}/fgs/functions/"
            f"{urn.replace(':', '%3A')}/invocations-async",
            status=answer["status"],
            json=answer["body"],
        )

        request_id = invoke_async(
            urn, {"action": "sweep"}, None, endpoint, SAMPLE_PROJECT_ID, Credentials("AK", "SK")
        )

    assert request_id == answer["body"]["request_id"]


def test_deploy_leaves_a_documented_trigger_of_another_kind_alone(tmp_path):
    from test_deploy import URN, deploy, template

    package = tmp_path / "imsguard.zip"
    package.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with FakeIms(project_id=SAMPLE_PROJECT_ID) as fgs:
        deploy(fgs, template(tmp_path), package)
        gateway = body("fgs_list_triggers.json")[0]  # an API gateway trigger
        fgs.function_triggers[URN].append(gateway)

        steps = deploy(fgs, template(tmp_path), package)

        assert {s.action for s in steps} == {"keep"}
        assert gateway in fgs.function_triggers[URN]


# -- the fake answers as the documents do -------------------------------------------------


def shape(value: Any) -> Any:
    """A JSON value's shape: its keys and the JSON type of each value."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if value is None or isinstance(value, bool):
        return type(value).__name__
    return "number" if isinstance(value, (int, float)) else "string"


def differences(documented: Any, fake: Any, where: str = "") -> list[str]:
    """Where the fake's answer lacks a documented key or has another JSON type (a
    documented null accepts anything: the document shows no value)."""
    if documented == "NoneType" or (isinstance(documented, str) and documented == fake):
        return []
    if isinstance(documented, dict) and isinstance(fake, dict):
        return [
            problem
            for key, value in documented.items()
            for problem in (
                differences(value, fake[key], f"{where}.{key}")
                if key in fake
                else [f"{where}.{key} missing"]
            )
        ]
    if isinstance(documented, list) and isinstance(fake, list):
        return differences(documented[0], fake[0], f"{where}[0]") if documented and fake else []
    return [f"{where}: documented {documented}, fake {fake}"]


@pytest.fixture
def client(fake):
    from imsguard.ims import gateway_for

    return gateway_for(None, fake.endpoint, SAMPLE_PROJECT_ID, Credentials("AK", "SK"))


def raw(response: Any) -> Any:
    """The JSON body the SDK received (its models drop keys and coerce types)."""
    return json.loads(response.raw_content)


def test_the_fakes_list_answer_has_the_documented_shape(fake, client):
    documented = body("ims_list_images.json")
    image = fake.add_image({"hw_firmware_type": "bios", "__support_fc_inject": "true"})
    answer = raw(client.client.list_images(ListImagesRequest(id=image["id"])))

    assert set(answer) == set(documented) == {"images"}  # no page_info: none is documented
    assert differences(shape(documented["images"][0]), shape(answer["images"][0])) == []


def test_the_fakes_job_answers_have_the_documented_shape(fake, client):
    running = body("ims_job_progress.json")
    fake.add_job("job-1", image_id=next(iter(fake.images)), pending_reads=2)
    fake.add_job("job-2", image_id=next(iter(fake.images)))
    answers = [
        raw(client.client.show_job_progress(ShowJobProgressRequest(job_id="job-1")))
        for _ in range(2)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = raw(client.client.show_job(ShowJobRequest(job_id="job-2")))

    assert answers[1]["status"] == "RUNNING"
    documented = shape(running)
    documented["entities"].pop("subJobId")  # only jobs with sub-jobs have one
    assert differences(documented, shape(answers[1])) == []
    assert set(legacy) == set(body("ims_job_legacy.json"))


def test_the_fakes_update_answer_has_the_documented_shape(fake, client):
    documented = body("ims_update_image.json")
    image_id = fake.add_image(
        {
            "__support_fc_inject": "true",
            "__description": "x",
            "hw_firmware_type": "bios",
            "hw_vif_multiqueue_enabled": "true",
        }
    )["id"]

    answer = client.update_image(
        image_id, [{"op": "replace", "path": "/__description", "value": "ims test"}]
    )

    assert differences(shape(documented), shape(answer)) == []


def test_the_fakes_os_version_and_error_answers_have_the_documented_shape(fake, client):
    versions = raw(client.client.list_os_versions(ListOsVersionsRequest(tag="uefi")))
    signed = {
        "Authorization": "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=00",
        "X-Project-Id": fake.project_id,
    }
    status, _, payload = fake.dispatch(
        "PATCH", f"{fake.endpoint}/v2/cloudimages/{next(iter(fake.images))}", signed, b"[]"
    )
    error = json.loads(payload)

    assert status == recorded("ims_error_body.json")["status"]

    assert differences(shape(body("ims_os_versions.json")), shape(versions)) == []
    assert differences(shape(body("ims_error_body.json")), shape(error)) == []


def test_the_fake_functiongraphs_trigger_answer_has_the_documented_shape(tmp_path):
    from test_deploy import URN, deploy, template

    package = tmp_path / "imsguard.zip"
    package.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with FakeIms(project_id=SAMPLE_PROJECT_ID) as fgs:
        deploy(fgs, template(tmp_path), package)
        created = next(c for c in fgs.calls if c.method == "POST" and "/triggers/" in c.path)
        client = build_client(None, fgs.fgs_endpoint, SAMPLE_PROJECT_ID, Credentials("AK", "SK"))
        answer = raw(client.list_function_triggers(ListFunctionTriggersRequest(function_urn=URN)))

    timer = next(t for t in answer if t["trigger_type_code"] == "TIMER")
    assert created.status == recorded("fgs_create_timer_trigger.json")["status"]
    assert differences(shape(body("fgs_create_timer_trigger.json")), shape(timer)) == []
    assert set(timer["event_data"]) == set(body("fgs_create_timer_trigger.json")["event_data"])
