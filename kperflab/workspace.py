"""A namespace of one's own for an experiment, deleted on exit, on error and on KeyboardInterrupt.

    with cluster.workspace("foundations") as ws:
        ws.run(workloads.cpu_burner(cores=0.5))

Each workspace says whose it is and whether the kernel that made it still lives, so that on a shared cluster one
participant's `kperflab clean` never deletes another's running experiment:

- the namespace is labelled ``app.kubernetes.io/managed-by=kperflab`` and annotated with its owner, the user name the
  API server reports for us (a SelfSubjectReview), and the host and process that made it (``owner@host/pid``, and
  the host's boot id with the process's start time, so that a pid reused by another process is not taken for it);
- a Lease ``kperflab-workspace`` in it is renewed every 30 s by the process while the workspace is open (the way
  kubelets and controllers show they are alive); it lapses 120 s after the kernel dies.

Stale means: made by a process on this host (same host name and boot) that no longer runs — at once, whatever its
lease says; made by a process on this host that still runs — never (its heartbeat renews the lease, also after the
cluster was down for longer than the lease); made elsewhere — its lease lapsed (or, without a lease, older than an
hour). `clean` deletes the caller's stale workspaces and says what it deletes and what it keeps; ``all_stale=True``
(an instructor's ``kperflab clean --all-stale``, and `kperflab lab up` after a restart) deletes anyone's stale ones.

Workspaces still open when the interpreter exits (a kernel restart) are deleted by an atexit hook. A workspace whose
deletion fails because the cluster does not answer (the lab was stopped mid-notebook) is said so in one log line and
deleted by this process as soon as the cluster answers again (the heartbeat thread retries every few seconds); if the
process ends first, `kperflab clean` (which `kperflab lab up` runs) deletes it, its process being gone.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .cluster import DEFAULT_TIMEOUT, Connection, translate, whoami
from .errors import ClusterUnreachable, ExperimentFailed, KperflabError
from .progress import quiet

log = logging.getLogger("kperflab.workspace")
Obj = dict[str, Any]
MANAGED_BY = "app.kubernetes.io/managed-by"
OWNER = "kperflab.dev/owner"
HOLDER = "kperflab.dev/holder"
PROCESS = "kperflab.dev/holder-process"  # "<boot id>/<start time in clock ticks>" of the holder's process
LEASE = "kperflab-workspace"
LEASE_SECONDS = 120
RENEW_SECONDS = 30.0
NO_LEASE_GRACE = 3600.0  # a workspace without a heartbeat lease counts as stale only after this long
_OPEN: set[Workspace] = set()
_OPEN_LOCK = threading.Lock()
_BEAT: threading.Thread | None = None
_BEAT_WAKE = threading.Event()  # set when the last open workspace closes: the heartbeat ends now, not a period later
_ORPHANS: dict[str, Any] = {}  # namespace → cluster: closed while the cluster did not answer, deleted when it does
RETRY_SECONDS = 3.0  # how often the heartbeat thread retries deleting those


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
        self.holder = ""
        self.heartbeat = "not open"  # "" while the lease is renewed, else why there is none

    # -- lifetime ------------------------------------------------------------------------------
    def __enter__(self) -> Workspace:
        self.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the error that ended the block is the one to see: a failed clean-up is logged, never raised over it
            self.close()
        except KperflabError as err:
            log.warning("The workspace %s was not deleted: %s", self.namespace, err)

    def open(self) -> Workspace:
        from kubernetes import client

        owner = self.cluster.user or ""
        self.holder = f"{owner or 'unknown'}@{socket.gethostname()}/{os.getpid()}"
        annotations = {OWNER: owner, HOLDER: self.holder}
        me = _process_id(os.getpid())
        if me:
            annotations[PROCESS] = me
        try:
            self.cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
                name=self.namespace, labels=self.labels, annotations=annotations)),
                _request_timeout=self.cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, self.cluster.conn.server, verb="create", resource="namespaces") from None
        self.created = True
        self.heartbeat = self._create_lease()
        with _OPEN_LOCK:
            _OPEN.add(self)
        _start_heartbeat()
        return self

    def _create_lease(self) -> str:
        """The heartbeat lease; "" when created, else why not (the workspace works without it; `clean` then waits an
        hour before it calls the workspace stale)."""
        from kubernetes import client

        now = _now()
        lease = client.V1Lease(metadata=client.V1ObjectMeta(name=LEASE, labels={MANAGED_BY: "kperflab"}),
                               spec=client.V1LeaseSpec(holder_identity=self.holder, lease_duration_seconds=LEASE_SECONDS,
                                                       acquire_time=now, renew_time=now))
        try:
            client.CoordinationV1Api(self.cluster.api).create_namespaced_lease(self.namespace, lease,
                                                                                _request_timeout=self.cluster.timeout)
            return ""
        except Exception as exc:  # noqa: BLE001 - no heartbeat is not a reason to stop the experiment
            return str(translate(exc, self.cluster.conn.server, verb="create", resource="leases"))

    def renew(self) -> None:
        """Tell the cluster this workspace's kernel is alive (what the heartbeat thread calls)."""
        from kubernetes import client

        if self.heartbeat or not self.created:
            return
        client.CoordinationV1Api(self.cluster.api).patch_namespaced_lease(
            LEASE, self.namespace, {"spec": {"renewTime": _now().isoformat()}}, _request_timeout=self.cluster.timeout)

    def close(self, wait: bool = True) -> None:
        """Delete the namespace (everything in it goes with it) and wait until it is gone. A second Ctrl-C during
        the wait stops waiting; the deletion has already been asked for. When the cluster does not answer, this
        neither waits nor raises: it logs that the workspace is left behind and when it will be deleted."""
        if not self.created:
            return
        try:
            self.cluster.core.delete_namespace(self.namespace, grace_period_seconds=0, _request_timeout=self.cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) != 404:
                err = translate(exc, self.cluster.conn.server, verb="delete", resource=f"namespace {self.namespace}")
                if not isinstance(err, ClusterUnreachable):
                    raise err from None
                self._forget()
                _left_behind(self.cluster, self.namespace, err)
                return
        self._forget()
        if wait:
            deadline = time.monotonic() + self.delete_timeout
            try:
                while time.monotonic() < deadline and self._exists():
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
            except ClusterUnreachable as err:  # asked for, then the cluster went: the lab finishes it when it is back
                log.warning("The workspace %s is being deleted, but the cluster stopped answering (%s); it is "
                            "deleted when the cluster is back (`kperflab clean` says so).", self.namespace, err.reason)

    def _forget(self) -> None:
        with _OPEN_LOCK:
            _OPEN.discard(self)
            if not _OPEN and not _ORPHANS:
                _BEAT_WAKE.set()
        self.created = False

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
            if isinstance(err, ClusterUnreachable):
                raise err from None
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
        bar = tqdm(total=None, desc=f"{name}: {what}", unit="s", leave=False, disable=quiet(progress),
                   bar_format="{desc} {elapsed}")  # no total: closing early is not shown as a failure (a red bar)
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

        return self.wait_for(name, done, timeout, until.lower(), progress, lambda pod: pod_failure(pod, until))

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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _start_heartbeat() -> None:
    global _BEAT
    with _OPEN_LOCK:
        if _BEAT is not None:
            return
        _BEAT_WAKE.clear()
        _BEAT = threading.Thread(target=_beat, name="kperflab-heartbeat", daemon=True)
        _BEAT.start()


def _beat() -> None:
    """Renew the lease of every open workspace every RENEW_SECONDS, and retry deleting the workspaces left behind
    every RETRY_SECONDS; end when there is neither (deciding so under the lock, so that a workspace opened meanwhile
    starts a new heartbeat instead of trusting this one)."""
    global _BEAT
    next_renew = time.monotonic() + RENEW_SECONDS
    while True:
        with _OPEN_LOCK:
            orphans = bool(_ORPHANS)
        _BEAT_WAKE.wait(max(0.0, min(next_renew - time.monotonic(), RETRY_SECONDS if orphans else RENEW_SECONDS)))
        with _OPEN_LOCK:
            open_now = list(_OPEN)
            orphans_now = list(_ORPHANS.items())
            if not open_now and not orphans_now:
                _BEAT = None
                return
            _BEAT_WAKE.clear()
        if orphans_now:
            _delete_orphans(orphans_now)
        if time.monotonic() < next_renew:
            continue
        next_renew = time.monotonic() + RENEW_SECONDS
        for ws in open_now:
            try:
                ws.renew()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the lease outlives a few
                log.debug("renewing the lease of %s failed", ws.namespace, exc_info=True)


def _left_behind(cluster: Any, namespace: str, err: ClusterUnreachable) -> None:
    """Remember a workspace whose deletion the cluster did not take, and say so once."""
    with _OPEN_LOCK:
        _ORPHANS[namespace] = cluster
    log.warning("The workspace %s was not deleted: the API server at %s is not reachable (%s). This kernel deletes "
                "it when the cluster answers again; if the kernel ends first, `kperflab clean` deletes it (`kperflab "
                "lab up` runs it).", namespace, err.server, err.reason)
    _start_heartbeat()


def _delete_orphans(orphans: list[tuple[str, Any]], timeout: float | None = None) -> None:
    for namespace, cluster in orphans:
        try:
            cluster.core.delete_namespace(namespace, grace_period_seconds=0, _request_timeout=timeout or cluster.timeout)
        except Exception as exc:  # noqa: BLE001 - still unreachable (or refused): tried again later
            if getattr(exc, "status", None) != 404:
                log.debug("deleting the workspace %s left behind failed again: %s", namespace, exc)
                continue
        with _OPEN_LOCK:
            _ORPHANS.pop(namespace, None)
        log.info("The workspace %s left behind while the cluster was down is deleted.", namespace)


# -- which process holds a workspace -----------------------------------------------------------------

def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks after boot (field 22 of /proc/<pid>/stat), "" when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def _process_id(pid: int) -> str:
    """"<boot id>/<start ticks>" naming this very process (a pid alone may be reused), "" where /proc cannot say."""
    boot, start = _boot_id(), _start_ticks(pid)
    return f"{boot}/{start}" if boot and start else ""


def holder_alive(holder: str | None, process: str | None = None, *, host: str | None = None) -> bool | None:
    """Whether the process that holds a workspace still runs, where this host can tell: True or False for a holder
    on this host (same host name, and same boot when recorded), None for another host or a holder not recorded."""
    m = re.fullmatch(r".*@(?P<host>[^@/]+)/(?P<pid>\d+)", holder or "")
    if not m or m["host"] != (host or socket.gethostname()):
        return None
    pid = int(m["pid"])
    if process:
        boot, _, start = process.partition("/")
        if boot != _boot_id():
            return False  # made before this host's last boot: that process is gone
        return bool(start) and _start_ticks(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


# -- which workspaces are whose, and which are stale -------------------------------------------------

@dataclass
class WorkspaceInfo:
    namespace: str
    owner: str | None  # None: made by a kperflab that did not record it
    holder: str | None
    created: dt.datetime
    renewed: dt.datetime | None = None
    duration: int | None = None
    terminating: bool = False
    lease: str = "none"  # "found", "none" or why it could not be read
    alive: bool | None = None  # its holder process on this host runs (True) or has ended (False); None: cannot tell

    def stale(self, now: dt.datetime) -> bool:
        if self.terminating:
            return False
        if self.alive is not None:  # a process on this host: known better than by its lease
            return not self.alive
        if self.lease not in ("found", "none"):
            return False
        if self.renewed is not None and self.duration is not None:
            return (now - self.renewed).total_seconds() > self.duration
        return (now - self.created).total_seconds() > NO_LEASE_GRACE

    def state(self, now: dt.datetime) -> str:
        if self.terminating:
            return "being deleted"
        if self.alive is not None:
            pid = (self.holder or "").rsplit("/", 1)[-1]
            return f"live: its process {pid} on this host runs" if self.alive else \
                f"stale: its process {pid} on this host has ended"
        if self.lease not in ("found", "none"):
            return f"liveness unknown ({self.lease})"
        if self.renewed is not None:
            ago = (now - self.renewed).total_seconds()
            return f"{'stale' if self.stale(now) else 'live'}: last heartbeat {_ago(ago)} ago"
        return f"{'stale' if self.stale(now) else 'young'}: no heartbeat lease, created {_ago((now - self.created).total_seconds())} ago"


def _ago(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else (f"{s // 60} min" if s >= 60 else f"{s} s")


def _aware(t: Any) -> dt.datetime | None:
    if t is None:
        return None
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def list_workspaces(conn: Connection, timeout: float = DEFAULT_TIMEOUT) -> list[WorkspaceInfo]:
    """Every kperflab workspace on the cluster with its owner and heartbeat."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    v1 = client.CoreV1Api(conn.api)
    try:
        nss = v1.list_namespace(label_selector=f"{MANAGED_BY}=kperflab", _request_timeout=timeout).items
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, conn.server, verb="list", resource="namespaces") from None
    coord = client.CoordinationV1Api(conn.api)
    leases: dict[str, Any] | None
    try:
        leases = {x.metadata.namespace: x for x in coord.list_lease_for_all_namespaces(
            label_selector=f"{MANAGED_BY}=kperflab", _request_timeout=timeout).items if x.metadata.name == LEASE}
    except ApiException as exc:
        if exc.status != 403:
            raise translate(exc, conn.server, verb="list", resource="leases") from None
        leases = None  # not allowed cluster-wide: read them one namespace at a time
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, conn.server, verb="list", resource="leases") from None
    out = []
    for ns in nss:
        ann = ns.metadata.annotations or {}
        info = WorkspaceInfo(ns.metadata.name, ann.get(OWNER) or None, ann.get(HOLDER), _aware(ns.metadata.creation_timestamp),
                             terminating=ns.metadata.deletion_timestamp is not None,
                             alive=holder_alive(ann.get(HOLDER), ann.get(PROCESS)))
        lease = leases.get(info.namespace) if leases is not None else None
        if leases is None:
            try:
                lease = coord.read_namespaced_lease(LEASE, info.namespace, _request_timeout=timeout)
            except ApiException as exc:
                if exc.status != 404:
                    info.lease = f"cannot read its lease: HTTP {exc.status}"
        if lease is not None and lease.spec is not None:
            info.lease = "found"
            info.renewed = _aware(lease.spec.renew_time or lease.spec.acquire_time)
            info.duration = lease.spec.lease_duration_seconds
        out.append(info)
    return sorted(out, key=lambda w: w.created)


@dataclass
class CleanReport:
    user: str | None
    deleted: list[WorkspaceInfo] = field(default_factory=list)
    live: list[WorkspaceInfo] = field(default_factory=list)  # the caller's (or, with all_stale, anyone's) live ones
    others: list[WorkspaceInfo] = field(default_factory=list)  # other users' stale ones, kept
    unknown: list[WorkspaceInfo] = field(default_factory=list)  # liveness could not be read, kept
    now: dt.datetime = field(default_factory=_now)

    def lines(self, dry_run: bool = False) -> list[str]:
        who = f"You are {self.user} (as the API server says)." if self.user else \
            "The API server does not say who you are (no SelfSubjectReview), so no workspace counts as yours."
        out = [who]
        verb = "Would delete" if dry_run else "Deleted"
        if self.deleted:
            out.append(f"{verb} {len(self.deleted)} stale workspace(s):")
            out += [f"  {w.namespace}  owner {w.owner or 'unknown'}  {w.state(self.now)}" for w in self.deleted]
        else:
            out.append("No stale workspace to delete.")
        if self.live:
            out.append(f"Kept {len(self.live)} live workspace(s): " + ", ".join(
                f"{w.namespace} ({w.state(self.now)})" for w in self.live))
        if self.others:
            out.append(f"Kept {len(self.others)} stale workspace(s) of other users (`kperflab clean --all-stale` deletes "
                       "them, for an instructor): " + ", ".join(f"{w.namespace} ({w.owner or 'owner unknown'})" for w in self.others))
        if self.unknown:
            out.append(f"Kept {len(self.unknown)} workspace(s) whose heartbeat could not be read: "
                       + ", ".join(f"{w.namespace} ({w.lease})" for w in self.unknown))
        return out


    def summary(self) -> str:
        """One line for `kperflab lab up`: what was deleted and what was kept (and why)."""
        parts = [f"Deleted {len(self.deleted)} stale workspace(s): " + ", ".join(w.namespace for w in self.deleted)
                 if self.deleted else "No stale workspace to delete"]
        if self.live:
            parts.append(f"kept {len(self.live)} live: " + ", ".join(f"{w.namespace} ({w.state(self.now)})"
                                                                     for w in self.live))
        if self.unknown:
            parts.append(f"kept {len(self.unknown)} whose heartbeat could not be read: "
                         + ", ".join(w.namespace for w in self.unknown))
        return "; ".join(parts) + "."


def clean(conn: Connection, *, all_stale: bool = False, dry_run: bool = False,
          timeout: float = DEFAULT_TIMEOUT) -> CleanReport:
    """Delete stale workspaces: the caller's by default, anyone's with ``all_stale``. A live workspace (its kernel
    renews its lease) is never deleted, whoever asks."""
    from kubernetes import client

    me = whoami(conn, timeout)
    report = CleanReport(me)
    for w in list_workspaces(conn, timeout):
        mine = me is not None and w.owner == me
        if w.terminating:
            continue
        if w.alive is None and w.lease not in ("found", "none"):
            report.unknown.append(w)
        elif not w.stale(report.now):
            if mine or all_stale:
                report.live.append(w)
        elif mine or all_stale:
            report.deleted.append(w)
        else:
            report.others.append(w)
    if not dry_run:
        v1 = client.CoreV1Api(conn.api)
        for w in report.deleted:
            try:
                v1.delete_namespace(w.namespace, _request_timeout=timeout)
            except Exception as exc:  # noqa: BLE001
                if getattr(exc, "status", None) != 404:
                    raise translate(exc, conn.server, verb="delete", resource=f"namespace {w.namespace}") from None
    return report


@atexit.register
def _close_all() -> None:
    with _OPEN_LOCK:
        left = list(_OPEN)
    for ws in left:
        try:
            ws.close(wait=False)
        except (KperflabError, Exception):  # noqa: BLE001 - best effort at exit
            pass
    with _OPEN_LOCK:
        orphans = list(_ORPHANS.items())
    if orphans:  # one last try, short: a cluster that is down answers "refused" at once
        _delete_orphans(orphans, timeout=2.0)


def pod_failure(pod: Any, until: str = "Running") -> str | None:
    """Why a pod waited on to reach ``until`` never will (it ended otherwise, or its image or config is wrong), or
    None while it still may."""
    if until != "Finished" and pod.status.phase in ("Failed", "Succeeded") and pod.status.phase != until:
        return f"the pod ended {pod.status.phase}"
    for cs in pod.status.container_statuses or []:
        w = cs.state.waiting if cs.state else None
        if w and w.reason in ("ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError", "InvalidImageName"):
            return f"{w.reason}: {w.message or ''}".strip()
    return None
