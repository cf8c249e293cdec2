"""The kubelet's probes (``pkg/kubelet/prober``, ``pkg/probe``): liveness, readiness and startup, by exec, httpGet and
tcpSocket, one worker thread per container and probe type, so that no probe ever holds up the sync loop.

A worker does what upstream's ``worker.doProbe`` does every ``periodSeconds``: wait for its container (a new container
id resets the result to the type's initial value: readiness Failure, liveness Success, startup Unknown), stay idle for
``initialDelaySeconds`` after the container started, run only the startup probe until the container has started and
then only the others, and flip the result once ``failureThreshold`` (or ``successThreshold``) results in a row agree.
A failed liveness or startup result puts the worker on hold until the container is replaced. The kubelet reads the
results: ``status()`` gives ``containerStatuses[].started`` and ``ready`` (``UpdatePodStatus``), ``kill_reason()`` a
container to kill (``computePodActions``).

What each probe does, and the words it reports, follow ``prober.go`` and ``pkg/probe/{exec,http,tcp}``: the kubelet's
Warning ``Unhealthy`` events ("Liveness probe failed: HTTP probe failed with statuscode: 500", "… probe errored and
resulted in unknown state: …"), ``ProbeWarning`` for a redirect to another host, ``kube-probe/1.32`` as User-Agent,
2xx and 3xx as success, a 10 KiB limit on bodies and exec output, Go's error texts for dials and timeouts.

gRPC probes are validated and defaulted like the others but not run: the lab has no gRPC library (a hand-made HTTP/2
client is out of proportion). Such a probe *errors* every period (the event says why), and an erroring probe's result
is thrown away as upstream does: a gRPC readiness probe keeps its container unready, a liveness probe never kills.

The pure parts (URLs, headers, ports, outcomes, the worker's threshold logic) take plain dicts and are unit-tested.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException, HTTPSConnection, RemoteDisconnected
from typing import Any, Protocol
from urllib.parse import quote, urljoin, urlsplit

log = logging.getLogger("kperflab.lab.prober")

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"
TYPES = (LIVENESS, READINESS, STARTUP)
FIELD = {LIVENESS: "livenessProbe", READINESS: "readinessProbe", STARTUP: "startupProbe"}
TITLE = {LIVENESS: "Liveness", READINESS: "Readiness", STARTUP: "Startup"}
SUCCESS, FAILURE, WARNING, UNKNOWN = "success", "failure", "warning", "unknown"
INITIAL = {READINESS: FAILURE, LIVENESS: SUCCESS, STARTUP: UNKNOWN}  # worker.go newWorker
USER_AGENT = "kube-probe/1.32"  # request.go userAgent("probe"): kube-<purpose>/<major>.<minor>
MAX_BODY = 10 * 1024  # http.go maxRespBodyLength
MAX_EXEC_OUTPUT = 10 * 1024  # exec.go maxReadLength
MAX_GZIP_READ = 1 << 20  # how much of a gzipped body is read to give its first 10 KiB
MAX_RETRIES = 3  # prober.go maxProbeRetries: a probe that *errors* is tried again at once, three times in all
MAX_REDIRECTS = 10


class ProbeError(Exception):
    """The probe could not be run (upstream's ``err != nil``): its result is thrown away; the text is Go's. ``result``
    is what the event says it resulted in (unknown, or failure for a body that could not be read)."""

    def __init__(self, message: str, result: str = "unknown") -> None:
        super().__init__(message)
        self.result = result


class ExecTimeout(Exception):
    """An exec probe's command outlived timeoutSeconds (and was killed)."""


# -- the pure parts ------------------------------------------------------------------------------------------------

def seconds(probe: dict[str, Any], key: str, default: int) -> int:
    """A timing field as an int (the defaults when absent or not a number; admission fills them in)."""
    value = probe.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    """probe.ResolveContainerPort: a number, or the name of one of the container's ports (else a number in a string)."""
    if isinstance(port, bool):
        raise ProbeError(f"intOrString had no kind: {port}")
    if isinstance(port, int):
        value = port
    elif isinstance(port, str):
        named = next((p.get("containerPort") for p in container.get("ports") or []
                      if isinstance(p, dict) and p.get("name") == port), None)
        if isinstance(named, int):
            value = named
        elif re.fullmatch(r"[+-]?[0-9]+", port):  # the last resort: a number in a string (strconv.Atoi)
            value = int(port)
        else:
            raise ProbeError(f'strconv.Atoi: parsing "{port}": invalid syntax')
    else:
        raise ProbeError(f"intOrString had no kind: {port}")
    if 0 < value < 65536:
        return value
    raise ProbeError(f"invalid port number: {value}")


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def canonical_header(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey (``x-custom-header`` → ``X-Custom-Header``); names with other bytes
    than letters, digits and '-' stay as they are."""
    if not re.fullmatch(r"[A-Za-z0-9-]+", name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


@dataclass(frozen=True)
class HTTPRequest:
    url: str  # as Go's url.String() gives it (in error texts)
    scheme: str  # http | https
    host: str  # where to connect
    port: int
    target: str  # the request line's path and query
    headers: tuple[tuple[str, str], ...]  # in order, canonical names, Host excluded
    host_header: str  # the Host header (the httpHeaders' Host, else host:port)


def http_request(http_get: dict[str, Any], container: dict[str, Any], pod_ip: str) -> HTTPRequest:
    """NewRequestForHTTPGetAction: scheme (lower-cased, default http), host (default the pod's IP), the port resolved,
    the path as given (a query in it kept), headers with User-Agent ``kube-probe/1.32`` and ``Accept: */*`` unless
    set (an empty Accept removes it), a Host header becoming the request's host."""
    scheme = str(http_get.get("scheme") or "http").lower()
    host = str(http_get.get("host") or pod_ip)
    port = resolve_port(http_get.get("port"), container)
    path = str(http_get.get("path") or "")
    parts = urlsplit(path) if path.startswith("/") or not path else urlsplit("/" + path)
    escaped = quote(parts.path, safe="/%:@!$&'()*+,;=-._~")  # as Go's URL.EscapedPath
    target = (escaped or "/") + (f"?{parts.query}" if parts.query else "")
    url = f"{scheme}://{join_host_port(host, port)}{escaped}{'?' + parts.query if parts.query else ''}"
    headers: dict[str, list[str]] = {}
    for h in http_get.get("httpHeaders") or []:
        if isinstance(h, dict) and h.get("name"):
            headers.setdefault(canonical_header(str(h["name"])), []).append(str(h.get("value") or ""))
    if "User-Agent" not in headers:
        headers["User-Agent"] = [USER_AGENT]
    if "Accept" not in headers:
        headers["Accept"] = ["*/*"]
    elif headers["Accept"][0] == "":
        del headers["Accept"]
    host_values = headers.pop("Host", None)  # Go: req.Host = headers.Get("Host"); else the URL's host:port
    host_header = (host_values[0] if host_values else "") or join_host_port(host, port)
    flat = tuple((k, v) for k, vs in headers.items() for v in vs)
    return HTTPRequest(url, scheme, host, port, target, flat, host_header)


def http_outcome(status: int, body: bytes) -> tuple[str, str]:
    """DoHTTPProbe on a response: 2xx success (the body as output), 3xx a warning (a redirect it did not follow),
    anything else a failure that names only the status code (issue 99425: never the body)."""
    text = body.decode("utf-8", errors="replace")
    if 200 <= status < 400:
        if status >= 300:
            return WARNING, f"Probe terminated redirects, Response body: {text}"
        return SUCCESS, text
    return FAILURE, f"HTTP probe failed with statuscode: {status}"


def exec_outcome(exit_code: int, output: bytes) -> tuple[str, str]:
    """exec.Probe: exit 0 success, anything else failure; the output (stdout then stderr) at most 10 KiB."""
    text = output[:MAX_EXEC_OUTPUT].decode("utf-8", errors="replace")
    return (SUCCESS if exit_code == 0 else FAILURE), text


def dial_error(addr: str, exc: BaseException) -> str:
    """Go's net.OpError text for a failed TCP dial (``dial tcp 10.244.0.5:8080: connect: connection refused``)."""
    if isinstance(exc, TimeoutError):
        return f"dial tcp {addr}: i/o timeout"
    if isinstance(exc, socket.gaierror):
        return f"dial tcp: lookup {addr.rsplit(':', 1)[0].strip('[]')}: no such host"
    if isinstance(exc, OSError) and exc.errno:
        words = {errno.ECONNREFUSED: "connection refused", errno.EHOSTUNREACH: "no route to host",
                 errno.ENETUNREACH: "network is unreachable", errno.ECONNRESET: "connection reset by peer"}
        return f"dial tcp {addr}: connect: {words.get(exc.errno, (exc.strerror or str(exc)).lower())}"
    return f"dial tcp {addr}: {exc}"


def expand_static(command: list[str], env: list[dict[str, Any]] | None) -> list[str]:
    """ExpandContainerCommandOnlyStatic: $(VAR) from the container's literal env values only ($$ is a literal $)."""
    values = {str(e.get("name")): str(e.get("value") or "") for e in env or []
              if isinstance(e, dict) and e.get("name") and "valueFrom" not in e}
    pattern = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")
    return [pattern.sub(lambda m: "$" if m.group(0) == "$$" else values.get(m.group(1), m.group(0)), str(a))
            for a in command]


# -- running one probe ---------------------------------------------------------------------------------------------

class Runner(Protocol):
    """What the kubelet gives the prober: run a command in a container, dial an address as the node does."""

    def probe_exec(self, uid: str, container: str, container_id: str, argv: list[str],
                   timeout: float) -> tuple[int, bytes]: ...

    def probe_connect(self, host: str, port: int, timeout: float) -> socket.socket: ...


def tcp_probe(runner: Runner, host: str, port: int, timeout: float) -> tuple[str, str]:
    """tcp.DoTCPProbe: success when a connection opens (and is closed at once), else failure with the dial's error."""
    try:
        sock = runner.probe_connect(host, port, timeout)
    except OSError as exc:
        return FAILURE, dial_error(join_host_port(host, port), exc)
    sock.close()
    return SUCCESS, ""


class _Conn(HTTPConnection):
    def __init__(self, sock: socket.socket, host: str, timeout: float) -> None:
        super().__init__(host, timeout=timeout)
        self.sock = sock

    def connect(self) -> None:  # already connected
        pass


class _TLSConn(HTTPSConnection):
    def __init__(self, sock: socket.socket, host: str, timeout: float, server_name: str | None) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the kubelet's prober: InsecureSkipVerify
        super().__init__(host, timeout=timeout, context=ctx)
        self.sock = ctx.wrap_socket(sock, server_hostname=server_name)

    def connect(self) -> None:
        pass


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def http_probe(runner: Runner, req: HTTPRequest, timeout: float) -> tuple[str, str]:
    """DoHTTPProbe with the prober's client: one connection per request (DisableKeepAlives), TLS unverified, gzip
    asked for and undone, redirects followed on the same host (at most 10), a redirect elsewhere returned as it is,
    ``timeout`` for the whole exchange. Transport failures are failures whose output is Go's ``url.Error`` text."""
    deadline = time.monotonic() + timeout
    url, current = req.url, req
    for hops in range(MAX_REDIRECTS + 1):
        status, location, body = _one_request(runner, current, url, deadline)
        if status in (301, 302, 303, 307, 308) and location:
            nxt = urljoin(url, location)
            parts = urlsplit(nxt)
            if parts.scheme not in ("http", "https") or parts.hostname != urlsplit(url).hostname:
                return http_outcome(status, body)  # RedirectChecker: a non-local redirect is not followed
            if hops == MAX_REDIRECTS:
                return FAILURE, f'Get "{nxt}": stopped after {MAX_REDIRECTS} redirects'
            port = parts.port or (443 if parts.scheme == "https" else 80)
            host = parts.hostname or current.host
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            relative = not urlsplit(location).netloc  # Go keeps a set Host header for a relative redirect
            current = HTTPRequest(nxt, parts.scheme, host, port, target, current.headers,
                                  current.host_header if relative else join_host_port(host, port))
            url = nxt
            continue
        return http_outcome(status, body)
    raise AssertionError("unreachable")


def _one_request(runner: Runner, req: HTTPRequest, url: str, deadline: float) -> tuple[int, str, bytes]:
    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    timeout_text = f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    try:
        sock = runner.probe_connect(req.host, req.port, left())
    except TimeoutError:
        raise _Result(FAILURE, timeout_text) from None
    except OSError as exc:
        raise _Result(FAILURE, f'Get "{url}": {dial_error(join_host_port(req.host, req.port), exc)}') from None
    local = join_host_port(*sock.getsockname()[:2])
    conn: HTTPConnection | None = None
    try:
        try:
            if req.scheme == "https":
                sock.settimeout(left())
                conn = _TLSConn(sock, req.host, left(), None if _is_ip(req.host) else req.host)
            else:
                conn = _Conn(sock, req.host, left())
        except ssl.SSLError as exc:
            sock.close()
            raise _Result(FAILURE, f'Get "{url}": {_tls_error(exc)}') from None
        conn.putrequest("GET", req.target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", req.host_header)
        for k, v in req.headers:
            conn.putheader(k, v)
        conn.putheader("Accept-Encoding", "gzip")
        conn.putheader("Connection", "close")
        conn.endheaders()
        wire = conn.sock  # the response keeps reading from it after the connection lets go (Connection: close)
        resp = conn.getresponse()
        status, location = resp.status, resp.getheader("Location") or ""
        try:
            wire.settimeout(left())  # type: ignore[union-attr]
            gzipped = resp.getheader("Content-Encoding", "").lower() == "gzip"  # Go's transport undoes it
            raw = resp.read(MAX_GZIP_READ if gzipped else MAX_BODY)
            if gzipped:
                raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, MAX_BODY)
        except TimeoutError:
            raise ProbeError("context deadline exceeded (Client.Timeout or context cancellation while reading body)",
                             FAILURE) from None
        except (OSError, HTTPException, zlib.error) as exc:
            raise ProbeError(str(exc) or type(exc).__name__, FAILURE) from None
        return status, location, raw[:MAX_BODY]
    except TimeoutError:
        raise _Result(FAILURE, timeout_text) from None
    except ssl.SSLError as exc:
        raise _Result(FAILURE, f'Get "{url}": {_tls_error(exc)}') from None
    except RemoteDisconnected:  # closed without an answer
        raise _Result(FAILURE, f'Get "{url}": EOF') from None
    except ConnectionResetError:
        raise _Result(FAILURE, f'Get "{url}": read tcp {local}->{join_host_port(req.host, req.port)}: read: '
                               "connection reset by peer") from None
    except (HTTPException, OSError) as exc:
        raise _Result(FAILURE, f'Get "{url}": {exc}') from None
    finally:
        if conn is not None:
            conn.close()
        else:
            sock.close()


def _tls_error(exc: ssl.SSLError) -> str:
    if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc) or "packet length" in str(exc):
        return "http: server gave HTTP response to HTTPS client"
    return f"remote error: tls: {exc.reason or exc}".lower()


class _Result(Exception):
    def __init__(self, result: str, output: str) -> None:
        super().__init__(output)
        self.result, self.output = result, output


def run_probe(runner: Runner, probe: dict[str, Any], container: dict[str, Any], uid: str, container_id: str,
              pod_ip: str) -> tuple[str, str]:
    """prober.runProbe: one try of the probe's handler; (result, output), or ProbeError when it could not run."""
    timeout = float(seconds(probe, "timeoutSeconds", 1))
    if isinstance(probe.get("exec"), dict):
        argv = expand_static(list(probe["exec"].get("command") or []), container.get("env"))
        try:
            code, output = runner.probe_exec(uid, container["name"], container_id, argv, timeout)
        except ExecTimeout:
            return FAILURE, f"command {json.dumps(' '.join(argv))} timed out"
        return exec_outcome(code, output)
    if isinstance(probe.get("httpGet"), dict):
        req = http_request(probe["httpGet"], container, pod_ip)
        try:
            return http_probe(runner, req, timeout)
        except _Result as r:
            return r.result, r.output
    if isinstance(probe.get("tcpSocket"), dict):
        port = resolve_port(probe["tcpSocket"].get("port"), container)
        return tcp_probe(runner, str(probe["tcpSocket"].get("host") or pod_ip), port, timeout)
    if isinstance(probe.get("grpc"), dict):
        raise ProbeError("the lab's kubelet does not run gRPC probes (it has no gRPC client); "
                         "use an exec, httpGet or tcpSocket probe")
    raise ProbeError(f"missing probe handler for {container.get('name')}")


# -- the worker ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ContainerView:
    """What a worker needs of its container: the kubelet's status of it (podutil.GetContainerStatus)."""

    container_id: str  # "" before the first start
    running: bool
    started_at: float  # epoch seconds of the current run
    terminated: bool  # exited (not waiting to restart)


@dataclass(frozen=True)
class PodView:
    finished: bool  # phase Succeeded or Failed
    deleting: bool  # deletionTimestamp set
    pod_ip: str
    containers: dict[str, ContainerView] = field(default_factory=dict)


class Manager:
    """The probe manager: workers by (pod uid, container, type), their results by container id."""

    def __init__(self, runner: Runner, event: Callable[..., None], view: Callable[[str], PodView | None],
                 on_change: Callable[[], None], clock: Callable[[], float] = time.time) -> None:
        self.runner = runner
        self.event = event  # (pod, type, reason, message, fieldPath)
        self.view = view
        self.on_change = on_change
        self.clock = clock
        self.workers: dict[tuple[str, str, str], Worker] = {}
        self.results: dict[tuple[str, str, str], tuple[str, str]] = {}  # (uid, container, type) → (container id, result)
        self._lock = threading.Lock()

    # -- workers ---------------------------------------------------------------------------------------------------
    def add_pod(self, pod: dict[str, Any], start: bool = True) -> None:
        """AddPod: a worker per probe of each regular container (init containers have none: validation forbids)."""
        uid = pod["metadata"]["uid"]
        for c in pod["spec"].get("containers") or []:
            for t in TYPES:
                spec = c.get(FIELD[t])
                if not isinstance(spec, dict):
                    continue
                key = (uid, c["name"], t)
                with self._lock:
                    if key in self.workers:
                        continue
                    w = Worker(self, pod, c, t)
                    self.workers[key] = w
                if start:
                    w.start()

    def remove_pod(self, uid: str) -> None:
        with self._lock:
            ws = [w for k, w in self.workers.items() if k[0] == uid]
        for w in ws:
            w.stop()

    def stop_all(self, wait: float = 2.0) -> None:
        with self._lock:
            ws = list(self.workers.values())
        for w in ws:
            w.stop()
        end = time.monotonic() + wait
        for w in ws:
            if w.thread is not None:
                w.thread.join(max(0.0, end - time.monotonic()))

    def _remove_worker(self, w: Worker) -> None:
        with self._lock:
            if self.workers.get(w.key) is w:
                del self.workers[w.key]
            self.results.pop(w.key, None)

    def has_worker(self, uid: str, container: str, type_: str) -> bool:
        with self._lock:
            return (uid, container, type_) in self.workers

    # -- results ---------------------------------------------------------------------------------------------------
    def set_result(self, key: tuple[str, str, str], container_id: str, result: str) -> None:
        with self._lock:
            old = self.results.get(key)
            self.results[key] = (container_id, result)
        if old != (container_id, result):
            self.on_change()

    def result(self, uid: str, container: str, type_: str, container_id: str) -> str | None:
        with self._lock:
            got = self.results.get((uid, container, type_))
        return got[1] if got and got[0] == container_id else None

    def status(self, uid: str, container: str, container_id: str, running: bool) -> dict[str, bool]:
        """UpdatePodStatus for one container: ``started`` (its startup probe succeeded, or it has none) and ``ready``
        (started, running, and its readiness probe's result is success, or it has none). {} for a container with no
        probes (the kubelet's default: both follow running)."""
        probes = {t for t in TYPES if self.has_worker(uid, container, t)}
        if not probes:
            return {}
        if not running:
            return {"started": False, "ready": False}
        if STARTUP in probes:
            started = self.result(uid, container, STARTUP, container_id) == SUCCESS
        else:
            started = True
        if not started:
            return {"started": False, "ready": False}
        if READINESS in probes:
            got = self.result(uid, container, READINESS, container_id)
            ready = got == SUCCESS
            if got is None:  # the worker has not seen this container yet: run it now
                with self._lock:
                    w = self.workers.get((uid, container, READINESS))
                if w is not None:
                    w.trigger()
        else:
            ready = True
        return {"started": True, "ready": ready}

    def kill_reason(self, uid: str, container: str, container_id: str) -> str | None:
        """computePodActions: ``liveness`` or ``startup`` when that probe's result for this container is failure."""
        for t in (LIVENESS, STARTUP):
            if self.result(uid, container, t, container_id) == FAILURE:
                return t
        return None


class Worker:
    """One probe of one container (worker.go). ``do_probe`` is one round; ``run`` the loop on its own thread."""

    def __init__(self, manager: Manager, pod: dict[str, Any], container: dict[str, Any], type_: str) -> None:
        self.manager = manager
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        self.container = container
        self.type = type_
        self.spec: dict[str, Any] = container[FIELD[type_]]
        self.key = (self.uid, container["name"], type_)
        self.container_id = ""
        self.last_result: str | None = None
        self.result_run = 0
        self.on_hold = False
        self._stop = threading.Event()
        self._trigger = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True,
                                       name=f"probe-{self.type}-{self.container['name']}")
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._trigger.set()

    def trigger(self) -> None:
        self._trigger.set()

    def run(self) -> None:
        period = seconds(self.spec, "periodSeconds", 10)
        tick = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    keep = self.do_probe()
                except Exception:  # noqa: BLE001 - as HandleCrash: a probe's bug never ends the worker
                    log.exception("probe worker %s failed", self.key)
                    keep = True
                if not keep:
                    break
                tick += period  # a ticker: every period, however long the probe took
                now = time.monotonic()
                if tick < now:
                    tick = now
                if self._trigger.wait(tick - now):
                    tick = time.monotonic()  # a manual run starts the count again
                self._trigger.clear()
        finally:
            self.manager._remove_worker(self)

    def _set(self, result: str) -> None:
        self.manager.set_result(self.key, self.container_id, result)

    def do_probe(self) -> bool:
        """One round of worker.doProbe; False when the worker should end."""
        pv = self.manager.view(self.uid)
        if pv is None:
            return not self._stop.is_set()  # not known (yet, or any more): the kubelet stops us when it is gone
        if pv.finished:
            return False
        c = pv.containers.get(self.container["name"])
        if c is None or not c.container_id:
            return True  # not created yet
        if c.container_id != self.container_id:
            self.container_id = c.container_id
            self._set(INITIAL[self.type])
            self.on_hold = False  # a new container: probe again
            self.last_result, self.result_run = None, 0
        if self.on_hold:
            return True
        if not c.running:
            self._set(FAILURE)
            return not c.terminated or self.pod["spec"].get("restartPolicy", "Always") != "Never"
        if pv.deleting and self.type in (LIVENESS, STARTUP):
            self._set(SUCCESS)  # a quiet shutdown
            return False
        if int(self.manager.clock() - c.started_at) < seconds(self.spec, "initialDelaySeconds", 0):
            return True
        name = self.container["name"]
        started = (not self.manager.has_worker(self.uid, name, STARTUP)
                   or self.manager.result(self.uid, name, STARTUP, c.container_id) == SUCCESS)
        if started and self.type == STARTUP:
            return True  # the startup probe's work is done for this container
        if not started and self.type != STARTUP:
            return True  # the others wait for the container to have started
        result = self.probe_once(pv.pod_ip, c.container_id)
        if result is None:
            return True  # the probe errored: its result is thrown away
        if result == self.last_result:
            self.result_run += 1
        else:
            self.last_result, self.result_run = result, 1
        if (result == FAILURE and self.result_run < seconds(self.spec, "failureThreshold", 3)) or \
                (result == SUCCESS and self.result_run < seconds(self.spec, "successThreshold", 1)):
            return True
        self._set(result)
        if self.type in (LIVENESS, STARTUP) and result == FAILURE:
            self.on_hold = True  # until the container is replaced
            self.result_run = 0
        return True

    def probe_once(self, pod_ip: str, container_id: str) -> str | None:
        """prober.probe: run with retries on errors, record the kubelet's event; SUCCESS, FAILURE or None (errored)."""
        title = TITLE[self.type]
        error = ""
        result, output = UNKNOWN, ""
        for _ in range(MAX_RETRIES):
            try:
                result, output = run_probe(self.manager.runner, self.spec, self.container, self.uid, container_id, pod_ip)
                error = ""
                break
            except ProbeError as exc:
                result, error = exc.result, str(exc)
        if self._stop.is_set():
            return None
        fp = f"spec.containers{{{self.container['name']}}}"
        if error:
            self.manager.event(self.pod, "Warning", "Unhealthy",
                               f"{title} probe errored and resulted in {result} state: {error}", fp)
            return None
        if result == WARNING:
            self.manager.event(self.pod, "Warning", "ProbeWarning", f"{title} probe warning: {output}", fp)
            return SUCCESS
        if result == FAILURE:
            self.manager.event(self.pod, "Warning", "Unhealthy", f"{title} probe failed: {output}", fp)
            return FAILURE
        return SUCCESS if result == SUCCESS else FAILURE
