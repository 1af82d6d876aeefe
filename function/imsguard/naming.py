"""Image names: what IMS accepts, how a bad one is normalized, and name templates.

A name rule's fix builds a name from the image (``normalize``: the name itself, cleaned;
``template``: fields of the image); everything here is pure text work.
"""

from __future__ import annotations

import re
import string
from datetime import date, datetime
from typing import Any

from imsguard.attributes import attribute_text
from imsguard.events import is_cjk, is_image_name
from imsguard.match import TAG, tag_value

MAX_NAME = 128


class MissingTemplateField(ValueError):
    """A name template names an attribute this image does not have (so it cannot be renamed)."""


NOT_ASCII = "[^\x00-\x7f]+"  # compiled on first use (re caches it)


def name_problem(name: str) -> str | None:
    """Why IMS would refuse this name, or None."""
    if not name:
        return "is empty"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if not is_image_name(name):
        return "is not a valid IMS name (letters, digits, Chinese, - . _ and inner spaces)"
    return None


def transliterate(text: str, keep_cjk: bool = False) -> str:
    """ASCII for what is not: "Ünïcödé" becomes "Unicode"; each Chinese character becomes
    its own syllable ("服务器" -> "fu wu qi"), so words stay readable once normalized."""
    if text.isascii():
        return text
    from anyascii import anyascii  # a 20 ms import: only when a name needs it

    def ascii_of(match: re.Match[str]) -> str:
        run = match.group()
        if keep_cjk:
            return "".join(c if is_cjk(c) else anyascii(c) for c in run)
        return "".join(f" {anyascii(c)} " if is_cjk(c) else anyascii(c) for c in run)

    return re.sub(NOT_ASCII, ascii_of, text)


def normalize_name(name: str, keep_cjk: bool = False) -> str:
    """Transliterated to ASCII (Chinese kept with ``keep_cjk``), lower-case; every run of
    other characters becomes one '-'; trimmed."""
    text = transliterate(name, keep_cjk).lower()
    other = "[^a-z0-9\u4e00-\u9fff]+" if keep_cjk else "[^a-z0-9]+"
    text = re.sub(other, "-", text).strip("-")
    return text[:MAX_NAME].rstrip("-")


def ims_safe(text: str) -> str:
    """Characters IMS refuses in names become '-'; trimmed to 128 without edge spaces."""
    text = re.sub(r"[^A-Za-z0-9\u4e00-\u9fff._\- ]+", "-", text)
    text = re.sub(r"-{2,}", "-", text).strip(" -")
    return text[:MAX_NAME].rstrip(" -")


def os_version_number(os_version: str) -> str | None:
    """The version in an ``__os_version``: "Ubuntu 22.04 server 64bit" -> "22.04",
    "EulerOS 2.9 64bit" -> "2.9" (never the 64 of "64bit")."""
    match = re.search(r"(?<![\w.])(\d+(?:\.\d+)*)(?![\w.]*\s*bit)", os_version[:200])
    return match.group(1) if match else None


def render_template(template: str, image: dict[str, Any]) -> str:
    """Fill ``{platform}``, ``{os_version}``, ``{os_version_number}``, ``{tag:KEY}``,
    ``{created:%Y%m%d}``, ``{id8}``... from the image."""

    def value(key: str) -> str:
        text = attribute_text(image.get(key))
        if not text:
            raise MissingTemplateField(f"the image has no {key}")
        return text

    def created(spec: str) -> str:
        raw = value("created_at")
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise MissingTemplateField(f"created_at {raw!r} is not a timestamp") from None
        return moment.strftime(spec or "%Y%m%d")

    def tag(key: str) -> str:
        found = tag_value(image.get("tags"), key)
        if not found:
            raise MissingTemplateField(f"the image has no tag {key!r} (with a value)")
        return found

    def version_number() -> str:
        number = os_version_number(value("__os_version"))
        if number is None:
            raise MissingTemplateField(
                f"__os_version {value('__os_version')!r} holds no version number"
            )
        return number

    fields = {
        "platform": "__platform",
        "os_type": "__os_type",
        "os_version": "__os_version",
        "os_bit": "__os_bit",
        "name": "name",
    }
    out = []
    for literal, field_name, spec, _ in string.Formatter().parse(template):
        out.append(literal)
        if field_name is None:
            continue
        if field_name == "created":
            out.append(created(spec or ""))
        elif field_name == "id8":
            out.append(value("id")[:8])
        elif field_name == "tag":
            out.append(tag(spec or ""))
        elif field_name == "os_version_number":
            out.append(version_number())
        else:
            out.append(value(fields[field_name]))
    return "".join(out)


STRFTIME = re.compile(r"(?:%[YymdHMSjUWbBaAp%]|[^%{}])+")  # used with fullmatch
TEMPLATE_FIELDS = {
    "platform",
    "os_type",
    "os_version",
    "os_version_number",
    "os_bit",
    "created",
    "id8",
    "name",
    "tag",
}


def check_template(template: str) -> None:
    """Only known fields; a format only for ``created`` (a strftime format)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"template {template!r}: {exc}") from None
    if all(field is None for _, field, _, _ in parts):
        raise ValueError(f"template {template!r} has no field: every image would get one name")
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            raise ValueError(
                f"template field {{{field}}} is unknown; use one of {sorted(TEMPLATE_FIELDS)}"
            )
        if conversion:
            raise ValueError(f"template field {{{field}!{conversion}}}: no conversions")
        if field == "tag":
            if not spec or not TAG.fullmatch(spec) or "=" in spec:
                raise ValueError(
                    f"template field {{tag:{spec}}}: name the tag's key, as in {{tag:team}}"
                )
            continue
        if spec and field != "created":
            raise ValueError(
                f"template field {{{field}:{spec}}}: only created (a strftime "
                "format) and tag (a tag key) take one"
            )
        if field == "created" and spec and not STRFTIME.fullmatch(spec):
            raise ValueError(
                f"template field {{created:{spec}}}: use strftime directives "
                "such as %Y, %m, %d, %H, %M"
            )
        if field == "created" and spec and not date(2026, 1, 2).strftime(spec).strip():
            raise ValueError(f"template field {{created:{spec}}} formats to nothing")
