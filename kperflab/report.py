"""What a workshop run leaves a learner: each executed notebook as HTML that opens offline, and `out/index.html`, a
summary page linking them with their findings and exercise results.

Both work on executed notebooks alone (papermill's output), so they can be made again from an ``out/`` folder
without running anything:

- :func:`export_html`: one HTML file per notebook with no network reference (no require.js, MathJax, widget manager
  or mermaid from a CDN), plotly.js inlined once per file when the notebook has figures, every plotly figure
  (``application/vnd.plotly.v1+json``) drawn into a div by that copy, and the markdown's pictures embedded.
- :func:`read_run` reads status, time, findings (``**Measured:**``/``**Skipped here:**`` Markdown outputs) and
  exercise results (the ✓/✗/–/✎ lines `kperflab.exercises.check` prints, in cells that call it) of one executed
  notebook.
- :func:`write_index` writes the summary page.

Cells tagged ``report-ignore`` are left out of findings and results (the test suite's wrong-answer cells).
"""

from __future__ import annotations

import base64
import copy
import html
import json
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
FINDING_PREFIXES = ("**Measured:**", "**Skipped here:**")
CHECK_MARKS = ("✓", "✗", "–", "✎")  # right, wrong, cannot check here, not answered
IGNORE_TAG = "report-ignore"

# The nbconvert "lab" page without a byte from the network: no require.js, MathJax, mermaid or widget manager (the
# notebooks use none of them: no LaTeX, no mermaid; the only widgets a batch run leaves are closed progress bars), and
# plotly.js inline once, before the first figure, when the notebook has figures.
_TEMPLATE = "kperflab-offline.html.j2"
_TEMPLATE_SOURCE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
{%- if resources.kperflab_plotlyjs -%}
<script type="text/javascript">{{ resources.kperflab_plotlyjs }}</script>
{%- endif -%}
{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _figure_html(figure: dict[str, Any]) -> str:
    import plotly.io as pio

    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False)


def _is_plotly_bundle(html_text: str) -> bool:
    """The old ``notebook`` renderer's first output: plotly.js itself (4.8 MB), which the page's own copy replaces."""
    return "window.PlotlyConfig" in html_text and len(html_text) > 100_000


_IMG_MD = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_IMG_TAG = re.compile(r"(<img\b[^>]*\bsrc=[\"'])([^\"']+)([\"'])", re.I)


def _attach_images(cell: Any, base: Path) -> None:
    """Relative pictures of a markdown cell (``../images/x.png``) become cell attachments, which nbconvert writes as
    data URLs (its ``embed_images`` refuses paths outside the notebook's own folder)."""
    attachments = dict(cell.get("attachments") or {})

    def attach(src: str) -> str | None:
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.I) or src.startswith("/"):
            return None  # a URL, data:, attachment: or absolute path: left as written
        path = (base / src).resolve()
        mime = mimetypes.guess_type(path.name)[0]
        if not path.is_file() or not mime or not mime.startswith("image/"):
            return None
        name = path.name
        attachments[name] = {mime: base64.b64encode(path.read_bytes()).decode("ascii")}
        return f"attachment:{name}"

    def sub(m: re.Match[str]) -> str:
        new = attach(m.group(2))
        return m.group(0) if new is None else f"{m.group(1)}{new}{m.group(3)}"

    source = _IMG_TAG.sub(sub, _IMG_MD.sub(sub, cell.source))
    if source != cell.source:
        cell.source = source
        cell["attachments"] = attachments


def offline_notebook(nb: Any, images_from: Path | None = None) -> tuple[Any, int]:
    """A copy of ``nb`` ready for the offline page, and how many plotly figures it draws."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)  # widget state would load the widget manager from a CDN
    figures = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown" and images_from is not None:
            _attach_images(cell, images_from)
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if WIDGET_VIEW in data:
                continue  # a batch run's progress bars: closed, nothing to show without their live kernel
            if PLOTLY_MIME in data:
                figure = data[PLOTLY_MIME]
                out = copy.deepcopy(out)
                out["data"] = {"text/html": _figure_html(figure if isinstance(figure, dict) else json.loads(figure))}
                figures += 1
            elif isinstance(data.get("text/html"), str) and _is_plotly_bundle(data["text/html"]):
                continue
            outputs.append(out)
        cell.outputs = outputs
    return nb, figures


def export_html(notebook: str | Path | Any, target: str | Path, images_from: str | Path | None = None) -> Path:
    """Write ``notebook`` (a path or a NotebookNode) as an HTML page that opens offline into ``target``.

    ``images_from``: the folder the markdown's relative pictures are relative to (the source notebook's folder);
    default: the folder of the notebook papermill ran (its ``input_path``), else of the notebook file."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    path = Path(notebook) if isinstance(notebook, (str, Path)) else None
    nb = nbformat.read(str(path), as_version=4) if path else notebook
    target = Path(target)
    if images_from is None:
        ran = (nb.metadata.get("papermill") or {}).get("input_path")
        images_from = Path(ran).parent if ran else (path.parent if path else target.parent)
    ready, figures = offline_notebook(nb, Path(images_from))
    exporter = HTMLExporter(template_name="lab", extra_loaders=[jinja2.DictLoader({_TEMPLATE: _TEMPLATE_SOURCE})],
                            template_file=_TEMPLATE, embed_images=True)
    resources = {"metadata": {"name": target.stem, "path": str(images_from)},
                 "kperflab_plotlyjs": _plotly_js() if figures else ""}
    body, _ = exporter.from_notebook_node(ready, resources=resources)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    return target


_NETWORK_REF = re.compile(
    r"<(?:script|img|iframe|embed|source|audio|video)\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//"
    r"|<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//"
    r"|@import\s+(?:url\()?\s*[\"']?(?:https?:)?//"
    r"|url\(\s*[\"']?(?:https?:)?//", re.I)


def network_references(page: str) -> list[str]:
    """What in an HTML page would load from the network (a script, stylesheet, picture or font by URL); links a
    reader may follow (``<a href>``) do not count."""
    return [m.group(0) for m in _NETWORK_REF.finditer(page)]


# -- what one executed notebook says --------------------------------------------------------------------------------

@dataclass
class NotebookRun:
    """One executed notebook, as the report shows it."""

    name: str  # the file's stem, e.g. 01-foundations
    ipynb: Path
    html: Path | None = None
    ok: bool = True
    error: str = ""  # the first error, one line
    seconds: float | None = None
    findings: list[str] = field(default_factory=list)  # Markdown, as the notebook displayed them
    checks: list[str] = field(default_factory=list)  # the lines exercises.check printed
    exercise_titles: list[str] = field(default_factory=list)  # per check line: the heading above it ("Exercise 1 — …")
    started: str = ""  # ISO time papermill started it
    parameters: dict[str, Any] = field(default_factory=dict)

    def exercises(self) -> str:
        """``3 ✓ 0 ✗ 1 –`` (and ``2 ✎`` when answers were left empty)."""
        counts = {m: sum(c.startswith(m) for c in self.checks) for m in CHECK_MARKS}
        parts = [f"{counts[m]} {m}" for m in CHECK_MARKS[:3]] + ([f"{counts['✎']} ✎"] if counts["✎"] else [])
        return " ".join(parts)

    def status(self) -> str:
        return "ok" if self.ok else "FAILED"


def read_run(path: str | Path, html_path: str | Path | None = None, seconds: float | None = None) -> NotebookRun:
    """Status, time, findings and exercise results of an executed notebook (papermill's metadata and outputs)."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    pm = nb.metadata.get("papermill") or {}
    run = NotebookRun(name=path.stem, ipynb=path, html=Path(html_path) if html_path else None,
                      seconds=seconds if seconds is not None else pm.get("duration"),
                      started=pm.get("start_time") or "", parameters=dict(pm.get("parameters") or {}))
    heading = ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = next((line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")), heading)
        if cell.cell_type != "code":
            continue
        ignored = IGNORE_TAG in (cell.metadata.get("tags") or [])
        checks_here = "check(" in cell.source  # cluster.describe() prints ✓ lines too: only a check cell's count
        for out in cell.get("outputs", []):
            if out.output_type == "error" and not run.error:
                run.error = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".strip()
            if ignored:
                continue
            if out.output_type == "stream" and out.get("name") == "stdout" and checks_here:
                lines = [line.rstrip() for line in out.get("text", "").splitlines() if line.startswith(CHECK_MARKS)]
                run.checks += lines
                run.exercise_titles += [heading] * len(lines)
            md = (out.get("data") or {}).get("text/markdown")
            if out.output_type in ("display_data", "execute_result") and isinstance(md, str) and md.startswith(FINDING_PREFIXES):
                run.findings.append(md)
    pending = any((c.metadata.get("papermill") or {}).get("status") == "pending" for c in nb.cells)
    run.ok = not run.error and not pm.get("exception") and not pending
    if not run.ok and not run.error:
        run.error = "the run stopped before the end" if pending else "papermill reported an exception"
    return run


# -- the summary page -----------------------------------------------------------------------------------------------

def run_info(kubeconfig: str | None, context: str | None, quick: bool, solutions: bool = False,
             server: str | None = None) -> dict[str, Any]:
    """When and where a run happened, for the report's header. The server is read from the kubeconfig (no call)."""
    from . import __version__

    if server is None or context is None:
        try:
            from . import kubeconfig as kc

            loaded = kc.load(kubeconfig) if kubeconfig else None
            if loaded is not None:
                context = context or loaded.current_context()
                ctx = next((c.get("context") or {} for c in loaded.config.get("contexts") or []
                            if isinstance(c, dict) and c.get("name") == context), {})
                server = server or next((c.get("cluster", {}).get("server") for c in loaded.config.get("clusters") or []
                                         if isinstance(c, dict) and c.get("name") == ctx.get("cluster")), None)
        except Exception:  # noqa: BLE001 - the header says "unknown" rather than failing the report
            pass
    return {"server": server or "unknown", "context": context or "(current)", "kperflab": __version__,
            "mode": "quick" if quick else "full", "solutions": solutions,
            "written": datetime.now().astimezone().isoformat(timespec="seconds")}


def info_from_runs(runs: list[NotebookRun]) -> dict[str, Any]:
    """``run_info`` from the notebooks' own papermill parameters (for a report of notebooks run elsewhere)."""
    params = next((r.parameters for r in runs if r.parameters), {})
    return run_info(params.get("kubeconfig"), params.get("context"), bool(params.get("quick", False)),
                    bool(params.get("solutions", False)))


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.25rem;margin:2rem 0 .3rem}
.where{color:#555;font-size:.9rem} .where code{font-size:.85rem}
table.runs{border-collapse:collapse;margin:1rem 0} .runs td,.runs th{padding:.3rem .8rem;border-bottom:1px solid #ddd;
text-align:left} .ok{color:#137333;font-weight:600} .failed{color:#b3261e;font-weight:600}
.checks{list-style:none;background:#f6f8fa;padding:.5rem .8rem;border-radius:4px} .checks li{margin:.3rem 0} .finding{border-left:3px solid #4c8bf5;padding:.1rem .8rem;margin:.5rem 0}
.error{color:#b3261e} .links a{margin-right:1rem}
"""


def _markdown(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(text)


def _rel(target: Path | None, base: Path) -> str | None:
    if target is None or not target.exists():
        return None
    try:
        return target.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return target.resolve().as_uri()


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return html.escape(iso)


def _seconds(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.0f} s" if s < 120 else f"{int(s // 60)} min {s % 60:02.0f} s"


def write_index(runs: list[NotebookRun], out_dir: str | Path, info: dict[str, Any] | None = None,
                name: str = "index.html") -> Path:
    """Write the summary page (self-contained: inline CSS, no script, links relative to ``out_dir``)."""
    out_dir = Path(out_dir)
    info = info or info_from_runs(runs)
    e = html.escape
    rows, sections = [], []
    for r in runs:
        status = f'<span class="{"ok" if r.ok else "failed"}">{r.status()}</span>'
        rows.append(f'<tr><td><a href="#{e(r.name)}">{e(r.name)}</a></td><td>{status}</td><td>{_seconds(r.seconds)}</td>'
                    f'<td>{e(r.exercises())}</td><td>{len(r.findings)}</td></tr>')
        links = [f'<a href="{e(href)}">{label}</a>' for label, href in
                 (("HTML", _rel(r.html, out_dir)), ("notebook (.ipynb)", _rel(r.ipynb, out_dir))) if href]
        body = [f'<h2 id="{e(r.name)}">{e(r.name)}</h2>',
                f'<p>{status} · {_seconds(r.seconds)} · exercises: {e(r.exercises())} · '
                f'<span class="links">{" ".join(links)}</span></p>']
        if r.error:
            body.append(f'<p class="error">{e(r.error)}</p>')
        if r.findings:
            body.append("<h3>Findings</h3>")
            body += [f'<div class="finding">{_markdown(f)}</div>' for f in r.findings]
        if r.checks:
            body.append("<h3>Exercises</h3>")
            body.append('<ul class="checks">' + "".join(
                f"<li>{f'<b>{e(t)}</b>: ' if t else ''}{e(c)}</li>"
                for c, t in zip(r.checks, r.exercise_titles + [""] * len(r.checks), strict=False)) + "</ul>")
        sections.append("\n".join(body))
    started = min((r.started for r in runs if r.started), default="")
    when = _when(started) if started else e(str(info["written"]))
    where = (f'Ran {when} against <code>{e(str(info["server"]))}</code> (context <code>{e(str(info["context"]))}</code>), '
             f'{e(str(info["mode"]))} parameters{", solutions on" if info.get("solutions") else ""}, '
             f'kperflab {e(str(info["kperflab"]))}.')
    page = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kperflab workshop report</title><style>{_CSS}</style></head>
<body>
<h1>kperflab workshop report</h1>
<p class="where">{where}</p>
<table class="runs"><tr><th>notebook</th><th>status</th><th>time</th><th>exercises</th><th>findings</th></tr>
{chr(10).join(rows)}
</table>
<p class="where">Exercises: ✓ right · ✗ not quite · – cannot be checked on this cluster · ✎ not answered.
Findings are what this run measured.</p>
{chr(10).join(sections)}
</body>
</html>
"""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    target.write_text(page, encoding="utf-8")
    return target


def build(out_dir: str | Path, notebooks: list[str | Path] | None = None, info: dict[str, Any] | None = None,
          make_html: bool = True) -> Path:
    """The report of executed notebooks already in ``out_dir`` (``NN-name.ipynb``; default: all of them), with each
    one's offline HTML made again when ``make_html``."""
    out_dir = Path(out_dir)
    paths = [Path(p) for p in notebooks] if notebooks else sorted(out_dir.glob("[0-9][0-9]-*.ipynb"))
    runs = []
    for p in paths:
        page = p.with_suffix(".html")
        if make_html:
            export_html(p, page)
        runs.append(read_run(p, page))
    return write_index(runs, out_dir, info)


def main(argv: list[str] | None = None) -> int:
    """``python -m kperflab.report [OUT]``: the HTML and the report of the executed notebooks in OUT (default out/)
    made again, without running anything."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0] if args else "out")
    if not sorted(out_dir.glob("[0-9][0-9]-*.ipynb")):
        print(f"kperflab: no executed notebooks (NN-name.ipynb) in {out_dir}; run `kperflab workshop` first.",
              file=sys.stderr)
        return 1
    print(f"Report: {build(out_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
