"""The API server's proxy subresources: ``nodes/<node>[:port]/proxy``, ``services/<svc>[:port]/proxy`` and
``pods/<pod>[:port]/proxy`` — how `kubectl get --raw`, the official client's ``connect_get_*_proxy_with_path`` and
Prometheus' API-server scraping reach a kubelet, kube-proxy, a Service or a pod.

As kube-apiserver resolves them (pkg/registry/core/{node,service,pod}/strategy.go ``ResourceLocation``): the name is
``[scheme:]name[:port]``; a node's default port is the kubelet's (10250), other ports reach the node's address; a
Service's port is chosen by name or number and one ready endpoint of it (from its EndpointSlices) is dialed at that
endpoint's port; a pod is dialed at its IP and the given port (else its first declared container port). Where nothing
can be dialed, the answer is a 503 Status with kube-apiserver's wording (``no endpoints available for service "x"``,
``error trying to reach service: dial tcp …``).

The lab's node is its network namespace: connections are made there (``dial``), so pod and Service addresses and the
node's own servers (kube-proxy's :10249/:10256, the cluster DNS's metrics) are reached as from the node. The kubelet's
port is served in-process by the kubelet server.
"""

from __future__ import annotations

import http.client
import random
import socket
from collections.abc import Callable
from typing import Any

from . import errors
from .store import Store

KUBELET_PORT = 10250
MAX_BODY = 64 << 20
HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "authorization", "host", "content-length"}
# the backend's response headers the proxy passes on with the body it read (the body is not decoded)
PASSED_HEADERS = ("Content-Encoding", "Cache-Control", "ETag", "Last-Modified")


def split_name(value: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` → (scheme, name, port), as kube-apiserver's ``net.SplitSchemeNamePort``."""
    parts = value.split(":")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3 and parts[0] in ("http", "https"):
        return parts[0], parts[1], parts[2]
    raise errors.bad_request(f"invalid service request {value!r}")


class APIProxy:
    def __init__(self, store: Store, dial: Callable[[str, int, float], socket.socket] | None, node_ip: str,
                 kubelet: Callable[[str, str, dict[str, str]], Any] | None) -> None:
        self.store = store
        self.dial = dial  # (ip, port, timeout) → a connected socket in the node's network namespace
        self.node_ip = node_ip
        self.kubelet = kubelet

    # -- resolution ---------------------------------------------------------------------------------
    def node(self, method: str, name_port: str, rest: str, query: dict[str, str], headers: dict[str, str],
             body: bytes) -> Any:
        from .apiserver import Response

        scheme, name, port = split_name(name_port)
        self.store.get("v1/nodes", "", name, "nodes")
        if port in ("", str(KUBELET_PORT)):
            if self.kubelet is None:
                raise errors.APIError(404, "NotFound", "the server could not find the requested resource", details={})
            if method != "GET":
                raise errors.method_not_allowed()
            return self.kubelet(name, rest or "/", query)
        if not port.isdigit():
            raise errors.bad_request(f"invalid port {port!r} for node {name}")
        status, ctype, data, passed = self._forward(self.node_ip, int(port), method, rest, query, headers, body,
                                                    "error trying to reach service")
        return Response(status, data, ctype, headers=passed)

    def service(self, method: str, namespace: str, name_port: str, rest: str, query: dict[str, str],
                headers: dict[str, str], body: bytes) -> Any:
        from .apiserver import Response

        scheme, name, port = split_name(name_port)
        svc = self.store.get("v1/services", namespace, name, "services")
        spec = svc.get("spec") or {}
        ports = spec.get("ports") or []
        port_name = port
        if port.isdigit():  # a number names the Service port with that number
            port_name = next((p.get("name") or "" for p in ports if str(p.get("port")) == port), port)
        if not any((p.get("name") or "") == port_name for p in ports):
            raise errors.APIError(503, "ServiceUnavailable", f'no service port "{port}" found for service "{name}"')
        addrs = self._ready_endpoints(namespace, name, port_name)
        if spec.get("type") == "ExternalName":
            raise errors.bad_request(f'the lab cannot proxy to ExternalName service "{name}"')
        if not addrs:
            raise errors.APIError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        ip, tport = random.choice(addrs)
        status, ctype, data, passed = self._forward(ip, tport, method, rest, query, headers, body, "error trying to reach service")
        return Response(status, data, ctype, headers=passed)

    def pod(self, method: str, namespace: str, name_port: str, rest: str, query: dict[str, str],
            headers: dict[str, str], body: bytes) -> Any:
        from .apiserver import Response

        scheme, name, port = split_name(name_port)
        pod = self.store.get("v1/pods", namespace, name, "pods")
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            raise errors.bad_request(f"address not allowed: pod {name} has no IP yet")
        if not port:
            declared = [p.get("containerPort") for c in pod["spec"].get("containers") or [] for p in c.get("ports") or []]
            port = str(declared[0]) if declared else ""
        if not port.isdigit():
            named = {p.get("name"): p.get("containerPort") for c in pod["spec"].get("containers") or []
                     for p in c.get("ports") or [] if p.get("name")}
            if port not in named:
                raise errors.bad_request(f"invalid port {port!r} for pod {name}")
            port = str(named[port])
        status, ctype, data, passed = self._forward(ip, int(port), method, rest, query, headers, body, "error trying to reach service")
        return Response(status, data, ctype, headers=passed)

    def _ready_endpoints(self, namespace: str, service: str, port_name: str) -> list[tuple[str, int]]:
        slices, *_ = self.store.list("discovery.k8s.io/v1/endpointslices", namespace, lambda s: (
            (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == service))
        out = []
        for s in slices:
            port = next((p.get("port") for p in s.get("ports") or [] if (p.get("name") or "") == port_name), None)
            if port is None:
                continue
            for ep in s.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready", True) is False:
                    continue
                out.extend((a, int(port)) for a in ep.get("addresses") or [])
        return out

    # -- the request ----------------------------------------------------------------------------------
    def _forward(self, ip: str, port: int, method: str, rest: str, query: dict[str, str], headers: dict[str, str],
                 body: bytes, what: str) -> tuple[int, str, bytes, dict[str, str]]:
        if self.dial is None:
            raise errors.APIError(503, "ServiceUnavailable", f"{what}: the lab has no pod network to dial {ip}:{port}")
        try:
            sock = self.dial(ip, port, 10.0)
        except OSError as exc:
            raise errors.APIError(503, "ServiceUnavailable",
                                  f"{what}: dial tcp {ip}:{port}: connect: {_reason(exc)}") from None
        conn = http.client.HTTPConnection(ip, port, timeout=30)
        conn.sock = sock
        path = "/" + rest.lstrip("/")
        if query:
            from urllib.parse import urlencode

            path += "?" + urlencode(query)
        fwd = {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}
        try:
            conn.request(method, path, body=body or None, headers=fwd)
            resp = conn.getresponse()
            data = resp.read(MAX_BODY + 1)
            if len(data) > MAX_BODY:
                raise errors.APIError(502, "InternalError", f"{what}: the answer of {ip}:{port} is over 64 MiB")
            ctype = resp.getheader("Content-Type") or "text/plain"
            # the body as the backend encoded it: kube-apiserver's proxy passes Content-Encoding (e.g. gzip) through
            return resp.status, ctype, data, {h: resp.getheader(h) for h in PASSED_HEADERS if resp.getheader(h)}
        except (OSError, http.client.HTTPException) as exc:
            raise errors.APIError(503, "ServiceUnavailable", f"{what}: {ip}:{port}: {_reason(exc)}") from None
        finally:
            conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "i/o timeout"
    return str(exc) or type(exc).__name__
