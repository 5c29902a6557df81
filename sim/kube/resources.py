"""The API resources the simulator serves, as discovery and the router see them."""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class SubResource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None  # set when the subresource speaks another group (scale)
    version: str | None = None


@dataclass(frozen=True)
class Resource:
    """One plural resource in one group version."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    storage: str = ""  # shared storage name (core and events.k8s.io events are one store)
    subresources: tuple[SubResource, ...] = field(default_factory=tuple)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def store(self) -> str:
        return self.storage or self.plural

    def sub(self, name: str) -> SubResource | None:
        return next((s for s in self.subresources if s.name == name), None)


DEPLOYMENTS = Resource(
    "apps",
    "v1",
    "deployments",
    "deployment",
    "Deployment",
    True,
    ALL_VERBS,
    short_names=("deploy",),
    categories=("all",),
    subresources=(
        SubResource("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1"),
        SubResource("status", "Deployment", ("get", "patch", "update")),
    ),
)
REPLICASETS = Resource(
    "apps",
    "v1",
    "replicasets",
    "replicaset",
    "ReplicaSet",
    True,
    ALL_VERBS,
    short_names=("rs",),
    categories=("all",),
    subresources=(SubResource("status", "ReplicaSet", ("get", "patch", "update")),),
)
PODS = Resource(
    "",
    "v1",
    "pods",
    "pod",
    "Pod",
    True,
    ALL_VERBS,
    short_names=("po",),
    categories=("all",),
    subresources=(SubResource("status", "Pod", ("get", "patch", "update")),),
)
NAMESPACES = Resource(
    "",
    "v1",
    "namespaces",
    "namespace",
    "Namespace",
    False,
    ("create", "delete", "get", "list", "patch", "update", "watch"),
    short_names=("ns",),
)
CORE_EVENTS = Resource("", "v1", "events", "event", "Event", True, ALL_VERBS, short_names=("ev",), storage="events")
EVENTS_V1 = Resource(
    "events.k8s.io",
    "v1",
    "events",
    "event",
    "Event",
    True,
    ALL_VERBS,
    short_names=("ev",),
    storage="events",
)
CONFIGMAPS = Resource("", "v1", "configmaps", "configmap", "ConfigMap", True, ALL_VERBS, short_names=("cm",))
LEASES = Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True, ALL_VERBS)
# create-only and stored nowhere: answered by access_review.review
SELF_SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io", "v1", "selfsubjectaccessreviews", "selfsubjectaccessreview",
    "SelfSubjectAccessReview", False, ("create",),
)

RESOURCES: tuple[Resource, ...] = (
    PODS, NAMESPACES, CORE_EVENTS, CONFIGMAPS, DEPLOYMENTS, REPLICASETS, LEASES, EVENTS_V1, SELF_SUBJECT_ACCESS_REVIEWS,
)


def find(group: str, version: str, plural: str) -> Resource | None:
    for r in RESOURCES:
        if r.group == group and r.version == version and r.plural == plural:
            return r
    return None


def by_kind(api_version: str, kind: str) -> Resource | None:
    """The resource for a manifest's apiVersion and kind."""
    group, _, version = api_version.rpartition("/")
    for r in RESOURCES:
        if r.group == group and r.version == version and r.kind == kind:
            return r
    return None


def group_versions() -> dict[str, list[str]]:
    """Groups (excluding core) in the order /apis lists them, with their versions."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group:
            out.setdefault(r.group, [])
            if r.version not in out[r.group]:
                out[r.group].append(r.version)
    return out
