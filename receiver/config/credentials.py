"""Credentials as Alertmanager's http_config sends them, and the admin credential.

Webhook: ``Authorization: Bearer <token>`` (authorization.credentials[_file]) or
``Authorization: Basic`` (basic_auth). Several tokens are accepted at once so a token
can be rotated without downtime. Every comparison is constant-time (hmac.compare_digest)
and every candidate is compared, so timing reveals neither the token nor which one
matched. Admin endpoints (/health, /rollbacks) take an admin token or an HS256 JWT
carrying the ``admin:monitoring`` permission: a JWT must have ``exp``, and the permission
must be an exact item of its ``permissions`` list or a word of its OAuth ``scope``
string; a valid credential without it is authenticated but not allowed (403).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import hmac
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import structlog

from receiver.domain.settings import AuthSettings

ADMIN_PERMISSION = "admin:monitoring"
#: A person's actions over HTTP (mute, unmute, close the breaker) need this in a JWT, beside
#: reading: a monitoring token must not be able to silence the receiver.
ACTIONS_PERMISSION = "admin:actions"
log = structlog.get_logger(__name__)


class AdminAccess(enum.Enum):
    GRANTED = "granted"
    UNAUTHENTICATED = "unauthenticated"  # 401: no credential, or not one we accept
    FORBIDDEN = "forbidden"  # 403: a valid credential without admin:monitoring


def grants_admin(claims: Mapping[str, object], permission: str = ADMIN_PERMISSION) -> bool:
    """Exact match only: an item of a ``permissions`` list, or a word of ``scope``.

    A string ``permissions`` claim is not a list (matching it as one would be a
    substring test: "no-admin:monitoring-really" must not pass).
    """
    perms = claims.get("permissions")
    scope = claims.get("scope")
    in_perms = isinstance(perms, list) and any(p == permission for p in perms)
    in_scope = isinstance(scope, str) and permission in scope.split()
    return in_perms or in_scope


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

    def admin_access(self, authorization: str | None, permission: str = ADMIN_PERMISSION) -> AdminAccess:
        """An admin token, or a signed, unexpired JWT (``exp`` required) granting ``permission``
        (admin:monitoring to read; ACTIONS_PERMISSION for a person's actions over HTTP)."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            if self.insecure and not (self.admin_tokens or self.jwt_secret):
                return AdminAccess.GRANTED
            return AdminAccess.UNAUTHENTICATED
        token = value.strip()
        if _any_equal(token.encode(), self.admin_tokens):
            return AdminAccess.GRANTED
        if self.jwt_secret and token.count(".") == 2:
            try:
                claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"], options={"require": ["exp"]})
            except jwt.PyJWTError:
                return AdminAccess.UNAUTHENTICATED
            return AdminAccess.GRANTED if grants_admin(claims, permission) else AdminAccess.FORBIDDEN
        return AdminAccess.UNAUTHENTICATED

    def subject(self, authorization: str | None) -> str | None:
        """The ``sub`` of a valid admin JWT: who acts, as the token's issuer vouches for it
        (None for a static admin token, whose holder names themselves)."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not self.jwt_secret or value.strip().count(".") != 2:
            return None
        try:
            claims = jwt.decode(value.strip(), self.jwt_secret, algorithms=["HS256"], options={"require": ["exp"]})
        except jwt.PyJWTError:
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) and sub.strip() else None

    def admin_allowed(self, authorization: str | None) -> bool:
        """True for an admin token, or a valid JWT that grants admin:monitoring."""
        return self.admin_access(authorization) is AdminAccess.GRANTED


def _any_equal(candidate: bytes, accepted: tuple[bytes, ...]) -> bool:
    ok = False
    for a in accepted:  # compare against all, do not short-circuit
        ok |= hmac.compare_digest(candidate, a)
    return ok


@dataclass
class RejectionLog:
    """Rate-limited log of rejected credentials: a fuzzer or a misconfigured sender
    must not flood the log (one warning per source per window, then one summary line
    per window with how many were not logged; every rejection is still counted in
    ``receiver_webhooks_total{outcome="unauthorized"}``)."""

    window_seconds: float = 60.0
    max_sources: int = 1000
    clock: Callable[[], float] = time.monotonic
    _window_start: float | None = None
    _sources: set[str] = field(default_factory=set)
    _suppressed: int = 0

    def rejected(self, source: str | None, **details: object) -> None:
        now = self.clock()
        if self._window_start is None or now - self._window_start >= self.window_seconds:
            self.flush()
            self._window_start = now
        key = source or "unknown"
        if key in self._sources or len(self._sources) >= self.max_sources:
            self._suppressed += 1
            if self._suppressed == 1:  # make sure the summary comes even if nothing follows
                with contextlib.suppress(RuntimeError):
                    wait = self._window_start + self.window_seconds - now
                    asyncio.get_running_loop().call_later(max(wait, 0.0), self._flush_if_due)
            return
        self._sources.add(key)
        log.warning(
            "webhook_unauthorized",
            remote=source,
            **details,
            note=f"further rejections from this source are summed up every {self.window_seconds:g} s",
        )

    def _flush_if_due(self) -> None:
        if self._window_start is not None and self.clock() - self._window_start >= self.window_seconds:
            self.flush()
            self._window_start = None

    def flush(self) -> None:
        """Log the summary of the window that ended, if anything was left unlogged."""
        if self._suppressed:
            log.warning(
                "webhook_unauthorized_suppressed",
                count=self._suppressed,
                sources=len(self._sources),
                window_seconds=self.window_seconds,
            )
        self._sources = set()
        self._suppressed = 0
