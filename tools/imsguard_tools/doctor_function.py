"""Doctor checks of the function itself in FunctionGraph, against the template: its
configuration (runtime, handler, memory, timeout, agency and settings), its CTS and TIMER
triggers, and its asynchronous invocation settings. They read through ``imsguard deploy``'s
own planner (Deployer.read, config_step, trigger_steps, async_steps; given no package,
nothing is written), so a difference the doctor reports is one deploy would fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from huaweicloudsdkfunctiongraph.v2 import (
    ListFunctionTriggersRequest,
    ShowFunctionAsyncInvokeConfigRequest,
    ShowFunctionConfigRequest,
)

from imsguard.permissions import Permission
from imsguard.selfcheck import Check, CheckResult, verdict
from imsguard_tools.deploy import Deployer, DeployError, Step

if TYPE_CHECKING:
    from imsguard_tools.doctor import Probe
    from imsguard_tools.doctor_fake import FakeCloud

# The deployer's reads (doctor's, not the function's): the actions are named as the
# FunctionGraph permissions table is understood to spell them, not confirmed here.
FGS_PERMISSIONS = "FunctionGraph API reference, permissions and supported actions (unread)"
GET_FUNCTION = Permission(
    "GET /v2/{project_id}/fgs/functions/{function_urn}/config",
    None,
    FGS_PERMISSIONS,
    unconfirmed="functiongraph:function:getConfig",
)
LIST_TRIGGERS = Permission(
    "GET /v2/{project_id}/fgs/triggers/{function_urn}",
    None,
    FGS_PERMISSIONS,
    unconfirmed="functiongraph:trigger:list",
)
GET_ASYNC_CONFIG = Permission(
    "GET /v2/{project_id}/fgs/functions/{function_urn}/async-invoke-config",
    None,
    FGS_PERMISSIONS,
    unconfirmed="functiongraph:function:getAsyncInvokeConfig",
)
DEPLOY_FIX = "run imsguard deploy (imsguard deploy --dry-run shows what it would change)"
COMPARED = ("runtime", "handler", "memory_size", "timeout", "xrole", "description", "user_data")


def _deployer(probe: Probe) -> Deployer:
    """Deploy's planner for the probe's region, given no package: it reads only."""
    template = probe.needs_template()
    client = probe.fgs()  # needs the credentials, region and project id
    assert probe.project_id is not None and probe.region is not None
    return Deployer(client, probe.project_id, probe.region, template, None)


def _read(probe: Probe, method: str, request: type) -> tuple[Deployer, Any]:
    """Deploy's planner, and its read of the function (None: FunctionGraph has none)."""
    deployer = _deployer(probe)
    return deployer, deployer.read(method, request)


def refused(check: Check, exc: DeployError) -> CheckResult:
    """A FunctionGraph failure, by the one rule (selfcheck.verdict)."""
    actions = ", ".join(
        p.action or f"{p.unconfirmed} (unconfirmed)"
        for p in check.needs
        if p.action or p.unconfirmed
    )
    fix = f"allow {actions} to who runs doctor"
    return verdict(check, "FunctionGraph", "a read", exc.status, str(exc), fix)


def differences(check: Check, steps: list[Step], what: str) -> CheckResult:
    """ok when deploy would keep every step, else a failure naming each difference."""
    changes = [s for s in steps if s.action != "keep"]
    if not changes:
        return check.ok()
    reason = "; ".join(f"{s.what}: {s.action} ({s.detail})" for s in changes)
    return check.fail(f"{what} differ from the template: {reason}", DEPLOY_FIX)


def _refuse(path: str) -> Callable[[FakeCloud], None]:
    """Make the fake FunctionGraph refuse one read (its 403 code: assumption)."""
    return lambda cloud: cloud.ims.refuse("GET", path, 403, "FSS.0403")


class FunctionConfig(Check):
    """The function exists with the template's runtime, handler, memory, timeout, agency,
    description and settings."""

    name = "function"
    needs = (GET_FUNCTION,)
    refuse = staticmethod(_refuse(r"/fgs/functions/[^/]+/config$"))

    def run(self, probe: Probe) -> CheckResult:
        try:
            deployer, current = _read(probe, "show_function_config", ShowFunctionConfigRequest)
        except DeployError as exc:
            return refused(self, exc)
        if current is None:
            return self.fail(f"no function {deployer.urn} in FunctionGraph", DEPLOY_FIX)
        wanted = deployer.wanted_config()
        differs = []
        for key in COMPARED:
            step = deployer.config_step({**wanted, key: current.get(key)})
            if step.action != "keep":
                shown = (
                    "its settings (user_data)"
                    if key == "user_data"
                    else f"{key} {current.get(key)!r}"
                )
                want = "" if key == "user_data" else f" (the template: {wanted[key]!r})"
                differs.append(f"{shown}{want}")
        if not differs:
            return self.ok()
        return self.fail(f"{deployer.urn} has {'; '.join(differs)}", DEPLOY_FIX)


class _TriggerCheck(Check):
    """The function's triggers of one kind, as the template has them."""

    kind: ClassVar[str]
    needs: ClassVar[tuple[Permission, ...]] = (LIST_TRIGGERS,)
    refuse = staticmethod(_refuse(r"/fgs/triggers/[^/]+$"))

    @classmethod
    def applies(cls, probe: Probe) -> bool:
        return probe.template is None or any(t.type == cls.kind for t in probe.template.triggers)

    def run(self, probe: Probe) -> CheckResult:
        try:
            deployer, triggers = _read(probe, "list_function_triggers", ListFunctionTriggersRequest)
        except DeployError as exc:
            return refused(self, exc)
        if triggers is None:
            return self.fail(f"no function {deployer.urn} in FunctionGraph", DEPLOY_FIX)
        steps = deployer.trigger_steps(triggers)
        return differences(self, [s for s in steps if s.what.startswith(self.kind)], "triggers")


class CtsTrigger(_TriggerCheck):
    """The CTS trigger exists with the template's operations (and status)."""

    name = "cts-trigger"
    kind = "CTS"


class TimerTrigger(_TriggerCheck):
    """The TIMER trigger exists with the template's schedule, event and status."""

    name = "timer-trigger"
    kind = "TIMER"


class AsyncConfig(Check):
    """The asynchronous invocation settings (retries, event age, on-failure destination)
    are the template's."""

    name = "async-config"
    needs = (GET_ASYNC_CONFIG,)
    refuse = staticmethod(_refuse(r"/fgs/functions/[^/]+/async-invoke-config$"))

    def run(self, probe: Probe) -> CheckResult:
        try:
            deployer, current = _read(
                probe, "show_function_async_invoke_config", ShowFunctionAsyncInvokeConfigRequest
            )
        except DeployError as exc:
            return refused(self, exc)
        return differences(self, deployer.async_steps(current), "asynchronous settings")


FUNCTION_CHECKS: tuple[type[Check], ...] = (FunctionConfig, CtsTrigger, TimerTrigger, AsyncConfig)
