"""The lab's pure parts: store, selectors, lifecycle (golden files), cgroup drivers on a fake tree, API errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from kperflab.lab import cgroups, lifecycle
from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.errors import APIError
from kperflab.lab.selectors import parse_field_selector, parse_label_selector
from kperflab.lab.store import Store
from kperflab.lab.tables import human_duration

GOLDEN = Path(__file__).parent / "golden" / "lifecycle"


def pod(name="p", ns="default", labels=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


# -- store --------------------------------------------------------------------------------------------

def test_store_versions_and_conflict():
    s = Store()
    a = s.create("v1/pods", pod())
    assert a["metadata"]["uid"] and a["metadata"]["generation"] == 1
    b = s.update("v1/pods", {**a, "spec": {"x": 1}}, spec_changed=lambda o, n: o["spec"] != n["spec"])
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    assert b["metadata"]["generation"] == 2
    with pytest.raises(APIError) as e:
        s.update("v1/pods", a)  # stale resourceVersion
    assert e.value.code == 409 and e.value.reason == "Conflict"
    with pytest.raises(APIError) as e:
        s.create("v1/pods", pod())
    assert e.value.code == 409 and e.value.reason == "AlreadyExists"


def test_store_list_pages_and_selectors():
    s = Store()
    for i in range(5):
        s.create("v1/pods", pod(f"p{i}", labels={"app": "a" if i % 2 else "b"}))
    items, rv, cont, remaining = s.list("v1/pods", "default", limit=2)
    assert [i["metadata"]["name"] for i in items] == ["p0", "p1"] and remaining == 3 and cont
    items2, *_ = s.list("v1/pods", "default", limit=10, continue_token=cont)
    assert [i["metadata"]["name"] for i in items2] == ["p2", "p3", "p4"]
    only_a, *_ = s.list("v1/pods", None, parse_label_selector("app=a"))
    assert [i["metadata"]["name"] for i in only_a] == ["p1", "p3"]


def test_watch_sends_changes_after_a_version_and_expires_old_ones(monkeypatch):
    s = Store()
    first = s.create("v1/pods", pod("a"))
    rv = first["metadata"]["resourceVersion"]
    got = []

    def consume():
        for ev in s.watch("v1/pods", "default", rv, lambda o: True, timeout=2):
            got.append((ev[0], ev[1]["metadata"]["name"]))
            if len(got) == 3:
                return

    t = threading.Thread(target=consume)
    t.start()
    b = s.create("v1/pods", pod("b"))
    s.update("v1/pods", b)
    s.remove("v1/pods", "default", "a")
    t.join(3)
    assert got == [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]
    import kperflab.lab.store as store_mod

    small = Store()
    small._log = store_mod.deque(maxlen=3)
    for i in range(6):
        small.create("v1/pods", pod(f"x{i}"))
    with pytest.raises(APIError) as e:
        small.check_version("2")
    assert e.value.code == 410


def test_watch_with_selector_sends_deleted_when_object_stops_matching():
    s = Store()
    p = s.create("v1/pods", pod("a", labels={"app": "x"}))
    pred = parse_label_selector("app=x")
    gen = s.watch("v1/pods", None, p["metadata"]["resourceVersion"], pred, timeout=1)
    p["metadata"]["labels"] = {"app": "y"}
    s.update("v1/pods", p)
    assert next(gen)[0] == "DELETED"


def test_selectors():
    obj = {"metadata": {"name": "n", "labels": {"a": "1", "b": "2"}}, "status": {"phase": "Running"}}
    assert parse_label_selector("a=1,b in (2,3),!c")(obj)
    assert not parse_label_selector("a!=1")(obj)
    assert parse_field_selector("status.phase=Running,metadata.name!=m")(obj)
    with pytest.raises(APIError):
        parse_label_selector("a in (")
    with pytest.raises(APIError):
        parse_field_selector("spec.foo=1", frozenset({"metadata.name"}))


def test_human_duration_matches_apimachinery():
    assert [human_duration(s) for s in (0, 59, 119, 121, 600, 3 * 3600 + 60, 30 * 3600, 3 * 86400 + 3600)] == \
        ["0s", "59s", "119s", "2m1s", "10m", "3h1m", "30h", "3d1h"]


# -- lifecycle (golden files) --------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_lifecycle_golden(case: Path):
    data = json.loads(case.read_text())
    init = [lifecycle.container_status({"name": f"i{i}", "image": "busybox"}, r, "id") for i, r in enumerate(data.get("init", []))]
    main = [lifecycle.container_status({"name": f"c{i}", "image": "busybox"}, r, "id") for i, r in enumerate(data["containers"])]
    got = {"phase": lifecycle.pod_phase({"restartPolicy": data["restartPolicy"]}, init, main),
           "states": [list(s["state"])[0] + ":" + (s["state"][list(s["state"])[0]].get("reason") or "") for s in main]}
    assert got == data["expect"]


def test_restart_table_and_backoff():
    assert lifecycle.should_restart("Always", 0) and lifecycle.should_restart("OnFailure", 1)
    assert not lifecycle.should_restart("OnFailure", 0) and not lifecycle.should_restart("Never", 1)
    assert [lifecycle.backoff_seconds(n) for n in (0, 1, 2, 3, 10)] == [0, 10, 20, 40, 300]


# -- cgroups on a fake tree ----------------------------------------------------------------------------

def test_cgroup_v2_driver_writes_kubelet_values(tmp_path: Path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids io\n")
    drv = cgroups.V2(tmp_path)
    rel = "kperflab/kubepods/burstable/podX/c1"
    drv.create(rel, cgroups.Limits(cpu_limit_milli=200, cpu_request_milli=100, memory_limit=64 << 20, pids_limit=100))
    d = tmp_path / rel
    assert (d / "cpu.max").read_text() == "20000 100000"
    assert (d / "cpu.weight").read_text() == str(1 + ((102 - 2) * 9999) // 262142)
    assert (d / "memory.max").read_text() == str(64 << 20)
    assert (d / "pids.max").read_text() == "100"
    assert "+memory" in (tmp_path / "kperflab" / "cgroup.subtree_control").read_text()
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 300\n")
    (d / "memory.current").write_text("1048576\n")
    (d / "memory.stat").write_text("anon 524288\nfile 262144\ninactive_file 131072\nactive_file 131072\npgfault 7\npgmajfault 1\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    st = drv.stats(rel)
    assert st["cpu_usage_ns"] == 1_500_000 and st["nr_throttled"] == 4 and st["throttled_ns"] == 300_000
    assert st["memory_usage"] - st["memory_inactive_file"] == 1048576 - 131072  # working set
    assert st["memory_rss"] == 524288 and st["memory_cache"] == 262144 and st["oom_kill"] == 1
    assert st["cpu_quota_us"] == 20000 and st["memory_limit"] == 64 << 20
    drv.remove("kperflab")
    assert not (tmp_path / "kperflab").exists()


def test_cgroup_v1_driver_on_fake_mounts(tmp_path: Path):
    mounts = {c: tmp_path / c for c in ("cpu", "cpuacct", "memory", "pids")}
    drv = cgroups.V1(mounts)
    a, b = "0123456789abcdef", "fedcba9876543210"
    pod = f"{cgroups.pods_root(a)}/pod1"
    drv.create(pod, cgroups.Limits(cpu_limit_milli=500, memory_limit=1 << 30))
    drv.create(cgroups.pods_root(b), cgroups.Limits())
    assert (tmp_path / f"cpu/{pod}/cpu.cfs_quota_us").read_text() == "50000"
    assert (tmp_path / f"cpu/{pod}/cpu.shares").read_text() == "2"
    assert (tmp_path / f"memory/{pod}/memory.limit_in_bytes").read_text() == str(1 << 30)
    (tmp_path / f"memory/{pod}/memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert drv.oom_kills(pod) == 2
    assert drv.lab_ids() == {a, b}
    assert len(drv.lab_dirs(a)) == 4
    drv.remove(cgroups.lab_root(a))  # one lab's subtree goes, the other's stays
    drv.remove_parent_if_empty()
    assert drv.lab_dirs(a) == [] and len(drv.lab_dirs(b)) == 4 and drv.lab_ids() == {b}
    drv.remove(cgroups.lab_root(b))
    drv.remove_parent_if_empty()
    assert drv.lab_ids() == set() and not (tmp_path / "cpu/kperflab").exists()


def test_cgroup_v1_mount_discovery(tmp_path: Path):
    m = tmp_path / "mounts"
    m.write_text("cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n"
                 "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")
    drv = cgroups.V1.from_proc(m)
    assert drv.mounts["cpu"] == drv.mounts["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert "pids" not in drv.mounts


# -- API errors without sockets -------------------------------------------------------------------------

@pytest.fixture
def api():
    from kperflab.lab.server import version_info

    s = Store()
    s.create("v1/namespaces", {"metadata": {"name": "default"}, "status": {"phase": "Active"}})
    return APIServer(s, "tok", version=version_info())


def call(api, method, path, body=None, token="tok", ctype="application/json", query=None, accept="application/json"):
    headers = {"content-type": ctype, "accept": accept}
    if token:
        headers["authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    return api.handle(Request(method, path, query or {}, headers, raw))


@pytest.mark.parametrize("method,path,body,token,ctype,code,reason", [
    ("GET", "/api/v1/pods", None, None, "application/json", 401, "Unauthorized"),
    ("GET", "/api/v1/pods", None, "wrong", "application/json", 401, "Unauthorized"),
    ("GET", "/api/v1/nopes", None, "tok", "application/json", 404, "NotFound"),
    ("GET", "/api/v1/namespaces/default/pods/ghost", None, "tok", "application/json", 404, "NotFound"),
    ("POST", "/api/v1/namespaces/default/pods", b"{not json", "tok", "application/json", 400, "BadRequest"),
    ("POST", "/api/v1/namespaces/default/pods", b"<xml/>", "tok", "application/xml", 415, "UnsupportedMediaType"),
    ("PUT", "/api/v1/namespaces/default/pods", {"a": 1}, "tok", "application/json", 405, "MethodNotAllowed"),
    ("POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": "Bad_Name"}, "spec": {"containers": []}},
     "tok", "application/json", 422, "Invalid"),
])
def test_status_errors(api, method, path, body, token, ctype, code, reason):
    r = call(api, method, path, body, token, ctype)
    assert r.code == code
    assert r.body["kind"] == "Status" and r.body["reason"] == reason and r.body["code"] == code


def test_invalid_pod_has_field_causes(api):
    body = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "busybox", "resources": {"limits": {"cpu": "lots"}}},
        {"name": "a", "image": ""}], "restartPolicy": "Sometimes"}}
    r = call(api, "POST", "/api/v1/namespaces/default/pods", body)
    assert r.code == 422
    fields = {c["field"] for c in r.body["details"]["causes"]}
    assert {"spec.containers[0].resources.limits[cpu]", "spec.containers[1].name", "spec.containers[1].image",
            "spec.restartPolicy"} <= fields


def test_conflict_and_already_exists(api):
    body = {"metadata": {"name": "cm"}, "data": {"a": "1"}}
    assert call(api, "POST", "/api/v1/namespaces/default/configmaps", body).code == 201
    r = call(api, "POST", "/api/v1/namespaces/default/configmaps", body)
    assert (r.code, r.body["reason"]) == (409, "AlreadyExists")
    cur = call(api, "GET", "/api/v1/namespaces/default/configmaps/cm").body
    assert call(api, "PUT", "/api/v1/namespaces/default/configmaps/cm", {**cur, "data": {"a": "2"}}).code == 200
    r = call(api, "PUT", "/api/v1/namespaces/default/configmaps/cm", {**cur, "data": {"a": "3"}})
    assert (r.code, r.body["reason"]) == (409, "Conflict")


def test_strict_field_validation(api):
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolcy": "Always"}]}}
    r = call(api, "POST", "/api/v1/namespaces/default/pods", body, query={"fieldValidation": "Strict"})
    assert r.code == 400 and 'unknown field "spec.containers[0].imagePullPolcy"' in r.body["message"]


def test_garbage_never_gives_5xx(api):
    import random

    rng = random.Random(7)
    paths = ["/", "/api", "/api/v2", "/apis/batch", "/apis/batch/v9", "/api/v1/namespaces", "/api/v1/namespaces/default/pods",
             "/api/v1/namespaces/default/pods/x/log", "/api/v1/nodes/x/proxy/stats", "/openapi/v3/apis/nope", "/%00%ff",
             "/api/v1/namespaces/default/pods/x/exec", "/apis/apps/v1/namespaces/default/daemonsets"]
    bodies = [b"", b"null", b"[]", b"42", b'"s"', b"{\"metadata\": 5}", b"{\"spec\": []}", bytes(rng.randrange(256) for _ in range(64)),
              b'{"metadata":{"name":"x"},"spec":{"containers":[{"name":"c","image":"busybox","resources":{"limits":{"cpu":[]}}}]}}']
    for path in paths:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            for body in bodies:
                for ctype in ("application/json", "application/merge-patch+json", "application/json-patch+json", "text/plain"):
                    r = call(api, method, path, body, ctype=ctype, query={"watch": "0", "limit": "x" if rng.random() < .2 else "1"})
                    assert r.code < 500, (method, path, body, ctype, r.body)


# -- node conditions -------------------------------------------------------------------------------------

def test_node_conditions_follow_the_eviction_thresholds():
    from dataclasses import replace

    from kperflab.lab.node import Conditions, Observation

    Gi, Mi = 1 << 30, 1 << 20
    ok = Observation(memory_capacity=8 * Gi, memory_working_set=1 * Gi, fs_bytes=100 * Gi, fs_available=50 * Gi,
                     fs_inodes=1000, fs_inodes_free=500, pid_max=100_000, threads=500)
    c = Conditions(transition_period=300)

    def by_type(conds):
        return {x["type"]: x for x in conds}

    t0 = by_type(c.update([], ok, 1000.0))
    assert [t0[k]["status"] for k in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")] == ["False", "False", "False", "True"]
    assert t0["MemoryPressure"]["reason"] == "KubeletHasSufficientMemory"
    low = replace(ok, memory_working_set=8 * Gi - 99 * Mi)  # memory.available 99Mi < 100Mi
    t1 = by_type(c.update(list(t0.values()), low, 1010.0))
    assert (t1["MemoryPressure"]["status"], t1["MemoryPressure"]["reason"]) == ("True", "KubeletHasInsufficientMemory")
    assert t1["MemoryPressure"]["lastTransitionTime"] == "1970-01-01T00:16:50Z"
    assert t1["DiskPressure"]["lastTransitionTime"] == t0["DiskPressure"]["lastTransitionTime"]  # no flip, no transition
    assert t1["DiskPressure"]["lastHeartbeatTime"] == "1970-01-01T00:16:50Z"
    t2 = by_type(c.update(list(t1.values()), ok, 1200.0))
    assert t2["MemoryPressure"]["status"] == "True", "pressure holds for the transition period after the last reading"
    t3 = by_type(c.update(list(t2.values()), ok, 1311.0))
    assert t3["MemoryPressure"]["status"] == "False"
    for obs in (replace(ok, fs_available=9 * Gi),              # nodefs.available < 10%
                replace(ok, fs_available=14 * Gi),             # imagefs.available < 15% (the same filesystem here)
                replace(ok, fs_inodes_free=40)):               # nodefs.inodesFree < 5%
        assert by_type(Conditions().update([], obs, 0.0))["DiskPressure"]["status"] == "True", obs
    assert by_type(Conditions().update([], replace(ok, fs_available=16 * Gi), 0.0))["DiskPressure"]["status"] == "False"
    assert by_type(Conditions().update([], replace(ok, threads=96_000), 0.0))["PIDPressure"]["reason"] == "KubeletHasInsufficientPID"


def test_write_options_hold_only_what_kube_apiserver_accepts(api):
    body = {"metadata": {"name": "cm"}, "data": {"a": "1"}}
    r = call(api, "POST", "/api/v1/namespaces/default/configmaps", body, query={"dryRun": "Some"})
    assert r.code == 422 and r.body["message"] == \
        'CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ["Some"]: supported values: "All"'
    r = call(api, "POST", "/api/v1/namespaces/default/configmaps", body, query={"fieldValidation": "strict"})
    assert r.code == 422 and 'fieldValidation: Unsupported value: "strict"' in r.body["message"]
    r = call(api, "DELETE", "/api/v1/namespaces/default/configmaps/cm", query={"propagationPolicy": "Sideways"})
    assert r.code == 422 and r.body["message"].startswith('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy')
    assert call(api, "POST", "/api/v1/namespaces/default/configmaps", body, query={"dryRun": "All"}).code == 201
    assert call(api, "GET", "/api/v1/namespaces/default/configmaps/cm").code == 404, "dryRun=All stores nothing"
