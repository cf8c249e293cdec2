"""kube-proxy's iptables mode: the ruleset as upstream writes it, the hook jumps, and ``kube-proxy --cleanup``.

Everything here follows kubernetes/kubernetes ``pkg/proxy/iptables/proxier.go`` (``syncProxyRules``,
``writeServiceToEndpointRules``, ``iptablesJumpChains``, ``CleanupLeftovers``); the functions that build text are
pure, `Backend` runs them through a `Runner` in one network namespace.

Layout (one ``iptables-restore -w 5 --noflush --counters`` of ``*filter … COMMIT *nat … COMMIT``):

- nat top-level chains ``KUBE-SERVICES``, ``KUBE-NODEPORTS``, ``KUBE-POSTROUTING``, ``KUBE-MARK-MASQ``; filter
  ``KUBE-SERVICES``, ``KUBE-EXTERNAL-SERVICES``, ``KUBE-FORWARD``, ``KUBE-NODEPORTS``, ``KUBE-PROXY-FIREWALL`` (and
  ``KUBE-FIREWALL`` while localhost NodePorts are on). Declaring a chain (``:NAME - [0:0]``) flushes it under
  ``--noflush``; rules are then appended.
- per service port: ``KUBE-SVC-<h>``; ``KUBE-EXT-<h>`` when it has a NodePort or external IPs; per endpoint
  ``KUBE-SEP-<h'>``. ``<h>`` = ``portProtoHash`` = base32(sha256("ns/svc:port" + "tcp"))[:16]; ``<h'>`` adds
  ``"ip:port"`` to the hashed string (``servicePortEndpointChainName``).
- ``KUBE-SERVICES`` has one rule per ClusterIP (and external IP), then the tail ``-m addrtype --dst-type LOCAL -j
  KUBE-NODEPORTS`` ("NOTE: this must be the last rule in this chain"). A service port without endpoints gets a
  filter-table ``REJECT`` instead of nat rules.
- ``KUBE-SVC``: the masquerade rule for off-cluster sources (``! -s <clusterCIDR>``, the ``LocalTrafficDetector`` in
  ClusterCIDR mode) then one rule per endpoint; all but the last with ``-m statistic --mode random --probability
  1/(n-i)`` printed ``%0.10f``, so the choice is uniform. ``KUBE-SEP``: hairpin ``-s <ip> -j KUBE-MARK-MASQ`` and
  the DNAT.
- ``largeClusterMode`` (more than 1000 endpoints in total, ``largeClusterEndpointsThreshold``) drops the per-rule
  comments of SVC→SEP and SEP rules. The lab adds one line there: ``-Z`` first in ``*nat``. iptables 1.8.9's nft
  backend records every chain a restore command names in a sorted linked list (``nft-cache.c``
  ``cache_chain_list_insert``), O(commands × chains) under ``--noflush``: 4,000 services × 2 endpoints restored in
  7.2 s, 20,000 × 2 in 905 s (measured here, ``perf``: ``strcmp`` in that loop). A command without a chain makes it
  cache the whole table instead (``req->all_chains``): 1.3 s and 9 s. ``-Z`` is such a command; its cost is that
  the nat table's packet counters restart from zero at each sync.
- partial syncs (KEP-3453, ``MinimizeIPTablesRestore``): the top-level chains are rewritten every time, but the
  SVC/EXT/SEP chains of service ports that did not change are left out of the restore (undeclared chains are not
  touched under ``--noflush``); chains no longer used are declared and ``-X``-ed in the same restore.
- the hook jumps (``iptablesJumpChains``) are not part of the restore: ``iptables -C`` then ``-I`` if missing, on
  full syncs only (PR #114181).

The masquerade mark is formatted as the binary does (``fmt.Sprintf("%#08x", 1<<bit)`` = ``0x00004000``); upstream's
unit-test fake uses ``0x4000``. ``iptables-save`` prints both as ``0x4000/0x4000``.

Not done (said so): LoadBalancer IPs and ``KUBE-FW-`` chains (the lab has no load balancer), ``Local`` traffic
policies (``KUBE-SVL-``), session affinity (``-m recent``), the ``KUBE-PROXY-CANARY`` flush monitor in mangle,
``nodePortAddresses`` other than "all", IPv6.

>>> port_proto_hash("ns1/svc1:p80", "tcp")
'XPGD46QRK7WJZT7O'
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .proxy_common import CommandError, Runner, ServicePort, check

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's chain; kube-proxy keeps a copy while localhost NodePorts are on

SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, FW_PREFIX, SEP_PREFIX = "KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, SEP_PREFIX, FW_PREFIX, EXT_PREFIX)

LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000

FILTER_CHAINS = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL)
NAT_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)

NEW = ("-m", "conntrack", "--ctstate", "NEW")


@dataclass(frozen=True)
class Jump:
    """One hook jump: in ``table``, ``src`` → ``dst`` (``iptablesJumpChain``)."""

    table: str
    dst: str
    src: str
    comment: str
    extra: tuple[str, ...] = ()

    def args(self) -> list[str]:
        """The rule as EnsureRule writes it: extra args, the comment, the jump."""
        out = list(self.extra)
        if self.comment:
            out += ["-m", "comment", "--comment", self.comment]
        return out + ["-j", self.dst]


# iptablesJumpChains (pkg/proxy/iptables/proxier.go), in upstream order; each is inserted at the top of its hook chain.
JUMPS: tuple[Jump, ...] = (
    Jump("filter", KUBE_EXTERNAL_SERVICES, "INPUT", "kubernetes externally-visible service portals", NEW),
    Jump("filter", KUBE_EXTERNAL_SERVICES, "FORWARD", "kubernetes externally-visible service portals", NEW),
    Jump("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports"),
    Jump("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", NEW),
    Jump("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", NEW),
    Jump("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules"),
    Jump("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", NEW),
    Jump("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", NEW),
    Jump("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", NEW),
    Jump("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals"),
    Jump("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals"),
    Jump("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules"),
)
# iptablesKubeletJumpChains: upstream ensures them too (the kubelet normally owns them).
KUBELET_JUMPS: tuple[Jump, ...] = (
    Jump("filter", KUBE_FIREWALL, "INPUT", ""),
    Jump("filter", KUBE_FIREWALL, "OUTPUT", ""),
)


def _b32_16(data: str) -> str:
    """base32(sha256(data))[:16]. Base32 turns each 5 bytes into 8 characters on their own, so the first 16
    characters are those of the first 10 bytes (encoding only those is 3x faster at 80,000 chains)."""
    return base64.b32encode(hashlib.sha256(data.encode()).digest()[:10]).decode()


def port_proto_hash(svc_port_name: str, protocol: str) -> str:
    """``portProtoHash``: base32(sha256(svcPortName + protocol))[:16]; shared by SVC/SVL/EXT/FW chains."""
    return _b32_16(svc_port_name + protocol)


def service_chain(sp: ServicePort) -> str:
    return SVC_PREFIX + port_proto_hash(sp.svc_port_name, sp.proto)


def external_chain(sp: ServicePort) -> str:
    return EXT_PREFIX + port_proto_hash(sp.svc_port_name, sp.proto)


def endpoint_chain_name(svc_port_name: str, protocol: str, endpoint: str) -> str:
    """``servicePortEndpointChainName``: KUBE-SEP- + base32(sha256(svcPortName + protocol + "ip:port"))[:16].

    >>> endpoint_chain_name("ns1/svc1:p80", "tcp", "10.180.0.1:80")
    'KUBE-SEP-SXIVWICOYRO3J4NJ'
    """
    return SEP_PREFIX + _b32_16(svc_port_name + protocol + endpoint)


def is_service_chain_name(name: str) -> bool:
    return name.startswith(SERVICE_CHAIN_PREFIXES)


def probability(n: int) -> str:
    """``computeProbability``: 1/n as ``%0.10f`` (iptables stores it as 31-bit fixed point and prints ``%.11f``)."""
    return f"{1.0 / n:0.10f}"


def masquerade_mark(bit: int) -> str:
    """Go's ``fmt.Sprintf("%#08x", 1<<bit)``: the zero padding counts digits only, so bit 14 → ``0x00004000``."""
    return "0x" + format(1 << bit, "08x")


@dataclass(frozen=True)
class Config:
    """The part of KubeProxyConfiguration the iptables proxier reads.

    ``cluster_cidr`` is the LocalTrafficDetector (``detectLocalMode: ClusterCIDR``): traffic to a ClusterIP from
    outside it is masqueraded. ``conntrack_tcp_be_liberal`` mirrors the sysctl ``nf_conntrack_tcp_be_liberal``
    (when set, no ``--ctstate INVALID -j DROP`` rule); ``random_fully`` is whether iptables supports
    ``--random-fully`` (1.8.9 does)."""

    cluster_cidr: str | None = "10.244.0.0/16"
    masquerade_bit: int = 14
    masquerade_all: bool = False
    localhost_nodeports: bool = True
    random_fully: bool = True
    conntrack_tcp_be_liberal: bool = False
    large_cluster_threshold: int = LARGE_CLUSTER_ENDPOINTS_THRESHOLD

    @property
    def mark(self) -> str:
        return masquerade_mark(self.masquerade_bit)


@dataclass(frozen=True)
class Ruleset:
    """One restore's text and what it means (the counts are upstream's metrics)."""

    text: str
    filter_rules: int  # kubeproxy_sync_proxy_rules_iptables_total{table="filter"}
    nat_rules: int  # kubeproxy_sync_proxy_rules_iptables_total{table="nat"}: written + left unchanged
    nat_rules_written: int  # kubeproxy_sync_proxy_rules_iptables_last{table="nat"}
    active_chains: frozenset[str]  # KUBE-SVC/EXT/SEP chains in use after this restore
    deleted_chains: tuple[str, ...]
    large_cluster_mode: bool
    services: int
    endpoints: int
    kube_services_order: tuple[str, ...] = field(default=())  # the destinations of KUBE-SERVICES rules, in order


def _q(s: str) -> str:
    return f'"{s}"'


def render(service_ports: Sequence[ServicePort], config: Config = Config(), *,
           existing_nat_chains: Iterable[str] = (), unchanged: frozenset[tuple[str, str, str, str]] = frozenset(),
           stale_candidates: Iterable[str] = ()) -> Ruleset:
    """The ``iptables-restore`` input for these service ports (``syncProxyRules``).

    ``unchanged``: keys (`ServicePort.key`) whose SVC/EXT/SEP chains are already in the kernel as they would be
    written, so a partial sync leaves them out. ``existing_nat_chains`` (from ``iptables-save -t nat``) and
    ``stale_candidates`` (chains this proxier wrote before) name chains to delete when no longer used; only
    service/endpoint chain names are ever deleted."""
    mark = config.mark
    local_detect = ["!", "-s", config.cluster_cidr] if config.cluster_cidr else []
    total_eps = sum(len(sp.endpoints) for sp in service_ports)
    large = total_eps > config.large_cluster_threshold

    filter_chains = [f":{c} - [0:0]" for c in FILTER_CHAINS]
    nat_chains = [f":{c} - [0:0]" for c in NAT_CHAINS]
    filter_rules: list[str] = []
    nat_rules: list[str] = []
    skipped_rules = 0
    active: set[str] = set()
    order: list[str] = []

    def w(buf: list[str], *args: str) -> None:
        buf.append(" ".join(args))

    w(nat_rules, "-A", KUBE_POSTROUTING, "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN")
    w(nat_rules, "-A", KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", mark)
    w(nat_rules, "-A", KUBE_POSTROUTING, "-m", "comment", "--comment", _q("kubernetes service traffic requiring SNAT"),
      "-j", "MASQUERADE", *(["--random-fully"] if config.random_fully else []))
    w(nat_rules, "-A", KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", mark)
    if config.localhost_nodeports:
        filter_chains.append(f":{KUBE_FIREWALL} - [0:0]")
        w(filter_rules, "-A", KUBE_FIREWALL, "-m", "comment", "--comment", _q("block incoming localnet connections"),
          "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate",
          "RELATED,ESTABLISHED,DNAT", "-j", "DROP")

    for sp in service_ports:
        name, proto = sp.svc_port_name, sp.proto
        has_eps = bool(sp.endpoints)
        svc_chain, ext_chain = service_chain(sp), external_chain(sp)
        match = ["-m", proto, "-p", proto]
        no_eps = _q(f"{name} has no endpoints")

        # Capture the ClusterIP, external IPs and the NodePort (top-level chains: always written).
        if has_eps:
            w(nat_rules, "-A", KUBE_SERVICES, "-m", "comment", "--comment", _q(f"{name} cluster IP"), *match,
              "-d", sp.cluster_ip, "--dport", str(sp.port), "-j", svc_chain)
            order.append(f"{sp.cluster_ip}:{sp.port}/{proto}")
        else:
            w(filter_rules, "-A", KUBE_SERVICES, "-m", "comment", "--comment", no_eps, *match,
              "-d", sp.cluster_ip, "--dport", str(sp.port), "-j", "REJECT")
        for eip in sp.external_ips:
            if has_eps:
                w(nat_rules, "-A", KUBE_SERVICES, "-m", "comment", "--comment", _q(f"{name} external IP"), *match,
                  "-d", eip, "--dport", str(sp.port), "-j", ext_chain)
                order.append(f"{eip}:{sp.port}/{proto}")
            else:
                w(filter_rules, "-A", KUBE_EXTERNAL_SERVICES, "-m", "comment", "--comment", no_eps, *match,
                  "-d", eip, "--dport", str(sp.port), "-j", "REJECT")
        if sp.node_port:
            if has_eps:
                w(nat_rules, "-A", KUBE_NODEPORTS, "-m", "comment", "--comment", name, *match,
                  "--dport", str(sp.node_port), "-j", ext_chain)
            else:
                w(filter_rules, "-A", KUBE_EXTERNAL_SERVICES, "-m", "comment", "--comment", no_eps,
                  "-m", "addrtype", "--dst-type", "LOCAL", *match, "--dport", str(sp.node_port), "-j", "REJECT")
        if not has_eps:
            continue

        # Per-service chains: written only when changed (partial sync), but always counted and kept.
        chains: list[str] = []
        rules: list[str] = []
        cluster_ip_args = ["-m", "comment", "--comment", _q(f"{name} cluster IP"), *match,
                           "-d", sp.cluster_ip, "--dport", str(sp.port)]
        if config.masquerade_all:
            w(rules, "-A", svc_chain, *cluster_ip_args, "-j", KUBE_MARK_MASQ)
        elif local_detect:
            w(rules, "-A", svc_chain, *cluster_ip_args, *local_detect, "-j", KUBE_MARK_MASQ)
        if sp.node_port or sp.external_ips:
            chains.append(ext_chain)
            w(rules, "-A", ext_chain, "-m", "comment", "--comment",
              _q(f"masquerade traffic for {name} external destinations"), "-j", KUBE_MARK_MASQ)
            w(rules, "-A", ext_chain, "-j", svc_chain)
        chains.append(svc_chain)
        n = len(sp.endpoints)
        sep_chains = [endpoint_chain_name(name, proto, str(ep)) for ep in sp.endpoints]
        for i, (ep, sep) in enumerate(zip(sp.endpoints, sep_chains, strict=True)):
            args = ["-A", svc_chain]
            if not large:
                args += ["-m", "comment", "--comment", _q(f"{name} -> {ep}")]
            if i < n - 1:
                args += ["-m", "statistic", "--mode", "random", "--probability", probability(n - i)]
            w(rules, *args, "-j", sep)
        for ep, sep in zip(sp.endpoints, sep_chains, strict=True):
            chains.append(sep)
            head = ["-A", sep] + ([] if large else ["-m", "comment", "--comment", name])
            w(rules, *head, "-s", ep.ip, "-j", KUBE_MARK_MASQ)
            w(rules, *head, *match, "-j", "DNAT", "--to-destination", str(ep))
        active.update(chains)
        if sp.key in unchanged:
            skipped_rules += len(rules)
        else:
            nat_chains += [f":{c} - [0:0]" for c in chains]
            nat_rules += rules

    # Delete chains no longer in use: declare (which flushes) then -X, in the same restore.
    stale = sorted({c for c in (*existing_nat_chains, *stale_candidates) if is_service_chain_name(c)} - active)
    for c in stale:
        nat_chains.append(f":{c} - [0:0]")
        nat_rules.append(f"-X {c}")

    tail = ["-m", "addrtype", "--dst-type", "LOCAL"] + ([] if config.localhost_nodeports else ["!", "-d", "127.0.0.0/8"])
    w(nat_rules, "-A", KUBE_SERVICES, "-m", "comment", "--comment",
      _q("kubernetes service nodeports; NOTE: this must be the last rule in this chain"), *tail, "-j", KUBE_NODEPORTS)

    if not config.conntrack_tcp_be_liberal:
        w(filter_rules, "-A", KUBE_FORWARD, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
    w(filter_rules, "-A", KUBE_FORWARD, "-m", "comment", "--comment", _q("kubernetes forwarding rules"),
      "-m", "mark", "--mark", f"{mark}/{mark}", "-j", "ACCEPT")
    w(filter_rules, "-A", KUBE_FORWARD, "-m", "comment", "--comment", _q("kubernetes forwarding conntrack rule"),
      "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")

    # iptables 1.8.9 (nft backend) keeps the chains that restore commands name in a sorted linked list
    # (nft-cache.c cache_chain_list_insert), O(commands x chains): 20,000 services x 2 endpoints took 905 s here.
    # One command without a chain makes it cache all chains instead (req->all_chains) and the restore linear
    # (9 s). "-Z" is that command; it zeroes the nat table's packet counters, so only in large cluster mode.
    zero = ["-Z"] if large else []
    text = "\n".join(["*filter", *filter_chains, *filter_rules, "COMMIT", "*nat", *zero, *nat_chains, *nat_rules,
                      "COMMIT"]) + "\n"
    written = len(nat_rules) - len(stale)
    return Ruleset(text=text, filter_rules=len(filter_rules), nat_rules=written + skipped_rules,
                   nat_rules_written=written, active_chains=frozenset(active), deleted_chains=tuple(stale),
                   large_cluster_mode=large, services=len(service_ports), endpoints=total_eps,
                   kube_services_order=tuple(order))


def chains_in_save(save_output: str) -> set[str]:
    """Chain names declared in one table of ``iptables-save`` output (``GetChainsFromTable``)."""
    return {line[1:].split(" ", 1)[0] for line in save_output.splitlines() if line.startswith(":")}


def jumps(config: Config = Config()) -> tuple[Jump, ...]:
    return JUMPS + (KUBELET_JUMPS if config.localhost_nodeports else ())


def cleanup_restore(table: str, existing: Iterable[str]) -> str | None:
    """``CleanupLeftovers``' restore for one table: flush every kube-proxy chain that exists, then delete it.

    Upstream leaves KUBE-MARK-MASQ, KUBE-FIREWALL and KUBE-PROXY-FIREWALL to the kubelet; in the lab nothing else
    owns them, so they go too and ``iptables-save`` shows no ``KUBE-`` chain afterwards."""
    fixed = NAT_CHAINS if table == "nat" else (*FILTER_CHAINS, KUBE_FIREWALL)
    ours = sorted(c for c in set(existing) if c in fixed or is_service_chain_name(c))
    if not ours:
        return None
    return "\n".join([f"*{table}", *(f":{c} - [0:0]" for c in ours), *(f"-X {c}" for c in ours), "COMMIT"]) + "\n"


class Backend:
    """Applies rulesets in one network namespace through ``run`` (see `proxy_common.netns_runner`).

    Keeps what a partial sync needs: the keys and chains of the last successful restore."""

    RESTORE = ["iptables-restore", "-w", "5", "--noflush", "--counters"]

    def __init__(self, run: Runner, config: Config = Config()) -> None:
        self.run = run
        self.config = config
        self.applied: dict[tuple[str, str, str, str], ServicePort] = {}
        self.active_chains: frozenset[str] = frozenset()
        self.large_cluster_mode: bool | None = None
        self.need_full_sync = True

    def ensure_jumps(self) -> int:
        """EnsureChain + EnsureRule(Prepend) for each hook jump: ``-C`` first, ``-I`` only if missing.
        Returns how many rules were inserted."""
        inserted = 0
        for j in jumps(self.config):
            r = self.run(["iptables", "-w", "-t", j.table, "-N", j.dst], None)
            if r.returncode not in (0, 1):  # 1: "Chain already exists."
                raise CommandError(["iptables", "-N", j.dst], r.returncode, r.stderr.decode(errors="replace"))
            if self.run(["iptables", "-w", "-t", j.table, "-C", j.src, *j.args()], None).returncode != 0:
                check(self.run, ["iptables", "-w", "-t", j.table, "-I", j.src, *j.args()])
                inserted += 1
        return inserted

    def save_chains(self, table: str) -> set[str]:
        return chains_in_save(check(self.run, ["iptables-save", "-t", table]).stdout.decode())

    def sync(self, service_ports: Sequence[ServicePort]) -> tuple[Ruleset, bool]:
        """One sync; full when needed (first, after a failure, config or large-cluster-mode change), else partial.
        Returns the ruleset applied and whether it was a full sync. Raises `CommandError` (and forces the next
        sync to be full) when iptables refuses."""
        full = self.need_full_sync
        total_eps = sum(len(sp.endpoints) for sp in service_ports)
        if self.large_cluster_mode is not None and self.large_cluster_mode != (total_eps > self.config.large_cluster_threshold):
            full = True  # every SEP/SVC rule changes its comments
        unchanged: frozenset[tuple[str, str, str, str]] = frozenset()
        existing: set[str] = set()
        try:
            if full:
                self.ensure_jumps()
            else:
                unchanged = frozenset(sp.key for sp in service_ports if self.applied.get(sp.key) == sp)
            if full or total_eps <= self.config.large_cluster_threshold:
                existing = self.save_chains("nat")  # upstream: every sync unless largeClusterMode
            rs = render(service_ports, self.config, existing_nat_chains=existing, unchanged=unchanged,
                        stale_candidates=self.active_chains)
            check(self.run, self.RESTORE, rs.text.encode())
        except Exception:
            self.need_full_sync = True
            raise
        self.applied = {sp.key: sp for sp in service_ports}
        self.active_chains = rs.active_chains
        self.large_cluster_mode = rs.large_cluster_mode
        self.need_full_sync = False
        return rs, full

    def cleanup(self) -> bool:
        """``kube-proxy --cleanup`` for iptables: delete the hook jumps, then flush and delete our chains in nat and
        filter. Returns whether anything failed (errors are kept going, as upstream)."""
        failed = False
        for j in (*JUMPS, *KUBELET_JUMPS):
            for _ in range(16):  # a rule inserted twice is deleted twice
                if self.run(["iptables", "-w", "-t", j.table, "-D", j.src, *j.args()], None).returncode != 0:
                    break
        for table in ("nat", "filter"):
            try:
                text = cleanup_restore(table, self.save_chains(table))
                if text:
                    check(self.run, self.RESTORE, text.encode())
            except CommandError:
                failed = True
        self.applied, self.active_chains, self.large_cluster_mode = {}, frozenset(), None
        self.need_full_sync = True
        return failed


def parse_cidr(cidr: str | None) -> str | None:
    """The IPv4 CIDR of a (possibly dual-stack, comma-separated) ``clusterCIDR`` as iptables and nft take it, or None.

    >>> parse_cidr("fd00::/48, 10.244.0.0/16"), parse_cidr("10.244.1.7/16"), parse_cidr("")
    ('10.244.0.0/16', '10.244.0.0/16', None)
    """
    for part in (cidr or "").split(","):
        try:
            net = ipaddress.ip_network(part.strip(), strict=False)
        except ValueError:
            continue
        if net.version == 4:
            return str(net)
    return None
