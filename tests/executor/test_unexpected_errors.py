"""A rollback that meets something nobody foresaw still ends, is recorded and lets go."""

from __future__ import annotations

from receiver.domain.rollback import Phase
from receiver.kube.lease import holder, record_from_lease
from sim.kube import KubeSim
from tests.executor.conftest import NS, STABLE, MakeExecutor, Seen, decision, make_config

LEASE = "rollback-finance-service"


async def test_an_unexpected_error_ends_the_rollback_failed_notified_and_the_lease_released(
    kube_sim: KubeSim, make_executor: MakeExecutor,
) -> None:
    cfg = make_config()
    seen = Seen()
    ex = make_executor(config=cfg, on_change=seen)
    # a 200 whose Deployment is not what any API server sends: replicas as a word
    kube_sim.faults.fail(verb="get", resource="deployments", name=STABLE, status=200,
                         body=b'{"metadata": {"name": "finance-service-v1"}, '
                              b'"spec": {"replicas": "five"}}')
    record = await ex.claim(decision(), cfg.targets[0])
    assert record is not None

    final = await ex.start(record)

    assert final.phase is Phase.FAILED
    assert final.error is not None and "ValueError" in final.error
    assert not any(r.verb == "patch" for r in kube_sim.requests)
    lease = kube_sim.get("leases", NS, LEASE)
    assert holder(lease) == ""
    stored = record_from_lease(lease)
    assert stored is not None and stored.id == record.id and stored.phase is Phase.FAILED
    assert seen.records[-1].phase is Phase.FAILED
    assert any(s.name == "error" and not s.ok for s in seen.steps)
    assert ex.running == 0
