"""The numbered channels of a remotecommand session, over a WebSocket or over SPDY streams.

An exec or attach session only knows channels — 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize, and 255 CLOSE
(``[255, n]``: the client will send no more on n). A transport carries them:

- `WsChannels`: one WebSocket message per piece, the channel byte first (apimachinery ``wsstream/conn.go``); the
  base64 subprotocols write ``'0'+n`` and base64 in text messages. `Channels` is that codec, which the Python
  client's port-forward channels use too.
- `SpdyChannels`: one SPDY stream per channel, named by its ``streamtype`` header (error, stdin, stdout, stderr,
  resize), as client-go's SPDY executor opens them (``tools/remotecommand/v2.go``, ``v3.go``); the client's FIN
  on stdin is its CLOSE. Served for kubectl with ``KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`` and kubectl < 1.30.
"""

from __future__ import annotations

import base64
import binascii
import json
import selectors
import time
from typing import Any

from wsproto.events import BytesMessage, TextMessage

from . import spdy
from ._io import Client, WebSocket

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

MAX_CONTROL = 1 << 16  # bytes of a CLOSE message before it is malformed
MAX_BASE64 = 1 << 24  # bytes of one base64 message (decoded whole)
STREAM_CREATION_TIMEOUT = 30.0  # the kubelet's wait for the client's SPDY streams


def status_bytes(status: dict[str, Any], protocol: str) -> bytes:
    """What goes on the status channel: the JSON Status (v4, v5), or before v4 the bare message, only on failure."""
    if protocol in (V4, V4_BASE64, V5):
        return json.dumps(status, separators=(",", ":")).encode()
    return b"" if status.get("status") == "Success" else str(status.get("message", "")).encode()


class Channels:
    """The WebSocket channel codec: (channel, bytes) into a message; incoming messages (which wsproto may hand over
    in pieces) into (channel, bytes) pieces. CLOSE and base64 messages come out whole."""

    def __init__(self, protocol: str) -> None:
        self.base64 = "base64" in protocol
        self.close_signal = protocol == V5
        self._channel: int | None = None  # channel of the message in progress, None between messages
        self._whole = bytearray()  # a message kept until its end (CLOSE, base64)

    def encode(self, channel: int, data: bytes) -> BytesMessage | TextMessage:
        if self.base64:
            return TextMessage(data=chr(ord("0") + channel) + base64.b64encode(data).decode())
        return BytesMessage(data=bytes([channel]) + data)

    def decode(self, event: BytesMessage | TextMessage) -> list[tuple[int, bytes]]:
        if isinstance(event, TextMessage):
            text = event.data
            if self._channel is None and not self.base64 and text:
                self._channel, text = ord(text[0]), text[1:]  # the Python client: chr(channel) + str
            data = text.encode("utf-8")
        else:
            data = bytes(event.data)
        out: list[tuple[int, bytes]] = []
        if self._channel is None:
            if not data:
                return out  # an empty message (ignored, as upstream does) or an empty first piece
            self._channel = data[0] - ord("0") if self.base64 else data[0]
            data = data[1:]
        whole = self.base64 or (self._channel == CLOSE and self.close_signal)
        if whole:
            if len(self._whole) + len(data) <= (MAX_BASE64 if self.base64 else MAX_CONTROL):
                self._whole += data
        elif data:
            out.append((self._channel, data))
        if event.message_finished:
            if whole:
                payload = bytes(self._whole)
                if self.base64:
                    try:
                        payload = base64.b64decode(payload)
                    except (binascii.Error, ValueError):
                        payload = b""
                out.append((self._channel, payload))
                self._whole.clear()
            self._channel = None
        return out


class WsChannels:
    """Channels over a WebSocket (``v5.channel.k8s.io`` and the older subprotocols)."""

    def __init__(self, ws: WebSocket, protocol: str) -> None:
        self.ws = ws
        self.client = ws.client
        self.protocol = protocol
        self.codec = Channels(protocol)
        self.close_signal = self.codec.close_signal

    @property
    def closed(self) -> bool:
        return self.ws.closed or self.client.eof

    def open(self, wanted: set[int], timeout: float) -> bool:
        return True  # every channel exists once the socket is open

    def receive(self) -> list[tuple[int, bytes]]:
        return [piece for event in self.ws.events() for piece in self.codec.decode(event)]

    def send(self, channel: int, data: bytes) -> None:
        self.ws.send(self.codec.encode(channel, data))

    def finish(self, status: dict[str, Any]) -> None:
        data = status_bytes(status, self.protocol)
        if data:
            self.send(ERROR, data)
        self.ws.close(1000)


_STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR, "resize": RESIZE}


class SpdyChannels:
    """Channels as SPDY streams after a plain ``Upgrade: SPDY/3.1`` (``v5``/``v4.channel.k8s.io``)."""

    def __init__(self, client: Client, protocol: str) -> None:
        self.client = client
        self.protocol = protocol
        self.close_signal = True  # a FIN on stdin means what v5's CLOSE means
        self.framer = spdy.Framer()
        self.ids: dict[int, int] = {}  # channel -> stream id
        self.channel_of: dict[int, int] = {}  # stream id -> channel
        self.pending: list[tuple[int, bytes]] = []
        self.last_stream_id = 0
        self.gone = False
        self.fin_sent: set[int] = set()

    @property
    def closed(self) -> bool:
        return self.gone or self.client.eof

    def open(self, wanted: set[int], timeout: float = STREAM_CREATION_TIMEOUT) -> bool:
        """Wait until the client has opened the streams for ``wanted`` channels (client-go opens all of them before
        it sends anything); False if it went away or took longer than the kubelet waits."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.client.sock, selectors.EVENT_READ)
            while True:
                self.pending += self._frames()  # non-blocking: also what was read with the request head
                if wanted <= set(self.ids) or self.closed:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.client.flush()
                sel.select(left)
        return not self.closed

    def receive(self) -> list[tuple[int, bytes]]:
        out, self.pending = self.pending + self._frames(), []
        return out

    def _frames(self) -> list[tuple[int, bytes]]:
        data = self.client.recv()
        out: list[tuple[int, bytes]] = []
        if not data:
            return out
        try:
            frames = self.framer.feed(data)
        except spdy.ProtocolError:
            self.client.send(self.framer.goaway(self.last_stream_id, spdy.GOAWAY_PROTOCOL_ERROR))
            self.gone = True
            return out
        for f in frames:
            if isinstance(f, spdy.SynStream):
                self.last_stream_id = max(self.last_stream_id, f.stream_id)
                channel = _STREAM_TYPES.get(f.header("streamtype"))
                if channel is None or channel in self.ids:  # apimachinery refuses what the handler refuses
                    self.client.send(self.framer.rst_stream(f.stream_id, spdy.CANCEL))
                    continue
                self.client.send(self.framer.syn_reply(f.stream_id))
                self.ids[channel], self.channel_of[f.stream_id] = f.stream_id, channel
            elif isinstance(f, spdy.Data):
                channel = self.channel_of.get(f.stream_id)
                if channel in (STDIN, RESIZE) and f.data:
                    out.append((channel, f.data))
                if channel == STDIN and f.fin:
                    out.append((CLOSE, bytes([STDIN])))
            elif isinstance(f, spdy.RstStream):
                if self.channel_of.get(f.stream_id) == STDIN:
                    out.append((CLOSE, bytes([STDIN])))
                self.fin_sent.add(f.stream_id)  # nothing more may be sent on it
            elif isinstance(f, spdy.Ping) and f.id % 2:
                self.client.send(self.framer.ping(f.id))
            elif isinstance(f, spdy.GoAway):
                self.gone = True
        return out

    def send(self, channel: int, data: bytes, fin: bool = False) -> None:
        sid = self.ids.get(channel)
        if sid is not None and sid not in self.fin_sent and (data or fin):
            self.client.send(self.framer.data(sid, data, fin))
            if fin:
                self.fin_sent.add(sid)

    def finish(self, status: dict[str, Any]) -> None:
        """The status on the error stream, then every stream half-closed and GOAWAY, as the kubelet's
        ``conn.Close()`` does: client-go waits for stdout/stderr to end, then reads the error stream to its end."""
        data = status_bytes(status, self.protocol)
        if data:
            self.send(ERROR, data)
        for channel in (STDOUT, STDERR, ERROR, STDIN):
            self.send(channel, b"", fin=True)
        self.client.send(self.framer.goaway(self.last_stream_id))
        self.client.drain(30.0)
        self.client.linger(2.0)  # client-go closes the connection once it has read the status
