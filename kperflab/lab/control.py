"""`kperflab lab up|down|status|logs`: start the lab in the background, stop it, and clean up after a dead one.

State lives in ``$KPERFLAB_HOME/lab`` (default ``~/.kperflab/lab``): lab.json (pid, port), lab.log, tls/, pods/.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .. import paths
from ..errors import LabError
from . import cgroups
from .pki import make_server_tls, write_tls
from .runtime import LAB_ENV

STATE_FILE = "lab.json"


def _state_dir() -> Path:
    d = paths.lab_state_dir()
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_state() -> dict[str, Any] | None:
    f = paths.lab_state_dir() / STATE_FILE
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _healthy(port: int, ca: Path, timeout: float = 2.0) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=timeout) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


# -- census and cleanup ----------------------------------------------------------------------------

def lab_processes(lab_id: str | None = None) -> list[int]:
    """Every process on this machine that a lab (or the lab ``lab_id``) started for a pod: they carry KPERFLAB_LAB
    in their environment."""
    pids = []
    marker = f"{LAB_ENV}={lab_id}".encode() if lab_id else f"{LAB_ENV}=".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes()
        except OSError:
            continue
        if any(item == marker if lab_id else item.startswith(marker) for item in env.split(b"\0")):
            pids.append(int(d.name))
    return sorted(pids)


def lab_mounts() -> list[str]:
    root = str(paths.lab_state_dir())
    out = []
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            target = line.split()[1].replace("\\040", " ")
            if target.startswith(root + "/"):
                out.append(target)
    except OSError:
        pass
    return sorted(out, key=len, reverse=True)


def census() -> dict[str, list[Any]]:
    """What the lab has on this machine now: processes, cgroup directories, mounts."""
    drv = cgroups.detect()
    return {"processes": lab_processes(), "cgroups": [str(d) for d in drv.lab_dirs()] if drv else [],
            "mounts": lab_mounts()}


def cleanup() -> dict[str, int]:
    """Remove whatever a lab left on this machine: kill its pod processes, remove its cgroups and mounts."""
    killed = 0
    for _ in range(20):
        pids = lab_processes()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)
    drv = cgroups.detect()
    removed = 0
    if drv is not None:
        removed = len(drv.lab_dirs())
        drv.kill_all(cgroups.LAB_ROOT)
        drv.remove(cgroups.LAB_ROOT)
    mounts = lab_mounts()
    for m in mounts:
        subprocess.run(["umount", "-l", m], capture_output=True)
    return {"processes": killed, "cgroups": removed, "mounts": len(mounts)}


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


def _is_ours(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text())
        return isinstance(data, dict) and [c.get("name") for c in data.get("contexts") or []] == [paths.LAB_CONTEXT]
    except (OSError, yaml.YAMLError):
        return False


# -- commands --------------------------------------------------------------------------------------

def up(kubeconfig: str | None = None, foreground: bool = False, port: int = 0, metric_resolution: str = "15s",
       timeout: float = 30.0) -> int:
    state_dir = _state_dir()
    kc = Path(kubeconfig).expanduser() if kubeconfig else paths.lab_kubeconfig()
    st = read_state()
    if st and _alive(st["pid"]) and _healthy(st["port"], state_dir / "tls" / "ca.crt"):
        print(f"The lab is already up at https://127.0.0.1:{st['port']} (pid {st['pid']}); nothing changed.")
        print(f"export KUBECONFIG={st.get('kubeconfig', kc)}")
        return 0
    if kc.exists() and not _is_ours(kc):
        raise LabError(f"{kc} exists and is not the lab's kubeconfig; it was left untouched.",
                       hint="Choose another path with --kubeconfig.")
    if st and _alive(st["pid"]):
        os.kill(st["pid"], signal.SIGKILL)  # alive but not answering: a hung lab
    left = census()
    if st or any(left.values()):
        done = cleanup()
        if any(done.values()):
            print(f"Removed what a previous lab left: {done['processes']} process(es), {done['cgroups']} cgroup tree(s), "
                  f"{done['mounts']} mount(s).")
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    _parse_resolution(metric_resolution)
    tls = make_server_tls()
    write_tls(tls, state_dir / "tls")
    token = secrets.token_urlsafe(32)
    (state_dir / "token").write_text(token)
    (state_dir / "token").chmod(0o600)
    args = [sys.executable, "-m", "kperflab.cli", "lab", "serve", "--port", str(port),
            "--metric-resolution", metric_resolution, "--kubeconfig", str(kc)]
    if foreground:
        return serve(port=port, metric_resolution=metric_resolution, kubeconfig=str(kc), announce=True)
    logf = open(state_dir / "lab.log", "ab")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
                            cwd=str(state_dir))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"The lab exited while starting (code {proc.returncode}): {_tail(state_dir / 'lab.log', 5)}",
                           hint="See `kperflab lab logs`.")
        st = read_state()
        if st and st.get("pid") == proc.pid and _healthy(st["port"], state_dir / "tls" / "ca.crt", 1.0):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        cleanup()
        raise LabError(f"The lab did not become ready within {timeout:.0f}s.", hint="See `kperflab lab logs`.")
    enforced = cgroups.detect() is not None
    print(f"The lab is up at https://127.0.0.1:{st['port']} (pid {proc.pid}); kubeconfig: {kc}")
    if not enforced:
        print("Note: not running as root, so pods run without CPU and memory limits (the lab says so on its node).")
    print(f"export KUBECONFIG={kc}")
    return 0


def _parse_resolution(text: str) -> float:
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


def _tail(path: Path, n: int) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


def serve(port: int = 0, metric_resolution: str = "15s", kubeconfig: str | None = None, announce: bool = False) -> int:
    """Run the lab in this process until SIGTERM/SIGINT (what `lab up` starts in the background)."""
    from .server import Lab

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir = _state_dir()
    kc = Path(kubeconfig).expanduser() if kubeconfig else paths.lab_kubeconfig()
    tls_dir = state_dir / "tls"
    if not (tls_dir / "server.crt").exists():
        write_tls(make_server_tls(), tls_dir)
        (state_dir / "token").write_text(secrets.token_urlsafe(32))
    token = (state_dir / "token").read_text().strip()
    lab = Lab(state_dir, token, (str(tls_dir / "server.crt"), str(tls_dir / "server.key")), port,
              metric_resolution=_parse_resolution(metric_resolution))
    try:
        lab.start()
        kc.parent.mkdir(parents=True, exist_ok=True)
        kc.write_text(kubeconfig_text(lab.port, (tls_dir / "ca.crt").read_bytes(), token))
        kc.chmod(0o600)
        (state_dir / STATE_FILE).write_text(json.dumps({"pid": os.getpid(), "port": lab.port, "lab_id": lab.lab_id,
                                                        "kubeconfig": str(kc), "started": time.time(),
                                                        "metric_resolution": metric_resolution}))
        logging.getLogger("kperflab.lab").info("lab ready on 127.0.0.1:%d (cgroups: %s)", lab.port,
                                               f"v{lab.driver.version}" if lab.driver else "off, not root")
        if announce:
            print(f"The lab is up at https://127.0.0.1:{lab.port}; Ctrl-C stops it.\nexport KUBECONFIG={kc}", flush=True)
        lab.wait()
    finally:
        lab.stop()
        cleanup()
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        if _is_ours(kc):
            kc.unlink(missing_ok=True)
        logging.getLogger("kperflab.lab").info("lab stopped")
    return 0


def down(timeout: float = 40.0) -> int:
    st = read_state()
    if st and _alive(st["pid"]):
        os.kill(st["pid"], signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(st["pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(st["pid"]):
            os.kill(st["pid"], signal.SIGKILL)
    done = cleanup()
    (paths.lab_state_dir() / STATE_FILE).unlink(missing_ok=True)
    kc = Path(st["kubeconfig"]) if st and st.get("kubeconfig") else paths.lab_kubeconfig()
    if kc.exists() and _is_ours(kc):
        kc.unlink()
    left = census()
    if any(left.values()):
        raise LabError(f"Some of the lab's things could not be removed: {left}.", hint="Run `kperflab lab down` as root.")
    if st:
        extra = f" (and removed {done['processes']} leftover process(es))" if done["processes"] else ""
        print(f"The lab is down{extra}.")
    else:
        print("The lab was not running; nothing of it is left on this machine.")
    return 0


def status() -> int:
    st = read_state()
    if not st or not _alive(st["pid"]):
        print("The lab is not running. Start it with `kperflab lab up`.")
        return 1
    healthy = _healthy(st["port"], paths.lab_state_dir() / "tls" / "ca.crt")
    print(f"lab: {'healthy' if healthy else 'NOT answering'} at https://127.0.0.1:{st['port']} (pid {st['pid']}, "
          f"up {int(time.time() - st.get('started', time.time()))}s)")
    print(f"kubeconfig: {st.get('kubeconfig')}")
    if st.get("metric_resolution"):
        print(f"metrics: kubelet /stats/summary, /metrics/resource, /metrics/cadvisor and metrics.k8s.io v1/v1beta1, "
              f"sampled every {st['metric_resolution']}")
    if not healthy:
        return 1
    from kubernetes import client, config

    api = config.new_client_from_config(st["kubeconfig"])
    v1 = client.CoreV1Api(api)
    for node in v1.list_node().items:
        ready = next((c.status for c in node.status.conditions if c.type == "Ready"), "Unknown")
        print(f"node: {node.metadata.name} Ready={ready} cpu={node.status.capacity['cpu']} "
              f"memory={node.status.capacity['memory']} limits-enforced="
              f"{(node.metadata.annotations or {}).get('kperflab.dev/limits-enforced')}")
    pods = v1.list_pod_for_all_namespaces().items
    print(f"pods: {len(pods)}")
    for p in pods:
        print(f"  {p.metadata.namespace}/{p.metadata.name}: {p.status.phase}")
    return 0


def logs(tail: int = 100) -> int:
    path = paths.lab_state_dir() / "lab.log"
    if not path.exists():
        print("The lab has no log yet (it has never been started here).")
        return 1
    lines = path.read_text(errors="replace").splitlines()
    print("\n".join(lines[-tail:] if tail else lines))
    return 0
