"""The cluster goes away mid-notebook: every client path ends in one `ClusterUnreachable` that names the server and
the next step (no urllib3 chain, no retries, no 120 s wait in the workspace's exit), and the workspace left behind is
deleted the next time the lab is up.

The first tests use a fake API server that stops (connection refused), cuts the TLS handshake, or closes a request
unanswered; the last one runs a notebook through papermill against a lab of its own and SIGKILLs the lab mid-cell."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import nbformat
import pytest
from kubernetes import client

import kperflab
from kperflab import workspace
from kperflab.cluster import get_raw, load
from kperflab.errors import ClusterUnreachable

from .conftest import kperflab as kperflab_cli
from .conftest import lab_env, write_kubeconfig

NODES = {"kind": "NodeList", "apiVersion": "v1", "items": [{"metadata": {"name": "n1", "labels": {}}, "spec": {},
                                                             "status": {"allocatable": {"cpu": "2", "memory": "2Gi"}}}]}
VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "abc", "gitTreeState": "clean",
           "buildDate": "2024-10-22T20:28:14Z", "goVersion": "go1.22.8", "compiler": "gc", "platform": "linux/amd64"}
NOISE = ("urllib3", "MaxRetryError", "Retrying", "ProtocolError", "NewConnectionError")


def _serve(api: Any) -> None:
    api.conns = []
    accept = api.httpd.process_request

    def process_request(request: Any, address: Any) -> None:
        api.conns.append(request)  # kept, so that _stop can cut them as a killed process's sockets are
        accept(request, address)

    api.httpd.process_request = process_request
    api.route("GET", "/version", 200, VERSION)
    api.route("GET", "/api/v1/nodes", 200, NODES)
    api.route("GET", "/apis", 200, {"kind": "APIGroupList", "groups": []})
    api.route("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", 201,
              {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "status": {"userInfo": {"username": "me"}}})
    api.route("POST", "/api/v1/namespaces", 201, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "x"}})


def _stop(api: Any) -> None:
    api.httpd.shutdown()
    api.httpd.server_close()  # the port now refuses, as a killed lab's does
    for conn in api.conns:  # and its open connections end
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()


def _unreachable(call: Any) -> tuple[ClusterUnreachable, float]:
    t0 = time.monotonic()
    with pytest.raises(ClusterUnreachable) as err:
        call()
    return err.value, time.monotonic() - t0


def _plain(err: ClusterUnreachable) -> None:
    assert err.__cause__ is None and err.__suppress_context__, "raised from None: no urllib3 chain is printed"
    assert not any(n in str(err) for n in NOISE), str(err)


def test_a_server_gone_mid_session_is_cluster_unreachable_on_every_path_at_once(tmp_path, fake_api, caplog):
    _serve(fake_api)
    cluster = kperflab.connect(fake_api.kubeconfig(tmp_path / "kc"))
    server = cluster.conn.server
    calls = {
        "typed client call (what experiments make)": lambda: cluster.core.read_namespace("default", _request_timeout=5),
        "raw GET": lambda: get_raw(cluster.conn, "/api/v1/nodes"),
        "node proxy": lambda: cluster.node_proxy("n1", "metrics/resource"),
        "sampler (threads)": lambda: cluster.sampler(nodes=True, interval=0.1).run(samples=3, progress=False),
        "metrics API": lambda: cluster.top_nodes(),
    }
    for call in calls.values():  # once while it answers: the client builds each method's validator on first use
        try:
            call()
        except Exception:  # noqa: BLE001 - the fake server does not serve all of them
            pass
    _stop(fake_api)
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        for what, call in calls.items():
            err, took = _unreachable(call)
            _plain(err)
            assert err.server == server and err.reason == "connection refused", (what, str(err))
            assert err.hint.endswith("then run it again.") and "kubectl cluster-info" in err.hint, (what, err.hint)
            assert took < 2.0, f"{what}: {took:.2f} s (retries?)"
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()], "urllib3 retried a dead server"


def test_a_cut_tls_handshake_and_an_unanswered_request_are_cluster_unreachable(tmp_path):
    """Two more ways a dying server ends a request: the TLS handshake cut (SSL EOF or reset) and a request read but
    the connection closed without an answer (RemoteDisconnected)."""
    import ssl

    from kperflab.lab.pki import make_server_tls, write_tls

    ca, cert, key = write_tls(make_server_tls(), tmp_path / "tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    for mode in ("cut handshake", "no answer"):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        port = srv.getsockname()[1]

        def accept(srv: socket.socket = srv, mode: str = mode) -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                if mode == "no answer":
                    try:
                        conn = ctx.wrap_socket(conn, server_side=True)
                        conn.recv(65536)  # the request, never answered
                    except OSError:
                        pass
                conn.close()

        threading.Thread(target=accept, daemon=True).start()
        kc = write_kubeconfig(tmp_path / f"kc-{port}", f"https://127.0.0.1:{port}", ca.read_bytes(), "t0k3n")
        v1 = client.CoreV1Api(load(str(kc)).api)
        try:
            err, took = _unreachable(lambda v1=v1: v1.list_namespace(_request_timeout=5))
        finally:
            srv.close()
        _plain(err)
        want = ("the TLS connection was cut (EOF)", "the connection was reset") if mode == "cut handshake" else \
            ("the server closed the connection without answering",)
        assert err.reason in want, (mode, str(err))
        assert took < 2.0


def _back_on(api: Any, tmp_path: Any) -> Any:
    """An API server on the fake's address again (its certificate), that takes DELETEs."""
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Back(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def do_DELETE(self) -> None:  # noqa: N802 - http.server's naming
            self.server.requests.append(("DELETE", self.path.split("?")[0]))  # type: ignore[attr-defined]
            data = json.dumps({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "x"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "fake-tls" / "server.crt", tmp_path / "fake-tls" / "server.key")
    httpd = ThreadingHTTPServer(("127.0.0.1", api.port), Back)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.requests = []  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_a_workspace_waiting_when_the_server_goes_raises_once_and_exits_without_waiting(tmp_path, fake_api, caplog):
    _serve(fake_api)
    cluster = kperflab.connect(fake_api.kubeconfig(tmp_path / "kc"))
    t_stop: list[float] = []
    try:
        with pytest.raises(ClusterUnreachable) as err, cluster.workspace("faults", delete_timeout=120) as ws:
            fake_api.route("GET", f"/api/v1/namespaces/{ws.namespace}/pods/p", 200, {
                "kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": ws.namespace},
                "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Pending"}})
            ws.pod("p")  # warm: the client builds the method's validator on first use

            def kill() -> None:
                time.sleep(0.5)
                t_stop.append(time.monotonic())
                _stop(fake_api)

            threading.Thread(target=kill, daemon=True).start()
            ws.wait_for("p", lambda pod: False, timeout=60, what="forever", progress=False)
        ended = time.monotonic() - t_stop[0]
        _plain(err.value)
        assert err.value.reason == "connection refused" and "then run it again" in str(err.value)
        assert ended < 3.0, f"the error and the workspace's exit took {ended:.1f} s after the server went"
        said = " ".join(r.getMessage() for r in caplog.records if r.name == "kperflab.workspace")
        assert f"The workspace {ws.namespace} was not deleted" in said and "`kperflab clean`" in said, said
        assert ws.namespace in workspace._ORPHANS, "retried when the cluster answers again"
        assert not ws.created and ws not in workspace._OPEN

        back = _back_on(fake_api, tmp_path)  # the cluster answers again, on the same address
        deadline = time.monotonic() + 3 * workspace.RETRY_SECONDS
        while ws.namespace in workspace._ORPHANS and time.monotonic() < deadline:
            time.sleep(0.1)
        back.shutdown()
        back.server_close()
        assert ("DELETE", f"/api/v1/namespaces/{ws.namespace}") in back.requests, "the kernel deletes it itself"
        assert ws.namespace not in workspace._ORPHANS
    finally:
        for ns in [n for n, c in workspace._ORPHANS.items() if c is cluster]:
            workspace._ORPHANS.pop(ns, None)


NOTEBOOK = [
    "import os\nimport kperflab\nfrom kperflab import workloads\ncluster = kperflab.connect()",
    'with cluster.workspace("faults") as ws:\n'
    '    ws.run(workloads.cpu_burner(cores=0.1), progress=False)\n'
    '    open(os.environ["MARKER"], "w").write(ws.namespace)\n'
    '    cluster.sampler(namespace=ws.namespace, interval=0.5).run(duration=300, progress=False)',
]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.lab
def test_the_lab_killed_mid_notebook_gives_the_next_step_and_its_workspace_is_cleaned_at_the_next_lab_up(tmp_path):
    """What a learner sees: a notebook sampling in a workspace, the lab SIGKILLed mid-cell. Then `kperflab lab up`
    (state kept) deletes the workspace the notebook left, its kernel being gone."""
    home, marker = tmp_path / "home", tmp_path / "marker"
    home.mkdir()
    up_args = ("lab", "up", "--runtime", "process", "--no-limits")
    nb_in, nb_out = tmp_path / "faults.ipynb", tmp_path / "faults.out.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK]), nb_in)
    env = {**lab_env(home), "KUBECONFIG": str(home / "kubeconfig.yaml"), "MARKER": str(marker), "KPERFLAB_HEADLESS": "1"}
    try:
        up = kperflab_cli(home, *up_args)
        assert up.returncode == 0, up.stdout + up.stderr
        lab_pid = json.loads((home / "lab" / "lab.json").read_text())["pid"]
        nb = subprocess.Popen([sys.executable, "-m", "papermill", str(nb_in), str(nb_out), "-k", "python3",
                               "--no-progress-bar", "--cwd", str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (marker.exists() and marker.read_text()) and nb.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the notebook did not reach its sampling cell: " + "".join(nb.communicate(timeout=60))
        namespace = marker.read_text()
        time.sleep(1.5)  # sampling
        os.kill(lab_pid, signal.SIGKILL)
        killed, killed_at = time.monotonic(), time.time()
        out, err = nb.communicate(timeout=150)
        ended = time.monotonic() - killed
        assert nb.returncode != 0, out + err
        cell = next(c for c in nbformat.read(nb_out, as_version=4).cells if c.source == NOTEBOOK[1])
        failed = dt.datetime.fromisoformat(cell.metadata.papermill.end_time).timestamp() - killed_at
        print(f"the cell failed {failed:.1f} s and papermill ended {ended:.1f} s after the lab was killed")
        assert failed < 5, f"the cell failed {failed:.1f} s after the kill: something waited for a dead server"
        assert ended < 20, f"papermill ended {ended:.1f} s after the kill"

        error = next(o for o in cell.outputs if o.output_type == "error")
        shown = ANSI.sub("", "\n".join(error.traceback))
        streams = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert error.ename == "ClusterUnreachable" and len(error.traceback) <= 2, shown
        assert "The API server at https://127.0.0.1:" in shown and "is not reachable" in shown, shown
        assert "Next step: Is the lab up? Check with `kperflab lab status`" in shown and "re-run the cell" in shown, shown
        assert f"The workspace {namespace} was not deleted" in streams and "`kperflab clean`" in streams, streams
        everything = out + err + nb_out.read_text()
        assert not [n for n in NOISE if n in everything], [n for n in NOISE if n in everything]

        again = kperflab_cli(home, *up_args)
        assert again.returncode == 0, again.stdout + again.stderr
        assert json.loads((home / "lab" / "lab.json").read_text()).get("restored"), \
            "the lab did not keep its state, so the clean after a restart cannot be shown: " + again.stdout
        assert namespace in again.stdout, "`lab up` says it deleted the workspace: " + again.stdout
        v1 = client.CoreV1Api(load(str(home / "kubeconfig.yaml")).api)
        deadline = time.monotonic() + 30
        while namespace in {n.metadata.name for n in v1.list_namespace().items} and time.monotonic() < deadline:
            time.sleep(0.3)
        assert namespace not in {n.metadata.name for n in v1.list_namespace().items}, "the workspace is still there"
    finally:
        down = kperflab_cli(home, "lab", "down", "--purge")
        assert down.returncode == 0, down.stdout + down.stderr
