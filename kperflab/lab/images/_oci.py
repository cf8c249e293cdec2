"""OCI plumbing shared by the builder, the registry client and the store: media types, digests, the image layout on
disk, and a layer writer that computes both digests of a layer while it is written.

Nothing here talks to the network or runs a program.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)  # what a pull accepts, in this order
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20


def goarch() -> str:
    """This machine's architecture as OCI platforms (and Debian) name it.

    >>> goarch() in ("amd64", "arm64", "386", "arm", "ppc64le", "s390x", "riscv64")
    True
    """
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "i386": "386", "armv7l": "arm", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


def sha256_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of exactly these bytes.

    >>> sha256_bytes(b"")
    'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def hex_of(digest: str) -> str:
    """The hex part of a ``sha256:`` digest, refusing anything else (it becomes a file name).

    >>> hex_of("sha256:" + "a" * 64) == "a" * 64
    True
    """
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"invalid digest {digest!r}: only sha256 digests are supported")
    return hexpart


def canonical_json(obj: Any) -> bytes:
    """The bytes kperflab writes for a JSON document it digests (compact, keys in order)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def descriptor(media_type: str, data_or_digest: bytes | str, size: int | None = None, **extra: Any) -> dict[str, Any]:
    if isinstance(data_or_digest, bytes):
        return {"mediaType": media_type, "digest": sha256_bytes(data_or_digest), "size": len(data_or_digest), **extra}
    assert size is not None
    return {"mediaType": media_type, "digest": data_or_digest, "size": size, **extra}


# -- hashing streams --------------------------------------------------------------------------------

class HashingWriter:
    """A write-only file object that hashes and counts what goes through it, then passes it on."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


class HashingReader:
    """A read-only file object that hashes and counts every byte read through it."""

    def __init__(self, src: IO[bytes]) -> None:
        self.src = src
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: its blob (compressed) digest and size, its diff_id and uncompressed size."""

    path: Path
    digest: str
    size: int
    diff_id: str
    tar_size: int
    media_type: str = OCI_LAYER_GZIP

    def descriptor(self) -> dict[str, Any]:
        return descriptor(self.media_type, self.digest, self.size)


class LayerWriter:
    """Write a gzip layer as a tar stream; both digests are computed on the way (no second read).

    >>> import io, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with LayerWriter(d / "layer") as w:
    ...     info = tarfile.TarInfo("hello.txt"); info.size = 2
    ...     w.tar.addfile(info, io.BytesIO(b"hi"))
    >>> w.result.tar_size, w.result.diff_id == sha256_bytes(gzip.decompress((d / "layer").read_bytes()))
    (10240, True)
    """

    def __init__(self, path: Path, level: int = 6) -> None:
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._compressed = HashingWriter(self._file)
        self._gzip = gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=self._compressed, mtime=0)
        self._plain = HashingWriter(self._gzip)  # type: ignore[arg-type]
        self.tar = tarfile.open(fileobj=self._plain, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                                bufsize=CHUNK)
        self.result: LayerBlob | None = None

    def close(self) -> LayerBlob:
        self.tar.close()
        self._gzip.close()
        self._file.close()
        self.result = LayerBlob(self.path, self._compressed.digest, self._compressed.size, self._plain.digest,
                                self._plain.size)
        return self.result

    def abort(self) -> None:
        for f in (self.tar, self._gzip, self._file):
            try:
                f.close()
            except Exception:  # noqa: BLE001 - best effort, the file is being thrown away
                pass
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# -- the OCI image layout ---------------------------------------------------------------------------

class Layout:
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``), as skopeo and umoci
    read it; tags are ``org.opencontainers.image.ref.name`` annotations on the index's manifests."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def create(cls, root: Path) -> Layout:
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        if not (root / "index.json").exists():
            (root / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}))
        return cls(root)

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / hex_of(digest)

    def add_bytes(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        p = self.blob_path(digest)
        if not p.exists():
            tmp = p.with_name(p.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, p)
        return digest

    def add_file(self, src: Path, digest: str, *, link: bool = False) -> None:
        """Move (or hard-link, falling back to a copy) a file whose digest is known into the blobs."""
        dst = self.blob_path(digest)
        if dst.exists():
            if not link:
                src.unlink()
            return
        if link:
            link_or_copy(src, dst)
        else:
            os.replace(src, dst)

    def index(self) -> dict[str, Any]:
        return json.loads((self.root / "index.json").read_bytes())

    def tag(self, manifest: dict[str, Any], ref_name: str) -> None:
        """Point ``ref_name`` at a manifest descriptor (replacing an older manifest of that name)."""
        idx = self.index()
        idx["manifests"] = [m for m in idx["manifests"] if (m.get("annotations") or {}).get(REF_NAME) != ref_name]
        idx["manifests"].append({**manifest, "annotations": {REF_NAME: ref_name}})
        tmp = self.root / "index.json.tmp"
        tmp.write_bytes(canonical_json(idx))
        os.replace(tmp, self.root / "index.json")

    def tags(self) -> list[str]:
        return [m["annotations"][REF_NAME] for m in self.index()["manifests"] if REF_NAME in (m.get("annotations") or {})]

    def manifest_descriptor(self, tag: str | None = None) -> dict[str, Any]:
        """The index entry for ``tag`` (or the only one when ``tag`` is None)."""
        manifests = self.index()["manifests"]
        if tag is None:
            if len(manifests) != 1:
                raise KeyError(f"{self.root} holds {len(manifests)} manifests: name one of {self.tags()}")
            return manifests[0]
        for m in manifests:
            if (m.get("annotations") or {}).get(REF_NAME) == tag:
                return m
        raise KeyError(f"{self.root} has no image tagged {tag!r} (it has {self.tags()})")

    def read_json(self, digest: str) -> dict[str, Any]:
        return json.loads(self.blob_path(digest).read_bytes())

    def walk(self, tag: str | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        """Every blob one image needs, children first (layers, config, manifest): ``(descriptor, role)``."""
        top = self.manifest_descriptor(tag)
        manifests = [top]
        if top["mediaType"] in INDEX_TYPES:
            manifests = self.read_json(top["digest"])["manifests"]
        for m in manifests:
            man = self.read_json(m["digest"])
            for layer in man.get("layers", []):
                yield layer, "layer"
            yield man["config"], "config"
            yield m, "manifest"
        if top is not manifests[0]:
            yield top, "index"


def link_or_copy(src: Path, dst: Path) -> bool:
    """Hard-link ``src`` to ``dst`` (True), or copy it when a link cannot be made (another filesystem, a protected
    hard link): False. ``dst`` appears complete or not at all."""
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
        linked = True
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
        linked = False
    os.replace(tmp, dst)
    return linked


def image_config(*, env: list[str], cmd: list[str], diff_ids: list[str], labels: dict[str, str],
                 history: list[dict[str, Any]], created: str, working_dir: str = "/",
                 entrypoint: list[str] | None = None, user: str = "", exposed_ports: list[str] | None = None,
                 stop_signal: str = "") -> dict[str, Any]:
    cfg: dict[str, Any] = {"Env": env, "Cmd": cmd, "WorkingDir": working_dir, "Labels": labels}
    if entrypoint:
        cfg["Entrypoint"] = entrypoint
    if user:
        cfg["User"] = user
    if exposed_ports:
        cfg["ExposedPorts"] = {p: {} for p in exposed_ports}  # OCI image spec: "80/tcp": {}
    if stop_signal:
        cfg["StopSignal"] = stop_signal
    return {"created": created, "architecture": goarch(), "os": "linux", "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history}


def write_image(layout: Layout, tags: list[str], config: dict[str, Any], layers: list[dict[str, Any]],
                annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """Add config + manifest for layers already in the layout's blobs and tag it; returns the manifest descriptor."""
    config_bytes = canonical_json(config)
    layout.add_bytes(config_bytes)
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                "config": descriptor(OCI_CONFIG, config_bytes), "layers": layers}
    if annotations:
        manifest["annotations"] = annotations
    manifest_bytes = canonical_json(manifest)
    layout.add_bytes(manifest_bytes)
    desc = descriptor(OCI_MANIFEST, manifest_bytes)
    for t in tags:
        layout.tag(desc, t)
    return desc
