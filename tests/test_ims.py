"""The IMS gateway: one client per container, secrets kept out of reprs."""

from __future__ import annotations

from imsguard.context import Credentials
from imsguard.ims import gateway_for

PROJECT = "0b1e494e2660441a957313163095fe5c"


def test_one_client_per_container_until_credentials_rotate():
    first = gateway_for("ap-southeast-1", None, PROJECT, Credentials("AK", "SK", "T1"))

    assert gateway_for("ap-southeast-1", None, PROJECT, Credentials("AK", "SK", "T1")) is first
    rotated = gateway_for("ap-southeast-1", None, PROJECT, Credentials("AK", "SK", "T2"))
    assert rotated is not first


def test_credentials_never_show_their_secrets():
    credentials = Credentials("AK-VISIBLE?", "SK-SECRET", "TOKEN-SECRET")

    text = repr(credentials) + str(credentials) + f"{credentials}"
    assert "SK-SECRET" not in text and "TOKEN-SECRET" not in text and "AK-VISIBLE" not in text
