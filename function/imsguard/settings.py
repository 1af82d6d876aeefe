"""Settings: FunctionGraph user data first, then the environment, then defaults.

Every knob has one name (``IMSGUARD_*``), whether it is set as function user
data in the console, as an environment variable, or in a local shell.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from imsguard.context import call_getter

REGION = "IMSGUARD_REGION"
POLICY = "IMSGUARD_POLICY"
DRY_RUN = "IMSGUARD_DRY_RUN"
IMS_ENDPOINT = "IMSGUARD_IMS_ENDPOINT"
PROJECT_ID = "IMSGUARD_PROJECT_ID"
RUNTIME_PROJECT_ID = "RUNTIME_PROJECT_ID"  # reserved FunctionGraph variable
LOG_LEVEL = "IMSGUARD_LOG_LEVEL"
SAFETY_MARGIN = "IMSGUARD_SAFETY_MARGIN_SECONDS"
DEFAULT_SAFETY_MARGIN_S = 10.0
UEFI_FROM_IMS = "IMSGUARD_UEFI_FROM_IMS"  # "true": read IMS's UEFI OS list once per container
SELF_CHECK = "IMSGUARD_SELF_CHECK"  # "true": check IMS's assumptions once per container, log it
MAX_WAIT = "IMSGUARD_MAX_WAIT_SECONDS"
SWEEP_CONCURRENCY = "IMSGUARD_SWEEP_CONCURRENCY"  # PATCHes in flight at once (default 4)
SWEEP_RATE = "IMSGUARD_SWEEP_RATE"  # IMS requests per second at most (default 20)
SWEEP_PAGE_SIZE = "IMSGUARD_SWEEP_PAGE_SIZE"  # images per list request (default 500)
SWEEP_CONTINUE = "IMSGUARD_SWEEP_CONTINUE"  # "true": out of time, invoke itself to go on
SWEEP_MAX_HOPS = "IMSGUARD_SWEEP_MAX_HOPS"  # at most this many continuations (default 10)
RESULTS_LIMIT = "IMSGUARD_RESULTS_LIMIT"  # result entries a report lists (default 1000)
FUNCTION_URN = "IMSGUARD_FUNCTION_URN"  # the function to continue a sweep with
FGS_ENDPOINT = "IMSGUARD_FGS_ENDPOINT"  # FunctionGraph endpoint URL (default: the region's)
CONFIG_RULES = "IMSGUARD_CONFIG_RULES"  # "true": answer Config custom-rule evaluations
CONFIG_ENDPOINT = "IMSGUARD_CONFIG_ENDPOINT"  # Config endpoint URL (default: its global one)
CONFIG_GLOBAL_ENDPOINT = "https://rms.myhuaweicloud.com"  # Config is a global service
NOTIFY_TOPIC_URN = "IMSGUARD_NOTIFY_TOPIC_URN"  # SMN topic for digests and notices (off: unset)
NOTIFY_ROUTES = "IMSGUARD_NOTIFY_ROUTES"  # JSON {"key=value": topic URN}: owners' topics
NOTIFY_EXPIRY_DAYS = "IMSGUARD_NOTIFY_EXPIRY_DAYS"  # exemptions expiring this soon (default 14)
SMN_ENDPOINT = "IMSGUARD_SMN_ENDPOINT"  # SMN endpoint URL (default: the region's)
METRICS = "IMSGUARD_METRICS"  # "true": post Cloud Eye custom metrics after each invocation
CES_ENDPOINT = "IMSGUARD_CES_ENDPOINT"  # Cloud Eye endpoint URL (default: the region's)
REPORT_BUCKET = "IMSGUARD_REPORT_BUCKET"  # OBS bucket for sweep reports (off: unset)
REPORT_PREFIX = "IMSGUARD_REPORT_PREFIX"  # where in the bucket (default imsguard/)
OBS_ENDPOINT = "IMSGUARD_OBS_ENDPOINT"  # OBS endpoint URL (default: the region's)
DEFAULT_REPORT_PREFIX = "imsguard/"
# -- Organization scale (org sweeps; issue 15): one block, to ease merging ---------------------
ORG_AGENCY = "IMSGUARD_ORG_AGENCY"  # the agency each member account lends imsguard (off: unset)
ORG_REGIONS = "IMSGUARD_ORG_REGIONS"  # comma list of region ids an org sweep covers (all: unset)
ORG_CONCURRENCY = "IMSGUARD_ORG_CONCURRENCY"  # shards started at once (1-1000, default 50)
ORGANIZATIONS_ENDPOINT = "IMSGUARD_ORGANIZATIONS_ENDPOINT"  # default: its global endpoint
STS_ENDPOINT = "IMSGUARD_STS_ENDPOINT"  # default: the function's region's STS endpoint
ORG_DOMAIN_ID = "IMSGUARD_ORG_DOMAIN_ID"  # the management account's id, to list its accounts
IAM_ENDPOINT = "IMSGUARD_IAM_ENDPOINT"  # default: IAM's global endpoint
# How long a shard hop may stay silent (no record, no word from FunctionGraph) before it is
# "lost": max_async_event_age + (max_async_retry_attempts + 1) x timeout (default: 1 h + 3 x)
ORG_SHARD_DEADLINE = "IMSGUARD_ORG_SHARD_DEADLINE_SECONDS"
ORG_SETTINGS = (
    ORG_AGENCY,
    ORG_REGIONS,
    ORG_CONCURRENCY,
    ORGANIZATIONS_ENDPOINT,
    STS_ENDPOINT,
    ORG_DOMAIN_ID,
    IAM_ENDPOINT,
    ORG_SHARD_DEADLINE,
)
# Organizations is global (OrganizationsRegion's only endpoint); IAM's global endpoint is the one
# its API reference's examples call (IamRegion lists regional ones only); STS has none global
# (StsRegion: sts.<region>.myhuaweicloud.com; "STS APIs can be called at any regional endpoint").
ORGANIZATIONS_GLOBAL_ENDPOINT = "https://organizations.myhuaweicloud.com"
IAM_GLOBAL_ENDPOINT = "https://iam.myhuaweicloud.com"
# IAM agency names (IAM v5 trust agencies): 1-64 letters, digits and +=,.@-_ (assumption: the
# older IAM v3 agencies allow a subset of these).
_AGENCY = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
# -- end of organization scale -----------------------------------------------------------------
DEFAULT_MAX_WAIT_S = 900.0  # longer creations are deferred (a later event or sweep checks them)

# Every IMSGUARD_* setting, in one place: the template refuses any other IMSGUARD_* name, so
# a typo such as IMSGUARD_DRYRUN cannot deploy a function that silently enforces.
KNOWN_SETTINGS = frozenset(
    {
        REGION,
        POLICY,
        DRY_RUN,
        IMS_ENDPOINT,
        PROJECT_ID,
        LOG_LEVEL,
        SAFETY_MARGIN,
        UEFI_FROM_IMS,
        SELF_CHECK,
        MAX_WAIT,
        SWEEP_CONCURRENCY,
        SWEEP_RATE,
        SWEEP_PAGE_SIZE,
        SWEEP_CONTINUE,
        SWEEP_MAX_HOPS,
        RESULTS_LIMIT,
        FUNCTION_URN,
        FGS_ENDPOINT,
        CONFIG_RULES,
        CONFIG_ENDPOINT,
        NOTIFY_TOPIC_URN,
        NOTIFY_ROUTES,
        NOTIFY_EXPIRY_DAYS,
        SMN_ENDPOINT,
        METRICS,
        CES_ENDPOINT,
        REPORT_BUCKET,
        REPORT_PREFIX,
        OBS_ENDPOINT,
        *ORG_SETTINGS,
    }
)

CODE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = CODE_ROOT / "policy.yaml"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_PROJECT_ID = re.compile(r"[0-9a-f]{32}")  # patterns here are used with fullmatch
_REGION = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+")
_ENDPOINT = re.compile(r"https?://[A-Za-z0-9.\-]+(:\d+)?/?")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_LEVELS = set(LOG_LEVELS)


class SettingsError(ValueError):
    """A setting has a value imsguard cannot use; the message names it."""


class Settings(NamedTuple):
    region: str | None
    project_id: str | None
    policy_path: Path
    dry_run: bool
    ims_endpoint: str | None
    log_level: str = "INFO"
    safety_margin_s: float = DEFAULT_SAFETY_MARGIN_S
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    uefi_from_ims: bool = False
    self_check: bool = False
    sweep_concurrency: int = 4
    sweep_rate: float = 20.0
    sweep_page_size: int = 500
    sweep_continue: bool = False
    sweep_max_hops: int = 10
    results_limit: int = 1000
    function_urn: str | None = None
    fgs_endpoint: str | None = None
    config_rules: bool = False
    config_endpoint: str | None = None  # None: CONFIG_GLOBAL_ENDPOINT
    notify_topic_urn: str | None = None
    notify_routes: tuple[tuple[str, str], ...] = ()  # (tag, topic URN), in the order given
    notify_expiry_days: int = 14
    smn_endpoint: str | None = None
    metrics: bool = False
    ces_endpoint: str | None = None
    report_bucket: str | None = None
    report_prefix: str = DEFAULT_REPORT_PREFIX
    obs_endpoint: str | None = None  # set whenever report_bucket is: the region's by default
    # organization scale (see _org_settings)
    org_agency: str | None = None
    org_regions: tuple[str, ...] = ()
    org_concurrency: int = 50
    organizations_endpoint: str = ""  # set by load_settings: ORGANIZATIONS_GLOBAL_ENDPOINT
    sts_endpoint: str | None = None  # None: the region's (needs a region)
    iam_endpoint: str = ""  # set by load_settings: IAM_GLOBAL_ENDPOINT
    org_domain_id: str | None = None  # the management account (Organizations is global)
    org_shard_deadline_s: float | None = None  # None: 1 h + 3 x the function's timeout


def read_setting(context: Any, key: str, environ: Mapping[str, str] | None = None) -> str | None:
    """User data wins over the environment (``environ``, default ``os.environ``); empty
    values count as unset."""
    value = call_getter(context, "getUserData", key)
    if isinstance(value, str) and value:
        return value
    value = (os.environ if environ is None else environ).get(key, "").strip()
    return value or None


def setting_name_problem(name: str) -> str | None:
    """Why ``name`` is not a known setting (with the known name it is probably a typo of),
    or None when it is one."""
    import difflib  # only tools check names: kept out of the function's cold start

    if name in KNOWN_SETTINGS:
        return None
    close = difflib.get_close_matches(name.upper(), sorted(KNOWN_SETTINGS), n=1, cutoff=0.8)
    if close:
        return f"{name!r} is not a known imsguard setting; did you mean {close[0]}?"
    if not name.startswith("IMSGUARD_"):
        return f"{name!r} is not an imsguard setting (those are IMSGUARD_*)"
    return f"{name!r} is not a known imsguard setting (the README's Settings lists them)"


# The settings that are switches (true/false); every other setting names or sizes something.
SWITCHES = frozenset({DRY_RUN, UEFI_FROM_IMS, SELF_CHECK, SWEEP_CONTINUE, METRICS, CONFIG_RULES})


def parse_bool(key: str, value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{key}={value!r} is not a boolean (use true or false)")


def resolve_policy_path(value: str | None) -> Path:
    """Relative paths are tried from the working directory, then from the code root."""
    if not value:
        return DEFAULT_POLICY
    try:
        path = Path(value).expanduser()
    except RuntimeError as exc:  # "~user" for an unknown user
        raise SettingsError(f"{POLICY}={value!r}: {exc}") from None
    if path.is_absolute() or path.exists():
        return path
    return CODE_ROOT / path


def load_settings(context: Any, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; raise SettingsError naming the bad one. ``environ``
    (default ``os.environ``) is where unset user data falls back to: ``{}`` checks the given
    values alone, as the template check does (never the developer's shell)."""

    def read(key: str) -> str | None:
        return read_setting(context, key, environ)

    region = read(REGION)
    if region is not None and not _REGION.fullmatch(region):
        raise SettingsError(f"{REGION}={region!r} is not a region id such as 'ap-southeast-1'")
    project_id = read(RUNTIME_PROJECT_ID) or read(PROJECT_ID)
    if project_id is not None and not _PROJECT_ID.fullmatch(project_id):
        raise SettingsError(f"project id {project_id!r} is not 32 lower-case hex characters")
    endpoint = _endpoint(read, IMS_ENDPOINT)
    log_level = (read(LOG_LEVEL) or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise SettingsError(f"{LOG_LEVEL}={log_level!r} is not one of {sorted(_LOG_LEVELS)}")
    notify_topic_urn = _topic_urn(read, region, project_id)
    report_bucket = _bucket(read)
    config_rules = parse_bool(CONFIG_RULES, read(CONFIG_RULES))
    if config_rules and region is None:
        raise SettingsError(
            f"{CONFIG_RULES}=true needs {REGION}: every state sent to Config names the "
            "image's region, which an IMS endpoint alone does not say"
        )
    return Settings(
        region=region,
        project_id=project_id,
        policy_path=resolve_policy_path(read(POLICY)),
        dry_run=parse_bool(DRY_RUN, read(DRY_RUN)),
        ims_endpoint=endpoint,
        log_level=log_level,
        safety_margin_s=_number(read, SAFETY_MARGIN, DEFAULT_SAFETY_MARGIN_S, 0, 3600),
        max_wait_s=_number(read, MAX_WAIT, DEFAULT_MAX_WAIT_S, 0, 259_200),
        uefi_from_ims=parse_bool(UEFI_FROM_IMS, read(UEFI_FROM_IMS)),
        self_check=parse_bool(SELF_CHECK, read(SELF_CHECK)),
        sweep_concurrency=int(_number(read, SWEEP_CONCURRENCY, 4, 1, 32, whole=True)),
        sweep_rate=_number(read, SWEEP_RATE, 20, 0.1, 1000),
        sweep_page_size=int(_number(read, SWEEP_PAGE_SIZE, 500, 1, 1000, whole=True)),
        sweep_continue=parse_bool(SWEEP_CONTINUE, read(SWEEP_CONTINUE)),
        sweep_max_hops=int(_number(read, SWEEP_MAX_HOPS, 10, 0, 1000, whole=True)),
        results_limit=int(_number(read, RESULTS_LIMIT, 1000, 0, 100_000, whole=True)),
        function_urn=_function_urn(read),
        fgs_endpoint=_endpoint(read, FGS_ENDPOINT),
        config_rules=config_rules,
        config_endpoint=_endpoint(read, CONFIG_ENDPOINT),
        notify_topic_urn=notify_topic_urn,
        notify_routes=_routes(read, notify_topic_urn, region, project_id),
        notify_expiry_days=int(_number(read, NOTIFY_EXPIRY_DAYS, 14, 0, 3650, whole=True)),
        smn_endpoint=_endpoint(read, SMN_ENDPOINT),
        metrics=parse_bool(METRICS, read(METRICS)),
        ces_endpoint=_endpoint(read, CES_ENDPOINT),
        report_bucket=report_bucket,
        report_prefix=_prefix(read),
        obs_endpoint=_obs_endpoint(read, report_bucket, region),
        **_org_settings(read, region),
    )


def obs_endpoint_problem(endpoint: str) -> str | None:
    """Why an OBS endpoint may not be used, if it may not (the one home of this rule: the
    setting and ``imsguard report obs://`` check it): plain http sends the temporary
    credentials' security token in clear, so only a loopback address (a local test server)
    may use it."""
    import ipaddress  # only when an OBS endpoint is set: not on an event's cold start
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    if parts.scheme.lower() != "http":
        return None
    host = (parts.hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        "http:// would send the security token in clear; use https:// "
        "(http:// is accepted only for a loopback address such as 127.0.0.1, a local test)"
    )


Reader = Callable[[str], str | None]


def _endpoint(read: Reader, key: str) -> str | None:
    endpoint = read(key)
    if endpoint is not None and not _ENDPOINT.fullmatch(endpoint):
        raise SettingsError(
            f"{key}={endpoint!r} is not an endpoint URL such as "
            "'https://ims.ap-southeast-1.myhuaweicloud.com'"
        )
    return endpoint.rstrip("/") if endpoint else None


def _number(
    read: Reader, key: str, default: float, least: float, most: float, whole: bool = False
) -> float:
    text = read(key)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not least <= value <= most or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise SettingsError(f"{key}={text!r} is not {kind} from {least:g} to {most:g}")
    return value


_URN = re.compile(
    r"urn:fss:[a-z0-9-]+:[0-9a-f]{32}:function:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+"
    r"(:[A-Za-z0-9_.-]+)?"
)


def _function_urn(read: Reader) -> str | None:
    urn = read(FUNCTION_URN)
    if urn is not None and not _URN.fullmatch(urn):
        raise SettingsError(
            f"{FUNCTION_URN}={urn!r} is not a function URN such as "
            "urn:fss:ap-southeast-1:<project id>:function:default:imsguard:latest"
        )
    return urn


# SMN's topic URN: urn:smn:<region>:<project id>:<topic name>; a topic name is 1 to 255
# letters, digits, hyphens and underscores, starting with a letter or digit (SMN FAQ
# "What Are the Requirements for an SMN Topic Name?").
# Compiled only when a topic is set (re caches it): an ordinary event's cold start pays nothing.
_TOPIC_URN = r"urn:smn:[a-z]{2,}(-[a-z0-9]+)+:[0-9a-f]{32}:[A-Za-z0-9][A-Za-z0-9_-]{0,254}"


# Each route's topic is one more publish within the invocation's time left: at most this many.
MAX_ROUTES = 20


def _topic_urn(read: Reader, region: str | None, project_id: str | None) -> str | None:
    urn = read(NOTIFY_TOPIC_URN)
    if urn is not None and not re.fullmatch(_TOPIC_URN, urn):
        raise SettingsError(
            f"{NOTIFY_TOPIC_URN}={urn!r} is not an SMN topic URN such as "
            "urn:smn:ap-southeast-1:<project id>:imsguard-notices"
        )
    if urn is not None:
        _topic_scope(f"{NOTIFY_TOPIC_URN}={urn!r}", urn, region, project_id)
    return urn


def _topic_scope(what: str, urn: str, region: str | None, project_id: str | None) -> None:
    """A topic must be in the function's region and project (when known): the function
    publishes through its own region's SMN endpoint and project, so any other topic would
    fail on every invocation."""
    _, _, topic_region, topic_project, _ = urn.split(":", 4)
    if region is not None and topic_region != region:
        raise SettingsError(
            f"{what} is in region {topic_region}, not the function's region {region} "
            f"({REGION}): use a topic of {region}"
        )
    if project_id is not None and topic_project != project_id:
        raise SettingsError(
            f"{what} is in project {topic_project}, not the function's project {project_id} "
            f"({RUNTIME_PROJECT_ID} or {PROJECT_ID})"
        )


def _routes(
    read: Reader, default_topic: str | None, region: str | None, project_id: str | None
) -> tuple[tuple[str, str], ...]:
    """``IMSGUARD_NOTIFY_ROUTES``: a JSON object from an image tag (``key=value``, or ``key``
    for any value, as policy tags are written) to the SMN topic URN that hears about the
    images with that tag. It needs ``IMSGUARD_NOTIFY_TOPIC_URN``: the other images' topic.
    At most MAX_ROUTES routes; each topic in the function's region and project."""
    text = read(NOTIFY_ROUTES)
    if text is None:
        return ()
    import json  # only when routes are set

    from imsguard.match import TAG

    example = (
        '; write a JSON object such as {"team=web": "urn:smn:<region>:<project id>:web-notices"}'
    )
    if default_topic is None:
        raise SettingsError(
            f"{NOTIFY_ROUTES} needs {NOTIFY_TOPIC_URN}: the topic for the images no route matches"
        )

    class Pairs(list[tuple[str, Any]]):
        """A JSON object's members in order (json.loads would keep only a repeated key's last)."""

    def pairs(items: list[tuple[str, Any]]) -> Pairs:
        seen = [key for key, _ in items]
        twice = sorted({key for key in seen if seen.count(key) > 1})
        if twice:
            raise SettingsError(f"{NOTIFY_ROUTES} names the tag {twice[0]!r} twice")
        return Pairs(items)

    try:
        routes = json.loads(text, object_pairs_hook=pairs)
    except ValueError as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"{NOTIFY_ROUTES} is not JSON ({exc}){example}") from None
    if not isinstance(routes, Pairs) or not routes:
        raise SettingsError(f"{NOTIFY_ROUTES} is not a JSON object with routes{example}")
    if len(routes) > MAX_ROUTES:
        raise SettingsError(
            f"{NOTIFY_ROUTES} has {len(routes)} routes, more than {MAX_ROUTES}: each topic is "
            "one more publish within the invocation's time"
        )
    for tag, urn in routes:
        if not isinstance(tag, str) or not TAG.fullmatch(tag):
            raise SettingsError(
                f"{NOTIFY_ROUTES}: {tag!r} is not a tag: write key=value (or key, any value)"
            )
        if not isinstance(urn, str) or not re.fullmatch(_TOPIC_URN, urn):
            raise SettingsError(
                f"{NOTIFY_ROUTES}: the topic of {tag!r}, {urn!r}, is not an SMN topic URN "
                "such as urn:smn:ap-southeast-1:<project id>:web-notices"
            )
        _topic_scope(f"{NOTIFY_ROUTES}: the topic of {tag!r}, {urn!r},", urn, region, project_id)
    return tuple(routes)


# OBS bucket names (OBS SDK guides, "Creating a Bucket"): 3 to 63 lowercase letters, digits,
# hyphens and periods, starting and ending with a letter or digit, no "..", no "-." or ".-",
# and not an IP address. imsguard also refuses periods: the SDK addresses a bucket by host
# name (virtual-hosted), and OBS's certificate, *.obs.<region>.myhuaweicloud.com, matches one
# label only, so TLS fails for a dotted name. Compiled only when a bucket is set.
_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
_IP = r"\d+\.\d+\.\d+\.\d+"
MAX_PREFIX = 256  # leaves room for the dated key within OBS's 1,024-byte object keys


def _bucket(read: Reader) -> str | None:
    """``IMSGUARD_REPORT_BUCKET``: a bucket name OBS accepts, or an error saying which rule
    it breaks (a bad name would fail every sweep's report, quietly but for the log)."""
    bucket = read(REPORT_BUCKET)
    if bucket is None:
        return None
    problem = bucket_problem(bucket)
    if problem:
        raise SettingsError(f"{REPORT_BUCKET}={bucket!r} is not an OBS bucket name: {problem}")
    return bucket


def bucket_problem(bucket: str) -> str | None:
    """Which of OBS's bucket-name rules ``bucket`` breaks, if any (the one home of those
    rules: the setting and ``imsguard report obs://`` check them)."""
    if not 3 <= len(bucket) <= 63:
        return "it must be 3 to 63 characters"
    if not re.fullmatch(_BUCKET, bucket):
        return (
            "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        )
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        return "no '..', '.-' or '-.' (e.g. my-reports.backup)"
    if re.fullmatch(_IP, bucket):
        return "it must not be an IP address"
    if "." in bucket:  # OBS allows it; HTTPS to it fails (see the comment above)
        return (
            "no '.': OBS accepts it, but the SDK addresses the bucket as "
            "<bucket>.obs.<region>.myhuaweicloud.com, which OBS's wildcard certificate does "
            "not cover, so every write over HTTPS would fail; use '-' instead"
        )
    return None


def _prefix(read: Reader) -> str:
    """``IMSGUARD_REPORT_PREFIX``: where the reports go in the bucket, used as given (so
    ``reports/`` is a folder; ``reports-`` starts the keys)."""
    prefix = read(REPORT_PREFIX)
    if prefix is None:
        return DEFAULT_REPORT_PREFIX
    what = f"{REPORT_PREFIX}={prefix!r}"
    if prefix.startswith("/"):
        raise SettingsError(
            f"{what} starts with '/': OBS keys have no leading slash; write e.g. 'imsguard/'"
        )
    if len(prefix) > MAX_PREFIX:
        raise SettingsError(f"{what} is longer than {MAX_PREFIX} characters")
    if any(ord(c) < 32 or ord(c) == 127 or c == "\\" for c in prefix):
        raise SettingsError(f"{what} holds a control character or a backslash")
    return prefix


def _obs_endpoint(read: Reader, bucket: str | None, region: str | None) -> str | None:
    """``IMSGUARD_OBS_ENDPOINT``, else the region's OBS endpoint when reports are on; with
    neither a region nor an endpoint, reports could go nowhere: a configuration error."""
    endpoint = _endpoint(read, OBS_ENDPOINT)
    problem = obs_endpoint_problem(endpoint) if endpoint else None
    if problem:
        raise SettingsError(f"{OBS_ENDPOINT}={endpoint!r}: {problem}")
    if endpoint or bucket is None:
        return endpoint
    if region is None:
        raise SettingsError(f"{REPORT_BUCKET} needs {REGION} or {OBS_ENDPOINT}: where OBS is")
    return f"https://obs.{region}.myhuaweicloud.com"


def _org_settings(read: Reader, region: str | None) -> dict[str, Any]:
    """The organization-scale settings, checked: an agency name IAM accepts, region ids, a
    concurrency of 1 to 1000, endpoint URLs (STS's defaults to the function's region's)."""
    agency = read(ORG_AGENCY)
    if agency is not None and not _AGENCY.fullmatch(agency):
        raise SettingsError(
            f"{ORG_AGENCY}={agency!r} is not an agency name: 1 to 64 letters, digits and +=,.@-_"
        )
    text = read(ORG_REGIONS)
    regions = tuple(r.strip() for r in (text or "").split(",") if r.strip())
    bad = [r for r in regions if not _REGION.fullmatch(r)]
    if bad or (text is not None and not regions):
        raise SettingsError(
            f"{ORG_REGIONS}={text!r} is not a comma list of region ids such as "
            "'ap-southeast-1,eu-west-101'" + (f" ({bad[0]!r})" if bad else "")
        )
    sts = _endpoint(read, STS_ENDPOINT)
    if sts is None and agency is not None and region is not None:
        sts = f"https://sts.{region}.myhuaweicloud.com"
    if agency is not None and sts is None:
        raise SettingsError(f"{ORG_AGENCY} needs {REGION} or {STS_ENDPOINT}: where STS is")
    domain_id = read(ORG_DOMAIN_ID)
    if domain_id is not None and not re.fullmatch(r"[0-9a-f]{32}", domain_id):
        raise SettingsError(
            f"{ORG_DOMAIN_ID}={domain_id!r} is not an account (domain) id: 32 lower-case hex"
        )
    return {
        "org_agency": agency,
        "org_regions": tuple(dict.fromkeys(regions)),
        "org_concurrency": int(_number(read, ORG_CONCURRENCY, 50, 1, 1000, whole=True)),
        "organizations_endpoint": _endpoint(read, ORGANIZATIONS_ENDPOINT)
        or ORGANIZATIONS_GLOBAL_ENDPOINT,
        "sts_endpoint": sts,
        "iam_endpoint": _endpoint(read, IAM_ENDPOINT) or IAM_GLOBAL_ENDPOINT,
        "org_domain_id": domain_id,
        "org_shard_deadline_s": None
        if read(ORG_SHARD_DEADLINE) is None
        else _number(read, ORG_SHARD_DEADLINE, 0, 60, 86_400 + 4 * 259_200),
    }
