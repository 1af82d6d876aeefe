"""`imsguard invoke`: the same handler on an event file, shown for people or as JSON."""

from __future__ import annotations

import json
import re

import pytest

from helpers import EVENTS
from imsguard_tools.cli import main


def test_invoke_fake_shows_decision_and_the_patch_sent(capsys):
    status = main(["invoke", str(EVENTS / "cts_create_image.json"), "--fake"])

    out = capsys.readouterr().out
    assert status == 0
    assert "UPDATED" in out
    assert "-> replace /name = 'ims-test'" in out
    assert "PATCH /v2/cloudimages/33ad552d-1149-471c-8190-ff6776174a00 -> 200" in out
    assert '"path": "/hw_firmware_type", "value": "uefi"' in out


def test_invoke_fake_job_only_event_follows_the_seeded_job(capsys):
    status = main(["invoke", str(EVENTS / "cts_create_image_job_only.json"), "--fake"])

    out = capsys.readouterr().out
    assert status == 0
    assert "GET   /v1/cloudimages/job/ff8080814dbd65d7014dbe0d84db0013" in out
    assert "UPDATED" in out


def test_invoke_fake_dry_run_sends_nothing(capsys):
    status = main(["invoke", str(EVENTS / "cts_create_image.json"), "--fake", "--dry-run"])

    out = capsys.readouterr().out
    assert status == 0
    assert "WOULD_UPDATE" in out
    assert "PATCH" not in out


def test_invoke_json_output_is_the_handler_result(capsys):
    status = main(["invoke", str(EVENTS / "direct_image.json"), "--fake", "--output", "json"])

    result = json.loads(capsys.readouterr().out)
    assert status == 0
    assert result["results"][0]["outcome"] == "updated"


def test_invoke_with_a_broken_policy_fails(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nrules: [{name: x, kind: set, set: {min_ram: big}}]\n")

    status = main(["invoke", str(EVENTS / "direct_image.json"), "--fake", "--policy", str(policy)])

    out = capsys.readouterr().out
    assert status == 1
    assert "rule 'x'" in out and "min_ram" in out


def test_invoke_ignored_event_succeeds_and_says_why(capsys):
    status = main(["invoke", str(EVENTS / "cts_delete_image.json"), "--fake"])

    assert status == 0
    assert "ignored: IMS trace 'deleteImage' does not create or change" in capsys.readouterr().out


def test_invoke_unreadable_event_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")

    assert main(["invoke", str(bad), "--fake"]) == 2
    assert "cannot read event" in capsys.readouterr().err


ROOT = EVENTS.parents[1]
SAMPLE_IMAGE = ROOT / "tools/imsguard_tools/samples/example-image.json"
DEFAULT_POLICY = ROOT / "function/policy.yaml"


def test_validate_reports_every_problem_with_rule_field_and_line(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\n"
        "rules:\n"
        "  - name: boot\n"
        "    kind: set\n"
        "    match:\n"
        "      platfrom: Ubuntu\n"
        "    set: {hw_firmware_type: efi}\n"
        "  - name: names\n"
        "    kind: name\n"
        "    template: '{nope}'\n"
    )

    status = main(["validate", str(policy)])

    err = capsys.readouterr().err
    assert status == 1
    assert "rule 'boot' (rules[0]), field match.platfrom (line 6): Extra inputs" in err
    assert "rule 'boot' (rules[0]), field set (line 7): hw_firmware_type must be" in err
    assert "rule 'names' (rules[1]) (line 8): template: template field {nope} is unknown" in err


def test_validate_places_clashing_rules_on_their_lines(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\n"
        "rules:\n"
        "  - {name: a, kind: set, set: {hw_firmware_type: uefi}}\n"
        "  - name: b\n"
        "    kind: set\n"
        "    set:\n"
        "      hw_firmware_type: bios\n"
        "  - {name: b, kind: name}\n"
    )

    assert main(["validate", str(policy)]) == 1

    err = capsys.readouterr().err
    assert "rule 'b' (rules[1]), field set.hw_firmware_type (line 7): rules 'a' and 'b'" in err
    assert "rule 'b' (rules[2]), field name (line 8): two rules are named 'b'" in err


def test_validate_json_output(capsys):
    assert main(["validate", str(DEFAULT_POLICY), "--output", "json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report == {
        "policy": str(DEFAULT_POLICY),
        "valid": True,
        "problems": [],
        "rules": ["kebab-case-name", "uefi-boot", "nic-multiqueue"],
    }


def test_explain_the_sample_image(capsys):
    assert main(["explain", str(DEFAULT_POLICY), "--image", str(SAMPLE_IMAGE)]) == 0

    out = capsys.readouterr().out
    assert "kebab-case-name          violation      [fixed]" in out
    assert "if the function ran now: updated (2 attribute(s) changed)" in out
    assert "replace /hw_firmware_type = 'uefi'" in out


def test_explain_json_from_the_fake_by_id(capsys):
    status = main(
        [
            "explain",
            str(DEFAULT_POLICY),
            "--image-id",
            "33ad552d-1149-471c-8190-ff6776174a00",
            "--fake",
            "--output",
            "json",
        ]
    )

    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["outcome"] == "updated"
    assert [r["rule"] for r in report["rules"]] == [
        "kebab-case-name",
        "uefi-boot",
        "nic-multiqueue",
    ]


def test_explain_for_another_project_and_bad_input(tmp_path, capsys):
    assert (
        main(
            ["explain", str(DEFAULT_POLICY), "--image", str(SAMPLE_IMAGE), "--project-id", "f" * 32]
        )
        == 0
    )
    assert "ran now: not_applicable (owned by another project)" in capsys.readouterr().out
    assert main(["explain", str(DEFAULT_POLICY), "--image-id", "nope", "--fake"]) == 2
    assert main(["explain", str(DEFAULT_POLICY), "--image", str(tmp_path / "none.json")]) == 2


def test_test_command_runs_cases_and_fails_on_a_mismatch(tmp_path, capsys):
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n"
        "  - name: good\n"
        "    image: {name: ims_test}\n"
        "    expect: {rules: {kebab-case-name: violation}}\n"
        "  - name: bad\n"
        "    image: {name: ims_test}\n"
        "    expect: {outcome: compliant}\n"
        "  - name: bad verdict\n"
        "    image: {name: ims_test}\n"
        "    expect: {rules: {kebab-case-name: compliant}}\n"
        "  - name: bad fix\n"
        "    image: {name: ims_test}\n"
        "    expect: {fixes: {kebab-case-name: would_fix}}\n"
        "  - name: bad operations\n"
        "    image: {name: ims-test, hw_firmware_type: uefi,\n"
        "            hw_vif_multiqueue_enabled: 'true'}\n"
        "    expect: {operations: [{op: add, path: /x, value: y}]}\n"
    )

    status = main(["test", str(DEFAULT_POLICY), str(cases)])

    out = capsys.readouterr().out
    assert status == 1
    assert "PASS  good" in out and "FAIL  bad" in out
    assert "outcome: expected compliant, got updated" in out
    assert "rule kebab-case-name: expected compliant, got violation" in out
    assert "fix of kebab-case-name: expected would_fix, got fixed" in out
    assert "operations: expected [{'op': 'add', 'path': '/x', 'value': 'y'}], got []" in out
    assert "1 passed, 4 failed" in out


def test_test_command_refuses_a_broken_cases_file(tmp_path, capsys):
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases: [{name: x, image: {}, expect: {outcom: y}}]\n")

    assert main(["test", str(DEFAULT_POLICY), str(cases)]) == 2
    assert "expect.outcom" in capsys.readouterr().err


def test_schema_is_json_schema_of_the_policy(capsys):
    assert main(["schema"]) == 0

    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Policy"
    assert {"version", "mode", "exemptions", "rules"} <= set(schema["properties"])
    match = schema["$defs"]["Match"]["properties"]
    assert "not" in match
    assert {"type": "string"} in match["os_type"]["anyOf"]  # os_type: Linux is allowed


def test_json_output_reports_bad_input_as_json(tmp_path, capsys):
    status = main(
        ["explain", str(DEFAULT_POLICY), "--image", str(tmp_path / "none.json"), "--output", "json"]
    )

    assert status == 2
    assert "cannot read image" in json.loads(capsys.readouterr().out)["error"]


def test_sweep_command_on_the_fake(capsys):
    status = main(["sweep", "--fake", "--images", "40"])

    out = capsys.readouterr().out
    assert status == 0
    assert "examined 44 image(s)" in out  # 40 generated + the active private samples
    assert "kebab-case-name" in out and "changed:" in out


def test_sweep_command_json_and_a_dry_run(capsys):
    status = main(["sweep", "--fake", "--images", "10", "--dry-run", "--output", "json"])

    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["dry_run"] is True
    assert "updated" not in report["summary"]


def test_package_command_defaults_to_the_templates_python(monkeypatch, capsys, tmp_path):
    from imsguard_tools import package

    seen = {}

    def fake_build(python_version, out_dir=None, policy=None, policy_name=None):
        seen.update(version=python_version, policy=policy, name=policy_name)
        return package.PackageResult(tmp_path / "x.zip", 7 * 2**20, 1264, "ab" * 32)

    monkeypatch.setattr(package, "build_package", fake_build)

    assert main(["package"]) == 0
    assert seen == {"version": "3.10", "policy": DEFAULT_POLICY, "name": "policy.yaml"}
    assert "7.0 MB, 1264 files, Python 3.10" in capsys.readouterr().out


def test_package_command_refuses_a_bad_version(capsys):
    assert main(["package", "--python-version", "2.7"]) == 2
    assert "2.7" in capsys.readouterr().err


def test_iam_policy_prints_the_agencys_policy_from_the_calls_declarations(capsys):
    from imsguard_tools.iam import all_permissions, needed, policy_document
    from imsguard_tools.template import load_template, template_settings

    assert main(["iam-policy"]) == 0

    out, err = capsys.readouterr()
    printed = json.loads(out)  # stdout holds the policy alone: it can go to IAM as it is
    settings = template_settings(ROOT / "template.yaml")
    assert printed == policy_document(needed(all_permissions(), settings))
    # exactly the actions IMS's and FunctionGraph's permissions tables document
    assert printed == {
        "Version": "1.1",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "functiongraph:function:invokeAsync",
                    "ims:images:list",
                    "ims:images:update",
                ],
            }
        ],
    }
    template = load_template(ROOT / "template.yaml")
    assert printed["Statement"][0]["Action"] == sorted(template.function.agency.permissions)
    assert re.search(r"GET /v1/\{project_id\}/jobs/\{job_id\} +no IAM action documented", err)
    assert "ims:imageJobs:getPercentage in one edition only" in err


def test_iam_policy_follows_the_templates_settings_even_while_its_agency_is_wrong(tmp_path, capsys):
    text = (
        (ROOT / "template.yaml")
        .read_text()
        .replace('IMSGUARD_SWEEP_CONTINUE: "true"', 'IMSGUARD_SWEEP_CONTINUE: "false"')
    )
    (tmp_path / "template.yaml").write_text(text)

    assert (
        main(["iam-policy", "--template", str(tmp_path / "template.yaml"), "--output", "json"]) == 0
    )

    (statement,) = json.loads(capsys.readouterr().out)["Statement"]
    assert "functiongraph:function:invokeAsync" not in statement["Action"]
    assert statement["Action"] == ["ims:images:list", "ims:images:update"]


@pytest.mark.parametrize(
    "text",
    ["", "- a list\n", "function: {settings: [1]}\n", "function: {settings: {IMSGUARD_X: 1}}\n"],
)
def test_iam_policy_refuses_what_is_not_a_template(tmp_path, capsys, text):
    (tmp_path / "t.yaml").write_text(text)

    assert main(["iam-policy", "--template", str(tmp_path / "t.yaml")]) == 2

    assert "function.settings" in capsys.readouterr().err


def test_iam_policy_refuses_broken_settings(tmp_path, capsys):
    text = (
        (ROOT / "template.yaml")
        .read_text()
        .replace('IMSGUARD_SWEEP_CONTINUE: "true"', 'IMSGUARD_SWEEP_CONTINUE: "sure"')
    )
    (tmp_path / "template.yaml").write_text(text)

    assert main(["iam-policy", "--template", str(tmp_path / "template.yaml")]) == 2

    assert "IMSGUARD_SWEEP_CONTINUE='sure' is not a boolean" in capsys.readouterr().err


def test_the_readmes_permission_table_is_the_calls_declarations():
    from imsguard_tools.iam import all_permissions

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Permissions (IAM)") : readme.index("## Assumptions")]
    rows = re.findall(
        r"^\| `([^`]+)` \| (?:`([^`]+)`|none documented(?: \(`([^`]+)`[^|]*)?) \|", section, re.M
    )

    assert rows == [(p.api, p.action or "", p.unconfirmed or "") for p in all_permissions()]


@pytest.mark.parametrize(
    "name",
    [
        "cts_copy_image.json",
        "cts_create_image_name_only.json",
        "cts_native_create_image.json",
        "cts_native_delete_tag.json",
    ],
)
def test_invoke_fake_has_what_every_sample_event_points_at(capsys, name):
    # Copies and uploads are polled: on the fake clock every test's contexts get.
    assert main(["invoke", str(EVENTS / name), "--fake"]) == 0

    out = capsys.readouterr().out
    assert "UPDATED" in out and "ERROR" not in out


@pytest.fixture
def cloud_settings(monkeypatch, fake):
    """The command's own settings (as from a shell) pointing at the fake IMS."""
    monkeypatch.setenv("IMSGUARD_IMS_ENDPOINT", fake.endpoint)
    monkeypatch.setenv("IMSGUARD_PROJECT_ID", fake.project_id)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "AK")
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "SK")
    return fake


def test_revert_undoes_a_sweep_image_by_image(cloud_settings, tmp_path, capsys):
    fake = cloud_settings
    main(["sweep", "--output", "json"])  # the sample images, against the same fake
    report = tmp_path / "report.json"
    report.write_text(capsys.readouterr().out)
    changed = json.loads(report.read_text())["changed"]
    moved = changed[0]["image_id"]
    key = next(iter(changed[0]["before"]))
    fake.images[moved][key] = "changed-by-hand"  # a person changed it since
    fake.reset_calls()

    dry = main(["revert", str(report), "--dry-run", "--output", "json"])
    would = json.loads(capsys.readouterr().out)
    status = main(["revert", str(report)])

    out = capsys.readouterr().out
    assert (dry, status) == (0, 0)
    assert would["summary"] == {"changed_since": 1, "would_revert": len(changed) - 1}
    assert len(fake.patches) == len(changed) - 1  # the dry run sent nothing
    assert f"{moved}: changed_since" in out
    for entry in changed:
        if entry["image_id"] != moved:
            image = fake.images[entry["image_id"]]
            assert all(
                image.get(key) == value
                for key, value in entry["before"].items()
                if value is not None
            )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{", "cannot revert"),
        ("[]", "a report is a JSON object"),
        (
            '{"results": [{"image_id": "33ad552d-1149-471c-8190-ff6776174a00", '
            '"outcome": "updated", "operations": [{"op": "add", "path": "/x", "value": "1"}]}]}',
            "before values",
        ),
    ],
)
def test_revert_refuses_what_it_cannot_use_and_changes_nothing(
    cloud_settings, tmp_path, capsys, text, words
):
    (tmp_path / "r.json").write_text(text)

    assert main(["revert", str(tmp_path / "r.json")]) == 2

    assert words in capsys.readouterr().err and cloud_settings.calls == []
