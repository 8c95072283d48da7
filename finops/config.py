"""Load and validate `finops.yaml`, the organisation's settings.

Where each setting comes from, strongest first: a command-line flag, an environment
variable (`FINOPS_CONFIG`, `FINOPS_DB`), `finops.yaml`, then the built-in default.
`finops.yaml` is looked up in `--config DIR`, else `$FINOPS_CONFIG`, else the current
folder; without one, the defaults below apply. Relative paths in the file are relative
to the folder that holds it. Errors name the file and the key.
"""

from __future__ import annotations

import os
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pycountry
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from finops.errors import ConfigError

CONFIG_FILE = "finops.yaml"
DEFAULT_DB = Path(".finops") / "warehouse.duckdb"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WarehouseSettings(_Section):
    path: Path = DEFAULT_DB
    lock_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """How long an opener waits for another process to release the file."""
    memory_limit: Annotated[
        str, Field(pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
    ] = "1GB"
    """DuckDB's memory cap per process; larger work spills to disk instead of growing."""


class SharedCostScope(_Section):
    """Which cost rows are shared: every criterion given must match (any value of a list)."""

    accounts: tuple[str, ...] = ()
    """Sub-account (else billing account) ids, e.g. a platform account."""
    tags: dict[str, str] = {}
    """Tag key -> value, e.g. {shared: "true"}; values compared as given."""
    clusters: tuple[str, ...] = ()
    """Clusters, by the first of `gpu.cluster_tag_keys` a row carries."""
    services: tuple[str, ...] = ()
    charge_categories: tuple[str, ...] = ()
    """FOCUS ChargeCategory values, e.g. [Tax, Credit]."""
    unallocated: bool = False
    """Only cost that direct attribution left unallocated."""

    def is_empty(self) -> bool:
        return not (
            self.accounts
            or self.tags
            or self.clusters
            or self.services
            or self.charge_categories
            or self.unallocated
        )


class SharedCostRule(_Section):
    """One rule of `allocation.shared`: a scope of shared cost and how it is split."""

    name: Annotated[str, Field(min_length=1)]
    scope: SharedCostScope
    split: Literal["even", "proportional", "fixed", "gpu-hours"]
    teams: tuple[str, ...] = ()
    """Who shares it (even, proportional): default every team in `teams` (even) or every
    team with direct cost that month (proportional)."""
    percentages: dict[str, Annotated[float, Field(gt=0, le=100)]] = {}
    """fixed: team -> percent, adding up to 100."""

    @model_validator(mode="after")
    def _complete(self) -> SharedCostRule:
        if self.scope.is_empty():
            raise ValueError(f"rule {self.name!r}: the scope names no cost (accounts, tags, ...)")
        if self.split == "fixed":
            total = sum(self.percentages.values())
            if abs(total - 100) > 1e-9:
                raise ValueError(f"rule {self.name!r}: percentages add up to {total:g}, not 100")
        elif self.percentages:
            raise ValueError(f"rule {self.name!r}: percentages apply to split: fixed only")
        if self.split == "gpu-hours" and not self.scope.clusters:
            raise ValueError(
                f"rule {self.name!r}: split gpu-hours needs scope.clusters (whose GPU-hours weigh)"
            )
        return self


class AllocationSettings(_Section):
    tag_key: str = "team"
    tag_aliases: tuple[str, ...] = ()
    """Other keys that mean the same as `tag_key` (e.g. Team, owner), tried in order."""
    normalise_values: bool = True
    """Treat `ML-Platform`, `ml_platform` and ` ml-platform ` as the same team."""
    unallocated_label: str = "(unallocated)"
    cost_basis: Literal["billed", "effective"] = "effective"
    """Charge-back on EffectiveCost (amortised: commitments spread over the usage they
    cover, the FinOps norm) or BilledCost (as invoiced)."""

    accounts: dict[str, str] = {}
    """Account id -> team, for cost without the allocation tag (the tag wins where present)."""
    namespace_teams: dict[str, str] = {}
    """Kubernetes namespace -> team, for GPU-hours on shared clusters (default: a namespace
    named after a team or one of its aliases is that team's)."""
    shared: tuple[SharedCostRule, ...] = ()
    """Rules for shared cost, tried in order: the first whose scope matches a cost row
    splits it among teams (even, proportional to direct cost, fixed percentages, GPU-hours)."""
    idle: Literal["separate", "share"] = "separate"
    """GPU-hours splits: the idle GPU-hours' share of a cluster's cost is its own `(idle)`
    row (separate) or goes to the teams in proportion to their busy GPU-hours (share)."""
    idle_label: str = "(idle)"

    @property
    def tag_keys(self) -> tuple[str, ...]:
        return (self.tag_key, *self.tag_aliases)


class Team(_Section):
    name: str
    cost_centre: str | None = None
    business_unit: str | None = None
    aliases: tuple[str, ...] = ()


class Holidays(_Section):
    country: str | None = None
    subdivision: str | None = None
    dates: tuple[date, ...] = ()


class IngestSettings(_Section):
    source_priority: tuple[str, ...] = ()
    """Which source wins when two cover the same billing account and period (first wins)."""


class GpuSettings(_Section):
    idle_threshold_pct: Annotated[float, Field(ge=0, le=100)] = 5.0
    """A GPU-hour whose utilisation (GR_ENGINE_ACTIVE x 100 where present, else GPU_UTIL)
    averages under this is idle: the one definition the dashboards and policies share."""
    cluster_tag_keys: tuple[str, ...] = (
        "cluster",
        "eks:cluster-name",
        "aws:eks:cluster-name",
        "goog-k8s-cluster-name",
    )
    """Billing tags that name an instance's cluster, tried in order."""
    join_keys: tuple[Literal["instance_id", "private_dns", "node_name", "resource_name"], ...] = (
        "instance_id",
        "private_dns",
        "node_name",
        "resource_name",
    )
    """How a GPU sample finds its instance, tried in order: its own instance id label, the
    inventory's private DNS name or k8s node name equal to its host, or the billed
    ResourceName equal to its host."""
    join_keys_by_source: dict[
        str, tuple[Literal["instance_id", "private_dns", "node_name", "resource_name"], ...]
    ] = {}
    """Another order for one GPU source (by source name), e.g. nvidia-smi: [resource_name]."""


class PolicySettings(_Section):
    folder: str = "policies"
    """The policy pack: a folder of policy files, relative to finops.yaml."""
    reopen_factor: Annotated[float, Field(ge=1)] = 1.5
    """A dismissed recommendation re-opens only when its savings grow past this factor."""


class ScorecardSettings(_Section):
    """The balanced scorecard: DORA bands, ROI hurdle rate, and how delivery events are read."""

    dora_bands: Literal["2021", "2023", "2024"] = "2024"
    """Which State of DevOps report's performance table bands the DORA figures."""
    hurdle_rate: Annotated[float, Field(ge=0)] = 0.15
    """Annual return an optimisation project must reach (0.15 = 15% a year)."""
    production_environments: tuple[str, ...] = ("prod", "production")
    """Deployments to these environments (any casing) are production deployments."""
    service_teams: dict[str, str] = {}
    """The team of each service or model, for events that do not name their team."""
    project_tag_key: str = "project"
    """The cost tag naming the model or project that ROI charges the cost to."""
    regression_tolerance: Annotated[float, Field(ge=0)] = 0.01
    """A model version regresses when a score worsens by more than this (absolute)."""
    adopted_stage: str = "production"
    """The framework stage gate a project must pass to count as having adopted it."""


class Budget(_Section):
    """One budget: a team's or a project's spend per month or per quarter."""

    team: str | None = None
    project: str | None = None
    """A project by its tag (`budgets.project_tag_key`)."""
    monthly: Annotated[Decimal, Field(gt=0)] | None = None
    quarterly: Annotated[Decimal, Field(gt=0)] | None = None
    """In the reporting currency (`fx.reporting_currency`)."""

    @model_validator(mode="after")
    def _one_owner_one_amount(self) -> Budget:
        if (self.team is None) == (self.project is None):
            raise ValueError("name exactly one of team or project")
        if (self.monthly is None) == (self.quarterly is None):
            raise ValueError("give exactly one of monthly or quarterly")
        return self

    @property
    def owner(self) -> str:
        return f"team {self.team}" if self.team else f"project {self.project}"


class BudgetSettings(_Section):
    project_tag_key: str = "project"
    warn_at_pct: Annotated[float, Field(gt=0)] = 90.0
    """Warn when the period's forecast reaches this share of the budget; over 100% it is an
    overrun alert."""
    items: tuple[Budget, ...] = ()


class FxRate(_Section):
    from_currency: str = Field(alias="from")
    to_currency: str = Field(alias="to")
    date: date
    rate: Annotated[Decimal, Field(gt=0)]
    """One unit of `from` costs `rate` units of `to`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("from_currency", "to_currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        return _iso_currency(value)


class FxSettings(_Section):
    """Converting multi-currency bills to one reporting currency.

    A billing month uses the newest rate dated on or before its last day. Rates come from
    `rates` here and the CSV `rates_file` (columns from,to,date,rate); `finops fx load`
    stores them in the warehouse's `fx_rates`, which every figure reads.
    """

    reporting_currency: str | None = None
    """Default: the top-level `currency`."""
    rates: tuple[FxRate, ...] = ()
    rates_file: Path | None = None
    """Relative to finops.yaml's folder."""

    @field_validator("reporting_currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        return None if value is None else _iso_currency(value)


def _iso_currency(value: str) -> str:
    if pycountry.currencies.get(alpha_3=value) is None:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return value


class KpiTarget(_Section):
    """Green at or beyond `green`, amber up to `amber`, red past it. Whether higher is better
    follows from the two: green above amber means higher is better."""

    green: float
    amber: float


class KpiTargets(_Section):
    allocation_coverage_pct: KpiTarget = KpiTarget(green=90, amber=80)
    untagged_pct: KpiTarget = KpiTarget(green=5, amber=10)
    spot_coverage_pct: KpiTarget = KpiTarget(green=20, amber=10)
    commitment_coverage_pct: KpiTarget = KpiTarget(green=60, amber=40)
    commitment_utilisation_pct: KpiTarget = KpiTarget(green=95, amber=80)
    effective_savings_rate_pct: KpiTarget = KpiTarget(green=20, amber=10)
    idle_gpu_cost_pct: KpiTarget = KpiTarget(green=10, amber=25)
    gpu_utilisation_pct: KpiTarget = KpiTarget(green=60, amber=40)
    forecast_variance_pct: KpiTarget = KpiTarget(green=5, amber=15)
    """Compared as an absolute value: 8% over and 8% under are both amber."""
    cost_per_gpu_hour: KpiTarget | None = None
    """No default: what a GPU-hour should cost depends on the fleet."""


class ActionSettings(_Section):
    """How finops acts on recommendations: the kill switch, safety limits, warnings, audit."""

    enabled: bool = True
    """False turns every action into a dry run (so does the environment's FINOPS_ACTIONS=off)."""
    protect_tag: str = "finops:protect"
    protect_value: str = "true"
    """A resource whose tag `protect_tag` equals `protect_value` (any case) is never touched."""
    protect_label: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")] = "finops-protect"
    """The same for Google Cloud, whose label keys cannot hold ':'."""
    warn_lead_time: timedelta = timedelta(hours=1)
    """How long before a scheduled stop its warning goes out (time to snooze it)."""
    max_resources_per_run: Annotated[int, Field(ge=0)] = 20
    max_scope_percent: Annotated[float, Field(ge=0, le=100)] = 50.0
    """Blast radius: a run that would act on more resources, or on more of one policy's
    scope, acts on nothing and says so."""
    max_sample_age: timedelta = timedelta(minutes=30)
    """GPU samples older than this cannot vouch that a cluster is still idle: skip it."""
    recheck_window: timedelta = timedelta(minutes=15)
    """The newest samples re-read before acting: those this close to the newest one."""
    act_without_samples: bool = False
    """Act on a resource with no GPU samples at all (a CPU-only off-hours stop); off by default."""
    webhook_url: SecretStr | None = None
    """Slack-compatible incoming webhook for warnings; may be `${ENV_VAR}` (read when sent)."""
    audit_mirror: Path | None = None
    """JSON-lines copy of the audit log (default: audit.jsonl beside the warehouse file)."""
    retry_attempts: Annotated[int, Field(ge=1)] = 5
    retry_backoff_s: Annotated[float, Field(ge=0)] = 1.0
    """A throttled or unavailable cloud call is tried this many times, waiting backoff x 2^n."""
    operation_timeout_s: Annotated[float, Field(gt=0)] = 600.0
    """How long to wait for a Google Cloud operation to finish."""

    @field_validator("warn_lead_time", "max_sample_age", "recheck_window", mode="before")
    @classmethod
    def _short_duration(cls, value: Any) -> Any:
        """Durations may be written `90s`, `30m`, `1h` or `2d` as well as ISO 8601."""
        if isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", value)):
            unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
            return timedelta(**{unit: int(match.group(1))})
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_is_a_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(
            r"^(https?://\S+|\$\{\w+\})$", value.get_secret_value()
        ):
            raise ValueError("expected an http(s) URL or an ${ENV_VAR} reference")
        return value


Role = Literal["finance", "lead", "admin"]


class AccessGrant(_Section):
    """What one user or group may see and do in the app."""

    role: Role
    """finance: every team, read-only; lead: only `teams`, may accept/snooze/dismiss their
    recommendations; admin: every team, and may change anything."""
    teams: tuple[str, ...] = ()
    """The teams a lead sees (names from `teams`)."""

    @model_validator(mode="after")
    def _lead_has_teams(self) -> AccessGrant:
        if self.role == "lead" and not self.teams:
            raise ValueError("a lead needs `teams`: the teams whose figures they see")
        return self


class AccessSettings(_Section):
    """Who sees what in the app. No secrets here: OIDC client secrets live in Streamlit's
    secrets file (`.streamlit/secrets.toml`, outside the repository)."""

    mode: Literal["local", "oidc", "header"] = "local"
    """local: one user with the admin role (the app says so); oidc: `st.login` with the
    provider in Streamlit's secrets; header: an identity-aware proxy's trusted header."""
    header: str = "X-Forwarded-Email"
    """header mode: the request header that names the user (set only by the proxy)."""
    groups_header: str | None = None
    """header mode: a header listing the user's groups, comma-separated (optional)."""
    groups_claim: str = "groups"
    """oidc mode: the ID token claim listing the user's groups."""
    users: dict[str, AccessGrant] = {}
    """User (e-mail or name, compared case-insensitively) -> role and teams."""
    groups: dict[str, AccessGrant] = {}
    """Group -> role and teams; a user in several gets the widest role and every team."""


class Config(_Section):
    organisation: str = "My organisation"
    currency: str = "USD"
    fiscal_year_start_month: Annotated[int, Field(ge=1, le=12)] = 1
    fiscal_year_label: Literal["start", "end"] = "start"
    """Name a fiscal year by the calendar year it starts in, or the one it ends in."""
    time_zone: str = "UTC"
    holidays: Holidays = Holidays()
    warehouse: WarehouseSettings = WarehouseSettings()
    allocation: AllocationSettings = AllocationSettings()
    teams: tuple[Team, ...] = ()
    ingest: IngestSettings = IngestSettings()
    gpu: GpuSettings = GpuSettings()
    policies: PolicySettings = PolicySettings()

    scorecard: ScorecardSettings = ScorecardSettings()

    budgets: BudgetSettings = BudgetSettings()
    fx: FxSettings = FxSettings()
    kpi_targets: KpiTargets = KpiTargets()

    actions: ActionSettings = ActionSettings()

    access: AccessSettings = AccessSettings()

    source_file: Path | None = Field(default=None, exclude=True)
    """The finops.yaml these settings came from; None when only defaults apply."""

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if pycountry.currencies.get(alpha_3=value) is None:
            raise ValueError(f"{value!r} is not an ISO 4217 currency code")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone") from exc
        return value

    @model_validator(mode="after")
    def _teams_named_are_teams(self) -> Config:
        """Every team a rule, mapping or budget names is one of `teams` (when teams are set)."""
        known = {team.name for team in self.teams}
        if not known:
            return self
        named: list[tuple[str, str]] = [
            (f"allocation.accounts.{account}", team)
            for account, team in self.allocation.accounts.items()
        ]
        named += [
            (f"allocation.namespace_teams.{ns}", team)
            for ns, team in self.allocation.namespace_teams.items()
        ]
        for index, rule in enumerate(self.allocation.shared):
            named += [(f"allocation.shared.{index}.teams", team) for team in rule.teams]
            named += [(f"allocation.shared.{index}.percentages", t) for t in rule.percentages]
        named += [
            (f"budgets.items.{index}.team", budget.team)
            for index, budget in enumerate(self.budgets.items)
            if budget.team is not None
        ]
        unknown = [f"{key}: {team!r}" for key, team in named if team not in known]
        if unknown:
            raise ValueError(
                "not a team in `teams`: "
                + "; ".join(unknown)
                + f" (teams: {', '.join(sorted(known))})"
            )
        return self

    @property
    def reporting_currency(self) -> str:
        return self.fx.reporting_currency or self.currency

    @property
    def base_dir(self) -> Path:
        return self.source_file.parent if self.source_file else Path.cwd()

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def find_config_file(config_dir: Path | None = None) -> Path | None:
    """The finops.yaml to use: `--config DIR` > `$FINOPS_CONFIG` > ./finops.yaml > none."""
    chosen = config_dir or (
        Path(os.environ["FINOPS_CONFIG"]) if "FINOPS_CONFIG" in os.environ else None
    )
    if chosen is not None:
        candidate = chosen if chosen.suffix in {".yaml", ".yml"} else chosen / CONFIG_FILE
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: no such configuration file")
        return candidate
    local = Path.cwd() / CONFIG_FILE
    return local if local.is_file() else None


def load_config(config_dir: Path | None = None) -> Config:
    """Read and validate finops.yaml (or return the defaults when there is none)."""
    path = find_config_file(config_dir)
    if path is None:
        return Config()
    return validate(Config, {**read_yaml_mapping(path), "source_file": path.resolve()}, path)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse a YAML file that must hold a mapping, with errors that name the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, found {type(data).__name__}")
    return data


def validate(model: type[BaseModel], data: dict[str, Any], path: Path) -> Any:
    """Validate `data` against `model`, turning pydantic's errors into one ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, path)) from None


def describe_validation_error(exc: ValidationError, path: Path) -> str:
    lines = [f"{path}: {exc.error_count()} invalid setting(s)"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = (
            "unknown key (check its spelling)"
            if error["type"] == "extra_forbidden"
            else error["msg"]
        )
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def resolve_db_path(config: Config, db_flag: Path | None = None) -> Path:
    """The warehouse file: `--db` > `$FINOPS_DB` > finops.yaml's warehouse.path > default."""
    if db_flag is not None:
        return db_flag
    if os.environ.get("FINOPS_DB"):
        return Path(os.environ["FINOPS_DB"])
    path = config.warehouse.path
    return path if path.is_absolute() else config.base_dir / path


SourceKind = Literal[
    "focus",
    "aws-cur",
    "gcp-billing",
    "aws-ce",
    "aws-inventory",
    "billing-inventory",
    "dcgm",
    "openmetrics",
    "prometheus",
    "nvidia-smi",
    "gpu-spool",
    "events",
]


class SourceManifest(_Section):
    """One data source of this deployment (an entry of collectors/*.yaml)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
    """The source name: the slice of the warehouse this source owns."""
    kind: SourceKind
    uri: str | None = None
    """Path, glob, s3:// URI or URL; relative paths are relative to finops.yaml's folder."""
    schedule: str | None = None
    """When the scheduler refreshes it: a cron expression in finops.yaml's time zone."""
    enabled: bool = True
    aws_profile: str | None = None
    """A named AWS profile (credentials stay in the SDK's own files, never here)."""
    force: bool = False
    """Billing: accept a delivery covering fewer days than the data it replaces."""
    export_name: str | None = None
    """aws-cur: the export to read where the prefix holds several."""
    table: str | None = None
    """gcp-billing: the BigQuery export table PROJECT.DATASET.TABLE (instead of `uri` files)."""
    months: tuple[str, ...] = ()
    """gcp-billing: invoice months YYYYMM to read from the table (default: all)."""
    start: date | None = None
    end: date | None = None
    """aws-ce: the days to read, [start, end) (default: from the 1st of two months ago)."""
    tag_key: str | None = None
    """aws-ce: the tag to group by (default: allocation.tag_key)."""
    regions: tuple[str, ...] = ()
    cluster_tag: str = "cluster"
    """aws-inventory: regions to read, and the tag naming a cluster outside EKS/ASG."""
    days: int = 30
    """billing-inventory: how many days of billing to derive it from."""
    time_zone: str | None = None
    host: str | None = None
    """nvidia-smi: the hosts' clock, and a host name for every file."""
    since: str = "30d"
    step_s: float = 60
    selector: str = ""
    """prometheus: how far the first run goes back, seconds between readings, a label
    matcher; later runs continue after the source's last stored sample."""

    @field_validator("uri", "aws_profile")
    @classmethod
    def _expand_environment(cls, value: str | None) -> str | None:
        """`${NAME}` takes the environment's value, so deployments keep secrets out of files."""
        if value is None:
            return None
        missing = [name for name in re.findall(r"\$\{(\w+)\}", value) if name not in os.environ]
        if missing:
            raise ValueError(f"environment variable(s) {', '.join(missing)} not set")
        return re.sub(r"\$\{(\w+)\}", lambda m: os.environ[m.group(1)], value)


class SourcesFile(_Section):
    sources: tuple[SourceManifest, ...] = ()


def load_sources(config: Config, folder: Path | None = None) -> list[SourceManifest]:
    """Every source declared in collectors/*.yaml, validated; names must be unique."""
    directory = folder or config.base_dir / "collectors"
    declared: dict[str, tuple[SourceManifest, Path]] = {}
    for path in sorted(directory.glob("*.y*ml")):
        parsed: SourcesFile = validate(SourcesFile, read_yaml_mapping(path), path)
        for source in parsed.sources:
            if source.name in declared:
                raise ConfigError(
                    f"{path}: source {source.name!r} is also declared in {declared[source.name][1]}"
                )
            declared[source.name] = (source, path)
    return [source for source, _ in declared.values()]
