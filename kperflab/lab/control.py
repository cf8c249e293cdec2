"""`kperflab lab up|down|status|logs`: start the lab in the background, stop it, list the labs on this machine, and
clean up after dead ones.

State lives in ``$KPERFLAB_HOME/lab`` (default ``~/.kperflab/lab``): lab.json (pid, port, id), lab.lock (held while the
lab runs), lab.log, tls/, token, pods/ (logs) and run/<id>/ (kernel-backed files). Several labs may run side by side
from different KPERFLAB_HOMEs; each owns its kernel state by its id (see `labs`), and recovery only ever removes what a
dead lab left.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .. import paths
from ..errors import BadInput, LabError
from . import labs
from .pki import make_server_tls, write_tls

STATE_FILE = "lab.json"
DEFAULT_RESOLUTION = "15s"
DEFAULT_BANDWIDTH = "100mbit"  # the slow registry link's rate (images.slowlink)
DEFAULT_IMAGEFS_SIZE = "4Gi"  # the image filesystem's size (images.store.DEFAULT_IMAGEFS_SIZE)
MIN_IMAGEFS, MAX_IMAGEFS = 256 << 20, 1 << 40


def _state_dir() -> Path:
    """The state dir, made (or tightened to) 0700 with ``$KPERFLAB_HOME`` around it: it holds the lab's token, keys
    and store, which no other user may read."""
    paths.private_dir(paths.home())
    return paths.private_dir(paths.lab_state_dir())


SECRET_FILES = ("token", "tls/ca.key", "tls/server.key", "sa-signing.key", "tokens.csv", "store.json",
                "store/state.db", "store/state.db-wal", "store/state.db-shm")


def _ensure_credentials(state_dir: Path) -> None:
    """The lab's CA and server certificate, and its admin token: made once and kept with the state (user kubeconfigs
    embed the CA), so that a kept lab comes back with the same ones; only the server certificate is re-issued by the
    lab when what it must name changed. Secret files are 0600 from their first byte."""
    tls = paths.private_dir(state_dir / "tls")
    with paths.private_umask():
        if not all((tls / f).is_file() for f in ("ca.crt", "ca.key", "server.crt", "server.key")):
            write_tls(make_server_tls(), tls)
    token = state_dir / "token"
    try:
        have = token.read_text().strip()
    except OSError:
        have = ""
    if not have:
        paths.write_private(token, secrets.token_urlsafe(32))
    _tighten(state_dir)


def _tighten(state_dir: Path) -> None:
    """Secret files left by an older kperflab with wider modes: 0600 now (directories 0700)."""
    for d in (state_dir / "tls", state_dir / "store", paths.home() / "users"):
        if d.is_dir():
            paths.private_dir(d)
    users = paths.home() / "users"
    files = [state_dir / f for f in SECRET_FILES] + (sorted(users.glob("*.kubeconfig")) if users.is_dir() else [])
    for f in files:
        try:
            if os.stat(f, follow_symlinks=False).st_mode & 0o077:
                os.chmod(f, 0o600)
        except OSError:
            pass


def read_state() -> dict[str, Any] | None:
    f = paths.lab_state_dir() / STATE_FILE
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def running() -> dict[str, Any] | None:
    """This KPERFLAB_HOME's lab when it is alive (it holds its state dir's lock), else None."""
    st = read_state()
    return st if st and _alive(paths.lab_state_dir(), st) else None


def _alive(state_dir: Path, st: dict[str, Any] | None) -> bool:
    """A lab runs from this state dir: it holds the lock, or (a lab of an older kperflab, which took no lock) the pid
    in lab.json is a `kperflab lab serve` working in this state dir."""
    if labs.state_dir_locked(state_dir):
        return True
    if not st or not st.get("pid"):
        return False
    try:
        pid = int(st["pid"])
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError):
        return False
    return b"kperflab.cli" in cmd and b"serve" in cmd and cwd == str(state_dir)


def _healthy(port: int, ca: Path, timeout: float = 2.0) -> bool:
    try:
        ctx = ssl.create_default_context(cafile=str(ca))
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=timeout) as r:
            return r.status == 200
    except (OSError, ValueError, ssl.SSLError):
        return False


def _home_lab_id(state_dir: Path) -> str | None:
    """The id of the lab that last ran from this state dir: lab.json, else the lock file's note."""
    st = read_state()
    if st and st.get("lab_id"):
        return str(st["lab_id"])
    try:
        first = (state_dir / "lab.lock").read_text().split()[0]
    except (OSError, IndexError):
        return None
    return first if labs.ID_RE.match(first) else None


# -- kubeconfig ------------------------------------------------------------------------------------

def kubeconfig_text(port: int, ca_pem: bytes, token: str) -> str:
    name = paths.LAB_CONTEXT
    cfg = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": f"https://127.0.0.1:{port}",
                                                "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"}}],
        "current-context": name,
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def _write_kubeconfig(kc: Path, port: int, state_dir: Path) -> None:
    kc.parent.mkdir(parents=True, exist_ok=True)
    paths.write_private(kc, kubeconfig_text(port, (state_dir / "tls" / "ca.crt").read_bytes(),
                                            (state_dir / "token").read_text().strip()))


def _is_ours(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text())
        return isinstance(data, dict) and [c.get("name") for c in data.get("contexts") or []] == [paths.LAB_CONTEXT]
    except (OSError, yaml.YAMLError):
        return False


# -- checks before starting ------------------------------------------------------------------------

def parse_resolution(text: str) -> float:
    """``--metric-resolution``: a duration of 1 s to 10 m."""
    units = {"ms": 0.001, "s": 1, "m": 60}
    for u in ("ms", "s", "m"):
        if text.endswith(u):
            try:
                v = float(text[: -len(u)]) * units[u]
            except ValueError:
                break
            if v <= 0:
                break
            if not 1 <= v <= 600:
                raise LabError(f"--metric-resolution {text} is out of range: the lab samples every 1s to 10m.",
                               hint="Use 15s (what the metrics-server manifests set) or 5s for a quicker workshop.")
            return v
    raise LabError(f"--metric-resolution {text!r} is not a duration.", hint="Use a value like 15s or 5s.")


def parse_imagefs_size(text: str) -> int:
    """``--imagefs-size``: a Kubernetes quantity of 256Mi to 1Ti.

    >>> parse_imagefs_size("4Gi"), parse_imagefs_size("512Mi")
    (4294967296, 536870912)
    """
    from .quantity import to_bytes

    try:
        n = to_bytes(text)
    except ValueError:
        raise BadInput(f"--imagefs-size {text!r} is not a size.", hint="Write it as a quantity, e.g. 4Gi or 512Mi.") from None
    if not MIN_IMAGEFS <= n <= MAX_IMAGEFS:
        raise BadInput(f"--imagefs-size {text} is out of range.", hint="Use 256Mi to 1Ti (default 4Gi).")
    return n


def lab_settings(kubelet_config: str | None, registry_bandwidth: str | None, imagefs_size: str | None) -> dict[str, Any]:
    """The image and kubelet settings of ``lab up``, checked (BadInput on a bad one) and in the form lab.json keeps."""
    from .images.slowlink import parse_rate
    from .kubeletconfig import KubeletConfig

    cfg = KubeletConfig.load(Path(kubelet_config).expanduser()) if kubelet_config else KubeletConfig()
    rate = registry_bandwidth or DEFAULT_BANDWIDTH
    size = imagefs_size or DEFAULT_IMAGEFS_SIZE
    return {"kubelet_config": cfg.to_dict(), "registry_bandwidth": rate, "registry_bandwidth_bits": parse_rate(rate),
            "imagefs_size": size, "imagefs_bytes": parse_imagefs_size(size)}


def _check_port(port: int) -> None:
    """Fail early, with one sentence, when the port is taken (the lab would fail the same way, later)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise _port_error(port, exc) from None


def _port_error(port: int, exc: OSError) -> LabError:
    if exc.errno == errno.EADDRINUSE:
        return LabError(f"Port {port} on 127.0.0.1 is already in use by another program.",
                        hint="Choose another with --port, or leave --port out for a free one.")
    if exc.errno == errno.EACCES:
        return LabError(f"Port {port} needs root to listen on.", hint="Use a port above 1023, or leave --port out.")
    return LabError(f"Cannot listen on 127.0.0.1:{port}: {exc.strerror}.", hint="Choose another port with --port.")


def _kept_port(state_dir: Path) -> int:
    """The port the kept lab had, when it is free now (participants' kubeconfigs name it), else 0 (any free one)."""
    port = _store_info(state_dir).get("port")
    if not has_kept_state(state_dir) or not isinstance(port, int) or not 0 < port < 65536:
        return 0
    try:
        _check_port(port)
    except LabError:
        return 0
    return port


def _refresh_user_kubeconfigs(port: int) -> int:
    """Point the participants' kubeconfigs at this port (the kept lab's was taken); how many were rewritten."""
    users = paths.home() / "users"
    n = 0
    for kc in sorted(users.glob("*.kubeconfig")) if users.is_dir() else []:
        try:
            cfg = yaml.safe_load(kc.read_text())
            clusters = [c for c in cfg.get("clusters") or [] if c.get("name") == paths.LAB_CONTEXT]
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        url = f"https://127.0.0.1:{port}"
        if clusters and clusters[0].get("cluster", {}).get("server") != url:
            clusters[0]["cluster"]["server"] = url
            paths.write_private(kc, yaml.safe_dump(cfg, sort_keys=False))
            n += 1
    return n


def _check_kept_slot(state_dir: Path) -> None:
    """A kept store needs the network slot it had (its ClusterIPs lie in that slot's service CIDR): fail before
    starting, in one sentence, when another lab holds it now."""
    info = _store_info(state_dir)
    slot = info.get("network_slot")
    if not isinstance(slot, int) or not paths.lab_store_db(state_dir).exists():
        return
    holder = labs.slot_holder(slot, state_dir)
    if holder is not None:
        raise labs.slot_taken(slot, holder)


# -- the kept state --------------------------------------------------------------------------------

STORE_INFO = "store.json"  # what the lab writes beside its store (server.STORE_INFO): slot, counts, times


def _store_info(state_dir: Path) -> dict[str, Any]:
    try:
        info = json.loads((state_dir / STORE_INFO).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _db_bytes(state_dir: Path) -> int:
    db = paths.lab_store_db(state_dir)
    files = (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))  # not the reserve (.ballast)
    return sum(f.stat().st_size for f in files if f.is_file())


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def kept_summary(state_dir: Path) -> str:
    """``123 objects in 7 namespaces, 1.2 MB in <dir>, kept since 2026-11-29 12:30 UTC``"""
    info = _store_info(state_dir)
    db = paths.lab_store_db(state_dir)
    what = (f"{info['objects']} objects in {info.get('namespaces', '?')} namespaces"
            if isinstance(info.get("objects"), int) else "the lab's objects")
    since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info["created"])) if info.get("created") else "?"
    return f"{what}, {_size(_db_bytes(state_dir))} in {db.parent}, kept since {since}"


def has_kept_state(state_dir: Path) -> bool:
    return paths.lab_store_db(state_dir).exists()


def _purge(state_dir: Path) -> list[str]:
    """Wipe the kept state, as if the lab had never started here: the store, the CA, server certificate and admin
    token, the ServiceAccount signing key, tokens.csv, pod logs, the remembered network slot, and the participants'
    kubeconfigs (their tokens are signed by the key that goes). lab.log stays. Only while no lab runs here."""
    import shutil

    from .storage import loopfs

    if _alive(state_dir, read_state()):
        raise LabError(f"A lab still runs from {state_dir}; its state was not wiped.", hint="Stop it with `kperflab lab down`.")
    gone = []
    db = paths.lab_store_db(state_dir)
    if db.exists():
        from .store import Store

        purge = getattr(Store, "purge", None)
        if purge is not None:
            purge(db)
        gone.append("the store")
    for entry in sorted(state_dir.iterdir()) if state_dir.is_dir() else []:
        if entry.name in ("lab.log", "lab.lock", "run", STATE_FILE):
            continue
        if entry.is_dir() and not entry.is_symlink():
            if loopfs.mounts_under(entry):
                raise LabError(f"{entry} still has mounts; it was not wiped.", hint="Run `kperflab lab down` as root first.")
            shutil.rmtree(entry)
        else:
            entry.unlink(missing_ok=True)
        if entry.name in ("tls", "token") and "the CA and admin token" not in gone:
            gone.append("the CA and admin token")
        elif entry.name == "volumes":
            gone.append("the persistent volumes' data")
    users = paths.home() / "users"
    kubeconfigs = sorted(users.glob("*.kubeconfig")) if users.is_dir() else []
    for kc in kubeconfigs:
        kc.unlink(missing_ok=True)
    if kubeconfigs:
        gone.append(f"{len(kubeconfigs)} participant kubeconfig(s)")
    return gone


def _report_dead(found: list[labs.Census]) -> None:
    for c in found:
        if not c.empty():
            print(f"Removed what a dead lab ({c.lab_id}) left: {c.describe()}.")


# -- commands --------------------------------------------------------------------------------------

def _prepare_images(runtime: str, limits: bool) -> None:
    """Build the lab's base images once per machine (a minute, from Debian's packages) before the lab starts, so the
    OCI runtime has them; where that cannot work, say so in one line (the lab then uses the process runtime)."""
    if runtime == "process":
        return
    from . import cgroups
    from .images import (
        ImageBuildError,
        cached_base_images,
        cached_test_images,
        ensure_base_images,
        ensure_test_images,
    )
    from .runtime.oci import unavailable_reason

    why = unavailable_reason(cgroups.detect() if limits else None)
    if why:
        if runtime == "oci":
            raise LabError(f"The OCI runtime cannot run here: {why}.", hint="Leave out --runtime oci to use the process runtime.")
        return
    if cached_base_images() is None:
        print("Building the lab's images from Debian packages (once per machine, about a minute)…", flush=True)
        t0 = time.monotonic()
        try:
            ensure_base_images()
        except ImageBuildError as exc:
            if runtime == "oci":
                raise LabError(str(exc), hint="Start the lab without --runtime oci to use the process runtime.") from None
            print(f"Could not build them ({exc}); pods will run on the process runtime.")
            return
        print(f"Built in {time.monotonic() - t0:.0f} s.")
    if cached_test_images() is None:
        print("Building the storage lesson's test images (10, 100 and 500 MB of random bytes; once per machine)…",
              flush=True)
        t0 = time.monotonic()
        try:
            ensure_test_images()
        except OSError as exc:  # a full disk: the lab runs without them (the ConfigMap is then not made)
            print(f"Could not build them ({exc}); the lab starts without the storage lesson's test images.")
            return
        print(f"Built in {time.monotonic() - t0:.0f} s.")


def up(kubeconfig: str | None = None, foreground: bool = False, port: int = 0, metric_resolution: str | None = None,
       timeout: float = 30.0, limits: bool = True, runtime: str = "auto", kubelet_config: str | None = None,
       registry_bandwidth: str | None = None, imagefs_size: str | None = None, prometheus: bool = False) -> int:
    """`kperflab lab up`: start this home's lab in the background (or ``foreground``) and wait until it answers;
    ``prometheus``: then install Prometheus (`install_prometheus`), also on a lab that is already up."""
    if prometheus and foreground:
        raise BadInput("--prometheus does not go with --foreground (the lab would hold the terminal before it could be "
                       "installed).", hint="Start the lab with `kperflab lab up --prometheus`, or apply "
                       "kperflab/manifests/prometheus.yaml with kubectl once the foreground lab runs.")
    resolution = metric_resolution or DEFAULT_RESOLUTION
    parse_resolution(resolution)
    settings = lab_settings(kubelet_config, registry_bandwidth, imagefs_size)
    asked = {"kubelet_config": kubelet_config, "registry_bandwidth": registry_bandwidth, "imagefs_size": imagefs_size}
    if not 0 <= port <= 65535:
        raise LabError(f"--port {port} is not a TCP port.", hint="Use 1-65535, or leave --port out for a free one.")
    state_dir = _state_dir()
    kc = Path(kubeconfig).expanduser() if kubeconfig else paths.lab_kubeconfig()
    st = read_state()
    if _alive(state_dir, st):
        if st and _healthy(st["port"], state_dir / "tls" / "ca.crt"):
            rc = _already_up(st, kubeconfig, kc, port, metric_resolution, limits, state_dir, asked, settings)
            return install_prometheus() if prometheus and rc == 0 else rc
        if st:  # alive but not answering: a hung lab of this home
            _stop_pid(st["pid"], state_dir, st, grace=5.0)
        if _alive(state_dir, st):
            raise LabError(f"A lab from {state_dir} holds its lock but does not answer.",
                           hint="Stop it with `kperflab lab down`.")
    if kc.exists() and not _is_ours(kc):
        raise LabError(f"{kc} exists and is not the lab's kubeconfig; it was left untouched.",
                       hint="Choose another path with --kubeconfig.")
    _report_dead(labs.remove_dead(state_dir))
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    _check_port(port)
    port = port or _kept_port(state_dir)
    _check_kept_slot(state_dir)
    _prepare_images(runtime, limits)
    _ensure_credentials(state_dir)
    kcfg = str(Path(kubelet_config).expanduser().resolve()) if kubelet_config else None
    if foreground:
        return serve(port=port, metric_resolution=resolution, kubeconfig=str(kc), announce=True, limits=limits,
                     runtime=runtime, kubelet_config=kcfg, registry_bandwidth=settings["registry_bandwidth"],
                     imagefs_size=settings["imagefs_size"])
    args = [sys.executable, "-m", "kperflab.cli", "lab", "serve", "--port", str(port), "--runtime", runtime,
            "--metric-resolution", resolution, "--kubeconfig", str(kc),
            "--registry-bandwidth", settings["registry_bandwidth"], "--imagefs-size", settings["imagefs_size"]]
    args += ([] if limits else ["--no-limits"]) + (["--kubelet-config", kcfg] if kcfg else [])
    with open(state_dir / "lab.log", "ab") as logf:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
                                cwd=str(state_dir))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"The lab exited while starting: {_last_error(state_dir / 'lab.log')}",
                           hint="See `kperflab lab logs`.")
        st = read_state()
        if st and st.get("pid") == proc.pid and _healthy(st["port"], state_dir / "tls" / "ca.crt", 1.0):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        proc.wait()
        lab_id = _home_lab_id(state_dir)
        if lab_id:
            labs.remove(lab_id, state_dir)
        raise LabError(f"The lab did not become ready within {timeout:.0f}s.", hint="See `kperflab lab logs`.")
    print(f"The lab is up at https://127.0.0.1:{st['port']} (pid {proc.pid}, id {st['lab_id']}); kubeconfig: {kc}")
    print(f"Container runtime: {st.get('runtime', 'unknown')}")
    if st.get("restored"):
        print(f"Restored the kept state: {kept_summary(state_dir)}. `kperflab lab reset` starts from an empty cluster.")
    if not st.get("limits_enforced", True):
        why = "as asked (--no-limits)" if not limits else "because it is not running as root"
        print(f"Note: pods run without CPU and memory limits {why}; the lab says so on its node.")
    if prometheus:
        install_prometheus()
    print(f"export KUBECONFIG={kc}")
    return 0


def _already_up(st: dict[str, Any], kubeconfig: str | None, kc: Path, port: int, metric_resolution: str | None,
                limits: bool, state_dir: Path, asked: dict[str, Any] | None = None,
                settings: dict[str, Any] | None = None) -> int:
    differ = []
    asked, settings = asked or {}, settings or {}
    if asked.get("kubelet_config") and settings["kubelet_config"] != st.get("kubelet_config"):
        differ.append(f"another kubelet configuration (you asked for {asked['kubelet_config']})")
    if asked.get("registry_bandwidth") and settings["registry_bandwidth_bits"] != st.get("registry_bandwidth_bits"):
        differ.append(f"--registry-bandwidth {st.get('registry_bandwidth')} (you asked for {asked['registry_bandwidth']})")
    if asked.get("imagefs_size") and settings["imagefs_bytes"] != st.get("imagefs_bytes"):
        differ.append(f"--imagefs-size {st.get('imagefs_size')} (you asked for {asked['imagefs_size']})")
    if metric_resolution and parse_resolution(metric_resolution) != parse_resolution(st.get("metric_resolution", DEFAULT_RESOLUTION)):
        differ.append(f"--metric-resolution {st.get('metric_resolution')} (you asked for {metric_resolution})")
    if port and port != st["port"]:
        differ.append(f"port {st['port']} (you asked for {port})")
    if not limits and st.get("limits_enforced"):
        differ.append("limits enforced (you asked for --no-limits)")
    if differ:
        raise LabError(f"The lab is already up (pid {st['pid']}) with {' and '.join(differ)}; nothing changed.",
                       hint="Run `kperflab lab down` first to start it again with other settings.")
    recorded = Path(st.get("kubeconfig") or kc)
    target = kc if kubeconfig else recorded
    print(f"The lab is already up at https://127.0.0.1:{st['port']} (pid {st['pid']}); nothing changed.")
    if not target.exists():
        _write_kubeconfig(target, st["port"], state_dir)
        print(f"Its kubeconfig was missing; wrote it again: {target}")
    print(f"export KUBECONFIG={target}")
    return 0


def _last_error(log: Path) -> str:
    """The last meaningful line of the lab's log (the error a failed start printed)."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for ln in reversed(lines):
        if ln.startswith("kperflab:") or "Error" in ln:
            return ln.removeprefix("kperflab: ")
    return lines[-1] if lines else "no log"


def serve(port: int = 0, metric_resolution: str = DEFAULT_RESOLUTION, kubeconfig: str | None = None,
          announce: bool = False, limits: bool = True, runtime: str = "auto", kubelet_config: str | None = None,
          registry_bandwidth: str = DEFAULT_BANDWIDTH, imagefs_size: str = DEFAULT_IMAGEFS_SIZE) -> int:
    """Run the lab in this process until SIGTERM/SIGINT (what `lab up` starts in the background)."""
    from .images.slowlink import SLOW_HOST
    from .kubeletconfig import KubeletConfig
    from .server import Lab

    settings = lab_settings(kubelet_config, registry_bandwidth, imagefs_size)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir = _state_dir()
    kc = Path(kubeconfig).expanduser() if kubeconfig else paths.lab_kubeconfig()
    tls_dir = state_dir / "tls"
    _ensure_credentials(state_dir)
    token = (state_dir / "token").read_text().strip()
    t0 = time.monotonic()
    try:
        lab = Lab(state_dir, token, (str(tls_dir / "server.crt"), str(tls_dir / "server.key")), port,
                  metric_resolution=parse_resolution(metric_resolution), limits=limits, runtime=runtime,
                  registry_bandwidth=settings["registry_bandwidth"], imagefs_size=settings["imagefs_bytes"],
                  kubelet_config=KubeletConfig.from_dict(settings["kubelet_config"]))
    except OSError as exc:
        raise _port_error(port, exc) from None
    log = logging.getLogger("kperflab.lab")
    try:
        lab.start()
        _write_kubeconfig(kc, lab.port, state_dir)
        if lab.restored and _refresh_user_kubeconfigs(lab.port):
            log.info("participants' kubeconfigs now point at port %d", lab.port)
        lab.registration.update(kubeconfig=str(kc), home=str(paths.home()))
        (state_dir / STATE_FILE).write_text(json.dumps({
            "pid": os.getpid(), "port": lab.port, "lab_id": lab.lab_id, "kubeconfig": str(kc), "started": time.time(),
            "metric_resolution": metric_resolution, "limits_enforced": lab.driver is not None, "restored": lab.restored,
            "runtime": lab.runtime_description, "registry": lab.registry.url if lab.registry is not None else None,
            **{k: settings[k] for k in ("kubelet_config", "imagefs_size", "imagefs_bytes")},
            **({"registry_bandwidth": settings["registry_bandwidth"], "registry_bandwidth_bits":
                settings["registry_bandwidth_bits"], "slow_registry": SLOW_HOST} if lab.slow_registry is not None else {}),
            "test_images": lab.test_images.refs() if getattr(lab, "test_images", None) else {}}))
        log.info("lab %s ready on 127.0.0.1:%d in %.1f s (cgroups: %s; store: %s)", lab.lab_id, lab.port,
                 time.monotonic() - t0,
                 f"v{lab.driver.version}" if lab.driver else ("off, as asked" if not limits else "off, not root"),
                 "restored" if lab.restored else "new")
        if announce:
            print(f"The lab is up at https://127.0.0.1:{lab.port}; Ctrl-C stops it.\nexport KUBECONFIG={kc}", flush=True)
        lab.wait()
    finally:
        lab.stop()
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        if _is_ours(kc):
            kc.unlink(missing_ok=True)
        log.info("lab %s stopped", lab.lab_id)
    return 0


def _stop_pid(pid: int, state_dir: Path, st: dict[str, Any] | None, grace: float) -> None:
    """SIGTERM the lab process of this state dir, SIGKILL after ``grace`` seconds; wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while _alive(state_dir, st) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(state_dir, st):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while _alive(state_dir, st) and time.monotonic() < deadline:
            time.sleep(0.05)


def down(timeout: float = 40.0, purge: bool = False) -> int:
    """Stop this home's lab and remove what it made in the kernel. Its state (the store, CA, tokens) is kept for the
    next `lab up`, unless ``purge`` (`lab down --purge`, `lab reset`) wipes it."""
    state_dir = paths.lab_state_dir()
    st = read_state()
    was_up = _alive(state_dir, st)
    lab_id = _home_lab_id(state_dir)
    if was_up:
        pid = st["pid"] if st else next((r.info.get("pid") for r in labs.records()
                                         if r.alive and r.state_dir == state_dir), None)
        if pid is None:
            raise LabError(f"A lab holds {state_dir}/lab.lock but its pid is unknown.", hint="Find it with `kperflab lab status`.")
        _stop_pid(int(pid), state_dir, st, timeout)
    # this home's lab, and any earlier lab of this home that died leaving its run dir
    ids = {lab_id} if lab_id else set()
    if (state_dir / "run").is_dir():
        ids |= {p.name for p in (state_dir / "run").iterdir() if labs.ID_RE.match(p.name)}
    live = labs.live_ids() | {r.lab_id for r in labs.records() if r.alive}
    left = [labs.remove(i, state_dir) for i in sorted(ids - live)]
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    kc = Path(st["kubeconfig"]) if st and st.get("kubeconfig") else paths.lab_kubeconfig()
    if kc.exists() and _is_ours(kc):
        kc.unlink()
    if lab_id:
        rest = labs.census(lab_id, state_dir)
        if not rest.empty():
            raise LabError(f"Some of the lab's things could not be removed: {rest.describe()}.",
                           hint="Run `kperflab lab down` as root.")
    removed = [c for c in left if not c.empty()]
    extra = f" (and removed what it left: {'; '.join(c.describe() for c in removed)})" if removed else ""
    print(f"The lab is down{extra}." if was_up or removed else "The lab was not running; nothing of it is left on this machine.")
    if purge:
        gone = _purge(state_dir)
        print(f"Wiped its state ({', '.join(gone)}): the next `kperflab lab up` starts an empty cluster."
              if gone else "It had no kept state to wipe.")
    elif has_kept_state(state_dir):
        print(f"Its state is kept: {kept_summary(state_dir)}. `kperflab lab up` brings it back; "
              "`kperflab lab reset` (or `lab down --purge`) wipes it.")
    return 0


def reset(timeout: float = 40.0) -> int:
    """`kperflab lab reset`: `lab down --purge` — stop the lab and wipe its state, as if it had never started."""
    return down(timeout, purge=True)


def down_by_id(lab_id: str, timeout: float = 40.0) -> int:
    """`kperflab lab down --id ID`: stop any lab `lab status` lists (one whose home is gone, say) and remove what it
    made, or remove what a dead one left."""
    if not labs.ID_RE.match(lab_id):
        raise LabError(f"{lab_id!r} is not a lab id (16 hex digits).", hint="Copy one from `kperflab lab status`.")
    rec = next((r for r in labs.records() if r.lab_id == lab_id), None)
    alive = lab_id in labs.live_ids() or (rec is not None and rec.alive)
    if alive:
        pid = rec.info.get("pid") if rec else None
        if pid is None:
            raise LabError(f"The lab {lab_id} is running, but its record (and so its pid) is not readable here: "
                           "it belongs to another user.", hint="Ask its owner to stop it, or run this as root.")
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise LabError(f"The lab {lab_id} (pid {pid}) belongs to another user.", hint="Run this as root.") from None
        deadline = time.monotonic() + timeout
        while lab_id in labs.live_ids() and time.monotonic() < deadline:
            time.sleep(0.1)
        if lab_id in labs.live_ids():
            os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.5)
    elif rec is None and labs.census(lab_id).empty():
        raise LabError(f"No lab {lab_id} on this machine.", hint="See `kperflab lab status` for the labs there are.")
    found = labs.remove(lab_id)
    print(f"The lab {lab_id} is down." if alive else f"Removed what the dead lab {lab_id} left: {found.describe()}.")
    return 0


def status() -> int:
    """Every lab on this machine, then this KPERFLAB_HOME's lab in detail."""
    state_dir = paths.lab_state_dir()
    recs = labs.records()
    dead = {c.lab_id: c for c in labs.dead_labs(state_dir)}
    unlisted = sorted(labs.live_ids() - {r.lab_id for r in recs})  # another user's, whose registry we cannot read
    mine = None
    if recs or dead or unlisted:
        print("labs on this machine:")
        for r in recs:
            here = r.state_dir == state_dir
            mine = r if here and r.alive else mine
            where = f"https://127.0.0.1:{r.info['port']}" if r.info.get("port") else "starting"
            age = f"up {_age(time.time() - r.info.get('started', time.time()))}"
            state = (f"running  pid {r.info.get('pid')}  {where}  {age}" if r.alive
                     else f"dead     left {dead[r.lab_id].describe() if r.lab_id in dead else 'nothing'}")
            print(f"  {r.lab_id}  {state}  home {r.info.get('home') or r.state_dir}{'  (this KPERFLAB_HOME)' if here else ''}")
        for lab_id in unlisted:
            print(f"  {lab_id}  running  (another user's lab: its record is not readable here)")
        for lab_id, c in dead.items():
            if c.record is None:
                print(f"  {lab_id}  dead     left {c.describe()} (no record)")
        if dead:
            print("  what dead labs left is removed by the next `kperflab lab up` (or `kperflab lab down` in their home).")
    st = read_state()
    kept = f"state: {kept_summary(state_dir)}" if has_kept_state(state_dir) else None
    if mine is None or not st:
        print(f"The lab of KPERFLAB_HOME={paths.home()} is not running. Start it with `kperflab lab up`"
              + (" (it brings back the kept state)." if kept else "."))
        if kept:
            print(kept + " (`kperflab lab reset` wipes it)")
        return 1
    ca = state_dir / "tls" / "ca.crt"
    healthy = _healthy(st["port"], ca)
    print(f"this lab: {'healthy' if healthy else 'NOT answering'} at https://127.0.0.1:{st['port']} (pid {st['pid']}, "
          f"id {st.get('lab_id')}, up {_age(time.time() - st.get('started', time.time()))})")
    kc = Path(st.get("kubeconfig") or paths.lab_kubeconfig())
    print(f"kubeconfig: {kc}" + ("" if kc.exists() else " (missing: `kperflab lab up` writes it again)"))
    if st.get("runtime"):
        print(f"runtime: {st['runtime']}")
    if kept:
        print(kept + (" (restored at this start)" if st.get("restored") else ""))
    if st.get("metric_resolution"):
        print(f"metrics: kubelet /stats/summary, /metrics/resource, /metrics/cadvisor and metrics.k8s.io v1/v1beta1, "
              f"sampled every {st['metric_resolution']}")
    if not healthy:
        return 1
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = f"https://127.0.0.1:{st['port']}"
    cfg.ssl_ca_cert = str(ca)
    cfg.api_key = {"authorization": "Bearer " + (state_dir / "token").read_text().strip()}
    cfg.retries = 0
    v1 = client.CoreV1Api(client.ApiClient(cfg))
    for node in v1.list_node(_request_timeout=10).items:
        conds = {c.type: c.status for c in node.status.conditions}
        pressure = [t for t in ("MemoryPressure", "DiskPressure", "PIDPressure") if conds.get(t) == "True"]
        print(f"node: {node.metadata.name} Ready={conds.get('Ready', 'Unknown')} cpu={node.status.capacity['cpu']} "
              f"memory={node.status.capacity['memory']} limits-enforced="
              f"{(node.metadata.annotations or {}).get('kperflab.dev/limits-enforced')}"
              + (f" pressure={','.join(pressure)}" if pressure else ""))
    pods = v1.list_pod_for_all_namespaces(_request_timeout=10).items
    print(f"prometheus: {_prometheus_state(pods)}")
    print(f"pods: {len(pods)}")
    for p in pods:
        print(f"  {p.metadata.namespace}/{p.metadata.name}: {p.status.phase}")
    return 0


def _age(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}h{s % 3600 // 60}m" if s >= 3600 else (f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s")


def images(add: str | None = None, size: str | None = None, layers: int = 1, compressible: bool = False) -> int:
    """`kperflab lab images`: what the lab's registry holds (name, digest, size); ``--add NAME --size 100MB
    --layers N`` builds a test image of that size and layer count into it (for the storage lesson)."""
    from .images import add_test_image, format_rows, list_registry, slow_reference

    st = running()
    if st is None:
        raise LabError(f"The lab of KPERFLAB_HOME={paths.home()} is not running.", hint="Start it with `kperflab lab up`.")
    if not st.get("registry"):
        raise LabError(f"This lab has no image registry: its runtime is {st.get('runtime', 'the process runtime')}.",
                       hint="Images need the OCI runtime (root, crun): `kperflab lab down`, then `sudo kperflab lab up`.")
    if add:
        if not size:
            raise LabError("--add needs --size.", hint="For example: kperflab lab images --add big:100mb --size 100MB --layers 5")
        n = parse_size(size)
        if not 1 <= layers <= 100:
            raise LabError(f"--layers {layers} is out of range.", hint="Use 1 to 100 layers.")
        added = add_test_image(st["registry"], add, n, layers, compressible=compressible)
        print(f"Built {added.row.name} ({added.row.layers} layers, {added.image.size} bytes) in {added.build_seconds:.1f} s, "
              f"pushed in {added.push_seconds:.1f} s: {added.row.digest}")
    print(format_rows(list_registry(st["registry"])))
    lesson = st.get("test_images") or {}
    if lesson:
        print("\nthe storage lesson's images (ConfigMap kube-public/kperflab-test-images):")
        width = max(len(k) for k in lesson)
        for label, ref in lesson.items():
            print(f"  {label.ljust(width)}  {ref}")
        if st.get("slow_registry"):
            print(f"  the same images over a {st.get('registry_bandwidth')} link: {st['slow_registry']}/<repository>:<tag>,"
                  f" e.g. {slow_reference(next(iter(lesson.values())), st['slow_registry'])}")
    return 0


def parse_size(text: str) -> int:
    """``100MB``, ``10MiB``, ``1GB``, ``5000`` (bytes) → bytes.

    >>> parse_size("100MB"), parse_size("10MiB"), parse_size("512")
    (100000000, 10485760, 512)
    """
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    t = text.strip().upper()
    num = t.rstrip("KMGIB")
    try:
        value = float(num) * units[t[len(num):]]
    except (ValueError, KeyError):
        raise LabError(f"--size {text!r} is not a size.", hint="Write it like 10MB, 100MiB or 1GB.") from None
    if not 1 <= value <= 8 * 10**9:
        raise LabError(f"--size {text} is out of range.", hint="Use 1 byte to 8 GB.")
    return int(value)


def logs(tail: int = 100) -> int:
    if tail < 0:
        raise LabError(f"--tail {tail} is negative.", hint="Use a number of lines from the end, or 0 for the whole log.")
    path = paths.lab_state_dir() / "lab.log"
    if not path.exists():
        print("The lab has no log yet (it has never been started here).")
        return 1
    lines = path.read_text(errors="replace").splitlines()
    print("\n".join(lines[-tail:] if tail else lines))
    return 0



# -- Prometheus ------------------------------------------------------------------------------------

PROMETHEUS_MANIFEST = Path(__file__).resolve().parent.parent / "manifests" / "prometheus.yaml"
PROMETHEUS_NAMESPACE, PROMETHEUS_SELECTOR = "monitoring", "app.kubernetes.io/name=prometheus"
PROMETHEUS_TIMEOUT = 120.0
APPLY_MANAGER = "kperflab"
# kind → (API path prefix, plural) for what the shipped manifest holds
_KINDS = {"Namespace": ("/api/v1", "namespaces"), "ServiceAccount": ("/api/v1", "serviceaccounts"),
          "ConfigMap": ("/api/v1", "configmaps"), "Service": ("/api/v1", "services"),
          "Deployment": ("/apis/apps/v1", "deployments"),
          "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles"),
          "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings")}


def _object_path(obj: dict[str, Any]) -> str:
    prefix, plural = _KINDS[obj["kind"]]
    meta = obj["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{prefix}{ns}/{plural}/{meta['name']}"


def _prometheus_state(pods: list[Any]) -> str:
    """What `lab status` says of Prometheus, from the pods (kubernetes client objects) of every namespace."""
    mine = [p for p in pods if p.metadata.namespace == PROMETHEUS_NAMESPACE
            and (p.metadata.labels or {}).get("app.kubernetes.io/name") == "prometheus"]
    if not mine:
        return "not installed (`kperflab lab up --prometheus` installs it)"
    ready = [p for p in mine if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
    if ready:
        return (f"running (pod {PROMETHEUS_NAMESPACE}/{ready[0].metadata.name}; Service {PROMETHEUS_NAMESPACE}/prometheus "
                f"port web, through /api/v1/namespaces/{PROMETHEUS_NAMESPACE}/services/prometheus:web/proxy/)")
    return f"installed, not ready (pod {PROMETHEUS_NAMESPACE}/{mine[0].metadata.name}: {mine[0].status.phase})"


def install_prometheus(timeout: float = PROMETHEUS_TIMEOUT) -> int:
    """`lab up --prometheus` on a running lab: its image (built once per machine from Debian's ``prometheus``
    package, `images.build.ensure_prometheus_image`) pushed into the lab's registry under upstream's name, the
    shipped manifest applied server-side with the lab's admin credentials (field manager ``kperflab``), then a wait
    until the Prometheus pod is Ready; a LabError with the pod's events and log tail when it does not get there."""
    from .images import push
    from .images.build import ImageBuildError, cached_prometheus_image, ensure_prometheus_image

    api = _AdminClient()
    st = running() or {}
    if not st.get("registry"):
        raise LabError(f"Prometheus needs the lab's OCI runtime and registry; this lab's runtime is "
                       f"{st.get('runtime', 'the process runtime')}.",
                       hint="`kperflab lab down`, then `sudo kperflab lab up --prometheus` (root, crun).")
    if cached_prometheus_image() is None:
        print("Building the Prometheus image from Debian's prometheus package (once per machine, about a minute)…",
              flush=True)
    t0 = time.monotonic()
    try:
        image = ensure_prometheus_image()
    except ImageBuildError as exc:
        raise LabError(str(exc), hint=exc.hint or "See the build log it names.") from None
    pushed = push(st["registry"], image.layout, image.repository, image.tags[0])
    docs = [d for d in yaml.safe_load_all(PROMETHEUS_MANIFEST.read_text()) if d]
    for doc in docs:  # server-side apply, as `kubectl apply --server-side` does
        api.apply(_object_path(doc), doc, APPLY_MANAGER)
    print(f"Prometheus applied ({image.refs[0]}, {len(docs)} objects from {PROMETHEUS_MANIFEST.name}; image pushed "
          f"in {time.monotonic() - t0:.1f} s, {pushed.blobs_sent} blobs sent); waiting for its pod…", flush=True)
    pod = _wait_prometheus_ready(api, timeout)
    print(f"Prometheus is ready: pod {PROMETHEUS_NAMESPACE}/{pod}, Service {PROMETHEUS_NAMESPACE}/prometheus port web "
          f"(kubectl get --raw /api/v1/namespaces/{PROMETHEUS_NAMESPACE}/services/prometheus:web/proxy/api/v1/targets)")
    return 0


def _wait_prometheus_ready(api: _AdminClient, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    ns, sel = PROMETHEUS_NAMESPACE, PROMETHEUS_SELECTOR.replace("=", "%3D")
    name = ""
    while True:
        pods = api.call("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={sel}")[1].get("items") or []
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        for p in live:
            name = p["metadata"]["name"]
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in p.get("status", {}).get("conditions") or []):
                return name
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    if not name:
        raise LabError(f"No Prometheus pod appeared in namespace {ns} within {timeout:.0f} s.",
                       hint=f"See `kubectl -n {ns} describe deployment prometheus`.")
    events = api.call("GET", f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3D{name}")[1]
    items = sorted((events or {}).get("items") or [], key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    lines = [f"{e.get('reason')}: {e.get('message')}" for e in items][-5:]
    code, log_tail = _pod_log_tail(api, ns, name)
    detail = "; ".join(lines) or "no events"
    logs_text = f" Its log ends: {log_tail}" if code == 200 and log_tail else ""
    raise LabError(f"Prometheus (pod {ns}/{name}) was not Ready within {timeout:.0f} s. Its events: {detail}.{logs_text}",
                   hint=f"See `kubectl -n {ns} describe pod {name}` and `kubectl -n {ns} logs {name}`.")


def _pod_log_tail(api: _AdminClient, ns: str, name: str, lines: int = 5) -> tuple[int, str]:
    req = urllib.request.Request(f"https://127.0.0.1:{api.port}/api/v1/namespaces/{ns}/pods/{name}/log?tailLines={lines}",
                                 headers={"Authorization": f"Bearer {api.admin_token}"})
    try:
        with urllib.request.urlopen(req, context=api.ctx, timeout=15) as r:
            return r.status, " | ".join(r.read().decode(errors="replace").strip().splitlines())
    except (OSError, ssl.SSLError) as exc:
        return getattr(exc, "code", 0), ""


# -- participant users -----------------------------------------------------------------------------

USERS_NAMESPACE = "kperflab-users"
USER_LABEL = "kperflab.dev/user"  # on what `lab user add` makes, so `list` and `remove` find it
USER_TOKEN_SECONDS = 365 * 24 * 3600  # the token in a user's kubeconfig: valid while its ServiceAccount exists
MAX_RULE_LINES = 12
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


def _users_dir() -> Path:
    return paths.home() / "users"


def _user_kubeconfig(name: str) -> Path:
    return _users_dir() / f"{name}.kubeconfig"


def _check_user_name(name: str, what: str = "user name") -> None:
    import re

    limit = 253 if what == "user name" else 63
    pattern = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*" if what == "user name" else _DNS_LABEL
    if not name or len(name) > limit or not re.fullmatch(pattern, name):
        raise BadInput(f"{name!r} is not a valid {what}: use lower-case letters, digits and '-' (a DNS-1123 "
                       f"{'subdomain' if what == 'user name' else 'label'} of at most {limit} characters).")


class _AdminClient:
    """The running lab's API with its admin token (JSON over HTTPS to 127.0.0.1)."""

    def __init__(self) -> None:
        st = running()
        if st is None:
            raise LabError(f"The lab of KPERFLAB_HOME={paths.home()} is not running.", hint="Start it with `kperflab lab up`.")
        state_dir = paths.lab_state_dir()
        self.port = int(st["port"])
        self.ca_pem = (state_dir / "tls" / "ca.crt").read_bytes()
        self.admin_token = (state_dir / "token").read_text().strip()
        self.ctx = ssl.create_default_context(cadata=self.ca_pem.decode())

    def apply(self, path: str, obj: dict[str, Any], manager: str) -> Any:
        """Server-side apply of ``obj`` at ``path`` (``application/apply-patch+yaml``; JSON is YAML), forcing
        conflicts as `kubectl apply --server-side --force-conflicts` does: the object as the lab stored it."""
        return self.call("PATCH", f"{path}?fieldManager={manager}&force=true", obj,
                         content_type="application/apply-patch+yaml")[1]

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             ok: tuple[int, ...] = (), content_type: str = "application/json") -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {token or self.admin_token}", "Content-Type": content_type,
            "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=15) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                answer = json.loads(exc.read() or b"null")
            except ValueError:
                answer = None
            if exc.code in ok:
                return exc.code, answer
            message = answer.get("message") if isinstance(answer, dict) else exc.reason
            raise LabError(f"The lab answered {exc.code} to {method} {path}: {message}") from None
        except (OSError, ssl.SSLError) as exc:
            raise LabError(f"The lab did not answer {method} {path}: {exc}") from None


def admin_get(path: str) -> Any:
    """GET ``path`` from this home's running lab with its admin token (JSON), without the kubernetes client."""
    return _AdminClient().call("GET", path)[1]


def user_kubeconfig_text(port: int, ca_pem: bytes, name: str, namespace: str, token: str) -> str:
    cluster = paths.LAB_CONTEXT
    cfg = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster, "cluster": {"server": f"https://127.0.0.1:{port}",
                                                   "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": f"{name}@{cluster}", "context": {"cluster": cluster, "user": name, "namespace": namespace}}],
        "current-context": f"{name}@{cluster}",
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def _rules_lines(status: dict[str, Any]) -> list[str]:
    """A SelfSubjectRulesReview's rules, one line each, as ``kubectl auth can-i --list`` groups them."""
    lines = []
    for r in status.get("resourceRules") or []:
        groups = r.get("apiGroups") or [""]
        res = ", ".join(f"{x}.{g}" if g else x for g in groups for x in r.get("resources") or [])
        names = f" named {', '.join(r['resourceNames'])}" if r.get("resourceNames") else ""
        lines.append(f"  {', '.join(r.get('verbs') or [])}: {res}{names}")
    for r in status.get("nonResourceRules") or []:
        lines.append(f"  {', '.join(r.get('verbs') or [])}: {', '.join(r.get('nonResourceURLs') or [])}")
    return lines


def user_add(name: str, namespace: str | None = None, clusterrole: str | None = None) -> int:
    """`kperflab lab user add NAME [--namespace NS] [--clusterrole ROLE]`: a ServiceAccount NAME (in NS, made if
    missing, else in kperflab-users), a token for it from the API's TokenRequest (valid a year, or until the
    ServiceAccount is deleted), a kubeconfig ``$KPERFLAB_HOME/users/NAME.kubeconfig`` (0600) using it, and with
    ``--clusterrole`` a RoleBinding in NS (a ClusterRoleBinding without NS) to that ClusterRole. Prints what the
    user may do, as the API answers a SelfSubjectRulesReview for it. Running it again reuses what exists and
    writes a fresh token."""
    _check_user_name(name)
    if namespace is not None:
        _check_user_name(namespace, "namespace name")
    ns = namespace or USERS_NAMESPACE
    api = _AdminClient()
    labels = {USER_LABEL: name, "app.kubernetes.io/managed-by": "kperflab"}
    api.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, ok=(409,))
    api.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                                   "metadata": {"name": name, "labels": labels}}, ok=(409,))
    if clusterrole:
        api.call("GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{clusterrole}")
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "metadata": {"name": f"kperflab-user-{name}", "labels": labels},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": clusterrole},
                   "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}
        where = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings" if namespace else \
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
        binding["kind"] = "RoleBinding" if namespace else "ClusterRoleBinding"
        code, _ = api.call("POST", where, binding, ok=(409,))
        if code == 409:  # roleRef is immutable: replace the binding
            api.call("DELETE", f"{where}/{binding['metadata']['name']}", ok=(404,))
            api.call("POST", where, binding)
    _, tr = api.call("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": USER_TOKEN_SECONDS}})
    token = tr["status"]["token"]
    kc = _user_kubeconfig(name)
    paths.private_dir(kc.parent)
    paths.write_private(kc, user_kubeconfig_text(api.port, api.ca_pem, name, ns, token))
    _, review = api.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": ns}}, token=token)
    print(f"User {name} is ServiceAccount {ns}/{name} (system:serviceaccount:{ns}:{name}); its token is valid until "
          f"{tr['status']['expirationTimestamp']} or until the ServiceAccount is deleted.")
    print(f"kubeconfig: {kc}   (kubectl --kubeconfig {kc} …)")
    lines = _rules_lines(review.get("status") or {})
    print(f"What it may do in namespace {ns} (the API's SelfSubjectRulesReview):")
    print("\n".join(lines[:MAX_RULE_LINES]))
    if len(lines) > MAX_RULE_LINES:
        print(f"  … {len(lines) - MAX_RULE_LINES} more rules: `kubectl --kubeconfig {kc} auth can-i --list` shows them all.")
    if not clusterrole:
        print(f"Nothing beyond discovery and asking what it may do until you bind a role, e.g. "
              f"`kubectl create rolebinding {name}-edit --clusterrole=edit --serviceaccount={ns}:{name} -n {ns}` "
              f"(or run again with --clusterrole).")
    return 0


def user_list() -> int:
    """`kperflab lab user list`: the users `user add` made (their ServiceAccounts) and their kubeconfig files."""
    api = _AdminClient()
    _, sas = api.call("GET", f"/api/v1/serviceaccounts?labelSelector={USER_LABEL}")
    items = sas.get("items") or []
    if not items:
        print("No users: add one with `kperflab lab user add NAME`.")
        return 0
    for sa in items:
        meta = sa["metadata"]
        kc = _user_kubeconfig(meta["name"])
        print(f"{meta['name']}  ServiceAccount {meta['namespace']}/{meta['name']}  "
              f"kubeconfig {kc if kc.exists() else '(missing: `user add` writes it again)'}")
    return 0


def user_remove(name: str) -> int:
    """`kperflab lab user remove NAME`: delete its ServiceAccount (its tokens stop working at once), the bindings
    `user add` made for it, and its kubeconfig. Namespaces are left alone: they may hold the user's work."""
    _check_user_name(name)
    api = _AdminClient()
    _, sas = api.call("GET", f"/api/v1/serviceaccounts?labelSelector={USER_LABEL}%3D{name}")
    found = sas.get("items") or []
    for sa in found:
        api.call("DELETE", f"/api/v1/namespaces/{sa['metadata']['namespace']}/serviceaccounts/{name}", ok=(404,))
    for path in ("/apis/rbac.authorization.k8s.io/v1/rolebindings", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"):
        _, bindings = api.call("GET", f"{path}?labelSelector={USER_LABEL}%3D{name}")
        for b in bindings.get("items") or []:
            meta = b["metadata"]
            where = (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{meta['namespace']}/rolebindings/{meta['name']}"
                     if meta.get("namespace") else f"{path}/{meta['name']}")
            api.call("DELETE", where, ok=(404,))
    kc = _user_kubeconfig(name)
    had_file = kc.exists()
    kc.unlink(missing_ok=True)
    if not found and not had_file:
        raise LabError(f"There is no user {name}.", hint="`kperflab lab user list` shows the users.")
    print(f"Removed user {name}: its ServiceAccount, bindings and kubeconfig (its tokens no longer work).")
    return 0
