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

from .. import figures, metrics, workloads
from ..errors import ExperimentFailed, MetricsUnavailable, PermissionDenied
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
        with tqdm(total=round(total), desc="sampling three ways", unit="s", disable=not progress, leave=False) as bar:
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
        with tqdm(desc="watching kubectl top until the spike", bar_format="{desc} {elapsed}", disable=not progress, leave=False) as bar:
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
                                     "spike_seconds": lasted, "reading_spacing_seconds": spacing})
