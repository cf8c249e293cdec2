"""The workshop notebooks: committed clean, and executed end to end with papermill against the lab (quick
parameters, solutions on, checks strict). Executed copies are kept under out/ for inspection."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import nbformat
import pytest

from .conftest import needs_root

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "scripts" / "build_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_notebooks_are_clean_and_built_from_the_script():
    builder = _builder()
    assert {p.name for p in NOTEBOOKS} == set(builder.NOTEBOOKS)
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
        assert json.loads(nbformat.writes(builder.build(builder.NOTEBOOKS[path.name]))) == json.loads(nbformat.writes(nb)), \
            f"{path.name} differs from scripts/build_notebooks.py: rebuild it"
        text = "\n".join(c.source for c in nb.cells)
        exercises = text.count("exercises.check(")
        assert exercises >= 2, path.name
        assert sum("solution" in c.metadata.get("tags", []) for c in code) >= 2


@pytest.mark.lab
@needs_root
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_against_the_lab(path, lab, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("KPERFLAB_HEADLESS", "1")
    out = ROOT / "out" / path.name
    out.parent.mkdir(exist_ok=True)
    t0 = time.monotonic()
    pm.execute_notebook(str(path), str(out), parameters={"kubeconfig": str(lab["kubeconfig"]), "quick": True, "solutions": True},
                        kernel_name="python3", progress_bar=False, cwd=str(path.parent), execution_timeout=300)
    took = time.monotonic() - t0
    nb = nbformat.read(str(out), as_version=4)
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"]
    checks = [t for t in texts if t.startswith(("✓", "✗"))]
    assert checks and all(t.startswith("✓") for t in checks), checks
    findings = [o["data"]["text/markdown"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "display_data" and "text/markdown" in o.get("data", {})
                and o["data"]["text/markdown"].startswith("**Measured:**")]
    assert findings, "no finding was displayed"
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter().from_notebook_node(nb)
    plots = sum("application/vnd.plotly.v1+json" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert plots and html.count('class="plotly-graph-div"') == plots, "every figure must render in the HTML too"
    out.with_suffix(".html").write_text(html)
    print(f"{path.name}: {took:.0f} s, {len(checks)} checks, {len(findings)} findings")
