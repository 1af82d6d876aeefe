"""AK, SK and token never appear in logs, results or exception text, at any level."""

from __future__ import annotations

import json
import logging

import pytest
import requests

from conftest import load_event
from imsguard.app import TransientFailure, handler
from imsguard.context import LocalContext
from imsguard.testing import EXAMPLE_IMAGE_ID

AK, SK, TOKEN = "AKFAKE00SECRETACCESS", "SKFAKE00SECRETSECRET0000", "TOKENFAKE00SECRETTOKEN"


@pytest.fixture
def secret_context():
    return LocalContext(access_key=AK, secret_key=SK, security_token=TOKEN,
                        user_data={"IMSGUARD_LOG_LEVEL": "DEBUG"})


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


@pytest.mark.parametrize("fault", [
    None,
    ("GET", 401, "APIGW.0301", f"Incorrect IAM authentication information: {AK}"),
    ("PATCH", 403, "IMG.0047", f"token {TOKEN} may not do this"),
    ("PATCH", 400, "IMG.0001", f"bad request signed with {SK}"),
])
def test_no_secret_in_logs_or_results(fake, secret_context, everything, capsys, fault):
    if fault:
        fake.fail_next(*fault)

    result = handler(load_event("cts_create_image.json"), secret_context)

    out = capsys.readouterr()
    assert_clean(out.out, out.err, everything.text, json.dumps(result))
    assert fake.calls  # the requests were signed with the secrets: they were used


def test_no_secret_in_the_transient_failure(fake, secret_context, everything, capsys):
    fake.fail_next("GET", 503, "APIGW.0203", f"upstream {SK} down", times=4)

    with pytest.raises(TransientFailure) as failure:
        handler({"image_id": EXAMPLE_IMAGE_ID}, secret_context)

    out = capsys.readouterr()
    assert_clean(str(failure.value), out.out, out.err, everything.text)


def test_no_secret_when_the_transport_fails(fake, secret_context, everything, capsys):
    fake.raise_next("PATCH", requests.exceptions.ConnectionError(f"reset while sending {SK}"))
    fake.fail_next("GET", 500, "IMG.0500", TOKEN, times=4)  # the re-read fails too

    with pytest.raises(TransientFailure) as failure:
        handler({"image_id": EXAMPLE_IMAGE_ID}, secret_context)

    out = capsys.readouterr()
    assert_clean(str(failure.value), out.out, out.err, everything.text)


def test_no_secret_in_a_sweep_report(fake, secret_context, everything, capsys):
    fake.fail_next("PATCH", 400, "IMG.0001", f"{AK}/{SK}/{TOKEN}")

    report = handler({"action": "sweep"}, secret_context)

    out = capsys.readouterr()
    assert_clean(json.dumps(report), out.out, out.err, everything.text)
