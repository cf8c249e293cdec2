"""Shared fixtures: a fake HTTPS API server for the client-side tests, and a real lab for integration."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from kperflab.lab.pki import make_server_tls, write_tls

ROOT = Path(__file__).resolve().parents[1]


class FakeAPI:
    """An HTTPS server that answers like kube-apiserver for the paths a test sets."""

    def __init__(self, tmp: Path) -> None:
        tls = make_server_tls()
        self.ca, cert, key = write_tls(tls, tmp / "fake-tls")
        self.routes: dict[tuple[str, str], Callable[[dict[str, Any] | None], tuple[int, Any]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.in_flight = self.max_in_flight = 0  # requests being answered at once (for routes with a delay)
        self._flight = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _do(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else None
                path = self.path.split("?")[0].rstrip("/") or "/"
                outer.requests.append((self.command, path))
                fn = outer.routes.get((self.command, path))
                code, payload = fn(body) if fn else (404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                          "reason": "NotFound", "code": 404, "message": "not found"})
                text = isinstance(payload, str)
                data = payload.encode() if text else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; version=0.0.4" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _do

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def route(self, method: str, path: str, code: int, payload: Any, delay: float = 0.0) -> None:
        def answer(body: Any) -> tuple[int, Any]:
            if delay:
                import time

                with self._flight:
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                time.sleep(delay)
                with self._flight:
                    self.in_flight -= 1
            return code, payload

        self.routes[(method, path)] = answer

    def kubeconfig(self, path: Path, token: str = "t0k3n") -> Path:
        write_kubeconfig(path, f"https://127.0.0.1:{self.port}", self.ca.read_bytes(), token)
        return path


def write_kubeconfig(path: Path, server: str, ca_pem: bytes, token: str, context: str = "test") -> Path:
    import base64

    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u", "namespace": "workshop"}}],
    }))
    return path


@pytest.fixture
def fake_api(tmp_path: Path) -> Iterator[FakeAPI]:
    api = FakeAPI(tmp_path)
    yield api
    api.httpd.shutdown()


# -- the lab ----------------------------------------------------------------------------------------

def lab_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["KPERFLAB_HOME"] = str(home)
    env.pop("KUBECONFIG", None)
    return env


def kperflab(home: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kperflab.cli", *args], env=lab_env(home), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real lab, started with `kperflab lab up` under a private KPERFLAB_HOME, stopped after the session."""
    home = tmp_path_factory.mktemp("kperflab-home")
    up = kperflab(home, "lab", "up", "--metric-resolution", "5s")
    assert up.returncode == 0, up.stdout + up.stderr
    kubeconfig = home / "kubeconfig.yaml"
    lab_id = json.loads((home / "lab" / "lab.json").read_text())["lab_id"]
    try:
        yield {"home": home, "kubeconfig": kubeconfig, "lab_id": lab_id,
               "env": {**lab_env(home), "KUBECONFIG": str(kubeconfig)}}
    finally:
        down = kperflab(home, "lab", "down", "--purge")  # a throwaway home: keep no state
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture
def k8s(lab: dict[str, Any]) -> Any:
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(str(lab["kubeconfig"])))


@pytest.fixture
def namespace(k8s: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique namespace per test, deleted after it (and checked gone)."""
    import re
    import time
    import uuid

    from kubernetes import client

    name = re.sub(r"[^a-z0-9-]", "-", f"t-{request.node.name.lower()}")[:40].strip("-") + "-" + uuid.uuid4().hex[:5]
    k8s.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    k8s.delete_namespace(name)
    deadline = time.time() + 60
    while time.time() < deadline:
        if name not in [n.metadata.name for n in k8s.list_namespace().items]:
            return
        time.sleep(0.2)
    raise AssertionError(f"namespace {name} was not removed")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="cgroup limits need root")


def wait_pod(k8s: Any, ns: str, name: str, pred: Callable[[Any], bool], timeout: float = 60, every: float = 0.3) -> Any:
    """Read the pod until ``pred`` holds (returns it) or ``timeout`` seconds pass (fails with its status)."""
    import time

    deadline = time.time() + timeout
    while True:
        p = k8s.read_namespaced_pod(name, ns)
        if pred(p):
            return p
        if time.time() > deadline:
            raise AssertionError(f"{name}: {p.status}")
        time.sleep(every)


# -- the official client's e2e suite, started in the background as the session starts ----------------------------

CLIENT_E2E = "tests/test_upstream_client_e2e.py"


def pytest_collection_finish(session: pytest.Session) -> None:
    """When the session includes the official client's e2e suite (scripts/client-e2e.py with a lab of its own, about
    70 s, mostly waiting for pods), start it now in the background; its test collects the result at the end."""
    if os.geteuid() != 0 or session.config.option.collectonly:
        return
    if not any(item.nodeid.startswith(CLIENT_E2E) for item in session.items):
        return
    import tempfile

    log = tempfile.TemporaryFile("w+")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, str(root / "scripts" / "client-e2e.py"), "--lab", "--timeout", "600"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root, text=True)
    session.config.stash[_E2E_KEY] = (proc, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    proc, log = config.stash.get(_E2E_KEY, (None, None))
    if proc is not None and proc.poll() is None:  # the session ended early (-x, Ctrl-C): stop it (it takes its lab down)
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


_E2E_KEY = pytest.StashKey[tuple]()


@pytest.fixture
def client_e2e_run(request: pytest.FixtureRequest) -> tuple[int, str]:
    """(exit status, output) of the background run of the official client's e2e suite."""
    proc, log = request.config.stash.get(_E2E_KEY, (None, None))
    if proc is None:
        pytest.skip("the client e2e suite starts only in a session that includes it, as root")
    rc = proc.wait(720)
    log.seek(0)
    return rc, log.read()


# -- the browser run (scripts/browser-run.py with a lab of its own), started in the background as well ---------------

BROWSER = "tests/test_ui_browser.py"
BROWSER_TIMEOUT = 1500  # seconds for the whole background run (about 10 min alone; longer beside the suite)
CHROMIUM = "/usr/bin/chromium"


def browser_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the browser run starts a lab of its own: root only"
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (Debian's chromium: make setup installs it)"
    return None


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """When the session includes the browser test, start scripts/browser-run.py --lab now (niced: the machine's
    cores go to the foreground tests first); tests/test_ui_browser.py judges it."""
    if config.option.collectonly or browser_skip_reason() or not any(i.nodeid.startswith(BROWSER) for i in items):
        return
    import tempfile
    import time

    log = tempfile.TemporaryFile("w+")
    cmd = ["nice", "-n", "10", sys.executable, str(ROOT / "scripts" / "browser-run.py"), "--lab",
           "--timeout", str(BROWSER_TIMEOUT)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, text=True)
    config.stash[_BROWSER_KEY] = (proc, log, time.monotonic())


def pytest_sessionfinish(session: pytest.Session) -> None:
    proc, _, _ = session.config.stash.get(_BROWSER_KEY, (None, None, None))
    if proc is not None and proc.poll() is None:  # the session ended early: stop it (it cleans up and takes its lab down)
        proc.terminate()
        try:
            proc.wait(300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_BROWSER_KEY = pytest.StashKey[tuple]()


@pytest.fixture
def browser_run(request: pytest.FixtureRequest) -> tuple[int, str, float]:
    """(exit status, output, seconds it took) of the background browser run."""
    import time

    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    proc, log, started = request.config.stash.get(_BROWSER_KEY, (None, None, None))
    if proc is None:
        pytest.skip("the browser run starts only in a session that collects tests/test_ui_browser.py")
    try:
        rc = proc.wait(max(60.0, BROWSER_TIMEOUT + 420 - (time.monotonic() - started)))  # its --timeout + clean-up
    except subprocess.TimeoutExpired:
        proc.terminate()
        rc = proc.wait(300)
    log.seek(0)
    return rc, log.read(), time.monotonic() - started
