"""The lab's kubelet: turns the pods bound to its node into real processes and reports their status.

One sync loop, woken by store changes and by process exits. The state machine is `lifecycle`'s table; this
module only does the side effects (cgroups, processes, logs, events) and writes status back.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import errors, lifecycle, node, prober, quantity
from .cgroups import Limits, pods_root
from .events import Recorder
from .imagemanager import ImageManager, Waiting
from .images.reference import parse as parse_reference
from .kubeletconfig import KubeletConfig
from .network.podnet import PodNetwork, in_netns, wait_for_own_netns
from .network.resolvconf import pod_resolv_conf
from .runtime.oci import (
    CrunRuntime,
    bundle_config,
    combine_command,
    container_user,
    dial_in_netns,
    set_winsize,
)
from .runtime.process import (
    NOBODY,
    RUNNABLE,
    LogWriter,
    Process,
    Runtime,
    image_family,
    image_id,
    new_container_id,
    parse_cri,
    read_log,
    resolve_command,
)
from .stats.cadvisor import ContainerTarget, PodTarget
from .stats.fsstats import ContainerFsTarget, FsSampler, PodFsTarget
from .store import Store, rfc3339
from .streams import Stdio
from .volumes import MountError, PVPlugins, VolumeManager, local_storage_eviction, resource_value

log = logging.getLogger("kperflab.lab.kubelet")
DEFAULT_PIDS_LIMIT = 1024
TEARDOWN_WORKERS = 16  # pods torn down at once (the kubelet's pod workers: one goroutine per pod)


MIN_SYNC_INTERVAL = 0.05  # seconds between two sync passes: a burst of store changes is one pass


@dataclass
class ContainerRec:
    spec: dict[str, Any]
    init: bool = False
    stage: str = "creating"
    reason: str = ""
    message: str = ""
    exitCode: int = 0
    signal: int = 0
    oomKilled: bool = False
    startedAt: str | None = None
    finishedAt: str | None = None
    containerID: str = ""
    restartCount: int = 0
    last: dict[str, Any] | None = None
    image_id: str = ""  # the image's repo digest (what containerStatuses[].imageID reports)
    image_name: str = ""  # the image's repo tag as the runtime names it (containerStatuses[].image)
    start_failures: int = 0  # starts that failed in a row (their back-off)
    stdin_w: int | None = None  # where `kubectl attach -i` writes: the container's stdin pipe, or its pty
    tty: int | None = None  # the container's pty master (spec.tty)
    exec_ctx: dict[str, Any] = field(default_factory=dict)  # process runtime: env, cwd, uid, gid for `kubectl exec`
    backoff_until: float = 0.0
    proc: Process | None = None
    cgroup: str | None = None
    runs: int = 0  # how many times it was started (log file index)
    done: bool = False  # exited and will not be restarted
    oom_events: int = 0  # OOM kills in this container's earlier runs (its cgroups are gone)
    probe_killed: bool = False  # this run is being killed for a failed liveness/startup probe
    probe_kill_deadline: float = 0.0  # when SIGTERM turns into SIGKILL for that kill
    stop_signal: int = 15  # SIGTERM, unless the image names its StopSignal (containerd uses it), e.g. SIGQUIT

    @property
    def name(self) -> str:
        return self.spec["name"]

    def record(self) -> dict[str, Any]:
        return {"stage": self.stage, "reason": self.reason, "message": self.message, "exitCode": self.exitCode,
                "signal": self.signal, "oomKilled": self.oomKilled, "startedAt": self.startedAt,
                "finishedAt": self.finishedAt, "containerID": f"kperflab://{self.containerID}" if self.containerID else "",
                "restartCount": self.restartCount, "last": self.last}


@dataclass
class PodRec:
    uid: str
    namespace: str
    name: str
    containers: list[ContainerRec]
    inits: list[ContainerRec]
    cgroup: str | None = None
    sandbox: Process | None = None
    started: float = 0.0  # epoch seconds, when the kubelet first saw the pod
    killing: bool = False
    kill_deadline: float = 0.0
    finished: bool = False
    sandbox_lost: bool = False  # died with restartPolicy Never: no new one
    oci: bool = False  # its containers run from images by crun (else as processes)
    ip: str = ""  # its address on the pod network (empty: the node's, as for hostNetwork)
    sandbox_id: str = ""  # the current sandbox's id (its network attachment is held under it)
    sandboxes: int = 0  # sandboxes made so far
    warned: set[str] = field(default_factory=set)
    evicted: str = ""  # the eviction manager's message once the pod is evicted
    torn: bool = False  # torn down: its processes, cgroups, network and volumes are gone
    garbage: list[Process] = field(default_factory=list)  # exited containers whose bundles are yet to be removed
    dir_left: bool = False  # its directory is yet to be removed (nothing is mounted under it)
    net_left: bool = False  # its sandbox's address is yet to be released
    final_unsaved: bool | None = None  # finished, its final status not yet written (the init_done it was made with)
    restored: bool = False  # it ran before this kubelet started: leftovers of its old sandbox are cleaned first

    @property
    def all(self) -> list[ContainerRec]:
        return self.inits + self.containers


def _sum_limit(containers: list[dict[str, Any]], kind: str, what: str) -> int | None:
    total = 0
    for c in containers:
        v = ((c.get("resources") or {}).get(kind) or {}).get(what)
        if v is None:
            return None
        total += quantity.millicores(v) if what == "cpu" else quantity.to_bytes(v)
    return total


def container_limits(spec: dict[str, Any]) -> Limits:
    res = spec.get("resources") or {}
    lim, req = res.get("limits") or {}, res.get("requests") or {}
    return Limits(
        cpu_limit_milli=quantity.millicores(lim["cpu"]) if "cpu" in lim else None,
        cpu_request_milli=quantity.millicores(req["cpu"]) if "cpu" in req else None,
        memory_limit=quantity.to_bytes(lim["memory"]) if "memory" in lim else None,
    )


def pod_limits(pod: dict[str, Any]) -> Limits:
    cs = pod["spec"].get("containers") or []
    req = sum(quantity.millicores(((c.get("resources") or {}).get("requests") or {}).get("cpu", 0)) for c in cs)
    return Limits(cpu_limit_milli=_sum_limit(cs, "limits", "cpu"), cpu_request_milli=req or None,
                  memory_limit=_sum_limit(cs, "limits", "memory"), pids_limit=DEFAULT_PIDS_LIMIT)


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def stop_signal(name: str | None) -> int:
    """The signal an image's ``StopSignal`` names (``SIGQUIT``, ``QUIT`` or ``3``, as containerd parses it); SIGTERM
    when it names none or none that exists.

    >>> stop_signal("SIGQUIT") == signal.SIGQUIT, stop_signal("9") == signal.SIGKILL, stop_signal(None) == signal.SIGTERM
    (True, True, True)
    """
    text = (name or "").strip().upper()
    if text.isdigit():
        return int(text) if 0 < int(text) < signal.NSIG else signal.SIGTERM
    found = getattr(signal, text if text.startswith("SIG") else "SIG" + text, None) if text else None
    return int(found) if isinstance(found, signal.Signals) else signal.SIGTERM


def _ran(status: dict[str, Any]) -> bool:
    """A container status that says its container existed: an ID, started, running or terminated."""
    state = status.get("state") or {}
    return bool(status.get("containerID") or status.get("started") or "running" in state or "terminated" in state)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion; $$ is a literal $, unknown references stay as written."""
    return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


class Kubelet:
    def __init__(self, store: Store, node_name: str, runtime: Runtime, state_dir: Path, host_ip: str = "127.0.0.1",
                 api_port: int = 0, oci: CrunRuntime | None = None, image_store: Any = None,
                 run_dir: Path | None = None, no_oci: str = "", podnet: PodNetwork | None = None,
                 cluster_dns: str = "10.96.0.10", config: KubeletConfig | None = None,
                 pv_plugins: PVPlugins | None = None, sa_token: Any = None) -> None:
        self.store = store
        self.config = config or KubeletConfig()
        self.node = node_name
        self.runtime = runtime
        self.oci = oci if image_store is not None else None  # containers from images by crun; else the process runtime
        self.image_store = image_store
        self.run_dir = run_dir or state_dir / "run"
        self.no_oci = no_oci  # why the OCI runtime is not used here ("" when it is)
        self.state_dir = state_dir
        self.podnet = podnet if self.oci is not None else None  # the pod network (OCI pods only; else host network)
        self.host_ip = podnet.gateway if self.podnet is not None else host_ip
        self.cluster_dns = cluster_dns
        self.api_port = api_port
        self.recorder = Recorder(store, "kubelet", node_name)
        self.pods: dict[str, PodRec] = {}
        self._wake = threading.Event()
        self.images = self._image_manager(image_store) if self.oci is not None else None
        self._lock = threading.RLock()
        # teardown (crun delete, veth, cgroups, volumes) and removal of terminated pods, off the sync loop: uid → its job
        self._tearing: dict[str, Future[None]] = {}
        self._teardown_pool = ThreadPoolExecutor(TEARDOWN_WORKERS, thread_name_prefix="kubelet-teardown")
        self._gc_pool = ThreadPoolExecutor(2, thread_name_prefix="kubelet-gc")  # bundles, pod dirs, addresses
        self._closed = False
        self.volumes = VolumeManager(store, self.run_dir, self.recorder.event, self._allocatable, pv_plugins,
                                     sa_token=sa_token)  # projected serviceAccountToken: the lab's TokenRequest
        self.fs_stats = FsSampler(self.fs_targets, state_dir)
        self.enforced = runtime.driver is not None
        self.pods_cgroup = pods_root(runtime.lab_id)
        self.probes = prober.Manager(self, self.recorder.event, self._probe_view, self.wake)  # workers on own threads
        self.node_status_now: Any = None  # the node status update (the lab's heartbeat), called when pressure flips
        self.disk_pressure: node.DiskSignal | None = None  # the eviction manager's last nodefs observation
        self._next_eviction = 0.0

    def _image_manager(self, image_store: Any) -> ImageManager:
        """The image manager with the kubelet's settings, what its containers use (image GC spares those) and the
        Node's events — passed only where this ImageManager takes them."""
        extra = {"config": self.config, "in_use": self.images_in_use, "node_event": self.node_event}
        params = inspect.signature(ImageManager).parameters
        return ImageManager(image_store, self.recorder.event, self.wake, **{k: v for k, v in extra.items() if k in params})

    def images_in_use(self) -> set[str]:
        """Every image a container the kubelet knows refers to, running or exited (as the kubelet's image GC counts
        them): the spec's reference, the runtime's name and the repo digest. Lock-free (a copy of the pod table), so
        the image manager's GC thread never waits on a sync."""
        out = set()
        for rec in list(self.pods.values()):
            for c in rec.all:
                out.update(x for x in (c.spec.get("image"), c.image_name, c.image_id) if x)
        return out

    def node_event(self, type_: str, reason: str, message: str) -> None:
        """An event on this Node (the kubelet's nodeRef: kind Node, uid = the node's name)."""
        ref = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": self.node, "uid": self.node}}
        self.recorder.event(ref, type_, reason, message)

    def _allocatable(self) -> dict[str, Any]:
        node = self.store.try_get("v1/nodes", "", self.node)
        return dict(((node or {}).get("status") or {}).get("allocatable") or {})

    # -- loop ------------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        def watch_store() -> None:
            rv = self.store.resource_version
            while not stop.is_set():
                new = self.store.wait_for_change(rv, 1.0)
                if new != rv:
                    rv = new
                    self._wake.set()

        threading.Thread(target=watch_store, daemon=True, name="kubelet-store").start()
        threading.Thread(target=self._volume_stats_loop, args=(stop,), daemon=True, name="kubelet-volume-stats").start()
        threading.Thread(target=self._eviction_loop, args=(stop,), daemon=True, name="kubelet-eviction").start()
        last = 0.0
        while not stop.is_set():
            self._wake.wait(0.5)
            gap = MIN_SYNC_INTERVAL - (time.monotonic() - last)
            if gap > 0 and stop.wait(gap):  # changes in a burst are one pass, as the pod workers batch them
                break
            self._wake.clear()
            if stop.is_set():
                break
            last = time.monotonic()
            try:
                self.sync()
            except Exception:  # noqa: BLE001 - the loop must survive any one pod's failure
                log.exception("kubelet sync failed")

    def sync(self) -> None:
        with self._lock:
            # the stored pods themselves, read only (nothing here changes a pod in place; writes build new dicts):
            # copying every pod on every pass was most of the lab's CPU under load
            pods, *_ = self.store.list("v1/pods", None, lambda p: p.get("spec", {}).get("nodeName") == self.node,
                                       copy=False)
            seen = set()
            for pod in pods:
                uid = pod["metadata"]["uid"]
                seen.add(uid)
                if uid in self._tearing:
                    continue  # a worker is tearing it down and removes it
                try:
                    self.sync_pod(pod)
                except errors.APIError as exc:
                    if exc.code >= 500:  # the store could not take a write (a full disk): the next pass tries again
                        log.warning("pod %s/%s: %s", pod["metadata"].get("namespace"), pod["metadata"].get("name"),
                                    exc.message)
                    elif exc.code not in (404, 409):
                        raise
            for uid, rec in list(self.pods.items()):
                if uid not in seen and uid not in self._tearing:  # force-deleted (or its namespace vanished): stop everything
                    rec.killing = True
                    self._finish(rec, remove=False)
                    if self.images is not None:
                        self.images.forget(uid)

    def _finish(self, rec: PodRec, remove: bool) -> None:
        """Tear the pod down and (``remove``) delete it from the store, on a teardown worker: the sync loop goes on,
        and pods terminated together are torn down together, each once."""
        if rec.uid in self._tearing:
            return
        if self._closed:
            self._finish_now(rec, remove)
            return
        self._tearing[rec.uid] = self._teardown_pool.submit(self._finish_now, rec, remove)

    def _finish_now(self, rec: PodRec, remove: bool) -> None:
        try:
            self._teardown(rec, gc=False)
        except Exception:  # noqa: BLE001 - a failed teardown must not keep the pod in the store forever
            log.exception("teardown of pod %s/%s failed", rec.namespace, rec.name)
        if remove:  # its resources are reclaimed: the API object goes (the status manager's canBeDeleted)
            try:
                self.store.remove("v1/pods", rec.namespace, rec.name, uid=rec.uid)
            except errors.APIError:
                pass
        if self._closed:
            self._collect(rec)
        else:
            self._gc_pool.submit(self._collect, rec)
        with self._lock:  # after the removal: a sync that lists the pod still sees it as being torn down
            if self.pods.get(rec.uid) is rec:
                del self.pods[rec.uid]
            self._tearing.pop(rec.uid, None)
        self._wake.set()

    def shutdown(self) -> None:
        self.probes.stop_all()
        with self._lock:
            for rec in list(self.pods.values()):
                self._finish(rec, remove=False)
            pending = list(self._tearing.values())
        wait_all(pending)  # unlocked: the workers take the lock at their end
        with self._lock:
            self._closed = True
        self._teardown_pool.shutdown(wait=True)
        self._gc_pool.shutdown(wait=True)
        with self._lock:
            for uid in list(self.pods):  # any a sync gave the pool after the wait
                self._teardown(self.pods.pop(uid))
            self.volumes.shutdown()
        if self.images is not None:
            self.images.close()

    # -- one pod ---------------------------------------------------------------------------------
    def _rec(self, pod: dict[str, Any]) -> PodRec:
        uid = pod["metadata"]["uid"]
        rec = self.pods.get(uid)
        if rec is None:
            now = self.store.clock()
            spec = pod["spec"]
            rec = PodRec(uid, pod["metadata"]["namespace"], pod["metadata"]["name"],
                         [ContainerRec(c) for c in spec.get("containers") or []],
                         [ContainerRec(c, init=True) for c in spec.get("initContainers") or []],
                         started=now)
            rec.oci = self.oci is not None
            self.pods[uid] = rec
            self._restore(pod, rec, now)
            self.probes.add_pod(pod)
            if not rec.oci:
                self.recorder.event(pod, "Normal", "ProcessRuntime",
                                    f"The lab runs this pod's containers as processes on the node's own filesystem, not from "
                                    f"their images ({self.no_oci or 'the OCI runtime is off'}); with the OCI runtime crun "
                                    "would run each from its image, in namespaces of its own")
            if not self.enforced:
                self.recorder.event(pod, "Warning", "LimitsNotEnforced",
                                    f"{self.runtime.unenforced[:1].upper()}{self.runtime.unenforced[1:]}: CPU and memory "
                                    "limits of this pod are not enforced")
        return rec

    def _restore(self, pod: dict[str, Any], rec: PodRec, now: float) -> None:
        """A pod the store holds from before this kubelet started (the lab was down, or killed) and whose status
        says it ran: what the kubelet finds after a node reboot. A finished pod stays as it is; one that should run
        gets a new sandbox (``SandboxChanged``) and its containers the runtime's word for a container that was
        running when the node went down — exited, reason ``Unknown``, exit code 255 — then the restart policy
        decides as after any exit (computePodActions: restartPolicy Never makes no new sandbox and the pod fails)."""
        from .tables import parse_time

        status = pod.get("status") or {}
        old = {s.get("name"): s for s in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
               if isinstance(s, dict)}
        if not any(_ran(s) for s in old.values()):
            return  # a new pod (or one that never got a container): nothing to restore
        rec.started = parse_time(status.get("startTime")) or rec.started
        if status.get("phase") in ("Succeeded", "Failed"):
            rec.finished = True  # its status is final; nothing runs again
            return
        if pod["metadata"].get("deletionTimestamp"):
            return  # terminating: nothing runs; the next sync removes it
        rec.restored = True
        rec.sandboxes = 1  # the one before the restart; the new sandbox is the second
        policy = pod["spec"].get("restartPolicy", "Always")
        stamp = rfc3339(now)
        for c in rec.all:
            s = old.get(c.name)
            if s is None or not _ran(s):
                continue
            state, last = s.get("state") or {}, (s.get("lastState") or {}).get("terminated")
            if "running" in state:  # what containerd reports for a container whose process died with the node
                prev = {"exitCode": 255, "reason": "Unknown", "startedAt": state["running"].get("startedAt"),
                        "finishedAt": stamp, "containerID": s.get("containerID", "")}
            else:
                prev = state.get("terminated") or last or {}
            c.restartCount = int(s.get("restartCount") or 0)
            c.runs = max(c.restartCount + 1, self._log_runs(rec, c))  # the next log file is a new one
            c.containerID = str(prev.get("containerID") or s.get("containerID") or "").removeprefix("kperflab://")
            c.image_id, c.image_name = s.get("imageID", ""), s.get("image", "")
            c.stage, c.reason, c.message = "exited", str(prev.get("reason") or ""), str(prev.get("message") or "")
            c.exitCode, c.signal, c.oomKilled = int(prev.get("exitCode") or 0), 0, prev.get("reason") == "OOMKilled"
            c.startedAt, c.finishedAt = prev.get("startedAt"), prev.get("finishedAt")
            self._after_exit(pod, c, now)
            c.backoff_until = 0.0  # the crash back-off lives in the kubelet's memory: a new kubelet starts at once
            if c.init and policy != "Never" and c.done:
                c.done = False  # a new sandbox runs the init containers again (computePodActions)
                c.last = {**c.record(), "stage": "exited"}
        if policy == "Never":
            rec.sandbox_lost = True  # no new sandbox once a container ran; the pod fails
            for c in rec.all:
                c.done = True
            return
        self.recorder.event(pod, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")

    def _log_runs(self, rec: PodRec, c: ContainerRec) -> int:
        """How many log files the container left in the pod's log dir (runs before a restart of the lab)."""
        d = self.state_dir / "pods" / f"{rec.namespace}_{rec.name}_{rec.uid}" / c.name
        try:
            return 1 + max(int(p.stem) for p in d.glob("*.log") if p.stem.isdigit())
        except (OSError, ValueError):
            return 0

    def sync_pod(self, pod: dict[str, Any]) -> None:
        rec = self._rec(pod)
        if pod["metadata"].get("deletionTimestamp"):
            self._terminate(pod, rec)
            return
        if rec.finished:
            if rec.final_unsaved is not None:  # its final status could not be written: again
                self._write_status(pod, rec, rec.final_unsaved)
            return
        if rec.evicted:
            self._evict_now(rec)
        if rec.sandbox is not None and rec.sandbox.popen.poll() is not None:
            self._sandbox_died(pod, rec)
        if rec.sandbox is None and not rec.sandbox_lost and not rec.evicted:
            if not self._volumes_ready(pod, rec):  # as the kubelet: no sandbox before every volume is mounted
                self._write_status(pod, rec, not rec.inits)
                return
            self._start_sandbox(pod, rec)
        elif rec.oci and rec.sandbox is not None:
            self.volumes.refresh(pod)
        init_done = True
        for c in rec.inits:
            if c.done and c.exitCode == 0:
                continue
            self._drive(pod, rec, c)
            if not (c.done and c.exitCode == 0):
                init_done = False
                break
        if init_done:
            for c in rec.containers:
                self._drive(pod, rec, c)
        else:
            for c in rec.containers:
                c.stage = "pod-initializing"
        self._write_status(pod, rec, init_done)

    def _volumes_ready(self, pod: dict[str, Any], rec: PodRec) -> bool:
        """Set up the pod's volumes (OCI runtime); the process runtime says once that it does not mount them."""
        vols = [v.get("name") for v in pod["spec"].get("volumes") or [] if isinstance(v, dict)]
        if not vols:
            return True
        if not rec.oci:
            if "volumes" not in rec.warned:
                rec.warned.add("volumes")
                self.recorder.event(pod, "Warning", "VolumesNotMounted",
                                    f"The lab mounts pod volumes only with its OCI runtime (crun), and this lab runs "
                                    f"containers as processes ({self.no_oci or 'the OCI runtime is off'}): volumes "
                                    f"[{' '.join(vols)}] are not mounted, the containers see the node's own files")
            return True
        return self.volumes.setup(pod)

    def _start_sandbox(self, pod: dict[str, Any], rec: PodRec) -> None:
        qos = pod.get("status", {}).get("qosClass") or "BestEffort"
        tier = "" if qos == "Guaranteed" else f"/{qos.lower()}"
        driver = self.runtime.driver
        if driver is not None:
            rec.cgroup = f"{self.pods_cgroup}{tier}/pod{rec.uid}"
            if rec.restored and rec.sandboxes == 1:
                driver.kill_all(rec.cgroup)  # what the lab left running when it went down (a SIGKILL spares crun's)
            driver.create(self.pods_cgroup, Limits())
            if tier:
                driver.create(f"{self.pods_cgroup}{tier}", Limits())
            driver.create(rec.cgroup, pod_limits(pod))
            driver.create(f"{rec.cgroup}/sandbox", Limits())
        if rec.oci and self.oci is not None:
            rec.sandbox = self.runtime.spawn(self.oci.sandbox_argv(rec.name), f"{rec.cgroup}/sandbox")
            rec.sandboxes += 1
            rec.sandbox_id = f"{rec.uid}-{rec.sandboxes}"
            if self.podnet is not None:
                try:
                    wait_for_own_netns(rec.sandbox.pid)
                    rec.ip = self.podnet.add(rec.sandbox_id, rec.sandbox.pid).ip
                except OSError as exc:
                    self.runtime.kill_tree(rec.sandbox)
                    rec.sandbox = None
                    self.podnet.delete(rec.sandbox_id)
                    self.recorder.event(pod, "Warning", "FailedCreatePodSandBox",
                                        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup "
                                        f'network for sandbox "{rec.sandbox_id}": plugin type="bridge" failed (add): {exc}')
                    return
            self._pod_files(pod, rec)
        else:
            rec.sandbox = self.runtime.start_sandbox(f"{rec.cgroup}/sandbox" if rec.cgroup else None)
        threading.Thread(target=self._await_exit, args=(rec.sandbox,), daemon=True, name="await-sandbox").start()

    def _sandbox_died(self, pod: dict[str, Any], rec: PodRec) -> None:
        """The sandbox ended under us (killed from outside): as the kubelet does, kill the pod's containers and make a
        new sandbox; they restart by their restart policy. With ``restartPolicy: Never`` no new sandbox is made once a
        container ran, so the pod ends."""
        assert rec.sandbox is not None
        log.warning("sandbox of %s/%s exited (%s); its containers are killed", rec.namespace, rec.name,
                    rec.sandbox.popen.returncode)
        for c in rec.all:
            if c.proc is not None:
                self._kill(c.proc)
        self.runtime.kill_tree(rec.sandbox)  # reaps it
        rec.sandbox = None
        if self.podnet is not None and rec.sandbox_id:
            self.podnet.delete(rec.sandbox_id)
        ran = any(c.runs for c in rec.all)
        if pod["spec"].get("restartPolicy", "Always") == "Never" and ran:
            rec.sandbox_lost = True
            return
        self.recorder.event(pod, "Normal", "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")

    def _service_env(self, namespace: str, links: bool) -> dict[str, str]:
        """The kubelet's service variables (getServiceEnvVarMap): the ``kubernetes`` Service's always, and with
        ``enableServiceLinks`` (the default) every Service of the pod's namespace that has a cluster IP, as Docker
        links named them (``<NAME>_SERVICE_HOST``, ``<NAME>_PORT_<port>_<PROTO>_ADDR`` …)."""
        services = self.store.list("v1/services", namespace)[0] if links else []
        master = self.store.try_get("v1/services", "default", "kubernetes")
        if master is not None and not (links and namespace == "default"):
            services.append(master)
        env: dict[str, str] = {}
        for svc in services:
            spec = svc.get("spec") or {}
            ip = spec.get("clusterIP")
            if not ip or ip == "None":
                continue
            name = svc["metadata"]["name"].upper().replace("-", "_")
            ports = spec.get("ports") or []
            if not ports:
                continue
            env[f"{name}_SERVICE_HOST"] = ip
            env[f"{name}_SERVICE_PORT"] = str(ports[0].get("port"))
            for p in ports:
                if p.get("name"):
                    env[f"{name}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p.get("port"))
            first = ports[0]
            env[f"{name}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first.get('port')}"
            for p in ports:
                proto = p.get("protocol", "TCP")
                prefix = f"{name}_PORT_{p.get('port')}_{proto.upper()}"
                env[prefix] = f"{proto.lower()}://{ip}:{p.get('port')}"
                env[f"{prefix}_PROTO"] = proto.lower()
                env[f"{prefix}_PORT"] = str(p.get("port"))
                env[f"{prefix}_ADDR"] = ip
        return env

    def _env(self, pod: dict[str, Any], spec: dict[str, Any], base: dict[str, str]) -> dict[str, str]:
        """The container's environment: ``base`` (the runtime's and the image's), the service variables, then the
        container's own ``env`` in order ($(VAR) sees the ones before it)."""
        meta = pod["metadata"]
        env = {**base}
        if self.podnet is None:  # host network: the API server where it listens
            env.update({"KUBERNETES_SERVICE_HOST": self.host_ip, "KUBERNETES_SERVICE_PORT": str(self.api_port)})
        else:
            env.update(self._service_env(meta["namespace"], pod["spec"].get("enableServiceLinks", True)))
        fields = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
                  "spec.nodeName": self.node, "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
                  "status.podIP": self._pod_ip(pod), "status.hostIP": self.host_ip}
        for e in spec.get("env") or []:
            name = e.get("name", "")
            if "value" in e:
                env[name] = expand(str(e.get("value") or ""), env)
            elif isinstance(e.get("valueFrom"), dict):
                vf = e["valueFrom"]
                if "fieldRef" in vf:
                    path = vf["fieldRef"].get("fieldPath", "")
                    if path.startswith("metadata.labels['"):
                        env[name] = (meta.get("labels") or {}).get(path[len("metadata.labels['"):-2], "")
                    else:
                        env[name] = fields.get(path, "")
                elif "resourceFieldRef" in vf:  # divided and rounded up; an unset limit is the node's allocatable
                    try:
                        env[name] = resource_value(pod, vf["resourceFieldRef"], self._allocatable(), spec.get("name", ""))
                    except MountError:
                        env[name] = "0"
        return env

    def _start(self, pod: dict[str, Any], rec: PodRec, c: ContainerRec) -> None:
        if rec.oci:
            self._start_oci(pod, rec, c)
            return
        img = image_family(c.spec.get("image", ""))
        if img is None:
            first = c.reason not in ("ErrImagePull", "ImagePullBackOff")
            c.stage, c.reason = "image-error", ("ErrImagePull" if first else "ImagePullBackOff")
            c.message = (f'the kperflab lab cannot run image "{c.spec.get("image")}": it runs only {RUNNABLE} '
                         "(use one of those, or a real cluster)")
            if first:
                self.recorder.event(pod, "Warning", "Failed", f'Failed to pull image "{c.spec.get("image")}": {c.message}',
                                    f"spec.containers{{{c.name}}}")
            else:
                self.recorder.event(pod, "Normal", "BackOff", f'Back-off pulling image "{c.spec.get("image")}"',
                                    f"spec.containers{{{c.name}}}")
            return
        sec = {**(pod["spec"].get("securityContext") or {}), **(c.spec.get("securityContext") or {})}
        uid = sec.get("runAsUser", NOBODY) if os.geteuid() == 0 else None  # not root: pods run as the lab's user
        gid = sec.get("runAsGroup", uid) if uid is not None else None
        python = self.runtime.python_for(uid)
        env = self._env(pod, c.spec, {"PATH": f"{Path(python).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                      "HOSTNAME": pod["metadata"]["name"], "HOME": "/tmp", "PYTHONUNBUFFERED": "1",
                                      "PYTHONDONTWRITEBYTECODE": "1"})
        argv = [expand(a, env) for a in resolve_command(img, c.spec.get("command"), c.spec.get("args"), python)]
        if c.runs == 0:
            self.recorder.event(pod, "Normal", "Pulled", f'Container image "{c.spec.get("image")}" already present on machine',
                                f"spec.{'initContainers' if c.init else 'containers'}{{{c.name}}}")
        cid = new_container_id()
        cgroup = f"{rec.cgroup}/{cid}" if rec.cgroup else None
        log_path = self.state_dir / "pods" / f"{rec.namespace}_{rec.name}_{rec.uid}" / c.name / f"{c.runs}.log"
        c.exec_ctx = {"env": env, "cwd": c.spec.get("workingDir") or "/", "uid": uid, "gid": gid}
        try:
            if cgroup and self.runtime.driver is not None:
                self.runtime.driver.create(cgroup, container_limits(c.spec))
            logs = LogWriter(log_path)
            proc = self.runtime.start_container(rec.sandbox, cgroup, argv, env, c.spec.get("workingDir") or "/", uid, gid, logs)
        except (OSError, ValueError) as exc:
            c.stage, c.reason, c.message = "start-error", "RunContainerError", f"failed to start container: {exc}"
            c.start_failures += 1
            c.backoff_until = time.time() + lifecycle.backoff_seconds(c.start_failures)
            self.recorder.event(pod, "Warning", "Failed", f"Error: {c.message}", f"spec.containers{{{c.name}}}")
            return
        self._started(pod, c, proc, cgroup, cid, image_id(c.spec.get("image", "")))

    def _started(self, pod: dict[str, Any], c: ContainerRec, proc: Process, cgroup: str | None, cid: str, imageid: str,
                 image_name: str = "") -> None:
        if c.runs > 0:
            c.restartCount += 1
        c.runs += 1
        c.start_failures = 0
        c.proc, c.cgroup, c.containerID, c.image_id, c.image_name = proc, cgroup, cid, imageid, image_name
        c.probe_killed, c.probe_kill_deadline = False, 0.0
        c.stage, c.reason, c.message = "running", "", ""
        c.startedAt, c.finishedAt, c.exitCode, c.signal, c.oomKilled = rfc3339(proc.started), None, 0, 0, False
        threading.Thread(target=self._await_exit, args=(proc,), daemon=True, name="await-exit").start()
        fp = f"spec.{'initContainers' if c.init else 'containers'}{{{c.name}}}"
        self.recorder.event(pod, "Normal", "Created", f"Created container: {c.name}", fp)
        self.recorder.event(pod, "Normal", "Started", f"Started container {c.name}", fp)

    def _pod_files(self, pod: dict[str, Any], rec: PodRec) -> None:
        """/etc/hosts, /etc/hostname and /etc/resolv.conf of the pod, bind-mounted into each of its containers (the
        hosts file as the kubelet's managedHostsFileContent writes it)."""
        d = self.pod_dir(rec)
        d.mkdir(parents=True, exist_ok=True)
        spec = pod["spec"]
        hostname = spec.get("hostname") or rec.name
        names = hostname
        if spec.get("subdomain"):
            names = f"{hostname}.{spec['subdomain']}.{rec.namespace}.svc.cluster.local\t{hostname}"
        (d / "hostname").write_text(f"{hostname}\n")
        (d / "hosts").write_text("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                                 "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
                                 f"{rec.ip or '127.0.1.1'}\t{names}\n")
        text, events = self._resolv_conf(pod)
        (d / "resolv.conf").write_text(text)
        for reason, message in events:
            self.recorder.event(pod, "Warning", reason, message)

    def _resolv_conf(self, pod: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
        """The kubelet's pod resolv.conf for its dnsPolicy and dnsConfig, the node's file (`resolvConf`) the base."""
        try:
            node = Path("/etc/resolv.conf").read_text()
        except OSError:
            node = ""
        return pod_resolv_conf(pod, cluster_dns=[self.cluster_dns], cluster_domain="cluster.local", node_resolv_conf=node)

    def _pod_ip(self, pod: dict[str, Any]) -> str:
        rec = self.pods.get(pod["metadata"].get("uid", ""))
        return rec.ip if rec is not None and rec.ip else self.host_ip

    def pod_dir(self, rec: PodRec) -> Path:
        return self.run_dir / "pods" / rec.uid

    def _start_oci(self, pod: dict[str, Any], rec: PodRec, c: ContainerRec) -> None:
        """Pull (or find) the image, make the container's bundle and start it by crun."""
        assert self.oci is not None and self.images is not None and rec.sandbox is not None
        fp = f"spec.{'initContainers' if c.init else 'containers'}{{{c.name}}}"
        got = self.images.ensure(pod, c.spec, fp, first_start=c.runs == 0)
        if isinstance(got, Waiting):
            c.stage = "image-error" if got.reason != "ContainerCreating" else "creating"
            c.reason, c.message = ("", "") if got.reason == "ContainerCreating" else (got.reason, got.message)
            return
        image = got
        cfg = image.config or {}
        c.stop_signal = stop_signal(cfg.get("StopSignal"))
        base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": rec.name}
        base.update(dict(e.split("=", 1) for e in cfg.get("Env") or [] if "=" in e))
        env = self._env(pod, c.spec, base)
        argv = [expand(a, env) for a in combine_command(cfg.get("Entrypoint"), cfg.get("Cmd"), c.spec.get("command"),
                                                        c.spec.get("args"))]
        sec = {**(pod["spec"].get("securityContext") or {}), **(c.spec.get("securityContext") or {})}
        try:
            if not argv:
                raise ValueError("no command specified")
            uid, gid, groups = container_user(image.lowerdirs, sec, cfg.get("User") or "")
            mounts = self.volumes.container_mounts(pod, c.spec, lambda text: expand(text, env))
        except ValueError as exc:
            c.stage, c.reason, c.message = "start-error", "CreateContainerConfigError", str(exc)
            self.recorder.event(pod, "Warning", "Failed", f"Error: {exc}", fp)
            return
        cid = new_container_id()
        cgroup = f"{rec.cgroup}/{cid}"
        log_path = self.state_dir / "pods" / f"{rec.namespace}_{rec.name}_{rec.uid}" / c.name / f"{c.runs}.log"
        limits = container_limits(c.spec)
        tty = bool(c.spec.get("tty"))
        stdin_r = None
        try:
            self.runtime.driver.create(cgroup, limits)  # type: ignore[union-attr]
            d = self.pod_dir(rec)
            config = bundle_config(argv=argv, env=env, cwd=c.spec.get("workingDir") or cfg.get("WorkingDir") or "/", uid=uid,
                                   gid=gid, additional_gids=groups, readonly=bool(sec.get("readOnlyRootFilesystem")),
                                   tty=tty, sandbox_pid=rec.sandbox.pid, cgroups_path=cgroup, limits=limits,
                                   etc={"/etc/hosts": d / "hosts", "/etc/hostname": d / "hostname",
                                        "/etc/resolv.conf": d / "resolv.conf"}, hostname=rec.name,
                                   volume_mounts=mounts)
            bundle = self.oci.create_bundle(cid, list(image.lowerdirs), config, short=getattr(image, "short_lowerdirs", None),
                                            store_root=getattr(image, "store_root", None))
            logs = LogWriter(log_path)
            if tty:
                proc, master = self.oci.start_tty(cid, bundle, cgroup, logs)
                c.tty, c.stdin_w = master, (os.dup(master) if c.spec.get("stdin") else None)
            else:
                if c.spec.get("stdin"):
                    stdin_r, c.stdin_w = os.pipe()
                proc = self.oci.start(cid, bundle, cgroup, logs, stdin=stdin_r)
            if not self.oci.wait_started(proc):  # Running only once crun has started it, as the kubelet reports
                proc.popen.wait(10)
                logs.close()
                reason = " | ".join(line.decode(errors="replace") for _, _, line in read_log(log_path)[-3:])
                self.oci.remove(proc)
                self._close_stdio(c)
                self.runtime.driver.remove(cgroup)  # type: ignore[union-attr]
                self._start_error(pod, c, cid, image, fp, "failed to create containerd task: failed to create shim task: "
                                  f"OCI runtime create failed: {reason or 'crun gave no reason'}")
                return
        except (OSError, ValueError, subprocess.CalledProcessError) as exc:
            c.stage, c.reason, c.message = "start-error", "RunContainerError", f"failed to create containerd task: {exc}"
            c.start_failures += 1
            c.backoff_until = time.time() + lifecycle.backoff_seconds(c.start_failures)
            self.recorder.event(pod, "Warning", "Failed", f"Error: {c.message}", fp)
            self._close_stdio(c)
            self.runtime.driver.remove(cgroup)  # type: ignore[union-attr]
            return
        finally:
            if stdin_r is not None:
                os.close(stdin_r)  # the shim has it now
        self._started(pod, c, proc, cgroup, cid, image.repo_digest, self._image_name(c, image))

    @staticmethod
    def _image_name(c: ContainerRec, image: Any) -> str:
        """The name containerd reports for the container's image: the spec's reference fully qualified when the image
        has that tag (``python:3.13-slim`` → ``docker.io/library/python:3.13-slim``), else its first repo tag."""
        try:
            ref = str(parse_reference(c.spec.get("image", "")))
        except ValueError:
            ref = ""
        return ref if ref in image.repo_tags else image.repo_tag

    def _start_error(self, pod: dict[str, Any], c: ContainerRec, cid: str, image: Any, fp: str, message: str) -> None:
        """crun could not start the container's process (e.g. its command is not in the image): as on containerd, the
        container exists and has exited — terminated, reason StartError, exit code 128, never started (startedAt is
        the epoch) — and the restart policy decides what comes next (Never: the pod fails)."""
        if c.runs > 0:
            c.restartCount += 1
        c.runs += 1
        c.containerID, c.image_id, c.image_name = cid, image.repo_digest, self._image_name(c, image)
        c.stage, c.reason, c.message = "exited", "StartError", message
        c.exitCode, c.signal, c.oomKilled = 128, 0, False
        c.startedAt, c.finishedAt = "1970-01-01T00:00:00Z", rfc3339(time.time())
        self.recorder.event(pod, "Warning", "Failed", f"Error: {message}", fp)
        self._after_exit(pod, c, time.time())

    def _after_exit(self, pod: dict[str, Any], c: ContainerRec, now: float) -> None:
        """A container has exited: restart it after its back-off, or mark it done, by the pod's restart policy."""
        policy = pod["spec"].get("restartPolicy", "Always")
        if c.init and policy == "Always":
            policy = "OnFailure"  # init containers restart only on failure
        if lifecycle.should_restart(policy, c.exitCode, c.probe_killed):
            c.last = c.record()
            c.last["stage"] = "exited"
            c.backoff_until = now + lifecycle.backoff_seconds(c.restartCount + 1 if c.restartCount else 0)
        else:
            c.done = True

    def _close_stdio(self, c: ContainerRec) -> None:
        for fd in (c.stdin_w, c.tty):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        c.stdin_w = c.tty = None

    def _kill(self, proc: Process) -> None:
        """SIGKILL everything of a container (or the sandbox) and reap it."""
        if proc.cid and self.oci is not None:
            self.oci.kill_tree(proc)
        else:
            self.runtime.kill_tree(proc)

    def _signal(self, proc: Process, sig: int) -> None:
        if proc.cid and self.oci is not None:
            self.oci.stop(proc, sig)
        else:
            self.runtime.stop(proc, sig)

    def _await_exit(self, proc: Process) -> None:
        proc.popen.wait()
        self._wake.set()

    def _reap(self, pod: dict[str, Any], rec: PodRec, c: ContainerRec) -> None:
        """The container's process exited: record how, clean its cgroup."""
        proc = c.proc
        assert proc is not None
        code = proc.popen.returncode
        driver = self.runtime.driver
        oom = False
        if driver is not None and c.cgroup:
            kills = driver.oom_kills(c.cgroup)
            c.oom_events += kills
            oom = kills > 0
            driver.kill_all(c.cgroup)  # what the main process left behind
        else:
            self.runtime.kill_tree(proc)
        if proc.cid and self.oci is not None:
            self.oci.remove(proc)
        self._close_stdio(c)
        if proc.logs:
            proc.logs.close()
        c.signal, c.exitCode = (-code, 128 - code) if code < 0 else (0, code)
        c.oomKilled = oom and c.exitCode == 137
        c.finishedAt = rfc3339(time.time())
        c.stage = "exited"
        c.proc = None
        if driver is not None and c.cgroup:
            driver.remove(c.cgroup)
        if c.oomKilled:
            self.recorder.event(pod, "Warning", "OOMKilling",
                                f"Memory cgroup out of memory: Killed process {proc.pid} in container {c.name} "
                                f"(limit {((c.spec.get('resources') or {}).get('limits') or {}).get('memory', 'none')})")

    def _drive(self, pod: dict[str, Any], rec: PodRec, c: ContainerRec) -> None:
        now = time.time()
        if c.proc is not None:
            if c.proc.popen.poll() is None:
                self._probe_kill(pod, rec, c, now)
                return
            self._reap(pod, rec, c)
            self._after_exit(pod, c, now)
        if c.done:
            return
        if c.stage == "start-error" and now < c.backoff_until:
            return  # a container that failed to start is tried again after its back-off, not on every sync
        if c.stage in ("exited", "backoff") and now < c.backoff_until:
            if c.stage != "backoff":
                c.stage = "backoff"
                c.message = (f"back-off {int(c.backoff_until - now + 0.5)}s restarting failed container={c.name} "
                             f"pod={rec.name}_{rec.namespace}({rec.uid})")
                self.recorder.event(pod, "Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod "
                                    f"{rec.name}_{rec.namespace}({rec.uid})", f"spec.containers{{{c.name}}}")
            return
        if rec.sandbox is None:
            return  # no sandbox (it died with restartPolicy Never, or could not be made): nothing starts
        if c.stage in ("creating", "pod-initializing", "image-error", "start-error", "exited", "backoff"):
            self._start(pod, rec, c)

    # -- probes ------------------------------------------------------------------------------------
    def _probe_kill(self, pod: dict[str, Any], rec: PodRec, c: ContainerRec, now: float) -> None:
        """computePodActions + killContainer for a running container whose liveness or startup probe failed: the
        Killing event, SIGTERM, SIGKILL after the grace period (the probe's terminationGracePeriodSeconds, else the
        pod's); the exit is then handled as any, restarting unless restartPolicy is Never."""
        assert c.proc is not None
        if c.probe_killed:
            if now >= c.probe_kill_deadline:
                self._kill(c.proc)
            return
        reason = self.probes.kill_reason(rec.uid, c.name, c.containerID)
        if reason is None:
            return
        policy = pod["spec"].get("restartPolicy", "Always")
        self.recorder.event(pod, "Normal", "Killing", lifecycle.probe_kill_message(c.name, reason, policy),
                            f"spec.containers{{{c.name}}}")
        c.probe_killed = True
        c.probe_kill_deadline = now + lifecycle.probe_kill_grace(pod["spec"], c.spec, prober.FIELD[reason])
        self._signal(c.proc, c.stop_signal)

    def _probe_view(self, uid: str) -> prober.PodView | None:
        """What the probe workers see of a pod (their status manager): lock-free, from the kubelet's records."""
        rec = self.pods.get(uid)
        if rec is None:
            return None
        views = {}
        for c in rec.containers:
            proc = c.proc
            running = proc is not None and c.stage == "running" and proc.popen.poll() is None
            views[c.name] = prober.ContainerView(c.containerID, running, proc.started if proc is not None else 0.0,
                                                 c.stage == "exited")
        return prober.PodView(rec.finished, rec.killing, rec.ip or self.host_ip, views)

    def probe_exec(self, uid: str, container: str, container_id: str, argv: list[str],
                   timeout: float) -> tuple[int, bytes]:
        """ExecSync for an exec probe: (exit code, output); prober.ExecTimeout past ``timeout``, prober.ProbeError
        when the command cannot be run there (the container gone, the executable missing)."""
        rec = self.pods.get(uid)
        c = next((x for x in rec.containers if x.name == container), None) if rec is not None else None
        proc = c.proc if c is not None else None
        if rec is None or c is None or proc is None or c.containerID != container_id or proc.popen.poll() is not None:
            raise prober.ProbeError(f"failed to exec in container: container {container_id} is not running")
        try:
            if proc.cid and self.oci is not None:
                return self.oci.exec_sync(proc, argv, timeout)
            ctx = c.exec_ctx
            return self.runtime.exec_sync(rec.sandbox, c.cgroup, argv, ctx.get("env") or {}, ctx.get("cwd") or "/",
                                          ctx.get("uid"), ctx.get("gid"), timeout)
        except TimeoutError:
            raise prober.ExecTimeout from None
        except OSError as exc:
            raise prober.ProbeError(f"failed to exec in container: {exc}") from None

    def probe_connect(self, host: str, port: int, timeout: float) -> Any:
        """A TCP connection to ``host:port`` made as the node makes it: from the node's network namespace (where
        the pod network's bridge is), or this machine's when pods share its network (the process runtime)."""
        import ipaddress
        import socket

        try:
            ip = str(ipaddress.ip_address(host))
        except ValueError:
            ip = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        if self.podnet is not None:
            sock = in_netns(self.podnet.netns_path, lambda: socket.socket(family, socket.SOCK_STREAM))
        else:
            sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((ip, port))
        except BaseException:
            sock.close()
            raise
        return sock

    # -- exec, attach, port-forward -----------------------------------------------------------------
    def _running(self, pod: dict[str, Any], container: str) -> tuple[PodRec, ContainerRec]:
        """The pod's running container named ``container`` (default: its only one), or the kubelet's error."""
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
        name = container or (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container", "")
        if not name:
            if len(names) != 1:
                raise errors.bad_request(f"a container name must be specified for pod {pod['metadata']['name']}, "
                                         f"choose one of: [{' '.join(names)}]")
            name = names[0]
        if name not in names + inits:
            raise errors.bad_request(f"container {name} is not valid for pod {pod['metadata']['name']}")
        with self._lock:
            rec = self.pods.get(pod["metadata"]["uid"])
            c = next((x for x in rec.all if x.name == name), None) if rec else None
            if rec is None or c is None or c.proc is None or c.proc.popen.poll() is not None:
                raise errors.APIError(500, "InternalError", f'unable to upgrade connection: container not found ("{name}")')
            return rec, c

    def exec_session(self, pod: dict[str, Any], options: Any) -> Stdio:
        """`kubectl exec`: a process in the container (crun exec, or the process runtime's way), its ends for the
        streaming session."""
        rec, c = self._running(pod, options.container)
        argv = list(options.command)
        kw = {"stdin": options.stdin, "stdout": options.stdout, "stderr": options.stderr, "tty": options.tty,
              "size": options.size}
        try:
            if c.proc is not None and c.proc.cid and self.oci is not None:
                ep = self.oci.exec(c.proc, argv, **kw)
            else:
                ctx = c.exec_ctx
                ep = self.runtime.exec(rec.sandbox, c.cgroup, argv, ctx.get("env") or {}, ctx.get("cwd") or "/",
                                       ctx.get("uid"), ctx.get("gid"), **kw)
        except OSError as exc:
            raise errors.APIError(500, "InternalError", f"failed to exec in container: {exc}") from None

        def stop() -> None:
            try:
                os.killpg(ep.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

        resize = (lambda w, h: set_winsize(ep.tty, w, h)) if ep.tty is not None else None
        return Stdio(ep.stdin, ep.stdout, ep.stderr, resize, ep.wait, stop)

    def attach_session(self, pod: dict[str, Any], options: Any) -> Stdio:
        """`kubectl attach` (and `run -it`): the container's own output as it comes, its stdin or terminal."""
        rec, c = self._running(pod, options.container)
        proc = c.proc
        assert proc is not None and proc.logs is not None
        out = proc.logs.subscribe("stdout") if options.stdout or c.tty is not None else None
        err = proc.logs.subscribe("stderr") if options.stderr and c.tty is None else None
        stdin = os.dup(c.stdin_w) if options.stdin and c.stdin_w is not None else None
        detached = threading.Event()
        master = c.tty

        def wait() -> int:
            while not detached.is_set() and proc.popen.poll() is None:
                detached.wait(0.2)
            return 0

        def stop() -> None:
            detached.set()
            if c.spec.get("stdinOnce") and c.tty is None and c.stdin_w is not None:
                os.close(c.stdin_w)  # the first attach that ends closes the container's stdin
                c.stdin_w = None

        resize = (lambda w, h: set_winsize(master, w, h)) if master is not None else None
        return Stdio(stdin, out, err, resize, wait, stop)

    def dial(self, pod: dict[str, Any], port: int) -> Any:
        """A connection to ``port`` in the pod: in its sandbox's network namespace (OCI), or on this machine (the
        process runtime's pods share the node's network)."""
        import socket

        with self._lock:
            rec = self.pods.get(pod["metadata"]["uid"])
            sandbox = rec.sandbox if rec else None
            oci = rec.oci if rec else False
        if sandbox is None:
            raise OSError("the pod has no sandbox running")
        if oci:
            return dial_in_netns(sandbox.pid, port)
        return socket.create_connection(("127.0.0.1", port), timeout=10)

    # -- what cAdvisor samples ---------------------------------------------------------------------
    def stat_targets(self) -> list[PodTarget]:
        """The running pods and their running containers: what the lab's cAdvisor samples. Without cgroups (not
        root) a container is its process session, keyed ``nocgroup/pod<uid>/<id>``."""
        with self._lock:
            out = []
            for rec in self.pods.values():
                if rec.finished or rec.uid in self._tearing or (rec.cgroup is None and self.runtime.driver is not None):
                    continue
                pod_key = rec.cgroup or f"nocgroup/pod{rec.uid}"
                cs = tuple(ContainerTarget(c.name, c.cgroup or f"{pod_key}/{c.containerID}", c.containerID,
                                           c.spec.get("image", ""), c.proc.started, c.oom_events,
                                           None if c.cgroup else c.proc.pid,
                                           c.proc.bundle / "upper" if c.proc.bundle is not None else None)
                           for c in rec.containers if c.proc is not None)
                out.append(PodTarget(rec.uid, rec.namespace, rec.name, pod_key, rec.started, cs,
                                     self.state_dir / "pods" / f"{rec.namespace}_{rec.name}_{rec.uid}",
                                     sum(c.oom_events for c in rec.all),
                                     rec.sandbox.pid if rec.ip and rec.sandbox is not None else None,
                                     self.fs_stats.snapshot.pods.get(rec.uid)))
            return out

    # -- stopping --------------------------------------------------------------------------------
    def _terminate(self, pod: dict[str, Any], rec: PodRec) -> None:
        running = [c for c in rec.all if c.proc is not None and c.proc.popen.poll() is None]
        if not rec.killing:
            rec.killing = True
            grace = pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            rec.kill_deadline = time.time() + float(grace)
            for c in running:
                self.recorder.event(pod, "Normal", "Killing", f"Stopping container {c.name}", f"spec.containers{{{c.name}}}")
                if self._closed:
                    self._signal(c.proc, c.stop_signal)  # type: ignore[arg-type]
                else:  # on a worker: a namespace's pods get their signals together, not one `crun kill` after another
                    self._teardown_pool.submit(self._signal, c.proc, c.stop_signal)  # type: ignore[arg-type]
        if running and time.time() < rec.kill_deadline:
            return
        self._finish(rec, remove=True)

    def _teardown(self, rec: PodRec, gc: bool = True) -> None:
        """Kill every process of the pod and remove its cgroups (once: a finished pod's teardown is its last).
        ``gc=False``: what only takes disk space — the containers' bundles (writable layers), the pod's directory —
        and the address reservation of its dead sandbox are left for `_collect`, as the kubelet leaves exited
        containers to its garbage collection: no process, cgroup, network namespace or mount of the pod is left
        when this returns."""
        if rec.torn:
            return
        rec.torn = True
        self.probes.remove_pod(rec.uid)
        pod_cgroup = bool(rec.cgroup and self.runtime.driver is not None)  # its kill_all below gets any straggler
        for c in rec.all:
            if c.proc is not None:
                if c.proc.popen.poll() is None or not pod_cgroup:
                    self._kill(c.proc)
                if c.proc.cid and self.oci is not None:
                    self.oci.remove(c.proc, keep_bundle=True)
                    rec.garbage.append(c.proc)
                self._close_stdio(c)
                if c.proc.logs:
                    c.proc.logs.close()
                c.proc = None
        if rec.sandbox is not None:
            self.runtime.kill_tree(rec.sandbox)
            rec.sandbox = None
        rec.net_left = bool(self.podnet is not None and rec.sandbox_id)  # its address: released by _collect
        if pod_cgroup:
            self.runtime.driver.kill_all(rec.cgroup)  # type: ignore[union-attr,arg-type]
            self.runtime.driver.remove(rec.cgroup)  # type: ignore[union-attr,arg-type]
        rec.dir_left = self.volumes.teardown(rec.uid, remove_dir=False)  # unpublish, unmount
        if gc:
            self._collect(rec)

    def _collect(self, rec: PodRec) -> None:
        """Container and pod directory garbage collection: the bundles of its containers, the pod's directory (its
        disk emptyDirs' data with it)."""
        try:
            self._collect_now(rec)
        except Exception:  # noqa: BLE001 - garbage left behind must not end the collector
            log.exception("garbage collection of pod %s/%s failed", rec.namespace, rec.name)

    def _collect_now(self, rec: PodRec) -> None:
        if rec.net_left and self.podnet is not None:
            # the sandbox's network namespace died with it (its veth end too); what is left is the address's
            # reservation and the node's veth end. PodNetwork.delete runs one at a time (its lock): after the pod's
            # removal, so that pods deleted together do not wait for each other's
            self.podnet.delete(rec.sandbox_id)
            rec.net_left = False
        for proc in rec.garbage:
            CrunRuntime.remove_bundle(proc)
        rec.garbage = []
        if rec.dir_left:
            self.volumes.remove_dir(rec.uid)
            rec.dir_left = False

    # -- local storage eviction -----------------------------------------------------------------------
    def _volume_stats_loop(self, stop: threading.Event) -> None:
        """The volume stat calculators and the eviction manager's local-storage check, every volumeStatsAggPeriod."""
        while True:
            try:
                self.volume_stats_round()
            except Exception:  # noqa: BLE001 - a failed round must not end the stats for the lab's lifetime
                log.exception("volume stats round failed")
            if stop.wait(max(1.0, self.config.volume_stats_period)):
                return

    def fs_targets(self) -> list[PodFsTarget]:
        """What the volume-stats round measures: per pod, its containers' writable layers and logs, its volumes."""
        with self._lock:
            out = []
            for rec in self.pods.values():
                if rec.finished or rec.uid in self._tearing:
                    continue
                logs = self.state_dir / "pods" / f"{rec.namespace}_{rec.name}_{rec.uid}"
                cs = tuple(ContainerFsTarget(c.name, c.proc.bundle / "upper" if c.proc is not None and c.proc.bundle else None,
                                             logs / c.name) for c in rec.all if c.runs > 0)
                out.append(PodFsTarget(rec.uid, cs, self.volumes.stat_targets(rec.uid)))
            return out

    def volume_stats_round(self) -> None:
        """Measure every pod's disk use, then evict, as the eviction manager's localStorageEviction does, a pod whose
        emptyDir is over its sizeLimit or whose containers are over their ephemeral-storage limits."""
        snap = self.fs_stats.sample()
        with self._lock:
            for uid, stats in snap.pods.items():
                rec = self.pods.get(uid)
                if rec is None or rec.finished or rec.evicted or rec.killing:
                    continue
                pod = self.store.try_get("v1/pods", rec.namespace, rec.name)
                if (pod is None or pod["metadata"].get("uid") != uid or pod["metadata"].get("deletionTimestamp")
                        or (pod["spec"].get("priority") or 0) >= 2_000_000_000):
                    continue  # gone, going, or a critical pod (never evicted)
                message = local_storage_eviction(pod, stats)
                if message:
                    rec.evicted = message
                    self.recorder.event(pod, "Warning", "Evicted", message)
        self._wake.set()

    # -- node pressure: the eviction manager's nodefs signals -------------------------------------------------
    def _eviction_loop(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            try:
                self.eviction_pass()
            except Exception:  # noqa: BLE001 - the eviction manager must outlive any one failed pass (a full disk)
                log.exception("eviction pass failed")

    def eviction_pass(self) -> None:
        """The eviction manager's synchronize for the node's filesystem: a nodefs threshold met (the state dir's
        filesystem nearly full) gives the Node's ``EvictionThresholdMet`` event and an update of its status at once;
        while it holds, one pod per evictionMonitoringPeriod is evicted (the lowest priority, then the largest disk
        user), as the kubelet does when reclaiming node-level resources is not enough. Then taint-nodes-by-condition
        from the Node's conditions (the node lifecycle controller's part: the lab has this one node)."""
        try:
            met = node.disk_pressure(self.state_dir)
        except OSError:
            met = None
        was, self.disk_pressure = self.disk_pressure, met
        if (met is None) != (was is None):
            if met is not None:
                resource = "inodes" if met.signal == "nodefs.inodesFree" else "ephemeral-storage"
                log.warning("disk pressure: %s available %s < %s", met.signal, met.available, met.threshold)
                self.node_event("Warning", "EvictionThresholdMet", f"Attempting to reclaim {resource}")
                self._next_eviction = time.time() + 1.0  # a moment for the Node to show the condition first
            if callable(self.node_status_now):
                self.node_status_now()
        if met is not None and time.time() >= self._next_eviction:
            self._next_eviction = time.time() + node.EVICTION_MONITORING_PERIOD
            self._evict_for_disk(met)
        self._taint_by_conditions()

    def _evict_for_disk(self, met: node.DiskSignal) -> None:
        resource = "inodes" if met.signal == "nodefs.inodesFree" else "ephemeral-storage"
        snap = self.fs_stats.snapshot
        with self._lock:
            ranked = []
            for rec in self.pods.values():
                if rec.finished or rec.evicted or rec.killing or rec.uid in self._tearing:
                    continue
                pod = self.store.try_get("v1/pods", rec.namespace, rec.name)
                if (pod is None or pod["metadata"].get("uid") != rec.uid or pod["metadata"].get("deletionTimestamp")
                        or (pod["spec"].get("priority") or 0) >= 2_000_000_000):
                    continue  # gone, going, or a critical pod (never evicted)
                stats = snap.pods.get(rec.uid)
                used = int(stats.ephemeral.used or 0) if stats is not None else 0
                ranked.append(((pod["spec"].get("priority") or 0), -used, rec.started, pod, stats))
            if not ranked:
                return
            _, _, _, pod, stats = min(ranked, key=lambda r: r[:3])
            message = (f"The node was low on resource: {resource}. Threshold quantity: {node.ki(met.threshold)}, "
                       f"available: {node.ki(met.available)}. ")
            for c in pod["spec"].get("containers") or []:
                use = stats.container_usage(c["name"]) if stats is not None else 0
                if use > 0:
                    message += (f"Container {c['name']} was using {node.ki(use)}, request is 0, has larger consumption "
                                f"of {resource}. ")
            rec = self.pods[pod["metadata"]["uid"]]
            rec.evicted = message
            self.recorder.event(pod, "Warning", "Evicted", message)
        self._wake.set()

    def _taint_by_conditions(self) -> None:
        current = self.store.try_get("v1/nodes", "", self.node)
        if current is None:
            return
        taints = list((current.get("spec") or {}).get("taints") or [])
        want = node.condition_taints((current.get("status") or {}).get("conditions") or [], taints, self.store.clock())
        if want == taints:
            return
        new = dict(current)
        new["spec"] = {**(current.get("spec") or {}), "taints": want}
        if not want:
            new["spec"].pop("taints")
        try:
            self.store.update("v1/nodes", new)
        except errors.APIError:
            pass  # changed meanwhile (the heartbeat), or the store cannot write now: the next pass tries again

    def _evict_now(self, rec: PodRec) -> None:
        """Kill the evicted pod's containers; none restarts. Its status becomes Failed/Evicted in `_write_status`."""
        for c in rec.all:
            if c.proc is not None and c.proc.popen.poll() is None:
                self._kill(c.proc)
            c.done = True

    # -- status ----------------------------------------------------------------------------------
    def _write_status(self, pod: dict[str, Any], rec: PodRec, init_done: bool) -> None:
        init_st = [lifecycle.container_status(c.spec, c.record(), c.image_id, c.image_name) for c in rec.inits]
        main_st = [lifecycle.container_status(c.spec, c.record(), c.image_id, c.image_name,
                                              **self.probes.status(rec.uid, c.name, c.containerID, c.stage == "running"))
                   for c in rec.containers]
        phase = lifecycle.pod_phase(pod["spec"], init_st, main_st)
        old = pod.get("status") or {}
        scheduled = next((c.get("lastTransitionTime") for c in old.get("conditions") or [] if c.get("type") == "PodScheduled"),
                         None) or pod["metadata"].get("creationTimestamp")
        now = rfc3339(self.store.clock())
        if rec.evicted:
            phase = "Failed"
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": lifecycle.conditions(phase, init_done, main_st, scheduled, old.get("conditions") or [], now,
                                               [c.name for c in rec.inits if not (c.done and c.exitCode == 0)]),
            "hostIP": self.host_ip, "hostIPs": [{"ip": self.host_ip}],
            "podIP": rec.ip or self.host_ip, "podIPs": [{"ip": rec.ip or self.host_ip}],
            "startTime": rfc3339(rec.started),
            "containerStatuses": main_st,
            "qosClass": old.get("qosClass", "BestEffort"),
        }
        if rec.evicted:  # the eviction manager's status: phase Failed, reason Evicted, its message
            status = {"phase": "Failed", "conditions": status["conditions"], "message": rec.evicted, "reason": "Evicted",
                      **{k: v for k, v in status.items() if k not in ("phase", "conditions")}}
        if init_st:
            status["initContainerStatuses"] = init_st
        if phase in ("Succeeded", "Failed"):
            rec.finished = True
            rec.final_unsaved = init_done  # until the final status is in the store (a full disk may refuse it)
            self._teardown(rec)
        if status != old:
            new = dict(pod)
            new["status"] = status
            self.store.update("v1/pods", new, check_rv=False)
        rec.final_unsaved = None

    # -- logs ------------------------------------------------------------------------------------
    def logs(self, pod: dict[str, Any], query: dict[str, str]) -> Iterator[bytes]:
        """`pods/log`: container, follow, previous, tailLines, timestamps, sinceSeconds, limitBytes."""
        spec = pod["spec"]
        names = [c["name"] for c in spec.get("containers") or []]
        inits = [c["name"] for c in spec.get("initContainers") or []]
        name = query.get("container") or ""
        pod_name = pod["metadata"]["name"]
        if not name:
            if len(names) != 1:
                raise errors.bad_request(f"a container name must be specified for pod {pod_name}, choose one of: [{' '.join(names)}]"
                                         + (f" or one of the init containers: [{' '.join(inits)}]" if inits else ""))
            name = names[0]
        if name not in names + inits:
            raise errors.bad_request(f"container {name} is not valid for pod {pod_name}")
        with self._lock:
            rec = self.pods.get(pod["metadata"]["uid"])
            c = next((x for x in rec.all if x.name == name), None) if rec else None
        if c is None or c.runs == 0:
            reason = c.reason if c is not None and c.reason else "ContainerCreating"
            raise errors.bad_request(f'container "{name}" in pod "{pod_name}" is waiting to start: {reason}')
        previous = query.get("previous", "").lower() in ("1", "true")
        run = c.runs - 1
        if previous:
            if c.runs < 2:
                raise errors.bad_request(f'previous terminated container "{name}" in pod "{pod_name}" not found')
            run -= 1
        path = self.state_dir / "pods" / f"{rec.namespace}_{rec.name}_{rec.uid}" / name / f"{run}.log"  # type: ignore[union-attr]
        follow = query.get("follow", "").lower() in ("1", "true") and not previous
        stamps = query.get("timestamps", "").lower() in ("1", "true")
        try:
            tail = int(query["tailLines"]) if query.get("tailLines") else None
            since = float(query["sinceSeconds"]) if query.get("sinceSeconds") else None
            limit = int(query["limitBytes"]) if query.get("limitBytes") else None
        except ValueError:
            raise errors.bad_request("tailLines, sinceSeconds and limitBytes must be integers") from None
        return self._stream_log(path, c, run, follow, stamps, tail, since, limit)

    def _stream_log(self, path: Path, c: ContainerRec, run: int, follow: bool, stamps: bool, tail: int | None,
                    since: float | None, limit: int | None) -> Iterator[bytes]:
        from .tables import parse_time

        sent = 0
        lines = read_log(path)
        if since is not None:
            cutoff = time.time() - since
            lines = [x for x in lines if (parse_time(x[0]) or 0) >= cutoff]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        offset = path.stat().st_size if path.exists() else 0

        def fmt(ts: str, line: bytes) -> bytes:
            return (ts.encode() + b" " + line + b"\n") if stamps else line + b"\n"

        partial: dict[bytes, bytes] = {}
        for ts, _, line in lines:
            chunk = fmt(ts, line)
            if limit is not None and sent + len(chunk) > limit:
                yield chunk[: limit - sent]
                return
            sent += len(chunk)
            yield chunk
        while follow:
            alive = c.proc is not None and c.runs - 1 == run
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                data = b""
            if data:
                complete = data[: data.rfind(b"\n") + 1]
                offset += len(complete)
                for ts, _, line in parse_cri(complete.splitlines(), partial):
                    chunk = fmt(ts, line)
                    sent += len(chunk)
                    yield chunk
                if limit is not None and sent >= limit:
                    return
            elif not alive:
                return
            else:
                time.sleep(0.1)
