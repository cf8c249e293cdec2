"""Disruption budgets and priorities, as kube-apiserver and kube-controller-manager keep them.

- policy/v1 PodDisruptionBudget: validation (``pkg/apis/policy/validation``) and the disruption controller's status
  (``pkg/controller/disruption``: expectedPods from the pods' controllers' scale, or the pods themselves for an
  integer minAvailable; currentHealthy = ready pods not being deleted; disruptionsAllowed; the DisruptionAllowed
  condition with SufficientPods/InsufficientPods; disruptedPods kept for two minutes).
- The Eviction subresource (``pkg/registry/core/pod/storage/eviction.go``): a pod covered by one budget is deleted
  only while the budget allows a disruption (429 TooManyRequests with the DisruptionBudget cause otherwise), the
  budget's allowance spent at once; terminal and pending pods need no budget; two budgets are a 500 as upstream.
- scheduling.k8s.io/v1 PriorityClass: the two system classes kube-apiserver creates at start, validation, the
  Priority admission plugin (one globalDefault; pods get ``spec.priority``/``preemptionPolicy`` from their class, 403
  ``no PriorityClass with name x was found``).
- ``admit``: the admission chain the lab adds to every create after the ServiceAccount step: Priority and
  LimitRanger (mutating), then PodSecurity (``podsecurity``: pods refused, workloads and namespaces warned) and
  ResourceQuota (``quota``); ``admit_update`` is the part of it that checks updates (Priority, PodSecurity).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import weakref
from typing import Any

from . import errors
from . import validation as v
from .deployments import _label_selector, format_selector, selector_matches
from .errors import APIError
from .events import Recorder
from .store import Store, rfc3339

log = logging.getLogger("kperflab.lab.policy")
Obj = dict[str, Any]
PDBS = "policy/v1/poddisruptionbudgets"
PRIORITY_CLASSES = "scheduling.k8s.io/v1/priorityclasses"
HIGHEST_USER_PRIORITY = 1_000_000_000
SYSTEM_CLASSES = {  # name → (value, description), as kube-apiserver's scheduling post-start hook makes them
    "system-node-critical": (2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
    "system-cluster-critical": (2_000_000_000, "Used for system critical pods that must run in the cluster, but are moved "
                                               "to another node if necessary."),
}
DELETION_TIMEOUT = 120  # the disruption controller forgets a disrupted pod that was not deleted after 2 minutes
_PERCENT = re.compile(r"[0-9]+%")
_PERCENT_MSG = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
                "regex used for validation is '[0-9]+%')")


# -- PodDisruptionBudget ------------------------------------------------------------------------------------------

def _int_or_percent(field: str, value: Any) -> list[v.Cause]:
    """ValidatePositiveIntOrPercent + IsNotMoreThan100Percent."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return [v.invalid_value(field, value, "must be an integer or percentage (e.g '5%')")]
    if isinstance(value, int):
        return [v.invalid_value(field, value, "must be greater than or equal to 0")] if value < 0 else []
    if not _PERCENT.fullmatch(value):
        return [v.invalid_value(field, value, _PERCENT_MSG)]
    if int(value[:-1]) > 100:
        return [v.invalid_value(field, value, "must not be greater than 100%")]
    return []


def validate_pdb(obj: Obj) -> list[v.Cause]:
    out = v.metadata(obj.get("metadata"), namespaced=True)
    spec = obj.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return out + [v.invalid_value("spec", "…", "must be an object")]
    lo, hi = spec.get("minAvailable"), spec.get("maxUnavailable")
    if lo is not None and hi is not None:
        out.append(v.invalid_value("spec", _go_spec(spec), "minAvailable and maxUnavailable cannot be both set"))
    if lo is not None:
        out += _int_or_percent("spec.minAvailable", lo)
    if hi is not None:
        out += _int_or_percent("spec.maxUnavailable", hi)
    if spec.get("selector") is not None:
        out += _label_selector("spec.selector", spec["selector"])
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("IfHealthyBudget", "AlwaysAllow"):
        out.append(v.not_supported("spec.unhealthyPodEvictionPolicy", policy, ("AlwaysAllow", "IfHealthyBudget")))
    return out


def _go_spec(spec: Obj) -> str:
    def ios(x: Any) -> str:
        return "nil" if x is None else f'"{x}"' if isinstance(x, str) else str(x)
    return (f"policy.PodDisruptionBudgetSpec{{MinAvailable:{ios(spec.get('minAvailable'))}, Selector:"
            f"{format_selector(spec.get('selector'))}, MaxUnavailable:{ios(spec.get('maxUnavailable'))}}}")


def prepare_pdb(obj: Obj) -> None:
    """PrepareForCreate: the status starts empty (its integers as zeros)."""
    obj["status"] = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}


def scaled(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, int):
        return value
    pct = int(str(value).rstrip("%"))
    return math.ceil(pct * total / 100) if round_up else math.floor(pct * total / 100)


def pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _controller(pod: Obj) -> Obj | None:
    return next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


class DisruptionController:
    """kube-controller-manager's disruption controller: each budget's status from the pods it selects."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events = Recorder(store, "controllermanager")
        self._said: set[tuple[str, str]] = set()

    def reconcile(self) -> None:
        pdbs, *_ = self.store.list(PDBS)
        for pdb in pdbs:
            if pdb["metadata"].get("deletionTimestamp"):
                continue
            try:
                self.sync(pdb)
            except APIError as exc:
                if exc.code not in (404, 409):
                    log.warning("pdb %s: %s", pdb["metadata"]["name"], exc.message)
            except Exception:  # noqa: BLE001
                log.exception("pdb %s failed", pdb["metadata"].get("name"))

    def pods_of(self, pdb: Obj) -> list[Obj]:
        sel = (pdb.get("spec") or {}).get("selector")
        if sel is None:  # policy/v1: a null selector selects no pods, an empty one all of them
            return []
        pods, *_ = self.store.list("v1/pods", pdb["metadata"]["namespace"],
                                   lambda p: selector_matches(sel, p["metadata"].get("labels")))
        return pods

    def _say_once(self, pdb: Obj, type_: str, reason: str, message: str) -> None:
        if (pdb["metadata"]["uid"], message) not in self._said:
            self._said.add((pdb["metadata"]["uid"], message))
            self.events.event(pdb, type_, reason, message)

    def expected(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int]:
        """getExpectedPodCount → (expectedCount, desiredHealthy); APIError-free ValueError when a controller's scale
        cannot be read."""
        spec = pdb.get("spec") or {}
        lo, hi = spec.get("minAvailable"), spec.get("maxUnavailable")
        if hi is not None:
            count = self._scale(pdb, pods)
            return count, max(0, count - scaled(hi, count, True))
        if lo is not None:
            if isinstance(lo, int):
                return len(pods), lo
            count = self._scale(pdb, pods)
            return count, scaled(lo, count, True)
        return 0, 0

    def _scale(self, pdb: Obj, pods: list[Obj]) -> int:
        """getExpectedScale: the sum of the desired replicas of the pods' (top) controllers; pods without a
        controller are unmanaged (said in an event), a controller the lab cannot scale is an error."""
        seen: dict[str, int] = {}
        unmanaged = []
        for pod in pods:
            ref = _controller(pod)
            if ref is None:
                unmanaged.append(pod["metadata"]["name"])
                continue
            found = self._controller_scale(ref, pod["metadata"]["namespace"])
            if found is None:
                raise ValueError(f'found no controllers for pod "{pod["metadata"]["name"]}"')
            seen[found[0]] = found[1]
        if unmanaged:
            self._say_once(pdb, "Normal", "UnmanagedPods", "Pods selected by this PodDisruptionBudget (selector: "
                           f"{format_selector(pdb['spec'].get('selector'))}) were found to be unmanaged. As a result, the "
                           "status of the PDB cannot be calculated correctly, which may result in undefined behavior. To "
                           "account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.")
        return sum(seen.values())

    def _controller_scale(self, ref: Obj, ns: str) -> tuple[str, int] | None:
        kind, name = ref.get("kind"), ref.get("name", "")
        keys = {"ReplicaSet": "apps/v1/replicasets", "ReplicationController": "v1/replicationcontrollers",
                "StatefulSet": "apps/v1/statefulsets", "Deployment": "apps/v1/deployments"}
        if kind not in keys:
            return None
        obj = self.store.try_get(keys[kind], ns, name)
        if obj is None or obj["metadata"]["uid"] != ref.get("uid"):
            return None
        if kind == "ReplicaSet":  # a Deployment's ReplicaSet counts as its Deployment
            up = _controller(obj)
            if up and up.get("kind") == "Deployment":
                dep = self._controller_scale(up, ns)
                if dep is not None:
                    return dep
        return obj["metadata"]["uid"], int((obj.get("spec") or {}).get("replicas", 1) or 0)

    def sync(self, pdb: Obj) -> None:
        pods = self.pods_of(pdb)
        now = self.store.clock()
        status = copy.deepcopy(pdb.get("status") or {})
        generation = pdb["metadata"].get("generation", 1)
        try:
            expected, desired = self.expected(pdb, pods)
        except ValueError as exc:
            self._say_once(pdb, "Warning", "CalculateExpectedPodCountFailed",
                           f"Failed to calculate the number of expected pods: {exc}")
            status.update({"disruptionsAllowed": 0, "observedGeneration": generation})
            self._condition(status, "False", "SyncFailed", str(exc), generation, now)
            return self._write(pdb, status)
        disrupted = {}
        names = {p["metadata"]["name"]: p for p in pods}
        for name, ts in (status.get("disruptedPods") or {}).items():
            pod = names.get(name)
            when = _epoch(ts)
            if pod is None or pod["metadata"].get("deletionTimestamp") or when is None or when + DELETION_TIMEOUT < now:
                continue
            disrupted[name] = ts
        healthy = sum(1 for p in pods if not p["metadata"].get("deletionTimestamp") and p["metadata"]["name"] not in disrupted
                      and pod_ready(p))
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            allowed = 0
        status.update({"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired,
                       "expectedPods": expected, "observedGeneration": generation})
        if disrupted:
            status["disruptedPods"] = disrupted
        else:
            status.pop("disruptedPods", None)
        if allowed > 0:
            self._condition(status, "True", "SufficientPods", "", generation, now)
        else:
            self._condition(status, "False", "InsufficientPods", "", generation, now)
        self._write(pdb, status)

    @staticmethod
    def _condition(status: Obj, state: str, reason: str, message: str, generation: int, now: float) -> None:
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"]
        old = next((c for c in status.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
        since = old["lastTransitionTime"] if old and old.get("status") == state else rfc3339(now)
        conds.append({"type": "DisruptionAllowed", "status": state, "observedGeneration": generation,
                      "lastTransitionTime": since, "reason": reason, "message": message})
        status["conditions"] = conds

    def _write(self, pdb: Obj, status: Obj) -> None:
        if status != pdb.get("status"):
            fresh = copy.deepcopy(pdb)
            fresh["status"] = status
            self.store.update(PDBS, fresh)


def _epoch(ts: str | None) -> float | None:
    from .tables import parse_time

    return parse_time(ts)


# -- Eviction -----------------------------------------------------------------------------------------------------

EVICTION_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def _too_many(message: str, retry_after: int = 0) -> APIError:
    """errors.NewTooManyRequests(EVICTION_REFUSED, retry_after) with the DisruptionBudget cause."""
    details: Obj = {"causes": [{"reason": "DisruptionBudget", "message": message}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return APIError(429, "TooManyRequests", EVICTION_REFUSED, details=details)


def _denied(pdb: Obj) -> str:
    """disruptionDeniedMessage: why a budget with no disruption left refuses."""
    st, name = pdb.get("status") or {}, pdb["metadata"]["name"]
    cond = next((c for c in st.get("conditions") or [] if c.get("type") == "DisruptionAllowed"), None)
    failed = cond is not None and cond.get("status") == "False" and cond.get("message")
    if failed and cond.get("reason") == "SyncFailed":
        return f"The disruption budget {name} does not allow evicting pods currently because it failed sync: {cond['message']}"
    if st.get("currentHealthy", 0) <= st.get("desiredHealthy", 0):
        return (f"The disruption budget {name} needs {st.get('desiredHealthy', 0)} healthy pods and has "
                f"{st.get('currentHealthy', 0)} currently")
    if failed:
        return f"The disruption budget {name} does not allow evicting pods currently ({cond.get('reason')}): {cond['message']}"
    return f"The disruption budget {name} does not allow evicting pods currently"


def evict(api: Any, req: Any, namespace: str, name: str, body: Any) -> Any:
    """POST pods/<name>/eviction (policy/v1 or v1beta1 Eviction): check the budget, spend one disruption, delete the
    pod with the eviction's DeleteOptions. Answers a Success Status (201) as upstream."""
    from .apiserver import Request, Response

    if req.method != "POST":
        raise errors.method_not_allowed()
    if not isinstance(body, dict):
        raise errors.bad_request("the body must be an Eviction object")
    if body.get("kind") not in (None, "", "Eviction") or body.get("apiVersion") not in (None, "", "policy/v1", "policy/v1beta1"):
        raise errors.bad_request(f"the kind in the data ({body.get('kind')}) does not match the expected kind (Eviction)")
    meta = body.get("metadata") or {}
    if meta.get("name") and meta["name"] != name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    opts = body.get("deleteOptions") or {}
    if not isinstance(opts, dict):
        raise errors.bad_request("deleteOptions must be an object")
    store: Store = api.store
    pod = store.get("v1/pods", namespace, name, "pods")
    dry_run = req.q("dryRun") == "All" or "All" in (opts.get("dryRun") or [])
    phase = (pod.get("status") or {}).get("phase")
    if not (phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get("deletionTimestamp")):
        try:
            _check_budget(store, pod, dry_run)
        except APIError as exc:
            retry = (exc.details or {}).get("retryAfterSeconds")  # the Retry-After header kube-apiserver sends
            if exc.code == 429 and retry:
                return Response(429, exc.status(), headers={"Retry-After": str(retry)})
            raise
    if not dry_run:  # DisruptionTarget, then the pod deleted with the eviction's DeleteOptions, as a DELETE would
        from .resources import BY_KEY

        _disruption_target(store, pod)

        sub = Request("DELETE", req.path.rsplit("/", 1)[0], {}, {"content-type": "application/json"},
                      json.dumps(opts).encode() if opts else b"", req.user)
        api._delete(sub, BY_KEY["v1/pods"], namespace, name)
    return Response(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})


def _check_budget(store: Store, pod: Obj, dry_run: bool) -> None:
    ns = pod["metadata"]["namespace"]
    labels = pod["metadata"].get("labels") or {}
    pdbs, *_ = store.list(PDBS, ns, lambda b: (b.get("spec") or {}).get("selector") is not None
                          and selector_matches(b["spec"]["selector"], labels))
    if not pdbs:
        return
    if len(pdbs) > 1:
        raise APIError(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the eviction "
                                             "subresource does not support.")
    pdb = pdbs[0]
    st = pdb.get("status") or {}
    pname = pdb["metadata"]["name"]
    if st.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
        raise _too_many(f"The disruption budget {pname} is still being processed by the server.", 10)
    if not pod_ready(pod):  # an unhealthy pod: by the budget's unhealthyPodEvictionPolicy
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
        if policy == "AlwaysAllow" or st.get("currentHealthy", 0) >= st.get("desiredHealthy", 0) > 0:
            return
    allowed = st.get("disruptionsAllowed", 0)
    if allowed < 0:
        raise _forbidden("poddisruptionbudget.policy", pname, "pdb disruptions allowed is negative")
    if len(st.get("disruptedPods") or {}) > 2000:
        raise _forbidden("poddisruptionbudget.policy", pname,
                         "DisruptedPods map too big - too many evictions not confirmed by PDB controller")
    if allowed == 0:
        raise _too_many(_denied(pdb))
    if dry_run:
        return
    fresh = copy.deepcopy(pdb)
    fresh["status"] = {**st, "disruptionsAllowed": allowed - 1,
                       "disruptedPods": {**(st.get("disruptedPods") or {}), pod["metadata"]["name"]: rfc3339(store.clock())}}
    if allowed - 1 == 0:  # UpdateDisruptionAllowedCondition
        DisruptionController._condition(fresh["status"], "False", "InsufficientPods", "",
                                         st.get("observedGeneration", 0), store.clock())
    try:
        store.update(PDBS, fresh)  # optimistic: a budget spent meanwhile is a conflict, as upstream retries it
    except APIError as exc:
        if exc.code == 409:
            raise _too_many(f"The disruption budget {pname} is still being processed by the server.") from None
        raise


def _disruption_target(store: Store, pod: Obj) -> None:
    """The DisruptionTarget condition an eviction gives the pod before deleting it (PodDisruptionConditions)."""
    fresh = copy.deepcopy(pod)
    conds = (fresh.setdefault("status", {}).get("conditions")) or []
    old = next((c for c in conds if c.get("type") == "DisruptionTarget"), None)
    since = old["lastTransitionTime"] if old and old.get("status") == "True" else rfc3339(store.clock())
    fresh["status"]["conditions"] = [c for c in conds if c.get("type") != "DisruptionTarget"] + [{
        "type": "DisruptionTarget", "status": "True", "lastProbeTime": None, "lastTransitionTime": since,
        "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}]
    try:
        store.update("v1/pods", fresh, check_rv=False)
    except APIError:
        pass


# -- PriorityClass ------------------------------------------------------------------------------------------------

def default_priorityclass(obj: Obj) -> None:
    obj.setdefault("preemptionPolicy", "PreemptLowerPriority")


def validate_priorityclass(obj: Obj) -> list[v.Cause]:
    meta = obj.get("metadata")
    out = v.metadata(meta, namespaced=False)
    name = meta.get("name") if isinstance(meta, dict) else None
    value = obj.get("value", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        return out + [v.invalid_value("value", value, "must be an integer")]
    if isinstance(name, str) and name.startswith("system-"):
        known = SYSTEM_CLASSES.get(name)
        why = (f"{name} is not a known system priority class" if known is None else
               f"value of {name} PriorityClass must be {known[0]}" if value != known[0] else
               f"globalDefault of {name} PriorityClass must be false" if obj.get("globalDefault") else "")
        if why:
            out.append(v.cause("metadata.name", "Forbidden", "priority class names with 'system-' prefix are reserved "
                                                             f"for system use only. error: {why}"))
    elif value > HIGHEST_USER_PRIORITY:
        out.append(v.cause("value", "Forbidden", f"maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"))
    policy = obj.get("preemptionPolicy")
    if policy is None:
        out.append(v.cause("preemptionPolicy", "Required value", ""))
    elif policy not in ("Never", "PreemptLowerPriority"):
        out.append(v.not_supported("preemptionPolicy", policy, ("Never", "PreemptLowerPriority")))
    return out


def validate_priorityclass_update(old: Obj, new: Obj) -> list[v.Cause]:
    out = validate_priorityclass(new)
    if new.get("value", 0) != old.get("value", 0):
        out.append(v.cause("value", "Forbidden", "may not be changed in an update."))
    if new.get("preemptionPolicy") != old.get("preemptionPolicy"):
        out.append(v.invalid_value("preemptionPolicy", new.get("preemptionPolicy"), "field is immutable"))
    return out


def ensure_system_classes(store: Store) -> None:
    """kube-apiserver's scheduling/bootstrap-system-priority-classes post-start hook."""
    for name, (value, description) in SYSTEM_CLASSES.items():
        if store.try_get(PRIORITY_CLASSES, "", name) is None:
            try:
                store.create(PRIORITY_CLASSES, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                                                "metadata": {"name": name}, "value": value, "globalDefault": False,
                                                "description": description, "preemptionPolicy": "PreemptLowerPriority"})
            except APIError:
                pass


def _forbidden(resource: str, name: str, why: str) -> APIError:
    return APIError(403, "Forbidden", f'{resource} "{name}" is forbidden: {why}', details={"name": name, "kind": resource})


def admit_priorityclass(store: Store, obj: Obj) -> None:
    """The Priority plugin on a PriorityClass create: one globalDefault only."""
    if obj.get("globalDefault") is True:
        others, *_ = store.list(PRIORITY_CLASSES, None, lambda c: c.get("globalDefault") is True
                                and c["metadata"]["name"] != obj["metadata"].get("name"))
        if others:
            raise _forbidden("priorityclasses.scheduling.k8s.io", obj["metadata"].get("name", ""),
                             f"PriorityClass {others[0]['metadata']['name']} is marked as default. Only one default can exist")


def admit_priority(store: Store, pod: Obj) -> None:
    """The Priority plugin on a pod create: the class (or the global default) gives spec.priority and
    preemptionPolicy. (The lab's pod defaults already wrote priority 0 and PreemptLowerPriority, so those values are
    taken as unset; any other value that differs from the class is refused as upstream refuses it.)"""
    spec = pod.setdefault("spec", {})
    name = spec.get("priorityClassName") or ""
    pname = _admission_name(pod["metadata"])
    if name:
        pc = store.try_get(PRIORITY_CLASSES, "", name)
        if pc is None:
            raise _forbidden("pods", pname, f"no PriorityClass with name {name} was found")
    else:
        defaults, *_ = store.list(PRIORITY_CLASSES, None, lambda c: c.get("globalDefault") is True)
        pc = min(defaults, key=lambda c: c.get("value", 0)) if defaults else None
        if pc is not None:
            spec["priorityClassName"] = pc["metadata"]["name"]
    value = int(pc.get("value", 0)) if pc else 0
    policy = (pc.get("preemptionPolicy") if pc else None) or "PreemptLowerPriority"
    given = spec.get("priority")
    if given not in (None, 0, value):
        raise _forbidden("pods", pname, f"the integer value of priority ({given}) must not be provided in pod spec; "
                                        f"priority admission controller computed {value} from the given PriorityClass name")
    spec["priority"] = value
    given_policy = spec.get("preemptionPolicy")
    if given_policy not in (None, "PreemptLowerPriority", policy):
        raise _forbidden("pods", pname, f"the string value of PreemptionPolicy ({given_policy}) must not be provided in pod "
                                        f"spec; priority admission controller computed {policy} from the given PriorityClass name")
    spec["preemptionPolicy"] = policy


def _admission_name(meta: Obj) -> str:
    """The name a mutating plugin's 403 shows: kube-apiserver runs them before it generates a name, so a pod made
    from ``generateName`` is named by that prefix (the lab generated the suffix already: it is left out)."""
    name, prefix = str(meta.get("name") or ""), str(meta.get("generateName") or "")
    if prefix and name.startswith(prefix) and len(name) == len(prefix) + 5:
        return prefix
    return name or prefix


# -- the admission chain ------------------------------------------------------------------------------------------

_BOOTSTRAPPED: weakref.WeakSet[Store] = weakref.WeakSet()  # stores whose system PriorityClasses exist


def admit(store: Store, kind: str, group: str, obj: Obj, namespace: str, dry_run: bool = False,
          warnings: list[str] | None = None) -> None:
    """What the lab's API server runs on every create after defaults (and the ServiceAccount step for pods):
    Priority and LimitRanger (mutating) for pods, the Priority check on PriorityClasses, PodSecurity (validating:
    a pod refused with 403, warnings appended to ``warnings`` — None for a controller's own pod POST), ResourceQuota
    for every namespaced kind a quota counts."""
    from . import podsecurity, quota

    if store not in _BOOTSTRAPPED:
        _BOOTSTRAPPED.add(store)
        ensure_system_classes(store)
    if kind == "PodDisruptionBudget" and group == "policy":  # PrepareForCreate: status is the controller's
        prepare_pdb(obj)
    elif kind == "CronJob" and group == "batch":
        obj["status"] = {}
    elif kind == "ResourceQuota" and group == "":
        quota.prepare_quota(obj)
    elif kind == "Ingress" and group == "networking.k8s.io":
        obj["status"] = {"loadBalancer": {}}
    try:
        if kind == "Pod" and group == "":
            admit_priority(store, obj)
            quota.admit_limit_ranges(store, obj, namespace)
        elif kind == "PriorityClass" and group == "scheduling.k8s.io":
            admit_priorityclass(store, obj)
        elif kind == "Ingress" and group == "networking.k8s.io":
            from .ingress import admit_default_class

            admit_default_class(store, obj)
        podsecurity.admit(store, kind, group, obj, namespace, warnings)
        if namespace:
            quota.admit_quota(store, kind, group, obj, namespace, dry_run)
    except (AttributeError, TypeError, KeyError, ValueError, ArithmeticError):
        return  # a malformed object: validation, which comes next, answers it with its 422


def admit_update(store: Store, kind: str, group: str, old: Obj, obj: Obj, namespace: str,
                 warnings: list[str] | None = None) -> None:
    """The admission an update of a whole object gets after validation: the Priority check on PriorityClasses,
    PodSecurity (a pod whose images or containers changed; workloads warned; namespace labels validated and a
    stricter enforce level checked against the namespace's pods)."""
    from . import podsecurity

    if kind == "PriorityClass" and group == "scheduling.k8s.io":
        admit_priorityclass(store, obj)
    podsecurity.admit(store, kind, group, obj, namespace, warnings, old=old)


class PodAdmission:
    """The admission a controller's pod POST goes through: ``inner`` (the ServiceAccount step), then ``admit``."""

    def __init__(self, store: Store, inner: Any) -> None:
        self.store = store
        self.inner = inner

    def admit(self, pod: Obj, namespace: str) -> None:
        self.inner.admit(pod, namespace)
        admit(self.store, "Pod", "", pod, namespace)


def check_delete(kind: str, group: str, name: str) -> None:
    """The PriorityClass registry's Delete: the system classes cannot be deleted (403)."""
    if kind == "PriorityClass" and group == "scheduling.k8s.io" and name in SYSTEM_CLASSES:
        raise _forbidden("priorityclasses.scheduling.k8s.io", name, "this is a system priority class and cannot be deleted")
