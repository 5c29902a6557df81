"""Kubernetes label selectors: the one place that decides whether a selector selects labels.

Semantics follow k8s.io/apimachinery ``metav1.LabelSelectorAsSelector``:

- an absent selector (``None``) selects nothing;
- an empty selector (no matchLabels, no matchExpressions) selects everything;
- matchLabels and every matchExpressions requirement must all hold (AND);
- ``In``: the key is present and its value is listed; ``NotIn``: the key is absent or its
  value is not listed; ``Exists`` / ``DoesNotExist``: the key is (not) present;
- an unknown operator makes the selector invalid, and an invalid selector selects
  nothing (apimachinery returns an error; we never widen a selector we cannot read).

Callers that must never select a whole namespace (a Deployment's pods) pass ``None``
for a missing or empty selector; see :func:`receiver.domain.kube_views.deployment_view`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


@dataclass(frozen=True, slots=True)
class Requirement:
    """One matchExpressions entry."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def holds(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        return False  # invalid selector: selects nothing


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A parsed metav1.LabelSelector; hashable, so a changed selector compares unequal."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> LabelSelector | None:
        """From the API's JSON shape; ``None`` stays ``None`` (selects nothing)."""
        if raw is None:
            return None
        labels = raw.get("matchLabels") or {}
        exprs = raw.get("matchExpressions") or ()
        return cls(
            match_labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            match_expressions=tuple(
                Requirement(str(e.get("key") or ""), str(e.get("operator") or ""),
                            frozenset(str(v) for v in e.get("values") or ()))
                for e in exprs if isinstance(e, Mapping)
            ),
        )


def selects(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Does ``selector`` select an object with ``labels`` (apimachinery's rules, above)."""
    if selector is None:
        return False
    for key, value in selector.match_labels:
        if labels.get(key) != value:
            return False
    return all(req.holds(labels) for req in selector.match_expressions)
