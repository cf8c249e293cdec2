"""The lab's metrics-server: scrapes the kubelet's resource metrics every resolution, keeps two points per object
and serves ``metrics.k8s.io`` (v1 and v1beta1) the way metrics-server computes it.

- window = last.timestamp − prev.timestamp (the kubelet's sample times, not the scrape times);
- cpu = Δcumulative ns / window, serialized as an integer in ``n`` (canonical: ``"487558164n"``, ``"500m"``, ``"0"``);
- memory = working set, canonical BinarySI (``"732212Ki"``);
- a node with CPU or memory 0 is dropped; a pod is dropped when any container has CPU or memory 0, and is
  served only when every container has two points; a container whose cumulative CPU went down (a restart) starts
  over; a container 10 s ≤ age < resolution gets an invented first point at its start time with CPU 0.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..apiserver import Request, Response, _no_resource, _wants_table
from ..quantity import binary_si
from ..selectors import parse_field_selector, parse_label_selector
from ..store import Store, rfc3339
from .cadvisor import NODE, Snapshot, working_set

GROUP = "metrics.k8s.io"
VERSIONS = ["v1", "v1beta1"]  # v1 is GA in Kubernetes 1.37 (KEP-5207); kubectl ≤ 1.36 asks for v1beta1
NEW_CONTAINER_MIN_AGE = 10.0
Obj = dict[str, Any]


@dataclass(frozen=True)
class MPoint:
    t_ms: int  # the kubelet's sample time, in ms as /metrics/resource carries it
    cpu_ns: int  # cumulative
    memory: int  # working set
    start: float = 0.0


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() at millisecond precision: "15.953s", "1m0s", "30s", "0s", "500ms".

    >>> [go_duration(x) for x in (15.953, 60, 30, 0, 0.5, 61.5, 3600)]
    ['15.953s', '1m0s', '30s', '0s', '500ms', '1m1.5s', '1h0m0s']
    """
    ms = int(round(seconds * 1000))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, frac = divmod(rest, 1000)
    sec = f"{s}" + (f".{frac:03d}".rstrip("0") if frac else "") + "s"
    if h:
        return f"{h}h{m}m{sec}"
    if m:
        return f"{m}m{sec}"
    return sec


def cpu_quantity(nanocores: int) -> str:
    """Quantity(n, DecimalSI, scale −9) in canonical form: trailing zeros go into a larger suffix.

    >>> [cpu_quantity(x) for x in (487558164, 500000000, 0, 2000000000, 1500000000, 487558000)]
    ['487558164n', '500m', '0', '2', '1500m', '487558u']
    """
    if nanocores == 0:
        return "0"
    for suffix, div in (("", 10**9), ("m", 10**6), ("u", 10**3)):
        if nanocores % div == 0:
            return f"{nanocores // div}{suffix}"
    return f"{nanocores}n"


def memory_quantity(n: int) -> str:
    """Quantity(n, BinarySI) in canonical form (below 1024, or not a multiple of 1024: plain)."""
    return binary_si(n) if n >= 1024 else str(n)


def usage(prev: MPoint, last: MPoint) -> tuple[Obj, float] | None:
    window = (last.t_ms - prev.t_ms) / 1000
    if window <= 0 or last.cpu_ns < prev.cpu_ns:
        return None
    return {"cpu": cpu_quantity(int((last.cpu_ns - prev.cpu_ns) / window)), "memory": memory_quantity(last.memory)}, window


class MetricsServer:
    versions = VERSIONS

    def __init__(self, store: Store, snapshot: Callable[[], Snapshot], node_name: str, resolution: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.snapshot = snapshot
        self.node_name = node_name
        self.resolution = resolution
        self.clock = clock
        self._lock = threading.Lock()
        self.nodes: dict[str, tuple[MPoint | None, MPoint]] = {}
        self.containers: dict[tuple[str, str], dict[str, tuple[MPoint | None, MPoint]]] = {}  # (ns, pod) → name → points
        self.pod_uids: dict[tuple[str, str], str] = {}

    # -- scraping --------------------------------------------------------------------------------
    def scrape(self) -> None:
        """One scrape of the kubelet: what /metrics/resource would return now, decoded as metrics-server does."""
        snap = self.snapshot()
        now = self.clock()
        with self._lock:
            node = snap.last(NODE)
            if node is not None:
                ws = working_set(node.raw) or 0
                cpu = node.raw.get("cpu_usage_ns", 0)
                if cpu and ws:  # metrics-server drops a node with zero CPU or memory
                    self.nodes[self.node_name] = _advance(self.nodes.get(self.node_name), MPoint(int(node.t * 1000), cpu, ws))
            seen: set[tuple[str, str]] = set()
            for p in snap.pods:
                key = (p.namespace, p.name)
                points = []
                for c in p.containers:
                    cp = snap.last(c.cgroup)
                    if cp is None:
                        continue
                    points.append((c.name, MPoint(int(cp.t * 1000), cp.raw.get("cpu_usage_ns", 0), working_set(cp.raw) or 0, c.started)))
                if not points or any(mp.cpu_ns == 0 or mp.memory == 0 for _, mp in points):
                    continue  # the whole pod is dropped when any container reads zero
                seen.add(key)
                if self.pod_uids.get(key) != p.uid:
                    self.containers.pop(key, None)
                    self.pod_uids[key] = p.uid
                old = self.containers.get(key, {})
                new: dict[str, tuple[MPoint | None, MPoint]] = {}
                for name, mp in points:
                    prev = old.get(name)
                    if prev is not None and (mp.start != prev[1].start or mp.cpu_ns < prev[1].cpu_ns):
                        prev = None  # restarted: start over
                    nxt = _advance(prev, mp)
                    if nxt[0] is None and NEW_CONTAINER_MIN_AGE <= now - mp.start < self.resolution:
                        nxt = (MPoint(int(mp.start * 1000), 0, 0, mp.start), mp)
                    new[name] = nxt
                self.containers[key] = new
            for key in list(self.containers):
                if key not in seen:
                    del self.containers[key]
                    self.pod_uids.pop(key, None)

    # -- API -------------------------------------------------------------------------------------
    def node_metrics(self, version: str) -> list[Obj]:
        out = []
        with self._lock:
            items = list(self.nodes.items())
        for name, (prev, last) in items:
            if prev is None:
                continue
            u = usage(prev, last)
            node = self.store.try_get("v1/nodes", "", name)
            if u is None or node is None:
                continue
            out.append({"kind": "NodeMetrics", "apiVersion": f"{GROUP}/{version}",
                        "metadata": self._meta(node, name), "timestamp": rfc3339(last.t_ms / 1000), "window": go_duration(u[1]),
                        "usage": u[0]})
        return out

    def pod_metrics(self, version: str, namespace: str | None) -> list[Obj]:
        out = []
        with self._lock:
            items = [(k, dict(v)) for k, v in self.containers.items() if namespace is None or k[0] == namespace]
        for (ns, name), cs in sorted(items):
            if any(prev is None for prev, _ in cs.values()):
                continue  # served only when every container has two points
            pod = self.store.try_get("v1/pods", ns, name)
            if pod is None:
                continue
            containers, first = [], None
            for cname, (prev, last) in cs.items():
                u = usage(prev, last)  # type: ignore[arg-type]
                if u is None:
                    break
                containers.append({"name": cname, "usage": u[0]})
                if first is None or last.t_ms / 1000 < first[0]:
                    first = (last.t_ms / 1000, u[1])
            else:
                assert first is not None
                out.append({"kind": "PodMetrics", "apiVersion": f"{GROUP}/{version}", "metadata": self._meta(pod, name, ns),
                            "timestamp": rfc3339(first[0]), "window": go_duration(first[1]), "containers": containers})
        return out

    def _meta(self, obj: Obj, name: str, namespace: str | None = None) -> Obj:
        meta: Obj = {"name": name}
        if namespace is not None:
            meta["namespace"] = namespace
        meta["creationTimestamp"] = rfc3339(self.clock())
        labels = obj.get("metadata", {}).get("labels")
        if labels:
            meta["labels"] = copy.deepcopy(labels)
        return meta

    def handle(self, req: Request, parts: list[str]) -> Response:
        if not parts:
            versions = [{"groupVersion": f"{GROUP}/{v}", "version": v} for v in VERSIONS]
            return Response(200, {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": versions,
                                  "preferredVersion": versions[0]})
        version, rest = parts[0], parts[1:]
        if version not in VERSIONS:
            raise _no_resource()
        if not rest:
            return Response(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{version}",
                                  "resources": [
                                      {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics",
                                       "verbs": ["get", "list"]},
                                      {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics",
                                       "verbs": ["get", "list"]}]})
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] == "pods":
            namespace, rest = rest[1], rest[2:]
        if rest[0] not in ("nodes", "pods") or len(rest) > 2 or (rest[0] == "nodes" and namespace is not None):
            raise _no_resource()
        if req.method != "GET":
            raise errors.method_not_allowed()
        if req.flag("watch"):
            raise errors.method_not_allowed("metrics.k8s.io does not support watch")
        plural = rest[0]
        kind = "NodeMetrics" if plural == "nodes" else "PodMetrics"
        items = self.node_metrics(version) if plural == "nodes" else self.pod_metrics(version, namespace)
        if len(rest) == 2:
            found = [i for i in items if i["metadata"]["name"] == rest[1]]
            if not found:  # metrics-server names a missing pod namespace/name
                raise errors.not_found("nodemetrics" if plural == "nodes" else "podmetrics",
                                       rest[1] if plural == "nodes" else f"{namespace}/{rest[1]}", GROUP)
            return Response(200, _table(found, plural) if _wants_table(req) else found[0])
        labels = parse_label_selector(req.q("labelSelector"))
        fields = parse_field_selector(req.q("fieldSelector"), frozenset({"metadata.name", "metadata.namespace"}))
        items = [i for i in items if labels(i) and fields(i)]
        if _wants_table(req):
            return Response(200, _table(items, plural))
        return Response(200, {"kind": f"{kind}List", "apiVersion": f"{GROUP}/{version}", "metadata": {}, "items": items})


def _advance(points: tuple[MPoint | None, MPoint] | None, new: MPoint) -> tuple[MPoint | None, MPoint]:
    if points is None:
        return (None, new)
    if new.t_ms <= points[1].t_ms:
        return points  # the kubelet has not sampled since: nothing new
    return (points[1], new)


def _table(items: list[Obj], plural: str) -> Obj:
    """metrics-server's table: Name, CPU, Memory, Window (pod sums over its containers)."""
    from ..quantity import parse

    cols = [{"name": "Name", "type": "string", "format": "name", "description": "Name of the resource", "priority": 0},
            {"name": "CPU", "type": "string", "format": "", "description": "CPU usage", "priority": 0},
            {"name": "Memory", "type": "string", "format": "", "description": "Memory usage", "priority": 0},
            {"name": "Window", "type": "string", "format": "", "description": "Window of the measurement", "priority": 0}]
    rows = []
    for it in items:
        usages = [it["usage"]] if plural == "nodes" else [c["usage"] for c in it["containers"]]
        cpu = sum(int(parse(u["cpu"]) * 10**9) for u in usages)
        mem = sum(int(parse(u["memory"])) for u in usages)
        rows.append({"cells": [it["metadata"]["name"], cpu_quantity(cpu), memory_quantity(mem), it["window"]],
                     "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": it["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": cols, "rows": rows}
