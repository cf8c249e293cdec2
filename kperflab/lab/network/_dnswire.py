"""DNS wire format for the cluster DNS's hot path: read a query, write a reply (RFC 1035 §4, RFC 6891 for OPT).

dnspython reads and writes any message, but at ~60 µs to read a query and ~120 µs to write a one-record reply it
would make the lab's DNS server (which shares one Python process with the API server and the kubelet) cost more
than the lookups it serves. This module handles the shapes a stub resolver sends — one question, optionally an OPT
record — and writes the handful of record types the kubernetes plugin answers with; anything else is handed back
to dnspython (:func:`parse_query` returns None), and the tests read every reply with dnspython.

Rules followed: the question is echoed as received (case kept); names are compressed except SRV targets
(RFC 2782); a UDP reply that does not fit drops whole records from the end, sections in order, and sets TC when it
dropped any (miekg/dns `Msg.Truncate`, used by CoreDNS's ScrubWriter); the reply OPT echoes the client's UDP size
and DO bit with version 0 and no options (CoreDNS `request.SizeAndDo`); RD and CD are copied (miekg `SetReply`).
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import dns.message

Labels = tuple[bytes, ...]
RR = tuple[Labels, int, int, tuple[Any, ...]]  # (owner, type, ttl, rdata spec)

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_TXT, TYPE_AAAA, TYPE_SRV, TYPE_OPT = 1, 2, 5, 6, 12, 16, 28, 33, 41
RAW, NAME, SRV, SOA = 0, 1, 2, 3  # rdata spec kinds


class FormErr(Exception):
    """The query cannot be read: FORMERR."""


class Query(NamedTuple):
    id: int
    flags: int
    labels: Labels  # as received, without the root
    qtype: int
    qclass: int
    edns: int  # -1 without OPT, else its version
    payload: int  # the client's UDP size from OPT (0 without)
    do: bool


def read_name(wire: bytes, off: int) -> tuple[Labels, int]:
    """(labels, offset after the name); compression pointers must point backwards; 255 bytes at most.

    >>> read_name(b"\\x03www\\x07example\\x00\\x03foo\\xc0\\x04", 13)
    ((b'foo', b'example'), 19)
    """
    labels: list[bytes] = []
    end = -1
    total = 1
    n_wire = len(wire)
    while True:
        if off >= n_wire:
            raise FormErr("name runs past the end")
        n = wire[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0 == 0xC0:
            if off + 1 >= n_wire:
                raise FormErr("truncated pointer")
            ptr = ((n & 0x3F) << 8) | wire[off + 1]
            if ptr >= off:
                raise FormErr("pointer does not point backwards")
            if end < 0:
                end = off + 2
            off = ptr
            continue
        if n & 0xC0:
            raise FormErr("unknown label type")
        label = wire[off + 1:off + 1 + n]
        if len(label) < n:
            raise FormErr("label runs past the end")
        total += n + 1
        if total > 255:
            raise FormErr("name longer than 255 bytes")
        labels.append(label)
        off += 1 + n
    return tuple(labels), (end if end >= 0 else off)


def parse_query(wire: bytes) -> Query | None:
    """A query with one question and at most an OPT in additional; None when it has other records (for dnspython
    to judge); raises FormErr when it cannot be read. The header checks (QR, opcode, counts) come first, elsewhere.

    >>> q = dns.message.make_query("Web.default.svc.cluster.local", "A", use_edns=0, payload=1232, want_dnssec=True)
    >>> p = parse_query(q.to_wire()); p.labels[0], p.qtype, p.edns, p.payload, p.do
    (b'Web', 1, 0, 1232, True)
    """
    qid, flags, _qd, an, ns, ar = struct.unpack_from("!HHHHHH", wire)
    labels, off = read_name(wire, 12)
    if off + 4 > len(wire):
        raise FormErr("question runs past the end")
    qtype, qclass = struct.unpack_from("!HH", wire, off)
    off += 4
    if an or ns:
        return None
    edns, payload, do = -1, 0, False
    for _ in range(ar):
        owner, off = read_name(wire, off)
        if off + 10 > len(wire):
            raise FormErr("record runs past the end")
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", wire, off)
        off += 10
        end = off + rdlen
        if end > len(wire):
            raise FormErr("rdata runs past the end")
        if rtype != TYPE_OPT or owner or edns >= 0:
            return None  # TSIG, SIG(0), a second OPT...
        p = off
        while p < end:  # EDNS options: (code, length, data)*
            if p + 4 > end:
                raise FormErr("truncated EDNS option")
            p += 4 + struct.unpack_from("!H", wire, p + 2)[0]
            if p > end:
                raise FormErr("EDNS option runs past its record")
        edns, payload, do = (ttl >> 16) & 0xFF, rclass, bool(ttl & 0x8000)
        off = end
    if off != len(wire):
        raise FormErr("trailing bytes")
    return Query(qid, flags, labels, qtype, qclass, edns, payload, do)


def query_from_message(msg: dns.message.Message) -> Query:
    """The same fields from a message dnspython has read."""
    q = msg.question[0]
    return Query(msg.id, msg.flags, tuple(q.name.labels[:-1]), int(q.rdtype), int(q.rdclass), msg.edns,
                 msg.payload if msg.edns >= 0 else 0, bool(msg.ednsflags & 0x8000))


def header_reply(wire: bytes, rcode: int) -> bytes:
    """A reply with the header only (miekg/dns SetRcode on a request whose sections were not read): id, QR, opcode,
    RD/CD for QUERY, the rcode, all counts zero."""
    qid, flags = struct.unpack_from("!HH", wire)
    opcode = (flags >> 11) & 0xF
    out = 0x8000 | (opcode << 11) | (rcode & 0xF)
    if opcode == 0:
        out |= flags & 0x0110  # RD, CD
    return struct.pack("!HHHHHH", qid, out, 0, 0, 0, 0)


@functools.lru_cache(maxsize=65536)
def labels_of(text: str) -> Labels:
    """Labels of a name written as text (no escapes: Kubernetes names are plain).

    >>> labels_of("web.default.svc.cluster.local.")
    (b'web', b'default', b'svc', b'cluster', b'local')
    """
    text = text.rstrip(".")
    return tuple(part.encode("ascii") for part in text.split(".")) if text else ()


@functools.lru_cache(maxsize=65536)
def address(host: str) -> tuple[int, bytes]:
    """(A or AAAA, packed address) for an IP, (CNAME, b"") for anything else (CoreDNS msg.Service.HostType)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return TYPE_CNAME, b""
    return (TYPE_A, ip.packed) if ip.version == 4 else (TYPE_AAAA, ip.packed)


_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*")


def name_text(labels: Labels) -> str:
    """Presentation form with a trailing dot (dnspython's escaping for anything unusual).

    >>> name_text((b"api", b"example", b"com")), name_text((b"a b",))
    ('api.example.com.', 'a\\\\032b.')
    """
    if all(_PLAIN.issuperset(lab) for lab in labels):
        return ".".join(lab.decode("ascii") for lab in labels) + "."
    return dns.name.Name((*labels, b"")).to_text()


class _Writer:
    __slots__ = ("buf", "names", "added")

    def __init__(self) -> None:
        self.buf = bytearray(12)
        self.names: dict[Labels, int] = {}
        self.added: list[Labels] = []

    def name(self, labels: Labels, compress: bool = True) -> None:
        buf = self.buf
        for i in range(len(labels)):
            suffix = labels[i:]
            if compress:
                off = self.names.get(suffix)
                if off is not None:
                    buf += struct.pack("!H", 0xC000 | off)
                    return
            if len(buf) < 0x3FFF and suffix not in self.names:
                self.names[suffix] = len(buf)
                self.added.append(suffix)
            label = labels[i]
            buf.append(len(label))
            buf += label
        buf.append(0)

    def rr(self, owner: Labels, rtype: int, ttl: int, rdata: tuple[Any, ...]) -> None:
        self.name(owner)
        buf = self.buf
        buf += struct.pack("!HHIH", rtype, 1, ttl, 0)
        start = len(buf)
        kind = rdata[0]
        if kind == RAW:
            buf += rdata[1]
        elif kind == NAME:
            self.name(rdata[1])
        elif kind == SRV:
            buf += struct.pack("!HHH", rdata[1], rdata[2], rdata[3])
            self.name(rdata[4], compress=False)
        else:  # SOA
            self.name(rdata[1])
            self.name(rdata[2])
            buf += struct.pack("!IIIII", *rdata[3:8])
        struct.pack_into("!H", buf, start - 2, len(buf) - start)

    def rollback(self, size: int, added: int) -> None:
        del self.buf[size:]
        for suffix in self.added[added:]:
            del self.names[suffix]
        del self.added[added:]


def encode_reply(q: Query, rcode: int, answer: Sequence[RR] = (), authority: Sequence[RR] = (),
                 additional: Sequence[RR] = (), *, tcp: bool = False, aa: bool = False, question: bool = True) -> bytes:
    """The reply to ``q``, fitted to the client's buffer over UDP.

    >>> q = parse_query(dns.message.make_query("web.default.svc.cluster.local", "A").to_wire())
    >>> r = dns.message.from_wire(encode_reply(q, 0, [(q.labels, TYPE_A, 30, (RAW, bytes([10, 96, 0, 20])))], aa=True))
    >>> print(r.answer[0]); dns.flags.to_text(r.flags)
    web.default.svc.cluster.local. 30 IN A 10.96.0.20
    'QR AA RD'
    """
    limit = 65535 if tcp else (max(512, q.payload) if q.edns >= 0 else 512)
    reserve = 11 if q.edns >= 0 else 0
    w = _Writer()
    if question:
        w.name(q.labels)
        w.buf += struct.pack("!HH", q.qtype, q.qclass)
    counts = [0, 0, 0]
    truncated = False
    for i, section in enumerate((answer, authority, additional)):
        for rr in section:
            size, added = len(w.buf), len(w.added)
            w.rr(*rr)
            if len(w.buf) + reserve > limit:
                w.rollback(size, added)
                truncated = True
                break
            counts[i] += 1
        if truncated:
            break
    arcount = counts[2]
    if q.edns >= 0:
        w.buf += b"\x00" + struct.pack("!HHIH", TYPE_OPT, q.payload, ((rcode >> 4) << 24) | (0x8000 if q.do else 0), 0)
        arcount += 1
    flags = 0x8000 | (q.flags & 0x0110) | (rcode & 0xF)
    if aa:
        flags |= 0x0400
    if truncated:
        flags |= 0x0200
    struct.pack_into("!HHHHHH", w.buf, 0, q.id, flags, 1 if question else 0, counts[0], counts[1], arcount)
    return bytes(w.buf)


def reply_summary(wire: bytes) -> tuple[int, int, Labels | None, int]:
    """(id, rcode, question labels or None, question type) of a reply, for checking an upstream's answer.

    >>> q = dns.message.make_query("pypi.org", "A"); r = dns.message.make_response(q); r.set_rcode(3)
    >>> reply_summary(r.to_wire())[1:]
    (3, (b'pypi', b'org'), 1)
    """
    if len(wire) < 12:
        raise FormErr("short reply")
    qid, flags, qd = struct.unpack_from("!HHH", wire)
    if not qd:
        return qid, flags & 0xF, None, 0
    labels, off = read_name(wire, 12)
    if off + 4 > len(wire):
        raise FormErr("question runs past the end")
    return qid, flags & 0xF, labels, struct.unpack_from("!H", wire, off)[0]


def rdata_of(rd: Any) -> tuple[Any, ...]:
    """A dnspython rdata as a RAW spec (its uncompressed wire form), for records copied from an upstream answer."""
    return RAW, rd.to_wire()
