"""Watch pods (by label selector) or nodes over time and turn counters into rates.

Pods are read from ``/metrics/cadvisor`` of the nodes they run on, nodes from ``/metrics/resource``; both carry
millisecond sample timestamps, so rates use the kubelet's sample times, not the time of our request. Nodes are read
concurrently with a bound (`kperflab.parallel`).

Columns (pods): time, node, namespace, pod, container, cpu_seconds_total, cpu_cores, cfs_periods_total,
cfs_throttled_periods_total, throttled_ratio (Δthrottled/Δperiods, NaN without a CPU limit), memory_working_set_bytes,
memory_rss_bytes, memory_cache_bytes, memory_usage_bytes. Nodes: time, node, cpu_seconds_total, cpu_cores,
memory_working_set_bytes.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd

from . import metrics
from .parallel import MAX_WORKERS, parallel_map
from .progress import quiet

POD_FAMILIES = {
    "container_cpu_usage_seconds_total": "cpu_seconds_total",
    "container_cpu_cfs_periods_total": "cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total": "cfs_throttled_periods_total",
    "container_memory_working_set_bytes": "memory_working_set_bytes",
    "container_memory_rss": "memory_rss_bytes",
    "container_memory_cache": "memory_cache_bytes",
    "container_memory_usage_bytes": "memory_usage_bytes",
}
POD_KEYS = ["node", "namespace", "pod", "container"]


class Sampler:
    def __init__(self, cluster: Any, *, selector: str | None = None, namespace: str | None = None, nodes: bool = False,
                 interval: float = 5.0, max_workers: int = MAX_WORKERS) -> None:
        self.cluster = cluster
        self.selector = selector
        self.namespace = namespace or cluster.namespace
        self.nodes_mode = nodes
        self.interval = interval
        self.max_workers = max_workers
        self.rows: list[dict[str, Any]] = []

    # -- one round -----------------------------------------------------------------------------
    def _targets(self) -> dict[str, set[tuple[str, str]]]:
        """node → {(namespace, pod)} of the selected pods."""
        from .cluster import translate

        try:
            pods = self.cluster.core.list_namespaced_pod(self.namespace, label_selector=self.selector or None,
                                                         _request_timeout=self.cluster.timeout).items
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, self.cluster.conn.server, verb="list", resource=f"pods in {self.namespace}") from None
        out: dict[str, set[tuple[str, str]]] = {}
        for p in pods:
            if p.spec.node_name:
                out.setdefault(p.spec.node_name, set()).add((p.metadata.namespace, p.metadata.name))
        return out

    def read_once(self) -> list[dict[str, Any]]:
        """One reading of every target: raw counters with the kubelet's sample time."""
        if self.nodes_mode:
            names = self.cluster.nodes or [n["metadata"]["name"] for n in self.cluster.node_objects()]
            parts = parallel_map(self._read_node, names, self.max_workers)
        else:
            targets = self._targets()
            parts = parallel_map(lambda n: self._read_pods(n, targets[n]), list(targets), self.max_workers)
        rows = [r for part in parts for r in part]
        self.rows.extend(rows)
        return rows

    def _read_node(self, node: str) -> list[dict[str, Any]]:
        df = metrics.prometheus_frame(self.cluster.node_proxy(node, "metrics/resource"),
                                      ["node_cpu_usage_seconds_total", "node_memory_working_set_bytes"])
        row: dict[str, Any] = {"node": node, "time": pd.NaT}
        for r in df.to_dict("records"):
            if r["metric"] == "node_cpu_usage_seconds_total":
                row["cpu_seconds_total"], row["time"] = r["value"], r["timestamp"]
            else:
                row["memory_working_set_bytes"] = r["value"]
        return [row] if "cpu_seconds_total" in row else []

    def _read_pods(self, node: str, pods: set[tuple[str, str]]) -> list[dict[str, Any]]:
        df = metrics.prometheus_frame(self.cluster.node_proxy(node, "metrics/cadvisor"), list(POD_FAMILIES))
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in df.to_dict("records"):
            if (r.get("namespace"), r.get("pod")) not in pods or not r.get("container") or not r.get("image"):
                continue  # the pod-cgroup and pause series would count twice (the mixin's image!="" rule)
            key = (r["namespace"], r["pod"], r["container"])
            row = out.setdefault(key, {"node": node, "namespace": key[0], "pod": key[1], "container": key[2], "time": pd.NaT})
            col = POD_FAMILIES[r["metric"]]
            row[col] = r["value"]
            if col == "cpu_seconds_total":
                row["time"] = r["timestamp"]
        return list(out.values())

    # -- over time -----------------------------------------------------------------------------
    def run(self, duration: float | None = None, samples: int | None = None, progress: bool = True) -> pd.DataFrame:
        """Read every ``interval`` seconds for ``duration`` seconds (or ``samples`` times); return `frame()`."""
        from tqdm.auto import tqdm

        count = samples if samples is not None else max(2, int((duration or self.interval * 2) / self.interval) + 1)
        start = time.monotonic()
        for i in tqdm(range(count), desc="sampling", unit="sample", disable=quiet(progress), leave=False):
            self.read_once()
            if i < count - 1:
                time.sleep(max(0.0, start + (i + 1) * self.interval - time.monotonic()))
        return self.frame()

    def frame(self) -> pd.DataFrame:
        """Everything read so far, with rates between consecutive distinct samples of each series."""
        return rates(pd.DataFrame(self.rows), nodes=self.nodes_mode)


def rates(df: pd.DataFrame, nodes: bool = False) -> pd.DataFrame:
    """Add ``cpu_cores`` = Δcpu_seconds/Δt and (pods) ``throttled_ratio`` = Δthrottled/Δperiods per series;
    repeated readings of the same kubelet sample are dropped first."""
    if df.empty:
        return df
    keys = ["node"] if nodes else POD_KEYS
    df = df.drop_duplicates(subset=[*keys, "time"]).sort_values([*keys, "time"]).reset_index(drop=True)
    g = df.groupby(keys, sort=False)
    dt = g["time"].diff().dt.total_seconds()
    dcpu = g["cpu_seconds_total"].diff()
    df["cpu_cores"] = (dcpu / dt).where(dcpu >= 0)  # a restart resets the counter: no rate across it
    if not nodes:
        for col in ("cfs_periods_total", "cfs_throttled_periods_total"):
            if col not in df:
                df[col] = math.nan
        dp = g["cfs_periods_total"].diff()
        dthr = g["cfs_throttled_periods_total"].diff()
        df["throttled_ratio"] = (dthr / dp).where(dp > 0)
    return df
