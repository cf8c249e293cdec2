"""Render every ``images/<name>.dot`` to ``images/<name>.png`` with Graphviz, and say which PNGs are stale.

The PNGs are committed (a code host and a plain ``jupyter lab`` show them without building anything). Each PNG
carries a ``tEXt`` chunk, written after rendering, with the sha256 of its source and the Graphviz version that drew
it::

    kperflab-source: sha256=<hex of the .dot> graphviz=2.43.0

A PNG is current when that digest is its source's. It is re-rendered only when it is not (or missing), so a machine
with another Graphviz version does not rewrite pictures whose sources did not change. Where the local Graphviz is the
recorded one, `problems(..., rerender=True)` also renders again and compares bytes (Graphviz 2.43 renders
deterministically).

    python3 images/render.py            # render what is stale (``make images``)
    python3 images/render.py --check    # list what is stale or missing, exit 1 if anything is; render nothing

Standard library only, so ``make images`` needs no virtual environment.
"""

from __future__ import annotations

import hashlib
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYWORD = b"kperflab-source"
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def dot_version() -> str | None:
    """The local Graphviz version ("2.43.0"), or None without a ``dot`` binary."""
    try:
        r = subprocess.run(["dot", "-V"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\S+)", r.stderr + r.stdout)
    return m.group(1) if m else None


def source_digest(dot: Path) -> str:
    return hashlib.sha256(dot.read_bytes()).hexdigest()


def _chunks(png: bytes) -> list[tuple[bytes, bytes, int, int]]:
    """(type, data, start, end) of every chunk; ValueError when it is not a well-formed PNG."""
    if not png.startswith(SIGNATURE):
        raise ValueError("not a PNG file")
    out, i = [], len(SIGNATURE)
    while i < len(png):
        if i + 12 > len(png):
            raise ValueError("truncated PNG chunk")
        (n,) = struct.unpack(">I", png[i:i + 4])
        kind, data = png[i + 4:i + 8], png[i + 8:i + 8 + n]
        (crc,) = struct.unpack(">I", png[i + 8 + n:i + 12 + n])
        if len(data) != n or zlib.crc32(kind + data) != crc:
            raise ValueError(f"bad {kind.decode('latin-1')} chunk at byte {i}")
        out.append((kind, data, i, i + 12 + n))
        i += 12 + n
    return out


def read_stamp(png: bytes) -> dict[str, str]:
    """The recorded {"sha256": …, "graphviz": …} of a PNG ({} when it has none)."""
    for kind, data, _, _ in _chunks(png):
        if kind == b"tEXt" and data.startswith(KEYWORD + b"\0"):
            text = data[len(KEYWORD) + 1:].decode("latin-1")
            return dict(part.split("=", 1) for part in text.split() if "=" in part)
    return {}


def stamp(png: bytes, digest: str, version: str) -> bytes:
    """The PNG with its source stamp as a tEXt chunk right after IHDR (an older stamp is replaced)."""
    chunks = _chunks(png)
    body = b"".join(png[s:e] for kind, data, s, e in chunks[1:]
                    if not (kind == b"tEXt" and data.startswith(KEYWORD + b"\0")))
    data = KEYWORD + b"\0" + f"sha256={digest} graphviz={version}".encode("latin-1")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    ihdr_end = chunks[0][3]
    return png[:ihdr_end] + chunk + body


def render(dot: Path, version: str) -> bytes:
    """What ``dot`` makes of a source, stamped."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.png"
        subprocess.run(["dot", "-Tpng", str(dot), "-o", str(out)], check=True, timeout=60)
        return stamp(out.read_bytes(), source_digest(dot), version)


def problems(images: Path = HERE, rerender: bool = False) -> list[str]:
    """One sentence per picture that is not what its source says: a source without a PNG, a PNG without a source or
    a stamp, a stamp of another source; with ``rerender`` and the recorded Graphviz here, a PNG whose bytes differ
    from a fresh render."""
    out: list[str] = []
    version = dot_version() if rerender else None
    dots = {p.stem: p for p in images.glob("*.dot")}
    pngs = {p.stem: p for p in images.glob("*.png")}
    for name in sorted(pngs.keys() - dots.keys()):
        out.append(f"{name}.png has no source {name}.dot")
    for name, dot in sorted(dots.items()):
        png = pngs.get(name)
        if png is None:
            out.append(f"{name}.dot has no rendered {name}.png")
            continue
        try:
            data = png.read_bytes()
            recorded = read_stamp(data)
        except ValueError as e:
            out.append(f"{name}.png is not a valid PNG ({e})")
            continue
        if not recorded:
            out.append(f"{name}.png carries no source stamp")
        elif recorded.get("sha256") != source_digest(dot):
            out.append(f"{name}.png was rendered from another version of {name}.dot")
        elif version is not None and recorded.get("graphviz") == version and render(dot, version) != data:
            out.append(f"{name}.png differs from what Graphviz {version} renders from {name}.dot")
    return out


def needs_render(dot: Path) -> bool:
    """Whether ``dot``'s PNG must be rendered: missing, unstamped, unreadable or stamped with another source."""
    png = dot.with_suffix(".png")
    if not png.exists():
        return True
    try:
        return read_stamp(png.read_bytes()).get("sha256") != source_digest(dot)
    except ValueError:
        return True


def render_stale(images: Path = HERE) -> list[str]:
    """Render every source whose PNG is missing or stamped with another source; the names of the PNGs written.
    A missing ``dot`` is a RuntimeError that says what to install."""
    stale = [d for d in sorted(images.glob("*.dot")) if needs_render(d)]
    if not stale:
        return []
    version = dot_version()
    if version is None:
        raise RuntimeError("Graphviz's `dot` is not installed; run `make system-deps` (or apt-get install graphviz)")
    for dot in stale:
        dot.with_suffix(".png").write_bytes(render(dot, version))
    return [d.with_suffix(".png").name for d in stale]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        found = problems(HERE, rerender=True)
        for p in found:
            print(f"images: {p}", file=sys.stderr)
        if found:
            print("images: run `make images` and commit the PNGs", file=sys.stderr)
        return 1 if found else 0
    try:
        written = render_stale(HERE)
    except RuntimeError as e:
        print(f"images: {e}", file=sys.stderr)
        return 1
    for name in written:
        print(f"images: rendered {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
