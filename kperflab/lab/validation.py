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
              "Forbidden": "FieldValueForbidden", "Not found": "FieldValueNotFound"}[kind]
    return {"reason": reason, "message": f"{kind}: {message}" if kind != "Required value" else kind + (f": {message}" if message else ""),
            "field": field}


def invalid_value(field: str, value: Any, why: str) -> Cause:
    import json

    shown = json.dumps(value) if isinstance(value, (str, bool)) else str(value)  # Go prints a bool as true/false
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
        rule = {"label": dns_label, "dns1035": dns1035_label}.get(name_rule, dns_subdomain)
        out += rule("metadata.name", name)
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
    default_volumes(spec)
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            for probe_field in PROBE_FIELDS:
                if isinstance(c.get(probe_field), dict):
                    default_probe(c[probe_field])
            image = str(c.get("image") or "")
            tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
            c.setdefault("imagePullPolicy", "IfNotPresent" if tagged and not image.endswith(":latest") else "Always")
            res = c.setdefault("resources", {})
            if isinstance(res, dict) and isinstance(res.get("limits"), dict):
                req = res.setdefault("requests", {})
                if isinstance(req, dict):
                    for k, v in res["limits"].items():
                        req.setdefault(k, v)


PROBE_FIELDS = ("livenessProbe", "readinessProbe", "startupProbe")
PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")  # validateHandler's order
_NEGATIVE_MSG = "must be greater than or equal to 0"
_HEADER_NAME_MSG = ("a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex "
                    "used for validation is '[-A-Za-z0-9]+')")


def default_probe(probe: dict[str, Any]) -> None:
    """SetDefaults_Probe (a zero timeoutSeconds 1, periodSeconds 10, successThreshold 1, failureThreshold 3;
    initialDelaySeconds stays absent) and SetDefaults_HTTPGetAction (path "/", scheme HTTP)."""
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)):
        if probe.get(key) in (None, 0):
            probe[key] = value
    http = probe.get("httpGet")
    if isinstance(http, dict):
        if not http.get("path"):
            http["path"] = "/"
        if not http.get("scheme"):
            http["scheme"] = "HTTP"


def _port_num_or_name(field: str, port: Any) -> list[Cause]:
    """ValidatePortNumOrName."""
    if isinstance(port, str):
        return _port_name(field, port)
    if isinstance(port, int) and not isinstance(port, bool):
        return [] if 1 <= port <= 65535 else [invalid_value(field, port, _PORT_MSG)]
    return [invalid_value(field, port if port is not None else 0, _PORT_MSG)]


def _probe_handler(field: str, kind: str, handler: Any) -> list[Cause]:
    if not isinstance(handler, dict):
        return [invalid_value(field, "…", "must be an object")]
    if kind == "exec":
        command = handler.get("command")
        return [] if command else [cause(f"{field}.command", "Required value", "")]
    if kind == "httpGet":
        out = [] if handler.get("path") else [cause(f"{field}.path", "Required value", "")]
        out += _port_num_or_name(f"{field}.port", handler.get("port"))
        if handler.get("scheme") not in ("HTTP", "HTTPS"):
            out.append(not_supported(f"{field}.scheme", handler.get("scheme") or "", ("HTTP", "HTTPS")))
        for h in handler.get("httpHeaders") or []:
            name = h.get("name") if isinstance(h, dict) else None
            if not isinstance(name, str) or not re.fullmatch(r"[-A-Za-z0-9]+", name):
                out.append(invalid_value(f"{field}.httpHeaders", name if isinstance(name, str) else "", _HEADER_NAME_MSG))
        return out
    return _port_num_or_name(f"{field}.port", handler.get("port"))  # tcpSocket, grpc


def _probe(field: str, probe: Any, probe_field: str) -> list[Cause]:
    """validateLivenessProbe / validateReadinessProbe / validateStartupProbe with validateProbe and validateHandler:
    exactly one handler, non-negative timings, a positive terminationGracePeriodSeconds (never on readiness), and a
    successThreshold of 1 for liveness and startup."""
    if not isinstance(probe, dict):
        return [invalid_value(field, "…", "must be an object")]
    out: list[Cause] = []
    handlers = 0
    for kind in PROBE_HANDLERS:
        if probe.get(kind) is None:
            continue
        if handlers:
            out.append(cause(f"{field}.{kind}", "Forbidden", "may not specify more than 1 handler type"))
            continue
        handlers += 1
        out += _probe_handler(f"{field}.{kind}", kind, probe[kind])
    if not handlers:
        out.append(cause(field, "Required value", "must specify a handler type"))
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        value = probe.get(key)
        if isinstance(value, int) and value < 0:
            out.append(invalid_value(f"{field}.{key}", value, _NEGATIVE_MSG))
    grace = probe.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace <= 0:
        out.append(invalid_value(f"{field}.terminationGracePeriodSeconds", grace, "must be greater than 0"))
    if probe_field == "readinessProbe":
        if grace is not None:
            out.append(invalid_value(f"{field}.terminationGracePeriodSeconds", grace, "must not be set for readinessProbes"))
    elif probe.get("successThreshold") != 1:
        out.append(invalid_value(f"{field}.successThreshold", probe.get("successThreshold"), "must be 1"))
    return out


def default_volumes(spec: dict[str, Any]) -> None:
    """SetDefaults_Volume and its sources: a volume without a source is an emptyDir; defaultMode 0644 (420) for
    configMap, secret, downwardAPI and projected; hostPath type ""; a downward API fieldRef's apiVersion v1."""
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        if not any(k != "name" and v.get(k) is not None for k in v):
            v["emptyDir"] = {}
        for kind in ("configMap", "secret", "downwardAPI", "projected"):
            if isinstance(v.get(kind), dict):
                v[kind].setdefault("defaultMode", 420)
        if isinstance(v.get("hostPath"), dict):
            v["hostPath"].setdefault("type", "")
        items = list((v.get("downwardAPI") or {}).get("items") or []) if isinstance(v.get("downwardAPI"), dict) else []
        for src in (v.get("projected") or {}).get("sources") or [] if isinstance(v.get("projected"), dict) else []:
            if isinstance(src, dict) and isinstance(src.get("downwardAPI"), dict):
                items += src["downwardAPI"].get("items") or []
        for it in items:
            if isinstance(it, dict) and isinstance(it.get("fieldRef"), dict):
                it["fieldRef"].setdefault("apiVersion", "v1")


# kube-apiserver's validateVolumeSource order: the first source set counts, any other is "more than 1 volume type"
VOLUME_SOURCES = ("emptyDir", "hostPath", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore", "secret", "nfs", "iscsi",
                  "glusterfs", "flocker", "persistentVolumeClaim", "rbd", "cinder", "cephfs", "quobyte", "downwardAPI",
                  "fc", "flexVolume", "configMap", "azureFile", "vsphereVolume", "photonPersistentDisk",
                  "portworxVolume", "azureDisk", "storageos", "projected", "scaleIO", "csi", "ephemeral", "image")
HOST_PATH_TYPES = ("", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket")
FILE_MODE_MSG = "must be a number between 0 and 0777 (octal), both inclusive"
DOWNWARD_VOLUME_FIELDS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid")
_QUANTITY_MSG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def _no_backsteps(field: str, path: str) -> list[Cause]:
    return [invalid_value(field, path, "must not contain '..'")] if ".." in path.split("/") else []


def _local_descending(field: str, path: str) -> list[Cause]:
    """validateLocalDescendingPath: relative, no '..' element."""
    out = [invalid_value(field, path, "must be a relative path")] if path.startswith("/") else []
    return out + _no_backsteps(field, path)


def _local_non_reserved(field: str, path: str) -> list[Cause]:
    out = _local_descending(field, path)
    if path.startswith(".."):
        out.append(invalid_value(field, path, "must not start with '..'"))
    return out


def _file_mode(field: str, mode: Any) -> list[Cause]:
    if mode is None:
        return []
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        return [invalid_value(field, mode, FILE_MODE_MSG)]
    return []


def _key_to_paths(field: str, items: Any) -> list[Cause]:
    out: list[Cause] = []
    for i, kp in enumerate(items or []):
        f = f"{field}[{i}]"
        kp = kp if isinstance(kp, dict) else {}
        if not kp.get("key"):
            out.append(cause(f"{f}.key", "Required value", ""))
        path = str(kp.get("path") or "")
        if not path:
            out.append(cause(f"{f}.path", "Required value", ""))
        out += _local_non_reserved(f"{f}.path", path)
        out += _file_mode(f"{f}.mode", kp.get("mode"))
    return out


def _downward_items(field: str, items: Any) -> list[Cause]:
    out: list[Cause] = []
    for i, it in enumerate(items or []):
        f = f"{field}[{i}]"
        it = it if isinstance(it, dict) else {}
        path = str(it.get("path") or "")
        if not path:
            out.append(cause(f"{f}.path", "Required value", ""))
        out += _local_non_reserved(f"{f}.path", path)
        fr, rr = it.get("fieldRef"), it.get("resourceFieldRef")
        if fr is not None:
            fp = str((fr or {}).get("fieldPath") or "")
            base = fp.split("[", 1)[0] if fp.endswith("']") else fp
            if not fp:
                out.append(cause(f"{f}.fieldRef.fieldPath", "Required value", ""))
            elif base not in DOWNWARD_VOLUME_FIELDS or (fp != base and base not in ("metadata.labels", "metadata.annotations")):
                out.append(not_supported(f"{f}.fieldRef.fieldPath", fp, DOWNWARD_VOLUME_FIELDS))
            if rr is not None:
                out.append(invalid_value(f, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
        elif rr is None:
            out.append(cause(f, "Required value", "one of fieldRef and resourceFieldRef is required"))
        elif not (rr or {}).get("containerName"):
            out.append(cause(f"{f}.resourceFieldRef.containerName", "Required value", ""))
        out += _file_mode(f"{f}.mode", it.get("mode"))
    return out


def _volume_source(v: dict[str, Any], f: str) -> list[Cause]:
    """validateVolumeSource for the sources the lab knows how to check."""
    out: list[Cause] = []
    kind = ""
    for k in VOLUME_SOURCES:
        if v.get(k) is None:
            continue
        if kind:
            out.append(cause(f"{f}.{k}", "Forbidden", "may not specify more than 1 volume type"))
            continue
        kind = k
    if not kind:
        return out + [cause(f, "Required value", "must specify a volume type")]
    src = v[kind] if isinstance(v[kind], dict) else {}
    p = f"{f}.{kind}"
    if kind == "emptyDir" and src.get("sizeLimit") is not None:
        try:
            if quantity.parse(src["sizeLimit"]) < 0:
                out.append(cause(f"{p}.sizeLimit", "Forbidden", "SizeLimit field must be a valid resource quantity"))
        except ValueError:
            out.append(invalid_value(f"{p}.sizeLimit", src["sizeLimit"], _QUANTITY_MSG))
    elif kind == "hostPath":
        path = str(src.get("path") or "")
        if not path:
            return out + [cause(f"{p}.path", "Required value", "")]
        out += _no_backsteps(f"{p}.path", path)
        if src.get("type") not in HOST_PATH_TYPES and src.get("type") is not None:
            out.append(not_supported(f"{p}.type", src.get("type"), HOST_PATH_TYPES))
    elif kind in ("configMap", "secret"):
        name_field = "name" if kind == "configMap" else "secretName"
        if not src.get(name_field):
            out.append(cause(f"{p}.{name_field}", "Required value", ""))
        out += _file_mode(f"{p}.defaultMode", src.get("defaultMode"))
        out += _key_to_paths(f"{p}.items", src.get("items"))
    elif kind == "downwardAPI":
        out += _file_mode(f"{p}.defaultMode", src.get("defaultMode"))
        out += _downward_items(f"{p}.items", src.get("items"))
    elif kind == "projected":
        out += _file_mode(f"{p}.defaultMode", src.get("defaultMode"))
        for i, source in enumerate(src.get("sources") or []):
            sp = f"{p}.sources[{i}]"
            set_ = [k for k, x in (source or {}).items() if x is not None] if isinstance(source, dict) else []
            if not set_:
                out.append(cause(sp, "Required value", "must specify exactly 1 volume type per source"))
            for extra in set_[1:]:
                out.append(cause(f"{sp}.{extra}", "Forbidden", "may not specify more than 1 volume type per source"))
            for k in set_[:1]:
                sub = source[k] if isinstance(source[k], dict) else {}
                if k in ("configMap", "secret"):
                    if not sub.get("name"):
                        out.append(cause(f"{sp}.{k}.name", "Required value", ""))
                    out += _key_to_paths(f"{sp}.{k}.items", sub.get("items"))
                elif k == "downwardAPI":
                    out += _downward_items(f"{sp}.downwardAPI.items", sub.get("items"))
    elif kind == "persistentVolumeClaim":
        if not str(src.get("claimName") or "").strip():
            out.append(cause(f"{p}.claimName", "Required value", ""))
    elif kind == "ephemeral" and not src.get("volumeClaimTemplate"):
        out.append(cause(f"{p}.volumeClaimTemplate", "Required value", ""))
    return out


def _volumes(spec: dict[str, Any], prefix: str) -> tuple[list[Cause], set[str]]:
    """ValidateVolumes: each volume's source, then its name (a DNS label, unique); the valid names for the mounts."""
    out: list[Cause] = []
    names: set[str] = set()
    vols = spec.get("volumes")
    if vols is not None and not isinstance(vols, list):
        return [invalid_value(f"{prefix}.volumes", "…", "must be a list")], names
    for i, v in enumerate(vols or []):
        f = f"{prefix}.volumes[{i}]"
        if not isinstance(v, dict):
            out.append(invalid_value(f, "…", "must be an object"))
            continue
        el = _volume_source(v, f)
        name = v.get("name")
        if not name:
            el.append(cause(f"{f}.name", "Required value", ""))
        elif not isinstance(name, str):
            el.append(invalid_value(f"{f}.name", name, "must be a string"))
        else:
            el += dns_label(f"{f}.name", name)
        if isinstance(name, str) and name in names:
            el.append(cause(f"{f}.name", "Duplicate value", f'"{name}"'))
        if el:
            out += el
        elif isinstance(name, str):
            names.add(name)
    return out, names


def _volume_mounts(field: str, mounts: Any, volumes: set[str]) -> list[Cause]:
    """ValidateVolumeMounts (subPath errors carry the list's path without the index, as kube-apiserver's do)."""
    out: list[Cause] = []
    if mounts is not None and not isinstance(mounts, list):
        return [invalid_value(field, "…", "must be a list")]
    seen: set[str] = set()
    for i, m in enumerate(mounts or []):
        f = f"{field}[{i}]"
        m = m if isinstance(m, dict) else {}
        name, path = m.get("name") or "", m.get("mountPath") or ""
        if not name:
            out.append(cause(f"{f}.name", "Required value", ""))
        if name not in volumes:
            out.append(cause(f"{f}.name", "Not found", f'"{name}"'))
        if not path:
            out.append(cause(f"{f}.mountPath", "Required value", ""))
        if path in seen:
            out.append(invalid_value(f"{f}.mountPath", path, "must be unique"))
        seen.add(path)
        if m.get("subPath"):
            out += _local_descending(f"{field}.subPath", str(m["subPath"]))
        if m.get("subPathExpr"):
            if m.get("subPath"):
                out.append(invalid_value(f"{f}.subPathExpr", m["subPathExpr"], "subPathExpr and subPath are mutually exclusive"))
            out += _local_descending(f"{field}.subPathExpr", str(m["subPathExpr"]))
    return out


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
    out, volumes = _volumes(spec, prefix)
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
            out += _volume_mounts(f"{f}.volumeMounts", c.get("volumeMounts"), volumes)
            for probe_field in PROBE_FIELDS:
                if c.get(probe_field) is None:
                    continue
                if group == "initContainers" and c.get("restartPolicy") != "Always":
                    out.append(cause(f"{f}.{probe_field}", "Forbidden",
                                     "may not be set for init containers without restartPolicy=Always"))
                else:
                    out += _probe(f"{f}.{probe_field}", c[probe_field], probe_field)
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


# -- services --------------------------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
                "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
                f"validation is '{_DNS1035_LABEL}')")
_QUALIFIED_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                  "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                  "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
                    "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex "
                    "used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
_IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
_PORT_MSG = "must be between 1 and 65535, inclusive"


def go_value(value: Any) -> str:
    """A bad value as apimachinery's field.Error prints it: strings quoted, nil pointers as "null", []string with %#v."""
    import json

    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[]string{" + ", ".join(go_value(v) for v in value) + "}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def go_strings(value: list[str] | None) -> str:
    """A []string field's value: nil when absent."""
    return "[]string(nil)" if value is None else go_value(value)


def not_supported(field: str, value: Any, supported: tuple[str, ...]) -> Cause:
    return cause(field, "Unsupported value", f"{go_value(value)}: supported values: " + ", ".join(f'"{s}"' for s in supported))


def dns1035_label(field: str, value: str) -> list[Cause]:
    if len(value) > 63:
        return [invalid_value(field, value, "must be no more than 63 characters")]
    if not re.fullmatch(_DNS1035_LABEL, value):
        return [invalid_value(field, value, _DNS1035_MSG)]
    return []


def qualified_name(field: str, value: str) -> list[Cause]:
    """IsQualifiedName: an optional DNS subdomain prefix, '/', and a name part."""
    prefix, _, name = value.rpartition("/")
    out: list[Cause] = []
    if "/" in prefix:
        return [invalid_value(field, value, "a qualified name " + _QUALIFIED_MSG + " with an optional DNS subdomain prefix "
                              "and '/' (e.g. 'example.com/MyName')")]
    if not name:
        out.append(invalid_value(field, value, "name part must be non-empty"))
    elif len(name) > 63:
        out.append(invalid_value(field, value, "name part must be no more than 63 characters"))
    elif not _QUALIFIED.fullmatch(name):
        out.append(invalid_value(field, value, "name part " + _QUALIFIED_MSG))
    if "/" in value:
        if not prefix:
            out.append(invalid_value(field, value, "prefix part must be non-empty"))
        elif len(prefix) > 253 or not re.fullmatch(DNS1123_SUBDOMAIN, prefix):
            out.append(invalid_value(field, value, "prefix part " + _SUB_MSG))
    return out


def _labels(field: str, labels: dict[str, str]) -> list[Cause]:
    out: list[Cause] = []
    for k, v in labels.items():
        out += qualified_name(field, k)
        if len(v) > 63:
            out.append(invalid_value(field, v, "must be no more than 63 characters"))
        elif not _LABEL_VALUE.fullmatch(v):
            out.append(invalid_value(field, v, _LABEL_VALUE_MSG))
    return out


def _port_name(field: str, name: str) -> list[Cause]:
    """IsValidPortName (an IANA_SVC_NAME)."""
    msgs = []
    if len(name) > 15:
        msgs.append("must be no more than 15 characters")
    if not re.fullmatch(r"[-a-z0-9]+", name):
        msgs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", name):
        msgs.append("must contain at least one letter (a-z)")
    if "--" in name:
        msgs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        msgs.append("must not begin or end with a hyphen")
    return [invalid_value(field, name, m) for m in msgs]


def _ip_errors(field: str, ip: str) -> list[Cause]:
    """IsValidIP, then ValidateNonSpecialIP."""
    import ipaddress

    from .services import parse_ip

    addr = parse_ip(ip)
    if addr is None:
        return [invalid_value(field, ip, _IP_MSG)]
    out = []
    if addr.is_unspecified:
        out.append(invalid_value(field, ip, f"may not be unspecified ({ip})"))
    if addr.is_loopback:
        out.append(invalid_value(field, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if addr.is_link_local:
        out.append(invalid_value(field, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if addr in ipaddress.ip_network("224.0.0.0/24" if addr.version == 4 else "ff02::/16"):
        out.append(invalid_value(field, ip, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return out


# What json.Unmarshal would refuse in a Service (k8s.io/api/core/v1 types): kind, Go type, then the fields.
_STR, _INT32, _BOOL, _INTSTR = ("str", "string"), ("int32", "int32"), ("bool", "bool"), ("intstr", "int32")


def _named(go: str) -> tuple[str, str]:
    return ("str", go)


_STRINGS = ("list", "[]string", _STR)
_SERVICE_PORT = ("struct", "v1.ServicePort", "ServicePort", {
    "name": _STR, "protocol": _named("v1.Protocol"), "appProtocol": _STR, "port": _INT32, "targetPort": _INTSTR,
    "nodePort": _INT32})
_SERVICE_SPEC = ("struct", "v1.ServiceSpec", "ServiceSpec", {
    "ports": ("list", "[]v1.ServicePort", _SERVICE_PORT), "selector": ("map", "map[string]string", _STR),
    "clusterIP": _STR, "clusterIPs": _STRINGS, "type": _named("v1.ServiceType"), "externalIPs": _STRINGS,
    "sessionAffinity": _named("v1.ServiceAffinity"), "loadBalancerIP": _STR, "loadBalancerSourceRanges": _STRINGS,
    "externalName": _STR, "externalTrafficPolicy": _named("v1.ServiceExternalTrafficPolicy"),
    "healthCheckNodePort": _INT32, "publishNotReadyAddresses": _BOOL,
    "sessionAffinityConfig": ("struct", "v1.SessionAffinityConfig", "SessionAffinityConfig", {
        "clientIP": ("struct", "v1.ClientIPConfig", "ClientIPConfig", {"timeoutSeconds": _INT32})}),
    "ipFamilies": ("list", "[]v1.IPFamily", _named("v1.IPFamily")), "ipFamilyPolicy": _named("v1.IPFamilyPolicy"),
    "allocateLoadBalancerNodePorts": _BOOL, "loadBalancerClass": _STR,
    "internalTrafficPolicy": _named("v1.ServiceInternalTrafficPolicy"), "trafficDistribution": _STR})


def _json_kind(value: Any, literal: bool = False) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}" if literal else "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "value")


def _decode(value: Any, node: tuple[Any, ...], struct: str, path: str) -> str | None:
    """The error json.Unmarshal would give for ``value`` at ``path``, or None; nulls inside are dropped (Go's zero)."""
    kind = node[0]

    def wrong(got: str, go: str) -> str:
        return f"json: cannot unmarshal {got} into Go struct field {struct}.{path} of type {go}"

    if kind == "str":
        return None if isinstance(value, str) else wrong(_json_kind(value), node[1])
    if kind == "bool":
        return None if isinstance(value, bool) else wrong(_json_kind(value), node[1])
    if kind in ("int32", "intstr"):
        if kind == "intstr" and isinstance(value, str):
            return None
        if type(value) is int and -(2**31) <= value < 2**31:
            return None
        return wrong(_json_kind(value, literal=isinstance(value, (int, float)) and not isinstance(value, bool)), "int32")
    if kind == "list":
        if not isinstance(value, list):
            return wrong(_json_kind(value), node[1])
        elem = node[2]
        for i, item in enumerate(value):
            if item is None:
                value[i] = {} if elem[0] == "struct" else ""
                continue
            err = _decode(item, elem, struct, path)
            if err:
                return err
        return None
    if kind == "map":
        if not isinstance(value, dict):
            return wrong(_json_kind(value), node[1])
        for k, item in list(value.items()):
            if item is None:
                value[k] = ""
            elif (err := _decode(item, node[2], struct, path)) is not None:
                return err
        return None
    # struct
    if not isinstance(value, dict):
        return wrong(_json_kind(value), node[1])
    for field, sub in node[3].items():
        if field not in value:
            continue
        if value[field] is None:
            del value[field]
            continue
        err = _decode(value[field], sub, node[2], f"{path}.{field}")
        if err:
            return err
    return None


def service_decode_error(obj: dict[str, Any]) -> str | None:
    """kube-apiserver's 400 for a Service whose fields have the wrong JSON types (``json: cannot unmarshal …``), else
    None; null fields are dropped, as Go decodes them to their zero values."""
    if obj.get("spec") is None:
        obj["spec"] = {}
    err = _decode(obj["spec"], _SERVICE_SPEC, "Service", "spec")
    if err:
        return f'Service in version "v1" cannot be handled as a Service: {err}'
    return None


def externally_accessible(svc: dict[str, Any]) -> bool:
    """pkg/api/service ExternallyAccessible."""
    spec = svc.get("spec") if isinstance(svc.get("spec"), dict) else {}
    t = spec.get("type")
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(spec.get("externalIPs")))


def needs_health_check(svc: dict[str, Any]) -> bool:
    spec = svc.get("spec") if isinstance(svc.get("spec"), dict) else {}
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def default_service(obj: dict[str, Any]) -> None:
    """SetDefaults_Service (k8s.io/kubernetes pkg/apis/core/v1/defaults.go). ClusterIPs, IP families and node ports
    are the API server's to fill when it allocates (`services`)."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        cfg = spec.get("sessionAffinityConfig")
        client = cfg.get("clientIP") if isinstance(cfg, dict) else None
        if not isinstance(client, dict) or client.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    for p in spec.get("ports") or [] if isinstance(spec.get("ports"), list) else []:
        if isinstance(p, dict):
            if not p.get("protocol"):
                p["protocol"] = "TCP"
            if p.get("targetPort") in (None, 0, ""):
                p["targetPort"] = p.get("port") or 0
    if externally_accessible(obj) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and spec["type"] in ("NodePort", "LoadBalancer", "ClusterIP"):
        spec["internalTrafficPolicy"] = "Cluster"
    if spec["type"] == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if not isinstance(obj.get("status"), dict):
        obj["status"] = {"loadBalancer": {}}


def _is_headless(spec: dict[str, Any]) -> bool:
    ips = spec.get("clusterIPs") or []
    return len(ips) == 1 and ips[0] == "None"


def service_cluster_ips_fields(svc: dict[str, Any]) -> list[Cause]:
    """ValidateServiceClusterIPsRelatedFields: clusterIP/clusterIPs in step, valid IPs, families and policy."""
    spec = svc["spec"]
    if spec.get("type") == "ExternalName":
        return []
    out: list[Cause] = []
    ip, ips = spec.get("clusterIP") or "", spec.get("clusterIPs")
    shown = go_strings(ips)
    if ip:
        if not ips:
            out.append(cause("spec.clusterIPs", "Required value", ""))
        elif ips[0] != ip:
            out.append(cause("spec.clusterIPs", "Invalid value", f"{shown}: first value must match `clusterIP`"))
    elif ips:
        out.append(cause("spec.clusterIPs", "Invalid value", f"{shown}: must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, fam in enumerate(spec.get("ipFamilies") or []):
        if fam not in ("IPv4", "IPv6"):
            out.append(not_supported(f"spec.ipFamilies[{i}]", fam, ("IPv4", "IPv6")))
        if fam in seen:
            out.append(cause(f"spec.ipFamilies[{i}]", "Duplicate value", go_value(fam)))
        seen.add(fam)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in ("PreferDualStack", "RequireDualStack", "SingleStack"):
        out.append(not_supported("spec.ipFamilyPolicy", policy, ("PreferDualStack", "RequireDualStack", "SingleStack")))
    bad = False
    from .services import parse_ip

    for i, one in enumerate(ips or []):
        if i == 0 and one == "None":
            if len(ips) > 1:
                bad = True
                out.append(cause("spec.clusterIPs", "Invalid value", f"{shown}: 'None' must be the first and only value"))
            continue
        if parse_ip(one) is None:
            bad = True
            out.append(invalid_value(f"spec.clusterIPs[{i}]", one, _IP_MSG))
    if ips and len(ips) > 2:
        out.append(cause("spec.clusterIPs", "Invalid value", f"{shown}: may only hold up to 2 values"))
    if bad:
        return out
    if ips and len(ips) > 1:
        versions = {parse_ip(x).version for x in ips}  # type: ignore[union-attr]
        if len(versions) < 2:
            out.append(cause("spec.clusterIPs", "Invalid value", f"{shown}: may specify no more than one IP for each IP family"))
    if not _is_headless(spec) and ips and spec.get("ipFamilies"):
        for i, one in enumerate(ips):
            if i >= len(spec["ipFamilies"]):
                break
            v6 = parse_ip(one).version == 6  # type: ignore[union-attr]
            if spec["ipFamilies"][i] == "IPv4" and v6:
                out.append(invalid_value(f"spec.clusterIPs[{i}]", one, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if spec["ipFamilies"][i] == "IPv6" and not v6:
                out.append(invalid_value(f"spec.clusterIPs[{i}]", one, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return out


def _service_port(p: dict[str, Any], i: int, require_name: bool, names: set[str]) -> list[Cause]:
    f = f"spec.ports[{i}]"
    out: list[Cause] = []
    name = p.get("name") or ""
    if require_name and not name:
        out.append(cause(f"{f}.name", "Required value", ""))
    elif name:
        out += dns_label(f"{f}.name", name)
        if name in names:
            out.append(cause(f"{f}.name", "Duplicate value", go_value(name)))
        names.add(name)
    port = p.get("port") or 0
    if not 1 <= port <= 65535:
        out.append(invalid_value(f"{f}.port", port, _PORT_MSG))
    proto = p.get("protocol") or ""
    if not proto:
        out.append(cause(f"{f}.protocol", "Required value", ""))
    elif proto not in ("SCTP", "TCP", "UDP"):
        out.append(not_supported(f"{f}.protocol", proto, ("SCTP", "TCP", "UDP")))
    target = p.get("targetPort", 0)
    if isinstance(target, str):
        out += _port_name(f"{f}.targetPort", target) if target else [cause(f"{f}.targetPort", "Required value", "")]
    elif not 1 <= target <= 65535:
        out.append(invalid_value(f"{f}.targetPort", target, _PORT_MSG))
    if p.get("appProtocol") is not None:
        out += qualified_name(f"{f}.appProtocol", p["appProtocol"])
    return out


def _service_port_key(p: dict[str, Any]) -> str:
    """The core.ServicePort key of upstream's duplicate check, as %#v prints it."""
    return (f'core.ServicePort{{Name:"", Protocol:{go_value(p.get("protocol") or "")}, AppProtocol:(*string)(nil), '
            f'Port:{p.get("port") or 0}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}')


def service(obj: dict[str, Any]) -> list[Cause]:
    """ValidateService (pkg/apis/core/validation), for a decoded and defaulted Service."""
    out = metadata(obj.get("metadata"), namespaced=True, name_rule="dns1035")
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return out + [cause("spec", "Required value", "")]
    svc_type = spec.get("type") or ""
    headless = _is_headless(spec)
    ports = spec.get("ports") or []
    if not ports and not headless and svc_type != "ExternalName":
        out.append(cause("spec.ports", "Required value", ""))
    if svc_type in ("LoadBalancer", "NodePort") and headless:
        out.append(invalid_value("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {svc_type} services"))
    elif svc_type == "ExternalName":
        for field in ("clusterIPs", "ipFamilies"):
            if spec.get(field):
                out.append(cause(f"spec.{field}", "Forbidden", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            out.append(cause("spec.ipFamilyPolicy", "Forbidden", "may not be set for ExternalName services"))
        cname = (spec.get("externalName") or "").removesuffix(".")
        out += dns_subdomain("spec.externalName", cname) if cname else [cause("spec.externalName", "Required value", "")]
    names: set[str] = set()
    for i, p in enumerate(ports):
        out += _service_port(p, i, len(ports) > 1, names)
    if spec.get("selector") is not None:
        out += _labels("spec.selector", spec["selector"])
    affinity = spec.get("sessionAffinity") or ""
    if not affinity:
        out.append(cause("spec.sessionAffinity", "Required value", ""))
    elif affinity not in ("ClientIP", "None"):
        out.append(not_supported("spec.sessionAffinity", affinity, ("ClientIP", "None")))
    if affinity == "ClientIP":
        cfg = spec.get("sessionAffinityConfig") or {}
        timeout = (cfg.get("clientIP") or {}).get("timeoutSeconds")
        why = "when session affinity type is ClientIP"
        if not cfg:
            out.append(cause("spec.sessionAffinityConfig", "Required value", why))
        elif not cfg.get("clientIP"):
            out.append(cause("spec.sessionAffinityConfig.clientIP", "Required value", why))
        elif timeout is None:
            out.append(cause("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "Required value", why))
        elif not 0 < timeout <= 86400:
            out.append(invalid_value("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                                     "must be greater than 0 and less than 86400"))
    elif affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        out.append(cause("spec.sessionAffinityConfig", "Forbidden", "must not be set when session affinity is None"))
    out += service_cluster_ips_fields(obj)
    for i, ip in enumerate(spec.get("externalIPs") or []):
        out += _ip_errors(f"spec.externalIPs[{i}]", ip)
    if not svc_type:
        out.append(cause("spec.type", "Required value", ""))
    elif svc_type not in SERVICE_TYPES:
        out.append(not_supported("spec.type", svc_type, SERVICE_TYPES))
    if svc_type == "ClusterIP":
        for i, p in enumerate(ports):
            if p.get("nodePort"):
                out.append(cause(f"spec.ports[{i}].nodePort", "Forbidden", "may not be used when `type` is 'ClusterIP'"))
    node_ports: set[tuple[str, int]] = set()
    service_ports: set[tuple[str, int]] = set()
    for i, p in enumerate(ports):
        if p.get("nodePort"):
            key = (p.get("protocol") or "", p["nodePort"])
            if key in node_ports:
                out.append(cause(f"spec.ports[{i}].nodePort", "Duplicate value", str(p["nodePort"])))
            node_ports.add(key)
    for i, p in enumerate(ports):
        key = (p.get("protocol") or "", p.get("port") or 0)
        if key in service_ports:
            out.append(cause(f"spec.ports[{i}]", "Duplicate value", _service_port_key(p)))
        service_ports.add(key)
    if spec.get("loadBalancerSourceRanges") and svc_type != "LoadBalancer":
        out.append(cause("spec.LoadBalancerSourceRanges", "Forbidden", "may only be used when `type` is 'LoadBalancer'"))
    if spec.get("allocateLoadBalancerNodePorts") is not None and svc_type != "LoadBalancer":
        out.append(cause("spec.allocateLoadBalancerNodePorts", "Forbidden", "may only be used when `type` is 'LoadBalancer'"))
    if svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        out.append(cause("allocateLoadBalancerNodePorts", "Required value", ""))
    if spec.get("loadBalancerClass") is not None:
        if svc_type == "LoadBalancer":
            out += qualified_name("spec.loadBalancerClass", spec["loadBalancerClass"])
        else:
            out.append(cause("spec.loadBalancerClass", "Forbidden", "may only be used when `type` is 'LoadBalancer'"))
    etp = spec.get("externalTrafficPolicy") or ""
    if not externally_accessible(obj):
        if etp:
            out.append(invalid_value("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"))
    elif not etp:
        out.append(cause("spec.externalTrafficPolicy", "Required value", ""))
    elif etp not in ("Cluster", "Local"):
        out.append(not_supported("spec.externalTrafficPolicy", etp, ("Cluster", "Local")))
    hc = spec.get("healthCheckNodePort") or 0
    if not needs_health_check(obj):
        if hc:
            out.append(invalid_value("spec.healthCheckNodePort", hc,
                                     "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif not hc:
        out.append(cause("spec.healthCheckNodePort", "Required value", ""))
    elif not 1 <= hc <= 65535:
        out.append(invalid_value("spec.healthCheckNodePort", hc, _PORT_MSG))
    itp = spec.get("internalTrafficPolicy")
    if itp is None and svc_type in ("NodePort", "LoadBalancer", "ClusterIP"):
        out.append(cause("spec.internalTrafficPolicy", "Required value", ""))
    if itp is not None and itp not in ("Cluster", "Local"):
        out.append(not_supported("spec.internalTrafficPolicy", itp, ("Cluster", "Local")))
    td = spec.get("trafficDistribution")
    if td is not None and td != "PreferClose":
        out.append(not_supported("spec.trafficDistribution", td, ("PreferClose",)))
    return out


def service_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """ValidateServiceUpdate: ClusterIPs and IP families keep their primary value, then ValidateService."""
    out: list[Cause] = []
    spec, ospec = new["spec"], old.get("spec") or {}
    if "ExternalName" not in (spec.get("type"), ospec.get("type")):
        ips, old_ips = spec.get("clusterIPs") or [], ospec.get("clusterIPs") or []
        shown = go_strings(spec.get("clusterIPs"))
        if not (_is_headless(spec) and _is_headless(ospec)):
            if len(old_ips) == len(ips):
                out += [cause(f"spec.clusterIPs[{i}]", "Invalid value", f"{shown}: may not change once set")
                        for i, ip in enumerate(old_ips) if ip != ips[i]]
            elif len(old_ips) > len(ips):
                if not ips:
                    out.append(cause("spec.clusterIPs[0]", "Invalid value", f"{shown}: primary clusterIP can not be unset"))
                elif ips[0] != old_ips[0]:
                    out.append(cause("spec.clusterIPs[0]", "Invalid value", f"{shown}: may not change once set"))
                if len(ips) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
                    out.append(invalid_value("spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"),
                                             "must be set to 'SingleStack' when releasing the secondary clusterIP"))
            elif old_ips and ips[0] != old_ips[0]:
                out.append(cause("spec.clusterIPs[0]", "Invalid value", f"{shown}: may not change once set"))
        fams, old_fams = spec.get("ipFamilies") or [], ospec.get("ipFamilies") or []
        if _is_headless(spec) == _is_headless(ospec) and not _is_headless(spec):
            fshown = "[]core.IPFamily{" + ", ".join(go_value(f) for f in fams) + "}"
            if len(old_fams) == len(fams):
                out += [cause("spec.ipFamilies[0]", "Invalid value", f"{fshown}: may not change once set")
                        for i, f in enumerate(old_fams) if f != fams[i]]
            elif len(old_fams) > len(fams):
                if fams and fams[0] != old_fams[0]:
                    out.append(cause("spec.ipFamilies[0]", "Invalid value", f"{shown}: may not change once set"))
                if len(fams) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
                    out.append(invalid_value("spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"),
                                             "must be set to 'SingleStack' when releasing the secondary ipFamily"))
            elif old_fams and fams and fams[0] != old_fams[0]:
                out.append(cause("spec.ipFamilies[0]", "Invalid value", f"{shown}: may not change once set"))
    if spec.get("type") == ospec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") != ospec.get("loadBalancerClass"):
        out.append(invalid_value("spec.loadBalancerClass", spec.get("loadBalancerClass"), "may not change once set"))
    if needs_health_check(old) and needs_health_check(new) and spec.get("healthCheckNodePort") != ospec.get("healthCheckNodePort"):
        out.append(cause("spec.healthCheckNodePort", "Forbidden", "field is immutable"))
    return out + service(new)

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
