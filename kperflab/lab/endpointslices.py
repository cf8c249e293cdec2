"""kube-controller-manager's EndpointSlice controller (``staging/src/k8s.io/endpointslice``) and its legacy Endpoints
controller (``pkg/controller/endpoint``), for the lab's one node.

For every Service with a selector (ExternalName excepted) the controller keeps EndpointSlices ``<service>-<5 chars>``
with an endpoint per selected pod that has an address (ready/serving/terminating as ``podToEndpoint`` computes them),
grouped by the ports the pod resolves, at most ``max_endpoints_per_slice`` endpoints a slice, and a placeholder slice
when there are none; plus a ``v1.Endpoints`` of the Service's name. It writes only what changed, reusing and filling
existing slices as upstream's reconciler does, and deletes the slices of a Service that is gone (the garbage
collector's job upstream, by ownerReference).

Like an informer, it keeps its own caches of Services, pods, nodes and its slices, brought up to date from the store's
event log, so a pass costs what changed since the last one: the Services whose own object, selected pods or slices
changed. A lab with 20,000 selectorless Services pays nothing for them after the first pass.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from typing import Any

from . import validation
from .errors import APIError
from .services import parse_ip, scan, store_lock
from .store import Store

log = logging.getLogger("kperflab.lab.endpointslices")

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, service name)

SERVICES, PODS, NODES = "v1/services", "v1/pods", "v1/nodes"
SLICES, ENDPOINTS = "discovery.k8s.io/v1/endpointslices", "v1/endpoints"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LABEL_HEADLESS = "service.kubernetes.io/headless"
LABEL_SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
LABEL_ZONE = "topology.kubernetes.io/zone"
ANNOTATION_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
ANNOTATION_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
MAX_ENDPOINTS_PER_SLICE = 100  # kube-controller-manager --max-endpoints-per-slice
MAX_ENDPOINTS_ADDRESSES = 1000  # the Endpoints controller truncates beyond this
RESERVED_LABELS = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS)


def _d(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _key(obj: Obj) -> Key:
    meta = _d(obj.get("metadata"))
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _rv(obj: Obj) -> int:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return 0


def selector_of(svc: Obj) -> dict[str, str] | None:
    """The selector the controllers act on: None for ExternalName and selectorless Services (left to their users)."""
    spec = _d(svc.get("spec"))
    sel = spec.get("selector")
    if spec.get("type") == "ExternalName" or not isinstance(sel, dict) or not sel:
        return None
    return sel


def matches(selector: dict[str, str], pod: Obj | None) -> bool:
    if pod is None:
        return False
    labels = _d(_d(pod.get("metadata")).get("labels"))
    return all(labels.get(k) == v for k, v in selector.items())


# -- podToEndpoint and friends (utils.go), pure ------------------------------------------------------------

def pod_ready(pod: Obj) -> bool:
    return any(_d(c).get("type") == "Ready" and _d(c).get("status") == "True" for c in _l(_d(pod.get("status")).get("conditions")))


def should_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """ShouldPodBeInEndpoints: not terminal, has an IP, and (unless asked) not terminating."""
    st = _d(pod.get("status"))
    if st.get("phase") in ("Succeeded", "Failed"):
        return False
    if not st.get("podIP") and not st.get("podIPs"):
        return False
    return include_terminating or not _d(pod.get("metadata")).get("deletionTimestamp")


def pod_addresses(pod: Obj, address_type: str) -> list[str]:
    """The pod's IPs of one family (status.podIPs; status.podIP when podIPs is missing), written canonically."""
    st = _d(pod.get("status"))
    ips = [_d(p).get("ip") for p in _l(st.get("podIPs"))] or [st.get("podIP")]
    out = []
    for ip in ips:
        addr = parse_ip(ip)
        if addr is not None and (addr.version == 6) == (address_type == "IPv6"):
            out.append(str(addr))
    return out


def should_set_hostname(pod: Obj, svc: Obj) -> bool:
    spec = _d(pod.get("spec"))
    return (bool(spec.get("hostname")) and isinstance(spec.get("hostname"), str) and spec.get("subdomain") == svc["metadata"]["name"]
            and _key(pod)[0] == _key(svc)[0])


def pod_to_endpoint(pod: Obj, svc: Obj, address_type: str, zone: str | None) -> Obj:
    serving = pod_ready(pod)
    terminating = bool(_d(pod.get("metadata")).get("deletionTimestamp"))
    ready = bool(_d(svc.get("spec")).get("publishNotReadyAddresses")) or (serving and not terminating)
    meta = pod["metadata"]
    ep: Obj = {"addresses": pod_addresses(pod, address_type),
               "conditions": {"ready": ready, "serving": serving, "terminating": terminating}}
    if should_set_hostname(pod, svc):
        ep["hostname"] = pod["spec"]["hostname"]
    ep["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                       "uid": meta.get("uid", "")}
    node = _d(pod.get("spec")).get("nodeName")
    if isinstance(node, str) and node:
        ep["nodeName"] = node
    if zone:
        ep["zone"] = zone
    return ep


def find_port(pod: Obj, svc_port: Obj) -> int | None:
    """FindPort: a numeric targetPort as is; a named one looked up in the pod's containers (and sidecars) with the same
    protocol; None when no container names it."""
    target = svc_port.get("targetPort")
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if not isinstance(target, str):
        return None
    proto = svc_port.get("protocol") or "TCP"
    spec = _d(pod.get("spec"))
    containers = _l(spec.get("containers")) + [c for c in _l(spec.get("initContainers")) if _d(c).get("restartPolicy") == "Always"]
    for c in containers:
        for p in _l(_d(c).get("ports")):
            p = _d(p)
            if p.get("name") == target and (p.get("protocol") or "TCP") == proto and isinstance(p.get("containerPort"), int):
                return p["containerPort"]
    return None


def endpoint_ports(svc: Obj, pod: Obj) -> list[Obj]:
    """getEndpointPorts: the Service's ports the pod resolves (a named targetPort it lacks is left out)."""
    spec = _d(svc.get("spec"))
    out = []
    for sp in _l(spec.get("ports")):
        num = find_port(pod, sp) if isinstance(sp, dict) else None
        if num is None:
            continue
        ep: Obj = {"name": sp.get("name") or "", "protocol": sp.get("protocol") or "TCP", "port": num}
        if sp.get("appProtocol") is not None:
            ep["appProtocol"] = sp["appProtocol"]
        out.append(ep)
    return out


def port_map_key(ports: Iterable[Obj] | None) -> tuple[Any, ...]:
    return tuple(sorted((str(p.get("name") or ""), str(p.get("protocol") or ""), p.get("port") or 0, str(p.get("appProtocol") or ""))
                        for p in ports or []))


def endpoint_key(ep: Obj) -> tuple[Any, ...]:
    ref = _d(ep.get("targetRef"))
    return tuple(sorted(_l(ep.get("addresses")))), ref.get("uid") or "", ref.get("name") or "", ep.get("hostname") or ""


def is_service_ip_set(svc: Obj) -> bool:
    ip = _d(svc.get("spec")).get("clusterIP")
    return bool(ip) and ip != "None"


def address_types(svc: Obj) -> list[str]:
    """getAddressTypesForService."""
    fams = [f for f in _l(_d(svc.get("spec")).get("ipFamilies")) if f in ("IPv4", "IPv6")]
    if fams:
        return sorted(set(fams))
    ip = _d(svc.get("spec")).get("clusterIP")
    if ip and ip != "None":
        addr = parse_ip(ip)
        return ["IPv6" if addr is not None and addr.version == 6 else "IPv4"]
    return ["IPv4", "IPv6"]


def slice_labels(svc: Obj, current: dict[str, str] | None = None) -> tuple[dict[str, str], bool]:
    """setEndpointSliceLabels: the Service's labels (reserved keys excepted), the headless label, the service-name and
    managed-by labels; and whether the Service's own labels differ from the slice's."""
    svc_labels = {k: v for k, v in _d(svc["metadata"].get("labels")).items() if k not in RESERVED_LABELS}
    had = {k: v for k, v in (current or {}).items() if k not in RESERVED_LABELS}
    labels = dict(svc_labels)
    if not is_service_ip_set(svc):
        labels[LABEL_HEADLESS] = ""
    labels[LABEL_SERVICE_NAME] = svc["metadata"]["name"]
    labels[LABEL_MANAGED_BY] = CONTROLLER_NAME
    return labels, had != svc_labels


def owner_ref(svc: Obj) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "name": svc["metadata"]["name"], "uid": svc["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def owned_by(obj: Obj, uid: str | None) -> bool:
    return uid is not None and any(_d(r).get("uid") == uid and _d(r).get("kind") == "Service" and _d(r).get("apiVersion") == "v1"
                                   for r in _l(_d(obj.get("metadata")).get("ownerReferences")))


def new_slice(svc: Obj, ports: list[Obj], address_type: str) -> Obj:
    labels, _ = slice_labels(svc)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"generateName": svc["metadata"]["name"] + "-", "namespace": svc["metadata"]["namespace"], "labels": labels,
                         "ownerReferences": [owner_ref(svc)]},
            "addressType": address_type, "endpoints": [], "ports": list(ports)}


def _endpoints_of(sl: Obj) -> list[Obj]:
    return [e for e in _l(sl.get("endpoints")) if isinstance(e, dict)]


def _is_placeholder(sl: Obj, svc: Obj, address_type: str) -> bool:
    """placeholderSliceCompare: an empty slice of this Service with the labels it would get."""
    labels, _ = slice_labels(svc)
    return (sl.get("addressType") == address_type and not _l(sl.get("endpoints")) and not _l(sl.get("ports"))
            and _d(sl["metadata"].get("labels")) == labels and owned_by(sl, svc["metadata"]["uid"]))


def format_trigger_time(ts: str) -> str:
    return ts  # metav1.Time is whole seconds: RFC3339Nano of it is the same text


# -- the controller ----------------------------------------------------------------------------------------

class EndpointSliceController:
    """One ``reconcile()`` per controller pass: bring the caches up to date, then reconcile the Services touched."""

    def __init__(self, store: Store, max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE, endpoints: bool = True) -> None:
        self.store = store
        self.max = max_endpoints_per_slice
        self.manage_endpoints = endpoints  # also the legacy v1 Endpoints (the endpoints controller)
        self._cursor: int | None = None
        self._uids: dict[Key, str] = {}  # every Service
        self._selected: dict[Key, Obj] = {}  # Services with a selector
        self._by_ns: dict[str, set[Key]] = {}
        self._pods: dict[str, dict[str, Obj]] = {}
        self._nodes: dict[str, str | None] = {}  # name → zone
        self._slices: dict[Key, dict[str, Obj]] = {}  # ours, by Service
        self._slice_key: dict[Key, Key] = {}  # (namespace, slice name) → Service key
        self._endpoints: dict[Key, Obj] = {}
        self._dirty: set[Key] = set()
        self._own: set[int] = set()  # resourceVersions of our own writes: their events are no news
        self._pod_times: dict[Key, dict[str, str]] = {}  # the trigger-time tracker's state
        self._svc_times: dict[Key, str] = {}
        self.writes = 0  # creates + updates + deletes so far (for tests and measurements)

    # -- caches ------------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Bring the caches up to date from the store's event log (everything again when the log no longer reaches
        back to the last pass). The store's lock is held so that no event falls between two resources."""
        with store_lock(self.store):
            now = self.store.resource_version
            if self._cursor == now:
                return
            if self._cursor is not None:
                try:
                    since = str(self._cursor)
                    for resource, handle in self._handlers():
                        for type_, obj in self.store.watch(resource, None, since, _everything, timeout=0):
                            handle(type_, obj)
                    self._cursor = now
                    self._own = {rv for rv in self._own if rv > now}
                    return
                except APIError:
                    log.info("the event log moved past the last pass: relisting")
            self._relist()
            self._cursor = now
            self._own.clear()

    def _handlers(self) -> list[tuple[str, Any]]:
        out = [(NODES, self._on_node), (SERVICES, self._on_service), (PODS, self._on_pod), (SLICES, self._on_slice)]
        if self.manage_endpoints:
            out.append((ENDPOINTS, self._on_endpoints))
        return out

    def _relist(self) -> None:
        for cache in (self._uids, self._selected, self._by_ns, self._pods, self._nodes, self._slices, self._slice_key,
                      self._endpoints):
            cache.clear()
        for resource, handle in self._handlers():
            if resource == SERVICES:  # thousands may be selectorless: only the ones kept are copied
                scan(self.store, resource, lambda svc: self._on_service(
                    "ADDED", copy.deepcopy(svc) if selector_of(svc) is not None else svc))
            else:
                items, *_ = self.store.list(resource)
                for obj in items:
                    handle("ADDED", obj)
        self._dirty |= set(self._selected) | set(self._slices) | set(self._endpoints)

    def _on_node(self, type_: str, node: Obj) -> None:
        name = _key(node)[1]
        zone = _d(_d(node.get("metadata")).get("labels")).get(LABEL_ZONE)
        before = self._nodes.get(name, "-")
        if type_ == "DELETED":
            self._nodes.pop(name, None)
        else:
            self._nodes[name] = zone
        if before != self._nodes.get(name, "-"):
            self._dirty |= set(self._selected)

    def _on_service(self, type_: str, svc: Obj) -> None:
        key = _key(svc)
        was = self._selected.pop(key, None)
        if was is not None:
            self._by_ns.get(key[0], set()).discard(key)
        if type_ == "DELETED":
            self._uids.pop(key, None)
            if was is not None or key in self._slices or key in self._endpoints:
                self._dirty.add(key)
            return
        uid = _d(svc.get("metadata")).get("uid")
        if self._uids.get(key) != uid and (key in self._slices or key in self._endpoints):
            self._dirty.add(key)  # a new Service of that name: slices of the old one go
        self._uids[key] = uid
        if selector_of(svc) is not None:
            self._selected[key] = svc
            self._by_ns.setdefault(key[0], set()).add(key)
            self._dirty.add(key)

    def _on_pod(self, type_: str, pod: Obj) -> None:
        ns, name = _key(pod)
        pods = self._pods.setdefault(ns, {})
        old = pods.get(name)
        if type_ == "DELETED":
            pods.pop(name, None)
        else:
            pods[name] = pod
        new = None if type_ == "DELETED" else pod
        if old is not None and new is not None and _relevant(old) == _relevant(new):
            return
        for key in self._by_ns.get(ns, ()):
            sel = selector_of(self._selected[key])
            if sel is not None and (matches(sel, old) or matches(sel, new)):
                self._dirty.add(key)

    def _on_slice(self, type_: str, sl: Obj) -> None:
        ns, name = _key(sl)
        prev = self._slice_key.pop((ns, name), None)
        if prev is not None:
            self._slices.get(prev, {}).pop(name, None)
            if not self._slices.get(prev, True):
                del self._slices[prev]
        labels = _d(_d(sl.get("metadata")).get("labels"))
        ours = labels.get(LABEL_MANAGED_BY) == CONTROLLER_NAME and isinstance(labels.get(LABEL_SERVICE_NAME), str)
        if type_ != "DELETED" and ours:
            key = (ns, labels[LABEL_SERVICE_NAME])
            self._slices.setdefault(key, {})[name] = sl
            self._slice_key[(ns, name)] = key
        else:
            key = prev
        if key is not None and _rv(sl) not in self._own:
            self._dirty.add(key)
        if prev is not None and prev != key and _rv(sl) not in self._own:
            self._dirty.add(prev)

    def _on_endpoints(self, type_: str, ep: Obj) -> None:
        key = _key(ep)
        if type_ == "DELETED":
            self._endpoints.pop(key, None)
        else:
            self._endpoints[key] = ep
        if _rv(ep) not in self._own and (key in self._selected or type_ == "DELETED"):
            self._dirty.add(key)

    # -- the pass ------------------------------------------------------------------------------------
    def reconcile(self) -> int:
        """Bring the caches up to date and reconcile the Services that need it; returns the writes made."""
        self._sync()
        before = self.writes
        dirty, self._dirty = self._dirty, set()
        for key in sorted(dirty):
            try:
                self._reconcile(key)
            except APIError as exc:  # a conflict with another writer, a namespace going: try again next pass
                if exc.code not in (404, 409):
                    log.warning("endpoints of service %s/%s: %s", key[0], key[1], exc.message)
                self._dirty.add(key)
            except Exception:  # noqa: BLE001 - one Service's bug must not cost the others their endpoints
                log.exception("endpoints of service %s/%s", key[0], key[1])
        return self.writes - before

    def _reconcile(self, key: Key) -> None:
        svc = self._selected.get(key)
        uid = self._uids.get(key)
        for sl in list(self._slices.get(key, {}).values()):
            if not owned_by(sl, uid):  # the garbage collector's part: slices of a Service that is gone
                self._delete_slice(sl)
        if svc is None:
            if uid is None and key in self._endpoints and self.manage_endpoints:
                self._delete(ENDPOINTS, self._endpoints.pop(key))
            if uid is None:
                self._pod_times.pop(key, None)
                self._svc_times.pop(key, None)
            return
        sel = selector_of(svc)
        assert sel is not None
        pods = sorted((p for p in self._pods.get(key[0], {}).values() if matches(sel, p)), key=lambda p: p["metadata"]["name"])
        trigger = self._trigger_time(key, svc, pods)
        terminating_ns = self._namespace_terminating(key[0])
        types = address_types(svc)
        existing = [sl for sl in self._slices.get(key, {}).values() if owned_by(sl, uid)]
        for sl in existing:
            if sl.get("addressType") not in types:
                self._delete_slice(sl)
        for address_type in types:
            mine = [sl for sl in existing if sl.get("addressType") == address_type]
            self._reconcile_address_type(svc, pods, mine, address_type, trigger, terminating_ns)
        if self.manage_endpoints:
            self._reconcile_endpoints(svc, pods, trigger, terminating_ns)

    def _namespace_terminating(self, ns: str) -> bool:
        obj = self.store.try_get("v1/namespaces", "", ns)
        return obj is None or bool(obj["metadata"].get("deletionTimestamp"))

    def _trigger_time(self, key: Key, svc: Obj, pods: list[Obj]) -> str | None:
        """TriggerTimeTracker: the earliest change (pod readiness transition, Service creation) since the last sync."""
        last = self._pod_times.get(key, {})
        times: dict[str, str] = {}
        changed: list[str] = []
        for p in pods:
            cond = next((c for c in _l(_d(p.get("status")).get("conditions")) if _d(c).get("type") == "Ready"), None)
            t = _d(cond).get("lastTransitionTime")
            if isinstance(t, str) and t:
                times[p["metadata"]["name"]] = t
                if t > last.get(p["metadata"]["name"], ""):
                    changed.append(t)
        created = svc["metadata"].get("creationTimestamp") or ""
        if created > self._svc_times.get(key, ""):
            changed.append(created)
        self._pod_times[key], self._svc_times[key] = times, created
        return format_trigger_time(min(changed)) if changed else None

    def _reconcile_address_type(self, svc: Obj, pods: list[Obj], existing: list[Obj], address_type: str,
                                trigger: str | None, terminating_ns: bool) -> None:
        """reconcileByAddressType + finalize: slices to create, update and delete so that each endpoint is in one."""
        spec = svc["spec"]
        existing_by_pm: dict[tuple[Any, ...], list[Obj]] = {}
        for sl in existing:
            existing_by_pm.setdefault(port_map_key(_l(sl.get("ports"))), []).append(sl)
        desired_by_pm: dict[tuple[Any, ...], dict[tuple[Any, ...], Obj]] = {}
        ports_by_pm: dict[tuple[Any, ...], list[Obj]] = {}
        for pod in pods:
            if not should_be_in_endpoints(pod, True):
                continue
            ports = [] if not _l(spec.get("ports")) and spec.get("clusterIP") == "None" else endpoint_ports(svc, pod)
            pm = port_map_key(ports)
            desired = desired_by_pm.setdefault(pm, {})
            ports_by_pm.setdefault(pm, ports)
            node = _d(pod.get("spec")).get("nodeName")
            if node not in self._nodes and not spec.get("publishNotReadyAddresses"):
                continue  # the pod's node is unknown: left out until it is
            ep = pod_to_endpoint(pod, svc, address_type, self._nodes.get(node) if isinstance(node, str) else None)
            if ep["addresses"]:
                desired[endpoint_key(ep)] = ep
        creates: list[Obj] = []
        updates: list[Obj] = []
        deletes: list[Obj] = []
        for pm, desired in desired_by_pm.items():
            c, u, d = self._by_port_map(svc, existing_by_pm.get(pm, []), desired, ports_by_pm[pm], address_type)
            creates += c
            updates += u
            deletes += d
        for pm, slices in existing_by_pm.items():
            if pm not in desired_by_pm:
                deletes += slices
        if len(existing) == len(deletes) and not creates:
            placeholder = new_slice(svc, [], address_type)
            if len(deletes) == 1 and _is_placeholder(deletes[0], svc, address_type):
                deletes = []
            else:
                creates.append(placeholder)
        # a slice to delete becomes the one to create, under its name (finalize)
        while creates and deletes:
            gone, new = deletes.pop(), creates.pop()
            new["metadata"]["name"] = gone["metadata"]["name"]
            updates.append(new)
        if not terminating_ns:
            for sl in creates:
                self._write_slice(sl, trigger, create=True)
        for sl in updates:
            self._write_slice(sl, trigger, create=False)
        for sl in deletes:
            self._delete_slice(sl)

    def _by_port_map(self, svc: Obj, existing: list[Obj], desired: dict[tuple[Any, ...], Obj], ports: list[Obj],
                     address_type: str) -> tuple[list[Obj], list[Obj], list[Obj]]:
        """reconcileByPortMapping: keep endpoints where they are, update the ones that changed, fill slices that were
        touched anyway, then one unchanged slice with room, then new slices."""
        by_name: dict[str, Obj] = {}
        unchanged: list[str] = []
        to_update: list[str] = []
        to_delete: list[str] = []
        for sl in existing:
            name = sl["metadata"]["name"]
            by_name[name] = sl
            kept, changed = [], False
            current = _endpoints_of(sl)
            for ep in current:
                got = desired.pop(endpoint_key(ep), None)
                if got is not None:
                    kept.append(got)
                    changed = changed or got != ep
            labels, labels_changed = slice_labels(svc, _d(sl["metadata"].get("labels")))
            if changed or len(kept) != len(current):
                if not kept:
                    to_delete.append(name)
                    continue
                new = copy.deepcopy(sl)
                new["endpoints"], new["metadata"]["labels"] = kept, labels
                by_name[name] = new
                to_update.append(name)
            elif labels_changed:
                new = copy.deepcopy(sl)
                new["metadata"]["labels"] = labels
                by_name[name] = new
                to_update.append(name)
            else:
                unchanged.append(name)
        left = list(desired.values())
        if left and to_update:
            for name in sorted(to_update, key=lambda n: -len(_endpoints_of(by_name[n]))):
                sl = by_name[name]
                room = self.max - len(_endpoints_of(sl))
                if room > 0:
                    sl["endpoints"] = _endpoints_of(sl) + left[:room]
                    left = left[room:]
        creates: list[Obj] = []
        while left:
            fill: Obj | None = None
            if len(left) < self.max and unchanged:
                best = None
                for name in unchanged:  # getSliceToFill: the one that ends closest to full
                    diff = self.max - (len(left) + len(_endpoints_of(by_name[name])))
                    if diff >= 0 and (best is None or diff < best[0]):
                        best = (diff, name)
                if best is not None:
                    fill = copy.deepcopy(by_name[best[1]])
                    by_name[best[1]] = fill
                    unchanged.remove(best[1])
                    to_update.append(best[1])
            if fill is None:
                fill = new_slice(svc, ports, address_type)
                creates.append(fill)
            room = self.max - len(_endpoints_of(fill))
            fill["endpoints"] = _endpoints_of(fill) + left[:room]
            left = left[room:]
        return creates, [by_name[n] for n in to_update], [by_name[n] for n in to_delete]

    # -- writes ------------------------------------------------------------------------------------
    def _write_slice(self, sl: Obj, trigger: str | None, create: bool) -> None:
        meta = sl["metadata"]
        annotations = dict(_d(meta.get("annotations")))
        if trigger:
            annotations[ANNOTATION_TRIGGER_TIME] = trigger
        else:
            annotations.pop(ANNOTATION_TRIGGER_TIME, None)
        if annotations:
            meta["annotations"] = annotations
        else:
            meta.pop("annotations", None)
        if not sl.get("endpoints"):
            sl["endpoints"] = None  # as stored upstream: an empty list is null
        if not sl.get("ports"):
            sl["ports"] = None
        if create:
            for attempt in range(3):
                meta.pop("name", None)
                validation.generate_name(meta)
                try:
                    done = self.store.create(SLICES, sl, "endpointslices", "discovery.k8s.io")
                    break
                except APIError as exc:
                    if exc.code != 409 or attempt == 2:
                        raise
        else:
            done = self.store.update(SLICES, sl, kind="endpointslices", group="discovery.k8s.io")
        self._own.add(_rv(done))
        self.writes += 1
        self._on_slice("MODIFIED", done)

    def _delete_slice(self, sl: Obj) -> None:
        ns, name = _key(sl)
        try:
            gone = self.store.remove(SLICES, ns, name, "endpointslices", "discovery.k8s.io")
        except APIError as exc:
            if exc.code != 404:
                raise
            gone = sl
        else:
            self._own.add(_rv(gone))
            self.writes += 1
        self._on_slice("DELETED", gone)

    def _delete(self, resource: str, obj: Obj) -> None:
        ns, name = _key(obj)
        try:
            gone = self.store.remove(resource, ns, name)
            self._own.add(_rv(gone))
            self.writes += 1
        except APIError as exc:
            if exc.code != 404:
                raise

    # -- the legacy Endpoints ------------------------------------------------------------------------
    def _reconcile_endpoints(self, svc: Obj, pods: list[Obj], trigger: str | None, terminating_ns: bool) -> None:
        """The endpoints controller's syncService: subsets repacked by port set, ready addresses and not-ready ones."""
        spec = svc["spec"]
        publish = bool(spec.get("publishNotReadyAddresses"))
        family = (_l(spec.get("ipFamilies")) or ["IPv4"])[0]
        by_port: dict[tuple[Any, ...], dict[tuple[str, str], tuple[Obj, bool]]] = {}
        port_of: dict[tuple[Any, ...], Obj | None] = {}
        for pod in pods:
            if not should_be_in_endpoints(pod, publish):
                continue
            ips = pod_addresses(pod, family)
            if not ips:
                continue
            meta = pod["metadata"]
            addr: Obj = {"ip": ips[0]}
            if should_set_hostname(pod, svc):
                addr["hostname"] = pod["spec"]["hostname"]
            node = _d(pod.get("spec")).get("nodeName")
            if isinstance(node, str) and node:
                addr["nodeName"] = node
            addr["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                                 "uid": meta.get("uid", "")}
            ready = publish or pod_ready(pod)
            if not _l(spec.get("ports")):
                if spec.get("clusterIP") == "None":
                    by_port.setdefault((), {})[(ips[0], str(meta.get("uid", "")))] = (addr, ready)
                    port_of[()] = None
                continue
            for sp in _l(spec.get("ports")):
                num = find_port(pod, sp) if isinstance(sp, dict) else None
                if num is None:
                    continue
                epp: Obj = {"name": sp.get("name") or "", "port": num, "protocol": sp.get("protocol") or "TCP"}
                if sp.get("appProtocol") is not None:
                    epp["appProtocol"] = sp["appProtocol"]
                k = port_map_key([epp])
                by_port.setdefault(k, {})[(ips[0], str(meta.get("uid", "")))] = (addr, ready)
                port_of[k] = epp
        subsets = _repack(by_port, port_of)
        subsets, truncated = _truncate(subsets)
        labels = {k: v for k, v in _d(svc["metadata"].get("labels")).items() if k != LABEL_HEADLESS}
        if not is_service_ip_set(svc):
            labels[LABEL_HEADLESS] = ""
        labels[LABEL_SKIP_MIRROR] = "true"
        key = _key(svc)
        cur = self._endpoints.get(key)
        cur_annotations = _d(_d(cur.get("metadata")).get("annotations")) if cur else {}
        if cur is not None and _l(cur.get("subsets")) == subsets and _d(cur["metadata"].get("labels")) == labels \
                and (ANNOTATION_OVER_CAPACITY in cur_annotations) == truncated:
            return
        if cur is None and terminating_ns:
            return
        new: Obj = copy.deepcopy(cur) if cur is not None else {
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": key[1], "namespace": key[0]}}
        annotations = dict(cur_annotations)
        annotations.pop(ANNOTATION_OVER_CAPACITY, None)
        if truncated:
            annotations[ANNOTATION_OVER_CAPACITY] = "truncated"
        if trigger:
            annotations[ANNOTATION_TRIGGER_TIME] = trigger
        else:
            annotations.pop(ANNOTATION_TRIGGER_TIME, None)
        new["metadata"]["labels"] = labels
        if annotations:
            new["metadata"]["annotations"] = annotations
        else:
            new["metadata"].pop("annotations", None)
        if subsets:
            new["subsets"] = subsets
        else:
            new.pop("subsets", None)
        if cur is None:
            try:
                done = self.store.create(ENDPOINTS, new, "endpoints")
            except APIError as exc:
                if exc.code != 409:
                    raise
                done = self.store.update(ENDPOINTS, new, kind="endpoints", check_rv=False)
        else:
            done = self.store.update(ENDPOINTS, new, kind="endpoints")
        self._own.add(_rv(done))
        self.writes += 1
        self._endpoints[key] = done


def _repack(by_port: dict[tuple[Any, ...], dict[tuple[str, str], tuple[Obj, bool]]],
            port_of: dict[tuple[Any, ...], Obj | None]) -> list[Obj]:
    """endpoints.RepackSubsets + SortSubsets: ports offered by the same addresses (with the same readiness) share a
    subset; addresses sorted by IP and UID, ports by name and number."""
    groups: dict[tuple[Any, ...], tuple[dict[tuple[str, str], tuple[Obj, bool]], list[Obj]]] = {}
    for k, addrs in by_port.items():
        sig = tuple(sorted((a, r) for a, (_, r) in addrs.items()))
        entry = groups.setdefault(sig, (addrs, []))
        if port_of[k] is not None:
            entry[1].append(port_of[k])  # type: ignore[arg-type]
    out = []
    for addrs, ports in groups.values():
        ready = [a for key, (a, r) in sorted(addrs.items()) if r]
        not_ready = [a for key, (a, r) in sorted(addrs.items()) if not r]
        subset: Obj = {}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if ports:
            subset["ports"] = sorted(ports, key=lambda p: (p["name"], p["port"], p["protocol"]))
        out.append(subset)
    out.sort(key=lambda s: [(a["ip"], a["targetRef"]["uid"]) for a in s.get("addresses", []) + s.get("notReadyAddresses", [])])
    return out


def _truncate(subsets: list[Obj]) -> tuple[list[Obj], bool]:
    """At most 1000 addresses (ready ones first), as the Endpoints controller keeps."""
    total = sum(len(s.get("addresses", [])) + len(s.get("notReadyAddresses", [])) for s in subsets)
    if total <= MAX_ENDPOINTS_ADDRESSES:
        return subsets, False
    left = MAX_ENDPOINTS_ADDRESSES
    out = []
    for field in ("addresses", "notReadyAddresses"):
        for s in subsets:
            take = s.get(field, [])[:left]
            left -= len(take)
            if take:
                entry: Obj = {field: take}
                if "ports" in s:
                    entry["ports"] = s["ports"]
                out.append(entry)
    return out, True


def _relevant(pod: Obj) -> tuple[Any, ...]:
    """What of a pod the endpoints depend on: a status update that changes nothing of it is no news."""
    meta, spec, st = _d(pod.get("metadata")), _d(pod.get("spec")), _d(pod.get("status"))
    return (meta.get("labels"), meta.get("uid"), bool(meta.get("deletionTimestamp")), spec.get("nodeName"),
            spec.get("hostname"), spec.get("subdomain"), st.get("phase"), st.get("podIP"), st.get("podIPs"),
            [(_d(c).get("name"), _d(c).get("ports"), _d(c).get("restartPolicy"))
             for g in ("initContainers", "containers") for c in _l(spec.get(g))],
            [(_d(c).get("status"), _d(c).get("lastTransitionTime")) for c in _l(st.get("conditions")) if _d(c).get("type") == "Ready"])


def _everything(obj: Obj) -> bool:
    return True

