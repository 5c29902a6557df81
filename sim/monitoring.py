"""Run Debian's real Prometheus and Alertmanager on loopback, for the demo and the tests.

Each runs as a child process in the test's tmp dir on a free 127.0.0.1 port, is
awaited until its /-/ready answers 200, and is stopped (terminate, wait, kill) when the
``async with`` block ends, whatever happened inside. They are external processes, so
readiness and alert state are learnt by polling their HTTP APIs in short bounded loops:
nothing else tells us.

    async with running_alertmanager(alertmanager_config(webhook_url, token_file), tmp_path) as am:
        async with running_prometheus([v1.metrics_url, v2.metrics_url], rules, tmp_path,
                                      alertmanager_url=am.url) as prom:
            alert = await prom.wait_for_alert("HighErrorRate", labels={"version": "v2"})
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml

PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"
READY_TIMEOUT = 30.0
POLL = 0.1


class ExternalProcessError(RuntimeError):
    """Prometheus or Alertmanager did not start or misbehaved; carries its log tail."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout=10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _wait_ready(proc: asyncio.subprocess.Process, url: str, log: Path) -> None:
    """Poll ``url``/-/ready until 200, the process exits, or READY_TIMEOUT passes."""
    deadline = time.monotonic() + READY_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise ExternalProcessError(f"exited with {proc.returncode}:\n{_log_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{url}/-/ready") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(POLL)
    raise ExternalProcessError(f"{url} not ready within {READY_TIMEOUT} s:\n{_log_tail(log)}")


@contextlib.asynccontextmanager
async def _running(
    name: str, binary: str, args_for_port: Any, workdir: Path
) -> AsyncIterator[tuple[str, Path]]:
    """Start ``binary`` on a free port (retried if the port was taken meanwhile)."""
    if shutil.which(binary) is None:
        raise ExternalProcessError(f"{binary} is not installed (apt-get install {binary})")
    last: Exception | None = None
    for attempt in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = workdir / f"{name}-{attempt}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                binary, *args_for_port(port), cwd=workdir,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
            )
        try:
            try:
                await _wait_ready(proc, url, log)
            except ExternalProcessError as e:
                last = e
                continue
            yield url, log
            return
        finally:
            await _stop(proc)
    raise ExternalProcessError(f"{name} did not start: {last}")


@dataclass(frozen=True)
class Prometheus:
    url: str
    log: Path

    async def _get(self, path: str, **params: str) -> Any:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(
            f"{self.url}{path}", params=params
        ) as resp:
            body = await resp.json()
        if body.get("status") != "success":
            raise ExternalProcessError(f"{path}: {body}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the vector's samples as Prometheus returns them."""
        data = await self._get("/api/v1/query", query=expr)
        return list(data["result"])

    async def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) with labels, annotations, state, value."""
        data = await self._get("/api/v1/alerts")
        return list(data["alerts"])

    async def targets_up(self) -> int:
        """How many scrape targets are healthy."""
        data = await self._get("/api/v1/targets")
        return sum(1 for t in data["activeTargets"] if t["health"] == "up")

    async def wait_for_alert(
        self,
        alertname: str,
        *,
        state: str = "firing",
        labels: Mapping[str, str] | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for polling an external process
    ) -> dict[str, Any]:
        """Poll /api/v1/alerts until ``alertname`` (with ``labels``) is in ``state``."""
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = await self.alerts()
            for a in seen:
                lab = a["labels"]
                if (
                    lab.get("alertname") == alertname
                    and a["state"] == state
                    and all(lab.get(k) == v for k, v in (labels or {}).items())
                ):
                    return a
            await asyncio.sleep(POLL)
        raise TimeoutError(f"{alertname} not {state} within {timeout} s; active alerts: {seen}")

    async def wait_for_no_alert(
        self, alertname: str, *, timeout: float = 30.0  # noqa: ASYNC109 - polling deadline
    ) -> None:
        """Poll until no ``alertname`` is pending or firing (it resolved)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(a["labels"].get("alertname") == alertname for a in await self.alerts()):
                return
            await asyncio.sleep(POLL)
        raise TimeoutError(f"{alertname} still active after {timeout} s")


@dataclass(frozen=True)
class Alertmanager:
    url: str
    log: Path

    async def alerts(self) -> list[dict[str, Any]]:
        """Alerts Alertmanager holds (API v2)."""
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(
            f"{self.url}/api/v2/alerts"
        ) as resp:
            resp.raise_for_status()
            return list(await resp.json())


def prometheus_config(
    scrape_targets: Sequence[str],
    rules_file: Path,
    *,
    alertmanager_url: str | None = None,
    interval: str = "1s",
) -> dict[str, Any]:
    """prometheus.yml scraping each URL (its path is the metrics path) every ``interval``."""
    jobs = []
    for i, target in enumerate(scrape_targets):
        u = urlsplit(target if "://" in target else f"http://{target}")
        jobs.append({
            "job_name": f"target-{i}",
            "metrics_path": u.path or "/metrics",
            "static_configs": [{"targets": [u.netloc]}],
        })
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": interval},
        "rule_files": [str(rules_file)],
        "scrape_configs": jobs,
    }
    if alertmanager_url:
        am = urlsplit(alertmanager_url)
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [am.netloc]}]}]}
    return config


@contextlib.asynccontextmanager
async def running_prometheus(
    scrape_targets: Sequence[str],
    rules_file: Path,
    tmp_path: Path,
    *,
    alertmanager_url: str | None = None,
    interval: str = "1s",
) -> AsyncIterator[Prometheus]:
    """Run Prometheus scraping ``scrape_targets`` and evaluating ``rules_file``."""
    workdir = tmp_path / "prometheus"
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(prometheus_config(
        scrape_targets, rules_file, alertmanager_url=alertmanager_url, interval=interval,
    )))

    def args(port: int) -> list[str]:
        return [
            f"--config.file={cfg}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}/",
            # Resend firing alerts to Alertmanager every second, not every minute.
            "--rules.alert.resend-delay=1s",
        ]

    async with _running("prometheus", PROMETHEUS_BIN, args, workdir) as (url, log):
        yield Prometheus(url, log)


@contextlib.asynccontextmanager
async def running_alertmanager(config_text: str, tmp_path: Path) -> AsyncIterator[Alertmanager]:
    """Run a single (non-clustered) Alertmanager with ``config_text`` as its config."""
    workdir = tmp_path / "alertmanager"
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "alertmanager.yml"
    cfg.write_text(config_text)

    def args(port: int) -> list[str]:
        return [
            f"--config.file={cfg}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}/",
            "--cluster.listen-address=",
        ]

    async with _running("alertmanager", ALERTMANAGER_BIN, args, workdir) as (url, log):
        yield Alertmanager(url, log)
