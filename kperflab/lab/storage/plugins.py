"""The lab's storage, assembled: the backends of its storage classes, the PV controller, and the node side the kubelet
calls (``PVPlugins``: publish/unpublish a PV for a pod's volume). The lab makes one ``LabStorage`` and stops it.

Volumes outlive the lab, as persistent volumes outlive a node's reboot: their images are kept in the state dir
(``volumes_dir(state_dir)``: ``local/<pv>.img``, ``remote/<handle>.img``), while everything kernel-backed (loop devices,
mounts, the storage server's namespaces) is this run's, under its run dir and found by its lab id. A lab started on a
restored store mounts every volume its PVs name again before the kubelet runs (``LabStorage.restore``); a PV whose
image is gone is Failed (the PV controller says why); ``purge(state_dir)`` removes them all (``lab reset``)."""

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


def volumes_dir(state_dir: Path) -> Path:
    """Where a state dir keeps its volumes' images (across restarts; removed by ``purge``)."""
    return state_dir / "volumes"


def purge(state_dir: Path) -> None:
    """Remove every volume kept in ``state_dir`` (no lab may be running from it). A loop device a crashed lab left
    on an image keeps that file's blocks until it is detached (``labs.remove_dead``), never the name."""
    import shutil

    shutil.rmtree(volumes_dir(state_dir), ignore_errors=True)


def kept_volumes(state_dir: Path) -> tuple[int, int]:
    """How many volumes ``state_dir`` keeps and the bytes their (sparse) images take on its disk."""
    n = used = 0
    for f in volumes_dir(state_dir).glob("*/*.img"):
        try:
            used += f.stat().st_blocks * 512
            n += 1
        except OSError:
            continue
    return n, used


class LabStorage:
    """Storage classes, backends, PV controller and node plugins of one lab.

    Neither class allows volume expansion: growing an ext4 filesystem while mounted (``resize2fs`` online, which
    ``loopfs.grow`` does) needs CAP_SYS_RESOURCE, which a lab in a container often lacks, and growing it offline would
    unmount a path the kubelet may be binding into a pod at that moment. A claim whose request is raised gets
    upstream's ``ExternalExpanding`` event and keeps its size.
    """

    def __init__(self, store: Any, lab_id: str, run_dir: Path, node: str, podnet: PodNetwork | None,
                 volumes: Path | None = None) -> None:
        volumes = volumes if volumes is not None else volumes_dir(run_dir.parent.parent)  # run dir: <state>/run/<id>
        self.store = store
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "KPERFLAB_LAB": lab_id}
        self.backends: dict[str, Backend] = {}
        self.local: local.LocalBackend | None = None
        self.server: remote.StorageServer | None = None
        self.mounts: remote.RemoteMounts | None = None
        self.remote_why = ""
        if os.geteuid() == 0:
            self.local = local.LocalBackend(run_dir, node, volumes)
            self.backends[local.PROVISIONER] = self.local
        self.remote_why = ("the lab runs the process runtime: no pod network" if podnet is None else
                           "the lab is not running as root" if os.geteuid() != 0 else remote.unavailable_reason())
        if not self.remote_why:
            assert podnet is not None
            try:
                self.server = remote.StorageServer(lab_id, run_dir, podnet, self.env, volumes).start()
                self.mounts = remote.RemoteMounts(run_dir, podnet.netns_path, self.env, self.server)
                self.backends[remote.DRIVER] = remote.RemoteBackend(self.server)
            except OSError as exc:
                self.remote_why = f"the storage server did not start: {exc}"
                log.warning("no remote storage class: %s", self.remote_why)
        self.plugins = NodePlugins(self.mounts, self.remote_why)
        self.controller = PVController(store, node, self.backends)
        self.restored = self.restore()

    def restore(self) -> list[str]:
        """Mount again every volume the store's PVs name (a lab started on a restored store; nothing on a new one),
        before the kubelet runs their pods again. A volume whose image is gone is left to the PV controller (Failed,
        with the reason); one that does not mount is logged and its pods get FailedMount from the kubelet. Updates the
        remote class' server address to this run's. Returns the names of the PVs mounted."""
        pvs, *_ = self.store.list("v1/persistentvolumes")
        done = []
        for pv in pvs:
            backend = self.controller._backend_of(pv)
            attach = getattr(backend, "attach", None)
            if attach is None or backend.lost(pv):  # type: ignore[union-attr]
                continue  # not the lab's, or its data is gone (the PV controller makes it Failed)
            try:
                attach(pv)
                done.append(pv["metadata"]["name"])
            except OSError as exc:
                log.warning("volume %s was not mounted again: %s", pv["metadata"]["name"], exc)
        if self.server is not None:
            sc = self.store.try_get("storage.k8s.io/v1/storageclasses", "", "remote")
            want = f"{self.server.ip}:{remote.PORT}"
            anns = (sc or {}).get("metadata", {}).get("annotations") or {}
            if sc is not None and sc.get("provisioner") == remote.DRIVER and anns.get("kperflab.dev/server") != want:
                sc["metadata"]["annotations"] = {**anns, "kperflab.dev/server": want}
                self.store.update("storage.k8s.io/v1/storageclasses", sc)
        if done:
            log.info("mounted %d kept volume(s) again: %s", len(done), ", ".join(done))
        return done

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
