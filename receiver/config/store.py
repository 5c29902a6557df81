"""The running config, reloaded without a restart; a bad file never replaces a good one.

Reload triggers: SIGHUP, ``POST /-/reload``, and a change of the file's content. The
file is watched by hashing it every ``poll_seconds`` rather than with inotify, because a
mounted ConfigMap changes by swapping a ``..data`` symlink, which inotify on the file
misses and which costs one small read per second to catch reliably (what
configmap-reload and Prometheus operators settle on too).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from receiver.config.credentials import Credentials, CredentialsError
from receiver.domain.settings import Config, ConfigError, load_config
from receiver.metrics import Metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    at: datetime
    error: str | None = None
    changed: bool = False


class ConfigStore:
    """Holds the last good Config and Credentials; reload() swaps both or neither."""

    def __init__(
        self,
        path: Path,
        *,
        insecure: bool = False,
        env: Mapping[str, str] | None = None,
        poll_seconds: float = 2.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics.create()  # a private set unless the process's is given
        self.path = path
        self.insecure = insecure
        self._env = env
        self.poll_seconds = poll_seconds
        self.config, self.credentials = self._load()  # raises: no good config at start-up
        self.metrics.init_target_labels(t.name for t in self.config.targets)
        self._digest = self._file_digest()
        self.last_reload = ReloadResult(ok=True, at=datetime.now(UTC))
        self.listeners: list[Callable[[Config], None]] = []  # told of each new good config
        self.observers: list[Callable[[ReloadResult], None]] = []  # told of every reload, good or bad
        self._watch_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> tuple[Config, Credentials]:
        config = load_config(self.path)
        for warning in config.warnings():  # valid, but probably not what was meant
            log.warning("config_warning", path=str(self.path), warning=warning)
        try:
            creds = Credentials.load(config.auth, self._env, insecure=self.insecure)
        except CredentialsError as e:
            raise ConfigError(f"{self.path}: {e}") from e
        if not creds.configured and not self.insecure:
            raise ConfigError(
                f"{self.path}: no webhook credentials: set {config.auth.bearer_token_env}, "
                "auth.bearer_token_files or auth.basic_auth (or run with --insecure for local testing)"
            )
        return config, creds

    def _file_digest(self) -> bytes | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return None

    async def reload(self, trigger: str) -> ReloadResult:
        """Load the file again; on error keep the running config and report why."""
        async with self._lock:
            digest = self._file_digest()
            try:
                config, creds = self._load()
            except ConfigError as e:
                self.last_reload = ReloadResult(ok=False, at=datetime.now(UTC), error=str(e))
                self.metrics.config_reloads.labels("failure").inc()
                self.metrics.config_last_reload_success.set(0)
                log.error("config_reload_failed", trigger=trigger, error=str(e), kept="last good config")
                self._digest = digest
                for observer in self.observers:
                    observer(self.last_reload)
                return self.last_reload
            changed = config != self.config or creds != self.credentials
            self.config, self.credentials, self._digest = config, creds, digest
            self.metrics.init_target_labels(t.name for t in config.targets)
            self.last_reload = ReloadResult(ok=True, at=datetime.now(UTC), changed=changed)
            self.metrics.config_reloads.labels("success").inc()
            self.metrics.config_last_reload_success.set(1)
            log.info(
                "config_reloaded",
                trigger=trigger,
                changed=changed,
                enabled=config.settings.enabled,
                dry_run=config.settings.dry_run,
            )
            for listener in self.listeners:
                listener(config)
            for observer in self.observers:
                observer(self.last_reload)
            return self.last_reload

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                if self._file_digest() != self._digest:
                    await self.reload("file-change")
            except Exception as e:  # the watch must outlive any one bad reload
                log.error("config_watch_reload_crashed", error=repr(e), kept="last good config")

    def start_watching(self) -> None:
        self.metrics.config_last_reload_success.set(1)
        if self._watch_task is None:
            self._watch_task = asyncio.create_task(self._watch(), name="config-watch")

    async def stop_watching(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
