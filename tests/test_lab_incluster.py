"""In-cluster access, as pods on a real cluster have it: the ServiceAccount admission plugin (default ServiceAccount,
the ``kube-api-access-<5>`` projected volume, 403 for a missing ServiceAccount), the default ServiceAccount and
``kube-root-ca.crt`` in every namespace, the projected token (bound, refreshed at 80 % of its lifetime), the API
server's certificate names, the ``kubernetes`` Service's Endpoints/EndpointSlice — and in the lab, a pod that reads its
token files and calls https://kubernetes.default.svc, and ``kperflab.connect()`` run inside a pod."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from kperflab.lab.admission import (
    ROOT_CA_CONFIGMAP,
    ROOT_CA_DESCRIPTION,
    TOKEN_MOUNT_PATH,
    NamespaceControllers,
    ServiceAccountAdmission,
)
from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.network import apiendpoint
from kperflab.lab.store import Store

from .conftest import needs_root, wait_pod

# -- the admission plugin, on APIServer.handle ---------------------------------------------------------------------

@pytest.fixture
def api():
    from kperflab.lab.server import version_info

    s = Store()
    for ns in ("default", "team"):
        s.create("v1/namespaces", {"metadata": {"name": ns}, "status": {"phase": "Active"}})
    server = APIServer(s, "tok", version=version_info())
    slept: list[float] = []
    server.admission = ServiceAccountAdmission(s, sleep=slept.append)
    server.slept = slept  # type: ignore[attr-defined]
    return server


def call(api, method, path, body=None, query=None):
    headers = {"content-type": "application/json", "accept": "application/json", "authorization": "Bearer tok"}
    r = api.handle(Request(method, path, query or {}, headers, json.dumps(body).encode() if body is not None else b""))
    return r.code, r.body


def pod(name="p", gen="", init=(), containers=("c",), **spec):
    meta = {"generateName": gen} if gen else {"name": name}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {
        "initContainers": [{"name": n, "image": "busybox"} for n in init],
        "containers": [{"name": n, "image": "busybox"} if isinstance(n, str) else n for n in containers], **spec}}


def sa(api, ns, name="default", **extra):
    api.store.create("v1/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                            "metadata": {"name": name, "namespace": ns, **extra.pop("meta", {})}, **extra})


def test_missing_service_account_is_forbidden_with_upstream_wording(api):
    code, body = call(api, "POST", "/api/v1/namespaces/team/pods", pod(gen="web-"))
    assert (code, body["reason"]) == (403, "Forbidden")
    assert body["message"] == ('pods "web-" is forbidden: error looking up service account team/default: '
                               'serviceaccount "default" not found')
    assert body["details"] == {"name": "web-", "kind": "pods"}
    assert len(api.slept) == 9 and all(0.1 <= t < 0.2 for t in api.slept)  # the default SA: ten lookups
    api.slept.clear()
    code, body = call(api, "POST", "/api/v1/namespaces/team/pods", pod("x", serviceAccountName="robot"))
    assert code == 403 and body["message"] == ('pods "x" is forbidden: error looking up service account team/robot: '
                                               'serviceaccount "robot" not found')
    assert api.slept == []  # a named one: one lookup
    assert api.store.list("v1/pods")[0] == []


def test_admission_adds_the_kube_api_access_volume_to_every_container(api):
    sa(api, "team")
    mine = {"name": "own", "image": "busybox", "volumeMounts": [{"name": "x", "mountPath": TOKEN_MOUNT_PATH}]}
    body = pod("p", init=("setup",), containers=("a", mine), volumes=[{"name": "x", "emptyDir": {}}])
    code, created = call(api, "POST", "/api/v1/namespaces/team/pods", body)
    assert code == 201, created
    spec = created["spec"]
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    vol = spec["volumes"][-1]
    assert vol["name"].startswith("kube-api-access-") and len(vol["name"]) == len("kube-api-access-") + 5
    assert set(vol["name"][-5:]) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert vol["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    want = {"name": vol["name"], "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}
    assert spec["initContainers"][0]["volumeMounts"] == [want]
    assert spec["containers"][0]["volumeMounts"] == [want]
    assert spec["containers"][1]["volumeMounts"] == mine["volumeMounts"]  # its own mount at the path wins


@pytest.mark.parametrize("sa_says,pod_says,mounted", [
    (None, None, True), (False, None, False), (False, True, True), (True, False, False)])
def test_automount_service_account_token_pod_wins_over_sa(api, sa_says, pod_says, mounted):
    sa(api, "team", "robot", **({} if sa_says is None else {"automountServiceAccountToken": sa_says}))
    extra = {} if pod_says is None else {"automountServiceAccountToken": pod_says}
    code, created = call(api, "POST", "/api/v1/namespaces/team/pods", pod("p", serviceAccountName="robot", **extra))
    assert code == 201, created
    names = [v["name"] for v in created["spec"].get("volumes") or []]
    assert any(n.startswith("kube-api-access-") for n in names) is mounted
    assert bool(created["spec"]["containers"][0].get("volumeMounts")) is mounted


def test_image_pull_secrets_and_enforced_mountable_secrets(api):
    sa(api, "team", "robot", imagePullSecrets=[{"name": "regcred"}], secrets=[{"name": "ok"}],
       meta={"annotations": {"kubernetes.io/enforce-mountable-secrets": "true"}})
    code, created = call(api, "POST", "/api/v1/namespaces/team/pods", pod("a", serviceAccountName="robot"))
    assert code == 201 and created["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    body = pod("b", serviceAccountName="robot", volumes=[{"name": "s", "secret": {"secretName": "nope"}}])
    code, err = call(api, "POST", "/api/v1/namespaces/team/pods", body)
    assert code == 403 and err["message"] == ('pods "b" is forbidden: volume with secret.secretName="nope" is not '
                                              "allowed because service account robot does not reference that secret")
    env = {"name": "c", "image": "busybox", "envFrom": [{"secretRef": {"name": "other"}}]}
    code, err = call(api, "POST", "/api/v1/namespaces/team/pods", pod("c", serviceAccountName="robot", containers=(env,)))
    assert code == 403 and err["message"].endswith('container c with envFrom referencing secret.secretName="other" is '
                                                   "not allowed because service account robot does not reference that secret")


def test_dry_run_admits_too_and_stores_nothing(api):
    sa(api, "team")
    code, created = call(api, "POST", "/api/v1/namespaces/team/pods", pod("p"), query={"dryRun": "All"})
    assert code == 201 and created["spec"]["volumes"][0]["name"].startswith("kube-api-access-")
    assert api.store.list("v1/pods")[0] == []


# -- kube-controller-manager's per-namespace controllers --------------------------------------------------------------

def test_default_service_account_and_root_ca_in_every_namespace():
    s = Store()
    for ns in ("default", "a"):
        s.create("v1/namespaces", {"metadata": {"name": ns}, "status": {"phase": "Active"}})
    s.create("v1/namespaces", {"metadata": {"name": "going", "deletionTimestamp": "2026-01-01T00:00:00Z"},
                               "status": {"phase": "Terminating"}})
    c = NamespaceControllers(s, b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n")
    c.reconcile()
    assert sorted((x["metadata"]["namespace"], x["metadata"]["name"]) for x in s.list("v1/serviceaccounts")[0]) == [
        ("a", "default"), ("default", "default")]
    cm = s.get("v1/configmaps", "a", ROOT_CA_CONFIGMAP)
    assert cm["data"] == {"ca.crt": c.root_ca}
    assert cm["metadata"]["annotations"] == {"kubernetes.io/description": ROOT_CA_DESCRIPTION}
    assert s.try_get("v1/configmaps", "going", ROOT_CA_CONFIGMAP) is None
    # deleted → made again; changed → put back; a new namespace → both (incremental passes, from the event log)
    s.remove("v1/serviceaccounts", "a", "default")
    cm["data"] = {"ca.crt": "tampered"}
    cm["metadata"]["annotations"] = {}
    s.update("v1/configmaps", cm)
    s.remove("v1/configmaps", "default", ROOT_CA_CONFIGMAP)
    s.create("v1/namespaces", {"metadata": {"name": "b"}, "status": {"phase": "Active"}})
    c.reconcile()
    assert s.try_get("v1/serviceaccounts", "a", "default") is not None
    assert s.get("v1/configmaps", "a", ROOT_CA_CONFIGMAP)["data"] == {"ca.crt": c.root_ca}
    assert s.get("v1/configmaps", "a", ROOT_CA_CONFIGMAP)["metadata"]["annotations"]["kubernetes.io/description"]
    assert s.try_get("v1/configmaps", "default", ROOT_CA_CONFIGMAP) is not None
    assert s.try_get("v1/serviceaccounts", "b", "default") is not None
    assert s.try_get("v1/configmaps", "b", ROOT_CA_CONFIGMAP) is not None


# -- the kubernetes Service's endpoints, the certificate -------------------------------------------------------------

def test_kubernetes_endpoints_as_the_reconciler_writes_them():
    s = Store()
    assert apiendpoint.reconcile(s, "10.96.0.1", "10.244.0.1") == 3  # Service (missing), Endpoints, EndpointSlice
    svc = s.get("v1/services", "default", "kubernetes")
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]
    ep = s.get("v1/endpoints", "default", "kubernetes")
    assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}
    assert ep["subsets"] == [{"addresses": [{"ip": "10.244.0.1"}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
    sl = s.get("discovery.k8s.io/v1/endpointslices", "default", "kubernetes")
    assert sl["metadata"]["labels"] == {"kubernetes.io/service-name": "kubernetes"}
    assert (sl["addressType"], sl["endpoints"], sl["ports"]) == (
        "IPv4", [{"addresses": ["10.244.0.1"], "conditions": {"ready": True}}],
        [{"name": "https", "port": 6443, "protocol": "TCP"}])
    assert apiendpoint.reconcile(s, "10.96.0.1", "10.244.0.1") == 0  # nothing to say again
    sl["endpoints"] = []
    s.update("discovery.k8s.io/v1/endpointslices", sl)
    assert apiendpoint.reconcile(s, "10.96.0.1", "10.244.0.1") == 1
    assert s.get("discovery.k8s.io/v1/endpointslices", "default", "kubernetes")["endpoints"][0]["addresses"] == ["10.244.0.1"]


def test_server_certificate_names_what_pods_dial(tmp_path):
    from cryptography import x509

    from kperflab.lab import pki

    pki.write_tls(pki.make_server_tls(), tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "ca.key").st_mode) == 0o600
    ca_before = (tmp_path / "ca.crt").read_bytes()
    hosts = pki.server_hosts("10.99.0.1", "10.247.0.1")
    assert pki.reissue_server_cert(tmp_path / "server.crt", tmp_path / "server.key", hosts)
    cert = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {
        "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.99.0.1", "10.247.0.1"}
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    ca = x509.load_pem_x509_certificate(ca_before)
    cert.verify_directly_issued_by(ca)


# -- the projected token in the kubelet's volume manager ------------------------------------------------------------

def test_projected_token_is_bound_and_refreshed_at_80_percent(tmp_path):
    from kperflab.lab.volumes import VolumeManager

    if os.geteuid() != 0:
        pytest.skip("projected volumes are on a tmpfs: needs root")
    now = [1_000_000.0]
    asked: list[tuple] = []

    def sa_token(ns, name, audiences, seconds, p):
        asked.append((ns, name, audiences, seconds, p["metadata"]["uid"]))
        return f"jwt-{len(asked)}", now[0] + seconds

    s = Store()
    s.create("v1/configmaps", {"metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": "team"}, "data": {"ca.crt": "CA"}})
    vm = VolumeManager(s, tmp_path, lambda *a: None, lambda: {"memory": "1Gi"}, clock=lambda: now[0], sa_token=sa_token)
    from kperflab.lab.admission import token_volume

    vol = token_volume("kube-api-access-abcde")
    p = {"metadata": {"name": "p", "namespace": "team", "uid": "u1"},
         "spec": {"serviceAccountName": "robot", "containers": [], "volumes": [vol]}}
    try:
        assert vm.setup(p)
        d = vm.volume_dir("u1", "projected", vol["name"])
        assert sorted(x for x in os.listdir(d) if not x.startswith("..")) == ["ca.crt", "namespace", "token"]
        assert (d / "token").read_text() == "jwt-1" and (d / "namespace").read_text() == "team"
        assert {f: stat.S_IMODE(os.stat(d / f).st_mode) for f in ("token", "ca.crt", "namespace")} == dict.fromkeys(
            ("token", "ca.crt", "namespace"), 0o644)
        assert asked == [("team", "robot", None, 3607, "u1")]
        now[0] += 0.8 * 3607 - 5  # not yet: the refresh pass keeps the token
        vm.refresh(p)
        assert (d / "token").read_text() == "jwt-1" and len(asked) == 1
        now[0] += 10  # past 80 % of its lifetime: a new one, written atomically
        vm.refresh(p)
        assert (d / "token").read_text() == "jwt-2" and len(asked) == 2
    finally:
        vm.shutdown()
    assert not (tmp_path / "pods" / "u1").exists() and vm.tokens == {}


# -- the client side: which config connect() uses -----------------------------------------------------------------

def test_connect_in_a_pod_without_a_token_says_so_in_one_sentence(tmp_path, monkeypatch):
    from kperflab import cluster
    from kperflab.errors import ConfigError

    if Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        pytest.skip("this machine is itself a pod with a token")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KPERFLAB_HOME", str(tmp_path / "kperflab"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(ConfigError) as err:
        cluster.load()
    assert str(err.value).startswith("In a pod, but the in-cluster config cannot be used (Service token file does "
                                     "not exist). ")
    assert "\n" not in str(err.value)


# -- in the lab -----------------------------------------------------------------------------------------------------

IN_POD = r"""
import json, os, ssl, stat, urllib.error, urllib.request
D = "/var/run/secrets/kubernetes.io/serviceaccount"
out = {"env": {k: os.environ.get(k) for k in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")},
       "files": sorted(f for f in os.listdir(D) if not f.startswith("..")),
       "modes": {f: stat.S_IMODE(os.stat(os.path.join(D, f)).st_mode) for f in ("token", "ca.crt", "namespace")},
       "namespace": open(D + "/namespace").read()}
token = open(D + "/token").read()
ctx = ssl.create_default_context(cafile=D + "/ca.crt")
def call(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
            return [r.status, json.loads(r.read())]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read())]
svc = "https://kubernetes.default.svc"
out["api"] = call("GET", svc + "/api")
out["version"] = call("GET", "https://%s:%s/version" % (out["env"]["KUBERNETES_SERVICE_HOST"], out["env"]["KUBERNETES_SERVICE_PORT"]))
out["whoami"] = call("POST", svc + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
out["own_pods"] = call("GET", svc + "/api/v1/namespaces/%s/pods" % out["namespace"])
out["system_pods"] = call("GET", svc + "/api/v1/namespaces/kube-system/pods")
print(json.dumps(out))
"""


def on_lab(f):
    return pytest.mark.lab(needs_root(f))


@pytest.fixture(scope="module")
def oci(lab):
    st = json.loads((lab["home"] / "lab" / "lab.json").read_text())
    if not st.get("registry"):
        pytest.skip(f"the session lab runs the process runtime: {st.get('runtime')}")
    return lab


def _run_pod(k8s, ns, body, timeout=120):
    from kubernetes import client

    k8s.create_namespaced_pod(ns, body)
    name = body["metadata"]["name"]
    p = wait_pod(k8s, ns, name, lambda p: p.status.phase in ("Succeeded", "Failed"), timeout)
    logs = k8s.read_namespaced_pod_log(name, ns)
    assert p.status.phase == "Succeeded", (p.status, logs)
    assert isinstance(p, client.V1Pod)
    return p, json.loads(logs.strip().splitlines()[-1])


def _view_binding(lab, ns):
    from kubernetes import client, config

    rbac = client.RbacAuthorizationV1Api(config.new_client_from_config(str(lab["kubeconfig"])))
    rbac.create_namespaced_role_binding(ns, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "sa-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]})


@on_lab
def test_pod_reads_its_token_and_calls_kubernetes_default_svc(oci, k8s, namespace):
    _view_binding(oci, namespace)
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "incluster"}, "spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "py", "image": "python:3.13-slim", "command": ["python", "-c", IN_POD]}]}}
    p, out = _run_pod(k8s, namespace, body)
    vol = next(v for v in p.spec.volumes if v.name.startswith("kube-api-access-"))
    assert vol.projected.default_mode == 420
    assert out["files"] == ["ca.crt", "namespace", "token"] and out["namespace"] == namespace
    assert out["modes"] == {"token": 0o644, "ca.crt": 0o644, "namespace": 0o644}
    svc = k8s.read_namespaced_service("kubernetes", "default")
    assert out["env"] == {"KUBERNETES_SERVICE_HOST": svc.spec.cluster_ip, "KUBERNETES_SERVICE_PORT": "443"}
    assert out["api"][0] == 200 and out["api"][1]["kind"] == "APIVersions"
    assert out["version"][0] == 200 and "+kperflab" in out["version"][1]["gitVersion"]
    assert out["whoami"][0] == 201, out["whoami"]
    user = out["whoami"][1]["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:default"
    assert {"system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"} <= set(user["groups"])
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["incluster"]
    assert out["own_pods"][0] == 200 and [i["metadata"]["name"] for i in out["own_pods"][1]["items"]] == ["incluster"]
    assert out["system_pods"][0] == 403, out["system_pods"]
    assert out["system_pods"][1]["message"] == (
        f'pods is forbidden: User "system:serviceaccount:{namespace}:default" cannot list resource "pods" in API group '
        '"" in the namespace "kube-system"')


@on_lab
def test_kperflab_connect_inside_a_pod_uses_the_in_cluster_config(oci, k8s, namespace):
    import kperflab

    repo = Path(kperflab.__file__).resolve().parents[1]
    mounts = {str(repo), str(Path(sys.prefix).resolve()), str(Path(sys.base_prefix).resolve())}
    mounts = sorted(m for m in mounts if not any(m != o and m.startswith(o + "/") for o in mounts))
    script = ("import json, kperflab\nfrom kperflab import cluster\nc = kperflab.connect()\n"
              "print(json.dumps({'origin': c.conn.origin, 'server': c.conn.server, 'namespace': c.namespace, "
              "'flavour': c.flavour, 'whoami': cluster.whoami(c.conn), 'metrics': c.metrics_api, "
              "'kubeconfig': c.conn.kubeconfig}))")
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "notebook"}, "spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
        "volumes": [{"name": f"host{i}", "hostPath": {"path": m, "type": "Directory"}} for i, m in enumerate(mounts)],
        "containers": [{"name": "nb", "image": "python:3.13-slim", "command": [sys.executable, "-c", script],
                        "securityContext": {"runAsUser": 0},  # the host's interpreter lives under /root (0700)
                        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}, {"name": "HOME", "value": "/tmp"}],
                        "volumeMounts": [{"name": f"host{i}", "mountPath": m, "readOnly": True}
                                         for i, m in enumerate(mounts)]}]}}
    # hostPath volumes need a namespace Pod Security lets have them (the lab enforces `baseline` by default)
    k8s.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}})
    _, out = _run_pod(k8s, namespace, body)
    svc = k8s.read_namespaced_service("kubernetes", "default")
    assert out == {"origin": "in-cluster", "server": f"https://{svc.spec.cluster_ip}:443", "namespace": namespace,
                   "flavour": "kperflab-lab", "whoami": f"system:serviceaccount:{namespace}:default",
                   "metrics": out["metrics"], "kubeconfig": None}


@on_lab
def test_lab_publishes_what_pods_need_in_a_new_namespace(oci, k8s, namespace):
    deadline = time.time() + 10
    while time.time() < deadline:
        names = {s.metadata.name for s in k8s.list_namespaced_service_account(namespace).items}
        cms = {c.metadata.name for c in k8s.list_namespaced_config_map(namespace).items}
        if "default" in names and ROOT_CA_CONFIGMAP in cms:
            break
        time.sleep(0.1)
    ca = (oci["home"] / "lab" / "tls" / "ca.crt").read_text()
    assert k8s.read_namespaced_config_map(ROOT_CA_CONFIGMAP, namespace).data == {"ca.crt": ca}
    k8s.delete_namespaced_service_account("default", namespace)
    k8s.delete_namespaced_config_map(ROOT_CA_CONFIGMAP, namespace)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            k8s.read_namespaced_service_account("default", namespace)
            assert k8s.read_namespaced_config_map(ROOT_CA_CONFIGMAP, namespace).data == {"ca.crt": ca}
            break
        except Exception:  # noqa: BLE001 - not made again yet
            time.sleep(0.1)
    else:
        raise AssertionError("the default ServiceAccount / kube-root-ca.crt were not made again")
    eps = k8s.read_namespaced_endpoints("kubernetes", "default")
    assert eps.subsets[0].ports[0].port == 6443 and eps.subsets[0].ports[0].name == "https"
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as err:
        k8s.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {
            "serviceAccountName": "ghost", "containers": [{"name": "c", "image": "busybox:1.37"}]}})
    assert err.value.status == 403 and json.loads(err.value.body)["message"] == (
        f'pods "x" is forbidden: error looking up service account {namespace}/ghost: serviceaccount "ghost" not found')


def test_projected_token_for_a_missing_service_account_fails_the_mount(tmp_path):
    from kperflab.lab import errors
    from kperflab.lab.admission import token_volume
    from kperflab.lab.volumes import VolumeManager

    if os.geteuid() != 0:
        pytest.skip("projected volumes are on a tmpfs: needs root")

    def sa_token(ns, name, audiences, seconds, p):
        raise errors.not_found("serviceaccounts", name)

    seen: list[tuple] = []
    s = Store()
    vm = VolumeManager(s, tmp_path, lambda obj, t, reason, msg: seen.append((t, reason, msg)), lambda: {"memory": "1Gi"},
                       sa_token=sa_token)
    p = {"metadata": {"name": "p", "namespace": "team", "uid": "u2"},
         "spec": {"serviceAccountName": "gone", "containers": [], "volumes": [token_volume("kube-api-access-x2x2x")]}}
    try:
        assert not vm.setup(p)
    finally:
        vm.shutdown()
    assert seen == [("Warning", "FailedMount", 'MountVolume.SetUp failed for volume "kube-api-access-x2x2x" : '
                                               'failed to fetch token: serviceaccounts "gone" not found')]
