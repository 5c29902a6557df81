"""The README's "Try it by hand" recipe, run as written: `receiver sim`, the config file
copied from the README, `receiver serve` with the tokens it says, scripts/post_alert.py.

Only the ports differ (free ones instead of 8080 and 8099), so the test can run anywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from receiver.domain.settings import parse_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
POST_ALERT = ROOT / "scripts" / "post_alert.py"
ENV = {"RECEIVER_WEBHOOK_TOKEN": "hook-secret", "RECEIVER_ADMIN_TOKEN": "admin-secret",
       "SLACK_BOT_TOKEN": "xoxb-test-token"}


def readme_config() -> str:
    """The yaml block after the README's hand-run marker."""
    after = README[README.index("<!-- hand-run config"):]
    match = re.search(r"```yaml\n(.*?)```", after, re.S)
    assert match, "no yaml block after the hand-run marker"
    return match.group(1)


def test_the_readmes_hand_run_config_is_a_whole_valid_config() -> None:
    config = parse_config(readme_config(), "README")
    assert [t.name for t in config.targets] == ["finance-service"]
    assert config.slack.mode == "bot" and config.slack.api_url == "http://127.0.0.1:8099/api/"
    assert config.auth.admin_token_env == "RECEIVER_ADMIN_TOKEN"
    assert "RECEIVER_ADMIN_TOKEN=" in README and "scripts/post_alert.py --resolved" in README


@asynccontextmanager
async def process(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})},
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def read_until(stream: asyncio.StreamReader | None, done: Callable[[str], bool]) -> str:
    assert stream is not None
    seen = ""
    async with asyncio.timeout(30):
        while not done(seen):
            line = await stream.readline()
            assert line, seen
            seen += line.decode()
    return seen


async def post_alert(url: str, *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(POST_ALERT), "--url", url, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **ENV},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode() + err.decode()
    status, _, body = out.decode().partition(" ")
    assert status == "200", out.decode()
    answer: dict[str, Any] = json.loads(body)
    return answer


async def slack_replies(view: str) -> list[str]:
    async with aiohttp.ClientSession() as http, http.get(view) as resp:
        data = await resp.json()
    return [m["text"] for ch in data["channels"].values() for parent in ch["messages"]
            for m in [parent, *parent.get("replies", [])]]


async def test_the_readme_recipe_rolls_back_and_reports_the_resolution_after_the_rollback(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    async with process(sys.executable, "-m", "receiver", "sim", "--kubeconfig", str(kubeconfig),
                       "--slack-port", "0", "--ready-delay", "0.05") as sim:
        out = await read_until(sim.stdout, lambda s: "Press Ctrl+C" in s)
        api_url = re.search(r"api_url: (\S+)\}", out)
        view = re.search(r"curl (\S+/_sim/messages)", out)
        assert api_url and view, out
        config = tmp_path / "my-config.yaml"
        config.write_text(readme_config().replace("http://127.0.0.1:8099/api/", api_url.group(1)))
        async with process(sys.executable, "-m", "receiver", "serve", "--config", str(config),
                           "--listen", "127.0.0.1:0",
                           env={**ENV, "KUBECONFIG": str(kubeconfig)}) as serve:
            started = await read_until(serve.stderr, lambda s: "receiver_listening" in s)
            url = next(json.loads(line)["url"] for line in started.splitlines()
                       if "receiver_listening" in line)
            fired = await post_alert(f"{url}/webhook")
            assert [d["decision"] for d in fired["decisions"]] == ["roll_back"]
            await read_until(serve.stderr, lambda s: "rollback_finished" in s)
            resolved = await post_alert(f"{url}/webhook", "--resolved")
            assert [d["decision"] for d in resolved["decisions"]] == ["resolved"]
            notes: list[str] = []
            async with asyncio.timeout(20):
                while not notes:
                    notes = [t for t in await slack_replies(view.group(1)) if "resolved" in t]
                    await asyncio.sleep(0.1)  # the fake Slack has no change feed to wait on
    [note] = notes
    assert "after the rollback" in note and " h " not in note, note


def test_post_alert_dates_the_alert_now_with_alertmanagers_fingerprint() -> None:
    """Firing and resolving match up as with Alertmanager: same labels, same fingerprint."""
    import importlib.util
    from datetime import UTC, datetime

    spec = importlib.util.spec_from_file_location("post_alert", POST_ALERT)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for captured in (ROOT / "tests" / "fixtures" / "alertmanager").glob("*.json"):
        for alert in json.loads(captured.read_text())["alerts"]:
            assert script.fingerprint(alert["labels"]) == alert["fingerprint"], captured.name
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    firing = script.body(script.parse_args([]), now)["alerts"][0]
    resolved = script.body(script.parse_args(["--resolved"]), now)["alerts"][0]
    assert firing["startsAt"] == resolved["endsAt"] == "2026-12-01T10:00:00.000000Z"
    assert firing["fingerprint"] == resolved["fingerprint"]
    assert firing["labels"]["rollback"] == "immediate"
