"""A local OCI registry per lab: Debian's ``docker-registry`` (CNCF distribution 2.8) on 127.0.0.1, and two ways to
fill it.

``Registry(directory, env=…)`` writes its own config (no ``auth``: Debian's default config points
``auth.htpasswd.path`` at a directory, which refuses everyone), keeps its storage in ``directory/storage`` and its
log in ``directory/registry.log``, listens on 127.0.0.1 on a free port (never on every address), allows deletes,
and starts the process with the caller's extra environment (the lab passes ``KPERFLAB_LAB=<id>`` so a crash
recovery finds the process by it).

Filling it:

- `Registry.seed` writes an OCI layout's images straight into the registry's storage layout (``docker/registry/
  v2/blobs/sha256/<xx>/<hex>/data`` and the repository's ``_layers``, ``_manifests/revisions`` and
  ``_manifests/tags`` link files), hard-linking the blobs from the shared cache (a copy when the cache is on
  another filesystem). This is how a lab starts with the base images: milliseconds, whether the registry runs or
  not. The cache's blobs are read-only (0444); the registry never writes a blob in place (uploads are renamed over
  the path), so a hard link is never written through.
- `push` (and `Registry.push`) uploads over the registry HTTP API as any client does (HEAD, POST, PUT with
  ``&digest=``, then the manifest), skipping blobs the repository has and mounting those another repository has.
  `push_with_skopeo` does the same with skopeo (``oci:DIR:TAG`` → ``docker://127.0.0.1:PORT/NAME:TAG``), slower
  by its start-up and its re-reading of every blob to compute digests; kept for comparison.

Example::

    reg = Registry(run_dir / "registry", env={"KPERFLAB_LAB": lab_id}).start()
    reg.seed_base_images(ensure_base_images())
    …
    reg.stop()
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import LabError
from . import _oci
from .build import BaseImages
from .reference import parse

READY_TIMEOUT = 15.0


class RegistryError(LabError):
    """The registry could not start, or refused a push."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SeedResult:
    images: int
    blobs: int
    bytes: int
    linked: bool  # hard links (else copies)
    seconds: float


@dataclass(frozen=True)
class PushResult:
    reference: str  # "127.0.0.1:PORT/library/python:3.13-slim"
    digest: str  # the manifest's
    blobs_sent: int
    blobs_skipped: int  # present already (or mounted from another repository)
    bytes: int  # blob bytes uploaded
    seconds: float


class Registry:
    """One ``docker-registry serve`` process on 127.0.0.1, its config, storage and log in ``directory``."""

    def __init__(self, directory: Path, *, env: Mapping[str, str] | None = None, port: int | None = None,
                 log_level: str = "warn") -> None:
        self.directory = Path(directory)
        self.storage = self.directory / "storage"
        self.config_path = self.directory / "config.yml"
        self.log_path = self.directory / "registry.log"
        self.env = dict(env or {})
        self.port = port or 0
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    # -- the process ----------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``"""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``"""
        return f"http://{self.host}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _write_config(self) -> None:
        # JSON is YAML: no dependency on a YAML writer, and no auth section at all
        config = {
            "version": 0.1,
            "log": {"level": self.log_level, "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}, "redirect": {"disable": True}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16),
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        self.config_path.write_text(json.dumps(config, indent=1))

    def start(self, timeout: float = READY_TIMEOUT) -> Registry:
        """Start the registry and wait until ``GET /v2/`` answers 200; returns self."""
        if self.proc is not None:
            return self
        exe = shutil.which("docker-registry")
        if not exe:
            raise RegistryError("docker-registry is not installed; the lab serves its images with it.",
                                hint="Install it: apt-get install docker-registry (or run scripts/system-deps.sh).")
        self.storage.mkdir(parents=True, exist_ok=True)
        fixed = bool(self.port)
        for attempt in range(3):
            if not fixed:
                self.port = free_port()
            self._write_config()
            with open(self.log_path, "ab") as logf:
                self.proc = subprocess.Popen([exe, "serve", str(self.config_path)], stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                                             start_new_session=True)
            try:
                self._wait_ready(timeout)
                return self
            except RegistryError:
                log = self.log_path.read_text(errors="replace")
                self.stop()
                if fixed or "address already in use" not in log or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        wait_ready(self.proc, lambda: http.client.HTTPConnection("127.0.0.1", self.port, timeout=1),
                   f"The lab's registry (docker-registry on {self.host})", self.log_path, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the process is reaped."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # -- filling it -----------------------------------------------------------------------------------

    def seed(self, layout_dir: Path, repository: str, tags: list[str] | None = None, *, link: bool = True) -> SeedResult:
        """Write the images of an OCI layout (``tags``, default all) into the storage as repository ``repository``
        (``library/python``), hard-linking blobs (``link=False``: copies). Works with the registry stopped or running."""
        started = time.monotonic()
        layout = _oci.Layout(layout_dir)
        v2 = self.storage / "docker" / "registry" / "v2"
        repo = v2 / "repositories" / repository
        blobs = nbytes = 0
        linked = link
        tags = tags if tags is not None else layout.tags()
        for tag in tags:
            for desc, role in layout.walk(tag):
                hexd = _oci.hex_of(desc["digest"])
                data = v2 / "blobs" / "sha256" / hexd[:2] / hexd / "data"
                if not data.exists():
                    data.parent.mkdir(parents=True, exist_ok=True)
                    if link:
                        linked = _oci.link_or_copy(layout.blob_path(desc["digest"]), data) and linked
                    else:
                        shutil.copyfile(layout.blob_path(desc["digest"]), data)
                    blobs += 1
                    nbytes += desc["size"]
                if role in ("layer", "config"):
                    _link_file(repo / "_layers" / "sha256" / hexd / "link", desc["digest"])
                else:
                    _link_file(repo / "_manifests" / "revisions" / "sha256" / hexd / "link", desc["digest"])
            top = layout.manifest_descriptor(tag)
            tag_dir = repo / "_manifests" / "tags" / tag
            _link_file(tag_dir / "index" / "sha256" / _oci.hex_of(top["digest"]) / "link", top["digest"])
            _link_file(tag_dir / "current" / "link", top["digest"])
        return SeedResult(len(tags), blobs, nbytes, linked, time.monotonic() - started)

    def seed_base_images(self, base: BaseImages, *, link: bool = True) -> SeedResult:
        """Seed every image of a `build.BaseImages` under its familiar repository (``library/python`` …)."""
        started = time.monotonic()
        results = [self.seed(img.layout, img.repository, list(img.tags), link=link) for img in base.images]
        return SeedResult(sum(r.images for r in results), sum(r.blobs for r in results), sum(r.bytes for r in results),
                          all(r.linked for r in results), time.monotonic() - started)

    def push(self, layout_dir: Path, name: str, tag: str, *, source_tag: str | None = None,
             mount_from: list[str] | None = None) -> PushResult:
        """Push the layout's image ``source_tag`` (default ``tag``) as ``name:tag`` over the HTTP API."""
        return push(self.url, layout_dir, name, tag, source_tag=source_tag, mount_from=mount_from)

    def catalog(self) -> list[str]:
        """The repositories the registry holds (``GET /v2/_catalog``, every page)."""
        return repositories(self.url)


def wait_ready(proc: subprocess.Popen[bytes], connect: Callable[[], http.client.HTTPConnection], what: str,
               log_path: Path, timeout: float, every: float = 0.02) -> None:
    """Until a docker-registry answers ``GET /v2/`` with 200 over ``connect()``; a RegistryError naming ``what`` and
    the log's last lines when it exits or does not answer within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = " ".join(log_path.read_text(errors="replace").strip().splitlines()[-2:])
            raise RegistryError(f"{what} exited with status {proc.returncode}: {tail}", hint=f"See {log_path}.")
        try:
            conn = connect()
            try:
                conn.request("GET", "/v2/")
                if conn.getresponse().status == 200:
                    return
            finally:
                conn.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RegistryError(f"{what} did not answer GET /v2/ within {timeout:g} s.", hint=f"See {log_path}.")
        time.sleep(every)


def _link_file(path: Path, digest: str) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".link.{os.getpid()}")
    tmp.write_text(digest)
    os.replace(tmp, path)


def repositories(registry_url: str) -> list[str]:
    """Every repository of a registry: ``GET /v2/_catalog``, following its ``Link`` pages (2.8 serves 1000 at most)."""
    repos: list[str] = []
    path = "/v2/_catalog?n=1000"
    while path:
        status, headers, body = http_request(registry_url, "GET", path)
        if status != 200:
            break
        repos += json.loads(body).get("repositories") or []
        link = headers.get("Link") or ""  # </v2/_catalog?last=x&n=1000>; rel="next"
        path = link.split(";")[0].strip("<> ") if 'rel="next"' in link else ""
        if path.startswith("http"):
            u = urllib.parse.urlsplit(path)
            path = f"{u.path}?{u.query}"
    return repos


# -- pushing over HTTP ------------------------------------------------------------------------------

def http_request(base_url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                 conn: http.client.HTTPConnection | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request to a registry (on ``conn`` when given, else a connection of its own): status, headers, body."""
    u = urllib.parse.urlsplit(base_url)
    own = conn is None
    if conn is None:
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname or "127.0.0.1", u.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data
    finally:
        if own:
            conn.close()


def push(registry_url: str, layout_dir: Path, name: str, tag: str, *, source_tag: str | None = None,
         mount_from: list[str] | None = None) -> PushResult:
    """Push one image of an OCI layout to ``registry_url`` as ``name:tag`` (``name`` familiar or a repository path:
    ``python`` goes to ``library/python``). Blobs the repository has are skipped, blobs one of ``mount_from``
    has are mounted (no upload); the manifest goes last, as the registry requires."""
    started = time.monotonic()
    u = urllib.parse.urlsplit(registry_url)
    host = u.netloc
    repo = parse(name).repository(host)
    layout = _oci.Layout(layout_dir)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = cls(u.hostname or "127.0.0.1", u.port, timeout=120, blocksize=_oci.CHUNK)
    sent = skipped = nbytes = 0
    try:
        top = layout.manifest_descriptor(source_tag or tag)
        for desc, role in layout.walk(source_tag or tag):
            if role in ("manifest", "index"):
                continue
            path = layout.blob_path(desc["digest"])
            status, _, _ = http_request(registry_url, "HEAD", f"/v2/{repo}/blobs/{desc['digest']}", conn=conn)
            if status == 200:
                skipped += 1
                continue
            mounted = False
            for other in mount_from or []:  # asked only where it is: a refused mount opens an upload instead
                if http_request(registry_url, "HEAD", f"/v2/{other}/blobs/{desc['digest']}", conn=conn)[0] != 200:
                    continue
                q = urllib.parse.urlencode({"mount": desc["digest"], "from": other})
                status, _, _ = http_request(registry_url, "POST", f"/v2/{repo}/blobs/uploads/?{q}", conn=conn)
                if status == 201:
                    mounted = True
                    break
            if mounted:
                skipped += 1
                continue
            status, headers, body = http_request(registry_url, "POST", f"/v2/{repo}/blobs/uploads/", conn=conn)
            if status != 202:
                raise RegistryError(f"The registry refused an upload to {repo}: HTTP {status} {body[:200]!r}.",
                                    hint=f"Check the registry at {registry_url}.")
            loc = urllib.parse.urlsplit(headers["Location"])
            # 2.8's Location already has ?_state=…: the digest is appended with & (not a second ?)
            query = (loc.query + "&" if loc.query else "") + "digest=" + urllib.parse.quote(desc["digest"])
            target = f"{loc.path}?{query}"
            with open(path, "rb") as f:
                status, _, body = http_request(registry_url, "PUT", target, body=f, conn=conn,
                                               headers={"Content-Type": "application/octet-stream",
                                                        "Content-Length": str(desc["size"])})
            if status != 201:
                raise RegistryError(f"The registry refused blob {desc['digest']} for {repo}: HTTP {status} "
                                    f"{body[:200]!r}.", hint=f"Check the registry at {registry_url}.")
            sent += 1
            nbytes += desc["size"]
        for desc, role in layout.walk(source_tag or tag):
            if role not in ("manifest", "index"):
                continue
            ref = tag if desc["digest"] == top["digest"] else desc["digest"]
            data = layout.blob_path(desc["digest"]).read_bytes()
            status, headers, body = http_request(registry_url, "PUT", f"/v2/{repo}/manifests/{ref}", body=data,
                                                 conn=conn, headers={"Content-Type": desc["mediaType"]})
            if status != 201:
                raise RegistryError(f"The registry refused the manifest {desc['digest']} for {repo}:{tag}: HTTP "
                                    f"{status} {body[:300]!r}.", hint=f"Check the registry at {registry_url}.")
    finally:
        conn.close()
    return PushResult(f"{host}/{repo}:{tag}", top["digest"], sent, skipped, nbytes, time.monotonic() - started)


def push_with_skopeo(registry_url: str, layout_dir: Path, name: str, tag: str, *,
                     source_tag: str | None = None) -> PushResult:
    """The same push by ``skopeo copy --dest-tls-verify=false oci:DIR:TAG docker://HOST/REPO:TAG``."""
    started = time.monotonic()
    host = urllib.parse.urlsplit(registry_url).netloc
    repo = parse(name).repository(host)
    top = _oci.Layout(layout_dir).manifest_descriptor(source_tag or tag)
    out = subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests",
                          f"oci:{layout_dir}:{source_tag or tag}", f"docker://{host}/{repo}:{tag}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RegistryError(f"skopeo could not push {repo}:{tag}: {out.stderr.strip().splitlines()[-1:]}.",
                            hint=f"Check the registry at {registry_url}.")
    return PushResult(f"{host}/{repo}:{tag}", top["digest"], 0, 0, 0, time.monotonic() - started)
