"""The lab keeps its state: `lab down`/`lab up` and a SIGKILL lose no object (same uids, resourceVersions go on, a watch
from before the restart is 410 Gone), the pods run again as after a node reboot, `lab down --purge` wipes everything;
and the state is private: no other user, and no pod, can read the lab's token, keys or store.

One lab home for the module (OCI runtime where it can run, like the session lab), brought down in a finally."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import kperflab

pytestmark = pytest.mark.lab

NS = "persist"
SLEEP = ["sh", "-c", "sleep 3600"]


def _up(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out = kperflab(home, "lab", "up", "--metric-resolution", "5s", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def _clients(home: Path) -> tuple[Any, Any, Any]:
    from kubernetes import client, config

    api = config.new_client_from_config(str(home / "kubeconfig.yaml"))
    return api, client.CoreV1Api(api), client.AppsV1Api(api)


def _lab_pid(home: Path) -> int:
    return int(json.loads((home / "lab" / "lab.json").read_text())["pid"])


def _wait(pred: Any, timeout: float = 60, every: float = 0.25, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        time.sleep(every)


def _running_pods(v1: Any, n: int) -> Any:
    def ok() -> Any:
        pods = v1.list_namespaced_pod(NS).items
        run = [p for p in pods if p.status.phase == "Running" and all(c.ready for c in p.status.container_statuses or [])]
        return pods if len(pods) == n and len(run) == n else None
    return _wait(ok, 60, what=f"{n} running pods in {NS}")


def _watch_status(home: Path, path: str, rv: str) -> int:
    """What a watch from ``rv`` answers: the HTTP code, or the code of its first ERROR event (200 if none)."""
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(home / "lab" / "tls" / "ca.crt"))
    port = json.loads((home / "lab" / "lab.json").read_text())["port"]
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}?watch=1&resourceVersion={rv}&timeoutSeconds=1",
                                 headers={"Authorization": f"Bearer {(home / 'lab' / 'token').read_text().strip()}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            body = r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code
    for line in body.splitlines():
        ev = json.loads(line)
        if ev.get("type") == "ERROR":
            return int(ev["object"].get("code") or 0)
    return 200


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The module's lab (OCI where it can run) and, as root, a process-runtime lab started beside it (in parallel:
    both mostly wait)."""
    from .conftest import lab_env

    home = tmp_path_factory.mktemp("kperflab-persist")
    (home / "lab").mkdir()
    tokens = home / "lab" / "tokens.csv"  # written by hand, readable by all: `lab up` makes it 0600
    tokens.write_text(f"{uuid.uuid4().hex},workshop-admin,42,\"system:masters\"\n")
    tokens.chmod(0o644)
    proc_home = tmp_path_factory.mktemp("kperflab-persist-proc")
    proc = subprocess.Popen([sys.executable, "-m", "kperflab.cli", "lab", "up", "--runtime", "process"],
                            env=lab_env(proc_home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) \
        if os.geteuid() == 0 else None
    try:
        _up(home)
        yield {"home": home, "proc_home": proc_home, "proc": proc}
    finally:
        if proc is not None:
            proc.wait(120)
            kperflab(proc_home, "lab", "down", "--purge")
        out = kperflab(home, "lab", "down", "--purge")
        assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def home(homes: dict[str, Any]) -> Path:
    return homes["home"]


def test_objects_pods_and_versions_survive_down_and_up(home: Path) -> None:
    from kubernetes import client

    api, v1, apps = _clients(home)
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    cm = v1.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"a": "1"}))
    labels = {"app": "sleeper"}
    container = client.V1Container(name="c", image="busybox:1.37", command=SLEEP)
    dep = apps.create_namespaced_deployment(NS, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="sleeper"),
        spec=client.V1DeploymentSpec(replicas=2, selector=client.V1LabelSelector(match_labels=labels),
                                     template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels),
                                                                       spec=client.V1PodSpec(containers=[container],
                                                                                             termination_grace_period_seconds=1)))))
    v1.create_namespaced_pod(NS, client.V1Pod(metadata=client.V1ObjectMeta(name="bare"), spec=client.V1PodSpec(
        containers=[container], termination_grace_period_seconds=1)))
    before = {p.metadata.name: p for p in _running_pods(v1, 3)}
    ns_uid = v1.read_namespace(NS).metadata.uid
    last_rv = int(v1.list_namespaced_config_map(NS).metadata.resource_version)

    down = kperflab(home, "lab", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "state is kept" in down.stdout and f"{home / 'lab' / 'store'}" in down.stdout and "lab reset" in down.stdout, down.stdout
    st = kperflab(home, "lab", "status")
    assert "state: " in st.stdout and "namespaces" in st.stdout and "kept since" in st.stdout, st.stdout
    up = _up(home)
    assert "Restored the kept state" in up.stdout, up.stdout

    api, v1, apps = _clients(home)  # the same kubeconfig, CA and token work again
    assert v1.read_namespace(NS).metadata.uid == ns_uid
    again = v1.read_namespaced_config_map("cfg", NS)
    assert (again.metadata.uid, again.metadata.resource_version, again.data) == (
        cm.metadata.uid, cm.metadata.resource_version, {"a": "1"})
    assert apps.read_namespaced_deployment("sleeper", NS).metadata.uid == dep.metadata.uid
    svc = {s.metadata.name: s for s in v1.list_service_for_all_namespaces().items}
    assert len([s for s in svc.values() if s.metadata.name == "kubernetes"]) == 1  # bootstrap made nothing twice
    # resourceVersions go on; a watch from before the restart is 410 Gone, a relist and a watch from it work
    again.data = {"a": "2"}
    assert int(v1.replace_namespaced_config_map("cfg", NS, again).metadata.resource_version) > last_rv
    path = f"/api/v1/namespaces/{NS}/configmaps"
    assert _watch_status(home, path, cm.metadata.resource_version) == 410  # from before the last write of the last run
    relist = v1.list_namespaced_config_map(NS)
    assert "cfg" in [c.metadata.name for c in relist.items]
    assert _watch_status(home, path, relist.metadata.resource_version) == 200
    # the pods run again, as after a node reboot: same pods, a new sandbox, restartCount + 1, lastState Unknown/255
    after = {p.metadata.name: p for p in _running_pods(v1, 3)}
    assert {n: p.metadata.uid for n, p in after.items()} == {n: p.metadata.uid for n, p in before.items()}
    for name, pod in after.items():
        cs, old = pod.status.container_statuses[0], before[name].status.container_statuses[0]
        assert cs.restart_count == old.restart_count + 1, (name, cs)
        assert cs.last_state.terminated is not None and cs.last_state.terminated.reason == "Unknown", (name, cs)
        assert cs.last_state.terminated.exit_code == 255
    reasons = {(e.involved_object.name, e.reason) for e in v1.list_namespaced_event(NS).items}
    assert {(n, "SandboxChanged") for n in after} <= reasons, reasons


def test_a_create_acknowledged_right_before_a_sigkill_is_kept(home: Path) -> None:
    from kubernetes import client

    _, v1, _ = _clients(home)
    made = v1.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="last-words"),
                                                                  data={"k": "v"}))
    pid = _lab_pid(home)
    os.kill(pid, signal.SIGKILL)  # no shutdown of any kind: what the database had when the create returned
    _wait(lambda: not Path(f"/proc/{pid}").exists(), 10, what="the lab's process to die")
    _up(home)
    _, v1, _ = _clients(home)
    kept = v1.read_namespaced_config_map("last-words", NS)
    assert (kept.metadata.uid, kept.metadata.resource_version, kept.data) == (made.metadata.uid,
                                                                             made.metadata.resource_version, {"k": "v"})
    _running_pods(v1, 3)


SECRETS = ("lab/token", "lab/tls/ca.key", "lab/tls/server.key", "lab/sa-signing.key", "lab/tokens.csv",
           "lab/store/state.db", "lab/store/state.db-wal", "kubeconfig.yaml", "users/alice.kubeconfig")


def test_the_state_is_unreadable_by_other_users_and_pods(home: Path) -> None:
    add = kperflab(home, "lab", "user", "add", "alice", "--namespace", NS)
    assert add.returncode == 0, add.stdout + add.stderr
    for d in (home, home / "lab", home / "lab" / "tls", home / "lab" / "store", home / "users"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for rel in SECRETS:
        f = home / rel
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, (rel, oct(f.stat().st_mode))
    if os.geteuid() != 0:
        pytest.skip("reading as user nobody needs root")
    for rel in (*SECRETS, "lab"):
        out = subprocess.run(["runuser", "-u", "nobody", "--", "cat" if rel != "lab" else "ls", str(home / rel)],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode != 0 and "Permission denied" in out.stderr, (rel, out.stdout, out.stderr)
    # a pod: its own root filesystem (OCI), and even the path of the token leads nowhere
    log = _snoop(_clients(home)[1], home, NS)
    assert "DENIED" in log and "READ\n" not in log, log


def _snoop(v1: Any, home: Path, ns: str) -> str:
    """The log of a pod that tries to read the lab's token and store."""
    from kubernetes import client

    token = home / "lab" / "token"
    v1.create_namespaced_pod(ns, client.V1Pod(metadata=client.V1ObjectMeta(name="snoop"), spec=client.V1PodSpec(
        restart_policy="Never", containers=[client.V1Container(name="c", image="busybox:1.37", command=[
            "sh", "-c", f"id -u; cat {token} {home}/lab/store/state.db && echo READ || echo DENIED"])])))
    _wait(lambda: v1.read_namespaced_pod("snoop", ns).status.phase in ("Succeeded", "Failed"), 60, what="pod snoop")
    log = v1.read_namespaced_pod_log("snoop", ns)
    assert token.read_text().strip() not in log, log
    return log


@pytest.mark.skipif(os.geteuid() != 0, reason="without root the process runtime runs pods as the lab's own user")
def test_a_process_runtime_pod_cannot_read_the_state(homes: dict[str, Any]) -> None:
    """The process runtime's pods see the node's filesystem, as an unprivileged uid (nobody): the 0700 state dir and
    0600 files keep them out."""
    home, proc = homes["proc_home"], homes["proc"]
    assert proc.wait(120) == 0, proc.stdout.read() if proc.stdout else ""
    _, v1, _ = _clients(home)
    log = _snoop(v1, home, "default")
    assert "65534" in log.splitlines() and "Permission denied" in log and "DENIED" in log, log  # stderr and stdout interleave


def test_reset_wipes_the_state(home: Path) -> None:
    old_token = (home / "lab" / "token").read_text()
    out = kperflab(home, "lab", "down", "--purge")
    assert out.returncode == 0 and "Wiped its state" in out.stdout, out.stdout + out.stderr
    assert not (home / "lab" / "store").exists() and not (home / "users" / "alice.kubeconfig").exists()
    st = kperflab(home, "lab", "status")
    assert "state:" not in st.stdout, st.stdout
    up = _up(home)
    assert "Restored" not in up.stdout
    _, v1, _ = _clients(home)
    assert NS not in [n.metadata.name for n in v1.list_namespace().items]
    assert (home / "lab" / "token").read_text() != old_token
