"""Basic auth and a private CA, against Debian's Prometheus behind its own web config.

Prometheus' ``--web.config.file`` serves TLS and checks basic-auth users (bcrypt), the
setup the receiver meets when Prometheus is not open to the cluster. The certificates
are made by openssl in the test's tmp dir; the password is a test value, its bcrypt
hash below.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from receiver.domain.prometheus_settings import PrometheusSettings
from receiver.prometheus.client import PrometheusClient
from receiver.prometheus.errors import (
    PrometheusCredentialsError,
    PrometheusError,
    PrometheusResponseError,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

PASSWORD = "s3cret-for-tests"
PASSWORD_BCRYPT = "$2b$04$qKgTrGs6R.Xoyppj4iQ1ZexFipcCIjBzfNoxXjZ.gHISccPg0UQfW"
READY_WITHIN = 30.0


@dataclass(frozen=True)
class Protected:
    url: str
    ca_file: Path
    tmp: Path

    def settings(self, password: str | None = PASSWORD, *, ca: bool = True) -> PrometheusSettings:
        auth = None
        if password is not None:
            secret = self.tmp / f"password-{abs(hash(password))}"
            secret.write_text(password + "\n")
            auth = {"username": "receiver", "password_file": str(secret)}
        return PrometheusSettings.model_validate({
            "url": self.url,
            "basic_auth": auth,
            "tls_config": {"ca_file": str(self.ca_file)} if ca else {},
        })


def make_certs(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test-ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "1", "-extfile", "san.ext")
    return tmp / "ca.crt", tmp / "server.crt", tmp / "server.key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def protected(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Protected]:
    if shutil.which("prometheus") is None or shutil.which("openssl") is None:
        pytest.skip("needs Debian's prometheus and openssl")
    tmp = tmp_path_factory.mktemp("protected-prometheus")
    ca, cert, key = make_certs(tmp)
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 1s}\n")
    (tmp / "web.yml").write_text(
        f"tls_server_config: {{cert_file: {cert}, key_file: {key}}}\n"
        f"basic_auth_users: {{receiver: '{PASSWORD_BCRYPT}'}}\n"
    )
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        "prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--web.config.file={tmp / 'web.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
    )
    world = Protected(f"https://127.0.0.1:{port}", ca, tmp)
    try:
        # Ready = the receiver's own client gets an answer (TLS and auth included).
        async with PrometheusClient(world.settings()) as prom:
            deadline = asyncio.get_running_loop().time() + READY_WITHIN
            while True:
                with contextlib.suppress(PrometheusError):
                    await prom.query("1", wait=1)
                    break
                if proc.returncode is not None or asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"protected Prometheus did not start: {(tmp / 'prometheus.log').read_text()}")
                await asyncio.sleep(0.1)
        yield world
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        log.close()


async def test_basic_auth_and_a_private_ca_reach_a_protected_prometheus(protected: Protected) -> None:
    async with PrometheusClient(protected.settings()) as prom:
        result = await prom.query("1 + 1", wait=5)
    assert result.result_type == "scalar"
    assert result.samples[0].value == 2


async def test_a_wrong_password_is_reported_at_once_without_the_password(protected: Protected) -> None:
    async with PrometheusClient(protected.settings("not-the-password")) as prom:
        with pytest.raises(PrometheusResponseError) as caught:
            await prom.query("1", wait=5)
    assert caught.value.status == 401
    assert "HTTP 401" in caught.value.reason
    assert "not-the-password" not in caught.value.reason


async def test_a_rotated_password_file_is_read_at_the_next_query(protected: Protected) -> None:
    settings = protected.settings("old-password")
    assert settings.basic_auth is not None
    async with PrometheusClient(settings) as prom:
        with pytest.raises(PrometheusResponseError):
            await prom.query("1", wait=5)
        settings.basic_auth.password_file.write_text(PASSWORD)
        assert (await prom.query("1", wait=5)).samples[0].value == 1


async def test_a_certificate_from_an_untrusted_ca_is_refused_not_retried(protected: Protected) -> None:
    async with PrometheusClient(protected.settings(ca=False)) as prom:
        with pytest.raises(PrometheusResponseError, match="certificate verify failed"):
            await prom.query("1", wait=5)


async def test_a_missing_password_file_names_the_file(protected: Protected) -> None:
    settings = PrometheusSettings.model_validate({
        "url": protected.url,
        "basic_auth": {"username": "receiver", "password_file": str(protected.tmp / "absent")},
        "tls_config": {"ca_file": str(protected.ca_file)},
    })
    async with PrometheusClient(settings) as prom:
        with pytest.raises(PrometheusCredentialsError, match=r"basic_auth password_file .*absent: No such file"):
            await prom.query("1", wait=5)
