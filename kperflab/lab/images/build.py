"""The lab's images, built honestly from Debian packages, cached once per machine; and test images of a chosen size.

Base images (Debian ``trixie``, this machine's architecture), built with mmdebstrap:

- ``python:3.13-slim`` (also ``python:3.13.<patch>-slim``): Debian's python3 with ``python`` on PATH
  (python-is-python3), **plus python3-numpy** for the workshop's data-structures lesson — Docker Hub's image has
  no NumPy; the label ``org.kperflab.extra-packages`` and the description say so. Python lives in ``/usr/bin``
  (Debian's) where the official image has its own build in ``/usr/local/bin``; PATH, ``LANG`` and ``Cmd python3``
  are the official image's. A working Debian userland (dpkg, apt, tar, sh), slimmed as Debian's own ``-slim``
  images are: no apt lists or caches, no documentation but the copyright files, no man or info pages, no
  translations (the C locale only), no logs, no ``/dev`` nodes (the runtime provides ``/dev``).
  Tagged ``3.13-slim``, ``3.13.<patch>-slim``, and also ``3.13``, ``3.13.<patch>`` and ``latest``: every tag names
  this one slim image of Debian's Python 3.13 (Docker Hub's ``python:3.13``/``latest`` are its larger full images
  with compilers, and its ``latest`` may be a newer Python; the description says so).
- ``nginx:<version>`` (``1.26``, ``1.26.<patch>`` and ``latest`` from trixie's nginx; the tag is the version Debian
  ships): Debian's nginx with Debian's default site (``/var/www/html``, the "Welcome to nginx!" page), configured as
  Docker Hub's image runs it: ``Cmd nginx -g 'daemon off;'``, ``StopSignal SIGQUIT``, ``ExposedPorts 80/tcp``, the
  access and error logs linked to ``/dev/stdout`` and ``/dev/stderr``, and ``User 0``: the master process must run
  as root (port 80, reading its config, then switching its workers to Debian's ``www-data``); Docker Hub's image
  gets root by having no USER, but the lab runs images without USER as ``nobody``. Slimmed as python is.
- ``busybox:<version>`` (``1.37.0``, ``1.37`` and ``latest`` from trixie's busybox-static 1.37.0; the tag is the
  version Debian ships, so no ``busybox:1.36``): the static binary in ``/bin`` with every applet hard-linked beside it
  (as the official image), ``Cmd sh``, a minimal ``/etc/passwd`` and ``/etc/group`` (root, daemon, nobody).

They live in ``/var/cache/kperflab/images`` for root (``$XDG_CACHE_HOME/kperflab/images`` otherwise;
``KPERFLAB_IMAGE_CACHE`` overrides), one OCI image layout per repository under ``base-<suite>-<arch>-r<recipe>/``,
shared read-only by every lab. A file lock keeps two labs from building at once; the build happens in a temporary
directory renamed into place when complete, so a crash never leaves a half-built cache. The first build needs the
Debian mirror (``KPERFLAB_DEBIAN_MIRROR``, default ``http://deb.debian.org/debian``) and takes about a minute.

Example (the first call builds, later ones return at once)::

    base = ensure_base_images()
    base.get("python:3.13-slim").layout   # an OCI layout: skopeo copy oci:<layout>:3.13-slim …
"""

from __future__ import annotations

import fcntl
import gzip
import io
import json
import logging
import os
import random
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import BadInput, LabError
from . import _oci
from .reference import parse

log = logging.getLogger("kperflab.lab.images")

SUITE = "trixie"
RECIPE = 2  # bump when what the images hold changes: a new cache entry is built beside the old one
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "KPERFLAB_DEBIAN_MIRROR"
CACHE_ENV = "KPERFLAB_IMAGE_CACHE"
PYTHON_PACKAGES = ("python3", "python-is-python3", "python3-numpy")
NGINX_PACKAGES = ("nginx",)
EXTRA_PACKAGES = ("python3-numpy",)  # what Docker Hub's python:3.13-slim does not have
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON_PATH = "/usr/local/bin:" + DEBIAN_PATH  # the official image puts /usr/local/bin first (listed twice)
SLIMMED = ("no apt lists or caches; no documentation but the copyright files; no man or info pages; no translations "
           "(C locale only); no logs; no /dev nodes")
_DPKG_SLIM = ["path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*", "path-exclude=/usr/share/doc/*",
              "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*",
              "path-include=/usr/share/locale/locale.alias", "path-exclude=/usr/share/lintian/*",
              "path-exclude=/usr/share/linda/*", "force-unsafe-io"]
_HOSTS = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"


class ImageBuildError(LabError):
    """The base images could not be built (no mirror, mmdebstrap failed)."""


@dataclass(frozen=True)
class BuiltImage:
    """One image in an OCI layout: its familiar name and tags, digests and sizes, and what it is."""

    name: str  # familiar repository name: "python", "busybox", "kperflab/size-test"
    tags: tuple[str, ...]
    layout: Path
    manifest_digest: str
    config_digest: str
    size: int  # manifest + config + layer blobs: what a kubelet reports as sizeBytes after pulling it
    unpacked_size: int  # bytes of file content in its layers
    layers: int
    description: str = ""
    packages: dict[str, str] = field(default_factory=dict)  # Debian package → version, for the base images

    @property
    def refs(self) -> list[str]:
        """``["python:3.13-slim", …]``"""
        return [f"{self.name}:{t}" for t in self.tags]

    @property
    def repository(self) -> str:
        """The repository that serves it in the lab's registry (``library/python``)."""
        return parse(self.refs[0]).repository()


@dataclass(frozen=True)
class BaseImages:
    """The cached base images; ``build_seconds`` is the time their one-time build took."""

    root: Path
    images: tuple[BuiltImage, ...]
    build_seconds: float
    built_now: bool

    def get(self, ref: str) -> BuiltImage:
        """By familiar name (``busybox``) or reference (``python:3.13-slim``, ``docker.io/library/busybox:latest``)."""
        want = parse(ref)
        for img in self.images:
            if parse(img.refs[0]).name == want.name and (":" not in ref.rsplit("/", 1)[-1] or want.tag in img.tags):
                return img
        raise KeyError(f"no base image {ref!r}; there are {[r for i in self.images for r in i.refs]}")


# -- where, and the lock ----------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$KPERFLAB_IMAGE_CACHE``, else ``/var/cache/kperflab/images`` for root, else ``~/.cache/kperflab/images``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.geteuid() == 0:
        return Path("/var/cache/kperflab/images")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kperflab" / "images"


def entry_name() -> str:
    return f"base-{SUITE}-{_oci.goarch()}-r{RECIPE}"


def _load(entry: Path, built_now: bool) -> BaseImages:
    info = json.loads((entry / "images.json").read_text())
    images = tuple(BuiltImage(**{**i, "layout": entry / i["layout"], "tags": tuple(i["tags"])}) for i in info["images"])
    return BaseImages(entry, images, info["build_seconds"], built_now)


def cached_base_images(cache: Path | None = None) -> BaseImages | None:
    """The base images if this machine has built them, else None (never builds)."""
    entry = (cache or cache_dir()) / entry_name()
    return _load(entry, False) if (entry / "images.json").is_file() else None


def ensure_base_images(cache: Path | None = None, *, mirror: str | None = None) -> BaseImages:
    """The cached base images, built first if this machine has none (about a minute, once; one build at a time)."""
    cache = cache or cache_dir()
    found = cached_base_images(cache)
    if found:
        return found
    def build(tmp: Path) -> dict[str, Any]:
        images = _build_all(tmp, mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR)
        return {"suite": SUITE, "recipe": RECIPE, "images": [{**asdict(i), "layout": i.layout.name} for i in images]}

    built = _build_once(cache, "base", entry_name(), lambda: cached_base_images(cache), build)
    return _load(cache / entry_name(), built)


def _build_once(cache: Path, kind: str, entry: str, cached: Callable[[], Any],
                build: Callable[[Path], dict[str, Any]]) -> bool:
    """Build a cache entry once per machine (True: built by this call): under a lock of its own kind (another lab building it: wait, then use
    theirs), into a temporary directory (a crashed build's of this kind removed first) that ``build`` fills and whose
    record it returns, published whole by an atomic rename, read-only."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / (".lock" if kind == "base" else f".lock-{kind}"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another lab is building the %s images in %s; waiting for it", kind, cache)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if cached() is not None:  # the other build finished while we waited
            return False
        for stale in cache.glob(f".build-{kind}-*"):  # a build that crashed (we hold the lock: nobody else builds it)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{kind}-", dir=cache))
        try:
            started = time.monotonic()
            record = build(tmp)
            seconds = time.monotonic() - started
            (tmp / "images.json").write_text(json.dumps({**record, "build_seconds": round(seconds, 1), "built": _now()},
                                                        indent=1))
            _make_read_only(tmp)
            os.chmod(tmp, 0o755)
            os.rename(tmp, cache / entry)  # atomic publish
            log.info("built the %s images in %.1f s into %s", kind, seconds, cache / entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def _make_read_only(root: Path) -> None:
    """Blobs read-only (mode 0444): they are hard-linked into registries and must never be written in place."""
    for blob in root.glob("*/blobs/sha256/*"):
        os.chmod(blob, 0o444)


# -- building ---------------------------------------------------------------------------------------

def _probe_mirror(mirror: str, cache: Path) -> None:
    url = f"{mirror.rstrip('/')}/dists/{SUITE}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15):
            pass
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ImageBuildError(
            f"Cannot reach the Debian mirror {mirror} ({reason}), which the lab needs once to build its images "
            f"python:3.13-slim, nginx and busybox from Debian {SUITE} packages.",
            hint=f"Connect this machine to the network (or set {MIRROR_ENV} to a Debian mirror it can reach) and try "
                 f"again; the images are then cached in {cache}.") from None


def _mmdebstrap(args: list[str], logfile: Path, mirror: str) -> None:
    if not shutil.which("mmdebstrap"):
        raise ImageBuildError("mmdebstrap is not installed; the lab builds its images with it.",
                              hint="Install it: apt-get install mmdebstrap (or run scripts/system-deps.sh).")
    mode = "root" if os.geteuid() == 0 else "unshare"
    cmd = ["mmdebstrap", f"--mode={mode}", "--aptopt=Apt::Install-Recommends \"false\"",
           "--aptopt=Acquire::Languages \"none\"", *args]
    with open(logfile, "wb") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if rc != 0:
        text = logfile.read_text(errors="replace")
        tail = [line for line in text.splitlines() if line.startswith("E:")][-3:] or text.splitlines()[-3:]
        if any(w in text for w in ("Could not resolve", "Failed to fetch", "Temporary failure", "Unable to connect")):
            _probe_mirror(mirror, logfile.parents[2])  # raises the one-sentence network error
        kept = logfile.parents[2] / f"failed-build-{logfile.parent.name.removeprefix('work-')}.log"
        shutil.copyfile(logfile, kept)  # the build directory goes; the log stays for the reader
        raise ImageBuildError(f"mmdebstrap failed building the lab's images ({'; '.join(tail)}).",
                              hint=f"See the whole log in {kept}, fix the cause and try again.")


def _build_all(tmp: Path, mirror: str) -> list[BuiltImage]:
    _probe_mirror(mirror, tmp.parent)
    with ThreadPoolExecutor(3) as pool:  # the mmdebstrap runs overlap (downloads and dpkg vs compression)
        busybox = pool.submit(_build_busybox, tmp, mirror)
        python = pool.submit(_build_python, tmp, mirror)
        nginx = pool.submit(_build_nginx, tmp, mirror)
        return [python.result(), nginx.result(), busybox.result()]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _upstream(version: str) -> str:
    """``1:1.37.0-6+b9`` → ``1.37.0``"""
    return version.split(":", 1)[-1].rsplit("-", 1)[0].split("+")[0]


def _versions(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        name, _, version = line.partition("\t")
        out[name.split(":")[0]] = version
    return out


def _slim_rootfs(work: Path, mirror: str, packages: tuple[str, ...], extra_hook: str = "") -> dict[str, str]:
    """A slimmed Debian rootfs (``--variant=apt`` + ``packages``) as ``work/rootfs.tar``; its package versions.
    ``extra_hook`` runs (in the customize hook, ``$1`` the root) after the logs are deleted."""
    rootfs_tar, versions_file = work / "rootfs.tar", work / "versions"
    hook = (f"rm -f \"$1/etc/resolv.conf\" \"$1/etc/hostname\"; printf '{_HOSTS.encode('unicode_escape').decode()}' > \"$1/etc/hosts\"; "
            "find \"$1/var/lib/apt/lists\" \"$1/var/cache/apt\" \"$1/var/log\" -type f -delete; "
            "rm -f \"$1\"/var/cache/debconf/*-old \"$1\"/var/lib/dpkg/*-old \"$1/var/cache/ldconfig/aux-cache\"; "
            f"{extra_hook}"
            f"chroot \"$1\" dpkg-query -W -f '${{Package}}\\t${{Version}}\\n' > {shlex.quote(str(versions_file))}")
    started = time.monotonic()
    _mmdebstrap(["--variant=apt", "--format=tar", "--include=" + ",".join(packages),
                 *[f"--dpkgopt={o}" for o in _DPKG_SLIM], f"--customize-hook={hook}",
                 SUITE, str(rootfs_tar), mirror], work / "mmdebstrap.log", mirror)
    log.info("%s rootfs: mmdebstrap %.1f s", work.name.removeprefix("work-"), time.monotonic() - started)
    return _versions(versions_file)


def _build_python(tmp: Path, mirror: str) -> BuiltImage:
    work = tmp / "work-python"
    work.mkdir()
    rootfs_tar = work / "rootfs.tar"
    versions = _slim_rootfs(work, mirror, PYTHON_PACKAGES)
    major_minor = ".".join(_upstream(versions["python3"]).split(".")[:2])
    py = _upstream(versions.get(f"python{major_minor}") or versions["python3"])
    layout = _oci.Layout.create(tmp / "python")
    blob, unpacked = _relayer(rootfs_tar, work / "layer", skip_dev=True)
    rootfs_tar.unlink()
    layout.add_file(blob.path, blob.digest)
    key = {p: versions[p] for p in ("python3", f"python{major_minor}", "python-is-python3", "python3-numpy") if p in versions}
    description = (f"Debian {SUITE}'s Python {py} ({', '.join(f'{k} {v}' for k, v in key.items())}), slimmed ({SLIMMED}). "
                   f"Not Docker Hub's python:{major_minor}-slim: Python is Debian's, in /usr/bin, and the image also "
                   f"carries NumPy {_upstream(versions.get('python3-numpy', '?'))} (python3-numpy) for the workshop, "
                   "which Docker Hub's image does not have. Also tagged "
                   f"python:{major_minor}, python:{py} and python:latest, all this same slim image: Docker Hub's images "
                   "of those tags are its full ones (with compilers and build tools), and its latest may be a newer "
                   "Python. Built by kperflab with mmdebstrap.")
    labels = {"org.opencontainers.image.title": "python", "org.opencontainers.image.version": py,
              "org.opencontainers.image.description": description, "org.opencontainers.image.created": _now(),
              "org.kperflab.debian-suite": SUITE, "org.kperflab.extra-packages": ",".join(EXTRA_PACKAGES),
              "org.kperflab.debian-packages": " ".join(f"{k}={v}" for k, v in key.items()),
              "org.kperflab.slimmed": SLIMMED}
    created_by = f"mmdebstrap --variant=apt --include={','.join(PYTHON_PACKAGES)} {SUITE} (kperflab image recipe {RECIPE})"
    config = _oci.image_config(env=[f"PATH={PYTHON_PATH}", "LANG=C.UTF-8", f"PYTHON_VERSION={py}"], cmd=["python3"],
                               diff_ids=[blob.diff_id], labels=labels, created=_now(),
                               history=[{"created": _now(), "created_by": created_by, "comment": SLIMMED}])
    tags = [f"{major_minor}-slim", f"{py}-slim", major_minor, py, "latest"]
    return _finish(layout, "python", tags, config, [blob], unpacked, description, versions, work)


def _build_nginx(tmp: Path, mirror: str) -> BuiltImage:
    work = tmp / "work-nginx"
    work.mkdir()
    rootfs_tar = work / "rootfs.tar"
    # Docker Hub's image links its logs to the container's output (its Dockerfile: ln -sf /dev/stdout ...).
    logs = ("mkdir -p \"$1/var/log/nginx\"; ln -sf /dev/stdout \"$1/var/log/nginx/access.log\"; "
            "ln -sf /dev/stderr \"$1/var/log/nginx/error.log\"; ")
    versions = _slim_rootfs(work, mirror, NGINX_PACKAGES, logs)
    up = _upstream(versions["nginx"])
    layout = _oci.Layout.create(tmp / "nginx")
    blob, unpacked = _relayer(rootfs_tar, work / "layer", skip_dev=True)
    rootfs_tar.unlink()
    layout.add_file(blob.path, blob.digest)
    key = {p: versions[p] for p in ("nginx", "nginx-common") if p in versions}
    description = (f"Debian {SUITE}'s nginx {up} ({', '.join(f'{k} {v}' for k, v in key.items())}) with Debian's "
                   "default site (/var/www/html: \"Welcome to nginx!\"), slimmed "
                   f"({SLIMMED}), run as Docker Hub's nginx image runs: nginx -g 'daemon off;', StopSignal SIGQUIT, "
                   "port 80/tcp, access and error logs linked to /dev/stdout and /dev/stderr. Not Docker Hub's image: "
                   "nginx and its configuration are Debian's (workers run as www-data, the site is Debian's default "
                   "site), there is no docker-entrypoint.sh, and the image says User 0 because the master process "
                   "needs root (port 80, then it switches its workers to www-data); Docker Hub's image gets root by "
                   "having no USER, which the lab would run as nobody. Built by kperflab with mmdebstrap.")
    labels = {"org.opencontainers.image.title": "nginx", "org.opencontainers.image.version": up,
              "org.opencontainers.image.description": description, "org.opencontainers.image.created": _now(),
              "org.kperflab.debian-suite": SUITE,
              "org.kperflab.debian-packages": " ".join(f"{k}={v}" for k, v in key.items()),
              "org.kperflab.slimmed": SLIMMED}
    created_by = f"mmdebstrap --variant=apt --include={','.join(NGINX_PACKAGES)} {SUITE} (kperflab image recipe {RECIPE})"
    config = _oci.image_config(env=[f"PATH={DEBIAN_PATH}", f"NGINX_VERSION={up}"], cmd=["nginx", "-g", "daemon off;"],
                               diff_ids=[blob.diff_id], labels=labels, created=_now(), user="0",
                               exposed_ports=["80/tcp"], stop_signal="SIGQUIT",
                               history=[{"created": _now(), "created_by": created_by, "comment": SLIMMED}])
    tags = [".".join(up.split(".")[:2]), up, "latest"]
    return _finish(layout, "nginx", tags, config, [blob], unpacked, description, versions, work)


def _build_busybox(tmp: Path, mirror: str) -> BuiltImage:
    work = tmp / "work-busybox"
    work.mkdir()
    _mmdebstrap(["--variant=extract", "--include=busybox-static", SUITE, str(work / "deb"), mirror],
                work / "mmdebstrap.log", mirror)
    binary = next(p for p in (work / "deb/usr/bin/busybox", work / "deb/bin/busybox") if p.exists())
    banner = subprocess.run([str(binary)], capture_output=True, text=True).stdout  # --variant=extract registers nothing
    # "BusyBox v1.37.0 (Debian 1:1.37.0-6+b9) multi-call binary."
    version = banner.split("(Debian ", 1)[1].split(")", 1)[0] if "(Debian " in banner else banner.split()[1].lstrip("v")
    up = _upstream(version)
    applets = subprocess.run([str(binary), "--list"], capture_output=True, text=True, check=True).stdout.split()
    layout = _oci.Layout.create(tmp / "busybox")
    now = int(time.time())
    unpacked = 0
    with _oci.LayerWriter(work / "layer") as w:
        t = w.tar

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            nonlocal unpacked
            unpacked += len(data)
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, now, link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for d, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755), ("proc", 0o555),
                        ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755), ("usr/share", 0o755),
                        ("usr/share/doc", 0o755), ("usr/share/doc/busybox-static", 0o755), ("var", 0o755),
                        ("var/spool", 0o755), ("var/spool/mail", 0o755), ("var/www", 0o755)):
            add(d, tarfile.DIRTYPE, mode)
        add("bin/busybox", tarfile.REGTYPE, 0o755, binary.read_bytes())
        for a in sorted(set(applets) - {"busybox"}):
            add(f"bin/{a}", tarfile.LNKTYPE, 0o755, link="bin/busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                                                  b"nobody:x:65534:65534:nobody:/home:/bin/false\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n")
        add("etc/hosts", tarfile.REGTYPE, 0o644, _HOSTS.encode())
        copyright_file = work / "deb/usr/share/doc/busybox-static/copyright"
        add("usr/share/doc/busybox-static/copyright", tarfile.REGTYPE, 0o644, copyright_file.read_bytes())
    blob = w.result
    assert blob is not None
    layout.add_file(blob.path, blob.digest)
    description = (f"Debian {SUITE}'s busybox-static {version} (BusyBox {up}): /bin/busybox with its {len(applets)} "
                   "applets hard-linked in /bin, a minimal /etc/passwd and /etc/group. Built by kperflab.")
    labels = {"org.opencontainers.image.title": "busybox", "org.opencontainers.image.version": up,
              "org.opencontainers.image.description": description, "org.opencontainers.image.created": _now(),
              "org.kperflab.debian-suite": SUITE, "org.kperflab.debian-packages": f"busybox-static={version}"}
    config = _oci.image_config(env=[f"PATH={DEBIAN_PATH}"], cmd=["sh"], diff_ids=[blob.diff_id], labels=labels,
                               created=_now(), history=[{"created": _now(), "created_by":
                                                         f"busybox-static {version} from Debian {SUITE} "
                                                         f"(kperflab image recipe {RECIPE})"}])
    tags = [".".join(up.split(".")[:2]), up, "latest"]
    return _finish(layout, "busybox", tags, config, [blob], unpacked, description, {"busybox-static": version}, work)


def _relayer(rootfs_tar: Path, out: Path, *, skip_dev: bool) -> tuple[_oci.LayerBlob, int]:
    """mmdebstrap's tarball as a gzip layer: names without ``./``, no root entry, no ``/dev`` nodes."""
    unpacked = 0
    with tarfile.open(rootfs_tar, "r|") as src, _oci.LayerWriter(out) as w:
        for m in src:
            name = m.name.removeprefix("./").rstrip("/")
            if not name or (skip_dev and name.startswith("dev/")):
                continue
            m.name = name
            if m.islnk():
                m.linkname = m.linkname.removeprefix("./")
            if m.isreg():
                unpacked += m.size
            w.tar.addfile(m, src.extractfile(m) if m.isreg() else None)
    assert w.result is not None
    return w.result, unpacked


def _finish(layout: _oci.Layout, name: str, tags: list[str], config: dict[str, Any], blobs: list[_oci.LayerBlob],
            unpacked: int, description: str, packages: dict[str, str], work: Path | None) -> BuiltImage:
    manifest = _oci.write_image(layout, tags, config, [b.descriptor() for b in blobs])
    man = layout.read_json(manifest["digest"])
    if work is not None:
        shutil.rmtree(work)
    size = manifest["size"] + man["config"]["size"] + sum(b.size for b in blobs)
    return BuiltImage(name, tuple(tags), layout.root, manifest["digest"], man["config"]["digest"], size, unpacked,
                      len(blobs), description, packages)


# -- Prometheus, built only when asked for ----------------------------------------------------------

PROMETHEUS_RECIPE = 1  # bump when what the image holds changes: a new cache entry is built beside the old one
PROMETHEUS_REPOSITORY = "quay.io/prometheus/prometheus"  # upstream's image name (also prom/prometheus on Docker Hub)
PROMETHEUS_PACKAGES = ("prometheus",)  # its Depends bring promtool and the classic web UI's JS libraries
# upstream's Dockerfile (v2.53): ENTRYPOINT and CMD as it writes them
PROMETHEUS_ENTRYPOINT = ["/bin/prometheus"]
PROMETHEUS_CMD = ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                  "--web.console.libraries=/usr/share/prometheus/console_libraries",
                  "--web.console.templates=/usr/share/prometheus/consoles"]


def prometheus_entry_name() -> str:
    return f"prometheus-{SUITE}-{_oci.goarch()}-r{PROMETHEUS_RECIPE}"


def cached_prometheus_image(cache: Path | None = None) -> BuiltImage | None:
    """The Prometheus image if this machine has built it, else None (never builds)."""
    entry = (cache or cache_dir()) / prometheus_entry_name()
    return _load(entry, False).images[0] if (entry / "images.json").is_file() else None


def ensure_prometheus_image(cache: Path | None = None, *, mirror: str | None = None) -> BuiltImage:
    """``quay.io/prometheus/prometheus:v<version>`` from Debian's ``prometheus`` package, built the first time it is
    asked for (``kperflab lab up --prometheus``, its tests) and cached in an entry of its own beside the base images,
    whose entry it never touches; one build at a time (its own lock), published whole by rename."""
    cache = cache or cache_dir()
    found = cached_prometheus_image(cache)
    if found:
        return found
    def build(tmp: Path) -> dict[str, Any]:
        where = mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
        _probe_mirror(where, cache)
        image = _build_prometheus(tmp, where)
        return {"suite": SUITE, "recipe": PROMETHEUS_RECIPE, "images": [{**asdict(image), "layout": image.layout.name}]}

    built = _build_once(cache, "prometheus", prometheus_entry_name(), lambda: cached_prometheus_image(cache), build)
    return _load(cache / prometheus_entry_name(), built).images[0]


def _build_prometheus(tmp: Path, mirror: str) -> BuiltImage:
    work = tmp / "work-prometheus"
    work.mkdir()
    rootfs_tar = work / "rootfs.tar"
    # upstream's image keeps its data in /prometheus (owned by nobody, its WORKDIR) and its consoles in
    # /usr/share/prometheus; Debian keeps the consoles in /etc/prometheus: link them where upstream's CMD looks.
    # Debian's package data (/var/lib/prometheus) and its systemd and init files are not used by a container.
    layout_hook = ("mkdir -p \"$1/prometheus\" \"$1/usr/share/prometheus\"; chown 65534:65534 \"$1/prometheus\"; "
                   "chmod 0775 \"$1/prometheus\"; "
                   "for d in consoles console_libraries; do "
                   "if [ -d \"$1/etc/prometheus/$d\" ]; then ln -sfn \"/etc/prometheus/$d\" \"$1/usr/share/prometheus/$d\"; "
                   "elif [ -d \"$1/usr/share/prometheus/$d\" ]; then :; else mkdir -p \"$1/usr/share/prometheus/$d\"; fi; "
                   "done; ")
    versions = _slim_rootfs(work, mirror, PROMETHEUS_PACKAGES, layout_hook)
    up = _upstream(versions["prometheus"])
    layout = _oci.Layout.create(tmp / "prometheus")
    blob, unpacked = _relayer(rootfs_tar, work / "layer", skip_dev=True)
    rootfs_tar.unlink()
    layout.add_file(blob.path, blob.digest)
    key = {p: versions[p] for p in ("prometheus", "promtool") if p in versions}
    description = (f"Debian {SUITE}'s Prometheus {up} ({', '.join(f'{k} {v}' for k, v in key.items())}), slimmed "
                   f"({SLIMMED}), configured as upstream's image {PROMETHEUS_REPOSITORY}:v{up}: Entrypoint "
                   "/bin/prometheus, upstream's Cmd (config /etc/prometheus/prometheus.yml, data in /prometheus, "
                   "consoles under /usr/share/prometheus), User nobody (65534), port 9090/tcp, WORKDIR /prometheus. "
                   "Not upstream's image: the binaries and the default prometheus.yml are Debian's package (built by "
                   "Debian from the same source, its web UI is Debian's), on a Debian userland instead of busybox. "
                   "Built by kperflab with mmdebstrap.")
    labels = {"org.opencontainers.image.title": "prometheus", "org.opencontainers.image.version": up,
              "org.opencontainers.image.description": description, "org.opencontainers.image.created": _now(),
              "org.opencontainers.image.source": "https://packages.debian.org/source/" + SUITE + "/prometheus",
              "org.kperflab.debian-suite": SUITE,
              "org.kperflab.debian-packages": " ".join(f"{k}={v}" for k, v in key.items()),
              "org.kperflab.slimmed": SLIMMED}
    created_by = (f"mmdebstrap --variant=apt --include={','.join(PROMETHEUS_PACKAGES)} {SUITE} "
                  f"(kperflab prometheus recipe {PROMETHEUS_RECIPE})")
    config = _oci.image_config(env=[f"PATH={DEBIAN_PATH}"], entrypoint=PROMETHEUS_ENTRYPOINT, cmd=PROMETHEUS_CMD,
                               diff_ids=[blob.diff_id], labels=labels, created=_now(), user="nobody",
                               working_dir="/prometheus", exposed_ports=["9090/tcp"],
                               history=[{"created": _now(), "created_by": created_by, "comment": SLIMMED}])
    return _finish(layout, PROMETHEUS_REPOSITORY, [f"v{up}"], config, [blob], unpacked, description, versions, work)


# -- test images ------------------------------------------------------------------------------------

class _RandomReader:
    """``n`` bytes: random (incompressible), or hexadecimal text (gzip halves it), generated as they are read."""

    def __init__(self, n: int, seed: int, compressible: bool) -> None:
        self.left = n
        self.rng = random.Random(seed)
        self.compressible = compressible
        self.buf = b""

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        while len(self.buf) < size:
            chunk = self.rng.randbytes(_oci.CHUNK)
            self.buf += chunk.hex().encode() if self.compressible else chunk
        out, self.buf = self.buf[:size], self.buf[size:]
        self.left -= len(out)
        return out


def _stored_overhead(n: int) -> int:
    """Bytes a level-0 gzip adds to ``n`` bytes of tar: 5 per stored block of 64 KiB, header and trailer."""
    return 5 * (n // 65535 + 1) + 18


def make_test_image(name: str, size_bytes: int, layers: int, compressible: bool = False, *, out: Path | None = None,
                    base: BaseImages | None = None, seed: int | None = None,
                    progress: Callable[[str], None] | None = None) -> BuiltImage:
    """An image of ``size_bytes`` and ``layers`` layers on top of busybox, as an OCI layout in ``out`` (default: a
    new temporary directory, which the caller removes: ``result.layout``).

    ``size_bytes`` is the size a kubelet reports for it (``sizeBytes``: manifest + config + compressed layers) when
    the data is random bytes (the default): busybox is the bottom layer (with ``layers=1`` the only layer holds
    busybox and the data), the data is split evenly over the other layers as ``/kperflab/data/layer-NN.bin``.
    Random bytes do not compress, so their layers are gzip with stored blocks (level 0: what any level ends up
    writing for random data, without the time spent looking for repeats). With ``compressible=True`` the same
    amount of data is hexadecimal text compressed at gzip's default level 6, and the image comes out at about
    55 % of ``size_bytes``: the pull moves less and unpacks as much. ``seed`` makes the bytes reproducible (by
    default they are new each time, so two test images never share a layer).

    >>> img = make_test_image("kperflab/size-test:100m", 100_000_000, 4)  # doctest: +SKIP
    >>> img.size, img.layers, img.refs  # doctest: +SKIP
    (99999958, 4, ['kperflab/size-test:100m'])
    """
    if layers < 1 or layers > 127:
        raise BadInput(f"A test image needs between 1 and 127 layers, not {layers}.",
                       hint="Pick a layer count that overlayfs can stack (kperflab allows up to 127).")
    ref = parse(name)
    if ref.digest:
        raise BadInput(f"A test image is named by a tag, not a digest ({name}).", hint="Give it a name like size-test:100m.")
    base = base or ensure_base_images()
    bb = base.get("busybox")
    bb_layout = _oci.Layout(bb.layout)
    bb_manifest = bb_layout.read_json(bb.manifest_digest)
    bb_layer = bb_manifest["layers"][0]
    bb_config = bb_layout.read_json(bb.config_digest)
    seed = random.SystemRandom().getrandbits(64) if seed is None else seed
    level = 6 if compressible else 0
    tar_overhead = 3 * 512 + 10240  # data entry header + directory entries + end of archive and record padding
    if layers == 1:
        with gzip.open(bb_layout.blob_path(bb_layer["digest"])) as f:
            bb_tar_size = sum(len(c) for c in iter(lambda: f.read(_oci.CHUNK), b""))
        fixed = bb_tar_size + _stored_overhead(bb_tar_size)
        data_layers = 1
    else:
        fixed = bb_layer["size"]
        data_layers = layers - 1
    fixed += 2500 + data_layers * (tar_overhead + 18)  # config and manifest (about 1.5 KB) and per-layer overhead
    data = size_bytes - fixed
    data -= sum(_stored_overhead(data // data_layers) for _ in range(data_layers))
    if data < data_layers:
        need = (size_bytes - data + data_layers) / 1e6
        raise BadInput(f"A test image of {layers} layer{'s' if layers > 1 else ''} needs at least {need:.1f} MB "
                       f"(busybox itself is {bb.size / 1e6:.1f} MB), not {size_bytes / 1e6:.1f} MB.",
                       hint="Ask for a larger size.")
    out = out or Path(tempfile.mkdtemp(prefix="kperflab-test-image-"))
    own = not any(out.iterdir()) if out.exists() else True
    try:
        out.mkdir(parents=True, exist_ok=True)
        layout = _oci.Layout.create(out)
        descriptors: list[dict[str, Any]] = []
        diff_ids: list[str] = []
        if layers > 1:
            _oci.link_or_copy(bb_layout.blob_path(bb_layer["digest"]), layout.blob_path(bb_layer["digest"]))
            descriptors.append(bb_layer)
            diff_ids.append(bb_config["rootfs"]["diff_ids"][0])
        per, extra = divmod(data, data_layers)
        now = int(time.time())
        for i in range(data_layers):
            n = per + (1 if i < extra else 0)
            if progress:
                progress(f"layer {len(descriptors) + 1}/{layers}: {n / 1e6:.1f} MB")
            with _oci.LayerWriter(out / f"layer-{i}.tmp", level=level) as w:
                if layers == 1:
                    with gzip.open(bb_layout.blob_path(bb_layer["digest"])) as f, tarfile.open(fileobj=f, mode="r|") as src:
                        for m in src:
                            w.tar.addfile(m, src.extractfile(m) if m.isreg() else None)
                for d in ("kperflab", "kperflab/data"):
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                    w.tar.addfile(info)
                info = tarfile.TarInfo(f"kperflab/data/layer-{i + 1:02d}.bin")
                info.size, info.mode, info.mtime = n, 0o644, now
                w.tar.addfile(info, _RandomReader(n, seed + i, compressible))  # type: ignore[arg-type]
            assert w.result is not None
            layout.add_file(w.result.path, w.result.digest)
            descriptors.append(w.result.descriptor())
            diff_ids.append(w.result.diff_id)
    except BaseException:
        if own:  # nothing of a half-written layout stays behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    what = f"{size_bytes / 1e6:g} MB in {layers} layer{'s' if layers > 1 else ''} of " + \
        ("hexadecimal text (compressible)" if compressible else "random bytes (incompressible)")
    description = f"A kperflab test image: busybox and {what}."
    labels = {"org.opencontainers.image.description": description, "org.kperflab.test-image": what,
              "org.kperflab.test-image.seed": str(seed), "org.opencontainers.image.created": _now()}
    config = _oci.image_config(env=[f"PATH={DEBIAN_PATH}"], cmd=["sh"], diff_ids=diff_ids, labels=labels,
                               created=_now(), history=[{"created": _now(), "created_by": f"kperflab make_test_image {what}"}])
    tag = ref.tag or "latest"
    manifest = _oci.write_image(layout, [tag], config, descriptors)
    man = layout.read_json(manifest["digest"])
    size = manifest["size"] + man["config"]["size"] + sum(d["size"] for d in descriptors)
    unpacked = bb.unpacked_size + data
    familiar = ref.familiar.rsplit(":", 1)[0]
    return BuiltImage(familiar, (tag,), out, manifest["digest"], man["config"]["digest"], size, unpacked, layers,
                      description)


# -- the storage lesson's test images, cached once per machine ---------------------------------------

TEST_RECIPE = 2  # bump when the set below changes: a new cache entry is built beside the old one
TEST_REPOSITORY = "kperflab/size-test"
# label (the ConfigMap's key) → tag, size in bytes (what the kubelet reports), layers; random, incompressible bytes.
# "100MB-b" is another 100 MB image (other bytes): pulled once a node holds "100MB" it is still a cold pull (the store
# shares content by digest, so the same image under the slow registry's name would move nothing).
TEST_IMAGES: tuple[tuple[str, str, int, int], ...] = (
    ("10MB", "10mb", 10_000_000, 1),
    ("100MB", "100mb", 100_000_000, 1),
    ("100MB-b", "100mb-b", 100_000_000, 1),
    ("500MB", "500mb", 500_000_000, 1),
    ("100MB-20layers", "100mb-20layers", 100_000_000, 20),
)


@dataclass(frozen=True)
class TestImages:
    """The cached test images of the storage lesson: label → image (repository ``kperflab/size-test``)."""

    root: Path
    images: dict[str, BuiltImage]
    build_seconds: float
    built_now: bool

    __test__ = False  # not a pytest class

    def refs(self) -> dict[str, str]:
        """label → familiar reference (``kperflab/size-test:100mb``)."""
        return {label: img.refs[0] for label, img in self.images.items()}


def test_entry_name() -> str:
    return f"test-{_oci.goarch()}-r{TEST_RECIPE}"


def _load_test(entry: Path, built_now: bool) -> TestImages:
    info = json.loads((entry / "images.json").read_text())
    images = {i["label"]: BuiltImage(**{**{k: v for k, v in i.items() if k != "label"}, "layout": entry / i["layout"],
                                        "tags": tuple(i["tags"])}) for i in info["images"]}
    return TestImages(entry, images, info["build_seconds"], built_now)


def cached_test_images(cache: Path | None = None) -> TestImages | None:
    """The storage lesson's test images if this machine has built them, else None (never builds)."""
    entry = (cache or cache_dir()) / test_entry_name()
    return _load_test(entry, False) if (entry / "images.json").is_file() else None


def ensure_test_images(cache: Path | None = None, *, base: BaseImages | None = None) -> TestImages:
    """The test images (`TEST_IMAGES`: 10, 100 (twice) and 500 MB in one layer, 100 MB in 20), built first when this
    machine has none: about 800 MB of random bytes, some ten seconds, once; published whole by rename like the base
    images."""
    cache = cache or cache_dir()
    found = cached_test_images(cache)
    if found:
        return found
    base = base or ensure_base_images(cache)
    def build(tmp: Path) -> dict[str, Any]:
        records = []
        for i, (label, tag, size, layers) in enumerate(TEST_IMAGES):
            img = make_test_image(f"{TEST_REPOSITORY}:{tag}", size, layers, out=tmp / tag, base=base, seed=1000 * (i + 1))
            records.append({"label": label, **asdict(img), "layout": tag})
        return {"recipe": TEST_RECIPE, "images": records}

    built = _build_once(cache, "test", test_entry_name(), lambda: cached_test_images(cache), build)
    return _load_test(cache / test_entry_name(), built)
