"""Which accounts and which regions an org sweep covers.

Accounts come from Organizations (``list_accounts``, every page, optionally one OU's; a tag
filter reads each account's tags with ``list_tag_resources``). Regions come from each member
account's own projects (IAM ``keystone_list_auth_projects`` under that account's assumed
credentials): a project named after a region (``ap-southeast-1``), or a sub-project of one
(``ap-southeast-1_dev``); service projects such as ``MOS`` are no region and are skipped.
"""

from __future__ import annotations

import logging
import re
from typing import Any, NamedTuple

from huaweicloudsdkiam.v3 import IamClient, KeystoneListAuthProjectsRequest
from huaweicloudsdkorganizations.v1 import (
    ListAccountsRequest,
    ListTagResourcesRequest,
    OrganizationsClient,
)

from imsguard.clock import Budget
from imsguard.context import Credentials
from imsguard.logs import RedactingFilter
from imsguard.org.calls import call, client
from imsguard.permissions import LIST_ACCOUNT_TAGS, LIST_ACCOUNTS, LIST_AUTH_PROJECTS, requires
from imsguard.settings import IAM_GLOBAL_ENDPOINT, ORGANIZATIONS_GLOBAL_ENDPOINT

for _name in ("OrganizationsClient", "IamClient"):
    logging.getLogger(f"HuaweiCloud-SDK-{_name}").addHandler(logging.NullHandler())
    logging.getLogger(f"HuaweiCloud-SDK-{_name}").addFilter(RedactingFilter())

PAGE_SIZE = 500  # list_accounts' largest page (governance-apis.md: limit <= 500)
TAG_PAGE_SIZE = 200  # list_tag_resources' documented default page
ACCOUNT_RESOURCE_TYPE = "organizations:accounts"
ACTIVE = "active"  # AccountDto.status: active, suspended, pending_closure
_REGION = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+")


class Account(NamedTuple):
    """One member account; ``skipped`` says why a sweep leaves it out (None: sweep it)."""

    id: str
    name: str
    status: str
    skipped: str | None = None


class Project(NamedTuple):
    """A project of a member account: ``region`` is its name up to the first ``_``."""

    id: str
    name: str
    region: str


@requires(LIST_ACCOUNTS, LIST_ACCOUNT_TAGS)
def list_accounts(
    credentials: Credentials,
    domain_id: str,
    budget: Budget,
    ou: str | None = None,
    tag: tuple[str, str] | None = None,
    endpoint: str | None = None,
) -> list[Account]:
    """Every account of the organization (``ou``: only that OU's direct members, as
    Organizations' ``parent_id`` gives them), with ``tag`` (key, value) when given. Accounts
    that are not active are kept, flagged with the reason, so a report can name them.
    ``domain_id`` is the caller's (management) account id: Organizations is a global service."""
    organizations = client(
        OrganizationsClient,
        endpoint or ORGANIZATIONS_GLOBAL_ENDPOINT,
        credentials,
        domain_id=domain_id,
    )
    accounts: list[Account] = []
    marker: str | None = None
    while True:
        request = ListAccountsRequest(limit=PAGE_SIZE, marker=marker, parent_id=ou)
        page = call("Organizations", "list_accounts", organizations.list_accounts, request, budget)
        for dto in page.accounts or []:
            status = dto.status or "unknown"
            skipped = None if status == ACTIVE else f"account status is {status}, not active"
            accounts.append(Account(dto.id, dto.name or "", status, skipped))
        marker = page.page_info.next_marker if page.page_info else None
        if not marker:
            break
    if tag is None:
        return accounts
    return [a for a in accounts if tag in _account_tags(organizations, a.id, budget)]


def _account_tags(organizations: Any, account_id: str, budget: Budget) -> set[tuple[str, str]]:
    """One account's tags as (key, value) pairs, every page."""
    tags: set[tuple[str, str]] = set()
    marker: str | None = None
    while True:
        request = ListTagResourcesRequest(
            resource_type=ACCOUNT_RESOURCE_TYPE,
            resource_id=account_id,
            limit=TAG_PAGE_SIZE,
            marker=marker,
        )
        page = call(
            "Organizations",
            f"list_tag_resources for account {account_id}",
            organizations.list_tag_resources,
            request,
            budget,
        )
        tags.update((t.key, t.value or "") for t in page.tags or [])
        marker = page.page_info.next_marker if page.page_info else None
        if not marker:
            return tags


def project_region(name: str) -> str | None:
    """The region a project's name stands for, or None for a project that is no region's
    (``MOS``, or any name that is not ``<region>`` or ``<region>_<sub-project>``)."""
    region = name.split("_", 1)[0]
    return region if _REGION.fullmatch(region) else None


@requires(LIST_AUTH_PROJECTS)
def list_regions(
    credentials: Credentials,
    account_id: str,
    budget: Budget,
    wanted: tuple[str, ...] = (),
    endpoint: str | None = None,
) -> list[Project]:
    """The projects of ``account_id`` that stand for a region, as its ``credentials`` (that
    account's assumed agency) see them, in the order IAM lists them; only regions in
    ``wanted`` when it is given. Disabled projects and service projects are skipped."""
    iam = client(IamClient, endpoint or IAM_GLOBAL_ENDPOINT, credentials, domain_id=account_id)
    answer = call(
        "IAM",
        f"keystone_list_auth_projects for account {account_id}",
        iam.keystone_list_auth_projects,
        KeystoneListAuthProjectsRequest(),
        budget,
    )
    projects = []
    for dto in answer.projects or []:
        region = project_region(dto.name or "")
        if region is None or dto.enabled is False or (wanted and region not in wanted):
            continue
        projects.append(Project(dto.id, dto.name, region))
    return projects
