"""SelfSubjectAccessReview: `kubectl auth can-i` and kubernetes-asyncio ask the simulator
"may I?" and get the answer the token's rules give, as from a real API server."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from sim.kube import AccessRule, KubeSim
from tests.fixtures.kube import Kubectl, fast_sim

NS = "finance"
ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "Role",
    "metadata": {"name": "rollback-receiver", "namespace": NS},
    "rules": [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "verbs": ["patch"],
            "resourceNames": ["finance-service-v1", "finance-service-v2"],
        },
    ],
}


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A throwaway certificate: kubectl sends a bearer token only over TLS."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[KubeSim, Path]]:
    sim = fast_sim(tokens={"receiver-token": AccessRule.from_role(ROLE, NS), "nobody": []})
    sim.load_manifests(KubeSim.default_manifests())
    await sim.start(ssl_context=_self_signed(tmp_path))
    try:
        yield sim, tmp_path
    finally:
        await sim.stop()


def _kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed")
    return Kubectl(kubeconfig, tmp_path / f"cache-{kubeconfig.name}", binary)


async def test_kubectl_auth_can_i_says_yes_only_for_what_the_role_grants(
    secured: tuple[KubeSim, Path],
) -> None:
    sim, tmp_path = secured
    kubectl = _kubectl(sim.write_kubeconfig(tmp_path / "receiver", token="receiver-token"), tmp_path)
    r = await kubectl("auth", "can-i", "patch", "deployments/finance-service-v2", "--subresource=scale", "-n", NS)
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), r.stderr
    r = await kubectl("auth", "can-i", "patch", "deployments/other", "--subresource=scale", "-n", NS)
    assert (r.returncode, r.stdout.strip()) == (1, "no"), r.stderr
    r = await kubectl("auth", "can-i", "list", "deployments", "-n", NS)
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), r.stderr
    r = await kubectl("auth", "can-i", "list", "deployments", "-n", "billing")
    assert (r.returncode, r.stdout.strip()) == (1, "no"), r.stderr
    # deployments/scale as TYPE/NAME is a Deployment named "scale": not granted by name
    r = await kubectl("auth", "can-i", "patch", "deployments/scale", "-n", NS)
    assert (r.returncode, r.stdout.strip()) == (1, "no"), r.stderr
    reviews = sim.requests.matching(method="POST", resource="selfsubjectaccessreviews")
    assert reviews and {q.status for q in reviews} == {201}


async def test_a_token_without_any_rules_may_still_ask_and_hears_no(secured: tuple[KubeSim, Path]) -> None:
    sim, tmp_path = secured
    kubectl = _kubectl(sim.write_kubeconfig(tmp_path / "nobody", token="nobody"), tmp_path)
    r = await kubectl("auth", "can-i", "get", "pods", "-n", NS)
    assert (r.returncode, r.stdout.strip()) == (1, "no"), r.stderr


async def test_an_unknown_token_cannot_ask_at_all(secured: tuple[KubeSim, Path]) -> None:
    sim, tmp_path = secured
    api = await config.new_client_from_config(config_file=str(sim.write_kubeconfig(tmp_path / "bad", token="x")))
    try:
        with pytest.raises(ApiException) as e:
            await client.AuthorizationV1Api(api).create_self_subject_access_review(
                client.V1SelfSubjectAccessReview(
                    spec=client.V1SelfSubjectAccessReviewSpec(
                        resource_attributes=client.V1ResourceAttributes(verb="get", resource="pods", namespace=NS)
                    )
                )
            )
        assert e.value.status == 401
    finally:
        await api.close()


async def test_kubernetes_asyncio_reads_allowed_and_reason_from_the_review(secured: tuple[KubeSim, Path]) -> None:
    sim, tmp_path = secured
    api = await config.new_client_from_config(
        config_file=str(sim.write_kubeconfig(tmp_path / "receiver", token="receiver-token"))
    )
    try:
        authz = client.AuthorizationV1Api(api)

        async def ask(**attrs: str) -> client.V1SubjectAccessReviewStatus:
            review = await authz.create_self_subject_access_review(
                client.V1SelfSubjectAccessReview(
                    spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(**attrs))
                )
            )
            assert review.kind == "SelfSubjectAccessReview"
            assert review.spec.resource_attributes.verb == attrs["verb"]
            return review.status

        yes = await ask(verb="patch", group="apps", resource="deployments", subresource="scale",
                        name="finance-service-v1", namespace=NS)
        assert yes.allowed is True and yes.reason
        no = await ask(verb="update", group="apps", resource="deployments", subresource="scale",
                       name="finance-service-v1", namespace=NS)
        assert no.allowed is False and not no.denied
        # the collection (no name) is not covered by a rule limited to resourceNames
        assert (await ask(verb="patch", group="apps", resource="deployments", subresource="scale",
                          namespace=NS)).allowed is False
    finally:
        await api.close()


async def test_a_review_without_attributes_is_422_as_the_api_server_answers(kube_api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as e:
        await client.AuthorizationV1Api(kube_api).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec())
        )
    assert e.value.status == 422
    assert "exactly one of nonResourceAttributes or resourceAttributes must be specified" in str(e.value.body)


async def test_discovery_lists_the_authorization_group(kube_api: client.ApiClient) -> None:
    groups = await client.ApisApi(kube_api).get_api_versions()
    assert "authorization.k8s.io" in [g.name for g in groups.groups]
    resources = await client.AuthorizationV1Api(kube_api).get_api_resources()
    (ssar,) = [r for r in resources.resources if r.name == "selfsubjectaccessreviews"]
    assert (ssar.kind, ssar.namespaced, ssar.verbs) == ("SelfSubjectAccessReview", False, ["create"])
