"""The workshop as a learner runs it: JupyterLab in Debian's chromium (Playwright), Run All on every notebook against a
lab, no error output, every plotly figure drawn with a size, widgets rendered, notebook 04's live dashboard changing
and then stopping on its button, screenshots in out/browser/. scripts/browser-run.py does it (quick = True in each
parameters cell, everything else the learner's defaults); it starts in the background when the session starts
(tests/conftest.py, with a lab of its own) and is judged here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def browser_run_module():
    spec = importlib.util.spec_from_file_location("browser_run", ROOT / "scripts" / "browser-run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_copies_get_quick_parameters_and_nothing_else():
    br = browser_run_module()
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        quick = br.quick_notebook(nb)
        changed = [(a, b) for a, b in zip(nb["cells"], quick["cells"], strict=True) if a != b]
        assert len(changed) == 1, path.name  # only the parameters cell
        before, after = changed[0]
        assert "parameters" in after["metadata"]["tags"]
        old, new = "".join(before["source"]).splitlines(), after["source"].splitlines()
        diff = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
        assert len(diff) == 1 and diff[0][0].replace(" ", "").startswith("quick=False"), (path.name, diff)
        assert diff[0][1].startswith("quick = True")
        assert any(line.replace(" ", "").startswith("solutions=False") for line in new), path.name
        assert nb["cells"] is not quick["cells"] and "quick = True" not in "".join(before["source"])  # a copy
    bare = {"cells": [{"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": None}]}
    assert br.quick_notebook(bare)["cells"][0]["source"].startswith("quick = True")  # no parameters cell: one first


@pytest.mark.lab
def test_every_notebook_runs_in_jupyterlab_in_chromium(browser_run):
    rc, out, waited = browser_run
    lines = out.splitlines()
    print("\n".join(line for line in lines if line[:2].isdigit() or line.startswith(("browser-run:", "    note:"))))
    summary_file = ROOT / "out" / "browser" / "summary.json"
    assert summary_file.exists(), "\n".join(lines[-60:])
    summary = json.loads(summary_file.read_text())
    print(f"browser run: {summary['seconds']:.0f} s in the background of this session (judged {waited:.0f} s after "
          "the session started)")
    assert summary["quick"] is True and summary["changed_parameters"] == {"quick": True}
    ran = {r["notebook"]: r for r in summary["notebooks"]}
    assert sorted(ran) == [p.stem for p in NOTEBOOKS], "\n".join(lines[-60:])
    for name, r in ran.items():
        assert not r["problems"], (name, r["problems"])
        assert r["cells"]["code"] > 0 and r["cells"]["ran"] == r["cells"]["code"], (name, r["cells"])
        assert r["errors"] == [], (name, r["errors"])
        figs = r["figures"]
        assert figs["outputs"] > 0 and figs["drawn"] == figs["outputs"], (name, figs)
        assert all(w > 0 and h > 0 for w, h in figs["sizes"]), (name, figs)
        assert r["widgets"]["broken"] == [], (name, r["widgets"])
        assert Path(r["screenshot"]).stat().st_size > 10_000, name
    dash = ran["04-measuring"]["dashboard"]
    assert dash["changed"] and dash["stopped"], dash
    assert dash["button"] == {"text": "Stopped", "disabled": True}
    first, second = dash["reads"][-2:]
    assert first["data"] != second["data"] and first["title"] != second["title"]  # redrawn with other values
    assert dash["stopped_reads"][0] == dash["stopped_reads"][1]
    for when in ("running", "stopped"):
        assert (ROOT / "out" / "browser" / f"04-measuring-live-top-{when}.png").stat().st_size > 1000
    assert summary["leftover_namespaces"] == []
    assert rc == 0 and summary["ok"], "\n".join(lines[-60:])
