"""CronJobs, PodDisruptionBudgets and evictions, PriorityClasses, ResourceQuotas and LimitRanges, Ingresses — as a
Kubernetes user meets them: unit tests on `APIServer.handle` and the controllers with a fake clock (a CronJob's
minutes pass in microseconds), and a few real-kubectl lab tests (`kubectl create cronjob|quota|priorityclass|pdb|
ingress`, a budget blocking an eviction, a quota refusing a pod)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime

import pytest

from kperflab.lab import cronjobs, quota, tables
from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.controllers import Controllers
from kperflab.lab.store import Store, rfc3339

from .conftest import needs_root

KUBECTL = shutil.which("kubectl")
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

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


def call(api, method, path, body=None, query=None):
    headers = {"content-type": "application/json", "accept": "application/json", "authorization": "Bearer tok"}
    raw = json.dumps(body).encode() if body is not None else b""
    return api.handle(Request(method, path, query or {}, headers, raw))


def pod(name, labels=None, **spec):
    c = {"name": "c", "image": "busybox:1.37", **spec.pop("container", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [c], **spec}}


def events(store, reason=None):
    items, *_ = store.list("v1/events")
    return [e["message"] for e in items if reason is None or e["reason"] == reason]


# -- the cron schedule --------------------------------------------------------------------------------------------

def _utc(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("spec,after,want", [
    ("*/15 * * * *", "2026-01-01T10:07:00", "2026-01-01T10:15:00"),
    ("@hourly", "2026-01-01T10:00:00", "2026-01-01T11:00:00"),
    ("@daily", "2026-01-01T10:00:00", "2026-01-02T00:00:00"),
    ("0 9 * * MON-FRI", "2026-01-02T09:00:00", "2026-01-05T09:00:00"),  # Friday → Monday
    ("0 0 13 * 5", "2026-02-01T00:00:00", "2026-02-06T00:00:00"),  # dom OR dow when both are restricted
    ("30 2 * feb *", "2026-03-01T00:00:00", "2027-02-01T02:30:00"),
    ("@every 90m", "2026-01-01T10:00:00", "2026-01-01T11:30:00"),
])
def test_schedule_next_as_robfig_cron(spec, after, want):
    assert cronjobs.parse(spec).next(_utc(after)) == _utc(want)


def test_schedule_in_a_time_zone():
    sched = cronjobs.parse("0 9 * * *", cronjobs.load_location("Asia/Tokyo"))
    assert sched.next(_utc("2026-01-01T00:30:00")).astimezone(UTC) == _utc("2026-01-02T00:00:00")
    assert cronjobs.parse("CRON_TZ=Asia/Tokyo 0 9 * * *").next(_utc("2026-01-01T00:30:00")) == sched.next(_utc("2026-01-01T00:30:00"))


@pytest.mark.parametrize("spec,message", [
    ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
    ("61 * * * *", "end of range (61) above maximum (59): 61"),
    ("* * * * 7", "end of range (7) above maximum (6): 7"),
    ("5-2 * * * *", "beginning of range (5) beyond end of range (2): 5-2"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
])
def test_schedule_errors_in_robfig_words(spec, message):
    with pytest.raises(cronjobs.CronError, match=None) as exc:
        cronjobs.parse(spec)
    assert str(exc.value) == message


# -- CronJob API and controller -----------------------------------------------------------------------------------

def cronjob(name="tick", schedule="*/5 * * * *", **spec):
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox:1.37"}]}}}}, **spec}}


def test_cronjob_defaults_and_422s(cluster):
    store, api, _, _ = cluster
    r = call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs", cronjob())
    assert r.code == 201, r.body
    spec = r.body["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"], spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) \
        == ("Allow", False, 3, 1)
    assert r.body["status"] == {}
    bad = cronjob("bad", "61 * * * *", concurrencyPolicy="Sometimes", timeZone="Mars/Olympus")
    r = call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs", bad)
    assert r.code == 422
    causes = {c["field"]: c["message"] for c in r.body["details"]["causes"]}
    assert causes["spec.schedule"] == 'Invalid value: "61 * * * *": end of range (61) above maximum (59): 61'
    assert causes["spec.timeZone"] == 'Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'
    assert causes["spec.concurrencyPolicy"] == 'Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"'
    r = call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs", cronjob("tz", "CRON_TZ=UTC * * * * *"))
    assert r.code == 422 and "cannot use TZ or CRON_TZ in schedule, use timeZone field instead" in r.body["message"]
    always = cronjob("always")
    always["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    r = call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs", always)
    assert r.code == 422 and r.body["details"]["causes"][0]["field"] == "spec.jobTemplate.spec.template.spec.restartPolicy"
    r = call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs", cronjob("x" * 53))
    assert r.code == 422 and "must be no more than 52 characters" in r.body["message"]


def _jobs(store):
    items, *_ = store.list("batch/v1/jobs", "default")
    return sorted(items, key=lambda j: j["metadata"]["name"])


def _finish(store, job, how="Complete"):
    job["status"] = {**job.get("status", {}), "conditions": [{"type": how, "status": "True"}],
                     "startTime": job.get("status", {}).get("startTime") or rfc3339(store.clock()),
                     **({"completionTime": rfc3339(store.clock())} if how == "Complete" else {})}
    store.update("batch/v1/jobs", job)


def test_cronjob_controller_creates_jobs_named_by_scheduled_minute(cluster):
    store, api, ctl, clock = cluster
    assert call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs", cronjob()).code == 201
    ctl.cronjobs.reconcile()
    assert _jobs(store) == []  # created at 00:00:00: the first activation is 00:05
    clock.t = T0 + 5 * 60 + 3
    ctl.cronjobs.reconcile()
    jobs = _jobs(store)
    assert [j["metadata"]["name"] for j in jobs] == [f"tick-{int(T0 + 300) // 60}"]
    job = jobs[0]
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert job["metadata"]["annotations"][cronjobs.SCHEDULED_ANNOTATION] == "2026-01-01T00:05:00Z"
    assert job["spec"]["backoffLimit"] == 6 and "batch.kubernetes.io/controller-uid" in job["spec"]["selector"]["matchLabels"]
    cj = store.get("batch/v1/cronjobs", "default", "tick")
    assert cj["status"]["lastScheduleTime"] == "2026-01-01T00:05:00Z"
    assert [a["name"] for a in cj["status"]["active"]] == [job["metadata"]["name"]]
    assert events(store, "SuccessfulCreate") == [f"Created job {job['metadata']['name']}"]
    ctl.cronjobs.reconcile()  # same minute: nothing new
    assert len(_jobs(store)) == 1
    clock.t += 60
    _finish(store, job)
    ctl.cronjobs.reconcile()
    cj = store.get("batch/v1/cronjobs", "default", "tick")
    assert "active" not in cj["status"] and cj["status"]["lastSuccessfulTime"] == rfc3339(clock.t)
    assert events(store, "SawCompletedJob") == [f"Saw completed job: {job['metadata']['name']}, condition: Complete"]
    row = tables.cronjobs(cj, clock.t)
    assert row[:6] == ["tick", "*/5 * * * *", "<none>", "False", 0, "63s"]


def test_cronjob_concurrency_forbid_replace_and_suspend(cluster):
    store, api, ctl, clock = cluster
    for name, policy in (("forbid", "Forbid"), ("replace", "Replace")):
        assert call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs",
                    cronjob(name, "* * * * *", concurrencyPolicy=policy)).code == 201
    assert call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs", cronjob("off", "* * * * *", suspend=True)).code == 201
    clock.t += 61
    ctl.cronjobs.reconcile()
    assert {j["metadata"]["name"].rsplit("-", 1)[0] for j in _jobs(store)} == {"forbid", "replace"}
    clock.t += 60
    ctl.cronjobs.reconcile()
    ctl.cronjobs.reconcile()  # a second look in the same minute says nothing new
    names = [j["metadata"]["name"] for j in _jobs(store)]
    assert sum(n.startswith("forbid-") for n in names) == 1  # the first still runs
    assert events(store, "JobAlreadyActive") == [
        "Not starting job because prior execution is running and concurrency policy is Forbid"]
    said, *_ = store.list("v1/events", "default", lambda e: e["reason"] == "JobAlreadyActive")
    assert said[0]["count"] == 1
    replaced = [n for n in names if n.startswith("replace-")]
    assert replaced == [f"replace-{int(T0 + 120) // 60}"]  # the old one deleted, the new one made
    assert events(store, "SuccessfulDelete") == [f"Deleted job replace-{int(T0 + 60) // 60}"]


def test_cronjob_starting_deadline_and_history_limits(cluster):
    store, api, ctl, clock = cluster
    assert call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs",
                cronjob("late", "0 * * * *", startingDeadlineSeconds=30)).code == 201
    clock.t += 3600 + 45  # the controller was away past the deadline
    ctl.cronjobs.reconcile()
    assert _jobs(store) == []
    assert call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs",
                cronjob("hist", "* * * * *", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0)).code == 201
    for _ in range(3):
        clock.t += 60
        ctl.cronjobs.reconcile()
        for j in _jobs(store):
            if j["metadata"]["name"].startswith("hist-") and not j.get("status", {}).get("conditions"):
                _finish(store, j)
                clock.t += 1
    ctl.cronjobs.reconcile()
    kept = [j["metadata"]["name"] for j in _jobs(store) if j["metadata"]["name"].startswith("hist-")]
    assert len(kept) == 1
    assert len(events(store, "SuccessfulDelete")) == 2


def test_create_job_from_cronjob_is_unexpected_but_kept(cluster):
    store, api, ctl, clock = cluster
    cj = call(api, "POST", "/apis/batch/v1/namespaces/default/cronjobs", cronjob()).body
    manual = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": "by-hand", "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick", "uid": cj["metadata"]["uid"],
                             "controller": True}]}, "spec": cj["spec"]["jobTemplate"]["spec"]}
    assert call(api, "POST", "/apis/batch/v1/namespaces/default/jobs", manual).code == 201
    ctl.cronjobs.reconcile()
    assert events(store, "UnexpectedJob") == ["Saw a job that the controller did not create or forgot: by-hand"]


# -- PodDisruptionBudget and Eviction -------------------------------------------------------------------------------

def _run_pods(store, ready=True):
    pods, *_ = store.list("v1/pods", "default")
    for p in pods:
        p["spec"]["nodeName"] = "node"
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
        store.update("v1/pods", p)


def test_pdb_validation(cluster):
    _, api, _, _ = cluster
    body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b"},
            "spec": {"minAvailable": "120%", "maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
    r = call(api, "POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets", body)
    assert r.code == 422
    msgs = [c["message"] for c in r.body["details"]["causes"]]
    assert any("minAvailable and maxUnavailable cannot be both set" in m for m in msgs)
    assert 'Invalid value: "120%": must not be greater than 100%' in msgs


def test_pdb_status_and_eviction_blocked_then_allowed(cluster):
    store, api, ctl, _ = cluster
    for i in range(2):
        assert call(api, "POST", "/api/v1/namespaces/default/pods", pod(f"web-{i}", {"app": "web"})).code == 201
    _run_pods(store)
    body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}
    assert call(api, "POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets", body).code == 201
    ev = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-0", "namespace": "default"}}
    r = call(api, "POST", "/api/v1/namespaces/default/pods/web-0/eviction", ev)
    assert r.code == 429 and r.body["details"] == {"causes": [{"reason": "DisruptionBudget", "message": (
        "The disruption budget web is still being processed by the server.")}], "retryAfterSeconds": 10}
    assert r.headers["Retry-After"] == "10"
    ctl.disruption.reconcile()
    pdb = store.get("policy/v1/poddisruptionbudgets", "default", "web")
    st = pdb["status"]
    assert (st["currentHealthy"], st["desiredHealthy"], st["expectedPods"], st["disruptionsAllowed"]) == (2, 2, 2, 0)
    assert st["conditions"][0]["type"] == "DisruptionAllowed" and st["conditions"][0]["reason"] == "InsufficientPods"
    r = call(api, "POST", "/api/v1/namespaces/default/pods/web-0/eviction", ev)
    assert r.code == 429 and r.body["reason"] == "TooManyRequests"
    assert r.body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert r.body["details"]["causes"] == [{"reason": "DisruptionBudget", "message":
                                            "The disruption budget web needs 2 healthy pods and has 2 currently"}]
    assert store.try_get("v1/pods", "default", "web-0")["metadata"].get("deletionTimestamp") is None
    pdb["spec"]["minAvailable"] = 1
    assert call(api, "PUT", "/apis/policy/v1/namespaces/default/poddisruptionbudgets/web", pdb).code == 200
    ctl.disruption.reconcile()
    st = store.get("policy/v1/poddisruptionbudgets", "default", "web")["status"]
    assert st["disruptionsAllowed"] == 1 and st["conditions"][0]["reason"] == "SufficientPods"
    r = call(api, "POST", "/api/v1/namespaces/default/pods/web-0/eviction", ev)
    assert r.code == 201 and r.body["status"] == "Success"
    evicted = store.get("v1/pods", "default", "web-0")
    assert evicted["metadata"].get("deletionTimestamp")
    target = [c for c in evicted["status"]["conditions"] if c["type"] == "DisruptionTarget"]
    assert target and (target[0]["reason"], target[0]["message"]) == ("EvictionByEvictionAPI", "Eviction API: evicting")
    st = store.get("policy/v1/poddisruptionbudgets", "default", "web")["status"]
    assert st["disruptionsAllowed"] == 0 and "web-0" in st["disruptedPods"]
    assert st["conditions"][0]["reason"] == "InsufficientPods"  # spent: the condition says so at once
    r = call(api, "POST", "/api/v1/namespaces/default/pods/web-1/eviction",
             {**ev, "metadata": {"name": "web-1"}})
    assert r.code == 429  # the budget was spent by the first eviction
    assert tables.pdbs(store.get("policy/v1/poddisruptionbudgets", "default", "web"), T0)[:4] == ["web", "1", "N/A", 0]


def test_pdb_max_unavailable_counts_the_controllers_scale(cluster):
    store, api, ctl, clock = cluster
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
               "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}}
    assert call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", dep).code == 201
    for _ in range(5):
        ctl.reconcile()
        _run_pods(store)
        clock.t += 1
    body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
            "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}}
    assert call(api, "POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets", body).code == 201
    ctl.disruption.reconcile()
    st = store.get("policy/v1/poddisruptionbudgets", "default", "web")["status"]
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == (3, 1, 3, 2)


def test_eviction_of_a_pod_without_budget_and_of_a_missing_pod(cluster):
    store, api, _, _ = cluster
    assert call(api, "POST", "/api/v1/namespaces/default/pods", pod("free")).code == 201
    _run_pods(store)
    ev = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "free"}}
    assert call(api, "POST", "/api/v1/namespaces/default/pods/free/eviction", ev).code == 201
    assert call(api, "POST", "/api/v1/namespaces/default/pods/gone/eviction", {**ev, "metadata": {"name": "gone"}}).code == 404
    r = call(api, "POST", "/api/v1/namespaces/default/pods/free/eviction", {**ev, "metadata": {"name": "other"}})
    assert r.code == 400 and r.body["message"] == "name in URL does not match name in Eviction object"


# -- PriorityClass ---------------------------------------------------------------------------------------------------

def test_priority_classes_builtin_validation_and_admission(cluster):
    store, api, _, _ = cluster
    r = call(api, "GET", "/apis/scheduling.k8s.io/v1/priorityclasses/system-node-critical")
    assert r.code == 200 and r.body["value"] == 2000001000
    assert store.get("scheduling.k8s.io/v1/priorityclasses", "", "system-cluster-critical")["value"] == 2000000000
    pcs = "/apis/scheduling.k8s.io/v1/priorityclasses"
    r = call(api, "POST", pcs, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                                "metadata": {"name": "huge"}, "value": 1_000_000_001})
    assert r.code == 422 and "maximum allowed value of a user defined priority is 1000000000" in r.body["message"]
    r = call(api, "POST", pcs, {"metadata": {"name": "system-mine"}, "value": 5})
    assert r.code == 422 and "priority class names with 'system-' prefix are reserved" in r.body["message"]
    r = call(api, "POST", pcs, {"metadata": {"name": "high"}, "value": 1000, "globalDefault": True})
    assert r.code == 201 and r.body["preemptionPolicy"] == "PreemptLowerPriority"
    r = call(api, "POST", pcs, {"metadata": {"name": "high2"}, "value": 2000, "globalDefault": True})
    assert r.code == 403 and r.body["message"] == ('priorityclasses.scheduling.k8s.io "high2" is forbidden: PriorityClass '
                                                    'high is marked as default. Only one default can exist')
    r = call(api, "POST", pcs, {"metadata": {"name": "low"}, "value": 10, "preemptionPolicy": "Never"})
    assert r.code == 201
    r = call(api, "POST", "/api/v1/namespaces/default/pods", pod("p1"))
    assert r.code == 201 and (r.body["spec"]["priorityClassName"], r.body["spec"]["priority"]) == ("high", 1000)
    r = call(api, "POST", "/api/v1/namespaces/default/pods", pod("p2", priorityClassName="low"))
    assert r.code == 201 and (r.body["spec"]["priority"], r.body["spec"]["preemptionPolicy"]) == (10, "Never")
    r = call(api, "POST", "/api/v1/namespaces/default/pods", pod("p3", priorityClassName="nope"))
    assert r.code == 403 and r.body["message"] == 'pods "p3" is forbidden: no PriorityClass with name nope was found'
    r = call(api, "POST", "/api/v1/namespaces/default/pods", pod("p4", priorityClassName="low", priority=7))
    assert r.code == 403 and "the integer value of priority (7) must not be provided in pod spec" in r.body["message"]
    r = call(api, "PUT", f"{pcs}/low", {**store.get("scheduling.k8s.io/v1/priorityclasses", "", "low"), "value": 11})
    assert r.code == 422 and "may not be changed in an update." in r.body["message"]


# -- ResourceQuota and LimitRange ------------------------------------------------------------------------------------

def test_quota_status_and_admission(cluster):
    store, api, ctl, _ = cluster
    q = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
         "spec": {"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi", "configmaps": "1"}}}
    assert call(api, "POST", "/api/v1/namespaces/default/resourcequotas", q).code == 201
    ctl.quotas.reconcile()
    st = store.get("v1/resourcequotas", "default", "q")["status"]
    assert st["hard"] == q["spec"]["hard"] and st["used"] == {"pods": "0", "requests.cpu": "0", "limits.memory": "0",
                                                              "configmaps": "0"}
    bare = pod("bare")
    r = call(api, "POST", "/api/v1/namespaces/default/pods", bare)
    assert r.code == 403
    assert r.body["message"] == ('pods "bare" is forbidden: failed quota: q: must specify limits.memory for: c; '
                                 'requests.cpu for: c')
    res = {"resources": {"requests": {"cpu": "400m"}, "limits": {"memory": "256Mi"}}}
    for i in range(2):
        assert call(api, "POST", "/api/v1/namespaces/default/pods", pod(f"ok-{i}", container=res)).code == 201
    r = call(api, "POST", "/api/v1/namespaces/default/pods", pod("third", container=res))
    assert r.code == 403
    assert r.body["message"] == ('pods "third" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=400m, '
                                 'used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1')
    ctl.quotas.reconcile()
    st = store.get("v1/resourcequotas", "default", "q")["status"]
    assert st["used"] == {"pods": "2", "requests.cpu": "800m", "limits.memory": "512Mi", "configmaps": "0"}
    row = tables.resourcequotas(store.get("v1/resourcequotas", "default", "q"), T0)
    assert row[2:] == ["configmaps: 0/1, pods: 2/2, requests.cpu: 800m/1", "limits.memory: 512Mi/1Gi"]
    assert call(api, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "a"}}).code == 201
    r = call(api, "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "b"}})
    assert r.code == 403 and r.body["message"] == ('configmaps "b" is forbidden: exceeded quota: q, requested: '
                                                   'configmaps=1, used: configmaps=1, limited: configmaps=1')
    done = store.get("v1/pods", "default", "ok-0")
    done["status"]["phase"] = "Succeeded"  # a finished pod no longer counts
    store.update("v1/pods", done)
    assert call(api, "POST", "/api/v1/namespaces/default/pods", pod("third", container=res)).code == 201


def test_quota_validation_and_scopes(cluster):
    store, api, _, _ = cluster
    r = call(api, "POST", "/api/v1/namespaces/default/resourcequotas",
             {"metadata": {"name": "bad"}, "spec": {"hard": {"pods": "1.5", "cpu": "-1"}}})
    assert r.code == 422 and "must be an integer" in r.body["message"] and "must be greater than or equal to 0" in r.body["message"]
    q = {"metadata": {"name": "be"}, "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}}
    assert call(api, "POST", "/api/v1/namespaces/default/resourcequotas", q).code == 201
    burstable = {"resources": {"requests": {"cpu": "100m"}}}
    for i in range(2):
        assert call(api, "POST", "/api/v1/namespaces/default/pods", pod(f"b{i}", container=burstable)).code == 201
    assert call(api, "POST", "/api/v1/namespaces/default/pods", pod("be0")).code == 201
    assert call(api, "POST", "/api/v1/namespaces/default/pods", pod("be1")).code == 403


def test_limit_range_defaults_and_bounds(cluster):
    store, api, _, _ = cluster
    lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr"}, "spec": {"limits": [
        {"type": "Container", "max": {"cpu": "1"}, "default": {"memory": "256Mi"}, "min": {"cpu": "50m"}}]}}
    r = call(api, "POST", "/api/v1/namespaces/default/limitranges", lr)
    assert r.code == 201
    item = r.body["spec"]["limits"][0]
    assert item["default"] == {"memory": "256Mi", "cpu": "1"} and item["defaultRequest"] == {"memory": "256Mi", "cpu": "1"}
    r = call(api, "POST", "/api/v1/namespaces/default/pods", pod("d"))
    assert r.code == 201
    res = r.body["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"memory": "256Mi", "cpu": "1"}, "requests": {"memory": "256Mi", "cpu": "1"}}
    assert r.body["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == \
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    r = call(api, "POST", "/api/v1/namespaces/default/pods", pod("big", container={"resources": {"limits": {"cpu": "2"}}}))
    assert r.code == 403 and r.body["message"] == 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2.'
    r = call(api, "POST", "/api/v1/namespaces/default/pods",
             pod("tiny", container={"resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "20m"}}}))
    assert r.code == 403 and r.body["message"] == ('pods "tiny" is forbidden: minimum cpu usage per Container is 50m, '
                                                   'but request is 10m.')
    two = {"resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "2"}}}
    r = call(api, "POST", "/api/v1/namespaces/default/pods", pod("both", container=two))
    assert r.code == 403 and r.body["message"] == ('pods "both" is forbidden: [minimum cpu usage per Container is 50m, '
                                                   'but request is 10m., maximum cpu usage per Container is 1, but limit '
                                                   'is 2.]')


def test_quota_usage_counts_init_containers_and_pvcs():
    p = pod("x", container={"resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
            initContainers=[{"name": "i", "image": "busybox:1.37", "resources": {"requests": {"cpu": "2"}}}])
    use = quota.usage("Pod", "", p, "pods", T0)
    assert use["requests.cpu"] == 2 and use["requests.memory"] == 1024 ** 3 and use["count/pods"] == 1
    pvc = {"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "5Gi"}}}}
    use = quota.usage("PersistentVolumeClaim", "", pvc, "persistentvolumeclaims", T0)
    assert use["requests.storage"] == 5 * 1024 ** 3 and use["fast.storageclass.storage.k8s.io/persistentvolumeclaims"] == 1
    assert quota.fmt(quota.Decimal("0.25")) == "250m" and quota.fmt(quota.Decimal(2 * 1024 ** 3), True) == "2Gi"


# -- Ingress and IngressClass -----------------------------------------------------------------------------------------

def test_ingress_validation_default_class_and_table(cluster):
    store, api, _, _ = cluster
    base = "/apis/networking.k8s.io/v1"
    r = call(api, "POST", f"{base}/ingressclasses", {"metadata": {"name": "nginx", "annotations": {
        "ingressclass.kubernetes.io/is-default-class": "true"}}, "spec": {"controller": "k8s.io/ingress-nginx"}})
    assert r.code == 201
    r = call(api, "POST", f"{base}/ingressclasses", {"metadata": {"name": "bad"}, "spec": {"controller": "nginx"}})
    assert r.code == 422 and 'must be a domain-prefixed path (such as "acme.io/foo")' in r.body["message"]
    ing = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"}, "spec": {"rules": [
        {"host": "web.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": "web", "port": {"number": 80}}}}]}}]}}
    r = call(api, "POST", f"{base}/namespaces/default/ingresses", ing)
    assert r.code == 201 and r.body["spec"]["ingressClassName"] == "nginx" and r.body["status"] == {"loadBalancer": {}}
    assert tables.ingresses(r.body, T0)[:5] == ["web", "nginx", "web.example.com", "", "80"]
    bad = json.loads(json.dumps(ing))
    bad["metadata"]["name"] = "bad"
    path = bad["spec"]["rules"][0]["http"]["paths"][0]
    path.pop("pathType")
    path["backend"]["service"]["port"] = {}
    bad["spec"]["rules"][0]["host"] = "10.0.0.1"
    r = call(api, "POST", f"{base}/namespaces/default/ingresses", bad)
    assert r.code == 422
    causes = {c["field"]: c["message"] for c in r.body["details"]["causes"]}
    assert causes["spec.rules[0].host"] == 'Invalid value: "10.0.0.1": must be a DNS name, not an IP address'
    assert causes["spec.rules[0].http.paths[0].pathType"] == "Required value: pathType must be specified"
    assert causes["spec.rules[0].http.paths[0].backend"] == "Required value: port name or number is required"
    r = call(api, "POST", f"{base}/namespaces/default/ingresses", {"metadata": {"name": "empty"}, "spec": {}})
    assert r.code == 422 and "either `defaultBackend` or `rules` must be specified" in r.body["message"]


def test_discovery_lists_the_new_kinds(cluster):
    _, api, _, _ = cluster
    groups = {g["name"] for g in call(api, "GET", "/apis").body["groups"]}
    assert {"policy", "scheduling.k8s.io", "networking.k8s.io"} <= groups
    names = {r["name"] for r in call(api, "GET", "/apis/batch/v1").body["resources"]}
    assert {"cronjobs", "cronjobs/status"} <= names
    core = {r["name"] for r in call(api, "GET", "/api/v1").body["resources"]}
    assert {"resourcequotas", "limitranges", "pods/eviction"} <= core


# -- with a lab and real kubectl --------------------------------------------------------------------------------------

def on_lab(f):
    for mark in (pytest.mark.lab, needs_root, pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")):
        f = mark(f)
    return f


def kubectl(lab, *args, check=True, timeout=60):
    out = subprocess.run([KUBECTL, "--kubeconfig", str(lab["kubeconfig"]), *args], capture_output=True, text=True,
                         timeout=timeout)
    if check and out.returncode:
        raise AssertionError(f"kubectl {' '.join(args)}: {out.stderr}")
    return out


@on_lab
def test_kubectl_creates_each_kind(lab, namespace):
    ns = ["-n", namespace]
    kubectl(lab, "create", "cronjob", "tick", "--image=busybox:1.37", "--schedule=*/5 * * * *", *ns, "--", "true")
    kubectl(lab, "create", "quota", "q", "--hard=pods=5,requests.cpu=2", *ns)
    kubectl(lab, "create", "poddisruptionbudget", "b", "--selector=app=web", "--min-available=1", *ns)
    kubectl(lab, "create", "ingress", "web", "--rule=web.example.com/=web:80", *ns)
    pc = f"k-{namespace}"[:60]
    kubectl(lab, "create", "priorityclass", pc, "--value=100", "--description=test")
    try:
        get = kubectl(lab, "get", "cronjob", "tick", *ns).stdout.split("\n")
        assert get[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
        assert get[1].split()[:6] == ["tick", "*/5", "*", "*", "*", "*"]
        kubectl(lab, "create", "job", "now", "--from=cronjob/tick", *ns)
        job = json.loads(kubectl(lab, "get", "job", "now", "-o", "json", *ns).stdout)
        assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
        assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        quota_out = json.loads(kubectl(lab, "get", "quota", "q", "-o", "json", *ns).stdout)
        assert quota_out["spec"]["hard"] == {"pods": "5", "requests.cpu": "2"}
        assert "ingress.networking.k8s.io/web" in kubectl(lab, "get", "ingress", *ns, "-o", "name").stdout
        assert kubectl(lab, "get", "pdb", "b", *ns, "-o", "jsonpath={.spec.minAvailable}").stdout == "1"
        assert kubectl(lab, "get", "pc", pc, "-o", "jsonpath={.value}").stdout == "100"
        assert "system-node-critical" in kubectl(lab, "get", "priorityclasses").stdout
        assert "schedule" in kubectl(lab, "explain", "cronjob.spec").stdout
    finally:
        kubectl(lab, "delete", "priorityclass", pc, check=False)


@on_lab
def test_budget_blocks_kubectl_eviction_and_quota_refuses_a_pod(lab, k8s, namespace):
    from .conftest import wait_pod

    ns = ["-n", namespace]
    kubectl(lab, "run", "web", "--image=busybox:1.37", "--labels=app=web", *ns, "--", "sleep", "3600")
    wait_pod(k8s, namespace, "web", lambda p: any(c.type == "Ready" and c.status == "True"
                                                  for c in p.status.conditions or []), timeout=90)
    kubectl(lab, "create", "pdb", "web", "--selector=app=web", "--min-available=1", *ns)
    from kubernetes import client

    policy = client.PolicyV1Api(k8s.api_client)
    deadline = time.time() + 30
    while time.time() < deadline:
        st = policy.read_namespaced_pod_disruption_budget("web", namespace).status
        if st.observed_generation and st.current_healthy == 1:
            break
        time.sleep(0.3)
    assert st.disruptions_allowed == 0
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name="web", namespace=namespace))
    with pytest.raises(client.ApiException) as exc:
        k8s.create_namespaced_pod_eviction("web", namespace, body)
    assert exc.value.status == 429
    status = json.loads(exc.value.body)
    assert status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert status["details"]["causes"][0]["reason"] == "DisruptionBudget"
    kubectl(lab, "create", "quota", "q", "--hard=pods=1", *ns)
    out = kubectl(lab, "run", "second", "--image=busybox:1.37", *ns, "--", "sleep", "1", check=False)
    assert out.returncode != 0
    assert 'pods "second" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1' in out.stderr
    kubectl(lab, "delete", "pod", "web", "--grace-period=0", "--force", *ns)  # sleep ignores SIGTERM: no 30 s wait


def test_a_cordoned_node_takes_no_new_pods(cluster):
    store, api, ctl, _ = cluster
    store.create("v1/nodes", {"metadata": {"name": "node"}, "spec": {"unschedulable": True}})
    assert call(api, "POST", "/api/v1/namespaces/default/pods", pod("waits")).code == 201
    tolerant = pod("tolerant", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                             "effect": "NoSchedule"}])
    assert call(api, "POST", "/api/v1/namespaces/default/pods", tolerant).code == 201
    ctl.schedule()
    waits = store.get("v1/pods", "default", "waits")
    assert not waits["spec"].get("nodeName")
    assert waits["status"]["conditions"][0]["message"].startswith("0/1 nodes are available: 1 node(s) were unschedulable.")
    assert store.get("v1/pods", "default", "tolerant")["spec"]["nodeName"] == "node"


def test_a_deployment_beyond_its_quota_says_failed_create(cluster):
    store, api, ctl, clock = cluster
    q = {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2"}}}
    assert call(api, "POST", "/api/v1/namespaces/default/resourcequotas", q).code == 201
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {
               "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}}
    assert call(api, "POST", "/apis/apps/v1/namespaces/default/deployments", dep).code == 201
    for _ in range(4):
        ctl.reconcile()
        clock.t += 1
    pods, *_ = store.list("v1/pods", "default")
    assert len(pods) == 2
    failed = events(store, "FailedCreate")
    assert failed and "is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2" in failed[0]


def test_system_priority_classes_cannot_be_deleted():
    from kperflab.lab import policy

    with pytest.raises(policy.APIError) as exc:
        policy.check_delete("PriorityClass", "scheduling.k8s.io", "system-node-critical")
    assert exc.value.code == 403 and exc.value.message == ('priorityclasses.scheduling.k8s.io "system-node-critical" is '
                                                           'forbidden: this is a system priority class and cannot be deleted')
    policy.check_delete("PriorityClass", "scheduling.k8s.io", "mine")  # any other may go


def test_a_job_refused_by_a_quota_backs_off_then_runs_when_it_fits(cluster):
    store, api, ctl, clock = cluster
    q = {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "0"}}}
    assert call(api, "POST", "/api/v1/namespaces/default/resourcequotas", q).code == 201
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.37"}]}}}}
    assert call(api, "POST", "/apis/batch/v1/namespaces/default/jobs", job).code == 201
    for _ in range(6):  # 6 passes in 6 s: tries at 0, 1, 3 s (back-off 1, 2, 4 s)
        ctl.jobs()
        clock.t += 1
    said, *_ = store.list("v1/events", "default", lambda e: e["reason"] == "FailedCreate")
    assert len(said) == 3 and all("exceeded quota: q, requested: pods=1, used: pods=0, limited: pods=0" in e["message"]
                                  for e in said)
    quota_obj = store.get("v1/resourcequotas", "default", "q")
    quota_obj["spec"]["hard"]["pods"] = "1"
    store.update("v1/resourcequotas", quota_obj)
    clock.t += 4
    ctl.jobs()
    pods, *_ = store.list("v1/pods", "default")
    assert len(pods) == 1
