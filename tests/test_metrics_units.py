"""The metrics pipeline on a fake cgroup v2 tree with known numbers and a clock the test moves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes.utils import parse_quantity
from prometheus_client.parser import text_string_to_metric_families

from kperflab.lab import cgroups
from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.stats import promtext
from kperflab.lab.stats.cadvisor import ContainerTarget, PodTarget, Sampler
from kperflab.lab.stats.kubelet_server import KubeletServer, cadvisor_metrics, resource_metrics, to_wire
from kperflab.lab.stats.metrics_server import MetricsServer, cpu_quantity, go_duration, memory_quantity
from kperflab.lab.store import Store

MiB = 1024 * 1024
PODS = "kperflab/0123456789abcdef/kubepods"
POD = f"{PODS}/burstable/podu1"
CTR = f"{POD}/c1"
CTR2 = f"{POD}/c2"
START = 1_700_000_000.0 - 100  # when the fake pod and its containers started


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def write_cg(root: Path, rel: str, *, usage_usec: int, current: int, inactive: int = 0, anon: int = 0, file: int = 0,
             mem_max: str = "max", cpu_max: str = "max 100000", periods: int = 0, throttled: int = 0, oom: int = 0) -> None:
    d = root / rel
    d.mkdir(parents=True, exist_ok=True)
    (d / "cpu.stat").write_text(f"usage_usec {usage_usec}\nuser_usec {usage_usec}\nsystem_usec 0\nnr_periods {periods}\n"
                                f"nr_throttled {throttled}\nthrottled_usec {throttled * 1000}\n")
    (d / "cpu.max").write_text(cpu_max + "\n")
    (d / "cpu.weight").write_text("100\n")
    (d / "memory.current").write_text(f"{current}\n")
    (d / "memory.stat").write_text(f"anon {anon}\nfile {file}\ninactive_file {inactive}\nactive_file {file - inactive}\n"
                                   "pgfault 10\npgmajfault 1\n")
    (d / "memory.max").write_text(mem_max + "\n")
    (d / "memory.events").write_text(f"low 0\nhigh 0\nmax 0\noom {oom}\noom_kill {oom}\n")
    (d / "cgroup.procs").write_text("")


@pytest.fixture
def tree(tmp_path: Path):
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    write_cg(root, "", usage_usec=10_000_000, current=0)
    write_cg(root, PODS, usage_usec=0, current=MiB)
    clock = Clock()
    pods: list[PodTarget] = []
    sampler = Sampler(cgroups.V2(root), lambda: pods, clock, pods_cgroup=PODS)
    return root, clock, pods, sampler


def set_pod(root: Path, pods: list[PodTarget], clock: Clock, *, limit: bool = True, second: bool = False, cpu_usec: int = 0,
            cpu2_usec: int = 1000, throttled: int = 0) -> None:
    cpu_max = "50000 100000" if limit else "max 100000"
    write_cg(root, POD, usage_usec=cpu_usec + cpu2_usec, current=210 * MiB, inactive=4 * MiB, anon=200 * MiB, file=10 * MiB,
             mem_max=str(512 * MiB), cpu_max=cpu_max, periods=100, throttled=throttled)
    write_cg(root, CTR, usage_usec=cpu_usec, current=205 * MiB, inactive=4 * MiB, anon=200 * MiB, file=5 * MiB,
             mem_max=str(256 * MiB) if limit else "max", cpu_max=cpu_max, periods=100, throttled=throttled)
    cs = [ContainerTarget("app", CTR, "c1", "python:3.12-slim", START)]
    if second:
        write_cg(root, CTR2, usage_usec=cpu2_usec, current=MiB, anon=MiB)
        cs.append(ContainerTarget("side", CTR2, "c2", "busybox", START))
    pods[:] = [PodTarget("u1", "ns", "web", POD, START, tuple(cs), None)]


def test_summary_rates_working_set_and_omission(tree, tmp_path):
    root, clock, pods, sampler = tree
    set_pod(root, pods, clock, cpu_usec=1_000_000)
    sampler.sample()
    srv = KubeletServer(sampler, "n1", tmp_path, clock.t - 1000, {}, lambda: [])
    one = srv.summary()
    c = one["pods"][0]["containers"][0]
    assert "usageNanoCores" not in c["cpu"], "a rate needs two samples"
    assert c["cpu"]["usageCoreNanoSeconds"] == 1_000_000_000
    clock.t += 2
    set_pod(root, pods, clock, cpu_usec=2_000_000)  # +1 s of CPU in 2 s → 500m
    sampler.sample()
    summ = srv.summary()
    pod = summ["pods"][0]
    c = pod["containers"][0]
    assert c["cpu"]["usageNanoCores"] == 500_000_000
    assert c["memory"]["workingSetBytes"] == 201 * MiB  # current − inactive_file
    assert c["memory"]["rssBytes"] == 200 * MiB
    assert c["memory"]["availableBytes"] == 256 * MiB - 201 * MiB
    assert pod["memory"]["workingSetBytes"] == 206 * MiB  # the pod cgroup's own numbers, not a sum
    wire = json.loads(json.dumps(to_wire(summ)))
    assert wire["pods"][0]["cpu"]["time"].endswith("Z") and len(wire["pods"][0]["cpu"]["time"]) == 20
    assert wire["pods"][0]["podRef"] == {"name": "web", "namespace": "ns", "uid": "u1"}
    # no limit → no availableBytes
    set_pod(root, pods, clock, limit=False, cpu_usec=2_000_000)
    clock.t += 2
    sampler.sample()
    c = srv.summary()["pods"][0]["containers"][0]
    assert "availableBytes" not in c["memory"]
    only = srv.summary(only_cpu_and_memory=True)
    assert set(only["pods"][0]) == {"podRef", "startTime", "containers", "cpu", "memory"}


def test_working_set_floors_at_zero(tree, tmp_path):
    root, clock, pods, sampler = tree
    set_pod(root, pods, clock)
    write_cg(root, CTR, usage_usec=5, current=MiB, inactive=2 * MiB)
    sampler.sample()
    srv = KubeletServer(sampler, "n1", tmp_path, clock.t, {}, lambda: [])
    assert srv.summary()["pods"][0]["containers"][0]["memory"]["workingSetBytes"] == 0


def test_resource_metrics_format_and_parse(tree, tmp_path):
    root, clock, pods, sampler = tree
    set_pod(root, pods, clock, cpu_usec=4_710_169)
    sampler.sample()
    srv = KubeletServer(sampler, "n1", tmp_path, clock.t, {}, lambda: [])
    text = resource_metrics(srv.summary(True))
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == sorted(names)
    assert "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds" in text
    ms = int(clock.t * 1000)
    assert f'container_cpu_usage_seconds_total{{container="app",namespace="ns",pod="web"}} 4.710169 {ms}' in text
    assert f'container_memory_working_set_bytes{{container="app",namespace="ns",pod="web"}} 2.10763776e+08 {ms}' in text
    start = [ln for ln in text.splitlines() if ln.startswith("container_start_time_seconds{")][0]
    assert len(start.split()) == 2, "the start time carries no timestamp"
    assert "resource_scrape_error 0\n" in text and "scrape_error 0\n" not in text.replace("resource_scrape_error", "")
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    data_lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert len(samples) == len(data_lines)
    by = {(s.name, s.labels.get("container", "")): s for s in samples}
    assert by[("container_cpu_usage_seconds_total", "app")].value == pytest.approx(4.710169)
    assert by[("container_cpu_usage_seconds_total", "app")].timestamp == pytest.approx(clock.t)


def test_cadvisor_cfs_only_with_quota_and_oom_counts(tree, tmp_path):
    root, clock, pods, sampler = tree
    set_pod(root, pods, clock, limit=True, throttled=40, second=True)
    write_cg(root, CTR, usage_usec=7, current=5 * MiB, cpu_max="50000 100000", periods=100, throttled=40, oom=2,
             mem_max=str(256 * MiB))
    pods[0] = PodTarget("u1", "ns", "web", POD, clock.t, (ContainerTarget("app", CTR, "c1", "python:3.12-slim", clock.t, 1),
                                                            ContainerTarget("side", CTR2, "c2", "busybox", clock.t)), None, 1)
    sampler.sample()
    text = cadvisor_metrics(sampler.snapshot, {"machine_id": "m"})
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    thr = {s.labels["container"]: s.value for s in fams["container_cpu_cfs_throttled_periods"].samples}
    assert thr == {"": 40, "app": 40}, "the side container has no quota: no CFS series"
    oom = {s.labels["container"]: s.value for s in fams["container_oom_events"].samples if s.labels["pod"] == "web"}
    assert oom == {"app": 3, "side": 0, "": 3}  # 1 from an earlier run + 2 live; the pod counts them once
    lim = {s.labels["container"]: s.value for s in fams["container_spec_memory_limit_bytes"].samples if s.labels["pod"]}
    assert lim["app"] == 256 * MiB and lim["side"] == 0
    cpu = [s for s in fams["container_cpu_usage_seconds"].samples if s.labels["container"] == "app"][0]
    assert cpu.labels["cpu"] == "total" and set(cpu.labels) == {"container", "cpu", "id", "image", "name", "namespace", "pod"}
    assert cpu.labels["id"] == f"/{CTR}" and cpu.labels["image"] == "python:3.12-slim"


def test_metrics_server_window_quantities_and_drop_rules(tree, tmp_path):
    root, clock, pods, sampler = tree
    store = Store(clock)
    store.create("v1/namespaces", {"metadata": {"name": "ns"}})
    store.create("v1/pods", {"metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web"}}, "spec": {}})
    store.create("v1/nodes", {"metadata": {"name": "n1"}})
    ms = MetricsServer(store, lambda: sampler.snapshot, "n1", 15.0, clock)
    set_pod(root, pods, clock, cpu_usec=1_000_000, second=True)
    write_cg(root, "", usage_usec=10_000_000, current=0)
    sampler.sample()
    ms.scrape()
    assert ms.pod_metrics("v1beta1", "ns") == [], "one point is not enough"
    clock.t += 15.953
    set_pod(root, pods, clock, cpu_usec=1_000_000 + 7_778_000, second=True, cpu2_usec=1000 + 15_953)  # 487558m-ish
    write_cg(root, "", usage_usec=20_000_000, current=0)
    sampler.sample()
    ms.scrape()
    (pm,) = ms.pod_metrics("v1beta1", "ns")
    assert pm["window"] == "15.953s" and pm["metadata"]["labels"] == {"app": "web"}
    app = pm["containers"][0]["usage"]
    assert app["cpu"] == cpu_quantity(int(7_778_000_000 / 15.953)) and app["cpu"].endswith("n")
    assert app["memory"] == "201Mi"
    assert pm["containers"][1]["usage"]["cpu"] == "1m"  # 15.953 ms of CPU in 15.953 s
    (nm,) = ms.node_metrics("v1")
    assert nm["apiVersion"] == "metrics.k8s.io/v1" and parse_quantity(nm["usage"]["cpu"]) > 0
    # a container reading zero memory drops the whole pod from the next scrape on
    clock.t += 15
    write_cg(root, CTR2, usage_usec=20_000, current=0)
    sampler.sample()
    ms.scrape()
    assert ms.pod_metrics("v1beta1", "ns") == []
    # a restart (cumulative CPU goes down) starts over: two more points needed
    clock.t += 15
    set_pod(root, pods, clock, cpu_usec=10, second=True)
    sampler.sample()
    ms.scrape()
    assert ms.pod_metrics("v1beta1", "ns") == []


def test_metrics_server_new_container_gets_a_point_at_start(tree):
    root, clock, pods, sampler = tree
    store = Store(clock)
    store.create("v1/namespaces", {"metadata": {"name": "ns"}})
    store.create("v1/pods", {"metadata": {"name": "web", "namespace": "ns"}, "spec": {}})
    ms = MetricsServer(store, lambda: sampler.snapshot, "n1", 60.0, clock)
    set_pod(root, pods, clock, cpu_usec=3_000_000)
    pods[0] = PodTarget("u1", "ns", "web", POD, clock.t - 12, (ContainerTarget("app", CTR, "c1", "python", clock.t - 12),), None)
    sampler.sample()
    ms.scrape()
    (pm,) = ms.pod_metrics("v1beta1", "ns")
    assert pm["window"] == "12s" and pm["containers"][0]["usage"]["cpu"] == "250m"


def test_metrics_api_routes_and_errors(tree):
    root, clock, pods, sampler = tree
    store = Store(clock)
    store.create("v1/nodes", {"metadata": {"name": "n1"}})
    ms = MetricsServer(store, lambda: sampler.snapshot, "n1", 15.0, clock)
    api = APIServer(store, "t", version={"gitVersion": "v1.37.0"}, extra_groups={"metrics.k8s.io": ms})

    def get(path: str, **q: str):
        return api.handle(Request("GET", path, q, {"authorization": "Bearer t"}))

    groups = get("/apis").body["groups"]
    m = [g for g in groups if g["name"] == "metrics.k8s.io"][0]
    assert [v["version"] for v in m["versions"]] == ["v1", "v1beta1"]
    res = get("/apis/metrics.k8s.io/v1beta1").body["resources"]
    assert {(r["name"], r["kind"], r["namespaced"]) for r in res} == {("nodes", "NodeMetrics", False), ("pods", "PodMetrics", True)}
    assert get("/apis/metrics.k8s.io/v1beta1/nodes").body["kind"] == "NodeMetricsList"
    r = get("/apis/metrics.k8s.io/v1/namespaces/ns/pods/nope")
    assert r.code == 404 and r.body["message"] == 'podmetrics.metrics.k8s.io "ns/nope" not found'
    assert get("/apis/metrics.k8s.io/v2/nodes").code == 404
    assert get("/apis/metrics.k8s.io/v1beta1/pods", labelSelector="a in (").code == 400
    assert api.handle(Request("DELETE", "/apis/metrics.k8s.io/v1beta1/nodes/n1", {}, {"authorization": "Bearer t"})).code == 405


def test_formats():
    assert [go_duration(x) for x in (15.953, 60, 19.07, 0.5)] == ["15.953s", "1m0s", "19.07s", "500ms"]
    assert [cpu_quantity(x) for x in (9559630, 0, 500_000_000, 1_000_000_000)] == ["9559630n", "0", "500m", "1"]
    assert memory_quantity(732212 * 1024) == "732212Ki" and memory_quantity(12533761) == "12533761"
    assert memory_quantity(512) == "512" and memory_quantity(64 * MiB) == "64Mi"
    assert [promtext.go_float(x) for x in (0.0, 1.0, 1.253376e+07, 357.35491, 100000.0, 1e-05)] == \
        ["0", "1", "1.253376e+07", "357.35491", "100000", "1e-05"]


def test_without_cgroups_a_container_is_its_process_session(tmp_path):
    """Not root: the lab reads each container's session from /proc, so kubectl top still has numbers."""
    import subprocess
    import sys
    import time

    code = ("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
            "b = bytearray(48 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('ready', flush=True)\ntime.sleep(30)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert p.stdout.readline().strip() == b"ready"
        clock = Clock(time.time())
        pods = [PodTarget("u9", "ns", "web", "nocgroup/podu9",
                          clock.t, (ContainerTarget("main", "nocgroup/podu9/c9", "c9", "python", clock.t, 0, p.pid),))]
        sampler = Sampler(None, lambda: pods, clock, pods_cgroup=PODS)
        sampler.sample()
        raw = sampler.snapshot.last("nocgroup/podu9/c9").raw
        assert raw["process_count"] == 1 and raw["cpu_usage_ns"] >= 300_000_000
        assert abs(raw["memory_rss"] - (48 << 20)) < (8 << 20), raw
        assert sampler.snapshot.last("nocgroup/podu9").raw["memory_rss"] == raw["memory_rss"]  # the pod sums its containers
        srv = KubeletServer(sampler, "n1", tmp_path, clock.t, {}, lambda: [])
        c = srv.summary()["pods"][0]["containers"][0]
        assert c["memory"]["workingSetBytes"] >= raw["memory_rss"] and "availableBytes" not in c["memory"]
    finally:
        p.kill()
        p.wait()
