"""Typed views of Deployments: the one replicas rule and what they carry."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.domain.kube_views import deployment_view, ready_replicas, replicas


def deploy(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "finance-service-v2", "namespace": "finance", "resourceVersion": "42",
                     "annotations": {"a": "b"},
                     "managedFields": [
                         {"manager": "argocd", "time": "2026-11-27T04:00:00Z",
                          "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                         {"manager": "kubectl", "fieldsV1": {"f:metadata": {}}},
                     ]},
        "spec": {"selector": {"matchLabels": {"app": "finance-service"}},
                 "template": {"metadata": {"labels": {"app": "finance-service"}},
                              "spec": {"containers": [{"name": "app", "image": "finance:2"}]}},
                 **spec},
        "status": {"readyReplicas": 2},
    }


def test_a_missing_deployment_has_no_replicas_not_zero() -> None:
    assert replicas(None) is None
    assert ready_replicas(None) is None


def test_a_deployment_without_spec_replicas_has_one_as_the_api_server_defaults_it() -> None:
    assert replicas(deployment_view(deploy())) == 1


def test_a_deployment_scaled_to_zero_has_zero_replicas() -> None:
    assert replicas(deployment_view(deploy(replicas=0))) == 0


def test_a_view_carries_what_the_steps_read() -> None:
    d = deployment_view(deploy(replicas=3, progressDeadlineSeconds=600))
    assert (d.name, d.namespace, d.resource_version) == ("finance-service-v2", "finance", "42")
    assert (d.spec_replicas, d.ready_replicas, d.progress_deadline_seconds) == (3, 2, 600)
    assert d.images == ("finance:2",)
    assert d.template_labels == {"app": "finance-service"}
    assert d.annotations == {"a": "b"}
    assert [(o.manager, o.time) for o in d.replicas_owners] == [("argocd", "2026-11-27T04:00:00Z")]


def test_a_deployment_with_an_empty_selector_selects_no_pods() -> None:
    assert deployment_view(deploy(selector={})).selector is None


def test_a_deployment_whose_replicas_are_not_a_number_is_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match=r"spec\.replicas is not an integer"):
        deployment_view(deploy(replicas="five"))
