"""The agency's IAM policy, derived from the permissions the runtime's calls declare
(``@requires`` in imsguard.permissions): for ``imsguard iam-policy`` and the template's
check of the agency, never for the function itself."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from imsguard.permissions import Permission


def declared_by(*owners: Any) -> list[Permission]:
    """Every permission declared by these functions, or by the methods of these classes."""
    found: list[Permission] = []
    for owner in owners:
        members = vars(owner).values() if isinstance(owner, type) else [owner]
        for member in members:
            found.extend(p for p in getattr(member, "permissions", ()) if p not in found)
    return found


def all_permissions() -> list[Permission]:
    """Every call imsguard can make in the cloud (loads the SDKs: for tools, not events)."""
    from imsguard.fgs import invocation_status, invoke_async
    from imsguard.ims import ImsGateway
    from imsguard.org.cloud_invoker import CloudInvoker
    from imsguard.org.credentials import assume
    from imsguard.org.discovery import list_accounts, list_regions
    from imsguard.sinks import sink_classes
    from imsguard.sinks.config import update_policy_state
    from imsguard.sinks.obs import get_object

    return declared_by(
        ImsGateway,
        invoke_async,
        update_policy_state,
        *sink_classes(),
        list_accounts,
        assume,
        list_regions,
        get_object,
        invocation_status,
        CloudInvoker,
    )


def member_permissions() -> list[Permission]:
    """What the agency each member account lends an org sweep must allow: the IMS calls one
    shard makes there (list and update images, and the UEFI OS list when that is read)."""
    from imsguard.ims import ImsGateway

    return declared_by(ImsGateway.list_page, ImsGateway.update_image, ImsGateway.uefi_os_versions)


def needed(permissions: Iterable[Permission], settings: Mapping[str, str]) -> list[Permission]:
    """The permissions a deployment with these ``IMSGUARD_*`` settings uses."""
    from imsguard.settings import SWITCHES, SettingsError, parse_bool

    def on(key: str) -> bool:
        # A switch is on when true; a setting that names something (a topic URN, a bucket,
        # which may well be called "off") is on when present and not empty.
        if key not in SWITCHES:
            return bool((settings.get(key) or "").strip())
        try:
            return parse_bool(key, settings.get(key))
        except SettingsError:
            return True  # a broken setting is reported by the settings check itself

    def all_on(setting: str | tuple[str, ...]) -> bool:
        return all(on(key) for key in ((setting,) if isinstance(setting, str) else setting))

    return [p for p in permissions if p.setting is None or all_on(p.setting)]


def actions(permissions: Iterable[Permission]) -> list[str]:
    """The IAM actions, sorted, each once (calls without a documented action add none)."""
    return sorted({p.action for p in permissions if p.action})


def optional_actions(permissions: Iterable[Permission]) -> list[str]:
    """Actions an agency may also hold: named for these calls in one edition only."""
    return sorted({p.unconfirmed for p in permissions if p.unconfirmed})


def policy_document(permissions: Iterable[Permission]) -> dict[str, Any]:
    """A custom IAM policy (identity policy language 1.1) allowing exactly these actions."""
    return {"Version": "1.1", "Statement": [{"Effect": "Allow", "Action": actions(permissions)}]}
