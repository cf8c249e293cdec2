"""Small HTTP servers inside the lab's node network namespace, where a real node's daemons listen: kube-proxy's
metrics server (``:10249`` — ``/proxyMode``, ``/metrics``, ``/healthz``) and health server (``:10256/healthz``), and
the cluster DNS's metrics (``:9153/metrics``, CoreDNS's port). They are reached from pods, from
``ip netns exec kperflab-<id> curl …`` and through the API server's node and service proxies, never from the host's
own network namespace."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .podnet import socket_in

log = logging.getLogger("kperflab.lab.network")

# path → () → (status, content type, body)
Routes = dict[str, Callable[[], tuple[int, str, bytes]]]


class _Handler(BaseHTTPRequestHandler):
    routes: Routes = {}
    server_version = "kperflab"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        route = self.routes.get(self.path.split("?", 1)[0])
        try:
            status, ctype, body = route() if route else (404, "text/plain; charset=utf-8", b"404 page not found\n")
        except Exception:  # noqa: BLE001 - one failed answer must not end the server
            log.exception("%s failed", self.path)
            status, ctype, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("node http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def serve_in_netns(netns_path: str | Path, port: int, routes: Routes, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """An HTTP server on ``host:port`` inside the namespace; ``shutdown()`` + ``server_close()`` end it."""
    import socket

    sock = socket_in(netns_path, socket.SOCK_STREAM, (host, port), listen=64)
    server = _Server((host, port), type("Handler", (_Handler,), {"routes": routes}), bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()
    threading.Thread(target=server.serve_forever, name=f"node-http-{port}", daemon=True).start()
    return server
