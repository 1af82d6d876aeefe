"""An event's work: find the images each target points at, then check each image once.

Each image costs one read and at most one write (one PATCH with every change). Loaded
only when an event has image work, like the SDK (the fleet sweep is in sweep.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imsguard.evaluate import Decision, before, evaluate, plan
from imsguard.events import Target, Trigger
from imsguard.ims import ImsError
from imsguard.invocation import Invocation
from imsguard.logs import get_logger
from imsguard.policy import Policy
from imsguard.resolve import Resolver, failure
from imsguard.results import ImageResult, Outcome
from imsguard.sinks import ConfigStateNotReported


class EventCheck:
    """An event's work: find each target's images, then check each image once."""

    def __init__(
        self,
        invocation: Invocation,
        policy: Policy,
        dry_run: bool,
        uefi_versions: frozenset[str] | None,
    ):
        self.invocation = invocation
        self.gateway = invocation.gateway
        self.policy = policy
        self.project_id = invocation.project_id
        self.dry_run = dry_run
        self.today = invocation.clock.utcnow().date()  # for exemption expiry
        self.uefi_versions = uefi_versions
        self.resolver = Resolver(invocation.gateway, invocation.budget, self.project_id)
        # Told each image's evaluation before anything is sent (Config's states).
        self.observe: Callable[[dict[str, Any], Decision], None] | None = None

    def process(self, trigger: Trigger) -> list[ImageResult]:
        """Each result is published (logged) as soon as it exists, and reported."""
        publish = self.invocation.publish
        results: list[ImageResult] = []
        checked: set[str] = set()
        for target in dict.fromkeys(trigger.targets):  # a batch may repeat an event
            images, unresolved = self._resolve_safely(target)
            results.extend(publish(r) for r in unresolved)
            for image in images:
                if image["id"] not in checked:  # a batch may name one image twice
                    checked.add(image["id"])
                    results.append(publish(self._check_image_safely(image, target)))
        return results

    def _resolve_safely(self, target: Target) -> tuple[list[dict[str, Any]], list[ImageResult]]:
        try:
            return self.resolver.images_of(target)
        except Exception as exc:
            return [], [_internal_error(exc, None)]

    def _check_image_safely(self, image: dict[str, Any], target: Target) -> ImageResult:
        """One odd image must not cost the other images their results."""
        try:
            result = self._check_image(image, target)
        except ConfigStateNotReported:  # the image is not fixed: FunctionGraph retries
            raise
        except Exception as exc:
            result = _internal_error(exc, image["id"])
        result.tags = ImageResult.tags_of(image)  # the image was read: for notice routing
        return result

    def _observe(self, image: dict[str, Any], decision: Decision) -> None:
        """Tell the hook; its failure never costs the image its fix, except the deliberate
        ConfigStateNotReported (the state must reach Config before the fix)."""
        if self.observe is None:
            return
        try:
            self.observe(image, decision)
        except ConfigStateNotReported:
            raise
        except Exception:
            get_logger().exception(
                "image evaluation not observed", extra={"fields": {"image_id": image["id"]}}
            )

    def _check_image(self, image: dict[str, Any], target: Target) -> ImageResult:
        image_id = image["id"]
        decision = evaluate(self.policy, image, self.project_id, self.today, self.uefi_versions)
        self._observe(image, decision)
        planned = plan(decision, self.dry_run)
        name, notes, verdicts = image.get("name"), list(decision.notes), decision.verdicts
        send = list(planned.send)
        if not send:
            return ImageResult(
                image_id,
                planned.outcome,
                planned.reason,
                list(decision.operations),
                image_name=name,
                notes=notes,
                before=before(image, decision.operations)
                if planned.outcome == "would_update"
                else None,
                verdicts=verdicts,
            )
        if target.traced_operations is not None and target.traced_operations == tuple(
            sorted((o["op"], o["path"], o["value"]) for o in send)
        ):
            return ImageResult(
                image_id,
                "error",
                "this update trace records exactly the patch imsguard would send, "
                "yet the image still differs: IMS did not keep it; not sent again "
                "(loop guard)",
                list(decision.operations),
                image_name=name,
                notes=notes,
                verdicts=verdicts,
            )

        def sent(
            outcome: Outcome, reason: str, retryable: bool = False, failed: bool = False
        ) -> ImageResult:
            """The result of an image a PATCH was sent for (``failed``: in vain)."""
            return ImageResult(
                image_id,
                outcome,
                reason,
                send,
                image_name=name,
                notes=notes,
                before=before(image, send),
                held_back=[op for op in decision.operations if op not in send],
                retryable=retryable,
                verdicts=verdicts,
                sent=tuple(op["path"][1:] for op in send),
                failed=failed,
            )

        try:
            updated = self.gateway.update_image(image_id, send)
        except ImsError as exc:
            outcome, retryable = failure(exc)
            return sent(outcome, f"not updated: {exc}", retryable, failed=True)
        after = evaluate(self.policy, updated, self.project_id, self.today, self.uefi_versions)
        left = sorted({o["path"] for o in after.operations} & {o["path"] for o in send})
        if left:
            return sent("error", f"IMS accepted the update but still differs on {left}")
        return sent(planned.outcome, planned.reason)


def _internal_error(exc: Exception, image_id: str | None) -> ImageResult:
    """A bug hit one target or image: log it with its traceback, report it, go on."""
    get_logger().exception("unexpected failure", extra={"fields": {"image_id": image_id}})
    return ImageResult(image_id, "error", f"internal error: {type(exc).__name__}: {exc}")
