"""The lab's kube-proxy: Services and EndpointSlices from the lab's store → kernel rules in one network namespace.

What it does, and where upstream does it (kubernetes/kubernetes):

- mode from the ConfigMap ``kube-system/kube-proxy``, key ``config.conf`` (a ``KubeProxyConfiguration``, kubeadm's
  layout, ``cmd/kubeadm/app/phases/addons/proxy``): ``mode: ""`` or missing → ``iptables`` (the Linux default),
  ``nftables``; ``ipvs`` needs the ``ip_vs`` kernel module — without it upstream exits with "can't use the IPVS
  proxier" (``cmd/kube-proxy/app/server_linux.go``); the lab keeps its current mode instead, logs that error and
  records a Warning event on the Node. ``clusterCIDR``, ``iptables.*``/``nftables.*`` ``masqueradeBit``,
  ``masqueradeAll``, ``syncPeriod`` and ``iptables.localhostNodePorts`` are read too;
- on start, and when the mode changes, the other mode's rules are removed (``platformCleanup``: what
  ``kube-proxy --cleanup`` does for that mode) and the new mode gets a full sync;
- syncs are debounced by ``min_sync_period`` (``BoundedFrequencyRunner``: at most one sync per period, a change
  arriving sooner waits for the rest of it); a failed sync is logged, counted, and retried after ``syncPeriod``
  with a full sync (``needFullSync``), never raised out of `KubeProxy.run`;
- ``/metrics`` names and help from ``pkg/proxy/metrics/metrics.go`` (mode-specific families only in their mode),
  ``/proxyMode`` from ``cmd/kube-proxy/app/server.go``, ``:10256/healthz`` from ``pkg/proxy/healthcheck/
  proxy_health.go`` (503 once a change has waited more than 2 × syncPeriod, or when the Node is being deleted or
  tainted ``ToBeDeletedByClusterAutoscaler``).

Rules are written by `proxy_iptables` and `proxy_nftables`; commands run through ``nsenter --net=<netns>``.

The bridge and the reply path. Pods hang off a Linux bridge in the node namespace. When a client pod connects to a
ClusterIP and the DNAT picks a pod on the same bridge, the reply is bridged straight back (L2) and would bypass the
IP hooks where conntrack un-DNATs it; the client would see a reply from the pod IP and reset. With
``net.bridge.bridge-nf-call-iptables=1`` (a per-namespace sysctl on this kernel, 1 by default once
``br_netfilter`` is in) bridged IPv4 frames traverse the netfilter hooks — iptables and nftables alike — so the reply
is un-DNATed. That is why kubeadm asks for ``br_netfilter``. The alternative is ``masqueradeAll: true``: the source
becomes the bridge address, so the reply is routed through the node and un-NATed there. Measured in throwaway
namespaces (``tests/test_kubeproxy.py::test_kernel_bridge_reply_path``), both modes: sysctl 0 → no connection
completes; sysctl 1 → all do; sysctl 0 with masqueradeAll → all do.

Use (the lab's server does this with its store and node namespace)::

    kp = KubeProxy(store, "/run/netns/kperflab-<id>", cluster_cidr="10.244.0.0/16", node_ips=["10.244.0.1"],
                   recorder=Recorder(store, "kube-proxy", node_name))
    threading.Thread(target=kp.run, args=(stop,), daemon=True).start()
    ...
    stop.set(); kp.cleanup()
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from . import proxy_iptables, proxy_nftables
from .proxy_common import CommandError, Runner, netns_runner, service_ports

log = logging.getLogger("kperflab.lab.kubeproxy")

SERVICES = "v1/services"
ENDPOINTSLICES = "discovery.k8s.io/v1/endpointslices"
CONFIGMAPS = "v1/configmaps"
NODES = "v1/nodes"
MODES = ("iptables", "nftables")
DEFAULT_SYNC_PERIOD = 30.0  # iptables.syncPeriod / nftables.syncPeriod default
BUCKETS = tuple(0.001 * 2 ** k for k in range(15))  # metrics.ExponentialBuckets(0.001, 2, 15)
TAINT_TO_BE_DELETED = "ToBeDeletedByClusterAutoscaler"


def parse_duration(value: Any, default: float) -> float:
    """A Go duration string ("1s", "500ms", "1m30s") or a number of seconds; ``default`` when unreadable.

    >>> parse_duration("1m30s", 0), parse_duration("500ms", 0), parse_duration("soon", 30.0)
    (90.0, 0.5, 30.0)
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return default
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([0-9.]+)(h|ms|m|s|us|µs|ns)", value.strip())
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        return default
    return sum(float(n) * units[u] for n, u in parts)


def ipvs_available(sys_module: str = "/sys/module/ip_vs", proc_modules: str = "/proc/modules") -> bool:
    """Whether the ``ip_vs`` module is loaded (upstream checks the modules the IPVS proxier needs)."""
    if os.path.isdir(sys_module):
        return True
    try:
        with open(proc_modules) as f:
            return any(line.split(" ", 1)[0] == "ip_vs" for line in f)
    except OSError:
        return False


def go_time(ts: float, monotonic: float) -> str:
    """Go's ``time.Time.String()`` of a ``time.Now()`` value, as kube-proxy's healthz body prints it with ``%q``:
    ``2006-01-02 15:04:05.999999999 +0000 UTC m=+12.000000001`` (trailing zeros of the fraction dropped).

    >>> go_time(1700000000.25, 12.5)
    '2023-11-14 22:13:20.25 +0000 UTC m=+12.500000000'
    """
    whole = int(ts)
    frac = f"{ts - whole:.9f}"[1:].rstrip("0").rstrip(".")
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole)) + f"{frac} +0000 UTC m=+{monotonic:.9f}"


class _Metrics:
    """kube-proxy's metric families (``pkg/proxy/metrics``), collected for the current mode only."""

    def __init__(self) -> None:
        self.mode = "iptables"
        self.buckets = {"all": [0] * len(BUCKETS), "full": [0] * len(BUCKETS), "partial": [0] * len(BUCKETS)}
        self.sums = {"all": 0.0, "full": 0.0, "partial": 0.0}
        self.counts = {"all": 0, "full": 0, "partial": 0}
        self.last_timestamp = 0.0
        self.last_queued = 0.0
        self.endpoint_changes = 0
        self.service_changes = 0
        self.iptables_total = {"filter": 0, "nat": 0}
        self.iptables_last = {"filter": 0, "nat": 0}
        self.iptables_restore_failures = 0
        self.iptables_partial_restore_failures = 0
        self.nftables_sync_failures = 0
        self.nftables_cleanup_failures = 0
        self.healthz = {"200": 0, "503": 0}

    def observe(self, kind: str, seconds: float) -> None:
        for k in ("all", kind):
            self.sums[k] += seconds
            self.counts[k] += 1
            for i, le in enumerate(BUCKETS):
                if seconds <= le:
                    self.buckets[k][i] += 1

    def _hist(self, name: str, help_: str, kind: str) -> HistogramMetricFamily:
        """Cumulative buckets (``observe`` counts a value in every bucket at or above it), ``le`` as Go prints it."""
        buckets = [(f"{le:g}", self.buckets[kind][i]) for i, le in enumerate(BUCKETS)]
        return HistogramMetricFamily(name, help_, buckets=buckets + [("+Inf", self.counts[kind])],
                                     sum_value=self.sums[kind])

    def collect(self) -> Any:
        p = "kubeproxy_sync_proxy_rules"
        yield self._hist(f"{p}_duration_seconds", "[ALPHA] SyncProxyRules latency in seconds", "all")
        yield GaugeMetricFamily(f"{p}_last_timestamp_seconds", "[ALPHA] The last time proxy rules were successfully synced",
                                value=self.last_timestamp)
        yield GaugeMetricFamily(f"{p}_last_queued_timestamp_seconds", "[ALPHA] The last time a sync of proxy rules was queued",
                                value=self.last_queued)
        yield CounterMetricFamily(f"{p}_endpoint_changes", "[ALPHA] Cumulative proxy rules Endpoint changes",
                                  value=self.endpoint_changes)
        yield CounterMetricFamily(f"{p}_service_changes", "[ALPHA] Cumulative proxy rules Service changes",
                                  value=self.service_changes)
        hz = CounterMetricFamily("kubeproxy_proxy_healthz", "[ALPHA] Cumulative proxy healthz HTTP status", labels=["code"])
        for code, n in sorted(self.healthz.items()):
            if n:
                hz.add_metric([code], n)
        yield hz
        if self.mode == "iptables":
            yield self._hist("kubeproxy_sync_full_proxy_rules_duration_seconds",
                             "[ALPHA] SyncProxyRules latency in seconds for full resyncs", "full")
            yield self._hist("kubeproxy_sync_partial_proxy_rules_duration_seconds",
                             "[ALPHA] SyncProxyRules latency in seconds for partial resyncs", "partial")
            yield CounterMetricFamily(f"{p}_iptables_restore_failures", "[ALPHA] Cumulative proxy iptables restore failures",
                                      value=self.iptables_restore_failures)
            yield CounterMetricFamily(f"{p}_iptables_partial_restore_failures",
                                      "[ALPHA] Cumulative proxy iptables partial restore failures",
                                      value=self.iptables_partial_restore_failures)
            total = GaugeMetricFamily(f"{p}_iptables_total", "[ALPHA] Total number of iptables rules owned by kube-proxy",
                                      labels=["table"])
            last = GaugeMetricFamily(f"{p}_iptables_last", "[ALPHA] Number of iptables rules written by kube-proxy in last sync",
                                     labels=["table"])
            for table in ("filter", "nat"):
                total.add_metric([table], self.iptables_total[table])
                last.add_metric([table], self.iptables_last[table])
            yield total
            yield last
        else:
            yield CounterMetricFamily(f"{p}_nftables_sync_failures", "[ALPHA] Cumulative proxy nftables sync failures",
                                      value=self.nftables_sync_failures)
            yield CounterMetricFamily(f"{p}_nftables_cleanup_failures", "[ALPHA] Cumulative proxy nftables cleanup failures",
                                      value=self.nftables_cleanup_failures)


class KubeProxy:
    """The proxier for one network namespace (the lab's node namespace). Needs root: commands enter the namespace
    with nsenter and change its netfilter rules. ``runner`` (argv, stdin → CompletedProcess, see
    `proxy_common.netns_runner`) and ``clock`` are for tests."""

    def __init__(self, store: Any, netns_path: str, *, cluster_cidr: str, node_ips: list[str],
                 node_name: str = "kperflab-lab", min_sync_period: float = 1.0, recorder: Any = None,
                 runner: Runner | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.netns_path = netns_path
        self.cluster_cidr = cluster_cidr
        self.node_ips = list(node_ips)
        self.node_name = node_name
        self.min_sync_period = min_sync_period
        self.recorder = recorder
        self.run_cmd = runner or netns_runner(netns_path)
        self.clock = clock
        self._lock = threading.RLock()
        self._mode: str | None = None  # None until the first sync
        self._iptables: proxy_iptables.Backend | None = None
        self._nftables: proxy_nftables.Backend | None = None
        self._metrics = _Metrics()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._metrics)
        self._seen: dict[str, dict[tuple[str, str], str]] = {SERVICES: {}, ENDPOINTSLICES: {}}
        self._synced_fingerprint: Any = None
        self._warned_config: str | None = None
        self._sync_period = DEFAULT_SYNC_PERIOD
        self._last_updated: float | None = None  # wall clock of the last successful sync
        self._pending_since: float | None = None  # oldest change not yet synced
        self._start_mono = time.monotonic()
        self._liberal: bool | None = None

    # -- what the config says ------------------------------------------------------------------------------
    def _config(self) -> tuple[dict[str, Any], str]:
        """The parsed KubeProxyConfiguration (empty when absent or unreadable) and the ConfigMap's resourceVersion."""
        cm = self.store.try_get(CONFIGMAPS, "kube-system", "kube-proxy")
        if not cm:
            return {}, ""
        rv = (cm.get("metadata") or {}).get("resourceVersion", "")
        try:
            cfg = yaml.safe_load((cm.get("data") or {}).get("config.conf") or "") or {}
        except yaml.YAMLError as e:
            self._warn_config(rv, "FailedToLoadConfig", f"failed to decode config.conf: {e}")
            return {}, rv
        return (cfg if isinstance(cfg, dict) else {}), rv

    def _warn_config(self, rv: str, reason: str, message: str) -> None:
        if self._warned_config == f"{rv}/{reason}":
            return
        self._warned_config = f"{rv}/{reason}"
        log.error('"Error running ProxyServer" err="%s"', message)
        if self.recorder is not None:
            node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": self.node_name, "uid": self.node_name}}
            self.recorder.event(node, "Warning", reason, message)

    def _desired_mode(self, cfg: dict[str, Any], rv: str) -> str:
        mode = str(cfg.get("mode") or "").strip().lower()
        current = self._mode or "iptables"
        if mode in ("", "iptables"):
            return "iptables"
        if mode == "nftables":
            return "nftables"
        if mode == "ipvs":
            if not ipvs_available():
                self._warn_config(rv, "IPVSProxierUnavailable",
                                  "can't use the IPVS proxier: IPVS proxier will not be used because the following "
                                  f"required kernel modules are not loaded: [ip_vs]; staying in {current} mode")
                return current
            self._warn_config(rv, "IPVSProxierUnavailable",
                              f"the lab's kube-proxy has no IPVS proxier; staying in {current} mode")
            return current
        self._warn_config(rv, "InvalidProxyMode",
                          f'KubeProxyConfiguration.mode: Unsupported value: "{mode}": supported values: "iptables", '
                          f'"ipvs", "nftables"; staying in {current} mode')
        return current

    def _backend_configs(self, cfg: dict[str, Any]) -> tuple[proxy_iptables.Config, proxy_nftables.Config, float]:
        cidr = proxy_iptables.parse_cidr(str(cfg.get("clusterCIDR") or "")) or proxy_iptables.parse_cidr(self.cluster_cidr)
        ipt = cfg.get("iptables") if isinstance(cfg.get("iptables"), dict) else {}
        nft = cfg.get("nftables") if isinstance(cfg.get("nftables"), dict) else {}
        if self._liberal is None:
            r = self.run_cmd(["cat", "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal"], None)
            self._liberal = r.returncode == 0 and r.stdout.strip() not in (b"", b"0")
        def bit(section: dict[str, Any]) -> int:
            v = section.get("masqueradeBit")
            return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 31 else 14

        ic = proxy_iptables.Config(
            cluster_cidr=cidr, masquerade_bit=bit(ipt), masquerade_all=bool(ipt.get("masqueradeAll", False)),
            localhost_nodeports=ipt.get("localhostNodePorts") is not False, conntrack_tcp_be_liberal=self._liberal)
        nc = proxy_nftables.Config(
            cluster_cidr=cidr, masquerade_bit=bit(nft), masquerade_all=bool(nft.get("masqueradeAll", False)),
            node_ips=tuple(self.node_ips))
        section = nft if self._mode == "nftables" else ipt
        return ic, nc, parse_duration(section.get("syncPeriod"), DEFAULT_SYNC_PERIOD)

    # -- state -----------------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """The mode in effect ("iptables" until a sync says otherwise)."""
        return self._mode or "iptables"

    def proxy_mode_text(self) -> str:
        """What ``curl 127.0.0.1:10249/proxyMode`` answers."""
        return self.mode

    def _stored(self, resource: str) -> list[dict[str, Any]]:
        """Every object of ``resource`` as the store holds it, without the deep copy ``list`` returns: the store's
        predicate sees each stored dict, and the store never changes a stored dict in place (a write stores a new
        one), so reading them is safe — they are never modified here. For 40,000 objects this saves seconds."""
        out: list[dict[str, Any]] = []
        self.store.list(resource, None, lambda o: out.append(o) and False)
        return out

    @staticmethod
    def _versions(objs: list[dict[str, Any]]) -> tuple[tuple[str, str, str], ...]:
        return tuple(((o.get("metadata") or {}).get("namespace", ""), (o.get("metadata") or {}).get("name", ""),
                      (o.get("metadata") or {}).get("resourceVersion", "")) for o in objs)

    def _fingerprint(self, services: list[dict[str, Any]] | None = None,
                     slices: list[dict[str, Any]] | None = None, cm_rv: str | None = None) -> Any:
        """What a sync depends on: the versions of every Service and EndpointSlice and of the ConfigMap."""
        if cm_rv is None:
            cm = self.store.try_get(CONFIGMAPS, "kube-system", "kube-proxy")
            cm_rv = (cm or {}).get("metadata", {}).get("resourceVersion", "")
        services = self._stored(SERVICES) if services is None else services
        slices = self._stored(ENDPOINTSLICES) if slices is None else slices
        return (self._versions(services), self._versions(slices), cm_rv)

    # -- syncing ---------------------------------------------------------------------------------------------
    def _backend(self, mode: str, ic: proxy_iptables.Config, nc: proxy_nftables.Config) -> Any:
        if mode == "iptables":
            if self._iptables is None:
                self._iptables = proxy_iptables.Backend(self.run_cmd, ic)
            elif self._iptables.config != ic:
                self._iptables.config = ic
                self._iptables.need_full_sync = True
            return self._iptables
        if self._nftables is None:
            self._nftables = proxy_nftables.Backend(self.run_cmd, nc)
        elif self._nftables.config != nc:
            self._nftables.config = nc  # render_partial turns a config change into a full sync
        return self._nftables

    def _cleanup_mode(self, mode: str) -> None:
        """That mode's ``--cleanup``; its backend (and what it knew of the kernel) is dropped."""
        if mode == "iptables":
            proxy_iptables.Backend(self.run_cmd).cleanup()
            self._iptables = None
        else:
            if proxy_nftables.Backend(self.run_cmd).cleanup():
                self._metrics.nftables_cleanup_failures += 1
            self._nftables = None

    def sync(self) -> dict[str, Any]:
        """One sync now (``syncProxyRules``). Returns what was done::

            {"mode": "iptables", "full": True, "seconds": 0.041, "services": 3, "endpoints": 4,
             "rules": {"filter": 4, "nat": 22}, "chains": 7}

        Raises `CommandError` (after logging and counting it) when the kernel refused the rules."""
        with self._lock:
            start, t0 = self.clock(), time.perf_counter()
            cfg, cm_rv = self._config()
            mode = self._desired_mode(cfg, cm_rv)
            ic, nc, self._sync_period = self._backend_configs(cfg)
            services, slices = self._stored(SERVICES), self._stored(ENDPOINTSLICES)
            fp = self._fingerprint(services, slices, cm_rv)  # the versions this sync used
            self._count_changes(services, slices)
            sps = service_ports(services, slices)
            if mode != self._mode:
                if self._mode is None:
                    log.info('"Using %s Proxier"', mode)
                else:
                    log.info('"Proxy mode changed" from="%s" to="%s"', self._mode, mode)
                for other in MODES:
                    if other != mode:
                        self._cleanup_mode(other)
                self._mode = mode
                self._metrics.mode = mode
                if mode == "iptables" and ic.localhost_nodeports:
                    log.info('"Setting route_localnet=1 to allow node-ports on localhost; to change this either disable '
                             'iptables.localhostNodePorts (--iptables-localhost-nodeports) or set nodePortAddresses '
                             '(--nodeport-addresses) to filter loopback addresses"')
                    self.run_cmd(["sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1"], None)
            backend = self._backend(mode, ic, nc)
            n_eps = sum(len(sp.endpoints) for sp in sps)
            log.debug('"Reloading service %s data" numServices=%d numEndpoints=%d', mode, len(sps), n_eps)
            try:
                if mode == "iptables":
                    partial = not backend.need_full_sync
                    rs, full = backend.sync(sps)
                    result: dict[str, Any] = {"rules": {"filter": rs.filter_rules, "nat": rs.nat_rules},
                                              "chains": len(rs.active_chains), "deleted_chains": len(rs.deleted_chains),
                                              "large_cluster_mode": rs.large_cluster_mode}
                    self._metrics.iptables_total = {"filter": rs.filter_rules, "nat": rs.nat_rules}
                    self._metrics.iptables_last = {"filter": rs.filter_rules, "nat": rs.nat_rules_written}
                else:
                    tx = backend.sync(sps)
                    full = tx.full
                    result = {"rules": tx.rules, "chains": tx.chains, "elements": tx.elements, "changed": tx.changed,
                              "endpoint_dispatch": tx.state.dispatch}
            except (CommandError, OSError) as e:
                seconds = time.perf_counter() - t0
                self._metrics.observe("all", seconds)
                if mode == "iptables":
                    self._metrics.iptables_restore_failures += 1
                    if partial:
                        self._metrics.iptables_partial_restore_failures += 1
                    log.error('"Failed to execute iptables-restore" err="%s"', e)
                else:
                    self._metrics.nftables_sync_failures += 1
                    log.error('"nftables sync failed" err="%s"', e)
                log.info('"Sync failed" retryingTime="%gs"', self._sync_period)
                raise
            seconds = time.perf_counter() - t0
            self._metrics.observe("full" if full else "partial", seconds)
            self._metrics.last_timestamp = self.clock()
            self._last_updated = self.clock()
            self._synced_fingerprint = fp
            if self._pending_since is not None and self._pending_since <= start:
                self._pending_since = None
            log.debug('"SyncProxyRules complete" elapsed="%.3fms"', seconds * 1000)  # upstream: V(2)
            return {"mode": mode, "full": full, "seconds": seconds, "services": len(sps), "endpoints": n_eps, **result}

    def _count_changes(self, services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> None:
        for resource, items in ((SERVICES, services), (ENDPOINTSLICES, slices)):
            now = {((o.get("metadata") or {}).get("namespace", ""), (o.get("metadata") or {}).get("name", "")):
                   (o.get("metadata") or {}).get("resourceVersion", "") for o in items}
            before = self._seen[resource]
            changed = sum(1 for k, v in now.items() if before.get(k) != v) + sum(1 for k in before if k not in now)
            if resource == SERVICES:
                self._metrics.service_changes += changed
            else:
                self._metrics.endpoint_changes += changed
            self._seen[resource] = now

    def run(self, stop: threading.Event) -> None:
        """Sync whenever Services, EndpointSlices or the kube-proxy ConfigMap change, at most once per
        ``min_sync_period``, until ``stop`` is set. Errors are logged and retried (full) after ``syncPeriod``."""
        if self.recorder is not None:
            node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": self.node_name, "uid": self.node_name}}
            try:
                self.recorder.event(node, "Normal", "Starting", "")
            except Exception:  # noqa: BLE001 - events are best effort
                pass
        last_start = float("-inf")
        retry_at: float | None = None
        while not stop.is_set():
            rv = self.store.resource_version
            try:
                fp = self._fingerprint()
            except Exception as e:  # noqa: BLE001 - a closed store ends nothing but this round
                log.error('"Failed to list objects" err="%s"', e)
                fp = None
            now = time.monotonic()
            due = fp is not None and (fp != self._synced_fingerprint or (retry_at is not None and now >= retry_at))
            if due and self._pending_since is None:
                self._pending_since = self.clock()
                self._metrics.last_queued = self._pending_since
            if due and (retry_at is None or now >= retry_at):
                wait = last_start + self.min_sync_period - now
                if wait > 0:
                    stop.wait(wait)
                    continue
                last_start = time.monotonic()
                try:
                    self.sync()
                    retry_at = None
                except Exception as e:  # noqa: BLE001 - never raise out of the loop (logged in sync)
                    if not isinstance(e, CommandError | OSError):
                        log.exception('"Sync failed"')
                    retry_at = time.monotonic() + self._sync_period
                continue
            timeout = 1.0 if retry_at is None else max(0.05, min(1.0, retry_at - now))
            self.store.wait_for_change(rv, timeout)

    # -- cleanup, health, metrics --------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove both modes' rules from the namespace (``kube-proxy --cleanup``), e.g. on ``lab down``."""
        with self._lock:
            for mode in MODES:
                try:
                    self._cleanup_mode(mode)
                except (CommandError, OSError) as e:
                    log.error('"Error cleaning up %s rules" err="%s"', mode, e)
            self._mode = None
            self._synced_fingerprint = None

    def healthz(self) -> tuple[int, dict[str, Any]]:
        """What ``:10256/healthz`` answers: (status, body). Unhealthy (503) when a change has waited longer than
        2 × syncPeriod, or the Node is being deleted or tainted ToBeDeletedByClusterAutoscaler (nodeEligible false).
        The times are Go's ``time.Time`` strings, as kube-proxy prints them."""
        now, mono = self.clock(), time.monotonic() - self._start_mono
        healthy = self._pending_since is None or now - self._pending_since <= 2 * self._sync_period
        node = self.store.try_get(NODES, "", self.node_name)
        eligible = True
        if node is not None:
            taints = (node.get("spec") or {}).get("taints") or []
            eligible = not (node["metadata"].get("deletionTimestamp")
                            or any(t.get("key") == TAINT_TO_BE_DELETED for t in taints if isinstance(t, dict)))
        ok = healthy and eligible
        last = now if ok else (self._last_updated or 0.0)
        last_mono = mono if ok else max(0.0, mono - (now - last))
        self._metrics.healthz["200" if ok else "503"] += 1
        return (200 if ok else 503), {"lastUpdated": go_time(last, last_mono), "currentTime": go_time(now, mono),
                                      "nodeEligible": eligible}

    def healthz_body(self) -> tuple[int, bytes]:
        """The same, as the exact bytes kube-proxy writes (``{"lastUpdated": %q,"currentTime": %q, "nodeEligible": %v}``)."""
        code, b = self.healthz()
        return code, (f'{{"lastUpdated": "{b["lastUpdated"]}","currentTime": "{b["currentTime"]}", '
                      f'"nodeEligible": {"true" if b["nodeEligible"] else "false"}}}').encode()

    def metrics_text(self) -> bytes:
        """``/metrics`` in Prometheus text format (prometheus_client's own registry)."""
        return generate_latest(self._registry)


__all__ = ["KubeProxy", "go_time", "ipvs_available", "parse_duration"]
