"""03-networking: which mode kube-proxy runs in, what the number of Services does to new connections and to rule
programming in each mode, a kept-alive connection against a new one per request, and what ``ndots:5`` costs in DNS
queries — each measured in pods on whatever cluster ``cluster`` points at.

kube-proxy is read as on a real node, through the API server only: its ConfigMap (``kube-system/kube-proxy``, key
``config.conf``), its own listener on port 10249 (``/proxyMode``, ``/metrics``) through the node proxy
(``/api/v1/nodes/<node>:10249/proxy/…``), and its pods' logs. Cluster DNS is counted by its CoreDNS counters
(``coredns_dns_requests_total``) through the service proxy of kube-dns's ``metrics`` port, and by the UDP datagrams
the client pod's own kernel sent (``/proc/net/snmp``). Latency is measured from a client pod, never from this machine.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import figures, metrics, workloads
from ..cluster import get_raw, translate
from ..errors import (
    BadInput,
    ClusterUnreachable,
    ExperimentFailed,
    KperflabError,
    MetricsUnavailable,
    PermissionDenied,
)
from ..parallel import parallel_map
from ..progress import quiet
from ..workspace import pod_failure
from . import Result, carry_on

PROXY_PORT = 10249
UNKNOWN = "current (unknown)"  # the label of measurements in a mode no source could name
CONFIG = ("kube-system", "kube-proxy", "config.conf")  # namespace, ConfigMap, key (kubeadm's and kind's names)
KNOWN_MODES = ("iptables", "nftables", "ipvs")
BACKEND = {"kperflab.dev/net-backend": "echo"}
SERVICE_PORT, BACKEND_PORT = 80, 8080
PROXY_HINT = ("kube-proxy serves /proxyMode and /metrics on 127.0.0.1:10249 by default, out of the API server's reach: "
              "set metricsBindAddress: 0.0.0.0:10249 in its configuration (kubeadm, kind: ConfigMap kube-system/kube-proxy, "
              "then restart its pods) to read them through the node proxy.")
SYNC_HISTOGRAM = "kubeproxy_sync_proxy_rules_duration_seconds"
NAT_RULES = "kubeproxy_sync_proxy_rules_iptables_total"


def nat_rules_formula(services: int, endpoints: int) -> int:
    """NAT rules kube-proxy's iptables mode writes for ``services`` ClusterIP service ports with ``endpoints`` each
    (upstream's number_generated_rules_test.go): 5 fixed + per service 2 + 3 per endpoint.

    >>> nat_rules_formula(1, 2), nat_rules_formula(10, 10)
    (13, 325)
    """
    return 5 + services * (2 + 3 * endpoints)


# -- reading kube-proxy --------------------------------------------------------------------------------------

def _raw(cluster: Any, path: str, what: str, hint: str | None = None) -> str:
    status, body = get_raw(cluster.conn, path, cluster.timeout, accept="*/*")
    if status in (401, 403):
        raise PermissionDenied("get", what, status=status)
    if status != 200:
        raise MetricsUnavailable(path, status, hint=hint)
    return body.decode(errors="replace")


def kube_proxy_get(cluster: Any, node: str, path: str) -> str:
    """GET ``path`` from kube-proxy's listener on ``node`` (port 10249) through the API server's node proxy."""
    return _raw(cluster, f"/api/v1/nodes/{node}:{PROXY_PORT}/proxy/{path.lstrip('/')}", "nodes/proxy", PROXY_HINT)


def config_mode(text: str) -> str:
    """The mode a KubeProxyConfiguration (``config.conf``) asks for; empty or absent is iptables on Linux.

    >>> config_mode("kind: KubeProxyConfiguration\\nmode: nftables\\n"), config_mode('mode: ""')
    ('nftables', 'iptables')
    """
    import yaml

    conf = yaml.safe_load(text) or {}
    if not isinstance(conf, dict):
        raise ValueError("config.conf is not a mapping")
    return str(conf.get("mode") or "iptables")


def with_mode(text: str, mode: str) -> str:
    """``text`` with its top-level ``mode:`` set to ``mode`` (added when absent); every other line kept as it was.

    >>> with_mode("apiVersion: v1alpha1\\nmode: iptables\\nport: 1\\n", "nftables")
    'apiVersion: v1alpha1\\nmode: nftables\\nport: 1\\n'
    >>> with_mode("port: 1", "nftables")
    'port: 1\\nmode: nftables\\n'
    """
    if re.search(r"(?m)^mode:.*$", text):
        return re.sub(r"(?m)^mode:.*$", f"mode: {mode}", text, count=1)
    return text + ("" if not text or text.endswith("\n") else "\n") + f"mode: {mode}\n"


@dataclass
class ProxyConfig:
    """kube-proxy's ConfigMap: the ``config.conf`` text and the mode it asks for (None with ``why`` when unreadable)."""

    text: str | None = None
    mode: str | None = None
    why: str = ""


def read_config(cluster: Any) -> ProxyConfig:
    ns, name, key = CONFIG
    status, body = get_raw(cluster.conn, f"/api/v1/namespaces/{ns}/configmaps/{name}", cluster.timeout)
    if status == 404:
        return ProxyConfig(why=f"there is no ConfigMap {ns}/{name} (kube-proxy is configured by flags or a file on the "
                               "nodes — k3s, most managed clusters — or the cluster runs another service proxy)")
    if status in (401, 403):
        return ProxyConfig(why=f"not allowed to read ConfigMap {ns}/{name} (HTTP {status})")
    if status != 200:
        return ProxyConfig(why=f"reading ConfigMap {ns}/{name} failed (HTTP {status})")
    text = (json.loads(body).get("data") or {}).get(key)
    if text is None:
        return ProxyConfig(why=f"ConfigMap {ns}/{name} has no key {key}")
    try:
        return ProxyConfig(text, config_mode(text))
    except ValueError as exc:
        return ProxyConfig(text, None, f"{key} in ConfigMap {ns}/{name} is not a KubeProxyConfiguration ({exc})")


def metric_names(text: str) -> set[str]:
    """Every sample name in a Prometheus text (parsed with prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def mode_from_metric_names(names: Iterable[str]) -> tuple[str | None, str]:
    """The mode that kube-proxy's mode-specific metrics reveal, and the name that shows it (reference §5): the
    iptables proxier alone registers ``kubeproxy_sync_proxy_rules_iptables_*`` and the full/partial sync histograms,
    the nftables proxier ``kubeproxy_sync_proxy_rules_nftables_*``; IPVS has none of its own.

    >>> mode_from_metric_names(["kubeproxy_sync_proxy_rules_iptables_total", "kubeproxy_sync_proxy_rules_duration_seconds_sum"])
    ('iptables', 'kubeproxy_sync_proxy_rules_iptables_total')
    >>> mode_from_metric_names(["kubeproxy_sync_proxy_rules_duration_seconds_sum"])
    (None, '')
    """
    names = sorted(names)
    ipt = [n for n in names if n.startswith(("kubeproxy_sync_proxy_rules_iptables", "kubeproxy_sync_full_proxy_rules",
                                             "kubeproxy_sync_partial_proxy_rules", "kubeproxy_iptables_"))]
    nft = [n for n in names if n.startswith("kubeproxy_") and "nftables" in n]
    if ipt and not nft:
        return "iptables", next((n for n in ipt if n.startswith(NAT_RULES)), ipt[0])
    if nft and not ipt:
        return "nftables", nft[0]
    return None, ""


def mode_from_log(text: str) -> str | None:
    """The proxier kube-proxy said it uses (``"Using iptables Proxier"``; the last one when it restarted in-process).

    >>> mode_from_log('I0101 server_linux.go:66] "Using nftables Proxier"')
    'nftables'
    """
    found = re.findall(r"Using (\w+) [Pp]roxier", text)
    return found[-1].lower() if found else None


@dataclass
class Reading:
    """What one source says kube-proxy's mode is (``mode`` None: it could not tell; ``detail`` says why or how)."""

    source: str  # "ConfigMap", "/proxyMode", "metrics", "log"
    where: str  # node, pod or ConfigMap name
    mode: str | None
    detail: str = ""

    @property
    def live(self) -> bool:
        """From the running kube-proxy (not what it is configured to do at its next start)."""
        return self.source != "ConfigMap"


SOURCE_NAMES = {"ConfigMap": "its ConfigMap", "/proxyMode": "/proxyMode", "metrics": "its metric names", "log": "its log"}


def judge(readings: Sequence[Reading]) -> tuple[str | None, str, str]:
    """(mode, confidence, sentence) from the sources' readings. Confidence: ``certain`` when two or more kinds of
    source agree, one of them the running kube-proxy, and none disagrees; ``likely`` when one kind of live source says
    it alone; ``configured only`` when only the ConfigMap says it; ``conflicting`` when sources disagree about the
    running proxy; ``unknown`` when none could tell.

    >>> judge([Reading("ConfigMap", "kube-system/kube-proxy", "iptables"), Reading("/proxyMode", "n1", "iptables")])[:2]
    ('iptables', 'certain')
    """
    said = [r for r in readings if r.mode]
    live = [r for r in said if r.live]
    config = [r for r in said if not r.live]
    live_modes = sorted({r.mode for r in live if r.mode})

    def kinds(rs: Iterable[Reading]) -> str:
        names = []
        for r in rs:
            n = SOURCE_NAMES.get(r.source, r.source)
            if n not in names:
                names.append(n)
        return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1] if names else ""

    if len(live_modes) > 1:
        per = "; ".join(f"{r.source} on {r.where} says {r.mode}" for r in live)
        return None, "conflicting", f"The running kube-proxy's sources disagree ({per}): nodes may run different modes."
    if live_modes:
        mode = live_modes[0]
        agree = [r for r in said if r.mode == mode]
        against = [r for r in config if r.mode != mode]
        n_kinds = len({r.source for r in agree})
        if against:
            return mode, "likely", (f"kube-proxy runs in {mode} mode by {kinds(live)}, but its ConfigMap asks for "
                                    f"{against[0].mode}: changed since kube-proxy started, so it applies at its next restart.")
        confidence = "certain" if n_kinds >= 2 else "likely"
        return mode, confidence, (f"kube-proxy runs in {mode} mode: {kinds(agree)} agree"
                                  if n_kinds >= 2 else f"kube-proxy runs in {mode} mode by {kinds(agree)} alone") + \
            f" ({confidence})."
    if config:
        mode = config[0].mode
        return mode, "configured only", (f"kube-proxy's ConfigMap asks for {mode} mode, but nothing from the running "
                                         "kube-proxy confirms it (configured only).")
    why = "; ".join(f"{r.source} ({r.where}): {r.detail.rstrip('.')}" for r in readings if r.detail)
    return None, "unknown", "No source could tell kube-proxy's mode here" + (f" — {why}." if why else ".")


def _log_readings(cluster: Any) -> list[Reading]:
    try:
        pods = cluster.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-proxy",
                                                _request_timeout=cluster.timeout).items
    except Exception as exc:  # noqa: BLE001 - a missing source is a row that says why
        err = translate(exc, cluster.conn.server, verb="list", resource="pods in kube-system")
        if isinstance(err, ClusterUnreachable):
            raise err from None
        return [Reading("log", "kube-system pods", None, err.message)]
    if not pods:
        return [Reading("log", "kube-system pods", None, "no pod labelled k8s-app=kube-proxy in kube-system")]
    pod = pods[0].metadata.name
    try:
        text = cluster.core.read_namespaced_pod_log(pod, "kube-system", limit_bytes=1 << 20, _request_timeout=cluster.timeout)
    except Exception as exc:  # noqa: BLE001
        err = translate(exc, cluster.conn.server, resource=f"pods/log {pod}")
        if isinstance(err, ClusterUnreachable):
            raise err from None
        return [Reading("log", f"pod {pod}", None, err.message)]
    mode = mode_from_log(text)
    return [Reading("log", f"pod {pod}", mode, f'"Using {mode} Proxier"' if mode else "no 'Using … Proxier' line")]


def _node_readings(cluster: Any, node: str) -> list[Reading]:
    out = []
    try:
        said = kube_proxy_get(cluster, node, "proxyMode").strip()
        out.append(Reading("/proxyMode", node, said or None, "GET :10249/proxyMode" if said else "an empty answer"))
    except (MetricsUnavailable, PermissionDenied) as exc:
        out.append(Reading("/proxyMode", node, None, exc.message))
    try:
        mode, name = mode_from_metric_names(metric_names(kube_proxy_get(cluster, node, "metrics")))
        out.append(Reading("metrics", node, mode, name or "no mode-specific kubeproxy_* metric"))
    except (MetricsUnavailable, PermissionDenied) as exc:
        out.append(Reading("metrics", node, None, exc.message))
    return out


def detect_proxy_mode(cluster: Any, max_nodes: int = 5) -> Result:
    """kube-proxy's mode from every source a client can read (reference §5): the ConfigMap (what it is configured to
    do), ``/proxyMode`` and the mode-specific metric names on port 10249 of up to ``max_nodes`` nodes (what it does),
    and its pod's log. The finding says which sources agreed and how sure that makes it."""
    cfg = read_config(cluster)
    ns, name, key = CONFIG
    readings = [Reading("ConfigMap", f"{ns}/{name}", cfg.mode, f"{key}: mode: {cfg.mode}" if cfg.mode else cfg.why)]
    try:
        nodes = cluster.nodes or [n["metadata"]["name"] for n in cluster.node_objects()]
    except ClusterUnreachable:
        raise
    except KperflabError:
        nodes = []
    for part in parallel_map(lambda n: _node_readings(cluster, n), nodes[:max_nodes]):
        readings += part
    readings += _log_readings(cluster)
    mode, confidence, sentence = judge(readings)
    df = pd.DataFrame([{"source": r.source, "where": r.where, "says": r.mode or "—", "detail": r.detail} for r in readings])
    fig = go.Figure(go.Table(header={"values": ["source", "where", "says", "detail"], "align": "left"},
                             cells={"values": [df[c] for c in ("source", "where", "says", "detail")], "align": "left"},
                             columnwidth=[1, 1.4, 0.8, 4]))
    fig = figures._finish(fig, f"kube-proxy's mode, source by source: {mode or 'unknown'} ({confidence})")
    fig.update_layout(height=120 + 32 * len(df))
    if len(nodes) > max_nodes:
        sentence += f" ({max_nodes} of {len(nodes)} nodes were asked.)"
    return Result(df, fig, sentence, {"mode": mode, "confidence": confidence, "configured": cfg.mode,
                                      "sources_agreeing": sorted({r.source for r in readings if r.mode and r.mode == mode})})


# -- kube-proxy's metrics ------------------------------------------------------------------------------------

@dataclass
class ProxyMetrics:
    """One reading of kube-proxy's /metrics: the values the experiments use (None where it does not export them)."""

    sync_count: float | None = None
    sync_sum: float | None = None
    last_sync: float | None = None
    pending: float | None = None
    service_changes: float | None = None
    nat_rules: float | None = None
    at: float = 0.0
    endpoint_changes: float | None = None
    last_queued: float | None = None

    @classmethod
    def parse(cls, text: str, at: float = 0.0) -> ProxyMetrics:
        df = metrics.prometheus_frame(text)

        def one(metric: str, **labels: str) -> float | None:
            if df.empty:
                return None
            rows = df[df.metric == metric]
            for k, v in labels.items():
                rows = rows[rows[k] == v] if k in rows else rows.iloc[0:0]
            return float(rows.value.sum()) if len(rows) else None

        pend = [one("kubeproxy_sync_proxy_rules_service_changes_pending"), one("kubeproxy_sync_proxy_rules_endpoint_changes_pending")]
        return cls(one(f"{SYNC_HISTOGRAM}_count"), one(f"{SYNC_HISTOGRAM}_sum"),
                   one("kubeproxy_sync_proxy_rules_last_timestamp_seconds"),
                   sum(p for p in pend if p is not None) if any(p is not None for p in pend) else None,
                   one("kubeproxy_sync_proxy_rules_service_changes_total"), one(NAT_RULES, table="nat"), at,
                   one("kubeproxy_sync_proxy_rules_endpoint_changes_total"),
                   one("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"))


def read_proxy_metrics(cluster: Any, node: str) -> ProxyMetrics:
    return ProxyMetrics.parse(kube_proxy_get(cluster, node, "metrics"), time.time())


def sync_delta(before: ProxyMetrics, after: ProxyMetrics) -> tuple[int, float]:
    """(syncs, seconds spent syncing) between two readings of the sync histogram; a reset (kube-proxy restarted, or
    a new proxier's histogram) counts from zero.

    >>> sync_delta(ProxyMetrics(3, 0.3), ProxyMetrics(5, 0.5))
    (2, 0.2)
    >>> sync_delta(ProxyMetrics(30, 3.0), ProxyMetrics(2, 0.1))
    (2, 0.1)
    """
    if after.sync_count is None or after.sync_sum is None:
        return 0, 0.0
    b_count, b_sum = before.sync_count or 0, before.sync_sum or 0.0
    if after.sync_count < b_count:
        return int(after.sync_count), round(after.sync_sum, 9)
    return int(after.sync_count - b_count), round(after.sync_sum - b_sum, 9)


def _grew(after: float | None, before: float | None, by: int) -> bool | None:
    """Whether a counter grew by at least ``by``; None where it is not exported or was reset."""
    if after is None or before is None or after < before:
        return None
    return after - before >= by


def wait_synced(cluster: Any, node: str, before: ProxyMetrics, since: float, timeout: float = 60.0,
                services: int = 0) -> ProxyMetrics:
    """Until kube-proxy on ``node`` has programmed the ``services`` Services created (or deleted) since ``before``:
    a sync finished since then, nothing pending or queued (``…_changes_pending``, ``…_last_queued_timestamp_seconds``
    where exported), and at least ``services`` more Service changes and as many EndpointSlice changes counted (one
    slice per Service). Where kube-proxy exports no change counters, a sync finished at or after ``since`` (epoch s,
    just before the changes) stands in for them."""
    deadline = time.monotonic() + timeout
    while True:
        m = read_proxy_metrics(cluster, node)
        done = m.sync_count is not None and m.sync_count != before.sync_count and not m.pending
        if done and m.last_queued is not None and m.last_sync is not None:
            done = m.last_queued <= m.last_sync  # no sync queued behind the last one
        counted = [g for g in (_grew(m.service_changes, before.service_changes, services),
                               _grew(m.endpoint_changes, before.endpoint_changes, services)) if g is not None]
        if done and services and counted:
            done = all(counted)
        elif done and m.last_sync is not None:
            done = m.last_sync >= since
        if done:
            return m
        if time.monotonic() > deadline:
            raise ExperimentFailed("wait for kube-proxy to sync", f"no finished sync on node {node} after {timeout:.0f} s "
                                   f"(syncs {before.sync_count} → {m.sync_count}, pending {m.pending})",
                                   hint="Check kube-proxy's log on that node.")
        time.sleep(0.1)


# -- switching modes -----------------------------------------------------------------------------------------

class ModeSwitch:
    """Switch kube-proxy's mode by patching its ConfigMap and waiting until ``/proxyMode`` on ``node`` reports it;
    the original ``config.conf`` text is put back on exit (also on error and Ctrl-C). Where the running mode cannot
    be read, or kube-proxy does not re-read its ConfigMap while it runs (kubeadm and kind read it at start), or we may
    not patch it, ``switch`` says why and only the current mode can be measured.

        >>> with ModeSwitch(cluster, "node-1") as sw:        # doctest: +SKIP
        ...     why = sw.switch("nftables")                  # "" once kube-proxy runs in nftables mode
    """

    def __init__(self, cluster: Any, node: str, timeout: float = 30.0) -> None:
        self.cluster, self.node, self.timeout = cluster, node, timeout
        self.config = ProxyConfig()
        self.original: str | None = None  # the running mode at the start
        self.unreadable = ""
        self.patched = False
        self.refused: dict[str, str] = {}
        self.restored = ""  # after exit: "" or why the original mode did not come back
        self.measured_as_is = ""  # where no switch can be confirmed: the label of what runs now (see `plan`)

    def __enter__(self) -> ModeSwitch:
        self.config = read_config(self.cluster)
        self.original = self.running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()

    def running(self) -> str | None:
        try:
            mode = kube_proxy_get(self.cluster, self.node, "proxyMode").strip() or None
            self.unreadable = "" if mode else f"/proxyMode on node {self.node} answered nothing"
            return mode
        except (MetricsUnavailable, PermissionDenied) as exc:
            self.unreadable = exc.message
            return None

    @property
    def current(self) -> str | None:
        """The mode kube-proxy runs in now, else the configured one (None when neither is known)."""
        return self.running() or self.config.mode

    def _patch(self, text: str) -> str:
        ns, name, key = CONFIG
        try:
            self.cluster.core.patch_namespaced_config_map(name, ns, {"data": {key: text}}, _request_timeout=self.cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            err = translate(exc, self.cluster.conn.server, verb="patch", resource=f"configmaps {ns}/{name}")
            if isinstance(err, ClusterUnreachable):
                raise err from None
            return err.message
        return ""

    def _wait(self, mode: str) -> bool:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.running() == mode:
                return True
            time.sleep(0.2)
        return False

    def plan(self, modes: Sequence[str]) -> tuple[list[str], dict[str, str], str]:
        """(modes to measure in order, modes left out with why, a note for the finding). Where the running mode can
        be read, the asked ``modes`` with the running one first; else only what runs now, named by the ConfigMap
        (or `UNKNOWN`), since no switch could be confirmed."""
        if self.original is not None:
            return _plan(modes, self.original), {}, ""
        label = self.config.mode or UNKNOWN
        why = f"the running kube-proxy's mode cannot be read ({self.unreadable.rstrip('.')}), so no switch could be confirmed"
        self.measured_as_is = label
        note = (f"The mode measured is the one kube-proxy's ConfigMap asks for ({label}); the running kube-proxy's mode could "
                "not be read, so it is not confirmed." if self.config.mode else
                "Which mode kube-proxy (or whatever proxies Services here) runs in is not known: no source could tell.")
        return [label], {m: why for m in dict.fromkeys(modes) if m != label}, note

    def switch(self, mode: str) -> str:
        """"" once kube-proxy runs in ``mode``; else why it does not (and the ConfigMap is put back)."""
        if mode == self.measured_as_is:
            return ""
        if mode in self.refused:
            return self.refused[mode]
        now = self.running()
        if now == mode:
            return ""
        if now is None:
            why = f"the running kube-proxy's mode cannot be read ({self.unreadable}), so a switch could not be confirmed"
        elif self.config.text is None:
            why = f"kube-proxy's configuration cannot be changed from here: {self.config.why}"
        else:
            since = time.time()
            why = self._patch(with_mode(self.config.text, mode))
            if not why:
                self.patched = True
                if self._wait(mode):
                    self._synced(mode, since)
                    return ""
                still = self.running()
                self.restore()
                why = (f"kube-proxy on node {self.node} still reported {still} {self.timeout:.0f} s after its ConfigMap "
                       f"asked for {mode}: it does not re-read the ConfigMap while it runs (kubeadm and kind start it "
                       "with --config from it; `kubectl -n kube-system rollout restart daemonset kube-proxy` switches "
                       "it) or it cannot run that mode on this node")
        self.refused[mode] = why
        return why

    def _synced(self, mode: str, since: float) -> None:
        """After a switch, wait (where kube-proxy's metrics are readable) until the new proxier has finished a sync
        since ``since`` with nothing pending, so that no measurement sees half-written rules."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                text = kube_proxy_get(self.cluster, self.node, "metrics")
            except (MetricsUnavailable, PermissionDenied):
                return
            m = ProxyMetrics.parse(text)
            shown, _ = mode_from_metric_names(metric_names(text))
            if shown in (mode, None) and not m.pending and (m.last_sync is None or m.last_sync >= since) \
                    and (m.sync_count or 0) > 0:
                return
            time.sleep(0.1)

    def restore(self) -> None:
        if not self.patched or self.config.text is None:
            return
        since = time.time()
        why = self._patch(self.config.text)
        self.patched = bool(why)
        if why:
            self.restored = f"the original ConfigMap could not be put back: {why}"
        elif self.original and not self._wait(self.original):
            self.restored = f"kube-proxy did not report {self.original} again within {self.timeout:.0f} s"
        else:
            self.restored = ""
            if self.original:
                self._synced(self.original, since)


def _try_metrics(cluster: Any, node: str) -> ProxyMetrics | None:
    try:
        return read_proxy_metrics(cluster, node)
    except (MetricsUnavailable, PermissionDenied):
        return None


def _slug(mode: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", mode.lower()).strip("-")


def _plan(modes: Sequence[str], current: str | None) -> list[str]:
    """The modes in the order to measure them: the one kube-proxy runs in first (no switch needed).

    >>> _plan(("iptables", "nftables"), "nftables")
    ['nftables', 'iptables']
    """
    modes = list(dict.fromkeys(modes))
    return sorted(modes, key=lambda m: m != current)


# -- workloads: backends, Services, probe pods ---------------------------------------------------------------

def _pod(name: str, script: str, env: dict[str, Any], workload: str, dns_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A client pod without service links: with thousands of Services in a namespace the kubelet would put
    thousands of variables into its environment, as on a real cluster."""
    manifest = workloads.pod(name, script, env, workload=workload)
    manifest["spec"]["enableServiceLinks"] = False
    if dns_config:
        manifest["spec"]["dnsConfig"] = dns_config
    return manifest


def _wait_running(ws: Any, names: Sequence[str], timeout: float, progress: bool) -> dict[str, Any]:
    return {n: ws.wait_for(n, lambda p: p.status.phase == "Running" and bool(p.status.pod_ip), timeout, "running",
                           progress, pod_failure) for n in names}


def start_backends(ws: Any, n: int = 2, timeout: float = 120, progress: bool = True) -> dict[str, Any]:
    """``n`` small HTTP echo pods labelled as the Services' backends; name → pod once each runs with an IP."""
    names = [f"echo-{i}" for i in range(n)]
    for name in names:
        ws.create(workloads.http_echo(name, port=BACKEND_PORT, labels=BACKEND, memory_limit="64Mi"))
    return _wait_running(ws, names, timeout, progress)


def service_manifest(name: str, selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kperflab", "app.kubernetes.io/part-of": "kperflab"}},
            "spec": {"type": "ClusterIP", "selector": dict(BACKEND if selector is None else selector),
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": BACKEND_PORT, "protocol": "TCP"}]}}


def create_services(cluster: Any, namespace: str, names: Sequence[str], workers: int = 16,
                    selector: dict[str, str] | None = None, progress: bool = True) -> tuple[float, dict[str, str]]:
    """Create the Services ``names`` with ``workers`` concurrent requests through the official client: (seconds it
    took, name → ClusterIP)."""
    from tqdm.auto import tqdm

    if not names:
        return 0.0, {}

    def one(name: str) -> tuple[str, str]:
        try:
            svc = cluster.core.create_namespaced_service(namespace, service_manifest(name, selector),
                                                         _request_timeout=max(cluster.timeout, 30))
        except Exception as exc:  # noqa: BLE001
            err = translate(exc, cluster.conn.server, verb="create", resource="services")
            if isinstance(err, (PermissionDenied, ClusterUnreachable)):
                raise err from None  # a right this user lacks: the experiment is skipped, saying so
            raise ExperimentFailed(f"create Service {name}", err.message, hint=err.hint) from None
        return name, svc.spec.cluster_ip

    t0 = time.perf_counter()
    out: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(names), desc=f"creating {len(names)} Services", disable=quiet(progress), leave=False) as bar:
        for name, ip in pool.map(one, names):
            out[name] = ip
            bar.update(1)
    took = time.perf_counter() - t0
    missing = [n for n, ip in out.items() if not ip or ip == "None"]
    if missing:
        raise ExperimentFailed("create Services", f"{len(missing)} Services got no ClusterIP (e.g. {missing[0]})",
                               hint="Check the API server's --service-cluster-ip-range.")
    return took, out


def svc_name(i: int) -> str:
    return f"svc-{i:05d}"


def pick_targets(n: int, k: int = 12) -> list[int]:
    """Creation indices to probe among ``n`` Services: the first, the last and evenly spread ones between.

    >>> pick_targets(1000, 5), pick_targets(3)
    ([0, 250, 500, 749, 999], [0, 1, 2])
    """
    if n <= k:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


class Unreachable(ExperimentFailed):
    """A client pod could not connect to the Services it was to measure."""


def _probe(ws: Any, manifest: dict[str, Any], timeout: float, progress: bool, what: str) -> list[dict[str, Any]]:
    """Run a client pod to its ``done`` line; an ``unreachable`` line is an `Unreachable` that names what did not answer."""
    from . import wait_event

    name = ws.create(manifest)
    evs = wait_event(ws, name, lambda e: e.get("event") in ("done", "unreachable"), timeout, progress, what)
    bad = next((e for e in evs if e["event"] == "unreachable"), None)
    if bad:
        raise Unreachable(what, f"{len(bad['targets'])} Service(s) did not lead a pod to the experiment's backends within "
                          f"{bad['waited']:.0f} s (e.g. {bad['targets'][0]}: {bad.get('why') or 'no answer'})",
                          hint="Check that a service proxy (kube-proxy) programs the node (`kubectl -n kube-system get "
                               f"pods`) and that the Services have endpoints (`kubectl get endpointslices -n {ws.namespace}`).")
    return evs


def _no_service_path(exc: Unreachable) -> Result:
    return Result.skip(f"a pod could not reach the backends through any Service's ClusterIP here ({exc.detail}), so "
                       "there was nothing to measure. " + (exc.hint or ""))


# Client pods stay (sleeping) after their last line until the workspace is deleted: a pod that ends gives its IP
# back, and a later pod of the same experiment could get it while the backends still cache the old pod's MAC for it.
_PROBE_PRELUDE = workloads._PRELUDE + """import socket
HOLD = float(os.environ.get("HOLD", "3600"))
BACKENDS = [b.encode() for b in os.environ.get("BACKENDS", "").split(",") if b]
def reply(addr, timeout):
    # "" when an HTTP GET through addr is answered by one of the experiment's backends (their JSON names them), else why not
    try:
        s = socket.create_connection(addr, timeout=timeout)
    except OSError as exc:
        return f"no connection ({exc.strerror or exc})"
    try:
        s.settimeout(2)
        s.sendall(b"GET /kperflab-check HTTP/1.0\\r\\nHost: check\\r\\n\\r\\n")
        data = b""
        while len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        return f"connected, then {exc.strerror or exc}"
    finally:
        s.close()
    if not BACKENDS or any(b'"' + b + b'"' in data for b in BACKENDS):
        return ""
    return "connected, but the answer did not come from the experiment's backends"
def wait_for(addrs, limit, start):
    # every addr reaches a backend before time.monotonic() - start > limit; else emit why not and stay (exit 3)
    while addrs:
        why = {a: reply(a, 0.5) for a in addrs}
        addrs = [a for a in addrs if why[a]]
        if addrs and time.monotonic() - start > limit:
            emit(event="unreachable", targets=[f"{h}:{p}" for h, p in addrs], why=why[addrs[0]],
                 waited=time.monotonic() - start)
            time.sleep(HOLD)
            sys.exit(3)
        if addrs:
            time.sleep(0.1)
"""

CONNECT_PROBE = _PROBE_PRELUDE + """import random
targets = [(h, int(p)) for h, p in (t.rsplit(":", 1) for t in os.environ["TARGETS"].split(","))]
samples, wait, warm = int(os.environ["SAMPLES"]), float(os.environ["WAIT"]), int(os.environ["WARM"])
pace = float(os.environ.get("DURATION", "0")) / max(samples, 1)  # rounds spread over DURATION s: a burst of other work hits few
def connect_us(addr, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        t0 = time.perf_counter_ns()
        s.connect(addr)
        return (time.perf_counter_ns() - t0) / 1000
    except OSError:
        return None
    finally:
        s.close()
start = time.monotonic()
if os.environ.get("FIRST_WAIT"):  # the first Service created answers soon, or nothing here proxies Services for a pod
    wait_for(targets[:1], float(os.environ["FIRST_WAIT"]), start)
wait_for(list(targets), wait, start)  # the rules are programmed when every probed Service reaches a backend
emit(event="ready", waited=round(time.monotonic() - start, 3))
for a in targets:
    for _ in range(warm):
        connect_us(a, 2)
got = {a: [] for a in targets}
order = list(targets)
for _ in range(samples):
    random.shuffle(order)  # interleaved, so that drift over time hits every Service alike
    for a in order:
        v = connect_us(a, 2)
        got[a].append(round(v, 1) if v is not None else -1)
    time.sleep(pace)
for a in targets:
    emit(event="target", target=f"{a[0]}:{a[1]}", us=got[a])
emit(event="done")
time.sleep(HOLD)
"""

HTTP_PROBE = _PROBE_PRELUDE + """import http.client
host, port = os.environ["TARGET"].rsplit(":", 1)
port, requests, wait, blocks = int(port), int(os.environ["REQUESTS"]), float(os.environ["WAIT"]), int(os.environ["BLOCKS"])
start = time.monotonic()
if os.environ.get("FIRST"):  # the first Service created answers soon, or nothing here proxies Services for a pod
    fh, fp = os.environ["FIRST"].rsplit(":", 1)
    wait_for([(fh, int(fp))], float(os.environ["FIRST_WAIT"]), start)
wait_for([(host, port)], wait, start)
def get(conn):
    conn.request("GET", "/")
    r = conn.getresponse()
    r.read()
    return r.status
kept = http.client.HTTPConnection(host, port, timeout=5)
get(kept)  # warm: the connection exists before the first timed request
fresh = http.client.HTTPConnection(host, port, timeout=5)
get(fresh)
fresh.close()
got = {"kept alive": [], "new per request": []}
per = max(1, requests // blocks)
for _ in range(blocks):  # alternate blocks, so that drift over time hits both alike
    for _ in range(per):
        t0 = time.perf_counter_ns()
        get(kept)
        got["kept alive"].append(round((time.perf_counter_ns() - t0) / 1e6, 4))
    for _ in range(per):
        t0 = time.perf_counter_ns()
        c = http.client.HTTPConnection(host, port, timeout=5)
        get(c)
        c.close()
        got["new per request"].append(round((time.perf_counter_ns() - t0) / 1e6, 4))
for k, v in got.items():
    emit(event="requests", connection=k, ms=v)
emit(event="done")
time.sleep(HOLD)
"""

DNS_PROBE = _PROBE_PRELUDE + """import socket, struct
name, repeat = os.environ["NAME"], int(os.environ["REPEAT"])
conf = open("/etc/resolv.conf").read()
emit(event="resolv.conf", text=conf)
def udp_out():
    rows = [line.split() for line in open("/proc/net/snmp") if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("OutDatagrams")])
# Does the DNS server answer at all? One A query by hand (so a dead server costs seconds, not glibc's 2 x 5 s per name)
server = next((line.split()[1] for line in conf.splitlines() if line.startswith("nameserver")), "127.0.0.1")
search = next((line.split()[1:] for line in conf.splitlines() if line.startswith("search")), [])
zone = next((d[4:] for d in search if d.startswith("svc.")), "cluster.local")
qname = b"".join(bytes([len(p)]) + p.encode() for p in f"kubernetes.default.svc.{zone}".split(".") if p) + b"\\0"
sent, answered = 0, False
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for attempt in range(2):
    s.sendto(struct.pack(">HHHHHH", 0x4B50 + attempt, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1), (server, 53))
    sent += 1
    try:
        answered = len(s.recv(4096)) >= 12
        break
    except OSError:
        pass
s.close()
emit(event="preflight", server=server, answered=answered, queries=sent, type="A")
if not answered:
    emit(event="dns-unreachable", server=server, waited=2 * sent)
    time.sleep(HOLD)
    sys.exit(3)
socket.getaddrinfo("localhost", 80)  # loads the resolver (localhost is in /etc/hosts: no query)
times, answer = [], None
before = udp_out()
for _ in range(repeat):
    t0 = time.perf_counter_ns()
    try:
        answer = sorted({ai[4][0] for ai in socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)})
    except socket.gaierror as exc:
        answer = f"no address ({exc.strerror})"
    times.append(round((time.perf_counter_ns() - t0) / 1e6, 4))
emit(event="lookups", name=name, ms=times, datagrams=udp_out() - before, answer=answer)
emit(event="done")
time.sleep(HOLD)
"""


# -- new-connection latency vs the number of Services -------------------------------------------------------

def _percentiles(values: Sequence[float]) -> tuple[float, float, float]:
    arr = np.asarray([v for v in values if v >= 0], dtype=float)
    if not len(arr):
        return math.nan, math.nan, math.nan
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99)), float(arr.mean())


def summarise_latency(targets: pd.DataFrame) -> pd.DataFrame:
    """Per (mode, n_services) from the per-target samples (columns mode, n_services, index, service, us: list of
    µs, -1 for a failed connect): pooled p50/p99, the first- and last-created Service's p50, the slowest and fastest
    probed Service's p50, and their ratio (``spread``)."""
    rows = []
    for (mode, n), part in targets.groupby(["mode", "n_services"], sort=False):
        pooled = [v for us in part.us for v in us]
        p50, p99, mean = _percentiles(pooled)
        per = part.assign(p50=[_percentiles(us)[0] for us in part.us]).sort_values("index")
        rows.append({"mode": mode, "n_services": int(n), "p50_us": p50, "p99_us": p99, "mean_us": mean,
                     "first_p50_us": float(per.p50.iloc[0]), "last_p50_us": float(per.p50.iloc[-1]),
                     "fastest_p50_us": float(per.p50.min()), "slowest_p50_us": float(per.p50.max()),
                     "spread": float(per.p50.max() / per.p50.min()) if per.p50.min() > 0 else math.nan,
                     "probed": len(per), "samples": sum(1 for v in pooled if v >= 0),
                     "failed": sum(1 for v in pooled if v < 0)})
    return pd.DataFrame(rows)


def _n(x: int) -> str:
    return f"{x:,}"


def latency_finding(summary: pd.DataFrame, not_measured: dict[str, str], created: Sequence[dict[str, Any]]) -> str:
    """The sentence for `service_latency`, computed from its summary (see `summarise_latency`)."""
    parts = []
    for mode, part in summary.groupby("mode", sort=False):
        part = part.sort_values("n_services")
        lo, hi = part.iloc[0], part.iloc[-1]
        if len(part) > 1:
            s = (f"in {mode} mode the median new connection took {lo.p50_us:.0f} µs with {_n(lo.n_services)} Services and "
                 f"{hi.p50_us:.0f} µs with {_n(hi.n_services)} ({hi.p50_us / lo.p50_us:.2f}x; p99 {lo.p99_us:.0f} → "
                 f"{hi.p99_us:.0f} µs)")
        else:
            s = f"in {mode} mode the median new connection took {hi.p50_us:.0f} µs (p99 {hi.p99_us:.0f} µs) with {_n(hi.n_services)} Services"
        s += (f"; at {_n(hi.n_services)} the last-created Service's median was {hi.last_p50_us:.0f} µs against "
              f"{hi.first_p50_us:.0f} µs for the first, and the slowest of the {hi.probed} probed was {hi.spread:.2f}x the fastest")
        parts.append(s)
    text = (parts[0][0].upper() + parts[0][1:] + "." + "".join(f" {p[0].upper()}{p[1:]}." for p in parts[1:])) if parts else ""
    modes = list(dict.fromkeys(summary["mode"])) if len(summary) else []
    if len(modes) >= 2:
        top = summary[summary.n_services == summary.n_services.max()].set_index("mode")
        if all(m in top.index for m in modes[:2]):
            a, b = (top.loc[m] for m in modes[:2])
            slow, fast = (a, b) if a.p50_us >= b.p50_us else (b, a)
            text += (f" At {_n(int(a.n_services))} Services the median in {slow.name} mode was {slow.p50_us / fast.p50_us:.2f}x "
                     f"the one in {fast.name} mode.")
    for mode, why in not_measured.items():
        text += f" {mode} was not measured: {why}."
    failed = int(summary["failed"].sum()) if len(summary) else 0
    if failed:
        text += f" {failed} connects timed out and are left out."
    if created:
        big = max(created, key=lambda c: c["services"])
        text += (f" Creating {_n(big['services'])} Services took {big['seconds']:.1f} s with {big['workers']} concurrent "
                 f"requests ({big['services'] / big['seconds']:.0f} per second).")
    return text.strip()


def latency_figure(summary: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    palette = {"iptables": "#d62728", "nftables": "#1f77b4", "ipvs": "#2ca02c"}
    for mode, part in summary.groupby("mode", sort=False):
        part = part.sort_values("n_services")
        colour = palette.get(str(mode), "#7f7f7f")
        fig.add_trace(go.Scatter(x=part.n_services, y=part.p50_us, name=f"{mode} p50", mode="lines+markers", line={"color": colour}))
        fig.add_trace(go.Scatter(x=part.n_services, y=part.p99_us, name=f"{mode} p99", mode="lines+markers",
                                 line={"color": colour, "dash": "dot"}))
        fig.add_trace(go.Scatter(x=part.n_services, y=part.last_p50_us, name=f"{mode} last-created p50", mode="markers",
                                 marker={"color": colour, "symbol": "triangle-up", "size": 10}))
    fig.update_xaxes(title="Services created by the experiment (log)", type="log")
    fig.update_yaxes(title="new TCP connection: connect() (µs)", rangemode="tozero")
    return figures._finish(fig, "New-connection latency through a ClusterIP vs number of Services")


@carry_on
def service_latency(cluster: Any, sizes: Sequence[int] = (10, 100, 1000), modes: Sequence[str] = ("iptables", "nftables"),
                    samples: int = 200, probed: int = 12, duration: float = 2.0, workers: int = 16, timeout: float = 180,
                    first_wait: float = 20, switch_timeout: float = 30, progress: bool = True) -> Result:
    """New-TCP-connection latency (``connect()`` from a client pod to a ClusterIP) with N Services in the cluster,
    per kube-proxy mode.

    N ClusterIP Services (``svc-00000`` …, created ``workers`` at a time; creation time measured) all select the same
    2 HTTP echo pods, so each has 2 endpoints and real rules. For each size the client pod first waits until every
    probed Service accepts a connection (the rules are programmed; that works on any cluster; where kube-proxy's
    metrics are readable it also waits for its sync to finish), then times ``samples`` rounds of one connect to each
    of ``probed`` Services in random order, spread over ``duration`` seconds: the first and last created and evenly
    spread ones between. Names sort in creation order, and kube-proxy in the lab writes ``KUBE-SERVICES`` in Service-name
    order, so "first/last created" is the first/last rule of that chain there. Upstream kube-proxy writes it in Go map
    order (random), so on a real cluster the position of a given Service is arbitrary: the spread between the slowest
    and fastest probed Service (``spread``) is the number that shows the linear scan.

    Modes are switched through kube-proxy's ConfigMap (`ModeSwitch`); where that cannot be done live, only the
    current mode is measured and the finding says why. The original mode is restored at the end. Where the first
    probe cannot connect to the first Service created within ``first_wait`` seconds, nothing on this cluster proxies
    Services for a pod and the result is skipped, saying so; every probe waits up to ``timeout`` for the others."""
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 1:
        raise BadInput("sizes must be positive numbers of Services.", hint="Pass for example sizes=(10, 100, 1000).")
    if not modes:
        raise BadInput("modes is empty.", hint='Pass modes like ("iptables", "nftables").')
    rows: list[dict[str, Any]] = []
    created: list[dict[str, Any]] = []
    not_measured: dict[str, str] = {}
    with cluster.workspace("service-latency") as ws:
        backends = start_backends(ws, progress=progress)
        node = next(iter(backends.values())).spec.node_name
        ips: dict[str, str] = {}
        with ModeSwitch(cluster, node, switch_timeout) as sw:
            order, not_measured, note = sw.plan(modes)
            for step, n in enumerate(sizes):
                before, t_start = _try_metrics(cluster, node), time.time()
                took, new = create_services(cluster, ws.namespace, [svc_name(i) for i in range(len(ips), n)], workers,
                                            progress=progress)
                ips.update(new)
                if before is not None and new:  # let kube-proxy finish programming them: no sync during the probe
                    try:
                        wait_synced(cluster, node, before, t_start, timeout, services=len(new))
                    except (MetricsUnavailable, PermissionDenied, ExperimentFailed):
                        pass  # the probe's own check (every probed Service answers) still stands
                if new:
                    created.append({"services": len(new), "seconds": took, "workers": workers})
                for mode in (order if step % 2 == 0 else order[::-1]):  # snake order: one switch per size
                    if mode in not_measured:
                        continue
                    why = sw.switch(mode)
                    if why:
                        not_measured[mode] = why
                        continue
                    idx = pick_targets(n, probed)
                    target = {f"{ips[svc_name(i)]}:{SERVICE_PORT}": i for i in idx}
                    env = {"TARGETS": ",".join(target), "SAMPLES": samples, "WAIT": timeout, "WARM": 20, "DURATION": duration,
                           "BACKENDS": ",".join(backends)}
                    if not rows:  # the first target is the first Service created
                        env["FIRST_WAIT"] = min(first_wait, timeout)
                    try:
                        evs = _probe(ws, _pod(f"probe-{_slug(mode)}-{n}", CONNECT_PROBE, env, "net-probe"),
                                     timeout + 60 + 2 * duration, progress, f"{mode}, {n} Services: connect()")
                    except Unreachable as exc:
                        if rows:
                            raise
                        return _no_service_path(exc)
                    for e in evs:
                        if e["event"] == "target":
                            i = target[e["target"]]
                            rows.append({"mode": mode, "n_services": n, "index": i, "service": svc_name(i), "us": e["us"]})
            restored = sw.restored
    targets = pd.DataFrame(rows, columns=["mode", "n_services", "index", "service", "us"])
    if targets.empty:
        return Result.skip("no mode could be measured: " + "; ".join(f"{m}: {w}" for m, w in not_measured.items()))
    summary = summarise_latency(targets)
    finding = latency_finding(summary, not_measured, created) + (f" {note}" if note else "")
    if restored:
        finding += f" Restoring kube-proxy's mode: {restored}."
    per_target = targets.assign(p50_us=[_percentiles(u)[0] for u in targets.us],
                                p99_us=[_percentiles(u)[1] for u in targets.us]).drop(columns="us")
    return Result(summary, latency_figure(summary), finding,
                  {"targets": per_target.to_dict("records"), "created": created, "not_measured": not_measured,
                   "node": node})


def by_position(result: Result) -> go.Figure:
    """From a `service_latency` result: each probed Service's median connect time against its creation order, at
    the largest size measured, one line per mode (in the lab, creation order is the order of KUBE-SERVICES)."""
    targets = pd.DataFrame(result.data.get("targets", []))
    fig = go.Figure()
    if targets.empty:
        return figures._finish(fig, f"Nothing to show: {result.skipped or 'no Service was probed'}")
    n = int(targets.n_services.max())
    palette = {"iptables": "#d62728", "nftables": "#1f77b4", "ipvs": "#2ca02c"}
    for mode, part in targets[targets.n_services == n].groupby("mode", sort=False):
        part = part.sort_values("index")
        fig.add_trace(go.Scatter(x=part["index"] + 1, y=part.p50_us, name=f"{mode} p50", mode="lines+markers",
                                 line={"color": palette.get(str(mode), "#7f7f7f")}))
    fig.update_xaxes(title=f"Service's place in creation order (1 = first of {_n(n)})")
    fig.update_yaxes(title="connect() median (µs)", rangemode="tozero")
    return figures._finish(fig, f"Does it matter which of {_n(n)} Services you connect to?")


# -- rule programming time ------------------------------------------------------------------------------------

def summarise_sync(rows: Sequence[dict[str, Any]], endpoints: int = 2) -> pd.DataFrame:
    """Per (mode, n_services): the mean sync duration of the one-Service changes, and — in iptables mode, where
    kube-proxy exports its rule count — the NAT rules our Services added (count minus the count before any of ours)
    next to ``n·(2 + 3E)``, the formula's share for them."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["change_sync_ms"] = [s / c * 1000 if c else math.nan for s, c in zip(df.change_seconds, df.change_syncs, strict=True)]
    base = {m: p.sort_values("n_services").nat_rules.iloc[0] for m, p in df.groupby("mode") if p.n_services.min() == 0}
    df["nat_rules_ours"] = [r.nat_rules - base[r.mode] if r.mode in base and r.nat_rules == r.nat_rules else math.nan
                            for r in df.itertuples()]
    df["nat_rules_formula"] = [r.n_services * (2 + 3 * endpoints) if r.nat_rules == r.nat_rules else math.nan for r in df.itertuples()]
    return df


def sync_finding(df: pd.DataFrame, not_measured: dict[str, str], endpoints: int = 2) -> str:
    parts = []
    for mode, part in df.groupby("mode", sort=False):
        part = part.dropna(subset=["change_sync_ms"]).sort_values("n_services")
        if part.empty:
            continue
        lo, hi = part.iloc[0], part.iloc[-1]
        s = (f"in {mode} mode a sync after one Service was added took {hi.change_sync_ms:.1f} ms with {_n(int(hi.n_services))} "
             f"of ours in the cluster")
        if len(part) > 1:
            s += f" against {lo.change_sync_ms:.1f} ms with {_n(int(lo.n_services))} ({hi.change_sync_ms / lo.change_sync_ms:.1f}x)"
        parts.append(s)
    text = "".join(f"{p[0].upper()}{p[1:]}. " for p in parts)
    ipt = df.dropna(subset=["nat_rules_ours"]) if "nat_rules_ours" in df else df.iloc[0:0]
    ipt = ipt[ipt.n_services > 0]
    if len(ipt):
        r = ipt.sort_values("n_services").iloc[-1]
        verdict = ("exactly as" if r.nat_rules_ours == r.nat_rules_formula
                   else f"{r.nat_rules_ours - r.nat_rules_formula:+,.0f} against what")
        text += (f"kube-proxy counted {r.nat_rules:,.0f} NAT rules with {_n(int(r.n_services))} of our Services, "
                 f"{r.nat_rules_ours:,.0f} more than before them: {verdict} {_n(int(r.n_services))}·(2 + 3·{endpoints}) = "
                 f"{r.nat_rules_formula:,.0f} predicts (NAT = 5 + S·(2 + 3E)). ")
    elif len(df) and "iptables" in set(df["mode"]):
        text += "kube-proxy does not export its NAT rule count (kubeproxy_sync_proxy_rules_iptables_total) here. "
    for mode, why in not_measured.items():
        text += f"{mode} was not measured: {why}. "
    return text.strip()


def sync_figure(df: pd.DataFrame) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("sync after adding one Service (ms)", "NAT rules our Services added"))
    palette = {"iptables": "#d62728", "nftables": "#1f77b4", "ipvs": "#2ca02c"}
    for mode, part in df.groupby("mode", sort=False):
        part = part.sort_values("n_services")
        colour = palette.get(str(mode), "#7f7f7f")
        fig.add_trace(go.Scatter(x=part.n_services, y=part.change_sync_ms, name=f"{mode}", mode="lines+markers",
                                 line={"color": colour}), row=1, col=1)
        rules = part.dropna(subset=["nat_rules_ours"]) if "nat_rules_ours" in part else part.iloc[0:0]
        if len(rules):
            fig.add_trace(go.Scatter(x=rules.n_services, y=rules.nat_rules_ours, name=f"{mode}: kube-proxy's count",
                                     mode="markers", marker={"color": colour, "size": 10}), row=1, col=2)
            fig.add_trace(go.Scatter(x=rules.n_services, y=rules.nat_rules_formula, name="S·(2+3E)", mode="lines",
                                     line={"color": "#555555", "dash": "dash"}), row=1, col=2)
    fig.update_xaxes(title="Services created by the experiment")
    fig.update_yaxes(title="ms", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title="rules", row=1, col=2)
    return figures._finish(fig, "kube-proxy's rule programming: sync time and rule count vs number of Services")


@carry_on
def sync_time(cluster: Any, sizes: Sequence[int] = (10, 100, 1000), modes: Sequence[str] = ("iptables", "nftables"),
              changes: int = 3, workers: int = 16, timeout: float = 120, switch_timeout: float = 30,
              progress: bool = True) -> Result:
    """kube-proxy's rule programming time vs the number of Services, per mode, from its own histogram
    ``kubeproxy_sync_proxy_rules_duration_seconds`` (deltas of ``_sum``/``_count`` read through the node proxy on
    port 10249), and its NAT rule count (``kubeproxy_sync_proxy_rules_iptables_total{table="nat"}``, iptables mode)
    against ``NAT = 5 + S·(2 + 3E)``.

    At 0 of our Services and then at each size (Services with 2 endpoints each, created ``workers`` at a time), once
    kube-proxy has synced them, ``changes`` times one more Service is added and the sync that programs it is timed:
    iptables rewrites the whole ``KUBE-SERVICES`` chain on every sync (O(all Services), even with partial syncs),
    nftables only what changed. Needs kube-proxy's metrics reachable through the node proxy, else it is skipped."""
    sizes = [0] + sorted({int(s) for s in sizes if int(s) > 0})
    if len(sizes) < 2:
        raise BadInput("sizes must hold a positive number of Services.", hint="Pass for example sizes=(10, 100, 1000).")
    if changes < 1:
        raise BadInput("changes must be at least 1.", hint="Pass for example changes=3.")
    rows: list[dict[str, Any]] = []
    not_measured: dict[str, str] = {}
    with cluster.workspace("sync-time") as ws:
        backends = start_backends(ws, progress=progress)
        node = next(iter(backends.values())).spec.node_name
        read_proxy_metrics(cluster, node)  # unreachable metrics: skipped here, saying why (carry_on)
        have = 0
        extra = 0
        with ModeSwitch(cluster, node, switch_timeout) as sw:
            order, not_measured, note = sw.plan(modes)
            for step, n in enumerate(sizes):
                before, t_start = read_proxy_metrics(cluster, node), time.time()
                t_bulk, _ = create_services(cluster, ws.namespace, [svc_name(i) for i in range(have, n)], workers, progress=progress)
                created, have = n - have, n
                for j, mode in enumerate(order if step % 2 == 0 else order[::-1]):  # snake: the first needs no switch
                    if mode in not_measured:
                        continue
                    why = sw.switch(mode)
                    if why:
                        not_measured[mode] = why
                        continue
                    bulk = (math.nan, math.nan)
                    if created and j == 0:  # the batch was programmed in this mode: its syncs are this mode's
                        bulk = sync_delta(before, wait_synced(cluster, node, before, t_start, timeout, services=created))
                    syncs, seconds = 0, 0.0
                    for _ in range(changes):
                        m0, t0 = read_proxy_metrics(cluster, node), time.time()
                        create_services(cluster, ws.namespace, [f"change-{extra:04d}"], 1, progress=False)
                        extra += 1
                        c, sec = sync_delta(m0, wait_synced(cluster, node, m0, t0, timeout, services=1))
                        syncs, seconds = syncs + c, seconds + sec
                    m0, t0 = read_proxy_metrics(cluster, node), time.time()
                    for i in range(extra - changes, extra):  # back to n of ours before the rule count is read
                        cluster.core.delete_namespaced_service(f"change-{i:04d}", ws.namespace, _request_timeout=cluster.timeout)
                    m2 = wait_synced(cluster, node, m0, t0, timeout, services=changes)
                    rows.append({"mode": mode, "n_services": n, "change_syncs": syncs, "change_seconds": seconds,
                                 "bulk_created": created if created and j == 0 else 0, "bulk_create_seconds": t_bulk,
                                 "bulk_syncs": bulk[0], "bulk_sync_seconds": bulk[1],
                                 "nat_rules": m2.nat_rules if m2.nat_rules is not None and mode == "iptables" else math.nan})
            restored = sw.restored
    if not rows:
        return Result.skip("no mode could be measured: " + "; ".join(f"{m}: {w}" for m, w in not_measured.items()))
    df = summarise_sync(rows)
    finding = sync_finding(df, not_measured) + (f" {note}" if note else "")
    if restored:
        finding += f" Restoring kube-proxy's mode: {restored}."
    return Result(df, sync_figure(df), finding, {"node": node, "not_measured": not_measured, "endpoints": 2})


def nat_rules_added(result: Result) -> tuple[int | None, int | None, int | None, str]:
    """For the NAT-rule exercise, from a `sync_time` result at the largest size measured in iptables mode: (S our
    Services, E endpoints each, the NAT rules kube-proxy's own count grew by for them, why there is none)."""
    if result.skipped:
        return None, None, None, result.skipped
    df = result.frame
    ipt = df[(df["mode"] == "iptables") & (df.n_services > 0)].dropna(subset=["nat_rules_ours"]) if "nat_rules_ours" in df else df.iloc[0:0]
    if ipt.empty:
        why = result.data.get("not_measured", {}).get("iptables") or \
            'kube-proxy did not export kubeproxy_sync_proxy_rules_iptables_total{table="nat"} here'
        return None, None, None, why
    r = ipt.sort_values("n_services").iloc[-1]
    return int(r.n_services), int(result.data.get("endpoints", 2)), int(r.nat_rules_ours), ""


# -- keep-alive vs a new connection per request --------------------------------------------------------------

def summarise_requests(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    out = []
    for r in rows:
        p50, p99, mean = _percentiles(r["ms"])
        out.append({"mode": r["mode"], "n_services": r["n_services"], "connection": r["connection"], "p50_ms": p50,
                    "p99_ms": p99, "mean_ms": mean, "requests": len(r["ms"])})
    return pd.DataFrame(out)


def keepalive_finding(df: pd.DataFrame, not_measured: dict[str, str]) -> str:
    parts = []
    for mode, part in df.groupby("mode", sort=False):
        p = part.set_index("connection")
        if {"kept alive", "new per request"} <= set(p.index):
            kept, new = p.loc["kept alive"], p.loc["new per request"]
            parts.append(f"in {mode} mode with {_n(int(kept.n_services))} Services a request on a kept-alive connection took "
                         f"{kept.p50_ms:.3f} ms (median) and one on a new connection {new.p50_ms:.3f} ms "
                         f"({new.p50_ms / kept.p50_ms:.1f}x; p99 {kept.p99_ms:.3f} vs {new.p99_ms:.3f} ms)")
    text = "".join(f"{p[0].upper()}{p[1:]}. " for p in parts)
    modes = list(dict.fromkeys(df["mode"])) if len(df) else []
    if len(modes) >= 2:
        new = df[df.connection == "new per request"].set_index("mode")
        kept = df[df.connection == "kept alive"].set_index("mode")
        a, b = modes[:2]
        text += (f"Between {a} and {b} mode the new-connection median differs {new.loc[a].p50_ms / new.loc[b].p50_ms:.2f}x, "
                 f"the kept-alive one {kept.loc[a].p50_ms / kept.loc[b].p50_ms:.2f}x. ")
    for mode, why in not_measured.items():
        text += f"{mode} was not measured: {why}. "
    return text.strip()


@carry_on
def keepalive_vs_new_connections(cluster: Any, n_services: int = 1000, modes: Sequence[str] = ("iptables", "nftables"),
                                 requests: int = 400, workers: int = 16, timeout: float = 180, first_wait: float = 20,
                                 switch_timeout: float = 30, progress: bool = True) -> Result:
    """With ``n_services`` Services in the cluster, HTTP requests to the last-created one from a client pod: all over
    one kept-alive connection, against a new connection per request (alternating blocks of each), per mode. Only
    the first packet of a connection walks kube-proxy's rules; the rest follow conntrack's entry."""
    if n_services < 1:
        raise BadInput("n_services must be at least 1.", hint="Pass for example n_services=1000.")
    rows: list[dict[str, Any]] = []
    not_measured: dict[str, str] = {}
    with cluster.workspace("keepalive") as ws:
        backends = start_backends(ws, progress=progress)
        node = next(iter(backends.values())).spec.node_name
        _, ips = create_services(cluster, ws.namespace, [svc_name(0)], 1, progress=False)  # first: programmed first
        ips.update(create_services(cluster, ws.namespace, [svc_name(i) for i in range(1, n_services)], workers,
                                   progress=progress)[1])
        first, last = ips[svc_name(0)], ips[svc_name(n_services - 1)]
        with ModeSwitch(cluster, node, switch_timeout) as sw:
            order, not_measured, note = sw.plan(modes)
            for mode in order:
                why = sw.switch(mode)
                if why:
                    not_measured[mode] = why
                    continue
                env = {"TARGET": f"{last}:{SERVICE_PORT}", "REQUESTS": requests, "WAIT": timeout, "BLOCKS": 10,
                       "BACKENDS": ",".join(backends)}
                if not rows:
                    env.update(FIRST=f"{first}:{SERVICE_PORT}", FIRST_WAIT=min(first_wait, timeout))
                try:
                    evs = _probe(ws, _pod(f"http-{_slug(mode)}", HTTP_PROBE, env, "net-probe"), timeout + first_wait + 60,
                                 progress, f"{mode}: {requests} requests each way")
                except Unreachable as exc:
                    if rows:
                        raise
                    return _no_service_path(exc)
                rows += [{"mode": mode, "n_services": n_services, "connection": e["connection"], "ms": e["ms"]}
                         for e in evs if e["event"] == "requests"]
            restored = sw.restored
    if not rows:
        return Result.skip("no mode could be measured: " + "; ".join(f"{m}: {w}" for m, w in not_measured.items()))
    df = summarise_requests(rows)
    finding = keepalive_finding(df, not_measured) + (f" {note}" if note else "")
    if restored:
        finding += f" Restoring kube-proxy's mode: {restored}."
    fig = go.Figure()
    for conn, part in df.groupby("connection", sort=False):
        fig.add_trace(go.Bar(x=part["mode"], y=part.p50_ms, name=f"{conn}: median",
                             text=[f"{v:.3f}" for v in part.p50_ms], textposition="outside"))
        fig.add_trace(go.Scatter(x=part["mode"], y=part.p99_ms, name=f"{conn}: p99", mode="markers", marker={"size": 10}))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="request latency (ms)", rangemode="tozero")
    fig.update_xaxes(title="kube-proxy mode")
    return Result(df, figures._finish(fig, f"HTTP requests with {_n(n_services)} Services: kept-alive vs new connections"),
                  finding, {"not_measured": not_measured, "node": node})


# -- DNS: what ndots:5 costs --------------------------------------------------------------------------------

@dataclass
class DnsCase:
    label: str
    name: str  # "{svc}" stands for a Service in the pod's own namespace
    ndots: int | None = None  # None: the cluster's default (ndots:5)


DNS_CASES = (
    DnsCase("external name, default ndots:5", "api.example.com"),
    DnsCase("external name with a trailing dot", "api.example.com."),
    DnsCase("external name, dnsConfig ndots:1", "api.example.com", 1),
    DnsCase("in-cluster FQDN without the trailing dot", "kubernetes.default.svc.{zone}"),
    DnsCase("in-cluster FQDN with the trailing dot", "kubernetes.default.svc.{zone}."),
    DnsCase("short Service name in the pod's namespace", "{svc}"),
)
FQDN_CASE = DNS_CASES[3].label  # the exercise's case: it resolves on every cluster, whatever the upstream DNS does


def dns_metric_paths(cluster: Any) -> list[str]:
    """Where to read cluster DNS's counters: the service proxy of kube-dns's ``metrics`` port, or — when kube-dns
    has several endpoints, which the service proxy would pick among at random — each endpoint pod's proxy."""
    from kubernetes import client

    service = "/api/v1/namespaces/kube-system/services/kube-dns:metrics/proxy/metrics"
    try:
        slices = client.DiscoveryV1Api(cluster.api).list_namespaced_endpoint_slice(
            "kube-system", label_selector="kubernetes.io/service-name=kube-dns", _request_timeout=cluster.timeout).items
    except ClusterUnreachable:
        raise
    except Exception:  # noqa: BLE001 - not allowed to list them: the service proxy is all there is
        return [service]
    pods, port = [], None
    for s in slices:
        port = next((p.port for p in s.ports or [] if p.name == "metrics"), port)
        pods += [e.target_ref.name for e in s.endpoints or [] if e.target_ref and e.target_ref.kind == "Pod"
                 and (e.conditions is None or e.conditions.ready is not False)]
    if len(set(pods)) <= 1 or port is None:
        return [service]
    return [f"/api/v1/namespaces/kube-system/pods/{p}:{port}/proxy/metrics" for p in sorted(set(pods))]


def dns_requests(cluster: Any, paths: Sequence[str]) -> dict[str, float]:
    """``coredns_dns_requests_total`` summed over the DNS servers, by query type (A, AAAA …)."""
    out: dict[str, float] = {}
    for path in paths:
        df = metrics.prometheus_frame(_raw(cluster, path, "services/proxy", hint=(
            "Cluster DNS's counters are read through the API server's service proxy of kube-dns's metrics port "
            "(CoreDNS: 9153); without them only the pod's own count of datagrams is shown.")), ["coredns_dns_requests_total"])
        for r in df.itertuples():
            t = getattr(r, "type", "") or "?"
            out[t] = out.get(t, 0.0) + float(r.value)
    return out


def summarise_dns(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    out = []
    for r in rows:
        p50, p99, _ = _percentiles(r["ms"])
        n = len(r["ms"])
        server = r.get("server")
        out.append({"case": r["case"], "name": r["name"], "ndots": r["ndots"], "p50_ms": p50, "max_ms": max(r["ms"]),
                    "queries_per_lookup": sum(server.values()) / n if server is not None else math.nan,
                    "a_per_lookup": server.get("A", 0.0) / n if server is not None else math.nan,
                    "aaaa_per_lookup": server.get("AAAA", 0.0) / n if server is not None else math.nan,
                    "datagrams_per_lookup": r["datagrams"] / n, "lookups": n,
                    "answer": r["answer"] if isinstance(r["answer"], str) else ", ".join(r["answer"])})
    return pd.DataFrame(out)


def dns_finding(df: pd.DataFrame, unavailable: str) -> str:
    counted = not unavailable and df.queries_per_lookup.notna().all()

    def cost(r: Any) -> str:
        q = f"{r.queries_per_lookup:.3g} queries at the DNS server" if counted else f"{r.datagrams_per_lookup:.3g} datagrams sent"
        return f"{q}, {r.p50_ms:.2f} ms"

    rows = list(df.itertuples())
    text = "One lookup (median of " + f"{rows[0].lookups} each) of " + "; ".join(
        f"{r.name} — {r.case} — cost {cost(r)}" for r in rows) + "."
    if counted:
        both = df[(df.a_per_lookup > 0) & (df.aaaa_per_lookup > 0)]
        if len(both):
            r = both.iloc[0]
            text += (f" glibc asks A and AAAA for every candidate name: {r.a_per_lookup:.3g} A and {r.aaaa_per_lookup:.3g} "
                     f"AAAA queries per lookup of {r['name']}.")
        diff = df[(df.queries_per_lookup - df.datagrams_per_lookup).abs() >= 0.5]
        if len(diff):
            text += (f" For {', '.join(diff['name'])} the server counted other than the pod sent: other clients queried it "
                     "at the same time.")
    else:
        text += f" The DNS server's own counters could not be read ({unavailable}), so the counts are the UDP datagrams the pod's kernel sent."
    col = "queries_per_lookup" if counted else "datagrams_per_lookup"
    for low in df.itertuples():
        same = df[(df["name"] == low.name) & (df.ndots > low.ndots)]
        if same.empty:
            continue
        high = same.iloc[0]
        if getattr(low, col) < high[col]:
            text += (f" With ndots:{low.ndots}, {low.name} cost {getattr(low, col):.3g} queries instead of {high[col]:.3g} "
                     f"({low.p50_ms:.2f} ms instead of {high.p50_ms:.2f} ms).")
        elif str(low.answer).startswith("no address"):
            text += (f" With ndots:{low.ndots}, {low.name} was tried as it is first, but it has no address here, so the "
                     f"resolver went on through the search list as well: {getattr(low, col):.3g} queries either way. A lower "
                     "ndots saves queries only for names that exist.")
    return text


@carry_on
def dns_lookups(cluster: Any, cases: Sequence[DnsCase] = DNS_CASES, repeat: int = 10, timeout: float = 120,
                progress: bool = True) -> Result:
    """``getaddrinfo`` from a pod (Debian's glibc in python:3.13-slim, which asks A and AAAA for every candidate
    name) for each case: an external-looking name with the default ``ndots:5`` (its search list is tried first),
    with a trailing dot, with ``dnsConfig: options ndots: 1``, an in-cluster FQDN without the dot, and a short
    Service name. One pod per case, ``repeat`` lookups each; the queries are counted at the DNS server
    (``coredns_dns_requests_total`` deltas through the API server's proxy) where readable, and always by the UDP
    datagrams the pod's own kernel sent (``/proc/net/snmp``)."""
    if repeat < 1:
        raise BadInput("repeat must be at least 1.", hint="Pass for example repeat=10.")
    from . import wait_event

    rows: list[dict[str, Any]] = []
    paths = dns_metric_paths(cluster)
    unavailable = ""
    resolv = ""
    with cluster.workspace("dns") as ws:
        create_services(cluster, ws.namespace, ["echo"], 1, selector={"kperflab.dev/none": "none"}, progress=False)
        for i, case in enumerate(cases):
            zone = next((d[4:] for d in _search(resolv) if d.startswith("svc.")), "cluster.local")  # svc.<zone>
            name = case.name.replace("{svc}", "echo").replace("{zone}", zone)
            before: dict[str, float] | None = None
            if not unavailable:
                try:
                    before = dns_requests(cluster, paths)
                except (MetricsUnavailable, PermissionDenied) as exc:
                    unavailable = exc.message.rstrip(".")
            dns_config = {"options": [{"name": "ndots", "value": str(case.ndots)}]} if case.ndots is not None else None
            pod = ws.create(_pod(f"dns-{i}", DNS_PROBE, {"NAME": name, "REPEAT": repeat}, "dns-probe", dns_config))
            evs = wait_event(ws, pod, lambda e: e.get("event") in ("done", "dns-unreachable"), timeout, progress, f"resolve {name}")
            dead = next((e for e in evs if e["event"] == "dns-unreachable"), None)
            if dead:
                return Result.skip(f"the cluster DNS server {dead['server']} did not answer a query from a pod within "
                                   f"{dead['waited']} s; check it with `kubectl -n kube-system get pods -l k8s-app=kube-dns`")
            got = next(e for e in evs if e["event"] == "lookups")
            pre = next((e for e in evs if e["event"] == "preflight"), {"queries": 0, "type": "A"})
            resolv = resolv or next((e["text"] for e in evs if e["event"] == "resolv.conf"), "")
            server = None
            if before is not None and not unavailable:
                try:
                    after = dns_requests(cluster, paths)
                    server = {t: after.get(t, 0.0) - before.get(t, 0.0) for t in set(after) | set(before)}
                    server[pre["type"]] = server.get(pre["type"], 0.0) - pre["queries"]  # the pod's own check query
                except (MetricsUnavailable, PermissionDenied) as exc:
                    unavailable = exc.message.rstrip(".")
            rows.append({"case": case.label, "name": name, "ndots": case.ndots or _ndots(resolv), "ms": got["ms"],
                         "datagrams": got["datagrams"], "answer": got["answer"], "server": server})
    if unavailable:
        for r in rows:
            r["server"] = None
    df = summarise_dns(rows)
    finding = dns_finding(df, unavailable)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("queries per lookup", "time per lookup (median, ms)"))
    labels = [f"{r.name}<br>ndots:{r.ndots}" for r in df.itertuples()]
    if not unavailable:
        fig.add_trace(go.Bar(x=labels, y=df.a_per_lookup, name="A (DNS server)"), row=1, col=1)
        fig.add_trace(go.Bar(x=labels, y=df.aaaa_per_lookup, name="AAAA (DNS server)"), row=1, col=1)
    fig.add_trace(go.Scatter(x=labels, y=df.datagrams_per_lookup, name="datagrams the pod sent", mode="markers",
                             marker={"size": 12, "symbol": "x"}), row=1, col=1)
    fig.add_trace(go.Bar(x=labels, y=df.p50_ms, name="median time", text=[f"{v:.2f}" for v in df.p50_ms]), row=1, col=2)
    fig.update_layout(barmode="stack", height=460)
    fig.update_yaxes(title="queries", row=1, col=1)
    fig.update_yaxes(title="ms", row=1, col=2)
    return Result(df, figures._finish(fig, "What a name lookup costs: queries and time").update_layout(height=460), finding,
                  {"resolv_conf": resolv, "server_counts": not unavailable, "unavailable": unavailable})


def _ndots(resolv: str) -> int:
    m = re.search(r"ndots:(\d+)", resolv)
    return int(m.group(1)) if m else 1


def _search(resolv: str) -> list[str]:
    return next((line.split()[1:] for line in resolv.splitlines() if line.startswith("search")), [])


def search_list(result: Result) -> list[str]:
    """The pod's search domains, as its /etc/resolv.conf said in a `dns_lookups` run."""
    return _search(result.data.get("resolv_conf", ""))


def queries_per_lookup(result: Result, case: str = FQDN_CASE) -> tuple[float | None, str]:
    """For the DNS exercise: how many queries one lookup in ``case`` cost, counted by the DNS server where its
    counters were readable, else by the datagrams the pod's kernel sent (both independent of the resolver's rules)."""
    if result.skipped:
        return None, result.skipped
    rows = result.frame[result.frame.case == case]
    if rows.empty:
        return None, f"the case '{case}' was not run"
    r = rows.iloc[0]
    value = r.queries_per_lookup if result.data.get("server_counts") else r.datagrams_per_lookup
    return float(round(value, 2)), ""


__all__ = ["DNS_CASES", "DnsCase", "by_position", "ModeSwitch", "ProxyMetrics", "Reading", "config_mode", "create_services",
           "detect_proxy_mode", "dns_lookups", "judge", "keepalive_vs_new_connections", "mode_from_log",
           "mode_from_metric_names", "nat_rules_added", "nat_rules_formula", "pick_targets", "queries_per_lookup",
           "service_latency", "sync_time", "with_mode"]
