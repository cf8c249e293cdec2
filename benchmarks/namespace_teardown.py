"""Deleting a namespace of running pods: the time from `kubectl delete namespace` until the namespace is gone
(target: 50 pods in ≤ 10 s), and the creation of the same pods until all are Running.

    .venv/bin/python benchmarks/namespace_teardown.py [--pods 50 100] [--grace 30]

Each pod's command exits on SIGTERM (``trap "exit 0" TERM``), so a teardown that honours the graceful period and
signals every pod at once takes about one pod's teardown, not the sum of them. Starts a private lab (its own
KPERFLAB_HOME), measures, and stops it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = ["sh", "-c", 'trap "exit 0" TERM; while true; do sleep 1; done']


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kperflab.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def one_round(v1: object, n: int, grace: int) -> tuple[float, float]:
    """(seconds to create n pods until all Running, seconds from the namespace's delete until it is gone)."""
    from kubernetes import client

    ns = f"teardown-{n}-{int(time.time())}"
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for i in range(n):
        v1.create_namespaced_pod(ns, client.V1Pod(  # type: ignore[attr-defined]
            metadata=client.V1ObjectMeta(name=f"p{i}"),
            spec=client.V1PodSpec(termination_grace_period_seconds=grace, containers=[
                client.V1Container(name="c", image="busybox:1.37", command=COMMAND)])))
    deadline = time.time() + 300
    while True:
        pods = v1.list_namespaced_pod(ns).items  # type: ignore[attr-defined]
        running = sum(p.status.phase == "Running" for p in pods)
        if running == n:
            break
        if time.time() > deadline:
            raise SystemExit(f"only {running}/{n} pods Running after 300 s")
        time.sleep(0.1)
    created = time.perf_counter() - t0
    t0 = time.perf_counter()
    v1.delete_namespace(ns)  # type: ignore[attr-defined]
    deadline = time.time() + 300
    while ns in [x.metadata.name for x in v1.list_namespace().items]:  # type: ignore[attr-defined]
        if time.time() > deadline:
            raise SystemExit(f"namespace {ns} still there after 300 s")
        time.sleep(0.05)
    return created, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pods", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--grace", type=int, default=30, help="terminationGracePeriodSeconds of each pod")
    args = ap.parse_args()
    from kubernetes import client, config

    home = Path(tempfile.mkdtemp(prefix="kperflab-bench-"))
    env = {**os.environ, "KPERFLAB_HOME": str(home)}
    env.pop("KUBECONFIG", None)
    up = cli(env, "lab", "up")
    if up.returncode != 0:
        raise SystemExit(f"lab up failed: {up.stdout}{up.stderr}")
    try:
        v1 = client.CoreV1Api(config.new_client_from_config(str(home / "kubeconfig.yaml")))
        print(f"{'pods':>5} {'create→Running':>15} {'pods/s':>7} {'delete ns→gone':>15} {'pods/s':>7}")
        for n in args.pods:
            created, deleted = one_round(v1, n, args.grace)
            print(f"{n:>5} {created:>14.1f}s {n / created:>7.1f} {deleted:>14.1f}s {n / deleted:>7.1f}", flush=True)
    finally:
        if cli(env, "lab", "down", "--purge").returncode != 0:
            cli(env, "lab", "down")
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
