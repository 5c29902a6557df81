"""structlog set-up: JSON in production, readable in a terminal.

Every line of a request carries request_id, and where known fingerprints, target and
rollback_id (bound with structlog.contextvars). Secrets are never passed to a logger;
``redact`` exists for the rare value that might hold one (a URL with a token).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

LEVELS = ("debug", "info", "warning", "error", "critical")


def configure(json: bool | None = None, level: str = "info") -> None:
    """Configure structlog; json=None picks JSON unless stderr is a terminal."""
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def redact(value: str, keep: int = 0) -> str:
    """Hide a secret-bearing value, keeping at most ``keep`` leading characters."""
    return (value[:keep] + "…") if value else ""
