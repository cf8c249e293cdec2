"""The workshop notebooks: committed clean, and executed end to end with papermill against the lab (quick
parameters, solutions on, checks strict). Executed copies are kept under out/ for inspection, each with its offline
HTML (`kperflab.report.export_html`, as `kperflab workshop` writes it) and out/index.html, the report of the lab runs."""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from kperflab import report

from .conftest import needs_root

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))


WRONG = "wrong-answers"  # the tag of the cells this test adds after each check (the report leaves them out)
LAB_RUNS: dict[str, report.NotebookRun] = {}  # this session's lab runs, for out/index.html


def with_wrong_answers(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """After every check cell, a cell that runs the same check again with three wrong answers (not strict), then puts
    the right answer back: each must print ✗, which shows the check compares against something the answer can miss."""
    out = nbformat.v4.new_notebook(metadata=nb.metadata)
    n = 0
    for cell in nb.cells:
        out.cells.append(cell)
        m = re.match(r"exercises\.check\((\w+),", cell.source) if cell.cell_type == "code" else None
        if not m:
            continue
        var = m.group(1)
        n += 1
        body = textwrap.indent(cell.source, "    ")
        out.cells.append(nbformat.v4.new_code_cell(
            f"_right, _strict = {var}, solutions\nsolutions = False\n"
            f"for {var} in (_right * 2, _right / 2 - 1, _right + 1000):\n{body}\n{var}, solutions = _right, _strict",
            metadata={"tags": [WRONG, report.IGNORE_TAG]}))
    return out, n


def _run(path: Path, kubeconfig: Path, out: Path, nb: nbformat.NotebookNode | None = None) -> tuple[nbformat.NotebookNode, float]:
    import papermill as pm

    out.parent.mkdir(exist_ok=True)
    src = out.with_suffix(".input.ipynb")
    nbformat.write(nb or nbformat.read(str(path), as_version=4), str(src))
    t0 = time.monotonic()
    try:
        pm.execute_notebook(str(src), str(out), parameters={"kubeconfig": str(kubeconfig), "quick": True, "solutions": True},
                            kernel_name="python3", progress_bar=False, cwd=str(path.parent), execution_timeout=300)
    finally:
        src.unlink(missing_ok=True)
    return nbformat.read(str(out), as_version=4), time.monotonic() - t0


def _streams(nb: nbformat.NotebookNode, tagged: bool) -> list[str]:
    return [o.get("text", "") for c in nb.cells if c.cell_type == "code" and (WRONG in c.metadata.get("tags", [])) == tagged
            for o in c.outputs if o.output_type == "stream"]


def _findings(nb: nbformat.NotebookNode) -> list[str]:
    return [o["data"]["text/markdown"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "display_data" and "text/markdown" in o.get("data", {})
            and o["data"]["text/markdown"].startswith(("**Measured:**", "**Skipped here:**"))]


@pytest.fixture(scope="module")
def lab_prometheus(lab):
    """Prometheus in the session lab for 04's section 7, as a learner installs it (`kperflab lab up --prometheus` on
    the running lab: the shipped manifest, 15 s scrapes); removed after this module."""
    import shutil
    import subprocess

    from .conftest import kperflab

    up = kperflab(lab["home"], "lab", "up", "--prometheus", timeout=300)
    assert up.returncode == 0 and "Prometheus is ready" in up.stdout, up.stdout + up.stderr
    yield
    manifest = ROOT / "kperflab" / "manifests" / "prometheus.yaml"
    subprocess.run([shutil.which("kubectl") or "kubectl", "--kubeconfig", str(lab["kubeconfig"]), "delete",
                    "--ignore-not-found", "--wait=true", "-f", str(manifest)], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def lab_without_limits(tmp_path_factory: pytest.TempPathFactory):
    """A lab whose pods run without cgroup limits: what a learner without root gets."""
    from .conftest import kperflab

    home = tmp_path_factory.mktemp("no-limits-home")
    up = kperflab(home, "lab", "up", "--no-limits", "--metric-resolution", "5s")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield home / "kubeconfig.yaml"
    finally:
        assert kperflab(home, "lab", "down", "--purge").returncode == 0


class Background:
    """The no-limits runs of every notebook, one after another in a papermill subprocess of their own, while the
    lab runs go on in the foreground: they judge nothing by timing (their checks say what cannot be checked), so
    they may share the CPU, and the suite saves their minutes."""

    def __init__(self, kubeconfig: Path) -> None:
        import threading

        self.kubeconfig = kubeconfig
        self.results: dict[str, tuple[int, str, float]] = {}
        self.done = {p.name: threading.Event() for p in NOTEBOOKS}
        self.thread = threading.Thread(target=self._run_all, daemon=True, name="no-limits-notebooks")
        self.thread.start()

    def _run_all(self) -> None:
        import os
        import subprocess
        import sys

        env = {**os.environ, "KPERFLAB_HEADLESS": "1"}
        for path in NOTEBOOKS:
            out = ROOT / "out" / f"no-limits-{path.name}"
            out.parent.mkdir(exist_ok=True)
            t0 = time.monotonic()
            try:
                proc = subprocess.run([sys.executable, "-m", "papermill", str(path), str(out), "-k", "python3",
                                       "-p", "kubeconfig", str(self.kubeconfig), "-p", "quick", "True", "-p", "solutions", "True",
                                       "--cwd", str(path.parent), "--execution-timeout", "300", "--no-progress-bar"],
                                      capture_output=True, text=True, env=env, timeout=900)
                self.results[path.name] = (proc.returncode, proc.stderr[-3000:], time.monotonic() - t0)
            except subprocess.TimeoutExpired:
                self.results[path.name] = (-1, "papermill ran longer than 900 s", time.monotonic() - t0)
            finally:
                self.done[path.name].set()

    def result(self, path: Path) -> tuple[nbformat.NotebookNode, float]:
        assert self.done[path.name].wait(1200), f"the background run of {path.name} did not finish"
        rc, err, took = self.results[path.name]
        assert rc == 0, f"papermill failed on {path.name} without limits:\n{err}"
        return nbformat.read(str(ROOT / "out" / f"no-limits-{path.name}"), as_version=4), took


@pytest.fixture(scope="module")
def no_limits_runs(lab_without_limits):
    bg = Background(lab_without_limits)
    yield bg
    bg.thread.join(1200)  # the no-limits lab goes down only after its last notebook


@pytest.mark.lab
@needs_root
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_against_the_lab(path, lab, monkeypatch, no_limits_runs, lab_prometheus):
    monkeypatch.setenv("KPERFLAB_HEADLESS", "1")
    nb, n_checks = with_wrong_answers(nbformat.read(str(path), as_version=4))
    out = ROOT / "out" / path.name
    nb, took = _run(path, lab["kubeconfig"], out, nb)
    texts = _streams(nb, tagged=False)
    checks = [t for t in texts if t.startswith(("✓", "✗", "–"))]
    assert len(checks) == n_checks and all(t.startswith("✓") for t in checks), checks  # nothing unchecked on the lab
    wrong = [line for t in _streams(nb, tagged=True) for line in t.splitlines() if line.strip()]
    assert len(wrong) == 3 * n_checks and all(line.startswith("✗") for line in wrong), wrong
    findings = _findings(nb)
    assert findings and all(f.startswith("**Measured:**") for f in findings), findings
    assert not [t for t in findings + texts if re.search(r"\bnan\b", t, re.I)], "a finding printed nan"
    plots = sum(report.PLOTLY_MIME in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert out.stat().st_size < 1_000_000, "figures are plotly JSON, without plotly.js in every executed notebook"
    html = report.export_html(out, out.with_suffix(".html"), images_from=path.parent).read_text()
    assert plots and html.count('class="plotly-graph-div"') == plots, "every figure must render in the HTML too"
    assert not report.network_references(html) and html.count("window.Plotly = Plotly") == 1, "offline, plotly.js once"
    run = report.read_run(out, out.with_suffix(".html"), seconds=took)  # what the report says: the same as above
    assert run.ok and run.exercises() == f"{n_checks} ✓ 0 ✗ 0 –" and run.findings == findings, (run.exercises(), run.findings)
    LAB_RUNS[path.name] = run
    report.write_index([LAB_RUNS[p.name] for p in NOTEBOOKS if p.name in LAB_RUNS], out.parent,
                       report.run_info(str(lab["kubeconfig"]), None, quick=True, solutions=True))
    print(f"{path.name}: {took:.0f} s, {len(checks)} checks (each also failed 3 wrong answers), {len(findings)} findings")


@pytest.mark.lab
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_without_enforced_limits_says_so_and_carries_on(path, no_limits_runs):
    """The no-root path: every cell runs, findings about limits say they are not enforced, nothing prints nan, and a
    check that cannot judge here says why instead of passing. (Run in the background while the lab runs go on.)"""
    nb, took = no_limits_runs.result(path)
    texts = _streams(nb, tagged=False)
    findings = _findings(nb)
    assert findings and not [t for t in findings + texts if re.search(r"\bnan\b", t, re.I)], findings
    checks = [t for t in texts if t.startswith(("✓", "✗", "–"))]
    if path.stem == "03-networking":  # nothing about limits; what this lab lacks (a pod network, kube-proxy) is said
        assert checks and all(t.startswith("✓") or re.match(r"– Cannot check here: \S", t) for t in checks), checks
        assert all(re.match(r"\*\*(Measured|Skipped here):\*\* \S", f) for f in findings), findings
        print(f"{path.name} without limits: {took:.0f} s, {len(checks)} checks, {len(findings)} findings")
        return
    if path.stem == "02-storage":  # volumes and pulls need no limits; what depends on them says they are not enforced
        assert checks and all(t.startswith("✓") or re.match(r"– Cannot check here: \S", t) for t in checks), checks
        assert all(re.match(r"\*\*(Measured|Skipped here):\*\* \S", f) for f in findings), findings
        memory = [f for f in findings if "memory-backed emptyDir" in f]
        assert all("not enforced" in f and "was not killed" in f for f in memory), memory
        print(f"{path.name} without limits: {took:.0f} s, {len(checks)} checks, {len(findings)} findings")
        return
    # 04's Prometheus section: this lab runs no Prometheus (the notebook's path for a cluster without one)
    assert checks and all(t.startswith("✓") or (t.startswith("– Cannot check here") and (
        "not enforced" in t or (path.stem == "04-measuring" and "Prometheus" in t))) for t in checks), checks
    if path.stem == "04-measuring":
        assert any(f.startswith("**Skipped here:**") and "No Prometheus answers" in f
                   for f in findings), findings
    if path.stem == "01-foundations":
        about_limits = [f for f in findings if "limit" in f and ("killed" in f or "CFS" in f)]
        assert about_limits and all("not enforced" in f for f in about_limits), about_limits
        assert any("was not killed" in f for f in findings), findings
    else:
        assert any("was not killed" in f and "not enforced" in f for f in findings), findings
    print(f"{path.name} without limits: {took:.0f} s, {len(checks)} checks, {len(findings)} findings")
