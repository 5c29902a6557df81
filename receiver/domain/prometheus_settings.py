"""config.yaml's ``prometheus`` section: where to query and how to authenticate.

Shaped like Prometheus' own http_config (``authorization.credentials_file``,
``basic_auth.password_file``, ``tls_config.ca_file``; the older ``bearer_token_file``
is read as ``authorization.credentials_file``) so an operator can copy the block
from a Grafana data source or a Prometheus remote_read config. Secrets are files only,
read at every request (a rotated token is picked up without a restart), never values in
config.yaml. Absent section = no Prometheus: recovery confirmation and the "is it really
the canary?" check are skipped (and say so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Authorization(_Strict):
    """``Authorization: <type> <credentials>``, as http_config.authorization sends it."""

    type: Literal["Bearer"] = Field(default="Bearer", description="Only Bearer is supported.")
    credentials_file: Path = Field(description="File holding the token (read at every request).")


class BasicAuth(_Strict):
    """http_config.basic_auth with the password in a file."""

    username: str = Field(min_length=1)
    password_file: Path = Field(description="File holding the password (read at every request).")


class TLSConfig(_Strict):
    """http_config.tls_config: which CA to trust. No insecure_skip_verify: refused, not offered."""

    ca_file: Path | None = Field(default=None, description="PEM bundle trusted for the server's certificate.")


class PrometheusSettings(_Strict):
    """How to reach Prometheus' HTTP API and how long the receiver may wait for it."""

    url: str = Field(description="Base URL, e.g. http://prometheus.monitoring:9090 (a path prefix is kept).")
    authorization: Authorization | None = None
    basic_auth: BasicAuth | None = None
    tls_config: TLSConfig = TLSConfig()
    decision_wait_seconds: float = Field(
        default=2.0, gt=0, le=30,
        description="Longest a decision waits for Prometheus (is the stable as sick?); after it the "
        "receiver acts as if Prometheus were not configured: a rollback never waits on monitoring.",
    )
    request_timeout_seconds: float = Field(
        default=10.0, gt=0, description="One HTTP request's limit; retries happen within the caller's wait.",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_bearer_token_file(cls, data: object) -> object:
        # http_config's older spelling, still common in copied configs.
        if isinstance(data, dict) and "bearer_token_file" in data:
            data = dict(data)
            path = data.pop("bearer_token_file")
            if data.get("authorization") is not None:
                raise ValueError("bearer_token_file and authorization are the same setting: give one")
            data["authorization"] = {"credentials_file": path}
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: use basic_auth.password_file")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusSettings:
        # Prometheus itself refuses both: which one would be sent is not obvious.
        if self.authorization is not None and self.basic_auth is not None:
            raise ValueError("at most one of authorization and basic_auth may be configured")
        if self.tls_config.ca_file is not None and not self.url.startswith("https://"):
            raise ValueError("tls_config.ca_file needs an https:// url")
        return self
