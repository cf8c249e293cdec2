"""The lab's real containers, as a Kubernetes user meets them: images pulled from the lab's registry (digests checked,
pull policies honoured, the kubelet's events), crun running them in namespaces of their own, and kubectl's and the
official client's exec, attach, cp and port-forward."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.stream import portforward, stream

from .conftest import kperflab, needs_root, wait_pod

KUBECTL = shutil.which("kubectl")
pytestmark = [pytest.mark.lab, needs_root]


@pytest.fixture(scope="module")
def oci(lab):
    st = json.loads((lab["home"] / "lab" / "lab.json").read_text())
    if not st.get("registry"):
        pytest.skip(f"the session lab runs the process runtime: {st.get('runtime')}")
    return {**lab, "registry": st["registry"], "run_dir": lab["home"] / "lab" / "run" / st["lab_id"]}


def kc(lab, *args, input=None, check=True, timeout=60, env=None):
    r = subprocess.run([KUBECTL, *args], env={**lab["env"], **(env or {})}, capture_output=True, timeout=timeout,
                       input=input)
    assert not check or r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr.decode(errors='replace')}"
    return r


def busybox(name, cmd, image="busybox:1.37", policy=None, **extra):
    c = {"name": "main", "image": image, "command": ["sh", "-c", cmd], **extra}
    if policy:
        c["imagePullPolicy"] = policy
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [c]}}


def wait(k8s, ns, name, pred, timeout=60):
    return wait_pod(k8s, ns, name, pred, timeout, every=0.2)


def running(p):
    return p.status.phase == "Running"


def waiting_reason(p):
    cs = p.status.container_statuses or []
    return cs[0].state.waiting.reason if cs and cs[0].state.waiting else None


def events(k8s, ns, name):
    return [(e.reason, e.message) for e in k8s.list_namespaced_event(ns).items if e.involved_object.name == name]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_a_container_is_its_own_world(oci, k8s, namespace, tmp_path):
    k8s.create_namespaced_pod(namespace, busybox("box", "echo started; sleep 600; echo done"))
    wait(k8s, namespace, "box", running)
    out = kc(oci, "exec", "box", "-n", namespace, "--", "sh", "-c",
             "tr '\\0' ' ' < /proc/1/cmdline; echo; id -u; hostname; echo mine > /tmp/mine; echo err >&2; exit 3",
             check=False)
    assert out.returncode == 3 and b"command terminated with exit code 3" in out.stderr
    lines = out.stdout.decode().split("\n")
    assert lines[0].strip() == "sh -c echo started; sleep 600; echo done", "PID 1 is the container's command"
    assert lines[1:3] == ["65534", "box"] and out.stderr.startswith(b"err")
    assert not Path("/tmp/mine").exists(), "the container's /tmp is its own"
    uppers = list((oci["run_dir"] / "bundles").glob("*/upper/tmp/mine"))
    assert len(uppers) == 1 and uppers[0].read_text() == "mine\n", "it lands in the container's writable layer"
    blob = os.urandom(3 << 20)
    out = kc(oci, "exec", "-i", "box", "-n", namespace, "--", "sh", "-c", "cat > /tmp/blob; sha256sum /tmp/blob",
             input=blob)
    assert out.stdout.decode().split()[0] == hashlib.sha256(blob).hexdigest()
    (tmp_path / "up").write_bytes(blob)
    kc(oci, "cp", str(tmp_path / "up"), f"{namespace}/box:/tmp/copied")
    kc(oci, "cp", f"{namespace}/box:/tmp/copied", str(tmp_path / "down"))
    assert (tmp_path / "down").read_bytes() == blob
    out = kc(oci, "run", "talker", "-n", namespace, "--image=busybox:1.37", "-i", "--rm", "--restart=Never", "--",
             "sh", "-c", "read x; echo got:$x", input=b"hello-attach\n", timeout=90)
    assert b"got:hello-attach" in out.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
@pytest.mark.parametrize("websockets", ["true", "false"], ids=["websocket-tunnel", "spdy"])
def test_kubectl_port_forward(oci, k8s, namespace, websockets):
    code = "import http.server as h; h.ThreadingHTTPServer(('127.0.0.1', 8080), h.SimpleHTTPRequestHandler).serve_forever()"
    k8s.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {
        "terminationGracePeriodSeconds": 1, "containers": [{"name": "web", "image": "python:3.13-slim", "workingDir": "/etc",
                                                            "command": ["python", "-c", code]}]}})
    wait(k8s, namespace, "web", running, timeout=120)
    port = _free_port()
    pf = subprocess.Popen([KUBECTL, "port-forward", "-n", namespace, "pod/web", f"{port}:8080"],
                          env={**oci["env"], "KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=5).read()
                break
            except OSError:
                if time.time() > deadline or pf.poll() is not None:
                    raise
                time.sleep(0.3)
        assert body == b"web\n", "served from the pod's own /etc (its hostname file)"
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/hosts", timeout=5).status == 200
    finally:
        pf.terminate()
        pf.wait(10)


def test_official_client_stream_and_portforward(oci, namespace):
    api = client.CoreV1Api(config.new_client_from_config(str(oci["kubeconfig"])))
    api.create_namespaced_pod(namespace, busybox("nc", "while true; do echo pong | nc -l -p 7000; done"))
    wait(api, namespace, "nc", running)
    ws = stream(api.connect_get_namespaced_pod_exec, "nc", namespace, command=["sh", "-c", "read x; echo in:$x; exit 4"],
                stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    ws.write_stdin("hi\n")
    ws.run_forever(timeout=20)
    assert ws.read_stdout().strip() == "in:hi" and ws.returncode == 4
    pf = portforward(api.connect_get_namespaced_pod_portforward, "nc", namespace, ports="7000")
    s = pf.socket(7000)
    s.setblocking(True)
    s.settimeout(10)
    s.sendall(b"ping\n")
    assert s.recv(100) == b"pong\n"
    s.close()


def test_pull_policies_and_events(oci, k8s, namespace):
    k8s.create_namespaced_pod(namespace, busybox("first", "sleep 600", policy="IfNotPresent"))
    wait(k8s, namespace, "first", running)
    k8s.create_namespaced_pod(namespace, busybox("second", "sleep 600", policy="IfNotPresent"))
    wait(k8s, namespace, "second", running)
    second = events(k8s, namespace, "second")
    assert ("Pulled", 'Container image "busybox:1.37" already present on machine') in second, second
    assert not [e for e in second if e[0] == "Pulling"], "IfNotPresent does not pull what is there"
    k8s.create_namespaced_pod(namespace, busybox("always", "sleep 600", image="busybox:latest"))  # :latest → Always
    p = wait(k8s, namespace, "always", running)
    assert p.spec.containers[0].image_pull_policy == "Always"
    pulled = [m for r, m in events(k8s, namespace, "always") if r == "Pulled"]
    assert pulled and pulled[0].startswith('Successfully pulled image "busybox:latest" in ') and "Image size: " in pulled[0]
    k8s.create_namespaced_pod(namespace, busybox("never", "true", image="python:3.14-slim", policy="Never"))
    p = wait(k8s, namespace, "never", lambda p: waiting_reason(p) == "ErrImageNeverPull")
    assert 'is not present with pull policy of Never' in p.status.container_statuses[0].state.waiting.message
    k8s.create_namespaced_pod(namespace, busybox("missing", "true", image="nginx:1.27"))
    wait(k8s, namespace, "missing", lambda p: waiting_reason(p) in ("ErrImagePull", "ImagePullBackOff"))
    failed = [m for r, m in events(k8s, namespace, "missing") if r == "Failed"]
    assert any("not found" in m and "kperflab lab images" in m for m in failed), failed
    deadline = time.time() + 25  # the node's status is written every 10 s, as the kubelet's nodeStatusUpdateFrequency
    while True:
        names = [n for img in k8s.read_node("kperflab-lab").status.images or [] for n in img.names]
        if any(n.startswith("docker.io/library/busybox@sha256:") for n in names) or time.time() > deadline:
            break
        time.sleep(1)
    assert any(n.startswith("docker.io/library/busybox@sha256:") for n in names), names


def test_a_corrupt_layer_fails_cleanly(oci, k8s, namespace):
    """A blob whose bytes do not match its digest ends in ErrImagePull naming the layer; nothing of it is stored."""
    added = kperflab(oci["home"], "lab", "images", "--add", "corrupt:test", "--size", "2MB", "--layers", "2")
    assert added.returncode == 0, added.stderr
    blobs = oci["run_dir"] / "registry"
    manifest_digest = added.stdout.split("pushed in")[1].split(": ")[1].split()[0]
    manifest = json.loads(next(blobs.rglob(f"{manifest_digest.split(':')[1]}/data")).read_bytes())
    layer = manifest["layers"][-1]["digest"]
    data = next(blobs.rglob(f"blobs/sha256/{layer.split(':')[1][:2]}/{layer.split(':')[1]}/data"))
    assert data.stat().st_nlink == 1, "a pushed layer, not one hard-linked from the shared image cache"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    k8s.create_namespaced_pod(namespace, busybox("bad", "true", image="corrupt:test"))
    wait(k8s, namespace, "bad", lambda p: waiting_reason(p) in ("ErrImagePull", "ImagePullBackOff"))
    failed = [m for r, m in events(k8s, namespace, "bad") if r == "Failed" and "corrupt:test" in m]
    assert any(layer in m for m in failed), failed
    store = oci["run_dir"] / "images"
    assert not [p for p in store.rglob("*") if layer.split(":")[1] in p.name], "a corrupt layer was kept"


def test_root_writes_stay_in_the_writable_layer_and_rootfs_is_reported(oci, k8s, namespace):
    """As root a container writes at `/`: the file is in its writable layer, not on the host, and the Summary API's
    rootfs usage counts it; with readOnlyRootFilesystem the same write fails."""
    k8s.create_namespaced_pod(namespace, busybox("rooty", "head -c 5000000 /dev/urandom > /written-at-root; sleep 600",
                                                 securityContext={"runAsUser": 0}))
    k8s.create_namespaced_pod(namespace, busybox("ro", "touch /nope && echo wrote || echo refused; sleep 600",
                                                 securityContext={"readOnlyRootFilesystem": True, "runAsUser": 0}))
    wait(k8s, namespace, "rooty", running)
    wait(k8s, namespace, "ro", running)
    assert not Path("/written-at-root").exists()
    deadline = time.time() + 30
    while True:
        summary = json.loads(k8s.connect_get_node_proxy_with_path("kperflab-lab", "stats/summary",
                                                                  _preload_content=False).data)
        pod = next((p for p in summary["pods"] if p["podRef"]["name"] == "rooty" and p["podRef"]["namespace"] == namespace), None)
        used = pod["containers"][0].get("rootfs", {}).get("usedBytes", 0) if pod else 0
        if used >= 5_000_000 or time.time() > deadline:
            break
        time.sleep(1)
    assert used >= 5_000_000, pod
    assert pod["ephemeral-storage"]["usedBytes"] >= used
    deadline = time.time() + 10
    while "refused" not in k8s.read_namespaced_pod_log("ro", namespace) and time.time() < deadline:
        time.sleep(0.2)
    log = k8s.read_namespaced_pod_log("ro", namespace).splitlines()  # stdout and stderr: either may come first
    assert "refused" in log and "wrote" not in log and any("Read-only file system" in line for line in log), log


def test_a_command_not_in_the_image_is_a_start_error(oci, k8s, namespace):
    """As on containerd: the container is created, cannot start, and has exited — terminated, StartError, 128 — so
    restartPolicy Never fails the pod and Always backs off with the StartError as its last state."""
    never = busybox("nostart", "true")
    never["spec"]["restartPolicy"] = "Never"
    never["spec"]["containers"][0]["command"] = ["no-such-command"]
    k8s.create_namespaced_pod(namespace, never)
    p = wait(k8s, namespace, "nostart", lambda p: p.status.phase in ("Failed", "Succeeded"))
    assert p.status.phase == "Failed"
    term = p.status.container_statuses[0].state.terminated
    assert (term.reason, term.exit_code) == ("StartError", 128) and "no-such-command" in term.message, term
    assert p.status.container_statuses[0].image == "docker.io/library/busybox:1.37"
    assert p.status.container_statuses[0].image_id.startswith("docker.io/library/busybox@sha256:")
    failed = [m for r, m in events(k8s, namespace, "nostart") if r == "Failed"]
    assert failed and failed[0].startswith("Error: failed to create containerd task: "), failed
    always = busybox("nostart-always", "true")
    always["spec"]["containers"][0]["command"] = ["no-such-command"]
    k8s.create_namespaced_pod(namespace, always)
    p = wait(k8s, namespace, "nostart-always", lambda p: waiting_reason(p) == "CrashLoopBackOff")
    assert p.status.phase == "Running"  # as the kubelet's getPhase says for Always with a stopped container
    assert p.status.container_statuses[0].last_state.terminated.reason == "StartError"


def test_pods_have_their_own_addresses_and_talk_over_the_bridge(oci, k8s, namespace):
    """Each pod gets eth0 with an address from the node's pod CIDR; one pod reaches another's address; the bytes show
    in the Summary API and /metrics/cadvisor; the node's namespace is the lab's, named, and the host's own network
    namespace gains no link."""
    import ipaddress

    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.count("\n")
    k8s.create_namespaced_pod(namespace, busybox("server", "while true; do echo hi-from-$(hostname) | nc -l -p 8080; done"))
    k8s.create_namespaced_pod(namespace, busybox("client", "sleep 600"))
    server = wait(k8s, namespace, "server", running)
    wait(k8s, namespace, "client", running)
    node = k8s.read_node("kperflab-lab")
    cidr = ipaddress.ip_network(node.spec.pod_cidr)
    assert ipaddress.ip_address(server.status.pod_ip) in cidr and server.status.pod_ip != server.status.host_ip
    out = kc(oci, "exec", "client", "-n", namespace, "--", "sh", "-c",
             f"ip -o -4 addr show eth0; for i in 1 2 3 4 5; do nc -w 2 {server.status.pod_ip} 8080 </dev/null && break; "
             "sleep 0.3; done").stdout.decode()
    assert "hi-from-server" in out and "eth0" in out, out
    assert f"kperflab-{oci['lab_id']}" in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.count("\n") == host_links
    deadline = time.time() + 30
    while True:
        summary = json.loads(k8s.connect_get_node_proxy_with_path("kperflab-lab", "stats/summary",
                                                                  _preload_content=False).data)
        pod = next((p for p in summary["pods"] if p["podRef"]["name"] == "server" and p["podRef"]["namespace"] == namespace), {})
        if pod.get("network", {}).get("txBytes", 0) > 0 or time.time() > deadline:
            break
        time.sleep(1)
    assert pod["network"]["name"] == "eth0" and pod["network"]["txBytes"] > 0 and pod["network"]["rxBytes"] > 0, pod
    text = k8s.connect_get_node_proxy_with_path("kperflab-lab", "metrics/cadvisor", _preload_content=False).data.decode()
    from prometheus_client.parser import text_string_to_metric_families

    tx = [s for f in text_string_to_metric_families(text) if f.name == "container_network_transmit_bytes"
          for s in f.samples if s.labels.get("pod") == "server" and s.labels.get("namespace") == namespace]
    assert tx and tx[0].labels["interface"] == "eth0" and tx[0].value > 0, tx
