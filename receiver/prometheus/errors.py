"""Why a Prometheus query gave no answer, as types a caller can branch on.

The receiver must never crash or hang because monitoring is down, and must tell people
why a check was skipped ("unknown: Prometheus unreachable ..."). So every failure of a
query is one of these, with a ``reason`` fit for a Slack message or a decision's reason
(no tokens: credentials never appear in them).
"""

from __future__ import annotations


class PrometheusError(Exception):
    """A query gave no usable answer; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PrometheusUnavailable(PrometheusError):
    """No answer within the caller's wait: unreachable, 5xx, or too slow (after retries)."""

    def __init__(self, reason: str, *, attempts: int) -> None:
        super().__init__(reason)
        self.attempts = attempts


class PrometheusQueryError(PrometheusError):
    """Prometheus answered and refused the query (``status: error``): not retried.

    ``error_type`` is Prometheus' own (bad_data, execution, ...) and ``message`` its
    own words, e.g. the parse error of a mistyped expression; ``result_type`` is used
    for answers the receiver cannot judge (a range vector, a string).
    """

    def __init__(self, error_type: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"Prometheus refused the query ({error_type}): {message}")
        self.error_type = error_type
        self.message = message
        self.status = status


class PrometheusResponseError(PrometheusError):
    """Something answered that is not Prometheus' API (HTML from a proxy, 401, bad JSON)."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status


class PrometheusCredentialsError(PrometheusError):
    """A configured credentials file cannot be read: a setup problem, not retried."""
