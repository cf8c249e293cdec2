"""Every lab on this machine: who owns which kernel state, which labs are alive, and what a dead one left.

A lab owns its kernel state by its id (16 hex digits):

- the processes it starts for pods carry ``KPERFLAB_LAB=<id>`` in their environment;
- its cgroups live under ``kperflab/<id>/`` in every hierarchy;
- its mounts live under ``<state dir>/run/<id>/``;
- its node network namespace is ``kperflab-<id>`` (``ip netns list``), holding its bridge, pod veths and kube-proxy's
  rules; its network slot (pod and service CIDRs) is in its record.

While it runs, a lab holds an abstract unix socket named ``kperflab-lab-<id>`` (listed in ``/proc/net/unix`` for
every user on the machine), a lock (``flock``) on its record in its user's registry (``/run/kperflab/labs/<id>.json``
for root, ``$XDG_RUNTIME_DIR/kperflab/labs`` or ``/tmp/kperflab-<uid>/labs`` otherwise: its pid, port, home) and a lock
on ``<state dir>/lab.lock`` (one lab per state dir). The kernel drops all three when the lab's process ends, however it
ends, so "is this lab alive?" is "is its socket bound, or its record locked?" — no pid that could have been reused, no
heartbeat to miss, and the same answer for every user. Recovery removes only what belongs to an id whose lab is not
alive; a running lab's pods are never touched, whoever runs the recovery (a second lab, the tests, `lab up`, root).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import LabError
from . import cgroups
from .network.podnet import delete_netns, lab_netns
from .storage import loopfs

LAB_ENV = "KPERFLAB_LAB"  # every process a lab starts for a pod carries it: the census finds them by it
ID_RE = re.compile(r"^[0-9a-f]{16}$")


def registry_dir(uid: int | None = None) -> Path:
    """Where this user's labs register: ``/run/kperflab/labs`` for root, a private runtime dir otherwise."""
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return Path("/run/kperflab/labs")
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"kperflab-{uid}" / "labs"


def _registry_dirs() -> list[Path]:
    """Every registry this user can see: root's (world-readable), their own, and (for root) every user's."""
    dirs = [registry_dir(0), registry_dir()]
    dirs += sorted(Path("/run/user").glob("*/kperflab/labs")) + sorted(Path(tempfile.gettempdir()).glob("kperflab-*/labs"))
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


SOCKET_PREFIX = "kperflab-lab-"
NETWORK_SLOTS = 12  # pod CIDR 10.(244+k).0.0/16 and service CIDR 10.(96+k).0.0/16 for slot k


def live_ids(proc_net_unix: Path = Path("/proc/net/unix")) -> set[str]:
    """The ids of the labs alive on this machine (in this network namespace): their abstract sockets, whoever owns them."""
    out = set()
    try:
        with open(proc_net_unix) as f:
            for line in f:
                name = line.rsplit(None, 1)[-1] if line.count(" ") >= 7 else ""
                if name.startswith("@" + SOCKET_PREFIX) and ID_RE.match(name[1 + len(SOCKET_PREFIX):]):
                    out.add(name[1 + len(SOCKET_PREFIX):])
    except OSError:
        pass
    return out


def run_dir(state_dir: Path, lab_id: str) -> Path:
    """The lab's own directory for kernel-backed things (mount points, bundles): removed with the lab."""
    return state_dir / "run" / lab_id


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


# -- a live lab's registration ----------------------------------------------------------------------

class Registration:
    """Held by a running lab for its lifetime: the registry record (locked) and the state dir's lock."""

    def __init__(self, lab_id: str, state_dir: Path, **info: Any) -> None:
        self.lab_id = lab_id
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._state_fd = os.open(state_dir / "lab.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.lock_inode = os.fstat(self._state_fd).st_ino
        if not _try_lock(self._state_fd, fcntl.LOCK_EX):
            os.close(self._state_fd)
            raise LabError(f"Another lab is already running from {state_dir}.",
                           hint="Use it (`kperflab lab status`), stop it (`kperflab lab down`), or set KPERFLAB_HOME "
                                "to another directory for a second lab.")
        try:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self._socket.bind("\0" + SOCKET_PREFIX + lab_id)  # alive for everyone to see while this process lives
            d = registry_dir()
            d.mkdir(parents=True, exist_ok=True, mode=0o755 if os.geteuid() == 0 else 0o700)
            self.path = d / f"{lab_id}.json"
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self._state_fd)
            if getattr(self, "_socket", None) is not None:
                self._socket.close()
            raise
        self.info: dict[str, Any] = {"lab_id": lab_id, "pid": os.getpid(), "uid": os.geteuid(),
                                     "state_dir": str(state_dir), "run_dir": str(run_dir(state_dir, lab_id)),
                                     "started": time.time(), **info}
        self._write()
        (state_dir / "lab.lock").write_text(f"{lab_id} {os.getpid()}\n")

    def update(self, **info: Any) -> None:
        self.info.update(info)
        self._write()

    def claim_network_slot(self, slots: int = NETWORK_SLOTS, want: int | None = None, required: bool = False) -> int:
        """A network slot no other live lab holds (its pod and service CIDRs follow from it), said in the record.
        Chosen under a lock on the registry, so two labs starting together get different slots. ``want``: the slot to
        take when free (the one this state dir had before); with ``required`` (a kept store, whose ClusterIPs and
        pod addresses lie in that slot's ranges) another lab holding it is a LabError naming what to do."""
        d = registry_dir()
        fd = os.open(d / ".network.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            holders = {r.info.get("network_slot"): r for r in records() if r.lab_id != self.lab_id and r.alive}
            if want is not None and 0 <= want < slots:
                if want not in holders:
                    self.update(network_slot=want)
                    return want
                if required:
                    raise slot_taken(want, holders[want])
            free = [k for k in range(slots) if k not in holders]
            if not free:
                raise LabError(f"{slots} labs are running on this machine, each with its own pod network; no slot is "
                               "free.", hint="Stop one (`kperflab lab status` lists them).")
            kept = _kept_slots(d, self.state_dir)  # a stopped lab's kept state needs its slot back: leave it, if we can
            slot = next((k for k in free if k not in kept), free[0])
            self.update(network_slot=slot)
            return slot
        finally:
            os.close(fd)

    def reserve_network_slot(self, slot: int) -> None:
        """Note that this state dir's kept store lives in ``slot``, so that labs started while it is down take
        another one (see ``_kept_slots``)."""
        d = registry_dir() / "slots"
        d.mkdir(exist_ok=True, mode=0o755 if os.geteuid() == 0 else 0o700)
        for other in d.glob("*.json"):  # one slot per state dir
            try:
                if json.loads(other.read_text()).get("state_dir") == str(self.state_dir) and other.stem != str(slot):
                    other.unlink(missing_ok=True)
            except (OSError, ValueError):
                continue
        (d / f"{slot}.json").write_text(json.dumps({"state_dir": str(self.state_dir)}))

    def _write(self) -> None:
        data = json.dumps(self.info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Unregister (the lab has removed what it made). Safe to call twice."""
        if getattr(self, "_fd", None) is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None
            os.close(self._state_fd)
            self._socket.close()


def _kept_slots(registry: Path, state_dir: Path) -> set[int]:
    """The slots that other state dirs' kept stores live in (their labs stopped, their state kept)."""
    out = set()
    for f in (registry / "slots").glob("*.json"):
        try:
            sd = json.loads(f.read_text()).get("state_dir")
            if sd and sd != str(state_dir) and paths.lab_store_db(Path(sd)).exists():
                out.add(int(f.stem))
        except (OSError, ValueError):
            continue
    return out


def slot_cidrs(slot: int) -> tuple[str, str]:
    """The pod and service CIDRs of a network slot."""
    return f"10.{244 + slot}.0.0/16", f"10.{96 + slot}.0.0/16"


def slot_holder(slot: int, state_dir: Path | None = None) -> LabRecord | None:
    """The live lab (other than one running from ``state_dir``) that holds network slot ``slot``, if any."""
    return next((r for r in records() if r.alive and r.info.get("network_slot") == slot
                 and (state_dir is None or r.state_dir != state_dir)), None)


def slot_taken(slot: int, holder: LabRecord) -> LabError:
    pod, svc = slot_cidrs(slot)
    home = holder.info.get("home") or holder.state_dir
    return LabError(f"This lab's kept state has its Services and pods in {svc} and {pod}, which the running lab "
                    f"{holder.lab_id} (home {home}) now uses.",
                    hint=f"Stop that lab (`kperflab lab down --id {holder.lab_id}`), or wipe this lab's state with "
                         "`kperflab lab reset`.")


def state_dir_locked(state_dir: Path) -> bool:
    """Whether a live lab holds ``<state dir>/lab.lock``."""
    try:
        fd = os.open(state_dir / "lab.lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            return False
        return True
    finally:
        os.close(fd)


# -- reading the registry ----------------------------------------------------------------------------

@dataclass
class LabRecord:
    lab_id: str
    path: Path
    alive: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path | None:
        return Path(self.info["state_dir"]) if self.info.get("state_dir") else None


def records() -> list[LabRecord]:
    """Every registered lab on this machine (that this user can see), alive or not, oldest first."""
    live = live_ids()
    out = []
    for d in _registry_dirs():
        try:
            entries = sorted(d.glob("*.json"))
        except OSError:
            continue
        for p in entries:
            lab_id = p.stem
            if not ID_RE.match(lab_id):
                continue
            try:
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                alive = lab_id in live or not _try_lock(fd, fcntl.LOCK_SH)
                try:
                    info = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
                except ValueError:
                    info = {}  # being written: a lab registers before it writes
            finally:
                os.close(fd)
            out.append(LabRecord(lab_id, p, alive, info))
    return sorted(out, key=lambda r: r.info.get("started", 0))


# -- what a lab has in the kernel ----------------------------------------------------------------------

def processes_by_lab() -> dict[str, list[int]]:
    """Every process a lab started for a pod, by lab id (read from ``/proc/<pid>/environ``)."""
    marker = f"{LAB_ENV}=".encode()
    me = os.getpid()
    out: dict[str, list[int]] = {}
    for d in os.scandir("/proc"):
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            with open(f"/proc/{d.name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if marker not in env:
            continue
        for item in env.split(b"\0"):
            if item.startswith(marker):
                out.setdefault(item[len(marker):].decode(errors="replace"), []).append(int(d.name))
                break
    return {k: sorted(v) for k, v in out.items()}


def lab_processes(lab_id: str) -> list[int]:
    return processes_by_lab().get(lab_id, [])


_mounts_under = loopfs.mounts_under  # mount points at or under a path, deepest first


@dataclass
class Census:
    """What one lab id has on this machine."""

    lab_id: str
    processes: list[int] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    record: LabRecord | None = None
    netns: list[str] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)  # loop devices backed by a file under its run dir

    def empty(self) -> bool:
        return not (self.processes or self.cgroups or self.mounts or self.netns or self.loops)

    def describe(self) -> str:
        parts = [f"{len(self.processes)} process(es)", f"{len(self.cgroups)} cgroup tree(s)", f"{len(self.mounts)} mount(s)"]
        if self.netns:
            parts.append(f"network namespace {', '.join(self.netns)}")
        if self.loops:
            parts.append(f"{len(self.loops)} loop device(s)")
        return ", ".join(parts)


def census(lab_id: str, state_dir: Path | None = None, driver: cgroups.Driver | None = None) -> Census:
    """What the lab ``lab_id`` has on this machine now: processes, cgroup trees, mounts under its run dir."""
    drv = driver if driver is not None else cgroups.detect()
    rec = next((r for r in records() if r.lab_id == lab_id), None)
    sd = state_dir or (rec.state_dir if rec else None)
    return Census(lab_id, lab_processes(lab_id), [str(d) for d in drv.lab_dirs(lab_id)] if drv else [],
                  _mounts_of(lab_id, sd), rec, _netns_of(lab_id), _loops_of(lab_id, sd))


def dead_labs(home_state_dir: Path | None = None) -> list[Census]:
    """Every lab id that has something on this machine but no live lab: what a crashed or killed lab left.

    The kernel is scanned first and the registry read after, so a lab that starts meanwhile has registered before
    its first cgroup or process existed, and is seen alive."""
    drv = cgroups.detect()
    procs = processes_by_lab()
    cg_ids = drv.lab_ids() if drv else set()
    ns_ids = {i for i in lab_netns() if ID_RE.match(i)}
    kernel_ids = loopfs.run_ids()  # mounts and loop devices under a run/<id>/, wherever its state dir went
    run_ids: set[str] = set()
    if home_state_dir is not None and (home_state_dir / "run").is_dir():
        run_ids = {p.name for p in (home_state_dir / "run").iterdir() if ID_RE.match(p.name)}
    recs = {r.lab_id: r for r in records()}
    live = live_ids() | {i for i, r in recs.items() if r.alive}
    out = []
    for lab_id in sorted((set(procs) | cg_ids | run_ids | kernel_ids | ns_ids | {i for i, r in recs.items() if not r.alive}) - live):
        rec = recs.get(lab_id)
        sd = rec.state_dir if rec else (home_state_dir if lab_id in run_ids else None)
        out.append(Census(lab_id, procs.get(lab_id, []), [str(d) for d in drv.lab_dirs(lab_id)] if drv else [],
                          _mounts_of(lab_id, sd), rec, _netns_of(lab_id), _loops_of(lab_id, sd)))
    return out


def _mounts_of(lab_id: str, sd: Path | None) -> list[str]:
    found = set(_mounts_under(run_dir(sd, lab_id))) if sd else set()
    return sorted(found | set(loopfs.mounts_of_run_id(lab_id)), key=len, reverse=True)


def _loops_of(lab_id: str, sd: Path | None) -> list[str]:
    found = set(loopfs.loop_devices_under(run_dir(sd, lab_id))) if sd else set()
    return sorted(found | set(loopfs.loop_devices_of_run_id(lab_id)))


def _netns_of(lab_id: str) -> list[str]:
    return [p.name for i, p in lab_netns().items() if i == lab_id]


def remove(lab_id: str, state_dir: Path | None = None, driver: cgroups.Driver | None = None, own: bool = False) -> Census:
    """Remove everything of ``lab_id``: kill its processes, remove its cgroup tree, unmount its mounts, remove its
    run dir and its registry record. Refuses while that lab is alive, unless ``own`` (the lab itself, stopping).
    Files and mounts of another user's dead lab are left to that user (its record, which it wrote, names them)."""
    drv = driver if driver is not None else cgroups.detect()
    rec = next((r for r in records() if r.lab_id == lab_id), None)
    if not own and (lab_id in live_ids() or (rec is not None and rec.alive)):
        pid = f" (pid {rec.info.get('pid')})" if rec else ""
        raise LabError(f"The lab {lab_id} is running{pid}; its things were left alone.",
                       hint="Stop it with `kperflab lab down` from its KPERFLAB_HOME.")
    theirs = rec is not None and rec.info.get("uid", os.geteuid()) != os.geteuid()
    sd = None if theirs else (state_dir or (rec.state_dir if rec else None))
    before = census(lab_id, sd, drv)
    for _ in range(50):
        pids = lab_processes(lab_id)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)
    if not theirs:
        delete_netns(lab_id)  # its bridge, veths and kube-proxy rules go with it
    if drv is not None:
        rel = cgroups.lab_root(lab_id)
        drv.kill_all(rel)
        drv.remove(rel)
        drv.remove_parent_if_empty()
    if not theirs:  # by its id, even where its state dir was moved or deleted
        for m in loopfs.mounts_of_run_id(lab_id):
            subprocess.run(["umount", "-l", m], capture_output=True)
        for dev in loopfs.loop_devices_of_run_id(lab_id):
            subprocess.run(["losetup", "-d", dev], capture_output=True)
    if sd is not None:
        # FUSE mounts (their sshfs killed above), loop filesystems, bind mounts; then loop devices left attached
        loopfs.cleanup(run_dir(sd, lab_id))
        _rm_tree(run_dir(sd, lab_id))
        try:
            (sd / "run").rmdir()
        except OSError:
            pass
    if rec is not None and not rec.alive and not theirs:
        rec.path.unlink(missing_ok=True)
    return before


def _rm_tree(d: Path) -> None:
    import shutil

    if d.is_dir() and not _mounts_under(d):
        shutil.rmtree(d, ignore_errors=True)


def remove_dead(home_state_dir: Path | None = None) -> list[Census]:
    """Remove what every dead lab left (never a live lab's things); returns what was found."""
    found = []
    for c in dead_labs(home_state_dir):
        try:
            remove(c.lab_id, c.record.state_dir if c.record else home_state_dir)
        except LabError:  # it came alive meanwhile: not ours to touch
            continue
        found.append(c)
    return found
