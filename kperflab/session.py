"""`kperflab.connect()` → a `Cluster`: what a notebook talks to.

It works on any cluster through the official client: the lab, kind, minikube, k3s, EKS, GKE, AKS. Reads return
tidy DataFrames (see `kperflab.metrics`); failures raise `kperflab.errors` whose message ends with the next step.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from typing import Any

import pandas as pd

from . import cluster as cl
from . import metrics
from .errors import ClusterUnreachable, KperflabError, MetricsUnavailable, PermissionDenied
from .parallel import parallel_map

Obj = dict[str, Any]


def connect(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None, namespace: str | None = None,
            timeout: float = 10.0, prometheus: str | None = None) -> Cluster:
    """Load a kubeconfig (or the in-cluster config), check that the API server answers, and learn what it is.

    With nothing configured this raises `ConfigError` saying how to start the lab or point at a cluster.
    ``prometheus`` names the Prometheus `Cluster.promql` asks (``"namespace/service:port"`` or a URL; default: Service
    ``monitoring/prometheus``, else one found by label — see `kperflab.promql`).

        >>> cluster = kperflab.connect()                  # doctest: +SKIP
        >>> cluster.flavour, cluster.metrics_api          # doctest: +SKIP
        ('kperflab-lab', 'v1')
    """
    conn = cl.load(kubeconfig, context, timeout)
    return Cluster(conn, namespace=namespace, timeout=timeout, prometheus=prometheus)


class Cluster:
    def __init__(self, conn: cl.Connection, namespace: str | None = None, timeout: float = 10.0,
                 prometheus: str | None = None) -> None:
        self.conn = conn
        self.timeout = timeout
        self.namespace = namespace or conn.namespace
        if prometheus:  # a malformed setting is said now, not at the first query
            from .promql import parse_target

            parse_target(prometheus)
        self.prometheus = prometheus
        self.prometheus_source: str | None = None  # which Prometheus answered the last promql(), and how it was chosen
        self.version_info = cl.server_version(conn, timeout)
        self.version = cl.git_version(self.version_info)
        try:
            self._nodes = cl.list_nodes(conn, timeout)
        except PermissionDenied:
            self._nodes = []
        self.flavour = cl.detect_flavour(self.version_info, self._nodes)
        self.metrics_api = cl.metrics_api_version(conn, timeout)

    def __repr__(self) -> str:
        return (f"<Cluster {self.flavour} {self.version} at {self.conn.server}, {len(self._nodes)} node(s), "
                f"metrics.k8s.io/{self.metrics_api or 'not served'}>")

    # -- what it is ----------------------------------------------------------------------------
    @property
    def api(self) -> Any:
        return self.conn.api

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.conn.api)

    @property
    def nodes(self) -> list[str]:
        return [n["metadata"]["name"] for n in self._nodes]

    def node_objects(self) -> list[Obj]:
        self._nodes = cl.list_nodes(self.conn, self.timeout)
        return self._nodes

    @property
    def limits_enforced(self) -> bool:
        return not self.limits_note

    @cached_property
    def limits_note(self) -> str:
        """"" where CPU and memory limits are enforced (every real cluster), else a clause saying why not, e.g.
        "limits are not enforced on node kperflab-lab (the lab is not running as root)". Read from the nodes' own
        annotations (``kperflab.dev/limits-enforced``), which only a node that cannot enforce limits sets to false."""
        notes = []
        for n in self._nodes:
            ann = n["metadata"].get("annotations") or {}
            if ann.get("kperflab.dev/limits-enforced") == "false":
                why = ann.get("kperflab.dev/limits-not-enforced") or "no reason given"
                notes.append(f"{n['metadata']['name']} ({why})")
        return f"limits are not enforced on node {', '.join(notes)}" if notes else ""

    @cached_property
    def user(self) -> str | None:
        """Who the API server says we are (a SelfSubjectReview); None where it does not say. Workspaces record it."""
        return cl.whoami(self.conn, self.timeout)

    @cached_property
    def kube_proxy_mode(self) -> str | None:
        """iptables, ipvs, nftables … from kube-proxy's ConfigMap (kubeadm, kind) when readable; None otherwise."""
        import yaml

        status, body = cl.get_raw(self.conn, "/api/v1/namespaces/kube-system/configmaps/kube-proxy", self.timeout)
        if status != 200:
            return None
        try:
            conf = yaml.safe_load((json.loads(body).get("data") or {}).get("config.conf", "")) or {}
        except (ValueError, yaml.YAMLError):
            return None
        return str(conf.get("mode") or "iptables")  # empty mode is iptables on Linux

    @cached_property
    def capabilities(self) -> dict[str, bool]:
        """What kperflab can do here, asked of the server (SelfSubjectAccessReview) and read from discovery."""
        def ask(verb: str, resource: str, sub: str = "", ns: str = "") -> bool:
            try:
                return cl.can_i(self.conn, verb, resource, subresource=sub, namespace=ns, timeout=self.timeout)
            except ClusterUnreachable:  # not a "no": the cell fails with the next step
                raise
            except KperflabError:
                return False

        enforced = not self.limits_note
        return {"metrics_api": self.metrics_api is not None, "node_stats": ask("get", "nodes", "proxy"),
                "create_namespaces": ask("create", "namespaces"), "create_pods": ask("create", "pods", ns=self.namespace),
                "limits_enforced": enforced}

    def describe(self) -> str:
        """A few lines for a notebook's connect cell: which cluster this is and what works here."""
        caps = self.capabilities
        lines = [f"Cluster: {self.flavour} {self.version} at {self.conn.server} ({len(self._nodes)} node(s)), "
                 f"context {self.conn.context or '-'}, namespace {self.namespace}, user {self.user or 'not reported'}"]
        lines.append(f"{'✓' if caps['metrics_api'] else '✗'} metrics API: "
                     + (f"metrics.k8s.io/{self.metrics_api}" if caps["metrics_api"] else
                        "not served, so the kubectl top cells will fail. " + cl.metrics_hint(self.flavour)))
        lines.append(f"{'✓' if caps['node_stats'] else '✗'} kubelet endpoints through nodes/proxy"
                     + ("" if caps["node_stats"] else ": not allowed, so the cAdvisor and Summary cells will fail "
                        "(see kperflab/manifests/participant-rbac.yaml)"))
        lines.append(f"{'✓' if caps['create_namespaces'] else '✗'} create namespaces for experiments")
        lines.append(f"{'✓' if caps['limits_enforced'] else '✗'} CPU and memory limits enforced"
                     + ("" if caps["limits_enforced"] else f": {self.limits_note.removeprefix('limits are not enforced ')}, "
                        "so throttling and OOM kills will not happen and the findings say so"))
        return "\n".join(lines)

    # -- workspaces ----------------------------------------------------------------------------
    def workspace(self, name: str, **kw: Any) -> Any:
        """A namespace of its own, deleted on exit, on error and on Ctrl-C.

            >>> with cluster.workspace("foundations") as ws:                       # doctest: +SKIP
            ...     ws.run(workloads.cpu_burner(cores=1, cpu_limit="500m"))
        """
        from .workspace import Workspace

        return Workspace(self, name, **kw)

    # -- kubelet endpoints ---------------------------------------------------------------------
    def node_proxy(self, node: str, path: str, timeout: float | None = None) -> str:
        """GET ``/api/v1/nodes/<node>/proxy/<path>`` (what ``kubectl get --raw`` does) as text."""
        endpoint = f"/api/v1/nodes/{node}/proxy/{path.lstrip('/')}"
        status, body = cl.get_raw(self.conn, endpoint, timeout or self.timeout, accept="*/*")
        if status in (401, 403):
            raise PermissionDenied("get", "nodes/proxy", status=status,
                                   detail="reading kubelet endpoints through the API server needs nodes/proxy")
        if status != 200:
            raise MetricsUnavailable(endpoint, status, hint=(
                f"Check that node {node} exists (`kubectl get nodes`) and its kubelet answers: "
                f"`kubectl get --raw {endpoint}`." if status in (404, 502, 503) else None))
        return body.decode(errors="replace")

    def _nodes_or(self, node: str | None) -> list[str]:
        return [node] if node else (self.nodes or [n["metadata"]["name"] for n in self.node_objects()])

    def summary(self, node: str | None = None) -> Obj:
        """The raw Summary API of one node (default: the first)."""
        return json.loads(self.node_proxy(node or self._nodes_or(None)[0], "stats/summary"))

    def summary_frames(self, node: str | None = None) -> dict[str, pd.DataFrame]:
        """``{"node", "pods", "containers"}`` frames over all nodes (read concurrently) or one."""
        parts = parallel_map(lambda n: metrics.summary_frames(self.summary(n)), self._nodes_or(node))
        return {k: pd.concat([p[k] for p in parts], ignore_index=True) for k in ("node", "pods", "containers")}

    def resource_metrics(self, node: str | None = None) -> pd.DataFrame:
        """``/metrics/resource``, one row per sample, with a ``node`` column."""
        def one(n: str) -> pd.DataFrame:
            return metrics.prometheus_frame(self.node_proxy(n, "metrics/resource")).assign(node=n)

        return pd.concat(parallel_map(one, self._nodes_or(node)), ignore_index=True)

    def cadvisor(self, node: str | None = None, families: list[str] | None = None) -> pd.DataFrame:
        """``/metrics/cadvisor``, one row per sample (optionally only some families), with a ``node`` column."""
        def one(n: str) -> pd.DataFrame:
            return metrics.prometheus_frame(self.node_proxy(n, "metrics/cadvisor"), families).assign(node=n)

        return pd.concat(parallel_map(one, self._nodes_or(node)), ignore_index=True)

    # -- metrics.k8s.io ------------------------------------------------------------------------
    def _metrics_list(self, path: str, selector: str | None) -> list[Obj]:
        if self.metrics_api is None:
            self.metrics_api = cl.metrics_api_version(self.conn, self.timeout)  # it may have come up since
        if self.metrics_api is None:
            raise MetricsUnavailable("metrics.k8s.io", None, hint=cl.metrics_hint(self.flavour))
        endpoint = f"/apis/metrics.k8s.io/{self.metrics_api}/{path}"
        status, body = cl.get_raw(self.conn, endpoint, self.timeout,
                                  query=[("labelSelector", selector)] if selector else None)
        if status in (401, 403):
            raise PermissionDenied("list", f"{path.rsplit('/', 1)[-1]}.metrics.k8s.io", status=status)
        if status != 200:
            raise MetricsUnavailable(endpoint, status, hint=cl.metrics_hint(self.flavour) if status in (404, 503) else None)
        return json.loads(body).get("items", [])

    def node_metrics(self, selector: str | None = None) -> list[Obj]:
        return self._metrics_list("nodes", selector)

    def pod_metrics(self, namespace: str | None = None, selector: str | None = None, all_namespaces: bool = False) -> list[Obj]:
        ns = None if all_namespaces else (namespace or self.namespace)
        return self._metrics_list(f"namespaces/{ns}/pods" if ns else "pods", selector)

    def top_nodes(self, selector: str | None = None) -> pd.DataFrame:
        """What ``kubectl top nodes`` shows, same numbers after the same rounding (plus the exact values).

            >>> cluster.top_nodes()[["name", "cpu_millicores", "cpu_percent", "memory_mib"]]   # doctest: +SKIP
                       name  cpu_millicores  cpu_percent  memory_mib
            0  kperflab-lab             529           26         273
        """
        alloc = {n["metadata"]["name"]: n["status"]["allocatable"] for n in self.node_objects()}
        return metrics.top_frame(self.node_metrics(selector), alloc)

    def top_pods(self, namespace: str | None = None, selector: str | None = None, all_namespaces: bool = False,
                 containers: bool = False) -> pd.DataFrame:
        """What ``kubectl top pods`` shows (``containers=True``: ``--containers``).

            >>> cluster.top_pods("default")[["name", "cpu_millicores", "memory_mib"]]   # doctest: +SKIP
               name  cpu_millicores  memory_mib
            0  burn             501           2
        """
        items = self.pod_metrics(namespace, selector, all_namespaces)
        return metrics.container_frame(items) if containers else metrics.top_frame(items)

    # -- Prometheus ----------------------------------------------------------------------------
    def promql(self, query: str, start: Any = None, end: Any = None, step: Any = None, *,
               prometheus: str | None = None, timeout: float = 30.0) -> pd.DataFrame:
        """A PromQL query as a tidy frame: a range query (one row per series and time) when ``start`` is given, else
        an instant query (one row per series) at ``end`` (default: now). Columns ``metric``, one per label, ``time``
        (UTC), ``value`` (float). Times: datetimes, epoch seconds, RFC 3339, ``"now"``, or relative (``"-5m"``);
        ``step``: seconds or ``"15s"`` (default: the range in 250 steps, at least 1 s). Asks Service
        ``monitoring/prometheus`` through the API server (else one found by label, or ``prometheus=``); an empty
        result carries ``attrs["note"]`` saying why it may be empty. Everything else: `kperflab.promql`.

        CPU cores each container used, over the last ten minutes, one column per pod:

            >>> cpu = cluster.promql('sum by (namespace, pod) (rate(container_cpu_usage_seconds_total'   # doctest: +SKIP
            ...                      '{container!="", namespace="demo"}[1m]))', start="-10m", step="15s")
            >>> cpu.pivot_table(index="time", columns="pod", values="value").plot()                  # doctest: +SKIP

        The share of CFS periods in which a container was throttled (0–1), now:

            >>> cluster.promql('sum by (pod) (rate(container_cpu_cfs_throttled_periods_total{namespace="demo"}[1m]))'
            ...                ' / sum by (pod) (rate(container_cpu_cfs_periods_total{namespace="demo"}[1m]))')  # doctest: +SKIP
              metric   pod                          time   value
            0         burn 2026-11-29 16:20:00.123+00:00  0.9789

        Working set (what the OOM killer and `kubectl top` count) in MiB, and OOM kills in the last five minutes:

            >>> mem = cluster.promql('container_memory_working_set_bytes{namespace="demo", container!=""}',
            ...                      start="-5m")                                                       # doctest: +SKIP
            >>> mem.assign(mib=mem.value / 2**20)[["pod", "container", "time", "mib"]]              # doctest: +SKIP
            >>> cluster.promql('sum by (pod) (increase(container_oom_events_total{namespace="demo"}[5m]))')  # doctest: +SKIP
        """
        from . import promql

        return promql.query(self, query, start, end, step, prometheus=prometheus, timeout=timeout)

    # -- sampling ------------------------------------------------------------------------------
    def sampler(self, **kw: Any) -> Any:
        """A `kperflab.sampler.Sampler` over this cluster (pods by label selector, or nodes).

            >>> df = cluster.sampler(selector="app=web", interval=5).run(duration=30)   # doctest: +SKIP
            >>> df[["time", "pod", "cpu_cores", "throttled_ratio"]].tail(1)            # doctest: +SKIP
        """
        from .sampler import Sampler

        return Sampler(self, **kw)
