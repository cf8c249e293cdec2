"""Server-side printing (`Accept: ...;as=Table`): the columns kube-apiserver's printers send to kubectl."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from typing import Any

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

TABLES: dict[str, tuple[list[dict[str, Any]], Callable[[Obj, float], list[Any]]]] = {
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
