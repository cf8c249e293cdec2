"""The client library against the real lab: what a notebook does, with a unique namespace per test."""

from __future__ import annotations

import _thread
import shutil
import subprocess
import threading
import time
from typing import Any

import pytest

import kperflab
from kperflab import ExperimentFailed, workloads
from kperflab.lab import labs

from .conftest import kperflab as kperflab_cli
from .conftest import needs_root

pytestmark = [pytest.mark.lab, needs_root]
KUBECTL = shutil.which("kubectl")


@pytest.fixture
def cluster(lab: dict[str, Any]):
    return kperflab.connect(lab["kubeconfig"])


def gone(c, ns: str) -> bool:
    return ns not in [n.metadata.name for n in c.core.list_namespace().items]


def pod_processes(lab: dict[str, Any], uids: set[str]) -> list[int]:
    """The session lab's processes that belong to these pods (their cgroup path names the pod), whatever else runs."""
    out = []
    for pid in labs.lab_processes(lab["lab_id"]):
        try:
            cg = open(f"/proc/{pid}/cgroup").read()
        except OSError:
            continue
        if any(f"pod{u}" in cg for u in uids):
            out.append(pid)
    return out


def test_connect_to_the_lab(cluster):
    assert cluster.flavour == "kperflab-lab" and cluster.metrics_api == "v1"
    assert cluster.nodes == ["kperflab-lab"]
    assert cluster.capabilities == {"metrics_api": True, "node_stats": True, "create_namespaces": True,
                                    "create_pods": True, "limits_enforced": True}


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_top_pods_equals_kubectl_top(cluster, lab):
    with cluster.workspace("top") as ws:
        ws.run(workloads.cpu_burner("burn", cores=0.3, cpu_limit="500m"))
        ws.run(workloads.memory_allocator("mem", total=48 << 20, step=16 << 20, pause=0))
        deadline = time.time() + 40
        while time.time() < deadline and len(cluster.top_pods(ws.namespace)) < 2:
            time.sleep(0.5)
        for _ in range(5):  # the same moment: our reading must not change around kubectl's
            before = cluster.top_pods(ws.namespace)
            out = subprocess.run([KUBECTL, "top", "pod", "-n", ws.namespace, "--no-headers"], env=lab["env"],
                                 capture_output=True, text=True, timeout=30)
            after = cluster.top_pods(ws.namespace)
            if before[["name", "cpu_millicores", "memory_mib"]].equals(after[["name", "cpu_millicores", "memory_mib"]]):
                break
        assert out.returncode == 0, out.stderr
        ours = sorted(kperflab.metrics.kubectl_top_lines(after))
        theirs = sorted(" ".join(line.split()) for line in out.stdout.splitlines())
        assert ours == theirs
        row = after.set_index("name").loc["burn"]
        assert 200 <= row["cpu_millicores"] <= 400


def test_workspace_is_deleted_on_error(cluster, lab):
    uids = set()
    with pytest.raises(ExperimentFailed) as err:
        with cluster.workspace("error") as ws:
            ns = ws.namespace
            uids.add(ws.run(workloads.cpu_burner("burn", cores=0.1)).metadata.uid)
            assert pod_processes(lab, uids), "the burner's processes should be found while it runs"
            ws.run(workloads.pod("bad", "raise SystemExit(3)", {}, workload="bad"), until="Succeeded", timeout=20)
    assert "ended Failed" in str(err.value)
    assert gone(cluster, ns)
    assert pod_processes(lab, uids) == []


def test_interrupted_experiment_leaves_nothing(cluster, lab):
    ns = None
    uids = set()
    with pytest.raises(KeyboardInterrupt):
        with cluster.workspace("interrupt") as ws:
            ns = ws.namespace
            uids.add(ws.run(workloads.memory_allocator("mem", total=32 << 20, step=8 << 20, pause=0.1)).metadata.uid)
            uids.add(ws.run(workloads.cpu_burner("burn", cores=0.2)).metadata.uid)
            assert pod_processes(lab, uids)
            threading.Timer(1.0, _thread.interrupt_main).start()
            ws.wait_for("burn", lambda p: False, timeout=60, what="interrupted")  # Ctrl-C lands here
    assert ns and gone(cluster, ns)
    deadline = time.time() + 10
    while time.time() < deadline and pod_processes(lab, uids):
        time.sleep(0.2)
    assert pod_processes(lab, uids) == []


def test_sampler_turns_counters_into_rates(cluster):
    with cluster.workspace("sampler") as ws:
        ws.run(workloads.cpu_burner("burn", cores=1.0, cpu_limit="500m"))
        s = cluster.sampler(selector="app.kubernetes.io/name=cpu-burner", namespace=ws.namespace, interval=2.5)
        df = s.run(duration=16, progress=False)
        rated = df.dropna(subset=["cpu_cores"])
        assert len(rated) >= 1, df
        last = rated.iloc[-1]
        assert 0.4 <= last["cpu_cores"] <= 0.6 and last["throttled_ratio"] > 0.3, rated
        frames = cluster.summary_frames()
        assert "burn" in set(frames["pods"][frames["pods"].namespace == ws.namespace].pod)
        cad = cluster.cadvisor(families=["container_spec_cpu_quota"])
        assert 50000 in set(cad[cad.namespace == ws.namespace].value)


def test_clean_keeps_a_live_workspace_and_removes_it_once_its_kernel_is_gone(cluster, lab):
    import datetime as dt

    from kubernetes import client

    from kperflab.workspace import _OPEN, LEASE, PROCESS, _boot_id

    ws = cluster.workspace("left-behind").open()  # never closed
    out = kperflab_cli(lab["home"], "clean", "--kubeconfig", str(lab["kubeconfig"]))
    assert out.returncode == 0 and "Kept 1 live" in out.stdout and not gone(cluster, ws.namespace), out.stdout + out.stderr
    # as if this kernel died: no more heartbeats, its lease last renewed 5 minutes ago, and its pid is now another
    # process's (one that started at another time)
    _OPEN.discard(ws)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
    client.CoordinationV1Api(cluster.api).patch_namespaced_lease(LEASE, ws.namespace, {"spec": {"renewTime": past}})
    client.CoreV1Api(cluster.api).patch_namespace(ws.namespace, {"metadata": {"annotations": {PROCESS: f"{_boot_id()}/1"}}})
    out = kperflab_cli(lab["home"], "clean", "--kubeconfig", str(lab["kubeconfig"]))
    assert out.returncode == 0 and ws.namespace in out.stdout.split("Kept")[0], out.stdout + out.stderr
    deadline = time.time() + 30
    while time.time() < deadline and not gone(cluster, ws.namespace):
        time.sleep(0.2)
    assert gone(cluster, ws.namespace)
    ws.created = False


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_top_nodes_equals_kubectl_top_nodes(cluster, lab):
    cols = ["name", "cpu_millicores", "cpu_percent", "memory_mib", "memory_percent"]
    for _ in range(5):
        before = cluster.top_nodes()[cols]
        out = subprocess.run([KUBECTL, "top", "node", "--no-headers"], env=lab["env"], capture_output=True, text=True, timeout=30)
        after = cluster.top_nodes()[cols]
        if before.equals(after):
            break
    assert out.returncode == 0, out.stderr
    ours = [f"{r.name} {r.cpu_millicores}m {r.cpu_percent}% {r.memory_mib}Mi {r.memory_percent}%" for r in after.itertuples()]
    assert ours == [" ".join(line.split()) for line in out.stdout.splitlines()]
