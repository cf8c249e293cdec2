"""Strict field validation (`?fieldValidation=Strict`, what kubectl sends): unknown fields in the parts of
the objects a learner writes by hand, reported with kube-apiserver's paths (`spec.containers[0].imagePullPolcy`)."""

from __future__ import annotations

from typing import Any

META = {"name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
        "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
        "managedFields", "selfLink"}
CONTAINER = {"name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources", "resizePolicy",
             "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe",
             "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "securityContext",
             "stdin", "stdinOnce", "tty"}
POD_SPEC = {"volumes", "initContainers", "containers", "ephemeralContainers", "restartPolicy", "terminationGracePeriodSeconds",
            "activeDeadlineSeconds", "dnsPolicy", "nodeSelector", "serviceAccountName", "serviceAccount",
            "automountServiceAccountToken", "nodeName", "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace",
            "securityContext", "imagePullSecrets", "hostname", "subdomain", "affinity", "schedulerName", "tolerations",
            "hostAliases", "priorityClassName", "priority", "dnsConfig", "readinessGates", "runtimeClassName",
            "enableServiceLinks", "preemptionPolicy", "overhead", "topologySpreadConstraints", "setHostnameAsFQDN", "os",
            "hostUsers", "schedulingGates", "resourceClaims", "resources"}
RESOURCES = {"limits", "requests", "claims"}
TOP = {"apiVersion", "kind", "metadata", "spec", "status"}


def _check(obj: Any, allowed: set[str], path: str, out: list[str]) -> None:
    if isinstance(obj, dict):
        for k in obj:
            if k not in allowed:
                out.append(f"{path}.{k}" if path else k)


def _pod_spec(spec: Any, path: str, out: list[str]) -> None:
    if not isinstance(spec, dict):
        return
    _check(spec, POD_SPEC, path, out)
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            p = f"{path}.{group}[{i}]"
            _check(c, CONTAINER, p, out)
            if isinstance(c, dict):
                _check(c.get("resources"), RESOURCES, f"{p}.resources", out)


def unknown_fields(kind: str, obj: dict[str, Any]) -> list[str]:
    """Field paths in ``obj`` that the kind does not have (checked for Pods and pod templates)."""
    out: list[str] = []
    top = TOP | ({"data", "binaryData", "immutable"} if kind in ("ConfigMap", "Secret") else set()) | (
        {"type", "stringData"} if kind == "Secret" else set())
    if kind not in ("Pod", "Job", "DaemonSet", "Namespace", "ConfigMap", "Secret"):
        return out
    _check(obj, top, "", out)
    _check(obj.get("metadata"), META, "metadata", out)
    if kind == "Pod":
        _pod_spec(obj.get("spec"), "spec", out)
    elif kind in ("Job", "DaemonSet"):
        tmpl = (obj.get("spec") or {}).get("template") if isinstance(obj.get("spec"), dict) else None
        if isinstance(tmpl, dict):
            _check(tmpl.get("metadata"), META, "spec.template.metadata", out)
            _pod_spec(tmpl.get("spec"), "spec.template.spec", out)
    return out
