"""Time and the invocation's time budget, injectable so that tests never really sleep.

Image creation is asynchronous: an event often arrives minutes before its image is
active. imsguard waits for it with exponential backoff and jitter, but never past
the function's remaining time minus a safety margin (kept for the final read and
PATCH, and for reporting).
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from imsguard.context import call_getter

if TYPE_CHECKING:
    import random

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 20.0
MAX_REMAINING_MS = 259_200_000  # FunctionGraph's longest timeout (72 h)


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


class Budget:
    """The invocation's time: ``end`` is when the platform stops the function (None: not
    known), ``deadline`` when waiting must stop (end minus the safety margin)."""

    def __init__(
        self, clock: Clock, deadline: float, end: float | None, rng: random.Random | None = None
    ):
        self.clock = clock
        self.deadline = deadline
        self.end = end
        self.rng = rng  # made when first needed: most invocations never wait

    @classmethod
    def for_invocation(
        cls,
        context: Any,
        clock: Clock,
        margin_s: float,
        max_wait_s: float,
        rng: random.Random | None = None,
    ) -> Budget:
        """From the context's remaining time; a context without one gets no waiting.
        Waiting stops at the end minus the margin, and after ``max_wait_s`` at most."""
        now = clock.monotonic()
        remaining_ms = call_getter(context, "getRemainingTimeInMilliSeconds")
        if isinstance(remaining_ms, bool) or not isinstance(remaining_ms, (int, float)):
            return cls(clock, now, None, rng)
        if math.isnan(remaining_ms):
            remaining_ms = 0
        end = now + min(max(remaining_ms, 0), MAX_REMAINING_MS) / 1000
        return cls(clock, min(end - margin_s, now + max_wait_s), end, rng)

    def remaining(self) -> float:
        """Seconds left for waiting."""
        return max(0.0, self.deadline - self.clock.monotonic())

    def retry_window(self) -> float | None:
        """Seconds retries may wait: to the deadline, or None (unbounded) when the context
        did not say how long the invocation may run."""
        return None if self.end is None else self.remaining()

    def time_left(self) -> float | None:
        """Seconds until the function is stopped, or None when the context did not say."""
        return None if self.end is None else self.end - self.clock.monotonic()

    def pause(self, attempt: int) -> bool:
        """Sleep before poll number ``attempt + 1``; False when no time is left for one.

        Delays grow 1, 2, 4 ... 20 s with "equal jitter" (half fixed, half random), so
        concurrent invocations do not poll in step; the last one is cut to the deadline.
        """
        if self.rng is None:
            import random

            self.rng = random.Random()
        ceiling = min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** min(attempt, 10))
        delay = min(ceiling / 2 + self.rng.uniform(0, ceiling / 2), self.remaining())
        if delay <= 0:
            return False
        self.clock.sleep(delay)
        return True


class RateLimiter:
    """At most ``rate`` requests a second, for all threads, with bursts of one second's
    worth: each request takes the next free slot (no busy waiting, exact with a fake clock)."""

    def __init__(self, rate: float, clock: Clock):
        self.rate = rate
        self.clock = clock
        self.burst = max(1.0, rate)
        self.next_slot = clock.monotonic() - (self.burst - 1) / rate  # a full bucket
        self.lock = threading.Lock()

    def acquire(self) -> None:
        with self.lock:
            now = self.clock.monotonic()
            slot = max(self.next_slot, now - (self.burst - 1) / self.rate)
            self.next_slot = slot + 1 / self.rate
        if slot > now:
            self.clock.sleep(slot - now)
