"""The durable store (SQLite, WAL): restarts, SIGKILL, 410 across a restart, a full disk, file modes; read copies,
Event.json, and run_on_change's coalescing. No lab: seconds in all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from kperflab.lab import storedb
from kperflab.lab.errors import APIError
from kperflab.lab.store import Store, run_on_change

ROOT = Path(__file__).resolve().parents[1]


def pod(name, ns="default", **labels):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def cm(name, size=0):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"k": os.urandom(size // 2).hex()}}


def rv(obj):
    return int(obj["metadata"]["resourceVersion"])


def test_restart_keeps_objects_and_versions_and_old_watches_get_410(tmp_path):
    path = tmp_path / "state" / "store" / "state.db"
    s = Store(path=path)
    assert not s.restored and s.floor == 1
    a = s.create("v1/pods", pod("a", app="x"))
    b = s.create("v1/pods", pod("b"))
    a2 = s.update("v1/pods", {**a, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    d = s.mark_deleting("v1/pods", "default", "b", 30)
    s.create("v1/configmaps", cm("gone"))
    s.remove("v1/configmaps", "default", "gone")
    ns = s.create("v1/namespaces", {"metadata": {"name": "default"}})
    last = s.resource_version
    s.close_db()

    s2 = Store(path=path)
    try:
        assert s2.restored and s2.floor == last
        assert s2.get("v1/pods", "default", "a") == a2
        assert s2.get("v1/pods", "default", "b") == d and d["metadata"]["deletionTimestamp"]
        assert s2.try_get("v1/configmaps", "default", "gone") is None
        assert s2.get("v1/namespaces", "", "default") == ns
        items, list_rv, *_ = s2.list("v1/pods")
        assert [i["metadata"]["name"] for i in items] == ["a", "b"] and int(list_rv) == last
        c = s2.create("v1/pods", pod("c"))
        assert rv(c) == last + 1, "resourceVersions go on from the stored one"
        # a watch from the last run cannot be served (its log is gone): 410, like kube-apiserver's watch cache
        with pytest.raises(APIError) as e:
            s2.check_version(str(rv(b)))
        assert e.value.code == 410 and e.value.reason == "Expired"
        assert e.value.message == f"too old resource version: {rv(b)} ({last})"
        with pytest.raises(APIError):
            next(s2.watch("v1/pods", None, str(rv(a)), lambda o: True, timeout=1))
        # from the start rv (what a relist after the restart returns) the watch works
        got = next(s2.watch("v1/pods", None, str(last), lambda o: True, timeout=1))
        assert got[0] == "ADDED" and got[1]["metadata"]["name"] == "c"
        # a stale update is still a conflict, and the object's rv never went backwards
        with pytest.raises(APIError) as e:
            s2.update("v1/pods", a)
        assert e.value.code == 409
        assert rv(s2.update("v1/pods", s2.get("v1/pods", "default", "a"))) > rv(c)
    finally:
        s2.close_db()


def test_files_are_private_and_purge_removes_them(tmp_path):
    path = tmp_path / "store" / "state.db"
    s = Store(path=path)
    s.create("v1/pods", pod("a"))
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for p in storedb.db_files(path):
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert path.with_name("state.db-wal").exists() and storedb.ballast_path(path).stat().st_size == storedb.BALLAST_SIZE
    s.close_db()
    with pytest.raises(APIError) as e:
        s.create("v1/pods", pod("late"))
    assert e.value.code == 503, "a write after close_db is refused, never acknowledged and lost"
    Store.purge(path)
    assert not path.parent.exists()
    assert not Store(path=path).restored


def test_checkpoints_happen_off_the_write_path(tmp_path):
    path = tmp_path / "store" / "state.db"
    s = Store(path=path)
    try:
        for i in range(100):
            s.create("v1/configmaps", cm(f"c{i}", 2000))
        assert path.stat().st_size < 100_000, "the writes are in the WAL, not yet checkpointed by the writer"
        deadline = time.monotonic() + 5
        while path.stat().st_size < 200_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 200_000, "the checkpointer thread copied the WAL into the database"
    finally:
        s.close_db()
    assert not s._db._checkpointer.is_alive()


def test_ensure_creates_once():
    s = Store()
    first = s.ensure("v1/namespaces", {"metadata": {"name": "default"}})
    again = s.ensure("v1/namespaces", {"metadata": {"name": "default", "labels": {"x": "y"}}})
    assert again == first and "labels" not in again and s.resource_version == rv(first)


_CHILD = """
import sys
from pathlib import Path
from kperflab.lab.store import Store
s = Store(path=Path(sys.argv[1]))
for i in range(10_000):
    o = s.create("v1/configmaps", {"metadata": {"name": f"cm{i}", "namespace": "default"}, "data": {"i": str(i)}})
    print(o["metadata"]["resourceVersion"], flush=True)
"""


def test_sigkill_right_after_create_loses_nothing_acknowledged(tmp_path):
    path = tmp_path / "store" / "state.db"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    acked = []
    try:
        for line in proc.stdout:
            acked.append(int(line))
            if len(acked) == 200:
                proc.send_signal(signal.SIGKILL)  # right after create #200 returned (and maybe a few more ran)
                break
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    s = Store(path=path)
    try:
        assert s.restored
        stored = {o["metadata"]["name"]: rv(o) for o in s.list("v1/configmaps")[0]}
        for i, v in enumerate(acked):
            assert stored.get(f"cm{i}") == v, f"acknowledged create cm{i} (rv {v}) is missing after SIGKILL"
        assert s.resource_version >= acked[-1]
        assert rv(s.create("v1/configmaps", cm("after"))) > max(stored.values())
    finally:
        s.close_db()


class _FullConn:
    """A sqlite3 connection whose writes fail as on a full disk (``fail`` times; -1 for always)."""

    def __init__(self, conn, fail):
        self.conn, self.fail = conn, fail

    def execute(self, sql, *args):
        if self.fail and sql.startswith(("INSERT", "DELETE")):
            self.fail -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def close(self):
        self.conn.close()


def test_disk_full_refuses_the_write_keeps_memory_and_uses_the_reserve_once(tmp_path, monkeypatch):
    path = tmp_path / "store" / "state.db"
    s = Store(path=path)
    try:
        a = s.create("v1/pods", pod("a"))
        real = s._db.conn
        ballast = storedb.ballast_path(path)
        real_statvfs = os.statvfs
        monkeypatch.setattr(storedb.os, "statvfs", lambda p: os.statvfs_result((4096,) * 2 + (100, 0, 0) + (0,) * 5))
        # the first full disk: the reserve is dropped and the write retried, so it gets through
        s._db.conn = _FullConn(real, 1)
        ev = s.create("v1/events", {"metadata": {"name": "e1", "namespace": "default"}, "reason": "Evicted"})
        assert not ballast.exists() and s.disk_full
        # no reserve left: refused, nothing changed in memory
        s._db.conn = _FullConn(real, -1)
        before = (s.resource_version, s.list("v1/pods")[0])
        with pytest.raises(APIError) as e:
            s.update("v1/pods", {**a, "spec": {"x": 1}})
        assert e.value.code == 500 and "state directory is full" in e.value.message
        assert f"Free space on the filesystem under {path.parent}" in e.value.message
        with pytest.raises(APIError):
            s.remove("v1/pods", "default", "a")
        with pytest.raises(APIError):
            s.create("v1/pods", pod("b"))
        assert (s.resource_version, s.list("v1/pods")[0]) == before and s.disk_full
        # room again: the reserve is made anew and the flag clears; writes work and persist
        s._db.conn = real
        monkeypatch.setattr(storedb.os, "statvfs", real_statvfs)
        assert s.disk_full, "checked at most once a second"
        s._db._next_space_check = 0
        assert not s.disk_full and ballast.exists()
        s.update("v1/pods", a)
    finally:
        s.close_db()
    s2 = Store(path=path)
    try:
        assert s2.try_get("v1/events", "default", "e1") == ev and s2.try_get("v1/pods", "default", "b") is None
    finally:
        s2.close_db()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount a small tmpfs")
def test_a_really_full_filesystem(tmp_path):
    mnt = Path(tempfile.mkdtemp(prefix="kperflab-full-", dir=tmp_path))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        path = mnt / "store" / "state.db"
        s = Store(path=path, ballast=512 << 10)
        assert storedb.ballast_path(path).exists()
        filler = mnt / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as f:  # fill what is left
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        made, err = 0, None
        for i in range(200):
            try:
                s.create("v1/configmaps", cm(f"cm{i}", 32 << 10))
                made += 1
            except APIError as e:
                err = e
                break
        assert err is not None and err.code == 500 and "state directory is full" in err.message, err
        assert s.disk_full and made >= 1, "the reserve let some writes through before the refusal"
        assert not storedb.ballast_path(path).exists()
        assert len(s.list("v1/configmaps")[0]) == made and s.try_get("v1/configmaps", "default", f"cm{made}") is None
        filler.unlink()
        s._db._next_space_check = 0
        assert not s.disk_full and storedb.ballast_path(path).exists()
        s.create("v1/configmaps", cm("after"))
        s.close_db()
        s2 = Store(path=path)
        assert len(s2.list("v1/configmaps")[0]) == made + 1
        s2.close_db()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_reads_without_copies_and_event_json():
    s = Store()
    s.create("v1/pods", pod("a", app="x"))
    stored = s.get("v1/pods", "default", "a", copy=False)
    assert s.get("v1/pods", "default", "a", copy=False) is stored
    assert s.list("v1/pods", copy=False)[0][0] is stored and s.try_get("v1/pods", "default", "a", copy=False) is stored
    mine = s.get("v1/pods", "default", "a")
    mine["metadata"]["labels"]["app"] = "changed"
    assert stored["metadata"]["labels"]["app"] == "x", "a default read is a copy"
    evs = list(s.watch_events("v1/pods", None, "1", lambda o: True, timeout=0.1))
    assert [t for t, _ in evs] == ["ADDED"] and evs[0][1].obj is stored
    raw = evs[0][1].json()
    assert json.loads(raw) == stored and evs[0][1].json() is raw


def test_run_on_change_coalesces_a_burst_and_still_reacts_fast():
    s = Store()
    stop = threading.Event()
    passes = []
    th = threading.Thread(target=run_on_change, args=(s, stop, lambda: passes.append(time.monotonic()), "t", 0.05))
    th.start()
    try:
        time.sleep(0.2)
        n0 = len(passes)
        t0 = time.monotonic()
        for i in range(200):  # a burst of writes over ~0.2 s
            s.create("v1/configmaps", cm(f"c{i}"))
            time.sleep(0.001)
        burst = time.monotonic() - t0
        time.sleep(0.2)
        during = len(passes) - n0
        assert 1 <= during <= burst / 0.05 + 3, f"{during} passes for 200 writes in {burst:.2f}s"
        # an isolated change is acted on within min_interval (+ scheduling)
        time.sleep(0.1)
        n1, t1 = len(passes), time.monotonic()
        s.create("v1/configmaps", cm("one"))
        while len(passes) == n1 and time.monotonic() - t1 < 2:
            time.sleep(0.002)
        assert passes[n1] - t1 < 0.5, "acted on within min_interval (plus scheduling on a busy machine)"
    finally:
        stop.set()
        th.join(5)


def test_events_expire_an_hour_after_they_were_last_recorded():
    """kube-apiserver's --event-ttl (1 h): the durable store must not keep every event for ever."""
    from kperflab.lab.controllers import Controllers
    from kperflab.lab.events import Recorder

    now = [1_800_000_000.0]
    store = Store(clock=lambda: now[0])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u"}}
    Recorder(store, "kubelet").event(pod, "Normal", "Pulled", "old news")
    now[0] += 1800
    Recorder(store, "kubelet").event(pod, "Normal", "Started", "recent")
    ctl = Controllers(store, "node")
    now[0] += 1801  # the first event is 3601 s old, the second 1801 s
    ctl.expire_events()
    left = [e["reason"] for e in store.list("v1/events")[0]]
    assert left == ["Started"]
    now[0] += 1800  # checked again only after a minute: now both are past the hour
    ctl.expire_events()
    assert store.list("v1/events")[0] == []
