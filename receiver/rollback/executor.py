"""The rollback executor: claim a target's Lease, run the steps, resume after crashes.

claim() records the intent in the cluster before anything changes (so the web layer can
answer Alertmanager 200 knowing the rollback survives this process); start() runs it in
the background under the global concurrency limit; resume_unfinished() picks up what a
dead replica left half done. The steps themselves live in receiver.rollback.steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import structlog
from kubernetes_asyncio.client import ApiClient

from receiver.domain.decisions import Decision
from receiver.domain.promotion import stopped_by_rollback
from receiver.domain.rollback import OnChange, Phase, Recovery, RecoveryOutcome, RollbackRecord, Step
from receiver.domain.settings import Config, Target
from receiver.kube import Kube, KubeError, Obj, RetryPolicy
from receiver.kube.lease import (
    LEASE_SELECTOR,
    HeldLease,
    LeaseLost,
    LeaseObservations,
    RecordError,
    history_from_lease,
    holder,
    is_expired,
    lease_name,
    lease_namespace,
    record_from_lease,
    try_acquire,
    update_lease,
    with_history,
    with_records,
)
from receiver.kube.targets import TargetWatcher
from receiver.metrics import Metrics
from receiver.rollback.steps import Run, RunContext
from receiver.rollback.verify import NamespaceWatches

log = structlog.get_logger(__name__)

PREFETCH_MAX_AGE = 1.0  # seconds a claim's reads stand in for the pre-flight reads

__all__ = ["Executor", "OnChange", "RecordError", "RollbackBusy", "TargetWatcher"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ignore(record: RollbackRecord, step: Step | None) -> None:
    return None


def _preempts(lease: Obj | None, fresh: Callable[[], RollbackRecord | None],
              current: RollbackRecord | None = None) -> bool:
    """A rollback's claim on a Lease whose live record is an unfinished promotion."""
    try:
        current = current or record_from_lease(lease)
    except RecordError:
        return False
    if current is None or not current.is_promotion or current.phase.finished:
        return False
    claim = fresh()
    return claim is not None and not claim.is_promotion


class RollbackBusy(Exception):
    """Another rollback of the target holds its Lease (manual trigger refused)."""


class _Slots:
    """At most max_concurrent_rollbacks at once; the limit follows config reloads."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self.limit = limit
        self.running = 0
        self._cond = asyncio.Condition()

    async def acquire(self, on_wait: Callable[[int, int], None]) -> None:
        async with self._cond:
            if self.running >= self.limit():
                on_wait(self.running, self.limit())
                await self._cond.wait_for(lambda: self.running < self.limit())
            self.running += 1

    async def release(self) -> None:
        async with self._cond:
            self.running -= 1
            self._cond.notify_all()


def new_record(decision: Decision | None, target: Target, config: Config, now: datetime,
               *, requested_by: str | None = None, dry_run: bool = False) -> RollbackRecord:
    """A fresh record (phase STARTED) for an alert's decision or a manual trigger."""
    alert = decision.alerts[0] if decision and decision.alerts else None
    rule = next((r for r in config.rules if decision and r.name == decision.rule), None)
    return RollbackRecord(
        id=uuid.uuid4().hex[:12],
        target=target.name,
        namespace=target.namespace,
        stable=target.stable,
        canary=target.canary,
        replicas=target.replicas,
        phase=Phase.STARTED,
        started_at=now,
        trigger="alert" if decision else "manual",
        reason=decision.reason if decision else f"manual rollback requested by {requested_by}",
        rule=decision.rule if decision else None,
        alertname=alert.labels.get("alertname") if alert else None,
        fingerprints=decision.fingerprints if decision else (),
        value=decision.value if decision else None,
        threshold=decision.threshold if decision else None,
        unit=rule.unit if rule else "none",
        requested_by=requested_by,
        generator_url=(alert.generator_url or None) if alert else None,
        external_url=(decision.external_url or None) if decision else None,
        slack_channel=None,
        dry_run=dry_run,
        rollout_phase=str(decision.phase) if decision and decision.phase else None,
        alert_started_at=alert.starts_at if alert else None,
        runbook_url=(alert.annotations.get("runbook_url") or None) if alert else None,
        # with Prometheus, an alert's rollback is followed by a recovery watch (rollback/recovery.py)
        recovery=Recovery(RecoveryOutcome.WATCHING, "", alert.starts_at,
                          config.recovery_window(target, decision.rule if decision else None))
        if alert is not None and config.prometheus is not None and not dry_run else None,
    )


class Executor:
    """Runs rollbacks; safe with several replicas sharing one cluster."""

    def __init__(
        self,
        api: ApiClient,
        config_provider: Callable[[], Config],
        identity: str,
        on_change: OnChange = _ignore,
        clock: Callable[[], datetime] = _utcnow,
        *,
        retry: RetryPolicy | None = None,
        observations: LeaseObservations | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics.create()  # a private set unless the process's is given
        self.kube = Kube(api, retry, metrics=self.metrics)
        # when each Lease was last seen to change (client-go's expiry rule); share it
        # with the TargetWatcher so changes its Lease watch saw count here too
        self.observations = observations or LeaseObservations()
        self.config_provider = config_provider
        self.identity = identity
        self.on_change = on_change
        self.clock = clock
        self.watches = NamespaceWatches(self.kube)
        self._held: dict[str, HeldLease] = {}  # target name -> lease we hold
        # one claim per target at a time: a second claim must see the first's HeldLease,
        # not our own fresh Lease mistaken for a dead holder's unfinished rollback
        self._claim_locks: dict[str, asyncio.Lock] = {}
        self._runs: dict[str, Run] = {}  # rollback id -> run in this process
        self._idle = asyncio.Event()  # set while no rollback runs here and no Lease is held by one
        self._idle.set()
        self._tasks: dict[str, asyncio.Task[RollbackRecord]] = {}
        self._slots = _Slots(lambda: self.config_provider().settings.max_concurrent_rollbacks)
        self._closing = False
        self._resumed: set[str] = set()  # ids taken over from a dead (or earlier) holder
        self._lease_cache: dict[tuple[str, str], Obj | None] = {}  # as last seen or written
        self._prefetched: dict[str, tuple[float, tuple[Obj | BaseException, Obj | BaseException]]] = {}

    # -- claiming -------------------------------------------------------------------------

    async def _acquire(
        self, target: Target, fresh: Callable[[], RollbackRecord], *, resume_only: bool = False
    ) -> RollbackRecord | None:
        lock = self._claim_locks.setdefault(target.name, asyncio.Lock())
        async with lock:
            mine = self._held.get(target.name)
            if mine is not None and not resume_only and _preempts(None, fresh, mine.record):
                await self._stop_promotion(target.name, mine)
            if target.name in self._held:
                return None  # claimed or running here already
            return await self._acquire_unlocked(target, fresh, resume_only=resume_only)

    async def _stop_promotion(self, name: str, held: HeldLease) -> None:
        """A rollback claims a target whose promotion runs in this process: stop it as if
        another replica took its Lease, and wait (briefly) until it let go of it."""
        held.lost.set()
        run = next((r for r in self._runs.values() if r.record.id == held.record.id), None)
        if run is not None and run.owner is not None and run.owner is not asyncio.current_task():
            await asyncio.wait([run.owner], timeout=5)  # the promotion's caller, once it let go

    async def _acquire_unlocked(
        self, target: Target, fresh: Callable[[], RollbackRecord], *, resume_only: bool
    ) -> RollbackRecord | None:
        config = self.config_provider()
        ns, name = lease_namespace(config, target), lease_name(target)

        duration = config.settings.lease_duration_seconds
        preempted: list[RollbackRecord] = []

        def choose(lease: Obj | None) -> RollbackRecord | None:
            h = holder(lease)
            preempted.clear()
            if not resume_only and _preempts(lease, fresh):
                preempted.extend(r for r in [record_from_lease(lease)] if r is not None)
                return fresh()  # a rollback takes a promotion's Lease: the promotion stops
            if lease is not None and h and not is_expired(
                lease, identity=self.identity, observations=self.observations,
                now=self.clock(), duration=duration,
            ) and (
                h != self.identity or not resume_only
            ):
                # a live holder: another replica's rollback, or ours. Only a resume may
                # take over a live Lease naming us (left by this identity's previous
                # life); a claim never does, it would run the same rollback twice.
                return None
            if target.name in self._held:
                return None  # already running here
            try:
                current = record_from_lease(lease)
            except RecordError as e:
                log.warning("lease_record_unreadable", lease=name, error=str(e))
                current = None
            if current is not None and not current.phase.finished and not current.dry_run \
                    and not current.is_promotion:  # a promotion is a person's: never resumed
                if not resume_only and fresh().is_promotion:
                    return None  # a dead holder's rollback comes first: the adopter resumes it
                self._resumed.add(current.id)
                return current  # a dead holder's rollback: continue it, same id and thread
            return None if resume_only else fresh()

        # Read both Deployments while taking the Lease: the reads change nothing, and the
        # scale patches that follow are absolute, so a read a few ms early is harmless.
        reads = asyncio.gather(
            self.kube.read_deployment(target.namespace, target.stable),
            self.kube.read_deployment(target.namespace, target.canary),
            return_exceptions=True,
        )
        try:
            held, seen = await try_acquire(
                self.kube, ns, name, target.name, self.identity, duration, self.clock, choose,
                cached=self._lease_cache.get((ns, name)),
            )
            self._lease_cache[(ns, name)] = seen
        except BaseException:
            reads.cancel()
            with contextlib.suppress(BaseException):
                await reads
            raise
        if held is None:
            reads.cancel()
            with contextlib.suppress(BaseException):
                await reads
            return None
        if self._held.setdefault(target.name, held) is not held:  # never replace a live one
            log.error("lease_claimed_twice", target=target.name, rollback_id=held.record.id)
            reads.cancel()
            with contextlib.suppress(BaseException):
                await reads
            return None
        for promotion in preempted:  # kept in the history the rollback writes when it ends
            held.history = with_history(held.history, stopped_by_rollback(promotion, self.clock()))
        held.start()
        try:
            stable_r, canary_r = await reads
        except BaseException:
            await held.stop()  # like a kill: the Lease expires and is resumed
            if self._held.get(target.name) is held:
                del self._held[target.name]
            raise
        self._prefetched[held.record.id] = (time.monotonic(), (stable_r, canary_r))
        return held.record

    def _fresh_reads(
        self, rollback_id: str
    ) -> tuple[Obj | BaseException, Obj | BaseException] | None:
        """The claim's Deployment reads, if the run starts right after it."""
        got = self._prefetched.pop(rollback_id, None)
        if got is None or time.monotonic() - got[0] > PREFETCH_MAX_AGE:
            return None
        return got[1]

    async def claim(self, decision: Decision, target: Target) -> RollbackRecord | None:
        """Take the target's Lease and record the intent (phase STARTED) in it.

        None when another live replica holds it or this rollback already runs here.
        Raises KubeError / RecordError when the intent cannot be recorded.
        """
        return await self._acquire(
            target, lambda: new_record(decision, target, self.config_provider(), self.clock()))

    def start(self, record: RollbackRecord) -> asyncio.Task[RollbackRecord]:
        """Run a claimed record in the background."""
        task = asyncio.create_task(self._run(record), name=f"rollback {record.id}")
        self._tasks[record.id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(record.id, None))
        return task

    async def run_manual(self, target: Target, requested_by: str, dry_run: bool,
                         reason: str | None = None) -> RollbackRecord:
        """The `receiver rollback` button: claim and run to the end."""
        fresh = new_record(None, target, self.config_provider(), self.clock(),
                           requested_by=requested_by, dry_run=dry_run)
        if reason is not None:  # e.g. where it was asked from, and the mute it overrides
            fresh = replace(fresh, reason=reason)
        if dry_run:
            return await self._run(fresh)
        record = await self._acquire(target, lambda: fresh)
        if record is None:
            raise RollbackBusy(f"another rollback of {target.name} is running "
                               "(its Lease is held); nothing was changed")
        return await self.start(record)

    async def run_promotion(self, target: Target, fresh: RollbackRecord,
                            make_run: Callable[..., Run]) -> RollbackRecord:
        """Claim the target's Lease for a promotion record and run ``make_run``'s steps.

        RollbackBusy when a rollback (or another promotion) holds the Lease. A rollback
        claiming the Lease meanwhile takes it over; the promotion then stops at its next
        Lease check and the record is returned unfinished (receiver.rollback.promotion)."""
        record = await self._acquire(target, lambda: fresh)
        if record is None or record.id != fresh.id:
            raise RollbackBusy(f"a rollback or promotion of {target.name} is running "
                               "(its Lease is held); nothing was changed")
        return await self._run(record, make_run)

    async def resume_unfinished(self) -> list[asyncio.Task[RollbackRecord]]:
        """Continue every unfinished rollback whose holder died (or was us).

        Another holder counts as dead once its Lease went a full lease duration of local
        time unchanged, so at start-up such a Lease is left alone the first time and the
        adopter (serve.adopt_orphans) takes it a lease duration later."""
        config = self.config_provider()
        tasks = []
        for target in config.targets:
            try:
                record = await self._acquire(target, lambda: None, resume_only=True)  # type: ignore[arg-type,return-value]
            except (KubeError, RecordError) as e:
                log.error("resume_failed", target=target.name, error=str(e))
                continue
            if record is not None:
                log.info("rollback_resumed", target=target.name, rollback_id=record.id)
                tasks.append(self.start(record))
        return tasks

    # -- running -------------------------------------------------------------------------

    async def _run(self, record: RollbackRecord, make_run: Callable[..., Run] = Run) -> RollbackRecord:
        target = self.config_provider().target(record.target)
        if target is None:  # removed from config.yaml since the claim: touch nothing
            failed = replace(record, phase=Phase.FAILED, finished_at=self.clock(),
                             error=f"target {record.target!r} is no longer configured")
            lease = self._held.pop(record.target, None)
            if lease is not None:
                await lease.release(failed, lease.history)
            return failed
        held = self._held.get(target.name) if not record.dry_run else None
        if held is not None and held.record.id == record.id:
            record = held.record  # may carry what was added since the claim (Slack thread)
        run = make_run(RunContext(kube=self.kube, watches=self.watches, identity=self.identity,
                             on_change=self.on_change, clock=self.clock),
                  config=self.config_provider(), target=target, record=record, held=held,
                  resumed=record.id in self._resumed, prefetched=self._fresh_reads(record.id),
                  owner=asyncio.current_task())
        self._resumed.discard(record.id)
        self._runs[record.id] = run
        self._idle.clear()
        self.metrics.rollbacks_running.inc()
        if not record.steps:
            self.metrics.rollbacks_started.labels(target.name).inc()
        slot = False
        try:
            with structlog.contextvars.bound_contextvars(
                rollback_id=record.id, target=target.name, fingerprints=list(record.fingerprints),
                phase=record.rollout_phase,
            ):
                def waiting(running: int, limit: int) -> None:
                    run.record = replace(run.record, phase=Phase.WAITING)
                    run.step("waiting", f"waiting for a free slot: {running} rollbacks running, "
                             f"limit {limit}", warning=True)

                try:
                    await self._slots.acquire(waiting)
                    slot = True
                    return await self._execute_while_held(run, held)
                except LeaseLost as e:
                    log.warning("rollback_handed_over", error=str(e))
                    return run.record
                except Exception as e:  # a bug or an answer nobody foresaw: never lose it
                    return await self._crashed(run, held, e)
        except asyncio.CancelledError:
            if held is not None:
                await held.stop()  # like a kill: no release, the Lease expires
            raise
        finally:
            if slot:
                await self._slots.release()
            self.metrics.rollbacks_running.dec()
            self._runs.pop(record.id, None)
            if held is not None:
                await held.stop()
                self._lease_cache[(held.namespace, held.name)] = held.lease
                if self._held.get(target.name) is held:
                    del self._held[target.name]
            if not self._runs:
                self._idle.set()

    async def _crashed(self, run: Run, held: HeldLease | None, err: Exception) -> RollbackRecord:
        """End a rollback that raised something unexpected: FAILED, recorded, released."""
        message = f"unexpected error: {type(err).__name__}: {err}"
        log.exception("rollback_crashed", error=message)
        with contextlib.suppress(Exception):
            run.step("error", message, ok=False)
        run.record = replace(run.record, phase=Phase.FAILED, error=message,
                             finished_at=self.clock())
        self.metrics.rollbacks_finished.labels(run.target.name, "failed").inc()
        if held is not None and not run.record.dry_run:
            try:
                async with asyncio.timeout(5):
                    await held.release(run.record, with_history(held.history, run.record))
            except Exception as e:  # best effort: otherwise the Lease expires
                log.error("lease_release_failed", error=str(e))
        try:
            self.on_change(run.record, None)
        except Exception:
            log.exception("on_change_failed")
        return run.record

    @staticmethod
    async def _execute_while_held(run: Run, held: HeldLease | None) -> RollbackRecord:
        """Run the steps, stopping them at once if another replica takes the Lease."""
        if held is None:
            return await run.execute()
        steps = asyncio.create_task(run.execute())
        lost = asyncio.create_task(held.lost.wait())
        try:
            await asyncio.wait({steps, lost}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            steps.cancel()
            await asyncio.wait([steps])
            raise
        finally:
            lost.cancel()
        if steps.done():
            return steps.result()
        steps.cancel()
        await asyncio.wait([steps])
        raise LeaseLost("another replica took the target's Lease; it continues the rollback")

    # -- records ---------------------------------------------------------------------------

    async def set_slack_thread(self, rollback_id: str, channel: str, ts: str) -> None:
        """Keep the Slack thread in the record so a restarted receiver posts there too."""
        run = self._runs.get(rollback_id)
        if run is not None:
            run.record = replace(run.record, slack_channel=channel, slack_ts=ts)
            if run.held is not None:
                run.held.update(run.record)
                await run.held.flush()
            return
        for held in self._held.values():
            if held.record.id == rollback_id:  # claimed here, not started yet
                held.update(replace(held.record, slack_channel=channel, slack_ts=ts))
                await held.flush()
                return
        def with_thread(r: RollbackRecord) -> RollbackRecord:
            return replace(r, slack_channel=channel, slack_ts=ts) if r.id == rollback_id else r

        def change(lease: Obj) -> Obj | None:
            current = record_from_lease(lease)
            history = history_from_lease(lease)
            if not (current and current.id == rollback_id) and not any(
                r.id == rollback_id for r in history
            ):
                return None
            mine = current is not None and current.id == rollback_id
            return with_records(lease, with_thread(current) if current and mine else None,
                                [with_thread(r) for r in history])

        config = self.config_provider()
        for target in config.targets:
            ns, name = lease_namespace(config, target), lease_name(target)
            try:
                if await update_lease(self.kube, ns, name, change) is not None:
                    return
            except KubeError as e:
                if not e.not_found:
                    raise
        raise RecordError(f"rollback {rollback_id} not found in any target's lease")

    async def save_recovery(self, record: RollbackRecord) -> bool:
        """Write ``record.recovery`` into its Lease (current record and history copies).

        False, writing nothing, when the stored record's recovery is already settled: another
        replica (or an earlier life of this one) told it first.
        """
        config = self.config_provider()
        target = config.target(record.target)
        if target is None:
            return False
        settled = False

        def mine(r: RollbackRecord | None) -> bool:
            return r is not None and r.id == record.id

        def fix(r: RollbackRecord) -> RollbackRecord:
            return replace(r, recovery=record.recovery) if r.id == record.id else r

        def change(lease: Obj) -> Obj | None:
            nonlocal settled
            current = record_from_lease(lease)
            history = history_from_lease(lease)
            stored = [r for r in (current, *history) if mine(r)]
            if not stored:
                return None
            if any(r is not None and r.recovery is not None and r.recovery.outcome.finished for r in stored):
                settled = True
                return None
            return with_records(lease, fix(current) if current is not None and mine(current) else None,
                                [fix(r) for r in history])

        written = await update_lease(self.kube, lease_namespace(config, target), lease_name(target), change)
        return written is not None or not settled  # not found (history trimmed): still tell it

    async def list_rollbacks(self) -> list[RollbackRecord]:
        """Running and recent rollbacks, from the Leases (the same from any replica)."""
        config = self.config_provider()
        out: dict[str, RollbackRecord] = {}
        for ns in sorted({lease_namespace(config, t) for t in config.targets}):
            body = await self.kube.list_leases(ns, LEASE_SELECTOR)
            for lease in body.get("items") or []:
                for r in history_from_lease(lease):
                    out.setdefault(r.id, r)
                try:
                    current = record_from_lease(lease)
                except RecordError:
                    continue
                if current is not None:
                    out[current.id] = current
        for rid, run in self._runs.items():
            out[rid] = run.record  # fresher than the last coalesced write
        return sorted(out.values(), key=lambda r: r.started_at, reverse=True)

    async def wait_idle(self) -> None:
        """Until no rollback runs in this process and its Lease is let go (a next claim can win)."""
        await self._idle.wait()

    @property
    def running(self) -> int:
        """How many rollbacks run in this process (waiting ones included)."""
        return len(self._runs)

    def running_records(self) -> list[RollbackRecord]:
        """Rollbacks running in this process, as they are now."""
        return [run.record for run in self._runs.values()]

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 (interface)
        """Let running rollbacks finish for up to ``timeout`` s, then hand them over.

        Anything still running is cancelled at its next await and its Lease released with
        the unfinished record, so another replica's resume_unfinished continues it at once.
        """
        self._closing = True
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        leftovers = {r.target: r for r in (run.record for run in self._runs.values())}
        held = dict(self._held)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for name, lease in held.items():
            record = leftovers.get(name, lease.record)
            with contextlib.suppress(KubeError, LeaseLost, RecordError, TimeoutError):
                async with asyncio.timeout(2):
                    await lease.release(record, lease.history)
        for lease in self._held.values():
            await lease.stop()
        self._held.clear()
        await self.watches.close()
