"""What ``kperflab lab images`` shows and does: the images a registry or a node store holds (name, digest, size),
and a test image of a chosen size and layer count built into a running registry.

Example::

    for row in list_registry(registry.url):
        print(row.name, row.digest, row.size)
    added = add_test_image(registry.url, "size-test:100m", 100_000_000, layers=4)
    print(format_rows([added.row]), added.build_seconds, added.push_seconds)
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import _oci
from .build import BaseImages, BuiltImage, make_test_image
from .pull import FetchError, RegistryClient
from .reference import parse
from .registry import http_request, push, repositories
from .store import ImageStore


@dataclass(frozen=True)
class ImageRow:
    name: str  # familiar: python:3.13-slim
    digest: str  # the manifest digest the tag points to
    size: int  # manifest + config + compressed layers: the size a kubelet reports after pulling it
    layers: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AddedImage:
    row: ImageRow
    image: BuiltImage
    build_seconds: float
    push_seconds: float


def familiar(repository: str, tag: str) -> str:
    """The name people write for a registry repository and tag.

    >>> familiar("library/python", "3.13-slim"), familiar("registry.k8s.io/pause", "3.10")
    ('python:3.13-slim', 'registry.k8s.io/pause:3.10')
    """
    return parse(f"{repository}:{tag}").familiar


def list_registry(registry_url: str) -> list[ImageRow]:
    """Every tag in the registry, sorted by name."""
    client = RegistryClient(registry_url)
    rows = []
    for repo in repositories(registry_url):
        status, _, body = http_request(registry_url, "GET", f"/v2/{repo}/tags/list")
        tags = (json.loads(body).get("tags") or []) if status == 200 else []
        for tag in tags:
            try:
                top = client.manifest(repo, tag)
                man = client.platform_manifest(top).json
            except FetchError:
                continue  # deleted between the listing and now
            size = len(top.data) + man["config"]["size"] + sum(x["size"] for x in man.get("layers", []))
            rows.append(ImageRow(familiar(repo, tag), top.digest, size, len(man.get("layers", []))))
    return sorted(rows, key=lambda r: r.name)


def list_store(store: ImageStore) -> list[ImageRow]:
    """Every name of every image in a node store (tags; an untagged image by its repo digest)."""
    rows = []
    for img in store.list():
        digest = img.repo_digest.rsplit("@", 1)[-1]
        for name in img.repo_tags or img.repo_digests[:1]:
            rows.append(ImageRow(parse(name).familiar, digest, img.size, len(img.layers)))
    return sorted(rows, key=lambda r: r.name)


def add_test_image(registry_url: str, name: str, size_bytes: int, layers: int, *, compressible: bool = False,
                   base: BaseImages | None = None, work_dir: Path | None = None, seed: int | None = None) -> AddedImage:
    """Build a test image (`build.make_test_image`) and push it into the registry as ``name``; the busybox layer
    is mounted from ``library/busybox`` when the registry has it, not uploaded again."""
    tmp = Path(tempfile.mkdtemp(prefix="kperflab-test-image-", dir=work_dir))
    try:
        t0 = time.monotonic()
        img = make_test_image(name, size_bytes, layers, compressible, out=tmp / "oci", base=base, seed=seed)
        t1 = time.monotonic()
        ref = parse(name)
        pushed = push(registry_url, img.layout, name, ref.tag or "latest", mount_from=["library/busybox"])
        t2 = time.monotonic()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row = ImageRow(ref.familiar, pushed.digest, img.size, img.layers)
    return AddedImage(row, img, t1 - t0, t2 - t1)


def human(n: float) -> str:
    """Bytes as ``kubectl``-ish humans read them (decimal units, as registries and the kubelet's events count).

    >>> human(56_325_514), human(999), human(1_072_902)
    ('56.3 MB', '999 B', '1.1 MB')
    """
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_rows(rows: list[ImageRow]) -> str:
    """A table like ``crictl images``: NAME, DIGEST (short), SIZE, LAYERS.

    >>> print(format_rows([ImageRow("busybox:latest", "sha256:" + "b" * 64, 1_072_902, 1)]))
    NAME            DIGEST        SIZE    LAYERS
    busybox:latest  bbbbbbbbbbbb  1.1 MB  1
    """
    table = [("NAME", "DIGEST", "SIZE", "LAYERS")] + [
        (r.name, _oci.hex_of(r.digest)[:12], human(r.size), str(r.layers)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)


# -- the storage lesson's images, as the cluster publishes them --------------------------------------

TEST_IMAGES_NAMESPACE, TEST_IMAGES_NAME = "kube-public", "kperflab-test-images"


def test_images_configmap(refs: dict[str, str], slow_host: str | None = None, bandwidth: str | None = None,
                          sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """The ConfigMap ``kube-public/kperflab-test-images``: ``data`` maps a label (``10MB``, ``100MB-20layers``) to an
    image reference the cluster can pull; ``slow-registry`` names the registry host that serves the same images over
    a bandwidth-limited link (``<slow-registry>/<reference>``: ``slow-registry.kperflab.internal/kperflab/size-test:
    100mb``) and ``slow-registry-bandwidth`` its rate (tc's notation, ``100mbit``). An instructor may create one on a
    real cluster with references of their own registry.

    >>> cm = test_images_configmap({"10MB": "kperflab/size-test:10mb"}, "slow.example", "100mbit")
    >>> cm["data"]
    {'10MB': 'kperflab/size-test:10mb', 'slow-registry': 'slow.example', 'slow-registry-bandwidth': '100mbit'}
    """
    data = dict(refs)
    if slow_host:
        data["slow-registry"] = slow_host
        if bandwidth:
            data["slow-registry-bandwidth"] = bandwidth
    meta: dict[str, Any] = {"name": TEST_IMAGES_NAME, "namespace": TEST_IMAGES_NAMESPACE,
                            "labels": {"app.kubernetes.io/managed-by": "kperflab-lab"}}
    if sizes:
        meta["annotations"] = {"kperflab.dev/sizes": json.dumps(sizes, sort_keys=True)}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def slow_reference(ref: str, slow_host: str) -> str:
    """The same image through the slow registry host.

    >>> slow_reference("kperflab/size-test:100mb", "slow-registry.kperflab.internal")
    'slow-registry.kperflab.internal/kperflab/size-test:100mb'
    >>> slow_reference("busybox:1.37", "slow.example")
    'slow.example/library/busybox:1.37'
    """
    r = parse(ref)
    return f"{slow_host}/{r.path}" + (f":{r.tag}" if r.tag else "") + (f"@{r.digest}" if r.digest else "")
