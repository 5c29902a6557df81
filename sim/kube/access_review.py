"""SelfSubjectAccessReview (authorization.k8s.io/v1): "may I?", answered from the token's rules.

As pkg/registry/authorization/selfsubjectaccessreview: a create-only, cluster-scoped
resource that stores nothing; any authenticated user may create one (the
system:basic-user ClusterRole); the spec needs exactly one of resourceAttributes and
nonResourceAttributes (else 422 Invalid); the answer is 201 with the request echoed
and ``status.allowed`` (plus ``reason`` when allowed, as RBAC gives one). ``denied`` is
never set: RBAC only allows or has no opinion. ``kubectl auth can-i`` prints yes/no
from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from . import errors, protobuf
from .auth import AccessRule, allowed
from .patch import media_type
from .resources import SELF_SUBJECT_ACCESS_REVIEWS

GROUP = SELF_SUBJECT_ACCESS_REVIEWS.group
KIND = SELF_SUBJECT_ACCESS_REVIEWS.kind


def parse(body: bytes | None, content_type: str | None) -> Any:
    """The review from JSON or Kubernetes protobuf; 400 as the API server words it otherwise."""
    if not body:
        raise errors.bad_request("the body of the request was empty")
    try:
        if media_type(content_type) == protobuf.PROTOBUF:
            return protobuf.decode(body)
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {e}") from None


def _invalid(path: str, value: Any, detail: str) -> errors.ApiError:
    return errors.invalid(KIND, GROUP, "", [errors.invalid_value(path, errors.RawValue(value), detail)])


def review(body: Any, rules: Iterable[AccessRule] | None) -> dict[str, Any]:
    """The answered review for ``body``; ``rules`` None = the simulator runs without auth
    (everything allowed)."""
    if not isinstance(body, dict) or body.get("kind", KIND) != KIND:
        raise errors.bad_request(f"not a SelfSubjectAccessReview: {body!r}"[:300])
    spec = body.get("spec") or {}
    attrs, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if attrs is not None and non_resource is not None:
        raise _invalid("spec.nonResourceAttributes", "&authorization.NonResourceAttributes{...}",
                       "cannot be specified in combination with resourceAttributes")
    if attrs is None and non_resource is None:
        raise _invalid("spec.resourceAttributes", "nil",
                       "exactly one of nonResourceAttributes or resourceAttributes must be specified")
    if rules is None:
        ok, reason = True, "the simulator runs without authentication: everything is allowed"
    elif attrs is not None:
        ok = allowed(
            rules,
            str(attrs.get("verb") or ""),
            str(attrs.get("group") or ""),
            str(attrs.get("resource") or ""),
            str(attrs.get("subresource") or ""),
            str(attrs.get("namespace") or ""),
            str(attrs.get("name") or ""),
        )
        reason = "RBAC: allowed by the rules bound to this token" if ok else ""
    else:
        ok, reason = False, ""  # the simulator's rules never carry nonResourceURLs
    status: dict[str, Any] = {"allowed": ok}
    if reason:
        status["reason"] = reason
    meta = dict(body.get("metadata") or {})
    meta.setdefault("creationTimestamp", None)
    return {"kind": KIND, "apiVersion": f"{GROUP}/v1", "metadata": meta, "spec": spec, "status": status}
