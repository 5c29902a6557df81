"""structlog set-up: JSON in production, readable in a terminal.

Every line of a request carries request_id, and where known fingerprints, target and
rollback_id (bound with structlog.contextvars). Secrets are never passed to a logger;
``redact`` exists for the rare value that might hold one (a URL with a token).

One output for everything: structlog's own lines and those of the standard library's
loggers (aiohttp's server errors, asyncio, Python warnings via ``logging.captureWarnings``)
go through the same ``ProcessorFormatter`` on the root logger, so in JSON mode every
line of stderr is one JSON object with the keys log shippers expect: ``msg`` (the
snake_case event name, or a library's message), ``level`` and ``time`` (ISO 8601, UTC).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import Processor

_HANDLER_NAME = "receiver"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time of each line (pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass

LEVELS = ("debug", "info", "warning", "error", "critical")


def configure(json: bool | None = None, level: str = "info") -> None:
    """Configure structlog and the root logger; json=None picks JSON unless stderr is a terminal."""
    if json is None:
        json = not sys.stderr.isatty()
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    final: list[Processor]
    if json:
        final = [structlog.processors.format_exc_info, structlog.processors.EventRenamer("msg"),
                 structlog.processors.JSONRenderer()]
    else:
        final = [structlog.dev.ConsoleRenderer(timestamp_key="time")]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)  # configure() may run twice (tests, the demo): one handler
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(False)  # re-capture whatever showwarning is current: configure() may run again
    logging.captureWarnings(True)


def redact(value: str, keep: int = 0) -> str:
    """Hide a secret-bearing value, keeping at most ``keep`` leading characters."""
    return (value[:keep] + "…") if value else ""

