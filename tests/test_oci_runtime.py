"""The OCI runtime on its own (crun, an overlay root on a one-layer busybox image made here, the shim, a sandbox):
PID 1 is the command, what the container writes stays in its writable layer, limits and OOM kills are the kernel's,
exec runs as the container's user in its namespaces, a port in the pod's network namespace is reachable, and nothing is
left behind."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kperflab.lab import cgroups
from kperflab.lab.runtime.oci import (
    CrunRuntime,
    bundle_config,
    combine_command,
    container_user,
    dial_in_netns,
    unavailable_reason,
)
from kperflab.lab.runtime.process import LogWriter, Runtime, read_log

DRIVER = cgroups.detect()
pytestmark = [pytest.mark.lab, pytest.mark.skipif(bool(unavailable_reason(DRIVER)) or not shutil.which("busybox"),
                                                  reason=unavailable_reason(DRIVER) or "busybox is not installed")]
APPLETS = ("sh", "cat", "echo", "sleep", "dd", "id", "hostname", "ps", "nc", "touch", "ls")


@pytest.fixture(scope="module")
def layer(tmp_path_factory) -> Path:
    """A one-layer image: busybox and its applets, /etc/passwd with a named user."""
    d = tmp_path_factory.mktemp("busybox-layer")
    (d / "bin").mkdir()
    shutil.copy(shutil.which("busybox"), d / "bin" / "busybox")
    for a in APPLETS:
        (d / "bin" / a).symlink_to("busybox")
    for sub in ("proc", "dev", "sys", "etc"):
        (d / sub).mkdir()
    (d / "tmp").mkdir(mode=0o1777)
    (d / "tmp").chmod(0o1777)
    (d / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
                                      "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
    return d


@pytest.fixture
def pod(tmp_path, layer):
    lab_id = secrets.token_hex(8)
    rt = CrunRuntime(DRIVER, lab_id, tmp_path / "run")
    procs = Runtime(DRIVER, lab_id)
    cg = f"{cgroups.pods_root(lab_id)}/podtest"
    DRIVER.create(cg, cgroups.Limits())
    DRIVER.create(cg + "/sandbox", cgroups.Limits())
    sandbox = procs.spawn(rt.sandbox_argv("mypod"), cg + "/sandbox")
    etc = tmp_path / "etc"
    etc.mkdir()
    for name, text in (("hosts", "127.0.0.1 localhost\n"), ("hostname", "mypod\n"), ("resolv.conf", "nameserver 10.96.0.10\n")):
        (etc / name).write_text(text)
    started = []

    def start(argv, limits=None, uid=65534, readonly=False):
        limits = limits or cgroups.Limits()
        cid = secrets.token_hex(8)
        cgroup = f"{cg}/{cid}"
        DRIVER.create(cgroup, limits)
        cfg = bundle_config(argv=argv, env={"PATH": "/bin", "HOSTNAME": "mypod"}, cwd="/", uid=uid, gid=uid,
                            additional_gids=[], readonly=readonly, tty=False, sandbox_pid=sandbox.pid, cgroups_path=cgroup,
                            limits=limits, etc={f"/etc/{n}": etc / n for n in ("hosts", "hostname", "resolv.conf")},
                            hostname="mypod")
        p = rt.start(cid, rt.create_bundle(cid, [layer], cfg), cgroup, LogWriter(tmp_path / "logs" / f"{cid}.log"))
        started.append(p)
        return p

    yield rt, start, sandbox
    for p in started:
        rt.kill_tree(p)
        rt.remove(p)
    procs.kill_tree(sandbox)
    DRIVER.kill_all(cgroups.lab_root(lab_id))
    DRIVER.remove(cgroups.lab_root(lab_id))
    DRIVER.remove_parent_if_empty()
    assert not [m for m in Path("/proc/self/mounts").read_text().splitlines() if str(tmp_path) in m], "a mount was left"
    assert not list((tmp_path / "run" / "bundles").iterdir()), "a bundle was left"


def _finish(p, timeout=30):
    code = p.popen.wait(timeout)
    p.logs.close()
    return code, [line.decode() for _, _, line in read_log(p.logs.path)]


def test_pid1_user_hostname_and_an_isolated_root(pod):
    rt, start, _ = pod
    p = start(["sh", "-c", "echo pid=$$ uid=$(id -u) host=$(hostname); touch /tmp/mine && echo wrote; exit 3"])
    code, lines = _finish(p)
    assert code == 3
    assert "pid=1 uid=65534 host=mypod" in lines and "wrote" in lines
    assert (p.bundle / "upper" / "tmp" / "mine").exists(), "the write lands in the container's writable layer"
    assert not Path("/tmp/mine").exists()


def test_a_memory_limit_is_the_kernels(pod):
    rt, start, _ = pod
    p = start(["dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"], cgroups.Limits(memory_limit=32 << 20))
    code, _ = _finish(p)
    assert code == 137 and DRIVER.oom_kills(p.cgroup) >= 1


def test_a_cpu_limit_is_written_to_the_cgroup(pod):
    rt, start, _ = pod
    p = start(["sleep", "30"], cgroups.Limits(cpu_limit_milli=250))
    time.sleep(0.3)
    assert DRIVER.stats(p.cgroup)["cpu_quota_us"] == 25_000


def test_exec_runs_as_the_container_in_its_namespaces_and_dial_reaches_the_pod(pod):
    rt, start, sandbox = pod
    p = start(["sh", "-c", "nc -l -p 8080 -e echo hello; sleep 30"])
    deadline = time.time() + 10
    while True:
        try:
            s = dial_in_netns(sandbox.pid, 8080)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    assert s.recv(100) == b"hello\n"
    s.close()
    cmd, spec = rt.exec_argv(p, ["sh", "-c", "echo $(id -u) $(hostname); ps -o pid,args"], False)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "65534 mypod"
    assert "1 sleep 30" in " ".join(out.stdout.split()), out.stdout
    spec.unlink()
    with pytest.raises(OSError):
        dial_in_netns(sandbox.pid, 9)  # nothing listens: refused, inside the pod's namespace
    assert os.getpid() != 1


def test_argv_and_user_rules(layer):
    assert combine_command(["/ep"], ["a"], None, ["x"]) == ["/ep", "x"]
    assert combine_command([""], ["sh"], None, None) == ["sh"]
    assert container_user([layer], {}, "") == (65534, 65534, [])
    assert container_user([layer], {}, "app") == (1000, 1001, [])
    assert container_user([layer], {"runAsUser": 7, "runAsGroup": 8, "fsGroup": 9}, "app") == (7, 8, [9])
    with pytest.raises(ValueError, match="unable to find user ghost"):
        container_user([layer], {}, "ghost")
    with pytest.raises(ValueError, match="runAsNonRoot"):
        container_user([layer], {"runAsNonRoot": True}, "0")
