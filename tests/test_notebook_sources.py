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


def _as_script(nb: nbformat.NotebookNode) -> str:
    """The percent script `jupytext --sync` writes for a notebook, with the project's jupytext.toml."""
    import jupytext
    from jupytext.config import load_jupytext_configuration_file

    config = load_jupytext_configuration_file(str(ROOT / "jupytext.toml"))
    return jupytext.writes(nb, fmt="py:percent", config=config)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_pair_is_in_sync(path):
    """What `jupytext --sync` would write from the notebook is the committed script, byte for byte: an edit on
    either side that the other lacks fails here."""
    script = path.with_suffix(".py")
    assert _as_script(nbformat.read(str(path), as_version=4)) == script.read_text(), \
        f"{path.name} and {script.name} are out of sync: run `make notebooks` (jupytext --sync) and commit both"


def test_the_sync_check_sees_an_edit_on_either_side(tmp_path):
    path = NOTEBOOKS[0]
    nb = nbformat.read(str(path), as_version=4)
    script = path.with_suffix(".py").read_text()
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = params.source.replace("quick = False", "quick = True", 1)
    assert _as_script(nb) != script  # the notebook edited, the script not
    edited = script.replace("quick = False", "quick = True", 1)
    assert edited != script and _as_script(nbformat.read(str(path), as_version=4)) != edited  # the other way round
    # and `jupytext --sync` itself brings an edited script into its notebook (the command `make notebooks` runs)
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    shutil.copy(path, tmp_path / "notebooks" / path.name)
    copy = tmp_path / "notebooks" / path.with_suffix(".py").name
    copy.write_text(edited)
    os.utime(copy, (2e9, 2e9))
    subprocess.run([*JUPYTEXT, "--sync", str(tmp_path / "notebooks" / path.name)], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    synced = nbformat.read(str(tmp_path / "notebooks" / path.name), as_version=4)
    assert _as_script(synced) == edited


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
