"""The lab's container runtime: which images it can run, and how a container becomes a process tree in its
cgroup, inside the pod's mount namespace, as an unprivileged user, with its output kept as CRI log lines."""

from __future__ import annotations

import logging
import os
import secrets
import select
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..cgroups import Driver
from ..labs import LAB_ENV

log = logging.getLogger("kperflab.lab.runtime")

NOBODY = 65534
RUNNABLE = "python:*, busybox*, alpine*, registry.k8s.io/pause*"


@dataclass(frozen=True)
class Image:
    family: str  # python, shell, pause
    default_command: tuple[str, ...]


def image_family(image: str) -> Image | None:
    """What the lab runs for an image reference, or None when it cannot run it.

    >>> image_family("python:3.12-slim").family
    'python'
    >>> image_family("docker.io/library/busybox:1.36").family
    'shell'
    >>> image_family("nginx") is None
    True
    """
    ref = image.strip()
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "library/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
    name = ref.split("@")[0].rsplit(":", 1)[0] if ":" in ref.split("/")[-1] else ref.split("@")[0]
    if name == "python":
        return Image("python", ("python3",))
    if name in ("busybox", "alpine"):
        return Image("shell", ("sh",))
    if name in ("registry.k8s.io/pause", "k8s.gcr.io/pause"):
        return Image("pause", ("sleep", "infinity"))
    return None


def image_id(image: str) -> str:
    import hashlib

    return f"{image.split('@')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def pick_python(uid: int | None) -> str:
    """The first interpreter that ``uid`` can run: the lab's own, else the system's."""
    candidates = [sys.executable, "/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3") or ""]
    for c in dict.fromkeys(x for x in candidates if x):
        try:
            kw: dict[str, Any] = {"user": uid, "group": uid, "extra_groups": []} if uid not in (None, os.geteuid()) else {}
            if subprocess.run([c, "-c", "pass"], capture_output=True, timeout=20, cwd="/", **kw).returncode == 0:
                return c
        except (OSError, subprocess.SubprocessError):
            continue
    return sys.executable


def resolve_command(img: Image, command: list[str] | None, args: list[str] | None, python: str) -> list[str]:
    """command/args as Kubernetes combines them with the image's defaults; `python`/`python3` run the lab's
    interpreter for python images."""
    # the images the lab knows have no ENTRYPOINT but pause's: args replace their CMD
    if command:
        argv = list(command) + list(args or [])
    elif args:
        argv = (list(img.default_command) if img.family == "pause" else []) + list(args)
    else:
        argv = list(img.default_command)
    if img.family == "python" and argv and Path(argv[0]).name.startswith("python"):
        argv[0] = python
    return argv


class LogWriter:
    """Copies a process's stdout and stderr into a CRI-format log file (`<RFC3339Nano> <stream> <P|F> <text>`: a line
    the process has not finished yet is written as a partial ``P`` entry only when it grows past 16 KiB, as the CRI
    does) and, as they come, to whoever attaches (`subscribe`: `kubectl attach`)."""

    MAX_LINE = 16 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab", buffering=0)
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self._subscribers: dict[bytes, list[int]] = {b"stdout": [], b"stderr": []}
        self.ended = threading.Event()  # every stream reached its end
        self.dropped = 0  # bytes of log entries the file could not take (a full disk)
        self._warned = False

    def attach(self, stream: IO[bytes] | int, name: str) -> None:
        fd = stream if isinstance(stream, int) else os.dup(stream.fileno())
        if not isinstance(stream, int):
            stream.close()
        t = threading.Thread(target=self._pump, args=(fd, name.encode()), daemon=True, name=f"log-{name}")
        t.start()
        self.threads.append(t)

    def subscribe(self, name: str) -> int:
        """A pipe that gets this stream's output from now on; the caller reads (and closes) the returned end."""
        r, w = os.pipe()
        os.set_blocking(w, False)
        with self._lock:
            if self.ended.is_set():
                os.close(w)
            else:
                self._subscribers[name.encode()].append(w)
        return r

    def _stamp(self) -> bytes:
        ts = time.time()
        return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e9):09d}Z").encode()

    def _forward(self, name: bytes, data: bytes) -> None:
        with self._lock:
            subs = list(self._subscribers[name])
        for w in subs:
            try:
                os.write(w, data)
            except BlockingIOError:
                pass  # a slow reader loses output rather than stalling the container's log
            except OSError:
                with self._lock:
                    if w in self._subscribers[name]:
                        self._subscribers[name].remove(w)
                os.close(w)

    def _write(self, entry: bytes) -> None:
        """Append to the log file; a full disk (ENOSPC) or a quota drops the lines, never the container's output pipe
        (as a CRI runtime's log writer: the process goes on, its lines are lost)."""
        with self._lock:
            try:
                self._file.write(entry)
            except OSError as exc:
                self.dropped += len(entry)
                if not self._warned:
                    self._warned = True
                    log.warning("log %s: lines dropped (%s)", self.path, exc.strerror or exc)

    def _pump(self, fd: int, name: bytes) -> None:
        pending = b""
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:  # an attach session made this (shared) pty description non-blocking
                    select.select([fd], [], [], 1.0)
                    continue
                except OSError:  # EIO: the other side of a pty closed
                    data = b""
                if not data:
                    break
                self._forward(name, data)
                pending += data
                *lines, pending = pending.split(b"\n")
                chunks = [b"F %s" % line.removesuffix(b"\r") for line in lines]
                while len(pending) > self.MAX_LINE:
                    chunks.append(b"P %s" % pending[: self.MAX_LINE])
                    pending = pending[self.MAX_LINE:]
                if chunks:
                    stamp = self._stamp()
                    self._write(b"".join(b"%s %s %s\n" % (stamp, name, c) for c in chunks))
            if pending:
                self._write(b"%s %s F %s\n" % (self._stamp(), name, pending))
        finally:
            os.close(fd)
            with self._lock:
                subs, self._subscribers[name] = self._subscribers[name], []
            for w in subs:
                os.close(w)

    def close(self, timeout: float = 2.0) -> None:
        for t in self.threads:
            t.join(timeout)
        with self._lock:
            self.ended.set()
            self._file.close()


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    cgroup: str | None
    logs: LogWriter | None = None
    started: float = field(default_factory=time.time)
    cid: str = ""  # the OCI runtime's container id ("" for a plain process)
    bundle: Path | None = None  # the OCI bundle (config.json, rootfs mount, writable layer)
    ready: int | None = None  # the OCI shim's "started" pipe, until read

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class ExecProcess:
    """A process started in a container: its `Popen` and the ends the streaming session gets (owned by it)."""

    popen: subprocess.Popen[bytes]
    stdin: int | None
    stdout: int | None
    stderr: int | None
    tty: int | None = None  # the pty master (stdin and stdout at once)
    cleanup: list[Path] = field(default_factory=list)

    def wait(self) -> int:
        code = self.popen.wait()
        for p in self.cleanup:
            p.unlink(missing_ok=True)
        return 128 - code if code < 0 else code


def pipe_ends(popen: subprocess.Popen[bytes]) -> tuple[int | None, int | None, int | None]:
    """Our own copies of a Popen's pipe ends (the session closes them), the Popen's file objects closed."""
    out = []
    for f in (popen.stdin, popen.stdout, popen.stderr):
        if f is None:
            out.append(None)
        else:
            out.append(os.dup(f.fileno()))
            f.close()
    popen.stdin = popen.stdout = popen.stderr = None
    return out[0], out[1], out[2]


def run_sync(popen: subprocess.Popen[bytes], timeout: float, kill: Any) -> tuple[int, bytes, bytes]:
    """CRI's ExecSync on a started process with stdout and stderr pipes: wait at most ``timeout`` seconds for it, then
    (exit code, stdout, stderr). Past the timeout ``kill()`` ends it and TimeoutError is raised."""
    try:
        out, err = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill()
        try:
            popen.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        raise TimeoutError(f"exec did not end within {timeout:g}s") from None
    code = popen.returncode
    return (128 - code if code < 0 else code), out or b"", err or b""


JOIN_SCRIPT = 'for f in $KPERFLAB_CGROUP_PROCS; do echo $$ > "$f" || exit 125; done; unset KPERFLAB_CGROUP_PROCS; exec "$@"'


class Runtime:
    """Starts sandboxes and containers. With a cgroup driver (root) each gets its cgroup, the pod's mount
    namespace and an unprivileged uid; without one (not root) they are plain processes in a session."""

    def __init__(self, driver: Driver | None, lab_id: str, unenforced: str = "") -> None:
        self.driver = driver
        self.lab_id = lab_id
        self.unenforced = unenforced  # why limits are not enforced ("" when they are)
        self.unshare = shutil.which("unshare")
        self.nsenter = shutil.which("nsenter")
        self._python: dict[int | None, str] = {}

    def python_for(self, uid: int | None) -> str:
        if uid not in self._python:
            self._python[uid] = pick_python(uid)
        return self._python[uid]

    def _spawn(self, argv: list[str], cgroup: str | None, env: dict[str, str], cwd: str,
               logs: LogWriter | None, user: int | None = None, group: int | None = None) -> Process:
        env = {**env, LAB_ENV: self.lab_id}
        ids: dict[str, Any] = {}
        if user is not None and os.geteuid() == 0 and user != 0:
            ids = {"user": user, "group": group if group is not None else user, "extra_groups": []}
        if self.driver is not None and cgroup is not None:
            env["KPERFLAB_CGROUP_PROCS"] = " ".join(str(p) for p in self.driver.procs_files(cgroup))
            argv = ["/bin/sh", "-c", JOIN_SCRIPT, "sh", *argv]
        out = subprocess.PIPE if logs else subprocess.DEVNULL
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=cwd,
                                 start_new_session=True, close_fds=True, **ids)
        if logs:
            assert popen.stdout is not None and popen.stderr is not None
            logs.attach(popen.stdout, "stdout")
            logs.attach(popen.stderr, "stderr")
        return Process(popen, cgroup, logs)

    def spawn(self, argv: list[str], cgroup: str | None) -> Process:
        """A helper process of the lab's in a cgroup (the OCI runtime's sandbox holder), output discarded."""
        return self._spawn(argv, cgroup, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, "/", None)

    def start_sandbox(self, cgroup: str | None) -> Process:
        """The pod's pause process: it holds the pod's mount namespace (root) and does nothing else."""
        argv = ["sleep", "infinity"]
        if self.driver is not None and self.unshare:
            argv = [self.unshare, "--mount", "--propagation", "private", "--", *argv]
        return self._spawn(argv, cgroup, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, "/", None)

    def start_container(self, sandbox: Process | None, cgroup: str | None, argv: list[str], env: dict[str, str],
                        cwd: str, uid: int | None, gid: int | None, logs: LogWriter) -> Process:
        if self.driver is not None and self.nsenter and sandbox is not None:
            prefix = [self.nsenter, f"--mount=/proc/{sandbox.pid}/ns/mnt"]
            if uid is not None and uid != 0:
                prefix += [f"--setuid={uid}", f"--setgid={gid if gid is not None else uid}"]
            return self._spawn([*prefix, "--", *argv], cgroup, env, cwd, logs)
        return self._spawn(argv, cgroup, env, cwd, logs, uid, gid)  # no cgroups: still not root when the lab is

    def exec(self, sandbox: Process | None, cgroup: str | None, argv: list[str], env: dict[str, str], cwd: str,
             uid: int | None, gid: int | None, *, stdin: bool, stdout: bool, stderr: bool, tty: bool,
             size: tuple[int, int] | None = None) -> ExecProcess:
        """A process in a running container of this runtime: its cgroup, the pod's mount namespace, its user; with
        ``tty`` on a fresh pty (the session gets the master)."""
        if self.driver is not None and self.nsenter and sandbox is not None:
            prefix = [self.nsenter, f"--mount=/proc/{sandbox.pid}/ns/mnt"]
            if uid is not None and uid != 0:
                prefix += [f"--setuid={uid}", f"--setgid={gid if gid is not None else uid}"]
            argv = [*prefix, "--", *argv]
            ids: dict[str, Any] = {}
        else:
            ids = {"user": uid, "group": gid if gid is not None else uid, "extra_groups": []} \
                if uid is not None and os.geteuid() == 0 and uid != 0 else {}
        env = {**env, LAB_ENV: self.lab_id}
        if self.driver is not None and cgroup is not None:
            env["KPERFLAB_CGROUP_PROCS"] = " ".join(str(p) for p in self.driver.procs_files(cgroup))
            argv = ["/bin/sh", "-c", JOIN_SCRIPT, "sh", *argv]
        if tty:
            master, slave = os.openpty()
            if size:
                import fcntl
                import struct
                import termios

                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
            try:
                popen = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                                         start_new_session=True, close_fds=True, **ids)
            finally:
                os.close(slave)
            return ExecProcess(popen, None, master, None, tty=master)
        pipe, null = subprocess.PIPE, subprocess.DEVNULL
        popen = subprocess.Popen(argv, stdin=pipe if stdin else null, stdout=pipe if stdout else null,
                                 stderr=pipe if stderr else null, env=env, cwd=cwd, start_new_session=True, close_fds=True,
                                 **ids)
        return ExecProcess(popen, *pipe_ends(popen))

    def exec_sync(self, sandbox: Process | None, cgroup: str | None, argv: list[str], env: dict[str, str], cwd: str,
                  uid: int | None, gid: int | None, timeout: float) -> tuple[int, bytes]:
        """A command in a running container, waited for (the kubelet's exec probes): (exit code, stdout then stderr,
        as the kubelet's RunInContainer joins them); its whole session is killed after ``timeout`` seconds
        (TimeoutError)."""
        import signal

        ep = self.exec(sandbox, cgroup, argv, env, cwd, uid, gid, stdin=False, stdout=True, stderr=True, tty=False)
        popen = ep.popen
        for fd, name in ((ep.stdout, "stdout"), (ep.stderr, "stderr")):  # give the Popen its pipes back
            setattr(popen, name, os.fdopen(fd, "rb") if fd is not None else None)

        def kill() -> None:
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

        code, out, err = run_sync(popen, timeout, kill)
        if code == 127 and not out and err.startswith(b"nsenter: failed to execute"):  # not started: an error, no exit
            raise OSError(err.decode(errors="replace").strip())
        return code, out + err

    def stop(self, proc: Process, sig: int) -> None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill_tree(self, proc: Process) -> None:
        """SIGKILL everything the process left: its cgroup (root) or its session (not root)."""
        import signal

        if self.driver is not None and proc.cgroup:
            self.driver.kill_all(proc.cgroup)
        else:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass


def new_container_id() -> str:
    return secrets.token_hex(32)


def parse_cri(raw_lines: list[bytes], partial: dict[bytes, bytes] | None = None) -> list[tuple[str, str, bytes]]:
    """CRI log entries → (timestamp, stream, line): partial (``P``) entries joined to the full (``F``) one that ends
    them. ``partial`` carries unfinished lines from one call to the next (a followed log).

    >>> parse_cri([b"t1 stdout P ab", b"t2 stderr F x", b"t3 stdout F cd"])
    [('t2', 'stderr', b'x'), ('t3', 'stdout', b'abcd')]
    """
    partial = {} if partial is None else partial
    out = []
    for raw in raw_lines:
        parts = raw.split(b" ", 3)
        if len(parts) < 3:
            continue
        text = parts[3] if len(parts) == 4 else b""
        if parts[2] == b"P":
            partial[parts[1]] = partial.get(parts[1], b"") + text
            continue
        out.append((parts[0].decode(), parts[1].decode(), partial.pop(parts[1], b"") + text))
    return out


def read_log(path: Path) -> list[tuple[str, str, bytes]]:
    """Parse a CRI log file into (timestamp, stream, line)."""
    try:
        return parse_cri(path.read_bytes().splitlines())
    except OSError:
        return []
