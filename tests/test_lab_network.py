"""The lab's network as a Kubernetes user meets it: a Service reaches every endpoint through kube-proxy's rules in the
node's network namespace (in upstream's layout, in iptables and in nftables mode, switched by the kube-proxy
ConfigMap), names resolve through the cluster DNS with and without the search path, kube-proxy's own endpoints answer
through the node proxy, and the host's own firewall is never touched."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time

import pytest
from kubernetes import client

from .conftest import needs_root

pytestmark = [pytest.mark.lab, needs_root]


def _host_rules() -> tuple[str, str]:
    ipt = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    strip = "\n".join(line for line in ipt.splitlines() if not line.startswith("#"))  # its timestamps
    return strip, nft


@pytest.fixture(scope="module")
def net(lab):
    st = json.loads((lab["home"] / "lab" / "lab.json").read_text())
    if not st.get("registry"):
        pytest.skip(f"the session lab runs the process runtime (pods share the host's network): {st.get('runtime')}")
    before = _host_rules()
    yield {**lab, "netns": f"kperflab-{st['lab_id']}"}
    assert _host_rules() == before, "the host's own iptables/nftables rules changed"


def in_node(net, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", net["netns"], *argv], capture_output=True, text=True, timeout=60).stdout


def port_hash(svc_port_name: str, proto: str) -> str:
    """kube-proxy's portProtoHash, computed here independently: base32(sha256(name + proto))[:16]."""
    return base64.b32encode(hashlib.sha256((svc_port_name + proto).encode()).digest()).decode()[:16]


def nft_hash(name: str) -> str:
    return base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8]


def _pod(name, labels, cmd, image="busybox:1.37"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "enableServiceLinks": False,
                     "containers": [{"name": "main", "image": image, "command": cmd}]}}


def _wait(fn, timeout=60, what=""):
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _set_mode(k8s, mode: str) -> None:
    cm = k8s.read_namespaced_config_map("kube-proxy", "kube-system")
    conf = cm.data["config.conf"]
    lines = [line for line in conf.splitlines() if not line.startswith("mode:")] + [f'mode: "{mode}"']
    k8s.patch_namespaced_config_map("kube-proxy", "kube-system", {"data": {"config.conf": "\n".join(lines) + "\n"}})


def _proxy_mode(k8s) -> str:
    return k8s.connect_get_node_proxy_with_path("kperflab-lab:10249", "proxyMode", _preload_content=False).data.decode()


@pytest.fixture(scope="module")
def echo(net):
    from kubernetes import config

    k8s = client.CoreV1Api(config.new_client_from_config(str(net["kubeconfig"])))
    ns = "net-echo"
    k8s.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        for n in ("echo-a", "echo-b"):
            k8s.create_namespaced_pod(ns, _pod(n, {"app": "echo"}, ["sh", "-c",
                                      "while true; do echo from-$(hostname) | nc -l -p 8080; done"]))
        k8s.create_namespaced_pod(ns, _pod("client", {}, ["sleep", "600"], image="python:3.13-slim"))
        k8s.create_namespaced_service(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
                                           "spec": {"selector": {"app": "echo"},
                                                    "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        for n in ("echo-a", "echo-b", "client"):
            _wait(lambda n=n: k8s.read_namespaced_pod(n, ns).status.phase == "Running", what=f"{n} running")
        yield {"ns": ns, "ip": k8s.read_namespaced_service("echo", ns).spec.cluster_ip}
    finally:
        k8s.delete_namespace(ns)


def _exec(net, ns, pod, script: str) -> str:
    r = subprocess.run(["kubectl", "exec", "-n", ns, pod, "--", "python", "-c", script], env=net["env"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


HITS = """
import socket, sys, collections, time
seen = collections.Counter()
deadline = time.time() + 40
while time.time() < deadline and (len(seen) < 2 or sum(seen.values()) < 30):
    try:
        s = socket.create_connection((sys.argv[1], 80), timeout=2)
        seen[s.makefile().readline().strip()] += 1
        s.close()
    except OSError as e:
        seen["error:" + type(e).__name__] += 1
        time.sleep(0.2)
print(dict(seen))
"""


def _hits(net, echo, target: str) -> dict[str, int]:
    out = _exec(net, echo["ns"], "client", f"import sys; sys.argv = ['x', {target!r}]\n" + HITS)
    return eval(out)  # noqa: S307 - our own script's dict


def test_a_service_reaches_both_endpoints_and_names_resolve(net, k8s, echo):
    # the EndpointSlice lists both pods by their pod IPs
    slices = client.DiscoveryV1Api(k8s.api_client).list_namespaced_endpoint_slice(
        echo["ns"], label_selector="kubernetes.io/service-name=echo").items
    ips = sorted(a for s in slices for e in s.endpoints or [] for a in e.addresses)
    pods = sorted(k8s.read_namespaced_pod(n, echo["ns"]).status.pod_ip for n in ("echo-a", "echo-b"))
    assert ips == pods
    for target in (echo["ip"], "echo", f"echo.{echo['ns']}", f"echo.{echo['ns']}.svc.cluster.local."):
        seen = _wait(lambda t=target: (lambda s: s if {"from-echo-a", "from-echo-b"} <= set(s) else None)(_hits(net, echo, t)),
                     timeout=90, what=f"both endpoints through {target}")
        assert {"from-echo-a", "from-echo-b"} <= set(seen), (target, seen)
    resolved = _exec(net, echo["ns"], "client", "import socket; print(socket.gethostbyname('echo'), "
                     f"socket.gethostbyname('echo.{echo['ns']}.svc.cluster.local.'))").split()
    assert resolved == [echo["ip"], echo["ip"]]
    missing = _exec(net, echo["ns"], "client", "import socket\ntry:\n socket.gethostbyname('no-such-svc')\n"
                    "except socket.gaierror as e:\n print('gaierror', e.errno)")
    assert missing.startswith("gaierror"), missing


def test_kube_proxy_rules_are_in_upstream_layout_and_the_mode_switches(net, k8s, echo):
    name = f"{echo['ns']}/echo:http"
    svc_chain = f"KUBE-SVC-{port_hash(name, 'tcp')}"
    assert _wait(lambda: _proxy_mode(k8s) == "iptables", what="iptables mode")
    nat = _wait(lambda: (lambda t: t if svc_chain in t else None)(in_node(net, "iptables-save", "-t", "nat")),
                what=f"{svc_chain} in the node's nat table")
    pods = sorted(k8s.read_namespaced_pod(n, echo["ns"]).status.pod_ip for n in ("echo-a", "echo-b"))
    for ip in pods:
        sep = f"KUBE-SEP-{port_hash(name, 'tcp' + f'{ip}:8080')}"
        assert f"-A {sep} " in nat and f"--to-destination {ip}:8080" in nat, sep
    assert "KUBE-SERVICES" in nat and "KUBE-MARK-MASQ" in nat and "--probability 0.5" in nat
    assert not in_node(net, "nft", "list", "table", "ip", "kube-proxy")

    _set_mode(k8s, "nftables")
    try:
        _wait(lambda: _proxy_mode(k8s) == "nftables", what="nftables mode")
        base = f"{echo['ns']}/echo/tcp/http"
        chain = f"service-{nft_hash(base)}-{base}"
        table = _wait(lambda: (lambda t: t if chain in t else None)(in_node(net, "nft", "list", "table", "ip", "kube-proxy")),
                      what=f"{chain} in table ip kube-proxy")
        assert "numgen random mod 2" in table and "service-ips" in table
        assert "KUBE-SVC-" not in in_node(net, "iptables-save", "-t", "nat"), "the iptables mode's rules were left"
        seen = _wait(lambda: (lambda s: s if {"from-echo-a", "from-echo-b"} <= set(s) else None)(_hits(net, echo, "echo")),
                     timeout=90, what="both endpoints in nftables mode")
        assert {"from-echo-a", "from-echo-b"} <= set(seen)
    finally:
        _set_mode(k8s, "")
    _wait(lambda: _proxy_mode(k8s) == "iptables", what="back to iptables")
    _wait(lambda: not in_node(net, "nft", "list", "table", "ip", "kube-proxy"), what="the nftables table gone")
    _wait(lambda: svc_chain in in_node(net, "iptables-save", "-t", "nat"), what=f"{svc_chain} back")
    metrics = k8s.connect_get_node_proxy_with_path("kperflab-lab:10249", "metrics", _preload_content=False).data.decode()
    assert "kubeproxy_sync_proxy_rules_duration_seconds_bucket" in metrics


def test_ipvs_is_refused_with_a_reason(net, k8s):
    _set_mode(k8s, "ipvs")
    try:
        def warned():
            evs = k8s.list_namespaced_event("default").items + k8s.list_namespaced_event("kube-system").items
            return [e for e in evs if "ip_vs" in (e.message or "") or "IPVS" in (e.message or "")]
        assert _wait(warned, what="an event saying why IPVS cannot run")
        assert _proxy_mode(k8s) == "iptables"
    finally:
        _set_mode(k8s, "")


def test_pod_addresses_are_handed_out_round_robin(tmp_path):
    """A freed address is not the next one given (host-local's round robin): a peer may still cache its old MAC."""
    import secrets

    from kperflab.lab.network.podnet import PodNetwork

    lab_id = secrets.token_hex(8)
    pn = PodNetwork(lab_id, tmp_path, "10.250.0.0/16")
    pn.setup()
    try:
        ips = []
        for i in range(3):
            p = subprocess.Popen(["unshare", "--net", "sleep", "60"])
            try:
                from kperflab.lab.network.podnet import wait_for_own_netns

                wait_for_own_netns(p.pid)
                ips.append(pn.add(f"sb{i}", p.pid).ip)
            finally:
                p.kill()
                p.wait()
                pn.delete(f"sb{i}")
        assert ips == ["10.250.0.2", "10.250.0.3", "10.250.0.4"], ips
        assert not [f for f in (tmp_path / "ipam").iterdir() if f.name[0].isdigit()], "every address was released"
    finally:
        pn.teardown()
    assert f"kperflab-{lab_id}" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
