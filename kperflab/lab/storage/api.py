"""Defaulting and validation of PersistentVolumes, PersistentVolumeClaims and StorageClasses, with kube-apiserver's
field paths and messages (pkg/apis/core/validation, pkg/apis/storage/validation), for the lab's API server."""

from __future__ import annotations

from typing import Any

from .. import quantity
from .. import validation as v

Obj = dict[str, Any]
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
RECLAIM = ("Delete", "Recycle", "Retain")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
VOLUME_MODES = ("Block", "Filesystem")
PV_SOURCES = ("hostPath", "local", "csi", "nfs", "iscsi", "fc", "awsElasticBlockStore", "gcePersistentDisk",
              "azureDisk", "azureFile", "cephfs", "rbd", "cinder", "flexVolume", "glusterfs", "portworxVolume",
              "quobyte", "scaleIO", "storageos", "vsphereVolume", "photonPersistentDisk", "flocker")


def _supported(field: str, value: Any, allowed: tuple[str, ...]) -> dict[str, str]:
    return v.cause(field, "Unsupported value", f'"{value}": supported values: '
                   + ", ".join(f'"{a}"' for a in allowed))


def _modes(field: str, modes: Any, *, pod_exclusive: bool = True) -> list[dict[str, str]]:
    out = []
    if not modes:
        return [v.cause(field, "Required value", "at least 1 access mode is required")]
    for i, m in enumerate(modes if isinstance(modes, list) else [modes]):
        if m not in ACCESS_MODES:
            out.append(_supported(f"{field}[{i}]", m, ACCESS_MODES))
    if pod_exclusive and "ReadWriteOncePod" in modes and len(modes) > 1:
        out.append(v.cause(field, "Forbidden", "may not use ReadWriteOncePod with other access modes"))
    return out


def _storage(field: str, value: Any) -> list[dict[str, str]]:
    if value is None:
        return [v.cause(field, "Required value", "")]
    try:
        n = quantity.parse(value)
    except ValueError:
        return [v.invalid_value(field, value, "quantities must match the regular expression "
                                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    if n <= 0:
        return [v.invalid_value(field, value, "must be greater than zero")]
    return []


# -- PersistentVolumeClaim -------------------------------------------------------------------------

def default_pvc(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def validate_pvc(obj: Obj) -> list[dict[str, str]]:
    out = v.metadata(obj.get("metadata"), namespaced=True)
    spec = obj.get("spec") or {}
    out += _modes("spec.accessModes", spec.get("accessModes"))
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    out += _storage("spec.resources[storage]", storage)
    if spec.get("volumeMode") not in VOLUME_MODES:
        out.append(_supported("spec.volumeMode", spec.get("volumeMode"), VOLUME_MODES))
    return out


# -- PersistentVolume ------------------------------------------------------------------------------

def default_pv(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def validate_pv(obj: Obj) -> list[dict[str, str]]:
    out = v.metadata(obj.get("metadata"), namespaced=False)
    spec = obj.get("spec") or {}
    out += _modes("spec.accessModes", spec.get("accessModes"))
    out += _storage("spec.capacity", (spec.get("capacity") or {}).get("storage"))
    if spec.get("persistentVolumeReclaimPolicy") not in RECLAIM:
        out.append(_supported("spec.persistentVolumeReclaimPolicy", spec.get("persistentVolumeReclaimPolicy"), RECLAIM))
    sources = [s for s in PV_SOURCES if spec.get(s)]
    if not sources:
        out.append(v.cause("spec", "Required value", "must specify a volume type"))
    elif len(sources) > 1:
        out.append(v.cause(f"spec.{sources[1]}", "Forbidden", "may not specify more than 1 volume type"))
    for s, key in (("hostPath", "path"), ("local", "path")):
        if spec.get(s) is not None and not (spec.get(s) or {}).get(key):
            out.append(v.cause(f"spec.{s}.{key}", "Required value", ""))
    if spec.get("local") and not spec.get("nodeAffinity"):
        out.append(v.cause("spec.nodeAffinity", "Required value", "Local volume requires node affinity"))
    if spec.get("csi"):
        for key in ("driver", "volumeHandle"):
            if not spec["csi"].get(key):
                out.append(v.cause(f"spec.csi.{key}", "Required value", ""))
    return out


# -- StorageClass ----------------------------------------------------------------------------------

def default_storageclass(obj: Obj) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def validate_storageclass(obj: Obj) -> list[dict[str, str]]:
    out = v.metadata(obj.get("metadata"), namespaced=False)
    if not obj.get("provisioner"):
        out.append(v.cause("provisioner", "Required value", ""))
    if obj.get("reclaimPolicy") not in RECLAIM:
        out.append(_supported("reclaimPolicy", obj.get("reclaimPolicy"), RECLAIM))
    if obj.get("volumeBindingMode") not in BINDING_MODES:
        out.append(_supported("volumeBindingMode", obj.get("volumeBindingMode"), BINDING_MODES))
    return out
