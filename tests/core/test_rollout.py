"""Rollout status says what `kubectl rollout status` says; pods say why they are not Ready."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.domain import rollout
from receiver.domain.kube_views import deployment_view, pod_view
from receiver.domain.rollout import RolloutStatus, Verification, choose_order
from receiver.domain.settings import StepOrder

NAME = "finance-service-v1"


# The rules take typed views; the tests write objects as `kubectl get -o json` shows
# them and go through the same builders the adapters use.
def rollout_status(d: dict[str, Any]) -> RolloutStatus:
    return rollout.rollout_status(deployment_view(d))


def stable_verified(d: dict[str, Any], pods: list[dict[str, Any]]) -> Verification:
    return rollout.stable_verified(deployment_view(d), [pod_view(p) for p in pods])


def why_not_ready(p: dict[str, Any]) -> str:
    return rollout.why_not_ready(pod_view(p))


def deployment(
    replicas: int | None = 5,
    generation: int = 2,
    observed: int = 2,
    status_replicas: int = 5,
    updated: int = 5,
    available: int = 5,
    progressing_reason: str = "NewReplicaSetAvailable",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "finance-service", "v": "1"}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "metadata": {"name": NAME, "namespace": "finance", "generation": generation},
        "spec": spec,
        "status": {
            "observedGeneration": observed,
            "replicas": status_replicas,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": progressing_reason},
            ],
        },
    }


def pod(
    name: str,
    ready: bool = True,
    *,
    waiting: str | None = None,
    restarts: int = 0,
    deleting: bool = False,
    phase: str = "Running",
    scheduled: tuple[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    conditions: list[dict[str, Any]] = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": scheduled[0], "message": scheduled[1]})
    meta: dict[str, Any] = {"name": name, "labels": labels or {"app": "finance-service", "v": "1"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-27T04:00:00Z"
    statuses = (
        []
        if scheduled
        else [{"name": "app", "ready": ready, "restartCount": restarts, "state": state, "started": True}]
    )
    return {
        "metadata": meta,
        "status": {"phase": phase, "conditions": conditions, "containerStatuses": statuses},
    }


# --- rollout_status: kubectl's rules and messages ------------------------------------


def test_a_fully_available_deployment_is_successfully_rolled_out() -> None:
    s = rollout_status(deployment())
    assert (s.done, s.failed) == (True, False)
    assert s.message == 'deployment "finance-service-v1" successfully rolled out'


def test_an_unobserved_spec_change_waits() -> None:
    s = rollout_status(deployment(generation=3, observed=2))
    assert not s.done
    assert s.message == "Waiting for deployment spec update to be observed..."


def test_an_exceeded_progress_deadline_fails() -> None:
    s = rollout_status(deployment(available=2, progressing_reason="ProgressDeadlineExceeded"))
    assert (s.done, s.failed) == (False, True)
    assert s.message == 'deployment "finance-service-v1" exceeded its progress deadline'


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"updated": 3, "status_replicas": 3, "available": 3},
            'Waiting for deployment "finance-service-v1" rollout to finish: '
            "3 out of 5 new replicas have been updated...",
        ),
        (
            {"status_replicas": 7},
            'Waiting for deployment "finance-service-v1" rollout to finish: 2 old replicas are pending termination...',
        ),
        (
            {"available": 4},
            'Waiting for deployment "finance-service-v1" rollout to finish: 4 of 5 updated replicas are available...',
        ),
    ],
)
def test_unfinished_rollouts_wait_with_kubectls_message(kwargs: dict[str, Any], message: str) -> None:
    s = rollout_status(deployment(**kwargs))
    assert (s.done, s.failed, s.message) == (False, False, message)


def test_a_deployment_without_spec_replicas_waits_for_one_replica_as_the_api_server_defaults_it() -> None:
    # kubectl's Spec.Replicas != nil guard never fires on an object read from the API:
    # the server defaults spec.replicas to 1, and so does the one replicas rule here.
    s = rollout_status(deployment(replicas=None, updated=0, status_replicas=0, available=0))
    assert (s.done, s.message) == (
        False,
        'Waiting for deployment "finance-service-v1" rollout to finish: 0 out of 1 new replicas have been updated...',
    )
    assert rollout_status(deployment(replicas=None, updated=1, status_replicas=1, available=1)).done


def test_scaling_to_zero_is_rolled_out_when_everything_is_gone() -> None:
    d = deployment(replicas=0, status_replicas=0, updated=0, available=0)
    assert rollout_status(d).done


# --- pods --------------------------------------------------------------------------


def test_pod_readiness_follows_the_ready_condition() -> None:
    assert pod_view(pod("a")).ready
    assert not pod_view(pod("a", ready=False)).ready
    assert not pod_view({"metadata": {"name": "bare"}}).ready


def test_a_pod_with_a_deletion_timestamp_is_terminating() -> None:
    assert pod_view(pod("a", deleting=True)).terminating
    assert not pod_view(pod("a")).terminating


@pytest.mark.parametrize(
    ("p", "why"),
    [
        (pod("a", False, waiting="CrashLoopBackOff", restarts=3), "CrashLoopBackOff (restarts 3)"),
        (pod("a", False, waiting="ImagePullBackOff"), "ImagePullBackOff"),
        (pod("a", False, waiting="ErrImagePull"), "ErrImagePull"),
        (pod("a", False, waiting="ContainerCreating"), "ContainerCreating"),
        (pod("a", False), "readiness probe failing"),
        (
            pod(
                "a", False, phase="Pending", scheduled=("Unschedulable", "0/3 nodes are available: 3 Insufficient cpu.")
            ),
            "not scheduled: 0/3 nodes are available: 3 Insufficient cpu.",
        ),
        (pod("a", False, deleting=True), "terminating"),
        (pod("a"), "ready"),
    ],
)
def test_a_pod_says_why_it_is_not_ready(p: dict[str, Any], why: str) -> None:
    assert why_not_ready(p) == why


def test_an_oom_killed_container_names_its_exit() -> None:
    p = pod("a", False, restarts=2)
    p["status"]["containerStatuses"][0]["state"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    assert why_not_ready(p) == "OOMKilled (exit code 137, restarts 2)"


def test_with_several_containers_the_failing_one_is_named() -> None:
    p = pod("a", False, waiting="CrashLoopBackOff", restarts=5)
    p["status"]["containerStatuses"].insert(
        0, {"name": "sidecar", "ready": True, "restartCount": 0, "state": {"running": {}}}
    )
    assert why_not_ready(p) == "app: CrashLoopBackOff (restarts 5)"


# --- stable_verified -----------------------------------------------------------------


def test_rolled_out_with_every_pod_ready_is_verified() -> None:
    v = stable_verified(deployment(), [pod(f"p{i}") for i in range(5)])
    assert (v.done, v.failed, v.ready, v.desired, v.not_ready) == (True, False, 5, 5, ())
    assert "all 5 pods are Ready" in v.message


def test_a_crashing_pod_blocks_verification_even_when_rolled_out() -> None:
    pods = [pod(f"p{i}") for i in range(5)] + [pod("p5", False, waiting="CrashLoopBackOff", restarts=3)]
    v = stable_verified(deployment(), pods)
    assert not v.done and not v.failed
    assert v.not_ready == ("p5: CrashLoopBackOff (restarts 3)",)
    assert "p5: CrashLoopBackOff (restarts 3)" in v.message


def test_terminating_failed_and_unselected_pods_are_not_counted() -> None:
    pods = [pod(f"p{i}") for i in range(5)]
    pods.append(pod("old", False, deleting=True))
    pods.append(pod("evicted", False, phase="Failed"))
    pods.append(pod("canary", False, labels={"app": "finance-service", "v": "2"}))
    assert stable_verified(deployment(), pods).done


def test_a_pod_list_behind_the_status_does_not_pass_early() -> None:
    v = stable_verified(deployment(), [pod(f"p{i}") for i in range(4)])
    assert not v.done
    assert "4 of 5 pods are Ready" in v.message


def test_a_rollout_still_in_progress_reports_kubectls_message() -> None:
    pods = [pod(f"p{i}") for i in range(4)] + [pod("p4", False, waiting="ContainerCreating")]
    v = stable_verified(deployment(available=4), pods)
    assert not v.done
    assert v.message.startswith('Waiting for deployment "finance-service-v1" rollout to finish: 4 of 5')
    assert "p4: ContainerCreating" in v.message


def test_a_progress_deadline_fails_verification() -> None:
    v = stable_verified(deployment(available=1, progressing_reason="ProgressDeadlineExceeded"), [])
    assert v.failed and not v.done


def test_a_deployment_without_a_selector_verifies_no_pod_rather_than_every_pod() -> None:
    # apps/v1 requires a selector; one read without it must not adopt the namespace's pods
    d = deployment()
    del d["spec"]["selector"]
    v = stable_verified(d, [pod(f"p{i}") for i in range(5)])
    assert (v.done, v.ready) == (False, 0)
    d["spec"]["selector"] = {}
    assert stable_verified(d, [pod(f"p{i}") for i in range(5)]).ready == 0


def test_match_expressions_select_pods_like_the_api_server() -> None:
    d = deployment()
    d["spec"]["selector"] = {
        "matchLabels": {"app": "finance-service"},
        "matchExpressions": [{"key": "v", "operator": "In", "values": ["1"]}],
    }
    pods = [pod(f"p{i}") for i in range(5)]
    pods.append(pod("v2", False, labels={"app": "finance-service", "v": "2"}))
    assert stable_verified(d, pods).done


# --- choose_order ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready", "order"),
    [
        (5, StepOrder.CANARY_FIRST),
        (4, StepOrder.CANARY_FIRST),  # week 1: v1 has 4 of 5
        (3, StepOrder.CANARY_FIRST),  # 3*2 >= 5
        (2, StepOrder.STABLE_FIRST),  # week 2: 2 of 5
        (1, StepOrder.STABLE_FIRST),  # week 3
        (0, StepOrder.STABLE_FIRST),  # week 4
    ],
)
def test_auto_goes_canary_first_only_with_half_the_stable_ready(ready: int, order: StepOrder) -> None:
    got, reason = choose_order(StepOrder.AUTO, ready, 5)
    assert got is order
    assert f"{ready} of 5 pods Ready" in reason


def test_an_explicit_order_is_kept_and_a_risky_one_is_flagged() -> None:
    order, reason = choose_order(StepOrder.CANARY_FIRST, 0, 5)
    assert order is StepOrder.CANARY_FIRST
    assert "as configured" in reason and "capacity is short" in reason
    order, reason = choose_order(StepOrder.STABLE_FIRST, 5, 5)
    assert order is StepOrder.STABLE_FIRST
    assert "as configured" in reason
