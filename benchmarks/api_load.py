"""The API server under load: N pods, C concurrent clients (list, get, patch) paced to a total rate, W watchers.
Prints per verb the count, throughput, p50/p99/max latency and errors (must be 0), the events each watcher got
against the patches that succeeded (every patch is one MODIFIED event; every watcher must have all), and the lab's
CPU during the run. Target: p99 ≤ 250 ms for get and patch at 200 requests/s (100 pods, 50 clients, 10 watchers,
60 s, 2 cores).

    .venv/bin/python benchmarks/api_load.py [--pods 100] [--clients 50] [--watchers 10] [--duration 60]
                                            [--rate 200] [--profile]

Starts a private lab (its own KPERFLAB_HOME), creates the pods (busybox sleeping: real containers, in a namespace of
their own) and waits until they run, measures, and stops the lab. Clients are the official ``kubernetes`` client, one
``ApiClient`` (a keep-alive connection pool) per thread; bodies are read raw and parsed with ``json`` instead of the
client's model classes (a list is checked by counting its items, not parsed), so the benchmark's own CPU (it shares
the machine with the lab) stays small. Latency is from send to the last byte of the answer; requests are sent on a
fixed schedule, and the run ends at ``--duration`` even when the lab falls behind (what was late is counted). The lab's
CPU per request, this process's CPU and the load average are printed: with other processes busy, the latencies are
not the lab's alone. ``--profile`` samples the thread holding the lab's GIL with py-spy (``pip install py-spy`` into
the venv; not a dependency of kperflab) and prints where its Python time went.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

NS = "api-load"
VERBS = ("list", "get", "patch")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


class Watcher(threading.Thread):
    """Watches the namespace's pods from the start resourceVersion; remembers every (pod, patch number) it saw."""

    def __init__(self, api_client, rv: str, timeout: int) -> None:
        super().__init__(daemon=True)
        self.api_client, self.rv, self.timeout = api_client, rv, timeout
        self.events = 0
        self.seen: set[tuple[str, int]] = set()
        self.error = ""
        self.resp = None

    def run(self) -> None:
        from kubernetes import client
        from kubernetes.watch.watch import iter_resp_lines

        try:
            self.resp = client.CoreV1Api(self.api_client).list_namespaced_pod(
                NS, watch=True, resource_version=self.rv, timeout_seconds=self.timeout, _preload_content=False)
            for line in iter_resp_lines(self.resp):
                ev = json.loads(line)
                if ev.get("type") == "ERROR":
                    self.error = ev["object"].get("message", "ERROR event")
                    return
                self.events += 1
                meta = ev["object"]["metadata"]
                seq = (meta.get("annotations") or {}).get("bench/seq")
                if ev["type"] == "MODIFIED" and seq is not None:
                    self.seen.add((meta["name"], int(seq)))
        except Exception as exc:  # noqa: BLE001 - closed by the main thread at the end, or a real failure: said below
            if self.resp is None or not getattr(self, "closing", False):
                self.error = f"{type(exc).__name__}: {exc}"


def make_client(kubeconfig: Path):
    from kubernetes import config

    return config.new_client_from_config(str(kubeconfig))


def run_load(kubeconfig: Path, names: list[str], args, lab_pid: int) -> dict:
    from kubernetes import client

    rate, clients, duration = args.rate, args.clients, args.duration
    seq = iter(range(1, 1 << 62))
    seq_lock = threading.Lock()
    lat: dict[str, list[float]] = {v: [] for v in VERBS}
    errs: dict[str, collections.Counter] = {v: collections.Counter() for v in VERBS}
    patched: set[tuple[str, int]] = set()
    done_lock = threading.Lock()
    late = [0]

    v1s = [client.CoreV1Api(make_client(kubeconfig)) for _ in range(clients)]
    for v1 in v1s:  # open each client's connection before the clock starts (keep-alive from then on)
        v1.list_namespaced_pod(NS, limit=1, _preload_content=False).read()
    rv = json.loads(v1s[0].list_namespaced_pod(NS, _preload_content=False).read())["metadata"]["resourceVersion"]
    watchers = [Watcher(make_client(kubeconfig), rv, 3600) for _ in range(args.watchers)]  # closed by us at the end
    for w in watchers:
        w.start()
    time.sleep(1.0)  # the watches are open
    interval = clients / rate  # each client sends every `interval` s, the clients staggered: `rate` requests/s
    start = time.monotonic() + 0.2
    end = start + duration
    rng = random.Random(15)
    plan = [rng.choice(VERBS) for _ in range(int(rate * duration) + clients)]

    def worker(i: int) -> None:
        v1 = v1s[i]
        r = random.Random(i)
        k = 0
        while True:
            at = start + (i + k * clients) / rate
            if at >= end or time.monotonic() >= end:  # a server that falls behind does not stretch the run
                return
            verb = plan[i + k * clients]
            k += 1
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            elif wait < -interval:
                with done_lock:
                    late[0] += 1
            name = r.choice(names)
            try:
                t0 = time.perf_counter()
                if verb == "list":
                    body = v1.list_namespaced_pod(NS, _preload_content=False).read()
                    # every item there, without parsing 300 kB in this process (its GIL is the clients' too)
                    ok = body.startswith(b'{"kind":"PodList"') and body.count(b'"kind":"Pod",') == len(names)
                elif verb == "get":
                    body = v1.read_namespaced_pod(name, NS, _preload_content=False).read()
                    ok = json.loads(body)["metadata"]["name"] == name
                else:
                    with seq_lock:
                        n = next(seq)
                    body = v1.patch_namespaced_pod(name, NS, {"metadata": {"annotations": {"bench/seq": str(n)}}},
                                                   _preload_content=False).read()
                    ok = (json.loads(body)["metadata"].get("annotations") or {}).get("bench/seq") == str(n)
                dt = time.perf_counter() - t0
                with done_lock:
                    if ok:
                        lat[verb].append(dt)
                        if verb == "patch":
                            patched.add((name, n))
                    else:
                        errs[verb]["wrong answer"] += 1
            except Exception as exc:  # noqa: BLE001 - counted and shown: errors must be 0
                with done_lock:
                    errs[verb][f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"] += 1

    cpu0, wall0, own0 = cpu_seconds(lab_pid), time.monotonic(), cpu_seconds(os.getpid())
    load0 = Path("/proc/loadavg").read_text().split()[0]
    prof = None
    if args.profile:
        prof = start_profile(lab_pid, duration)
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - wall0
    cpu = cpu_seconds(lab_pid) - cpu0
    own = cpu_seconds(os.getpid()) - own0
    load = (load0, Path("/proc/loadavg").read_text().split()[0])
    profile_out = finish_profile(prof) if prof else None
    t_end = time.monotonic()
    deadline = t_end + 30
    while time.monotonic() < deadline and any(not patched <= w.seen and not w.error for w in watchers):
        time.sleep(0.1)
    drain = time.monotonic() - t_end
    import socket

    for w in watchers:  # end the streams: a shut-down socket ends the reader (urllib3's close() would wait for it)
        w.closing = True
        try:
            w.resp.connection.sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001 - already ended
            pass
    for w in watchers:
        w.join(5)
    return {"lat": lat, "errs": errs, "patched": patched, "watchers": watchers, "wall": wall, "cpu": cpu, "own": own, "load": load,
            "late": late[0], "drain": drain, "profile": profile_out, "duration": duration}


# -- profiling ---------------------------------------------------------------------------------------------------
def start_profile(pid: int, duration: int):
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("--profile: py-spy is not installed; `.venv/bin/pip install py-spy` and run again (profile skipped)")
        return None
    out = Path(tempfile.mkdtemp(prefix="kperflab-bench-prof-")) / "stacks.txt"
    # stopped with SIGINT when the load ends (py-spy then writes what it has): -d counts samples, and a loaded
    # machine makes the sampling fall behind the clock
    proc = subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(duration * 10), "-r", "50", "-f", "raw",
                             "-o", str(out), "--nonblocking", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, out


def finish_profile(prof) -> str:
    import signal

    proc, out = prof
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if not out.exists():
        return f"py-spy wrote nothing: {proc.stderr.read().decode()[-300:]}"
    return summarize_stacks(out.read_text())


def summarize_stacks(text: str, top: int = 25) -> str:
    """Collapsed stacks (``frame;frame;… N``) → the functions with the most samples on the stack (inclusive) and
    at its top (self), only samples of the thread holding the GIL (py-spy --gil): where the lab's Python time went."""
    incl: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")" if " (" in f else f
                  for f in stack.split(";")]
        c = int(n)
        total += c
        for f in set(frames):
            incl[f] += c
        if frames:
            own[frames[-1]] += c
    lines = [f"{total} samples of the thread holding the GIL (50/s)", "inclusive (on the stack):"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in incl.most_common(top)]
    lines += ["self (top of the stack):"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in own.most_common(top)]
    return "\n".join(lines)


# -- setup -------------------------------------------------------------------------------------------------------
def create_pods(kubeconfig: Path, n: int, timeout: float) -> tuple[list[str], int, float]:
    from kubernetes import client

    v1 = client.CoreV1Api(make_client(kubeconfig))
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    deadline = time.time() + 30
    while time.time() < deadline:  # the ServiceAccount admission needs the namespace's default ServiceAccount
        if v1.list_namespaced_service_account(NS, field_selector="metadata.name=default").items:
            break
        time.sleep(0.2)
    names = [f"p{i:03d}" for i in range(n)]
    t0 = time.monotonic()
    for name in names:
        v1.create_namespaced_pod(NS, client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels={"app": "api-load"}),
            spec=client.V1PodSpec(termination_grace_period_seconds=0, containers=[client.V1Container(
                name="c", image="busybox:1.37", command=["sleep", "3600"])])))
    running = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = json.loads(v1.list_namespaced_pod(NS, _preload_content=False).read())["items"]
        running = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")
        if running == n:
            break
        time.sleep(1.0)
    return names, running, time.monotonic() - t0


def report(res: dict, args, running: int, startup: float, runtime: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency
        Console = None
    dur = res["wall"]
    rows = []
    for v in VERBS:
        xs = res["lat"][v]
        nerr = sum(res["errs"][v].values())
        rows.append((v, str(len(xs)), f"{len(xs) / dur:.1f}/s", f"{pct(xs, 50) * 1000:.1f}", f"{pct(xs, 99) * 1000:.1f}",
                     f"{max(xs, default=float('nan')) * 1000:.1f}", str(nerr)))
    total = sum(len(res["lat"][v]) for v in VERBS)
    print(f"\n{args.pods} pods ({running} Running after {startup:.1f} s; runtime {runtime}), {args.clients} clients, "
          f"{args.watchers} watchers, {dur:.1f} s at a target of {args.rate}/s: {total / dur:.1f} requests/s done, "
          f"{res['late']} sent more than one client interval late")
    head = ("verb", "count", "throughput", "p50 ms", "p99 ms", "max ms", "errors")
    if Console:
        t = Table(*head)
        for r in rows:
            t.add_row(*r)
        Console().print(t)
    else:
        print("  ".join(f"{h:>10}" for h in head))
        for r in rows:
            print("  ".join(f"{c:>10}" for c in r))
    for v in VERBS:
        for what, c in res["errs"][v].most_common(5):
            print(f"  {v} error ×{c}: {what}")
    want = res["patched"]
    print(f"watchers (each should have all {len(want)} patches as MODIFIED events; waited {res['drain']:.1f} s after "
          f"the load for the last ones):")
    for i, w in enumerate(res["watchers"]):
        missing = len(want - w.seen)
        print(f"  watcher {i}: {w.events} events, {len(want & w.seen)}/{len(want)} patches"
              + (f", {missing} MISSING" if missing else "") + (f", error: {w.error}" if w.error else ""))
    print(f"lab process CPU during the load: {res['cpu']:.1f} s in {dur:.1f} s = {res['cpu'] / dur:.2f} cores "
          f"(of {os.cpu_count()}), {res['cpu'] / max(total, 1) * 1000:.1f} ms of lab CPU per request (watch "
          f"streams, controllers and the kubelet included); this benchmark's own CPU: {res['own'] / dur:.2f} cores; "
          f"load average {res['load'][0]} before, {res['load'][1]} after"
          + (" (other processes compete for the CPUs: latencies are not the lab's alone)"
             if max(float(x) for x in res["load"]) > 1.5 * (os.cpu_count() or 1) else ""))
    if res["profile"]:
        print("\nwhere the lab's Python time went (py-spy --gil: the thread holding the GIL):\n" + res["profile"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--watchers", type=int, default=10)
    ap.add_argument("--duration", type=int, default=60, help="seconds of load")
    ap.add_argument("--rate", type=float, default=200.0, help="total requests per second over all clients")
    ap.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for the pods to run")
    ap.add_argument("--profile", action="store_true", help="sample the lab with py-spy during the load")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kperflab-bench-"))
    env = {**os.environ, "KPERFLAB_HOME": str(home)}
    try:
        up = subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "up"], env=env, capture_output=True, text=True)
        if up.returncode:
            sys.exit(f"lab up failed: {(up.stderr or up.stdout).strip()[-500:]}")
        st = json.loads((home / "lab" / "lab.json").read_text())
        kubeconfig = home / "kubeconfig.yaml"
        names, running, startup = create_pods(kubeconfig, args.pods, args.start_timeout)
        if running < args.pods:
            print(f"note: only {running} of {args.pods} pods Running after {args.start_timeout:.0f} s; measuring anyway")
        res = run_load(kubeconfig, names, args, int(st["pid"]))
        report(res, args, running, startup, st.get("runtime", "?"))
        bad = sum(sum(res["errs"][v].values()) for v in VERBS)
        bad += sum(1 for w in res["watchers"] if not res["patched"] <= w.seen)
        sys.exit(1 if bad else 0)
    finally:
        down = subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "down", "--purge"], env=env, capture_output=True)
        if down.returncode:  # a kperflab without --purge
            subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "down"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
