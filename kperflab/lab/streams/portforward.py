"""``pods/portforward``: SPDY/3.1 streams (kubectl, tunnelled in a WebSocket or after a plain SPDY upgrade) and
WebSocket channels (the Python client).

kubectl 1.32 (client-go ``tools/portforward``) opens, per local connection, an ``error`` then a ``data`` stream
with the same ``requestid`` and the remote ``port`` in their headers; it FINs the error stream at once, pumps the
data stream, resets it when the pod's side is done, and reads the error stream to its end: text there is an error
it prints ("an error occurred forwarding L -> R: ...") before it gives up the whole port-forward. So the server
replies to each stream, dials when a pair is complete, FINs the data stream when the pod closes and always FINs the
error stream when the pair ends, with the kubelet's text on it when the dial failed.

The Python client (``kubernetes.stream.portforward``) asks for ``ports`` in the query of a ``v4.channel.k8s.io``
WebSocket: port i is channel 2i (data, both ways) and 2i+1 (errors), each opened by the port as 2 little-endian
bytes; every port is dialled when the socket opens and the socket closes when all are done.

A forwarded connection ends as containerd's does: once one direction has ended, the other gets `LINGER` seconds.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from wsproto.events import BytesMessage

from . import spdy
from ._channels import V4, V4_BASE64, Channels
from ._http import (
    StreamError,
    accept_spdy,
    accept_websocket,
    bad_request,
    negotiate,
    offered_subprotocols,
    send_status,
    upgrade_kind,
)
from ._io import HIGH_WATER, Client, Loop, WebSocket, read_fd, write_fd

log = logging.getLogger("kperflab.lab.streams")

PORTFORWARD_PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = "SPDY/3.1+" + PORTFORWARD_PROTOCOL  # kubectl >= 1.31: SPDY inside a WebSocket
CHANNEL_PROTOCOLS = (V4, V4_BASE64)  # what the kubelet's WebSocket port-forward accepts
LINGER = 1.0  # seconds the other direction gets once one has ended (containerd's socat-like rule)
STREAM_CREATION_TIMEOUT = 30.0  # the kubelet's wait for the second stream of a pair


def parse_ports(query: dict[str, list[str]]) -> list[int]:
    """The ``ports`` of a WebSocket port-forward (``port`` as the kubelet names it is read too), comma-separated
    or repeated, in order; raises `StreamError` (400) in the kubelet's words.

    >>> parse_ports({"ports": ["80,8080"], "port": ["9090"]})
    [80, 8080, 9090]
    """
    values = (query.get("ports") or []) + (query.get("port") or [])
    if not values:
        raise bad_request('query parameter "ports" is required')
    ports = []
    for value in values:
        if not value:
            raise bad_request('query parameter "ports" cannot be empty')
        for p in value.split(","):
            if not p.isdigit() or int(p) > 65535:
                raise bad_request(f'unable to parse "{value}" as a port')
            if int(p) < 1:
                raise bad_request(f'port "{value}" must be > 0')
            ports.append(int(p))
    return ports


def serve_portforward(handler: BaseHTTPRequestHandler, query: dict[str, list[str]],
                      dial: Callable[[int], socket.socket], *, pod: str = "", uid: str = "") -> None:
    """Serve one port-forward connection on ``handler``'s connection; returns when the client has gone (SPDY) or
    every port is done (channels).

    ``dial(port)`` connects to ``port`` in the pod and returns the socket (the session owns and closes it). It
    runs in the session's thread, so it should not block for long (dial a local address, with a timeout). An
    ``OSError`` from it is reported on the error stream/channel as the kubelet words it, naming ``pod`` and
    ``uid``: "error forwarding port 80 to pod web, uid 1234: connect: connection refused"; the connection goes on.
    """
    handler.close_connection = True
    kind = upgrade_kind(handler)
    try:
        if kind == "websocket":
            offered = offered_subprotocols(handler)
            if TUNNEL_PROTOCOL in offered:
                ws = accept_websocket(handler, TUNNEL_PROTOCOL)
                session: _Session = _SpdySession(_TunnelPipe(ws), dial, pod, uid)
            else:
                ports = parse_ports(query)
                protocol = negotiate(offered, CHANNEL_PROTOCOLS + (TUNNEL_PROTOCOL,))
                ws = accept_websocket(handler, protocol)
                session = _ChannelSession(ws, protocol, ports, dial, pod, uid)
        elif kind == "spdy":
            versions = [v.strip() for h in handler.headers.get_all("X-Stream-Protocol-Version") or []
                        for v in h.split(",") if v.strip()]
            if not versions:
                raise bad_request("unable to upgrade: X-Stream-Protocol-Version is required")
            if PORTFORWARD_PROTOCOL not in versions:
                send_status(handler, StreamError(403, "Forbidden", (
                    f"unable to upgrade: unable to negotiate protocol: client supports [{' '.join(versions)}], "
                    f"server accepts [{PORTFORWARD_PROTOCOL}]")),
                    {"X-Accepted-Stream-Protocol-Versions": PORTFORWARD_PROTOCOL})
                return
            session = _SpdySession(_RawPipe(accept_spdy(handler, PORTFORWARD_PROTOCOL)), dial, pod, uid)
        else:
            raise bad_request("Upgrade request required")
    except StreamError as e:
        send_status(handler, e)
        return
    try:
        session.run()
    finally:
        session.teardown()


def describe(exc: BaseException) -> str:
    """How a dial failure reads in the error text: the runtime's own message, or Go's words for a bare errno."""
    if isinstance(exc, OSError) and exc.strerror and len(exc.args) == 2 and not exc.filename:
        return f"connect: {exc.strerror.lower()}"
    return str(exc) or type(exc).__name__


@dataclass
class _Forward:
    """One TCP connection dialled into the pod and how each of its directions ended."""

    sock: socket.socket
    to_pod: bytearray = field(default_factory=bytearray)
    client_done: bool = False  # the client will send no more (FIN, RST, socket gone)
    pod_done: bool = False  # the pod sent EOF, or its socket failed
    shut: bool = False  # SHUT_WR sent to the pod after the client's end
    linger_until: float = 0.0  # set when the first direction ends
    owner: object = None  # the session's handle for it: a port index, or a SPDY stream pair

    def direction_ended(self) -> None:
        if not self.linger_until:
            self.linger_until = time.monotonic() + LINGER

    def over(self) -> bool:
        return (self.client_done and self.pod_done) or (bool(self.linger_until)
                                                        and time.monotonic() >= self.linger_until)


class _Session:
    """What both kinds of port-forward session share: the loop, the dialled sockets and their pumping."""

    def __init__(self, client: Client, dial: Callable[[int], socket.socket], pod: str, uid: str) -> None:
        self.client = client
        self.dial = dial
        self.pod, self.uid = pod, uid
        self.loop = Loop()
        if client.has_early:
            self.loop.kick.add(client.fileno())
        self.forwards: dict[int, _Forward] = {}  # by socket fd

    def open(self, port: int) -> tuple[_Forward | None, str]:
        """Dial ``port``; the forward, or None and the kubelet's error text."""
        try:
            sock = self.dial(port)
        except Exception as e:  # noqa: BLE001 - any dial failure is the client's error text, not ours
            log.info("port-forward to %s port %d failed: %s", self.pod, port, e)
            return None, f"error forwarding port {port} to pod {self.pod}, uid {self.uid}: {describe(e)}"
        sock.setblocking(False)
        fwd = _Forward(sock)
        self.forwards[sock.fileno()] = fwd
        return fwd, ""

    def close_forward(self, fwd: _Forward) -> None:
        fd = fwd.sock.fileno()
        if fd >= 0:
            self.loop.forget(fd)
            self.forwards.pop(fd, None)
        fwd.sock.close()
        fwd.client_done = fwd.pod_done = True

    def to_pod(self, fwd: _Forward, data: bytes, fin: bool) -> None:
        if not fwd.client_done:
            fwd.to_pod += data
            if fin:
                fwd.client_done = True
                fwd.direction_ended()
            self._write_pod(fwd)

    def _write_pod(self, fwd: _Forward) -> None:
        if fwd.to_pod and not write_fd(fwd.sock.fileno(), fwd.to_pod):
            fwd.client_done = fwd.pod_done = True  # reset by the pod: both directions are over
        if fwd.client_done and not fwd.to_pod and not fwd.shut and not fwd.pod_done:
            fwd.shut = True
            try:
                fwd.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _on_pod(self, fd: int, mask: int) -> None:
        fwd = self.forwards.get(fd)
        if fwd is None:
            return
        if mask & selectors.EVENT_WRITE:
            self._write_pod(fwd)
        if mask & selectors.EVENT_READ and not fwd.pod_done:
            data = read_fd(fd)
            if data is None:
                fwd.pod_done = True
                fwd.direction_ended()
                self.from_pod(fwd, b"", eof=True)
            elif data:
                self.from_pod(fwd, data, eof=False)

    def from_pod(self, fwd: _Forward, data: bytes, eof: bool) -> None:
        raise NotImplementedError

    def client_events(self) -> None:
        raise NotImplementedError

    def finished(self) -> bool:
        raise NotImplementedError

    def tick(self) -> float | None:
        """End forwards whose time is up; seconds until the next deadline (None: none)."""
        raise NotImplementedError

    def _on_client(self, fd: int, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.client.flush()
        if mask & selectors.EVENT_READ:
            self.client_events()

    def run(self) -> None:
        while not self.finished():
            wait = self.tick()
            if self.finished():
                break
            queued = max((len(f.to_pod) for f in self.forwards.values()), default=0)
            events = (selectors.EVENT_READ if queued < HIGH_WATER else 0)
            events |= selectors.EVENT_WRITE if self.client.out else 0
            self.loop.want(self.client.fileno(), events, self._on_client)
            busy = len(self.client.out) >= HIGH_WATER
            for fd, fwd in self.forwards.items():
                ev = 0 if busy or fwd.pod_done else selectors.EVENT_READ
                ev |= selectors.EVENT_WRITE if fwd.to_pod else 0
                self.loop.want(fd, ev, self._on_pod)
            self.loop.poll(wait)

    def teardown(self) -> None:
        for fwd in list(self.forwards.values()):
            self.close_forward(fwd)
        self.loop.close()
        self.client.restore()


# -- the Python client: channels over WebSocket ---------------------------------------------------------------


class _ChannelSession(_Session):
    """The Python client's port-forward: port i is channels 2i (data) and 2i+1 (errors) of one WebSocket."""

    def __init__(self, ws: WebSocket, protocol: str, ports: list[int], dial: Callable[[int], socket.socket],
                 pod: str, uid: str) -> None:
        super().__init__(ws.client, dial, pod, uid)
        self.ws = ws
        self.channels = Channels(protocol)
        self.ports = ports
        self.by_index: dict[int, _Forward | None] = {}

    def run(self) -> None:
        """Announce every port on both its channels, dial them all (as the kubelet does when the socket opens),
        then pump until every port is done or the client goes."""
        for i, port in enumerate(self.ports):
            prefix = port.to_bytes(2, "little")  # the Python client checks it on both channels before any data
            self.ws.send(self.channels.encode(2 * i, prefix))
            self.ws.send(self.channels.encode(2 * i + 1, prefix))
        for i, port in enumerate(self.ports):
            fwd, error = self.open(port)
            self.by_index[i] = fwd
            if fwd is not None:
                fwd.owner = i
            else:
                self.ws.send(self.channels.encode(2 * i + 1, error.encode()))
        super().run()

    def client_events(self) -> None:
        for event in self.ws.events():
            for channel, data in self.channels.decode(event):
                fwd = self.by_index.get(channel // 2) if channel % 2 == 0 else None
                if fwd is not None:
                    self.to_pod(fwd, data, fin=False)

    def from_pod(self, fwd: _Forward, data: bytes, eof: bool) -> None:
        if data and isinstance(fwd.owner, int):
            self.ws.send(self.channels.encode(2 * fwd.owner, data))

    def tick(self) -> float | None:
        waits = []
        for i, fwd in list(self.by_index.items()):
            if fwd is not None and fwd.over():
                self.close_forward(fwd)
                self.by_index[i] = None
            elif fwd is not None and fwd.linger_until:
                waits.append(fwd.linger_until - time.monotonic())
        return max(0.0, min(waits)) if waits else None

    def finished(self) -> bool:
        if self.ws.closed or self.client.eof:
            return True
        if self.by_index and all(f is None for f in self.by_index.values()):
            self.ws.close(1000)  # every port is done: upstream closes the socket
            return True
        return False


# -- kubectl: SPDY streams, raw or tunnelled ---------------------------------------------------------------------


class _RawPipe:
    """SPDY frames straight on the upgraded connection."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def read(self) -> bytes:
        return self.client.recv()

    def write(self, data: bytes) -> None:
        self.client.send(data)

    @property
    def closed(self) -> bool:
        return self.client.eof

    def close(self) -> None:
        self.client.drain(2.0)
        self.client.linger(2.0)


class _TunnelPipe:
    """SPDY frames as the bytes of binary WebSocket messages, whose boundaries mean nothing (client-go
    ``tunneling_connection.go``)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.client = ws.client

    def read(self) -> bytes:
        out, text = [], False
        for event in self.ws.events():
            if isinstance(event, BytesMessage):
                out.append(bytes(event.data))
            else:
                text = True
        if text:  # client-go's words for the same mistake
            raise spdy.ProtocolError("invalid message type received")
        return b"".join(out)

    def write(self, data: bytes) -> None:
        self.ws.send_bytes(data)

    @property
    def closed(self) -> bool:
        return self.ws.closed or self.client.eof

    def close(self) -> None:
        self.ws.close(1000)


@dataclass
class _Pair:
    """The error and data streams of one kubectl connection, paired by ``requestid``."""

    request_id: str
    port: int
    created: float
    error_id: int = 0
    data_id: int = 0
    fwd: _Forward | None = None
    done: bool = False
    fin_sent: set[int] = field(default_factory=set)  # streams this end has half-closed
    reset: set[int] = field(default_factory=set)  # streams the client reset: nothing more is sent on them


class _SpdySession(_Session):
    """kubectl's port-forward: SPDY streams paired by ``requestid``, one pod connection per pair."""

    def __init__(self, pipe: _RawPipe | _TunnelPipe, dial: Callable[[int], socket.socket], pod: str,
                 uid: str) -> None:
        super().__init__(pipe.client, dial, pod, uid)
        self.pipe = pipe
        self.framer = spdy.Framer()
        self.pairs: dict[str, _Pair] = {}
        self.streams: dict[int, _Pair] = {}
        self.last_stream_id = 0
        self.gone = False  # GOAWAY received or a protocol error: the session is over

    def finished(self) -> bool:
        return self.gone or self.pipe.closed

    # -- frames from the client --

    def client_events(self) -> None:
        try:
            data = self.pipe.read()
            if not data:
                return
            frames = self.framer.feed(data)
        except spdy.ProtocolError as e:
            log.info("port-forward: SPDY protocol error: %s", e)
            self.pipe.write(self.framer.goaway(self.last_stream_id, spdy.GOAWAY_PROTOCOL_ERROR))
            self.gone = True
            return
        for frame in frames:
            if isinstance(frame, spdy.SynStream):
                self._syn_stream(frame)
            elif isinstance(frame, spdy.Data):
                self._data(frame)
            elif isinstance(frame, spdy.RstStream):
                self._rst(frame.stream_id)
            elif isinstance(frame, spdy.Ping) and frame.id % 2:
                self.pipe.write(self.framer.ping(frame.id))  # the client's (odd) ping, answered as is
            elif isinstance(frame, spdy.GoAway):
                self.gone = True

    def _syn_stream(self, f: spdy.SynStream) -> None:
        """apimachinery's stream handler then the kubelet's pairing (``httpStreamReceived``, ``getStreamPair``)."""
        self.last_stream_id = max(self.last_stream_id, f.stream_id)
        port_text, kind = f.header("port"), f.header("streamtype")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536 or kind not in ("error", "data"):
            self.pipe.write(self.framer.rst_stream(f.stream_id, spdy.CANCEL))  # the handler refused it
            return
        self.pipe.write(self.framer.syn_reply(f.stream_id))
        request_id = f.header("requestid")
        if not request_id:  # clients older than requestid: the kubelet pairs by stream id
            request_id = str(f.stream_id if kind == "error" else f.stream_id - 2)
        pair = self.pairs.get(request_id)
        if pair is None:
            pair = self.pairs[request_id] = _Pair(request_id, int(port_text), time.monotonic())
        if getattr(pair, f"{kind}_id"):  # the kubelet says so on the pair's error stream, and ignores the stream
            self._send(pair, pair.error_id, f"error processing stream for request {request_id}: {kind} stream "
                                            "already assigned".encode(), fin=False)
            return
        self.streams[f.stream_id] = pair
        setattr(pair, f"{kind}_id", f.stream_id)
        if pair.error_id and pair.data_id:
            self._start(pair)
        if f.fin and kind == "data" and pair.fwd is not None:
            self.to_pod(pair.fwd, b"", fin=True)

    def _start(self, pair: _Pair) -> None:
        fwd, error = self.open(pair.port)
        if fwd is None:
            self._pair_error(pair, error)
            return
        pair.fwd = fwd
        fwd.owner = pair

    def _data(self, f: spdy.Data) -> None:
        pair = self.streams.get(f.stream_id)
        if pair is None or pair.done or f.stream_id != pair.data_id or pair.fwd is None:
            return  # the error stream's FIN, or data for a stream already over
        self.to_pod(pair.fwd, f.data, f.fin)

    def _rst(self, stream_id: int) -> None:
        pair = self.streams.get(stream_id)
        if pair is None:
            return
        pair.reset.add(stream_id)
        if stream_id == pair.data_id:  # kubectl resets the data stream when it is done with the connection
            self._end(pair)

    # -- frames to the client --

    def _send(self, pair: _Pair, stream_id: int, data: bytes, fin: bool) -> None:
        if stream_id and stream_id not in pair.reset and stream_id not in pair.fin_sent:
            self.pipe.write(self.framer.data(stream_id, data, fin))
            if fin:
                pair.fin_sent.add(stream_id)

    def _pair_error(self, pair: _Pair, message: str) -> None:
        """The kubelet's ``printError``: the text on the error stream, then the pair is over."""
        self._send(pair, pair.error_id, message.encode(), fin=False)
        self._end(pair)

    def _end(self, pair: _Pair) -> None:
        """Close the pod side and half-close both streams: kubectl reads the error stream to its end."""
        if pair.fwd is not None:
            self.close_forward(pair.fwd)
        pair.done = True
        self._send(pair, pair.data_id, b"", fin=True)
        self._send(pair, pair.error_id, b"", fin=True)
        self.pairs.pop(pair.request_id, None)
        for sid in (pair.error_id, pair.data_id):  # later frames on them (the client's RST) are ignored
            self.streams.pop(sid, None)

    def from_pod(self, fwd: _Forward, data: bytes, eof: bool) -> None:
        pair = fwd.owner
        if not isinstance(pair, _Pair):
            return
        self._send(pair, pair.data_id, data, fin=eof)
        if fwd.over():
            self._end(pair)

    def tick(self) -> float | None:
        now = time.monotonic()
        waits = []
        for pair in list(self.pairs.values()):
            if pair.fwd is not None:
                if pair.fwd.over():
                    self._end(pair)
                elif pair.fwd.linger_until:
                    waits.append(pair.fwd.linger_until - now)
            elif not (pair.error_id and pair.data_id):
                if now - pair.created >= STREAM_CREATION_TIMEOUT:
                    self._pair_error(pair, f"(conn={id(self):x}, request={pair.request_id}) timed out waiting for "
                                           "streams")
                else:
                    waits.append(pair.created + STREAM_CREATION_TIMEOUT - now)
        return max(0.0, min(waits)) if waits else None

    def teardown(self) -> None:
        if not self.pipe.closed:
            self.pipe.close()
        super().teardown()
