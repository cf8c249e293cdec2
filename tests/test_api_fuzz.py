"""Property-based fuzz of the lab's API (Hypothesis): every request a careless or hostile client can send gets a
Kubernetes Status with a 4xx code when it is wrong, never a 5xx, and the server stays up. Bounded in time: a few
hundred requests through `APIServer.handle` and fewer over HTTPS, against an in-process lab without cgroups (any pod
the fuzz manages to create names an image that cannot be pulled, so nothing runs)."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import time
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kperflab.lab import labs, pki, server
from kperflab.lab.apiserver import Request

from . import fuzzing

pytestmark = pytest.mark.lab


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("fuzz-lab")
    ca, cert, key = pki.write_tls(pki.make_server_tls(), tmp / "tls")
    lab = server.Lab(tmp, "tok", (str(cert), str(key)), 0, metric_resolution=1.0, limits=False)
    lab.start()
    lab.ca = ca
    logging.getLogger("kperflab.lab").setLevel(logging.CRITICAL)  # the fuzz's own noise
    try:
        yield lab
    finally:
        logging.getLogger("kperflab.lab").setLevel(logging.NOTSET)
        lab.stop()
        assert labs.census(lab.lab_id, tmp).empty()


def _is_status(body: Any, code: int) -> bool:
    return isinstance(body, dict) and body.get("kind") == "Status" and body.get("code") == code and body.get("status") == "Failure"


@fuzz(1000)
@given(r=st.one_of(fuzzing.requests, fuzzing.writes))
def test_handler_answers_every_request_with_a_status(lab, r):
    h = {"authorization": "Bearer tok", "content-type": r["ctype"], "accept": r["accept"]}
    resp = lab.api.handle(Request(r["method"], r["path"], r["query"], h, r["body"]))
    if resp.stream is not None:
        resp.stream.close()
    assert resp.code < 500, (resp.code, resp.body)
    if resp.code >= 400:
        assert _is_status(resp.body, resp.code), resp.body


def _connect(lab: Any) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(lab.ca))
    return http.client.HTTPSConnection("127.0.0.1", lab.port, context=ctx, timeout=10)


def _alive(lab: Any) -> bool:
    c = _connect(lab)
    try:
        c.request("GET", "/readyz")
        return c.getresponse().status == 200
    finally:
        c.close()


@fuzz(150)
@given(r=fuzzing.requests, token=st.sampled_from(["tok", "tok", "tok", "wrong", None]))
def test_over_https_every_answer_is_a_status_and_the_server_lives(lab, r, token):
    path = quote(r["path"], safe="/%?=&") + ("?" + urlencode(r["query"]) if r["query"] else "")
    headers = {"Content-Type": r["ctype"], "Accept": r["accept"]}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    c = _connect(lab)
    try:
        c.request(r["method"], path, body=r["body"], headers=headers)
        resp = c.getresponse()
        if resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked":
            body = None  # a watch or a log stream: its head is the answer
        else:
            body = resp.read()
    finally:
        c.close()
    assert resp.status < 500, (resp.status, body)
    if resp.status >= 400 and r["method"] != "HEAD":
        decoded = yaml.safe_load(body) if "yaml" in (resp.getheader("Content-Type") or "") else json.loads(body)
        assert _is_status(decoded, resp.status), body
    assert _alive(lab)


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"TRACE /api/v1/pods HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/pods HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nContent-Length: -4\r\n\r\n",
    b"POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
])
def test_malformed_http_gets_a_status_and_the_server_lives(lab, raw):
    ctx = ssl.create_default_context(cafile=str(lab.ca))
    with socket.create_connection(("127.0.0.1", lab.port), timeout=10) as sock, \
            ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(raw)
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    code = int(head.split()[1]) if head.startswith(b"HTTP/") else None
    assert code is not None and 400 <= code < 500, data[:300]
    assert _is_status(json.loads(body), code), body[:300]
    assert _alive(lab)


def test_the_fuzz_can_fail():
    """The property the fuzz checks rejects a 500 and a 4xx that is not a Status (so a green fuzz means something)."""
    assert not _is_status({"kind": "Status", "code": 500, "status": "Failure"}, 400)
    assert not _is_status("<html>400</html>", 400)
    assert not _is_status({"kind": "Pod"}, 404)


def test_known_offenders_answer_4xx(lab):
    """The requests that used to get a 500: a negative limit, deep JSON, and the body formats no endpoint reads."""
    def call(method: str, path: str, body: bytes = b"", ctype: str = "application/json", **q: str) -> Any:
        return lab.api.handle(Request(method, path, q, {"authorization": "Bearer tok", "content-type": ctype}, body))

    assert call("GET", "/api/v1/pods", limit="-1").code == 200  # as kube-apiserver: no paging for limit ≤ 0
    deep = call("POST", "/api/v1/namespaces/default/configmaps", b"[" * 100_000 + b"]" * 100_000)
    assert deep.code == 400 and "nested too deeply" in deep.body["message"]
    for method, path in (("POST", "/api/v1/namespaces/default/configmaps"), ("PUT", "/api/v1/namespaces/default/configmaps/x"),
                         ("PATCH", "/api/v1/namespaces/default/configmaps/x"), ("DELETE", "/api/v1/namespaces/default/configmaps/x"),
                         ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")):
        r = call(method, path, b"garbage", "text/plain")
        assert (r.code, r.body["reason"]) == (415, "UnsupportedMediaType"), (method, path, r.body)
    laughs = b"a: &a [x,x,x,x,x,x,x,x,x]\n" + b"".join(
        b"%c: &%c [%s]\n" % (c, c, b",".join([b"*" + bytes([c - 1])] * 9)) for c in range(ord("b"), ord("h")))
    r = call("POST", "/api/v1/namespaces/default/configmaps", laughs, "application/yaml")
    assert r.code == 400 and "aliases" in r.body["message"]

