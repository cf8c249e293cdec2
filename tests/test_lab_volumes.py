"""Pod volumes in the lab, as a Kubernetes user meets them: emptyDir on disk and in memory (a tmpfs charged to the
pod's memory, so a big file raises its working set and can OOM-kill it), configMap/secret/downwardAPI/projected files,
subPath and readOnly, hostPath, FailedMount until a configMap exists, kube-apiserver's 422s, the Summary API's volume
stats, the kubelet's local-storage evictions, and nothing left mounted once the pods are gone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException

from .conftest import needs_root, wait_pod

KUBECTL = shutil.which("kubectl")
MiB = 1 << 20


def on_lab(f):
    """A test on the session's real lab (marked lab, needs root); the others here are plain unit tests."""
    return pytest.mark.lab(needs_root(f))


@pytest.fixture(scope="module")
def oci(lab):
    st = json.loads((lab["home"] / "lab" / "lab.json").read_text())
    if not st.get("registry"):
        pytest.skip(f"the session lab runs the process runtime: {st.get('runtime')}")
    return {**lab, "run_dir": lab["home"] / "lab" / "run" / st["lab_id"]}


def pod(name, containers, volumes, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": containers, "volumes": volumes, **spec}}


def box(name, cmd, mounts=(), **extra):
    return {"name": name, "image": "busybox:1.37", "command": ["sh", "-c", cmd], "volumeMounts": list(mounts), **extra}


def wait(k8s, ns, name, pred, timeout=60):
    return wait_pod(k8s, ns, name, pred, timeout, every=0.3)


def running(p):
    return p.status.phase == "Running" and all(c.ready for c in p.status.container_statuses or [False])


def events(k8s, ns, name):
    return [(e.reason, e.message) for e in k8s.list_namespaced_event(ns).items if e.involved_object.name == name]


def log(k8s, ns, name, container=None, until="", timeout=30):
    deadline = time.time() + timeout
    while True:
        text = k8s.read_namespaced_pod_log(name, ns, container=container) if container else k8s.read_namespaced_pod_log(name, ns)
        if until in text or time.time() > deadline:
            return text
        time.sleep(0.3)


def summary_pod(k8s, ns, name):
    summ = json.loads(k8s.connect_get_node_proxy_with_path("kperflab-lab", "stats/summary", _preload_content=False).data)
    return next((p for p in summ["pods"] if p["podRef"] == {**p["podRef"], "name": name, "namespace": ns}), None)


def until_summary(k8s, ns, name, pred, timeout=60):
    """The pod's Summary once ``pred`` holds for it (volume stats come every volumeStatsAggPeriod, 10 s on the lab)."""
    deadline = time.time() + timeout
    while True:
        p = summary_pod(k8s, ns, name)
        if p is not None and pred(p):
            return p
        if time.time() > deadline:
            raise AssertionError(json.dumps(p, indent=1))
        time.sleep(1)


def volume(p, name):
    return next((v for v in p.get("volume") or [] if v["name"] == name), None)


def mounts_of(path: Path) -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == str(path) or parts[4].startswith(f"{path}/"):
                out.append(line)
    return out


def gone(k8s, ns, names, timeout=60):
    for n in names:
        try:
            k8s.delete_namespaced_pod(n, ns, grace_period_seconds=0)
        except ApiException:
            pass
    deadline = time.time() + timeout
    while {p.metadata.name for p in k8s.list_namespaced_pod(ns).items} & set(names):
        assert time.time() < deadline, "pods not deleted"
        time.sleep(0.3)


@on_lab
def test_disk_empty_dir_is_shared_and_removed_with_the_pod(oci, k8s, namespace):
    k8s.create_namespaced_pod(namespace, pod("shared", [
        box("writer", "echo hello-from-writer > /data/msg; sleep 600", [{"name": "data", "mountPath": "/data"}]),
        box("reader", "while [ ! -f /shared/msg ]; do sleep 0.2; done; cat /shared/msg; ls -ld /shared; sleep 600",
            [{"name": "data", "mountPath": "/shared"}])], [{"name": "data", "emptyDir": {}}]))
    p = wait(k8s, namespace, "shared", running)
    assert "hello-from-writer" in log(k8s, namespace, "shared", "reader", until="hello")
    assert "drwxrwxrwx" in log(k8s, namespace, "shared", "reader", until="drwx"), "an emptyDir is 0777, as the kubelet makes it"
    pod_dir = oci["run_dir"] / "pods" / p.metadata.uid
    host = pod_dir / "volumes" / "kubernetes.io~empty-dir" / "data" / "msg"
    assert host.read_text() == "hello-from-writer\n", "a disk emptyDir is a directory on the node's filesystem"
    assert not mounts_of(pod_dir / "volumes" / "kubernetes.io~empty-dir"), "a disk emptyDir needs no mount on the node"
    gone(k8s, namespace, ["shared"])
    deadline = time.time() + 30
    while pod_dir.exists():  # a force-deleted pod is cleaned up by the kubelet's next sync
        assert time.time() < deadline, "the data goes with the pod"
        time.sleep(0.3)


@on_lab
def test_memory_empty_dir_is_a_sized_tmpfs_and_its_pages_are_the_pods_memory(oci, k8s, namespace):
    res = {"limits": {"memory": "400Mi"}}
    k8s.create_namespaced_pod(namespace, pod("mem", [
        box("main", "dd if=/dev/zero of=/cache/blob bs=1M count=100 && echo written; sleep 600",
            [{"name": "cache", "mountPath": "/cache"}], resources=res)],
        [{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "200Mi"}},
         {"name": "unsized", "emptyDir": {"medium": "Memory"}}]))
    p = wait(k8s, namespace, "mem", running)
    assert "written" in log(k8s, namespace, "mem", until="written")
    base = oci["run_dir"] / "pods" / p.metadata.uid / "volumes" / "kubernetes.io~empty-dir"
    sized, unsized = os.statvfs(base / "cache"), os.statvfs(base / "unsized")
    assert sized.f_blocks * sized.f_frsize == 200 * MiB, "min(sizeLimit, the pod's memory limit)"
    assert unsized.f_blocks * unsized.f_frsize == 400 * MiB, "no sizeLimit: the pod's memory limit"
    assert any(" tmpfs " in line for line in mounts_of(base / "cache"))
    s = until_summary(k8s, namespace, "mem", lambda s: (volume(s, "cache") or {}).get("usedBytes", 0) >= 100 * MiB
                      and s.get("memory", {}).get("workingSetBytes", 0) >= 100 * MiB)
    v = volume(s, "cache")
    assert v["capacityBytes"] == 200 * MiB and v["availableBytes"] <= 100 * MiB and "pvcRef" not in v, v
    assert s["containers"][0]["memory"]["workingSetBytes"] >= 100 * MiB, "tmpfs pages are charged to the writer"
    assert s["ephemeral-storage"]["usedBytes"] < 100 * MiB, "a memory emptyDir is not ephemeral storage"


@on_lab
def test_a_memory_backed_file_over_the_limit_is_an_oom_kill(oci, k8s, namespace):
    """The tmpfs is sized to the pod's limit (128Mi), the writer's container may use 48Mi: its file is memory, so the
    kernel OOM-kills it before the tmpfs is full."""
    k8s.create_namespaced_pod(namespace, pod("oom", [
        box("writer", "exec dd if=/dev/zero of=/cache/blob bs=1M count=100", [{"name": "cache", "mountPath": "/cache"}],
            resources={"limits": {"memory": "48Mi"}}),
        box("idle", "sleep 600", resources={"limits": {"memory": "80Mi"}})],
        [{"name": "cache", "emptyDir": {"medium": "Memory"}}], restartPolicy="Never"))
    p = wait(k8s, namespace, "oom", lambda p: any(c.state.terminated for c in p.status.container_statuses or []), timeout=90)
    term = next(c.state.terminated for c in p.status.container_statuses if c.name == "writer")
    assert (term.reason, term.exit_code) == ("OOMKilled", 137), term


@on_lab
def test_disk_empty_dir_over_its_size_limit_evicts_the_pod(oci, k8s, namespace):
    k8s.create_namespaced_pod(namespace, pod("greedy", [
        box("main", "dd if=/dev/urandom of=/scratch/blob bs=1M count=12; sleep 600", [{"name": "scratch", "mountPath": "/scratch"}])],
        [{"name": "scratch", "emptyDir": {"sizeLimit": "8Mi"}}]))
    p = wait(k8s, namespace, "greedy", lambda p: p.status.phase == "Failed", timeout=90)
    message = 'Usage of EmptyDir volume "scratch" exceeds the limit "8Mi". '
    assert (p.status.reason, p.status.message) == ("Evicted", message)
    assert ("Evicted", message) in events(k8s, namespace, "greedy")
    assert p.status.container_statuses[0].state.terminated is not None
    deadline = time.time() + 30
    while mounts_of(oci["run_dir"] / "pods" / p.metadata.uid) or (oci["run_dir"] / "pods" / p.metadata.uid).exists():
        assert time.time() < deadline, "an evicted pod's volumes are torn down"
        time.sleep(0.5)


@on_lab
def test_a_container_over_its_ephemeral_storage_limit_evicts_the_pod(oci, k8s, namespace):
    """The writable layer and logs count against the container's limit; the pod's total (the sum of limits) is not
    exceeded, so the container's own rule names it."""
    k8s.create_namespaced_pod(namespace, pod("layer", [
        box("writer", "dd if=/dev/urandom of=/tmp/blob bs=1M count=12; sleep 600",
            resources={"limits": {"ephemeral-storage": "8Mi"}}, securityContext={"runAsUser": 0}),
        box("quiet", "sleep 600", resources={"limits": {"ephemeral-storage": "1Gi"}})], []))
    p = wait(k8s, namespace, "layer", lambda p: p.status.phase == "Failed", timeout=90)
    message = 'Container writer exceeded its local ephemeral storage limit "8Mi". '
    assert (p.status.reason, p.status.message) == ("Evicted", message)
    assert ("Evicted", message) in events(k8s, namespace, "layer")


@on_lab
def test_config_map_secret_downward_api_and_projected_files(oci, k8s, namespace):
    k8s.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"a.conf": "alpha", "b.conf": "beta"}})
    k8s.create_namespaced_secret(namespace, {"metadata": {"name": "sec"}, "stringData": {"password": "s3cret"}})
    mounts = [{"name": n, "mountPath": f"/v/{n}"} for n in ("cfg", "items", "sec", "down", "proj")]
    cmd = ("cd /v; for f in cfg/a.conf cfg/b.conf items/renamed sec/password down/name down/labels down/mem "
           "proj/a.conf proj/password proj/ns; do echo \"$f=$(cat $f);\"; done; "
           "stat -L -c '%n %a' cfg/a.conf items/renamed sec/password down/name; ls -a cfg | tr '\\n' ' '; echo; sleep 600")
    k8s.create_namespaced_pod(namespace, pod("files", [box("main", cmd, mounts, resources={"limits": {"memory": "64Mi"}},
                                                           securityContext={"runAsUser": 0})], [
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "items", "configMap": {"name": "cfg", "items": [{"key": "b.conf", "path": "renamed", "mode": 0o600}]}},
        {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
        {"name": "down", "downwardAPI": {"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Mi"}}]}},
        {"name": "proj", "projected": {"sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "a.conf"}]}},
            {"secret": {"name": "sec"}},
            {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}]))
    k8s.patch_namespaced_pod("files", namespace, {"metadata": {"labels": {"app": "files", "tier": "x"}}})
    wait(k8s, namespace, "files", running)
    out = log(k8s, namespace, "files", until="..data")
    for line in ("cfg/a.conf=alpha;", "cfg/b.conf=beta;", "items/renamed=beta;", "sec/password=s3cret;", "down/name=files;",
                 "down/mem=64;", "proj/a.conf=alpha;", "proj/password=s3cret;", f"proj/ns={namespace};",
                 "cfg/a.conf 644", "items/renamed 600", "sec/password 400", "down/name 644"):
        assert line in out, (line, out)
    assert "..data" in out, "the atomic writer's layout"
    # an update of the configMap reaches the files (not a subPath), through a new ..data
    k8s.patch_namespaced_config_map("cfg", namespace, {"data": {"a.conf": "gamma"}})
    deadline = time.time() + 30
    while True:
        r = subprocess.run([KUBECTL, "exec", "files", "-n", namespace, "--", "cat", "/v/cfg/a.conf"],
                           env=oci["env"], capture_output=True, text=True) if KUBECTL else None
        if r is None or r.stdout == "gamma" or time.time() > deadline:
            break
        time.sleep(0.5)
    if r is not None:
        assert r.stdout == "gamma", r


@on_lab
def test_sub_path_read_only_and_host_path(oci, k8s, namespace, tmp_path):
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "from-host").write_text("node file\n")
    cmd = ("cat /h/from-host; echo sub > /sub/x && echo sub-ok; touch /ro/y 2>&1 || echo ro-refused; "
           "ls /whole/nested; sleep 600")
    # a hostPath volume needs a namespace Pod Security lets have one (the lab enforces `baseline` by default)
    k8s.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}})
    k8s.create_namespaced_pod(namespace, pod("paths", [box("main", cmd, [
        {"name": "h", "mountPath": "/h", "readOnly": True},
        {"name": "data", "mountPath": "/sub", "subPath": "nested/dir"},
        {"name": "data", "mountPath": "/ro", "readOnly": True},
        {"name": "data", "mountPath": "/whole"}])],
        [{"name": "h", "hostPath": {"path": str(host), "type": "Directory"}}, {"name": "data", "emptyDir": {}}]))
    p = wait(k8s, namespace, "paths", running)
    out = log(k8s, namespace, "paths", until="dir")
    assert "node file" in out and "sub-ok" in out and "Read-only file system" in out and "ro-refused" in out, out
    assert "dir" in out.split("ro-refused")[-1], "the subPath was created in the volume"
    vol = oci["run_dir"] / "pods" / p.metadata.uid / "volumes" / "kubernetes.io~empty-dir" / "data"
    assert (vol / "nested" / "dir" / "x").read_text() == "sub\n"
    assert any(r == "HostPathVolume" and "lab" in m for r, m in events(k8s, namespace, "paths"))
    # hostPath type checks, with the kubelet's words
    k8s.create_namespaced_pod(namespace, pod("notdir", [box("main", "true", [{"name": "h", "mountPath": "/h"}])],
                                             [{"name": "h", "hostPath": {"path": str(host / "from-host"), "type": "Directory"}}]))
    deadline = time.time() + 30
    want = f'MountVolume.SetUp failed for volume "h" : hostPath type check failed: {host / "from-host"} is not a directory, it\'s a File'
    while ("FailedMount", want) not in events(k8s, namespace, "notdir"):
        assert time.time() < deadline, events(k8s, namespace, "notdir")
        time.sleep(0.5)
    p = wait(k8s, namespace, "notdir", lambda p: p.status.container_statuses, timeout=10)  # the kubelet's next status write
    assert p.status.container_statuses[0].state.waiting.reason == "ContainerCreating"


@on_lab
def test_a_missing_config_map_is_failed_mount_until_it_exists(oci, k8s, namespace):
    k8s.create_namespaced_pod(namespace, pod("waits", [box("main", "cat /c/k; echo; sleep 600", [{"name": "c", "mountPath": "/c"}])],
                                             [{"name": "c", "configMap": {"name": "late"}}]))
    want = ("FailedMount", 'MountVolume.SetUp failed for volume "c" : configmap "late" not found')
    deadline = time.time() + 30
    while want not in events(k8s, namespace, "waits"):
        assert time.time() < deadline, events(k8s, namespace, "waits")
        time.sleep(0.3)
    p = wait(k8s, namespace, "waits", lambda p: p.status.container_statuses, timeout=10)
    assert p.status.phase == "Pending" and p.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    k8s.create_namespaced_config_map(namespace, {"metadata": {"name": "late"}, "data": {"k": "arrived"}})
    wait(k8s, namespace, "waits", running, timeout=90)
    assert "arrived" in log(k8s, namespace, "waits", until="arrived")


@on_lab
@pytest.mark.parametrize("volumes,mounts,field,message", [
    ([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}], [], "spec.volumes[1].name", 'Duplicate value: "a"'),
    ([{"name": "a", "emptyDir": {}, "hostPath": {"path": "/tmp"}}], [], "spec.volumes[0].hostPath",
     "Forbidden: may not specify more than 1 volume type"),
    ([{"name": "a", "emptyDir": {}}], [{"name": "b", "mountPath": "/b"}], "spec.containers[0].volumeMounts[0].name",
     'Not found: "b"'),
    ([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/x"}, {"name": "a", "mountPath": "/x"}],
     "spec.containers[0].volumeMounts[1].mountPath", 'Invalid value: "/x": must be unique'),
    ([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/x", "subPath": "../up"}],
     "spec.containers[0].volumeMounts.subPath", "Invalid value: \"../up\": must not contain '..'"),
    ([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/x", "subPath": "/abs"}],
     "spec.containers[0].volumeMounts.subPath", 'Invalid value: "/abs": must be a relative path'),
    ([{"name": "a", "hostPath": {"path": "/tmp", "type": "Dir"}}], [], "spec.volumes[0].hostPath.type",
     'Unsupported value: "Dir": supported values: "", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", '
     '"File", "FileOrCreate", "Socket"'),
    ([{"name": "a", "configMap": {"name": "c", "items": [{"key": "k", "path": "x", "mode": 1000}]}}], [],
     "spec.volumes[0].configMap.items[0].mode", "Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive"),
    ([{"name": "a", "persistentVolumeClaim": {"claimName": ""}}], [], "spec.volumes[0].persistentVolumeClaim.claimName", "Required value"),
], ids=["duplicate-name", "two-sources", "mount-not-found", "mountpath-unique", "subpath-backsteps", "subpath-absolute",
        "hostpath-type", "file-mode", "claim-required"])
def test_invalid_volumes_are_422_with_kube_apiservers_causes(oci, k8s, namespace, volumes, mounts, field, message):
    with pytest.raises(ApiException) as exc:
        k8s.create_namespaced_pod(namespace, pod("bad", [box("main", "true", mounts)], volumes))
    assert exc.value.status == 422
    causes = json.loads(exc.value.body)["details"]["causes"]
    assert {"field": field, "message": message} in [{"field": c["field"], "message": c["message"]} for c in causes], causes


@on_lab
def test_configz_is_the_kubelets_configuration(oci, k8s):
    cz = json.loads(k8s.connect_get_node_proxy_with_path("kperflab-lab", "configz", _preload_content=False).data)
    assert cz["kubeletconfig"]["volumeStatsAggPeriod"] == "10s" and "evictionHard" in cz["kubeletconfig"], cz


@on_lab
def test_summary_volume_stats_and_ephemeral_storage(oci, k8s, namespace):
    k8s.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"k": "v" * 5000}})
    k8s.create_namespaced_pod(namespace, pod("stats", [box("main", "head -c 3000000 /dev/urandom > /d/f; sleep 600",
                                                           [{"name": "d", "mountPath": "/d"}, {"name": "c", "mountPath": "/c"}])],
                                             [{"name": "d", "emptyDir": {}}, {"name": "c", "configMap": {"name": "cfg"}}]))
    wait(k8s, namespace, "stats", running)
    s = until_summary(k8s, namespace, "stats", lambda s: (volume(s, "d") or {}).get("usedBytes", 0) >= 3_000_000)
    d, c = volume(s, "d"), volume(s, "c")
    st = os.statvfs(oci["run_dir"])
    assert abs(d["capacityBytes"] - st.f_blocks * st.f_frsize) < 1 << 30 and d["inodesUsed"] >= 2, d
    assert c is not None and c["usedBytes"] >= 5000 and c["inodesUsed"] >= 3, c  # the file, ..data and the timestamped dir
    assert set(d) == {"time", "availableBytes", "capacityBytes", "usedBytes", "inodesFree", "inodes", "inodesUsed", "name"}
    eph = s["ephemeral-storage"]["usedBytes"]
    assert eph >= d["usedBytes"] + c["usedBytes"], "ephemeral storage counts disk emptyDirs and configMaps"
    metrics = k8s.connect_get_node_proxy_with_path("kperflab-lab", "metrics", _preload_content=False).data.decode()
    assert "# HELP kubelet_volume_stats_used_bytes [ALPHA] Number of used bytes in the volume" in metrics


@on_lab
def test_nothing_stays_mounted_after_the_pods_are_deleted(oci, k8s, namespace):
    k8s.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    names = []
    for i in range(3):
        names.append(f"m{i}")
        k8s.create_namespaced_pod(namespace, pod(f"m{i}", [box("main", "sleep 600", [
            {"name": "mem", "mountPath": "/mem"}, {"name": "s", "mountPath": "/s"}, {"name": "d", "mountPath": "/d"}])],
            [{"name": "mem", "emptyDir": {"medium": "Memory"}}, {"name": "s", "secret": {"secretName": "s"}},
             {"name": "d", "emptyDir": {}}]))
    uids = [wait(k8s, namespace, n, running).metadata.uid for n in names]
    pods_dir = oci["run_dir"] / "pods"
    assert all(len(mounts_of(pods_dir / u)) == 3 for u in uids), "a tmpfs for the memory emptyDir, one for the secret, one for kube-api-access"
    gone(k8s, namespace, names)
    deadline = time.time() + 30
    while any(mounts_of(pods_dir / u) or (pods_dir / u).exists() for u in uids):
        assert time.time() < deadline, [mounts_of(pods_dir / u) for u in uids]
        time.sleep(0.3)


@on_lab
def test_a_claims_volume_is_reported_with_its_pvc_and_read_only_is_honoured(oci, k8s, namespace):
    """A claim of the default (local) class: the pod writes to the PV's own filesystem; the Summary reports it with
    its pvcRef and statfs numbers, /metrics as kubelet_volume_stats_*; a second pod mounting it readOnly gets EROFS."""
    k8s.create_namespaced_persistent_volume_claim(namespace, {"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "32Mi"}}}})
    k8s.create_namespaced_pod(namespace, pod("user", [box("main", "head -c 4000000 /dev/urandom > /d/f && echo ok; sleep 600",
                                                          [{"name": "d", "mountPath": "/d"}], securityContext={"runAsUser": 0})],
                                             [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]))
    wait(k8s, namespace, "user", running, timeout=90)
    assert "ok" in log(k8s, namespace, "user", until="ok")
    s = until_summary(k8s, namespace, "user", lambda s: (volume(s, "d") or {}).get("usedBytes", 0) >= 4_000_000)
    v = volume(s, "d")
    assert v["pvcRef"] == {"name": "data", "namespace": namespace}, v
    assert v["capacityBytes"] <= 32 * MiB and v["usedBytes"] + v["availableBytes"] <= v["capacityBytes"], v
    assert s["ephemeral-storage"]["usedBytes"] < 4_000_000, "a persistent volume is not ephemeral storage"
    from prometheus_client.parser import text_string_to_metric_families

    text = k8s.connect_get_node_proxy_with_path("kperflab-lab", "metrics", _preload_content=False).data.decode()
    used = [m for f in text_string_to_metric_families(text) if f.name == "kubelet_volume_stats_used_bytes"
            for m in f.samples if m.labels == {"namespace": namespace, "persistentvolumeclaim": "data"}]
    assert used and used[0].value >= 4_000_000, used
    k8s.create_namespaced_pod(namespace, pod("reader", [box("main", "cat /d/f | wc -c; touch /d/g 2>&1; sleep 600",
                                                            [{"name": "d", "mountPath": "/d"}], securityContext={"runAsUser": 0})],
                                             [{"name": "d", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}}]))
    wait(k8s, namespace, "reader", running, timeout=90)
    out = log(k8s, namespace, "reader", until="Read-only")
    assert "4000000" in out and "Read-only file system" in out, out


# -- units: the kubelet's rules as pure functions ----------------------------------------------------------------

def _stats(volumes=(), rootfs=None, logs=None, ephemeral=0):
    from kperflab.lab.stats.fsstats import FsUsage, PodFsStats, VolumeTarget, VolumeUsage

    u = lambda used: FsUsage(0.0, 1 << 40, 1 << 39, 1000, 500, used, 1)  # noqa: E731
    return PodFsStats(0.0, {k: u(v) for k, v in (rootfs or {}).items()}, {k: u(v) for k, v in (logs or {}).items()},
                      tuple(VolumeUsage(VolumeTarget(n, Path("/x")), u(b)) for n, b in volumes), u(ephemeral))


def _ctr(name, eph=None):
    return {"name": name, "resources": {"limits": {"ephemeral-storage": eph}} if eph else {}}


def test_local_storage_eviction_messages_and_order():
    from kperflab.lab.volumes import local_storage_eviction

    spec = {"spec": {"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                     "containers": [_ctr("a", "50M"), _ctr("b", "1536Mi")]}}
    assert local_storage_eviction(spec, _stats([("scratch", 1 << 30)], ephemeral=1 << 30)) is None, "at the limit is fine"
    assert local_storage_eviction(spec, _stats([("scratch", (1 << 30) + 4096)])) == \
        'Usage of EmptyDir volume "scratch" exceeds the limit "1Gi". '
    # the pod's total is the sum of the limits, kept in the first one's format (50M + 1536Mi = 1660612736 → "1660612736")
    assert local_storage_eviction(spec, _stats(ephemeral=2 << 30)) == \
        "Pod ephemeral local storage usage exceeds the total limit of containers 1660612736. "
    assert local_storage_eviction(spec, _stats(rootfs={"a": 40_000_000}, logs={"a": 20_000_000}, ephemeral=60_000_000)) == \
        'Container a exceeded its local ephemeral storage limit "50M". '
    memory = {"spec": {"volumes": [{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}], "containers": [_ctr("a")]}}
    assert local_storage_eviction(memory, _stats([("m", 1 << 20)])) is None


def test_quantities_are_written_as_go_writes_them():
    from decimal import Decimal

    from kperflab.lab.volumes import quantity_format, quantity_string

    cases = {"10Mi": "10Mi", "1.5Gi": "1536Mi", "50M": "50M", "100000000": "100M", "0.5": "500m", "1500k": "1500k",
             "2048": "2048", "1Ki": "1Ki"}
    from kperflab.lab import quantity

    for text, want in cases.items():
        assert quantity_string(quantity.parse(text), quantity_format(text)) == want, text
    assert quantity_string(Decimal(1500), "BinarySI") == "1500"


def test_memory_backed_size_is_the_smallest_of_size_limit_pod_limit_and_allocatable():
    from kperflab.lab.volumes import memory_backed_size

    def p(*limits):
        return {"spec": {"containers": [{"name": f"c{i}", "resources": {"limits": {"memory": m}} if m else {}}
                                        for i, m in enumerate(limits)]}}

    assert memory_backed_size(p("100Mi", "28Mi"), "1Gi", 8 << 30) == 128 * MiB
    assert memory_backed_size(p("100Mi", "28Mi"), "64Mi", 8 << 30) == 64 * MiB
    assert memory_backed_size(p("100Mi", None), None, 8 << 30) == 8 << 30, "a container without a limit: allocatable"
    assert memory_backed_size(p(None), "16Gi", 8 << 30) == 8 << 30, "a sizeLimit above allocatable is ignored"


def test_atomic_writer_layout_and_updates(tmp_path):
    from kperflab.lab.volumes import write_atomic

    d = tmp_path / "vol"
    write_atomic(d, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    first = os.readlink(d / "..data")
    assert first.startswith("..") and os.readlink(d / "a") == "..data/a" and os.readlink(d / "dir") == "..data/dir"
    assert (d / "dir" / "b").read_bytes() == b"2" and oct((d / first / "dir" / "b").stat().st_mode & 0o777) == "0o600"
    write_atomic(d, {"a": (b"3", 0o644)})
    assert (d / "a").read_bytes() == b"3" and not os.path.lexists(d / "dir") and not (d / first).exists()
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith("..")) == ["a"]


def test_host_path_type_checks_say_what_the_kubelet_says(tmp_path):
    from kperflab.lab.volumes import MountError, check_host_path

    f = tmp_path / "file"
    f.write_text("x")
    check_host_path(str(f), "File")
    check_host_path(str(tmp_path / "made"), "DirectoryOrCreate")
    assert (tmp_path / "made").is_dir()
    for path, type_, message in ((f, "Directory", f"hostPath type check failed: {f} is not a directory, it's a File"),
                                 (tmp_path / "nope", "File", f"hostPath {tmp_path / 'nope'} doesn't exist"),
                                 (f, "Bogus", "Bogus is an invalid volume type")):
        with pytest.raises(MountError) as exc:
            check_host_path(str(path), type_)
        assert str(exc.value) == message


def test_sub_paths_stay_inside_their_volume(tmp_path):
    from kperflab.lab.volumes import resolve_subpath

    root = tmp_path / "vol"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    made = resolve_subpath(root, "a/b")
    assert made == root / "a" / "b" and made.is_dir() and oct(made.stat().st_mode & 0o777) == "0o777"
    os.symlink("/etc", root / "escape")
    for bad in ("../x", "/abs", "escape", "escape/passwd"):
        with pytest.raises(ValueError):
            resolve_subpath(root, bad)


def test_downward_api_files_format_maps_and_resources():
    from kperflab.lab.volumes import downward_payload

    p = {"metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"b": "2", "a": 'say "hi"'}},
         "spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "250m"}, "requests": {"memory": "1Gi"}}}]}}
    out = downward_payload(p, [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                               {"path": "one", "fieldRef": {"fieldPath": "metadata.labels['b']"}},
                               {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
                               {"path": "mcpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}},
                               {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                                                    "divisor": "1Mi"}, "mode": 0o600}],
                           0o644, {"memory": "2Gi", "cpu": "2"})
    assert out["labels"] == (b'a="say \\"hi\\""\nb="2"', 0o644)
    assert out["one"][0] == b"2" and out["cpu"][0] == b"1" and out["mcpu"][0] == b"250"
    assert out["mem"] == (b"2048", 0o600), "no memory limit: the node's allocatable"


class _Store:
    def __init__(self):
        self.objs = {}

    def try_get(self, resource, namespace, name):
        return self.objs.get((resource, namespace, name))


def test_the_volume_manager_waits_retries_and_reports_as_the_kubelet(tmp_path):
    """A missing configMap: FailedMount on each try, the tries spaced by the back-off, the pod ready once it exists;
    an unbound claim: no event per try, and after podAttachAndMountTimeout the kubelet's timeout event."""
    from kperflab.lab.volumes import VolumeManager

    store, now, seen = _Store(), [1000.0], []
    vm = VolumeManager(store, tmp_path, lambda obj, t, reason, msg: seen.append((reason, msg)), lambda: {"memory": "1Gi"},
                       clock=lambda: now[0])
    p = {"metadata": {"uid": "u1", "namespace": "ns", "name": "p"}, "spec": {"containers": [{"name": "c"}], "volumes": [
        {"name": "cfg", "configMap": {"name": "late", "defaultMode": 420}}, {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]}}
    assert not vm.setup(p)
    assert seen == [("FailedMount", 'MountVolume.SetUp failed for volume "cfg" : configmap "late" not found')]
    now[0] += 0.1
    vm.setup(p)
    assert len(seen) == 1, "the next try waits for its back-off"
    store.objs[("v1/configmaps", "ns", "late")] = {"data": {"k": "v"}}
    store.objs[("v1/persistentvolumeclaims", "ns", "d")] = {"spec": {}, "status": {"phase": "Pending"}}
    now[0] += 1
    assert not vm.setup(p) and (tmp_path / "pods/u1/volumes/kubernetes.io~configmap/cfg/k").read_text() == "v"
    now[0] += 123
    assert not vm.setup(p)
    assert seen[-1] == ("FailedMount", "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], "
                        "failed to process volumes=[data]: timed out waiting for the condition"), seen
    store.objs[("v1/persistentvolumeclaims", "ns", "d")] = {"spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}}
    (tmp_path / "disk").mkdir()
    store.objs[("v1/persistentvolumes", "", "pv1")] = {"spec": {"local": {"path": str(tmp_path / "disk")}}}
    assert vm.setup(p)
    targets = {t.name: t for t in vm.stat_targets("u1")}
    assert targets["data"].pvc == ("ns", "d") and targets["data"].method == "statfs" and targets["cfg"].ephemeral
    mounts = vm.container_mounts(p, {"name": "c", "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"},
                                                                   {"name": "data", "mountPath": "/data/x", "subPath": "s"}]})
    assert [(m["destination"], m["options"][-1]) for m in mounts] == [("/etc/app", "ro"), ("/data/x", "rw")]
    assert (tmp_path / "disk" / "s").is_dir()
    vm.teardown("u1")
    assert not (tmp_path / "pods" / "u1").exists() and (tmp_path / "disk" / "s").is_dir(), "a PV's data stays"
