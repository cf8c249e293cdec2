"""``pods/exec`` and ``pods/attach``, as kubectl 1.32 and the Python client speak them.

The session is channels (`_channels`): 0 stdin, 1 stdout, 2 stderr, 3 status (server to client, once, a JSON
``Status``), 4 resize (``{"Width":W,"Height":H}``), and CLOSE (the client will send no more stdin). Over a
WebSocket (``v5.channel.k8s.io``, kubectl's default since 1.30, and the Python client's) each message is a channel
byte and a payload; over SPDY (kubectl's fallback, and older kubectl) each channel is a stream.

The session upgrades first and starts the process after, as kube-apiserver's stream translator does since 1.30:
anything `start` refuses (container not running, no such command) reaches the client as the Status on channel 3,
which kubectl prints as its error. A refusal before the WebSocket upgrade would make kubectl retry over SPDY and
show that retry's outcome instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from ._channels import (
    CLOSE,
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    V1,
    V1_BASE64,
    V4,
    V4_BASE64,
    V5,
    SpdyChannels,
    WsChannels,
)
from ._http import (
    StreamError,
    accept_spdy,
    accept_websocket,
    bad_request,
    negotiate,
    offered_subprotocols,
    send_status,
    status_of,
    upgrade_kind,
)
from ._io import HIGH_WATER, Loop, read_fd, set_nonblocking, write_fd

log = logging.getLogger("kperflab.lab.streams")

PROTOCOLS = (V5, V4, V4_BASE64, V1, V1_BASE64)  # WebSocket: what the kubelet accepts, and v5 (kube-apiserver)
SPDY_PROTOCOLS = (V5, V4)  # SPDY: what client-go offers first since 1.30 (v5) and before (v4)

INITIAL_SIZE_WAIT = 0.5  # seconds a tty session waits for the client's first resize before starting the process
OUTPUT_GRACE = 2.0  # seconds of silence after the exit before output still open is given up (a child holds it)
STOP_GRACE = 5.0  # seconds to wait for wait() to return once the session asked the runtime to stop
MAX_RESIZE = 1 << 16  # bytes of an unparsed resize stream before it is dropped as malformed


@dataclass(frozen=True)
class ExecOptions:
    """What the client asked for (``PodExecOptions`` / ``PodAttachOptions``); ``command`` is empty for attach."""

    command: tuple[str, ...] = ()
    container: str = ""
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False
    attach: bool = False
    # The terminal's size, (width, height), when the client sent one before the process started (kubectl does at
    # once): a runtime can give the pty this size before exec, so a program that asks at start-up gets it right.
    size: tuple[int, int] | None = None


@dataclass
class Stdio:
    """One running process's ends, as the container runtime gives them to `serve_remotecommand`.

    The session owns the fds from then on: it makes them non-blocking and closes each (once, even when two fields
    name the same fd) when it ends — so an attach gets its own ends (dups, or per-attach pipes), never the ones
    the container's logs are read from.
    """

    stdin: int | None  # where the client's stdin goes (closed on CLOSE); with a tty may be None: stdout is used
    stdout: int | None  # the process's stdout; with a tty the pty master (read for output, written for input)
    stderr: int | None  # the process's stderr; None with a tty
    resize: Callable[[int, int], None] | None  # (width, height) of the terminal, for a tty
    wait: Callable[[], int]  # blocks until the process ends; its exit code (128+signal when killed)
    # Called when the session ends while wait() has not returned (the client went away): exec ends the process, as
    # containerd kills an exec whose stream is gone; attach detaches. wait() must return soon after.
    stop: Callable[[], None] | None = field(default=None)


def query_bool(query: dict[str, list[str]], name: str) -> bool:
    """apimachinery's rule for a bool in a query: absent, ``0`` or ``false`` (any case) is false, anything else —
    even an empty value — true; the first value counts.

    >>> [query_bool({"tty": [v]}, "tty") for v in ("true", "True", "1", "", "0", "FALSE")], query_bool({}, "tty")
    ([True, True, True, True, False, False], False)
    """
    values = query.get(name) or []
    return bool(values) and values[0] != "0" and values[0].lower() != "false"


def parse_exec_options(query: dict[str, list[str]], attach: bool) -> ExecOptions:
    """Read the exec/attach query (as ``urllib.parse.parse_qs(q, keep_blank_values=True)`` gives it); raises
    `StreamError` (400) as the kubelet would. A tty drops stderr (the kubelet does: a terminal has one output).

    >>> o = parse_exec_options({"command": ["sh", "-c", "echo hi"], "stdout": ["true"], "stderr": [""]}, False)
    >>> o.command, o.stdin, o.stdout, o.stderr, o.tty
    (('sh', '-c', 'echo hi'), False, True, True, False)
    >>> parse_exec_options({"stdin": ["1"], "tty": ["1"], "stderr": ["1"], "container": ["app"]}, True).stderr
    False
    >>> parse_exec_options({"command": ["ls"]}, False)
    Traceback (most recent call last):
    ...
    kperflab.lab.streams._http.StreamError: you must specify at least 1 of stdin, stdout, stderr
    """
    tty = query_bool(query, "tty")
    stdin, stdout, stderr = (query_bool(query, n) for n in ("stdin", "stdout", "stderr"))
    stderr = stderr and not tty
    if not (stdin or stdout or stderr):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    command = () if attach else tuple(query.get("command") or ())
    if not attach and not command:
        raise bad_request("you must specify at least one command for the container")
    container = (query.get("container") or [""])[0]
    return ExecOptions(command, container, stdin, stdout, stderr, tty, attach)


def exit_status(code: int, options: ExecOptions, translated: bool = False) -> dict[str, Any]:
    """The Status for a process that ended with ``code``: ExitCode first among the causes (the Python client reads
    ``causes[0]``; client-go parses it as uint8). Attach reports Success whatever the code, as the kubelet does. The
    message is the kubelet's, or with ``translated`` kube-apiserver's stream translator's (what a v5 WebSocket
    client meets on a real cluster).

    >>> failed = exit_status(3, ExecOptions(("sh", "-c", "exit 3"), stdout=True))
    >>> failed["details"], failed["message"]
    ({'causes': [{'reason': 'ExitCode', 'message': '3'}]}, 'command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3')
    >>> exit_status(-9, ExecOptions(("sleep", "9"), stdout=True), translated=True)["message"]
    'command terminated with non-zero exit code: command terminated with exit code 137'
    """
    if code == 0 or options.attach:
        return {"metadata": {}, "status": "Success"}
    code = 128 - code if code < 0 else min(code, 255)  # subprocess reports a signal as -N
    if translated:
        why = f"command terminated with exit code {code}"
    else:
        why = f"error executing command [{' '.join(options.command)}], exit code {code}"
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: {why}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def serve_remotecommand(handler: BaseHTTPRequestHandler, options: ExecOptions,
                        start: Callable[[ExecOptions], Stdio]) -> None:
    """Serve one exec or attach on ``handler``'s connection, from the upgrade to the close; returns when done.

    Refused before the upgrade, with a Status reply: a request that asks for no upgrade, or offers none of
    `PROTOCOLS` (WebSocket) or `SPDY_PROTOCOLS` (SPDY). After it: ``start(options)`` runs the process; an exception
    from it becomes the Status on channel 3 (its own for an `APIError`, InternalError otherwise). The session ends
    when the process has exited and its output is read (then the Status, then close), or when the client goes (the
    process is stopped through ``Stdio.stop``).
    """
    handler.close_connection = True
    kind = upgrade_kind(handler)
    try:
        if kind == "websocket":
            protocol = negotiate(offered_subprotocols(handler), PROTOCOLS)
            transport: WsChannels | SpdyChannels = WsChannels(accept_websocket(handler, protocol), protocol)
        elif kind == "spdy":
            offered = [v.strip() for h in handler.headers.get_all("X-Stream-Protocol-Version") or []
                       for v in h.split(",") if v.strip()]
            protocol = next((p for p in offered if p in SPDY_PROTOCOLS), "")
            if not protocol:  # apimachinery's httpstream.Handshake: 403 and the versions it accepts
                send_status(handler, StreamError(403, "Forbidden", (
                    f"unable to upgrade: unable to negotiate protocol: client supports [{' '.join(offered)}], "
                    f"server accepts [{' '.join(SPDY_PROTOCOLS)}]")),
                    {"X-Accepted-Stream-Protocol-Versions": ", ".join(SPDY_PROTOCOLS)})
                return
            transport = SpdyChannels(accept_spdy(handler, protocol), protocol)
        else:
            raise bad_request("Upgrade request required")
    except StreamError as e:
        send_status(handler, e)
        return
    session = _ExecSession(transport, options, protocol)
    try:
        session.run(start)
    finally:
        session.teardown()
        transport.client.restore()


class _ExecSession:
    """One exec or attach: the process's ends and the client's channels, pumped by one loop until the end."""

    def __init__(self, transport: WsChannels | SpdyChannels, options: ExecOptions, protocol: str) -> None:
        self.t = transport
        self.client = transport.client
        self.options = options
        self.protocol = protocol
        self.loop = Loop()
        if self.client.has_early:
            self.loop.kick.add(self.client.fileno())
        self.stdio: Stdio | None = None
        self.outputs: dict[int, int] = {}  # fd -> channel, while open
        self.stdin_fd: int | None = None
        self.stdin_buf = bytearray()
        self.stdin_eof = False  # the client said CLOSE on stdin: close the fd once the buffer is written
        self.resize_buf = bytearray()
        self.first_size: tuple[int, int] | None = None
        self.exit_code: int | None = None
        self.exit_error: BaseException | None = None
        self.exited = threading.Event()
        self.exited_at = 0.0
        self.output_at = 0.0  # when output was last read
        self.waiter: threading.Thread | None = None
        self._owned: set[int] = set()

    # -- the session -----------------------------------------------------------------------------

    def run(self, start: Callable[[ExecOptions], Stdio]) -> None:
        o = self.options
        wanted = {ERROR} | {c for c, on in ((STDIN, o.stdin), (STDOUT, o.stdout), (STDERR, o.stderr)) if on}
        if not self.t.open(wanted, timeout=30.0):
            log.info("exec %s: the client did not open its streams", list(o.command) or "attach")
            return
        # the kubelet's "connection established" notice: an empty message on the lowest writable channel
        if isinstance(self.t, WsChannels):
            self.t.send(STDOUT if o.stdout else STDERR if o.stderr else ERROR, b"")
        if o.tty:
            self._await_size()
            if self.t.closed:
                return
            if self.first_size:
                o = self.options = dataclasses.replace(o, size=self.first_size)
        try:
            self.stdio = start(o)
        except Exception as e:  # noqa: BLE001 - every refusal goes to the client as a Status
            log.info("exec %s: start refused: %s", list(o.command) or "attach", e)
            self.t.finish(status_of(e))
            return
        self._adopt(self.stdio)
        if self.first_size and self.stdio.resize:  # again, for a runtime that started before it read options.size
            self._apply_size(*self.first_size)
        self.waiter = threading.Thread(target=self._wait, name="kperflab-exec-wait", daemon=True)
        self.waiter.start()
        while True:
            if self.t.closed:
                return  # the client went: teardown stops the process
            now = time.monotonic()
            if self.exited.is_set() and not self.exited_at:
                self.exited_at = now
            busy = len(self.client.out) >= HIGH_WATER  # outputs are not being read: their silence means nothing
            quiet_until = max(self.exited_at, self.output_at) + OUTPUT_GRACE
            if self.exited_at and (not self.outputs or (not busy and now >= quiet_until)):
                if self.exit_error is not None:
                    self.t.finish(status_of(self.exit_error))
                else:
                    translated = self.protocol == V5 and isinstance(self.t, WsChannels)
                    self.t.finish(exit_status(self.exit_code or 0, o, translated))
                return
            self._arm()
            self.loop.poll(max(0.0, quiet_until - now) if self.exited_at and not busy else None)

    def _await_size(self) -> None:
        """kubectl sends the terminal's size as soon as the socket is open; wait for it (briefly: the Python client
        sends none unless asked) so that the process starts with it rather than 0x0."""
        deadline = time.monotonic() + INITIAL_SIZE_WAIT
        while not (self.first_size or self.stdin_buf or self.t.closed):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.loop.want(self.client.fileno(), selectors.EVENT_READ | (selectors.EVENT_WRITE if self.client.out
                                                                         else 0), self._on_client)
            self.loop.poll(left)

    def _adopt(self, stdio: Stdio) -> None:
        o = self.options
        for fd in (stdio.stdin, stdio.stdout, stdio.stderr):
            if fd is not None and fd not in self._owned:
                self._owned.add(fd)
                set_nonblocking(fd)
        if o.stdout and stdio.stdout is not None:
            self.outputs[stdio.stdout] = STDOUT
        if o.stderr and not o.tty and stdio.stderr is not None and stdio.stderr not in self.outputs:
            self.outputs[stdio.stderr] = STDERR
        if o.stdin:
            self.stdin_fd = stdio.stdin if stdio.stdin is not None else (stdio.stdout if o.tty else None)
        if self.stdin_fd is None:
            self.stdin_eof = True
            self.stdin_buf.clear()
        # ends nobody asked for are closed now, so the process sees EOF / EPIPE on them rather than a hang
        for fd in list(self._owned):
            if fd not in self.outputs and fd != self.stdin_fd:
                self._close(fd)

    def _wait(self) -> None:
        assert self.stdio is not None
        try:
            self.exit_code = self.stdio.wait()
        except BaseException as e:  # noqa: BLE001 - reported as the session's Status
            self.exit_error = e
        self.exited.set()
        self.loop.wakeup.set()

    def _arm(self) -> None:
        sel = selectors
        client_events = (sel.EVENT_READ if len(self.stdin_buf) < HIGH_WATER else 0)
        client_events |= sel.EVENT_WRITE if self.client.out else 0
        self.loop.want(self.client.fileno(), client_events, self._on_client)
        busy = len(self.client.out) >= HIGH_WATER
        for fd in self.outputs:
            events = 0 if busy else sel.EVENT_READ
            if fd == self.stdin_fd and self.stdin_buf:
                events |= sel.EVENT_WRITE
            self.loop.want(fd, events, self._on_output if fd != self.stdin_fd else self._on_tty)
        if self.stdin_fd is not None and self.stdin_fd not in self.outputs:
            self.loop.want(self.stdin_fd, sel.EVENT_WRITE if self.stdin_buf else 0, self._on_stdin)

    # -- events ----------------------------------------------------------------------------------

    def _on_client(self, fd: int, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self.client.flush()
        if mask & selectors.EVENT_READ:
            for channel, data in self.t.receive():
                self._from_client(channel, data)
            self._flush_stdin()

    def _from_client(self, channel: int, data: bytes) -> None:
        if channel == STDIN:
            if self.options.stdin and not self.stdin_eof:  # kept until the process exists, before start
                self.stdin_buf += data
        elif channel == RESIZE:
            self._resize(data)
        elif channel == CLOSE and self.t.close_signal:
            if len(data) == 1 and data[0] == STDIN:
                self.stdin_eof = True
            # a CLOSE for stdout/stderr/resize changes nothing here: the client reads what it wants

    def _resize(self, data: bytes) -> None:
        """Resize events are a stream of JSON objects (client-go writes one per message plus a newline)."""
        self.resize_buf += data
        if len(self.resize_buf) > MAX_RESIZE:
            self.resize_buf.clear()
            return
        decoder = json.JSONDecoder()
        text = self.resize_buf.decode("utf-8", "replace")
        pos = 0
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            try:
                size, end = decoder.raw_decode(text, pos)
            except ValueError:
                break
            pos = end
            if not isinstance(size, dict):
                continue
            width, height = size.get("Width"), size.get("Height")
            if (self.options.tty and isinstance(width, int) and isinstance(height, int)
                    and 0 <= width < 65536 and 0 <= height < 65536):
                if self.stdio is None:
                    self.first_size = (width, height)
                else:
                    self._apply_size(width, height)
        self.resize_buf = bytearray(text[pos:].encode("utf-8"))

    def _apply_size(self, width: int, height: int) -> None:
        if self.stdio is not None and self.stdio.resize is not None:
            try:
                self.stdio.resize(width, height)
            except Exception as e:  # noqa: BLE001 - a failed resize is not worth ending the session
                log.debug("resize to %sx%s failed: %s", width, height, e)

    def _on_output(self, fd: int, mask: int) -> None:
        if fd in self.outputs:
            self._read_output(fd, self.outputs[fd])

    def _read_output(self, fd: int, channel: int) -> None:
        data = read_fd(fd)
        if data is None:
            del self.outputs[fd]
            self.loop.forget(fd)
            if fd != self.stdin_fd:
                self._close(fd)
        elif data:
            self.output_at = time.monotonic()
            self.t.send(channel, data)

    def _on_tty(self, fd: int, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush_stdin()
        if mask & selectors.EVENT_READ and self.stdin_fd in self.outputs:
            self._read_output(self.stdin_fd, self.outputs[self.stdin_fd])

    def _on_stdin(self, fd: int, mask: int) -> None:
        self._flush_stdin()

    def _flush_stdin(self) -> None:
        fd = self.stdin_fd
        if fd is None:
            return
        if self.stdin_buf and not write_fd(fd, self.stdin_buf):
            self.stdin_eof = True  # the process closed its stdin: drop what the client still sends
        if self.stdin_eof and not self.stdin_buf and fd not in self.outputs:
            self.loop.forget(fd)
            self._close(fd)
            self.stdin_fd = None

    # -- the end ---------------------------------------------------------------------------------

    def _close(self, fd: int) -> None:
        if fd in self._owned:
            self._owned.discard(fd)
            self.loop.forget(fd)
            try:
                os.close(fd)
            except OSError:
                pass

    def teardown(self) -> None:
        """Close every end (the process sees EOF, EPIPE or a hang-up), stop a process that still runs, and join the
        waiter so that no thread outlives the session."""
        for fd in list(self._owned):
            self._close(fd)
        self.outputs.clear()
        if self.waiter is not None:
            if not self.exited.is_set() and self.stdio is not None and self.stdio.stop is not None:
                try:
                    self.stdio.stop()
                except Exception as e:  # noqa: BLE001
                    log.warning("stopping the process after its client left failed: %s", e)
            self.waiter.join(STOP_GRACE)
            if self.waiter.is_alive():
                log.warning("exec %s: the process outlived its session; its wait() is still blocked",
                            list(self.options.command) or "attach")
        self.loop.close()
