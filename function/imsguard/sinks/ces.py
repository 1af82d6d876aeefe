"""Cloud Eye custom metrics (``IMSGUARD_METRICS=true``; endpoint ``IMSGUARD_CES_ENDPOINT``):
one ``create_metric_data`` request per invocation, namespace ``IMSGUARD.Images``."""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

import requests
from huaweicloudsdkces.v1 import (
    CesClient,
    CreateMetricDataRequest,
    CreateMetricDataRequestBody,
    MetricInfo,
    MetricsDimension,
)
from huaweicloudsdkces.v1.region.ces_region import CesRegion
from huaweicloudsdkcore.exceptions.exceptions import SdkException

from imsguard.logs import RedactingFilter, log
from imsguard.permissions import CREATE_METRIC_DATA, requires
from imsguard.results import EventReport, SweepReport, needs_a_person
from imsguard.sinks import call_timeouts
from imsguard.sinks.sdk import build_client, failure

if TYPE_CHECKING:
    from imsguard.invocation import Invocation
    from imsguard.policy import Policy

logging.getLogger("HuaweiCloud-SDK-CesClient").addHandler(logging.NullHandler())
logging.getLogger("HuaweiCloud-SDK-CesClient").addFilter(RedactingFilter())

NAMESPACE = "IMSGUARD.Images"
TTL_S = 604_800  # the longest CES keeps custom data (the SDK model: ttl 1 to 604800 s)
UNIT = "count"
METRIC_NAMES = ("compliant_images", "updated_images", "violations", "errors", "needs_attention")


def metric_points(report: EventReport | SweepReport, project_id: str) -> list[dict[str, Any]]:
    """The data points for a report (pure): each metric for the whole invocation (dimension
    ``project``), and ``violations`` per rule (dimension ``rule``), in a fixed order."""
    if isinstance(report, SweepReport):
        summary = Counter(report.summary)
        per_rule = {rule: counts.get("violation", 0) for rule, counts in report.rules.items()}
        needs = report.needs_attention_total
    else:
        summary = Counter(r.outcome for r in report.results)
        rule_counts: Counter[str] = Counter()
        for result in report.results:
            for verdict in result.verdicts:
                rule_counts[verdict.rule] += verdict.status == "violation"
        per_rule = dict(rule_counts)
        needs = sum(needs_a_person(r) for r in report.results)
    totals = {
        "compliant_images": summary["compliant"],
        "updated_images": summary["updated"],
        "violations": sum(per_rule.values()),
        "errors": summary["error"],
        "needs_attention": needs,
    }
    points = [(name, "project", project_id, totals[name]) for name in METRIC_NAMES]
    points += [("violations", "rule", rule, n) for rule, n in sorted(per_rule.items())]
    return [
        {"metric_name": name, "dimension": (key, value), "value": count}
        for name, key, value, count in points
    ]


class CesMetrics:
    """Posts the invocation's counts as Cloud Eye custom metrics, in one request."""

    def finish(
        self, report: EventReport | SweepReport, invocation: Invocation, policy: Policy
    ) -> dict[str, Any]:
        points = metric_points(report, invocation.project_id)
        collect_ms = int(invocation.clock.utcnow().timestamp() * 1000)
        self.post(points, collect_ms, invocation)
        log(logging.INFO, "metrics posted", namespace=NAMESPACE, points=len(points))
        return {"posted": len(points), "namespace": NAMESPACE}

    @requires(CREATE_METRIC_DATA)
    def post(self, points: list[dict[str, Any]], collect_ms: int, invocation: Invocation) -> None:
        """One create_metric_data request with every point; it fits in the time left."""
        settings = invocation.settings
        timeouts = call_timeouts(invocation.budget.time_left())
        client = build_client(
            CesClient,
            CesRegion,
            settings.region,
            settings.ces_endpoint,
            invocation.home_project_id,
            invocation.credentials,
            timeouts,
        )
        body = [
            CreateMetricDataRequestBody(
                metric=MetricInfo(
                    namespace=NAMESPACE,
                    metric_name=point["metric_name"],
                    dimensions=[
                        MetricsDimension(name=point["dimension"][0], value=point["dimension"][1])
                    ],
                ),
                ttl=TTL_S,
                collect_time=collect_ms,
                value=point["value"],
                unit=UNIT,
                type="int",
            )
            for point in points
        ]
        try:
            client.create_metric_data(CreateMetricDataRequest(body=body))
        except (SdkException, requests.RequestException) as exc:
            raise failure("Cloud Eye", exc) from None
