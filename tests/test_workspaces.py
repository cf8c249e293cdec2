"""Workspaces record who made them and stay alive while their kernel lives; `kperflab clean` removes only the
caller's stale ones (anyone's with --all-stale), never a live one. Stale: made by a process on this host that has
ended (at once), else made elsewhere and its lease lapsed. Two identities on the lab: its admin token and a second
user from the lab's static token file."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

import kperflab
from kperflab import workspace
from kperflab.workspace import HOLDER, LEASE, OWNER, PROCESS, WorkspaceInfo, holder_alive

from .conftest import lab_env

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def alice(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig for a second user, "alice", whose token the lab reads from its static token file, bound to the
    participant role as an instructor binds one (the lab enforces RBAC for every user but its admin)."""
    manifest = Path(kperflab.__file__).parent / "manifests" / "participant-rbac.yaml"
    env = {**lab_env(lab["home"]), "KUBECONFIG": str(lab["kubeconfig"])}
    for args in (["apply", "-f", str(manifest)],
                 ["create", "clusterrolebinding", "kperflab-alice", "--clusterrole=kperflab-participant", "--user=alice"]):
        done = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0 or "AlreadyExists" in done.stderr, done.stderr
    tokens = lab["home"] / "lab" / "tokens.csv"
    tokens.write_text('alice-s3cret-token,alice,u-alice,"workshop"\n')
    cfg = yaml.safe_load(Path(lab["kubeconfig"]).read_text())
    cfg["users"] = [{"name": "alice", "user": {"token": "alice-s3cret-token"}}]
    cfg["contexts"][0]["context"]["user"] = "alice"
    path = tmp_path_factory.mktemp("alice") / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump(cfg))
    yield path
    tokens.unlink(missing_ok=True)
    subprocess.run(["kubectl", "delete", "clusterrolebinding", "kperflab-alice"], capture_output=True, env=env, timeout=60)


def _dead_workspace(kubeconfig: Path, name: str) -> str:
    """A workspace whose kernel died without cleaning up (os._exit: no atexit, no finally)."""
    code = ("import os, kperflab\nws = kperflab.connect(os.environ['KC']).workspace(os.environ['NAME']).open()\n"
            "print(ws.namespace, flush=True)\nos._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "KC": str(kubeconfig), "NAME": name})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _age_lease(api: Any, namespace: str, minutes: float) -> None:
    """As if the kernel died ``minutes`` ago: its lease was last renewed then."""
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)).isoformat()
    client.CoordinationV1Api(api).patch_namespaced_lease(LEASE, namespace, {"spec": {"renewTime": past}})


def _elsewhere(api: Any, namespace: str) -> None:
    """As if the workspace had been made on another machine: this host cannot tell whether its process runs."""
    holder = client.CoreV1Api(api).read_namespace(namespace).metadata.annotations[HOLDER]
    client.CoreV1Api(api).patch_namespace(namespace, {"metadata": {"annotations": {
        HOLDER: holder.split("@")[0] + "@another-host/1", PROCESS: None}}})


def _namespaces(api: Any) -> set[str]:
    return {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items if not n.metadata.deletion_timestamp}


def _clean(lab: dict[str, Any], kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "kperflab.cli", "clean", "--kubeconfig", str(kubeconfig), *args],
                         capture_output=True, text=True, timeout=60, env=lab_env(lab["home"]))
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stdout + out.stderr
    return out


def test_the_api_server_says_who_we_are(lab, alice):
    assert kperflab.connect(lab["kubeconfig"]).user == "kperflab-admin"
    assert kperflab.connect(alice).user == "alice"


def test_clean_removes_only_the_callers_stale_workspaces(lab, alice):
    admin = kperflab.connect(lab["kubeconfig"])
    with admin.workspace("live") as live:
        ns = client.CoreV1Api(admin.api).read_namespace(live.namespace)
        assert ns.metadata.annotations[OWNER] == "kperflab-admin" and live.heartbeat == ""
        lease = client.CoordinationV1Api(admin.api).read_namespaced_lease(LEASE, live.namespace)
        before = lease.spec.renew_time
        live.renew()
        assert client.CoordinationV1Api(admin.api).read_namespaced_lease(LEASE, live.namespace).spec.renew_time > before

        dead_admin = _dead_workspace(lab["kubeconfig"], "dead-admin")  # elsewhere, its lease lapsed
        dead_alice = _dead_workspace(alice, "dead-alice")  # here: its process has ended, its lease not yet lapsed
        young_alice = _dead_workspace(alice, "young-alice")  # elsewhere, died a moment ago: its lease has not lapsed
        assert client.CoreV1Api(admin.api).read_namespace(dead_alice).metadata.annotations[OWNER] == "alice"
        for ns_name in (dead_admin, young_alice):
            _elsewhere(admin.api, ns_name)
        _age_lease(admin.api, dead_admin, 10)

        out = _clean(lab, alice).stdout
        assert "You are alice" in out and dead_alice in out.split("Kept")[0]
        gone_for = _namespaces(admin.api)
        assert dead_alice not in gone_for, out
        assert {live.namespace, dead_admin, young_alice} <= gone_for, out
        assert f"{dead_admin} (kperflab-admin)" in out and "--all-stale" in out
        assert young_alice in out and "Kept 1 live" in out

        dry = _clean(lab, lab["kubeconfig"], "--dry-run").stdout
        assert "Would delete 1 stale workspace" in dry and dead_admin in dry and dead_admin in _namespaces(admin.api)
        out = _clean(lab, lab["kubeconfig"]).stdout
        now = _namespaces(admin.api)
        assert dead_admin not in now and live.namespace in now and young_alice in now, out

        _age_lease(admin.api, young_alice, 10)
        _age_lease(admin.api, live.namespace, 10)  # as after the cluster was down: its process runs, so it is live
        out = _clean(lab, lab["kubeconfig"], "--all-stale").stdout
        now = _namespaces(admin.api)
        assert young_alice not in now and live.namespace in now, out
        assert live.namespace in out.split("Kept")[1], "the instructor is told the live workspace was kept"
        assert f"its process {os.getpid()} on this host runs" in out, out
    assert live.namespace not in _namespaces(admin.api)


def test_staleness_rules():
    now = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
    created = now - dt.timedelta(hours=3)
    beat = WorkspaceInfo("a", "u", None, created, renewed=now - dt.timedelta(seconds=100), duration=120, lease="found")
    assert not beat.stale(now) and beat.state(now).startswith("live")
    assert beat.stale(now + dt.timedelta(seconds=30)) and "last heartbeat 2 min ago" in beat.state(now + dt.timedelta(seconds=30))
    no_lease = WorkspaceInfo("b", None, None, now - dt.timedelta(minutes=20))
    assert not no_lease.stale(now) and no_lease.stale(now + dt.timedelta(hours=1))
    unknown = WorkspaceInfo("c", "u", None, created, lease="cannot read its lease: HTTP 403")
    assert not unknown.stale(now) and "unknown" in unknown.state(now)
    assert workspace.NO_LEASE_GRACE >= workspace.LEASE_SECONDS


def test_a_holder_on_this_host_is_judged_by_its_process():
    here = socket.gethostname()
    me, ident = f"u@{here}/{os.getpid()}", workspace._process_id(os.getpid())
    assert ident and holder_alive(me, ident) is True and holder_alive(me) is True  # recorded, and by a pid alone
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    gone = f"u@{here}/{ended.pid}"
    assert holder_alive(gone, f"{workspace._boot_id()}/1") is False and holder_alive(gone) is False
    boot, start = ident.split("/")
    assert holder_alive(me, f"{boot}/{int(start) + 1}") is False, "a pid reused by another process is not the holder"
    assert holder_alive(me, f"another-boot/{start}") is False, "a process from before this host's boot has ended"
    assert holder_alive("u@another-host/1", ident) is None and holder_alive(None) is None and holder_alive("junk") is None

    now = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
    lapsed = dict(renewed=now - dt.timedelta(minutes=30), duration=120, lease="found")
    running = WorkspaceInfo("a", "u", me, now - dt.timedelta(hours=1), alive=True, **lapsed)
    assert not running.stale(now) and running.state(now).startswith("live: its process")  # the cluster was down
    fresh = dict(renewed=now - dt.timedelta(seconds=5), duration=120, lease="found")
    ended_here = WorkspaceInfo("b", "u", gone, now - dt.timedelta(minutes=1), alive=False, **fresh)
    assert ended_here.stale(now) and "has ended" in ended_here.state(now)  # whatever its lease says
    unknown_lease = WorkspaceInfo("c", "u", gone, now, alive=False, lease="cannot read its lease: HTTP 403")
    assert unknown_lease.stale(now)
    assert not WorkspaceInfo("d", "u", gone, now, alive=False, terminating=True).stale(now)
    report = workspace.CleanReport("u", deleted=[ended_here], live=[running], now=now)
    assert report.summary() == (f"Deleted 1 stale workspace(s): b; kept 1 live: a (live: its process {os.getpid()} "
                                "on this host runs).")
