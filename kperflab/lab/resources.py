"""The resource types the lab serves: one row each (group, version, kind, scope, verbs, behaviour)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import apiservices, cronjobs, hpa, ingress, policy, quota, rbac
from . import deployments as workloads
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


@dataclass(frozen=True)
class StoredAs(ResourceType):
    """Another served version of a kind whose objects live in the store as ``storage`` (kube-apiserver's storage
    version): autoscaling/v1 HorizontalPodAutoscalers are stored as autoscaling/v2. ``default`` converts what a client
    sends; ``extra["present"]`` shows a stored object in this version."""

    storage: str = ""

    @property
    def key(self) -> str:
        return self.storage


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
                 subresources=("status", "scale"), has_status=True, validate=workloads.deployment,
                 default=workloads.default_deployment, extra={"validate_update": workloads.validate_update,
                                                              "spec_changed": workloads.deployment_generation_changes}),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",), categories=("all",),
                 subresources=("status", "scale"), has_status=True, validate=workloads.replicaset,
                 default=workloads.default_replicaset, extra={"validate_update": workloads.validate_update}),
    ResourceType("apps", "v1", "StatefulSet", "statefulsets", short_names=("sts",), categories=("all",),
                 subresources=("status", "scale"), has_status=True, validate=workloads.statefulset,
                 default=workloads.default_statefulset, extra={"validate_update": workloads.validate_update}),
    ResourceType("apps", "v1", "ControllerRevision", "controllerrevisions"),
    ResourceType("", "v1", "ReplicationController", "replicationcontrollers", short_names=("rc",), categories=("all",),
                 subresources=("status", "scale"), has_status=True, validate=workloads.replicationcontroller,
                 default=workloads.default_replicationcontroller, extra={"validate_update": workloads.validate_update}),
    ResourceType("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short_names=("hpa",),
                 categories=("all",), subresources=("status",), has_status=True, validate=hpa.validate_hpa,
                 default=hpa.default_hpa, extra={"present": hpa.to_v2}),
    StoredAs("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", short_names=("hpa",),
             categories=("all",), subresources=("status",), has_status=True, validate=hpa.validate_hpa,
             default=hpa.default_v1, extra={"present": hpa.to_v1}, storage=hpa.KEY),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", validate=rbac.validate_role),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", validate=rbac.validate_role_binding,
                 default=rbac.default_binding, extra={"validate_update": rbac.validate_binding_update}),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False,
                 validate=rbac.validate_cluster_role),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False,
                 validate=rbac.validate_cluster_role_binding, default=rbac.default_binding,
                 extra={"validate_update": rbac.validate_binding_update}),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases"),
    ResourceType("apiregistration.k8s.io", "v1", "APIService", "apiservices", namespaced=False, categories=("api-extensions",),
                 subresources=("status",), has_status=True, validate=apiservices.validate, default=apiservices.default),
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
    ResourceType("batch", "v1", "CronJob", "cronjobs", short_names=("cj",), categories=("all",), subresources=("status",),
                 has_status=True, validate=cronjobs.validate_cronjob, default=cronjobs.default_cronjob,
                 extra={"validate_update": cronjobs.validate_update}),
    ResourceType("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short_names=("pdb",),
                 subresources=("status",), has_status=True, validate=policy.validate_pdb),
    ResourceType("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False, short_names=("pc",),
                 validate=policy.validate_priorityclass, default=policy.default_priorityclass,
                 extra={"validate_update": policy.validate_priorityclass_update}),
    ResourceType("", "v1", "ResourceQuota", "resourcequotas", short_names=("quota",), subresources=("status",),
                 has_status=True, validate=quota.validate_quota),
    ResourceType("", "v1", "LimitRange", "limitranges", short_names=("limits",), validate=quota.validate_limitrange,
                 default=quota.default_limitrange),
    ResourceType("networking.k8s.io", "v1", "Ingress", "ingresses", short_names=("ing",), subresources=("status",),
                 has_status=True, validate=ingress.validate_ingress),
    ResourceType("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False,
                 validate=ingress.validate_ingressclass, default=ingress.default_ingressclass),
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
            if sub in ("scale", "token", "eviction"):  # their kinds live in another group, as kube-apiserver's discovery says
                entry.update({"group": {"scale": "autoscaling", "token": "authentication.k8s.io",
                                        "eviction": "policy"}[sub], "version": "v1"})  # (kubectl drain evicts only then)
            resources.append(entry)
    resources += extra or []
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}
