"""`Cluster.promql` against the fake API server (tests/conftest.py): each result type, each error, the parameter
forms, the discovery of a Prometheus by label, and a Prometheus named by URL (a plain HTTP server on 127.0.0.1).
No lab, no real Prometheus here: the live checks are the lab's Prometheus tests."""

from __future__ import annotations

import doctest
import json
import math
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

import kperflab
from kperflab import promql as pq
from kperflab.errors import (
    BadInput,
    ClusterUnreachable,
    KperflabError,
    MetricsUnavailable,
    PermissionDenied,
    PrometheusUnavailable,
)

from .test_doctor import GROUPS_WITH_METRICS, NODES_KIND, VERSION

PROXY = "/api/v1/namespaces/monitoring/services/prometheus:web/proxy"
T0 = 1_800_000_000.0


def ok(data: dict, **extra) -> dict:
    return {"status": "success", "data": data, **extra}


def err(etype: str, text: str) -> dict:
    return {"status": "error", "errorType": etype, "error": text}


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


MATRIX = {"resultType": "matrix", "result": [
    {"metric": {"namespace": "demo", "pod": "burn", "container": "c"},
     "values": [[T0, "0.5"], [T0 + 15, "NaN"], [T0 + 30.123, "+Inf"]]},
    {"metric": {"__name__": "container_memory_working_set_bytes", "namespace": "demo", "pod": "idle", "node": "n1"},
     "values": [[T0, "1048576"], [T0 + 15, "-Inf"]]}]}


@pytest.fixture
def api(fake_api):
    """The fake API server, recording each request's full path and query (``api.seen``), and serving enough for
    `kperflab.connect` (a kind cluster)."""
    seen: list[str] = []
    base = fake_api.httpd.RequestHandlerClass

    class Recording(base):  # type: ignore[misc, valid-type]
        def _do(self) -> None:
            seen.append(self.path)
            super()._do()

        do_GET = do_POST = _do

    fake_api.httpd.RequestHandlerClass = Recording
    fake_api.seen = seen
    fake_api.route("GET", "/version", 200, VERSION)
    fake_api.route("GET", "/api/v1/nodes", 200, NODES_KIND)
    fake_api.route("GET", "/apis", 200, GROUPS_WITH_METRICS)
    return fake_api


def query_of(path: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(path).query, keep_blank_values=True).items()}


def asked(api, path: str) -> list[dict[str, str]]:
    """The query parameters of every request to ``path``."""
    return [query_of(p) for p in api.seen if urlsplit(p).path == path]


def connect(api, tmp_path, **kw):
    return kperflab.connect(api.kubeconfig(tmp_path / "kc"), **kw)


def test_range_query_is_one_row_per_series_and_time_with_the_query_intact(api, tmp_path):
    api.route("GET", f"{PROXY}/api/v1/query_range", 200, ok(MATRIX))
    c = connect(api, tmp_path)
    q = 'sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="demo",pod=~"b.+"}[1m])) + 0 * 1 & on() vector(1)'
    df = c.promql(q, start="-5m")
    (sent,) = asked(api, f"{PROXY}/api/v1/query_range")
    assert sent["query"] == q, "the PromQL reaches Prometheus unchanged (+, &, quotes, braces)"
    assert float(sent["end"]) - float(sent["start"]) == pytest.approx(300, abs=0.01) and sent["step"] == "2"
    assert sent["timeout"] == "28s"
    assert list(df.columns) == ["metric", "container", "namespace", "node", "pod", "time", "value"]
    assert len(df) == 5 and list(df.pod) == ["burn"] * 3 + ["idle"] * 2
    assert list(df.metric) == ["", "", ""] + ["container_memory_working_set_bytes"] * 2
    assert df.loc[0, "container"] == "c" and df.loc[3, "container"] == "" and df.loc[0, "node"] == ""
    assert str(df.time.dtype) == "datetime64[ms, UTC]"
    assert df.time[0] == pd.Timestamp(T0, unit="s", tz="UTC") and df.time[2] == pd.Timestamp("2027-01-15 08:00:30.123Z")
    v = df.value.tolist()
    assert v[0] == 0.5 and math.isnan(v[1]) and v[2] == math.inf and v[3] == 1048576.0 and v[4] == -math.inf
    assert df.attrs["result_type"] == "matrix" and df.attrs["query"] == q and df.attrs["step"] == 2.0
    assert df.attrs["prometheus"] == "Service monitoring/prometheus:web (the default)" == c.prometheus_source
    assert df.attrs["end"] - df.attrs["start"] == pd.Timedelta(minutes=5)
    assert df.pivot_table(index="time", columns="pod", values="value").shape == (3, 2)


def test_instant_vector_scalar_and_string_results(api, tmp_path):
    c = connect(api, tmp_path)
    path = f"{PROXY}/api/v1/query"
    api.route("GET", path, 200, ok({"resultType": "vector", "result": [
        {"metric": {"__name__": "up", "job": "kubernetes-nodes-cadvisor", "instance": "n1"}, "value": [T0, "1"]},
        {"metric": {"job": "x", "value": "label called value"}, "value": [T0, "0"]}]}))
    df = c.promql("up", end=T0)
    assert asked(api, path)[-1] == {"query": "up", "time": "1800000000", "timeout": "28s"}
    assert list(df.columns) == ["metric", "instance", "job", "label_value", "time", "value"]
    assert df.to_dict("records")[1] == {"metric": "", "instance": "", "job": "x", "label_value": "label called value",
                                        "time": pd.Timestamp(T0, unit="s", tz="UTC"), "value": 0.0}
    assert df.attrs["result_type"] == "vector" and df.attrs["time"] == pd.Timestamp(T0, unit="s", tz="UTC")
    c.promql("up")
    assert "time" not in asked(api, path)[-1], "without end=, Prometheus' own now"
    api.route("GET", path, 200, ok({"resultType": "scalar", "result": [T0, "0.25"]}))
    df = c.promql("scalar(vector(0.25))")
    assert list(df.columns) == ["time", "value"] and df.value.tolist() == [0.25] and df.attrs["result_type"] == "scalar"
    api.route("GET", path, 200, ok({"resultType": "string", "result": [T0, "hello"]}))
    assert c.promql('"hello"').value.tolist() == ["hello"]


def test_parameter_forms():
    now = T0
    iso = datetime.fromtimestamp(T0 - 600, UTC)
    for start in (iso, iso.replace(tzinfo=None), pd.Timestamp(iso), T0 - 600, int(T0 - 600), iso.isoformat(),
                  "2027-01-15T07:50:00Z", "-10m", "now-10m", "NOW - 600s"):
        _, params, _ = pq.request("up", start=start, end="now", now=now)
        assert dict(params)["start"] == str(int(T0 - 600)), start
    for step, want in ((15, "15"), (0.5, "0.5"), ("15s", "15"), ("1m", "60"), ("2", "2"), (timedelta(seconds=30), "30"),
                       (pd.Timedelta("250ms"), "0.25")):
        assert dict(pq.request("up", start="-1m", step=step, now=now)[1])["step"] == want
    assert dict(pq.request("up", start="-1h", now=now)[1])["step"] == "15", "an hour in 250 steps, rounded up"
    assert dict(pq.request("up", start="-10s", now=now)[1])["step"] == "1", "never below 1 s"
    assert pq.request("up", start="-11000s", step=1, now=now)[0] == "/api/v1/query_range", "11,000 steps (Prometheus' own limit) are allowed"
    with pytest.raises(BadInput, match=r"at a 1 s step is 11,002 points per series; Prometheus refuses more than 11,000 "
                                       r"steps per range\. Use step=2 or more"):
        pq.request("up", start="-11001s", step=1, now=now)
    cases = [({"start": 300}, "epoch seconds in 1970"), ({"start": "yesterday"}, "is not a time"),
             ({"start": "-5 minutes"}, "is not a time"), ({"start": "-5min"}, "is not a duration"), ({"start": True}, "is not a time"),
             ({"start": "-5m", "end": "-10m"}, "is before start"), ({"step": "15s"}, "only to a range query"),
             ({"start": "-5m", "step": 0}, "not a positive duration"), ({"start": "-5m", "step": "fast"}, "not a duration"),
             ({"start": float("nan")}, "is not a time")]
    for kw, message in cases:
        with pytest.raises(BadInput, match=message):
            pq.request("up", now=now, **kw)
    with pytest.raises(BadInput, match="empty"):
        pq.request("  ")
    assert str(pq.parse_target("prom/prometheus-operated")) == "Service prom/prometheus-operated"
    assert pq.parse_target("https://prom.example.org/prometheus/").url == "https://prom.example.org/prometheus"
    for bad in ("a/b/c", "monitoring/", "http://", "ns/svc:we b", "UPPER"):
        with pytest.raises(BadInput, match="neither"):
            pq.parse_target(bad)


def test_errors_say_what_happened_and_what_to_do(api, tmp_path):
    c = connect(api, tmp_path)
    path = f"{PROXY}/api/v1/query"
    # no Service (the API server's 404), and none to be found by label: the manifest and the parameter
    api.route("GET", path, 404, status(404, "NotFound", 'services "prometheus" not found'))
    api.route("GET", "/api/v1/services", 200, {"kind": "ServiceList", "items": []})
    with pytest.raises(PrometheusUnavailable) as e:
        c.promql("up")
    assert isinstance(e.value, MetricsUnavailable) and e.value.status == 404
    assert str(e.value).startswith("No Prometheus answers at Service monitoring/prometheus:web (it does not exist, and "
                                   "no Service labelled app.kubernetes.io/name=prometheus or operated-prometheus=true is "
                                   "visible to you).")
    assert "kubectl apply -f kperflab/manifests/prometheus.yaml" in e.value.hint and "prometheus=" in e.value.hint
    # the same in the lab: its flag first
    api.route("GET", "/api/v1/nodes", 200, {"kind": "NodeList", "items": [
        {"metadata": {"name": "kperflab-lab", "labels": {"kperflab.dev/lab": "true"}}, "spec": {}}]})
    lab = connect(api, tmp_path)
    api.route("GET", "/api/v1/services", 403, status(403, "Forbidden", "services is forbidden"))
    api.route("GET", "/api/v1/namespaces/monitoring/services", 403, status(403, "Forbidden", "services is forbidden"))
    with pytest.raises(PrometheusUnavailable, match="you may not list Services to look for another") as e:
        lab.promql("up")
    assert e.value.hint.startswith("Start the lab with Prometheus: `kperflab lab up --prometheus`")
    # a Service without a ready pod (the API server's 503), and Prometheus itself while starting (plain text 503)
    api.route("GET", path, 503, status(503, "ServiceUnavailable", 'no endpoints available for service "prometheus"'))
    with pytest.raises(PrometheusUnavailable, match=r'\(HTTP 503: no endpoints available for service "prometheus"\)') as e:
        c.promql("up")
    assert "kubectl get pods -n monitoring" in e.value.hint and e.value.status == 503
    api.route("GET", path, 503, "Service Unavailable")
    with pytest.raises(PrometheusUnavailable, match="HTTP 503: Service Unavailable") as e:
        c.promql("up")
    assert "starting" in e.value.hint
    api.route("GET", path, 503, status(503, "ServiceUnavailable", 'no service port "web" found for service "prometheus"'))
    with pytest.raises(PrometheusUnavailable, match="no service port") as e:
        c.promql("up")
    assert 'prometheus="monitoring/prometheus:PORT"' in e.value.hint
    # a query Prometheus rejects: its own words
    parse = 'invalid parameter "query": 1:6: parse error: unexpected right parenthesis \')\''
    api.route("GET", path, 400, err("bad_data", parse))
    with pytest.raises(BadInput) as e:
        c.promql("rate())")
    assert e.value.message == f"Prometheus rejected the query: {parse}." and "Correct the PromQL" in e.value.hint
    api.route("GET", path, 422, err("execution", "found duplicate series for the match group"))
    with pytest.raises(BadInput, match="could not evaluate the query: found duplicate series"):
        c.promql("a / on() b")
    api.route("GET", path, 503, err("timeout", "query timed out in expression evaluation"))
    with pytest.raises(KperflabError, match=r"gave up on the query \(timeout: query timed out") as e:
        c.promql("up")
    assert "timeout=" in e.value.hint
    # not allowed through the proxy
    api.route("GET", path, 403, status(403, "Forbidden", 'services "prometheus:web" is forbidden: User "u" cannot get '
                                       'resource "services/proxy" in API group "" in the namespace "monitoring"'))
    with pytest.raises(PermissionDenied) as e:
        c.promql("up")
    assert e.value.verb == "get" and e.value.resource == "services/proxy" and "namespace monitoring" in str(e.value)
    # something that is not Prometheus behind the Service
    api.route("GET", path, 200, "<html>Grafana</html>")
    with pytest.raises(KperflabError, match=r"answered HTTP 200, but not with Prometheus' query API \(<html>Grafana"):
        c.promql("up")
    # the cluster gone: as everywhere in kperflab
    api.httpd.shutdown()
    api.httpd.server_close()
    c.conn.api.rest_client.pool_manager.clear()  # its kept-alive connection would still be served by the handler thread
    with pytest.raises(ClusterUnreachable, match="connection refused"):
        c.promql("up")


def test_empty_result_has_the_columns_and_says_why(api, tmp_path):
    c = connect(api, tmp_path)
    api.route("GET", f"{PROXY}/api/v1/query_range", 200, ok({"resultType": "matrix", "result": []}))
    api.route("GET", f"{PROXY}/api/v1/targets", 200, ok({"activeTargets": [
        {"scrapePool": "kubernetes-nodes-cadvisor", "health": "unknown", "lastScrape": "0001-01-01T00:00:00Z",
         "scrapeInterval": "15s", "lastError": ""}], "droppedTargets": []}))
    with pytest.warns(pq.PromQLWarning, match="has not scraped its 1 target") as w:
        df = c.promql("rate(container_cpu_usage_seconds_total[1m])", start="-1m")
    assert len([x for x in w if x.category is pq.PromQLWarning]) == 1 and df.empty and list(df.columns) == ["metric", "time", "value"]
    assert str(df.time.dtype) == "datetime64[ms, UTC]" and df.value.dtype == float
    assert df.attrs["note"].startswith("No series matched 'rate(container_cpu_usage_seconds_total[1m])' between ")
    assert "within 15s of its start, so run it again in a moment" in df.attrs["note"]
    assert asked(api, f"{PROXY}/api/v1/targets") == [{"state": "active"}]
    api.route("GET", f"{PROXY}/api/v1/targets", 200, ok({"activeTargets": [
        {"scrapePool": "kubernetes-nodes-cadvisor", "scrapeUrl": "https://kubernetes.default.svc:443/x", "health": "down",
         "lastScrape": "2027-01-15T08:00:00Z", "scrapeInterval": "15s", "lastError": "server returned HTTP status 403 Forbidden"},
        {"health": "up", "lastScrape": "2027-01-15T08:00:00Z"}]}))
    with pytest.warns(pq.PromQLWarning, match=r"1 of 2 scrape target\(s\) are down \(kubernetes-nodes-cadvisor .*403 Forbidden\)"):
        c.promql("up", start="-1m")
    api.route("GET", f"{PROXY}/api/v1/targets", 200, ok({"activeTargets": [{"health": "up", "lastScrape": "2027-01-15T08:00:00Z",
                                                                            "scrapeInterval": "15s"}]}))
    with pytest.warns(pq.PromQLWarning, match=r"need two samples inside their window \(scraped every 15s\)"):
        c.promql("up", start="-1m")
    # Prometheus' own warnings and infos are surfaced, with the data
    api.route("GET", f"{PROXY}/api/v1/query", 200, ok(
        {"resultType": "vector", "result": [{"metric": {"pod": "a"}, "value": [T0, "2"]},
                                            {"metric": {"pod": "h"}, "histogram": [T0, {"count": "2", "sum": "1"}]}]},
        warnings=["PromQL warning: encountered a mix of histograms and floats"], infos=["PromQL info: x"]))
    with pytest.warns(pq.PromQLWarning) as w:
        df = c.promql("foo")
    assert [str(x.message) for x in w if x.category is pq.PromQLWarning] == [
        "Prometheus warns: PromQL warning: encountered a mix of histograms and floats",
        "1 native-histogram sample(s) were left out: wrap the query in histogram_count(), histogram_sum() or "
        "histogram_quantile() to get numbers."]
    assert df.pod.tolist() == ["a"] and df.attrs["infos"] == ["PromQL info: x"] and len(df.attrs["warnings"]) == 2


def service(ns: str, name: str, labels: dict, ports: list[dict]) -> dict:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels}, "spec": {"ports": ports}}


def test_discovery_by_label_when_the_default_service_is_absent(api, tmp_path):
    c = connect(api, tmp_path)
    api.route("GET", f"{PROXY}/api/v1/query", 404, status(404, "NotFound", 'services "prometheus" not found'))
    by_label = {
        "app.kubernetes.io/name=prometheus": [
            service("kube-prom", "prometheus-k8s", {"app.kubernetes.io/name": "prometheus"},
                    [{"name": "web", "port": 9090}, {"name": "reloader-web", "port": 8080}]),
            service("prom", "prometheus-server", {"app.kubernetes.io/name": "prometheus"}, [{"name": "http", "port": 80}])],
        "operated-prometheus=true": [
            service("monitoring", "prometheus-operated", {"operated-prometheus": "true"}, [{"name": "web", "port": 9090}])]}

    def services(body):
        return 200, {"kind": "ServiceList", "items": by_label[query_of(api.seen[-1])["labelSelector"]]}

    api.routes[("GET", "/api/v1/services")] = services
    operated = "/api/v1/namespaces/monitoring/services/prometheus-operated:web/proxy/api/v1/query"
    api.route("GET", operated, 200, ok({"resultType": "vector", "result": [{"metric": {"a": "b"}, "value": [T0, "1"]}]}))
    df = c.promql("up")
    assert df.value.tolist() == [1.0]
    want = ("Service monitoring/prometheus-operated:web (found by its label operated-prometheus=true; "
            "Service monitoring/prometheus:web does not exist)")
    assert df.attrs["prometheus"] == want == c.prometheus_source, "monitoring first, then the label order"
    before = len(api.seen)
    c.promql("up")
    assert [urlsplit(p).path for p in api.seen[before:]] == [operated], "found once, then asked directly"
    api.route("GET", operated, 404, status(404, "NotFound", 'services "prometheus-operated" not found'))
    with pytest.raises(PrometheusUnavailable, match="prometheus-operated"):
        c.promql("up")  # the one found is gone: said as it is, and looked for again next time
    api.route("GET", operated, 200, ok({"resultType": "scalar", "result": [T0, "1"]}))
    before = len(api.seen)
    c.promql("up")
    assert [urlsplit(p).path for p in api.seen[before:]][:2] == [f"{PROXY}/api/v1/query", "/api/v1/services"]
    # elsewhere: kube-prometheus' prometheus-k8s by its web port (not reloader-web), before the chart's prometheus-server
    c2 = connect(api, tmp_path)
    by_label["operated-prometheus=true"] = []
    k8s = "/api/v1/namespaces/kube-prom/services/prometheus-k8s:web/proxy/api/v1/query"
    api.route("GET", k8s, 200, ok({"resultType": "vector", "result": []}))
    api.route("GET", "/api/v1/namespaces/kube-prom/services/prometheus-k8s:web/proxy/api/v1/targets", 200,
              ok({"activeTargets": []}))
    with pytest.warns(pq.PromQLWarning, match="no active scrape target yet"):
        assert c2.promql("up").empty
    assert c2.prometheus_source.startswith("Service kube-prom/prometheus-k8s:web (found by its label app.kubernetes.io/name")
    # a named Prometheus is never replaced by another: its 404 is the answer
    c3 = connect(api, tmp_path, prometheus="monitoring/prometheus:web")
    before = len(api.seen)
    with pytest.raises(PrometheusUnavailable, match="not found") as e:
        c3.promql("up")
    assert all(urlsplit(p).path != "/api/v1/services" for p in api.seen[before:])
    assert e.value.where == "Service monitoring/prometheus:web"


def test_cluster_wide_list_forbidden_falls_back_to_the_monitoring_namespace(api, tmp_path):
    c = connect(api, tmp_path)
    api.route("GET", f"{PROXY}/api/v1/query", 404, status(404, "NotFound", 'services "prometheus" not found'))
    api.route("GET", "/api/v1/services", 403, status(403, "Forbidden", "forbidden"))
    api.route("GET", "/api/v1/namespaces/monitoring/services", 200, {"kind": "ServiceList", "items": [
        service("monitoring", "prom", {"app.kubernetes.io/name": "prometheus"}, [{"port": 9090}])]})
    api.route("GET", "/api/v1/namespaces/monitoring/services/prom:9090/proxy/api/v1/query", 200,
              ok({"resultType": "scalar", "result": [T0, "1"]}))
    assert c.promql("1").value.tolist() == [1.0]
    assert c.prometheus_source.startswith("Service monitoring/prom:9090 (found by its label")


def test_the_prometheus_setting_argument_connect_and_environment(api, tmp_path, monkeypatch):
    with pytest.raises(BadInput, match='prometheus="Monitoring/x" is neither'):
        connect(api, tmp_path, prometheus="Monitoring/x")  # said at connect, not at the first query
    other = "/api/v1/namespaces/obs/services/prom:http-web/proxy/api/v1/query"
    api.route("GET", other, 200, ok({"resultType": "scalar", "result": [T0, "2"]}))
    c = connect(api, tmp_path, prometheus="obs/prom:http-web")
    assert c.promql("2").value.tolist() == [2.0]
    assert c.prometheus_source == "Service obs/prom:http-web (from connect(prometheus=))"
    # a Service named without a port: its Prometheus port, read from the Service
    api.route("GET", "/api/v1/namespaces/obs/services/prom", 200,
              service("obs", "prom", {}, [{"name": "grpc", "port": 10901}, {"name": "http-web", "port": 9090}]))
    assert c.promql("2", prometheus="obs/prom").value.tolist() == [2.0]
    assert c.prometheus_source == "Service obs/prom:http-web (from prometheus=)"
    monkeypatch.setenv(pq.ENV, "obs/prom:http-web")
    c2 = connect(api, tmp_path)
    c2.promql("2")
    assert c2.prometheus_source == f"Service obs/prom:http-web (from ${pq.ENV})"


@pytest.fixture
def plain_prometheus():
    """A plain HTTP server on 127.0.0.1 answering /prefix/api/v1/query like Prometheus (as after a port-forward)."""
    seen: list[str] = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            q = query_of(self.path)
            if urlsplit(self.path).path != "/prefix/api/v1/query":
                code, body = 404, b"404 page not found\n"
            else:
                code, body = 200, json.dumps(ok({"resultType": "vector", "result": [
                    {"metric": {"query": q["query"]}, "value": [T0, "3"]}]})).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_a_prometheus_named_by_url(api, tmp_path, plain_prometheus):
    url, seen = plain_prometheus
    c = connect(api, tmp_path)
    q = 'sum(rate(x{a="b c"}[5m])) + 1'
    df = c.promql(q, prometheus=url + "/prefix/")
    assert df["query"].tolist() == [q] and df.value.tolist() == [3.0], "the query string arrives intact over plain HTTP"
    assert c.prometheus_source == f"{url}/prefix (from prometheus=)"
    with pytest.raises(KperflabError, match="answered HTTP 404, but not with Prometheus' query API"):
        c.promql("up", prometheus=url)
    port = urlsplit(url).port
    dead = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    closed = f"http://127.0.0.1:{dead.server_address[1]}"
    dead.server_close()
    with pytest.raises(PrometheusUnavailable, match=rf"No Prometheus answers at {closed} \(connection refused\)") as e:
        c.promql("up", prometheus=closed)
    assert "kubectl port-forward" in e.value.hint and port


def test_docstring_examples_run():
    result = doctest.testmod(pq, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 15
