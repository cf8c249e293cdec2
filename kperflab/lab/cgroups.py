"""cgroup v1 and v2 for the lab's pods: create with limits, join, read counters, kill, remove.

Both drivers take their filesystem roots as arguments, so tests run them on a fake cgroupfs tree.
Paths handed around are relative to the hierarchy root. Each lab owns the subtree ``kperflab/<lab id>/`` (see
`labs`), e.g. ``kperflab/0123456789abcdef/kubepods/burstable/pod<uid>/<container id>``.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ..host import cgroup_version

LAB_ROOT = "kperflab"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CFS_PERIOD_US = 100_000
MIN_QUOTA_US = 1_000
MIN_SHARES = 2
MAX_SHARES = 262_144
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")


def lab_root(lab_id: str) -> str:
    """The cgroup subtree a lab owns (in every hierarchy)."""
    return f"{LAB_ROOT}/{lab_id}"


def pods_root(lab_id: str) -> str:
    """The lab's ``kubepods`` cgroup: the parent of every pod cgroup, as on a kubelet with the cgroupfs driver."""
    return f"{lab_root(lab_id)}/kubepods"


@dataclass(frozen=True)
class Limits:
    cpu_limit_milli: int | None = None
    cpu_request_milli: int | None = None
    memory_limit: int | None = None
    pids_limit: int | None = None


def shares_from_milli(milli: int | None) -> int:
    """requests.cpu → cpu.shares, as the kubelet computes it (MilliCPUToShares)."""
    if not milli:
        return MIN_SHARES
    return max(MIN_SHARES, min(MAX_SHARES, milli * 1024 // 1000))


def weight_from_shares(shares: int) -> int:
    """cpu.shares → cgroup v2 cpu.weight (the kubelet's/runc's conversion)."""
    return 1 + ((shares - 2) * 9999) // 262142


def quota_from_milli(milli: int, period: int = CFS_PERIOD_US) -> int:
    return max(MIN_QUOTA_US, milli * period // 1000)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path | str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _tree_pids(top: str) -> set[int]:
    """PIDs in cgroup.procs of a cgroup directory and every directory below it (scandir: no stat per entry)."""
    pids: set[int] = set()
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
        except OSError:
            continue
        pids.update(int(x) for x in _read(os.path.join(d, "cgroup.procs")).split())
    return pids


def _kv(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


class Driver:
    version = 0

    def create(self, rel: str, limits: Limits) -> None: ...
    def procs_files(self, rel: str) -> list[Path]: ...
    def procs(self, rel: str) -> list[int]: ...
    def count_procs(self, rel: str) -> int: ...
    def oom_kills(self, rel: str) -> int: ...
    def stats(self, rel: str) -> dict[str, int]: ...
    def remove(self, rel: str) -> None: ...
    def roots(self) -> list[Path]: ...

    def lab_ids(self) -> set[str]:
        """The lab ids that have a subtree under ``kperflab/`` in any hierarchy."""
        ids: set[str] = set()
        for root in self.roots():
            try:
                ids |= {p.name for p in (root / LAB_ROOT).iterdir() if p.is_dir()}
            except OSError:
                pass
        return ids

    def lab_dirs(self, lab_id: str) -> list[Path]:
        """The lab's subtree in each hierarchy where it exists."""
        return [d for d in dict.fromkeys(r / lab_root(lab_id) for r in self.roots()) if d.is_dir()]

    def remove_parent_if_empty(self) -> None:
        """rmdir ``kperflab/`` where no lab has a subtree left (another lab may be creating one: then it stays)."""
        for root in dict.fromkeys(self.roots()):
            try:
                (root / LAB_ROOT).rmdir()
            except OSError:
                pass

    def kill_all(self, rel: str, timeout: float = 5.0) -> None:
        """SIGKILL every process in the cgroup (and below) until it is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.procs(rel)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)


class V1(Driver):
    """cgroup v1: one hierarchy per controller (cpu, cpuacct, memory, pids), possibly co-mounted."""

    version = 1

    def __init__(self, mounts: dict[str, Path]) -> None:
        self.mounts = mounts  # controller → mount point

    @classmethod
    def from_proc(cls, proc_mounts: Path = Path("/proc/mounts")) -> V1:
        mounts: dict[str, Path] = {}
        for line in _read(proc_mounts).splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] == "cgroup":
                for opt in parts[3].split(","):
                    if opt in V1_CONTROLLERS:
                        mounts.setdefault(opt, Path(parts[1]))
        return cls(mounts)

    def _dirs(self, rel: str) -> list[Path]:
        seen: list[Path] = []
        for c in V1_CONTROLLERS:
            if c in self.mounts:
                d = self.mounts[c] / rel
                if d not in seen:
                    seen.append(d)
        return seen

    def path(self, controller: str, rel: str) -> Path:
        return self.mounts[controller] / rel

    def create(self, rel: str, limits: Limits) -> None:
        for d in self._dirs(rel):
            _mkdirs(d)
        if "cpu" in self.mounts:
            cpu = self.path("cpu", rel)
            _write(cpu / "cpu.shares", str(shares_from_milli(limits.cpu_request_milli)))
            if limits.cpu_limit_milli:
                _write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
                _write(cpu / "cpu.cfs_quota_us", str(quota_from_milli(limits.cpu_limit_milli)))
        if "memory" in self.mounts and limits.memory_limit:
            _write(self.path("memory", rel) / "memory.limit_in_bytes", str(limits.memory_limit))
        if "pids" in self.mounts and limits.pids_limit:
            _write(self.path("pids", rel) / "pids.max", str(limits.pids_limit))

    def procs_files(self, rel: str) -> list[Path]:
        return [d / "cgroup.procs" for d in self._dirs(rel)]

    def procs(self, rel: str) -> list[int]:
        pids: set[int] = set()
        for d in self._dirs(rel):
            pids |= _tree_pids(str(d))
        return sorted(pids)

    def count_procs(self, rel: str) -> int:
        ctrl = "memory" if "memory" in self.mounts else next(iter(self.mounts))
        return len(_tree_pids(str(self.mounts[ctrl] / rel)))

    def oom_kills(self, rel: str) -> int:
        if "memory" not in self.mounts:
            return 0
        return _kv(_read(self.path("memory", rel) / "memory.oom_control")).get("oom_kill", 0)

    def stats(self, rel: str) -> dict[str, int]:
        """Raw counters in v1 units (ns for cpu usage and throttled time)."""
        out: dict[str, int] = {}
        if "cpuacct" in self.mounts:
            usage = _read(self.path("cpuacct", rel) / "cpuacct.usage").strip()
            if usage:
                out["cpu_usage_ns"] = int(usage)
            st = _kv(_read(self.path("cpuacct", rel) / "cpuacct.stat"))
            ticks = CLK_TCK
            if st:
                out["cpu_user_ns"] = st.get("user", 0) * 1_000_000_000 // ticks
                out["cpu_system_ns"] = st.get("system", 0) * 1_000_000_000 // ticks
        if "cpu" in self.mounts:
            st = _kv(_read(self.path("cpu", rel) / "cpu.stat"))
            out.update({"nr_periods": st.get("nr_periods", 0), "nr_throttled": st.get("nr_throttled", 0),
                        "throttled_ns": st.get("throttled_time", 0)})
            for f, k in (("cpu.cfs_quota_us", "cpu_quota_us"), ("cpu.cfs_period_us", "cpu_period_us"), ("cpu.shares", "cpu_shares")):
                v = _read(self.path("cpu", rel) / f).strip()
                if v:
                    out[k] = int(v)
        if "memory" in self.mounts:
            mem = self.path("memory", rel)
            usage = _read(mem / "memory.usage_in_bytes").strip()
            if usage:
                out["memory_usage"] = int(usage)
            st = _kv(_read(mem / "memory.stat"))
            hier = "total_" if "total_rss" in st else ""
            out["memory_inactive_file"] = st.get(f"{hier}inactive_file", 0)
            out["memory_active_file"] = st.get(f"{hier}active_file", 0)
            out["memory_rss"] = st.get(f"{hier}rss", 0)
            out["memory_cache"] = st.get(f"{hier}cache", 0)
            out["memory_swap"] = st.get(f"{hier}swap", 0)
            out["pgfault"] = st.get(f"{hier}pgfault", st.get("pgfault", 0))
            out["pgmajfault"] = st.get(f"{hier}pgmajfault", st.get("pgmajfault", 0))
            limit = _read(mem / "memory.limit_in_bytes").strip()
            if limit:
                out["memory_limit"] = int(limit)
            out["oom_kill"] = self.oom_kills(rel)
        return out

    def remove(self, rel: str) -> None:
        for d in self._dirs(rel):
            _rmtree(d)

    def roots(self) -> list[Path]:
        return [self.mounts[c] for c in V1_CONTROLLERS if c in self.mounts]


class V2(Driver):
    """cgroup v2: one unified hierarchy; controllers enabled down the tree through cgroup.subtree_control."""

    version = 2
    CONTROLLERS = ("cpu", "memory", "pids")

    def __init__(self, root: Path = Path("/sys/fs/cgroup")) -> None:
        self.root = root

    def create(self, rel: str, limits: Limits) -> None:
        parts = Path(rel).parts
        cur = self.root
        available = set(_read(self.root / "cgroup.controllers").split()) or set(self.CONTROLLERS)
        enable = " ".join(f"+{c}" for c in self.CONTROLLERS if c in available)
        for part in parts:
            parent = cur
            cur = cur / part
            have = set(_read(parent / "cgroup.subtree_control").split())
            if not set(c for c in self.CONTROLLERS if c in available) <= have:
                try:
                    _write(parent / "cgroup.subtree_control", enable)
                except OSError:
                    pass  # a controller the parent cannot delegate: limits for it stay off
            _mkdirs(cur)
        d = self.root / rel
        _write(d / "cpu.weight", str(weight_from_shares(shares_from_milli(limits.cpu_request_milli))))
        if limits.cpu_limit_milli:
            _write(d / "cpu.max", f"{quota_from_milli(limits.cpu_limit_milli)} {CFS_PERIOD_US}")
        if limits.memory_limit:
            _write(d / "memory.max", str(limits.memory_limit))
            try:
                _write(d / "memory.swap.max", "0")
            except OSError:
                pass
        if limits.pids_limit:
            _write(d / "pids.max", str(limits.pids_limit))

    def procs_files(self, rel: str) -> list[Path]:
        return [self.root / rel / "cgroup.procs"]

    def procs(self, rel: str) -> list[int]:
        return sorted(_tree_pids(str(self.root / rel)))

    def count_procs(self, rel: str) -> int:
        return len(_tree_pids(str(self.root / rel)))

    def kill_all(self, rel: str, timeout: float = 5.0) -> None:
        kill = self.root / rel / "cgroup.kill"
        if kill.exists():
            try:
                _write(kill, "1")
            except OSError:
                pass
        super().kill_all(rel, timeout)

    def oom_kills(self, rel: str) -> int:
        return _kv(_read(self.root / rel / "memory.events")).get("oom_kill", 0)

    def stats(self, rel: str) -> dict[str, int]:
        d = self.root / rel
        out: dict[str, int] = {}
        st = _kv(_read(d / "cpu.stat"))
        if st:
            out["cpu_usage_ns"] = st.get("usage_usec", 0) * 1000
            out["cpu_user_ns"] = st.get("user_usec", 0) * 1000
            out["cpu_system_ns"] = st.get("system_usec", 0) * 1000
            out["nr_periods"] = st.get("nr_periods", 0)
            out["nr_throttled"] = st.get("nr_throttled", 0)
            out["throttled_ns"] = st.get("throttled_usec", 0) * 1000
        cpu_max = _read(d / "cpu.max").split()
        if len(cpu_max) == 2:
            out["cpu_quota_us"] = -1 if cpu_max[0] == "max" else int(cpu_max[0])
            out["cpu_period_us"] = int(cpu_max[1])
        weight = _read(d / "cpu.weight").strip()
        if weight:
            # back to shares, the unit cAdvisor reports (container_spec_cpu_shares)
            out["cpu_shares"] = 2 + ((int(weight) - 1) * 262142) // 9999
        cur = _read(d / "memory.current").strip()
        if cur:
            out["memory_usage"] = int(cur)
        ms = _kv(_read(d / "memory.stat"))
        out["memory_inactive_file"] = ms.get("inactive_file", 0)
        out["memory_active_file"] = ms.get("active_file", 0)
        out["memory_rss"] = ms.get("anon", 0)
        out["memory_cache"] = ms.get("file", 0)
        out["pgfault"] = ms.get("pgfault", 0)
        out["pgmajfault"] = ms.get("pgmajfault", 0)
        swap = _read(d / "memory.swap.current").strip()
        out["memory_swap"] = int(swap) if swap else 0
        mx = _read(d / "memory.max").strip()
        if mx:
            out["memory_limit"] = (1 << 63) - 1 if mx == "max" else int(mx)
        out["oom_kill"] = self.oom_kills(rel)
        return out

    def remove(self, rel: str) -> None:
        _rmtree(self.root / rel)

    def roots(self) -> list[Path]:
        return [self.root]


def _mkdirs(d: Path) -> None:
    """mkdir -p, retried when another lab removes an empty ``kperflab/`` parent at the same moment."""
    for attempt in range(5):
        try:
            d.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt == 4:
                raise


def _rmtree(d: Path) -> None:
    """rmdir a cgroup directory bottom-up (cgroupfs directories are removed with rmdir, not unlink)."""
    if not d.is_dir():
        return
    for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        _rmdir(sub)
    _rmdir(d)


def _rmdir(d: Path) -> None:
    for attempt in range(100):
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY and not any(p.is_dir() for p in d.iterdir()):
                for f in d.iterdir():  # a fake tree in tests holds plain files; cgroupfs refuses unlink
                    try:
                        f.unlink()
                    except OSError:
                        pass
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY) and attempt < 99:
                time.sleep(0.02)
                continue
            raise


def detect(root: Path = Path("/sys/fs/cgroup")) -> Driver | None:
    """The driver for this machine, or None when cgroups cannot be used (not root, not mounted)."""
    if os.geteuid() != 0:
        return None
    v = cgroup_version(root)
    if v == 2:
        return V2(root)
    if v == 1:
        drv = V1.from_proc()
        return drv if "memory" in drv.mounts and "cpu" in drv.mounts else None
    return None
