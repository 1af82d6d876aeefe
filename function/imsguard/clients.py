"""Huawei Cloud SDK clients built one way for every service imsguard calls besides IMS: the
invocation's credentials with the project id (or, for a global service, the domain id)
always given, so the SDK never looks one up through an IAM endpoint of its own choosing; no
retries of the SDK's own (ours respect the invocation's time); the timeouts given."""

from __future__ import annotations

from typing import Any

from huaweicloudsdkcore.auth.credentials import BasicCredentials, GlobalCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig

from imsguard.context import Credentials


def client_builder(
    client_class: Any,
    credentials: Credentials,
    timeout: tuple[float, float],
    *,
    project_id: str | None = None,
    domain_id: str | None = None,
) -> Any:
    """The SDK's builder for ``client_class``, its credentials and HTTP settings set: the
    caller adds the endpoint (or region) and builds. ``domain_id``: global credentials."""
    basic: Any = (
        GlobalCredentials(credentials.access_key, credentials.secret_key, domain_id)
        if domain_id
        else BasicCredentials(credentials.access_key, credentials.secret_key, project_id)
    )
    if credentials.security_token:
        basic = basic.with_security_token(credentials.security_token)
    config = HttpConfig.get_default_config()
    config.timeout = timeout
    config.retry_times = 0
    return client_class.new_builder().with_credentials(basic).with_http_config(config)
