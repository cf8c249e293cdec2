"""The `local` storage class' backend (provisioner ``local.storage.kperflab.dev``): one ext4 filesystem per volume, in a
sparse file on a loop device, kept in the state dir across restarts and mounted on the node under the lab's run dir.

Choice: a loop-device filesystem per volume rather than a directory with a project quota. A volume then has a real
capacity of its own: ``df`` in the pod and the kubelet's statvfs show exactly its size, writing past it gives the
kernel's ENOSPC (not a delayed eviction), and deleting it is an unmount and an unlink. A project quota would need the
lab's state dir on ext4/xfs mounted with ``prjquota`` — rarely true of a workshop machine — and its usage would be a
quota report rather than a filesystem's own numbers. The cost is a small per-volume ext4 overhead (journal,
metadata: a 100Mi claim has about 90 MiB free) and a loop device per volume; the sparse file costs only what is written.

The PV looks as a local PV does: ``spec.local.path`` is where the filesystem is found on the node, and
``spec.nodeAffinity`` pins it to the lab's node (``kubernetes.io/hostname``). The kubelet bind-mounts that path into
the pod's containers; no plugin call is needed on the node.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from . import loopfs

PROVISIONER = "local.storage.kperflab.dev"
ACCESS_MODES = frozenset({"ReadWriteOnce", "ReadWriteOncePod"})


def node_affinity(node: str) -> dict[str, Any]:
    return {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}


class LocalBackend:
    """Volumes kept across restarts: the image ``<volumes>/local/<pv>.img`` (the volumes dir is the state dir's, so
    it outlives the lab), mounted for this run at ``<run dir>/volumes/local/<pv>`` through a hard link
    ``<run dir>/volumes/local/<pv>.img`` (its loop device is found by the run dir and the lab's id). The PV's
    ``spec.local.path`` is ``<volumes>/local/<pv>``, a symbolic link to this run's mount point, so it stays valid
    across restarts as a local PV's disk path does across node reboots (fstab mounts it again at the same path);
    between runs it leads nowhere, and the kubelet says the path does not exist."""

    name = PROVISIONER
    access_modes = ACCESS_MODES
    description = "a filesystem of its own on the node (ext4 on a loop device)"

    def __init__(self, run_dir: Path, node: str, volumes_dir: Path) -> None:
        self.mounts = run_dir / "volumes" / "local"
        self.root = volumes_dir / "local"
        if self.root == self.mounts:
            raise ValueError("the volumes dir must not be the run dir's")
        self.node = node
        self._lock = threading.Lock()

    def paths(self, pv_name: str) -> tuple[Path, Path]:
        """The volume's image and this run's mount point."""
        return self.root / f"{pv_name}.img", self.mounts / pv_name

    def _link(self, pv_name: str) -> Path:
        return self.mounts / f"{pv_name}.img"

    def path(self, pv_name: str) -> Path:
        """The PV's ``spec.local.path``: stable across runs."""
        return self.root / pv_name

    def provision(self, pv_name: str, size_bytes: int, params: dict[str, str]) -> dict[str, Any]:
        """Make the volume; returns the PV spec's source and affinity."""
        backing, mnt = self.paths(pv_name)
        with self._lock:
            loopfs.create(backing, size_bytes, mnt, link=self._link(pv_name))
            try:
                self._point(pv_name, mnt)
            except OSError:
                loopfs.destroy(mnt, backing, link=self._link(pv_name))
                raise
        return {"local": {"path": str(self.path(pv_name)), "fsType": "ext4"}, "nodeAffinity": node_affinity(self.node)}

    def _point(self, pv_name: str, mnt: Path) -> None:
        path = self.path(pv_name)
        tmp = path.with_name(f".{pv_name}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(mnt)
        tmp.replace(path)  # atomically: a reader sees the old or the new target

    def attach(self, pv: dict[str, Any]) -> None:
        """Mount an existing volume for this run (a restored lab). Raises OSError (``lost`` says why when the image is
        gone)."""
        name = pv["metadata"]["name"]
        backing, mnt = self.paths(name)
        with self._lock:
            if loopfs.loop_device(mnt) is not None:
                return
            loopfs.attach(backing, mnt, link=self._link(name))
            self._point(name, mnt)

    def lost(self, pv: dict[str, Any]) -> str:
        """Why the volume's data is gone ('' when it is there)."""
        backing, _ = self.paths(pv["metadata"]["name"])
        if backing.exists():
            return ""
        return (f"the volume's data is gone: its filesystem image {backing} does not exist (a volume made before the "
                "lab kept volumes across restarts, or its file was removed)")

    def delete(self, pv: dict[str, Any]) -> None:
        name = pv["metadata"]["name"]
        backing, mnt = self.paths(name)
        if not self.owns(pv):
            path = ((pv.get("spec") or {}).get("local") or {}).get("path")
            raise OSError(f"the volume's path {path} is not one this provisioner made")
        with self._lock:
            loopfs.destroy(mnt, backing, link=self._link(name))
            self.path(name).unlink(missing_ok=True)

    def owns(self, pv: dict[str, Any]) -> bool:
        """Its PVs: the path this provisioner gives, or (a lab before volumes were kept) a path under a run dir."""
        path = Path(((pv.get("spec") or {}).get("local") or {}).get("path") or "/")
        if path == self.path(pv["metadata"]["name"]):
            return True
        runs = self.mounts.parent.parent.parent  # <state dir>/run: an earlier run's <run>/<id>/volumes/local/<pv>
        return path.name == pv["metadata"]["name"] and path.parts[-3:-1] == ("volumes", "local") \
            and path.parent.parent.parent.parent == runs

    def stop(self) -> None:
        """Unmount every volume of this run (the lab is stopping); their images stay for the next run."""
        with self._lock:
            loopfs.cleanup(self.mounts)
            for link in self.mounts.glob("*.img") if self.mounts.is_dir() else []:
                link.unlink(missing_ok=True)
            for d in self.mounts.iterdir() if self.mounts.is_dir() else []:
                try:
                    d.rmdir()
                except OSError:
                    pass
