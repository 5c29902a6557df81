"""Core v1 ConfigMaps in the simulator, as kubectl and kubernetes-asyncio see a real API server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from sim.kube import AccessRule, KubeSim
from tests.fixtures.kube import Kubectl, fast_sim

NS = "finance"


def message(err: ApiException) -> str:
    return str(json.loads(err.body)["message"])


def manifest(name: str, data: dict[str, str]) -> str:
    lines = [f"  {k}: {v!r}" for k, v in data.items()]
    return "\n".join(["apiVersion: v1", "kind: ConfigMap", "metadata:", f"  name: {name}",
                      f"  namespace: {NS}", "data:", *lines]) + "\n"


async def test_kubectl_creates_a_config_map_and_get_cm_counts_its_keys(kubectl: Kubectl) -> None:
    r = await kubectl("create", "configmap", "flags", "--from-literal=color=blue", "--from-literal=size=2")
    assert (r.returncode, r.stdout.strip()) == (0, "configmap/flags created"), r.stderr
    r = await kubectl("get", "cm")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0] == ["NAME", "DATA", "AGE"]
    assert [cells[:2] for cells in rows[1:]] == [["flags", "2"]]
    r = await kubectl("get", "configmap", "flags", "-o", "jsonpath={.data.color}")
    assert (r.returncode, r.stdout) == (0, "blue")


async def test_kubectl_apply_creates_then_configures_and_an_unchanged_apply_says_so(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    path = tmp_path / "cm.yaml"
    path.write_text(manifest("app-settings", {"mode": "safe"}))
    r = await kubectl("apply", "-f", str(path))
    assert (r.returncode, r.stdout.strip()) == (0, "configmap/app-settings created"), r.stderr
    path.write_text(manifest("app-settings", {"mode": "fast", "extra": "1"}))
    r = await kubectl("apply", "-f", str(path))
    assert (r.returncode, r.stdout.strip()) == (0, "configmap/app-settings configured"), r.stderr
    r = await kubectl("apply", "-f", str(path))
    assert (r.returncode, r.stdout.strip()) == (0, "configmap/app-settings unchanged"), r.stderr
    r = await kubectl("get", "cm", "app-settings", "-o", "jsonpath={.data.mode},{.data.extra}")
    assert r.stdout == "fast,1"


async def test_a_key_that_is_no_config_key_is_refused_with_the_api_servers_words(
    kubectl: Kubectl, tmp_path: Path, kube_sim: KubeSim
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(manifest("bad", {"not a key": "x", "..hidden": "y"}))
    r = await kubectl("apply", "-f", str(path))
    assert r.returncode == 1
    assert 'The ConfigMap "bad" is invalid' in r.stderr
    assert ("data[not a key]: Invalid value: \"not a key\": a valid config key must consist of "
            "alphanumeric characters, '-', '_' or '.'") in r.stderr
    assert "data[..hidden]: Invalid value: \"..hidden\": must not start with '..'" in r.stderr
    assert kube_sim.get("configmaps", NS, "bad") is None


async def test_data_over_one_mebibyte_is_refused_and_nothing_is_stored(
    kube_api: ApiClient, kube_sim: KubeSim
) -> None:
    core = client.CoreV1Api(kube_api)
    big = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="big"),
                             data={"a": "x" * (512 * 1024), "b": "y" * (512 * 1024 + 1)})
    with pytest.raises(ApiException) as e:
        await core.create_namespaced_config_map(NS, big)
    assert e.value.status == 422
    assert message(e.value) == 'ConfigMap "big" is invalid: : Too long: may not be more than 1048576 bytes'
    assert kube_sim.get("configmaps", NS, "big") is None
    exactly = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="big"), data={"a": "x" * (1024 * 1024)})
    created = await core.create_namespaced_config_map(NS, exactly)
    assert len(created.data["a"]) == 1024 * 1024


async def test_an_update_with_a_stale_resource_version_gets_409_and_changes_nothing(kube_api: ApiClient) -> None:
    core = client.CoreV1Api(kube_api)
    first = await core.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="state"), data={"n": "1"}))
    assert isinstance(first, client.V1ConfigMap)
    second = await core.patch_namespaced_config_map("state", NS, {"data": {"n": "2"}})
    assert second.metadata.resource_version != first.metadata.resource_version
    first.data = {"n": "stale"}
    with pytest.raises(ApiException) as e:
        await core.replace_namespaced_config_map("state", NS, first)
    assert e.value.status == 409
    assert message(e.value).startswith(
        'Operation cannot be fulfilled on configmaps "state": the object has been modified')
    assert (await core.read_namespaced_config_map("state", NS)).data == {"n": "2"}
    with pytest.raises(ApiException) as again:
        await core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="state")))
    assert (again.value.status, "AlreadyExists" in again.value.body) == (409, True)


async def test_an_immutable_config_map_refuses_a_change_of_its_data(kube_api: ApiClient) -> None:
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_config_map(NS, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="frozen"), data={"k": "1"}, immutable=True))
    with pytest.raises(ApiException) as e:
        await core.patch_namespaced_config_map("frozen", NS, {"data": {"k": "2"}})
    assert (e.value.status, message(e.value)) == (
        422, 'ConfigMap "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set')
    assert (await core.read_namespaced_config_map("frozen", NS)).data == {"k": "1"}
    labelled = await core.patch_namespaced_config_map("frozen", NS, {"metadata": {"labels": {"a": "b"}}})
    assert labelled.metadata.labels == {"a": "b"}  # metadata may still change


async def test_a_watch_sees_a_config_map_added_modified_and_deleted(kube_api: ApiClient) -> None:
    core = client.CoreV1Api(kube_api)
    listed = await core.list_namespaced_config_map(NS)
    seen: list[tuple[str, dict[str, str] | None]] = []

    async def follow() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(core.list_namespaced_config_map, NS,
                                        resource_version=listed.metadata.resource_version, timeout_seconds=10):
                seen.append((event["type"], event["object"].data))
                if event["type"] == "DELETED":
                    return

    follower = asyncio.create_task(follow())
    await core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w"),
                                                                   data={"k": "1"}))
    await core.patch_namespaced_config_map("w", NS, {"data": {"k": "2"}})
    await core.delete_namespaced_config_map("w", NS)
    await asyncio.wait_for(follower, 10)
    assert seen == [("ADDED", {"k": "1"}), ("MODIFIED", {"k": "2"}), ("DELETED", {"k": "2"})]


async def test_a_role_limited_to_one_config_map_by_name_cannot_read_another(tmp_path: Path) -> None:
    rules = [AccessRule(["get", "update"], [""], ["configmaps"], [NS], ["allowed"]),
             AccessRule(["list", "watch", "create"], [""], ["configmaps"], [NS])]
    sim = fast_sim(tokens={"t": rules})
    sim.load_manifests(KubeSim.default_manifests())
    await sim.start()
    api = await config.new_client_from_config(config_file=str(sim.write_kubeconfig(tmp_path / "kc", token="t")))
    try:
        core = client.CoreV1Api(api)
        for name in ("allowed", "other"):
            await core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name)))
        assert (await core.read_namespaced_config_map("allowed", NS)).metadata.name == "allowed"
        with pytest.raises(ApiException) as e:
            await core.read_namespaced_config_map("other", NS)
        assert e.value.status == 403
        assert message(e.value) == ('configmaps "other" is forbidden: User "t" cannot get resource "configmaps" '
                                    'in API group "" in the namespace "finance"')
        with pytest.raises(ApiException) as gone:
            await core.delete_namespaced_config_map("allowed", NS)
        assert gone.value.status == 403
    finally:
        await api.close()
        await sim.stop()
