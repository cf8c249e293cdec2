"""04-measuring: each stage of the resource-metrics pipeline read live for one workload, and what the pipeline's
sampling does to what you see (window, resolution, working set vs RSS vs cache, spikes between samples)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import figures, metrics, workloads
from ..errors import ClusterUnreachable, ExperimentFailed, MetricsUnavailable, PermissionDenied
from ..progress import quiet
from ..workspace import terminated
from . import MiB, Result, cadvisor_after, carry_on, mib, wait_event, wait_for_metrics

# -- the stages, raw and parsed ----------------------------------------------------------------------------


@dataclass
class Stages:
    pod: str
    namespace: str
    node: str
    raw: dict[str, str] = field(default_factory=dict)  # stage → a few lines of what it serves
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: str = ""  # why this cluster could not show the stages


@dataclass
class TwoReadings:
    """Two consecutive kubelet samples of a workload's cumulative CPU (``first``, ``second``: sampler rows), the rate
    between them from those counters (``counter_cores``), and the same rate by the program's own CPU clock over the
    same interval (``program_cores``, independent of the cgroup). ``unavailable`` says why there is none."""

    first: Any = None
    second: Any = None
    counter_cores: float | None = None
    program_cores: float | None = None
    unavailable: str = ""


def two_readings(cluster: Any, ws: Any, selector: str = "app.kubernetes.io/name=cpu-burner", interval: float = 3,
                 samples: int = 4) -> TwoReadings:
    """Two consecutive kubelet samples of a CPU burner (`workloads.cpu_burner`) and its rate, from the counters and
    from the burner's own CPU clock (its ``cpu`` log lines, interpolated at the two sample times)."""
    try:
        df = cluster.sampler(selector=selector, namespace=ws.namespace, interval=interval).run(samples=samples, progress=False)
    except (MetricsUnavailable, PermissionDenied) as exc:
        return TwoReadings(unavailable=str(exc))
    rated = df.dropna(subset=["cpu_cores"])
    if rated.empty:
        return TwoReadings(unavailable="fewer than two kubelet samples landed; run the cell again")
    last = rated.iloc[-1]
    prev = df[(df.time < last.time) & (df.pod == last.pod) & (df.container == last.container)].iloc[-1]
    t1, t2 = prev.time.timestamp(), last.time.timestamp()
    deadline = time.monotonic() + 5
    while True:  # the burner prints its clock every second: wait for a line after the second sample
        ticks = [(e["t"], e["cpu_seconds"]) for e in workloads.read_events(ws.logs(last.pod)) if e["event"] == "cpu"]
        if (ticks and ticks[-1][0] >= t2) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    a, b = _interpolate(ticks, t1), _interpolate(ticks, t2)
    program = (b - a) / (t2 - t1) if a is not None and b is not None else None
    return TwoReadings(prev, last, float(last.cpu_cores), program,
                       "" if program is not None else "the burner's own CPU clock does not cover both sample times")


def _interpolate(points: list[tuple[float, float]], t: float) -> float | None:
    """Linear interpolation of (time, value) points at ``t``; None outside them."""
    for (ta, va), (tb, vb) in zip(points, points[1:], strict=False):
        if ta <= t <= tb and tb > ta:
            return va + (vb - va) * (t - ta) / (tb - ta)
    return None


@dataclass
class TopReading:
    """A pod's memory as the metrics API reports it (``bytes``) and what ``kubectl top`` printed for that same
    PodMetrics (``kubectl_mib``, from kubectl's own formatting); ``unavailable`` says why kubectl's number is missing."""

    bytes: int | None = None
    kubectl_mib: int | None = None
    printed: str = ""
    unavailable: str = ""


def kubectl_top_memory(cluster: Any, namespace: str, pod: str, attempts: int = 5) -> TopReading:
    """Read the pod's PodMetrics, run ``kubectl top pod``, read again; keep the reading where both reads agree (so
    kubectl saw the same sample)."""
    def reading() -> tuple[Any, int] | None:
        for it in cluster.pod_metrics(namespace):
            if it["metadata"]["name"] == pod:
                return it.get("timestamp"), int(metrics.top_frame([it]).memory_bytes.iloc[0])
        return None

    try:
        got = reading()
    except (MetricsUnavailable, PermissionDenied) as exc:
        return TopReading(unavailable=str(exc))
    if got is None:
        return TopReading(unavailable=f"the metrics API has no PodMetrics for {pod} yet")
    kubectl = shutil.which("kubectl")
    if kubectl is None or cluster.conn.kubeconfig is None:
        return TopReading(got[1], unavailable="kubectl is not installed here (or the kubeconfig is in-cluster)")
    args = [kubectl, *(["--context", cluster.conn.context] if cluster.conn.context else []),
            "top", "pod", pod, "-n", namespace, "--no-headers"]
    for _ in range(attempts):
        before = reading()
        out = subprocess.run(args, capture_output=True, text=True, timeout=60, env=cluster.conn.kubectl_env())
        after = reading()
        if out.returncode != 0:
            return TopReading(after[1] if after else None, unavailable=f"kubectl top failed: {out.stderr.strip()[:200]}")
        if before == after and before is not None:
            fields = out.stdout.split()
            mem = fields[2] if len(fields) >= 3 else ""
            if mem.endswith("Mi") and mem[:-2].isdigit():
                return TopReading(before[1], int(mem[:-2]), out.stdout.strip())
            return TopReading(before[1], None, out.stdout.strip(), f"kubectl printed {out.stdout.strip()!r}, not a number of Mi")
    return TopReading(after[1] if after else None,
                      unavailable=f"a new sample landed while kubectl read, in each of {attempts} tries")


def _own(cluster: Any, ws: Any, name: str) -> Any:
    """The caller's workspace, or one of the experiment's own (deleted when it ends, fails or is interrupted)."""
    import contextlib

    return contextlib.nullcontext(ws) if ws is not None else cluster.workspace(name)


def _lines(text: str, needle: str, n: int) -> str:
    out = [ln for ln in text.splitlines() if needle in ln and not ln.startswith("#")]
    return "\n".join(out[:n])


def stages(cluster: Any, ws: Any, cores: float = 0.5, progress: bool = True) -> Stages:
    """Run a CPU burner and read it at every stage: Summary API, /metrics/resource, /metrics/cadvisor, metrics.k8s.io.
    A stage this cluster does not let us read ends the reading there; ``skipped`` says why."""
    try:
        return _stages(cluster, ws, cores, progress)
    except (MetricsUnavailable, PermissionDenied) as exc:
        return Stages("pipeline", ws.namespace, "", skipped=str(exc))


def _stages(cluster: Any, ws: Any, cores: float, progress: bool) -> Stages:
    name = "pipeline"
    ws.run(workloads.cpu_burner(name, cores=cores, cpu_limit="1", memory_limit="128Mi"), progress=progress)
    top = wait_for_metrics(cluster, ws.namespace, [name], progress=progress)
    node = ws.pod(name).spec.node_name
    st = Stages(name, ws.namespace, node)
    summary = cluster.summary(node)
    pod = next(p for p in summary["pods"] if p["podRef"]["name"] == name and p["podRef"]["namespace"] == ws.namespace)
    st.raw["/stats/summary"] = json.dumps({k: pod["containers"][0].get(k) for k in ("name", "cpu", "memory")}, indent=1)
    resource = cluster.node_proxy(node, "metrics/resource")
    st.raw["/metrics/resource"] = _lines(resource, f'pod="{name}"', 4)
    cad = cluster.node_proxy(node, "metrics/cadvisor")
    st.raw["/metrics/cadvisor"] = "\n".join(ln for ln in cad.splitlines() if f'pod="{name}"' in ln and 'container="main"' in ln
                                            and ln.split("{")[0] in ("container_cpu_usage_seconds_total",
                                                                     "container_memory_working_set_bytes",
                                                                     "container_cpu_cfs_throttled_periods_total"))
    pm = cluster.pod_metrics(ws.namespace)
    st.raw["metrics.k8s.io"] = json.dumps(next(i for i in pm if i["metadata"]["name"] == name), indent=1)
    frames = metrics.summary_frames(summary)["containers"]
    st.frames["/stats/summary"] = frames[(frames.namespace == ws.namespace) & (frames.pod == name)]
    rf = metrics.resource_frame(resource)
    st.frames["/metrics/resource"] = rf[(rf.namespace == ws.namespace) & (rf.pod == name)]
    cf = metrics.prometheus_frame(cad, ["container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                                        "container_memory_rss", "container_memory_cache"])
    st.frames["/metrics/cadvisor"] = cf[(cf.namespace == ws.namespace) & (cf.pod == name)]
    st.frames["kperflab top_pods()"] = top[top.name == name]
    return st


@carry_on
def top_vs_kubectl(cluster: Any, namespace: str, attempts: int = 5) -> Result:
    """kperflab's `top_pods()` next to `kubectl top pods` for the same moment (read ours before and after kubectl)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None or cluster.conn.kubeconfig is None:
        df = cluster.top_pods(namespace)
        return Result(df, figures.top_bars(df), "kubectl is not installed here (or the kubeconfig is in-cluster), so only "
                      "kperflab's numbers are shown.")
    args = [kubectl, "top", "pod", "-n", namespace, "--no-headers"]
    if cluster.conn.context:
        args[1:1] = ["--context", cluster.conn.context]
    stable = False
    for _ in range(attempts):
        before = cluster.top_pods(namespace)
        out = subprocess.run(args, capture_output=True, text=True, timeout=60, env=cluster.conn.kubectl_env())
        after = cluster.top_pods(namespace)
        stable = before[["name", "timestamp", "cpu_cores", "memory_bytes"]].equals(after[["name", "timestamp", "cpu_cores", "memory_bytes"]])
        if stable:
            break
    if out.returncode != 0:
        raise ExperimentFailed("kubectl top pods", out.stderr.strip() or f"exit code {out.returncode}")
    theirs = {f[0]: f for f in (line.split() for line in out.stdout.splitlines()) if len(f) >= 3}
    df = after[["name", "cpu_millicores", "memory_mib"]].copy()
    df["kubectl_cpu"] = [theirs.get(n, ["", "?", "?"])[1] for n in df.name]
    df["kubectl_memory"] = [theirs.get(n, ["", "?", "?"])[2] for n in df.name]
    df["same"] = [f"{c}m" == kc and f"{m}Mi" == km for c, m, kc, km in zip(df.cpu_millicores, df.memory_mib, df.kubectl_cpu,
                                                                             df.kubectl_memory, strict=True)]
    agree = int(df.same.sum())
    if agree == len(df):
        why = " after the same rounding (CPU up to millicores, memory down to Mi)."
    elif stable:
        why = (f"; they differ on {', '.join(df.name[~df.same])} although the metrics API gave the same readings before "
               "and after kubectl read them, so the rounding differs.")
    else:
        why = (f"; they differ on {', '.join(df.name[~df.same])}: in each of {attempts} tries the metrics API's readings "
               "changed while kubectl read them (new samples landed), so the two did not see the same numbers.")
    finding = f"kperflab and kubectl top agree on {agree} of {len(df)} pods" + why
    return Result(df, figures.top_bars(after, title="kperflab top_pods()"), finding)


# -- a changing load: counters vs the metrics API ----------------------------------------------------------

@carry_on
def changing_load(cluster: Any, ws: Any = None, phases: tuple[tuple[float, float], ...] = ((0.2, 15), (1.0, 15), (0.3, 15)),
                  interval: float = 1.0, progress: bool = True) -> Result:
    """A pod whose CPU use steps up and down, read three ways every ``interval``: what it does (its own log), the
    cgroup counters (cAdvisor, as a rate between kubelet samples) and the metrics API (window, resolution)."""
    with _own(cluster, ws, "changing-load") as ws:
        from tqdm.auto import tqdm

        name = "phases"
        ws.run(workloads.cpu_phases(name, phases, cpu_limit="1"), progress=progress)
        sampler = cluster.sampler(selector="app.kubernetes.io/name=cpu-phases", namespace=ws.namespace, interval=interval)
        total = sum(s for _, s in phases)
        api = {}  # PodMetrics timestamp → (cores, window)
        seen_at: dict[tuple[str, Any], pd.Timestamp] = {}  # when a poll first saw each sample
        t_end = time.monotonic() + total + 2
        with tqdm(total=round(total), desc="sampling three ways", unit="s", disable=quiet(progress), leave=False) as bar:
            while time.monotonic() < t_end:
                now = pd.Timestamp.now(tz="UTC")
                for row in sampler.read_once():
                    seen_at.setdefault(("c", row["time"]), now)
                for it in cluster.pod_metrics(ws.namespace):
                    if it["metadata"]["name"] == name:
                        api[pd.Timestamp(it["timestamp"])] = (metrics.top_frame([it]).cpu_cores.iloc[0], it["window"])
                        seen_at.setdefault(("a", pd.Timestamp(it["timestamp"])), now)
                bar.n = min(round(total), round(total - (t_end - time.monotonic()) + 2))
                bar.refresh()
                time.sleep(interval)
        evs = [e for e in workloads.read_events(ws.logs(name)) if e["event"] in ("phase", "done")]
        truth = []
        for a, b in zip(evs, evs[1:], strict=False):
            if a["event"] == "phase":
                truth += [{"time": pd.Timestamp(a["t"], unit="s", tz="UTC"), "cores": a["cores"], "source": "what the program does"},
                          {"time": pd.Timestamp(b["t"], unit="s", tz="UTC"), "cores": a["cores"], "source": "what the program does"}]
        counted = sampler.frame().dropna(subset=["cpu_cores"])
        rates = [{"time": r.time, "cores": r.cpu_cores, "source": "cgroup counters (cAdvisor)", "seen": seen_at[("c", r.time)]}
                 for r in counted.itertuples()]
        api_rows = [{"time": t, "cores": v, "source": "metrics API", "window": w, "seen": seen_at[("a", t)]}
                    for t, (v, w) in sorted(api.items())]
        df = pd.DataFrame(truth + rates + api_rows)
        up = next(((a, b) for a, b in zip(phases, phases[1:], strict=False) if b[0] > a[0]), None)
        finding = "The load never rose, so there is no lag to measure."
        if up and len(evs) >= 2:
            i = [p for p in phases].index(up[1])
            change = pd.Timestamp(evs[i]["t"], unit="s", tz="UTC")
            mid = (up[0][0] + up[1][0]) / 2

            def first_seen(rows: list[dict[str, Any]]) -> float:
                """Seconds from the change until a reader polling every `interval` first saw it."""
                return next(((r["seen"] - change).total_seconds() for r in rows if r["seen"] > change and r["cores"] >= mid), math.nan)

            lag_c, lag_a = first_seen(rates), first_seen(api_rows)
            window = api_rows[-1]["window"] if api_rows else "?"
            finding = (f"The load stepped from {up[0][0]:g} to {up[1][0]:g} cores; polling every {interval:g} s, the cgroup counters showed it "
                       + (f"{lag_c:.1f} s later" if not math.isnan(lag_c) else "not within the run")
                       + ", the metrics API " + (f"{lag_a:.1f} s later" if not math.isnan(lag_a) else "not within the run")
                       + f" (its window: {window}).")
        fig = go.Figure()
        for src, part in df.groupby("source", sort=False):
            fig.add_trace(go.Scatter(x=part.time, y=part.cores, name=src, mode="lines" if src.startswith("what") else "lines+markers",
                                     line={"shape": "hv"} if not src.startswith("what") else {"dash": "dot"}))
        fig.update_yaxes(title="CPU (cores)")
        return Result(df, figures._finish(fig, "One load, three ways of seeing it"), finding)


# -- working set vs RSS vs cache ---------------------------------------------------------------------------

@carry_on
def page_cache(cluster: Any, ws: Any = None, size: int = 256 * MiB, progress: bool = True) -> Result:
    """A pod fills page cache by writing and reading a file: usage and cache rise, RSS does not, and the working set
    (what the metrics API and eviction use) counts the active part of the cache."""
    with _own(cluster, ws, "page-cache") as ws:
        name = "cache"
        ws.create(workloads.page_cache(name, size, memory_limit=f"{max(512, 2 * size // MiB)}Mi"))
        evs = wait_event(ws, name, "ready", 120, progress, "fill the page cache")
        ready = next(e["t"] for e in evs if e["event"] == "ready")
        fams = ["container_cpu_usage_seconds_total", "container_memory_usage_bytes", "container_memory_working_set_bytes",
                "container_memory_rss", "container_memory_cache", "container_memory_total_inactive_file_bytes"]
        cad = cadvisor_after(cluster, ws, [name], ready, fams)
        vals = {m: float(cad[cad.metric == m].value.iloc[-1]) for m in fams[1:] if (cad.metric == m).any()}
        df = pd.DataFrame([{"metric": k.removeprefix("container_memory_").removesuffix("_bytes"), "MiB": v / MiB} for k, v in vals.items()])
        rss, cache = vals.get("container_memory_rss", math.nan), vals.get("container_memory_cache", math.nan)
        wsb, usage = vals.get("container_memory_working_set_bytes", math.nan), vals.get("container_memory_usage_bytes", math.nan)
        inactive = vals.get("container_memory_total_inactive_file_bytes", math.nan)
        if any(math.isnan(v) for v in (rss, cache, wsb, usage)):
            missing = [k for k in fams[1:] if k not in vals]
            finding = f"cAdvisor did not report {', '.join(missing)} for the container, so its memory cannot be split here."
        elif cache < size / 4:
            finding = (f"After writing and reading a {mib(size)} file, the container's memory usage is {mib(usage)} with "
                       f"{mib(cache)} of page cache: this cluster's counters do not include the file's page cache"
                       + (f"; {cluster.limits_note}" if cluster.limits_note else "") + f". Its working set is {mib(wsb)}.")
        else:
            split = (f": usage minus the {mib(inactive)} of inactive cache; the {mib(cache - inactive)} of active cache "
                     "(pages read more than once) count in it." if not math.isnan(inactive)
                     else " (cAdvisor did not report the inactive part of the cache).")
            finding = (f"After writing and reading a {mib(size)} file, the container's memory usage is {mib(usage)}: "
                       f"{mib(cache)} of page cache and {mib(rss)} of RSS. Its working set, the number kubectl top shows, is "
                       f"{mib(wsb)}{split}")
        fig = figures.top_bars(df, "MiB", "metric", title=f"One container's memory after reading a {size // MiB} MiB file")
        return Result(df, fig, finding, {"size": size, **vals})


# -- a spike between samples -----------------------------------------------------------------------------

@carry_on
def short_spike(cluster: Any, ws: Any = None, base: int = 16 * MiB, limit: str = "64Mi", spike: int = 128 * MiB,
                timeout: float = 120, progress: bool = True) -> Result:
    """A pod that holds a little memory, shows up in the metrics API, then spikes past its limit at once: where the
    limit is enforced it is OOMKilled, although no PodMetrics reading came near the limit; the cgroup's OOM counter
    caught it. The finding compares the spike's measured length with the measured spacing of the readings."""
    with _own(cluster, ws, "short-spike") as ws:
        from tqdm.auto import tqdm

        from . import parse_bytes

        window = cluster.top_nodes().window_seconds.max()
        known = window == window  # not NaN
        after = max(10.0, 3.5 * (window if known else 15))  # long enough for two readings at the baseline
        name = "spike"
        ws.run(workloads.memory_spike(name, base, spike, after, memory_limit=limit, restart="Always"), progress=progress)
        seen = []
        deadline = time.monotonic() + after + timeout
        term = None
        survived = False
        with tqdm(desc="watching kubectl top until the spike", bar_format="{desc} {elapsed}", disable=quiet(progress), leave=False) as bar:
            while time.monotonic() < deadline:
                top = cluster.top_pods(ws.namespace)
                if name in set(top.name):
                    r = top.set_index("name").loc[name]
                    seen.append({"time": r.timestamp, "bytes": r.memory_bytes, "source": "metrics API (kubectl top)"})
                term = terminated(ws.pod(name))
                if term is not None and term.reason == "OOMKilled":
                    break
                if any(e["event"] == "survived" for e in workloads.read_events(ws.logs(name))):
                    survived = True  # the whole spike was granted: nothing enforced the limit
                    break
                bar.update(0)
                time.sleep(0.5)
        if not survived and (term is None or term.reason != "OOMKilled"):
            raise ExperimentFailed("wait for the spike", f"no OOM kill and no end of the spike within {after + timeout:.0f} s")
        node = ws.pod(name).spec.node_name
        ooms = 0.0
        t_end = time.monotonic() + (30 if not survived else 0)
        while time.monotonic() < t_end and ooms < 1:
            cad = cluster.cadvisor(node, ["container_oom_events_total"])
            mine = cad[(cad.namespace == ws.namespace) & (cad.pod == name)]
            ooms = float(mine.value.max()) if len(mine) else 0.0
            time.sleep(0.5)
        evs = [e for e in workloads.read_events(ws.logs(name)) if e["event"] in ("baseline", "spike", "survived")]
        if not survived and not any(e["event"] == "spike" for e in evs):  # restarted since: the killed run is the previous
            evs = [e for e in workloads.read_events(ws.logs(name, previous=True)) if e["event"] in ("baseline", "spike")]
    program = [{"time": pd.Timestamp(e["t"], unit="s", tz="UTC"), "bytes": base + (spike if e["event"] != "baseline" else 0),
                "source": "what the program asked for"} for e in evs]
    df = pd.DataFrame(program + seen, columns=["time", "bytes", "source"]).drop_duplicates(subset=["time", "source"]).sort_values("time")
    limit_b = parse_bytes(limit)
    stamps = sorted({s["time"] for s in seen})
    spacing = pd.Series(stamps).diff().dt.total_seconds().median() if len(stamps) >= 2 else math.nan
    top_max = max((s["bytes"] for s in seen), default=None)
    shown = (f"kubectl top never showed more than {mib(top_max)} for this pod ({top_max / limit_b:.0%} of its {limit} limit)"
             if top_max is not None else "kubectl top showed no reading for this pod")
    cadence = (f"its readings came {spacing:.1f} s apart (median of {len(stamps)} distinct sample times)" if spacing == spacing
               else f"fewer than two distinct readings arrived ({len(stamps)})")
    start = next((e["t"] for e in evs if e["event"] == "spike"), None)
    assumed = "" if known else f" The metrics API's window was unknown, so the pod waited {after:.0f} s at its baseline, as for a 15 s window."
    if survived:
        finding = (f"{shown}; the spike to {mib(base + spike)} ran to completion and the container was not killed"
                   + (f": {cluster.limits_note}" if cluster.limits_note else "") + f"; {cadence}.{assumed}")
        return Result(df, figures.timeseries(df.assign(MiB=df.bytes / MiB), "MiB", color="source", title="A spike between two samples",
                                             hlines={f"limit {limit}": limit_b / MiB}),
                      finding, {"oom_events": ooms, "top_max": top_max, "exit_code": None})
    lasted = (term.finished_at.timestamp() - start) if start is not None and term.finished_at is not None else None
    length = (f"the spike to {mib(base + spike)} lasted at most {max(lasted, 0) + 1:.1f} s, from the program's 'spike' line to "
              "the kill (finishedAt is in whole seconds)" if lasted is not None else f"the spike to {mib(base + spike)} ended in a kill")
    compare = ""
    if lasted is not None and spacing == spacing:
        compare = (": the spike was shorter than the spacing of the readings" if max(lasted, 0) + 1 < spacing
                   else ": the spike was not shorter than the spacing of the readings, yet no reading caught it")
    finding = (f"{shown}, yet its container was {term.reason} (exit code {term.exit_code}); {length}, {cadence}{compare}. "
               f"The cgroup's OOM counter, container_oom_events_total, reads {ooms:.0f}.{assumed}")
    fig = figures.timeseries(df.assign(MiB=df.bytes / MiB), "MiB", color="source", title="A spike between two samples",
                             hlines={f"limit {limit}": limit_b / MiB})
    return Result(df, fig, finding, {"oom_events": ooms, "top_max": top_max, "exit_code": term.exit_code,
                                     "spike_seconds": lasted, "reading_spacing_seconds": spacing,
                                     "namespace": ws.namespace, "pod": name})


# -- the HorizontalPodAutoscaler: each lag in the chain ---------------------------------------------------

# Each pod is idle until LOAD_FROM (epoch s), burns CORES until LOAD_UNTIL, then idles again: a load step that every
# replica gets, new ones included (a per-pod load; it does not spread over replicas as a Service's requests would).
# The burn steers by the process's own CPU clock, so it uses CORES whatever sleeping and scheduling cost.
_LOAD_STEP = workloads._PRELUDE + """
def burn(cores, seconds):
    t0, c0 = time.monotonic(), time.process_time()
    while (now := time.monotonic()) < t0 + seconds:
        if time.process_time() - c0 < cores * (now - t0):
            x = time.perf_counter()
            while time.perf_counter() - x < 0.002:
                pass
        else:
            time.sleep(0.005)
on, off, cores = float(os.environ["LOAD_FROM"]), float(os.environ["LOAD_UNTIL"]), float(os.environ["CORES"])
emit(event="start")
while time.time() < on:
    time.sleep(min(0.1, max(0.0, on - time.time())))
if time.time() < off:
    emit(event="load", cores=cores)
    burn(cores, off - time.time())
emit(event="idle")
while True:
    time.sleep(3600)
"""


@dataclass
class HPAParams:
    """What the HPA experiment sets up: a Deployment whose pods request ``request`` CPU and burn ``cores`` between
    ``load_from`` and ``load_from + load_seconds`` seconds after it is created; an HPA with ``target`` percent of
    request, ``min_replicas``..``max_replicas``, and ``behavior.scaleDown.stabilizationWindowSeconds`` = ``window``."""

    request: str = "50m"
    cores: float = 0.1
    target: int = 50
    min_replicas: int = 1
    max_replicas: int = 4
    load_from: float = 10.0
    load_seconds: float = 30.0
    window: int = 20


def hpa_manifests(name: str, p: HPAParams, load_at: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment and the HorizontalPodAutoscaler (autoscaling/v2), as plain manifests any cluster takes."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "kperflab"}
    env = {"LOAD_FROM": f"{load_at:.3f}", "LOAD_UNTIL": f"{load_at + p.load_seconds:.3f}", "CORES": p.cores}
    container = {"name": "main", "image": workloads.IMAGE, "command": ["python", "-c", _LOAD_STEP],
                 "env": [{"name": k, "value": str(v)} for k, v in env.items()],
                 "resources": {"requests": {"cpu": workloads.quantity(p.request, "request"), "memory": "32Mi"},
                               "limits": {"cpu": "1", "memory": "64Mi"}}}
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
           "spec": {"replicas": p.min_replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                    "template": {"metadata": {"labels": labels},
                                 "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}}}}
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name, "labels": labels},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": p.min_replicas, "maxReplicas": p.max_replicas,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                        "type": "Utilization", "averageUtilization": p.target}}}],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": p.window}}}}
    return dep, hpa


def _ts(t: Any) -> float | None:
    """A client timestamp (datetime or RFC 3339 string) → epoch seconds."""
    if t is None:
        return None
    if isinstance(t, str):
        return pd.Timestamp(t).timestamp()
    return t.timestamp()


def _ready_at(pod: Any) -> float | None:
    for c in pod.status.conditions or []:
        if c.type == "Ready" and c.status == "True":
            return _ts(c.last_transition_time)
    return None


def _fmt(seconds: float | None) -> str:
    return f"{seconds:.1f} s" if seconds is not None else "not measured"


def _hpa_lags(p: HPAParams, load_on: float | None, load_off: float | None, readings: list[dict[str, Any]],
              scale: list[dict[str, Any]], pods: list[dict[str, Any]],
              statuses: list[dict[str, Any]] | None = None) -> dict[str, float | None]:
    """The chain's lags from the run's timestamps (epoch s). ``readings``: metrics API readings (sample time ``t``,
    ``window`` s, ``util`` % of request, ``seen`` when the poll first saw it); ``scale``: observed spec.replicas
    changes (``seen``, ``from``, ``to``); ``pods``: created/ready times of the pods."""
    out: dict[str, float | None] = dict.fromkeys((
        "sample", "served", "hpa_sync", "pod_start", "up_total", "down_sample", "down_decision", "down_total", "held",
        "window_s", "early", "pre_util"))
    up = next((s for s in scale if s["to"] > s["from"]), None)
    if load_on is not None:
        # the metrics API's timestamps are whole seconds (truncated): a sample stamped t was taken in [t, t + 1)
        first = next((r for r in readings if r["t"] + 1 > load_on and r["util"] > p.target), None)
        if up is not None and up["seen"] < load_on:
            out["early"] = load_on - up["seen"]  # scaled up before the load: something else crossed the target
            out["pre_util"] = max((r["util"] for r in readings if r["t"] <= load_on), default=None)
            up = None
        if first is not None:
            out["sample"] = max(0.0, first["t"] - load_on)  # the next kubelet sample + enough of the window under load
            out["served"] = max(0.0, first["seen"] - first["t"])  # until the metrics API served it (our poll: ±0.5 s)
            out["window_s"] = first["window"]
            if up is not None:
                out["hpa_sync"] = max(0.0, up["seen"] - first["seen"])
        if up is not None:
            new = [q for q in pods if q["created"] is not None and q["created"] >= up["seen"] - 2 and q["ready"] is not None]
            if new:
                out["pod_start"] = max(q["ready"] - q["created"] for q in new)
                out["up_total"] = max(0.0, max(q["ready"] for q in new) - load_on)
    down = next((s for s in scale if s["to"] < s["from"] and load_off is not None and s["seen"] > load_off), None)
    if load_off is not None:
        low = next((r for r in readings if r["t"] > load_off and r["util"] <= p.target), None)
        if low is not None:
            out["down_sample"] = low["seen"] - load_off
            if down is not None:
                out["down_decision"] = down["seen"] - low["seen"]
        if down is not None:
            out["down_total"] = down["seen"] - load_off
            # a sync that kept the replicas although the metrics were low: the stabilisation window at work
            held = next((s for s in statuses or [] if load_off < s["seen"] < down["seen"]
                         and s.get("able") == "ScaleDownStabilized"), None)
            if held is not None:
                out["held"] = held["seen"] - load_off
    return out


@carry_on
def autoscaling(cluster: Any, ws: Any = None, params: HPAParams | None = None, poll: float = 0.5,
                progress: bool = True) -> Result:
    """A Deployment with a CPU request, an HPA on it (autoscaling/v2, a short scale-down stabilisation window set in
    its ``behavior``), and a load step: scale up, then down. Every lag of the chain is measured from this run's
    timestamps: the kubelet's sample and the metrics API's window, the HPA's sync, pod start; then the scale-down
    after the load ends."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from kubernetes.utils import parse_quantity
    from tqdm.auto import tqdm

    from ..cluster import translate

    p = params or HPAParams()
    name = "autoscaled"
    with _own(cluster, ws, "autoscaling") as ws:
        apps, auto = client.AppsV1Api(cluster.api), client.AutoscalingV2Api(cluster.api)
        ns, selector = ws.namespace, f"app.kubernetes.io/name={name}"
        t0 = time.time()
        dep, hpa = hpa_manifests(name, p, t0 + p.load_from)
        created: list[str] = []
        try:
            try:
                apps.create_namespaced_deployment(ns, dep, _request_timeout=cluster.timeout)
                created.append("deployment")
                auto.create_namespaced_horizontal_pod_autoscaler(ns, hpa, _request_timeout=cluster.timeout)
                created.append("hpa")
            except ApiException as exc:
                if exc.status == 404:
                    return Result.skip(f"this cluster does not serve {'apps/v1 Deployments' if not created else 'autoscaling/v2'}"
                                       f" ({exc.status} {exc.reason})")
                raise translate(exc, cluster.conn.server, verb="create",
                                resource="horizontalpodautoscalers" if created else "deployments") from None
            rows: list[dict[str, Any]] = []
            readings: dict[float, dict[str, Any]] = {}
            scale: list[dict[str, Any]] = []
            statuses: list[dict[str, Any]] = []
            last_spec: int | None = None
            seen_pods: dict[str, dict[str, Any]] = {}
            load_log: list[dict[str, Any]] = []
            load_until = t0 + p.load_from + p.load_seconds
            # long enough for: metrics to see the end of the load, two HPA syncs, the window, one more sync
            deadline = load_until + 3 * 15 + p.window + 30
            total = round(deadline - t0)
            with tqdm(total=total, desc="HPA: load step, scale up and down", unit="s", disable=quiet(progress), leave=False) as bar:
                while time.time() < deadline:
                    now = time.time()
                    d = apps.read_namespaced_deployment(name, ns, _request_timeout=cluster.timeout)
                    h = auto.read_namespaced_horizontal_pod_autoscaler(name, ns, _request_timeout=cluster.timeout)
                    spec_r, ready_r = d.spec.replicas, d.status.ready_replicas or 0
                    if last_spec is not None and spec_r != last_spec:
                        scale.append({"seen": now, "from": last_spec, "to": spec_r})
                    last_spec = spec_r
                    hst = h.status
                    util = None
                    for m in (hst.current_metrics or []) if hst else []:
                        if m.resource is not None and m.resource.current is not None:
                            util = m.resource.current.average_utilization
                    able = next((c.reason for c in (hst.conditions or []) if c.type == "AbleToScale"), None) if hst else None
                    statuses.append({"seen": now, "util": util, "desired": hst.desired_replicas if hst else None,
                                     "current": hst.current_replicas if hst else None, "able": able})
                    for q in cluster.core.list_namespaced_pod(ns, label_selector=selector,
                                                              _request_timeout=cluster.timeout).items:
                        # kept as first seen: a scale-down may delete any of them, the first one included
                        info = seen_pods.setdefault(q.metadata.name, {"name": q.metadata.name, "ready": None,
                                                                      "created": _ts(q.metadata.creation_timestamp)})
                        info["ready"] = info["ready"] or _ready_at(q)
                    if not load_log and now > load_until + 1 and seen_pods:
                        load_log = _first_log(ws, seen_pods)
                    rows += [{"time": now, "series": "replicas (Deployment spec)", "value": spec_r},
                             {"time": now, "series": "replicas (ready)", "value": ready_r}]
                    if util is not None:
                        rows.append({"time": now, "series": "utilisation, HPA status (%)", "value": util})
                    items = cluster.pod_metrics(ns, selector=selector)
                    if items:
                        top = metrics.top_frame(items)
                        used = float(top.cpu_cores.sum())
                        req = len(top) * float(parse_quantity(p.request))
                        stamp = max(pd.Timestamp(i["timestamp"]).timestamp() for i in items)
                        if stamp not in readings:
                            window = max(_go_seconds(i.get("window", "")) for i in items)
                            readings[stamp] = {"t": stamp, "util": 100 * used / req, "window": window, "seen": now,
                                               "pods": len(top)}
                    done = (now > load_until and scale and scale[-1]["to"] < max(s["to"] for s in scale)
                            and spec_r == p.min_replicas)
                    bar.n = total if done else min(total, round(now - t0))  # done early: a full bar, not a red one
                    bar.refresh()
                    if done:
                        break
                    time.sleep(poll)
            pods = sorted(seen_pods.values(), key=lambda q: q["created"] or math.inf)
            evs = load_log or (_first_log(ws, seen_pods) if seen_pods else [])
            load_on = next((e["t"] for e in evs if e["event"] == "load"), None)
            load_off = next((e["t"] for e in evs if e["event"] == "idle"), None)
            hpa_events = [(e.reason, e.message, e.count) for e in cluster.core.list_namespaced_event(
                ns, field_selector=f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={name}",
                _request_timeout=cluster.timeout).items]
        finally:  # the HPA first (so it stops scaling), then the Deployment and its pods
            for what in reversed(created):
                try:
                    if what == "hpa":
                        auto.delete_namespaced_horizontal_pod_autoscaler(name, ns, _request_timeout=cluster.timeout)
                    else:
                        apps.delete_namespaced_deployment(name, ns, propagation_policy="Background", grace_period_seconds=0,
                                                          _request_timeout=cluster.timeout)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
    rows += [{"time": r["t"], "series": "utilisation, metrics API (%)", "value": r["util"]} for r in readings.values()]
    df = pd.DataFrame(rows)
    df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
    read = sorted(readings.values(), key=lambda r: r["t"])
    lags = _hpa_lags(p, load_on, load_off, read, scale, pods, statuses)
    synced = sorted({s["seen"] for s in _changes(statuses)})
    sync_gaps = [b - a for a, b in zip(synced, synced[1:], strict=False) if b - a > 5]
    during = [s["util"] for s in statuses if s["util"] is not None and load_on is not None and load_off is not None
              and load_on <= s["seen"] <= load_off + 15]
    peak_r = max((s["to"] for s in scale), default=p.min_replicas)
    fig = figures.autoscaling(df, p.target, load_on, load_off, title="An HPA under a load step")
    finding = _hpa_finding(p, lags, load_on, scale, peak_r, sync_gaps, hpa_events, readings)
    data = {"lags": lags, "params": p.__dict__, "scale": scale, "pods": pods, "events": hpa_events,
            "hpa_utilization": max(during) if during else None,  # the highest utilisation the HPA reported under load
            "sync_interval": float(pd.Series(sync_gaps).median()) if sync_gaps else None}
    return Result(df, fig, finding, data)


def _first_log(ws: Any, pods: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The load step's events from the oldest pod still there (its log: when the load began and ended)."""
    for q in sorted(pods.values(), key=lambda q: q["created"] or math.inf):
        try:
            evs = workloads.read_events(ws.logs(q["name"]))
        except ClusterUnreachable:
            raise
        except Exception:  # noqa: BLE001 - deleted by a scale-down meanwhile: the next one
            continue
        if any(e["event"] == "load" for e in evs):
            return evs
    return []


def _go_seconds(text: str) -> float:
    """A metrics API window (Go duration: "5.012s", "1m0s", "500ms") in seconds."""
    import re

    unit = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    return sum(float(n) * unit[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)", text or ""))


def _changes(statuses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The polls at which the HPA's status (utilisation, desired, current) changed: the syncs we can see."""
    out, last = [], None
    for s in statuses:
        key = (s["util"], s["desired"], s["current"])
        if last is not None and key != last:
            out.append(s)
        last = key
    return out


def _hpa_finding(p: HPAParams, lags: dict[str, float | None], load_on: float | None, scale: list[dict[str, Any]],
                 peak: int, sync_gaps: list[float], events: list[tuple[str, str, int]],
                 readings: dict[float, dict[str, Any]]) -> str:
    if load_on is None:
        return "The pods never logged the start of their load, so no lag can be measured."
    parts = []
    if lags["sample"] is None:
        seen = max((r["util"] for r in readings.values()), default=None)
        parts.append(f"No metrics API reading went above the {p.target}% target after the load began"
                     + (f" (the highest: {seen:.0f}%)" if seen is not None else " (there was no reading at all)") + ".")
    else:
        parts.append(f"The load began; {_fmt(lags['sample'])} later a kubelet sample averaged over a "
                     f"{lags['window_s']:.1f} s window crossed the {p.target}% target, and the metrics API served it "
                     f"{_fmt(lags['served'])} after that sample (its timestamps are whole seconds; we polled every 0.5 s).")
    up = next((s for s in scale if s["to"] > s["from"]), None)
    if lags.get("early") is not None:
        pre = lags.get("pre_util")
        parts.append(f"The HPA scaled up {lags['early']:.1f} s before the load began, so this run cannot time the chain: "
                     + (f"a reading before the load already showed {pre:.0f}% of the request."
                        if pre is not None else "no reading before the load explains it."))
    elif up is None:
        warn = [f"{r}: {m}" for r, m, _ in events if r != "SuccessfulRescale"]
        parts.append("The HPA did not scale up" + (f"; it said {warn[-1]}" if warn else "") + ".")
    else:
        parts.append(f"The HPA acted {_fmt(lags['hpa_sync'])} after that reading (it syncs every 15 s"
                     + (f"; its status changed every {pd.Series(sync_gaps).median():.1f} s here (median)" if sync_gaps else "")
                     + f") and set {up['from']} → {up['to']} replicas, {peak} at most (maxReplicas {p.max_replicas}).")
        start = "under 1 s" if lags["pod_start"] == 0 else _fmt(lags["pod_start"])
        parts.append(f"The slowest new pod took {start} from creation to Ready (API times, whole seconds); "
                     f"from load to the last new pod Ready: {_fmt(lags['up_total'])}.")
    down = next((s for s in scale if s["to"] < s["from"]), None)
    if lags["down_sample"] is not None:
        window = f"the {p.window} s scale-down stabilisation window its behavior sets; the default is 300 s"
        if down is None or lags["down_total"] is None:
            tail = f"; the HPA had not scaled down when the run ended ({window})."
        elif lags["held"] is not None:
            tail = (f"; at its sync {_fmt(lags['held'])} after the load ended the HPA kept {down['from']} replicas "
                    f"(AbleToScale: ScaleDownStabilized: a higher recommendation was still inside {window}) and scaled "
                    f"down to {down['to']} {_fmt(lags['down_total'])} after the load ended.")
        else:
            tail = (f"; the HPA scaled down to {down['to']} {_fmt(lags['down_total'])} after the load ended; none of its "
                    f"syncs was held by {window}.".replace("; the default is 300 s.", " (the default is 300 s)."))
        parts.append(f"After the load ended the metrics API showed it {_fmt(lags['down_sample'])} later" + tail)
    return " ".join(parts)


def lag_table(result: Result) -> pd.DataFrame:
    """The HPA experiment's lags, one row per link of the chain, with what bounds each one."""
    lags, p = result.data.get("lags") or {}, result.data.get("params") or {}
    sync = result.data.get("sync_interval")
    rows = [("load → kubelet sample over target", lags.get("sample"),
             "the next sample (metrics resolution) and enough of its window under load"
             + (f"; window here {lags['window_s']:.1f} s" if lags.get("window_s") else "")),
            ("sample → served by metrics.k8s.io", lags.get("served"),
             "metrics-server's scrape; our polling adds up to 0.5 s; the API's timestamps are whole seconds"),
            ("served → HPA rescales", lags.get("hpa_sync"), "the HPA's sync period: 15 s, kube-controller-manager's default"
             + (f"; seen here every {sync:.1f} s" if sync else "")),
            ("rescale → new pods Ready", lags.get("pod_start"), "scheduling, image, container start (API times, whole seconds)"),
            ("load → last new pod Ready", lags.get("up_total"), "the whole chain up"),
            ("load ends → metrics API shows it", lags.get("down_sample"), "resolution and window again"),
            ("load ends → a sync held the replicas", lags.get("held"),
             f"the scale-down stabilisation window: {p.get('window', '?')} s in this HPA's behavior (default 300 s)"),
            ("load ends → HPA scales down", lags.get("down_total"), "the window, then the next sync")]
    return pd.DataFrame([{"link": k, "seconds": None if s is None else round(s, 1),
                          "measured": "yes" if s is not None else "no (see the finding)", "bounded by": b} for k, s, b in rows])


# -- the same workload through Prometheus ------------------------------------------------------------------

def _prom_series(cluster: Any, query: str, start: float, end: float, step: float) -> pd.DataFrame:
    """A range query summed into one series (time, value); empty when Prometheus has no sample."""
    import warnings

    from ..promql import PromQLWarning

    with warnings.catch_warnings():  # an empty answer is expected here (and said in the finding), not a warning
        warnings.simplefilter("ignore", PromQLWarning)
        df = cluster.promql(query, start=start, end=end, step=step)
    if df.empty:
        return pd.DataFrame({"time": pd.Series(dtype="datetime64[ms, UTC]"), "value": pd.Series(dtype=float)})
    return df.groupby("time", as_index=False)["value"].sum()


def _first_at_least(df: pd.DataFrame, level: float, after: pd.Timestamp) -> float:
    hit = df[(df.time >= after) & (df.value >= level)]
    return (hit.time.iloc[0] - after).total_seconds() if len(hit) else math.nan


def prometheus_spinner(name: str = "spinner", phases: tuple[tuple[float, float], ...] = ((0.05, 30), (1.0, 120)),
                       limit: str = "500m") -> dict[str, Any]:
    """`prometheus_view`'s pod: idle, then a whole core wanted under ``limit`` (requests 100m)."""
    return workloads.cpu_phases(name, phases, cpu_limit=limit, cpu_request="100m")


@carry_on
def prometheus_view(cluster: Any, ws: Any = None, limit: str = "500m", phases: tuple[tuple[float, float], ...] = ((0.05, 30), (1.0, 120)),
                    window: str = "1m", poll: float = 2.0, oom_from: Result | None = None, progress: bool = True) -> Result:
    """One pod that idles, then wants a whole core under a ``limit``, seen by `kubectl top` (the metrics API, polled
    every ``poll`` s) and by PromQL over Prometheus' scrapes of the kubelet's ``/metrics/cadvisor``: CPU as
    ``rate(container_cpu_usage_seconds_total[window])``, the throttled share of CFS periods, the throttled seconds
    and the working set; and, given section 5's spike (``oom_from``), what Prometheus kept of its OOM kill. The
    counters are also read directly from the kubelet, so the exercise's answer (a PromQL query) is judged against
    the cgroup's own numbers, not against Prometheus."""
    from kubernetes.utils import parse_quantity

    from .. import promql

    found = promql.targets(cluster)  # no Prometheus: PrometheusUnavailable, and the section says why it is skipped
    cad = [t for t in found if str(t.get("scrapeUrl", "")).endswith("/metrics/cadvisor")]
    if not cad:
        raise MetricsUnavailable(f"Prometheus ({cluster.prometheus_source})", None,
                                 hint="Its configuration has no target scraping the kubelets' /metrics/cadvisor: add the "
                                      "node job of kperflab/manifests/prometheus.yaml.")
    interval = promql.parse_duration(str(cad[0].get("scrapeInterval") or "15s"))
    up = sum(t.get("health") == "up" for t in cad)
    cap = float(parse_quantity(limit))
    with _own(cluster, ws, "prometheus") as ws:
        from tqdm.auto import tqdm

        name = "spinner"
        ws.run(prometheus_spinner(name, phases, limit), progress=progress)
        spec = ws.pod(name).spec
        node, container = spec.node_name, spec.containers[0].name
        total = sum(sec for _, sec in phases)
        t_end = time.monotonic() + total + 1  # queries at a time T use the scrapes before T: no need to wait for one more
        top: dict[pd.Timestamp, tuple[float, float]] = {}
        direct: dict[float, float] = {}  # the kubelet's sample time → the cgroup's CPU seconds, read without Prometheus
        with tqdm(total=round(total + 1), desc="the spinner, seen by kubectl top and by Prometheus", unit="s",
                  disable=quiet(progress), leave=False) as bar:
            while time.monotonic() < t_end:
                try:
                    for r in cluster.top_pods(ws.namespace).itertuples():
                        if r.name == name:
                            top[pd.Timestamp(r.timestamp)] = (r.cpu_millicores / 1000, r.memory_bytes)
                except MetricsUnavailable:
                    pass  # Prometheus without a metrics API: the comparison says so
                cadv = cluster.cadvisor(node, ["container_cpu_usage_seconds_total"])
                mine = cadv[(cadv.namespace == ws.namespace) & (cadv.pod == name) & (cadv.container == container)]
                for row in mine.itertuples():
                    t = row.timestamp
                    direct[t.timestamp() if not pd.isna(t) else time.time()] = float(row.value)
                bar.n = min(bar.total, round(total + 1 - (t_end - time.monotonic())))
                bar.refresh()
                time.sleep(poll)
        evs = [e for e in workloads.read_events(ws.logs(name)) if e["event"] in ("phase", "done")]
        ns = ws.namespace
    started = evs[0]["t"] if evs else min(direct, default=time.time() - total)
    load_at = evs[1]["t"] if len(evs) > 1 else started + phases[0][1]
    end = max(direct, default=time.time())
    step = max(1.0, interval / 3)
    # both kubelet endpoints export container_cpu_usage_seconds_total and the working set: keep cAdvisor's (the
    # metrics_path label, as kube-prometheus-stack's kubelet jobs and kperflab's manifest set it)
    sel = f'namespace="{ns}", pod="{name}", container="{container}", metrics_path="/metrics/cadvisor"'
    queries = {
        "cores": f"rate(container_cpu_usage_seconds_total{{{sel}}}[{window}])",
        "throttled share": f"rate(container_cpu_cfs_throttled_periods_total{{{sel}}}[{window}]) / "
                           f"rate(container_cpu_cfs_periods_total{{{sel}}}[{window}])",
        "working set": f"container_memory_working_set_bytes{{{sel}}}",
        "throttled seconds": f"container_cpu_cfs_throttled_seconds_total{{{sel}}}",
    }
    q = {k: _prom_series(cluster, v, started - interval, end + interval, step) for k, v in queries.items()}
    if q["cores"].empty:
        raise ExperimentFailed("read the spinner from Prometheus",
                               f"no rate of its CPU counter came back; Prometheus scrapes every {interval:g} s and rate() "
                               f"needs two scrapes within {window}", hint="Check Prometheus' targets page for errors.")
    t_load = pd.Timestamp(load_at, unit="s", tz="UTC")
    rows = [{"time": t, "cores": c, "source": "kubectl top (metrics API)"} for t, (c, _) in sorted(top.items())]
    pts = sorted(direct.items())
    rows += [{"time": pd.Timestamp(b[0], unit="s", tz="UTC"), "cores": (b[1] - a[1]) / (b[0] - a[0]),
              "source": "cgroup counter, read directly"} for a, b in zip(pts, pts[1:], strict=False) if b[0] > a[0]]
    rows += [{"time": r.time, "cores": r.value, "source": f"PromQL rate(…[{window}]), scraped every {interval:g} s"}
             for r in q["cores"].itertuples()]
    df = pd.DataFrame(rows)
    thr = q["throttled share"].rename(columns={"value": "throttled_share"})
    # the exercise's truth: CPU seconds per second over the `window` that ends just before the load does (all load
    # when the load is longer than the window), from the kubelet's counter read directly
    span = promql.parse_duration(window)
    at = load_at + (phases[-1][1] if len(phases) > 1 else total) - 2
    before = [(t, v) for t, v in pts if t <= at]
    early = [(t, v) for t, v in before if t <= at - span] or before[:1]
    truth = ((before[-1][1] - early[-1][1]) / (before[-1][0] - early[-1][0])
             if len(before) >= 2 and before[-1][0] > early[-1][0] else None)
    half = cap / 2
    lag_top = _first_at_least(df[df.source.str.startswith("kubectl")].rename(columns={"cores": "value"}), half, t_load)
    lag_prom = _first_at_least(q["cores"], half, t_load)
    full_prom = _first_at_least(q["cores"], 0.9 * cap, t_load)
    load_s = phases[-1][1] if len(phases) > 1 else total
    t_off = t_load + pd.Timedelta(seconds=load_s)
    on_load = q["cores"][(q["cores"].time >= t_load + pd.Timedelta(seconds=span)) & (q["cores"].time <= t_off)]
    during = q["cores"][(q["cores"].time >= t_load) & (q["cores"].time <= t_off + pd.Timedelta(seconds=interval))]
    plateau = float(on_load.value.median()) if len(on_load) else float(during.value.max()) if len(during) else math.nan
    top_max = max((c for t, (c, _) in top.items() if t >= t_load), default=math.nan)
    share = thr[thr.time >= t_load].throttled_share.dropna()
    share_v = float(share.median()) if len(share) else math.nan
    ts = q["throttled seconds"].value
    throttled_s = float(ts.iloc[-1] - ts.iloc[0]) if len(ts) >= 2 else math.nan
    wset = q["working set"].value
    top_mem = [m for _, m in top.values()]
    scrapes = round((end - started) / interval)

    def secs(x: float) -> str:
        return f"{x:.0f} s" if x == x else "not within the run"

    finding = (f"The spinner idled for {phases[0][1]:g} s, then wanted a whole core under limits.cpu {limit}. After the load began, "
               f"kubectl top showed half the limit {secs(lag_top)} later; PromQL's rate over {window} took {secs(lag_prom)}, and "
               f"{secs(full_prom)} to reach 90 % of the limit: each point averages the last {window} of scrapes taken every "
               f"{interval:g} s (about {scrapes} scrapes in this run), so the step is smeared over the window. ")
    if on_load.empty:
        finding += (f"The load lasted {load_s:g} s, less than one {window} window, so no point of the rate covers load "
                    f"alone: it peaked at {plateau:.2f} cores, while kubectl top read up to {top_max:.2f} (limit {cap:g}). ")
    else:
        finding += (f"With a whole window of load the rate read {plateau:.2f} cores (median), kubectl top up to "
                    f"{top_max:.2f}, against the {cap:g}-core limit. ")
    finding += (f"Throttled: {share_v:.0%} of the CFS periods during the load, {throttled_s:.1f} s of throttled time in all "
                "(container_cpu_cfs_throttled_seconds_total), which the metrics API has no field for: kubectl top "
                "shows only usage. " if share_v == share_v else "Prometheus returned no throttling counters. ")
    if len(wset) and top_mem:
        finding += (f"Working set: {mib(float(wset.iloc[-1]))} by Prometheus, {mib(float(top_mem[-1]))} by kubectl top "
                    "(the same cAdvisor number). ")
    oom_note = ""
    oom_count = None
    if oom_from is not None and not oom_from.skipped and oom_from.data.get("namespace"):
        osel = f'namespace="{oom_from.data["namespace"]}", pod="{oom_from.data["pod"]}", metrics_path="/metrics/cadvisor"'
        spike_t = oom_from.frame.time
        s0, s1 = spike_t.min().timestamp() - interval, max(spike_t.max().timestamp() + 120, time.time() - 1)
        inc = _prom_series(cluster, f"increase(container_oom_events_total{{{osel}}}[5m])", s0, min(s1, time.time()), interval)
        seen = _prom_series(cluster, f"count_over_time(container_memory_working_set_bytes{{{osel}, container!=\"\"}}[30m])",
                            time.time() - 1, time.time(), 1)
        n_scrapes = int(seen.value.max()) if len(seen) else 0
        oom_count = float(inc.value.max()) if len(inc) else 0.0
        queries["OOM kills of section 5's spike"] = f"increase(container_oom_events_total{{{osel}}}[5m])"
        oom_note = (f"Section 5's spike pod: Prometheus scraped it {n_scrapes} time(s); "
                    + (f"increase(container_oom_events_total[5m]) peaked at {oom_count:.1f}"
                       + ("" if float(oom_count).is_integer() else
                          " (not a whole number: increase() extrapolates the counter to the window's edges)")
                       + ": the OOM kill `kubectl top` never showed is on record." if oom_count > 0 else
                       f"its OOM counter never rose between two scrapes: the container lived less than a scrape "
                       f"interval ({interval:g} s) around its kill, so a scrape-based history missed what the kubelet saw."))
        finding += oom_note
    if up < len(cad):
        finding += f" ({len(cad) - up} of {len(cad)} cAdvisor targets were down.)"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("CPU (cores)", f"throttled share of CFS periods (PromQL, {window})"))
    for src, part in df.groupby("source", sort=False):
        fig.add_trace(go.Scatter(x=part.time, y=part.cores, name=src, mode="lines+markers",
                                 line={"shape": "hv"} if src.startswith("PromQL") else {}), row=1, col=1)
    fig.add_hline(y=cap, line_dash="dash", annotation_text=f"limit {limit}", row=1, col=1)
    fig.add_vline(x=t_load, line_dash="dot", annotation_text="load begins")
    if not thr.empty:
        fig.add_trace(go.Scatter(x=thr.time, y=thr.throttled_share, name="throttled share", mode="lines",
                                 line={"shape": "hv"}, showlegend=False), row=2, col=1)
    fig.update_yaxes(range=[0, 1.05], row=2, col=1)
    fig = figures._finish(fig, "One pod, kubectl top and PromQL").update_layout(height=560)
    return Result(df, fig, finding, {"queries": queries, "namespace": ns, "pod": name, "container": container, "interval": interval,
                                     "window": window, "evaluate_at": at, "cores_last_window": truth,
                                     "throttled_seconds": throttled_s, "throttled_share": share_v, "plateau": plateau,
                                     "oom_count": oom_count, "lag_top": lag_top, "lag_prom": lag_prom})


def promql_value(cluster: Any, query: str | None, result: Result) -> float | None:
    """The learner's PromQL query evaluated at the time the check is about (``result.data["evaluate_at"]``): its single
    number, or None with one sentence printed (no query yet, Prometheus' own error, not exactly one series)."""
    from ..errors import BadInput

    if query is None or result.skipped:
        return None
    try:
        df = cluster.promql(query, end=result.data["evaluate_at"])
    except BadInput as exc:
        print(f"Prometheus could not run your query: {exc.message}")
        return None
    if len(df) != 1:
        labels = df.drop(columns=["time", "value"], errors="ignore")
        differ = [c for c in labels.columns if labels[c].nunique() > 1 and c not in ("id", "name")]  # what tells them apart
        series = ", ".join("{" + ", ".join(f'{k}="{v}"' for k, v in r.items() if v) + "}"
                           for r in labels[differ].to_dict("records")[:4]) if differ else ""
        print(f"Your query returned {len(df)} series{': ' + series if series else ''}; the check needs exactly one. "
              "Add labels that pick one (above: what differs between them).")
        return None
    return float(df.value.iloc[0])
