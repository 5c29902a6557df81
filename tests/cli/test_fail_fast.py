"""Commands that talk to the cluster fail fast, in kubectl's words (--request-timeout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.kube.client import KubeconfigError, new_api_client
from receiver.kube.retry import parse_duration
from tests.cli.helpers import config_file, free_port, kubeconfig_for, receiver


async def test_a_dry_run_against_an_unreachable_cluster_prints_each_retry_then_one_sentence(
    tmp_path: Path,
) -> None:
    server = f"https://127.0.0.1:{free_port()}"
    kubeconfig = kubeconfig_for(tmp_path / "kubeconfig", server)
    r = await receiver("rollback", "finance-service", "--dry-run", "--config", str(config_file(tmp_path)),
                       "--kubeconfig", str(kubeconfig), "--request-timeout", "1s")
    assert r.code == 1
    lines = r.err.strip().splitlines()
    assert f"cannot reach {server}: connection refused; retrying for" in lines[0]
    assert lines[-1].startswith(f"Unable to connect to the server {server}: connection refused")
    assert "Traceback" not in r.err


async def test_a_missing_kubeconfig_is_named_with_the_problem_and_exit_2(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    r = await receiver("rollback", "finance-service", "--config", str(config),
                       "--kubeconfig", "./missing.yaml", cwd=tmp_path)
    assert r.code == 2
    assert r.err.strip() == "error: kubeconfig ./missing.yaml: no such file"


async def test_without_a_kubeconfig_outside_a_pod_it_says_where_a_cluster_is_looked_for(
    tmp_path: Path,
) -> None:
    r = await receiver("rollback", "finance-service", "--config", str(config_file(tmp_path)),
                       env={"HOME": str(tmp_path)}, drop=("KUBECONFIG", "KUBERNETES_SERVICE_HOST"))
    assert r.code == 2
    assert r.err.strip() == "error: no cluster found: set KUBECONFIG or run inside a pod"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty, no cluster defined"),
        ("clusters: [", "not valid YAML"),
        ("apiVersion: v1\nkind: Config\nusers:\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
         "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
         "context 'x' names user 'u', which is not defined"),
        ("apiVersion: v1\nkind: Config\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
         "context 'x' names cluster 'c', which is not defined"),
        ("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
         "contexts: [{name: x, context: {cluster: c}}]\n", "no current-context set; pass --context"),
    ],
)
async def test_a_broken_kubeconfig_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(content)
    with pytest.raises(KubeconfigError) as e:
        await new_api_client(path)
    assert str(e.value).startswith(f"kubeconfig {path}: {problem}")


async def test_an_unknown_context_is_named(tmp_path: Path) -> None:
    path = kubeconfig_for(tmp_path / "kubeconfig", "https://127.0.0.1:1")
    with pytest.raises(KubeconfigError, match=f"kubeconfig {path}: context 'prod' not found"):
        await new_api_client(path, "prod")


@pytest.mark.parametrize(("text", "seconds"),
                         [("30s", 30), ("1m", 60), ("1m30s", 90), ("500ms", 0.5), ("0", 0), ("5", 5)])
def test_request_timeout_reads_kubectls_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


async def test_a_bad_request_timeout_is_a_one_line_usage_error(tmp_path: Path) -> None:
    r = await receiver("rollback", "finance-service", "--config", str(config_file(tmp_path)),
                       "--request-timeout", "soon")
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1
    assert "--request-timeout: invalid duration 'soon'" in r.err
