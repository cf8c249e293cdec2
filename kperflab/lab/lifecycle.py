"""The pod lifecycle as data: how a container's runtime record becomes its status, what happens after it
exits (by restart policy), and the pod phase and conditions the kubelet derives from them.

Pure functions over plain dicts, tested with golden files (tests/golden/lifecycle/*.json).
"""

from __future__ import annotations

from typing import Any

# After a container exits: restart it?  (restartPolicy, exited with 0?) → restart
RESTART_TABLE: dict[tuple[str, bool], bool] = {
    ("Always", True): True,
    ("Always", False): True,
    ("OnFailure", True): False,
    ("OnFailure", False): True,
    ("Never", True): False,
    ("Never", False): False,
}

# How a runtime record's stage maps to the container state the API shows.
#   stage        → (state key, reason source)
STAGES: dict[str, tuple[str, str]] = {
    "creating": ("waiting", "ContainerCreating"),
    "pod-initializing": ("waiting", "PodInitializing"),
    "image-error": ("waiting", "record"),       # ErrImagePull, then ImagePullBackOff
    "start-error": ("waiting", "record"),       # CreateContainerError, RunContainerError
    "running": ("running", ""),
    "exited": ("terminated", "exit"),           # Completed / Error / OOMKilled
    "backoff": ("waiting", "CrashLoopBackOff"),
}

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0


MIN_KILL_GRACE = 2  # kuberuntime minimumGracePeriodInSeconds: every kill gives the container this long at least


def should_restart(restart_policy: str, exit_code: int, killed_by_probe: bool = False) -> bool:
    """After an exit; a container the kubelet killed for a failed liveness or startup probe restarts whatever its
    exit code, unless the policy is Never (computePodActions: shouldRestartOnFailure)."""
    if killed_by_probe:
        return restart_policy != "Never"
    return RESTART_TABLE[(restart_policy, exit_code == 0)]


def probe_kill_message(container: str, probe_type: str, restart_policy: str) -> str:
    """The Killing event's message for a container that failed its ``liveness`` or ``startup`` probe."""
    message = f"Container {container} failed {probe_type} probe"
    return f"{message}, will be restarted" if restart_policy != "Never" else message


def probe_kill_grace(pod_spec: dict[str, Any], container: dict[str, Any], probe_field: str) -> int:
    """setTerminationGracePeriod for a probe kill: the probe's own terminationGracePeriodSeconds, else the pod's
    (default 30), never below MIN_KILL_GRACE."""
    own = (container.get(probe_field) or {}).get("terminationGracePeriodSeconds")
    grace = own if isinstance(own, int) else pod_spec.get("terminationGracePeriodSeconds", 30)
    return max(MIN_KILL_GRACE, int(grace if grace is not None else 30))


def backoff_seconds(restarts: int) -> float:
    """The kubelet's crash back-off: 10 s, doubling, capped at 5 minutes."""
    return min(BACKOFF_INITIAL * (2 ** max(0, restarts - 1)), BACKOFF_MAX) if restarts > 0 else 0.0


def exit_reason(exit_code: int, oom_killed: bool) -> str:
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def container_state(rec: dict[str, Any]) -> dict[str, Any]:
    """{waiting|running|terminated: …} for a runtime record ({stage, reason, message, exitCode, …})."""
    key, reason = STAGES[rec["stage"]]
    if key == "running":
        return {"running": {"startedAt": rec["startedAt"]}}
    if key == "terminated":
        return {"terminated": terminated(rec)}
    out: dict[str, Any] = {"reason": rec.get("reason") if reason == "record" else reason}
    if rec.get("message"):
        out["message"] = rec["message"]
    return {"waiting": out}


def terminated(rec: dict[str, Any]) -> dict[str, Any]:
    # StartError (the runtime could not start the process) is the record's own reason; else the exit says it
    reason = rec.get("reason") or exit_reason(rec["exitCode"], rec.get("oomKilled", False))
    t: dict[str, Any] = {"exitCode": rec["exitCode"], "reason": reason,
                         "startedAt": rec.get("startedAt"), "finishedAt": rec.get("finishedAt"),
                         "containerID": rec.get("containerID", "")}
    # like the kubelet on containerd: the exit code says the signal (137 = 128 + SIGKILL); no `signal` field
    if rec.get("message"):
        t["message"] = rec["message"]
    return t


def container_status(spec: dict[str, Any], rec: dict[str, Any], image_id: str, image_name: str = "",
                     started: bool | None = None, ready: bool | None = None) -> dict[str, Any]:
    """``image`` is the runtime's name for the image once a container exists (containerd: the fully qualified repo
    tag, ``docker.io/library/python:3.13-slim``), the spec's before. ``started`` and ``ready`` are the probe
    manager's word for a container with probes; without, both follow running."""
    state = container_state(rec)
    st: dict[str, Any] = {
        "name": spec["name"],
        "state": state,
        "lastState": {"terminated": terminated(rec["last"])} if rec.get("last") else {},
        "ready": ("running" in state) if ready is None else ready,
        "restartCount": rec.get("restartCount", 0),
        "image": image_name if image_name and rec.get("containerID") else spec.get("image", ""),
        "imageID": image_id if rec.get("containerID") else "",
        "started": ("running" in state) if started is None else started,
    }
    if rec.get("containerID"):
        st["containerID"] = rec["containerID"]
    return st


def pod_phase(spec: dict[str, Any], init_statuses: list[dict[str, Any]], statuses: list[dict[str, Any]]) -> str:
    """The kubelet's getPhase: Pending, Running, Succeeded or Failed."""
    policy = spec.get("restartPolicy", "Always")
    for s in init_statuses:
        term = s["state"].get("terminated")
        if term and term.get("exitCode") == 0:
            continue
        if term and policy == "Never":
            return "Failed"
        return "Pending"
    if not statuses:
        return "Pending"
    waiting = running = stopped = succeeded = 0
    for s in statuses:
        st = s["state"]
        if "running" in st:
            running += 1
        elif "terminated" in st:
            stopped += 1
            if st["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in st:
            if s.get("lastState", {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"  # OnFailure: a failed container will be restarted
    return "Pending"


def conditions(phase: str, init_done: bool, statuses: list[dict[str, Any]], scheduled_at: str,
               previous: list[dict[str, Any]], now: str, pending_init: list[str] | None = None) -> list[dict[str, Any]]:
    """PodScheduled, Initialized, ContainersReady, Ready — lastTransitionTime kept while a status holds."""
    all_ready = bool(statuses) and all(s.get("ready") for s in statuses)
    ready = all_ready and phase == "Running"
    prev = {c["type"]: c for c in previous}
    out = []
    for type_, ok, reason in (
        ("PodReadyToStartContainers", True, ""),
        ("Initialized", init_done, "" if init_done else "ContainersNotInitialized"),
        ("Ready", ready, "" if ready else ("PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady")),
        ("ContainersReady", all_ready and phase == "Running", "" if ready else ("PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady")),
        ("PodScheduled", True, ""),
    ):
        status = "True" if ok else "False"
        if type_ == "PodReadyToStartContainers" and phase in ("Succeeded", "Failed"):
            status = "False"
        old = prev.get(type_)
        since = old["lastTransitionTime"] if old and old.get("status") == status else now
        if type_ == "PodScheduled":
            since = scheduled_at
        c: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
        if reason and status == "False":
            c["reason"] = reason
            if reason == "ContainersNotReady":
                names = [s["name"] for s in statuses if not s.get("ready")]
                c["message"] = f"containers with unready status: [{' '.join(names)}]"
            elif reason == "ContainersNotInitialized":
                c["message"] = f"containers with incomplete status: [{' '.join(pending_init or [])}]"
        out.append(c)
    return out
