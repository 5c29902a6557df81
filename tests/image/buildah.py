"""Build and run the project's image with Debian's mmdebstrap and buildah: no Docker engine
and no registry needed. A Debian bookworm root filesystem with python3 (3.11) and
python3-venv stands in for python:3.11-slim as the Dockerfile's BASE.

What is cheap to keep is kept under .cache/image/ (gitignored): the root filesystem
tarball and the base image made from it, keyed by suite, packages and mirror. The
project's image itself is built fresh on every run: it is what the tests are about.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "image"
SUITE = "bookworm"  # Python 3.11, like python:3.11-slim
PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
IMAGE = "localhost/rollback-receiver:test"
TAIL_LINES = 40
INSTALL_HINT = "scripts/setup installs Debian's buildah and mmdebstrap (as root)"


def require_tools(which: Callable[[str], str | None] = shutil.which, euid: Callable[[], int] = os.geteuid) -> None:
    """Skip, saying why and how to fix it, where the image cannot be built here."""
    missing = [tool for tool in ("buildah", "mmdebstrap") if which(tool) is None]
    if missing:
        pytest.skip(f"image not built: {' and '.join(missing)} not installed; {INSTALL_HINT}")
    if euid() != 0:
        pytest.skip("image not built: buildah and mmdebstrap run as root here (rootless needs subuid/subgid set-up)")


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def failure(what: str, returncode: int, output: str) -> str:
    """An assertion message a person can act on: the command and buildah's last words."""
    return f"{what} exited {returncode}; last {TAIL_LINES} lines of its output:\n{tail(output)}"


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses for SUITE (one-line or deb822 sources)."""
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, list[str]] = {}
            for line in stanza.splitlines():
                if line.startswith(("#", " ", "\t")) or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
            if (
                "deb" in fields.get("types", [])
                and SUITE in fields.get("suites", [])
                and fields.get("enabled", ["yes"])[0].lower() != "no"
                and fields.get("uris")
            ):
                return fields["uris"][0]
    return DEFAULT_MIRROR


@dataclass
class Timings:
    """What each stage cost this run, for the terminal summary."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


@dataclass
class Buildah:
    """buildah with its own storage under .cache/image/, so nothing else on the machine is
    touched and the base image survives between runs."""

    binary: str
    driver: str

    @classmethod
    def here(cls) -> Buildah:
        """overlay where the kernel allows it (much faster), else vfs, which works anywhere;
        RECEIVER_IMAGE_STORAGE_DRIVER forces one."""
        binary = shutil.which("buildah") or "buildah"
        forced = os.environ.get("RECEIVER_IMAGE_STORAGE_DRIVER")
        if forced:
            return cls(binary, forced)
        probe = cls(binary, "overlay")
        if probe.run("images", check=False).returncode == 0:
            return probe
        return cls(binary, "vfs")

    def argv(self, *args: str) -> list[str]:
        storage = CACHE / f"storage-{self.driver}"
        return [
            self.binary,
            "--root", str(storage / "root"),
            "--runroot", str(storage / "run"),
            "--storage-driver", self.driver,
            *args,
        ]

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run buildah; with check, a failure is an AssertionError carrying its last lines."""
        proc = subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
        )
        if check and proc.returncode != 0:
            raise AssertionError(failure(f"buildah {' '.join(args[:1])}", proc.returncode, proc.stdout + proc.stderr))
        return proc

    def has_image(self, name: str) -> bool:
        return self.run("inspect", "--type", "image", name, check=False).returncode == 0

    def size(self, name: str) -> str:
        """The size buildah reports for an image (its unpacked layers)."""
        out = self.run("images", "--noheading", "--format", "{{.Size}}", name).stdout.split("\n")
        return out[0].strip()


def rootfs(mirror: str, timings: Timings) -> Path:
    """The bookworm root filesystem tarball, made once by mmdebstrap and then reused."""
    key = hashlib.sha256(f"{SUITE} {','.join(PACKAGES)} {mirror}".encode()).hexdigest()[:12]
    tar = CACHE / f"rootfs-{SUITE}-{key}.tar"
    if tar.exists():
        timings.add(f"rootfs: cached {tar.relative_to(ROOT)}")
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = CACHE / f"rootfs-{SUITE}-{key}.partial.tar"
    argv = [
        shutil.which("mmdebstrap") or "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        "--format=tar",
        SUITE,
        str(partial),
        mirror,
    ]
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise AssertionError(failure(" ".join(argv), proc.returncode, proc.stdout + proc.stderr))
    partial.rename(tar)
    timings.add(f"rootfs: mmdebstrap {SUITE} from {mirror} in {time.monotonic() - started:.0f} s")
    return tar


def base_image(buildah: Buildah, tar: Path, timings: Timings) -> str:
    """A base image from the tarball (from scratch, mount, untar, commit), made once."""
    name = f"localhost/receiver-base:{tar.stem.removeprefix('rootfs-')}"
    if buildah.has_image(name):
        timings.add(f"base image: cached {name} ({buildah.size(name)})")
        return name
    started = time.monotonic()
    container = buildah.run("from", "scratch").stdout.strip()
    try:
        mountpoint = buildah.run("mount", container).stdout.strip()
        untar = subprocess.run(
            ["tar", "--numeric-owner", "-xpf", str(tar), "-C", mountpoint],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert untar.returncode == 0, failure(f"tar -x {tar.name}", untar.returncode, untar.stderr)
        buildah.run("umount", container)
        buildah.run("commit", "--quiet", container, name)
    finally:
        buildah.run("rm", container, check=False)
    timings.add(f"base image: {name} made in {time.monotonic() - started:.0f} s ({buildah.size(name)})")
    return name


def build(buildah: Buildah, base: str, timings: Timings) -> str:
    """The project's image from the Dockerfile on BASE, built fresh; the previous test
    image is removed first so the storage holds one copy."""
    buildah.run("rm", "--all", check=False)
    buildah.run("rmi", "--force", IMAGE, check=False)
    started = time.monotonic()
    buildah.run(
        "bud",
        "--isolation", "chroot",
        "--format", "docker",  # the OCI format has no HEALTHCHECK
        "--build-arg", f"BASE={base}",
        "--volume", "/etc/ssl/certs:/etc/ssl/certs:ro",  # pip's CA bundle; not in the image
        "--tag", IMAGE,
        "--file", str(ROOT / "Dockerfile"),
        str(ROOT),
    )
    timings.add(f"image: {IMAGE} built in {time.monotonic() - started:.0f} s ({buildah.size(IMAGE)}, {buildah.driver})")
    return IMAGE


def run_argv(buildah: Buildah, container: str, command: Sequence[str], *, env: dict[str, str] | None = None,
             volumes: Sequence[str] = ()) -> list[str]:
    """`buildah run` as the image's user 10001, on the host's network."""
    opts = ["--isolation", "chroot", "--user", "10001:10001"]
    for key, value in (env or {}).items():
        opts += ["--env", f"{key}={value}"]
    for volume in volumes:
        opts += ["--volume", volume]
    return buildah.argv("run", *opts, container, "--", *command)
