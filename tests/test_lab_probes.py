"""The kubelet's probes: liveness, readiness and startup by exec, httpGet and tcpSocket, as upstream's prober runs them
(thresholds, the startup gate, the events' words), their defaults and 422s at admission, and — on a real lab —
containers restarted for a failed liveness probe and a not-ready pod leaving its Service's EndpointSlice."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kperflab.lab import lifecycle, prober, validation
from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.store import Store

from .conftest import needs_root, wait_pod

KUBECTL = shutil.which("kubectl")


# -- pure parts ------------------------------------------------------------------------------------------------------

def test_request_as_the_prober_builds_it():
    c = {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}
    req = prober.http_request({"path": "/healthz?full=1", "port": "http", "scheme": "HTTP",
                               "httpHeaders": [{"name": "x-custom", "value": "a"}, {"name": "X-Custom", "value": "b"}]},
                              c, "10.244.0.7")
    assert req.url == "http://10.244.0.7:8080/healthz?full=1" and req.target == "/healthz?full=1"
    assert req.host_header == "10.244.0.7:8080"
    assert req.headers == (("X-Custom", "a"), ("X-Custom", "b"), ("User-Agent", "kube-probe/1.32"), ("Accept", "*/*"))
    own = prober.http_request({"path": "/", "port": 80, "scheme": "HTTPS", "host": "127.0.0.1",
                               "httpHeaders": [{"name": "Host", "value": "example.com"},
                                               {"name": "User-Agent", "value": "mine"}, {"name": "Accept", "value": ""}]},
                              c, "10.244.0.7")
    assert own.scheme == "https" and own.host == "127.0.0.1" and own.host_header == "example.com"
    assert own.headers == (("User-Agent", "mine"),), "a set User-Agent stays, an empty Accept is dropped"


def test_ports_resolve_as_the_kubelet_does():
    c = {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}
    assert prober.resolve_port("http", c) == 8080 and prober.resolve_port("9090", c) == 9090
    assert prober.resolve_port(81, c) == 81
    with pytest.raises(prober.ProbeError, match=r'^strconv.Atoi: parsing "metrics": invalid syntax$'):
        prober.resolve_port("metrics", c)
    with pytest.raises(prober.ProbeError, match="^invalid port number: 0$"):
        prober.resolve_port(0, c)


def test_outcomes_and_their_words():
    assert prober.http_outcome(204, b"") == (prober.SUCCESS, "")
    assert prober.http_outcome(500, b"secret body") == (prober.FAILURE, "HTTP probe failed with statuscode: 500")
    assert prober.http_outcome(302, b"moved") == (prober.WARNING, "Probe terminated redirects, Response body: moved")
    assert prober.exec_outcome(1, b"x" * 20000)[1] == "x" * 10240, "exec output is cut at 10 KiB"
    assert prober.expand_static(["sh", "-c", "echo $(A) $(B) $$(A)"],
                                [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {}}]) == \
        ["sh", "-c", "echo 1 $(B) $(A)"]
    refused = ConnectionRefusedError(111, "Connection refused")
    assert prober.dial_error("10.0.0.1:80", refused) == "dial tcp 10.0.0.1:80: connect: connection refused"
    assert prober.dial_error("10.0.0.1:80", TimeoutError()) == "dial tcp 10.0.0.1:80: i/o timeout"


def test_kill_words_grace_and_restart():
    assert lifecycle.probe_kill_message("web", "liveness", "Always") == "Container web failed liveness probe, will be restarted"
    assert lifecycle.probe_kill_message("web", "startup", "Never") == "Container web failed startup probe"
    pod = {"terminationGracePeriodSeconds": 30}
    assert lifecycle.probe_kill_grace(pod, {"livenessProbe": {"terminationGracePeriodSeconds": 5}}, "livenessProbe") == 5
    assert lifecycle.probe_kill_grace(pod, {"livenessProbe": {}}, "livenessProbe") == 30
    assert lifecycle.probe_kill_grace({"terminationGracePeriodSeconds": 0}, {}, "startupProbe") == 2
    assert lifecycle.should_restart("OnFailure", 0, killed_by_probe=True)
    assert not lifecycle.should_restart("Never", 137, killed_by_probe=True)
    assert not lifecycle.should_restart("OnFailure", 0)


# -- HTTP and TCP probes on real sockets ------------------------------------------------------------------------------

class _Host:
    """A runner dialing this machine, as the process runtime's kubelet does."""

    def probe_connect(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((host, port), timeout=timeout)

    def probe_exec(self, *a: Any) -> tuple[int, bytes]:
        raise AssertionError("no exec here")


@pytest.fixture
def web():
    seen: list[dict[str, str]] = []

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append({"path": self.path, **{k: v for k, v in self.headers.items()}})
            routes = {"/ok": (200, {}), "/bad": (500, {}), "/here": (302, {"Location": "/ok"}),
                      "/away": (301, {"Location": "http://elsewhere.invalid/"}), "/loop": (302, {"Location": "/loop"})}
            if self.path == "/slow":
                time.sleep(1.5)
            code, headers = routes.get(self.path, (404, {}))
            body = f"body of {self.path}".encode()
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], seen
    srv.shutdown()
    srv.server_close()


def _http(port, path, timeout=1.0):
    return prober.run_probe(_Host(), {"httpGet": {"path": path, "port": port, "scheme": "HTTP"}, "timeoutSeconds": timeout},
                            {"name": "web"}, "uid", "cid", "127.0.0.1")


def test_http_probe_against_a_server(web):
    port, seen = web
    assert _http(port, "/ok") == (prober.SUCCESS, "body of /ok")
    assert seen[-1]["User-Agent"] == "kube-probe/1.32" and seen[-1]["Accept"] == "*/*"
    assert seen[-1]["Host"] == f"127.0.0.1:{port}" and seen[-1]["Connection"] == "close"
    assert _http(port, "/bad") == (prober.FAILURE, "HTTP probe failed with statuscode: 500")
    assert _http(port, "/here") == (prober.SUCCESS, "body of /ok"), "a redirect on the same host is followed"
    assert _http(port, "/away") == (prober.WARNING, "Probe terminated redirects, Response body: body of /away")
    assert _http(port, "/loop") == (prober.FAILURE, f'Get "http://127.0.0.1:{port}/loop": stopped after 10 redirects')
    assert _http(port, "/slow", timeout=1) == (
        prober.FAILURE, f'Get "http://127.0.0.1:{port}/slow": context deadline exceeded (Client.Timeout exceeded while '
                        "awaiting headers)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert _http(closed, "/") == (
        prober.FAILURE, f'Get "http://127.0.0.1:{closed}/": dial tcp 127.0.0.1:{closed}: connect: connection refused')


def test_https_probe_skips_verification_and_plain_http_is_named(web, tmp_path):
    import ssl

    from kperflab.lab import pki

    _, cert, key = pki.write_tls(pki.make_server_tls(), tmp_path / "tls")  # signed by a CA the prober never sees
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        for _ in range(2):
            conn, _ = srv.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure")
            except (ssl.SSLError, OSError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    probe = {"httpGet": {"path": "/", "port": srv.getsockname()[1], "scheme": "HTTPS"}, "timeoutSeconds": 2}
    assert prober.run_probe(_Host(), probe, {"name": "c"}, "u", "c", "127.0.0.1") == (prober.SUCCESS, "secure")
    srv.close()
    port, _ = web
    probe = {"httpGet": {"path": "/ok", "port": port, "scheme": "HTTPS"}, "timeoutSeconds": 2}
    assert prober.run_probe(_Host(), probe, {"name": "c"}, "u", "c", "127.0.0.1") == (
        prober.FAILURE, f'Get "https://127.0.0.1:{port}/ok": http: server gave HTTP response to HTTPS client')


def test_tcp_probe(web):
    port, _ = web
    probe = {"tcpSocket": {"port": port}, "timeoutSeconds": 1}
    assert prober.run_probe(_Host(), probe, {"name": "c"}, "u", "c", "127.0.0.1") == (prober.SUCCESS, "")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    probe = {"tcpSocket": {"port": closed}, "timeoutSeconds": 1}
    assert prober.run_probe(_Host(), probe, {"name": "c"}, "u", "c", "127.0.0.1") == (
        prober.FAILURE, f"dial tcp 127.0.0.1:{closed}: connect: connection refused")


# -- the worker's logic, on a fake kubelet ---------------------------------------------------------------------------

class FakeKubelet:
    def __init__(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.events: list[tuple[str, str, str]] = []
        self.exec_results: dict[str, list[Any]] = {}  # the command's first word → results in turn
        self.view = prober.PodView(False, False, "10.0.0.9", {})
        self.now = 1000.0
        self.manager = prober.Manager(self, self.event, lambda uid: self.view, lambda: None, clock=lambda: self.now)
        self.manager.add_pod(pod, start=False)

    def event(self, pod, type_, reason, message, fp=""):
        self.events.append((type_, reason, message))

    def probe_exec(self, uid, container, cid, argv, timeout):
        got = self.exec_results[argv[0]].pop(0)
        if isinstance(got, BaseException):
            raise got
        return got

    def probe_connect(self, host, port, timeout):
        raise ConnectionRefusedError(111, "refused")

    def container(self, cid: str, running: bool = True, started_at: float = 1000.0) -> None:
        self.view = prober.PodView(False, False, "10.0.0.9",
                                   {"c": prober.ContainerView(cid, running, started_at, not running)})

    def step(self, type_: str) -> bool:
        return self.manager.workers[("u1", "c", type_)].do_probe()


def _pod(**probes: Any) -> dict[str, Any]:
    c = {"name": "c", "image": "busybox"}
    for key, p in probes.items():
        c[key] = {"periodSeconds": 1, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3, **p}
    return {"metadata": {"uid": "u1", "name": "p", "namespace": "ns"}, "spec": {"restartPolicy": "Always", "containers": [c]}}


def test_liveness_fails_after_its_threshold_then_holds_until_a_new_container():
    k = FakeKubelet(_pod(livenessProbe={"exec": {"command": ["check"]}, "failureThreshold": 2}))
    k.exec_results["check"] = [(1, b"not yet\n"), (1, b"not yet\n"), (0, b"")]
    k.container("c1")
    assert k.step("liveness") and k.manager.kill_reason("u1", "c", "c1") is None, "one failure is below the threshold"
    assert k.step("liveness") and k.manager.kill_reason("u1", "c", "c1") == "liveness"
    assert k.events == [("Warning", "Unhealthy", "Liveness probe failed: not yet\n")] * 2
    k.step("liveness")
    assert len(k.events) == 2, "on hold: no probe until the container is replaced"
    k.container("c2")
    k.step("liveness")
    assert k.manager.kill_reason("u1", "c", "c2") is None and k.exec_results["check"] == []


def test_readiness_starts_unready_and_follows_its_thresholds():
    k = FakeKubelet(_pod(readinessProbe={"exec": {"command": ["ready"]}, "successThreshold": 2, "failureThreshold": 1}))
    k.exec_results["ready"] = [(0, b""), (0, b""), (3, b"gone"), prober.ExecTimeout()]
    k.container("c1")
    assert k.manager.status("u1", "c", "c1", True) == {"started": True, "ready": False}
    k.step("readiness")
    assert not k.manager.status("u1", "c", "c1", True)["ready"], "successThreshold 2: one success is not enough"
    k.step("readiness")
    assert k.manager.status("u1", "c", "c1", True)["ready"]
    k.step("readiness")
    assert not k.manager.status("u1", "c", "c1", True)["ready"]
    k.step("readiness")
    assert k.events[-1] == ("Warning", "Unhealthy", 'Readiness probe failed: command "ready" timed out')
    assert k.manager.status("u1", "c", "c1", False) == {"started": False, "ready": False}


def test_startup_gates_the_others_and_initial_delay_waits():
    k = FakeKubelet(_pod(startupProbe={"exec": {"command": ["up"]}, "initialDelaySeconds": 5},
                         livenessProbe={"exec": {"command": ["live"]}}))
    k.exec_results.update({"up": [(1, b""), (0, b"")], "live": [(0, b"")]})
    k.container("c1", started_at=1000.0)
    k.now = 1003.0
    k.step("startup")
    k.step("liveness")
    assert k.exec_results["up"] == [(1, b""), (0, b"")], "inside initialDelaySeconds nothing runs"
    k.now = 1005.0
    k.step("liveness")
    assert k.exec_results["live"] == [(0, b"")], "liveness waits for the startup probe"
    k.step("startup")
    assert k.manager.status("u1", "c", "c1", True) == {"started": False, "ready": False}
    k.step("startup")
    assert k.manager.status("u1", "c", "c1", True) == {"started": True, "ready": True}
    assert k.step("startup") and k.exec_results["up"] == [], "a started container's startup probe rests"
    k.step("liveness")
    assert k.exec_results["live"] == []


def test_an_erroring_probe_is_retried_and_its_result_thrown_away():
    k = FakeKubelet(_pod(livenessProbe={"exec": {"command": ["x"]}, "failureThreshold": 1},
                         readinessProbe={"grpc": {"port": 9000}}))
    k.exec_results["x"] = [prober.ProbeError("no such container")] * 3
    k.container("c1")
    k.step("liveness")
    assert k.exec_results["x"] == [] and k.manager.kill_reason("u1", "c", "c1") is None
    assert k.events == [("Warning", "Unhealthy", "Liveness probe errored and resulted in unknown state: no such container")]
    k.step("readiness")
    assert "Readiness probe errored" in k.events[-1][2] and "gRPC" in k.events[-1][2]
    assert not k.manager.status("u1", "c", "c1", True)["ready"]


def test_pod_deletion_quiets_liveness_and_an_ended_pod_stops_workers():
    k = FakeKubelet(_pod(livenessProbe={"exec": {"command": ["x"]}}, readinessProbe={"tcpSocket": {"port": 80}}))
    k.container("c1")
    k.view = prober.PodView(False, True, "10.0.0.9", k.view.containers)
    assert not k.step("liveness") and k.manager.result("u1", "c", "liveness", "c1") == prober.SUCCESS
    k.view = prober.PodView(True, True, "10.0.0.9", k.view.containers)
    assert not k.step("readiness")


# -- admission ---------------------------------------------------------------------------------------------------

@pytest.fixture
def api():
    from kperflab.lab.server import version_info

    s = Store()
    s.create("v1/namespaces", {"metadata": {"name": "default"}, "status": {"phase": "Active"}})
    return APIServer(s, "tok", version=version_info())


def _post(api, containers, init=None):
    spec: dict[str, Any] = {"containers": containers}
    if init:
        spec["initContainers"] = init
    body = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}).encode()
    return api.handle(Request("POST", "/api/v1/namespaces/default/pods", {},
                              {"content-type": "application/json", "accept": "application/json",
                               "authorization": "Bearer tok"}, body))


def test_probe_defaults_at_admission(api):
    r = _post(api, [{"name": "c", "image": "busybox", "readinessProbe": {"httpGet": {"port": 80}},
                     "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 0, "initialDelaySeconds": 3}}])
    assert r.code == 201, r.body
    c = r.body["spec"]["containers"][0]
    assert c["readinessProbe"] == {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["livenessProbe"]["periodSeconds"] == 10 and c["livenessProbe"]["initialDelaySeconds"] == 3


@pytest.mark.parametrize("container,causes", [
    ({"livenessProbe": {}}, [("spec.containers[0].livenessProbe", "FieldValueRequired",
                              "Required value: must specify a handler type")]),
    ({"readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}},
     [("spec.containers[0].readinessProbe.tcpSocket", "FieldValueForbidden",
       "Forbidden: may not specify more than 1 handler type")]),
    ({"livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2}},
     [("spec.containers[0].livenessProbe.successThreshold", "FieldValueInvalid", "Invalid value: 2: must be 1")]),
    ({"startupProbe": {"tcpSocket": {"port": 0}, "periodSeconds": -1}},
     [("spec.containers[0].startupProbe.tcpSocket.port", "FieldValueInvalid",
       "Invalid value: 0: must be between 1 and 65535, inclusive"),
      ("spec.containers[0].startupProbe.periodSeconds", "FieldValueInvalid",
       "Invalid value: -1: must be greater than or equal to 0")]),
    ({"readinessProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 5}},
     [("spec.containers[0].readinessProbe.terminationGracePeriodSeconds", "FieldValueInvalid",
       "Invalid value: 5: must not be set for readinessProbes")]),
    ({"livenessProbe": {"httpGet": {"port": "Web_Port", "scheme": "FTP", "httpHeaders": [{"name": "a b", "value": ""}]}}},
     [("spec.containers[0].livenessProbe.httpGet.port", "FieldValueInvalid",
       'Invalid value: "Web_Port": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)'),
      ("spec.containers[0].livenessProbe.httpGet.scheme", "FieldValueNotSupported",
       'Unsupported value: "FTP": supported values: "HTTP", "HTTPS"'),
      ("spec.containers[0].livenessProbe.httpGet.httpHeaders", "FieldValueInvalid",
       "Invalid value: \"a b\": a valid HTTP header must consist of alphanumeric characters or '-' (e.g. "
       "'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')")]),
    ({"livenessProbe": {"exec": {"command": []}, "terminationGracePeriodSeconds": 0}},
     [("spec.containers[0].livenessProbe.exec.command", "FieldValueRequired", "Required value"),
      ("spec.containers[0].livenessProbe.terminationGracePeriodSeconds", "FieldValueInvalid",
       "Invalid value: 0: must be greater than 0")]),
])
def test_probe_422s(api, container, causes):
    r = _post(api, [{"name": "c", "image": "busybox", **container}])
    assert r.code == 422, r.body
    got = [(c["field"], c["reason"], c["message"]) for c in r.body["details"]["causes"]]
    assert got == causes
    assert r.body["message"].startswith('Pod "p" is invalid: ')


def test_init_containers_may_not_have_probes(api):
    r = _post(api, [{"name": "c", "image": "busybox"}],
              init=[{"name": "i", "image": "busybox", "readinessProbe": {"exec": {"command": ["true"]}}}])
    assert r.code == 422
    assert [(c["field"], c["message"]) for c in r.body["details"]["causes"]] == [
        ("spec.initContainers[0].readinessProbe", "Forbidden: may not be set for init containers without restartPolicy=Always")]


def test_defaults_reach_pod_templates():
    tmpl = {"spec": {"containers": [{"name": "c", "image": "b", "startupProbe": {"exec": {"command": ["true"]}}}]}}
    validation.default_pod(tmpl)
    assert tmpl["spec"]["containers"][0]["startupProbe"]["failureThreshold"] == 3


# -- on a real lab -----------------------------------------------------------------------------------------------

def _events(k8s, ns, name):
    return [(e.reason, e.message) for e in k8s.list_namespaced_event(ns).items if e.involved_object.name == name]


def _wait_event(k8s, ns, name, pred, timeout=45):
    deadline = time.time() + timeout
    while time.time() < deadline:
        evs = _events(k8s, ns, name)
        if any(pred(r, m) for r, m in evs):
            return evs
        time.sleep(0.3)
    raise AssertionError(f"no such event for {name}: {_events(k8s, ns, name)}")


def _pod_body(name, image, cmd, labels=None, **probes):
    c = {"name": "main", "image": image, "command": ["sh", "-c", cmd], **probes}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [c]}}


def _status(p):
    return p.status.container_statuses[0] if p.status.container_statuses else None


def _cond(p, type_):
    return next((c.status for c in p.status.conditions or [] if c.type == type_), None)


@pytest.mark.lab
@needs_root
def test_failing_liveness_restarts_the_container(lab, k8s, namespace):
    probe = {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 2}
    k8s.create_namespaced_pod(namespace, _pod_body("live", "busybox:1.37", "exec sleep 600", livenessProbe=probe))
    p = wait_pod(k8s, namespace, "live", lambda p: _status(p) is not None and _status(p).restart_count >= 1, 60)
    evs = _events(k8s, namespace, "live")
    unhealthy = [m for r, m in evs if r == "Unhealthy"]
    assert unhealthy and unhealthy[0].startswith("Liveness probe failed: cat: ") and "/tmp/healthy" in unhealthy[0], evs
    assert ("Killing", "Container main failed liveness probe, will be restarted") in evs, evs
    last = _status(p).last_state.terminated
    assert last is not None and last.exit_code == 137, "PID 1 ignores SIGTERM: killed after the grace period"
    assert p.metadata.uid and _status(p).container_id != last.container_id


@pytest.mark.lab
@needs_root
def test_readiness_drives_ready_and_the_endpointslice(lab, k8s, namespace):
    from kubernetes import client

    disco = client.DiscoveryV1Api(k8s.api_client)
    readiness = {"httpGet": {"path": "/ready", "port": "web"}, "periodSeconds": 1, "failureThreshold": 1,
                 "timeoutSeconds": 5}
    liveness = {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 3, "periodSeconds": 1, "failureThreshold": 5,
                "timeoutSeconds": 5}
    body = _pod_body("web", "python:3.13-slim", "mkdir -p /tmp/www && echo ok > /tmp/www/ready && "
                     "exec python -m http.server 8080 -d /tmp/www", {"app": "web"},
                     readinessProbe=readiness, livenessProbe=liveness, ports=[{"name": "web", "containerPort": 8080}])
    k8s.create_namespaced_pod(namespace, body)
    k8s.create_namespaced_service(namespace, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                              "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})

    def endpoint_ready():
        slices = disco.list_namespaced_endpoint_slice(namespace, label_selector="kubernetes.io/service-name=web").items
        eps = [e for s in slices for e in s.endpoints or []]
        return eps[0].conditions.ready if eps else None

    def wait_slice(want, timeout=45):
        deadline = time.time() + timeout
        while endpoint_ready() is not want:
            assert time.time() < deadline, f"EndpointSlice endpoint never ready={want}"
            time.sleep(0.3)

    p = wait_pod(k8s, namespace, "web", lambda p: _cond(p, "Ready") == "True", 90)
    assert _status(p).ready and _status(p).started and _cond(p, "ContainersReady") == "True"
    wait_slice(True)
    kc = [KUBECTL, "--kubeconfig", str(lab["kubeconfig"]), "-n", namespace, "exec", "web", "--"]
    subprocess.run([*kc, "rm", "/tmp/www/ready"], check=True, capture_output=True, timeout=30)
    p = wait_pod(k8s, namespace, "web", lambda p: _cond(p, "Ready") == "False", 30)
    assert not _status(p).ready and _status(p).state.running, "not ready, still running"
    wait_slice(False)
    evs = _wait_event(k8s, namespace, "web", lambda r, m: r == "Unhealthy")
    assert ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 404") in evs
    subprocess.run([*kc, "sh", "-c", "echo ok > /tmp/www/ready"], check=True, capture_output=True, timeout=30)
    wait_pod(k8s, namespace, "web", lambda p: _cond(p, "Ready") == "True", 30)
    wait_slice(True)
    assert _status(k8s.read_namespaced_pod("web", namespace)).restart_count == 0, "the tcpSocket liveness probe passed"


@pytest.mark.lab
@needs_root
def test_startup_probe_gates_liveness_and_a_failed_one_restarts(lab, k8s, namespace):
    # a generous timeout: an exec that is merely slow on a busy machine must not count as a failure here
    started = {"exec": {"command": ["test", "-f", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 1,
               "timeoutSeconds": 10}
    k8s.create_namespaced_pod(namespace, _pod_body(
        "slow", "busybox:1.37", "sleep 6; touch /tmp/started; exec sleep 600",
        startupProbe={**started, "failureThreshold": 30}, livenessProbe=started))
    closed = {"tcpSocket": {"port": 8081}, "periodSeconds": 1, "failureThreshold": 2}
    k8s.create_namespaced_pod(namespace, _pod_body("never", "busybox:1.37", "exec sleep 600", startupProbe=closed))
    p = wait_pod(k8s, namespace, "slow", lambda p: p.status.phase == "Running", 60)
    assert not _status(p).started and not _status(p).ready, "running, but not started before its startup probe passes"
    p = wait_pod(k8s, namespace, "slow", lambda p: bool(_status(p).started), 45)
    p = wait_pod(k8s, namespace, "slow", lambda p: bool(_status(p).ready), 15)
    evs = _events(k8s, namespace, "slow")
    assert any(m.startswith("Startup probe failed") for r, m in evs if r == "Unhealthy"), evs
    assert not any(m.startswith("Liveness probe") for _, m in evs), "liveness waited for startup"
    assert _status(p).restart_count == 0
    n = wait_pod(k8s, namespace, "never", lambda p: _status(p) is not None and _status(p).restart_count >= 1, 60)
    ip = n.status.pod_ip
    evs = _events(k8s, namespace, "never")
    assert ("Unhealthy", f"Startup probe failed: dial tcp {ip}:8081: connect: connection refused") in evs, evs
    assert ("Killing", "Container main failed startup probe, will be restarted") in evs, evs


@pytest.mark.lab
@needs_root
def test_probes_on_the_process_runtime(tmp_path):
    """The fallback runtime: exec probes through its own exec (nsenter into the pod), httpGet on the node's network."""
    import os
    import tempfile

    from kperflab.lab import pki, server

    www = tempfile.mkdtemp(prefix="kperflab-probes-")
    os.chmod(www, 0o777)
    for f in ("ready", "alive"):
        with open(os.path.join(www, f), "w") as fh:
            fh.write("ok\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, cert, key = pki.write_tls(pki.make_server_tls(), tmp_path / "tls")
    lab = server.Lab(tmp_path, "tok", (str(cert), str(key)), 0, runtime="process")
    lab.start()
    hdr = {"authorization": "Bearer tok", "content-type": "application/json"}

    def call(method, path, body=None):
        return lab.api.handle(Request(method, path, {}, hdr, json.dumps(body).encode() if body else b""))

    def wait(pred, timeout=45):
        deadline = time.time() + timeout
        while time.time() < deadline:
            pod = call("GET", "/api/v1/namespaces/default/pods/web").body
            if pred(pod):
                return pod
            time.sleep(0.3)
        raise AssertionError(json.dumps(pod.get("status"), indent=1))

    def events():
        items = call("GET", "/api/v1/namespaces/default/events").body["items"]
        return [(e["reason"], e["message"]) for e in items if e["involvedObject"]["name"] == "web"]

    def st(pod):
        return (pod.get("status", {}).get("containerStatuses") or [{}])[0]

    try:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {
            "terminationGracePeriodSeconds": 1, "containers": [{
                "name": "main", "image": "python:3.13-slim", "command": ["python", "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", www],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 1, "failureThreshold": 1},
                "livenessProbe": {"exec": {"command": ["test", "-f", f"{www}/alive"]}, "periodSeconds": 1,
                                  "failureThreshold": 1, "timeoutSeconds": 10}}]}}
        assert call("POST", "/api/v1/namespaces/default/pods", body).code == 201
        wait(lambda p: st(p).get("ready") is True)
        os.unlink(os.path.join(www, "ready"))
        wait(lambda p: st(p).get("ready") is False and "running" in st(p).get("state", {}))
        assert ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 404") in events()
        os.unlink(os.path.join(www, "alive"))
        wait(lambda p: st(p).get("restartCount", 0) >= 1)
        assert ("Killing", "Container main failed liveness probe, will be restarted") in events()
        assert ("Unhealthy", "Liveness probe failed: ") in events(), "test(1) prints nothing"
    finally:
        lab.stop()
        shutil.rmtree(www, ignore_errors=True)
