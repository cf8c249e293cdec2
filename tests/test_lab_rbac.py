"""Authentication and authorization in the lab, as kube-apiserver does them: ServiceAccount tokens (TokenRequest,
TokenReview, expiry and revocation), RBAC enforced for every user but the admin, kube-apiserver's 403 wording, the
access reviews, the default roles and their aggregation, escalation prevention, and — on a real lab with real kubectl —
the project's participant-rbac.yaml applied and checked rule by rule for a user made by `kperflab lab user add`."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from kperflab.lab import rbac
from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.authn import Authenticator, User
from kperflab.lab.satokens import TokenIssuer
from kperflab.lab.store import Store

from .conftest import kperflab, needs_root

KUBECTL = shutil.which("kubectl")
ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "kperflab" / "manifests" / "participant-rbac.yaml"
ISSUER = "https://kubernetes.default.svc.cluster.local"


# -- an API server without sockets -----------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory):
    """One RSA key for the module's tests (making one takes a while); each test gets its own copy."""
    path = tmp_path_factory.mktemp("key") / "sa.key"
    TokenIssuer(path)
    return path.read_bytes()


@pytest.fixture
def env(tmp_path, signing_key):
    from kperflab.lab.server import version_info

    store = Store()
    for ns in ("default", "team", "other"):
        store.create("v1/namespaces", {"metadata": {"name": ns}, "status": {"phase": "Active"}})
    clock = Clock()
    (tmp_path / "sa.key").write_bytes(signing_key)
    (tmp_path / "sa.key").chmod(0o600)
    tokens = TokenIssuer(tmp_path / "sa.key", clock=clock)
    api = APIServer(store, Authenticator("admin-tok", tokens=tokens, store=store), version=version_info())
    api.tokens = tokens
    rbac.bootstrap(store)

    class Env:
        pass

    e = Env()
    e.store, e.api, e.tokens, e.clock, e.key = store, api, tokens, clock, tmp_path / "sa.key"

    def call(method, path, body=None, token="admin-tok", query=None):
        headers = {"content-type": "application/json", "accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        r = api.handle(Request(method, path, query or {}, headers, json.dumps(body).encode() if body is not None else b""))
        return r.code, r.body

    def sa_token(ns="team", name="alice", **spec):
        if store.try_get("v1/serviceaccounts", ns, name) is None:
            assert call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": name}})[0] == 201
        code, tr = call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token", {"spec": spec})
        assert code == 201, tr
        return tr["status"]["token"]

    def bind(ns, name, role, subject, kind="ClusterRole"):
        code, body = call("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", {
            "metadata": {"name": name}, "roleRef": {"kind": kind, "name": role}, "subjects": [subject]})
        assert code == 201, body

    e.call, e.sa_token, e.bind = call, sa_token, bind
    return e


ALICE = {"kind": "ServiceAccount", "name": "alice", "namespace": "team"}


def test_signing_key_is_the_labs_own_and_private(tmp_path):
    first = TokenIssuer(tmp_path / "state" / "sa.key")
    key = tmp_path / "state" / "sa.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600" and b"PRIVATE KEY" in key.read_bytes()
    again = TokenIssuer(key)  # the same key on the next start: its tokens stay valid
    token, _ = first.issue("ns", "sa", "u", [ISSUER], 600)
    assert again.kid == first.kid and again.verify(token)["sub"] == "system:serviceaccount:ns:sa"


def test_token_request_defaults_and_the_jwt_kube_apiserver_issues(env):
    env.call("POST", "/api/v1/namespaces/team/serviceaccounts", {"metadata": {"name": "alice"}})
    code, tr = env.call("POST", "/api/v1/namespaces/team/serviceaccounts/alice/token", {"spec": {}})
    assert code == 201 and tr["kind"] == "TokenRequest" and tr["apiVersion"] == "authentication.k8s.io/v1"
    assert tr["spec"]["expirationSeconds"] == 3600 and tr["spec"]["audiences"] == [ISSUER]
    header, claims, _ = tr["status"]["token"].split(".")
    head = json.loads(base64.urlsafe_b64decode(header + "=="))
    body = json.loads(base64.urlsafe_b64decode(claims + "=="))
    sa = env.store.get("v1/serviceaccounts", "team", "alice")
    assert head == {"alg": "RS256", "kid": env.tokens.kid}
    assert body["sub"] == "system:serviceaccount:team:alice" and body["iss"] == ISSUER and body["aud"] == [ISSUER]
    assert body["exp"] - body["iat"] == 3600 and body["nbf"] == body["iat"] and body["jti"]
    assert body["kubernetes.io"] == {"namespace": "team", "serviceaccount": {"name": "alice", "uid": sa["metadata"]["uid"]}}
    # kube-apiserver's validation: at least 10 minutes
    code, st = env.call("POST", "/api/v1/namespaces/team/serviceaccounts/alice/token", {"spec": {"expirationSeconds": 599}})
    assert code == 422 and st["message"] == ('TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
                                            "Invalid value: 599: may not specify a duration less than 10 minutes")
    code, st = env.call("POST", "/api/v1/namespaces/team/serviceaccounts/ghost/token", {"spec": {}})
    assert code == 404 and st["message"] == 'serviceaccounts "ghost" not found'


def test_service_account_user_and_token_review(env):
    token = env.sa_token(audiences=["vault", ISSUER])
    code, tr = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": token}})
    assert code == 201
    st = tr["status"]
    assert st["authenticated"] is True and st["audiences"] == [ISSUER]
    assert st["user"]["username"] == "system:serviceaccount:team:alice"
    assert st["user"]["groups"] == ["system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"]
    assert st["user"]["extra"]["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")
    # an audience of the token's own choosing, and one it was not issued for
    assert env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                    {"spec": {"token": token, "audiences": ["vault"]}})[1]["status"]["audiences"] == ["vault"]
    st = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                  {"spec": {"token": token, "audiences": ["other"]}})[1]["status"]
    assert st["authenticated"] is False and st["user"] == {}
    assert st["error"] == f'[invalid bearer token, token audiences ["vault" "{ISSUER}"] is invalid for the target audiences ["other"]]'
    # a token signed by another key, and one no authenticator knows
    forged = TokenIssuer(env.key.parent / "other.key").issue("team", "alice", "x", [ISSUER], 3600)[0]
    st = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": forged}})[1]["status"]
    assert st == {"authenticated": False, "user": {}, "error": "[invalid bearer token, go-jose/go-jose: error in cryptographic primitive]"}
    st = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": "nope"}})[1]["status"]
    assert st == {"authenticated": False, "user": {}, "error": "invalid bearer token"}
    code, st = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {}})
    assert code == 400 and st["message"] == "token is required for TokenReview in authentication"
    # the admin is who it was
    st = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": "admin-tok"}})[1]["status"]
    assert st["user"]["username"] == "kperflab-admin" and "system:masters" in st["user"]["groups"]


def test_expiry_and_deletion_invalidate_tokens(env):
    token = env.sa_token(expirationSeconds=600)
    assert env.call("GET", "/api", token=token)[0] == 200
    env.clock.now += 600 + 59  # go-jose's minute of leeway
    assert env.call("GET", "/api", token=token)[0] == 200
    env.clock.now += 2
    code, st = env.call("GET", "/api", token=token)
    assert code == 401 and st["reason"] == "Unauthorized"
    st = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": token}})[1]["status"]
    assert st["error"] == "[invalid bearer token, service account token has expired]"
    # deleting the ServiceAccount revokes its tokens; a new one of the same name does not bring them back
    fresh = env.sa_token()
    assert env.call("GET", "/api", token=fresh)[0] == 200
    assert env.call("DELETE", "/api/v1/namespaces/team/serviceaccounts/alice")[0] == 200
    assert env.call("GET", "/api", token=fresh)[0] == 401
    env.call("POST", "/api/v1/namespaces/team/serviceaccounts", {"metadata": {"name": "alice"}})
    assert env.call("GET", "/api", token=fresh)[0] == 401
    st = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": fresh}})[1]["status"]
    assert st["error"].startswith("[invalid bearer token, service account UID (")


def test_pod_bound_token_lives_with_its_pod(env):
    env.call("POST", "/api/v1/namespaces/team/serviceaccounts", {"metadata": {"name": "alice"}})
    env.store.create("v1/pods", {"metadata": {"name": "p", "namespace": "team"},
                                 "spec": {"serviceAccountName": "alice", "containers": []}})
    uid = env.store.get("v1/pods", "team", "p")["metadata"]["uid"]
    code, tr = env.call("POST", "/api/v1/namespaces/team/serviceaccounts/alice/token", {"spec": {
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": uid}}})
    assert code == 201
    token = tr["status"]["token"]
    st = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": token}})[1]["status"]
    assert st["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["p"]
    assert st["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [uid]
    env.store.remove("v1/pods", "team", "p")
    assert env.call("GET", "/api", token=token)[0] == 401
    # the kubelet's projected token: 3607 s asked, a year in the JWT, warnafter at 3607 s
    from kperflab.lab.satokens import token_source

    env.store.create("v1/pods", {"metadata": {"name": "q", "namespace": "team"},
                                 "spec": {"serviceAccountName": "alice", "containers": []}})
    pod = env.store.get("v1/pods", "team", "q")
    tok, exp = token_source(env.store, env.tokens)("team", "alice", None, 3607, pod)
    claims = env.tokens.verify(tok)
    assert exp == int(env.clock.now) + 3607 and claims["exp"] - claims["iat"] == 365 * 24 * 3600
    assert claims["kubernetes.io"]["warnafter"] == exp and claims["kubernetes.io"]["pod"]["uid"] == pod["metadata"]["uid"]


def test_rbac_enforced_with_kube_apiserver_messages(env):
    token = env.sa_token()
    code, st = env.call("GET", "/api/v1/namespaces/team/pods", token=token)
    assert code == 403 and st["reason"] == "Forbidden" and st["details"] == {"kind": "pods"}
    assert st["message"] == ('pods is forbidden: User "system:serviceaccount:team:alice" cannot list resource "pods" in '
                             'API group "" in the namespace "team"')
    code, st = env.call("GET", "/apis/apps/v1/namespaces/team/deployments/web", token=token)
    assert st["message"] == ('deployments.apps "web" is forbidden: User "system:serviceaccount:team:alice" cannot get '
                             'resource "deployments" in API group "apps" in the namespace "team"')
    assert st["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    code, st = env.call("GET", "/api/v1/nodes", token=token, query={"watch": "1"})
    assert st["message"].endswith('cannot watch resource "nodes" in API group "" at the cluster scope')
    code, st = env.call("GET", "/api/v1/namespaces/team/pods/p/log", token=token)
    assert st["message"] == ('pods "p" is forbidden: User "system:serviceaccount:team:alice" cannot get resource '
                             '"pods/log" in API group "" in the namespace "team"')
    code, st = env.call("GET", "/metrics", token=token)
    assert code == 403 and st["message"] == 'forbidden: User "system:serviceaccount:team:alice" cannot get path "/metrics"'
    assert st["details"] == {}
    # discovery and asking are everyone's (system:discovery, system:basic-user)
    assert env.call("GET", "/api", token=token)[0] == 200
    assert env.call("GET", "/apis/apps/v1", token=token)[0] == 200
    # a binding to view in "team": reads there, not elsewhere, no writes
    env.bind("team", "alice-view", "view", ALICE)
    assert env.call("GET", "/api/v1/namespaces/team/pods", token=token)[0] == 200
    assert env.call("GET", "/api/v1/namespaces/other/pods", token=token)[0] == 403
    assert env.call("GET", "/api/v1/namespaces/team/secrets", token=token)[0] == 403
    code, st = env.call("POST", "/api/v1/namespaces/team/configmaps", {"metadata": {"name": "c"}}, token=token)
    assert code == 403 and 'cannot create resource "configmaps"' in st["message"]
    assert env.call("GET", "/api/v1/namespaces/team", token=token)[0] == 200  # namespaces "team" in namespace team
    # a delete of everything is deletecollection
    assert 'cannot deletecollection resource "pods"' in env.call("DELETE", "/api/v1/namespaces/team/pods", token=token)[1]["message"]
    # the admin and anonymous health checks are untouched
    assert env.call("GET", "/api/v1/namespaces/other/secrets")[0] == 200
    assert env.call("GET", "/readyz", token=None)[0] == 200
    assert env.call("GET", "/api/v1/pods", token=None)[0] == 401


def test_access_reviews(env):
    token = env.sa_token()
    env.bind("team", "alice-edit", "edit", ALICE)
    ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

    def can(attrs, tok=token, non=False):
        key = "nonResourceAttributes" if non else "resourceAttributes"
        code, body = env.call("POST", ssar, {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                                             "metadata": {"creationTimestamp": None}, "spec": {key: attrs}}, token=tok)
        assert code == 201, body
        return body["status"]

    st = can({"namespace": "team", "verb": "create", "resource": "deployments", "group": "apps"})
    assert st == {"allowed": True, "reason": 'RBAC: allowed by RoleBinding "alice-edit/team" of ClusterRole "edit" to '
                                             'ServiceAccount "alice/team"'}
    assert can({"namespace": "other", "verb": "create", "resource": "deployments", "group": "apps"}) == {"allowed": False}
    assert can({"namespace": "team", "verb": "create", "resource": "pods", "subresource": "exec"})["allowed"] is True
    assert can({"namespace": "team", "verb": "create", "resource": "roles", "group": "rbac.authorization.k8s.io"}) == {"allowed": False}
    assert can({"path": "/api/v1", "verb": "get"}, non=True)["reason"].startswith('RBAC: allowed by ClusterRoleBinding "system:discovery"')
    assert can({"verb": "get", "resource": "nodes"}, tok="admin-tok") == {"allowed": True}  # system:masters: no reason
    code, st = env.call("POST", ssar, {"spec": {}}, token=token)
    assert code == 422 and st["message"] == ('SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: '
                                             'Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified')
    # a binding to a role that does not exist: the resolution error is the reason
    env.bind("team", "broken", "ghost", ALICE, kind="Role")
    assert can({"namespace": "team", "verb": "get", "resource": "roles", "group": "rbac.authorization.k8s.io"}) == {
        "allowed": False, "reason": 'RBAC: role.rbac.authorization.k8s.io "ghost" not found'}
    # SubjectAccessReview: about someone else, with exactly the groups given
    sar = {"spec": {"user": "system:serviceaccount:team:alice", "resourceAttributes": {"namespace": "team", "verb": "update",
                                                                                        "resource": "services"}}}
    assert env.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar)[1]["status"]["allowed"] is True
    sar["spec"]["resourceAttributes"]["namespace"] = "other"
    assert env.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar)[1]["status"] == {"allowed": False}
    code, st = env.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {"spec": {"nonResourceAttributes": {}}})
    assert code == 422 and "spec.user: Invalid value: \"\": at least one of user or group must be specified" in st["message"]
    # alice may not ask about others (no create on subjectaccessreviews)
    assert env.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar, token=token)[0] == 403
    # LocalSubjectAccessReview: the namespace of the URL
    lsar = "/apis/authorization.k8s.io/v1/namespaces/team/localsubjectaccessreviews"
    body = {"metadata": {"namespace": "team"}, "spec": {"user": "system:serviceaccount:team:alice",
                                                         "resourceAttributes": {"namespace": "team", "verb": "get", "resource": "pods"}}}
    code, out = env.call("POST", lsar, body)
    assert code == 201 and out["status"]["allowed"] is True and out["metadata"]["namespace"] == "team"
    body["spec"]["resourceAttributes"]["namespace"] = "other"
    code, st = env.call("POST", lsar, body)
    assert code == 422 and 'spec.resourceAttributes.namespace: Invalid value: "other": must match metadata.namespace' in st["message"]
    # SelfSubjectRulesReview: what kubectl auth can-i --list shows
    code, out = env.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {"spec": {"namespace": "team"}},
                         token=token)
    st = out["status"]
    assert code == 201 and st["incomplete"] is False and st["evaluationError"] == 'role.rbac.authorization.k8s.io "ghost" not found'
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} in st["resourceRules"]
    assert any("deployments" in r["resources"] and "create" in r["verbs"] for r in st["resourceRules"])
    assert {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]} in st["nonResourceRules"]


def test_impersonation_needs_the_impersonate_verb(env):
    token = env.sa_token()
    env.bind("team", "alice-view", "view", ALICE)

    def whoami(headers, tok="admin-tok"):
        h = {"content-type": "application/json", "authorization": f"Bearer {tok}", **headers}
        r = env.api.handle(Request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {}, h, b"{}"))
        return r.code, r.body

    code, out = whoami({"impersonate-user": "system:serviceaccount:team:alice"})
    assert code == 201 and out["status"]["userInfo"] == {
        "username": "system:serviceaccount:team:alice", "uid": "",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"]}
    code, out = whoami({"impersonate-user": "bob", "impersonate-group": "devs"})
    assert out["status"]["userInfo"]["groups"] == ["devs", "system:authenticated"]
    # as the impersonated user, RBAC is the impersonated user's: the admin asking --as alice gets alice's answers
    h = {"content-type": "application/json", "authorization": "Bearer admin-tok", "impersonate-user": "system:serviceaccount:team:alice"}
    assert env.api.handle(Request("GET", "/api/v1/namespaces/team/pods", {}, h)).code == 200
    r = env.api.handle(Request("GET", "/api/v1/namespaces/team/secrets", {}, h))
    assert r.code == 403 and r.body["message"].startswith('secrets is forbidden: User "system:serviceaccount:team:alice"')
    # alice may not impersonate anyone
    code, st = whoami({"impersonate-user": "bob"}, tok=token)
    assert code == 403 and st["message"] == ('users "bob" is forbidden: User "system:serviceaccount:team:alice" cannot '
                                             'impersonate resource "users" in API group "" at the cluster scope')
    assert whoami({"impersonate-group": "devs"})[0] == 400


def test_streams_logs_and_proxies_are_authorized(env):
    token = env.sa_token()
    user = env.api.authn.user(token)
    env.bind("team", "alice-view", "view", ALICE)
    env.api.authorize(user, "GET", "/api/v1/namespaces/team/pods/web/log", {})  # view reads logs
    for method, verb in (("GET", "get"), ("POST", "create")):
        with pytest.raises(Exception) as exc:
            env.api.authorize(user, method, "/api/v1/namespaces/team/pods/web/exec", {"command": "sh"})
        assert exc.value.code == 403 and f'cannot {verb} resource "pods/exec"' in exc.value.message
    # a websocket upgrade (GET) needs create as well as get (AuthorizePodWebsocketUpgradeCreatePermission)
    assert env.call("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles", {"metadata": {"name": "exec-get"},
                    "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}]})[0] == 201
    env.bind("team", "alice-exec-get", "exec-get", ALICE, kind="Role")
    with pytest.raises(Exception) as exc:
        env.api.authorize(user, "GET", "/api/v1/namespaces/team/pods/web/exec", {"command": "sh"})
    assert 'cannot create resource "pods/exec"' in exc.value.message
    with pytest.raises(Exception) as exc:
        env.api.authorize(user, "GET", "/api/v1/namespaces/team/services/web/proxy/", {})
    assert 'cannot get resource "services/proxy"' in exc.value.message
    env.bind("team", "alice-edit", "edit", ALICE)
    env.api.authorize(user, "GET", "/api/v1/namespaces/team/pods/web/exec", {})
    env.api.authorize(user, "POST", "/api/v1/namespaces/team/pods/web/portforward", {})
    env.api.authorize(user, "GET", "/api/v1/namespaces/team/services/web/proxy/", {})


def test_request_attributes_as_kube_apiserver_derives_them():
    u = User("u", "", ())

    def a(method, path, **query):
        x = rbac.request_attributes(u, method, path, query)
        return (x.verb, x.resource_request, x.api_group, x.namespace, x.resource, x.subresource, x.name)

    assert a("GET", "/api/v1/namespaces/ns/pods") == ("list", True, "", "ns", "pods", "", "")
    assert a("GET", "/api/v1/namespaces/ns/pods", watch="true") == ("watch", True, "", "ns", "pods", "", "")
    assert a("GET", "/api/v1/watch/namespaces/ns/pods") == ("watch", True, "", "ns", "pods", "", "")
    assert a("GET", "/api/v1/namespaces/ns/pods", fieldSelector="metadata.name=web") == ("list", True, "", "ns", "pods", "", "web")
    assert a("GET", "/api/v1/namespaces/ns/pods/web/log") == ("get", True, "", "ns", "pods", "log", "web")
    assert a("POST", "/api/v1/namespaces/ns/pods/web/exec") == ("create", True, "", "ns", "pods", "exec", "web")
    assert a("DELETE", "/apis/apps/v1/namespaces/ns/deployments") == ("deletecollection", True, "apps", "ns", "deployments", "", "")
    assert a("PATCH", "/apis/apps/v1/namespaces/ns/deployments/web/scale") == ("patch", True, "apps", "ns", "deployments", "scale", "web")
    assert a("GET", "/api/v1/namespaces/ns") == ("get", True, "", "ns", "namespaces", "", "ns")
    assert a("PUT", "/api/v1/namespaces/ns/finalize") == ("update", True, "", "ns", "namespaces", "finalize", "ns")
    assert a("GET", "/api/v1/namespaces/ns/services/web:80/proxy/x/y") == ("get", True, "", "ns", "services", "proxy", "web:80")
    assert a("GET", "/api/v1/nodes/n/proxy/stats/summary") == ("get", True, "", "", "nodes", "proxy", "n")
    assert a("POST", "/api/v1/namespaces/ns/serviceaccounts/sa/token") == ("create", True, "", "ns", "serviceaccounts", "token", "sa")
    assert a("GET", "/api/v1") == ("get", False, "", "", "", "", "")
    assert a("GET", "/apis/apps/v1") == ("get", False, "", "", "", "", "")
    assert a("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")[:5] == ("create", True, "authorization.k8s.io", "",
                                                                                      "selfsubjectaccessreviews")


@pytest.mark.parametrize("rule,attrs,allowed", [
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, ("get", "", "pods", "", "x"), True),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, ("get", "", "pods", "log", "x"), False),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["*/log"]}, ("get", "", "pods", "log", "x"), True),
    ({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, ("delete", "apps", "deployments", "scale", ""), True),
    ({"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments"]}, ("get", "", "deployments", "", ""), False),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]},
     ("get", "", "configmaps", "", "a"), True),
    ({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]},
     ("list", "", "configmaps", "", ""), False),
    ({"verbs": ["list"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]},
     ("list", "", "configmaps", "", ""), False),
])
def test_rule_matching(rule, attrs, allowed):
    verb, group, res, sub, name = attrs
    a = rbac.Attributes(User("u", "", ()), verb, True, namespace="ns", api_group=group, resource=res, subresource=sub, name=name)
    assert rbac.rule_allows(a, rule) is allowed


@pytest.mark.parametrize("urls,path,allowed", [
    (["/healthz"], "/healthz", True), (["/healthz"], "/healthz/ping", False), (["/healthz/*"], "/healthz/ping", True),
    (["/api/*"], "/api/v1", True), (["/api/*"], "/apis", False), (["*"], "/anything", True),
])
def test_non_resource_url_matching(urls, path, allowed):
    a = rbac.Attributes(User("u", "", ()), "get", False, path=path)
    assert rbac.rule_allows(a, {"verbs": ["get"], "nonResourceURLs": urls}) is allowed


def test_rbac_validation_and_immutable_role_ref(env):
    base = "/apis/rbac.authorization.k8s.io/v1"
    code, st = env.call("POST", f"{base}/namespaces/team/roles", {"metadata": {"name": "r"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"]}, {"nonResourceURLs": ["/x"], "verbs": ["get"]}]})
    assert code == 422 and st["message"].startswith('Role.rbac.authorization.k8s.io "r" is invalid: [')
    assert [(c["field"], c["message"]) for c in st["details"]["causes"]] == [
        ("rules[0].verbs", "Required value: verbs must contain at least one value"),
        ("rules[1].nonResourceURLs", 'Invalid value: []string{"/x"}: namespaced rules cannot apply to non-resource URLs')]
    code, st = env.call("POST", f"{base}/clusterroles", {"metadata": {"name": "c"}, "rules": [{"verbs": ["get"]}]})
    assert code == 422 and {c["field"] for c in st["details"]["causes"]} == {"rules[0].apiGroups", "rules[0].resources"}
    code, st = env.call("POST", f"{base}/namespaces/team/rolebindings", {"metadata": {"name": "b"},
                        "roleRef": {"kind": "Secret", "name": "x"}, "subjects": [{"kind": "Robot", "name": "r"}]})
    assert code == 422 and [(c["field"], c["message"]) for c in st["details"]["causes"]] == [
        ("roleRef.kind", 'Unsupported value: "Secret": supported values: "Role", "ClusterRole"'),
        ("subjects[0].kind", 'Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"')]
    code, st = env.call("POST", f"{base}/namespaces/team/rolebindings", {"metadata": {"name": "b"},
                        "roleRef": {"kind": "Role", "name": "a/b"}, "subjects": []})
    assert st["message"] == ('RoleBinding.rbac.authorization.k8s.io "b" is invalid: roleRef.name: Invalid value: "a/b": '
                             "may not contain '/'")
    code, st = env.call("POST", f"{base}/clusterrolebindings", {"metadata": {"name": "b"}, "roleRef": {
        "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "ServiceAccount", "name": "alice"}]})
    assert code == 422 and st["details"]["causes"][0]["field"] == "subjects[0].namespace"
    # defaults: roleRef.apiGroup and a User's apiGroup
    code, b = env.call("POST", f"{base}/clusterrolebindings", {"metadata": {"name": "b"}, "roleRef": {
        "kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "bob"}]})
    assert code == 201 and b["roleRef"]["apiGroup"] == b["subjects"][0]["apiGroup"] == "rbac.authorization.k8s.io"
    changed = dict(b, roleRef={**b["roleRef"], "name": "edit"})
    causes = rbac.validate_binding_update(b, changed)
    assert causes == [{"reason": "FieldValueInvalid", "field": "roleRef", "message": (
        'Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: '
        "cannot change roleRef")}]
    assert rbac.validate_binding_update(b, dict(b, subjects=[])) == []


def test_default_roles_and_aggregation(env):
    role = env.store.get(rbac.CLUSTERROLES, "", "view")
    assert role["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]} in role["rules"]
    admin = env.store.get(rbac.CLUSTERROLES, "", "admin")["rules"]
    edit = env.store.get(rbac.CLUSTERROLES, "", "edit")["rules"]
    assert all(r in edit for r in role["rules"]) and all(r in admin for r in edit)  # view ⊂ edit ⊂ admin
    assert not any("roles" in r.get("resources", []) for r in edit)
    # a new ClusterRole labelled aggregate-to-view joins view, edit and admin (the controller's pass)
    widget = {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}
    code, _ = env.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {"metadata": {
        "name": "widgets-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}, "rules": [widget]})
    assert code == 201
    agg = rbac.Aggregator(env.store)
    agg.reconcile()
    agg.reconcile()  # edit aggregates view's new rules on the pass after view changed, as upstream converges
    for name in ("view", "edit", "admin"):
        assert widget in env.store.get(rbac.CLUSTERROLES, "", name)["rules"], name
    env.call("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterroles/widgets-view")
    agg.reconcile()
    agg.reconcile()
    assert widget not in env.store.get(rbac.CLUSTERROLES, "", "admin")["rules"]
    bindings = {b["metadata"]["name"]: b for b in env.store.list(rbac.CLUSTERROLEBINDINGS)[0]}
    assert [s["name"] for s in bindings["system:public-info-viewer"]["subjects"]] == ["system:authenticated", "system:unauthenticated"]
    assert bindings["cluster-admin"]["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]


def test_escalation_prevention(env):
    token = env.sa_token()
    env.bind("team", "alice-admin", "admin", ALICE)
    base = "/apis/rbac.authorization.k8s.io/v1/namespaces/team"
    ok = {"metadata": {"name": "pod-reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
    assert env.call("POST", f"{base}/roles", ok, token=token)[0] == 201
    more = {"metadata": {"name": "node-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]}]}
    code, st = env.call("POST", f"{base}/roles", more, token=token)
    assert code == 403 and st["details"] == {"name": "node-reader", "group": "rbac.authorization.k8s.io", "kind": "roles"}
    assert st["message"] == (
        'roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "system:serviceaccount:team:alice" (groups='
        '["system:serviceaccounts" "system:serviceaccounts:team" "system:authenticated"]) is attempting to grant RBAC '
        'permissions not currently held:\n{APIGroups:[""], Resources:["nodes"], Verbs:["get" "list"]}')
    binding = {"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "User", "name": "mallory"}]}
    code, st = env.call("POST", f"{base}/rolebindings", binding, token=token)
    assert code == 403 and "is attempting to grant RBAC permissions not currently held" in st["message"]
    binding["roleRef"]["name"] = "view"  # what alice holds in team: she may pass it on
    assert env.call("POST", f"{base}/rolebindings", binding, token=token)[0] == 201
    assert env.call("POST", f"{base}/roles", {**more, "metadata": {"name": "as-admin"}})[0] == 201  # the admin may


@pytest.mark.parametrize("path,body", [
    ("/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", {"metadata": {"name": "b"}, "roleRef": [{}]}),
    ("/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", {"metadata": {"name": "b"}, "subjects": 1}),
    ("/apis/rbac.authorization.k8s.io/v1/clusterroles", {"metadata": {"name": "c"}, "aggregationRule": 5, "rules": "x"}),
    ("/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles", {"metadata": {"name": "r"}, "rules": [{"verbs": "get"}]}),
    ("/apis/authorization.k8s.io/v1/subjectaccessreviews", {"spec": {"user": "u", "groups": "g", "nonResourceAttributes": {}}}),
    ("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {"spec": {"resourceAttributes": [1]}}),
    ("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {"spec": {"namespace": 3}}),
    ("/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": "a.b.c", "audiences": "x"}}),
    ("/api/v1/namespaces/team/serviceaccounts/alice/token", {"spec": {"expirationSeconds": "1h"}}),
    ("/api/v1/namespaces/team/serviceaccounts/alice/token", {"spec": {"boundObjectRef": "pod"}}),
])
def test_malformed_bodies_get_a_status_not_a_500(env, path, body):
    token = env.sa_token()
    env.bind("team", "alice-admin", "admin", ALICE)
    for tok in (token, "admin-tok"):
        code, st = env.call("POST", path, body, token=tok)
        assert code in (400, 403, 422) and st["kind"] == "Status" and st["code"] == code, (tok, st)


# -- the real lab with real kubectl ----------------------------------------------------------------

def on_lab(f):
    return pytest.mark.lab(needs_root(pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")(f)))


def kubectl(kubeconfig, *args, timeout=30):
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _participant_rules():
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "kperflab-participant")
    return role["rules"]


def _can_i_args(verb, group, resource):
    res, _, sub = resource.partition("/")
    target = f"{res}.{group}" if group else res
    return ["auth", "can-i", verb, target, *([f"--subresource={sub}"] if sub else [])]


@pytest.fixture(scope="module")
def participant(lab):
    """participant-rbac.yaml applied by the admin, a user made by `kperflab lab user add` and bound as the manifest's
    comments say (a ClusterRoleBinding of kperflab-participant to the ServiceAccount)."""
    admin = lab["kubeconfig"]
    r = kubectl(admin, "apply", "-f", str(MANIFEST))
    assert r.returncode == 0, r.stderr
    made = kperflab(lab["home"], "lab", "user", "add", "alice", "--namespace", "kperflab-participants")
    assert made.returncode == 0, made.stdout + made.stderr
    kc = lab["home"] / "users" / "alice.kubeconfig"
    assert str(kc) in made.stdout and oct(kc.stat().st_mode & 0o777) == "0o600"
    r = kubectl(admin, "create", "clusterrolebinding", "kperflab-alice", "--clusterrole=kperflab-participant",
                "--serviceaccount=kperflab-participants:alice")
    assert r.returncode == 0, r.stderr
    yield {"admin": admin, "user": kc}
    kubectl(admin, "delete", "clusterrolebinding", "kperflab-alice", "--ignore-not-found")
    kperflab(lab["home"], "lab", "user", "remove", "alice")
    kubectl(admin, "delete", "-f", str(MANIFEST), "--ignore-not-found", "--wait=false")


@on_lab
def test_participant_can_do_exactly_what_the_manifest_grants(participant):
    user = participant["user"]
    checks = [(verb, group, res, True) for rule in _participant_rules()
              for group in rule["apiGroups"] for res in rule["resources"] for verb in rule["verbs"]]
    # what the manifest does not grant (its comments: nothing beyond the workshop's needs)
    checks += [(v, g, r, False) for v, g, r in [
        ("get", "", "secrets"), ("list", "", "secrets"), ("create", "apps", "statefulsets"), ("delete", "", "nodes"),
        ("delete", "", "persistentvolumes"), ("patch", "", "persistentvolumes"), ("create", "apps", "replicasets"),
        ("create", "", "pods/exec"), ("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
        ("update", "", "namespaces"), ("create", "", "serviceaccounts/token"), ("get", "", "nodes/log"),
        ("create", "authorization.k8s.io", "subjectaccessreviews"), ("watch", "coordination.k8s.io", "leases"),
        ("delete", "", "events"), ("create", "", "persistentvolumes")]]

    def ask(check):
        verb, group, res, _ = check
        r = kubectl(user, *_can_i_args(verb, group, res), "-n", "kperflab-participants")
        return check, r

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, checks))
    wrong = [(c, r.returncode, r.stdout.strip(), r.stderr.strip()) for c, r in answers
             if (r.returncode == 0) != c[3] or r.stdout.strip().split()[0:1] != (["yes"] if c[3] else ["no"])]
    assert not wrong, wrong
    assert len(answers) > 50
    # kubectl auth can-i --list: the SelfSubjectRulesReview lists the manifest's rules
    r = kubectl(user, "auth", "can-i", "--list", "-n", "kperflab-participants")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    table = {line.split()[0]: line for line in lines[1:] if line.strip()}
    assert "nodes.metrics.k8s.io" in table and "leases.coordination.k8s.io" in table
    assert "[create get list watch delete patch update]" in table["pods"] and "secrets" not in table


@on_lab
def test_participant_forbidden_and_allowed_actions_with_kubectl(participant, lab):
    user, admin = participant["user"], participant["admin"]
    r = kubectl(user, "get", "secrets", "-n", "default")
    assert r.returncode == 1
    assert r.stderr.strip() == ('Error from server (Forbidden): secrets is forbidden: User '
                                '"system:serviceaccount:kperflab-participants:alice" cannot list resource "secrets" in '
                                'API group "" in the namespace "default"')
    r = kubectl(user, "delete", "node", "kperflab-lab")
    assert 'nodes "kperflab-lab" is forbidden: User "system:serviceaccount:kperflab-participants:alice" cannot delete ' \
           'resource "nodes" in API group "" at the cluster scope' in r.stderr
    # what the workshop needs works: a workspace namespace, a ConfigMap in it, reading pods and nodes
    ns = "alice-ws"
    assert kubectl(user, "create", "namespace", ns).returncode == 0
    try:
        r = subprocess.run([KUBECTL, "--kubeconfig", str(user), "apply", "-n", ns, "-f", "-"], input=json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}),
            capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert kubectl(user, "get", "pods", "-n", ns).returncode == 0
        assert kubectl(user, "get", "nodes").returncode == 0
        r = kubectl(user, "auth", "whoami", "-o", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["status"]["userInfo"]["username"] == "system:serviceaccount:kperflab-participants:alice"
    finally:
        kubectl(admin, "delete", "namespace", ns, "--wait=false")
    # the admin is unaffected
    r = kubectl(admin, "auth", "can-i", "*", "*")
    assert r.returncode == 0 and r.stdout.strip() == "yes"


@on_lab
def test_user_add_without_binding_and_remove(lab):
    bad = kperflab(lab["home"], "lab", "user", "add", "Bad_Name")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a valid user name" in bad.stderr
    made = kperflab(lab["home"], "lab", "user", "add", "bob")
    assert made.returncode == 0, made.stdout + made.stderr
    kc = lab["home"] / "users" / "bob.kubeconfig"
    assert "selfsubjectaccessreviews" in made.stdout
    assert kubectl(kc, "auth", "can-i", "list", "pods", "-n", "kperflab-users").stdout.strip() == "no"
    assert kubectl(kc, "api-resources", "--api-group=apps", "-o", "name").returncode == 0  # discovery is everyone's
    r = kubectl(kc, "get", "pods", "-n", "kperflab-users")
    assert "Forbidden" in r.stderr and 'User "system:serviceaccount:kperflab-users:bob" cannot list resource "pods"' in r.stderr
    listed = kperflab(lab["home"], "lab", "user", "list")
    assert "bob  ServiceAccount kperflab-users/bob" in listed.stdout
    token = yaml.safe_load(kc.read_text())["users"][0]["user"]["token"]
    gone = kperflab(lab["home"], "lab", "user", "remove", "bob")
    assert gone.returncode == 0, gone.stderr
    assert not kc.exists()
    stale = lab["home"] / "stale.kubeconfig"
    cfg = yaml.safe_load(lab["kubeconfig"].read_text())
    cfg["users"][0]["user"]["token"] = token  # the admin kubeconfig's cluster, bob's old token
    stale.write_text(yaml.safe_dump(cfg))
    r = kubectl(stale, "get", "--raw", "/api")
    assert r.returncode == 1 and "Unauthorized" in r.stderr


@on_lab
def test_kubectl_create_token_and_token_review(participant):
    admin = participant["admin"]
    r = kubectl(admin, "create", "token", "alice", "-n", "kperflab-participants", "--duration=15m")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    r = kubectl(admin, "--token", token, "--user=", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert r.returncode == 0 and r.stdout == "system:serviceaccount:kperflab-participants:alice", r.stderr
    r = kubectl(admin, "create", "token", "alice", "-n", "kperflab-participants", "--duration=5m")
    assert r.returncode == 1 and r.stderr.strip() == (
        'error: failed to create token: TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
        "Invalid value: 300: may not specify a duration less than 10 minutes")
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    # (--validate=false: kubectl validates a kind the OpenAPI lacks by listing CRDs, which the lab does not serve)
    r = subprocess.run([KUBECTL, "--kubeconfig", str(admin), "create", "--validate=false", "-o", "json", "-f", "-"],
                       input=json.dumps(review),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)["status"]
    assert st["authenticated"] is True and st["user"]["groups"] == [
        "system:serviceaccounts", "system:serviceaccounts:kperflab-participants", "system:authenticated"]


def test_binding_tables_as_kubectl_get_shows_them(env):
    env.bind("team", "mixed", "view", ALICE)
    h = {"authorization": "Bearer admin-tok", "accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    r = env.api.handle(Request("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", {}, h))
    assert [c["name"] for c in r.body["columnDefinitions"]] == ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
    assert r.body["rows"][0]["cells"][:2] == ["mixed", "ClusterRole/view"] and r.body["rows"][0]["cells"][3:] == ["", "", "team/alice"]
    r = env.api.handle(Request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin", {}, h))
    assert r.body["rows"][0]["cells"][1] == "ClusterRole/cluster-admin" and r.body["rows"][0]["cells"][4] == "system:masters"
    r = env.api.handle(Request("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/view", {}, h))
    assert [c["name"] for c in r.body["columnDefinitions"]] == ["Name", "Created At"]


def test_secret_based_long_lived_token(env):
    from kperflab.lab.satokens import LegacyTokenController

    env.call("POST", "/api/v1/namespaces/team/serviceaccounts", {"metadata": {"name": "alice"}})
    code, _ = env.call("POST", "/api/v1/namespaces/team/secrets", {
        "metadata": {"name": "alice-token", "annotations": {"kubernetes.io/service-account.name": "alice"}},
        "type": "kubernetes.io/service-account-token"})
    assert code == 201
    tokens = LegacyTokenController(env.store, env.tokens, b"-----BEGIN CERTIFICATE-----\n")
    tokens.reconcile()
    secret = env.store.get("v1/secrets", "team", "alice-token")
    sa = env.store.get("v1/serviceaccounts", "team", "alice")
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == sa["metadata"]["uid"]
    assert base64.b64decode(secret["data"]["namespace"]) == b"team" and secret["data"]["ca.crt"]
    token = base64.b64decode(secret["data"]["token"]).decode()
    env.clock.now += 10 * 365 * 24 * 3600  # no expiry
    st = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": token}})[1]["status"]
    assert st["authenticated"] is True and st["user"]["username"] == "system:serviceaccount:team:alice"
    assert env.call("GET", "/api/v1/namespaces/team/pods", token=token)[0] == 403  # RBAC as for any token
    # the Secret is the token's lifeline: a changed copy or a deleted Secret ends it
    secret["data"]["token"] = base64.b64encode(b"other").decode()
    env.store.update("v1/secrets", secret)
    st = env.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": token}})[1]["status"]
    assert st["error"] == "[invalid bearer token, token does not match server's copy]"
    env.store.remove("v1/secrets", "team", "alice-token")
    assert env.call("GET", "/api", token=token)[0] == 401
    # a token Secret whose ServiceAccount is gone is deleted by the controller
    env.call("POST", "/api/v1/namespaces/team/secrets", {"metadata": {"name": "orphan", "annotations": {
        "kubernetes.io/service-account.name": "ghost"}}, "type": "kubernetes.io/service-account-token"})
    tokens.reconcile()
    assert env.store.try_get("v1/secrets", "team", "orphan") is None


@on_lab
def test_secret_based_token_with_kubectl(participant):
    """A long-lived token the upstream way: a service-account-token Secret the tokens controller fills."""
    admin = participant["admin"]
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": {
        "name": "alice-token", "namespace": "kperflab-participants",
        "annotations": {"kubernetes.io/service-account.name": "alice"}}}
    r = subprocess.run([KUBECTL, "--kubeconfig", str(admin), "apply", "-f", "-"], input=json.dumps(secret),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    deadline, data = time.time() + 20, ""
    while time.time() < deadline and not data:
        data = kubectl(admin, "get", "secret", "alice-token", "-n", "kperflab-participants", "-o", "jsonpath={.data.token}").stdout
        time.sleep(0.2)
    legacy = base64.b64decode(data).decode()
    r = kubectl(admin, "--token", legacy, "--user=", "auth", "can-i", "list", "pods", "-n", "kperflab-participants")
    assert r.stdout.strip() == "yes", r.stderr
    kubectl(admin, "delete", "secret", "alice-token", "-n", "kperflab-participants")
    r = kubectl(admin, "--token", legacy, "--user=", "get", "--raw", "/api")
    assert r.returncode == 1 and "Unauthorized" in r.stderr
