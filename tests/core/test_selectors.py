"""One label-selector rule, with the API server's semantics (LabelSelectorAsSelector)."""

from __future__ import annotations

from typing import Any

import pytest

from receiver.domain.selectors import LabelSelector, selects

V1 = {"app": "finance-service", "v": "1"}
V2 = {"app": "finance-service", "v": "2"}
UNVERSIONED = {"app": "finance-service"}


def sel(raw: dict[str, Any] | None) -> LabelSelector | None:
    return LabelSelector.parse(raw)


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": list(values)}]}


def test_an_absent_selector_selects_nothing() -> None:
    assert not selects(sel(None), V1)


def test_an_empty_selector_selects_everything() -> None:
    assert selects(sel({}), V1)
    assert selects(sel({}), {})


def test_match_labels_need_every_pair() -> None:
    s = sel({"matchLabels": V1})
    assert selects(s, {**V1, "pod-template-hash": "abc"})
    assert not selects(s, V2)
    assert not selects(s, UNVERSIONED)


def test_not_in_selects_other_values_and_objects_without_the_key() -> None:
    s = sel(expr("v", "NotIn", "2"))
    assert selects(s, V1)
    assert selects(s, UNVERSIONED)
    assert not selects(s, V2)


def test_in_needs_the_key_with_a_listed_value() -> None:
    s = sel(expr("v", "In", "1", "3"))
    assert selects(s, V1)
    assert not selects(s, V2)
    assert not selects(s, UNVERSIONED)


@pytest.mark.parametrize(
    ("operator", "with_key", "without_key"),
    [("Exists", True, False), ("DoesNotExist", False, True)],
)
def test_exists_and_does_not_exist_look_only_at_the_key(operator: str, with_key: bool, without_key: bool) -> None:
    s = sel({"matchExpressions": [{"key": "v", "operator": operator}]})
    assert selects(s, V1) is with_key
    assert selects(s, UNVERSIONED) is without_key


def test_labels_and_expressions_must_all_hold() -> None:
    s = sel({"matchLabels": {"app": "finance-service"}, **expr("v", "NotIn", "2")})
    assert selects(s, V1)
    assert not selects(s, V2)
    assert not selects(s, {"app": "billing", "v": "1"})


def test_an_unknown_operator_selects_nothing_rather_than_everything() -> None:
    assert not selects(sel(expr("v", "Gt", "1")), V1)


def test_a_changed_selector_compares_unequal_and_an_equal_one_equal() -> None:
    assert sel({"matchLabels": {"a": "1", "b": "2"}}) == sel({"matchLabels": {"b": "2", "a": "1"}})
    assert sel(expr("v", "In", "1")) != sel(expr("v", "NotIn", "1"))
