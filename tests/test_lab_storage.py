"""Persistent volumes in the lab: loop-device filesystems of a real size, the PV controller's binding, provisioning
and reclaim with upstream's phases and events, the scheduler's volume binding, the `local` and `remote` classes, and
that nothing (mount, loop device, sshfs or sftp-server process) outlives a volume or the lab."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kperflab.lab import labs
from kperflab.lab.controllers import Controllers
from kperflab.lab.storage import api as storage_api
from kperflab.lab.storage import loopfs, remote
from kperflab.lab.storage.local import LocalBackend
from kperflab.lab.storage.pvcontroller import PVController
from kperflab.lab.store import Store

from .conftest import needs_root

KUBECTL = shutil.which("kubectl")
pytestmark = [needs_root]


def _has_cap(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


CAP_SYS_RESOURCE = 24


# -- loopfs ----------------------------------------------------------------------------------------

def test_loopfs_has_its_size_and_says_enospc(tmp_path):
    backing, mnt = tmp_path / "run" / "vol.img", tmp_path / "run" / "mnt"
    loopfs.create(backing, 16 << 20, mnt)
    try:
        dev = loopfs.loop_device(mnt)
        assert dev and dev.startswith("/dev/loop")
        assert loopfs.loop_devices_under(tmp_path) == [dev]
        st = loopfs.statvfs(mnt)
        assert 12 << 20 < st["capacityBytes"] <= 16 << 20  # ext4's metadata and journal take their share
        assert os.stat(backing).st_blocks * 512 < 8 << 20  # sparse: costs what is written
        with pytest.raises(OSError) as err, open(mnt / "big", "wb") as f:
            for _ in range(32):
                f.write(b"x" * (1 << 20))
                f.flush()
                os.fsync(f.fileno())
        assert err.value.errno == errno.ENOSPC
        (mnt / "big").unlink()
        assert os.stat(mnt).st_mode & 0o777 == 0o777  # a fresh volume: writable by any uid
    finally:
        loopfs.destroy(mnt, backing)
    assert not backing.exists() and not mnt.exists()
    assert loopfs.loop_devices_under(tmp_path) == [] and loopfs.mounts_under(tmp_path) == []


def test_loopfs_create_refuses_a_backing_file_in_use(tmp_path):
    backing, mnt = tmp_path / "vol.img", tmp_path / "mnt"
    loopfs.create(backing, 8 << 20, mnt)
    try:
        with pytest.raises(FileExistsError):
            loopfs.create(backing, 8 << 20, tmp_path / "other")
    finally:
        loopfs.destroy(mnt, backing)


@pytest.mark.skipif(not _has_cap(CAP_SYS_RESOURCE), reason="online resize2fs needs CAP_SYS_RESOURCE, which this "
                    "process lacks (a container without it)")
def test_loopfs_grows_online(tmp_path):
    backing, mnt = tmp_path / "vol.img", tmp_path / "mnt"
    loopfs.create(backing, 16 << 20, mnt)
    try:
        before = loopfs.statvfs(mnt)["capacityBytes"]
        loopfs.grow(backing, 32 << 20, mnt)
        assert loopfs.statvfs(mnt)["capacityBytes"] > before + (12 << 20)
    finally:
        loopfs.destroy(mnt, backing)


def test_loopfs_cleanup_finds_a_dead_labs_mounts_and_loop_devices_only(tmp_path):
    """What a SIGKILLed lab leaves: mounted loop filesystems and a loop device attached without a mount. cleanup()
    of its run dir removes them and nothing of the other run dir."""
    dead, alive = tmp_path / "run" / "a", tmp_path / "run" / "b"
    loopfs.create(dead / "v1.img", 8 << 20, dead / "m1")
    loopfs.create(alive / "v2.img", 8 << 20, alive / "m2")
    (dead / "v3.img").write_bytes(b"")
    os.truncate(dead / "v3.img", 8 << 20)
    subprocess.run(["losetup", "-f", str(dead / "v3.img")], check=True)
    try:
        assert len(loopfs.loop_devices_under(dead)) == 2
        undone = loopfs.cleanup(dead)
        assert str(dead / "m1") in undone
        assert loopfs.mounts_under(dead) == [] and loopfs.loop_devices_under(dead) == []
        assert loopfs.mounts_under(alive) == [str(alive / "m2")] and len(loopfs.loop_devices_under(alive)) == 1
    finally:
        loopfs.destroy(alive / "m2", alive / "v2.img")
        loopfs.cleanup(dead)


def test_a_dead_labs_loop_filesystems_are_found_by_its_id_after_its_state_dir_moved(tmp_path):
    """As when a test's tmp dir is renamed by pytest while a crashed lab's filesystem is still mounted in it."""
    import secrets

    lab_id = secrets.token_hex(8)
    run = tmp_path / "home" / "lab" / "run" / lab_id
    loopfs.create(run / "imagefs.img", 8 << 20, run / "images")
    (tmp_path / "home").rename(tmp_path / "garbage")
    moved = tmp_path / "garbage" / "lab" / "run" / lab_id
    try:
        assert loopfs.mounts_of_run_id(lab_id) == [str(moved / "images")]
        assert len(loopfs.loop_devices_of_run_id(lab_id)) == 1
        found = [c for c in labs.dead_labs() if c.lab_id == lab_id]
        assert found and found[0].mounts == [str(moved / "images")] and found[0].loops
        labs.remove(lab_id)
        assert labs.census(lab_id).empty()
    finally:
        loopfs.cleanup(moved)


# -- the PV controller and the scheduler's volume binding, on a store (no lab) --------------------------


NODE = "kperflab-node"


@pytest.fixture
def cluster(tmp_path):
    store = Store()
    store.create("v1/namespaces", {"metadata": {"name": "ns"}, "status": {"phase": "Active"}})
    store.create("v1/nodes", {"apiVersion": "v1", "kind": "Node",
                              "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}}})
    backend = LocalBackend(tmp_path / "run", NODE, tmp_path / "volumes")
    ctrl = PVController(store, NODE, {backend.name: backend})
    sched = Controllers(store, NODE)
    for name, mode, policy, default in (("local", "WaitForFirstConsumer", "Delete", True),
                                        ("keep", "WaitForFirstConsumer", "Retain", False)):
        sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {
            "name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}},
            "provisioner": backend.name, "reclaimPolicy": policy, "volumeBindingMode": mode}
        store.create("storage.k8s.io/v1/storageclasses", sc)
    c = type("C", (), {})()
    c.store, c.ctrl, c.sched, c.backend = store, ctrl, sched, backend

    def settle(n=6):
        for _ in range(n):
            ctrl.reconcile()
            sched.schedule()
    c.settle = settle
    yield c
    backend.stop()


def _pvc(name, size="16Mi", modes=("ReadWriteOnce",), cls=None, **spec):
    obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "ns"},
           "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": size}}, **spec}}
    if cls is not None:
        obj["spec"]["storageClassName"] = cls
    storage_api.default_pvc(obj)
    assert storage_api.validate_pvc(obj) == []
    return obj


def _pod(name, *claims):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}],
                     "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)]},
            "status": {"phase": "Pending"}}


def _events(store, name):
    items, *_ = store.list("v1/events", None, lambda e: e["involvedObject"]["name"] == name)
    items.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    return [(e["reason"], e["message"]) for e in items]


def test_wait_for_first_consumer_then_provision_bind_and_schedule(cluster):
    s = cluster.store
    s.create("v1/persistentvolumeclaims", _pvc("data"))
    cluster.settle()
    pvc = s.get("v1/persistentvolumeclaims", "ns", "data")
    assert pvc["spec"]["storageClassName"] == "local"  # the default class, given by the controller
    assert pvc["status"]["phase"] == "Pending" and "kubernetes.io/pvc-protection" in pvc["metadata"]["finalizers"]
    assert ("WaitForFirstConsumer", "waiting for first consumer to be created before binding") in _events(s, "data")
    s.create("v1/pods", _pod("user", "data"))
    cluster.settle()
    pvc = s.get("v1/persistentvolumeclaims", "ns", "data")
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == NODE
    assert pvc["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == "local.storage.kperflab.dev"
    assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert pvc["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "16Mi"}}
    pv_name = f"pvc-{pvc['metadata']['uid']}"
    assert pvc["spec"]["volumeName"] == pv_name
    reasons = [r for r, _ in _events(s, "data")]
    assert reasons.index("ExternalProvisioning") < reasons.index("Provisioning") < reasons.index("ProvisioningSucceeded")
    assert ("ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}") in _events(s, "data")
    pv = s.get("v1/persistentvolumes", "", pv_name)
    assert pv["status"]["phase"] == "Bound" and pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == [NODE]
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "local.storage.kperflab.dev"
    path = Path(pv["spec"]["local"]["path"])  # the kept volume's stable path: a link to this run's mount point
    assert path == cluster.backend.root / pv_name and path.resolve() == cluster.backend.mounts / pv_name
    assert loopfs.loop_device(path.resolve()) and 12 << 20 < loopfs.statvfs(path)["capacityBytes"] <= 16 << 20
    assert loopfs.loop_devices_under(cluster.backend.mounts)  # its loop device is named by the run dir (a hard link)
    assert s.get("v1/pods", "ns", "user")["spec"]["nodeName"] == NODE  # bound once its claim was
    # reclaim Delete: the pod and the claim go, then the PV and its filesystem
    s.remove("v1/pods", "ns", "user")
    s.mark_deleting("v1/persistentvolumeclaims", "ns", "data", 0)
    cluster.settle()
    assert s.try_get("v1/persistentvolumeclaims", "ns", "data") is None
    assert s.try_get("v1/persistentvolumes", "", pv_name) is None
    assert not path.is_symlink() and not (cluster.backend.root / f"{pv_name}.img").exists()
    assert loopfs.loop_devices_under(cluster.backend.mounts) == [] and loopfs.mounts_under(cluster.backend.mounts) == []


def test_pvc_protection_holds_a_claim_while_a_pod_uses_it(cluster):
    s = cluster.store
    s.create("v1/persistentvolumeclaims", _pvc("held"))
    s.create("v1/pods", _pod("user", "held"))
    cluster.settle()
    s.mark_deleting("v1/persistentvolumeclaims", "ns", "held", 0)
    cluster.settle()
    pvc = s.get("v1/persistentvolumeclaims", "ns", "held")
    assert pvc["metadata"]["deletionTimestamp"] and pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    pv = s.get("v1/persistentvolumes", "", pvc["spec"]["volumeName"])
    s.mark_deleting("v1/persistentvolumes", "", pv["metadata"]["name"], 0)  # pv-protection: Bound, so kept
    cluster.settle()
    assert s.try_get("v1/persistentvolumes", "", pv["metadata"]["name"]) is not None
    s.remove("v1/pods", "ns", "user")
    cluster.settle()
    assert s.try_get("v1/persistentvolumeclaims", "ns", "held") is None
    assert s.try_get("v1/persistentvolumes", "", pv["metadata"]["name"]) is None
    assert loopfs.loop_devices_under(cluster.backend.mounts) == [] and list(cluster.backend.root.glob("*.img")) == []


def test_retain_keeps_a_released_volume_and_its_data_until_an_admin_frees_it(cluster):
    s = cluster.store
    s.create("v1/persistentvolumeclaims", _pvc("kept", cls="keep"))
    s.create("v1/pods", _pod("user", "kept"))
    cluster.settle()
    pv_name = s.get("v1/persistentvolumeclaims", "ns", "kept")["spec"]["volumeName"]
    path = Path(s.get("v1/persistentvolumes", "", pv_name)["spec"]["local"]["path"])
    (path / "precious").write_text("data")
    s.remove("v1/pods", "ns", "user")
    s.mark_deleting("v1/persistentvolumeclaims", "ns", "kept", 0)
    cluster.settle()
    pv = s.get("v1/persistentvolumes", "", pv_name)
    assert pv["status"]["phase"] == "Released" and (path / "precious").read_text() == "data"
    # a new claim asking for it does not get it while its claimRef names the old claim
    s.create("v1/persistentvolumeclaims", _pvc("again", cls="keep", volumeName=pv_name))
    cluster.settle()
    assert s.get("v1/persistentvolumeclaims", "ns", "again")["status"]["phase"] == "Pending"
    pv = s.get("v1/persistentvolumes", "", pv_name)
    del pv["spec"]["claimRef"]  # the admin's step
    s.update("v1/persistentvolumes", pv)
    cluster.settle()
    assert s.get("v1/persistentvolumeclaims", "ns", "again")["status"]["phase"] == "Bound"
    assert (path / "precious").read_text() == "data"


def test_a_static_pv_binds_the_smallest_fit_by_class_modes_and_selector(cluster):
    s = cluster.store
    for name, size, labels in (("big", "2Gi", {"tier": "gold"}), ("small", "1Gi", {"tier": "gold"}),
                               ("tiny", "100Mi", {"tier": "gold"}), ("other", "1Gi", {"tier": "iron"})):
        pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": labels},
              "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                       "storageClassName": "manual", "hostPath": {"path": "/tmp"}}}
        storage_api.default_pv(pv)
        assert storage_api.validate_pv(pv) == []
        s.create("v1/persistentvolumes", pv)
    s.create("v1/persistentvolumeclaims", _pvc("static", "500Mi", cls="manual",
                                               selector={"matchLabels": {"tier": "gold"}}))
    cluster.settle()
    pvc = s.get("v1/persistentvolumeclaims", "ns", "static")
    assert pvc["spec"]["volumeName"] == "small" and pvc["status"]["phase"] == "Bound"
    pv = s.get("v1/persistentvolumes", "", "small")
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert pv["status"]["phase"] == "Bound" and s.get("v1/persistentvolumes", "", "big")["status"]["phase"] == "Available"
    pvc["spec"]["resources"]["requests"]["storage"] = "3Gi"  # a resize no resizer serves: said, not done
    s.update("v1/persistentvolumeclaims", pvc)
    cluster.settle()
    assert ("ExternalExpanding", "waiting for an external controller to expand this PVC") in _events(s, "static")
    assert s.get("v1/persistentvolumeclaims", "ns", "static")["status"]["capacity"] == {"storage": "1Gi"}
    s.create("v1/persistentvolumeclaims", _pvc("rwx", "500Mi", modes=("ReadWriteMany",), cls="manual"))
    cluster.settle()
    assert s.get("v1/persistentvolumeclaims", "ns", "rwx")["status"]["phase"] == "Pending"
    # Retain (a static PV's default): released, not deleted, when its claim goes
    s.mark_deleting("v1/persistentvolumeclaims", "ns", "static", 0)
    cluster.settle()
    assert s.get("v1/persistentvolumes", "", "small")["status"]["phase"] == "Released"


def test_a_wrong_access_mode_is_refused_with_an_event(cluster):
    s = cluster.store
    s.create("v1/persistentvolumeclaims", _pvc("shared", modes=("ReadWriteMany",)))
    s.create("v1/pods", _pod("user", "shared"))
    cluster.settle()
    assert s.get("v1/persistentvolumeclaims", "ns", "shared")["status"]["phase"] == "Pending"
    msgs = [m for r, m in _events(s, "shared") if r == "ProvisioningFailed"]
    assert msgs and 'failed to provision volume with StorageClass "local"' in msgs[0]
    assert "does not support access mode ReadWriteMany" in msgs[0] and "ReadWriteOnce" in msgs[0]
    assert not s.get("v1/pods", "ns", "user")["spec"].get("nodeName")


def test_a_read_write_once_pod_claim_admits_one_pod(cluster):
    s = cluster.store
    s.create("v1/persistentvolumeclaims", _pvc("solo", modes=("ReadWriteOncePod",)))
    s.create("v1/pods", _pod("first", "solo"))
    cluster.settle()
    assert s.get("v1/pods", "ns", "first")["spec"]["nodeName"] == NODE
    s.create("v1/pods", _pod("second", "solo"))
    cluster.settle()
    assert not s.get("v1/pods", "ns", "second")["spec"].get("nodeName")
    assert ("FailedScheduling", "0/1 nodes are available: 1 node has pod using PersistentVolumeClaim with the same name "
            "and ReadWriteOncePod access mode. preemption: 0/1 nodes are available: 1 Preemption is not helpful for "
            "scheduling.") in _events(s, "second")


def test_the_scheduler_says_why_a_pods_claims_stop_it(cluster):
    s = cluster.store
    s.create("v1/pods", _pod("lost", "nope"))
    s.create("v1/persistentvolumeclaims", _pvc("nowhere", cls=""))
    s.create("v1/pods", _pod("unbound", "nowhere"))
    cluster.settle()
    tail = " preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    assert ("FailedScheduling", '0/1 nodes are available: persistentvolumeclaim "nope" not found.' + tail) \
        in _events(s, "lost")
    assert ("FailedScheduling", "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims." + tail) \
        in _events(s, "unbound")
    cond = s.get("v1/pods", "ns", "unbound")["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("PodScheduled", "False", "Unschedulable")
    assert ("FailedBinding", "no persistent volumes available for this claim and no storage class is set") \
        in _events(s, "nowhere")
    assert [r for r, _ in _events(s, "unbound")].count("FailedScheduling") == 1  # not once per pass


# -- the remote class' backend: an SFTP server on a pod network, sshfs from the node namespace -----------



@pytest.mark.skipif(bool(remote.unavailable_reason()), reason=remote.unavailable_reason() or "-")
def test_remote_volume_is_real_capacity_over_the_pod_network_and_leaves_nothing(tmp_path):
    import secrets

    from kperflab.lab.network.podnet import PodNetwork

    lab_id = secrets.token_hex(8)
    reg = labs.Registration(lab_id, tmp_path)  # alive: no other recovery takes our things for a dead lab's
    run = labs.run_dir(tmp_path, lab_id)
    net = PodNetwork(lab_id, run, "10.199.0.0/16")
    net.setup()
    env = {"PATH": os.environ["PATH"], labs.LAB_ENV: lab_id}
    server = None
    try:
        server = remote.StorageServer(lab_id, run, net, env, tmp_path / "volumes").start()
        backend, node = remote.RemoteBackend(server), remote.RemoteMounts(run, net.netns_path, env, server)
        pv = {"metadata": {"name": "pvc-x"}, "spec": backend.provision("pvc-x", 24 << 20, {})}
        assert pv["spec"]["csi"]["driver"] == "remote.storage.kperflab.dev"
        gm = node.publish(pv, "pod-a", "data")
        assert node.publish(pv, "pod-b", "data") == gm  # one mount, two users
        assert gm.name == "globalmount" and "kubernetes.io/csi/remote.storage.kperflab.dev" in str(gm)
        assert loopfs.mounts_under(run) == [str(gm)]  # the server's filesystem is not in the host's mount table
        before = server.counters()
        payload = os.urandom(2 << 20)
        (gm / "blob").write_bytes(payload)
        after = server.counters()
        assert after["rx_bytes"] - before["rx_bytes"] >= len(payload)  # the bytes crossed the pod network
        cap = os.statvfs(gm).f_blocks * os.statvfs(gm).f_frsize
        assert 16 << 20 < cap <= 24 << 20
        with pytest.raises(OSError), open(gm / "big", "wb") as f:  # EIO through SFTP v3, ENOSPC on the server
            for _ in range(32):
                f.write(b"x" * (1 << 20))
                f.flush()
        node.unpublish(pv, "pod-a", "data")
        assert (gm / "blob").read_bytes() == payload  # still mounted for pod-b
        node.unpublish(pv, "pod-b", "data")
        assert loopfs.mounts_under(run) == []
        backend.delete(pv)
        assert loopfs.loop_devices_under(run) == [] and not server.has_volume("pvc-x")
        backend.provision("pvc-y", 16 << 20, {})  # left for stop() to remove
    finally:
        if server is not None:
            server.stop()
        net.teardown()
        left = labs.census(lab_id, tmp_path)
        labs.remove(lab_id, tmp_path, own=True)
        reg.release()
    assert left.processes == [] and left.mounts == [] and left.loops == [], left


# -- on the lab, with kubectl and the official client -------------------------------------------------


def kc(lab, *args, input=None, check=True, timeout=60):
    r = subprocess.run([KUBECTL, *args], env=lab["env"], capture_output=True, timeout=timeout,
                       input=input.encode() if isinstance(input, str) else input)
    assert not check or r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr.decode(errors='replace')}"
    return r.stdout.decode()


def until(fn, timeout=60, what=""):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or fn}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def storage_lab(lab):
    st = json.loads((lab["home"] / "lab" / "lab.json").read_text())
    if not st.get("registry"):
        pytest.skip(f"the session lab runs the process runtime (no pod network, no remote class): {st.get('runtime')}")
    return {**lab, "run_dir": lab["home"] / "lab" / "run" / st["lab_id"]}


def claim(name, size="32Mi", cls=None, modes=("ReadWriteOnce",)):
    spec = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if cls:
        spec["storageClassName"] = cls
    return json.dumps({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec})


def pod(name, cmd, **claims):
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox:1.37", "command": ["sh", "-c", cmd],
                        "volumeMounts": [{"name": v, "mountPath": f"/{v}"} for v in claims]}],
        "volumes": [{"name": v, "persistentVolumeClaim": {"claimName": c}} for v, c in claims.items()]}})


def apply(lab, ns, *docs):
    for d in docs:
        kc(lab, "apply", "-n", ns, "-f", "-", input=d)


def get(lab, ns, kind, name):
    r = subprocess.run([KUBECTL, "get", kind, name, "-n", ns, "-o", "json"], env=lab["env"], capture_output=True)
    return json.loads(r.stdout) if r.returncode == 0 else None


def events(k8s, ns, name):
    items = sorted(k8s.list_namespaced_event(ns).items, key=lambda e: int(e.metadata.resource_version))
    return [(e.reason, e.message) for e in items if e.involved_object.name == name]


def phase(lab, ns, name, kind="pod"):
    o = get(lab, ns, kind, name)
    return o and o.get("status", {}).get("phase")


@pytest.mark.usefixtures("storage_lab")
@pytest.mark.lab
def test_the_default_class_is_local_and_remote_is_immediate(lab):
    classes = {c["metadata"]["name"]: c for c in json.loads(kc(lab, "get", "storageclass", "-o", "json"))["items"]}
    assert classes["local"]["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert (classes["local"]["provisioner"], classes["local"]["volumeBindingMode"], classes["local"]["reclaimPolicy"]) \
        == ("local.storage.kperflab.dev", "WaitForFirstConsumer", "Delete")
    assert (classes["remote"]["provisioner"], classes["remote"]["volumeBindingMode"], classes["remote"]["reclaimPolicy"]) \
        == ("remote.storage.kperflab.dev", "Immediate", "Delete")
    assert "local (default)" in kc(lab, "get", "sc")


@pytest.mark.lab
def test_a_local_claim_waits_for_its_pod_then_holds_real_bytes_and_is_deleted_with_its_backend(storage_lab, k8s, namespace):
    lab, ns = storage_lab, namespace
    kc(lab, "apply", "-n", ns, "-f", "-", input=claim("data"))
    until(lambda: ("WaitForFirstConsumer", "waiting for first consumer to be created before binding")
          in events(k8s, ns, "data"), what="WaitForFirstConsumer")
    time.sleep(1)
    assert phase(lab, ns, "data", "pvc") == "Pending"
    kc(lab, "apply", "-n", ns, "-f", "-", input=pod(
        "writer", "echo hello > /data/f && cat /data/f && df -k /data | tail -1 && "
        "dd if=/dev/zero of=/data/big bs=1M count=64 2>&1; sleep 600", data="data"))
    pvc = until(lambda: (o := get(lab, ns, "pvc", "data")) and o["status"].get("phase") == "Bound" and o, what="Bound")
    pv_name = pvc["spec"]["volumeName"]
    assert ("ProvisioningSucceeded", f"Successfully provisioned volume {pv_name}") in events(k8s, ns, "data")
    pv = get(lab, "", "pv", pv_name)
    path = Path(pv["spec"]["local"]["path"])
    assert path == lab["home"] / "lab" / "volumes" / "local" / pv_name  # kept in the state dir, across restarts
    assert str(path.resolve()).startswith(str(lab["run_dir"])) and loopfs.loop_device(path.resolve())
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] \
        == "kubernetes.io/hostname"
    until(lambda: "No space left on device" in kc(lab, "logs", "-n", ns, "writer", check=False), what="ENOSPC")
    log = kc(lab, "logs", "-n", ns, "writer")
    assert log.startswith("hello\n")
    size_kb = int(log.splitlines()[1].split()[1])
    assert 24 << 10 < size_kb <= 32 << 10  # df in the pod: the volume's own filesystem, not the node's
    assert (path / "f").read_text() == "hello\n"  # the same bytes on the node
    kc(lab, "delete", "pod", "-n", ns, "writer", "--wait=true")
    kc(lab, "delete", "pvc", "-n", ns, "data", "--wait=true")
    until(lambda: get(lab, "", "pv", pv_name) is None, what="the PV deleted")
    assert not path.is_symlink() and not path.with_name(f"{pv_name}.img").exists()
    assert not [m for m in loopfs.mounts_under(lab["run_dir"]) if pv_name in m]
    assert not [d for d in loopfs.loop_devices_under(lab["run_dir"]) if pv_name in loopfs.loop_devices()[d]]


@pytest.mark.lab
def test_a_claim_in_use_stays_terminating_until_its_pod_is_gone(storage_lab, k8s, namespace):
    lab, ns = storage_lab, namespace
    apply(lab, ns, claim("held"), pod("user", "sleep 600", held="held"))
    until(lambda: phase(lab, ns, "user") == "Running", what="Running")
    kc(lab, "delete", "pvc", "-n", ns, "held", "--wait=false")
    time.sleep(1)
    pvc = get(lab, ns, "pvc", "held")
    assert pvc["metadata"]["deletionTimestamp"] and pvc["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    assert "Terminating" in kc(lab, "get", "pvc", "-n", ns, "held")
    kc(lab, "delete", "pod", "-n", ns, "user", "--wait=true")
    until(lambda: get(lab, ns, "pvc", "held") is None, what="the claim gone")


@pytest.mark.lab
def test_retain_leaves_a_released_pv_with_its_data(storage_lab, k8s, namespace):
    lab, ns = storage_lab, namespace
    kc(lab, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": f"keep-{ns}"},
        "provisioner": "local.storage.kperflab.dev", "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"}))
    try:
        apply(lab, ns, claim("kept", cls=f"keep-{ns}"), pod("w", "echo precious > /kept/f", kept="kept"))
        until(lambda: phase(lab, ns, "w") == "Succeeded", what="the writer done")
        pv_name = get(lab, ns, "pvc", "kept")["spec"]["volumeName"]
        kc(lab, "delete", "pod", "-n", ns, "w")
        kc(lab, "delete", "pvc", "-n", ns, "kept")
        until(lambda: phase(lab, "", pv_name, "pv") == "Released", what="Released")
        pv = get(lab, "", "pv", pv_name)
        assert (Path(pv["spec"]["local"]["path"]) / "f").read_text() == "precious\n"
        assert "Released" in kc(lab, "get", "pv", pv_name)
        kc(lab, "delete", "pv", pv_name)  # Retain: the PV object goes, the data is the admin's to remove
        until(lambda: get(lab, "", "pv", pv_name) is None, what="the PV gone")
    finally:
        kc(lab, "delete", "storageclass", f"keep-{ns}", check=False)


@pytest.mark.lab
def test_a_static_pv_is_bound_by_a_matching_claim(storage_lab, k8s, namespace, tmp_path):
    lab, ns = storage_lab, namespace
    name = f"static-{ns}"
    kc(lab, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {
        "name": name, "labels": {"for": ns}}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
        "storageClassName": "", "hostPath": {"path": str(tmp_path)}}}))
    try:
        kc(lab, "apply", "-n", ns, "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "mine"},
            "spec": {"storageClassName": "", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}},
                     "selector": {"matchLabels": {"for": ns}}}}))
        pvc = until(lambda: (o := get(lab, ns, "pvc", "mine")) and o["status"].get("phase") == "Bound" and o)
        assert pvc["spec"]["volumeName"] == name and pvc["status"]["capacity"] == {"storage": "1Gi"}
        assert pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
        pv = get(lab, "", "pv", name)
        assert pv["status"]["phase"] == "Bound" and pv["spec"]["claimRef"]["name"] == "mine"
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"  # the default for a PV made by hand
        kc(lab, "delete", "pvc", "-n", ns, "mine")
        until(lambda: phase(lab, "", name, "pv") == "Released", what="Released")
    finally:
        kc(lab, "delete", "pv", name, "--wait=false", check=False)


@pytest.mark.lab
def test_a_claim_the_class_cannot_serve_is_refused_with_an_event(storage_lab, k8s, namespace):
    lab, ns = storage_lab, namespace
    kc(lab, "apply", "-n", ns, "-f", "-", input=claim("solo", cls="remote", modes=("ReadWriteOncePod",)))
    msg = until(lambda: next((m for r, m in events(k8s, ns, "solo") if r == "ProvisioningFailed"), None))
    assert msg.startswith('failed to provision volume with StorageClass "remote": rpc error: code = InvalidArgument')
    assert "does not support access mode ReadWriteOncePod" in msg
    assert phase(lab, ns, "solo", "pvc") == "Pending"
    bad = subprocess.run([KUBECTL, "apply", "-n", ns, "-f", "-"], env=lab["env"], capture_output=True,
                         input=claim("nomode", modes=()).encode())
    assert bad.returncode != 0 and b"spec.accessModes: Required value: at least 1 access mode is required" in bad.stderr


@pytest.mark.lab
def test_the_scheduler_waits_for_claims_with_upstreams_words(storage_lab, k8s, namespace):
    lab, ns = storage_lab, namespace
    kc(lab, "apply", "-n", ns, "-f", "-", input=pod("orphan", "true", data="missing"))
    tail = " preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    until(lambda: ("FailedScheduling", '0/1 nodes are available: persistentvolumeclaim "missing" not found.' + tail)
          in events(k8s, ns, "orphan"), what="FailedScheduling")
    kc(lab, "apply", "-n", ns, "-f", "-", input=claim("missing"))  # the claim appears: the pod goes on
    until(lambda: phase(lab, ns, "orphan") == "Succeeded", what="the pod ran")


def _server_pid(lab_id):
    for pid in labs.lab_processes(lab_id):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\0infinity\0" and \
                    "eth0" in Path(f"/proc/{pid}/net/dev").read_text():
                if os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
                    return pid
        except OSError:
            continue
    return None


@pytest.mark.lab
def test_a_remote_volume_is_shared_by_two_pods_over_the_pod_network(storage_lab, k8s, namespace):
    lab, ns = storage_lab, namespace
    kc(lab, "apply", "-n", ns, "-f", "-", input=claim("shared", cls="remote", modes=("ReadWriteMany",)))
    pvc = until(lambda: (o := get(lab, ns, "pvc", "shared")) and o["status"].get("phase") == "Bound" and o,
                what="Bound without a pod (Immediate)")
    reasons = [r for r, _ in events(k8s, ns, "shared")]
    assert reasons.index("ExternalProvisioning") < reasons.index("ProvisioningSucceeded")
    pv = get(lab, "", "pv", pvc["spec"]["volumeName"])
    assert pv["spec"]["csi"]["driver"] == "remote.storage.kperflab.dev"
    server = _server_pid(lab["lab_id"])
    assert server, "the storage server's process"
    before = remote.read_net_dev(Path(f"/proc/{server}/net/dev"))["eth0"]["rx_bytes"]
    kc(lab, "apply", "-n", ns, "-f", "-", input=pod(
        "writer", "head -c 3000000 /dev/urandom > /shared/blob && md5sum /shared/blob && sleep 600", shared="shared"))
    digest = until(lambda: kc(lab, "logs", "-n", ns, "writer", check=False).split(" ")[0], what="the writer's digest")
    after = remote.read_net_dev(Path(f"/proc/{server}/net/dev"))["eth0"]["rx_bytes"]
    assert after - before >= 3_000_000  # the bytes reached the server over the pod network
    kc(lab, "apply", "-n", ns, "-f", "-", input=pod("reader", "md5sum /shared/blob", shared="shared"))
    until(lambda: phase(lab, ns, "reader") == "Succeeded", what="the reader done")
    assert kc(lab, "logs", "-n", ns, "reader").split(" ")[0] == digest
    gm = lab["run_dir"] / "plugins/kubernetes.io/csi/remote.storage.kperflab.dev" / pv["spec"]["csi"]["volumeHandle"]
    assert loopfs.mounts_under(gm)  # one sshfs mount on the node for both pods
    kc(lab, "delete", "pod", "-n", ns, "writer", "reader", "--wait=true")
    until(lambda: not loopfs.mounts_under(gm), what="the sshfs mount gone with its last pod")
    kc(lab, "delete", "pvc", "-n", ns, "shared", "--wait=true")
    until(lambda: get(lab, "", "pv", pv["metadata"]["name"]) is None, what="the PV deleted")
    assert not (lab["run_dir"] / "storage-server" / "disks" / f"{pv['spec']['csi']['volumeHandle']}.img").exists()
    assert not (lab["home"] / "lab" / "volumes" / "remote" / f"{pv['spec']['csi']['volumeHandle']}.img").exists()
    assert not [p for p in labs.lab_processes(lab["lab_id"])
                if Path(f"/proc/{p}/cmdline").read_bytes().startswith((b"sshfs", b"/usr/lib/openssh/sftp-server"))]


@pytest.mark.lab
@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_a_killed_labs_volumes_are_removed_by_recovery(tmp_path):
    """A lab SIGKILLed with a local and a remote volume mounted in a running pod: `remove_dead` leaves nothing."""
    from .conftest import kperflab, lab_env

    home = tmp_path / "home"
    up = kperflab(home, "lab", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    st = json.loads((home / "lab" / "lab.json").read_text())
    lab_id = st["lab_id"]
    lab = {"env": {**lab_env(home), "KUBECONFIG": str(home / "kubeconfig.yaml")}}
    try:
        if not st.get("registry"):
            pytest.skip("the lab runs the process runtime")
        apply(lab, "default", claim("a"), claim("b", cls="remote", modes=("ReadWriteMany",)),
              pod("user", "echo x > /a/f; echo y > /b/f; sleep 600", a="a", b="b"))
        until(lambda: phase(lab, "default", "user") == "Running", what="Running")
        c = labs.census(lab_id, home / "lab")
        assert c.loops and any("globalmount" in m for m in c.mounts), c
        os.kill(labs.census(lab_id).record.info["pid"], signal.SIGKILL)
        until(lambda: lab_id not in labs.live_ids(), what="the lab dead")
        labs.remove_dead(home / "lab")
        left = labs.census(lab_id, home / "lab")
        assert left.empty(), left
    finally:
        kperflab(home, "lab", "down", "--purge")
        labs.remove_dead(home / "lab")


@pytest.mark.lab
def test_a_generic_ephemeral_volume_gets_its_own_claim_that_goes_with_the_pod(storage_lab, k8s, namespace):
    """volumes[].ephemeral: the ephemeral volume controller makes the claim <pod>-<volume>, owned by the pod; the
    scheduler refuses a same-named claim the pod does not own; the claim (and its Delete PV) go with the pod."""
    lab, ns = storage_lab, namespace
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "24Mi"}}}
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "eph"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "busybox:1.37", "command": ["sh", "-c", "df -k /scratch | tail -1; sleep 600"],
                        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
        "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
            "metadata": {"labels": {"type": "scratch"}}, "spec": spec}}}]}}
    kc(lab, "apply", "-n", ns, "-f", "-", input=json.dumps(doc))
    until(lambda: phase(lab, ns, "eph") == "Running", what="Running")
    pvc = get(lab, ns, "pvc", "eph-scratch")
    ref = pvc["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"]) == ("Pod", "eph", True) and pvc["metadata"]["labels"] == {"type": "scratch"}
    assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["storageClassName"] == "local"
    pv_name = pvc["spec"]["volumeName"]
    until(lambda: kc(lab, "logs", "-n", ns, "eph", check=False).strip(), what="df")
    assert 16 << 10 < int(kc(lab, "logs", "-n", ns, "eph").split()[1]) <= 24 << 10  # the claim's own filesystem
    kc(lab, "delete", "pod", "-n", ns, "eph", "--wait=true")
    until(lambda: get(lab, ns, "pvc", "eph-scratch") is None, what="the claim gone with its pod")
    until(lambda: get(lab, "", "pv", pv_name) is None, what="its PV deleted")
    # a claim of that name that the pod does not own: the scheduler says so and does not bind the pod
    kc(lab, "apply", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                                              "metadata": {"name": "eph-scratch"}, "spec": spec}))
    kc(lab, "apply", "-n", ns, "-f", "-", input=json.dumps(doc))
    want = f"PVC {ns}/eph-scratch was not created for pod {ns}/eph (pod is not owner)"
    until(lambda: any(r == "FailedScheduling" and want in m for r, m in events(k8s, ns, "eph")), what="FailedScheduling")
    assert not (get(lab, ns, "pod", "eph")["spec"].get("nodeName"))
