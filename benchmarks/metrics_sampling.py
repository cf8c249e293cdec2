"""The lab's own cost of the metrics pipeline with many pods, and the latency of /stats/summary.

    .venv/bin/python benchmarks/metrics_sampling.py [--pods 100] [--seconds 60] [--resolution 5s]

Starts a private lab (its own KPERFLAB_HOME) at the given metric resolution, runs N idle pods, then measures over
a quiet period:
- the whole lab process's CPU (utime+stime from /proc) as a share of one core (target ≤ 5%);
- the part spent in housekeeping (the sampler's own thread CPU, from the kubelet's /metrics);
- the latency of GET /api/v1/nodes/<node>/proxy/stats/summary over one keep-alive HTTPS connection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

NODE = "kperflab-lab"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--resolution", default="5s")
    ap.add_argument("--requests", type=int, default=30)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kperflab-bench-"))
    env = {**os.environ, "KPERFLAB_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "up", "--metric-resolution", args.resolution],
                   env=env, check=True, capture_output=True)
    try:
        kc = yaml.safe_load((home / "kubeconfig.yaml").read_text())
        port = int(kc["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])
        token = kc["users"][0]["user"]["token"]
        pid = json.loads((home / "lab" / "lab.json").read_text())["pid"]
        ctx = ssl.create_default_context(cafile=str(home / "lab" / "tls" / "ca.crt"))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
        hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def call(method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
            conn.request(method, path, body=json.dumps(body) if body else None, headers=hdr)
            r = conn.getresponse()
            return r.status, r.read()

        for i in range(args.pods):
            code, body = call("POST", "/api/v1/namespaces/default/pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"idle-{i}"},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                    {"name": "c", "image": "busybox:1.37", "command": ["sleep", "3600"], "resources": {"limits": {"cpu": "100m", "memory": "16Mi"}}}]}})
            assert code == 201, body
        deadline = time.time() + 120
        while time.time() < deadline:
            pods = json.loads(call("GET", "/api/v1/namespaces/default/pods?fieldSelector=status.phase%3DRunning")[1])["items"]
            if len(pods) == args.pods:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"only {len(pods)} of {args.pods} pods reached Running")
        time.sleep(12)  # let the first samples of every pod land

        def housekeeping() -> dict[str, float]:
            text = call("GET", f"/api/v1/nodes/{NODE}/proxy/metrics")[1].decode()
            return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name.startswith("kperflab_housekeeping")}

        hk0, cpu0, t0 = housekeeping(), cpu_seconds(pid), time.monotonic()
        time.sleep(args.seconds)
        hk1, cpu1, t1 = housekeeping(), cpu_seconds(pid), time.monotonic()
        wall = t1 - t0
        rounds = hk1["kperflab_housekeeping_rounds"] - hk0["kperflab_housekeeping_rounds"]

        lat = []
        size = 0
        for _ in range(args.requests):
            s = time.perf_counter()
            code, body = call("GET", f"/api/v1/nodes/{NODE}/proxy/stats/summary")
            lat.append((time.perf_counter() - s) * 1000)
            assert code == 200
            size = len(body)
        summ = json.loads(body)
        assert len(summ["pods"]) == args.pods, len(summ["pods"])
        lat.sort()
        pm = json.loads(call("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")[1])["items"]

        print(f"pods running and sampled: {args.pods} (PodMetrics served for {len(pm)}), resolution {args.resolution}, "
              f"quiet period {wall:.0f} s, {rounds:.0f} housekeeping rounds")
        print(f"lab process CPU: {(cpu1 - cpu0) / wall * 100:.2f}% of one core (target ≤ 5%)")
        print(f"  of which housekeeping: {(hk1['kperflab_housekeeping_cpu_seconds'] - hk0['kperflab_housekeeping_cpu_seconds']) / wall * 100:.2f}% "
              f"of one core; last round took {hk1['kperflab_housekeeping_last_duration_seconds'] * 1000:.1f} ms wall")
        print(f"/stats/summary with {args.pods} pods ({size / 1024:.0f} KiB): median {statistics.median(lat):.1f} ms, "
              f"p90 {lat[int(len(lat) * 0.9) - 1]:.1f} ms, max {lat[-1]:.1f} ms over {len(lat)} requests")
        return 0
    finally:
        subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "down", "--purge"], env=env, capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
