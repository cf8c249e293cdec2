"""The lab's HorizontalPodAutoscaler (autoscaling/v2): kube-apiserver's defaults and 422s, the replica calculator and
the controller's stabilisation and rate limits on a fake clock, the server-side table, and on the real lab an HPA
that scales a Deployment up under load and down after its stabilisation window."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess

import pytest

from kperflab.lab import hpa as H
from kperflab.lab.apiserver import APIServer, Request
from kperflab.lab.store import Store, rfc3339

from .conftest import needs_root

KUBECTL = shutil.which("kubectl")
HPA_PATH = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def api():
    from kperflab.lab.server import version_info

    s = Store()
    s.create("v1/namespaces", {"metadata": {"name": "default"}, "status": {"phase": "Active"}})
    return APIServer(s, "tok", version=version_info())


def call(api, method, path, body=None, accept="application/json", query=None):
    headers = {"content-type": "application/json", "accept": accept, "authorization": "Bearer tok"}
    raw = json.dumps(body).encode() if body is not None else b""
    return api.handle(Request(method, path, query or {}, headers, raw))


def hpa_body(name="web", **spec):
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 4,
                     **spec}}


# -- defaults and validation ---------------------------------------------------------------------------------

def test_defaults_fill_min_replicas_and_cpu_80_and_behavior_only_when_set(api):
    r = call(api, "POST", HPA_PATH, hpa_body())
    assert r.code == 201, r.body
    spec = r.body["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]
    assert "behavior" not in spec
    r = call(api, "POST", HPA_PATH, hpa_body("b", behavior={"scaleDown": {"stabilizationWindowSeconds": 15}}))
    assert r.code == 201, r.body
    b = r.body["spec"]["behavior"]
    assert b["scaleUp"] == {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert b["scaleDown"] == {"stabilizationWindowSeconds": 15, "selectPolicy": "Max",
                              "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


@pytest.mark.parametrize("spec,field,message", [
    ({"maxReplicas": 0}, "spec.maxReplicas", "Invalid value: 0: must be greater than 0"),
    ({"minReplicas": 0}, "spec.minReplicas", "Invalid value: 0: must be greater than or equal to 1"),
    ({"minReplicas": 5}, "spec.maxReplicas", "Invalid value: 4: must be greater than or equal to `minReplicas`"),
    ({"scaleTargetRef": {"kind": "Deployment"}}, "spec.scaleTargetRef.name", "Required value"),
    ({"scaleTargetRef": {"kind": "Deployment", "name": "a/b"}}, "spec.scaleTargetRef.name",
     "Invalid value: \"a/b\": may not contain '/'"),
    ({"metrics": [{"type": "Nope"}]}, "spec.metrics[0].type",
     'Unsupported value: "Nope": supported values: "ContainerResource", "External", "Object", "Pods", "Resource"'),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                             "averageUtilization": 0}}}]},
     "spec.metrics[0].resource.target.averageUtilization", "Invalid value: 0: must be greater than 0"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]},
     "spec.metrics[0].resource.target.averageUtilization",
     "Required value: must set either a target raw value or a target utilization"),
    ({"metrics": [{"type": "Resource"}]}, "spec.metrics[0].resource",
     "Required value: must populate information for the given metric source"),
    ({"behavior": {"scaleDown": {"policies": []}}}, "spec.behavior.scaleDown.policies",
     "Required value: must specify at least one Policy"),
    ({"behavior": {"scaleUp": {"stabilizationWindowSeconds": 3601}}}, "spec.behavior.scaleUp.stabilizationWindowSeconds",
     "Invalid value: 3601: must be less than or equal to 3600"),
    ({"behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}}},
     "spec.behavior.scaleDown.policies[0].value", "Invalid value: 0: must be greater than zero"),
])
def test_invalid_hpas_get_kube_apiservers_422(api, spec, field, message):
    body = hpa_body()
    body["spec"].update(spec)
    r = call(api, "POST", HPA_PATH, body)
    assert r.code == 422, r.body
    causes = {(c["field"], c["message"]) for c in r.body["details"]["causes"]}
    assert (field, message) in causes, causes
    assert r.body["message"].startswith('HorizontalPodAutoscaler.autoscaling "web" is invalid: ')


def test_table_targets_and_columns(api):
    call(api, "POST", HPA_PATH, hpa_body(metrics=[
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "200Mi"}}}]))
    obj = api.store.get("autoscaling/v2/horizontalpodautoscalers", "default", "web")
    obj["status"] = {"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "45m"}}}]}
    api.store.update("autoscaling/v2/horizontalpodautoscalers", obj)
    r = call(api, "GET", HPA_PATH, accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    assert [c["name"] for c in r.body["columnDefinitions"]] == ["Name", "Reference", "Targets", "MinPods", "MaxPods",
                                                                 "Replicas", "Age"]
    cells = r.body["rows"][0]["cells"]
    assert cells[:6] == ["web", "Deployment/web", "cpu: 45%/80%, memory: <unknown>/200Mi", "1", 4, 2]
    from kperflab.lab.tables import _hpa_metrics

    three = [{"type": "Resource", "resource": {"name": n, "target": {"type": "Utilization"}}} for n in ("a", "b", "c")]
    assert _hpa_metrics(three, None) == "a: <unknown>/<auto>, b: <unknown>/<auto> + 1 more..."
    assert _hpa_metrics([], None) == "<none>"


def test_autoscaling_v1_is_served_and_stored_as_v2(api):
    v1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"
    body = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 4,
                     "targetCPUUtilizationPercentage": 50}}
    r = call(api, "POST", v1, body)
    assert r.code == 201, r.body
    stored = api.store.get(H.KEY, "default", "web")
    assert stored["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 50}}}] and "targetCPUUtilizationPercentage" not in stored["spec"]
    assert stored["spec"]["minReplicas"] == 1
    body["metadata"]["name"] = "bad"
    body["spec"]["targetCPUUtilizationPercentage"] = 0
    r = call(api, "POST", v1, body)  # validated as the internal (v2-shaped) object, with its field paths, as upstream
    assert r.code == 422 and r.body["details"]["causes"][0]["field"] == "spec.metrics[0].resource.target.averageUtilization"
    stored["status"] = {"currentReplicas": 2, "desiredReplicas": 3, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 70, "averageValue": "70m"}}}],
        "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "m"}]}
    stored["spec"]["metrics"].append({"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "100Mi"}}})
    stored["spec"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 15}}
    shown = H.to_v1(stored)
    assert shown["apiVersion"] == "autoscaling/v1" and shown["spec"]["targetCPUUtilizationPercentage"] == 50
    assert shown["status"] == {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 70}
    ann = shown["metadata"]["annotations"]
    assert json.loads(ann[H.ANN_METRICS]) == [{"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}]
    assert json.loads(ann[H.ANN_CONDITIONS])[0]["reason"] == "ReadyForNewScale"
    back = copy.deepcopy(shown)  # a v1 client writing back what it read keeps every field
    H.default_v1(back)
    assert back["spec"]["metrics"] == stored["spec"]["metrics"] and "annotations" not in back["metadata"]
    assert back["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 15


# -- the replica calculator ------------------------------------------------------------------------------------

NOW = 1_800_000_000.0


def pod(name, phase="Running", ready=True, request="100m", started=NOW - 1000, ready_at=NOW - 990, labels=None):
    st = {"phase": phase}
    if phase != "Pending":
        st["startTime"] = rfc3339(started)
        st["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                             "lastTransitionTime": rfc3339(ready_at)}]
    return {"metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "web"}},
            "spec": {"containers": [{"name": "main", "resources": {"requests": {"cpu": request, "memory": "64Mi"}}}]},
            "status": st}


def pm(name, cpu, ts=NOW - 5, window="5s", memory="32Mi"):
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}}, "timestamp": rfc3339(ts),
            "window": window, "containers": [{"name": "main", "usage": {"cpu": cpu, "memory": memory}}]}


def test_ratio_tolerance_and_ceil():
    pods = [pod("a"), pod("b")]
    # 2 × 100m requested, 2 × 200m used: 200 % of a 50 % target → ratio 4 → ceil(4 × 2) = 8
    c = H.resource_replicas(2, 50, "cpu", [pm("a", "200m"), pm("b", "200m")], pods, NOW)
    assert (c.replicas, c.utilization, c.raw) == (8, 200, 200)
    # 54 % of 50 %: within the 10 % tolerance → keep 2
    assert H.resource_replicas(2, 50, "cpu", [pm("a", "54m"), pm("b", "54m")], pods, NOW).replicas == 2
    # 56 %: out of tolerance → ceil(1.12 × 2) = 3
    assert H.resource_replicas(2, 50, "cpu", [pm("a", "56m"), pm("b", "56m")], pods, NOW).replicas == 3
    # memory, AverageValue target 16Mi, 32Mi used each → ratio 2 → 4
    assert H.raw_resource_replicas(2, 16 * 2**20 * 1000, "memory", [pm("a", "1m"), pm("b", "1m")], pods, NOW).replicas == 4


def test_missing_pods_count_as_full_on_scale_down_and_empty_on_scale_up():
    pods = [pod("a"), pod("b"), pod("c")]
    # a, b at 10 % of a 50 % target, c has no metrics: on the way down c counts as max(100 %, 50 %) = 100 %
    # → (10 + 10 + 100) / 3 = 40 % → ratio 0.8 → ceil(0.8 × 3) = 3: no scale-down although the sampled pods were idle
    c = H.resource_replicas(3, 50, "cpu", [pm("a", "10m"), pm("b", "10m")], pods, NOW)
    assert (c.replicas, c.utilization) == (3, 10)
    # on the way up c counts as 0: (150 + 150 + 0) / 3 = 100 % → ratio 2 → 6
    assert H.resource_replicas(3, 50, "cpu", [pm("a", "150m"), pm("b", "150m")], pods, NOW).replicas == 6


def test_unready_and_pending_pods_count_as_zero_on_scale_up_and_are_ignored_for_the_ratio():
    fresh = pod("new", started=NOW - 20, ready_at=NOW - 8)  # in its cpu initialisation period, ready 8 s ago
    pods = [pod("a"), fresh, pod("p", phase="Pending")]
    items = [pm("a", "200m"), pm("new", "200m", ts=NOW - 5)]  # "new"'s sample predates ready + window: ignored
    ready, unready, missing, ignored = H.group_pods(pods, H.pod_metrics_info(items, "cpu"), "cpu", NOW)
    assert (ready, unready, missing, ignored) == (1, {"new", "p"}, set(), set())
    # a alone: 200 % of 50 % → 4; rebalanced with the two unready at 0: 200/3 = 66 % → ratio 1.33 → ceil(1.33 × 3) = 4
    assert H.resource_replicas(1, 50, "cpu", items, pods, NOW).replicas == 4
    # long after start a never-ready pod whose readiness flipped within 30 s of start is unready; memory ignores readiness
    old = pod("old", ready=False, started=NOW - 1000, ready_at=NOW - 990)
    assert H.group_pods([old], {"old": H.PodMetric(1, NOW, 5)}, "cpu", NOW)[1] == {"old"}
    assert H.group_pods([old], {"old": H.PodMetric(1, NOW, 5)}, "memory", NOW)[0] == 1


def test_errors_say_what_upstream_says():
    with pytest.raises(H.MetricsError, match="no metrics returned from resource metrics API"):
        H.resource_replicas(1, 50, "cpu", [], [pod("a")], NOW)
    with pytest.raises(H.MetricsError, match=r"did not receive metrics for targeted pods \(pods might be unready\)"):
        H.resource_replicas(1, 50, "cpu", [pm("a", "1m")], [pod("a", phase="Pending")], NOW)
    with pytest.raises(H.MetricsError, match="no metrics returned matched known pods"):
        H.resource_replicas(1, 50, "cpu", [pm("x", "1m")], [pod("a")], NOW)  # metrics of another pod only
    no_req = pod("a")
    del no_req["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    with pytest.raises(H.MetricsError, match="missing request for cpu in container main of Pod a"):
        H.resource_replicas(1, 50, "cpu", [pm("a", "1m")], [no_req], NOW)


def test_rate_limits():
    assert H.convert_with_rules(1, 10, 1, 10) == (4, "ScaleUpLimit",
                                                  "the desired replica count is increasing faster than the maximum scale rate")
    assert H.convert_with_rules(3, 10, 1, 10)[0] == 6
    assert H.convert_with_rules(3, 10, 1, 5)[:2] == (5, "TooManyReplicas")
    assert H.convert_with_rules(3, 0, 2, 5)[:2] == (2, "TooFewReplicas")
    up = H.scale_up_defaults()
    # 4 pods or 100 % per 15 s, the larger: from 1 → 5; from 10 → 20
    assert H.scale_up_limit_with_rules(1, [], [], up, NOW) == 5
    assert H.scale_up_limit_with_rules(10, [], [], up, NOW) == 20
    # 3 added 10 s ago count against this period: start = 4 − 3 = 1 → max(1 + 4, 2) = 5
    assert H.scale_up_limit_with_rules(4, [H.ScaleEvent(3, NOW - 10)], [], up, NOW) == 5
    down = {"selectPolicy": "Max", "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}
    assert H.scale_down_limit_with_rules(4, [], [H.ScaleEvent(1, NOW - 30)], down, NOW) == 4  # one already removed
    assert H.scale_down_limit_with_rules(4, [], [H.ScaleEvent(1, NOW - 61)], down, NOW) == 3


# -- the controller on a fake clock ----------------------------------------------------------------------------

class Cluster:
    """A store with a Deployment ``web`` and its pods, metrics served from a dict (millicores per pod)."""

    def __init__(self, replicas=1, behavior=None, request="100m"):
        self.clock = Clock()
        self.store = Store(clock=self.clock)
        self.store.create("v1/namespaces", {"metadata": {"name": "default"}})
        self.store.create("apps/v1/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "main"}]}}},
            "status": {"replicas": replicas}})
        spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1,
                "maxReplicas": 6, "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}
        body = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web", "namespace": "default"}, "spec": spec}
        if behavior is not None:
            spec["behavior"] = behavior
            H.default_hpa(body)
        self.store.create(H.KEY, body)
        self.request = request
        self.usage: dict[str, str] = {}
        self.ctl = H.HPAController(self.store, self.metrics, clock=self.clock)
        self.sync_pods()

    def metrics(self, ns):
        return [pm(n, cpu, ts=self.clock() - 2) for n, cpu in self.usage.items()]

    def replicas(self):
        return self.store.get("apps/v1/deployments", "default", "web")["spec"]["replicas"]

    def sync_pods(self, cpu="10m"):
        """What the Deployment controller and kubelet would do: as many Running, long-ready pods as spec.replicas."""
        want = self.replicas()
        have, *_ = self.store.list("v1/pods", "default")
        for p in have[want:]:
            self.store.remove("v1/pods", "default", p["metadata"]["name"])
            self.usage.pop(p["metadata"]["name"], None)
        for i in range(len(have), want):
            name = f"web-{i}"
            p = pod(name, started=self.clock() - 1000, ready_at=self.clock() - 990, request=self.request)
            self.store.create("v1/pods", p)
            self.usage[name] = cpu

    def load(self, cpu):
        self.usage = {n: cpu for n in self.usage}

    def step(self, seconds=15.0):
        self.clock.advance(seconds)
        self.ctl.tick()
        self.sync_pods(next(iter(self.usage.values()), "10m"))

    def hpa(self):
        return self.store.get(H.KEY, "default", "web")

    def events(self):
        evs, *_ = self.store.list("v1/events", "default")
        return [(e["type"], e["reason"], e["message"]) for e in evs]


def conditions(hpa):
    return {c["type"]: (c["status"], c["reason"]) for c in hpa["status"]["conditions"]}


def test_first_sync_after_the_sync_period_then_scale_up_with_event_and_status():
    c = Cluster()
    c.load("200m")  # 200 % of a 50 % target
    c.ctl.tick()
    assert "status" not in c.hpa() or not c.hpa()["status"]  # seen, not yet synced: first sync one period later
    c.step(14.0)
    assert c.replicas() == 1
    c.step(1.0)
    assert c.replicas() == 4  # ceil(4 × 1) = 4, within the no-behavior cap max(2 × 1, 4)
    st = c.hpa()["status"]
    assert st["currentReplicas"] == 1 and st["desiredReplicas"] == 4 and st["lastScaleTime"] == rfc3339(c.clock())
    assert st["currentMetrics"] == [{"type": "Resource", "resource": {"name": "cpu", "current": {
        "averageUtilization": 200, "averageValue": "200m"}}}]
    assert conditions(c.hpa()) == {"AbleToScale": ("True", "SucceededRescale"), "ScalingActive": ("True", "ValidMetricFound"),
                                   "ScalingLimited": ("False", "DesiredWithinRange")}
    assert ("Normal", "SuccessfulRescale",
            "New size: 4; reason: cpu resource utilization (percentage of request) above target") in c.events()
    assert c.store.get("apps/v1/deployments", "default", "web")["metadata"]["generation"] == 2
    c.step()  # 4 pods at 200 % → wants 16, capped at max(2 × 4, 4) = 8, then maxReplicas 6
    assert c.replicas() == 6
    assert conditions(c.hpa())["ScalingLimited"] == ("True", "TooManyReplicas")


def test_scale_down_waits_for_the_default_five_minute_stabilisation():
    c = Cluster(replicas=4)
    c.load("200m")
    c.ctl.tick()
    c.step(15)  # recommendation 6 (capped at maxReplicas) recorded
    assert c.replicas() == 6
    c.load("5m")  # idle: 10 % of request → wants 1
    for _ in range(19):  # 285 s: the 6 of the load is still in the 300 s window
        c.step()
        assert c.replicas() == 6, c.clock.t
        assert conditions(c.hpa())["AbleToScale"] == ("True", "ScaleDownStabilized")
    c.step()
    c.step()
    assert c.replicas() == 1
    assert ("Normal", "SuccessfulRescale", "New size: 1; reason: All metrics below target") in c.events()


def test_behavior_window_and_policies():
    c = Cluster(behavior={"scaleDown": {"stabilizationWindowSeconds": 30,
                                        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}]}})
    c.load("400m")  # 800 % → wants 8, limited by scaleUp policies to max(1 + 4, 2 × 1) = 5
    c.ctl.tick()
    c.step()
    assert c.replicas() == 5
    assert conditions(c.hpa())["ScalingLimited"] == ("True", "ScaleUpLimit")
    c.load("5m")
    c.step()  # the 8 of 15 s ago is in the 30 s window
    assert c.replicas() == 5
    assert conditions(c.hpa())["AbleToScale"] == ("True", "ScaleDownStabilized")
    c.step()  # 30 s after the 8: out of the window; down, but by 2 pods per 15 s
    assert c.replicas() == 3
    assert conditions(c.hpa())["ScalingLimited"] == ("True", "ScaleDownLimit")
    c.step()
    assert c.replicas() == 1


def test_failed_metrics_give_events_conditions_and_unknown_targets():
    c = Cluster()
    c.usage = {}  # no PodMetrics at all
    c.ctl.tick()
    c.step()
    st = c.hpa()["status"]
    assert conditions(c.hpa())["ScalingActive"] == ("False", "FailedGetResourceMetric")
    msg = "failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    assert next(x for x in st["conditions"] if x["type"] == "ScalingActive")["message"] == \
        f"the HPA was unable to compute the replica count: {msg}"
    assert ("Warning", "FailedGetResourceMetric", msg) in c.events()
    assert ("Warning", "FailedComputeMetricsReplicas",
            f"invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: {msg}") in c.events()
    assert st["currentReplicas"] == 1 and st["currentMetrics"] == [{"type": ""}]
    from kperflab.lab.tables import hpas

    assert hpas(c.hpa(), c.clock())[2] == "cpu: <unknown>/50%"
    c.step()
    counts = {e["reason"]: e["count"] for e in c.store.list("v1/events", "default")[0]}
    assert counts["FailedGetResourceMetric"] == 2  # a repeat bumps the count


def test_missing_target_is_failed_get_scale():
    c = Cluster()
    c.store.remove("apps/v1/deployments", "default", "web")
    c.ctl.tick()
    c.clock.advance(15)
    c.ctl.tick()
    assert conditions(c.hpa())["AbleToScale"] == ("False", "FailedGetScale")
    assert ("Warning", "FailedGetScale", 'deployments.apps "web" not found') in c.events()


def test_scale_of_each_target_kind():
    rc = {"spec": {"replicas": 3, "selector": {"b": "2", "a": "1"}}, "status": {"replicas": 2}}
    assert H.scale_of(rc, "ReplicationController") == (3, 2, "a=1,b=2")
    sts = {"spec": {"selector": {"matchLabels": {"app": "db"}}}}
    assert H.scale_of(sts, "StatefulSet") == (1, 0, "app=db")  # replicas unset: 1, as defaulted


def test_selector_string_as_labels_selector_string():
    sel = {"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "c", "operator": "In", "values": ["y", "x"]}, {"key": "d", "operator": "DoesNotExist"}]}
    assert H.selector_string(sel) == "a=1,b=2,c in (x,y),!d"


# -- on the real lab ----------------------------------------------------------------------------------------------

def on_lab(f):
    return pytest.mark.lab(needs_root(f))


def _kubectl(lab, *args, input=None):
    return subprocess.run([KUBECTL, "--kubeconfig", str(lab["kubeconfig"]), *args], capture_output=True, text=True,
                          timeout=60, input=input)


@on_lab
def test_kubectl_autoscale_and_get_hpa_on_the_lab(lab, k8s, namespace):
    """kubectl's own autoscale (autoscaling/v1, in protobuf) and `get hpa` columns on the lab. (Scaling up under load
    and down after the stabilisation window is measured on the lab by tests/test_hpa_experiment.py, with the
    controller's events, and by notebook 04.)"""
    from kubernetes import client

    apps = client.AppsV1Api(k8s.api_client)
    auto = client.AutoscalingV2Api(k8s.api_client)
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                        "terminationGracePeriodSeconds": 0, "containers": [{
                            "name": "main", "image": "busybox:1.37", "command": ["sleep", "3600"],
                            "resources": {"requests": {"cpu": "100m"}}}]}}}}
    apps.create_namespaced_deployment(namespace, dep)
    auto.create_namespaced_horizontal_pod_autoscaler(namespace, hpa_body(minReplicas=1, maxReplicas=3, metrics=[{
        "type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]))
    if KUBECTL:  # kubectl 1.32's autoscale sends autoscaling/v1, in protobuf
        out = _kubectl(lab, "autoscale", "deployment", "web", "--name", "web-v1", "--cpu-percent=70", "--min=1", "--max=2",
                       "-n", namespace)
        assert out.returncode == 0 and "horizontalpodautoscaler.autoscaling/web-v1 autoscaled" in out.stdout, out.stderr
        out = _kubectl(lab, "get", "hpa", "-n", namespace)
        assert out.returncode == 0, out.stderr
        header, row = out.stdout.splitlines()[:2]
        assert header.split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
        assert row.split()[:2] == ["web", "Deployment/web"] and "/50%" in row
        assert "web-v1" in out.stdout and "/70%" in out.stdout, out.stdout
