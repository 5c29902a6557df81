"""One replicas rule on the cluster: a Deployment that is not there has no replica count."""

from __future__ import annotations

from datetime import UTC, datetime

from receiver.domain.kube_views import deployment_view
from receiver.domain.rollback import Phase
from receiver.kube.targets import state_of
from tests.executor.conftest import STABLE, MakeExecutor, Seen, decision, make_config


async def test_a_missing_canary_is_reported_as_not_there_rather_than_at_zero_replicas(
    kube_sim, make_executor: MakeExecutor
) -> None:
    cfg = make_config(target={"canary": "finance-service-v3"})  # v3 does not exist
    seen = Seen()
    ex = make_executor(config=cfg, on_change=seen)
    record = await ex.claim(decision(), cfg.targets[0])
    assert record is not None
    final = await ex.start(record)

    assert final.phase is Phase.SUCCEEDED, final.error
    assert "finance-service-v3 does not exist" in final.steps[0].message
    assert all(r.progress.canary_replicas is None for r in seen.records)
    # the webhook's view of the same target says the same
    stable = deployment_view(await ex.kube.read_deployment(cfg.targets[0].namespace, STABLE))
    state = state_of(cfg.targets[0], stable, None, True, None, False, datetime.now(UTC))
    assert (state.canary_replicas, state.canary_exists) == (None, False)
    assert final.progress.stable_replicas == state.stable_replicas == 5
