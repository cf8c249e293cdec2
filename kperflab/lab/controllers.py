"""The minimal control plane a one-node cluster needs: scheduler, namespace deletion, Jobs, DaemonSets, Deployments,
ReplicaSets, ReplicationControllers and StatefulSets (`deployments`), the garbage collector over ownerReferences
(propagation Background, Foreground, Orphan), EndpointSlices and Endpoints of Services (`endpointslices`), and the node's
heartbeat. One reconcile pass each, run in a loop."""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any

from . import errors, policy, validation
from .cronjobs import CronJobController
from .deployments import Workloads, delete_object
from .endpointslices import EndpointSliceController
from .events import Recorder
from .quota import QuotaController
from .resources import TYPES, ResourceType
from .storage import binding as volume_binding
from .storage.api import default_pvc
from .store import Store, rfc3339, run_on_change

log = logging.getLogger("kperflab.lab.controllers")


def _owner_ref(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _owned_by(pod: dict[str, Any], uid: str) -> bool:
    return any(r.get("uid") == uid for r in pod["metadata"].get("ownerReferences") or [])


class Controllers:
    def __init__(self, store: Store, node_name: str) -> None:
        self.store = store
        self.node = node_name
        self._events_checked = float("-inf")
        self.sched_events = Recorder(store, "default-scheduler")
        self.job_events = Recorder(store, "job-controller")
        self.ds_events = Recorder(store, "daemonset-controller")
        self.ephemeral_events = Recorder(store, "ephemeral_volume")
        self.endpointslices = EndpointSliceController(store)
        self.workloads = Workloads(store, self._pod_from_template)
        for pods_maker in (self.workloads.replicasets, self.workloads.rcs, self.workloads.statefulsets):
            pods_maker.admission = policy.PodAdmission(store, pods_maker.admission)  # + Priority, LimitRanger, quota
        self._job_retry: dict[str, tuple[float, float]] = {}  # job uid → (not before, delay) after a failed create
        self.cronjobs = CronJobController(store)  # CronJobs, disruption budgets, quotas (`cronjobs`, `policy`, `quota`)
        self.disruption = policy.DisruptionController(store)
        self.quotas = QuotaController(store)
        policy.ensure_system_classes(store)  # kube-apiserver's post-start hook: the two system PriorityClasses

    def run(self, stop: threading.Event) -> None:
        run_on_change(self.store, stop, self.reconcile, "controller")

    def reconcile(self) -> None:
        self.ephemeral_volumes()
        self.schedule()
        self.namespaces()
        self.jobs()
        self.daemonsets()
        self.workloads.reconcile()
        self.cronjobs.reconcile()
        self.disruption.reconcile()
        self.quotas.reconcile()
        self.garbage_collect()
        self.endpointslices.reconcile()
        self.expire_events()

    def expire_events(self) -> None:
        """kube-apiserver's `--event-ttl` (1 h): an Event goes an hour after it was last recorded (etcd drops it with
        its lease). Checked at most once a minute; the durable store would otherwise keep every event for ever."""
        now = self.store.clock()
        if now < self._events_checked + 60:
            return
        self._events_checked = now
        for key in ("v1/events", "events.k8s.io/v1/events"):
            items, *_ = self.store.list(key, None, copy=False)
            for ev in items:
                last = max((_epoch(ev.get(f)) for f in ("lastTimestamp", "eventTime", "deprecatedLastTimestamp")),
                           default=0.0) or _epoch(ev["metadata"].get("creationTimestamp"))
                if last and now - last > EVENT_TTL:
                    try:
                        self.store.remove(key, ev["metadata"].get("namespace", ""), ev["metadata"]["name"])
                    except errors.APIError:
                        pass

    # -- scheduler -------------------------------------------------------------------------------
    def schedule(self) -> None:
        pods, *_ = self.store.list("v1/pods", None, lambda p: not p.get("spec", {}).get("nodeName")
                                   and not p["metadata"].get("deletionTimestamp"))
        node = self.store.try_get("v1/nodes", "", self.node, copy=False) if pods else None
        cordoned = bool(node and (node.get("spec") or {}).get("unschedulable"))
        for pod in pods:
            if cordoned and not _tolerates_unschedulable(pod):  # the NodeUnschedulable plugin (kubectl cordon/drain)
                self._unschedulable(pod, "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes "
                                         "are available: 1 Preemption is not helpful for scheduling.")
                continue
            untolerated = next((t for t in (node or {}).get("spec", {}).get("taints") or []
                                if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(pod, t)), None)
            if untolerated is not None:  # the TaintToleration plugin (DiskPressure's taint, a user's own)
                self._unschedulable(pod, f"0/1 nodes are available: 1 node(s) had untolerated taint {{{untolerated.get('key', '')}: "
                                         f"{untolerated.get('value', '')}}}. preemption: 0/1 nodes are available: 1 Preemption "
                                         "is not helpful for scheduling.")
                continue
            verdict = volume_binding.check(self.store, pod, self.node)  # the VolumeBinding plugin
            if not verdict.bind:
                if verdict.message:
                    self._unschedulable(pod, verdict.message)
                continue
            pod["spec"]["nodeName"] = self.node
            now = rfc3339(self.store.clock())
            pod.setdefault("status", {})["conditions"] = [
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now}]
            # the event first: the kubelet reacts to the binding at once and its events must come after
            self.sched_events.event(pod, "Normal", "Scheduled",
                                    f"Successfully assigned {pod['metadata']['namespace']}/{pod['metadata']['name']} to {self.node}")
            try:
                self.store.update("v1/pods", pod)
            except errors.APIError:
                continue

    def _unschedulable(self, pod: dict[str, Any], message: str) -> None:
        """PodScheduled False (Unschedulable) and a FailedScheduling event, once per new message."""
        conds = pod.setdefault("status", {}).get("conditions") or []
        cur = next((c for c in conds if c.get("type") == "PodScheduled"), None)
        if cur is not None and cur.get("status") == "False" and cur.get("message") == message:
            return
        pod["status"]["conditions"] = [c for c in conds if c.get("type") != "PodScheduled"] + [{
            "type": "PodScheduled", "status": "False", "lastProbeTime": None,
            "lastTransitionTime": rfc3339(self.store.clock()), "reason": "Unschedulable", "message": message}]
        try:
            self.store.update("v1/pods", pod)
        except errors.APIError:
            return
        self.sched_events.event(pod, "Warning", "FailedScheduling", message)

    # -- namespaces ------------------------------------------------------------------------------
    def namespaces(self) -> None:
        doomed, *_ = self.store.list("v1/namespaces", None, lambda n: bool(n["metadata"].get("deletionTimestamp")))
        for ns in doomed:
            name = ns["metadata"]["name"]
            left = 0
            for t in TYPES:
                if not t.namespaced or t.key == "events.k8s.io/v1/events":
                    continue
                items, *_ = self.store.list(t.key, name)
                for it in items:
                    left += 1
                    if t.kind == "Pod":
                        if not it["metadata"].get("deletionTimestamp"):
                            grace = it["spec"].get("terminationGracePeriodSeconds", 30)
                            try:
                                if it["spec"].get("nodeName"):
                                    self.store.mark_deleting(t.key, name, it["metadata"]["name"], grace)
                                else:
                                    self.store.remove(t.key, name, it["metadata"]["name"])
                            except errors.APIError:
                                pass
                    elif it["metadata"].get("finalizers"):  # e.g. a claim's pvc-protection: its owner removes it
                        if not it["metadata"].get("deletionTimestamp"):
                            try:
                                self.store.mark_deleting(t.key, name, it["metadata"]["name"], 0)
                            except errors.APIError:
                                pass
                    elif t.kind != "Event" or not self._pods_left(name):
                        try:
                            self.store.remove(t.key, name, it["metadata"]["name"])
                        except errors.APIError:
                            pass
            if left == 0:
                try:
                    self.store.remove("v1/namespaces", "", name)
                except errors.APIError:
                    pass

    def _pods_left(self, ns: str) -> bool:
        items, *_ = self.store.list("v1/pods", ns)
        return bool(items)

    # -- jobs ------------------------------------------------------------------------------------
    def jobs(self) -> None:
        jobs, *_ = self.store.list("batch/v1/jobs")
        for job in jobs:
            if job["metadata"].get("deletionTimestamp"):
                continue
            try:
                self._job(job)
            except errors.APIError as exc:
                if exc.code not in (404, 409):
                    raise

    def _job(self, job: dict[str, Any]) -> None:
        ns, uid, spec = job["metadata"]["namespace"], job["metadata"]["uid"], job["spec"]
        status = dict(job.get("status") or {})
        conds = {c["type"]: c for c in status.get("conditions") or []}
        pods, *_ = self.store.list("v1/pods", ns, lambda p: _owned_by(p, uid))
        active = [p for p in pods if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
                  and not p["metadata"].get("deletionTimestamp")]
        succeeded = sum(p.get("status", {}).get("phase") == "Succeeded" for p in pods)
        failed = sum(p.get("status", {}).get("phase") == "Failed" for p in pods)
        failed += sum(cs.get("restartCount", 0) for p in pods for cs in p.get("status", {}).get("containerStatuses") or [])
        now = rfc3339(self.store.clock())
        finished = "Complete" in conds or "Failed" in conds
        new_conds = list(status.get("conditions") or [])
        if not finished:
            if succeeded >= spec.get("completions", 1):
                for t in ("SuccessCriteriaMet", "Complete"):
                    new_conds.append({"type": t, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                                      "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"})
                status["completionTime"] = now
                self.job_events.event(job, "Normal", "Completed", "Job completed")
                finished = True
            elif failed > spec.get("backoffLimit", 6):
                for t in ("FailureTarget", "Failed"):
                    new_conds.append({"type": t, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                                      "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"})
                self.job_events.event(job, "Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
                for p in active:
                    self.store.mark_deleting("v1/pods", ns, p["metadata"]["name"], 0)
                active = []
                finished = True
            elif not spec.get("suspend") and self.store.clock() >= self._job_retry.get(uid, (0.0, 0.0))[0]:
                want = min(spec.get("parallelism", 1), spec.get("completions", 1) - succeeded) - len(active)
                for _ in range(max(0, want)):
                    try:
                        pod = self._pod_from_template(job, job["metadata"]["name"] + "-")
                        self._admit(pod)
                        created = self.store.create("v1/pods", pod)
                    except errors.APIError as exc:  # e.g. its ServiceAccount does not exist (yet), a quota is full
                        self.job_events.event(job, "Warning", "FailedCreate", f"Error creating: {exc.message}")
                        delay = min(max(1.0, self._job_retry.get(uid, (0.0, 0.0))[1] * 2), 300.0)  # the queue's back-off
                        self._job_retry[uid] = (self.store.clock() + delay, delay)
                        break
                    self._job_retry.pop(uid, None)
                    active.append(created)
                    self.job_events.event(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        status.update({"active": len(active), "succeeded": succeeded, "failed": failed, "ready": sum(
            any(c.get("type") == "Ready" and c.get("status") == "True" for c in p.get("status", {}).get("conditions") or [])
            for p in active), "terminating": 0, "uncountedTerminatedPods": {}})
        status.setdefault("startTime", now)
        if new_conds:
            status["conditions"] = new_conds
        if not status["active"]:
            status.pop("active")
        if status != job.get("status"):
            job["status"] = status
            self.store.update("batch/v1/jobs", job, check_rv=False)

    def _admit(self, pod: dict[str, Any]) -> None:
        """The ServiceAccount admission the API server runs on a controller's pod POST (403 raised as APIError)."""
        from .deployments import _admission

        _admission(self.store).admit(pod, pod["metadata"]["namespace"])
        policy.admit(self.store, "Pod", "", pod, pod["metadata"]["namespace"])  # Priority, LimitRanger, ResourceQuota

    def _pod_from_template(self, owner: dict[str, Any], generate: str) -> dict[str, Any]:
        import copy

        tmpl = copy.deepcopy(owner["spec"]["template"])
        meta = tmpl.get("metadata") or {}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": generate, "namespace": owner["metadata"]["namespace"],
                            "labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {},
                            "ownerReferences": [_owner_ref(owner)]},
               "spec": tmpl.get("spec") or {}}
        validation.generate_name(pod["metadata"])
        validation.default_pod(pod)
        pod["status"] = {"phase": "Pending", "qosClass": validation.qos_class(pod)}
        return pod

    # -- daemonsets ------------------------------------------------------------------------------
    def daemonsets(self) -> None:
        sets, *_ = self.store.list("apps/v1/daemonsets")
        for ds in sets:
            if ds["metadata"].get("deletionTimestamp"):
                continue
            ns, uid = ds["metadata"]["namespace"], ds["metadata"]["uid"]
            pods, *_ = self.store.list("v1/pods", ns, lambda p, uid=uid: _owned_by(p, uid))
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            for p in list(live):
                if p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    self.store.mark_deleting("v1/pods", ns, p["metadata"]["name"], 0)
                    live.remove(p)
            if not live and not pods:
                try:
                    pod = self._pod_from_template(ds, ds["metadata"]["name"] + "-")
                    pod["spec"]["nodeName"] = self.node  # the DaemonSet controller binds its pods itself
                    self._admit(pod)
                    created = self.store.create("v1/pods", pod)
                    live.append(created)
                    self.ds_events.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
                except errors.APIError as exc:
                    self.ds_events.event(ds, "Warning", "FailedCreate", f"Error creating: {exc.message}")
                    continue
            ready = sum(any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in p.get("status", {}).get("conditions") or []) for p in live)
            status = {"currentNumberScheduled": len(live), "desiredNumberScheduled": 1, "numberMisscheduled": 0,
                      "numberReady": ready, "updatedNumberScheduled": len(live), "numberAvailable": ready,
                      "observedGeneration": ds["metadata"].get("generation", 1)}
            if ready < 1:
                status["numberUnavailable"] = 1
            if status != ds.get("status"):
                ds["status"] = status
                try:
                    self.store.update("apps/v1/daemonsets", ds, check_rv=False)
                except errors.APIError:
                    pass

    # -- ephemeral volume controller -----------------------------------------------------------------
    def ephemeral_volumes(self) -> None:
        """kube-controller-manager's ephemeral volume controller: for each generic ephemeral volume of a pod, the claim
        ``<pod>-<volume>`` from its ``volumeClaimTemplate``, owned by the pod (so it goes with it)."""
        pods, *_ = self.store.list("v1/pods", None, lambda p: any(
            v.get("ephemeral") is not None for v in p.get("spec", {}).get("volumes") or [])
            and not p["metadata"].get("deletionTimestamp"))
        for pod in pods:
            ns = pod["metadata"]["namespace"]
            for name, template in volume_binding.ephemeral_claims(pod).items():
                if self.store.try_get("v1/persistentvolumeclaims", ns, name) is not None:
                    continue  # ours, or someone else's (the scheduler says so)
                meta = template.get("metadata") or {}
                pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {
                    "name": name, "namespace": ns, "labels": dict(meta.get("labels") or {}),
                    "annotations": dict(meta.get("annotations") or {}),
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
                                         "uid": pod["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
                    "spec": copy.deepcopy(template.get("spec") or {})}
                default_pvc(pvc)
                try:
                    self.store.create("v1/persistentvolumeclaims", pvc)
                except errors.APIError as exc:
                    self.ephemeral_events.event(pod, "Warning", "FailedBinding", f"create PVC {name}: {exc}")

    # -- garbage collector -----------------------------------------------------------------------
    def garbage_collect(self) -> None:
        """kube-controller-manager's garbage collector over ownerReferences. An owner deleted with Orphan (finalizer
        ``orphan``) first loses its dependents' references to it; one deleted with Foreground
        (``foregroundDeletion``) stays, readable, until no dependent with blockOwnerDeletion is left; dependents whose
        owners are all gone are deleted (Foreground when they have dependents themselves and an owner waits for
        them), references to gone owners are dropped from dependents that still have a live one."""
        dependents: list[tuple[ResourceType, dict[str, Any]]] = []
        finalizing: list[tuple[ResourceType, dict[str, Any]]] = []
        for t in TYPES:
            if t.kind == "Event" or "delete" not in t.verbs:
                continue
            items, *_ = self.store.list(t.key, None, _gc_relevant)
            for it in items:
                if it["metadata"].get("ownerReferences"):
                    dependents.append((t, it))
                if it["metadata"].get("deletionTimestamp") and set(it["metadata"].get("finalizers") or []) & GC_FINALIZERS:
                    finalizing.append((t, it))
        by_owner: dict[str, list[tuple[ResourceType, dict[str, Any]]]] = {}
        for t, it in dependents:
            for r in it["metadata"]["ownerReferences"]:
                by_owner.setdefault(r.get("uid", ""), []).append((t, it))
        for t, owner in finalizing:
            try:
                self._finalize_owner(t, owner, by_owner.get(owner["metadata"]["uid"], []))
            except errors.APIError:
                continue
        for t, dep in dependents:
            if dep["metadata"].get("deletionTimestamp"):
                continue  # being deleted: as an owner above, if it waits for its own dependents
            try:
                self._collect(t, dep, bool(by_owner.get(dep["metadata"]["uid"])))
            except errors.APIError:
                continue
            except Exception:  # noqa: BLE001 - one odd object must not stop the collection
                log.exception("garbage collection of %s %s failed", t.kind, dep["metadata"].get("name"))

    def _finalize_owner(self, t: ResourceType, owner: dict[str, Any], deps: list[tuple[ResourceType, dict[str, Any]]]) -> None:
        uid, finalizers = owner["metadata"]["uid"], owner["metadata"].get("finalizers") or []
        if "orphan" in finalizers:
            for dt, dep in deps:  # orphan them: strip the references to this owner
                dep["metadata"]["ownerReferences"] = [r for r in dep["metadata"]["ownerReferences"] if r.get("uid") != uid]
                if not dep["metadata"]["ownerReferences"]:
                    dep["metadata"].pop("ownerReferences")
                self.store.update(dt.key, dep)
            drop = "orphan"
        else:
            blocking = [dep for _, dep in deps if any(r.get("uid") == uid and r.get("blockOwnerDeletion")
                                                      for r in dep["metadata"]["ownerReferences"])]
            if blocking:
                return
            drop = "foregroundDeletion"
        owner["metadata"]["finalizers"] = [f for f in finalizers if f != drop]
        self.store.update(t.key, owner)  # the last finalizer gone: the store removes the object

    def _owner_state(self, ref: dict[str, Any], namespace: str) -> str:
        """"solid", "absent", "waiting" (deleted in the foreground) or "unknown" (a kind the lab does not serve)."""
        group = ref.get("apiVersion", "").rpartition("/")[0]
        t = next((t for t in TYPES if t.group == group and t.kind == ref.get("kind")), None)
        if t is None or (t.namespaced and not namespace):
            return "unknown"
        owner = self.store.try_get(t.key, namespace if t.namespaced else "", ref.get("name", ""))
        if owner is None or owner["metadata"]["uid"] != ref.get("uid"):
            return "absent"
        if owner["metadata"].get("deletionTimestamp") and "foregroundDeletion" in (owner["metadata"].get("finalizers") or []):
            return "waiting"
        return "solid"

    def _collect(self, t: ResourceType, dep: dict[str, Any], has_dependents: bool) -> None:
        """attemptToDeleteItem for one dependent."""
        refs = dep["metadata"].get("ownerReferences") or []  # (none left once its owner orphaned it this pass)
        if not refs:
            return
        states = [self._owner_state(r, dep["metadata"].get("namespace", "")) for r in refs]
        if all(s in ("solid", "unknown") for s in states):
            return
        if any(s in ("solid", "unknown") for s in states):  # a live owner keeps it: drop the others' references
            dep["metadata"]["ownerReferences"] = [r for r, s in zip(refs, states, strict=True) if s in ("solid", "unknown")]
            self.store.update(t.key, dep)
            return
        finalizers = dep["metadata"].get("finalizers") or []
        if "waiting" in states and has_dependents:
            policy = "Foreground"
        elif "orphan" in finalizers:
            policy = "Orphan"
        elif "foregroundDeletion" in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        delete_object(self.store, t.key, dep, policy)


GC_FINALIZERS = {"orphan", "foregroundDeletion"}


def _tolerates_unschedulable(pod: dict[str, Any]) -> bool:
    """A toleration of the ``node.kubernetes.io/unschedulable:NoSchedule`` taint a cordoned node carries."""
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        if not isinstance(t, dict) or t.get("effect") not in (None, "", "NoSchedule"):
            continue
        key, op = t.get("key") or "", t.get("operator") or "Equal"
        if (not key and op == "Exists") or (key == "node.kubernetes.io/unschedulable" and (op == "Exists" or not t.get("value"))):
            return True
    return False


EVENT_TTL = 3600.0  # kube-apiserver's --event-ttl default


def _epoch(ts: Any) -> float:
    """Seconds since the epoch of a metav1.Time or MicroTime string; 0 for none or a bad one."""
    if not isinstance(ts, str) or not ts:
        return 0.0
    import calendar

    try:
        return float(calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return 0.0


def tolerates(pod: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Whether one of the pod's tolerations tolerates ``taint`` (upstream's ToleratesTaint: an empty effect matches
    every effect, `Exists` with no key every taint, `Equal` the key and value)."""
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        if not isinstance(t, dict):
            continue
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        key, op = t.get("key") or "", t.get("operator") or "Equal"
        if op == "Exists" and (not key or key == taint.get("key")):
            return True
        if op == "Equal" and key == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _gc_relevant(obj: dict[str, Any]) -> bool:
    meta = obj["metadata"]
    return bool(meta.get("ownerReferences")) or (bool(meta.get("deletionTimestamp"))
                                                 and bool(set(meta.get("finalizers") or []) & GC_FINALIZERS))
