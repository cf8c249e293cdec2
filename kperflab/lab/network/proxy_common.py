"""What kube-proxy reads from the API, as plain data: Service ports and their ready endpoints.

Both rule writers (`proxy_iptables`, `proxy_nftables`) start from the list of `ServicePort`s this module builds
from plain Kubernetes objects (``v1`` Service dicts and ``discovery.k8s.io/v1`` EndpointSlice dicts, as
kube-apiserver serves them in JSON). Where each rule comes from upstream (kubernetes/kubernetes):

- which Services are proxied: ``pkg/proxy/servicechangetracker.go`` (``serviceToServiceMap``: no ClusterIP or
  ``None`` → skipped; ExternalName → skipped; only the proxier's IP family, here IPv4) and
  ``cmd/kube-proxy/app/server.go`` (the informers drop objects labelled ``service.kubernetes.io/service-proxy-name``
  or ``service.kubernetes.io/headless``);
- endpoints per service port: ``pkg/proxy/endpointslicecache.go`` — a slice belongs to the Service named by its
  ``kubernetes.io/service-name`` label (slices without it are ignored), its ports are matched to the Service port by
  *name and protocol* (the key is ``ServicePortName{ns/name, port name, protocol}``), the port number is the slice's
  (the resolved targetPort), an endpoint is its first address, duplicates across slices are merged, and the result is
  sorted by the ``ip:port`` string (``byEndpoint``), which is why ``10.180.0.10`` sorts before ``10.180.0.2``;
- readiness: ``conditions.ready`` absent means ready (``discovery/v1/types.go``). Only ready endpoints are used here;
  upstream's fall-back to serving-and-terminating endpoints when none is ready (KEP-1669,
  ``pkg/proxy/topology.go``) is not done.

Lab simplifications, said where they matter: traffic policies ``Local`` are programmed as ``Cluster`` (one node: all
endpoints are local anyway) and ``sessionAffinity: ClientIP`` is not programmed; both are logged once per service.
LoadBalancer ingress IPs are not programmed (the lab has no load balancer), its NodePort is.

>>> svc = {"metadata": {"namespace": "ns1", "name": "svc1"},
...        "spec": {"clusterIP": "172.30.0.41", "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]}}
>>> eps = {"metadata": {"namespace": "ns1", "name": "svc1-abc", "labels": {"kubernetes.io/service-name": "svc1"}},
...        "addressType": "IPv4", "ports": [{"name": "p80", "port": 8080, "protocol": "TCP"}],
...        "endpoints": [{"addresses": ["10.180.0.2"]}, {"addresses": ["10.180.0.1"], "conditions": {"ready": False}}]}
>>> [(sp.svc_port_name, [str(e) for e in sp.endpoints]) for sp in service_ports([svc], [eps])]
[('ns1/svc1:p80', ['10.180.0.2:8080'])]
"""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("kperflab.lab.kubeproxy")

Obj = dict[str, Any]

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_SERVICE_PROXY_NAME = "service.kubernetes.io/service-proxy-name"
LABEL_HEADLESS = "service.kubernetes.io/headless"


@dataclass(frozen=True, order=True)
class Endpoint:
    """One backend, ``ip:port`` as upstream's ``BaseEndpointInfo.String()`` (net.JoinHostPort; IPv4 here)."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service with its ready endpoints: upstream's ``ServicePortName`` plus ``BaseServicePortInfo``."""

    namespace: str
    name: str
    port_name: str
    protocol: str  # "TCP", "UDP" or "SCTP" as in the API
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    endpoints: tuple[Endpoint, ...] = field(default=())

    @property
    def svc_port_name(self) -> str:
        """``ServicePortName.String()``: ``ns/name:port``, or ``ns/name`` for an unnamed port."""
        return f"{self.namespace}/{self.name}" + (f":{self.port_name}" if self.port_name else "")

    @property
    def proto(self) -> str:
        """The protocol as the rule writers use it (``strings.ToLower``)."""
        return self.protocol.lower()

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.namespace, self.name, self.port_name, self.protocol)


class CommandError(RuntimeError):
    """A rule command (iptables, iptables-restore, nft) failed; ``stderr`` is the tool's own message."""

    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(argv[:3])}… exited {returncode}: {self.stderr}")


# A runner executes one command in the proxier's network namespace: argv, optional stdin → CompletedProcess
# (never raises for a non-zero exit; the caller decides).
Runner = Callable[[list[str], bytes | None], subprocess.CompletedProcess[bytes]]


def netns_runner(netns_path: str, timeout: float = 300.0) -> Runner:
    """A `Runner` that enters the network namespace at ``netns_path`` with nsenter(1) for each command."""

    def run(argv: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["nsenter", f"--net={netns_path}", *argv], input=stdin, capture_output=True,
                              timeout=timeout)

    return run


def check(run: Runner, argv: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run and raise `CommandError` on a non-zero exit."""
    r = run(argv, stdin)
    if r.returncode != 0:
        raise CommandError(argv, r.returncode, r.stderr.decode(errors="replace"))
    return r


def _ipv4(s: Any) -> str | None:
    """The canonical dotted quad of an IPv4 address, or None (IPv6, "None", "", garbage)."""
    if not isinstance(s, str):
        return None
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, s.strip()))
    except (OSError, ValueError):
        return None


def _labels(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _proxied(obj: Obj) -> bool:
    labels = _labels(obj)
    return LABEL_SERVICE_PROXY_NAME not in labels and LABEL_HEADLESS not in labels


_warned: set[tuple[str, str, str]] = set()


def _warn_once(ns: str, name: str, what: str) -> None:
    if (ns, name, what) not in _warned:
        _warned.add((ns, name, what))
        log.warning('"%s is not programmed by the lab\'s kube-proxy" service="%s/%s"', what, ns, name)


def endpoints_by_port(slices: Iterable[Obj]) -> dict[tuple[str, str, str, str], tuple[Endpoint, ...]]:
    """(namespace, service, port name, protocol) → ready endpoints, merged over slices and sorted as upstream."""
    merged: dict[tuple[str, str, str, str], dict[str, Endpoint]] = {}
    for sl in slices:
        if not isinstance(sl, dict) or not _proxied(sl):
            continue
        svc = _labels(sl).get(LABEL_SERVICE_NAME)
        ns = (sl.get("metadata") or {}).get("namespace") or ""
        if not svc or sl.get("addressType", "IPv4") != "IPv4":
            continue
        ready: list[str] = []
        for ep in sl.get("endpoints") or []:
            cond = (ep or {}).get("conditions") or {}
            if cond.get("ready") is False:  # nil means ready
                continue
            addrs = ep.get("addresses") or []
            ip = _ipv4(addrs[0]) if addrs else None
            if ip:
                ready.append(ip)
        for p in sl.get("ports") or []:
            port = (p or {}).get("port")
            if not isinstance(port, int) or isinstance(port, bool) or port <= 0:
                continue  # a port without a number carries no endpoints (endpointslicecache: "ignoring invalid endpoint port")
            key = (ns, svc, p.get("name") or "", p.get("protocol") or "TCP")
            bucket = merged.setdefault(key, {})
            for ip in ready:
                e = Endpoint(ip, port)
                bucket[str(e)] = e
    return {k: tuple(v[s] for s in sorted(v)) for k, v in merged.items()}


def service_ports(services: Iterable[Obj], slices: Iterable[Obj]) -> list[ServicePort]:
    """The IPv4 service ports kube-proxy programs, with their ready endpoints, sorted by (namespace, name, port, protocol).

    Upstream keeps them in a Go map, so the order of rules in KUBE-SERVICES changes from one sync to the next; the lab
    sorts so that runs and tests are repeatable (an experiment that needs "the first/last service in KUBE-SERVICES"
    reads the order from the ruleset)."""
    eps = endpoints_by_port(slices)
    out: list[ServicePort] = []
    for svc in services:
        if not isinstance(svc, dict) or not _proxied(svc):
            continue
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        ns, name = meta.get("namespace") or "", meta.get("name") or ""
        if spec.get("type") == "ExternalName":
            continue
        ips = [spec.get("clusterIP")] + list(spec.get("clusterIPs") or [])
        cluster_ip = next((ip for ip in map(_ipv4, ips) if ip), None)
        if cluster_ip is None:  # "", "None" (headless) or IPv6-only
            continue
        if spec.get("externalTrafficPolicy") == "Local" or spec.get("internalTrafficPolicy") == "Local":
            _warn_once(ns, name, "traffic policy Local (programmed as Cluster)")
        if spec.get("sessionAffinity") == "ClientIP":
            _warn_once(ns, name, "sessionAffinity ClientIP")
        external = tuple(ip for ip in map(_ipv4, spec.get("externalIPs") or []) if ip)
        for p in spec.get("ports") or []:
            if not isinstance(p, dict) or not isinstance(p.get("port"), int):
                continue
            proto = p.get("protocol") or "TCP"
            pname = p.get("name") or ""
            node_port = p.get("nodePort") if spec.get("type") in ("NodePort", "LoadBalancer") else 0
            out.append(ServicePort(ns, name, pname, proto, cluster_ip, p["port"],
                                   node_port=node_port if isinstance(node_port, int) else 0,
                                   external_ips=external, endpoints=eps.get((ns, name, pname, proto), ())))
    out.sort(key=lambda sp: sp.key)
    return out
