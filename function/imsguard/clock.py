"""Time and the invocation's time budget, injectable so that tests never really sleep.

Image creation is asynchronous: an event often arrives minutes before its image is
active. imsguard waits for it with exponential backoff and jitter, but never past
the function's remaining time minus a safety margin (kept for the final read and
PATCH, and for reporting).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from imsguard.context import call_getter

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 20.0


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    def utcnow(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def utcnow(self) -> datetime:
        return datetime.now(timezone.utc)


@dataclass
class Budget:
    """The time this invocation may still spend waiting."""

    clock: Clock
    deadline: float
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def for_invocation(cls, context: Any, clock: Clock, margin_s: float,
                       rng: random.Random | None = None) -> Budget:
        """Deadline = now + the context's remaining time - margin (no getter: no waiting)."""
        remaining_ms = call_getter(context, "getRemainingTimeInMilliSeconds")
        if isinstance(remaining_ms, bool) or not isinstance(remaining_ms, (int, float)):
            remaining_ms = 0
        deadline = clock.monotonic() + remaining_ms / 1000 - margin_s
        return cls(clock, deadline, rng or random.Random())

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock.monotonic())

    def pause(self, attempt: int) -> bool:
        """Sleep before poll number ``attempt + 1``; False when no time is left for one.

        Delays grow 1, 2, 4 ... 20 s with "equal jitter" (half fixed, half random), so
        concurrent invocations do not poll in step; the last one is cut to the deadline.
        """
        ceiling = min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** attempt)
        delay = min(ceiling / 2 + self.rng.uniform(0, ceiling / 2), self.remaining())
        if delay <= 0:
            return False
        self.clock.sleep(delay)
        return True
