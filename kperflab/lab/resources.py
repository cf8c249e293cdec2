"""The resource types the lab serves: one row each (group, version, kind, scope, verbs, behaviour)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import validation as v
from .storage import api as storage_api

Obj = dict[str, Any]
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = tuple(ALL_VERBS)
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    validate: Callable[[Obj], list[dict[str, str]]] = v.generic
    default: Callable[[Obj], None] | None = None
    fields: frozenset[str] = COMMON_FIELDS
    has_status: bool = False
    graceful: bool = False  # deletion goes through deletionTimestamp, an owner removes the object
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """The store key, e.g. 'v1/pods', 'batch/v1/jobs'."""
        return f"{self.group_version}/{self.plural}"

    @property
    def singular(self) -> str:
        return self.kind.lower()


POD_FIELDS = COMMON_FIELDS | {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                              "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"}
EVENT_FIELDS = COMMON_FIELDS | {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                                "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                                "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"}

TYPES: list[ResourceType] = [
    ResourceType("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",),
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch"), subresources=("status", "finalize"),
                 validate=v.namespace, fields=COMMON_FIELDS | {"status.phase"}, has_status=True, graceful=True),
    ResourceType("", "v1", "Node", "nodes", namespaced=False, short_names=("no",), subresources=("status", "proxy"),
                 fields=COMMON_FIELDS | {"spec.unschedulable"}, has_status=True),
    ResourceType("", "v1", "Pod", "pods", short_names=("po",), categories=("all",),
                 subresources=("status", "log", "eviction", "binding", "proxy", "exec", "attach", "portforward", "ephemeralcontainers", "resize"),
                 validate=v.pod, default=v.default_pod, fields=POD_FIELDS, has_status=True, graceful=True),
    ResourceType("", "v1", "Event", "events", short_names=("ev",), fields=EVENT_FIELDS),
    ResourceType("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    ResourceType("", "v1", "Secret", "secrets"),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",), subresources=("token",)),
    ResourceType("", "v1", "Service", "services", short_names=("svc",), categories=("all",), subresources=("status", "proxy"),
                 validate=v.service, default=v.default_service, has_status=True),
    ResourceType("", "v1", "Endpoints", "endpoints", short_names=("ep",)),
    ResourceType("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, short_names=("pv",),
                 subresources=("status",), has_status=True, validate=storage_api.validate_pv,
                 default=storage_api.default_pv),
    ResourceType("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",), subresources=("status",),
                 has_status=True, validate=storage_api.validate_pvc, default=storage_api.default_pvc),
    ResourceType("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False, short_names=("sc",),
                 validate=storage_api.validate_storageclass, default=storage_api.default_storageclass),
    ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    ResourceType("events.k8s.io", "v1", "Event", "events", short_names=("ev",), fields=COMMON_FIELDS),
    ResourceType("batch", "v1", "Job", "jobs", categories=("all",), subresources=("status",), validate=v.job,
                 default=v.default_job, has_status=True),
    ResourceType("apps", "v1", "DaemonSet", "daemonsets", short_names=("ds",), categories=("all",), subresources=("status",),
                 validate=v.daemonset, default=v.default_daemonset, has_status=True),
    ResourceType("apps", "v1", "Deployment", "deployments", short_names=("deploy",), categories=("all",),
                 subresources=("status", "scale"), has_status=True),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",), categories=("all",),
                 subresources=("status", "scale"), has_status=True),
    ResourceType("apps", "v1", "StatefulSet", "statefulsets", short_names=("sts",), categories=("all",),
                 subresources=("status", "scale"), has_status=True),
    ResourceType("apps", "v1", "ControllerRevision", "controllerrevisions"),
    ResourceType("", "v1", "ReplicationController", "replicationcontrollers", short_names=("rc",), categories=("all",),
                 subresources=("status", "scale"), has_status=True),
    ResourceType("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short_names=("hpa",),
                 categories=("all",), subresources=("status",), has_status=True),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases"),
    ResourceType("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", namespaced=False,
                 verbs=("create",)),
    ResourceType("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", namespaced=False,
                 verbs=("create",)),
    ResourceType("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", namespaced=False,
                 verbs=("create",)),
    ResourceType("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", namespaced=False,
                 verbs=("create",)),
    ResourceType("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
                 verbs=("create",)),
    ResourceType("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", namespaced=False, verbs=("create",)),
]

BY_PATH: dict[tuple[str, str, str], ResourceType] = {(t.group, t.version, t.plural): t for t in TYPES}
BY_KEY: dict[str, ResourceType] = {t.key: t for t in TYPES}


def groups() -> dict[str, list[str]]:
    """group → versions, in discovery order ("" is the core group)."""
    out: dict[str, list[str]] = {}
    for t in TYPES:
        out.setdefault(t.group, [])
        if t.version not in out[t.group]:
            out[t.group].append(t.version)
    return out


def api_resource_list(group: str, version: str, extra: list[Obj] | None = None) -> Obj:
    resources: list[Obj] = []
    for t in TYPES:
        if t.group != group or t.version != version:
            continue
        entry: Obj = {"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
                      "verbs": list(t.verbs)}
        if t.short_names:
            entry["shortNames"] = list(t.short_names)
        if t.categories:
            entry["categories"] = list(t.categories)
        resources.append(entry)
        for sub in t.subresources:
            sub_kind = {"log": "Pod", "status": t.kind, "eviction": "Eviction", "binding": "Binding", "scale": "Scale",
                        "token": "TokenRequest",
                        "proxy": "NodeProxyOptions" if t.kind == "Node" else f"{t.kind}ProxyOptions"}.get(sub, t.kind)
            verbs = {"log": ["get"], "status": ["get", "patch", "update"], "proxy": ["create", "delete", "get", "patch", "update"],
                     "eviction": ["create"], "binding": ["create"], "finalize": ["update"], "scale": ["get", "patch", "update"],
                     "token": ["create"]}.get(sub, ["get"])
            entry = {"name": f"{t.plural}/{sub}", "singularName": "", "namespaced": t.namespaced, "kind": sub_kind, "verbs": verbs}
            if sub in ("scale", "token"):  # their kinds live in another group, as kube-apiserver's discovery says
                entry.update({"group": "autoscaling" if sub == "scale" else "authentication.k8s.io", "version": "v1"})
            resources.append(entry)
    resources += extra or []
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}
