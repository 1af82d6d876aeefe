"""One object per handler call: what belongs to that invocation and to no other.

FunctionGraph may run several requests at once in one instance. Their clocks, time
budgets, credentials, progress callbacks and result sinks therefore live here, passed
down the path (app -> resolve / sweep), never in module globals; the container-cached
IMS client stays shared and holds nothing of any one invocation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from imsguard.logs import log

if TYPE_CHECKING:
    from imsguard.clock import Budget, Clock
    from imsguard.context import Credentials
    from imsguard.ims import ImsCalls, ImsGateway
    from imsguard.results import ImageResult
    from imsguard.settings import Settings

# Called with running counts ({"examined": 120, "planned": 3}, {"applied": 2}): the CLI
# draws a progress line with it.
Progress = Callable[[dict[str, int]], None]
# Consumes each result as soon as it exists (the JSON log line today; Config, SMN, Cloud
# Eye and OBS reporters later).
ResultSink = Callable[["ImageResult"], None]


def log_line(result: ImageResult) -> None:
    """The one sink every invocation has: the result as a JSON log line."""
    level = logging.ERROR if result.outcome == "error" else logging.INFO
    log(level, f"image {result.outcome}", **result.to_json())


def no_progress(counts: dict[str, int]) -> None:
    """Progress for an invocation nobody watches."""


class Invocation:
    """One handler call: its settings, credentials (the function's own: an org shard's
    gateway carries the member account's), clock and time budget, its view of the shared IMS
    gateway (``ims_calls``: its limits and retry count), its progress callback and its
    result sinks."""

    __slots__ = ("budget", "credentials", "gateway", "ims_calls", "progress", "settings", "sinks")

    def __init__(
        self,
        settings: Settings,
        credentials: Credentials,
        budget: Budget,
        gateway: ImsGateway,
        progress: Progress | None = None,
        sinks: list[ResultSink] | None = None,
    ):
        self.settings = settings
        self.credentials = credentials
        self.budget = budget
        self.gateway = gateway
        # From here on, this thread's IMS calls (and those of the threads it hands its
        # context to) keep to this invocation's time.
        self.ims_calls: ImsCalls = gateway.begin(
            budget.time_left, budget.retry_window, budget.clock
        )
        self.progress: Progress = progress or no_progress
        self.sinks: list[ResultSink] = [log_line] if sinks is None else list(sinks)

    @property
    def clock(self) -> Clock:
        return self.budget.clock

    @property
    def project_id(self) -> str:
        """The images' project (an org shard's: another account's)."""
        return self.gateway.project_id

    @property
    def home_project_id(self) -> str:
        """The function's own project, where its sinks publish with its ``credentials``."""
        return self.settings.project_id or self.gateway.project_id

    def publish(self, result: ImageResult) -> ImageResult:
        """Hand a finished result to every sink; returns it, for the report."""
        for sink in self.sinks:
            sink(result)
        return result

    def __repr__(self) -> str:  # never print the credentials
        return f"Invocation(project_id={self.project_id!r})"
