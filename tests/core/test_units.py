"""Values read the way the rollout guide states its thresholds."""

from __future__ import annotations

import pytest

from receiver.domain.units import format_value


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.072, "ratio", "7.2 %"),
        (0.05, "ratio", "5 %"),
        (0.12345, "ratio", "12.35 %"),
        (0.00001, "ratio", "0.001 %"),
        (95.0, "percent", "95 %"),
        (1.234, "seconds", "1234 ms"),
        (1.0, "seconds", "1000 ms"),
        (0.4125, "seconds", "412.5 ms"),
        (75.0, "seconds", "75 s"),
        (1234.0, "ms", "1234 ms"),
        (3.0, "count", "3"),
        (0.072, "none", "0.072"),
        (float("inf"), "ratio", "+Inf"),
        (float("nan"), "ratio", "NaN"),
        (None, "ratio", "no value"),
    ],
)
def test_values_are_shown_in_their_rules_unit(value: float | None, unit: str, text: str) -> None:
    assert format_value(value, unit) == text
