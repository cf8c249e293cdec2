"""Image references as containerd reads them: ``python:3.13-slim`` is ``docker.io/library/python:3.13-slim``.

The grammar and the normalization are those of the distribution ``reference`` package (``ParseNormalizedNamed``):
a first component with a ``.`` or ``:`` or equal to ``localhost`` is a registry host, else the image is on Docker
Hub (``docker.io``), where a one-component name is in ``library/``. No tag and no digest means ``:latest``.

The lab serves every image from its own registry under the familiar path (see `Reference.repository`): a
Docker Hub image ``docker.io/library/python`` is the registry's repository ``library/python`` — as a containerd
mirror for ``docker.io`` would ask for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import LabError

DOCKER_HUB = "docker.io"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_PATH = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[0-9a-f]{64}"
_REF = re.compile(rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")


class InvalidImageName(LabError, ValueError):
    """A reference that does not parse; the message is the kubelet's (its waiting reason is ``InvalidImageName``)."""

    def __init__(self, ref: str, why: str = "invalid reference format") -> None:
        self.ref = ref
        super().__init__(f'Failed to apply default image tag "{ref}": couldn\'t parse image name "{ref}": {why}')


@dataclass(frozen=True)
class Reference:
    """A normalized reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``docker.io/library/python``"""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        """The fully qualified reference, as containerd names images (``docker.io/library/python:3.13-slim``)."""
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def familiar(self) -> str:
        """As people write it: ``python:3.13-slim``, ``kperflab/size:10m``, ``registry.k8s.io/pause:3.10``.

        >>> parse("docker.io/library/busybox").familiar
        'busybox:latest'
        """
        name = self.path.removeprefix("library/") if self.domain == DOCKER_HUB else self.name
        s = name + (f":{self.tag}" if self.tag else "")
        return s + (f"@{self.digest}" if self.digest else "")

    @property
    def reference(self) -> str:
        """What the registry is asked for: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def tagged(self) -> str | None:
        """``docker.io/library/python:3.13-slim`` (a repo tag), or None for a digest-only reference."""
        return f"{self.name}:{self.tag}" if self.tag else None

    def with_digest(self, digest: str) -> str:
        """``docker.io/library/python@sha256:…`` (a repo digest)."""
        return f"{self.name}@{digest}"

    def repository(self, registry_host: str = "") -> str:
        """The repository in the lab's registry that serves this image: the path for Docker Hub and for the lab's
        registry itself (``registry_host``, e.g. ``127.0.0.1:5000``), else ``<domain>/<path>`` (a port's ``:``
        becomes ``-``, which a repository name cannot hold).

        >>> parse("python:3.13-slim").repository()
        'library/python'
        >>> parse("registry.k8s.io/pause:3.10").repository()
        'registry.k8s.io/pause'
        >>> parse("127.0.0.1:5000/size/test:1").repository("127.0.0.1:5000")
        'size/test'
        """
        if self.domain == DOCKER_HUB or (registry_host and _same_host(self.domain, registry_host)):
            return self.path
        return f"{self.domain.replace(':', '-').lower()}/{self.path}"


def _same_host(a: str, b: str) -> bool:
    def norm(h: str) -> str:
        host, _, port = h.partition(":")
        return f"{'127.0.0.1' if host == 'localhost' else host}:{port}"
    return norm(a) == norm(b)


def parse(ref: str) -> Reference:
    """Parse and normalize a reference; no tag and no digest means ``latest``.

    >>> str(parse("python:3.13-slim"))
    'docker.io/library/python:3.13-slim'
    >>> str(parse("busybox"))
    'docker.io/library/busybox:latest'
    >>> parse("docker.io/library/python:3.13-slim") == parse("python:3.13-slim") == parse("index.docker.io/python:3.13-slim")
    True
    >>> r = parse("busybox@sha256:" + "a" * 64); (r.tag, r.reference == r.digest)
    (None, True)
    >>> str(parse("localhost:5000/Team"))
    Traceback (most recent call last):
    ...
    kperflab.lab.images.reference.InvalidImageName: Failed to apply default image tag "localhost:5000/Team": couldn't parse image name "localhost:5000/Team": invalid reference format: repository name must be lowercase
    """
    text = ref.strip()
    first, slash, rest = text.partition("/")
    if slash and (any(c in first for c in ".:") or first == "localhost" or first.lower() != first):
        domain, remainder = first, rest
    else:
        domain, remainder = DOCKER_HUB, text
    m = _REF.match(f"{domain}/{remainder}") if remainder else None
    if not m:
        lower = re.sub(r"[A-Z]", lambda c: c.group().lower(), remainder.split(":")[0].split("@")[0])
        if remainder and lower != remainder.split(":")[0].split("@")[0] and _REF.match(f"{domain}/{lower}"):
            raise InvalidImageName(ref, "invalid reference format: repository name must be lowercase")
        raise InvalidImageName(ref)
    if domain == "index.docker.io":
        domain = DOCKER_HUB
    path = m.group("path")
    if domain == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    tag, digest = m.group("tag"), m.group("digest")
    if not tag and not digest:
        tag = "latest"
    return Reference(domain, path, tag, digest)
