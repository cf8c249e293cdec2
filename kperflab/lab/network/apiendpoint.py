"""The API server as pods reach it: the ``kubernetes`` Service's endpoint on the node.

On a kubeadm node kube-apiserver listens on the node's address, port 6443; its endpoint reconciler keeps
``default/kubernetes`` pointing there (an Endpoints with ``endpointslice.kubernetes.io/skip-mirror`` and an
EndpointSlice of the same name, port ``https``), and kube-proxy's rules turn ``<service CIDR>.1:443`` into
``<node>:6443``. The lab's API server listens on 127.0.0.1 of the host only, so ``APIServerEndpoint`` listens for it
inside the node's network namespace, on the node's address port 6443, and relays each TCP connection unchanged (TLS
goes end to end: the server certificate names ``kubernetes.default.svc`` and the ClusterIP). Its ``reconcile`` does
the endpoint reconciler's and the ``kubernetes`` Service controller's part, every 10 s as theirs.
"""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import threading
from pathlib import Path
from typing import Any

from ..errors import APIError
from .podnet import socket_in

log = logging.getLogger("kperflab.lab.network")

Obj = dict[str, Any]
SECURE_PORT = 6443  # kube-apiserver's --secure-port, what the Service's targetPort names
SERVICE_PORT = 443
PORT_NAME = "https"
RECONCILE_PERIOD = 10.0  # --endpoint-reconciler-type=lease's interval, the master service controller's too
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
SERVICE_NAME = "kubernetes.io/service-name"


def first_address(cidr: str) -> str:
    """The first host address of ``cidr``: the pod network's gateway, the node's address on it.

    >>> first_address("10.244.0.0/16")
    '10.244.0.1'
    """
    return str(ipaddress.ip_network(cidr).network_address + 1)


def kubernetes_service(cluster_ip: str) -> Obj:
    """``default/kubernetes`` as kube-apiserver creates it (``pkg/controlplane/controller/kubernetesservice``)."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ipFamilies": ["IPv4"],
                 "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
                 "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "protocol": "TCP", "targetPort": SECURE_PORT}]},
        "status": {"loadBalancer": {}}}


def kubernetes_endpoints(ip: str, port: int = SECURE_PORT) -> Obj:
    """The Endpoints the reconciler writes (not mirrored: the slice is written beside it)."""
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {
        "name": "kubernetes", "namespace": "default", "labels": {SKIP_MIRROR: "true"}},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}]}]}


def kubernetes_endpointslice(ip: str, port: int = SECURE_PORT) -> Obj:
    """The EndpointSlice the reconciler's EndpointsAdapter derives from them: same name, the service-name label only."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {
        "name": "kubernetes", "namespace": "default", "labels": {SERVICE_NAME: "kubernetes"}},
        "addressType": "IPv4", "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}]}


def reconcile(store: Any, cluster_ip: str, ip: str, port: int = SECURE_PORT) -> int:
    """Make the Service, Endpoints and EndpointSlice say the above again where they are missing or differ; the number
    of writes."""
    writes = 0
    want: list[tuple[str, Obj, tuple[str, ...]]] = [
        ("v1/endpoints", kubernetes_endpoints(ip, port), ("subsets",)),
        ("discovery.k8s.io/v1/endpointslices", kubernetes_endpointslice(ip, port), ("addressType", "endpoints", "ports")),
    ]
    svc = store.try_get("v1/services", "default", "kubernetes")
    if svc is None:
        want.insert(0, ("v1/services", kubernetes_service(cluster_ip), ()))
    elif (svc.get("spec") or {}).get("ports") != kubernetes_service(cluster_ip)["spec"]["ports"]:
        svc["spec"]["ports"] = kubernetes_service(cluster_ip)["spec"]["ports"]
        want.insert(0, ("v1/services", svc, ()))
    for resource, obj, fields in want:
        current = store.try_get(resource, "default", "kubernetes")
        try:
            if current is None:
                store.create(resource, obj, resource.rsplit("/", 1)[1])
            elif not fields:
                store.update(resource, obj)
            else:
                labels = {**(current["metadata"].get("labels") or {}), **obj["metadata"]["labels"]}
                if all(current.get(f) == obj[f] for f in fields) and labels == current["metadata"].get("labels"):
                    continue
                current.update({f: obj[f] for f in fields})
                current["metadata"]["labels"] = labels
                store.update(resource, current)
            writes += 1
        except APIError as exc:
            if exc.code not in (404, 409):  # raced with someone: the next round sees it
                raise
    return writes


class APIServerEndpoint:
    """A TCP relay from ``<node ip>:6443`` inside the node namespace to the API server on the host's 127.0.0.1."""

    def __init__(self, netns_path: str | Path, node_ip: str, api_port: int, store: Any = None,
                 cluster_ip: str = "", port: int = SECURE_PORT) -> None:
        self.node_ip, self.api_port, self.port = node_ip, api_port, port
        self.store, self.cluster_ip = store, cluster_ip
        self.listener = socket_in(netns_path, socket.SOCK_STREAM, (node_ip, port), listen=128)
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="apiserver-endpoint", daemon=True)
        self._thread.start()

    def run(self, stop: threading.Event) -> None:
        """The endpoint reconciler: at once, then every RECONCILE_PERIOD seconds until ``stop``."""
        while not stop.is_set():
            if self.store is not None:
                try:
                    reconcile(self.store, self.cluster_ip, self.node_ip, self.port)
                except Exception:  # noqa: BLE001 - a failed round must not end the reconciler
                    log.exception("kubernetes endpoint reconcile failed")
            stop.wait(RECONCILE_PERIOD)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(client,), name="apiserver-endpoint-conn", daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.api_port), timeout=10)
        except OSError as exc:
            log.warning("the API server at 127.0.0.1:%d does not answer the in-cluster endpoint: %s", self.api_port, exc)
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            if self._closed.is_set():
                client.close()
                upstream.close()
                return
            self._conns.update((client, upstream))
        peer = {client: upstream, upstream: client}
        open_reads = {client, upstream}
        sel = selectors.DefaultSelector()
        try:
            for s in peer:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            while open_reads and not self._closed.is_set():
                for key, _ in sel.select(timeout=1.0):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = src.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if data:
                        dst = peer[src]
                        dst.setblocking(True)
                        try:
                            dst.sendall(data)
                        except OSError:
                            open_reads.clear()
                            break
                        finally:
                            dst.setblocking(False)
                        continue
                    sel.unregister(src)  # EOF: pass the half-close on, keep the other direction
                    open_reads.discard(src)
                    try:
                        peer[src].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
        finally:
            sel.close()
            with self._lock:
                self._conns.discard(client)
                self._conns.discard(upstream)
            client.close()
            upstream.close()

    def close(self) -> None:
        """Stop listening and end every relayed connection."""
        self._closed.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
