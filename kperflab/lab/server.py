"""The lab process: store + API server + kubelet + controllers, wired together and run until stopped."""

from __future__ import annotations

import gc
import inspect
import json
import logging
import os
import platform
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import LabError
from . import cgroups, labs, pki, rbac
from .admission import NamespaceControllers, ServiceAccountAdmission
from .apiproxy import APIProxy
from .apiserver import APIServer, serve
from .apiservices import AvailabilityController
from .authn import Authenticator
from .controllers import Controllers
from .errors import APIError
from .events import Recorder
from .hpa import HPAController
from .imagemanager import ImageMetrics
from .images import (
    ImageStore,
    Registry,
    cached_base_images,
    cached_prometheus_image,
    cached_test_images,
    test_images_configmap,
)
from .images.slowlink import DEFAULT_BANDWIDTH, SLOW_HOST, SlowRegistry, parse_rate
from .images.slowlink import SANDBOX_ID as SLOW_SANDBOX
from .images.store import DEFAULT_IMAGEFS_SIZE
from .kubelet import Kubelet
from .kubeletconfig import KubeletConfig
from .labs import LAB_ENV
from .network.apiendpoint import SECURE_PORT, APIServerEndpoint, first_address
from .network.dns import ClusterDNS
from .network.httpd import serve_in_netns
from .network.kubeproxy import KubeProxy
from .network.podnet import PodNetwork, in_netns, socket_in
from .node import NODE_NAME, Conditions, arch, machine_labels, node_object, observe
from .runtime.oci import CrunRuntime
from .runtime.oci import unavailable_reason as oci_unavailable
from .runtime.process import Runtime
from .satokens import LegacyTokenController, TokenIssuer, token_source
from .stats.cadvisor import Sampler
from .stats.kubelet_server import KubeletServer
from .stats.metrics_server import GROUP as METRICS_GROUP
from .stats.metrics_server import MetricsServer
from .storage import loopfs
from .storage.plugins import LabStorage
from .store import Store

log = logging.getLogger("kperflab.lab")
GC_THRESHOLD = (10_000, 20, 20)  # Python's default is (700, 10, 10)
GIL_SWITCH_INTERVAL = 0.002  # Python's default 5 ms: a short get waits less behind a long list or a controller pass

K8S_VERSION = "v1.37.0"
GIT_VERSION = f"{K8S_VERSION}+kperflab"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def version_info() -> dict[str, str]:
    return {"major": "1", "minor": K8S_VERSION.split(".")[1], "emulationMajor": "1", "emulationMinor": K8S_VERSION.split(".")[1],
            "minCompatibilityMajor": "1", "minCompatibilityMinor": str(int(K8S_VERSION.split(".")[1]) - 1),
            "gitVersion": GIT_VERSION, "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-11-01T00:00:00Z", "goVersion": f"python{platform.python_version()}",
            "compiler": "cpython", "platform": f"linux/{arch()}"}


# kube-proxy's configuration as kubeadm writes it into the kube-proxy ConfigMap (the fields the lab reads, and
# `mode: ""`, the platform default: iptables on Linux). Edit `mode:` to switch; the lab's kube-proxy follows.
KUBE_PROXY_CONFIG = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clusterCIDR: {cluster_cidr}
healthzBindAddress: 0.0.0.0:10256
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 1s
  syncPeriod: 30s
metricsBindAddress: 0.0.0.0:10249
mode: ""
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 1s
  syncPeriod: 30s
"""


STORE_INFO = "store.json"  # beside the store: its network slot, when it was made, what it held at the last look


def open_store(state_dir: Path) -> Store:
    """The lab's durable store at ``<state dir>/store/state.db`` (its directory 0700, its files 0600)."""
    db = paths.lab_store_db(state_dir)
    paths.private_dir(db.parent)
    if "path" not in inspect.signature(Store).parameters:  # a store that keeps nothing (before the durable one)
        return Store()
    try:
        with paths.private_umask():  # the database and its -wal/-shm files: never readable by others, not even briefly
            return Store(path=db)
    except (OSError, RuntimeError) as exc:  # storedb.DiskFull, storedb.DBError (a corrupt or foreign file)
        raise LabError(f"The lab's store {db} cannot be opened: {exc}.",
                       hint="Free some disk space, or wipe the kept state with `kperflab lab reset`.") from None


def read_store_info(state_dir: Path) -> dict[str, Any]:
    try:
        info = json.loads((state_dir / STORE_INFO).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


class Lab:
    """Everything the lab runs, in one process."""

    def __init__(self, state_dir: Path, token: str, tls: tuple[str, str], port: int = 0,
                 lab_id: str | None = None, metric_resolution: float = 15.0, limits: bool = True,
                 runtime: str = "auto", registry_bandwidth: str = DEFAULT_BANDWIDTH,
                 imagefs_size: int = DEFAULT_IMAGEFS_SIZE, kubelet_config: KubeletConfig | None = None) -> None:
        self.state_dir = state_dir
        self.kubelet_config = kubelet_config
        self.storage: LabStorage | None = None
        self.lab_id = lab_id or secrets.token_hex(8)
        self.registry: Registry | None = None
        self.registry_bandwidth, self.imagefs_size, self.slow_registry = registry_bandwidth, imagefs_size, None
        # first of all: own an id (the registry lock), so no recovery elsewhere mistakes what we make for a dead lab's
        self.registration = labs.Registration(self.lab_id, state_dir)
        try:
            self._setup(token, tls, port, metric_resolution, limits, runtime)
        except BaseException:
            if getattr(self, "store", None) is not None and hasattr(self.store, "close_db"):
                self.store.close_db()
            if self.registry is not None:
                self.registry.stop()
            labs.remove(self.lab_id, state_dir, own=True)
            self.registration.release()
            raise

    def _setup(self, token: str, tls: tuple[str, str], port: int, metric_resolution: float, limits: bool,
               runtime: str) -> None:
        state_dir = self.state_dir
        self.store = open_store(state_dir)
        self.restored = bool(getattr(self.store, "restored", False))
        self.kept = read_store_info(state_dir)
        self.driver = cgroups.detect() if limits else None
        self.unenforced = ("" if self.driver is not None else "the lab was started with --no-limits" if not limits
                           else "the lab is not running as root" if os.geteuid() != 0 else "no usable cgroup hierarchy")
        self.runtime = Runtime(self.driver, self.lab_id, self.unenforced)
        self.conditions = Conditions("kubelet is posting ready status" + (
            f"; WARNING: {self.unenforced}, so pod CPU and memory limits are not enforced" if self.unenforced else ""))
        self.stop_event = threading.Event()
        self.shutdown_requested = threading.Event()
        self.metric_resolution = metric_resolution
        # a kept store's ClusterIPs and pod addresses lie in the ranges of the slot it had: take that one again
        saved = self.kept.get("network_slot")
        saved = saved if isinstance(saved, int) else self._slot_of_kept_services()
        slot = self.registration.claim_network_slot(want=saved, required=self.restored and saved is not None)
        self.pod_cidr, self.service_cidr = labs.slot_cidrs(slot)
        self.registration.reserve_network_slot(slot)
        self.kept.update(network_slot=slot, pod_cidr=self.pod_cidr, service_cidr=self.service_cidr,
                         created=(self.kept.get("created") if self.restored else None) or time.time(), started=time.time())
        self.kept.pop("stopped", None)
        self.save_store_info()
        # ServiceAccount tokens: signed by the lab's own key (made once, 0600); the kubelet's projected tokens too
        self.tokens = TokenIssuer(state_dir / "sa-signing.key")
        self.sa_token = token_source(self.store, self.tokens)
        self.api = APIServer(self.store, Authenticator(token, state_dir / "tokens.csv", tokens=self.tokens, store=self.store),
                             version=version_info(), ready=lambda: self._ready, service_cidr=self.service_cidr)
        self.api.tokens = self.tokens
        rbac.bootstrap(self.store)  # the default roles and bindings, before the first request can need them
        self.token_controller = LegacyTokenController(self.store, self.tokens, (Path(tls[0]).parent / "ca.crt").read_bytes())
        self.kubernetes_ip, self.dns_ip = self.api.services.ip_range.nth(1), self.api.services.ip_range.nth(10)
        self._ready = False
        # the certificate names what pods dial too: kubernetes.default.svc…, the ClusterIP, the node's address
        pki.reissue_server_cert(tls[0], tls[1], pki.server_hosts(self.kubernetes_ip, first_address(self.pod_cidr)))
        self.api.admission = ServiceAccountAdmission(self.store)
        self.ns_controllers = NamespaceControllers(self.store, (Path(tls[0]).parent / "ca.crt").read_bytes())
        self.server, _ = serve(self.api, tls[0], tls[1], port)
        self.port = self.server.server_address[1]
        self.kept["port"] = self.port  # the next `lab up` takes it again when free: participants' kubeconfigs name it
        self.registration.update(port=self.port, cgroups=self.driver.version if self.driver else None)
        self.run_dir = labs.run_dir(state_dir, self.lab_id)
        self.oci, self.image_store, self.no_oci = self._oci_runtime(runtime)
        self.podnet: PodNetwork | None = None
        if self.oci is not None:  # pods from images get a network of their own; the process runtime's share the host's
            self.podnet = PodNetwork(self.lab_id, self.run_dir, self.pod_cidr)
            self.podnet.setup()
            self._slow_registry_link()
        # persistent volumes: the storage classes' backends (the remote class' server joins the pod network)
        self.storage = LabStorage(self.store, self.lab_id, self.run_dir, NODE_NAME, self.podnet)
        self.kubelet = Kubelet(self.store, NODE_NAME, self.runtime, state_dir, api_port=self.port, oci=self.oci,
                               image_store=self.image_store, run_dir=self.run_dir, no_oci=self.no_oci,
                               podnet=self.podnet, cluster_dns=self.dns_ip, **self._kubelet_extras())
        self.api.logs = self.kubelet.logs
        self.api.streaming = self.kubelet
        self._node_status_lock = threading.Lock()
        self.kubelet.node_status_now = self.update_node_status  # pressure shows within the kubelet's 1 s check
        self.controllers = Controllers(self.store, NODE_NAME)
        self.started = time.time()
        self.sampler = Sampler(self.driver, self.kubelet.stat_targets, pods_cgroup=self.kubelet.pods_cgroup)
        self.kubelet_server = KubeletServer(self.sampler, NODE_NAME, state_dir, self.started,
                                            machine_labels(), self._pods_of_node, configz=self.kubelet.config.configz,
                                            image_fs=self.image_store.fs_stats if self.image_store is not None else None,
                                            collectors=[ImageMetrics(lambda: self.kubelet.images)])
        self.metrics_server = MetricsServer(self.store, lambda: self.sampler.snapshot, NODE_NAME, metric_resolution)
        self.api.node_proxy = self.kubelet_server.handle
        self.dns: ClusterDNS | None = None
        self.api_endpoint: APIServerEndpoint | None = None
        self.kube_proxy: KubeProxy | None = None
        self._node_servers: list[Any] = []
        if self.podnet is not None:
            self._node_network()
        else:  # the process runtime: pods share the host's network, so the proxies dial here
            self.api.proxy = APIProxy(self.store, lambda ip, port, timeout: socket.create_connection((ip, port), timeout),
                                      "127.0.0.1", self.kubelet_server.handle)
        self.api.extra_groups = {METRICS_GROUP: self.metrics_server}
        self._threads: list[threading.Thread] = []

    def _slot_of_kept_services(self) -> int | None:
        """The slot a kept store's ``kubernetes`` Service names (10.(96+k).0.1), when store.json was lost."""
        svc = self.store.try_get("v1/services", "default", "kubernetes") if self.restored else None
        ip = str(((svc or {}).get("spec") or {}).get("clusterIP") or "")
        parts = ip.split(".")
        if len(parts) == 4 and parts[0] == "10" and parts[1].isdigit() and 0 <= int(parts[1]) - 96 < labs.NETWORK_SLOTS:
            return int(parts[1]) - 96
        return None

    def _kubelet_extras(self) -> dict[str, Any]:
        """``config=`` and ``pv_plugins=`` for the kubelet, where its signature takes them."""
        import inspect

        params = inspect.signature(Kubelet.__init__).parameters
        extras: dict[str, Any] = {"config": self.kubelet_config, "sa_token": self.sa_token,
                                  "pv_plugins": self.storage.plugins if self.storage is not None else None}
        return {k: v for k, v in extras.items() if k in params}

    def bootstrap(self) -> None:
        """What a new cluster has before its first request; on a kept store (a restart) only what is missing is made,
        and what describes this run (the Node, the DNS endpoint, the lesson images) is brought up to date. What users
        changed (a Node's labels or taints, kube-proxy's mode) stays."""
        for ns in SYSTEM_NAMESPACES:
            self._ensure("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                                           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        for ns in SYSTEM_NAMESPACES:
            self._ensure("v1/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                "metadata": {"name": "default", "namespace": ns}})
        node = node_object(self.state_dir, self.driver, self.unenforced, self.conditions, time.time(), K8S_VERSION)
        node["metadata"]["annotations"]["kperflab.dev/runtime"] = self.runtime_description
        node["status"]["nodeInfo"]["containerRuntimeVersion"] = (
            f"crun://{self.oci.version.split()[-1]}" if self.oci is not None else "kperflab-process://0.1.0")
        node["status"]["images"] = self.image_store.node_images(self.kubelet.config.nodeStatusMaxImages) if self.image_store is not None else []
        if self.podnet is not None:
            node["status"]["addresses"][0]["address"] = self.podnet.gateway  # the node's address on the pod network
            node["spec"]["podCIDR"], node["spec"]["podCIDRs"] = self.pod_cidr, [self.pod_cidr]
        self._ensure_node(node)
        self._ensure("v1/services", {"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": self.kubernetes_ip, "clusterIPs": [self.kubernetes_ip],
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster", "ports": [
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": SECURE_PORT}], "sessionAffinity": "None"},
            "status": {"loadBalancer": {}}})
        if self.podnet is not None:
            self._bootstrap_dns()
            self._lesson_images()
            self._ensure("v1/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "kube-proxy", "namespace": "kube-system", "labels": {"app": "kube-proxy"}},
                "data": {"config.conf": KUBE_PROXY_CONFIG.format(cluster_cidr=self.pod_cidr)}})
        for sc in self.storage.classes() if self.storage is not None else []:
            self._ensure("storage.k8s.io/v1/storageclasses", sc)

    def _ensure(self, resource: str, obj: dict[str, Any], fields: tuple[str, ...] = ()) -> dict[str, Any]:
        """Create ``obj`` when missing, else keep the stored one; ``fields`` (top-level keys) are this run's facts: a
        stored object whose fields differ is updated to them."""
        meta = obj["metadata"]
        current = self.store.try_get(resource, meta.get("namespace", ""), meta["name"])
        if current is None:
            ensure = getattr(self.store, "ensure", None)
            return ensure(resource, obj) if ensure is not None else self.store.create(resource, obj)
        if fields and any(current.get(f) != obj.get(f) for f in fields):
            current.update({f: obj[f] for f in fields if f in obj})
            return self.store.update(resource, current, check_rv=False)
        return current

    def _ensure_node(self, node: dict[str, Any]) -> None:
        """The Node as this run sees it. A kept Node keeps its uid, creation time, the labels, annotations and taints
        users gave it and its unschedulable mark; its status (addresses, capacity, conditions, images, runtime) and
        the labels and annotations the kubelet sets are this run's, as a kubelet re-registering after a reboot
        writes them."""
        current = self.store.try_get("v1/nodes", "", NODE_NAME)
        if current is None:
            self._ensure("v1/nodes", node)
            return
        meta, fresh = current["metadata"], node["metadata"]
        meta["labels"] = {**(meta.get("labels") or {}), **(fresh.get("labels") or {})}
        meta["annotations"] = {**(meta.get("annotations") or {}), **(fresh.get("annotations") or {})}
        spec = current.setdefault("spec", {})
        spec.update({k: v for k, v in (node.get("spec") or {}).items() if k not in ("taints", "unschedulable")})
        current["status"] = node["status"]
        self.store.update("v1/nodes", current, check_rv=False)

    def _bootstrap_dns(self) -> None:
        """The ``kube-dns`` Service, as kubeadm names CoreDNS's, at the service CIDR's tenth address; its endpoint is
        the lab's DNS on the node's address (the lab's DNS is not a pod, so the Service has no selector and its
        EndpointSlice is the lab's own)."""
        assert self.podnet is not None
        ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                 {"name": "metrics", "port": 9153, "protocol": "TCP"}]
        self._ensure("v1/services", {"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "kube-dns", "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
            "spec": {"type": "ClusterIP", "clusterIP": self.dns_ip, "clusterIPs": [self.dns_ip], "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
                     "ports": [{**p, "targetPort": p["port"]} for p in ports]},
            "status": {"loadBalancer": {}}})
        self._ensure("discovery.k8s.io/v1/endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {
                "name": "kube-dns-lab", "namespace": "kube-system",
                "labels": {"kubernetes.io/service-name": "kube-dns", "endpointslice.kubernetes.io/managed-by": "kperflab-lab"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.podnet.gateway], "nodeName": NODE_NAME,
                           "conditions": {"ready": True, "serving": True, "terminating": False}}],
            "ports": ports}, fields=("endpoints", "ports"))

    def start(self) -> None:
        self.bootstrap()
        self.save_store_info()
        loops = [("kubelet", self.kubelet.run), ("controllers", self.controllers.run), ("heartbeat", self._heartbeat),
                 ("metrics", self._metrics_loop), ("serviceaccounts", self.ns_controllers.run),
                 ("clusterrole-aggregation", rbac.Aggregator(self.store).run), ("tokens", self.token_controller.run)]
        loops.append(("hpa", HPAController(self.store, lambda ns: self.metrics_server.pod_metrics("v1beta1", ns)).run))
        podnet = self.podnet  # APIService availability: discovery checks from the node netns, where ClusterIPs answer
        loops.append(("apiservice-availability", AvailabilityController(
            self.store, (lambda fn: in_netns(podnet.netns_path, fn)) if podnet is not None else None).run))
        if self.api_endpoint is not None:
            loops.append(("apiserver-endpoints", self.api_endpoint.run))
        if self.storage is not None:
            loops.append(("pv-controller", self.storage.controller.run))
        if self.kube_proxy is not None:
            loops.append(("kube-proxy", self.kube_proxy.run))
        for name, target in loops:
            t = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        # The heap so far (OpenAPI schemas, protobuf tables, restored objects) lives as long as the lab: out of the
        # collector's reach, and full collections less often, so a request never waits behind a walk of it (the
        # cyclic collector's full passes were the lab's longest pauses under load; refcounting frees the rest).
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD[0], GC_THRESHOLD[1], GC_THRESHOLD[2])
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        self._ready = True

    def _heartbeat(self, stop: threading.Event, period: float = 10.0) -> None:
        """The kubelet's node status update: conditions from a fresh observation of the node, every 10 s. A lab whose
        state dir was deleted (its token, certificates and kubeconfig with it) can no longer be reached or managed:
        it stops itself and removes what it made."""
        while not stop.wait(period):
            if not self.state_dir_present():
                log.warning("the state dir %s is gone: stopping the lab", self.state_dir)
                self.shutdown_requested.set()
                return
            self.update_node_status()
            self.save_store_info()

    def state_dir_present(self) -> bool:
        try:
            return os.stat(self.state_dir / "lab.lock").st_ino == self.registration.lock_inode
        except OSError:
            return False

    def update_node_status(self) -> None:
        """The node's conditions and images from a fresh observation. Called by the heartbeat and by the kubelet when
        a pressure signal flips; serialised, and written with the Node's resourceVersion (retried on a conflict), so a
        cordon or a taint written meanwhile is never overwritten by an older copy."""
        with self._node_status_lock:
            for _ in range(5):
                node = self.store.try_get("v1/nodes", "", NODE_NAME)
                if node is None:
                    return
                try:
                    obs = observe(self.state_dir, self.driver)
                    node["status"]["conditions"] = self.conditions.update(node["status"].get("conditions") or [], obs,
                                                                          time.time())
                    if self.image_store is not None:
                        node["status"]["images"] = self.image_store.node_images(self.kubelet.config.nodeStatusMaxImages)
                    self.store.update("v1/nodes", node)
                    return
                except APIError as exc:
                    if exc.code != 409:
                        log.warning("node status update failed: %s", exc)
                        return
                except Exception:  # noqa: BLE001 - a failed beat must not end the heartbeat for the lab's lifetime
                    log.exception("node status update failed")
                    return

    def save_store_info(self) -> None:
        """``store.json``: the network slot, when the state was made, and what the store holds now (for `lab status`
        and `lab down`, which do not open the database)."""
        try:
            try:
                namespaces, rv, *_ = self.store.list("v1/namespaces", copy=False)  # only counted: no copies
            except TypeError:
                namespaces, rv, *_ = self.store.list("v1/namespaces")
            self.kept.update(namespaces=len(namespaces), objects=self._object_count(), resource_version=int(rv),
                             updated=time.time(), durable=hasattr(self.store, "restored"))
            paths.write_private(self.state_dir / STORE_INFO, json.dumps(self.kept))
        except Exception:  # noqa: BLE001 - a summary that cannot be written must not stop the lab
            log.exception("writing %s failed", STORE_INFO)

    def _object_count(self) -> int:
        return sum(self.store.count().values())

    def _pods_of_node(self) -> list[dict[str, Any]]:
        pods, *_ = self.store.list("v1/pods", None, lambda p: p.get("spec", {}).get("nodeName") == NODE_NAME)
        return pods

    def _metrics_loop(self, stop: threading.Event) -> None:
        """cAdvisor housekeeping every min(10 s, resolution); a metrics-server scrape every resolution, right after
        the housekeeping of the same tick so that the scrape sees fresh samples."""
        housekeeping = min(10.0, self.metric_resolution)
        next_sample = next_scrape = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_sample:
                    self.sampler.sample()
                    next_sample = max(next_sample + housekeeping, now + housekeeping / 2)
                if now >= next_scrape:
                    self.metrics_server.scrape()
                    next_scrape = max(next_scrape + self.metric_resolution, now + self.metric_resolution / 2)
            except Exception:  # noqa: BLE001 - a failed round must not end metrics for the lab's lifetime
                log.exception("metrics sampling failed")
            stop.wait(max(0.0, min(next_sample, next_scrape) - time.monotonic()))

    def _node_network(self) -> None:
        """What runs in the node's network namespace: the cluster DNS (UDP and TCP :53 on the node's address, metrics on
        :9153) and the API server's proxies dialing from there."""
        assert self.podnet is not None
        ns, gw = self.podnet.netns_path, self.podnet.gateway
        self.api.proxy = APIProxy(self.store, lambda ip, port, timeout: in_netns(
            ns, lambda: socket.create_connection((ip, port), timeout)), gw, self.kubelet_server.handle)
        self.dns = ClusterDNS(self.store)
        udp = socket_in(ns, socket.SOCK_DGRAM, (gw, 53))
        tcp = socket_in(ns, socket.SOCK_STREAM, (gw, 53), listen=128)
        t = threading.Thread(target=self.dns.serve, args=(udp, tcp, self.stop_event), name="dns", daemon=True)
        t.start()
        self._dns_sockets = (udp, tcp)
        self.api_endpoint = APIServerEndpoint(ns, gw, self.port, self.store, self.kubernetes_ip)  # <node>:6443 for pods
        self.kube_proxy = KubeProxy(self.store, ns, cluster_cidr=self.pod_cidr, node_ips=[gw], node_name=NODE_NAME,
                                    recorder=Recorder(self.store, "kube-proxy", NODE_NAME))
        kp = self.kube_proxy
        text = "text/plain; charset=utf-8"
        self._node_servers.append(serve_in_netns(ns, 10249, {  # kube-proxy's metricsBindAddress, on the node
            "/proxyMode": lambda: (200, text, kp.proxy_mode_text().encode()),
            "/metrics": lambda: (200, "text/plain; version=0.0.4; charset=utf-8", kp.metrics_text()),
            "/healthz": lambda: (200, text, b"ok")}))
        def health() -> tuple[int, str, bytes]:
            code, body = kp.healthz_body()
            return code, "application/json", body

        self._node_servers.append(serve_in_netns(ns, 10256, {"/healthz": health, "/livez": health}))  # its healthz server
        dns = self.dns
        self._node_servers.append(serve_in_netns(ns, 9153, {
            "/metrics": lambda: (200, "text/plain; version=0.0.4; charset=utf-8", dns.metrics_text()),
            "/health": lambda: (200, "text/plain; charset=utf-8", b"OK"),
            "/ready": lambda: (200, "text/plain; charset=utf-8", b"OK")}, host=gw))

    def _oci_runtime(self, mode: str) -> tuple[CrunRuntime | None, ImageStore | None, str]:
        """The OCI runtime with its registry and image store, or (None, None, why not) for the process runtime."""
        if mode == "process":
            return None, None, "the lab was started with --runtime process"
        why = oci_unavailable(self.driver)
        base = cached_base_images() if not why else None
        if not why and base is None:
            why = "the lab's images are not built yet (`kperflab lab up` builds them once, from Debian's packages)"
        if why:
            if mode == "oci":
                raise LabError(f"The OCI runtime cannot run here: {why}.", hint="Start the lab without --runtime oci.")
            return None, None, why
        self.registry = Registry(self.run_dir / "registry", env={LAB_ENV: self.lab_id}).start()
        self.registry.seed_base_images(base)
        self.test_images = cached_test_images()  # the storage lesson's, built by `lab up` once per machine
        for img in self.test_images.images.values() if self.test_images else ():
            self.registry.seed(img.layout, img.repository, list(img.tags))  # hard links: milliseconds
        prometheus = cached_prometheus_image()  # built once `lab up --prometheus` asked for it: a kept Prometheus
        if prometheus is not None:              # Deployment finds its image again after `lab down` and `lab up`
            self.registry.seed(prometheus.layout, prometheus.repository, list(prometheus.tags))
        # the image filesystem: ext4 of a set size on a loop device, so that image GC thresholds can be reached
        try:
            loopfs.create(self.run_dir / "imagefs.img", self.imagefs_size, self.run_dir / "images")
        except loopfs.NoSpace as exc:
            raise LabError(f"The lab's image filesystem cannot be made: {exc}.",
                           hint="Free some disk space, or start the lab with a smaller --imagefs-size.") from None
        store = ImageStore(self.run_dir / "images", registry_url=self.registry.url)
        return CrunRuntime(self.driver, self.lab_id, self.run_dir), store, ""  # type: ignore[arg-type]

    def _slow_registry_link(self) -> None:
        """The same images under `SLOW_HOST`, over a link shaped to ``registry_bandwidth`` (see images.slowlink)."""
        if self.registry is None or self.podnet is None or self.image_store is None:
            return
        podnet = self.podnet
        self.slow_registry = SlowRegistry(
            self.registry.storage, self.run_dir / "registry-slow", parse_rate(self.registry_bandwidth),
            podnet.netns_path, attach=lambda pid: podnet.add(SLOW_SANDBOX, pid),
            detach=lambda: podnet.delete(SLOW_SANDBOX), env={LAB_ENV: self.lab_id}).start()
        self.image_store.hosts[SLOW_HOST] = self.slow_registry.endpoint

    def _lesson_images(self) -> None:
        """ConfigMap kube-public/kperflab-test-images: the storage lesson's images and the slow registry host."""
        if self.test_images is None:
            return
        slow = self.slow_registry is not None
        self._ensure("v1/configmaps", test_images_configmap(
            self.test_images.refs(), SLOW_HOST if slow else None, self.registry_bandwidth if slow else None,
            {label: img.size for label, img in self.test_images.images.items()}), fields=("data",))

    @property
    def runtime_description(self) -> str:
        if self.oci is not None:
            return f"{self.oci.version} (OCI: containers from their images, pulled from the lab's registry)"
        return f"process (containers as processes on this machine; no OCI runtime: {self.no_oci})"

    def stop(self) -> None:
        self._ready = False
        self.stop_event.set()
        self.kubelet.wake()
        t0 = time.monotonic()
        took: dict[str, float] = {}
        try:
            for t in self._threads:  # a kubelet sync still running could start a container after the shutdown below
                t.join(timeout=10)
                if t.is_alive():
                    log.warning("thread %s did not stop within 10 s", t.name)
            took["loops"] = time.monotonic() - t0
            self.kept["stopped"] = time.time()
            self.save_store_info()
            self.store.close()
            self.kubelet.shutdown()
            took["pods"] = time.monotonic() - t0 - took["loops"]
            if self.storage is not None:
                self.storage.stop()  # every PV backend of this lab: node mounts, the storage server, loop filesystems
            if self.registry is not None:
                self.registry.stop()
                self.slow_registry and self.slow_registry.stop()
            self.server.shutdown()
            self.server.server_close()
            for srv in self._node_servers:
                srv.shutdown()
                srv.server_close()
            for sock in getattr(self, "_dns_sockets", ()):
                sock.close()
            if self.api_endpoint is not None:
                self.api_endpoint.close()
            labs.remove(self.lab_id, self.state_dir, self.driver, own=True)  # what the kubelet left: ours only, by id
            log.info("stopped in %.1f s (loops %.1f s, pods %.1f s, the rest %.1f s)", time.monotonic() - t0,
                     took["loops"], took["pods"], time.monotonic() - t0 - took["loops"] - took["pods"])
        finally:
            close_db = getattr(self.store, "close_db", None)  # last: the writes of the shutdown above are kept
            try:
                if close_db is not None:
                    close_db()
            finally:
                self.registration.release()

    def wait(self) -> None:
        done = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            done.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, on_signal)
        while not done.wait(1.0) and not self.shutdown_requested.is_set():
            pass
