"""The lab where it cannot use cgroups (a laptop without root): limits are not enforced, but pods still run and
the metrics pipeline still reports them, from /proc."""

from __future__ import annotations

import json
import time

import pytest

from kperflab.lab import cgroups, labs, pki, server
from kperflab.lab.apiserver import Request

pytestmark = pytest.mark.lab


def test_no_cgroups_lab_serves_pod_metrics(tmp_path, monkeypatch):
    monkeypatch.setattr(cgroups, "detect", lambda *a, **k: None)
    _, cert, key = pki.write_tls(pki.make_server_tls(), tmp_path / "tls")
    lab = server.Lab(tmp_path, "tok", (str(cert), str(key)), 0, metric_resolution=1.0)
    lab.start()
    hdr = {"authorization": "Bearer tok", "content-type": "application/json"}

    def call(method: str, path: str, body: dict | None = None, **q: str):
        return lab.api.handle(Request(method, path, q, hdr, json.dumps(body).encode() if body else b""))

    try:
        node = call("GET", "/api/v1/nodes/kperflab-lab").body
        assert node["metadata"]["annotations"]["kperflab.dev/limits-enforced"] == "false"
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "spin"}, "spec": {"containers": [
            {"name": "main", "image": "python:3.13-slim", "command": ["python", "-c", "while True: pass"],
             "resources": {"limits": {"cpu": "200m"}}}]}}
        assert call("POST", "/api/v1/namespaces/default/pods", pod).code == 201
        deadline = time.time() + 30
        while time.time() < deadline:
            r = call("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/spin")
            if r.code == 200:
                break
            time.sleep(0.3)
        assert r.code == 200, r.body
        from kubernetes.utils import parse_quantity

        cores = float(parse_quantity(r.body["containers"][0]["usage"]["cpu"]))
        assert cores > 0.6, f"no limit is enforced without cgroups, so the spinner takes a core: {cores}"
        summary = json.loads(lab.kubelet_server.handle("kperflab-lab", "/stats/summary", {}).body)
        (p,) = [p for p in summary["pods"] if p["podRef"]["name"] == "spin"]
        assert p["containers"][0]["memory"]["rssBytes"] > 0 and p["process_stats"]["process_count"] == 1
        events = call("GET", "/api/v1/namespaces/default/events").body["items"]
        assert any(e["reason"] == "LimitsNotEnforced" for e in events)
    finally:
        lab.stop()
    time.sleep(1.5)  # a kubelet pass racing the stop would have started a container by now
    assert labs.lab_processes(lab.lab_id) == [], "the stopped lab left pod processes running"

