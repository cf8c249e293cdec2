"""The lab's kube-proxy at scale: full sync time, and new-connection latency to the first and the last Service.

    sudo .venv/bin/python benchmarks/kube_proxy.py [--sizes 1000,5000,20000] [--modes iptables,nftables]
                                                   [--samples 300] [--endpoints 1] [--json out.json]

Root only; no lab. For each size N and mode: a throwaway node (`proxy_testbed.Testbed`: a node namespace with a
bridge, two pod namespaces running a TCP server, a client namespace), a Store with N ClusterIP Services (one
EndpointSlice each, ``--endpoints`` ready pods), then

- sync: one `KubeProxy.sync` from an empty namespace — list the store, build the rules, apply them (iptables: the
  hook jumps, ``iptables-save``, one ``iptables-restore``; nftables: one ``nft -f -``), wall time;
- latency: ``connect()`` (SYN → SYN-ACK) from the client to the first and the last Service in KUBE-SERVICES order
  (read back from ``iptables-save``; the same two Services in nftables mode), a new connection per sample, the two
  targets interleaved, on a SCHED_FIFO thread (``--no-realtime`` to not), plus a direct connection to the pod's IP: it has no Service, but in iptables mode its first
  packet still walks all of KUBE-SERVICES (the node's nat PREROUTING sees bridged frames too) before it is let through.

Targets (the issue): iptables last/first ≥ 5x at 20,000; nftables ≤ 1.3x; a sync of 20,000 Services ≤ 10 s in
either mode. Everything is created under a ``kpbench-`` prefix and removed at the end, on failure and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from kperflab.lab.network.kubeproxy import KubeProxy
from kperflab.lab.network.proxy_testbed import Testbed, leftovers
from kperflab.lab.store import Store


def cluster_ip(i: int) -> str:
    return f"10.{96 + i // 65000}.{(i % 65000) // 250}.{i % 250 + 1}"


def build_store(n: int, endpoints: int, tb: Testbed, mode: str) -> Store:
    s = Store()
    for ns in ("default", "kube-system", "bench"):
        s.create("v1/namespaces", {"metadata": {"name": ns}})
    s.create("v1/configmaps", {"metadata": {"name": "kube-proxy", "namespace": "kube-system"},
                               "data": {"config.conf": f"kind: KubeProxyConfiguration\nmode: {mode}\n"}})
    for i in range(n):
        name = f"svc-{i:05d}"
        s.create("v1/services", {"metadata": {"name": name, "namespace": "bench"},
                                 "spec": {"clusterIP": cluster_ip(i), "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        pods = list(range(endpoints))  # the same pod(s) behind every Service: first and last differ only in rules
        s.create("discovery.k8s.io/v1/endpointslices", {
            "metadata": {"name": f"{name}-1", "namespace": "bench", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": tb.SERVER_PORT, "protocol": "TCP"}],
            "endpoints": [{"addresses": [tb.pod_ip(p)], "conditions": {"ready": True}} for p in pods]})
    return s


def kube_services_order(tb: Testbed) -> list[str]:
    """ClusterIPs in the order the kernel holds the KUBE-SERVICES rules."""
    out = subprocess.run(["ip", "netns", "exec", tb.node, "iptables-save", "-t", "nat"], capture_output=True,
                         text=True, check=True).stdout
    ips = []
    for line in out.splitlines():
        if line.startswith("-A KUBE-SERVICES ") and "-j KUBE-SVC-" in line:
            ips.append(line.split(" -d ", 1)[1].split("/", 1)[0].split()[0])
    return ips


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run_one(n: int, mode: str, samples: int, endpoints: int, realtime: bool = True) -> dict[str, Any]:
    with Testbed(pods=2, prefix=f"kpbench-{os.getpid()}-{mode[:3]}{n}") as tb:
        t0 = time.perf_counter()
        s = build_store(n, endpoints, tb, mode)
        build = time.perf_counter() - t0
        kp = KubeProxy(s, tb.node_path, cluster_cidr=tb.CLUSTER_CIDR, node_ips=[tb.BRIDGE_IP])
        out = kp.sync()
        assert out["mode"] == mode, out
        if mode == "iptables":
            order = kube_services_order(tb)
            assert len(order) == n, (len(order), n)
            first, last = order[0], order[-1]
        else:
            first, last = cluster_ip(0), cluster_ip(n - 1)
        for ip in (first, last):  # each answers (a wrong rule would time out here, not skew the numbers)
            assert all(tb.ask(ip, 80, 3)), ip
        gc.collect()
        gc.disable()  # no collector pause over the Store's objects inside a timed connect()
        try:
            direct, f, l_ = tb.connect_times([(tb.pod_ip(0), tb.SERVER_PORT), (first, 80), (last, 80)], samples,
                                             realtime=realtime)
        finally:
            gc.enable()
        us = 1e6
        res = {
            "mode": mode, "services": n, "endpoints_per_service": endpoints, "store_build_s": round(build, 2),
            "sync_s": round(out["seconds"], 3), "rules": out["rules"], "first": first, "last": last,
            "pod_ip_p50_us": round(statistics.median(direct) * us, 1),
            "first_p50_us": round(statistics.median(f) * us, 1), "first_p99_us": round(pct(f, 0.99) * us, 1),
            "last_p50_us": round(statistics.median(l_) * us, 1), "last_p99_us": round(pct(l_, 0.99) * us, 1),
        }
        res["ratio_p50"] = round(res["last_p50_us"] / res["first_p50_us"], 2)
        res["ratio_p99"] = round(res["last_p99_us"] / res["first_p99_us"], 2)
        if mode == "nftables":
            res["endpoint_dispatch"] = out.get("endpoint_dispatch")
        return res


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--modes", default="iptables,nftables")
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--endpoints", type=int, default=1, choices=(1, 2))
    ap.add_argument("--json", default="")
    ap.add_argument("--no-realtime", action="store_true", help="measure on a normal (not SCHED_FIFO) thread")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, iptables, nft)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
    rows: list[dict[str, Any]] = []
    cols = ("mode", "services", "sync_s", "pod_ip_p50_us", "first_p50_us", "first_p99_us", "last_p50_us",
            "last_p99_us", "ratio_p50", "ratio_p99")
    print(" ".join(f"{c:>13}" for c in cols), flush=True)
    try:
        for n in [int(x) for x in args.sizes.split(",") if x]:
            for mode in [m for m in args.modes.split(",") if m]:
                r = run_one(n, mode, args.samples, args.endpoints, realtime=not args.no_realtime)
                rows.append(r)
                print(" ".join(f"{r[c]!s:>13}" for c in cols), flush=True)
    except KeyboardInterrupt:
        print("interrupted; the namespaces were removed", file=sys.stderr)
        return 130
    finally:
        left = leftovers("kpbench-")
        if left:
            print(f"left behind: {left}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    for r in rows:
        if r["services"] == 20000:
            ok_sync = r["sync_s"] <= 10
            ok_ratio = r["ratio_p50"] >= 5 if r["mode"] == "iptables" else r["ratio_p50"] <= 1.3
            print(f"{r['mode']} at 20,000: sync {r['sync_s']} s ({'ok' if ok_sync else 'over 10 s'}), "
                  f"last/first p50 {r['ratio_p50']}x ({'ok' if ok_ratio else 'misses the target'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
