"""imsguard deploy: make FunctionGraph match template.yaml, changing only what differs.

The plan is made from reads alone (function configuration and code digest,
triggers, asynchronous invocation settings); applying it writes only the steps that
differ, so a second deploy writes nothing. FunctionGraph's API changes a trigger's
status in place but has no update for its event data (CTS operations, timer rate):
such a trigger is replaced (deleted, then created again).

With the template's ``regions``, the same is done in each region (``deploy_regions``): every
region is planned before any is written, then applied one after another, stopping at the
first failure; the error says what each region got.

The template's ``config_rules`` become Config custom rules (policy assignments) that invoke
the function, read and written through Config's global API (``ConfigRules``) after the
function's own steps. A rule is imsguard's when it is a custom rule invoking this function
(its ``custom_policy.function_urn``): only such rules are updated, and no rule is ever
deleted.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException, ServiceResponseException
from huaweicloudsdkfunctiongraph.v2 import (
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    CreateFunctionTriggerRequest,
    CreateFunctionTriggerRequestBody,
    DeleteFunctionTriggerRequest,
    FuncAsyncDestinationConfig,
    FuncCode,
    FuncDestinationConfig,
    FunctionGraphClient,
    ListFunctionTriggersRequest,
    ShowFunctionAsyncInvokeConfigRequest,
    ShowFunctionConfigRequest,
    TriggerEventDataRequestBody,
    UpdateFunctionAsyncInvokeConfigRequest,
    UpdateFunctionAsyncInvokeConfigRequestBody,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
    UpdateFunctionConfigRequest,
    UpdateFunctionConfigRequestBody,
    UpdateTriggerRequest,
    UpdateTriggerRequestBody,
)

from imsguard.context import Credentials
from imsguard.events import CONFIG_IMAGE_PROVIDER
from imsguard.fgs import client_for
from imsguard.logs import redact
from imsguard.settings import CONFIG_GLOBAL_ENDPOINT
from imsguard_tools.template import ConfigRuleSpec, CtsTriggerSpec, Template, TriggerSpec

PACKAGE = "default"  # FunctionGraph's default application ("package")
CONFIG_PAGE = 200  # rules per page (Config allows 1-500)
PROVIDERS_PAGE = 200  # services per page (Config's maximum)
DESTINATION_PARAM = {
    "SMN": "topic_urn",
    "OBS": "bucket",
    "DIS": "stream_name",
    "FunctionGraph": "func_urn",
}


class DeployError(Exception):
    """A deploy could not be completed; ``done`` and ``left`` say what was and was not;
    ``status``: the HTTP status the service answered, if it answered (doctor tells a refusal
    from an outage by it)."""

    def __init__(
        self,
        message: str,
        done: list[Step] | None = None,
        left: list[Step] | None = None,
        status: int | None = None,
    ):
        self.done = done or []
        self.left = left or []
        self.status = status
        super().__init__(message)


class RegionsError(DeployError):
    """A multi-region deploy stopped in ``region``: ``applied`` holds what the regions before
    it got (every step of their plans), ``done`` and ``left`` what ``region`` got and did not,
    ``not_started`` the regions after it. ``planning``: it stopped while reading, before
    anything was written anywhere."""

    def __init__(
        self,
        region: str,
        error: DeployError,
        applied: dict[str, list[Step]],
        not_started: list[str],
        planning: bool,
    ):
        super().__init__(str(error), error.done, error.left)
        self.region = region
        self.applied = applied
        self.not_started = not_started
        self.planning = planning


class Step(NamedTuple):
    action: str  # create, update, replace, keep
    what: str
    detail: str
    run: Callable[[], Any] | None = None  # None: nothing to write

    def describe(self) -> dict[str, str]:
        return {"action": self.action, "what": self.what, "detail": self.detail}


class Deployer:
    """Plans (reads only) and applies (writes only what differs) one deployment."""

    def __init__(
        self,
        client: FunctionGraphClient,
        project_id: str,
        region: str,
        template: Template,
        package: Path | None,
        config: ConfigRules | None = None,
    ):
        """``package``: the ZIP to deploy; None to read only (imsguard doctor compares the
        configuration, triggers and asynchronous settings, not the code)."""
        self.client = client
        self.template = template
        self.config = config
        self.region = region
        self.package = package
        self.code = package.read_bytes() if package is not None else b""
        self.filename = package.name if package is not None else "code.zip"
        self.digest = hashlib.sha512(self.code).hexdigest()  # assumption: FG's `digest`
        function = template.function
        self.urn = f"urn:fss:{region}:{project_id}:function:{PACKAGE}:{function.name}:latest"

    def plan(self) -> list[Step]:
        current = self.read("show_function_config", ShowFunctionConfigRequest)
        if current is None:
            steps = [
                Step(
                    "create",
                    "function",
                    f"{self.template.function.name}, code {len(self.code) / 2**20:.1f} MB",
                    self._create_function,
                )
            ]
            steps += self.trigger_steps([]) + self.async_steps(None)
            return steps + self._config_rule_steps()
        steps = [self.config_step(current), self._code_step(current)]
        triggers = self._call(
            self.client.list_function_triggers, ListFunctionTriggersRequest(function_urn=self.urn)
        )
        config = self.read(
            "show_function_async_invoke_config", ShowFunctionAsyncInvokeConfigRequest
        )
        steps += self.trigger_steps(triggers or []) + self.async_steps(config)
        return steps + self._config_rule_steps()

    def _config_rule_steps(self) -> list[Step]:
        if not self.template.config_rules:
            return []
        if self.config is None:
            raise DeployError(
                "the template has config_rules: Config needs the account's domain id "
                "(IMSGUARD_DOMAIN_ID or HUAWEICLOUD_SDK_DOMAIN_ID)"
            )
        return self.config.steps(self.template.config_rules, self.urn, self.region)

    def read(self, method: str, request: type) -> Any:
        """One read of this function (``method`` of the FunctionGraph client, its request
        class): the raw answer, or None when FunctionGraph has no such function. For
        imsguard doctor, which compares what it reads with the planners below."""
        call = getattr(self.client, method)
        return self._call(call, request(function_urn=self.urn), missing_ok=True)

    def apply(self, steps: list[Step]) -> list[Step]:
        if self.package is None and any(s.run is not None and "code" in s.what for s in steps):
            raise DeployError("this deployer only reads (no package): it cannot ship code")
        done: list[Step] = []
        for index, step in enumerate(steps):
            if step.run is None:
                done.append(step)
                continue
            try:
                step.run()
            except DeployError as exc:
                raise DeployError(
                    f"{step.action} {step.what}: {exc}", done, steps[index:]
                ) from None
            done.append(step)
        return done

    # -- function ---------------------------------------------------------------------

    def wanted_config(self) -> dict[str, Any]:
        function = self.template.function
        return {
            "runtime": function.runtime,
            "handler": function.handler,
            "memory_size": function.memorySize,
            "timeout": function.timeout,
            "description": function.description,
            "xrole": function.agency.name,
            "user_data": json.dumps(self.template.settings_for(self.region), sort_keys=True),
        }

    def config_step(self, current: dict[str, Any]) -> Step:
        wanted = self.wanted_config()
        differs = []
        for key, value in wanted.items():
            now = current.get(key)
            if key == "user_data":  # compared as data: key order and spacing do not matter
                now, value = _json_or_text(now), json.loads(value)
            if now != value and (now or value):  # "" and a missing description are alike
                differs.append(key)
        if not differs:
            return Step("keep", "function configuration", "unchanged")
        detail = ", ".join(differs)
        if "runtime" in differs:
            detail += " (runtime and code change in two calls: not atomic)"
        return Step("update", "function configuration", detail, self._update_config)

    def _code_step(self, current: dict[str, Any]) -> Step:
        if current.get("digest") == self.digest:
            return Step("keep", "function code", "same package digest")
        return Step(
            "update",
            "function code",
            f"new package ({len(self.code) / 2**20:.1f} MB)",
            self._update_code,
        )

    def _create_function(self) -> None:
        wanted = self.wanted_config()
        body = CreateFunctionRequestBody(
            func_name=self.template.function.name,
            package=PACKAGE,
            code_type="zip",
            code_filename=self.filename,
            func_code=FuncCode(file=base64.b64encode(self.code).decode()),
            **wanted,
        )
        self._call(self.client.create_function, CreateFunctionRequest(body=body))

    def _update_config(self) -> None:
        body = UpdateFunctionConfigRequestBody(
            func_name=self.template.function.name, **self.wanted_config()
        )
        self._call(
            self.client.update_function_config,
            UpdateFunctionConfigRequest(function_urn=self.urn, body=body),
        )

    def _update_code(self) -> None:
        body = UpdateFunctionCodeRequestBody(
            code_type="zip",
            code_filename=self.filename,
            func_code=FuncCode(file=base64.b64encode(self.code).decode()),
        )
        self._call(
            self.client.update_function_code,
            UpdateFunctionCodeRequest(function_urn=self.urn, body=body),
        )

    # -- triggers ---------------------------------------------------------------------

    def trigger_steps(self, existing: list[dict[str, Any]]) -> list[Step]:
        """Triggers as the template has them. CTS and TIMER triggers of this function that
        it does not name (say, under an older name) are deleted, else a renamed trigger
        would fire twice; they go last, so no event falls between the old trigger and the
        new one (a double delivery is harmless, a missed one is not). Triggers of other
        kinds are not imsguard's and are left alone."""
        steps = []
        by_name = {
            (t.get("trigger_type_code"), (t.get("event_data") or {}).get("name")): t
            for t in existing
            if isinstance(t, dict)
        }
        wanted = {(t.type, t.name) for t in self.template.triggers}
        for trigger in self.template.triggers:
            label = f"{trigger.type} trigger {trigger.name}"
            current = by_name.get((trigger.type, trigger.name))
            create = Step(
                "create", label, _summary(trigger), partial(self._create_trigger, trigger)
            )
            if current is None:
                steps.append(create)
                continue
            changed, unseen = _event_data_differences(
                current.get("event_data") or {}, _event_data(trigger)
            )
            if changed:
                # The API cannot change event data in place: delete, then create again.
                steps.append(
                    Step(
                        "delete",
                        label,
                        f"its {', '.join(changed)} changed",
                        partial(self._delete_trigger, current),
                    )
                )
                steps.append(create)
            elif current.get("trigger_status") != trigger.status:
                steps.append(
                    Step(
                        "update",
                        label,
                        f"status {current.get('trigger_status')} -> {trigger.status}",
                        partial(self._update_trigger, trigger, current),
                    )
                )
            else:
                unread = (
                    (
                        f" ({', '.join(unseen)} not returned by FunctionGraph, so not "
                        "compared: to change it, rename the trigger)"
                    )
                    if unseen
                    else ""
                )
                steps.append(Step("keep", label, f"unchanged{unread}"))
        for (kind, name), current in by_name.items():
            if kind in ("CTS", "TIMER") and (kind, name) not in wanted:
                steps.append(
                    Step(
                        "delete",
                        f"{kind} trigger {name}",
                        "not in the template",
                        partial(self._delete_trigger, current),
                    )
                )
        return steps

    def _create_trigger(self, trigger: TriggerSpec) -> None:
        body = CreateFunctionTriggerRequestBody(
            trigger_type_code=trigger.type,
            trigger_status=trigger.status,
            event_data=TriggerEventDataRequestBody(**_event_data(trigger)),
        )
        self._call(
            self.client.create_function_trigger,
            CreateFunctionTriggerRequest(function_urn=self.urn, body=body),
        )

    def _update_trigger(self, trigger: TriggerSpec, current: dict[str, Any]) -> None:
        self._call(
            self.client.update_trigger,
            UpdateTriggerRequest(
                function_urn=self.urn,
                trigger_type_code=trigger.type,
                trigger_id=current["trigger_id"],
                body=UpdateTriggerRequestBody(trigger_status=trigger.status),
            ),
        )

    def _delete_trigger(self, current: dict[str, Any]) -> None:
        self._call(
            self.client.delete_function_trigger,
            DeleteFunctionTriggerRequest(
                function_urn=self.urn,
                trigger_type_code=current["trigger_type_code"],
                trigger_id=current["trigger_id"],
            ),
        )

    # -- asynchronous invocation --------------------------------------------------------

    def async_steps(self, current: dict[str, Any] | None) -> list[Step]:
        wanted = self.template.async_invoke
        failure = None
        if wanted.on_failure is not None:
            failure = {
                "destination": wanted.on_failure.type,
                "param": json.dumps(
                    {DESTINATION_PARAM[wanted.on_failure.type]: wanted.on_failure.target}
                ),
            }
        now = current or {}
        now_failure = ((now.get("destination_config") or {}).get("on_failure")) or None
        if now_failure:
            now_failure = {
                "destination": now_failure.get("destination"),
                "param": _json_or_text(now_failure.get("param")),
            }
        wanted_failure = failure and {**failure, "param": json.loads(failure["param"])}
        if (
            now.get("max_async_retry_attempts") == wanted.max_retries
            and now.get("max_async_event_age_in_seconds") == wanted.max_event_age_seconds
            and now_failure == wanted_failure
        ):
            return [Step("keep", "async invocation", "unchanged")]
        detail = (
            f"{wanted.max_retries} retries, events up to {wanted.max_event_age_seconds}"
            f" s old, on failure {failure['destination'] if failure else 'nothing'}"
        )
        return [Step("update", "async invocation", detail, lambda: self._update_async(failure))]

    def _update_async(self, failure: dict[str, str] | None) -> None:
        wanted = self.template.async_invoke
        destinations = FuncAsyncDestinationConfig()  # empty: no destination any more
        if failure is not None:
            destinations = FuncAsyncDestinationConfig(on_failure=FuncDestinationConfig(**failure))
        body = UpdateFunctionAsyncInvokeConfigRequestBody(
            max_async_retry_attempts=wanted.max_retries,
            max_async_event_age_in_seconds=wanted.max_event_age_seconds,
            destination_config=destinations,
        )
        self._call(
            self.client.update_function_async_invoke_config,
            UpdateFunctionAsyncInvokeConfigRequest(function_urn=self.urn, body=body),
        )

    # -- calls --------------------------------------------------------------------------

    @staticmethod
    def _call(
        method: Any, request: Any, missing_ok: bool = False, service: str = "FunctionGraph"
    ) -> Any:
        """The raw JSON answer; None for a 404 when ``missing_ok``."""
        try:
            response = method(request)
        except ServiceResponseException as exc:
            if missing_ok and exc.status_code == 404:
                return None
            raise DeployError(
                redact(
                    f"{service} answered {exc.status_code} "
                    f"{exc.error_code}: {exc.error_msg} (request id "
                    f"{exc.request_id})"
                ),
                status=exc.status_code,
            ) from None
        except (SdkException, requests.RequestException) as exc:
            raise DeployError(f"{service} could not be reached: {type(exc).__name__}") from None
        content = getattr(response, "raw_content", None)
        return json.loads(content) if content else None


def deploy_regions(deployers: dict[str, Deployer], dry_run: bool) -> dict[str, list[Step]]:
    """Each region's steps, planned or applied. Every region is planned first (reads only),
    so a region that cannot be read or planned stops the deploy before anything is written
    anywhere; then regions are applied in order, and the first failure stops the rest (a
    half-deployed region is for a person to look at, not a reason to go on)."""
    regions = list(deployers)
    plans: dict[str, list[Step]] = {}
    for index, region in enumerate(regions):
        try:
            plans[region] = deployers[region].plan()
        except DeployError as exc:
            raise RegionsError(region, exc, {}, regions[index + 1 :], planning=True) from None
    if dry_run:
        return plans
    applied: dict[str, list[Step]] = {}
    for index, region in enumerate(regions):
        try:
            applied[region] = deployers[region].apply(plans[region])
        except DeployError as exc:
            raise RegionsError(region, exc, applied, regions[index + 1 :], planning=False) from None
    return applied


class ConfigRules:
    """The template's Config rules against Config's own (global API, domain credentials).

    Before any rule, Config's providers list is read: a ``resource`` rule whose image type
    Config does not list would never fire, so the plan is refused (``force``: a warning
    instead); a ``period`` rule lists the images itself, so it is created with a warning.
    """

    def __init__(self, client: Any, force: bool = False):
        self.client = client
        self.force = force

    def steps(self, rules: list[ConfigRuleSpec], urn: str, region: str) -> list[Step]:
        steps = self._type_steps(rules)
        existing = self._assignments()
        by_name = {a.get("name"): a for a in existing}
        for rule in rules:
            label = f"Config rule {rule.name}"
            wanted = _assignment(rule, urn, region)
            current = by_name.get(rule.name)
            if current is None:
                steps.append(
                    Step("create", label, _rule_summary(rule), partial(self._create, wanted))
                )
                continue
            if not _ours(current, urn):
                raise DeployError(
                    f"Config already has a rule named {rule.name!r} that is not this "
                    f"function's ({_runs(current)}): imsguard changes only the rules that "
                    "invoke its function; give the template's rule another name"
                )
            if str(current.get("state") or "").lower() == "disabled":
                steps.append(
                    Step(
                        "warn",
                        label,
                        "disabled in Config: it evaluates nothing until you enable it there "
                        "(imsguard does not enable or disable rules)",
                    )
                )
            changed = [k for k, v in _definition(wanted).items() if _definition(current)[k] != v]
            if changed:
                _refuse_what_an_update_may_not_undo(rule.name, current, wanted)
                update = partial(self._update, str(current.get("id")), wanted)
                steps.append(Step("update", label, f"its {', '.join(changed)} changed", update))
            else:
                steps.append(Step("keep", label, "unchanged"))
        named = {rule.name for rule in rules}
        for current in existing:
            if _ours(current, urn) and current.get("name") not in named:
                steps.append(
                    Step(
                        "keep",
                        f"Config rule {current.get('name')}",
                        "not in the template: left as it is (imsguard deletes no Config "
                        "rule; delete it in the Config console if it is no longer wanted)",
                    )
                )
        return steps

    def _type_steps(self, rules: list[ConfigRuleSpec]) -> list[Step]:
        """Whether Config lists the image types the rules need: a resource rule's filter
        type, and the type a periodic evaluation's states name (its rule_parameter)."""
        listed = self.image_types(self.client)
        needs: dict[str, list[ConfigRuleSpec]] = {}
        for rule in rules:
            kind = rule.image_type
            needs.setdefault(kind, []).append(rule)
        found = (
            f"its {CONFIG_IMAGE_PROVIDER} types: {', '.join(sorted(listed))}"
            if listed
            else f"it lists no {CONFIG_IMAGE_PROVIDER} service at all"
            if listed is None
            else f"it lists {CONFIG_IMAGE_PROVIDER} with no resource types"
        )
        steps = []
        for kind, users in sorted(needs.items()):
            if listed and kind in listed:
                track = listed[kind]
                note = "" if track in (None, "tracked") else f" ({track}: add it to the recorder)"
                steps.append(
                    Step(
                        "check",
                        "Config resource types",
                        f"{CONFIG_IMAGE_PROVIDER}/{kind} listed{note}",
                    )
                )
                continue
            resource = [r.name for r in users if r.trigger == "resource"]
            missing = f"Config's providers list has no {CONFIG_IMAGE_PROVIDER}/{kind} ({found})"
            if resource and not self.force:
                raise DeployError(
                    f"{missing}: the resource rules {resource} would never be triggered; "
                    "set their resource_type to a type Config lists, use trigger: period, "
                    "or deploy with --force-config-type to create them anyway"
                )
            period = [r.name for r in users if r.trigger == "period"]
            parts = [f"resource rules {resource} are created anyway (--force-config-type)"] * bool(
                resource
            ) + [
                f"period rules {period} are created; their states name "
                f"{CONFIG_IMAGE_PROVIDER}/{kind}, which Config may not accept"
            ] * bool(period)
            what = "; ".join(parts)
            steps.append(Step("warn", "Config resource types", f"{missing}: {what}"))
        return steps

    @staticmethod
    def image_types(client: Any) -> dict[str, str | None] | None:
        """Config's resource types for IMS (name -> track), None when it lists no IMS;
        every page of ``list_providers`` (offset paging, as the API documents). Deploy
        checks the template's rules against it, and ``imsguard doctor`` the deployment."""
        from huaweicloudsdkconfig.v1 import ListProvidersRequest

        providers: list[dict[str, Any]] = []
        while True:
            request = ListProvidersRequest(limit=PROVIDERS_PAGE)
            if providers:  # the documented offset is at least 1: the first page has none
                request.offset = len(providers)
            page = ConfigRules._call(client.list_providers, request) or {}
            got = [p for p in page.get("resource_providers") or [] if isinstance(p, dict)]
            providers += got
            total = page.get("total_count")
            if not got or not isinstance(total, int) or len(providers) >= total:
                break
        ims = [p for p in providers if p.get("provider") == CONFIG_IMAGE_PROVIDER]
        if not ims:
            return None
        return {
            str(t.get("name")): t.get("track")
            for p in ims
            for t in p.get("resource_types") or []
            if isinstance(t, dict)
        }

    def _assignments(self) -> list[dict[str, Any]]:
        """Every rule of the account (``marker`` paging)."""
        from huaweicloudsdkconfig.v1 import ListPolicyAssignmentsRequest

        found: list[dict[str, Any]] = []
        marker = None
        while True:
            request = ListPolicyAssignmentsRequest(limit=CONFIG_PAGE, marker=marker)
            page = self._call(self.client.list_policy_assignments, request) or {}
            found += [a for a in page.get("value") or [] if isinstance(a, dict)]
            marker = (page.get("page_info") or {}).get("next_marker")
            if not marker:
                return found

    def _create(self, wanted: dict[str, Any]) -> None:
        from huaweicloudsdkconfig.v1 import CreatePolicyAssignmentsRequest

        self._call(
            self.client.create_policy_assignments,
            CreatePolicyAssignmentsRequest(body=_request_body(wanted)),
        )

    def _update(self, assignment_id: str, wanted: dict[str, Any]) -> None:
        from huaweicloudsdkconfig.v1 import UpdatePolicyAssignmentRequest

        self._call(
            self.client.update_policy_assignment,
            UpdatePolicyAssignmentRequest(
                policy_assignment_id=assignment_id, body=_request_body(wanted)
            ),
        )

    @staticmethod
    def _call(method: Any, request: Any) -> Any:
        return Deployer._call(method, request, service="Config")


def _assignment(rule: ConfigRuleSpec, urn: str, region: str) -> dict[str, Any]:
    """The policy assignment a template rule is: a custom rule invoking the function with
    Config's agency, on changes of the region's IMS images or every period."""
    body: dict[str, Any] = {
        "policy_assignment_type": "custom",
        "name": rule.name,
        "description": rule.description,
        "custom_policy": {
            "function_urn": urn,
            "auth_type": "agency",
            "auth_value": {"agency_name": rule.agency},
        },
        "parameters": rule.parameters(),
    }
    if rule.trigger == "period":
        body["period"] = rule.period
    else:  # the function answers only for images of its own region
        body["policy_filter"] = {
            "region_id": region,
            "resource_provider": CONFIG_IMAGE_PROVIDER,
            "resource_type": rule.image_type,
        }
    return body


def _request_body(wanted: dict[str, Any]) -> Any:
    from huaweicloudsdkconfig.v1 import (
        CustomPolicy,
        PolicyAssignmentRequestBody,
        PolicyFilterDefinition,
        PolicyParameterValue,
    )

    scope = wanted.get("policy_filter")
    return PolicyAssignmentRequestBody(
        **{
            **wanted,
            "custom_policy": CustomPolicy(**wanted["custom_policy"]),
            "policy_filter": PolicyFilterDefinition(**scope) if scope else None,
            "parameters": {
                k: PolicyParameterValue(value=v["value"]) for k, v in wanted["parameters"].items()
            },
        }
    )


def _definition(assignment: dict[str, Any]) -> dict[str, Any]:
    """What a rule does, compared as data: empty and missing values alike."""
    custom = assignment.get("custom_policy") or {}
    scope = assignment.get("policy_filter") or {}
    return {
        "description": assignment.get("description") or "",
        "period": assignment.get("period") or None,
        "policy_filter": {k: v for k, v in scope.items() if v} or None,
        "custom_policy": {
            "function_urn": custom.get("function_urn"),
            "auth_type": custom.get("auth_type"),
            "auth_value": custom.get("auth_value") or {},
        },
        "parameters": assignment.get("parameters") or {},
    }


def _refuse_what_an_update_may_not_undo(
    name: str, current: dict[str, Any], wanted: dict[str, Any]
) -> None:
    """A rule whose trigger changes (period <-> resource), or that carries a policy_filter_v2
    set in the console, is not updated in place: Config's documents do not say that an update
    clears the old trigger or filter (the SDK sends no null), and a rule left with both would
    evaluate what nobody asked for. The plan stops before anything is written."""
    fix = (
        "delete the rule in the Config console and deploy again, or give the template's rule "
        "another name"
    )
    if bool(current.get("period")) != bool(wanted.get("period")):
        was, now = ("period", "resource") if current.get("period") else ("resource", "period")
        raise DeployError(
            f"Config rule {name!r} would change from a {was} to a {now} trigger, which "
            f"imsguard does not do in place: {fix}"
        )
    if _has_values(current.get("policy_filter_v2")):
        raise DeployError(
            f"Config rule {name!r} has a policy_filter_v2 (set outside imsguard), which an "
            f"update may not clear: {fix}"
        )


def _has_values(value: Any) -> bool:
    """Whether a filter sets anything (Config may answer empty members for none)."""
    if isinstance(value, dict):
        return any(_has_values(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_values(v) for v in value)
    return value not in (None, "", False)


def _ours(assignment: dict[str, Any], urn: str) -> bool:
    """imsguard's own: a custom rule invoking this function."""
    custom = assignment.get("custom_policy") or {}
    kind = assignment.get("policy_assignment_type")
    return kind == "custom" and custom.get("function_urn") == urn


def _runs(assignment: dict[str, Any]) -> str:
    custom = assignment.get("custom_policy") or {}
    if custom.get("function_urn"):
        return f"it invokes {custom['function_urn']}"
    return f"a {assignment.get('policy_assignment_type') or 'builtin'} rule"


def _rule_summary(rule: ConfigRuleSpec) -> str:
    when = (
        f"every {rule.period}"
        if rule.trigger == "period"
        else f"on changes of {CONFIG_IMAGE_PROVIDER}/{rule.image_type}"
    )
    decides = f"rule {rule.rule}" if rule.rule else "every rule"
    return f"{when}, {decides} decides, agency {rule.agency}"


def _event_data(trigger: TriggerSpec) -> dict[str, Any]:
    if isinstance(trigger, CtsTriggerSpec):
        return {"name": trigger.name, "operations": list(trigger.operations)}
    return {
        "name": trigger.name,
        "schedule_type": "Rate",
        "schedule": trigger.schedule,
        "user_event": trigger.user_event,
    }


def _event_data_differences(
    now: dict[str, Any], wanted: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """The event-data keys that differ from the template, and those FunctionGraph did not
    return: its documented TIMER answers leave out user_event, and what cannot be read
    cannot be compared (replacing the trigger on every deploy instead would not be
    idempotent). Operations compare in any order and either written form."""
    changed, unseen = [], []
    for key, value in wanted.items():
        current = now.get(key)
        if key == "user_event" and current is None:
            unseen.append(key)
            continue
        if key == "operations":
            current, value = operation_set(current), operation_set(value)
        if current != value:
            changed.append(key)
    return changed, unseen


def operation_set(operations: Any) -> set[tuple[str, str, str]]:
    """CTS trigger operations as (service, resource type, trace) triples: FunctionGraph takes
    one per entry or several at once (``IMS:ims;image:createImage;updateImage``), and may
    answer in either form."""
    triples = set()
    for operation in operations if isinstance(operations, list) else []:
        service, _, rest = str(operation).partition(":")
        types, _, traces = rest.partition(":")
        triples |= {
            (service, kind, trace) for kind in types.split(";") for trace in traces.split(";")
        }
    return triples


def _summary(trigger: TriggerSpec) -> str:
    if isinstance(trigger, CtsTriggerSpec):
        return f"operations {', '.join(trigger.operations)}"
    return f"every {trigger.schedule}, user_event {trigger.user_event}"


def _json_or_text(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def build_config_client(
    domain_id: str,
    endpoint: str | None,
    credentials: Credentials,
    timeout: tuple[float, float] = (10, 60),
) -> Any:
    """Config's client: global credentials for the account (domain), its global endpoint;
    ``timeout`` (connect, read): doctor's fit in its deadline."""
    from huaweicloudsdkconfig.v1 import ConfigClient
    from huaweicloudsdkcore.auth.credentials import GlobalCredentials
    from huaweicloudsdkcore.http.http_config import HttpConfig

    basic = GlobalCredentials(credentials.access_key, credentials.secret_key, domain_id)
    if credentials.security_token:
        basic = basic.with_security_token(credentials.security_token)
    config = HttpConfig.get_default_config()
    config.timeout = timeout
    config.retry_times = 0
    return (
        ConfigClient.new_builder()
        .with_credentials(basic)
        .with_http_config(config)
        .with_endpoints([endpoint or CONFIG_GLOBAL_ENDPOINT])
        .build()
    )


def build_client(
    region: str | None, endpoint: str | None, project_id: str, credentials: Credentials
) -> FunctionGraphClient:
    try:
        return client_for(region, endpoint, project_id, credentials, (10, 120))  # uploads
    except KeyError:
        raise DeployError(f"no FunctionGraph endpoint for region {region!r}") from None
