"""The lab's pod network, as a CNI bridge plugin with host-local IPAM would make it on a node.

Layout (one lab, id ``<id>``)::

    host network namespace      (untouched: no link, route or rule is added there)
    node netns "kperflab-<id>"  (`ip netns list` shows it; /run/netns/kperflab-<id>)
        lo, bridge kpbr-<id8> with the gateway 10.244.0.1/16, ip_forward=1, bridge-nf-call-iptables=1
        kp<id4><ip8> ... one veth per pod sandbox, a port of the bridge (hairpin on)
    pod netns (the sandbox's, made by `unshare --net`)
        lo, eth0 (the veth's peer) 10.244.0.N/16, default route via 10.244.0.1

The node namespace is where the lab's kube-proxy writes its rules and where the cluster DNS and the API server's
in-cluster listener bind (``socket_in``), so a learner sees them with ``ip netns exec kperflab-<id> iptables-save``
or ``nft list ruleset``. ``bridge-nf-call-iptables`` makes bridged replies pass the node's netfilter hooks, so a
Service's DNAT is undone for a reply from a pod on the same bridge (the reason kubeadm asks for ``br_netfilter``);
hairpin mode lets a pod reach itself through its Service (the kubelet's ``hairpin-veth`` mode).

The host does not reach pod IPs: the notebooks go through the API server (port-forward and proxies dial into the
namespaces), so the host needs no route. Two labs have separate node namespaces and separate pod CIDRs.

IPAM is the reference ``host-local`` plugin's scheme: a file per allocated address, named by the address and holding
the sandbox id, under the lab's run dir, so a crash leaves nothing in the kernel that the run dir does not explain,
and removing the node namespace removes every bridge port with it.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("kperflab.lab.network")

NETNS_DIR = Path("/run/netns")
NETNS_PREFIX = "kperflab-"
CLONE_NEWNET = 0x40000000
LAST_RESERVED = "last_reserved_ip.0"  # host-local IPAM's name for it
T = TypeVar("T")


def netns_name(lab_id: str) -> str:
    return f"{NETNS_PREFIX}{lab_id}"


def lab_netns() -> dict[str, Path]:
    """lab id → its named node network namespace, for every ``kperflab-<id>`` under /run/netns."""
    try:
        return {p.name[len(NETNS_PREFIX):]: p for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX)}
    except OSError:
        return {}


def delete_netns(lab_id: str) -> bool:
    """Remove a lab's node namespace (its bridge, veths and rules go with it once no process is inside)."""
    path = NETNS_DIR / netns_name(lab_id)
    if not path.exists():
        return False
    r = subprocess.run(["ip", "netns", "delete", netns_name(lab_id)], capture_output=True)
    if r.returncode != 0 and path.exists():  # e.g. the mount is gone but the file stayed
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        path.unlink(missing_ok=True)
    return True


def in_netns(path: str | Path, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a thread that has joined the network namespace at ``path``: sockets it makes belong there and
    stay there. The calling thread's namespace is never changed."""
    out: dict[str, object] = {}

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(str(path), os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path}): {os.strerror(err)}")
            finally:
                os.close(fd)
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out["error"] = exc

    t = threading.Thread(target=run, name="in-netns", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]  # type: ignore[return-value]


def socket_in(path: str | Path, kind: int, addr: tuple[str, int], *, listen: int = 0) -> socket.socket:
    """A socket bound to ``addr`` inside the namespace at ``path`` (TCP listening when ``listen``)."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        if listen:
            s.listen(listen)
        return s
    return in_netns(path, make)


@dataclass(frozen=True)
class Attachment:
    """What ADD gave a sandbox (the CNI result, reduced)."""

    ip: str
    prefix: int
    gateway: str
    host_veth: str


class PodNetwork:
    """The node namespace and its bridge; ADD/DEL per pod sandbox."""

    def __init__(self, lab_id: str, run_dir: Path, pod_cidr: str = "10.244.0.0/16") -> None:
        self.lab_id = lab_id
        self.netns = netns_name(lab_id)
        self.netns_path = str(NETNS_DIR / self.netns)
        self.bridge = f"kpbr-{lab_id[:8]}"
        self.cidr = ipaddress.ip_network(pod_cidr)
        self.gateway = str(self.cidr.network_address + 1)
        self.ipam = run_dir / "ipam"
        self._lock = threading.Lock()

    # -- the node ---------------------------------------------------------------------------------
    def setup(self) -> None:
        """Make the node namespace and its bridge (idempotent: a namespace left by this lab id is made again)."""
        delete_netns(self.lab_id)
        _run(["ip", "netns", "add", self.netns])
        script = "\n".join([
            "link set lo up",
            f"link add {self.bridge} type bridge",
            f"addr add {self.gateway}/{self.cidr.prefixlen} dev {self.bridge}",
            f"link set {self.bridge} up",
        ])
        try:
            _run(["ip", "-n", self.netns, "-batch", "-"], input=script)
            _run(["ip", "netns", "exec", self.netns, "sh", "-c",
                  "echo 1 > /proc/sys/net/ipv4/ip_forward; "
                  "if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then "
                  "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables; fi; "
                  "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet"])
        except Exception:
            delete_netns(self.lab_id)
            raise
        self.ipam.mkdir(parents=True, exist_ok=True)

    def teardown(self) -> None:
        delete_netns(self.lab_id)
        for f in self.ipam.glob("*") if self.ipam.is_dir() else []:
            f.unlink(missing_ok=True)

    # -- CNI ADD / DEL ------------------------------------------------------------------------------
    def add(self, sandbox_id: str, pid: int) -> Attachment:
        """Give the network namespace of process ``pid`` (a sandbox) ``eth0`` on the bridge and an address."""
        ip = self._allocate(sandbox_id)
        veth = self.veth_name(ip)
        node = "\n".join([
            f"link add {veth} type veth peer name eth0 netns {pid}",
            f"link set {veth} master {self.bridge}",
            f"link set {veth} type bridge_slave hairpin on",
            f"link set {veth} up",
        ])
        pod = "\n".join([
            "link set lo up",
            f"addr add {ip}/{self.cidr.prefixlen} dev eth0",
            "link set eth0 up",
            f"route add default via {self.gateway} dev eth0",
        ])
        try:
            _run(["ip", "-n", self.netns, "-batch", "-"], input=node)
            _run(["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-batch", "-"], input=pod)
        except Exception:
            self.delete(sandbox_id)
            raise
        return Attachment(ip, self.cidr.prefixlen, self.gateway, veth)

    def delete(self, sandbox_id: str) -> None:
        """Release the sandbox's address and remove its veth (gone already when its namespace died). The lock is held
        only to find and release the address file, never around `ip`; the file goes last, so the address (and its veth
        name) cannot be handed out while its old veth may still exist."""
        with self._lock:
            mine = []
            for f in self.ipam.glob("*") if self.ipam.is_dir() else []:
                if f.name == LAST_RESERVED:
                    continue
                try:
                    if f.read_text().strip() == sandbox_id:
                        mine.append(f)
                except OSError:
                    continue
        for f in mine:
            subprocess.run(["ip", "-n", self.netns, "link", "delete", self.veth_name(f.name)], capture_output=True)
        with self._lock:
            for f in mine:
                f.unlink(missing_ok=True)

    def veth_name(self, ip: str) -> str:
        return f"kp{self.lab_id[:4]}{int(ipaddress.ip_address(ip)) & 0xFFFFFFFF:08x}"

    def _allocate(self, sandbox_id: str) -> str:
        """The next free address after the last one handed out (host-local's round robin, its ``last_reserved_ip``),
        so a freed address is not given straight to the next pod: peers may still cache its old MAC, and a Service
        would send them packets they cannot answer for half a minute."""
        with self._lock:
            self.ipam.mkdir(parents=True, exist_ok=True)
            taken = {f.name for f in self.ipam.iterdir()}
            first, last = int(self.cidr.network_address) + 1, int(self.cidr.broadcast_address) - 1
            try:
                start = int(ipaddress.ip_address((self.ipam / LAST_RESERVED).read_text().strip())) + 1
            except (OSError, ValueError):
                start = first
            size = last - first + 1
            for i in range(size):
                ip = str(ipaddress.ip_address(first + (start - first + i) % size))
                if ip == self.gateway or ip in taken:
                    continue
                fd = os.open(self.ipam / ip, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                with os.fdopen(fd, "w") as f:
                    f.write(sandbox_id)
                (self.ipam / LAST_RESERVED).write_text(ip)
                return ip
        raise OSError(f"no free address in the pod CIDR {self.cidr}")

    # -- counters -------------------------------------------------------------------------------------
    @staticmethod
    def counters(pid: int) -> dict[str, dict[str, int]]:
        """Interface → rx/tx bytes, packets, errors, drops, read from /proc/<pid>/net/dev (that process's namespace)."""
        return read_net_dev(Path(f"/proc/{pid}/net/dev"))


def read_net_dev(path: Path) -> dict[str, dict[str, int]]:
    """/proc/net/dev as {iface: {rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors,
    tx_dropped}}; {} when the file cannot be read (the process is gone)."""
    try:
        lines = path.read_text().splitlines()[2:]
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, rest = line.partition(":")
        f = [int(x) for x in rest.split()]
        if len(f) < 16:
            continue
        out[name.strip()] = {"rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                             "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11]}
    return out


def _run(argv: list[str], input: str | None = None) -> None:
    r = subprocess.run(argv, input=input.encode() if input is not None else None, capture_output=True, timeout=30)
    if r.returncode != 0:
        raise OSError(f"{' '.join(argv[:4])}: {r.stderr.decode(errors='replace').strip()}")


def wait_for_own_netns(pid: int, timeout: float = 5.0) -> None:
    """Wait until process ``pid`` (a sandbox started by `unshare --net`) is in a network namespace other than ours, so
    that ADD never moves a veth into the host's namespace."""
    import time

    mine = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != mine:
                return
        except OSError as exc:
            raise OSError(f"the sandbox process {pid} is gone") from exc
        if time.monotonic() > deadline:
            raise OSError(f"the sandbox process {pid} has no network namespace of its own after {timeout:.0f}s")
        time.sleep(0.002)
