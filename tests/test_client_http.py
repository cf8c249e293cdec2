"""The client library against a local HTTPS server that answers like a real cluster: errors and concurrency."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import kperflab
from kperflab import ConfigError, MetricsUnavailable, PermissionDenied
from kperflab.errors import KperflabError

from .test_doctor import GROUPS_WITH_METRICS, NODES_KIND, VERSION

FIX = Path(__file__).parent / "fixtures" / "metrics"


def serve(api, metrics: bool = True, nodes: dict | None = None):
    api.route("GET", "/version", 200, VERSION)
    api.route("GET", "/api/v1/nodes", 200, nodes or NODES_KIND)
    groups = GROUPS_WITH_METRICS if metrics else {**GROUPS_WITH_METRICS, "groups": GROUPS_WITH_METRICS["groups"][:1]}
    api.route("GET", "/apis", 200, groups)


def test_connect_without_any_cluster_says_how_to_start_the_lab(tmp_path, monkeypatch):
    monkeypatch.setenv("KPERFLAB_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError) as err:
        kperflab.connect()
    assert "kperflab lab up" in str(err.value)


def test_connect_learns_flavour_and_metrics_version(tmp_path, fake_api):
    serve(fake_api)
    c = kperflab.connect(fake_api.kubeconfig(tmp_path / "kc"))
    assert c.flavour == "kind" and c.version == "v1.31.2" and c.metrics_api == "v1beta1"
    assert c.namespace == "workshop" and c.nodes == [n["metadata"]["name"] for n in NODES_KIND["items"]]
    assert c.kube_proxy_mode is None  # no kube-proxy ConfigMap served
    fake_api.route("GET", "/api/v1/namespaces/kube-system/configmaps/kube-proxy", 200,
                   {"data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nmode: ipvs\n"}})
    del c.__dict__["kube_proxy_mode"]
    assert c.kube_proxy_mode == "ipvs"


def test_metrics_api_missing_is_a_clear_error_with_the_kind_hint(tmp_path, fake_api):
    serve(fake_api, metrics=False)
    c = kperflab.connect(fake_api.kubeconfig(tmp_path / "kc"))
    with pytest.raises(MetricsUnavailable) as err:
        c.top_pods()
    assert err.value.endpoint == "metrics.k8s.io" and "--kubelet-insecure-tls" in str(err.value)


def test_metrics_api_status_codes(tmp_path, fake_api):
    serve(fake_api)
    c = kperflab.connect(fake_api.kubeconfig(tmp_path / "kc"))
    fake_api.route("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/workshop/pods", 503,
                   {"kind": "Status", "code": 503, "message": "the server is currently unable to handle the request"})
    with pytest.raises(MetricsUnavailable) as err:
        c.top_pods()
    assert err.value.status == 503 and err.value.endpoint.endswith("/namespaces/workshop/pods")
    fake_api.route("GET", "/apis/metrics.k8s.io/v1beta1/nodes", 403, {"kind": "Status", "code": 403, "message": "forbidden"})
    with pytest.raises(PermissionDenied) as perr:
        c.node_metrics()
    assert perr.value.verb == "list" and perr.value.resource == "nodes.metrics.k8s.io"
    api = json.loads((FIX / "metrics-api.json").read_text())
    fake_api.route("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/workshop/pods", 200, api["pods"])
    assert set(c.top_pods().name) == {"kube-scheduler-minikube", "web"}


def test_node_proxy_errors_name_the_permission_and_the_endpoint(tmp_path, fake_api):
    serve(fake_api)
    c = kperflab.connect(fake_api.kubeconfig(tmp_path / "kc"))
    node = c.nodes[0]
    fake_api.route("GET", f"/api/v1/nodes/{node}/proxy/stats/summary", 403, {"kind": "Status", "code": 403})
    with pytest.raises(PermissionDenied) as err:
        c.summary(node)
    assert err.value.resource == "nodes/proxy" and "participant-rbac.yaml" in str(err.value)
    with pytest.raises(MetricsUnavailable) as merr:
        c.cadvisor(node)
    assert merr.value.status == 404 and merr.value.endpoint == f"/api/v1/nodes/{node}/proxy/metrics/cadvisor"
    fake_api.route("GET", f"/api/v1/nodes/{node}/proxy/metrics/resource", 200, (FIX / "resource.txt").read_text())
    df = c.resource_metrics(node)
    assert set(df.node) == {node} and "node_cpu_usage_seconds_total" in set(df.metric)


def test_sampler_reads_100_slow_nodes_concurrently_with_a_bound(tmp_path, fake_api):
    """Concurrency is checked by counting requests in flight at the server, not by timing (the time is a benchmark's
    business: benchmarks/metrics_sampling.py)."""
    from kperflab.parallel import MAX_WORKERS

    names = [f"n{i:03d}" for i in range(100)]
    serve(fake_api, nodes={"kind": "NodeList", "apiVersion": "v1", "metadata": {},
                           "items": [{"metadata": {"name": n}, "spec": {}, "status": {}} for n in names]})
    text = (FIX / "resource.txt").read_text()
    for n in names:
        fake_api.route("GET", f"/api/v1/nodes/{n}/proxy/metrics/resource", 200, text, delay=0.1)
    c = kperflab.connect(fake_api.kubeconfig(tmp_path / "kc"))
    s = c.sampler(nodes=True)
    s.read_once()  # warm the connection pool, as every round after the first
    t0 = time.perf_counter()
    rows = s.read_once()
    took = time.perf_counter() - t0
    assert len(rows) == 100 and {r["node"] for r in rows} == set(names)
    print(f"one round over 100 nodes at 100 ms each: {took:.2f} s, at most {fake_api.max_in_flight} at once")
    assert fake_api.max_in_flight == MAX_WORKERS, "reads fan out to exactly the bound, never more"


def test_without_a_metrics_api_the_lessons_carry_on(tmp_path, fake_api):
    from kperflab.experiments import Result, carry_on, foundations
    from kperflab.widgets import Message, live_top

    nodes = {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [
        {"metadata": {"name": "n1"}, "spec": {"providerID": "kind://docker/kind/n1"},
         "status": {"capacity": {"cpu": "4", "memory": "8Gi"}, "allocatable": {"cpu": "3800m", "memory": "7Gi"}}}]}
    serve(fake_api, metrics=False, nodes=nodes)
    fake_api.route("GET", "/api/v1/pods", 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
        {"metadata": {"name": "web", "namespace": "a"}, "spec": {"nodeName": "n1", "containers": [
            {"name": "c", "image": "x", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}}]}, "status": {"phase": "Running"}}]})
    c = kperflab.connect(fake_api.kubeconfig(tmp_path / "kc"))
    r = foundations.availability(c)
    assert not r.skipped and r.value("cpu (cores)", "requested", by="resource") == pytest.approx(0.25)
    assert "usage is unknown (no metrics API: metrics are not available from metrics.k8s.io)" in r.finding
    assert "pods request 0.25 of 3.80 allocatable cores" in r.finding
    forbidden = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                 "message": 'pods is forbidden: User "u" cannot list resource "pods" in API group "" at the cluster scope'}
    fake_api.route("GET", "/api/v1/pods", 403, forbidden)
    fake_api.route("GET", "/api/v1/namespaces/workshop/pods", 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})
    mine = foundations.availability(c)
    assert "pods in namespace workshop (you may not list pods cluster-wide) request 0.00 of 3.80" in mine.finding, mine.finding
    fake_api.route("GET", "/api/v1/pods", 500, {"kind": "Status", "code": 500, "message": "etcd is down"})
    with pytest.raises(KperflabError, match="500"):  # a broken cluster is not "not allowed": it is said as it is
        foundations.availability(c)
    msg = live_top(c, live=False)
    assert isinstance(msg, Message) and "--kubelet-insecure-tls" in msg.text

    @carry_on
    def needs_node_stats() -> Result:
        return c.summary("n1")  # 404 from this server: MetricsUnavailable

    skipped = needs_node_stats()
    assert skipped.skipped.startswith("Metrics are not available from /api/v1/nodes/n1/proxy/stats/summary (HTTP 404)")
    saved = json.loads(r.save(tmp_path / "r.json").read_text())
    assert saved["finding"] == r.finding and saved["frame"][0]["node"] == "n1"
