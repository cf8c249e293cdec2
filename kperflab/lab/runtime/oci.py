"""The OCI runtime: each container runs from an OCI bundle, by crun, on its image's layers.

A pod is a *sandbox* — a holder process (`sleep infinity`) in new network, IPC and UTS namespaces, its hostname the
pod's name, loopback up — and containers that join those three namespaces and get their own PID and mount
namespaces, as containerd's pause sandbox does. A container's root filesystem is an overlay mount: the image's
unpacked layers below (top layer first), a writable layer of its own above; its `config.json` carries the process
(command and args combined with the image's ENTRYPOINT/CMD as Kubernetes does, env, working dir, user), the mounts
(/proc, /dev, /sys, /etc/hosts, /etc/hostname, /etc/resolv.conf, and the pod's volumes as bind mounts at their
mountPaths), the namespaces and the cgroup with the limits the kubelet computes (``linux.cgroupsPath`` = the lab's
container cgroup, ``linux.resources`` = its limits). The shim
(`shim`) is the container's parent; the kubelet reads its output and exit code, then `crun delete`s the container.

Everything lives under the lab's run dir: ``crun/`` (crun's state, ``--root``), ``bundles/<id>/`` (config.json, the
rootfs mount point, the writable layer), so a crash recovery removes it by the lab's id.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from ...host import hybrid_cgroup2_controllers, overlayfs
from ..cgroups import CFS_PERIOD_US, Driver, Limits, quota_from_milli, shares_from_milli
from ..labs import LAB_ENV
from .process import ExecProcess, LogWriter, Process, pipe_ends, run_sync

CRUN = "crun"
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
                "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
                "CAP_AUDIT_WRITE"]  # containerd's default set for a container that asks for nothing
MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
          "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
CLONE_NEWNET = 0x40000000


def crun_version() -> str | None:
    path = shutil.which(CRUN)
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


def unavailable_reason(driver: Driver | None) -> str:
    """Why the OCI runtime cannot run here ("" when it can): it needs root, cgroups, crun and overlayfs."""
    if os.geteuid() != 0:
        return "the lab is not running as root"
    if driver is None:
        return "no usable cgroup hierarchy"
    if not shutil.which(CRUN):
        return "crun is not installed (apt-get install crun)"
    if not overlayfs():
        return "the kernel has no overlayfs"
    return ""


def combine_command(entrypoint: list[str] | None, cmd: list[str] | None, command: list[str] | None,
                    args: list[str] | None) -> list[str]:
    """Kubernetes' rule for a container's argv from the image's ENTRYPOINT/CMD and the pod's command/args.

    >>> combine_command(["/ep"], ["a", "b"], None, None)
    ['/ep', 'a', 'b']
    >>> combine_command(["/ep"], ["a", "b"], ["/c"], None)
    ['/c']
    >>> combine_command(["/ep"], ["a", "b"], None, ["x"])
    ['/ep', 'x']
    >>> combine_command(["/ep"], ["a"], ["/c"], ["x"])
    ['/c', 'x']
    """
    entrypoint = [e for e in (entrypoint or []) if e != ""] if entrypoint != [""] else []
    if command:
        return list(command) + list(args or [])
    if args:
        return entrypoint + list(args)
    return entrypoint + list(cmd or [])


NOBODY = 65534


def _image_file(lowerdirs: list[Path] | list[str], rel: str) -> str:
    """A file of the image as its merged root shows it: the topmost layer that has it (a whiteout hides it)."""
    for d in lowerdirs:
        p = Path(d) / rel
        try:
            if p.is_char_device() and os.stat(p).st_rdev == 0:  # an overlay whiteout
                return ""
            if p.is_file():
                return p.read_text(errors="replace")
        except OSError:
            continue
    return ""


def container_user(lowerdirs: list[Path] | list[str], sec: dict[str, Any], image_user: str) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) as the kubelet and containerd decide: ``runAsUser`` wins, else the image's USER
    (a number, or a name looked up in the image's /etc/passwd), else — the lab's choice — an unprivileged ``nobody``;
    the group from ``runAsGroup``, else the user's primary group in the image's /etc/passwd, else the uid's number.
    Raises ValueError with the kubelet's words when it cannot be resolved or ``runAsNonRoot`` is violated."""
    passwd = [line.split(":") for line in _image_file(lowerdirs, "etc/passwd").splitlines() if line.count(":") >= 6]
    user = image_user.split(":")[0] if image_user else ""
    if sec.get("runAsUser") is not None:
        uid = int(sec["runAsUser"])
    elif user:
        if user.isdigit():
            uid = int(user)
        else:
            row = next((r for r in passwd if r[0] == user), None)
            if row is None:
                raise ValueError(f'unable to find user {user}: no matching entries in passwd file')
            uid = int(row[2])
    else:
        uid = NOBODY
    if sec.get("runAsNonRoot") and uid == 0:
        raise ValueError("container has runAsNonRoot and image will run as root")
    if sec.get("runAsGroup") is not None:
        gid = int(sec["runAsGroup"])
    else:
        row = next((r for r in passwd if r[2] == str(uid)), None)
        gid = int(row[3]) if row else uid
    groups = [int(g) for g in sec.get("supplementalGroups") or []]
    if sec.get("fsGroup") is not None:
        groups.append(int(sec["fsGroup"]))
    return uid, gid, sorted(set(groups))


def oci_resources(limits: Limits) -> dict[str, Any]:
    """``linux.resources`` from the kubelet's limits (shares from requests, a CFS quota from limits)."""
    res: dict[str, Any] = {"cpu": {"shares": shares_from_milli(limits.cpu_request_milli)}}
    if limits.cpu_limit_milli:
        res["cpu"].update(quota=quota_from_milli(limits.cpu_limit_milli), period=CFS_PERIOD_US)
    if limits.memory_limit:
        res["memory"] = {"limit": limits.memory_limit}
    if limits.pids_limit:
        res["pids"] = {"limit": limits.pids_limit}
    return res


def bundle_config(*, argv: list[str], env: dict[str, str], cwd: str, uid: int, gid: int, additional_gids: list[int],
                  readonly: bool, tty: bool, sandbox_pid: int, cgroups_path: str, limits: Limits, etc: dict[str, Path],
                  hostname: str, volume_mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The OCI runtime spec (config.json) of one container. ``volume_mounts``: the pod's volumes as the kubelet
    resolved them (bind mounts, parents first); a volume mounted at /etc/hosts (…) replaces the kubelet's file there."""
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]
    volume_mounts = volume_mounts or []
    taken = {m["destination"] for m in volume_mounts}
    for dest, src in etc.items():
        if dest not in taken:
            mounts.append({"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "rprivate", "ro"]})
    mounts += volume_mounts
    ns = f"/proc/{sandbox_pid}/ns"
    nofile = min(1048576, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # containerd's value, where the host allows it
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": tty, "user": {"uid": uid, "gid": gid, "additionalGids": additional_gids},
                    "args": argv, "env": [f"{k}={v}" for k, v in env.items()], "cwd": cwd,
                    "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
                    "noNewPrivileges": False, "oomScoreAdj": 1000 if not limits.memory_limit else 999},
        "root": {"path": "rootfs", "readonly": readonly},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc", "path": f"{ns}/ipc"},
                           {"type": "uts", "path": f"{ns}/uts"}, {"type": "network", "path": f"{ns}/net"}],
            "cgroupsPath": "/" + cgroups_path.lstrip("/"),
            "resources": oci_resources(limits),
            "maskedPaths": MASKED, "readonlyPaths": READONLY,
        },
    }


class CrunRuntime:
    """Sandboxes and containers by crun. ``run_dir`` is the lab's own (``$KPERFLAB_HOME/lab/run/<id>``)."""

    name = "crun"

    def __init__(self, driver: Driver, lab_id: str, run_dir: Path) -> None:
        self.driver = driver
        self.lab_id = lab_id
        self.run_dir = run_dir
        self.root = run_dir / "crun"
        self.bundles = run_dir / "bundles"
        self.version = crun_version() or "crun"
        self.hide_unified = bool(hybrid_cgroup2_controllers())
        self.root.mkdir(parents=True, exist_ok=True)
        self.bundles.mkdir(parents=True, exist_ok=True)

    # -- crun commands -------------------------------------------------------------------------------
    def crun(self, *args: str, check: bool = True, timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        """Run a crun command (in a mount namespace without the cgroup2 mount where the layout needs it)."""
        argv = [CRUN, "--root", str(self.root), *args]
        if self.hide_unified:
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "sh", *argv]
        out = subprocess.run(argv, capture_output=True, timeout=timeout, **kw)
        if check and out.returncode != 0:
            raise OSError(f"crun {args[0]} failed: {out.stderr.decode(errors='replace').strip()[:300]}")
        return out

    # -- sandboxes -----------------------------------------------------------------------------------
    def sandbox_argv(self, hostname: str) -> list[str]:
        """The holder of the pod's network, IPC and UTS namespaces: its hostname set, loopback up, then asleep."""
        script = 'hostname "$1" && ip link set lo up && exec sleep infinity'
        return ["unshare", "--net", "--ipc", "--uts", "--", "sh", "-c", script, "sandbox", hostname]

    # -- containers ----------------------------------------------------------------------------------
    def create_bundle(self, cid: str, lowerdirs: list[Path], config: dict[str, Any], *, short: list[str] | None = None,
                      store_root: Path | None = None) -> Path:
        """config.json and the overlay root filesystem (image layers below, top first; the container's writable layer
        above). ``short``/``store_root``: the store's short links for the lower dirs, so that an image of many layers
        fits the mount options' page (mount runs in ``store_root``, as Docker's overlay2 does)."""
        bundle = self.bundles / cid
        upper, work, rootfs = bundle / "upper", bundle / "work", bundle / "rootfs"
        for d in (upper, work, rootfs):
            d.mkdir(parents=True, exist_ok=True)
        lower = ":".join(short) if short and store_root else ":".join(str(p) for p in lowerdirs)
        opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
        try:
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(rootfs)], check=True, capture_output=True,
                           cwd=str(store_root) if short and store_root else None)
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(bundle, ignore_errors=True)
            raise OSError(f"mounting the container's root failed: {exc.stderr.decode(errors='replace').strip()}") from None
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle

    def start(self, cid: str, bundle: Path, cgroup: str, logs: LogWriter, stdin: int | None = None,
              console: Path | None = None) -> Process:
        """Start the container through its shim; the returned process ends when the container does. With
        ``console`` (its config says ``terminal``), crun sends the pty master to that socket."""
        argv = [sys.executable, "-S", "-E", str(Path(__file__).with_name("shim.py")), str(self.root), str(bundle), cid]
        if self.hide_unified:
            argv.append("--hide-unified")
        if console is not None:
            argv += ["--console-socket", str(console)]
        ready_r, ready_w = os.pipe()
        argv += ["--ready-fd", str(ready_w)]
        try:
            popen = subprocess.Popen(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
                                     pass_fds=(ready_w,),
                                     env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), LAB_ENV: self.lab_id})
        finally:
            os.close(ready_w)
        assert popen.stdout is not None and popen.stderr is not None
        logs.attach(popen.stdout, "stdout")
        logs.attach(popen.stderr, "stderr")
        proc = Process(popen, cgroup, logs, cid=cid, bundle=bundle)
        proc.ready = ready_r
        return proc

    def wait_started(self, proc: Process, timeout: float = 30.0) -> bool:
        """Whether `crun start` succeeded (the shim says so on its ready pipe); False when the shim ended first."""
        fd = proc.ready
        if fd is None:
            return True
        try:
            r, _, _ = select.select([fd], [], [], timeout)
            return bool(r) and os.read(fd, 64).startswith(b"started")
        finally:
            os.close(fd)
            proc.ready = None

    def console_socket(self) -> Path:
        """A path for a console socket short enough for AF_UNIX (108 bytes; the bundle's path is longer), private to
        root; it lives only until crun has connected."""
        d = Path("/run/kperflab/console")
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return d / f"{self.lab_id[:8]}-{os.urandom(6).hex()}.sock"

    def start_tty(self, cid: str, bundle: Path, cgroup: str, logs: LogWriter) -> tuple[Process, int]:
        """Start a container whose process has a terminal (``spec.tty``): crun makes the pty and sends its master to
        a console socket; the container's output (one stream) is read from it for the logs. Returns the process and
        the master (kept by the kubelet for `kubectl attach`)."""
        sock = self.console_socket()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(str(sock))
            server.listen(1)
            proc = self.start(cid, bundle, cgroup, logs, console=sock)
            try:
                master = receive_pty(server)
            except OSError as exc:
                self.kill_tree(proc)
                raise OSError(f"no terminal from crun: {exc}") from None
        finally:
            server.close()
            sock.unlink(missing_ok=True)
        logs.attach(os.dup(master), "stdout")
        return proc, master

    def stop(self, proc: Process, sig: int) -> None:
        if proc.cid:
            self.crun("kill", proc.cid, str(sig), check=False)

    def kill_tree(self, proc: Process) -> None:
        if proc.cid:
            self.crun("kill", "--all", proc.cid, "KILL", check=False)
        if proc.cgroup:
            self.driver.kill_all(proc.cgroup)
        try:
            proc.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def remove(self, proc: Process, keep_bundle: bool = False) -> None:
        """Delete the container from crun, unmount its root, remove its bundle (the writable layer with it;
        ``keep_bundle``: the caller removes it later, by `remove_bundle`, as container garbage collection)."""
        if proc.cid:
            self.crun("delete", "--force", proc.cid, check=False)
        if proc.bundle is not None:
            subprocess.run(["umount", "-l", str(proc.bundle / "rootfs")], capture_output=True)
            if not keep_bundle:
                self.remove_bundle(proc)

    @staticmethod
    def remove_bundle(proc: Process) -> None:
        if proc.bundle is not None:
            shutil.rmtree(proc.bundle, ignore_errors=True)

    # -- streams ---------------------------------------------------------------------------------------
    def exec(self, proc: Process, argv: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool,
             size: tuple[int, int] | None = None) -> ExecProcess:
        """`crun exec` of ``argv`` in the container, with pipes — or, with ``tty``, a pty that crun makes in the
        container and hands over on a console socket (the process's controlling terminal, as kubelet's exec -t)."""
        cmd, spec = self.exec_argv(proc, argv, tty)
        if not tty:
            pipe, null = subprocess.PIPE, subprocess.DEVNULL
            popen = subprocess.Popen(cmd, stdin=pipe if stdin else null, stdout=pipe if stdout else null,
                                     stderr=pipe if stderr else null, start_new_session=True, close_fds=True)
            return ExecProcess(popen, *pipe_ends(popen), cleanup=[spec])
        assert proc.bundle is not None
        sock = self.console_socket()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(str(sock))
            server.listen(1)
            i = cmd.index("exec") + 1
            cmd[i:i] = ["--tty", "--console-socket", str(sock)]
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True, close_fds=True)
            try:
                master = receive_pty(server)
            except OSError:
                popen.kill()
                err = popen.communicate(timeout=5)[1].decode(errors="replace").strip()
                raise OSError(err or "crun exec gave no terminal") from None
        finally:
            server.close()
            sock.unlink(missing_ok=True)
        if size:
            set_winsize(master, *size)
        if popen.stderr is not None:
            popen.stderr.close()
            popen.stderr = None
        return ExecProcess(popen, None, master, None, tty=master, cleanup=[spec])

    def exec_sync(self, proc: Process, argv: list[str], timeout: float) -> tuple[int, bytes]:
        """CRI's ExecSync (the kubelet's exec probes): ``argv`` in the container as `kubectl exec` runs it, waited for
        at most ``timeout`` seconds; (exit code, stdout then stderr, as the kubelet's RunInContainer joins them). On
        timeout the process crun started is killed (by the pid crun wrote) and TimeoutError raised. A command crun
        cannot start raises OSError with crun's words, as containerd's exec errors are not exit codes."""
        cmd, spec = self.exec_argv(proc, argv, False)
        pid_file = spec.with_suffix(".pid")
        i = cmd.index("exec") + 1
        cmd[i:i] = ["--pid-file", str(pid_file)]

        def kill() -> None:
            try:
                os.kill(int(pid_file.read_text().strip()), 9)
            except (OSError, ValueError):
                pass
            popen.kill()

        try:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True, close_fds=True)
            code, out, err = run_sync(popen, timeout, kill)
        finally:
            spec.unlink(missing_ok=True)
            pid_file.unlink(missing_ok=True)
        # crun's own failures (the executable missing or not executable: 255; the container gone: 1 with its state
        # file missing) are errors, as containerd's are, not the command's exit
        if not out and (code == 255 or (code == 1 and err.startswith(b"error opening file `"))):
            raise OSError("OCI runtime exec failed: " + err.decode(errors="replace").strip().replace("\n", ": "))
        return code, out + err

    def exec_argv(self, proc: Process, argv: list[str], tty: bool, env_extra: dict[str, str] | None = None) -> tuple[list[str], Path]:
        """A `crun exec` command line running ``argv`` with the container's own user, env and working dir (as CRI
        does), and the process.json it reads."""
        assert proc.bundle is not None and proc.cid
        process = json.loads((proc.bundle / "config.json").read_text())["process"]
        process = {**process, "args": argv, "terminal": tty}
        if tty:
            process["env"] = [*process["env"], "TERM=xterm"]
        spec = proc.bundle / f"exec-{os.urandom(4).hex()}.json"
        spec.write_text(json.dumps(process))
        cmd = [CRUN, "--root", str(self.root), "exec", "--process", str(spec), proc.cid]
        if self.hide_unified:
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "sh", *cmd]
        return cmd, spec


def dial_in_netns(pid: int, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` inside the network namespace of process ``pid`` (a pod's sandbox): made
    on a thread of its own that enters the namespace (setns), so no other thread of the lab moves."""
    result: dict[str, Any] = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            result["sock"] = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as exc:
            result["error"] = exc

    t = threading.Thread(target=run, name="dial-netns", daemon=True)
    t.start()
    t.join(timeout + 1)
    if "error" in result:
        raise result["error"]
    if "sock" not in result:
        raise TimeoutError(f"connecting to port {port} in the pod timed out")
    return result["sock"]


def receive_pty(server: socket.socket, timeout: float = 10.0) -> int:
    """Accept crun's connection on a console socket and receive the pty master it sends (SCM_RIGHTS)."""
    server.settimeout(timeout)
    conn, _ = server.accept()
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    if not fds:
        raise OSError("crun sent no terminal")
    return fds[0]


def set_winsize(fd: int, width: int, height: int) -> None:
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
