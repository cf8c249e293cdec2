"""The HorizontalPodAutoscaler, ``autoscaling/v2``: the API server's defaults and validation, and
kube-controller-manager's horizontal-pod-autoscaler controller (``pkg/controller/podautoscaler``) for Resource
metrics (cpu, memory; Utilization and AverageValue) read from ``metrics.k8s.io`` as the HPA's REST metrics client
reads it.

Upstream settings kept: sync period 15 s (each HPA is reconciled 15 s after it is first seen, then every 15 s),
tolerance 0.1, cpu-initialization-period 5 min, initial-readiness-delay 30 s, downscale stabilisation 5 min. A shorter
stabilisation is the HPA's own business: ``spec.behavior.scaleDown.stabilizationWindowSeconds``.

The replica calculator is kept as pure functions (`resource_replicas`, `raw_resource_replicas`,
`convert_with_rules`, `scale_up_limit_with_rules`, ...) so that tests drive them with a fake clock.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from . import validation as v
from .events import Recorder
from .quantity import parse as parse_quantity
from .selectors import parse_label_selector
from .store import Store, rfc3339
from .tables import parse_time

log = logging.getLogger("kperflab.lab.hpa")
Obj = dict[str, Any]
Cause = dict[str, str]

KEY = "autoscaling/v2/horizontalpodautoscalers"
SYNC_PERIOD = 15.0  # --horizontal-pod-autoscaler-sync-period
TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
CPU_INITIALIZATION_PERIOD = 300.0  # --horizontal-pod-autoscaler-cpu-initialization-period
INITIAL_READINESS_DELAY = 30.0  # --horizontal-pod-autoscaler-initial-readiness-delay
DOWNSCALE_STABILIZATION = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization
SCALE_UP_LIMIT_FACTOR, SCALE_UP_LIMIT_MINIMUM = 2.0, 4.0
MAX_STABILIZATION_WINDOW, MAX_PERIOD_SECONDS = 3600, 1800
COMPONENT = "horizontal-pod-autoscaler"

# scale targets: kind → (store key, group, plural); the HPA reaches them through their /scale subresource
TARGETS = {
    ("apps", "Deployment"): "apps/v1/deployments",
    ("apps", "ReplicaSet"): "apps/v1/replicasets",
    ("apps", "StatefulSet"): "apps/v1/statefulsets",
    ("", "ReplicationController"): "v1/replicationcontrollers",
}


# -- defaults and validation (pkg/apis/autoscaling/v2/defaults.go, pkg/apis/autoscaling/validation) ------------------

def scale_up_defaults() -> Obj:
    return {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def scale_down_defaults() -> Obj:
    return {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _rules(given: Any, defaults: Obj) -> Any:
    """copyHPAScalingRules: the given fields over the defaults (a given policy list, even empty, replaces theirs)."""
    if not isinstance(given, dict):
        return defaults if given is None else given
    out = dict(defaults)
    for k in ("selectPolicy", "stabilizationWindowSeconds", "policies"):
        if given.get(k) is not None:
            out[k] = given[k]
    for k, val in given.items():  # unknown fields stay for strict decoding to judge
        out.setdefault(k, val)
    return out


def default_hpa(obj: Obj) -> None:
    if not obj.get("status"):  # what a new HPA's status reads (PrepareForCreate resets it) until the controller writes
        obj["status"] = {"currentMetrics": None, "desiredReplicas": 0}
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                                      "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):  # filled only when set
        behavior["scaleUp"] = _rules(behavior.get("scaleUp"), scale_up_defaults())
        behavior["scaleDown"] = _rules(behavior.get("scaleDown"), scale_down_defaults())


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _positive_quantity(path: str, q: Any) -> list[Cause]:
    try:
        ok = parse_quantity(q) > 0
    except ValueError:
        return [v.invalid_value(path, q, "must be a valid quantity")]
    return [] if ok else [v.invalid_value(path, q, "must be positive")]


def _path_segment(path: str, value: str) -> list[Cause]:
    """IsValidPathSegmentName."""
    if value in (".", ".."):
        return [v.invalid_value(path, value, f"may not be '{value}'")]
    return [v.invalid_value(path, value, f"may not contain '{c}'") for c in ("/", "%") if c in value]


def _metric_target(t: Any, path: str) -> list[Cause]:
    out: list[Cause] = []
    if not isinstance(t, dict):
        return [v.cause(f"{path}.type", "Required value", "must specify a metric target type")]
    if not t.get("type"):
        out.append(v.cause(f"{path}.type", "Required value", "must specify a metric target type"))
    elif t["type"] not in ("Utilization", "Value", "AverageValue"):
        out.append(v.invalid_value(f"{path}.type", t["type"], "must be either Utilization, Value, or AverageValue"))
    if t.get("value") is not None:
        out += _positive_quantity(f"{path}.value", t["value"])
    if t.get("averageValue") is not None:
        out += _positive_quantity(f"{path}.averageValue", t["averageValue"])
    au = t.get("averageUtilization")
    if au is not None and (not _int(au) or au < 1):
        out.append(v.invalid_value(f"{path}.averageUtilization", au, "must be greater than 0"))
    return out


SOURCE_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")


def _metric(m: Any, path: str) -> list[Cause]:
    if not isinstance(m, dict):
        return [v.cause(f"{path}.type", "Required value", "must specify a metric source type")]
    out: list[Cause] = []
    typ = m.get("type") or ""
    if not typ:
        out.append(v.cause(f"{path}.type", "Required value", "must specify a metric source type"))
    if typ not in SOURCE_TYPES:
        out.append(v.not_supported(f"{path}.type", typ, SOURCE_TYPES))
    present = [k for k in ("object", "pods", "resource", "containerResource", "external") if m.get(k) is not None]
    if present[:1] == ["resource"] or (present and present[0] == "containerResource"):
        src, sp = m[present[0]], f"{path}.{present[0]}"
        if not isinstance(src, dict) or not src.get("name"):
            out.append(v.cause(f"{sp}.name", "Required value", "must specify a resource name"))
        if present[0] == "containerResource" and (not isinstance(src, dict) or not src.get("container")):
            out.append(v.cause(f"{sp}.container", "Required value", "must specify a container"))
        tgt = src.get("target") if isinstance(src, dict) else None
        out += _metric_target(tgt, f"{sp}.target")
        if isinstance(tgt, dict):
            if tgt.get("averageUtilization") is None and tgt.get("averageValue") is None:
                out.append(v.cause(f"{sp}.target.averageUtilization", "Required value",
                                   "must set either a target raw value or a target utilization"))
            if tgt.get("averageUtilization") is not None and tgt.get("averageValue") is not None:
                out.append(v.cause(f"{sp}.target.averageValue", "Forbidden",
                                   "may not set both a target raw value and a target utilization"))
    expected = typ[:1].lower() + typ[1:]
    if typ and expected not in present:
        out.append(v.cause(f"{path}.{expected}", "Required value", "must populate information for the given metric source"))
    for other in present:
        if other != expected:
            out.append(v.cause(f"{path}.{other}", "Forbidden", "must populate the given metric source only"))
    return out


def _scaling_rules(r: Any, path: str) -> list[Cause]:
    if not isinstance(r, dict):
        return []
    out: list[Cause] = []
    w = r.get("stabilizationWindowSeconds")
    if w is not None:
        if not _int(w) or w < 0:
            out.append(v.invalid_value(f"{path}.stabilizationWindowSeconds", w, "must be greater than or equal to zero"))
        elif w > MAX_STABILIZATION_WINDOW:
            out.append(v.invalid_value(f"{path}.stabilizationWindowSeconds", w,
                                       f"must be less than or equal to {MAX_STABILIZATION_WINDOW}"))
    sp = r.get("selectPolicy")
    if sp is not None and sp not in ("Disabled", "Max", "Min"):
        out.append(v.not_supported(f"{path}.selectPolicy", sp, ("Disabled", "Max", "Min")))
    policies = r.get("policies")
    if not policies:
        out.append(v.cause(f"{path}.policies", "Required value", "must specify at least one Policy"))
    for i, p in enumerate(policies if isinstance(policies, list) else []):
        pp = f"{path}.policies[{i}]"
        p = p if isinstance(p, dict) else {}
        if p.get("type") not in ("Percent", "Pods"):
            out.append(v.not_supported(f"{pp}.type", p.get("type") or "", ("Percent", "Pods")))
        val = p.get("value", 0)
        if not _int(val) or val <= 0:
            out.append(v.invalid_value(f"{pp}.value", val, "must be greater than zero"))
        per = p.get("periodSeconds", 0)
        if not _int(per) or per <= 0:
            out.append(v.invalid_value(f"{pp}.periodSeconds", per, "must be greater than zero"))
        elif per > MAX_PERIOD_SECONDS:
            out.append(v.invalid_value(f"{pp}.periodSeconds", per, f"must be less than or equal to {MAX_PERIOD_SECONDS}"))
    return out


def validate_hpa(obj: Obj) -> list[Cause]:
    out = v.metadata(obj.get("metadata"), namespaced=True)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = {}
    mn, mx = spec.get("minReplicas"), spec.get("maxReplicas", 0)
    if mn is not None and (not _int(mn) or mn < 1):
        out.append(v.invalid_value("spec.minReplicas", mn, "must be greater than or equal to 1"))
    if not _int(mx) or mx < 1:
        out.append(v.invalid_value("spec.maxReplicas", mx, "must be greater than 0"))
    if _int(mn) and _int(mx) and mx < mn:
        out.append(v.invalid_value("spec.maxReplicas", mx, "must be greater than or equal to `minReplicas`"))
    ref = spec.get("scaleTargetRef") if isinstance(spec.get("scaleTargetRef"), dict) else {}
    for f in ("kind", "name"):
        val = ref.get(f)
        if not val:
            out.append(v.cause(f"spec.scaleTargetRef.{f}", "Required value", ""))
        elif isinstance(val, str):
            out += _path_segment(f"spec.scaleTargetRef.{f}", val)
    metrics = spec.get("metrics")
    for i, m in enumerate(metrics if isinstance(metrics, list) else []):
        out += _metric(m, f"spec.metrics[{i}]")
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        out += _scaling_rules(behavior.get("scaleUp"), "spec.behavior.scaleUp")
        out += _scaling_rules(behavior.get("scaleDown"), "spec.behavior.scaleDown")
    return out


# -- metrics, as the HPA's REST metrics client reads metrics.k8s.io ----------------------------------------------

@dataclass(frozen=True)
class PodMetric:
    value: int  # milli-units (MilliValue): millicores, or milli-bytes
    timestamp: float
    window: float


def milli_value(q: Any) -> int:
    """Quantity.MilliValue(): rounded up."""
    d = parse_quantity(q) * 1000
    i = int(d)
    return i + 1 if d > i else i


_DUR = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")


def parse_go_duration(text: str) -> float:
    """``"15.953s"``, ``"1m0s"``, ``"500ms"`` → seconds."""
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    return sum(float(n) * unit[u] for n, u in _DUR.findall(text or ""))


def pod_metrics_info(items: list[Obj], resource: str) -> dict[str, PodMetric]:
    """getPodMetrics: a pod's containers summed; a pod lacking the resource in any container (or with none) is
    left out."""
    out: dict[str, PodMetric] = {}
    for m in items:
        containers = m.get("containers") or []
        if not containers:
            continue
        total, missing = 0, False
        for c in containers:
            q = (c.get("usage") or {}).get(resource)
            if q is None:
                missing = True
                break
            total += milli_value(q)
        if not missing:
            out[m["metadata"]["name"]] = PodMetric(total, parse_time(m.get("timestamp")) or 0.0,
                                                   parse_go_duration(m.get("window", "")))
    return out


class MetricsError(Exception):
    pass


def _condition(pod: Obj, type_: str) -> Obj | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def group_pods(pods: list[Obj], metrics: dict[str, PodMetric], resource: str, now: float,
               cpu_init: float = CPU_INITIALIZATION_PERIOD, readiness_delay: float = INITIAL_READINESS_DELAY
               ) -> tuple[int, set[str], set[str], set[str]]:
    """(ready count, unready, missing, ignored) as the replica calculator's groupPods."""
    ready, unready, missing, ignored = 0, set(), set(), set()
    for pod in pods:
        name, st = pod["metadata"]["name"], pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or st.get("phase") == "Failed":
            ignored.add(name)
            continue
        if st.get("phase", "Pending") == "Pending":
            unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            missing.add(name)
            continue
        if resource == "cpu":
            cond, start = _condition(pod, "Ready"), parse_time(st.get("startTime"))
            if cond is None or start is None:
                not_ready = True
            else:
                transition = parse_time(cond.get("lastTransitionTime")) or 0.0
                if start + cpu_init > now:  # still in its initialisation period
                    not_ready = cond.get("status") == "False" or metric.timestamp < transition + metric.window
                else:  # unready and never ready
                    not_ready = cond.get("status") == "False" and start + readiness_delay > transition
            if not_ready:
                unready.add(name)
                continue
        ready += 1
    return ready, unready, missing, ignored


def pod_requests(pods: list[Obj], resource: str) -> dict[str, int]:
    """calculateRequests: each pod's containers (and restartable init containers) summed, in milli-units."""
    out: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = list(spec.get("containers") or [])
        containers += [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        total = 0
        for c in containers:
            q = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if q is None:
                raise MetricsError(f"missing request for {resource} in container {c.get('name')} of Pod {pod['metadata']['name']}")
            total += milli_value(q)
        out[pod["metadata"]["name"]] = total
    return out


def utilization_ratio(metrics: dict[str, int], requests: dict[str, int], target: int) -> tuple[float, int, int]:
    """GetResourceUtilizationRatio: (ratio, utilization %, raw average milli-value)."""
    used = req = n = 0
    for name, value in metrics.items():
        if name in requests:
            used += value
            req += requests[name]
            n += 1
    if req == 0:
        raise MetricsError("no metrics returned matched known pods")
    util = used * 100 // req  # int64 arithmetic, as upstream
    return util / target, util, used // n


def _ceil(x: float) -> int:
    return int(math.ceil(x))


@dataclass
class Calculation:
    replicas: int
    utilization: int | None  # percent of request (Utilization targets)
    raw: int  # average milli-value
    timestamp: float


def _fetch(items: list[Obj], pods: list[Obj], resource: str, now: float, cpu_init: float, readiness_delay: float
           ) -> tuple[dict[str, PodMetric], int, set[str], set[str], set[str], float]:
    if not items:
        raise MetricsError(f"unable to get metrics for resource {resource}: no metrics returned from resource metrics API")
    metrics = pod_metrics_info(items, resource)
    timestamp = parse_time(items[0].get("timestamp")) or 0.0
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    ready, unready, missing, ignored = group_pods(pods, metrics, resource, now, cpu_init, readiness_delay)
    for name in ignored | unready:
        metrics.pop(name, None)
    if not metrics:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    return metrics, ready, unready, missing, ignored, timestamp


def resource_replicas(current: int, target_utilization: int, resource: str, items: list[Obj], pods: list[Obj],
                      now: float, tolerance: float = TOLERANCE, cpu_init: float = CPU_INITIALIZATION_PERIOD,
                      readiness_delay: float = INITIAL_READINESS_DELAY) -> Calculation:
    """GetResourceReplicas: a Utilization target. ``items`` are the PodMetrics the selector lists, ``pods`` the pods."""
    metrics, ready, unready, missing, _, ts = _fetch(items, pods, resource, now, cpu_init, readiness_delay)
    requests = pod_requests(pods, resource)
    values = {k: m.value for k, m in metrics.items()}
    ratio, util, raw = utilization_ratio(values, requests, target_utilization)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - ratio) <= tolerance:
            return Calculation(current, util, raw, ts)
        return Calculation(_ceil(ratio * ready), util, raw, ts)
    if missing:
        if ratio < 1.0:  # on a scale-down, a pod without metrics counts as using max(100 %, target) of its request
            fallback = max(100, target_utilization)
            for name in missing:
                values[name] = requests[name] * fallback // 100
        elif ratio > 1.0:  # on a scale-up, as using nothing
            for name in missing:
                values[name] = 0
    if scale_up_with_unready:
        for name in unready:
            values[name] = 0
    new_ratio, _, _ = utilization_ratio(values, requests, target_utilization)
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return Calculation(current, util, raw, ts)
    new = _ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return Calculation(current, util, raw, ts)
    return Calculation(new, util, raw, ts)


def raw_resource_replicas(current: int, target_milli: int, resource: str, items: list[Obj], pods: list[Obj], now: float,
                          tolerance: float = TOLERANCE, cpu_init: float = CPU_INITIALIZATION_PERIOD,
                          readiness_delay: float = INITIAL_READINESS_DELAY) -> Calculation:
    """GetRawResourceReplicas (calcPlainMetricReplicas): an AverageValue target, in milli-units."""
    metrics, ready, unready, missing, _, ts = _fetch(items, pods, resource, now, cpu_init, readiness_delay)
    values = {k: m.value for k, m in metrics.items()}

    def ratio_of(vals: dict[str, int]) -> tuple[float, int]:
        usage = sum(vals.values()) // len(vals)
        return usage / target_milli, usage

    ratio, usage = ratio_of(values)
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - ratio) <= tolerance:
            return Calculation(current, None, usage, ts)
        return Calculation(_ceil(ratio * ready), None, usage, ts)
    if missing:
        for name in missing:
            values[name] = target_milli if ratio < 1.0 else 0
    if scale_up_with_unready:
        for name in unready:
            values[name] = 0
    new_ratio, _ = ratio_of(values)
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return Calculation(current, None, usage, ts)
    new = _ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return Calculation(current, None, usage, ts)
    return Calculation(new, None, usage, ts)


# -- normalisation: stabilisation and rate limits (horizontal.go) ------------------------------------------------

def scale_up_limit(current: int) -> int:
    return int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))


def convert_with_rules(current: int, desired: int, min_r: int, max_r: int) -> tuple[int, str, str]:
    """convertDesiredReplicasWithRules: the clamp without ``behavior``."""
    limit = scale_up_limit(current)
    if max_r > limit:
        maximum, reason, msg = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
    else:
        maximum, reason, msg = max_r, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
    if desired < min_r:
        return min_r, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
    if desired > maximum:
        return maximum, reason, msg
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


@dataclass
class ScaleEvent:
    change: int
    timestamp: float
    outdated: bool = False


def _changes_in_period(period: float, events: list[ScaleEvent], now: float) -> int:
    return sum(e.change for e in events if e.timestamp > now - period)


def scale_up_limit_with_rules(current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: Obj,
                              now: float) -> int:
    """calculateScaleUpLimitWithScalingRules: the period starts where the replica count was ``periodSeconds`` ago."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick = min if select == "Min" else max
    result: int | None = None
    for p in rules.get("policies") or []:
        start = (current - _changes_in_period(p["periodSeconds"], up_events, now)
                 + _changes_in_period(p["periodSeconds"], down_events, now))
        proposed = start + p["value"] if p["type"] == "Pods" else _ceil(start * (1 + p["value"] / 100))
        result = proposed if result is None else pick(result, proposed)
    return result if result is not None else current  # upstream starts from 0 with Max; policies are required


def scale_down_limit_with_rules(current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: Obj,
                                now: float) -> int:
    """calculateScaleDownLimitWithBehaviors."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    pick = max if select == "Min" else min
    result: int | None = None
    for p in rules.get("policies") or []:
        start = (current + _changes_in_period(p["periodSeconds"], down_events, now)
                 - _changes_in_period(p["periodSeconds"], up_events, now))
        proposed = start - p["value"] if p["type"] == "Pods" else int(start * (1 - p["value"] / 100))
        result = proposed if result is None else pick(result, proposed)
    return result if result is not None else current


@dataclass
class HPAState:
    """What the controller keeps per HPA in memory (upstream too: lost on restart)."""

    recommendations: list[tuple[int, float]] = field(default_factory=list)
    up_events: list[ScaleEvent] = field(default_factory=list)
    down_events: list[ScaleEvent] = field(default_factory=list)
    next_sync: float = 0.0


def stabilize(state: HPAState, desired: int, window: float, now: float) -> int:
    """stabilizeRecommendation (no behavior): the highest recommendation of the window; the oldest stale entry is
    replaced by this one."""
    best, old_index = desired, None
    for i, (rec, ts) in enumerate(state.recommendations):
        if ts < now - window:
            old_index = i
        elif rec > best:
            best = rec
    if old_index is not None:
        state.recommendations[old_index] = (desired, now)
    else:
        state.recommendations.append((desired, now))
    return best


def stabilize_with_behavior(state: HPAState, current: int, desired: int, up: Obj, down: Obj, now: float
                            ) -> tuple[int, str, str]:
    """stabilizeRecommendationWithBehaviors: the current count raised to the lowest recommendation of the scale-up
    window and lowered to the highest of the scale-down window; the oldest entry outside both is reused."""
    up_cut = now - (up.get("stabilizationWindowSeconds") or 0)
    down_cut = now - (down.get("stabilizationWindowSeconds") or 0)
    up_rec = down_rec = desired
    old_index = None
    for i, (r, ts) in enumerate(state.recommendations):
        if ts > up_cut:
            up_rec = min(r, up_rec)
        if ts > down_cut:
            down_rec = max(r, down_rec)
        if ts < up_cut and ts < down_cut:
            old_index = i
    rec = current
    if rec < up_rec:
        rec = up_rec
    if rec > down_rec:
        rec = down_rec
    if old_index is not None:
        state.recommendations[old_index] = (desired, now)
    else:
        state.recommendations.append((desired, now))
    if desired >= current:
        return rec, "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"
    return rec, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"


def convert_with_behavior_rate(state: HPAState, current: int, desired: int, min_r: int, max_r: int, up: Obj, down: Obj,
                               now: float) -> tuple[int, str, str]:
    if desired > current:
        limit = max(scale_up_limit_with_rules(current, state.up_events, state.down_events, up, now), current)
        if max_r > limit:
            maximum, reason, msg = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
        else:
            maximum, reason, msg = max_r, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
        if desired > maximum:
            return maximum, reason, msg
    elif desired < current:
        limit = min(scale_down_limit_with_rules(current, state.up_events, state.down_events, down, now), current)
        if min_r < limit:
            minimum, reason, msg = limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
        else:
            minimum, reason, msg = min_r, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
        if desired < minimum:
            return minimum, reason, msg
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def store_scale_event(state: HPAState, behavior: Obj | None, prev: int, new: int, now: float) -> None:
    if behavior is None:
        return
    up = new > prev
    rules = behavior.get("scaleUp" if up else "scaleDown") or {}
    events = state.up_events if up else state.down_events
    longest = max((p.get("periodSeconds", 0) for p in rules.get("policies") or []), default=0)
    for e in events:
        if e.timestamp < now - longest:
            e.outdated = True
    event = ScaleEvent(abs(new - prev), now)
    old = next((i for i, e in enumerate(events) if e.outdated), None)
    if old is not None:
        events[old] = event
    else:
        events.append(event)


# -- the scale subresource, read and written through the store -----------------------------------------------------

def selector_string(sel: Any) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key."""
    if not isinstance(sel, dict):
        return ""
    reqs: list[tuple[str, str]] = []
    for k, val in (sel.get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={val}"))
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e.get("key", ""), e.get("operator", ""), sorted(e.get("values") or [])
        text = {"In": f"{k} in ({','.join(vals)})", "NotIn": f"{k} notin ({','.join(vals)})", "Exists": k,
                "DoesNotExist": f"!{k}"}.get(op, "")
        reqs.append((k, text))
    return ",".join(t for _, t in sorted(reqs, key=lambda r: r[0]))


def scale_of(target: Obj, kind: str) -> tuple[int, int, str]:
    """(spec.replicas, status.replicas, status.selector) of the target's /scale."""
    spec, st = target.get("spec") or {}, target.get("status") or {}
    if kind == "ReplicationController":
        sel = spec.get("selector") or {}
        selector = ",".join(f"{k}={sel[k]}" for k in sorted(sel))
    else:
        selector = selector_string(spec.get("selector"))
    replicas = spec.get("replicas")
    return (1 if replicas is None else int(replicas)), int(st.get("replicas") or 0), selector


def _quantity_milli(milli: int) -> str:
    """resource.NewMilliQuantity(m, DecimalSI).String()."""
    if milli == 0:
        return "0"
    if milli % 1000:
        return f"{milli}m"
    n = milli // 1000
    for suffix, exp in (("E", 18), ("P", 15), ("T", 12), ("G", 9), ("M", 6), ("k", 3)):
        if n % 10**exp == 0:
            return f"{n // 10**exp}{suffix}"
    return str(n)


def set_condition(status: Obj, type_: str, value: str, reason: str, message: str, now: float) -> None:
    conds = status.setdefault("conditions", [])
    cond = next((c for c in conds if c.get("type") == type_), None)
    if cond is None:
        cond = {"type": type_}
        conds.append(cond)
    if cond.get("status") != value:
        cond["lastTransitionTime"] = rfc3339(now)
    cond["status"] = value
    cond["reason"] = reason
    cond["message"] = message
    # keep upstream's key order: type, status, lastTransitionTime, reason, message
    ordered = {k: cond[k] for k in ("type", "status", "lastTransitionTime", "reason", "message") if k in cond}
    cond.clear()
    cond.update(ordered)


class HPAController:
    """kube-controller-manager's horizontal-pod-autoscaler loop, on its own thread (``run(stop)``)."""

    def __init__(self, store: Store, pod_metrics: Callable[[str], list[Obj]], clock: Callable[[], float] = time.time,
                 sync_period: float = SYNC_PERIOD, tolerance: float = TOLERANCE,
                 downscale_window: float = DOWNSCALE_STABILIZATION, cpu_init: float = CPU_INITIALIZATION_PERIOD,
                 readiness_delay: float = INITIAL_READINESS_DELAY) -> None:
        self.store = store
        self.pod_metrics = pod_metrics  # namespace → PodMetrics items (metrics.k8s.io)
        self.clock = clock
        self.sync_period, self.tolerance, self.downscale_window = sync_period, tolerance, downscale_window
        self.cpu_init, self.readiness_delay = cpu_init, readiness_delay
        self.recorder = Recorder(store, COMPONENT)
        self.states: dict[tuple[str, str, str], HPAState] = {}

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad round must not end the controller
                log.exception("hpa sync failed")
            stop.wait(0.5)

    def tick(self) -> None:
        """Reconcile every HPA whose time has come: first ``sync_period`` after it was seen, then every period."""
        now = self.clock()
        hpas, *_ = self.store.list(KEY)
        seen = set()
        for hpa in hpas:
            meta = hpa["metadata"]
            key = (meta["namespace"], meta["name"], meta["uid"])
            seen.add(key)
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = HPAState(next_sync=now + self.sync_period)
            if now >= state.next_sync:
                state.next_sync = now + self.sync_period
                try:
                    self.reconcile(hpa, state)
                except Exception:  # noqa: BLE001 - one HPA's trouble must not stop the others
                    log.exception("reconciling %s/%s failed", meta["namespace"], meta["name"])
        for key in list(self.states):
            if key not in seen:
                del self.states[key]

    # -- one reconcile --------------------------------------------------------------------------------------
    def reconcile(self, hpa: Obj, state: HPAState) -> None:
        now = self.clock()
        hpa["apiVersion"], hpa["kind"] = "autoscaling/v2", "HorizontalPodAutoscaler"  # stored as v2, whoever wrote it
        spec = hpa.get("spec") or {}
        ns = hpa["metadata"]["namespace"]
        original = copy.deepcopy(hpa.get("status") or {})
        status: Obj = copy.deepcopy(original)
        status.setdefault("conditions", [])
        ref = spec.get("scaleTargetRef") or {}
        kind, name = ref.get("kind", ""), ref.get("name", "")
        group = ref.get("apiVersion", "").rpartition("/")[0] if "/" in ref.get("apiVersion", "") else ""
        resource = TARGETS.get((group, kind))
        target = None
        if resource is None:
            err = f'no matches for kind "{kind}" in group "{group}"'
        else:
            target = self.store.try_get(resource, ns, name)
            plural = resource.rsplit("/", 1)[1]
            err = f'{plural}{"." + group if group else ""} "{name}" not found'
        if target is None:
            self.recorder.event(hpa, "Warning", "FailedGetScale", err)
            set_condition(status, "AbleToScale", "False", "FailedGetScale",
                          f"the HPA controller was unable to get the target's current scale: {err}", now)
            self._write_status(hpa, original, status)
            return
        set_condition(status, "AbleToScale", "True", "SucceededGetScale",
                      "the HPA controller was able to get the target's current scale", now)
        current, _, selector = scale_of(target, kind)
        if not state.recommendations:
            state.recommendations.append((current, now))  # recordInitialRecommendation
        min_r = spec.get("minReplicas") or 1
        max_r = spec.get("maxReplicas") or 1
        behavior = spec.get("behavior") if isinstance(spec.get("behavior"), dict) else None
        desired, reason, rescale = 0, "", True
        metric_statuses: list[Obj] | None = None
        if current == 0 and min_r != 0:
            rescale = False
            set_condition(status, "ScalingActive", "False", "ScalingDisabled",
                          "scaling is disabled since the replica count of the target is zero", now)
        elif current > max_r:
            reason, desired = "Current number of replicas above Spec.MaxReplicas", max_r
        elif current < min_r:
            reason, desired = "Current number of replicas below Spec.MinReplicas", min_r
        else:
            proposal, metric_name, metric_statuses, error = self._compute(hpa, status, selector, current, now)
            if error is not None:
                status.update(currentReplicas=current, currentMetrics=metric_statuses or None)
                status.setdefault("desiredReplicas", 0)
                self._write_status(hpa, original, status)
                self.recorder.event(hpa, "Warning", "FailedComputeMetricsReplicas", error)
                return
            if proposal > desired:
                desired = proposal
            if desired > current:
                reason = f"{metric_name} above target"
            if desired < current:
                reason = "All metrics below target"
            if behavior is None:
                desired = self._normalize(state, status, current, desired, min_r, max_r, now)
            else:
                desired = self._normalize_with_behavior(state, status, current, desired, min_r, max_r, behavior, now)
            rescale = desired != current
        if rescale:
            err = self._update_scale(resource, target, desired)
            if err:
                self.recorder.event(hpa, "Warning", "FailedRescale", f"New size: {desired}; reason: {reason}; error: {err}")
                set_condition(status, "AbleToScale", "False", "FailedUpdateScale",
                              f"the HPA controller was unable to update the target scale: {err}", now)
                status.update(currentReplicas=current)
                self._write_status(hpa, original, status)
                return
            set_condition(status, "AbleToScale", "True", "SucceededRescale",
                          f"the HPA controller was able to update the target scale to {desired}", now)
            self.recorder.event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            store_scale_event(state, behavior, current, desired, now)
            log.info("Successful rescale of %s, old size: %d, new size: %d, reason: %s", hpa["metadata"]["name"],
                     current, desired, reason)
        else:
            desired = current
        new: Obj = {"currentReplicas": current, "desiredReplicas": desired, "currentMetrics": metric_statuses or None}
        if rescale:
            new["lastScaleTime"] = rfc3339(now)
        elif original.get("lastScaleTime"):
            new["lastScaleTime"] = original["lastScaleTime"]
        new["conditions"] = status["conditions"]
        self._write_status(hpa, original, new)

    def _compute(self, hpa: Obj, status: Obj, selector: str, current: int, now: float
                 ) -> tuple[int, str, list[Obj], str | None]:
        """computeReplicasForMetrics: (replicas, metric name, statuses, error)."""
        specs = (hpa.get("spec") or {}).get("metrics") or []
        ns = hpa["metadata"]["namespace"]
        if not selector:
            self.recorder.event(hpa, "Warning", "SelectorRequired", "selector is required")
            set_condition(status, "ScalingActive", "False", "InvalidSelector", "the HPA target's scale is missing a selector", now)
            return 0, "", [], "selector is required"
        try:
            match = parse_label_selector(selector)
        except errors.APIError as exc:
            msg = f"couldn't convert selector into a corresponding internal selector object: {exc.message}"
            self.recorder.event(hpa, "Warning", "InvalidSelector", msg)
            set_condition(status, "ScalingActive", "False", "InvalidSelector", msg, now)
            return 0, "", [], msg
        pods, *_ = self.store.list("v1/pods", ns, match)
        items = [m for m in self.pod_metrics(ns) if match(m)]
        statuses: list[Obj] = [{"type": ""} for _ in specs]
        replicas, metric, invalid, first_err, first_cond = 0, "", 0, "", None
        for i, ms in enumerate(specs):
            try:
                proposal, name, st = self._resource_metric(ms, current, items, pods, now)
                statuses[i] = st
            except MetricsError as exc:
                res = ((ms.get("resource") or {}).get("name")) or ""
                reason = {"Resource": "FailedGetResourceMetric"}.get(ms.get("type"), "InvalidMetricSourceType")
                msg = str(exc)
                self.recorder.event(hpa, "Warning", reason, msg)
                cond = ("ScalingActive", "False", reason, f"the HPA was unable to compute the replica count: {msg}")
                if invalid == 0:
                    first_cond = cond
                    first_err = f"failed to get {res} resource metric value: {msg}" if ms.get("type") == "Resource" else msg
                invalid += 1
                continue
            if replicas == 0 or proposal > replicas:
                replicas, metric = proposal, name
        if invalid >= len(specs) or (invalid and replicas < current):
            assert first_cond is not None
            set_condition(status, *first_cond, now)
            return -1, "", statuses, f"invalid metrics ({invalid} invalid out of {len(specs)}), first error is: {first_err}"
        set_condition(status, "ScalingActive", "True", "ValidMetricFound",
                      f"the HPA was able to successfully calculate a replica count from {metric}", now)
        return replicas, metric, statuses, None

    def _resource_metric(self, ms: Obj, current: int, items: list[Obj], pods: list[Obj], now: float
                         ) -> tuple[int, str, Obj]:
        if ms.get("type") != "Resource":
            raise MetricsError(f"unknown metric source type {ms.get('type')!r}: the lab's HPA reads Resource metrics only")
        src = ms.get("resource") or {}
        res, target = src.get("name", ""), src.get("target") or {}
        kw = {"tolerance": self.tolerance, "cpu_init": self.cpu_init, "readiness_delay": self.readiness_delay}
        if target.get("averageValue") is not None:
            try:
                calc = raw_resource_replicas(current, milli_value(target["averageValue"]), res, items, pods, now, **kw)
            except MetricsError as exc:
                raise MetricsError(f"failed to get {res} usage: {exc}") from None
            return calc.replicas, f"{res} resource", {
                "type": "Resource", "resource": {"name": res, "current": {"averageValue": _quantity_milli(calc.raw)}}}
        if target.get("averageUtilization") is None:
            raise MetricsError("invalid resource metric source: neither an average utilization target nor an average "
                               "value (usage) target was set")
        try:
            calc = resource_replicas(current, int(target["averageUtilization"]), res, items, pods, now, **kw)
        except MetricsError as exc:
            raise MetricsError(f"failed to get {res} utilization: {exc}") from None
        return calc.replicas, f"{res} resource utilization (percentage of request)", {
            "type": "Resource", "resource": {"name": res, "current": {"averageUtilization": calc.utilization,
                                                                      "averageValue": _quantity_milli(calc.raw)}}}

    def _normalize(self, state: HPAState, status: Obj, current: int, desired: int, min_r: int, max_r: int,
                   now: float) -> int:
        stabilized = stabilize(state, desired, self.downscale_window, now)
        if stabilized != desired:
            set_condition(status, "AbleToScale", "True", "ScaleDownStabilized",
                          "recent recommendations were higher than current one, applying the highest recent recommendation", now)
        else:
            set_condition(status, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size", now)
        out, reason, msg = convert_with_rules(current, stabilized, min_r, max_r)
        set_condition(status, "ScalingLimited", "False" if out == stabilized else "True", reason, msg, now)
        return out

    def _normalize_with_behavior(self, state: HPAState, status: Obj, current: int, desired: int, min_r: int,
                                 max_r: int, behavior: Obj, now: float) -> int:
        up = dict(behavior.get("scaleUp") or scale_up_defaults())
        down = dict(behavior.get("scaleDown") or scale_down_defaults())
        if down.get("stabilizationWindowSeconds") is None:  # maybeInitScaleDownStabilizationWindow
            down["stabilizationWindowSeconds"] = int(self.downscale_window)
        stabilized, reason, msg = stabilize_with_behavior(state, current, desired, up, down, now)
        if stabilized != desired:
            set_condition(status, "AbleToScale", "True", reason, msg, now)
        else:
            set_condition(status, "AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size", now)
        out, reason, msg = convert_with_behavior_rate(state, current, stabilized, min_r, max_r, up, down, now)
        set_condition(status, "ScalingLimited", "False" if out == stabilized else "True", reason, msg, now)
        return out

    def _update_scale(self, resource: str, target: Obj, replicas: int) -> str:
        """PUT .../scale: the target's spec.replicas (its generation follows). An error's message, or ''."""
        target = copy.deepcopy(target)
        target.setdefault("spec", {})["replicas"] = replicas
        try:
            self.store.update(resource, target, spec_changed=lambda a, b: a.get("spec") != b.get("spec"))
        except errors.APIError as exc:
            return exc.message
        return ""

    def _write_status(self, hpa: Obj, original: Obj, status: Obj) -> None:
        """updateStatusIfNeeded: only a changed status is written (in v2's JSON: desiredReplicas and currentMetrics
        always there, currentReplicas left out when 0)."""
        status = {"lastScaleTime": status.get("lastScaleTime"), "currentReplicas": status.get("currentReplicas") or None,
                  "desiredReplicas": status.get("desiredReplicas", 0), "currentMetrics": status.get("currentMetrics") or None,
                  "conditions": status.get("conditions") or None}
        status = {k: val for k, val in status.items() if val is not None or k in ("desiredReplicas", "currentMetrics")}
        if status == original:
            return
        new = copy.deepcopy(hpa)
        new["status"] = status
        try:
            self.store.update(KEY, new)
        except errors.APIError as exc:  # changed or deleted meanwhile: the next sync writes it
            self.recorder.event(hpa, "Warning", "FailedUpdateStatus", exc.message)


# -- autoscaling/v1: the same objects, stored as v2 (pkg/apis/autoscaling/v1/conversion.go) -------------------------
# kubectl 1.32's `autoscale` POSTs autoscaling/v1. What v1 has no field for travels in annotations, as upstream.

ANN_METRICS = "autoscaling.alpha.kubernetes.io/metrics"
ANN_CURRENT = "autoscaling.alpha.kubernetes.io/current-metrics"
ANN_CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"
ANN_BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"


def _is_cpu_utilization(m: Any) -> bool:
    return (isinstance(m, dict) and m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"
            and ((m.get("resource") or {}).get("target") or {}).get("type") == "Utilization")


def _metric_v2_to_v1(m: Obj) -> Obj:
    """A v2 MetricSpec in the v1 annotation's shape (targetAverageUtilization / targetAverageValue)."""
    if m.get("type") == "Resource" and isinstance(m.get("resource"), dict):
        r, t = m["resource"], m["resource"].get("target") or {}
        out: Obj = {"name": r.get("name", "")}
        if t.get("averageUtilization") is not None:
            out["targetAverageUtilization"] = t["averageUtilization"]
        if t.get("averageValue") is not None:
            out["targetAverageValue"] = t["averageValue"]
        return {"type": "Resource", "resource": out}
    return m


def _metric_v1_to_v2(m: Any) -> Any:
    if isinstance(m, dict) and m.get("type") == "Resource" and isinstance(m.get("resource"), dict):
        r = m["resource"]
        if "target" in r:
            return m
        if r.get("targetAverageValue") is not None:
            target = {"type": "AverageValue", "averageValue": r["targetAverageValue"]}
        else:
            target = {"type": "Utilization", "averageUtilization": r.get("targetAverageUtilization")}
        return {"type": "Resource", "resource": {"name": r.get("name", ""), "target": target}}
    return m


def _status_v2_to_v1(m: Obj) -> Obj:
    if m.get("type") == "Resource" and isinstance(m.get("resource"), dict):
        r, c = m["resource"], m["resource"].get("current") or {}
        out: Obj = {"name": r.get("name", "")}
        if c.get("averageUtilization") is not None:
            out["currentAverageUtilization"] = c["averageUtilization"]
        out["currentAverageValue"] = c.get("averageValue", "0")
        return {"type": "Resource", "resource": out}
    return m


def default_v1(obj: Obj) -> None:
    """An autoscaling/v1 body (create or update) → the v2 object that is stored: targetCPUUtilizationPercentage becomes
    the cpu metric, the annotations go back into their fields; then v2's defaults."""
    import json

    spec = obj.get("spec")
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    ann = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    if isinstance(spec, dict):
        metrics: list[Any] = []
        if spec.get("targetCPUUtilizationPercentage") is not None:
            metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": spec.pop("targetCPUUtilizationPercentage")}}})
        else:
            spec.pop("targetCPUUtilizationPercentage", None)
            metrics += [m for m in spec.get("metrics") or [] if _is_cpu_utilization(m)]  # a v1 patch over the stored v2
        other = ann.pop(ANN_METRICS, None)
        if other is not None:
            try:
                metrics += [_metric_v1_to_v2(m) for m in json.loads(other)]
            except (ValueError, TypeError):
                pass
        else:
            metrics += [m for m in spec.get("metrics") or [] if not _is_cpu_utilization(m)]
        spec["metrics"] = metrics
        behavior = ann.pop(ANN_BEHAVIOR, None)
        if behavior is not None:
            try:
                spec["behavior"] = json.loads(behavior)
            except ValueError:
                pass
    for key in (ANN_CURRENT, ANN_CONDITIONS):
        ann.pop(key, None)
    if isinstance(meta.get("annotations"), dict) and not meta["annotations"]:
        del meta["annotations"]
    default_hpa(obj)


def to_v1(obj: Obj) -> Obj:
    """The stored (v2) object as autoscaling/v1 shows it."""
    import json

    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v1"
    spec, st = out.get("spec") or {}, out.get("status") or {}
    ann = dict(out.get("metadata", {}).get("annotations") or {})
    metrics = spec.pop("metrics", None) or []
    cpu = next((m for m in metrics if _is_cpu_utilization(m)), None)
    if cpu is not None:
        spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"].get("averageUtilization")
    other = [_metric_v2_to_v1(m) for m in metrics if m is not cpu]
    if other:
        ann[ANN_METRICS] = json.dumps(other, separators=(",", ":"))
    behavior = spec.pop("behavior", None)
    if behavior is not None:
        ann[ANN_BEHAVIOR] = json.dumps(behavior, separators=(",", ":"))
    current = st.pop("currentMetrics", None) or []
    cur_cpu = next((m for m in current if m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"), None)
    if cur_cpu is not None and (cur_cpu["resource"].get("current") or {}).get("averageUtilization") is not None:
        st["currentCPUUtilizationPercentage"] = cur_cpu["resource"]["current"]["averageUtilization"]
    rest = [_status_v2_to_v1(m) for m in current if m is not cur_cpu and m.get("type")]
    if rest:
        ann[ANN_CURRENT] = json.dumps(rest, separators=(",", ":"))
    st.setdefault("currentReplicas", 0)
    conditions = st.pop("conditions", None)
    if conditions:
        ann[ANN_CONDITIONS] = json.dumps(conditions, separators=(",", ":"))
    if ann:
        out.setdefault("metadata", {})["annotations"] = ann
    return out


def to_v2(obj: Obj) -> Obj:
    """The stored object as autoscaling/v2 shows it (it is stored as v2)."""
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v2"
    return out
