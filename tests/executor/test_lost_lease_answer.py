"""A Lease write that lands but whose answer is lost is still ours: the claim holds."""

from __future__ import annotations

from receiver.kube.lease import holder
from sim.kube import KubeSim
from tests.executor.conftest import CANARY, NS, MakeExecutor, decision, make_config

LEASE = "rollback-finance-service"


async def test_a_second_rollback_whose_lease_answer_is_lost_still_runs_at_once(
    kube_sim: KubeSim, make_executor: MakeExecutor,
) -> None:
    cfg = make_config()
    ex = make_executor(config=cfg)
    target = cfg.targets[0]
    first = await ex.claim(decision("first episode"), target)
    assert first is not None
    assert (await ex.start(first)).phase.value == "succeeded"

    # the canary comes back; this process's second rollback writes the Lease from its
    # cached copy, the write lands, its answer is lost and the gateway's re-send gets 409
    kube_sim.scale_as(NS, CANARY, 1, field_manager="argocd-controller")
    kube_sim.faults.drop_responses(times=1, verb="update", resource="leases")
    second = await ex.claim(decision("second episode"), target)

    assert second is not None, "our own landed write was taken for another holder's"
    assert second.id != first.id
    assert holder(kube_sim.get("leases", NS, LEASE)) == "receiver-a"
    assert (await ex.start(second)).phase.value == "succeeded"
    canary = kube_sim.get("deployments", NS, CANARY)
    assert canary is not None and canary["spec"]["replicas"] == 0
