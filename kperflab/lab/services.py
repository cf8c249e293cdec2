"""Services as kube-apiserver's service REST storage handles them (`pkg/registry/core/service/storage`): ClusterIPs from
the service CIDR (`ipallocator`), NodePorts from the node-port range (`portallocator`), IP families, and what a PUT keeps
of what was allocated.

The allocations are not a bitmap of their own: they are an index of the Services in the store, brought up to date from
the store's event log before each allocation, under the store's own lock. So a Service the lab writes straight into the
store (the ``kubernetes`` Service at bootstrap) is counted, and an address is chosen and written in one step: two creates
can never get the same one. Nothing needs releasing when a request fails, and deleting a Service frees its addresses.

As upstream (KEP-3070, KEP-3668), addresses and ports are picked at random above a static band at the bottom of each
range (min(max(16, size/16), 256) addresses, min(max(16, size/32), 128) ports) that is left to explicit requests and
used for dynamic picks only when the rest is full.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import errors
from . import validation as val
from .errors import APIError
from .store import Store

Obj = dict[str, Any]
KEY = "v1/services"
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_NODE_PORT_RANGE = "30000-32767"

ERR_FULL = "range is full"
ERR_IP_ALLOCATED = "provided IP is already allocated"
ERR_PORT_ALLOCATED = "provided port is already allocated"


class AllocationError(Exception):
    """An allocator's error; its text is what kube-apiserver puts in the 422 or 500."""


# -- ranges -----------------------------------------------------------------------------------------

class IPRange:
    """The usable addresses of a service CIDR: without the network address (and the broadcast address for IPv4), at
    most 65536 for IPv6, as ipallocator's ``Range``. Offset 0 is the CIDR's ``.1``."""

    def __init__(self, cidr: str) -> None:
        self.net = ipaddress.ip_network(cidr, strict=False)
        self.family = "IPv4" if self.net.version == 4 else "IPv6"
        size = self.net.num_addresses
        usable = min(size, 65536) if self.net.version == 6 else size - 1
        self.size = max(0, usable - 1)
        self.base = int(self.net.network_address) + 1
        self.static = 0 if size <= 16 else min(max(16, size // 16), 256)

    def __str__(self) -> str:
        return str(self.net)

    def nth(self, n: int) -> str:
        """The n-th address of the CIDR: ``nth(1)`` is the ``kubernetes`` Service's, ``nth(10)`` kube-dns's."""
        return str(self.net.network_address + n)

    def offset(self, ip: str) -> int | None:
        """The address's offset in the range, None when it is outside (the network and broadcast addresses are)."""
        addr = parse_ip(ip)
        if addr is None or addr.version != self.net.version or addr not in self.net:
            return None
        off = int(addr) - self.base
        return off if 0 <= off < self.size else None

    def ip(self, offset: int) -> str:
        return str(ipaddress.ip_address(self.base + offset))


class PortRange:
    def __init__(self, spec: str) -> None:
        lo, _, hi = spec.partition("-")
        self.base = int(lo)
        self.size = (int(hi) if hi else self.base) - self.base + 1
        if self.base < 1 or self.size < 1 or self.base + self.size - 1 > 65535:
            raise ValueError(f"invalid port range {spec!r}")
        self.static = 0 if self.size <= 16 else min(max(16, self.size // 32), 128)

    def __str__(self) -> str:
        return f"{self.base}-{self.base + self.size - 1}"

    def contains(self, port: int) -> bool:
        return self.base <= port < self.base + self.size


def parse_ip(text: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """netutils.ParseIPSloppy: an IP address, IPv4 octets with leading zeros read as decimal."""
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() and p.isascii() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))
    return None


def _pick(taken: Callable[[int], bool], size: int, static: int, rng: random.Random) -> int | None:
    """A free offset: at random above the static band, else in it (allocator.AllocationMapWithOffset)."""
    for lo, hi in ((static, size), (0, static)):
        n = hi - lo
        if n <= 0:
            continue
        start = rng.randrange(n)
        for i in range(n):
            off = lo + (start + i) % n
            if not taken(off):
                return off
    return None


# -- the index of what Services hold ------------------------------------------------------------------

class Allocations:
    """ClusterIP offsets and node ports held by the Services in the store, by Service."""

    def __init__(self, ips: IPRange, ports: PortRange) -> None:
        self.ip_range, self.port_range = ips, ports
        self.ips: dict[int, int] = {}  # offset → how many Services hold it (more than one only if written around us)
        self.ports: dict[int, int] = {}
        self._held: dict[tuple[str, str], tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def clear(self) -> None:
        self.ips.clear()
        self.ports.clear()
        self._held.clear()

    def set(self, svc: Obj, deleted: bool = False) -> None:
        meta = svc.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        for table, values in zip((self.ips, self.ports), self._held.pop(key, ((), ())), strict=True):
            for v in values:
                table[v] -= 1
                if not table[v]:
                    del table[v]
        if deleted:
            return
        held = self.holdings(svc)
        if held != ((), ()):
            self._held[key] = held
            for table, values in zip((self.ips, self.ports), held, strict=True):
                for v in values:
                    table[v] = table.get(v, 0) + 1

    def holdings(self, svc: Obj) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(ClusterIP offsets, node ports) a stored Service holds; anything malformed holds nothing."""
        spec = svc.get("spec") if isinstance(svc.get("spec"), dict) else {}
        ips = spec.get("clusterIPs") if isinstance(spec.get("clusterIPs"), list) else [spec.get("clusterIP")]
        offsets = {self.ip_range.offset(ip) for ip in ips if isinstance(ip, str) and ip != "None"}
        ports = [p.get("nodePort") for p in spec.get("ports") if isinstance(p, dict)] if isinstance(spec.get("ports"), list) else []
        ports.append(spec.get("healthCheckNodePort"))
        nodeports = {p for p in ports if type(p) is int and self.port_range.contains(p)}
        return tuple(sorted(o for o in offsets if o is not None)), tuple(sorted(nodeports))


class _Operation:
    """One request's allocations: what it took (so two ports of one Service never get the same value) and dry-run."""

    def __init__(self, alloc: Allocations, rng: random.Random, dry_run: bool) -> None:
        self.alloc, self.rng, self.dry_run = alloc, rng, dry_run
        self.ports: set[int] = set()
        self.ips: set[int] = set()
        self.dry_port = 0

    def allocate_ip(self, ip: str) -> None:
        r = self.alloc.ip_range
        off = r.offset(ip)
        if off is None:
            shown = parse_ip(ip)
            raise AllocationError(f"the provided IP ({shown if shown is not None else ip}) is not in the valid range. "
                                  f"The range of valid IPs is {r}")
        if self.dry_run:
            return  # as upstream: a dry run checks the range only
        if off in self.alloc.ips or off in self.ips:
            raise AllocationError(ERR_IP_ALLOCATED)
        self.ips.add(off)

    def next_ip(self) -> str:
        r = self.alloc.ip_range
        if self.dry_run:
            return str(r.net.network_address)  # upstream's dry-run answer: the CIDR's own address
        off = _pick(lambda o: o in self.alloc.ips or o in self.ips, r.size, r.static, self.rng)
        if off is None:
            raise AllocationError(ERR_FULL)
        self.ips.add(off)
        return r.ip(off)

    def allocate_port(self, port: int) -> None:
        r = self.alloc.port_range
        if self.dry_run:
            if port in self.alloc.ports or port in self.ports:
                raise AllocationError(ERR_PORT_ALLOCATED)
            self.ports.add(port)
            return
        if not r.contains(port):
            raise AllocationError(f"provided port is not in the valid range. The range of valid ports is {r}")
        if port in self.alloc.ports or port in self.ports:
            raise AllocationError(ERR_PORT_ALLOCATED)
        self.ports.add(port)

    def next_port(self) -> int:
        r = self.alloc.port_range
        if self.dry_run:  # portallocator's dry run: a dummy value above the range
            self.dry_port = max(self.dry_port, 32768) + 1
            return self.dry_port
        off = _pick(lambda o: r.base + o in self.alloc.ports or r.base + o in self.ports, r.size, r.static, self.rng)
        if off is None:
            raise AllocationError(ERR_FULL)
        self.ports.add(r.base + off)
        return r.base + off


# -- the registry -----------------------------------------------------------------------------------

def _spec(svc: Obj) -> Obj:
    return svc["spec"]


def _type(svc: Obj) -> str:
    return _spec(svc).get("type") or "ClusterIP"


def needs_cluster_ip(svc: Obj) -> bool:
    return _type(svc) != "ExternalName"


def needs_node_port(svc: Obj) -> bool:
    return _type(svc) in ("NodePort", "LoadBalancer")


def needs_hc_node_port(svc: Obj) -> bool:
    return _type(svc) == "LoadBalancer" and _spec(svc).get("externalTrafficPolicy") == "Local"


def should_allocate_node_ports(svc: Obj) -> bool:
    t = _type(svc)
    return t == "NodePort" or (t == "LoadBalancer" and _spec(svc).get("allocateLoadBalancerNodePorts", True) is not False)


def is_headless(svc: Obj) -> bool:
    ips = _spec(svc).get("clusterIPs") or []
    return len(ips) == 1 and ips[0] == "None"


def family_of(ip: str) -> str:
    addr = parse_ip(ip)
    return "IPv6" if addr is not None and addr.version == 6 else "IPv4"


def _invalid(name: str, causes: list[val.Cause]) -> APIError:
    return errors.invalid("Service", name, causes)


def internal_error(message: str) -> APIError:
    """apierrors.NewInternalError."""
    return APIError(500, "InternalError", f"Internal error occurred: {message}", details={"causes": [{"message": message}]})


class ServiceRegistry:
    """What kube-apiserver does to a Service between decoding and storing it: ``begin_create``/``begin_update`` fill the
    fields it owns and allocate, inside ``transaction()`` (the store's lock, with the index brought up to date)."""

    def __init__(self, store: Store, cidr: str = DEFAULT_SERVICE_CIDR, node_port_range: str = DEFAULT_NODE_PORT_RANGE,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.ip_range = IPRange(cidr)
        self.port_range = PortRange(node_port_range)
        self.alloc = Allocations(self.ip_range, self.port_range)
        self.rng = rng or random.Random()
        self._cursor: int | None = None

    @property
    def cidr(self) -> str:
        return str(self.ip_range)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the store's lock (every store write takes it, so nothing can be written between choosing an address
        and storing the Service that holds it) with the allocation index brought up to date."""
        with store_lock(self.store):
            self.sync()
            yield

    def sync(self) -> None:
        """Bring the index up to date from the store's event log (all of it again if the log no longer reaches back)."""
        with store_lock(self.store):
            now = self.store.resource_version
            if self._cursor is not None and now == self._cursor:
                return
            if self._cursor is not None:
                try:
                    for type_, svc in self.store.watch(KEY, None, str(self._cursor), _everything, timeout=0):
                        self.alloc.set(svc, deleted=type_ == "DELETED")
                    self._cursor = now
                    return
                except APIError:
                    pass  # 410: the log has moved on; rebuild
            self.alloc.clear()
            scan(self.store, KEY, self.alloc.set)
            self._cursor = now

    # -- create ------------------------------------------------------------------------------------
    def begin_create(self, svc: Obj, dry_run: bool = False) -> None:
        """normalizeClusterIPs, initIPFamilyFields, then ClusterIPs and NodePorts (``beginCreate``); status is reset as
        the strategy's PrepareForCreate does. Raises kube-apiserver's 422 (or 500 when a range is full)."""
        svc["status"] = {"loadBalancer": {}}
        normalize_cluster_ips(svc, None)
        self.init_ip_families(svc, None)
        op = _Operation(self.alloc, self.rng, dry_run)
        self._alloc_cluster_ips(svc, op)
        if needs_node_port(svc):
            self._init_node_ports(svc, op)
        if needs_hc_node_port(svc):
            self._alloc_hc_node_port(svc, op)

    # -- update ------------------------------------------------------------------------------------
    def begin_update(self, svc: Obj, old: Obj, dry_run: bool = False) -> None:
        """``beginUpdate`` (keep what was allocated and the client left out, allocate what the change needs) followed by
        the strategy's ``dropTypeDependentFields``."""
        patch_allocated_values(svc, old)
        normalize_cluster_ips(svc, old)
        self.init_ip_families(svc, old)
        op = _Operation(self.alloc, self.rng, dry_run)
        # ClusterIPs: from ExternalName to a type with one → allocate; the other way → released by storing it
        if not needs_cluster_ip(old) and needs_cluster_ip(svc):
            self._alloc_cluster_ips(svc, op)
        if needs_node_port(svc):
            self._update_node_ports(svc, old, op)
        if needs_hc_node_port(svc) and not needs_hc_node_port(old):
            self._alloc_hc_node_port(svc, op)
        drop_type_dependent_fields(svc, old)

    # -- IP families -------------------------------------------------------------------------------
    def init_ip_families(self, svc: Obj, old: Obj | None) -> None:
        """alloc.go initIPFamilyFields, on a single-stack cluster of this CIDR's family."""
        spec = _spec(svc)
        name = str(svc["metadata"].get("name") or "")
        if _type(svc) == "ExternalName":
            return
        ospec = _spec(old) if old is not None else {}
        if spec.get("ipFamilyPolicy") is None:
            if ospec.get("ipFamilyPolicy") is not None:
                spec["ipFamilyPolicy"] = ospec["ipFamilyPolicy"]
            elif spec.get("clusterIP") == "None" and not spec.get("selector"):
                spec["ipFamilyPolicy"] = "RequireDualStack"  # headless and selectorless: dual-stack by default
            else:
                spec["ipFamilyPolicy"] = "SingleStack"
        causes = val.service_cluster_ips_fields(svc)
        if causes:
            raise _invalid(name, causes)
        policy = spec["ipFamilyPolicy"]
        if old is not None:
            if policy == "SingleStack":
                if spec.get("clusterIPs") == ospec.get("clusterIPs") and len(spec.get("clusterIPs") or []) > 1:
                    spec["clusterIPs"] = spec["clusterIPs"][:1]
                if spec.get("ipFamilies") == ospec.get("ipFamilies") and len(spec.get("ipFamilies") or []) > 1:
                    spec["ipFamilies"] = spec["ipFamilies"][:1]
            else:
                if len(spec.get("clusterIPs") or []) < len(ospec.get("clusterIPs") or []):
                    causes.append(val.invalid_value("spec.ipFamilyPolicy", policy, "must be 'SingleStack' to release the secondary cluster IP"))
                if len(spec.get("ipFamilies") or []) < len(ospec.get("ipFamilies") or []):
                    causes.append(val.invalid_value("spec.ipFamilyPolicy", policy, "must be 'SingleStack' to release the secondary IP family"))
        if policy == "SingleStack":
            if len(spec.get("clusterIPs") or []) == 2:
                causes.append(val.invalid_value("spec.ipFamilyPolicy", policy,
                                                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"))
            if len(spec.get("ipFamilies") or []) == 2:
                causes.append(val.invalid_value("spec.ipFamilyPolicy", policy,
                                                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"))
        ips = spec.get("clusterIPs") or []
        for i, ip in enumerate(ips):
            if ip == "None":
                break
            fam = family_of(ip)
            if i >= len(spec.get("ipFamilies") or []):
                if fam != self.ip_range.family:
                    causes.append(val.cause(f"spec.clusterIPs[{i}]", "Invalid value",
                                            f"{val.go_value(ips)}: {fam} is not configured on this cluster"))
                else:
                    spec["ipFamilies"] = [*(spec.get("ipFamilies") or []), fam]
        if causes:
            raise _invalid(name, causes)
        other = "IPv6" if self.ip_range.family == "IPv4" else "IPv4"
        if spec.get("clusterIP") == "None" and not spec.get("selector"):
            families = spec.get("ipFamilies") or [self.ip_range.family]
            if len(families) < 2 and policy != "SingleStack":
                families = [*families, "IPv6" if families[0] == "IPv4" else "IPv4"]
            spec["ipFamilies"] = families
            return
        if policy == "RequireDualStack":
            causes.append(val.invalid_value("spec.ipFamilyPolicy", policy, "this cluster is not configured for dual-stack services"))
        for i, fam in enumerate(spec.get("ipFamilies") or []):
            if fam == other:
                causes.append(val.invalid_value(f"spec.ipFamilies[{i}]", fam, "not configured on this cluster"))
        if causes:
            raise _invalid(name, causes)
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = [self.ip_range.family]

    # -- ClusterIPs --------------------------------------------------------------------------------
    def _alloc_cluster_ips(self, svc: Obj, op: _Operation) -> None:
        spec = _spec(svc)
        if _type(svc) == "ExternalName" or (spec.get("clusterIPs") or [""])[0] == "None":
            return
        ips: list[str] = list(spec.get("clusterIPs") or [])
        for i, _fam in enumerate(spec.get("ipFamilies") or []):
            if i >= len(ips):
                ips.append("")
            ip = ips[i]
            try:
                if ip:
                    op.allocate_ip(ip)
                else:
                    ips[i] = op.next_ip()
            except AllocationError as exc:
                if ip:
                    raise _invalid(str(svc["metadata"].get("name") or ""), [val.cause(
                        "spec.clusterIPs", "Invalid value",
                        f"{val.go_value(spec.get('clusterIPs'))}: failed to allocate IP {ip}: {exc}")]) from None
                raise internal_error(f"failed to allocate a serviceIP: {exc}") from None
        spec["clusterIPs"] = ips
        if ips:
            spec["clusterIP"] = ips[0]

    # -- NodePorts ---------------------------------------------------------------------------------
    def _init_node_ports(self, svc: Obj, op: _Operation) -> None:
        """alloc.go initNodePorts: one node port per service port number (TCP and UDP 53 share one)."""
        ports = _spec(svc).get("ports") or []
        name = str(svc["metadata"].get("name") or "")
        by_port: dict[int, int] = {}
        allocate = should_allocate_node_ports(svc)
        for i, sp in enumerate(ports):
            np = sp.get("nodePort") or 0
            if np == 0 and not allocate:
                continue
            have = by_port.get(sp.get("port"), 0)
            if have == 0:
                want = next((p.get("nodePort") for p in ports if p.get("port") == sp.get("port") and p.get("nodePort")), 0)
                if want:
                    self._port(op, want, i, name)
                    sp["nodePort"] = by_port[sp.get("port")] = want
                else:
                    sp["nodePort"] = by_port[sp.get("port")] = self._next_port(op)
            elif np != have:
                if np == 0:
                    sp["nodePort"] = have
                else:
                    self._port(op, np, i, name)

    def _update_node_ports(self, svc: Obj, old: Obj, op: _Operation) -> None:
        """alloc.go updateNodePorts: ports the Service held stay its own; new ones are allocated."""
        held = {p.get("nodePort") for p in _spec(old).get("ports") or [] if p.get("nodePort")}
        name = str(svc["metadata"].get("name") or "")
        allocate = should_allocate_node_ports(svc)
        done: set[int] = set()
        for i, sp in enumerate(_spec(svc).get("ports") or []):
            np = sp.get("nodePort") or 0
            if np == 0 and not allocate:
                continue
            if np:
                if np not in held and np not in done:
                    self._port(op, np, i, name)
                    done.add(np)
            else:
                sp["nodePort"] = self._next_port(op)

    def _alloc_hc_node_port(self, svc: Obj, op: _Operation) -> None:
        spec = _spec(svc)
        want = spec.get("healthCheckNodePort") or 0
        try:
            if want:
                op.allocate_port(want)
            else:
                spec["healthCheckNodePort"] = op.next_port()
        except AllocationError as exc:
            if want:
                raise internal_error(f"failed to allocate requested HealthCheck NodePort {want}: {exc}") from None
            raise internal_error(f"failed to allocate a HealthCheck NodePort 0: {exc}") from None

    @staticmethod
    def _port(op: _Operation, port: int, i: int, name: str) -> None:
        try:
            op.allocate_port(port)
        except AllocationError as exc:
            raise _invalid(name, [val.invalid_value(f"spec.ports[{i}].nodePort", port, str(exc))]) from None

    @staticmethod
    def _next_port(op: _Operation) -> int:
        try:
            return op.next_port()
        except AllocationError as exc:
            raise internal_error(f"failed to allocate a nodePort: {exc}") from None


def _everything(obj: Obj) -> bool:
    return True


def scan(store: Store, resource: str, visit: Callable[[Obj], Any]) -> None:
    """Visit every stored object of a resource without copying it: the store calls a list's predicate on its own dicts,
    under its lock, and never changes a stored dict in place. ``visit`` must not change what it is given either.
    TODO(store): a public ``Store.scan`` would say this without the trick."""
    def pred(obj: Obj) -> bool:
        visit(obj)
        return False

    store.list(resource, None, pred)


def store_lock(store: Store) -> Any:
    """The store's lock (its condition's RLock): every store write holds it.
    TODO(store): use a public ``Store.lock`` once the store offers one."""
    return getattr(store, "lock", None) or store._cond


# -- the REST storage's field fix-ups (storage.go), pure functions of (new, old) --------------------------

def normalize_cluster_ips(svc: Obj, old: Obj | None) -> None:
    """Keep clusterIP and clusterIPs in step for clients that set only the singular field."""
    spec = _spec(svc)
    ip, ips = spec.get("clusterIP") or "", spec.get("clusterIPs") or []
    if old is None:
        if ip and not ips:
            spec["clusterIPs"] = [ip]
        return
    ospec = _spec(old)
    old_ip, old_ips = ospec.get("clusterIP") or "", ospec.get("clusterIPs") or []
    if old_ips and not ips and old_ip == ip:
        spec["clusterIPs"] = ips = list(old_ips)
    if old_ip != ip:
        if old_ip and not ip:
            if ips == old_ips:
                spec.pop("clusterIPs", None)
        elif ips == old_ips:
            spec["clusterIPs"] = [ip]


def patch_allocated_values(svc: Obj, old: Obj) -> None:
    """Values the API server allocated and the client did not send again are kept (a resubmitted manifest works)."""
    spec, ospec = _spec(svc), _spec(old)
    if needs_cluster_ip(old) and needs_cluster_ip(svc):
        if not spec.get("clusterIP") and ospec.get("clusterIP"):
            spec["clusterIP"] = ospec["clusterIP"]
        if not spec.get("clusterIPs") and ospec.get("clusterIPs"):
            spec["clusterIPs"] = list(ospec["clusterIPs"])
    if needs_node_port(old) and needs_node_port(svc):
        def used(s: Obj) -> set[int]:
            return {p.get("nodePort") for p in s.get("ports") or [] if p.get("nodePort")}

        taken = used(ospec) & used(spec)
        by_name = {p.get("name") or "": p.get("nodePort") or 0 for p in ospec.get("ports") or []}
        for p in spec.get("ports") or []:
            if not p.get("nodePort"):
                was = by_name.get(p.get("name") or "", 0)
                if was and was not in taken:
                    p["nodePort"] = was
    if needs_hc_node_port(old) and needs_hc_node_port(svc) and not spec.get("healthCheckNodePort"):
        if ospec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = ospec["healthCheckNodePort"]


def drop_type_dependent_fields(svc: Obj, old: Obj) -> None:
    """strategy.go dropTypeDependentFields: fields a type change makes meaningless go, when the client left them as
    they were."""
    spec, ospec = _spec(svc), _spec(old)

    def same(field: str) -> bool:
        return spec.get(field) == ospec.get(field)

    if needs_cluster_ip(old) and not needs_cluster_ip(svc):
        if same("clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if same("ipFamilies"):
            spec.pop("ipFamilies", None)
        if same("ipFamilyPolicy"):
            spec.pop("ipFamilyPolicy", None)
    if needs_node_port(old) and not needs_node_port(svc):
        if [p.get("nodePort") for p in spec.get("ports") or []] == [p.get("nodePort") for p in ospec.get("ports") or []]:
            for p in spec.get("ports") or []:
                p.pop("nodePort", None)
    if needs_hc_node_port(old) and not needs_hc_node_port(svc) and same("healthCheckNodePort"):
        spec.pop("healthCheckNodePort", None)
    if _type(old) == "LoadBalancer" and _type(svc) != "LoadBalancer":
        if spec.get("allocateLoadBalancerNodePorts") is not None and same("allocateLoadBalancerNodePorts"):
            spec.pop("allocateLoadBalancerNodePorts", None)
        if same("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if val.externally_accessible(old) and not val.externally_accessible(svc) and same("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)
    if _type(svc) != "LoadBalancer":
        status = svc.setdefault("status", {})
        if isinstance(status, dict):
            status["loadBalancer"] = {}


def default_on_read(svc: Obj, family: str = "IPv4") -> None:
    """storage.go defaultOnReadService: a Service stored before ClusterIPs and IP families existed (or written straight
    into the store) is read as if it had them."""
    if not isinstance(svc.get("spec"), dict):
        svc["spec"] = {}
    spec = svc["spec"]
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    if spec.get("type") == "ExternalName":
        spec.pop("internalTrafficPolicy", None)
        return
    if spec.get("ipFamilies"):
        return
    other = "IPv6" if family == "IPv4" else "IPv4"
    if spec.get("clusterIP") == "None":
        if spec.get("selector"):
            spec["ipFamilyPolicy"], spec["ipFamilies"] = "SingleStack", [family]
        else:
            spec["ipFamilyPolicy"], spec["ipFamilies"] = "RequireDualStack", [family, other]
        return
    families = [family_of(ip) for ip in spec.get("clusterIPs") or [] if isinstance(ip, str)]
    if families:
        spec["ipFamilies"] = families
        spec["ipFamilyPolicy"] = "SingleStack" if len(families) == 1 else "RequireDualStack"
