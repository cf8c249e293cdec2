"""A throwaway node for the lab's kube-proxy: network namespaces, a bridge, pods with TCP servers, a client.

Used by ``tests/test_kubeproxy.py`` and ``benchmarks/kube_proxy.py`` (root only)::

    <prefix>-node    bridge br0 10.244.0.1/16, ip_forward=1, bridge-nf-call-iptables=1 — kube-proxy's rules go here
    <prefix>-podN    eth0 10.244.0.(10+N)/16, default via 10.244.0.1; a TCP server on :8080 answering "podN\\n"
    <prefix>-client  eth0 10.244.0.254/16, default via 10.244.0.1; connections are made from here

Everything is named with the prefix and removed by `Testbed.close` (also when setup fails half way). The client's
connections are made on a thread that joined the client namespace (``setns``), so a connect() is timed without a
process start; servers run as separate processes (``ip netns exec … python``) so they do not share this GIL.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from .podnet import in_netns

SERVER = r"""
import socket, sys
name = sys.argv[1].encode() + b"\n"
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(4096)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(name)
    except OSError:
        pass
    c.close()
"""


def sh(*argv: str, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    r = subprocess.run(list(argv), capture_output=True, input=stdin)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.decode().strip()}")
    return r


class Testbed:
    """Build with `up`, always `close` (a context manager does both)."""

    BRIDGE_IP = "10.244.0.1"
    CLUSTER_CIDR = "10.244.0.0/16"
    CLIENT_IP = "10.244.0.254"
    SERVER_PORT = 8080

    def __init__(self, pods: int = 2, prefix: str | None = None) -> None:
        self.prefix = prefix or f"kptest-{secrets.token_hex(3)}"
        self.n_pods = pods
        self.node = f"{self.prefix}-node"
        self.client = f"{self.prefix}-client"
        self.pods = [f"{self.prefix}-pod{i}" for i in range(pods)]
        self.servers: list[subprocess.Popen[bytes]] = []

    @property
    def node_path(self) -> str:
        return f"/run/netns/{self.node}"

    def pod_ip(self, i: int) -> str:
        return f"10.244.0.{10 + i}"

    def __enter__(self) -> Testbed:
        try:
            self.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def up(self) -> None:
        sh("ip", "netns", "add", self.node)
        n = ["ip", "-n", self.node]
        sh(*n, "link", "set", "lo", "up")
        sh(*n, "link", "add", "br0", "type", "bridge")
        sh(*n, "addr", "add", f"{self.BRIDGE_IP}/16", "dev", "br0")
        sh(*n, "link", "set", "br0", "up")
        sh("ip", "netns", "exec", self.node, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        # bridged replies must pass the IPv4 hooks to be un-DNATed (see kubeproxy's module docstring)
        sh("ip", "netns", "exec", self.node, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")
        for i, pod in enumerate(self.pods):
            self._attach(pod, f"v{i}", self.pod_ip(i))
        self._attach(self.client, "vc", self.CLIENT_IP)
        for i in range(len(self.pods)):
            self.start_server(i)

    def _attach(self, ns: str, veth: str, ip: str) -> None:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", self.node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", self.node, "link", "set", veth, "master", "br0", "up")
        p = ["ip", "-n", ns]
        sh(*p, "link", "set", "lo", "up")
        sh(*p, "addr", "add", f"{ip}/16", "dev", "eth0")
        sh(*p, "link", "set", "eth0", "up")
        sh(*p, "route", "add", "default", "via", self.BRIDGE_IP)

    def start_server(self, i: int, port: int | None = None) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", self.pods[i], sys.executable, "-c", SERVER, f"pod{i}",
                                 str(port or self.SERVER_PORT)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.servers.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"server in {self.pods[i]} did not start")

    def close(self) -> None:
        for p in self.servers:
            p.kill()
            p.wait()
        self.servers.clear()
        for ns in (*self.pods, self.client, self.node):
            if Path(f"/run/netns/{ns}").exists():
                sh("ip", "netns", "delete", ns, check=False)

    # -- from the client ---------------------------------------------------------------------------------------
    def ask(self, ip: str, port: int, n: int, timeout: float = 2.0) -> list[str]:
        """``n`` new connections from the client to ip:port; what each answered ("" for a failure)."""
        def work() -> list[str]:
            out = []
            for _ in range(n):
                s = socket.socket()
                s.settimeout(timeout)
                try:
                    s.connect((ip, port))
                    out.append(s.recv(64).decode().strip())
                except OSError:
                    out.append("")
                finally:
                    s.close()
            return out
        return in_netns(f"/run/netns/{self.client}", work)

    def connect_times(self, targets: list[tuple[str, int]], samples: int, warmup: int = 20,
                      timeout: float = 2.0, realtime: bool = False) -> list[list[float]]:
        """Seconds per connect() (SYN → SYN-ACK) to each target, new connection each time, targets interleaved so
        that drift hits them alike. Each connection is closed with RST (SO_LINGER 0): no TIME_WAIT pile-up.
        ``realtime``: the measuring thread runs SCHED_FIFO, so other processes on a shared machine do not preempt it
        in the middle of a connect() (the packet's rule walk runs in its softirq, on its CPU)."""
        linger = struct.pack("ii", 1, 0)

        def work() -> list[list[float]]:
            if realtime:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))  # this thread only
            res: list[list[float]] = [[] for _ in targets]
            for k in range(warmup + samples):
                for j, (ip, port) in enumerate(targets):
                    s = socket.socket()
                    s.settimeout(timeout)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    t0 = time.perf_counter()
                    s.connect((ip, port))
                    dt = time.perf_counter() - t0
                    s.close()
                    if k >= warmup:
                        res[j].append(dt)
            return res
        return in_netns(f"/run/netns/{self.client}", work)


def leftovers(prefix: str = "kptest-") -> list[str]:
    """Network namespaces with the prefix that still exist (a check for tests)."""
    out = sh("ip", "netns", "list").stdout.decode()
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]
