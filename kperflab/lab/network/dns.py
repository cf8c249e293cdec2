"""Cluster DNS for the lab: what CoreDNS does with kubeadm's Corefile, answering from the lab's object store.

kubeadm's Corefile (`cmd/kubeadm/app/phases/addons/dns/manifests.go`) is, in the parts that shape answers::

    .:53 { kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure; fallthrough in-addr.arpa ip6.arpa; ttl 30 }
           prometheus :9153; forward . /etc/resolv.conf { max_concurrent 1000 } }

Which upstream behaviour each rule follows (coredns/coredns paths):

| rule | upstream |
|---|---|
| a packet shorter than a header, or a response, gets no reply; opcode other than QUERY → NOTIMP (miekg accepts NOTIFY too; the lab has no secondaries, so NOTIFY is NOTIMP here); QDCOUNT ≠ 1, ANCOUNT > 1, NSCOUNT > 1, ARCOUNT > 2 or a packet that does not parse → FORMERR with the header only (no metrics: the Go DNS server answers before CoreDNS sees it) | miekg/dns `acceptfunc.go`, `server.go` |
| class not IN → REFUSED, counted under zone "dropped"; EDNS version ≠ 0 → BADVERS (no question, not counted); an exception while answering → SERVFAIL and `coredns_panics_total` | `core/dnsserver/server.go` `ServeDNS`, `plugin/pkg/edns` |
| zones: the cluster zone and the reverse zones; the longest match wins; everything else goes to `forward` | `plugin/kubernetes/handler.go`, `plugin/plugin.go` `Zones.Matches` |
| names: `<svc>.<ns>.svc`, `<endpoint>.<svc>.<ns>.svc`, `_<port>._<proto>.<svc>.<ns>.svc`, `<a-b-c-d>.<ns>.pod`; `svc`, `pod` and the apex → NODATA; a name not ending in `svc`/`pod` or with more labels → NXDOMAIN | `plugin/kubernetes/parse.go` `parseRequest` |
| the namespace must exist (a Namespace object), or NXDOMAIN; `<ns>.svc.<zone>` → NODATA | `plugin/kubernetes/namespace.go`, `kubernetes.go` `findServices` |
| ClusterIP service: every address in `clusterIPs` (A or AAAA by family), even with no endpoints; a service with no ports still answers (port −1 sentinel) | `kubernetes.go` `findServices`, `object/service.go` |
| headless service, or any `<endpoint>.<svc>…` name: the *ready* addresses of the service's EndpointSlices (label `kubernetes.io/service-name`; `conditions.ready` nil ⇒ ready); none → NXDOMAIN | `kubernetes.go` `findServices`, `object/endpoint.go` |
| endpoint name: slice `hostname`, else the dashed IP (IPv6 `:`→`-`, a trailing `-` gets `0`) | `kubernetes.go` `endpointHostname` |
| ExternalName → CNAME; for A/AAAA/TXT queries the target is looked up (in the zone directly, else upstream) and its records follow the CNAME; an IP in `externalName` gives nothing | `kubernetes.go`, `plugin/backend_lookup.go` `A`, `AAAA`, `CNAME` |
| SRV: priority 0, weight ⌊100/N⌋ (≥ 1) over the N matching (address, port) pairs, target `<svc>.<ns>.svc.<zone>.` or `<endpoint>.<svc>.<ns>.svc.<zone>.`, the target's address in the additional section; ExternalName gives none | `plugin/backend_lookup.go` `SRV` |
| PTR (full `in-addr.arpa` / `ip6.arpa` names): a ClusterIP → `<svc>.<ns>.svc.<zone>.` (first service), else every ready endpoint with that address → `<endpoint>.<svc>.<ns>.svc.<zone>.`; unknown addresses and other reverse names fall through to `forward` | `plugin/kubernetes/reverse.go`, `handler.go` (`fallthrough in-addr.arpa ip6.arpa`) |
| `dns-version.<zone>` TXT "1.1.0" TTL 28800; TXT on any other existing name → NODATA, else NXDOMAIN | `kubernetes.go` `Services`, kubernetes/dns `docs/specification.md` |
| NXDOMAIN and NODATA carry the zone's SOA in authority: `ns.dns.<zone>. hostmaster.<zone>.`, serial = Unix time of the last service/endpoint change, 7200 1800 86400, minimum = TTL; SOA TTL min(TTL, 300); AA set, RA not | `plugin/backend_lookup.go` `SOA`, `BackendError`; `kubernetes.go` `Serial` |
| NS at the apex and `ns.dns.<zone>` A/AAAA: the services whose ready endpoints hold this server's address, else `ns.dns.<zone>` with this server's address | `plugin/kubernetes/ns.go` |
| `pods insecure`: `a-b-c-d.<ns>.pod.<zone>` echoes the address if the namespace exists; `disabled` → NXDOMAIN | `kubernetes.go` `findPods` |
| AXFR/IXFR → REFUSED; other types → NODATA or NXDOMAIN by a fake A lookup | `plugin/kubernetes/handler.go` |
| UDP replies fit the client's EDNS buffer (512 without EDNS): whole records are dropped from the end and TC set; the reply OPT echoes the client's size and DO | miekg/dns `Msg.Truncate` via CoreDNS's ScrubWriter, `request/request.go` `SizeAndDo` |
| forward: upstreams from `nameserver` lines of /etc/resolv.conf (port 53), random order, the query's own transport, a fresh query ID, a reply whose question does not match → FORMERR; none reachable → SERVFAIL; more than `max_concurrent` in flight → REFUSED | `plugin/forward/forward.go`, `setup.go`, `plugin/pkg/proxy/connect.go` |
| metrics: `coredns_dns_requests_total{server,zone,view,proto,family,type}` (types outside CoreDNS's list → "other"), `coredns_dns_responses_total{server,zone,view,rcode,plugin}`, `coredns_dns_request_duration_seconds{server,zone,view}` (buckets 0.25 ms × 2^0..15), `coredns_proxy_request_duration_seconds{proxy_name,to,rcode}`, `coredns_forward_max_concurrent_rejects_total`, `coredns_kubernetes_dns_programming_duration_seconds{service_kind}`, `coredns_panics_total` | `plugin/metrics/vars/*.go`, `plugin/metrics/handler.go`, `plugin/pkg/proxy/metrics.go`, `plugin/forward/metrics.go`, `plugin/kubernetes/object/metrics.go` |

Also exported: `coredns_forward_requests_total{to}`, the per-upstream count CoreDNS had before 1.11 (now
`sum(coredns_proxy_request_duration_seconds_count{proxy_name="forward"})`, which counts answered queries only).

Not done (said, not faked): the `cache`, `loop`, `loadbalance`, `autopath` plugins; `pods verified`;
`endpoint_pod_names`; forward health checks (each upstream is tried once per query, `forward_timeout` each);
lookups CoreDNS makes on its own behalf (an ExternalName target) are not counted as client requests.
Forwarding sockets are created in the network namespace of the thread that runs :meth:`ClusterDNS.serve`
(or calls :meth:`ClusterDNS.answer`). An upstream equal to the address this server listens on is skipped (the one
loop that is certain; CoreDNS's `loop` plugin probes instead).

Queries are read and replies written by `_dnswire` (dnspython only for unusual queries and upstream answers it
must take apart): about 40 µs per query in-process, where dnspython would take ~200 µs, in a process it shares with
the API server and the kubelet.

The store is followed like an informer: a small index of namespaces, services and EndpointSlices, brought up to
date from the store's event log before each query when the store's resourceVersion moved (and by a watcher thread
while serving, so programming latency is measured when a change arrives, not when the next query does).
"""

from __future__ import annotations

import ipaddress
import math
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, NamedTuple

import dns.message
import dns.rcode
import dns.rdatatype
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ..errors import APIError
from ..store import Store
from . import _dnswire as w
from ._dnswire import RR, Labels, Query

__all__ = ["ClusterDNS", "QueryRecord", "DNS_SCHEMA_VERSION", "read_upstreams", "endpoint_hostname"]

DNS_SCHEMA_VERSION = "1.1.0"
NAMESPACES, SERVICES, SLICES = "v1/namespaces", "v1/services", "discovery.k8s.io/v1/endpointslices"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")

T = dns.rdatatype
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS = 0, 1, 2, 3, 4, 5, 16
_MONITORED = {T.AAAA, T.A, T.CNAME, T.DNSKEY, T.DS, T.MX, T.NSEC3, T.NSEC, T.NS, T.PTR, T.RRSIG, T.SOA, T.SRV,
              T.TXT, T.HTTPS, T.SVCB, T.IXFR, T.AXFR, T.ANY}
_TIME_BUCKETS = tuple(0.00025 * 2 ** i for i in range(16))  # plugin.TimeBuckets: 0.25 ms .. 8 s
_PROGRAMMING_BUCKETS = tuple(0.001 * 2 ** i for i in range(20))
_MAX_CNAME_CHAIN = 10
_TXT_VERSION = (w.RAW, bytes([len(DNS_SCHEMA_VERSION)]) + DNS_SCHEMA_VERSION.encode())


class QueryRecord(NamedTuple):
    """One answered query: (time, client, qname, qtype, rcode) — time is ``time.time()``."""
    time: float
    client: str
    qname: str
    qtype: str
    rcode: str


class _NameError(Exception):
    """NXDOMAIN from the kubernetes backend (CoreDNS errNoItems / errNsNotExposed / errInvalidRequest)."""


class _NeedsUpstream(Exception):
    """The answer needs a network round trip; the serving loop moves the query off its thread."""


class _Svc(NamedTuple):
    name: str
    namespace: str
    type: str
    cluster_ips: tuple[str, ...]
    external_name: str
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, port); (("", "", -1),) when none

    @property
    def headless(self) -> bool:
        return bool(self.cluster_ips) and self.cluster_ips[0] == "None"


class _Addr(NamedTuple):
    ip: str
    hostname: str


class _Slice(NamedTuple):
    service: str  # the kubernetes.io/service-name label
    ports: tuple[tuple[str, str, int], ...]
    addresses: tuple[_Addr, ...]  # ready endpoints only, as CoreDNS keeps them


class _Rec(NamedTuple):
    """CoreDNS's msg.Service: an address or a name (``host``), a port, and the owner name of a derived target."""
    host: str
    port: int = -1
    key: str = ""
    ttl: int = 30


class _Snapshot(NamedTuple):
    namespaces: frozenset[str]
    services: dict[tuple[str, str], _Svc]
    endpoints: dict[tuple[str, str], list[_Slice]]
    svc_by_ip: dict[str, _Svc]
    ep_by_ip: dict[str, list[tuple[_Slice, str, _Addr]]]  # ip -> (slice, namespace, address)
    serial: int


class _Req(NamedTuple):
    kind: str = ""  # "svc", "pod" or "" (NODATA)
    namespace: str = ""
    service: str = ""
    endpoint: str = ""
    port: str = ""
    protocol: str = ""


# -- small helpers --------------------------------------------------------------------------------------------------

def endpoint_hostname(ip: str, hostname: str = "") -> str:
    """The name of an endpoint under its service (CoreDNS ``endpointHostname``, ``endpoint_pod_names`` off).

    >>> endpoint_hostname("10.244.0.7"), endpoint_hostname("fd00::"), endpoint_hostname("10.244.0.7", "web-0")
    ('10-244-0-7', 'fd00--0', 'web-0')
    """
    if hostname:
        return hostname
    if "." in ip:
        return ip.replace(".", "-")
    if ":" in ip:
        name = ip.replace(":", "-")
        return name + "0" if name.endswith("-") else name
    return ""


def _parse_request(base: list[str]) -> _Req:
    """plugin/kubernetes/parse.go: the labels left of the zone, left to right, lower case."""
    if not base or base == ["svc"] or base == ["pod"]:
        return _Req()
    kind = base[-1]
    if kind not in ("svc", "pod"):
        raise _NameError
    rest = base[:-1]
    namespace = rest[-1]
    rest = rest[:-1]
    if not rest:
        return _Req(kind, namespace)
    service = rest[-1]
    rest = rest[:-1]
    if not rest:
        return _Req(kind, namespace, service)
    if len(rest) == 1:
        return _Req(kind, namespace, service, endpoint=rest[0])
    if len(rest) == 2:
        return _Req(kind, namespace, service, port=rest[0].removeprefix("_"), protocol=rest[1].removeprefix("_"))
    raise _NameError  # too long


def _match_port(req: _Req, name: str, protocol: str) -> bool:
    return (not req.port or req.port == name.lower()) and (not req.protocol or req.protocol == protocol.lower())


def _address_from_reverse(labels: list[str]) -> str:
    """dnsutil.ExtractAddressFromReverse: the address of a complete reverse name, else ""."""
    if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
        text = ".".join(reversed(labels[:4]))
    elif labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
        nibbles = "".join(reversed(labels[:32]))
        text = ":".join(nibbles[i:i + 4] for i in range(0, 32, 4))
    else:
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def _ports(items: Iterable[dict[str, Any]] | None, default_protocol: str) -> tuple[tuple[str, str, int], ...]:
    out = []
    for p in items or ():
        port = p.get("port")
        out.append((p.get("name") or "", p.get("protocol") or default_protocol, int(port) if port is not None else -1))
    return tuple(out) or (("", "", -1),)


def _to_service(obj: dict[str, Any]) -> _Svc:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ips = tuple(spec.get("clusterIPs") or ()) or (spec.get("clusterIP") or "",)
    return _Svc(meta.get("name", ""), meta.get("namespace", ""), spec.get("type") or "ClusterIP", ips,
                spec.get("externalName") or "", _ports(spec.get("ports"), "TCP"))


def _to_slice(obj: dict[str, Any]) -> _Slice:
    addrs = []
    for ep in obj.get("endpoints") or ():
        if (ep.get("conditions") or {}).get("ready") is False:  # nil means ready
            continue
        for ip in ep.get("addresses") or ():
            addrs.append(_Addr(ip, ep.get("hostname") or ""))
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return _Slice(labels.get(SERVICE_NAME_LABEL, ""), _ports(obj.get("ports"), ""), tuple(addrs))


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def read_upstreams(path: str = "/etc/resolv.conf") -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf, as ``forward . /etc/resolv.conf`` reads them (port 53).

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
    ...     _ = f.write("nameserver 10.0.0.2\\n# nameserver 10.0.0.9\\nnameserver fd00::53\\nnameserver bogus\\n")
    >>> read_upstreams(f.name); os.unlink(f.name)
    ['10.0.0.2:53', '[fd00::53]:53']
    """
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                ip = ipaddress.ip_address(fields[1].split("%")[0])
            except ValueError:
                continue
            out.append(f"[{ip}]:53" if ip.version == 6 else f"{ip}:53")
    return out


def _parse_upstream(text: str) -> tuple[str, int]:
    text = text.removeprefix("dns://")
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        return host, int(port.removeprefix(":") or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def _fmt_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _addr_rr(owner: Labels, host: str, ttl: int) -> RR:
    rtype, packed = w.address(host)
    return owner, rtype, ttl, (w.RAW, packed)


_QTYPE_TEXT: dict[int, str] = {}


_RCODE_TEXT = {code: dns.rcode.to_text(code) for code in range(24)}


def _qtype_text(qtype: int) -> str:
    text = _QTYPE_TEXT.get(qtype)
    if text is None:
        text = _QTYPE_TEXT[qtype] = dns.rdatatype.to_text(qtype)
    return text


# -- the server -----------------------------------------------------------------------------------------------------

class ClusterDNS:
    """A DNS server like CoreDNS with the kubernetes plugin, answering from a lab :class:`Store`.

    ``upstreams``: ``"host[:port]"`` strings to forward to (None: /etc/resolv.conf's nameservers; [] forwards
    nothing, so such queries get SERVFAIL). ``local_ips``: this server's addresses, for NS answers (``serve`` adds
    the address it is bound to). Attributes: ``queries`` (a bounded deque of :class:`QueryRecord`, newest last),
    ``registry`` (the prometheus_client registry behind :meth:`metrics_text`).

    >>> import dns.message
    >>> s = Store()
    >>> _ = s.create("v1/namespaces", {"metadata": {"name": "default"}})
    >>> _ = s.create("v1/services", {"metadata": {"name": "web", "namespace": "default"},
    ...     "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "ports": [{"name": "http", "port": 80}]}})
    >>> d = ClusterDNS(s, upstreams=[])
    >>> q = dns.message.make_query("web.default.svc.cluster.local", "A")
    >>> print(dns.message.from_wire(d.answer(q.to_wire())).answer[0])
    web.default.svc.cluster.local. 30 IN A 10.96.0.20
    >>> d.queries[-1][2:]
    ('web.default.svc.cluster.local.', 'A', 'NOERROR')
    """

    def __init__(self, store: Store, *, zone: str = "cluster.local", upstreams: list[str] | None = None, ttl: int = 30,
                 pods: str = "insecure", local_ips: list[str] | None = None, forward_timeout: float = 2.0,
                 max_concurrent: int = 1000, server: str = "dns://:53", query_log: int = 10_000) -> None:
        if pods not in ("insecure", "disabled"):
            raise ValueError(f"pods mode {pods!r}: the lab supports 'insecure' (kubeadm) and 'disabled'")
        self._store = store
        self.zone = zone.strip(".").lower()
        self._zone_labels = self.zone.split(".")
        self._zones = [self._zone_labels] + [z.split(".") for z in REVERSE_ZONES]
        self.ttl = int(ttl)
        self.pods = pods
        self.upstreams = [_parse_upstream(u) for u in (read_upstreams() if upstreams is None else upstreams)]
        self.forward_timeout = forward_timeout
        self.max_concurrent = max_concurrent
        self.server = server
        self.local_ips: list[str] = list(local_ips or [])
        self.queries: deque[QueryRecord] = deque(maxlen=query_log)
        self._self_addrs: set[tuple[str, int]] = set()
        self._inflight = 0
        self._inflight_lock = threading.Lock()

        self._sync_lock = threading.Lock()
        self._seen_rv = 0
        self._raw: dict[str, dict[tuple[str, str], Any]] = {NAMESPACES: {}, SERVICES: {}, SLICES: {}}
        self._snap: _Snapshot | None = None
        self._serial = int(time.time())

        r = self.registry = CollectorRegistry(auto_describe=True)
        self._m_requests = Counter("coredns_dns_requests", "Counter of DNS requests made per zone, protocol and family.",
                                   ["server", "zone", "view", "proto", "family", "type"], registry=r)
        self._m_responses = Counter("coredns_dns_responses", "Counter of response status codes.",
                                    ["server", "zone", "view", "rcode", "plugin"], registry=r)
        self._m_duration = Histogram("coredns_dns_request_duration_seconds",
                                     "Histogram of the time (in seconds) each request took per zone.",
                                     ["server", "zone", "view"], buckets=_TIME_BUCKETS, registry=r)
        self._m_proxy = Histogram("coredns_proxy_request_duration_seconds", "Histogram of the time each request took.",
                                  ["proxy_name", "to", "rcode"], buckets=_TIME_BUCKETS, registry=r)
        self._m_fwd_requests = Counter("coredns_forward_requests",
                                       "Counter of requests made per upstream (CoreDNS < 1.11 name).", ["to"], registry=r)
        self._m_fwd_rejects = Counter("coredns_forward_max_concurrent_rejects",
                                      "Counter of the number of queries rejected because the concurrent queries were at maximum.",
                                      registry=r)
        self._m_programming = Histogram("coredns_kubernetes_dns_programming_duration_seconds",
                                        "Histogram of the time (in seconds) it took to program a dns instance.",
                                        ["service_kind"], buckets=_PROGRAMMING_BUCKETS, registry=r)
        self._m_panics = Counter("coredns_panics", "A metrics that counts the number of panics.", registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}

    # -- public ------------------------------------------------------------------------------------------------------
    def answer(self, wire: bytes, client: str = "", proto: str = "udp") -> bytes:
        """One query in wire format → one response in wire format; ``b""`` means no reply is sent (as CoreDNS
        ignores responses and packets shorter than a header). ``client`` ("ip:port", "[ip6]:port") goes to the query
        log and the family label; ``proto`` ("udp" or "tcp") sets the size limit and the upstream transport.
        Blocks while forwarding.

        >>> d = ClusterDNS(Store(), upstreams=[])
        >>> d.answer(b"\\x12"), d.answer(b"\\x12\\x34" + bytes(10))[:4] == b"\\x12\\x34\\x80\\x01"
        (b'', True)
        """
        return self._handle(wire, client, proto, blocking=True, t0=time.perf_counter())

    def metrics_text(self) -> bytes:
        """The Prometheus text exposition of this server's metrics (what CoreDNS serves on :9153/metrics).

        >>> import dns.message
        >>> d = ClusterDNS(Store(), upstreams=[])
        >>> _ = d.answer(dns.message.make_query("nope.cluster.local", "A").to_wire())
        >>> [line for line in d.metrics_text().decode().splitlines() if line.startswith("coredns_dns_responses_total")]
        ['coredns_dns_responses_total{plugin="kubernetes",rcode="NXDOMAIN",server="dns://:53",view="",zone="."} 1.0']
        """
        return generate_latest(self.registry)

    def serve(self, udp_sock: socket.socket, tcp_sock: socket.socket | None, stop: threading.Event) -> None:
        """Answer on bound sockets until ``stop`` is set: UDP on this thread, TCP (bound; this listens on it, or
        None) on one thread per connection, forwarded queries on a pool, and a watcher that follows the store.
        Returns within ~0.2 s of ``stop`` plus any forward in flight (≤ ``forward_timeout`` per upstream).

        Forwarding sockets are opened by threads this call starts, so they live in the network namespace of the
        thread that calls it, whatever namespace the listening sockets were bound in.

        >>> import threading, socket, dns.query, dns.message
        >>> s = Store(); _ = s.create("v1/namespaces", {"metadata": {"name": "default"}})
        >>> u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
        >>> stop = threading.Event(); d = ClusterDNS(s, upstreams=[])
        >>> t = threading.Thread(target=d.serve, args=(u, None, stop)); t.start()
        >>> r = dns.query.udp(dns.message.make_query("dns-version.cluster.local", "TXT"), "127.0.0.1", port=u.getsockname()[1], timeout=2)
        >>> print(r.answer[0])
        dns-version.cluster.local. 28800 IN TXT "1.1.0"
        >>> stop.set(); t.join(); u.close()
        """
        for sock in (udp_sock, tcp_sock):
            if sock is None:
                continue
            host, port = sock.getsockname()[:2]
            self._self_addrs.add((host, port))
            if host not in ("0.0.0.0", "::") and host not in self.local_ips:
                self.local_ips.append(host)
        if tcp_sock is not None:
            tcp_sock.listen(1024)
        pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="dns-forward")
        threads = [threading.Thread(target=self._watch, args=(stop,), name="dns-watch", daemon=True)]
        if tcp_sock is not None:
            threads.append(threading.Thread(target=self._serve_tcp, args=(tcp_sock, stop), name="dns-tcp", daemon=True))
        for t in threads:
            t.start()
        try:
            self._serve_udp(udp_sock, stop, pool)
        finally:
            stop.set()
            for t in threads:
                t.join()
            pool.shutdown(wait=True, cancel_futures=False)

    # -- serving -----------------------------------------------------------------------------------------------------
    def _serve_udp(self, sock: socket.socket, stop: threading.Event, pool: ThreadPoolExecutor) -> None:
        while not stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if not ready:
                continue
            while True:
                try:
                    data, addr = sock.recvfrom(65535, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    if stop.is_set():
                        return
                    break
                t0 = time.perf_counter()
                client = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
                try:
                    out = self._handle(data, client, "udp", blocking=False, t0=t0)
                except _NeedsUpstream:
                    pool.submit(self._udp_deferred, sock, data, addr, client, t0)
                    continue
                if out:
                    try:
                        sock.sendto(out, addr)
                    except OSError:
                        pass

    def _udp_deferred(self, sock: socket.socket, data: bytes, addr: Any, client: str, t0: float) -> None:
        out = self._handle(data, client, "udp", blocking=True, t0=t0)
        if out:
            try:
                sock.sendto(out, addr)
            except OSError:
                pass

    def _serve_tcp(self, sock: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if not ready:
                continue
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                if stop.is_set():
                    return
                continue
            client = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
            threading.Thread(target=self._tcp_conn, args=(conn, client, stop), name="dns-tcp-conn", daemon=True).start()

    def _tcp_conn(self, conn: socket.socket, client: str, stop: threading.Event) -> None:
        idle_limit = 8.0  # miekg/dns idle timeout for TCP connections
        with conn:
            conn.settimeout(0.2)
            buf = b""
            idle_since = time.monotonic()
            while not stop.is_set():
                if len(buf) >= 2:
                    n = struct.unpack("!H", buf[:2])[0]
                    if len(buf) >= 2 + n:
                        data, buf = buf[2:2 + n], buf[2 + n:]
                        out = self._handle(data, client, "tcp", blocking=True, t0=time.perf_counter())
                        if out:
                            try:
                                conn.sendall(struct.pack("!H", len(out)) + out)
                            except OSError:
                                return
                        idle_since = time.monotonic()
                        continue
                try:
                    chunk = conn.recv(65537)
                except TimeoutError:
                    if time.monotonic() - idle_since > idle_limit:
                        return
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk

    def _watch(self, stop: threading.Event) -> None:
        while not stop.is_set():
            began = time.monotonic()
            if self._store.wait_for_change(self._seen_rv, 0.2) == self._seen_rv and time.monotonic() - began < 0.05:
                stop.wait(0.2)  # a closed store returns at once
            try:
                self._sync()
            except Exception:  # noqa: BLE001 - the next query or change retries
                pass

    # -- one query ---------------------------------------------------------------------------------------------------
    def _handle(self, wire: bytes, client: str, proto: str, *, blocking: bool, t0: float) -> bytes:
        try:
            return self._handle_inner(wire, client, proto, blocking, t0)
        except _NeedsUpstream:
            raise
        except Exception:  # noqa: BLE001 - like CoreDNS's recover(): SERVFAIL and count it
            self._m_panics.inc()
            return w.header_reply(wire, SERVFAIL) if len(wire) >= 12 else b""

    def _handle_inner(self, wire: bytes, client: str, proto: str, blocking: bool, t0: float) -> bytes:
        if len(wire) < 12:
            return b""
        flags = (wire[2] << 8) | wire[3]
        if flags & 0x8000:
            return b""
        qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
        if (flags >> 11) & 0xF != 0:
            return self._log_raw(client, w.header_reply(wire, NOTIMP), "NOTIMP")
        if qd != 1 or an > 1 or ns > 1 or ar > 2:
            return self._log_raw(client, w.header_reply(wire, FORMERR), "FORMERR")
        try:
            q = w.parse_query(wire)
            if q is None:
                q = w.query_from_message(dns.message.from_wire(wire))
        except Exception:  # noqa: BLE001 - any parse failure is the client's format error
            return self._log_raw(client, w.header_reply(wire, FORMERR), "FORMERR")
        tcp = proto == "tcp"
        if q.qclass != 1:
            return self._finish(q, client, proto, t0, REFUSED, "dropped", "", w.encode_reply(q, REFUSED, tcp=tcp))
        if q.edns > 0:
            out = w.encode_reply(q._replace(payload=512, do=False), BADVERS, tcp=tcp, question=False)
            self.queries.append(QueryRecord(time.time(), client, w.name_text(q.labels), _qtype_text(q.qtype), "BADVERS"))
            return out

        labels = [lab.decode("ascii", "replace").lower() for lab in q.labels]
        zone = self._match_zone(labels)
        if zone is not None:
            res = self._kubernetes(q, labels, zone, blocking)
            if res is not None:
                rcode, answer, authority, additional = res
                if rcode == REFUSED:  # nobody wrote it: the server answers (no AA, plugin "")
                    return self._finish(q, client, proto, t0, rcode, ".", "", w.encode_reply(q, rcode, tcp=tcp))
                out = w.encode_reply(q, rcode, answer, authority, additional, tcp=tcp, aa=True)
                return self._finish(q, client, proto, t0, rcode, ".", "kubernetes", out)
        if not blocking:
            raise _NeedsUpstream
        return self._forward(q, wire, client, proto, t0)

    def _finish(self, q: Query, client: str, proto: str, t0: float, rcode: int, zone: str, plugin: str,
                out: bytes) -> bytes:
        family = "2" if client.startswith("[") else "1"
        qtype = _qtype_text(q.qtype) if q.qtype in _MONITORED else "other"
        rcode_text = _RCODE_TEXT.get(rcode) or dns.rcode.to_text(rcode)
        server = self.server
        self._child(self._m_requests, server, zone, "", proto, family, qtype).inc()
        self._child(self._m_duration, server, zone, "").observe(time.perf_counter() - t0)
        self._child(self._m_responses, server, zone, "", rcode_text, plugin).inc()
        self.queries.append(QueryRecord(time.time(), client, w.name_text(q.labels), _qtype_text(q.qtype), rcode_text))
        return out

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _log_raw(self, client: str, out: bytes, rcode: str) -> bytes:
        self.queries.append(QueryRecord(time.time(), client, "", "", rcode))
        return out

    def _match_zone(self, labels: list[str]) -> list[str] | None:
        best = None
        for z in self._zones:
            if len(labels) >= len(z) and labels[len(labels) - len(z):] == z and (best is None or len(z) > len(best)):
                best = z
        return best

    # -- the kubernetes plugin ---------------------------------------------------------------------------------------
    def _kubernetes(self, q: Query, labels: list[str], zone: list[str],
                    blocking: bool) -> tuple[int, list[RR], list[RR], list[RR]] | None:
        """plugin/kubernetes/handler.go ServeDNS: (rcode, answer, authority, additional), or None to fall through."""
        snap = self._sync()
        qname, qtype = q.labels, q.qtype
        zone_owner = q.labels[len(q.labels) - len(zone):]  # the zone as the query spelled it
        records: list[RR] = []
        extra: list[RR] = []
        try:
            if qtype in (T.A, T.AAAA):
                records = self._addresses(snap, qname, labels, zone, qtype, [], blocking)
            elif qtype == T.TXT:
                records = self._txt(snap, qname, labels, zone)
            elif qtype == T.CNAME:
                svcs = self._services(snap, labels, zone, qtype)
                if svcs and w.address(svcs[0].host)[0] == T.CNAME:
                    records = [(qname, T.CNAME, svcs[0].ttl, (w.NAME, w.labels_of(svcs[0].host)))]
            elif qtype == T.PTR:
                records = self._ptr(snap, qname, labels, zone)
            elif qtype == T.MX:
                self._services(snap, labels, zone, qtype)  # no MX in Kubernetes; only NXDOMAIN vs NODATA matters
            elif qtype == T.SRV:
                records, extra = self._srv(snap, qname, labels, zone)
            elif qtype == T.SOA:
                if labels == zone:
                    records = [self._soa(snap, zone_owner, zone)]
            elif qtype in (T.AXFR, T.IXFR):
                return REFUSED, [], [], []
            elif qtype == T.NS and labels == zone:
                records, extra = self._ns(snap, qname, zone)
            else:  # a fake A lookup tells NXDOMAIN from NODATA
                self._addresses(snap, qname, labels, zone, T.A, [], blocking)
        except _NameError:
            if zone != self._zone_labels:
                return None  # fallthrough in-addr.arpa ip6.arpa
            return NXDOMAIN, [], [self._soa(snap, zone_owner, zone)], []
        if not records:
            return NOERROR, [], [self._soa(snap, zone_owner, zone)], []
        return NOERROR, records, [], extra

    def _soa(self, snap: _Snapshot, owner: Labels, zone: list[str]) -> RR:
        z = ".".join(zone)
        rdata = (w.SOA, w.labels_of(f"ns.dns.{z}"), w.labels_of(f"hostmaster.{z}"), snap.serial & 0xFFFFFFFF,
                 7200, 1800, 86400, self.ttl)
        return owner, T.SOA, min(self.ttl, 300), rdata

    def _records(self, snap: _Snapshot, labels: list[str], zone: list[str]) -> list[_Rec]:
        """kubernetes.go Records: services or pods for a name in a zone; raises _NameError for NXDOMAIN."""
        req = _parse_request(labels[:len(labels) - len(zone)])
        if not req.kind:
            return []
        if zone != self._zone_labels:
            raise _NameError  # reverse zones hold no services
        if req.namespace not in snap.namespaces:
            raise _NameError
        if req.kind == "pod":
            return self._find_pods(req)
        return self._find_services(snap, req)

    def _find_pods(self, req: _Req) -> list[_Rec]:
        if self.pods == "disabled":
            raise _NameError
        if not req.service:
            return []
        name = req.service
        ip = name.replace("-", ".") if name.count("-") == 3 and "--" not in name else name.replace("-", ":")
        if w.address(ip)[0] == T.CNAME:
            raise _NameError
        return [_Rec(ip, ttl=self.ttl)]

    def _find_services(self, snap: _Snapshot, req: _Req) -> list[_Rec]:
        if not req.service:
            return []
        svc = snap.services.get((req.namespace, req.service))
        if svc is None:
            raise _NameError
        out: list[_Rec] = []
        found = False
        base = f"{svc.name}.{svc.namespace}.svc.{self.zone}."
        if svc.type == "ExternalName":
            if req.endpoint or req.port or req.protocol or w.address(svc.external_name)[0] != T.CNAME:
                raise _NameError
            return [_Rec(svc.external_name, key=base, ttl=self.ttl)]
        if svc.headless or req.endpoint:
            for sl in snap.endpoints.get((svc.namespace, svc.name), ()):
                for addr in sl.addresses:
                    hostname = endpoint_hostname(addr.ip, addr.hostname)
                    if req.endpoint and req.endpoint != hostname.lower():
                        continue
                    for pname, proto, port in sl.ports:
                        if _match_port(req, pname, proto):
                            out.append(_Rec(addr.ip, port, f"{hostname}.{base}", self.ttl))
                            found = True
        else:
            for pname, proto, port in svc.ports:
                if not _match_port(req, pname, proto):
                    continue
                found = True
                out.extend(_Rec(ip, port, base, self.ttl) for ip in svc.cluster_ips if ip)
        if not found:
            raise _NameError
        return out

    def _services(self, snap: _Snapshot, labels: list[str], zone: list[str], qtype: int) -> list[_Rec]:
        """kubernetes.go Services (the ServiceBackend entry point) for qtypes other than TXT and NS."""
        if labels[:2] == ["ns", "dns"] and labels[2:] == zone:
            return [r._replace(key="") for r in self._ns_addrs(snap, zone) if w.address(r.host)[0] == qtype]
        recs = self._records(snap, labels, zone)
        if qtype == T.SRV:
            recs = [r for r in recs if w.address(r.host)[0] != T.CNAME]
        return recs

    def _addresses(self, snap: _Snapshot, qname: Labels, labels: list[str], zone: list[str], qtype: int,
                   chain: list[str], blocking: bool) -> list[RR]:
        """backend_lookup.go A / AAAA, following in-zone CNAMEs and looking external ones up upstream."""
        out: list[RR] = []
        seen: set[str] = set()
        for rec in self._services(snap, labels, zone, qtype):
            what = w.address(rec.host)[0]
            if what == T.CNAME:
                target = rec.host.rstrip(".").lower()
                if target == ".".join(labels) or len(chain) > _MAX_CNAME_CHAIN or target in chain:
                    continue
                tlabels = w.labels_of(rec.host)
                cname = (qname, T.CNAME, rec.ttl, (w.NAME, tlabels))
                tlow = target.split(".")
                if len(tlow) >= len(zone) and tlow[len(tlow) - len(zone):] == zone:
                    try:
                        nxt = self._addresses(snap, tlabels, tlow, zone, qtype, [*chain, target], blocking)
                    except _NameError:
                        continue
                    if nxt:
                        out += [cname, *nxt]
                    continue
                if not blocking:
                    raise _NeedsUpstream
                out.append(cname)
                out += self._lookup(rec.host, qtype)
            elif what == qtype and rec.host not in seen:
                seen.add(rec.host)
                out.append(_addr_rr(qname, rec.host, rec.ttl))
        return out

    def _txt(self, snap: _Snapshot, qname: Labels, labels: list[str], zone: list[str]) -> list[RR]:
        if labels == ["dns-version", *zone]:
            return [(qname, T.TXT, 28800, _TXT_VERSION)]
        try:
            existing = self._records(snap, labels, zone)
        except _NameError:
            existing = []
        if existing:
            return []  # the name exists with other types: NODATA
        raise _NameError

    def _srv(self, snap: _Snapshot, qname: Labels, labels: list[str], zone: list[str]) -> tuple[list[RR], list[RR]]:
        recs = self._services(snap, labels, zone, T.SRV)
        weight = max(1, math.floor(100.0 / (100 * len(recs)) * 100)) if recs else 0
        records: list[RR] = []
        extra: list[RR] = []
        dup: set[tuple[str, str, int]] = set()
        for rec in recs:
            if rec.port == -1:
                continue
            target = w.labels_of(rec.key)
            if (rec.key, "", rec.port) not in dup:
                dup.add((rec.key, "", rec.port))
                records.append((qname, T.SRV, rec.ttl, (w.SRV, 0, weight, rec.port, target)))
            if (rec.key, rec.host, 0) not in dup:
                dup.add((rec.key, rec.host, 0))
                extra.append(_addr_rr(target, rec.host, rec.ttl))
        return records, extra

    def _ptr(self, snap: _Snapshot, qname: Labels, labels: list[str], zone: list[str]) -> list[RR]:
        ip = _address_from_reverse(labels)
        if not ip:
            self._records(snap, labels, zone)
            return []
        targets: list[str] = []
        svc = snap.svc_by_ip.get(ip)
        if svc is not None:
            targets = [f"{svc.name}.{svc.namespace}.svc.{self.zone}."]
        else:
            for sl, ns, addr in snap.ep_by_ip.get(ip, ()):
                targets.append(f"{endpoint_hostname(addr.ip, addr.hostname)}.{sl.service}.{ns}.svc.{self.zone}.")
        if not targets:
            raise _NameError
        return [(qname, T.PTR, self.ttl, (w.NAME, w.labels_of(t))) for t in dict.fromkeys(targets)]

    def _ns_addrs(self, snap: _Snapshot, zone: list[str]) -> list[_Rec]:
        """ns.go nsAddrs: where this server is reachable, as (address, owner name) records."""
        z = ".".join(zone)
        out: list[_Rec] = []
        for local in self.local_ips:
            for sl, ns, _addr in snap.ep_by_ip.get(local, ()):
                svc = snap.services.get((ns, sl.service))
                if svc is None:
                    continue
                name = f"{svc.name}.{svc.namespace}.svc.{z}."
                if svc.headless:
                    out += [_Rec(a.ip, key=f"{endpoint_hostname(a.ip, a.hostname)}.{name}", ttl=self.ttl)
                            for a in sl.addresses]
                else:
                    out += [_Rec(ip, key=name, ttl=self.ttl) for ip in svc.cluster_ips if ip and ip != "None"]
        if not out:
            out = [_Rec(ip, key=f"ns.dns.{z}.", ttl=self.ttl) for ip in self.local_ips]
        return out

    def _ns(self, snap: _Snapshot, qname: Labels, zone: list[str]) -> tuple[list[RR], list[RR]]:
        records: list[RR] = []
        extra: list[RR] = []
        seen: set[str] = set()
        for rec in self._ns_addrs(snap, zone):
            target = w.labels_of(rec.key)
            extra.append(_addr_rr(target, rec.host, rec.ttl))
            if rec.key not in seen:
                seen.add(rec.key)
                records.append((qname, T.NS, rec.ttl, (w.NAME, target)))
        return records, extra

    # -- forward -----------------------------------------------------------------------------------------------------
    def _forward(self, q: Query, wire: bytes, client: str, proto: str, t0: float) -> bytes:
        tcp = proto == "tcp"
        with self._inflight_lock:
            self._inflight += 1
            over = self._inflight > self.max_concurrent
        try:
            if over:
                self._m_fwd_rejects.inc()
                return self._finish(q, client, proto, t0, REFUSED, ".", "", w.encode_reply(q, REFUSED, tcp=tcp))
            reply = self._exchange(wire, proto, q.labels, q.qtype)
        finally:
            with self._inflight_lock:
                self._inflight -= 1
        if reply is None:
            return self._finish(q, client, proto, t0, SERVFAIL, ".", "", w.encode_reply(q, SERVFAIL, tcp=tcp))
        raw, rcode = reply
        if rcode < 0:  # the upstream answered another question
            return self._finish(q, client, proto, t0, FORMERR, ".", "forward", w.encode_reply(q, FORMERR, tcp=tcp))
        return self._finish(q, client, proto, t0, rcode, ".", "forward", wire[:2] + raw[2:])

    def _exchange(self, wire: bytes, proto: str, labels: Labels, qtype: int) -> tuple[bytes, int] | None:
        """Send to each upstream in random order until one answers: (raw reply, its rcode, or -1 when its question
        does not match ours), or None when none answered."""
        ups = [u for u in self.upstreams if u not in self._self_addrs]
        random.shuffle(ups)
        want = tuple(lab.lower() for lab in labels)
        for host, port in ups:
            to = _fmt_addr(host, port)
            self._child(self._m_fwd_requests, to).inc()
            qid = random.getrandbits(16)
            out = struct.pack("!H", qid) + wire[2:]
            start = time.perf_counter()
            try:
                raw = (_tcp_exchange if proto == "tcp" else _udp_exchange)(out, (host, port), self.forward_timeout)
                rid, rcode, rlabels, rtype = w.reply_summary(raw)
            except (OSError, ValueError, w.FormErr):
                continue
            self._child(self._m_proxy, "forward", to, dns.rcode.to_text(rcode)).observe(time.perf_counter() - start)
            if rid != qid:
                continue
            if rlabels is not None and (tuple(lab.lower() for lab in rlabels) != want or rtype != qtype):
                return raw, -1
            return raw, rcode
        return None

    def _lookup(self, name: str, qtype: int) -> list[RR]:
        """plugin/pkg/upstream Lookup for a CNAME target outside the zone: its answer records (none on failure)."""
        q = dns.message.make_query(name, qtype)
        reply = self._exchange(q.to_wire(), "udp", w.labels_of(name), qtype)
        if reply is None or reply[1] < 0:
            return []
        try:
            msg = dns.message.from_wire(reply[0], ignore_trailing=True)
        except Exception:  # noqa: BLE001 - an unreadable upstream answer adds nothing
            return []
        return [(tuple(rrset.name.labels[:-1]), int(rrset.rdtype), rrset.ttl, w.rdata_of(rd))
                for rrset in msg.answer for rd in rrset]

    # -- the store ---------------------------------------------------------------------------------------------------
    def _sync(self) -> _Snapshot:
        rv = self._store.resource_version
        snap = self._snap
        if snap is not None and rv == self._seen_rv:
            return snap
        with self._sync_lock:
            if self._snap is not None and self._seen_rv == rv:
                return self._snap
            changed = self._snap is None
            if self._seen_rv == 0:
                self._relist()
                changed = True
            else:
                try:
                    for res in (NAMESPACES, SERVICES, SLICES):
                        for typ, obj in self._store.watch(res, None, str(self._seen_rv), _everything, 0.0):
                            self._apply(res, typ, obj)
                            changed = True
                except APIError:  # 410 Gone: the event log no longer reaches back; start over
                    self._relist()
                    changed = True
            self._seen_rv = rv
            if changed:
                self._serial = int(time.time())
                self._snap = self._build()
            return self._snap  # type: ignore[return-value]

    def _relist(self) -> None:
        for res in (NAMESPACES, SERVICES, SLICES):
            items = self._store.list(res)[0]
            self._raw[res] = {}
            for obj in items:
                self._apply(res, "ADDED", obj, observe=False)

    def _apply(self, res: str, typ: str, obj: dict[str, Any], observe: bool = True) -> None:
        key = _key(obj)
        if typ == "DELETED":
            self._raw[res].pop(key, None)
            return
        if res == NAMESPACES:
            self._raw[res][key] = True
        elif res == SERVICES:
            self._raw[res][key] = _to_service(obj)
        else:
            sl = _to_slice(obj)
            self._raw[res][key] = sl
            if observe:
                self._observe_programming(obj, key[0], sl)

    def _observe_programming(self, obj: dict[str, Any], namespace: str, sl: _Slice) -> None:
        stamp = ((obj.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_TIME)
        svc = self._raw[SERVICES].get((namespace, sl.service))
        if not stamp or svc is None:
            return
        try:
            tt = datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            return
        kind = "headless_with_selector" if svc.headless else "cluster_ip"
        self._m_programming.labels(kind).observe(max(0.0, time.time() - tt))

    def _build(self) -> _Snapshot:
        namespaces = frozenset(k[1] for k in self._raw[NAMESPACES])
        services: dict[tuple[str, str], _Svc] = dict(self._raw[SERVICES])
        endpoints: dict[tuple[str, str], list[_Slice]] = {}
        ep_by_ip: dict[str, list[tuple[_Slice, str, _Addr]]] = {}
        for (ns, _name), sl in sorted(self._raw[SLICES].items()):
            endpoints.setdefault((ns, sl.service), []).append(sl)
            for addr in sl.addresses:
                ep_by_ip.setdefault(addr.ip, []).append((sl, ns, addr))
        svc_by_ip: dict[str, _Svc] = {}
        for _k, svc in sorted(services.items()):
            for ip in svc.cluster_ips:
                if ip and ip != "None":
                    svc_by_ip.setdefault(ip, svc)
        return _Snapshot(namespaces, services, endpoints, svc_by_ip, ep_by_ip, self._serial)


def _everything(_obj: dict[str, Any]) -> bool:
    return True


def _udp_exchange(wire: bytes, addr: tuple[str, int], timeout: float) -> bytes:
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(addr)  # so an ICMP port unreachable comes back as ECONNREFUSED at once
        s.settimeout(timeout)
        s.send(wire)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("upstream did not answer")
            s.settimeout(left)
            data = s.recv(65535)
            if len(data) >= 12 and data[:2] == wire[:2] and data[2] & 0x80:
                return data


def _tcp_exchange(wire: bytes, addr: tuple[str, int], timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("upstream did not answer")
            s.settimeout(left)
            chunk = s.recv(65537)
            if not chunk:
                raise ConnectionError("upstream closed the connection")
            buf += chunk
        return buf[2:2 + struct.unpack("!H", buf[:2])[0]]
