"""Credentials as Alertmanager's http_config sends them, and the admin credential.

Webhook: ``Authorization: Bearer <token>`` (authorization.credentials[_file]) or
``Authorization: Basic`` (basic_auth). Several tokens are accepted at once so a token
can be rotated without downtime. Every comparison is constant-time (hmac.compare_digest)
and every candidate is compared, so timing reveals neither the token nor which one
matched. Admin endpoints (/health, /rollbacks) take an admin token or an HS256 JWT
carrying the ``admin:monitoring`` permission.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt

from receiver.config import AuthSettings

ADMIN_PERMISSION = "admin:monitoring"


class CredentialsError(Exception):
    """A credential source named in config cannot be read."""


def _read_secret(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise CredentialsError(f"cannot read secret file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:  # never echo the bytes: they are a secret
        raise CredentialsError(f"secret file {path} is not UTF-8 text") from e


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@dataclass(frozen=True)
class Credentials:
    """The secrets the receiver accepts, loaded once per config (re)load."""

    webhook_tokens: tuple[bytes, ...] = ()
    basic_users: tuple[tuple[bytes, bytes], ...] = ()
    admin_tokens: tuple[bytes, ...] = ()
    jwt_secret: str | None = None
    insecure: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.webhook_tokens or self.basic_users)

    @classmethod
    def load(cls, auth: AuthSettings, env: Mapping[str, str] | None = None, insecure: bool = False) -> Credentials:
        env = os.environ if env is None else env
        tokens = [_read_secret(p) for p in auth.bearer_token_files]
        tokens += _split(env.get(auth.bearer_token_env))
        users: list[tuple[bytes, bytes]] = []
        for u in auth.basic_auth:
            if u.password_file is not None:
                pw = _read_secret(u.password_file)
            elif u.password_env is not None and env.get(u.password_env):
                pw = env[u.password_env]
            else:
                raise CredentialsError(f"basic_auth user {u.username!r} has no password_file or set password_env")
            users.append((u.username.encode(), pw.encode()))
        admin = _split(env.get(auth.admin_token_env))
        if auth.admin_token_file is not None:
            admin.append(_read_secret(auth.admin_token_file))
        secret = _read_secret(auth.jwt_secret_file) if auth.jwt_secret_file else None
        return cls(
            webhook_tokens=tuple(t.encode() for t in tokens if t),
            basic_users=tuple(users),
            admin_tokens=tuple(t.encode() for t in admin if t),
            jwt_secret=secret,
            insecure=insecure,
        )

    def webhook_allowed(self, authorization: str | None) -> bool:
        """True when the Authorization header carries an accepted webhook credential."""
        if self.insecure and not self.configured:
            return True
        scheme, _, value = (authorization or "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return _any_equal(value.strip().encode(), self.webhook_tokens)
        if scheme == "basic":
            try:
                user, _, pw = base64.b64decode(value.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                return False
            ok = False
            for u, p in self.basic_users:
                ok |= hmac.compare_digest(user, u) & hmac.compare_digest(pw, p)
            return ok
        return False

    def admin_allowed(self, authorization: str | None) -> bool:
        """True for an admin token, or a valid JWT that grants admin:monitoring."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return self.insecure and not (self.admin_tokens or self.jwt_secret)
        token = value.strip()
        if _any_equal(token.encode(), self.admin_tokens):
            return True
        if self.jwt_secret and token.count(".") == 2:
            try:
                claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"])
            except jwt.PyJWTError:
                return False
            perms = claims.get("permissions", [])
            scopes = str(claims.get("scope", "")).split()
            return ADMIN_PERMISSION in perms or ADMIN_PERMISSION in scopes
        return False


def _any_equal(candidate: bytes, accepted: tuple[bytes, ...]) -> bool:
    ok = False
    for a in accepted:  # compare against all, do not short-circuit
        ok |= hmac.compare_digest(candidate, a)
    return ok
