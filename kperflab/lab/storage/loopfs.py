"""A filesystem of a set size in a sparse file: ext4 on a loop device, mounted where a volume needs it.

Why a loop device per volume (and not a directory with a project quota): the capacity is the filesystem's own, so
``df``/``statvfs`` in the pod shows exactly the volume's size, writing past it fails with the kernel's ENOSPC, and
nothing depends on the filesystem under the lab's state dir (project quotas need ext4/xfs mounted with ``prjquota``,
which a workshop machine's disk rarely is). The backing file is sparse: a 1 GiB volume costs only what is written.

The loop device is set up by ``mount -o loop`` with ``autoclear`` (util-linux's default for a device it attaches),
so the kernel frees it when the filesystem's last mount goes away: unmounting is enough, even lazily, even from a
namespace that died. For a crashed lab, ``cleanup(run_dir)`` unmounts what is mounted under the run dir and detaches
every loop device whose backing file lies under it (``/sys/block/loop*/loop/backing_file``), and only those.

A volume kept across restarts has its image outside the run dir (``<state dir>/volumes``); ``attach`` mounts it
through a hard link in the run dir, so its loop device is still named by the run dir (the kernel names a loop's file
by the path it was opened by, "(deleted)" once that link is gone) and found by the run dir or the lab's id as before.

``ns_pid`` (optional everywhere) runs the mount commands in the mount namespace of that process (``nsenter --mount``),
for filesystems a storage server keeps out of the host's mount table.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

MIN_SIZE = 8 << 20  # mkfs.ext4 wants room for its metadata and journal; smaller claims get this much


class LoopFSError(OSError):
    pass


class NoSpace(LoopFSError):
    """The disk that would hold the filesystem has less free space than its size."""


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _run(argv: list[str], ns_pid: int | None = None, timeout: float = 120) -> str:
    if ns_pid is not None:
        argv = ["nsenter", f"--target={ns_pid}", "--mount", "--", *argv]
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout, text=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LoopFSError(f"{argv[0]}: {exc}") from exc
    if r.returncode != 0:
        raise LoopFSError(f"{' '.join(argv)}: {(r.stderr or r.stdout).strip()}")
    return r.stdout


def make(backing_file: Path, size_bytes: int) -> None:
    """Make ``backing_file`` a sparse file of ``size_bytes`` holding an ext4 filesystem with no reserved blocks (not
    mounted). Refuses a file already there (it belongs to another volume); removed again when a step fails."""
    size = max(int(size_bytes), MIN_SIZE)
    backing_file.parent.mkdir(parents=True, exist_ok=True)
    free = os.statvfs(backing_file.parent).f_bavail * os.statvfs(backing_file.parent).f_frsize
    if size > free:  # sparse, but a filesystem promised bigger than the disk would fail later, mid-write
        raise NoSpace(f"requested {_human(size)}, but the disk holding it ({backing_file.parent}) has only "
                      f"{_human(free)} free")
    with open(backing_file, "xb") as f:  # a file already there belongs to another volume
        f.truncate(size)
    try:
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard,root_owner=0:0", str(backing_file)])
    except BaseException:
        backing_file.unlink(missing_ok=True)
        raise


def attach(backing_file: Path, mountpoint: Path, *, link: Path | None = None, ns_pid: int | None = None,
           wait: float = 3.0) -> None:
    """Mount the filesystem in ``backing_file`` at ``mountpoint`` (made if missing).

    With ``link``, the loop device is set up through a hard link at that path (made, or replaced): the kernel names
    the file by the path it was opened by, so a volume whose data lives outside a lab's run dir still has its loop
    device found by the run dir or the lab's id (``cleanup``, ``loop_devices_of_run_id``), and removing the run dir
    removes only the link. Refuses an image some loop device still has after ``wait`` seconds (an ext4 mounted twice
    is corrupted)."""
    users = loop_devices_of_file(backing_file)
    deadline = time.monotonic() + wait  # a run just stopped: its lazily unmounted loop devices are freed asynchronously
    while users and time.monotonic() < deadline:
        time.sleep(0.1)
        users = loop_devices_of_file(backing_file)
    if users:
        raise LoopFSError(f"{backing_file} is already in use by {', '.join(users)}")
    source = backing_file
    if link is not None:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        os.link(backing_file, link)
        source = link
    try:
        mountpoint.mkdir(parents=True, exist_ok=True)
        _run(["mount", "-t", "ext4", "-o", "loop", str(source), str(mountpoint)], ns_pid)
    except BaseException:
        if link is not None:
            link.unlink(missing_ok=True)
        raise


def create(backing_file: Path, size_bytes: int, mountpoint: Path, *, ns_pid: int | None = None,
           link: Path | None = None) -> None:
    """Make ``backing_file`` (``make``), mount it at ``mountpoint`` (``attach``, through ``link`` if given), and let
    anyone write at its root (as a freshly provisioned volume is). Undone entirely when a step fails."""
    make(backing_file, size_bytes)
    try:
        attach(backing_file, mountpoint, link=link, ns_pid=ns_pid)
        try:
            _run(["chmod", "0777", str(mountpoint)], ns_pid)
        except LoopFSError:
            detach(mountpoint, link, ns_pid=ns_pid)
            raise
    except BaseException:
        backing_file.unlink(missing_ok=True)
        raise


def loop_device(mountpoint: Path, ns_pid: int | None = None) -> str | None:
    """The loop device mounted at ``mountpoint`` (None when nothing is)."""
    mounts = Path(f"/proc/{ns_pid}/mounts" if ns_pid is not None else "/proc/self/mounts")
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        src, target = line.split()[:2]
        if target.replace("\\040", " ") == str(mountpoint) and src.startswith("/dev/loop"):
            return src
    return None


def grow(backing_file: Path, new_size: int, mountpoint: Path, *, ns_pid: int | None = None) -> int:
    """Grow the filesystem online to ``new_size`` bytes (never shrinks); returns its size."""
    dev = loop_device(mountpoint, ns_pid)
    if dev is None:
        raise LoopFSError(f"nothing is mounted at {mountpoint}")
    if new_size <= backing_file.stat().st_size:
        return backing_file.stat().st_size
    os.truncate(backing_file, new_size)
    _run(["losetup", "--set-capacity", dev])  # the loop device learns the file's new size
    _run(["resize2fs", dev], ns_pid)  # ext4 grows online, mounted
    return new_size


def detach(mountpoint: Path, link: Path | None = None, *, ns_pid: int | None = None) -> None:
    """Unmount (lazily when busy) and remove the mount point and ``link``; the backing file stays. Idempotent."""
    if loop_device(mountpoint, ns_pid) is not None or _is_mountpoint(mountpoint, ns_pid):
        try:
            _run(["umount", str(mountpoint)], ns_pid)
        except LoopFSError:
            _run(["umount", "-l", str(mountpoint)], ns_pid)
    if link is not None:
        for dev in loop_devices_of(link):  # attached but not mounted (a crash between attach and mount)
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        link.unlink(missing_ok=True)
    try:
        mountpoint.rmdir()
    except OSError:
        pass


def destroy(mountpoint: Path, backing_file: Path, *, ns_pid: int | None = None, link: Path | None = None) -> None:
    """Unmount (lazily when busy: a container may still hold it; the loop device is freed when it lets go) and
    remove the backing file, its ``link`` and the mount point. Idempotent."""
    detach(mountpoint, link, ns_pid=ns_pid)
    for dev in loop_devices_of(backing_file):  # attached but not mounted (a crash between attach and mount)
        subprocess.run(["losetup", "-d", dev], capture_output=True)
    backing_file.unlink(missing_ok=True)


def statvfs(mountpoint: Path) -> dict[str, int]:
    """capacity/available/used bytes and inodes as the kubelet reports a volume's (from statvfs)."""
    st = os.statvfs(mountpoint)
    return {"capacityBytes": st.f_blocks * st.f_frsize, "availableBytes": st.f_bavail * st.f_frsize,
            "usedBytes": (st.f_blocks - st.f_bfree) * st.f_frsize, "inodes": st.f_files,
            "inodesFree": st.f_ffree, "inodesUsed": st.f_files - st.f_ffree}


def _is_mountpoint(p: Path, ns_pid: int | None) -> bool:
    return str(p) in mounts_under(p.parent, ns_pid)


# -- finding a lab's loop filesystems by its run dir ------------------------------------------------

def mounts_under(root: Path, ns_pid: int | None = None) -> list[str]:
    """Mount points at or under ``root``, deepest first."""
    prefix = str(root).rstrip("/") + "/"
    out = []
    try:
        with open(f"/proc/{ns_pid}/mounts" if ns_pid is not None else "/proc/self/mounts") as f:
            for line in f:
                target = line.split()[1].replace("\\040", " ")
                if target.startswith(prefix) or target == prefix[:-1]:
                    out.append(target)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)


def loop_devices() -> dict[str, str]:
    """/dev/loopN → its backing file, for every attached loop device (" (deleted)" stripped)."""
    out = {}
    for d in Path("/sys/block").glob("loop*"):
        try:
            f = (d / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        out[f"/dev/{d.name}"] = f.removesuffix(" (deleted)")
    return out


def loop_devices_of(backing_file: Path) -> list[str]:
    return sorted(dev for dev, f in loop_devices().items() if f == str(backing_file))


def loop_devices_of_file(backing_file: Path) -> list[str]:
    """Loop devices attached to ``backing_file`` by whatever name (a hard link of it, a name since deleted): by its
    device and inode, as ``losetup --list`` reports them. [] when the file is missing."""
    try:
        st = os.stat(backing_file)
    except OSError:
        return []
    try:
        out = _run(["losetup", "--list", "--json", "--output", "NAME,BACK-INO,BACK-MAJ:MIN"], timeout=10)
    except LoopFSError:
        return []
    import json

    want = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    devs = []
    for d in (json.loads(out or "{}").get("loopdevices") or []):
        if str(d.get("back-ino")) == str(st.st_ino) and str(d.get("back-maj:min", "")).replace(" ", "") == want:
            devs.append(d["name"])
    return sorted(devs)


def loop_devices_under(root: Path) -> list[str]:
    """Loop devices whose backing file lies under ``root``."""
    prefix = str(root).rstrip("/") + "/"
    return sorted(dev for dev, f in loop_devices().items() if f.startswith(prefix))


def _of_run_id(path: str, run_id: str) -> bool:
    return f"/run/{run_id}/" in path or path.endswith(f"/run/{run_id}")


def mounts_of_run_id(run_id: str) -> list[str]:
    """Mount points inside any directory ``.../run/<run_id>``, deepest first: a lab's, found by its id alone, even
    when its state dir was moved or deleted (its lab ids are random 16-hex names, so no one else's path has it)."""
    out = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                target = line.split()[1].replace("\\040", " ")
                if _of_run_id(target, run_id):
                    out.append(target)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)


def loop_devices_of_run_id(run_id: str) -> list[str]:
    return sorted(dev for dev, f in loop_devices().items() if _of_run_id(f, run_id))


def run_ids() -> set[str]:
    """The ids named by mounts and loop devices under a ``run/<id>`` directory."""
    import re

    rx = re.compile(r"/run/([0-9a-f]{16})(/|$)")
    found = set()
    try:
        with open("/proc/self/mounts") as f:
            targets = [line.split()[1] for line in f]
    except OSError:
        targets = []
    for p in [*targets, *loop_devices().values()]:
        m = rx.search(p)
        if m:
            found.add(m.group(1))
    return found


def cleanup(root: Path) -> list[str]:
    """Unmount everything under ``root`` (lazily) and detach every loop device backed by a file under it; returns
    what was undone. For a stopped or dead lab's run dir: never touches anything outside it."""
    undone = []
    for m in mounts_under(root):
        subprocess.run(["umount", "-l", m], capture_output=True)
        undone.append(m)
    for dev in loop_devices_under(root):
        subprocess.run(["losetup", "-d", dev], capture_output=True)  # busy: the kernel sets autoclear instead
        undone.append(dev)
    deadline = time.monotonic() + 3  # a dying mount namespace lets go of its filesystems asynchronously
    while undone and loop_devices_under(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    return undone
