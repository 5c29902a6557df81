"""The rollback's steps against the simulator, over real HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from receiver.domain.kube_views import deployment_view
from receiver.domain.rollback import Phase
from receiver.domain.settings import StepOrder
from receiver.kube import Kube, Mirror
from receiver.kube.records import ANN_LAST
from receiver.rollback.executor import new_record
from receiver.rollback.steps import Run, RunContext
from tests.executor.conftest import CANARY, NS, STABLE, MakeExecutor, Seen, decision, make_config


def replicas(sim, name: str) -> int:  # type: ignore[no-untyped-def]
    return int(sim.get("deployments", NS, name)["spec"].get("replicas", 0))


def scale_patches(sim, name: str | None = None) -> list:  # type: ignore[no-untyped-def]
    """Scale PATCHes the API server accepted."""
    return [r for r in sim.requests.matching(method="PATCH", resource="deployments/scale",
                                             name=name)
            if r.status < 300]


async def test_week_one_rolls_back_canary_first_and_verifies_every_stable_pod_ready(
    kube_sim, make_executor: MakeExecutor
) -> None:
    seen = Seen()
    ex = make_executor(on_change=seen)
    record = await ex.claim(decision(), make_config().targets[0])
    assert record is not None and record.phase is Phase.STARTED
    final = await ex.start(record)

    assert final.phase is Phase.SUCCEEDED, final.error
    assert final.order == StepOrder.CANARY_FIRST.value
    assert [s.name for s in final.steps][:4] == ["preflight", "order", "scale-canary", "scale-stable"]
    assert "4 of 5 pods Ready" in next(s.message for s in final.steps if s.name == "order")
    assert replicas(kube_sim, CANARY) == 0 and replicas(kube_sim, STABLE) == 5
    pods = [p for p in kube_sim.list("pods", NS, label_selector="version=v1")
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 5
    assert all(any(c["type"] == "Ready" and c["status"] == "True"
                   for c in p["status"]["conditions"]) for p in pods)
    assert final.progress.stable_ready == 5 and final.progress.canary_replicas == 0
    # progress was reported as it happened, not only at the end
    assert any(r.progress.stable_ready == 4 for r in seen.records)
    # merge-patch on the scale subresource, as kubectl scale sends it
    patches = scale_patches(kube_sim)
    assert [p.name for p in patches] == [CANARY, STABLE]
    assert all(p.content_type == "application/merge-patch+json" for p in patches)
    assert [p.json() for p in patches] == [{"spec": {"replicas": 0}}, {"spec": {"replicas": 5}}]


async def test_week_three_scales_the_stable_first_and_the_service_never_drops_to_zero_ready(
    kube_sim, make_executor: MakeExecutor
) -> None:
    kube_sim.scale_as(NS, STABLE, 1, field_manager="kubectl")
    kube_sim.scale_as(NS, CANARY, 4, field_manager="kubectl")

    def settled() -> bool:
        return (kube_sim.get("deployments", NS, STABLE)["status"].get("readyReplicas") == 1
                and kube_sim.get("deployments", NS, CANARY)["status"].get("readyReplicas") == 4)

    await kube_sim.wait_for(settled, 10)
    ex = make_executor()
    mirror = Mirror(ex.kube, "pods", NS)
    lowest: list[int] = []

    def serving(kind: str, obj: object) -> None:
        lowest.append(sum(
            1 for p in mirror.items.values()
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in (p.get("status") or {}).get("conditions") or [])
        ))

    mirror.subscribe(serving)
    mirror.start()
    await mirror.ready()
    try:
        record = await ex.claim(decision(), make_config().targets[0])
        assert record is not None
        final = await ex.start(record)
    finally:
        await mirror.stop()

    assert final.phase is Phase.SUCCEEDED, final.error
    assert final.order == StepOrder.STABLE_FIRST.value
    names = [s.name for s in final.steps]
    assert names.index("scale-stable") < names.index("verify") < names.index("scale-canary")
    assert "1 of 5 pods Ready" in next(s.message for s in final.steps if s.name == "order")
    assert lowest and min(lowest) >= 1, "the service had no Ready pod at some point"
    assert replicas(kube_sim, CANARY) == 0 and replicas(kube_sim, STABLE) == 5


async def test_a_crash_looping_stable_fails_within_the_timeout_naming_the_pods_and_reason(
    kube_sim, make_executor: MakeExecutor
) -> None:
    kube_sim.set_pod_behavior(NS, STABLE, "crashloop")
    ex = make_executor(config=make_config(verification_timeout_seconds=2))
    record = await ex.claim(decision(), make_config().targets[0])
    assert record is not None
    final = await ex.start(record)

    assert final.phase is Phase.FAILED
    assert final.error is not None and "CrashLoopBackOff" in final.error
    assert "not verified within 2 s" in final.error
    assert any("CrashLoopBackOff" in n for n in final.progress.not_ready)
    verify = [s for s in final.steps if s.name == "verify"][-1]
    assert not verify.ok


async def test_a_missing_stable_fails_with_the_api_servers_message_and_leaves_the_canary_alone(
    kube_sim, make_executor: MakeExecutor
) -> None:
    cfg = make_config(target={"stable": "finance-service-v0"})
    ex = make_executor(config=cfg)
    record = await ex.claim(decision(), cfg.targets[0])
    assert record is not None
    final = await ex.start(record)

    assert final.phase is Phase.FAILED
    assert 'deployments.apps "finance-service-v0" not found' in (final.error or "")
    assert scale_patches(kube_sim) == []
    assert replicas(kube_sim, CANARY) == 1


async def test_a_target_already_rolled_back_is_only_verified_with_no_scale_request(
    kube_sim, make_executor: MakeExecutor
) -> None:
    ex = make_executor()
    target = make_config().targets[0]
    first = await ex.start(await ex.claim(decision(), target))  # type: ignore[arg-type]
    assert first.phase is Phase.SUCCEEDED
    before = len(scale_patches(kube_sim))

    second_record = await ex.claim(decision(), target)
    assert second_record is not None and second_record.id != first.id
    second = await ex.start(second_record)
    assert second.phase is Phase.SUCCEEDED
    assert len(scale_patches(kube_sim)) == before
    assert "nothing to change" in next(s.message for s in second.steps if s.name == "order")


async def test_the_outcome_is_annotated_on_both_deployments_and_posted_as_events(
    kube_sim, make_executor: MakeExecutor
) -> None:
    ex = make_executor()
    final = await ex.start(await ex.claim(decision(), make_config().targets[0]))  # type: ignore[arg-type]
    assert final.phase is Phase.SUCCEEDED

    for name in (STABLE, CANARY):
        ann = json.loads(kube_sim.get("deployments", NS, name)["metadata"]["annotations"][ANN_LAST])
        assert ann["id"] == final.id and ann["outcome"] == "succeeded"
        assert ann["why"] == "error-rate: 7.2 % > 5 %" and ann["when"]
    events = [e for e in kube_sim.list("events", NS)
              if e.get("reportingController") == "rollback-receiver.io/receiver"
              or (e.get("source") or {}).get("component") == "rollback-receiver.io/receiver"
              or e.get("reportingComponent") == "rollback-receiver.io/receiver"]
    regarding = {(e.get("regarding") or e.get("involvedObject") or {}).get("name") for e in events}
    assert regarding == {STABLE, CANARY}


async def test_a_dry_run_reads_the_cluster_and_changes_nothing(
    kube_sim, make_executor: MakeExecutor
) -> None:
    ex = make_executor()
    final = await ex.run_manual(make_config().targets[0], "alice", dry_run=True)
    assert final.phase is Phase.SUCCEEDED and final.dry_run
    assert "would scale finance-service-v2 1 -> 0" in final.steps[-1].message
    assert [r for r in kube_sim.requests if r.method != "GET"] == []


async def test_rollbacks_over_the_limit_wait_and_say_so(
    kube_sim, make_executor: MakeExecutor
) -> None:
    cfg = make_config(max_concurrent_rollbacks=1)
    seen = Seen()
    ex = make_executor(config=cfg, on_change=seen)
    target = cfg.targets[0]
    # another rollback holds the only slot
    await ex._slots.acquire(lambda running, limit: None)
    record = await ex.claim(decision(), target)
    assert record is not None
    task = ex.start(record)
    waiting = await _next_record(seen, lambda r: r.phase is Phase.WAITING)
    assert "limit 1" in waiting.steps[-1].message
    await ex._slots.release()
    final = await task
    assert final.phase is Phase.SUCCEEDED


async def _next_record(seen: Seen, pred):  # type: ignore[no-untyped-def]
    import asyncio

    fut: asyncio.Future = asyncio.get_running_loop().create_future()
    for r in seen.records:
        if pred(r):
            return r

    def hook(record, step) -> None:  # type: ignore[no-untyped-def]
        if pred(record) and not fut.done():
            fut.set_result(record)

    seen.hooks.append(hook)
    async with asyncio.timeout(10):
        return await fut


async def test_kube_gateway_reports_missing_objects_with_the_api_servers_message(
    kube_sim, kube_api
) -> None:
    from receiver.kube import KubeError

    kube = Kube(kube_api)
    try:
        await kube.read_deployment(NS, "nope")
    except KubeError as e:
        assert e.status == 404 and e.message == 'deployments.apps "nope" not found'
        assert not e.transient
    else:
        raise AssertionError("expected a KubeError")


async def test_progress_deadline_exceeded_fails_at_once_without_waiting_for_the_timeout(
    kube_sim, kube_api, make_executor: MakeExecutor
) -> None:
    # a stable stuck mid-rollout of a crashing template (a complete Deployment that is only
    # scaled never reports ProgressDeadlineExceeded, in Kubernetes as in the simulator)
    ex = make_executor(config=make_config(verification_timeout_seconds=30))
    kube_sim.set_pod_behavior(NS, STABLE, "crashloop")
    await ex.kube.call("restart stable", ex.kube.apps.patch_namespaced_deployment, STABLE, NS,
                       {"spec": {"progressDeadlineSeconds": 1, "template": {"metadata": {
                           "annotations": {"restartedAt": "now"}}}}},
                       _content_type="application/merge-patch+json")
    final = await ex.start(await ex.claim(decision(), make_config().targets[0]))  # type: ignore[arg-type]
    assert final.phase is Phase.FAILED
    # the deadline's own words, not the 30 s verification timeout's
    assert "exceeded its progress deadline" in (final.error or "")
    assert "not verified within" not in (final.error or "")


async def test_the_rollback_events_show_in_kubectl_get_events(
    kube_sim, kubectl, make_executor: MakeExecutor
) -> None:
    ex = make_executor()
    final = await ex.start(await ex.claim(decision(), make_config().targets[0]))  # type: ignore[arg-type]
    assert final.phase is Phase.SUCCEEDED
    result = await kubectl("get", "events", "-n", NS)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "RolledBack" in line]
    assert any(f"deployment/{CANARY}" in line for line in lines), result.stdout
    assert any(f"deployment/{STABLE}" in line for line in lines), result.stdout


async def test_with_wait_for_canary_pods_gone_it_ends_only_when_no_canary_pod_is_left(
    kube_sim, make_executor: MakeExecutor
) -> None:
    kube_sim.termination_grace = 0.3
    cfg = make_config(wait_for_canary_pods_gone=True)
    ex = make_executor(config=cfg)
    final = await ex.start(await ex.claim(decision(), cfg.targets[0]))  # type: ignore[arg-type]
    assert final.phase is Phase.SUCCEEDED, final.error
    gone = next(s for s in final.steps if s.name == "canary-gone")
    assert gone.ok and f"{CANARY} has no pods left" == gone.message
    assert kube_sim.list("pods", NS, label_selector="version=v2") == []
    assert final.progress.canary_pods == 0


async def test_without_a_configured_timeout_verification_gives_up_at_the_progress_deadline(
    kube_sim, make_executor: MakeExecutor
) -> None:
    cfg = make_config(verification_timeout_seconds=None)
    assert cfg.settings.verification_timeout_seconds is None
    ex = make_executor(config=cfg)
    kube_sim.set_pod_behavior(NS, STABLE, "never-ready")
    await ex.kube.call("set deadline", ex.kube.apps.patch_namespaced_deployment, STABLE, NS,
                       {"spec": {"progressDeadlineSeconds": 2}},
                       _content_type="application/merge-patch+json")
    final = await ex.start(await ex.claim(decision(), cfg.targets[0]))  # type: ignore[arg-type]

    assert final.phase is Phase.FAILED
    # the 2 s progress deadline, not the 300 s default: the wait it reports is the deadline's
    assert "not verified within 2 s" in (final.error or ""), final.error


async def test_the_verification_timeout_is_the_configured_one_else_the_deadline_else_300_s(
    kube_sim, make_executor: MakeExecutor
) -> None:
    ex = make_executor()
    stable = await ex.kube.read_deployment(NS, STABLE)
    assert stable["spec"]["progressDeadlineSeconds"] == 600  # as the seed (and defaulting) set

    def timeout(deploy: dict, **settings: object) -> float:  # type: ignore[type-arg]
        cfg = make_config(**settings)
        run = Run(RunContext(kube=ex.kube, watches=ex.watches, identity="test",
                             on_change=lambda r, s: None, clock=lambda: datetime.now(UTC)),
                  config=cfg, target=cfg.targets[0],
                  record=new_record(decision(), cfg.targets[0], cfg, datetime.now(UTC)),
                  held=None)
        return run.timeout(deployment_view(deploy))

    assert timeout(stable, verification_timeout_seconds=7) == 7
    assert timeout(stable, verification_timeout_seconds=None) == 600
    del stable["spec"]["progressDeadlineSeconds"]  # a server that does not default it
    assert timeout(stable, verification_timeout_seconds=None) == 300
