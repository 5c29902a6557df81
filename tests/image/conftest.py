"""Session fixtures for the image tests: the image is built once per run, a container from
it is shared by the tests (each `buildah run` is a fresh process in it), and what the
build cost and how big the image is are printed in the terminal summary."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.image.buildah import CACHE, Buildah, Timings, base_image, build, debian_mirror, require_tools, rootfs

TIMINGS = Timings()


@pytest.fixture(scope="session")
def buildah() -> Buildah:
    require_tools()
    return Buildah.here()


@pytest.fixture(scope="session")
def image(buildah: Buildah) -> str:
    started = time.monotonic()
    base = base_image(buildah, rootfs(debian_mirror(), TIMINGS), TIMINGS)
    name = build(buildah, base, TIMINGS)
    TIMINGS.add(f"image set-up total: {time.monotonic() - started:.0f} s")
    return name


@pytest.fixture(scope="session")
def container(buildah: Buildah, image: str) -> Iterator[str]:
    name = buildah.run("from", "--quiet", image).stdout.strip()
    venv = buildah.run("run", "--isolation", "chroot", name, "--", "du", "-sm", "/opt/venv", check=False)
    TIMINGS.add(f"of which /opt/venv (the package and its runtime deps): {(venv.stdout.split() or ['?'])[0]} MB")
    try:
        yield name
    finally:
        buildah.run("rm", name, check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS.lines:
        return
    terminalreporter.section("the image (buildah)")
    for line in TIMINGS.lines:
        terminalreporter.write_line(line)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "last-run.txt").write_text("\n".join(TIMINGS.lines) + "\n")
