"""The I/O under every streaming session: one thread, one selector, non-blocking ends, bounded queues.

A session runs in the HTTP thread that upgraded the connection. Every end it moves bytes between (the client's TLS
socket, a process's pipes or pty, sockets dialled into a pod) is non-blocking and watched by one selector, so no
other thread ever touches the TLS socket: OpenSSL does not allow one SSL object to read in one thread while another
writes. Other threads (the one waiting for a process to exit) only wake the loop through a pipe.

Backpressure is by watermarks: a session stops reading an end while more than `HIGH_WATER` bytes wait to be
written to where that end's bytes go, as io.Copy would block upstream.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

from wsproto import ConnectionState, WSConnection
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage

HIGH_WATER = 1 << 20  # bytes queued towards one end before the session stops reading the ends that feed it
CHUNK = 1 << 15  # bytes read from a pipe or socket at a time: one message or DATA frame each
_SEND_SLICE = 1 << 14  # one TLS record: a retried SSL write then always repeats at least the same bytes

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Wakeup:
    """A pipe that another thread writes a byte into to wake the loop; safe to `set` after `close` (no-op)."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._closed = False

    def set(self) -> None:
        with self._lock:  # never write to a number that close() gave back to the kernel for reuse
            if not self._closed:
                try:
                    os.write(self.w, b"!")
                except BlockingIOError:
                    pass

    def clear(self) -> None:
        try:
            while os.read(self.r, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.r)
                os.close(self.w)


def take_buffered(rfile: object) -> bytes:
    """Bytes the HTTP server's buffered reader already pulled off the socket past the request head.

    Clients send nothing after an upgrade request until they read the 101, so this is normally empty; called after
    the socket is non-blocking, so it never waits.
    """
    read1 = getattr(rfile, "read1", None)
    if read1 is None:
        return b""
    try:
        return read1(1 << 16) or b""
    except (*_WOULD_BLOCK, OSError, ValueError):
        return b""


class Client:
    """The client's end of the upgraded connection (TLS or plain TCP): non-blocking, with an output queue."""

    def __init__(self, sock: socket.socket, buffered: object = None) -> None:
        self.sock = sock
        self._timeout = sock.gettimeout()
        sock.setblocking(False)
        self._early = take_buffered(buffered) if buffered is not None else b""
        self.out = bytearray()
        self.eof = False  # the client is gone (EOF, reset, TLS error): nothing more is read or written

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def has_early(self) -> bool:
        """Bytes already taken off the socket wait in `recv`: a selector would not say the socket is readable."""
        return bool(self._early)

    def recv(self) -> bytes:
        """Everything readable now (b"" if nothing); sets `eof` when the client has gone."""
        chunks = [self._early] if self._early else []
        self._early = b""
        while not self.eof:
            try:
                data = self.sock.recv(1 << 16)
            except _WOULD_BLOCK:
                break
            except OSError:
                data = b""
            if not data:
                self.eof = True
                break
            chunks.append(data)
        return b"".join(chunks)

    def send(self, data: bytes) -> None:
        if data and not self.eof:
            self.out += data
            self.flush()

    def flush(self) -> None:
        while self.out and not self.eof:
            try:
                n = self.sock.send(self.out[:_SEND_SLICE])
            except _WOULD_BLOCK:
                return
            except OSError:
                self.eof = True
                self.out.clear()
                return
            del self.out[:n]

    def drain(self, idle: float) -> None:
        """Block until the output queue is written, the client goes, or it has taken nothing for ``idle`` seconds
        (a slow client still gets everything; a stuck one does not hold the session forever)."""
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_WRITE)
            while self.out and not self.eof:
                if not sel.select(idle):
                    return
                self.flush()

    def linger(self, timeout: float) -> None:
        """Read and drop what the client still sends until it closes (or ``timeout``): closing a socket with unread
        bytes makes the kernel send a reset, which can destroy what the client has not read yet."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            while not self.eof and time.monotonic() < deadline:
                self.flush()
                sel.select(max(0.0, deadline - time.monotonic()))
                self.recv()

    def restore(self) -> None:
        """Back to the blocking mode the HTTP server expects when it closes the connection."""
        try:
            self.sock.settimeout(self._timeout)
        except OSError:
            pass


class Loop:
    """A selector over the session's ends, re-armed each round from what the session wants to do."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self._want: dict[int, tuple[int, Callable[[int, int], None]]] = {}
        self.kick: set[int] = set()  # fds to treat as readable on the next poll (data already buffered)
        self.wakeup = Wakeup()
        self.want(self.wakeup.r, selectors.EVENT_READ, self._woken)

    def want(self, fd: int, events: int, callback: Callable[[int, int], None]) -> None:
        """Watch ``fd`` for ``events`` (0 = stop watching), calling ``callback(fd, mask)`` when ready."""
        current = self._want.get(fd)
        if current == (events, callback):
            return
        if not events:
            if current:
                self.sel.unregister(fd)
                del self._want[fd]
            return
        if current:
            self.sel.modify(fd, events, callback)
        else:
            self.sel.register(fd, events, callback)
        self._want[fd] = (events, callback)

    def _woken(self, fd: int, mask: int) -> None:
        self.wakeup.clear()

    def forget(self, fd: int) -> None:
        """Stop watching ``fd`` (call before closing it: a closed number can come back as another file)."""
        if fd in self._want:
            self.sel.unregister(fd)
            del self._want[fd]

    def poll(self, timeout: float | None) -> None:
        kicked = {fd: selectors.EVENT_READ for fd in self.kick if self._want.get(fd, (0,))[0] & selectors.EVENT_READ}
        self.kick -= set(kicked)
        ready = {key.fd: mask for key, mask in self.sel.select(0 if kicked else timeout)}
        for fd in kicked:
            ready[fd] = ready.get(fd, 0) | selectors.EVENT_READ
        for fd, mask in ready.items():
            if fd in self._want:  # an earlier callback this round may have dropped it
                self._want[fd][1](fd, mask)

    def close(self) -> None:
        self.sel.close()
        self._want.clear()
        self.wakeup.close()


def read_fd(fd: int) -> bytes | None:
    """Read what a pipe, pty or socket has (b"" = nothing now, None = end of file; a pty whose other side closed
    answers EIO, which is its end of file)."""
    try:
        data = os.read(fd, CHUNK)
    except _WOULD_BLOCK:
        return b""
    except OSError as e:
        if e.errno in (errno.EIO, errno.ECONNRESET, errno.EPIPE, errno.EBADF, errno.ENOTCONN):
            return None
        raise
    return data or None


def write_fd(fd: int, buf: bytearray) -> bool:
    """Write what ``buf`` holds (removing what was written); False when the reader has gone (EPIPE and the like)."""
    while buf:
        try:
            n = os.write(fd, buf[:CHUNK])
        except _WOULD_BLOCK:
            return True
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EIO, errno.ECONNRESET, errno.EBADF, errno.ENOTCONN):
                buf.clear()
                return False
            raise
        del buf[:n]
    return True


def set_nonblocking(fd: int) -> None:
    os.set_blocking(fd, False)


class WebSocket:
    """A server WebSocket over a `Client`: wsproto frames and parses, pings get pongs, close handshakes are
    answered; `events` hands the session only data messages (possibly partial: see wsproto's ``message_finished``).
    """

    def __init__(self, client: Client, conn: WSConnection) -> None:
        self.client = client
        self.conn = conn
        self.closed = False  # the peer closed, or the connection failed: no more messages either way
        self.close_code: int | None = None

    def send(self, event: Event) -> None:
        if not self.closed and self.conn.state is ConnectionState.OPEN:
            self.client.send(self.conn.send(event))

    def send_bytes(self, data: bytes) -> None:
        self.send(BytesMessage(data=data))

    def send_text(self, text: str) -> None:
        self.send(TextMessage(data=text))

    def events(self) -> Iterator[BytesMessage | TextMessage]:
        data = self.client.recv()
        if data and self.conn.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            self.conn.receive_data(data)
        if self.client.eof and self.conn.state is not ConnectionState.CLOSED:
            self.conn.receive_data(None)  # wsproto turns a lost connection into CloseConnection(1006)
        for event in self.conn.events():
            if isinstance(event, Ping):
                self.send(event.response())
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                if self.conn.state is ConnectionState.REMOTE_CLOSING:
                    self.client.send(self.conn.send(event.response()))
                elif self.conn.state is ConnectionState.OPEN:  # a frame wsproto could not parse: say why, then go
                    self.client.send(self.conn.send(CloseConnection(code=event.code, reason=event.reason)))
                self.closed = True
            elif isinstance(event, (BytesMessage, TextMessage)) and not self.closed:
                yield event

    def close(self, code: int = 1000, timeout: float = 2.0, idle: float = 30.0) -> None:
        """Write what is queued (while the client keeps taking it: see `Client.drain`), send a Close frame with
        ``code`` and wait at most ``timeout`` for the peer's, as RFC 6455 asks."""
        self.client.drain(idle)
        if self.conn.state is ConnectionState.OPEN:
            self.client.send(self.conn.send(CloseConnection(code=code)))
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.client.sock, selectors.EVENT_READ)
            while not self.client.eof and time.monotonic() < deadline:
                if self.client.out:
                    self.client.drain(max(0.0, deadline - time.monotonic()))
                if self.conn.state is not ConnectionState.LOCAL_CLOSING:
                    break
                sel.select(max(0.0, deadline - time.monotonic()))
                for _ in self.events():
                    pass  # messages after our Close are dropped
        self.closed = True
