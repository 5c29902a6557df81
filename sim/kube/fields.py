"""metadata.managedFields bookkeeping, close enough to server-side field management
that a client can tell who last set spec.replicas (and through which subresource).

Fields are tracked at leaf level; lists are atomic (one owner for the whole list),
which is coarser than the real structured-merge-diff but answers "who owns what".
"""

from __future__ import annotations

from typing import Any

from . import clock

Path = tuple[str, ...]

# Metadata the server owns itself; never attributed to a manager.
SYSTEM_META = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
}


def _interesting(obj: dict[str, Any], subresource: str) -> dict[str, Any]:
    if subresource == "status":
        return {"status": obj.get("status")} if obj.get("status") else {}
    if subresource == "scale":
        replicas = (obj.get("spec") or {}).get("replicas")
        return {"spec": {"replicas": replicas}} if replicas is not None else {}
    out = {k: v for k, v in obj.items() if k not in ("status", "metadata", "kind", "apiVersion")}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SYSTEM_META}
    if meta:
        out["metadata"] = meta
    return out


def changed_paths(old: dict[str, Any] | None, new: dict[str, Any], subresource: str) -> set[Path]:
    """Leaf paths of new whose value differs from old's (all of them when old is None)."""
    out: set[Path] = set()
    _diff(_MISSING if old is None else _interesting(old, subresource), _interesting(new, subresource), (), out)
    return out


_MISSING = object()


def _diff(old: Any, new: Any, prefix: Path, out: set[Path]) -> None:
    # Walks only where the two differ: an equal subtree (compared in C) has no changed leaf.
    if isinstance(new, dict) and new:
        for k, v in new.items():
            o = old.get(k, _MISSING) if isinstance(old, dict) else _MISSING
            if o is not _MISSING and (o is v or o == v):
                continue
            _diff(o, v, (*prefix, k), out)
    elif prefix:
        out.add(prefix)


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for p in sorted(paths):
        node = root
        for part in p:
            node = node.setdefault(f"f:{part}", {})
    return root


def _overlaps(tree: dict[str, Any], paths: set[Path]) -> bool:
    """Whether a leaf of tree is a prefix of, or extends, one of paths (what taking those
    paths from the tree's manager would remove), walking the tree rather than parsing it."""
    for q in paths:
        node = tree
        for part in q:
            child = node.get(f"f:{part}")
            if child is None:
                break
            if not child:
                return True  # a leaf of the tree is a prefix of q
            node = child
        else:
            return True  # q is a prefix of leaves of the tree
    return False


def _covers(tree: dict[str, Any], paths: set[Path]) -> bool:
    """Whether adding paths to the tree's leaves leaves the tree as it is: every path
    ends on a node of the tree without passing a leaf first."""
    for q in paths:
        node = tree
        for part in q:
            if not node:
                return False  # a leaf of the tree would grow
            child = node.get(f"f:{part}")
            if child is None:
                return False
            node = child
    return True


def from_fields_v1(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for k, v in fields.items():
        if not k.startswith("f:"):
            continue
        p = (*prefix, k[2:])
        if v:
            out |= from_fields_v1(v, p)
        else:
            out.add(p)
    return out


def record(
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    *,
    manager: str,
    operation: str,
    api_version: str,
    subresource: str = "",
) -> None:
    """Give `manager` the fields this write changed, taking them from other managers."""
    meta = obj.setdefault("metadata", {})
    entries: list[dict[str, Any]] = [dict(e) for e in ((old or {}).get("metadata", {}).get("managedFields") or [])]
    paths = changed_paths(old, obj, subresource)
    if not paths:
        if entries:
            meta["managedFields"] = entries
        else:
            meta.pop("managedFields", None)
        return
    kept: list[dict[str, Any]] = []
    mine: dict[str, Any] | None = None
    mine_tree: dict[str, Any] | None = None
    unmerged: dict[str, Any] | None = None  # mine's tree, merged into paths only when needed
    for e in entries:
        tree = e.get("fieldsV1") or {}
        same = (
            e.get("manager") == manager and e.get("operation") == operation and e.get("subresource", "") == subresource
        )
        if unmerged is not None:
            paths |= from_fields_v1(unmerged)  # entries after mine lose what mine owned too
            unmerged = None
        if same:
            # the union would rebuild this very tree when it covers the new paths
            if mine is None and _covers(tree, paths):
                mine_tree = unmerged = tree
            else:
                mine_tree = None
                paths |= from_fields_v1(tree)
            mine = e
            continue
        if not _overlaps(tree, paths):
            # untouched by this write: the tree rebuilt from its own leaves is itself
            if tree:
                kept.append(e)
            continue
        owned = from_fields_v1(tree)
        rest = {p for p in owned if not any(p[: len(q)] == q or q[: len(p)] == p for q in paths)}
        if rest:
            e["fieldsV1"] = to_fields_v1(rest)
            kept.append(e)
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": clock.rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(paths) if mine_tree is None else mine_tree,
    }
    if subresource:
        entry["subresource"] = subresource
    if mine is not None:
        idx = entries.index(mine)
        kept.insert(min(idx, len(kept)), entry)
    else:
        kept.append(entry)
    meta["managedFields"] = kept


def manager_from_user_agent(user_agent: str | None) -> str:
    """The server's default fieldManager: the User-Agent up to the first '/'."""
    ua = (user_agent or "").strip()
    if not ua:
        return "unknown"
    return ua.split("/", 1)[0][:128]
