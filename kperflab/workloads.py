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
               **kw: Any) -> Obj:
    """Changes its CPU use over time: each phase is (cores ≤ 1, seconds); reports when each phase starts."""
    if not phases:
        raise BadInput("phases is empty.", hint="Pass phases like ((0.2, 10), (1.0, 10)).")
    for c, sec in phases:
        _positive(cores=c, seconds=sec)
    return pod(name, CPU_PHASES, {"PHASES": ",".join(f"{c}:{s}" for c, s in phases)}, workload="cpu-phases", **kw)


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
