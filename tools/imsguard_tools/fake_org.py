"""Fakes of the organization-scale APIs, as far as imsguard calls them: Organizations
(ListAccounts, ListTagResources), STS (AssumeAgency) and IAM (KeystoneListAuthProjects).

They check what the documents say: ListAccounts pages with ``limit`` (1-500 here, after
governance-apis.md) and ``marker`` (the last account id of the previous page, answered in
``page_info.next_marker``, absent on the last page), ``parent_id`` for one OU's direct members;
ListTagResources on ``organizations:accounts/{id}`` with ``limit`` 1-2000 and marker paging;
AssumeAgency's body (``agency_urn`` ``iam::<account>:agency:<name>``, ``agency_session_name``,
``duration_seconds`` 900-43200, at most 3600 with a security token). Each assumed credential's
AK encodes its account (``STS<account id><n>``), so the fake IAM answers that account's
projects and refuses an AK it never issued (401 APIGW.0301), or one past its expiry.

Error bodies are the documented flat ``{"error_code", "error_msg", "request_id"}`` (IAM v5's
error code page; API Gateway's); Organizations' codes are from its error code table. STS's
answer to a missing agency is STS5.1106 with the wording of IAM v5's response example; its
HTTP status (403) is an assumption, marked so.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from imsguard.clock import Clock
from imsguard.settings import IAM_GLOBAL_ENDPOINT, ORGANIZATIONS_GLOBAL_ENDPOINT
from imsguard_tools.fake_http import ApiError, FakeHttpApi, format_time, try_json

MANAGEMENT_ACCOUNT = "0" * 31 + "1"  # the organization's management account (domain id)
_ACCESS = re.compile(r"Access=([^,\s]+)")


def _flat(code: str, message: str) -> dict[str, str]:
    return {"error_code": code, "error_msg": message, "request_id": uuid.uuid4().hex}


def _access_key(headers: Mapping[str, str]) -> str | None:
    lowered = {key.lower(): value for key, value in headers.items()}
    match = _ACCESS.search(lowered.get("authorization", ""))
    return match.group(1) if match else None


@dataclass
class FakeAccount:
    id: str
    name: str
    parent_id: str = "r-root"  # the OU it sits in (the root by default)
    status: str = "active"
    tags: dict[str, str] = field(default_factory=dict)


class FakeOrganizations(FakeHttpApi):
    """An organization's accounts; ``enabled=False``: the caller is no management account."""

    messages: ClassVar[dict[str, str]] = {
        **FakeHttpApi.messages,
        "Organizations.1001": "This operation can be called only from the management account "
        "of an organization.",
        "Organizations.1007": "Policy doesn't allow 'organizations:accounts:list' to be performed.",
        # assumption: a code of our own for a bad parameter
        "Organizations.1100": "Invalid parameter.",
        "APIGW.0308": "The throttling threshold has been reached",
    }

    def __init__(
        self,
        accounts: list[FakeAccount] | None = None,
        domain_id: str = MANAGEMENT_ACCOUNT,
        endpoint: str = ORGANIZATIONS_GLOBAL_ENDPOINT,
        enabled: bool = True,
    ) -> None:
        super().__init__(project_id="", region="global")
        self.accounts = accounts if accounts is not None else []
        self.domain_id = domain_id
        self.endpoint = endpoint
        self.enabled = enabled
        self._routes += [
            ("GET", re.compile(r"/v1/organizations/accounts"), self._list_accounts),
            ("GET", re.compile(r"/v1/organizations/([^/]+)/([^/]+)/tags"), self._list_tags),
        ]

    @classmethod
    def with_accounts(cls, count: int, **kwargs: Any) -> FakeOrganizations:
        """``count`` active accounts ``acct-0001``... with 32-hex ids."""
        accounts = [FakeAccount(f"{index:032x}", f"acct-{index:04d}") for index in range(count)]
        return cls(accounts, **kwargs)

    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint,)

    def error_body(self, code: str, message: str) -> Any:
        return _flat(code, message)

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        """Global credentials: signed, with the caller's domain id and no project."""
        self.authenticate_global(headers, self.domain_id)
        if not self.enabled:
            raise ApiError(401, "Organizations.1001")

    def _list_accounts(self, *, query: dict[str, str], body: str | None) -> tuple[int, Any]:
        limit = _int(query.get("limit", "200"))
        if not 1 <= limit <= 500:
            raise ApiError(400, "Organizations.1100", "Invalid parameter: limit must be 1-500")
        listed = self.accounts
        if query.get("parent_id"):
            listed = [a for a in listed if a.parent_id == query["parent_id"]]
        listed = _after(listed, query.get("marker"), lambda a: a.id)
        page = listed[:limit]
        more = len(listed) > limit
        return 200, {
            "accounts": [
                {
                    "id": a.id,
                    "urn": f"organizations::{self.domain_id}:account:o-fake/{a.id}",
                    "join_method": "invited",
                    "status": a.status,
                    "joined_at": "2026-01-01T00:00:00Z",
                    "name": a.name,
                }
                for a in page
            ],
            "page_info": {"next_marker": page[-1].id if more else None, "current_count": len(page)},
        }

    def _list_tags(
        self, resource_type: str, resource_id: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        limit = _int(query.get("limit", "200"))
        if not 1 <= limit <= 2000:
            raise ApiError(400, "Organizations.1100", "Invalid parameter: limit must be 1-2000")
        account = next((a for a in self.accounts if a.id == resource_id), None)
        if resource_type != "organizations:accounts" or account is None:
            raise ApiError(404, "Organizations.1100", "Invalid parameter: no such resource")
        tags = _after(sorted(account.tags.items()), query.get("marker"), lambda t: t[0])
        page = tags[:limit]
        more = len(tags) > limit
        return 200, {
            "tags": [{"key": k, "value": v} for k, v in page],
            "page_info": {"next_marker": page[-1][0] if more else None, "current_count": len(page)},
        }


@dataclass
class Issued:
    """A temporary credential FakeSts issued: for which account, until when."""

    account_id: str
    secret_key: str
    token: str
    expiration: datetime


class FakeSts(FakeHttpApi):
    """AssumeAgency for the agencies that exist (``agencies``: account id -> agency names).
    ``clock`` (a FakeClock) sets the expiry times; ``issued`` maps each AK to its account."""

    messages: ClassVar[dict[str, str]] = {
        **FakeHttpApi.messages,
        "STS5.1106": "the agency cannot be found",
        # assumption: a code of our own for a bad body
        "STS5.0400": "invalid request body",
        "APIGW.0308": "The throttling threshold has been reached",
    }

    def __init__(
        self,
        project_id: str,
        region: str,
        agencies: dict[str, set[str]] | None = None,
        clock: Clock | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(project_id, region)
        self.agencies = agencies if agencies is not None else {}
        self.clock = clock
        self.endpoint = endpoint or f"https://sts.{region}.myhuaweicloud.com"
        self.issued: dict[str, Issued] = {}
        self._routes += [("POST", re.compile(r"/v5/agencies/assume"), self._assume)]
        self._chained = False

    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint,)

    def error_body(self, code: str, message: str) -> Any:
        return _flat(code, message)

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        super()._authenticate(headers)
        lowered = {key.lower() for key in headers}
        self._chained = "x-security-token" in lowered

    def now(self) -> datetime:
        return self.clock.utcnow() if self.clock else datetime(2026, 1, 1, tzinfo=timezone.utc)

    def _assume(self, *, query: dict[str, str], body: str | None) -> tuple[int, Any]:
        data = try_json(body)

        def invalid(why: str) -> ApiError:
            return ApiError(400, "STS5.0400", f"invalid request body: {why}")

        if not isinstance(data, dict):
            raise invalid("not a JSON object")
        urn = data.get("agency_urn")
        match = re.fullmatch(r"iam::([0-9a-f]{32}):agency:([A-Za-z0-9+=,.@_-]{1,64})", str(urn))
        if match is None:
            raise invalid("agency_urn must be iam::<account id>:agency:<agency name>")
        session = data.get("agency_session_name")
        if not isinstance(session, str) or not re.fullmatch(r"[\w+=,.@-]{2,64}", session):
            raise invalid("agency_session_name must be 2-64 of letters, digits and _+=,.@-")
        duration = data.get("duration_seconds", 3600)
        most = 3600 if self._chained else 43_200
        if not isinstance(duration, int) or not 900 <= duration <= most:
            raise invalid(f"duration_seconds must be 900-{most}")
        account_id, agency = match.groups()
        if agency not in self.agencies.get(account_id, set()):
            # assumption: the status (403); the body's code and wording are IAM v5's example
            raise ApiError(403, "STS5.1106", f"the agency '{urn}' cannot be found")
        access_key = f"STS{account_id}{len(self.issued):04d}"
        issued = Issued(
            account_id,
            f"sk-{uuid.uuid4().hex}",
            f"token-{uuid.uuid4().hex}",
            self.now() + timedelta(seconds=duration),
        )
        self.issued[access_key] = issued
        return 200, {
            "assumed_agency": {
                "urn": f"sts::{account_id}:assumed-agency:{agency}/{session}",
                "id": f"{uuid.uuid4().hex}:{session}",
            },
            "credentials": {
                "access_key_id": access_key,
                "secret_access_key": issued.secret_key,
                "security_token": issued.token,
                "expiration": format_time(issued.expiration),
            },
        }


class FakeIam(FakeHttpApi):
    """KeystoneListAuthProjects, answered for the account whose assumed credentials call
    (``projects``: account id -> that account's projects, as IAM lists them)."""

    def __init__(
        self,
        sts: FakeSts,
        projects: dict[str, list[dict[str, Any]]] | None = None,
        endpoint: str = IAM_GLOBAL_ENDPOINT,
    ) -> None:
        super().__init__(project_id="", region="global")
        self.sts = sts
        self.projects = projects if projects is not None else {}
        self.endpoint = endpoint
        self._caller: Issued | None = None
        self._routes += [("GET", re.compile(r"/v3/auth/projects"), self._auth_projects)]

    @staticmethod
    def project(account_id: str, name: str, enabled: bool = True) -> dict[str, Any]:
        """A project as IAM lists it (a region's project's parent is the account)."""
        project_id = uuid.uuid5(uuid.NAMESPACE_DNS, f"{account_id}/{name}").hex
        return {
            "domain_id": account_id,
            "is_domain": False,
            "parent_id": account_id,
            "name": name,
            "description": "",
            "links": {"self": f"{IAM_GLOBAL_ENDPOINT}/v3/projects/{project_id}"},
            "id": project_id,
            "enabled": enabled,
        }

    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint,)

    def error_body(self, code: str, message: str) -> Any:
        return _flat(code, message)

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        """Only credentials FakeSts issued, unexpired, signed for their own account."""
        lowered = {key.lower(): value for key, value in headers.items()}
        issued = self.sts.issued.get(_access_key(headers) or "")
        if (
            issued is None
            or issued.expiration <= self.sts.now()
            or lowered.get("x-security-token") != issued.token
            or lowered.get("x-domain-id") != issued.account_id
        ):
            raise ApiError(401, "APIGW.0301")
        self._caller = issued

    def _auth_projects(self, *, query: dict[str, str], body: str | None) -> tuple[int, Any]:
        assert self._caller is not None
        account_id = self._caller.account_id
        return 200, {
            "links": {"self": f"{self.endpoint}/v3/auth/projects"},
            "projects": list(self.projects.get(account_id, [])),
        }


def _after(items: list[Any], marker: str | None, key: Any) -> list[Any]:
    """The items after the one whose key is ``marker`` (all without a marker)."""
    if not marker:
        return items
    keys = [key(item) for item in items]
    if marker not in keys:
        raise ApiError(400, "Organizations.1100", "Invalid parameter: marker")
    return items[keys.index(marker) + 1 :]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, "Organizations.1100", f"Invalid parameter: {text!r}") from None
