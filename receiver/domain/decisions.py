"""What to do about each target for one webhook: pure, with a reason for every outcome.

decide(payload, config, states, now) is the whole of the receiver's judgement. It does
no I/O: what is known of each target (replica counts, a running rollback) is passed in
as TargetState, kept current elsewhere by watching the Deployments and Leases.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING

from receiver.domain.matchers import Matcher, parse_matchers
from receiver.domain.phases import PhaseKind, PhaseThreshold, RolloutPhase, phase_of
from receiver.domain.units import format_value, parse_number

if TYPE_CHECKING:
    from receiver.domain.alerts import Alert, WebhookPayload
    from receiver.domain.settings import Config, Rule, Settings, Target


class DecisionKind(StrEnum):
    """Outcome of deciding; the value doubles as a metric label."""

    ROLL_BACK = "roll_back"
    MUTED = "muted"
    DRY_RUN = "dry_run"
    ALREADY_ROLLED_BACK = "already_rolled_back"
    IN_PROGRESS = "in_progress"
    NO_RULE_MATCHED = "no_rule_matched"
    RESOLVED = "resolved"
    DISABLED = "disabled"
    HALTED = "halted"  # fight detection: too many rollbacks of this target within an hour
    MISCONFIGURED = "misconfigured"  # the target's canary or stable Deployment does not exist
    WARNED = "warned"  # a warning-level alert (rollback="warn"): people are told, nothing is changed


class AlertReason(StrEnum):
    """Why a decision's alerts got it; the value is the ``reason`` label of receiver_alerts_total."""

    ABOVE_THRESHOLD = "above_threshold"  # the value is above the rule's threshold: triggers
    NO_THRESHOLD = "no_threshold"  # the rule has no threshold: any firing alert triggers
    BELOW_THRESHOLD = "below_threshold"
    NO_VALUE = "no_value"  # the rule's value annotation is missing
    NOT_A_NUMBER = "not_a_number"  # the annotation is there but not a number (or NaN)
    NO_RULE = "no_rule"  # the alert matches no rule
    RESOLVED = "resolved"  # every alert of the target is resolved
    WARNING = "warning"  # a warning-level alert (label rollback="warn"): told, never acted on


class MuteScope(StrEnum):
    GLOBAL = "global"  # settings.mute: every target
    TARGET = "target"  # the target's own mute


class MuteSource(StrEnum):
    """Where a mute was set; config.yaml only, for now."""

    CONFIG = "config"


@dataclass(frozen=True, slots=True)
class AppliedMute:
    """The one mute that holds for a target at a moment: everything Slack, /health and
    check-config say about it comes from here, so none of them guesses which mute it was."""

    scope: MuteScope
    by: str
    reason: str
    until: datetime | None  # None: until someone removes it
    source: MuteSource = MuteSource.CONFIG

    def what(self, target: str) -> str:
        """What is muted, as the subject of a sentence."""
        return "all targets" if self.scope is MuteScope.GLOBAL else target

    def as_json(self) -> dict[str, str | None]:
        return {"scope": self.scope.value, "source": self.source.value, "by": self.by, "reason": self.reason,
                "until": self.until.isoformat() if self.until else None}


def applied_mute(settings: Settings, target: Target | None, now: datetime) -> AppliedMute | None:
    """The mute that holds for ``target`` at ``now`` (the global one wins), or None.

    With target None: the global mute alone. Expired mutes never apply.
    """
    for mute, scope in ((settings.mute, MuteScope.GLOBAL), (target.mute if target else None, MuteScope.TARGET)):
        if mute is not None and mute.active(now):
            return AppliedMute(scope=scope, by=mute.by, reason=mute.reason, until=mute.until)
    return None


@dataclass(frozen=True, slots=True)
class TargetState:
    """What the receiver currently knows of a target, from watches (None = unknown)."""

    canary_replicas: int | None = None
    stable_replicas: int | None = None
    stable_ready: int | None = None
    stable_exists: bool | None = None
    canary_exists: bool | None = None
    rollback_running: str | None = None  # rollback id held in the target's Lease
    recent_rollbacks: tuple[datetime, ...] = ()  # finished rollbacks, for fight detection
    last_rollback_finished: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One target's decision for one webhook delivery."""

    target: str
    kind: DecisionKind
    reason: str  # a sentence a person reads in Slack or the HTTP response
    rule: str | None = None
    alerts: tuple[Alert, ...] = ()
    value: float | None = None  # the triggering alert's value, when the rule has a threshold
    threshold: float | None = None
    mute: AppliedMute | None = None  # set exactly when kind is MUTED
    #: Why the alerts got this decision (also the metric label); decide always sets it,
    #: None only on decisions built by hand.
    why: AlertReason | None = None
    group_key: str = ""
    external_url: str = ""
    details: dict[str, str] = field(default_factory=dict)
    # Added with issue 3 (alerts[0] is the alert the decision is about):
    alertname: str | None = None
    unit: str = "none"  # the rule's unit, for format_value(value, unit)
    generator_url: str | None = None
    #: The target's rollout phase when decided (from the canary's spec replicas); None: not known yet.
    phase: RolloutPhase | None = None

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(a.fingerprint for a in self.alerts)

    def summary(self) -> dict[str, object]:
        """JSON-ready summary for the webhook response."""
        return {
            "target": self.target,
            "decision": self.kind.value,
            "reason": self.reason,
            "rule": self.rule,
            "fingerprints": list(self.fingerprints),
        }


# ---------------------------------------------------------------------------------------
# decide()

#: Fight detection looks this far back.
FIGHT_WINDOW = timedelta(hours=1)
_MISS = object()
#: How many alerts a reason names before saying "and N more".
_NAMED = 3
#: The label Alertmanager's second route selects the rollout's warning alerts by
#: (deploy/prometheus/rules.yml): they reach people in Slack, never the cluster.
WARN_LABEL, WARN_VALUE = "rollback", "warn"


def is_warning(alert: Alert) -> bool:
    """A warning-level alert: told in Slack, never a reason to scale anything."""
    return alert.labels.get(WARN_LABEL) == WARN_VALUE


_SELECTOR_CACHE_MAX = 4096
#: Characters of label values the selector memo may hold: senders choose them, and a few
#: 1 MB label values must not be kept 4096 times over.
_SELECTOR_CACHE_CHARS = 1024 * 1024


class _Selector:
    """First-match lookup over matcher lists, memoised on the label values they read.

    Alerts of one group mostly share the labels rules look at (alertname, severity,
    service), so a 10,000-alert payload costs a few dict lookups per alert instead of
    every matcher of every rule.
    """

    __slots__ = ("_cache", "_chars", "_lists", "_names")

    def __init__(self, lists: Sequence[tuple[Matcher, ...]]) -> None:
        self._lists = lists
        self._names = tuple(sorted({m.name for ms in lists for m in ms}))
        # Keyed by the values of the labels the matchers read (None = label missing).
        self._cache: dict[tuple[str | None, ...], object] = {}
        self._chars = 0  # characters of label values held in the keys

    def first(self, labels: Mapping[str, str]) -> int | None:
        """Index of the first matcher list accepting the labels, or None."""
        key = tuple(map(labels.get, self._names))  # type: ignore[arg-type]
        found = self._cache.get(key, _MISS)
        if found is _MISS:
            found = next(
                (i for i, ms in enumerate(self._lists) if all(m.matches(labels) for m in ms)),
                None,
            )
            chars = sum(len(v) for v in key if v)
            # label values chosen by senders: stay bounded in count and in bytes
            if len(self._cache) >= _SELECTOR_CACHE_MAX or self._chars + chars > _SELECTOR_CACHE_CHARS:
                self._cache.clear()
                self._chars = 0
            if chars <= _SELECTOR_CACHE_CHARS:
                self._cache[key] = found
                self._chars += chars
        return found  # type: ignore[return-value]

    def indexes(self, alerts: Sequence[Alert]) -> list[int | None]:
        """first() for each alert; the loop is kept tight for 10,000-alert payloads."""
        names, cache, first = self._names, self._cache, self.first
        out: list[int | None] = []
        append = out.append
        for a in alerts:
            labels = a.labels
            found = cache.get(tuple(map(labels.get, names)), _MISS)  # type: ignore[arg-type]
            append(first(labels) if found is _MISS else found)  # type: ignore[arg-type]
        return out


@dataclass(frozen=True, slots=True)
class _Verdict:
    """One firing alert held against its first matching rule."""

    alert: Alert
    rule_index: int | None
    rule: Rule | None
    value: float | None
    why: AlertReason
    threshold: PhaseThreshold | None = None


@dataclass(frozen=True, slots=True)
class _Tested:
    """Every firing alert of a target held against its first matching rule (by position)."""

    reasons: list[AlertReason]
    values: list[float | None]
    hits: list[int]  # positions of the alerts that call for a rollback

    def verdict(self, pos: int, firing: Sequence[Alert], indexes: Sequence[int | None],
                rules: Sequence[Rule], levels: Sequence[PhaseThreshold | None]) -> _Verdict:
        idx = indexes[pos]
        return _Verdict(firing[pos], idx, rules[idx] if idx is not None else None, self.values[pos],
                        self.reasons[pos], levels[idx] if idx is not None else None)


def _test(firing: Sequence[Alert], indexes: Sequence[int | None], rules: Sequence[Rule],
          levels: Sequence[PhaseThreshold | None]) -> _Tested:
    """Whether each alert calls for a rollback under its rule, why, and the value read.

    The one place that holds an alert against a threshold. It runs over every alert of a
    10,000-alert payload, hence one loop (not a call per alert), the float() fast path
    (parse_number reads the rest: "7.2%", NaN) and identity checks on the enum members.
    """
    checks = [(lv.value if lv is not None else None, r.value_annotation, r.unit)
              for r, lv in zip(rules, levels, strict=True)]
    reasons: list[AlertReason] = []
    values: list[float | None] = []
    hits: list[int] = []
    add_reason, add_value, add_hit = reasons.append, values.append, hits.append
    no_rule, no_value, not_a_number = AlertReason.NO_RULE, AlertReason.NO_VALUE, AlertReason.NOT_A_NUMBER
    above, below, any_value = AlertReason.ABOVE_THRESHOLD, AlertReason.BELOW_THRESHOLD, AlertReason.NO_THRESHOLD
    for pos, (alert, idx) in enumerate(zip(firing, indexes, strict=True)):
        if idx is None:
            add_reason(no_rule)
            add_value(None)
            continue
        threshold, annotation, unit = checks[idx]
        text = alert.annotations.get(annotation)
        value: float | None = None
        if text is not None:
            try:
                value = float(text)
            except ValueError:
                value = parse_number(text, unit)
            else:
                if value != value:  # NaN is not a number, as in parse_number
                    value = None
        add_value(value)
        if threshold is None:
            add_reason(any_value)
            add_hit(pos)
        elif text is None:
            add_reason(no_value)
        elif value is None:
            add_reason(not_a_number)
        elif value > threshold:
            add_reason(above)
            add_hit(pos)
        else:
            add_reason(below)
    return _Tested(reasons, values, hits)


def _alert_name(alert: Alert) -> str:
    return alert.alertname or f"alert {alert.fingerprint}"


def _cause(v: _Verdict, phase: RolloutPhase | None = None) -> str:
    """Why one alert did or did not trigger, as a clause for a sentence."""
    name = _alert_name(v.alert)
    rule = v.rule
    if rule is None:
        return f"{name} matches no immediate-rollback rule"
    unit = rule.unit
    level = v.threshold
    whose = f"{phase.text}'s" if level is not None and not level.is_default and phase is not None else "the"
    limit = f"{whose} {format_value(level.value if level else None, unit)}"
    ann = rule.value_annotation
    if v.why is AlertReason.ABOVE_THRESHOLD:
        return f"{name} is at {format_value(v.value, unit)}, above {limit} threshold of rule {rule.name}"
    if v.why is AlertReason.NO_THRESHOLD:
        return f"{name} is firing and rule {rule.name} rolls back on any firing alert"
    if v.why is AlertReason.BELOW_THRESHOLD:
        return f"{name} is at {format_value(v.value, unit)}, not above {limit} threshold of rule {rule.name}"
    if v.why is AlertReason.NO_VALUE:
        return (
            f"{name} carries no {ann!r} annotation, so {limit} threshold of rule "
            f"{rule.name} cannot be checked and does not trigger"
        )
    raw = v.alert.annotations.get(ann, "")
    return (
        f"{name} has {ann}={raw!r}, which is not a number, so {limit} threshold of "
        f"rule {rule.name} cannot be checked and does not trigger"
    )


def target_phase(target: Target, config: Config, state: TargetState) -> RolloutPhase | None:
    """The target's rollout phase from the live split (canary spec replicas against
    target.replicas); None while the canary's replicas are not known (not synced, or no
    canary Deployment), which is judged by the default thresholds."""
    if state.canary_replicas is None:
        return None
    return phase_of(state.canary_replicas, target.replicas, config.phases_of(target))


def phase_clause(phase: RolloutPhase | None) -> str:
    """Where the rollout is, for a reason: "in week 1 (canary 1 of 5)",
    "between week 1 and week 2 (canary 2 of 5)"."""
    if phase is None:
        return "in an unknown phase (canary replicas not known yet)"
    if phase.kind is PhaseKind.PHASE:
        return f"in {phase}"
    if phase.kind is PhaseKind.BETWEEN:
        return str(phase)
    return f"with the rollout {phase}"


def _summary_of(alert: Alert) -> str:
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    return f' ("{summary}")' if summary else ""


def _more(n: int, noun: str = "alert") -> str:
    return f" (and {n} more firing {noun}{'s' if n > 1 else ''})" if n > 0 else ""


def _fmt_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _mute_clause(mute: AppliedMute, target: str) -> str:
    until = f"until {_fmt_time(mute.until)}" if mute.until else "until someone unmutes it"
    return f"{mute.what(target)} muted by {mute.by} {until} ({mute.reason})"


def _state_note(target: Target, state: TargetState) -> str:
    if state.rollback_running:
        return f"; a rollback is already running ({state.rollback_running})"
    if _already_rolled_back(target, state):
        return "; it is already on the stable version"
    return ""


def _already_rolled_back(target: Target, state: TargetState) -> bool:
    return state.canary_replicas == 0 and state.stable_replicas is not None and state.stable_replicas >= target.replicas


def missing_objects(target: Target, state: TargetState) -> list[str]:
    """The target's Deployments known not to exist ("namespace/name"), stable first."""
    return [
        f"{role} Deployment {target.namespace}/{name}"
        for role, name, exists in (("stable", target.stable, state.stable_exists),
                                   ("canary", target.canary, state.canary_exists))
        if exists is False
    ]


def _recent(state: TargetState, now: datetime) -> int:
    since = now - FIGHT_WINDOW
    return sum(1 for t in state.recent_rollbacks if t > since)


def _plan(target: Target) -> str:
    return f"scale {target.canary} to 0 and {target.stable} to {target.replicas} in namespace {target.namespace}"


def _judge(
    target: Target,
    settings: Settings,
    state: TargetState,
    now: datetime,
    because: str,
) -> tuple[DecisionKind, str, AppliedMute | None]:
    """Given that rules call for a rollback, what happens: the priority chain."""
    # First: with a Deployment missing no rollback can ever happen (a typo in config.yaml,
    # or the wrong cluster); saying so beats "disabled", "muted" or "already rolled back".
    if missing := missing_objects(target, state):
        return (
            DecisionKind.MISCONFIGURED,
            f"misconfigured: {' and '.join(missing)} {'do' if len(missing) > 1 else 'does'} "
            f"not exist, so {target.name} cannot be rolled back; fix target {target.name} in "
            f"config.yaml (or the cluster) and reload. Would have rolled back because {because}",
            None,
        )
    if not settings.enabled:
        return (
            DecisionKind.DISABLED,
            f"receiver disabled (settings.enabled is false): would have rolled back {target.name}, because {because}",
            None,
        )
    if (mute := applied_mute(settings, target, now)) is not None:
        return (
            DecisionKind.MUTED,
            f"{_mute_clause(mute, target.name)}: would have rolled back {target.name}, "
            f"because {because}{_state_note(target, state)}",
            mute,
        )
    # Before fight detection on purpose: a repeat delivery while a rollback runs or
    # after it finished has nothing to halt, and must change and post nothing new.
    if state.rollback_running:
        return (
            DecisionKind.IN_PROGRESS,
            f"a rollback of {target.name} is already running ({state.rollback_running}); "
            f"nothing new to do for: {because}",
            None,
        )
    if _already_rolled_back(target, state):
        return (
            DecisionKind.ALREADY_ROLLED_BACK,
            f"{target.name} is already rolled back ({target.canary} at 0, {target.stable} "
            f"at {state.stable_replicas} of {target.replicas}); nothing to do for: {because}",
            None,
        )
    recent = _recent(state, now)
    if recent >= settings.max_rollbacks_per_hour:
        return (
            DecisionKind.HALTED,
            f"halted: {target.name} was already rolled back {recent} times in the last hour "
            f"(settings.max_rollbacks_per_hour is {settings.max_rollbacks_per_hour}); "
            f"something keeps bringing {target.canary} back, so a person must look. "
            f"Would have rolled back because {because}",
            None,
        )
    if settings.dry_run:
        return (
            DecisionKind.DRY_RUN,
            f"dry run: would {_plan(target)}, because {because}",
            None,
        )
    return (
        DecisionKind.ROLL_BACK,
        f"rolling {target.name} back to {target.stable}: {because}",
        None,
    )


def _decide_target(
    target: Target,
    alerts: Sequence[Alert],
    config: Config,
    rule_selector: _Selector,
    state: TargetState,
    now: datetime,
    payload: WebhookPayload,
) -> Decision:
    gk, url = payload.group_key, payload.external_url
    firing = [a for a in alerts if a.firing]
    rules = config.rules
    phase = target_phase(target, config, state)
    where = phase_clause(phase)
    if not firing:
        names = sorted({_alert_name(a) for a in alerts})
        ended = [t for a in alerts if (t := a.ended_at) is not None]
        when = f" at {_fmt_time(max(ended))}" if ended else ""
        first = alerts[0]
        idx = rule_selector.first(first.labels)
        return Decision(
            target=target.name,
            kind=DecisionKind.RESOLVED,
            reason=f"{', '.join(names)} for {target.name} resolved{when}: the metric is back within its "
                   f"threshold ({where})",
            rule=rules[idx].name if idx is not None else None,
            alerts=tuple(alerts),
            alertname=first.alertname or None,
            unit=rules[idx].unit if idx is not None else "none",
            generator_url=first.generator_url or None,
            why=AlertReason.RESOLVED,
            details={"resolved": str(len(alerts))},
            group_key=gk,
            external_url=url,
            phase=phase,
        )

    indexes = rule_selector.indexes(firing)
    levels = [r.threshold_in(phase) for r in rules]
    tested = _test(firing, indexes, rules, levels)
    hits = [i for i in tested.hits if not is_warning(firing[i])]
    warnings = [a for a in firing if is_warning(a)]
    if not hits and warnings:
        return _warned(target, state, warnings, where, phase, payload)
    if not hits:
        # Say why for the most relevant alerts: those with a rule first, in rule order.
        order = sorted(
            range(len(firing)),
            key=lambda i: (indexes[i] is None, indexes[i] or 0),
        )
        ranked = [tested.verdict(i, firing, indexes, rules, levels) for i in order[:_NAMED]]
        lead = ranked[0]
        causes = "; ".join(_cause(v, phase) for v in ranked)
        rule = lead.rule
        return Decision(
            target=target.name,
            kind=DecisionKind.NO_RULE_MATCHED,
            reason=f"no rollback for {target.name} {where}: {causes}{_more(len(firing) - _NAMED)}",
            rule=rule.name if rule else None,
            alerts=tuple(firing[i] for i in order),
            value=lead.value,
            threshold=lead.threshold.value if lead.threshold else None,
            alertname=lead.alert.alertname or None,
            unit=rule.unit if rule else "none",
            generator_url=lead.alert.generator_url or None,
            why=lead.why,
            group_key=gk,
            external_url=url,
            phase=phase,
        )

    # The earliest rule in config order wins; ties keep payload order.
    first_pos = min(hits, key=lambda i: (indexes[i], i))
    lead = tested.verdict(first_pos, firing, indexes, rules, levels)
    assert lead.rule is not None
    because = f"{where}: {_cause(lead, phase)}{_summary_of(lead.alert)}{_more(len(hits) - 1)}"
    kind, reason, mute = _judge(target, config.settings, state, now, because)
    rest = [a for i, a in enumerate(firing) if i != first_pos]
    return Decision(
        target=target.name,
        kind=kind,
        reason=reason,
        rule=lead.rule.name,
        alerts=(lead.alert, *rest),
        value=lead.value,
        threshold=lead.threshold.value if lead.threshold else None,
        mute=mute,
        why=lead.why,
        alertname=lead.alert.alertname or None,
        unit=lead.rule.unit,
        generator_url=lead.alert.generator_url or None,
        details={"triggered": str(len(hits)),
                 **({"missing": ", ".join(missing_objects(target, state))}
                    if kind is DecisionKind.MISCONFIGURED else {})},
        group_key=gk,
        external_url=url,
        phase=phase,
    )


def _warned(target: Target, state: TargetState, warnings: Sequence[Alert], where: str,
            phase: RolloutPhase | None, payload: WebhookPayload) -> Decision:
    """Warning-level alerts only: a note for people; nothing is scaled, whatever the level.

    While a rollback runs, or once the canary is rolled back, the rollback's own thread
    already tells the story: a warning about the same metric (its alert lags the
    rollback's) is answered quietly, not posted as news.
    """
    lead = warnings[0]
    names = ", ".join(dict.fromkeys(_alert_name(a) for a in warnings[:_NAMED]))
    text = lead.annotations.get("value")
    value = parse_number(text, "none") if text is not None else None
    level = lead.annotations.get("threshold") or lead.labels.get("threshold")
    crossed = f" crossed its warning level {level}" if level else " crossed its warning level"
    what = f"{names}{crossed}{_summary_of(lead)}{_more(len(warnings) - _NAMED, 'warning')}"
    kind, reason = (
        DecisionKind.WARNED,
        f"warning for {target.name} {where}: {what}; nothing is changed for a warning "
        "(warnings reach people, not the cluster)",
    )
    if state.rollback_running:
        kind, reason = (DecisionKind.IN_PROGRESS, f"a rollback of {target.name} is already running "
                        f"({state.rollback_running}); nothing to tell for the warning: {what}")
    elif _already_rolled_back(target, state):
        kind, reason = (DecisionKind.ALREADY_ROLLED_BACK, f"{target.name} is already rolled back "
                        f"({target.canary} at 0); nothing to tell for the warning: {what}")
    return Decision(
        target=target.name,
        kind=kind,
        reason=reason,
        alerts=tuple(warnings),
        value=value,
        why=AlertReason.WARNING,
        alertname=lead.alertname or None,
        generator_url=lead.generator_url or None,
        details={"warnings": str(len(warnings)), **({"level": level} if level else {})},
        group_key=payload.group_key,
        external_url=payload.external_url,
        phase=phase,
    )


@lru_cache(maxsize=8)  # a few configs live at once (reloads, tests)
def _selectors_for(
    rules: tuple[tuple[str, ...], ...], targets: tuple[tuple[str, ...], ...]
) -> tuple[_Selector, tuple[_Selector, ...]]:
    def parsed(texts: tuple[str, ...]) -> tuple[Matcher, ...]:
        return tuple(m for text in texts for m in parse_matchers(text))

    return _Selector([parsed(r) for r in rules]), tuple(_Selector([parsed(t)]) for t in targets)


def _selectors(config: Config) -> tuple[_Selector, tuple[_Selector, ...]]:
    """The rule and target selectors of a config, built once per set of matchers.

    Memoisation only: keyed by the matcher texts themselves (not the object's id, which
    is reused once a config is collected), so decide stays pure and a copy of a config
    with other matchers can never get stale selectors.
    """
    return _selectors_for(tuple(tuple(r.matchers) for r in config.rules),
                          tuple(tuple(t.matchers) for t in config.targets))


def decide(
    payload: WebhookPayload,
    config: Config,
    states: Mapping[str, TargetState],
    now: datetime,
) -> list[Decision]:
    """Return one Decision per configured target the payload's alerts belong to.

    Only targets named in config are considered: alert labels select among them and
    can never name a Deployment. Pure and deterministic (same inputs, same list, in
    config order), which is what makes repeated deliveries safe: the state passed in
    turns a repeat into IN_PROGRESS or ALREADY_ROLLED_BACK.
    """
    rule_selector, target_selectors = _selectors(config)
    alerts = payload.alerts
    decisions: list[Decision] = []
    for target, selector in zip(config.targets, target_selectors, strict=True):
        found = selector.indexes(alerts)
        mine = [a for a, i in zip(alerts, found, strict=True) if i is not None]
        if not mine:
            continue
        state = states.get(target.name) or TargetState()
        decisions.append(_decide_target(target, mine, config, rule_selector, state, now, payload))
    return decisions
