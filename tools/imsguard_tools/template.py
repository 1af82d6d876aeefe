"""template.yaml: everything a FunctionGraph deployment of imsguard consists of, checked.

FunctionGraph has no SAM-like format, so this one is ours, shaped like an AWS SAM or
Serverless Devs file. Every mistake is reported before any API call is made.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from imsguard.events import (
    CONFIG_IMAGE_TYPE,
    CONFIG_IMAGE_TYPES,
    CONFIG_RULE_PARAMETER,
    CONFIG_TYPE_PARAMETER,
    IMAGE_TRACES,
    OrgSweepRequest,
    Skip,
    SweepRequest,
    parse_event,
)
from imsguard.policy import PolicyError, line_of, load_policy, yaml_loader
from imsguard.settings import (
    CES_ENDPOINT,
    CONFIG_RULES,
    FGS_ENDPOINT,
    FUNCTION_URN,
    IMS_ENDPOINT,
    NOTIFY_ROUTES,
    NOTIFY_TOPIC_URN,
    OBS_ENDPOINT,
    PROJECT_ID,
    REGION,
    REPORT_BUCKET,
    SMN_ENDPOINT,
    STS_ENDPOINT,
    SettingsError,
    load_settings,
    parse_bool,
    setting_name_problem,
)
from imsguard_tools.iam import actions, all_permissions, needed, optional_actions
from imsguard_tools.local_context import LocalContext

MEMORY_SIZES = (128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096)
# <service>:<resource type>:<trace name>, as FunctionGraph's CTS trigger takes operations.
CTS_OPERATION = re.compile(r"IMS:([A-Za-z]+):([A-Za-z]+)")
RATE = re.compile(r"([1-9][0-9]*)([mhd])")  # FunctionGraph timer rates: minutes, hours, days
# FunctionGraph's trigger names: a CTS trigger's only letters (Chinese too), digits and
# underscores; a timer's starts with a letter.
CTS_TRIGGER_NAME = re.compile(r"[A-Za-z0-9_\u4e00-\u9fa5]{1,64}")
TIMER_TRIGGER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
MAX_USER_EVENT_BYTES = 2047  # a timer's user_event must stay under 2 KB
# Config rule (policy assignment) names: Config's API documents at most 64 characters and a
# "Name is illegal" error (RMS.00010046) without the character set; these are the ones safe
# in every tool (README, Assumptions).
CONFIG_RULE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
ConfigPeriod = Literal["One_Hour", "Three_Hours", "Six_Hours", "Twelve_Hours", "TwentyFour_Hours"]
CONFIG_PERIODS = get_args(ConfigPeriod)
REGION_ID = r"^[a-z]{2,}(-[a-z0-9]+)+$"  # as settings checks IMSGUARD_REGION
# Settings that name one region's resources (endpoints, topics, buckets, the project, the
# function): in a template with several regions they are set per region (region_settings),
# never copied from one region to another. IMSGUARD_REGION itself deploy sets per region.
REGIONAL_SETTINGS = frozenset(
    {
        IMS_ENDPOINT,
        FGS_ENDPOINT,
        SMN_ENDPOINT,
        CES_ENDPOINT,
        OBS_ENDPOINT,
        STS_ENDPOINT,
        REPORT_BUCKET,
        NOTIFY_TOPIC_URN,
        NOTIFY_ROUTES,
        PROJECT_ID,
        FUNCTION_URN,
    }
)


class TemplateError(ValueError):
    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"invalid template {source}: " + "; ".join(problems))


def _setting_name(name: str) -> str:
    problem = setting_name_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


# A settings key: reported by name and line when it is not a known IMSGUARD_* setting.
SettingName = Annotated[str, AfterValidator(_setting_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Agency(_Strict):
    """An IAM agency trusted by FunctionGraph (op_svc_cff), with least privilege: the
    actions the function's calls declare (``imsguard iam-policy`` prints its policy)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    permissions: list[str] | None = Field(default=None, min_length=1)


class Function(_Strict):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,59}$")
    description: str = Field(default="", max_length=512)
    runtime: Literal["Python3.10", "Python3.12"]
    handler: Literal["index.handler"]
    codeRoot: Literal["function"] = "function"
    memorySize: int
    timeout: int = Field(ge=3, le=259_200)
    agency: Agency
    settings: dict[SettingName, str] = Field(default_factory=dict)

    @field_validator("memorySize")
    @classmethod
    def _memory(cls, value: int) -> int:
        if value not in MEMORY_SIZES:
            raise ValueError(f"{value} MB is not a FunctionGraph memory size {MEMORY_SIZES}")
        return value

    @field_validator("settings")
    @classmethod
    def _settings(cls, values: dict[str, str]) -> dict[str, str]:
        return check_settings(values)


def check_settings(values: dict[str, str]) -> dict[str, str]:
    """The function's settings: known names, values as imsguard's own settings loader reads
    them. Only these values count: the developer's shell environment is never read (the
    function will not have it)."""
    problems = [p for p in map(setting_name_problem, sorted(values)) if p is not None]
    if problems:
        raise ValueError("; ".join(problems))
    try:
        load_settings(LocalContext(user_data=values), environ={})
    except SettingsError as exc:
        raise ValueError(str(exc)) from None
    return values


class CtsTriggerSpec(_Strict):
    """A CTS trigger to deploy (not imsguard.events.Trigger, the work an event asks for)."""

    name: str
    type: Literal["CTS"]
    status: str = "ACTIVE"
    operations: list[str] = Field(min_length=1)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        """FunctionGraph lets only some trigger types be disabled (TIMER, DDS, DMS, Kafka,
        LTS in its API reference), not CTS."""
        if value != "ACTIVE":
            raise ValueError(
                f"{value!r}: a CTS trigger is ACTIVE (FunctionGraph cannot disable "
                "one); to stop imsguard changing images set IMSGUARD_DRY_RUN: "
                '"true", or remove the trigger from the template'
            )
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CTS_TRIGGER_NAME.fullmatch(value):
            suggestion = re.sub(r"[^A-Za-z0-9_\u4e00-\u9fa5]", "_", value)[:64] or "imsguard"
            raise ValueError(
                f"{value!r}: FunctionGraph takes only letters, digits and "
                f"underscores in CTS trigger names, at most 64 (try "
                f"{suggestion!r})"
            )
        return value

    @field_validator("operations")
    @classmethod
    def _operations(cls, operations: list[str]) -> list[str]:
        for operation in operations:
            match = CTS_OPERATION.fullmatch(operation)
            if match is None:
                raise ValueError(f"{operation!r} is not IMS:<resource type>:<trace name>")
            resource_type, trace = match.groups()
            handled = IMAGE_TRACES.get(resource_type)
            if handled is None:
                raise ValueError(
                    f"{operation!r}: IMS records image operations under resource "
                    f"types {sorted(IMAGE_TRACES)}, not {resource_type!r}"
                )
            if trace not in handled:
                raise ValueError(
                    f"{operation!r}: imsguard handles only "
                    f"{sorted(handled)} on resource type {resource_type!r}"
                )
        if len(set(operations)) != len(operations):
            raise ValueError("an operation is listed twice")
        return operations


class TimerTriggerSpec(_Strict):
    """A timer trigger to deploy; its user_event must be sweep options the function takes."""

    name: str
    type: Literal["TIMER"]
    status: Literal["ACTIVE", "DISABLED"] = "ACTIVE"
    schedule: str
    user_event: str = "{}"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TIMER_TRIGGER_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r}: a TIMER trigger name starts with a letter, then "
                "letters, digits, _ or -, at most 64"
            )
        return value

    @field_validator("schedule")
    @classmethod
    def _rate(cls, value: str) -> str:
        match = RATE.fullmatch(value)
        limits = {"m": 60, "h": 24, "d": 30}  # FunctionGraph's timer rates
        if match is None or int(match.group(1)) > limits[match.group(2)]:
            raise ValueError(
                f"{value!r} is not a rate FunctionGraph accepts: 1-60m, 1-24h or 1-30d"
            )
        return value

    @field_validator("user_event")
    @classmethod
    def _sweep_options(cls, value: str) -> str:
        size = len(value.encode("utf-8"))
        if size > MAX_USER_EVENT_BYTES:
            raise ValueError(f"{size} bytes: FunctionGraph keeps a timer's user_event under 2 KB")
        parsed = parse_event({"trigger_type": "TIMER", "user_event": value})
        if isinstance(parsed, Skip):
            raise ValueError(parsed.reason)
        if not isinstance(parsed, (SweepRequest, OrgSweepRequest)):
            raise ValueError("a timer event must ask for a sweep")
        return value


TriggerSpec = Annotated[CtsTriggerSpec | TimerTriggerSpec, Field(discriminator="type")]


class Destination(_Strict):
    type: Literal["SMN", "OBS", "DIS", "FunctionGraph"]
    target: str = Field(min_length=1, max_length=256)  # topic URN, bucket, stream or function


class AsyncInvoke(_Strict):
    """FunctionGraph's asynchronous invocation settings (CTS triggers are asynchronous)."""

    max_retries: int = Field(default=1, ge=0, le=3)
    max_event_age_seconds: int = Field(default=3600, ge=1, le=86_400)
    on_failure: Destination | None = None


class ConfigRuleSpec(_Strict):
    """A Config custom rule (policy assignment) that invokes the function: on each change
    of an image (``resource``) or every ``period`` (the function then lists the images)."""

    name: str
    description: str = Field(default="", max_length=512)  # Config's limit
    rule: str | None = Field(default=None, min_length=1)  # one imsguard rule decides
    trigger: Literal["resource", "period"]
    period: ConfigPeriod | None = None
    # Config's type for IMS images (default events.CONFIG_IMAGE_TYPE): what a resource rule
    # selects, and what a period rule's states name (sent to the function as rule_parameter).
    resource_type: str | None = None
    agency: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # Config's, to invoke the function

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CONFIG_RULE_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r}: a Config rule name is 1-64 letters, digits, _ or - "
                "(Config's API allows at most 64 characters)"
            )
        return value

    @field_validator("resource_type")
    @classmethod
    def _resource_type(cls, value: str | None) -> str | None:
        if value is not None and value not in CONFIG_IMAGE_TYPES:
            raise ValueError(
                f"{value!r}: the function answers Config only for IMS images under the "
                f"types {sorted(CONFIG_IMAGE_TYPES)}; any other type would be ignored"
            )
        return value

    @model_validator(mode="after")
    def _trigger(self) -> ConfigRuleSpec:
        if self.trigger == "period" and self.period is None:
            raise ValueError(f"a period rule needs a period, one of {list(CONFIG_PERIODS)}")
        if self.trigger == "resource" and self.period is not None:
            raise ValueError(
                "period is only for trigger: period (Config takes either a period or a "
                "resource filter, not both)"
            )
        return self

    @property
    def image_type(self) -> str:
        return self.resource_type or CONFIG_IMAGE_TYPE

    def parameters(self) -> dict[str, dict[str, str]]:
        """Config's rule_parameter: the one imsguard rule that decides, if any, and for a
        period rule the type its states name (the one deploy found in the providers list)."""
        parameters = {CONFIG_RULE_PARAMETER: {"value": self.rule}} if self.rule else {}
        if self.trigger == "period":
            parameters[CONFIG_TYPE_PARAMETER] = {"value": self.image_type}
        return parameters


class Template(_Strict):
    templateVersion: Literal[1]
    function: Function
    triggers: list[TriggerSpec] = Field(min_length=1)
    async_invoke: AsyncInvoke = Field(default_factory=AsyncInvoke)
    config_rules: list[ConfigRuleSpec] = Field(default_factory=list)
    # Deploying to several regions (CTS is regional: a function hears only its own region's
    # image events). Empty: the one region of IMSGUARD_REGION, as before.
    regions: list[Annotated[str, Field(pattern=REGION_ID)]] = Field(default_factory=list)
    coordinator_region: str | None = None  # where the org coordinator runs (one of regions)
    region_settings: dict[str, dict[SettingName, str]] = Field(default_factory=dict)

    def settings_for(self, region: str) -> dict[str, str]:
        """The function's settings in ``region``: the shared ones, that region's own, and
        IMSGUARD_REGION set to it (only with ``regions``: a template without keeps its
        settings exactly as written)."""
        if not self.regions:
            return dict(self.function.settings)
        return {**self.function.settings, **self.region_settings.get(region, {}), REGION: region}


def load_template(path: Path) -> Template:
    """Read and check a template; TemplateError lists every problem by field and line."""
    data = _read(path)
    problems: list[tuple[tuple[Any, ...], str]] = []
    try:
        template = Template.model_validate(data)
    except ValidationError as exc:
        problems = [
            (_field(error["loc"]), error["msg"].removeprefix("Value error, "))
            for error in exc.errors(include_url=False)
        ]
    else:
        problems = _deployment_problems(template, Path(path).parent)
    if problems:
        with open(path, encoding="utf-8") as stream:  # again, for the lines of the problems
            node = yaml.compose(stream, Loader=yaml_loader())
        raise TemplateError(str(path), [_describe(loc, message, node) for loc, message in problems])
    return template


def template_settings(path: Path) -> dict[str, str]:
    """Only the function's settings of a template, checked: enough to know which optional
    calls the function makes, even while the rest of the template is being fixed."""
    data = _read(path)
    function = data.get("function") if isinstance(data, dict) else None
    settings = function.get("settings", {}) if isinstance(function, dict) else None
    if not isinstance(settings, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in settings.items()
    ):
        raise TemplateError(
            str(path), ["function.settings: a mapping of IMSGUARD_* names to text is needed"]
        )
    regional = data.get("region_settings") if isinstance(data, dict) else None
    if isinstance(regional, dict) and regional:  # every region sets the same keys
        region, own = next(iter(regional.items()))
        if isinstance(own, dict) and all(isinstance(v, str) for v in own.values()):
            settings = {**settings, **own, REGION: str(region)}
    try:
        return check_settings(settings)
    except ValueError as exc:
        raise TemplateError(str(path), [f"function.settings: {exc}"]) from None


def _read(path: Path) -> Any:
    """The YAML document, read strictly (the policy's loader: no duplicate keys, aliases)."""
    try:
        with open(path, encoding="utf-8") as stream:  # a stream: YAML errors name the file
            return yaml.load(stream, Loader=yaml_loader())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TemplateError(str(path), [f"cannot read it: {exc}"]) from None


def _field(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A field's place, without the trigger type pydantic adds to a trigger's fields, nor
    the "[key]" it adds to a mapping key's."""
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
    if len(loc) > 2 and loc[0] == "triggers" and loc[2] in ("CTS", "TIMER"):
        return (*loc[:2], *loc[3:])
    return tuple(loc)


def _describe(loc: tuple[Any, ...], message: str, node: Any) -> str:
    field = ".".join(str(part) for part in loc) or "template"
    line = f" (line {line_of(node, list(loc))})" if node is not None else ""
    return f"{field}{line}: {message}"


def _deployment_problems(template: Template, folder: Path) -> list[tuple[tuple[Any, ...], str]]:
    """What no single field shows: shared trigger names, a policy file that is not there,
    an agency allowed more or less than the function's calls need."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    names = [t.name for t in template.triggers]
    for index, name in enumerate(names):
        if name in names[:index]:
            problems.append((("triggers", index, "name"), f"two triggers share the name {name!r}"))
    function = template.function
    policy = function.settings.get("IMSGUARD_POLICY")
    code_root = folder / function.codeRoot
    if policy and not Path(policy).is_absolute() and not (code_root / policy).is_file():
        problems.append(
            (
                ("function", "settings", "IMSGUARD_POLICY"),
                f"{policy} is not a file under {code_root}",
            )
        )
    problems += _config_rule_problems(template, code_root / (policy or "policy.yaml"))
    problems += _region_problems(template)
    listed = function.agency.permissions
    if listed is not None:
        # One agency serves every region (IAM is global); every region sets the same keys.
        first = template.regions[0] if template.regions else ""
        used = needed(all_permissions(), template.settings_for(first))
        wanted = set(actions(used))
        extra = sorted(set(listed) - wanted - set(optional_actions(used)))
        missing = sorted(wanted - set(listed))
        if extra or missing:
            said = [
                f"{extra} are not actions imsguard's calls need with these settings"
                if extra
                else "",
                f"{missing} are needed and missing" if missing else "",
            ]
            problems.append(
                (
                    ("function", "agency", "permissions"),
                    f"{'; '.join(s for s in said if s)}: the agency needs exactly "
                    f"{sorted(wanted)} (`imsguard iam-policy` prints its policy)",
                )
            )
    return problems


def _switch_on(settings: Mapping[str, str], key: str) -> bool:
    """Whether a switch setting is on as the function reads it (yes, on, 1 ... too); a
    value that is no boolean is the settings check's to report."""
    try:
        return parse_bool(key, settings.get(key))
    except SettingsError:
        return False


def _config_rule_problems(template: Template, policy: Path) -> list[tuple[tuple[Any, ...], str]]:
    """Config rules the function could not answer: shared names, the function's Config mode
    off (it would ignore every evaluation), a ``rule`` the shipped policy does not have."""
    rules = template.config_rules
    problems: list[tuple[tuple[Any, ...], str]] = []
    names = [r.name for r in rules]
    for index, name in enumerate(names):
        if name in names[:index]:
            problems.append(
                (("config_rules", index, "name"), f"two Config rules share the name {name!r}")
            )
    settings = template.function.settings
    if rules and not _switch_on(settings, CONFIG_RULES):
        problems.append(
            (
                ("config_rules",),
                'needs IMSGUARD_CONFIG_RULES: "true" in function.settings, else the function '
                "ignores Config's evaluations",
            )
        )
    wanted = [(i, r.rule) for i, r in enumerate(rules) if r.rule]
    if wanted:
        try:
            have = [rule.name for rule in load_policy(policy).rules]
        except PolicyError:
            return problems  # the policy's own check reports why it does not load
        for index, rule in wanted:
            if rule not in have:
                problems.append(
                    (
                        ("config_rules", index, "rule"),
                        f"{rule!r} is not a rule of the policy {policy.name} "
                        f"(it has {', '.join(have) or 'no rules'})",
                    )
                )
    return problems


def _region_problems(template: Template) -> list[tuple[tuple[Any, ...], str]]:
    """A multi-region template that could deploy one region's resources into another: a
    regional setting shared by every region, region_settings that differ in their keys (the
    agency and the calls are the same everywhere, only the resources differ) or name another
    region; also Config rules and a failure destination, which are one region's each."""
    regions = template.regions
    problems: list[tuple[tuple[Any, ...], str]] = []
    for index, region in enumerate(regions):
        if region in regions[:index]:
            problems.append((("regions", index), f"{region} is listed twice"))
    shared = template.function.settings
    if regions and shared.get(REGION) and shared[REGION] not in regions:
        problems.append(
            (
                ("function", "settings", REGION),
                f"{shared[REGION]} is not one of regions {regions}: add it, or remove the "
                "setting (deploy sets IMSGUARD_REGION to each region it deploys to)",
            )
        )
    coordinator = template.coordinator_region
    if coordinator is not None and coordinator not in regions:
        problems.append((("coordinator_region",), f"{coordinator} is not one of regions {regions}"))
    keys: dict[str, set[str]] = {}
    for region, own in template.region_settings.items():
        if region not in regions:
            problems.append(
                (("region_settings", region), f"{region} is not one of regions {regions}")
            )
            continue
        for key, value in own.items():
            if key not in REGIONAL_SETTINGS:
                why = (
                    "deploy sets it to the region"
                    if key == REGION
                    else "it is no regional setting: set it in function.settings"
                )
                problems.append((("region_settings", region, key), f"not here: {why}"))
                continue
            other = [r for r in regions if r != region and _mentions(value, r)]
            if other:
                problems.append(
                    (("region_settings", region, key), f"names region {other[0]}, not {region}")
                )
        keys[region] = set(own)
    for region in dict.fromkeys(regions):  # each region's settings, as its function reads them
        try:
            check_settings(template.settings_for(region))
        except ValueError as exc:
            problems.append((("region_settings", region), str(exc)))
    if len(regions) < 2:
        return problems
    for key in sorted(REGIONAL_SETTINGS & set(shared)):
        problems.append(
            (
                ("function", "settings", key),
                f"names one region's resource, and regions lists {len(regions)}: set it "
                "for each region under region_settings",
            )
        )
    if template.region_settings:
        for region in regions:
            these, first = keys.get(region, set()), keys.get(regions[0], set())
            if these != first:
                problems.append(
                    (
                        ("region_settings", region),
                        f"sets {sorted(these)}, {regions[0]} sets {sorted(first)}: every "
                        "region sets the same "
                        "keys (one agency, the same calls; only the resources differ)",
                    )
                )
    if template.config_rules:
        problems.append(
            (
                ("config_rules",),
                "not with several regions: Config is global and rule names are the "
                "account's, so each region's function would claim the same rules",
            )
        )
    if template.async_invoke.on_failure is not None:
        problems.append(
            (
                ("async_invoke", "on_failure"),
                "not with several regions: a failure destination is one region's",
            )
        )
    return problems


def _mentions(value: str, region: str) -> bool:
    """Whether a setting's value names ``region`` (in a URL or a URN), as a whole id."""
    return re.search(rf"(?<![a-z0-9-]){re.escape(region)}(?![a-z0-9-])", value) is not None
