"""01-foundations: code efficiency (memory, stack depth, data structures) and resource availability (CPU time,
memory), each measured in pods on whatever cluster `cluster` points at."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from kubernetes.utils import parse_quantity

from .. import figures, workloads
from ..cluster import translate
from ..errors import BadInput, ExperimentFailed, MetricsUnavailable, PermissionDenied
from ..workspace import terminated
from . import (
    MiB,
    Result,
    cadvisor_after,
    carry_on,
    events,
    mib,
    parse_bytes,
    series_value,
    wait_event,
    wait_for_metrics,
)


def _no_samples() -> pd.DataFrame:
    return pd.DataFrame(columns=["metric", "pod", "value", "timestamp"])


def _unenforced(cluster: Any) -> str:
    """A finding's first sentence where the cluster does not enforce limits (else "")."""
    note = getattr(cluster, "limits_note", "")
    return f"{note[0].upper()}{note[1:]}. " if note else ""


# -- CPU limits → throttling ------------------------------------------------------------------------------

def _millicores(limit: str | None) -> float:
    return math.nan if limit in (None, "none") else float(Decimal(parse_quantity(limit)) * 1000)


def _allocatable_cores(cluster: Any) -> float:
    nodes = cluster.node_objects()
    return min(float(parse_quantity(n["status"]["allocatable"]["cpu"])) for n in nodes) if nodes else 1.0


@carry_on
def cpu_limits(cluster: Any, limits: tuple[str, ...] = ("none", "1000m", "500m", "200m", "100m"), requests: int = 10,
               work: int = 1_300_000, timeout: float = 180, progress: bool = True) -> Result:
    """The same CPU-bound request (``work`` loop iterations, about 50 ms of one core) served under each CPU limit:
    latency, throttled share of CFS periods, CPU used.

    Pods run side by side when their limits fit on a node together (the unlimited one counted as one core), else
    one after another, so they do not compete for CPU."""
    if not limits:
        raise BadInput("limits is empty.", hint='Pass CPU limits like ("none", "500m", "100m").')
    for lim in limits:
        if lim != "none":
            workloads.quantity(lim, "CPU limit")
    demand = sum(1.0 if lim == "none" else _millicores(lim) / 1000 for lim in limits)
    batches = [list(limits)] if demand <= _allocatable_cores(cluster) - 0.25 else [[lim] for lim in limits]
    rows = []
    unreadable = ""
    with cluster.workspace("cpu-limits") as ws:
        for batch in batches:
            names = {}
            for lim in batch:
                name = f"limit-{lim.lower()}"
                names[lim] = name
                ws.create(workloads.cpu_requests(name, requests=requests, work=work, pause=0.02, hold=3600,
                                                 cpu_limit=None if lim == "none" else lim))
            done = {lim: wait_event(ws, n, "done", timeout, progress, f"{requests} requests") for lim, n in names.items()}
            ends = max(next(e["t"] for e in evs if e["event"] == "done") for evs in done.values())
            try:
                cad = cadvisor_after(cluster, ws, list(names.values()), ends,
                                     ["container_cpu_usage_seconds_total", "container_cpu_cfs_periods_total",
                                      "container_cpu_cfs_throttled_periods_total"], timeout=60)
            except (PermissionDenied, MetricsUnavailable) as exc:  # latency still teaches; throttling needs the kubelet
                cad, unreadable = _no_samples(), exc.message
            for lim, name in names.items():
                lat = [e["ms"] for e in done[lim] if e["event"] == "request"]
                periods = series_value(cad, "container_cpu_cfs_periods_total", name)
                throttled = series_value(cad, "container_cpu_cfs_throttled_periods_total", name)
                rows.append({"limit": lim, "limit_millicores": _millicores(lim),
                             "median_ms": float(pd.Series(lat).median()), "p90_ms": float(pd.Series(lat).quantile(0.9)),
                             "max_ms": max(lat), "throttled_ratio": throttled / periods if periods and periods > 0 else math.nan,
                             "cpu_seconds": series_value(cad, "container_cpu_usage_seconds_total", name)})
    df = pd.DataFrame(rows)
    limited = df.dropna(subset=["limit_millicores"])
    low = limited.loc[limited.limit_millicores.idxmin()] if len(limited) else df.iloc[-1]
    free = df[df.limit == "none"]
    ref = free.iloc[0] if len(free) else df.loc[df.median_ms.idxmin()]
    df["slowdown"] = df.median_ms / ref.median_ms  # against the same reference as the finding
    if unreadable:
        throttling = f"the throttling counters could not be read here ({unreadable})."
    elif math.isnan(low.throttled_ratio):
        throttling = "cAdvisor reported no CFS periods for it: no CPU quota applied to it."
    else:
        throttling = f"{low.throttled_ratio:.0%} of its CFS periods were throttled."
    finding = (_unenforced(cluster)
               + f"With a {low.limit} limit the median request took {low.median_ms / ref.median_ms:.1f}x as long as "
               f"{'without a limit' if len(free) else 'under the loosest limit'} ({ref.median_ms:.0f} ms → {low.median_ms:.0f} ms); "
               + throttling)
    fig = go.Figure(go.Bar(x=df.limit, y=df.median_ms, name="median", text=[f"{v:.0f} ms" for v in df.median_ms]))
    fig.add_trace(go.Scatter(x=df.limit, y=df.p90_ms, name="p90", mode="markers", marker={"size": 10}))
    fig.update_yaxes(title="request latency (ms)")
    fig.update_xaxes(title="CPU limit")
    return Result(df, figures._finish(fig, "The same CPU-bound request under different CPU limits"), finding)


# -- memory limit → OOMKilled ----------------------------------------------------------------------------

@carry_on
def memory_oom(cluster: Any, limit: str = "64Mi", step: int = 4 * MiB, pause: float = 1.0, timeout: float = 120,
               progress: bool = True) -> Result:
    """A pod grows its memory in steps under a limit, to three times the limit: the kernel kills it where the limit
    is enforced; working set (cAdvisor samples) against the limit."""
    import time

    limit_bytes = parse_bytes(workloads.quantity(limit, "memory limit"))
    if getattr(cluster, "limits_note", ""):  # no kill can come: reach three times the limit in a dozen steps, not 48
        step = max(step, limit_bytes // 4)
    samples = []
    unsampled = ""  # why no working set could be read, if so
    with cluster.workspace("memory-oom") as ws:
        name = "grow"
        ws.create(workloads.memory_allocator(name, total=3 * limit_bytes, step=step, pause=pause, memory_limit=limit))
        deadline = time.monotonic() + timeout
        while True:
            pod = ws.pod(name)
            if pod.status.phase in ("Failed", "Succeeded"):
                break
            if pod.spec.node_name and pod.status.phase == "Running":
                if any(e["event"] == "holding" for e in events(ws, name)):
                    break  # it got all of it: nothing enforced the limit
                try:
                    cad = cluster.cadvisor(pod.spec.node_name, ["container_memory_working_set_bytes"])
                except (MetricsUnavailable, PermissionDenied) as exc:  # the kill is what we wait for; say why no samples
                    unsampled = exc.message
                else:
                    mine = cad[(cad.namespace == ws.namespace) & (cad.pod == name) & (cad.container == "main")]
                    samples += [{"time": r.timestamp, "bytes": r.value, "source": "working set (cAdvisor sample)"}
                                for r in mine.itertuples()]
            if time.monotonic() > deadline:
                raise ExperimentFailed("wait for the OOM kill", f"the pod is still {pod.status.phase} after {timeout:.0f} s")
            time.sleep(0.5)
        term = terminated(pod)
        evs = events(ws, name)
    allocated = [{"time": pd.Timestamp(e["t"], unit="s", tz="UTC"), "bytes": e["bytes"], "source": "allocated (the program says)"}
                 for e in evs if e["event"] == "allocated"]
    df = pd.DataFrame(allocated + samples, columns=["time", "bytes", "source"]).drop_duplicates().sort_values("time").reset_index(drop=True)
    last_alloc = allocated[-1]["bytes"] if allocated else 0
    ws_samples = df[df.source.str.startswith("working")]
    last_ws = (f"the last working-set sample read {mib(ws_samples.bytes.iloc[-1])}" if len(ws_samples)
               else f"no working set could be read ({unsampled})" if unsampled else "no cAdvisor sample of it landed in time")
    if term is not None:
        reason, code = term.reason, term.exit_code
        finding = (_unenforced(cluster) + f"The container ended {reason} with exit code {code} after it reported "
                   f"{mib(last_alloc)} allocated under a {limit} limit ({mib(limit_bytes)}); {last_ws}.")
    else:
        reason, code = "not killed", None
        finding = (_unenforced(cluster) + f"The container allocated {mib(last_alloc)}, {last_alloc / limit_bytes:.1f}x its "
                   f"{limit} limit, and was not killed; {last_ws}.")
    fig = figures.timeseries(df.assign(MiB=df.bytes / MiB), "MiB", color="source", title="Memory against the limit",
                             hlines={f"limit {limit}": limit_bytes / MiB})
    return Result(df, fig, finding, {"reason": reason, "exit_code": code, "limit_bytes": limit_bytes, "last_allocated": last_alloc})


# -- data structures -------------------------------------------------------------------------------------

STRUCTURES = workloads._PRELUDE + """import array, resource
kind, n = os.environ["KIND"], int(os.environ["N"])
values = (i * 7919 % 2**31 for i in range(n))
if kind == "list":
    data = list(values)
elif kind == "array":
    data = array.array("i", values)
elif kind == "bytes":
    data = bytearray(4 * n)
    view = memoryview(data).cast("i")
    for i, v in enumerate(values):
        view[i] = v
elif kind == "numpy":
    try:
        import numpy as np
    except ImportError:
        emit(event="unavailable", why="this image has no NumPy")
        sys.exit(0)
    data = (np.arange(n, dtype=np.int64) * 7919 % 2**31).astype(np.int32)
emit(event="built", elements=n, maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
time.sleep(3600)
"""


@carry_on
def data_structures(cluster: Any, n: int = 2_000_000, limit: str = "64Mi", kinds: tuple[str, ...] = ("list", "array", "bytes", "numpy"),
                    timeout: float = 120, progress: bool = True) -> Result:
    """The same ``n`` 32-bit integers held as a list of Python ints, an array.array, a bytearray (packed) and a NumPy
    array, each in a pod with the same memory limit: which fit, which were killed, and each one's working set."""
    import time

    workloads.quantity(limit, "memory limit")
    unknown = set(kinds) - {"list", "array", "bytes", "numpy"}
    if unknown or not kinds:
        raise BadInput(f"unknown structures {sorted(unknown)}." if unknown else "kinds is empty.",
                       hint='Choose from "list", "array", "bytes", "numpy".')
    rows = []
    with cluster.workspace("data-structures") as ws:
        for k in kinds:
            ws.create(workloads.pod(f"hold-{k}", STRUCTURES, {"KIND": k, "N": n}, workload="data-structures", memory_limit=limit))
        outcome: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(outcome) < len(kinds):
            for k in kinds:
                if k in outcome:
                    continue
                pod = ws.pod(f"hold-{k}")
                evs = events(ws, f"hold-{k}") if pod.status.phase != "Pending" else []
                built = next((e for e in evs if e["event"] in ("built", "unavailable")), None)
                if built:
                    outcome[k] = {"event": built["event"], "t": built["t"], "maxrss": built.get("maxrss"), "why": built.get("why")}
                elif pod.status.phase in ("Failed", "Succeeded"):
                    term = terminated(pod)
                    outcome[k] = {"event": "killed", "reason": term.reason if term else pod.status.phase,
                                  "exit_code": term.exit_code if term else None}
            if time.monotonic() > deadline:
                raise ExperimentFailed("hold the data", f"no outcome for {sorted(set(kinds) - set(outcome))} after {timeout:.0f} s")
            time.sleep(0.3)
        fitted = [k for k, o in outcome.items() if o["event"] == "built"]
        unread = ""
        try:
            cad = cadvisor_after(cluster, ws, [f"hold-{k}" for k in fitted], max(outcome[k]["t"] for k in fitted),
                                 ["container_cpu_usage_seconds_total", "container_memory_working_set_bytes"]) if fitted else _no_samples()
        except (PermissionDenied, MetricsUnavailable) as exc:  # which fit and which were killed still shows
            cad, unread = _no_samples(), exc.message
        # a second, independent reading of the same working sets, later, through metrics-server (kubectl top's numbers)
        second: dict[str, int] = {}
        second_why = ""
        if fitted:
            try:
                top = wait_for_metrics(cluster, ws.namespace, [f"hold-{k}" for k in fitted], progress=progress)
                second = {k: int(top.set_index("name").loc[f"hold-{k}", "memory_bytes"]) for k in fitted}
            except (PermissionDenied, MetricsUnavailable) as exc:
                second_why = exc.message
    for k in kinds:
        o = outcome[k]
        wsb = series_value(cad, "container_memory_working_set_bytes", f"hold-{k}") if o["event"] == "built" else math.nan
        rows.append({"structure": k, "fits": o["event"] == "built",
                     "outcome": {"built": "held", "unavailable": o.get("why") or "unavailable"}.get(o["event"], o.get("reason")),
                     "exit_code": o.get("exit_code"), "working_set_mib": wsb / MiB,
                     "bytes_per_element": wsb / n})
    df = pd.DataFrame(rows)
    measured = df[df.fits & df.working_set_mib.notna()]
    killed = df[df.outcome.isin(["OOMKilled"])]
    best = measured.loc[measured.working_set_mib.idxmin()] if len(measured) else None
    if best is not None and len(killed):
        finding = (f"Holding {n:,} integers under a {limit} limit, {', '.join(killed.structure)} "
                   f"{'was' if len(killed) == 1 else 'were'} OOMKilled, while {best.structure} used {best.working_set_mib:.1f} MiB "
                   f"of working set ({best.bytes_per_element:.1f} bytes per element).")
    elif best is not None:
        worst = measured.loc[measured.working_set_mib.idxmax()]
        finding = (f"Holding {n:,} integers, {worst.structure} used {worst.working_set_mib:.1f} MiB and {best.structure} "
                   f"{best.working_set_mib:.1f} MiB: {worst.working_set_mib / best.working_set_mib:.1f}x the memory for the same data.")
    elif len(df[df.fits]):
        finding = (f"Holding {n:,} integers, {', '.join(df[df.fits].structure)} fit under {limit}"
                   + (f" and {', '.join(killed.structure)} did not" if len(killed) else "")
                   + f"; their working sets could not be read here ({unread or 'no cAdvisor sample'}).")
    else:
        finding = f"No structure held {n:,} integers under {limit} ({', '.join(f'{r.structure}: {r.outcome}' for r in df.itertuples())})."
    if not len(killed):
        finding = _unenforced(cluster) + finding
    plot = df.assign(label=[f"{s} ({o})" for s, o in zip(df.structure, df.outcome, strict=True)])
    fig = px.bar(plot, x="label", y="working_set_mib", text=[f"{v:.1f}" if not math.isnan(v) else "killed" for v in df.working_set_mib])
    fig.update_yaxes(title="working set (MiB)")
    fig.update_xaxes(title=f"{n:,} integers held as …")
    fig.add_hline(y=parse_bytes(limit) / MiB, line_dash="dash", annotation_text=f"limit {limit}")
    return Result(df, figures._finish(fig, "Same data, different structures, same memory limit"), finding,
                  {"n": n, "metrics_api_bytes": second, "metrics_api_unavailable": second_why})


def second_reading(result: Result, structure: str) -> tuple[float | None, str]:
    """Bytes per element of ``structure`` from a second, independent reading of its pod's working set (the metrics
    API, a later sample than the table's cAdvisor one): what an exercise checks an answer against. ``(None, why)``
    when there is none."""
    if result.skipped:
        return None, result.skipped
    got = result.data.get("metrics_api_bytes", {}).get(structure)
    if got is None:
        return None, result.data.get("metrics_api_unavailable") or f"the {structure} pod did not hold its data"
    return got / result.data["n"], ""


# -- stack depth -----------------------------------------------------------------------------------------

STACK = workloads._PRELUDE + """import resource, threading
mode = os.environ["MODE"]
depth = 0
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
def python_level(n):
    global depth
    depth = n
    if n % int(os.environ["EVERY"]) == 0:
        emit(event="depth", depth=n, maxrss=rss())
    return python_level(n + 1)
def through_c(n):
    if n % int(os.environ["EVERY"]) == 0:
        emit(event="depth", depth=n, maxrss=rss())
    return sum(map(through_c, (n + 1,)))  # map and sum call back from C: every level uses C stack
if mode == "python":
    emit(event="start", mode=mode, recursion_limit=sys.getrecursionlimit())
    try:
        python_level(1)
    except RecursionError as exc:
        emit(event="exception", type="RecursionError", depth=depth, message=str(exc))
elif mode == "python-unlimited":
    sys.setrecursionlimit(10**8)
    emit(event="start", mode=mode, recursion_limit=sys.getrecursionlimit())
    python_level(1)
else:
    sys.setrecursionlimit(10**8)
    threading.stack_size(int(os.environ["STACK"]))
    emit(event="start", mode=mode, stack_bytes=int(os.environ["STACK"]))
    def run():
        try:
            through_c(1)
        except RecursionError as exc:
            emit(event="exception", type="RecursionError", depth=depth, message=str(exc))
    t = threading.Thread(target=run)
    t.start()
    t.join()
"""


@carry_on
def stack_depth(cluster: Any, stacks: tuple[int, ...] = (256 << 10, 1 << 20), memory_limit: str = "128Mi",
                timeout: float = 120, progress: bool = True) -> Result:
    """How deep recursion goes and how it fails: Python's recursion limit (an exception), the limit lifted (frames
    fill memory until the limit), and recursion through C on a thread with a small stack (a crash)."""
    import time

    cases = [("python", "recursion limit", {"MODE": "python", "EVERY": 100})]
    lifted = cluster.limits_enforced  # without an enforced memory limit, nothing would stop it but the node itself
    if lifted:
        cases.append(("python-unlimited", "limit lifted, Python frames", {"MODE": "python-unlimited", "EVERY": 50_000}))
    cases += [(f"c-{s >> 10}k", f"through C, {s >> 10} KiB stack", {"MODE": "c-stack", "STACK": s, "EVERY": 25}) for s in stacks]
    with cluster.workspace("stack-depth") as ws:
        for key, _, env in cases:
            ws.create(workloads.pod(f"stack-{key}", STACK, env, workload="stack-depth", memory_limit=memory_limit))
        pods = {}
        deadline = time.monotonic() + timeout
        while len(pods) < len(cases):
            for key, _, _ in cases:
                if key not in pods:
                    pod = ws.pod(f"stack-{key}")
                    if pod.status.phase in ("Failed", "Succeeded"):
                        pods[key] = (pod, events(ws, f"stack-{key}"))
            if time.monotonic() > deadline:
                raise ExperimentFailed("recurse", f"still running after {timeout:.0f} s: {sorted(set(k for k, _, _ in cases) - set(pods))}")
            time.sleep(0.3)
    rows = []
    for key, label, env in cases:
        pod, evs = pods[key]
        term = terminated(pod)
        exc = next((e for e in evs if e["event"] == "exception"), None)
        depths = [e for e in evs if e["event"] == "depth"]
        depth = exc["depth"] if exc else (depths[-1]["depth"] if depths else 0)
        per_frame = math.nan
        if env["MODE"] == "python-unlimited" and len(depths) >= 2 and depths[-1]["depth"] > depths[0]["depth"]:
            per_frame = (depths[-1]["maxrss"] - depths[0]["maxrss"]) / (depths[-1]["depth"] - depths[0]["depth"])
        if exc:
            how = f"{exc['type']} (an exception the program caught)"
        elif term and term.reason == "OOMKilled":
            how = "OOMKilled: the frames filled the memory limit"
        elif term and term.exit_code and term.exit_code > 128:
            how = f"crashed by signal {term.exit_code - 128} ({'SIGSEGV: stack overflow' if term.exit_code == 139 else 'signal'})"
        else:
            how = f"exited {term.exit_code if term else '?'}"
        rows.append({"case": label, "depth": depth, "outcome": how, "reason": term.reason if term else "",
                     "exit_code": term.exit_code if term else None, "stack_bytes": env.get("STACK", math.nan),
                     "bytes_per_frame": per_frame})
    df = pd.DataFrame(rows)
    py = df.iloc[0]
    c = df.iloc[2:] if lifted else df.iloc[1:]
    parts = [f"With Python's default limit recursion stopped at depth {py.depth:,} with {py.outcome}."]
    if lifted:
        up = df.iloc[1]
        parts.append(f"With the limit lifted it reached depth {up.depth:,} and ended {up.reason or up.outcome} "
                     f"(exit code {up.exit_code})" + (f", about {up.bytes_per_frame:.0f} bytes per frame." if not math.isnan(up.bytes_per_frame) else "."))
    else:
        parts.insert(0, _unenforced(cluster) + "The case with Python's limit lifted did not run: only a memory limit stops it.")
    if len(c) >= 2 and c.depth.iloc[0] > 0:
        parts.append(f"Through C code, a {int(c.stack_bytes.iloc[-1]) >> 10} KiB thread stack went {c.depth.iloc[-1] / c.depth.iloc[0]:.1f}x "
                     f"as deep as a {int(c.stack_bytes.iloc[0]) >> 10} KiB one ({c.depth.iloc[0]:,} → {c.depth.iloc[-1]:,}) and ended: "
                     f"{c.outcome.iloc[-1]}, exit code {c.exit_code.iloc[-1]}.")
    fig = px.bar(df, x="case", y="depth", text="outcome", log_y=True)
    fig.update_yaxes(title="recursion depth reached (log)")
    return Result(df, figures._finish(fig, "How deep recursion gets, and how it ends"), " ".join(parts))


def measured_quota(cluster: Any, limit: str = "250m") -> tuple[float | None, str]:
    """The CFS quota (µs per period) the cgroup of a pod with ``limits.cpu: limit`` really gets, read from cAdvisor's
    ``container_spec_cpu_quota``; ``(None, why)`` when this cluster does not let us read it."""
    import time

    try:
        with cluster.workspace("quota") as ws:
            ws.run(workloads.cpu_burner("quota", cores=0.1, cpu_limit=limit), progress=False)
            cad = cadvisor_after(cluster, ws, ["quota"], time.time(), ["container_cpu_usage_seconds_total", "container_spec_cpu_quota"])
    except (PermissionDenied, MetricsUnavailable) as exc:
        return None, str(exc)
    quota = cad[cad.metric == "container_spec_cpu_quota"]
    if quota.empty:
        return None, ("cAdvisor reports no CPU quota for the pod" + (f": {cluster.limits_note}" if cluster.limits_note else ""))
    return float(quota.value.iloc[0]), ""


# -- resource availability -------------------------------------------------------------------------------

@carry_on
def availability(cluster: Any) -> Result:
    """Each node's allocatable CPU and memory against what pods request and what is in use (metrics API)."""
    nodes = cluster.node_objects()
    scope = "pods request"
    try:
        pods = cluster.core.list_pod_for_all_namespaces(_request_timeout=cluster.timeout).items
    except Exception as exc:  # noqa: BLE001 - translated: only "not allowed" falls back to our own namespace
        err = translate(exc, cluster.conn.server, verb="list", resource="pods (all namespaces)")
        if not isinstance(err, PermissionDenied):
            raise err from None
        try:
            pods = cluster.core.list_namespaced_pod(cluster.namespace, _request_timeout=cluster.timeout).items
        except Exception as exc2:  # noqa: BLE001
            raise translate(exc2, cluster.conn.server, verb="list", resource=f"pods in {cluster.namespace}") from None
        scope = f"pods in namespace {cluster.namespace} (you may not list pods cluster-wide) request"
    req: dict[str, dict[str, float]] = {n["metadata"]["name"]: {"cpu": 0.0, "memory": 0.0} for n in nodes}
    for p in pods:
        if p.status.phase in ("Succeeded", "Failed") or p.spec.node_name not in req:
            continue
        for c in p.spec.containers:
            r = (c.resources.requests if c.resources and c.resources.requests else {}) or {}
            req[p.spec.node_name]["cpu"] += float(parse_quantity(r.get("cpu", "0")))
            req[p.spec.node_name]["memory"] += float(parse_quantity(r.get("memory", "0")))
    no_usage = ""
    try:
        top = cluster.top_nodes().set_index("name")
    except MetricsUnavailable as exc:  # the used bars are left out, and the finding says why
        top, no_usage = pd.DataFrame(), f"no metrics API: {exc.message[0].lower()}{exc.message[1:].rstrip('.')}"
    except PermissionDenied as exc:
        top, no_usage = pd.DataFrame(), f"not allowed to read node metrics: {exc.message.rstrip('.')}"
    rows = []
    for n in nodes:
        name, st = n["metadata"]["name"], n["status"]
        for res, unit, scale in (("cpu", "cores", 1), ("memory", "GiB", 1 / (1 << 30))):
            used = (top.loc[name, "cpu_cores"] if res == "cpu" else top.loc[name, "memory_bytes"]) if name in top.index else math.nan
            rows.append({"node": name, "resource": f"{res} ({unit})", "capacity": float(parse_quantity(st["capacity"][res])) * scale,
                         "allocatable": float(parse_quantity(st["allocatable"][res])) * scale,
                         "requested": req[name][res] * scale, "used": used * scale})
    df = pd.DataFrame(rows)
    long = df.melt(id_vars=["node", "resource"], value_vars=["allocatable", "requested", "used"], var_name="what", value_name="amount")
    fig = px.bar(long, x="what", y="amount", color="node", facet_col="resource", barmode="group")
    fig.update_yaxes(matches=None, showticklabels=True)
    cpu = df[df.resource.str.startswith("cpu")].iloc[0]
    mem = df[df.resource.str.startswith("memory")].iloc[0]
    finding = (f"On {cpu.node}, {scope} {cpu.requested:.2f} of {cpu.allocatable:.2f} allocatable cores while "
               + (f"{cpu.used:.2f} are in use" if not math.isnan(cpu.used) else f"usage is unknown ({no_usage or 'no metrics for this node'})")
               + f"; memory: {mem.requested:.2f} of {mem.allocatable:.2f} GiB requested"
               + (f", {mem.used:.2f} GiB in use." if not math.isnan(mem.used) else "."))
    return Result(df, figures._finish(fig, "Allocatable, requested and used, per node"), finding)
