"""v1 ResourceQuota and LimitRange, as kube-apiserver admits and kube-controller-manager counts.

- ``usage(kind, group, obj)``: the quota evaluators (``pkg/quota/v1/evaluator/core``): a pod's ``pods``/
  ``count/pods``, ``requests.*``/``limits.*`` (cpu, memory, ephemeral-storage, extended resources; the larger of the
  containers' sum and any init container, plus overhead) while it is not terminal; a claim's
  ``persistentvolumeclaims`` and ``requests.storage`` (also per storage class); ``services``,
  ``services.nodeports``, ``services.loadbalancers``; ``configmaps``, ``secrets``, ``replicationcontrollers``,
  ``resourcequotas``; ``count/<resource>.<group>`` for every kind the lab serves.
- ``QuotaController``: each quota's ``status.hard`` (its spec) and ``status.used`` recounted from the store.
- ``admit_quota``: the ResourceQuota admission plugin on create: a pod must name requests/limits of what a quota
  limits (``failed quota: q: must specify limits.cpu for: c``), a create that would go beyond a quota is refused
  (``exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2``). The usage it adds to is counted from
  the store at that moment (upstream reads the quota's status, which the controller keeps equal to it).
- LimitRange: defaults as ``SetDefaults_LimitRangeItem``, validation, and the LimitRanger plugin on pod create
  (default limits and requests per container, the ``kubernetes.io/limit-ranger`` annotation, min/max/ratio checks).
"""

from __future__ import annotations

import copy
import logging
from decimal import Decimal
from typing import Any

from . import quantity
from . import validation as v
from .errors import APIError
from .store import Store

log = logging.getLogger("kperflab.lab.quota")
Obj = dict[str, Any]
QUOTAS = "v1/resourcequotas"
LIMIT_RANGES = "v1/limitranges"
POD_COMPUTE = ("cpu", "memory", "ephemeral-storage")
LEGACY_COUNTS = {("", "Service"): "services", ("", "ConfigMap"): "configmaps", ("", "Secret"): "secrets",
                 ("", "ReplicationController"): "replicationcontrollers", ("", "ResourceQuota"): "resourcequotas",
                 ("", "PersistentVolumeClaim"): "persistentvolumeclaims", ("", "Pod"): "pods"}
INTEGER_RESOURCES = {"pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
                     "persistentvolumeclaims", "services.nodeports", "services.loadbalancers"}
SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity",
          "VolumeAttributesClass")
POD_SCOPE_RESOURCES = {"pods", "count/pods", "cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu",
                       "limits.memory", "ephemeral-storage", "requests.ephemeral-storage", "limits.ephemeral-storage"}


# -- quantities -----------------------------------------------------------------------------------------------------

def fmt(value: Decimal, binary: bool = False) -> str:
    """A quantity as Quantity.String() canonicalises it (DecimalSI, or BinarySI for byte counts in Ki/Mi/…)."""
    if value == value.to_integral_value():
        n = int(value)
        if binary and n and n % 1024 == 0:
            return quantity.binary_si(n)
        for exp, suffix in ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k")):
            if n and n % 10 ** exp == 0:
                return f"{n // 10 ** exp}{suffix}"
        return str(n)
    for scale, suffix in ((3, "m"), (6, "u"), (9, "n")):
        scaled = value * 10 ** scale
        if scaled == scaled.to_integral_value():
            return f"{int(scaled)}{suffix}"
    return f"{int((value * 10 ** 9).to_integral_value(rounding='ROUND_CEILING'))}n"


def _binary(name: str) -> bool:
    return any(x in name for x in ("memory", "storage"))


def _q(value: Any) -> Decimal:
    try:
        return quantity.parse(value)
    except ValueError:
        return Decimal(0)


# -- usage ----------------------------------------------------------------------------------------------------------

def pod_counts(pod: Obj, now: float) -> bool:
    """QuotaV1Pod: terminal pods, and pods past their deletion grace, no longer count."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") is not None:
        from .tables import parse_time

        when = parse_time(meta["deletionTimestamp"])
        if when is not None and now > when + meta["deletionGracePeriodSeconds"]:
            return False
    return True


def pod_resources(pod: Obj, which: str) -> dict[str, Decimal]:
    """PodRequests/PodLimits: the containers' sum, at least any init container's, plus the pod's overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for c in spec.get("containers") or []:
        for k, val in (((c.get("resources") or {}).get(which)) or {}).items():
            total[k] = total.get(k, Decimal(0)) + _q(val)
    for c in spec.get("initContainers") or []:
        for k, val in (((c.get("resources") or {}).get(which)) or {}).items():
            total[k] = max(total.get(k, Decimal(0)), _q(val))
    for k, val in (spec.get("overhead") or {}).items():
        if k in total or which == "requests":
            total[k] = total.get(k, Decimal(0)) + _q(val)
    return total


def usage(kind: str, group: str, obj: Obj, plural: str, now: float) -> dict[str, Decimal]:
    """What one object adds to a quota's used."""
    out: dict[str, Decimal] = {}
    count_name = f"count/{plural}" + (f".{group}" if group else "")
    if kind == "Pod" and not group:  # PodUsageFunc: count/pods for every stored pod, the rest while it runs
        out["count/pods"] = Decimal(1)
        if not pod_counts(obj, now):
            return out
        out["pods"] = Decimal(1)
        for k, val in pod_resources(obj, "requests").items():  # podComputeUsageHelper
            if k in POD_COMPUTE or k.startswith("hugepages-"):
                out[f"requests.{k}"] = val
                out[k] = val
            elif "/" in k and not k.startswith(("kubernetes.io/", "requests.")):  # extended: requests.<name> only
                out[f"requests.{k}"] = val
        for k, val in pod_resources(obj, "limits").items():
            if k in POD_COMPUTE:
                out[f"limits.{k}"] = val
        return out
    out[count_name] = Decimal(1)
    legacy = LEGACY_COUNTS.get((group, kind))
    if legacy:
        out[legacy] = Decimal(1)
    spec = obj.get("spec") or {}
    if kind == "PersistentVolumeClaim" and not group:
        storage = _q(((spec.get("resources") or {}).get("requests") or {}).get("storage", 0))
        out["requests.storage"] = storage
        cls = spec.get("storageClassName")
        if cls:
            out[f"{cls}.storageclass.storage.k8s.io/requests.storage"] = storage
            out[f"{cls}.storageclass.storage.k8s.io/persistentvolumeclaims"] = Decimal(1)
    if kind == "Service" and not group:
        typ = spec.get("type") or "ClusterIP"
        if typ == "LoadBalancer":
            out["services.loadbalancers"] = Decimal(1)
        if typ in ("NodePort", "LoadBalancer"):
            out["services.nodeports"] = Decimal(len(spec.get("ports") or []))
    return out


def _best_effort(pod: Obj) -> bool:
    return v.qos_class(pod) == "BestEffort"


def _scope_matches(scope: str, pod: Obj, op: str = "Exists", values: list[str] | None = None) -> bool:
    spec = pod.get("spec") or {}
    terminating = isinstance(spec.get("activeDeadlineSeconds"), int) and spec["activeDeadlineSeconds"] >= 0
    if scope == "Terminating":
        return terminating
    if scope == "NotTerminating":
        return not terminating
    if scope == "BestEffort":
        return _best_effort(pod)
    if scope == "NotBestEffort":
        return not _best_effort(pod)
    if scope == "PriorityClass":
        name = spec.get("priorityClassName") or ""
        return {"In": name in (values or []), "NotIn": name not in (values or []), "Exists": bool(name),
                "DoesNotExist": not name}.get(op, False)
    return False


def quota_matches(quota: Obj, kind: str, group: str, obj: Obj) -> bool:
    """A scoped quota counts pods that match all its scopes (and nothing else)."""
    spec = quota.get("spec") or {}
    scopes = [(s, "Exists", None) for s in spec.get("scopes") or []]
    scopes += [(e.get("scopeName"), e.get("operator", "Exists"), e.get("values"))
               for e in (spec.get("scopeSelector") or {}).get("matchExpressions") or []]
    if not scopes:
        return True
    if kind != "Pod" or group:
        return False
    return all(_scope_matches(s, obj, op, vals) for s, op, vals in scopes)


def _counted_types() -> list[Any]:
    from .resources import TYPES

    return [t for t in TYPES if t.namespaced and "create" in t.verbs and "list" in t.verbs and not t.key.startswith("events")
            and getattr(t, "storage", "") == ""]


def used(store: Store, quota: Obj, hard: dict[str, Any]) -> dict[str, Decimal]:
    """The quota controller's recount over the namespace, for the resources the quota limits."""
    ns = quota["metadata"]["namespace"]
    now = store.clock()
    total = {k: Decimal(0) for k in hard}
    wanted = set(hard)
    for t in _counted_types():
        count_name = f"count/{t.plural}" + (f".{t.group}" if t.group else "")
        relevant = count_name in wanted or LEGACY_COUNTS.get((t.group, t.kind)) in wanted or (
            t.kind in ("Pod", "PersistentVolumeClaim", "Service") and not t.group)
        if not relevant:
            continue
        items, *_ = store.list(t.key, ns)
        for it in items:
            if not quota_matches(quota, t.kind, t.group, it):
                continue
            for k, val in usage(t.kind, t.group, it, t.plural, now).items():
                if k in total:
                    total[k] += val
    return total


class QuotaController:
    """kube-controller-manager's resourcequota controller: status.hard and status.used of every quota."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def reconcile(self) -> None:
        quotas, *_ = self.store.list(QUOTAS)
        for q in quotas:
            try:
                hard = dict((q.get("spec") or {}).get("hard") or {})
                counted = used(self.store, q, hard)
                status = {"hard": hard, "used": {k: fmt(val, _binary(k)) for k, val in counted.items()}}
                if status != q.get("status"):
                    fresh = copy.deepcopy(q)
                    fresh["status"] = status
                    self.store.update(QUOTAS, fresh)
            except APIError as exc:
                if exc.code not in (404, 409):
                    log.warning("quota %s: %s", q["metadata"]["name"], exc.message)
            except Exception:  # noqa: BLE001
                log.exception("quota %s failed", q["metadata"].get("name"))


def _forbidden(resource: str, name: str, why: str) -> APIError:
    return APIError(403, "Forbidden", f'{resource} "{name}" is forbidden: {why}', details={"name": name, "kind": resource})


def _pretty(values: dict[str, Decimal]) -> str:
    return ",".join(f"{k}={fmt(values[k], _binary(k))}" for k in sorted(values))


def _missing(pod: Obj, limited: set[str]) -> str:
    """The pod evaluator's Constraints: every container names each request/limit a quota limits."""
    required = limited & {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
    missing: dict[str, set[str]] = {}
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        for r in required:
            which, _, name = r.rpartition(".")
            have = (res.get("limits") if which == "limits" else res.get("requests")) or {}
            if (name or r) not in have:
                missing.setdefault(r, set()).add(c.get("name", ""))
    if not missing:
        return ""
    return "must specify " + "; ".join(f"{r} for: {','.join(sorted(missing[r]))}" for r in sorted(missing))


def admit_quota(store: Store, kind: str, group: str, obj: Obj, namespace: str, dry_run: bool = False) -> None:
    """The ResourceQuota plugin on create (403 in upstream's words)."""
    quotas, *_ = store.list(QUOTAS, namespace)
    if not quotas:
        return
    from .resources import TYPES

    rtype = next((t for t in TYPES if t.kind == kind and t.group == group and getattr(t, "storage", "") == ""), None)
    if rtype is None:
        return
    plural = rtype.plural
    name = obj["metadata"].get("name") or obj["metadata"].get("generateName", "")
    requested = usage(kind, group, obj, plural, store.clock())
    matching = [q for q in sorted(quotas, key=lambda q: q["metadata"]["name"]) if quota_matches(q, kind, group, obj)]
    if kind == "Pod" and not group:
        for q in matching:
            why = _missing(obj, set((q.get("spec") or {}).get("hard") or {}))
            if why:
                raise _forbidden(plural, name, f"failed quota: {q['metadata']['name']}: {why}")
    for q in matching:
        hard = {k: _q(val) for k, val in ((q.get("spec") or {}).get("hard") or {}).items()}
        asked = {k: val for k, val in requested.items() if k in hard}
        if not asked:
            continue
        now_used = used(store, q, hard)
        exceeded = [k for k, val in asked.items() if now_used.get(k, Decimal(0)) + val > hard[k]]
        if exceeded:
            raise _forbidden(plural, name, f"exceeded quota: {q['metadata']['name']}, requested: "
                                           f"{_pretty({k: asked[k] for k in exceeded})}, used: "
                                           f"{_pretty({k: now_used.get(k, Decimal(0)) for k in exceeded})}, limited: "
                                           f"{_pretty({k: hard[k] for k in exceeded})}")


def validate_quota(obj: Obj) -> list[v.Cause]:
    """ValidateResourceQuota: resource names, non-negative (integral where counted) quantities, scopes."""
    out = v.metadata(obj.get("metadata"), namespaced=True)
    spec = obj.get("spec") or {}
    hard = spec.get("hard") or {}
    if not isinstance(hard, dict):
        return out + [v.invalid_value("spec.hard", "…", "must be a map of quantities")]
    for k, val in hard.items():
        f = f"spec.hard[{k}]"
        if not k.startswith("count/"):
            out += v.qualified_name(f"spec.hard[{k}]", k)
        try:
            q = quantity.parse(val)
        except ValueError:
            out.append(v.invalid_value(f, val, "quantities must match the regular expression "
                                                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
            continue
        if q < 0:
            out.append(v.invalid_value(f, str(val), "must be a valid resource quantity"))
            out.append(v.invalid_value(f, str(val), "must be greater than or equal to 0"))
        elif (k in INTEGER_RESOURCES or k.startswith("count/")) and q != q.to_integral_value():
            out.append(v.invalid_value(f, str(val), "must be an integer"))
    scopes = list(spec.get("scopes") or [])
    for s in scopes:
        if s not in SCOPES:
            out.append(v.invalid_value("spec.scopes", s, "unsupported scope"))
    sel_scopes = [e.get("scopeName") for e in (spec.get("scopeSelector") or {}).get("matchExpressions") or []
                  if isinstance(e, dict)]
    for i, s in enumerate(sel_scopes):
        if s not in SCOPES:
            out.append(v.invalid_value(f"spec.scopeSelector.matchExpressions[{i}].scopeName", s, "unsupported scope"))
    every = set(scopes) | set(sel_scopes)
    if {"BestEffort", "NotBestEffort"} <= every or {"Terminating", "NotTerminating"} <= every:
        out.append(v.invalid_value("spec.scopes", scopes, "conflicting scopes"))
    if every & {"Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass"}:
        allowed = POD_SCOPE_RESOURCES if not every & {"BestEffort"} else {"pods", "count/pods"}
        for k in hard:
            if k not in allowed:
                out.append(v.invalid_value("spec.hard", k, "unsupported scope applied to resource"))
    return out


def prepare_quota(obj: Obj) -> None:
    obj.pop("status", None)


# -- LimitRange -----------------------------------------------------------------------------------------------------

def default_limitrange(obj: Obj) -> None:
    """SetDefaults_LimitRangeItem: for Container items, default ← max, defaultRequest ← default, then ← min."""
    for item in ((obj.get("spec") or {}).get("limits") or []):
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        default = item.get("default") or {}
        request = item.get("defaultRequest") or {}
        if not isinstance(default, dict) or not isinstance(request, dict):
            continue
        for k, val in (item.get("max") or {}).items():
            default.setdefault(k, val)
        for k, val in default.items():
            request.setdefault(k, val)
        for k, val in (item.get("min") or {}).items():
            request.setdefault(k, val)
        for key, values in (("default", default), ("defaultRequest", request)):
            if values:  # an empty ResourceList is omitted when written out
                item[key] = values


def validate_limitrange(obj: Obj) -> list[v.Cause]:
    out = v.metadata(obj.get("metadata"), namespaced=True)
    items = (obj.get("spec") or {}).get("limits")
    if not isinstance(items, list):
        return out + [v.cause("spec.limits", "Required value", "")]
    for i, item in enumerate(items):
        f = f"spec.limits[{i}]"
        if not isinstance(item, dict):
            out.append(v.invalid_value(f, "…", "must be an object"))
            continue
        typ = item.get("type")
        if typ not in ("Pod", "Container", "PersistentVolumeClaim"):
            out.append(v.not_supported(f"{f}.type", typ, ("Container", "PersistentVolumeClaim", "Pod")))
        if typ == "Pod":
            for key in ("default", "defaultRequest"):
                for k in item.get(key) or {}:
                    out.append(v.cause(f"{f}.{key}[{k}]", "Forbidden", "may not be specified when `type` is 'Pod'"))
        parsed: dict[str, dict[str, Decimal]] = {}
        for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
            for k, val in (item.get(key) or {}).items():
                try:
                    parsed.setdefault(key, {})[k] = quantity.parse(val)
                except ValueError:
                    out.append(v.invalid_value(f"{f}.{key}[{k}]", val, "quantities must match the regular expression "
                                                                       "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
        mx, mn, de, dr = (parsed.get(k, {}) for k in ("max", "min", "default", "defaultRequest"))
        raw = {k: item.get(k) or {} for k in ("max", "min", "default", "defaultRequest")}
        for k in set(mx) | set(mn) | set(de) | set(dr):
            if k in mn and k in mx and mn[k] > mx[k]:
                out.append(v.invalid_value(f"{f}.min[{k}]", raw["min"][k], f"min value {raw['min'][k]} is greater than max value {raw['max'][k]}"))
            if k in dr and k in mn and mn[k] > dr[k]:
                out.append(v.invalid_value(f"{f}.defaultRequest[{k}]", raw["defaultRequest"][k], f"min value {raw['min'][k]} is greater than default request value {raw['defaultRequest'][k]}"))
            if k in dr and k in mx and dr[k] > mx[k]:
                out.append(v.invalid_value(f"{f}.defaultRequest[{k}]", raw["defaultRequest"][k], f"default request value {raw['defaultRequest'][k]} is greater than max value {raw['max'][k]}"))
            if k in dr and k in de and dr[k] > de[k]:
                out.append(v.invalid_value(f"{f}.defaultRequest[{k}]", raw["defaultRequest"][k], f"default request value {raw['defaultRequest'][k]} is greater than default limit value {raw['default'][k]}"))
            if k in de and k in mx and de[k] > mx[k]:
                out.append(v.invalid_value(f"{f}.default[{k}]", raw["default"][k], f"default value {raw['default'][k]} is greater than max value {raw['max'][k]}"))
            if k in de and k in mn and mn[k] > de[k]:
                out.append(v.invalid_value(f"{f}.default[{k}]", raw["default"][k], f"min value {raw['min'][k]} is greater than default value {raw['default'][k]}"))
    return out


def admit_limit_ranges(store: Store, pod: Obj, namespace: str) -> None:
    """The LimitRanger plugin on a pod create (PodLimitFunc per LimitRange, by name; the first one refusing
    answers): the Container items' defaults merged into every (init) container and said in the
    ``kubernetes.io/limit-ranger`` annotation, then min/max/maxLimitRequestRatio per Container and per Pod."""
    ranges, *_ = store.list(LIMIT_RANGES, namespace)
    spec = pod.setdefault("spec", {})
    for lr in sorted(ranges, key=lambda r: r["metadata"]["name"]):
        items = [i for i in (lr.get("spec") or {}).get("limits") or [] if isinstance(i, dict)]
        default_req: Obj = {}
        default_lim: Obj = {}
        for item in items:
            if item.get("type") == "Container":
                default_req.update(item.get("defaultRequest") or {})
                default_lim.update(item.get("default") or {})
        said: list[str] = []
        for group, label in (("containers", "container"), ("initContainers", "init container")):
            for c in spec.get(group) or []:
                res = c.setdefault("resources", {})
                set_lim = sorted(k for k in default_lim if k not in (res.get("limits") or {}))
                set_req = sorted(k for k in default_req if k not in (res.get("requests") or {}))
                for k in set_lim:
                    res.setdefault("limits", {})[k] = default_lim[k]
                for k in set_req:
                    res.setdefault("requests", {})[k] = default_req[k]
                if set_req:
                    said.append(f"{', '.join(set_req)} request for {label} {c.get('name', '')}")
                if set_lim:
                    said.append(f"{', '.join(set_lim)} limit for {label} {c.get('name', '')}")
        if said:
            pod["metadata"].setdefault("annotations", {})["kubernetes.io/limit-ranger"] = \
                "LimitRanger plugin set: " + "; ".join(said)
        problems: list[str] = []
        for item in items:
            typ = item.get("type")
            if typ == "Container":
                for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
                    res = c.get("resources") or {}
                    problems += _check(item, typ, res.get("requests") or {}, res.get("limits") or {})
            elif typ == "Pod":
                problems += _check(item, typ, *_pod_totals(spec))
        if problems:
            name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
            raise _forbidden("pods", name, problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]")


def _pod_totals(spec: Obj) -> tuple[Obj, Obj]:
    """The Pod item's view: each resource summed over the containers that all name it (as DecimalSI, cpu in
    millicores), at least any init container's."""
    out = []
    for which in ("requests", "limits"):
        lists = [((c.get("resources") or {}).get(which) or {}) for c in spec.get("containers") or []]
        keys = {k for r in lists for k in r}
        total: Obj = {k: fmt(sum((_q(r[k]) for r in lists), Decimal(0))) for k in keys if all(k in r for r in lists)}
        for c in spec.get("initContainers") or []:
            for k, val in (((c.get("resources") or {}).get(which)) or {}).items():
                if k not in total or _q(val) > _q(total[k]):
                    total[k] = val
        out.append(total)
    return out[0], out[1]


def _check(item: Obj, typ: str, req: Obj, lim: Obj) -> list[str]:
    """minConstraint, maxConstraint, limitRequestRatioConstraint (in resource name order)."""
    out = []

    def s(x: Any) -> str:
        return fmt(_q(x), isinstance(x, str) and x.endswith("i"))

    for k, val in sorted((item.get("min") or {}).items()):
        if k not in req:
            out.append(f"minimum {k} usage per {typ} is {s(val)}.  No request is specified.")
        elif _q(req[k]) < _q(val):
            out.append(f"minimum {k} usage per {typ} is {s(val)}, but request is {s(req[k])}.")
        elif k in lim and _q(lim[k]) < _q(val):
            out.append(f"minimum {k} usage per {typ} is {s(val)}, but limit is {s(lim[k])}.")
    for k, val in sorted((item.get("max") or {}).items()):
        if k not in lim:
            out.append(f"maximum {k} usage per {typ} is {s(val)}.  No limit is specified.")
        elif _q(lim[k]) > _q(val):
            out.append(f"maximum {k} usage per {typ} is {s(val)}, but limit is {s(lim[k])}.")
        elif k in req and _q(req[k]) > _q(val):
            out.append(f"maximum {k} usage per {typ} is {s(val)}, but request is {s(req[k])}.")
    for k, val in sorted((item.get("maxLimitRequestRatio") or {}).items()):
        if not _q(req.get(k, 0)):
            out.append(f"{k} max limit to request ratio per {typ} is {s(val)}, but no request is specified or request is 0.")
        elif not _q(lim.get(k, 0)):
            out.append(f"{k} max limit to request ratio per {typ} is {s(val)}, but no limit is specified or limit is 0.")
        elif _q(lim[k]) / _q(req[k]) > _q(val):
            out.append(f"{k} max limit to request ratio per {typ} is {s(val)}, but provided ratio is "
                       f"{float(_q(lim[k]) / _q(req[k])):f}.")
    return out
