"""`receiver demo`: the whole chain on loopback, live in the terminal, in under a minute.

Starts the Kubernetes simulator seeded with finance-service at week 1 (v1 4 pods, v2 1
pod), the fake Slack, the receiver with the shipped config.yaml, and Debian's
Alertmanager when it is installed (else it posts Alertmanager's payload itself). With
Debian's Prometheus installed it also runs two fake finance-service pods (v1 healthy,
v2 failing 7 % of its requests) scraped by a real Prometheus, which the receiver asks
before acting (is the stable as sick?) and after (did the error rate recover?), with a
3-second recovery window. Fires the error-rate alert, shows the rollback as it happens,
the recovery confirmation, the Slack thread as people would read it, then a muted target
doing nothing but saying so. Everything it starts, it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import os
import secrets
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from receiver import logs
from receiver.domain.settings import Config, load_config
from sim.monitoring import running_alertmanager, running_prometheus

NS = "finance"
#: The demo's recovery window: the shipped 5 minutes would outlast the demo.
DEMO_RECOVERY_WINDOW = 3.0
#: HighErrorRate's expression (deploy/prometheus/rules.yml) with 5 s windows over 1 s scrapes.
ERROR_RATE = ('sum by (service, version) (rate(http_requests_total{code=~"5.."}[5s]))'
              ' / sum by (service, version) (rate(http_requests_total[5s])) > 0.05')
STABLE, CANARY = "finance-service-v1", "finance-service-v2"
#: Where the shipped config.yaml is: a checkout, the current directory, or the image.
SHIPPED_CONFIGS = (
    Path(__file__).resolve().parent.parent / "config.yaml",
    Path("config.yaml"),
    Path("/etc/receiver/config.yaml"),
)


def shipped_config() -> Path:
    return next((p for p in SHIPPED_CONFIGS if p.is_file()), SHIPPED_CONFIGS[0])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="config to start from (default: the shipped config.yaml)")
    p.add_argument(
        "--no-alertmanager", action="store_true", help="post the payload directly even if Alertmanager is installed"
    )
    p.add_argument("--ready-delay", type=float, default=1.5, help="seconds a simulated pod takes to become Ready")
    p.add_argument(
        "--no-prometheus", action="store_true", help="skip Prometheus (and the recovery check) even if installed"
    )


def _demo_config(base: Config, slack_api: str) -> dict[str, Any]:
    """The shipped config, pointed at the fake Slack; nothing else changes."""
    data = base.model_dump(mode="json", exclude_none=True)
    data["slack"] = {
        **data.get("slack", {}),
        "mode": "bot",
        "api_url": slack_api,
        "token_env": "SLACK_BOT_TOKEN",
        "default_channel": "#rollbacks",
    }
    return data


def alert_body(name: str, value: str, summary: str, generator_url: str = "http://prometheus.example/graph"
               ) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "service": "finance-service", "severity": "critical", "version": "v2"},
        "annotations": {"summary": summary, "value": value},
        "generatorURL": generator_url,
    }


@contextlib.asynccontextmanager
async def finance_service_in_prometheus(sim: Any, tmp: Path) -> Any:
    """Fake v1 (0.5 % errors) and v2 (7 %) pods scraped by Debian's Prometheus; v2 stops
    taking traffic once its Deployment is scaled to 0, as a Service would route. Yields
    Prometheus' URL once it has an error rate for both versions."""
    from sim.fake_service import start_fake_service

    v1 = await start_fake_service("v1", requests_per_second=400)
    v2 = await start_fake_service("v2", requests_per_second=100)
    v1.set_error_ratio(0.005)
    v2.set_error_ratio(0.07)

    async def v2_follows_the_cluster() -> None:
        await sim.wait_for(lambda: (sim.get("deployments", NS, CANARY) or {}).get("spec", {}).get("replicas") == 0,
                           timeout=120)
        v2.set_serving(False)

    follower = asyncio.create_task(v2_follows_the_cluster())
    rules = tmp / "rules.yml"
    rules.write_text("groups: []\n")
    try:
        async with running_prometheus([v1.metrics_url, v2.metrics_url], rules, tmp) as prom:
            value = ERROR_RATE.rsplit(">", 1)[0]
            for _ in range(150):  # rate() needs two scrapes in its window: ~2 s
                if {s["metric"].get("version") for s in await prom.query(value)} >= {"v1", "v2"}:
                    break
                await asyncio.sleep(0.1)
            yield prom.url
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await follower
        await v1.stop()
        await v2.stop()


def am_payload(alert: dict[str, Any], external_url: str = "http://127.0.0.1:9093") -> dict[str, Any]:
    """What Alertmanager would post for one firing alert (used when it is not installed)."""
    fp = secrets.token_hex(8)
    labels = alert["labels"]
    return {
        "receiver": "rollback-receiver",
        "status": "firing",
        "version": "4",
        "alerts": [
            {
                **alert,
                "status": "firing",
                "startsAt": datetime.now(UTC).isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": fp,
            }
        ],
        "groupLabels": {"alertname": labels["alertname"], "service": labels["service"]},
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"],
        "externalURL": external_url,
        "groupKey": f'{{}}:{{alertname="{labels["alertname"]}", service="finance-service"}}',
        "truncatedAlerts": 0,
    }


def alertmanager_yml(webhook_url: str, token_file: Path) -> str:
    """Debian's prometheus-alertmanager routing every alert to the receiver, bearer auth."""
    cfg = {
        "route": {
            "receiver": "rollback-receiver",
            "group_by": ["alertname", "service"],
            "group_wait": "0s",
            "group_interval": "5s",
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "rollback-receiver",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}},
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(cfg)


def _shown(mrkdwn: str) -> str:
    """Slack shows &lt; &gt; &amp; as the characters they stand for."""
    return html.unescape(mrkdwn)


def slack_lines(slack: Any, channel: str, skip: int = 0) -> list[Text]:
    """The channel as a person would read it: parents with their threads indented."""
    out: list[Text] = []
    for msg in slack.messages(channel)[skip:]:
        out.append(Text(f"● {_shown(msg.text)}", style="bold"))
        for reply in slack.thread(channel, msg.ts)[1:]:
            style = "red" if getattr(reply, "reply_broadcast", False) else "dim"
            out.append(Text(f"    ↳ {_shown(reply.text)}", style=style))
    return out


def cluster_view(sim: Any, desired: int) -> Table:
    canary = sim.get("deployments", NS, CANARY) or {}
    stable = sim.get("deployments", NS, STABLE) or {}
    c_spec = canary.get("spec", {}).get("replicas", 0)
    c_pods = len(sim.list("pods", NS, label_selector="app=finance-service,version=v2"))
    s_ready = stable.get("status", {}).get("readyReplicas", 0)
    s_spec = stable.get("spec", {}).get("replicas", 0)
    t = Table.grid(padding=(0, 2))
    t.add_row(
        Text(f"canary {CANARY}", style="magenta"),
        ProgressBar(total=max(c_pods, 1), completed=c_pods, width=30, complete_style="magenta"),
        Text(f"{c_pods} pod(s), spec {c_spec}"),
    )
    t.add_row(
        Text(f"stable {STABLE}", style="green"),
        ProgressBar(total=desired, completed=s_ready, width=30),
        Text(f"{s_ready}/{desired} Ready, spec {s_spec}"),
    )
    return t


async def run_demo(args: argparse.Namespace, console: Console) -> int:
    from receiver.cli.serve import start_receiver
    from sim.kube import KubeSim
    from sim.slack import FakeSlack

    tmp = Path(tempfile.mkdtemp(prefix="receiver-demo-"))
    base = load_config(args.config or shipped_config())
    target = base.targets[0]
    sim = KubeSim(ready_delay=args.ready_delay, termination_grace=0.5)
    sim.load_manifests(KubeSim.default_manifests())
    slack = FakeSlack(
        channels={"#rollbacks": "C0ROLLBACKS", **({target.slack_channel: "C0TARGET"} if target.slack_channel else {})}
    )
    await sim.start()
    await slack.start()
    kubeconfig = sim.write_kubeconfig(tmp / "kubeconfig")
    cfg_path = tmp / "config.yaml"
    cfg_data = _demo_config(base, slack.api_url)
    outer = contextlib.AsyncExitStack()
    prom_url = None
    if shutil.which("prometheus") is not None and not args.no_prometheus:
        prom_url = await outer.enter_async_context(finance_service_in_prometheus(sim, tmp))
        cfg_data["prometheus"] = {"url": prom_url}
        cfg_data.setdefault("settings", {})["recovery_window_seconds"] = DEMO_RECOVERY_WINDOW
    cfg_path.write_text(yaml.safe_dump(cfg_data, sort_keys=False))
    token = secrets.token_urlsafe(24)
    (tmp / "token").write_text(token)
    env = {"RECEIVER_WEBHOOK_TOKEN": token, "SLACK_BOT_TOKEN": slack.token}
    try:
        rx = await start_receiver(cfg_path, "127.0.0.1:0", kubeconfig=kubeconfig, identity="demo-receiver", env=env)
    except BaseException:
        await outer.aclose()
        raise
    channel = target.slack_channel or "#rollbacks"
    use_am = shutil.which("prometheus-alertmanager") is not None and not args.no_alertmanager
    try:
        console.rule("[bold]rollback-receiver demo")
        console.print(f"Kubernetes simulator at {sim.url} (kubeconfig {kubeconfig}), fake Slack at {slack.api_url}")
        console.print(
            f"Receiver at {rx.url} with the shipped config.yaml: target [bold]{target.name}[/], "
            f"stable {target.stable}, canary {target.canary}, full count {target.replicas}"
        )
        await sim.wait_for(lambda: _ready(sim, STABLE) == 4 and _ready(sim, CANARY) == 1, timeout=30)
        await rx.watcher.wait_synced(10)  # type: ignore[attr-defined]
        console.print("Week 1 of the phased rollout: v1 has 4 pods Ready, v2 has 1 (20 % of the traffic).\n")
        async with contextlib.AsyncExitStack() as stack:
            am_url = None
            if use_am:
                am_yml = alertmanager_yml(f"{rx.url}/webhook", tmp / "token")
                am_url = (await stack.enter_async_context(running_alertmanager(am_yml, tmp))).url
            async with aiohttp.ClientSession() as http:

                async def fire(alert: dict[str, Any]) -> None:
                    if am_url:
                        async with http.post(f"{am_url}/api/v2/alerts", json=[alert]) as r:
                            r.raise_for_status()
                    else:
                        async with http.post(
                            f"{rx.url}/webhook", json=am_payload(alert), headers={"Authorization": f"Bearer {token}"}
                        ) as r:
                            console.print(f"  receiver answered {r.status}: {json.dumps(await r.json())[:200]}")

                via = (
                    f"the real Alertmanager at {am_url}"
                    if am_url
                    else "a payload shaped like Alertmanager's (not installed)"
                )
                console.print(f"[bold red]▶ HighErrorRate fires:[/] v2 error rate 7.0 % > 5 %, sent through {via}")
                t0 = time.monotonic()
                graph = (f"{prom_url}/graph?g0.expr={quote(ERROR_RATE)}&g0.tab=1" if prom_url
                         else "http://prometheus.example/graph")
                await fire(alert_body("HighErrorRate", "0.07", "finance-service v2 error rate 7.0 %", graph))
                record = await _follow_rollback(console, rx, sim, target.replicas, within=40)
                elapsed = time.monotonic() - t0
                if prom_url and record is not None and record.phase.value == "succeeded":
                    console.print()
                    console.print(f"  watching the error rate of {STABLE} in Prometheus for "
                                  f"{DEMO_RECOVERY_WINDOW:g} s (runbook step 4) ...")
                    recovery = await _recovery_outcome(rx, record.id, within=4 * DEMO_RECOVERY_WINDOW + 5)
                    console.print(f"  [bold]recovery:[/] {recovery or 'no outcome in time'}")
                elif not prom_url:
                    console.print("  (Debian's prometheus is not installed: no recovery confirmation)")
                await slack.wait_for(lambda: _conversation_done(slack, channel), timeout=10)
                console.print()
                console.print(Panel(Group(*slack_lines(slack, channel)), title=f"Slack {channel}", border_style="blue"))
                ok = record is not None and record.phase.value == "succeeded"
                console.print(
                    Panel(
                        f"Rollback {'verified' if ok else 'NOT verified'}: {CANARY} at 0, {STABLE} "
                        f"{target.replicas}/{target.replicas} Ready.\n"
                        f"Time from alert to verified rollback: [bold]{elapsed:.1f} s[/]",
                        title="summary",
                        border_style="green" if ok else "red",
                    )
                )

                console.rule("[bold]An operator mutes the target for a planned load test")
                until = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
                for t in cfg_data["targets"]:
                    t["mute"] = {"reason": "planned load test", "by": "alice", "until": until.isoformat()}
                cfg_path.write_text(yaml.safe_dump(cfg_data, sort_keys=False))
                await rx.store.reload("demo")
                sim.scale_as(NS, CANARY, 1, field_manager="kubectl")  # the rollout resumes: v2 back to 1 pod
                sim.scale_as(NS, STABLE, 4, field_manager="kubectl")
                await sim.wait_for(lambda: _ready(sim, CANARY) == 1, timeout=10)
                before = len(slack.messages(channel))
                console.print("[bold red]▶ HighLatencyP95 fires:[/] v2 p95 1400 ms > 1000 ms, while muted")
                await fire(alert_body("HighLatencyP95", "1.4", "finance-service v2 p95 1.4 s"))
                await slack.wait_for(lambda: len(slack.messages(channel)) > before, timeout=15)
                canary = (sim.get("deployments", NS, CANARY) or {}).get("spec", {}).get("replicas")
                console.print(f"  decision: muted; cluster unchanged: {CANARY} still at {canary} replica(s)")
                console.print(
                    Panel(
                        Group(*slack_lines(slack, channel, skip=before)), title=f"Slack {channel}", border_style="blue"
                    )
                )
        console.rule("[bold]Against a real cluster")
        console.print(
            "  kubectl apply -k deploy/                      # the receiver, its RBAC and config\n"
            "  add deploy/alertmanager/alertmanager.yml's route and receiver to Alertmanager\n"
            "  receiver serve --config config.yaml           # or locally: uses $KUBECONFIG like kubectl\n"
            "  receiver rollback finance-service --config config.yaml --dry-run   # the manual button"
        )
        return 0 if ok else 1
    finally:
        await rx.stop(grace=5)
        await outer.aclose()
        await slack.stop()
        await sim.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _conversation_done(slack: Any, channel: str) -> bool:
    """The parent shows the outcome and the verify step has its reply in the thread."""
    msgs = slack.messages(channel)
    if not msgs or not any(w in msgs[0].text for w in ("rolled back in", "failed")):
        return False
    return any(r.text.startswith("verify") or "verify" in r.text for r in slack.thread(channel, msgs[0].ts)[1:])


async def _recovery_outcome(rx: Any, rollback_id: str, within: float) -> str | None:
    """The recovery watch's message once it is in the record, polled (bounded)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for r in await rx.executor.list_rollbacks():
            if r.id == rollback_id and r.recovery is not None and r.recovery.outcome.finished:
                return str(r.recovery.message)
        await asyncio.sleep(0.2)
    return None


def _ready(sim: Any, name: str) -> int:
    return int(((sim.get("deployments", NS, name) or {}).get("status") or {}).get("readyReplicas", 0))


async def _follow_rollback(console: Console, rx: Any, sim: Any, desired: int, within: float) -> Any:
    """Show the cluster live until the rollback record is finished (or timeout)."""
    seen_steps = 0
    deadline = time.monotonic() + within
    record = None
    with Live(cluster_view(sim, desired), console=console, refresh_per_second=10, transient=False) as live:
        while time.monotonic() < deadline:
            records = await rx.executor.list_rollbacks()
            record = max(records, key=lambda r: r.started_at, default=None)
            if record is not None:
                if seen_steps == 0 and record.steps:
                    live.console.print(f"  [bold]decision: roll back[/] — {_shown(record.reason)}")
                for step in record.steps[seen_steps:]:
                    mark = "✔" if step.ok and not step.warning else ("⚠" if step.warning else "✘")
                    took = f" ({step.duration_seconds:.2f} s)" if step.duration_seconds is not None else ""
                    live.console.print(f"  {mark} {step.name}: {step.message}{took}")
                seen_steps = len(record.steps)
                if record.phase.finished:
                    live.update(cluster_view(sim, desired))
                    break
            live.update(cluster_view(sim, desired))
            await asyncio.sleep(0.1)  # screen refresh rate, not a wait for an event
    return record


def run(args: argparse.Namespace) -> int:
    logs.configure(json=True, level="error")
    os.environ.setdefault("COLUMNS", "110")
    console = Console()
    return asyncio.run(run_demo(args, console))
