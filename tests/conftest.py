"""Shared fixtures: each area's fixtures live in tests/fixtures/<area>.py."""

import importlib.util

pytest_plugins = [
    name
    for name in ("tests.fixtures.kube", "tests.fixtures.slack", "tests.fixtures.receiver")
    if importlib.util.find_spec(name) is not None
]
