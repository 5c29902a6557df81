"""What the on-call person reads on a real rollback's parent: images, replicas before ->
after, who started it, timings and the alert's own runbook, through the simulator and the
fake Slack (real serve, real slack-sdk, over HTTP)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from receiver.cli.serve import start_receiver
from receiver.domain.rollback import RollbackRecord
from receiver.domain.settings import load_config
from receiver.kube.lease.codec import ANN_RECORD, encode_record, record_from_lease
from sim.kube import KubeSim
from sim.slack import FakeSlack
from tests.fixtures.receiver import firing_payload

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = "https://runbooks.example.com/high-error-rate?step=rollback"


def shown(blocks: list[dict[str, Any]]) -> str:
    """Every mrkdwn text of the blocks, as Slack renders them (entities decoded)."""
    out: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "text" and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(blocks)
    return "\n".join(out).replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")


async def test_a_real_rollback_parent_shows_images_replica_changes_who_started_it_timings_and_the_alerts_runbook(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    slack = FakeSlack(channels={"#rollbacks": "C0ROLLBACKS"})
    await slack.start()
    cfg = load_config(ROOT / "config.yaml").model_dump(mode="json", exclude_none=True)
    cfg["slack"].update(mode="bot", api_url=slack.api_url)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {"RECEIVER_WEBHOOK_TOKEN": "hook-t0ken", "SLACK_BOT_TOKEN": slack.token}
    payload = firing_payload()
    started = datetime.now(UTC) - timedelta(seconds=30)
    payload["alerts"][0]["startsAt"] = started.isoformat().replace("+00:00", "Z")
    payload["alerts"][0]["annotations"]["runbook_url"] = RUNBOOK
    rx = await start_receiver(path, kubeconfig=kubeconfig_path, identity="rx", env=env, watch_config=False)
    try:
        await rx.watcher.wait_synced(5)
        async with aiohttp.ClientSession() as http, http.post(
            f"{rx.url}/webhook", json=payload, headers={"Authorization": "Bearer hook-t0ken"}
        ) as resp:
            assert resp.status == 200
        [parent] = await slack.wait_for(
            lambda: [m for m in slack.messages("#rollbacks") if "rolled back in" in m.text], timeout=20)
        [record] = await rx.executor.list_rollbacks()
    finally:
        await rx.stop(1)
        await slack.stop()

    text = shown(parent.blocks)
    # v1 and v2 images, as the pre-flight read them from the Deployments
    assert "v1: `ghcr.io/example/finance-service:1.4.2`" in text
    assert "v2: `ghcr.io/example/finance-service:2.0.0`" in text
    # what changed: the week-1 seed has v1 at 4 and v2 at 1
    assert "`finance-service-v2` (canary) 1 → 0" in text
    assert "`finance-service-v1` (stable) 4 → 5" in text
    assert "*Started by*\nalert HighErrorRate" in text
    assert "*Phase:* week 1 (canary 1 of 5)" in text
    assert "HighErrorRate 7.2 % > 1 %" in text  # the alert's value against week 1's threshold
    timings = re.search(r"\*Timings:\* (.*)", text)
    assert timings is not None
    assert re.fullmatch(
        rf"alert started {started.strftime('%H:%M:%S')} UTC → traffic off the canary \+[\d.]+ s → stable verified "
        r"\+[\d.]+ s", timings.group(1)), timings.group(1)
    assert f"<{RUNBOOK}|Runbook>" in text  # the alert's own runbook, not the target's
    assert "<http://prometheus/graph|Prometheus graph>" in text  # the alert's generatorURL

    # the record carries them through the Lease, as another replica would read it
    assert record.before is not None and record.before.canary_images == ("ghcr.io/example/finance-service:2.0.0",)
    assert record.runbook_url == RUNBOOK and record.alert_started_at is not None
    lease = {"metadata": {"annotations": {ANN_RECORD: encode_record(record)}}}
    assert record_from_lease(lease) == record


def test_a_record_written_before_these_fields_existed_still_parses_and_a_newer_ones_extra_keys_are_skipped(
) -> None:
    base: dict[str, Any] = {
        "id": "abc", "target": "finance-service", "namespace": "finance", "stable": "finance-service-v1",
        "canary": "finance-service-v2", "replicas": 5, "phase": "succeeded",
        "started_at": "2026-11-27T03:00:00+00:00", "trigger": "alert", "reason": "error-rate: 7.2 % > 5 %",
    }
    old = RollbackRecord.from_json(base)
    assert old.before is None and old.runbook_url is None and old.alert_started_at is None
    newer = RollbackRecord.from_json({**base, "before": {"stable_replicas": 4, "canary_replicas": 1,
                                                          "stable_images": ["a:1"], "canary_images": ["a:2"],
                                                          "from_the_future": True}, "also_new": 1})
    assert newer.before is not None and newer.before.stable_images == ("a:1",) and newer.before.stable_replicas == 4
