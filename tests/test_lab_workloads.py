"""Workloads as a Kubernetes user meets them: Deployments rolled out, undone, restarted, paused and scaled with real
kubectl 1.32, ReplicaSets and ReplicationControllers keeping their pods, cascade deletion by each propagation policy
(kubectl's --cascade and the official client's per-kind defaults), and — without a lab — the controllers' math
and the API's validation, scale subresource and DELETE answers on `APIServer.handle`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from typing import Any

import pytest
import yaml

from kperflab.lab import deployments as wl
from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.controllers import Controllers
from kperflab.lab.store import Store, rfc3339

from .conftest import needs_root

KUBECTL = shutil.which("kubectl")


def on_lab(f):
    for mark in (pytest.mark.lab, needs_root, pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")):
        f = mark(f)
    return f


# -- without a lab: the pure parts ----------------------------------------------------------------------------

@pytest.mark.parametrize("surge,unavailable,desired,want", [
    ("25%", "25%", 10, (3, 2)), ("25%", "25%", 3, (1, 0)), (0, "10%", 3, (0, 1)), ("25%", "25%", 1, (1, 0)),
    (2, 0, 5, (2, 0)), ("100%", "100%", 4, (4, 4)),
])
def test_resolve_fenceposts_rounds_surge_up_and_unavailability_down(surge, unavailable, desired, want):
    assert wl.resolve_fenceposts(surge, unavailable, desired) == want


def test_pod_template_hash_uses_the_safe_alphabet_and_ignores_its_own_label():
    tmpl = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}
    h = wl.compute_hash(tmpl)
    assert h and set(h) <= set("4bcdf56789") and len(h) <= 10  # decimal digits encode to these
    assert wl.compute_hash(tmpl, 1) != h
    assert wl.safe_encode("0123456789") == "456789bcdf"
    labelled = json.loads(json.dumps(tmpl))
    labelled["metadata"]["labels"][wl.HASH_LABEL] = h
    assert wl.equal_ignore_hash(labelled, tmpl)


def test_deletion_order_is_unscheduled_pending_notready_then_newest():
    def pod(name, node="n", phase="Running", ready=True, created=0.0, restarts=0):
        return {"metadata": {"name": name, "creationTimestamp": rfc3339(created)},
                "spec": {"nodeName": node} if node else {},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                           "lastTransitionTime": rfc3339(created)}],
                           "containerStatuses": [{"restartCount": restarts}]}}
    pods = [pod("old", created=1000), pod("new", created=100_000), pod("unready", ready=False), pod("pending", phase="Pending"),
            pod("unscheduled", node=""), pod("restarts", created=1000, restarts=5)]
    order = [p["metadata"]["name"] for p in wl.deletion_order(pods, 200_000)]
    assert order[:3] == ["unscheduled", "pending", "unready"]
    assert order.index("new") < order.index("old") and order.index("restarts") < order.index("old")


def test_selectors_format_as_kubectl_shows_them():
    sel = {"matchLabels": {"tier": "web", "app": "x"}, "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["b", "a"]}, {"key": "zz", "operator": "DoesNotExist"}]}
    assert wl.format_selector(sel) == "app=x,env in (a,b),tier=web,!zz"
    assert wl.selector_matches(sel, {"tier": "web", "app": "x", "env": "a"})
    assert not wl.selector_matches(sel, {"tier": "web", "app": "x", "env": "a", "zz": "1"})


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def cluster():
    from kperflab.lab.server import version_info

    clock = Clock()
    store = Store(clock)
    store.create("v1/namespaces", {"metadata": {"name": "default"}, "status": {"phase": "Active"}})
    store.create("v1/serviceaccounts", {"metadata": {"name": "default", "namespace": "default"}})
    return store, APIServer(store, "tok", version=version_info()), Controllers(store, "node"), clock


def call(api, method, path, body=None, query=None, ctype="application/json"):
    headers = {"content-type": ctype, "accept": "application/json", "authorization": "Bearer tok"}
    raw = json.dumps(body).encode() if body is not None else b""
    return api.handle(Request(method, path, query or {}, headers, raw))


def kubelet(store, ready=lambda p: True):
    """What the kubelet does to the pods, instantly: bound pods run (Ready as ``ready`` says), deleted ones go."""
    pods, *_ = store.list("v1/pods")
    for p in pods:
        if p["metadata"].get("deletionTimestamp"):
            store.remove("v1/pods", p["metadata"]["namespace"], p["metadata"]["name"])
            continue
        if not p["spec"].get("nodeName"):
            continue
        want = ready(p)
        st = p.setdefault("status", {})
        cur = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), None)
        if st.get("phase") == "Running" and cur and (cur["status"] == "True") == want:
            continue
        st["phase"] = "Running"
        st["conditions"] = [c for c in st.get("conditions") or [] if c["type"] != "Ready"] + [
            {"type": "Ready", "status": "True" if want else "False", "lastTransitionTime": rfc3339(store.clock())}]
        store.update("v1/pods", p)


def settle(store, ctl, clock, ready=lambda p: True, rounds=120, watch=None, idle=8):
    """Controller passes and kubelet steps, a second apart, until nothing changed for ``idle`` seconds."""
    quiet = 0
    for _ in range(rounds):
        rv = store.resource_version
        ctl.reconcile()
        kubelet(store, ready)
        if watch:
            watch()
        clock.t += 1
        quiet = quiet + 1 if store.resource_version == rv else 0
        if quiet >= idle:
            return
    raise AssertionError("the controllers did not settle")


def deployment(name="web", replicas=3, **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}, **spec}}


def scaling_events(store):
    evs, *_ = store.list("v1/events", None, lambda e: e["reason"] == "ScalingReplicaSet")
    return [e["message"] for e in sorted(evs, key=lambda e: int(e["metadata"]["resourceVersion"]))]


def test_defaults_and_validation_as_kube_apiserver(cluster):
    _, api, _, _ = cluster
    r = call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment())
    assert r.code == 201, r.body
    spec = r.body["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    tspec = spec["template"]["spec"]
    assert tspec["restartPolicy"] == "Always" and "serviceAccountName" not in tspec and "tolerations" not in tspec
    bad = deployment("bad")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    bad["spec"]["replicas"] = -1
    bad["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}
    r = call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", bad)
    assert r.code == 422
    fields = {c["field"]: c["message"] for c in r.body["details"]["causes"]}
    assert fields["spec.replicas"] == "Invalid value: -1: must be greater than or equal to 0"
    assert fields["spec.template.metadata.labels"] == "Invalid value: map[app:other]: `selector` does not match template `labels`"
    assert fields["spec.strategy.rollingUpdate.maxUnavailable"].endswith("may not be 0 when `maxSurge` is 0")
    assert r.body["message"].startswith('Deployment.apps "bad" is invalid: [')
    nosel = deployment("nosel")
    del nosel["spec"]["selector"]
    r = call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", nosel)
    assert r.code == 422 and r.body["details"]["causes"][0] == {
        "reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"}
    job_like = deployment("never")
    job_like["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    r = call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", job_like)
    assert r.code == 422 and 'Unsupported value: "Never": supported values: "Always"' in r.body["message"]
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
          "spec": {"template": {"metadata": {"labels": {"app": "rc"}},
                                "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}}
    r = call(api, "POST", "/api/v1/namespaces/default/replicationcontrollers", rc)
    assert r.code == 201 and r.body["spec"]["selector"] == {"app": "rc"} and r.body["metadata"]["labels"] == {"app": "rc"}
    assert wl.validate_update(
        {"kind": "Deployment", **deployment()}, {"kind": "Deployment", **deployment(name="web")} | {
            "spec": {**deployment()["spec"], "selector": {"matchLabels": {"app": "web", "x": "y"}}}})[-1]["message"] == (
        'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "x":"y"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable")


def test_rolling_update_keeps_availability_and_surge_and_records_revisions(cluster):
    store, api, ctl, clock = cluster
    d = deployment()
    d["metadata"]["annotations"] = {"kubernetes.io/change-cause": "first"}
    assert call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", d).code == 201
    settle(store, ctl, clock)
    web = store.get("apps/v1/deployments", "default", "web")
    first = store.list("apps/v1/replicasets")[0][0]
    assert first["metadata"]["name"] == f"web-{first['metadata']['labels']['pod-template-hash']}"
    assert first["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": first["metadata"]["labels"]["pod-template-hash"]}
    assert first["metadata"]["annotations"] == {"kubernetes.io/change-cause": "first", wl.REVISION: "1",
                                                wl.DESIRED_REPLICAS: "3", wl.MAX_REPLICAS: "4"}
    assert first["metadata"]["ownerReferences"][0]["uid"] == web["metadata"]["uid"]
    assert {c["type"]: (c["status"], c["reason"]) for c in web["status"]["conditions"]} == {
        "Available": ("True", "MinimumReplicasAvailable"), "Progressing": ("True", "NewReplicaSetAvailable")}
    assert scaling_events(store) == [f"Scaled up replica set {first['metadata']['name']} to 3"]
    pod = store.list("v1/pods")[0][0]  # through the ServiceAccount admission, as a controller's POST is
    assert any(vol["name"].startswith("kube-api-access-") for vol in pod["spec"]["volumes"])
    # a new template: one pod over (maxSurge 1), never one short (maxUnavailable 0)
    r = call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web",
             {"metadata": {"annotations": {"kubernetes.io/change-cause": "second"}},
              "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}},
             ctype="application/strategic-merge-patch+json")
    assert r.code == 200 and r.body["metadata"]["generation"] == 2
    seen: list[tuple[int, int]] = []

    def watch():
        pods = store.list("v1/pods")[0]
        seen.append((len(pods), sum(wl.pod_ready(p) for p in pods if not p["metadata"].get("deletionTimestamp"))))

    settle(store, ctl, clock, watch=watch)
    assert max(n for n, _ in seen) == 4 and min(r for _, r in seen) >= 3
    rss = {rs["metadata"]["name"]: rs for rs in store.list("apps/v1/replicasets")[0]}
    second = next(rs for name, rs in rss.items() if name != first["metadata"]["name"])
    assert second["metadata"]["annotations"][wl.REVISION] == "2"
    assert second["metadata"]["annotations"]["kubernetes.io/change-cause"] == "second"
    assert rss[first["metadata"]["name"]]["spec"]["replicas"] == 0
    a, b = first["metadata"]["name"], second["metadata"]["name"]
    assert scaling_events(store)[1:] == [
        f"Scaled up replica set {b} to 1", f"Scaled down replica set {a} to 2 from 3", f"Scaled up replica set {b} to 2 from 1",
        f"Scaled down replica set {a} to 1 from 2", f"Scaled up replica set {b} to 3 from 2", f"Scaled down replica set {a} to 0 from 1"]
    web = store.get("apps/v1/deployments", "default", "web")
    assert web["status"]["observedGeneration"] == 2 and web["metadata"]["annotations"][wl.REVISION] == "2"
    assert web["status"]["conditions"][-1]["message"] == f'ReplicaSet "{b}" has successfully progressed.'
    # back to the first template: its ReplicaSet comes back as revision 3, "1" in its history
    undo = [{"op": "replace", "path": "/spec/template", "value": first["spec"]["template"]}]
    undo[0]["value"]["metadata"]["labels"].pop("pod-template-hash")
    assert call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web", undo,
                ctype="application/json-patch+json").code == 200
    settle(store, ctl, clock)
    back = store.get("apps/v1/replicasets", "default", a)
    assert back["spec"]["replicas"] == 3 and back["metadata"]["annotations"][wl.REVISION] == "3"
    assert back["metadata"]["annotations"][wl.REVISION_HISTORY] == "1"
    assert len(store.list("apps/v1/replicasets")[0]) == 2


def test_readiness_holds_a_rollout_and_the_progress_deadline_ends_it(cluster):
    store, api, ctl, clock = cluster
    assert call(api, "POST", "/apis/apps/v1/namespaces/default/deployments",
                deployment(replicas=2, progressDeadlineSeconds=30, minReadySeconds=5)).code == 201
    settle(store, ctl, clock)
    web = store.get("apps/v1/deployments", "default", "web")
    assert web["status"].get("availableReplicas") == 2
    call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web",
         {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}, ctype="application/merge-patch+json")
    new_pods_never_ready = lambda p: p["metadata"]["labels"].get("v") != "2"  # noqa: E731
    for _ in range(40):
        ctl.reconcile()
        kubelet(store, new_pods_never_ready)
        clock.t += 1
    web = store.get("apps/v1/deployments", "default", "web")
    prog = next(c for c in web["status"]["conditions"] if c["type"] == "Progressing")
    assert (prog["status"], prog["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert prog["message"].endswith("has timed out progressing.")
    assert web["status"]["availableReplicas"] == 2 and web["status"]["updatedReplicas"] == 1  # the old pods stay
    assert web["status"]["unavailableReplicas"] == 1


def test_recreate_pause_and_proportional_scaling(cluster):
    store, api, ctl, clock = cluster
    assert call(api, "POST", "/apis/apps/v1/namespaces/default/deployments",
                deployment(replicas=2, strategy={"type": "Recreate"})).code == 201
    settle(store, ctl, clock)
    call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web",
         {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}, ctype="application/merge-patch+json")
    mixed = []
    settle(store, ctl, clock, watch=lambda: mixed.append(len({p["metadata"]["labels"]["pod-template-hash"]
                                                               for p in store.list("v1/pods")[0]})))
    assert max(mixed) == 1  # never old and new pods at once
    # paused: a template change makes no ReplicaSet, resuming does
    call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web", {"spec": {"paused": True}},
         ctype="application/merge-patch+json")
    settle(store, ctl, clock)
    web = store.get("apps/v1/deployments", "default", "web")
    assert next(c for c in web["status"]["conditions"] if c["type"] == "Progressing")["reason"] == "DeploymentPaused"
    call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web",
         {"spec": {"template": {"metadata": {"labels": {"v": "3"}}}}}, ctype="application/merge-patch+json")
    settle(store, ctl, clock)
    assert len(store.list("apps/v1/replicasets")[0]) == 2
    call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web", {"spec": {"paused": False}},
         ctype="application/merge-patch+json")
    settle(store, ctl, clock)
    assert len(store.list("apps/v1/replicasets")[0]) == 3
    # scaling in the middle of a rolling update shares the new replicas out by size
    assert call(api, "POST", "/apis/apps/v1/namespaces/default/deployments",
                deployment("roll", replicas=10, strategy={"type": "RollingUpdate", "rollingUpdate": {
                    "maxSurge": 3, "maxUnavailable": 2}})).code == 201
    settle(store, ctl, clock)
    call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/roll",
         {"spec": {"template": {"metadata": {"labels": {"v": "2"}}}}}, ctype="application/merge-patch+json")
    for _ in range(3):
        ctl.reconcile()
        kubelet(store, lambda p: p["metadata"]["labels"].get("v") != "2")
    sizes = sorted(rs["spec"]["replicas"] for rs in store.list("apps/v1/replicasets", "default", lambda r: r["metadata"]["name"].startswith("roll-"))[0])
    assert sizes == [5, 8]  # 13 = 10 + surge 3; old down to 8 (10 - unavailable 2)
    r = call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/roll/scale", {"spec": {"replicas": 20}},
             ctype="application/merge-patch+json")
    assert r.code == 200 and r.body["spec"]["replicas"] == 20
    for _ in range(2):
        ctl.reconcile()
    rss = store.list("apps/v1/replicasets", "default", lambda r: r["metadata"]["name"].startswith("roll-"))[0]
    # 23 = 20 + surge 3, shared by size: 8 → round(8·23/13) = 14, 5 → round(5·23/13) = 9
    assert sorted(rs["spec"]["replicas"] for rs in rss) == [9, 14]
    assert all(rs["metadata"]["annotations"][wl.DESIRED_REPLICAS] == "20" for rs in rss)


def test_revision_history_limit_removes_the_oldest_empty_replicasets(cluster):
    store, api, ctl, clock = cluster
    call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment(replicas=1, revisionHistoryLimit=1))
    settle(store, ctl, clock)
    for v in ("2", "3", "4"):
        call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web",
             {"spec": {"template": {"metadata": {"labels": {"v": v}}}}}, ctype="application/merge-patch+json")
        settle(store, ctl, clock)
    revs = sorted(int(rs["metadata"]["annotations"][wl.REVISION]) for rs in store.list("apps/v1/replicasets")[0])
    assert revs == [3, 4]
    web = store.get("apps/v1/deployments", "default", "web")
    assert wl.deployment_generation_changes(web, {**web, "metadata": {**web["metadata"], "annotations": {"a": "b"}}})
    assert not wl.deployment_generation_changes(web, {**web, "metadata": {**web["metadata"], "labels": {"a": "b"}}})


def test_scale_subresource(cluster):
    store, api, ctl, clock = cluster
    call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment(replicas=2))
    settle(store, ctl, clock)
    r = call(api, "GET", "/apis/apps/v1/namespaces/default/deployments/web/scale")
    assert r.code == 200 and r.body["kind"] == "Scale" and r.body["apiVersion"] == "autoscaling/v1"
    assert r.body["spec"] == {"replicas": 2} and r.body["status"] == {"replicas": 2, "selector": "app=web"}
    stale = r.body["metadata"]["resourceVersion"]
    r = call(api, "PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale",
             {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web"}, "spec": {"replicas": 1}})
    assert r.code == 200 and r.body["spec"]["replicas"] == 1
    r = call(api, "PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale",
             {"metadata": {"name": "web", "resourceVersion": stale}, "spec": {"replicas": 4}})
    assert r.code == 409 and r.body["message"].startswith('Operation cannot be fulfilled on deployments.apps "web"')
    r = call(api, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale", {"spec": {"replicas": -2}},
             ctype="application/merge-patch+json")
    assert r.code == 422 and r.body["message"] == (
        'Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -2: must be greater than or equal to 0')
    web = store.get("apps/v1/deployments", "default", "web")
    assert web["spec"]["replicas"] == 1 and web["metadata"]["generation"] == 2
    settle(store, ctl, clock)
    assert len(store.list("v1/pods")[0]) == 1
    rs = store.list("apps/v1/replicasets")[0][0]["metadata"]["name"]
    r = call(api, "GET", f"/apis/apps/v1/namespaces/default/replicasets/{rs}/scale")
    assert r.body["status"]["selector"] == f"app=web,pod-template-hash={rs[4:]}"
    assert call(api, "GET", "/apis/apps/v1/namespaces/default/deployments/ghost/scale").code == 404


def test_delete_answers_and_propagation_policies(cluster):
    store, api, ctl, clock = cluster
    for name in ("bg", "fg", "or"):
        call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", deployment(name, replicas=1))
    settle(store, ctl, clock)
    r = call(api, "DELETE", "/apis/apps/v1/namespaces/default/deployments/bg")
    assert r.code == 200 and r.body["kind"] == "Status" and r.body["details"]["kind"] == "deployments"
    assert r.body["details"]["group"] == "apps" and "code" not in r.body
    r = call(api, "DELETE", "/apis/apps/v1/namespaces/default/deployments/fg", {"kind": "DeleteOptions",
                                                                                "apiVersion": "v1", "propagationPolicy": "Foreground"})
    assert r.code == 200 and r.body["kind"] == "Deployment" and r.body["metadata"]["finalizers"] == ["foregroundDeletion"]
    r = call(api, "DELETE", "/apis/apps/v1/namespaces/default/deployments/or", query={"propagationPolicy": "Orphan"})
    assert r.body["metadata"]["finalizers"] == ["orphan"]
    fg_alive_with_pods = []

    def watch():
        if store.try_get("apps/v1/deployments", "default", "fg") is not None:
            fg_alive_with_pods.append(len(store.list("v1/pods", "default", lambda p: p["metadata"]["name"].startswith("fg-"))[0]))

    settle(store, ctl, clock, watch=watch)
    assert not store.list("apps/v1/deployments")[0]
    rss = store.list("apps/v1/replicasets")[0]
    assert [rs["metadata"]["name"][:3] for rs in rss] == ["or-"] and not rss[0]["metadata"].get("ownerReferences")
    pods = store.list("v1/pods")[0]
    assert [p["metadata"]["name"][:3] for p in pods] == ["or-"]  # still the orphaned ReplicaSet's
    assert fg_alive_with_pods and fg_alive_with_pods[0] == 1  # readable while its pods were there
    # the ReplicationController's default is Orphan, and a Service's DELETE answers with the Service
    rc = {"metadata": {"name": "rc"}, "spec": {"replicas": 2, "template": {
        "metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}}
    call(api, "POST", "/api/v1/namespaces/default/replicationcontrollers", rc)
    settle(store, ctl, clock)
    assert len(store.list("v1/pods", "default", lambda p: p["metadata"]["name"].startswith("rc-"))[0]) == 2
    r = call(api, "DELETE", "/api/v1/namespaces/default/replicationcontrollers/rc")
    assert r.body["kind"] == "ReplicationController" and r.body["metadata"]["finalizers"] == ["orphan"]
    settle(store, ctl, clock)
    left = store.list("v1/pods", "default", lambda p: p["metadata"]["name"].startswith("rc-"))[0]
    assert len(left) == 2 and not any(p["metadata"].get("ownerReferences") for p in left)
    job = {"metadata": {"name": "job"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
        {"name": "c", "image": "busybox:1.37"}]}}}}
    assert call(api, "POST", "/apis/batch/v1/namespaces/default/jobs", job).code == 201
    r = call(api, "DELETE", "/apis/batch/v1/namespaces/default/jobs/job")
    assert r.body["metadata"]["finalizers"] == ["orphan"] and r.headers["Warning"] == (
        '299 - "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove '
        'them or set propagationPolicy=Orphan to suppress this warning"')
    assert call(api, "DELETE", "/apis/batch/v1/namespaces/default/jobs/none").code == 404
    r = call(api, "DELETE", "/apis/apps/v1/namespaces/default/replicasets/x", query={"propagationPolicy": "Orphan",
                                                                                   "orphanDependents": "true"})
    assert r.code == 422 and "orphanDependents and deletionPropagation cannot be both set" in r.body["message"]


def test_a_pod_the_api_would_refuse_is_a_replica_failure(cluster):
    store, api, ctl, clock = cluster
    d = deployment(replicas=1)
    d["spec"]["template"]["spec"]["serviceAccountName"] = "ghost"
    call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", d)
    settle(store, ctl, clock)
    rs = store.list("apps/v1/replicasets")[0][0]
    cond = rs["status"]["conditions"][0]
    why = ('pods "' + rs["metadata"]["name"] + '-" is forbidden: error looking up service account default/ghost: '
           'serviceaccount "ghost" not found')
    assert (cond["type"], cond["reason"], cond["message"]) == ("ReplicaFailure", "FailedCreate", why)
    evs = [(e["type"], e["reason"], e["message"]) for e in store.list("v1/events")[0] if e["involvedObject"]["kind"] == "ReplicaSet"]
    assert evs == [("Warning", "FailedCreate", f"Error creating: {why}")]
    web = store.get("apps/v1/deployments", "default", "web")
    assert {c["type"]: c["status"] for c in web["status"]["conditions"]}["Available"] == "False"
    store.create("v1/serviceaccounts", {"metadata": {"name": "ghost", "namespace": "default"}})
    settle(store, ctl, clock)
    assert "conditions" not in store.get("apps/v1/replicasets", "default", rs["metadata"]["name"])["status"]


def test_replicaset_adopts_orphans_and_deletes_unready_pods_first(cluster):
    store, api, ctl, clock = cluster
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
          "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "rs"}},
                   "template": {"metadata": {"labels": {"app": "rs"}},
                                "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}}
    orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "labels": {"app": "rs"}},
              "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}
    assert call(api, "POST", "/api/v1/namespaces/default/pods", orphan).code == 201
    assert call(api, "POST", "/apis/apps/v1/namespaces/default/replicasets", rs).code == 201
    settle(store, ctl, clock, ready=lambda p: p["metadata"]["name"] != "stray")
    pods = store.list("v1/pods")[0]
    assert len(pods) == 3 and all(p["metadata"]["ownerReferences"][0]["name"] == "rs" for p in pods)
    call(api, "PATCH", "/apis/apps/v1/namespaces/default/replicasets/rs", {"spec": {"replicas": 2}},
         ctype="application/merge-patch+json")
    ctl.reconcile()
    gone = [p["metadata"]["name"] for p in store.list("v1/pods")[0] if p["metadata"].get("deletionTimestamp")]
    assert gone == ["stray"]  # the one that is not ready
    evs = [(e["source"]["component"], e["reason"], e["message"]) for e in store.list("v1/events")[0]
           if e["involvedObject"]["kind"] == "ReplicaSet"]
    assert ("replicaset-controller", "SuccessfulDelete", "Deleted pod: stray") in evs
    assert sum(r == "SuccessfulCreate" for _, r, _ in evs) == 2


def test_statefulset_creates_in_order_and_removes_from_the_top(cluster):
    store, api, ctl, clock = cluster
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
           "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                    "template": {"metadata": {"labels": {"app": "db"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}}
    r = call(api, "POST", "/apis/apps/v1/namespaces/default/statefulsets", sts)
    assert r.code == 201 and r.body["spec"]["podManagementPolicy"] == "OrderedReady"
    order: list[list[str]] = []
    settle(store, ctl, clock, watch=lambda: order.append(sorted(p["metadata"]["name"] for p in store.list("v1/pods")[0])))
    assert [o for i, o in enumerate(order) if i == 0 or o != order[i - 1]][:3] == [["db-0"], ["db-0", "db-1"], ["db-0", "db-1", "db-2"]]
    pod = store.get("v1/pods", "default", "db-1")
    assert pod["spec"]["hostname"] == "db-1" and pod["spec"]["subdomain"] == "db"
    assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
    st = store.get("apps/v1/statefulsets", "default", "db")["status"]
    assert st["readyReplicas"] == 3 and st["currentRevision"] == st["updateRevision"] == pod["metadata"]["labels"]["controller-revision-hash"]
    call(api, "PATCH", "/apis/apps/v1/namespaces/default/statefulsets/db/scale", {"spec": {"replicas": 1}},
         ctype="application/merge-patch+json")
    ctl.reconcile()
    assert [p["metadata"]["name"] for p in store.list("v1/pods")[0] if p["metadata"].get("deletionTimestamp")] == ["db-2"]
    settle(store, ctl, clock)
    assert [p["metadata"]["name"] for p in store.list("v1/pods")[0]] == ["db-0"]


# -- on the lab, with kubectl 1.32 and the official client --------------------------------------------------------

def kc(lab, *args, check=True, timeout=90, input=None):
    r = subprocess.run([KUBECTL, *args], env=lab["env"], capture_output=True, text=True, timeout=timeout, input=input)
    assert not check or r.returncode == 0, f"kubectl {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def manifest(name, replicas, grace=0, **meta):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, **meta},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": grace, "containers": [
                                      {"name": "main", "image": "busybox:1.37", "command": ["sleep", "3600"]}]}}}}


def apps_api(lab) -> Any:
    from kubernetes import client, config

    return client.AppsV1Api(config.new_client_from_config(str(lab["kubeconfig"])))


def owned_rs(apps, ns, name):
    rss = apps.list_namespaced_replica_set(ns).items
    return sorted((rs for rs in rss if any(r.name == name for r in rs.metadata.owner_references or [])),
                  key=lambda rs: int(rs.metadata.annotations[wl.REVISION]))


def until(pred, timeout=45, what="condition"):
    deadline = time.time() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@on_lab
def test_kubectl_apply_rollout_undo_restart_pause_scale(lab, k8s, namespace):
    ns, apps = namespace, apps_api(lab)
    kc(lab, "apply", "-n", ns, "-f", "-", input=json.dumps(manifest("web", 3, annotations={"kubernetes.io/change-cause": "first"})))
    out = kc(lab, "rollout", "status", "-n", ns, "deployment/web", "--timeout=60s").stdout
    assert out.strip().endswith('deployment "web" successfully rolled out'), out
    web = apps.read_namespaced_deployment("web", ns)
    assert (web.status.ready_replicas, web.status.updated_replicas, web.status.available_replicas) == (3, 3, 3)
    assert {c.type: c.reason for c in web.status.conditions} == {"Available": "MinimumReplicasAvailable",
                                                                 "Progressing": "NewReplicaSetAvailable"}
    (rs1,) = owned_rs(apps, ns, "web")
    pods = k8s.list_namespaced_pod(ns).items
    assert len(pods) == 3 and all(p.status.phase == "Running" for p in pods)
    assert {p.metadata.owner_references[0].name for p in pods} == {rs1.metadata.name}
    assert rs1.metadata.owner_references[0].uid == web.metadata.uid and rs1.metadata.owner_references[0].controller
    wide = kc(lab, "get", "-n", ns, "deploy,rs", "-o", "wide").stdout
    heads = [line.split() for line in wide.splitlines() if line.startswith("NAME")]
    assert heads == [["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
                     ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]], wide
    assert f"replicaset.apps/{rs1.metadata.name}" in wide and "busybox:1.37" in wide and "app=web" in wide
    # set image → a second ReplicaSet (the same busybox, by digest)
    digest = pods[0].status.container_statuses[0].image_id.split("@", 1)[1]
    kc(lab, "set", "image", "-n", ns, "deployment/web", f"main=busybox@{digest}")
    kc(lab, "annotate", "-n", ns, "deployment/web", "kubernetes.io/change-cause=second", "--overwrite")
    kc(lab, "rollout", "status", "-n", ns, "deployment/web", "--timeout=60s")
    rs1b, rs2 = owned_rs(apps, ns, "web")
    assert rs1b.spec.replicas == 0 and rs2.spec.replicas == 3 and rs2.metadata.annotations[wl.REVISION] == "2"
    until(lambda: "second" in kc(lab, "rollout", "history", "-n", ns, "deployment/web").stdout, 10, "change-cause")
    hist = kc(lab, "rollout", "history", "-n", ns, "deployment/web").stdout
    assert [line.split(None, 1) for line in hist.splitlines()[2:4]] == [["1", "first"], ["2", "second"]], hist
    # undo → the first ReplicaSet again, as revision 3
    assert "rolled back" in kc(lab, "rollout", "undo", "-n", ns, "deployment/web").stdout
    kc(lab, "rollout", "status", "-n", ns, "deployment/web", "--timeout=60s")
    back = apps.read_namespaced_replica_set(rs1.metadata.name, ns)
    assert back.spec.replicas == 3 and back.metadata.annotations[wl.REVISION] == "3"
    assert back.metadata.annotations[wl.REVISION_HISTORY] == "1"
    # pause: restart refused; resume, restart → a new ReplicaSet with restartedAt in its template
    kc(lab, "rollout", "pause", "-n", ns, "deployment/web")
    until(lambda: any(c.reason == "DeploymentPaused" for c in apps.read_namespaced_deployment("web", ns).status.conditions),
          10, "DeploymentPaused")
    r = kc(lab, "rollout", "restart", "-n", ns, "deployment/web", check=False)
    assert r.returncode != 0 and "can't restart paused deployment (run rollout resume first)" in r.stderr
    kc(lab, "rollout", "resume", "-n", ns, "deployment/web")
    kc(lab, "rollout", "restart", "-n", ns, "deployment/web")
    kc(lab, "rollout", "status", "-n", ns, "deployment/web", "--timeout=60s")
    rss = owned_rs(apps, ns, "web")
    assert len(rss) == 3 and "kubectl.kubernetes.io/restartedAt" in rss[-1].spec.template.metadata.annotations
    # scale through the scale subresource
    assert "deployment.apps/web scaled" in kc(lab, "scale", "-n", ns, "deployment/web", "--replicas=1").stdout
    until(lambda: len([p for p in k8s.list_namespaced_pod(ns).items if not p.metadata.deletion_timestamp]) == 1,
          30, "one pod")
    desc = kc(lab, "describe", "-n", ns, "deployment/web").stdout
    assert f"NewReplicaSet:   {rss[-1].metadata.name} (1/1 replicas created)" in desc, desc
    assert "ScalingReplicaSet" in desc and f"Scaled down replica set {rss[-1].metadata.name} to 1 from 3" in desc
    rs_desc = kc(lab, "describe", "-n", ns, f"rs/{rss[-1].metadata.name}").stdout
    assert "Controlled By:  Deployment/web" in rs_desc and "SuccessfulCreate" in rs_desc and "Created pod: " in rs_desc


@on_lab
def test_cascade_deletion_by_each_policy(lab, k8s, namespace):
    from kubernetes import client

    ns, apps = namespace, apps_api(lab)
    docs = [manifest("fg", 1, grace=2), manifest("or", 1)]
    kc(lab, "apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(docs))
    # kubectl's typed client POSTs this one in protobuf
    kc(lab, "create", "deployment", "-n", ns, "bg", "--image=busybox:1.37", "--", "sleep", "3600")
    rc = client.V1ReplicationController(metadata=client.V1ObjectMeta(name="rc"), spec=client.V1ReplicationControllerSpec(
        replicas=1, template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels={"app": "rc"}), spec=client.V1PodSpec(
            termination_grace_period_seconds=0, containers=[client.V1Container(name="main", image="busybox:1.37",
                                                                               command=["sleep", "3600"])]))))
    k8s.create_namespaced_replication_controller(ns, rc)
    batch = client.BatchV1Api(k8s.api_client)
    batch.create_namespaced_job(ns, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "job"}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "containers": [
            {"name": "main", "image": "busybox:1.37", "command": ["sleep", "3600"]}]}}}})
    for d in ("bg", "fg", "or"):
        kc(lab, "rollout", "status", "-n", ns, f"deployment/{d}", "--timeout=60s")

    def pods(prefix):
        return [p for p in k8s.list_namespaced_pod(ns).items if p.metadata.name.startswith(prefix)]

    until(lambda: len(pods("rc-")) == 1 and len(pods("job-")) == 1, 30, "the rc's and the job's pods")
    # foreground: the Deployment stays (finalizer foregroundDeletion) until its ReplicaSet's pod is gone
    kc(lab, "delete", "-n", ns, "deployment/fg", "--cascade=foreground", "--wait=false")
    fg = apps.read_namespaced_deployment("fg", ns)
    assert fg.metadata.finalizers == ["foregroundDeletion"] and fg.metadata.deletion_timestamp is not None
    until(lambda: [rs for rs in owned_rs(apps, ns, "fg") if rs.metadata.deletion_timestamp
                   and rs.metadata.finalizers == ["foregroundDeletion"]], 5, "fg's ReplicaSet deleted in the foreground")
    until(lambda: "fg" not in [d.metadata.name for d in apps.list_namespaced_deployment(ns).items], 30, "fg gone")
    assert not pods("fg-") and not [rs for rs in apps.list_namespaced_replica_set(ns).items
                                    if rs.metadata.name.startswith("fg-")]  # they went first
    # background (kubectl's default): the Deployment goes now, the garbage collector takes the rest
    kc(lab, "delete", "-n", ns, "deployment/bg")
    until(lambda: all(p.metadata.deletion_timestamp for p in pods("bg-")) and not [
        rs for rs in apps.list_namespaced_replica_set(ns).items if rs.metadata.name.startswith("bg-")], 30,
        "bg's ReplicaSet gone, its pod terminating")
    kc(lab, "delete", "-n", ns, "pods", "-l", "app=bg", "--grace-period=0", "--force")  # (its grace period is 30 s)
    # orphan: the ReplicaSet stays, without its owner reference, with its pod
    kc(lab, "delete", "-n", ns, "deployment/or", "--cascade=orphan")
    (left,) = [rs for rs in apps.list_namespaced_replica_set(ns).items if rs.metadata.name.startswith("or-")]
    until(lambda: not apps.read_namespaced_replica_set(left.metadata.name, ns).metadata.owner_references, 10, "orphaned")
    assert len(pods("or-")) == 1 and pods("or-")[0].metadata.owner_references[0].name == left.metadata.name
    # the official client sends no policy: a ReplicationController and a Job orphan their pods (with the warning)
    k8s.delete_namespaced_replication_controller("rc", ns)
    until(lambda: not pods("rc-")[0].metadata.owner_references, 10, "the rc's pod orphaned")
    _, code, headers = batch.delete_namespaced_job_with_http_info("job", ns)
    assert code == 200 and "child pods are preserved by default when jobs are deleted" in headers.get("Warning", "")
    until(lambda: not pods("job-")[0].metadata.owner_references, 10, "the job's pod orphaned")
    assert pods("rc-")[0].status.phase == "Running" and not pods("job-")[0].metadata.deletion_timestamp
