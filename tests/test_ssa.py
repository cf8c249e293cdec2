"""Field managers and server-side apply: `metadata.managedFields` on every write, `application/apply-patch+yaml`
with ownership-based merging, pruning and 409 conflicts, `force`, dryRun=All, and client-side apply's strategic merge
patches — on `APIServer.handle` directly, then with real kubectl 1.32 on the lab."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from kperflab.lab import managedfields as mf
from kperflab.lab import patch
from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.errors import APIError
from kperflab.lab.store import Store

from .conftest import needs_root

KUBECTL_UA = "kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9"
APPLY = "application/apply-patch+yaml"
CM = "/api/v1/namespaces/default/configmaps"
DEP = "/apis/apps/v1/namespaces/default/deployments"
SVC = "/api/v1/namespaces/default/services"
PODS = "/api/v1/namespaces/default/pods"


@pytest.fixture
def api():
    from kperflab.lab.server import version_info

    s = Store()
    s.create("v1/namespaces", {"metadata": {"name": "default"}, "status": {"phase": "Active"}})
    return APIServer(s, "tok", version=version_info())


def call(api, method, path, body=None, ctype="application/json", query=None, ua=KUBECTL_UA):
    headers = {"content-type": ctype, "accept": "application/json", "authorization": "Bearer tok", "user-agent": ua}
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    return api.handle(Request(method, path, query or {}, headers, raw))


def apply(api, path, body, manager="kubectl", **query):
    q = {"fieldManager": manager, **query} if manager is not None else dict(query)
    return call(api, "PATCH", path, body, APPLY, q)


def cm(name="cfg", data=None, **meta):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}, "data": data or {}}


def deployment(replicas=2, image="busybox:1.37", **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image,
                                                           "ports": [{"containerPort": 80}]}]}}, **spec}}


def entries(obj):
    return {(e["manager"], e["operation"], e.get("subresource", "")): e for e in obj["metadata"]["managedFields"]}


# -- Update entries ------------------------------------------------------------------------------------------------

def test_create_records_an_update_entry_in_fieldsv1(api):
    r = call(api, "POST", PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"run": "p"}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox",
                                                          "ports": [{"containerPort": 80}]}]}},
             query={"fieldManager": "kubectl-run"})
    assert r.code == 201, r.body
    [e] = r.body["metadata"]["managedFields"]
    assert (e["manager"], e["operation"], e["apiVersion"], e["fieldsType"]) == ("kubectl-run", "Update", "v1", "FieldsV1")
    assert e["time"].endswith("Z") and "subresource" not in e
    f = e["fieldsV1"]
    assert f["f:metadata"] == {"f:labels": {".": {}, "f:run": {}}}  # the map is new: a member itself
    assert "." not in f["f:spec"]["f:containers"], "containers is never absent from a decoded pod (no omitempty)"
    c = f["f:spec"]["f:containers"]['k:{"name":"c"}']
    assert c["."] == {} and c["f:image"] == {} and c["f:name"] == {}
    port = c["f:ports"]['k:{"containerPort":80,"protocol":"TCP"}']  # the key's default protocol counts
    assert c["f:ports"]["."] == {} and port["."] == {} and port["f:containerPort"] == {}
    assert "f:terminationMessagePath" in c, "defaulted fields belong to the writer"
    assert "f:status" not in f and "f:name" not in f["f:metadata"], "status and identity are no one's"
    assert "f:spec" in f and "." not in f["f:spec"], "a struct value is never added as a whole"


@pytest.mark.parametrize("ua,manager", [(KUBECTL_UA, "kubectl"), ("OpenAPI-Generator/37.0.0/python", "OpenAPI-Generator"),
                                        ("Python-urllib/3.11", "Python-urllib"), ("", "")])
def test_manager_defaults_to_the_user_agent_prefix(api, ua, manager):
    r = call(api, "POST", CM, cm(data={"a": "1"}), ua=ua)
    assert r.code == 201
    assert r.body["metadata"]["managedFields"][0]["manager"] == manager


def test_updates_take_fields_from_other_managers_and_keep_their_time(api):
    call(api, "POST", CM, cm(data={"a": "1", "b": "2"}), query={"fieldManager": "kubectl-create"})
    r = call(api, "PATCH", f"{CM}/cfg", {"data": {"a": "9"}}, "application/merge-patch+json",
             query={"fieldManager": "kubectl-edit"})
    assert r.code == 200
    es = entries(r.body)
    assert es["kubectl-create", "Update", ""]["fieldsV1"] == {"f:data": {".": {}, "f:b": {}}}
    assert es["kubectl-edit", "Update", ""]["fieldsV1"] == {"f:data": {"f:a": {}}}
    before = r.body["metadata"]["managedFields"]
    # a PUT that changes nothing takes nothing: no entry moves, no time changes
    r = call(api, "PUT", f"{CM}/cfg", {**r.body, "metadata": {**r.body["metadata"], "managedFields": None}},
             query={"fieldManager": "other"})
    assert r.code == 200 and r.body["metadata"]["managedFields"] == before
    # removing a field removes it from every manager; `[{}]` clears managedFields altogether
    r = call(api, "PATCH", f"{CM}/cfg", {"data": {"b": None}}, "application/merge-patch+json")
    assert "f:b" not in json.dumps(r.body["metadata"]["managedFields"])
    r = call(api, "PATCH", f"{CM}/cfg", {"metadata": {"managedFields": [{}]}}, "application/merge-patch+json")
    assert r.code == 200 and "managedFields" not in r.body["metadata"]


def test_status_writes_are_a_subresource_entry_and_main_writes_never_own_status(api):
    call(api, "POST", PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    r = call(api, "PATCH", f"{PODS}/p/status", {"status": {"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}},
             "application/merge-patch+json", query={"fieldManager": "kubelet"})
    assert r.code == 200, r.body
    e = entries(r.body)["kubelet", "Update", "status"]
    assert e["fieldsV1"] == {"f:status": {"f:podIP": {}, "f:podIPs": {".": {}, 'k:{"ip":"10.0.0.5"}': {".": {}, "f:ip": {}}}}}
    assert "f:status" not in json.dumps(entries(r.body)["kubectl", "Update", ""]["fieldsV1"])


def test_a_scale_write_owns_replicas_through_the_scale_subresource():
    live = {**deployment(), "metadata": {"name": "web", "uid": "u"}}
    live["metadata"]["managedFields"] = mf.apply("Deployment", "apps/v1", None, deployment(), "kubectl", False,
                                                 "2026-01-01T00:00:00Z")[0]["metadata"]["managedFields"]
    scaled = json.loads(json.dumps(live))
    scaled["spec"]["replicas"] = 5
    fields = mf.update("Deployment", "apps/v1", live, scaled, "kubectl", "2026-01-01T00:00:09Z", subresource="scale")
    e = [e for e in fields if e.get("subresource") == "scale"][0]
    assert (e["manager"], e["operation"], e["apiVersion"]) == ("kubectl", "Update", "apps/v1")
    assert e["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    scaled["metadata"]["managedFields"] = fields
    with pytest.raises(APIError) as exc:
        mf.apply("Deployment", "apps/v1", scaled, deployment(replicas=2), "kubectl", False, "2026-01-01T00:00:10Z")
    assert exc.value.message == ('Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" '
                                 'using apps/v1: .spec.replicas')


def test_too_many_update_managers_are_merged_into_ancient_changes():
    m = mf.Managed()
    for i in range(12):
        ident = (f"m{i:02d}", "Update", "v1", "")
        m.sets[ident], m.versions[ident], m.times[ident] = {("f:data", f"f:k{i}")}, "v1", f"2026-01-01T00:00:{i:02d}Z"
    m.cap()
    names = sorted(i[0] for i in m.sets)
    assert len(names) == 10 and "ancient-changes" in names and "m00" not in names and "m11" in names
    assert m.sets["ancient-changes", "Update", "v1", ""] == {("f:data", "f:k0"), ("f:data", "f:k1"), ("f:data", "f:k2")}


# -- server-side apply -----------------------------------------------------------------------------------------------

def test_apply_creates_then_merges_by_ownership_and_prunes(api):
    r = apply(api, f"{CM}/cfg", cm(data={"a": "1", "b": "2"}, labels={"app": "x"}))
    assert r.code == 201, r.body
    [e] = r.body["metadata"]["managedFields"]
    assert (e["manager"], e["operation"], e["apiVersion"]) == ("kubectl", "Apply", "v1")
    assert e["fieldsV1"] == {"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}
    # someone else adds a key: the applier leaves it alone
    call(api, "PATCH", f"{CM}/cfg", {"data": {"c": "3"}}, "application/merge-patch+json",
         query={"fieldManager": "kubectl-patch"})
    r = apply(api, f"{CM}/cfg", cm(data={"a": "1"}))  # b and the label are no longer applied: pruned
    assert r.code == 200, r.body
    assert r.body["data"] == {"a": "1", "c": "3"} and "labels" not in r.body["metadata"]
    assert entries(r.body)["kubectl", "Apply", ""]["fieldsV1"] == {"f:data": {"f:a": {}}}
    # the same apply again: nothing written, resourceVersion unchanged
    rv = r.body["metadata"]["resourceVersion"]
    r = apply(api, f"{CM}/cfg", cm(data={"a": "1"}))
    assert r.code == 200 and r.body["metadata"]["resourceVersion"] == rv


def test_a_field_two_appliers_share_stays_until_both_drop_it(api):
    apply(api, f"{CM}/cfg", cm(data={"a": "1", "b": "2"}), manager="one")
    r = apply(api, f"{CM}/cfg", cm(data={"a": "1"}), manager="two")  # same value: shared, no conflict
    assert r.code == 200, r.body
    r = apply(api, f"{CM}/cfg", cm(data={"b": "2"}), manager="one")
    assert r.body["data"] == {"a": "1", "b": "2"}, "a is still two's"
    r = apply(api, f"{CM}/cfg", cm(data={}), manager="two")
    assert r.body["data"] == {"b": "2"}


def test_conflict_is_a_409_with_the_field_list_and_force_takes_ownership(api):
    apply(api, f"{DEP}/web", deployment(replicas=2))
    r = call(api, "PATCH", f"{DEP}/web", {"spec": {"replicas": 5}}, "application/merge-patch+json",
             query={"fieldManager": "kubectl-client-side-apply"})
    assert r.code == 200
    r = apply(api, f"{DEP}/web", deployment(replicas=3))
    assert r.code == 409
    assert r.body["reason"] == "Conflict" and r.body["status"] == "Failure"
    assert r.body["message"] == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using '
                                 'apps/v1: .spec.replicas')
    assert r.body["details"] == {"causes": [{"reason": "FieldManagerConflict", "field": ".spec.replicas",
                                             "message": 'conflict with "kubectl-client-side-apply" using apps/v1'}]}
    assert call(api, "GET", f"{DEP}/web").body["spec"]["replicas"] == 5, "a conflict changes nothing"
    r = apply(api, f"{DEP}/web", deployment(replicas=3), force="true")
    assert r.code == 200 and r.body["spec"]["replicas"] == 3
    es = entries(r.body)
    assert ("kubectl-client-side-apply", "Update", "") not in es, "it lost its only field"
    assert "f:replicas" in es["kubectl", "Apply", ""]["fieldsV1"]["f:spec"]


def test_several_conflicts_are_listed_per_manager(api):
    apply(api, f"{DEP}/web", deployment())
    assert apply(api, f"{DEP}/web", deployment(), manager="helm").code == 200  # same values: shared ownership
    call(api, "PATCH", f"{DEP}/web", {"metadata": {"labels": {"team": "a"}}}, "application/merge-patch+json",
         query={"fieldManager": "kubectl-label"})
    body = deployment(replicas=1, image="busybox:1.35")
    body["metadata"]["labels"] = {"team": "b"}
    r = apply(api, f"{DEP}/web", body, manager="ci")
    assert r.code == 409
    assert r.body["message"] == (
        'Apply failed with 5 conflicts: conflicts with "helm":\n'
        '- .spec.replicas\n- .spec.template.spec.containers[name="c"].image\n'
        'conflicts with "kubectl":\n'
        '- .spec.replicas\n- .spec.template.spec.containers[name="c"].image\n'
        'conflicts with "kubectl-label" using apps/v1:\n- .metadata.labels.team')
    assert [c["message"] for c in r.body["details"]["causes"]] == ['conflict with "helm"'] * 2 + [
        'conflict with "kubectl"'] * 2 + ['conflict with "kubectl-label" using apps/v1']


def test_removing_a_container_field_from_the_manifest_removes_it(api):
    d = deployment()
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    apply(api, f"{DEP}/web", d)
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "B", "value": "2"}]
    r = apply(api, f"{DEP}/web", d)
    assert r.code == 200
    assert r.body["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "B", "value": "2"}]
    del d["spec"]["replicas"]  # no one owns replicas any more: it is defaulted again
    r = apply(api, f"{DEP}/web", d)
    assert r.body["spec"]["replicas"] == 1


@pytest.mark.parametrize("query,body,code,message", [
    ({}, cm(), 422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'),
    ({"fieldManager": "x" * 129}, cm(), 422,
     'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Too long: may not be more than 128 bytes'),
    ({"fieldManager": "k"}, {**cm(), "kind": "Secret"}, 400, "invalid object type: /v1, Kind=Secret"),
    ({"fieldManager": "k"}, {**cm(), "apiVersion": "apps/v1"}, 400, "invalid object type: apps/v1, Kind=ConfigMap"),
    ({"fieldManager": "k"}, cm(name="other"), 400, "the name of the object (other) does not match the name on the URL (cfg)"),
    ({"fieldManager": "k"}, cm(managedFields=[]), 400, "metadata.managedFields must be nil"),
    ({"fieldManager": "k", "force": "maybe"}, cm(), 400, 'strconv.ParseBool: parsing "maybe": invalid syntax'),
    ({"fieldManager": "k"}, [1], 400, None),
])
def test_apply_refuses_what_kube_apiserver_refuses(api, query, body, code, message):
    r = call(api, "PATCH", f"{CM}/cfg", body, APPLY, query)
    assert r.code == code, r.body
    if message:
        assert r.body["message"] == message
    assert call(api, "GET", f"{CM}/cfg").code == 404


def test_force_is_only_for_apply_and_patch_media_types_are_listed(api):
    call(api, "POST", CM, cm())
    r = call(api, "PATCH", f"{CM}/cfg", {"data": {"a": "1"}}, "application/merge-patch+json", {"force": "true"})
    assert r.code == 422
    assert r.body["message"] == 'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch'
    r = call(api, "PATCH", f"{CM}/cfg", b"a: 1", "application/yaml")
    assert r.code == 415 and r.body["message"].endswith(", ".join(patch.MEDIA)) and "apply-patch+yaml" in r.body["message"]


def test_apply_accepts_yaml_and_the_status_subresource(api):
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: '1'\n"
    assert call(api, "PATCH", f"{CM}/cfg", body, APPLY, {"fieldManager": "k"}).code == 201
    call(api, "POST", PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                             "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    r = apply(api, f"{PODS}/p/status", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                        "status": {"conditions": [{"type": "Demo", "status": "True"}]}}, manager="ctl")
    assert r.code == 200, r.body
    assert r.body["status"]["conditions"] == [{"type": "Demo", "status": "True"}]
    e = entries(r.body)["ctl", "Apply", "status"]
    assert e["fieldsV1"] == {"f:status": {"f:conditions": {'k:{"type":"Demo"}': {".": {}, "f:status": {}, "f:type": {}}}}}
    assert apply(api, f"{PODS}/ghost/status", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ghost"}}).code == 404


def test_first_apply_to_an_untracked_object_makes_before_first_apply(api):
    api.store.create("v1/configmaps", {**cm(data={"a": "1", "b": "2"}), "metadata": {"name": "cfg", "namespace": "default"}})
    r = apply(api, f"{CM}/cfg", cm(data={"a": "2"}))
    assert r.code == 409 and 'conflict with "before-first-apply" using v1: .data.a' in r.body["message"]
    r = apply(api, f"{CM}/cfg", cm(data={"a": "2"}), force="true")
    assert entries(r.body)["before-first-apply", "Update", ""]["fieldsV1"] == {"f:data": {".": {}, "f:b": {}}}


def test_kubectl_server_side_apply_upgrades_client_side_apply(api):
    last = cm(data={"a": "1"})
    body = {**last, "metadata": {"name": "cfg", "annotations": {mf.LAST_APPLIED: json.dumps(last)}}}
    call(api, "POST", CM, body, query={"fieldManager": "kubectl-client-side-apply"})
    # fields client-side apply set and that still hold its value are not conflicts for manager `kubectl`
    r = apply(api, f"{CM}/cfg", cm(data={"a": "2"}))
    assert r.code == 200, r.body
    assert r.body["metadata"]["annotations"][mf.LAST_APPLIED] == mf.go_json(cm(data={"a": "2"})) + "\n"
    # but not for another manager, nor for a field someone changed since
    assert apply(api, f"{CM}/cfg", cm(data={"a": "3"}), manager="ci").code == 409


# -- dryRun=All -------------------------------------------------------------------------------------------------------

def test_dry_run_validates_and_answers_but_stores_nothing(api):
    r = call(api, "POST", CM, cm(data={"a": "1"}), query={"dryRun": "All"})
    assert r.code == 201 and r.body["metadata"]["uid"] != "00000000-0000-0000-0000-000000000000"
    assert r.body["metadata"]["managedFields"] and "resourceVersion" not in r.body["metadata"]
    assert call(api, "GET", f"{CM}/cfg").code == 404
    r = apply(api, f"{CM}/cfg", cm(data={"a": "1"}), dryRun="All")
    assert r.code == 201 and call(api, "GET", f"{CM}/cfg").code == 404
    live = call(api, "POST", CM, cm(data={"a": "1"})).body
    assert call(api, "POST", CM, cm(), query={"dryRun": "All"}).body["reason"] == "AlreadyExists"
    rv = live["metadata"]["resourceVersion"]
    for r in (call(api, "PUT", f"{CM}/cfg", {**live, "data": {"a": "2"}}, query={"dryRun": "All"}),
              call(api, "PATCH", f"{CM}/cfg", {"data": {"a": "2"}}, "application/merge-patch+json", {"dryRun": "All"}),
              apply(api, f"{CM}/cfg", cm(data={"a": "2"}), dryRun="All", force="true")):
        assert r.code == 200 and r.body["data"] == {"a": "2"}, r.body
        assert r.body["metadata"]["uid"] == live["metadata"]["uid"] and r.body["metadata"]["resourceVersion"] == rv
    assert call(api, "GET", f"{CM}/cfg").body == live
    r = call(api, "PUT", f"{CM}/cfg", {**live, "metadata": {**live["metadata"], "resourceVersion": "1"}},
             query={"dryRun": "All"})
    assert r.code == 409 and r.body["reason"] == "Conflict"
    assert call(api, "POST", CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}},
                query={"dryRun": "All"}).code == 422


# -- client-side apply: what kubectl's three-way strategic merge patch needs -------------------------------------------

def test_strategic_merge_patch_merges_service_ports_by_port_and_finalizers_as_a_set():
    svc = {"metadata": {"finalizers": ["a"]},
           "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}
    out = patch.merge(svc, {"metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]},
                            "spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "$patch": "delete"}]}},
                      strategic=True)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090}] and out["metadata"]["finalizers"] == ["b"]
    dep = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    out = patch.merge(dep, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, strategic=True)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_fieldsv1_round_trips_in_upstream_order():
    paths = {("f:metadata", "f:finalizers", 'v:"b"'), ("f:metadata", "f:finalizers", 'v:"a"'),
             ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}'), ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}',
                                                                       "f:port"), ("f:spec", "f:type")}
    tree = mf.encode_fields(paths)
    assert list(tree["f:metadata"]["f:finalizers"]) == ['v:"a"', 'v:"b"']
    assert mf.decode_fields(tree) == paths
    assert mf.path_string(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:port")) == '.spec.ports[port=80,protocol="TCP"].port'
    assert mf.path_string(("f:metadata", "f:finalizers", 'v:"a"')) == '.metadata.finalizers[="a"]'


# -- real kubectl on the lab ------------------------------------------------------------------------------------------

KUBECTL = shutil.which("kubectl")


def on_lab(f):
    return pytest.mark.lab(needs_root(pytest.mark.skipif(not KUBECTL, reason="kubectl not installed")(f)))


def kubectl(lab, *args, stdin=None, check=True):
    r = subprocess.run([KUBECTL, "--kubeconfig", str(lab["kubeconfig"]), *args], input=stdin, capture_output=True,
                       text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def yaml_of(*docs):
    return "---\n".join(yaml.safe_dump(d) for d in docs)


@on_lab
def test_kubectl_server_side_apply_on_the_lab(lab, namespace):
    ns = ["-n", namespace]
    cmap = cm("ssa", data={"a": "1", "b": "2"})
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ssa"},
           "spec": {"selector": {"app": "ssa"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ssa"},
           "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "c", "image": "busybox:1.37", "command": ["true"]}]}}}}
    out = kubectl(lab, "apply", "--server-side", *ns, "-f", "-", stdin=yaml_of(cmap, svc, job)).stdout
    assert "configmap/ssa serverside-applied" in out and "service/ssa serverside-applied" in out
    assert "job.batch/ssa serverside-applied" in out
    for kind in ("configmap", "service", "job"):
        got = json.loads(kubectl(lab, "get", kind, "ssa", *ns, "-o", "json", "--show-managed-fields").stdout)
        mine = [e for e in got["metadata"]["managedFields"] if e["manager"] == "kubectl"]
        assert mine and mine[0]["operation"] == "Apply", got["metadata"]["managedFields"]
    svc_fields = json.loads(kubectl(lab, "get", "service", "ssa", *ns, "-o", "json", "--show-managed-fields").stdout)
    assert 'k:{"port":80,"protocol":"TCP"}' in svc_fields["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"]
    assert "managedFields" not in kubectl(lab, "get", "configmap", "ssa", *ns, "-o", "yaml").stdout

    # an edit-style update by another manager, then a conflicting apply: 409 with the field list, then forced
    kubectl(lab, "patch", "configmap", "ssa", *ns, "--type", "merge", "-p", '{"data":{"a":"edited"}}')
    r = kubectl(lab, "apply", "--server-side", *ns, "-f", "-", stdin=yaml_of(cm("ssa", data={"a": "3", "b": "2"})),
                check=False)
    assert r.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.a' in r.stderr
    kubectl(lab, "apply", "--server-side", "--force-conflicts", *ns, "-f", "-",
            stdin=yaml_of(cm("ssa", data={"a": "3"})))  # and b is dropped from the manifest
    got = json.loads(kubectl(lab, "get", "configmap", "ssa", *ns, "-o", "json").stdout)
    assert got["data"] == {"a": "3"}

    # dry run on the server: answered, nothing stored
    kubectl(lab, "apply", "--server-side", "--dry-run=server", *ns, "-f", "-", stdin=yaml_of(cm("dry", data={"x": "1"})))
    kubectl(lab, "create", "configmap", "dry2", "--from-literal=x=1", "--dry-run=server", *ns)
    assert kubectl(lab, "get", "configmap", "dry", "dry2", *ns, check=False).returncode != 0


@on_lab
def test_kubectl_client_side_apply_create_update_prune(lab, namespace):
    ns = ["-n", namespace]
    first = cm("csa", data={"a": "1", "b": "2"}, labels={"tier": "x"})
    assert "configmap/csa created" in kubectl(lab, "apply", *ns, "-f", "-", stdin=yaml_of(first)).stdout
    got = json.loads(kubectl(lab, "get", "configmap", "csa", *ns, "-o", "json", "--show-managed-fields").stdout)
    assert json.loads(got["metadata"]["annotations"][mf.LAST_APPLIED])["data"] == {"a": "1", "b": "2"}
    assert got["metadata"]["managedFields"][0]["manager"] == "kubectl-client-side-apply"
    # someone else adds a key; the next apply changes a, drops b and the label, and leaves c alone (three-way merge)
    kubectl(lab, "patch", "configmap", "csa", *ns, "-p", '{"data":{"c":"3"}}')
    second = cm("csa", data={"a": "10"})
    assert "configmap/csa configured" in kubectl(lab, "apply", *ns, "-f", "-", stdin=yaml_of(second)).stdout
    got = json.loads(kubectl(lab, "get", "configmap", "csa", *ns, "-o", "json", "--show-managed-fields").stdout)
    assert got["data"] == {"a": "10", "c": "3"} and "labels" not in got["metadata"]
    assert {e["manager"] for e in got["metadata"]["managedFields"]} == {"kubectl-client-side-apply", "kubectl-patch"}
    assert "configmap/csa unchanged" in kubectl(lab, "apply", *ns, "-f", "-", stdin=yaml_of(second)).stdout
