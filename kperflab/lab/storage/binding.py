"""The scheduler's VolumeBinding plugin, for the lab's one node: whether a pod's claims let it be bound to the node.

PreFilter: a claim that does not exist, or is being deleted, stops the pod (``persistentvolumeclaim "x" not found``);
an unbound claim of an Immediate class (or of no class) stops it too (``pod has unbound immediate
PersistentVolumeClaims``). Filter: a bound claim's PV must admit the node (``volume node affinity conflict``); a
ReadWriteOncePod claim must not be in use by another pod. PreBind: an unbound WaitForFirstConsumer claim is given the
node (annotation ``volume.kubernetes.io/selected-node``) so the PV controller binds or provisions it; the pod is
bound to the node only once all its claims are Bound (the scheduler's PreBind waits, without an event).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import errors
from ..store import Store
from .pvcontroller import ANN_SELECTED_NODE, CLASSES, PODS, PVCS, PVS, claim_class, node_matches

Obj = dict[str, Any]
PREEMPTION = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."


@dataclass
class Verdict:
    """``bind``: the pod may go to the node now; else ``message`` (FailedScheduling) or a silent wait."""

    bind: bool
    message: str = ""


def claims_of(pod: Obj) -> list[str]:
    """The claims a pod uses: its persistentVolumeClaim volumes, and ``<pod>-<volume>`` for each generic ephemeral
    volume (the claim the ephemeral volume controller makes for it)."""
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if (v.get("persistentVolumeClaim") or {}).get("claimName"):
            out.append(v["persistentVolumeClaim"]["claimName"])
        elif v.get("ephemeral") is not None:
            out.append(ephemeral_claim_name(pod, v))
    return out


def ephemeral_claim_name(pod: Obj, volume: Obj) -> str:
    return f"{pod['metadata']['name']}-{volume['name']}"


def ephemeral_claims(pod: Obj) -> dict[str, Obj]:
    """claim name → the ephemeral volume's ``volumeClaimTemplate``."""
    return {ephemeral_claim_name(pod, v): (v["ephemeral"] or {}).get("volumeClaimTemplate") or {}
            for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("ephemeral") is not None}


def owned_by(obj: Obj, pod: Obj) -> bool:
    return any(r.get("uid") == pod["metadata"].get("uid") and r.get("controller")
               for r in obj["metadata"].get("ownerReferences") or [])


def check(store: Store, pod: Obj, node_name: str) -> Verdict:
    names = claims_of(pod)
    if not names:
        return Verdict(True)
    ns = pod["metadata"]["namespace"]
    ephemeral = ephemeral_claims(pod)
    claims = []
    for name in dict.fromkeys(names):
        pvc = store.try_get(PVCS, ns, name)
        if pvc is None and name in ephemeral:
            return Verdict(False, "0/1 nodes are available: waiting for ephemeral volume controller to create the "
                                  f'persistentvolumeclaim "{name}". {PREEMPTION}')
        if pvc is None:
            return Verdict(False, f'0/1 nodes are available: persistentvolumeclaim "{name}" not found. {PREEMPTION}')
        if name in ephemeral and not owned_by(pvc, pod):
            return Verdict(False, f"0/1 nodes are available: PVC {ns}/{name} was not created for pod "
                                  f"{ns}/{pod['metadata']['name']} (pod is not owner). {PREEMPTION}")
        if pvc["metadata"].get("deletionTimestamp"):
            return Verdict(False, f'0/1 nodes are available: persistentvolumeclaim "{name}" is being deleted. {PREEMPTION}')
        claims.append(pvc)
    node = store.try_get("v1/nodes", "", node_name)
    waiting: list[Obj] = []
    for pvc in claims:
        bound = (pvc.get("status") or {}).get("phase") == "Bound" and pvc["spec"].get("volumeName")
        if bound:
            pv = store.try_get(PVS, "", pvc["spec"]["volumeName"])
            if pv is not None and not node_matches(pv, node):
                return Verdict(False, f"0/1 nodes are available: 1 node(s) had volume node affinity conflict. {PREEMPTION}")
            if "ReadWriteOncePod" in (pvc["spec"].get("accessModes") or []) and _in_use_by_other(store, pod, pvc):
                return Verdict(False, "0/1 nodes are available: 1 node has pod using PersistentVolumeClaim with the same "
                               f"name and ReadWriteOncePod access mode. {PREEMPTION}")
            continue
        cls_name = claim_class(pvc)
        cls = store.try_get(CLASSES, "", cls_name) if cls_name else None
        if cls is None or cls.get("volumeBindingMode") != "WaitForFirstConsumer":
            return Verdict(False, f"0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. {PREEMPTION}")
        waiting.append(pvc)
    for pvc in waiting:  # PreBind: hand the claims the node, then wait for the PV controller
        anns = pvc["metadata"].setdefault("annotations", {})
        if anns.get(ANN_SELECTED_NODE) != node_name:
            anns[ANN_SELECTED_NODE] = node_name
            try:
                store.update(PVCS, pvc)
            except errors.APIError:
                pass
    return Verdict(not waiting)


def _in_use_by_other(store: Store, pod: Obj, pvc: Obj) -> bool:
    name = pvc["metadata"]["name"]
    pods, *_ = store.list(PODS, pod["metadata"]["namespace"], lambda p: p["metadata"]["uid"] != pod["metadata"]["uid"]
                          and p.get("spec", {}).get("nodeName")
                          and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
                          and name in claims_of(p))
    return bool(pods)
