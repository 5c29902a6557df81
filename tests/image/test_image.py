"""The image people deploy, built from the Dockerfile with buildah on a Debian python3 base
and run as its user 10001: its CLI, check-config without a token, serve rolling
finance-service back on the simulator, its HEALTHCHECK, and what it must not contain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sim.kube import KubeSim
from tests.image.buildah import ROOT, Buildah, failure, run_argv

pytestmark = [pytest.mark.image, pytest.mark.timeout(1500)]

CONFIG = "/etc/receiver/config.yaml"
TOKEN = "image-test-token"
DELIVERY = ROOT / "tests" / "fixtures" / "alertmanager" / "firing_error_rate.json"


def in_image(buildah: Buildah, container: str, *command: str, env: dict[str, str] | None = None,
             volumes: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        run_argv(buildah, container, command, env=env, volumes=volumes),
        capture_output=True, text=True, timeout=120, check=False,
    )


def image_config(buildah: Buildah, image: str) -> dict[str, Any]:
    inspected = json.loads(buildah.run("inspect", "--type", "image", image).stdout)
    config: dict[str, Any] = inspected["Docker"]["config"]
    return config


def test_the_image_runs_the_receiver_command_as_user_10001(buildah: Buildah, image: str, container: str) -> None:
    config = image_config(buildah, image)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["receiver"]
    result = in_image(buildah, container, "receiver", "--help")
    assert result.returncode == 0, failure("receiver --help", result.returncode, result.stdout + result.stderr)
    for command in ("serve", "check-config", "rollback"):
        assert command in result.stdout
    whoami = in_image(buildah, container, "id", "-u")
    assert whoami.stdout.strip() == "10001", whoami.stderr


def test_the_image_reports_the_same_version_as_the_checkout(buildah: Buildah, container: str) -> None:
    here = subprocess.run([sys.executable, "-m", "receiver", "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    if here.returncode != 0:
        pytest.skip("this checkout's `receiver` has no --version yet (the image's --help is checked meanwhile)")
    result = in_image(buildah, container, "receiver", "--version")
    assert result.returncode == 0, failure("receiver --version", result.returncode, result.stdout + result.stderr)
    assert result.stdout.strip() == here.stdout.strip()


def test_check_config_in_the_image_accepts_the_shipped_config_and_warns_that_serve_needs_a_token(
    buildah: Buildah, container: str
) -> None:
    result = in_image(buildah, container, "receiver", "check-config", CONFIG)
    assert result.returncode == 0, failure("receiver check-config", result.returncode, result.stdout + result.stderr)
    assert "finance-service" in result.stdout
    assert "RECEIVER_WEBHOOK_TOKEN (NOT set)" in result.stdout
    assert "serve refuses to start without one" in result.stdout


def test_serve_in_the_image_refuses_to_start_without_a_token(buildah: Buildah, container: str) -> None:
    listen = f"127.0.0.1:{free_port()}"
    result = in_image(buildah, container, "receiver", "serve", "--config", CONFIG, "--listen", listen)
    assert result.returncode == 2, failure("receiver serve", result.returncode, result.stdout + result.stderr)
    assert "RECEIVER_WEBHOOK_TOKEN" in result.stdout + result.stderr


def test_the_image_holds_no_test_dependencies(buildah: Buildah, container: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    test_deps = sorted({requirement_name(r) for r in extras})
    assert "pytest" in test_deps
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "def has(name):\n"
        "    try:\n"
        "        m.distribution(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        return False\n"
        "    return True\n"
        "print(json.dumps([n for n in json.loads(sys.argv[1]) if has(n)]))\n"
    )
    # aiohttp is a runtime dependency: finding it shows the probe looks in the right place.
    result = in_image(buildah, container, "python3", "-c", probe, json.dumps(["aiohttp", *test_deps]))
    assert result.returncode == 0, failure("python3 -c <probe>", result.returncode, result.stdout + result.stderr)
    assert json.loads(result.stdout) == ["aiohttp"], "test dependencies inside the image"
    imports = in_image(buildah, container, "python3", "-c", "import pytest")
    assert imports.returncode != 0 and "No module named 'pytest'" in imports.stderr


def test_the_image_holds_no_simulator(buildah: Buildah, container: str) -> None:
    probe = "import importlib.util as u; print(u.find_spec('sim') is None, u.find_spec('receiver.sim') is None)"
    result = in_image(buildah, container, "python3", "-c", probe)
    assert result.stdout.strip() == "True True", failure("python3 -c find_spec", result.returncode,
                                                         result.stdout + result.stderr)
    # the thin entries stay (people's scripts call them) and say how to get the simulator
    sim = in_image(buildah, container, "receiver", "sim", "--kubeconfig", "/tmp/kc")
    assert sim.returncode == 2 and "the simulator is not installed" in sim.stderr, sim.stderr


def test_the_healthcheck_fails_when_nothing_answers(buildah: Buildah, image: str, container: str) -> None:
    result = in_image(buildah, container, *healthcheck(buildah, image, free_port()))
    assert result.returncode != 0
    assert "Connection refused" in result.stderr


async def test_serve_in_the_image_is_live_passes_its_healthcheck_and_rolls_finance_service_back(
    buildah: Buildah, image: str, container: str, kube_sim: KubeSim, tmp_path: Path
) -> None:
    kube_dir = tmp_path / "kube"
    kube_dir.mkdir(mode=0o755)
    kube_sim.write_kubeconfig(kube_dir / "config").chmod(0o644)
    port = free_port()
    argv = run_argv(
        buildah, container,
        ["receiver", "serve", "--config", CONFIG, "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
        env={"RECEIVER_WEBHOOK_TOKEN": TOKEN, "KUBECONFIG": "/kube/config"},
        volumes=[f"{kube_dir}:/kube:ro"],
    )
    async with served(argv) as serve:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/health/live") as live:
                assert live.status == 200, serve.output()
                assert (await live.json())["status"] == "alive"

            check = await exec_async(run_argv(buildah, container, healthcheck(buildah, image, port)))
            assert check.returncode == 0, failure("the HEALTHCHECK command", check.returncode, check.output)

            async with http.post(
                f"{url}/webhook", data=DELIVERY.read_bytes(),
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            ) as answer:
                assert answer.status == 200, serve.output()
                body = await answer.json()
        assert [d["decision"] for d in body["decisions"]] == ["roll_back"], body
        try:
            await kube_sim.wait_for(lambda: rolled_back(kube_sim), timeout=60)
        except TimeoutError:
            pytest.fail(f"finance-service was not rolled back; the receiver said:\n{serve.output()}")


# helpers -----------------------------------------------------------------------------


def requirement_name(requirement: str) -> str:
    """'pytest>=9,<10' -> 'pytest' (a distribution name)."""
    for i, ch in enumerate(requirement):
        if not (ch.isalnum() or ch in "-_."):
            return requirement[:i]
    return requirement


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def healthcheck(buildah: Buildah, image: str, port: int) -> list[str]:
    """The image's own HEALTHCHECK command, aimed at `port` instead of the default 8080
    (tests share the host's network, so 8080 may be taken)."""
    config = image_config(buildah, image)
    assert "--listen" not in config["Cmd"], "the HEALTHCHECK assumes serve's default port 8080"
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD" and any("http://127.0.0.1:8080/health/live" in arg for arg in test), test
    return [arg.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for arg in test[1:]]


def rolled_back(sim: KubeSim) -> bool:
    stable = sim.get("deployments", "finance", "finance-service-v1") or {}
    canary = sim.get("deployments", "finance", "finance-service-v2") or {}
    return (
        stable.get("spec", {}).get("replicas") == 5
        and (stable.get("status") or {}).get("readyReplicas") == 5
        and canary.get("spec", {}).get("replicas") == 0
    )


@dataclass
class Finished:
    returncode: int
    output: str


async def exec_async(argv: Sequence[str]) -> Finished:
    """Run without blocking the event loop the simulator serves from."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return Finished(proc.returncode or 0, out.decode(errors="replace"))


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "\n".join(self.lines[-40:])


@contextlib.asynccontextmanager
async def served(argv: Sequence[str]) -> AsyncIterator[Served]:
    """`receiver serve` in the image, up once it logs `receiver_listening`; stopped after."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True
    )
    serve = Served(proc)
    listening = asyncio.Event()

    async def read() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            serve.lines.append(line)
            with contextlib.suppress(ValueError):
                if json.loads(line).get("msg") == "receiver_listening":
                    listening.set()

    reader = asyncio.create_task(read())
    try:
        up = asyncio.create_task(listening.wait())
        done, _ = await asyncio.wait({up, reader}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        up.cancel()
        assert up in done, failure("receiver serve (in the image)", proc.returncode or -1, serve.output())
        yield serve
    finally:
        if proc.returncode is None:
            proc.terminate()  # buildah run stops its child
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        await reader
