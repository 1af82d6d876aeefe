"""Event parsing: every envelope imsguard accepts becomes one small Trigger.

Each kind of event is one :class:`Envelope` in :data:`ENVELOPES`: an action (a sweep, an org
sweep's shard), a CTS trigger event (``{"cts": {...}}``), an EventGrid batch (``{"events":
[...]}``) or single CloudEvent carrying a CTS trace, a direct invocation (``{"image_id": ...}``
/ ``{"image_ids": [...]}``), a timer, a Config custom rule's evaluation. Where each IMS
trace keeps its ids is data: :data:`TRACE_SPECS`. Anything else becomes a :class:`Skip`
with a reason, never an exception.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, TypeGuard

if TYPE_CHECKING:
    from imsguard.event_models import OrgShard, OrgSweepEvent, SweepOptions


# IMS identifiers. Always used with fullmatch: "$" would also accept a trailing newline.
IMAGE_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
JOB_ID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# IMS's name rules (compiled on first use: a Unicode class costs a millisecond), minus the
# "no leading or trailing space" one, checked in is_image_name
# (checked character by character: a regular expression with a Unicode range costs a
# millisecond to compile on every cold start)
IMAGE_NAME_ASCII = frozenset(string.ascii_letters + string.digits + "._- ")
MAX_IMAGE_NAME = 128

IMS_SERVICE = "ims"
EVENTGRID_SOURCE = "HC.IMS"  # unconfirmed: IMS as an EventGrid source is inferred, not documented
EVENTGRID_TYPES = {
    f"IMS:CloudTrace:{kind}" for kind in ("ApiCall", "ConsoleAction", "SystemAction")
}
MAX_IMAGES_PER_EVENT = 100
MAX_EVENTS_PER_BATCH = 100
MAX_EMBEDDED_JSON = 1 << 20  # request/response strings larger than 1 MiB are not parsed

# The response's ids, where IMS's answers to image-creating calls are taken to keep them.
# Which of these a real trace carries is unconfirmed (no public sample exists), so every
# plausible place is read.
RESPONSE_IMAGE_IDS = (("id",), ("image_id",), ("entities", "image_id"))
RESPONSE_JOB_IDS = (("job_id",),)


class TraceSpec(NamedTuple):
    """Where one IMS trace keeps what imsguard needs, as data (model: Cloud Custodian's
    trail specs): adding a trace is adding a row to :data:`TRACE_SPECS`.

    resource_id is always read as an image id; ``image_id_paths`` and ``job_id_paths``
    are paths into the trace's response, of which the first holding an id counts.
    """

    image_id_paths: tuple[tuple[str, ...], ...] = RESPONSE_IMAGE_IDS
    job_id_paths: tuple[tuple[str, ...], ...] = RESPONSE_JOB_IDS
    # resource_id names the image the call started from (a copy's source), not the new one:
    # read only if nothing else finds the image.
    resource_id_is_source: bool = False
    # The call creates an image, so it may be found by the name the request gives it.
    creates: bool = False
    # The request is the JSON Patch applied (updateImage): kept for the loop guard.
    carries_patch: bool = False


# The traces that create an image, or change what a policy sees of it (attributes, and the
# tags exemptions and matches read), keyed by (CTS resource type, trace name): "ims" is
# IMS's own API, "image" the OpenStack-native one, which has no copy but records tags (IMS's
# list of operations CTS records, "key operations": huaweicloudDocs/ims
# 用户指南/支持审计的关键操作列表.md). Every other IMS trace is ignored.
TRACE_SPECS: dict[tuple[str, str], TraceSpec] = {
    ("ims", "createImage"): TraceSpec(creates=True),
    ("ims", "updateImage"): TraceSpec(carries_patch=True),
    ("ims", "copyImage"): TraceSpec(creates=True, resource_id_is_source=True),
    ("image", "createImage"): TraceSpec(creates=True),
    ("image", "updateImage"): TraceSpec(carries_patch=True),
    ("image", "addTag"): TraceSpec(),
    ("image", "deleteTag"): TraceSpec(),
}


def image_traces(specs: dict[tuple[str, str], TraceSpec]) -> dict[str, frozenset[str]]:
    """The trace names handled, by resource type: what a CTS trigger may subscribe to."""
    traces: dict[str, set[str]] = {}
    for resource_type, trace_name in specs:
        traces.setdefault(resource_type, set()).add(trace_name)
    return {resource_type: frozenset(names) for resource_type, names in traces.items()}


# For the template check (tools/imsguard_tools/template.py); parsing reads TRACE_SPECS.
IMAGE_TRACES: dict[str, frozenset[str]] = image_traces(TRACE_SPECS)


class Target(NamedTuple):
    """One thing an event points at, and every way to find its image.

    Tried in order until one finds an image: ``image_ids``; ``job_ids`` (followed to
    the image the job creates); ``name`` (private images of that name created in the
    hour before ``time``); ``fallback_ids`` (a copy's source image). ``failure`` is set
    when the trace itself says that nothing was created.
    """

    label: str
    image_ids: tuple[str, ...] = ()
    job_ids: tuple[str, ...] = ()
    name: str | None = None
    fallback_ids: tuple[str, ...] = ()
    time: datetime | None = None
    failure: str | None = None
    # updateImage: the patch the trace records. If imsguard would now send exactly the
    # same patch, IMS did not keep it; sending it again could loop, so it is not resent.
    traced_operations: tuple[tuple[str, str, str], ...] | None = None


class Trigger(NamedTuple):
    """What an event asks for: targets to check, and parts of a batch that were skipped.

    ``source`` is the :attr:`Envelope.source` of the envelope that unwrapped the event."""

    source: str
    summary: str
    targets: tuple[Target, ...]
    dry_run: bool | None = None
    skipped: tuple[str, ...] = ()
    config: ConfigEvaluation | None = None  # a Config rule's evaluation: report states


class SweepRequest(NamedTuple):
    """A request to check every private image of the project (timer, or direct).

    ``source`` is the :attr:`Envelope.source` of the envelope that unwrapped the event."""

    source: str
    summary: str
    options: SweepOptions
    config: ConfigEvaluation | None = None  # a Config rule's periodic evaluation
    shard: OrgShard | None = None  # an org sweep's shard: another account's project


class ConfigEvaluation(NamedTuple):
    """What a Config custom rule's event gives, echoed in every UpdatePolicyState.

    ``rule``: the one imsguard rule that decides compliance (rule_parameter ``rule``), or
    None (every applicable rule); ``resource``: the invoking event (the image) of a
    ``resource`` evaluation, None for ``period``."""

    domain_id: str
    policy_assignment_id: str
    policy_assignment_name: str | None
    trigger_type: Literal["resource", "period"]
    # epoch ms as received, a number or a digit string: echoed unchanged (Config's example
    # event sends a number, its SDK model and API reference declare a string)
    evaluation_time: int | str
    evaluation_hash: str
    rule: str | None = None
    resource: dict[str, Any] | None = None
    resource_type: str | None = None  # rule_parameter resource_type: periodic states' type


class Skip(NamedTuple):
    """An event that leads to no work: ``ignored`` (not ours) or ``invalid`` (malformed)."""

    status: Literal["ignored", "invalid"]
    reason: str


def is_image_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and IMAGE_ID.fullmatch(value) is not None


def is_job_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and JOB_ID.fullmatch(value) is not None


def is_image_name(value: Any) -> bool:
    """A name IMS accepts: 1-128 allowed characters, no leading or trailing space."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_IMAGE_NAME
        and value == value.strip()
        and all(c in IMAGE_NAME_ASCII or is_cjk(c) for c in value)
    )


def is_cjk(char: str) -> bool:
    """One of the Chinese characters IMS allows in names (U+4E00 to U+9FFF)."""
    return "\u4e00" <= char <= "\u9fff"


def shorten(value: Any, limit: int = 80) -> str:
    """repr() for messages, bounded: events may carry megabytes of text, or lists nested
    thousands deep (a plain repr() would raise RecursionError)."""
    import reprlib

    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxstring, bounded.maxother = 3, limit, limit
    text = bounded.repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... (cut)"


class CtsTrace(NamedTuple):
    """A CTS trace as FunctionGraph's CTS trigger delivers it.

    Any JSON type may arrive in any field: FunctionGraph's own sample has
    ``"resource_id": {}``, CTS's trace structure documents ``time`` as epoch milliseconds
    and request/response as JSON text, older examples show text times and objects. A
    field imsguard reads as text is simply absent when it is not text. (Read by hand, not
    by a pydantic model: every CTS event's cold start would pay for building one.)"""

    service_type: str | None
    trace_name: str | None
    resource_type: str | None = None
    trace_type: str | None = None
    resource_id: str | None = None
    resource_name: str | None = None
    trace_id: str | None = None
    time: Any = None  # epoch milliseconds, or text such as "12/01/2016 11:07:28 GMT+08:00"
    code: int | None = None  # the traced call's HTTP status: a number or text
    request: Any = None  # JSON text or the object itself
    response: Any = None


TRACE_TEXT_FIELDS = (
    "service_type",
    "trace_name",
    "resource_type",
    "trace_type",
    "resource_id",
    "resource_name",
    "trace_id",
)
TRACE_REQUIRED_FIELDS = ("service_type", "trace_name")  # present, whatever their value


def read_trace(data: Any, where: str = "") -> CtsTrace | str:
    """The trace in ``data``, or why there is none, worded as imsguard always has (the
    wording of the pydantic model it once was): ``where`` is the path to ``data``."""
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        return f"{where or 'event'}: Input should be a valid dictionary or instance of CtsTrace"
    problems = [
        f"{prefix}{name}: Field required" for name in TRACE_REQUIRED_FIELDS if name not in data
    ]
    try:
        code = _code_as_int(data.get("code"))
    except ValueError as exc:  # digits int() refuses: "²", or more than 4,300 of them
        problems.append(f"{prefix}code: {exc}")
    if problems:
        return "; ".join(problems)
    text = {name: _text_or_absent(data.get(name)) for name in TRACE_TEXT_FIELDS}
    return CtsTrace(
        **text,
        time=data.get("time"),
        code=code,
        request=data.get("request"),
        response=data.get("response"),
    )


def _text_or_absent(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _code_as_int(value: Any) -> int | None:
    """The traced call's HTTP status, given as a number, a whole float or digits."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Envelope:
    """One kind of event imsguard accepts (model: Powertools' parser envelopes).

    ``matches`` only looks at the event's keys, cheaply; ``unwrap`` validates and may still
    answer Skip. ``source`` names the kind in every Trigger or SweepRequest it gives."""

    source: ClassVar[str]

    def matches(self, event: dict[str, Any]) -> bool:
        raise NotImplementedError

    def unwrap(self, event: dict[str, Any]) -> Trigger | SweepRequest | OrgSweepRequest | Skip:
        raise NotImplementedError

    def trigger(self, summary: str, targets: tuple[Target, ...], **extra: Any) -> Trigger:
        return Trigger(self.source, summary, targets, **extra)

    def sweep_request(self, options: dict[str, Any]) -> SweepRequest | Skip:
        """A sweep with options as the event gives them, or why they are not valid."""
        from imsguard import event_models  # only sweeps need their options' model

        parsed = event_models.validated(event_models.SweepOptions, options)
        if isinstance(parsed, str):
            return Skip("invalid", f"invalid sweep options: {parsed}")
        hop = f", continuation {parsed.hop}" if parsed.hop else ""
        return SweepRequest(self.source, f"sweep ({self.source}{hop})", parsed)


class ActionEnvelope(Envelope):
    """``{"action": <action>, ...}``: something asked for by hand or by imsguard itself. Each
    action is one subclass in :data:`ENVELOPES`; any other action is refused by
    :class:`UnknownActionEnvelope`, which names them all."""

    action: ClassVar[str]

    def matches(self, event: dict[str, Any]) -> bool:
        return event.get("action") == self.action


class SweepActionEnvelope(ActionEnvelope):
    """``{"action": "sweep", ...options}``: a sweep asked for by hand."""

    source = "direct"
    action = "sweep"

    def unwrap(self, event: dict[str, Any]) -> SweepRequest | Skip:
        return self.sweep_request({k: v for k, v in event.items() if k != "action"})


ORG_SHARD = "org-shard"


class OrgShardEnvelope(ActionEnvelope):
    """``{"action": "org-shard", "org_run", "account", "account_name", "region", "project_id",
    "phase", "sweep": {...options}}``: one (account, region/project) shard of an org sweep,
    an ordinary sweep of that project under the account's agency (imsguard.org.shard). The
    ``plan`` phase is always a dry run."""

    source = "org"
    action = ORG_SHARD

    def unwrap(self, event: dict[str, Any]) -> SweepRequest | Skip:
        from imsguard import event_models  # only org shards need their model

        parsed = event_models.validated(event_models.OrgShardEvent, event)
        if isinstance(parsed, str):
            return Skip("invalid", f"invalid {ORG_SHARD} event: {parsed}")
        options = parsed.sweep
        if parsed.phase == "plan" and options.dry_run is not True:
            options = options.model_copy(update={"dry_run": True})
        shard = event_models.OrgShard.model_validate(parsed.fields())
        hop = f", continuation {options.hop}" if options.hop else ""
        summary = (
            f"org shard {shard.org_run}: account {shard.account}, {shard.region} "
            f"project {shard.project_id} ({shard.phase}{hop})"
        )
        return SweepRequest(self.source, summary, options, shard=shard)


ORG_SWEEP = "org-sweep"


class OrgSweepRequest(NamedTuple):
    """An organization sweep to coordinate (imsguard.org.coordinator)."""

    source: str
    summary: str
    event: OrgSweepEvent


class OrgSweepEnvelope(ActionEnvelope):
    """``{"action": "org-sweep", "accounts"?, "regions"?, "dry_run"?, "since"?, "ou"?,
    "tag"?}``: sweep every account and region of an organization, one org-shard event per
    (account, project), started by this coordinator."""

    source = "org"
    action = ORG_SWEEP

    def unwrap(self, event: dict[str, Any]) -> OrgSweepRequest | Skip:
        from imsguard import event_models  # only org sweeps need their model

        parsed = event_models.validated(event_models.OrgSweepEvent, event)
        if isinstance(parsed, str):
            return Skip("invalid", f"invalid {ORG_SWEEP} event: {parsed}")
        hop = f", continuation {parsed.hop}" if parsed.hop else ""
        return OrgSweepRequest(self.source, f"org sweep{hop}", parsed)


class UnknownActionEnvelope(Envelope):
    """Any other ``{"action": ...}``: refused, naming the actions there are."""

    source = "direct"

    def matches(self, event: dict[str, Any]) -> bool:
        return "action" in event and not any(
            e.matches(event) for e in ENVELOPES if isinstance(e, ActionEnvelope)
        )

    def unwrap(self, event: dict[str, Any]) -> Skip:
        known = ", ".join(repr(e.action) for e in ENVELOPES if isinstance(e, ActionEnvelope))
        return Skip(
            "invalid", f"unknown action {shorten(event.get('action'))}; the actions are {known}"
        )


class CtsEnvelope(Envelope):
    """``{"cts": {...trace}}``: FunctionGraph's CTS trigger."""

    source = "cts"

    def matches(self, event: dict[str, Any]) -> bool:
        return "cts" in event

    def unwrap(self, event: dict[str, Any]) -> Trigger | Skip:
        trace = read_trace(event["cts"], "cts")
        if isinstance(trace, str):
            return Skip("invalid", f"invalid CTS event: {trace}")
        target = target_of_trace(trace)
        if isinstance(target, Skip):
            return target
        return self.trigger(target.label, (target,))


class EventGridBatchEnvelope(Envelope):
    """``{"events": [...]}``: several EventGrid events; the bad ones are skipped, named."""

    source = "eventgrid"

    def matches(self, event: dict[str, Any]) -> bool:
        return "events" in event

    def unwrap(self, event: dict[str, Any]) -> Trigger | Skip:
        events = event["events"]
        if not isinstance(events, list) or not events:
            return Skip("invalid", "'events' must be a non-empty list of EventGrid events")
        if len(events) > MAX_EVENTS_PER_BATCH:
            return Skip("invalid", f"more than {MAX_EVENTS_PER_BATCH} events in one batch")
        targets: list[Target] = []
        skips: list[Skip] = []
        for index, item in enumerate(events):
            found = _target_of_cloud_event(item)
            if isinstance(found, Skip):
                skips.append(Skip(found.status, f"events[{index}]: {found.reason}"))
            else:
                targets.append(found)
        if not targets:
            invalid = [s for s in skips if s.status == "invalid"]
            return Skip("invalid" if invalid else "ignored", "; ".join(s.reason for s in skips[:5]))
        return self.trigger(
            f"EventGrid batch of {len(events)} event(s)",
            tuple(targets),
            skipped=tuple(s.reason for s in skips),
        )


class CloudEventEnvelope(Envelope):
    """One EventGrid CloudEvent carrying an IMS cloud trace."""

    source = "eventgrid"

    def matches(self, event: dict[str, Any]) -> bool:
        return "specversion" in event or {"source", "type", "data"} <= event.keys()

    def unwrap(self, event: dict[str, Any]) -> Trigger | Skip:
        target = _target_of_cloud_event(event)
        if isinstance(target, Skip):
            return target
        return self.trigger(f"EventGrid {target.label}", (target,))


class DirectEnvelope(Envelope):
    """``{"image_id": ...}`` or ``{"image_ids": [...]}``: images named by hand."""

    source = "direct"

    def matches(self, event: dict[str, Any]) -> bool:
        return "image_id" in event or "image_ids" in event

    def unwrap(self, event: dict[str, Any]) -> Trigger | Skip:
        from imsguard import event_models  # only direct invocations need their model

        direct = event_models.validated(event_models.DirectInvocation, event)
        if isinstance(direct, str):
            return Skip("invalid", f"invalid direct invocation: {direct}")
        if direct.image_id and direct.image_ids:
            return Skip("invalid", "give either image_id or image_ids, not both")
        if not direct.image_id and not direct.image_ids:
            return Skip("invalid", "give an image_id or a non-empty image_ids list")
        ids = [direct.image_id] if direct.image_id else list(direct.image_ids or [])
        targets = tuple(
            Target(f"image {i}", image_ids=(i,)) for i in _unique(i.lower() for i in ids)
        )
        return self.trigger(
            f"direct invocation for {len(targets)} image(s)", targets, dry_run=direct.dry_run
        )


class TimerEnvelope(Envelope):
    """FunctionGraph's timer; its ``user_event`` ("additional information") holds the
    sweep options as JSON text, or an org-sweep request (``{"action": "org-sweep", ...}``)."""

    source = "timer"

    def matches(self, event: dict[str, Any]) -> bool:
        return str(event.get("trigger_type", "")).upper() == "TIMER"

    def unwrap(self, event: dict[str, Any]) -> SweepRequest | OrgSweepRequest | Skip:
        raw = event.get("user_event")
        if raw in (None, ""):
            return self.sweep_request({})
        if not isinstance(raw, str) or len(raw) > MAX_EMBEDDED_JSON:
            return Skip("invalid", "the timer's user_event must be JSON text of at most 1 MiB")
        try:
            options = json.loads(raw)
        except (ValueError, RecursionError):
            return Skip(
                "invalid",
                "the timer's user_event is not JSON; give sweep options such "
                'as {"dry_run": true, "since": "2026-11-01"}',
            )
        if not isinstance(options, dict):
            return Skip("invalid", "the timer's user_event must be a JSON object of sweep options")
        if options.get("action") == ORG_SWEEP:  # a nightly organization sweep
            return OrgSweepEnvelope().unwrap(options)
        return self.sweep_request(options)


# Config's names for IMS images: Config's supported-resources table (Open Telekom Cloud
# edition) says provider "ims", type "images"; TMS says "private_image". Unconfirmed for Huawei
# Cloud, so every plausible spelling is accepted (README, Assumptions). CONFIG_IMAGE_TYPE is
# the default: a periodic evaluation's states name it unless rule_parameter resource_type
# names another (imsguard deploy sets it to the type it found in Config's providers list).
CONFIG_IMAGE_PROVIDER = "ims"
CONFIG_IMAGE_TYPE = "images"
CONFIG_IMAGE_PROVIDERS = frozenset({CONFIG_IMAGE_PROVIDER})
CONFIG_IMAGE_TYPES = frozenset(
    {CONFIG_IMAGE_TYPE, "image", "private_image", "private_images", "privateimage", "cloudimages"}
)
CONFIG_RULE_PARAMETER = "rule"  # rule_parameter {"rule": {"value": "<imsguard rule name>"}}
CONFIG_TYPE_PARAMETER = "resource_type"  # rule_parameter {"resource_type": {"value": "images"}}
# A periodic evaluation's continuation carries the sweep's options under this key (the
# Config event's own fields unchanged), so every hop reports its images to Config.
CONFIG_SWEEP = "imsguard_sweep"
# The sweep options a continuation carries for Config's states (SweepOptions.config_reported).
CONFIG_MARKS = ("config_reported", "config_reported_at")


class ConfigEvaluationEnvelope(Envelope):
    """A Config custom rule's evaluation (``policy_assignment_id``, ``evaluation_hash``,
    ``trigger_type`` resource|period, ``invoking_event``, ``domain_id``, ``rule_parameter``):
    ``resource`` checks the image invoking_event names, ``period`` sweeps the project."""

    source = "config"

    def matches(self, event: dict[str, Any]) -> bool:
        return "policy_assignment_id" in event or "evaluation_hash" in event

    def unwrap(self, event: dict[str, Any]) -> Trigger | SweepRequest | Skip:
        evaluation = read_config_evaluation(event)
        if isinstance(evaluation, str):
            return Skip("invalid", f"invalid Config evaluation event: {evaluation}")
        assignment = evaluation.policy_assignment_name or evaluation.policy_assignment_id
        if evaluation.resource is None:
            options = event.get(CONFIG_SWEEP) or {}
            if not isinstance(options, dict):
                return Skip("invalid", f"{CONFIG_SWEEP} must be an object of sweep options")
            request = self.sweep_request(options)
            if isinstance(request, Skip):
                return request
            summary = f"Config periodic evaluation ({assignment})"
            return SweepRequest(self.source, summary, request.options, evaluation)
        resource = evaluation.resource
        provider, kind = resource.get("provider"), resource.get("type")
        if (
            str(provider).lower() not in CONFIG_IMAGE_PROVIDERS
            or str(kind).lower() not in CONFIG_IMAGE_TYPES
        ):
            return Skip(
                "ignored",
                f"Config evaluated a {shorten(provider)}.{shorten(kind)} resource, not an IMS "
                "image: narrow the rule's scope to IMS images",
            )
        image_id = resource["id"]
        target = Target(f"Config evaluation of image {image_id}", image_ids=(image_id,))
        return self.trigger(
            f"Config evaluation ({assignment}) of image {image_id}", (target,), config=evaluation
        )


def read_config_evaluation(event: dict[str, Any]) -> ConfigEvaluation | str:
    """The evaluation a Config event asks for, or every reason it is not valid."""
    problems: list[str] = []

    def text(key: str, required: bool = True) -> str:
        value = event.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if required or value is not None:
            problems.append(f"{key}: a non-empty string is required (got {shorten(value)})")
        return ""

    domain_id, assignment_id = text("domain_id"), text("policy_assignment_id")
    assignment_name = text("policy_assignment_name", False) or None
    evaluation_hash = text("evaluation_hash")
    trigger_type = event.get("trigger_type")
    if trigger_type not in ("resource", "period"):
        problems.append(f"trigger_type: 'resource' or 'period' (got {shorten(trigger_type)})")
    evaluation_time = event.get("evaluation_time")
    digits = isinstance(evaluation_time, str) and evaluation_time.isascii()
    if isinstance(evaluation_time, bool) or not (
        isinstance(evaluation_time, int) or (digits and str(evaluation_time).isdigit())
    ):
        problems.append(f"evaluation_time: epoch milliseconds (got {shorten(evaluation_time)})")
    invoking = event.get("invoking_event")
    if not isinstance(invoking, dict):
        problems.append(f"invoking_event: an object is required (got {shorten(invoking)})")
    elif trigger_type == "resource" and not is_image_id(invoking.get("id")):
        problems.append(
            f"invoking_event.id: the resource's id, a UUID (got {shorten(invoking.get('id'))})"
        )
    rule, resource_type = _config_parameters(event.get("rule_parameter"), problems)
    if problems:
        return "; ".join(problems)
    assert isinstance(invoking, dict) and isinstance(evaluation_time, (int, str))
    return ConfigEvaluation(
        domain_id,
        assignment_id,
        assignment_name,
        "resource" if trigger_type == "resource" else "period",
        evaluation_time,
        evaluation_hash,
        rule,
        invoking if trigger_type == "resource" else None,
        resource_type,
    )


def config_event(evaluation: ConfigEvaluation) -> dict[str, Any]:
    """A periodic evaluation as Config's event gives it: a continuation's payload."""
    event: dict[str, Any] = {
        "domain_id": evaluation.domain_id,
        "policy_assignment_id": evaluation.policy_assignment_id,
        "trigger_type": evaluation.trigger_type,
        "evaluation_time": evaluation.evaluation_time,
        "evaluation_hash": evaluation.evaluation_hash,
        "invoking_event": evaluation.resource or {"id": evaluation.domain_id, "name": "Account"},
    }
    if evaluation.policy_assignment_name:
        event["policy_assignment_name"] = evaluation.policy_assignment_name
    parameters = {
        CONFIG_RULE_PARAMETER: evaluation.rule,
        CONFIG_TYPE_PARAMETER: evaluation.resource_type,
    }
    if any(v is not None for v in parameters.values()):
        event["rule_parameter"] = {k: {"value": v} for k, v in parameters.items() if v is not None}
    return event


def _config_parameters(parameters: Any, problems: list[str]) -> tuple[str | None, str | None]:
    """What rule_parameter says: the imsguard rule that decides ({"rule": {"value":
    "uefi-boot"}}) and the type periodic states name ({"resource_type": {"value": "images"}})."""
    if parameters in (None, {}):
        return None, None
    if not isinstance(parameters, dict):
        problems.append(f"rule_parameter: an object is required (got {shorten(parameters)})")
        return None, None
    known = (CONFIG_RULE_PARAMETER, CONFIG_TYPE_PARAMETER)
    unknown = sorted(str(k) for k in parameters if k not in known)
    if unknown:
        problems.append(
            f"rule_parameter: unknown parameter(s) {shorten(unknown)}; imsguard's are "
            f"{CONFIG_RULE_PARAMETER!r} and {CONFIG_TYPE_PARAMETER!r}"
        )
    found: list[str | None] = []
    for key, wanted in (
        (CONFIG_RULE_PARAMETER, "<imsguard rule name>"),
        (CONFIG_TYPE_PARAMETER, CONFIG_IMAGE_TYPE),
    ):
        value = parameters.get(key)
        text = value.get("value") if isinstance(value, dict) else None
        if key not in parameters:
            found.append(None)
        elif not isinstance(text, str) or not text.strip():
            problems.append(f'rule_parameter.{key}: {{"value": "{wanted}"}} (got {shorten(value)})')
            found.append(None)
        else:
            found.append(text.strip())
    rule, resource_type = found
    if resource_type is not None and resource_type not in CONFIG_IMAGE_TYPES:
        problems.append(
            f"rule_parameter.resource_type: one of Config's names for IMS images "
            f"{sorted(CONFIG_IMAGE_TYPES)} (got {shorten(resource_type)})"
        )
        resource_type = None
    return rule, resource_type


# Tried in this order; the first envelope that matches unwraps the event. The order decides
# events with keys of several kinds: "action" first (an action may carry any option; an
# unknown action is refused, naming the known ones);
# "cts" and "events" before a single CloudEvent, whose keys (source, type, data) a wrapper
# may also have; the direct invocation before the timer, whose trigger_type a hand-made
# event might copy (the direct model then rejects the extra key, loudly).
ENVELOPES: list[Envelope] = [
    SweepActionEnvelope(),
    OrgShardEnvelope(),
    OrgSweepEnvelope(),
    UnknownActionEnvelope(),
    CtsEnvelope(),
    EventGridBatchEnvelope(),
    CloudEventEnvelope(),
    DirectEnvelope(),
    TimerEnvelope(),
    ConfigEvaluationEnvelope(),
]


def parse_event(event: Any) -> Trigger | SweepRequest | OrgSweepRequest | Skip:
    """Turn a raw FunctionGraph event into a Trigger or a SweepRequest, or say why there is
    nothing to do."""
    if not isinstance(event, dict):
        return Skip("invalid", f"the event is a {type(event).__name__}, not a JSON object")
    for envelope in ENVELOPES:
        if envelope.matches(event):
            return envelope.unwrap(event)
    return Skip(
        "ignored",
        'not an event imsguard handles: expected a CTS trace {"cts": {...}}, an EventGrid '
        'event, or a direct invocation {"image_id": "..."}',
    )


def parse_time(value: str) -> datetime | None:
    """An ISO 8601 date or date-time, in UTC when no zone is given; None if not one."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _target_of_cloud_event(event: Any) -> Target | Skip:
    if not isinstance(event, dict):
        return Skip("invalid", "an EventGrid event must be a JSON object")
    from imsguard import event_models  # only EventGrid events need their model

    cloud_event = event_models.validated(event_models.CloudEvent, event)
    if isinstance(cloud_event, str):
        return Skip("invalid", f"invalid EventGrid event: {cloud_event}")
    if cloud_event.source.upper() != EVENTGRID_SOURCE:
        return Skip("ignored", f"EventGrid event from {shorten(cloud_event.source)}, not HC.IMS")
    if cloud_event.type not in EVENTGRID_TYPES:
        return Skip(
            "ignored",
            f"EventGrid event of type {shorten(cloud_event.type)}, not an IMS cloud trace",
        )
    data = cloud_event.data.get("cts", cloud_event.data)  # the trace, possibly wrapped
    trace = read_trace(data)
    if isinstance(trace, str):
        return Skip("invalid", f"invalid CTS trace in EventGrid data: {trace}")
    return target_of_trace(trace)


def target_of_trace(trace: CtsTrace) -> Target | Skip:
    """What an IMS trace points at; Skip when it is not about an image it created or changed."""
    if (trace.service_type or "").lower() != IMS_SERVICE:
        return Skip("ignored", f"trace of service {shorten(trace.service_type)}, not IMS")
    resource_type = (trace.resource_type or "").lower()
    native = " on the native image API" if resource_type == "image" else ""
    spec = TRACE_SPECS.get((resource_type, trace.trace_name or ""))
    if spec is None:
        if all(resource_type != handled for handled, _ in TRACE_SPECS):
            return Skip(
                "ignored",
                f"IMS trace on resource type {shorten(trace.resource_type)}, not an image",
            )
        return Skip(
            "ignored",
            f"IMS trace {shorten(trace.trace_name)}{native} does not create or change an image",
        )
    name = trace.trace_name
    if trace.code is not None and trace.code >= 400:
        return Skip(
            "ignored", f"the traced {name} call failed (code {trace.code}); it changed nothing"
        )
    response = _embedded_json("response", trace.response)
    request = _embedded_json("request", trace.request)
    for part in (response, request):
        if isinstance(part, Skip):
            return part
    label = f"CTS {name}{native}" + (f" ({trace.trace_type})" if trace.trace_type else "")
    job_id = _first_id(response, spec.job_id_paths, is_job_id)
    job_ids = (job_id,) if job_id is not None else ()
    if isinstance(response, dict) and str(response.get("status", "")).upper() == "FAIL":
        reason = response.get("fail_reason") or response.get("error_code") or "no reason given"
        return Target(
            label,
            job_ids=job_ids,
            failure=f"the {name} job failed ({shorten(reason)}); no image was created",
        )
    resource_id = trace.resource_id.lower() if is_image_id(trace.resource_id) else None
    response_id = _first_id(response, spec.image_id_paths, is_image_id)
    image_ids = _unique(i for i in (resource_id, response_id and response_id.lower()) if i)
    fallback_ids: list[str] = []
    if spec.resource_id_is_source:  # a copy's resource_id: found only if nothing else is
        fallback_ids = [i for i in image_ids if i == resource_id]
        image_ids = [i for i in image_ids if i not in fallback_ids]
    requested = request.get("name") if isinstance(request, dict) else None
    requested = requested if requested is not None else trace.resource_name
    # The requested name of a new image (create, copy) is the last way to find it.
    lookup = requested if spec.creates and is_image_name(requested) else None
    if not image_ids and not job_ids and lookup is None and not fallback_ids:
        if requested and spec.creates:
            return Skip(
                "invalid",
                f"the {name} trace names no image id or job id, and the "
                f"requested name {shorten(requested)} is not a valid image "
                "name, so it is not looked up",
            )
        return Skip(
            "invalid",
            f"the {name} trace names no image id, no job id and no image "
            "name (resource_id, response and request hold none)",
        )
    return Target(
        label,
        tuple(image_ids),
        job_ids,
        lookup,
        tuple(fallback_ids),
        _trace_time(trace.time),
        traced_operations=_operations(request) if spec.carries_patch else None,
    )


# CTS's text times, as its examples show them: "2016/12/08 11:07:28 GMT+08:00" and
# "12/01/2016 11:07:28 GMT+08:00" (month first, as in the English examples).
_CTS_TIME = re.compile(
    r"(\d{1,4})/(\d{1,2})/(\d{1,4}) (\d{1,2}):(\d{2}):(\d{2})"
    r"(?: ?(?:GMT|UTC)(?:([+-]\d{1,2}):?(\d{2})?)?)?"
)


def _trace_time(value: Any) -> datetime | None:
    """When the traced call happened, if CTS said so in a form we can read: epoch
    milliseconds (a number or digits), ISO 8601, or CTS's own text form."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, timezone.utc)
        except (ValueError, OverflowError, OSError):
            return None
    if not isinstance(value, str):
        return None
    match = _CTS_TIME.fullmatch(value.strip())
    if match is None:
        return parse_time(value)
    first, second, third, hour, minute, second_of_minute, zone_h, zone_m = match.groups()
    year, month, day = (first, second, third) if len(first) == 4 else (third, first, second)
    try:
        offset = timedelta(
            hours=int(zone_h or 0),
            minutes=int(zone_m or 0) * (-1 if (zone_h or "").startswith("-") else 1),
        )
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second_of_minute),
            tzinfo=timezone(offset),
        )
    except ValueError:
        return None


def _embedded_json(part: str, value: Any) -> Any:
    """CTS may carry request/response as JSON text; decode it, or Skip if unreadable."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    if len(value) > MAX_EMBEDDED_JSON:
        return Skip("invalid", f"the trace {part} is too large to read")
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return Skip("invalid", f"the trace {part} is not valid JSON (or nested too deeply)")


def _first_id(
    response: Any, paths: tuple[tuple[str, ...], ...], is_id: Callable[[Any], TypeGuard[str]]
) -> str | None:
    """The first id found at one of ``paths`` in the response: it names one image (or job),
    so a second place is not read."""
    for path in paths:
        value = response
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if is_id(value):
            return value
    return None


def _operations(request: Any) -> tuple[tuple[str, str, str], ...] | None:
    """The JSON Patch an updateImage trace records, if the request is one."""
    if not isinstance(request, list):
        return None
    operations = []
    for item in request:
        if not isinstance(item, dict):
            return None
        operations.append((str(item.get("op")), str(item.get("path")), str(item.get("value"))))
    return tuple(sorted(operations))


def _unique(items: Any) -> list[str]:
    return list(dict.fromkeys(items))
