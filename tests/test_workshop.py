"""`kperflab workshop` on two tiny notebooks against the lab: the selection, one line per notebook, the offline
HTML (opened in Chromium with every network request refused) and the report out/index.html."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from kperflab import report

# 1×1 PNG: a picture the markdown names relatively, as the workshop's ../images/*.png
PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def tiny_notebook(title: str) -> nbformat.NotebookNode:
    """A workshop notebook in miniature: parameters, connect, a picture, a plotly figure, a finding and a check
    against an independent reading (the API's node list)."""
    v4 = nbformat.v4
    return v4.new_notebook(cells=[
        v4.new_markdown_cell(f"# {title}\n\n![a diagram](../images/tiny.png)"),
        v4.new_code_cell("kubeconfig = None\ncontext = None\nnamespace = None\nquick = False\nsolutions = False",
                         metadata={"tags": ["parameters"]}),
        v4.new_code_cell("import kperflab, kperflab.figures\nimport plotly.graph_objects as go\n"
                         "from IPython.display import Markdown, display\nfrom kperflab import exercises\n"
                         "kperflab.figures.setup_notebook()\ncluster = kperflab.connect(kubeconfig, context, namespace)"),
        v4.new_code_cell("display(go.Figure(go.Bar(x=cluster.nodes, y=[1] * len(cluster.nodes))))\n"
                         "display(Markdown(f'**Measured:** this cluster has {len(cluster.nodes)} node(s).'))"),
        v4.new_code_cell("answer = len(cluster.nodes) if solutions else None\n"
                         "exercises.check(answer, len(cluster.core.list_node().items), strict=solutions)"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


@pytest.fixture(scope="module")
def workshop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workshop")
    (root / "notebooks").mkdir()
    (root / "images").mkdir()
    (root / "images" / "tiny.png").write_bytes(PIXEL)
    for name in ("01-tiny", "03-tiny"):
        nbformat.write(tiny_notebook(name), str(root / "notebooks" / f"{name}.ipynb"))
    return root


def workshop(cwd: Path, env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kperflab.cli", "workshop", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def workshop_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cwd: Path, env: dict[str, str],
                  *args: str) -> tuple[int, str, str]:
    """``kperflab workshop`` through the CLI's own main() in this process (the seconds of a new interpreter's
    imports saved), from ``cwd`` with ``env``'s KUBECONFIG and KPERFLAB_HOME."""
    from kperflab import cli

    monkeypatch.chdir(cwd)
    for name in ("KUBECONFIG", "KPERFLAB_HOME"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("KPERFLAB_HEADLESS", "")  # the run sets it; put back after the test
    capsys.readouterr()
    rc = cli.main(["workshop", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def open_offline(pages: list[Path]) -> list[dict]:
    """Each page in Debian's Chromium with every request that is not file: or data: refused: what was refused, the
    page errors, the plotly figures drawn (width, height) and the pictures' natural widths."""
    from playwright.sync_api import sync_playwright

    seen = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            for page_path in pages:
                page = browser.new_page()
                refused: list[str] = []
                errors: list[str] = []

                def route(r, refused=refused):
                    if r.request.url.startswith(("file:", "data:")):
                        r.continue_()
                    else:
                        refused.append(r.request.url)
                        r.abort()

                page.route("**/*", route)
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.goto(page_path.resolve().as_uri(), wait_until="load")
                n = page.locator("div.plotly-graph-div").count()
                if n:
                    page.wait_for_function(f"document.querySelectorAll('div.plotly-graph-div .main-svg').length >= {n}",
                                           timeout=20_000)
                figures = page.eval_on_selector_all(
                    "div.plotly-graph-div", "els => els.filter(e => e.querySelector('.main-svg'))"
                                            ".map(e => [e.getBoundingClientRect().width, e.getBoundingClientRect().height])")
                images = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
                seen.append({"refused": refused, "errors": errors, "divs": n, "figures": figures, "images": images})
                page.close()
        finally:
            browser.close()
    return seen


@pytest.mark.lab
def test_workshop_runs_the_chosen_notebooks_into_offline_html_and_a_report(workshop_dir, lab, monkeypatch, capsys):
    t0 = time.monotonic()
    rc, stdout, stderr = workshop_here(monkeypatch, capsys, workshop_dir, lab["env"], "--notebooks", "03", "--solutions")
    assert rc == 0, stdout + stderr
    lines = stdout.splitlines()
    assert len(lines) == 2, lines  # one line per notebook, then the report
    assert lines[0].startswith("ok") and "03-tiny" in lines[0] and "exercises 1 ✓ 0 ✗ 0 –" in lines[0], lines
    assert lines[0].rstrip().endswith("findings 1") and " s " in lines[0], lines
    assert lines[1] == f"Report: {Path('out') / 'index.html'}", lines
    out = workshop_dir / "out"
    assert not (out / "01-tiny.ipynb").exists() and (out / "03-tiny.ipynb").exists()

    executed = nbformat.read(str(out / "03-tiny.ipynb"), as_version=4)
    datas = [o.get("data", {}) for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert sum(report.PLOTLY_MIME in d for d in datas) == 1
    assert not any("text/html" in d for d in datas if report.PLOTLY_MIME in d), "no HTML copy of a figure"
    assert (out / "03-tiny.ipynb").stat().st_size < 100_000, "no plotly.js in the executed notebook"

    index = (out / "index.html").read_text()
    assert "<strong>Measured:</strong> this cluster has 1 node(s)." in index
    assert "✓ Right: measured here 1." in index and "1 ✓ 0 ✗ 0 –" in index
    assert 'href="03-tiny.html"' in index and 'href="03-tiny.ipynb"' in index and "01-tiny" not in index
    server = report.run_info(str(lab["kubeconfig"]), None, True)["server"]
    assert server.startswith("https://127.0.0.1:") and server in index and "quick parameters, solutions on" in index

    page, summary = open_offline([out / "03-tiny.html", out / "index.html"])
    assert page["refused"] == [] and summary["refused"] == [], (page["refused"], summary["refused"])
    assert page["errors"] == [], page["errors"]
    assert page["divs"] == 1 and len(page["figures"]) == 1 and all(w > 100 and h > 100 for w, h in page["figures"])
    assert page["images"] == [1], "the markdown's picture is embedded"
    html = (out / "03-tiny.html").read_text()
    assert html.count("window.Plotly = Plotly") == 1, "plotly.js once per file"
    print(f"workshop --notebooks 03 and the offline check: {time.monotonic() - t0:.1f} s")


def test_workshop_says_which_notebooks_exist(workshop_dir):
    run = workshop(workshop_dir, {**os.environ, "KUBECONFIG": str(workshop_dir / "none.yaml")}, "--notebooks", "07")
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "01 (01-tiny), 03 (03-tiny)" in run.stderr, run.stderr


def test_workshop_quick_and_full_exclude_each_other(workshop_dir):
    run = workshop(workshop_dir, dict(os.environ), "--quick", "--full")
    assert run.returncode == 2 and "not allowed with argument" in run.stderr and "Traceback" not in run.stderr


def test_report_reads_status_findings_and_checks(tmp_path):
    """A failed run and the test suite's wrong-answer cells, read from a notebook made here (no kernel)."""
    v4 = nbformat.v4
    check = "exercises.check(answer, measured)"
    nb = v4.new_notebook(cells=[
        v4.new_code_cell("print(cluster.describe())", outputs=[v4.new_output("stream", name="stdout", text="✓ metrics API\n")]),
        v4.new_code_cell(check, outputs=[v4.new_output("stream", name="stdout", text="✓ Right: 1.\nsomething else\n– Cannot check here: no metrics\n"),
                                         v4.new_output("display_data", data={"text/markdown": "**Skipped here:** no metrics API"}),
                                         v4.new_output("display_data", data={"text/markdown": "just markdown"})]),
        v4.new_code_cell(check, metadata={"tags": [report.IGNORE_TAG]},
                         outputs=[v4.new_output("stream", name="stdout", text="✗ Not quite: you said 2.\n")]),
        v4.new_code_cell(check, outputs=[v4.new_output("stream", name="stdout", text="✎ Write your answer in the cell above\n"),
                                         v4.new_output("error", ename="ExperimentFailed", evalue="the pod never started", traceback=[])]),
    ])
    nb.metadata["papermill"] = {"duration": 12.5, "exception": True, "parameters": {"quick": True}}
    nbformat.write(nb, str(tmp_path / "02-x.ipynb"))
    run = report.read_run(tmp_path / "02-x.ipynb")
    assert not run.ok and run.error == "ExperimentFailed: the pod never started" and run.seconds == 12.5
    assert run.exercises() == "1 ✓ 0 ✗ 1 – 1 ✎" and run.findings == ["**Skipped here:** no metrics API"]
    page = report.write_index([run], tmp_path, report.run_info(None, None, True)).read_text()
    assert "FAILED" in page and "ExperimentFailed: the pod never started" in page and "<strong>Skipped here:</strong>" in page
