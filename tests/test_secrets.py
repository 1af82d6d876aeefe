"""AK, SK and token never appear in logs, results or exception text, at any level."""

from __future__ import annotations

import json
import logging

import pytest
import requests

from helpers import load_event
from imsguard.app import TransientFailure, handler
from imsguard_tools.local_context import LocalContext
from imsguard_tools.testing import EXAMPLE_IMAGE_ID

AK, SK, TOKEN = "AKFAKE00SECRETACCESS", "SKFAKE00SECRETSECRET0000", "TOKENFAKE00SECRETTOKEN"


@pytest.fixture
def secret_context():
    return LocalContext(
        access_key=AK,
        secret_key=SK,
        security_token=TOKEN,
        user_data={"IMSGUARD_LOG_LEVEL": "DEBUG"},
    )


@pytest.fixture
def everything(caplog):
    """Every logger, the SDK's and urllib3's included, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in ("HuaweiCloud-SDK-ImsClient", "urllib3", "requests"):
        logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger(name).propagate = True
    yield caplog
    logging.getLogger("HuaweiCloud-SDK-ImsClient").propagate = False


def assert_clean(*texts):
    for text in texts:
        for secret in (AK, SK, TOKEN):
            assert secret not in text


@pytest.mark.parametrize(
    "fault",
    [
        None,
        ("GET", 401, "APIGW.0301", f"Incorrect IAM authentication information: {AK}"),
        ("PATCH", 403, "IMG.0047", f"token {TOKEN} may not do this"),
        ("PATCH", 400, "IMG.0001", f"bad request signed with {SK}"),
    ],
)
def test_no_secret_in_logs_or_results(fake, secret_context, everything, capsys, fault):
    if fault:
        fake.fail_next(*fault)

    result = handler(load_event("cts_create_image.json"), secret_context)

    out = capsys.readouterr()
    assert_clean(out.out, out.err, everything.text, json.dumps(result))
    assert fake.calls  # the requests were signed with the secrets: they were used
    if fault:  # the fault was hit: its message, holding a secret, reached the handler
        assert any((c.method, c.status) == fault[:2] for c in fake.calls)


def test_no_secret_in_the_transient_failure(fake, secret_context, everything, capsys):
    fake.fail_next("GET", 503, "APIGW.0203", f"upstream {SK} down", times=4)

    with pytest.raises(TransientFailure) as failure:
        handler({"image_id": EXAMPLE_IMAGE_ID}, secret_context)

    out = capsys.readouterr()
    assert_clean(str(failure.value), out.out, out.err, everything.text)


def test_no_secret_when_the_transport_fails(fake, secret_context, everything, capsys):
    fake.raise_next("PATCH", requests.exceptions.ConnectionError(f"reset while sending {SK}"))
    fake.before_request = lambda method, path: (  # after the PATCH, the re-read fails too
        fake.fail_next("GET", 500, "IMG.0500", TOKEN, times=4) if method == "PATCH" else None
    )

    with pytest.raises(TransientFailure) as failure:
        handler({"image_id": EXAMPLE_IMAGE_ID}, secret_context)

    out = capsys.readouterr()
    assert_clean(str(failure.value), out.out, out.err, everything.text)
    assert [c.method for c in fake.calls][:3] == ["GET", "PATCH", "GET"]
    assert "may have been applied" in str(failure.value) or "1 image" in str(failure.value)


def test_the_sdk_logger_loses_secrets_too(fake, secret_context):
    """Whatever handler someone attaches to the SDK's own logger sees no secret."""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    sdk_logger = logging.getLogger("HuaweiCloud-SDK-ImsClient")
    keep = Keep()
    sdk_logger.addHandler(keep)
    try:
        fake.raise_next(
            "GET",
            requests.exceptions.ConnectionError(
                requests.packages.urllib3.exceptions.ProtocolError(f"reset by {SK}")
            ),
        )
        handler({"image_id": EXAMPLE_IMAGE_ID}, secret_context)
    finally:
        sdk_logger.removeHandler(keep)
    assert records and all(SK not in record for record in records)


def test_no_secret_in_a_refused_continuation(fake, secret_context, clock):
    fake.add_fleet(30)
    secret_context.user_data.update(
        IMSGUARD_SWEEP_PAGE_SIZE="10",
        IMSGUARD_SWEEP_CONTINUE="true",
        IMSGUARD_FUNCTION_URN=f"urn:fss:ap-southeast-1:{fake.project_id}:function:default:f:1",
        IMSGUARD_FGS_ENDPOINT=fake.fgs_endpoint,
        IMSGUARD_LOG_LEVEL="INFO",
    )
    secret_context.timeout_ms = 17_000
    fake.before_request = lambda method, path: setattr(clock, "elapsed", clock.elapsed + 2)
    fake.fail_next("POST", 403, "FSS.1403", f"key {AK} may not invoke")

    report = handler({"action": "sweep"}, secret_context)

    assert report["continued"]["started"] is False
    assert_clean(json.dumps(report))


def test_no_secret_in_a_sweep_report(fake, secret_context, everything, capsys):
    fake.fail_next("PATCH", 400, "IMG.0001", f"{AK}/{SK}/{TOKEN}")

    report = handler({"action": "sweep"}, secret_context)

    out = capsys.readouterr()
    assert_clean(json.dumps(report), out.out, out.err, everything.text)
    assert next(c.status for c in fake.patches) == 400  # the echoing fault was hit
    assert report["summary"].get("error") == 1
