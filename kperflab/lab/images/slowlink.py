"""A bandwidth-limited registry link: the lab's images under a second registry host, behind a real shaped link.

A second ``docker-registry`` serves the lab registry's storage read-only from a network namespace of its own
(``unshare --net``, so the namespace lives exactly as long as the process), attached to the lab's node bridge by a
veth like a pod (the pod network's ADD: an address from the pod CIDR). Both ends of the veth get a ``tbf`` qdisc
at the chosen rate (this kernel has ``tbf`` and ``htb``, not ``netem``): the registry's ``eth0`` shapes what it sends
(the blobs a pull receives), the node end what it receives (the requests). The kubelet's puller dials it from inside
the node namespace, so nothing of it is in the host's network namespace, and images named
``slow-registry.kperflab.internal/<repo>:<tag>`` come through it (`endpoint`, as containerd's hosts config maps a
registry host to an endpoint).

Cleaned up by its lab id: the process carries ``KPERFLAB_LAB=<id>`` (a crash recovery kills it), its namespace and
veth (with their qdiscs) go when it exits, its address is a file of the pod network's IPAM under the lab's run dir.

Example::

    link = SlowRegistry(registry.storage, run_dir / "registry-slow", parse_rate("100mbit"), podnet.netns_path,
                        attach=lambda pid: podnet.add("slow-registry", pid), detach=lambda: podnet.delete("slow-registry"),
                        env={"KPERFLAB_LAB": lab_id}).start()
    store.hosts[SLOW_HOST] = link.endpoint
    …
    link.stop()
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...errors import BadInput
from ..network.podnet import in_netns, wait_for_own_netns
from .pull import Endpoint
from .registry import RegistryError, wait_ready

SLOW_HOST = "slow-registry.kperflab.internal"
DEFAULT_BANDWIDTH = "100mbit"
PORT = 5000
SANDBOX_ID = "kperflab-slow-registry"
_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6,
          "gbps": 8 * 10**9}
MIN_RATE, MAX_RATE = 10**6, 10 * 10**9


def parse_rate(text: str) -> int:
    """A rate as tc writes it (``100mbit``, ``1gbit``, ``500kbit``; ``mbps`` is megabytes per second) → bits per
    second, between 1 Mbit/s and 10 Gbit/s.

    >>> parse_rate("100mbit"), parse_rate("1Gbit"), parse_rate("12.5mbps")
    (100000000, 1000000000, 100000000)
    """
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)\s*", str(text))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise BadInput(f"--registry-bandwidth {text!r} is not a rate.",
                       hint="Write it as tc does, e.g. 100mbit, 1gbit or 500kbit.")
    bits = int(float(m.group(1)) * _UNITS[unit])
    if not MIN_RATE <= bits <= MAX_RATE:
        raise BadInput(f"--registry-bandwidth {text} is out of range.", hint="Use 1mbit to 10gbit (default 100mbit).")
    return bits


def tbf_args(rate_bits: int) -> list[str]:
    """``tbf`` for a rate: a bucket of 10 ms at that rate (at least 32 KiB: packets bigger than it are segmented) and
    50 ms of queue.

    >>> tbf_args(100_000_000)
    ['tbf', 'rate', '100000000bit', 'burst', '125000', 'latency', '50ms']
    """
    burst = max(32 * 1024, rate_bits // 8 // 100)
    return ["tbf", "rate", f"{rate_bits}bit", "burst", str(burst), "latency", "50ms"]


class SlowRegistry:
    """The shaped registry: start, `endpoint` (for `ImageStore.hosts`), stop."""

    def __init__(self, storage: Path, directory: Path, rate_bits: int, node_netns: str,
                 attach: Callable[[int], Any], detach: Callable[[], None], *, env: Mapping[str, str] | None = None) -> None:
        self.storage = Path(storage)
        self.directory = Path(directory)
        self.rate_bits = rate_bits
        self.node_netns = node_netns
        self._attach, self._detach = attach, detach
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.ip = ""
        self.veth = ""

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{PORT}"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.url, self.dial)

    def dial(self, host: str, port: int, timeout: float) -> socket.socket:
        """A TCP connection opened inside the node's network namespace (where the shaped link ends)."""
        s = in_netns(self.node_netns, lambda: socket.create_connection((host, port), timeout))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def start(self, timeout: float = 15.0) -> SlowRegistry:
        exe = shutil.which("docker-registry")
        if not exe:
            raise RegistryError("docker-registry is not installed; the lab serves its images with it.",
                                hint="Install it: apt-get install docker-registry (or run scripts/system-deps.sh).")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "redirect": {"disable": True},
                        "maintenance": {"uploadpurging": {"enabled": False}, "readonly": {"enabled": True}}},
            "http": {"addr": f":{PORT}", "secret": secrets.token_hex(16)},  # inside its own network namespace only
        }
        cfg = self.directory / "config.yml"
        cfg.write_text(json.dumps(config, indent=1))
        log_path = self.directory / "registry.log"
        try:
            with open(log_path, "ab") as logf:
                self.proc = subprocess.Popen(["unshare", "--net", "--", exe, "serve", str(cfg)], stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                                             start_new_session=True)
            wait_for_own_netns(self.proc.pid)
            att = self._attach(self.proc.pid)
            self.ip, self.veth = att.ip, att.host_veth
            shape = tbf_args(self.rate_bits)
            _run(["nsenter", f"--net=/proc/{self.proc.pid}/ns/net", "tc", "qdisc", "replace", "dev", "eth0", "root", *shape])
            _run(["nsenter", f"--net={self.node_netns}", "tc", "qdisc", "replace", "dev", self.veth, "root", *shape])
            self._wait_ready(timeout, log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float, log_path: Path) -> None:
        assert self.proc is not None

        def connect() -> http.client.HTTPConnection:
            conn = http.client.HTTPConnection(self.ip, PORT, timeout=1)
            conn.sock = self.dial(self.ip, PORT, 1.0)  # inside the node's network namespace
            return conn

        wait_ready(self.proc, connect, f"The lab's slow registry on {self.ip}:{PORT}", log_path, timeout, every=0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process (its namespace, veth and qdiscs go with it) and release its address."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.ip:
            self._detach()
            self.ip = ""


def _run(argv: list[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RegistryError(f"Cannot shape the slow registry's link ({' '.join(argv[3:])}): {r.stderr.strip()}",
                            hint="The lab needs tc (iproute2) and the kernel's tbf qdisc (sch_tbf).")
