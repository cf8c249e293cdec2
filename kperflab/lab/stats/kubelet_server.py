"""The kubelet's HTTP endpoints, reached through the API server's node proxy as on a real cluster:
``/healthz``, ``/pods``, ``/stats/summary``, ``/metrics``, ``/metrics/resource`` and ``/metrics/cadvisor``.

Everything here formats the sampler's latest snapshot (see `cadvisor`); nothing reads cgroups itself. Field names,
omission rules, metric families, label sets and HELP strings follow upstream (../shared/reference/metrics.md):
the Summary API types in ``k8s.io/kubelet/pkg/apis/stats/v1alpha1``, the resource collector in
``pkg/kubelet/metrics/collectors/resource_metrics.go`` and cAdvisor's ``metrics/prometheus.go``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector, generate_latest

from ..apiserver import Response
from ..store import rfc3339
from . import promtext
from .cadvisor import (
    KUBELET,
    NODE,
    UNLIMITED,
    PodTarget,
    Point,
    Sampler,
    Snapshot,
    boot_time,
    network_interfaces,
    working_set,
)
from .fsstats import FsUsage, VolumeUsage
from .promtext import Family

Obj = dict[str, Any]
NOT_FOUND = Response(404, "404 page not found\n", "text/plain; charset=utf-8")


# -- Summary API ----------------------------------------------------------------------------------------

def _cpu(snap: Snapshot, key: str) -> Obj | None:
    p = snap.last(key)
    if p is None or "cpu_usage_ns" not in p.raw:
        return None
    out: Obj = {"time": p.t}
    rate = snap.rate(key)
    if rate is not None:
        out["usageNanoCores"] = int(rate)
    out["usageCoreNanoSeconds"] = p.raw["cpu_usage_ns"]
    return out


def _memory(p: Point | None) -> Obj | None:
    if p is None or "memory_usage" not in p.raw:
        return None
    raw = p.raw
    ws = working_set(raw) or 0
    out: Obj = {"time": p.t}
    limit = raw.get("memory_limit")
    if limit is not None and limit <= UNLIMITED:
        out["availableBytes"] = max(0, limit - ws)
    out["usageBytes"] = raw["memory_usage"]
    out["workingSetBytes"] = ws
    if "memory_rss" in raw:
        out["rssBytes"] = raw["memory_rss"]
    if "pgfault" in raw:
        out["pageFaults"] = raw["pgfault"]
        out["majorPageFaults"] = raw.get("pgmajfault", 0)
    return out


def _swap(p: Point | None) -> Obj | None:
    if p is None or "memory_swap" not in p.raw:
        return None
    out: Obj = {"time": p.t}
    if p.raw.get("swap_total"):
        out["swapAvailableBytes"] = max(0, p.raw["swap_total"] - p.raw["memory_swap"])
    out["swapUsageBytes"] = p.raw["memory_swap"]
    return out


def _fs(st: os.statvfs_result, t: float, used: int | None = None, inodes_used: int | None = None) -> Obj:
    """FsStats of the lab's filesystem (``st``: one statvfs per summary) with what this user of it takes."""
    out: Obj = {"time": t, "availableBytes": st.f_bavail * st.f_frsize, "capacityBytes": st.f_blocks * st.f_frsize}
    if used is not None:
        out["usedBytes"] = used
    out.update({"inodesFree": st.f_favail, "inodes": st.f_files})
    if inodes_used is not None:
        out["inodesUsed"] = inodes_used
    else:
        out["inodesUsed"] = st.f_files - st.f_ffree
    return out


def _du(path: Path) -> tuple[int, int]:
    """Bytes allocated and inodes used under a directory."""
    size = count = 0
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    st = os.lstat(os.path.join(root, name))
                except OSError:
                    continue
                size += st.st_blocks * 512
                count += 1
    return size, count


def _section(obj: Obj, key: str, value: Obj | None) -> None:
    if value is not None:
        obj[key] = value


def _network(t: float, proc: Path = Path("/proc")) -> Obj | None:
    """The node's interfaces from /proc/net/dev, the default route's first (the kubelet's "eth0")."""
    try:
        lines = (proc / "net" / "dev").read_text().splitlines()[2:]
    except OSError:
        return None
    ifaces = []
    for line in lines:
        name, _, rest = line.partition(":")
        f = rest.split()
        if name.strip() == "lo" or len(f) < 16:
            continue
        ifaces.append({"name": name.strip(), "rxBytes": int(f[0]), "rxErrors": int(f[2]),
                       "txBytes": int(f[8]), "txErrors": int(f[10])})
    if not ifaces:
        return None
    default = ""
    try:
        for line in (proc / "net" / "route").read_text().splitlines()[1:]:
            f = line.split()
            if len(f) > 1 and f[1] == "00000000":
                default = f[0]
                break
    except OSError:
        pass
    first = next((i for i in ifaces if i["name"] == default), ifaces[0])
    return {"time": t, **first, "interfaces": ifaces}


def _pod_network(t: float, raw: dict[str, int]) -> Obj | None:
    """The pod's network stats as the Summary API gives them: eth0's counters inline, every interface listed."""
    ifaces = [{"name": name, "rxBytes": f.get("rx_bytes", 0), "rxErrors": f.get("rx_errors", 0),
               "txBytes": f.get("tx_bytes", 0), "txErrors": f.get("tx_errors", 0)}
              for name, f in sorted(network_interfaces(raw).items())]
    if not ifaces:
        return None
    first = next((i for i in ifaces if i["name"] == "eth0"), ifaces[0])
    return {"time": t, **first, "interfaces": ifaces}


def _rlimit(t: float, proc: Path = Path("/proc")) -> Obj:
    out: Obj = {"time": t}
    try:
        out["maxpid"] = int((proc / "sys" / "kernel" / "pid_max").read_text())
        out["curproc"] = int((proc / "loadavg").read_text().split()[3].split("/")[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _system_container(snap: Snapshot, key: str, name: str, start: float) -> Obj | None:
    p = snap.last(key)
    if p is None:
        return None
    out: Obj = {"name": name, "startTime": start}
    _section(out, "cpu", _cpu(snap, key))
    _section(out, "memory", _memory(p))
    return out


def summary(snap: Snapshot, node_name: str, fs_path: Path, lab_started: float, pods_cgroup_started: float,
            only_cpu_and_memory: bool = False, image_fs: Callable[[], Obj] | None = None) -> Obj:
    st = os.statvfs(fs_path)
    node: Obj = {"nodeName": node_name}
    systems = [c for c in (_system_container(snap, KUBELET, "kubelet", lab_started),
                           _system_container(snap, snap.pods_cgroup, "pods", pods_cgroup_started)) if c]
    if systems:
        node["systemContainers"] = systems
    node["startTime"] = boot_time()
    last = snap.last(NODE)
    _section(node, "cpu", _cpu(snap, NODE))
    _section(node, "memory", _memory(last))
    if not only_cpu_and_memory:
        _section(node, "network", _network(snap.t))
        node["fs"] = _fs(st, snap.t, used=(st.f_blocks - st.f_bfree) * st.f_frsize)
        if image_fs is not None:
            # the image store's own filesystem (statfs: cheap enough for a request); the containers' writable
            # layers are in their bundles on the node's filesystem (a split image filesystem, KEP-4191)
            f = image_fs()
            node["runtime"] = {"imageFs": {"time": snap.t, "availableBytes": f["availableBytes"],
                                           "capacityBytes": f["capacityBytes"], "usedBytes": f["usedBytes"],
                                           "inodesFree": f["inodesFree"], "inodes": f["inodes"],
                                           "inodesUsed": f["inodesUsed"]},
                               "containerFs": _fs(st, snap.t)}
        else:
            images_used, images_inodes = _du(fs_path / "images")
            node["runtime"] = {"imageFs": _fs(st, snap.t, images_used, images_inodes),
                               "containerFs": _fs(st, snap.t, images_used, images_inodes)}
        node["rlimit"] = _rlimit(snap.t)
        _section(node, "swap", _swap(last))
    pods = [_pod(snap, p, st, only_cpu_and_memory) for p in snap.pods]
    return {"node": node, "pods": [p for p in pods if p is not None]}


def _usage(u: FsUsage) -> Obj:
    """FsStats as the Summary API writes them (field order of the Go struct; nil fields left out)."""
    out: Obj = {"time": u.time, "availableBytes": u.available, "capacityBytes": u.capacity}
    if u.used is not None:
        out["usedBytes"] = u.used
    out.update({"inodesFree": u.inodes_free, "inodes": u.inodes})
    if u.inodes_used is not None:
        out["inodesUsed"] = u.inodes_used
    return out


def _volume(v: VolumeUsage) -> Obj:
    """VolumeStats: its FsStats inline (every field set, as the volume stat calculator fills them), name, pvcRef."""
    u = v.usage
    out: Obj = {"time": u.time, "availableBytes": u.available, "capacityBytes": u.capacity, "usedBytes": u.used or 0,
                "inodesFree": u.inodes_free, "inodes": u.inodes, "inodesUsed": u.inodes_used or 0, "name": v.target.name}
    if v.target.pvc is not None:
        out["pvcRef"] = {"name": v.target.pvc[1], "namespace": v.target.pvc[0]}
    return out


def _pod(snap: Snapshot, p: PodTarget, st: os.statvfs_result, only_cpu_and_memory: bool) -> Obj | None:
    last = snap.last(p.cgroup)
    if last is None:
        return None
    out: Obj = {"podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid}, "startTime": p.started}
    containers = []
    fs = p.storage  # the kubelet's last volume-stats round (None until its first)
    for c in p.containers:
        cp = snap.last(c.cgroup)
        if cp is None:
            continue
        co: Obj = {"name": c.name, "startTime": c.started}
        _section(co, "cpu", _cpu(snap, c.cgroup))
        _section(co, "memory", _memory(cp))
        if not only_cpu_and_memory:
            if fs is not None and c.name in fs.rootfs:  # the writable layer: part of the pod's ephemeral storage
                co["rootfs"] = _usage(fs.rootfs[c.name])
            if fs is not None and c.name in fs.logs:
                co["logs"] = _usage(fs.logs[c.name])
            _section(co, "swap", _swap(cp))
        containers.append(co)
    out["containers"] = containers
    _section(out, "cpu", _cpu(snap, p.cgroup))
    _section(out, "memory", _memory(last))
    if not only_cpu_and_memory:
        _section(out, "network", _pod_network(last.t, last.raw))
        if fs is not None:
            if fs.volumes:
                # the local ephemeral volumes first, then the others, as the stats provider appends them
                vols = [v for v in fs.volumes if v.target.ephemeral] + [v for v in fs.volumes if not v.target.ephemeral]
                out["volume"] = [_volume(v) for v in vols]
            out["ephemeral-storage"] = _usage(fs.ephemeral)
        if "process_count" in last.raw:
            out["process_stats"] = {"process_count": last.raw["process_count"]}
        _section(out, "swap", _swap(last))
    return out


# -- /metrics/resource ----------------------------------------------------------------------------------

def resource_metrics(summ: Obj, scrape_error: bool = False) -> str:
    """The kubelet's resource collector over a Summary (as `summary` builds it, times still epoch floats), with
    its exact families and millisecond timestamps."""
    def ts(section: Obj) -> float:
        return float(section["time"])

    fams = {
        "node_cpu_usage_seconds_total": Family("node_cpu_usage_seconds_total", "counter",
                                               "[STABLE] Cumulative cpu time consumed by the node in core-seconds"),
        "node_memory_working_set_bytes": Family("node_memory_working_set_bytes", "gauge",
                                                "[STABLE] Current working set of the node in bytes"),
        "node_swap_usage_bytes": Family("node_swap_usage_bytes", "gauge",
                                        "[ALPHA] Current swap usage of the node in bytes. Reported only on non-windows systems"),
        "container_cpu_usage_seconds_total": Family("container_cpu_usage_seconds_total", "counter",
                                                    "[STABLE] Cumulative cpu time consumed by the container in core-seconds"),
        "container_memory_working_set_bytes": Family("container_memory_working_set_bytes", "gauge",
                                                     "[STABLE] Current working set of the container in bytes"),
        "container_start_time_seconds": Family("container_start_time_seconds", "gauge",
                                               "[STABLE] Start time of the container since unix epoch in seconds"),
        "container_swap_usage_bytes": Family("container_swap_usage_bytes", "gauge",
                                             "[ALPHA] Current amount of the container swap usage in bytes. Reported only on non-windows systems"),
        "pod_cpu_usage_seconds_total": Family("pod_cpu_usage_seconds_total", "counter",
                                              "[STABLE] Cumulative cpu time consumed by the pod in core-seconds"),
        "pod_memory_working_set_bytes": Family("pod_memory_working_set_bytes", "gauge",
                                               "[STABLE] Current working set of the pod in bytes"),
        "pod_swap_usage_bytes": Family("pod_swap_usage_bytes", "gauge",
                                       "[ALPHA] Current amount of the pod swap usage in bytes. Reported only on non-windows systems"),
        "resource_scrape_error": Family("resource_scrape_error", "gauge",
                                        "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise"),
    }
    node = summ.get("node", {})
    if "cpu" in node and "usageCoreNanoSeconds" in node["cpu"]:
        fams["node_cpu_usage_seconds_total"].add({}, node["cpu"]["usageCoreNanoSeconds"] / 1e9, ts(node["cpu"]))
    if "memory" in node and "workingSetBytes" in node["memory"]:
        fams["node_memory_working_set_bytes"].add({}, node["memory"]["workingSetBytes"], ts(node["memory"]))
    if "swap" in node and "swapUsageBytes" in node["swap"]:
        fams["node_swap_usage_bytes"].add({}, node["swap"]["swapUsageBytes"], ts(node["swap"]))
    for pod in summ.get("pods", []):
        ref = pod["podRef"]
        pl = {"namespace": ref["namespace"], "pod": ref["name"]}
        if "cpu" in pod and "usageCoreNanoSeconds" in pod["cpu"]:
            fams["pod_cpu_usage_seconds_total"].add(pl, pod["cpu"]["usageCoreNanoSeconds"] / 1e9, ts(pod["cpu"]))
        if "memory" in pod and "workingSetBytes" in pod["memory"]:
            fams["pod_memory_working_set_bytes"].add(pl, pod["memory"]["workingSetBytes"], ts(pod["memory"]))
        if "swap" in pod and "swapUsageBytes" in pod["swap"]:
            fams["pod_swap_usage_bytes"].add(pl, pod["swap"]["swapUsageBytes"], ts(pod["swap"]))
        for c in pod.get("containers", []):
            cl = {"container": c["name"], **pl}
            if "cpu" in c and "usageCoreNanoSeconds" in c["cpu"]:
                fams["container_cpu_usage_seconds_total"].add(cl, c["cpu"]["usageCoreNanoSeconds"] / 1e9, ts(c["cpu"]))
            if "memory" in c and "workingSetBytes" in c["memory"]:
                fams["container_memory_working_set_bytes"].add(cl, c["memory"]["workingSetBytes"], ts(c["memory"]))
            start = float(c.get("startTime") or 0)
            if start > 0:
                fams["container_start_time_seconds"].add(cl, start)  # no timestamp, as the kubelet
            if "swap" in c and "swapUsageBytes" in c["swap"]:
                fams["container_swap_usage_bytes"].add(cl, c["swap"]["swapUsageBytes"], ts(c["swap"]))
    fams["resource_scrape_error"].add({}, 1 if scrape_error else 0)
    return promtext.render(list(fams.values()))


def to_wire(obj: Any) -> Any:
    """The Summary as JSON: times (kept as epoch floats while building) become metav1.Time strings."""
    if isinstance(obj, dict):
        return {k: (rfc3339(v) if k in ("time", "startTime") and isinstance(v, float | int) else to_wire(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_wire(v) for v in obj]
    return obj


# -- /metrics/cadvisor ----------------------------------------------------------------------------------

CADVISOR_HELP = {
    "container_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed in seconds."),
    "container_cpu_user_seconds_total": ("counter", "Cumulative user cpu time consumed in seconds."),
    "container_cpu_system_seconds_total": ("counter", "Cumulative system cpu time consumed in seconds."),
    "container_cpu_cfs_periods_total": ("counter", "Number of elapsed enforcement period intervals."),
    "container_cpu_cfs_throttled_periods_total": ("counter", "Number of throttled period intervals."),
    "container_cpu_cfs_throttled_seconds_total": ("counter", "Total time duration the container has been throttled."),
    "container_memory_usage_bytes": ("gauge", "Current memory usage in bytes, including all memory regardless of when it was accessed"),
    "container_memory_working_set_bytes": ("gauge", "Current working set in bytes."),
    "container_memory_rss": ("gauge", "Size of RSS in bytes."),
    "container_memory_cache": ("gauge", "Number of bytes of page cache memory."),
    "container_memory_swap": ("gauge", "Container swap usage in bytes."),
    "container_memory_total_active_file_bytes": ("gauge", "Current total active file in bytes."),
    "container_memory_total_inactive_file_bytes": ("gauge", "Current total inactive file in bytes."),
    "container_memory_failures_total": ("counter", "Cumulative count of memory allocation failures."),
    "container_oom_events_total": ("counter", "Count of out of memory events observed for the container"),
    "container_spec_cpu_period": ("gauge", "CPU period of the container."),
    "container_spec_cpu_quota": ("gauge", "CPU quota of the container."),
    "container_spec_cpu_shares": ("gauge", "CPU share of the container."),
    "container_spec_memory_limit_bytes": ("gauge", "Memory limit for the container."),
    "container_start_time_seconds": ("gauge", "Start time of the container since unix epoch in seconds."),
    "container_network_receive_bytes_total": ("counter", "Cumulative count of bytes received"),
    "container_network_receive_packets_total": ("counter", "Cumulative count of packets received"),
    "container_network_receive_errors_total": ("counter", "Cumulative count of errors encountered while receiving"),
    "container_network_receive_packets_dropped_total": ("counter", "Cumulative count of packets dropped while receiving"),
    "container_network_transmit_bytes_total": ("counter", "Cumulative count of bytes transmitted"),
    "container_network_transmit_packets_total": ("counter", "Cumulative count of packets transmitted"),
    "container_network_transmit_errors_total": ("counter", "Cumulative count of errors encountered while transmitting"),
    "container_network_transmit_packets_dropped_total": ("counter", "Cumulative count of packets dropped while transmitting"),
    "container_last_seen": ("gauge", "Last time a container was seen by the exporter"),
    "machine_cpu_cores": ("gauge", "Number of logical CPU cores."),
    "machine_memory_bytes": ("gauge", "Amount of memory installed on the machine."),
}


def cadvisor_metrics(snap: Snapshot, machine: dict[str, str]) -> str:
    fams = {name: Family(name, t, h) for name, (t, h) in CADVISOR_HELP.items()}
    series: list[tuple[dict[str, str], str, float, int | None]] = []  # labels, key, start, OOM kills (None: no series)

    def oom(key: str, past: int) -> int:
        point = snap.last(key)
        return past + (point.raw.get("oom_kill", 0) if point else 0)

    series.append(({"container": "", "id": "/", "image": "", "name": "", "namespace": "", "pod": ""}, "/", boot_time(), None))
    pods_start = snap.history.get(snap.pods_cgroup)
    if pods_start:
        series.append(({"container": "", "id": f"/{snap.pods_cgroup}", "image": "", "name": "", "namespace": "", "pod": ""},
                       snap.pods_cgroup, pods_start[0].t, oom(snap.pods_cgroup, 0)))
    for p in snap.pods:
        kills = {c.cgroup: oom(c.cgroup, c.past_oom_events) for c in p.containers}
        # the pod cgroup: its own counter (hierarchical on v2) or what its containers counted, whichever is more
        pod_kills = max(oom(p.cgroup, 0), p.past_oom_events + sum(kills[c.cgroup] - c.past_oom_events for c in p.containers))
        series.append(({"container": "", "id": f"/{p.cgroup}", "image": "", "name": "", "namespace": p.namespace,
                        "pod": p.name}, p.cgroup, p.started, pod_kills))
        for c in p.containers:
            series.append(({"container": c.name, "id": f"/{c.cgroup}", "image": c.image, "name": c.container_id,
                            "namespace": p.namespace, "pod": p.name}, c.cgroup, c.started, kills[c.cgroup]))
    for labels, key, start, oom_kills in series:
        point = snap.last(NODE if key == "/" else key)
        if point is None:
            continue
        raw, t = point.raw, point.t
        if "cpu_usage_ns" in raw:
            fams["container_cpu_usage_seconds_total"].add({**labels, "cpu": "total"}, raw["cpu_usage_ns"] / 1e9, t)
        if "cpu_user_ns" in raw:
            fams["container_cpu_user_seconds_total"].add(labels, raw["cpu_user_ns"] / 1e9, t)
            fams["container_cpu_system_seconds_total"].add(labels, raw.get("cpu_system_ns", 0) / 1e9, t)
        quota = raw.get("cpu_quota_us", -1)
        if quota > 0:  # cAdvisor: CFS series only for containers with a quota
            fams["container_cpu_cfs_periods_total"].add(labels, raw.get("nr_periods", 0), t)
            fams["container_cpu_cfs_throttled_periods_total"].add(labels, raw.get("nr_throttled", 0), t)
            fams["container_cpu_cfs_throttled_seconds_total"].add(labels, raw.get("throttled_ns", 0) / 1e9, t)
            fams["container_spec_cpu_quota"].add(labels, quota)
            fams["container_spec_cpu_period"].add(labels, raw.get("cpu_period_us", 100_000))
        if "cpu_shares" in raw:
            fams["container_spec_cpu_shares"].add(labels, raw["cpu_shares"])
        if "memory_usage" in raw:
            fams["container_memory_usage_bytes"].add(labels, raw["memory_usage"], t)
            fams["container_memory_working_set_bytes"].add(labels, working_set(raw) or 0, t)
            fams["container_memory_rss"].add(labels, raw.get("memory_rss", 0), t)
            fams["container_memory_cache"].add(labels, raw.get("memory_cache", 0), t)
            fams["container_memory_swap"].add(labels, raw.get("memory_swap", 0), t)
            fams["container_memory_total_active_file_bytes"].add(labels, raw.get("memory_active_file", 0), t)
            fams["container_memory_total_inactive_file_bytes"].add(labels, raw.get("memory_inactive_file", 0), t)
            limit = raw.get("memory_limit", 0)
            if key != "/":
                fams["container_spec_memory_limit_bytes"].add(labels, 0 if limit > UNLIMITED else limit)
        if "pgfault" in raw:
            for scope in ("container", "hierarchy"):
                fams["container_memory_failures_total"].add({**labels, "failure_type": "pgfault", "scope": scope}, raw["pgfault"], t)
                fams["container_memory_failures_total"].add({**labels, "failure_type": "pgmajfault", "scope": scope},
                                                            raw.get("pgmajfault", 0), t)
        if oom_kills is not None:
            fams["container_oom_events_total"].add(labels, oom_kills, t)
        # the pod's network, on its pod-level series (containerd's containers share the sandbox's namespace)
        for iface, f in sorted(network_interfaces(raw).items()) if key != "/" else ():
            for field, fam in NETWORK_FAMILIES:
                fams[fam].add({**labels, "interface": iface}, f.get(field, 0), t)
        fams["container_start_time_seconds"].add(labels, start)
        fams["container_last_seen"].add(labels, t)
    node = snap.last(NODE)
    fams["machine_cpu_cores"].add(machine, os.cpu_count() or 1)
    if node is not None:
        fams["machine_memory_bytes"].add(machine, node.raw.get("memory_limit", 0))
    return promtext.render(list(fams.values()))


NETWORK_FAMILIES = (
    ("rx_bytes", "container_network_receive_bytes_total"), ("rx_packets", "container_network_receive_packets_total"),
    ("rx_errors", "container_network_receive_errors_total"),
    ("rx_dropped", "container_network_receive_packets_dropped_total"),
    ("tx_bytes", "container_network_transmit_bytes_total"), ("tx_packets", "container_network_transmit_packets_total"),
    ("tx_errors", "container_network_transmit_errors_total"),
    ("tx_dropped", "container_network_transmit_packets_dropped_total"),
)


# -- /metrics: kubelet_volume_stats_* ---------------------------------------------------------------------

VOLUME_STATS = (  # (name, HELP without the stability prefix, the FsUsage attribute)
    ("kubelet_volume_stats_capacity_bytes", "Capacity in bytes of the volume", "capacity"),
    ("kubelet_volume_stats_available_bytes", "Number of available bytes in the volume", "available"),
    ("kubelet_volume_stats_used_bytes", "Number of used bytes in the volume", "used"),
    ("kubelet_volume_stats_inodes", "Maximum number of inodes in the volume", "inodes"),
    ("kubelet_volume_stats_inodes_free", "Number of free inodes in the volume", "inodes_free"),
    ("kubelet_volume_stats_inodes_used", "Number of used inodes in the volume", "inodes_used"),
)


class VolumeStatsCollector:
    """The kubelet's volume stats collector (``pkg/kubelet/metrics/collectors/volume_stats.go``): one gauge per
    PVC-backed volume (labels namespace, persistentvolumeclaim; a claim used by two pods once), from the pods' last
    volume-stats round. Volumes without a claim (emptyDir, configMap …) are not exported, as in released kubelets."""

    def __init__(self, pods: Callable[[], list[PodTarget]]) -> None:
        self.pods = pods

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        fams = [(GaugeMetricFamily(name, f"[ALPHA] {help_}", labels=["namespace", "persistentvolumeclaim"]), attr)
                for name, help_, attr in VOLUME_STATS]
        seen: set[tuple[str, str]] = set()
        for p in self.pods():
            for v in p.storage.volumes if p.storage is not None else ():
                if v.target.pvc is None or v.target.pvc in seen:
                    continue
                seen.add(v.target.pvc)
                for fam, attr in fams:
                    fam.add_metric(list(v.target.pvc), float(getattr(v.usage, attr) or 0))
        return [fam for fam, _ in fams]


# -- routing --------------------------------------------------------------------------------------------

class KubeletServer:
    """What ``/api/v1/nodes/<node>/proxy/<path>`` reaches."""

    def __init__(self, sampler: Sampler, node_name: str, fs_path: Path, started: float,
                 machine: dict[str, str], pods_of_node: Callable[[], list[Obj]],
                 configz: Callable[[], Obj] | None = None, image_fs: Callable[[], Obj] | None = None,
                 collectors: Sequence[Any] = ()) -> None:
        self.sampler = sampler
        self.configz = configz  # the kubelet's configuration for /configz (None: 404, as a kubelet without it)
        self.image_fs = image_fs  # the image filesystem's numbers (the image store's fs_stats), else the node's
        self.node_name = node_name
        self.fs_path = fs_path
        self.started = started
        self.machine = machine
        self.pods_of_node = pods_of_node
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        Gauge("kperflab_housekeeping_last_duration_seconds", "Wall time of the last sampling round of every cgroup",
              registry=self.registry).set_function(lambda: sampler.last_duration)
        Gauge("kperflab_housekeeping_cpu_seconds", "CPU time the lab spent sampling cgroups since it started",
              registry=self.registry).set_function(lambda: sampler.cpu_seconds)
        Gauge("kperflab_housekeeping_rounds", "Sampling rounds since the lab started",
              registry=self.registry).set_function(lambda: sampler.rounds)
        Gauge("kubelet_running_pods", "Number of pods that have a running pod sandbox", registry=self.registry
              ).set_function(lambda: len(sampler.snapshot.pods))
        Gauge("kubelet_running_containers", "Number of containers currently running", ["container_state"],
              registry=self.registry).labels("running").set_function(
                  lambda: sum(len(p.containers) for p in sampler.snapshot.pods))
        self.registry.register(VolumeStatsCollector(lambda: sampler.snapshot.pods))  # type: ignore[arg-type]
        for collector in collectors:  # e.g. the image manager's pull and GC metrics
            self.registry.register(collector)

    def summary(self, only_cpu_and_memory: bool = False) -> Obj:
        snap = self.sampler.snapshot
        pods_hist = snap.history.get(snap.pods_cgroup)
        return summary(snap, self.node_name, self.fs_path, self.started,
                       pods_hist[0].t if pods_hist else self.started, only_cpu_and_memory, self.image_fs)

    def handle(self, node: str, path: str, query: dict[str, str]) -> Response:
        path = "/" + path.strip("/")
        if node != self.node_name:
            return NOT_FOUND
        if path == "/healthz":
            return Response(200, "ok", "text/plain; charset=utf-8")
        if path == "/pods":
            return Response(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": self.pods_of_node()})
        if path == "/stats/summary":
            only = query.get("only_cpu_and_memory", "").lower() in ("1", "true")
            return Response(200, json.dumps(to_wire(self.summary(only)), indent=2).encode(), "application/json")
        if path == "/metrics/resource":
            return Response(200, resource_metrics(self.summary(True)).encode(), promtext.CONTENT_TYPE)
        if path == "/metrics/cadvisor":
            return Response(200, cadvisor_metrics(self.sampler.snapshot, self.machine).encode(), promtext.CONTENT_TYPE)
        if path == "/metrics":
            return Response(200, generate_latest(self.registry), promtext.CONTENT_TYPE)
        if path == "/configz" and self.configz is not None:
            return Response(200, json.dumps(self.configz()).encode(), "application/json")
        return NOT_FOUND
