"""Portable pod manifests for experiments: ``python:3.13-slim`` with an inline script, so the same pod runs on the
lab and on any real cluster. Each script prints JSON lines (``{"event": …}``) that `read_events` turns back into
dicts, so an experiment's numbers come from the workload itself as well as from the metrics pipeline.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import BadInput

IMAGE = "python:3.13-slim"
Obj = dict[str, Any]

_PRELUDE = "import json, os, sys, time\ndef emit(**kw):\n    print(json.dumps({**kw, 't': time.time()}), flush=True)\n"

# Busy for `share` of every 10 ms slice, for `seconds` (0: for ever): the one way the workloads burn CPU.
_BURN = """def burn(share, seconds):
    end = time.monotonic() + seconds if seconds > 0 else float("inf")
    while time.monotonic() < end:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.01 * share:
            pass
        if share < 1:
            time.sleep(0.01 * (1 - share))
"""

CPU_BURNER = _PRELUDE + _BURN + """import multiprocessing as mp, threading
cores, seconds, tick = float(os.environ["CORES"]), float(os.environ["SECONDS"]), float(os.environ.get("TICK", "1"))
shares = [1.0] * int(cores) + ([cores - int(cores)] if cores - int(cores) > 0.001 else [])
emit(event="start", cores=cores, seconds=seconds)
procs = [mp.Process(target=burn, args=(s, seconds)) for s in shares[1:]]
for p in procs:
    p.start()
def cpu_seconds():
    # this process (all its threads) by its own clock, plus each helper process as the kernel counts it
    total = time.process_time()
    for p in procs:
        try:
            f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return total
def report():
    while True:
        emit(event="cpu", cpu_seconds=round(cpu_seconds(), 6))
        time.sleep(tick)
threading.Thread(target=report, daemon=True).start()
burn(shares[0] if shares else 0, seconds)
for p in procs:
    p.join()
t = os.times()
emit(event="done", cpu_seconds=t.user + t.system + t.children_user + t.children_system)
if seconds > 0:
    sys.exit(0)
"""

CPU_REQUESTS = _PRELUDE + """def work(n):
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x
n, count, pause = int(os.environ["WORK"]), int(os.environ["REQUESTS"]), float(os.environ["PAUSE"])
work(n // 10)
emit(event="start", work=n, requests=count)
lat = []
for i in range(count):
    t0 = time.perf_counter()
    work(n)
    lat.append((time.perf_counter() - t0) * 1000)
    emit(event="request", i=i, ms=round(lat[-1], 3))
    time.sleep(pause)
lat.sort()
emit(event="done", median_ms=lat[len(lat) // 2], p90_ms=lat[int(len(lat) * 0.9) - 1] if len(lat) > 1 else lat[0],
     cpu_seconds=sum(os.times()[:2]))
time.sleep(float(os.environ.get("HOLD", "0")))
"""

CPU_PHASES = _PRELUDE + _BURN + """phases = [(float(c), float(s)) for c, s in (p.split(":") for p in os.environ["PHASES"].split(","))]
for cores, seconds in phases:
    emit(event="phase", cores=cores, seconds=seconds)
    burn(min(cores, 1.0), seconds)
emit(event="done")
time.sleep(3600)
"""
CPU_PHASES_FOREVER = _PRELUDE + _BURN + """phases = [(float(c), float(s)) for c, s in (p.split(":") for p in os.environ["PHASES"].split(","))]
while True:
    for cores, seconds in phases:
        emit(event="phase", cores=cores, seconds=seconds)
        burn(min(cores, 1.0), seconds)
"""

MEMORY_SPIKE = _PRELUDE + """base, spike, after = int(os.environ["BASE"]), int(os.environ["SPIKE"]), float(os.environ["AFTER"])
def touch(n):
    b = bytearray(n)
    for i in range(0, n, 4096):
        b[i] = 1
    return b
held = touch(base)
emit(event="baseline", bytes=base)
time.sleep(after)
emit(event="spike", bytes=spike)
extra = touch(spike)
emit(event="survived", bytes=spike)
del extra
time.sleep(3600)
"""

PAGE_CACHE = _PRELUDE + """import tempfile
size = int(os.environ["SIZE"])
chunk = b"x" * (1 << 20)
f = tempfile.TemporaryFile(dir=os.environ.get("DIR") or None)  # unlinked: the kernel frees it with the process
for _ in range(size >> 20):
    f.write(chunk)
f.flush()
os.fsync(f.fileno())
for _ in range(2):  # a second read moves the pages to the active list
    f.seek(0)
    while f.read(1 << 20):
        pass
emit(event="ready", bytes=size)
time.sleep(3600)
"""

MEMORY_ALLOCATOR = _PRELUDE + """total, step, pause, hold = int(os.environ["TOTAL"]), int(os.environ["STEP"]), float(os.environ["PAUSE"]), float(os.environ["HOLD"])
chunks = []
done = 0
emit(event="start", total=total, step=step)
while done < total:
    n = min(step, total - done)
    b = bytearray(n)
    for i in range(0, n, 4096):
        b[i] = 1
    chunks.append(b)
    done += n
    emit(event="allocated", bytes=done)
    time.sleep(pause)
emit(event="holding", bytes=done)
time.sleep(hold)
"""

HTTP_ECHO = _PRELUDE + """from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client may send many requests over one connection
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms wait for the client's delayed ACK
    def do_GET(self):
        body = json.dumps({"path": self.path, "host": os.environ.get("HOSTNAME", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the listen backlog: bursts of new connections are not dropped
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass  # a client that connects and goes away is not an error here
port = int(os.environ["PORT"])
srv = Server(("0.0.0.0", port), H)
emit(event="listening", port=port)
srv.serve_forever()
"""

IO_PROBE = _PRELUDE + """size, block = int(os.environ["SIZE"]), int(os.environ["BLOCK"])
path = os.path.join(os.environ.get("DIR") or "/tmp", f"kperflab-io-{os.getpid()}")
data = os.urandom(block)
emit(event="start", bytes=size, block=block, path=path)
try:
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(size // block):
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    w = time.perf_counter() - t0
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(block):
            pass
    r = time.perf_counter() - t0
    emit(event="done", write_mib_s=size / w / 2**20, read_mib_s=size / r / 2**20, write_s=w, read_s=r)
finally:
    os.unlink(path)
"""


# The storage probe: per directory, sequential write (fsync'd) and read in ``BLOCK``s, then 4 KiB random reads and
# writes at queue depth 1 for ``OPS`` operations or ``SECONDS``, whichever ends first. O_DIRECT where the filesystem
# takes it (the page cache is bypassed, as fio's direct=1), buffered otherwise, and the row says which. With fio on
# PATH (``TOOL`` auto or fio) the same four jobs run under fio (psync, iodepth 1) and its JSON is read instead.
IO_BENCH = _PRELUDE + r"""import mmap, random, shutil, subprocess
dirs = [d for d in os.environ["DIRS"].split(",") if d]
size, block = int(os.environ["SIZE"]), int(os.environ["BLOCK"])
ops, seconds, tool = int(os.environ["OPS"]), float(os.environ["SECONDS"]), os.environ.get("TOOL", "auto")
PCTS = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9)
PAGE = 4096
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))] if xs else None
def direct_ok(d):
    path = os.path.join(d, ".kperflab-direct-test")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_DIRECT", 0), 0o600)
    except OSError:
        return False
    try:
        os.pwritev(fd, [mmap.mmap(-1, PAGE)], 0)
        return hasattr(os, "O_DIRECT")
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(path)
def lat_summary(us, elapsed):
    return {"ops": len(us), "iops": len(us) / elapsed if elapsed > 0 else None, "mean_us": sum(us) / len(us) if us else None,
            "pcts_us": {str(q): pct(us, q) for q in PCTS}}
def python_probe(d, direct):
    path = os.path.join(d, f"kperflab-io-{os.getpid()}")
    flag = os.O_DIRECT if direct else 0
    buf = mmap.mmap(-1, block)
    buf.write(os.urandom(block))
    n = max(1, size // block)
    out = {"dir": d, "tool": "python", "direct": direct, "bytes": n * block}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flag, 0o600)
        t0 = time.perf_counter()
        for i in range(n):
            os.pwritev(fd, [buf], i * block)
        os.fsync(fd)
        out["write_mib_s"] = n * block / (time.perf_counter() - t0) / 2**20
        os.close(fd)
        fd = os.open(path, os.O_RDONLY | flag)
        t0 = time.perf_counter()
        for i in range(n):
            os.preadv(fd, [buf], i * block)
        out["read_mib_s"] = n * block / (time.perf_counter() - t0) / 2**20
        os.close(fd)
        pages = n * block // PAGE
        page = mmap.mmap(-1, PAGE)
        page.write(os.urandom(PAGE))
        for kind, mode in (("randread", os.O_RDONLY), ("randwrite", os.O_WRONLY)):
            fd = os.open(path, mode | flag)
            us, call = [], os.preadv if kind == "randread" else os.pwritev
            offsets = [random.randrange(pages) * PAGE for _ in range(ops)]
            end = time.perf_counter() + seconds
            t_start = time.perf_counter()
            for off in offsets:
                t0 = time.perf_counter()
                call(fd, [page], off)
                t1 = time.perf_counter()
                us.append((t1 - t0) * 1e6)
                if t1 > end:
                    break
            elapsed = time.perf_counter() - t_start
            os.close(fd)
            out[kind] = lat_summary(us, elapsed)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return out
def fio_probe(d, direct):
    fio = shutil.which("fio")
    name = os.path.join(d, f"kperflab-fio-{os.getpid()}")
    common = ["--filename=" + name, f"--size={size}", f"--direct={int(direct)}", "--ioengine=psync", "--iodepth=1",
              "--output-format=json", "--percentile_list=" + ":".join(str(q) for q in PCTS)]
    jobs = {"seqwrite": [f"--bs={block}", "--rw=write", "--end_fsync=1"], "seqread": [f"--bs={block}", "--rw=read"],
            "randread": ["--bs=4k", "--rw=randread", f"--number_ios={ops}", f"--runtime={max(1, round(seconds))}"],
            "randwrite": ["--bs=4k", "--rw=randwrite", f"--number_ios={ops}", f"--runtime={max(1, round(seconds))}"]}
    out = {"dir": d, "tool": "fio", "direct": direct, "bytes": size}
    try:
        for job, args in jobs.items():
            res = subprocess.run([fio, "--name=" + job, *common, *args], capture_output=True, text=True, check=True)
            j = json.loads(res.stdout[res.stdout.index("{"):])["jobs"][0]
            side = j["write"] if "write" in job else j["read"]
            if job.startswith("seq"):
                out[job.replace("seq", "") + "_mib_s"] = side["bw_bytes"] / 2**20
            else:
                lat = side["clat_ns"]
                out[job] = {"ops": side["total_ios"], "iops": side["iops"], "mean_us": lat["mean"] / 1000,
                            "pcts_us": {str(q): lat.get("percentile", {}).get(f"{q:.6f}", 0) / 1000 for q in PCTS}}
    finally:
        try:
            os.unlink(name)
        except OSError:
            pass
    return out
def mount_points():
    try:
        return {line.split()[4] for line in open("/proc/self/mountinfo")}
    except OSError:
        return None
mounts = mount_points()
for d in dirs:
    if not os.path.isdir(d):
        emit(event="failed", dir=d, error=f"{d} is not a directory in the container: the volume is not mounted there")
        continue
    direct = direct_ok(d)
    use_fio = tool == "fio" or (tool == "auto" and shutil.which("fio"))
    try:
        row = fio_probe(d, direct) if use_fio else python_probe(d, direct)
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError) as exc:
        emit(event="failed", dir=d, error=f"{type(exc).__name__}: {getattr(exc, 'stderr', '') or exc}"[:500])
        continue
    emit(event="result", mounted=None if mounts is None else d in mounts, **row)
emit(event="done")
time.sleep(float(os.environ.get("HOLD", "0")))
"""

# Writes a file into DIR step by step and reports, after each step, the bytes written, its own RSS and the working
# set of its cgroup as the kernel counts it (usage minus inactive file pages, as the kubelet computes it; None where the
# cgroup files are not visible in the container). Pauses HOLD seconds once HOLD_AT bytes are written (a moment for a
# kubelet sample), and stops at TOTAL or when the filesystem is full (ENOSPC).
TMPFS_FILL = _PRELUDE + r"""import errno
d, total, step = os.environ["DIR"], int(os.environ["TOTAL"]), int(os.environ["STEP"])
pause, hold_at, hold = float(os.environ["PAUSE"]), int(os.environ["HOLD_AT"]), float(os.environ["HOLD"])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
def working_set():
    for usage, stat, inactive in (("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat", "inactive_file"),
                                  ("/sys/fs/cgroup/memory/memory.usage_in_bytes", "/sys/fs/cgroup/memory/memory.stat",
                                   "total_inactive_file")):
        try:
            used = int(open(usage).read())
            stats = dict(line.split() for line in open(stat))
            return max(0, used - int(stats.get(inactive, 0)))
        except (OSError, ValueError):
            continue
    return None
def fstype(path):
    try:
        for line in open("/proc/self/mountinfo"):
            f = line.split()
            if f[4] == path:
                return f[f.index("-") + 1]
    except (OSError, ValueError, IndexError):
        return "unknown"
    return None
chunk = bytes(1 << 20)
fs = fstype(d)
if fs is None or not os.path.isdir(d):
    emit(event="failed", dir=d, error=f"no volume is mounted at {d} in the container (the kubelet did not mount it)")
    time.sleep(float(os.environ.get("HOLD_END", "0")))
    sys.exit(0)
emit(event="start", dir=d, fstype=fs, rss=rss(), working_set=working_set())
written, held = 0, False
try:
    with open(os.path.join(d, "big.bin"), "wb", buffering=0) as f:
        while written < total:
            n = min(step, total - written)
            for i in range(0, n, len(chunk)):
                written += f.write(chunk[:min(len(chunk), n - i)])
            emit(event="written", bytes=written, rss=rss(), working_set=working_set())
            if not held and written >= hold_at:
                held = True
                emit(event="holding", bytes=written)
                time.sleep(hold)
            time.sleep(pause)
except OSError as exc:
    if exc.errno != errno.ENOSPC:
        raise
    emit(event="nospace", bytes=written, error=os.strerror(exc.errno), working_set=working_set())
    time.sleep(float(os.environ.get("HOLD_END", "0")))
    sys.exit(0)
emit(event="complete", bytes=written, working_set=working_set())
time.sleep(float(os.environ.get("HOLD_END", "0")))
"""


def _positive(**values: float) -> None:
    for name, v in values.items():
        if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
            raise BadInput(f"{name} must be a positive number, not {v!r}.", hint=f"Pass for example {name}=1.")


def quantity(value: Any, what: str) -> Any:
    """Check a Kubernetes quantity (``"500m"``, ``"64Mi"``) before it goes into a manifest."""
    if value is None:
        return None
    from kubernetes.utils import parse_quantity

    try:
        if parse_quantity(value) <= 0:
            raise ValueError
    except (ValueError, TypeError, ArithmeticError):
        raise BadInput(f"{what} {value!r} is not a positive Kubernetes quantity.",
                       hint='Write CPU like "500m" or "1", memory like "64Mi" or "1Gi".') from None
    return value


def _resources(cpu_limit: str | None = None, memory_limit: str | None = None, cpu_request: str | None = None,
               memory_request: str | None = None) -> Obj:
    res: Obj = {}
    for what, v in (("cpu_limit", cpu_limit), ("memory_limit", memory_limit), ("cpu_request", cpu_request),
                    ("memory_request", memory_request)):
        quantity(v, what)
    lim = {k: v for k, v in (("cpu", cpu_limit), ("memory", memory_limit)) if v is not None}
    req = {k: v for k, v in (("cpu", cpu_request), ("memory", memory_request)) if v is not None}
    if lim:
        res["limits"] = lim
    if req:
        res["requests"] = req
    return res


def pod(name: str, script: str, env: dict[str, Any], *, workload: str, restart: str = "Never",
        cpu_limit: str | None = None, memory_limit: str | None = None, cpu_request: str | None = None,
        memory_request: str | None = None, labels: dict[str, str] | None = None, image: str = IMAGE) -> Obj:
    """A one-container pod running ``python -c script``."""
    container: Obj = {"name": "main", "image": image, "command": ["python", "-c", script],
                      "env": [{"name": k, "value": str(v)} for k, v in env.items()]}
    res = _resources(cpu_limit, memory_limit, cpu_request, memory_request)
    if res:
        container["resources"] = res
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": workload, "app.kubernetes.io/part-of": "kperflab",
                                                  **(labels or {})}},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 1, "containers": [container]}}


def cpu_burner(name: str = "cpu-burner", cores: float = 1.0, seconds: float = 0, tick: float = 1.0, **kw: Any) -> Obj:
    """Keeps ``cores`` CPUs busy (fractions by duty cycle in 10 ms slices) for ``seconds`` (0: until deleted), and
    prints its own CPU clock every ``tick`` seconds (``{"event": "cpu", "cpu_seconds": …}``): a measurement of its
    CPU use that does not come from the cgroup."""
    _positive(cores=cores, tick=tick)
    return pod(name, CPU_BURNER, {"CORES": cores, "SECONDS": seconds, "TICK": tick}, workload="cpu-burner", **kw)


def cpu_requests(name: str = "cpu-requests", requests: int = 20, work: int = 300_000, pause: float = 0.05, hold: float = 0,
                 **kw: Any) -> Obj:
    """Serves ``requests`` CPU-bound "requests" one after another and reports each one's latency (ms); then stays
    ``hold`` seconds so that its cgroup counters can still be read."""
    _positive(requests=requests, work=work)
    return pod(name, CPU_REQUESTS, {"WORK": work, "REQUESTS": requests, "PAUSE": pause, "HOLD": hold},
               workload="cpu-requests", **kw)


def memory_allocator(name: str = "memory-allocator", total: int = 64 << 20, step: int = 8 << 20, pause: float = 0.2,
                     hold: float = 3600, **kw: Any) -> Obj:
    """Allocates and touches ``total`` bytes in ``step``s, ``pause`` s apart, then holds them ``hold`` s."""
    _positive(total=total, step=step)
    return pod(name, MEMORY_ALLOCATOR, {"TOTAL": total, "STEP": step, "PAUSE": pause, "HOLD": hold},
               workload="memory-allocator", **kw)


def http_echo(name: str = "http-echo", port: int = 8080, **kw: Any) -> Obj:
    """An HTTP/1.1 server that answers every GET with its path and host name as JSON; connections are kept alive
    until the client closes them, and its listen backlog (1024) takes bursts of new connections."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise BadInput(f"port must be 1–65535, not {port!r}.", hint="Pass for example port=8080.")
    manifest = pod(name, HTTP_ECHO, {"PORT": port}, workload="http-echo", restart=kw.pop("restart", "Always"), **kw)
    manifest["spec"]["containers"][0]["ports"] = [{"containerPort": port, "protocol": "TCP"}]
    return manifest


def cpu_phases(name: str = "cpu-phases", phases: tuple[tuple[float, float], ...] = ((0.2, 15), (1.0, 15), (0.3, 15)),
               repeat: bool = False, **kw: Any) -> Obj:
    """Changes its CPU use over time: each phase is (cores ≤ 1, seconds); reports when each phase starts. With
    ``repeat`` the phases go round until the pod is deleted."""
    if not phases:
        raise BadInput("phases is empty.", hint="Pass phases like ((0.2, 10), (1.0, 10)).")
    for c, sec in phases:
        _positive(cores=c, seconds=sec)
    kw.setdefault("workload", "cpu-phases")
    return pod(name, CPU_PHASES_FOREVER if repeat else CPU_PHASES, {"PHASES": ",".join(f"{c}:{s}" for c, s in phases)}, **kw)


def memory_spike(name: str = "memory-spike", base: int = 16 << 20, spike: int = 128 << 20, after: float = 20, **kw: Any) -> Obj:
    """Holds ``base`` bytes, then after ``after`` seconds allocates ``spike`` more at once (a short spike)."""
    _positive(base=base, spike=spike)
    return pod(name, MEMORY_SPIKE, {"BASE": base, "SPIKE": spike, "AFTER": after}, workload="memory-spike", **kw)


def page_cache(name: str = "page-cache", size: int = 256 << 20, directory: str = "", **kw: Any) -> Obj:
    """Writes ``size`` bytes to an unlinked temporary file and reads them back twice: page cache, not RSS."""
    _positive(size=size)
    return pod(name, PAGE_CACHE, {"SIZE": size, "DIR": directory}, workload="page-cache", **kw)


def io_probe(name: str = "io-probe", size: int = 64 << 20, block: int = 1 << 20, directory: str = "", **kw: Any) -> Obj:
    """Writes ``size`` bytes with fsync, reads them back, reports MiB/s, removes its file."""
    _positive(size=size, block=block)
    return pod(name, IO_PROBE, {"SIZE": size, "BLOCK": block, "DIR": directory}, workload="io-probe", **kw)


def io_bench(name: str = "io-bench", directories: tuple[str, ...] = ("/tmp",), size: int = 32 << 20, block: int = 1 << 20,
             ops: int = 2000, seconds: float = 3.0, tool: str = "auto", hold: float = 0, **kw: Any) -> Obj:
    """Per directory: sequential write (fsync'd) and read MiB/s, then 4 KiB random read and write latency (µs
    percentiles) and IOPS at queue depth 1 — O_DIRECT where the filesystem takes it. ``tool``: ``auto`` (fio when the
    image has it, else the Python probe), ``fio`` or ``python``. Prints one ``result`` event per directory."""
    _positive(size=size, block=block, ops=ops, seconds=seconds)
    if block % 4096 or size < block:
        raise BadInput(f"block must be a multiple of 4096 and at most size, not {block!r}.", hint="Pass block=1 << 20.")
    if tool not in ("auto", "fio", "python"):
        raise BadInput(f"tool must be auto, fio or python, not {tool!r}.", hint='Pass tool="auto".')
    if not directories or not all(isinstance(d, str) and d.startswith("/") and "," not in d for d in directories):
        raise BadInput(f"directories must be absolute paths, not {directories!r}.", hint='Pass directories=("/data",).')
    return pod(name, IO_BENCH, {"DIRS": ",".join(directories), "SIZE": size, "BLOCK": block, "OPS": ops,
                                "SECONDS": seconds, "TOOL": tool, "HOLD": hold}, workload="io-bench", **kw)


def tmpfs_fill(name: str = "tmpfs-fill", directory: str = "/scratch", total: int = 192 << 20, step: int = 4 << 20,
               pause: float = 0.1, hold_at: int = 0, hold: float = 0, hold_end: float = 3600, **kw: Any) -> Obj:
    """Writes a file of up to ``total`` bytes into ``directory`` in ``step``s, reporting bytes written, RSS and its
    cgroup's working set after each; holds ``hold`` s once ``hold_at`` bytes are written; stops at ENOSPC."""
    _positive(total=total, step=step)
    return pod(name, TMPFS_FILL, {"DIR": directory, "TOTAL": total, "STEP": step, "PAUSE": pause,
                                  "HOLD_AT": hold_at or total + 1, "HOLD": hold, "HOLD_END": hold_end},
               workload="tmpfs-fill", **kw)


def with_volume(manifest: Obj, name: str, source: Obj, mount_path: str, read_only: bool = False) -> Obj:
    """``manifest`` with a pod volume ``name`` (``source``: e.g. ``{"emptyDir": {"medium": "Memory"}}`` or
    ``{"persistentVolumeClaim": {"claimName": "data"}}``) mounted at ``mount_path`` in its first container."""
    spec = manifest["spec"]
    spec.setdefault("volumes", []).append({"name": name, **source})
    mount: Obj = {"name": name, "mountPath": mount_path}
    if read_only:
        mount["readOnly"] = True
    spec["containers"][0].setdefault("volumeMounts", []).append(mount)
    return manifest

def read_events(log: str) -> list[Obj]:
    """The JSON lines a workload printed (other lines are skipped)."""
    out = []
    for line in log.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
