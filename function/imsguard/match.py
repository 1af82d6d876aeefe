"""Which images a rule applies to: the ``match``/``exclude`` conditions, as the policy writes
them (validated to the spellings IMS uses) and as they are checked against an image."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from imsguard.attributes import attribute_text, canonical
from imsguard.patterns import compiled, search
from imsguard.spelling import did_you_mean


def _check_regex(value: str) -> str:
    compiled(value)  # RE2: linear time, or a ValueError saying why not
    return value


def _names(value: Any) -> Any:
    """A single value is accepted where a list is expected (``platform: Ubuntu``)."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [str(value)]
    return value


def _one_of(allowed: dict[str, str], what: str) -> Any:
    """A validator that maps values (case-insensitively, aliases too) to IMS's spelling, and
    refuses the rest with a suggestion: a value IMS never holds would never match."""

    def check(values: list[str]) -> list[str]:
        result = []
        spaceless = {key.replace(" ", ""): spelled for key, spelled in allowed.items()}
        for value in values:
            spelled = spaceless.get(value.lower().replace(" ", ""))  # as matching compares
            if spelled is None:
                choices = sorted(set(allowed.values()))
                raise ValueError(
                    f"{value!r} is not {what}{did_you_mean(value.lower(), allowed)}"
                    f" (one of {choices})"
                )
            result.append(spelled)
        return result

    return AfterValidator(check)


VIRTUAL_ENV_TYPES = {
    "fusioncompute": "FusionCompute",
    "ironic": "Ironic",
    "dataimage": "DataImage",
    "isoimage": "IsoImage",
    "system_disk": "FusionCompute",
    "bare_metal": "Ironic",
    "data_disk": "DataImage",
    "iso": "IsoImage",
}
OS_TYPES = {"linux": "Linux", "windows": "Windows", "other": "Other"}
# __platform as IMS documents it (API reference, image attributes: Windows, Ubuntu, RedHat or
# Red Hat, SUSE, CentOS, Debian, OpenSUSE, Oracle Linux, Fedora, Other, CoreOS, EulerOS), and
# openEuler, whose versions IMS's own OS lists hold. Matching ignores case and spaces.
PLATFORMS = {
    p.lower(): p
    for p in (
        "Windows",
        "Ubuntu",
        "Red Hat",
        "RedHat",
        "SUSE",
        "CentOS",
        "Debian",
        "OpenSUSE",
        "Oracle Linux",
        "Fedora",
        "Other",
        "CoreOS",
        "EulerOS",
        "openEuler",
    )
}
IMAGE_TYPES = {t: t for t in ("gold", "private", "shared", "market")}
OS_BITS = {"32": "32", "64": "64"}
ARCHITECTURES = {"x86": "x86", "arm": "arm"}
TAG = re.compile(r"[^=\s][^=]{0,127}(=[^=]{0,255})?")  # key, or key=value (used with fullmatch)

# For editors: a value or a list (the validator turns a single value into a list).
_ONE_OR_MORE = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string"},
            {"type": "integer"},
            {"type": "array", "items": {"type": "string"}, "minItems": 1},
        ]
    }
)
Names = Annotated[
    list[Annotated[str, Field(min_length=1)]],
    BeforeValidator(_names),
    Field(min_length=1),
    _ONE_OR_MORE,
]
Regex = Annotated[str, AfterValidator(_check_regex)]


def _check_tags(values: list[str]) -> list[str]:
    for value in values:
        if not TAG.fullmatch(value):
            raise ValueError(f"{value!r} is not a tag: write key or key=value")
    return values


Tags = Annotated[Names, AfterValidator(_check_tags)]  # each ``key`` or ``key=value``


STRICT = ConfigDict(extra="forbid", populate_by_name=True)


class Match(BaseModel):
    """Which images a rule applies to; every given condition must hold.

    Lists match one of their values, case-insensitively; ``os_version`` and ``name``
    are regular expressions searched in the attribute; ``tags`` must all be present
    (``key`` or ``key=value``); ``all``/``any``/``not`` combine further conditions.
    """

    model_config = STRICT

    platform: Annotated[Names, _one_of(PLATFORMS, "a platform IMS documents")] | None = None
    os_type: Annotated[Names, _one_of(OS_TYPES, "an os_type")] | None = None
    os_version: Regex | None = None
    os_bit: Annotated[Names, _one_of(OS_BITS, "an os_bit")] | None = None
    architecture: Annotated[Names, _one_of(ARCHITECTURES, "an architecture")] | None = None
    imagetype: Annotated[Names, _one_of(IMAGE_TYPES, "an imagetype")] | None = None
    virtual_env_type: Annotated[Names, _one_of(VIRTUAL_ENV_TYPES, "a virtual_env_type")] | None = (
        None
    )
    name: Regex | None = None
    tags: Tags | None = None
    all: list[Match] | None = Field(default=None, min_length=1)
    any: list[Match] | None = Field(default=None, min_length=1)
    not_: Match | None = Field(default=None, alias="not")


def tag_pairs(tags: Any) -> list[tuple[str, str | None]]:
    """An image's tags as (key, value): "key=value", or a bare "key". A tag with a dot and no
    "=" is read both ways: "key.value" as images tagged the old way hold them, and a key
    with a dot in it ("cost.center"), so that neither kind of tag is missed."""
    pairs: list[tuple[str, str | None]] = []
    for tag in tags if isinstance(tags, list) else []:
        if not isinstance(tag, str):
            continue
        if "=" in tag:
            key, _, value = tag.partition("=")
            pairs.append((key, value))
            continue
        for dot, char in enumerate(tag):  # every split: a key may hold dots too
            if char == ".":
                pairs.append((tag[:dot], tag[dot + 1 :]))
        pairs.append((tag, None))
    return pairs


def has_tag(tags: Any, wanted: str) -> bool:
    """``wanted`` is ``key`` (any value) or ``key=value``."""
    key, sep, value = wanted.partition("=")
    return any(k == key and (not sep or v == value) for k, v in tag_pairs(tags))


def architecture_of(image: dict[str, Any]) -> str:
    """``arm`` when IMS marks the image ``__support_arm`` (the SDK's only architecture field)."""
    return "arm" if canonical("__support_arm", image.get("__support_arm")) == "true" else "x86"


def tag_value(tags: Any, key: str) -> str | None:
    """The value of tag ``key``, if the image has it with a value."""
    return next((v for k, v in tag_pairs(tags) if k == key and v), None)


_LISTED = (
    ("platform", "__platform"),
    ("os_type", "__os_type"),
    ("os_bit", "__os_bit"),
    ("imagetype", "__imagetype"),
    ("virtual_env_type", "virtual_env_type"),
)


def matches(match: Match, image: dict[str, Any]) -> str | None:
    """None when every condition holds, else the first condition that does not."""
    for label, key in _LISTED:
        allowed = getattr(match, label)
        if allowed is not None:
            value = attribute_text(image.get(key)) or ""
            if not any(_listed(value) == _listed(a) for a in allowed):
                return f"{label} is {value or 'not set'!r}, not one of {allowed}"
    if match.architecture is not None and architecture_of(image) not in match.architecture:
        return f"architecture is {architecture_of(image)!r}, not one of {match.architecture}"
    for label, pattern, key in (
        ("os_version", match.os_version, "__os_version"),
        ("name", match.name, "name"),
    ):
        text = attribute_text(image.get(key)) or ""
        if pattern is not None and not search(pattern, text):
            return f"{label} {text!r} does not match {pattern!r}"
    for tag in match.tags or ():
        if not has_tag(image.get("tags"), tag):
            return f"the image has no tag {tag!r}"
    for sub in match.all or ():
        failed = matches(sub, image)
        if failed:
            return failed
    if match.any is not None:
        failures = [matches(sub, image) for sub in match.any]
        if all(failures):
            return "none of 'any' holds: " + "; ".join(f for f in failures if f)
    if match.not_ is not None and matches(match.not_, image) is None:
        return "a 'not' condition holds"
    return None


def _listed(value: str) -> str:
    """How listed values compare: "Red Hat", "RedHat" and "redhat" are one platform."""
    return value.lower().replace(" ", "")
