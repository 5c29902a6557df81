"""The image tests' own tooling: where they cannot run they skip saying why, a failed
build shows buildah's last lines, and mmdebstrap uses the machine's Debian mirror."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.image.buildah import Buildah, debian_mirror, require_tools


def test_without_buildah_the_image_tests_skip_saying_how_to_get_it() -> None:
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_tools(which=lambda tool: None if tool == "buildah" else f"/usr/bin/{tool}", euid=lambda: 0)
    assert "buildah not installed" in str(skipped.value)
    assert "scripts/setup" in str(skipped.value)


def test_without_root_the_image_tests_skip_saying_so() -> None:
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_tools(which=lambda tool: f"/usr/bin/{tool}", euid=lambda: 1000)
    assert "as root" in str(skipped.value)


@pytest.mark.image
def test_a_failed_build_shows_the_last_lines_of_buildahs_output(tmp_path: Path) -> None:
    require_tools()
    buildah = Buildah.here()
    (tmp_path / "Dockerfile").write_text("FROM scratch\nRUN exit 7\n")
    with pytest.raises(AssertionError) as failed:
        buildah.run("bud", "--isolation", "chroot", "--file", str(tmp_path / "Dockerfile"), str(tmp_path))
    message = str(failed.value)
    assert message.startswith("buildah bud exited")
    assert "RUN exit 7" in message  # buildah's own step line, from its output


def test_mmdebstrap_uses_the_debian_mirror_of_the_machines_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(textwrap.dedent("""\
        Types: deb
        # http://snapshot.debian.org/archive/debian/20250520T000000Z
        URIs: http://mirror.example/debian
        Suites: bookworm bookworm-updates
        Components: main

        Types: deb
        URIs: http://mirror.example/debian-security
        Suites: bookworm-security
        Components: main
        """))
    (tmp_path / "sources.list.d" / "other.list").write_text(
        "deb https://packages.example/apt cloud-sdk-bookworm main\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_mmdebstrap_uses_the_debian_mirror_of_a_one_line_sources_list(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example/debian bookworm main\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_without_a_bookworm_source_mmdebstrap_uses_deb_debian_org(tmp_path: Path) -> None:
    assert debian_mirror(tmp_path) == "http://deb.debian.org/debian"
