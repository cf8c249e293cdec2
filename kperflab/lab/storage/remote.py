"""The `remote` storage class (provisioner and CSI driver ``remote.storage.kperflab.dev``): a network filesystem served
by a storage server on the lab's pod network and mounted on the node over it.

Choice: SFTP, served by Debian's OpenSSH ``sftp-server`` and mounted by Debian's ``sshfs`` (FUSE). This kernel has
FUSE but neither an NFS client nor NBD, so the network filesystem has to live in user space on the node; sshfs is the
packaged, maintained FUSE network filesystem that needs no daemon of its own on the server (``-o directport`` speaks
SFTP over a plain TCP connection, without ssh and its keys). Every byte a pod reads or writes crosses the pod network
as SFTP packets (a request/response round trip each), which is what a remote volume costs: latency per operation.

Layout::

    storage server    a process in a network and a mount namespace of its own (``unshare --net --mount``), carrying
                      KPERFLAB_LAB=<id>; its eth0 is a port of the lab's pod bridge with an address from the pod CIDR
                      (the CNI ADD a pod sandbox gets), so it is reached from the node namespace as a pod is.
                      It listens on <ip>:2022; each connection runs ``sftp-server`` chrooted to the export root, whose
                      only contents are ``/usr`` (read-only) and ``/volumes/<handle>``: the lab's remote volumes, each
                      an ext4 loop filesystem (``loopfs``) mounted inside the server's mount namespace only — the host's
                      mount table never shows it, and it dies with the server. The images are kept across restarts
                      in ``<state dir>/volumes/remote/<handle>.img`` and mounted through a hard link in the run dir
                      (``run/<id>/storage-server/disks``); a restarted lab's server serves them again.
    the node          ``sshfs -o directport=2022 <ip>:/volumes/<handle> <globalmount>`` run in the node's network
                      namespace (``nsenter --net``), mounted at
                      run/<id>/plugins/kubernetes.io/csi/remote.storage.kperflab.dev/<handle>/globalmount (the
                      kubelet's CSI staging path), once per volume, shared by every pod that uses it (refcounted), and
                      bind-mounted into their containers by the kubelet.

Like an NFS export to the pod CIDR without authentication, a pod that dials <ip>:2022 can read every remote volume of
its lab (never the host's files, never another lab's). The capacity is real (the server's filesystem is the volume's
size, and statvfs through sshfs reports it), but a write past it fails with EIO in the pod, not ENOSPC: SFTP version 3
has no "no space" status, so sftp-server answers SSH_FX_FAILURE and sshfs maps that to EIO — as a real sshfs volume
does. Access modes: RWO, ROX and RWX.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from ..network.podnet import PodNetwork, read_net_dev, socket_in, wait_for_own_netns
from . import loopfs

log = logging.getLogger("kperflab.lab.storage")

DRIVER = "remote.storage.kperflab.dev"
ACCESS_MODES = frozenset({"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"})
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PORT = 2022
SANDBOX_ID = "kperflab-storage-server"  # its IPAM entry, as a pod sandbox's id


def unavailable_reason() -> str:
    """Why the remote class cannot run here ('' when it can)."""
    import shutil

    if not Path(SFTP_SERVER).exists():
        return f"{SFTP_SERVER} is missing (Debian package openssh-sftp-server)"
    if not shutil.which("sshfs"):
        return "sshfs is missing (Debian package sshfs)"
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing (the fuse kernel module)"
    return ""


class StorageServer:
    """The SFTP server on the pod network and its volumes."""

    def __init__(self, lab_id: str, run_dir: Path, podnet: PodNetwork, env: dict[str, str], volumes_dir: Path) -> None:
        self.lab_id = lab_id
        self.root = run_dir / "storage-server"
        self.chroot = self.root / "export"
        self.disks = self.root / "disks"  # this run's hard links to the images (its loop devices name them)
        self.images = volumes_dir / "remote"  # the volumes' images: kept across restarts
        self.podnet = podnet
        self.env = env
        self.ip = ""
        self.holder: subprocess.Popen[bytes] | None = None
        self._listener: socket.socket | None = None
        self._children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def pid(self) -> int:
        assert self.holder is not None
        return self.holder.pid

    def start(self) -> StorageServer:
        for d in (self.chroot / "usr", self.chroot / "etc", self.chroot / "dev", self.chroot / "volumes", self.disks):
            d.mkdir(parents=True, exist_ok=True)
        (self.chroot / "dev" / "null").touch()
        for name in ("bin", "lib", "lib64", "sbin"):
            link, host = self.chroot / name, Path("/") / name
            if host.is_symlink() and not link.is_symlink():
                link.symlink_to(os.readlink(host))
        (self.chroot / "etc" / "passwd").write_text("root:x:0:0:root:/:/usr/sbin/nologin\n")
        (self.chroot / "etc" / "group").write_text("root:x:0:\n")
        # the holder: new net + mount namespaces (private propagation: nothing it mounts reaches the host), /usr
        # bound read-only into the export root (and /dev/null, which sftp-server opens), then it waits until killed
        script = (f"mount --rbind /usr {_q(self.chroot / 'usr')} && mount -o remount,bind,ro {_q(self.chroot / 'usr')} "
                  f"&& mount --bind /dev/null {_q(self.chroot / 'dev' / 'null')} && echo ready && exec sleep infinity")
        self.holder = subprocess.Popen(["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       env=self.env, start_new_session=True)
        try:
            assert self.holder.stdout is not None
            line = self.holder.stdout.readline()
            if line.strip() != b"ready":
                err = self.holder.stderr.read().decode(errors="replace") if self.holder.stderr else ""
                raise OSError(f"the storage server did not start: {err.strip() or 'no output'}")
            wait_for_own_netns(self.pid)
            self.ip = self.podnet.add(SANDBOX_ID, self.pid).ip
            self._listener = socket_in(f"/proc/{self.pid}/ns/net", socket.SOCK_STREAM, (self.ip, PORT), listen=64)
        except BaseException:
            self.stop()
            raise
        threading.Thread(target=self._serve, name="storage-server", daemon=True).start()
        return self

    def _serve(self) -> None:
        assert self._listener is not None
        log_file = open(self.root / "sftp-server.log", "ab")  # noqa: SIM115 - held for the server's life
        try:
            while not self._stopped.is_set():
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    return
                with conn:
                    try:  # one sftp-server per connection, its stdin and stdout the socket, chrooted to the export
                        child = subprocess.Popen(
                            ["nsenter", f"--target={self.pid}", "--mount", "--", "chroot", str(self.chroot),
                             SFTP_SERVER, "-e", "-l", "ERROR", "-d", "/volumes"],
                            stdin=conn.fileno(), stdout=conn.fileno(), stderr=log_file, env=self.env,
                            start_new_session=True)
                    except OSError:
                        log.exception("sftp-server did not start")
                        continue
                with self._lock:
                    self._children = [c for c in self._children if c.poll() is None] + [child]
                # reaped as soon as its connection ends (the kubelet's node leaves no zombies behind)
                threading.Thread(target=child.wait, name="sftp-reaper", daemon=True).start()
        finally:
            log_file.close()

    # -- volumes ------------------------------------------------------------------------------------
    def volume_path(self, handle: str) -> str:
        """The volume's path as the SFTP client names it."""
        return f"/volumes/{handle}"

    def image(self, handle: str) -> Path:
        return self.images / f"{handle}.img"

    def create_volume(self, handle: str, size_bytes: int) -> None:
        loopfs.create(self.image(handle), size_bytes, self.chroot / "volumes" / handle, ns_pid=self.pid,
                      link=self.disks / f"{handle}.img")

    def attach_volume(self, handle: str) -> None:
        """Serve an existing volume again (a restored lab): its image mounted in the server's mount namespace."""
        mnt = self.chroot / "volumes" / handle
        if loopfs.loop_device(mnt, self.pid) is None:
            loopfs.attach(self.image(handle), mnt, link=self.disks / f"{handle}.img", ns_pid=self.pid)

    def delete_volume(self, handle: str) -> None:
        loopfs.destroy(self.chroot / "volumes" / handle, self.image(handle), ns_pid=self.pid,
                       link=self.disks / f"{handle}.img")

    def has_volume(self, handle: str) -> bool:
        return self.image(handle).exists()

    def counters(self) -> dict[str, int]:
        """The server's eth0 byte and packet counters (what crossed the pod network to and from it)."""
        return read_net_dev(Path(f"/proc/{self.pid}/net/dev")).get("eth0", {}) if self.holder else {}

    def stop(self) -> None:
        """Stop serving; the server's namespaces, its volumes' mounts and their loop devices go with its processes."""
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            children, self._children = self._children, []
        for c in children:
            _kill_group(c)
        if self.holder is not None:
            _kill_group(self.holder)
            self.podnet.delete(SANDBOX_ID)
        deadline = time.monotonic() + 5
        while loopfs.loop_devices_under(self.root) and time.monotonic() < deadline:
            time.sleep(0.05)  # the mount namespace is released asynchronously; autoclear frees the loops after
        loopfs.cleanup(self.root)
        for f in self.disks.glob("*.img") if self.disks.is_dir() else []:
            f.unlink(missing_ok=True)  # the links: the images stay for the next run


class RemoteBackend:
    """The provisioner side: a volume on the storage server per PV."""

    name = DRIVER
    access_modes = ACCESS_MODES
    description = "an SFTP network filesystem on the lab's storage server, mounted over the pod network by sshfs"

    def __init__(self, server: StorageServer) -> None:
        self.server = server

    def provision(self, pv_name: str, size_bytes: int, params: dict[str, str]) -> dict[str, Any]:
        handle = pv_name
        self.server.create_volume(handle, size_bytes)
        return {"csi": {"driver": DRIVER, "volumeHandle": handle, "fsType": "fuse.sshfs",
                        "volumeAttributes": {"server": self.server.ip, "port": str(PORT),
                                             "share": self.server.volume_path(handle)}}}

    def delete(self, pv: dict[str, Any]) -> None:
        self.server.delete_volume(pv["spec"]["csi"]["volumeHandle"])

    def attach(self, pv: dict[str, Any]) -> None:
        self.server.attach_volume(pv["spec"]["csi"]["volumeHandle"])

    def lost(self, pv: dict[str, Any]) -> str:
        """Why the volume's data is gone ('' when it is there)."""
        handle = pv["spec"]["csi"].get("volumeHandle") or ""
        if handle and self.server.has_volume(handle):
            return ""
        return (f"the volume's data is gone: the storage server has no volume {handle} (its image "
                f"{self.server.image(handle)} does not exist: a volume made before the lab kept volumes across "
                "restarts, or its file was removed)")

    def owns(self, pv: dict[str, Any]) -> bool:
        return ((pv.get("spec") or {}).get("csi") or {}).get("driver") == DRIVER


class RemoteMounts:
    """The node side (the CSI node plugin's stage/publish): one sshfs mount per volume, shared by the pods using it."""

    def __init__(self, run_dir: Path, node_netns: str, env: dict[str, str], server: StorageServer | None = None) -> None:
        self.base = run_dir / "plugins" / "kubernetes.io" / "csi" / DRIVER
        self.node_netns = node_netns
        self.env = env
        self.server = server  # the lab's own: its address this run (a PV made by an earlier run may name another)
        self._users: dict[str, set[tuple[str, str]]] = {}
        self._lock = threading.Lock()

    def global_mount(self, handle: str) -> Path:
        return self.base / handle / "globalmount"

    def publish(self, pv: dict[str, Any], pod_uid: str, volume: str) -> Path:
        csi = pv["spec"]["csi"]
        handle, attrs = csi["volumeHandle"], csi.get("volumeAttributes") or {}
        gm = self.global_mount(handle)
        with self._lock:
            if not loopfs.mounts_under(gm):
                self._mount(attrs, handle, gm)
            self._users.setdefault(handle, set()).add((pod_uid, volume))
        return gm

    def _mount(self, attrs: dict[str, str], handle: str, gm: Path) -> None:
        server, port, share = attrs.get("server"), attrs.get("port", str(PORT)), attrs.get("share", f"/volumes/{handle}")
        if self.server is not None and self.server.ip:
            server, port = self.server.ip, str(PORT)
        if not server:
            raise OSError(f"rpc error: code = InvalidArgument desc = volume {handle} has no server attribute")
        gm.mkdir(parents=True, exist_ok=True)
        argv = ["nsenter", f"--net={self.node_netns}", "sshfs", f"{server}:{share}", str(gm), "-o",
                f"directport={port},allow_other,reconnect,ServerAliveInterval=15,ServerAliveCountMax=3,"
                f"fsname={server}:{share},subtype=sshfs"]
        r = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=30)
        if r.returncode != 0 or not loopfs.mounts_under(gm):
            raise OSError(f"rpc error: code = Internal desc = mount of {server}:{share} failed: "
                          f"{(r.stderr or r.stdout).strip() or f'sshfs exited with {r.returncode}'}")

    def unpublish(self, pv: dict[str, Any], pod_uid: str, volume: str) -> None:
        handle = pv["spec"]["csi"]["volumeHandle"]
        with self._lock:
            users = self._users.get(handle, set())
            users.discard((pod_uid, volume))
            if users:
                return
            self._users.pop(handle, None)
            self._unmount(handle)

    def _unmount(self, handle: str) -> None:
        gm = self.global_mount(handle)
        if loopfs.mounts_under(gm):
            r = subprocess.run(["fusermount3", "-u", str(gm)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(gm)], capture_output=True)
        for d in (gm, gm.parent):
            try:
                d.rmdir()
            except OSError:
                pass

    def users(self, handle: str) -> set[tuple[str, str]]:
        with self._lock:
            return set(self._users.get(handle, set()))

    def stop(self) -> None:
        with self._lock:
            handles = set(self._users) | ({p.name for p in self.base.iterdir()} if self.base.is_dir() else set())
            self._users.clear()
            for h in handles:
                self._unmount(h)


def _q(p: Path) -> str:
    import shlex

    return shlex.quote(str(p))


def _kill_group(p: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
