"""What the official Python client's own end-to-end suite (tests/upstream/kubernetes-client-python, run by
scripts/client-e2e.py) needs of the lab, checked here on its own: APIService objects (apiregistration.k8s.io/v1),
Status bodies byte for byte as kube-apiserver writes them, the ``nginx`` image serving its page, the image's
StopSignal."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
import yaml

from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.kubelet import stop_signal
from kperflab.lab.store import Store

from .conftest import needs_root, wait_pod

WARDLE = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1alpha1.wardle.k8s.io"},
          "spec": {"insecureSkipTLSVerify": True, "group": "wardle.k8s.io", "groupPriorityMinimum": 1000,
                   "versionPriority": 15, "service": {"name": "api", "namespace": "wardle"}, "version": "v1alpha1"}}
PATH = "/apis/apiregistration.k8s.io/v1/apiservices"


@pytest.fixture
def api():
    from kperflab.lab.server import version_info

    return APIServer(Store(), "tok", version=version_info())


def call(api, method, path, body=None, accept="application/json"):
    headers = {"content-type": "application/json", "accept": accept, "authorization": "Bearer tok"}
    return api.handle(Request(method, path, {}, headers, json.dumps(body).encode() if body is not None else b""))


def test_apiservice_is_stored_defaulted_and_conflicts_as_kube_aggregator(api):
    r = call(api, "POST", PATH, {**WARDLE, "status": {"conditions": [{"type": "Available", "status": "True"}]}})
    assert r.code == 201, r.body
    assert r.body["spec"]["service"]["port"] == 443 and r.body["status"] == {}  # a client's status is dropped
    again = call(api, "POST", PATH, WARDLE)
    assert again.code == 409
    assert list(again.body) == ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"]
    assert again.body["message"] == 'apiservices.apiregistration.k8s.io "v1alpha1.wardle.k8s.io" already exists'
    assert list(again.body["details"].items()) == [("name", "v1alpha1.wardle.k8s.io"), ("group", "apiregistration.k8s.io"),
                                                   ("kind", "apiservices")]
    local = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.example.com"},
             "spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 100, "versionPriority": 10}}
    cond = call(api, "POST", PATH, local).body["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == (
        "Available", "True", "Local", "Local APIServices are always available")
    table = call(api, "GET", PATH, accept="application/json;as=Table;v=v1;g=meta.k8s.io").body
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Service", "Available", "Age"]
    assert [r["cells"][:3] for r in table["rows"]] == [["v1.example.com", "Local", "True"],
                                                        ["v1alpha1.wardle.k8s.io", "wardle/api", "Unknown"]]
    assert call(api, "DELETE", f"{PATH}/v1alpha1.wardle.k8s.io").code == 200
    assert call(api, "GET", f"{PATH}/v1alpha1.wardle.k8s.io").code == 404


@pytest.mark.parametrize("change, field, message", [
    ({"metadata": {"name": "wardle"}}, "metadata.name",
     'Invalid value: "wardle": must be `spec.version+"."+spec.group`: "v1alpha1.wardle.k8s.io"'),
    ({"spec": {"groupPriorityMinimum": 0}}, "spec.groupPriorityMinimum", "Invalid value: 0: must be positive and less than 20000"),
    ({"spec": {"versionPriority": 1001}}, "spec.versionPriority", "Invalid value: 1001: must be positive and less than 1000"),
    ({"spec": {"service": {"name": "api", "namespace": "wardle", "port": 70000}}}, "spec.service.port",
     "Invalid value: 70000: port is not valid: must be between 1 and 65535, inclusive"),
    ({"spec": {"service": {"name": "api"}}}, "spec.service.namespace", "Required value"),
    ({"spec": {"service": None}}, "spec.insecureSkipTLSVerify",
     "Invalid value: true: local APIServices may not have insecureSkipTLSVerify"),
    ({"spec": {"caBundle": "AAAA"}}, "spec.insecureSkipTLSVerify", "Invalid value: true: may not be true if caBundle is present"),
])
def test_apiservice_validation_words(api, change, field, message):
    body = json.loads(json.dumps(WARDLE))
    for part, values in change.items():
        body[part].update(values)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    r = call(api, "POST", PATH, body)
    assert r.code == 422, r.body
    assert {"field": field, "message": message} in [{k: c[k] for k in ("field", "message")} for c in r.body["details"]["causes"]]


def test_stop_signal_is_the_images():
    assert stop_signal("SIGQUIT") == signal.SIGQUIT and stop_signal("QUIT") == signal.SIGQUIT
    assert stop_signal("9") == signal.SIGKILL and stop_signal("") == signal.SIGTERM and stop_signal("SIGNOPE") == signal.SIGTERM


# -- against the session lab -------------------------------------------------------------------------

def _raw(lab, method: str, path: str, body: dict) -> tuple[int, bytes]:
    kc = yaml.safe_load(lab["kubeconfig"].read_text())
    server, user = kc["clusters"][0]["cluster"], kc["users"][0]["user"]
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    req = urllib.request.Request(server["server"] + path, json.dumps(body).encode(), method=method,
                                 headers={"Authorization": f"Bearer {user['token']}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.lab
def test_status_bytes_are_kube_apiservers(lab):
    """Go's json.Encoder: compact, fields in metav1.Status order, a newline at the end (the client's e2e suite compares
    these bytes)."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "status-bytes"}}
    assert _raw(lab, "POST", "/api/v1/namespaces/default/configmaps", cm)[0] == 201
    try:
        code, body = _raw(lab, "POST", "/api/v1/namespaces/default/configmaps", cm)
        assert code == 409
        assert body == (b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps '
                        b'\\"status-bytes\\" already exists","reason":"AlreadyExists","details":{"name":"status-bytes",'
                        b'"kind":"configmaps"},"code":409}\n')
    finally:
        _raw(lab, "DELETE", "/api/v1/namespaces/default/configmaps/status-bytes", {})


@pytest.mark.lab
@needs_root
def test_nginx_pod_serves_the_welcome_page_and_logs_to_stdout(lab, k8s, namespace):
    from kubernetes import client

    k8s.create_namespaced_pod(namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image="nginx",
                                                             ports=[client.V1ContainerPort(container_port=80)])])))
    pod = wait_pod(k8s, namespace, "web", lambda p: bool(p.status.container_statuses and p.status.container_statuses[0].ready))
    assert pod.status.container_statuses[0].image == "docker.io/library/nginx:latest"
    page = subprocess.run(["ip", "netns", "exec", f"kperflab-{lab['lab_id']}", "curl", "-sf", f"http://{pod.status.pod_ip}/"],
                          capture_output=True, text=True, timeout=30)
    assert "<title>Welcome to nginx!</title>" in page.stdout, page
    log = k8s.read_namespaced_pod_log("web", namespace)
    assert '"GET / HTTP/1.1" 200' in log  # the access log is the container's stdout
    uid = subprocess.run(["kubectl", "--kubeconfig", str(lab["kubeconfig"]), "exec", "-n", namespace, "web", "--", "id", "-u"],
                         capture_output=True, text=True, timeout=30)
    assert uid.stdout.strip() == "0"  # the image's User 0


def test_docstring_examples():
    import doctest

    from kperflab.lab import apiservices

    result = doctest.testmod(apiservices)
    assert result.failed == 0 and result.attempted > 0


def _self_signed(name: str) -> tuple[bytes, bytes]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


SERVER = '''
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/apis/wardle.example.com/v1alpha1" else 404)
        self.end_headers()
s = http.server.HTTPServer(("", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
'''


@pytest.mark.lab
@needs_root
def test_apiservice_availability_follows_service_endpoints_and_discovery(lab, k8s, namespace):
    """kube-aggregator's remote availability checks, in order, with its reasons; the discovery GET reaches a real
    HTTPS server in a pod through the Service, verified with the APIService's caBundle."""
    import base64
    import time

    from kubernetes import client, config

    reg = client.ApiregistrationV1Api(config.new_client_from_config(str(lab["kubeconfig"])))
    name = "v1alpha1.wardle.example.com"
    spec = {"group": "wardle.example.com", "version": "v1alpha1", "groupPriorityMinimum": 1000, "versionPriority": 15,
            "service": {"name": "api", "namespace": namespace}}

    def available(reason: str, timeout: float = 30) -> dict:
        deadline = time.time() + timeout
        while True:
            obj = reg.read_api_service(name).to_dict()
            cond = next((c for c in (obj["status"] or {}).get("conditions") or [] if c["type"] == "Available"), None)
            if cond and cond["reason"] == reason:
                return cond
            assert time.time() < deadline, obj["status"]
            time.sleep(0.3)

    crt, key = _self_signed(f"api.{namespace}.svc")
    reg.create_api_service({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": name},
                            "spec": {**spec, "insecureSkipTLSVerify": True}})
    try:
        assert available("ServiceNotFound")["message"] == f'service/api in "{namespace}" is not present'
        k8s.create_namespaced_service(namespace, {"metadata": {"name": "api"}, "spec": {
            "selector": {"app": "api"}, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}})
        assert available("MissingEndpoints")["status"] == "False"
        k8s.create_namespaced_secret(namespace, {"metadata": {"name": "tls"}, "stringData": {
            "tls.crt": crt.decode(), "tls.key": key.decode(), "server.py": SERVER}})
        k8s.create_namespaced_pod(namespace, {"metadata": {"name": "api", "labels": {"app": "api"}}, "spec": {
            "terminationGracePeriodSeconds": 0,  # python as PID 1 ignores SIGTERM: no 30 s wait at the namespace's end
            "containers": [{"name": "api", "image": "python", "command": ["python", "/tls/server.py"],
                            "volumeMounts": [{"name": "tls", "mountPath": "/tls"}]}],
            "volumes": [{"name": "tls", "secret": {"secretName": "tls"}}]}})
        passed = available("Passed", timeout=60)
        assert (passed["status"], passed["message"]) == ("True", "all checks passed")
        reg.patch_api_service(name, {"spec": {"insecureSkipTLSVerify": False}})  # no CA: the check now fails
        failed = available("FailedDiscoveryCheck")
        assert failed["status"] == "False" and "x509: certificate signed by unknown authority" in failed["message"]
        reg.patch_api_service(name, {"spec": {"caBundle": base64.b64encode(crt).decode()}})
        assert available("Passed")["status"] == "True"
    finally:
        reg.delete_api_service(name)
