"""The lab's container images: built from Debian packages, served by a local registry, pulled into a node store.

| module | what it does |
|---|---|
| `build` | ``python:3.13-slim`` (+ NumPy, said in its labels; also tagged ``3.13`` and ``latest``), ``nginx:1.26`` (Debian's nginx run as Docker Hub's image runs it) and ``busybox:1.37`` built with mmdebstrap into OCI layouts, cached once per machine (``/var/cache/kperflab/images``); `make_test_image` for the storage lesson; `ensure_test_images`: the storage lesson's 10/100/500 MB (1 layer) and 100 MB (20 layers) images, cached the same way |
| `registry` | `Registry`: Debian's ``docker-registry`` on 127.0.0.1 per lab; `Registry.seed` (storage filled from the cache by hard links: milliseconds), `push` over HTTP, `push_with_skopeo` |
| `pull` | `RegistryClient`: manifests with all four Accept types, platform choice, digest- and size-checked blobs; `PullError` with containerd's wording |
| `store` | `ImageStore`: content-addressed blobs, layers unpacked once in overlay lower-dir form, image records; atomic publish; `hosts` maps registry hosts to endpoints (containerd's hosts config); `fs_stats` for imageFs |
| `catalog` | ``kperflab lab images``: list a registry or a store, add a test image to a running registry |
| `slowlink` | `SlowRegistry`: the same images under ``slow-registry.kperflab.internal``, a second registry behind a veth shaped by tc ``tbf`` (``--registry-bandwidth``) |
| `reference` | ``python`` → ``docker.io/library/python:latest``; the registry repository that serves it |

How a lab uses it::

    base = ensure_base_images()                              # built once per machine, then cached
    registry = Registry(run_dir / "registry", env={"KPERFLAB_LAB": lab_id}).start()
    registry.seed_base_images(base)                          # hard links: ~10 ms
    store = ImageStore(run_dir / "images", registry_url=registry.url)
    image = store.get(ref) or store.pull(ref).image          # what the kubelet does for IfNotPresent
    # mount -t overlay overlay -o <image.overlay_options(upper, work)> rootfs
"""

from .build import (
    TEST_IMAGES,
    BaseImages,
    BuiltImage,
    ImageBuildError,
    TestImages,
    cache_dir,
    cached_base_images,
    cached_prometheus_image,
    cached_test_images,
    ensure_base_images,
    ensure_prometheus_image,
    ensure_test_images,
    make_test_image,
)
from .catalog import (
    AddedImage,
    ImageRow,
    add_test_image,
    format_rows,
    list_registry,
    list_store,
    slow_reference,
    test_images_configmap,
)
from .pull import Endpoint, PullError, RegistryClient
from .reference import InvalidImageName, Reference, parse
from .registry import PushResult, Registry, RegistryError, SeedResult, push, push_with_skopeo
from .store import Image, ImageStore, PullResult

__all__ = [
    "TEST_IMAGES", "Endpoint", "TestImages", "cached_test_images", "ensure_test_images", "slow_reference",
    "test_images_configmap",
    "AddedImage", "BaseImages", "BuiltImage", "Image", "ImageBuildError", "ImageRow", "ImageStore", "InvalidImageName",
    "PullError", "PullResult", "PushResult", "Reference", "Registry", "RegistryClient", "RegistryError", "SeedResult",
    "add_test_image", "cache_dir", "cached_base_images", "ensure_base_images", "format_rows", "list_registry",
    "list_store", "make_test_image", "parse", "push", "push_with_skopeo", "cached_prometheus_image",
    "ensure_prometheus_image",
]
