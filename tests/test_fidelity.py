"""Huawei Cloud as its documents and recorded responses show it: value spellings, flow
control, the job API, paging. Through the handler and the real SDK against the fake IMS."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import load_event, use_policy
from imsguard.app import handler
from imsguard.attributes import same_value
from imsguard.uefi import is_uefi_capable
from imsguard_tools.testing import EXAMPLE_IMAGE_ID, EXAMPLE_JOB_ID, SAMPLE_PROJECT_ID, FakeIms


def recorded_json(name):
    return json.loads((Path(__file__).parent / "recorded" / name).read_text(encoding="utf-8"))


FIX_SAMPLE = [
    {"op": "replace", "path": "/name", "value": "ims-test"},
    {"op": "replace", "path": "/hw_firmware_type", "value": "uefi"},
]


@pytest.mark.parametrize(
    ("key", "current", "wanted", "same"),
    [
        ("hw_vif_multiqueue_enabled", "True", "true", True),
        ("hw_vif_multiqueue_enabled", True, "true", True),
        ("hw_vif_multiqueue_enabled", " TRUE ", "true", True),
        ("hw_vif_multiqueue_enabled", "False", "true", False),
        ("hw_vif_multiqueue_enabled", False, "false", True),
        ("hw_vif_multiqueue_enabled", None, "false", False),  # absent is not "false"
        ("__support_kvm_new_flag", "True", "true", True),  # a flag IMS adds later
        ("__support_xen_gpu_type", "M60", "m60", False),  # a *_type is text, not a flag
        ("min_ram", 1024, "1024", True),
        ("min_ram", "01024", "1024", True),
        ("min_ram", 1024.0, "1024", True),
        ("min_ram", 2048, "1024", False),
        ("max_ram", "0", "0", True),
        ("min_ram", "²", "2", False),  # not an ASCII digit
        ("min_ram", "0" * 5000 + "7", "7", True),  # longer than int() takes
        ("min_ram", "1" * 5000, "1" * 4999, False),
        ("__description", "True", "true", False),  # text compares exactly
        ("__description", "0010", "10", False),
        ("custom_team", "Web", "web", False),
    ],
)
def test_values_compare_by_what_they_mean(key, current, wanted, same):
    assert same_value(key, current, wanted) is same


@pytest.fixture
def fleet():
    with FakeIms(project_id=SAMPLE_PROJECT_ID) as fake:
        yield fake


SPELLINGS_POLICY = """\
version: 1
rules:
  - name: multiqueue
    kind: set
    set: {hw_vif_multiqueue_enabled: "true", __support_kvm: "true"}
  - name: memory
    kind: set
    set: {min_ram: "1024", max_ram: "0"}
"""


def test_a_fleet_in_imss_own_spellings_is_patched_once_then_never_again(fleet, context, tmp_path):
    use_policy(context, tmp_path, SPELLINGS_POLICY)
    holds = {  # what each image holds, and what a PATCH must change (by meaning)
        "a": (
            {
                "hw_vif_multiqueue_enabled": "True",
                "__support_kvm": "True",
                "min_ram": 1024,
                "max_ram": "0",
            },
            {},
        ),
        "b": (
            {
                "hw_vif_multiqueue_enabled": True,
                "__support_kvm": "true",
                "min_ram": "1024",
                "max_ram": 0,
            },
            {},
        ),
        "c": (
            {
                "hw_vif_multiqueue_enabled": "False",
                "__support_kvm": "True",
                "min_ram": 1024,
                "max_ram": "0",
            },
            {"hw_vif_multiqueue_enabled": "true"},
        ),
        "d": (
            {
                "hw_vif_multiqueue_enabled": False,
                "__support_kvm": "False",
                "min_ram": 0,
                "max_ram": "0",
            },
            {"hw_vif_multiqueue_enabled": "true", "__support_kvm": "true", "min_ram": "1024"},
        ),
        "e": (
            {
                "hw_vif_multiqueue_enabled": "TRUE",
                "__support_kvm": True,
                "min_ram": 2048,
                "max_ram": "0",
            },
            {"min_ram": "1024"},
        ),
    }
    ids = {
        name: fleet.add_image({"name": name, **attrs})["id"] for name, (attrs, _) in holds.items()
    }

    first = handler({"action": "sweep"}, context)

    sent = {
        call.path.rsplit("/", 1)[1]: {op["path"][1:]: op["value"] for op in call.body}
        for call in fleet.patches
    }
    assert sent == {ids[name]: change for name, (_, change) in holds.items() if change}
    assert first["summary"] == {"compliant": 2, "updated": 3}
    fleet.reset_calls()

    second = handler({"action": "sweep"}, context)

    assert fleet.patches == []
    assert second["summary"] == {"compliant": 5}


def test_the_generated_fleet_in_mixed_spellings_settles_after_one_sweep(fleet, context):
    out_of_line = fleet.add_fleet(300, seed=7)

    first = handler({"action": "sweep"}, context)
    fleet.reset_calls()
    second = handler({"action": "sweep"}, context)

    assert first["summary"]["updated"] == len(fleet.images) - first["summary"]["compliant"]
    assert first["summary"]["updated"] == out_of_line
    assert fleet.patches == [] and second["summary"] == {"compliant": 300}


@pytest.mark.parametrize("spelling", ["True", "true", True, "TRUE"])
def test_an_arm_image_is_known_in_every_spelling_so_bios_is_refused(
    fake, context, tmp_path, spelling
):
    use_policy(
        context,
        tmp_path,
        "version: 1\nrules:\n  - name: boot\n    kind: set\n    set: {hw_firmware_type: bios}\n",
    )
    arm = fake.add_image({"__support_arm": spelling, "hw_firmware_type": "uefi"})

    result = handler({"image_id": arm["id"]}, context)

    assert fake.patches == []
    assert "ARM images boot in UEFI mode only" in result["results"][0]["rules"][0]["reason"]


@pytest.mark.parametrize("spelling", ["True", True])
def test_a_protected_image_is_known_in_every_spelling(fake, context, spelling):
    image = fake.add_image({"name": "Protected_One", "protected": spelling})

    result = handler({"image_id": image["id"]}, context)

    assert fake.patches == []
    assert result["results"][0]["outcome"] == "not_applicable"


def test_max_ram_zero_means_no_maximum_as_real_images_hold_it():
    from imsguard.policy import PolicyError, parse_policy

    def policy(max_ram):
        return {
            "version": 1,
            "rules": [
                {"name": "a", "kind": "set", "set": {"min_ram": "4096"}},
                {"name": "b", "kind": "set", "set": {"max_ram": max_ram}},
            ],
        }

    parse_policy(policy("0"))  # real images: min_ram 1024 beside max_ram "0"
    with pytest.raises(PolicyError, match="max_ram 1024 is below min_ram 4096"):
        parse_policy(policy("1024"))


# -- flow control ------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["IMG.0060", "IMG.0149", "IMG.0187", "IMG.0061"])
@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_ims_flow_control_is_retried_like_throttling(fake, context, clock, code, method):
    fake.fail_next(method, 400, code, times=2)

    result = handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    assert result["results"][0]["outcome"] == "updated"
    assert fake.patches[-1].body == FIX_SAMPLE and fake.patches[-1].status == 200
    assert [c.status for c in fake.calls if c.method == method][:2] == [400, 400]
    assert len(clock.sleeps) == 2  # a backoff before each retry


def test_flow_control_that_persists_raises_for_functiongraph_to_retry(fake, context):
    from imsguard.app import TransientFailure

    fake.fail_next("PATCH", 400, "IMG.0060", times=4)  # the first try and 3 retries

    with pytest.raises(TransientFailure):
        handler({"image_id": EXAMPLE_IMAGE_ID}, context)


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (400, "IMG.0027", "not_applicable"),
        (404, "IMG.0027", "not_applicable"),
        (400, "IMG.0144", "not_applicable"),
        (400, "IMG.0168", "error"),
        (400, "IMG.0035", "error"),
        (403, "IMG.0026", "error"),
        (404, "APIGW.0101", "error"),
    ],
)
def test_ims_codes_decide_the_outcome_whatever_the_status(fake, context, status, code, outcome):
    fake.fail_next("PATCH", status, code)

    result = handler({"image_id": EXAMPLE_IMAGE_ID}, context)

    assert result["results"][0]["outcome"] == outcome
    assert len(fake.patches) == 1  # never retried


# -- the job API ---------------------------------------------------------------------------


def test_jobs_are_read_with_show_job_progress(fake, context):
    result = handler(load_event("cts_create_image_job_only.json"), context)

    assert next(c.path for c in fake.reads) == f"/v1/cloudimages/job/{EXAMPLE_JOB_ID}"
    assert not any("/jobs/" in c.path for c in fake.calls)
    assert result["results"][0]["outcome"] == "updated"


def test_a_region_without_show_job_progress_falls_back_to_show_job_once(fake, context):
    fake.job_progress_api = False
    event = load_event("cts_create_image_job_only.json")

    first = handler(event, context)
    paths = [c.path for c in fake.reads]
    fake.reset_calls()
    handler(event, context)

    assert paths[:2] == [
        f"/v1/cloudimages/job/{EXAMPLE_JOB_ID}",
        f"/v1/{SAMPLE_PROJECT_ID}/jobs/{EXAMPLE_JOB_ID}",
    ]
    assert first["results"][0]["outcome"] == "updated"
    # the client remembers (until the credentials rotate): the next event asks the old API
    assert fake.reads[0].path == f"/v1/{SAMPLE_PROJECT_ID}/jobs/{EXAMPLE_JOB_ID}"


def test_an_unknown_job_is_not_taken_for_a_missing_api(fake, context):
    fake.jobs.clear()

    result = handler(load_event("cts_create_image_job_only.json"), context)

    # read again (a new job may not be found at first), never through the old API
    assert {c.path for c in fake.reads} == {f"/v1/cloudimages/job/{EXAMPLE_JOB_ID}"}
    assert result["results"][0]["outcome"] == "not_applicable"


def test_a_running_job_reads_as_show_job_progress_documents_it(fake, context, clock):
    fake.add_job("ff8080814dbd65d7014dbe0d84db0099", image_id=EXAMPLE_IMAGE_ID, pending_reads=2)
    event = load_event("cts_create_image_job_only.json")
    event["cts"]["response"] = '{"job_id": "ff8080814dbd65d7014dbe0d84db0099"}'

    result = handler(event, context)

    job_reads = [c for c in fake.reads if "/job/" in c.path]
    assert len(job_reads) == 3 and result["results"][0]["outcome"] == "updated"


# -- OS versions and UEFI ------------------------------------------------------------------

UEFI_LISTED = [
    v
    for versions in recorded_json("ims_uefi_os_versions.json")["versions"].values()
    for v in versions
]
VALUE_TABLE = [
    v
    for versions in recorded_json("ims_os_version_values.json")["versions"].values()
    for v in versions
]


def spellings(version: str) -> list[str]:
    """The other ways IMS's own documents spell this version."""
    variants = {
        version,
        version.replace(" Server ", " server "),
        version.replace(" server ", " Server "),
    }
    for one, other in (
        ("Red Hat Linux Enterprise", "Redhat Linux Enterprise"),
        ("Red Hat Linux Enterprise", "Red Hat Enterprise Linux"),
        ("SUSE Linux Enterprise Server", "SUSE Enterprise Linux Server"),
        ("SUSE Linux Enterprise Server", "Novell SUSE Linux Enterprise Server"),
        ("openSUSE", "OpenSUSE"),
        ("Windows Server 2012 Essentials R2", "Windows Server 2012 R2 Essentials"),
    ):
        variants |= {v.replace(one, other) for v in variants}
    return sorted(variants)


@pytest.mark.parametrize("version", sorted({s for v in UEFI_LISTED for s in spellings(v)}))
def test_every_listed_uefi_version_is_known_in_every_documented_spelling(version):
    assert is_uefi_capable(version)


@pytest.mark.parametrize(
    "version",
    sorted(
        set(VALUE_TABLE)
        - {s for v in UEFI_LISTED for s in spellings(v)}
        - {
            # the value table's spellings of listed versions (point releases of listed Ubuntus)
            v
            for v in VALUE_TABLE
            if re.fullmatch(r"Ubuntu (19|18|16|14)\.04\.\d [sS]erver 64bit", v)
        }
    ),
)
def test_a_documented_version_missing_from_the_uefi_list_is_not_uefi_capable(version):
    assert not is_uefi_capable(version)


@pytest.mark.parametrize(
    "version",
    [
        "Ubuntu 18.04.2 server 64bit",
        "Ubuntu 16.04.3 Server 64bit",
        "Redhat Linux Enterprise 7.4 64bit",
        "SUSE Enterprise Linux Server 12 SP1 64bit",
        "Oracle Linux Server release 7.4 64bit",
        "Red Hat Linux Enterprise 6.6 32bit",
        "openEuler 22.03 SP1 64bit",
        "EulerOS 2.10 64bit",
    ],
)
def test_documented_spellings_named_by_the_issue_are_uefi_capable(version):
    assert is_uefi_capable(version)


@pytest.mark.parametrize(
    "version",
    [
        "EulerOS 2.9 64bit",  # in IMS's value table, not in the UEFI list
        "Huawei Cloud EulerOS 2.0 64bit",
        "Huawei Cloud EulerOS 1.1 64bit",  # in no list
        "SUSE Linux Enterprise Server 15 SP1 64bit",
        "Debian GNU/Linux 10.0.0 64bit",
        "Ubuntu 24.04 server 64bit",
        "Rocky Linux 9.2 64bit",
        "CentOS Stream 9 64bit",
        "Ubuntu 22.04 server 32bit",
        "Ubuntu 22.04 server",
        "Ubuntu 22.04 server 64bit beta",
        "Windows Server 2012 Essentials 64bit",
        "Windows Server 2008 R2 Datacenter 64bit",
        "Other(32 bit)",
        "",
        "ubuntu",
        "Red Hat Linux Enterprise 6.5 32bit",
        "Redhat Linux Enterprise 6.6 64bit",  # the list has 6.6 as 32bit only
    ],
)
def test_anything_else_fails_safe(version):
    assert not is_uefi_capable(version)


def test_huawei_cloud_euleros_is_not_taken_for_euleros(fake, context):
    hce = fake.add_image(
        {
            "__platform": "EulerOS",
            "__os_version": "Huawei Cloud EulerOS 2.0 64bit",
            "hw_firmware_type": "bios",
            "name": "hce",
        }
    )

    result = handler({"image_id": hce["id"]}, context)

    uefi = {r["rule"]: r for r in result["results"][0]["rules"]}["uefi-boot"]
    assert (uefi["verdict"], uefi["fix"]) == ("violation", "cannot_fix")
    assert all(c.body is None or "/hw_firmware_type" not in str(c.body) for c in fake.patches)


def test_the_patch_plan_skips_values_the_image_holds_in_another_spelling():
    from imsguard.evaluate import plan_patch

    image = {"hw_vif_multiqueue_enabled": "True", "min_ram": 2048, "max_ram": "0"}

    assert (
        plan_patch(image, {"hw_vif_multiqueue_enabled": "true", "min_ram": "2048", "max_ram": "0"})
        == ()
    )
    assert plan_patch(image, {"min_ram": "1024"}) == (
        {"op": "replace", "path": "/min_ram", "value": "1024"},
    )


def test_a_lost_answer_to_an_applied_patch_is_recognised_in_imss_spelling(fake, context, tmp_path):
    """IMS keeps min_ram as a number: the re-read after a timed-out PATCH shows 1024 for the
    "1024" sent, and that is applied, not a reason to send the PATCH again."""
    import requests

    use_policy(
        context,
        tmp_path,
        "version: 1\nrules:\n  - name: memory\n    kind: set\n    set: {min_ram: '1024'}\n",
    )
    image = fake.add_image({"min_ram": 0})
    fake.raise_next("PATCH", requests.exceptions.ReadTimeout(), after=True)

    result = handler({"image_id": image["id"]}, context)

    assert result["results"][0]["outcome"] == "updated"
    assert len(fake.patches) == 1 and fake.images[image["id"]]["min_ram"] == 1024


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_job_read_falls_back_to_the_traces_name(fake, context, status):
    """IMS documents no IAM action for its job APIs: an agency may be refused them."""
    fake.fail_next(
        "GET",
        status,
        "IMS.0003" if status == 403 else "APIGW.0301",
        "Policy doesn't allow ims:imageJobs:getPercentage to be performed.",
    )
    created = fake.add_image({"name": "web_server_01"})
    event = load_event("cts_create_image_name_only.json")
    event["cts"]["response"] = json.dumps({"job_id": EXAMPLE_JOB_ID})

    result = handler(event, context)

    assert [(r["image_id"], r["outcome"]) for r in result["results"]] == [
        (created["id"], "updated")
    ]
    assert "/job/" in fake.calls[0].path and fake.calls[0].status == status


def test_a_refused_job_read_is_reported_when_nothing_else_finds_the_image(fake, context):
    fake.fail_next("GET", 403, "IMS.0003", "Policy doesn't allow this action.")

    result = handler(load_event("cts_create_image_job_only.json"), context)

    (entry,) = result["results"]
    assert entry["outcome"] == "error" and entry["job_id"] == EXAMPLE_JOB_ID
    assert "HTTP 403" in entry["reason"] and "looked for without the job" in entry["reason"]
    assert fake.patches == []


def test_a_transient_failure_of_show_job_progress_is_retried_not_taken_for_a_missing_api(
    fake, context, clock
):
    fake.fail_next("GET", 503, "APIGW.0203", "Service unavailable")

    result = handler(load_event("cts_create_image_job_only.json"), context)

    job_reads = [c.path for c in fake.reads if "/job" in c.path]
    assert job_reads == [f"/v1/cloudimages/job/{EXAMPLE_JOB_ID}"] * 2
    assert result["results"][0]["outcome"] == "updated"


def test_show_job_progress_failing_after_retries_is_raised_not_taken_for_a_missing_api(
    fake, context, clock
):
    from imsguard.app import TransientFailure

    fake.fail_next("GET", 503, "APIGW.0203", "Service unavailable", times=4)

    with pytest.raises(TransientFailure):
        handler(load_event("cts_create_image_job_only.json"), context)

    assert not any("/jobs/" in c.path for c in fake.calls)  # the deprecated API untouched
