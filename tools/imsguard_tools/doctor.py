"""``imsguard doctor``: read-only checks against the user's cloud that turn the README's
"unconfirmed" assumptions into "confirmed" (or say what to fix), with the SDKs and the
credentials the other commands use.

Each check is one class (imsguard.selfcheck.Check: its name, the permissions its calls
need, ``run``); the IMS ones live in the runtime (the function runs them itself with
IMSGUARD_SELF_CHECK=true), the others in the tools' check modules, listed in ``CHECKS``.
The runner gives every check its own thread and the command one deadline: a check that has
not answered by then is "unknown", and every SDK call's timeouts fit in the time left, so
nothing hangs. No check writes anything (the fakes record every call: tests check).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imsguard.clock import SystemClock
from imsguard.context import Credentials
from imsguard.ims import ImsGateway, gateway_for
from imsguard.selfcheck import INSIDE, Check, CheckResult
from imsguard.settings import Settings

if TYPE_CHECKING:
    from imsguard_tools.template import Template

DEADLINE_S = 60.0  # the whole command's, by default
MIN_CALL_S = 0.5  # a call with less time left than this is not made


@dataclass
class Probe:
    """What checks may call: the settings the function gets in ``region``, the SDK's
    credentials, the template (None: none found), and clients whose timeouts fit in the
    command's deadline (``end``, on the monotonic clock)."""

    region: str | None
    project_id: str | None
    credentials: Credentials | None
    settings: Settings
    template: Template | None
    end: float
    domain_id: str | None = None
    fgs_endpoint: str | None = None
    settings_problem: str | None = None  # why the function's settings are not valid
    endpoints: dict[str, str] = field(default_factory=dict)  # IMSGUARD_*_ENDPOINT given
    _gateway: ImsGateway | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def time_left(self) -> float:
        return self.end - time.monotonic()

    def timeouts(self, most: float = 20.0) -> tuple[float, float]:
        """(connect, read) for one call, within the time left; TimeoutError when too little."""
        left = self.time_left()
        if left < MIN_CALL_S:
            raise TimeoutError("the command's deadline came before this call")
        connect = min(5.0, left / 3)
        return connect, max(0.2, min(most, left - connect - 0.1))

    def need(self) -> Credentials:
        """The credentials, or a CheckNotRun that says none were found."""
        if self.settings_problem is not None:
            raise CheckNotRun("the function's settings are not valid (see the settings check)")
        if self.credentials is None or not self.project_id or not self.region:
            raise CheckNotRun("no credentials, region or project id (see the credentials check)")
        problem = self.region_problem()
        if problem is not None:
            raise CheckNotRun(f"{problem} (see the credentials check)")
        return self.credentials

    def region_problem(self) -> str | None:
        """Why the region cannot be right: no Huawei SDK knows it (unless an IMS endpoint
        is given, as for a private region)."""
        if not self.region or self.settings.ims_endpoint:
            return None
        from huaweicloudsdkims.v2.region.ims_region import ImsRegion

        try:
            ImsRegion.value_of(self.region)
        except KeyError:
            return f"region {self.region!r} is not one the Huawei Cloud SDKs know"
        return None

    def gateway(self) -> ImsGateway:
        credentials = self.need()
        assert self.project_id is not None
        with self._lock:
            if self._gateway is None:
                self._gateway = gateway_for(
                    self.region, self.settings.ims_endpoint, self.project_id, credentials
                )
            return self._gateway

    def fgs(self) -> Any:
        """A FunctionGraph client for the function's region."""
        from imsguard.fgs import client_for

        credentials = self.need()
        assert self.project_id is not None
        return client_for(
            self.region, self.fgs_endpoint, self.project_id, credentials, self.timeouts()
        )

    def endpoint(self, name: str) -> str | None:
        """An IMSGUARD_*_ENDPOINT override, also one only the tools know (such as
        IMSGUARD_CTS_ENDPOINT: the function never calls CTS, so its settings lack it)."""
        return self.endpoints.get(name) or None

    def needs_template(self) -> Template:
        if self.template is None:
            raise CheckNotRun("no template.yaml: give --template")
        return self.template


class CheckNotRun(Exception):
    """A check cannot be run at all (no credentials, no template): "unknown", and why."""


class SettingsCheck(Check):
    """The settings the template gives the function in the region are valid (else the
    function refuses every event, and nothing else can be checked as it would run)."""

    name = "settings"

    def run(self, probe: Probe) -> CheckResult:
        if probe.settings_problem is None:
            return self.ok()
        return self.fail(
            probe.settings_problem, "fix the template's settings (imsguard validate checks them)"
        )


class CredentialsCheck(Check):
    """Credentials, a region and a project id are there (what every other check needs)."""

    name = "credentials"

    def run(self, probe: Probe) -> CheckResult:
        missing = [
            what
            for what, there in (
                ("credentials (HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK)", probe.credentials),
                ("a region (--region, or IMSGUARD_REGION in the template)", probe.region),
                (
                    "a project id (IMSGUARD_PROJECT_ID or HUAWEICLOUD_SDK_PROJECT_ID)",
                    probe.project_id,
                ),
            )
            if not there
        ]
        if missing:
            return self.fail(f"missing {', '.join(missing)}", "set them and run doctor again")
        problem = probe.region_problem()
        if problem is not None:
            return self.fail(
                problem,
                "give a region id such as ap-southeast-1 (--region or the template's "
                "IMSGUARD_REGION), or IMSGUARD_IMS_ENDPOINT for a private region",
            )
        return self.ok()


def checks() -> list[type[Check]]:
    """Every check, in the order they are printed."""
    from imsguard_tools.doctor_access import ACCESS_CHECKS
    from imsguard_tools.doctor_function import FUNCTION_CHECKS
    from imsguard_tools.doctor_sinks import SINK_CHECKS

    return [
        SettingsCheck,
        CredentialsCheck,
        *INSIDE,
        *FUNCTION_CHECKS,
        *ACCESS_CHECKS,
        *SINK_CHECKS,
    ]


def applies(check: type[Check], probe: Probe) -> bool:
    """Whether a check concerns this deployment (e.g. the SMN one only with a topic)."""
    test: Callable[[Probe], bool] | None = getattr(check, "applies", None)
    return True if test is None else test(probe)


def run_checks(probe: Probe, wanted: list[type[Check]]) -> list[CheckResult]:
    """Every check that applies, each in its own daemon thread, all within the probe's
    deadline; a check not done by then is "unknown", and its thread is left behind (a
    daemon: the command exits without waiting for a call that trickles on)."""
    chosen = [c for c in wanted if applies(c, probe)]
    results: dict[int, CheckResult] = {}
    threads = []
    for index, check in enumerate(chosen):

        def work(index: int = index, check: type[Check] = check) -> None:
            results[index] = _run_one(check, probe)

        thread = threading.Thread(target=work, name=f"doctor-{check.name}", daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, probe.time_left()))
    return [
        results.get(index)
        or check().unknown("no answer before the command's deadline (--deadline)")
        for index, check in enumerate(chosen)
    ]


def _run_one(check: type[Check], probe: Probe) -> CheckResult:
    """One check; its IMS calls are bounded by the deadline, and nothing it raises escapes."""
    ImsGateway.begin(
        lambda: probe.time_left(), lambda: max(0.0, probe.time_left() - 1.0), SystemClock()
    )
    try:
        return check().run(probe)
    except CheckNotRun as exc:
        return check().unknown(str(exc))
    except TimeoutError as exc:
        return check().unknown(str(exc))
    except Exception as exc:
        return check().unknown(f"the check could not finish: {type(exc).__name__}: {exc}")


def header(template: Template | None, region: str | None, fake: bool) -> str:
    """What was checked: the function and the region (a template of several regions is
    checked one region at a time, and says so)."""
    name = template.function.name if template else "(no template)"
    line = f"imsguard doctor: function {name} in {region or '(no region)'}"
    line += " (the fakes)" if fake else ""
    others = [r for r in (template.regions if template else []) if r != region]
    if others:
        line += f"; the template's other regions ({', '.join(others)}): run with --region each"
    return line + "\n"


def render_text(results: list[CheckResult]) -> str:
    """A line per check: its status, name and, unless ok, why and the fix."""
    lines = []
    for r in results:
        line = f"{r.status:<8}{r.name}"
        if r.reason:
            line += f": {r.reason}"
        if r.fix:
            line += f"\n{'':<8}fix: {r.fix}"
        lines.append(line)
    failed = sum(r.status == "fail" for r in results)
    unknown = sum(r.status == "unknown" for r in results)
    lines.append(
        f"\n{len(results)} checks: {len(results) - failed - unknown} ok, {failed} failed, "
        f"{unknown} unknown"
    )
    return "\n".join(lines)


def render_json(results: list[CheckResult]) -> str:
    return json.dumps({"checks": [r.to_json() for r in results]}, indent=2)


def probe_for(
    template: Template | None,
    region: str | None,
    deadline_s: float,
    credentials: Credentials | None,
    project_id: str | None,
    environ: dict[str, str] | None = None,
) -> Probe:
    """The probe of a deployment: the settings the function gets in ``region`` (the
    template's, with IMSGUARD_*_ENDPOINT overrides from the environment)."""
    from imsguard.settings import SettingsError, load_settings
    from imsguard_tools.local_context import LocalContext

    env = dict(os.environ if environ is None else environ)
    data = dict(template.settings_for(region) if template and region else {})
    if template and not region:
        data = dict(template.function.settings)
    endpoints = {
        k: v for k, v in env.items() if k.startswith("IMSGUARD_") and k.endswith("_ENDPOINT")
    }
    data.update(endpoints)
    if region:
        data.setdefault("IMSGUARD_REGION", region)
    if project_id:
        data.setdefault("IMSGUARD_PROJECT_ID", project_id)
    problem = None
    try:
        settings = load_settings(LocalContext(data), environ={})
    except SettingsError as exc:  # the function would say so on every event: a failure
        problem = str(exc)
        settings = Settings(None, None, Path(), False, None)  # nothing else is checked
    domain = env.get("IMSGUARD_DOMAIN_ID") or env.get("HUAWEICLOUD_SDK_DOMAIN_ID")
    return Probe(
        region=region,
        project_id=project_id,
        credentials=credentials,
        settings=settings,
        template=template,
        end=time.monotonic() + deadline_s,
        domain_id=domain,
        fgs_endpoint=data.get("IMSGUARD_FGS_ENDPOINT"),
        settings_problem=problem,
        endpoints=endpoints,
    )


def template_or_none(path: Path) -> tuple[Template | None, str | None]:
    """The template at ``path``, or None and why not (doctor still runs the other checks)."""
    from imsguard_tools.template import TemplateError, load_template

    if not path.is_file():
        return None, f"no template at {path}"
    try:
        return load_template(path), None
    except TemplateError as exc:
        return None, str(exc)
