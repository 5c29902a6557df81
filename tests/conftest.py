"""Shared fixtures: each area's fixtures live in tests/fixtures/<area>.py.

Every test starts from the same process-wide logging state, whatever ran before it:
``receiver.logs.configure`` (called by serve, the demo and many fixtures) changes
structlog's global configuration, the root logger and ``logging.captureWarnings``, and
those would otherwise leak into the next test (its log assertions then depend on order).
"""

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = [
    name
    for name in ("tests.fixtures.kube", "tests.fixtures.slack", "tests.fixtures.receiver")
    if importlib.util.find_spec(name) is not None
]


@pytest.fixture(autouse=True)
def clean_process_logging() -> Iterator[None]:
    """Snapshot structlog's config, the root logger and warnings capture; restore them after."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    showwarning = warnings.showwarning
    py_warnings = logging.getLogger("py.warnings")
    py_handlers, py_propagate = list(py_warnings.handlers), py_warnings.propagate
    structlog.contextvars.clear_contextvars()
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.configure(**config)
        for h in root.handlers:
            if h not in handlers:
                root.removeHandler(h)
                with contextlib.suppress(Exception):
                    h.close()
        for h in handlers:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(level)
        logging.captureWarnings(False)  # undoes a capture the test made (restores its own saved hook)
        warnings.showwarning = showwarning
        py_warnings.handlers[:] = py_handlers
        py_warnings.propagate = py_propagate


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Say the random order's seed at the end (also under -q), where a failure is read."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and config.pluginmanager.has_plugin("randomly"):
        terminalreporter.write_line(f"random test order: replay it with -p randomly --randomly-seed={seed}")
