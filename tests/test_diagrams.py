"""The diagrams in ``images/``: every Graphviz source has its rendered PNG committed next to it (same basename), each
PNG is what its source renders to, and every picture a notebook references exists — so a fresh clone shows them on a
code host and in a plain ``jupyter lab`` without building anything.

Each PNG carries the sha256 of its source (a tEXt chunk written by ``images/render.py``), compared on every machine;
where the local Graphviz is the version that drew it, the PNG is also rendered again and compared byte for byte, so a
machine with another Graphviz does not fail on pictures that are current."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
NOTEBOOKS = ROOT / "notebooks"
IMAGE_REF = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)(?:\s+\"[^\"]*\")?\)|<img\s[^>]*src=\"(?P<html>[^\"]+)\"")
HAVE_DOT = shutil.which("dot") is not None


def _load_render():
    spec = importlib.util.spec_from_file_location("kperflab_images_render", IMAGES / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _load_render()


def image_refs(notebook: Path) -> list[tuple[str, str]]:
    """(alt text, src) of every picture in a notebook's markdown cells."""
    cells = json.loads(notebook.read_text())["cells"]
    out = []
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        for m in IMAGE_REF.finditer(text):
            out.append((m.group("alt") or "", m.group("src") or m.group("html")))
    return out


def broken_refs(notebooks: list[Path]) -> list[str]:
    """One sentence per picture reference that would not show: a missing file, a picture outside ``images/`` (a
    browser-run copies only notebooks/ and images/), or one without alt text."""
    out = []
    for nb in notebooks:
        for alt, src in image_refs(nb):
            if re.match(r"[a-z]+:", src):
                out.append(f"{nb.name}: {src} is not a local file")
                continue
            target = (nb.parent / src).resolve()
            if not target.is_file():
                out.append(f"{nb.name}: {src} does not exist")
            elif target.parent != (nb.parent.parent / "images").resolve():
                out.append(f"{nb.name}: {src} is not in images/")
            if not alt.strip():
                out.append(f"{nb.name}: {src} has no alt text")
    return out


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


def test_every_source_has_its_current_png():
    assert sorted(IMAGES.glob("*.dot")), "no diagram sources in images/"
    found = render.problems(IMAGES, rerender=True)
    assert not found, "; ".join(found) + " — run `make images` and commit the PNGs"


def test_pngs_are_not_git_ignored():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    pngs = [str(p.relative_to(ROOT)) for p in sorted(IMAGES.glob("*.png"))]
    r = subprocess.run(["git", "check-ignore", "--no-index", *pngs], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1, f"git ignores {r.stdout.split()}: remove the rule from .gitignore"


def test_every_picture_the_notebooks_show_exists_and_every_diagram_is_shown():
    notebooks = _notebooks()
    assert notebooks
    assert not broken_refs(notebooks)
    shown = {(nb.parent / src).resolve().name for nb in notebooks for _, src in image_refs(nb)}
    drawn = {p.with_suffix(".png").name for p in IMAGES.glob("*.dot")}
    assert drawn <= shown, f"diagrams no notebook shows: {sorted(drawn - shown)}"


def _copy_images(tmp: Path, count: int | None = None) -> Path:
    """A copy of ``images/`` (the first ``count`` diagrams, sources and PNGs) to break."""
    work = tmp / "images"
    work.mkdir()
    for dot in sorted(IMAGES.glob("*.dot"))[:count]:
        for p in (dot, dot.with_suffix(".png")):
            if p.exists():
                shutil.copy(p, work / p.name)
    return work


def test_the_check_fails_on_a_stale_missing_or_orphan_png(tmp_path):
    work = _copy_images(tmp_path)
    assert render.problems(work) == []
    name = sorted(work.glob("*.dot"))[0].stem
    dot = work / f"{name}.dot"
    dot.write_text(dot.read_text().replace("label=", 'label="changed", xlabel=', 1))  # an edit to the source
    (work / "orphan.png").write_bytes((work / f"{name}.png").read_bytes())
    other = sorted(work.glob("*.dot"))[1].stem
    (work / f"{other}.png").unlink()
    assert render.problems(work) == [
        "orphan.png has no source orphan.dot",
        *sorted([f"{other}.dot has no rendered {other}.png",
                 f"{name}.png was rendered from another version of {name}.dot"]),
    ]


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot is not installed (make system-deps)")
def test_the_check_fails_on_a_png_that_is_not_what_its_source_renders_to(tmp_path):
    work = _copy_images(tmp_path, 2)
    version = render.dot_version()
    a, b = sorted(work.glob("*.dot"))[:2]
    # b's picture stamped as a's: the digest matches, the bytes do not — only the re-render can tell
    wrong = render.stamp(render.render(b, version), render.source_digest(a), version)
    a.with_suffix(".png").write_bytes(wrong)
    # a picture as plain `dot` writes it: no stamp
    subprocess.run(["dot", "-Tpng", str(b), "-o", str(b.with_suffix(".png"))], check=True)
    assert render.problems(work, rerender=True) == [
        f"{a.stem}.png differs from what Graphviz {version} renders from {a.stem}.dot",
        f"{b.stem}.png carries no source stamp",
    ]
    # another Graphviz recorded: the stamp alone decides, so a current source is not reported
    a.with_suffix(".png").write_bytes(render.stamp(wrong, render.source_digest(a), "0.0-elsewhere"))
    assert render.problems(work, rerender=True) == [f"{b.stem}.png carries no source stamp"]


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot is not installed (make system-deps)")
def test_make_images_renders_only_what_is_stale(tmp_path):
    work = _copy_images(tmp_path, 2)
    assert render.render_stale(work) == []
    dot = sorted(work.glob("*.dot"))[-1]
    dot.write_text(dot.read_text() + "\n// edited\n")
    before = {p.name: p.stat().st_mtime_ns for p in work.glob("*.png")}
    assert render.render_stale(work) == [dot.with_suffix(".png").name]
    assert render.problems(work, rerender=True) == []
    assert [p.name for p in work.glob("*.png") if p.stat().st_mtime_ns != before[p.name]] == [
        dot.with_suffix(".png").name]


def test_the_reference_check_fails_on_a_missing_picture_or_alt_text(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    shutil.copytree(IMAGES, tmp_path / "images", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (tmp_path / "elsewhere.png").write_bytes(b"")
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [
        "![A picture](../images/metrics-pipeline.png)\n",
        "![Gone](../images/gone.png) ![](../images/pod-network.png)\n",
        '<img src="../elsewhere.png" alt="x">\n']},
        {"cell_type": "code", "metadata": {}, "source": ["# ![in code](../images/none.png)"], "outputs": [],
         "execution_count": None}]
    nb = nbdir / "99-x.ipynb"
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert broken_refs([nb]) == [
        "99-x.ipynb: ../images/gone.png does not exist",
        "99-x.ipynb: ../images/pod-network.png has no alt text",
        "99-x.ipynb: ../elsewhere.png is not in images/",
        "99-x.ipynb: ../elsewhere.png has no alt text",
    ]
