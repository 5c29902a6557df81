"""Every line `receiver serve` writes is one JSON object a log shipper can index.

The real process against the Kubernetes simulator: its own lines, the standard
library's (aiohttp, asyncio, Python warnings) and a whole rollback's, with the
conventional keys msg, level and time, and the rollback's context on its lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from receiver import logs
from sim.kube import KubeSim
from tests.fixtures.receiver import BASE_CONFIG, TOKEN, firing_payload

CONFIG = BASE_CONFIG + 'slack:\n  mode: "off"\n'


class Serve:
    """A running `receiver serve` whose stderr is read line by line as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._new = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            async with self._new:
                self.lines.append(raw.decode().rstrip("\n"))
                self._new.notify_all()
        async with self._new:
            self._new.notify_all()  # the process ended: waiters stop waiting

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.strip()]

    async def wait_for(self, msg: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.events() if e.get("msg") == msg), None)

        async with self._new:
            await asyncio.wait_for(self._new.wait_for(lambda: found() is not None or self._reader.done()), 30)
        event = found()
        assert event is not None, f"no {msg!r} line in:\n" + "\n".join(self.lines)
        return event

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(self.proc.wait(), 30)
        await self._reader
        return rc


@asynccontextmanager
async def serving(tmp_path: Path, kubeconfig: Path) -> AsyncIterator[Serve]:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    env = {**os.environ, "RECEIVER_WEBHOOK_TOKEN": TOKEN, "PYTHONWARNINGS": "always"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", "serve", "--config", str(config), "--listen", "127.0.0.1:0",
        "--kubeconfig", str(kubeconfig), "--log-format", "json",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    serve = Serve(proc)
    try:
        yield serve
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_every_stderr_line_of_serve_is_json_with_msg_level_and_time_and_a_rollback_keeps_its_context(
    kube_sim: KubeSim, kubeconfig_path: Path, tmp_path: Path
) -> None:
    async with serving(tmp_path, kubeconfig_path) as serve:
        url = (await serve.wait_for("receiver_listening"))["url"]
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/webhook", json=firing_payload(),
                                 headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401  # judged before the cluster is even reached
            await serve.wait_for("cluster_connected")
            async with http.post(f"{url}/webhook", json=firing_payload(),
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 200, await resp.text()
        finished = await serve.wait_for("rollback_finished")
        await serve.wait_for("webhook_unauthorized")
        assert await serve.stop() == 0

    events = serve.events()  # raises on the first line that is not JSON
    assert all({"msg", "level", "time"} <= set(e) for e in events), events
    assert all(e["time"].endswith("Z") for e in events)
    assert not any("event" in e or "timestamp" in e for e in events)
    assert finished["target"] == "finance-service"
    assert finished["rollback_id"] and finished["outcome"] == "succeeded"
    assert finished["fingerprints"] == [firing_payload()["alerts"][0]["fingerprint"]]
    assert any(e["msg"] == "shutting_down" for e in events)


@pytest.fixture
def json_stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """logs.configure(json=True); yields a reader of the JSON lines written to stderr since."""
    root = logging.getLogger()
    level, handlers, saved = root.level, list(root.handlers), structlog.get_config()
    logs.configure(json=True, level="info")
    capsys.readouterr()
    try:
        yield lambda: [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**saved)


def test_python_warnings_and_library_log_lines_come_out_as_json(
    json_stderr: Callable[[], list[dict[str, Any]]],
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)
    logging.getLogger("aiohttp.server").error("Error handling request")
    structlog.get_logger("receiver.test").info("own_line", target="finance-service")
    events = json_stderr()
    assert [(e.get("logger", "structlog"), e["level"]) for e in events] == [
        ("py.warnings", "warning"), ("aiohttp.server", "error"), ("structlog", "info"),
    ]
    assert "DeprecationWarning: an old API" in events[0]["msg"]
    assert events[1]["msg"] == "Error handling request"
    assert events[2]["msg"] == "own_line" and events[2]["target"] == "finance-service"
    assert all("time" in e for e in events)


def test_configuring_twice_does_not_print_each_line_twice(
    json_stderr: Callable[[], list[dict[str, Any]]],
) -> None:
    logs.configure(json=True, level="info")
    logging.getLogger("aiohttp.server").warning("once")
    assert [e["msg"] for e in json_stderr()] == ["once"]


def test_an_unknown_log_level_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.configure(json=True, level="loud")
