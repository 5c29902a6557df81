"""config.yaml as frozen pydantic models.

Strict on purpose: every model forbids unknown keys so a typo (``dry-run`` for
``dry_run``) is an error naming its path, never a silently ignored setting. Secrets
never live here: the file names where to read them (a file or an environment
variable), so config.yaml can sit in a ConfigMap.
"""

from __future__ import annotations

import difflib
import typing
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from receiver.domain.matchers import Matcher, equality_selects, parse_matchers, suspicious
from receiver.domain.phases import (
    DEFAULT_PHASES,
    PhaseList,
    PhaseSpec,
    PhaseThreshold,
    PhaseThresholds,
    RolloutPhase,
    unknown_phase_keys,
    unreachable_phases,
)
from receiver.domain.prometheus_settings import PrometheusSettings
from receiver.domain.promotion import PromotionSettings


class Strict(BaseModel):
    """Base for every config section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StepOrder(StrEnum):
    """Which Deployment is scaled first; ``auto`` picks per rollback (see README)."""

    AUTO = "auto"
    CANARY_FIRST = "canary-first"
    STABLE_FIRST = "stable-first"


class Mute(Strict):
    """An operator's mute: who, why, and until when (None = until removed)."""

    reason: str = Field(min_length=1, description="Why it is muted, shown in Slack.")
    by: str = Field(min_length=1, description="Who muted it, shown in Slack.")
    until: datetime | None = Field(
        default=None, description="When the mute ends (RFC 3339 with zone); absent = until removed."
    )

    @field_validator("until")
    @classmethod
    def _zone_required(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2026-11-27T18:00:00Z")
        return v

    def active(self, now: datetime) -> bool:
        """True while the mute holds at ``now``."""
        return self.until is None or now < self.until


def _check_matchers(v: list[str]) -> list[str]:
    for text in v:
        parse_matchers(text)  # raises ValueError with the reason
    return v


def _require_equality(kind: str, name: str, matchers: tuple[Matcher, ...]) -> None:
    """Refuse a selector that cannot pin an alert down (``[]`` matches every alert)."""
    if not equality_selects(matchers):
        raise ValueError(
            f"{kind} {name!r} must select by at least one equality matcher on a label "
            f'(name="value" with a non-empty value, e.g. service="{name}"); '
            f"{_shown(matchers)} would also match alerts meant for other services"
        )


def _shown(matchers: tuple[Matcher, ...]) -> str:
    return "{" + ", ".join(str(m) for m in matchers) + "}"


MatcherList = Annotated[
    list[str],
    Field(
        description='Alertmanager-style matchers, e.g. ["alertname=\\"HighErrorRate\\""]; at least one must be '
        'an equality with a non-empty value (name="value"), else the file is refused.'
    ),
]


class Rule(Strict):
    """An immediate-rollback condition from the rollout guide."""

    name: str = Field(min_length=1, description="Shown in decisions and Slack.")
    matchers: MatcherList
    threshold: float | None = Field(
        default=None,
        description="Roll back only when the alert's value is strictly above this; "
        "a missing or non-numeric value then does not trigger. A rule has this or thresholds, not both.",
    )
    thresholds: PhaseThresholds | None = Field(
        default=None,
        description="Per rollout phase instead of threshold: {week-1: 0.01, default: 0.05}; "
        "default applies between phases, before the first and after the last.",
    )
    value_annotation: str = Field(default="value", description="Annotation carrying the alert's value ({{ $value }}).")
    unit: Literal["ratio", "percent", "ms", "seconds", "count", "none"] = Field(
        default="none",
        description="How the value is shown: ratio 0.072 -> 7.2 %, ms, seconds, count.",
    )
    description: str = Field(default="", description="Free text for humans.")
    recovery_window_seconds: float | None = Field(
        default=None, gt=0, description="Overrides settings.recovery_window_seconds for alerts of this rule."
    )

    _check = field_validator("matchers")(_check_matchers)

    @model_validator(mode="after")
    def _selects(self) -> Rule:
        _require_equality("rule", self.name, self.parsed)
        if self.threshold is not None and self.thresholds is not None:
            raise ValueError(
                f"rule {self.name!r} has both threshold and thresholds: keep one "
                "(thresholds: {week-1: 0.01, default: 0.05} replaces threshold: 0.05)"
            )
        return self

    def threshold_in(self, phase: RolloutPhase | None) -> PhaseThreshold | None:
        """The level this rule holds alerts to in ``phase`` (None: unknown, judged by the
        default), with where it came from; None when the rule rolls back on any firing alert."""
        if self.thresholds is not None:
            if phase is None:
                return PhaseThreshold(self.thresholds.root["default"], "default")
            return self.thresholds.for_phase(phase)
        return None if self.threshold is None else PhaseThreshold(self.threshold, "default")

    @property
    def parsed(self) -> tuple[Matcher, ...]:
        """The matchers, parsed (cheap: parse_matchers is cached)."""
        return tuple(m for text in self.matchers for m in parse_matchers(text))


class Versions(Strict):
    """How Prometheus tells the stable from the canary: ``{version="v1"}`` vs ``{version="v2"}``."""

    label: str = Field(default="version", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", description="The label name.")
    stable: str = Field(default="v1", min_length=1, description="Its value on the stable's series.")
    canary: str = Field(default="v2", min_length=1, description="Its value on the canary's series.")

    @model_validator(mode="after")
    def _distinct(self) -> Versions:
        if self.stable == self.canary:
            raise ValueError("stable and canary must have different label values")
        return self


class Target(Strict):
    """A service the receiver may roll back. Only these are ever touched."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Names the target in decisions, Slack, metrics and its Lease.",
    )
    namespace: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63, description="Namespace of both Deployments."
    )
    matchers: MatcherList
    stable: str = Field(description="The old, known-good Deployment (v1).")
    canary: str = Field(description="The new Deployment being rolled out (v2).")
    replicas: int = Field(ge=1, description="Full replica count the stable is scaled to.")
    slack_channel: str | None = Field(default=None, description="Overrides slack.default_channel.")
    runbook_url: str | None = Field(default=None, description="Linked from the Slack message.")
    dashboard_url: str | None = Field(
        default=None, description="Linked from the Slack message; {from} and {to} become the incident's "
        "time range (epoch ms, as Grafana's from/to)."
    )
    step_order: StepOrder | None = Field(default=None, description="Overrides settings.step_order.")
    phases: PhaseList | None = Field(
        default=None, description="Overrides settings.phases for this target (e.g. a target of 3 replicas)."
    )
    mute: Mute | None = None
    versions: Versions = Field(
        default_factory=lambda: Versions(),
        description="The label telling the versions apart in Prometheus, and its value for each Deployment.",
    )
    recovery_window_seconds: float | None = Field(
        default=None, gt=0, description="Overrides the rule's and settings.recovery_window_seconds."
    )

    _check = field_validator("matchers")(_check_matchers)

    @model_validator(mode="after")
    def _distinct(self) -> Target:
        if self.stable == self.canary:
            raise ValueError("stable and canary must be different Deployments")
        _require_equality("target", self.name, self.parsed)
        return self

    @property
    def parsed(self) -> tuple[Matcher, ...]:
        return tuple(m for text in self.matchers for m in parse_matchers(text))


class BreakerSettings(Strict):
    """The blast-radius breaker: many targets failing at once is rarely their canaries."""

    max_targets: int = Field(
        default=3, ge=1,
        description="More distinct targets than this getting roll_back decisions within window_seconds "
        "opens the breaker: no further automatic rollbacks until a person closes it.",
    )
    window_seconds: float = Field(default=300, gt=0, description="How far back roll_back starts are counted.")


class Settings(Strict):
    """Global behaviour."""

    enabled: bool = Field(default=True, description="False = global kill switch (decision 'disabled').")
    mute: Mute | None = Field(default=None, description="Global mute with reason and owner.")
    dry_run: bool = Field(default=False, description="Decide and notify, never change the cluster.")
    verification_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Give up verifying after this; default: the stable's progressDeadlineSeconds, else 300.",
    )
    step_order: StepOrder = Field(
        default=StepOrder.AUTO,
        description="auto: canary-first when the stable has at least half the full count Ready, "
        "else stable-first (never leave the service with no pods).",
    )
    max_concurrent_rollbacks: int = Field(
        default=10, ge=1, description="Rollbacks beyond this wait (and say so) for a free slot."
    )
    wait_for_canary_pods_gone: bool = Field(
        default=False, description="Also wait until the canary's pods have terminated."
    )
    max_rollbacks_per_hour: int = Field(
        default=3,
        ge=1,
        description="Fight detection: after this many rollbacks of one target within an hour, "
        "stop acting on it and report instead.",
    )
    breaker: BreakerSettings = Field(default_factory=BreakerSettings,
                                     description="Blast-radius breaker (decision breaker_open).")
    lease_namespace: str | None = Field(
        default=None, description="Where per-target Leases live; default: the target's namespace."
    )
    state_namespace: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Where the ConfigMap rollback-receiver-state (run-time mutes, blast-radius breaker) "
        "lives; default: lease_namespace, else the first target's namespace.",
    )
    lease_duration_seconds: int = Field(
        default=15, ge=2, description="A dead receiver's rollback is taken over after this."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Larger webhooks get 413.")
    phases: PhaseList = Field(
        default=DEFAULT_PHASES,
        description="The rollout's phases, as canary pods out of `of` (default 5): the guide's "
        "week-1..week-4 at 1, 3, 4, 5. A target's phase is read from its canary's spec replicas.",
    )
    recovery_window_seconds: float = Field(
        default=300, gt=0,
        description="After a rollback, the alert's metric must stay under the rule's threshold this long "
        "to count as recovered (needs prometheus); overridable per rule and per target.",
    )
    alerts_before_phase_may_trigger: bool = Field(
        default=True,
        description="False: an alert that started before the canary last changed replicas does not roll "
        "back (it is about the previous split); either way the reason names it.",
    )
    promotion: PromotionSettings = Field(
        default=PromotionSettings(), description="`receiver promote`: the weekly gate's soak window and criteria."
    )


SlackId = Annotated[str, Field(pattern=r"^[UWS][A-Z0-9]{2,}$")]


class SlackAllow(Strict):
    """Who may act from Slack, per kind: Slack user ids (U…, W…) and user-group ids (S…).

    Empty = nobody. Read-only actions (status, history) are open to the channel."""

    mute: list[SlackId] = Field(default_factory=list, description="Mute and unmute (buttons and /rollback mute).")
    rollback: list[SlackId] = Field(
        default_factory=list, description="Roll back, retry a failed rollback, close the breaker."
    )
    promote: list[SlackId] = Field(default_factory=list, description="Re-promote the canary.")
    ack: list[SlackId] = Field(default_factory=list, description="Acknowledge a rollback (take it).")


class SlackActionSettings(Strict):
    """Acting from Slack: buttons and /rollback, over Socket Mode or POST /slack/events."""

    allow: SlackAllow = SlackAllow()
    signing_secret_env: str = Field(default="SLACK_SIGNING_SECRET", description="Env var with the signing secret.")
    signing_secret_file: Path | None = Field(default=None, description="Or: file holding the signing secret.")
    app_token_env: str = Field(default="SLACK_APP_TOKEN", description="Env var with the xapp- app-level token.")
    app_token_file: Path | None = Field(default=None, description="Or: file holding the app-level token.")
    transport: Literal["auto", "socket", "http"] = Field(
        default="auto", description="auto: Socket Mode when an app-level token is set, else POST /slack/events."
    )


class SlackSettings(Strict):
    """Where notifications go. Tokens are read from files or the environment."""

    mode: Literal["bot", "webhook", "console", "off"] = Field(
        default="console",
        description="bot: Web API with threads and updates; webhook: incoming webhook; "
        "console: print to the terminal; off: nothing.",
    )
    api_url: str = Field(default="https://slack.com/api/", description="Slack Web API base URL.")
    token_file: Path | None = Field(default=None, description="File holding the xoxb- bot token.")
    token_env: str = Field(default="SLACK_BOT_TOKEN", description="Env var with the bot token.")
    webhook_url_file: Path | None = Field(default=None, description="File with the incoming-webhook URL.")
    webhook_url_env: str = Field(default="SLACK_WEBHOOK_URL", description="Env var with the webhook URL.")
    default_channel: str = Field(default="#rollbacks", description="Used when a target names none.")
    oncall_mention: str = Field(default="", description="Added to failure broadcasts, e.g. <!subteam^S123> or <!here>.")
    timeout_seconds: float = Field(default=10, gt=0, description="Per Slack call; a timed-out post is never repeated.")
    queue_size: int = Field(default=1000, ge=1, description="Notifications queued beyond this are dropped and counted.")
    actions: SlackActionSettings = SlackActionSettings()


class AlertmanagerSettings(Strict):
    """Where people reach Alertmanager (for the silence link on Slack messages)."""

    external_url: str | None = Field(
        default=None, pattern=r"^https?://",
        description="e.g. https://alertmanager.example.com; enables the silence link.",
    )


class BasicAuthUser(Strict):
    username: str = Field(min_length=1, description="As in Alertmanager's http_config.basic_auth.")
    password_file: Path | None = Field(default=None, description="File holding the password.")
    password_env: str | None = Field(default=None, description="Or: env var holding the password.")


class AuthSettings(Strict):
    """Webhook and admin credentials, as Alertmanager's http_config sends them."""

    bearer_token_files: list[Path] = Field(
        default_factory=list, description="Each file holds one accepted token (rotation: list both)."
    )
    bearer_token_env: str = Field(
        default="RECEIVER_WEBHOOK_TOKEN",
        description="Env var with accepted tokens (comma-separated for rotation).",
    )
    basic_auth: list[BasicAuthUser] = Field(default_factory=list, description="Accepted basic-auth users.")
    admin_token_file: Path | None = Field(default=None,
        description="Admin token for /health, /rollbacks, /targets, /-/reload, /mutes, /breaker/close.")
    admin_token_env: str = Field(default="RECEIVER_ADMIN_TOKEN", description="Env var with admin tokens.")
    jwt_secret_file: Path | None = Field(
        default=None, description="HS256 secret for admin JWTs carrying admin:monitoring."
    )


class Config(Strict):
    """The whole file."""

    settings: Settings = Settings()
    rules: list[Rule] = Field(min_length=1)
    targets: list[Target] = Field(min_length=1)
    slack: SlackSettings = SlackSettings()
    auth: AuthSettings = AuthSettings()
    prometheus: PrometheusSettings | None = Field(
        default=None,
        description="Where to query Prometheus; absent: no recovery confirmation, no 'is it the canary?' check.",
    )
    alertmanager: AlertmanagerSettings = AlertmanagerSettings()

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for kind, names in (("rule", [r.name for r in self.rules]), ("target", [t.name for t in self.targets])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} names: {', '.join(dupes)}")
        known = [*self.settings.phases, *(p for t in self.targets for p in t.phases or ())]
        for rule in self.rules:
            if rule.thresholds is not None and (bad := unknown_phase_keys(rule.thresholds.root, known)):
                listed = ", ".join(dict.fromkeys(p.name for p in known))
                raise ValueError(
                    f"rule {rule.name!r}: thresholds name no listed phase: {', '.join(bad)} "
                    f"(phases: {listed}, and default)"
                )
        return self

    def phases_of(self, target: Target) -> tuple[PhaseSpec, ...]:
        """The phase list that applies to ``target``: its own, else settings.phases."""
        return target.phases if target.phases is not None else self.settings.phases

    @property
    def state_namespace(self) -> str:
        """Where state every replica shares lives (settings.state_namespace's default chain)."""
        return self.settings.state_namespace or self.settings.lease_namespace or self.targets[0].namespace

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def recovery_window(self, target: Target, rule: str | None) -> float:
        """Seconds of health that count as recovered: the target's, else the rule's, else settings'."""
        found = next((r for r in self.rules if r.name == rule), None)
        return (target.recovery_window_seconds
                or (found.recovery_window_seconds if found else None)
                or self.settings.recovery_window_seconds)

    def warnings(self) -> list[str]:
        """Valid but probably not meant: each line names where (shown by check-config, logged at load)."""
        out: list[str] = []
        for i, rule in enumerate(self.rules):
            out += [f"rules.{i} ({rule.name}): {w}" for m in rule.parsed if (w := suspicious(m))]
        for i, target in enumerate(self.targets):
            out += [f"targets.{i} ({target.name}): {w}" for m in target.parsed if (w := suspicious(m))]
            if never := unreachable_phases(target.replicas, self.phases_of(target)):
                out.append(
                    f"targets.{i} ({target.name}): with replicas {target.replicas} the canary can never be in "
                    f"{', '.join(p.name for p in never)}; those weeks are judged by the default thresholds "
                    "(give the target its own phases)"
                )
        return out


class ConfigError(Exception):
    """config.yaml could not be used; the message names the file and the bad key."""


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The config section that holds the key at ``loc`` (list indexes skipped)."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        found = _section(info.annotation)
        if found is None:
            return None
        model = found
    return model


def _section(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section(arg)
        if found is not None:
            return found
    return None


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    """'unknown key', with difflib's nearest known key of that section when one is close."""
    model = _model_at(loc)
    key = str(loc[-1]) if loc else ""
    if model is not None:
        close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
        if close:
            return f"unknown key; did you mean {close[0]}?"
    return "unknown key"


def _format_error(path: str, err: ValidationError) -> str:
    lines = [f"{path}: {err.error_count()} error(s)"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = _unknown_key(tuple(e["loc"])) if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse YAML text into a Config, or raise ConfigError saying what is wrong and where."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping with rules and targets")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(source, e)) from e


def load_config(path: Path) -> Config:
    """Read and validate a config file. Its warnings() are the caller's to show or log
    (check-config prints them, ConfigStore logs them at every load): this module stays
    free of I/O libraries because the pure core imports it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from e
    return parse_config(text, str(path))
