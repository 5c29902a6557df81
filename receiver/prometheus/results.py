"""Instant-query answers as typed samples, parsed from Prometheus' JSON envelope.

The API answers ``{"status": "success", "data": {"resultType": "vector", "result":
[{"metric": {...}, "value": [<unix ts>, "<value>"]}]}}`` (values are strings and may
be "NaN", "+Inf", "-Inf"), a scalar as ``"result": [<ts>, "<value>"]``, and errors as
``{"status": "error", "errorType": "...", "error": "..."}`` with HTTP 400/422/503.
Only vectors and scalars can be judged against a threshold; a matrix (a range vector
such as ``x[5m]``) or a string is refused with a message saying so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from receiver.prometheus.errors import PrometheusQueryError, PrometheusResponseError


@dataclass(frozen=True, slots=True)
class Sample:
    """One series' value at the query's instant.

    ``value`` is a float and may be NaN (0/0: e.g. an error ratio with no requests
    in the window, which says nothing about health) or +/-Inf (x/0: a defined value,
    above every threshold), so callers must check ``defined`` before comparing.
    """

    labels: Mapping[str, str]
    value: float
    timestamp: float

    def label(self, name: str) -> str:
        """A label's value; a missing label reads as "", as in PromQL matching."""
        return self.labels.get(name, "")

    @property
    def defined(self) -> bool:
        """False for NaN: no comparison with a threshold means anything."""
        return not math.isnan(self.value)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """An instant query's answer: the samples (no series = empty), and Prometheus' warnings."""

    query: str
    result_type: Literal["vector", "scalar"]
    samples: tuple[Sample, ...]
    warnings: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """No series: for a filtering rule (``> 0.05``) that means "none above"; for a
        bare expression it means the metric does not exist (yet) for that selector."""
        return not self.samples

    def with_label(self, name: str, value: str) -> tuple[Sample, ...]:
        """The samples whose ``name`` label equals ``value`` (e.g. version="v1")."""
        return tuple(s for s in self.samples if s.label(name) == value)


def _value(raw: Any, query: str) -> tuple[float, float]:
    """[ts, "v"] -> (ts, v); anything else is not Prometheus' API."""
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], int | float)
            and isinstance(raw[1], str)):
        raise PrometheusResponseError(f"unexpected sample {raw!r} in the answer to {query!r}")
    try:
        return float(raw[0]), float(raw[1])  # float() reads "NaN", "+Inf", "-Inf"
    except ValueError as e:
        raise PrometheusResponseError(f"sample value {raw[1]!r} is not a number") from e


def parse_query_response(body: Any, *, query: str, status: int | None = None) -> QueryResult:
    """Turn the decoded JSON of /api/v1/query into a QueryResult, or raise.

    ``status: error`` raises PrometheusQueryError with Prometheus' errorType and error
    message unchanged; a body that is not the API's envelope raises
    PrometheusResponseError.
    """
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        raise PrometheusResponseError(f"not a Prometheus API answer (HTTP {status})", status=status)
    if body["status"] == "error":
        raise PrometheusQueryError(
            str(body.get("errorType") or "unknown"), str(body.get("error") or "(no message)"), status=status
        )
    data = body.get("data")
    if not isinstance(data, dict):
        raise PrometheusResponseError("the answer has no data", status=status)
    warnings = tuple(str(w) for w in body.get("warnings") or ())
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        ts, value = _value(result, query)
        return QueryResult(query, "scalar", (Sample({}, value, ts),), warnings)
    if kind == "vector" and isinstance(result, list):
        samples = []
        for item in result:
            metric = item.get("metric") if isinstance(item, dict) else None
            if not isinstance(metric, dict):
                raise PrometheusResponseError(f"unexpected series {item!r} in the answer to {query!r}")
            ts, value = _value(item.get("value"), query)
            samples.append(Sample({str(k): str(v) for k, v in metric.items()}, value, ts))
        return QueryResult(query, "vector", tuple(samples), warnings)
    if kind == "matrix":
        raise PrometheusQueryError(
            "result_type", "the query returns a range vector (matrix); use an instant vector, "
            "e.g. rate(x[5m]) instead of x[5m]", status=status,
        )
    if kind == "string":
        raise PrometheusQueryError("result_type", "the query returns a string, not a number", status=status)
    raise PrometheusResponseError(f"unknown result type {kind!r}", status=status)
