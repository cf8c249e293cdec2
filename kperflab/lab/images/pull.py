"""The pull client: resolve a reference against a registry and fetch verified content, as containerd does.

Python's ``http.client`` (no dependency). Manifests are asked for with all four Accept types (OCI index and
manifest, Docker manifest list and manifest; without the OCI types registry 2.8 answers OCI manifests with 404);
an index gives the manifest for ``linux/<this machine's architecture>``. Every manifest and blob is checked against
its digest (sha256 of the exact bytes) and size as it arrives; the uncompressed layers are checked against
``config.rootfs.diff_ids`` by the store when it unpacks them.

Errors are `PullError`, whose message reads like containerd's, as the kubelet shows it in a ``Failed`` event after
``Failed to pull image "<image>": `` — e.g. ``failed to pull and unpack image "docker.io/library/python:3.14":
failed to resolve reference "docker.io/library/python:3.14": docker.io/library/python:3.14: not found``.
``code`` is the gRPC code containerd would give (``NotFound``, ``Unavailable``, ``FailedPrecondition``,
``Unknown``).

Example::

    client = RegistryClient("http://127.0.0.1:5000")
    top = client.resolve(parse("busybox"))            # the manifest (or index) the tag points to, verified
    man = client.platform_manifest(top)                # the linux/<arch> manifest
    client.fetch_blob(top.repository, man.json["config"], Path("/tmp/config"))
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import LabError
from . import _oci
from .reference import Reference

ACCEPT = ", ".join(_oci.MANIFEST_TYPES)
MAX_MANIFEST = 4 << 20  # containerd's limit for a manifest or index
MAX_REDIRECTS = 5


class PullError(LabError):
    """A pull that failed; ``str()`` is containerd's message, ``code`` its gRPC code, ``digest`` the blob at fault."""

    def __init__(self, image: str, detail: str, *, code: str = "Unknown", digest: str | None = None) -> None:
        self.image = image
        self.detail = detail
        self.code = code
        self.digest = digest
        # no hint appended: the kubelet shows this message as it is, after 'Failed to pull image "…": '
        super().__init__(f'failed to pull and unpack image "{image}": {detail}')


class FetchError(Exception):
    """What `RegistryClient` raises: the detail of a `PullError` and its code; the caller, who knows the image
    being pulled, wraps it (``PullError(image, e.detail, code=e.code, digest=e.digest)``)."""

    def __init__(self, detail: str, code: str = "Unknown", digest: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.code, self.digest = detail, code, digest


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as fetched: the exact bytes, their digest (verified), media type and parsed JSON."""

    repository: str
    digest: str
    media_type: str
    data: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.data)

    @property
    def is_index(self) -> bool:
        return self.media_type in _oci.INDEX_TYPES


Dial = Callable[[str, int, float], socket.socket]


class _DialedConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket a `Dial` opens (a registry reached inside the lab's node namespace)."""

    def __init__(self, dial: Dial, host: str, port: int | None, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._dial = dial

    def connect(self) -> None:
        self.sock = self._dial(self.host, self.port, self.timeout)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Endpoint:
    """Where the images of one registry host are pulled from, as containerd's ``hosts.toml`` maps a host to a mirror:
    ``url`` (``http://10.244.255.254:5000``) and, when the endpoint is only reachable from inside a network namespace,
    ``dial``. The host's repositories are the endpoint's as they are (``host/kperflab/x`` → ``kperflab/x``)."""

    url: str
    dial: Dial | None = None


_REASONS = {401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found", 500: "500 Internal Server Error",
            502: "502 Bad Gateway", 503: "503 Service Unavailable"}


class RegistryClient:
    """Talks to one registry (``http://127.0.0.1:PORT``, or https); one connection per call, so threads may share it."""

    def __init__(self, url: str, *, timeout: float = 60.0, dial: Dial | None = None) -> None:
        u = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        self.dial = dial  # how to open a TCP connection (host, port, timeout), e.g. from inside a network namespace
        self.scheme = u.scheme
        self.host = u.netloc  # 127.0.0.1:5000
        self.url = f"{u.scheme}://{u.netloc}"
        self.timeout = timeout
        self.requests = 0
        self.bytes = 0  # body bytes received, manifests and blobs
        self._count = threading.Lock()  # layers are fetched on several threads

    def _counted(self, requests: int = 0, nbytes: int = 0) -> None:
        with self._count:
            self.requests += requests
            self.bytes += nbytes

    def _open(self, method: str, url: str, headers: dict[str, str]) -> tuple[http.client.HTTPConnection,
                                                                             http.client.HTTPResponse]:
        for _ in range(MAX_REDIRECTS + 1):
            u = urllib.parse.urlsplit(url)
            if self.dial is not None and u.scheme == "http":
                conn: http.client.HTTPConnection = _DialedConnection(self.dial, u.hostname or "127.0.0.1", u.port,
                                                                     timeout=self.timeout)
            else:
                cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
                conn = cls(u.hostname or "127.0.0.1", u.port, timeout=self.timeout)
            path = u.path + (f"?{u.query}" if u.query else "")
            try:
                conn.request(method, path, headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise FetchError(f'failed to do request: {method.title()} "{url}": {_dial_error(exc, u)}',
                                 "Unavailable") from None
            self._counted(requests=1)
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                url = urllib.parse.urljoin(url, resp.getheader("Location"))
                resp.read()
                conn.close()
                continue
            return conn, resp
        raise FetchError(f'failed to do request: {method.title()} "{url}": stopped after {MAX_REDIRECTS} redirects')

    def resolve(self, ref: Reference, repository: str | None = None) -> Manifest:
        """GET the manifest (or index) a reference names, verified against its digest (the reference's, else the
        registry's ``Docker-Content-Digest``, else none to compare with: its own sha256 names it)."""
        repo = repository or ref.repository(self.host)
        try:
            return self.manifest(repo, ref.reference, ref.digest)
        except FetchError as d:
            if d.code == "NotFound":
                raise FetchError(f'failed to resolve reference "{ref}": {ref}: not found', "NotFound") from None
            raise FetchError(f'failed to resolve reference "{ref}": {d.detail}', d.code) from None

    def manifest(self, repo: str, reference: str, expected: str | None = None) -> Manifest:
        """GET ``/v2/<repo>/manifests/<reference>`` with every Accept type; verified against ``expected`` and the
        registry's ``Docker-Content-Digest``."""
        url = f"{self.url}/v2/{repo}/manifests/{reference}"
        conn, resp = self._open("GET", url, {"Accept": ACCEPT})
        try:
            if resp.status == 404:
                raise FetchError(f"{url}: not found", "NotFound")
            if resp.status != 200:
                raise FetchError(f"unexpected status from GET request to {url}: "
                                 f"{_REASONS.get(resp.status, str(resp.status))}", _code(resp.status))
            data = resp.read(MAX_MANIFEST + 1)
        finally:
            conn.close()
        self._counted(nbytes=len(data))
        if len(data) > MAX_MANIFEST:
            raise FetchError(f"manifest {reference} is larger than {MAX_MANIFEST} bytes", "FailedPrecondition")
        media_type = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        try:
            doc = json.loads(data)
        except ValueError:
            raise FetchError(f"manifest {reference} is not JSON", "FailedPrecondition") from None
        media_type = doc.get("mediaType") or media_type
        if media_type not in _oci.MANIFEST_TYPES:
            raise FetchError(f"unsupported manifest media type {media_type or '(none)'} for {repo}:{reference}",
                             "FailedPrecondition")
        digest = _oci.sha256_bytes(data)
        header = resp.getheader("Docker-Content-Digest")
        for want in (expected, header if header and header.startswith("sha256:") else None):
            if want and want != digest:
                raise FetchError(f"failed to copy: unexpected commit digest {digest}, expected {want}: failed precondition",
                                 "FailedPrecondition", want)
        return Manifest(repo, digest, media_type, data)

    def platform_manifest(self, top: Manifest, os_name: str = "linux", arch: str | None = None) -> Manifest:
        """The manifest itself, or the index's entry for ``os_name``/``arch`` (this machine's by default), fetched
        by digest and verified."""
        if not top.is_index:
            return top
        arch = arch or _oci.goarch()
        for m in top.json.get("manifests") or []:
            p = m.get("platform") or {}
            if p.get("os") == os_name and p.get("architecture") == arch:
                return self.manifest(top.repository, m["digest"], m["digest"])
        raise FetchError("no match for platform in manifest: not found", "NotFound")

    def fetch_blob(self, repository: str, desc: dict[str, Any], dest: Path, what: str = "blob") -> int:
        """Stream a blob into ``dest``, checking size and sha256 on the way; returns the bytes received.
        On a mismatch ``dest`` is removed and the error names the blob (``what``: ``layer``, ``config``)."""
        digest, size = desc["digest"], int(desc["size"])
        _oci.hex_of(digest)
        url = f"{self.url}/v2/{repository}/blobs/{digest}"
        conn, resp = self._open("GET", url, {})
        got = 0
        try:
            if resp.status == 404:
                raise FetchError(f"failed to copy {what} {digest}: httpReadSeeker: failed open: content at {url} not found: "
                                 "not found", "NotFound", digest)
            if resp.status != 200:
                raise FetchError(f"failed to copy {what} {digest}: unexpected status from GET request to {url}: "
                                 f"{_REASONS.get(resp.status, str(resp.status))}", _code(resp.status), digest)
            sha = hashlib.sha256()
            with open(dest, "wb") as out:
                while True:
                    try:
                        chunk = resp.read(min(_oci.CHUNK, size + 1 - got))
                    except (OSError, http.client.HTTPException) as exc:
                        raise FetchError(f"failed to copy {what} {digest}: {exc}", "Unavailable", digest) from None
                    if not chunk:
                        break
                    got += len(chunk)
                    sha.update(chunk)
                    out.write(chunk)
                    if got > size:
                        break
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        finally:
            conn.close()
            self._counted(nbytes=got)
        if got != size:
            dest.unlink(missing_ok=True)
            raise FetchError(f"failed to copy {what} {digest}: failed size validation: {got} != {size}: failed precondition",
                             "FailedPrecondition", digest)
        actual = "sha256:" + sha.hexdigest()
        if actual != digest:
            dest.unlink(missing_ok=True)
            raise FetchError(f"failed to copy {what} {digest}: unexpected commit digest {actual}, expected {digest}: "
                             "failed precondition", "FailedPrecondition", digest)
        return got


def _code(status: int) -> str:
    return {401: "Unauthenticated", 403: "PermissionDenied", 404: "NotFound"}.get(status, "Unknown" if status < 500
                                                                                   else "Unavailable")


def _dial_error(exc: BaseException, u: urllib.parse.SplitResult) -> str:
    """Go's wording for the usual network errors (``dial tcp 127.0.0.1:5000: connect: connection refused``)."""
    addr = f"{u.hostname}:{u.port or (443 if u.scheme == 'https' else 80)}"
    if isinstance(exc, ConnectionRefusedError):
        return f"dial tcp {addr}: connect: connection refused"
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"dial tcp {addr}: i/o timeout"
    if isinstance(exc, socket.gaierror):
        return f"dial tcp: lookup {u.hostname}: no such host"
    return f"{type(exc).__name__}: {exc or os.strerror(getattr(exc, 'errno', 0) or 0)}"
