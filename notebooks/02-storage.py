# %% [markdown]
# # 02 · Storage: images, ephemeral volumes, persistent volumes
#
# **You will learn to**
# 1. read pull times and image sizes from the kubelet's `Pulled` events, and measure what image size costs a pod's
#    start — cold, already present, and over a slow registry;
# 2. take the pull off a pod's critical path with a pre-puller DaemonSet, and measure what that saves;
# 3. compare an `emptyDir` on the node's disk with one in memory (`medium: Memory`), and see a file in memory count
#    against the container's memory limit until the kernel kills it;
# 4. compare a local and a remote persistent volume by their 4 KiB latency distributions;
# 5. follow a persistent volume through its life: provisioned, bound on first use, written, measured, reclaimed.
#
# **Time:** about 25 minutes. **Needs:** a cluster (or the lab: `kperflab lab up`) where you may create namespaces,
# pods, DaemonSets and PersistentVolumeClaims; the volume usage needs `nodes/proxy`, the reclaim section the right to
# patch PersistentVolumes (cluster-scoped: an administrator's). On a real cluster the experiments use its default
# StorageClass and public images; `kube-public/kperflab-test-images` (a ConfigMap an instructor may create) names test
# images of known sizes.
# **Previous:** 01 · Foundations. **Next:** 03 · Networking. Facts below carry the Kubernetes version they hold for.

# %% tags=["parameters"]
# Parameters (papermill injects its own values after this cell)
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
exercise_limit = "96Mi"  # the limit of the pod that checks exercise 2

# %%
if quick:
    probe_mib, random_ops, probe_seconds = 8, 500, 1.5
import kperflab
import kperflab.figures
from kperflab import exercises
from IPython.display import Markdown, display

kperflab.figures.setup_notebook()
cluster = kperflab.connect(kubeconfig, context, namespace)
print(cluster.describe())
from kperflab.experiments import storage
catalog = storage.read_catalog(cluster)
plan = storage.lesson_images(catalog)
sizes = storage.ProbeSizes(size=probe_mib << 20, ops=random_ops, seconds=probe_seconds)
print(storage.describe(cluster, catalog, plan))

# %% [markdown]
# ## 1. Image size → pull time
#
# Before a container starts, the kubelet makes sure its image is on the node. A **pull** fetches the manifest, then
# every layer (compressed), checks each digest, and unpacks the layers into the runtime's store; only then can the
# container be created. The kubelet says how long it took in the pod's `Pulled` event — read as on any cluster:
#
# ![The image pull path: the kubelet (imagePullPolicy, serializeImagePulls) asks the runtime's CRI image service,
# which fetches the manifest, config and compressed layer blobs from the registry into the node's content store,
# checks every digest, decompresses and unpacks each layer into a snapshot on the image filesystem, and the layers
# become the read-only lower part of the container's overlay root filesystem under its writable layer; the kubelet
# reports the time in a Pulled event. A pre-puller DaemonSet takes the same path ahead of time and keeps the images in
# use; image GC removes unused images when the image filesystem passes its high threshold](../images/image-pull.png)
#
# - since 1.30: `Successfully pulled image "nginx" in 717ms (718ms including waiting). Image size: 78005565 bytes.` — the
#   first duration is the pull, the second includes waiting behind other pulls (`serializeImagePulls: true`, the
#   upstream default, pulls one image at a time per node); the size is what the runtime stores (containerd: the
#   compressed size);
# - 1.19–1.25: `Successfully pulled image "x" in 1m43.249s` (a Go duration);
# - already there: `Container image "x" already present on machine` (same reason, `Pulled`).
#
# `imagePullPolicy: IfNotPresent` (the default for a tag other than `:latest`) pulls only what is missing; `Always` asks
# the registry again on every start, but fetches no layer the node holds. Below, each test image is pulled cold (a node
# that never had it), started again warm, and once with `Always`. An image is pulled cold only once per node: run again,
# it is said to be already there. Events expire after an hour (`--event-ttl`), so read them soon after.

# %%
pulls = storage.pull_time(cluster, images=plan.pull, slow=plan.slow, catalog=catalog)
pulls.show(table=True)
if plan.note:
    print(f"Note: {plan.note}.")

# %% [markdown]
# Published numbers: on kind, from the same events, python:3.12-slim (43.5 MB) took 4.2–4.4 s, golang:1.23
# (293 MB) 11.8–15.7 s, rust:1.83 (591 MB) 18.1–21.1 s — about linear in size over a floor of about a second. On fast
# networks the pull is CPU-bound: gzip decompression on one core (containerd#13559: 15 s fetching, 30 s inflating a 2.7 GiB
# layer). The lab's registry is on loopback and its layers are random bytes, so here it is transfer, digest and unpack.

# %% [markdown]
# ## 2. Pre-pulling with a DaemonSet
#
# The pull is on a pod's critical path only if the image is not on the node yet. A **pre-puller** DaemonSet puts it
# there ahead of time on every node: one init container per image with a trivial command (the kubelet pulls a pod's
# images one after another), and a main container that sleeps, so the pod stays Running cheaply — and keeps the images
# *in use*: the kubelet's image garbage collection (`imageGCHighThresholdPercent`, default 85) removes only images no
# container uses. Below, the pre-puller's own pod shows what a pod needing the images cold waits; a pod created after it
# shows what is left.

# %%
pre = storage.prepull(cluster, images=plan.prepull, catalog=catalog)
pre.show(table=True)

# %% [markdown]
# How safe is a pre-pulled image on this node? The kubelet's image GC runs when the image filesystem passes
# `imageGCHighThresholdPercent` and then removes images that **no container uses** — a pre-puller whose pod was deleted
# leaves its images unprotected — least recently used first, until usage is below `imageGCLowThresholdPercent`. The
# thresholds below come from the kubelet's own `/configz`, the filesystem from its Summary API (`node.runtime.imageFs`).

# %%
gc = storage.image_gc_headroom(cluster, catalog=catalog)
gc.show(table=True)

# %% [markdown]
# ## 3. emptyDir: on the node's disk, or in memory
#
# ![The volume kinds of sections 3 to 6 and what each counts against: a container's writable layer and a disk-backed
# emptyDir live on the node's disk and count against ephemeral-storage (over a limit or sizeLimit the kubelet evicts
# the pod); a memory-backed emptyDir is a tmpfs whose pages are the container's memory and count against
# limits.memory (OOM kill), its sizeLimit making a write fail with ENOSPC; a local PV is a filesystem of its own on a
# block device of the node, a remote PV a network filesystem whose every operation is a round trip to a storage
# server; both are limited by the volume's own capacity, not by the pod's limits](../images/volume-kinds.png)
#
# An `emptyDir` lives as long as its pod. By default it is a directory on the node's filesystem (with the kubelet's
# state, often the same disk as logs and images); `medium: Memory` makes it a tmpfs, in RAM. The probe below runs the
# same jobs on both: sequential write (fsync'd) and read, then 4 KiB random reads and writes at **queue depth 1** (one
# operation waits for the previous one), with O_DIRECT where the filesystem takes it, as fio's `direct=1`. Where the
# pod's image has fio, fio runs the same jobs; otherwise a Python probe does (tested against fio on the same
# filesystems). The figure shows the latency distribution: how many operations finished within a time.

# %%
ed = storage.emptydir(cluster, sizes)
ed.show(table=True)

# %% [markdown]
# ### Exercise 1 — IOPS and latency at queue depth 1
# At queue depth 1 there is always exactly one operation in flight, so the operations per second and the time per
# operation are two views of one number. The table gives `randread_iops` for the disk-backed emptyDir. What mean
# latency per read, in µs, does it imply? The check compares your answer with the mean of the probe's own timings of
# each operation — a different measurement from its count per second.

# %%
print(f"disk emptyDir: {ed.value('emptyDir (disk)', 'randread_iops'):,.0f} random 4 KiB reads per second"
      if not ed.skipped else ed.skipped)
answer_latency_us = None  # a number of microseconds

# %% jupyter={"source_hidden": true} tags=["solution"]
if solutions and not ed.skipped:
    answer_latency_us = 1e6 / ed.value("emptyDir (disk)", "randread_iops")

# %%
measured_us, unavailable = storage.latency_check(ed, "emptyDir (disk)")  # the probe's own per-operation timings

# %%
exercises.check(answer_latency_us, measured_us, tolerance=0.25 * (measured_us or 0), unit="µs", strict=solutions,
                unavailable=unavailable, why="Little's law with one operation in flight: latency = 1 / IOPS.")

# %% [markdown]
# ## 4. A big file in memory is the container's memory
#
# A tmpfs file's pages are memory, and the kernel charges them to the cgroup of the process that wrote them: the
# container's. So a file in a `medium: Memory` emptyDir counts against `limits.memory`, and the working set (what the
# kubelet and `kubectl top` report) grows with it. The `sizeLimit` caps the tmpfs (since 1.32, GA of
# `SizeMemoryBackedVolumes`, the tmpfs is sized to it — or to the pod's memory limit when that is smaller). Two pods
# below write one big file: one may write past its memory limit (OOM kill), one has a tmpfs smaller than its limit
# (the write fails with ENOSPC, the pod lives).

# %%
oom = storage.tmpfs_oom(cluster, limit=memory_limit)
oom.show(table=True)

# %% [markdown]
# ### Exercise 2 — how much fits
# A pod with `limits.memory: 96Mi` (`exercise_limit`) writes a file into a memory-backed emptyDir whose `sizeLimit` is
# well above that. How many MiB can it write before the kernel kills it? Use the memory the pods above used before
# writing (printed below). The check starts that pod and reads how far it got.

# %%
print(f"in use before writing: {oom.data['start_used_mib']:.1f} MiB ({oom.data['start_used_from']})"
      if not oom.skipped else oom.skipped)
answer_mib = None  # MiB written before the OOM kill

# %% jupyter={"source_hidden": true} tags=["solution"]
if solutions and not oom.skipped:
    answer_mib = int(exercise_limit.removesuffix("Mi")) - oom.data["start_used_mib"]

# %%
killed_after, unavailable = storage.kill_point(cluster, exercise_limit)  # starts that pod, reads its own count

# %%
exercises.check(answer_mib, killed_after, tolerance=10, unit="MiB", strict=solutions, unavailable=unavailable,
                why="The limit minus what the process already used; the file's pages are charged to its cgroup.")

# %% [markdown]
# ## 5. Local against remote persistent volumes
#
# A PersistentVolumeClaim asks for storage of a **StorageClass**; its provisioner makes a PersistentVolume. On the lab,
# `local` (the default) is a filesystem of its own on the node (a loop device), and `remote` a network filesystem
# reached over the pod network — as NFS, CephFS or a cloud disk are reached over a network. Every 4 KiB operation on a
# remote volume pays at least a network round trip. Published 4 KiB latencies (longhorn/kbench-style runs): a local SATA
# SSD 66–160 µs, Ceph RBD on NVMe 120 µs reads but 6.4 ms writes, NFS on disks 24–56 ms; EBS gp3 promises
# "single-digit ms".

# %%
vols = storage.volume_latency(cluster, classes=volume_classes, sizes=sizes)
vols.show(table=True)

# %% [markdown]
# ## 6. A persistent volume's life
#
# A StorageClass with `volumeBindingMode: WaitForFirstConsumer` keeps a claim **Pending** until a pod uses it (event
# `WaitForFirstConsumer`), so that the volume is made where the pod is scheduled — tools that wait for `Bound` before
# creating the pod wait for ever. The `reclaimPolicy` decides what deleting the claim does: `Delete` (dynamic
# provisioning's default) removes the volume and its data; `Retain` keeps it `Released`, data included, until an
# administrator acts. Usage is read as the kubelet reports it: the Summary API's `pods[].volume[]`, with a `pvcRef` for
# claims, refreshed every `volumeStatsAggPeriod` (1 minute upstream). Below: two claims, one switched to `Retain`.

# %%
pv = storage.pv_lifecycle(cluster, storage_class=pv_class)
pv.show(table=True)

# %% [markdown]
# ## Recap
#
# - Pull time grows with image size over a fixed floor; read it from the `Pulled` events (`in X (Y including
#   waiting). Image size: N bytes.`). Smaller images, fewer bytes to unpack, and pulls in parallel
#   (`serializeImagePulls: false`, `maxParallelImagePulls`, GA in 1.35) all shorten it.
# - A pre-puller DaemonSet takes the pull off the critical path; its running pod keeps the images safe from image GC.
# - A memory-backed emptyDir is fast, and its files are the container's memory: they raise the working set and can
#   get the container OOM-killed. `sizeLimit` makes the write fail (ENOSPC) instead.
# - At queue depth 1, latency and IOPS are one number; a remote volume pays a network round trip per operation.
# - `WaitForFirstConsumer` claims are Pending until a pod uses them; `Delete` removes the data with the claim, `Retain`
#   keeps a `Released` volume until someone cleans it up.
#
# Read more: [Images](https://kubernetes.io/docs/concepts/containers/images/) ·
# [Volumes (emptyDir)](https://kubernetes.io/docs/concepts/storage/volumes/#emptydir) ·
# [Persistent volumes](https://kubernetes.io/docs/concepts/storage/persistent-volumes/) ·
# [Storage classes](https://kubernetes.io/docs/concepts/storage/storage-classes/) ·
# [Local ephemeral storage](https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/#local-ephemeral-storage) ·
# [Node-pressure eviction](https://kubernetes.io/docs/concepts/scheduling-eviction/node-pressure-eviction/)
