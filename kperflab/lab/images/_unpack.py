"""Unpack one layer blob into a directory in overlayfs lower-dir form, as containerd's overlay snapshotter does.

The blob is decompressed here (zlib; zstd by the ``zstandard`` package or the ``zstd`` program), hashed on the
way (the result's ``diff_id`` must equal the image config's ``rootfs.diff_ids[i]``; the caller compares) and fed
to GNU tar, which creates what the tar says as root: regular files, directories, symlinks, hard links, devices and
fifos, numeric owners, full modes (setuid included), times, and the ``security.capability`` and ``user.*``
extended attributes. GNU tar keeps entries inside the directory (it drops ``..`` members and creates symlinks that
could lead out only after every other entry). Measured on the python image (165 MB, 6 200 entries): 1.3 s into
tmpfs, against 2.6 s for the same work with Python's ``tarfile``.

Then the whiteouts become what overlayfs reads (OCI image-spec ``layer.md``; containerd
``pkg/archive/tar_opts_linux.go``; kernel ``Documentation/filesystems/overlayfs.rst``):

- ``.wh.<name>`` → a character device 0/0 named ``<name>`` with the whiteout's owner;
- ``.wh..wh..opq`` → the extended attribute ``trusted.overlay.opaque=y`` on its directory.

Each layer is unpacked on its own into an empty directory (overlayfs stacks the lower dirs; no layer is applied
onto another), so a layer is unpacked once and shared by every image that has it. Needs root for owners, devices,
whiteouts and ``trusted.*`` attributes, like a containerd snapshotter.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import _oci

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"


class UnpackError(Exception):
    """A layer that cannot be unpacked (bad archive, unsupported compression, tar refused an entry)."""


@dataclass(frozen=True)
class Unpacked:
    diff_id: str
    tar_size: int  # bytes of the uncompressed tar
    whiteouts: int
    opaque_dirs: int


def chunks(blob: Path, media_type: str) -> Iterator[bytes]:
    """The uncompressed tar stream of a layer blob, in chunks."""
    if media_type.endswith("+gzip") or media_type.endswith(".tar.gzip"):
        with open(blob, "rb") as f:
            d = zlib.decompressobj(31)
            fed = False
            while chunk := f.read(_oci.CHUNK):
                while chunk:
                    fed = True
                    out = d.decompress(chunk)
                    if out:
                        yield out
                    if d.eof:  # multi-member gzip: the next member starts in unused_data
                        chunk, d, fed = d.unused_data, zlib.decompressobj(31), False
                    else:
                        chunk = b""
            if fed and not d.eof:
                raise UnpackError("unexpected end of gzip stream (the layer is truncated)")
        return
    if media_type.endswith("+zstd"):
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            if not shutil.which("zstd"):
                raise UnpackError(f"{media_type} layers need the zstd program or the Python package zstandard") from None
            with subprocess.Popen(["zstd", "-dc", str(blob)], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
                assert p.stdout is not None
                while data := p.stdout.read(_oci.CHUNK):
                    yield data
                if p.wait() != 0:
                    raise UnpackError(f"zstd: {p.stderr.read().decode(errors='replace').strip()}") from None  # type: ignore[union-attr]
            return
        with open(blob, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as r:
            while data := r.read(_oci.CHUNK):
                yield data
        return
    if media_type.endswith("layer.v1.tar") or media_type.endswith("diff.tar"):
        with open(blob, "rb") as f:
            while data := f.read(_oci.CHUNK):
                yield data
        return
    raise UnpackError(f"unsupported layer media type {media_type}")


def _tar_command(dest: Path) -> list[str]:
    root = os.geteuid() == 0
    return ["tar", "-x", "-f", "-", "-C", str(dest), "--numeric-owner", "--same-permissions",
            "--same-owner" if root else "--no-same-owner", "--xattrs", "--xattrs-include=security.capability",
            "--xattrs-include=user.*", "--warning=no-timestamp", "--warning=no-unknown-keyword"]


def convert_whiteouts(dest: Path) -> tuple[int, int]:
    """Turn the OCI whiteout files under ``dest`` into overlayfs whiteouts; returns (whiteouts, opaque dirs)."""
    whiteouts = opaque = 0
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in [n for n in filenames + dirnames if n.startswith(WHITEOUT)]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if name == OPAQUE:
                os.setxattr(dirpath, OPAQUE_XATTR, b"y")
                os.unlink(p)
                opaque += 1
                continue
            target = os.path.join(dirpath, name[len(WHITEOUT):])
            if os.path.lexists(target):  # the same layer cannot both add and hide a name: the whiteout wins
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.unlink(target)
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(p)
            else:
                os.unlink(p)
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0))
            if os.geteuid() == 0:
                os.lchown(target, st.st_uid, st.st_gid)
            whiteouts += 1
        dirnames[:] = [d for d in dirnames if not d.startswith(WHITEOUT)]
    return whiteouts, opaque


def unpack(blob: Path, media_type: str, dest: Path) -> Unpacked:
    """Unpack ``blob`` into the missing or empty directory ``dest``; returns the diff_id of the bytes read.

    On error ``dest`` may hold part of the layer: the caller unpacks into a staging directory it throws away.
    """
    dest.mkdir(parents=True, exist_ok=True)
    sha, size = hashlib.sha256(), 0
    tar = subprocess.Popen(_tar_command(dest), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env={**os.environ, "LC_ALL": "C"})
    assert tar.stdin is not None and tar.stderr is not None
    try:
        try:
            for data in chunks(blob, media_type):
                sha.update(data)
                size += len(data)
                tar.stdin.write(data)
        except BrokenPipeError:
            pass  # tar stopped early: its exit status and message say why
        except zlib.error as exc:
            raise UnpackError(f"bad compressed data: {exc}") from exc
        finally:
            try:
                tar.stdin.close()
            except BrokenPipeError:
                pass
        err = tar.stderr.read().decode(errors="replace").strip()
        if tar.wait() != 0:
            lines = [line for line in err.splitlines() if "Exiting with failure" not in line][:3]
            raise UnpackError("; ".join(lines) or f"tar: exit status {tar.returncode}")
    finally:
        if tar.poll() is None:
            tar.kill()
            tar.wait()
        tar.stderr.close()
    try:
        whiteouts, opaque = convert_whiteouts(dest)
    except OSError as exc:
        raise UnpackError(f"converting whiteouts: {exc}") from exc
    return Unpacked("sha256:" + sha.hexdigest(), size, whiteouts, opaque)
