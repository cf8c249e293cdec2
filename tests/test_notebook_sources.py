"""The workshop notebooks as sources: each ``notebooks/NN-name.ipynb`` is paired with a Jupytext percent-format
script (``jupytext.toml``), committed in sync and without outputs, so that an edit made in JupyterLab or in an editor
lands in both and a diff reads as code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
JUPYTEXT = [sys.executable, "-m", "jupytext"]


def test_every_notebook_has_its_percent_script_and_nothing_else_is_there():
    assert [p.stem for p in NOTEBOOKS] == ["01-foundations", "02-storage", "03-networking", "04-measuring"]
    scripts = sorted((ROOT / "notebooks").glob("*.py"))
    assert [p.stem for p in scripts] == [p.stem for p in NOTEBOOKS]
    for path in scripts:
        assert path.read_text().startswith("# %% [markdown]\n"), f"{path.name} is not in the percent format"


def _sync_changes(tmp: Path, newer: str) -> list[str]:
    """Copies the notebooks and jupytext.toml to ``tmp``, makes one side of every pair newer and runs
    ``jupytext --sync``: the names of the files it changed."""
    shutil.copy(ROOT / "jupytext.toml", tmp / "jupytext.toml")
    nbdir = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", nbdir, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    before = {p.name: p.read_bytes() for p in nbdir.iterdir()}
    for path in nbdir.iterdir():
        os.utime(path, (1e9, 1e9 + (100 if path.suffix == newer else 0)))
    proc = subprocess.run([*JUPYTEXT, "--sync", *sorted(str(p) for p in nbdir.glob("*.ipynb"))], cwd=tmp,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return sorted(name for name, data in before.items() if (nbdir / name).read_bytes() != data)


@pytest.mark.parametrize("newer", [".ipynb", ".py"])
def test_pairs_are_in_sync_whichever_side_was_edited_last(tmp_path, newer):
    changed = _sync_changes(tmp_path, newer)
    assert not changed, f"out of sync: {changed}; run `make notebooks` (jupytext --sync) and commit both files"


def test_sync_test_sees_an_edit_on_either_side(tmp_path):
    """The check above can fail: an edit to a script's code cell reaches its notebook, one to the notebook reaches
    the script."""
    nbdir = ROOT / "notebooks"
    work = tmp_path / "w"
    (work / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "jupytext.toml", work / "jupytext.toml")
    for p in nbdir.glob("01-*"):
        shutil.copy(p, work / "notebooks" / p.name)
    py = work / "notebooks" / "01-foundations.py"
    py.write_text(py.read_text().replace("requests = 10 ", "requests = 11 ", 1))
    os.utime(py, (2e9, 2e9))
    subprocess.run([*JUPYTEXT, "--sync", str(work / "notebooks" / "01-foundations.ipynb")], cwd=work, check=True,
                   capture_output=True, timeout=120)
    nb = nbformat.read(str(work / "notebooks" / "01-foundations.ipynb"), as_version=4)
    assert any("requests = 11 " in c.source for c in nb.cells)


def test_committed_notebooks_are_clean_and_shaped_for_the_workshop():
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert all(not c.outputs and c.execution_count is None for c in code), \
            f"{path.name} is committed with outputs: clear them (JupyterLab: Edit → Clear Outputs of All Cells)"
        assert "widgets" not in nb.metadata, f"{path.name} carries widget state"
        text = "\n".join(c.source for c in nb.cells)
        assert text.count("exercises.check(") >= 2, path.name
        solutions = [c for c in code if "solution" in c.metadata.get("tags", [])]
        assert len(solutions) >= 2 and all(c.metadata.get("jupyter", {}).get("source_hidden") for c in solutions)
