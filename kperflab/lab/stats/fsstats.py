"""The kubelet's filesystem statistics: what each pod's containers and volumes use on disk (or in tmpfs), measured
in the background, as the kubelet's volume stat calculators and its CRI stats provider do.

Measuring is expensive (a walk of every file, like ``du``), so the kubelet calls `FsSampler.sample` on its own thread
every ``volumeStatsAggPeriod`` and everything else — the Summary API, ``/metrics``, the local-storage eviction —
reads the last `FsSnapshot`. The methods follow upstream's metrics providers (``pkg/volume/metrics_du.go``,
``metrics_statfs.go``): ``du`` walks one filesystem from the volume's root (``du -x``: bytes allocated, inodes
used) and takes capacity, availability and inodes from statfs of the same path; ``statfs`` takes everything from
statfs (a PersistentVolume's own filesystem). A pod's ``ephemeral-storage`` is its containers' writable layers and
logs plus its local ephemeral volumes (``IsLocalEphemeralVolume``: disk emptyDir, configMap, downwardAPI).

Imports nothing of the kubelet.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FsUsage:
    """One FsStats reading (bytes and inodes); ``used``/``inodes_used`` are None where the kubelet leaves them out."""

    time: float
    capacity: int
    available: int
    inodes: int
    inodes_free: int
    used: int | None = None
    inodes_used: int | None = None


@dataclass(frozen=True)
class VolumeTarget:
    name: str
    path: Path
    method: str = "du"  # "du" (walk the tree) or "statfs" (the volume is a filesystem of its own)
    pvc: tuple[str, str] | None = None  # (namespace, claim) for PVC-backed volumes: the Summary's pvcRef
    ephemeral: bool = False  # a local ephemeral volume: counted in the pod's ephemeral-storage


@dataclass(frozen=True)
class ContainerFsTarget:
    name: str
    rootfs: Path | None  # the writable layer (OCI runtime), None for the process runtime
    logs: Path | None  # the directory of its log files


@dataclass(frozen=True)
class PodFsTarget:
    uid: str
    containers: tuple[ContainerFsTarget, ...]
    volumes: tuple[VolumeTarget, ...]


@dataclass(frozen=True)
class VolumeUsage:
    target: VolumeTarget
    usage: FsUsage


@dataclass(frozen=True)
class PodFsStats:
    time: float
    rootfs: dict[str, FsUsage]  # container → its writable layer
    logs: dict[str, FsUsage]  # container → its logs
    volumes: tuple[VolumeUsage, ...]
    ephemeral: FsUsage  # the pod's ephemeral-storage

    def container_usage(self, name: str) -> int:
        """What the eviction manager counts for a container: logs plus writable layer (one filesystem here)."""
        return sum(u.used or 0 for u in (self.logs.get(name), self.rootfs.get(name)) if u is not None)

    def volume(self, name: str) -> FsUsage | None:
        return next((v.usage for v in self.volumes if v.target.name == name), None)


def du(path: Path) -> tuple[int, int]:
    """(bytes allocated, inodes) under ``path`` on its own filesystem, the root included (``du -x -s -B 1`` and
    ``find -xdev``); (0, 0) when it is gone."""
    try:
        top = os.lstat(path)
    except OSError:
        return 0, 0
    size, count = top.st_blocks * 512, 1
    if not stat.S_ISDIR(top.st_mode):
        return size, count
    dev = top.st_dev
    stack = [os.fspath(path)]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != dev:
                    continue
                size += st.st_blocks * 512
                count += 1
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
    return size, count


def statfs(path: Path, t: float) -> FsUsage | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return FsUsage(t, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, st.f_files, st.f_ffree)


def measure_volume(v: VolumeTarget, t: float) -> FsUsage | None:
    fs = statfs(v.path, t)
    if fs is None:
        return None
    if v.method == "statfs":  # MetricsStatFS: used is what the filesystem has in use
        return FsUsage(t, fs.capacity, fs.available, fs.inodes, fs.inodes_free,
                       max(0, fs.capacity - fs.available) if fs.capacity else 0, max(0, fs.inodes - fs.inodes_free))
    used, inodes = du(v.path)
    return FsUsage(t, fs.capacity, fs.available, fs.inodes, fs.inodes_free, used, inodes)


def measure_pod(p: PodFsTarget, node_fs: FsUsage, clock: Callable[[], float] = time.time) -> PodFsStats:
    rootfs: dict[str, FsUsage] = {}
    logs: dict[str, FsUsage] = {}
    total = inodes_total = 0
    for c in p.containers:
        t = clock()
        if c.rootfs is not None:
            used, n = du(c.rootfs)
            rootfs[c.name] = FsUsage(t, node_fs.capacity, node_fs.available, node_fs.inodes, node_fs.inodes_free, used, n)
            total += used
            inodes_total += n
        used, n = du(c.logs) if c.logs is not None else (0, 0)
        logs[c.name] = FsUsage(t, node_fs.capacity, node_fs.available, node_fs.inodes, node_fs.inodes_free, used, n)
        total += used
        inodes_total += n
    vols = []
    for v in p.volumes:
        u = measure_volume(v, clock())
        if u is None:
            continue
        vols.append(VolumeUsage(v, u))
        if v.ephemeral:
            total += u.used or 0
            inodes_total += u.inodes_used or 0
    t = clock()
    eph = FsUsage(t, node_fs.capacity, node_fs.available, node_fs.inodes, node_fs.inodes_free, total, inodes_total)
    return PodFsStats(t, rootfs, logs, tuple(vols), eph)


@dataclass
class FsSnapshot:
    t: float = 0.0
    pods: dict[str, PodFsStats] = field(default_factory=dict)  # by pod uid


class FsSampler:
    """One round measures every pod ``targets()`` names; the last round is `snapshot` (swapped whole)."""

    def __init__(self, targets: Callable[[], list[PodFsTarget]], node_fs: Path, clock: Callable[[], float] = time.time) -> None:
        self.targets = targets
        self.node_fs = node_fs
        self.clock = clock
        self._lock = threading.Lock()
        self._snap = FsSnapshot()
        self.rounds = 0
        self.last_duration = 0.0

    @property
    def snapshot(self) -> FsSnapshot:
        with self._lock:
            return self._snap

    def sample(self) -> FsSnapshot:
        started = time.perf_counter()
        t = self.clock()
        node = statfs(self.node_fs, t) or FsUsage(t, 0, 0, 0, 0)
        pods = {p.uid: measure_pod(p, node, self.clock) for p in self.targets()}
        snap = FsSnapshot(t, pods)
        with self._lock:
            self._snap = snap
            self.rounds += 1
        self.last_duration = time.perf_counter() - started
        return snap
