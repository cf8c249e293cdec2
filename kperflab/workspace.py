"""A namespace of one's own for an experiment, deleted on exit, on error and on KeyboardInterrupt.

    with cluster.workspace("foundations") as ws:
        ws.run(workloads.cpu_burner(cores=0.5))

Namespaces carry ``app.kubernetes.io/managed-by=kperflab``; `kperflab clean` deletes those a dead kernel left.
Workspaces still open when the interpreter exits (a kernel restart) are deleted by an atexit hook.
"""

from __future__ import annotations

import atexit
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .cluster import MANAGED_BY, translate
from .errors import ExperimentFailed, KperflabError

Obj = dict[str, Any]
_OPEN: set[Workspace] = set()
_OPEN_LOCK = threading.Lock()


def _name(base: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:40] or "ws"
    return f"kperflab-{slug}-{uuid.uuid4().hex[:5]}"


class Workspace:
    def __init__(self, cluster: Any, name: str, *, delete_timeout: float = 120.0, labels: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.base = name
        self.namespace = _name(name)
        self.delete_timeout = delete_timeout
        self.labels = {MANAGED_BY: "kperflab", "kperflab.dev/workspace": re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:63],
                       **(labels or {})}
        self.created = False

    # -- lifetime ------------------------------------------------------------------------------
    def __enter__(self) -> Workspace:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> Workspace:
        from kubernetes import client

        try:
            self.cluster.core.create_namespace(client.V1Namespace(
                metadata=client.V1ObjectMeta(name=self.namespace, labels=self.labels)), _request_timeout=self.cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, self.cluster.conn.server, verb="create", resource="namespaces") from None
        self.created = True
        with _OPEN_LOCK:
            _OPEN.add(self)
        return self

    def close(self, wait: bool = True) -> None:
        """Delete the namespace (everything in it goes with it) and wait until it is gone. A second Ctrl-C during
        the wait stops waiting; the deletion has already been asked for."""
        if not self.created:
            return
        try:
            self.cluster.core.delete_namespace(self.namespace, grace_period_seconds=0, _request_timeout=self.cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) != 404:
                raise translate(exc, self.cluster.conn.server, verb="delete", resource=f"namespace {self.namespace}") from None
        with _OPEN_LOCK:
            _OPEN.discard(self)
        self.created = False
        if wait:
            deadline = time.monotonic() + self.delete_timeout
            try:
                while time.monotonic() < deadline and self._exists():
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass

    def _exists(self) -> bool:
        try:
            self.cluster.core.read_namespace(self.namespace, _request_timeout=self.cluster.timeout)
            return True
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) == 404:
                return False
            raise

    # -- pods ----------------------------------------------------------------------------------
    def create(self, manifest: Obj) -> str:
        """Create a pod from a manifest (a dict, as `kperflab.workloads` makes them); returns its name."""
        try:
            pod = self.cluster.core.create_namespaced_pod(self.namespace, manifest, _request_timeout=self.cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            err = translate(exc, self.cluster.conn.server, verb="create", resource="pods")
            raise ExperimentFailed("create pod", err.message, hint=err.hint) from None
        return pod.metadata.name

    def pod(self, name: str) -> Any:
        try:
            return self.cluster.core.read_namespaced_pod(name, self.namespace, _request_timeout=self.cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, self.cluster.conn.server, resource=f"pod {name}") from None

    def wait_for(self, name: str, done: Callable[[Any], bool], timeout: float = 60.0, what: str = "ready",
                 progress: bool = True, fail: Callable[[Any], str | None] | None = None) -> Any:
        """Poll the pod until ``done(pod)``; raise `ExperimentFailed` on timeout or when ``fail(pod)`` says why."""
        from tqdm.auto import tqdm

        deadline = time.monotonic() + timeout
        bar = tqdm(total=round(timeout), desc=f"{name}: {what}", unit="s", leave=False, disable=not progress,
                   bar_format="{desc} {elapsed}")
        try:
            while True:
                pod = self.pod(name)
                if done(pod):
                    return pod
                why = fail(pod) if fail else None
                if why:
                    raise ExperimentFailed(f"wait for {name} to be {what}", why, hint=self._hint(pod))
                if time.monotonic() > deadline:
                    raise ExperimentFailed(f"wait for {name} to be {what}", f"still {pod.status.phase} after {timeout:.0f} s",
                                           hint=self._hint(pod))
                bar.update(0)
                time.sleep(0.2)
        finally:
            bar.close()

    def run(self, manifest: Obj, until: str = "Running", timeout: float = 60.0, progress: bool = True) -> Any:
        """Create a pod and wait until it is ``Running`` (or ``Succeeded``/``Finished`` for a pod that exits)."""
        name = self.create(manifest)

        def done(pod: Any) -> bool:
            phase = pod.status.phase
            if until == "Finished":
                return phase in ("Succeeded", "Failed")
            return phase == until

        def fail(pod: Any) -> str | None:
            if until != "Finished" and pod.status.phase in ("Failed", "Succeeded") and pod.status.phase != until:
                return f"the pod ended {pod.status.phase}"
            for cs in pod.status.container_statuses or []:
                w = cs.state.waiting if cs.state else None
                if w and w.reason in ("ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError", "InvalidImageName"):
                    return f"{w.reason}: {w.message or ''}".strip()
            return None

        return self.wait_for(name, done, timeout, until.lower(), progress, fail)

    def logs(self, name: str, container: str | None = None, previous: bool = False) -> str:
        try:
            return self.cluster.core.read_namespaced_pod_log(name, self.namespace, container=container, previous=previous,
                                                             _request_timeout=self.cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, self.cluster.conn.server, resource=f"pods/log {name}") from None

    def delete(self, name: str) -> None:
        try:
            self.cluster.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0,
                                                    _request_timeout=self.cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) != 404:
                raise translate(exc, self.cluster.conn.server, verb="delete", resource=f"pod {name}") from None

    def _hint(self, pod: Any) -> str:
        return f"See `kubectl describe pod {pod.metadata.name} -n {self.namespace}` and its events."


def terminated(pod: Any, container: str | None = None) -> Any:
    """The last termination of a container (current state, else last state), or None."""
    for cs in pod.status.container_statuses or []:
        if container and cs.name != container:
            continue
        if cs.state and cs.state.terminated:
            return cs.state.terminated
        if cs.last_state and cs.last_state.terminated:
            return cs.last_state.terminated
    return None


@atexit.register
def _close_all() -> None:
    with _OPEN_LOCK:
        left = list(_OPEN)
    for ws in left:
        try:
            ws.close(wait=False)
        except (KperflabError, Exception):  # noqa: BLE001 - best effort at exit
            pass
