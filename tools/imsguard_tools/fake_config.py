"""A fake of Config (RMS), as far as imsguard calls it: UpdatePolicyState and ListProviders.

It checks what Config's API reference documents for ``PUT /v1/resource-manager/domains/
{domain_id}/policy-states``: global credentials (``X-Domain-Id``, never a project), every
body field present, ``compliance_state`` Compliant or NonCompliant, ``trigger_type``
resource or period, a ``policy_resource`` with its six fields. Error codes and the error
body's shape are assumptions (the shared {"error": {"code", "message"}}), marked so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from imsguard_tools.fake_http import ApiError, FakeHttpApi, try_json

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
DEFAULT_ENDPOINT = "https://rms.myhuaweicloud.com"


class FakeConfig(FakeHttpApi):
    """Config's policy states, kept as received (``states``), and a providers list."""

    messages: ClassVar[dict[str, str]] = {
        **FakeHttpApi.messages,
        # assumption: codes of our own, in Config's style
        "RMS.00010001": "Invalid parameter.",
        "RMS.00010003": "Forbidden: the domain does not match the credentials.",
    }

    def __init__(
        self,
        domain_id: str,
        providers: list[dict[str, Any]] | None = None,
        endpoint: str = DEFAULT_ENDPOINT,
    ) -> None:
        super().__init__(project_id="", region="global")
        self.domain_id = domain_id
        self.endpoint = endpoint
        self.states: list[dict[str, Any]] = []
        self.providers = providers if providers is not None else []
        self._routes += [
            (
                "PUT",
                re.compile(r"/v1/resource-manager/domains/([^/]+)/policy-states"),
                self._update_state,
            ),
            ("GET", re.compile(r"/v1/resource-manager/domains/([^/]+)/providers"), self._providers),
        ]

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
        if not isinstance(data["evaluation_time"], int):
            raise invalid("evaluation_time must be epoch milliseconds")
        self.states.append(data)
        return 200, {**data, "domain_id": domain_id}

    def _providers(
        self, domain_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        if domain_id != self.domain_id:
            raise ApiError(403, "RMS.00010003")
        return 200, {"resource_providers": self.providers, "total_count": len(self.providers)}
