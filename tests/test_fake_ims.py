"""The IMS fake, exercised through the real huaweicloudsdkims client."""

from __future__ import annotations

import copy
import json

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkims.v2 import (
    ImsClient,
    ListImagesRequest,
    ShowJobRequest,
    UpdateImageRequest,
    UpdateImageRequestBody,
)
from huaweicloudsdkims.v2.region.ims_region import ImsRegion

from imsguard_tools.testing import (
    EXAMPLE_IMAGE_ID,
    SAMPLE_PROJECT_ID,
    FakeCall,
    FakeIms,
    sample_images,
)

DEBIAN_ID = "c5cd3163-9030-43cb-a7c2-640c237702c7"
WINDOWS_ID = "d78cf625-30e2-4d93-b5b1-47be6bad25fc"
GOLD_ID = "da07e77d-a235-4013-aad2-c480a949d1ff"
DATA_DISK_ID = "69a48be3-bf34-4e0d-88e4-b40b634d76d9"
QUEUED_ID = "b5d22771-5091-4b3f-b87c-6c1a0bf6c1a4"
OTHER_TEAM_ID = "5faaa991-912d-4610-9937-3d3fed62adbe"
SIGNED = {
    "Authorization": "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=00",
    "X-Project-Id": SAMPLE_PROJECT_ID,
}


def build_client(endpoint: str | None = None) -> ImsClient:
    cfg = HttpConfig.get_default_config()
    cfg.retry_times = 0
    cfg.timeout = (5, 30)
    credentials = BasicCredentials("AK", "SK", SAMPLE_PROJECT_ID).with_security_token("TOKEN")
    builder = ImsClient.new_builder().with_credentials(credentials).with_http_config(cfg)
    if endpoint:
        builder = builder.with_endpoints([endpoint])
    else:
        builder = builder.with_region(ImsRegion.value_of("ap-southeast-1"))
    return builder.build()


@pytest.fixture(scope="module")
def client() -> ImsClient:
    return build_client()


@pytest.fixture
def fake():
    with FakeIms.seeded() as fake:
        yield fake


def raw(response) -> dict:
    return json.loads(response.raw_content)


def ops(*triples) -> list[UpdateImageRequestBody]:
    return [UpdateImageRequestBody(op=op, path=path, value=value) for op, path, value in triples]


def patch(client: ImsClient, image_id: str, *triples):
    return client.update_image(UpdateImageRequest(image_id=image_id, body=ops(*triples)))


def patch_error(client: ImsClient, image_id: str, *triples) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as info:
        patch(client, image_id, *triples)
    return info.value


def list_ids(client: ImsClient, **kwargs) -> list[str]:
    return [image["id"] for image in raw(client.list_images(ListImagesRequest(**kwargs)))["images"]]


# -- construction and samples ------------------------------------------------


def test_endpoint_defaults_to_region_and_strips_trailing_slash():
    assert FakeIms().endpoint == "https://ims.ap-southeast-1.myhuaweicloud.com"
    assert FakeIms(region="eu-west-101").endpoint == "https://ims.eu-west-101.myhuaweicloud.com"
    assert FakeIms(endpoint="https://ims.example.test/").endpoint == "https://ims.example.test"


def test_new_images_hold_values_as_real_ims_answers_hold_them():
    """Spellings and types of a recorded real list answer and IMS's field tables: a fake
    that stored only lower-case text would let spelling bugs pass every test."""
    image = FakeIms().add_image({})

    assert (image["__isregistered"], image["__lazyloading"], image["__support_kvm"]) == (
        "True",
        "True",
        "True",
    )
    assert image["__system_support_market"] is False and image["protected"] is False
    assert isinstance(image["min_ram"], int) and isinstance(image["min_disk"], int)
    assert isinstance(image["max_ram"], str) and isinstance(image["__image_size"], str)
    fleet = FakeIms()
    fleet.add_fleet(30, seed=3, bad_ratio=1.0)
    spellings = {i["hw_vif_multiqueue_enabled"] for i in fleet.images.values()}
    assert {"True", True, "False", False} <= spellings


def test_sample_images_are_fresh_copies():
    images = sample_images()
    assert images[0]["id"] == EXAMPLE_IMAGE_ID
    assert len(images) == 7
    images[0]["name"] = "changed"
    assert sample_images()[0]["name"] == "ims_test"


def test_add_image_fills_defaults_and_copies_input():
    fake = FakeIms(project_id="p1")
    attrs = {"name": "mine", "tags": ["a=b"]}
    image = fake.add_image(attrs)
    attrs["tags"].append("c=d")
    assert image["tags"] == ["a=b"]
    assert fake.images[image["id"]] is image
    assert image["owner"] == "p1"
    assert image["status"] == "active"
    assert image["__imagetype"] == "private"
    assert image["min_disk"] == 40
    assert image["created_at"].endswith("Z")


# -- listing ----------------------------------------------------------------------


def test_list_by_id_returns_the_image_as_stored(client, fake):
    response = client.list_images(ListImagesRequest(id=EXAMPLE_IMAGE_ID))
    body = raw(response)
    assert list(body) == ["images"]
    assert body["images"] == [fake.images[EXAMPLE_IMAGE_ID]]
    info = response.images[0]
    assert (info.name, info.hw_vif_multiqueue_enabled, info.min_disk) == ("ims_test", "true", 40)


def test_list_shows_own_and_public_images_only(client, fake):
    ids = list_ids(client)
    assert GOLD_ID in ids
    assert OTHER_TEAM_ID not in ids
    assert len(ids) == len(fake.images) - 1


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"name": "debian-12-base"}, [DEBIAN_ID]),
        ({"status": "queued"}, [QUEUED_ID]),
        ({"imagetype": "gold"}, [GOLD_ID]),
        ({"platform": "Windows"}, [WINDOWS_ID]),
        ({"os_type": "Other"}, [DATA_DISK_ID]),
        ({"visibility": "public"}, [GOLD_ID]),
        ({"virtual_env_type": "DataImage"}, [DATA_DISK_ID]),
        ({"owner": SAMPLE_PROJECT_ID, "platform": "Ubuntu"}, [EXAMPLE_IMAGE_ID]),
        ({"name": "Other_Team"}, []),
        ({"tag": "team=platform"}, [DEBIAN_ID]),
        ({"tag": "team=windows"}, [WINDOWS_ID]),
        ({"created_at": "gt:2025-03-01T00:00:00Z"}, [QUEUED_ID, DEBIAN_ID]),
        ({"created_at": "lte:2015-12-04T09:45:33Z"}, [EXAMPLE_IMAGE_ID]),
        ({"created_at": "eq:2025-01-28T10:44:19Z"}, [DATA_DISK_ID]),
    ],
)
def test_list_filters(client, fake, kwargs, expected):
    assert list_ids(client, **kwargs) == expected


def test_list_sorts_newest_first_then_by_id(client):
    fake = FakeIms()
    stamp = "2025-01-01T00:00:00Z"
    for image_id in ("b", "a", "c"):
        fake.add_image({"id": image_id, "created_at": stamp})
    fake.add_image({"id": "old", "created_at": "2024-01-01T00:00:00Z"})
    with fake:
        assert list_ids(client) == ["a", "b", "c", "old"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": 1001},
        {"marker": "no-such-image"},
        {"created_at": "after:2025-01-01T00:00:00Z"},
    ],
)
def test_list_rejects_bad_paging_and_filters(client, fake, kwargs):
    with pytest.raises(ClientRequestException) as info:
        client.list_images(ListImagesRequest(**kwargs))
    assert (info.value.status_code, info.value.error_code) == (400, "IMG.0001")


def test_paging_visits_every_image_once_despite_patches(client):
    fake = FakeIms()
    for _ in range(25):
        fake.add_image({})
    seen: list[str] = []
    marker = None
    with fake:
        while True:
            page = list_ids(client, limit=7, marker=marker) if marker else list_ids(client, limit=7)
            if not page:
                break
            assert len(page) <= 7
            seen.extend(page)
            marker = page[-1]
            patch(client, page[0], ("replace", "/name", f"renamed {len(seen)}"))
    assert len(seen) == 25
    assert set(seen) == set(fake.images)
    assert [call.query.get("limit") for call in fake.reads] == ["7"] * 5


# -- updating -------------------------------------------------------------------


def test_replace_returns_full_image_and_updates_store(client, fake):
    before = copy.deepcopy(fake.images[EXAMPLE_IMAGE_ID])
    response = patch(
        client,
        EXAMPLE_IMAGE_ID,
        ("replace", "/name", "ims test 2"),
        ("replace", "/hw_firmware_type", "uefi"),
    )
    body = raw(response)
    stored = fake.images[EXAMPLE_IMAGE_ID]
    assert body == stored
    assert (response.name, response.hw_firmware_type) == ("ims test 2", "uefi")
    assert stored["updated_at"] > before["updated_at"]
    unchanged = {
        k: v for k, v in stored.items() if k not in ("name", "hw_firmware_type", "updated_at")
    }
    assert unchanged == {k: v for k, v in before.items() if k in unchanged}


def test_add_creates_or_overwrites_and_remove_deletes(client, fake):
    patch(
        client,
        WINDOWS_ID,
        ("add", "/hw_vif_multiqueue_enabled", "false"),
        ("add", "/hw_firmware_type", "uefi"),
        ("add", "/owner_team", "windows"),
        ("replace", "/owner_team", "win"),
        ("remove", "/__description", None),
        ("add", "/min_ram", "2048"),
        ("add", "/name", "名字 Win-2019_v1.0"),
    )
    image = fake.images[WINDOWS_ID]
    assert image["hw_vif_multiqueue_enabled"] == "false"
    assert image["hw_firmware_type"] == "uefi"
    assert image["owner_team"] == "win"
    assert "__description" not in image
    assert image["min_ram"] == 2048
    assert image["name"] == "名字 Win-2019_v1.0"


def test_remove_sends_no_value(client, fake):
    patch(client, DEBIAN_ID, ("remove", "/hw_vif_multiqueue_enabled", None))
    assert fake.patches[-1].body == [{"op": "remove", "path": "/hw_vif_multiqueue_enabled"}]


@pytest.mark.parametrize(
    ("image_id", "status", "code"),
    [
        ("3f0c9f52-0000-0000-0000-000000000000", 400, "IMG.0027"),  # IMS's table: HTTP 400
        (OTHER_TEAM_ID, 400, "IMG.0027"),
        (GOLD_ID, 400, "IMG.0047"),
        (QUEUED_ID, 400, "IMG.0046"),
        (DATA_DISK_ID, 400, "IMG.0168"),
    ],
)
def test_image_level_errors(client, fake, image_id, status, code):
    error = patch_error(client, image_id, ("replace", "/name", "x"))
    assert (error.status_code, error.error_code) == (status, code)
    assert error.request_id


def test_protected_image_is_rejected(client, fake):
    fake.images[DEBIAN_ID]["protected"] = True
    error = patch_error(client, DEBIAN_ID, ("replace", "/name", "x"))
    assert (error.status_code, error.error_code) == (400, "IMG.0028")


@pytest.mark.parametrize(
    ("triple", "code"),
    [
        (("move", "/name", "x"), "IMG.0001"),
        (("replace", "name", "x"), "IMG.0001"),
        (("replace", "/name/first", "x"), "IMG.0001"),
        (("replace", "/", "x"), "IMG.0001"),
        (("replace", "/status", "deleted"), "IMG.0001"),
        (("add", "/owner", SAMPLE_PROJECT_ID), "IMG.0001"),
        (("add", "/__os_version", "Debian 13"), "IMG.0001"),
        (("add", "/CostCenter", "42"), "IMG.0001"),
        (("remove", "/name", None), "IMG.0001"),
        (("replace", "/not_there", "x"), "IMG.0001"),
        (("remove", "/not_there", None), "IMG.0001"),
        (("add", "/__description", None), "IMG.0001"),
        (("add", "/__description", 5), "IMG.0001"),
        (("add", "/hw_vif_multiqueue_enabled", True), "IMG.0001"),
        (("add", "/hw_vif_multiqueue_enabled", "yes"), "IMG.0001"),
        (("replace", "/name", "n" * 129), "IMG.0002"),
        (("replace", "/name", ""), "IMG.0003"),
        (("replace", "/name", " padded"), "IMG.0003"),
        (("replace", "/name", "padded "), "IMG.0003"),
        (("replace", "/name", "bad/name"), "IMG.0003"),
        (("replace", "/__description", "d" * 1025), "IMG.0004"),
        (("replace", "/__description", "<b>bold</b>"), "IMG.0054"),
        (("replace", "/__description", "line\r\nbreak"), "IMG.0054"),
        (("add", "/hw_firmware_type", "UEFI"), "IMG.0141"),
        (("replace", "/min_ram", "1GB"), "IMG.0055"),
        (("add", "/max_ram", "-1"), "IMG.0055"),
    ],
)
def test_operation_errors(client, fake, triple, code):
    error = patch_error(client, EXAMPLE_IMAGE_ID, triple)
    assert (error.status_code, error.error_code) == (400, code)


def test_limits_are_inclusive(client, fake):
    patch(
        client,
        EXAMPLE_IMAGE_ID,
        ("replace", "/name", "n" * 128),
        ("replace", "/__description", "d" * 1024),
    )
    assert len(fake.images[EXAMPLE_IMAGE_ID]["name"]) == 128


def test_one_bad_operation_changes_nothing(client, fake):
    before = copy.deepcopy(fake.images[EXAMPLE_IMAGE_ID])
    error = patch_error(
        client,
        EXAMPLE_IMAGE_ID,
        ("replace", "/name", "good"),
        ("add", "/hw_firmware_type", "uefi"),
        ("add", "/hw_firmware_type", "efi"),
    )
    assert error.error_code == "IMG.0141"
    assert fake.images[EXAMPLE_IMAGE_ID] == before


def test_empty_operation_list(client, fake):
    with pytest.raises(ClientRequestException) as info:
        client.update_image(UpdateImageRequest(image_id=EXAMPLE_IMAGE_ID, body=[]))
    assert (info.value.status_code, info.value.error_code) == (400, "IMG.0007")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "IMG.0007"),
        (b"{not json", "IMG.0001"),
        (b'{"op": "replace", "path": "/name", "value": "x"}', "IMG.0001"),
        (b'["replace"]', "IMG.0001"),
    ],
)
def test_malformed_bodies(body, code):
    fake = FakeIms.seeded()
    url = f"{fake.endpoint}/v2/cloudimages/{EXAMPLE_IMAGE_ID}"
    status, headers, payload = fake.dispatch("PATCH", url, SIGNED, body)
    assert status == 400
    assert json.loads(payload)["error"]["code"] == code
    assert headers["Content-Type"] == "application/json"


# -- authentication, routing, recording ----------------------------------------


def test_unsigned_request_is_rejected(fake):
    url = f"{fake.endpoint}/v2/cloudimages/{EXAMPLE_IMAGE_ID}"
    response = requests.patch(url, json=[{"op": "replace", "path": "/name", "value": "x"}])
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "APIGW.0301"
    assert response.headers["X-Request-Id"]
    assert fake.images[EXAMPLE_IMAGE_ID]["name"] == "ims_test"


def test_wrong_project_header_is_rejected(fake):
    headers = {"authorization": SIGNED["Authorization"], "x-project-id": "someone-else"}
    response = requests.get(f"{fake.endpoint}/v2/cloudimages", headers=headers)
    assert response.status_code == 401
    headers["x-project-id"] = SAMPLE_PROJECT_ID
    assert requests.get(f"{fake.endpoint}/v2/cloudimages", headers=headers).status_code == 200


def test_unknown_api_and_foreign_urls(fake):
    response = requests.get(f"{fake.endpoint}/v2/images/{EXAMPLE_IMAGE_ID}", headers=SIGNED)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error == {
        "code": "APIGW.0101",
        "message": "The API does not exist or has not been published",
    }
    with pytest.raises(requests.ConnectionError):
        requests.get("https://ecs.ap-southeast-1.myhuaweicloud.com/v1/servers")


def test_calls_are_recorded(client, fake):
    list_ids(client, id=EXAMPLE_IMAGE_ID)
    patch(client, EXAMPLE_IMAGE_ID, ("replace", "/name", "recorded"))
    patch_error(client, GOLD_ID, ("replace", "/name", "nope"))
    assert [(c.method, c.status) for c in fake.calls] == [
        ("GET", 200),
        ("PATCH", 200),
        ("PATCH", 400),
    ]
    read = fake.reads[0]
    assert isinstance(read, FakeCall)
    assert (read.path, read.query, read.body) == ("/v2/cloudimages", {"id": EXAMPLE_IMAGE_ID}, None)
    first_patch = fake.patches[0]
    assert first_patch.path == f"/v2/cloudimages/{EXAMPLE_IMAGE_ID}"
    assert first_patch.body == [{"op": "replace", "path": "/name", "value": "recorded"}]
    assert first_patch.headers["X-Project-Id"] == SAMPLE_PROJECT_ID
    fake.reset_calls()
    assert fake.calls == []


def test_start_and_stop_without_with(client):
    fake = FakeIms.seeded()
    fake.start()
    try:
        assert EXAMPLE_IMAGE_ID in list_ids(client)
    finally:
        fake.stop()
    fake.stop()  # stopping twice is harmless
    assert len(fake.calls) == 1


# -- jobs ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_show_job(client, fake):
    fake.add_job("job-ok", image_id=DEBIAN_ID)
    fake.add_job("job-failed", status="FAIL", fail_reason="disk too small")
    ok = client.show_job(ShowJobRequest(job_id="job-ok"))
    assert (ok.status, ok.job_type, ok.entities.image_id) == (
        "SUCCESS",
        "imsCreateImageByInstance",
        DEBIAN_ID,
    )
    assert fake.reads[-1].path == f"/v1/{SAMPLE_PROJECT_ID}/jobs/job-ok"
    failed = raw(client.show_job(ShowJobRequest(job_id="job-failed")))
    assert failed["status"] == "FAIL"
    assert failed["fail_reason"] == "disk too small"
    assert failed["entities"] == {}
    assert set(failed) == {
        "status",
        "job_id",
        "job_type",
        "begin_time",
        "end_time",
        "error_code",
        "fail_reason",
        "entities",
    }
    with pytest.raises(ClientRequestException) as info:
        client.show_job(ShowJobRequest(job_id="missing"))
    assert info.value.status_code == 404


def test_job_moves_init_running_then_final(client, fake):
    fake.add_job("job-slow", image_id=DEBIAN_ID, pending_reads=3)
    fake.add_job("job-doomed", status="FAIL", fail_reason="no space", pending_reads=1)

    seen = [raw(client.show_job(ShowJobRequest(job_id="job-slow"))) for _ in range(5)]
    assert [j["status"] for j in seen] == ["INIT", "RUNNING", "RUNNING", "SUCCESS", "SUCCESS"]
    # as ShowJobProgress documents a running job: no end time yet, a progress, a task
    assert seen[1]["end_time"] == "" and 0 < seen[1]["entities"]["process_percent"] < 1
    assert seen[1]["entities"]["current_task"]
    assert seen[3]["entities"]["image_id"] == DEBIAN_ID and seen[3]["end_time"]
    doomed = [raw(client.show_job(ShowJobRequest(job_id="job-doomed")))["status"] for _ in range(2)]
    assert doomed == ["INIT", "FAIL"]


def test_image_moves_queued_saving_then_final_and_is_patchable_only_when_active(client, fake):
    slow = fake.add_image({"name": "slow"}, pending_reads=2)
    broken = fake.add_image({"name": "broken"}, pending_reads=1, final_status="killed")

    def status(image_id):
        return raw(client.list_images(ListImagesRequest(id=image_id)))["images"][0]["status"]

    assert patch_error(client, slow["id"], ("add", "/x", "1")).error_code == "IMG.0046"
    assert [status(slow["id"]) for _ in range(3)] == ["queued", "saving", "active"]
    assert raw(patch(client, slow["id"], ("add", "/x", "1")))["x"] == "1"
    assert [status(broken["id"]) for _ in range(3)] == ["queued", "killed", "killed"]


def test_show_job_for_another_project_is_rejected(fake):
    fake.add_job("job-ok")
    response = requests.get(f"{fake.endpoint}/v1/another-project/jobs/job-ok", headers=SIGNED)
    assert response.status_code == 401


# -- loopback server -----------------------------------------------------------


def test_serve_works_with_the_sdk():
    fake = FakeIms.seeded()
    with fake.serve() as endpoint:
        assert endpoint.startswith("http://127.0.0.1:")
        loopback_client = build_client(endpoint)
        assert loopback_client.list_images(ListImagesRequest(id=DEBIAN_ID)).images[0].name == (
            "debian-12-base"
        )
        patch(loopback_client, DEBIAN_ID, ("replace", "/name", "debian-12-served"))
        error = patch_error(loopback_client, GOLD_ID, ("replace", "/name", "x"))
        assert (error.status_code, error.error_code) == (400, "IMG.0047")
    assert fake.images[DEBIAN_ID]["name"] == "debian-12-served"
    assert [c.status for c in fake.calls] == [200, 200, 400]


def test_the_fake_reads_the_attribute_table(client, fake):
    """The fake refuses what the table says IMS manages, takes every patchable attribute with
    a value the table allows, and stores min_ram as IMS does (a number)."""
    from imsguard.attributes import PATCHABLE, SYSTEM_ATTRIBUTES, TABLE

    for name in sorted(SYSTEM_ATTRIBUTES - {"name"}):
        assert patch_error(client, EXAMPLE_IMAGE_ID, ("add", f"/{name}", "1")).status_code == 400
    for name in sorted(PATCHABLE - {"name"}):
        row = TABLE[name]
        value = {"boolean": "true", "whole_number": "2048"}.get(row.type) or (
            row.allowed[0] if row.allowed else "0" if name == "enterprise_project_id" else "x"
        )
        image = raw(patch(client, EXAMPLE_IMAGE_ID, ("add", f"/{name}", value)))
        assert image[name] == (2048 if name == "min_ram" else value), name


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        ("__support_kvm", "True", "True"),  # as IMS returns it: a revert sends it back
        ("hw_vif_multiqueue_enabled", "False", "False"),
        ("min_ram", "02048", 2048),  # digits, stored as a number
        ("max_ram", "1234567890", "1234567890"),
        ("__support_kvm_gpu_type", "", ""),
        ("enterprise_project_id", "my-project", "my-project"),  # IMS checks it elsewhere
    ],
)
def test_the_fake_takes_what_ims_takes_not_what_a_policy_may_say(client, fake, name, value, stored):
    image = raw(patch(client, EXAMPLE_IMAGE_ID, ("add", f"/{name}", value)))
    assert image[name] == stored


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("hw_firmware_type", "UEFI", "IMG.0141"),
        ("min_ram", "2k", "IMG.0055"),
        ("__support_kvm", "maybe", "IMG.0001"),
    ],
)
def test_the_fake_refuses_values_with_ims_codes(client, fake, name, value, code):
    error = patch_error(client, EXAMPLE_IMAGE_ID, ("add", f"/{name}", value))
    assert (error.status_code, error.error_code) == (400, code)
