"""kube-proxy's nftables mode: ``table ip kube-proxy`` as upstream writes it, loaded as one ``nft -f -`` transaction.

Layout from kubernetes/kubernetes ``pkg/proxy/nftables/proxier.go`` (``setupNFTables``, ``syncProxyRules``,
``writeServiceToEndpointRules``) and the expected output in ``pkg/proxy/nftables/proxier_test.go`` (``baseRules``,
newest version: ``filter-prerouting-pre-dnat``/``filter-output-pre-dnat`` at priority -110, the filter chains at 0):

- base chains ``nat-prerouting``/``nat-output`` (dstnat -100) jump to ``services``; ``nat-postrouting`` (srcnat 100)
  jumps to ``masquerading``; the filter chains send new connections to ``service-endpoints-check`` (services without
  endpoints are rejected through the ``no-endpoint-services`` verdict map and ``reject-chain``),
  ``nodeport-endpoints-check``, ``firewall-check`` and ``cluster-ips-check``;
- dispatch: ``services`` has exactly two rules, ``ip daddr . meta l4proto . th dport vmap @service-ips`` and the
  NodePort one (``ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports``); the packet path is one
  hash lookup whatever the number of services;
- per service port ``service-<H8>-ns/svc/proto/port`` (masquerade off-cluster sources, then pick an endpoint),
  ``external-<H8>-…`` for NodePorts and external IPs, per endpoint ``endpoint-<H8>-ns/svc/proto/port__ip/port``
  (hairpin masquerade, DNAT). ``H8`` = base32(sha256(name))[:8] (``hashAndTruncate``);
- ``mark-for-masquerade``: ``mark set mark or <mark>``; ``masquerading``: return unless marked, clear the mark,
  ``masquerade fully-random``.

Endpoint choice. Upstream writes ``numgen random mod N vmap { 0 : goto …, 1 : goto … }``: an *anonymous* verdict map
per service. Each anonymous set costs the kernel work linear in the sets already in the table (measured on this
machine's 6.18 kernel with ``perf``: ``nf_tables_set_alloc_name`` scans every set with ``sscanf`` to number
``__map%d``, ``nft_set_lookup_global`` walks the table's set list, and ``__nft_set_trans_bind`` walks the whole
transaction), so a full load is quadratic. Measured here, one endpoint per service, the whole table in one
``nft -f``: 1,000 / 2,000 / 5,000 / 10,000 / 20,000 services load in 0.27 / 0.78 / 4.0 / 29 / 176 s — the shape
behind upstream's own slow cold syncs (kubernetes#135639, #139513). A named map shared by all services is worse
(every binding re-validates all its elements: 266 s for 20,000). So the lab keeps upstream's vmap while the cluster
is small and, past ``LARGE_CLUSTER_ENDPOINTS_THRESHOLD`` endpoints (the threshold of the iptables proxier's
"large cluster mode"), writes the same uniform choice without sets: ``numgen random mod (n-i) 0 goto endpoint-i``
for all but the last endpoint, then ``goto endpoint-last`` — the statistic cascade of the iptables mode, in nft.
The dispatch to the service stays one map lookup; the same five sizes load in 0.13 / 0.25 / 0.63 / 1.3 / 2.6 s.

Transactions (``nft -f -``, atomic): a full sync is ``add table`` + ``delete table`` + the whole table again, objects
before the rules and elements that reference them (``nft`` refuses forward references), each map's or set's elements
in one ``add element … { a, b, … }`` statement. An incremental sync (upstream since PR #126013) touches only the
service ports that changed: their old map elements are deleted, their chains re-created (``add`` + ``flush``) and
refilled, chains no longer used are flushed and deleted in the same transaction (kernel ≥ 6.2 releases a chain as
soon as the element or rule pointing at it is deleted; upstream waits 1 s for older kernels), new elements added.

Not done (said so): LoadBalancer IPs and ``firewall-`` chains, ``Local`` traffic policies, session affinity
(``affinity-`` sets), IPv6 (``table ip6 kube-proxy``).

>>> hash_and_truncate("ns1/svc1/tcp/p80")
'ULMVA6XW-ns1/svc1/tcp/p80'
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .proxy_common import CommandError, Runner, ServicePort, check
from .proxy_iptables import LARGE_CLUSTER_ENDPOINTS_THRESHOLD, masquerade_mark

TABLE = "ip kube-proxy"
NAME_LENGTH_MAX = 256  # knftables.NameLengthMax
CHAIN_NAME_BASE_LENGTH_MAX = NAME_LENGTH_MAX - 16  # chainNamePrefixLengthMax

# (name, type, hook, priority) — newest baseRules in proxier_test.go.
BASE_CHAINS = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-forward", "filter", "forward", 0),
    ("filter-input", "filter", "input", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
    ("nat-prerouting", "nat", "prerouting", -100),
)
REGULAR_CHAINS = ("cluster-ips-check", "firewall-check", "mark-for-masquerade", "masquerading",
                  "nodeport-endpoints-check", "services", "service-endpoints-check")
# nftablesJumpChains: (destination, source, extra match)
JUMP_CHAINS = (
    ("firewall-check", "filter-prerouting-pre-dnat", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    ("firewall-check", "filter-output-pre-dnat", "ct state new"),
    ("cluster-ips-check", "filter-output", "ct state new"),
    ("services", "nat-output", ""),
    ("masquerading", "nat-postrouting", ""),
    ("services", "nat-prerouting", ""),
)
SERVICE_MAPS = ("service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports")


def hash_and_truncate(name: str) -> str:
    """``hashAndTruncate``: base32(sha256(name))[:8] + "-" + name, cut to fit nft's name length."""
    out = base64.b32encode(hashlib.sha256(name.encode()).digest()[:5]).decode() + "-" + name  # 5 bytes = 8 chars
    return out if len(out) <= CHAIN_NAME_BASE_LENGTH_MAX else out[:CHAIN_NAME_BASE_LENGTH_MAX - 3] + "..."


def chain_base(sp: ServicePort) -> str:
    """``servicePortChainNameBase``: ``H8-ns/svc/proto/port``."""
    return hash_and_truncate(f"{sp.namespace}/{sp.name}/{sp.proto}/{sp.port_name}")


def endpoint_chain(sp: ServicePort, ip: str, port: int) -> str:
    """``endpoint-`` + ``servicePortEndpointChainNameBase``: ``H8-ns/svc/proto/port__ip/port``."""
    return "endpoint-" + hash_and_truncate(f"{sp.namespace}/{sp.name}/{sp.proto}/{sp.port_name}__{ip.replace(':', '.')}/{port}")


@dataclass(frozen=True)
class Config:
    """What the nftables proxier reads: the LocalTrafficDetector's cluster CIDR, the masquerade bit, the node IPs
    that accept NodePorts (``nodePortAddresses: primary`` — the default of this mode; empty means every local
    address, upstream's ``fib daddr type local`` form) and the ServiceCIDRs (unallocated ClusterIPs are dropped)."""

    cluster_cidr: str | None = "10.244.0.0/16"
    masquerade_bit: int = 14
    masquerade_all: bool = False
    node_ips: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    endpoint_dispatch: str = "auto"  # "vmap" (upstream), "cascade", or "auto" (vmap up to the threshold)
    large_cluster_threshold: int = LARGE_CLUSTER_ENDPOINTS_THRESHOLD

    @property
    def mark(self) -> str:
        return masquerade_mark(self.masquerade_bit)

    def dispatch_for(self, total_endpoints: int) -> str:
        if self.endpoint_dispatch != "auto":
            return self.endpoint_dispatch
        return "cascade" if total_endpoints > self.large_cluster_threshold else "vmap"


@dataclass(frozen=True)
class Program:
    """What one service port owns in the table: its chains (creation order) with their rules, and its elements."""

    chains: tuple[tuple[str, tuple[str, ...]], ...]
    elements: tuple[tuple[str, str, str], ...]  # (container, key, value) — value "" for a set, "comment … : verdict" ok


@dataclass
class State:
    """What the kernel holds after a transaction: per service port its program; the dispatch style used."""

    programs: dict[tuple[str, str, str, str], Program] = field(default_factory=dict)
    dispatch: str = "vmap"
    config: Config | None = None

    def chain_names(self) -> set[str]:
        return {c for p in self.programs.values() for c, _ in p.chains}


@dataclass(frozen=True)
class Transaction:
    text: str
    state: State
    full: bool
    rules: int  # rules in the table after it
    chains: int
    elements: int
    services: int
    endpoints: int
    changed: int  # service ports written


def program(sp: ServicePort, config: Config, dispatch: str) -> Program:
    """The chains, rules and map elements of one service port (the loop body of ``syncProxyRules``)."""
    proto, base = sp.proto, chain_base(sp)
    svc_chain, ext_chain = "service-" + base, "external-" + base
    spn = sp.svc_port_name
    elements: list[tuple[str, str, str]] = [("cluster-ips", sp.cluster_ip, "")]
    if not sp.endpoints:
        reject = "goto reject-chain"
        elements.append(("no-endpoint-services", f"{sp.cluster_ip} . {proto} . {sp.port}",
                         f'comment "{spn}" : {reject}'))
        for eip in sp.external_ips:
            elements.append(("no-endpoint-services", f"{eip} . {proto} . {sp.port}", f'comment "{spn}" : {reject}'))
        if sp.node_port:
            elements.append(("no-endpoint-nodeports", f"{proto} . {sp.node_port}", f'comment "{spn}" : {reject}'))
        return Program((), tuple(elements))

    chains: list[tuple[str, tuple[str, ...]]] = []
    ep_chains = [endpoint_chain(sp, ep.ip, ep.port) for ep in sp.endpoints]
    for ep, ch in zip(sp.endpoints, ep_chains, strict=True):
        chains.append((ch, (f"ip saddr {ep.ip} jump mark-for-masquerade",
                            f"meta l4proto {proto} dnat to {ep}")))
    rules: list[str] = []
    if config.masquerade_all:
        rules.append(f"ip daddr {sp.cluster_ip} jump mark-for-masquerade")
    elif config.cluster_cidr:
        rules.append(f"ip daddr {sp.cluster_ip} ip saddr != {config.cluster_cidr} jump mark-for-masquerade")
    n = len(ep_chains)
    if dispatch == "vmap":
        vm = " , ".join(f"{i} : goto {c}" for i, c in enumerate(ep_chains))
        rules.append(f"numgen random mod {n} vmap {{ {vm} }}")
    else:
        rules += [f"numgen random mod {n - i} 0 goto {c}" for i, c in enumerate(ep_chains[:-1])]
        rules.append(f"goto {ep_chains[-1]}")
    chains.append((svc_chain, tuple(rules)))
    elements.append(("service-ips", f"{sp.cluster_ip} . {proto} . {sp.port}", f"goto {svc_chain}"))
    if sp.node_port or sp.external_ips:
        chains.append((ext_chain, ("jump mark-for-masquerade", f"goto {svc_chain}")))
        for eip in sp.external_ips:
            elements.append(("service-ips", f"{eip} . {proto} . {sp.port}", f"goto {ext_chain}"))
        if sp.node_port:
            elements.append(("service-nodeports", f"{proto} . {sp.node_port}", f"goto {ext_chain}"))
    return Program(tuple(chains), tuple(elements))


def base_rules(config: Config) -> list[str]:
    """``setupNFTables``: the table, its sets and maps, the stock chains and their rules (objects first)."""
    t = TABLE
    out = [f'add table {t} {{ comment "rules for kube-proxy" ; }}',
           f'add set {t} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}']
    if config.node_ips:
        out.append(f'add set {t} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}')
    vm3 = "ipv4_addr . inet_proto . inet_service : verdict"
    vm2 = "inet_proto . inet_service : verdict"
    out += [
        f'add map {t} firewall-ips {{ type {vm3} ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }}',
        f'add map {t} no-endpoint-nodeports {{ type {vm2} ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }}',
        f'add map {t} no-endpoint-services {{ type {vm3} ; comment "vmap to drop or reject packets to services with no endpoints" ; }}',
        f'add map {t} service-ips {{ type {vm3} ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }}',
        f'add map {t} service-nodeports {{ type {vm2} ; comment "NodePort traffic" ; }}',
    ]
    for name, typ, hook, prio in BASE_CHAINS:
        out.append(f"add chain {t} {name} {{ type {typ} hook {hook} priority {prio} ; }}")
    for name in REGULAR_CHAINS:
        out.append(f"add chain {t} {name}")
    out.append(f'add chain {t} reject-chain {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}')
    out.append(f'add rule {t} cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"')
    if config.service_cidrs:
        out.append(f'add rule {t} cluster-ips-check ip daddr {{ {", ".join(config.service_cidrs)} }} drop '
                   f'comment "Drop traffic to unallocated ClusterIPs"')
    for dst, src, extra in JUMP_CHAINS:
        out.append(f"add rule {t} {src} {extra + ' ' if extra else ''}jump {dst}")
    mark = config.mark
    out += [
        f"add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        f"add rule {t} mark-for-masquerade mark set mark or {mark}",
        f"add rule {t} masquerading mark and {mark} == 0 return",
        f"add rule {t} masquerading mark set mark xor {mark}",
        f"add rule {t} masquerading masquerade fully-random",
        f"add rule {t} reject-chain reject",
        f"add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
    ]
    if config.node_ips:
        out += [
            f"add rule {t} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",
            f"add rule {t} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
            f"add element {t} nodeport-ips {{ {', '.join(config.node_ips)} }}",
        ]
    else:
        out += [
            f"add rule {t} nodeport-endpoints-check ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports",
            f"add rule {t} services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
        ]
    return out


def _base_rule_count(config: Config) -> int:
    return sum(1 for line in base_rules(config) if line.startswith("add rule"))


def _element_text(key: str, value: str) -> str:
    if not value:
        return key
    return f"{key} {value}" if value.startswith("comment ") else f"{key} : {value}"


def _add_elements(elements: Iterable[tuple[str, str, str]], verb: str = "add") -> list[str]:
    by: dict[str, list[str]] = {}
    for container, key, value in elements:
        by.setdefault(container, []).append(key if verb == "delete" else _element_text(key, value))
    return [f"{verb} element {TABLE} {c} {{ {', '.join(items)} }}" for c, items in by.items()]


def _chain_lines(chains: Iterable[tuple[str, tuple[str, ...]]], flush: bool) -> list[str]:
    out: list[str] = []
    for name, rules in chains:
        out.append(f"add chain {TABLE} {name}")
        if flush:
            out.append(f"flush chain {TABLE} {name}")
        out += [f"add rule {TABLE} {name} {r}" for r in rules]
    return out


def _summary(text: str, state: State, config: Config, full: bool, changed: int,
             service_ports: Sequence[ServicePort]) -> Transaction:
    progs = state.programs.values()
    return Transaction(
        text=text, state=state, full=full,
        rules=_base_rule_count(config) + sum(len(r) for p in progs for _, r in p.chains),
        chains=len(BASE_CHAINS) + len(REGULAR_CHAINS) + 1 + sum(len(p.chains) for p in progs),
        elements=len({(c, k) for p in progs for c, k, _ in p.elements}),
        services=len(service_ports), endpoints=sum(len(sp.endpoints) for sp in service_ports), changed=changed)


def _dedupe(elements: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    seen: dict[tuple[str, str], tuple[str, str, str]] = {}
    for e in elements:
        seen.setdefault((e[0], e[1]), e)  # two services with one ClusterIP share its cluster-ips element
    return list(seen.values())


def render_full(service_ports: Sequence[ServicePort], config: Config = Config()) -> Transaction:
    """The whole table, replacing whatever ``table ip kube-proxy`` held, as one transaction."""
    dispatch = config.dispatch_for(sum(len(sp.endpoints) for sp in service_ports))
    programs = {sp.key: program(sp, config, dispatch) for sp in service_ports}
    lines = [f"add table {TABLE}", f"delete table {TABLE}", *base_rules(config)]
    for p in programs.values():
        lines += _chain_lines(p.chains, flush=False)
    lines += _add_elements(_dedupe(e for p in programs.values() for e in p.elements))
    state = State(programs, dispatch, config)
    return _summary("\n".join(lines) + "\n", state, config, True, len(programs), service_ports)


def render_partial(prev: State, service_ports: Sequence[ServicePort], config: Config = Config()) -> Transaction:
    """Only what changed since ``prev`` (a state a previous transaction produced); a full sync when the config or
    the endpoint-choice style changed."""
    dispatch = config.dispatch_for(sum(len(sp.endpoints) for sp in service_ports))
    if prev.config != config or prev.dispatch != dispatch:
        return render_full(service_ports, config)
    new = {sp.key: program(sp, config, dispatch) for sp in service_ports}
    changed = {k for k, p in new.items() if prev.programs.get(k) != p}
    removed = set(prev.programs) - set(new)
    if not changed and not removed:
        return _summary("", State(new, dispatch, config), config, False, 0, service_ports)

    old_el = {(c, k): v for p in prev.programs.values() for c, k, v in p.elements}
    new_el = {(c, k): v for p in new.values() for c, k, v in p.elements}
    gone = [(c, k, v) for (c, k), v in old_el.items() if (c, k) not in new_el or new_el[(c, k)] != v]
    fresh = [(c, k, v) for (c, k), v in new_el.items() if (c, k) not in old_el or old_el[(c, k)] != v]
    new_chains = {c for p in new.values() for c, _ in p.chains}
    stale = sorted(prev.chain_names() - new_chains)

    lines = _add_elements(gone, "delete")
    for k in sorted(changed):
        lines += _chain_lines(new[k].chains, flush=True)
    lines += [f"flush chain {TABLE} {c}" for c in stale]
    # a stale service chain may point at a stale endpoint chain: with all flushed first, any order deletes
    lines += [f"delete chain {TABLE} {c}" for c in stale]
    lines += _add_elements(fresh)
    state = State(new, dispatch, config)
    return _summary("\n".join(lines) + "\n", state, config, False, len(changed), service_ports)


class Backend:
    """Runs transactions in one network namespace through ``run`` (``nft -f -``)."""

    def __init__(self, run: Runner, config: Config = Config()) -> None:
        self.run = run
        self.config = config
        self.state: State | None = None  # None: the next sync is a full one

    def sync(self, service_ports: Sequence[ServicePort]) -> Transaction:
        tx = render_full(service_ports, self.config) if self.state is None else \
            render_partial(self.state, service_ports, self.config)
        if tx.text:
            try:
                check(self.run, ["nft", "-f", "-"], tx.text.encode())
            except Exception:
                self.state = None  # what the kernel holds is unknown: resync fully
                raise
        self.state = tx.state
        return tx

    def cleanup(self) -> bool:
        """``CleanupLeftovers``: delete ``table ip kube-proxy`` and ``table ip6 kube-proxy``; a missing table is fine.
        Returns whether anything failed."""
        self.state = None
        failed = False
        for family in ("ip", "ip6"):
            r = self.run(["nft", "delete", "table", family, "kube-proxy"], None)
            err = r.stderr.decode(errors="replace")
            if r.returncode != 0 and "No such file or directory" not in err:
                failed = True
        return failed

    def tables(self) -> list[str]:
        """``nft list tables`` in the namespace, one ``family name`` per entry."""
        out = check(self.run, ["nft", "list", "tables"]).stdout.decode()
        return [line.split(" ", 1)[1].strip() for line in out.splitlines() if line.startswith("table ")]


__all__ = ["Backend", "CommandError", "Config", "State", "Transaction", "chain_base", "endpoint_chain",
           "hash_and_truncate", "program", "render_full", "render_partial"]
