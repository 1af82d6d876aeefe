"""From what an event points at to the images to check, waiting while they are created.

A target's image ids are read first; a creation job is followed (polled until it
ends) to the image it made; the requested name is the last resort. An image still
``queued`` or ``saving`` is polled until ``active``. All waiting stays inside the
invocation's time budget: what is not ready in time is ``deferred``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from imsguard.clock import Budget
from imsguard.evaluate import scope_of
from imsguard.events import Target, is_image_id
from imsguard.ims import ImsError, ImsGateway
from imsguard.results import ImageResult, Outcome

NAME_LOOKUP_WINDOW = timedelta(hours=1)
JOB_NOT_FOUND_READS = 3  # a new job may answer 404 at first: this many reads before "gone"


class Resolver:
    """Finds a target's images through one gateway, within one invocation's budget."""

    def __init__(self, gateway: ImsGateway, budget: Budget, project_id: str):
        self.gateway = gateway
        self.budget = budget
        self.project_id = project_id

    def images_of(self, target: Target) -> tuple[list[dict[str, Any]], list[ImageResult]]:
        """The images to evaluate (each read once, and ready), and results for the rest."""
        if target.failure:
            job_id = target.job_ids[0] if target.job_ids else None
            return [], [_job_result(job_id, "not_applicable", target.failure)]
        results: list[ImageResult] = []
        missing: list[str] = []
        refused: list[ImageResult] = []  # job reads IAM refused: the other ways are tried first
        found = self._read_all(target.image_ids, results, missing)
        if not found and not results:
            for job_id in target.job_ids:
                image_id = self._wait_for_job(job_id, results, refused)
                if image_id is not None:
                    found.update(self._read_all((image_id,), results, missing))
        if not found and not results and target.name:
            found = {i["id"]: i for i in self._find_by_name(target.name, target.time, results)}
        if not found and not results:
            found = self._read_all(target.fallback_ids, results, missing)
        if not found and refused:  # the likelier cause than "not found by name"
            results = refused
        if not found and not results:
            results = [
                _image_result(
                    i, "not_applicable", "no such image (deleted, or not visible to this project)"
                )
                for i in missing
            ]
        ready = []
        for image in found.values():
            active = self._wait_until_active(image, results)
            if active is not None:
                ready.append(active)
        return ready, results

    def _read_all(
        self, image_ids: tuple[str, ...], results: list[ImageResult], missing: list[str]
    ) -> dict[str, dict[str, Any]]:
        """Read each image; ids IMS does not know go to ``missing``, failures to ``results``."""
        found = {}
        for image_id in image_ids:
            failures = len(results)
            image = self._read(image_id, results)
            if image is not None:
                found[image_id] = image
            elif len(results) == failures:
                missing.append(image_id)
        return found

    def _read(self, image_id: str, results: list[ImageResult]) -> dict[str, Any] | None:
        try:
            return self.gateway.get_image(image_id)
        except ImsError as exc:
            outcome, retryable = failure(exc)
            results.append(ImageResult(image_id, outcome, str(exc), retryable=retryable))
            return None

    def _wait_for_job(
        self, job_id: str, results: list[ImageResult], refused: list[ImageResult]
    ) -> str | None:
        """Poll the job until it ends; its image id, or None with a result explaining why
        (in ``refused`` when IAM refused the read: IMS documents no action for its job
        APIs, so an agency may lack one, and the image can still be found otherwise)."""
        attempt = 0
        while True:
            try:
                job = self.gateway.get_job(job_id)
            except ImsError as exc:
                # A job IMS has only just created may not be found yet (eventual
                # consistency): ask again, within the budget, before concluding it is gone.
                if (
                    exc.kind == "gone"
                    and attempt < JOB_NOT_FOUND_READS - 1
                    and self.budget.pause(attempt)
                ):
                    attempt += 1
                    continue
                outcome, retryable = failure(exc)
                result = ImageResult(
                    None, outcome, f"job {job_id}: {exc}", job_id=job_id, retryable=retryable
                )
                if exc.status in (401, 403):
                    result.reason += (
                        "; the image was looked for without the job too (by "
                        "the trace's name and ids), and not found"
                    )
                    refused.append(result)
                else:
                    results.append(result)
                return None
            status = str(job.get("status", "")).upper()
            if status == "SUCCESS":
                entities = job.get("entities")
                image_id = entities.get("image_id") if isinstance(entities, dict) else None
                if is_image_id(image_id):
                    return image_id.lower()
                results.append(
                    _job_result(job_id, "error", f"job {job_id} succeeded but names no image id")
                )
                return None
            if status == "FAIL":
                reason = job.get("fail_reason") or job.get("error_code") or "no reason given"
                results.append(
                    _job_result(
                        job_id,
                        "not_applicable",
                        f"job {job_id} failed ({reason}); no image was made",
                    )
                )
                return None
            if not self.budget.pause(attempt):
                results.append(
                    _job_result(
                        job_id,
                        "deferred",
                        f"job {job_id} is still {status or 'unknown'} after {attempt + 1} "
                        "read(s); out of time (a later event or sweep will check it)",
                    )
                )
                return None
            attempt += 1

    def _wait_until_active(
        self, image: dict[str, Any], results: list[ImageResult]
    ) -> dict[str, Any] | None:
        """Poll an image of ours that is still being created; other images pass as they are."""
        attempt = 0
        while scope_of(image, self.project_id)[0] == "deferred":
            if not self.budget.pause(attempt):
                results.append(
                    _image_result(
                        image["id"],
                        "deferred",
                        f"the image is still {image.get('status')} after {attempt + 1} "
                        "read(s); out of time (a later event or sweep will check it)",
                    )
                )
                return None
            attempt += 1
            failures = len(results)
            fresh = self._read(image["id"], results)
            if fresh is None:
                if len(results) == failures:
                    results.append(
                        _image_result(
                            image["id"],
                            "not_applicable",
                            "the image disappeared while being created",
                        )
                    )
                return None
            image = fresh
        return image

    def _find_by_name(
        self, name: str, traced_at: datetime | None, results: list[ImageResult]
    ) -> list[dict[str, Any]]:
        """Private images of that name created in the hour before the trace (or now)."""
        now = self.budget.clock.utcnow()
        start = (min(now, traced_at) if traced_at else now) - NAME_LOOKUP_WINDOW
        since = start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            images = self.gateway.find_images(name, since)
        except ImsError as exc:
            outcome, retryable = failure(exc)
            results.append(
                ImageResult(None, outcome, f"lookup by name: {exc}", name=name, retryable=retryable)
            )
            return []
        if not images:
            results.append(
                ImageResult(
                    None,
                    "not_applicable",
                    f"no private image named {name!r} was created in the "
                    "hour before the trace (renamed or deleted since?)",
                    name=name,
                )
            )
        return images


def failure(exc: ImsError) -> tuple[Outcome, bool]:
    """A failed call's outcome: vanished, not applicable; no time left to ask, deferred;
    else error; and whether it is retryable (IMS failed transiently even after retries)."""
    outcomes: dict[str, Outcome] = {"gone": "not_applicable", "out_of_time": "deferred"}
    return outcomes.get(exc.kind, "error"), exc.kind == "transient"


def _image_result(image_id: str, outcome: Outcome, reason: str) -> ImageResult:
    return ImageResult(image_id, outcome, reason)


def _job_result(job_id: str | None, outcome: Outcome, reason: str) -> ImageResult:
    return ImageResult(None, outcome, reason, job_id=job_id)
