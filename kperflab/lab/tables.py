"""Server-side printing (`Accept: ...;as=Table`): the columns kube-apiserver's printers send to kubectl."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from typing import Any

from . import apiservices

Obj = dict[str, Any]


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{(s % 3600) // 60}m" if (s % 3600) // 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        d = h // 24 % 365
        return f"{h // 24 // 365}y{d}d" if d else f"{h // 24 // 365}y"
    return f"{h // 24 // 365}y"


def parse_time(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def age(ts: str | None, now: float) -> str:
    t = parse_time(ts)
    return "<unknown>" if t is None else human_duration(now - t)


def col(name: str, type_: str = "string", priority: int = 0, fmt: str = "", desc: str = "") -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": desc or name, "priority": priority}


NAME = col("Name", fmt="name", desc="Name must be unique within a namespace.")
AGE = col("Age", desc="CreationTimestamp is a timestamp representing the server time when this object was created.")


def _pod_status(pod: Obj) -> tuple[str, str, str]:
    """(ready "1/1", status reason, restarts) the way kubectl's printPod computes them."""
    spec, st = pod.get("spec", {}), pod.get("status", {})
    total = len(spec.get("containers") or [])
    restarts, ready = 0, 0
    last_restart: float | None = None
    reason = st.get("reason") or st.get("phase") or "Pending"
    init_statuses = st.get("initContainerStatuses") or []
    initializing = False
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount", 0)
        term = (cs.get("state") or {}).get("terminated")
        wait = (cs.get("state") or {}).get("waiting")
        if term and term.get("exitCode") == 0:
            continue
        initializing = True
        if term:
            reason = "Init:" + (term.get("reason") or f"ExitCode:{term.get('exitCode')}")
        elif wait and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        break
    if not initializing:
        has_running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            lt = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            if lt:
                t = parse_time(lt)
                if t and (last_restart is None or t > last_restart):
                    last_restart = t
            state = cs.get("state") or {}
            if state.get("waiting", {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif state.get("terminated"):
                term = state["terminated"]
                reason = term.get("reason") or (f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}")
            elif state.get("running") and cs.get("ready"):
                has_running = True
                ready += 1
            elif state.get("running"):
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running" if any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []) else "NotReady"
    if pod.get("metadata", {}).get("deletionTimestamp"):
        reason = "Terminating" if st.get("reason") != "NodeLost" else "Unknown"
    rs = str(restarts)
    if last_restart is not None:
        rs = f"{restarts} ({human_duration(time.time() - last_restart)} ago)"
    return f"{ready}/{total}", reason, rs


def pods(obj: Obj, now: float) -> list[Any]:
    ready, reason, restarts = _pod_status(obj)
    st = obj.get("status", {})
    return [obj["metadata"]["name"], ready, reason, restarts, age(obj["metadata"].get("creationTimestamp"), now),
            st.get("podIP") or "<none>", obj.get("spec", {}).get("nodeName") or "<none>",
            st.get("nominatedNodeName") or "<none>", "<none>"]


POD_COLUMNS = [NAME, col("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
               col("Status", desc="The aggregate status of the containers in this pod."),
               col("Restarts", desc="The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
               AGE, col("IP", priority=1, desc="IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
               col("Node", priority=1, desc="NodeName is a request to schedule this pod onto a specific node."),
               col("Nominated Node", priority=1, desc="nominatedNodeName is set only when this pod preempts other pods on the node."),
               col("Readiness Gates", priority=1, desc="If specified, all readiness gates will be evaluated for pod readiness.")]


def nodes(obj: Obj, now: float) -> list[Any]:
    st = obj.get("status", {})
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if obj.get("spec", {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in (obj["metadata"].get("labels") or {}) if k.startswith("node-role.kubernetes.io/"))
    addrs = {a["type"]: a["address"] for a in st.get("addresses") or []}
    info = st.get("nodeInfo") or {}
    return [obj["metadata"]["name"], status, ",".join(roles) or "<none>", age(obj["metadata"].get("creationTimestamp"), now),
            info.get("kubeletVersion", ""), addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"),
            info.get("osImage", "<unknown>"), info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "<unknown>")]


NODE_COLUMNS = [NAME, col("Status", desc="The status of the node"), col("Roles", desc="The roles of the node"), AGE,
                col("Version", desc="Kubelet Version reported by the node."),
                col("Internal-IP", priority=1, desc="List of internal IPs."), col("External-IP", priority=1, desc="List of external IPs."),
                col("OS-Image", priority=1, desc="OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
                col("Kernel-Version", priority=1, desc="Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
                col("Container-Runtime", priority=1, desc="Container runtime version reported by the node through runtime remote API (e.g. containerd://1.4.2).")]


def namespaces(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], obj.get("status", {}).get("phase", "Active"), age(obj["metadata"].get("creationTimestamp"), now)]


def events(obj: Obj, now: float) -> list[Any]:
    inv = obj.get("involvedObject") or {}
    last = obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    return [age(last, now), obj.get("type", ""), obj.get("reason", ""), f"{(inv.get('kind') or '').lower()}/{inv.get('name', '')}",
            obj.get("message", "")]


def _lb_ingress(status: Any, wide: bool = False) -> str:
    """loadBalancerStatusStringer: ingress IPs (else hostnames), sorted, clipped to 16 characters unless wide."""
    lb = status.get("loadBalancer") if isinstance(status, dict) else None
    ingress = lb.get("ingress") if isinstance(lb, dict) else None
    out = sorted({str(i.get("ip") or i.get("hostname")) for i in ingress if isinstance(i, dict) and (i.get("ip") or i.get("hostname"))}
                 if isinstance(ingress, list) else set())
    text = ",".join(out)
    return text if wide or len(text) <= 16 else text[:13] + "..."


def _service_external_ip(obj: Obj) -> str:
    """getServiceExternalIP."""
    spec, ext = obj.get("spec", {}), ",".join(obj.get("spec", {}).get("externalIPs") or [])
    t = spec.get("type")
    if t in ("ClusterIP", "NodePort"):
        return ext or "<none>"
    if t == "LoadBalancer":
        lb = _lb_ingress(obj.get("status"))
        return ",".join(x for x in (lb, ext) if x) or "<pending>"
    if t == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def services(obj: Obj, now: float) -> list[Any]:
    """printService: CLUSTER-IP is clusterIPs[0]; PORT(S) ``80/TCP`` or ``80:31234/TCP``."""
    spec = obj.get("spec", {})
    ports = ",".join(f"{p.get('port', 0)}:{p['nodePort']}/{p.get('protocol', '')}" if p.get("nodePort")
                     else f"{p.get('port', 0)}/{p.get('protocol', '')}" for p in spec.get("ports") or []) or "<none>"
    sel = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [obj["metadata"]["name"], spec.get("type", ""), (spec.get("clusterIPs") or ["<none>"])[0],
            _service_external_ip(obj), ports, age(obj["metadata"].get("creationTimestamp"), now), sel]


def endpoints(obj: Obj, now: float) -> list[Any]:
    """printEndpoints (formatEndpoints): up to three ``ip:port``, then `` + N more...``; ``<none>`` without subsets."""
    subsets = obj.get("subsets") or []
    if not subsets:
        return [obj["metadata"]["name"], "<none>", age(obj["metadata"].get("creationTimestamp"), now)]
    shown: list[str] = []
    count = 0
    for ss in subsets:
        addrs = [a.get("ip", "") for a in ss.get("addresses") or []]
        pairs = [(ip, None) for ip in addrs] if not ss.get("ports") else \
            [(ip, p.get("port")) for p in ss["ports"] for ip in addrs]
        count += len(pairs)
        for ip, port in pairs:
            if len(shown) < 3:
                shown.append(ip if port is None else (f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"))
    text = ",".join(shown) + (f" + {count - 3} more..." if count > 3 else "")
    return [obj["metadata"]["name"], text, age(obj["metadata"].get("creationTimestamp"), now)]


def jobs(obj: Obj, now: float) -> list[Any]:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    status = "Complete" if conds.get("Complete") == "True" else "Failed" if conds.get("Failed") == "True" else "Running"
    start, end = parse_time(st.get("startTime")), parse_time(st.get("completionTime"))
    duration = human_duration((end or now) - start) if start else ""
    return [obj["metadata"]["name"], status, f"{st.get('succeeded', 0)}/{spec.get('completions', 1)}", duration,
            age(obj["metadata"].get("creationTimestamp"), now)]


def daemonsets(obj: Obj, now: float) -> list[Any]:
    st = obj.get("status", {})
    sel = ",".join(f"{k}={v}" for k, v in ((obj.get("spec", {}).get("template", {}).get("spec", {}) or {}).get("nodeSelector") or {}).items())
    return [obj["metadata"]["name"], st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0),
            st.get("numberReady", 0), st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0), sel or "<none>",
            age(obj["metadata"].get("creationTimestamp"), now)]


def leases(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], (obj.get("spec") or {}).get("holderIdentity") or "",
            age(obj["metadata"].get("creationTimestamp"), now)]


def configmaps(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
            age(obj["metadata"].get("creationTimestamp"), now)]


def pvs(obj: Obj, now: float) -> list[Any]:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    ref = spec.get("claimRef") or {}
    return [obj["metadata"]["name"], (spec.get("capacity") or {}).get("storage", ""), _modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy", "Retain"), _phase(obj),
            f"{ref.get('namespace')}/{ref.get('name')}" if ref else "", spec.get("storageClassName", ""),
            "<unset>", st.get("reason", ""), age(obj["metadata"].get("creationTimestamp"), now)]


def pvcs(obj: Obj, now: float) -> list[Any]:
    spec, st = obj.get("spec", {}), obj.get("status", {})
    return [obj["metadata"]["name"], _phase(obj), spec.get("volumeName", ""),
            (st.get("capacity") or {}).get("storage", ""), _modes(st.get("accessModes")), spec.get("storageClassName") or "",
            "<unset>", age(obj["metadata"].get("creationTimestamp"), now)]


def _phase(obj: Obj) -> str:
    """The phase kubectl shows: "Terminating" once deletion started (a finalizer holds the object)."""
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    return (obj.get("status") or {}).get("phase", "Pending")


def _modes(modes: list[str] | None) -> str:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
    return ",".join(short.get(m, m) for m in modes or [])


def storageclasses(obj: Obj, now: float) -> list[Any]:
    name = obj["metadata"]["name"]
    if (obj["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [name, obj.get("provisioner", ""), obj.get("reclaimPolicy", "Delete"), obj.get("volumeBindingMode", "Immediate"),
            str(bool(obj.get("allowVolumeExpansion", False))).lower(), age(obj["metadata"].get("creationTimestamp"), now)]


def _list_with_more(items: list[str]) -> str:
    """listWithMoreString: three, then `` + N more...``; ``<unset>`` for none."""
    text = ",".join(items[:3])
    return f"{text} + {len(items) - 3} more..." if len(items) > 3 else text or "<unset>"


def endpointslices(obj: Obj, now: float) -> list[Any]:
    """printEndpointSlice: port numbers (a name, or ``*``, when unset) and addresses, three of each at most."""
    ports = [str(p["port"]) if p.get("port") is not None else (p.get("name") if p.get("name") is not None else "*")
             for p in obj.get("ports") or []]
    addrs = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return [obj["metadata"]["name"], obj.get("addressType", ""), _list_with_more(ports), _list_with_more(addrs),
            age(obj["metadata"].get("creationTimestamp"), now)]


def _hpa_metrics(specs: Any, statuses: Any) -> str:
    """formatHPAMetrics (1.32): ``cpu: 45%/80%``, ``memory: 100Mi/200Mi``; two at most, then `` + N more...``."""
    if not specs:
        return "<none>"
    statuses = statuses if isinstance(statuses, list) else []
    out = []
    for i, spec in enumerate(specs):
        typ = spec.get("type")
        st = statuses[i] if i < len(statuses) and isinstance(statuses[i], dict) else {}
        if typ in ("Resource", "ContainerResource"):
            key = "resource" if typ == "Resource" else "containerResource"
            src, cur = spec.get(key) or {}, (st.get(key) or {}).get("current") if st.get(key) else None
            target = src.get("target") or {}
            if target.get("averageValue") is not None:
                current = cur.get("averageValue", "<unknown>") if cur is not None else "<unknown>"
                out.append(f"{src.get('name', '')}: {current}/{target['averageValue']}")
            else:
                current = f"{cur['averageUtilization']}%" if cur is not None and cur.get("averageUtilization") is not None else "<unknown>"
                want = f"{target['averageUtilization']}%" if target.get("averageUtilization") is not None else "<auto>"
                out.append(f"{src.get('name', '')}: {current}/{want}")
        elif typ in ("Pods", "Object", "External"):
            key = typ.lower()
            target = (spec.get(key) or {}).get("target") or {}
            cur = ((st.get(key) or {}).get("current") or {}) if st.get(key) else None
            field = "averageValue" if typ == "Pods" or target.get("averageValue") is not None else "value"
            current = cur.get(field, "<unknown>") if cur is not None else "<unknown>"
            avg = " (avg)" if typ != "Pods" and field == "averageValue" else ""
            out.append(f"{current}/{target.get(field, '<unknown>')}{avg}")
        else:
            out.append("<unknown type>")
    if len(out) > 2:
        return ", ".join(out[:2]) + f" + {len(out) - 2} more..."
    return ", ".join(out)


def hpas(obj: Obj, now: float) -> list[Any]:
    """printHorizontalPodAutoscaler."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    mn = spec.get("minReplicas")
    return [obj["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}",
            _hpa_metrics(spec.get("metrics"), st.get("currentMetrics")), "<unset>" if mn is None else str(mn),
            spec.get("maxReplicas", 0), st.get("currentReplicas", 0), age(obj["metadata"].get("creationTimestamp"), now)]


HPA_COLUMNS = [NAME, col("Reference", desc="scaleTargetRef points to the target resource to scale, and is used to the pods for "
                         "which metrics should be collected, as well as to actually change the replica count."),
               col("Targets", desc="metrics contains the specifications for which to use to calculate the desired replica "
                   "count (the maximum replica count across all metrics will be used)."),
               col("MinPods", desc="minReplicas is the lower limit for the number of replicas to which the autoscaler can "
                   "scale down."),
               col("MaxPods", desc="maxReplicas is the upper limit for the number of replicas to which the autoscaler can "
                   "scale up."),
               col("Replicas", desc="currentReplicas is current number of replicas of pods managed by this autoscaler, as "
                   "last seen by the autoscaler."), AGE]


def default(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp", "")]


# the column descriptions kube-apiserver sends (the fields' SwaggerDoc), shortened to their first sentence
SVC_DOC = {
    "type": "type determines how the Service is exposed. Defaults to ClusterIP.",
    "clusterIP": "clusterIP is the IP address of the service and is usually assigned randomly.",
    "externalIPs": "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    "ports": "The list of ports that are exposed by this service.",
    "selector": "Route service traffic to pods with label keys and values matching this selector.",
}
SLICE_DOC = {
    "addressType": "addressType specifies the type of address carried by this EndpointSlice.",
    "ports": "ports specifies the list of network ports exposed by each endpoint in this slice.",
    "endpoints": "endpoints is a list of unique endpoints in this slice.",
}

def _template_columns(obj: Obj) -> tuple[str, str]:
    """layoutContainerCells: the template's container names and images, comma-joined."""
    cs = ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
    return ",".join(str(c.get("name", "")) for c in cs), ",".join(str(c.get("image", "")) for c in cs)


def _workload_selector(obj: Obj) -> str:
    from .deployments import selector_string

    return selector_string(obj)


def deployments(obj: Obj, now: float) -> list[Any]:
    """printDeployment: READY ``ready/desired``, UP-TO-DATE, AVAILABLE; wide adds containers, images, selector."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    desired = spec.get("replicas", 1) if spec.get("replicas") is not None else 1
    names, images = _template_columns(obj)
    return [obj["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{desired}", st.get("updatedReplicas", 0),
            st.get("availableReplicas", 0), age(obj["metadata"].get("creationTimestamp"), now), names, images,
            _workload_selector(obj)]


def replicasets(obj: Obj, now: float) -> list[Any]:
    """printReplicaSet / printReplicationController: DESIRED, CURRENT, READY; wide adds the template and selector."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _template_columns(obj)
    return [obj["metadata"]["name"], spec.get("replicas", 1) if spec.get("replicas") is not None else 1,
            st.get("replicas", 0), st.get("readyReplicas", 0), age(obj["metadata"].get("creationTimestamp"), now), names,
            images, _workload_selector(obj)]


def statefulsets(obj: Obj, now: float) -> list[Any]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _template_columns(obj)
    desired = spec.get("replicas", 1) if spec.get("replicas") is not None else 1
    return [obj["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{desired}",
            age(obj["metadata"].get("creationTimestamp"), now), names, images]


def controllerrevisions(obj: Obj, now: float) -> list[Any]:
    """printControllerRevision: CONTROLLER as ``statefulset.apps/web`` (``<none>`` without a controller)."""
    ref = next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
    controller = "<none>"
    if ref is not None:
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        kind = f"{ref.get('kind', '')}.{group}" if group else str(ref.get("kind", ""))
        controller = f"{kind.lower()}/{ref.get('name', '')}"
    return [obj["metadata"]["name"], controller, obj.get("revision", 0), age(obj["metadata"].get("creationTimestamp"), now)]


_TEMPLATE_COLS = [col("Containers", priority=1, desc="Names of each container in the template."),
                  col("Images", priority=1, desc="Images referenced by each container in the template.")]
DEPLOYMENT_COLUMNS = [NAME, col("Ready", desc="Number of the pod with ready state"),
                      col("Up-to-date", desc="Total number of non-terminated pods targeted by this deployment that have "
                                             "the desired template spec."),
                      col("Available", desc="Total number of available pods (ready for at least minReadySeconds) "
                                            "targeted by this deployment."), AGE, *_TEMPLATE_COLS,
                      col("Selector", priority=1, desc="Label selector for pods. Existing ReplicaSets whose pods are "
                                                       "selected by this will be the ones affected by this deployment.")]
REPLICASET_COLUMNS = [NAME, col("Desired", "integer", desc="Replicas is the number of desired replicas."),
                      col("Current", "integer", desc="Replicas is the most recently observed number of replicas."),
                      col("Ready", "integer", desc="readyReplicas is the number of pods targeted by this ReplicaSet with "
                                                   "a Ready Condition."), AGE, *_TEMPLATE_COLS,
                      col("Selector", priority=1, desc="Selector is a label query over pods that should match the "
                                                       "replica count.")]

def rolebindings(obj: Obj, now: float) -> list[Any]:
    """printRoleBinding / printClusterRoleBinding: ``Kind/name`` of the role; users, groups and ServiceAccounts
    (``namespace/name``) for ``-o wide``."""
    ref = obj.get("roleRef") or {}
    subjects = [s for s in obj.get("subjects") or [] if isinstance(s, dict)]
    users = [s.get("name", "") for s in subjects if s.get("kind") == "User"]
    groups = [s.get("name", "") for s in subjects if s.get("kind") == "Group"]
    sas = [f"{s.get('namespace', '')}/{s.get('name', '')}" for s in subjects if s.get("kind") == "ServiceAccount"]
    return [obj["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}",
            age(obj["metadata"].get("creationTimestamp"), now), ", ".join(users), ", ".join(groups), ", ".join(sas)]


def _binding_columns(role_doc: str) -> list[dict[str, Any]]:
    return [NAME, col("Role", desc=role_doc), AGE, col("Users", priority=1, desc="Users in the roleBinding"),
            col("Groups", priority=1, desc="Groups in the roleBinding"),
            col("ServiceAccounts", priority=1, desc="ServiceAccounts in the roleBinding")]


TABLES: dict[str, tuple[list[dict[str, Any]], Callable[[Obj, float], list[Any]]]] = {
    "rbac.authorization.k8s.io/v1/rolebindings": (_binding_columns(
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef "
        "cannot be resolved, the Authorizer must return an error."), rolebindings),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": (_binding_columns(
        "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the "
        "Authorizer must return an error."), rolebindings),
    "apps/v1/deployments": (DEPLOYMENT_COLUMNS, deployments),
    "apps/v1/replicasets": (REPLICASET_COLUMNS, replicasets),
    "v1/replicationcontrollers": (REPLICASET_COLUMNS, replicasets),
    "apps/v1/statefulsets": ([NAME, col("Ready", desc="Number of the pod with ready state"), AGE, *_TEMPLATE_COLS],
                             statefulsets),
    "apps/v1/controllerrevisions": ([NAME, col("Controller", desc="Controller of the object"),
                                     col("Revision", "integer", desc="Revision indicates the revision of the state "
                                                                     "represented by Data."), AGE], controllerrevisions),
    "v1/pods": (POD_COLUMNS, pods),
    "v1/nodes": (NODE_COLUMNS, nodes),
    "v1/namespaces": ([NAME, col("Status", desc="The status of the namespace"), AGE], namespaces),
    "v1/events": ([col("Last Seen"), col("Type"), col("Reason"), col("Object"), col("Message")], events),
    "events.k8s.io/v1/events": ([col("Last Seen"), col("Type"), col("Reason"), col("Object"), col("Message")], events),
    "v1/services": ([NAME, col("Type", desc=SVC_DOC["type"]), col("Cluster-IP", desc=SVC_DOC["clusterIP"]),
                     col("External-IP", desc=SVC_DOC["externalIPs"]), col("Port(s)", desc=SVC_DOC["ports"]), AGE,
                     col("Selector", priority=1, desc=SVC_DOC["selector"])], services),
    "v1/endpoints": ([NAME, col("Endpoints", desc="The set of all endpoints is the union of all subsets. Addresses are "
                                "placed into subsets according to the IPs they share. A single address with multiple ports, "
                                "some of which are ready and some of which are not (because they come from different "
                                "containers) will result in the address being displayed in different subsets for the "
                                "different ports. No address will appear in both Addresses and NotReadyAddresses in the "
                                "same subset. Sets of addresses and ports that comprise a service."), AGE], endpoints),
    "v1/configmaps": ([NAME, col("Data", "integer"), AGE], configmaps),
    "coordination.k8s.io/v1/leases": ([NAME, col("Holder"), AGE], leases),
    "v1/persistentvolumes": ([NAME, col("Capacity"), col("Access Modes"), col("Reclaim Policy"), col("Status"), col("Claim"),
                              col("StorageClass"), col("VolumeAttributesClass"), col("Reason"), AGE], pvs),
    "v1/persistentvolumeclaims": ([NAME, col("Status"), col("Volume"), col("Capacity"), col("Access Modes"), col("StorageClass"),
                                   col("VolumeAttributesClass"), AGE], pvcs),
    "storage.k8s.io/v1/storageclasses": ([NAME, col("Provisioner"), col("ReclaimPolicy"), col("VolumeBindingMode"),
                                          col("AllowVolumeExpansion"), AGE], storageclasses),
    "discovery.k8s.io/v1/endpointslices": ([NAME, col("AddressType", desc=SLICE_DOC["addressType"]),
                                            col("Ports", desc=SLICE_DOC["ports"]),
                                            col("Endpoints", desc=SLICE_DOC["endpoints"]), AGE], endpointslices),
    "batch/v1/jobs": ([NAME, col("Status"), col("Completions"), col("Duration"), AGE], jobs),
    "apps/v1/daemonsets": ([NAME, col("Desired", "integer"), col("Current", "integer"), col("Ready", "integer"),
                            col("Up-to-date", "integer"), col("Available", "integer"), col("Node Selector"), AGE], daemonsets),
    "autoscaling/v2/horizontalpodautoscalers": (HPA_COLUMNS, hpas),
    "apiregistration.k8s.io/v1/apiservices": ([NAME, col("Service", desc="The reference to the service that hosts this API "
                                                         "endpoint."),
                                               col("Available", desc="Whether this service is available."), AGE],
                                              lambda o, now: [o["metadata"]["name"], *apiservices.table_row(o),
                                                              age(o["metadata"].get("creationTimestamp"), now)]),
}


def table(resource: str, items: list[Obj], now: float, rv: str, cont: str = "", include: str = "Metadata") -> Obj:
    """A meta.k8s.io/v1 Table; each row's ``object`` as ``?includeObject=`` asks: ``Metadata`` (the default: a
    PartialObjectMetadata), ``Object`` (the whole object: what ``kubectl get --sort-by`` sorts on) or ``None``."""
    columns, row = TABLES.get(resource, ([NAME, col("Created At", "date")], default))
    rows = []
    for obj in items:
        r: Obj = {"cells": row(obj, now)}
        if include == "Object":
            r["object"] = obj
        elif include != "None":
            meta = obj.get("metadata", {})
            r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
        rows.append(r)
    md: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        md["continue"] = cont
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md, "columnDefinitions": columns, "rows": rows}


# -- CronJob, PodDisruptionBudget, PriorityClass, ResourceQuota, Ingress, IngressClass (printers.go) ------------------

def cronjobs(obj: Obj, now: float) -> list[Any]:
    """printCronJob: TIMEZONE ``<none>`` when unset, LAST SCHEDULE ``<none>`` before the first run; wide adds the job
    template's containers, images and selector."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    last = st.get("lastScheduleTime")
    jspec = ((spec.get("jobTemplate") or {}).get("spec") or {})
    names, images = _template_columns({"spec": jspec})
    from .deployments import format_selector

    return [obj["metadata"]["name"], spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "True" if spec.get("suspend") else "False", len(st.get("active") or []),
            age(last, now) if last else "<none>", age(obj["metadata"].get("creationTimestamp"), now), names, images,
            format_selector(jspec.get("selector")) if jspec.get("selector") else "<none>"]


def pdbs(obj: Obj, now: float) -> list[Any]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    return [obj["metadata"]["name"], str(spec["minAvailable"]) if spec.get("minAvailable") is not None else "N/A",
            str(spec["maxUnavailable"]) if spec.get("maxUnavailable") is not None else "N/A",
            st.get("disruptionsAllowed", 0), age(obj["metadata"].get("creationTimestamp"), now)]


def priorityclasses(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], obj.get("value", 0), bool(obj.get("globalDefault")),
            age(obj["metadata"].get("creationTimestamp"), now), obj.get("preemptionPolicy") or ""]


def resourcequotas(obj: Obj, now: float) -> list[Any]:
    """printResourceQuota: ``resource: used/hard`` sorted by name, ``limits.*`` in LIMIT, the rest in REQUEST."""
    st = obj.get("status") or {}
    request: list[str] = []
    limit: list[str] = []
    for r in sorted((obj.get("spec") or {}).get("hard") or {}):
        text = f"{r}: {(st.get('used') or {}).get(r, '0')}/{(st.get('hard') or {}).get(r, '0')}"
        (limit if r.split(".")[0] == "limits" and "." in r else request).append(text)
    return [obj["metadata"]["name"], age(obj["metadata"].get("creationTimestamp"), now), ", ".join(request),
            ", ".join(limit)]


def ingresses(obj: Obj, now: float) -> list[Any]:
    """printIngress: HOSTS (three, then `` + N more...``; ``*`` for none), ADDRESS from status (empty without an
    ingress controller), PORTS ``80`` or ``80, 443`` with TLS."""
    spec = obj.get("spec") or {}
    rules = spec.get("rules") or []
    hosts: list[str] = []
    more = False
    for r in rules:
        if len(hosts) == 3:
            more = True
        if not more and (r or {}).get("host"):
            hosts.append(r["host"])
    text = ",".join(hosts) + (f" + {len(rules) - 3} more..." if more else "") if hosts else "*"
    return [obj["metadata"]["name"], spec.get("ingressClassName") or "<none>", text,
            _lb_ingress(obj.get("status") or {}),
            "80, 443" if spec.get("tls") else "80", age(obj["metadata"].get("creationTimestamp"), now)]


def ingressclasses(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    p = spec.get("parameters")
    params = "<none>" if not p else p.get("kind", "") + (f".{p['apiGroup']}" if p.get("apiGroup") else "") + "/" + p.get("name", "")
    return [obj["metadata"]["name"], spec.get("controller", ""), params, age(obj["metadata"].get("creationTimestamp"), now)]


TABLES.update({
    "batch/v1/cronjobs": ([NAME, col("Schedule", desc="The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
                           col("Timezone", desc="The time zone name for the given schedule."),
                           col("Suspend", "boolean", desc="This flag tells the controller to suspend subsequent executions."),
                           col("Active", "integer", desc="A list of pointers to currently running jobs."),
                           col("Last Schedule", desc="Information when was the last time the job was successfully scheduled."),
                           AGE, col("Containers", priority=1, desc="Names of each container in the template."),
                           col("Images", priority=1, desc="Images referenced by each container in the template."),
                           col("Selector", priority=1, desc="A label query over pods that should match the pod count.")],
                          cronjobs),
    "policy/v1/poddisruptionbudgets": ([NAME, col("Min Available", desc="An eviction is allowed if at least \"minAvailable\" "
                                                  "pods selected by \"selector\" will still be available after the eviction."),
                                        col("Max Unavailable", desc="An eviction is allowed if at most \"maxUnavailable\" "
                                                                    "pods selected by \"selector\" are unavailable after the eviction."),
                                        col("Allowed Disruptions", "integer", desc="Number of pod disruptions that are "
                                                                                   "currently allowed."), AGE], pdbs),
    "scheduling.k8s.io/v1/priorityclasses": ([NAME, col("Value", "integer", desc="value represents the integer value of "
                                                        "this priority class."),
                                              col("Global-Default", "boolean", desc="globalDefault specifies whether this "
                                                  "PriorityClass should be considered as the default priority for pods "
                                                  "that do not have any priority class."), AGE,
                                              col("PreemptionPolicy", desc="preemptionPolicy is the Policy for preempting "
                                                                           "pods with lower priority.")], priorityclasses),
    "v1/resourcequotas": ([NAME, AGE, col("Request", desc="Request represents a minimum amount of cpu/memory that a "
                                          "container may consume."),
                           col("Limit", desc="Limits control the maximum amount of cpu/memory that a container may use "
                                             "independent of contention on the node.")], resourcequotas),
    "networking.k8s.io/v1/ingresses": ([NAME, col("Class", desc="The name of the IngressClass resource."),
                                        col("Hosts", desc="Hosts that incoming requests are matched against before the "
                                                          "ingress rule"),
                                        col("Address", desc="Address is a list containing ingress points for the "
                                                            "load-balancer"),
                                        col("Ports", desc="Ports of TLS configurations that open"), AGE], ingresses),
    "networking.k8s.io/v1/ingressclasses": ([NAME, col("Controller", desc="Controller that is responsible for handling "
                                                       "this class"),
                                             col("Parameters", desc="A reference to a resource with additional "
                                                                    "parameters"), AGE], ingressclasses),
})
