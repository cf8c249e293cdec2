"""Pod Security Admission (`kperflab.lab.podsecurity`): each check's reason and detail against upstream's wording
(pure functions), the policy a namespace's labels give, the plugin in `APIServer.handle` with the controllers (pods
refused, workloads warned, a ReplicaSet's FailedCreate, namespace labels validated and checked against existing pods),
and a few real-kubectl checks on the session lab."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from kperflab.lab import podsecurity as ps
from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.controllers import Controllers
from kperflab.lab.store import Store

from .conftest import needs_root

KUBECTL = shutil.which("kubectl")
BASELINE = ps.LevelVersion("baseline")
RESTRICTED = ps.LevelVersion("restricted")


def c(name="c", **sc):
    out = {"name": name, "image": "busybox:1.37"}
    if sc:
        out["securityContext"] = sc
    return out


def detail(lv, spec, meta=None):
    return ps.forbidden_detail(ps.evaluate(lv, meta or {}, spec))


# -- each check, with upstream's words (policy/check_*.go and their tests) --------------------------------------------

@pytest.mark.parametrize("spec,meta,want", [
    ({"containers": [c(privileged=True)], "initContainers": [c("i", privileged=True)]}, None,
     'privileged (containers "i", "c" must not set securityContext.privileged=true)'),
    ({"containers": [c()], "ephemeralContainers": [c("dbg", privileged=True)]}, None,
     'privileged (container "dbg" must not set securityContext.privileged=true)'),
    ({"hostNetwork": True, "hostPID": True, "hostIPC": True, "containers": [c()]}, None,
     "host namespaces (hostNetwork=true, hostPID=true, hostIPC=true)"),
    ({"containers": [c(capabilities={"add": ["NET_ADMIN", "CHOWN", "SYS_ADMIN"]}), c("d", capabilities={"add": ["KILL"]})]},
     None, 'non-default capabilities (container "c" must not include "NET_ADMIN", "SYS_ADMIN" in '
           "securityContext.capabilities.add)"),
    ({"containers": [c()], "volumes": [{"name": "data", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}},
                                       {"name": "logs", "hostPath": {"path": "/var/log"}}]}, None,
     'hostPath volumes (volumes "data", "logs")'),
    ({"containers": [{"name": "a", "ports": [{"hostPort": 0}]}, {"name": "b", "ports": [{"hostPort": 10}, {"hostPort": 20}]},
                     {"name": "c", "ports": [{"hostPort": 10}, {"hostPort": 30}]}]}, None,
     'hostPort (containers "b", "c" use hostPorts 10, 20, 30)'),
    ({"containers": [{"name": "b", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}, None,
     'hostPort (container "b" uses hostPort 8080)'),
    ({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}, "containers": [c()]}, None,
     'forbidden AppArmor profile (pod must not set AppArmor profile type to "Unconfined")'),
    ({"containers": [c()]}, {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined",
                                             "container.apparmor.security.beta.kubernetes.io/d": "localhost/x"}},
     'forbidden AppArmor profile (annotation must not set AppArmor profile type to '
     '"container.apparmor.security.beta.kubernetes.io/c="unconfined"")'),
    ({"securityContext": {"seLinuxOptions": {"type": "foo", "user": "bar", "role": "baz"}},
      "containers": [c("a", seLinuxOptions={"type": "container_t"}), c("d", seLinuxOptions={"type": "container_engine_t"}),
                     c("e", seLinuxOptions={"type": "bar"}), c("f", seLinuxOptions={"user": "bar"}),
                     c("g", seLinuxOptions={"role": "baz"})]}, None,
     'seLinuxOptions (pod and containers "e", "f", "g" set forbidden securityContext.seLinuxOptions: types "bar", "foo"; '
     "user may not be set; role may not be set)"),
    ({"containers": [c(procMount="Unmasked")]}, None,
     'procMount (container "c" must not set securityContext.procMount to "Unmasked")'),
    ({"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [c(seccompProfile={"type": "Unconfined"})]},
     None, 'seccompProfile (pod and container "c" must not set securityContext.seccompProfile.type to "Unconfined")'),
    ({"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_rmem", "value": "1"},
                                      {"name": "vm.swappiness", "value": "1"}]}, "containers": [c()]}, None,
     "forbidden sysctls (kernel.msgmax, vm.swappiness)"),
    ({"securityContext": {"windowsOptions": {"hostProcess": True}}, "containers": [c(windowsOptions={"hostProcess": True})]},
     None, 'hostProcess (pod and container "c" must not set securityContext.windowsOptions.hostProcess=true)'),
    ({"containers": [{"name": "c", "livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}},
                      "lifecycle": {"preStop": {"tcpSocket": {"host": "example.com", "port": 1}}}}]}, None,
     'probe or lifecycle host (container "c" uses probe or lifecycle hosts "10.0.0.1", "example.com")'),
])
def test_baseline_checks_say_what_upstream_says(spec, meta, want):
    assert detail(BASELINE, spec, meta) == want


def test_several_violations_are_ordered_by_check_id():
    spec = {"hostNetwork": True, "hostPID": True, "volumes": [{"name": "data", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "image": "x", "ports": [{"hostPort": 8080}],
                            "securityContext": {"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}}}]}
    assert detail(BASELINE, spec) == (
        'non-default capabilities (container "c" must not include "NET_ADMIN" in securityContext.capabilities.add), '
        "host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume \"data\"), "
        'hostPort (container "c" uses hostPort 8080), privileged (container "c" must not set securityContext.privileged=true)')
    assert [cid for cid, _ in ps.checks_for("baseline", None)] == [
        "appArmorProfile", "capabilities_baseline", "hostNamespaces", "hostPathVolumes", "hostPorts",
        "hostProbesAndHostLifecycle", "privileged", "procMount", "seLinuxOptions", "seccompProfile_baseline", "sysctls",
        "windowsHostProcess"]


def test_restricted_checks_and_what_they_override():
    plain = {"containers": [c()], "volumes": [{"name": "nfs", "nfs": {"server": "s", "path": "/"}}]}
    assert detail(RESTRICTED, plain) == (
        'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), '
        'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
        'restricted volume types (volume "nfs" uses restricted volume type "nfs"), '
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")')
    good = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "p", "persistentVolumeClaim": {"claimName": "x"}}],
            "containers": [c(allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})]}
    assert ps.evaluate(RESTRICTED, {}, good) == []
    bad = {"securityContext": {"runAsNonRoot": False, "runAsUser": 0}, "containers": [
        c(allowPrivilegeEscalation=False, runAsUser=0, seccompProfile={"type": "RuntimeDefault"},
          capabilities={"drop": ["ALL"], "add": ["SYS_TIME", "NET_BIND_SERVICE"]})]}
    assert detail(RESTRICTED, bad) == (
        'unrestricted capabilities (container "c" must not include "SYS_TIME" in securityContext.capabilities.add), '
        "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false), "
        'runAsUser=0 (pod and container "c" must not set runAsUser=0)')
    # restricted replaces the baseline checks it tightens (capabilities, hostPath, seccomp, procMount) …
    ids = [cid for cid, _ in ps.checks_for("restricted", None)]
    assert "capabilities_baseline" not in ids and "hostPathVolumes" not in ids and "procMount" not in ids
    assert ids[:8] == ["appArmorProfile", "hostNamespaces", "hostPorts", "hostProbesAndHostLifecycle", "privileged",
                       "seLinuxOptions", "sysctls", "windowsHostProcess"]
    # … only from the versions that have the restricted check; pinned versions run the checks of their day
    old = [cid for cid, _ in ps.checks_for("restricted", (1, 21))]
    assert "capabilities_baseline" in old and "capabilities_restricted" not in old and "runAsUser" not in old
    windows = {"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": True}, "containers": [{"name": "w"}]}
    assert ps.evaluate(ps.LevelVersion("restricted", (1, 25)), {}, windows) == []
    assert [r for r, _ in ps.evaluate(ps.LevelVersion("restricted", (1, 24)), {}, windows)] == [
        "allowPrivilegeEscalation != false", "unrestricted capabilities", "seccompProfile"]
    sysctl = {"securityContext": {"sysctls": [{"name": "net.ipv4.ip_local_reserved_ports"}]}, "containers": [c()]}
    assert ps.evaluate(ps.LevelVersion("baseline", (1, 26)), {}, sysctl) and not ps.evaluate(BASELINE, {}, sysctl)
    assert ps.checks_for("baseline", (1, 99)) == ps.checks_for("baseline", None)
    assert ps.evaluate(ps.LevelVersion("privileged"), {}, {"hostPID": True}) == []


def test_namespace_labels_give_the_policy():
    p, errs = ps.policy_to_evaluate({})
    assert (str(p.enforce), str(p.audit), str(p.warn), errs) == ("baseline:latest", "baseline:latest", "baseline:latest", [])
    p, _ = ps.policy_to_evaluate({"pod-security.kubernetes.io/enforce": "restricted",
                                  "pod-security.kubernetes.io/enforce-version": "v1.30"})
    assert str(p.warn) == "restricted:v1.30"  # an unset warn follows a stricter enforce, with its version
    p, _ = ps.policy_to_evaluate({"pod-security.kubernetes.io/enforce": "privileged"})
    assert str(p.enforce) == "privileged:latest" and str(p.warn) == "baseline:latest"  # not a laxer one
    p, errs = ps.policy_to_evaluate({"pod-security.kubernetes.io/enforce": "strict",
                                     "pod-security.kubernetes.io/warn": "nope",
                                     "pod-security.kubernetes.io/audit-version": "1.30"})
    assert (p.enforce.level, p.warn.level) == ("restricted", "privileged")  # enforce fails closed, warn open
    assert [(e["field"], e["message"]) for e in errs] == [
        ("metadata.labels[pod-security.kubernetes.io/enforce]",
         'Invalid value: "strict": must be one of privileged, baseline, restricted'),
        ("metadata.labels[pod-security.kubernetes.io/audit-version]", 'Invalid value: "1.30": must be "latest" or "v1.x"'),
        ("metadata.labels[pod-security.kubernetes.io/warn]", 'Invalid value: "nope": must be one of privileged, baseline, '
                                                             "restricted")]


# -- the plugin in the API server and the controllers ---------------------------------------------------------------

@pytest.fixture
def cluster():
    from kperflab.lab.server import version_info

    store = Store()
    for ns in ("default", "kube-system"):
        store.create("v1/namespaces", {"metadata": {"name": ns}, "status": {"phase": "Active"}})
        store.create("v1/serviceaccounts", {"metadata": {"name": "default", "namespace": ns}})
    return store, APIServer(store, "tok", version=version_info()), Controllers(store, "node")


def call(api, method, path, body=None, query=None, content_type="application/json"):
    headers = {"content-type": content_type, "accept": "application/json", "authorization": "Bearer tok"}
    resp = api.handle(Request(method, path, query or {}, headers, json.dumps(body).encode() if body is not None else b""))
    body = resp.body if isinstance(resp.body, dict) else json.loads(resp.body or b"{}")
    return resp.code, body, resp.headers.get("Warning", "")


def privileged_pod(name="priv"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"hostPID": True, "containers": [c(privileged=True)]}}


def label(api, ns, labels, query=None):
    return call(api, "PATCH", f"/api/v1/namespaces/{ns}", {"metadata": {"labels": labels}}, query,
                "application/merge-patch+json")


def test_pods_are_refused_unless_the_namespace_allows_them(cluster):
    store, api, _ = cluster
    code, st, _ = call(api, "POST", "/api/v1/namespaces/default/pods", privileged_pod())
    assert code == 403 and st["reason"] == "Forbidden" and st["details"] == {"name": "priv", "kind": "pods"}
    assert st["message"] == ('pods "priv" is forbidden: violates PodSecurity "baseline:latest": host namespaces '
                             '(hostPID=true), privileged (container "c" must not set securityContext.privileged=true)')
    gen = {**privileged_pod(), "metadata": {"generateName": "web-"}}
    code, st, _ = call(api, "POST", "/api/v1/namespaces/default/pods", gen, {"dryRun": "All"})
    assert code == 403 and st["message"].startswith('pods "web-') and len(st["message"].split('"')[1]) == 9
    assert call(api, "POST", "/api/v1/namespaces/kube-system/pods", privileged_pod())[0] == 201  # exempt
    code, ns, warning = label(api, "default", {"pod-security.kubernetes.io/enforce": "privileged"})
    assert code == 200 and warning == ""
    code, _, warning = call(api, "POST", "/api/v1/namespaces/default/pods", privileged_pod())
    assert code == 201 and warning == ('299 - "would violate PodSecurity \\"baseline:latest\\": host namespaces '
                                       '(hostPID=true), privileged (container \\"c\\" must not set '
                                       'securityContext.privileged=true)"')
    label(api, "default", {"pod-security.kubernetes.io/warn": "privileged"})
    assert call(api, "POST", "/api/v1/namespaces/default/pods", privileged_pod("quiet"))[2] == ""
    # updates: only a changed image (or containers) is checked again
    label(api, "default", {"pod-security.kubernetes.io/enforce": "baseline"})
    code, _, _ = call(api, "PATCH", "/api/v1/namespaces/default/pods/priv", {"metadata": {"labels": {"a": "b"}}}, None,
                      "application/merge-patch+json")
    assert code == 200
    code, st, _ = call(api, "PATCH", "/api/v1/namespaces/default/pods/priv",
                       {"spec": {"containers": [{"name": "c", "image": "busybox:latest"}]}}, None,
                       "application/strategic-merge-patch+json")
    assert code == 403 and "violates PodSecurity" in st["message"]


def test_workloads_are_warned_and_their_pods_refused(cluster):
    store, api, ctl = cluster
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
               "metadata": {"labels": {"app": "web"}},
               "spec": {"volumes": [{"name": "h", "hostPath": {"path": "/"}}], "containers": [c(privileged=True)]}}}}
    code, _, warning = call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", dep)
    assert code == 201 and warning == ('299 - "would violate PodSecurity \\"baseline:latest\\": hostPath volumes '
                                       '(volume \\"h\\"), privileged (container \\"c\\" must not set '
                                       'securityContext.privileged=true)"')
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"}, "spec": {
        "schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "hostNetwork": True, "containers": [c()]}}}}}}
    code, _, warning = call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs", cron)
    assert code == 201 and "host namespaces (hostNetwork=true)" in warning
    for _ in range(3):
        ctl.reconcile()
    failed = [e["message"] for e in store.list("v1/events")[0] if e["reason"] == "FailedCreate"]
    assert failed, "the ReplicaSet says why it has no pods"
    assert failed[0].startswith('Error creating: pods "web-') and failed[0].endswith(
        'is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "h"), privileged (container "c" '
        'must not set securityContext.privileged=true)')
    assert store.list("v1/pods", "default")[0] == []


def test_namespace_labels_are_validated_and_checked_against_its_pods(cluster):
    store, api, _ = cluster
    code, st, _ = call(api, "POST", "/api/v1/namespaces", {"metadata": {"name": "bad", "labels": {
        "pod-security.kubernetes.io/enforce": "strict"}}})
    assert code == 422 and st["message"] == (
        'Namespace "bad" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": '
        "must be one of privileged, baseline, restricted")
    code, st, _ = label(api, "default", {"pod-security.kubernetes.io/enforce-version": "1.30"})
    assert code == 422 and 'Invalid value: "1.30": must be "latest" or "v1.x"' in st["message"]
    for name in ("b", "a", "c"):
        assert call(api, "POST", "/api/v1/namespaces/default/pods",
                    {"metadata": {"name": name}, "spec": {"containers": [c()]}})[0] == 201
    code, ns, warning = label(api, "default", {"pod-security.kubernetes.io/enforce": "restricted"}, {"dryRun": "All"})
    assert code == 200 and "pod-security.kubernetes.io/enforce" not in (store.get("v1/namespaces", "", "default")
                                                                        ["metadata"].get("labels") or {})
    assert warning == (
        '299 - "existing pods in namespace \\"default\\" violate the new PodSecurity enforce level \\"restricted:latest\\"", '
        '299 - "a (and 2 other pods): allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, '
        'seccompProfile"')
    assert label(api, "default", {"pod-security.kubernetes.io/enforce": "baseline"})[2] == ""  # nothing stricter
    code, _, warning = label(api, "kube-system", {"pod-security.kubernetes.io/enforce": "restricted"})
    assert code == 200 and warning == ('299 - "namespace \\"kube-system\\" is exempt from Pod Security, and the policy '
                                       '(enforce=restricted:latest) will be ignored"')


# -- the real lab, with real kubectl ------------------------------------------------------------------------------

def on_lab(f):
    for mark in (pytest.mark.lab, needs_root, pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")):
        f = mark(f)
    return f


def kubectl(lab, *args, stdin=None, timeout=60):
    return subprocess.run([KUBECTL, "--kubeconfig", str(lab["kubeconfig"]), *args], capture_output=True, text=True,
                          input=stdin, timeout=timeout)


@on_lab
def test_kubectl_meets_pod_security(lab, namespace):
    ns = ["-n", namespace]
    out = kubectl(lab, "run", "p", "--image=busybox:1.37", "--privileged", *ns, "--", "sleep", "1")
    assert out.returncode == 1 and out.stderr.strip() == (
        'Error from server (Forbidden): pods "p" is forbidden: violates PodSecurity "baseline:latest": privileged '
        '(container "p" must not set securityContext.privileged=true)')
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
               "metadata": {"labels": {"app": "web"}},
               "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox:1.37"}]}}}}
    out = kubectl(lab, "apply", "-f", "-", *ns, stdin=json.dumps(dep))
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == 'Warning: would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true)'
    deadline = time.time() + 30
    while True:
        events = kubectl(lab, "get", "events", *ns, "--field-selector=reason=FailedCreate", "-o",
                         "jsonpath={.items[*].message}").stdout
        if events or time.time() > deadline:
            break
        time.sleep(0.3)
    assert events.startswith('Error creating: pods "web-') and events.endswith(
        'is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)'), events
    out = kubectl(lab, "label", "ns", namespace, "pod-security.kubernetes.io/enforce=privileged")
    assert out.returncode == 0, out.stderr
    out = kubectl(lab, "run", "p", "--image=busybox:1.37", "--privileged", "--dry-run=server", *ns, "--", "sleep", "1")
    assert out.returncode == 0 and out.stdout.strip() == "pod/p created (server dry run)", out
    assert out.stderr.strip() == ('Warning: would violate PodSecurity "baseline:latest": privileged (container "p" must not '
                                  "set securityContext.privileged=true)")
    out = kubectl(lab, "label", "--overwrite", "ns", namespace, "pod-security.kubernetes.io/enforce=bogus")
    assert out.returncode == 1 and out.stderr.strip() == (
        f'The Namespace "{namespace}" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: '
        '"bogus": must be one of privileged, baseline, restricted')
