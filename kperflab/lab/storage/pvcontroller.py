"""The PersistentVolume controller of kube-controller-manager (pkg/controller/volume/persistentvolume), its
pvc-protection and pv-protection controllers, and the external provisioners of the lab's storage classes, as one
reconcile pass over the store's state (idempotent: every pass reads what is there and moves it one step on).

What a user sees, as on a cluster:

- A claim binds to the smallest Available PV that fits: same class, capacity at least the request, every requested
  access mode, same volumeMode, labels matching the claim's selector. Binding writes ``pv.spec.claimRef`` first and
  then ``pvc.spec.volumeName`` with the annotations ``pv.kubernetes.io/bind-completed`` and
  ``pv.kubernetes.io/bound-by-controller``; both go Bound. A claim without a class gets the default class (retroactive
  default StorageClass assignment, GA in 1.28).
- With no PV to bind, a claim of a class is provisioned by the class' provisioner: Immediate at once;
  WaitForFirstConsumer only once the scheduler has chosen a node (annotation ``volume.kubernetes.io/selected-node``),
  until then the event ``WaitForFirstConsumer``. The claim is annotated ``volume.kubernetes.io/storage-provisioner``,
  the controller says ``ExternalProvisioning``, the provisioner ``Provisioning`` and then ``ProvisioningSucceeded`` or
  ``ProvisioningFailed`` (retried with exponential back-off, as the external-provisioner does). The PV is named
  ``pvc-<claim uid>``, pre-bound to the claim, with the class' reclaim policy.
- A PV whose claim is gone is Released. ``Retain`` keeps it (and its data) Released until an admin removes its
  claimRef, when it is Available again. ``Delete`` destroys the backend and the PV; a failure makes the PV Failed with
  the event ``VolumeFailedDelete``.
- A claim whose PV disappeared is Lost (``ClaimLost``).
- A volume of the lab's provisioners whose data is gone (its backing file missing: volumes are kept across restarts
  in the state dir, see ``plugins``) is Failed with the reason as message and a ``VolumeConditionAbnormal`` warning
  on it and its claim (as CSI's volume health monitor reports an abnormal volume); its claim stays Bound, and once
  the claim is deleted a Delete volume goes.
- ``kubernetes.io/pvc-protection`` keeps a deleted claim (Terminating) while a pod that is not finished uses it;
  ``kubernetes.io/pv-protection`` keeps a deleted PV while it is Bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .. import errors, quantity
from ..events import Recorder
from ..store import Store, rfc3339, run_on_change
from . import loopfs

log = logging.getLogger("kperflab.lab.storage")

Obj = dict[str, Any]
PVS, PVCS, CLASSES, PODS = "v1/persistentvolumes", "v1/persistentvolumeclaims", "storage.k8s.io/v1/storageclasses", "v1/pods"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
PROVISIONER_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
MODE_NAMES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


class Backend(Protocol):
    """A storage class' provisioner with its volumes' backend."""

    name: str
    access_modes: frozenset[str]
    description: str

    def provision(self, pv_name: str, size_bytes: int, params: dict[str, str]) -> dict[str, Any]: ...
    def delete(self, pv: dict[str, Any]) -> None: ...
    def owns(self, pv: dict[str, Any]) -> bool: ...


@dataclass
class _Backoff:
    failures: int = 0
    next_try: float = 0.0

    def fail(self, now: float) -> None:
        self.failures += 1
        self.next_try = now + min(300.0, 1.0 * 2 ** (self.failures - 1))


def label_selector(sel: Obj) -> Callable[[dict[str, str]], bool]:
    """metav1.LabelSelector (matchLabels, matchExpressions) as a predicate on labels."""
    exprs = [{"key": k, "operator": "In", "values": [v]} for k, v in (sel.get("matchLabels") or {}).items()]
    exprs += sel.get("matchExpressions") or []

    def ok(labels: dict[str, str]) -> bool:
        for e in exprs:
            op, key, vals = e.get("operator"), e.get("key"), e.get("values") or []
            if op == "In" and labels.get(key) not in vals or op == "NotIn" and key in labels and labels[key] in vals \
                    or op == "Exists" and key not in labels or op == "DoesNotExist" and key in labels:
                return False
        return True
    return ok


def default_class(classes: list[Obj]) -> Obj | None:
    """The newest class annotated default (as the admission plugin and the controller choose)."""
    defaults = [c for c in classes if (c["metadata"].get("annotations") or {}).get(ANN_DEFAULT_CLASS) == "true"]
    return max(defaults, key=lambda c: c["metadata"].get("creationTimestamp", "")) if defaults else None


def claim_class(pvc: Obj) -> str:
    return (pvc.get("spec") or {}).get("storageClassName") or ""


def request_bytes(pvc: Obj) -> int:
    return quantity.to_bytes(pvc["spec"]["resources"]["requests"]["storage"])


def pv_capacity(pv: Obj) -> int:
    try:
        return quantity.to_bytes(((pv.get("spec") or {}).get("capacity") or {}).get("storage", "0"))
    except ValueError:
        return 0


def pods_using(store: Store, namespace: str, claim: str) -> list[Obj]:
    """Pods of ``namespace`` that use ``claim`` and are not finished."""
    pods, *_ = store.list(PODS, namespace, lambda p: p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
                          and any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim
                                  for v in (p.get("spec") or {}).get("volumes") or []))
    return pods


def node_matches(pv: Obj, node: Obj | None) -> bool:
    """Whether the PV's required node affinity admits ``node`` (matchExpressions In/NotIn/Exists/DoesNotExist on labels)."""
    terms = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")
    if not terms:
        return True
    if node is None:
        return False
    labels = node["metadata"].get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}

    def expr_ok(e: Obj, values: dict[str, str]) -> bool:
        op, key, vals = e.get("operator"), e.get("key"), e.get("values") or []
        if op == "In":
            return values.get(key) in vals
        if op == "NotIn":
            return values.get(key) not in vals
        if op == "Exists":
            return key in values
        if op == "DoesNotExist":
            return key not in values
        return False

    return any(all(expr_ok(e, labels) for e in t.get("matchExpressions") or [])
               and all(expr_ok(e, fields) for e in t.get("matchFields") or [])
               and (t.get("matchExpressions") or t.get("matchFields")) for t in terms)


def find_best_match(pvs: list[Obj], pvc: Obj, node: Obj | None = None, *, check_node: bool = False) -> Obj | None:
    """The smallest PV that can hold the claim (pkg/controller/volume/persistentvolume/util.FindMatchingVolume):
    one pre-bound to this claim wins; otherwise an unclaimed, Available one of the same class, capacity, access modes,
    volume mode and labels."""
    want = request_bytes(pvc)
    modes = set(pvc["spec"].get("accessModes") or [])
    mode = pvc["spec"].get("volumeMode") or "Filesystem"
    sel = pvc["spec"].get("selector")
    match = label_selector(sel) if sel else None
    best: Obj | None = None
    for pv in pvs:
        spec = pv.get("spec") or {}
        if pv["metadata"].get("deletionTimestamp"):
            continue
        ref = spec.get("claimRef")
        if (spec.get("volumeMode") or "Filesystem") != mode:
            continue
        if check_node and not node_matches(pv, node):
            continue
        if ref and ref.get("name") == pvc["metadata"]["name"] and ref.get("namespace") == pvc["metadata"]["namespace"] \
                and ref.get("uid") in (None, "", pvc["metadata"]["uid"]):
            if pv_capacity(pv) >= want:
                return pv  # pre-bound to this claim
            continue
        if ref or (pv.get("status") or {}).get("phase") not in ("Available", "Pending", None):
            continue
        if (spec.get("storageClassName") or "") != claim_class(pvc):
            continue
        if match is not None and not match(pv["metadata"].get("labels") or {}):
            continue
        if not modes <= set(spec.get("accessModes") or []):
            continue
        cap = pv_capacity(pv)
        if cap < want:
            continue
        if best is None or cap < pv_capacity(best):
            best = pv
    return best


class PVController:
    def __init__(self, store: Store, node_name: str, backends: dict[str, Backend] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.node = node_name
        self.backends = dict(backends or {})
        self.clock = clock
        self.events = Recorder(store, "persistentvolume-controller")
        self._provisioner_events = {name: Recorder(store, f"{name}_{node_name}") for name in self.backends}
        self._backoff: dict[str, _Backoff] = {}

    def run(self, stop: threading.Event) -> None:
        run_on_change(self.store, stop, self.reconcile, "persistent volume controller")

    def reconcile(self) -> None:
        classes, *_ = self.store.list(CLASSES)
        by_name = {c["metadata"]["name"]: c for c in classes}
        claims, *_ = self.store.list(PVCS)
        for pvc in claims:
            try:
                self._sync_claim(pvc, by_name, default_class(classes))
            except errors.APIError as exc:
                if exc.code not in (404, 409):
                    raise
        volumes, *_ = self.store.list(PVS)
        for pv in volumes:
            try:
                self._sync_volume(pv)
            except errors.APIError as exc:
                if exc.code not in (404, 409):
                    raise

    # -- claims ------------------------------------------------------------------------------------------
    def _sync_claim(self, pvc: Obj, classes: dict[str, Obj], default: Obj | None) -> None:
        meta, spec = pvc["metadata"], pvc.setdefault("spec", {})
        ns, name = meta["namespace"], meta["name"]
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            if PVC_PROTECTION in finalizers and not pods_using(self.store, ns, name):
                meta["finalizers"] = [f for f in finalizers if f != PVC_PROTECTION]
                self.store.update(PVCS, pvc)  # no finalizer left: the store removes the claim
            return
        changed = False
        if PVC_PROTECTION not in finalizers:
            meta["finalizers"] = [*finalizers, PVC_PROTECTION]
            changed = True
        if "storageClassName" not in spec and default is not None:  # nil, not "": the default class applies
            spec["storageClassName"] = default["metadata"]["name"]
            changed = True
        if changed:
            pvc = self.store.update(PVCS, pvc)
            meta, spec = pvc["metadata"], pvc["spec"]
        if (meta.get("annotations") or {}).get(ANN_BIND_COMPLETED):
            self._sync_bound_claim(pvc)
        else:
            self._sync_unbound_claim(pvc, classes)

    def _sync_bound_claim(self, pvc: Obj) -> None:
        name = pvc["spec"].get("volumeName")
        pv = self.store.try_get(PVS, "", name) if name else None
        if pv is None:
            if (pvc.get("status") or {}).get("phase") != "Lost":
                self.events.event(pvc, "Warning", "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the "
                                  "volume is lost!")
                self._claim_status(pvc, "Lost", None)
            return
        ref = pv["spec"].get("claimRef") or {}
        if ref.get("uid") and ref["uid"] != pvc["metadata"]["uid"]:
            if (pvc.get("status") or {}).get("phase") != "Lost":
                self.events.event(pvc, "Warning", "ClaimMisbound", "Two claims are bound to the same volume, this one "
                                  "is bound incorrectly")
                self._claim_status(pvc, "Lost", None)
            return
        if not ref.get("uid"):
            self._bind(pv, pvc)
            return
        self._claim_status(pvc, "Bound", pv)
        if request_bytes(pvc) > pv_capacity(pv):  # a resize asked for: no resizer runs in the lab (see LabStorage)
            self._once(pvc, "Normal", "ExternalExpanding", "waiting for an external controller to expand this PVC")

    def _sync_unbound_claim(self, pvc: Obj, classes: dict[str, Obj]) -> None:
        spec = pvc["spec"]
        volumes, *_ = self.store.list(PVS)
        if spec.get("volumeName"):  # the user asked for this PV
            pv = next((v for v in volumes if v["metadata"]["name"] == spec["volumeName"]), None)
            ref = (pv or {}).get("spec", {}).get("claimRef")
            if pv is not None and (not ref or (ref.get("namespace") == pvc["metadata"]["namespace"]
                                              and ref.get("name") == pvc["metadata"]["name"]
                                              and ref.get("uid") in (None, "", pvc["metadata"]["uid"]))):
                self._bind(pv, pvc)
            else:
                self._claim_status(pvc, "Pending", None)
            return
        cls_name = claim_class(pvc)
        cls = classes.get(cls_name) if cls_name else None
        wffc = cls is not None and cls.get("volumeBindingMode") == "WaitForFirstConsumer"
        selected = (pvc["metadata"].get("annotations") or {}).get(ANN_SELECTED_NODE)
        node = self.store.try_get("v1/nodes", "", selected) if selected else None
        if wffc and not selected:
            # the scheduler binds static PVs and triggers provisioning for these, once a pod needs the claim
            self._claim_status(pvc, "Pending", None)
            self._once(pvc, "Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
            return
        pv = find_best_match(volumes, pvc, node, check_node=wffc)
        if pv is not None:
            self._bind(pv, pvc)
            return
        self._claim_status(pvc, "Pending", None)
        if not cls_name:
            self._once(pvc, "Normal", "FailedBinding", "no persistent volumes available for this claim and no storage "
                       "class is set")
            return
        if cls is None:
            self._once(pvc, "Warning", "ProvisioningFailed", f'storageclass.storage.k8s.io "{cls_name}" not found')
            return
        if cls.get("provisioner") == "kubernetes.io/no-provisioner":
            self._once(pvc, "Normal", "FailedBinding", "no persistent volumes available for this claim and no storage "
                       "class is set" if not cls_name else "no persistent volumes available for this claim")
            return
        self._provision(pvc, cls)

    def _provision(self, pvc: Obj, cls: Obj) -> None:
        provisioner = cls["provisioner"]
        anns = pvc["metadata"].setdefault("annotations", {})
        if anns.get(ANN_STORAGE_PROVISIONER) != provisioner:
            anns[ANN_STORAGE_PROVISIONER] = anns[ANN_BETA_STORAGE_PROVISIONER] = provisioner
            pvc = self.store.update(PVCS, pvc)
        self._once(pvc, "Normal", "ExternalProvisioning", f"Waiting for a volume to be created either by the external "
                   f"provisioner '{provisioner}' or manually by the system administrator. If volume creation is "
                   "delayed, please verify that the provisioner is running and correctly registered.")
        backend = self.backends.get(provisioner)
        if backend is None:
            return  # an external provisioner the lab does not run: the claim waits, as on a cluster
        uid = pvc["metadata"]["uid"]
        pv_name = f"pvc-{uid}"
        if self.store.try_get(PVS, "", pv_name) is not None:
            return  # made on an earlier pass; binding follows
        bo = self._backoff.setdefault(uid, _Backoff())
        now = self.clock()
        if now < bo.next_try:
            return
        rec = self._provisioner_events[provisioner]
        claim_key = f"{pvc['metadata']['namespace']}/{pvc['metadata']['name']}"
        rec.event(pvc, "Normal", "Provisioning", f'External provisioner is provisioning volume for claim "{claim_key}"')
        modes = pvc["spec"].get("accessModes") or []
        cls_name = cls["metadata"]["name"]
        bad = [m for m in modes if m not in backend.access_modes]
        if bad or (pvc["spec"].get("volumeMode") or "Filesystem") != "Filesystem":
            why = (f"the {cls_name} class ({backend.description}) does not support access mode "
                   f"{', '.join(bad)}; it supports "
                   + ", ".join(sorted(backend.access_modes, key=list(MODE_NAMES).index))
                   if bad else f"the {cls_name} class supports only volumeMode Filesystem")
            bo.fail(now)
            rec.event(pvc, "Warning", "ProvisioningFailed", f'failed to provision volume with StorageClass "{cls_name}": '
                      f"rpc error: code = InvalidArgument desc = {why}")
            return
        size = request_bytes(pvc)
        try:
            source = backend.provision(pv_name, size, dict(cls.get("parameters") or {}))
        except OSError as exc:
            bo.fail(now)
            code = "ResourceExhausted" if isinstance(exc, loopfs.NoSpace) else "Internal"
            rec.event(pvc, "Warning", "ProvisioningFailed", f'failed to provision volume with StorageClass "{cls_name}": '
                      f"rpc error: code = {code} desc = {exc}")
            return
        pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {
            "name": pv_name, "annotations": {ANN_PROVISIONED_BY: provisioner,
                                             "volume.kubernetes.io/provisioner-deletion-secret-name": "",
                                             "volume.kubernetes.io/provisioner-deletion-secret-namespace": ""},
            "finalizers": [PV_PROTECTION, PROVISIONER_FINALIZER]},
            "spec": {"accessModes": list(modes), "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
                     "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                  "namespace": pvc["metadata"]["namespace"], "name": pvc["metadata"]["name"],
                                  "uid": uid, "resourceVersion": pvc["metadata"]["resourceVersion"]},
                     "persistentVolumeReclaimPolicy": cls.get("reclaimPolicy") or "Delete",
                     "storageClassName": cls_name, "volumeMode": "Filesystem",
                     "mountOptions": list(cls.get("mountOptions") or []) or None, **source},
            "status": {"phase": "Pending"}}
        if pv["spec"]["mountOptions"] is None:
            del pv["spec"]["mountOptions"]
        try:
            self.store.create(PVS, pv)
        except errors.APIError:
            backend.delete(pv)
            raise
        self._backoff.pop(uid, None)
        rec.event(pvc, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}")

    def _bind(self, pv: Obj, pvc: Obj) -> None:
        """PV first (claimRef, phase Bound), then the claim (volumeName, annotations, phase Bound)."""
        ref = pv["spec"].get("claimRef") or {}
        want = {"kind": "PersistentVolumeClaim", "namespace": pvc["metadata"]["namespace"], "name": pvc["metadata"]["name"],
                "uid": pvc["metadata"]["uid"], "apiVersion": "v1", "resourceVersion": pvc["metadata"]["resourceVersion"]}
        if ref.get("uid") != want["uid"] or ref.get("name") != want["name"]:
            if not ref:
                pv["metadata"].setdefault("annotations", {})[ANN_BOUND_BY_CONTROLLER] = "yes"
            pv["spec"]["claimRef"] = want
            pv = self.store.update(PVS, pv)
        self._volume_status(pv, "Bound")
        changed = False
        anns = pvc["metadata"].setdefault("annotations", {})
        if pvc["spec"].get("volumeName") != pv["metadata"]["name"]:
            pvc["spec"]["volumeName"] = pv["metadata"]["name"]
            anns[ANN_BOUND_BY_CONTROLLER] = "yes"
            changed = True
        if not anns.get(ANN_BIND_COMPLETED):
            anns[ANN_BIND_COMPLETED] = "yes"
            changed = True
        if changed:
            pvc = self.store.update(PVCS, pvc)
        self._claim_status(pvc, "Bound", pv)

    def _claim_status(self, pvc: Obj, phase: str, pv: Obj | None) -> None:
        status = dict(pvc.get("status") or {})
        want = {**status, "phase": phase}
        if pv is not None:
            want["accessModes"] = list(pv["spec"].get("accessModes") or [])
            want["capacity"] = dict(pv["spec"].get("capacity") or {})
        elif phase == "Pending":
            want.pop("accessModes", None)
            want.pop("capacity", None)
        if want != status:
            pvc["status"] = want
            self.store.update(PVCS, pvc)

    def _once(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        """An event the controller would repeat each resync: recorded once per object and message (the lab's passes
        run on every change, far more often than a resync)."""
        uid = obj["metadata"]["uid"]
        items, *_ = self.store.list("v1/events", obj["metadata"].get("namespace") or "default", lambda e: (
            e.get("involvedObject", {}).get("uid") == uid and e.get("reason") == reason and e.get("message") == message))
        if not items:
            self.events.event(obj, type_, reason, message)

    # -- volumes -----------------------------------------------------------------------------------------
    def _sync_volume(self, pv: Obj) -> None:
        meta, spec = pv["metadata"], pv.setdefault("spec", {})
        finalizers = meta.get("finalizers") or []
        if PV_PROTECTION not in finalizers and not meta.get("deletionTimestamp"):
            meta["finalizers"] = [*finalizers, PV_PROTECTION]
            pv = self.store.update(PVS, pv)
            meta, spec = pv["metadata"], pv["spec"]
        ref = spec.get("claimRef")
        phase = (pv.get("status") or {}).get("phase")
        if meta.get("deletionTimestamp"):
            self._sync_deleted_volume(pv)
            return
        lost = self._lost(pv)
        if lost:
            claim = self.store.try_get(PVCS, ref.get("namespace", ""), ref.get("name", "")) if ref else None
            if phase != "Failed":
                self._once(pv, "Warning", "VolumeConditionAbnormal", lost)
                if claim is not None:
                    self._once(claim, "Warning", "VolumeConditionAbnormal", lost)
            pv = self._volume_status(pv, "Failed", lost)
            if ref and ref.get("uid") and (claim is None or claim["metadata"]["uid"] != ref["uid"]) \
                    and (spec.get("persistentVolumeReclaimPolicy") or "Retain") == "Delete":
                self._reclaim_delete(pv)  # nothing left to keep: the PV goes
            return
        if not ref:
            self._volume_status(pv, "Available")
            return
        if not ref.get("uid"):  # pre-bound by the user; the claim's sync binds it
            self._volume_status(pv, "Available")
            return
        claim = self.store.try_get(PVCS, ref.get("namespace", ""), ref.get("name", ""))
        if claim is not None and claim["metadata"]["uid"] == ref["uid"]:
            if claim["spec"].get("volumeName") == meta["name"]:
                self._volume_status(pv, "Bound")
            return
        # the claim is gone: released, then reclaimed by policy
        if phase not in ("Released", "Failed"):
            pv = self._volume_status(pv, "Released")
        if (spec.get("persistentVolumeReclaimPolicy") or "Retain") == "Delete":
            self._reclaim_delete(pv)

    def _lost(self, pv: Obj) -> str:
        """Why a volume of one of the lab's provisioners has lost its data ('' when it has not, or is not ours): its
        backing file is gone (a lab restarted from a store older than kept volumes, or a file removed by hand)."""
        backend = self._backend_of(pv)
        lost = getattr(backend, "lost", None)
        return lost(pv) if lost is not None else ""

    def _backend_of(self, pv: Obj) -> Backend | None:
        by = (pv["metadata"].get("annotations") or {}).get(ANN_PROVISIONED_BY)
        b = self.backends.get(by or "")
        return b if b is not None and b.owns(pv) else None

    def _reclaim_delete(self, pv: Obj) -> None:
        name = pv["metadata"]["name"]
        backend = self._backend_of(pv)
        if backend is None:
            if (pv.get("status") or {}).get("phase") != "Failed":
                self.events.event(pv, "Warning", "VolumeFailedDelete", f'error getting deleter volume plugin for volume '
                                  f'"{name}": no deletable volume plugin matched')
                self._volume_status(pv, "Failed", "error getting deleter volume plugin for volume "
                                    f'"{name}": no deletable volume plugin matched')
            return
        bo = self._backoff.setdefault(pv["metadata"]["uid"], _Backoff())
        now = self.clock()
        if now < bo.next_try:
            return
        try:
            backend.delete(pv)
        except OSError as exc:
            bo.fail(now)
            self._provisioner_events[backend.name].event(pv, "Warning", "VolumeFailedDelete", str(exc))
            self._volume_status(pv, "Failed", str(exc))
            return
        self._backoff.pop(pv["metadata"]["uid"], None)
        pv["metadata"]["finalizers"] = [f for f in pv["metadata"].get("finalizers") or []
                                        if f not in (PROVISIONER_FINALIZER, PV_PROTECTION)]
        pv = self.store.update(PVS, pv)
        try:
            self.store.remove(PVS, "", name)
        except errors.APIError:
            pass

    def _sync_deleted_volume(self, pv: Obj) -> None:
        """A PV being deleted: its provisioner deletes the backend first (Delete policy; Retain leaves it), then the
        pv-protection finalizer goes once it is not Bound."""
        meta, spec = pv["metadata"], pv["spec"]
        ref = spec.get("claimRef")
        claim = self.store.try_get(PVCS, ref.get("namespace", ""), ref.get("name", "")) if ref else None
        bound = claim is not None and claim["metadata"]["uid"] == (ref or {}).get("uid")
        finalizers = list(meta.get("finalizers") or [])
        if bound:
            return  # in use: stays Terminating
        if PROVISIONER_FINALIZER in finalizers:
            backend = self._backend_of(pv)
            if backend is not None and spec.get("persistentVolumeReclaimPolicy") == "Delete":
                try:
                    backend.delete(pv)
                except OSError as exc:
                    self._once(pv, "Warning", "VolumeFailedDelete", str(exc))
                    return
            finalizers.remove(PROVISIONER_FINALIZER)
        if PV_PROTECTION in finalizers:
            finalizers.remove(PV_PROTECTION)
        if finalizers != (meta.get("finalizers") or []):
            meta["finalizers"] = finalizers
            self.store.update(PVS, pv)

    def _volume_status(self, pv: Obj, phase: str, message: str = "") -> Obj:
        status = dict(pv.get("status") or {})
        if status.get("phase") == phase and status.get("message", "") == message:
            return pv
        want = {"phase": phase, "lastPhaseTransitionTime": rfc3339(self.store.clock())}
        if message:
            want["message"] = message
        pv["status"] = want
        return self.store.update(PVS, pv)
