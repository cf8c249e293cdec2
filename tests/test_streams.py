"""The streaming subresources (``kperflab.lab.streams``) against the real clients: kubectl 1.32 and the Python client.

A small HTTPS server here plays the API server: it checks the bearer token, answers discovery and
``GET pods/<name>`` with a Running pod, and hands ``exec``/``attach``/``portforward`` to the streams module with a
``start`` that runs the command as a local process (pipes, or a pty for a tty) in a scratch directory and a
``dial`` that connects to TCP servers this module starts on 127.0.0.1. Every session must leave no thread and no fd
behind; every client call has a timeout, so a hang is a failure, not a stuck run.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from kperflab.lab import streams
from kperflab.lab.errors import APIError
from kperflab.lab.pki import make_server_tls, write_tls
from kperflab.lab.streams import spdy

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
TOKEN = "streams-t0k3n"
POD_UID = "8d3c7a0e-5f51-4d8e-9b43-2f3c1d1e0a77"
ROUTE = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)(?:/(?P<sub>exec|attach|portforward))?$")


def wait_for(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return APIError(code, reason, message).status()


# -- what the pod's port-forward reaches: an echo server and an HTTP server on 127.0.0.1 ----------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *a: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = f"hello from the pod: {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Threaded(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- the stand-in API server ------------------------------------------------------------------------------------


class Lab:
    """An HTTPS server that routes the streaming subresources of any pod to `kperflab.lab.streams`."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "pod"  # the "container's" working directory
        self.root.mkdir()
        ca, cert, key = write_tls(make_server_tls(), tmp / "tls")
        self.requests: list[tuple[str, str]] = []
        self.resizes: list[tuple[int, int]] = []
        self.started: list[streams.ExecOptions] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.refuse: APIError | Exception | None = None  # what start() raises, when set
        self.echo = _Threaded(("127.0.0.1", 0), _Echo)
        self.http = _Threaded(("127.0.0.1", 0), _Hello)
        self.targets = {7: self.echo.server_address[1], 80: self.http.server_address[1], 81: _closed_port()}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.route(self)

            do_POST = do_GET

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.ca = ca
        self._threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True, name=f"test-{n}")
                         for n, s in (("api", self.httpd), ("echo", self.echo), ("http", self.http))]
        for t in self._threads:
            t.start()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "lab",
            "clusters": [{"name": "lab", "cluster": {"server": f"https://127.0.0.1:{self.port}",
                                                     "certificate-authority-data":
                                                         base64.b64encode(self.ca.read_bytes()).decode()}}],
            "users": [{"name": "u", "user": {"token": TOKEN}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "u", "namespace": "default"}}],
        }))
        return path

    def close(self) -> None:
        for s in (self.httpd, self.echo, self.http):
            s.shutdown()
            s.server_close()

    # -- routing --

    def reply(self, h: BaseHTTPRequestHandler, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def route(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        self.requests.append((h.command, url.path))
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.reply(h, 401, status(401, "Unauthorized", "Unauthorized"))
        m = ROUTE.match(url.path)
        if url.path in DISCOVERY:
            return self.reply(h, 200, DISCOVERY[url.path](self.port))
        if not m:
            return self.reply(h, 404, status(404, "NotFound", "the server could not find the requested resource"))
        query = parse_qs(url.query, keep_blank_values=True)
        sub = m["sub"]
        if sub is None and h.command == "GET":
            return self.reply(h, 200, pod(m["pod"], m["ns"]))
        if sub in ("exec", "attach"):
            try:
                options = streams.parse_exec_options(query, attach=sub == "attach")
            except streams.StreamError as e:
                return streams.send_status(h, e)
            streams.serve_remotecommand(h, options, self.start)
        elif sub == "portforward":
            streams.serve_portforward(h, query, self.dial, pod=f"{m['ns']}/{m['pod']}", uid=POD_UID)
        else:
            self.reply(h, 405, status(405, "MethodNotAllowed", "method not allowed"))

    # -- the "container runtime" --

    def start(self, options: streams.ExecOptions) -> streams.Stdio:
        self.started.append(options)
        if self.refuse is not None:
            raise self.refuse
        command = list(options.command) if options.command else ["sh"]  # attach: a shell stands in for PID 1
        if not shutil.which(command[0]):
            raise APIError(500, "InternalError", f'exec: "{command[0]}": executable file not found in $PATH')
        if options.tty:
            import pty

            master, slave = pty.openpty()
            if options.size:  # the size kubectl sent first, on the terminal before the process starts
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", options.size[1], options.size[0], 0, 0))

            def controlling_tty() -> None:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

            proc = subprocess.Popen(command, cwd=self.root, stdin=slave, stdout=slave, stderr=slave,
                                    start_new_session=True, preexec_fn=controlling_tty, close_fds=True)
            os.close(slave)
            self.procs.append(proc)

            def resize(width: int, height: int) -> None:
                self.resizes.append((width, height))
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

            return streams.Stdio(stdin=None, stdout=master, stderr=None, resize=resize,
                                 wait=lambda: _code(proc.wait()), stop=proc.kill)
        ends = [os.pipe() for _ in range(3)]  # (read, write) for stdin, stdout, stderr
        proc = subprocess.Popen(command, cwd=self.root, stdin=ends[0][0], stdout=ends[1][1], stderr=ends[2][1],
                                close_fds=True)
        for fd in (ends[0][0], ends[1][1], ends[2][1]):
            os.close(fd)
        self.procs.append(proc)
        return streams.Stdio(stdin=ends[0][1], stdout=ends[1][0], stderr=ends[2][0], resize=None,
                             wait=lambda: _code(proc.wait()), stop=proc.kill)

    def dial(self, port: int) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.targets.get(port, self.targets[81])), timeout=5)


def _code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc


def pod(name: str, namespace: str) -> dict[str, Any]:
    started = "2025-01-01T00:00:00Z"
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": POD_UID, "resourceVersion": "1",
                     "creationTimestamp": started},
        "spec": {"nodeName": "lab", "containers": [{"name": "app", "image": "busybox",
                                                    "ports": [{"containerPort": 80, "name": "http"}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1", "startTime": started,
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "app", "ready": True, "started": True, "restartCount": 0,
                                          "image": "busybox", "imageID": "", "containerID": "lab://app",
                                          "state": {"running": {"startedAt": started}}}]},
    }


DISCOVERY: dict[str, Callable[[int], dict[str, Any]]] = {
    "/api": lambda port: {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{port}"}]},
    "/apis": lambda port: {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": lambda port: {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
         "verbs": ["get", "list"]},
        {"name": "pods/attach", "singularName": "", "namespaced": True, "kind": "PodAttachOptions",
         "verbs": ["create", "get"]},
        {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions",
         "verbs": ["create", "get"]},
        {"name": "pods/portforward", "singularName": "", "namespaced": True, "kind": "PodPortForwardOptions",
         "verbs": ["create", "get"]},
    ]},
}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    yield lab
    lab.close()


@pytest.fixture
def kubectl(lab: Lab, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """Run the real kubectl against the lab (own HOME: no cached discovery, no user config)."""
    kubeconfig = lab.kubeconfig(tmp_path / "kubeconfig")
    home = tmp_path / "home"
    home.mkdir()

    def run(*args: str, input: bytes | None = None, timeout: float = 20, env: dict[str, str] | None = None,
            **kw: Any) -> subprocess.CompletedProcess[bytes]:
        e = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), **(env or {})}
        return subprocess.run([KUBECTL or "kubectl", "--kubeconfig", str(kubeconfig), *args], input=input,
                              capture_output=True, timeout=timeout, env=e, **kw)

    run.kubeconfig = kubeconfig  # type: ignore[attr-defined]
    run.home = home  # type: ignore[attr-defined]
    return run


@pytest.fixture
def clean(lab: Lab) -> Iterator[None]:
    """The process's threads and fds after the test are what they were before it (once the sessions are over)."""
    threads, fds = threading.active_count(), open_fds()
    yield
    wait_for(lambda: threading.active_count() <= threads, what=f"threads back to {threads} "
             f"(now: {[t.name for t in threading.enumerate()]})")
    wait_for(lambda: open_fds() <= fds, what=f"fds back to {fds} (now {open_fds()})")
    assert not [t for t in threading.enumerate() if t.name.startswith("kperflab-")]


# -- exec with kubectl --------------------------------------------------------------------------------------------


@pytest.fixture(params=["websocket", "spdy"])
def rc(request: pytest.FixtureRequest) -> dict[str, str]:
    """How kubectl carries exec, attach and cp: a WebSocket (its default since 1.30) or SPDY (its fallback, and
    older kubectl's only way)."""
    return {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "true" if request.param == "websocket" else "false"}


def method_of(rc: dict[str, str]) -> str:
    return "GET" if rc["KUBECTL_REMOTE_COMMAND_WEBSOCKETS"] == "true" else "POST"


@needs_kubectl
def test_kubectl_exec_splits_stdout_and_stderr_and_returns_the_exit_code(lab, kubectl, clean, rc):
    r = kubectl("exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3", env=rc)
    assert r.stdout == b"out\n"
    assert b"err\n" in r.stderr and b"command terminated with exit code 3" in r.stderr, r.stderr
    assert r.returncode == 3
    assert lab.started[-1].command == ("sh", "-c", "echo out; echo err >&2; exit 3")
    exec_requests = [m for m, path in lab.requests if path.endswith("/exec")]
    assert exec_requests == [method_of(rc)]  # WebSocket: a GET, and no SPDY retry; SPDY: a POST


@needs_kubectl
def test_kubectl_exec_stdin_round_trips_megabytes_byte_exact_and_ends(lab, kubectl, clean, rc):
    payload = os.urandom(3 << 20) + bytes(range(256)) * 64
    r = kubectl("exec", "-i", "web", "--", "cat", input=payload, timeout=30, env=rc)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert lab.started[-1].stdin and not lab.started[-1].tty


def _spawn_on_pty(argv: list[str], env: dict[str, str], rows: int, cols: int) -> tuple[subprocess.Popen[bytes], int]:
    """Run ``argv`` with a terminal of ``rows`` x ``cols`` as its stdin/stdout/stderr (as a person's shell would)."""
    import pty

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def controlling_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                            preexec_fn=controlling_tty, close_fds=True)
    os.close(slave)
    return proc, master


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float = 15) -> bytes:
    import select

    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} never came; got {bytes(seen)!r}")
        if select.select([fd], [], [], left)[0]:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # EIO: the terminal's other side is gone
                raise AssertionError(f"{needle!r} never came; got {bytes(seen)!r}") from None
    return bytes(seen)


@needs_kubectl
def test_kubectl_exec_with_a_terminal_gets_a_pty_and_its_resizes(lab, kubectl, clean, rc):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(kubectl.home), "TERM": "xterm", **rc}
    argv = [KUBECTL, "--kubeconfig", str(kubectl.kubeconfig), "exec", "-it", "web", "--",
            "sh", "-c", 'stty size; read x; stty size; echo "got:$x"; exit 7']
    proc, master = _spawn_on_pty(argv, env, rows=30, cols=100)
    seen = bytearray()
    try:
        _read_until(master, b"30 100", seen)  # kubectl sent its terminal's size before the shell asked
        assert lab.started[-1].tty and lab.started[-1].stdin and not lab.started[-1].stderr
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # SIGWINCH to kubectl
        wait_for(lambda: (120, 40) in lab.resizes, what="the resize to reach the pod")
        os.write(master, b"hello\r")
        _read_until(master, b"got:hello", seen)
        assert b"40 120" in seen
        assert proc.wait(timeout=15) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert lab.resizes[0] == (100, 30)


@needs_kubectl
def test_kubectl_cp_into_and_out_of_the_pod(lab, kubectl, clean, tmp_path, rc):
    local = tmp_path / "local"
    (local / "sub").mkdir(parents=True)
    blob = os.urandom(600_000)
    (local / "blob.bin").write_bytes(blob)
    (local / "sub" / "note.txt").write_text("hello\n")
    into = lab.root / "dir"
    into.mkdir()
    r = kubectl("cp", str(local), f"web:{into}", timeout=30, env=rc)  # test -d, then tar -xmf - ended by CLOSE
    assert r.returncode == 0, r.stderr
    assert (into / "local" / "blob.bin").read_bytes() == blob
    assert (into / "local" / "sub" / "note.txt").read_text() == "hello\n"
    assert [o.command[:2] for o in lab.started] == [("test", "-d"), ("tar", "-xmf")]

    back = tmp_path / "back.bin"
    r = kubectl("cp", f"web:{into / 'local' / 'blob.bin'}", str(back), timeout=30, env=rc)  # tar cf - <file>
    assert r.returncode == 0, r.stderr
    assert back.read_bytes() == blob


# -- port-forward with kubectl --------------------------------------------------------------------------------


class PortForward:
    """``kubectl port-forward pod/web :R ...`` in the background; ``local[R]`` is the port kubectl listens on."""

    def __init__(self, kubectl: Any, *remote: int, env: dict[str, str] | None = None) -> None:
        import select

        e = {"PATH": os.environ.get("PATH", ""), "HOME": str(kubectl.home), **(env or {})}
        self.proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(kubectl.kubeconfig), "port-forward", "pod/web",
                                      *(f":{r}" for r in remote)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=e)
        self.local: dict[int, int] = {}
        out = b""
        deadline = time.monotonic() + 20
        assert self.proc.stdout is not None
        while len(self.local) < len(remote):
            assert time.monotonic() < deadline, out
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                data = os.read(self.proc.stdout.fileno(), 65536)
                assert data, f"kubectl port-forward ended: {out!r} {self.stop()!r}"
                out += data
                for m in re.finditer(rb"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", out):
                    self.local[int(m[2])] = int(m[1])

    def stop(self) -> bytes:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def http_get(port: int, path: str = "/") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n".encode())
        out = b""
        while data := s.recv(65536):
            out += data
    return out


def echo(port: int, payload: bytes) -> bytes:
    """Send ``payload`` and read the same number of bytes back (the echo server in the pod)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        sender = threading.Thread(target=s.sendall, args=(payload,))
        sender.start()
        got = bytearray()
        while len(got) < len(payload):
            data = s.recv(1 << 16)
            if not data:
                break
            got += data
        sender.join()
    return bytes(got)


@needs_kubectl
@pytest.mark.parametrize("websockets", ["true", "false"], ids=["websocket-tunnel", "spdy-upgrade"])
def test_kubectl_port_forward(lab, kubectl, clean, websockets):
    with PortForward(kubectl, 80, 7, env={"KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets}) as pf:
        assert b"hello from the pod: /first" in http_get(pf.local[80], "/first")
        payload = os.urandom(2 << 20)
        assert echo(pf.local[7], payload) == payload
        results: list[bytes] = []
        clients = [threading.Thread(target=lambda i=i: results.append(http_get(pf.local[80], f"/c{i}")))
                   for i in range(8)]  # concurrent connections: eight stream pairs in one SPDY session
        for t in clients:
            t.start()
        for t in clients:
            t.join(20)
        assert sorted(r.rsplit(b": ", 1)[1] for r in results) == [f"/c{i}\n".encode() for i in range(8)]
    method = "GET" if websockets == "true" else "POST"
    assert (method, "/api/v1/namespaces/default/pods/web/portforward") in lab.requests
    if websockets == "true":
        assert ("POST", "/api/v1/namespaces/default/pods/web/portforward") not in lab.requests


@needs_kubectl
@pytest.mark.parametrize("websockets", ["true", "false"], ids=["websocket-tunnel", "spdy-upgrade"])
def test_kubectl_port_forward_dial_failure_is_the_kubelets_error_text(lab, kubectl, clean, websockets):
    pf = PortForward(kubectl, 81, 80, env={"KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets})
    try:
        with socket.create_connection(("127.0.0.1", pf.local[81]), timeout=10) as s:
            assert s.recv(100) == b""  # nothing listens on 81 in the pod: kubectl closes our connection
        pf.proc.wait(timeout=15)
    finally:
        err = pf.stop()
    # kubectl 1.32 prints the kubelet's text, then gives up the whole port-forward (client-go closes the
    # connection after any error on an error stream); the server's side of it must simply end, which `clean` checks
    assert (b"an error occurred forwarding %d -> 81: error forwarding port 81 to pod default/web, uid %s: "
            b"connect: connection refused" % (pf.local[81], POD_UID.encode())) in err, err
    assert b"lost connection to pod" in err


# -- the official Python client -------------------------------------------------------------------------------
# websocket-client skips closing its socket when the server closed first (``close()`` returns early once
# ``connected`` is False), so the tests release it with ``shutdown()``: the fds `clean` counts are the server's.


def release(ws_client: Any) -> None:
    ws_client.close()
    ws_client.sock.shutdown() if hasattr(ws_client.sock, "shutdown") else None


@pytest.fixture
def core(lab: Lab, tmp_path: Path) -> Iterator[Any]:
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(lab.kubeconfig(tmp_path / "kubeconfig")))
    yield client.CoreV1Api(api_client)
    api_client.close()


def test_python_client_exec_returncode_and_channels(lab, core, clean):
    from kubernetes.stream import stream

    resp = stream(core.connect_get_namespaced_pod_exec, "web", "default",
                  command=["sh", "-c", "echo out; echo err >&2; exit 5"], stdin=False, stdout=True, stderr=True,
                  tty=False, _preload_content=False)
    try:
        assert resp.subprotocol == "v5.channel.k8s.io"  # echoed, so the client knows CLOSE is understood
        resp.run_forever(timeout=15)
        assert resp.read_stdout() == "out\n" and resp.read_stderr() == "err\n"
        assert resp.returncode == 5
    finally:
        release(resp)
    ok = stream(core.connect_get_namespaced_pod_exec, "web", "default", command=["true"], stdout=True,
                _preload_content=False)
    ok.run_forever(timeout=15)
    assert ok.returncode == 0
    release(ok)


def test_python_client_exec_with_stdin_ends_on_close(lab, core, clean):
    from kubernetes.stream import stream

    resp = stream(core.connect_get_namespaced_pod_exec, "web", "default", command=["sh", "-c", "wc -c; exit 0"],
                  stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    try:
        for _ in range(50):
            resp.write_stdin("x" * 1000)  # text frames: chr(0) + str, as the client sends them
        resp.write_stdin(b"\x00\xff" * 500)  # and binary ones
        resp.close_channel(0)  # v5 CLOSE: the process's stdin ends
        resp.run_forever(timeout=15)
        assert resp.read_stdout().strip() == "51000"
        assert resp.returncode == 0
    finally:
        release(resp)


def test_python_client_exec_with_a_tty_and_resize(lab, core, clean):
    from kubernetes.stream import stream

    resp = stream(core.connect_get_namespaced_pod_exec, "web", "default",
                  command=["sh", "-c", "read x; stty size; echo got:$x"], stdin=True, stdout=True, stderr=True,
                  tty=True, _preload_content=False)
    try:
        resp.write_channel(4, json.dumps({"Width": 132, "Height": 43}))
        wait_for(lambda: (132, 43) in lab.resizes, what="the resize")
        resp.write_stdin("hi\n")
        resp.run_forever(timeout=15)
        out = resp.read_stdout()
        assert "43 132" in out and "got:hi" in out, out
        assert resp.returncode == 0
    finally:
        release(resp)
    assert lab.started[-1].tty and not lab.started[-1].stderr  # a terminal has one output


def test_python_client_portforward_round_trips_bytes(lab, core, clean):
    from kubernetes.stream import portforward

    pf = portforward(core.connect_get_namespaced_pod_portforward, "web", "default", ports="7,80")
    try:
        sock = pf.socket(7)
        sock.settimeout(10)
        payload = os.urandom(1 << 20)
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        got = bytearray()
        while len(got) < len(payload):
            got += sock.recv(1 << 16)
        sender.join()
        assert bytes(got) == payload
        web = pf.socket(80)
        web.settimeout(10)
        web.sendall(b"GET /py HTTP/1.0\r\n\r\n")
        answer = b""
        while b"/py\n" not in answer:  # v4 channels cannot say "this port is closed": read what is expected
            answer += web.recv(65536)
        assert answer.startswith(b"HTTP/1.0 200") and b"hello from the pod: /py" in answer
        assert pf.error(7) is None and pf.error(80) is None
    finally:
        pf.close()
    wait_for(lambda: not pf.connected, what="the WebSocket to close")
    pf.websocket.shutdown()


def test_python_client_portforward_reports_a_dial_failure_and_keeps_the_other_ports(lab, core, clean):
    from kubernetes.stream import portforward

    pf = portforward(core.connect_get_namespaced_pod_portforward, "web", "default", ports="81,7")
    try:
        wait_for(lambda: pf.error(81), what="the error for port 81")
        assert pf.error(81) == f"error forwarding port 81 to pod default/web, uid {POD_UID}: connect: connection refused"
        sock = pf.socket(7)
        sock.settimeout(10)
        sock.sendall(b"still here")
        assert sock.recv(100) == b"still here"
    finally:
        pf.close()
    wait_for(lambda: not pf.connected, what="the WebSocket to close")
    pf.websocket.shutdown()


# -- attach, refusals and errors ----------------------------------------------------------------------------------


@needs_kubectl
def test_kubectl_attach_reports_success_whatever_the_exit(lab, kubectl, clean, rc):
    r = kubectl("attach", "-i", "web", input=b"echo attached; exit 4\n", env=rc)
    assert r.returncode == 0, r.stderr
    assert b"attached\n" in r.stdout
    assert lab.started[-1].attach and lab.started[-1].command == ()


@needs_kubectl
def test_kubectl_exec_when_start_refuses_prints_the_status(lab, kubectl, clean, rc):
    r = kubectl("exec", "web", "--", "no-such-command", env=rc)
    assert r.returncode == 1
    assert r.stderr.strip().endswith(b'exec: "no-such-command": executable file not found in $PATH'), r.stderr
    lab.refuse = APIError(400, "BadRequest", "container app is not running")
    r = kubectl("exec", "web", "--", "true", env=rc)
    assert r.returncode == 1 and b"error: container app is not running" in r.stderr, r.stderr
    lab.refuse = RuntimeError("the runtime broke")
    r = kubectl("exec", "web", "--", "true", env=rc)
    assert r.returncode == 1 and b"Internal error occurred: the runtime broke" in r.stderr, r.stderr
    assert {m for m, path in lab.requests if path.endswith("/exec")} == {method_of(rc)}  # refused after the upgrade


def raw(lab: Lab, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    """One HTTPS request with the given upgrade headers; the status, headers and JSON body (never a hang)."""
    import http.client

    ctx = ssl.create_default_context(cafile=str(lab.ca))
    conn = http.client.HTTPSConnection("127.0.0.1", lab.port, context=ctx, timeout=10)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {TOKEN}", **headers})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(body) if body else None
    finally:
        conn.close()


WS = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode()}
EXEC = "/api/v1/namespaces/default/pods/web/exec?command=true&stdout=true"


@pytest.mark.parametrize("method,path,headers,code,message", [
    ("GET", EXEC, {**WS, "Sec-WebSocket-Protocol": "v9.channel.k8s.io"}, 400,
     "requested protocol(s) are not supported: [v9.channel.k8s.io]"),
    ("GET", EXEC, WS, 400, "requested protocol(s) are not supported: []"),
    ("GET", "/api/v1/namespaces/default/pods/web/exec?command=true&stdout=false&stderr=0",
     {**WS, "Sec-WebSocket-Protocol": "v5.channel.k8s.io"}, 400, "you must specify at least 1 of stdin, stdout, stderr"),
    ("GET", "/api/v1/namespaces/default/pods/web/exec?stdout=1", {**WS, "Sec-WebSocket-Protocol": "v5.channel.k8s.io"},
     400, "you must specify at least one command"),
    ("GET", EXEC, {}, 400, "Upgrade request required"),
    ("GET", EXEC, {**WS, "Sec-WebSocket-Version": "8", "Sec-WebSocket-Protocol": "v5.channel.k8s.io"}, 400,
     "unable to upgrade websocket connection"),
    ("GET", "/api/v1/namespaces/default/pods/web/portforward", {**WS, "Sec-WebSocket-Protocol": "v4.channel.k8s.io"},
     400, 'query parameter "ports" is required'),
    ("GET", "/api/v1/namespaces/default/pods/web/portforward?ports=http",
     {**WS, "Sec-WebSocket-Protocol": "v4.channel.k8s.io"}, 400, 'unable to parse "http" as a port'),
    ("POST", EXEC, {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "v3.channel.k8s.io"},
     403, "server accepts [v5.channel.k8s.io v4.channel.k8s.io]"),
    ("POST", "/api/v1/namespaces/default/pods/web/portforward",
     {"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "v4.channel.k8s.io"}, 403,
     "unable to negotiate protocol"),
], ids=["unsupported-subprotocol", "no-subprotocol", "no-stream", "no-command", "no-upgrade", "bad-ws-version",
        "exec-spdy-v3", "pf-no-ports", "pf-bad-port", "pf-spdy-wrong-protocol"])
def test_refusals_before_the_upgrade_are_a_status(lab, clean, method, path, headers, code, message):
    got, _, body = raw(lab, method, path, headers)
    assert got == code
    assert body["kind"] == "Status" and body["code"] == code and message in body["message"], body
    assert lab.started == []


def test_python_client_without_a_stream_gets_the_status_not_a_hang(lab, core, clean):
    from kubernetes.client.rest import ApiException
    from kubernetes.stream import stream

    with pytest.raises(ApiException) as err:
        stream(core.connect_get_namespaced_pod_exec, "web", "default", command=["true"], stdin=False, stdout=False,
               stderr=False, tty=False, _preload_content=False)
    assert "400" in str(err.value)


def test_python_client_sees_a_refused_start_on_the_status_channel(lab, core, clean):
    from kubernetes.stream import stream

    lab.refuse = APIError(404, "NotFound", 'container "sidecar" not found in pod web')
    resp = stream(core.connect_get_namespaced_pod_exec, "web", "default", command=["true"], stdout=True,
                  _preload_content=False)
    try:
        resp.run_forever(timeout=10)
        assert not resp.is_open()
        status = json.loads(resp.read_channel(3))
        assert status["code"] == 404 and status["reason"] == "NotFound" and "sidecar" in status["message"]
    finally:
        release(resp)


# -- the SPDY session itself, driven frame by frame (the framing is the module's, the server is the one kubectl met)


class SpdyClient:
    """A port-forward SPDY connection opened with a plain upgrade, read and written with `spdy.Framer`."""

    def __init__(self, lab: Lab) -> None:
        ctx = ssl.create_default_context(cafile=str(lab.ca))
        self.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", lab.port), timeout=10),
                                    server_hostname="127.0.0.1")
        self.sock.sendall(f"POST /api/v1/namespaces/default/pods/web/portforward HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Authorization: Bearer {TOKEN}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                          f"X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        self.head = head.decode()
        self.framer = spdy.Framer()
        self.frames: list[spdy.Frame] = []

    def send(self, *chunks: bytes) -> None:
        self.sock.sendall(b"".join(chunks))

    def until(self, check: Callable[[list[spdy.Frame]], bool]) -> list[spdy.Frame]:
        while not check(self.frames):
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed; frames so far: {self.frames}")
            self.frames += self.framer.feed(data)
        return self.frames

    def data(self, stream_id: int) -> tuple[bytes, bool]:
        frames = [f for f in self.frames if isinstance(f, spdy.Data) and f.stream_id == stream_id]
        return b"".join(f.data for f in frames), any(f.fin for f in frames)


def test_spdy_session_goes_on_after_a_failed_dial_and_answers_pings(lab, clean):
    c = SpdyClient(lab)
    assert c.head.startswith("HTTP/1.1 101") and "X-Stream-Protocol-Version: portforward.k8s.io" in c.head
    error = {"streamtype": "error", "port": "81", "requestid": "0"}
    c.send(c.framer.syn_stream(1, error), c.framer.data(1, fin=True),
           c.framer.syn_stream(3, {**error, "streamtype": "data"}))
    c.until(lambda fs: c.data(1)[1] and c.data(3)[1])
    assert [f.stream_id for f in c.frames if isinstance(f, spdy.SynReply)] == [1, 3]
    assert c.data(1)[0] == f"error forwarding port 81 to pod default/web, uid {POD_UID}: connect: connection refused".encode()
    c.send(c.framer.rst_stream(3), c.framer.ping(7))
    c.until(lambda fs: any(isinstance(f, spdy.Ping) and f.id == 7 for f in fs))

    echo_pair = {"streamtype": "error", "port": "7", "requestid": "1"}
    c.send(c.framer.syn_stream(5, echo_pair), c.framer.data(5, fin=True),
           c.framer.syn_stream(7, {**echo_pair, "streamtype": "data"}), c.framer.data(7, b"the same session"))
    c.until(lambda fs: c.data(7)[0] == b"the same session")
    c.send(c.framer.data(7, b"", fin=True))  # half-close: the echo server sees EOF and closes
    c.until(lambda fs: c.data(7)[1] and c.data(5)[1])
    c.send(c.framer.rst_stream(7), c.framer.goaway(7))
    assert c.sock.recv(100) == b""  # GOAWAY ends the session
    c.sock.close()


def test_spdy_garbage_is_a_goaway_not_a_hang(lab, clean):
    c = SpdyClient(lab)
    c.send(b"\x80\x02\x00\x01" + b"\x00" * 12)  # a SPDY/2 frame
    c.until(lambda fs: any(isinstance(f, spdy.GoAway) for f in fs))
    goaway = next(f for f in c.frames if isinstance(f, spdy.GoAway))
    assert goaway.status == spdy.GOAWAY_PROTOCOL_ERROR
    assert c.sock.recv(100) == b""
    c.sock.close()


def test_base64_subprotocol_exec(lab, clean):
    import websocket

    ws = websocket.create_connection(
        f"wss://127.0.0.1:{lab.port}/api/v1/namespaces/default/pods/web/exec?command=sh&command=-c&"
        "command=printf%20%27%5C377%5C000%27%3B%20exit%202&stdout=true",
        header=[f"Authorization: Bearer {TOKEN}"], subprotocols=["v4.base64.channel.k8s.io"],
        sslopt={"ca_certs": str(lab.ca)}, timeout=10)
    try:
        assert ws.subprotocol == "v4.base64.channel.k8s.io"
        got: dict[str, bytes] = {}
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            assert opcode == websocket.ABNF.OPCODE_TEXT
            text = data.decode()
            got[text[0]] = got.get(text[0], b"") + base64.b64decode(text[1:])
        assert got["1"] == b"\xff\x00"
        assert json.loads(got["3"])["details"]["causes"][0] == {"reason": "ExitCode", "message": "2"}
        assert json.loads(got["3"])["message"] == ("command terminated with non-zero exit code: error executing "
                                                   "command [sh -c printf '\\377\\000'; exit 2], exit code 2")
    finally:
        ws.close()
        ws.shutdown()


def test_spdy_dictionary_is_the_specs():
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == spdy.DICTIONARY_SHA256
    assert len(spdy.DICTIONARY) == 1423


@pytest.mark.parametrize("module", ["spdy", "remotecommand", "portforward", "_http"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"kperflab.lab.streams.{module}"))
    assert result.failed == 0 and result.attempted > 0


def _ws(lab: Lab, query: str, protocol: str = "v5.channel.k8s.io") -> Any:
    import websocket

    return websocket.create_connection(f"wss://127.0.0.1:{lab.port}/api/v1/namespaces/default/pods/web/exec?{query}",
                                       header=[f"Authorization: Bearer {TOKEN}"], subprotocols=[protocol],
                                       sslopt={"ca_certs": str(lab.ca)}, timeout=10)


def test_pings_get_pongs_and_close_ends_stdin(lab, clean):
    import websocket

    ws = _ws(lab, "command=cat&stdin=true&stdout=true&stderr=true")
    try:
        assert ws.recv_data() == (websocket.ABNF.OPCODE_BINARY, b"\x01")  # the kubelet's "connected" notice
        ws.ping(b"heartbeat")
        assert ws.recv_data(control_frame=True) == (websocket.ABNF.OPCODE_PONG, b"heartbeat")
        ws.send_binary(b"\x00abc")
        assert ws.recv_data() == (websocket.ABNF.OPCODE_BINARY, b"\x01abc")
        ws.send_binary(bytes([255, 0]))  # v5 CLOSE stdin: cat sees EOF and exits 0
        assert ws.recv_data() == (websocket.ABNF.OPCODE_BINARY, b'\x03{"metadata":{},"status":"Success"}')
        frame = ws.recv_frame()
        assert frame.opcode == websocket.ABNF.OPCODE_CLOSE and frame.data[:2] == b"\x03\xe8"  # 1000
    finally:
        ws.shutdown()


def test_a_client_that_leaves_stops_the_process(lab, clean):
    ws = _ws(lab, "command=sleep&command=30&stdout=true")
    ws.recv_data()
    proc = wait_for(lambda: lab.procs and lab.procs[-1])
    ws.shutdown()  # no close frame: the connection just drops
    assert proc.wait(timeout=10) == -signal.SIGKILL  # Stdio.stop, as containerd kills an orphaned exec


def test_output_after_the_exit_is_kept_and_a_silent_child_does_not_hold_the_session(lab, core, clean, monkeypatch):
    from kubernetes.stream import stream

    from kperflab.lab.streams import remotecommand

    monkeypatch.setattr(remotecommand, "OUTPUT_GRACE", 0.5)
    resp = stream(core.connect_get_namespaced_pod_exec, "web", "default", stdout=True, _preload_content=False,
                  command=["sh", "-c", "echo a; (sleep 0.1; echo b; sleep 2) & exit 0"])
    try:
        started = time.monotonic()
        resp.run_forever(timeout=10)
        assert resp.read_stdout() == "a\nb\n"  # b comes after sh exited, from the child that holds stdout
        assert resp.returncode == 0
        assert time.monotonic() - started < 1.8  # ended by the grace after b, not by the child's exit
    finally:
        release(resp)


def test_frames_sent_with_the_upgrade_request_are_not_lost(lab, clean):
    """A client that does not wait for the 101: the HTTP server's buffered reader has already taken its first frames
    off the socket with the request head, and the session must still see them (frames made by wsproto)."""
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import BytesMessage, CloseConnection

    frames = Connection(ConnectionType.CLIENT)
    head = (f"GET /api/v1/namespaces/default/pods/web/exec?command=cat&stdin=1&stdout=1 HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS['Sec-WebSocket-Key']}\r\n"
            f"Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n").encode()
    ctx = ssl.create_default_context(cafile=str(lab.ca))
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", lab.port), timeout=10),
                         server_hostname="127.0.0.1") as sock:
        sock.sendall(head + frames.send(BytesMessage(data=b"\x00early bytes")) + frames.send(BytesMessage(
            data=b"\xff\x00")))
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(1)
        assert data.startswith(b"HTTP/1.1 101")
        replies = Connection(ConnectionType.CLIENT)
        got, closed = b"", False
        while not closed:
            replies.receive_data(sock.recv(65536))
            for event in replies.events():
                if isinstance(event, BytesMessage) and event.data[:1] == b"\x01":
                    got += event.data[1:]
                closed |= isinstance(event, CloseConnection)
        assert got == b"early bytes"
