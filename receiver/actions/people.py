"""One door for every person's action, whether it comes from the CLI, HTTP or Slack.

Each action is validated first (unknown target, a time in the past, a duration that
cannot be read: ValueError with a message for a person, nothing written), then written
to the cluster, recorded as a Kubernetes Event (events.k8s.io/v1, on the target's stable
Deployment, or on the shared-state ConfigMap when it concerns every target), announced in
Slack (the target's channel) and logged. The CLI, the HTTP handlers and the Slack buttons
call these methods and nothing else, so the same checks apply wherever people act.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

import structlog

from receiver.actions.parse import format_duration, format_time, resolve_until
from receiver.domain.decisions import applied_mute
from receiver.domain.messages import SlackMessage, announcement
from receiver.domain.settings import Config, Target
from receiver.domain.shared_state import GLOBAL, BreakerState, RuntimeMute, SharedState
from receiver.kube.errors import KubeError
from receiver.kube.gateway import Kube, Obj, micro_time

if TYPE_CHECKING:
    from receiver.domain.phases import PhaseSpec
    from receiver.domain.promotion import PromotionPlan, Review
    from receiver.domain.rollback import RollbackRecord

log = structlog.get_logger(__name__)

REPORTING_CONTROLLER = "rollback-receiver.io/receiver"
Via = Literal["cli", "http", "slack"]
_VIA_WORDS = {"cli": "from the CLI", "http": "over HTTP", "slack": "from Slack"}


@dataclass(frozen=True)
class Actor:
    """Who acts, and through which door (shown in Slack, Events and logs)."""

    name: str
    via: Via
    slack_user: str | None = None  # the Slack user id when via is "slack"

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("who acts must be given (--by / by)")
        if self.via not in _VIA_WORDS:
            raise ValueError(f"via must be one of {', '.join(_VIA_WORDS)}, got {self.via!r}")

    def describe(self) -> str:
        """"alice from the CLI"."""
        return f"{self.name.strip()} {_VIA_WORDS[self.via]}"


@dataclass(frozen=True)
class Done:
    """What an action wrote, for the CLI's output and the HTTP answer."""

    message: str  # one sentence: what was written where
    mute: RuntimeMute | None = None
    breaker: BreakerState | None = None
    record: RollbackRecord | None = None
    changed: bool = True  # False: nothing to do (unmuting what was not muted, closing a closed breaker)
    warnings: tuple[str, ...] = field(default=())  # e.g. the Event could not be written


@dataclass(frozen=True)
class Promoted:
    """A promotion through the door: the plan, the gate's review, and what happened.

    ``record`` is None when nothing moved: ``refused`` (the gate is not passed and no
    reason to force it was given) or a dry run."""

    plan: PromotionPlan
    review: Review
    record: RollbackRecord | None = None
    refused: str | None = None
    dry_run: bool = False


def phases_for(config: Config, target: Target) -> tuple[PhaseSpec, ...]:
    """The target's phase list (a per-target or global setting when the config has one)."""
    from receiver.domain.phases import DEFAULT_PHASES

    return tuple(getattr(target, "phases", None) or getattr(config.settings, "phases", None) or DEFAULT_PHASES)


def phase_named(shown: str | None, phases: tuple[PhaseSpec, ...]) -> PhaseSpec | None:
    """The phase a record's ``rollout_phase`` ("week 1 (canary 1 of 5)") names, or None."""
    if not shown:
        return None
    text = shown.split(" (")[0].strip()
    return next((p for p in phases if text in (p.display, p.name)), None)


class StatePort(Protocol):
    """receiver.kube.shared_state.SharedStateStore, as far as actions use it."""

    namespace: str
    name: str
    clock: Callable[[], datetime]

    def current(self) -> SharedState: ...
    def problem(self) -> str | None: ...
    @property
    def is_current(self) -> bool: ...
    async def read(self) -> SharedState: ...
    async def set_mute(self, target: str | None, by: str, reason: str, until: datetime) -> RuntimeMute: ...
    async def clear_mute(self, target: str | None, by: str) -> RuntimeMute | None: ...
    async def close_breaker(self, by: str) -> BreakerState: ...
    def expired_since(self, since: datetime, now: datetime | None = None) -> tuple[RuntimeMute, ...]: ...


class AnnouncePort(Protocol):
    def announce(self, target: str | None, msg: SlackMessage) -> None: ...


class ManualRollbackPort(Protocol):
    """receiver.rollback.executor.Executor's manual path."""

    async def run_manual(self, target: Target, requested_by: str, dry_run: bool,
                         reason: str | None = None) -> RollbackRecord: ...


class Actions:
    """Mute, unmute, close the breaker, roll back: validated, written, recorded, announced."""

    def __init__(
        self,
        kube: Kube,
        config_provider: Callable[[], Config],
        state: StatePort,
        notifier: AnnouncePort,
        executor: ManualRollbackPort | None = None,
        *,
        identity: str = "",
    ) -> None:
        self.kube = kube
        self.config_provider = config_provider
        self.state = state
        self.notifier = notifier
        self.executor = executor
        self.identity = identity or os.environ.get("POD_NAME") or "receiver"

    # -- checks ------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.state.clock()

    def _target(self, name: str | None) -> Target | None:
        """The configured target (None for every target); ValueError naming the choices."""
        if name is None:
            return None
        config = self.config_provider()
        target = config.target(name)
        if target is None:
            names = ", ".join(sorted(t.name for t in config.targets)) or "none"
            raise ValueError(f"unknown target {name!r}; configured targets: {names}")
        return target

    def state_problem(self) -> str | None:
        """Why run-time mutes and the breaker cannot be trusted now (for /health), or None."""
        return self.state.problem()

    # -- actions -----------------------------------------------------------------------

    async def mute(self, target: str | None, *, until: datetime | timedelta | str, reason: str,
                   actor: Actor) -> Done:
        """Mute ``target`` (None: every target) until a time, or for a duration from now."""
        t = self._target(target)
        now = self._now()
        when = resolve_until(until, now)
        if not reason.strip():
            raise ValueError("a reason must be given (--reason / reason)")
        mute = await self.state.set_mute(target, actor.name, reason, when)
        what = target or "all targets"
        sentence = (f"{what} muted for {format_duration(mute.until - now)} (until {format_time(mute.until)}) "
                    f"by {actor.describe()}: {mute.reason}")
        return await self._after(t, "Mute", "Muted", sentence, actor, ":no_bell:", mute=mute)

    async def unmute(self, target: str | None, *, actor: Actor) -> Done:
        """Remove ``target``'s run-time mute (None: the every-target one). Config-file mutes
        stay (they are changed in config.yaml), and the answer says so."""
        t = self._target(target)
        removed = await self.state.clear_mute(target, actor.name)
        what = target or "all targets"
        config_mute = applied_mute(self.config_provider().settings, t, self._now())
        still = ""
        if config_mute is not None:
            still = (f"; still muted in config.yaml by {config_mute.by} ({config_mute.reason}): "
                     "change it there")
        if removed is None:
            return Done(f"{what} had no run-time mute: nothing written{still}", changed=False)
        sentence = f"{what} unmuted by {actor.describe()} (was muted by {removed.by}: {removed.reason}){still}"
        return await self._after(t, "Unmute", "Unmuted", sentence, actor, ":bell:", mute=removed)

    async def close_breaker(self, *, actor: Actor) -> Done:
        """Close the blast-radius breaker: automatic rollbacks resume."""
        started = self._now()
        breaker = await self.state.close_breaker(actor.name)
        if breaker.closed_at is None or breaker.closed_at < started:  # it was not open: the store wrote nothing
            return Done("the blast-radius breaker was not open: nothing written", breaker=breaker, changed=False)
        was = f" (opened for {', '.join(breaker.targets)})" if breaker.targets else ""
        sentence = f"blast-radius breaker closed by {actor.describe()}{was}: automatic rollbacks resume"
        return await self._after(None, "CloseBreaker", "BreakerClosed", sentence, actor,
                                 ":white_check_mark:", breaker=breaker)

    async def rollback(self, target: str, *, actor: Actor, dry_run: bool = False) -> RollbackRecord:
        """Roll ``target`` back now through the executor (same Lease, records, Events and Slack
        thread as an alert's rollback). A mute does not stop a person; the record says
        which mute it went past. Raises what run_manual raises (RollbackBusy, KubeError,
        RecordError) once validated."""
        t = self._target(target)
        assert t is not None
        if self.executor is None:
            raise RuntimeError("this receiver was built without an executor")
        reason = f"requested by {actor.describe()}"
        if (note := self.overridden_mute(t, await self.shared_state())) is not None:
            reason += f"; {note}"
        log.info("person_action", action="rollback", target=t.name, by=actor.name, via=actor.via,
                 slack_user=actor.slack_user, dry_run=dry_run)
        if not dry_run:
            try:  # the rollback's own Events follow; this one must never stop it
                await self._event(t, "Rollback", "RollbackRequested", f"rollback of {t.name} {reason}", actor)
            except KubeError as e:
                log.warning("action_event_not_recorded", action="rollback", error=str(e))
        return await self.executor.run_manual(t, actor.name, dry_run, reason=reason)

    async def promote(self, target: str, *, to: str | None = None, actor: Actor,
                      force_reason: str | None = None, dry_run: bool = False) -> Promoted:
        """Move ``target`` one phase forward (or to ``to``) after the gate's review, the
        CLI's rule: a gate that is not passed refuses unless ``force_reason`` (recorded).

        Bad input (unknown target or phase, nothing ahead, an empty reason) raises
        ValueError and changes nothing; a refusal returns ``refused`` and changes nothing;
        otherwise the promotion runs to its end under the target's Lease (the executor's
        records, Events and Slack thread). Raises PromotionBusy while the Lease is held."""
        from receiver.domain.kube_views import deployment_view
        from receiver.domain.phases import phase_of
        from receiver.domain.promotion import plan_promotion
        from receiver.rollback.executor import Executor
        from receiver.rollback.promotion import measure, promote

        t = self._target(target)
        assert t is not None
        if force_reason is not None and not force_reason.strip():
            raise ValueError("forcing the gate needs a reason (it is recorded with the promotion)")
        config = self.config_provider()
        stable_o, canary_o = await asyncio.gather(self.kube.read_deployment(t.namespace, t.stable),
                                                  self.kube.read_deployment(t.namespace, t.canary))
        stable, canary = deployment_view(stable_o), deployment_view(canary_o)
        phases = phases_for(config, t)
        current = phase_of(canary.spec_replicas, t.replicas, phases)
        plan = plan_promotion(current, stable.spec_replicas, phases, to)  # PlanError is a ValueError
        review = await measure(getattr(config, "prometheus", None), config.settings.promotion, t, plan.current)
        refused = None if review.passed or force_reason else review.verdict
        log.info("person_action", action="promote", target=t.name, by=actor.name, via=actor.via,
                 slack_user=actor.slack_user, to=plan.to.name, gate=review.verdict, forced=bool(force_reason),
                 refused=refused is not None, dry_run=dry_run)
        if dry_run or refused is not None:
            return Promoted(plan, review, refused=refused, dry_run=dry_run)
        if not isinstance(self.executor, Executor):
            raise RuntimeError("this receiver was built without an executor")
        try:  # the promotion's own Events follow; this one must never stop it
            await self._event(t, "Promote", "PromotionRequested",
                              f"promotion of {t.name} to {plan.to.display} requested by {actor.describe()}; "
                              f"{review.verdict}" + (f"; forced: {force_reason}" if force_reason and not review.passed
                                                     else ""), actor)
        except KubeError as e:
            log.warning("action_event_not_recorded", action="promote", error=str(e))
        record = await promote(self.executor, config, t, plan, review, requested_by=actor.name,
                               force_reason=force_reason)
        return Promoted(plan, review, record=record)

    async def acknowledge(self, target: str, rollback_id: str, *, actor: Actor) -> Done:
        """Record who took a rollback: a Kubernetes Event on the target's stable Deployment
        (the Slack message shows it; the thread says it)."""
        t = self._target(target)
        sentence = f"rollback {rollback_id} of {target} acknowledged by {actor.describe()}"
        log.info("person_action", action="acknowledge", target=target, rollback_id=rollback_id, by=actor.name,
                 via=actor.via, slack_user=actor.slack_user)
        warnings: list[str] = []
        try:
            await self._event(t, "Acknowledge", "RollbackAcknowledged", sentence, actor)
        except KubeError as e:
            log.error("action_event_not_recorded", action="acknowledge", error=str(e))
            warnings.append(f"the Kubernetes Event could not be written: {e}")
        return Done(sentence, warnings=tuple(warnings))

    async def shared_state(self) -> SharedState:
        """The shared state: the watch's view when running, else one GET (the CLI)."""
        if self.state.is_current:
            return self.state.current()
        try:
            return await self.state.read()
        except KubeError as e:  # only for the note on an overridden mute: never stops a rollback
            log.warning("shared_state_unread", error=str(e))
            return self.state.current()

    def overridden_mute(self, target: Target, shared: SharedState) -> str | None:
        """The active mute (config file or run time) a manual rollback goes past, or None."""
        mute = applied_mute(self.config_provider().settings, target, self._now(), shared)
        if mute is None:
            return None
        until = f"until {format_time(mute.until)}" if mute.until else "until removed"
        where = "config.yaml" if mute.source.value == "config" else "set at run time"
        return f"overrides the active mute of {mute.what(target.name)} by {mute.by} {until}: {mute.reason} ({where})"

    async def announce_expired(self, since: datetime, now: datetime | None = None) -> list[RuntimeMute]:
        """Announce mutes that expired in (since, now], once across replicas: the expiry's
        Event has a fixed name, and only the replica whose create succeeds tells Slack."""
        now = now or self._now()
        told = []
        for mute in self.state.expired_since(since, now):
            target = None if mute.target == GLOBAL else self.config_provider().target(mute.target)
            what = "all targets" if mute.target == GLOBAL else mute.target
            sentence = f"mute of {what} by {mute.by} expired at {format_time(mute.until)} ({mute.reason})"
            stamp = int(mute.until.timestamp())
            try:
                created = await self._create_event(target, "MuteExpired", "MuteExpired", sentence,
                                                   None, unique=f"mute-expired-{stamp}")
            except KubeError as e:
                log.error("mute_expiry_event_not_recorded", target=mute.target, error=str(e))
                created = True  # say it in Slack rather than not at all
            if not created:
                continue  # another replica recorded (and announced) it
            log.info("mute_expired", target=mute.target, by=mute.by, until=mute.until.isoformat())
            self.notifier.announce(target.name if target else None, announcement(sentence, ":bell:"))
            told.append(mute)
        return told

    # -- recording ---------------------------------------------------------------------

    async def _after(self, target: Target | None, action: str, reason: str, sentence: str, actor: Actor,
                     emoji: str, **done: object) -> Done:
        """Log, record the Event and announce in Slack what was written."""
        log.info("person_action", action=action, target=target.name if target else None, by=actor.name,
                 via=actor.via, slack_user=actor.slack_user, message=sentence)
        warnings: list[str] = []
        try:
            await self._event(target, action, reason, sentence, actor)
        except KubeError as e:
            log.error("action_event_not_recorded", action=action, error=str(e))
            warnings.append(f"the Kubernetes Event could not be written: {e}")
        self.notifier.announce(target.name if target else None, announcement(sentence, emoji))
        return Done(sentence, warnings=tuple(warnings), **done)  # type: ignore[arg-type]

    async def _event(self, target: Target | None, action: str, reason: str, note: str, actor: Actor | None) -> None:
        await self._create_event(target, action, reason, note, actor)

    async def _create_event(self, target: Target | None, action: str, reason: str, note: str,
                            actor: Actor | None, *, unique: str | None = None) -> bool:
        """POST the Event; False when one of that (fixed) name exists already."""
        now = self._now()
        if target is not None:
            ns, regarding = target.namespace, {"apiVersion": "apps/v1", "kind": "Deployment",
                                               "namespace": target.namespace, "name": target.stable}
        else:
            ns, regarding = self.state.namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                                                   "namespace": self.state.namespace, "name": self.state.name}
        suffix = f".{unique}" if unique else f".{action.lower()}-{int(now.timestamp() * 1e6):x}"
        base = str(regarding["name"])
        body: Obj = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": base[: 253 - len(suffix)] + suffix, "namespace": ns,
                         "annotations": {"rollback-receiver.io/by": actor.name} if actor else {}},
            "eventTime": micro_time(now.astimezone(UTC)),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.identity[:128],
            "action": action,
            "reason": reason,
            "note": note[:1024],
            "type": "Normal",
            "regarding": regarding,
        }
        try:
            await self.kube.call(f"create events {ns}", self.kube.events.create_namespaced_event, ns, body,
                                 retry_conflict=False)
        except KubeError as e:
            if e.conflict:
                return False
            raise
        return True
