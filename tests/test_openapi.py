"""The lab's OpenAPI and field validation, as kubectl 1.32 and the official client meet them: `/openapi/v3` with
kube-openapi's hashes, ETags and 301s; upstream's schemas for every kind the lab serves (`kubectl explain`, also
`--recursive` and from v2); `/openapi/v2` as JSON and as gnostic protobuf (read back here by a small independent
wire reader, and by kubectl for a `kind: List`); `fieldValidation=Strict|Warn|Ignore` for every kind, from the
schemas. Most run real kubectl against the lab's `APIServer` in this process (no kubelet, no root); a few repeat the
end-to-end part on the session's real lab."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from kperflab.lab import openapi, pki, strict
from kperflab.lab.apiserver import APIServer, Request, serve
from kperflab.lab.resources import TYPES
from kperflab.lab.server import version_info
from kperflab.lab.store import Store

from .conftest import needs_root, write_kubeconfig

KUBECTL = shutil.which("kubectl")
TOKEN = "openapi-token"
V2_PB = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
SMP = "application/strategic-merge-patch+json"

# a field of each kind the lab serves, for `kubectl explain` (a new row in resources.TYPES needs one here)
EXPLAIN = {
    "Namespace": "spec.finalizers", "Node": "spec.taints", "Pod": "spec.containers.livenessProbe",
    "v1/Event": "involvedObject", "ConfigMap": "immutable", "Secret": "stringData",
    "ServiceAccount": "automountServiceAccountToken", "Service": "spec.sessionAffinityConfig",
    "Endpoints": "subsets.ports", "PersistentVolume": "spec.nodeAffinity", "PersistentVolumeClaim": "spec.resources",
    "StorageClass": "volumeBindingMode", "EndpointSlice": "endpoints.conditions", "events.k8s.io/v1/Event": "series",
    "Job": "spec.backoffLimit", "DaemonSet": "spec.updateStrategy", "Deployment": "spec.strategy",
    "ReplicaSet": "spec.minReadySeconds", "StatefulSet": "spec.podManagementPolicy", "ControllerRevision": "revision",
    "ReplicationController": "spec.template", "HorizontalPodAutoscaler": "spec.behavior", "Role": "rules",
    "RoleBinding": "roleRef", "ClusterRole": "aggregationRule", "ClusterRoleBinding": "subjects",
    "Lease": "spec.holderIdentity", "SelfSubjectReview": "status.userInfo",
    "SelfSubjectAccessReview": "spec.resourceAttributes", "SelfSubjectRulesReview": "spec.namespace",
    "SubjectAccessReview": "spec.user", "LocalSubjectAccessReview": "spec.resourceAttributes",
    "TokenReview": "spec.token", "APIService": "spec.groupPriorityMinimum",
    "autoscaling/v1/HorizontalPodAutoscaler": "spec.targetCPUUtilizationPercentage",
    "CronJob": "spec.schedule", "PodDisruptionBudget": "spec.minAvailable", "PriorityClass": "preemptionPolicy",
    "ResourceQuota": "spec.scopeSelector", "LimitRange": "spec.limits", "Ingress": "spec.rules",
    "IngressClass": "spec.parameters",
}


def _explain_key(t: Any) -> str:
    return f"{t.group_version}/{t.kind}" if t.kind == "Event" or t.group_version == "autoscaling/v1" else t.kind


def call(api: APIServer, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
         ctype: str = "application/json", **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    hdrs = {"authorization": f"Bearer {TOKEN}", "content-type": ctype, "accept": "application/json",
            **{k.replace("_", "-"): v for k, v in headers.items()}}
    return api.handle(Request(method, path, query or {}, hdrs, raw))


@pytest.fixture
def api() -> APIServer:
    s = Store()
    s.create("v1/namespaces", {"metadata": {"name": "default"}, "status": {"phase": "Active"}})
    return APIServer(s, TOKEN, version=version_info())


# -- the documents ------------------------------------------------------------------------------------

def test_v3_index_hashes_etags_and_redirects(api):
    r = call(api, "GET", "/openapi/v3")
    assert r.code == 200 and r.headers["Etag"] == f'"{hashlib.sha512(r.body).hexdigest().upper()}"'
    index = json.loads(r.body)["paths"]
    want = {f"apis/{t.group}/{t.version}" if t.group else f"api/{t.version}" for t in TYPES}
    assert set(index) == want
    for gv, entry in index.items():
        path, _, digest = entry["serverRelativeURL"].partition("?hash=")
        assert path == f"/openapi/v3/{gv}"
        doc = call(api, "GET", path, query={"hash": digest})
        assert doc.code == 200 and doc.headers["Cache-Control"] == "public, immutable" and "Expires" in doc.headers
        # kube-openapi's hash: the uppercase hex SHA-512 of the document as served, also its (quoted) ETag
        assert digest == hashlib.sha512(doc.body).hexdigest().upper() and doc.headers["Etag"] == f'"{digest}"'
    stale = call(api, "GET", "/openapi/v3/apis/apps/v1", query={"hash": "0123ABCD"})
    assert stale.code == 301 and stale.headers["Location"] == index["apis/apps/v1"]["serverRelativeURL"]
    plain = call(api, "GET", "/openapi/v3/apis/apps/v1")
    assert plain.code == 200 and "Cache-Control" not in plain.headers
    again = call(api, "GET", "/openapi/v3/apis/apps/v1", if_none_match=plain.headers["Etag"])
    assert (again.code, again.body) == (304, b"")
    assert call(api, "GET", "/openapi/v3/apis/nope/v1").code == 404
    only_pb = "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"
    assert call(api, "GET", "/openapi/v3/api/v1", accept=only_pb).code == 406


def _v3(api: APIServer, gv: str) -> dict[str, Any]:
    return json.loads(call(api, "GET", f"/openapi/v3/{gv}").body)


def test_every_kind_has_upstream_schema_and_operations(api):
    docs: dict[str, dict[str, Any]] = {}
    for t in TYPES:
        gv = f"apis/{t.group}/{t.version}" if t.group else f"api/{t.version}"
        doc = docs.setdefault(gv, _v3(api, gv))
        gvk = {"group": t.group, "version": t.version, "kind": t.kind}
        schemas = [n for n, s in doc["components"]["schemas"].items() if gvk in s.get("x-kubernetes-group-version-kind", [])]
        assert len(schemas) == 1, (t.kind, schemas)
        name = schemas[0]
        # upstream's definition names (APIService's is kube-aggregator's)
        assert name.startswith(("io.k8s.api.", "io.k8s.kube-aggregator.pkg.apis.")) and name.endswith("." + t.kind)
        assert doc["components"]["schemas"][name]["description"]
        ops = [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items()
               if isinstance(op, dict) and op.get("x-kubernetes-group-version-kind") == gvk]
        actions = {op["x-kubernetes-action"] for _, _, op in ops}
        assert "post" in actions, t.kind
        if "patch" in t.verbs:
            assert {"get", "put", "patch", "delete"} <= actions, (t.kind, actions)
            patch = next(op for p, m, op in ops if m == "patch" and p.endswith("{name}"))
            assert {"application/json-patch+json", "application/merge-patch+json", SMP,
                    "application/apply-patch+yaml"} == set(patch["requestBody"]["content"])
            assert {"dryRun", "fieldManager", "fieldValidation", "force"} <= {q["name"] for q in patch["parameters"]}
        if "list" in t.verbs:
            assert "list" in actions
        for p, _, _ in ops:  # only what the lab routes
            assert "/watch/" not in p
    pod = docs["api/v1"]["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert pod["x-kubernetes-patch-merge-key"] == "name" and pod["x-kubernetes-patch-strategy"] == "merge"
    assert pod["x-kubernetes-list-type"] == "map" and pod["x-kubernetes-list-map-keys"] == ["name"]
    assert pod["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    meta = docs["api/v1"]["components"]["schemas"]["io.k8s.api.core.v1.Pod"]["properties"]["metadata"]
    assert meta["allOf"] == [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert "io.k8s.api.core.v1.Pod" in docs["api/v1"]["components"]["schemas"]
    assert not any(n.startswith("io.k8s.api.core.v1.ComponentStatus") for n in docs["api/v1"]["components"]["schemas"])
    assert "x-kperflab-source" in openapi.upstream() and "release-1.36" in openapi.upstream()["x-kperflab-source"]


class Wire:
    """A minimal protobuf wire reader (independent of the writer): field number → list of raw values."""

    def __init__(self, data: bytes) -> None:
        self.fields: dict[int, list[Any]] = {}
        i = 0
        while i < len(data):
            key, i = self._varint(data, i)
            num, wire = key >> 3, key & 7
            if wire == 0:
                value, i = self._varint(data, i)
            elif wire == 1:
                value, i = data[i:i + 8], i + 8
            elif wire == 2:
                n, i = self._varint(data, i)
                value, i = data[i:i + n], i + n
            else:
                raise AssertionError(f"wire type {wire}")
            self.fields.setdefault(num, []).append(value)

    @staticmethod
    def _varint(data: bytes, i: int) -> tuple[int, int]:
        shift = result = 0
        while True:
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result, i

    def str(self, num: int) -> str:
        return self.fields[num][0].decode()

    def msg(self, num: int) -> Wire:
        return Wire(self.fields[num][0])

    def named(self, num: int) -> dict[str, Wire]:
        out = {}
        for raw in self.fields.get(num, []):
            pair = Wire(raw)
            out[pair.str(1)] = pair.msg(2)
        return out


def test_v2_json_and_gnostic_protobuf(api):
    js = call(api, "GET", "/openapi/v2")
    doc = json.loads(js.body)
    assert js.code == 200 and doc["swagger"] == "2.0" and doc["info"]["version"] == version_info()["gitVersion"]
    pb = call(api, "GET", "/openapi/v2", accept=V2_PB)
    assert pb.code == 200 and pb.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert pb.headers["Etag"] == js.headers["Etag"] == f'"{hashlib.sha512(js.body).hexdigest().upper()}"'
    d = Wire(pb.body)  # gnostic openapi.v2.Document: 1 swagger, 2 info, 8 paths, 9 definitions, 10 parameters
    assert d.str(1) == "2.0" and d.msg(2).str(2) == version_info()["gitVersion"]
    defs = d.msg(9).named(1)
    assert list(defs) == list(doc["definitions"])
    pod = defs["io.k8s.api.core.v1.Pod"]  # Schema: 4 description, 22 type, 25 properties, 31 vendor_extension
    assert pod.str(4) == doc["definitions"]["io.k8s.api.core.v1.Pod"]["description"]
    assert pod.msg(22).str(1) == "object" and list(pod.msg(25).named(1)) == ["apiVersion", "kind", "metadata", "spec", "status"]
    ext = {Wire(raw).str(1): yaml.safe_load(Wire(raw).msg(2).str(2)) for raw in pod.fields[31]}
    assert ext == {"x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]}
    spec = defs["io.k8s.api.core.v1.PodSpec"].msg(25).named(1)
    assert spec["containers"].msg(23).msg(1).str(1) == "#/definitions/io.k8s.api.core.v1.Container"
    paths = d.msg(8).named(2)  # Paths: 2 path; PathItem: 2 get … 8 patch, 9 parameters
    patch = paths["/api/v1/namespaces/{namespace}/pods/{name}"].msg(8)  # Operation: 5 operation_id, 8 parameters
    assert patch.str(5) == "patchCoreV1NamespacedPod"
    assert call(api, "GET", "/openapi/v2", accept="text/html").code == 406


def test_accept_negotiation_order(api):
    r = call(api, "GET", "/openapi/v2", accept=f"{V2_PB}, application/json")
    assert r.headers["Content-Type"].endswith("+protobuf")
    r = call(api, "GET", "/openapi/v2", accept=f"{V2_PB};q=0.5, application/json")
    assert r.headers["Content-Type"] == "application/json"
    r = call(api, "GET", "/openapi/v2", accept="*/*")
    assert r.headers["Content-Type"] == "application/json"


# -- field validation ----------------------------------------------------------------------------------

def _create_path(t: Any) -> str:
    pre = f"/apis/{t.group}/{t.version}" if t.group else f"/api/{t.version}"
    return f"{pre}/namespaces/default/{t.plural}" if t.namespaced else f"{pre}/{t.plural}"


def test_strict_warn_ignore_for_every_kind(api):
    for t in TYPES:
        body = {"apiVersion": t.group_version, "kind": t.kind, "metadata": {"name": "x", "bogusMeta": 1},
                "spec": {"bogusSpec": True}, "bogus": 1}
        definition = openapi.upstream()["definitions"][openapi.definition_for(t.group, t.version, t.kind)]
        if "spec" not in definition["properties"]:
            body.pop("spec")
        # the decoder meets the fields in document order: metadata, spec, then the top-level stranger
        order = ['unknown field "metadata.bogusMeta"'] + ['unknown field "spec.bogusSpec"'] * ("spec" in body) + [
            'unknown field "bogus"']
        r = call(api, "POST", _create_path(t), body, {"fieldValidation": "Strict"})
        assert r.code == 400, (t.kind, r.code, r.body)
        assert r.body["message"] == (f'{t.kind} in version "{t.version}" cannot be handled as a {t.kind}: '
                                     f'strict decoding error: {", ".join(order)}'), t.kind
        r = call(api, "POST", _create_path(t), body, {"fieldValidation": "Warn"})
        assert r.code != 400 or "strict decoding" not in r.body.get("message", ""), t.kind
        assert r.headers["Warning"] == ", ".join(f'299 - "{e.replace(chr(34), chr(92) + chr(34))}"' for e in order), t.kind
        r = call(api, "POST", _create_path(t), body, {})  # no parameter: kube-apiserver's default is Warn
        assert "Warning" in r.headers, t.kind
        r = call(api, "POST", _create_path(t), body, {"fieldValidation": "Ignore"})
        assert "Warning" not in r.headers, t.kind


def test_strict_nested_lists_maps_and_free_form(api):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"any-key": "ok"}},
           "spec": {"containers": [{"name": "a", "image": "busybox"},
                                   {"name": "b", "image": "busybox", "imagePullPolcy": "Always",
                                    "resources": {"limits": {"cpu": "1"}, "limitz": {}}}]}}
    r = call(api, "POST", "/api/v1/namespaces/default/pods", pod, {"fieldValidation": "Strict"})
    assert r.body["message"].endswith('strict decoding error: unknown field "spec.containers[1].imagePullPolcy", '
                                      'unknown field "spec.containers[1].resources.limitz"')
    # RawExtension (a ControllerRevision's data) takes any object
    rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"}, "revision": 1,
           "data": {"anything": {"at": ["all"]}}}
    r = call(api, "POST", "/apis/apps/v1/namespaces/default/controllerrevisions", rev, {"fieldValidation": "Strict"})
    assert r.code == 201 and "Warning" not in r.headers
    # a PUT is decoded the same way
    cm = call(api, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}, "data": {"a": "1"}}).body
    r = call(api, "PUT", "/api/v1/namespaces/default/configmaps/c", {**cm, "dta": {}}, {"fieldValidation": "Strict"})
    assert (r.code, r.body["message"]) == (400, 'ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                                                'strict decoding error: unknown field "dta"')


def test_duplicate_fields_json_and_yaml(api):
    raw = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","name":"b"},"data":{"k":"1","k":"2"},"x":1}'
    r = call(api, "POST", "/api/v1/namespaces/default/configmaps", raw, {"fieldValidation": "Strict"})
    assert r.body["message"].endswith('strict decoding error: duplicate field "metadata.name", duplicate field "data.k", '
                                      'unknown field "x"')
    doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n  name: z\ndata:\n  a: '1'\nbogus: 1\n"
    r = call(api, "POST", "/api/v1/namespaces/default/configmaps", doc, {"fieldValidation": "Strict"},
             ctype="application/yaml")
    assert r.body["message"].endswith('strict decoding error: yaml: unmarshal errors:\n  line 5: key "name" already '
                                      'set in map, unknown field "bogus"')
    r = call(api, "POST", "/api/v1/namespaces/default/configmaps", doc, {"fieldValidation": "Warn"},
             ctype="application/yaml")
    assert r.code == 201 and r.body["metadata"]["name"] == "z"
    assert r.headers["Warning"] == '299 - "line 5: key \\"name\\" already set in map", 299 - "unknown field \\"bogus\\""'


def test_warning_header_as_the_recorder_writes_it():
    assert strict.warning_header(['a "b"', 'a "b"', "c\\d", "bad\x07"]) == '299 - "a \\"b\\"", 299 - "c\\\\d"'
    many = [f"{i:03d}" + "x" * 400 for i in range(20)]  # past 4096 runes: each cut to 256, until 4096 written
    parts = strict.warning_header(many).split(", 299 - ")
    assert len(parts) == 16 and all(len(p.strip('"').removeprefix('299 - "')) == 256 for p in parts)


def test_patched_object_checks():
    warnings: list[str] = []

    def patched() -> dict[str, Any]:
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicass": 2}}

    obj = patched()
    strict.check_patched("Warn", SMP, "apps", "v1", "Deployment", {"spec": {"replicass": 2}}, obj, warnings)
    assert warnings == ['unknown field "spec.replicass"'] and obj["spec"] == {}
    with pytest.raises(Exception) as exc:
        strict.check_patched("Strict", SMP, "apps", "v1", "Deployment", {"spec": {"replicass": 2, "x": [1, "a"]}},
                             patched(), [])
    assert exc.value.code == 422 and exc.value.message == (
        ' "" is invalid: patch: Invalid value: "map[spec:map[replicass:2 x:[1 a]]]": strict decoding error: '
        'unknown field "spec.replicass"')
    obj = patched()
    strict.check_patched("Ignore", SMP, "apps", "v1", "Deployment", {"spec": {"replicass": 2}}, obj, warnings)
    assert obj["spec"] == {} and len(warnings) == 1
    assert strict.go_format({"b": None, "a": [True, 1.5, 2.0]}) == "map[a:[true 1.5 2] b:<nil>]"


def test_reduction_script_is_deterministic(tmp_path):
    """The committed data is what scripts/openapi_reduce.py makes of its own output (a fixed point: paths kept,
    nothing else pruned), so the script and the data agree."""
    import runpy

    mod = runpy.run_path(str(Path(__file__).resolve().parents[1] / "scripts" / "openapi_reduce.py"))
    up = openapi.upstream()
    src = {k: v for k, v in up.items() if k != "x-kperflab-source"}
    again = mod["reduce"](src, up["x-kperflab-source"])
    assert again["definitions"].keys() == up["definitions"].keys() and again["paths"].keys() == up["paths"].keys()
    assert gzip.decompress(openapi.SPEC_FILE.read_bytes())  # a real gzip


# -- over HTTPS, with real kubectl ----------------------------------------------------------------------

class Server:
    """The lab's APIServer over HTTPS in this process (no kubelet), for kubectl."""

    def __init__(self, tmp: Path) -> None:
        ca, cert, key = pki.write_tls(pki.make_server_tls(), tmp / "tls")
        self.store = Store()
        for ns in ("default",):
            self.store.create("v1/namespaces", {"metadata": {"name": ns}, "status": {"phase": "Active"}})
        self.api = APIServer(self.store, TOKEN, version=version_info())
        self.seen: list[str] = []
        handle = self.api.handle

        def recording(req: Request) -> Any:
            self.seen.append(f"{req.method} {req.path} {req.headers.get('accept', '')}")
            return handle(req)

        self.api.handle = recording  # type: ignore[method-assign]
        self.server, _ = serve(self.api, str(cert), str(key))
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.ca = ca
        self.tmp = tmp
        self.kubeconfig = write_kubeconfig(tmp / "kubeconfig", self.url, ca.read_bytes(), TOKEN)

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.tmp / "cache"),
                               "-n", "default", *args], capture_output=True, text=True, input=stdin, timeout=60)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if KUBECTL is None:
        pytest.skip("needs kubectl")
    s = Server(tmp_path_factory.mktemp("openapi"))
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_headers_on_the_wire(srv):
    import ssl

    ctx = ssl.create_default_context(cafile=str(srv.ca))

    def get(path: str, **headers: str) -> Any:
        req = urllib.request.Request(srv.url + path, headers={"Authorization": f"Bearer {TOKEN}", **headers})
        try:
            return urllib.request.urlopen(req, context=ctx)
        except urllib.error.HTTPError as exc:
            return exc

    r = get("/openapi/v3")
    etag = r.headers["ETag"]
    assert r.status == 200 and etag.startswith('"') and r.headers["Cache-Control"] == "no-cache, private"
    url = json.loads(r.read())["paths"]["api/v1"]["serverRelativeURL"]
    r = get(url)
    assert r.headers["Cache-Control"] == "public, immutable" and r.headers["Vary"] == "Accept"
    r = get("/openapi/v3", **{"If-None-Match": etag})
    assert r.status == 304 and r.read() == b""
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "dta": {}}).encode()
    req = urllib.request.Request(srv.url + "/api/v1/namespaces/default/configmaps?fieldValidation=Warn", data=body,
                                 method="POST", headers={"Authorization": f"Bearer {TOKEN}",
                                                         "Content-Type": "application/json"})
    r = urllib.request.urlopen(req, context=ctx)
    assert r.status == 201 and r.headers.get_all("Warning") == ['299 - "unknown field \\"dta\\""']


def test_kubectl_explain_each_kind(srv):
    assert {_explain_key(t) for t in TYPES} <= set(EXPLAIN), "add a field to EXPLAIN for a new kind"
    defs = openapi.upstream()["definitions"]

    def one(t: Any) -> tuple[Any, str, subprocess.CompletedProcess[str]]:
        field = EXPLAIN[_explain_key(t)]
        args = ["explain", f"{t.plural}.{field}", f"--api-version={t.group_version}"]
        return t, field, srv.kubectl(*args)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, TYPES))
    for t, field, r in results:
        assert r.returncode == 0, (t.kind, r.stderr)
        assert f"KIND:       {t.kind}\nVERSION:    {t.version}" in r.stdout, (t.kind, r.stdout[:200])
        assert f"FIELD: {field.split('.')[-1]} <" in r.stdout, (t.kind, r.stdout[:300])
        # the field's upstream description, as kubectl wraps it
        name = openapi.definition_for(t.group, t.version, t.kind)
        node: Any = defs[name]
        for part in field.split("."):
            node = node["properties"][part]
            ref = node.get("$ref") or (node.get("items") or {}).get("$ref")
            desc = node["description"]
            if ref:
                node = defs[ref.rsplit("/", 1)[-1]]
        first = " ".join(desc.split()[:4])
        assert first in " ".join(r.stdout.split()), (t.kind, first)


def test_kubectl_explain_recursive_and_v2(srv):
    r = srv.kubectl("explain", "hpa.spec.behavior", "--recursive")
    assert r.returncode == 0, r.stderr
    assert "scaleDown\t<HPAScalingRules>" in r.stdout and "stabilizationWindowSeconds\t<integer>" in r.stdout
    assert "periodSeconds\t<integer> -required-" in r.stdout
    r = srv.kubectl("explain", "deployment.spec.strategy", "--output", "plaintext-openapiv2")
    assert r.returncode == 0 and "RESOURCE: strategy <Object>" in r.stdout, r.stdout + r.stderr


DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  replicass: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: c
        image: busybox
        imagePullPolcy: Always
"""


def test_kubectl_apply_validation(srv):
    srv.seen.clear()
    r = srv.kubectl("apply", "-f", "-", stdin=DEPLOY.format(name="bad"))
    assert r.returncode == 1
    assert r.stderr.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be handled as a '
        'Deployment: strict decoding error: unknown field "spec.replicass", unknown field '
        '"spec.template.spec.containers[0].imagePullPolcy"')
    assert not any("/openapi/v2" in s for s in srv.seen)  # v3 says fieldValidation: the server validates
    r = srv.kubectl("apply", "-f", "-", "--validate=warn", stdin=DEPLOY.format(name="warned"))
    assert r.returncode == 0 and r.stdout.strip() == "deployment.apps/warned created"
    assert r.stderr.splitlines() == ['Warning: unknown field "spec.replicass"',
                                     'Warning: unknown field "spec.template.spec.containers[0].imagePullPolcy"']
    r = srv.kubectl("apply", "-f", "-", "--validate=false", stdin=DEPLOY.format(name="loose"))
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "deployment.apps/loose created", "")
    for name in ("warned", "loose"):  # Warn and Ignore store the object without the unknown fields, as upstream
        stored = srv.store.get("apps/v1/deployments", "default", name)
        assert "replicass" not in stored["spec"] and stored["spec"]["replicas"] == 1
        assert stored["spec"]["template"]["spec"]["containers"] == [{"name": "c", "image": "busybox"}] or \
            "imagePullPolcy" not in stored["spec"]["template"]["spec"]["containers"][0]


LIST = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: l1}
  data: {a: "VALUE"}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: r1}
  rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list]
- apiVersion: autoscaling/v2
  kind: HorizontalPodAutoscaler
  metadata: {name: h1}
  spec:
    scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
    minReplicas: 1
    maxReplicas: 3
    metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
"""


def test_kubectl_apply_kind_list(srv):
    """A `kind: List` is validated client-side against /openapi/v2 as gnostic protobuf (kubectl's v3 check skips
    v1 List), then applied item by item; applied again it is unchanged; changed, configured."""
    srv.seen.clear()
    r = srv.kubectl("apply", "-f", "-", stdin=LIST)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["configmap/l1 created", "role.rbac.authorization.k8s.io/r1 created",
                                     "horizontalpodautoscaler.autoscaling/h1 created"]
    assert any(s.startswith("GET /openapi/v2 ") and V2_PB in s for s in srv.seen)
    r = srv.kubectl("apply", "-f", "-", stdin=LIST)
    assert r.stdout.splitlines()[0] == "configmap/l1 unchanged", r.stdout + r.stderr
    r = srv.kubectl("apply", "-f", "-", stdin=LIST.replace("VALUE", "OTHER"))
    assert r.stdout.splitlines()[0] == "configmap/l1 configured", r.stdout + r.stderr
    assert srv.store.get("v1/configmaps", "default", "l1")["data"] == {"a": "OTHER"}
    bad = LIST.replace("  data: {a: \"VALUE\"}", "  data: {a: \"VALUE\"}\n  bogus: 1")
    r = srv.kubectl("apply", "-f", "-", stdin=bad)
    assert r.returncode == 1 and ('error validating data: ValidationError(ConfigMap): unknown field "bogus" in '
                                  'io.k8s.api.core.v1.ConfigMap' in r.stderr), r.stderr
    assert "turn validation off with --validate=false" in r.stderr


# -- on the real lab ---------------------------------------------------------------------------------------

def on_lab(f: Any) -> Any:
    return pytest.mark.lab(needs_root(f))


def _raw(api: Any, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None) -> Any:
    """One request through the official client's own transport (its typed calls refuse unknown fields before
    sending: client 37's models forbid extra keys), answered with status, headers and decoded body."""
    req = api.param_serialize(method, path, query_params=query or [], body=body, auth_settings=["BearerToken"],
                              header_params={"Content-Type": "application/json", "Accept": "application/json"})
    from kubernetes.client.rest import ApiException

    try:
        resp = api.call_api(*req)
    except ApiException as exc:
        return exc.status, exc.headers or {}, json.loads(exc.body)
    return resp.status, resp.headers, json.loads(resp.read())


LAB_CASES = [  # (path under the namespace, body, the unknown field, kind)
    ("/api/v1/namespaces/{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                                            "data": {"a": "1"}, "dataa": {}}, "dataa", "ConfigMap"),
    ("/apis/apps/v1/namespaces/{ns}/deployments", yaml.safe_load(DEPLOY.format(name="d")), "spec.replicass", "Deployment"),
    ("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"},
        "rules": [{"verbs": ["get"], "resources": ["pods"], "apiGroups": [""], "verb": "x"}]}, "rules[0].verb", "Role"),
]


@on_lab
def test_lab_official_client_field_validation(lab, namespace):
    from kubernetes import config, dynamic
    from kubernetes.dynamic.exceptions import BadRequestError

    api = config.new_client_from_config(str(lab["kubeconfig"]))
    dyn = dynamic.DynamicClient(api)
    for path, body, field, kind in LAB_CASES:
        group_version = body["apiVersion"]
        res = dyn.resources.get(api_version=group_version, kind=kind)
        with pytest.raises(BadRequestError) as exc:  # the dynamic client: query parameters pass through
            res.create(body=body, namespace=namespace, query_params=[("fieldValidation", "Strict")])
        assert json.loads(exc.value.body)["message"].startswith(
            f'{kind} in version "v1" cannot be handled as a {kind}: strict decoding error: unknown field "{field}"')
        code, headers, created = _raw(api, "POST", path.format(ns=namespace), body, [("fieldValidation", "Warn")])
        assert code == 201 and f'299 - "unknown field \\"{field}\\""' in headers["Warning"], headers
        node: Any = created
        for part in field.replace("[0]", ".0").split(".")[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        assert field.split(".")[-1].replace("[0]", "") not in node  # dropped, as upstream's decoder drops it


@on_lab
def test_lab_objects_match_upstream_schemas(lab, namespace):
    """What the lab itself writes (node, namespaces, service accounts, events, endpoints, pods with their status)
    has only fields upstream's schemas know: a client decoding it strictly finds nothing unknown."""
    from kubernetes import client, config

    from .conftest import wait_pod

    api = config.new_client_from_config(str(lab["kubeconfig"]))
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
        "terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox:1.37",
                                                            "command": ["sleep", "60"]}]}})
    wait_pod(core, namespace, "p", lambda p: p.status.phase == "Running")
    found = []
    for t in TYPES:
        if "list" not in t.verbs:
            continue
        prefix = f"/apis/{t.group}/{t.version}" if t.group else f"/api/{t.version}"
        code, _, data = _raw(api, "GET", f"{prefix}/{t.plural}")
        assert code == 200, (t.kind, data)
        for item in data["items"]:
            item.setdefault("apiVersion", t.group_version)
            item.setdefault("kind", t.kind)
            errs = strict.object_errors(t.group, t.version, t.kind, item)
            if errs:
                found.append((t.kind, item["metadata"].get("name"), errs))
    assert found == []
