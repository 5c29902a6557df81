"""Bearer-token authentication and RBAC-style authorization rules.

A test gives the simulator a token -> rules map, typically parsed from the Role we
ship, so it can prove the receiver works with exactly those permissions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


def _fs(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


@dataclass(frozen=True)
class AccessRule:
    """One PolicyRule: verbs x apiGroups x resources (subresources as "deployments/scale"),
    limited to namespaces (None = all) and resourceNames (None = all)."""

    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: frozenset[str]
    namespaces: frozenset[str] | None = None
    resource_names: frozenset[str] | None = None

    def __init__(
        self,
        verbs: Iterable[str],
        api_groups: Iterable[str],
        resources: Iterable[str],
        namespaces: Iterable[str] | None = None,
        resource_names: Iterable[str] | None = None,
    ) -> None:
        object.__setattr__(self, "verbs", frozenset(verbs))
        object.__setattr__(self, "api_groups", frozenset(api_groups))
        object.__setattr__(self, "resources", frozenset(resources))
        object.__setattr__(self, "namespaces", _fs(namespaces))
        object.__setattr__(self, "resource_names", _fs(resource_names))

    def allows(self, verb: str, group: str, resource: str, subresource: str, namespace: str, name: str) -> bool:
        """rbac.RuleAllows: `*` wildcards; resourceNames never match list/watch/create
        of the whole collection (no name)."""
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if "*" not in self.api_groups and group not in self.api_groups:
            return False
        full = f"{resource}/{subresource}" if subresource else resource
        if not (
            "*" in self.resources
            or full in self.resources
            or (subresource and f"*/{subresource}" in self.resources)
            or (not subresource and resource in self.resources)
        ):
            return False
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        if self.resource_names:
            return bool(name) and name in self.resource_names
        return True

    @classmethod
    def from_role(cls, role: Mapping[str, Any], namespace: str | None = None) -> list[AccessRule]:
        """Rules of an rbac.authorization.k8s.io/v1 Role (bound in `namespace`, default
        the Role's own) or ClusterRole (all namespaces unless `namespace` is given)."""
        if role.get("kind") == "Role":
            ns = namespace or (role.get("metadata") or {}).get("namespace")
            namespaces: frozenset[str] | None = frozenset([ns]) if ns else None
        else:
            namespaces = frozenset([namespace]) if namespace else None
        out = []
        for r in role.get("rules") or []:
            if r.get("nonResourceURLs"):
                continue
            out.append(
                cls(
                    r.get("verbs") or [],
                    r.get("apiGroups") or [],
                    r.get("resources") or [],
                    namespaces,
                    r.get("resourceNames") or None,
                )
            )
        return out


def allowed(
    rules: Iterable[AccessRule],
    verb: str,
    group: str,
    resource: str,
    subresource: str,
    namespace: str,
    name: str,
) -> bool:
    return any(r.allows(verb, group, resource, subresource, namespace, name) for r in rules)
