"""The store's own costs: a durable write (SQLite WAL, synchronous=NORMAL vs FULL vs memory only), copies on reads,
and how many controller passes ``run_on_change`` makes under a stream of writes.

    .venv/bin/python benchmarks/store_write.py [--writes 3000] [--dir /var/tmp] [--json out.json]

No lab, no root. Writes: ``Store.update`` of a pod-sized object (~3.1 kB of JSON, as the kubelet's status updates),
one at a time from one thread, per-write wall time → writes/s, p50, p99. ``--dir`` should be on the filesystem that
holds the lab's state dir (an fsync's cost depends on it). Reads: ``list`` of 100 such pods with ``copy=True``
(the store's hand copy), ``copy=False``, and ``copy.deepcopy`` / a JSON round trip for comparison. Controllers: a
writer at ``--rate`` writes/s for 3 s and a reconcile pass that lists the 100 pods (copy=True), for each
``min_interval``: passes made, the CPU time the passes used (share of one core), and the delay from a write to the
end of the next pass.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import threading
import time
import timeit
from pathlib import Path
from typing import Any

from kperflab.lab.store import Store, clone, run_on_change


def pod(i: int) -> dict[str, Any]:
    cond = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": "2026-11-29T12:00:01Z"}
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"web-7c5d8f9b6d-{i:05d}", "namespace": "default",
                     "labels": {"app": "web", "pod-template-hash": "7c5d8f9b6d"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7c5d8f9b6d",
                                          "uid": "1b3c5e0e-4a1e-4b9e-9a7e-1c2d3e4f5a6b", "controller": True,
                                          "blockOwnerDeletion": True}],
                     "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                                        "time": "2026-11-29T12:00:00Z", "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                                                     "f:spec": {"f:containers": {'k:{"name":"web"}': {
                                                         ".": {}, "f:image": {}, "f:name": {}}}}}}]},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.26",
                                 "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                               "limits": {"cpu": "200m", "memory": "128Mi"}},
                                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                                 "imagePullPolicy": "IfNotPresent",
                                 "volumeMounts": [{"name": "kube-api-access-abcde", "readOnly": True,
                                                   "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
                 "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                 "serviceAccountName": "default", "nodeName": "kperflab", "schedulerName": "default-scheduler",
                 "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                                  "tolerationSeconds": 300},
                                 {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300}],
                 "priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
                 "volumes": [{"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [
                     {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                     {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                     {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                         "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]},
        "status": {"phase": "Running", "conditions": cond, "hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}],
                   "podIP": f"10.244.0.{i % 250 + 2}", "podIPs": [{"ip": f"10.244.0.{i % 250 + 2}"}],
                   "startTime": "2026-11-29T12:00:00Z",
                   "containerStatuses": [{"name": "web", "state": {"running": {"startedAt": "2026-11-29T12:00:01Z"}},
                                          "lastState": {}, "ready": True, "restartCount": 0, "image": "nginx:1.26",
                                          "imageID": "sha256:abc", "containerID": "containerd://abc",
                                          "started": True}],
                   "qosClass": "Burstable"},
    }


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def writes(mode: str, n: int, base: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=base) as d:
        s = Store(path=None if mode == "memory" else Path(d) / "store" / "state.db",
                  synchronous="NORMAL" if mode == "memory" else mode)
        try:
            objs = [s.create("v1/pods", pod(i)) for i in range(100)]
            lat = []
            t0 = time.perf_counter()
            for k in range(n):
                o = objs[k % 100]
                o["status"]["containerStatuses"][0]["restartCount"] = k
                t = time.perf_counter()
                objs[k % 100] = s.update("v1/pods", o)
                lat.append(time.perf_counter() - t)
            total = time.perf_counter() - t0
        finally:
            s.close_db()
    return {"writes_per_s": n / total, "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3}


def reads() -> dict[str, float]:
    s = Store()
    for i in range(100):
        s.create("v1/pods", pod(i))
    items, *_ = s.list("v1/pods", copy=False)
    out = {}
    for name, f in [("list_copy_ms", lambda: s.list("v1/pods")),
                    ("list_nocopy_ms", lambda: s.list("v1/pods", copy=False)),
                    ("deepcopy_100_ms", lambda: copy.deepcopy(items)),
                    ("json_roundtrip_100_ms", lambda: json.loads(json.dumps(items))),
                    ("clone_100_ms", lambda: clone(items))]:
        n = 30
        out[name] = timeit.timeit(f, number=n) / n * 1e3
    return out


def controller(min_interval: float, rate: float, seconds: float = 3.0) -> dict[str, float]:
    s = Store()
    for i in range(100):
        s.create("v1/pods", pod(i))
    stop = threading.Event()
    passes: list[tuple[float, float, int, float]] = []  # (start, end, rv seen, CPU seconds of the pass)

    def reconcile() -> None:
        t, c = time.perf_counter(), time.thread_time()
        rv = s.resource_version
        s.list("v1/pods")
        passes.append((t, time.perf_counter(), rv, time.thread_time() - c))

    th = threading.Thread(target=run_on_change, args=(s, stop, reconcile, "bench", min_interval), daemon=True)
    th.start()
    time.sleep(0.2)
    written: list[tuple[float, int]] = []
    t_end = time.perf_counter() + seconds
    k = 0
    while time.perf_counter() < t_end:
        o = s.get("v1/pods", "default", f"web-7c5d8f9b6d-{k % 100:05d}")
        o["status"]["containerStatuses"][0]["restartCount"] = k
        rv = int(s.update("v1/pods", o)["metadata"]["resourceVersion"])
        written.append((time.perf_counter(), rv))
        k += 1
        time.sleep(1 / rate)
    time.sleep(max(0.3, min_interval * 2))
    stop.set()
    th.join()
    cpu = sum(c for b, e, _, c in passes if b > written[0][0] and e < t_end)
    delays = []
    for t, rv in written:
        done = next((e for _b, e, seen, _c in passes if seen >= rv), None)
        if done is not None:
            delays.append(done - t)
    in_window = [p for p in passes if written[0][0] <= p[0] <= t_end]
    return {"min_interval": min_interval, "passes_per_s": len(in_window) / seconds, "cpu_share": cpu / seconds,
            "delay_p50_ms": pct(delays, 50) * 1e3, "delay_p99_ms": pct(delays, 99) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--writes", type=int, default=3000)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--rate", type=float, default=200.0, help="writes/s for the controller part")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    res: dict[str, Any] = {"writes": {}, "reads": reads(), "controller": []}
    print(f"pod object: {len(json.dumps(pod(0)))} bytes of JSON")
    for mode in ("memory", "NORMAL", "FULL"):
        r = writes(mode, a.writes if mode != "FULL" else min(a.writes, 1000), a.dir)
        res["writes"][mode] = r
        print(f"write {mode:7}: {r['writes_per_s']:8.0f} writes/s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms")
    for k, v in res["reads"].items():
        print(f"read  {k:22}: {v:.3f} ms")
    for mi in (0.0, 0.02, 0.05, 0.1):
        r = controller(mi, a.rate)
        res["controller"].append(r)
        print(f"run_on_change min_interval {mi:.2f}s at {a.rate:.0f} writes/s: {r['passes_per_s']:.0f} passes/s, "
              f"CPU in passes {r['cpu_share']:.0%}, write→pass done p50 {r['delay_p50_ms']:.1f} ms "
              f"p99 {r['delay_p99_ms']:.1f} ms")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
