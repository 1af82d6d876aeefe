"""``imsguard doctor --fake``: every check against the fakes, the template deployed into the
fake FunctionGraph first, so all are "ok"; ``refuse`` makes one check's call refused (403)
so its "fail" path shows.

``FakeCloud`` holds the fakes (the fake IMS, which is also the fake FunctionGraph, serves
every other one on its ``responses`` mock; OBS is a loopback server) and the endpoint
settings that point the probe at them. A check class of the tools may define
``fake_setup(cloud)`` (add the fakes it reads) and ``refuse(cloud)`` (refuse its call); the
runtime's IMS checks are refused here (``INSIDE_REFUSALS``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from imsguard.context import Credentials
from imsguard.selfcheck import Check
from imsguard_tools.fake_ims import FakeIms
from imsguard_tools.fake_obs import FakeObs

PROJECT_ID = "0" * 31 + "d"
DOMAIN_ID = "0" * 31 + "e"
CREDENTIALS = Credentials("FAKE-AK", "FAKE-SK", "FAKE-TOKEN")
BUCKET = "imsguard-reports"


@dataclass
class FakeCloud:
    """The fakes of one region, and the IMSGUARD_*_ENDPOINT settings that reach them."""

    region: str
    ims: FakeIms
    obs: FakeObs
    obs_endpoint: str = ""
    endpoints: dict[str, str] = field(default_factory=dict)
    others: dict[str, Any] = field(default_factory=dict)  # by name: the checks' own fakes
    template: Any = None  # what is deployed: a check's fake_setup adds the resources it names

    def attach(self, name: str, fake: Any) -> Any:
        """Serve ``fake`` (a FakeHttpApi) beside the others; returns it."""
        self.others[name] = fake
        self.ims.attach(fake)
        return fake

    def writes(self) -> list[str]:
        """Every call that would change something, in any fake (a check must make none)."""
        fakes = [self.ims, *self.others.values()]
        found = [
            f"{type(f).__name__} {c.method} {c.path}"
            for f in fakes
            for c in getattr(f, "calls", [])
            if c.method not in ("GET", "HEAD")
        ]
        found += [
            f"FakeObs {c.method} {c.key}" for c in self.obs.calls if c.method not in ("GET", "HEAD")
        ]
        return found


def _ims_refusal(path: str) -> Callable[[FakeCloud], None]:
    return lambda cloud: cloud.ims.refuse("GET", path, 403, "IMS.0003")


# The runtime's checks, refused by the call each makes (IMS's own 403 code: assumption).
INSIDE_REFUSALS: dict[str, Callable[[FakeCloud], None]] = {
    "ims-list": _ims_refusal(r"^/v2/cloudimages$"),
    "ims-job-api": _ims_refusal(r"^/v1/cloudimages/job/"),
    "uefi-os-list": _ims_refusal(r"^/v1/cloudimages/os_version"),
}


def refusal(check: type[Check]) -> Callable[[FakeCloud], None] | None:
    """How to make ``check``'s call refused in the fakes (None: it makes no call)."""
    own = getattr(check, "refuse", None)
    return own if own is not None else INSIDE_REFUSALS.get(check.name)


@contextmanager
def fake_cloud(region: str, template: Any, checks: list[type[Check]]) -> Iterator[FakeCloud]:
    """The fakes, serving, with the template deployed into the fake FunctionGraph."""
    from imsguard_tools.deploy import ConfigRules, Deployer, build_config_client

    ims = FakeIms(project_id=PROJECT_ID, region=region)
    ims.add_fleet(3, seed=7)
    obs = FakeObs((BUCKET,))
    with ExitStack() as stack:
        obs_endpoint = stack.enter_context(obs.serve())
        cloud = FakeCloud(region, ims, obs, obs_endpoint, template=template)
        cloud.endpoints.update(
            IMSGUARD_IMS_ENDPOINT=ims.endpoint,
            IMSGUARD_FGS_ENDPOINT=ims.fgs_endpoint,
            IMSGUARD_OBS_ENDPOINT=obs_endpoint,
            IMSGUARD_DOMAIN_ID=DOMAIN_ID,  # the fake account (Config and IAM are global)
        )
        for check in checks:
            setup = getattr(check, "fake_setup", None)
            if setup is not None:
                setup(cloud)
        stack.enter_context(ims)
        if template is not None:  # deploy it into the fake, as `imsguard deploy` would
            from imsguard.fgs import client_for

            client = client_for(region, ims.fgs_endpoint, PROJECT_ID, CREDENTIALS, (5, 30))
            config = cloud.others.get("config")  # its Config rules too, into the fake Config
            rules = None
            if config is not None and template.config_rules:
                config_client = build_config_client(DOMAIN_ID, config.endpoint, CREDENTIALS)
                rules = ConfigRules(config_client)
            deployer = Deployer(client, PROJECT_ID, region, template, None, rules)
            deployer.apply(deployer.plan())
        ims.reset_calls()
        for fake in cloud.others.values():
            if hasattr(fake, "reset_calls"):
                fake.reset_calls()
        obs.calls.clear()
        yield cloud
