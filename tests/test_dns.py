"""The lab's cluster DNS (kperflab.lab.network.dns) and the kubelet's pod resolv.conf (…network.resolvconf).

Queries are built and read with dnspython; the server answers from a real lab Store. Forwarding goes to a fake
upstream on 127.0.0.1 so the counts do not depend on this machine's network.
"""

from __future__ import annotations

import doctest
import io
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
import dns.rrset
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kperflab.lab.network import _dnswire, resolvconf
from kperflab.lab.network import dns as cdns
from kperflab.lab.network.dns import ClusterDNS
from kperflab.lab.network.resolvconf import parse_resolv_conf, pod_resolv_conf
from kperflab.lab.store import Store

ZONE = "cluster.local"


# -- fixtures -----------------------------------------------------------------------------------------------------------

def svc(name: str, ns: str = "default", ip: str | list[str] = "10.96.0.20", ports: list[dict] | None = None,
        **spec: Any) -> dict:
    ips = ip if isinstance(ip, list) else [ip]
    body = {"clusterIP": ips[0], "clusterIPs": ips, "ports": ports if ports is not None else [], **spec}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": body}


def eps(name: str, service: str, endpoints: list[dict], ns: str = "default", ports: list[dict] | None = None,
        annotations: dict | None = None) -> dict:
    meta = {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": service},
            "annotations": annotations or {}}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta, "addressType": "IPv4",
            "endpoints": endpoints, "ports": ports if ports is not None else []}


def ep(ip: str, ready: bool | None = True, hostname: str | None = None) -> dict:
    out: dict[str, Any] = {"addresses": [ip]}
    if ready is not None:
        out["conditions"] = {"ready": ready}
    if hostname:
        out["hostname"] = hostname
    return out


def populate(s: Store) -> Store:
    for ns in ("default", "kube-system", "team-a"):
        s.create("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    s.create("v1/services", svc("web", ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                                              {"name": "metrics", "port": 9090, "protocol": "TCP"}]))
    s.create("v1/services", svc("empty", ip="10.96.0.21", ports=[{"name": "http", "port": 80}]))
    s.create("v1/services", svc("dual", ip=["10.96.0.30", "fd00::30"], ports=[{"port": 80}]))
    s.create("v1/services", svc("db", ip="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    s.create("discovery.k8s.io/v1/endpointslices", eps("db-abc", "db", [
        ep("10.244.0.5", hostname="db-0"), ep("10.244.0.6"), ep("10.244.0.7", ready=False), ep("10.244.0.8", ready=None),
    ], ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]))
    s.create("v1/services", svc("nobody", ip="None", ports=[{"name": "x", "port": 1}]))
    s.create("discovery.k8s.io/v1/endpointslices", eps("nobody-1", "nobody", [ep("10.244.0.40", ready=False)]))
    s.create("v1/services", svc("ext", ip="", type="ExternalName", externalName="db.example.test"))
    s.create("v1/services", svc("inner", ip="", type="ExternalName", externalName=f"web.default.svc.{ZONE}"))
    s.create("v1/services", svc("kube-dns", ns="kube-system", ip="10.96.0.10",
                                ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                       {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]))
    s.create("discovery.k8s.io/v1/endpointslices", eps("kube-dns-1", "kube-dns", [ep("10.244.0.2")], ns="kube-system",
                                                       ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]))
    return s


@pytest.fixture
def store() -> Store:
    return populate(Store())


class FakeUpstream:
    """A tiny authoritative server on 127.0.0.1 (UDP and TCP): names in ``a`` get an A record, others NXDOMAIN."""

    def __init__(self, a: dict[str, str] | None = None, delay: float = 0.0) -> None:
        self.a = {k.lower().rstrip(".") + ".": v for k, v in (a or {}).items()}
        self.delay = delay
        self.seen: list[tuple[str, str, str]] = []  # (proto, qname, qtype)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(16)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._udp_loop, daemon=True),
                        threading.Thread(target=self._tcp_loop, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reply(self, wire: bytes, proto: str) -> bytes:
        q = dns.message.from_wire(wire)
        qq = q.question[0]
        self.seen.append((proto, qq.name.to_text().lower(), dns.rdatatype.to_text(qq.rdtype)))
        if self.delay:
            time.sleep(self.delay)
        r = dns.message.make_response(q, recursion_available=True)
        ip = self.a.get(qq.name.to_text().lower())
        if ip is None:
            r.set_rcode(dns.rcode.NXDOMAIN)
        elif qq.rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(qq.name, 60, "IN", "A", ip))
        return r.to_wire()

    def _udp_loop(self) -> None:
        self.udp.settimeout(0.1)
        while not self.stop.is_set():
            try:
                data, addr = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=lambda d=data, a=addr: self.udp.sendto(self.reply(d, "udp"), a), daemon=True).start()

    def _tcp_loop(self) -> None:
        self.tcp.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                n = struct.unpack("!H", conn.recv(2))[0]
                data = b""
                while len(data) < n:
                    data += conn.recv(n - len(data))
                out = self.reply(data, "tcp")
                conn.sendall(struct.pack("!H", len(out)) + out)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    u = FakeUpstream({"db.example.test": "192.0.2.10", "api.example.com": "192.0.2.20"})
    yield u
    u.close()


def ask(d: ClusterDNS, name: str, rdtype: str = "A", proto: str = "udp", **kw: Any) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)
    wire = d.answer(q.to_wire(), "10.244.0.99:40000", proto)
    r = dns.message.from_wire(wire)
    assert r.id == q.id and r.flags & dns.flags.QR
    return r


def addrs(r: dns.message.Message, rdtype: str = "A") -> set[str]:
    return {rd.to_text() for rrset in r.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset}


def metrics(d: ClusterDNS) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in text_string_to_metric_families(d.metrics_text().decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(d: ClusterDNS, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in metrics(d).items() if n == name and set(labels.items()) <= ls)


# -- records ------------------------------------------------------------------------------------------------------------

def test_clusterip_service_a_record_ttl_flags_and_case(store):
    d = ClusterDNS(store, upstreams=[])
    r = ask(d, "WEB.Default.svc.Cluster.Local")
    assert r.rcode() == dns.rcode.NOERROR
    assert addrs(r) == {"10.96.0.20"}
    assert r.answer[0].ttl == 30 and r.answer[0].name.to_text() == "WEB.Default.svc.Cluster.Local."
    assert r.flags & dns.flags.AA and not r.flags & dns.flags.RA
    assert addrs(ask(d, "empty.default.svc.cluster.local")) == {"10.96.0.21"}  # no endpoints: still answers


def test_aaaa_is_nodata_for_a_v4_only_service_and_answers_dual_stack(store):
    d = ClusterDNS(store, upstreams=[])
    r = ask(d, "web.default.svc.cluster.local", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    soa = r.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "cluster.local."
    assert soa[0].mname.to_text() == "ns.dns.cluster.local." and soa[0].rname.to_text() == "hostmaster.cluster.local."
    assert (soa[0].refresh, soa[0].retry, soa[0].expire, soa[0].minimum, soa.ttl) == (7200, 1800, 86400, 30, 30)
    assert addrs(ask(d, "dual.default.svc.cluster.local", "AAAA"), "AAAA") == {"fd00::30"}
    assert addrs(ask(d, "dual.default.svc.cluster.local")) == {"10.96.0.30"}


def test_headless_service_answers_ready_endpoints_only(store):
    d = ClusterDNS(store, upstreams=[])
    assert addrs(ask(d, "db.default.svc.cluster.local")) == {"10.244.0.5", "10.244.0.6", "10.244.0.8"}
    r = ask(d, "nobody.default.svc.cluster.local")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == dns.rdatatype.SOA
    assert addrs(ask(d, "db-0.db.default.svc.cluster.local")) == {"10.244.0.5"}
    assert addrs(ask(d, "10-244-0-6.db.default.svc.cluster.local")) == {"10.244.0.6"}
    assert ask(d, "10-244-0-7.db.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN  # not ready
    assert ask(d, "db-9.db.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_srv_records_priority_weight_targets_and_additional(store):
    d = ClusterDNS(store, upstreams=[])
    r = ask(d, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert [rd.to_text() for rd in r.answer[0]] == ["0 100 80 web.default.svc.cluster.local."]
    assert {(rr.name.to_text(), rd.to_text()) for rr in r.additional for rd in rr} == \
        {("web.default.svc.cluster.local.", "10.96.0.20")}
    r = ask(d, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert sorted(rd.to_text() for rd in r.answer[0]) == [
        "0 33 5432 10-244-0-6.db.default.svc.cluster.local.", "0 33 5432 10-244-0-8.db.default.svc.cluster.local.",
        "0 33 5432 db-0.db.default.svc.cluster.local."]
    assert {(rr.name.to_text(), rd.to_text()) for rr in r.additional for rd in rr} == {
        ("db-0.db.default.svc.cluster.local.", "10.244.0.5"), ("10-244-0-6.db.default.svc.cluster.local.", "10.244.0.6"),
        ("10-244-0-8.db.default.svc.cluster.local.", "10.244.0.8")}
    for bad in ("_nope._tcp.web", "_http._udp.web", "_http._tcp.nope"):
        assert ask(d, f"{bad}.default.svc.cluster.local", "SRV").rcode() == dns.rcode.NXDOMAIN, bad
    # UDP and TCP named ports of one service
    r = ask(d, "_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV")
    assert [rd.to_text() for rd in r.answer[0]] == ["0 100 53 kube-dns.kube-system.svc.cluster.local."]


def test_ptr_for_cluster_ips_and_endpoints(store):
    d = ClusterDNS(store, upstreams=[])
    r = ask(d, "20.0.96.10.in-addr.arpa", "PTR")
    assert [rd.to_text() for rd in r.answer[0]] == ["web.default.svc.cluster.local."]
    r = ask(d, "5.0.244.10.in-addr.arpa", "PTR")
    assert [rd.to_text() for rd in r.answer[0]] == ["db-0.db.default.svc.cluster.local."]
    r = ask(d, dns.reversename.from_address("fd00::30").to_text(), "PTR")
    assert [rd.to_text() for rd in r.answer[0]] == ["dual.default.svc.cluster.local."]
    # not a service or endpoint address: falls through to forward (none here: SERVFAIL, not NXDOMAIN)
    assert ask(d, "9.9.9.10.in-addr.arpa", "PTR").rcode() == dns.rcode.SERVFAIL


def test_ptr_falls_through_to_upstream(store, upstream):
    d = ClusterDNS(store, upstreams=[upstream.addr])
    r = ask(d, "9.9.9.10.in-addr.arpa", "PTR")
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.flags & dns.flags.AA  # the upstream's answer
    assert upstream.seen == [("udp", "9.9.9.10.in-addr.arpa.", "PTR")]


def test_external_name_is_a_cname_followed_in_zone_and_upstream(store, upstream):
    d = ClusterDNS(store, upstreams=[upstream.addr])
    r = ask(d, "ext.default.svc.cluster.local", "CNAME")
    assert [rd.to_text() for rd in r.answer[0]] == ["db.example.test."]
    r = ask(d, "ext.default.svc.cluster.local")
    assert [(rr.rdtype, rd.to_text()) for rr in r.answer for rd in rr] == [
        (dns.rdatatype.CNAME, "db.example.test."), (dns.rdatatype.A, "192.0.2.10")]
    r = ask(d, "inner.default.svc.cluster.local")
    assert [(rr.name.to_text(), rd.to_text()) for rr in r.answer for rd in rr] == [
        ("inner.default.svc.cluster.local.", "web.default.svc.cluster.local."),
        ("web.default.svc.cluster.local.", "10.96.0.20")]
    assert ask(d, "_x._tcp.ext.default.svc.cluster.local", "SRV").rcode() == dns.rcode.NXDOMAIN


def test_dns_version_soa_ns_and_names_without_records(store):
    d = ClusterDNS(store, upstreams=[], local_ips=["10.244.0.2"])
    r = ask(d, "dns-version.cluster.local", "TXT")
    assert r.answer[0].to_text() == 'dns-version.cluster.local. 28800 IN TXT "1.1.0"'
    assert ask(d, "cluster.local", "SOA").answer[0].rdtype == dns.rdatatype.SOA
    r = ask(d, "cluster.local", "NS")
    assert [rd.to_text() for rd in r.answer[0]] == ["kube-dns.kube-system.svc.cluster.local."]
    assert {rd.to_text() for rr in r.additional for rd in rr} == {"10.96.0.10"}
    assert addrs(ask(d, "ns.dns.cluster.local")) == {"10.96.0.10"}
    alone = ClusterDNS(store, upstreams=[], local_ips=["10.9.9.9"])  # not behind a Service: ns.dns.<zone> itself
    r = ask(alone, "cluster.local", "NS")
    assert [rd.to_text() for rd in r.answer[0]] == ["ns.dns.cluster.local."]
    assert [(rr.name.to_text(), rd.to_text()) for rr in r.additional for rd in rr] == [("ns.dns.cluster.local.", "10.9.9.9")]
    for name, rcode in [("default.svc.cluster.local", "NOERROR"), ("svc.cluster.local", "NOERROR"),
                        ("cluster.local", "NOERROR"), ("nope.default.svc.cluster.local", "NXDOMAIN"),
                        ("web.nope.svc.cluster.local", "NXDOMAIN"), ("nope.cluster.local", "NXDOMAIN"),
                        ("a.b.c.web.default.svc.cluster.local", "NXDOMAIN"), ("nope.svc.cluster.local", "NXDOMAIN")]:
        r = ask(d, name)
        assert dns.rcode.to_text(r.rcode()) == rcode and not r.answer, name
        assert r.authority and r.authority[0].rdtype == dns.rdatatype.SOA, name
    # other types: NODATA on an existing name, NXDOMAIN otherwise; TXT on a service is NODATA
    assert ask(d, "web.default.svc.cluster.local", "MX").rcode() == dns.rcode.NOERROR
    assert ask(d, "web.default.svc.cluster.local", "HTTPS").rcode() == dns.rcode.NOERROR
    assert ask(d, "nope.default.svc.cluster.local", "HTTPS").rcode() == dns.rcode.NXDOMAIN
    assert ask(d, "web.default.svc.cluster.local", "TXT").rcode() == dns.rcode.NOERROR
    assert ask(d, "cluster.local", "AXFR", proto="tcp").rcode() == dns.rcode.REFUSED


def test_pods_insecure_echoes_the_address(store):
    d = ClusterDNS(store, upstreams=[])
    assert addrs(ask(d, "10-244-0-9.default.pod.cluster.local")) == {"10.244.0.9"}
    assert ask(d, "10-244-0-9.nope.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert ask(d, "not-an-ip.default.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
    d = ClusterDNS(store, upstreams=[], pods="disabled")
    assert ask(d, "10-244-0-9.default.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_store_changes_are_seen_by_the_next_query(store):
    d = ClusterDNS(store, upstreams=[])
    assert ask(d, "late.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    store.create("v1/services", svc("late", ip="10.96.0.77", ports=[{"port": 80}]))
    assert addrs(ask(d, "late.default.svc.cluster.local")) == {"10.96.0.77"}
    sl = store.get("discovery.k8s.io/v1/endpointslices", "default", "db-abc")
    sl["endpoints"][2]["conditions"]["ready"] = True
    store.update("discovery.k8s.io/v1/endpointslices", sl)
    assert "10.244.0.7" in addrs(ask(d, "db.default.svc.cluster.local"))
    store.remove("v1/services", "default", "late")
    assert ask(d, "late.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert ask(d, "77.0.96.10.in-addr.arpa", "PTR").rcode() == dns.rcode.SERVFAIL  # gone from the reverse index too


def test_udp_answers_fit_the_client_buffer_else_tc(store):
    store.create("v1/services", svc("big", ip="None", ports=[{"name": "x", "port": 1}]))
    store.create("discovery.k8s.io/v1/endpointslices",
                 eps("big-1", "big", [ep(f"10.244.1.{i}") for i in range(1, 101)], ports=[{"name": "x", "port": 1}]))
    d = ClusterDNS(store, upstreams=[])
    wire = d.answer(dns.message.make_query("big.default.svc.cluster.local", "A").to_wire())
    r = dns.message.from_wire(wire)
    # miekg/dns Msg.Truncate (CoreDNS's ScrubWriter): as many whole records as fit in 512 bytes, TC set
    assert r.flags & dns.flags.TC and len(wire) <= 512 and len(addrs(r)) == 29
    assert addrs(r) <= {f"10.244.1.{i}" for i in range(1, 101)}
    assert len(addrs(ask(d, "big.default.svc.cluster.local", use_edns=0, payload=4096))) == 100
    r = ask(d, "big.default.svc.cluster.local", proto="tcp")
    assert len(addrs(r)) == 100 and not r.flags & dns.flags.TC


def test_malformed_packets_get_formerr_or_nothing_and_fuzz_never_raises(store):
    d = ClusterDNS(store, upstreams=[])
    assert d.answer(b"") == b"" and d.answer(b"\x00" * 11) == b""
    resp = dns.message.make_response(dns.message.make_query("web.default.svc.cluster.local", "A"))
    assert d.answer(resp.to_wire()) == b""  # a response: ignored
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    wire = q.to_wire()
    two = wire[:4] + b"\x00\x02" + wire[6:]  # QDCOUNT 2 with one question
    r = dns.message.from_wire(d.answer(two), question_only=True)
    assert r.rcode() == dns.rcode.FORMERR and r.id == q.id and not r.question
    assert dns.message.from_wire(d.answer(wire[:-3])).rcode() == dns.rcode.FORMERR  # cut in the question
    update = wire[:2] + bytes([wire[2] | (5 << 3)]) + wire[3:]
    assert dns.message.from_wire(d.answer(update)).rcode() == dns.rcode.NOTIMP
    r = ask(d, "web.default.svc.cluster.local", use_edns=1)
    assert r.rcode() == dns.rcode.BADVERS
    chaos = dns.message.make_query("version.bind", "TXT", "CH")
    assert dns.message.from_wire(d.answer(chaos.to_wire())).rcode() == dns.rcode.REFUSED
    rng = random.Random(7)
    for i in range(3000):
        if i % 2:
            blob = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        else:  # a valid query with a few bytes flipped: reaches the parser more often
            b = bytearray(wire)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.getrandbits(8)
            blob = bytes(b)
        out = d.answer(blob)
        assert out == b"" or (len(out) >= 12 and out[:2] == blob[:2] and out[2] & 0x80), blob
    assert metric(d, "coredns_panics_total") == 0
    assert addrs(ask(d, "web.default.svc.cluster.local")) == {"10.96.0.20"}  # still fine


def test_wire_shapes_other_than_a_plain_question(store):
    d = ClusterDNS(store, upstreams=[])
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    wire = q.to_wire()
    # a compression pointer that does not point backwards (here: at itself) is a format error, not a loop
    looped = wire[:12] + b"\xc0\x0c" + wire[-4:]
    assert dns.message.from_wire(d.answer(looped), question_only=True).rcode() == dns.rcode.FORMERR
    # an answer record in a query (allowed: ANCOUNT 1) goes through dnspython and is answered normally
    with_answer = dns.message.make_query("web.default.svc.cluster.local", "A")
    with_answer.answer.append(dns.rrset.from_text("x.example.", 1, "IN", "A", "192.0.2.1"))
    r = dns.message.from_wire(d.answer(with_answer.to_wire()))
    assert addrs(r) == {"10.96.0.20"}
    # EDNS options (a client cookie) are read past; the reply's OPT echoes size and DO, without options
    opt = dns.message.make_query("db.default.svc.cluster.local", "A", use_edns=0, payload=1400, want_dnssec=True,
                                 options=[dns.edns.GenericOption(10, b"\x01" * 8)])
    r = dns.message.from_wire(d.answer(opt.to_wire()))
    assert r.edns == 0 and r.payload == 1400 and r.ednsflags & dns.flags.DO and not r.options
    assert len(addrs(r)) == 3
    broken = bytearray(opt.to_wire())
    broken[-1] ^= 0x01  # the option's data is now shorter than its length says → trailing/short: FORMERR
    assert dns.message.from_wire(d.answer(bytes(broken[:-1])), question_only=True).rcode() == dns.rcode.FORMERR
    # trailing garbage after the question
    assert dns.message.from_wire(d.answer(wire + b"\x00"), question_only=True).rcode() == dns.rcode.FORMERR
    # SRV targets are written out (RFC 2782), the additional A records' owners point back at them (7 without)
    out = d.answer(dns.message.make_query("_pg._tcp.db.default.svc.cluster.local", "SRV").to_wire())
    assert out.count(b"\x07default") == 4 and len(dns.message.from_wire(out).additional) == 3


# -- forward ------------------------------------------------------------------------------------------------------------

def test_forward_to_upstream_udp_and_tcp_keeps_the_id(store, upstream):
    d = ClusterDNS(store, upstreams=[upstream.addr])
    r = ask(d, "api.example.com")
    assert addrs(r) == {"192.0.2.20"} and r.flags & dns.flags.RA
    assert ask(d, "nope.example.com").rcode() == dns.rcode.NXDOMAIN
    assert addrs(ask(d, "api.example.com", proto="tcp")) == {"192.0.2.20"}
    assert [s[0] for s in upstream.seen] == ["udp", "udp", "tcp"]
    assert metric(d, "coredns_forward_requests_total", to=upstream.addr) == 3
    assert metric(d, "coredns_proxy_request_duration_seconds_count", proxy_name="forward", to=upstream.addr,
                  rcode="NXDOMAIN") == 1
    assert metric(d, "coredns_dns_responses_total", plugin="forward", rcode="NOERROR") == 2


def test_forward_impossible_is_a_quick_servfail(store):
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: ICMP port unreachable → ECONNREFUSED
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # listens, never answers
    try:
        for ups, timeout, most in (([], 2.0, 0.05), ([f"127.0.0.1:{port}"], 2.0, 0.5),
                                   ([f"127.0.0.1:{silent.getsockname()[1]}"], 0.3, 1.0)):
            d = ClusterDNS(store, upstreams=ups, forward_timeout=timeout)
            t0 = time.monotonic()
            r = ask(d, "pypi.org")
            took = time.monotonic() - t0
            assert r.rcode() == dns.rcode.SERVFAIL and took < most, (ups, took)
            assert metric(d, "coredns_dns_responses_total", rcode="SERVFAIL", plugin="") == 1
        assert took >= 0.3  # the silent one waited for its timeout
    finally:
        silent.close()


def test_upstreams_default_to_etc_resolv_conf(store):
    d = ClusterDNS(store)
    assert [cdns._fmt_addr(*u) for u in d.upstreams] == cdns.read_upstreams("/etc/resolv.conf")


def test_forward_through_this_machines_resolver(store):
    """pypi.org through the machine's /etc/resolv.conf, when that resolver answers it at all."""
    ups = cdns.read_upstreams()
    if not ups:
        pytest.skip("no nameserver in /etc/resolv.conf")
    host, port = cdns._parse_upstream(ups[0])
    try:
        direct = dns.query.udp(dns.message.make_query("pypi.org", "A"), host, port=port, timeout=2)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"the machine's resolver does not answer: {e}")
    r = ask(ClusterDNS(store), "pypi.org")
    assert r.rcode() == direct.rcode() and addrs(r) == addrs(direct)


# -- over sockets -------------------------------------------------------------------------------------------------------

@pytest.fixture
def served(store, upstream):
    for _ in range(50):  # one port number free for both UDP and TCP (other processes hold TCP ports: retry)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", port))  # serve() listens on it
            break
        except OSError:
            udp.close()
            tcp.close()
    else:
        raise AssertionError("no port free for both UDP and TCP in 50 tries")
    d = ClusterDNS(store, upstreams=[upstream.addr])
    stop = threading.Event()
    t = threading.Thread(target=d.serve, args=(udp, tcp, stop), daemon=True)
    t.start()
    yield d, port
    stop.set()
    t.join(5)
    assert not t.is_alive(), "serve() did not return after stop"
    udp.close()
    tcp.close()


def stub(port: str | int, resolv_conf: str = "nameserver 127.0.0.1\n") -> dns.resolver.Resolver:
    """A stub resolver configured from a resolv.conf text, its nameserver replaced by the test server (as kube-proxy
    sends the kube-dns ClusterIP to CoreDNS)."""
    r = dns.resolver.Resolver(configure=False)
    r.read_resolv_conf(io.StringIO(resolv_conf))
    r.nameservers = ["127.0.0.1"]
    r.port = int(port)
    r.use_search_by_default = True
    r.timeout = r.lifetime = 3
    return r


def test_serve_udp_and_tcp(served):
    d, port = served
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    assert addrs(dns.query.udp(q, "127.0.0.1", port=port, timeout=2)) == {"10.96.0.20"}
    assert addrs(dns.query.tcp(q, "127.0.0.1", port=port, timeout=2)) == {"10.96.0.20"}
    r = stub(port)
    assert {a.to_text() for a in r.resolve("db.default.svc.cluster.local.", "A", tcp=True)} == \
        {"10.244.0.5", "10.244.0.6", "10.244.0.8"}
    assert {a.to_text() for a in r.resolve("api.example.com.", "A")} == {"192.0.2.20"}  # forwarded from the pool
    with pytest.raises(dns.resolver.NXDOMAIN):
        r.resolve("nope.default.svc.cluster.local.", "A")
    # several queries on one TCP connection
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        for name in ("web.default.svc.cluster.local", "empty.default.svc.cluster.local"):
            dns.query.send_tcp(s, dns.message.make_query(name, "A"))
            got, _ = dns.query.receive_tcp(s, expiration=time.time() + 2)
            assert got.rcode() == dns.rcode.NOERROR and got.answer
    assert metric(d, "coredns_dns_requests_total", proto="tcp", type="A") == 4
    assert {q.client.split(":")[0] for q in d.queries} == {"127.0.0.1"}


def test_slow_upstream_does_not_hold_up_cluster_names(store):
    slow = FakeUpstream({"slow.example.com": "192.0.2.99"}, delay=0.6)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    d = ClusterDNS(store, upstreams=[slow.addr])
    stop = threading.Event()
    t = threading.Thread(target=d.serve, args=(udp, None, stop), daemon=True)
    t.start()
    try:
        port = udp.getsockname()[1]
        results: dict[str, float] = {}

        def timed(name: str) -> None:
            t0 = time.monotonic()
            dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
            results[name] = time.monotonic() - t0

        th = threading.Thread(target=timed, args=("slow.example.com",))
        th.start()
        time.sleep(0.1)
        timed("web.default.svc.cluster.local")
        th.join()
        assert results["web.default.svc.cluster.local"] < 0.3 < results["slow.example.com"]
    finally:
        stop.set()
        t.join(5)
        udp.close()
        slow.close()


def test_search_path_from_the_pods_resolv_conf(served):
    d, port = served
    text, events = pod_resolv_conf({"metadata": {"name": "client", "namespace": "default"}, "spec": {}},
                                   cluster_dns=["10.96.0.10"], cluster_domain=ZONE, node_resolv_conf="nameserver 10.0.0.2\n")
    assert events == []
    r = stub(port, text)
    assert r.ndots == 5 and [s.to_text() for s in r.search] == \
        ["default.svc.cluster.local.", "svc.cluster.local.", "cluster.local."]
    for name in ("web", "web.default", "web.default.svc", "web.default.svc.cluster.local."):
        assert {a.to_text() for a in r.resolve(name, "A")} == {"10.96.0.20"}, name
    srv = r.resolve("_http._tcp.web", "SRV")
    assert [a.to_text() for a in srv] == ["0 100 80 web.default.svc.cluster.local."]
    assert srv.qname.to_text() == "_http._tcp.web.default.svc.cluster.local."


def test_ndots_cost_of_an_external_name_is_counted(served, upstream):
    """`api.example.com` with ndots:5 and three search domains: 3 NXDOMAIN from the zone, then 1 forwarded."""
    d, port = served
    text, _ = pod_resolv_conf({"metadata": {"name": "client", "namespace": "team-a"}, "spec": {}},
                              cluster_dns=["10.96.0.10"], cluster_domain=ZONE, node_resolv_conf="")
    before = len(d.queries)
    answer = stub(port, text).resolve("api.example.com", "A")
    assert {a.to_text() for a in answer} == {"192.0.2.20"}
    seen = [(q.qname, q.qtype, q.rcode) for q in list(d.queries)[before:]]
    assert seen == [("api.example.com.team-a.svc.cluster.local.", "A", "NXDOMAIN"),
                    ("api.example.com.svc.cluster.local.", "A", "NXDOMAIN"),
                    ("api.example.com.cluster.local.", "A", "NXDOMAIN"),
                    ("api.example.com.", "A", "NOERROR")]
    assert metric(d, "coredns_dns_requests_total", type="A", zone=".", proto="udp", family="1") == 4
    assert metric(d, "coredns_dns_responses_total", rcode="NXDOMAIN", plugin="kubernetes") == 3
    assert metric(d, "coredns_dns_responses_total", rcode="NOERROR", plugin="forward") == 1
    assert metric(d, "coredns_forward_requests_total", to=upstream.addr) == 1
    assert metric(d, "coredns_dns_request_duration_seconds_count", zone=".") == 4
    assert upstream.seen == [("udp", "api.example.com.", "A")]
    # with a trailing dot the search list is skipped: one query
    before = len(d.queries)
    stub(port, text).resolve("api.example.com.", "A")
    assert len(d.queries) - before == 1


def test_metric_names_and_label_sets_match_coredns(store):
    d = ClusterDNS(store, upstreams=[])
    ask(d, "web.default.svc.cluster.local")
    ask(d, "version.bind", "TXT", rdclass="CH")
    ask(d, "web.default.svc.cluster.local", "NAPTR")
    fams = {f.name: f for f in text_string_to_metric_families(d.metrics_text().decode())}
    labels = {name: {tuple(sorted(s.labels)) for s in fams[name].samples} for name in fams}
    assert labels["coredns_dns_requests"] == {("family", "proto", "server", "type", "view", "zone")}
    assert labels["coredns_dns_responses"] == {("plugin", "rcode", "server", "view", "zone")}
    assert ("le", "server", "view", "zone") in labels["coredns_dns_request_duration_seconds"]
    assert fams["coredns_dns_requests"].type == "counter" and fams["coredns_dns_request_duration_seconds"].type == "histogram"
    assert metric(d, "coredns_dns_requests_total", zone="dropped") == 1  # the CHAOS query
    assert metric(d, "coredns_dns_requests_total", type="other") == 1  # NAPTR is not in CoreDNS's list
    assert metric(d, "coredns_dns_requests_total", server="dns://:53", view="", type="A") == 1
    les = sorted({float(s.labels["le"]) for s in fams["coredns_dns_request_duration_seconds"].samples
                  if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"})
    assert les[0] == 0.00025 and les[-1] == 8.192 and len(les) == 16


def test_programming_latency_is_observed_from_the_trigger_time(store):
    d = ClusterDNS(store, upstreams=[])
    ask(d, "web.default.svc.cluster.local")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 2)) + ".5Z"
    store.create("discovery.k8s.io/v1/endpointslices",
                 eps("web-1", "web", [ep("10.244.0.50")], annotations={cdns.TRIGGER_TIME: stamp}))
    ask(d, "web.default.svc.cluster.local")
    assert metric(d, "coredns_kubernetes_dns_programming_duration_seconds_count", service_kind="cluster_ip") == 1
    total = metric(d, "coredns_kubernetes_dns_programming_duration_seconds_sum", service_kind="cluster_ip")
    assert 1.0 < total < 4.0


def test_doctests_run():
    for mod in (cdns, resolvconf, _dnswire):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


# -- resolv.conf --------------------------------------------------------------------------------------------------------

NODE = """# generated by the node
nameserver 10.0.0.2
nameserver 10.0.0.3
search corp.example lab.example.
options timeout:2 attempts:3
"""


def pod(policy: str | None = None, host_network: bool = False, dns_config: dict | None = None, ns: str = "team-a") -> dict:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if policy:
        spec["dnsPolicy"] = policy
    if host_network:
        spec["hostNetwork"] = True
    if dns_config is not None:
        spec["dnsConfig"] = dns_config
    return {"metadata": {"name": "p", "namespace": ns, "uid": "u-1"}, "spec": spec}


def conf(p: dict, cluster_dns: list[str] | None = None, node: str | None = NODE,
         domain: str = ZONE) -> tuple[str, list[tuple[str, str]]]:
    return pod_resolv_conf(p, cluster_dns=["10.96.0.10"] if cluster_dns is None else cluster_dns,
                           cluster_domain=domain, node_resolv_conf=node)


@pytest.mark.parametrize("policy, host_network, expected", [
    (None, False, "search team-a.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n"
                  "nameserver 10.96.0.10\noptions ndots:5\n"),
    ("ClusterFirst", False, "search team-a.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n"
                            "nameserver 10.96.0.10\noptions ndots:5\n"),
    ("ClusterFirst", True, "search corp.example lab.example\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
                           "options timeout:2 attempts:3\n"),
    ("ClusterFirstWithHostNet", True, "search team-a.svc.cluster.local svc.cluster.local cluster.local corp.example "
                                      "lab.example\nnameserver 10.96.0.10\noptions ndots:5\n"),
    ("Default", False, "search corp.example lab.example\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
                       "options timeout:2 attempts:3\n"),
])
def test_resolv_conf_per_dns_policy(policy, host_network, expected):
    assert conf(pod(policy, host_network)) == (expected, [])


def test_resolv_conf_none_takes_dns_config_only():
    text, events = conf(pod("None", dns_config={"nameservers": ["1.1.1.1"], "searches": ["a.example"],
                                                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}))
    assert text == "search a.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n" and events == []


def test_resolv_conf_dns_config_merges_as_the_kubelet_does():
    text, _ = conf(pod(dns_config={"nameservers": ["10.96.0.10", "1.1.1.1"], "searches": ["cluster.local", "x.example"],
                                   "options": [{"name": "ndots", "value": "2"}, {"name": "single-request-reopen"}]}))
    assert text == ("search team-a.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example x.example\n"
                    "nameserver 10.96.0.10\nnameserver 1.1.1.1\noptions ndots:2 single-request-reopen\n")
    text, _ = conf(pod("Default", dns_config={"options": [{"name": "timeout", "value": "1"}, {"name": "rotate"}]}))
    assert text.endswith("options timeout:1 attempts:3 rotate\n")


def test_resolv_conf_limits_trim_with_dns_config_forming_events():
    text, events = conf(pod(dns_config={"nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9"]}))
    assert text.count("nameserver") == 3 and "9.9.9.9" not in text
    assert events == [("DNSConfigForming", "Nameserver limits were exceeded, some nameservers have been omitted, "
                                           "the applied nameserver line is: 10.96.0.10 1.1.1.1 8.8.8.8")]
    many = [f"d{i}.example" for i in range(40)]
    text, events = conf(pod(dns_config={"searches": many}))
    search = text.splitlines()[0].split()[1:]
    assert len(search) == 32 and search[-1] == "d26.example"
    assert events == [("DNSConfigForming", "Search Line limits were exceeded, some search paths have been omitted, "
                                           "the applied search line is: " + " ".join(search))]
    long = ["x" * 254 + ".example", *(f"{'y' * 200}{i}.example" for i in range(12))]
    text, events = conf(pod("None", dns_config={"nameservers": ["1.1.1.1"], "searches": long}))
    line = text.splitlines()[0].removeprefix("search ")
    assert len(line) <= 2048 and "x" * 254 not in line and len(line.split()) == 9
    assert [e[0] for e in events] == ["DNSConfigForming"]


def test_resolv_conf_missing_cluster_dns_and_empty_resolv_conf_flag():
    text, events = conf(pod(), cluster_dns=[])
    assert text == "search corp.example lab.example\nnameserver 10.0.0.2\nnameserver 10.0.0.3\noptions timeout:2 attempts:3\n"
    assert events == [("MissingClusterDNS", 'pod: "p_team-a(u-1)". kubelet does not have ClusterDNS IP configured and '
                                            'cannot create Pod using "ClusterFirst" policy. Falling back to "Default" policy.')]
    assert conf(pod("Default"), node=None) == ("search .\nnameserver 127.0.0.1\n", [])
    assert conf(pod(), domain="")[0] == "search corp.example lab.example\nnameserver 10.96.0.10\noptions ndots:5\n"


def test_parse_resolv_conf_last_search_and_options_win():
    assert parse_resolv_conf("search a\nsearch b c.\noptions x\noptions y:1\nnameserver 1.1.1.1\nnameserver\n") == \
        (["1.1.1.1"], ["b", "c"], ["y:1"])


def test_resolv_conf_cluster_search_is_deduplicated_against_the_nodes():
    node = "nameserver 10.0.0.2\nsearch svc.cluster.local corp.example cluster.local\n"
    text, _ = conf(pod(ns="default"), node=node)
    assert text.splitlines()[0] == "search default.svc.cluster.local svc.cluster.local cluster.local corp.example"
