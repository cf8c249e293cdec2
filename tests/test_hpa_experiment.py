"""Notebook 04's HPA experiment: the load step's program, the manifests (kube-apiserver's validation takes them), the lag
arithmetic and finding from a run's timestamps, the figure; and on the lab the whole chain: scale up under the load,
down after the behavior's stabilisation window, every lag measured and nothing left behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import pandas as pd
import pytest

from kperflab import figures
from kperflab.experiments import measuring

from .conftest import needs_root


def test_the_load_step_idles_burns_then_idles():
    now = time.time()
    env = {**os.environ, "LOAD_FROM": str(now + 0.5), "LOAD_UNTIL": str(now + 1.3), "CORES": "0.5"}
    proc = subprocess.Popen([sys.executable, "-c", measuring._LOAD_STEP], env=env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)
    finally:
        proc.kill()
    out, _ = proc.communicate(timeout=10)
    evs = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in evs] == ["start", "load", "idle"]
    load, idle = evs[1]["t"], evs[2]["t"]
    assert now + 0.5 <= load < now + 0.8 and now + 1.3 <= idle < now + 1.6


def test_the_burn_uses_the_cores_it_is_given():
    code = measuring._LOAD_STEP.split("on, off, cores")[0] + "t = time.process_time()\nburn(0.3, 2.0)\nprint(time.process_time() - t)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert 0.5 <= float(out.stdout) <= 0.7  # 0.3 cores × 2 s, by the process's own clock


def test_manifests_pass_kube_apiservers_validation_as_the_lab_applies_it():
    from kperflab.lab import hpa as H

    p = measuring.HPAParams(window=20)
    dep, hpa = measuring.hpa_manifests("web", p, 1_800_000_000.0)
    H.default_hpa(hpa)  # the API server defaults, then validates
    assert H.validate_hpa({**hpa, "metadata": {**hpa["metadata"], "namespace": "x"}}) == []
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 20
    assert hpa["spec"]["behavior"]["scaleUp"]["policies"][0] == {"type": "Pods", "value": 4, "periodSeconds": 15}
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["requests"]["cpu"] == "50m"
    assert {e["name"]: e["value"] for e in c["env"]}["LOAD_UNTIL"] == f"{1_800_000_000.0 + p.load_seconds:.3f}"
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


T = 1_800_000_000.0


def run_timeline() -> dict[str, Any]:
    """A made-up run: load at T+10 and until T+40; readings every 5 s; scale 1→4 seen at T+31.2, 4→1 at T+76.4."""
    p = measuring.HPAParams(target=50, load_from=10, load_seconds=30, window=20)
    readings = [{"t": T + t, "util": u, "window": 5.0, "seen": T + t + 0.3}
                for t, u in ((5, 2), (10, 3), (15, 120), (20, 200), (25, 201), (35, 199), (40, 180), (45, 3), (50, 2))]
    scale = [{"seen": T + 31.2, "from": 1, "to": 4}, {"seen": T + 76.4, "from": 4, "to": 1}]
    pods = [{"name": "a", "created": T, "ready": T + 3}, {"name": "b", "created": T + 31, "ready": T + 34},
            {"name": "c", "created": T + 31, "ready": T + 36}, {"name": "d", "created": T + 31, "ready": T + 35}]
    return {"p": p, "readings": readings, "scale": scale, "pods": pods}


def test_lags_come_from_the_runs_timestamps():
    r = run_timeline()
    lags = measuring._hpa_lags(r["p"], T + 10.05, T + 40.02, r["readings"], r["scale"], r["pods"])
    assert lags["sample"] == pytest.approx(4.95)  # the sample at T+15 (120 % > 50 %)
    assert lags["served"] == pytest.approx(0.3)
    assert lags["hpa_sync"] == pytest.approx(31.2 - 15.3)
    assert lags["pod_start"] == 5  # the slowest of b, c, d
    assert lags["up_total"] == pytest.approx(36 - 10.05)
    assert lags["down_sample"] == pytest.approx(45.3 - 40.02)  # the first reading at or below target after the end
    assert lags["down_decision"] == pytest.approx(76.4 - 45.3)
    assert lags["down_total"] == pytest.approx(76.4 - 40.02) and lags["held"] is None  # no status polls given
    held = [{"seen": T + 61.0, "able": "ScaleDownStabilized"}, {"seen": T + 76.0, "able": "ReadyForNewScale"}]
    assert measuring._hpa_lags(r["p"], T + 10.05, T + 40.02, r["readings"], r["scale"], r["pods"], held)["held"] == \
        pytest.approx(61.0 - 40.02)
    # another run, other numbers: nothing is fixed
    r["scale"][0]["seen"] = T + 46.0
    assert measuring._hpa_lags(r["p"], T + 10.05, T + 40.02, r["readings"], r["scale"], r["pods"])["hpa_sync"] == \
        pytest.approx(46.0 - 15.3)


def test_finding_states_the_measured_numbers_or_why_not():
    r = run_timeline()
    lags = measuring._hpa_lags(r["p"], T + 10.2, T + 40.02, r["readings"], r["scale"], r["pods"],
                               [{"seen": T + 61.0, "able": "ScaleDownStabilized"}])
    text = measuring._hpa_finding(r["p"], lags, T + 10.2, r["scale"], 4, [15.0, 15.0, 15.2], [], {x["t"]: x for x in r["readings"]})
    for part in ("4.8 s later", "5.0 s window", "15.9 s after that reading", "1 → 4 replicas", "5.0 s from creation",
                 "15.0 s here", "sync 21.0 s after the load ended", "kept 4 replicas", "down to 1 36.4 s after the load ended",
                 "20 s scale-down stabilisation window"):
        assert part in text, (part, text)
    assert "nan" not in text.lower()
    no_up = measuring._hpa_finding(r["p"], dict.fromkeys(lags), T + 10, [], 1, [],
                                   [("FailedGetResourceMetric", "failed to get cpu utilization: x", 3)], {})
    assert "did not scale up" in no_up and "FailedGetResourceMetric" in no_up and "no reading at all" in no_up
    assert "never logged" in measuring._hpa_finding(r["p"], lags, None, [], 1, [], [], {})


def test_a_scale_up_before_the_load_is_said_not_timed():
    r = run_timeline()
    r["readings"][0]["util"] = 150  # the pods' start alone crossed the target
    r["scale"][0]["seen"] = T + 9.0
    lags = measuring._hpa_lags(r["p"], T + 10.2, T + 40.02, r["readings"], r["scale"], r["pods"])
    assert lags["early"] == pytest.approx(1.2) and lags["pre_util"] == 150 and lags["hpa_sync"] is None
    text = measuring._hpa_finding(r["p"], lags, T + 10.2, r["scale"], 4, [], [], {})
    assert "1.2 s before the load began" in text and "already showed 150%" in text and not re.search(r"-\d", text)


def test_figure_has_both_panels_the_target_and_the_load():
    t = pd.to_datetime([T, T + 5, T + 10], unit="s", utc=True)
    df = pd.DataFrame({"time": list(t) * 3, "value": [2, 200, 3, 1, 4, 1, 1, 1, 4],
                       "series": ["utilisation, metrics API (%)"] * 3 + ["replicas (Deployment spec)"] * 3
                       + ["replicas (ready)"] * 3})
    fig = figures.autoscaling(df, 50, T + 1, T + 8)
    assert len(fig.data) == 3 and fig.layout.title.text == "An HPA under a load step"
    assert any(s.type == "rect" for s in fig.layout.shapes) and any(s.y0 == 50 for s in fig.layout.shapes)


@pytest.mark.lab
@needs_root
def test_autoscaling_on_the_lab_scales_up_and_down_and_cleans_up(lab):
    import kperflab

    cluster = kperflab.connect(lab["kubeconfig"])
    with cluster.workspace("hpa-test") as ws:
        r = measuring.autoscaling(cluster, ws, measuring.HPAParams(load_from=6, load_seconds=16, window=20), progress=False)
        if r.skipped:
            pytest.skip(r.skipped)
        left = subprocess.run(["kubectl", "--kubeconfig", str(lab["kubeconfig"]), "get", "deploy,hpa", "-n", ws.namespace,
                               "-o", "name"], capture_output=True, text=True, timeout=60)
    lags = r.data["lags"]
    assert r.data["scale"] and r.data["scale"][0]["to"] > 1, (r.finding, r.data["events"])
    assert any(s["to"] == 1 for s in r.data["scale"][1:]), (r.finding, r.data["events"])
    for k in ("sample", "hpa_sync", "pod_start", "down_sample", "down_total"):
        assert lags[k] is not None and lags[k] >= 0, (k, lags, r.finding)
    assert lags["hpa_sync"] <= 15 + 6, lags  # one sync period (+ polling and the reading's own age)
    assert lags["held"] is not None and lags["held"] < lags["down_total"], (lags, r.finding)  # the window held a sync
    assert 150 <= r.data["hpa_utilization"] <= 260, r.data  # 0.1 cores of a 50m request: 200 %
    assert "20 s scale-down stabilisation window" in r.finding and "nan" not in r.finding.lower()
    msgs = [m for reason, m, _ in r.data["events"] if reason == "SuccessfulRescale"]  # the controller's own words
    assert any(m.startswith("New size: ") and m.endswith("cpu resource utilization (percentage of request) above target")
               for m in msgs), msgs
    assert "New size: 1; reason: All metrics below target" in msgs, msgs
    assert left.returncode == 0 and left.stdout.strip() == "", left.stdout  # the HPA and the Deployment are gone
