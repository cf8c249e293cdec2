"""Faults the kubelet must survive: a restart of the lab with pods in the store (as a node reboot), a container
process killed from outside, a full disk under the state dir."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kperflab.lab.kubelet import Kubelet
from kperflab.lab.runtime.process import Runtime
from kperflab.lab.store import Store

NODE = "kperflab-lab"
SLEEP = ["sh", "-c", "sleep 30"]


def _pod(name: str, policy: str = "Always", status: dict[str, Any] | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4()),
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": NODE, "restartPolicy": policy, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "c", "image": "busybox", "command": SLEEP}]},
    }
    if status is not None:
        pod["status"] = status
    return pod


def _ran_status(state: dict[str, Any], restarts: int = 2, phase: str = "Running") -> dict[str, Any]:
    """The status a kubelet wrote before the lab went down."""
    return {"phase": phase, "startTime": "2026-01-01T00:00:01Z", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
            "qosClass": "BestEffort",
            "containerStatuses": [{"name": "c", "state": state, "lastState": {}, "ready": "running" in state,
                                   "restartCount": restarts, "image": "busybox", "imageID": "",
                                   "containerID": "kperflab://0123456789ab", "started": "running" in state}]}


def _events(store: Store, name: str) -> list[tuple[str, str]]:
    items, *_ = store.list("v1/events", "default", lambda e: e["involvedObject"]["name"] == name)
    return [(e["reason"], e["message"]) for e in items]


def test_restart_reruns_pods_as_after_a_node_reboot(tmp_path: Path) -> None:
    """Contract 3: pods in a restored store are re-run (new sandbox, restartCount + 1, lastState Unknown/255);
    restartPolicy Never pods that were running fail; finished pods and brand-new pods are left as they are."""
    store = Store()
    running = {"running": {"startedAt": "2026-01-01T00:00:02Z"}}
    always = store.create("v1/pods", _pod("always", "Always", _ran_status(running)))
    never = store.create("v1/pods", _pod("never", "Never", _ran_status(running, restarts=0)))
    done_status = _ran_status({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2026-01-01T00:00:02Z",
                                              "finishedAt": "2026-01-01T00:00:03Z",
                                              "containerID": "kperflab://0123456789ab"}}, 0, "Succeeded")
    done = store.create("v1/pods", _pod("done", "Never", done_status))
    fresh = store.create("v1/pods", _pod("fresh"))
    kubelet = Kubelet(store, NODE, Runtime(None, f"t{uuid.uuid4().hex[:8]}"), tmp_path)
    try:
        kubelet.sync()
        kubelet.sync()
        get = lambda p: store.get("v1/pods", "default", p["metadata"]["name"])  # noqa: E731
        st = get(always)["status"]["containerStatuses"][0]
        assert st["restartCount"] == 3 and "running" in st["state"], st
        last = st["lastState"]["terminated"]
        assert (last["reason"], last["exitCode"], last["startedAt"]) == ("Unknown", 255, "2026-01-01T00:00:02Z"), last
        assert last["finishedAt"] and last["containerID"] == "kperflab://0123456789ab"
        assert get(always)["status"]["startTime"] == "2026-01-01T00:00:01Z"
        assert ("SandboxChanged", "Pod sandbox changed, it will be killed and re-created.") in _events(store, "always")

        n = get(never)["status"]
        term = n["containerStatuses"][0]["state"]["terminated"]
        assert n["phase"] == "Failed" and (term["reason"], term["exitCode"]) == ("Unknown", 255), n
        assert kubelet.pods[never["metadata"]["uid"]].containers[0].proc is None  # not run again
        assert "SandboxChanged" not in [r for r, _ in _events(store, "never")]

        assert get(done)["status"] == done_status and kubelet.pods[done["metadata"]["uid"]].containers[0].runs == 0
        f = get(fresh)["status"]["containerStatuses"][0]
        assert f["restartCount"] == 0 and f["lastState"] == {} and "running" in f["state"], f
        assert "SandboxChanged" not in [r for r, _ in _events(store, "fresh")]
    finally:
        kubelet.shutdown()


def test_restart_leaves_a_deleting_pod_to_be_removed(tmp_path: Path) -> None:
    store = Store()
    pod = _pod("going", "Always", _ran_status({"running": {"startedAt": "2026-01-01T00:00:02Z"}}))
    store.create("v1/pods", pod)
    store.mark_deleting("v1/pods", "default", "going", 1)
    kubelet = Kubelet(store, NODE, Runtime(None, f"t{uuid.uuid4().hex[:8]}"), tmp_path)
    try:
        deadline = time.time() + 5
        while store.try_get("v1/pods", "default", "going") is not None and time.time() < deadline:
            kubelet.sync()
            time.sleep(0.05)
        assert store.try_get("v1/pods", "default", "going") is None
        assert all(c.runs == 0 for rec in kubelet.pods.values() for c in rec.all)
    finally:
        kubelet.shutdown()


# -- a container process killed from outside ----------------------------------------------------------------------

def _main_pid(marker: str) -> int:
    """The host pid of the container's main process: the one process whose command line is ``sleep <marker>``."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                    found.append(int(d.name))
            except OSError:
                continue
    assert len(found) == 1, f"sleep {marker}: {found}"
    return found[0]


def test_a_container_killed_from_outside_is_handled_by_its_restart_policy(k8s: Any, namespace: str) -> None:
    """kill -9 of a container's main process on the host: noticed within one kubelet pass; Always restarts it
    (restartCount 1, lastState terminated Error/137), Never fails the pod (terminated Error/137)."""
    from kubernetes import client

    from .conftest import wait_pod

    markers = {}
    for policy in ("Always", "Never"):
        markers[policy] = str(3000 + uuid.uuid4().int % 900)  # unique among the test's processes: its pid is found by it
        k8s.create_namespaced_pod(namespace, client.V1Pod(
            metadata=client.V1ObjectMeta(name=policy.lower()),
            spec=client.V1PodSpec(restart_policy=policy, termination_grace_period_seconds=0, containers=[
                client.V1Container(name="c", image="busybox:1.37", command=["sh", "-c", f"exec sleep {markers[policy]}"])])))
    for policy in markers:
        wait_pod(k8s, namespace, policy.lower(), lambda p: p.status.phase == "Running")
    kills = {}
    for policy, marker in markers.items():
        pid = _main_pid(marker)
        kills[policy] = time.monotonic()
        os.kill(pid, signal.SIGKILL)

    def restarted(p: Any) -> bool:
        cs = (p.status.container_statuses or [None])[0]
        return bool(cs and cs.restart_count == 1 and cs.last_state.terminated is not None)

    p = wait_pod(k8s, namespace, "always", restarted, timeout=30, every=0.05)
    took_always = time.monotonic() - kills["Always"]
    p = k8s.read_namespaced_pod("always", namespace)
    last = p.status.container_statuses[0].last_state.terminated
    assert (last.exit_code, last.reason) == (137, "Error"), last
    p = wait_pod(k8s, namespace, "never", lambda p: p.status.phase == "Failed", timeout=30, every=0.05)
    took_never = time.monotonic() - kills["Never"]
    term = p.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (137, "Error"), term
    print(f"kill -9 → status: Always {took_always:.2f} s, Never {took_never:.2f} s")
    # one kubelet pass is 0.5 s at most (its loop waits on _wake); generous for a loaded 2-core machine
    assert took_always <= 5 and took_never <= 5, (took_always, took_never)


# -- a full disk under the state dir --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A lab (process runtime: no image filesystem to fit) whose KPERFLAB_HOME is a 256 MiB tmpfs of its own: big
    enough that the store's 8 MiB reserve, once given up, leaves the filesystem under the 10 % eviction threshold
    (on a 64 MiB one it lifted DiskPressure before the kubelet evicted anything)."""
    from .conftest import kperflab

    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    home = tmp_path_factory.mktemp("small-home")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs", str(home)], check=True)
    try:
        up = kperflab(home, "lab", "up", "--runtime", "process")
        assert up.returncode == 0, up.stdout + up.stderr
        try:
            yield {"home": home, "kubeconfig": home / "kubeconfig.yaml"}
        finally:
            (home / "filler").unlink(missing_ok=True)
            down = kperflab(home, "lab", "down")
            assert down.returncode == 0, down.stdout + down.stderr
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def _fill(path: Path) -> None:
    """Write zeros until the filesystem has no byte left (ENOSPC)."""
    block = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_full_disk_gives_disk_pressure_and_the_lab_stays_up(small_lab: dict[str, Any]) -> None:
    """0 bytes free under the state dir: the Node's DiskPressure (the kubelet's reason and message) with its
    NoSchedule taint and the EvictionThresholdMet event, a running pod evicted with the kubelet's message; the lab
    answers throughout, and recovers the pods' writes once space is back."""
    from kubernetes import client, config

    v1 = client.CoreV1Api(config.new_client_from_config(str(small_lab["kubeconfig"])))
    v1.create_namespaced_pod("default", client.V1Pod(
        metadata=client.V1ObjectMeta(name="writer"),
        spec=client.V1PodSpec(termination_grace_period_seconds=0, containers=[client.V1Container(
            name="c", image="busybox", command=["sh", "-c", "while true; do echo line; sleep 0.1; done"])])))
    from .conftest import wait_pod

    wait_pod(v1, "default", "writer", lambda p: p.status.phase == "Running")
    t0 = time.monotonic()
    _fill(small_lab["home"] / "filler")
    assert os.statvfs(small_lab["home"]).f_bavail == 0

    def condition(n: Any) -> Any:
        return next(c for c in n.status.conditions if c.type == "DiskPressure")

    deadline = time.monotonic() + 30
    while condition(v1.read_node(NODE)).status != "True":
        assert time.monotonic() < deadline, condition(v1.read_node(NODE))
        time.sleep(0.2)
    took = time.monotonic() - t0
    n = v1.read_node(NODE)
    assert (condition(n).reason, condition(n).message) == ("KubeletHasDiskPressure", "kubelet has disk pressure")
    deadline = time.monotonic() + 10
    while not any(t.key == "node.kubernetes.io/disk-pressure" and t.effect == "NoSchedule"
                  for t in v1.read_node(NODE).spec.taints or []):
        assert time.monotonic() < deadline, v1.read_node(NODE).spec.taints
        time.sleep(0.2)
    node_events = v1.list_namespaced_event("default", field_selector=f"involvedObject.kind=Node,involvedObject.name={NODE}")
    assert ("EvictionThresholdMet", "Attempting to reclaim ephemeral-storage") in [
        (e.reason, e.message) for e in node_events.items]
    try:
        p = wait_pod(v1, "default", "writer", lambda p: p.status.phase == "Failed", timeout=30)
    except AssertionError as exc:  # say what the lab said
        log = (small_lab["home"] / "lab" / "lab.log").read_text(errors="replace").splitlines()
        raise AssertionError("\n".join([str(exc)[:2000], *log[-40:]])) from None
    assert p.status.reason == "Evicted" and p.status.message.startswith(
        "The node was low on resource: ephemeral-storage. Threshold quantity: "), p.status
    events = v1.list_namespaced_event("default", field_selector="involvedObject.name=writer").items
    assert any(e.reason == "Evicted" and e.message == p.status.message for e in events)
    print(f"disk full → DiskPressure True in {took:.1f} s")
    # a new pod is not scheduled onto the tainted node, and says why (the scheduler's TaintToleration message)
    v1.create_namespaced_pod("default", client.V1Pod(
        metadata=client.V1ObjectMeta(name="newcomer"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox", command=["true"])])))
    want = ("0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/disk-pressure: }. "
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    deadline = time.monotonic() + 10
    while ("FailedScheduling", want) not in [(e.reason, e.message) for e in v1.list_namespaced_event(
            "default", field_selector="involvedObject.name=newcomer").items]:
        assert time.monotonic() < deadline, v1.read_namespaced_pod("newcomer", "default").status
        time.sleep(0.2)
    assert not v1.read_namespaced_pod("newcomer", "default").spec.node_name
    v1.list_namespace()  # the lab still answers
    (small_lab["home"] / "filler").unlink()
    assert v1.read_node(NODE).metadata.name == NODE
