"""Services as kube-apiserver and kube-controller-manager handle them, without sockets: ClusterIP and NodePort
allocation (messages as kube-apiserver 1.32 words them), the EndpointSlice and Endpoints controllers, DELETE answering
with the Service, and the columns `kubectl get svc` / `kubectl get endpointslices` print."""

from __future__ import annotations

import ipaddress
import json
import random
import threading
from typing import Any

import pytest

from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.endpointslices import EndpointSliceController
from kperflab.lab.server import version_info
from kperflab.lab.store import Store

NODE = "kperflab-lab"
SVC = "/api/v1/namespaces/default/services"
SLICES = "discovery.k8s.io/v1/endpointslices"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def make_api(cidr: str = "10.96.0.0/16", **kw: Any) -> APIServer:
    s = Store()
    s.create("v1/namespaces", {"metadata": {"name": "default"}, "status": {"phase": "Active"}})
    s.create("v1/nodes", {"metadata": {"name": NODE}})
    api = APIServer(s, "tok", version=version_info(), service_cidr=cidr, **kw)
    api.services.rng = random.Random(7)
    return api


@pytest.fixture
def api() -> APIServer:
    return make_api()


def call(api: APIServer, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
         ctype: str = "application/json", accept: str = "application/json") -> Any:
    headers = {"authorization": "Bearer tok", "content-type": ctype, "accept": accept}
    raw = json.dumps(body).encode() if body is not None else b""
    return api.handle(Request(method, path, query or {}, headers, raw))


def service(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("ports", [{"port": 80}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def create(api: APIServer, name: str, **spec: Any) -> dict[str, Any]:
    r = call(api, "POST", SVC, service(name, **spec))
    assert r.code == 201, r.body
    return r.body


def bootstrap_kubernetes_service(api: APIServer, ip: str = "10.96.0.1") -> None:
    """What the lab does at bootstrap: straight into the store, around the API."""
    api.store.create("v1/services", {"apiVersion": "v1", "kind": "Service",
                                     "metadata": {"name": "kubernetes", "namespace": "default"},
                                     "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                                              "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}})


# -- ClusterIPs ---------------------------------------------------------------------------------------

def test_cluster_ips_are_random_in_the_range_above_the_static_band(api):
    ips = [ipaddress.ip_address(create(api, f"s{i}")["spec"]["clusterIP"]) for i in range(60)]
    net = ipaddress.ip_network("10.96.0.0/16")
    assert all(ip in net for ip in ips) and len(set(ips)) == 60
    assert all(ip > ipaddress.ip_address("10.96.1.0") for ip in ips), "the first 256 are left to explicit requests"
    assert ips != sorted(ips), "picked at random, not in sequence"
    assert int(max(ips)) - int(min(ips)) > 10_000


def test_defaults_families_and_policy(api):
    spec = create(api, "web", selector={"app": "web"})["spec"]
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert (spec["ipFamilies"], spec["ipFamilyPolicy"]) == (["IPv4"], "SingleStack")
    assert (spec["type"], spec["sessionAffinity"], spec["internalTrafficPolicy"]) == ("ClusterIP", "None", "Cluster")
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert "externalTrafficPolicy" not in spec and "nodePort" not in spec["ports"][0]


def test_concurrent_creates_never_share_an_address():
    api = make_api("10.96.0.0/24")  # 254 addresses: without one lock around choose-and-store, 200 creates collide
    bootstrap_kubernetes_service(api)
    codes: list[int] = []
    ips: list[str] = []
    node_ports: list[int] = []
    start = threading.Barrier(50)

    def worker(k: int) -> None:
        start.wait()
        for i in range(4):
            typ = "NodePort" if i % 2 else "ClusterIP"
            r = call(api, "POST", SVC, service(f"c{k}-{i}", type=typ))
            codes.append(r.code)
            if r.code == 201:
                ips.append(r.body["spec"]["clusterIP"])
                node_ports.extend(p["nodePort"] for p in r.body["spec"]["ports"] if p.get("nodePort"))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [201] * 200
    assert len(set(ips)) == 200 and "10.96.0.1" not in ips
    assert len(node_ports) == 100 and len(set(node_ports)) == 100


def test_the_kubernetes_service_written_around_the_api_holds_its_address(api):
    bootstrap_kubernetes_service(api)
    r = call(api, "POST", SVC, service("x", clusterIP="10.96.0.1"))
    assert r.code == 422 and r.body["reason"] == "Invalid"
    assert r.body["message"] == ('Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.1"}: '
                                 "failed to allocate IP 10.96.0.1: provided IP is already allocated")
    assert r.body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec.clusterIPs", "message":
                                            'Invalid value: []string{"10.96.0.1"}: failed to allocate IP 10.96.0.1: '
                                            "provided IP is already allocated"}]


def test_explicit_duplicate_and_out_of_range_addresses(api):
    assert create(api, "kube-dns", clusterIP="10.96.0.10")["spec"]["clusterIPs"] == ["10.96.0.10"]
    r = call(api, "POST", SVC, service("x", clusterIP="10.96.0.10"))
    assert (r.code, r.body["message"]) == (422, 'Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.10"}: '
                                                "failed to allocate IP 10.96.0.10: provided IP is already allocated")
    r = call(api, "POST", SVC, service("x", clusterIP="10.1.2.3"))
    assert (r.code, r.body["message"]) == (422, 'Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"10.1.2.3"}: '
                                                "failed to allocate IP 10.1.2.3: the provided IP (10.1.2.3) is not in the valid "
                                                "range. The range of valid IPs is 10.96.0.0/16")
    for edge in ("10.96.0.0", "10.96.255.255"):  # the network and broadcast addresses are not in the range
        assert "is not in the valid range" in call(api, "POST", SVC, service("x", clusterIP=edge)).body["message"]
    r = call(api, "POST", SVC, service("x", clusterIP="10.96.300.1"))
    assert (r.code, r.body["message"]) == (422, 'Service "x" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.300.1": '
                                                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
    r = call(api, "POST", SVC, service("x", clusterIP="10.96.0.11", clusterIPs=["10.96.0.12"]))
    assert r.body["message"] == ('Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.12"}: '
                                 "first value must match `clusterIP`")


def test_a_deleted_service_frees_its_address(api):
    create(api, "a", clusterIP="10.96.0.20")
    r = call(api, "DELETE", f"{SVC}/a")
    assert r.code == 200
    assert create(api, "b", clusterIP="10.96.0.20")["spec"]["clusterIP"] == "10.96.0.20"


def test_dry_run_allocates_nothing(api):
    r = call(api, "POST", SVC, service("a", clusterIP="10.96.0.30"), query={"dryRun": "All"})
    assert r.code == 201 and r.body["spec"]["clusterIP"] == "10.96.0.30"
    assert call(api, "GET", f"{SVC}/a").code == 404
    assert create(api, "a", clusterIP="10.96.0.30")["spec"]["clusterIP"] == "10.96.0.30"


def test_a_full_range_is_an_internal_error():
    api = make_api("10.96.0.0/28")  # 14 addresses
    bootstrap_kubernetes_service(api)
    got = {create(api, f"s{i}")["spec"]["clusterIP"] for i in range(13)}
    assert len(got) == 13 and "10.96.0.1" not in got
    r = call(api, "POST", SVC, service("full"))
    assert (r.code, r.body["reason"]) == (500, "InternalError")
    assert r.body["message"] == "Internal error occurred: failed to allocate a serviceIP: range is full"


def test_a_lab_given_another_cidr_allocates_from_it():
    api = make_api("10.97.0.0/16")
    assert api.services.cidr == "10.97.0.0/16" and api.services.ip_range.nth(10) == "10.97.0.10"
    assert ipaddress.ip_address(create(api, "a")["spec"]["clusterIP"]) in ipaddress.ip_network("10.97.0.0/16")
    r = call(api, "POST", SVC, service("b", clusterIP="10.96.0.10"))
    assert r.body["message"].endswith("The range of valid IPs is 10.97.0.0/16")


def test_headless_services(api):
    spec = create(api, "hl", clusterIP="None")["spec"]
    assert spec["clusterIPs"] == ["None"]
    assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("RequireDualStack", ["IPv4", "IPv6"])  # selectorless
    spec = create(api, "hs", clusterIP="None", selector={"app": "x"})["spec"]
    assert (spec["clusterIPs"], spec["ipFamilyPolicy"], spec["ipFamilies"]) == (["None"], "SingleStack", ["IPv4"])
    r = call(api, "POST", SVC, service("np", clusterIP="None", type="NodePort"))
    assert r.body["message"] == ('Service "np" is invalid: spec.clusterIPs[0]: Invalid value: "None": '
                                 "may not be set to 'None' for NodePort services")


def test_external_name_services_get_no_cluster_ip(api):
    r = call(api, "POST", SVC, {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}})
    assert r.code == 201, r.body
    spec = r.body["spec"]
    assert not ({"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"} & set(spec))
    r = call(api, "POST", SVC, {"metadata": {"name": "ext2"}, "spec": {"type": "ExternalName"}})
    assert r.body["message"] == 'Service "ext2" is invalid: spec.externalName: Required value'


def test_families_the_cluster_does_not_have(api):
    r = call(api, "POST", SVC, service("x", ipFamilies=["IPv6"]))
    assert r.body["message"] == 'Service "x" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster'
    r = call(api, "POST", SVC, service("x", ipFamilyPolicy="RequireDualStack", selector={"a": "b"}))
    assert r.body["message"] == ('Service "x" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": '
                                 "this cluster is not configured for dual-stack services")
    assert create(api, "p", ipFamilyPolicy="PreferDualStack")["spec"]["ipFamilies"] == ["IPv4"]


def test_cluster_ip_is_immutable_and_kept_when_left_out(api):
    cur = create(api, "a")
    ip = cur["spec"]["clusterIP"]
    cur["spec"]["clusterIP"] = "10.96.5.5"
    r = call(api, "PUT", f"{SVC}/a", cur)
    assert (r.code, r.body["message"]) == (422, 'Service "a" is invalid: spec.clusterIPs[0]: Invalid value: '
                                                '[]string{"10.96.5.5"}: may not change once set')
    fresh = service("a", selector={"app": "a"})  # a manifest applied again: no clusterIP in it
    r = call(api, "PUT", f"{SVC}/a", fresh)
    assert r.code == 200, r.body
    assert r.body["spec"]["clusterIPs"] == [ip] and r.body["spec"]["selector"] == {"app": "a"}
    r = call(api, "PATCH", f"{SVC}/a", {"spec": {"clusterIP": "10.96.7.7", "clusterIPs": ["10.96.7.7"]}},
             ctype="application/merge-patch+json")
    assert r.code == 422 and r.body["message"].endswith("may not change once set")


def test_wrong_json_types_are_decoding_errors(api):
    r = call(api, "POST", SVC, {"metadata": {"name": "x"}, "spec": {"ports": "80"}})
    assert (r.code, r.body["message"]) == (400, 'Service in version "v1" cannot be handled as a Service: json: cannot '
                                                "unmarshal string into Go struct field ServiceSpec.spec.ports of type "
                                                "[]v1.ServicePort")
    r = call(api, "POST", SVC, {"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80.5}]}})
    assert r.code == 400 and r.body["message"].endswith("cannot unmarshal number 80.5 into Go struct field "
                                                        "ServicePort.spec.ports.port of type int32")


def test_validation_messages(api):
    r = call(api, "POST", SVC, service("x", type="Foo"))
    assert r.body["message"] == ('Service "x" is invalid: spec.type: Unsupported value: "Foo": supported values: '
                                 '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"')
    r = call(api, "POST", SVC, service("x", ports=[{"port": 80}, {"port": 81}]))
    assert [(c["field"], c["message"]) for c in r.body["details"]["causes"]] == [
        ("spec.ports[0].name", "Required value"), ("spec.ports[1].name", "Required value")]
    r = call(api, "POST", SVC, service("x", ports=[{"port": 80, "nodePort": 30001}]))
    assert r.body["message"] == ('Service "x" is invalid: spec.ports[0].nodePort: Forbidden: '
                                 "may not be used when `type` is 'ClusterIP'")
    r = call(api, "POST", SVC, service("1x"))
    assert r.body["details"]["causes"][0]["field"] == "metadata.name" and "DNS-1035" in r.body["message"]


# -- NodePorts ----------------------------------------------------------------------------------------

def test_node_ports_are_allocated_for_node_port_and_load_balancer_services(api):
    spec = create(api, "np", type="NodePort", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81}])["spec"]
    ports = [p["nodePort"] for p in spec["ports"]]
    assert len(set(ports)) == 2 and all(30086 <= p <= 32767 for p in ports), "above the static band (86 ports)"
    assert spec["externalTrafficPolicy"] == "Cluster"
    lb = create(api, "lb", type="LoadBalancer")
    assert 30000 <= lb["spec"]["ports"][0]["nodePort"] <= 32767
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True and lb["spec"]["externalTrafficPolicy"] == "Cluster"
    assert lb["status"] == {"loadBalancer": {}}, "pending, as on kind: no load balancer answers"
    none = create(api, "lb2", type="LoadBalancer", allocateLoadBalancerNodePorts=False)
    assert "nodePort" not in none["spec"]["ports"][0]
    local = create(api, "lb3", type="LoadBalancer", externalTrafficPolicy="Local")["spec"]
    assert 30000 <= local["healthCheckNodePort"] <= 32767 and local["healthCheckNodePort"] != local["ports"][0]["nodePort"]
    dns = create(api, "dns", type="NodePort", ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                                     {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])["spec"]
    assert dns["ports"][0]["nodePort"] == dns["ports"][1]["nodePort"], "one node port per service port number"


def test_explicit_node_ports_and_conflicts(api):
    assert create(api, "a", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])["spec"]["ports"][0]["nodePort"] == 30080
    r = call(api, "POST", SVC, service("b", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert (r.code, r.body["message"]) == (422, 'Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
                                                "provided port is already allocated")
    r = call(api, "POST", SVC, service("b", type="NodePort", ports=[{"port": 80, "nodePort": 8080}]))
    assert r.body["message"] == ('Service "b" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is '
                                 "not in the valid range. The range of valid ports is 30000-32767")


def test_node_ports_survive_a_reapply_and_go_with_the_type(api):
    cur = create(api, "a", type="NodePort")
    port = cur["spec"]["ports"][0]["nodePort"]
    r = call(api, "PUT", f"{SVC}/a", service("a", type="NodePort"))  # no nodePort in the manifest
    assert r.code == 200 and r.body["spec"]["ports"][0]["nodePort"] == port
    r = call(api, "PATCH", f"{SVC}/a", {"spec": {"type": "ClusterIP"}}, ctype="application/merge-patch+json")
    assert r.code == 200, r.body
    assert "nodePort" not in r.body["spec"]["ports"][0] and "externalTrafficPolicy" not in r.body["spec"]
    assert create(api, "b", type="NodePort", ports=[{"port": 80, "nodePort": port}])["spec"]["ports"][0]["nodePort"] == port


# -- DELETE -------------------------------------------------------------------------------------------

def test_delete_answers_with_the_service(api):
    created = create(api, "a")
    r = call(api, "DELETE", f"{SVC}/a")
    assert r.code == 200 and r.body["kind"] == "Service" and r.body["apiVersion"] == "v1"
    assert r.body["metadata"]["uid"] == created["metadata"]["uid"] and r.body["spec"]["clusterIP"] == created["spec"]["clusterIP"]
    from kubernetes.client import ApiClient

    svc = ApiClient().deserialize(json.dumps(r.body), "V1Service", "application/json")  # as delete_namespaced_service does
    assert svc.spec.cluster_ip == created["spec"]["clusterIP"]
    r = call(api, "DELETE", "/api/v1/namespaces/default/configmaps/none")
    assert r.code == 404


# -- EndpointSlices -----------------------------------------------------------------------------------

def add_pod(store: Store, name: str, ip: str | None, labels: dict[str, str] | None = None, ready: bool = True,
            ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}])
    return store.create("v1/pods", {"apiVersion": "v1", "kind": "Pod",
                                     "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "web"}},
                                     "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox", "ports": ports or []}],
                                              **spec},
                                     "status": status})


def slices_of(store: Store, svc: str) -> list[dict[str, Any]]:
    items, *_ = store.list(SLICES, "default")
    return [s for s in items if s["metadata"]["labels"].get("kubernetes.io/service-name") == svc]


def test_endpoint_slice_contents(api):
    store = api.store
    svc = create(api, "web", selector={"app": "web"}, ports=[{"name": "http", "port": 80, "targetPort": 8080}])
    ctl = EndpointSliceController(store)
    add_pod(store, "a", "10.244.0.2")
    add_pod(store, "b", "10.244.0.3", ready=False)
    add_pod(store, "c", None)  # no address yet: not an endpoint
    add_pod(store, "other", "10.244.0.9", labels={"app": "other"})
    add_pod(store, "named", "10.244.0.4", hostname="h0", subdomain="web")
    ctl.reconcile()
    [sl] = slices_of(store, "web")
    meta = sl["metadata"]
    assert meta["name"].startswith("web-") and len(meta["name"]) == len("web-") + 5 and meta["generateName"] == "web-"
    assert meta["labels"] == {"kubernetes.io/service-name": "web",
                              "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": svc["metadata"]["uid"],
                                        "controller": True, "blockOwnerDeletion": True}]
    assert sl["addressType"] == "IPv4" and sl["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    eps = {e["targetRef"]["name"]: e for e in sl["endpoints"]}
    assert set(eps) == {"a", "b", "named"}
    pod_a = store.get("v1/pods", "default", "a")
    assert eps["a"] == {"addresses": ["10.244.0.2"], "conditions": {"ready": True, "serving": True, "terminating": False},
                        "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": pod_a["metadata"]["uid"]},
                        "nodeName": NODE}
    assert eps["b"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert eps["named"]["hostname"] == "h0"
    assert meta["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
    ep = store.get("v1/endpoints", "default", "web")
    assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}
    [subset] = ep["subsets"]
    assert [a["ip"] for a in subset["addresses"]] == ["10.244.0.2", "10.244.0.4"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.244.0.3"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_terminating_pods_and_publish_not_ready_addresses(api):
    store = api.store
    create(api, "web", selector={"app": "web"})
    create(api, "all", selector={"app": "web"}, publishNotReadyAddresses=True)
    ctl = EndpointSliceController(store)
    add_pod(store, "ready", "10.244.0.2")
    add_pod(store, "unready", "10.244.0.3", ready=False)
    store.mark_deleting("v1/pods", "default", "ready", 30)
    ctl.reconcile()
    [web] = slices_of(store, "web")
    conds = {e["targetRef"]["name"]: e["conditions"] for e in web["endpoints"]}
    assert conds["ready"] == {"ready": False, "serving": True, "terminating": True}
    assert conds["unready"] == {"ready": False, "serving": False, "terminating": False}
    [everything] = slices_of(store, "all")
    assert all(e["conditions"]["ready"] for e in everything["endpoints"])
    [subset] = store.get("v1/endpoints", "default", "web")["subsets"]  # a terminating pod is not in Endpoints
    assert "addresses" not in subset and [a["ip"] for a in subset["notReadyAddresses"]] == ["10.244.0.3"]
    [subset] = store.get("v1/endpoints", "default", "all")["subsets"]  # unless not-ready addresses are published
    assert [a["ip"] for a in subset["addresses"]] == ["10.244.0.2", "10.244.0.3"] and "notReadyAddresses" not in subset


def test_named_target_ports_group_pods_by_the_ports_they_resolve(api):
    store = api.store
    create(api, "web", selector={"app": "web"}, ports=[{"name": "http", "port": 80, "targetPort": "http"},
                                                       {"name": "metrics", "port": 9090, "targetPort": 9090}])
    ctl = EndpointSliceController(store)
    add_pod(store, "with", "10.244.0.2", ports=[{"name": "http", "containerPort": 8080}])
    add_pod(store, "udp", "10.244.0.3", ports=[{"name": "http", "containerPort": 8081, "protocol": "UDP"}])
    add_pod(store, "without", "10.244.0.4")
    ctl.reconcile()
    by_ports = {tuple(p["port"] for p in s["ports"]): [e["targetRef"]["name"] for e in s["endpoints"]]
                for s in slices_of(store, "web")}
    assert by_ports == {(8080, 9090): ["with"], (9090,): ["udp", "without"]}


def test_more_than_100_pods_take_two_slices_and_no_pass_rewrites_them(api):
    store = api.store
    create(api, "web", selector={"app": "web"})
    ctl = EndpointSliceController(store)
    for i in range(150):
        add_pod(store, f"p{i:03}", f"10.244.{i // 200}.{i % 200 + 2}")
    ctl.reconcile()
    sizes = sorted(len(s["endpoints"]) for s in slices_of(store, "web"))
    assert sizes == [50, 100]
    versions = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in slices_of(store, "web")}
    ep_version = store.get("v1/endpoints", "default", "web")["metadata"]["resourceVersion"]
    pod = store.get("v1/pods", "default", "p007")  # a status change the endpoints do not depend on
    pod["status"]["containerStatuses"] = [{"name": "c", "restartCount": 1}]
    store.update("v1/pods", pod)
    for _ in range(3):
        assert ctl.reconcile() == 0
    pod = store.get("v1/pods", "default", "p008")  # changes that make the Service's endpoints be computed again
    pod["metadata"]["labels"]["extra"] = "yes"
    store.update("v1/pods", pod)
    r = call(api, "PATCH", f"{SVC}/web", {"metadata": {"annotations": {"a": "b"}}}, ctype="application/merge-patch+json")
    assert r.code == 200
    assert ctl.reconcile() == 0
    assert EndpointSliceController(store).reconcile() == 0, "a controller starting over finds nothing to write"
    assert {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in slices_of(store, "web")} == versions
    assert store.get("v1/endpoints", "default", "web")["metadata"]["resourceVersion"] == ep_version


def test_a_pod_turning_unready_or_going_updates_only_its_slice(api):
    store = api.store
    create(api, "web", selector={"app": "web"})
    ctl = EndpointSliceController(store)
    for i in range(3):
        add_pod(store, f"p{i}", f"10.244.0.{i + 2}")
    ctl.reconcile()
    [before] = slices_of(store, "web")
    pod = store.get("v1/pods", "default", "p1")
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:01:00Z"}]
    store.update("v1/pods", pod)
    assert ctl.reconcile() == 2  # the slice and the Endpoints
    [after] = slices_of(store, "web")
    assert after["metadata"]["name"] == before["metadata"]["name"]
    assert {e["targetRef"]["name"]: e["conditions"]["ready"] for e in after["endpoints"]} == {"p0": True, "p1": False, "p2": True}
    assert after["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] == "2026-01-01T00:01:00Z"
    store.remove("v1/pods", "default", "p0")
    ctl.reconcile()
    [after] = slices_of(store, "web")
    assert [e["targetRef"]["name"] for e in after["endpoints"]] == ["p1", "p2"]
    pod = store.get("v1/pods", "default", "p2")
    pod["metadata"]["labels"] = {"app": "elsewhere"}
    store.update("v1/pods", pod)
    ctl.reconcile()
    assert [e["targetRef"]["name"] for e in slices_of(store, "web")[0]["endpoints"]] == ["p1"]


def test_a_service_without_pods_has_a_placeholder_slice(api):
    store = api.store
    create(api, "web", selector={"app": "web"})
    ctl = EndpointSliceController(store)
    ctl.reconcile()
    [sl] = slices_of(store, "web")
    assert sl["endpoints"] is None and sl["ports"] is None
    assert "subsets" not in store.get("v1/endpoints", "default", "web")
    assert ctl.reconcile() == 0
    add_pod(store, "p", "10.244.0.2")
    ctl.reconcile()
    [filled] = slices_of(store, "web")
    assert filled["metadata"]["name"] == sl["metadata"]["name"], "the placeholder is reused"
    assert len(filled["endpoints"]) == 1


def test_selectorless_services_get_no_managed_slices_and_user_slices_stay(api):
    store = api.store
    create(api, "manual")
    mine = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "manual-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "manual"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["192.0.2.1"]}], "ports": [{"port": 80}]}
    r = call(api, "POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", mine)
    assert r.code == 201, r.body
    ctl = EndpointSliceController(store)
    ctl.reconcile()
    assert [s["metadata"]["name"] for s in slices_of(store, "manual")] == ["manual-1"]
    assert store.try_get("v1/endpoints", "default", "manual") is None


def test_slices_and_endpoints_go_with_their_service(api):
    store = api.store
    create(api, "web", selector={"app": "web"})
    ctl = EndpointSliceController(store)
    add_pod(store, "p", "10.244.0.2")
    ctl.reconcile()
    assert slices_of(store, "web") and store.try_get("v1/endpoints", "default", "web")
    assert call(api, "DELETE", f"{SVC}/web").code == 200
    ctl.reconcile()
    assert slices_of(store, "web") == [] and store.try_get("v1/endpoints", "default", "web") is None
    create(api, "web", selector={"app": "web"})  # again, a new uid: new slices owned by it
    ctl.reconcile()
    [sl] = slices_of(store, "web")
    assert sl["metadata"]["ownerReferences"][0]["uid"] == store.get("v1/services", "default", "web")["metadata"]["uid"]


def test_the_controller_pass_runs_from_the_controllers_loop(api):
    from kperflab.lab.controllers import Controllers

    ctl = Controllers(api.store, NODE)
    create(api, "web", selector={"app": "web"})
    add_pod(api.store, "p", "10.244.0.2")
    ctl.reconcile()
    assert len(slices_of(api.store, "web")) == 1


# -- kubectl get's columns ---------------------------------------------------------------------------------

def rows(api: APIServer, path: str) -> dict[str, list[Any]]:
    r = call(api, "GET", path, accept=TABLE)
    assert r.code == 200 and r.body["kind"] == "Table"
    return {row["cells"][0]: row["cells"] for row in r.body["rows"]}


def test_service_columns(api):
    ip = create(api, "web", selector={"app": "web", "tier": "fe"})["spec"]["clusterIP"]
    np = create(api, "np", type="NodePort", ports=[{"port": 80}])["spec"]["ports"][0]["nodePort"]
    create(api, "lb", type="LoadBalancer", ports=[{"port": 443, "protocol": "TCP"}])
    call(api, "POST", SVC, {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}})
    create(api, "hl", clusterIP="None", ports=[{"name": "a", "port": 53, "protocol": "UDP"}, {"name": "b", "port": 53}])
    got = rows(api, SVC)
    assert got["web"][:5] == ["web", "ClusterIP", ip, "<none>", "80/TCP"] and got["web"][6] == "app=web,tier=fe"
    assert got["np"][:5] == ["np", "NodePort", got["np"][2], "<none>", f"80:{np}/TCP"]
    assert got["lb"][3] == "<pending>" and got["lb"][4].startswith("443:")
    assert got["ext"][1:5] == ["ExternalName", "<none>", "example.com", "<none>"]
    assert got["hl"][2:5] == ["None", "<none>", "53/UDP,53/TCP"]
    r = call(api, "GET", SVC, accept=TABLE)
    assert [c["name"] for c in r.body["columnDefinitions"]] == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)",
                                                                 "Age", "Selector"]


def test_endpoint_slice_and_endpoints_columns(api):
    store = api.store
    create(api, "web", selector={"app": "web"}, ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81}])
    ctl = EndpointSliceController(store)
    for i in range(5):
        add_pod(store, f"p{i}", f"10.244.0.{i + 2}")
    ctl.reconcile()
    [cells] = rows(api, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices").values()
    assert cells[1:4] == ["IPv4", "80,81", "10.244.0.2,10.244.0.3,10.244.0.4 + 2 more..."]
    ep = rows(api, "/api/v1/namespaces/default/endpoints")["web"]
    assert ep[1] == "10.244.0.2:80,10.244.0.3:80,10.244.0.4:80 + 7 more..."
    create(api, "empty", selector={"app": "none"})
    ctl.reconcile()
    empty = [c for c in rows(api, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices").values()
             if c[0].startswith("empty-")]
    assert empty[0][2:4] == ["<unset>", "<unset>"]
    assert rows(api, "/api/v1/namespaces/default/endpoints")["empty"][1] == "<none>"


def test_table_rows_carry_what_include_object_asks(api):
    """kubectl get --sort-by asks for ?includeObject=Object and sorts on the whole object (the lab used to send only
    the metadata, and kubectl then printed "No resources found")."""
    create(api, "b")
    create(api, "a")
    full = call(api, "GET", SVC, query={"includeObject": "Object"}, accept=TABLE).body
    objs = {r["object"]["metadata"]["name"]: r["object"] for r in full["rows"]}
    assert objs["a"]["kind"] == "Service" and objs["a"]["spec"]["ports"][0]["port"] == 80
    meta = call(api, "GET", SVC, accept=TABLE).body["rows"][0]["object"]
    assert meta["kind"] == "PartialObjectMetadata" and "spec" not in meta
    assert all("object" not in r for r in call(api, "GET", SVC, query={"includeObject": "None"}, accept=TABLE).body["rows"])
    bad = call(api, "GET", SVC, query={"includeObject": "Everything"}, accept=TABLE)
    assert bad.code == 400 and bad.body["kind"] == "Status" and "includeObject" in bad.body["message"]
