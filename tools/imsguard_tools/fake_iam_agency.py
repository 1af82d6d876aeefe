"""A fake of IAM's agency reads, as far as ``imsguard doctor`` makes them for the function's
agency: ListAgencies, the agency's permissions for global services, for one project and for
all projects, and KeystoneShowPermission (a permission's policy).

It answers as IAM's API reference documents these (iam_12_0001, iam_12_0006, iam_12_0007,
iam_12_0014, iam_10_0002): ``{"agencies": [...]}`` filtered by ``name`` for the ``domain_id``
given; ``{"roles": [...]}`` with each permission's ``policy`` (``Version``, ``Statement`` of
``Effect`` and ``Action``) for global services and for a project; only ``id``, ``name`` and
``links`` for all projects, whose policies ``GET /v3/roles/{role_id}`` shows. The caller signs
with global credentials (its account in ``X-Domain-Id``). Separate from fake_org's FakeIam,
which answers member accounts' assumed credentials.

Assumptions, marked so: another account's ``domain_id`` is refused (403); the error body is the
Keystone shape of IAM's examples (``{"error": {"code", "message", "title"}}``) with codes of
the IAM.00xx form; Tenant Administrator's policy (all actions, IAM's own denied).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from imsguard.settings import IAM_GLOBAL_ENDPOINT
from imsguard_tools.fake_http import ApiError, FakeHttpApi

# A system role every account has: all actions but IAM's (its policy: assumption).
TENANT_ADMINISTRATOR: dict[str, Any] = {
    "id": "7f2f1b6e3a8c4d5e9f0a1b2c3d4e5f60",
    "name": "te_admin",
    "display_name": "Tenant Administrator",
    "catalog": "BASE",
    "type": "AA",
    "domain_id": None,
    "description": "Tenant Administrator (Exclude IAM)",
    "policy": {
        "Version": "1.0",
        "Statement": [
            {"Action": ["*:*:*"], "Effect": "Allow"},
            {"Action": ["identity:*:*"], "Effect": "Deny"},
        ],
    },
}


@dataclass
class FakeAgency:
    """An agency and the permissions (role ids) it holds in each scope."""

    id: str
    name: str
    domain_roles: list[str] = field(default_factory=list)  # global services
    project_roles: dict[str, list[str]] = field(default_factory=dict)  # by project id
    inherited_roles: list[str] = field(default_factory=list)  # all projects


class FakeAgencyIam(FakeHttpApi):
    """One account's agencies (``agencies`` by id) and permissions (``roles`` by id)."""

    messages: ClassVar[dict[str, str]] = {
        **FakeHttpApi.messages,
        "IAM.0001": "The request is invalid.",
        "IAM.0003": "Policy doesn't allow this action to be performed.",
        "IAM.0004": "Could not find the requested resource.",
    }

    def __init__(self, domain_id: str, endpoint: str = IAM_GLOBAL_ENDPOINT) -> None:
        super().__init__(project_id="", region="global")
        self.domain_id = domain_id
        self.endpoint = endpoint
        self.agencies: dict[str, FakeAgency] = {}
        self.roles: dict[str, dict[str, Any]] = {TENANT_ADMINISTRATOR["id"]: TENANT_ADMINISTRATOR}
        roles = r"/v3\.0/OS-AGENCY/(domains|projects)/([^/]+)/agencies/([^/]+)/roles"
        self._routes += [
            ("GET", re.compile(r"/v3\.0/OS-AGENCY/agencies"), self._list_agencies),
            ("GET", re.compile(roles), self._scope_roles),
            (
                "GET",
                re.compile(
                    r"/v3\.0/OS-INHERIT/domains/([^/]+)/agencies/([^/]+)/roles/inherited_to_projects"
                ),
                self._inherited_roles,
            ),
            ("GET", re.compile(r"/v3/roles/([^/]+)"), self._show_role),
        ]

    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint,)

    def error_body(self, code: str, message: str) -> Any:
        return {"error": {"code": code, "message": message, "title": _TITLES.get(code, "Error")}}

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        """Global credentials: signed, for this account, no project."""
        self.authenticate_global(headers, self.domain_id)

    def add_agency(self, name: str) -> FakeAgency:
        agency = FakeAgency(uuid.uuid5(uuid.NAMESPACE_DNS, f"agency/{name}").hex, name)
        self.agencies[agency.id] = agency
        return agency

    def add_policy(self, name: str, allow: Sequence[str], deny: Sequence[str] = ()) -> str:
        """A custom policy (IAM policy language 1.1) of this account; returns its id."""
        statements = [{"Effect": "Allow", "Action": list(allow)}]
        if deny:
            statements.append({"Effect": "Deny", "Action": list(deny)})
        role_id = uuid.uuid5(uuid.NAMESPACE_DNS, f"role/{name}").hex
        self.roles[role_id] = {
            "id": role_id,
            "name": f"custom_{self.domain_id}_{len(self.roles)}",
            "display_name": name,
            "catalog": "CUSTOMED",
            "type": "XA",
            "domain_id": self.domain_id,
            "description": "",
            "policy": {"Version": "1.1", "Statement": statements},
        }
        return role_id

    def _role(self, role_id: str) -> dict[str, Any]:
        role = self.roles[role_id]
        return {**role, "links": {"self": f"{self.endpoint}/v3/roles/{role_id}"}}

    def _agency(self, agency_id: str) -> FakeAgency:
        agency = self.agencies.get(agency_id)
        if agency is None:
            raise ApiError(404, "IAM.0004", f"Could not find agency: {agency_id}.")
        return agency

    def _own(self, domain_id: str | None) -> None:
        if not domain_id:
            raise ApiError(400, "IAM.0001", "domain_id is required.")
        if domain_id != self.domain_id:  # assumption: another account's agencies are refused
            raise ApiError(403, "IAM.0003")

    def _list_agencies(self, *, query: dict[str, str], body: str | None) -> tuple[int, Any]:
        self._own(query.get("domain_id"))
        name = query.get("name")
        listed = [a for a in self.agencies.values() if name is None or a.name == name]
        return 200, {
            "agencies": [
                {
                    "id": a.id,
                    "name": a.name,
                    "domain_id": self.domain_id,
                    "trust_domain_id": None,
                    "trust_domain_name": "op_svc_cff",
                    "description": "",
                    "duration": "FOREVER",
                    "expire_time": None,
                    "create_time": "2026-01-01T00:00:00.000000",
                }
                for a in listed
            ]
        }

    def _scope_roles(
        self, scope: str, scope_id: str, agency_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        if scope == "domains":
            self._own(scope_id)
        agency = self._agency(agency_id)
        held = agency.domain_roles if scope == "domains" else agency.project_roles.get(scope_id, [])
        return 200, {"roles": [self._role(r) for r in held]}

    def _inherited_roles(
        self, domain_id: str, agency_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        self._own(domain_id)
        agency = self._agency(agency_id)
        return 200, {
            "roles": [
                {
                    "id": r,
                    "name": self.roles[r]["name"],
                    "links": {"self": f"{self.endpoint}/v3/roles/{r}"},
                }
                for r in agency.inherited_roles
            ],
            "links": {"self": f"{self.endpoint}/v3.0/OS-INHERIT/domains/{domain_id}/agencies"},
        }

    def _show_role(
        self, role_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        if role_id not in self.roles:
            raise ApiError(404, "IAM.0004", f"Could not find role: {role_id}.")
        return 200, {"role": self._role(role_id)}


_TITLES = {"IAM.0001": "Bad Request", "IAM.0003": "Forbidden", "IAM.0004": "Not Found"}
