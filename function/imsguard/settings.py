"""Settings: FunctionGraph user data first, then the environment, then defaults.

Every knob has one name (``IMSGUARD_*``), whether it is set as function user
data in the console, as an environment variable, or in a local shell.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from imsguard.context import call_getter

REGION = "IMSGUARD_REGION"
POLICY = "IMSGUARD_POLICY"
DRY_RUN = "IMSGUARD_DRY_RUN"
IMS_ENDPOINT = "IMSGUARD_IMS_ENDPOINT"
PROJECT_ID = "IMSGUARD_PROJECT_ID"
RUNTIME_PROJECT_ID = "RUNTIME_PROJECT_ID"  # reserved FunctionGraph variable
LOG_LEVEL = "IMSGUARD_LOG_LEVEL"
SAFETY_MARGIN = "IMSGUARD_SAFETY_MARGIN_SECONDS"
DEFAULT_SAFETY_MARGIN_S = 10.0
UEFI_FROM_IMS = "IMSGUARD_UEFI_FROM_IMS"  # "true": read IMS's UEFI OS list once per container
MAX_WAIT = "IMSGUARD_MAX_WAIT_SECONDS"
DEFAULT_MAX_WAIT_S = 900.0  # longer creations are deferred (a later event or sweep checks them)

CODE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = CODE_ROOT / "policy.yaml"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_PROJECT_ID = re.compile(r"[0-9a-f]{32}")  # patterns here are used with fullmatch
_REGION = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+")
_ENDPOINT = re.compile(r"https?://[A-Za-z0-9.\-]+(:\d+)?/?")
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}


class SettingsError(ValueError):
    """A setting has a value imsguard cannot use; the message names it."""


class Settings(NamedTuple):
    region: str | None
    project_id: str | None
    policy_path: Path
    dry_run: bool
    ims_endpoint: str | None
    log_level: str = "INFO"
    safety_margin_s: float = DEFAULT_SAFETY_MARGIN_S
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    uefi_from_ims: bool = False


def read_setting(context: Any, key: str) -> str | None:
    """User data wins over the environment; empty values count as unset."""
    value = call_getter(context, "getUserData", key)
    if isinstance(value, str) and value:
        return value
    value = os.environ.get(key, "").strip()
    return value or None


def parse_bool(key: str, value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{key}={value!r} is not a boolean (use true or false)")


def resolve_policy_path(value: str | None) -> Path:
    """Relative paths are tried from the working directory, then from the code root."""
    if not value:
        return DEFAULT_POLICY
    try:
        path = Path(value).expanduser()
    except RuntimeError as exc:  # "~user" for an unknown user
        raise SettingsError(f"{POLICY}={value!r}: {exc}") from None
    if path.is_absolute() or path.exists():
        return path
    return CODE_ROOT / path


def load_settings(context: Any) -> Settings:
    """Read and check every setting; raise SettingsError naming the bad one."""
    region = read_setting(context, REGION)
    if region is not None and not _REGION.fullmatch(region):
        raise SettingsError(f"{REGION}={region!r} is not a region id such as 'ap-southeast-1'")
    project_id = read_setting(context, RUNTIME_PROJECT_ID) or read_setting(context, PROJECT_ID)
    if project_id is not None and not _PROJECT_ID.fullmatch(project_id):
        raise SettingsError(f"project id {project_id!r} is not 32 lower-case hex characters")
    endpoint = read_setting(context, IMS_ENDPOINT)
    if endpoint is not None:
        if not _ENDPOINT.fullmatch(endpoint):
            raise SettingsError(
                f"{IMS_ENDPOINT}={endpoint!r} is not an endpoint URL such as "
                "'https://ims.ap-southeast-1.myhuaweicloud.com'"
            )
        endpoint = endpoint.rstrip("/")
    log_level = (read_setting(context, LOG_LEVEL) or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise SettingsError(f"{LOG_LEVEL}={log_level!r} is not one of {sorted(_LOG_LEVELS)}")
    return Settings(
        region=region,
        project_id=project_id,
        policy_path=resolve_policy_path(read_setting(context, POLICY)),
        dry_run=parse_bool(DRY_RUN, read_setting(context, DRY_RUN)),
        ims_endpoint=endpoint,
        log_level=log_level,
        safety_margin_s=_seconds(context, SAFETY_MARGIN, DEFAULT_SAFETY_MARGIN_S, 3600),
        max_wait_s=_seconds(context, MAX_WAIT, DEFAULT_MAX_WAIT_S, 259_200),
        uefi_from_ims=parse_bool(UEFI_FROM_IMS, read_setting(context, UEFI_FROM_IMS)),
    )


def _seconds(context: Any, key: str, default: float, most: float) -> float:
    text = read_setting(context, key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= most:  # also refuses nan
        raise SettingsError(f"{key}={text!r} is not a number of seconds from 0 to {most:g}")
    return value
