"""Persistent volumes across a lab restart: a volume's image is kept in the state dir while its loop device and mount
are the run's (found by the run dir and lab id); the next run mounts it again at the same ``spec.local.path``, with
its data; a PV whose image is gone is Failed with the reason; deleting a PV removes its image. On the storage room's
classes (two runs of ``LabStorage`` on one store), then on two real labs on one state dir (a pod writes, a pod of the
next run reads)."""

from __future__ import annotations

import http.client
import json
import secrets
import ssl
import time
from pathlib import Path

import pytest

from kperflab.lab import labs
from kperflab.lab.controllers import Controllers
from kperflab.lab.storage import api as storage_api
from kperflab.lab.storage import loopfs, plugins
from kperflab.lab.store import Store

from .conftest import needs_root

pytestmark = [needs_root]
NODE = "kperflab-node"


def _pvc(name):
    obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "ns"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}}}
    storage_api.default_pvc(obj)
    return obj


def _pod(name, claim):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}],
                     "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": "Pending"}}


def _events(store, name):
    items, *_ = store.list("v1/events", None, lambda e: e["involvedObject"]["name"] == name)
    return [(e["reason"], e["message"]) for e in items]


def test_a_local_volume_keeps_its_data_across_runs_and_a_lost_one_is_failed(tmp_path):
    state = tmp_path / "state"
    store = Store()
    store.create("v1/namespaces", {"metadata": {"name": "ns"}, "status": {"phase": "Active"}})
    store.create("v1/nodes", {"apiVersion": "v1", "kind": "Node",
                              "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}}})
    sched = Controllers(store, NODE)
    first, second = secrets.token_hex(8), secrets.token_hex(8)
    runs = []

    def storage(lab_id):
        s = plugins.LabStorage(store, lab_id, labs.run_dir(state, lab_id), NODE, None)
        runs.append(s)
        return s

    def settle(s):
        for _ in range(6):
            s.controller.reconcile()
            sched.schedule()

    try:
        s1 = storage(first)
        assert s1.restored == []  # nothing kept yet
        for sc in s1.classes():
            store.create("storage.k8s.io/v1/storageclasses", sc)
        for name in ("kept", "doomed"):
            store.create("v1/persistentvolumeclaims", _pvc(name))
            store.create("v1/pods", _pod(f"user-{name}", name))
        settle(s1)
        pv = {n: store.get("v1/persistentvolumes", "", store.get("v1/persistentvolumeclaims", "ns", n)["spec"]["volumeName"])
              for n in ("kept", "doomed")}
        path = Path(pv["kept"]["spec"]["local"]["path"])
        image = plugins.volumes_dir(state) / "local" / f"{pv['kept']['metadata']['name']}.img"
        assert path.parent == image.parent == state / "volumes" / "local"  # not under the run dir: kept
        (path / "f").write_text("survives\n")
        assert len(loopfs.loop_devices_of_run_id(first)) == 2  # found by the lab's id, the image lying elsewhere
        with pytest.raises(loopfs.LoopFSError, match="already in use"):  # never two mounts of one ext4
            loopfs.attach(image, tmp_path / "twice", wait=0)
        # the lab stops (as `lab down`): its mounts, loop devices and run dir go, the images stay
        s1.stop()
        labs.remove(first, state, own=True)
        assert labs.census(first, state).empty() and not labs.run_dir(state, first).exists()
        assert image.exists() and path.is_symlink() and not path.exists()  # between runs it leads nowhere
        (image.parent / f"{pv['doomed']['metadata']['name']}.img").unlink()  # a volume whose data is gone
        # the next run on the same store: the kept volume is mounted again, at the same path, with its data
        s2 = storage(second)
        assert s2.restored == [pv["kept"]["metadata"]["name"]]
        assert (path / "f").read_text() == "survives\n"
        assert str(path.resolve()).startswith(str(labs.run_dir(state, second)))
        assert len(loopfs.loop_devices_of_run_id(second)) == 1 and loopfs.mounts_of_run_id(second)
        settle(s2)
        kept = store.get("v1/persistentvolumes", "", pv["kept"]["metadata"]["name"])
        assert kept["status"]["phase"] == "Bound"
        doomed = store.get("v1/persistentvolumes", "", pv["doomed"]["metadata"]["name"])
        assert doomed["status"]["phase"] == "Failed" and "the volume's data is gone" in doomed["status"]["message"]
        assert ("VolumeConditionAbnormal", doomed["status"]["message"]) in _events(store, "doomed")
        assert store.get("v1/persistentvolumeclaims", "ns", "doomed")["status"]["phase"] == "Bound"
        # deleting the claims: the lost PV goes (nothing to keep), the kept one with its image
        for name in ("kept", "doomed"):
            store.remove("v1/pods", "ns", f"user-{name}")
            store.mark_deleting("v1/persistentvolumeclaims", "ns", name, 0)
        settle(s2)
        assert store.list("v1/persistentvolumes")[0] == []
        assert not image.exists() and not path.is_symlink() and list(image.parent.iterdir()) == []
        assert loopfs.loop_devices_of_run_id(second) == []
    finally:
        for s, lab_id in zip(runs, (first, second), strict=False):
            s.stop()
            labs.remove(lab_id, state, own=True)
        plugins.purge(state)
    assert not (state / "volumes").exists()


# -- two real labs, one after the other, on one state dir -----------------------------------------------


def _api(lab, ca, method, path, body=None):
    ctx = ssl.create_default_context(cafile=str(ca))
    conn = http.client.HTTPSConnection("127.0.0.1", lab.port, context=ctx, timeout=30)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     {"Authorization": "Bearer tok", "Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    assert r.status < 300, (method, path, r.status, data[:400])
    return json.loads(data) if r.headers.get("Content-Type", "").startswith("application/json") else data.decode()


def _until(fn, what, timeout=90):
    deadline = time.time() + timeout
    while not (v := fn()):
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return v


@pytest.mark.lab
def test_a_pods_data_on_local_and_remote_volumes_survives_a_lab_restart(tmp_path):
    """Two successive labs on one state dir (as `lab down` + `lab up`): a pod writes to a local and a remote claim,
    the lab stops, the next lab (a new id) restores the store and mounts the volumes again; a new pod reads the bytes
    back, and the kept remote volume is served by the new run's storage server."""
    from kperflab.lab import pki, server

    state = tmp_path / "lab"
    ca, cert, key = pki.write_tls(pki.make_server_tls(), tmp_path / "tls")
    runs, ids = [], []

    def start():
        lab = server.Lab(state, "tok", (str(cert), str(key)), 0)
        runs.append(lab)
        ids.append(lab.lab_id)
        lab.start()
        return lab

    def pod(lab, name, cmd, claims):
        _api(lab, ca, "POST", "/api/v1/namespaces/default/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "main", "image": "busybox:1.37", "command": ["sh", "-c", cmd],
                    "volumeMounts": [{"name": c, "mountPath": f"/{c}"} for c in claims]}],
                "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]}})
        return _until(lambda: (p := _api(lab, ca, "GET", f"/api/v1/namespaces/default/pods/{name}"))["status"].get(
            "phase") in ("Succeeded", "Failed") and p, f"pod {name} done")

    try:
        lab = start()
        if lab.oci is None or lab.storage is None:
            pytest.skip(f"the lab runs the process runtime: {lab.no_oci}")
        if not hasattr(lab.store, "restored"):
            pytest.skip("the lab's store is not durable (yet)")
        claims = {"a": ("local", "ReadWriteOnce")}
        if lab.storage.server is not None:
            claims["b"] = ("remote", "ReadWriteMany")
        for name, (cls, mode) in claims.items():
            _api(lab, ca, "POST", "/api/v1/namespaces/default/persistentvolumeclaims", {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                "spec": {"accessModes": [mode], "storageClassName": cls, "resources": {"requests": {"storage": "16Mi"}}}})
        p = pod(lab, "writer", " && ".join(f"echo {c}-bytes > /{c}/f" for c in claims) + " && sync", list(claims))
        assert p["status"]["phase"] == "Succeeded", p["status"]
        first = lab.lab_id
        lab.stop()
        runs.remove(lab)
        assert labs.census(first, state).empty()
        assert sorted(p.name for p in (state / "volumes").rglob("*.img")) and not labs.run_dir(state, first).exists()
        t0 = time.monotonic()
        lab = start()
        restart = time.monotonic() - t0
        assert lab.lab_id != first and lab.store.restored
        assert len(lab.storage.restored) == len(claims)
        if "b" in claims:  # the remote class names this run's server
            sc = _api(lab, ca, "GET", "/apis/storage.k8s.io/v1/storageclasses/remote")
            assert sc["metadata"]["annotations"]["kperflab.dev/server"] == f"{lab.storage.server.ip}:2022"
        p = pod(lab, "reader", "cat " + " ".join(f"/{c}/f" for c in claims), list(claims))
        assert p["status"]["phase"] == "Succeeded", p["status"]
        out = _api(lab, ca, "GET", "/api/v1/namespaces/default/pods/reader/log")
        assert out == "".join(f"{c}-bytes\n" for c in claims), out
        pvs = _api(lab, ca, "GET", "/api/v1/persistentvolumes")["items"]
        assert sorted(pv["status"]["phase"] for pv in pvs) == ["Bound"] * len(claims)
        print(f"second lab up in {restart:.1f} s, {len(claims)} volume(s) mounted again")
    finally:
        for lab in runs:
            lab.stop()
        plugins.purge(state)
    left = [labs.census(i, state) for i in ids]
    assert all(c.empty() for c in left), left
