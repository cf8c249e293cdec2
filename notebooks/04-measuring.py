# %% [markdown]
# # 04 · Measuring: the resource-metrics pipeline
#
# ![The metrics pipeline](../images/metrics-pipeline.png)
#
# **You will learn to**
# 1. read every stage of the pipeline for one workload: cAdvisor in the kubelet → `/stats/summary`,
#    `/metrics/resource`, `/metrics/cadvisor` → metrics-server → `metrics.k8s.io` → `kubectl top`;
# 2. reproduce `kubectl top`'s numbers exactly, rounding included;
# 3. see the metrics API's window and resolution lag against the cgroup counters;
# 4. tell working set, RSS and page cache apart — and why `kubectl top` can show little before an `OOMKilled`;
# 5. follow a HorizontalPodAutoscaler's decision through each lag of the chain, up under load and down again;
# 6. ask Prometheus the same questions in PromQL, and see what a scrape interval and a rate window do to the answer.
#
# **Time:** about 40 minutes. **Needs:** a cluster with `metrics.k8s.io` (metrics-server, or the lab) and `nodes/proxy`
# for the kubelet endpoints; section 6 creates a Deployment and a HorizontalPodAutoscaler in its own namespace; section 7
# reads a Prometheus (`kperflab lab up --prometheus`, or `kubectl apply -f kperflab/manifests/prometheus.yaml`; `get
# services/proxy` in its namespace) and says "Skipped here" without one; section 8 runs two small pods (50m CPU
# requested each) in a namespace of their own until you stop its dashboard. Facts below are for Kubernetes 1.37 (metrics.k8s.io v1 is GA there; metrics-server 0.9
# serves v1beta1). **Previous:** 03 · Networking.

# %% tags=["parameters"]
# Parameters (papermill injects its own values after this cell)
kubeconfig = None
context = None
namespace = None
quick = False
solutions = False
phases = ((0.2, 20), (1.0, 20), (0.3, 15))   # (cores, seconds) of the changing load
cache_mib = 256                              # page cache to fill
hpa_load = (15, 40)                          # the HPA's load step: starts (s after the Deployment), lasts (s)
hpa_window = 30                              # the HPA's scale-down stabilisation window (s), in its behavior
prom_phases = ((0.05, 30), (1.0, 120))       # section 7's spinner: (cores, seconds) idle, then a whole core wanted
prometheus = None                            # where Prometheus is: None finds monitoring/prometheus (or one by label);
                                             # "ns/service:port", or a URL such as "http://127.0.0.1:9090"

# %%
if quick:
    phases, cache_mib = ((0.2, 8), (1.0, 10), (0.3, 5)), 128
    hpa_load, hpa_window = (6, 16), 20
    prom_phases = ((0.05, 10), (1.0, 65))   # the load a little longer than the 1m rate window
import kperflab
import kperflab.figures
from kperflab import exercises
from IPython.display import Markdown, display

kperflab.figures.setup_notebook()
cluster = kperflab.connect(kubeconfig, context, namespace, prometheus=prometheus)
print(cluster.describe())
from kperflab.experiments import measuring
ws = cluster.workspace("measuring").open()  # for the burner several cells read; deleted in the last cell (or at kernel exit, or by `kperflab clean`)

# %% [markdown]
# ## 1. One workload, every stage
#
# A CPU burner uses half a core. Below: a few lines of what each stage serves for it, raw, then the same parsed into
# tables. The values agree because each stage reads the one before it: the Summary and `/metrics/resource` share the
# kubelet's sample time; metrics-server turns two of those samples into a rate over its **window**.

# %%
st = measuring.stages(cluster, ws)
if st.skipped:
    display(Markdown(f"**Skipped here:** {st.skipped}"))
for stage, text in st.raw.items():
    print(f"── {stage}"); print(text[:1500])

# %%
for stage, frame in st.frames.items():
    display(Markdown(f"**{stage}**")); display(frame)

# %% [markdown]
# ## 2. `kubectl top` by hand
#
# `kubectl top` prints CPU as `MilliValue()` (rounded **up** to a millicore) and memory as bytes ÷ 2²⁰ rounded
# **down**. `top_pods()` does the same; here both read the metrics API at the same moment.

# %%
same = measuring.top_vs_kubectl(cluster, ws.namespace)
display(same.frame); display(Markdown(f"**{'Skipped here' if same.skipped else 'Measured'}:** {same.skipped or same.finding}"))

# %% [markdown]
# ### Exercise 1 — the Mi that kubectl prints
# The metrics API reports the burner's memory (its working set) in bytes, printed below. What does `kubectl top` print
# in its MEMORY column for that many bytes (a whole number of Mi)? The check runs `kubectl top pod` on the same sample
# and compares your answer with what kubectl printed.

# %%
top = measuring.kubectl_top_memory(cluster, ws.namespace, "pipeline")
print(f"the metrics API: {top.bytes} bytes" if top.bytes is not None else f"no reading: {top.unavailable}")
answer_mib = None  # a whole number

# %% jupyter={"source_hidden": true} tags=["solution"]
if solutions:
    answer_mib = top.bytes // 2**20

# %%
exercises.check(answer_mib, top.kubectl_mib, unit="Mi", strict=solutions, unavailable=top.unavailable,
                why="kubectl divides the bytes by 1024 × 1024 and drops the fraction.")

# %% [markdown]
# ## 3. A changing load, seen three ways
#
# The pod below changes its CPU use in phases. We poll every second: what the program does (its own log), the cgroup
# counter as a rate between two kubelet samples, and the metrics API. The API's value is an average over its window
# and only changes once per resolution, so it lags behind the counters.

# %%
load = measuring.changing_load(cluster, phases=phases)  # in a workspace of its own
load.show()

# %% [markdown]
# ### Exercise 2 — a rate from two readings
# Two consecutive readings of the burner's `container_cpu_usage_seconds_total` (cumulative CPU seconds) with the
# kubelet's sample times are printed below. How many cores did it use between them?

# %%
r = measuring.two_readings(cluster, ws)
if r.first is not None:
    print(f"t1 = {r.first.time}, cpu = {r.first.cpu_seconds_total:.6f} s")
    print(f"t2 = {r.second.time}, cpu = {r.second.cpu_seconds_total:.6f} s")
answer_cores = None  # a number of cores

# %% jupyter={"source_hidden": true} tags=["solution"]
if solutions:
    answer_cores = (r.second.cpu_seconds_total - r.first.cpu_seconds_total) / (r.second.time - r.first.time).total_seconds()

# %%
exercises.check(answer_cores, r.program_cores, tolerance=0.05, unit="cores", strict=solutions, unavailable=r.unavailable,
                why="Δ CPU seconds ÷ Δ seconds between the kubelet's sample times, the rate kubectl top and HPA see. "
                    "The check measured it by the burner's own CPU clock over the same interval.")

# %% [markdown]
# ## 4. Working set, RSS and page cache
#
# `kubectl top` and the eviction manager use the **working set**: memory usage minus *inactive* page cache. Page cache
# that was read more than once is *active* and counts. The pod below writes a file and reads it twice.

# %%
cache = measuring.page_cache(cluster, size=cache_mib * 2**20)
cache.show(table=True)

# %% [markdown]
# ## 5. OOMKilled although `kubectl top` showed little
#
# The metrics API samples; a spike between two samples is invisible to it. The cgroup counts every OOM kill, though:
# cAdvisor exposes that as `container_oom_events_total`, and the pod's status says `OOMKilled`.

# %%
spike = measuring.short_spike(cluster)
spike.show()

# %% [markdown]
# ## 6. An autoscaler's chain of lags
#
# A HorizontalPodAutoscaler (`autoscaling/v2`) reads the same `metrics.k8s.io` as `kubectl top`. Between a load step
# and a new pod that takes its share stand: the kubelet's next **sample** (the metrics resolution) and the **window**
# the rate is averaged over, the HPA's **sync** (every 15 s: kube-controller-manager's
# `--horizontal-pod-autoscaler-sync-period`, a cluster setting), and **pod start**. Going down, the HPA also waits out
# a **stabilisation window**: 300 s by default (`--horizontal-pod-autoscaler-downscale-stabilization`). Here the
# HPA sets a shorter one in its own `spec.behavior.scaleDown.stabilizationWindowSeconds` — an API field, so this
# runs the same on any cluster (Kubernetes 1.23+, where `autoscaling/v2` is GA; facts for 1.32).
#
# Below: a Deployment whose pods request 50m CPU and burn 0.1 cores during the load step (every replica, new ones
# too), an HPA with a 50 % target and at most 4 replicas. Each lag comes from this run's timestamps.

# %%
hpa = measuring.autoscaling(cluster, params=measuring.HPAParams(load_from=hpa_load[0], load_seconds=hpa_load[1],
                                                                window=hpa_window))  # in a workspace of its own
hpa.show()
if not hpa.skipped:
    display(measuring.lag_table(hpa))

# %% [markdown]
# ### Exercise 3 — the utilisation the HPA sees
# Each pod requests `50m` of CPU and burns 0.1 cores while the load runs. What utilisation, in percent of the request,
# does the HPA compute for these pods (a whole number)? The check compares your answer with the highest utilisation the
# HPA's own status (`status.currentMetrics`) reported during the load.

# %%
answer_percent = None  # percent of the CPU request

# %% jupyter={"source_hidden": true} tags=["solution"]
if solutions:
    answer_percent = 100 * 0.1 / 0.050

# %%
exercises.check(answer_percent, hpa.data.get("hpa_utilization"), tolerance=40, unit="%", strict=solutions,
                unavailable=hpa.skipped or "the HPA reported no utilisation during the load",
                why="usage ÷ request × 100, summed over the pods the HPA counts (pods still starting are left out).")

# %% [markdown]
# ## 7. The same workload through Prometheus
#
# The pipeline has a second branch: Prometheus scrapes each kubelet's `/metrics/cadvisor` (here through the API
# server's node proxy, as upstream's example configuration does) every **scrape interval**, keeps the samples, and
# answers PromQL over any window. That is how most clusters are measured (kube-prometheus-stack is the usual install),
# and it answers what the metrics API cannot: rates over a window you choose, throttling, OOM kills over time.
# On the lab: `kperflab lab up --prometheus`; on any cluster: `kubectl apply -f kperflab/manifests/prometheus.yaml`, or
# set `prometheus` in the parameters to the one you have.
#
# A pod idles, then wants a whole core under `limits.cpu: 500m`. Below, three views of it: `kubectl top`, the cgroup's
# counter read directly from the kubelet, and these PromQL queries (the figure's lower panel is the second):
#
# ```
# rate(container_cpu_usage_seconds_total{namespace="…", pod="spinner", container="main", metrics_path="/metrics/cadvisor"}[1m])
# rate(container_cpu_cfs_throttled_periods_total{…}[1m]) / rate(container_cpu_cfs_periods_total{…}[1m])
# container_memory_working_set_bytes{…}
# increase(container_oom_events_total{…}[5m])     # section 5's spike pod
# ```

# %%
prom = measuring.prometheus_view(cluster, phases=prom_phases, oom_from=spike)  # in a workspace of its own
prom.show()
if not prom.skipped:
    print("\n".join(f"{what}: {q}" for what, q in prom.data["queries"].items()))

# %% [markdown]
# ### Exercise 4 — write the query
# Write a PromQL query that gives the CPU, in cores, the spinner's container used over the last minute. It must
# return one series: select it by its `namespace` (`prom.data["namespace"]`), `pod` (`spinner`) and `container`
# (`main`) labels, and mind
# that both kubelet endpoints export `container_cpu_usage_seconds_total` (the `metrics_path` label tells them
# apart). The check
# runs your query at the end of the spinner's load and compares the number with the cgroup's own CPU counter over
# the same minute, read directly from the kubelet.

# %%
answer_query = None  # your PromQL query, a string

# %% jupyter={"source_hidden": true} tags=["solution"]
if solutions:
    answer_query = ('rate(container_cpu_usage_seconds_total{namespace="%s", pod="spinner", container="main", '
                    'metrics_path="/metrics/cadvisor"}[1m])' % prom.data.get("namespace"))

# %%
answer_cores = measuring.promql_value(cluster, answer_query, prom)  # your query's number (None until you write one)

# %%
exercises.check(answer_cores, prom.data.get("cores_last_window"), tolerance=0.1, unit="cores", strict=solutions,
                unavailable=prom.skipped or "the kubelet's counter had no two readings a minute apart",
                why="rate() is the counter's increase over the window divided by its length: CPU seconds per second.")

# %% [markdown]
# ## 8. A live dashboard
#
# For people: a live `kubectl top`. It starts a small workload of its own, two pods whose CPU use changes every 10 s
# (between 0.05 and 0.25 of a core each), in a workspace of its own, and redraws their bars every 5 s; the time in
# the title is the time of the read, and the numbers change once per metrics resolution (5 s on the lab, 15 s by
# default with metrics-server). For the first 15–30 s it says it is waiting: the metrics API has nothing for a pod
# until it has two samples of it. It keeps running while you read on, also after the last cell deletes this
# notebook's workspace: press **Stop** to end it (its workspace is deleted then, or when the kernel shuts down).
# `live_top(cluster, all_namespaces=True)` follows every pod of the cluster instead and starts no workload.
# Run headless (papermill, CI), it shows one snapshot of this notebook's workspace.

# %%
from kperflab.widgets import live_top

live_top(cluster, snapshot_namespace=ws.namespace)  # live: its own workload until Stop; headless: one snapshot

# %% [markdown]
# ## Recap
#
# - The pipeline is cgroups → cAdvisor (kubelet) → `/metrics/resource` → metrics-server → `metrics.k8s.io` → `kubectl top`,
#   HPA, VPA. `/metrics/cadvisor` and `/stats/summary` carry more (throttling, RSS, cache, OOM events) for Prometheus.
# - CPU in the metrics API is a rate over a window; it trails real changes by up to one resolution plus one window.
# - Memory is the working set, which includes active page cache; RSS and cache tell you what it is made of.
# - A spike shorter than the resolution never shows in `kubectl top`; the OOM counter and the pod status do.
# - An HPA acts on that same averaged CPU, at its own 15 s sync, and new pods still have to start: scaling up trails
#   a load step by all of these. Scaling down waits for the stabilisation window (300 s unless `behavior` says less).
# - Prometheus keeps what the metrics API drops: throttled periods and seconds, OOM kills over time, any window. Its
#   curves are shaped by the scrape interval (nothing between two scrapes) and the rate window (a step is spread over
#   the whole window); a container that lives less than a scrape interval may leave no trace at all.
#
# Read more: [Resource metrics pipeline](https://kubernetes.io/docs/tasks/debug/debug-cluster/resource-metrics-pipeline/) ·
# [Node metrics data](https://kubernetes.io/docs/reference/instrumentation/node-metrics/) ·
# [metrics-server](https://github.com/kubernetes-sigs/metrics-server) ·
# [kubectl top](https://kubernetes.io/docs/reference/kubectl/generated/kubectl_top/) ·
# [Horizontal Pod Autoscaling](https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/) ·
# [PromQL functions: rate()](https://prometheus.io/docs/prometheus/latest/querying/functions/#rate) ·
# [Prometheus Kubernetes SD](https://prometheus.io/docs/prometheus/latest/configuration/configuration/#kubernetes_sd_config)

# %%
ws.close()  # delete this notebook's workspace
