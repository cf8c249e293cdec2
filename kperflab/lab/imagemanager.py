"""The kubelet's image manager: `imagePullPolicy`, serial or parallel pulls (``serializeImagePulls``,
``maxParallelImagePulls``), the pull back-off, image garbage collection by disk thresholds, and the events and
waiting reasons the kubelet gives (pkg/kubelet/images: image_manager.go, puller.go, image_gc_manager.go, events.go).

``ensure(pod, container)`` is called from the kubelet's sync loop and never blocks on the network: it answers with the
image when it is there, or with why the container waits (``ContainerCreating`` while a pull runs, ``ErrImagePull``,
``ImagePullBackOff``, ``ErrImageNeverPull``); a pull runs on a puller thread and wakes the kubelet when it ends.

Pulls, as upstream's pullers run them: with ``serializeImagePulls: true`` (the default) one at a time, in the order
asked; with ``false`` up to ``maxParallelImagePulls`` at once (no limit when it is unset). Either way one pod's images
are pulled one after the other (the kubelet starts a pod's containers in order and blocks on each image), so a pod's
second image waits, without a ``Pulling`` event, until its first is pulled. The ``Pulled`` event's first duration is
the pull itself (from when a pull slot was free), the second "including waiting" counts from the ``Pulling`` event,
so it includes the wait for a slot behind other pods' pulls.

Image garbage collection (`garbage_collect`), as the kubelet's image GC manager: when the image filesystem's usage
(``100 - available*100/capacity``) is at or above ``imageGCHighThresholdPercent``, images no container uses are
removed, least recently used first, skipping those younger than ``imageMinimumGCAge``, until the sizes removed reach
``capacity*(100-imageGCLowThresholdPercent)/100 - available``. Upstream runs it every 5 minutes; the lab every
`GC_PERIOD` (15 s) so that a lesson sees it within a cell. Upstream gives no event on success (it logs "Image garbage
collection succeeded"); when it cannot free enough it records ``FreeDiskSpaceFailed`` on the Node, and from the
second failure in a row ``ImageGCFailed`` too.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .stats.metrics_server import go_duration

log = logging.getLogger("kperflab.lab.images")
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0  # the kubelet's image pull back-off: 10 s doubling to 300 s
GC_PERIOD = 15.0  # upstream's ImageGCPeriod is 5 minutes
# kubelet_image_pull_duration_seconds (pkg/kubelet/metrics): its buckets and its image_size_in_bytes label values
PULL_DURATION_BUCKETS = (1, 5, 10, 20, 30, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600)
_MB, _GB = 1024 * 1024, 1024 * 1024 * 1024
IMAGE_SIZE_BUCKETS = ((0, "0-10MB"), (10 * _MB, "10MB-100MB"), (100 * _MB, "100MB-500MB"), (500 * _MB, "500MB-1GB"),
                      (1 * _GB, "1GB-5GB"), (5 * _GB, "5GB-10GB"), (10 * _GB, "10GB-20GB"), (20 * _GB, "20GB-30GB"),
                      (30 * _GB, "30GB-40GB"), (40 * _GB, "40GB-60GB"), (60 * _GB, "60GB-100GB"), (100 * _GB, "GT100GB"))


def image_size_bucket(size: int) -> str:
    """The ``image_size_in_bytes`` label of ``kubelet_image_pull_duration_seconds`` for an image of ``size`` bytes.

    >>> [image_size_bucket(n) for n in (0, 1, 10 * 1024 * 1024, 10 * 1024 * 1024 + 1, 500_000_000, 2 << 30)]
    ['N/A', '0-10MB', '0-10MB', '10MB-100MB', '100MB-500MB', '1GB-5GB']
    """
    if size <= 0:
        return "N/A"
    for lower, label in reversed(IMAGE_SIZE_BUCKETS):
        if size > lower:
            return label
    return ""


class StoredImage(Protocol):
    lowerdirs: list[Any]
    config: dict[str, Any]
    repo_digest: str
    size: int


class Store(Protocol):
    def get(self, ref: str) -> StoredImage | None: ...
    def pull(self, ref: str) -> Any: ...  # a result with .image, .bytes, .seconds; raises with the reason


def pull_policy(spec: dict[str, Any]) -> str:
    """The container's imagePullPolicy, defaulted as at admission: Always for `:latest` or no tag, else IfNotPresent.

    >>> [pull_policy({"image": i}) for i in ("busybox", "busybox:latest", "python:3.13-slim", "x@sha256:ab")]
    ['Always', 'Always', 'IfNotPresent', 'IfNotPresent']
    """
    if spec.get("imagePullPolicy"):
        return str(spec["imagePullPolicy"])
    image = str(spec.get("image", ""))
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


@dataclass
class Waiting:
    """Why a container cannot start yet: its waiting reason and message."""

    reason: str
    message: str = ""


@dataclass
class _Pull:
    ref: str
    queued: float
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str = ""
    started: float = 0.0
    finished: float = 0.0


@dataclass
class _Wait:
    """One container's wait for a pull: asked at ``asked`` (its ``Pulling`` event)."""

    pull: _Pull
    asked: float


@dataclass(frozen=True)
class PullRecord:
    """One successful pull as the ``Pulled`` event told it: for ``kubelet_image_pull_duration_seconds``."""

    image: str
    size: int
    seconds: float  # the pull itself
    seconds_including_waiting: float
    finished: float  # the manager's clock


@dataclass(frozen=True)
class GCResult:
    """One image GC round: the usage seen, what it had to free, what it removed (image ids) and freed (their sizes)."""

    usage_percent: int
    amount_to_free: int
    freed: int
    removed: tuple[str, ...]
    error: str = ""


class ImageManager:
    def __init__(self, store: Store, event: Callable[..., None], wake: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic, *, config: Any = None,
                 in_use: Callable[[], set[str]] | None = None,
                 node_event: Callable[[str, str, str], None] | None = None, gc_period: float = GC_PERIOD) -> None:
        self.store = store
        self.event = event  # event(pod, type, reason, message, field_path)
        self.wake = wake
        self.clock = clock
        self.config = config  # a KubeletConfig (None: the kubelet's defaults)
        self.in_use = in_use
        self.node_event = node_event
        self.parallel = config.parallel_pulls if config is not None else 1  # 0: no limit
        self._lock = threading.Lock()
        self._pulls: dict[str, _Pull] = {}  # ref → the pull in flight or just ended
        self._waiting: dict[tuple[str, str], _Wait] = {}  # (pod uid, ref) → the pull this container waits for
        self._backoff: dict[tuple[str, str], tuple[float, float]] = {}  # (pod uid, ref) → (until, current step)
        self._noted: dict[tuple[str, str], float] = {}  # the back-off window whose events were given
        self._records: list[PullRecord] = []
        self._queue: queue.Queue[_Pull | None] = queue.Queue()
        self._slots = threading.BoundedSemaphore(self.parallel) if self.parallel else None
        self._closed = threading.Event()
        self._gc_failed_before = False
        self._last_used: dict[str, float] = {}  # image id → wall time it was last seen in use
        self.gc_removed = {"space": 0, "age": 0}  # kubelet_image_garbage_collected_total by reason
        self.gc_rounds: list[GCResult] = []
        self._worker = threading.Thread(target=self._run, name="image-puller", daemon=True)
        self._worker.start()
        self._gc_thread: threading.Thread | None = None
        if in_use is not None and hasattr(store, "fs_stats"):
            self._gc_thread = threading.Thread(target=self._gc_loop, args=(gc_period,), name="image-gc", daemon=True)
            self._gc_thread.start()

    def close(self) -> None:
        self._closed.set()
        self._queue.put(None)

    # -- pulling ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        """Hand queued pulls to puller threads in the order asked, as many at once as the setting allows."""
        while True:
            p = self._queue.get()
            if p is None:
                return
            if self._slots is not None:
                self._slots.acquire()
            if self.parallel == 1:
                self._pull(p)  # serialized: on this thread, one after the other
            else:
                threading.Thread(target=self._pull, args=(p,), name="image-pull", daemon=True).start()

    def _pull(self, p: _Pull) -> None:
        p.started = self.clock()
        try:
            p.result = self.store.pull(p.ref)
        except Exception as exc:  # noqa: BLE001 - any failure is the pull's reason, shown to the user
            p.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.info("pull of %s failed: %s", p.ref, p.error)
        finally:
            if self._slots is not None:
                self._slots.release()
        p.finished = self.clock()
        with self._lock:
            self._pulls.pop(p.ref, None)
        p.done.set()
        self.wake()

    def pull_records(self) -> list[PullRecord]:
        """Every successful pull reported in a ``Pulled`` event so far (for ``kubelet_image_pull_duration_seconds``,
        observed with the duration including waiting, labelled by `image_size_bucket`)."""
        with self._lock:
            return list(self._records)

    def pulls_in_flight(self) -> int:
        with self._lock:
            return sum(1 for p in self._pulls.values() if p.started and not p.done.is_set())

    def ensure(self, pod: dict[str, Any], spec: dict[str, Any], field_path: str, first_start: bool) -> StoredImage | Waiting:
        """The image for this container start, or why it must wait (and the events a kubelet gives on the way)."""
        ref = str(spec.get("image", ""))
        uid = pod["metadata"]["uid"]
        key = (uid, ref)
        policy = pull_policy(spec)
        with self._lock:
            w = self._waiting.get(key)
        if w is not None:
            waiting = w.pull
            if not waiting.done.is_set():
                return Waiting("ContainerCreating")
            with self._lock:
                self._waiting.pop(key, None)
            if waiting.error:
                return self._failed(pod, key, waiting.error, field_path)
            self._backoff.pop(key, None)
            took = waiting.finished - max(waiting.started, w.asked)
            total = max(took, waiting.finished - w.asked)
            size = waiting.result.image.size
            with self._lock:
                self._records.append(PullRecord(ref, size, took, total, waiting.finished))
                del self._records[:-10000]
            self.event(pod, "Normal", "Pulled",
                       f'Successfully pulled image "{ref}" in {go_duration(took)} ({go_duration(total)} '
                       f"including waiting). Image size: {size} bytes.", field_path)
            return waiting.result.image
        present = self.store.get(ref)
        if policy == "Never" or (policy == "IfNotPresent" and present is not None):
            if present is None:
                msg = f'Container image "{ref}" is not present with pull policy of Never'
                self.event(pod, "Warning", "ErrImageNeverPull", msg, field_path)
                return Waiting("ErrImageNeverPull", msg)
            if first_start:
                self.event(pod, "Normal", "Pulled", f'Container image "{ref}" already present on machine', field_path)
            return present
        until, _ = self._backoff.get(key, (0.0, 0.0))
        if self.clock() < until:
            if self._noted.get(key) != until:  # once per back-off window, not on every sync
                self._noted[key] = until
                self.event(pod, "Normal", "BackOff", f'Back-off pulling image "{ref}"', field_path)
                self.event(pod, "Warning", "Failed", "Error: ImagePullBackOff", field_path)
            return Waiting("ImagePullBackOff", f'Back-off pulling image "{ref}"')
        with self._lock:
            # the kubelet pulls one pod's images one after the other: another of this pod's pulls holds this one back
            if any(k[0] == uid and k[1] != ref and not v.pull.done.is_set() for k, v in self._waiting.items()):
                return Waiting("ContainerCreating")
            now = self.clock()
            p = self._pulls.get(ref)
            if p is None:
                p = self._pulls[ref] = _Pull(ref, now)
                self._queue.put(p)
            self._waiting[key] = _Wait(p, now)
        self.event(pod, "Normal", "Pulling", f'Pulling image "{ref}"', field_path)
        return Waiting("ContainerCreating")

    def _failed(self, pod: dict[str, Any], key: tuple[str, str], error: str, field_path: str) -> Waiting:
        ref = key[1]
        _, step = self._backoff.get(key, (0.0, 0.0))
        step = BACKOFF_START if not step else min(BACKOFF_MAX, step * 2)
        self._backoff[key] = (self.clock() + step, step)
        msg = f'Failed to pull image "{ref}": {error}'
        if error.endswith("not found"):
            msg += " (the lab's registry holds the images it built: `kperflab lab images` lists them)"
        self.event(pod, "Warning", "Failed", msg, field_path)
        self.event(pod, "Warning", "Failed", "Error: ErrImagePull", field_path)
        return Waiting("ErrImagePull", msg)

    def forget(self, pod_uid: str) -> None:
        """A pod is gone: drop its back-off and waits (a pull in flight still completes for others)."""
        with self._lock:
            for key in [k for k in self._waiting if k[0] == pod_uid]:
                self._waiting.pop(key, None)
        for key in [k for k in self._backoff if k[0] == pod_uid]:
            self._backoff.pop(key, None)
            self._noted.pop(key, None)

    # -- image garbage collection -------------------------------------------------------------------------

    def _gc_loop(self, period: float) -> None:
        while not self._closed.wait(period):
            try:
                self.run_gc()
            except Exception:  # noqa: BLE001 - a failed round must not end image GC for the lab's lifetime
                log.exception("image garbage collection round failed")

    def run_gc(self) -> GCResult:
        """One round of the kubelet's image GC with its events: the kubelet's ``StartGarbageCollection`` loop body."""
        res = self.garbage_collect()
        if res.error:
            if self._gc_failed_before:
                log.error("Image garbage collection failed multiple times in a row: %s", res.error)
                if self.node_event is not None:
                    self.node_event("Warning", "ImageGCFailed", res.error)
            else:
                log.error("Image garbage collection failed once. Stats initialization may not have completed yet: %s",
                          res.error)
            self._gc_failed_before = True
        else:
            if self._gc_failed_before or res.removed:
                log.info("Image garbage collection succeeded")
            self._gc_failed_before = False
        return res

    def _images_in_use(self) -> set[str]:
        """Names and ids of the images containers use (the kubelet's), plus those a container waits to start from."""
        from .images.reference import InvalidImageName, parse

        names = set(self.in_use() if self.in_use is not None else ())
        with self._lock:
            names |= {k[1] for k in self._waiting}
        out = set()
        for n in names:
            out.add(n)
            if not n.startswith("sha256:"):
                try:
                    out.add(str(parse(n)))
                except InvalidImageName:
                    pass
        return out

    def delete_unused_images(self) -> GCResult:
        """The image GC manager's ``DeleteUnusedImages`` (what the eviction manager calls to reclaim imagefs under
        disk pressure): every image no container uses and older than ``imageMinimumGCAge``, whatever the usage."""
        return self.garbage_collect(everything=True)

    def garbage_collect(self, everything: bool = False) -> GCResult:
        """The image GC manager's ``GarbageCollect``: free space down to the low threshold when usage is at or above the
        high one. Images in use get ``last used = now``; the rest are removed least recently used first (ties: the
        earliest pulled), skipping those younger than ``imageMinimumGCAge``, until their sizes add up to the amount to
        free."""
        high = self.config.imageGCHighThresholdPercent if self.config is not None else 85
        low = self.config.imageGCLowThresholdPercent if self.config is not None else 80
        min_age = self.config.image_minimum_gc_age if self.config is not None else 120.0
        fs = self.store.fs_stats()  # type: ignore[attr-defined]
        capacity, available = int(fs["capacityBytes"]), min(int(fs["availableBytes"]), int(fs["capacityBytes"]))
        if capacity == 0:
            msg = "invalid capacity 0 on image filesystem"
            if self.node_event is not None:
                self.node_event("Warning", "InvalidDiskCapacity", msg)
            return GCResult(0, 0, 0, (), msg)
        usage = 100 - int(available * 100 / capacity)
        now = time.time()
        in_use = self._images_in_use()
        images = self.store.list()  # type: ignore[attr-defined]
        for img in images:  # detectImages: what is in use now was used now
            if in_use & {img.id, *img.repo_tags, *img.repo_digests}:
                self._last_used[img.id] = now
        if usage < high and not everything:
            return GCResult(usage, 0, 0, ())
        amount = capacity * (100 - low) // 100 - available if not everything else 2**63 - 1
        if everything:
            log.info("Attempting to delete unused images")
        else:
            log.info("Disk usage on image filesystem is over the high threshold, trying to free bytes down to the low "
                     "threshold usage=%d highThreshold=%d amountToFree=%d lowThreshold=%d", usage, high, amount, low)
        order = sorted(images, key=lambda i: (self._last_used.get(i.id, i.last_used), i.pulled_at))
        freed, removed, errors = 0, [], []
        for img in order:
            if self._last_used.get(img.id) == now:
                continue  # in use
            if now - img.pulled_at < min_age:
                continue  # may have just been pulled for a container about to start
            log.info("Removing image to free bytes imageID=%s size=%d", img.id, img.size)
            try:
                self.store.remove(img.id)  # type: ignore[attr-defined]
            except OSError as exc:
                errors.append(f"{img.id}: {exc}")
                continue
            self._last_used.pop(img.id, None)
            freed += img.size
            removed.append(img.id)
            self.gc_removed["space"] += 1
            if freed >= amount:
                break
        error = ""
        if errors:
            error = f"wanted to free {amount} bytes, but freed {freed} bytes space with errors in image deletion: " + \
                "; ".join(errors)
        elif freed < amount and not everything:
            error = (f"Failed to garbage collect required amount of images. Attempted to free {amount} bytes, but only "
                     f"found {freed} bytes eligible to free.")
            if self.node_event is not None:
                self.node_event("Warning", "FreeDiskSpaceFailed", error)
        res = GCResult(usage, amount, freed, tuple(removed), error)
        with self._lock:
            self.gc_rounds.append(res)
            del self.gc_rounds[:-100]
        return res


class ImageMetrics:
    """A Prometheus collector (``registry.register(ImageMetrics(lambda: kubelet.images))``) for the kubelet's image
    metrics: ``kubelet_image_pull_duration_seconds`` (histogram by ``image_size_in_bytes`` with upstream's buckets,
    each pull's duration including its wait for a pull slot, as the ``Pulled`` event's second figure: PR #121719) and ``kubelet_image_garbage_collected_total``
    (by ``reason``: ``space``; the lab sets no ``imageMaximumGCAge``, so never ``age``)."""

    def __init__(self, manager: Callable[[], ImageManager | None]) -> None:
        self.manager = manager

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        m = self.manager()
        if m is None:
            return
        h = HistogramMetricFamily("kubelet_image_pull_duration_seconds", "Duration in seconds to pull an image.",
                                  labels=["image_size_in_bytes"])
        by_bucket: dict[str, list[float]] = {}
        for r in m.pull_records():
            by_bucket.setdefault(image_size_bucket(r.size), []).append(r.seconds_including_waiting)
        for label, secs in sorted(by_bucket.items()):
            buckets = [(str(float(le)), float(sum(1 for s in secs if s <= le))) for le in PULL_DURATION_BUCKETS]
            h.add_metric([label], buckets + [("+Inf", float(len(secs)))], math.fsum(secs))
        yield h
        c = CounterMetricFamily("kubelet_image_garbage_collected", "Total number of images garbage collected by the "
                                "kubelet, whether through disk usage or image age.", labels=["reason"])
        for reason, n in sorted(m.gc_removed.items()):
            if n:
                c.add_metric([reason], float(n))
        yield c
