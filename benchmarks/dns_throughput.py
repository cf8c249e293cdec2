"""The lab's cluster DNS: queries per second and latency, in-process and over UDP.

    .venv/bin/python benchmarks/dns_throughput.py [--services 200] [--seconds 3]

A store with N ClusterIP services (one EndpointSlice of 3 ready pods each) and N/10 headless services, then:
- ``answer()`` on one thread: an in-zone A (ClusterIP), an NXDOMAIN from the search list, a headless A;
- the same right after an unrelated store write each time (the index catching up on the event log);
- UDP through ``serve()``: one client process waiting for each reply (p50/p99 latency), then 4 at once.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time

import dns.message

from kperflab.lab.network.dns import ClusterDNS
from kperflab.lab.store import Store


def build(n: int) -> Store:
    s = Store()
    s.create("v1/namespaces", {"metadata": {"name": "default"}})
    for i in range(n):
        ip = f"10.96.{i // 250}.{i % 250 + 2}"
        s.create("v1/services", {"metadata": {"name": f"svc{i}", "namespace": "default"},
                                 "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80}]}})
        s.create("discovery.k8s.io/v1/endpointslices", {
            "metadata": {"name": f"svc{i}-x", "namespace": "default", "labels": {"kubernetes.io/service-name": f"svc{i}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [f"10.{100 + i // 250}.{i % 250}.{k}"], "conditions": {"ready": True}} for k in (1, 2, 3)]})
    for i in range(max(1, n // 10)):
        s.create("v1/services", {"metadata": {"name": f"hl{i}", "namespace": "default"},
                                 "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}]}})
        s.create("discovery.k8s.io/v1/endpointslices", {
            "metadata": {"name": f"hl{i}-x", "namespace": "default", "labels": {"kubernetes.io/service-name": f"hl{i}"}},
            "addressType": "IPv4", "ports": [{"port": 5432}],
            "endpoints": [{"addresses": [f"10.200.{i % 250}.{k}"]} for k in (1, 2, 3)]})
    s.create("v1/configmaps", {"metadata": {"name": "churn", "namespace": "default"}, "data": {"n": "0"}})
    return s


def rate(fn, seconds: float) -> tuple[float, float]:
    """(calls per second, median µs per call)."""
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return len(times) / sum(times), statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--client", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.client:
        return client(a.client, a.seconds)
    store = build(a.services)
    d = ClusterDNS(store, upstreams=[])
    wires = {
        "in-zone A (ClusterIP)": dns.message.make_query("svc7.default.svc.cluster.local", "A").to_wire(),
        "NXDOMAIN (search list)": dns.message.make_query("api.example.com.default.svc.cluster.local", "A").to_wire(),
        "headless A (3 pods)": dns.message.make_query("hl1.default.svc.cluster.local", "A").to_wire(),
    }
    print(f"store: {a.services} ClusterIP + {max(1, a.services // 10)} headless services, each with one EndpointSlice")
    for label, wire in wires.items():
        qps, us = rate(lambda w=wire: d.answer(w), a.seconds)
        print(f"answer() {label:28s} {qps:9.0f} q/s   median {us:6.1f} µs")

    counter = [0]

    def write_then_answer() -> None:
        counter[0] += 1
        cm = store.get("v1/configmaps", "default", "churn")
        cm["data"]["n"] = str(counter[0])
        store.update("v1/configmaps", cm)
        d.answer(wires["in-zone A (ClusterIP)"])

    qps_w, us_w = rate(write_then_answer, a.seconds)
    _, us_write = rate(lambda: store.update("v1/configmaps", store.get("v1/configmaps", "default", "churn")), a.seconds)
    print(f"answer() after an unrelated store write: {us_w - us_write:6.1f} µs (write+answer {us_w:.1f} µs, write alone {us_write:.1f} µs)")

    t0 = time.perf_counter()
    ClusterDNS(store, upstreams=[])._sync()
    print(f"first sync (full list of the store): {(time.perf_counter() - t0) * 1e3:.1f} ms")

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    stop = threading.Event()
    srv = threading.Thread(target=d.serve, args=(udp, None, stop), daemon=True)
    srv.start()
    # clients in other processes, so they do not compete with the server for this process's GIL
    cmd = [sys.executable, __file__, "--client", str(port), "--seconds", str(a.seconds)]
    one = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    print(f"UDP, 1 client process waiting for each reply: {one['qps']:7.0f} q/s   p50 {one['p50_us']:.0f} µs   "
          f"p99 {one['p99_us']:.0f} µs")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    many = [json.loads(p.communicate()[0]) for p in procs]
    print(f"UDP, 4 client processes at once: {sum(m['qps'] for m in many):7.0f} q/s   "
          f"p50 {statistics.median(m['p50_us'] for m in many):.0f} µs")
    stop.set()
    srv.join()
    udp.close()


def client(port: int, seconds: float) -> None:
    wire = dns.message.make_query("svc7.default.svc.cluster.local", "A").to_wire()
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.connect(("127.0.0.1", port))
    c.settimeout(2)
    lat = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        c.send(wire)
        c.recv(4096)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    print(json.dumps({"qps": len(lat) / sum(lat), "p50_us": lat[len(lat) // 2] * 1e6,
                      "p99_us": lat[int(len(lat) * 0.99)] * 1e6}))


if __name__ == "__main__":
    main()
