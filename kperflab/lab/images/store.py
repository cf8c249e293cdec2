"""The node's image store: what a containerd content store + overlay snapshotter + CRI image service keep for a
kubelet, in one directory the caller gives (the lab's own).

Layout of ``root``::

    blobs/sha256/<hex>     content-addressed blobs as pulled: indexes, manifests, configs, compressed layers
    layers/<hex>/          each layer unpacked once, in overlayfs lower-dir form, named by its diff_id
    l/<16 hex>             a short symlink to each layer dir (Docker overlay2's ``l/``): mount options hold one
                           page (4096 bytes), which absolute layer paths fill at about 30 layers
    images/<hex>.json      one record per image, named by its id (the config digest, as CRI's image id)
    tmp/pull-*/            a pull's staging area; published by rename, removed on failure
    .lock                  held (flock) while content is published or removed

A pull fetches and verifies everything into its staging area — blobs against their digests and sizes, unpacked
layers against ``rootfs.diff_ids`` — and only then moves blobs and layer dirs into place (rename, same
filesystem) and writes the record last (write + rename). A corrupt blob, a wrong diff_id or a failed unpack
leaves nothing of the image in the store; a crash mid-publish leaves at most unreferenced content, which `gc`
removes. Layers are fetched and unpacked three at a time (containerd's ``max_concurrent_downloads``).

The API, as the kubelet needs it (CRI ``ImageStatus``, ``PullImage``, ``ListImages``, ``RemoveImage``)::

    store = ImageStore(run_dir / "images", registry_url=registry.url)
    store.get("python:3.13-slim")          # Image or None: by tag, repo digest (name@sha256:…) or image id
    r = store.pull("python:3.13-slim")     # PullResult(image, bytes, seconds, …); raises PullError
    r.image.lowerdirs                      # [top layer dir, …, bottom]: overlay's lowerdir=a:b:c order
    r.image.config["Cmd"]                  # ENTRYPOINT/CMD/Env/WorkingDir/User from the image config
    r.image.repo_digest                    # docker.io/library/python@sha256:<manifest digest>
    store.node_images()                    # node.status.images: [{"names": [...], "sizeBytes": n}], largest first
    store.remove("python:3.13-slim")       # the image, all its names, and content no other image uses

Sizes: ``Image.size`` is what containerd reports as the image size (and the kubelet as ``sizeBytes`` and in the
``Pulled`` event): the packed content — index (when pulled through one), manifest, config and compressed layers.
``Image.unpacked_size`` is the bytes of file content in its layers.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _oci, _unpack
from .pull import Endpoint, FetchError, Manifest, PullError, RegistryClient
from .reference import InvalidImageName, Reference, parse

MAX_CONCURRENT_DOWNLOADS = 3
DEFAULT_IMAGEFS_SIZE = 4 << 30  # the lab's image filesystem (`lab up --imagefs-size`): room for the lesson's images
NODE_STATUS_MAX_IMAGES = 50
MAX_NAMES_PER_IMAGE = 5  # the kubelet's cap on node.status.images[].names
SHORT = 16  # hex digits of a layer's short link name


@dataclass(frozen=True)
class Image:
    """An image in the store. ``config`` is the image config's ``config`` object (``Entrypoint``, ``Cmd``, ``Env``,
    ``WorkingDir``, ``User``, ``Labels`` …), ``lowerdirs`` top layer first."""

    id: str  # sha256:<config digest>: CRI's image id
    repo_tags: list[str]  # docker.io/library/python:3.13-slim
    repo_digests: list[str]  # docker.io/library/python@sha256:<manifest digest>
    manifest_digest: str
    config: dict[str, Any]
    lowerdirs: list[Path]
    layers: list[dict[str, Any]]  # descriptors (digest, size, mediaType) with their diff_id, bottom first
    size: int
    unpacked_size: int
    pulled_at: float
    last_used: float
    architecture: str = ""
    os: str = ""
    store_root: Path | None = None

    @property
    def short_lowerdirs(self) -> list[str]:
        """``l/<id>`` for each lower dir, top first, relative to ``store_root``: for `overlay_options` with
        ``relative=True`` and ``mount`` run in ``store_root`` (how Docker's overlay2 mounts deep images)."""
        return [f"l/{p.name[:SHORT]}" for p in self.lowerdirs]

    @property
    def names(self) -> list[str]:
        """Repo digests, then tags: the order of ``node.status.images[].names``."""
        return self.repo_digests + self.repo_tags

    @property
    def repo_digest(self) -> str:
        """``<repo>@sha256:<manifest digest>``: a container status's ``imageID``."""
        return self.repo_digests[0] if self.repo_digests else self.id

    @property
    def repo_tag(self) -> str:
        """The first repo tag (a container status's ``image``), else the repo digest."""
        return self.repo_tags[0] if self.repo_tags else self.repo_digest

    def overlay_options(self, upperdir: Path | None = None, workdir: Path | None = None, *,
                        relative: bool = False) -> str:
        """``lowerdir=top:…:bottom[,upperdir=…,workdir=…]`` for ``mount -t overlay``; with ``relative=True`` the
        lower dirs are the short ``l/<id>`` links, for a ``mount`` whose working directory is ``store_root``.

        >>> img = Image("sha256:c", [], [], "sha256:m", {}, [Path("/s/layers/" + "b" * 64), Path("/s/layers/a")],
        ...             [], 0, 0, 0, 0)
        >>> img.overlay_options(Path("/u"), Path("/w")).replace("b" * 64, "B…")
        'lowerdir=/s/layers/B…:/s/layers/a,upperdir=/u,workdir=/w'
        >>> img.overlay_options(relative=True)
        'lowerdir=l/bbbbbbbbbbbbbbbb:l/a'
        """
        dirs = self.short_lowerdirs if relative else [str(p) for p in self.lowerdirs]
        opts = "lowerdir=" + ":".join(dirs)
        if upperdir is not None and workdir is not None:
            opts += f",upperdir={upperdir},workdir={workdir}"
        return opts


@dataclass(frozen=True)
class PullResult:
    """``bytes`` counts the blobs fetched (config and layers; 0 when everything was present), ``seconds`` the whole
    pull; ``fetch_seconds``/``unpack_seconds`` add up the per-layer times (layers overlap, three at a time)."""

    image: Image
    bytes: int
    seconds: float
    manifest_bytes: int = 0
    fetch_seconds: float = 0.0
    unpack_seconds: float = 0.0
    layers_fetched: int = 0
    layers_present: int = 0
    requests: int = 0


@dataclass
class _Staging:
    dir: Path
    blobs: dict[str, Path] = field(default_factory=dict)  # digest → staged file
    layers: dict[str, Path] = field(default_factory=dict)  # diff_id → staged dir


class ImageStore:
    """The node image store rooted at ``root``; ``registry_url`` is where `pull` goes unless it is given one."""

    def __init__(self, root: Path, registry_url: str | None = None, hosts: dict[str, Endpoint] | None = None) -> None:
        self.root = Path(root)
        self.registry_url = registry_url
        self.hosts: dict[str, Endpoint] = dict(hosts or {})  # registry host → its endpoint; any other → registry_url
        self.blobs = self.root / "blobs" / "sha256"
        self.layers = self.root / "layers"
        self.images = self.root / "images"
        self.tmp = self.root / "tmp"
        self.short = self.root / "l"
        for d in (self.blobs, self.layers, self.images, self.tmp, self.short):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    # -- reading ----------------------------------------------------------------------------------------

    def _records(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.images.glob("*.json")):
            try:
                out.append(json.loads(p.read_bytes()))
            except (OSError, ValueError):
                continue  # removed or being replaced right now
        return out

    def _image(self, rec: dict[str, Any]) -> Image:
        cfg = json.loads((self.blobs / _oci.hex_of(rec["config_digest"])).read_bytes())
        return Image(
            id=rec["config_digest"], repo_tags=list(rec["repo_tags"]), repo_digests=list(rec["repo_digests"]),
            manifest_digest=rec["manifest_digest"], config=dict(cfg.get("config") or {}),
            lowerdirs=[self.layers / _oci.hex_of(layer["diff_id"]) for layer in reversed(rec["layers"])],
            layers=list(rec["layers"]), size=rec["size"], unpacked_size=rec["unpacked_size"],
            pulled_at=rec["pulled_at"], last_used=rec["last_used"], architecture=cfg.get("architecture", ""),
            os=cfg.get("os", ""), store_root=self.root)

    def _find(self, ref: str) -> dict[str, Any] | None:
        ref = ref.strip()
        if ref.startswith("sha256:"):
            return next((r for r in self._records() if r["config_digest"] == ref), None)
        r = parse(ref)
        for rec in self._records():
            if r.digest and r.with_digest(r.digest) in rec["repo_digests"]:
                return rec
            if not r.digest and r.tagged() in rec["repo_tags"]:
                return rec
        return None

    def get(self, ref: str) -> Image | None:
        """The image a reference names (tag, ``name@sha256:<manifest digest>``, or image id ``sha256:<config>``), or
        None when the store does not have it. Raises `InvalidImageName` for a reference that does not parse."""
        rec = self._find(ref)
        try:
            return self._image(rec) if rec else None
        except OSError:  # removed (image GC) between finding its record and reading its config
            return None

    def list(self) -> list[Image]:
        """Every image, oldest pull first (one removed while listed, e.g. by image GC, is left out)."""
        out = []
        for r in self._records():
            try:
                out.append(self._image(r))
            except OSError:
                continue
        return sorted(out, key=lambda i: i.pulled_at)

    def node_images(self, max_images: int = NODE_STATUS_MAX_IMAGES) -> list[dict[str, Any]]:
        """``node.status.images``: largest first, at most ``max_images`` (-1: all), names capped at 5."""
        images = sorted(self.list(), key=lambda i: i.size, reverse=True)
        if max_images >= 0:
            images = images[:max_images]
        return [{"names": i.names[:MAX_NAMES_PER_IMAGE], "sizeBytes": i.size} for i in images]

    def fs_stats(self) -> dict[str, int]:
        """The image filesystem (the filesystem the store lives on: the lab mounts one of a set size there), as the
        Summary API's ``node.runtime.imageFs`` and the image GC read it: capacity/available/used bytes (statvfs),
        inodes, inodesFree, inodesUsed."""
        st = os.statvfs(self.root)
        return {"capacityBytes": st.f_blocks * st.f_frsize, "availableBytes": st.f_bavail * st.f_frsize,
                "usedBytes": (st.f_blocks - st.f_bfree) * st.f_frsize, "inodes": st.f_files,
                "inodesFree": st.f_ffree, "inodesUsed": st.f_files - st.f_ffree}

    def usage(self) -> int:
        """Bytes of content the store holds (blobs + unpacked layers), as ``imageFs.usedBytes`` would count them."""
        total = 0
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
                except OSError:
                    pass
        return total

    # -- writing ----------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock, open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _write_record(self, rec: dict[str, Any]) -> None:
        path = self.images / f"{_oci.hex_of(rec['config_digest'])}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        with open(tmp, "w") as f:
            json.dump(rec, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def mark_used(self, ref: str, when: float | None = None) -> None:
        """Record that a container started from the image (image GC removes the least recently used first)."""
        with self._locked():
            rec = self._find(ref)
            if rec:
                rec["last_used"] = time.time() if when is None else when
                self._write_record(rec)

    def pull(self, ref: str, registry_url: str | None = None) -> PullResult:
        """Pull ``ref`` from the lab's registry (``registry_url``, else the store's): resolve, fetch what the store
        lacks, verify, unpack, publish. A digest reference already present moves nothing; a tag is resolved again
        (``imagePullPolicy: Always``), and only missing blobs are fetched. Raises `PullError` (or
        `InvalidImageName`)."""
        started = time.monotonic()
        r = parse(ref)
        name = str(r)
        endpoint = self.hosts.get(r.domain) if registry_url is None else None
        url = endpoint.url if endpoint else registry_url or self.registry_url
        if not url:
            raise PullError(name, "no registry to pull from (the lab's registry is not running)", code="Unavailable")
        if r.digest:
            present = self.get(name)
            if present:
                return PullResult(present, 0, time.monotonic() - started)
        client = RegistryClient(url, dial=endpoint.dial if endpoint else None)
        repository = r.path if endpoint else None
        staging = _Staging(Path(tempfile.mkdtemp(prefix="pull-", dir=self.tmp)))
        try:
            with open(staging.dir / ".lock", "w") as lockf:
                fcntl.flock(lockf, fcntl.LOCK_EX)  # gc leaves a staging dir alone while its pull runs
                try:
                    return self._pull(r, client, staging, started, repository)
                except FetchError as e:
                    raise PullError(name, e.detail, code=e.code, digest=e.digest) from None
                except (OSError, ValueError, KeyError, TypeError) as e:  # a full disk, a malformed document
                    raise PullError(name, f"failed to copy: {type(e).__name__}: {e}") from e
        finally:
            shutil.rmtree(staging.dir, ignore_errors=True)

    def _pull(self, r: Reference, client: RegistryClient, st: _Staging, started: float,
              repository: str | None = None) -> PullResult:
        top = client.resolve(r, repository)
        man = client.platform_manifest(top)
        manifest_bytes = client.bytes
        doc = man.json
        if doc.get("schemaVersion") != 2 or "config" not in doc:
            raise FetchError(f"unsupported manifest {man.digest} (schema version {doc.get('schemaVersion')})",
                             "FailedPrecondition")
        for m in (top, man):
            self._stage_bytes(st, m.digest, m.data)
        cdesc = doc["config"]
        config_bytes = self._blob_bytes(client, man, cdesc, st)
        config = json.loads(config_bytes)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layers = list(doc.get("layers") or [])
        if len(diff_ids) != len(layers):
            raise FetchError(f"mismatched image rootfs and manifest layers: {len(diff_ids)} diff_ids, {len(layers)} "
                             "layers", "FailedPrecondition")
        fetched_bytes = cdesc["size"] if cdesc["digest"] in st.blobs else 0
        results = self._layers(client, man, layers, diff_ids, st)
        fetched_bytes += sum(res[0] for res in results)
        size = len(top.data) + (len(man.data) if man is not top else 0) + cdesc["size"] + sum(int(x["size"]) for x in layers)
        image = self._publish(r, top, man, cdesc, config, layers, diff_ids, size, st)
        return PullResult(image, fetched_bytes, time.monotonic() - started, manifest_bytes=manifest_bytes,
                          fetch_seconds=sum(res[1] for res in results), unpack_seconds=sum(res[2] for res in results),
                          layers_fetched=sum(1 for res in results if res[0]),
                          layers_present=sum(1 for res in results if res[3]), requests=client.requests)

    def _stage_bytes(self, st: _Staging, digest: str, data: bytes) -> None:
        if (self.blobs / _oci.hex_of(digest)).exists() or digest in st.blobs:
            return
        p = st.dir / _oci.hex_of(digest)
        p.write_bytes(data)
        st.blobs[digest] = p

    def _blob_bytes(self, client: RegistryClient, man: Manifest, desc: dict[str, Any], st: _Staging) -> bytes:
        have = self.blobs / _oci.hex_of(desc["digest"])
        if have.exists():
            return have.read_bytes()
        p = st.dir / _oci.hex_of(desc["digest"])
        client.fetch_blob(man.repository, desc, p, "config")
        st.blobs[desc["digest"]] = p
        return p.read_bytes()

    def _layers(self, client: RegistryClient, man: Manifest, layers: list[dict[str, Any]], diff_ids: list[str],
                st: _Staging) -> list[tuple[int, float, float, bool]]:
        """Fetch (when missing) and unpack (when missing) every layer, three at a time: per layer (bytes fetched,
        fetch seconds, unpack seconds, already unpacked)."""
        jobs: dict[str, tuple[dict[str, Any], str]] = {}
        for desc, diff_id in zip(layers, diff_ids, strict=True):
            _oci.hex_of(desc["digest"]), _oci.hex_of(diff_id)  # both become file names: sha256 only
            jobs.setdefault(diff_id, (desc, diff_id))

        def one(desc: dict[str, Any], diff_id: str) -> tuple[int, float, float, bool]:
            blob = self.blobs / _oci.hex_of(desc["digest"])
            unpacked = (self.layers / _oci.hex_of(diff_id)).is_dir()
            got, t_fetch, t_unpack = 0, 0.0, 0.0
            if not blob.exists():
                t0 = time.monotonic()
                blob = st.dir / _oci.hex_of(desc["digest"])
                got = client.fetch_blob(man.repository, desc, blob, "layer")
                t_fetch = time.monotonic() - t0
            if not unpacked:
                t0 = time.monotonic()
                dest = st.dir / "layers" / _oci.hex_of(diff_id)
                try:
                    res = _unpack.unpack(blob, desc.get("mediaType", _oci.OCI_LAYER_GZIP), dest)
                except _unpack.UnpackError as exc:
                    raise FetchError(f"failed to extract layer {desc['digest']}: {exc}", "Unknown", desc["digest"]) from None
                if res.diff_id != diff_id:
                    raise FetchError(f"failed to extract layer {desc['digest']}: wrong diff id calculated on extraction "
                                     f'"{res.diff_id}", expected "{diff_id}"', "FailedPrecondition", desc["digest"])
                (dest.parent / f"{dest.name}.size").write_text(str(_du(dest)))
                t_unpack = time.monotonic() - t0
            return got, t_fetch, t_unpack, unpacked

        results: list[tuple[int, float, float, bool]] = []
        with ThreadPoolExecutor(MAX_CONCURRENT_DOWNLOADS) as pool:
            futures = [pool.submit(one, *job) for job in jobs.values()]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()
            wait(futures)
            for f in futures:  # the first failure in layer order
                if not f.cancelled() and f.exception() is not None:
                    raise f.exception()  # type: ignore[misc]
            results = [f.result() for f in futures]
        for desc, diff_id in jobs.values():
            staged = st.dir / _oci.hex_of(desc["digest"])
            if staged.exists():
                st.blobs[desc["digest"]] = staged
            d = st.dir / "layers" / _oci.hex_of(diff_id)
            if d.is_dir():
                st.layers[diff_id] = d
        return results

    def _publish(self, r: Reference, top: Manifest, man: Manifest, cdesc: dict[str, Any], config: dict[str, Any],
                 layers: list[dict[str, Any]], diff_ids: list[str], size: int, st: _Staging) -> Image:
        now = time.time()
        with self._locked():
            for digest, p in st.blobs.items():
                dst = self.blobs / _oci.hex_of(digest)
                if not dst.exists():
                    os.replace(p, dst)
            for diff_id, d in st.layers.items():
                dst = self.layers / _oci.hex_of(diff_id)
                if not dst.exists():
                    os.rename(d, dst)
                    os.replace(d.parent / f"{d.name}.size", self.layers / f"{dst.name}.size")
                link = self.short / dst.name[:SHORT]
                if not os.path.lexists(link):
                    os.symlink(f"../layers/{dst.name}", link)
                elif os.readlink(link) != f"../layers/{dst.name}":  # two layers whose diff_ids share 64 bits
                    raise FetchError(f"layer {diff_id}: its short name {link.name} is taken", "Internal")
            tag = r.tagged()
            repo_digest = r.with_digest(top.digest)
            for other in self._records():  # a tag names one image: it moves
                if other["config_digest"] != cdesc["digest"] and tag in other["repo_tags"]:
                    other["repo_tags"].remove(tag)
                    self._write_record(other)
            rec = self._find(cdesc["digest"]) or {
                "config_digest": cdesc["digest"], "repo_tags": [], "repo_digests": [], "blobs": [],
                "pulled_at": now, "last_used": now}
            if tag and tag not in rec["repo_tags"]:
                rec["repo_tags"].append(tag)
            if repo_digest not in rec["repo_digests"]:
                rec["repo_digests"].insert(0, repo_digest)
            rec["manifest_digest"] = top.digest
            rec["media_type"] = top.media_type
            rec["layers"] = [{**desc, "diff_id": d} for desc, d in zip(layers, diff_ids, strict=True)]
            rec["blobs"] = sorted({*rec["blobs"], top.digest, man.digest, cdesc["digest"], *(x["digest"] for x in layers)})
            rec["size"] = size
            rec["unpacked_size"] = sum(_layer_size(self.layers / _oci.hex_of(d)) for d in dict.fromkeys(diff_ids))
            rec["pulled_at"] = now
            self._write_record(rec)
            return self._image(rec)

    def remove(self, ref: str) -> bool:
        """Remove the image a reference names — every name of it, as ``crictl rmi`` does — then the content no
        other image uses. The caller makes sure no container runs from it (its layer dirs go). False when absent."""
        with self._locked():
            rec = self._find(ref)
            if rec is None:
                return False
            (self.images / f"{_oci.hex_of(rec['config_digest'])}.json").unlink()
            self._gc()
        return True

    def gc(self) -> None:
        """Remove blobs and layer dirs no image uses, and staging dirs no pull holds."""
        with self._locked():
            self._gc()

    def _gc(self) -> None:
        records = self._records()
        blobs = {_oci.hex_of(d) for rec in records for d in rec["blobs"]}
        diffs = {_oci.hex_of(x["diff_id"]) for rec in records for x in rec["layers"]}
        for p in self.blobs.iterdir():
            if p.name not in blobs:
                p.unlink(missing_ok=True)
        for p in self.layers.iterdir():
            if p.name.removesuffix(".size") not in diffs:
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        for p in self.short.iterdir():
            if os.readlink(p).rsplit("/", 1)[-1] not in diffs:
                p.unlink()
        for d in self.tmp.iterdir():
            try:
                with open(d / ".lock", "a") as f:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    shutil.rmtree(d, ignore_errors=True)
            except (BlockingIOError, NotADirectoryError, FileNotFoundError):
                continue


def _du(path: Path) -> int:
    """Bytes of file content under ``path`` (hard links once), like ``du --apparent-size``."""
    seen: set[int] = set()
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            if st.st_nlink > 1:
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
            if not (st.st_mode & 0o170000 == 0o020000):  # a whiteout (char device) has no content
                total += st.st_size
    return total


def _layer_size(layer_dir: Path) -> int:
    try:
        return int((layer_dir.parent / f"{layer_dir.name}.size").read_text())
    except (OSError, ValueError):
        return _du(layer_dir)


__all__ = ["Image", "ImageStore", "PullResult", "PullError", "InvalidImageName"]
