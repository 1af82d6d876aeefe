"""IAM: what each cloud call imsguard makes needs, declared where the call is made.

Each gateway method names its :class:`Permission` with ``@requires``; the agency's
custom policy (``imsguard iam-policy``), the template's check of the agency and the
README's table all come from those declarations (derived by the tools, imsguard_tools.iam),
so an action is written once, here, and only actions Huawei documents are ever asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

IMS_PERMISSIONS = (
    "IMS API reference, permissions and supported actions "
    "(support.huaweicloud.com/api-ims/ims_03_appendix_05)"
)


class Permission(NamedTuple):
    """What one API call needs from IAM. ``action`` is None when IMS's permissions tables
    document no action for the call (it then relies on authorization the documents do not
    describe); ``unconfirmed`` names an action seen in only one edition of the documents,
    which an agency may hold but is never required to (IAM refuses a whole policy over one
    unknown action); ``setting`` names the ``IMSGUARD_*`` switch that makes the call happen,
    or the switches that together do (None: always)."""

    api: str
    action: str | None
    source: str
    setting: str | tuple[str, ...] | None = None
    unconfirmed: str | None = None


LIST_IMAGES = Permission("GET /v2/cloudimages", "ims:images:list", IMS_PERMISSIONS)
LIST_OS_VERSIONS = Permission(
    "GET /v1/cloudimages/os_version", "ims:images:list", IMS_PERMISSIONS, "IMSGUARD_UEFI_FROM_IMS"
)
UPDATE_IMAGE = Permission("PATCH /v2/cloudimages/{image_id}", "ims:images:update", IMS_PERMISSIONS)
SHOW_JOB_PROGRESS = Permission(
    "GET /v1/cloudimages/job/{job_id}",
    None,
    f"{IMS_PERMISSIONS}: no action listed; ims:imageJobs:getPercentage only in the eu-west-0 "
    "edition (support.huaweicloud.com/intl/en-us/eu-west-0-api-ims/en-us_topic_0118717444.html)",
    unconfirmed="ims:imageJobs:getPercentage",
)
SHOW_JOB = Permission(
    "GET /v1/{project_id}/jobs/{job_id}",
    None,
    f"{IMS_PERMISSIONS}: no action listed (deprecated API)",
)
INVOKE_ASYNC = Permission(
    "POST /v2/{project_id}/fgs/functions/{function_urn}/invocations-async",
    "functiongraph:function:invokeAsync",
    "FunctionGraph API reference, permissions and supported actions",
    "IMSGUARD_SWEEP_CONTINUE",
)

PUBLISH_MESSAGE = Permission(
    "POST /v2/{project_id}/notifications/topics/{topic_urn}/publish",
    "smn:topic:publish",
    "SMN API reference, permissions policies and supported actions, message publishing "
    "(support.huaweicloud.com/intl/en-us/api-smn/smn_api_80005.html)",
    "IMSGUARD_NOTIFY_TOPIC_URN",
)
CREATE_METRIC_DATA = Permission(
    "POST /V1.0/{project_id}/metric-data",
    "ces:metricData:create",
    "Cloud Eye API reference, permissions policies and supported actions, monitoring data "
    "(the action name is unconfirmed: README, Assumptions)",
    "IMSGUARD_METRICS",
)
UPDATE_POLICY_STATE = Permission(
    "PUT /v1/resource-manager/domains/{domain_id}/policy-states",
    "rms:policyStates:update",
    "Config user guide, custom rules: the function's agency \"must include the "
    "rms:policyStates:update permission\" (the API reference's permissions table is unconfirmed)",
    "IMSGUARD_CONFIG_RULES",
)
PUT_OBJECT = Permission(
    "PUT /{bucket}/{object_key}",
    "obs:object:PutObject",
    "OBS permissions, object actions (PUT upload: obs:object:PutObject); OBS SDK for Python "
    "developer guide, uploading objects, restrictions",
    "IMSGUARD_REPORT_BUCKET",
)


# Organization scale (org sweeps only: each needs IMSGUARD_ORG_AGENCY set).
ORG_AGENCY_SETTING = "IMSGUARD_ORG_AGENCY"
LIST_ACCOUNTS = Permission(
    "GET /v1/organizations/accounts",
    "organizations:accounts:list",
    "Organizations API reference, Listing Accounts in an Organization, authorization "
    "information (support.huaweicloud.com/intl/en-us/api-organizations/ListAccounts.html)",
    ORG_AGENCY_SETTING,
)
LIST_ACCOUNT_TAGS = Permission(
    "GET /v1/organizations/{resource_type}/{resource_id}/tags",
    "organizations:tags:list",
    "Organizations API reference, Listing Tags for the Specified Resource Type, authorization "
    "information (support.huaweicloud.com/intl/en-us/api-organizations/ListTagResources.html)",
    ORG_AGENCY_SETTING,
)
ASSUME_AGENCY = Permission(
    "POST /v5/agencies/assume",
    "sts:agencies:assume",
    "IAM (v5) API reference, AssumeAgency, authorization information "
    "(support.huaweicloud.com/intl/en-us/api-iam5/AssumeAgency.html); IAM user guide, granting "
    "permission to obtain temporary security credentials (usermanual-iam5/iam_01_1240)",
    ORG_AGENCY_SETTING,
)
LIST_AUTH_PROJECTS = Permission(
    "GET /v3/auth/projects",
    None,
    'IAM API reference, KeystoneListAuthProjects (api-iam/iam_06_0003): "no policy permission '
    "required\"; called with each member account's assumed agency, not the function's",
    ORG_AGENCY_SETTING,
)
START_SHARD = Permission(
    INVOKE_ASYNC.api,
    INVOKE_ASYNC.action,
    f"{INVOKE_ASYNC.source}: the org coordinator starts each shard as an async invocation",
    ORG_AGENCY_SETTING,
)
# An org sweep that keeps its run in OBS (IMSGUARD_REPORT_BUCKET set too): the coordinator
# reads its shards' records, and asks FunctionGraph how their invocations ended.
GET_OBJECT = Permission(
    "GET /{bucket}/{object_key}",
    "obs:object:GetObject",
    "OBS permissions, object actions (GET download: obs:object:GetObject)",
    (ORG_AGENCY_SETTING, "IMSGUARD_REPORT_BUCKET"),
)
# Without it a missing object may answer 403 rather than 404 NoSuchKey (so S3 does; OBS's
# documents do not say): a shard's record not written yet must read as missing, not refused.
LIST_BUCKET = Permission(
    "GET /{bucket}/{object_key} (an object not written yet)",
    "obs:bucket:ListBucket",
    "OBS permissions, bucket actions (GET bucket: obs:bucket:ListBucket); whether OBS answers "
    "403 for a missing object without it is unconfirmed (README, Assumptions)",
    (ORG_AGENCY_SETTING, "IMSGUARD_REPORT_BUCKET"),
)
LIST_ASYNC_INVOCATIONS = Permission(
    "GET /v2/{project_id}/fgs/functions/{function_urn}/async-invocations",
    None,
    "FunctionGraph API reference, ListAsyncInvocations (api-functiongraph/"
    "functiongraph_06_0112_00_3): its action in the permissions table is unconfirmed; "
    "a refusal only makes a shard's failure known later (README, Assumptions)",
    (ORG_AGENCY_SETTING, "IMSGUARD_REPORT_BUCKET"),
)


Declared = TypeVar("Declared", bound=Callable[..., Any])


def requires(*permissions: Permission) -> Callable[[Declared], Declared]:
    """Mark a gateway method with the permissions its calls need."""

    def mark(method: Declared) -> Declared:
        method.permissions = permissions  # type: ignore[attr-defined]
        return method

    return mark
