"""Pod volumes in the lab's kubelet: set up before the pod's sandbox, bind-mounted into its containers, torn down
when the pod ends — laid out as the kubelet lays them out, ``<run dir>/pods/<uid>/volumes/<plugin>/<name>``.

- ``emptyDir``: a directory on the node's filesystem (mode 0777); ``medium: Memory`` a tmpfs sized as the kubelet
  sizes it (``pkg/volume/emptydir``): min(sizeLimit, the pod's memory limit when every container has one, the node's
  allocatable memory). Pages written from a container are charged by the kernel to that container's memory cgroup.
- ``hostPath``: the node's path itself, after the kubelet's ``type`` checks and errors; the lab warns in an event.
- ``configMap``, ``secret``, ``downwardAPI``, ``projected``: files written by an atomic writer
  (``pkg/volume/util/atomic_writer.go``: a timestamped dir, the ``..data`` symlink swapped in one rename, one symlink
  per top-level name) with items, keys, modes and ``optional``; rewritten when the object changes; mounted
  read-only as every kubelet since 1.10 does. Secrets and projected volumes are on a tmpfs, as upstream's.
- ``persistentVolumeClaim`` (and generic ``ephemeral``): the claim's bound PV; ``spec.local.path`` and
  ``spec.hostPath.path`` are bound directly, ``spec.csi`` goes through the lab's PV plugins (publish/unpublish).
  While a claim is unbound the pod waits in ContainerCreating.

A volume that fails to set up gives the kubelet's ``FailedMount`` event (``MountVolume.SetUp failed for volume "x"
: …``) and is retried with the operation executor's back-off (0.5 s doubling to 2m2s); a pod still missing volumes
after the kubelet's ``podAttachAndMountTimeout`` (2m3s) gets the "Unable to attach or mount volumes" event.

Also here, as pure functions: the kubelet's local-storage eviction rules (``pkg/kubelet/eviction``:
emptyDir ``sizeLimit``, the pod's and each container's ``ephemeral-storage`` limit) and their messages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from . import quantity
from .stats.fsstats import PodFsStats, VolumeTarget

log = logging.getLogger("kperflab.lab.volumes")
Obj = dict[str, Any]

PLUGINS = {"emptyDir": "kubernetes.io~empty-dir", "configMap": "kubernetes.io~configmap",
           "secret": "kubernetes.io~secret", "downwardAPI": "kubernetes.io~downward-api",
           "projected": "kubernetes.io~projected", "csi": "kubernetes.io~csi"}
SUPPORTED = ("emptyDir", "hostPath", "configMap", "secret", "downwardAPI", "projected", "persistentVolumeClaim",
             "ephemeral")
API_DATA = ("configMap", "secret", "downwardAPI", "projected")  # always mounted read-only
ATTACH_AND_MOUNT_TIMEOUT = 123.0  # podAttachAndMountTimeout: 2m3s
RETRY_INITIAL, RETRY_MAX = 0.5, 122.0  # the operation executor's exponential back-off
REFRESH_PERIOD = 5.0  # how often configMap/secret/downwardAPI/projected files are compared with their objects
DEFAULT_MODE = 0o644


SATokenSource = Callable[[str, str, "list[str] | None", int, Obj], tuple[str, float]]
TOKEN_DEFAULT_EXPIRATION = 3600  # ServiceAccountTokenProjection.expirationSeconds' default
TOKEN_MAX_TTL = 24 * 3600  # the token manager refreshes a token older than this whatever its lifetime


def token_needs_refresh(exp: float, expiration_seconds: int, now: float) -> bool:
    """The kubelet token manager's ``requiresRefresh`` (without its jitter): past 80 % of the requested lifetime
    (``status.expirationTimestamp`` − ``expirationSeconds`` is when it was issued), or a day old.

    >>> token_needs_refresh(10_000 + 3607, 3607, 10_000 + 2885), token_needs_refresh(10_000 + 3607, 3607, 10_000 + 2887)
    (False, True)
    """
    issued = exp - expiration_seconds
    return now > issued + TOKEN_MAX_TTL or now > exp - expiration_seconds * 20 // 100


class MountError(Exception):
    """A volume's SetUp failed: the message goes after ``MountVolume.SetUp failed for volume "x" : ``."""


class NotProcessed(Exception):
    """The volume cannot even be resolved yet (an unbound or missing claim): the pod waits, no per-try event."""


class PVPlugins(Protocol):
    def publish(self, pv: Obj, pod_uid: str, volume: str) -> Path: ...

    def unpublish(self, pv: Obj, pod_uid: str, volume: str) -> None: ...


@dataclass
class Volume:
    name: str
    kind: str
    path: Path
    read_only: bool = False
    stats: str | None = "du"  # how its usage is measured: du, statfs, or None (no metrics, as hostPath upstream)
    ephemeral: bool = False  # IsLocalEphemeralVolume: counted in the pod's ephemeral-storage
    pvc: tuple[str, str] | None = None
    pv: Obj | None = None
    published: bool = False
    digest: str = ""  # the API-data payload last written


@dataclass
class PodVolumes:
    uid: str
    since: float  # when the kubelet began waiting for this pod's volumes
    volumes: dict[str, Volume] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    retry_at: dict[str, float] = field(default_factory=dict)
    unprocessed: dict[str, str] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)
    ready: bool = False
    refreshed: float = 0.0  # when its API-data volumes were last compared with their objects


# -- quantities as Go's resource.Quantity.String() writes them ---------------------------------------------------

_BIN = (("Ei", 1 << 60), ("Pi", 1 << 50), ("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10))
_DEC = (("E", 18), ("P", 15), ("T", 12), ("G", 9), ("M", 6), ("k", 3), ("", 0), ("m", -3), ("u", -6), ("n", -9))


def quantity_format(text: str) -> str:
    """BinarySI, DecimalSI or DecimalExponent: the format a quantity keeps from how it was written."""
    s = str(text).strip().lstrip("+-")
    suffix = s.lstrip("0123456789.")
    if suffix.endswith("i"):
        return "BinarySI"
    if suffix[:1] in ("e", "E") and suffix[1:].lstrip("+-").isdigit():
        return "DecimalExponent"
    return "DecimalSI"


def quantity_string(value: Decimal | int, fmt: str = "DecimalSI") -> str:
    """The canonical form (``Quantity.String()``).

    >>> quantity_string(10 << 20, "BinarySI"), quantity_string(Decimal(50_000_000)), quantity_string(Decimal("0.5"))
    ('10Mi', '50M', '500m')
    >>> quantity_string(1536 << 20, "BinarySI"), quantity_string(1500, "BinarySI"), quantity_string(Decimal(1_500_000))
    ('1536Mi', '1500', '1500k')
    """
    d = Decimal(value)
    if fmt == "BinarySI" and (abs(d) < 1024 or d != d.to_integral_value()):
        fmt = "DecimalSI"
    if fmt == "BinarySI":
        n = int(d)
        for suffix, unit in _BIN:
            if n % unit == 0:
                return f"{n // unit}{suffix}"
        return str(n)
    if d == 0:
        return "0"
    for suffix, exp in _DEC:
        scaled = d.scaleb(-exp)
        if scaled == scaled.to_integral_value() and (abs(scaled) >= 1 or exp == -9):
            text = str(int(scaled)) + suffix
            return text if fmt == "DecimalSI" or not suffix else f"{int(scaled)}e{exp}"
    return str(int(d.scaleb(9).to_integral_value(rounding="ROUND_CEILING"))) + "n"


def _limit(c: Obj, name: str) -> str | None:
    v = ((c.get("resources") or {}).get("limits") or {}).get(name)
    return str(v) if v is not None else None


def pod_limit(pod: Obj, name: str) -> tuple[Decimal, str] | None:
    """``resourcehelper.PodLimits`` for one resource: the sum over the containers that set it (kept in the first
    one's format), or the largest init container's when that is more; None when no container sets it."""
    spec = pod.get("spec") or {}
    total: Decimal | None = None
    fmt = "DecimalSI"
    for c in spec.get("containers") or []:
        v = _limit(c, name)
        if v is None:
            continue
        if total is None:
            total, fmt = Decimal(0), quantity_format(v)
        total += quantity.parse(v)
    for c in spec.get("initContainers") or []:
        v = _limit(c, name)
        if v is not None and (total is None or quantity.parse(v) > total):
            total, fmt = quantity.parse(v), quantity_format(v)
    return None if total is None else (total, fmt)


# -- local storage eviction ----------------------------------------------------------------------------------

EMPTY_DIR_MESSAGE = 'Usage of EmptyDir volume "{}" exceeds the limit "{}". '
POD_EPHEMERAL_MESSAGE = "Pod ephemeral local storage usage exceeds the total limit of containers {}. "
CONTAINER_EPHEMERAL_MESSAGE = 'Container {} exceeded its local ephemeral storage limit "{}". '


def local_storage_eviction(pod: Obj, stats: PodFsStats) -> str | None:
    """The eviction manager's ``localStorageEviction`` for one pod, in its order: an emptyDir over its sizeLimit,
    the pod over the sum of its containers' ephemeral-storage limits, a container over its own. Returns the
    eviction message (upstream's, trailing space included) or None."""
    spec = pod.get("spec") or {}
    for v in spec.get("volumes") or []:
        ed = v.get("emptyDir")
        if not isinstance(ed, dict) or ed.get("sizeLimit") is None:
            continue
        size = quantity.parse(ed["sizeLimit"])
        used = stats.volume(v.get("name", ""))
        if used is not None and size > 0 and Decimal(used.used or 0) > size:
            return EMPTY_DIR_MESSAGE.format(v["name"], quantity_string(size, quantity_format(ed["sizeLimit"])))
    total = pod_limit(pod, "ephemeral-storage")
    if total is not None and Decimal(stats.ephemeral.used or 0) > total[0]:
        return POD_EPHEMERAL_MESSAGE.format(quantity_string(*total))
    for c in spec.get("containers") or []:
        v = _limit(c, "ephemeral-storage")
        if v is None or quantity.parse(v) == 0:
            continue
        if Decimal(stats.container_usage(c.get("name", ""))) > quantity.parse(v):
            return CONTAINER_EPHEMERAL_MESSAGE.format(c["name"], quantity_string(quantity.parse(v), quantity_format(v)))
    return None


# -- memory-backed volumes -------------------------------------------------------------------------------------

def memory_backed_size(pod: Obj, size_limit: Any, node_allocatable: int) -> int:
    """``calculateEmptyDirMemorySize``: node allocatable memory, lowered to the pod's memory limit when every
    container declares one, lowered to ``sizeLimit`` when that is smaller still."""
    size = node_allocatable
    containers = (pod.get("spec") or {}).get("containers") or []
    if containers and all(_limit(c, "memory") is not None and quantity.parse(_limit(c, "memory")) > 0 for c in containers):
        total = pod_limit(pod, "memory")
        if total is not None and 0 < total[0] <= size:
            size = int(total[0])
    if size_limit is not None:
        q = quantity.to_bytes(size_limit)
        if 0 < q <= size:
            size = q
    return size


# -- API data: configMap, secret, downwardAPI, projected ----------------------------------------------------

Payload = dict[str, tuple[bytes, int]]  # relative path → (content, mode)


def _mode(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else default


def _keyed(data: dict[str, bytes], items: list[Obj] | None, default_mode: int, optional: bool, missing: str) -> Payload:
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    out: Payload = {}
    for it in items:
        key = it.get("key", "")
        if key not in data:
            if optional:
                continue
            raise MountError(f"{missing}: {key}")
        out[it.get("path") or key] = (data[key], _mode(it.get("mode"), default_mode))
    return out


def configmap_data(cm: Obj) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v)
    return data


def secret_data(secret: Obj) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def go_quote(s: str) -> str:
    """Go's %q for the strings labels and annotations hold."""
    return json.dumps(s, ensure_ascii=False)


def format_map(m: dict[str, str]) -> str:
    """``FormatMap``: ``key="value"`` lines in key order, no trailing newline."""
    return "\n".join(f"{k}={go_quote(str(v))}" for k, v in sorted(m.items()))


def _ceil_div(a: Decimal, b: Decimal) -> int:
    q = a / b
    i = int(q)
    return i + 1 if q > i else i


def resource_value(pod: Obj, ref: Obj, allocatable: dict[str, Any], container_name: str = "") -> str:
    """``ExtractContainerResourceValue``: a container's limit or request over the divisor, rounded up; a limit the
    container does not set is the node's allocatable."""
    name = ref.get("containerName") or container_name
    spec = pod.get("spec") or {}
    c = next((x for x in (spec.get("containers") or []) + (spec.get("initContainers") or []) if x.get("name") == name), None)
    if c is None:
        raise MountError(f"container {name} not found")
    what = ref.get("resource", "")
    kind, _, res = what.partition(".")
    if kind not in ("limits", "requests") or res not in ("cpu", "memory", "ephemeral-storage"):
        raise MountError(f"unsupported container resource : {what}")
    resources = c.get("resources") or {}
    v = (resources.get(kind) or {}).get(res)
    if v is None and kind == "limits":
        v = allocatable.get(res)
    value = quantity.parse(v) if v is not None else Decimal(0)
    divisor = quantity.parse(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Decimal(1)
    if res == "cpu":
        return str(_ceil_div(value * 1000, divisor * 1000))
    return str(_ceil_div(value, divisor))


def field_value(pod: Obj, path: str) -> str:
    meta = pod.get("metadata") or {}
    for prefix, key in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path == prefix:
            return format_map(meta.get(key) or {})
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((meta.get(key) or {}).get(path[len(prefix) + 2:-2], ""))
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": (pod.get("spec") or {}).get("nodeName"),
              "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName"),
              "status.podIP": (pod.get("status") or {}).get("podIP"), "status.hostIP": (pod.get("status") or {}).get("hostIP")}
    if path not in simple:
        raise MountError(f"unsupported fieldPath: {path}")
    return str(simple[path] or "")


def downward_payload(pod: Obj, items: list[Obj], default_mode: int, allocatable: dict[str, Any]) -> Payload:
    out: Payload = {}
    for it in items or []:
        if it.get("fieldRef"):
            text = field_value(pod, it["fieldRef"].get("fieldPath", ""))
        elif it.get("resourceFieldRef"):
            text = resource_value(pod, it["resourceFieldRef"], allocatable)
        else:
            continue
        out[it.get("path", "")] = (text.encode(), _mode(it.get("mode"), default_mode))
    return out


def write_atomic(target: Path, payload: Payload, clock: Callable[[], float] = time.time) -> None:
    """The kubelet's AtomicWriter: the payload in a new ``..<timestamp>`` dir, ``..data`` pointed at it by one
    rename, a ``<name> → ..data/<name>`` symlink per top-level name; names no longer in the payload and the old
    dir removed. A reader sees the old files or the new ones, never a mix."""
    target.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(clock(), UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
    ts = target / f"{stamp}{int.from_bytes(os.urandom(4), 'big')}"
    ts.mkdir(mode=0o755)
    os.chmod(ts, 0o755)
    for rel, (data, mode) in payload.items():
        p = ts / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, mode)
    data_link = target / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp = target / "..data_tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(ts.name, tmp)
    os.rename(tmp, data_link)
    tops = {rel.split("/", 1)[0] for rel in payload}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
    for entry in os.scandir(target):
        if not entry.name.startswith("..") and entry.name not in tops and entry.is_symlink():
            os.unlink(entry.path)
    if old and old != ts.name:
        shutil.rmtree(target / old, ignore_errors=True)


def payload_digest(payload: Payload) -> str:
    h = hashlib.sha256()
    for rel in sorted(payload):
        data, mode = payload[rel]
        h.update(rel.encode() + b"\0" + str(mode).encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


# -- mounts on the node --------------------------------------------------------------------------------------

def mounts_under(root: Path) -> list[str]:
    """Mount points at or under ``root`` (this process's mount namespace), deepest first."""
    prefix = str(root).rstrip("/")
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                target = line.split()[4]
                target = target.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
                if target == prefix or target.startswith(prefix + "/"):
                    out.append(target)
    except OSError:
        pass
    return sorted(set(out), key=len, reverse=True)


def is_mount(path: Path) -> bool:
    return str(path).rstrip("/") in mounts_under(path)


def mount_tmpfs(path: Path, size: int) -> None:
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise MountError(f"mount failed: {out.stderr.strip() or out.returncode}")


def unmount(path: str) -> None:
    if subprocess.run(["umount", path], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", path], capture_output=True)


def file_type(path: str) -> str:
    """``GetFileType``: Directory, File, Socket, CharDevice or BlockDevice."""
    st = os.stat(path)
    for test, name in ((stat.S_ISSOCK, "Socket"), (stat.S_ISCHR, "CharDevice"), (stat.S_ISBLK, "BlockDevice"),
                       (stat.S_ISDIR, "Directory"), (stat.S_ISREG, "File")):
        if test(st.st_mode):
            return name
    raise OSError("only recognise file, directory, socket, block device and character device")


def check_host_path(path: str, type_: str) -> None:
    """The hostPath plugin's ``checkType``, with its errors."""
    exists = os.path.lexists(path)
    expected = {"DirectoryOrCreate": ("Directory", "directory"), "Directory": ("Directory", "directory"),
                "FileOrCreate": ("File", "file"), "File": ("File", "file"), "Socket": ("Socket", "socket file"),
                "CharDevice": ("CharDevice", "character device"), "BlockDevice": ("BlockDevice", "block device")}
    if not type_:
        return
    if type_ not in expected:
        raise MountError(f"{type_} is an invalid volume type")
    try:
        if type_ == "DirectoryOrCreate" and not exists:
            os.makedirs(path, 0o755, exist_ok=True)
            return
        if type_ == "FileOrCreate" and not exists:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            return
    except OSError as exc:
        raise MountError(str(exc)) from None
    if not os.path.exists(path):
        raise MountError(f"hostPath {path} doesn't exist")
    want, desc = expected[type_]
    try:
        got = file_type(path)
    except OSError as exc:
        raise MountError(f"hostPath type check failed, {path} is not a {desc}, unable to determine its type: {exc}") from None
    if got != want:
        raise MountError(f"hostPath type check failed: {path} is not a {desc}, it's a {got}")


def resolve_subpath(root: Path, sub: str) -> Path:
    """``root/sub`` for a volumeMount's subPath, created as a directory (the volume root's mode) when missing, as the
    kubelet does; a path that leaves the volume (``..`` or a symlink pointing out) is refused."""
    if os.path.isabs(sub) or ".." in sub.split("/"):
        raise ValueError(f"subPath {sub!r} must be a relative path inside the volume")
    real_root = os.path.realpath(root)
    target = root / sub
    resolved = os.path.realpath(target)
    if resolved != real_root and not resolved.startswith(real_root + "/"):
        raise ValueError(f"subpath {str(target)!r} not within volume path {str(root)!r}")
    if not os.path.lexists(target):
        os.makedirs(resolved, mode=stat.S_IMODE(os.stat(real_root).st_mode), exist_ok=True)
        os.chmod(resolved, stat.S_IMODE(os.stat(real_root).st_mode))
    return Path(resolved)


# -- the volume manager --------------------------------------------------------------------------------------

class VolumeManager:
    """Every pod's volumes on this node. ``event(obj, type, reason, message)`` records a pod's events;
    ``allocatable()`` is the node's allocatable resources (quantities, as the Node object says them)."""

    def __init__(self, store: Any, run_dir: Path, event: Callable[..., None], allocatable: Callable[[], dict[str, Any]],
                 pv_plugins: PVPlugins | None = None, clock: Callable[[], float] = time.time,
                 sa_token: SATokenSource | None = None) -> None:
        self.store = store
        self.sa_token = sa_token  # the kubelet's TokenRequest: (ns, sa, audiences, expirationSeconds, pod) → (jwt, exp)
        self.tokens: dict[tuple[Any, ...], tuple[str, float]] = {}  # the token manager's cache
        self.run_dir = run_dir
        self.event = event
        self.allocatable = allocatable
        self.pv_plugins = pv_plugins
        self.clock = clock
        self.pods: dict[str, PodVolumes] = {}

    def pod_dir(self, uid: str) -> Path:
        return self.run_dir / "pods" / uid

    def volume_dir(self, uid: str, kind: str, name: str) -> Path:
        return self.pod_dir(uid) / "volumes" / PLUGINS[kind] / name

    # -- setting up ----------------------------------------------------------------------------------
    def setup(self, pod: Obj) -> bool:
        """Set up what is missing of the pod's volumes (retries after a failure wait their back-off). True once all
        are ready."""
        uid = pod["metadata"]["uid"]
        now = self.clock()
        pv = self.pods.get(uid)
        if pv is None:
            pv = self.pods[uid] = PodVolumes(uid, now)
        if pv.ready:
            return True
        wanted = [v for v in (pod.get("spec") or {}).get("volumes") or [] if isinstance(v, dict) and v.get("name")]
        for vol in wanted:
            name = vol["name"]
            if name in pv.volumes or now < pv.retry_at.get(name, 0.0):
                continue
            try:
                pv.volumes[name] = self._setup_one(pod, vol, pv)
                pv.unprocessed.pop(name, None)
                pv.failures.pop(name, None)
            except NotProcessed as exc:
                pv.unprocessed[name] = str(exc)
            except MountError as exc:
                n = pv.failures[name] = pv.failures.get(name, 0) + 1
                pv.retry_at[name] = now + min(RETRY_INITIAL * 2 ** (n - 1), RETRY_MAX)
                self.event(pod, "Warning", "FailedMount", f'MountVolume.SetUp failed for volume "{name}" : {exc}')
        missing = sorted(v["name"] for v in wanted if v["name"] not in pv.volumes)
        if not missing:
            pv.ready = True
            return True
        if now - pv.since >= ATTACH_AND_MOUNT_TIMEOUT:
            pv.since = now
            self.event(pod, "Warning", "FailedMount",
                       f"Unable to attach or mount volumes: unmounted volumes=[{' '.join(missing)}], unattached "
                       f"volumes=[], failed to process volumes=[{' '.join(sorted(pv.unprocessed))}]: timed out waiting "
                       "for the condition")
        return False

    def _setup_one(self, pod: Obj, vol: Obj, pv: PodVolumes) -> Volume:
        kinds = [k for k in vol if k != "name" and vol[k] is not None]
        kind = kinds[0] if kinds else "emptyDir"  # a volume with no source is an emptyDir, as the API defaults it
        name = vol["name"]
        uid = pod["metadata"]["uid"]
        if kind not in SUPPORTED:
            raise MountError(f"the lab's kubelet has no volume plugin for {kind} volumes (it mounts "
                             f"{', '.join(SUPPORTED)})")
        src = vol.get(kind) or {}
        if kind == "emptyDir":
            medium = src.get("medium") or ""
            if medium not in ("", "Memory"):
                raise MountError(f'unknown storage medium "{medium}"')
            d = self.volume_dir(uid, kind, name)
            self._mkdir(d, 0o777)
            if medium == "Memory" and not is_mount(d):
                mount_tmpfs(d, memory_backed_size(pod, src.get("sizeLimit"), self._allocatable_memory()))
            return Volume(name, kind, d, ephemeral=medium == "")
        if kind == "hostPath":
            path = str(src.get("path") or "")
            if not os.path.isabs(path):
                raise MountError(f'hostPath "{path}" is not an absolute path; the lab cannot mount it')
            check_host_path(path, src.get("type") or "")
            if name not in pv.warned:
                pv.warned.add(name)
                self.event(pod, "Warning", "HostPathVolume",
                           f'The lab warns: volume "{name}" mounts the node\'s {path} into the pod; a hostPath exposes '
                           "the node's files (and, unless readOnly, lets the pod change them) — prefer emptyDir, "
                           "configMap or a PersistentVolumeClaim")
            return Volume(name, kind, Path(path), stats=None)
        if kind in API_DATA:
            d = self.volume_dir(uid, kind, name)
            payload = self._payload(pod, kind, src)
            self._mkdir(d, 0o777)
            if kind in ("secret", "projected") and not is_mount(d):  # upstream wraps them in a memory emptyDir
                mount_tmpfs(d, memory_backed_size(pod, None, self._allocatable_memory()))
            write_atomic(d, payload, self.clock)
            return Volume(name, kind, d, read_only=True, ephemeral=kind == "configMap", digest=payload_digest(payload))
        if kind == "ephemeral":
            return self._claim(pod, name, f"{pod['metadata']['name']}-{name}", False)
        return self._claim(pod, name, str(src.get("claimName") or ""), bool(src.get("readOnly")))

    def _claim(self, pod: Obj, name: str, claim: str, read_only: bool) -> Volume:
        ns, uid = pod["metadata"]["namespace"], pod["metadata"]["uid"]
        pvc = self.store.try_get("v1/persistentvolumeclaims", ns, claim)
        if pvc is None:
            raise NotProcessed(f"error processing PVC {ns}/{claim}: failed to fetch PVC from API server: "
                               f'persistentvolumeclaims "{claim}" not found')
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
            raise NotProcessed(f"error processing PVC {ns}/{claim}: PVC is not bound")
        pv = self.store.try_get("v1/persistentvolumes", "", pv_name)
        if pv is None:
            raise NotProcessed(f'error processing PVC {ns}/{claim}: failed to fetch PV "{pv_name}" from API server: '
                               f'persistentvolumes "{pv_name}" not found')
        spec = pv.get("spec") or {}
        ref = (ns, claim)
        if (spec.get("local") or {}).get("path"):
            path = spec["local"]["path"]
            if not os.path.isdir(path):
                raise MountError(f'path "{path}" does not exist')
            return Volume(name, "persistentVolumeClaim", Path(path), read_only, "statfs", False, ref, pv)
        if (spec.get("hostPath") or {}).get("path"):
            path = spec["hostPath"]["path"]
            check_host_path(path, spec["hostPath"].get("type") or "")
            return Volume(name, "persistentVolumeClaim", Path(path), read_only, None, False, ref, pv)  # MetricsNil
        if spec.get("csi"):
            driver = spec["csi"].get("driver", "")
            if self.pv_plugins is None:
                raise MountError(f"kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name {driver} "
                                 "not found in the list of registered CSI drivers")
            try:
                path = Path(self.pv_plugins.publish(pv, uid, name))
            except OSError as exc:
                raise MountError(str(exc) or exc.__class__.__name__) from None
            return Volume(name, "persistentVolumeClaim", path, read_only, "statfs", False, ref, pv, published=True)
        raise MountError(f"the lab's kubelet cannot mount PersistentVolume {pv_name}: it has no local, hostPath or "
                         "csi source")

    def _payload(self, pod: Obj, kind: str, src: Obj) -> Payload:
        ns = pod["metadata"]["namespace"]
        default_mode = _mode(src.get("defaultMode"), DEFAULT_MODE)
        if kind == "configMap":
            return self._configmap(ns, src, default_mode)
        if kind == "secret":
            return self._secret(ns, src, default_mode)
        if kind == "downwardAPI":
            return downward_payload(pod, src.get("items") or [], default_mode, self.allocatable())
        out: Payload = {}
        for source in src.get("sources") or []:
            if source.get("configMap"):
                out.update(self._configmap(ns, source["configMap"], default_mode))
            elif source.get("secret"):
                out.update(self._secret(ns, source["secret"], default_mode))
            elif source.get("downwardAPI"):
                out.update(downward_payload(pod, source["downwardAPI"].get("items") or [], default_mode, self.allocatable()))
            elif source.get("serviceAccountToken"):
                out.update(self._sa_token(pod, source["serviceAccountToken"], default_mode))
            else:
                raise MountError(f"the lab's kubelet cannot project {', '.join(source) or 'an empty source'}")
        return out

    def _sa_token(self, pod: Obj, src: Obj, default_mode: int) -> Payload:
        """A projected ``serviceAccountToken``: a TokenRequest bound to the pod (its audience, or the API server's;
        ``expirationSeconds``, 3600 when unset), kept until 80 % of its lifetime has passed or it is a day old, as the
        kubelet's token manager keeps it; the file gets the projection's mode."""
        if self.sa_token is None:
            raise MountError("failed to fetch token: the lab's kubelet has no way to request service account tokens")
        meta, spec = pod["metadata"], pod.get("spec") or {}
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        audiences = [src["audience"]] if src.get("audience") else None
        seconds = int(src.get("expirationSeconds") or TOKEN_DEFAULT_EXPIRATION)
        key = (meta["namespace"], sa_name, tuple(audiences or ()), seconds, meta.get("uid", ""))
        now = self.clock()
        cached = self.tokens.get(key)
        if cached is None or token_needs_refresh(cached[1], seconds, now):
            try:
                token, exp = self.sa_token(meta["namespace"], sa_name, audiences, seconds, pod)
            except Exception as exc:  # noqa: BLE001 - the TokenRequest's error is the mount's
                if cached is not None and now < cached[1]:
                    log.warning("refreshing the token of pod %s/%s failed: %s", meta["namespace"], meta["name"], exc)
                    token, exp = cached
                else:
                    raise MountError(f"failed to fetch token: {getattr(exc, 'message', None) or exc}") from None
            cached = self.tokens[key] = (token, exp)
        return {str(src.get("path") or "token"): (cached[0].encode(), default_mode)}

    def _configmap(self, ns: str, src: Obj, default_mode: int) -> Payload:
        name, optional = src.get("name", ""), bool(src.get("optional"))
        cm = self.store.try_get("v1/configmaps", ns, name)
        if cm is None:
            if optional:
                return {}
            raise MountError(f'configmap "{name}" not found')
        return _keyed(configmap_data(cm), src.get("items"), _mode(src.get("defaultMode"), default_mode), optional,
                      "configmap references non-existent config key")

    def _secret(self, ns: str, src: Obj, default_mode: int) -> Payload:
        name, optional = src.get("secretName") or src.get("name", ""), bool(src.get("optional"))
        secret = self.store.try_get("v1/secrets", ns, name)
        if secret is None:
            if optional:
                return {}
            raise MountError(f'secret "{name}" not found')
        return _keyed(secret_data(secret), src.get("items"), _mode(src.get("defaultMode"), default_mode), optional,
                      "references non-existent secret key")

    def refresh(self, pod: Obj) -> None:
        """Rewrite the pod's configMap, secret, downwardAPI and projected volumes whose content changed, at most every
        REFRESH_PERIOD (the kubelet does it on its periodic sync, about a minute); a source that went missing leaves
        the last files in place."""
        pv = self.pods.get(pod["metadata"]["uid"])
        now = self.clock()
        if pv is None or now - pv.refreshed < REFRESH_PERIOD:  # the sync loop runs twice a second; this need not
            return
        pv.refreshed = now
        specs = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or [] if isinstance(v, dict)}
        for vol in pv.volumes.values():
            if vol.kind not in API_DATA or vol.name not in specs:
                continue
            try:
                payload = self._payload(pod, vol.kind, specs[vol.name].get(vol.kind) or {})
            except MountError:
                continue
            digest = payload_digest(payload)
            if digest != vol.digest:
                try:
                    write_atomic(vol.path, payload, self.clock)
                    vol.digest = digest
                except OSError as exc:
                    log.warning("updating volume %s of pod %s failed: %s", vol.name, pv.uid, exc)

    def _allocatable_memory(self) -> int:
        mem = self.allocatable().get("memory")
        if mem is not None:
            return quantity.to_bytes(mem)
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    @staticmethod
    def _mkdir(d: Path, mode: int) -> None:
        try:
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, mode)
        except OSError as exc:
            raise MountError(str(exc)) from None

    # -- into containers -----------------------------------------------------------------------------
    def container_mounts(self, pod: Obj, container: Obj, expand: Callable[[str], str] = lambda s: s) -> list[Obj]:
        """The container's volumeMounts as OCI bind mounts, parents before children (``expand`` resolves $(VAR) in a
        subPathExpr from the container's environment). Raises ValueError with the kubelet's words (a
        CreateContainerConfigError) when a mount cannot be made."""
        pv = self.pods.get(pod["metadata"]["uid"])
        out = []
        for m in container.get("volumeMounts") or []:
            vol = pv.volumes.get(m.get("name", "")) if pv else None
            if vol is None:
                raise ValueError(f'cannot find volume "{m.get("name")}" to mount into container "{container.get("name")}"')
            source = vol.path
            sub = m.get("subPath") or ""
            if m.get("subPathExpr"):
                sub = expand(m["subPathExpr"])
            if sub:
                try:
                    source = resolve_subpath(vol.path, sub)
                except (ValueError, OSError):
                    raise ValueError(f'failed to prepare subPath for volumeMount "{m.get("name")}" of container '
                                     f'"{container.get("name")}"') from None
            ro = bool(m.get("readOnly")) or vol.read_only
            dest = "/" + str(m.get("mountPath", "")).lstrip("/")
            out.append({"destination": dest, "type": "bind", "source": str(source),
                        "options": ["rbind", "rprivate", "ro" if ro else "rw"]})
        return sorted(out, key=lambda x: len(Path(x["destination"]).parts))

    # -- stats -------------------------------------------------------------------------------------------
    def stat_targets(self, uid: str) -> tuple[VolumeTarget, ...]:
        pv = self.pods.get(uid)
        if pv is None:
            return ()
        return tuple(VolumeTarget(v.name, v.path, v.stats, v.pvc, v.ephemeral) for v in pv.volumes.values()
                     if v.stats is not None)

    # -- tearing down ------------------------------------------------------------------------------------
    def teardown(self, uid: str, remove_dir: bool = True) -> bool:
        """Unpublish the pod's PVs, unmount its tmpfs volumes, remove its directory (disk emptyDir data with it;
        ``remove_dir=False``: later, by `remove_dir`, as the kubelet's orphaned pod dirs cleanup). False when a mount
        stayed (the directory is then left in place)."""
        pv = self.pods.pop(uid, None)
        # the token manager forgets the pod's tokens (list(): a setup on the sync loop may add one meanwhile)
        for key in [k for k in list(self.tokens) if k[-1] == uid]:
            self.tokens.pop(key, None)
        for vol in pv.volumes.values() if pv else ():
            if vol.published and self.pv_plugins is not None and vol.pv is not None:
                try:
                    self.pv_plugins.unpublish(vol.pv, uid, vol.name)
                except Exception:  # noqa: BLE001 - one volume's failure must not keep the others mounted
                    log.exception("unpublishing volume %s of pod %s failed", vol.name, uid)
        d = self.pod_dir(uid)
        mounts = mounts_under(d)
        for target in mounts:
            unmount(target)
        if mounts and mounts_under(d):
            log.warning("%s still has mounts; left in place", d)
            return False
        if remove_dir:
            shutil.rmtree(d, ignore_errors=True)
        return True

    def remove_dir(self, uid: str) -> None:
        """The pod's directory, once `teardown` has unmounted everything under it."""
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)

    def shutdown(self) -> None:
        for uid in list(self.pods):
            self.teardown(uid)
