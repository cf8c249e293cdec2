"""The container shim: the parent of one container's init, as containerd-shim is.

    python kperflab/lab/runtime/shim.py ROOT BUNDLE ID [--hide-unified] [--console-socket PATH] [--ready-fd N]

`crun create` forks the container's init and exits, so the init is re-parented to the nearest *subreaper*. This small
process is that subreaper: it becomes one (`PR_SET_CHILD_SUBREAPER`), runs `crun create` and `crun start`, waits for the
init (after writing "started" to ``--ready-fd`` once `crun start` succeeded, so the kubelet reports Running only
then), and exits with the init's exit code (128 + signal when it was killed: 137 for the OOM killer's SIGKILL). The
container is not deleted here — the kubelet reads its cgroup (OOM kills) first, then runs `crun delete` — and the
container's stdio is the shim's own, inherited through crun, so the kubelet reads the container's output from the
shim's pipes. The lab itself never becomes a subreaper, so no orphan of anything else ever lands on it.

With ``--hide-unified`` the shim first moves into a private mount namespace and unmounts ``/sys/fs/cgroup/unified``:
crun refuses a hybrid cgroup layout whose cgroup2 hierarchy holds controllers ("cgroups in hybrid mode not
supported"); without that mount it sees a plain cgroup v1 machine. The host's mounts are not touched.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
UNIFIED = b"/sys/fs/cgroup/unified"


def hide_unified(libc: ctypes.CDLL) -> None:
    """A private mount namespace without the cgroup2 mount (see the module docstring)."""
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    libc.umount2(UNIFIED, 2)  # MNT_DETACH; not mounted is fine


def run(argv: list[str], *, devnull_stdin: bool = False) -> int:
    """Run a command and wait for it (fork/exec by hand: importing subprocess would add ~30 ms to every container
    start, the shim's whole Python start-up)."""
    pid = os.fork()
    if pid == 0:
        try:
            if devnull_stdin:
                fd = os.open(os.devnull, os.O_RDONLY)
                os.dup2(fd, 0)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> int:
    root, bundle, cid = argv[:3]
    libc = ctypes.CDLL(None, use_errno=True)
    if "--hide-unified" in argv[3:]:
        hide_unified(libc)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    pid_file = os.path.join(bundle, "init.pid")
    console = argv[argv.index("--console-socket") + 1:][:1] if "--console-socket" in argv else []
    created = run(["crun", "--root", root, "create", "--bundle", bundle, "--pid-file", pid_file,
                   *(["--console-socket", console[0]] if console else []), cid])
    if created != 0:
        return 128  # crun printed why on our stderr: the container's log
    with open(pid_file) as f:
        init = int(f.read().strip())
    started = run(["crun", "--root", root, "start", cid], devnull_stdin=True)
    if started != 0:
        return 128
    if "--ready-fd" in argv:
        ready = int(argv[argv.index("--ready-fd") + 1])
        os.write(ready, b"started\n")
        os.close(ready)
    os.close(0)
    code = 255
    while True:  # reap everything that lands here; the init's status is the container's
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == init:
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
