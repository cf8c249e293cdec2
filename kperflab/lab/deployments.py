"""Workloads as kube-apiserver and kube-controller-manager handle them: apps/v1 Deployments, ReplicaSets and
StatefulSets, v1 ReplicationControllers.

The API side (defaults, 422 validation, the ``scale`` subresource's Scale object) follows
``pkg/apis/apps/v1/defaults.go`` and ``pkg/apis/apps/validation``; the controllers follow
``pkg/controller/deployment`` (rolling and recreate rollouts, revisions, conditions, clean-up),
``pkg/controller/replicaset`` (which also runs ReplicationControllers) and ``pkg/controller/statefulset``, with
their event reasons and messages. The controllers are passes over the store, run by `controllers.Controllers`
each time the store changes (and at least once a second, for ``minReadySeconds`` and progress deadlines).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from collections.abc import Callable
from typing import Any

from . import errors
from . import validation as v
from .events import Recorder
from .store import Store, rfc3339
from .tables import parse_time

Obj = dict[str, Any]
Cause = dict[str, str]
log = logging.getLogger("kperflab.lab.deployments")

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# annotations the deployment controller never copies from a Deployment to its ReplicaSets
_SKIP_COPY = (REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, "deprecated.deployment.rollback.to",
              "kubectl.kubernetes.io/last-applied-configuration")
MAX_REV_HISTORY_CHARS = 2000  # kube-controller-manager's default for the revision-history annotation
BURST_REPLICAS = 500  # pods one sync of a ReplicaSet creates or deletes at most

# -- int-or-percent and the rolling update's fenceposts ----------------------------------------------

_PERCENT = re.compile(r"[0-9]+%")
_PERCENT_MSG = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
                "regex used for validation is '[0-9]+%')")


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, ``"25%"`` of ``total`` rounded up or down."""
    if isinstance(value, bool):
        raise ValueError(f"invalid value {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.endswith("%") and value[:-1].isdigit():
            exact = int(value[:-1]) * total / 100
            return math.ceil(exact) if round_up else math.floor(exact)
        if value.isdigit():  # intstr from a string without '%' is an error upstream
            raise ValueError('invalid value for IntOrString: invalid type: string is not a percentage')
    raise ValueError(f"invalid value {value!r}")


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    """deploymentutil.ResolveFenceposts: surge rounds up, unavailability down; both 0 → one may be unavailable."""
    surge = scaled_value(max_surge if max_surge is not None else 0, desired, True)
    unavailable = scaled_value(max_unavailable if max_unavailable is not None else 0, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _rolling(d: Obj) -> dict[str, Any] | None:
    strategy = d["spec"].get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate") or {}


def replicas(obj: Obj) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def max_surge(d: Obj) -> int:
    ru = _rolling(d)
    if ru is None:
        return 0
    return resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"), replicas(d))[0]


def max_unavailable(d: Obj) -> int:
    ru = _rolling(d)
    if ru is None or replicas(d) == 0:
        return 0
    return min(replicas(d), resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"), replicas(d))[1])


# -- pod-template-hash ------------------------------------------------------------------------------

_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: each byte to one character of an alphabet without vowels (nor 0, 1, 3)."""
    return "".join(_SAFE[b % len(_SAFE)] for b in text.encode())


def compute_hash(template: Any, collision_count: int | None = None) -> str:
    """controller.ComputeHash: FNV-1a 32 of the template (here its canonical JSON, where upstream dumps the Go
    struct), plus the collision count's 8 little-endian bytes when set; the decimal sum, safely encoded."""
    h = 0x811C9DC5
    data = json.dumps(_normal(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += int(collision_count).to_bytes(8, "little")
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return safe_encode(str(h))


def _normal(value: Any) -> Any:
    """A value as Go's typed objects compare it (apiequality.Semantic): null, empty maps and empty lists are unset."""
    if isinstance(value, dict):
        out = {k: _normal(x) for k, x in value.items()}
        return {k: x for k, x in out.items() if x is not None and x != {} and x != []}
    if isinstance(value, list):
        return [_normal(x) for x in value]
    return value


def _without_hash(template: Any) -> Any:
    t = _normal(copy.deepcopy(template or {}))
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
        if not labels:
            t["metadata"].pop("labels")
    if isinstance(t.get("metadata"), dict) and not t["metadata"]:
        t.pop("metadata")
    return t


def equal_ignore_hash(a: Any, b: Any) -> bool:
    """deploymentutil.EqualIgnoreHash: templates equal but for the pod-template-hash label."""
    return _without_hash(a) == _without_hash(b)


# -- label selectors --------------------------------------------------------------------------------

def selector_matches(selector: Any, labels: dict[str, str] | None) -> bool:
    """A metav1.LabelSelector against labels; an empty selector matches everything, a missing one nothing."""
    if not isinstance(selector, dict):
        return False
    labels = labels or {}
    for k, val in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != val:
            return False
    for req in selector.get("matchExpressions") or []:
        k, op, vals = req.get("key"), req.get("operator"), req.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def format_selector(selector: Any) -> str:
    """metav1.FormatLabelSelector (LabelSelectorAsSelector(…).String()): requirements sorted by key; ``<none>`` for
    an empty one."""
    if not isinstance(selector, dict):
        return "<none>"
    reqs: list[tuple[str, str]] = [(k, f"{k}={val}") for k, val in (selector.get("matchLabels") or {}).items()]
    for r in selector.get("matchExpressions") or []:
        k, op, vals = r.get("key", ""), r.get("operator"), sorted(r.get("values") or [])
        text = {"In": f"{k} in ({','.join(vals)})", "NotIn": f"{k} notin ({','.join(vals)})", "Exists": k,
                "DoesNotExist": f"!{k}"}.get(op or "", k)
        reqs.append((k, text))
    reqs.sort(key=lambda kv: kv[0])
    return ",".join(t for _, t in reqs) or "<none>"


def format_labels(labels: dict[str, str] | None) -> str:
    """labels.FormatLabels: sorted ``k=v`` pairs, ``<none>`` for none."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels or {})) or "<none>"


def _selector_of(obj: Obj) -> Any:
    """The selector as a LabelSelector; a ReplicationController's is a plain map."""
    sel = (obj.get("spec") or {}).get("selector")
    if obj.get("kind") == "ReplicationController":
        return {"matchLabels": sel or {}} if sel else None
    return sel


def selector_string(obj: Obj) -> str:
    if obj.get("kind") == "ReplicationController":
        return format_labels((obj.get("spec") or {}).get("selector"))
    return format_selector((obj.get("spec") or {}).get("selector"))


# -- defaults ---------------------------------------------------------------------------------------

_TEMPLATE_UNSET = ("serviceAccountName", "serviceAccount", "tolerations", "priority", "preemptionPolicy",
                   "enableServiceLinks")


def _default_template(spec: Obj) -> None:
    """SetDefaults_PodSpec on a template: what kube-apiserver fills in a pod template (not what admission adds to
    pods: service account, tolerations, priority)."""
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict) or not isinstance(tmpl.get("spec"), dict):
        return
    if any(not isinstance(tmpl["spec"].get(g) or [], list) for g in ("containers", "initContainers", "volumes")):
        return  # validation answers for it
    had = {k for k in _TEMPLATE_UNSET if k in tmpl["spec"]}
    v.default_pod(tmpl)
    for k in _TEMPLATE_UNSET:
        if k not in had:
            tmpl["spec"].pop(k, None)


def default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = spec.get("strategy")
    if not isinstance(strategy, dict):
        strategy = spec["strategy"] = {}
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            ru = strategy["rollingUpdate"] = {}
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = "25%"
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    _default_template(spec)


def default_replicaset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _default_template(spec)


def default_replicationcontroller(obj: Obj) -> None:
    """SetDefaults_ReplicationController: selector and labels from the template's labels when unset."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    tmpl = spec.get("template")
    tmeta = tmpl.get("metadata") if isinstance(tmpl, dict) else None
    labels = tmeta.get("labels") if isinstance(tmeta, dict) else None
    if isinstance(labels, dict) and labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = obj.setdefault("metadata", {})
        if isinstance(meta, dict) and not meta.get("labels"):
            meta["labels"] = dict(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _default_template(spec)


def default_statefulset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    spec.setdefault("podManagementPolicy", "OrderedReady")
    us = spec.get("updateStrategy")
    if not isinstance(us, dict):
        us = spec["updateStrategy"] = {}
    us.setdefault("type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        ru = us.get("rollingUpdate")
        if not isinstance(ru, dict):
            ru = us["rollingUpdate"] = {}
        ru.setdefault("partition", 0)
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    policy = spec.get("persistentVolumeClaimRetentionPolicy")
    if not isinstance(policy, dict):
        policy = spec["persistentVolumeClaimRetentionPolicy"] = {}
    policy.setdefault("whenDeleted", "Retain")
    policy.setdefault("whenScaled", "Retain")
    claims = spec.get("volumeClaimTemplates")
    for claim in claims if isinstance(claims, list) else []:
        if isinstance(claim, dict):
            claim.setdefault("apiVersion", "v1")
            claim.setdefault("kind", "PersistentVolumeClaim")
            cspec = claim.setdefault("spec", {})
            if isinstance(cspec, dict):
                cspec.setdefault("volumeMode", "Filesystem")
            claim.setdefault("status", {"phase": "Pending"})
    _default_template(spec)


# -- validation -------------------------------------------------------------------------------------

def _nonnegative(field: str, value: Any) -> list[Cause]:
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool):
        return [v.invalid_value(field, value, "must be an integer")]
    if value < 0:
        return [v.invalid_value(field, value, "must be greater than or equal to 0")]
    return []


def _go_selector(sel: Any) -> str:
    """A LabelSelector as Go's %#v prints it in an immutable-field message."""
    if not isinstance(sel, dict):
        return "nil"
    ml = sel.get("matchLabels")
    labels = "map[string]string(nil)" if not ml else "map[string]string{" + ", ".join(
        f'"{k}":"{ml[k]}"' for k in sorted(ml)) + "}"
    exprs = sel.get("matchExpressions")
    ex = "[]v1.LabelSelectorRequirement(nil)" if not exprs else "[]v1.LabelSelectorRequirement{" + ", ".join(
        f'v1.LabelSelectorRequirement{{Key:"{e.get("key")}", Operator:"{e.get("operator")}", '
        f'Values:[]string{{{", ".join(json.dumps(x) for x in e.get("values") or [])}}}}}' for e in exprs) + "}"
    return f"v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{ex}}}"


def _label_selector(field: str, sel: Any) -> list[Cause]:
    """ValidateLabelSelector: label keys and values, operators and their values."""
    out: list[Cause] = []
    if not isinstance(sel, dict):
        return [v.invalid_value(field, "…", "must be a label selector")]
    ml = sel.get("matchLabels") or {}
    if not isinstance(ml, dict) or not all(isinstance(x, str) for x in ml.values()):
        return [v.invalid_value(f"{field}.matchLabels", "…", "must be a map of strings")]
    out += v._labels(f"{field}.matchLabels", ml)
    for i, e in enumerate(sel.get("matchExpressions") or []):
        f = f"{field}.matchExpressions[{i}]"
        if not isinstance(e, dict):
            out.append(v.invalid_value(f, "…", "must be an object"))
            continue
        op = e.get("operator")
        if op in ("In", "NotIn"):
            if not e.get("values"):
                out.append(v.cause(f"{f}.values", "Required value", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if e.get("values"):
                out.append(v.cause(f"{f}.values", "Forbidden", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            out.append(v.invalid_value(f"{f}.operator", op, "not a valid selector operator"))
        out += v.qualified_name(f"{f}.key", str(e.get("key") or ""))
    return out


def _template(spec: Obj, selector: Any, *, rc: bool = False) -> list[Cause]:
    """ValidatePodTemplateSpecForReplicaSet: template required, its labels matching the selector, restartPolicy
    Always, no activeDeadlineSeconds; the pod spec as for pods."""
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        return [v.cause("spec.template", "Required value", "")]
    out: list[Cause] = []
    meta = tmpl.get("metadata") or {}
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if isinstance(labels, dict) and all(isinstance(x, str) for x in labels.values()):
        out += v._labels("spec.template.metadata.labels", labels)
    elif labels is not None:
        out.append(v.invalid_value("spec.template.metadata.labels", "…", "must be a map of strings"))
        labels = None
    if selector is not None:
        sel = {"matchLabels": selector} if rc else selector
        if sel and not selector_matches(sel, labels if isinstance(labels, dict) else {}):
            shown = "map[" + " ".join(f"{k}:{labels[k]}" for k in sorted(labels)) + "]" if isinstance(labels, dict) else "map[]"
            out.append(v.cause("spec.template.metadata.labels", "Invalid value",
                               f"{shown}: `selector` does not match template `labels`"))
    tspec = tmpl.get("spec")
    out += v.pod_spec(tspec, "spec.template.spec")
    if isinstance(tspec, dict):
        rp = tspec.get("restartPolicy")
        if rp in ("OnFailure", "Never"):
            out.append(v.cause("spec.template.spec.restartPolicy", "Unsupported value", f'"{rp}": supported values: "Always"'))
        if tspec.get("activeDeadlineSeconds") is not None:
            out.append(v.cause("spec.template.spec.activeDeadlineSeconds", "Forbidden",
                               "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return out


def _spec_common(obj: Obj, name_rule: str = "subdomain") -> tuple[list[Cause], Obj | None]:
    out = v.metadata(obj.get("metadata"), namespaced=True, name_rule=name_rule)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return out + [v.cause("spec", "Required value", "")], None
    out += _nonnegative("spec.replicas", spec.get("replicas"))
    out += _nonnegative("spec.minReadySeconds", spec.get("minReadySeconds"))
    return out, spec


def _apps_selector(spec: Obj, what: str) -> tuple[list[Cause], Any]:
    sel = spec.get("selector")
    if sel is None:
        return [v.cause("spec.selector", "Required value", "")], None
    out = _label_selector("spec.selector", sel)
    if isinstance(sel, dict) and not sel.get("matchLabels") and not sel.get("matchExpressions"):
        out.append(v.cause("spec.selector", "Invalid value", f"{_go_selector(sel)}: empty selector is invalid for {what}"))
    return out, sel if not out else None


def _int_or_percent(field: str, value: Any) -> list[Cause]:
    """ValidatePositiveIntOrPercent + IsNotMoreThan100Percent."""
    if value is None:
        return []
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            return [v.invalid_value(field, value, _PERCENT_MSG)]
        if int(value[:-1]) > 100:
            return [v.invalid_value(field, value, "must not be greater than 100%")]
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return [v.invalid_value(field, value, "must be an integer or percentage (e.g '5%')")]
    return _nonnegative(field, value)


def deployment(obj: Obj) -> list[Cause]:
    """ValidateDeployment (apps/v1)."""
    out, spec = _spec_common(obj)
    if spec is None:
        return out
    sel_causes, sel = _apps_selector(spec, "deployment")
    out += sel_causes
    out += _template(spec, sel)
    strategy = spec.get("strategy") or {}
    st = strategy.get("type")
    if st == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            out.append(v.cause("spec.strategy.rollingUpdate", "Forbidden",
                               "may not be specified when strategy `type` is 'Recreate'"))
    elif st == "RollingUpdate":
        ru = strategy.get("rollingUpdate")
        if not isinstance(ru, dict):
            out.append(v.cause("spec.strategy.rollingUpdate", "Required value", "this should be defaulted and never be nil"))
        else:
            f = "spec.strategy.rollingUpdate"
            mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
            bad = _int_or_percent(f"{f}.maxUnavailable", mu) + _int_or_percent(f"{f}.maxSurge", ms)
            out += bad
            if not bad:
                try:
                    zero = scaled_value(mu, 100, False) == 0 and scaled_value(ms, 100, True) == 0
                except ValueError:
                    zero = False
                if zero:
                    out.append(v.invalid_value(f"{f}.maxUnavailable", mu, "may not be 0 when `maxSurge` is 0"))
    else:
        out.append(v.cause("spec.strategy.type", "Unsupported value", f'"{st}": supported values: "Recreate", "RollingUpdate"'))
    out += _nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    pds = spec.get("progressDeadlineSeconds")
    out += _nonnegative("spec.progressDeadlineSeconds", pds)
    if isinstance(pds, int) and isinstance(spec.get("minReadySeconds"), int) and pds <= spec["minReadySeconds"]:
        out.append(v.invalid_value("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
    return out


def replicaset(obj: Obj) -> list[Cause]:
    """ValidateReplicaSet."""
    out, spec = _spec_common(obj)
    if spec is None:
        return out
    sel_causes, sel = _apps_selector(spec, "deployment")
    return out + sel_causes + _template(spec, sel)


def replicationcontroller(obj: Obj) -> list[Cause]:
    """ValidateReplicationController: the selector is a map, required, and the template's labels must match it."""
    out, spec = _spec_common(obj)
    if spec is None:
        return out
    sel = spec.get("selector")
    if not sel:
        out.append(v.cause("spec.selector", "Required value", ""))
        sel = None
    elif not isinstance(sel, dict) or not all(isinstance(x, str) for x in sel.values()):
        out.append(v.invalid_value("spec.selector", "…", "must be a map of strings"))
        sel = None
    else:
        out += v._labels("spec.selector", sel)
    return out + _template(spec, sel, rc=True)


def statefulset(obj: Obj) -> list[Cause]:
    """ValidateStatefulSet (the parts a one-node lab meets)."""
    out, spec = _spec_common(obj, name_rule="label")
    if spec is None:
        return out
    sel_causes, sel = _apps_selector(spec, "statefulset")
    out += sel_causes + _template(spec, sel)
    pmp = spec.get("podManagementPolicy")
    if pmp not in ("OrderedReady", "Parallel"):
        out.append(v.cause("spec.podManagementPolicy", "Unsupported value",
                           f'"{pmp}": supported values: "OrderedReady", "Parallel"'))
    us = spec.get("updateStrategy") or {}
    if us.get("type") not in ("RollingUpdate", "OnDelete"):
        out.append(v.cause("spec.updateStrategy.type", "Unsupported value",
                           f'"{us.get("type")}": supported values: "OnDelete", "RollingUpdate"'))
    elif us.get("type") == "OnDelete" and us.get("rollingUpdate") is not None:
        out.append(v.cause("spec.updateStrategy.rollingUpdate", "Invalid value",
                           "only allowed for updateStrategy 'RollingUpdate'"))
    elif us.get("type") == "RollingUpdate":
        out += _nonnegative("spec.updateStrategy.rollingUpdate.partition", (us.get("rollingUpdate") or {}).get("partition"))
    out += _nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    claims = spec.get("volumeClaimTemplates")
    if claims is not None and not isinstance(claims, list):
        out.append(v.invalid_value("spec.volumeClaimTemplates", "…", "must be a list"))
        claims = []
    for i, claim in enumerate(claims or []):
        name = ((claim or {}).get("metadata") or {}).get("name") if isinstance(claim, dict) else None
        if not name:
            out.append(v.cause(f"spec.volumeClaimTemplates[{i}].metadata.name", "Required value", ""))
    return out


def validate_update(old: Obj, new: Obj) -> list[Cause]:
    """The update rules on top of validation: an apps/v1 selector is immutable (``field is immutable``), as are a
    StatefulSet's fields other than replicas, template, updateStrategy, persistentVolumeClaimRetentionPolicy,
    minReadySeconds, ordinals and revisionHistoryLimit."""
    kind = new.get("kind") or old.get("kind")
    check = {"Deployment": deployment, "ReplicaSet": replicaset, "StatefulSet": statefulset,
             "ReplicationController": replicationcontroller}.get(kind or "", lambda o: [])
    out = check(new)
    if kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        osel, nsel = (old.get("spec") or {}).get("selector"), (new.get("spec") or {}).get("selector")
        if osel != nsel:
            out.append(v.cause("spec.selector", "Invalid value", f"{_go_selector(nsel)}: field is immutable"))
    if kind == "StatefulSet":
        mutable = ("replicas", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds",
                   "ordinals", "revisionHistoryLimit")
        ospec = {k: val for k, val in (old.get("spec") or {}).items() if k not in mutable}
        nspec = {k: val for k, val in (new.get("spec") or {}).items() if k not in mutable}
        if ospec != nspec:
            out.append(v.cause("spec", "Forbidden", "updates to statefulset spec for fields other than 'replicas', "
                               "'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
                               "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
    return out


def deployment_generation_changes(old: Obj, new: Obj) -> bool:
    """The Deployment strategy's PrepareForUpdate: spec changes bump the generation, and so do annotation changes
    (annotations are copied to the ReplicaSets)."""
    return old.get("spec") != new.get("spec") or \
        ((old.get("metadata") or {}).get("annotations") or {}) != ((new.get("metadata") or {}).get("annotations") or {})


# -- the scale subresource ----------------------------------------------------------------------------

def to_scale(obj: Obj) -> Obj:
    """autoscaling/v1 Scale of a Deployment, ReplicaSet, StatefulSet or ReplicationController."""
    meta = obj["metadata"]
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": replicas(obj)},
            "status": {"replicas": int((obj.get("status") or {}).get("replicas") or 0),
                       "selector": "" if selector_string(obj) == "<none>" else selector_string(obj)}}


def validate_scale(scale: Any) -> list[Cause]:
    if not isinstance(scale, dict) or not isinstance(scale.get("spec") or {}, dict):
        return [v.cause("spec", "Required value", "")]
    r = (scale.get("spec") or {}).get("replicas", 0)
    if r is None:
        r = 0
    return _nonnegative("spec.replicas", r)


# -- pods ---------------------------------------------------------------------------------------------

def _condition(pod: Obj, type_: str) -> Obj | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def pod_ready(pod: Obj) -> bool:
    c = _condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def pod_available(pod: Obj, min_ready: int, now: float) -> bool:
    """podutil.IsPodAvailable: ready, and for at least minReadySeconds."""
    if not pod_ready(pod):
        return False
    if not min_ready:
        return True
    t = parse_time((_condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return t is not None and t + min_ready <= now


def pod_active(pod: Obj) -> bool:
    """controller.IsPodActive."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def _controller_ref(obj: Obj) -> Obj | None:
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def owner_ref(owner: Obj) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _log2_rank(t: float | None, now: float) -> int:
    """The logarithmic buckets of LogarithmicScaleDown (time since, in nanoseconds)."""
    if t is None:
        return -1
    d = (now - t) * 1e9
    return int(math.log2(d)) if d >= 1 else 0


def deletion_order(pods: list[Obj], now: float) -> list[Obj]:
    """The order a ReplicaSet deletes pods in (controller.ActivePodsWithRanks, with LogarithmicScaleDown):
    unassigned first; Pending, Unknown, then Running; not ready before ready; lower pod-deletion-cost; ready for less
    time; more restarts; newer."""
    phase = {"Pending": 0, "Unknown": 1, "Running": 2}

    def cost(p: Obj) -> int:
        try:
            return int((p["metadata"].get("annotations") or {}).get(DELETION_COST, "0"))
        except ValueError:
            return 0

    def key(p: Obj) -> tuple[Any, ...]:
        ready = pod_ready(p)
        ready_at = parse_time((_condition(p, "Ready") or {}).get("lastTransitionTime")) if ready else None
        created = parse_time(p["metadata"].get("creationTimestamp"))
        restarts = max([cs.get("restartCount", 0) for cs in (p.get("status") or {}).get("containerStatuses") or []] or [0])
        return (bool(p.get("spec", {}).get("nodeName")), phase.get((p.get("status") or {}).get("phase", ""), 0), ready,
                cost(p), _log2_rank(ready_at, now) if ready else 0, -restarts, _log2_rank(created, now),
                p["metadata"]["name"])

    return sorted(pods, key=key)


# -- writing --------------------------------------------------------------------------------------------

def delete_object(store: Store, key: str, obj: Obj, policy: str = "Background") -> None:
    """What a DELETE with ``propagationPolicy`` does to one object, for the controllers and the garbage collector: a
    bound pod goes through its grace period, an object with finalizers (or Foreground/Orphan) waits for them."""
    meta = obj["metadata"]
    ns, name, uid = meta.get("namespace", ""), meta["name"], meta["uid"]
    if key == "v1/pods":
        grace = int(obj.get("spec", {}).get("terminationGracePeriodSeconds", 30))
        if not obj.get("spec", {}).get("nodeName") or (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            grace = 0
        if grace <= 0 and not obj.get("spec", {}).get("nodeName"):
            store.remove(key, ns, name, uid=uid)
        else:
            store.mark_deleting(key, ns, name, grace, uid=uid)
        return
    finalizers = [f for f in meta.get("finalizers") or [] if f not in ("orphan", "foregroundDeletion")]
    if policy == "Orphan":
        finalizers.append("orphan")
    elif policy == "Foreground":
        finalizers.append("foregroundDeletion")
    if not finalizers:
        store.remove(key, ns, name, uid=uid)
        return
    if finalizers != (meta.get("finalizers") or []):
        fresh = copy.deepcopy(obj)
        fresh["metadata"]["finalizers"] = finalizers
        obj = store.update(key, fresh)
    if not obj["metadata"].get("deletionTimestamp"):
        store.mark_deleting(key, ns, name, 0, uid=uid)


def _set_condition(conds: list[Obj], new: Obj) -> list[Obj]:
    """SetDeploymentCondition: unchanged when status and reason are; the transition time kept while the status is."""
    cur = next((c for c in conds if c["type"] == new["type"]), None)
    if cur is not None and cur.get("status") == new["status"] and cur.get("reason") == new.get("reason"):
        return conds
    if cur is not None and cur.get("status") == new["status"]:
        new = {**new, "lastTransitionTime": cur.get("lastTransitionTime")}
    return [c for c in conds if c["type"] != new["type"]] + [new]


def _drop_zero(status: Obj, keep: tuple[str, ...] = ()) -> Obj:
    """Go's ``omitempty`` on the status' counters."""
    return {k: val for k, val in status.items() if k in keep or val not in (0, None, "", [], {})}


def _admission(store: Store) -> Any:
    """The ServiceAccount admission the API server runs on a controller's pod POST (no waiting for the namespace's
    default ServiceAccount here: the pass fails with FailedCreate and the next one tries again)."""
    from .admission import ServiceAccountAdmission

    return ServiceAccountAdmission(store, sleep=lambda _seconds: None)


# -- ReplicaSets and ReplicationControllers ------------------------------------------------------------------

class ReplicaSetController:
    """pkg/controller/replicaset: pods from the template up to spec.replicas (adopting orphans that match, releasing
    pods that no longer do), the surplus deleted in ActivePods order, status counted from the pods."""

    def __init__(self, store: Store, make_pod: Callable[[Obj, str], Obj], key: str = "apps/v1/replicasets",
                 component: str = "replicaset-controller") -> None:
        self.store = store
        self.key = key
        self.make_pod = make_pod
        self.events = Recorder(store, component)
        self.admission = _admission(store)
        self._retry: dict[str, tuple[float, float]] = {}  # uid → (not before, delay): the work queue's back-off

    def reconcile(self) -> None:
        sets, *_ = self.store.list(self.key)
        if not sets:
            return
        for rs in sets:
            try:
                self.sync(rs)
            except errors.APIError as exc:
                if exc.code not in (404, 409):  # (404, 409: gone or changed meanwhile; the next pass sees it anew)
                    log.warning("%s: %s", type(self).__name__, exc.message)
            except Exception:  # noqa: BLE001 - one broken object must not stop the other controllers' pass
                log.exception("%s failed", type(self).__name__)

    def _claim_pods(self, rs: Obj) -> list[Obj]:
        ns, uid = rs["metadata"]["namespace"], rs["metadata"]["uid"]
        sel = _selector_of(rs)
        pods, *_ = self.store.list("v1/pods", ns, lambda p: any(r.get("uid") == uid for r in p["metadata"].get(
            "ownerReferences") or []) or (_controller_ref(p) is None and selector_matches(sel, p["metadata"].get("labels"))))
        out = []
        deleting = bool(rs["metadata"].get("deletionTimestamp"))
        for p in pods:
            ref = _controller_ref(p)
            matches = selector_matches(sel, p["metadata"].get("labels"))
            if ref is not None and ref.get("uid") == uid:
                if matches or p["metadata"].get("deletionTimestamp"):
                    out.append(p)
                else:  # release: the pod no longer matches
                    p["metadata"]["ownerReferences"] = [r for r in p["metadata"]["ownerReferences"] if r.get("uid") != uid]
                    self.store.update("v1/pods", p)
            elif ref is None and matches and not deleting and not p["metadata"].get("deletionTimestamp"):
                p["metadata"]["ownerReferences"] = (p["metadata"].get("ownerReferences") or []) + [owner_ref(rs)]
                try:
                    out.append(self.store.update("v1/pods", p))
                except errors.APIError:
                    continue
        return out

    def sync(self, rs: Obj) -> None:
        pods = self._claim_pods(rs)
        active = [p for p in pods if pod_active(p)]
        now = self.store.clock()
        err: tuple[str, str] | None = None
        uid = rs["metadata"]["uid"]
        not_before, delay = self._retry.get(uid, (0.0, 0.0))
        failing = next((c for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
        if rs["metadata"].get("deletionTimestamp"):
            pass
        elif now < not_before:  # a failed sync is retried after a growing delay, not on every change
            err = (failing["reason"], failing["message"]) if failing else None
        else:
            err = self._manage(rs, active, now)
            if err is None:
                self._retry.pop(uid, None)
            else:
                delay = min(max(1.0, delay * 2), 300.0)
                self._retry[uid] = (now + delay, delay)
        spec = rs["spec"]
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        old = rs.get("status") or {}
        status: Obj = {"replicas": len(active),
                       "fullyLabeledReplicas": sum(all((p["metadata"].get("labels") or {}).get(k) == val
                                                       for k, val in labels.items()) for p in active),
                       "readyReplicas": sum(pod_ready(p) for p in active),
                       "availableReplicas": sum(pod_available(p, min_ready, now) for p in active),
                       "observedGeneration": rs["metadata"].get("generation", 1)}
        conds = [c for c in old.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        failure = next((c for c in old.get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
        if err is not None:
            reason, message = err
            failure = failure if failure and failure.get("reason") == reason else {
                "type": "ReplicaFailure", "status": "True", "lastTransitionTime": rfc3339(now),
                "reason": reason, "message": message}
            conds.append(failure)
        if conds:
            status["conditions"] = conds
        status = _drop_zero(status, keep=("replicas",))
        if status != old:
            rs["status"] = status
            self.store.update(self.key, rs)

    def _namespace_terminating(self, ns: str) -> bool:
        obj = self.store.try_get("v1/namespaces", "", ns)
        return obj is None or bool(obj["metadata"].get("deletionTimestamp"))

    def _manage(self, rs: Obj, active: list[Obj], now: float) -> tuple[str, str] | None:
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        diff = len(active) - replicas(rs)
        if diff < 0:
            for _ in range(min(-diff, BURST_REPLICAS)):
                if self._namespace_terminating(ns):
                    message = (f'pods "{name}-" is forbidden: unable to create new content in namespace {ns} because '
                               "it is being terminated")
                    self.events.event(rs, "Warning", "FailedCreate", f"Error creating: {message}")
                    return "FailedCreate", message
                pod = self.make_pod(rs, name + "-")
                try:
                    self.admission.admit(pod, ns)  # as the API server does for the controller's POST
                    created = self.store.create("v1/pods", pod)
                except errors.APIError as exc:
                    self.events.event(rs, "Warning", "FailedCreate", f"Error creating: {exc.message}")
                    return "FailedCreate", exc.message
                self.events.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        elif diff > 0:
            for p in deletion_order(active, now)[:min(diff, BURST_REPLICAS)]:
                try:
                    delete_object(self.store, "v1/pods", p)
                except errors.APIError as exc:
                    if exc.code == 404:
                        continue
                    self.events.event(rs, "Warning", "FailedDelete", f"Error deleting: {exc.message}")
                    return "FailedDelete", exc.message
                self.events.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}")
        return None


# -- Deployments ----------------------------------------------------------------------------------------------

def _rs_sort_created(rss: list[Obj]) -> list[Obj]:
    return sorted(rss, key=lambda r: (parse_time(r["metadata"].get("creationTimestamp")) or 0, r["metadata"]["name"]))


def _revision(obj: Obj | None) -> int:
    try:
        return int(((obj or {}).get("metadata", {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _status_int(obj: Obj, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


class DeploymentController:
    """pkg/controller/deployment: a Deployment's ReplicaSets (one per template, named by its hash), rolled by
    strategy, with revisions, conditions and ScalingReplicaSet events."""

    key = "apps/v1/deployments"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events = Recorder(store, "deployment-controller")

    def reconcile(self) -> None:
        ds, *_ = self.store.list(self.key)
        for d in ds:
            try:
                self.sync(d)
            except errors.APIError as exc:
                if exc.code not in (404, 409):  # (404, 409: gone or changed meanwhile; the next pass sees it anew)
                    log.warning("%s: %s", type(self).__name__, exc.message)
            except Exception:  # noqa: BLE001 - one broken object must not stop the other controllers' pass
                log.exception("%s failed", type(self).__name__)

    # ReplicaSets -------------------------------------------------------------------------------------------------
    def _claim(self, d: Obj) -> list[Obj]:
        ns, uid, sel = d["metadata"]["namespace"], d["metadata"]["uid"], d["spec"].get("selector")
        rss, *_ = self.store.list("apps/v1/replicasets", ns)
        out = []
        for rs in rss:
            ref = _controller_ref(rs)
            matches = selector_matches(sel, rs["metadata"].get("labels"))
            if ref is not None and ref.get("uid") == uid:
                if matches:
                    out.append(rs)
                else:
                    rs["metadata"]["ownerReferences"] = [r for r in rs["metadata"]["ownerReferences"] if r.get("uid") != uid]
                    self.store.update("apps/v1/replicasets", rs)
            elif ref is None and matches and not d["metadata"].get("deletionTimestamp") \
                    and not rs["metadata"].get("deletionTimestamp"):
                rs["metadata"]["ownerReferences"] = (rs["metadata"].get("ownerReferences") or []) + [owner_ref(d)]
                out.append(self.store.update("apps/v1/replicasets", rs))
        return out

    def _write(self, d: Obj) -> Obj:
        return self.store.update(self.key, d)

    def _write_rs(self, rs: Obj) -> Obj:
        return self.store.update("apps/v1/replicasets", rs, spec_changed=lambda a, b: a.get("spec") != b.get("spec"))

    def _cond(self, type_: str, status: str, reason: str, message: str) -> Obj:
        now = rfc3339(self.store.clock())
        return {"type": type_, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
                "reason": reason, "message": message}

    def _set_rs_annotations(self, d: Obj, rs: Obj, new_revision: int, exists: bool) -> bool:
        """SetNewReplicaSetAnnotations."""
        ann = rs["metadata"].setdefault("annotations", {})
        changed = False
        for k, val in (d["metadata"].get("annotations") or {}).items():
            if k in _SKIP_COPY or ann.get(k) == val:
                continue
            ann[k] = val
            changed = True
        old_text = ann.get(REVISION, "")
        try:
            old_rev = int(old_text) if old_text else 0
        except ValueError:
            return changed
        if old_rev < new_revision:
            ann[REVISION] = str(new_revision)
            changed = True
            if old_text:
                history = [h for h in ann.get(REVISION_HISTORY, "").split(",") if h] + [old_text]
                while len(",".join(history)) > MAX_REV_HISTORY_CHARS and len(history) > 1:
                    history.pop(0)
                ann[REVISION_HISTORY] = ",".join(history)
        if not exists and self._set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
            changed = True
        return changed

    @staticmethod
    def _set_replicas_annotations(rs: Obj, desired: int, maximum: int) -> bool:
        ann = rs["metadata"].setdefault("annotations", {})
        if ann.get(DESIRED_REPLICAS) == str(desired) and ann.get(MAX_REPLICAS) == str(maximum):
            return False
        ann[DESIRED_REPLICAS], ann[MAX_REPLICAS] = str(desired), str(maximum)
        return True

    def _new_rs(self, d: Obj, rss: list[Obj], create: bool) -> tuple[Obj | None, list[Obj], Obj]:
        """getAllReplicaSetsAndSyncRevision: (new RS or None, old RSs, the Deployment as written)."""
        tmpl = d["spec"].get("template") or {}
        new = next((rs for rs in _rs_sort_created(rss) if equal_ignore_hash(rs["spec"].get("template"), tmpl)), None)
        olds = [rs for rs in rss if new is None or rs["metadata"]["uid"] != new["metadata"]["uid"]]
        new_revision = max([_revision(rs) for rs in olds] or [0]) + 1
        status = copy.deepcopy(d.get("status") or {})
        conds = status.get("conditions") or []
        progress = bool(d["spec"].get("progressDeadlineSeconds") is not None)
        if new is not None:
            changed = self._set_rs_annotations(d, new, new_revision, True)
            if changed or int(new["spec"].get("minReadySeconds") or 0) != int(d["spec"].get("minReadySeconds") or 0):
                new["spec"]["minReadySeconds"] = d["spec"].get("minReadySeconds") or 0
                if not new["spec"]["minReadySeconds"]:
                    new["spec"].pop("minReadySeconds")
                new = self._write_rs(new)
            needs = self._set_revision(d, (new["metadata"].get("annotations") or {}).get(REVISION, ""))
            if progress and not any(c["type"] == "Progressing" for c in conds):
                conds = _set_condition(conds, self._cond("Progressing", "True", "FoundNewReplicaSet",
                                                         f'Found new replica set "{new["metadata"]["name"]}"'))
                needs = True
            if needs:
                if conds:
                    status["conditions"] = conds
                d["status"] = status
                d = self._write(d)
            return new, olds, d
        if not create:
            return None, olds, d
        collisions = status.get("collisionCount")
        h = compute_hash(tmpl, collisions)
        new_tmpl = copy.deepcopy(tmpl)
        new_tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        sel = copy.deepcopy(d["spec"]["selector"])
        sel.setdefault("matchLabels", {})[HASH_LABEL] = h
        ns, dname = d["metadata"]["namespace"], d["metadata"]["name"]
        rs: Obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": f"{dname}-{h}", "namespace": ns, "labels": dict(new_tmpl["metadata"]["labels"]),
                                "ownerReferences": [owner_ref(d)]},
                   "spec": {"replicas": 0, "selector": sel, "template": new_tmpl}}
        if d["spec"].get("minReadySeconds"):
            rs["spec"]["minReadySeconds"] = d["spec"]["minReadySeconds"]
        rs["spec"]["replicas"] = self._new_rs_replicas(d, olds + [rs], rs)
        self._set_rs_annotations(d, rs, new_revision, False)
        rs["status"] = {"replicas": 0}
        try:
            created = self.store.create("apps/v1/replicasets", rs)
        except errors.APIError as exc:
            if exc.code != 409:
                raise
            existing = self.store.try_get("apps/v1/replicasets", ns, rs["metadata"]["name"])
            ref = _controller_ref(existing) if existing else None
            if existing and ref and ref.get("uid") == d["metadata"]["uid"] and equal_ignore_hash(
                    existing["spec"].get("template"), tmpl):
                return existing, olds, d
            status["collisionCount"] = (collisions or 0) + 1  # a name clash: the next hash differs
            d["status"] = status
            self._write(d)
            return None, olds, self.store.get(self.key, ns, dname)
        if replicas(created) > 0:
            self.events.event(d, "Normal", "ScalingReplicaSet",
                              f"Scaled up replica set {created['metadata']['name']} to {replicas(created)}")
        self._set_revision(d, str(new_revision))
        if progress:
            conds = _set_condition(conds, self._cond("Progressing", "True", "NewReplicaSetCreated",
                                                     f'Created new replica set "{created["metadata"]["name"]}"'))
            status["conditions"] = conds
        d["status"] = status
        return created, olds, self._write(d)

    @staticmethod
    def _set_revision(d: Obj, revision: str) -> bool:
        ann = d["metadata"].setdefault("annotations", {})
        if ann.get(REVISION) == revision:
            return False
        ann[REVISION] = revision
        return True

    def _new_rs_replicas(self, d: Obj, all_rss: list[Obj], new: Obj) -> int:
        """NewRSNewReplicas."""
        if _rolling(d) is None:
            return replicas(d)
        total = sum(replicas(rs) for rs in all_rss)
        max_total = replicas(d) + max_surge(d)
        if total >= max_total:
            return replicas(new)
        up = min(max_total - total, replicas(d) - replicas(new))
        return replicas(new) + up

    def _scale_rs(self, d: Obj, rs: Obj, to: int) -> tuple[bool, Obj]:
        """scaleReplicaSetAndRecordEvent."""
        size_changes = replicas(rs) != to
        ann_changes = self._set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d))
        if not size_changes and not ann_changes:
            return False, rs
        before = replicas(rs)
        rs["spec"]["replicas"] = to
        rs = self._write_rs(rs)
        if size_changes:
            self.events.event(d, "Normal", "ScalingReplicaSet",
                              f"Scaled {'up' if before < to else 'down'} replica set {rs['metadata']['name']} to {to} from {before}")
        return size_changes, rs

    # the sync ---------------------------------------------------------------------------------------------------
    def sync(self, d: Obj) -> None:
        rss = self._claim(d)
        if d["metadata"].get("deletionTimestamp"):
            new, olds, d = self._new_rs(d, rss, False)
            self._sync_status(d, new, olds)
            return
        d = self._paused_conditions(d)
        if d["spec"].get("paused"):
            self._sync_scale(d, rss)
            return
        scaling, d = self._scaling_event(d, rss)
        rss = self._claim(d)  # (as the revision sync may have just written them)
        if scaling:
            self._sync_scale(d, rss)
            return
        if _rolling(d) is None:
            self._recreate(d, rss)
        else:
            self._rolling_update(d, rss)

    def _paused_conditions(self, d: Obj) -> Obj:
        if d["spec"].get("progressDeadlineSeconds") is None:
            return d
        conds = (d.get("status") or {}).get("conditions") or []
        cur = next((c for c in conds if c["type"] == "Progressing"), None)
        if cur is not None and cur.get("reason") == "ProgressDeadlineExceeded":
            return d
        paused_cond = cur is not None and cur.get("reason") == "DeploymentPaused"
        if d["spec"].get("paused") and not paused_cond:
            new = self._cond("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        elif not d["spec"].get("paused") and paused_cond:
            new = self._cond("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed")
        else:
            return d
        d.setdefault("status", {})["conditions"] = _set_condition(conds, new)
        return self._write(d)

    def _scaling_event(self, d: Obj, rss: list[Obj]) -> tuple[bool, Obj]:
        """isScalingEvent: an active ReplicaSet's desired-replicas annotation differs from spec.replicas."""
        new, olds, d = self._new_rs(d, rss, False)
        for rs in [r for r in [new, *olds] if r is not None and replicas(r) > 0]:
            desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
            if desired is not None and desired.isdigit() and int(desired) != replicas(d):
                return True, d
        return False, d

    def _sync_scale(self, d: Obj, rss: list[Obj]) -> None:
        """sync: scale (proportionally during a rollout), clean up when paused, then the status."""
        new, olds, d = self._new_rs(d, rss, False)
        new, olds = self._scale(d, new, olds)
        if d["spec"].get("paused"):
            self._cleanup(d, olds)
        self._sync_status(d, new, olds)

    def _scale(self, d: Obj, new: Obj | None, olds: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        active = [rs for rs in [new, *olds] if rs is not None and replicas(rs) > 0]
        if len(active) <= 1:  # FindActiveOrLatest
            target = active[0] if active else (new or (sorted(olds, key=_revision)[-1] if olds else None))
            if target is not None and replicas(target) != replicas(d):
                _, target = self._scale_rs(d, target, replicas(d))
                return self._replace(new, olds, target)
            return new, olds
        if new is not None and replicas(new) == replicas(d) and _status_int(new, "availableReplicas") == replicas(d):
            for rs in [r for r in olds if replicas(r) > 0]:  # IsSaturated: the old ones go
                _, rs = self._scale_rs(d, rs, 0)
                new, olds = self._replace(new, olds, rs)
            return new, olds
        if _rolling(d) is None:
            return new, olds
        allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
        to_add = allowed - sum(replicas(rs) for rs in active)
        newest_first = lambda rs: (-replicas(rs), -(parse_time(rs["metadata"].get("creationTimestamp")) or 0), rs["metadata"]["name"])  # noqa: E731
        oldest_first = lambda rs: (-replicas(rs), parse_time(rs["metadata"].get("creationTimestamp")) or 0, rs["metadata"]["name"])  # noqa: E731
        ordered = sorted(active, key=newest_first if to_add > 0 else oldest_first)
        sizes: dict[str, int] = {}
        added = 0
        for rs in ordered:
            proportion = 0
            if replicas(rs) and to_add != added:
                if replicas(d) == 0:
                    fraction = -replicas(rs)
                else:
                    ann = (rs["metadata"].get("annotations") or {}).get(MAX_REPLICAS, "")
                    annotated = int(ann) if ann.isdigit() else _status_int(d, "replicas")
                    fraction = round(replicas(rs) * (replicas(d) + max_surge(d)) / annotated) - replicas(rs) if annotated else 0
                left = to_add - added
                proportion = min(fraction, left) if to_add > 0 else max(fraction, left)
            sizes[rs["metadata"]["name"]] = replicas(rs) + proportion
            added += proportion
        first = ordered[0]["metadata"]["name"]
        sizes[first] = max(0, sizes[first] + to_add - added)
        for rs in ordered:
            _, rs = self._scale_rs(d, rs, sizes[rs["metadata"]["name"]])
            new, olds = self._replace(new, olds, rs)
        return new, olds

    @staticmethod
    def _replace(new: Obj | None, olds: list[Obj], rs: Obj) -> tuple[Obj | None, list[Obj]]:
        uid = rs["metadata"]["uid"]
        if new is not None and new["metadata"]["uid"] == uid:
            return rs, olds
        return new, [rs if o["metadata"]["uid"] == uid else o for o in olds]

    def _rolling_update(self, d: Obj, rss: list[Obj]) -> None:
        new, olds, d = self._new_rs(d, rss, True)
        if new is None:
            return
        # reconcileNewReplicaSet
        if replicas(new) != replicas(d):
            to = replicas(d) if replicas(new) > replicas(d) else self._new_rs_replicas(d, olds + [new], new)
            scaled, new = self._scale_rs(d, new, to)
            if scaled:
                self._sync_rollout(d, new, olds)
                return
        # reconcileOldReplicaSets
        if sum(replicas(rs) for rs in olds) > 0:
            scaled, olds = self._reconcile_olds(d, new, olds)
            if scaled:
                self._sync_rollout(d, new, olds)
                return
        status = self._status(d, new, olds)
        if self._complete(d, status):
            olds = self._cleanup(d, olds)
        self._sync_rollout(d, new, olds)

    def _reconcile_olds(self, d: Obj, new: Obj, olds: list[Obj]) -> tuple[bool, list[Obj]]:
        all_pods = sum(replicas(rs) for rs in olds + [new])
        min_available = replicas(d) - max_unavailable(d)
        new_unavailable = replicas(new) - _status_int(new, "availableReplicas")
        max_down = all_pods - min_available - new_unavailable
        if max_down <= 0:
            return False, olds
        # cleanupUnhealthyReplicas: old pods that are not available go first
        olds = _rs_sort_created(olds)
        cleaned = 0
        for i, rs in enumerate(olds):
            if cleaned >= max_down:
                break
            unhealthy = replicas(rs) - _status_int(rs, "availableReplicas")
            if replicas(rs) == 0 or unhealthy <= 0:
                continue
            down = min(max_down - cleaned, unhealthy)
            _, olds[i] = self._scale_rs(d, rs, replicas(rs) - down)
            cleaned += down
        # scaleDownOldReplicaSetsForRollingUpdate
        available = sum(_status_int(rs, "availableReplicas") for rs in olds + [new])
        scaled = 0
        if available > min_available:
            total = available - min_available
            for i, rs in enumerate(olds):
                if scaled >= total:
                    break
                if replicas(rs) == 0:
                    continue
                down = min(replicas(rs), total - scaled)
                _, olds[i] = self._scale_rs(d, rs, replicas(rs) - down)
                scaled += down
        return cleaned + scaled > 0, olds

    def _recreate(self, d: Obj, rss: list[Obj]) -> None:
        new, olds, d = self._new_rs(d, rss, False)
        scaled = False
        for i, rs in enumerate(olds):
            if replicas(rs) > 0:
                s, olds[i] = self._scale_rs(d, rs, 0)
                scaled = scaled or s
        if scaled:
            self._sync_rollout(d, new, olds)
            return
        old_uids = {rs["metadata"]["uid"] for rs in olds}
        pods, *_ = self.store.list("v1/pods", d["metadata"]["namespace"], lambda p: any(
            r.get("uid") in old_uids for r in p["metadata"].get("ownerReferences") or []))
        if sum(_status_int(rs, "replicas") for rs in olds) > 0 or any(
                (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed") for p in pods):  # oldPodsRunning
            self._sync_rollout(d, new, olds)
            return
        if new is None:
            new, olds, d = self._new_rs(d, rss, True)
            if new is None:
                return
        if replicas(new) != replicas(d):
            _, new = self._scale_rs(d, new, replicas(d))
        status = self._status(d, new, olds)
        if self._complete(d, status):
            olds = self._cleanup(d, olds)
        self._sync_rollout(d, new, olds)

    def _cleanup(self, d: Obj, olds: list[Obj]) -> list[Obj]:
        """cleanupDeployment: empty old ReplicaSets beyond revisionHistoryLimit go, oldest revision first."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return olds
        cleanable = [rs for rs in olds if replicas(rs) == 0 and _status_int(rs, "replicas") == 0
                     and not rs["metadata"].get("deletionTimestamp")
                     and (rs.get("status") or {}).get("observedGeneration", 0) >= rs["metadata"].get("generation", 1)]
        diff = len(cleanable) - int(limit)
        if diff <= 0:
            return olds
        gone = set()
        for rs in sorted(cleanable, key=lambda r: (_revision(r), parse_time(r["metadata"].get("creationTimestamp")) or 0))[:diff]:
            try:
                delete_object(self.store, "apps/v1/replicasets", rs)
                gone.add(rs["metadata"]["uid"])
            except errors.APIError as exc:
                if exc.code != 404:
                    raise
        return [rs for rs in olds if rs["metadata"]["uid"] not in gone]

    # status -----------------------------------------------------------------------------------------------------
    def _status(self, d: Obj, new: Obj | None, olds: list[Obj]) -> Obj:
        """calculateStatus."""
        all_rss = [rs for rs in [new, *olds] if rs is not None]
        available = sum(_status_int(rs, "availableReplicas") for rs in all_rss)
        total = sum(replicas(rs) for rs in all_rss)
        old = d.get("status") or {}
        status: Obj = {"observedGeneration": d["metadata"].get("generation", 1),
                       "replicas": sum(_status_int(rs, "replicas") for rs in all_rss),
                       "updatedReplicas": _status_int(new, "replicas") if new else 0,
                       "readyReplicas": sum(_status_int(rs, "readyReplicas") for rs in all_rss),
                       "availableReplicas": available,
                       "unavailableReplicas": max(0, total - available)}
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        conds = list(old.get("conditions") or [])
        if available >= replicas(d) - max_unavailable(d):
            conds = _set_condition(conds, self._cond("Available", "True", "MinimumReplicasAvailable",
                                                     "Deployment has minimum availability."))
        else:
            conds = _set_condition(conds, self._cond("Available", "False", "MinimumReplicasUnavailable",
                                                     "Deployment does not have minimum availability."))
        status = _drop_zero(status)
        status["conditions"] = conds
        return status

    @staticmethod
    def _complete(d: Obj, status: Obj) -> bool:
        n = replicas(d)
        return (status.get("updatedReplicas", 0) == n and status.get("replicas", 0) == n
                and status.get("availableReplicas", 0) == n
                and status.get("observedGeneration", 0) >= d["metadata"].get("generation", 1))

    def _sync_status(self, d: Obj, new: Obj | None, olds: list[Obj]) -> None:
        status = self._status(d, new, olds)
        if status != d.get("status"):
            d["status"] = status
            self._write(d)

    def _sync_rollout(self, d: Obj, new: Obj | None, olds: list[Obj]) -> None:
        """syncRolloutStatus: the status, and the Progressing condition (complete, progressing, or timed out)."""
        status = self._status(d, new, olds)
        conds = status["conditions"]
        deadline = d["spec"].get("progressDeadlineSeconds")
        if deadline is None:
            conds = [c for c in conds if c["type"] != "Progressing"]
        cur = next((c for c in conds if c["type"] == "Progressing"), None)
        complete = (status.get("replicas", 0) == status.get("updatedReplicas", 0) and cur is not None
                    and cur.get("reason") == "NewReplicaSetAvailable")
        what = f'ReplicaSet "{new["metadata"]["name"]}"' if new else f'Deployment "{d["metadata"]["name"]}"'
        if deadline is not None and not complete:
            if self._complete(d, status):
                conds = _set_condition(conds, self._cond("Progressing", "True", "NewReplicaSetAvailable",
                                                         f"{what} has successfully progressed."))
            elif self._progressing(d, status):
                new_cond = self._cond("Progressing", "True", "ReplicaSetUpdated", f"{what} is progressing.")
                if cur is not None and cur.get("status") == "True":
                    new_cond["lastTransitionTime"] = cur.get("lastTransitionTime")
                conds = [c for c in conds if c["type"] != "Progressing"] + [new_cond]
            elif self._timed_out(d, cur):
                conds = _set_condition(conds, self._cond("Progressing", "False", "ProgressDeadlineExceeded",
                                                         f"{what} has timed out progressing."))
        status["conditions"] = conds
        if status != d.get("status"):
            d["status"] = status
            self._write(d)

    @staticmethod
    def _progressing(d: Obj, new: Obj) -> bool:
        old = d.get("status") or {}
        old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
        new_old = new.get("replicas", 0) - new.get("updatedReplicas", 0)
        return (new.get("updatedReplicas", 0) > old.get("updatedReplicas", 0) or new_old < old_old
                or new.get("readyReplicas", 0) > old.get("readyReplicas", 0)
                or new.get("availableReplicas", 0) > old.get("availableReplicas", 0))

    def _timed_out(self, d: Obj, cond: Obj | None) -> bool:
        if cond is None or cond.get("reason") == "NewReplicaSetAvailable":
            return False
        if cond.get("reason") == "ProgressDeadlineExceeded":
            return True
        since = parse_time(cond.get("lastUpdateTime"))
        return since is not None and since + int(d["spec"]["progressDeadlineSeconds"]) < self.store.clock()


# -- StatefulSets ---------------------------------------------------------------------------------------------

class StatefulSetController:
    """pkg/controller/statefulset, for one node: pods ``<name>-<ordinal>`` created in order (each waits for the one
    before to be Running and Ready under OrderedReady), removed from the highest ordinal, their claims from
    volumeClaimTemplates, ControllerRevisions, and rolling updates from the highest ordinal down to the partition."""

    key = "apps/v1/statefulsets"

    def __init__(self, store: Store, make_pod: Callable[[Obj, str], Obj]) -> None:
        self.store = store
        self.make_pod = make_pod
        self.events = Recorder(store, "statefulset-controller")
        self.admission = _admission(store)
        self._retry: dict[str, tuple[float, float]] = {}  # uid → (not before, delay) after a failed create

    def reconcile(self) -> None:
        sets, *_ = self.store.list(self.key)
        for sts in sets:
            try:
                self.sync(sts)
            except errors.APIError as exc:
                if exc.code not in (404, 409):  # (404, 409: gone or changed meanwhile; the next pass sees it anew)
                    log.warning("%s: %s", type(self).__name__, exc.message)
            except Exception:  # noqa: BLE001 - one broken object must not stop the other controllers' pass
                log.exception("%s failed", type(self).__name__)

    def _revision(self, sts: Obj) -> tuple[str, list[Obj]]:
        """The update revision's name (a ControllerRevision made when the template is new), and all revisions."""
        ns, uid = sts["metadata"]["namespace"], sts["metadata"]["uid"]
        revs, *_ = self.store.list("apps/v1/controllerrevisions", ns, lambda r: any(
            o.get("uid") == uid for o in r["metadata"].get("ownerReferences") or []))
        data = {"spec": {"template": {**copy.deepcopy(sts["spec"].get("template") or {}), "$patch": "replace"}}}
        for r in revs:
            if _normal(r.get("data")) == _normal(data):
                return r["metadata"]["name"], revs
        h = compute_hash(data, (sts.get("status") or {}).get("collisionCount"))
        rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
               "metadata": {"name": f"{sts['metadata']['name']}-{h}", "namespace": ns,
                            "labels": {**(((sts["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}),
                                       "controller.kubernetes.io/hash": h},
                            "ownerReferences": [owner_ref(sts)]},
               "data": data, "revision": max([int(r.get("revision", 0)) for r in revs] or [0]) + 1}
        created = self.store.create("apps/v1/controllerrevisions", rev)
        return created["metadata"]["name"], revs + [created]

    def _pod(self, sts: Obj, ordinal: int, revision: str) -> Obj:
        name = f"{sts['metadata']['name']}-{ordinal}"
        pod = self.make_pod(sts, "")
        pod["metadata"].pop("generateName", None)
        pod["metadata"]["name"] = name
        pod["metadata"]["labels"] = {**(pod["metadata"].get("labels") or {}), "controller-revision-hash": revision,
                                     "statefulset.kubernetes.io/pod-name": name, "apps.kubernetes.io/pod-index": str(ordinal)}
        pod["spec"]["hostname"] = name
        if sts["spec"].get("serviceName"):
            pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
        volumes = [vol for vol in pod["spec"].get("volumes") or []]
        for claim in sts["spec"].get("volumeClaimTemplates") or []:
            cname = claim["metadata"]["name"]
            volumes = [vol for vol in volumes if vol.get("name") != cname]
            volumes.append({"name": cname, "persistentVolumeClaim": {"claimName": f"{cname}-{name}"}})
        if volumes:
            pod["spec"]["volumes"] = volumes
        return pod

    def _claims(self, sts: Obj, pod_name: str) -> None:
        from .storage.api import default_pvc

        ns = sts["metadata"]["namespace"]
        for claim in sts["spec"].get("volumeClaimTemplates") or []:
            name = f"{claim['metadata']['name']}-{pod_name}"
            if self.store.try_get("v1/persistentvolumeclaims", ns, name) is not None:
                continue
            pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": name, "namespace": ns,
                                "labels": {**(((sts["spec"].get("selector") or {}).get("matchLabels")) or {}),
                                           **(claim["metadata"].get("labels") or {})},
                                "annotations": dict(claim["metadata"].get("annotations") or {})},
                   "spec": copy.deepcopy(claim.get("spec") or {})}
            if (sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted") == "Delete":
                pvc["metadata"]["ownerReferences"] = [{**owner_ref(sts), "controller": True}]
            default_pvc(pvc)
            self.store.create("v1/persistentvolumeclaims", pvc)
            self.events.event(sts, "Normal", "SuccessfulCreate",
                              f"create Claim {name} Pod {pod_name} in StatefulSet {sts['metadata']['name']} success")

    def sync(self, sts: Obj) -> None:
        ns, name, uid = sts["metadata"]["namespace"], sts["metadata"]["name"], sts["metadata"]["uid"]
        pods, *_ = self.store.list("v1/pods", ns, lambda p: any(
            r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or []))
        update_rev, revs = self._revision(sts)
        by_ordinal: dict[int, Obj] = {}
        for p in pods:
            suffix = p["metadata"]["name"][len(name) + 1:]
            if p["metadata"]["name"].startswith(name + "-") and suffix.isdigit():
                by_ordinal[int(suffix)] = p
        want = replicas(sts)
        ordered = sts["spec"].get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        now = self.store.clock()
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)

        def healthy(p: Obj) -> bool:
            return (p.get("status") or {}).get("phase") == "Running" and pod_ready(p) \
                and not p["metadata"].get("deletionTimestamp")

        not_before, delay = self._retry.get(uid, (0.0, 0.0))
        if not sts["metadata"].get("deletionTimestamp") and now >= not_before:
            if self._manage(sts, by_ordinal, want, ordered, update_rev, healthy):
                self._retry.pop(uid, None)
            else:
                delay = min(max(1.0, delay * 2), 300.0)
                self._retry[uid] = (now + delay, delay)
            pods, *_ = self.store.list("v1/pods", ns, lambda p: any(
                r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or []))
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        current_rev = (sts.get("status") or {}).get("currentRevision") or update_rev
        updated = sum((p["metadata"].get("labels") or {}).get("controller-revision-hash") == update_rev for p in live)
        if updated == len(live) == want:
            current_rev = update_rev
        status = {"observedGeneration": sts["metadata"].get("generation", 1), "replicas": len(live),
                  "readyReplicas": sum(pod_ready(p) for p in live),
                  "currentReplicas": sum((p["metadata"].get("labels") or {}).get("controller-revision-hash") == current_rev
                                         for p in live),
                  "updatedReplicas": updated, "currentRevision": current_rev, "updateRevision": update_rev,
                  "collisionCount": (sts.get("status") or {}).get("collisionCount", 0),
                  "availableReplicas": sum(pod_available(p, min_ready, now) for p in live)}
        status = _drop_zero(status, keep=("replicas", "availableReplicas", "collisionCount"))
        if status != sts.get("status"):
            sts["status"] = status
            self.store.update(self.key, sts)
        self._cleanup_revisions(sts, revs, {current_rev, update_rev} | {
            (p["metadata"].get("labels") or {}).get("controller-revision-hash", "") for p in pods})

    def _manage(self, sts: Obj, by_ordinal: dict[int, Obj], want: int, ordered: bool, update_rev: str,
                healthy: Callable[[Obj], bool]) -> bool:
        """One step of the set's pods; False when a pod could not be made."""
        name = sts["metadata"]["name"]
        # failed pods are deleted, to be made again
        for _, p in sorted(by_ordinal.items()):
            if (p.get("status") or {}).get("phase") == "Failed" and not p["metadata"].get("deletionTimestamp"):
                delete_object(self.store, "v1/pods", p)
                self.events.event(sts, "Normal", "SuccessfulDelete", f"delete Pod {p['metadata']['name']} in StatefulSet {name} successful")
                return True
        for i in range(want):
            p = by_ordinal.get(i)
            if p is None:
                pod = self._pod(sts, i, update_rev)
                try:
                    self._claims(sts, pod["metadata"]["name"])
                    self.admission.admit(pod, sts["metadata"]["namespace"])
                    self.store.create("v1/pods", pod)
                except errors.APIError as exc:
                    self.events.event(sts, "Warning", "FailedCreate", f"create Pod {pod['metadata']['name']} in "
                                      f"StatefulSet {name} failed error: {exc.message}")
                    return False
                self.events.event(sts, "Normal", "SuccessfulCreate", f"create Pod {pod['metadata']['name']} in StatefulSet {name} successful")
                if ordered:
                    return True
            elif ordered and not healthy(p):
                return True
        condemned = sorted((i for i in by_ordinal if i >= want), reverse=True)
        for i in condemned:
            p = by_ordinal[i]
            if p["metadata"].get("deletionTimestamp"):
                if ordered:
                    return True
                continue
            if ordered and any(not healthy(by_ordinal[j]) for j in by_ordinal if j < i):
                return True
            delete_object(self.store, "v1/pods", p)
            self.events.event(sts, "Normal", "SuccessfulDelete", f"delete Pod {p['metadata']['name']} in StatefulSet {name} successful")
            if ordered:
                return True
        us = sts["spec"].get("updateStrategy") or {}
        if us.get("type", "RollingUpdate") != "RollingUpdate" or condemned:
            return True
        partition = int((us.get("rollingUpdate") or {}).get("partition") or 0)
        live = {i: p for i, p in by_ordinal.items() if i < want}
        if any(not healthy(p) for p in live.values()):
            return True
        for i in sorted(live, reverse=True):
            if i < partition:
                break
            p = live[i]
            if (p["metadata"].get("labels") or {}).get("controller-revision-hash") != update_rev:
                delete_object(self.store, "v1/pods", p)
                self.events.event(sts, "Normal", "SuccessfulDelete", f"delete Pod {p['metadata']['name']} in StatefulSet {name} successful")
                return True
        return True

    def _cleanup_revisions(self, sts: Obj, revs: list[Obj], live: set[str]) -> None:
        limit = int(sts["spec"].get("revisionHistoryLimit", 10) or 0)
        spare = sorted((r for r in revs if r["metadata"]["name"] not in live), key=lambda r: int(r.get("revision", 0)))
        for r in spare[:max(0, len(spare) - limit)]:
            try:
                self.store.remove("apps/v1/controllerrevisions", r["metadata"]["namespace"], r["metadata"]["name"])
            except errors.APIError:
                pass


class Workloads:
    """The workload controllers in the order one pass runs them: Deployments scale their ReplicaSets, which make
    or delete pods in the same pass."""

    def __init__(self, store: Store, make_pod: Callable[[Obj, str], Obj]) -> None:
        self.deployments = DeploymentController(store)
        self.replicasets = ReplicaSetController(store, make_pod)
        self.rcs = ReplicationControllerController(store, make_pod)
        self.statefulsets = StatefulSetController(store, make_pod)

    def reconcile(self) -> None:
        self.replicasets.reconcile()
        self.deployments.reconcile()
        self.replicasets.reconcile()
        self.rcs.reconcile()
        self.statefulsets.reconcile()


class ReplicationControllerController(ReplicaSetController):
    """The replication manager: the ReplicaSet controller over v1 ReplicationControllers."""

    def __init__(self, store: Store, make_pod: Callable[[Obj, str], Obj]) -> None:
        super().__init__(store, make_pod, key="v1/replicationcontrollers", component="replication-controller")
