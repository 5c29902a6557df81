"""Whether the Slack mode's secret is there, without loading a notifier.

Its own module so ``receiver check-config`` can ask without importing structlog,
prometheus_client and the notifiers (a CLI command starts in <= 0.3 s)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.domain.settings import Config, SlackSettings

__all__ = ["slack_credentials_problem"]


def _secret(file: Path | None, env_name: str, env: Mapping[str, str]) -> tuple[str, str, str | None]:
    """(value, where it came from, why it could not be read) from a file or an environment variable."""
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip(), f"slack file {file}", None
        except OSError as e:
            return "", f"slack file {file}", e.strerror or type(e).__name__
    return env.get(env_name, "").strip(), f"environment variable {env_name}", None


def _settings_problem(settings: SlackSettings, env: Mapping[str, str]) -> str | None:
    if settings.mode == "bot":
        token, source, error = _secret(settings.token_file, settings.token_env, env)
        what = "a bot token (xoxb-...)"
    elif settings.mode == "webhook":
        token, source, error = _secret(settings.webhook_url_file, settings.webhook_url_env, env)
        what = "an incoming webhook URL (https://hooks.slack.com/...)"
    else:
        return None
    if error is not None:
        return f"slack.mode is {settings.mode} but {source} cannot be read: {error}"
    if not token:
        return f"slack.mode is {settings.mode} but {source} is empty or unset: put {what} there"
    return None


def slack_credentials_problem(config: Config, environ: Mapping[str, str]) -> str | None:
    """Why ``config``'s Slack mode cannot work with these secrets (None: it can).

    A bot without a token or a webhook without a URL would print to nobody: that is a
    configuration error (``serve`` exits 2, ``check-config`` fails), never a quiet fallback."""
    return _settings_problem(config.slack, environ)
