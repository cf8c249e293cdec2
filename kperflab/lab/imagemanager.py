"""The kubelet's image manager: `imagePullPolicy`, pulls one at a time (``serializeImagePulls``), the pull back-off,
and the events and waiting reasons the kubelet gives (pkg/kubelet/images/image_manager.go, events.go).

``ensure(pod, container)`` is called from the kubelet's sync loop and never blocks on the network: it answers with the
image when it is there, or with why the container waits (``ContainerCreating`` while a pull runs, ``ErrImagePull``,
``ImagePullBackOff``, ``ErrImageNeverPull``); a pull runs on the puller thread and wakes the kubelet when it ends.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .stats.metrics_server import go_duration

log = logging.getLogger("kperflab.lab.images")
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0  # the kubelet's image pull back-off: 10 s doubling to 300 s


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


class ImageManager:
    def __init__(self, store: Store, event: Callable[..., None], wake: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.event = event  # event(pod, type, reason, message, field_path)
        self.wake = wake
        self.clock = clock
        self._lock = threading.Lock()
        self._pulls: dict[str, _Pull] = {}  # ref → the pull in flight or just ended
        self._waiting: dict[tuple[str, str], _Pull] = {}  # (pod uid, ref) → the pull this container waits for
        self._backoff: dict[tuple[str, str], tuple[float, float]] = {}  # (pod uid, ref) → (until, current step)
        self._noted: dict[tuple[str, str], float] = {}  # the back-off window whose events were given
        self._queue: queue.Queue[_Pull | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="image-puller", daemon=True)
        self._worker.start()

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            p = self._queue.get()
            if p is None:
                return
            p.started = self.clock()
            try:
                p.result = self.store.pull(p.ref)
            except Exception as exc:  # noqa: BLE001 - any failure is the pull's reason, shown to the user
                p.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.info("pull of %s failed: %s", p.ref, p.error)
            p.finished = self.clock()
            with self._lock:
                self._pulls.pop(p.ref, None)
            p.done.set()
            self.wake()

    def ensure(self, pod: dict[str, Any], spec: dict[str, Any], field_path: str, first_start: bool) -> StoredImage | Waiting:
        """The image for this container start, or why it must wait (and the events a kubelet gives on the way)."""
        ref = str(spec.get("image", ""))
        uid = pod["metadata"]["uid"]
        key = (uid, ref)
        policy = pull_policy(spec)
        with self._lock:
            waiting = self._waiting.get(key)
        if waiting is not None:
            if not waiting.done.is_set():
                return Waiting("ContainerCreating")
            with self._lock:
                self._waiting.pop(key, None)
            if waiting.error:
                return self._failed(pod, key, waiting.error, field_path)
            self._backoff.pop(key, None)
            took = waiting.finished - waiting.started
            self.event(pod, "Normal", "Pulled",
                       f'Successfully pulled image "{ref}" in {go_duration(took)} ({go_duration(waiting.finished - waiting.queued)} '
                       f"including waiting). Image size: {waiting.result.image.size} bytes.", field_path)
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
            p = self._pulls.get(ref)
            if p is None:
                p = self._pulls[ref] = _Pull(ref, self.clock())
                self._queue.put(p)
            self._waiting[key] = p
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
