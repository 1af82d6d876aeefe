"""Doctor checks of access around the function (filled in below)."""

from __future__ import annotations

from imsguard.selfcheck import Check

ACCESS_CHECKS: tuple[type[Check], ...] = ()
