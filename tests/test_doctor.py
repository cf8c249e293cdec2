"""`kperflab doctor` against no kubeconfig, a malformed one, an unreachable server and a fake API server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from kperflab import doctor
from kperflab.host import HostFacts

from .conftest import write_kubeconfig

FACTS = HostFacts(cgroup_version=1, root=True, iptables="iptables v1.8.9 (nf_tables)", nft="nftables v1.0.6",
                  ipvs=False, kubectl="Client Version: v1.32.4")

VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "abc", "gitTreeState": "clean",
           "buildDate": "2024-10-22T20:28:14Z", "goVersion": "go1.22.8", "compiler": "gc", "platform": "linux/amd64"}
GROUPS_WITH_METRICS = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
    {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
    {"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
     "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}}]}
NODES_KIND = {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [
    {"metadata": {"name": "kind-control-plane", "labels": {"kubernetes.io/hostname": "kind-control-plane"}},
     "spec": {"providerID": "kind://docker/kind/kind-control-plane"}}]}


def _review(allowed: bool):
    return {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "spec": {}, "status": {"allowed": allowed}}


def rows_by_name(rows):
    return {r.name: r for r in rows}


def test_no_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KPERFLAB_HOME", str(tmp_path / "kp"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    rows = rows_by_name(doctor.run(facts=FACTS))
    assert rows["kubeconfig"].status == "fail"
    assert "kperflab lab up" in rows["kubeconfig"].hint
    assert rows["api server"].status == "info" and rows["api server"].detail.startswith("skipped")
    assert doctor.exit_code(list(rows.values())) == 1


def test_malformed_kubeconfig(tmp_path):
    bad = tmp_path / "config"
    bad.write_text("apiVersion: v1\nclusters: [unclosed\n")
    rows = rows_by_name(doctor.run(kubeconfig=str(bad), facts=FACTS))
    assert rows["kubeconfig"].status == "fail"
    assert "cannot be read" in rows["kubeconfig"].detail and str(bad) in rows["kubeconfig"].detail


def test_unknown_context(tmp_path, fake_api):
    kc = fake_api.kubeconfig(tmp_path / "kc")
    rows = rows_by_name(doctor.run(kubeconfig=str(kc), context="nope", facts=FACTS))
    assert rows["kubeconfig"].status == "fail" and "'nope'" in rows["kubeconfig"].detail


def test_unreachable_server(tmp_path, fake_api):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    kc = write_kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{port}", fake_api.ca.read_bytes(), "x")
    rows = rows_by_name(doctor.run(kubeconfig=str(kc), timeout=2, facts=FACTS))
    assert rows["kubeconfig"].status == "ok"
    assert rows["api server"].status == "fail"
    assert "connection refused" in rows["api server"].detail and f"127.0.0.1:{port}" in rows["api server"].detail
    assert rows["metrics api"].status == "info"


def _serve_cluster(api, metrics: bool, review_code: int = 201, allowed: bool = True):
    api.route("GET", "/version", 200, VERSION)
    api.route("GET", "/api/v1/nodes", 200, NODES_KIND)
    groups = GROUPS_WITH_METRICS if metrics else {**GROUPS_WITH_METRICS, "groups": GROUPS_WITH_METRICS["groups"][:1]}
    api.route("GET", "/apis", 200, groups)
    body = _review(allowed) if review_code < 300 else {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                                                       "code": 403, "message": "selfsubjectaccessreviews.authorization.k8s.io is forbidden"}
    api.route("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review_code, body)


def test_healthy_cluster_with_metrics(tmp_path, fake_api):
    _serve_cluster(fake_api, metrics=True)
    rows = rows_by_name(doctor.run(kubeconfig=str(fake_api.kubeconfig(tmp_path / "kc")), facts=FACTS))
    assert rows["api server"].status == "ok" and "v1.31.2" in rows["api server"].detail
    assert rows["flavour"].detail.startswith("kind")
    assert rows["metrics api"].status == "ok" and rows["metrics api"].detail == "metrics.k8s.io/v1beta1"
    assert rows["node stats"].status == "ok" and rows["create pods"].status == "ok"
    assert "in workshop" in rows["create pods"].detail  # the context's namespace
    assert rows["ipvs"].status == "info" and "skipped" in rows["ipvs"].detail
    assert doctor.exit_code(list(rows.values())) == 0


def test_metrics_v1_preferred(tmp_path, fake_api):
    _serve_cluster(fake_api, metrics=True)
    groups = json.loads(json.dumps(GROUPS_WITH_METRICS))
    groups["groups"][1]["versions"].insert(0, {"groupVersion": "metrics.k8s.io/v1", "version": "v1"})
    fake_api.route("GET", "/apis", 200, groups)
    rows = rows_by_name(doctor.run(kubeconfig=str(fake_api.kubeconfig(tmp_path / "kc")), facts=FACTS))
    assert rows["metrics api"].detail == "metrics.k8s.io/v1"


def test_missing_metrics_api_gives_the_kind_hint(tmp_path, fake_api):
    _serve_cluster(fake_api, metrics=False)
    rows = rows_by_name(doctor.run(kubeconfig=str(fake_api.kubeconfig(tmp_path / "kc")), facts=FACTS))
    assert rows["metrics api"].status == "fail"
    assert "--kubelet-insecure-tls" in rows["metrics api"].hint
    assert doctor.exit_code(list(rows.values())) == 1


def test_access_review_forbidden(tmp_path, fake_api):
    _serve_cluster(fake_api, metrics=True, review_code=403)
    rows = rows_by_name(doctor.run(kubeconfig=str(fake_api.kubeconfig(tmp_path / "kc")), facts=FACTS))
    assert rows["node stats"].status == "fail" and "403" in rows["node stats"].detail
    assert "participant-rbac.yaml" in rows["node stats"].hint
    assert doctor.exit_code(list(rows.values())) == 1


def test_denied_permission(tmp_path, fake_api):
    _serve_cluster(fake_api, metrics=True, allowed=False)
    rows = rows_by_name(doctor.run(kubeconfig=str(fake_api.kubeconfig(tmp_path / "kc")), facts=FACTS))
    assert rows["create pods"].status == "fail" and "denied" in rows["create pods"].detail


def test_unauthorized(tmp_path, fake_api):
    fake_api.route("GET", "/version", 401, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Unauthorized",
                                            "code": 401, "message": "Unauthorized"})
    rows = rows_by_name(doctor.run(kubeconfig=str(fake_api.kubeconfig(tmp_path / "kc")), facts=FACTS))
    assert rows["api server"].status == "fail" and "401" in rows["api server"].detail
    assert "credentials" in rows["api server"].hint


def test_cli_json_and_exit_code(tmp_path, fake_api):
    _serve_cluster(fake_api, metrics=False)
    kc = fake_api.kubeconfig(tmp_path / "kc")
    out = subprocess.run([sys.executable, "-m", "kperflab.cli", "doctor", "--json", "--kubeconfig", str(kc)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    by = {c["name"]: c for c in data["checks"]}
    assert by["metrics api"]["status"] == "fail" and data["ok"] is False
    assert "Traceback" not in out.stderr


def test_cli_table_no_traceback_on_malformed(tmp_path):
    bad = tmp_path / "config"
    bad.write_text("{{{{")
    out = subprocess.run([sys.executable, "-m", "kperflab.cli", "doctor", "--kubeconfig", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "✗" in out.stdout and "kubeconfig" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_host_facts_read_this_machine():
    facts = HostFacts.read()
    # what /proc/self/mounts says is mounted at /sys/fs/cgroup, read independently of kperflab.host
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    at_root = {m[2] for m in mounts if len(m) > 2 and m[1] == "/sys/fs/cgroup"}
    v1 = any(m[2] == "cgroup" and m[1].startswith("/sys/fs/cgroup/") and set(m[3].split(",")) & {"memory", "cpu"}
             for m in mounts if len(m) > 3)
    assert facts.cgroup_version == (2 if "cgroup2" in at_root else 1 if v1 else None)
    assert isinstance(facts.ipvs, bool)
    assert (facts.kubectl is None) == (__import__("shutil").which("kubectl") is None)


def test_cgroup_version_detection(tmp_path: Path):
    from kperflab.host import cgroup_version

    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "v1" / "memory").mkdir(parents=True)
    assert cgroup_version(tmp_path / "v2") == 2
    assert cgroup_version(tmp_path / "v1") == 1
    assert cgroup_version(tmp_path / "none") is None
