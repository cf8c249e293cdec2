"""Ground truth: the lab's metrics pipeline against workloads whose usage is known, read the way users read it
(the official client's typed APIs, real kubectl, prometheus_client's parser)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.utils import parse_quantity
from prometheus_client.parser import text_string_to_metric_families

from kperflab.lab.stats.metrics_server import cpu_quantity

from .conftest import needs_root

pytestmark = [pytest.mark.lab, needs_root]
KUBECTL = shutil.which("kubectl")
NODE = "kperflab-lab"
MiB = 1024 * 1024

SPIN = "while True: pass"
HOLD = ("import time\nb = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
        "print('ready', flush=True)\ntime.sleep(3600)")
CACHE = ("import os, time\np = os.path.join(os.environ['DIR'], 'data')\nchunk = b'x' * (1 << 20)\n"
         "with open(p, 'wb') as f:\n    for _ in range(256): f.write(chunk)\n    f.flush(); os.fsync(f.fileno())\n"
         "for _ in range(2):\n    with open(p, 'rb') as f:\n        while f.read(1 << 20): pass\n"
         "print('ready', flush=True)\ntime.sleep(3600)")
OOM = "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1"


def pod(name: str, code: str, limits: dict[str, str] | None = None, restart: str = "Never",
        env: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(restart_policy=restart, termination_grace_period_seconds=1, containers=[client.V1Container(
            name="main", image="python:3.13-slim", command=["python", "-c", code],
            env=[client.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()],
            resources=client.V1ResourceRequirements(limits=limits) if limits else None)]))


class Ground:
    def __init__(self, api: client.ApiClient, ns: str) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.ns = ns

    def pod_metrics(self, version: str = "v1beta1") -> dict[str, dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object("metrics.k8s.io", version, self.ns, "pods")["items"]
        return {i["metadata"]["name"]: i for i in items}

    def proxy(self, path: str) -> str:
        # raw bytes: with preloading, the client turns a JSON body into the repr of a dict
        return self.core.connect_get_node_proxy_with_path(NODE, path, _preload_content=False).data.decode()

    def summary(self) -> dict[str, Any]:
        return json.loads(self.proxy("stats/summary"))

    def summary_pod(self, name: str) -> dict[str, Any]:
        return next(p for p in self.summary()["pods"] if p["podRef"] == {**p["podRef"], "name": name, "namespace": self.ns})

    def cadvisor(self, family: str) -> list[Any]:
        text = self.proxy("metrics/cadvisor")
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        name = family.removesuffix("_total")
        return [s for s in fams[name].samples if s.labels.get("namespace") == self.ns] if name in fams else []


@pytest.fixture(scope="module")
def ground(lab: dict[str, Any]):
    api = config.new_client_from_config(str(lab["kubeconfig"]))
    core = client.CoreV1Api(api)
    ns = f"metrics-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        for p in (pod("spin-limited", SPIN, {"cpu": "500m"}), pod("spin-free", SPIN), pod("hold", HOLD, {"memory": "512Mi"}),
                  pod("cache", CACHE, {"memory": "1Gi"}, env={"DIR": "/tmp"}),
                  pod("oom", OOM, {"memory": "64Mi"}, restart="Always")):
            core.create_namespaced_pod(ns, p)
        deadline = time.time() + 60
        while time.time() < deadline:
            logs = [core.read_namespaced_pod_log(n, ns) if core.read_namespaced_pod(n, ns).status.phase == "Running" else ""
                    for n in ("hold", "cache")]
            if all("ready" in lg for lg in logs):
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the memory pods did not get ready")
        ready = time.time()
        g = Ground(api, ns)
        # wait for a metrics window that starts after every workload reached its steady state
        deadline = time.time() + 60
        while time.time() < deadline:
            pm = g.pod_metrics()
            if all(n in pm for n in ("spin-limited", "spin-free", "hold", "cache")) and all(
                    _epoch(pm[n]["timestamp"]) - float(pm[n]["window"].rstrip("s")) >= ready
                    for n in ("spin-limited", "spin-free")):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"no steady metrics window: {g.pod_metrics()}")
        g.steady = pm  # type: ignore[attr-defined]
        yield g
    finally:
        core.delete_namespace(ns)
        deadline = time.time() + 60
        while time.time() < deadline and ns in [n.metadata.name for n in core.list_namespace().items]:
            time.sleep(0.2)


def _epoch(ts: str) -> float:
    import calendar

    return float(calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")))


def _cpu_milli(pm: dict[str, Any]) -> float:
    return float(sum(parse_quantity(c["usage"]["cpu"]) for c in pm["containers"])) * 1000


def test_cpu_limit_reads_its_quota_and_free_spinner_a_core(ground):
    pm = ground.steady
    print(f"PodMetrics: spin-limited {_cpu_milli(pm['spin-limited']):.0f}m, spin-free {_cpu_milli(pm['spin-free']):.0f}m")
    assert 450 <= _cpu_milli(pm["spin-limited"]) <= 550, pm["spin-limited"]
    assert _cpu_milli(pm["spin-free"]) >= 850, pm["spin-free"]
    cpu = pm["spin-limited"]["containers"][0]["usage"]["cpu"]
    assert cpu == cpu_quantity(int(parse_quantity(cpu) * 10**9)), f"{cpu} is not in canonical form"
    v1 = ground.pod_metrics("v1")
    assert v1["spin-limited"]["apiVersion"] == "metrics.k8s.io/v1"


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
def test_kubectl_top_pods_and_nodes(ground, lab):
    out = subprocess.run([KUBECTL, "top", "pod", "-n", ground.ns, "--no-headers"], env=lab["env"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = {r.split()[0]: r.split() for r in out.stdout.splitlines()}
    print("kubectl top:", {k: v[1:] for k, v in rows.items()})
    assert 450 <= int(rows["spin-limited"][1].rstrip("m")) <= 550, out.stdout
    assert int(rows["spin-free"][1].rstrip("m")) >= 850, out.stdout
    assert 180 <= int(rows["hold"][2].rstrip("Mi")) <= 220, out.stdout
    nodes = subprocess.run([KUBECTL, "top", "node"], env=lab["env"], capture_output=True, text=True, timeout=30)
    assert nodes.returncode == 0 and NODE in nodes.stdout, nodes.stderr
    assert nodes.stdout.split()[:5] == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]


def test_throttling_rises_only_with_a_limit(ground):
    def throttled() -> dict[str, float]:
        return {s.labels["pod"]: s.value for s in ground.cadvisor("container_cpu_cfs_throttled_periods_total")
                if s.labels["container"] == "main"}

    first = throttled()
    assert "spin-free" not in first, "no CFS series without a quota"
    deadline = time.time() + 15
    while time.time() < deadline and throttled().get("spin-limited", 0) <= first["spin-limited"]:
        time.sleep(0.5)
    print(f"throttled periods of spin-limited: {first['spin-limited']:.0f} → {throttled()['spin-limited']:.0f}")
    assert throttled()["spin-limited"] > first["spin-limited"]
    quota = {s.labels["pod"]: s.value for s in ground.cadvisor("container_spec_cpu_quota") if s.labels["container"] == "main"}
    assert quota == {"spin-limited": 50_000}


def test_anonymous_memory_is_working_set_and_rss(ground):
    mem = ground.summary_pod("hold")["containers"][0]["memory"]
    print(f"hold: working set {mem['workingSetBytes'] / MiB:.1f} MiB, rss {mem['rssBytes'] / MiB:.1f} MiB")
    assert abs(mem["workingSetBytes"] - 200 * MiB) <= 20 * MiB, mem
    assert abs(mem["rssBytes"] - 200 * MiB) <= 20 * MiB, mem
    assert mem["availableBytes"] == 512 * MiB - mem["workingSetBytes"]
    pm = ground.steady["hold"]["containers"][0]["usage"]["memory"]
    assert abs(int(parse_quantity(pm)) - 200 * MiB) <= 20 * MiB


def test_page_cache_counts_in_usage_not_in_rss(ground):
    mem = ground.summary_pod("cache")["containers"][0]["memory"]
    cache = {s.labels["pod"]: s.value for s in ground.cadvisor("container_memory_cache") if s.labels["container"] == "main"}
    print(f"cache: usage {mem['usageBytes'] / MiB:.1f} MiB, cache {cache['cache'] / MiB:.1f} MiB, rss {mem['rssBytes'] / MiB:.1f} MiB, "
          f"working set {mem['workingSetBytes'] / MiB:.1f} MiB")
    assert mem["usageBytes"] >= 240 * MiB, mem
    assert cache["cache"] >= 240 * MiB, cache
    assert mem["rssBytes"] < 40 * MiB, mem
    # read twice, the file is on the active list: the working set counts it although no process holds it
    assert mem["workingSetBytes"] > mem["rssBytes"] + 100 * MiB, mem


def test_oom_kill_counts_and_pod_status_says_so(ground):
    deadline = time.time() + 30
    reason = None
    while time.time() < deadline:
        cs = ground.core.read_namespaced_pod("oom", ground.ns).status.container_statuses[0]
        term = (cs.last_state and cs.last_state.terminated) or (cs.state and cs.state.terminated)
        if term and term.reason == "OOMKilled":
            reason = (term.reason, term.exit_code)
            break
        time.sleep(0.3)
    assert reason == ("OOMKilled", 137)
    while time.time() < deadline:
        ooms = [s.value for s in ground.cadvisor("container_oom_events_total") if s.labels["pod"] == "oom"]
        if ooms and max(ooms) >= 1:
            break
        time.sleep(0.5)
    assert ooms and max(ooms) >= 1


def test_every_endpoint_through_the_official_client(ground):
    assert ground.proxy("healthz") == "ok"
    for path in ("metrics/resource", "metrics/cadvisor", "metrics"):
        text = ground.proxy(path)
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        assert len(samples) == len(lines) > 0, path
    res = ground.proxy("metrics/resource")
    assert f'container_cpu_usage_seconds_total{{container="main",namespace="{ground.ns}",pod="spin-limited"}}' in res
    summ = ground.summary()
    assert summ["node"]["nodeName"] == NODE and summ["node"]["cpu"]["usageNanoCores"] > 0
    nm = ground.custom.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", NODE)
    assert nm["kind"] == "NodeMetrics" and parse_quantity(nm["usage"]["memory"]) > 0
    with pytest.raises(client.ApiException) as err:
        ground.proxy("no/such/path")
    assert err.value.status == 404
    with pytest.raises(client.ApiException) as err:
        ground.custom.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", ground.ns, "pods", "nope")
    assert err.value.status == 404 and json.loads(err.value.body)["reason"] == "NotFound"


def test_doctor_on_the_lab_finds_the_metrics_api(lab):
    from .conftest import kperflab

    out = kperflab(lab["home"], "doctor", "--json", "--kubeconfig", str(lab["kubeconfig"]))
    by = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert by["metrics api"]["status"] == "ok" and by["metrics api"]["detail"] == "metrics.k8s.io/v1", by["metrics api"]
    assert by["flavour"]["detail"].startswith("kperflab-lab"), by["flavour"]
