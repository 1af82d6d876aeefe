"""A stateful fake of FunctionGraph's API: functions, their code digest, triggers and
asynchronous invocation settings (for deploy), and asynchronous invocations (a sweep that
runs out of time invokes its own function).

Its trigger checks and error codes follow FunctionGraph's API reference; where it is
silent, the behaviour chosen is marked "assumption".
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from imsguard_tools.fake_http import ApiError, FakeHttpApi, try_json


class FakeFunctionGraph(FakeHttpApi):
    """In-memory FunctionGraph, as far as imsguard calls it."""

    messages: ClassVar[dict[str, str]] = {
        **FakeHttpApi.messages,
        # FunctionGraph's trigger errors, as its API reference words them
        "FSS.1109": "Invalid timer trigger parameters.",
        "FSS.1305": "Invalid CTS trigger parameters.",
        "FSS.1307": "The trigger name already exists.",
        "FSS.1313": "The number of operation resources has reached the maximum allowed limit.",
        "FSS.1314": "The operation resource must be specified.",
        "FSS.1316": "The resource operation has already been selected.",
        "FSS.1317": "The trigger name is too long.",
        "FSS.1318": "Invalid trigger operation.",
        "FSS.1319": "Invalid trigger name.",
    }

    def __init__(self, project_id: str, region: str, clock: Any = None) -> None:
        super().__init__(project_id, region)
        self.clock = clock  # when invocations start, for the records' search window
        # FunctionGraph's function API, for deploy tests: functions by URN, their triggers
        # and asynchronous invocation settings.
        self.functions: dict[str, dict[str, Any]] = {}
        self.function_triggers: dict[str, list[dict[str, Any]]] = {}
        self.echo_user_event = False  # see _trigger_answer
        self.async_configs: dict[str, dict[str, Any]] = {}
        self.fgs_endpoint = f"https://functiongraph.{region}.myhuaweicloud.com"
        self.invocations: list[dict[str, Any]] = []
        functions = r"/v2/([^/]+)/fgs/functions"
        triggers = r"/v2/([^/]+)/fgs/triggers"
        self._routes += [
            ("POST", re.compile(functions + r"/([^/]+)/invocations-async"), self._invoke_async),
            ("GET", re.compile(functions + r"/([^/]+)/async-invocations"), self._invocations),
            ("POST", re.compile(functions), self._fgs_create_function),
            ("GET", re.compile(functions + r"/([^/]+)/config"), self._fgs_config),
            ("PUT", re.compile(functions + r"/([^/]+)/config"), self._fgs_update_config),
            ("PUT", re.compile(functions + r"/([^/]+)/code"), self._fgs_update_code),
            ("GET", re.compile(triggers + r"/([^/]+)"), self._fgs_triggers),
            ("POST", re.compile(triggers + r"/([^/]+)"), self._fgs_create_trigger),
            ("PUT", re.compile(triggers + r"/([^/]+)/([^/]+)/([^/]+)"), self._fgs_update_trigger),
            (
                "DELETE",
                re.compile(triggers + r"/([^/]+)/([^/]+)/([^/]+)"),
                self._fgs_delete_trigger,
            ),
            (
                "GET",
                re.compile(functions + r"/([^/]+)/async-invoke-config"),
                self._fgs_async_config,
            ),
            (
                "PUT",
                re.compile(functions + r"/([^/]+)/async-invoke-config"),
                self._fgs_update_async_config,
            ),
        ]

    def endpoints(self) -> tuple[str, ...]:
        return (*super().endpoints(), self.fgs_endpoint)

    def _invoke_async(
        self, project_id: str, function_urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        """FunctionGraph: record the invocation; 202 with a request id."""
        if project_id != self.project_id:
            raise ApiError(401, "APIGW.0301")
        payload = try_json(body)
        if not isinstance(payload, dict):
            raise ApiError(400, "FSS.0400", "The request body must be a JSON object.")
        request_id = uuid.uuid4().hex
        self.invocations.append(
            {
                "function_urn": function_urn,
                "body": payload,
                "request_id": request_id,
                "status": "WAIT",
                "error_message": "",
                "start_time": self._now().strftime("%Y-%m-%dT%H:%M:%S"),
            }
        )
        return 202, {"request_id": request_id}

    def set_status(self, request_id: str, status: str, error_message: str = "") -> None:
        """What FunctionGraph's records say of one invocation from now on (as the platform
        would, running it: RUNNING, SUCCESS, FAIL or DISCARD)."""
        for invocation in self.invocations:
            if invocation["request_id"] == request_id:
                invocation.update(status=status, error_message=error_message)
                return
        raise KeyError(request_id)

    def _invocations(
        self, project_id: str, function_urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        """FunctionGraph's records of a function's asynchronous invocations (ListAsyncInvocations),
        one page, optionally of one ``request_id``; times in its documented format."""
        if project_id != self.project_id:
            raise ApiError(401, "APIGW.0301")
        window = []
        for name, default in (("query_begin_time", -3600), ("query_end_time", 0)):
            value = query.get(name)
            if value is not None and not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", value):
                raise ApiError(400, "FSS.0400", f"Invalid {name}: {value}")
            # FunctionGraph's default window: the last hour (its API reference)
            now = self._now().replace(microsecond=0)
            window.append(now + timedelta(seconds=default) if value is None else _utc(value))
        wanted = query.get("request_id")
        found = [
            {
                "request_id": i["request_id"],
                "status": i["status"],
                "error_message": i["error_message"],
                "error_code": 0 if i["status"] != "FAIL" else 500,
                "start_time": i["start_time"],
                "end_time": i["start_time"],
            }
            for i in self.invocations
            if i["function_urn"] == function_urn
            and wanted in (None, i["request_id"])
            and window[0] <= _utc(i["start_time"]) <= window[1]
        ]
        return 200, {"invocations": found, "count": len(found), "next_marker": len(found)}

    def _now(self) -> datetime:
        return (self.clock.utcnow() if self.clock else datetime.now(timezone.utc)).astimezone(
            timezone.utc
        )

    def _fgs_function(self, project_id: str, urn: str) -> dict[str, Any]:
        if project_id != self.project_id:
            raise ApiError(401, "APIGW.0301")
        function = self.functions.get(urn)
        if function is None:
            raise ApiError(404, "FSS.1051", "Not found the function")
        return function

    def _fgs_body(self, body: str | None) -> dict[str, Any]:
        data = try_json(body)
        if not isinstance(data, dict):
            raise ApiError(400, "FSS.0400", "The request body must be a JSON object.")
        return data

    def _fgs_create_function(
        self, project_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        if project_id != self.project_id:
            raise ApiError(401, "APIGW.0301")
        data = self._fgs_body(body)
        urn = (
            f"urn:fss:{self.region}:{project_id}:function:{data.get('package', 'default')}"
            f":{data.get('func_name')}:latest"
        )
        if urn in self.functions:
            raise ApiError(409, "FSS.1061", "The function already exists")
        _require_code_filename(data)
        config = _stored_config({k: v for k, v in data.items() if k != "func_code"})
        config.update(func_urn=urn, digest=_digest(data.get("func_code")))
        self.functions[urn] = config
        self.function_triggers[urn] = []
        return 200, config

    def _fgs_config(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        return 200, self._fgs_function(project_id, urn)

    def _fgs_update_config(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        function = self._fgs_function(project_id, urn)
        function.update(_stored_config(self._fgs_body(body)))
        return 200, function

    def _fgs_update_code(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        function = self._fgs_function(project_id, urn)
        data = self._fgs_body(body)
        _require_code_filename(data)
        function["digest"] = _digest(data.get("func_code"))
        return 200, {"func_urn": urn, "digest": function["digest"]}

    def _fgs_triggers(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._fgs_function(project_id, urn)
        return 200, [self._trigger_answer(t) for t in self.function_triggers[urn]]

    def _trigger_answer(self, trigger: dict[str, Any]) -> dict[str, Any]:
        """A trigger as FunctionGraph's answers show one: every documented TIMER example
        returns event_data without user_event (``echo_user_event`` sends it back anyway,
        as the SDK's response model would allow)."""
        answer = copy.deepcopy(trigger)
        if answer.get("trigger_type_code") == "TIMER" and not self.echo_user_event:
            answer["event_data"].pop("user_event", None)
        return answer

    def _fgs_create_trigger(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._fgs_function(project_id, urn)
        data = self._fgs_body(body)
        _check_trigger(data)
        name = (data.get("event_data") or {}).get("name")
        if any(
            t["trigger_type_code"] == data.get("trigger_type_code")
            and t["event_data"].get("name") == name
            for t in self.function_triggers[urn]
        ):
            raise ApiError(400, "FSS.1307")
        now = self._tick().replace("T", " ").removesuffix("Z")  # "2022-11-09 16:37:24"
        trigger = {
            "trigger_id": uuid.uuid4().hex,
            **data,
            "last_updated_time": now,
            "created_time": now,
        }
        self.function_triggers[urn].append(trigger)
        return 201, self._trigger_answer(trigger)  # 201, as the current API reference shows

    def _fgs_trigger(
        self, project_id: str, urn: str, type_code: str, trigger_id: str
    ) -> dict[str, Any]:
        self._fgs_function(project_id, urn)
        for trigger in self.function_triggers[urn]:
            if trigger["trigger_id"] == trigger_id and trigger["trigger_type_code"] == type_code:
                return trigger
        raise ApiError(404, "FSS.1053", "Not found the trigger")

    def _fgs_update_trigger(
        self,
        project_id: str,
        urn: str,
        type_code: str,
        trigger_id: str,
        *,
        query: dict[str, str],
        body: str | None,
    ) -> tuple[int, Any]:
        trigger = self._fgs_trigger(project_id, urn, type_code, trigger_id)
        data = self._fgs_body(body)
        # Like the real API (as the SDK models it): the status changes, event data does not.
        trigger["trigger_status"] = data.get("trigger_status", trigger["trigger_status"])
        return 200, trigger

    def _fgs_delete_trigger(
        self,
        project_id: str,
        urn: str,
        type_code: str,
        trigger_id: str,
        *,
        query: dict[str, str],
        body: str | None,
    ) -> tuple[int, Any]:
        trigger = self._fgs_trigger(project_id, urn, type_code, trigger_id)
        self.function_triggers[urn].remove(trigger)
        return 204, {}

    def _fgs_async_config(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._fgs_function(project_id, urn)
        if urn not in self.async_configs:
            raise ApiError(404, "FSS.1051", "No asynchronous invocation settings")
        return 200, self.async_configs[urn]

    def _fgs_update_async_config(
        self, project_id: str, urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._fgs_function(project_id, urn)
        self.async_configs[urn] = {"func_urn": urn, **self._fgs_body(body)}
        return 200, self.async_configs[urn]


def _utc(text: str) -> datetime:
    """A time in FunctionGraph's format (YYYY-MM-DDTHH:mm:ss, UTC)."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _stored_config(config: dict[str, Any]) -> dict[str, Any]:
    """User data kept as data, not as the text sent (spacing and key order may change)."""
    if isinstance(config.get("user_data"), str):
        with contextlib.suppress(ValueError):  # not JSON: kept as sent
            config["user_data"] = json.dumps(json.loads(config["user_data"]), indent=1)
    return config


# FunctionGraph's trigger rules (its CTS and TIMER event maps) and the error codes its API
# reference gives for them: CTS names take letters (Chinese too), digits and underscores;
# timer names start with a letter; a timer's user_event stays under 2 KB; operations are
# <service>:<resource type>[;<type>]:<trace name>[;<name>], at most 100.
_TRIGGER_NAME = {
    "CTS": re.compile(r"[A-Za-z0-9_\u4e00-\u9fa5]+"),
    "TIMER": re.compile(r"[A-Za-z][A-Za-z0-9_-]*"),
}
_CTS_OPERATION = re.compile(r"[A-Za-z]+:[A-Za-z]+(;[A-Za-z]+)*:[A-Za-z]+(;[A-Za-z]+)*")


def _check_trigger(data: dict[str, Any]) -> None:
    event_data = data.get("event_data")
    kind = data.get("trigger_type_code")
    if not isinstance(event_data, dict):
        raise ApiError(400, "FSS.1305" if kind == "CTS" else "FSS.1109")
    name = event_data.get("name")
    if kind == "TIMER" and (
        not isinstance(name, str) or len(name) > 64 or not _TRIGGER_NAME[kind].fullmatch(name)
    ):
        raise ApiError(400, "FSS.1109")  # the timer's own error: invalid parameters
    if kind == "CTS":
        if not isinstance(name, str) or not _TRIGGER_NAME[kind].fullmatch(name):
            raise ApiError(502, "FSS.1319")  # documented with HTTP 502
        if len(name) > 64:
            raise ApiError(400, "FSS.1317")
        operations = event_data.get("operations")
        if not isinstance(operations, list) or not operations:
            raise ApiError(400, "FSS.1314")
        if len(operations) > 100:
            raise ApiError(400, "FSS.1313")
        if not all(isinstance(o, str) and _CTS_OPERATION.fullmatch(o) for o in operations):
            raise ApiError(400, "FSS.1318")
        if len(set(operations)) != len(operations):
            raise ApiError(400, "FSS.1316")
        if data.get("trigger_status") == "DISABLED":  # assumption: only some types disable
            raise ApiError(400, "FSS.1305")
    elif kind == "TIMER" and len(str(event_data.get("user_event", "")).encode()) >= 2048:
        raise ApiError(400, "FSS.1109")


def _require_code_filename(data: dict[str, Any]) -> None:
    """The SDK documents code_filename as required for ZIP code."""
    if data.get("code_type") == "zip" and not data.get("code_filename"):
        raise ApiError(400, "FSS.0400", "code_filename is required when code_type is zip")


def _digest(func_code: Any) -> str | None:
    """FunctionGraph's code digest: SHA-512 of the ZIP (assumption, as the deploy uses)."""
    if not isinstance(func_code, dict) or not isinstance(func_code.get("file"), str):
        return None
    return hashlib.sha512(base64.b64decode(func_code["file"])).hexdigest()
