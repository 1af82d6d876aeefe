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


def test_an_unreadable_answer_keeps_its_cause(fake):
    """Only the SDK's deserialisation counts as an unreadable answer, and the error keeps
    what the SDK choked on (its cause) for the traceback."""
    import pytest

    from imsguard.ims import ImsError, UnreadableAnswer

    odd = fake.add_image({"name": "odd", "min_ram": "lots"})
    gateway = gateway_for(None, fake.endpoint, fake.project_id, Credentials("AK", "SK"))

    with pytest.raises(ImsError, match="unreadable response") as raised:
        gateway.update_image(odd["id"], [{"op": "replace", "path": "/name", "value": "odd-2"}])

    assert raised.value.kind == "permanent"
    assert isinstance(raised.value.__cause__, UnreadableAnswer)
    assert isinstance(raised.value.__cause__.__cause__, (ValueError, TypeError, AttributeError))


def test_a_value_error_outside_deserialisation_is_not_an_unreadable_answer(fake, monkeypatch):
    """A ValueError of ours (a bug) must surface as itself, not as IMS's unreadable answer."""
    import pytest

    gateway = gateway_for(None, fake.endpoint, fake.project_id, Credentials("AK", "SK"))

    def broken(request):
        raise ValueError("a bug of ours")

    monkeypatch.setattr(gateway.client, "list_images", broken)
    with pytest.raises(ValueError, match="a bug of ours"):
        gateway.find_images("name", "2026-01-01T00:00:00Z")
