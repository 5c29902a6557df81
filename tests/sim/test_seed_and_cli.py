"""The seed manifests are the phased-rollout example's week 1, and `receiver sim` serves them."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.kube import KubeSim

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "phased-rollout"
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def _docs(text: str) -> dict[tuple[str, str], Any]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}


def _kustomize(week: int) -> dict[tuple[str, str], Any]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(EXAMPLE / f"week-{week}")], check=True, capture_output=True, text=True, timeout=30
    )
    return _docs(out.stdout)


@needs_kubectl
def test_the_seed_is_what_kustomize_builds_for_week_1() -> None:
    seed = "".join(p.read_text() for p in sorted(KubeSim.default_manifests().glob("*.yaml")))
    assert _docs(seed) == _kustomize(1)


@needs_kubectl
@pytest.mark.parametrize(("week", "v1", "v2"), [(1, 4, 1), (2, 2, 3), (3, 1, 4), (4, 0, 5)])
def test_each_week_overlay_sets_the_phase_split(week: int, v1: int, v2: int) -> None:
    docs = _kustomize(week)
    replicas = {name: d["spec"]["replicas"] for (kind, name), d in docs.items() if kind == "Deployment"}
    assert replicas == {"finance-service-v1": v1, "finance-service-v2": v2}


def test_the_seed_deployments_match_the_brief() -> None:
    docs = _docs("".join(p.read_text() for p in KubeSim.default_manifests().glob("*.yaml")))
    assert docs[("Namespace", "finance")]
    for name, version, replicas in (("finance-service-v1", "v1", 4), ("finance-service-v2", "v2", 1)):
        d = docs[("Deployment", name)]
        assert d["metadata"]["namespace"] == "finance"
        assert d["spec"]["replicas"] == replicas
        assert d["spec"]["selector"]["matchLabels"] == {"app": "finance-service", "version": version}
        assert d["spec"]["progressDeadlineSeconds"] == 600
        assert d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]


async def test_seed_week_moves_the_split(kube_sim: KubeSim) -> None:
    kube_sim.seed_week(3)
    v1 = kube_sim.get("deployments", "finance", "finance-service-v1")
    v2 = kube_sim.get("deployments", "finance", "finance-service-v2")
    assert v1 is not None and v2 is not None
    assert (v1["spec"]["replicas"], v2["spec"]["replicas"]) == (1, 4)
    await kube_sim.wait_for(lambda: len(kube_sim.list("pods", "finance", "version=v2")) == 4)


@needs_kubectl
async def test_receiver_sim_serves_until_sigterm_and_prints_a_kubectl_hint(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver",
        "sim",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        "--ready-delay",
        "0.05",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    lines = []
    try:
        while not any(line.startswith("Press Ctrl+C") for line in lines):
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "receiver sim exited early"
            lines.append(line.strip())
        assert lines[0].startswith("Kubernetes API simulator listening on http://127.0.0.1:")
        assert f"kubectl --kubeconfig {kubeconfig} get deploy,pods" in "\n".join(lines)
        out = await asyncio.create_subprocess_exec(
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            f"--cache-dir={tmp_path / 'cache'}",
            "get",
            "deploy",
            "-o",
            "name",
            stdout=asyncio.subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
        )
        stdout, _ = await out.communicate()
        assert stdout.decode().split() == ["deployment.apps/finance-service-v1", "deployment.apps/finance-service-v2"]
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 20)
    assert rc == 0
