"""A fake of Config (RMS), as far as imsguard calls it: UpdatePolicyState, ListProviders,
and the policy assignments (rules) ``imsguard deploy`` lists, creates and updates.

It checks what Config's API reference documents for ``PUT /v1/resource-manager/domains/
{domain_id}/policy-states``: global credentials (``X-Domain-Id``, never a project), every
body field present, ``compliance_state`` Compliant or NonCompliant, ``trigger_type``
resource or period, a ``policy_resource`` with its six fields. For the rules ("Adding a
Rule", "Modifying a Rule", "Querying All Rules", rms_04_0503/0505/0504) and the providers
list ("Listing Cloud Services", rms_04_0102): name required and at most 64 characters,
description at most 512, ``policy_assignment_type`` builtin (the default) or custom, a
custom rule's ``custom_policy`` with ``function_urn`` (at most 1,024) and ``auth_type``,
``period`` one of five values and never beside ``policy_filter``, the filter's field
lengths; rules listed 1-500 per page with ``marker`` paging (``page_info.next_marker``),
providers 1-200 per page with ``offset`` (at least 1). Error codes follow Config's error
code table where it has one; the error body's shape (the shared {"error": {"code",
"message"}}), a duplicate name's answer and a renaming update's are assumptions.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from imsguard.settings import CONFIG_GLOBAL_ENDPOINT
from imsguard_tools.fake_http import ApiError, FakeCall, FakeHttpApi, try_json

STATE_FIELDS = (
    "policy_resource",
    "trigger_type",
    "compliance_state",
    "policy_assignment_id",
    "evaluation_time",
    "evaluation_hash",
)
RESOURCE_FIELDS = (
    "resource_id",
    "resource_name",
    "resource_provider",
    "resource_type",
    "region_id",
    "domain_id",
)
PERIODS = ("One_Hour", "Three_Hours", "Six_Hours", "Twelve_Hours", "TwentyFour_Hours")
FILTER_LIMITS = {
    "region_id": 128,
    "resource_provider": 128,
    "resource_type": 128,
    "resource_id": 512,
    "tag_key": 128,
    "tag_value": 256,
}


class FakeConfig(FakeHttpApi):
    """Config's policy states, kept as received (``states``), and a providers list."""

    messages: ClassVar[dict[str, str]] = {
        **FakeHttpApi.messages,
        # assumption: codes of our own, in Config's style
        "RMS.00010001": "Invalid parameter.",
        "RMS.00010003": "Forbidden: the domain does not match the credentials.",
        # Config's error code table
        "RMS.00010004": "Invalid parameter.",
        "RMS.00010005": "Resource not found.",
        "RMS.00010006": "Access denied.",
        "RMS.00010025": "The maximum value of limit must be less than or equal to 200.",
        "RMS.00010026": "The minimum value of offset must be greater than or equal to 1.",
        "RMS.00010035": "The length of marker must be between 4 and 400.",
        "RMS.00010045": "The max length of name must be less than or equal to 64.",
        "RMS.00010046": "Name is illegal.",
    }

    def __init__(
        self,
        domain_id: str,
        providers: list[dict[str, Any]] | None = None,
        endpoint: str = CONFIG_GLOBAL_ENDPOINT,
    ) -> None:
        super().__init__(project_id="", region="global")
        self.domain_id = domain_id
        self.endpoint = endpoint
        self.states: list[dict[str, Any]] = []
        self.providers = providers if providers is not None else []
        self.assignments: list[dict[str, Any]] = []  # policy assignments, in creation order
        domain = r"/v1/resource-manager/domains/([^/]+)"
        self._routes += [
            ("PUT", re.compile(domain + r"/policy-states"), self._update_state),
            ("GET", re.compile(domain + r"/providers"), self._providers),
            ("GET", re.compile(domain + r"/policy-assignments"), self._list_assignments),
            ("PUT", re.compile(domain + r"/policy-assignments"), self._create_assignment),
            ("PUT", re.compile(domain + r"/policy-assignments/([^/]+)"), self._update_assignment),
        ]

    @property
    def writes(self) -> list[FakeCall]:
        """Requests that could change something (every method but GET)."""
        return [call for call in self.calls if call.method != "GET"]

    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint,)

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        """Signed with global credentials: the domain id, no project id."""
        lowered = {key.lower(): value for key, value in headers.items()}
        authorization = lowered.get("authorization", "")
        if not authorization.startswith("SDK-HMAC-SHA256 ") or "Signature=" not in authorization:
            raise ApiError(401, "APIGW.0301")
        if lowered.get("x-domain-id") != self.domain_id:
            raise ApiError(401, "APIGW.0301")

    def _update_state(
        self, domain_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        if domain_id != self.domain_id:
            raise ApiError(403, "RMS.00010003")
        data = try_json(body)

        def invalid(why: str) -> ApiError:
            return ApiError(400, "RMS.00010001", f"Invalid parameter: {why}")

        if not isinstance(data, dict):
            raise invalid("the body must be a JSON object")
        missing = [key for key in STATE_FIELDS if data.get(key) in (None, "")]
        if missing:
            raise invalid(f"missing {missing}")
        if data["compliance_state"] not in ("Compliant", "NonCompliant"):
            raise invalid("compliance_state must be Compliant or NonCompliant")
        if data["trigger_type"] not in ("resource", "period"):
            raise invalid("trigger_type must be resource or period")
        resource = data["policy_resource"]
        if not isinstance(resource, dict) or any(k not in resource for k in RESOURCE_FIELDS):
            raise invalid(f"policy_resource needs {list(RESOURCE_FIELDS)}")
        # assumption: epoch ms as a number (Config's example event) or a digit string (the
        # SDK model's and the API reference's type) are both taken
        evaluation_time = data["evaluation_time"]
        if isinstance(evaluation_time, bool) or not (
            isinstance(evaluation_time, int)
            or (isinstance(evaluation_time, str) and re.fullmatch(r"[0-9]+", evaluation_time))
        ):
            raise invalid("evaluation_time must be epoch milliseconds")
        self.states.append(data)
        return 200, {**data, "domain_id": domain_id}

    def _providers(
        self, domain_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        """One page: ``limit`` 1-200 (default 200), ``offset`` at least 1 when given, read
        as the number of services to skip (assumption: the documents give only its range)."""
        self._own(domain_id)
        limit = _int(query.get("limit", "200"))
        offset = _int(query.get("offset", "0"))
        if limit < 1 or limit > 200:
            raise ApiError(400, "RMS.00010025")
        if "offset" in query and offset < 1:
            raise ApiError(400, "RMS.00010026")
        page = self.providers[offset : offset + limit]
        return 200, {"resource_providers": page, "total_count": len(self.providers)}

    # -- policy assignments (rules) -------------------------------------------------

    def add_assignment(self, **fields: Any) -> dict[str, Any]:
        """A rule made outside imsguard (say, in the console), as Config would list it."""
        assignment = {
            "policy_assignment_type": "builtin",
            "id": uuid.uuid4().hex[:24],
            "description": "",
            "policy_filter": None,
            "period": None,
            "state": "Enabled",
            "created": self._tick(),
            "policy_definition_id": None,
            "custom_policy": None,
            "parameters": {},
            "created_by": "custom",
            **fields,
        }
        assignment.setdefault("updated", assignment["created"])
        self.assignments.append(assignment)
        return assignment

    def _list_assignments(
        self, domain_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        """``limit`` 1-500 (default 500), ``marker`` the last id of the previous page."""
        self._own(domain_id)
        limit = _int(query.get("limit", "500"))
        if limit < 1 or limit > 500:
            raise ApiError(400, "RMS.00010004", "Invalid parameter: limit must be 1-500")
        listed = self.assignments
        name = query.get("policy_assignment_name")
        if name:
            listed = [a for a in listed if a["name"] == name]
        marker = query.get("marker")
        if marker is not None:
            if not 4 <= len(marker) <= 400:
                raise ApiError(400, "RMS.00010035")
            ids = [a["id"] for a in listed]
            if marker not in ids:
                raise ApiError(400, "RMS.00010004", "Invalid parameter: marker")
            listed = listed[ids.index(marker) + 1 :]
        page = listed[:limit]
        more = len(listed) > limit
        return 200, {
            "value": copy.deepcopy(page),
            "page_info": {
                "current_count": len(page),
                "next_marker": page[-1]["id"] if more else None,
            },
        }

    def _create_assignment(
        self, domain_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._own(domain_id)
        data = self._assignment_body(body)
        if any(a["name"] == data["name"] for a in self.assignments):
            # assumption: Config refuses a second rule of the same name this way
            raise ApiError(400, "RMS.00010046", "Name is illegal: the name is already used")
        assignment = self.add_assignment(**data)
        return 200, copy.deepcopy(assignment)

    def _update_assignment(
        self, domain_id: str, assignment_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._own(domain_id)
        current = next((a for a in self.assignments if a["id"] == assignment_id), None)
        if current is None:
            raise ApiError(404, "RMS.00010005")
        data = self._assignment_body(body)
        if data["name"] != current["name"]:  # assumption: a rule keeps its name
            raise ApiError(400, "RMS.00010046", "Name is illegal: a rule cannot be renamed")
        # The body replaces the rule's definition: what it leaves out is cleared.
        current.update(
            {
                "description": "",
                "period": None,
                "policy_filter": None,
                "custom_policy": None,
                "parameters": {},
                "policy_definition_id": None,
                **data,
                "updated": self._tick(),
            }
        )
        return 200, copy.deepcopy(current)

    def _assignment_body(self, body: str | None) -> dict[str, Any]:
        """The rule a create or update body describes, checked as Config documents it."""
        data = try_json(body)

        def invalid(why: str) -> ApiError:
            return ApiError(400, "RMS.00010004", f"Invalid parameter: {why}")

        if not isinstance(data, dict):
            raise invalid("the body must be a JSON object")
        allowed = {
            "policy_assignment_type",
            "name",
            "description",
            "period",
            "policy_filter",
            "policy_filter_v2",
            "custom_policy",
            "policy_definition_id",
            "parameters",
            "tags",
        }
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise invalid(f"unknown fields {unknown}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise invalid("name is required")
        if len(name) > 64:
            raise ApiError(400, "RMS.00010045")
        description = data.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 512):
            raise invalid("description is text of at most 512 characters")
        kind = data.setdefault("policy_assignment_type", "builtin")
        if kind not in ("builtin", "custom"):
            raise invalid("policy_assignment_type must be builtin or custom")
        period, scope = data.get("period"), data.get("policy_filter")
        if period is not None and period not in PERIODS:
            raise invalid(f"period must be one of {list(PERIODS)}")
        if period is not None and scope is not None:
            raise invalid("a rule has a period or a policy_filter, not both")
        if scope is not None:
            if not isinstance(scope, dict) or set(scope) - set(FILTER_LIMITS):
                raise invalid(f"policy_filter takes only {list(FILTER_LIMITS)}")
            for key, value in scope.items():
                if value is not None and (
                    not isinstance(value, str) or len(value) > FILTER_LIMITS[key]
                ):
                    raise invalid(f"policy_filter.{key} is text of at most {FILTER_LIMITS[key]}")
        custom = data.get("custom_policy")
        if kind == "custom":
            if not isinstance(custom, dict):
                raise invalid("a custom rule needs custom_policy")
            urn, auth = custom.get("function_urn"), custom.get("auth_type")
            if not isinstance(urn, str) or not urn or len(urn) > 1024:
                raise invalid("custom_policy.function_urn is required, at most 1024")
            if not isinstance(auth, str) or not auth:
                raise invalid("custom_policy.auth_type is required")
            value = custom.get("auth_value")
            if value is not None and not isinstance(value, dict):
                raise invalid("custom_policy.auth_value must be an object")
        elif not data.get("policy_definition_id"):
            raise invalid("a builtin rule needs policy_definition_id")
        parameters = data.get("parameters")
        if parameters is not None and (
            not isinstance(parameters, dict)
            or not all(isinstance(v, dict) and set(v) <= {"value"} for v in parameters.values())
        ):
            raise invalid("parameters maps names to {value}")
        return {key: value for key, value in data.items() if value is not None}

    def _own(self, domain_id: str) -> None:
        if domain_id != self.domain_id:
            raise ApiError(403, "RMS.00010003")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, "RMS.00010004", f"Invalid parameter: {text!r}") from None
