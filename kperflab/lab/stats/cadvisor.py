"""The lab's cAdvisor: samples the node, the pods' cgroup and every pod and container cgroup on one clock.

It keeps the last two samples of each cgroup, as the kubelet asks cAdvisor for (``Count: 2``), so that rates
(``usageNanoCores``) are taken between the last two samples and stamped with the sample time. Everything that
serves metrics (the kubelet endpoints, the metrics API) only formats what this module sampled.

Node numbers come from the root cgroup where it has them (cgroup v1) and from /proc otherwise (the v2 root
cgroup has no ``memory.current``; runc falls back to /proc/meminfo the same way).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..cgroups import CLK_TCK, Driver
from .fsstats import PodFsStats

UNLIMITED = 1 << 62  # the kubelet's isMemoryUnlimited: anything above is "no limit"


@dataclass(frozen=True)
class ContainerTarget:
    name: str
    cgroup: str
    container_id: str
    image: str
    started: float  # epoch seconds of the current run
    past_oom_events: int = 0  # OOM kills of earlier runs, whose cgroups are gone
    pid: int | None = None  # without cgroups (not root): the container's session, read from /proc
    rootfs: Path | None = None  # the container's writable layer (OCI runtime): its usage is the Summary's rootfs


@dataclass(frozen=True)
class PodTarget:
    uid: str
    namespace: str
    name: str
    cgroup: str
    started: float
    containers: tuple[ContainerTarget, ...]
    log_dir: Path | None = None
    past_oom_events: int = 0
    netns_pid: int | None = None  # a process in the pod's network namespace (its sandbox), for the network counters
    storage: PodFsStats | None = None  # its containers' and volumes' disk usage, from the kubelet's last volume-stats round


@dataclass(frozen=True)
class Point:
    t: float  # sample time, epoch seconds
    raw: dict[str, int]


@dataclass
class Snapshot:
    """The latest housekeeping round: what was targeted and the last two points of every cgroup."""

    t: float = 0.0
    pods: list[PodTarget] = field(default_factory=list)
    pods_cgroup: str = ""  # the lab's kubepods cgroup (its history key, and cAdvisor's id label)
    history: dict[str, tuple[Point, ...]] = field(default_factory=dict)  # key → (older, newer) or (only,)

    def last(self, key: str) -> Point | None:
        h = self.history.get(key)
        return h[-1] if h else None

    def rate(self, key: str, counter: str = "cpu_usage_ns") -> float | None:
        """Δcounter/Δt between the last two samples (per second), None with fewer than two."""
        h = self.history.get(key)
        if not h or len(h) < 2:
            return None
        a, b = h[0], h[1]
        if counter not in a.raw or counter not in b.raw or b.t <= a.t or b.raw[counter] < a.raw[counter]:
            return None
        return (b.raw[counter] - a.raw[counter]) / (b.t - a.t)


NODE = "/"
KUBELET = "kubelet"  # the lab process itself


class Sampler:
    """Housekeeping: ``sample()`` reads every target once; the pipeline thread calls it on an interval."""

    def __init__(self, driver: Driver | None, targets: Callable[[], list[PodTarget]],
                 clock: Callable[[], float] = time.time, proc: Path = Path("/proc"), *, pods_cgroup: str) -> None:
        self.driver = driver
        self.pods_cgroup = pods_cgroup
        self.targets = targets
        self.clock = clock
        self.proc = proc
        self._hist: dict[str, deque[Point]] = {}
        self._lock = threading.Lock()
        self._snap = Snapshot(pods_cgroup=pods_cgroup)
        self.rounds = 0
        self.last_duration = 0.0  # wall seconds of the last round
        self.cpu_seconds = 0.0  # CPU time of this thread spent sampling, all rounds

    @property
    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snap

    def sample(self) -> Snapshot:
        started, cpu0 = time.perf_counter(), time.thread_time()
        pods = self.targets()
        now = self.clock()
        fresh: dict[str, dict[str, int]] = {NODE: node_raw(self.driver, self.proc), KUBELET: self_raw(self.proc)}
        if self.driver is not None:
            fresh[self.pods_cgroup] = self.driver.stats(self.pods_cgroup)
            for p in pods:
                fresh[p.cgroup] = self.driver.stats(p.cgroup)
                fresh[p.cgroup]["process_count"] = self.driver.count_procs(p.cgroup)
                if p.netns_pid:
                    fresh[p.cgroup].update(pod_network_raw(p.netns_pid, self.proc))
                for c in p.containers:
                    fresh[c.cgroup] = self.driver.stats(c.cgroup)
        else:  # no cgroups: each container is a session of processes; the pod is the sum of its containers
            per = session_stats({c.pid for p in pods for c in p.containers if c.pid}, self.proc)
            for p in pods:
                total: dict[str, int] = {}
                for c in p.containers:
                    if c.pid in per and per[c.pid]["process_count"]:
                        fresh[c.cgroup] = dict(per[c.pid])
                        for k, v in per[c.pid].items():
                            total[k] = total.get(k, 0) + v
                if total:
                    fresh[p.cgroup] = total
        with self._lock:
            for key in list(self._hist):
                if key not in fresh:
                    del self._hist[key]
            for key, raw in fresh.items():
                if "cpu_usage_ns" not in raw and key not in (NODE, KUBELET):
                    self._hist.pop(key, None)  # the cgroup vanished between listing and reading
                    continue
                self._hist.setdefault(key, deque(maxlen=2)).append(Point(now, raw))
            self._snap = Snapshot(now, pods, self.pods_cgroup, {k: tuple(v) for k, v in self._hist.items()})
            self.rounds += 1
        self.last_duration = time.perf_counter() - started
        self.cpu_seconds += time.thread_time() - cpu0
        return self._snap


# -- the node and the lab process, from /proc where cgroups do not say ---------------------------------

def _kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":") if ":" in line else line.partition(" ")
        parts = v.split()
        if parts:
            try:
                out[k.strip()] = int(parts[0])
            except ValueError:
                pass
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def meminfo(proc: Path = Path("/proc")) -> dict[str, int]:
    """/proc/meminfo in bytes."""
    return {k: v * 1024 for k, v in _kv(_read(proc / "meminfo")).items()}


def node_raw(driver: Driver | None, proc: Path = Path("/proc")) -> dict[str, int]:
    raw: dict[str, int] = {}
    root = driver.stats("") if driver is not None else {}
    mi = meminfo(proc)
    if root.get("cpu_usage_ns"):
        raw["cpu_usage_ns"] = root["cpu_usage_ns"]
    else:
        stat = _read(proc / "stat")
        fields = stat.splitlines()[0].split()[1:] if stat else []
        if fields:
            # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
            busy = sum(int(x) for i, x in enumerate(fields[:8]) if i not in (3, 4))
            raw["cpu_usage_ns"] = busy * 1_000_000_000 // CLK_TCK
    if root.get("memory_usage") and driver is not None and driver.version == 1:
        for k in ("memory_usage", "memory_inactive_file", "memory_active_file", "memory_rss", "memory_cache"):
            raw[k] = root.get(k, 0)
    elif mi:
        raw["memory_usage"] = mi.get("MemTotal", 0) - mi.get("MemFree", 0)
        raw["memory_inactive_file"] = mi.get("Inactive(file)", 0)
        raw["memory_active_file"] = mi.get("Active(file)", 0)
        raw["memory_rss"] = root.get("memory_rss") or mi.get("AnonPages", 0)
        raw["memory_cache"] = mi.get("Cached", 0)
    raw["memory_limit"] = mi.get("MemTotal", 0)
    raw["memory_swap"] = mi.get("SwapTotal", 0) - mi.get("SwapFree", 0)
    raw["swap_total"] = mi.get("SwapTotal", 0)
    vm = _kv(_read(proc / "vmstat"))
    raw["pgfault"], raw["pgmajfault"] = vm.get("pgfault", 0), vm.get("pgmajfault", 0)
    return raw


def self_raw(proc: Path = Path("/proc")) -> dict[str, int]:
    """The lab process (it is this node's kubelet): CPU time of all its threads and its resident memory."""
    t = os.times()
    rss = 0
    statm = _read(proc / "self" / "statm").split()
    if len(statm) > 1:
        rss = int(statm[1]) * os.sysconf("SC_PAGE_SIZE")
    return {"cpu_usage_ns": int((t.user + t.system) * 1e9), "memory_usage": rss, "memory_rss": rss}


def session_stats(sids: set[int], proc: Path = Path("/proc")) -> dict[int, dict[str, int]]:
    """Counters per session id, from /proc, for a lab without cgroups: CPU of the live processes plus what they reaped
    (cutime/cstime), resident memory split into anonymous (RSS) and file-backed (cache), and the process count."""
    out = {sid: {"cpu_usage_ns": 0, "memory_usage": 0, "memory_rss": 0, "memory_cache": 0, "memory_inactive_file": 0,
                 "process_count": 0} for sid in sids}
    if not sids:
        return out
    try:
        entries = [e.name for e in os.scandir(proc) if e.name.isdigit()]
    except OSError:
        return out
    for pid in entries:
        stat = _read(proc / pid / "stat")
        if not stat:
            continue
        f = stat.rsplit(")", 1)[1].split()
        try:
            sid = int(f[3])
        except (IndexError, ValueError):
            continue
        if sid not in out:
            continue
        o = out[sid]
        ticks = sum(int(x) for x in f[11:15])  # utime stime cutime cstime
        o["cpu_usage_ns"] += ticks * 1_000_000_000 // CLK_TCK
        status = _kv(_read(proc / pid / "status"))
        anon = status.get("RssAnon", 0) * 1024
        file = (status.get("RssFile", 0) + status.get("RssShmem", 0)) * 1024
        o["memory_usage"] += anon + file
        o["memory_rss"] += anon
        o["memory_cache"] += file
        o["process_count"] += 1
    return out


def working_set(raw: dict[str, int]) -> int | None:
    """cAdvisor: usage − inactive_file, floored at 0."""
    if "memory_usage" not in raw:
        return None
    return max(0, raw["memory_usage"] - raw.get("memory_inactive_file", 0))


@functools.lru_cache(maxsize=4)
def boot_time(proc: Path = Path("/proc")) -> float:
    for line in _read(proc / "stat").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")


def pod_network_raw(pid: int, proc: Path = Path("/proc")) -> dict[str, int]:
    """The pod's interfaces (but lo) from /proc/<pid>/net/dev — what that process's network namespace counts — as
    flat raw keys ``net/<iface>/<field>``, as cAdvisor reads a pod's network from its sandbox."""
    try:
        lines = (proc / str(pid) / "net" / "dev").read_text().splitlines()[2:]
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        f = rest.split()
        name = name.strip()
        if name == "lo" or len(f) < 16:
            continue
        for key, i in zip(NET_FIELDS, (0, 1, 2, 3, 8, 9, 10, 11), strict=True):
            out[f"net/{name}/{key}"] = int(f[i])
    return out


def network_interfaces(raw: dict[str, int]) -> dict[str, dict[str, int]]:
    """The ``net/<iface>/<field>`` keys of a raw point, back as {iface: {field: value}}."""
    out: dict[str, dict[str, int]] = {}
    for k, v in raw.items():
        if k.startswith("net/"):
            _, iface, name = k.split("/", 2)
            out.setdefault(iface, {})[name] = v
    return out
