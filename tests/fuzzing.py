"""Hypothesis strategies for requests a careless or hostile client sends the lab: paths, verbs, query parameters,
content types and bodies (malformed, huge, deeply nested, wrong kinds, unicode)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

RESOURCES = [("", "v1", "pods", True), ("", "v1", "namespaces", False), ("", "v1", "nodes", False), ("", "v1", "services", True),
             ("", "v1", "configmaps", True), ("", "v1", "events", True), ("", "v1", "secrets", True),
             ("batch", "v1", "jobs", True), ("apps", "v1", "daemonsets", True), ("coordination.k8s.io", "v1", "leases", True),
             ("metrics.k8s.io", "v1beta1", "pods", True), ("metrics.k8s.io", "v1", "nodes", False),
             ("authorization.k8s.io", "v1", "selfsubjectaccessreviews", False),
             ("authentication.k8s.io", "v1", "selfsubjectreviews", False), ("nope.example", "v1", "things", True)]
SUBRESOURCES = ["", "status", "log", "exec", "attach", "portforward", "proxy", "proxy/stats/summary", "proxy/metrics/cadvisor",
                "proxy/metrics/resource", "finalize", "eviction", "binding", "scale", "x/y/z"]
CONTENT_TYPES = ["application/json", "application/yaml", "application/merge-patch+json", "application/json-patch+json",
                 "application/strategic-merge-patch+json", "application/apply-patch+yaml", "application/vnd.kubernetes.protobuf",
                 "text/plain", "application/xml", "", "application/json; charset=utf-8", "multipart/form-data; boundary=x",
                 "application/json;;;", "\u00e9t\u00e9/json"]
QUERY_KEYS = ["limit", "continue", "resourceVersion", "resourceVersionMatch", "watch", "timeoutSeconds", "labelSelector",
              "fieldSelector", "fieldValidation", "dryRun", "gracePeriodSeconds", "propagationPolicy", "container",
              "follow", "tailLines", "sinceSeconds", "limitBytes", "previous", "timestamps", "allowWatchBookmarks",
              "sendInitialEvents", "pretty", "fieldManager", "force", "verbose", "only_cpu_and_memory", "orphanDependents"]

names = st.one_of(st.sampled_from(["default", "kube-system", "kperflab-lab", "p", "fuzz", "ghost", ""]),
                  st.text(min_size=1, max_size=80))
query_values = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "true", "false", "All", "Strict", "Ignore", "Warn", "abc", "1e9", "9" * 30, "-5",
                     "NaN", "inf", "a=b", "a in (", "a!=", "metadata.name=x", "status.phase==Running", "x,y", "!a",
                     "spec.nodeName=kperflab-lab", "Foreground", "Orphan", "Background", "NotOlderThan", "Exact",
                     "eyJucyI6ICJ4In0=", "not-base64!", "\x00", "\u202e"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str), st.text(max_size=60))


@st.composite
def paths(draw: Any) -> str:
    group, version, plural, namespaced = draw(st.sampled_from(RESOURCES))
    prefix = "/api/v1" if not group else f"/apis/{group}/{version}"
    parts = [prefix]
    if namespaced and draw(st.booleans()):
        parts.append(f"namespaces/{draw(names)}")
    parts.append(plural)
    if draw(st.booleans()):
        parts.append(draw(names))
        sub = draw(st.sampled_from(SUBRESOURCES))
        if sub:
            parts.append(sub)
    path = "/".join(parts)
    return draw(st.one_of(st.just(path), st.sampled_from([
        "/", "/api", "/apis", "/version", "/healthz", "/readyz?verbose", "/livez/ping", "/openapi/v2", "/openapi/v3",
        "/openapi/v3/api/v1", "/openapi/v3/apis/nope/v1", "/api/v2/pods", "/apis/batch", "/apis/batch/v9/jobs", "//api//v1//pods",
        "/api/v1/namespaces", "/api/v1/namespaces//pods", "/api/v1/..", "/metrics"])))


def _deep(depth: int) -> bytes:
    """JSON nested ``depth`` levels (objects and lists alternating), written as text: no recursion to build it."""
    opens = "".join('{"a":' if i % 2 else "[" for i in range(depth))
    closes = "".join("}" if i % 2 else "]" for i in reversed(range(depth)))
    return (opens + "1" + closes).encode()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
                           max_leaves=20)
TEMPLATES = [
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fuzz"},
     "spec": {"containers": [{"name": "c", "image": "fuzz.invalid/none:0"}]}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fuzz"}, "data": {"a": "b"}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fuzz-ns"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fuzz"}, "spec": {"ports": [{"port": 80}]}},
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fuzz"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "fuzz.invalid/none:0"}]}}}},
    {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": -3, "propagationPolicy": "Sideways"},
    {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": "get"}}},
    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    [{"op": "replace", "path": "/metadata/labels", "value": {"a": "b"}}],
    [{"op": "move", "from": "/nope", "path": "/x"}],
]


@st.composite
def mutated(draw: Any) -> Any:
    """A valid-looking object with one part replaced by something random."""
    obj = json.loads(json.dumps(draw(st.sampled_from(TEMPLATES))))
    if isinstance(obj, dict) and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(obj) + ["spec", "metadata", "status", "kind", "apiVersion"]))
        obj[key] = draw(json_values)
    elif isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
        obj["metadata"][draw(st.sampled_from(["name", "namespace", "labels", "annotations", "uid", "resourceVersion",
                                              "generateName", "finalizers", "ownerReferences"]))] = draw(json_values)
    return obj


bodies = st.one_of(
    st.just(b""), st.binary(max_size=200), st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()), mutated().map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=10, max_value=200_000).map(_deep),
    st.integers(min_value=10, max_value=5000).map(lambda d: ("a:\n" + "".join(" " * i + "b:\n" for i in range(1, d))).encode()),
    st.sampled_from([b"{", b"[1,2", b"\xff\xfe\x00", b"null", b"true", b'"x"', b"1e999999", b'{"a":1,"a":2}', b"\x00" * 50,
                     b"k8s\x00\x0a\x0b", b"{\"metadata\": {\"name\": \"" + "\u0000\u202e\U0001f600".encode() + b"\"}}",
                     json.dumps({"metadata": {"name": "x" * 300}}).encode()]))

requests = st.fixed_dictionaries({
    "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    "path": paths(),
    "query": st.dictionaries(st.sampled_from(QUERY_KEYS), query_values, max_size=4),
    "ctype": st.sampled_from(CONTENT_TYPES),
    "accept": st.sampled_from(["application/json", "application/yaml", "*/*", "",
                               "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
                               "application/vnd.kubernetes.protobuf,application/json", "text/html"]),
    "body": bodies,
})


@st.composite
def write_paths(draw: Any) -> str:
    """Paths a write can succeed on: a resource collection (namespaced in "default") or a named object in it."""
    group, version, plural, namespaced = draw(st.sampled_from([r for r in RESOURCES if r[0] not in ("nope.example",)]))
    prefix = "/api/v1" if not group else f"/apis/{group}/{version}"
    base = f"{prefix}/namespaces/default/{plural}" if namespaced else f"{prefix}/{plural}"
    return draw(st.sampled_from([base, f"{base}/fuzz", f"{base}/fuzz/status"]))


# valid-looking objects with one part wrong, written where they could be accepted
writes = st.fixed_dictionaries({
    "method": st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
    "path": write_paths(),
    "query": st.dictionaries(st.sampled_from(["dryRun", "fieldValidation", "gracePeriodSeconds", "propagationPolicy"]),
                             st.sampled_from(["All", "Strict", "Warn", "0", "5", "Background"]), max_size=2),
    "ctype": st.sampled_from(["application/json", "application/yaml", "application/merge-patch+json",
                              "application/strategic-merge-patch+json", "application/json-patch+json"]),
    "accept": st.just("application/json"),
    "body": mutated().map(lambda v: json.dumps(v).encode()),
})
