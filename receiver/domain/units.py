"""Alert values shown the way the rollout guide states its thresholds.

The guide says "error rate > 5 %" and "p95 > 1000 ms", while Prometheus hands over a
ratio (0.072) and seconds (1.234). Decisions, Slack messages and the timeline all
print values through format_value so the same number never appears two ways.
"""

from __future__ import annotations

import math

#: Below this many seconds a duration reads better in milliseconds.
_MS_BELOW_SECONDS = 60.0


def _num(x: float) -> str:
    """A short decimal: at most two places, no trailing zeros, small values kept."""
    if x != 0 and abs(x) < 0.01:
        return f"{x:.2g}"
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_value(value: float | None, unit: str = "none") -> str:
    """Render an alert value or threshold in its rule's unit.

    ratio 0.072 -> "7.2 %"; percent 95 -> "95 %"; seconds 1.234 -> "1234 ms" (and
    "75 s" from a minute up); ms 1234 -> "1234 ms"; count 3 -> "3"; none -> the
    number as Prometheus would print it. None -> "no value".
    """
    if value is None:
        return "no value"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"  # as Prometheus prints it, in any unit
    if unit == "ratio":
        return f"{_num(value * 100)} %"
    if unit == "percent":
        return f"{_num(value)} %"
    if unit == "seconds":
        if abs(value) >= _MS_BELOW_SECONDS:
            return f"{_num(value)} s"
        return f"{_num(value * 1000)} ms"
    if unit == "ms":
        return f"{_num(value)} ms"
    if unit == "count":
        return _num(value)
    return f"{value:g}"


def parse_number(text: str, unit: str = "none") -> float | None:
    """Parse an alert value as described in alerts.Alert.value; None if it is not a number.

    Here, not in alerts.py, so deciding and checking a config need not build the payload models."""
    s = text.strip()
    percent = s.endswith("%")
    if percent:
        s = s[:-1].rstrip()
    try:
        number = float(s)
    except ValueError:
        return None
    if math.isnan(number):
        return None
    if percent and unit != "percent":
        number /= 100
    return number
