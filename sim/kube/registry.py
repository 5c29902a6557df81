"""REST storage semantics: what create, update, patch and delete do to an object
(uid, creationTimestamp, resourceVersion, generation, managedFields, preconditions,
status/scale subresources), independent of HTTP."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import clock, convert, defaults, fields, validation
from .errors import (
    ApiError,
    Cause,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from .patch import APPLY_PATCH, apply_patch, media_type
from .resources import NAMESPACES, PODS, Resource
from .store import Obj, Store, clone, renew

WITH_STATUS = {"deployments", "replicasets", "pods", "namespaces"}
SYSTEM_META = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
)


_VOLATILE_META = frozenset({"managedFields", "resourceVersion"})
_ABSENT = object()


def _same_but_bookkeeping(a: Obj, b: Obj) -> bool:
    """Equal but for metadata.managedFields and metadata.resourceVersion (a no-op write),
    compared in place: copying both objects to strip those cost more than the write."""
    if a.keys() != b.keys():
        return False
    for k, v in a.items():
        if k != "metadata" and v != b[k]:
            return False
    ma, mb = a.get("metadata"), b.get("metadata")
    if not isinstance(ma, dict) or not isinstance(mb, dict):
        return bool(ma == mb)
    return all(ma.get(k, _ABSENT) == mb.get(k, _ABSENT) for k in (ma.keys() | mb.keys()) - _VOLATILE_META)


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store

    # reads --------------------------------------------------------------
    def get(self, res: Resource, ns: str, name: str) -> Obj:
        obj = self.store.get(res.store, ns, name)
        if obj is None:
            raise not_found(res.plural, res.group, name)
        return obj

    def list_objects(self, res: Resource, ns: str | None, labels: Iterable[tuple[str, str]] = ()) -> list[Obj]:
        """Ordered by namespace/name; labels (label=value pairs) narrow it by index."""
        return [*self.store.items(res.store, ns if res.namespaced else None, labels)]

    # create -------------------------------------------------------------
    def create(self, res: Resource, ns: str, body: Any, *, manager: str, operation: str = "Update") -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        obj = clone(body)
        meta = obj.setdefault("metadata", {}) or {}
        obj["metadata"] = meta
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = ns
            if self.store.get("namespaces", "", ns) is None:
                raise not_found("namespaces", "", ns)
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + clock.random_suffix()
        if res.group == "events.k8s.io":
            obj = convert.event_to_core(obj)
            meta = obj["metadata"]
        name = meta.get("name", "")
        causes: list[Cause] = []
        if not name:
            causes.append(
                Cause("FieldValueRequired", "Required value: name or generateName is required", "metadata.name")
            )
        else:
            causes += validation.validate_name(res.kind, name)
        causes += self._validate(res, obj, ns)
        if causes:
            raise invalid(res.kind, res.group, name, causes)
        if self.store.get(res.store, meta.get("namespace", ""), name) is not None:
            raise already_exists(res.plural, res.group, name)
        for k in SYSTEM_META:
            meta.pop(k, None)
        meta["uid"] = clock.new_uid()
        meta["creationTimestamp"] = clock.rfc3339()
        obj["kind"] = res.kind if res.group != "events.k8s.io" else "Event"
        obj["apiVersion"] = "v1" if res.store == "events" else res.group_version
        if res.plural in ("deployments", "replicasets"):
            meta["generation"] = 1
        # The manager owns what it sent, not what defaulting adds.
        fields.record(obj, None, manager=manager, operation=operation, api_version=res.group_version)
        defaults.apply(res.kind, obj)
        if res.store == "events":
            convert.core_event_defaults(obj)
        if res.plural in WITH_STATUS and res.plural != "namespaces" and res.plural != "pods":
            obj["status"] = {}
        meta["resourceVersion"] = str(self.store.next_rv())
        self.store.commit(res.store, obj)
        return obj

    def _validate(self, res: Resource, obj: Obj, ns: str) -> list[Cause]:
        if res.plural == "deployments":
            return validation.validate_deployment(obj)
        if res.plural == "leases":
            return validation.validate_lease(obj)
        if res.plural == "configmaps":
            return validation.validate_config_map(obj)
        if res.store == "events":
            return validation.validate_event(obj, ns, res.group == "events.k8s.io")
        return []

    # update -------------------------------------------------------------
    def update(
        self,
        res: Resource,
        ns: str,
        name: str,
        body: Any,
        *,
        manager: str,
        subresource: str = "",
        operation: str = "Update",
        copy_body: bool = True,
    ) -> Obj:
        """copy_body=False when body is the caller's to give away (decoded from a request,
        or a patch's result), so it becomes the new object without another copy."""
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        old = self.get(res, ns, name)
        if subresource == "scale":
            return self._update_scale(res, old, body, manager)
        new = clone(body) if copy_body else body
        if res.group == "events.k8s.io":
            new = convert.event_to_core(new)
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        self._preconditions(res, old, meta.get("resourceVersion"), meta.get("uid"))
        meta["name"] = name
        if res.namespaced:
            meta["namespace"] = ns
        for k in SYSTEM_META:
            if k in old["metadata"]:
                meta[k] = old["metadata"][k]
            else:
                meta.pop(k, None)
        new["kind"], new["apiVersion"] = old["kind"], old["apiVersion"]
        if subresource == "status":
            status = new.get("status")
            new = clone(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif res.plural in WITH_STATUS:
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        if res.plural == "deployments":
            defaults.deployment(new)
        if res.plural in ("deployments", "pods"):
            defaults.pod_spec(
                (new.get("spec") or {}).get("template", {}).get("spec", {})
                if res.plural == "deployments"
                else new.setdefault("spec", {})
            )
        causes = self._validate_update(res, old, new, ns)
        if causes:
            raise invalid(res.kind, res.group, name, causes)
        return self._commit_update(res, old, new, manager=manager, subresource=subresource, operation=operation)

    def _validate_update(self, res: Resource, old: Obj, new: Obj, ns: str) -> list[Cause]:
        causes = self._validate(res, new, ns) if res.store != "events" else []
        if res.plural == "configmaps":
            causes += validation.validate_config_map_update(old, new)
        selector = (new.get("spec") or {}).get("selector")
        if res.plural == "deployments" and (old.get("spec") or {}).get("selector") != selector:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    "Invalid value: " + _go_selector(selector) + ": field is immutable",
                    "spec.selector",
                )
            )
        return causes

    def _preconditions(self, res: Resource, old: Obj, rv: Any, uid: Any) -> None:
        name = old["metadata"]["name"]
        if uid and uid != old["metadata"]["uid"]:
            raise conflict(
                res.plural,
                res.group,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: {old['metadata']['uid']}",
            )
        if rv and str(rv) != old["metadata"]["resourceVersion"]:
            raise conflict(res.plural, res.group, name)

    def _commit_update(
        self,
        res: Resource,
        old: Obj,
        new: Obj,
        *,
        manager: str,
        subresource: str = "",
        operation: str = "Update",
    ) -> Obj:
        if _same_but_bookkeeping(old, new):
            return old  # a no-op write changes nothing, not even the resourceVersion
        meta = new["metadata"]
        if "generation" in old["metadata"]:
            spec_changed = old.get("spec") != new.get("spec")
            ann_changed = res.plural == "deployments" and (
                old["metadata"].get("annotations") != meta.get("annotations")
            )
            if spec_changed or ann_changed:
                meta["generation"] = old["metadata"]["generation"] + 1
        fields.record(
            new,
            old,
            manager=manager,
            operation=operation,
            api_version=res.group_version,
            subresource=subresource,
        )
        meta["resourceVersion"] = str(self.store.next_rv())
        self.store.commit(res.store, new)
        return new

    def _update_scale(self, res: Resource, old: Obj, scale: Obj, manager: str) -> Obj:
        name = old["metadata"]["name"]
        smeta = scale.get("metadata") or {}
        if smeta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({smeta.get('name')}) does not match the name on the URL ({name})"
            )
        self._preconditions(res, old, smeta.get("resourceVersion"), smeta.get("uid"))
        causes = validation.validate_scale(scale)
        if causes:
            raise invalid("Scale", "autoscaling", name, causes)
        new = renew(old, "spec")
        new["spec"]["replicas"] = (scale.get("spec") or {}).get("replicas", 0)
        out = self._commit_update(res, old, new, manager=manager, subresource="scale")
        return convert.scale_of(out)

    # patch --------------------------------------------------------------
    def patch(
        self,
        res: Resource,
        ns: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        manager: str,
        subresource: str = "",
    ) -> Obj:
        kind = media_type(content_type)
        current = self.store.get(res.store, ns, name)
        if current is None:
            if kind == APPLY_PATCH and not subresource:
                return self.create(res, ns, patch, manager=manager, operation="Apply")
            raise not_found(res.plural, res.group, name)
        if subresource == "scale":
            view = convert.scale_of(current)
        elif res.group == "events.k8s.io":
            view = convert.event_from_core(current)
        else:
            view = current
        patched = apply_patch(view, patch, content_type)
        operation = "Apply" if kind == APPLY_PATCH else "Update"
        if subresource == "scale":
            return self.update(res, ns, name, patched, manager=manager, subresource="scale")
        if subresource == "status":
            return self.update(
                res, ns, name, patched, manager=manager, subresource="status", operation=operation, copy_body=False
            )
        if res.plural in WITH_STATUS and "status" in current:
            patched["status"] = current["status"]
        return self.update(res, ns, name, patched, manager=manager, operation=operation, copy_body=False)

    # delete -------------------------------------------------------------
    def delete(
        self,
        res: Resource,
        ns: str,
        name: str,
        options: dict[str, Any] | None = None,
        grace_override: int | None = None,
    ) -> tuple[Obj, bool]:
        """Returns (object, gone). A pod with a grace period is only marked terminating."""
        options = options or {}
        obj = self.get(res, ns, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise conflict(
                res.plural,
                res.group,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {obj['metadata']['uid']}",
            )
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != obj["metadata"]["resourceVersion"]:
            raise conflict(
                res.plural,
                res.group,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {obj['metadata']['resourceVersion']}",
            )
        grace = options.get("gracePeriodSeconds")
        if grace_override is not None:
            grace = grace_override
        if res is PODS or res.plural == "pods":
            if grace is None:
                grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            if grace and grace > 0:
                if obj["metadata"].get("deletionTimestamp"):
                    return obj, False
                new = renew(obj)
                when = clock.now().timestamp() + grace
                import datetime as dt

                new["metadata"]["deletionTimestamp"] = clock.rfc3339(dt.datetime.fromtimestamp(when, dt.UTC))
                new["metadata"]["deletionGracePeriodSeconds"] = grace
                new["metadata"]["resourceVersion"] = str(self.store.next_rv())
                self.store.commit(res.store, new)
                return new, False
        return self.remove(res.store, obj), True

    def remove(self, storage: str, obj: Obj) -> Obj:
        gone = renew(obj)
        gone["metadata"]["resourceVersion"] = str(self.store.next_rv())
        self.store.commit(storage, gone, deleted=True)
        return gone

    # system writes (controller, kubelet, seeding) -------------------------
    def system_write(
        self, storage: str, old: Obj | None, new: Obj, *, manager: str, subresource: str = "", api_version: str = ""
    ) -> Obj:
        """Commit a write from a cluster component, skipping API validation."""
        if old is not None and _same_but_bookkeeping(old, new):
            return old
        if old is None:
            new["metadata"].setdefault("uid", clock.new_uid())
            new["metadata"].setdefault("creationTimestamp", clock.rfc3339())
        fields.record(
            new,
            old,
            manager=manager,
            operation="Update",
            api_version=api_version or new.get("apiVersion", "v1"),
            subresource=subresource,
        )
        new["metadata"]["resourceVersion"] = str(self.store.next_rv())
        self.store.commit(storage, new)
        return new

    def ensure_namespace(self, name: str) -> None:
        if self.store.get("namespaces", "", name) is None:
            self.create(NAMESPACES, "", {"metadata": {"name": name}}, manager="sim")


def _go_selector(sel: Any) -> str:
    labels = (sel or {}).get("matchLabels") or {}
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
    return (
        f"v1.LabelSelector{{MatchLabels:map[string]string{{{inner}}}, "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
    )


def raise_if(err: ApiError | None) -> None:
    if err is not None:
        raise err
