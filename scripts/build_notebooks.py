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

STORAGE = [
    ("md", """# 02 · Storage: images, ephemeral volumes, persistent volumes

![Where a pod's bytes come from: the image pull path, and the volume kinds of this notebook](../images/storage-paths.png)

**You will learn to**
1. read pull times and image sizes from the kubelet's `Pulled` events, and measure what image size costs a pod's
   start — cold, already present, and over a slow registry;
2. take the pull off a pod's critical path with a pre-puller DaemonSet, and measure what that saves;
3. compare an `emptyDir` on the node's disk with one in memory (`medium: Memory`), and see a file in memory count
   against the container's memory limit until the kernel kills it;
4. compare a local and a remote persistent volume by their 4 KiB latency distributions;
5. follow a persistent volume through its life: provisioned, bound on first use, written, measured, reclaimed.

**Time:** about 25 minutes. **Needs:** a cluster (or the lab: `kperflab lab up`) where you may create namespaces,
pods, DaemonSets and PersistentVolumeClaims; the volume usage needs `nodes/proxy`, the reclaim section the right to
patch PersistentVolumes (cluster-scoped: an administrator's). On a real cluster the experiments use its default
StorageClass and public images; `kube-public/kperflab-test-images` (a ConfigMap an instructor may create) names test
images of known sizes.
**Previous:** 01 · Foundations. **Next:** 03 · Networking. Facts below carry the Kubernetes version they hold for."""),
    ("params", """# Parameters (papermill injects its own values after this cell)
kubeconfig = None
context = None
namespace = None
quick = False
solutions = False
probe_mib = 32           # MiB each volume probe writes and reads sequentially
random_ops = 2000        # 4 KiB random reads, then writes, per volume (at most probe_seconds each)
probe_seconds = 3.0
volume_classes = None    # StorageClasses to compare; None: local and remote where both exist, else the default class
pv_class = None          # the StorageClass of the persistent-volume section; None: the default class
memory_limit = "64Mi"    # the container's limit in the memory-backed emptyDir section
exercise_limit = "96Mi"  # the limit of the pod that checks exercise 2"""),
    ("code", """if quick:
    probe_mib, random_ops, probe_seconds = 8, 500, 1.5
""" + CONNECT + """
from kperflab.experiments import storage
catalog = storage.read_catalog(cluster)
plan = storage.lesson_images(catalog)
sizes = storage.ProbeSizes(size=probe_mib << 20, ops=random_ops, seconds=probe_seconds)
print(storage.describe(cluster, catalog, plan))"""),
    ("md", """## 1. Image size → pull time

Before a container starts, the kubelet makes sure its image is on the node. A **pull** fetches the manifest, then
every layer (compressed), checks each digest, and unpacks the layers into the runtime's store; only then can the
container be created. The kubelet says how long it took in the pod's `Pulled` event — read as on any cluster:

- since 1.30: `Successfully pulled image "nginx" in 717ms (718ms including waiting). Image size: 78005565 bytes.` — the
  first duration is the pull, the second includes waiting behind other pulls (`serializeImagePulls: true`, the
  upstream default, pulls one image at a time per node); the size is what the runtime stores (containerd: the
  compressed size);
- 1.19–1.25: `Successfully pulled image "x" in 1m43.249s` (a Go duration);
- already there: `Container image "x" already present on machine` (same reason, `Pulled`).

`imagePullPolicy: IfNotPresent` (the default for a tag other than `:latest`) pulls only what is missing; `Always` asks
the registry again on every start, but fetches no layer the node holds. Below, each test image is pulled cold (a node
that never had it), started again warm, and once with `Always`. An image is pulled cold only once per node: run again,
it is said to be already there. Events expire after an hour (`--event-ttl`), so read them soon after."""),
    ("code", """pulls = storage.pull_time(cluster, images=plan.pull, slow=plan.slow, catalog=catalog)
pulls.show(table=True)
if plan.note:
    print(f"Note: {plan.note}.")"""),
    ("md", """Published numbers: on kind, from the same events, python:3.12-slim (43.5 MB) took 4.2–4.4 s, golang:1.23
(293 MB) 11.8–15.7 s, rust:1.83 (591 MB) 18.1–21.1 s — about linear in size over a floor of about a second. On fast
networks the pull is CPU-bound: gzip decompression on one core (containerd#13559: 15 s fetching, 30 s inflating a 2.7 GiB
layer). The lab's registry is on loopback and its layers are random bytes, so here it is transfer, digest and unpack."""),
    ("md", """## 2. Pre-pulling with a DaemonSet

The pull is on a pod's critical path only if the image is not on the node yet. A **pre-puller** DaemonSet puts it
there ahead of time on every node: one init container per image with a trivial command (the kubelet pulls a pod's
images one after another), and a main container that sleeps, so the pod stays Running cheaply — and keeps the images
*in use*: the kubelet's image garbage collection (`imageGCHighThresholdPercent`, default 85) removes only images no
container uses. Below, the pre-puller's own pod shows what a pod needing the images cold waits; a pod created after it
shows what is left."""),
    ("code", """pre = storage.prepull(cluster, images=plan.prepull, catalog=catalog)
pre.show(table=True)"""),
    ("md", """How safe is a pre-pulled image on this node? The kubelet's image GC runs when the image filesystem passes
`imageGCHighThresholdPercent` and then removes images that **no container uses** — a pre-puller whose pod was deleted
leaves its images unprotected — least recently used first, until usage is below `imageGCLowThresholdPercent`. The
thresholds below come from the kubelet's own `/configz`, the filesystem from its Summary API (`node.runtime.imageFs`)."""),
    ("code", """gc = storage.image_gc_headroom(cluster, catalog=catalog)
gc.show(table=True)"""),
    ("md", """## 3. emptyDir: on the node's disk, or in memory

An `emptyDir` lives as long as its pod. By default it is a directory on the node's filesystem (with the kubelet's
state, often the same disk as logs and images); `medium: Memory` makes it a tmpfs, in RAM. The probe below runs the
same jobs on both: sequential write (fsync'd) and read, then 4 KiB random reads and writes at **queue depth 1** (one
operation waits for the previous one), with O_DIRECT where the filesystem takes it, as fio's `direct=1`. Where the
pod's image has fio, fio runs the same jobs; otherwise a Python probe does (tested against fio on the same
filesystems). The figure shows the latency distribution: how many operations finished within a time."""),
    ("code", """ed = storage.emptydir(cluster, sizes)
ed.show(table=True)"""),
    ("md", """### Exercise 1 — IOPS and latency at queue depth 1
At queue depth 1 there is always exactly one operation in flight, so the operations per second and the time per
operation are two views of one number. The table gives `randread_iops` for the disk-backed emptyDir. What mean
latency per read, in µs, does it imply? The check compares your answer with the mean of the probe's own timings of
each operation — a different measurement from its count per second."""),
    ("code", """print(f"disk emptyDir: {ed.value('emptyDir (disk)', 'randread_iops'):,.0f} random 4 KiB reads per second"
      if not ed.skipped else ed.skipped)
answer_latency_us = None  # a number of microseconds"""),
    ("solution", """if solutions and not ed.skipped:
    answer_latency_us = 1e6 / ed.value("emptyDir (disk)", "randread_iops")"""),
    ("code", """measured_us, unavailable = storage.latency_check(ed, "emptyDir (disk)")  # the probe's own per-operation timings"""),
    ("code", """exercises.check(answer_latency_us, measured_us, tolerance=0.25 * (measured_us or 0), unit="µs", strict=solutions,
                unavailable=unavailable, why="Little's law with one operation in flight: latency = 1 / IOPS.")"""),
    ("md", """## 4. A big file in memory is the container's memory

A tmpfs file's pages are memory, and the kernel charges them to the cgroup of the process that wrote them: the
container's. So a file in a `medium: Memory` emptyDir counts against `limits.memory`, and the working set (what the
kubelet and `kubectl top` report) grows with it. The `sizeLimit` caps the tmpfs (since 1.32, GA of
`SizeMemoryBackedVolumes`, the tmpfs is sized to it — or to the pod's memory limit when that is smaller). Two pods
below write one big file: one may write past its memory limit (OOM kill), one has a tmpfs smaller than its limit
(the write fails with ENOSPC, the pod lives)."""),
    ("code", """oom = storage.tmpfs_oom(cluster, limit=memory_limit)
oom.show(table=True)"""),
    ("md", """### Exercise 2 — how much fits
A pod with `limits.memory: 96Mi` (`exercise_limit`) writes a file into a memory-backed emptyDir whose `sizeLimit` is
well above that. How many MiB can it write before the kernel kills it? Use the memory the pods above used before
writing (printed below). The check starts that pod and reads how far it got."""),
    ("code", """print(f"in use before writing: {oom.data['start_used_mib']:.1f} MiB ({oom.data['start_used_from']})"
      if not oom.skipped else oom.skipped)
answer_mib = None  # MiB written before the OOM kill"""),
    ("solution", """if solutions and not oom.skipped:
    answer_mib = int(exercise_limit.removesuffix("Mi")) - oom.data["start_used_mib"]"""),
    ("code", """killed_after, unavailable = storage.kill_point(cluster, exercise_limit)  # starts that pod, reads its own count"""),
    ("code", """exercises.check(answer_mib, killed_after, tolerance=10, unit="MiB", strict=solutions, unavailable=unavailable,
                why="The limit minus what the process already used; the file's pages are charged to its cgroup.")"""),
    ("md", """## 5. Local against remote persistent volumes

A PersistentVolumeClaim asks for storage of a **StorageClass**; its provisioner makes a PersistentVolume. On the lab,
`local` (the default) is a filesystem of its own on the node (a loop device), and `remote` a network filesystem
reached over the pod network — as NFS, CephFS or a cloud disk are reached over a network. Every 4 KiB operation on a
remote volume pays at least a network round trip. Published 4 KiB latencies (longhorn/kbench-style runs): a local SATA
SSD 66–160 µs, Ceph RBD on NVMe 120 µs reads but 6.4 ms writes, NFS on disks 24–56 ms; EBS gp3 promises
"single-digit ms"."""),
    ("code", """vols = storage.volume_latency(cluster, classes=volume_classes, sizes=sizes)
vols.show(table=True)"""),
    ("md", """## 6. A persistent volume's life

A StorageClass with `volumeBindingMode: WaitForFirstConsumer` keeps a claim **Pending** until a pod uses it (event
`WaitForFirstConsumer`), so that the volume is made where the pod is scheduled — tools that wait for `Bound` before
creating the pod wait for ever. The `reclaimPolicy` decides what deleting the claim does: `Delete` (dynamic
provisioning's default) removes the volume and its data; `Retain` keeps it `Released`, data included, until an
administrator acts. Usage is read as the kubelet reports it: the Summary API's `pods[].volume[]`, with a `pvcRef` for
claims, refreshed every `volumeStatsAggPeriod` (1 minute upstream). Below: two claims, one switched to `Retain`."""),
    ("code", """pv = storage.pv_lifecycle(cluster, storage_class=pv_class)
pv.show(table=True)"""),
    ("md", """## Recap

- Pull time grows with image size over a fixed floor; read it from the `Pulled` events (`in X (Y including
  waiting). Image size: N bytes.`). Smaller images, fewer bytes to unpack, and pulls in parallel
  (`serializeImagePulls: false`, `maxParallelImagePulls`, GA in 1.35) all shorten it.
- A pre-puller DaemonSet takes the pull off the critical path; its running pod keeps the images safe from image GC.
- A memory-backed emptyDir is fast, and its files are the container's memory: they raise the working set and can
  get the container OOM-killed. `sizeLimit` makes the write fail (ENOSPC) instead.
- At queue depth 1, latency and IOPS are one number; a remote volume pays a network round trip per operation.
- `WaitForFirstConsumer` claims are Pending until a pod uses them; `Delete` removes the data with the claim, `Retain`
  keeps a `Released` volume until someone cleans it up.

Read more: [Images](https://kubernetes.io/docs/concepts/containers/images/) ·
[Volumes (emptyDir)](https://kubernetes.io/docs/concepts/storage/volumes/#emptydir) ·
[Persistent volumes](https://kubernetes.io/docs/concepts/storage/persistent-volumes/) ·
[Storage classes](https://kubernetes.io/docs/concepts/storage/storage-classes/) ·
[Local ephemeral storage](https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/#local-ephemeral-storage) ·
[Node-pressure eviction](https://kubernetes.io/docs/concepts/scheduling-eviction/node-pressure-eviction/)"""),
]

NETWORKING = [
    ("md", """# 03 · Networking: kube-proxy's modes, Services at scale, DNS

![The first packet of a connection to a Service in kube-proxy's iptables and nftables modes](../images/kube-proxy-modes.png)

**You will learn to**
1. tell which mode kube-proxy runs in — from its ConfigMap, its own `/proxyMode` and its metrics — and how sure that is;
2. measure what the number of Services does to the latency of a **new** connection, in iptables and in nftables mode;
3. measure kube-proxy's rule programming time and count its rules against the formula `NAT = 5 + S·(2 + 3E)`;
4. see why a kept-alive connection does not pay for the Service rules;
5. count the DNS queries that `ndots:5` costs, and cut them.

**Time:** about 25 minutes. **Needs:** a cluster (or the lab: `kperflab lab up`) where you may create namespaces, pods
and Services. Reading kube-proxy (`/proxyMode`, `/metrics` on port 10249) needs `nodes/proxy` and a kube-proxy whose
metrics listen beyond 127.0.0.1; switching modes needs the right to patch ConfigMap `kube-system/kube-proxy` and a
kube-proxy that re-reads it (the lab's does; kubeadm and kind read it only at start, so there only the current mode is
measured, and the findings say so). The DNS query counts need the API server's proxy to reach kube-dns's metrics port;
without it the pod's own count of datagrams is shown.
**Previous:** 02 · Storage. **Next:** 04 · Measuring. Facts below carry the Kubernetes version they hold for."""),
    ("params", """# Parameters (papermill injects its own values after this cell)
kubeconfig = None
context = None
namespace = None
quick = False
solutions = False
sizes = (10, 100, 1000)           # numbers of Services to measure connection latency at
modes = ("iptables", "nftables")  # kube-proxy modes to compare (switched through its ConfigMap where it re-reads it)
samples = 200                     # new connections per probed Service
duration = 2.0                    # seconds each latency probe spreads its connections over
sync_sizes = (10, 100, 1000)      # numbers of Services to time kube-proxy's syncs at
changes = 3                       # one-Service changes timed per size (sync time)
keepalive_services = 1000         # Services in the cluster for the keep-alive comparison
requests = 400                    # HTTP requests each way (kept alive / new connection)
dns_repeat = 10                   # lookups per DNS case"""),
    ("code", """if quick:
    sizes, samples, duration, sync_sizes, changes = (10, 1000), 100, 0.5, (100,), 1
    keepalive_services, requests, dns_repeat = 200, 100, 2
""" + CONNECT + """
from kperflab import host
from kperflab.experiments import networking
print(f"This machine: the ip_vs kernel module is {'loaded' if host.ipvs_available() else 'not loaded'}"
      + ("" if host.ipvs_available() else ", so neither kube-proxy's IPVS mode nor kube-router can run in a lab here: "
         "below they are described and quoted from published measurements only"))"""),
    ("md", """## 1. What kube-proxy does, in three modes

A Service's ClusterIP is virtual: no interface has it. On every node **kube-proxy** watches Services and
EndpointSlices and writes kernel rules that rewrite (DNAT) a connection's first packet from the ClusterIP to one of
the Service's endpoints; conntrack remembers the choice, so later packets of that connection skip the rules.

- **iptables** (the default on Linux, still in 1.35): the `nat` table jumps to `KUBE-SERVICES`, **one rule per Service
  port**, matched in order; the match jumps to `KUBE-SVC-…`, which picks an endpoint with `-m statistic` rules and
  jumps to its `KUBE-SEP-…` (DNAT). The first packet of every new connection walks `KUBE-SERVICES` until its rule
  matches: O(number of Services). Every sync rewrites `KUBE-SERVICES` with `iptables-restore`; partial syncs
  (KEP-3453, on by default since 1.27, GA in 1.28) re-send only the changed Services' chains, but still that whole chain.
- **IPVS**: the kernel's load balancer, a hash table per virtual server (O(1)), needs the `ip_vs` modules.
  **Deprecated in 1.35** (a startup warning and an `IPVSDeprecation` event; KEP-5495 plans a feature gate that is off
  by default from 1.40 and removal in 1.43). Tigera measured in 2019, at 10,000 Services and 1,000 requests/s each on a
  new connection, about 35% of a core for iptables mode against about 8% for IPVS; with keep-alive, iptables mode
  dropped to about 2%.
- **nftables**: alpha in 1.29, beta in 1.31, **GA in 1.33** (kernel ≥ 5.13). One table `ip kube-proxy`; a verdict
  map `service-ips` sends a packet to its Service's chain in **one hash lookup**, whatever the number of Services,
  and a change rewrites only what changed. iptables remains the default; nftables is the recommended way off IPVS.
- **kube-router** replaces kube-proxy altogether: its service proxy programs IPVS, its router speaks BGP (GoBGP) to
  announce each node's pod CIDR, and its firewall enforces NetworkPolicy with iptables and ipsets. It cannot run in
  the lab on a machine without the `ip_vs` module (the connect cell says whether this one has it), and the lab's single
  node has no BGP peer, so here it appears only through published numbers.

Published numbers (Kubernetes blog, "NFTables mode for kube-proxy", 2025-02-28, measured for KubeCon NA 2024): in
iptables mode the median first-packet latency grew more than fivefold from 5,000 to 30,000 Services, and the spread
between the fastest and slowest percentiles widened (where a Service's rule sits in `KUBE-SERVICES`); in nftables mode
it stayed about flat, and at 30,000 Services its worst case beat iptables' best case.

First, which mode does *this* cluster run? Each source below is read through the API server; a row that could not
be read says why."""),
    ("code", """mode = networking.detect_proxy_mode(cluster)
mode.show(table=True)"""),
    ("md", """## 2. New-connection latency vs the number of Services

The experiment creates N ClusterIP Services, all selecting the same two small HTTP echo pods (two endpoints each, so
each has real rules), many at a time through the API. A client pod (with `enableServiceLinks: false`: with thousands
of Services the kubelet would otherwise put thousands of variables into its environment) waits until every probed
Service answers — the rules are programmed — then times `connect()` to the first and last created and ten in between,
interleaved. It does so in each mode, switching kube-proxy through its ConfigMap, and puts the original mode back."""),
    ("code", """latency = networking.service_latency(cluster, sizes=sizes, modes=modes, samples=samples, duration=duration)
latency.show(table=True)"""),
    ("md", """Does it matter *which* Service you connect to? Below, each probed Service's median at the largest size,
in creation order. The lab's kube-proxy writes `KUBE-SERVICES` in Service-name order and the experiment's names sort in
creation order, so there the x axis is the position of the Service's rule in the chain; upstream kube-proxy writes that
chain in Go map order (random), so on a real cluster the slowest/fastest ratio over the probed Services is what shows
the linear scan."""),
    ("code", """networking.by_position(latency)"""),
    ("md", """## 3. How long kube-proxy takes to program a change

kube-proxy times each sync in its histogram `kubeproxy_sync_proxy_rules_duration_seconds` (on port 10249). With N of
our Services in place, one more Service is added and the sync that programs it is timed, from the histogram's
`_sum` and `_count` before and after. In iptables mode kube-proxy also counts the rules it owns,
`kubeproxy_sync_proxy_rules_iptables_total{table="nat"}`."""),
    ("code", """sync = networking.sync_time(cluster, sizes=sync_sizes, modes=modes, changes=changes)
sync.show(table=True)"""),
    ("md", """### Exercise 1 — count the NAT rules
In iptables mode kube-proxy writes, per ClusterIP Service port with E endpoints: 1 rule in `KUBE-SERVICES`, in its
`KUBE-SVC-…` chain 1 masquerade rule and E endpoint-choice rules, and 2 rules in each endpoint's `KUBE-SEP-…` chain
(plus 5 fixed rules for the whole node). How many NAT rules did the experiment's S Services add? The check compares
your answer with kube-proxy's own count, read before and after them."""),
    ("code", """S, E, measured_nat, unavailable = networking.nat_rules_added(sync)
print(f"S = {S} Services, E = {E} endpoints each" if S else f"Not measured here: {unavailable}")
answer_nat_rules = None  # a number"""),
    ("solution", """if solutions and S is not None:
    answer_nat_rules = S * (1 + 1 + E + 2 * E)  # = S·(2 + 3E): the formula without its 5 fixed rules"""),
    ("code", """exercises.check(answer_nat_rules, measured_nat, unit="NAT rules", strict=solutions, unavailable=unavailable,
                why="Each Service port costs 2 + 3E rules, so KUBE-SERVICES and the rule count grow with every Service.")"""),
    ("md", """## 4. Keep-alive: pay for the rules once

Only a connection's first packet walks kube-proxy's rules; conntrack translates the rest. With many Services, HTTP
requests over one kept-alive connection are set against a new connection per request (alternating blocks of each),
to the last-created Service."""),
    ("code", """keepalive = networking.keepalive_vs_new_connections(cluster, n_services=keepalive_services, modes=modes, requests=requests)
keepalive.show(table=True)"""),
    ("md", """## 5. DNS: what `ndots:5` costs

A pod's `/etc/resolv.conf` (dnsPolicy `ClusterFirst`) holds the cluster DNS server, three search domains
(`<namespace>.svc.cluster.local svc.cluster.local cluster.local`) and `options ndots:5`: a name with fewer than five
dots is tried with each search domain **before** as it is. glibc (the python image is Debian's) asks for A and AAAA
records of every candidate. A trailing dot makes a name absolute; `dnsConfig: options: [{name: ndots, value: "1"}]`
lowers the threshold for one pod. Each case runs in a pod of its own; the queries are counted by the DNS server
(`coredns_dns_requests_total`) and by the datagrams the pod's kernel sent."""),
    ("code", """dns = networking.dns_lookups(cluster, repeat=dns_repeat)
dns.show(table=True)
print(dns.data["resolv_conf"])"""),
    ("md", """### Exercise 2 — queries per lookup
The pod's `resolv.conf` is printed above. How many DNS queries does **one** lookup of the Service name
`kubernetes.default.svc.cluster.local` — complete, but four dots and no trailing dot — cost with it? (It exists only as
it is, not under any search domain.) The check compares your answer with what the DNS server counted (or, where its
counters cannot be read, with what the pod's kernel sent)."""),
    ("code", """measured_queries, unavailable = networking.queries_per_lookup(dns)
answer_queries = None  # a number"""),
    ("solution", """if solutions:
    answer_queries = 2 * (len(networking.search_list(dns)) + 1)  # (search domains + the name as it is) × (A + AAAA)"""),
    ("code", """exercises.check(answer_queries, measured_queries, unit="queries per lookup", strict=solutions, unavailable=unavailable,
                why="Fewer than ndots dots: every search domain first, then the name as it is; A and AAAA each time.")"""),
    ("md", """## Recap

- kube-proxy's mode is best read from the running proxy (`/proxyMode`, its mode-specific metrics); the ConfigMap says
  what it will do at its next start.
- In iptables mode the first packet of every new connection walks `KUBE-SERVICES`, one rule per Service port, and every
  sync rewrites that chain: both grow with the number of Services. Upstream's nftables mode (GA in 1.33) does one map
  lookup and programs only what changed: compare with what was measured above. IPVS is deprecated since 1.35.
- Kept-alive connections pay for the rules once; conntrack carries the rest.
- `ndots:5` turns one lookup of a name with fewer than five dots that exists only as written into (search domains + 1)
  × 2 queries. Use a trailing dot, a lower `ndots` in `dnsConfig`, or NodeLocal DNSCache.

Read more: [Virtual IPs and Service proxies](https://kubernetes.io/docs/reference/networking/virtual-ips/) ·
[Services](https://kubernetes.io/docs/concepts/services-networking/service/) ·
[NFTables mode for kube-proxy](https://kubernetes.io/blog/2025/02/28/nftables-kube-proxy/) ·
[kube-proxy](https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/) ·
[DNS for Services and Pods](https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/) ·
[Debugging DNS resolution](https://kubernetes.io/docs/tasks/administer-cluster/dns-debugging-resolution/) ·
[NodeLocal DNSCache](https://kubernetes.io/docs/tasks/administer-cluster/nodelocaldns/) ·
[kube-router](https://www.kube-router.io/docs/)"""),
]

MEASURING = [
    ("md", """# 04 · Measuring: the resource-metrics pipeline

![The metrics pipeline](../images/metrics-pipeline.png)

**You will learn to**
1. read every stage of the pipeline for one workload: cAdvisor in the kubelet → `/stats/summary`,
   `/metrics/resource`, `/metrics/cadvisor` → metrics-server → `metrics.k8s.io` → `kubectl top`;
2. reproduce `kubectl top`'s numbers exactly, rounding included;
3. see the metrics API's window and resolution lag against the cgroup counters;
4. tell working set, RSS and page cache apart — and why `kubectl top` can show little before an `OOMKilled`;
5. follow a HorizontalPodAutoscaler's decision through each lag of the chain, up under load and down again.

**Time:** about 35 minutes. **Needs:** a cluster with `metrics.k8s.io` (metrics-server, or the lab) and `nodes/proxy`
for the kubelet endpoints; section 6 creates a Deployment and a HorizontalPodAutoscaler in its own namespace. Facts below are for Kubernetes 1.37 (metrics.k8s.io v1 is GA there; metrics-server 0.9
serves v1beta1). **Previous:** 03 · Networking."""),
    ("params", """# Parameters (papermill injects its own values after this cell)
kubeconfig = None
context = None
namespace = None
quick = False
solutions = False
phases = ((0.2, 20), (1.0, 20), (0.3, 15))   # (cores, seconds) of the changing load
cache_mib = 256                              # page cache to fill
hpa_load = (15, 40)                          # the HPA's load step: starts (s after the Deployment), lasts (s)
hpa_window = 30                              # the HPA's scale-down stabilisation window (s), in its behavior"""),
    ("code", """if quick:
    phases, cache_mib = ((0.2, 8), (1.0, 10), (0.3, 5)), 128
    hpa_load, hpa_window = (6, 16), 20
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
    ("md", """## 6. An autoscaler's chain of lags

A HorizontalPodAutoscaler (`autoscaling/v2`) reads the same `metrics.k8s.io` as `kubectl top`. Between a load step
and a new pod that takes its share stand: the kubelet's next **sample** (the metrics resolution) and the **window**
the rate is averaged over, the HPA's **sync** (every 15 s: kube-controller-manager's
`--horizontal-pod-autoscaler-sync-period`, a cluster setting), and **pod start**. Going down, the HPA also waits out
a **stabilisation window**: 300 s by default (`--horizontal-pod-autoscaler-downscale-stabilization`). Here the
HPA sets a shorter one in its own `spec.behavior.scaleDown.stabilizationWindowSeconds` — an API field, so this
runs the same on any cluster (Kubernetes 1.23+, where `autoscaling/v2` is GA; facts for 1.32).

Below: a Deployment whose pods request 50m CPU and burn 0.1 cores during the load step (every replica, new ones
too), an HPA with a 50 % target and at most 4 replicas. Each lag comes from this run's timestamps."""),
    ("code", """hpa = measuring.autoscaling(cluster, params=measuring.HPAParams(load_from=hpa_load[0], load_seconds=hpa_load[1],
                                                                window=hpa_window))  # in a workspace of its own
hpa.show()
if not hpa.skipped:
    display(measuring.lag_table(hpa))"""),
    ("md", """### Exercise 3 — the utilisation the HPA sees
Each pod requests `50m` of CPU and burns 0.1 cores while the load runs. What utilisation, in percent of the request,
does the HPA compute for these pods (a whole number)? The check compares your answer with the highest utilisation the
HPA's own status (`status.currentMetrics`) reported during the load."""),
    ("code", """answer_percent = None  # percent of the CPU request"""),
    ("solution", """if solutions:
    answer_percent = 100 * 0.1 / 0.050"""),
    ("code", """exercises.check(answer_percent, hpa.data.get("hpa_utilization"), tolerance=40, unit="%", strict=solutions,
                unavailable=hpa.skipped or "the HPA reported no utilisation during the load",
                why="usage ÷ request × 100, summed over the pods the HPA counts (pods still starting are left out).")"""),
    ("md", """## 7. A live dashboard

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
- An HPA acts on that same averaged CPU, at its own 15 s sync, and new pods still have to start: scaling up trails
  a load step by all of these. Scaling down waits for the stabilisation window (300 s unless `behavior` says less).

Read more: [Resource metrics pipeline](https://kubernetes.io/docs/tasks/debug/debug-cluster/resource-metrics-pipeline/) ·
[Node metrics data](https://kubernetes.io/docs/reference/instrumentation/node-metrics/) ·
[metrics-server](https://github.com/kubernetes-sigs/metrics-server) ·
[kubectl top](https://kubernetes.io/docs/reference/kubectl/generated/kubectl_top/) ·
[Horizontal Pod Autoscaling](https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/)"""),
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


NOTEBOOKS = {"01-foundations.ipynb": FOUNDATIONS, "02-storage.ipynb": STORAGE, "03-networking.ipynb": NETWORKING,
             "04-measuring.ipynb": MEASURING}


def main() -> int:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(cells), str(ROOT / "notebooks" / name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
