"""The lab's kube-proxy: upstream's names and layouts (pure), then the kernel (root, throwaway namespaces).

Reference data: /work/shared/reference/networking.md §1–2 (hashes recomputed there against upstream fixtures;
Fixture A = ``TestOverallIPTablesRulesWithMultipleServices`` ns4/svc4, Fixture B = nftables ``baseRules`` + svc4).
"""

from __future__ import annotations

import collections
import doctest
import importlib
import re
import subprocess
import threading
import time
from typing import Any

import pytest

from kperflab.lab.events import Recorder
from kperflab.lab.network import kubeproxy as kpmod
from kperflab.lab.network import proxy_iptables as ipt
from kperflab.lab.network import proxy_nftables as nft
from kperflab.lab.network.kubeproxy import KubeProxy, go_time, parse_duration
from kperflab.lab.network.proxy_common import CommandError, Endpoint, ServicePort, service_ports
from kperflab.lab.store import Store

from .conftest import needs_root


def sp(ns: str, name: str, port_name: str, ip: str, eps: list[str], port: int = 80, proto: str = "TCP",
       node_port: int = 0, target: int = 80) -> ServicePort:
    return ServicePort(ns, name, port_name, proto, ip, port, node_port=node_port,
                       endpoints=tuple(Endpoint(e, target) for e in eps))


SVC4 = sp("ns4", "svc4", "p80", "172.30.0.44", ["10.180.0.4", "10.180.0.5"])


# -- names -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ns,name,port,proto,want", [
    ("ns1", "svc1", "p80", "TCP", "XPGD46QRK7WJZT7O"),
    ("default", "kubernetes", "https", "TCP", "NPX46M4PTMTKRN6Y"),
    ("kube-system", "kube-dns", "dns", "UDP", "TCOU7JCQXEZGVUNU"),
    ("ns4", "svc4", "p80", "TCP", "4SW47YFZTEDKD3PK"),
])
def test_iptables_service_chain_names(ns, name, port, proto, want):
    s = sp(ns, name, port, "10.96.0.1", ["10.0.0.1"], proto=proto)
    assert ipt.service_chain(s) == "KUBE-SVC-" + want
    assert ipt.external_chain(s) == "KUBE-EXT-" + want


@pytest.mark.parametrize("spn,ep,want", [
    ("ns1/svc1:p80", "10.180.0.1:80", "SXIVWICOYRO3J4NJ"),
    ("ns4/svc4:p80", "10.180.0.4:80", "UKSFD7AGPMPPLUHC"),
    ("ns4/svc4:p80", "10.180.0.5:80", "C6EBXVWJJZMIWKLZ"),
])
def test_iptables_endpoint_chain_names(spn, ep, want):
    assert ipt.endpoint_chain_name(spn, "tcp", ep) == "KUBE-SEP-" + want


def test_unnamed_port_has_no_colon():
    s = sp("ns", "svc", "", "10.96.0.2", ["10.0.0.1"])
    assert s.svc_port_name == "ns/svc"
    assert nft.chain_base(s).endswith("-ns/svc/tcp/")


@pytest.mark.parametrize("ns,name,port,proto,want", [
    ("ns1", "svc1", "p80", "TCP", "ULMVA6XW"),
    ("default", "kubernetes", "https", "TCP", "2QRHZV4L"),
    ("kube-system", "kube-dns", "dns", "UDP", "FY5PMXPG"),
    ("ns4", "svc4", "p80", "TCP", "LAUZTJTB"),
])
def test_nftables_service_chain_names(ns, name, port, proto, want):
    s = sp(ns, name, port, "10.96.0.1", [], proto=proto)
    assert nft.chain_base(s) == f"{want}-{ns}/{name}/{proto.lower()}/{port}"


@pytest.mark.parametrize("svc,ip,port,want", [
    (SVC4, "10.180.0.4", 80, "endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80"),
    (SVC4, "10.180.0.5", 80, "endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80"),
    (sp("default", "kubernetes", "https", "10.255.0.1", []), "10.128.0.16", 6443,
     "endpoint-573J25N3-default/kubernetes/tcp/https__10.128.0.16/6443"),
])
def test_nftables_endpoint_chain_names(svc, ip, port, want):
    assert nft.endpoint_chain(svc, ip, port) == want


def test_masquerade_mark_is_go_percent_hash_08x():
    assert ipt.masquerade_mark(14) == "0x00004000"
    assert ipt.masquerade_mark(0) == "0x00000001"


# -- what kube-proxy reads ----------------------------------------------------------------------------------------

def _slice(ns, svc, name, ports, eps, labels=None, address_type="IPv4"):
    return {"metadata": {"namespace": ns, "name": name,
                         "labels": {"kubernetes.io/service-name": svc} if labels is None else labels},
            "addressType": address_type, "ports": ports, "endpoints": eps}


def test_service_ports_from_objects():
    services = [
        {"metadata": {"namespace": "a", "name": "web"},
         "spec": {"clusterIP": "10.96.0.5", "type": "NodePort",
                  "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                            {"name": "dns", "port": 53, "protocol": "UDP"}]}},
        {"metadata": {"namespace": "a", "name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
        {"metadata": {"namespace": "a", "name": "ext"}, "spec": {"type": "ExternalName", "externalName": "x.example"}},
        {"metadata": {"namespace": "a", "name": "other", "labels": {"service.kubernetes.io/service-proxy-name": "x"}},
         "spec": {"clusterIP": "10.96.0.6", "ports": [{"port": 80}]}},
    ]
    slices = [
        _slice("a", "web", "web-1", [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
               [{"addresses": ["10.244.0.20"]}, {"addresses": ["10.244.0.3"], "conditions": {"ready": True}},
                {"addresses": ["10.244.0.4"], "conditions": {"ready": False}}]),
        _slice("a", "web", "web-2", [{"name": "http", "port": 8080, "protocol": "TCP"}],
               [{"addresses": ["10.244.0.3"]}, {"addresses": ["10.244.0.100"]}]),  # duplicate merged
        _slice("a", "web", "web-3", [{"name": "http", "port": 8080, "protocol": "TCP"}], [{"addresses": ["10.9.9.9"]}],
               labels={}),  # no service-name label: ignored
        _slice("a", "web", "web-4", [{"name": "http", "port": 8080}], [{"addresses": ["fd00::1"]}], address_type="IPv6"),
    ]
    got = service_ports(services, slices)
    assert [(s.name, s.port_name, s.protocol) for s in got] == [("web", "dns", "UDP"), ("web", "http", "TCP")]
    dns, http = got
    assert [str(e) for e in dns.endpoints] == ["10.244.0.20:5353", "10.244.0.3:5353"]
    # sorted by the ip:port string as upstream's byEndpoint: "10.244.0.100" < "10.244.0.20" < "10.244.0.3"
    assert [str(e) for e in http.endpoints] == ["10.244.0.100:8080", "10.244.0.20:8080", "10.244.0.3:8080"]
    assert http.node_port == 30080 and dns.node_port == 0


# -- iptables ---------------------------------------------------------------------------------------------------

FIXTURE_A = """\
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
:KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
COMMIT
"""


def tables(text: str) -> dict[str, tuple[set[str], dict[str, list[str]]]]:
    """restore text → table → (declared chains, rules per chain in order): the order that matters to iptables is the
    order of rules within a chain (upstream's tests sort chains the same way)."""
    out: dict[str, tuple[set[str], dict[str, list[str]]]] = {}
    cur = ""
    for line in text.splitlines():
        if line.startswith("*"):
            cur = line[1:]
            out[cur] = (set(), {})
        elif line.startswith(":"):
            out[cur][0].add(line.split()[0][1:])
        elif line.startswith("-A "):
            out[cur][1].setdefault(line.split()[1], []).append(line)
    return out


def test_fixture_a_iptables_layout():
    rs = ipt.render([SVC4], ipt.Config(cluster_cidr="10.0.0.0/8", random_fully=False))
    # upstream's unit-test fake sets masqueradeMark "0x4000"; the binary formats %#08x = 0x00004000 (same mark)
    got = tables(rs.text.replace("0x00004000", "0x4000"))["nat"]
    want = tables(FIXTURE_A)["nat"]
    assert got == want
    assert rs.nat_rules == 13 == 5 + 1 * (2 + 3 * 2)
    assert rs.text.index("*filter") < rs.text.index("*nat")  # one restore: filter, then nat


def test_no_endpoints_is_a_filter_reject():
    s = sp("ns6", "svc6", "p80", "172.30.0.46", [])
    rs = ipt.render([s], ipt.Config(cluster_cidr="10.0.0.0/8"))
    t = tables(rs.text)
    assert t["filter"][1]["KUBE-SERVICES"] == [
        '-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT']
    assert "KUBE-SERVICES" not in {ln.split()[1] for ln in rs.text.split("*nat")[1].splitlines()
                                   if ln.startswith("-A") and "cluster IP" in ln}
    assert not any(c.startswith("KUBE-SVC-") for c in t["nat"][0])


@pytest.mark.parametrize("services,endpoints", [(1, 1), (1, 2), (1, 10), (10, 10), (3, 0), (100, 11)])
def test_nat_rule_count_formula(services, endpoints):
    sps = [sp("ns", f"s{i:03d}", "p", f"10.96.{i // 250}.{i % 250 + 1}",
              [f"10.244.{k // 250}.{k % 250 + 2}" for k in range(endpoints)]) for i in range(services)]
    rs = ipt.render(sps, ipt.Config())
    written = sum(len(rules) for rules in tables(rs.text)["nat"][1].values())
    formula = 5 + services * (2 + 3 * endpoints) if endpoints else 5
    assert rs.nat_rules == written == formula
    no_eps = services if endpoints == 0 else 0
    assert rs.filter_rules == 3 + 1 + no_eps  # KUBE-FORWARD x3, KUBE-FIREWALL (localhost NodePorts), REJECTs
    assert ipt.render(sps, ipt.Config(localhost_nodeports=False)).filter_rules == 3 + no_eps


def test_probabilities_make_a_uniform_choice():
    s = sp("ns", "s", "p", "10.96.0.9", ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    rules = tables(ipt.render([s]).text)["nat"][1][ipt.service_chain(s)]
    probs = [re.search(r"--probability (\S+)", r).group(1) if "--probability" in r else None for r in rules[1:]]
    assert probs == ["0.3333333333", "0.5000000000", None]


def test_nodeport_goes_through_the_ext_chain():
    s = sp("ns3", "svc3", "p80", "172.30.0.43", ["10.180.0.3"], node_port=3003)
    nat = tables(ipt.render([s]).text)["nat"][1]
    ext, svc = ipt.external_chain(s), ipt.service_chain(s)
    assert nat["KUBE-NODEPORTS"] == [f"-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j {ext}"]
    assert nat[ext] == [f'-A {ext} -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ',
                        f"-A {ext} -j {svc}"]


def test_large_cluster_mode_drops_comments_and_caches_all_chains():
    small = [sp("ns", f"s{i}", "p", f"10.96.0.{i + 1}", [f"10.244.0.{k + 2}" for k in range(10)]) for i in range(100)]
    big = small + [sp("ns", "zz", "p", "10.96.1.1", ["10.244.1.1"])]  # 1001 endpoints > 1000
    rs_small, rs_big = ipt.render(small), ipt.render(big)
    assert not rs_small.large_cluster_mode and rs_big.large_cluster_mode
    sep = ipt.endpoint_chain_name("ns/s0:p", "tcp", "10.244.0.2:80")
    assert "--comment ns/s0:p" in tables(rs_small.text)["nat"][1][sep][0]
    assert "--comment" not in tables(rs_big.text)["nat"][1][sep][0]
    assert "\n*nat\n-Z\n" in rs_big.text and "-Z" not in rs_small.text.split()


def test_partial_render_leaves_unchanged_chains_out_and_deletes_stale_ones():
    a = sp("ns", "a", "p", "10.96.0.1", ["10.244.0.2", "10.244.0.3"])
    b = sp("ns", "b", "p", "10.96.0.2", ["10.244.0.4"])
    full = ipt.render([a, b])
    a2 = sp("ns", "a", "p", "10.96.0.1", ["10.244.0.2"])  # one endpoint gone
    part = ipt.render([a2, b], unchanged=frozenset({b.key}), stale_candidates=full.active_chains)
    declared = tables(part.text)["nat"][0]
    gone = ipt.endpoint_chain_name("ns/a:p", "tcp", "10.244.0.3:80")
    assert ipt.service_chain(b) not in declared  # unchanged: left alone
    assert ipt.service_chain(a2) in declared and gone in declared
    assert f"-X {gone}" in part.text.splitlines()
    assert part.nat_rules == 5 + (2 + 3) + (2 + 3)  # counts include the unchanged service
    assert part.nat_rules_written == part.nat_rules - (1 + 3)  # b's KUBE-SERVICES rule is always rewritten
    assert part.deleted_chains == (gone,)


def test_cleanup_restore_only_touches_kube_proxy_chains():
    text = ipt.cleanup_restore("nat", ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-X", "KUBE-SEP-Y", "MY-CHAIN", "KUBE-MARK-MASQ"])
    assert text is not None
    lines = text.splitlines()
    assert {ln for ln in lines if ln.startswith("-X")} == {"-X KUBE-MARK-MASQ", "-X KUBE-SEP-Y", "-X KUBE-SERVICES", "-X KUBE-SVC-X"}
    assert ipt.cleanup_restore("filter", ["INPUT", "FORWARD"]) is None


# -- nftables ---------------------------------------------------------------------------------------------------

FIXTURE_B = """\
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy services
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add chain ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80
add rule ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 ip saddr 10.180.0.5 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 meta l4proto tcp dnat to 10.180.0.5:80
add chain ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 ip saddr 10.180.0.4 jump mark-for-masquerade
add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 meta l4proto tcp dnat to 10.180.0.4:80
add chain ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 ip daddr 172.30.0.44 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 , 1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }
add element ip kube-proxy service-ips { 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80 }
"""


def expand_elements(text: str) -> list[str]:
    """One line per element (the lab batches a container's elements into one statement), hex marks unpadded."""
    out = []
    for line in text.replace("0x00004000", "0x4000").splitlines():
        m = re.match(r"(add|delete) element (ip kube-proxy \S+) \{ (.*) \}$", line)
        if m:
            out += [f"{m.group(1)} element {m.group(2)} {{ {e} }}" for e in m.group(3).split(", ")]
        else:
            out.append(line)
    return out


def test_fixture_b_nftables_layout():
    tx = nft.render_full([SVC4], nft.Config(cluster_cidr="10.0.0.0/8"))
    lines = expand_elements(tx.text)
    missing = [ln for ln in FIXTURE_B.splitlines() if ln not in lines]
    assert missing == []
    assert "add element ip kube-proxy cluster-ips { 172.30.0.44 }" in lines
    assert tx.state.dispatch == "vmap"


def _defined_before_use(lines: list[str]) -> list[str]:
    made: set[str] = set()
    problems = []
    for i, line in enumerate(lines):
        m = re.match(r"add (chain|map|set) ip kube-proxy (\S+)", line)
        if m:
            made.add(m.group(2))
            continue
        m = re.match(r"add rule ip kube-proxy (\S+) ", line)
        refs = re.findall(r"(?:goto|jump) (\S+?)(?: |$|,)", line) + re.findall(r"@(\S+)", line)
        if m:
            refs.append(m.group(1))
        m = re.match(r"add element ip kube-proxy (\S+) ", line)
        if m:
            refs.append(m.group(1))
        problems += [f"line {i}: {r}" for r in refs if r not in made]
    return problems


@pytest.mark.parametrize("dispatch", ["vmap", "cascade"])
def test_nftables_objects_exist_before_they_are_referenced(dispatch):
    sps = [SVC4, sp("ns3", "svc3", "p80", "172.30.0.43", ["10.180.0.3"], node_port=3003),
           sp("ns6", "svc6", "p80", "172.30.0.46", [])]
    tx = nft.render_full(sps, nft.Config(node_ips=("192.168.0.2",), endpoint_dispatch=dispatch))
    assert _defined_before_use(tx.text.splitlines()) == []
    assert tx.text.splitlines()[:2] == ["add table ip kube-proxy", "delete table ip kube-proxy"]
    lines = expand_elements(tx.text)
    assert 'add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }' in lines
    assert "add element ip kube-proxy service-nodeports { tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80 }" in lines
    assert sum(1 for ln in tx.text.splitlines() if ln.startswith("add element ip kube-proxy service-ips")) == 1


def test_nftables_cascade_is_a_uniform_choice():
    s = sp("ns", "s", "p", "10.96.0.9", ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    chains = dict(nft.program(s, nft.Config(), "cascade").chains)
    rules = chains["service-" + nft.chain_base(s)]
    eps = [nft.endpoint_chain(s, f"10.0.0.{k}", 80) for k in (1, 2, 3)]
    assert list(rules[1:]) == [f"numgen random mod 3 0 goto {eps[0]}", f"numgen random mod 2 0 goto {eps[1]}", f"goto {eps[2]}"]


def test_nftables_auto_dispatch_switches_past_the_threshold():
    cfg = nft.Config()
    assert cfg.dispatch_for(1000) == "vmap" and cfg.dispatch_for(1001) == "cascade"
    assert nft.Config(endpoint_dispatch="vmap").dispatch_for(10**6) == "vmap"


def test_nftables_partial_transaction_touches_only_changes():
    a = sp("ns", "a", "p", "10.96.0.1", ["10.244.0.2", "10.244.0.3"])
    b = sp("ns", "b", "p", "10.96.0.2", ["10.244.0.4"])
    c = sp("ns", "c", "p", "10.96.0.3", ["10.244.0.5"])
    cfg = nft.Config()
    first = nft.render_full([a, b, c], cfg)
    same = nft.render_partial(first.state, [a, b, c], cfg)
    assert same.text == "" and not same.full
    a2 = sp("ns", "a", "p", "10.96.0.1", ["10.244.0.2"])
    tx = nft.render_partial(first.state, [a2, b], cfg)  # a loses an endpoint, c is deleted, b unchanged
    lines = tx.text.splitlines()
    assert not tx.full and tx.changed == 1
    assert not any("ns/b/" in ln for ln in lines)
    gone_ep = nft.endpoint_chain(a, "10.244.0.3", 80)
    c_chains = ["service-" + nft.chain_base(c), nft.endpoint_chain(c, "10.244.0.5", 80)]
    for ch in [gone_ep, *c_chains]:
        assert f"flush chain ip kube-proxy {ch}" in lines and f"delete chain ip kube-proxy {ch}" in lines
    deletes = [ln for ln in lines if ln.startswith("delete element")]
    assert deletes and all("10.96.0.3" in ln for ln in deletes)
    assert lines.index(deletes[-1]) < min(i for i, ln in enumerate(lines) if ln.startswith("delete chain"))
    assert f"flush chain ip kube-proxy service-{nft.chain_base(a2)}" in lines
    # a change of config (or of the endpoint-choice style) is a full sync
    assert nft.render_partial(tx.state, [a2, b], nft.Config(masquerade_bit=15)).full


def test_nftables_multi_port_service_shares_one_cluster_ip_element():
    p1 = sp("ns", "s", "http", "10.96.0.7", ["10.244.0.2"])
    p2 = sp("ns", "s", "https", "10.96.0.7", ["10.244.0.2"], port=443, target=443)
    tx = nft.render_full([p1, p2])
    assert "add element ip kube-proxy cluster-ips { 10.96.0.7 }" in tx.text.splitlines()
    part = nft.render_partial(tx.state, [p1], nft.Config())
    assert not any("cluster-ips" in ln and ln.startswith("delete") for ln in part.text.splitlines())


# -- KubeProxy with a recording runner (no kernel) ------------------------------------------------------------

class FakeRunner:
    """Records commands; iptables -C says "missing"; failing=True makes restores and nft fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bytes | None]] = []
        self.failing = False

    def __call__(self, argv: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        self.calls.append((argv, stdin))
        rc, out, err = 0, b"", b""
        if argv[:1] == ["iptables"] and "-C" in argv:
            rc = 1
        if self.failing and argv[0] in ("iptables-restore", "nft") and "delete" not in argv:
            rc, err = 2, b"iptables-restore: line 3 failed"
        if argv[0] == "cat":
            out = b"0\n"
        return subprocess.CompletedProcess(argv, rc, out, err)

    def restores(self) -> list[str]:
        return [stdin.decode() for argv, stdin in self.calls if argv[0] == "iptables-restore" and stdin]

    def nft_inputs(self) -> list[str]:
        return [stdin.decode() for argv, stdin in self.calls if argv[:2] == ["nft", "-f"] and stdin]


def lab_store(mode: str | None = None) -> Store:
    s = Store()
    for ns in ("default", "kube-system", "demo"):
        s.create("v1/namespaces", {"metadata": {"name": ns}})
    s.create("v1/services", {"metadata": {"name": "web", "namespace": "demo"},
                             "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    s.create("discovery.k8s.io/v1/endpointslices", {
        "metadata": {"name": "web-1", "namespace": "demo", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.0.10"]}, {"addresses": ["10.244.0.11"]}]})
    if mode is not None:
        set_mode(s, mode)
    return s


def set_mode(s: Store, mode: str) -> None:
    body = {"metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            "data": {"config.conf": f"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: {mode}\n"}}
    if s.try_get("v1/configmaps", "kube-system", "kube-proxy") is None:
        s.create("v1/configmaps", body)
    else:
        s.update("v1/configmaps", body, check_rv=False)


def fake_proxy(s: Store, **kw: Any) -> tuple[KubeProxy, FakeRunner]:
    run = FakeRunner()
    kp = KubeProxy(s, "/nonexistent", cluster_cidr="10.244.0.0/16", node_ips=["10.244.0.1"], runner=run,
                   recorder=Recorder(s, "kube-proxy", "kperflab-lab"), **kw)
    return kp, run


def test_default_mode_is_iptables_and_jumps_are_checked_before_inserting():
    s = lab_store()
    kp, run = fake_proxy(s)
    out = kp.sync()
    assert out["mode"] == "iptables" == kp.mode == kp.proxy_mode_text() and out["full"]
    assert out["rules"] == {"filter": 4, "nat": 13} and out["services"] == 1 and out["endpoints"] == 2
    checks = [a for a, _ in run.calls if a[:1] == ["iptables"] and "-C" in a]
    inserts = [a for a, _ in run.calls if a[:1] == ["iptables"] and "-I" in a]
    assert len(checks) == len(inserts) == len(ipt.jumps()) and inserts[0][5:] == checks[0][5:]
    assert ["iptables", "-w", "-t", "nat", "-I", "PREROUTING", "-m", "comment", "--comment",
            "kubernetes service portals", "-j", "KUBE-SERVICES"] in inserts
    assert run.calls[-1][0] == ipt.Backend.RESTORE
    # a second sync with nothing changed is partial: no jump checks, SVC/SEP chains left out
    n = len(run.calls)
    again = kp.sync()
    assert not again["full"] and not any("-C" in a for a, _ in run.calls[n:])
    assert ":KUBE-SVC-" not in run.restores()[-1] and ":KUBE-SEP-" not in run.restores()[-1]


def test_mode_switch_cleans_the_other_mode_and_resyncs_fully():
    s = lab_store("nftables")
    kp, run = fake_proxy(s)
    assert kp.sync()["mode"] == "nftables"
    assert ["nft", "delete", "table", "ip", "kube-proxy"] not in [a for a, _ in run.calls[-3:]]
    assert any(a[:4] == ["iptables", "-w", "-t", "nat"] and "-D" in a for a, _ in run.calls)  # iptables cleanup ran
    assert run.nft_inputs()[-1].startswith("add table ip kube-proxy\ndelete table ip kube-proxy\n")
    set_mode(s, "iptables")
    n = len(run.calls)
    out = kp.sync()
    assert out["mode"] == "iptables" and out["full"]
    assert ["nft", "delete", "table", "ip", "kube-proxy"] in [a for a, _ in run.calls[n:]]
    set_mode(s, "nftables")
    assert kp.sync()["full"]  # back to nftables: the table is loaded whole again


def test_ipvs_is_refused_with_a_warning_event_on_the_node(monkeypatch):
    monkeypatch.setattr(kpmod, "ipvs_available", lambda *a: False)
    s = lab_store("ipvs")
    kp, run = fake_proxy(s)
    assert kp.sync()["mode"] == "iptables"
    kp.sync()
    events, *_ = s.list("v1/events", "default")
    warn = [e for e in events if e["type"] == "Warning"]
    assert len(warn) == 1 and warn[0]["count"] == 1  # once per ConfigMap version
    assert warn[0]["involvedObject"]["kind"] == "Node" and warn[0]["involvedObject"]["name"] == "kperflab-lab"
    assert "required kernel modules are not loaded: [ip_vs]" in warn[0]["message"]
    assert warn[0]["source"]["component"] == "kube-proxy"


def test_ipvs_detection_reads_sys_module_then_proc_modules(tmp_path):
    modules = tmp_path / "modules"
    modules.write_text("nf_tables 360448 0 - Live 0x0\nip_vs_rr 12288 0 - Live 0x0\n")
    assert kpmod.ipvs_available(str(tmp_path / "nope"), str(modules)) is False  # ip_vs_rr is not ip_vs
    modules.write_text("ip_vs 200704 2 ip_vs_rr, Live 0x0\n")
    assert kpmod.ipvs_available(str(tmp_path / "nope"), str(modules)) is True
    (tmp_path / "ip_vs").mkdir()
    assert kpmod.ipvs_available(str(tmp_path / "ip_vs"), str(tmp_path / "missing")) is True


def test_metrics_are_upstreams_and_per_mode():
    from prometheus_client.parser import text_string_to_metric_families

    s = lab_store()
    kp, run = fake_proxy(s)
    kp.sync()
    fams = {f.name: f for f in text_string_to_metric_families(kp.metrics_text().decode())}
    hist = fams["kubeproxy_sync_proxy_rules_duration_seconds"]
    bounds = [float(x.labels["le"]) for x in hist.samples if x.name.endswith("_bucket") and x.labels["le"] != "+Inf"]
    assert bounds == [0.001 * 2 ** k for k in range(15)]
    assert {"kubeproxy_sync_proxy_rules_iptables_total", "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "kubeproxy_sync_proxy_rules_endpoint_changes", "kubeproxy_sync_proxy_rules_service_changes"} <= set(fams)
    nat = [x.value for x in fams["kubeproxy_sync_proxy_rules_iptables_total"].samples if x.labels.get("table") == "nat"]
    assert nat == [13.0]
    assert "kubeproxy_sync_proxy_rules_nftables_sync_failures" not in fams
    set_mode(s, "nftables")
    kp.sync()
    text = kp.metrics_text().decode()
    assert "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 0.0" in text
    assert "kubeproxy_sync_proxy_rules_iptables_total" not in text


def test_failed_sync_is_counted_raised_and_followed_by_a_full_sync():
    s = lab_store()
    kp, run = fake_proxy(s)
    kp.sync()
    run.failing = True
    with pytest.raises(CommandError):
        kp.sync()
    assert "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1.0" in kp.metrics_text().decode()
    assert "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total 1.0" in kp.metrics_text().decode()
    run.failing = False
    assert kp.sync()["full"]


def test_run_loop_never_raises_and_retries(monkeypatch):
    s = lab_store()
    kp, run = fake_proxy(s, min_sync_period=0.05)
    run.failing = True
    kp._sync_period = 0.2  # retry soon (the config's syncPeriod)
    monkeypatch.setattr(kpmod, "DEFAULT_SYNC_PERIOD", 0.2)
    stop = threading.Event()
    t = threading.Thread(target=kp.run, args=(stop,), daemon=True)
    t.start()
    time.sleep(0.8)
    failures = len(run.restores())
    assert failures >= 2 and t.is_alive()  # tried, failed, retried
    run.failing = False
    deadline = time.time() + 3
    while kp.healthz()[0] != 200 or kp._last_updated is None:
        assert time.time() < deadline
        time.sleep(0.05)
    s.update("discovery.k8s.io/v1/endpointslices", {
        "metadata": {"name": "web-1", "namespace": "demo", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.0.10"]}]}, check_rv=False)
    deadline = time.time() + 3
    while "10.244.0.11" in run.restores()[-1]:
        assert time.time() < deadline
        time.sleep(0.05)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    events, *_ = s.list("v1/events", "default")
    assert any(e["reason"] == "Starting" and e["type"] == "Normal" for e in events)


def test_run_loop_debounces_bursts():
    s = lab_store()
    kp, run = fake_proxy(s, min_sync_period=0.5)
    stop = threading.Event()
    t = threading.Thread(target=kp.run, args=(stop,), daemon=True)
    t.start()
    time.sleep(0.2)
    for i in range(20):  # a burst of changes inside one period
        s.create("v1/services", {"metadata": {"name": f"b{i}", "namespace": "demo"},
                                 "spec": {"clusterIP": f"10.96.1.{i + 1}", "ports": [{"port": 80}]}})
        time.sleep(0.01)
    time.sleep(1.2)
    stop.set()
    t.join(5)
    syncs = len(run.restores())
    assert 2 <= syncs <= 4  # the first sync, then one or two for the burst — not 20
    assert "10.96.1.20" in run.restores()[-1]


def test_healthz_follows_queued_changes_and_node_eligibility():
    now = [1000.0]
    s = lab_store()
    kp, run = fake_proxy(s, clock=lambda: now[0])
    code, body = kp.healthz()
    assert code == 200 and body["nodeEligible"] is True
    kp.sync()
    kp._pending_since = now[0]
    now[0] += 61  # a change waiting longer than 2 x syncPeriod (30 s)
    code, body = kp.healthz()
    assert code == 503 and body["lastUpdated"].startswith("1970-01-01 00:16:40 +0000 UTC m=+")
    kp._pending_since = None
    s.create("v1/nodes", {"metadata": {"name": "kperflab-lab"},
                          "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}]}})
    code, body = kp.healthz()
    assert code == 503 and body["nodeEligible"] is False
    assert kp.healthz_body()[1].endswith(b', "nodeEligible": false}')
    assert 'kubeproxy_proxy_healthz_total{code="503"} 3.0' in kp.metrics_text().decode()


def test_small_helpers():
    assert parse_duration("1s", 0) == 1.0 and parse_duration(None, 30.0) == 30.0 and parse_duration(2, 0) == 2.0
    assert go_time(0.0, 1.0) == "1970-01-01 00:00:00 +0000 UTC m=+1.000000000"


@pytest.mark.parametrize("name", ["proxy_common", "proxy_iptables", "proxy_nftables", "kubeproxy"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(f"kperflab.lab.network.{name}"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# -- the kernel (root): a throwaway node with two pods and a client -------------------------------------------

def _host_rules() -> tuple[str, str]:
    """The host's iptables and nftables rulesets without counters (they change with traffic)."""
    save = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    save = "\n".join(re.sub(r"\[\d+:\d+\]", "", ln) for ln in save.splitlines() if not ln.startswith("#"))
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    ruleset = re.sub(r"counter packets \d+ bytes \d+", "counter", ruleset)
    return save, ruleset


@pytest.fixture
def testbed():
    from kperflab.lab.network.proxy_testbed import Testbed, leftovers

    before = _host_rules()
    tb = Testbed(pods=3)
    try:
        tb.up()
        yield tb
    finally:
        tb.close()
        assert [n for n in leftovers() if n.startswith(tb.prefix)] == []
    assert _host_rules() == before, "the host's own rules changed"


def node(tb, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", tb.node, *argv], capture_output=True, text=True, check=True).stdout


def kernel_store(tb, pods=(0, 1), mode: str | None = None) -> Store:
    s = Store()
    for ns in ("default", "kube-system", "demo"):
        s.create("v1/namespaces", {"metadata": {"name": ns}})
    s.create("v1/services", {"metadata": {"name": "web", "namespace": "demo"},
                             "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    set_endpoints(s, tb, pods)
    if mode:
        set_mode(s, mode)
    return s


def set_endpoints(s: Store, tb, pods) -> None:
    body = {"metadata": {"name": "web-1", "namespace": "demo", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": tb.SERVER_PORT, "protocol": "TCP"}],
            "endpoints": [{"addresses": [tb.pod_ip(i)], "conditions": {"ready": True}} for i in pods]}
    if s.try_get("discovery.k8s.io/v1/endpointslices", "demo", "web-1") is None:
        s.create("discovery.k8s.io/v1/endpointslices", body)
    else:
        s.update("discovery.k8s.io/v1/endpointslices", body, check_rv=False)


def spread(tb, n=200) -> collections.Counter:
    return collections.Counter(tb.ask("10.96.0.50", 80, n))


@needs_root
def test_kernel_both_modes_reach_both_endpoints_and_switching_cleans_up(testbed):
    tb = testbed
    assert node(tb, "sysctl", "-n", "net.bridge.bridge-nf-call-iptables").strip() == "1"
    s = kernel_store(tb)
    kp = KubeProxy(s, tb.node_path, cluster_cidr=tb.CLUSTER_CIDR, node_ips=[tb.BRIDGE_IP],
                   recorder=Recorder(s, "kube-proxy", "kperflab-lab"))
    try:
        assert kp.sync()["mode"] == "iptables"
        got = spread(tb)
        assert set(got) == {"pod0", "pod1"} and min(got.values()) >= 40, got  # 200 draws of p=1/2
        saved = node(tb, "iptables-save")
        assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in saved
        assert "table ip kube-proxy" not in node(tb, "nft", "list", "tables")

        set_mode(s, "nftables")
        assert kp.sync()["mode"] == "nftables"
        assert "KUBE-" not in node(tb, "iptables-save")
        assert "table ip kube-proxy" in node(tb, "nft", "list", "tables")
        got = spread(tb)
        assert set(got) == {"pod0", "pod1"} and min(got.values()) >= 40, got

        set_mode(s, "iptables")
        assert kp.sync()["mode"] == "iptables"
        assert "table ip kube-proxy" not in node(tb, "nft", "list", "tables")
        assert set(spread(tb, 60)) == {"pod0", "pod1"}
    finally:
        kp.cleanup()
    assert "KUBE-" not in node(tb, "iptables-save")
    assert "kube-proxy" not in node(tb, "nft", "list", "tables")
    assert set(tb.ask("10.96.0.50", 80, 2, timeout=0.5)) == {""}  # nothing answers the ClusterIP any more


@needs_root
@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_kernel_bridge_reply_path(testbed, mode):
    """A pod's reply to a client on the same bridge is un-DNATed only if bridged frames pass the IPv4 hooks
    (bridge-nf-call-iptables=1), or if the connection was masqueraded to the node (masqueradeAll)."""
    tb = testbed
    s = kernel_store(tb, mode=mode)
    kp = KubeProxy(s, tb.node_path, cluster_cidr=tb.CLUSTER_CIDR, node_ips=[tb.BRIDGE_IP])
    try:
        kp.sync()
        node(tb, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0")
        assert set(tb.ask("10.96.0.50", 80, 4, timeout=0.5)) == {""}
        s.update("v1/configmaps", {"metadata": {"name": "kube-proxy", "namespace": "kube-system"}, "data": {
            "config.conf": f"mode: {mode}\niptables: {{masqueradeAll: true}}\nnftables: {{masqueradeAll: true}}\n"}},
            check_rv=False)
        assert kp.sync()["full"]
        assert set(tb.ask("10.96.0.50", 80, 20, timeout=0.5)) == {"pod0", "pod1"}
    finally:
        node(tb, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")
        kp.cleanup()


@needs_root
@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_kernel_incremental_syncs_follow_endpoints_and_services(testbed, mode):
    tb = testbed
    s = kernel_store(tb, pods=(0, 1), mode=mode)
    kp = KubeProxy(s, tb.node_path, cluster_cidr=tb.CLUSTER_CIDR, node_ips=[tb.BRIDGE_IP])
    try:
        assert kp.sync()["full"]
        set_endpoints(s, tb, (1, 2))  # pod0 leaves, pod2 joins
        out = kp.sync()
        assert not out["full"]
        got = spread(tb, 120)
        assert set(got) == {"pod1", "pod2"}, got
        listing = node(tb, "iptables-save", "-t", "nat") if mode == "iptables" else node(tb, "nft", "list", "table", "ip", "kube-proxy")
        assert tb.pod_ip(0) not in listing  # the stale endpoint chain is gone
        set_endpoints(s, tb, ())  # no endpoints: rejected at once, not a timeout
        assert not kp.sync()["full"]
        t0 = time.perf_counter()
        assert tb.ask("10.96.0.50", 80, 1, timeout=5) == [""]
        assert time.perf_counter() - t0 < 1.0
        s.remove("v1/services", "demo", "web")
        assert not kp.sync()["full"]
        listing = node(tb, "iptables-save") if mode == "iptables" else node(tb, "nft", "list", "table", "ip", "kube-proxy")
        assert "10.96.0.50" not in listing and "demo/web" not in listing
    finally:
        kp.cleanup()


@needs_root
@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_kernel_large_cluster_shapes_load_and_balance(testbed, mode):
    """Past 1000 endpoints: iptables restores with "-Z" and no comments, nftables picks endpoints by cascade."""
    tb = testbed
    s = kernel_store(tb, pods=(0, 1), mode=mode)
    for i in range(600):  # 600 services x 2 endpoints + web's 2 = 1202 endpoints
        s.create("v1/services", {"metadata": {"name": f"f{i:03d}", "namespace": "demo"},
                                 "spec": {"clusterIP": f"10.97.{i // 250}.{i % 250 + 1}", "ports": [{"name": "http", "port": 80}]}})
        s.create("discovery.k8s.io/v1/endpointslices", {
            "metadata": {"name": f"f{i:03d}-1", "namespace": "demo", "labels": {"kubernetes.io/service-name": f"f{i:03d}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": tb.SERVER_PORT}],
            "endpoints": [{"addresses": [tb.pod_ip(0)]}, {"addresses": [tb.pod_ip(2)]}]})
    kp = KubeProxy(s, tb.node_path, cluster_cidr=tb.CLUSTER_CIDR, node_ips=[tb.BRIDGE_IP])
    try:
        out = kp.sync()
        assert out["endpoints"] == 1202
        if mode == "iptables":
            assert out["large_cluster_mode"] and out["rules"]["nat"] == 5 + 601 * (2 + 3 * 2)
        else:
            assert out["endpoint_dispatch"] == "cascade"
            assert "numgen random mod 2 0 goto" in node(tb, "nft", "list", "chain", "ip", "kube-proxy",
                                                          "service-" + nft.chain_base(sp("demo", "web", "http", "", [])))
        got = spread(tb)
        assert set(got) == {"pod0", "pod1"} and min(got.values()) >= 40, got
        assert set(tb.ask("10.97.2.100", 80, 40)) == {"pod0", "pod2"}  # the last of the 600
    finally:
        kp.cleanup()


@needs_root
def test_kernel_run_loop_follows_the_store(testbed):
    tb = testbed
    s = kernel_store(tb, pods=(0,))
    kp = KubeProxy(s, tb.node_path, cluster_cidr=tb.CLUSTER_CIDR, node_ips=[tb.BRIDGE_IP], min_sync_period=0.2)
    stop = threading.Event()
    t = threading.Thread(target=kp.run, args=(stop,), daemon=True)
    t.start()
    try:
        deadline = time.time() + 10
        while set(spread(tb, 4)) != {"pod0"}:
            assert time.time() < deadline
            time.sleep(0.1)
        set_endpoints(s, tb, (2,))
        while set(spread(tb, 4)) != {"pod2"}:
            assert time.time() < deadline
            time.sleep(0.1)
        set_mode(s, "nftables")
        while "table ip kube-proxy" not in node(tb, "nft", "list", "tables"):
            assert time.time() < deadline
            time.sleep(0.1)
        assert set(spread(tb, 4)) == {"pod2"}
    finally:
        stop.set()
        t.join(10)
        kp.cleanup()
    assert not t.is_alive()
