"""Discovery documents: /version, /api, /apis and each group version's APIResourceList.

Answered as plain application/json (unaggregated); kubectl 1.32 asks for aggregated
discovery first and falls back to these when the Content-Type says so.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import RESOURCES, group_versions

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list() -> dict[str, Any]:
    groups = []
    for name, versions in group_versions().items():
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        groups.append({"name": name, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> dict[str, Any] | None:
    versions = group_versions().get(name)
    if not versions:
        return None
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": gvs, "preferredVersion": gvs[0]}


def _storage_hash(kind: str, gv: str) -> str:
    digest = hashlib.sha256(f"{gv}/{kind}".encode()).digest()[:8]
    import base64

    return base64.b64encode(digest).decode()


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    gv = f"{group}/{version}" if group else version
    entries: list[dict[str, Any]] = []
    for r in RESOURCES:
        if r.group != group or r.version != version:
            continue
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": sorted(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entry["storageVersionHash"] = _storage_hash(r.kind, gv)
        entries.append(entry)
        for s in r.subresources:
            sub: dict[str, Any] = {
                "name": f"{r.plural}/{s.name}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": sorted(s.verbs),
            }
            if s.group is not None:
                sub["group"] = s.group
                sub["version"] = s.version
            entries.append(sub)
    if not entries:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}


def etag(doc: dict[str, Any]) -> str:
    return '"' + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32] + '"'


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_v3_root() -> dict[str, Any]:
    """/openapi/v3: one entry per group version, as the API server lists them."""
    paths: dict[str, Any] = {}
    for r in RESOURCES:
        gv = _gv_path(r.group, r.version)
        if gv not in paths:
            digest = etag(openapi_v3_group_version(r.group, r.version) or {}).strip('"').upper()
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_group_version(group: str, version: str) -> dict[str, Any] | None:
    """The parts of a group version's OpenAPI v3 document kubectl reads before it applies:
    each resource's PATCH operation with its GVK and the fieldValidation parameter (which
    tells kubectl the server validates fields itself). No schemas: kubectl's apply then
    computes strategic merge patches from its compiled-in types, as for any built-in kind."""
    paths: dict[str, Any] = {}
    for r in RESOURCES:
        if r.group != group or r.version != version or "patch" not in r.verbs:
            continue
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        where = f"/{_gv_path(r.group, r.version)}/" + ("namespaces/{namespace}/" if r.namespaced else "")
        paths[f"{where}{r.plural}/{{name}}"] = {"patch": {
            "operationId": f"patch{r.kind}",
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            ],
            "responses": {"200": {"description": "OK"}},
        }}
    if not paths:
        return None
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]}, "paths": paths}
