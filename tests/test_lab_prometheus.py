"""Prometheus in the lab as users run it on a cluster: the image the lab builds from Debian's ``prometheus`` package
(upstream's name and image config), the shipped manifest applied with real ``kubectl apply -f``, its Kubernetes
service discovery finding the node, both scrape jobs (``/metrics/cadvisor`` and ``/metrics/resource`` through the API
server's node proxy) up, a PromQL rate of a 500m-limited spinner, the RBAC it has and has not, and
``kperflab lab up --prometheus`` on a lab that is already up.

One Prometheus for the module, on the session lab. For speed the module applies the shipped manifest with
``scrape_interval: 5s`` (the shipped file says 15s, checked below): a 1-minute rate then has enough samples within
about 15 s of the spinner's start. The lab's ``--metric-resolution 5s`` (the session lab's) refreshes cAdvisor's
numbers as often."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from kperflab import workloads
from kperflab.lab.images import push
from kperflab.lab.images.build import PROMETHEUS_CMD, PROMETHEUS_REPOSITORY, _oci, ensure_prometheus_image

from .conftest import kperflab, needs_root

KUBECTL = shutil.which("kubectl")
MANIFEST = Path(__file__).resolve().parents[1] / "kperflab" / "manifests" / "prometheus.yaml"
PROXY = "/api/v1/namespaces/monitoring/services/prometheus:web/proxy"
JOBS = ("kubernetes-nodes-cadvisor", "kubernetes-nodes-resource")
SCRAPE = "5s"
SPIN_NS = f"prom-spin-{uuid.uuid4().hex[:6]}"

pytestmark = [pytest.mark.lab, needs_root, pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")]


def kubectl(lab: dict[str, Any], *args: str, timeout: float = 60, check: bool = True,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    out = subprocess.run([KUBECTL, "--kubeconfig", str(lab["kubeconfig"]), *args], capture_output=True, timeout=timeout,
                         env=env, input=stdin)
    if check:
        assert out.returncode == 0, (args, out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace"))
    return out


def raw(lab: dict[str, Any], path: str) -> Any:
    """``kubectl get --raw`` of Prometheus' HTTP API through the service proxy, JSON (Prometheus gzips it, the proxy
    passes Content-Encoding on, kubectl unpacks it: test_service_proxy_keeps_content_encoding)."""
    out = kubectl(lab, "get", "--raw", f"{PROXY}{path}")
    return json.loads(out.stdout)


def promql(lab: dict[str, Any], query: str) -> list[dict[str, Any]]:
    from urllib.parse import quote

    answer = raw(lab, f"/api/v1/query?query={quote(query)}")
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@pytest.fixture(scope="module")
def prometheus(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The lab's registry gets the image (built once per machine), then ``kubectl apply -f`` of the shipped manifest
    (scrape interval 5 s); ``kubectl delete -f`` at the end. The spinner of `test_rate_of_a_limited_spinner` starts
    here too, so that the minute of samples its rate needs accrues while the other tests run."""
    image = ensure_prometheus_image()
    registry = json.loads((lab["home"] / "lab" / "lab.json").read_text())["registry"]
    push(registry, image.layout, image.repository, image.tags[0])
    text = MANIFEST.read_text()
    assert text.count("scrape_interval: 15s") == 1
    manifest = tmp_path_factory.mktemp("prometheus") / "prometheus.yaml"
    manifest.write_text(text.replace("scrape_interval: 15s", f"scrape_interval: {SCRAPE}"))
    kubectl(lab, "apply", "-f", str(manifest))
    kubectl(lab, "create", "namespace", SPIN_NS)
    try:
        kubectl(lab, "-n", SPIN_NS, "apply", "-f", "-",
                stdin=json.dumps(workloads.cpu_burner("spinner", cores=1, cpu_limit="500m")).encode())
        kubectl(lab, "-n", "monitoring", "rollout", "status", "deployment/prometheus", "--timeout=90s", timeout=100)
        yield image
    finally:
        kubectl(lab, "delete", "namespace", SPIN_NS, "--wait=false", check=False)
        # --ignore-not-found: the namespace goes first and takes the namespaced objects with it
        kubectl(lab, "delete", "--ignore-not-found", "--wait=true", "-f", str(manifest), timeout=120)


def test_image_is_upstreams_name_and_config() -> None:
    """Upstream's name and tag (the Debian package's upstream version), and upstream's Entrypoint, Cmd, User, port and
    WORKDIR; the description says it is Debian's package."""
    image = ensure_prometheus_image()
    assert image.name == PROMETHEUS_REPOSITORY and image.tags == (f"v{image.packages['prometheus'].split('+')[0]}",)
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image.refs[0]
    cfg = _oci.Layout(image.layout).read_json(image.config_digest)["config"]
    assert cfg["Entrypoint"] == ["/bin/prometheus"] and cfg["Cmd"] == PROMETHEUS_CMD
    assert (cfg["User"], cfg["WorkingDir"], list(cfg["ExposedPorts"])) == ("nobody", "/prometheus", ["9090/tcp"])
    assert "Debian" in cfg["Labels"]["org.opencontainers.image.description"]


def test_pod_runs(lab: dict[str, Any], prometheus: Any) -> None:
    pods = json.loads(kubectl(lab, "-n", "monitoring", "get", "pods", "-l", "app.kubernetes.io/name=prometheus",
                              "-o", "json").stdout)["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    pod = pods[0]
    assert pod["status"]["phase"] == "Running"
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
    assert pod["spec"]["containers"][0]["image"] == prometheus.refs[0]
    # Debian's build says its package's version (2.53.3+ds1), upstream's binary the bare one
    version = raw(lab, "/api/v1/status/buildinfo")["data"]["version"]
    assert version.split("+")[0] == prometheus.tags[0].removeprefix("v"), version


def test_targets_up(lab: dict[str, Any], prometheus: Any) -> None:
    """Service discovery (role node) found the node, and both jobs scrape it through the API server's node proxy."""
    node = json.loads(kubectl(lab, "get", "nodes", "-o", "json").stdout)["items"][0]["metadata"]["name"]
    deadline = time.monotonic() + 40
    while True:
        targets = raw(lab, "/api/v1/targets?state=active")["data"]["activeTargets"]
        health = {t["labels"]["job"]: (t["health"], t["lastError"], t["scrapeUrl"]) for t in targets}
        if all(health.get(j, ("",))[0] == "up" for j in JOBS) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for job, path in zip(JOBS, ("/metrics/cadvisor", "/metrics/resource"), strict=True):
        assert health.get(job, ("",))[0] == "up", health
        assert health[job][2] == f"https://kubernetes.default.svc:443/api/v1/nodes/{node}/proxy{path}"
    assert {t["discoveredLabels"]["__meta_kubernetes_node_name"] for t in targets} == {node}
    # its client-go list/watch of nodes had no failure (a watch error handler increments this), and saw the node added
    own = kubectl(lab, "get", "--raw", f"{PROXY}/metrics").stdout.decode()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in own.splitlines()
              if line.startswith("prometheus_sd_kubernetes_")}
    assert values["prometheus_sd_kubernetes_failures_total"] == 0, values
    assert values['prometheus_sd_kubernetes_events_total{event="add",role="node"}'] >= 1, values


def test_rate_of_a_limited_spinner(lab: dict[str, Any], prometheus: Any) -> None:
    """rate(container_cpu_usage_seconds_total[1m]) of a pod limited to 500m that tries to use a whole core, from
    cAdvisor's series and from /metrics/resource's. rate() divides by the whole window, so it reads the limit only
    once the series' samples span (nearly) the minute: until then it reads less."""
    kubectl(lab, "-n", SPIN_NS, "wait", "--for=condition=Ready", "pod/spinner", "--timeout=60s", timeout=70)
    sel = f'namespace="{SPIN_NS}",pod="spinner",container="main"'
    deadline = time.monotonic() + 90
    while True:  # the raw samples of the last minute, per job: wait until each job's span is the window
        series = promql(lab, f"container_cpu_usage_seconds_total{{{sel}}}[1m]")
        spans = {r["metric"]["job"]: r["values"][-1][0] - r["values"][0][0] for r in series}
        if (set(spans) == set(JOBS) and min(spans.values()) >= 54) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert set(spans) == set(JOBS) and min(spans.values()) >= 54, spans
    answer = promql(lab, f"rate(container_cpu_usage_seconds_total{{{sel}}}[1m])")
    rates = {r["metric"]["job"]: float(r["value"][1]) for r in answer}
    at = float(answer[0]["value"][0])
    # what the spinner itself says it used over the same minute (its own CPU clock, printed every second)
    log = kubectl(lab, "-n", SPIN_NS, "logs", "spinner").stdout.decode()
    ticks = [(e["t"], e["cpu_seconds"]) for e in workloads.read_events(log) if e.get("event") == "cpu"]
    inside = [(t, c) for t, c in ticks if at - 60 <= t <= at]
    own = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
    assert set(rates) == set(JOBS), rates
    assert all(abs(v - own) <= 0.05 and v <= 0.55 for v in rates.values()), (rates, own)
    # the limit's 0.5 cores, when the machine had them to give (the spinner's own clock says whether it did)
    assert all(0.45 <= v <= 0.55 for v in rates.values()) or own < 0.45, (rates, own)
    print(f"rate over 1m: {rates}; the spinner's own clock: {own:.3f} cores")


@pytest.mark.parametrize("verb, what, allowed", [
    ("get", "secrets", False), ("list", "secrets", False), ("create", "pods/exec", False), ("create", "pods", False),
    ("delete", "nodes", False), ("update", "configmaps", False), ("get", "nodes/proxy", True), ("watch", "nodes", True),
    ("list", "pods", True), ("get", "/metrics", True)])
def test_rbac(lab: dict[str, Any], prometheus: Any, verb: str, what: str, allowed: bool) -> None:
    out = kubectl(lab, "auth", "can-i", verb, what, "--as=system:serviceaccount:monitoring:prometheus",
                  *(["-A"] if not what.startswith("/") else []), check=False)
    assert out.stdout.decode().strip() == ("yes" if allowed else "no"), (verb, what, out.stdout, out.stderr)


def test_service_proxy_keeps_content_encoding(lab: dict[str, Any], prometheus: Any) -> None:
    """Plain ``kubectl get --raw`` (Go asks for gzip): Prometheus compresses its answer, and kube-apiserver's proxy
    passes ``Content-Encoding: gzip`` back, so the client unpacks it. The lab's proxy must not drop that header."""
    out = kubectl(lab, "get", "--raw", f"{PROXY}/api/v1/status/buildinfo").stdout
    assert not out.startswith(b"\x1f\x8b"), ("the lab's service proxy dropped Content-Encoding: gzip",
                                              gzip.decompress(out)[:200])
    assert json.loads(out)["status"] == "success"


def test_lab_up_prometheus_on_a_running_lab(lab: dict[str, Any], prometheus: Any) -> None:
    """``kperflab lab up --prometheus`` on a lab that is up: nothing restarts, the manifest is applied server-side and
    the pod is Ready; ``lab status`` says Prometheus runs. Last: it puts the shipped 15 s interval back."""
    pid = json.loads((lab["home"] / "lab" / "lab.json").read_text())["pid"]
    up = kperflab(lab["home"], "lab", "up", "--prometheus", timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "already up" in up.stdout and "Prometheus is ready" in up.stdout, up.stdout
    assert json.loads((lab["home"] / "lab" / "lab.json").read_text())["pid"] == pid
    cm = json.loads(kubectl(lab, "-n", "monitoring", "get", "configmap", "prometheus-config", "-o", "json").stdout)
    assert "scrape_interval: 15s" in cm["data"]["prometheus.yml"]
    status = kperflab(lab["home"], "lab", "status")
    assert "prometheus: running" in status.stdout, status.stdout


def test_prometheus_does_not_go_with_foreground(tmp_path: Path) -> None:
    out = kperflab(tmp_path, "lab", "up", "--prometheus", "--foreground")
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    assert "--prometheus does not go with --foreground" in out.stderr and out.stdout == "", (out.stdout, out.stderr)


def test_a_participant_may_query_prometheus_and_nothing_else_through_proxies(lab: dict[str, Any], prometheus: Any) -> None:
    """participant-rbac.yaml's kperflab-participant-prometheus, bound in `monitoring` as docs/instructor.md says: the
    participant may GET through the service proxy there (PromQL), not elsewhere and not write."""
    rbac = Path(__file__).resolve().parents[1] / "kperflab" / "manifests" / "participant-rbac.yaml"
    who = f"prom-reader-{uuid.uuid4().hex[:5]}"
    kubectl(lab, "apply", "-f", str(rbac))
    kubectl(lab, "create", "serviceaccount", who, "-n", "kperflab-participants")
    try:
        kubectl(lab, "create", "rolebinding", who, "-n", "monitoring", "--clusterrole=kperflab-participant-prometheus",
                f"--serviceaccount=kperflab-participants:{who}")
        as_ = f"--as=system:serviceaccount:kperflab-participants:{who}"
        for args, want in ((("get", "services/proxy", "-n", "monitoring"), "yes"),
                           (("create", "services/proxy", "-n", "monitoring"), "no"),
                           (("get", "services/proxy", "-n", "default"), "no")):
            out = kubectl(lab, "auth", "can-i", *args, as_, check=False)
            assert out.stdout.decode().strip() == want, (args, out.stdout, out.stderr)
        answer = json.loads(kubectl(lab, as_, "get", "--raw", f"{PROXY}/api/v1/query?query=up").stdout)
        assert answer["status"] == "success" and answer["data"]["result"], answer
    finally:
        kubectl(lab, "delete", "rolebinding", who, "-n", "monitoring", "--ignore-not-found", check=False)
        kubectl(lab, "delete", "serviceaccount", who, "-n", "kperflab-participants", "--ignore-not-found", check=False)
