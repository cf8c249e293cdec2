"""The lab's storage, assembled: the backends of its storage classes, the PV controller, and the node side the kubelet
calls (``PVPlugins``: publish/unpublish a PV for a pod's volume). The lab makes one ``LabStorage`` and stops it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from ..network.podnet import PodNetwork
from . import local, remote
from .pvcontroller import ANN_DEFAULT_CLASS, Backend, PVController

log = logging.getLogger("kperflab.lab.storage")


class PVPlugins(Protocol):
    def publish(self, pv: dict[str, Any], pod_uid: str, volume: str) -> Path: ...
    def unpublish(self, pv: dict[str, Any], pod_uid: str, volume: str) -> None: ...


class NodePlugins:
    """What the kubelet calls to get a PV's host path for a pod (the volume plugins' SetUp/TearDown)."""

    def __init__(self, remote_mounts: remote.RemoteMounts | None, remote_why: str = "") -> None:
        self.remote = remote_mounts
        self.remote_why = remote_why

    def publish(self, pv: dict[str, Any], pod_uid: str, volume: str) -> Path:
        spec = pv.get("spec") or {}
        if spec.get("local") or spec.get("hostPath"):
            path = Path((spec.get("local") or spec.get("hostPath"))["path"])
            if not path.exists():
                raise OSError(f"path {path} does not exist" if spec.get("local") else
                              f"hostPath type check failed: {path} is not a directory")
            return path
        csi = spec.get("csi") or {}
        if csi.get("driver") == remote.DRIVER:
            if self.remote is None:
                raise OSError(f"kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name {remote.DRIVER} "
                              f"not found in the list of registered CSI drivers ({self.remote_why})")
            return self.remote.publish(pv, pod_uid, volume)
        if csi:
            raise OSError(f"kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name {csi.get('driver')} "
                          "not found in the list of registered CSI drivers")
        kinds = [k for k in spec if k not in ("accessModes", "capacity", "claimRef", "persistentVolumeReclaimPolicy",
                                             "storageClassName", "volumeMode", "nodeAffinity", "mountOptions")]
        raise OSError(f"the lab's node has no volume plugin for {', '.join(kinds) or 'this volume'}")

    def unpublish(self, pv: dict[str, Any], pod_uid: str, volume: str) -> None:
        csi = (pv.get("spec") or {}).get("csi") or {}
        if csi.get("driver") == remote.DRIVER and self.remote is not None:
            self.remote.unpublish(pv, pod_uid, volume)


class LabStorage:
    """Storage classes, backends, PV controller and node plugins of one lab.

    Neither class allows volume expansion: growing an ext4 filesystem while mounted (``resize2fs`` online, which
    ``loopfs.grow`` does) needs CAP_SYS_RESOURCE, which a lab in a container often lacks, and growing it offline would
    unmount a path the kubelet may be binding into a pod at that moment. A claim whose request is raised gets
    upstream's ``ExternalExpanding`` event and keeps its size.
    """

    def __init__(self, store: Any, lab_id: str, run_dir: Path, node: str, podnet: PodNetwork | None) -> None:
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "KPERFLAB_LAB": lab_id}
        self.backends: dict[str, Backend] = {}
        self.local: local.LocalBackend | None = None
        self.server: remote.StorageServer | None = None
        self.mounts: remote.RemoteMounts | None = None
        self.remote_why = ""
        if os.geteuid() == 0:
            self.local = local.LocalBackend(run_dir, node)
            self.backends[local.PROVISIONER] = self.local
        self.remote_why = ("the lab runs the process runtime: no pod network" if podnet is None else
                           "the lab is not running as root" if os.geteuid() != 0 else remote.unavailable_reason())
        if not self.remote_why:
            assert podnet is not None
            try:
                self.server = remote.StorageServer(lab_id, run_dir, podnet, self.env).start()
                self.mounts = remote.RemoteMounts(run_dir, podnet.netns_path, self.env)
                self.backends[remote.DRIVER] = remote.RemoteBackend(self.server)
            except OSError as exc:
                self.remote_why = f"the storage server did not start: {exc}"
                log.warning("no remote storage class: %s", self.remote_why)
        self.plugins = NodePlugins(self.mounts, self.remote_why)
        self.controller = PVController(store, node, self.backends)

    def classes(self) -> list[dict[str, Any]]:
        out = []
        if self.local is not None:
            out.append({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {
                "name": "local", "annotations": {ANN_DEFAULT_CLASS: "true",
                                                 "kperflab.dev/description": self.local.description}},
                "provisioner": local.PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
                "allowVolumeExpansion": False})
        if self.server is not None:
            out.append({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {
                "name": "remote", "annotations": {"kperflab.dev/description": remote.RemoteBackend.description,
                                                  "kperflab.dev/server": f"{self.server.ip}:{remote.PORT}"}},
                "provisioner": remote.DRIVER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
                "allowVolumeExpansion": False})
        return out

    def stop(self) -> None:
        """Unmount every volume of the lab (node mounts first, then the server and its filesystems, then the local
        volumes). Each step runs even when an earlier one failed."""
        steps = [self.mounts.stop if self.mounts else None, self.server.stop if self.server else None,
                 self.local.stop if self.local else None]
        for step in steps:
            if step is None:
                continue
            try:
                step()
            except Exception:  # noqa: BLE001 - the next step must still run; labs.remove mops up by run dir
                log.exception("storage cleanup step failed")
