"""`receiver check-config --cluster`: the receiver's own credentials are tried against the
cluster (the simulator enforcing the shipped Role, over real HTTP) and Slack (the fake,
driven by slack-sdk), and the verdict is a table or JSON plus an exit code."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.kube import AccessRule, KubeSim
from sim.slack import FakeSlack
from tests.fixtures.kube import fast_sim

ROOT = Path(__file__).resolve().parents[2]
NS = "finance"
SLACK_TOKEN = "xoxb-check-token"


def shipped_role() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()) if d]
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == NS]
    return role


def without(role: dict[str, Any], resource: str, verb: str) -> dict[str, Any]:
    out = copy.deepcopy(role)
    for rule in out["rules"]:
        if resource in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return out


@dataclass
class Setup:
    sim: KubeSim
    slack: FakeSlack
    tmp: Path

    def config(self, prometheus: dict[str, Any] | None = None, **target: Any) -> Path:
        """The shipped config, Slack in bot mode against the fake, target fields overridden."""
        doc = yaml.safe_load((ROOT / "config.yaml").read_text())
        doc["targets"][0].update(target)
        if prometheus is not None:
            doc["prometheus"] = prometheus
        doc["slack"] = {"mode": "bot", "api_url": f"{self.slack.url}/api/", "default_channel": "#rollbacks"}
        path = self.tmp / "config.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    async def run(self, *args: str, role: dict[str, Any] | None = None,
                  slack_token: str = SLACK_TOKEN, kubeconfig: Path | None = None) -> tuple[int, str, str]:
        self.sim.tokens = {"receiver-token": AccessRule.from_role(role or shipped_role(), NS)}
        kc = kubeconfig or self.sim.write_kubeconfig(self.tmp / "kc", token="receiver-token")
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "SLACK_BOT_TOKEN")}
        env.update(KUBECONFIG=str(kc), SLACK_BOT_TOKEN=slack_token, HOME=str(self.tmp))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "receiver", "check-config", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    sim = fast_sim(tokens={})
    sim.load_manifests(KubeSim.default_manifests())
    slack = FakeSlack(SLACK_TOKEN, {"#rollbacks": "C0ROLLBACK", "#finance-alerts": "C0FINANCE"})
    await sim.start()
    await slack.start()
    try:
        yield Setup(sim, slack, tmp_path)
    finally:
        await slack.stop()
        await sim.stop()


def rows(stdout: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for r in json.loads(stdout):
        assert set(r) == {"check", "target", "result", "detail"}
        out.setdefault((r["check"], r["target"]), []).append((r["result"], r["detail"]))
    return out


async def test_the_shipped_config_and_role_pass_every_check_in_a_kubectl_like_table(setup: Setup) -> None:
    code, out, err = await setup.run(str(setup.config()), "--cluster")
    assert code == 0, out + err
    table = out[out.index("CHECK"):].splitlines()
    assert table[0].split() == ["CHECK", "TARGET", "RESULT", "DETAIL"]
    cells = [line.split(None, 3) for line in table[1:]]
    assert {c[2] for c in cells if c[0] != "prometheus"} == {"ok"}
    assert ["deployment-stable", "finance-service", "ok", "deployment finance/finance-service-v1: 4/4 ready"] in cells
    assert ["can-i", "finance-service", "ok",
            "yes: patch deployments.apps/finance-service-v2 --subresource=scale -n finance"] in cells
    assert ["lease-namespace", "finance-service", "ok", "yes: create leases.coordination.k8s.io -n finance"] in cells
    assert ["slack-auth", "-", "ok",
            "auth.test: rollback-bot in Fake Workspace (token from env SLACK_BOT_TOKEN)"] in cells
    assert ["slack-channel", "finance-service", "ok", "#rollbacks exists (id C0ROLLBACK)"] in cells
    assert ["prometheus", "-", "skip", "not configured (prometheus.url)"] in cells
    assert setup.slack.calls("conversations.list")
    assert SLACK_TOKEN not in out + err
    # nothing was changed: only reads and access reviews reached the API
    assert {(r.method, r.resource) for r in setup.sim.requests if r.resource} == {
        ("GET", "deployments"), ("POST", "selfsubjectaccessreviews")
    }


async def test_a_prometheus_that_does_not_answer_fails_its_row_with_the_reason(setup: Setup) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = setup.config(prometheus={"url": f"http://127.0.0.1:{port}"})
    code, out, _ = await setup.run(str(path), "--cluster", "-o", "json", "--request-timeout", "1s")
    assert code == 1
    ((result, detail),) = rows(out)[("prometheus", "")]
    assert result == "fail"
    assert detail.startswith(f"http://127.0.0.1:{port}: no answer from Prometheus within 1 s")


async def test_a_missing_canary_and_a_role_without_scale_fail_with_exit_1(setup: Setup) -> None:
    role = without(shipped_role(), "deployments/scale", "patch")
    code, out, err = await setup.run(str(setup.config(canary="finance-service-v3")), "--cluster", "-o", "json",
                                     role=role)
    assert code == 1, err
    found = rows(out)
    assert found[("deployment-canary", "finance-service")] == [
        ("fail", "deployment finance/finance-service-v3 not found (the canary named in config)")
    ]
    can_i = dict((d, r) for r, d in found[("can-i", "finance-service")])
    denied = "no: patch deployments.apps/finance-service-v1 --subresource=scale -n finance (no RBAC rule allows it)"
    assert can_i[denied] == "fail"
    assert can_i["yes: list pods -n finance"] == "ok"
    assert "check(s) failed" in err


async def test_a_lease_namespace_the_receiver_cannot_write_fails(setup: Setup) -> None:
    path = setup.config()
    text = path.read_text().replace("settings:\n", "settings:\n  lease_namespace: rollback-receiver\n", 1)
    path.write_text(text)
    code, out, _ = await setup.run(str(path), "--cluster", "-o", "json")
    assert code == 1
    assert rows(out)[("lease-namespace", "finance-service")] == [
        ("fail", "no: create leases.coordination.k8s.io -n rollback-receiver (no RBAC rule allows it)")
    ]


async def test_an_unknown_slack_channel_and_a_bad_token_fail(setup: Setup) -> None:
    code, out, _ = await setup.run(str(setup.config(slack_channel="#nope")), "--cluster", "-o", "json")
    assert code == 1
    assert rows(out)[("slack-channel", "finance-service")] == [
        ("fail", "#nope: no such channel among those the bot can see (channel_not_found)")
    ]
    code, out, _ = await setup.run(str(setup.config(slack_channel="C0FINANCE")), "--cluster", "-o", "json")
    assert code == 0
    assert rows(out)[("slack-channel", "finance-service")] == [("ok", "C0FINANCE exists (id C0FINANCE)")]
    assert setup.slack.calls("conversations.info")
    code, out, _ = await setup.run(str(setup.config()), "--cluster", "-o", "json", slack_token="xoxb-revoked")
    assert code == 1
    assert rows(out)[("slack-auth", "")] == [("fail", "auth.test: invalid_auth (token from env SLACK_BOT_TOKEN)")]
    assert "xoxb-revoked" not in out


async def test_an_unreachable_cluster_is_one_failure_and_the_rest_skipped(setup: Setup, tmp_path: Path) -> None:
    kc = tmp_path / "dead"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "u"}}],
    }))
    code, out, _ = await setup.run(str(setup.config()), "--cluster", "-o", "json", kubeconfig=kc)
    assert code == 1
    found = rows(out)
    ((result, detail),) = found[("deployment-stable", "finance-service")]
    assert result == "fail" and detail.startswith("cannot reach http://127.0.0.1:1:")
    assert {r for r, _ in found[("can-i", "finance-service")]} == {"skip"}
    assert found[("slack-auth", "")][0][0] == "ok"


async def test_an_invalid_file_exits_2_before_any_cluster_check(setup: Setup, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text((ROOT / "config.yaml").read_text().replace("""['service="finance-service"', 'version!="v1"']""",
                                                              "[]"))
    code, out, err = await setup.run(str(path), "--cluster", "-o", "json")
    assert code == 2, out + err
    ((result, detail),) = rows(out)[("config", "")]
    assert result == "fail" and "target 'finance-service' must select by at least one equality matcher" in detail
    assert not [r for r in setup.sim.requests if r.resource]
