"""Prometheus scraping the lab: how long each scrape of the node's ``/metrics/cadvisor`` and ``/metrics/resource``
(through the API server's node proxy) takes with N pods, and what the lab process' CPU is while it is scraped.

    .venv/bin/python benchmarks/prometheus_scrape.py [--pods 100] [--intervals 4]

Starts a private lab (its own KPERFLAB_HOME) with ``kperflab lab up --prometheus`` (the shipped manifest: scrape
every 15 s), creates N small pods (a Deployment of busybox sleeping, requests 1m CPU / 4Mi) and waits until they run,
then measures over ``--intervals`` scrape intervals: per job Prometheus' own ``scrape_duration_seconds`` (mean and
max over the window, and ``scrape_samples_scraped``), and the lab process' CPU (utime + stime from /proc, as cores)
over the same window. The pods are idle, so the lab's CPU is its own work (kubelet, controllers, the 15 s scrapes of
both endpoints, metrics-server's sampling); the load average is printed because other processes share the machine.
Stops the lab (``--purge``) at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

NS = "prom-bench"
PROXY = "/api/v1/namespaces/monitoring/services/prometheus:web/proxy"
JOBS = ("kubernetes-nodes-cadvisor", "kubernetes-nodes-resource")
SCRAPE_INTERVAL = 15.0  # the shipped manifest's


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    out = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode:
        raise SystemExit(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def promql(kubeconfig: Path, query: str) -> list[dict]:
    body = kubectl(kubeconfig, "get", "--raw",
                   f"{PROXY}/api/v1/query?query={urllib.parse.quote(query)}")
    answer = json.loads(body)
    if answer.get("status") != "success":
        raise SystemExit(f"Prometheus answered {answer}")
    return answer["data"]["result"]


def deployment(n: int) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "idle", "namespace": NS},
        "spec": {"replicas": n, "selector": {"matchLabels": {"app": "idle"}}, "template": {
            "metadata": {"labels": {"app": "idle"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                "name": "main", "image": "busybox:1.37", "command": ["sleep", "86400"],
                "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}, "limits": {"memory": "16Mi"}}}]}}}})


def wait_running(kubeconfig: Path, n: int, timeout: float) -> tuple[int, float]:
    t0 = time.monotonic()
    running = 0
    while time.monotonic() - t0 < timeout:
        pods = json.loads(kubectl(kubeconfig, "-n", NS, "get", "pods", "-o", "json"))["items"]
        running = sum(1 for p in pods if p["status"].get("phase") == "Running")
        if running >= n:
            break
        time.sleep(2)
    return running, time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--intervals", type=int, default=4, help="scrape intervals (15 s each) to measure over")
    ap.add_argument("--start-timeout", type=float, default=300.0)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kperflab-bench-"))
    env = {**os.environ, "KPERFLAB_HOME": str(home)}
    kubeconfig = home / "kubeconfig.yaml"
    try:
        up = subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "up", "--prometheus", "--kubeconfig",
                             str(kubeconfig)], env=env, capture_output=True, text=True, timeout=600)
        if up.returncode:
            raise SystemExit(f"lab up --prometheus failed: {up.stdout}{up.stderr}")
        lab_pid = json.loads((home / "lab" / "lab.json").read_text())["pid"]
        kubectl(kubeconfig, "create", "namespace", NS)
        kubectl(kubeconfig, "apply", "-f", "-", stdin=deployment(args.pods))
        running, took = wait_running(kubeconfig, args.pods, args.start_timeout)
        print(f"{running} of {args.pods} pods Running after {took:.0f} s")
        time.sleep(2 * SCRAPE_INTERVAL)  # a scrape or two with every pod's series before the window starts
        window = args.intervals * SCRAPE_INTERVAL
        c0, t0, load0 = cpu_seconds(lab_pid), time.monotonic(), os.getloadavg()[0]
        time.sleep(window)
        c1, t1, load1 = cpu_seconds(lab_pid), time.monotonic(), os.getloadavg()[0]
        rng = f"[{int(window)}s]"
        rows = {}
        for what, query in (("mean", f"avg_over_time(scrape_duration_seconds{rng})"),
                            ("max", f"max_over_time(scrape_duration_seconds{rng})"),
                            ("scrapes", f"count_over_time(scrape_duration_seconds{rng})"),
                            ("samples", "scrape_samples_scraped"), ("up", "up")):
            for r in promql(kubeconfig, query):
                rows.setdefault(r["metric"]["job"], {})[what] = float(r["value"][1])
        print(f"\n{running} pods, {args.intervals} scrape intervals of {SCRAPE_INTERVAL:.0f} s ({window:.0f} s window)")
        print(f"{'job':<28}{'up':>4}{'scrapes':>9}{'samples':>9}{'mean ms':>9}{'max ms':>8}")
        for job in JOBS:
            r = rows.get(job, {})
            print(f"{job:<28}{r.get('up', 0):>4.0f}{r.get('scrapes', 0):>9.0f}{r.get('samples', 0):>9.0f}"
                  f"{1000 * r.get('mean', float('nan')):>9.1f}{1000 * r.get('max', float('nan')):>8.1f}")
        scraped = (c1 - c0) / (t1 - t0)
        # the same window with Prometheus scaled to zero: what the lab costs unscraped, so the difference is the scrapes'
        kubectl(kubeconfig, "-n", "monitoring", "scale", "deployment/prometheus", "--replicas=0")
        kubectl(kubeconfig, "-n", "monitoring", "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/name=prometheus",
                "--timeout=120s", timeout=130)
        c2, t2, load2 = cpu_seconds(lab_pid), time.monotonic(), os.getloadavg()[0]
        time.sleep(window)
        c3, t3, load3 = cpu_seconds(lab_pid), time.monotonic(), os.getloadavg()[0]
        idle = (c3 - c2) / (t3 - t2)
        print(f"\nlab process CPU while scraped every {SCRAPE_INTERVAL:.0f} s: {scraped:.3f} cores "
              f"(load average {load0:.2f} → {load1:.2f})")
        print(f"lab process CPU with Prometheus scaled to 0:  {idle:.3f} cores (load average {load2:.2f} → {load3:.2f})")
        print(f"the scrapes' share: {scraped - idle:+.3f} cores (other processes share the machine: compare the loads)")
        return 0
    finally:
        down = subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "down", "--purge"], env=env,
                              capture_output=True)
        if down.returncode == 0:
            shutil.rmtree(home, ignore_errors=True)  # only lab.log was left


if __name__ == "__main__":
    sys.exit(main())
