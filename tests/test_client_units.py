"""The client library on recorded payloads: parsing, kubectl's rounding, rates, manifests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kperflab import metrics, workloads
from kperflab.sampler import rates

FIX = Path(__file__).parent / "fixtures" / "metrics"
ROOT = Path(__file__).resolve().parents[1]


def test_summary_frames_keep_unknown_as_nan():
    f = metrics.summary_frames(json.loads((FIX / "summary.json").read_text()))
    node = f["node"].iloc[0]
    assert node["node"] == "worker-1" and node["cpu_cores"] == pytest.approx(0.487558164)
    assert node["cpu_seconds_total"] == pytest.approx(357.35491)
    assert node["memory_working_set_bytes"] == 1616273408 and node["network_rx_bytes_total"] == 1000
    pods = f["pods"].set_index("pod")
    assert pods.loc["auditproxy", "memory_rss_bytes"] == 70098944 and pods.loc["auditproxy", "processes"] == 3
    assert pods.loc["auditproxy", "ephemeral_storage_used_bytes"] == 45023232
    assert math.isnan(pods.loc["fresh", "cpu_cores"]), "no usageNanoCores yet: unknown, not 0"
    c = f["containers"].set_index("container")
    assert c.loc["auditproxy", "memory_working_set_bytes"] == 76451840
    assert math.isnan(c.loc["auditproxy", "memory_rss_bytes"])  # the CRI-stats shape: only workingSetBytes
    assert math.isnan(c.loc["app", "memory_working_set_bytes"])
    assert c.loc["app", "time"] == pd.Timestamp("2026-11-28T10:00:04Z")


def test_prometheus_and_resource_frames():
    text = (FIX / "resource.txt").read_text()
    df = metrics.prometheus_frame(text)
    assert len(df) == len([ln for ln in text.splitlines() if ln and not ln.startswith("#")])
    node = df[df.metric == "node_cpu_usage_seconds_total"].iloc[0]
    assert node["value"] == pytest.approx(357.35491)
    assert node["timestamp"] == pd.Timestamp("2021-10-03T09:36:49.720Z")
    start = df[df.metric == "container_start_time_seconds"].iloc[0]
    assert pd.isna(start["timestamp"])
    r = metrics.resource_frame(text).iloc[0]
    assert (r["namespace"], r["pod"], r["container"]) == ("kube-system", "coredns-558bd4d5db-4dpjz", "coredns")
    assert r["memory_working_set_bytes"] == 12533760 and r["start_time"] == pd.Timestamp("2021-10-03T09:18:32Z")
    only = metrics.prometheus_frame((FIX / "cadvisor.txt").read_text(), ["container_spec_cpu_quota"])
    assert list(only.metric.unique()) == ["container_spec_cpu_quota"] and only.iloc[0]["value"] == 50000


def test_top_rounds_like_kubectl():
    api = json.loads((FIX / "metrics-api.json").read_text())
    nodes = metrics.top_frame(api["nodes"]["items"], api["allocatable"]).iloc[0]
    assert (nodes["cpu_millicores"], nodes["memory_mib"]) == (488, 715)  # the docs' minikube: 488m 715Mi
    assert (nodes["cpu_percent"], nodes["memory_percent"]) == (24, 9)
    assert nodes["window_seconds"] == 30
    pods = metrics.top_frame(api["pods"]["items"]).set_index("name")
    assert (pods.loc["kube-scheduler-minikube", "cpu_millicores"], pods.loc["kube-scheduler-minikube", "memory_mib"]) == (10, 21)
    # sums exact container usages first, then rounds: 400.000001m + 0 → 401m; 1048575 + 1024 bytes → 1Mi
    assert (pods.loc["web", "cpu_millicores"], pods.loc["web", "memory_mib"]) == (401, 1)
    assert pods.loc["web", "window_seconds"] == pytest.approx(15.953)
    assert metrics.kubectl_top_lines(metrics.top_frame(api["pods"]["items"][:1])) == ["kube-scheduler-minikube 10m 21Mi"]
    assert {"name", "cpu_millicores", "memory_mib"} <= set(metrics.top_frame([]).columns), "empty, but selectable"
    assert metrics.top_frame([]).empty and "pod" in metrics.container_frame([]).columns
    cs = metrics.container_frame(api["pods"]["items"])
    assert list(cs[cs.pod == "web"].container) == ["app", "sidecar"]


def test_rates_and_throttled_ratio():
    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    rows = []
    for i, (cpu, periods, thr) in enumerate([(1.0, 100, 10), (1.0, 100, 10), (2.0, 150, 35), (0.1, 10, 1)]):
        rows.append({"node": "n", "namespace": "ns", "pod": "p", "container": "c", "time": t0 + pd.Timedelta(seconds=2 * i),
                     "cpu_seconds_total": cpu, "cfs_periods_total": periods, "cfs_throttled_periods_total": thr})
    rows[1]["time"] = rows[0]["time"]  # the same kubelet sample read twice
    df = rates(pd.DataFrame(rows))
    assert len(df) == 3
    assert df["cpu_cores"].iloc[1] == pytest.approx(1.0 / 4)  # +1 s of CPU in 4 s
    assert df["throttled_ratio"].iloc[1] == pytest.approx(25 / 50)
    assert math.isnan(df["cpu_cores"].iloc[2]), "a counter reset (restart) gives no rate"


def test_workload_manifests_are_valid_pods():
    from kubernetes import client

    for m in (workloads.cpu_burner(cores=1.5, seconds=3, cpu_limit="500m"), workloads.memory_allocator(total=1 << 20),
              workloads.cpu_requests(requests=3), workloads.http_echo(), workloads.io_probe()):
        model = client.V1Pod.from_dict(m)
        assert model.spec.containers[0].image == "python:3.13-slim"
        compile(m["spec"]["containers"][0]["command"][2], "<workload>", "exec")
    assert workloads.cpu_burner(cpu_limit="500m")["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m"}}
    assert workloads.read_events('noise\n{"event": "done", "x": 1}\n{broken\n') == [{"event": "done", "x": 1}]


def _drop_none(v):
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_none(x) for x in v]
    return v


def test_participant_rbac_loads_into_typed_models():
    from kubernetes import client

    docs = list(yaml.safe_load_all((ROOT / "kperflab" / "manifests" / "participant-rbac.yaml").read_text()))
    kinds = {"ClusterRole": client.V1ClusterRole, "Namespace": client.V1Namespace}
    for doc in docs:
        model = kinds[doc["kind"]].from_dict(doc)
        assert _drop_none(client.ApiClient().sanitize_for_serialization(model)) == doc, f"{doc['kind']} {doc['metadata']['name']} has fields the model drops"
    role = next(d for d in docs if d["metadata"]["name"] == "kperflab-participant")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("", "nodes/proxy", "get") in granted and ("metrics.k8s.io", "pods", "list") in granted
    assert not any(v == "*" or r == "*" for _, r, v in granted), "least privilege: no wildcards"
    assert ("", "secrets", "get") not in granted


def test_figures_and_headless_live_top(monkeypatch):
    import plotly.graph_objects as go

    from kperflab import figures, widgets

    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    df = pd.DataFrame([{"time": t0 + pd.Timedelta(seconds=5 * i), "pod": p, "cpu_cores": c, "throttled_ratio": r}
                       for i in range(3) for p, c, r in (("a", 0.5, 0.9), ("b", 1.0, math.nan))])
    for fig in (figures.timeseries(df, "cpu_cores", hlines={"limit": 0.5}), figures.throttling(df),
                figures.latency(pd.DataFrame({"limit": [100, 500], "ms": [400, 50]}), "limit", "ms"),
                figures.top_bars(pd.DataFrame({"name": ["a", "b"], "cpu_millicores": [5, 7]}))):
        assert isinstance(fig, go.Figure) and fig.layout.title.text
        assert fig.to_plotly_json()["data"], "a figure with no data"

    class FakeCluster:
        def top_pods(self, namespace=None, selector=None):
            return pd.DataFrame({"name": ["web"], "cpu_millicores": [120], "memory_mib": [30]})

    monkeypatch.setenv("KPERFLAB_HEADLESS", "1")
    snap = widgets.live_top(FakeCluster())
    assert isinstance(snap, go.Figure) and list(snap.data[0].y) == ["web"]


def test_bad_input_is_one_sentence_with_the_next_step():
    from kperflab import BadInput
    from kperflab.experiments import foundations

    for call in (lambda: workloads.cpu_burner(cores=-1), lambda: workloads.memory_allocator(total=0),
                 lambda: workloads.cpu_burner(cpu_limit="fast"), lambda: workloads.http_echo(port=70000),
                 lambda: workloads.cpu_phases(phases=()), lambda: foundations.cpu_limits(None, limits=("none", "lots")),
                 lambda: foundations.data_structures(None, kinds=("tree",))):
        with pytest.raises(BadInput) as err:
            call()
        assert err.value.hint and "\n" not in str(err.value)
