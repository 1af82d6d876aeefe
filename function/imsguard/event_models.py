"""The pydantic models of events written by hand or wrapped by another service: a direct
invocation, a sweep's options, an EventGrid CloudEvent. Their own module, loaded only when
such an event arrives: a CTS event (most of them) never pays for building these models.
"""

from __future__ import annotations

import json
import re
from datetime import timezone
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from imsguard.events import (
    MAX_IMAGE_NAME,
    MAX_IMAGES_PER_EVENT,
    is_image_id,
    is_image_name,
    parse_time,
    shorten,
)
from imsguard.sinks import REPORT_KEYS_BYTES


class CloudEvent(BaseModel):
    """An EventGrid event (CloudEvents 1.0); cloud-service events carry a CTS trace in data."""

    model_config = ConfigDict(extra="allow", defer_build=True)  # built on first use

    id: str | None = None
    source: str
    type: str
    data: dict[str, Any]


class DirectInvocation(BaseModel):
    """A hand-made invocation, e.g. a FunctionGraph console test event."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    image_id: str | None = Field(default=None, max_length=64)
    image_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_IMAGES_PER_EVENT)
    dry_run: bool | None = None

    @field_validator("image_id")
    @classmethod
    def _check_id(cls, value: str | None) -> str | None:
        if value is not None and not is_image_id(value):
            raise ValueError("not an image id (expected a UUID)")
        return value

    @field_validator("image_ids")
    @classmethod
    def _check_ids(cls, value: list[str] | None) -> list[str] | None:
        for index, item in enumerate(value or []):
            if not is_image_id(item):
                raise ValueError(f"item {index} is not an image id (expected a UUID)")
        return value


class CarriedNotice(BaseModel):
    """One line of the sweep's SMN digest, handed from a hop to the next
    (sinks.digest.handed_on): a continued sweep publishes one digest, on its last hop. Ids,
    an IMS image name, a rule name, a label and counts only: the last hop words the line
    from the label and the policy, so no caller can make the function publish its own text."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    section: Literal["attention", "held_back", "expiring"]
    image_id: str | None  # None: a line that stands for ``images`` images not listed
    name: str = Field(default="", max_length=MAX_IMAGE_NAME)
    rule: str = Field(default="-", pattern=r"^(-|[a-z0-9]+(-[a-z0-9]+)*)$", max_length=64)
    label: str = Field(pattern=r"^[a-z_ ]{1,30}( [0-9]{4}-[0-9]{2}-[0-9]{2})?$")
    # IMS tags: a key of up to 128 characters and a value of up to 255, as key=value.
    tags: list[Annotated[str, Field(max_length=384)]] | None = Field(default=None, max_length=50)
    images: int = Field(default=1, ge=1, le=10_000_000)
    exemption: int | None = Field(default=None, ge=0, le=10_000)

    @field_validator("image_id")
    @classmethod
    def _image_id(cls, value: str | None) -> str | None:
        if value is not None and not is_image_id(value):
            raise ValueError("not an image id (a UUID)")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not is_image_name(value):
            raise ValueError("not an image name IMS accepts")
        return value

    @model_validator(mode="after")
    def _lines(self) -> CarriedNotice:
        if self.image_id is not None and self.images != 1:
            raise ValueError("a line about one image stands for 1 image")
        if (self.section == "expiring") != (self.exemption is not None):
            raise ValueError("an exemption is named on expiring lines, and only there")
        return self


class SweepOptions(BaseModel):
    """What a sweep may be told: from a timer's ``user_event`` (JSON) or a direct
    invocation. ``marker`` and ``hop`` continue a sweep that ran out of time."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    dry_run: bool | None = None
    since: str | None = Field(default=None, max_length=40)  # created after (ISO date/time)
    limit: int | None = Field(default=None, ge=1, le=1_000_000)  # images to examine at most
    marker: str | None = None
    hop: int = Field(default=0, ge=0, le=1000)
    # Carried from hop to hop, so the guardrail counts the whole sweep.
    examined_before: int = Field(default=0, ge=0)
    planned_before: int = Field(default=0, ge=0)
    # A Config periodic evaluation's last image whose state was sent (id, created_at): the
    # next hop may list images again (patches deferred to it) and reports none up to it.
    config_reported: str | None = Field(default=None, max_length=200)
    config_reported_at: str | None = Field(default=None, max_length=40)
    # The most images this sweep may change, over all its hops (an organization's plan gave
    # it): more, and it changes nothing, as with the policy's max_updates.
    max_changes: int | None = Field(default=None, ge=0)
    # The digest lines of the sweep's earlier hops (SMN on): the last hop publishes them all.
    notices: list[CarriedNotice] | None = Field(default=None, max_length=2000)
    # Reports in OBS: the sweep's id (its first hop's request id) and the JSON keys of the
    # earlier hops' reports, for the index the last hop writes (sinks.obs.handed_on). The
    # sink lists only keys under its prefix.
    sweep_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,128}$")
    report_keys: list[Annotated[str, Field(max_length=1024)]] | None = Field(
        default=None, max_length=1000
    )
    # The keys, at most (bytes of their JSON): with the notices, the continuation's payload
    # stays far below FunctionGraph's request limits (sinks.obs stops listing beyond it).

    @model_validator(mode="after")
    def _notices_follow_a_hop(self) -> SweepOptions:
        if self.notices and not self.hop:
            raise ValueError("notices come only with a continuation (hop 1 or later)")
        if (self.sweep_id or self.report_keys) and not self.hop:
            raise ValueError("sweep_id and report_keys come only with a continuation (hop 1 on)")
        if self.report_keys and not self.sweep_id:
            raise ValueError("report_keys come with the sweep_id they belong to")
        keys = self.report_keys or []
        if len(keys) > self.hop:
            raise ValueError("more report_keys than hops before this one")
        if len(json.dumps(keys)) > REPORT_KEYS_BYTES:
            raise ValueError(f"report_keys take more than {REPORT_KEYS_BYTES} bytes")
        first = self.hop - len(keys)  # a sweep rerun by hand from a hop lists from there
        for index, key in enumerate(keys):
            if not _report_key(key, self.sweep_id or "", first + index):
                raise ValueError(
                    f"report_keys[{index}] is not the key of this sweep's hop {first + index} "
                    "(<prefix>YYYY/MM/DD/sweep-<sweep_id>-hop-<n>.json)"
                )
        return self

    @field_validator("since")
    @classmethod
    def _since(cls, value: str | None) -> str | None:
        return _since(value)

    @field_validator("marker")
    @classmethod
    def _marker(cls, value: str | None) -> str | None:
        if value is not None and not is_image_id(value):
            raise ValueError("not an image id (a UUID)")
        return value


# What each shard field must be (fullmatch), and how a refusal says so: an org run's id (the
# coordinator's, naming the run's shards and reports), an account's (domain) id as
# Organizations lists it and STS's agency URN takes it, a region id, a project id.
SHARD_FIELDS = {
    "org_run": (r"[A-Za-z0-9._-]{1,64}", "1 to 64 letters, digits, '.', '_' or '-'"),
    "account": (r"[0-9a-f]{32}", "an account (domain) id: 32 lower-case hex characters"),
    "region": (r"[a-z]{2,}(-[a-z0-9]+){1,5}", "a region id such as 'ap-southeast-1'"),
    "project_id": (r"[0-9a-f]{32}", "a project id: 32 lower-case hex characters"),
}


class PendingShard(BaseModel):
    """One account's project in one region, to be swept: what a coordinator hop hands the
    next (which starts it without discovering the organization again), and the identity of
    every org shard."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    account: str
    account_name: str | None = Field(default=None, max_length=64)
    region: str
    project_id: str

    @field_validator("account", "region", "project_id")
    @classmethod
    def _id(cls, value: str, info: ValidationInfo) -> str:
        return _shard_field(value, str(info.field_name))

    @field_validator("account_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("holds a control character")
        return value


class OrgShard(PendingShard):
    """Which unit of an organization sweep a shard is: one account's project in one region,
    in the run's ``plan`` (a dry run that counts the changes) or ``apply`` phase."""

    org_run: str
    phase: Literal["plan", "apply"]
    # Under an organization limit, the token of the coordinator's approval of this apply
    # shard in the run's OBS objects (imsguard.org.store.approval_problem).
    approval: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")

    @field_validator("org_run")
    @classmethod
    def _run(cls, value: str) -> str:
        return _shard_field(value, "org_run")

    def fields(self) -> dict[str, Any]:
        """The shard's own fields (not an event's ``action`` or ``sweep``), for reports."""
        order = ("org_run", "account", "account_name", "region", "project_id", "phase")
        found = {name: getattr(self, name) for name in order}
        return found if self.approval is None else {**found, "approval": self.approval}


class OrgShardEvent(OrgShard):
    """``{"action": "org-shard", <the shard's fields>, "sweep": {<sweep options>}}``: one
    shard of an organization sweep, started by its coordinator (or by itself, continued)."""

    action: Literal["org-shard"]
    sweep: SweepOptions = Field(default_factory=SweepOptions)


def _shard_field(value: str, field: str) -> str:
    """``value`` checked as SHARD_FIELDS[field] says."""
    pattern, wanted = SHARD_FIELDS[field]
    if not re.fullmatch(pattern, value):
        raise ValueError(f"not {wanted}")
    return value


class OrgSweepEvent(BaseModel):
    """``{"action": "org-sweep", "accounts"?, "regions"?, "dry_run"?, "since"?, "ou"?,
    "tag"?}``: sweep an organization (imsguard.org.coordinator). ``org_run``, ``start_at``
    and ``hop`` continue a coordinator that ran out of time or started its share of shards:
    an index into the run's deterministic shard order, never credentials."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    action: Literal["org-sweep"]
    accounts: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    regions: list[str] | None = Field(default=None, min_length=1, max_length=100)
    dry_run: bool | None = None
    since: str | None = Field(default=None, max_length=40)
    ou: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    tag: str | None = Field(default=None, pattern=r"^[^=\x00-\x1f]{1,128}=[^\x00-\x1f]{0,255}$")
    org_run: str | None = None
    start_at: int = Field(default=0, ge=0)
    hop: int = Field(default=0, ge=0, le=1000)
    # The shard order start_at indexes, as a digest: a next hop whose discovery finds other
    # shards stops and says so, rather than skip some or start others twice.
    shards_digest: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    # The shards still to start, when they fit in the payload: the next hop starts them
    # without discovering the organization again (else start_at and shards_digest).
    pending: list[PendingShard] | None = Field(default=None, max_length=5000)

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, values: list[str] | None) -> list[str] | None:
        return _each(values, "account")

    @field_validator("regions")
    @classmethod
    def _regions(cls, values: list[str] | None) -> list[str] | None:
        return _each(values, "region")

    @field_validator("org_run")
    @classmethod
    def _org_run(cls, value: str | None) -> str | None:
        _each([value] if value is not None else None, "org_run")
        return value

    @field_validator("since")
    @classmethod
    def _since(cls, value: str | None) -> str | None:
        return _since(value)

    @model_validator(mode="after")
    def _continuation(self) -> OrgSweepEvent:
        if (self.start_at or self.hop or self.shards_digest or self.pending) and not self.org_run:
            raise ValueError(
                "start_at, hop, shards_digest and pending come only with the org_run they continue"
            )
        return self

    def tag_pair(self) -> tuple[str, str] | None:
        """``tag`` ("key=value") as Organizations' (key, value)."""
        if self.tag is None:
            return None
        key, _, value = self.tag.partition("=")
        return key, value


def _since(value: str | None) -> str | None:
    """``value`` if it is a date or time a sweep's ``since`` can take."""
    moment = parse_time(value) if value is not None else None
    try:
        usable = moment is not None and moment.astimezone(timezone.utc).year >= 1970
    except (OverflowError, ValueError):
        usable = False
    if value is not None and not usable:
        raise ValueError("not a date or time such as 2026-11-01 or 2026-11-01T08:00:00Z")
    return value


def _each(values: list[str] | None, field: str) -> list[str] | None:
    """``values``, each checked as SHARD_FIELDS[field] says; duplicates dropped."""
    if values is None:
        return None
    pattern, wanted = SHARD_FIELDS[field]
    for index, value in enumerate(values):
        if not re.fullmatch(pattern, value):
            raise ValueError(f"[{index}] {shorten(value)} is not {wanted}")
    return list(dict.fromkeys(values))


def _report_key(key: str, sweep_id: str, hop: int) -> bool:
    """Whether ``key`` is a plausible key of this sweep's ``hop``-th report (any prefix but
    one with control characters or a backslash; sinks.obs checks it is its own)."""
    head, found, rest = key.rpartition(f"/sweep-{sweep_id}-hop-{hop}.json")
    if not found or rest or not re.fullmatch(r".{0,256}[0-9]{4}/[0-9]{2}/[0-9]{2}", head):
        return False
    return not any(ord(c) < 32 or ord(c) == 127 or c == "\\" for c in head)


Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], data: Any) -> Model | str:
    """``data`` as ``model``, or why not: a short human line per problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return describe_errors(exc)


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """A short, human line per pydantic error: 'field: message (got ...)'."""
    parts = []
    for error in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "event"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
