"""Kubernetes protobuf request bodies, as kubectl 1.32's typed clients send them (`kubectl create <kind>`, `create
token`, `autoscale`, `auth can-i`): the bytes are kubectl's own, captured by an in-process API server (the lab's
`APIServer` over HTTPS, no kubelet), and decode to exactly the JSON kubectl prints for the same command with
`--dry-run=client -o json`; objects created from them read back as their JSON-created twins do; broken bodies get a
400 Status, never a 500. A few tests repeat the end-to-end part on the session's real lab."""

from __future__ import annotations

import base64
import copy
import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kperflab.lab import pki, protobuf
from kperflab.lab.apiserver import APIServer, Request, serve
from kperflab.lab.store import Store

from .conftest import needs_root, write_kubeconfig

KUBECTL = shutil.which("kubectl")
TOKEN = "pb-admin-token"
PB = protobuf.MEDIA_TYPE
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="needs kubectl 1.32")


class Capture:
    """The lab's APIServer over HTTPS in this process, recording every body kubectl sends."""

    def __init__(self, tmp: Path) -> None:
        ca, cert, key = pki.write_tls(pki.make_server_tls(), tmp / "tls")
        self.api = APIServer(Store(), TOKEN, version={"major": "1", "minor": "32", "gitVersion": "v1.32.0"})
        self.sent: list[Request] = []
        handle = self.api.handle

        def recording(req: Request) -> Any:
            if req.body:
                self.sent.append(req)
            return handle(req)

        self.api.handle = recording  # type: ignore[method-assign]
        self.server, _ = serve(self.api, str(cert), str(key))
        self.tmp = tmp
        self.kubeconfig = write_kubeconfig(tmp / "kubeconfig", f"https://127.0.0.1:{self.server.server_address[1]}",
                                           ca.read_bytes(), TOKEN)
        for ns in ("default", "workshop"):  # the kubeconfig's namespace is "workshop"
            self.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        self.call("POST", "/api/v1/namespaces/workshop/serviceaccounts", {"metadata": {"name": "robot"}})
        self.call("POST", "/apis/apps/v1/namespaces/workshop/deployments", {
            "metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
        self.sent.clear()

    def call(self, method: str, path: str, body: Any = None, ctype: str = "application/json",
             **query: str) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        return self.api.handle(Request(method, path, query, {"authorization": f"Bearer {TOKEN}",
                                                            "content-type": ctype}, data))

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.tmp / "cache"),
                               *args], capture_output=True, text=True, input=stdin, cwd=self.tmp, timeout=60)

    def protobuf_bodies(self, *args: str) -> list[Request]:
        self.sent.clear()
        self.kubectl(*args)
        return [r for r in self.sent if r.headers.get("content-type") == PB]


@pytest.fixture(scope="module")
def cap(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if KUBECTL is None:
        pytest.skip("needs kubectl 1.32")
    tmp = tmp_path_factory.mktemp("protobuf")
    c = Capture(tmp)
    _files(tmp)
    yield c
    c.server.shutdown()
    c.server.server_close()


def _files(tmp: Path) -> None:
    """A certificate and key for `create secret tls`, a binary file for --from-file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pb.example")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    (tmp / "blob.bin").write_bytes(bytes(range(256)) * 3)


# Every `kubectl create` generator, `autoscale`, with the flags that reach the less common wire types: bytes maps
# (Secret.data, ConfigMap.binaryData), IntOrString (ports, PDB), Quantity maps, int32/int64/bool, repeated messages,
# embedded structs, kinds the lab does not serve (decoded all the same).
DRY_RUN_COMMANDS = [
    "create namespace pb-ns",
    "create configmap pb-cm --from-literal=a=b --from-literal=empty=",
    "create configmap pb-cm2 --from-file=blob.bin --from-literal=x=y",
    "create secret generic pb-s --from-literal=user=admin --from-literal=pw=s3cr3t",
    "create secret generic pb-s2 --from-file=blob.bin --type=Opaque",
    "create secret tls pb-tls --cert=tls.crt --key=tls.key",
    "create secret docker-registry pb-reg --docker-server=r.io --docker-username=u --docker-password=p --docker-email=e@x",
    "create serviceaccount pb-sa",
    "create job pb-job --image=busybox -- echo hi",
    "create cronjob pb-cj --image=busybox --schedule='*/1 * * * *' -- echo hi",
    "create deployment pb-dep --image=nginx --replicas=3 --port=80",
    "create deployment pb-dep2 --image=nginx --image=busybox",
    "create service clusterip pb-svc --tcp=80:8080 --tcp=443",
    "create service clusterip pb-headless --clusterip=None",
    "create service nodeport pb-np --tcp=80:8080 --node-port=30080",
    "create service loadbalancer pb-lb --tcp=80:http",
    "create service externalname pb-ext --external-name=example.com",
    "create role pb-role --verb=get,list --resource=pods,deployments.apps --resource-name=a",
    "create rolebinding pb-rb --role=pb-role --user=alice --serviceaccount=default:robot --group=devs",
    "create rolebinding pb-rb2 --clusterrole=view --user=bob",
    "create clusterrole pb-cr --verb=get --resource=nodes --non-resource-url=/logs/*",
    "create clusterrole pb-cr2 --aggregation-rule=rbac.example.com/aggregate=true",
    "create clusterrolebinding pb-crb --clusterrole=pb-cr --user=bob --group=g1",
    "create quota pb-q --hard=cpu=1,memory=1G,pods=2 --scopes=BestEffort",
    "create priorityclass pb-pc --value=1000 --description=hello --preemption-policy=Never",
    "create poddisruptionbudget pb-pdb --selector=app=x --min-available=50%",
    "create poddisruptionbudget pb-pdb2 --selector=app=x --max-unavailable=1",
    "create ingress pb-ing --rule=foo.com/bar=svc1:8080 --rule=bar.com/*=svc2:http,tls=sec --class=nginx --annotation=a=b",
    "autoscale deployment web --min=2 --max=5 --cpu-percent=80",
]


def _split(cmd: str) -> tuple[list[str], list[str]]:
    args = shlex.split(cmd)
    if "--" in args:
        i = args.index("--")
        return args[:i], args[i:]
    return args, []


@needs_kubectl
@pytest.mark.parametrize("cmd", DRY_RUN_COMMANDS)
def test_kubectls_protobuf_body_decodes_to_the_json_it_prints(cap: Capture, cmd: str) -> None:
    head, tail = _split(cmd)
    dry = cap.kubectl(*head, "--dry-run=client", "-o", "json", *tail)
    assert dry.returncode == 0, dry.stderr
    bodies = cap.protobuf_bodies(*head, *tail)
    assert bodies, f"kubectl sent no protobuf body for {cmd!r}: {[(r.method, r.path) for r in cap.sent]}"
    assert bodies[-1].body.startswith(protobuf.MAGIC)
    assert protobuf.decode(bodies[-1].body) == json.loads(dry.stdout)


def _review(kind: str, group: str, spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": f"{group}/v1", "metadata": {"creationTimestamp": None}, "spec": spec,
            "status": status}


# Commands without --dry-run: what their Go structs marshal to (nil slices and pointers without omitempty are null)
NO_DRY_RUN = [
    ("auth can-i create pods", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
     _review("SelfSubjectAccessReview", "authorization.k8s.io",
             {"resourceAttributes": {"namespace": "workshop", "verb": "create", "resource": "pods"}}, {"allowed": False})),
    ("auth can-i list deployments.apps -n default", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
     _review("SelfSubjectAccessReview", "authorization.k8s.io",
             {"resourceAttributes": {"namespace": "default", "verb": "list", "group": "apps", "resource": "deployments"}},
             {"allowed": False})),
    ("auth can-i get pods/log --subresource=x", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
     _review("SelfSubjectAccessReview", "authorization.k8s.io",
             {"resourceAttributes": {"namespace": "workshop", "verb": "get", "resource": "pods", "subresource": "x",
                                     "name": "log"}}, {"allowed": False})),
    ("auth can-i get /healthz", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
     _review("SelfSubjectAccessReview", "authorization.k8s.io",
             {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}, {"allowed": False})),
    ("auth can-i --list", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
     _review("SelfSubjectRulesReview", "authorization.k8s.io", {"namespace": "workshop"},
             {"resourceRules": None, "nonResourceRules": None, "incomplete": False})),
    ("create token robot", "/api/v1/namespaces/workshop/serviceaccounts/robot/token",
     _review("TokenRequest", "authentication.k8s.io", {"audiences": None, "expirationSeconds": None, "boundObjectRef": None},
             {"token": "", "expirationTimestamp": None})),
    ("create token robot --duration=10m --audience=a --audience=b --bound-object-kind=Pod --bound-object-name=p "
     "--bound-object-uid=0c7a", "/api/v1/namespaces/workshop/serviceaccounts/robot/token",
     _review("TokenRequest", "authentication.k8s.io",
             {"audiences": ["a", "b"], "expirationSeconds": 600,
              "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "0c7a"}},
             {"token": "", "expirationTimestamp": None})),
]


@needs_kubectl
@pytest.mark.parametrize("cmd,path,want", NO_DRY_RUN, ids=[c for c, _, _ in NO_DRY_RUN])
def test_auth_and_token_bodies_decode(cap: Capture, cmd: str, path: str, want: dict[str, Any]) -> None:
    bodies = cap.protobuf_bodies(*shlex.split(cmd))
    assert [r.path for r in bodies] == [path], [(r.method, r.path) for r in cap.sent]
    assert protobuf.decode(bodies[0].body) == want


# -- the API server reads them --------------------------------------------------------------------------

TWINS = [  # (command with {name}, path of the collection), kinds the lab stores as they come
    ("create namespace {name}", "/api/v1/namespaces"),
    ("create configmap {name} --from-literal=a=b --from-file=blob.bin", "/api/v1/namespaces/workshop/configmaps"),
    ("create secret generic {name} --from-literal=pw=x --from-file=blob.bin", "/api/v1/namespaces/workshop/secrets"),
    ("create secret tls {name} --cert=tls.crt --key=tls.key", "/api/v1/namespaces/workshop/secrets"),
    ("create serviceaccount {name}", "/api/v1/namespaces/workshop/serviceaccounts"),
    ("create job {name} --image=busybox -- echo hi", "/apis/batch/v1/namespaces/workshop/jobs"),
    ("create deployment {name} --image=nginx --replicas=2 --port=80", "/apis/apps/v1/namespaces/workshop/deployments"),
    ("create service clusterip {name} --tcp=80:8080", "/api/v1/namespaces/workshop/services"),
    ("create role {name} --verb=get --resource=pods", "/apis/rbac.authorization.k8s.io/v1/namespaces/workshop/roles"),
    ("create rolebinding {name} --clusterrole=view --user=bob",
     "/apis/rbac.authorization.k8s.io/v1/namespaces/workshop/rolebindings"),
    ("create clusterrole {name} --verb=get --resource=nodes", "/apis/rbac.authorization.k8s.io/v1/clusterroles"),
    ("create clusterrolebinding {name} --clusterrole=view --group=g1",
     "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
]


def normalized(obj: dict[str, Any], drop_status: bool = False) -> dict[str, Any]:
    """The object without what differs between two creations: its name, uid, times, versions, allocated IPs."""
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    name, uid = meta.pop("name"), meta.pop("uid", None)
    for k in ("resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink"):
        meta.pop(k, None)
    for k in ("clusterIP", "clusterIPs"):
        obj.get("spec", {}).pop(k, None)
    if drop_status:
        obj.pop("status", None)

    def sub(v: Any) -> Any:
        if isinstance(v, dict):
            return {sub(k): sub(x) for k, x in v.items()}
        if isinstance(v, list):
            return [sub(x) for x in v]
        return "<name>" if v == name else "<uid>" if v == uid and uid else v

    return sub(obj)


def _twins(kubectl: Any, get: Any, template: str, suffix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create the object with kubectl's typed client (protobuf) and its twin from the same command's JSON through
    `kubectl create -f` (JSON); return both as the server reads them back."""
    kind = "-".join(w for w in shlex.split(template)[1:3] if "{" not in w)
    pb_name, js_name = f"pb-{kind}-{suffix}", f"js-{kind}-{suffix}"
    head, tail = _split(template.format(name=pb_name))
    made = kubectl(*head, *tail)
    assert made.returncode == 0, made.stderr
    head, tail = _split(template.format(name=js_name))
    dry = kubectl(*head, "--dry-run=client", "-o", "json", *tail)
    assert dry.returncode == 0, dry.stderr
    made = kubectl("create", "-f", "-", stdin=dry.stdout)
    assert made.returncode == 0, made.stderr
    return get(pb_name), get(js_name)


@needs_kubectl
@pytest.mark.parametrize("template,path", TWINS, ids=[t.split(" {")[0] for t, _ in TWINS])
def test_objects_created_from_protobuf_equal_their_json_twins(cap: Capture, template: str, path: str) -> None:
    def get(name: str) -> dict[str, Any]:
        r = cap.call("GET", f"{path}/{name}")
        assert r.code == 200, r.body
        return r.body

    pb, js = _twins(cap.kubectl, get, template, "t")
    assert normalized(pb) == normalized(js)


@needs_kubectl
def test_auth_can_i_gets_an_answer(cap: Capture) -> None:
    """`kubectl auth can-i` used to get 400 (its SelfSubjectAccessReview arrives as protobuf); the admin may."""
    r = cap.kubectl("auth", "can-i", "create", "pods")
    assert (r.returncode, r.stdout.strip()) == (0, "yes"), r.stderr
    r = cap.kubectl("auth", "can-i", "--list")
    assert r.returncode == 0 and "Resources" in r.stdout, r.stdout + r.stderr


@needs_kubectl
def test_auth_reconcile_creates_and_updates_by_protobuf(cap: Capture) -> None:
    """`kubectl auth reconcile` POSTs a missing Role and PUTs a changed one, both as protobuf."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "rec", "namespace": "workshop"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    (cap.tmp / "rec.json").write_text(json.dumps(role))
    sent = cap.protobuf_bodies("auth", "reconcile", "-f", "rec.json")
    assert [(r.method, r.path) for r in sent] == [("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/workshop/roles")]
    assert protobuf.decode(sent[0].body) == {**role, "metadata": {**role["metadata"], "creationTimestamp": None}}
    role["rules"].append({"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]})
    (cap.tmp / "rec.json").write_text(json.dumps(role))
    sent = cap.protobuf_bodies("auth", "reconcile", "-f", "rec.json")
    assert [(r.method, r.path) for r in sent] == [("PUT", "/apis/rbac.authorization.k8s.io/v1/namespaces/workshop/roles/rec")]
    stored = cap.call("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/workshop/roles/rec").body
    assert stored["rules"] == role["rules"]
    assert stored["metadata"]["resourceVersion"] != protobuf.decode(sent[0].body)["metadata"]["resourceVersion"]


@needs_kubectl
def test_drain_evicts_with_the_eviction_api(cap: Capture) -> None:
    """`kubectl drain` finds pods/eviction (group policy, version v1) in discovery and evicts: an Eviction in JSON,
    not protobuf (its eviction client's choice), whose deleteOptions.gracePeriodSeconds the lab honours."""
    cap.call("POST", "/api/v1/nodes", {"metadata": {"name": "drain-node"}})
    made = cap.call("POST", "/api/v1/namespaces/workshop/pods", {"metadata": {"name": "drained"}, "spec": {
        "nodeName": "drain-node", "containers": [{"name": "c", "image": "busybox"}]}})
    assert made.code == 201, made.body
    assert cap.protobuf_bodies("drain", "drain-node", "--force", "--timeout=1s", "--grace-period=3") == []
    evictions = [r for r in cap.sent if r.method == "POST" and r.path.endswith("/eviction")]
    assert [r.path for r in evictions] == ["/api/v1/namespaces/workshop/pods/drained/eviction"]
    assert json.loads(evictions[0].body)["deleteOptions"] == {"gracePeriodSeconds": 3}
    pod = cap.call("GET", "/api/v1/namespaces/workshop/pods/drained").body
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 3 and pod["metadata"]["deletionTimestamp"]


# -- broken bodies: 400 Status, never 500 -----------------------------------------------------------------

@pytest.fixture(scope="module")
def samples(cap: Capture) -> list[Request]:
    """Real kubectl bodies to cut and bend."""
    out = []
    for cmd in ("create configmap cut-cm --from-literal=a=b --from-file=blob.bin", "create secret generic cut-s --from-literal=a=b",
                "create deployment cut-dep --image=nginx --replicas=2 --port=80", "create service nodeport cut-np --tcp=80:8080",
                "create role cut-role --verb=get --resource=pods", "auth can-i create pods"):
        out += cap.protobuf_bodies(*shlex.split(cmd))
    assert len(out) == 6
    return out


def _is_status(resp: Any, code: int) -> bool:
    b = resp.body
    return resp.code == code and isinstance(b, dict) and b.get("kind") == "Status" and b.get("code") == code


def _post(cap: Capture, req: Request, body: bytes) -> Any:
    return cap.api.handle(Request(req.method, req.path, {"dryRun": "All"}, dict(req.headers), body))


def test_every_truncation_of_a_kubectl_body_is_a_400(cap: Capture, samples: list[Request]) -> None:
    for req in samples:
        body = req.body
        whole = _field_ends(body)
        for n in range(len(body)):
            resp = _post(cap, req, body[:n])
            if n in whole or n == 0:  # cut between the envelope's fields (an object without raw is empty), or no body
                assert resp.code < 500, (req.path, n, resp.body)
                continue
            assert _is_status(resp, 400), (req.path, n, resp.code, resp.body)
            assert resp.body["message"].startswith("the body of the request could not be decoded: "), resp.body


def _field_ends(body: bytes) -> set[int]:
    """Offsets where runtime.Unknown's fields (typeMeta, raw, contentEncoding, contentType) end: a cut there leaves
    a well-formed envelope; a cut anywhere else breaks a length."""
    ends, i = set(), len(protobuf.MAGIC)
    while i < len(body):
        key, i = protobuf._varint(body, i, len(body))
        assert key & 7 == 2, key  # all four are length-delimited
        n, i = protobuf._varint(body, i, len(body))
        i += n
        ends.add(i)
    return ends


FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@FUZZ
@given(which=st.integers(0, 5), edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6))
def test_bent_kubectl_bodies_never_get_a_500(cap: Capture, samples: list[Request], which: int, edits: list) -> None:
    req = samples[which]
    body = bytearray(req.body)
    for pos, byte in edits:
        body[len(protobuf.MAGIC) + pos % (len(body) - len(protobuf.MAGIC))] = byte
    resp = _post(cap, req, bytes(body))
    assert resp.code < 500, resp.body
    if resp.code >= 400:
        assert _is_status(resp, resp.code), resp.body


@FUZZ
@given(garbage=st.binary(max_size=400))
def test_garbage_after_the_magic_gets_a_status(cap: Capture, samples: list[Request], garbage: bytes) -> None:
    resp = _post(cap, samples[0], protobuf.MAGIC + garbage)
    assert resp.code < 500, resp.body
    if resp.code >= 400:
        assert _is_status(resp, resp.code), resp.body


@pytest.mark.parametrize("body,why", [
    (b"", "the request body is empty"),
    (b"{}", "provided data does not appear to be a protobuf message, expected prefix [107, 56, 115, 0]"),
    (protobuf.MAGIC, "empty body"),
    (protobuf.MAGIC + b"\x0a\x05\x0a\x02v1", "unexpected EOF"),
    (protobuf.MAGIC + b"\x0a\x04\x0a\x02v1", "Object 'Kind' is missing"),
    (protobuf.MAGIC + b"\x0a\x0d\x0a\x02v1\x12\x07Gadgets", 'no kind "Gadgets" is registered for version "v1"'),
    (protobuf.MAGIC + b"\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x02\x08\x01", "proto: wrong wireType = 0 for field metadata"),
    (protobuf.MAGIC + b"\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x0b\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
     "proto: integer overflow"),
    (protobuf.MAGIC + b"\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x01\x0c", "wiretype end group for non-group"),
    (protobuf.MAGIC + b"\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x02\x0a\xff", "unexpected EOF"),
])
def test_malformed_bodies_say_why(cap: Capture, body: bytes, why: str) -> None:
    resp = cap.call("POST", "/api/v1/namespaces/workshop/configmaps", body, PB)
    assert _is_status(resp, 400), resp.body
    assert why in resp.body["message"]
    if body:
        assert resp.body["message"].startswith("the body of the request could not be decoded: ")


@needs_kubectl
def test_the_endpoint_checks_the_kind_and_version_in_the_envelope(cap: Capture, samples: list[Request]) -> None:
    configmap = samples[0].body
    resp = cap.call("POST", "/api/v1/namespaces/workshop/secrets", configmap, PB)
    assert _is_status(resp, 400) and "the kind in the data (ConfigMap) does not match the expected kind (Secret)" in resp.body["message"]
    role = protobuf.decode(samples[4].body)
    assert "namespace" not in role["metadata"]  # so it can go to another namespace than kubectl's
    resp = cap.call("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", samples[4].body, PB,
                    fieldValidation="Strict")
    assert resp.code == 201, resp.body  # Go's zero values (creationTimestamp: null …) are no unknown fields
    assert resp.body["rules"] == role["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]


def test_patch_bodies_stay_json_as_upstream(cap: Capture, samples: list[Request]) -> None:
    resp = cap.call("PATCH", "/api/v1/namespaces/workshop/configmaps/x", samples[0].body, PB)
    assert _is_status(resp, 415), resp.body
    resp = cap.call("POST", "/api/v1/namespaces/workshop/configmaps", b"<xml/>", "application/xml")
    assert _is_status(resp, 415) and resp.body["message"].endswith(
        "accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf")


def test_nesting_is_bounded() -> None:
    """No API kind nests without end, but a RawExtension may hold a protobuf object: a body of ControllerRevisions
    inside each other past MAX_DEPTH levels is a DecodeError, not a RecursionError."""
    raw = b""
    for _ in range(protobuf.MAX_DEPTH + 5):
        inner = protobuf.MAGIC + _env("apps/v1", "ControllerRevision", _msg(2, _msg(1, raw)) if raw else b"")
        raw = inner
    with pytest.raises(protobuf.DecodeError, match="nests deeper"):
        protobuf.decode(raw)


# -- wire facts of the custom-marshalled types ------------------------------------------------------------

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _msg(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _env(api_version: str, kind: str, raw: bytes) -> bytes:
    return _msg(1, _msg(1, api_version.encode()) + _msg(2, kind.encode())) + _msg(2, raw)


def test_custom_json_types() -> None:
    """Wire facts no kubectl command exercises, on hand-built bodies: a Lease's MicroTime and int32 pointers; a
    Pod's Quantity map and pointer, IntOrString, embedded VolumeSource and ProbeHandler; a Service's string
    IntOrString; Secret bytes; a bad Quantity. (Duration is only in kinds the lab does not serve: `go_duration`
    has its own test.)"""
    t = 1_700_000_000
    lease = _msg(1, _msg(1, b"l")) + _msg(2, _msg(1, b"holder") + _int(2, 15) + _msg(3, _int(1, t) + _int(2, 123_456_789))
                                     + _int(5, 0))
    got = protobuf.decode(protobuf.MAGIC + _env("coordination.k8s.io/v1", "Lease", lease))
    assert got == {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
                   "metadata": {"name": "l", "creationTimestamp": None},
                   "spec": {"holderIdentity": "holder", "leaseDurationSeconds": 15,
                            "acquireTime": "2023-11-14T22:13:20.123456Z", "leaseTransitions": 0}}
    port = _msg(1, b"web") + _int(3, 80) + _msg(4, _int(1, 1) + _msg(3, b"http"))  # targetPort: IntOrString "http"
    probe = _msg(1, _msg(3, _msg(1, _int(1, 0) + _int(2, 8080))))  # Probe.handler.tcpSocket.port: IntOrString 8080
    resources = _msg(8, _msg(1, _msg(1, b"cpu") + _msg(2, _msg(1, b"250m"))))
    container = _msg(1, b"c") + _msg(2, b"busybox") + resources + _msg(10, probe)
    volume = _msg(1, b"scratch") + _msg(2, _msg(2, _msg(2, _msg(1, b"64Mi"))))  # emptyDir.sizeLimit
    pod = _msg(1, _msg(1, b"p") + _msg(8, b"")) + _msg(2, _msg(1, volume) + _msg(2, container) + _int(4, 7))
    got = protobuf.decode(protobuf.MAGIC + _env("v1", "Pod", pod))
    spec = got["spec"]
    assert got["metadata"] == {"name": "p", "creationTimestamp": None}
    assert spec["volumes"] == [{"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}}]
    assert spec["terminationGracePeriodSeconds"] == 7
    c = spec["containers"][0]
    assert c["resources"] == {"limits": {"cpu": "250m"}}
    assert c["livenessProbe"] == {"tcpSocket": {"port": 8080}}
    assert spec["containers"][0]["name"] == "c" and "ports" not in c
    svc = _msg(1, _msg(1, b"s")) + _msg(2, _msg(1, port))
    assert protobuf.decode(protobuf.MAGIC + _env("v1", "Service", svc))["spec"]["ports"] == [
        {"name": "web", "port": 80, "targetPort": "http"}]
    bad = _msg(1, b"c") + _msg(8, _msg(1, _msg(1, b"cpu") + _msg(2, _msg(1, b"lots"))))
    with pytest.raises(protobuf.DecodeError, match="quantities must match"):
        protobuf.decode(protobuf.MAGIC + _env("v1", "Pod", _msg(2, _msg(2, bad))))
    secret = _msg(1, _msg(1, b"s")) + _msg(2, _msg(1, b"k") + _msg(2, b"\x00\xff"))
    assert protobuf.decode(protobuf.MAGIC + _env("v1", "Secret", secret))["data"] == {"k": base64.b64encode(b"\x00\xff").decode()}


def test_go_duration_strings() -> None:
    cases = {0: "0s", 1: "1ns", 1500: "1.5µs", 2_000_000: "2ms", 1_500_000_000: "1.5s", 90 * 10**9: "1m30s",
             3600 * 10**9: "1h0m0s", -5 * 10**9: "-5s", 26 * 3600 * 10**9 + 1: "26h0m0.000000001s"}
    assert {k: protobuf.go_duration(k) for k in cases} == cases


def test_schema_is_upstreams() -> None:
    """Generated from release-1.32's generated.proto; the numbers reference/api.md quotes are there."""
    s = protobuf.schema()
    src = json.loads(protobuf.SCHEMA_FILE.read_text())["source"]
    assert src["kubernetes/api"].startswith("release-1.32 ") and src["kubernetes/apimachinery"].startswith("release-1.32 ")

    def fields(name: str) -> dict[str, int]:
        return {j: n for n, j, _, _ in s.messages[name]}

    assert {"name": 1, "namespace": 3, "labels": 11, "annotations": 12}.items() <= fields(f"{protobuf.META}.ObjectMeta").items()
    assert fields("k8s.io.api.authorization.v1.ResourceAttributes") == {
        "namespace": 1, "verb": 2, "group": 3, "version": 4, "resource": 5, "subresource": 6, "name": 7,
        "fieldSelector": 8, "labelSelector": 9}
    assert fields("k8s.io.api.authorization.v1.NonResourceAttributes") == {"path": 1, "verb": 2}
    assert {"audiences": 1, "expirationSeconds": 4}.items() <= fields("k8s.io.api.authentication.v1.TokenRequestSpec").items()
    from kperflab.lab.resources import TYPES

    for t in TYPES:  # every kind the lab serves can be read
        assert s.message_for(t.group_version, t.kind), t.key


def test_zero_structs_stay_within_the_expansion_bound() -> None:
    """An empty message costs 2 bytes on the wire and becomes its Go zero struct: the largest must fit EXPANSION."""
    d = protobuf._Decoder(protobuf.schema())

    def count(v: Any) -> int:
        if isinstance(v, dict):
            return 1 + sum(count(x) for x in v.values())
        if isinstance(v, list):
            return 1 + sum(count(x) for x in v)
        return 1

    worst = max(count(d.message(name, b"", 1)) for name in protobuf.schema().messages)
    assert worst <= 2 * protobuf.EXPANSION


# -- the real lab -----------------------------------------------------------------------------------------

LAB_TWINS = [
    ("create namespace {name}", None),
    ("create configmap {name} --from-literal=a=b --from-file=blob.bin", "configmap"),
    ("create secret generic {name} --from-literal=pw=x --from-file=blob.bin", "secret"),
    ("create serviceaccount {name}", "serviceaccount"),
    ("create job {name} --image=busybox:1.37 -- true", "job"),
]


@pytest.mark.lab
@needs_root
@needs_kubectl
def test_kubectl_create_works_on_the_lab(lab: dict[str, Any], namespace: str, tmp_path: Path) -> None:
    """`kubectl create namespace|configmap|secret|serviceaccount|job` (protobuf) succeed on the real lab and read
    back as their JSON-created twins do."""
    _files(tmp_path)

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, "--kubeconfig", str(lab["kubeconfig"]), "-n", namespace, *args], capture_output=True,
                              text=True, input=stdin, cwd=tmp_path, timeout=60)

    created_ns = []
    try:
        for template, resource in LAB_TWINS:
            def get(name: str, resource: str | None = resource) -> dict[str, Any]:
                if resource is None:
                    created_ns.append(name)
                r = kubectl("get", resource or "namespace", name, "-o", "json")
                assert r.returncode == 0, r.stderr
                return json.loads(r.stdout)

            pb, js = _twins(kubectl, get, template, namespace[-5:])
            assert normalized(pb, drop_status=resource == "job") == normalized(js, drop_status=resource == "job"), template
    finally:
        for name in created_ns:
            kubectl("delete", "namespace", name, "--wait=false")


@pytest.mark.lab
@needs_root
@needs_kubectl
def test_broken_protobuf_on_the_lab_is_a_400(lab: dict[str, Any], namespace: str) -> None:
    import http.client
    import ssl

    import yaml

    cfg = yaml.safe_load(Path(lab["kubeconfig"]).read_text())
    server = cfg["clusters"][0]["cluster"]["server"]
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"])
    token = cfg["users"][0]["user"]["token"]
    ctx = ssl.create_default_context(cadata=ca.decode())
    host, port = server.split("//")[1].split(":")
    good = protobuf.MAGIC + _env("v1", "ConfigMap", _msg(1, _msg(1, b"pb-wire")) + _msg(2, _msg(1, b"a") + _msg(2, b"b")))
    for body, code in ((good[:-3], 400), (protobuf.MAGIC + b"\xff" * 12, 400), (good, 201)):
        c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
        try:
            c.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=body,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": PB, "Accept": f"{PB},application/json"})
            resp = c.getresponse()
            data = json.loads(resp.read())
        finally:
            c.close()
        assert resp.status == code, data
        assert resp.getheader("Content-Type", "").startswith("application/json")
        if code == 400:
            assert data["kind"] == "Status" and data["message"].startswith("the body of the request could not be decoded: ")
        else:
            assert data["data"] == {"a": "b"} and data["metadata"]["name"] == "pb-wire"
