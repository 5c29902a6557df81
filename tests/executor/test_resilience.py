"""Faults, races and crashes: the rollback still happens, once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from receiver.domain.rollback import Phase
from receiver.kube import Kube, KubeError, Mirror, new_api_client
from receiver.kube.lease import LeaseObservations, history_from_lease, holder
from receiver.kube.records import ANN_LAST
from receiver.metrics import Metrics
from sim.kube import AccessRule, KubeSim, RequestLog
from tests.executor.conftest import (
    CANARY,
    NS,
    STABLE,
    MakeExecutor,
    Seen,
    Ticks,
    decision,
    make_config,
)
from tests.executor.test_rollback import replicas, scale_patches
from tests.fixtures.kube import fast_sim


def retries(metrics: Metrics) -> float:
    return sum(s.value for m in metrics.kube_retries.collect() for s in m.samples
               if s.name.endswith("_total"))


async def test_api_faults_on_every_step_are_retried_and_the_rollback_completes(
    kube_sim, make_executor: MakeExecutor
) -> None:
    f = kube_sim.faults
    f.fail(verb="get", resource="leases", status=503, times=1)
    f.fail(verb="update", resource="leases", status=500, times=1)
    f.fail(verb="get", resource="deployments", status=500, times=2)
    f.fail(verb="patch", resource="deployments/scale", status=429, times=1, retry_after=0)
    f.fail(verb="patch", resource="deployments/scale", status=409, times=1)
    f.fail(verb="patch", resource="deployments/scale", status=503, times=1)
    f.fail(verb="list", resource="pods", status=503, times=1)
    f.fail(verb="watch", resource="pods", status=500, times=1)
    f.fail(verb="patch", resource="deployments", status=502, times=1)
    f.fail(verb="create", resource="events", status=503, times=1)
    f.drop_connections(times=2, verb="patch", resource="deployments/scale")

    ex = make_executor()
    record = await ex.claim(decision(), make_config().targets[0])
    assert record is not None
    final = await ex.start(record)

    assert final.phase is Phase.SUCCEEDED, final.error
    assert replicas(kube_sim, CANARY) == 0 and replicas(kube_sim, STABLE) == 5
    assert retries(ex.metrics) >= 8  # this test's own collectors: nothing else counted here
    assert not [s for s in final.steps if s.warning and s.name == "record"]


async def test_a_forbidden_scale_ends_the_rollback_with_the_api_servers_message(
    kube_sim, make_executor: MakeExecutor
) -> None:
    kube_sim.faults.fail(verb="patch", resource="deployments/scale", status=403, times=1)
    ex = make_executor()
    final = await ex.start(await ex.claim(decision(), make_config().targets[0]))  # type: ignore[arg-type]
    assert final.phase is Phase.FAILED
    assert "403" in (final.error or "") and "deployments/scale" in (final.error or "")


async def test_watches_cut_and_expired_mid_verification_still_end_verified(
    kube_sim, make_executor: MakeExecutor
) -> None:
    kube_sim.faults.cut_watches(after_events=2, times=4)
    kube_sim.faults.expire_next_watch(count=2)
    ex = make_executor()
    final = await ex.start(await ex.claim(decision(), make_config().targets[0]))  # type: ignore[arg-type]
    assert final.phase is Phase.SUCCEEDED, final.error
    watches = kube_sim.requests.matching(verb="watch")
    assert len(watches) >= 4, "the cut and expired streams were resumed"
    assert final.progress.stable_ready == 5


async def test_two_receivers_racing_on_one_target_make_one_rollback(
    kube_sim, make_executor: MakeExecutor
) -> None:
    a, b = make_executor("receiver-a"), make_executor("receiver-b")
    target = make_config().targets[0]
    ra, rb = await asyncio.gather(a.claim(decision(), target), b.claim(decision(), target))
    claimed = [(ex, r) for ex, r in ((a, ra), (b, rb)) if r is not None]
    assert len(claimed) == 1
    ex, record = claimed[0]
    # the loser's repeat while it runs changes nothing either
    loser = b if ex is a else a
    assert await loser.claim(decision(), target) is None
    final = await ex.start(record)
    assert final.phase is Phase.SUCCEEDED
    assert len(scale_patches(kube_sim)) == 2


async def test_a_repeat_alert_while_the_rollback_runs_here_changes_nothing(
    kube_sim, make_executor: MakeExecutor
) -> None:
    ex = make_executor()
    target = make_config().targets[0]
    record = await ex.claim(decision(), target)
    assert record is not None
    assert await ex.claim(decision(), target) is None
    await ex.start(record)


@pytest.mark.parametrize("kill_after", ["claim", "preflight", "scale-canary", "scale-stable"])
async def test_a_receiver_killed_after_a_step_is_resumed_by_another_and_completes_once(
    kube_sim, kubeconfig_path, make_executor: MakeExecutor, kill_after: str
) -> None:
    api = await new_api_client(kubeconfig_path)
    seen = Seen()
    first = make_executor("receiver-a", api=api, on_change=seen)
    record = await first.claim(decision(), make_config().targets[0])
    assert record is not None
    if kill_after != "claim":
        reached = asyncio.Event()
        seen.hooks.append(lambda r, s: s is not None and s.name == kill_after and reached.set())
        task = first.start(record)
        await reached.wait()
        task.cancel()  # the pod is killed: no release, no more renewals
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        await first._held[record.target].stop()
        first._held.clear()
    await api.close()

    # another replica starts: it first sees the dead holder's Lease now, so it waits one
    # lease duration of its own time (client-go's rule) before taking it over
    ticks = Ticks()
    later = make_executor("receiver-b", observations=LeaseObservations(ticks))
    assert await later.resume_unfinished() == []
    ticks.advance(3)
    tasks = await later.resume_unfinished()
    assert len(tasks) == 1
    final = await tasks[0]

    assert final.id == record.id and final.phase is Phase.SUCCEEDED, final.error
    assert any(s.name == "resume" for s in final.steps)
    assert replicas(kube_sim, CANARY) == 0 and replicas(kube_sim, STABLE) == 5
    for name in (CANARY, STABLE):
        # exactly once: the dead receiver's requests were all answered before the other
        # started (same event loop), and the resumer reads the cluster before scaling
        assert len(scale_patches(kube_sim, name)) == 1
    lease = kube_sim.get("leases", NS, "rollback-finance-service")
    assert lease["spec"]["holderIdentity"] in ("", None)
    assert lease["spec"]["leaseTransitions"] >= 1
    assert [r.id for r in history_from_lease(lease)] == [record.id]
    # nothing left to resume: it completed once
    assert await later.resume_unfinished() == []


async def test_a_live_holders_unfinished_rollback_is_not_taken_over(
    kube_sim, make_executor: MakeExecutor
) -> None:
    a = make_executor("receiver-a")
    record = await a.claim(decision(), make_config().targets[0])
    assert record is not None
    b = make_executor("receiver-b")
    assert await b.resume_unfinished() == []
    assert await b.claim(decision(), make_config().targets[0]) is None
    await a.start(record)


async def test_graceful_close_hands_an_unfinished_rollback_to_the_next_replica(
    kube_sim, make_executor: MakeExecutor
) -> None:
    seen = Seen()
    a = make_executor("receiver-a", on_change=seen)
    record = await a.claim(decision(), make_config().targets[0])
    assert record is not None
    reached = asyncio.Event()
    seen.hooks.append(lambda r, s: s is not None and s.name == "scale-canary" and reached.set())
    a.start(record)
    await reached.wait()
    await a.close(timeout=0)
    lease = kube_sim.get("leases", NS, "rollback-finance-service")
    assert lease["spec"]["holderIdentity"] in ("", None)

    b = make_executor("receiver-b")
    tasks = await b.resume_unfinished()  # no waiting for expiry: it was handed over
    assert len(tasks) == 1
    final = await tasks[0]
    assert final.id == record.id and final.phase is Phase.SUCCEEDED, final.error


async def test_a_receiver_that_loses_its_lease_stops_acting_at_once(
    kube_sim, make_executor: MakeExecutor
) -> None:
    from receiver.kube import micro_time

    kube_sim.set_pod_behavior(NS, STABLE, "never-ready")
    seen = Seen()
    a = make_executor("receiver-a", on_change=seen)
    record = await a.claim(decision(), make_config().targets[0])
    assert record is not None
    verifying = asyncio.Event()
    seen.hooks.append(lambda r, s: r.phase is Phase.VERIFYING and verifying.set())
    task = a.start(record)
    await verifying.wait()

    # an operator (or a replica with a skewed clock) takes the Lease over
    lease = await a.kube.read_lease(NS, "rollback-finance-service")
    lease["spec"].update(holderIdentity="intruder", renewTime=micro_time(),
                         leaseDurationSeconds=60)
    await a.kube.replace_lease(NS, "rollback-finance-service", lease)

    final = await task
    # stopped on losing the Lease: not declared failed (as the 20 s verification timeout
    # would have), the new holder owns the outcome
    assert not final.phase.finished
    lease = kube_sim.get("leases", NS, "rollback-finance-service")
    assert lease["spec"]["holderIdentity"] == "intruder"  # not released over the new holder
    annotations = kube_sim.get("deployments", NS, STABLE)["metadata"].get("annotations") or {}
    assert ANN_LAST not in annotations  # no outcome recorded by the old holder


async def test_a_replica_with_an_outdated_view_of_the_lease_still_backs_off(
    kube_sim, make_executor: MakeExecutor
) -> None:
    a, b = make_executor("receiver-a"), make_executor("receiver-b")
    target = make_config().targets[0]
    done = await a.start(await a.claim(decision(), target))  # type: ignore[arg-type]
    assert done.phase is Phase.SUCCEEDED  # a last saw the Lease free
    held_by_b = await b.claim(decision(), target)
    assert held_by_b is not None
    assert await a.claim(decision(), target) is None  # its free copy is stale: 409, re-read
    assert kube_sim.get("leases", NS, "rollback-finance-service")["spec"][
        "holderIdentity"] == "receiver-b"
    await b.start(held_by_b)


# -- killed during and after verification, before and after the outcome is recorded ------


def outcome_events(sim, rollback_id: str) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """The rollback's Events per Deployment, as their reasons."""
    out: dict[str, list[str]] = {}
    for e in sim.list("events", NS):
        if rollback_id in (e.get("note") or e.get("message") or ""):
            name = (e.get("regarding") or e.get("involvedObject") or {}).get("name")
            out.setdefault(name, []).append(e.get("reason"))
    return out


def accepted_annotations(sim, name: str) -> int:  # type: ignore[no-untyped-def]
    return len([r for r in sim.requests.matching(method="PATCH", resource="deployments",
                                                 name=name) if r.status < 300])


class _KillOnRelease(RequestLog):
    """A request log that kills the receiver as its Lease release arrives: the outcome
    is already annotated and posted, the release itself never lands."""

    def __init__(self, sim, kill) -> None:  # type: ignore[no-untyped-def]
        super().__init__(sim.requests)
        self.sim, self.kill = sim, kill

    def append(self, r) -> None:  # type: ignore[no-untyped-def]
        super().append(r)
        body = r.json() if r.method == "PUT" and r.resource == "leases" else None
        if body and body["spec"].get("holderIdentity") == "" and self.kill is not None:
            self.sim.faults.drop_connections(times=1, verb="update", resource="leases")
            self.kill()
            self.kill = None


@pytest.mark.parametrize("kill_at", ["verifying", "verified", "outcome-recorded"])
async def test_a_receiver_killed_around_verification_is_resumed_and_records_the_outcome_once(
    kube_sim, kubeconfig_path, make_executor: MakeExecutor, kill_at: str
) -> None:
    kube_sim.ready_delay = 0.2  # the kill during verification lands before pods are Ready
    api = await new_api_client(kubeconfig_path)
    seen = Seen()
    first = make_executor("receiver-a", api=api, on_change=seen)
    record = await first.claim(decision(), make_config().targets[0])
    assert record is not None
    task = first.start(record)

    def kill() -> None:
        task.cancel()  # the pod is killed: no release, no more renewals

    if kill_at == "verifying":
        seen.hooks.append(lambda r, s: r.phase is Phase.VERIFYING and kill())
    elif kill_at == "verified":
        seen.hooks.append(lambda r, s: s is not None and s.name == "verify" and s.ok and kill())
    else:
        kube_sim.requests = _KillOnRelease(kube_sim, kill)
    with pytest.raises(asyncio.CancelledError):
        await task
    await api.close()
    written = outcome_events(kube_sim, record.id)
    if kill_at == "outcome-recorded":  # the kill came where it was meant to
        assert written == {CANARY: ["RolledBack"], STABLE: ["RolledBack"]}
    else:
        assert written == {}
        assert accepted_annotations(kube_sim, CANARY) == accepted_annotations(kube_sim, STABLE) == 0
    assert holder(kube_sim.get("leases", NS, "rollback-finance-service")) == "receiver-a"

    ticks = Ticks()
    later = make_executor("receiver-b", observations=LeaseObservations(ticks))
    assert await later.resume_unfinished() == []  # first sight: valid for a lease duration
    ticks.advance(3)
    tasks = await later.resume_unfinished()
    assert len(tasks) == 1
    final = await tasks[0]

    assert final.id == record.id and final.phase is Phase.SUCCEEDED, final.error
    assert replicas(kube_sim, CANARY) == 0 and replicas(kube_sim, STABLE) == 5
    for name in (CANARY, STABLE):
        assert len(scale_patches(kube_sim, name)) == 1
        ann = json.loads(kube_sim.get("deployments", NS, name)["metadata"]["annotations"][ANN_LAST])
        assert (ann["id"], ann["outcome"]) == (record.id, "succeeded")
        assert accepted_annotations(kube_sim, name) == 1, "the outcome was annotated twice"
    assert outcome_events(kube_sim, record.id) == {CANARY: ["RolledBack"], STABLE: ["RolledBack"]}
    lease = kube_sim.get("leases", NS, "rollback-finance-service")
    assert holder(lease) in ("", None)
    assert [r.id for r in history_from_lease(lease)] == [record.id]
    assert await later.resume_unfinished() == []


def ready_replicas(sim, name: str) -> int:  # type: ignore[no-untyped-def]
    return int(sim.get("deployments", NS, name)["status"].get("readyReplicas") or 0)


@pytest.mark.parametrize("kill_after", ["scale-stable", "verify"])
@pytest.mark.parametrize("week", [3, 4])
async def test_a_stable_first_rollback_killed_before_the_canary_is_scaled_keeps_a_ready_pod(
    kube_sim, kubeconfig_path, kube_api, make_executor: MakeExecutor, kill_after: str, week: int
) -> None:
    # week 3: v1 1 pod, v2 4; week 4: v1 0, v2 5 (where scaling the canary first would
    # leave no Ready pod). auto picks stable-first for both.
    kube_sim.seed_week(week)
    v1, v2 = {3: (1, 4), 4: (0, 5)}[week]
    await kube_sim.wait_for(lambda: (ready_replicas(kube_sim, STABLE), ready_replicas(
        kube_sim, CANARY)) == (v1, v2) and len(kube_sim.list("pods", NS)) == 5, 10)
    kube_sim.ready_delay = 0.2  # new stable pods are not Ready yet when the kill comes
    mirror = Mirror(Kube(kube_api), "pods", NS)
    lowest: list[int] = []

    def serving(kind: str, obj: object) -> None:
        lowest.append(sum(1 for p in mirror.items.values()
                          if not p["metadata"].get("deletionTimestamp") and is_ready(p)))

    mirror.subscribe(serving)
    mirror.start()
    await mirror.ready()
    try:
        api = await new_api_client(kubeconfig_path)
        seen = Seen()
        first = make_executor("receiver-a", api=api, on_change=seen)
        record = await first.claim(decision(), make_config().targets[0])
        assert record is not None
        task = first.start(record)
        seen.hooks.append(lambda r, s: s is not None and s.name == kill_after and task.cancel())
        with pytest.raises(asyncio.CancelledError):
            await task
        await api.close()
        assert replicas(kube_sim, STABLE) == 5 and replicas(kube_sim, CANARY) == v2

        ticks = Ticks()
        later = make_executor("receiver-b", observations=LeaseObservations(ticks))
        assert await later.resume_unfinished() == []  # first sight: valid for a lease duration
        ticks.advance(3)
        tasks = await later.resume_unfinished()
        assert len(tasks) == 1
        final = await tasks[0]
        await kube_sim.wait_for(lambda: not kube_sim.list("pods", NS, label_selector="version=v2"), 5)
    finally:
        await mirror.stop()

    assert final.id == record.id and final.phase is Phase.SUCCEEDED, final.error
    assert final.order == "stable-first"
    names = [s.name for s in final.steps]
    assert names.index("resume") < names.index("verify") < len(names) - 1 - names[::-1].index(
        "scale-canary")
    assert replicas(kube_sim, CANARY) == 0 and replicas(kube_sim, STABLE) == 5
    assert lowest and min(lowest) >= 1, "the service had no Ready pod at some point"
    assert len(scale_patches(kube_sim, CANARY)) == len(scale_patches(kube_sim, STABLE)) == 1


def is_ready(pod: dict) -> bool:  # type: ignore[type-arg]
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


# -- failures that retrying cannot fix end the rollback at once ------------------------------


@pytest.fixture
async def token_sim() -> AsyncIterator[KubeSim]:
    """A simulator that authenticates: only the token receiver-token is known."""
    sim = fast_sim(tokens={"receiver-token": [AccessRule(["*"], ["*"], ["*"])]})
    sim.load_manifests(KubeSim.default_manifests())
    await sim.start()
    try:
        await sim.wait_for(lambda: ready_replicas(sim, STABLE) == 4, 5)
        yield sim
    finally:
        await sim.stop()


async def test_an_unknown_token_fails_the_claim_with_401_and_nothing_is_retried(
    token_sim: KubeSim, tmp_path, make_executor: MakeExecutor
) -> None:
    api = await new_api_client(token_sim.write_kubeconfig(tmp_path / "kc", token="wrong"))
    try:
        ex = make_executor(api=api)
        token_sim.requests.clear()
        with pytest.raises(KubeError) as raised:
            await ex.claim(decision(), make_config().targets[0])
    finally:
        await api.close()
    assert (raised.value.status, raised.value.message) == (401, "Unauthorized")
    assert "401 Unauthorized" in str(raised.value) and "leases" in str(raised.value)
    # the Lease read once; the Deployment reads beside it are cancelled when it fails, so
    # they may not have been sent, but none is sent twice
    sent = [(r.verb, r.resource, r.name, r.status) for r in token_sim.requests]
    assert ("get", "leases", "rollback-finance-service", 401) in sent
    assert len(sent) == len(set(sent)) and {s[3] for s in sent} == {401}, sent
    assert {s[:3] for s in sent} <= {("get", "leases", "rollback-finance-service"),
                                     ("get", "deployments", STABLE), ("get", "deployments", CANARY)}


async def test_a_token_revoked_mid_rollback_ends_it_at_once_with_401_not_retried(
    token_sim: KubeSim, tmp_path, make_executor: MakeExecutor
) -> None:
    api = await new_api_client(token_sim.write_kubeconfig(tmp_path / "kc", token="receiver-token"))
    try:
        ex = make_executor(api=api)
        record = await ex.claim(decision(), make_config().targets[0])
        assert record is not None
        token_sim.tokens = {"rotated-token": [AccessRule(["*"], ["*"], ["*"])]}
        token_sim.requests.clear()
        with capture_logs() as logs:
            final = await ex.start(record)
    finally:
        await api.close()
    assert final.phase is Phase.FAILED
    assert final.error == ("patch deployments/scale finance/finance-service-v2: Unauthorized "
                           "(401 Unauthorized)")
    # not retried (the retry policy would keep a transient failure going for 20 s)
    assert [e for e in logs if e["event"] == "kube_retry"] == []
    assert len(token_sim.requests.matching(method="PATCH", resource="deployments/scale")) == 1
    assert replicas(token_sim, CANARY) == 1 and replicas(token_sim, STABLE) == 4


async def test_an_invalid_scale_ends_the_rollback_at_once_with_the_api_servers_422_message(
    kube_sim, make_executor: MakeExecutor
) -> None:
    # config validation rejects replicas < 1; bypass it so the API server is the one saying no
    valid = make_config(target={"step_order": "stable-first"})
    cfg = valid.model_copy(update={"targets": [valid.targets[0].model_copy(update={"replicas": -1})]})
    ex = make_executor(config=cfg)
    record = await ex.claim(decision(), cfg.targets[0])
    assert record is not None
    with capture_logs() as logs:
        final = await ex.start(record)

    assert final.phase is Phase.FAILED
    assert final.error == (
        'patch deployments/scale finance/finance-service-v1: Scale.autoscaling '
        '"finance-service-v1" is invalid: spec.replicas: Invalid value: -1: must be greater '
        'than or equal to 0 (422 Invalid)')
    assert [e for e in logs if e["event"] == "kube_retry"] == []  # a 422 is final: not retried
    assert len(kube_sim.requests.matching(method="PATCH", resource="deployments/scale")) == 1
    assert replicas(kube_sim, CANARY) == 1 and replicas(kube_sim, STABLE) == 4
