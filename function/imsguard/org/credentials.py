"""A member account's temporary credentials: its agency, assumed through STS.

Each shard assumes ``IMSGUARD_ORG_AGENCY`` in its account itself, for the shortest duration
that fits its budget, and refreshes before expiry: credentials never travel in a payload, a
report or a log (each new secret is registered with logs.keep_secret at once).
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from huaweicloudsdksts.v1 import AssumeAgencyReqBody, AssumeAgencyRequest, StsClient

from imsguard.clock import Budget, Clock
from imsguard.context import Credentials
from imsguard.logs import RedactingFilter, keep_secret
from imsguard.org.calls import AccessDenied, OrgError, call, client
from imsguard.permissions import ASSUME_AGENCY, requires

logging.getLogger("HuaweiCloud-SDK-StsClient").addHandler(logging.NullHandler())
logging.getLogger("HuaweiCloud-SDK-StsClient").addFilter(RedactingFilter())

MIN_DURATION_S = 900  # AssumeAgency's duration_seconds: 900 to 43200
MAX_DURATION_S = 43_200
MAX_CHAINED_S = 3_600  # "cannot exceed 3600 seconds when the X-Security-Token header is carried"
REFRESH_BEFORE_S = 300  # refresh when less than 5 minutes remain


class AssumedAgency(NamedTuple):
    credentials: Credentials
    expiration: datetime

    def __repr__(self) -> str:
        return f"AssumedAgency(<redacted>, expiration={self.expiration.isoformat()})"


def agency_urn(account_id: str, agency: str) -> str:
    """The URN STS takes for an agency: ``iam::<account id>:agency:<name>``."""
    return f"iam::{account_id}:agency:{agency}"


def duration_for(budget_s: float, chained: bool) -> int:
    """The shortest duration that covers ``budget_s`` seconds, within what STS allows (at
    most an hour when the caller's own credentials are temporary, as a function's are)."""
    most = MAX_CHAINED_S if chained else MAX_DURATION_S
    return max(MIN_DURATION_S, min(most, math.ceil(max(budget_s, 0))))


@requires(ASSUME_AGENCY)
def assume(
    urn: str,
    session_name: str,
    duration_s: int,
    caller: Credentials,
    project_id: str,
    endpoint: str,
    budget: Budget,
) -> AssumedAgency:
    """Assume the agency ``urn`` as ``caller`` (the function's credentials, in its project
    ``project_id``) through the STS ``endpoint``; a missing or untrusting agency is an
    AccessDenied that names it."""
    sts = client(StsClient, endpoint, caller, project_id=project_id)
    body = AssumeAgencyReqBody(
        agency_urn=urn, agency_session_name=session_name, duration_seconds=duration_s
    )
    try:
        answer = call(
            "STS",
            f"assume_agency for {urn}",
            sts.assume_agency,
            AssumeAgencyRequest(body=body),
            budget,
        )
    except OrgError as exc:
        if isinstance(exc, AccessDenied) or exc.code == "STS5.1106":
            raise AccessDenied(
                f"{exc} (does the agency exist in that account, and does it trust this "
                "function's account?)",
                exc.status,
                exc.code,
            ) from None
        raise
    given = answer.credentials
    keep_secret(given.access_key_id, given.secret_access_key, given.security_token)
    expiration = given.expiration
    if isinstance(expiration, str):  # the SDK leaves a time it cannot parse as text
        expiration = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=timezone.utc)
    return AssumedAgency(
        Credentials(given.access_key_id, given.secret_access_key, given.security_token),
        expiration,
    )


class AgencyCredentials:
    """One account's assumed agency, assumed when first asked for and again whenever less
    than REFRESH_BEFORE_S remain; safe to share between a shard's threads."""

    def __init__(
        self,
        account_id: str,
        agency: str,
        session_name: str,
        duration_s: int,
        caller: Credentials,
        project_id: str,
        endpoint: str,
        budget: Budget,
        clock: Clock,
    ) -> None:
        self.urn = agency_urn(account_id, agency)
        self.session_name = session_name
        self.duration_s = duration_s
        self._caller = caller
        self._project_id = project_id
        self._endpoint = endpoint
        self._budget = budget
        self._clock = clock
        self._current: AssumedAgency | None = None
        self._lock = threading.Lock()
        self.assumed = 0  # how often STS was asked

    def __repr__(self) -> str:
        return f"AgencyCredentials({self.urn}, <redacted>)"

    def get(self) -> Credentials:
        """Credentials with at least REFRESH_BEFORE_S left (assumed anew when needed)."""
        with self._lock:
            now = self._clock.utcnow()
            if self._current is None or self._current.expiration - now < timedelta(
                seconds=REFRESH_BEFORE_S
            ):
                self._current = assume(
                    self.urn,
                    self.session_name,
                    self.duration_s,
                    self._caller,
                    self._project_id,
                    self._endpoint,
                    self._budget,
                )
                self.assumed += 1
            return self._current.credentials
