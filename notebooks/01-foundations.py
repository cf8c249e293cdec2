# %% [markdown]
# # 01 · Foundations: code efficiency and resource availability
#
# **You will learn to**
# 1. see how a CPU limit turns into CFS throttling, and measure what it does to request latency;
# 2. watch a container grow into its memory limit until the kernel kills it (`OOMKilled`, exit code 137);
# 3. measure how much memory the *same data* costs in different Python data structures;
# 4. find out how deep recursion goes in a pod and how it fails: an exception, an OOM kill or a crash;
# 5. read a node's allocatable, requested and used CPU and memory.
#
# **Time:** about 30 minutes. **Needs:** a cluster (or the lab: `kperflab lab up`) where you may create namespaces and
# pods; the cAdvisor readings need `nodes/proxy` (see `kperflab doctor`).
# **Next:** 02 · Storage. Every number below is measured in this run, on the cluster you point at.

# %% tags=["parameters"]
# Parameters (papermill injects its own values after this cell)
kubeconfig = None      # path to a kubeconfig; None: $KUBECONFIG, ~/.kube/config or the lab's
context = None         # a context in it; None: the current one
namespace = None       # None: the context's namespace (experiments make their own anyway)
quick = False          # True: smaller, faster runs (what CI uses)
solutions = False      # True: run the hidden solution cells and make the checks strict (CI)
cpu_limits = ("none", "1000m", "500m", "200m", "100m")
requests = 10          # requests per CPU limit
memory_limit = "64Mi"  # the limit the allocator grows into
integers = 2_000_000   # how many integers the data-structure pods hold

# %%
if quick:
    cpu_limits, requests, integers = ("none", "500m", "100m"), 5, 2_000_000
import kperflab
import kperflab.figures
from kperflab import exercises
from IPython.display import Markdown, display

kperflab.figures.setup_notebook()
cluster = kperflab.connect(kubeconfig, context, namespace)
print(cluster.describe())

# %% [markdown]
# ## 1. CPU time: a limit is a quota per 100 ms
#
# A CPU limit does not slow a container down evenly. The kernel's CFS bandwidth control gives the container's cgroup
# a **quota** of CPU time per **period** (100 ms by default): `limits.cpu: 200m` means 20 ms per 100 ms. A request that
# needs 50 ms of CPU runs for 20 ms, waits for the next period (*throttled*), and so on. Below, the same CPU-bound
# request runs under several limits; latency comes from the program, throttling from the cgroup's own counters
# (`container_cpu_cfs_throttled_periods_total / container_cpu_cfs_periods_total` from cAdvisor).

# %%
from kperflab.experiments import foundations

cpu = foundations.cpu_limits(cluster, limits=cpu_limits, requests=requests)
cpu.show(table=True)

# %% [markdown]
# ### Exercise 1 — predict the quota
# A container has `limits.cpu: 250m`. How many microseconds of CPU time will its cgroup get per 100 ms period
# (`cpu.cfs_quota_us`, shown by cAdvisor as `container_spec_cpu_quota`)? The check cell starts such a pod and reads
# the real value.

# %%
answer_quota_us = None  # your answer, a number

# %% jupyter={"source_hidden": true} tags=["solution"]
if solutions:
    answer_quota_us = 250 / 1000 * 100_000  # millicores / 1000 × period (100 000 µs)

# %%
measured_quota, unavailable = foundations.measured_quota(cluster, "250m")  # starts the pod, reads cAdvisor

# %%
exercises.check(answer_quota_us, measured_quota, unit="µs per 100 ms", strict=solutions, unavailable=unavailable,
                why="The kubelet writes limits.cpu × 100 000 µs into the cgroup (cpu.cfs_quota_us, or cpu.max on cgroup v2).")

# %% [markdown]
# ## 2. Memory: a limit is a wall
#
# Memory cannot be throttled: when a container's cgroup reaches `limits.memory` and the kernel cannot reclaim enough,
# the OOM killer ends a process in it. Kubernetes reports the container as `OOMKilled` with exit code 137 (128 + SIGKILL).
# The pod below allocates and touches memory step by step; the figure shows what it says it allocated and the working
# set cAdvisor sampled, against the limit.

# %%
oom = foundations.memory_oom(cluster, limit=memory_limit)
oom.show()

# %% [markdown]
# ## 3. Code efficiency: the same data in different structures
#
# A Python `list` of integers holds pointers to separate `int` objects (28–32 bytes each, plus 8 for the pointer);
# `array.array` and a packed `bytearray` hold the raw 4-byte values; NumPy too, where the image has it. Each pod
# below holds the same integers under the same memory limit.

# %%
ds = foundations.data_structures(cluster, n=integers, limit=memory_limit)
ds.show(table=True)

# %% [markdown]
# ### Exercise 2 — bytes per element
# From the table above: how many bytes of working set per integer did the **array** pod use (working set ÷ number of
# integers)? The whole process counts, interpreter included, so it is a bit more than 4. The check compares your answer
# with a second reading of the same pod's working set, taken later through the metrics API (what `kubectl top` reads).

# %%
answer_bytes_per_int = None  # a number

# %% jupyter={"source_hidden": true} tags=["solution"]
if solutions:
    answer_bytes_per_int = ds.value("array", "working_set_mib") * 2**20 / integers

# %%
second_bytes_per_int, unavailable = foundations.second_reading(ds, "array")

# %%
exercises.check(answer_bytes_per_int, second_bytes_per_int, tolerance=0.25, unit="bytes per integer",
                strict=solutions, unavailable=unavailable,
                why="4 bytes of data per integer; the rest is the interpreter itself, spread over the elements.")

# %% [markdown]
# ## 4. Stack depth: how recursion fails in a pod
#
# Python stops runaway recursion with its *recursion limit* (a `RecursionError` you can catch). Lift the limit and
# Python frames live in memory, so the container's memory limit ends it. Recursion that passes through C code uses the
# thread's C stack instead; when that runs out the process dies of `SIGSEGV`, which Kubernetes shows as exit code 139.

# %%
stack = foundations.stack_depth(cluster, stacks=(256 << 10, 1 << 20) if quick else (256 << 10, 1 << 20, 4 << 20))
stack.show(table=True)

# %% [markdown]
# ## 5. Resource availability: allocatable, requested, used
#
# The scheduler places pods by their **requests** against each node's **allocatable** (capacity minus what the
# kubelet reserves); the metrics API reports what is **used**. The three rarely agree.

# %%
avail = foundations.availability(cluster)
avail.show(table=True)

# %% [markdown]
# ## Recap
#
# - A CPU limit is a quota per CFS period: work longer than the quota waits for the next period, so latency grows in
#   steps, far more than the limit's ratio suggests for bursty work. Throttling shows in `cpu.stat` (`nr_throttled`).
# - Memory limits are enforced by the OOM killer: `OOMKilled`, exit code 137; the metrics you sample may never show
#   the peak.
# - Data structures decide the memory bill: a list of ints costs several times an `array.array` of the same numbers.
# - Recursion fails three ways: a catchable exception, an OOM kill, or a stack-overflow crash (exit code 139).
#
# Read more: [Resource management for pods and containers](https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/) ·
# [Assign CPU resources](https://kubernetes.io/docs/tasks/configure-pod-container/assign-cpu-resource/) ·
# [Assign memory resources](https://kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource/) ·
# [Pod quality of service classes](https://kubernetes.io/docs/concepts/workloads/pods/pod-qos/) ·
# [Node allocatable](https://kubernetes.io/docs/tasks/administer-cluster/reserve-compute-resources/)
