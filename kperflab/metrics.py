"""Turn what the metrics pipeline serves into tidy pandas DataFrames, with units in the column names.

Pure functions over payloads (no network), so they are tested on recorded payloads:

- `summary_frames` — the kubelet's Summary API (``/stats/summary``): one frame each for the node, pods, containers;
- `prometheus_frame` — any Prometheus text (``/metrics/resource``, ``/metrics/cadvisor``), one row per sample;
- `resource_frame` — ``/metrics/resource`` pivoted to one row per container;
- `top_frame` — NodeMetrics/PodMetrics as ``kubectl top`` computes and rounds them.

An absent field in the Summary means "unknown" upstream, so it becomes NaN here, never 0.
Prometheus text is parsed with ``prometheus_client``'s parser; quantities with ``kubernetes.utils``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import ROUND_CEILING, Decimal
from typing import Any

import pandas as pd
from kubernetes.utils import parse_quantity
from prometheus_client.parser import text_string_to_metric_families

Obj = dict[str, Any]
MiB = 1024 * 1024

# Summary field → column, per section
_CPU = {"usageNanoCores": ("cpu_cores", 1e-9), "usageCoreNanoSeconds": ("cpu_seconds_total", 1e-9)}
_MEM = {"usageBytes": ("memory_usage_bytes", 1), "workingSetBytes": ("memory_working_set_bytes", 1),
        "rssBytes": ("memory_rss_bytes", 1), "availableBytes": ("memory_available_bytes", 1),
        "pageFaults": ("page_faults", 1), "majorPageFaults": ("major_page_faults", 1)}
_SUMMARY_COLUMNS = [c for c, _ in _CPU.values()] + [c for c, _ in _MEM.values()]


def _time(value: Any) -> pd.Timestamp | Any:
    return pd.Timestamp(value) if value else pd.NaT


def _stats(obj: Obj) -> Obj:
    row: Obj = dict.fromkeys(_SUMMARY_COLUMNS, math.nan)
    cpu, mem = obj.get("cpu") or {}, obj.get("memory") or {}
    for key, (col, scale) in _CPU.items():
        if key in cpu:
            row[col] = cpu[key] * scale
    for key, (col, scale) in _MEM.items():
        if key in mem:
            row[col] = mem[key] * scale
    row["time"] = _time(cpu.get("time") or mem.get("time"))
    return row


def summary_frames(summary: Obj) -> dict[str, pd.DataFrame]:
    """``{"node": …, "pods": …, "containers": …}`` from one Summary."""
    node = summary.get("node") or {}
    name = node.get("nodeName", "")
    nrow = {"node": name, **_stats(node)}
    fs = node.get("fs") or {}
    nrow["fs_used_bytes"] = fs.get("usedBytes", math.nan)
    nrow["fs_capacity_bytes"] = fs.get("capacityBytes", math.nan)
    net = node.get("network") or {}
    nrow["network_rx_bytes_total"] = net.get("rxBytes", math.nan)
    nrow["network_tx_bytes_total"] = net.get("txBytes", math.nan)
    pods, containers = [], []
    for p in summary.get("pods") or []:
        ref = p.get("podRef") or {}
        eph = p.get("ephemeral-storage") or {}
        pods.append({"node": name, "namespace": ref.get("namespace", ""), "pod": ref.get("name", ""), **_stats(p),
                     "ephemeral_storage_used_bytes": eph.get("usedBytes", math.nan),
                     "processes": (p.get("process_stats") or {}).get("process_count", math.nan),
                     "start_time": _time(p.get("startTime"))})
        for c in p.get("containers") or []:
            containers.append({"node": name, "namespace": ref.get("namespace", ""), "pod": ref.get("name", ""),
                               "container": c.get("name", ""), **_stats(c),
                               "logs_used_bytes": (c.get("logs") or {}).get("usedBytes", math.nan),
                               "start_time": _time(c.get("startTime"))})
    cols_pod = ["node", "namespace", "pod", "time", *_SUMMARY_COLUMNS, "ephemeral_storage_used_bytes", "processes", "start_time"]
    cols_ctr = ["node", "namespace", "pod", "container", "time", *_SUMMARY_COLUMNS, "logs_used_bytes", "start_time"]
    return {"node": pd.DataFrame([nrow]),
            "pods": pd.DataFrame(pods, columns=cols_pod),
            "containers": pd.DataFrame(containers, columns=cols_ctr)}


def prometheus_frame(text: str, families: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per sample: ``metric``, one column per label, ``value``, ``timestamp`` (UTC, NaT when the sample has
    none). ``families`` keeps only those metric names (``container_cpu_usage_seconds_total`` or without ``_total``)."""
    wanted = {f.removesuffix("_total") for f in families} if families else None
    rows = []
    for fam in text_string_to_metric_families(text):
        if wanted is not None and fam.name not in wanted and fam.name.removesuffix("_total") not in wanted:
            continue
        for s in fam.samples:
            ts = _timestamp(s.timestamp)
            rows.append({"metric": s.name, **s.labels, "value": s.value, "timestamp": ts})
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=["metric", "value", "timestamp"])
    first = ["metric"] + sorted(c for c in df.columns if c not in ("metric", "value", "timestamp")) + ["value", "timestamp"]
    return df[first].fillna({c: "" for c in first[1:-2]})


def _timestamp(ts: Any) -> Any:
    """prometheus_client's Timestamp (sec, nsec) or float → pandas, without float rounding."""
    if ts is None:
        return pd.NaT
    if hasattr(ts, "sec"):
        return pd.Timestamp(ts.sec * 10**9 + ts.nsec, unit="ns", tz="UTC")
    return pd.Timestamp(round(float(ts) * 1000), unit="ms", tz="UTC")


def resource_frame(text: str) -> pd.DataFrame:
    """``/metrics/resource`` as one row per container: cpu_seconds_total, memory_working_set_bytes, start_time."""
    df = prometheus_frame(text, ["container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                                 "container_start_time_seconds"])
    cols = ["namespace", "pod", "container", "cpu_seconds_total", "memory_working_set_bytes", "start_time", "timestamp"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    out: dict[tuple[str, str, str], Obj] = {}
    names = {"container_cpu_usage_seconds_total": "cpu_seconds_total",
             "container_memory_working_set_bytes": "memory_working_set_bytes",
             "container_start_time_seconds": "start_time"}
    for r in df.to_dict("records"):
        key = (r["namespace"], r["pod"], r["container"])
        row = out.setdefault(key, {"namespace": key[0], "pod": key[1], "container": key[2], "timestamp": pd.NaT})
        col = names[r["metric"]]
        row[col] = pd.Timestamp(r["value"], unit="s", tz="UTC") if col == "start_time" else r["value"]
        if col == "cpu_seconds_total":
            row["timestamp"] = r["timestamp"]
    return pd.DataFrame(list(out.values()), columns=cols)


# -- kubectl top ----------------------------------------------------------------------------------------

def milli_value(q: Any) -> int:
    """Quantity.MilliValue(): ceil(q × 1000)."""
    return int((Decimal(parse_quantity(q)) * 1000).to_integral_value(rounding=ROUND_CEILING))


def _window_seconds(w: str) -> float:
    return pd.Timedelta(w).total_seconds() if w else math.nan


def top_frame(items: list[Obj], allocatable: dict[str, Obj] | None = None) -> pd.DataFrame:
    """NodeMetrics or PodMetrics items → one row per object, with ``kubectl top``'s numbers and rounding:
    ``cpu_millicores`` = ceil of the (summed) usage in millicores, ``memory_mib`` = floor of bytes / 2^20.
    Exact values are kept as ``cpu_cores`` and ``memory_bytes``. For nodes, ``allocatable`` (name → the node's
    status.allocatable) adds kubectl's truncated ``cpu_percent`` and ``memory_percent``."""
    rows = []
    for it in items:
        usages = [it["usage"]] if "usage" in it else [c["usage"] for c in it.get("containers", [])]
        cpu = sum((Decimal(parse_quantity(u.get("cpu", "0"))) for u in usages), Decimal(0))
        mem = sum((Decimal(parse_quantity(u.get("memory", "0"))) for u in usages), Decimal(0))
        meta = it.get("metadata", {})
        row: Obj = {"name": meta.get("name", "")}
        if "namespace" in meta:
            row["namespace"] = meta["namespace"]
        row.update({"cpu_millicores": milli_value(cpu), "memory_mib": int(mem) // MiB,
                    "cpu_cores": float(cpu), "memory_bytes": int(mem),
                    "window_seconds": _window_seconds(it.get("window", "")), "timestamp": _time(it.get("timestamp"))})
        if allocatable is not None and row["name"] in allocatable:
            alloc = allocatable[row["name"]]
            row["cpu_percent"] = int(milli_value(cpu) / milli_value(alloc["cpu"]) * 100)
            row["memory_percent"] = int(milli_value(mem) / milli_value(alloc["memory"]) * 100)
        rows.append(row)
    cols = ["name", "cpu_millicores", "memory_mib", "cpu_cores", "memory_bytes", "window_seconds", "timestamp"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)  # empty, but with the columns callers select


def container_frame(items: list[Obj]) -> pd.DataFrame:
    """PodMetrics → one row per container (``kubectl top pod --containers``)."""
    rows = []
    for it in items:
        for c in it.get("containers", []):
            cpu, mem = Decimal(parse_quantity(c["usage"].get("cpu", "0"))), Decimal(parse_quantity(c["usage"].get("memory", "0")))
            rows.append({"namespace": it["metadata"].get("namespace", ""), "pod": it["metadata"]["name"], "container": c["name"],
                         "cpu_millicores": milli_value(cpu), "memory_mib": int(mem) // MiB, "cpu_cores": float(cpu),
                         "memory_bytes": int(mem)})
    cols = ["namespace", "pod", "container", "cpu_millicores", "memory_mib", "cpu_cores", "memory_bytes"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)


def kubectl_top_lines(df: pd.DataFrame) -> list[str]:
    """The data rows ``kubectl top … --no-headers`` prints for the same frame (NAME CPU MEMORY), space-split."""
    return [f"{r.name} {r.cpu_millicores}m {r.memory_mib}Mi" for r in df.itertuples()]
