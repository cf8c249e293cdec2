"""The `local` storage class' backend (provisioner ``local.storage.kperflab.dev``): one ext4 filesystem per volume, in a
sparse file on a loop device, mounted on the node under the lab's run dir.

Choice: a loop-device filesystem per volume rather than a directory with a project quota. A volume then has a real
capacity of its own: ``df`` in the pod and the kubelet's statvfs show exactly its size, writing past it gives the
kernel's ENOSPC (not a delayed eviction), and deleting it is an unmount and an unlink. A project quota would need the
lab's state dir on ext4/xfs mounted with ``prjquota`` — rarely true of a workshop machine — and its usage would be a
quota report rather than a filesystem's own numbers. The cost is a small per-volume ext4 overhead (journal,
metadata: a 100Mi claim has about 90 MiB free) and a loop device per volume; the sparse file costs only what is written.

The PV looks as a local PV does: ``spec.local.path`` is where the filesystem is mounted on the node, and
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
    name = PROVISIONER
    access_modes = ACCESS_MODES
    description = "a filesystem of its own on the node (ext4 on a loop device)"

    def __init__(self, run_dir: Path, node: str) -> None:
        self.root = run_dir / "volumes" / "local"
        self.node = node
        self._lock = threading.Lock()

    def paths(self, pv_name: str) -> tuple[Path, Path]:
        return self.root / f"{pv_name}.img", self.root / pv_name

    def provision(self, pv_name: str, size_bytes: int, params: dict[str, str]) -> dict[str, Any]:
        """Make the volume; returns the PV spec's source and affinity."""
        backing, mnt = self.paths(pv_name)
        with self._lock:
            loopfs.create(backing, size_bytes, mnt)
        return {"local": {"path": str(mnt), "fsType": "ext4"}, "nodeAffinity": node_affinity(self.node)}

    def delete(self, pv: dict[str, Any]) -> None:
        backing, mnt = self.paths(pv["metadata"]["name"])
        path = ((pv.get("spec") or {}).get("local") or {}).get("path")
        if path and Path(path) != mnt:
            raise OSError(f"the volume's path {path} is not one this provisioner made")
        with self._lock:
            loopfs.destroy(mnt, backing)

    def owns(self, pv: dict[str, Any]) -> bool:
        path = ((pv.get("spec") or {}).get("local") or {}).get("path") or ""
        return path.startswith(str(self.root) + "/")

    def stop(self) -> None:
        """Unmount and remove every volume (the lab is stopping)."""
        with self._lock:
            loopfs.cleanup(self.root)
            for f in self.root.glob("*.img") if self.root.is_dir() else []:
                f.unlink(missing_ok=True)
            for d in self.root.iterdir() if self.root.is_dir() else []:
                try:
                    d.rmdir()
                except OSError:
                    pass
