"""Settings: user data first, then the environment; bad values are named."""

from __future__ import annotations

import pytest

from imsguard.settings import CODE_ROOT, DEFAULT_POLICY, SettingsError, load_settings
from imsguard_tools.local_context import LocalContext


def test_defaults(monkeypatch):
    settings = load_settings(LocalContext())

    assert settings.region == "ap-southeast-1"
    assert settings.policy_path == DEFAULT_POLICY
    assert settings.dry_run is False
    assert settings.ims_endpoint is None


def test_user_data_overrides_environment(monkeypatch):
    monkeypatch.setenv("IMSGUARD_REGION", "cn-north-4")
    context = LocalContext(
        user_data={
            "IMSGUARD_REGION": "eu-west-101",
            "IMSGUARD_IMS_ENDPOINT": "https://ims.example.com/",
        }
    )

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
    relative = "imsguard/__init__.py"  # under the code root, not the default
    settings = load_settings(LocalContext(user_data={"IMSGUARD_POLICY": relative}))

    assert settings.policy_path == CODE_ROOT / relative and settings.policy_path.is_file()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("IMSGUARD_DRY_RUN", "perhaps"),
        ("IMSGUARD_REGION", "Not A Region"),
        ("RUNTIME_PROJECT_ID", "123"),
        ("IMSGUARD_IMS_ENDPOINT", "ims.example.com"),
        ("IMSGUARD_LOG_LEVEL", "LOUD"),
        ("IMSGUARD_SAFETY_MARGIN_SECONDS", "ten"),
        ("IMSGUARD_SAFETY_MARGIN_SECONDS", "-1"),
        ("IMSGUARD_SAFETY_MARGIN_SECONDS", "nan"),
        ("IMSGUARD_MAX_WAIT_SECONDS", "1e9"),
    ],
)
def test_bad_values_are_named(monkeypatch, key, value):
    monkeypatch.setenv(key, value)

    with pytest.raises(SettingsError, match=key if key != "RUNTIME_PROJECT_ID" else "project"):
        load_settings(LocalContext())


def test_a_context_without_getters_is_tolerated():
    assert load_settings(object()).region == "ap-southeast-1"


def test_every_imsguard_setting_constant_is_a_known_setting():
    from imsguard import settings

    constants = {
        value
        for name, value in vars(settings).items()
        if name.isupper() and isinstance(value, str) and value.startswith("IMSGUARD_")
    }

    assert constants == set(settings.KNOWN_SETTINGS)


def test_the_environment_read_is_the_one_given(monkeypatch):
    monkeypatch.setenv("IMSGUARD_DRY_RUN", "maybe")
    monkeypatch.setenv("IMSGUARD_LOG_LEVEL", "LOUD")
    context = LocalContext(user_data={"IMSGUARD_REGION": "eu-west-101", "IMSGUARD_DRY_RUN": ""})

    only_given = load_settings(context, environ={})
    other = load_settings(context, environ={"IMSGUARD_DRY_RUN": "true"})

    assert (only_given.region, only_given.dry_run, only_given.project_id) == (
        "eu-west-101",
        False,
        None,
    )
    assert other.dry_run is True
    with pytest.raises(SettingsError, match="IMSGUARD_LOG_LEVEL"):
        load_settings(context)  # the default is still the process's environment


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("IMSGUARD_DRYRUN", "IMSGUARD_DRY_RUN"),
        ("imsguard_dry_run", "IMSGUARD_DRY_RUN"),
        ("IMSGUARD_SAFETY_MARGIN", "IMSGUARD_SAFETY_MARGIN_SECONDS"),
        ("IMSGUARD_REGOIN", "IMSGUARD_REGION"),
        ("IMSGUARD_SWEEP_CONTINUES", "IMSGUARD_SWEEP_CONTINUE"),
        ("IMSGUARD_POLICY_FILE", "IMSGUARD_POLICY"),
        ("IMSGUARD_PROJECTID", "IMSGUARD_PROJECT_ID"),
    ],
)
def test_a_near_miss_gets_the_setting_it_resembles(name, suggestion):
    from imsguard.settings import setting_name_problem

    assert setting_name_problem(name) == (
        f"{name!r} is not a known imsguard setting; did you mean {suggestion}?"
    )


def test_names_unlike_any_setting_get_no_guess():
    from imsguard.settings import KNOWN_SETTINGS, setting_name_problem

    assert setting_name_problem("IMSGUARD_COLOUR") == (
        "'IMSGUARD_COLOUR' is not a known imsguard setting (the README's Settings lists them)"
    )
    assert setting_name_problem("PATH") == (
        "'PATH' is not an imsguard setting (those are IMSGUARD_*)"
    )
    assert [n for n in KNOWN_SETTINGS if setting_name_problem(n)] == []
