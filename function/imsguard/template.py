"""template.yaml: everything a FunctionGraph deployment of imsguard consists of, checked.

FunctionGraph has no SAM-like format, so this one is ours, shaped like an AWS SAM or
Serverless Devs file. Every mistake is reported before any API call is made.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imsguard.context import LocalContext
from imsguard.events import IMAGE_TRACES, Sweep, parse_event
from imsguard.settings import SettingsError, load_settings

MEMORY_SIZES = (128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096)
# <service>:<resource type>:<trace name>, as FunctionGraph's CTS trigger takes operations.
CTS_OPERATION = re.compile(r"IMS:(ims|image):([A-Za-z]+)")
RATE = re.compile(r"([1-9][0-9]*)([mhd])")  # FunctionGraph timer rates: minutes, hours, days
# The IMS actions imsguard calls (fine-grained IAM action names; their exact spelling is
# unconfirmed in the reference, so the template states them for review).
IMS_ACTIONS = frozenset({"ims:images:list", "ims:images:update", "ims:images:get",
                         "ims:jobs:get", "ims:osVersions:list"})
CONTINUE_ACTION = "functiongraph:function:invokeAsync"


class TemplateError(ValueError):
    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"invalid template {source}: " + "; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Agency(_Strict):
    """An IAM agency trusted by FunctionGraph (op_svc_cff), with least privilege."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    permissions: list[str] = Field(min_length=1)

    @field_validator("permissions")
    @classmethod
    def _least_privilege(cls, actions: list[str]) -> list[str]:
        extra = sorted(set(actions) - IMS_ACTIONS - {CONTINUE_ACTION})
        if extra:
            raise ValueError(f"{extra} are not actions imsguard calls; it needs only "
                             f"{sorted(IMS_ACTIONS)} (and {CONTINUE_ACTION} to continue sweeps)")
        return actions


class Function(_Strict):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,59}$")
    description: str = Field(default="", max_length=512)
    runtime: Literal["Python3.10", "Python3.12"]
    handler: Literal["index.handler"]
    codeRoot: Literal["function"] = "function"
    memorySize: int
    timeout: int = Field(ge=3, le=259_200)
    agency: Agency
    settings: dict[str, str] = Field(default_factory=dict)

    @field_validator("memorySize")
    @classmethod
    def _memory(cls, value: int) -> int:
        if value not in MEMORY_SIZES:
            raise ValueError(f"{value} MB is not a FunctionGraph memory size {MEMORY_SIZES}")
        return value

    @field_validator("settings")
    @classmethod
    def _settings(cls, values: dict[str, str]) -> dict[str, str]:
        unknown = sorted(k for k in values if not k.startswith("IMSGUARD_"))
        if unknown:
            raise ValueError(f"{unknown} are not imsguard settings (IMSGUARD_*)")
        try:
            load_settings(LocalContext(user_data=values))
        except SettingsError as exc:
            raise ValueError(str(exc)) from None
        return values


class CtsTrigger(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    type: Literal["CTS"]
    status: Literal["ACTIVE", "DISABLED"] = "ACTIVE"
    operations: list[str] = Field(min_length=1)

    @field_validator("operations")
    @classmethod
    def _operations(cls, operations: list[str]) -> list[str]:
        for operation in operations:
            match = CTS_OPERATION.fullmatch(operation)
            if match is None:
                raise ValueError(f"{operation!r} is not IMS:<resource type>:<trace name>")
            if match.group(2) not in IMAGE_TRACES:
                raise ValueError(f"{operation!r}: imsguard handles only {sorted(IMAGE_TRACES)}")
        return operations


class TimerTrigger(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    type: Literal["TIMER"]
    status: Literal["ACTIVE", "DISABLED"] = "ACTIVE"
    schedule: str
    user_event: str = "{}"

    @field_validator("schedule")
    @classmethod
    def _rate(cls, value: str) -> str:
        match = RATE.fullmatch(value)
        limits = {"m": 60, "h": 24, "d": 30}  # FunctionGraph's timer rates
        if match is None or int(match.group(1)) > limits[match.group(2)]:
            raise ValueError(f"{value!r} is not a rate FunctionGraph accepts: 1-60m, 1-24h "
                             "or 1-30d")
        return value

    @field_validator("user_event")
    @classmethod
    def _sweep_options(cls, value: str) -> str:
        parsed = parse_event({"trigger_type": "TIMER", "user_event": value})
        if not isinstance(parsed, Sweep):
            raise ValueError(parsed.reason)
        return value


Trigger = Annotated[CtsTrigger | TimerTrigger, Field(discriminator="type")]


class Destination(_Strict):
    type: Literal["SMN", "OBS", "DIS", "FunctionGraph"]
    target: str = Field(min_length=1, max_length=256)  # topic URN, bucket, stream or function


class AsyncInvoke(_Strict):
    """FunctionGraph's asynchronous invocation settings (CTS triggers are asynchronous)."""

    max_retries: int = Field(default=1, ge=0, le=3)
    max_event_age_seconds: int = Field(default=3600, ge=1, le=86_400)
    on_failure: Destination | None = None


class Template(_Strict):
    templateVersion: Literal[1]
    function: Function
    triggers: list[Trigger] = Field(min_length=1)
    async_invoke: AsyncInvoke = Field(default_factory=AsyncInvoke)


def load_template(path: Path) -> Template:
    """Read and check a template; TemplateError lists every problem by field."""
    source = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TemplateError(source, [f"cannot read it: {exc}"]) from None
    try:
        template = Template.model_validate(data)
    except ValidationError as exc:
        raise TemplateError(source, [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)]) from None
    names = [t.name for t in template.triggers]
    if len(names) != len(set(names)):
        raise TemplateError(source, [f"triggers: two triggers share a name in {names}"])
    policy = template.function.settings.get("IMSGUARD_POLICY")
    code_root = Path(path).parent / template.function.codeRoot
    if policy and not Path(policy).is_absolute() and not (code_root / policy).is_file():
        raise TemplateError(source, [f"function.settings.IMSGUARD_POLICY: {policy} is not a "
                                     f"file under {code_root}"])
    return template

