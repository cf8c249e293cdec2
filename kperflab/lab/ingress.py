"""networking.k8s.io/v1 Ingress and IngressClass as kube-apiserver stores them (``pkg/apis/networking/validation``)
and the DefaultIngressClass admission plugin. The lab runs no ingress controller: an Ingress is stored and
validated, its ``status.loadBalancer`` stays empty (no ADDRESS), as on any cluster without one."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from . import validation as v
from .store import Store

Obj = dict[str, Any]
CLASSES = "networking.k8s.io/v1/ingressclasses"
DEFAULT_CLASS = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS = "kubernetes.io/ingress.class"
PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
_WILDCARD = r"\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_WILDCARD_MSG = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must "
                 "consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character "
                 f"(e.g. '*.example.com', regex used for validation is '{_WILDCARD}')")
_DOMAIN_PATH_MSG = 'must be a domain-prefixed path (such as "acme.io/foo")'


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _host(field: str, host: str) -> list[v.Cause]:
    if _is_ip(host):
        return [v.invalid_value(field, host, "must be a DNS name, not an IP address")]
    if "*" in host:
        return [] if re.fullmatch(_WILDCARD, host) and len(host) <= 253 else [v.invalid_value(field, host, _WILDCARD_MSG)]
    return v.dns_subdomain(field, host)


def _backend(field: str, b: Any) -> list[v.Cause]:
    if not isinstance(b, dict):
        return [v.invalid_value(field, "", "resource or service backend is required")]
    svc, res = b.get("service"), b.get("resource")
    if svc is not None and res is not None:
        return [v.invalid_value(field, "", "cannot set both resource and service backends")]
    out: list[v.Cause] = []
    if res is not None:
        if not isinstance(res, dict):
            return [v.invalid_value(f"{field}.resource", "…", "must be an object")]
        for k in ("kind", "name"):
            if not res.get(k):
                out.append(v.cause(f"{field}.resource.{k}", "Required value", ""))
        if not res.get("apiGroup"):
            out.append(v.cause(f"{field}.resource.apiGroup", "Required value", ""))
        return out
    if not isinstance(svc, dict):
        return [v.invalid_value(field, "", "resource or service backend is required")]
    if not svc.get("name"):
        out.append(v.cause(f"{field}.service.name", "Required value", ""))
    else:
        out += v.dns1035_label(f"{field}.service.name", str(svc["name"]))
    port = svc.get("port") if isinstance(svc.get("port"), dict) else {}
    pname, pnum = port.get("name") or "", port.get("number") or 0
    if pname and pnum:
        out.append(v.invalid_value(field, "", "cannot set both port name & port number"))
    elif pname:
        out += v._port_name(f"{field}.service.port.name", pname)
    elif pnum:
        if not isinstance(pnum, int) or not 1 <= pnum <= 65535:
            out.append(v.invalid_value(f"{field}.service.port.number", pnum, "must be between 1 and 65535, inclusive"))
    else:
        out.append(v.cause(field, "Required value", "port name or number is required"))
    return out


def _path(field: str, p: Any) -> list[v.Cause]:
    if not isinstance(p, dict):
        return [v.invalid_value(field, "…", "must be an object")]
    out: list[v.Cause] = []
    pt, path = p.get("pathType"), p.get("path") or ""
    if pt is None:
        out.append(v.cause(f"{field}.pathType", "Required value", "pathType must be specified"))
    elif pt not in PATH_TYPES:
        out.append(v.not_supported(f"{field}.pathType", pt, PATH_TYPES))
    if pt in ("Exact", "Prefix"):
        if not path.startswith("/"):
            out.append(v.invalid_value(f"{field}.path", path, "must be an absolute path"))
        for seq in ("//", "/./", "/../", "%2f", "%2F"):
            if seq in path:
                out.append(v.invalid_value(f"{field}.path", path, f"must not contain '{seq}'"))
        for suffix in ("/..", "/."):
            if path.endswith(suffix):
                out.append(v.invalid_value(f"{field}.path", path, f"cannot end with '{suffix}'"))
    elif pt == "ImplementationSpecific" and path and not path.startswith("/"):
        out.append(v.invalid_value(f"{field}.path", path, "must be an absolute path"))
    return out + _backend(f"{field}.backend", p.get("backend"))


def validate_ingress(obj: Obj) -> list[v.Cause]:
    meta = obj.get("metadata")
    out = v.metadata(meta, namespaced=True)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = {}
    rules = spec.get("rules") or []
    if not rules and spec.get("defaultBackend") is None:
        out.append(v.cause("spec", "Invalid value", "[]networking.IngressRule(nil): either `defaultBackend` or `rules` "
                                                    "must be specified"))
    if spec.get("defaultBackend") is not None:
        out += _backend("spec.defaultBackend", spec["defaultBackend"])
    for i, r in enumerate(rules if isinstance(rules, list) else []):
        f = f"spec.rules[{i}]"
        if not isinstance(r, dict):
            out.append(v.invalid_value(f, "…", "must be an object"))
            continue
        if r.get("host"):
            out += _host(f"{f}.host", str(r["host"]))
        http = r.get("http")
        if http is not None:
            paths = (http or {}).get("paths") if isinstance(http, dict) else None
            if not paths:
                out.append(v.cause(f"{f}.http.paths", "Required value", ""))
            for j, p in enumerate(paths or []):
                out += _path(f"{f}.http.paths[{j}]", p)
    for i, t in enumerate(spec.get("tls") or []):
        if not isinstance(t, dict):
            continue
        for j, h in enumerate(t.get("hosts") or []):
            out += _host(f"spec.tls[{i}].hosts[{j}]", str(h))
        if t.get("secretName"):
            out += v.dns_subdomain(f"spec.tls[{i}].secretName", str(t["secretName"]))
    cls = spec.get("ingressClassName")
    if cls is not None:
        out += v.dns_subdomain("spec.ingressClassName", str(cls))
        ann = (meta or {}).get("annotations") or {} if isinstance(meta, dict) else {}
        if LEGACY_CLASS in ann:
            out.append(v.invalid_value(f"annotations.{LEGACY_CLASS}", ann[LEGACY_CLASS],
                                       "can not be set when the class field is also set"))
    return out


def prepare_ingress(obj: Obj) -> None:
    obj["status"] = {"loadBalancer": {}}


def validate_ingressclass(obj: Obj) -> list[v.Cause]:
    out = v.metadata(obj.get("metadata"), namespaced=False)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    ctl = spec.get("controller")
    if not ctl:
        out.append(v.cause("spec.controller", "Required value", ""))
    else:
        ctl = str(ctl)
        if len(ctl) > 250:
            out.append(v.invalid_value("spec.controller", ctl, "must have at most 250 bytes"))
        prefix, _, path = ctl.partition("/")
        if not path or v.dns_subdomain("spec.controller", prefix):
            out.append(v.invalid_value("spec.controller", ctl, _DOMAIN_PATH_MSG))
    params = spec.get("parameters")
    if isinstance(params, dict):
        f = "spec.parameters"
        for k in ("kind", "name"):
            if not params.get(k):
                out.append(v.cause(f"{f}.{k}", "Required value", ""))
        scope = params.get("scope") or "Cluster"
        if scope not in ("Cluster", "Namespace"):
            out.append(v.not_supported(f"{f}.scope", scope, ("Cluster", "Namespace")))
        if scope == "Namespace" and not params.get("namespace"):
            out.append(v.cause(f"{f}.namespace", "Required value", "`parameters.scope` is set to 'Namespace'"))
        if scope == "Cluster" and params.get("namespace"):
            out.append(v.cause(f"{f}.namespace", "Forbidden", "`parameters.scope` is set to 'Cluster'"))
    return out


def default_ingressclass(obj: Obj) -> None:
    params = (obj.get("spec") or {}).get("parameters") if isinstance(obj.get("spec"), dict) else None
    if isinstance(params, dict):
        params.setdefault("scope", "Cluster")


def admit_default_class(store: Store, ing: Obj) -> None:
    """DefaultIngressClass: an Ingress naming no class (field or legacy annotation) gets the default IngressClass,
    the most recently created one when several say they are."""
    spec = ing.setdefault("spec", {})
    if not isinstance(spec, dict) or spec.get("ingressClassName") is not None:
        return
    if LEGACY_CLASS in ((ing.get("metadata") or {}).get("annotations") or {}):
        return
    classes, *_ = store.list(CLASSES, None, lambda c: ((c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"))
    if classes:
        newest = max(classes, key=lambda c: (c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"]))
        spec["ingressClassName"] = newest["metadata"]["name"]
