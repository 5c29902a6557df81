"""Running the real `receiver` command, and a cluster address nothing listens on."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.executor.conftest import make_config


@dataclass
class Result:
    code: int
    out: str
    err: str


async def receiver(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                   drop: tuple[str, ...] = ()) -> Result:
    """Run `python -m receiver ARGS` to the end."""
    full = {k: v for k, v in os.environ.items() if k not in drop}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", *args, env={**full, **(env or {})}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Result(proc.returncode or 0, out.decode(), err.decode())


def free_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig_for(path: Path, server: str) -> Path:
    """A valid kubeconfig for ``server``, shaped as `receiver sim` writes it."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }))
    return path


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(make_config().model_dump(mode="json")))
    return path
