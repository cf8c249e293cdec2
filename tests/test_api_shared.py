"""The HTTP layer's shared reads (the store's own dicts, JSON encoded once) answer byte for byte as the copying path,
and leave the stored objects as they were."""
import json

from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.server import version_info
from kperflab.lab.store import Store


def _encoded(resp):
    return resp.raw() if resp.raw is not None else (json.dumps(resp.body, separators=(",", ":")) + "\n").encode()


def test_shared_reads_match_copies_and_change_nothing():
    s = Store()
    s.create("v1/namespaces", {"metadata": {"name": "ns"}, "status": {"phase": "Active"}})
    api = APIServer(s, "tok", version=version_info())
    h = {"content-type": "application/json", "authorization": "Bearer tok"}

    def call(method, path, body=None, ct="application/json", shared=False, query=None):
        r = api.handle(Request(method, path, query or {}, {**h, "content-type": ct},
                               json.dumps(body).encode() if body is not None else b"", shared=shared))
        assert r.code < 300, r.body
        return r

    for i in range(3):
        call("POST", "/api/v1/namespaces/ns/pods", {"metadata": {"name": f"p{i}", "labels": {"a": "b"}}, "spec": {
            "containers": [{"name": "c", "image": "busybox"}]}})
    s.create("v1/configmaps", {"metadata": {"name": "no-kind", "namespace": "ns"}, "data": {"k": "v"}})  # no kind
    call("PATCH", "/api/v1/namespaces/ns/pods/p1", {"metadata": {"annotations": {"x": "1"}}},
         ct="application/merge-patch+json", shared=True)
    before = json.dumps(s.list("v1/pods")[0])
    for path in ("/api/v1/namespaces/ns/pods", "/api/v1/namespaces/ns/pods/p1", "/api/v1/namespaces/ns/configmaps",
                 "/api/v1/namespaces/ns/configmaps/no-kind", "/api/v1/pods"):
        for query in ({}, {"limit": "2"}, {"labelSelector": "a=b"}):
            assert _encoded(call("GET", path, shared=True, query=query)) == _encoded(call("GET", path, query=query))
    assert call("GET", "/api/v1/namespaces/ns/pods", shared=True).raw is not None  # the fast path was taken
    assert json.dumps(s.list("v1/pods")[0]) == before


def test_watch_lines_are_compact_json_of_each_change():
    s = Store()
    s.create("v1/namespaces", {"metadata": {"name": "ns"}, "status": {"phase": "Active"}})
    api = APIServer(s, "tok", version=version_info())
    rv = str(s.resource_version)
    s.create("v1/configmaps", {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a", "namespace": "ns"}})
    s.create("v1/configmaps", {"metadata": {"name": "b", "namespace": "ns"}})
    r = api.handle(Request("GET", "/api/v1/namespaces/ns/configmaps", {"watch": "1", "resourceVersion": rv,
                                                                       "timeoutSeconds": "1"},
                           {"authorization": "Bearer tok"}, shared=True))
    lines = [json.loads(x) for x in b"".join(r.stream).splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"], e["object"]["kind"]) for e in lines] == [
        ("ADDED", "a", "ConfigMap"), ("ADDED", "b", "ConfigMap")]
