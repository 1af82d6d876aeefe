"""A fake of SMN, as far as imsguard calls it: PublishMessage, and ListTopicAttributes
(``imsguard doctor``'s read of a topic).

It checks what SMN's API reference documents for ``POST /v2/{project_id}/notifications/
topics/{topic_urn}/publish``: a known topic, exactly one of message / message_structure /
message_template_name, ``subject`` at most 512 bytes, the message at most 256 KB, a
message_structure that is a JSON object with a ``default`` key, an SMS of at most 490
characters without "[]" or "【】", time_to_live at most 86400 s. ``GET .../topics/
{topic_urn}/attributes`` answers a known topic's attributes, ``name`` (if given) one of the
two the API reference's TopicAttribute lists. Error codes and the error body's shape are
assumptions (the shared {"error": {"code", "message"}}), marked so.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, ClassVar

from imsguard_tools.fake_http import ApiError, FakeHttpApi, try_json

SUBJECT_BYTES = 512
MESSAGE_BYTES = 256 * 1024
SMS_CHARS = 490


class FakeSmn(FakeHttpApi):
    """In-memory SMN topics; ``published`` holds every message accepted."""

    messages: ClassVar[dict[str, str]] = {
        **FakeHttpApi.messages,
        # assumption: codes of our own, in SMN's style; SMN documents its own per case
        "SMN.00011006": "Invalid parameter.",
        "SMN.00011013": "The topic does not exist.",
        "SMN.00011403": "Forbidden: the user has no permission for this operation.",
    }
    # The attributes ListTopicAttributes names (SMN API reference, TopicAttribute).
    attribute_names = ("access_policy", "introduction")

    def __init__(self, project_id: str, region: str, topics: tuple[str, ...] = ()) -> None:
        super().__init__(project_id, region)
        self.endpoint = f"https://smn.{region}.myhuaweicloud.com"
        self.topics = set(topics) or {f"urn:smn:{region}:{project_id}:imsguard-notices"}
        self.published: list[dict[str, Any]] = []
        self._routes += [
            (
                "POST",
                re.compile(r"/v2/([^/]+)/notifications/topics/([^/]+)/publish"),
                self._publish,
            ),
            (
                "GET",
                re.compile(r"/v2/([^/]+)/notifications/topics/([^/]+)/attributes"),
                self._attributes,
            ),
        ]

    def endpoints(self) -> tuple[str, ...]:
        return (self.endpoint,)

    @property
    def default_topic(self) -> str:
        return sorted(self.topics)[0]

    def _publish(
        self, project_id: str, topic_urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        if project_id != self.project_id:
            raise ApiError(401, "APIGW.0301")
        if topic_urn not in self.topics:
            raise ApiError(404, "SMN.00011013")
        data = try_json(body)
        if not isinstance(data, dict):
            raise ApiError(400, "SMN.00011006", "The request body must be a JSON object.")
        _check_message(data)
        message_id = uuid.uuid4().hex
        self.published.append({"topic_urn": topic_urn, "message_id": message_id, **data})
        return 200, {"request_id": uuid.uuid4().hex, "message_id": message_id}

    def _attributes(
        self, project_id: str, topic_urn: str, *, query: dict[str, str], body: str | None
    ) -> tuple[int, Any]:
        """A topic's attributes: none is set in the fake, so each reads empty (assumption:
        SMN answers an unset attribute as an empty string)."""
        if project_id != self.project_id:
            raise ApiError(401, "APIGW.0301")
        if topic_urn not in self.topics:
            raise ApiError(404, "SMN.00011013")
        name = query.get("name")
        if name is not None and name not in self.attribute_names:
            raise ApiError(400, "SMN.00011006", f"Invalid parameter: name {name!r}")
        names = (name,) if name else self.attribute_names
        return 200, {"request_id": uuid.uuid4().hex, "attributes": dict.fromkeys(names, "")}


def _check_message(data: dict[str, Any]) -> None:
    def invalid(why: str) -> ApiError:
        return ApiError(400, "SMN.00011006", f"Invalid parameter: {why}")

    subject = data.get("subject")
    if subject is not None and (
        not isinstance(subject, str) or len(subject.encode("utf-8")) > SUBJECT_BYTES
    ):
        raise invalid(f"subject must be a string of at most {SUBJECT_BYTES} bytes")
    names = ("message", "message_structure", "message_template_name")
    kinds = [k for k in names if data.get(k) is not None]
    if len(kinds) != 1:
        raise invalid(
            "exactly one of message, message_structure, message_template_name is required"
            + (f" (got {', '.join(kinds)})" if kinds else "")
        )
    if not data.get(kinds[0]):
        raise invalid(f"{kinds[0]} is empty")
    for key in ("message", "message_structure"):
        value = data.get(key)
        if value is not None and len(str(value).encode("utf-8")) > MESSAGE_BYTES:
            raise invalid(f"{key} is larger than 256 KB")
    if data.get("message_structure"):
        try:
            structure = json.loads(data["message_structure"])
        except (TypeError, ValueError):
            raise invalid("message_structure is not JSON") from None
        if not isinstance(structure, dict) or not isinstance(structure.get("default"), str):
            raise invalid("message_structure must have a default message")
        sms = structure.get("sms")
        if sms is not None and (
            not isinstance(sms, str)
            or len(sms) > SMS_CHARS
            or any(b in sms for b in ("[", "]", "【", "】"))
        ):
            raise invalid(f"the sms message exceeds {SMS_CHARS} characters or holds brackets")
    ttl = data.get("time_to_live")
    if ttl is not None and (not str(ttl).isdigit() or not 0 < int(ttl) <= 86_400):
        raise invalid("time_to_live must be a whole number of seconds up to 86400")
