"""Defaulting and validation of the objects the lab serves, with kube-apiserver's field paths and messages."""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

from . import quantity

Cause = dict[str, str]

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
              "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
              f"validation is '{DNS1123_LABEL}')")
_SUB_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
            "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
            f"'{DNS1123_SUBDOMAIN}')")
_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def cause(field: str, kind: str, message: str) -> Cause:
    reason = {"Invalid value": "FieldValueInvalid", "Required value": "FieldValueRequired",
              "Duplicate value": "FieldValueDuplicate", "Unsupported value": "FieldValueNotSupported",
              "Forbidden": "FieldValueForbidden"}[kind]
    return {"reason": reason, "message": f"{kind}: {message}" if kind != "Required value" else kind + (f": {message}" if message else ""),
            "field": field}


def invalid_value(field: str, value: Any, why: str) -> Cause:
    import json

    shown = json.dumps(value) if isinstance(value, str) else str(value)
    return cause(field, "Invalid value", f"{shown}: {why}")


def dns_label(field: str, value: str) -> list[Cause]:
    if len(value) > 63:
        return [invalid_value(field, value, "must be no more than 63 characters")]
    if not re.fullmatch(DNS1123_LABEL, value):
        return [invalid_value(field, value, _LABEL_MSG)]
    return []


def dns_subdomain(field: str, value: str) -> list[Cause]:
    if len(value) > 253:
        return [invalid_value(field, value, "must be no more than 253 characters")]
    if not re.fullmatch(DNS1123_SUBDOMAIN, value):
        return [invalid_value(field, value, _SUB_MSG)]
    return []


def generate_name(meta: dict[str, Any]) -> None:
    if not meta.get("name") and meta.get("generateName"):
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        meta["name"] = meta["generateName"] + "".join(secrets.choice(alphabet) for _ in range(5))


def metadata(meta: Any, *, namespaced: bool, name_rule: str = "subdomain") -> list[Cause]:
    if not isinstance(meta, dict):
        return [cause("metadata", "Required value", "")]
    out: list[Cause] = []
    name = meta.get("name")
    if not name:
        out.append(cause("metadata.name", "Required value", "name or generateName is required"))
    elif not isinstance(name, str):
        out.append(invalid_value("metadata.name", name, "must be a string"))
    else:
        out += (dns_label if name_rule == "label" else dns_subdomain)("metadata.name", name)
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            out.append(invalid_value(f"metadata.{field}", "…", "must be a map of strings"))
            continue
        for k, v in value.items():
            key_name = k.rsplit("/", 1)[-1]
            if not _QUALIFIED.fullmatch(key_name) or len(key_name) > 63:
                out.append(invalid_value(f"metadata.{field}", k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
            if field == "labels" and (len(v) > 63 or not _LABEL_VALUE.fullmatch(v)):
                out.append(invalid_value("metadata.labels", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
    return out


# -- pods -----------------------------------------------------------------------------------------

RESTART_POLICIES = ("Always", "OnFailure", "Never")


def default_pod(pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    spec.setdefault("tolerations", [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ])
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = str(c.get("image") or "")
            tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
            c.setdefault("imagePullPolicy", "IfNotPresent" if tagged and not image.endswith(":latest") else "Always")
            res = c.setdefault("resources", {})
            if isinstance(res, dict) and isinstance(res.get("limits"), dict):
                req = res.setdefault("requests", {})
                if isinstance(req, dict):
                    for k, v in res["limits"].items():
                        req.setdefault(k, v)


def _resources(field: str, res: Any) -> list[Cause]:
    if res is None:
        return []
    if not isinstance(res, dict):
        return [invalid_value(field, "…", "must be an object")]
    out: list[Cause] = []
    parsed: dict[str, dict[str, Any]] = {}
    for kind in ("limits", "requests"):
        values = res.get(kind) or {}
        if not isinstance(values, dict):
            out.append(invalid_value(f"{field}.{kind}", "…", "must be a map of quantities"))
            continue
        for name, q in values.items():
            try:
                v = quantity.parse(q)
            except ValueError:
                out.append(invalid_value(f"{field}.{kind}[{name}]", q,
                                         "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
                continue
            if v < 0:
                out.append(invalid_value(f"{field}.{kind}[{name}]", str(q), "must be greater than or equal to 0"))
            parsed.setdefault(kind, {})[name] = v
    for name, req in parsed.get("requests", {}).items():
        lim = parsed.get("limits", {}).get(name)
        if lim is not None and req > lim:
            out.append(invalid_value(f"{field}.requests", res["requests"][name],
                                     f"must be less than or equal to {name} limit of {res['limits'][name]}"))
    return out


def pod_spec(spec: Any, prefix: str = "spec") -> list[Cause]:
    if not isinstance(spec, dict):
        return [cause(prefix, "Required value", "")]
    out: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        out.append(cause(f"{prefix}.containers", "Required value", ""))
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        items = spec.get(group) or []
        if not isinstance(items, list):
            out.append(invalid_value(f"{prefix}.{group}", "…", "must be a list"))
            continue
        for i, c in enumerate(items):
            f = f"{prefix}.{group}[{i}]"
            if not isinstance(c, dict):
                out.append(invalid_value(f, "…", "must be an object"))
                continue
            name = c.get("name")
            if not name:
                out.append(cause(f"{f}.name", "Required value", ""))
            elif not isinstance(name, str):
                out.append(invalid_value(f"{f}.name", name, "must be a string"))
            else:
                out += dns_label(f"{f}.name", name)
                if name in seen:
                    out.append(cause(f"{f}.name", "Duplicate value", f'"{name}"'))
                seen.add(name)
            if not c.get("image"):
                out.append(cause(f"{f}.image", "Required value", ""))
            for key in ("command", "args"):
                v = c.get(key)
                if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
                    out.append(invalid_value(f"{f}.{key}", "…", "must be a list of strings"))
            for j, e in enumerate(c.get("env") or []):
                if not isinstance(e, dict) or not e.get("name"):
                    out.append(cause(f"{f}.env[{j}].name", "Required value", ""))
            out += _resources(f"{f}.resources", c.get("resources"))
    rp = spec.get("restartPolicy")
    if rp not in RESTART_POLICIES:
        out.append(cause(f"{prefix}.restartPolicy", "Unsupported value",
                         f'"{rp}": supported values: "Always", "OnFailure", "Never"'))
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        out.append(invalid_value(f"{prefix}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"))
    return out


def pod(obj: dict[str, Any]) -> list[Cause]:
    return metadata(obj.get("metadata"), namespaced=True) + pod_spec(obj.get("spec"))


def pod_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """Pods are mostly immutable: only images, activeDeadlineSeconds and added tolerations may change."""
    out = pod(new)
    if out:
        return out

    def strip(spec: dict[str, Any]) -> dict[str, Any]:
        import copy

        s = copy.deepcopy(spec)
        for group in ("initContainers", "containers"):
            for c in s.get(group) or []:
                c.pop("image", None)
        s.pop("activeDeadlineSeconds", None)
        s.pop("tolerations", None)
        return s

    if strip(old.get("spec", {})) != strip(new.get("spec", {})):
        out.append(cause("spec", "Forbidden",
                         "pod updates may not change fields other than `spec.containers[*].image`,"
                         "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                         "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                         "(allow it to be set to 1 if it was previously negative)"))
    return out


def qos_class(pod: dict[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort, as pkg/apis/core/v1/helper/qos computes it."""
    containers = [c for g in ("initContainers", "containers") for c in (pod.get("spec", {}).get(g) or [])]
    requests: dict[str, bool] = {}
    limits: dict[str, bool] = {}
    guaranteed = True
    any_set = False
    for c in containers:
        res = c.get("resources") or {}
        req = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory") and quantity.parse(v) != 0}
        lim = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory") and quantity.parse(v) != 0}
        any_set = any_set or bool(req) or bool(lim)
        requests.update(dict.fromkeys(req, True))
        limits.update(dict.fromkeys(lim, True))
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
        for k in req:
            if k in lim and quantity.parse(req[k]) != quantity.parse(lim[k]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# -- other kinds ----------------------------------------------------------------------------------

def namespace(obj: dict[str, Any]) -> list[Cause]:
    return metadata(obj.get("metadata"), namespaced=False, name_rule="label")


def generic(obj: dict[str, Any]) -> list[Cause]:
    return metadata(obj.get("metadata"), namespaced=True)


def service(obj: dict[str, Any]) -> list[Cause]:
    out = metadata(obj.get("metadata"), namespaced=True, name_rule="label")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return out + [cause("spec", "Required value", "")]
    ports = spec.get("ports") or []
    if not ports and spec.get("clusterIP") != "None" and spec.get("type") != "ExternalName":
        out.append(cause("spec.ports", "Required value", ""))
    for i, p in enumerate(ports):
        port = p.get("port") if isinstance(p, dict) else None
        if not isinstance(port, int) or not 1 <= port <= 65535:
            out.append(invalid_value(f"spec.ports[{i}].port", port, "must be between 1 and 65535, inclusive"))
    return out


def default_service(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for p in spec.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
    obj.setdefault("status", {"loadBalancer": {}})


def job(obj: dict[str, Any]) -> list[Cause]:
    out = metadata(obj.get("metadata"), namespaced=True)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return out + [cause("spec", "Required value", "")]
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        return out + [cause("spec.template", "Required value", "")]
    tspec = tmpl.get("spec") if isinstance(tmpl.get("spec"), dict) else None
    out += pod_spec(tspec, "spec.template.spec")
    if tspec is not None and tspec.get("restartPolicy") not in ("OnFailure", "Never"):
        out.append(cause("spec.template.spec.restartPolicy", "Unsupported value",
                         f'"{tspec.get("restartPolicy")}": supported values: "OnFailure", "Never"'))
    return out


def default_job(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    tmpl = spec.get("template")
    if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
        tmpl["spec"].setdefault("restartPolicy", "Never")  # validated: must be OnFailure or Never
        default_pod(tmpl)


def daemonset(obj: dict[str, Any]) -> list[Cause]:
    out = metadata(obj.get("metadata"), namespaced=True)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return out + [cause("spec", "Required value", "")]
    sel = (spec.get("selector") or {}).get("matchLabels") if isinstance(spec.get("selector"), dict) else None
    if not sel:
        out.append(cause("spec.selector", "Required value", ""))
    tmpl = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if sel and any(labels.get(k) != v for k, v in sel.items()):
        out.append(invalid_value("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"))
    out += pod_spec(tmpl.get("spec"), "spec.template.spec")
    return out


def default_daemonset(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        default_pod(tmpl)


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(n))
