"""`receiver sim --slack-port`: a person trying it by hand sees the Slack conversation."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient


async def test_receiver_sim_serves_the_fake_slack_and_its_read_only_view_of_the_conversations(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver",
        "sim",
        "--port",
        "0",
        "--slack-port",
        "0",
        "--kubeconfig",
        str(tmp_path / "kc"),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    out = ""
    try:
        async with asyncio.timeout(20):
            while "Press Ctrl+C" not in out:
                line = await proc.stdout.readline()
                assert line, out
                out += line.decode()
        api_url = re.search(r"api_url: (\S+)\}", out)
        token = re.search(r"SLACK_BOT_TOKEN=(\S+)", out)
        view = re.search(r"curl (\S+/_sim/messages)", out)
        assert api_url and token and view, out
        slack = AsyncWebClient(token=token.group(1), base_url=api_url.group(1))
        posted = await slack.chat_postMessage(channel="#rollbacks", text="hello from a test")
        assert posted["ok"]
        async with aiohttp.ClientSession() as http, http.get(view.group(1)) as resp:
            assert resp.status == 200
            assert "hello from a test" in await resp.text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
