"""The streaming subresources, server side: ``pods/exec``, ``pods/attach`` and ``pods/portforward``.

The API server authenticates the request, finds the pod, and hands the connection over; from then on the session
runs in that HTTP thread until it ends, and the connection is closed after it::

    from urllib.parse import parse_qs, urlsplit
    from kperflab.lab import streams

    query = parse_qs(urlsplit(handler.path).query, keep_blank_values=True)  # blank values count: "stdin=" is true
    # exec / attach
    try:
        options = streams.parse_exec_options(query, attach=subresource == "attach")
    except streams.StreamError as e:      # 400: no stream asked for, no command
        streams.send_status(handler, e)
        return
    streams.serve_remotecommand(handler, options, start)   # start(options) -> Stdio, may raise APIError
    # port-forward
    streams.serve_portforward(handler, query, dial, pod=name, uid=uid)   # dial(port) -> connected socket

``handler`` is the `http.server.BaseHTTPRequestHandler` that read the request head (nothing written yet). The
functions read ``handler.headers`` and ``handler.command``, answer refusals as a Kubernetes ``Status`` with a 4xx
(never a hang), write the 101 themselves, run the session on ``handler.connection`` (TLS or plain), and set
``handler.close_connection``. They return when the session is over, every thread they started joined and every fd
they were given closed.

What is served (client-go v0.32, apimachinery, the kubelet, the Python client 37 — see
``shared/reference/containers.md``):

- exec/attach: WebSocket, subprotocols ``v5.channel.k8s.io`` (with CLOSE), ``v4.channel.k8s.io``, and the old
  ``v4.base64.channel.k8s.io``, ``channel.k8s.io``, ``base64.channel.k8s.io``; and SPDY/3.1 streams
  (``X-Stream-Protocol-Version`` v5 or v4), which kubectl falls back to (``KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false``)
  and kubectl older than 1.30 only speaks.
- port-forward: SPDY/3.1 inside a WebSocket (``SPDY/3.1+portforward.k8s.io``, kubectl's default since 1.31),
  SPDY/3.1 after a plain ``Upgrade: SPDY/3.1`` (kubectl's fallback), and WebSocket channels with ``ports`` in the
  query (``v4.channel.k8s.io``, the Python client).

`Stdio` is what the container runtime gives for one process; `ExecOptions` what the client asked for;
`StreamError` (a lab `APIError`) is "answer this Status with this HTTP code". WebSocket framing is wsproto's;
SPDY framing is `spdy` (no maintained Python library exists).

Each session runs in the HTTP thread that received it: one selector over the client's socket and the process's or
the pod's ends, all non-blocking (`_io`), so the TLS socket is only ever used by that thread. An exec adds one
thread, which waits for the process's exit, and joins it before returning. ``start`` and ``dial`` are called in
the session's thread: they should not block for long.
"""

from __future__ import annotations

from ._http import StreamError, send_status
from .portforward import parse_ports, serve_portforward
from .remotecommand import (
    ExecOptions,
    Stdio,
    exit_status,
    parse_exec_options,
    query_bool,
    serve_remotecommand,
)

__all__ = [
    "ExecOptions",
    "Stdio",
    "StreamError",
    "exit_status",
    "parse_exec_options",
    "parse_ports",
    "query_bool",
    "send_status",
    "serve_portforward",
    "serve_remotecommand",
]
