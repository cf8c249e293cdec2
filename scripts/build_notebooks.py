"""Write notebooks/*.ipynb from the cell lists below (no outputs, kernel python3, a `parameters` cell first).

    .venv/bin/python scripts/build_notebooks.py

The notebooks are committed; tests/test_notebooks.py checks they match this script, so edit here and rebuild.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = {"jupyter": {"source_hidden": True}, "tags": ["solution"]}

CONNECT = """import kperflab
import kperflab.figures
from kperflab import exercises
from IPython.display import Markdown, display

kperflab.figures.setup_notebook()
cluster = kperflab.connect(kubeconfig, context, namespace)
print(cluster.describe())"""

FOUNDATIONS = [
    ("md", """# 01 · Foundations: code efficiency and resource availability

**You will learn to**
1. see how a CPU limit turns into CFS throttling, and measure what it does to request latency;
2. watch a container grow into its memory limit until the kernel kills it (`OOMKilled`, exit code 137);
3. measure how much memory the *same data* costs in different Python data structures;
4. find out how deep recursion goes in a pod and how it fails: an exception, an OOM kill or a crash;
5. read a node's allocatable, requested and used CPU and memory.

**Time:** about 30 minutes. **Needs:** a cluster (or the lab: `kperflab lab up`) where you may create namespaces and
pods; the cAdvisor readings need `nodes/proxy` (see `kperflab doctor`).
**Next:** 02 · Storage. Every number below is measured in this run, on the cluster you point at."""),
    ("params", """# Parameters (papermill injects its own values after this cell)
kubeconfig = None      # path to a kubeconfig; None: $KUBECONFIG, ~/.kube/config or the lab's
context = None         # a context in it; None: the current one
namespace = None       # None: the context's namespace (experiments make their own anyway)
quick = False          # True: smaller, faster runs (what CI uses)
solutions = False      # True: run the hidden solution cells and make the checks strict (CI)
cpu_limits = ("none", "1000m", "500m", "200m", "100m")
requests = 10          # requests per CPU limit
memory_limit = "64Mi"  # the limit the allocator grows into
integers = 2_000_000   # how many integers the data-structure pods hold"""),
    ("code", """if quick:
    cpu_limits, requests, integers = ("none", "500m", "100m"), 5, 2_000_000
""" + CONNECT),
    ("md", """## 1. CPU time: a limit is a quota per 100 ms

A CPU limit does not slow a container down evenly. The kernel's CFS bandwidth control gives the container's cgroup
a **quota** of CPU time per **period** (100 ms by default): `limits.cpu: 200m` means 20 ms per 100 ms. A request that
needs 50 ms of CPU runs for 20 ms, waits for the next period (*throttled*), and so on. Below, the same CPU-bound
request runs under several limits; latency comes from the program, throttling from the cgroup's own counters
(`container_cpu_cfs_throttled_periods_total / container_cpu_cfs_periods_total` from cAdvisor)."""),
    ("code", """from kperflab.experiments import foundations

cpu = foundations.cpu_limits(cluster, limits=cpu_limits, requests=requests)
cpu.show(table=True)"""),
    ("md", """### Exercise 1 — predict the quota
A container has `limits.cpu: 250m`. How many microseconds of CPU time will its cgroup get per 100 ms period
(`cpu.cfs_quota_us`, shown by cAdvisor as `container_spec_cpu_quota`)? The check cell starts such a pod and reads
the real value."""),
    ("code", """answer_quota_us = None  # your answer, a number"""),
    ("solution", """if solutions:
    answer_quota_us = 250 / 1000 * 100_000  # millicores / 1000 × period (100 000 µs)"""),
    ("code", """measured_quota, unavailable = foundations.measured_quota(cluster, "250m")  # starts the pod, reads cAdvisor"""),
    ("code", """exercises.check(answer_quota_us, measured_quota, unit="µs per 100 ms", strict=solutions, unavailable=unavailable,
                why="The kubelet writes limits.cpu × 100 000 µs into the cgroup (cpu.cfs_quota_us, or cpu.max on cgroup v2).")"""),
    ("md", """## 2. Memory: a limit is a wall

Memory cannot be throttled: when a container's cgroup reaches `limits.memory` and the kernel cannot reclaim enough,
the OOM killer ends a process in it. Kubernetes reports the container as `OOMKilled` with exit code 137 (128 + SIGKILL).
The pod below allocates and touches memory step by step; the figure shows what it says it allocated and the working
set cAdvisor sampled, against the limit."""),
    ("code", """oom = foundations.memory_oom(cluster, limit=memory_limit)
oom.show()"""),
    ("md", """## 3. Code efficiency: the same data in different structures

A Python `list` of integers holds pointers to separate `int` objects (28–32 bytes each, plus 8 for the pointer);
`array.array` and a packed `bytearray` hold the raw 4-byte values; NumPy too, where the image has it. Each pod
below holds the same integers under the same memory limit."""),
    ("code", """ds = foundations.data_structures(cluster, n=integers, limit=memory_limit)
ds.show(table=True)"""),
    ("md", """### Exercise 2 — bytes per element
From the table above: how many bytes of working set per integer did the **array** pod use (working set ÷ number of
integers)? The whole process counts, interpreter included, so it is a bit more than 4. The check compares your answer
with a second reading of the same pod's working set, taken later through the metrics API (what `kubectl top` reads)."""),
    ("code", """answer_bytes_per_int = None  # a number"""),
    ("solution", """if solutions:
    answer_bytes_per_int = ds.value("array", "working_set_mib") * 2**20 / integers"""),
    ("code", """second_bytes_per_int, unavailable = foundations.second_reading(ds, "array")"""),
    ("code", """exercises.check(answer_bytes_per_int, second_bytes_per_int, tolerance=0.25, unit="bytes per integer",
                strict=solutions, unavailable=unavailable,
                why="4 bytes of data per integer; the rest is the interpreter itself, spread over the elements.")"""),
    ("md", """## 4. Stack depth: how recursion fails in a pod

Python stops runaway recursion with its *recursion limit* (a `RecursionError` you can catch). Lift the limit and
Python frames live in memory, so the container's memory limit ends it. Recursion that passes through C code uses the
thread's C stack instead; when that runs out the process dies of `SIGSEGV`, which Kubernetes shows as exit code 139."""),
    ("code", """stack = foundations.stack_depth(cluster, stacks=(256 << 10, 1 << 20) if quick else (256 << 10, 1 << 20, 4 << 20))
stack.show(table=True)"""),
    ("md", """## 5. Resource availability: allocatable, requested, used

The scheduler places pods by their **requests** against each node's **allocatable** (capacity minus what the
kubelet reserves); the metrics API reports what is **used**. The three rarely agree."""),
    ("code", """avail = foundations.availability(cluster)
avail.show(table=True)"""),
    ("md", """## Recap

- A CPU limit is a quota per CFS period: work longer than the quota waits for the next period, so latency grows in
  steps, far more than the limit's ratio suggests for bursty work. Throttling shows in `cpu.stat` (`nr_throttled`).
- Memory limits are enforced by the OOM killer: `OOMKilled`, exit code 137; the metrics you sample may never show
  the peak.
- Data structures decide the memory bill: a list of ints costs several times an `array.array` of the same numbers.
- Recursion fails three ways: a catchable exception, an OOM kill, or a stack-overflow crash (exit code 139).

Read more: [Resource management for pods and containers](https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/) ·
[Assign CPU resources](https://kubernetes.io/docs/tasks/configure-pod-container/assign-cpu-resource/) ·
[Assign memory resources](https://kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource/) ·
[Pod quality of service classes](https://kubernetes.io/docs/concepts/workloads/pods/pod-qos/) ·
[Node allocatable](https://kubernetes.io/docs/tasks/administer-cluster/reserve-compute-resources/)"""),
]

MEASURING = [
    ("md", """# 04 · Measuring: the resource-metrics pipeline

![The metrics pipeline](../images/metrics-pipeline.png)

**You will learn to**
1. read every stage of the pipeline for one workload: cAdvisor in the kubelet → `/stats/summary`,
   `/metrics/resource`, `/metrics/cadvisor` → metrics-server → `metrics.k8s.io` → `kubectl top`;
2. reproduce `kubectl top`'s numbers exactly, rounding included;
3. see the metrics API's window and resolution lag against the cgroup counters;
4. tell working set, RSS and page cache apart — and why `kubectl top` can show little before an `OOMKilled`.

**Time:** about 30 minutes. **Needs:** a cluster with `metrics.k8s.io` (metrics-server, or the lab) and `nodes/proxy`
for the kubelet endpoints. Facts below are for Kubernetes 1.37 (metrics.k8s.io v1 is GA there; metrics-server 0.9
serves v1beta1). **Previous:** 03 · Networking."""),
    ("params", """# Parameters (papermill injects its own values after this cell)
kubeconfig = None
context = None
namespace = None
quick = False
solutions = False
phases = ((0.2, 20), (1.0, 20), (0.3, 15))   # (cores, seconds) of the changing load
cache_mib = 256                              # page cache to fill"""),
    ("code", """if quick:
    phases, cache_mib = ((0.2, 8), (1.0, 10), (0.3, 5)), 128
""" + CONNECT + """
from kperflab.experiments import measuring
ws = cluster.workspace("measuring").open()  # for the burner several cells read; deleted in the last cell (or at kernel exit, or by `kperflab clean`)"""),
    ("md", """## 1. One workload, every stage

A CPU burner uses half a core. Below: a few lines of what each stage serves for it, raw, then the same parsed into
tables. The values agree because each stage reads the one before it: the Summary and `/metrics/resource` share the
kubelet's sample time; metrics-server turns two of those samples into a rate over its **window**."""),
    ("code", """st = measuring.stages(cluster, ws)
if st.skipped:
    display(Markdown(f"**Skipped here:** {st.skipped}"))
for stage, text in st.raw.items():
    print(f"── {stage}"); print(text[:1500])"""),
    ("code", """for stage, frame in st.frames.items():
    display(Markdown(f"**{stage}**")); display(frame)"""),
    ("md", """## 2. `kubectl top` by hand

`kubectl top` prints CPU as `MilliValue()` (rounded **up** to a millicore) and memory as bytes ÷ 2²⁰ rounded
**down**. `top_pods()` does the same; here both read the metrics API at the same moment."""),
    ("code", """same = measuring.top_vs_kubectl(cluster, ws.namespace)
display(same.frame); display(Markdown(f"**{'Skipped here' if same.skipped else 'Measured'}:** {same.skipped or same.finding}"))"""),
    ("md", """### Exercise 1 — the Mi that kubectl prints
The metrics API reports the burner's memory (its working set) in bytes, printed below. What does `kubectl top` print
in its MEMORY column for that many bytes (a whole number of Mi)? The check runs `kubectl top pod` on the same sample
and compares your answer with what kubectl printed."""),
    ("code", """top = measuring.kubectl_top_memory(cluster, ws.namespace, "pipeline")
print(f"the metrics API: {top.bytes} bytes" if top.bytes is not None else f"no reading: {top.unavailable}")
answer_mib = None  # a whole number"""),
    ("solution", """if solutions:
    answer_mib = top.bytes // 2**20"""),
    ("code", """exercises.check(answer_mib, top.kubectl_mib, unit="Mi", strict=solutions, unavailable=top.unavailable,
                why="kubectl divides the bytes by 1024 × 1024 and drops the fraction.")"""),
    ("md", """## 3. A changing load, seen three ways

The pod below changes its CPU use in phases. We poll every second: what the program does (its own log), the cgroup
counter as a rate between two kubelet samples, and the metrics API. The API's value is an average over its window
and only changes once per resolution, so it lags behind the counters."""),
    ("code", """load = measuring.changing_load(cluster, phases=phases)  # in a workspace of its own
load.show()"""),
    ("md", """### Exercise 2 — a rate from two readings
Two consecutive readings of the burner's `container_cpu_usage_seconds_total` (cumulative CPU seconds) with the
kubelet's sample times are printed below. How many cores did it use between them?"""),
    ("code", """r = measuring.two_readings(cluster, ws)
if r.first is not None:
    print(f"t1 = {r.first.time}, cpu = {r.first.cpu_seconds_total:.6f} s")
    print(f"t2 = {r.second.time}, cpu = {r.second.cpu_seconds_total:.6f} s")
answer_cores = None  # a number of cores"""),
    ("solution", """if solutions:
    answer_cores = (r.second.cpu_seconds_total - r.first.cpu_seconds_total) / (r.second.time - r.first.time).total_seconds()"""),
    ("code", """exercises.check(answer_cores, r.program_cores, tolerance=0.05, unit="cores", strict=solutions, unavailable=r.unavailable,
                why="Δ CPU seconds ÷ Δ seconds between the kubelet's sample times, the rate kubectl top and HPA see. "
                    "The check measured it by the burner's own CPU clock over the same interval.")"""),
    ("md", """## 4. Working set, RSS and page cache

`kubectl top` and the eviction manager use the **working set**: memory usage minus *inactive* page cache. Page cache
that was read more than once is *active* and counts. The pod below writes a file and reads it twice."""),
    ("code", """cache = measuring.page_cache(cluster, size=cache_mib * 2**20)
cache.show(table=True)"""),
    ("md", """## 5. OOMKilled although `kubectl top` showed little

The metrics API samples; a spike between two samples is invisible to it. The cgroup counts every OOM kill, though:
cAdvisor exposes that as `container_oom_events_total`, and the pod's status says `OOMKilled`."""),
    ("code", """spike = measuring.short_spike(cluster)
spike.show()"""),
    ("md", """## 6. A live dashboard

For people: a live `kubectl top` of this workspace (start/stop, refresh interval). Run headless (papermill, CI),
it shows one snapshot instead."""),
    ("code", """from kperflab.widgets import live_top

live_top(cluster, namespace=ws.namespace)"""),
    ("md", """## Recap

- The pipeline is cgroups → cAdvisor (kubelet) → `/metrics/resource` → metrics-server → `metrics.k8s.io` → `kubectl top`,
  HPA, VPA. `/metrics/cadvisor` and `/stats/summary` carry more (throttling, RSS, cache, OOM events) for Prometheus.
- CPU in the metrics API is a rate over a window; it trails real changes by up to one resolution plus one window.
- Memory is the working set, which includes active page cache; RSS and cache tell you what it is made of.
- A spike shorter than the resolution never shows in `kubectl top`; the OOM counter and the pod status do.

Read more: [Resource metrics pipeline](https://kubernetes.io/docs/tasks/debug/debug-cluster/resource-metrics-pipeline/) ·
[Node metrics data](https://kubernetes.io/docs/reference/instrumentation/node-metrics/) ·
[metrics-server](https://github.com/kubernetes-sigs/metrics-server) ·
[kubectl top](https://kubernetes.io/docs/reference/kubectl/generated/kubectl_top/)"""),
    ("code", """ws.close()  # delete this notebook's workspace"""),
]


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    for kind, src in cells:
        if kind == "md":
            nb.cells.append(new_markdown_cell(src))
        elif kind == "params":
            nb.cells.append(new_code_cell(src, metadata={"tags": ["parameters"]}))
        elif kind == "solution":
            nb.cells.append(new_code_cell(src, metadata=dict(HIDDEN)))
        else:
            nb.cells.append(new_code_cell(src))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


NOTEBOOKS = {"01-foundations.ipynb": FOUNDATIONS, "04-measuring.ipynb": MEASURING}


def main() -> int:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(cells), str(ROOT / "notebooks" / name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
