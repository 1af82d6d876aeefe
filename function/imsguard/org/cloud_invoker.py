"""Starting an org sweep's shards in the cloud: asynchronous invocations of this same
function (FunctionGraph retries a failed one), and asking FunctionGraph how one ended. Their
results come from the records the shards write (imsguard.org.store), not from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imsguard.fgs import invocation_status, invoke_async
from imsguard.permissions import START_SHARD, requires

if TYPE_CHECKING:
    from datetime import datetime

    from imsguard.clock import Budget
    from imsguard.context import Credentials
    from imsguard.settings import Settings


class CloudInvoker:
    """Invokes ``function_urn`` asynchronously with the function's own credentials (a
    shard assumes its account's agency itself: nothing secret is in a payload)."""

    def __init__(
        self, function_urn: str, settings: Settings, credentials: Credentials, budget: Budget
    ) -> None:
        self.function_urn = function_urn
        self._settings = settings
        self._credentials = credentials
        self._budget = budget

    @requires(START_SHARD)
    def start(self, event: dict[str, Any]) -> str:
        """Raises fgs.ContinueError when FunctionGraph does not take the invocation."""
        return invoke_async(
            self.function_urn,
            event,
            self._settings.region,
            self._settings.fgs_endpoint,
            self._settings.project_id or "",
            self._credentials,
            self._budget.time_left(),
        )

    def status(self, request_id: str, started: datetime) -> tuple[str, str] | None:
        """FunctionGraph's word on one invocation (imsguard.fgs.invocation_status)."""
        return invocation_status(
            self.function_urn,
            request_id,
            started,
            self._settings.region,
            self._settings.fgs_endpoint,
            self._settings.project_id or "",
            self._credentials,
            self._budget.time_left(),
        )
