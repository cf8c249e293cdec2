"""The lab's Node object: capacity and allocatable from this machine, and the pressure conditions computed from the
node's real state against the kubelet's eviction thresholds, as the kubelet's node status setters report them.

Signals (`pkg/kubelet/eviction`): ``memory.available`` = capacity − the root cgroup's working set;
``nodefs.available`` / ``nodefs.inodesFree`` from statfs of the node's filesystem (the lab's state dir; it is also the
image filesystem here, so ``imagefs.available`` is the same reading); ``pid.available`` = the kernel's PID limit −
the threads that exist. Thresholds are the kubelet's Linux defaults for eviction-hard; the kubelet has no default
for PIDs, so the lab adds ``pid.available<5%`` and says so on the node (annotation ``kperflab.dev/eviction-hard``).
Once a threshold is met the condition stays True for the eviction pressure transition period (5 m by default).
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cgroups import Driver
from .stats.cadvisor import node_raw, working_set
from .store import rfc3339

NODE_NAME = "kperflab-lab"
ANNOTATION_ENFORCED = "kperflab.dev/limits-enforced"
Mi = 1 << 20
# signal → (threshold as a quantity or a share of capacity, the condition it sets)
EVICTION_HARD = {"memory.available": ("100Mi", "MemoryPressure"), "nodefs.available": ("10%", "DiskPressure"),
                 "nodefs.inodesFree": ("5%", "DiskPressure"), "imagefs.available": ("15%", "DiskPressure"),
                 "pid.available": ("5%", "PIDPressure")}
PRESSURE_TRANSITION_PERIOD = 300.0  # evictionPressureTransitionPeriod
# condition → (reason, message) when False, when True; the kubelet's own words (pkg/kubelet/nodestatus/setters.go)
WORDS = {
    "MemoryPressure": (("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                       ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available")),
    "DiskPressure": (("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                     ("KubeletHasDiskPressure", "kubelet has disk pressure")),
    "PIDPressure": (("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    ("KubeletHasInsufficientPID", "kubelet has insufficient PID available")),
}


@dataclass(frozen=True)
class Observation:
    """One reading of the node's state, in the units of the eviction signals."""

    memory_capacity: int
    memory_working_set: int
    fs_bytes: int
    fs_available: int
    fs_inodes: int
    fs_inodes_free: int
    pid_max: int
    threads: int

    def available(self) -> dict[str, tuple[int, int]]:
        """signal → (available, capacity)."""
        fs = (self.fs_available, self.fs_bytes)
        return {"memory.available": (self.memory_capacity - self.memory_working_set, self.memory_capacity),
                "nodefs.available": fs, "imagefs.available": fs,
                "nodefs.inodesFree": (self.fs_inodes_free, self.fs_inodes),
                "pid.available": (self.pid_max - self.threads, self.pid_max)}


def _threshold(spec: str, capacity: int) -> float:
    if spec.endswith("%"):
        return capacity * float(spec[:-1]) / 100
    from .quantity import to_bytes

    return float(to_bytes(spec))


def signals_met(obs: Observation) -> dict[str, list[str]]:
    """condition → the signals whose threshold is met now (an empty list: no pressure).

    >>> obs = Observation(8 << 30, (8 << 30) - (50 << 20), 100, 50, 100, 50, 1000, 10)
    >>> signals_met(obs)["MemoryPressure"], signals_met(obs)["DiskPressure"]
    (['memory.available'], [])
    """
    out: dict[str, list[str]] = {c: [] for c in WORDS}
    for sig, (avail, cap) in obs.available().items():
        spec, cond = EVICTION_HARD[sig]
        if cap > 0 and avail < _threshold(spec, cap):
            out[cond].append(sig)
    return out


def observe(state_dir: Path, driver: Driver | None, proc: Path = Path("/proc")) -> Observation:
    raw = node_raw(driver, proc)
    st = os.statvfs(state_dir)
    try:
        pid_max = int((proc / "sys" / "kernel" / "pid_max").read_text())
        threads = int((proc / "loadavg").read_text().split()[3].split("/")[1])
    except (OSError, ValueError, IndexError):
        pid_max, threads = 0, 0
    return Observation(raw.get("memory_limit", 0), working_set(raw) or 0, st.f_blocks * st.f_frsize,
                       st.f_bavail * st.f_frsize, st.f_files, st.f_favail, pid_max, threads)


# taint-nodes-by-condition (the node lifecycle controller): a pressure condition True → its NoSchedule taint
CONDITION_TAINTS = {"MemoryPressure": "node.kubernetes.io/memory-pressure", "DiskPressure": "node.kubernetes.io/disk-pressure",
                    "PIDPressure": "node.kubernetes.io/pid-pressure"}
EVICTION_MONITORING_PERIOD = 10.0  # evictionMonitoringPeriod: at most one pod evicted per period


def condition_taints(conditions: list[dict[str, Any]], taints: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The node's taints after taint-nodes-by-condition: a ``<condition>:NoSchedule`` taint for each pressure
    condition that is True, none for one that is not; other taints (a cordon's, the user's) stay. An existing
    taint keeps its ``timeAdded``.

    >>> t = condition_taints([{"type": "DiskPressure", "status": "True"}], [{"key": "a", "effect": "NoExecute"}], 0)
    >>> [(x["key"], x["effect"]) for x in t]
    [('a', 'NoExecute'), ('node.kubernetes.io/disk-pressure', 'NoSchedule')]
    >>> condition_taints([{"type": "DiskPressure", "status": "False"}], t, 0)
    [{'key': 'a', 'effect': 'NoExecute'}]
    """
    status = {c.get("type"): c.get("status") for c in conditions}
    ours = set(CONDITION_TAINTS.values())
    out = [t for t in taints if not (t.get("key") in ours and t.get("effect") == "NoSchedule")]
    for cond, key in CONDITION_TAINTS.items():
        if status.get(cond) == "True":
            old = next((t for t in taints if t.get("key") == key and t.get("effect") == "NoSchedule"), None)
            out.append(old or {"key": key, "effect": "NoSchedule", "timeAdded": rfc3339(now)})
    return out


@dataclass(frozen=True)
class DiskSignal:
    """A nodefs eviction signal whose threshold is met: what the eviction manager's messages quote."""

    signal: str  # nodefs.available or nodefs.inodesFree
    threshold: int  # bytes (inodes) the threshold stands for on this filesystem
    available: int


def disk_pressure(state_dir: Path) -> DiskSignal | None:
    """statvfs of the node's filesystem against the nodefs thresholds (the eviction manager's own observation, as
    cheap as one system call): the first signal met, or None."""
    st = os.statvfs(state_dir)
    for sig, avail, cap in (("nodefs.available", st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize),
                            ("nodefs.inodesFree", st.f_favail, st.f_files)):
        limit = _threshold(EVICTION_HARD[sig][0], cap)
        if cap > 0 and avail < limit:
            return DiskSignal(sig, int(limit), avail)
    return None


def ki(n: int) -> str:
    """A byte count as the eviction manager's quantities print it (``1234Ki``; 0 is ``0``)."""
    return f"{n // 1024}Ki" if n >= 1024 else str(n)


class Conditions:
    """The node's conditions over time: pressure from the last observation, held for the transition period;
    ``lastTransitionTime`` moves only when a status flips, ``lastHeartbeatTime`` on every update."""

    def __init__(self, ready_message: str = "kubelet is posting ready status",
                 transition_period: float = PRESSURE_TRANSITION_PERIOD) -> None:
        self.ready_message = ready_message
        self.transition_period = transition_period
        self.last_met: dict[str, float] = {}

    def update(self, old: list[dict[str, Any]], obs: Observation, now: float) -> list[dict[str, Any]]:
        met = signals_met(obs)
        prev = {c["type"]: c for c in old}
        ts = rfc3339(now)
        out = []
        for cond, ((r_ok, m_ok), (r_bad, m_bad)) in WORDS.items():
            if met[cond]:
                self.last_met[cond] = now
            pressure = cond in self.last_met and now - self.last_met[cond] < self.transition_period
            status = "True" if pressure else "False"
            out.append(_condition(cond, status, r_bad if pressure else r_ok, m_bad if pressure else m_ok, ts, prev.get(cond)))
        out.append(_condition("Ready", "True", "KubeletReady", self.ready_message, ts, prev.get("Ready")))
        return out


def _condition(type_: str, status: str, reason: str, message: str, ts: str, old: dict[str, Any] | None) -> dict[str, Any]:
    since = old["lastTransitionTime"] if old and old.get("status") == status else ts
    return {"type": type_, "status": status, "lastHeartbeatTime": ts, "lastTransitionTime": since,
            "reason": reason, "message": message}


# -- the Node object -----------------------------------------------------------------------------------

def arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def machine_labels() -> dict[str, str]:
    mid = _read("/etc/machine-id")
    return {"boot_id": _read("/proc/sys/kernel/random/boot_id"), "machine_id": mid, "system_uuid": mid}


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def node_object(state_dir: Path, driver: Driver | None, unenforced: str, conditions: Conditions, now: float,
                kubelet_version: str) -> dict[str, Any]:
    """The Node as the kubelet registers it. ``unenforced`` says why limits are not enforced ("" when they are)."""
    obs = observe(state_dir, driver)
    disk = shutil.disk_usage(state_dir)
    capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{obs.memory_capacity // 1024}Ki", "pods": "110",
                "ephemeral-storage": f"{disk.total // 1024}Ki", "hugepages-2Mi": "0", "hugepages-1Gi": "0"}
    allocatable = dict(capacity, memory=f"{(obs.memory_capacity - 100 * Mi) // 1024}Ki",  # eviction-hard memory.available<100Mi
                       **{"ephemeral-storage": str(int(disk.total * 0.9))})  # nodefs.available<10%
    ids = machine_labels()
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {
            "beta.kubernetes.io/arch": arch(), "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": arch(),
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "node-role.kubernetes.io/control-plane": "",
            "kperflab.dev/lab": "true"},
            "annotations": {ANNOTATION_ENFORCED: "false" if unenforced else "true",
                            **({"kperflab.dev/limits-not-enforced": unenforced} if unenforced else {}),
                            "kperflab.dev/cgroup-version": str(driver.version if driver else "none"),
                            "kperflab.dev/eviction-hard": ",".join(f"{s}<{t}" for s, (t, _) in EVICTION_HARD.items()),
                            "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"providerID": f"kperflab://{NODE_NAME}"},
        "status": {
            "capacity": capacity, "allocatable": allocatable, "conditions": conditions.update([], obs, now),
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": ids["machine_id"], "systemUUID": ids["system_uuid"], "bootID": ids["boot_id"],
                         "kernelVersion": platform.release(), "osImage": _os_image(),
                         "containerRuntimeVersion": "kperflab://0.1.0", "kubeletVersion": kubelet_version,
                         "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": arch()},
            "images": [],
        },
    }
