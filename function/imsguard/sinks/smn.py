"""SMN notices: a sweep publishes at most one digest per topic (a sweep that continues hands
its digest lines from hop to hop and publishes on its last hop), an event a notice only when
its image needs a person (``IMSGUARD_NOTIFY_TOPIC_URN``; endpoint ``IMSGUARD_SMN_ENDPOINT``).
``IMSGUARD_NOTIFY_ROUTES`` sends the lines of images with a route's tag to that route's
topic instead; the rest go to the default topic.

What the sink reports under ``sinks`` holds counts and per-topic lists only (at most the
routes' cap plus the default topic), never a list per image."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import requests
from huaweicloudsdkcore.exceptions.exceptions import SdkException
from huaweicloudsdksmn.v2 import PublishMessageRequest, PublishMessageRequestBody, SmnClient
from huaweicloudsdksmn.v2.region.smn_region import SmnRegion

from imsguard.events import CONFIG_SWEEP
from imsguard.logs import RedactingFilter, log, redact
from imsguard.permissions import PUBLISH_MESSAGE, requires
from imsguard.results import SweepReport
from imsguard.sinks import SinkError, call_timeouts
from imsguard.sinks.digest import Digest, compose, items_for, route
from imsguard.sinks.sdk import build_client, failure

if TYPE_CHECKING:
    from imsguard.invocation import Invocation
    from imsguard.policy import Policy
    from imsguard.results import EventReport

logging.getLogger("HuaweiCloud-SDK-SmnClient").addHandler(logging.NullHandler())
logging.getLogger("HuaweiCloud-SDK-SmnClient").addFilter(RedactingFilter())

MESSAGE_TTL_S = 3600  # SMN's own default: a notice an hour late is sent no more


class SmnNotices:
    """At most one message per topic per invocation, when there is something to say."""

    def finish(
        self, report: EventReport | SweepReport, invocation: Invocation, policy: Policy
    ) -> dict[str, Any]:
        settings = invocation.settings
        sweep = isinstance(report, SweepReport)
        if (
            isinstance(report, SweepReport)
            and report.notices_handed
            and (report.continued or {}).get("started")
        ):
            payload = (report.continued or {}).get("payload", {})
            handed = len(payload.get(CONFIG_SWEEP, payload).get("notices", []))
            return {"published": 0, "topic_urns": [], "handed_on": handed}
        today = invocation.clock.utcnow().date()
        items = items_for(report, policy, today, settings.notify_expiry_days)
        outcome: dict[str, Any] = {"published": 0, "topic_urns": []}
        failed: list[tuple[str, SinkError]] = []
        by_topic = route(items, settings.notify_routes, settings.notify_topic_urn or "")
        for topic_urn, topic_items in by_topic.items():
            digest = compose(
                topic_items,
                kind="sweep" if sweep else "event",
                region=settings.region,
                project_id=invocation.project_id,
                dry_run=report.dry_run,
                examined=(
                    report.examined_before + report.examined
                    if isinstance(report, SweepReport)
                    else None
                ),
            )
            if digest is None:
                continue
            try:
                message_id = self.publish(topic_urn, digest, invocation)
            except SinkError as exc:
                failed.append((topic_urn, exc))
                continue
            log(
                logging.INFO,
                "notice published",
                topic_urn=topic_urn,
                message_id=message_id,
                items=digest.total,
            )
            outcome["published"] += 1
            outcome["topic_urns"].append(topic_urn)
            outcome["items"] = outcome.get("items", 0) + digest.total
            outcome["listed"] = outcome.get("listed", 0) + digest.items
            outcome["images"] = outcome.get("images", 0) + digest.images
            outcome.setdefault("message_ids", []).append(message_id)
        if failed:
            if len(by_topic) == 1:
                raise failed[0][1]
            reasons = "; ".join(f"topic {urn}: {exc}" for urn, exc in failed)
            if not outcome["published"]:  # nothing went out: the sink failed
                raise SinkError(reasons)
            outcome["error"] = redact(reasons)  # some topics heard, these did not
            log(logging.ERROR, "report sink failed", sink="smn", reason=outcome["error"])
        return outcome

    @requires(PUBLISH_MESSAGE)
    def publish(self, topic_urn: str, digest: Digest, invocation: Invocation) -> str:
        """Publish the digest to the topic; SMN's message id. The call fits in the time left."""
        settings = invocation.settings
        timeouts = call_timeouts(invocation.budget.time_left())
        client = build_client(
            SmnClient,
            SmnRegion,
            settings.region,
            settings.smn_endpoint,
            invocation.home_project_id,
            invocation.credentials,
            timeouts,
        )
        body = PublishMessageRequestBody(
            subject=redact(digest.subject),
            message_structure=redact(digest.message_structure()),
            time_to_live=str(MESSAGE_TTL_S),
        )
        try:
            response = client.publish_message(PublishMessageRequest(topic_urn=topic_urn, body=body))
        except (SdkException, requests.RequestException) as exc:
            raise failure("SMN", exc) from None
        return str(response.message_id or "")
