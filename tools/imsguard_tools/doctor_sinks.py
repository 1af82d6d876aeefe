"""Doctor checks of the report sinks and Config (filled in below)."""

from __future__ import annotations

from imsguard.selfcheck import Check

SINK_CHECKS: tuple[type[Check], ...] = ()
