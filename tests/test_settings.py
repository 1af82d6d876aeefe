"""Settings: user data first, then the environment; bad values are named."""

from __future__ import annotations

import pytest

from imsguard.context import LocalContext
from imsguard.settings import DEFAULT_POLICY, SettingsError, load_settings


def test_defaults(monkeypatch):
    settings = load_settings(LocalContext())

    assert settings.region == "ap-southeast-1"
    assert settings.policy_path == DEFAULT_POLICY
    assert settings.dry_run is False
    assert settings.ims_endpoint is None


def test_user_data_overrides_environment(monkeypatch):
    monkeypatch.setenv("IMSGUARD_REGION", "cn-north-4")
    context = LocalContext(user_data={"IMSGUARD_REGION": "eu-west-101",
                                      "IMSGUARD_IMS_ENDPOINT": "https://ims.example.com/"})

    settings = load_settings(context)

    assert settings.region == "eu-west-101"
    assert settings.ims_endpoint == "https://ims.example.com"


def test_empty_user_data_falls_back_to_environment(monkeypatch):
    monkeypatch.setenv("IMSGUARD_DRY_RUN", "yes")

    assert load_settings(LocalContext(user_data={"IMSGUARD_DRY_RUN": ""})).dry_run is True


def test_project_id_from_imsguard_variable(monkeypatch):
    monkeypatch.delenv("RUNTIME_PROJECT_ID")
    monkeypatch.setenv("IMSGUARD_PROJECT_ID", "a" * 32)

    assert load_settings(LocalContext()).project_id == "a" * 32


def test_relative_policy_path_is_found_under_the_code_root():
    settings = load_settings(LocalContext(user_data={"IMSGUARD_POLICY": "policy.yaml"}))

    assert settings.policy_path.is_file()


@pytest.mark.parametrize(("key", "value"), [
    ("IMSGUARD_DRY_RUN", "perhaps"), ("IMSGUARD_REGION", "Not A Region"),
    ("RUNTIME_PROJECT_ID", "123"), ("IMSGUARD_IMS_ENDPOINT", "ims.example.com"),
    ("IMSGUARD_LOG_LEVEL", "LOUD"), ("IMSGUARD_SAFETY_MARGIN_SECONDS", "ten"),
    ("IMSGUARD_SAFETY_MARGIN_SECONDS", "-1"), ("IMSGUARD_SAFETY_MARGIN_SECONDS", "nan"),
    ("IMSGUARD_MAX_WAIT_SECONDS", "1e9"),
])
def test_bad_values_are_named(monkeypatch, key, value):
    monkeypatch.setenv(key, value)

    with pytest.raises(SettingsError, match=key if key != "RUNTIME_PROJECT_ID" else "project"):
        load_settings(LocalContext())


def test_a_context_without_getters_is_tolerated():
    assert load_settings(object()).region == "ap-southeast-1"
