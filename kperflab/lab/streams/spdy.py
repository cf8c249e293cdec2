"""The SPDY/3.1 framing that kubectl's port-forward speaks, sans-IO: bytes in, frames out, and frames to bytes.

Only what Kubernetes' streams use (moby/spdystream, the client in client-go): SYN_STREAM, SYN_REPLY, DATA with
FIN, RST_STREAM, PING, GOAWAY; SETTINGS, WINDOW_UPDATE and HEADERS are parsed and may be ignored (spdystream has no
flow control). There is no maintained Python library for SPDY, hence this module (chromium.org "SPDY Protocol -
Draft 3.1"; spdystream ``spdy/read.go``, ``spdy/write.go``):

- every frame has an 8-byte header. Control: bit 31 set, version (15 bits, 3), type (16), flags (8), length (24).
  Data: bit 31 clear, stream id (31), flags (8, FIN = 1), length (24);
- a header block is ``uint32 count`` then ``uint32``-length-prefixed name/value pairs (names lower-case, several
  values joined by NUL), compressed with zlib and the SPDY/3 dictionary, **one compression context per direction
  for the whole connection**, sync-flushed after each block. A fresh context per frame breaks the peer's inflater.

One `Framer` is one end of one connection: it inflates what the peer sends and deflates what this end sends.

>>> server, client = Framer(), Framer()
>>> frames = server.feed(client.syn_stream(1, {"streamtype": "data", "port": "80"}))
>>> frames[0].stream_id, frames[0].header("port")
(1, '80')
>>> [(f.stream_id, f.fin, f.data) for f in client.feed(server.data(1, b"hi", fin=True))]
[(1, True, b'hi')]
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, NOOP, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 5, 6, 7, 8, 9
FLAG_FIN = 0x01

# RST_STREAM status codes (draft 3.1, section 2.6.3)
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6
STREAM_IN_USE, STREAM_ALREADY_CLOSED = 8, 9
# GOAWAY status codes
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, GOAWAY_INTERNAL_ERROR = 0, 1, 2

MAX_FRAME = 0xFFFFFF  # the 24-bit length field
MAX_HEADER_BLOCK = 1 << 20  # inflated header bytes one frame may carry: a bound against zlib bombs

# The SPDY/3 header compression dictionary (draft 3.1, section 2.6.10.1; spdystream spdy/dictionary.go): 65
# uint32-length-prefixed words, then a run of status lines, dates, MIME types and tokens. It is a fact of the wire
# format; tests check its bytes against the spec's SHA-256.
_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age "
    "allow authorization cache-control connection content-base content-encoding content-language content-length "
    "content-location content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()
DICTIONARY_SHA256 = "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


class ProtocolError(Exception):
    """The peer sent bytes that are not SPDY/3.1 as this module reads it; the connection cannot go on."""


Headers = dict[str, list[str]]


@dataclass
class SynStream:
    stream_id: int
    associated_id: int = 0
    priority: int = 0
    flags: int = 0
    headers: Headers = field(default_factory=dict)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)

    def header(self, name: str) -> str:
        """The first value of a header, "" when absent (Go's ``http.Header.Get``)."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""


@dataclass
class SynReply:
    stream_id: int
    flags: int = 0
    headers: Headers = field(default_factory=dict)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass
class Data:
    stream_id: int
    flags: int
    data: bytes

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass
class RstStream:
    stream_id: int
    status: int


@dataclass
class Ping:
    id: int


@dataclass
class GoAway:
    last_good_stream_id: int
    status: int


@dataclass
class Other:
    """A control frame this module does not act on (SETTINGS, WINDOW_UPDATE, HEADERS, NOOP, unknown types)."""

    type: int
    flags: int
    payload: bytes


Frame = SynStream | SynReply | Data | RstStream | Ping | GoAway | Other


def _pack_headers(headers: dict[str, str] | Headers) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        n = name.lower().encode()
        v = (value if isinstance(value, str) else "\0".join(value)).encode()
        out += [struct.pack(">I", len(n)), n, struct.pack(">I", len(v)), v]
    return b"".join(out)


def _unpack_headers(raw: bytes) -> Headers:
    pos = 0

    def take() -> bytes:
        nonlocal pos
        (n,) = struct.unpack_from(">I", raw, pos)
        if pos + 4 + n > len(raw):
            raise ProtocolError("header block shorter than its lengths")
        pos += 4 + n
        return raw[pos - n:pos]

    out: Headers = {}
    try:
        (count,) = struct.unpack_from(">I", raw, 0)
        pos = 4
        for _ in range(count):
            name, value = take().decode("latin-1").lower(), take().decode("latin-1")
            out.setdefault(name, []).extend(value.split("\0"))
    except struct.error as e:
        raise ProtocolError(f"malformed header block: {e}") from None
    return out


class Framer:
    """One end of a SPDY/3.1 connection: `feed` parses the peer's bytes, the other methods encode this end's frames.

    Not thread-safe: the deflate context is shared by every frame this end sends, so frames must be encoded in the
    order they are written to the wire.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                         zdict=DICTIONARY)

    # -- reading ---------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Frame]:
        """Every frame that ``data`` completes (a frame may span several calls); raises `ProtocolError`."""
        self._buf += data
        frames: list[Frame] = []
        buf, pos = self._buf, 0
        while len(buf) - pos >= 8:
            first, second = struct.unpack_from(">II", buf, pos)
            length = second & 0xFFFFFF
            if len(buf) - pos < 8 + length:
                break
            flags = second >> 24
            payload = bytes(buf[pos + 8:pos + 8 + length])
            pos += 8 + length
            if first & 0x80000000:
                version, ftype = (first >> 16) & 0x7FFF, first & 0xFFFF
                if version != VERSION:
                    raise ProtocolError(f"unsupported SPDY version {version}")
                frames.append(self._control(ftype, flags, payload))
            else:
                frames.append(Data(first & 0x7FFFFFFF, flags, payload))
        del buf[:pos]
        return frames

    def _headers(self, block: bytes) -> Headers:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"header block does not inflate: {e}") from None
        if self._inflate.unconsumed_tail:
            raise ProtocolError("header block too large")
        return _unpack_headers(raw)

    def _control(self, ftype: int, flags: int, p: bytes) -> Frame:
        try:
            if ftype == SYN_STREAM:
                sid, assoc = struct.unpack_from(">II", p, 0)
                return SynStream(sid & 0x7FFFFFFF, assoc & 0x7FFFFFFF, p[8] >> 5, flags, self._headers(p[10:]))
            if ftype == SYN_REPLY:
                (sid,) = struct.unpack_from(">I", p, 0)
                return SynReply(sid & 0x7FFFFFFF, flags, self._headers(p[4:]))
            if ftype == RST_STREAM:
                sid, status = struct.unpack_from(">II", p, 0)
                return RstStream(sid & 0x7FFFFFFF, status)
            if ftype == PING:
                return Ping(struct.unpack_from(">I", p, 0)[0])
            if ftype == GOAWAY:
                last, status = struct.unpack_from(">II", p, 0)
                return GoAway(last & 0x7FFFFFFF, status)
            if ftype == HEADERS:
                self._headers(p[4:])  # keep the shared inflate context in step even though HEADERS is ignored
        except (struct.error, IndexError):
            raise ProtocolError(f"control frame type {ftype} too short ({len(p)} bytes)") from None
        return Other(ftype, flags, p)

    # -- writing ---------------------------------------------------------------------------------

    @staticmethod
    def _control_frame(ftype: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload

    def _block(self, headers: dict[str, str] | Headers) -> bytes:
        return self._deflate.compress(_pack_headers(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_stream(self, stream_id: int, headers: dict[str, str] | Headers, fin: bool = False,
                   priority: int = 0) -> bytes:
        """A SYN_STREAM (clients open odd ids); used by tests that play the client."""
        head = struct.pack(">IIBB", stream_id, 0, (priority & 7) << 5, 0)
        return self._control_frame(SYN_STREAM, FLAG_FIN if fin else 0, head + self._block(headers))

    def syn_reply(self, stream_id: int, headers: dict[str, str] | Headers | None = None, fin: bool = False) -> bytes:
        """Accept a stream the peer opened (the kubelet replies with no headers)."""
        return self._control_frame(SYN_REPLY, FLAG_FIN if fin else 0,
                                   struct.pack(">I", stream_id) + self._block(headers or {}))

    @staticmethod
    def data(stream_id: int, data: bytes = b"", fin: bool = False) -> bytes:
        """DATA frames for ``data`` (split at the 24-bit length limit); ``fin`` half-closes the stream after it."""
        out, view = [], memoryview(data)
        while True:
            chunk, view = view[:MAX_FRAME], view[MAX_FRAME:]
            last = not len(view)
            out.append(struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin and last else 0) << 24)
                                   | len(chunk)) + bytes(chunk))
            if last:
                return b"".join(out)

    @classmethod
    def rst_stream(cls, stream_id: int, status: int = CANCEL) -> bytes:
        return cls._control_frame(RST_STREAM, 0, struct.pack(">II", stream_id & 0x7FFFFFFF, status))

    @classmethod
    def ping(cls, ping_id: int) -> bytes:
        return cls._control_frame(PING, 0, struct.pack(">I", ping_id))

    @classmethod
    def goaway(cls, last_good_stream_id: int, status: int = GOAWAY_OK) -> bytes:
        return cls._control_frame(GOAWAY, 0, struct.pack(">II", last_good_stream_id & 0x7FFFFFFF, status))
