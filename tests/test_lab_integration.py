"""The lab as a user meets it: `kperflab lab up`, the official client, real kubectl, real cgroups."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client, watch

from kperflab.lab import labs

from .conftest import kperflab, needs_root

pytestmark = pytest.mark.lab
KUBECTL = shutil.which("kubectl")


def py_pod(name, code, limits=None, restart="Never"):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"test": name}),
        spec=client.V1PodSpec(restart_policy=restart, termination_grace_period_seconds=2, containers=[client.V1Container(
            name="main", image="python:3.13-slim", command=["python", "-c", code],
            resources=client.V1ResourceRequirements(limits=limits) if limits else None)]))


def wait_phase(k8s, ns, name, phases, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = k8s.read_namespaced_pod(name, ns)
        if p.status.phase in phases:
            return p
        time.sleep(0.1)
    raise AssertionError(f"{name} stayed {p.status.phase}")


def test_official_client_pod_lifecycle(k8s, namespace):
    k8s.create_namespaced_pod(namespace, py_pod("hello", "import time\nprint('hello lab', flush=True)\ntime.sleep(60)"))
    w = watch.Watch()
    running = False
    for ev in w.stream(k8s.list_namespaced_pod, namespace, field_selector="metadata.name=hello", timeout_seconds=30):
        if ev["object"].status.phase == "Running":
            running = True
            w.stop()
    assert running
    deadline = time.time() + 10
    while "hello lab" not in (log := k8s.read_namespaced_pod_log("hello", namespace)) and time.time() < deadline:
        time.sleep(0.1)
    assert log == "hello lab\n"
    assert [p.metadata.name for p in k8s.list_namespaced_pod(namespace, label_selector="test=hello").items] == ["hello"]
    assert k8s.list_namespaced_pod(namespace, label_selector="test=other").items == []
    assert [p.metadata.name for p in k8s.list_namespaced_pod(namespace, field_selector="status.phase=Running").items] == ["hello"]
    pod = k8s.read_namespaced_pod("hello", namespace)
    assert pod.status.qos_class == "BestEffort" and pod.status.pod_ip and pod.status.host_ip
    assert {c.type for c in pod.status.conditions} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
    k8s.delete_namespaced_pod("hello", namespace)
    deadline = time.time() + 15
    while k8s.list_namespaced_pod(namespace).items and time.time() < deadline:
        time.sleep(0.1)
    assert k8s.list_namespaced_pod(namespace).items == []
    reasons = [e.reason for e in k8s.list_namespaced_event(namespace).items]
    for r in ("Scheduled", "Pulled", "Created", "Started", "Killing"):
        assert r in reasons


def test_unknown_image_is_err_image_pull(k8s, namespace):
    k8s.create_namespaced_pod(namespace, client.V1Pod(metadata=client.V1ObjectMeta(name="web"), spec=client.V1PodSpec(
        containers=[client.V1Container(name="nginx", image="nginx:1.27")])))
    deadline = time.time() + 10
    while time.time() < deadline:
        cs = k8s.read_namespaced_pod("web", namespace).status.container_statuses
        if cs and cs[0].state.waiting and cs[0].state.waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
            break
        time.sleep(0.1)
    assert cs[0].state.waiting.reason in ("ErrImagePull", "ImagePullBackOff")
    events = [e.message for e in k8s.list_namespaced_event(namespace).items if e.reason == "Failed"]
    assert any("nginx:1.27" in m and ("not found" in m or "python:*" in m) for m in events), events


def test_restart_counts_and_previous_logs(k8s, namespace):
    k8s.create_namespaced_pod(namespace, py_pod("crash", "import sys\nprint('run', flush=True)\nsys.exit(3)", restart="OnFailure"))
    deadline = time.time() + 20
    while time.time() < deadline:
        cs = k8s.read_namespaced_pod("crash", namespace).status.container_statuses
        if cs and cs[0].restart_count >= 1 and cs[0].last_state.terminated:
            break
        time.sleep(0.2)
    assert cs[0].last_state.terminated.exit_code == 3 and cs[0].last_state.terminated.reason == "Error"
    assert k8s.read_namespaced_pod_log("crash", namespace, previous=True) == "run\n"


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not on PATH")
def test_kubectl_against_the_lab(lab, namespace, tmp_path):
    env = lab["env"]

    def kc(*args, check=True):
        r = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60)
        assert not check or r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r

    nodes = kc("get", "nodes", "-o", "wide").stdout
    assert nodes.split("\n")[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert "INTERNAL-IP" in nodes and "KERNEL-VERSION" in nodes and " Ready " in nodes
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(f"""apiVersion: v1
kind: Pod
metadata:
  name: kubectl-pod
  namespace: {namespace}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox:1.37
    command: ["sh", "-c", "echo from-kubectl; sleep 60"]
""")
    assert "pod/kubectl-pod created" in kc("create", "-f", str(manifest)).stdout
    assert "condition met" in kc("wait", "--for=condition=Ready", "pod/kubectl-pod", "-n", namespace, "--timeout=30s").stdout
    pods = kc("get", "pods", "-A").stdout
    assert "NAMESPACE" in pods.split("\n")[0] and "kubectl-pod" in pods and "Running" in pods and "1/1" in pods
    deadline = time.time() + 10
    while "from-kubectl" not in (out := kc("logs", "kubectl-pod", "-n", namespace).stdout) and time.time() < deadline:
        time.sleep(0.2)
    assert out == "from-kubectl\n"
    desc = kc("describe", "pod", "kubectl-pod", "-n", namespace).stdout
    assert "Status:           Running" in desc and "Started container app" in desc and "QoS Class:" in desc
    bad = kc("create", "-f", str(manifest), check=False)
    assert bad.returncode != 0 and "AlreadyExists" in bad.stderr
    assert 'pod "kubectl-pod" deleted' in kc("delete", "pod", "kubectl-pod", "-n", namespace).stdout
    assert "kubectl-pod" not in kc("get", "pods", "-n", namespace).stdout + kc("get", "pods", "-n", namespace).stderr


@needs_root
def test_cpu_limit_throttles(k8s, namespace):
    k8s.create_namespaced_pod(namespace, py_pod("burn", "while True: pass", limits={"cpu": "200m"}))
    pod = wait_phase(k8s, namespace, "burn", ("Running",))
    cpu = Path("/sys/fs/cgroup/cpu") if Path("/sys/fs/cgroup/cpu/cpu.stat").exists() else None
    cg = next((p for p in Path("/sys/fs/cgroup").rglob(f"pod{pod.metadata.uid}") if p.is_dir()), None)
    assert cg is not None

    def usage_and_throttled():
        if cpu:
            acct = Path(str(cg).replace(str(cg).split("/kperflab")[0], "/sys/fs/cgroup/cpuacct"))
            stat = dict(line.split() for line in (Path(str(cg).replace(str(cg).split("/kperflab")[0], str(cpu))) / "cpu.stat").read_text().splitlines())
            return int((acct / "cpuacct.usage").read_text()) / 1e9, int(stat["nr_throttled"])
        stat = dict(line.split() for line in (cg / "cpu.stat").read_text().splitlines())
        return int(stat["usage_usec"]) / 1e6, int(stat["nr_throttled"])

    u0, t0 = usage_and_throttled()
    start = time.time()
    time.sleep(3)
    u1, t1 = usage_and_throttled()
    cores = (u1 - u0) / (time.time() - start)
    assert t1 > t0, "nr_throttled did not grow"
    assert 0.1 < cores <= 0.25, f"used {cores:.3f} cores under a 200m limit"


@needs_root
def test_memory_limit_oom_kills(k8s, namespace):
    k8s.create_namespaced_pod(namespace, py_pod("hog", "a = [bytearray(8 << 20) for _ in range(64)]", limits={"memory": "64Mi"}))
    pod = wait_phase(k8s, namespace, "hog", ("Failed", "Succeeded"))
    term = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, term.reason, term.exit_code) == ("Failed", "OOMKilled", 137)
    events = k8s.list_namespaced_event(namespace, field_selector="involvedObject.name=hog,reason=OOMKilling").items
    assert events and "64Mi" in events[0].message


def test_jobs_and_daemonsets(lab, namespace):
    from kubernetes import config

    api = config.new_client_from_config(str(lab["kubeconfig"]))
    batch, apps, core = client.BatchV1Api(api), client.AppsV1Api(api), client.CoreV1Api(api)
    tmpl = client.V1PodTemplateSpec(spec=client.V1PodSpec(restart_policy="Never", containers=[
        client.V1Container(name="c", image="busybox", command=["sh", "-c", "echo done"])]))
    batch.create_namespaced_job(namespace, client.V1Job(metadata=client.V1ObjectMeta(name="once"),
                                                        spec=client.V1JobSpec(template=tmpl, completions=2, parallelism=1)))
    deadline = time.time() + 30
    while time.time() < deadline:
        st = batch.read_namespaced_job("once", namespace).status
        if st.succeeded == 2 and any(c.type == "Complete" for c in st.conditions or []):
            break
        time.sleep(0.2)
    assert st.succeeded == 2
    labels = {"app": "agent"}
    apps.create_namespaced_daemon_set(namespace, client.V1DaemonSet(metadata=client.V1ObjectMeta(name="agent"), spec=client.V1DaemonSetSpec(
        selector=client.V1LabelSelector(match_labels=labels), template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(termination_grace_period_seconds=1, containers=[
                client.V1Container(name="c", image="busybox:1.37", command=["sleep", "3600"])])))))
    deadline = time.time() + 20
    while time.time() < deadline and (apps.read_namespaced_daemon_set("agent", namespace).status.number_ready or 0) < 1:
        time.sleep(0.2)
    assert apps.read_namespaced_daemon_set("agent", namespace).status.number_ready == 1
    assert len(core.list_namespaced_pod(namespace, label_selector="app=agent").items) == 1


def test_lab_up_twice_changes_nothing(lab):
    again = kperflab(lab["home"], "lab", "up")
    assert again.returncode == 0 and "already up" in again.stdout


def _pod_pids(lab_id: str, uid: str) -> list[int]:
    """A lab's processes that belong to one pod (its cgroup path, or for the sandbox its session, names the pod)."""
    out = []
    for pid in labs.lab_processes(lab_id):
        try:
            if f"pod{uid}" in Path(f"/proc/{pid}/cgroup").read_text():
                out.append(pid)
        except OSError:
            pass
    return out


@needs_root
def test_two_labs_side_by_side_and_a_killed_one_recovers(tmp_path_factory, lab, k8s, namespace):
    """A second lab starts, runs a pod, is SIGKILLed and recovered; the first lab's pod never notices."""
    k8s.create_namespaced_pod(namespace, py_pod("steady", "import time; time.sleep(600)"))
    uid = wait_phase(k8s, namespace, "steady", ("Running",)).metadata.uid
    a_pids = _pod_pids(lab["lab_id"], uid)
    assert a_pids

    home = tmp_path_factory.mktemp("lab-b")
    try:
        up = kperflab(home, "lab", "up")
        assert up.returncode == 0 and lab["lab_id"] not in up.stdout, up.stdout + up.stderr  # A is not "dead"
        from kubernetes import config

        kb = client.CoreV1Api(config.new_client_from_config(str(home / "kubeconfig.yaml")))
        kb.create_namespaced_pod("default", py_pod("orphan", "import time; time.sleep(300)"))
        wait_phase(kb, "default", "orphan", ("Running",))
        b = json.loads((home / "lab" / "lab.json").read_text())
        assert b["lab_id"] != lab["lab_id"]
        b_pids = labs.lab_processes(b["lab_id"])
        assert b_pids and not set(b_pids) & set(a_pids)
        if b.get("registry"):  # the OCI runtime: B's registry and its container's overlay belong to B
            assert any(b"docker-registry" in Path(f"/proc/{p}/cmdline").read_bytes() for p in b_pids)
            assert labs.census(b["lab_id"], home / "lab").mounts
            a_info = json.loads((lab["home"] / "lab" / "lab.json").read_text())
            assert labs.census(b["lab_id"]).netns == [f"kperflab-{b['lab_id']}"], "B's node network namespace is B's"
            orphan = kb.read_namespaced_pod("orphan", "default")
            steady = k8s.read_namespaced_pod("steady", namespace)
            assert orphan.status.pod_ip.split(".")[:2] != steady.status.pod_ip.split(".")[:2], \
                f"two labs, two pod CIDRs: {orphan.status.pod_ip} vs {steady.status.pod_ip} ({a_info.get('runtime')})"
        listed = kperflab(home, "lab", "status").stdout
        assert f"{lab['lab_id']}  running" in listed and f"{b['lab_id']}  running" in listed, listed

        os.kill(b["pid"], signal.SIGKILL)
        deadline = time.time() + 10
        while labs.state_dir_locked(home / "lab") and time.time() < deadline:
            time.sleep(0.05)
        assert all(_alive(p) for p in b_pids), "pod processes survive a SIGKILLed lab until recovery"
        seen = kperflab(lab["home"], "lab", "status").stdout
        assert f"{b['lab_id']}  dead" in seen and f"{lab['lab_id']}  running" in seen, seen

        again = kperflab(home, "lab", "up")
        assert again.returncode == 0 and f"Removed what a dead lab ({b['lab_id']}) left" in again.stdout, again.stdout + again.stderr
        assert not any(_alive(p) for p in b_pids)
        assert labs.census(b["lab_id"], home / "lab").empty()
        assert not (home / "lab" / "run" / b["lab_id"]).exists(), "bundles, image store and registry storage went"
        assert f"kperflab-{b['lab_id']}" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                               text=True).stdout, "B's network namespace went"
        assert f"kperflab-{lab['lab_id']}" in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                             text=True).stdout or not b.get("registry")
        pod = k8s.read_namespaced_pod("steady", namespace)
        assert pod.status.phase == "Running" and pod.status.container_statuses[0].restart_count == 0
        assert all(_alive(p) for p in a_pids) and sorted(_pod_pids(lab["lab_id"], uid)) == sorted(a_pids), \
            "the first lab's pod processes were touched"
        b2 = json.loads((home / "lab" / "lab.json").read_text())["lab_id"]
        assert kperflab(home, "lab", "down").returncode == 0
        assert labs.census(b2, home / "lab").empty() and labs.census(b2).record is None
    finally:
        kperflab(home, "lab", "down", "--purge")  # whatever failed above, lab B goes, and its state


@needs_root
def test_a_killed_sandbox_is_replaced_and_reaped(lab, k8s, namespace):
    """The pod's sandbox killed from outside: the kubelet reaps it (no zombie), makes a new one and restarts the
    container by its restart policy, with the kubelet's SandboxChanged event."""
    k8s.create_namespaced_pod(namespace, py_pod("sbx", "import time; time.sleep(600)", restart="Always"))
    uid = wait_phase(k8s, namespace, "sbx", ("Running",)).metadata.uid
    lab_pid = json.loads((lab["home"] / "lab" / "lab.json").read_text())["pid"]
    (sandbox,) = [p for p in _pod_pids(lab["lab_id"], uid)
                  if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"infinity"]]
    os.kill(sandbox, signal.SIGKILL)
    deadline = time.time() + 20
    while time.time() < deadline:
        pod = k8s.read_namespaced_pod("sbx", namespace)
        if pod.status.phase == "Running" and pod.status.container_statuses[0].restart_count == 1 \
                and pod.status.container_statuses[0].state.running:
            break
        time.sleep(0.2)
    assert pod.status.container_statuses[0].restart_count == 1, pod.status
    reasons = [e.reason for e in k8s.list_namespaced_event(namespace).items if e.involved_object.name == "sbx"]
    assert "SandboxChanged" in reasons, reasons
    zombies = [line for line in subprocess.run(["ps", "--ppid", str(lab_pid), "-o", "pid=,stat="], capture_output=True,
                                               text=True).stdout.splitlines() if line.split()[1].startswith("Z")]
    assert zombies == []
    assert sandbox not in _pod_pids(lab["lab_id"], uid)


def _lab_of(pid: int) -> str:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return ""
    return next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"KPERFLAB_LAB=")), "")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_over_the_wire_errors_and_garbage(lab):
    """413 for a body over 3 MiB, 401 without a token, and no 5xx for malformed requests on the real socket."""
    import http.client
    import ssl

    import yaml

    kc = yaml.safe_load(Path(lab["kubeconfig"]).read_text())
    port = int(kc["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])
    token = kc["users"][0]["user"]["token"]
    ctx = ssl.create_default_context(cafile=str(Path(lab["home"]) / "lab" / "tls" / "ca.crt"))

    def req(method, path, body=b"", headers=None):
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        c.request(method, path, body=body, headers={"Authorization": f"Bearer {token}", **(headers or {})})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    status, body = req("POST", "/api/v1/namespaces/default/configmaps", b"x" * (3 * 1024 * 1024 + 1),
                       {"Content-Type": "application/json"})
    assert status == 413 and json.loads(body)["reason"] == "RequestEntityTooLarge"
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    c.request("GET", "/api/v1/pods")
    r = c.getresponse()
    assert r.status == 401 and json.loads(r.read())["kind"] == "Status"
    for method, path, body, ctype in [("POST", "/api/v1/namespaces/default/pods", b"\xff\xfe garbage", "application/json"),
                                      ("PATCH", "/api/v1/nodes/kperflab-lab", b"[1,2", "application/json-patch+json"),
                                      ("GET", "/api/v1/namespaces/default/pods?watch=1&resourceVersion=abc", b"", "application/json"),
                                      ("GET", "/api/v1/namespaces/default/pods?labelSelector=a+in+(", b"", "application/json"),
                                      ("DELETE", "/api/v1/namespaces/default/pods/nope", b"{]", "application/json"),
                                      ("GET", "/api/v1/../../etc/passwd", b"", "application/json")]:
        status, data = req(method, path, body, {"Content-Type": ctype})
        assert 400 <= status < 500, (method, path, status, data)


def test_node_conditions_are_computed_from_this_machine(lab, k8s):
    """DiskPressure matches what statvfs of the lab's filesystem says against the kubelet's thresholds (read here, not
    by the lab); MemoryPressure matches /proc/meminfo's MemAvailable to within the 100Mi threshold's meaning."""
    node = k8s.read_node("kperflab-lab")
    conds = {c.type: c for c in node.status.conditions}
    st = os.statvfs(lab["home"] / "lab")
    disk_pressure = st.f_bavail < 0.15 * st.f_blocks or st.f_favail < 0.05 * st.f_files
    assert conds["DiskPressure"].status == str(disk_pressure), (conds["DiskPressure"], st)
    assert conds["DiskPressure"].reason == ("KubeletHasDiskPressure" if disk_pressure else "KubeletHasNoDiskPressure")
    avail = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemAvailable:"))) * 1024
    if avail > 1 << 30:  # plenty free: no kubelet would see memory pressure here
        assert conds["MemoryPressure"].status == "False"
    assert "memory.available<100Mi" in node.metadata.annotations["kperflab.dev/eviction-hard"]
    assert conds["Ready"].status == "True"
