"""Run the workshop notebooks as a learner does: JupyterLab in a real browser, Run All, and check what shows.

    .venv/bin/python scripts/browser-run.py --kubeconfig ~/.kube/config          # a cluster of yours
    .venv/bin/python scripts/browser-run.py --lab                                # a private lab, down afterwards
    .venv/bin/python scripts/browser-run.py --lab --notebooks 01,04 --out out/browser

JupyterLab is started from this interpreter's environment on 127.0.0.1 (a free port, a random token, no browser of
its own) in a temporary root that holds copies of ``notebooks/*.ipynb`` and ``images/``, with its configuration,
workspaces and runtime files in temporary directories, ``KUBECONFIG`` set to the cluster's kubeconfig and
``KPERFLAB_HEADLESS`` unset (so ``live_top`` is live, as for a person). Debian's chromium (``/usr/bin/chromium``),
driven by Playwright, opens each notebook in a fresh JupyterLab workspace, waits for its kernel, and runs
Run → Run All Cells from the menu bar. When every code cell has run (an execution count each, none pending, the
kernel idle; bounded per notebook) it checks:

- no error output (``output_type: "error"`` in the notebook's model, which JupyterLab renders as
  ``application/vnd.jupyter.stderr`` like plain stderr, so the model says which is which; stderr text such as warnings
  is reported, not failed);
- every plotly figure drawn with a size: as many ``.js-plotly-plot`` elements in the notebook's outputs as it has
  ``application/vnd.plotly.v1+json`` outputs, each wider and taller than 0 with its ``.main-svg`` layer;
- ipywidgets rendered: no "Error displaying widget" or "Loading widget..." left;
- notebook 04's live dashboard (``.kperflab-live-top``): its figure appears (60 s at most), changes between two reads
  about 6 s apart (title and bar values), and after a click on its ``.kperflab-live-top-stop`` button says "Stopped"
  and stays the same over two reads 6 s apart.

**Quick parameters:** each copy's parameters cell gets ``quick = True`` (the notebook's own smaller, faster runs);
everything else keeps the learner's defaults (``solutions = False``: the exercise cells print "–" for an unanswered
exercise instead of checking an answer).

A full-page screenshot of each notebook after its run goes to ``OUT/NN-name.png`` (the dashboard's, before and after
Stop, to ``OUT/04-measuring-live-top-{running,stopped}.png``), one line per notebook is printed and ``OUT/summary.json``
is written. Each kernel is shut down cleanly after its notebook (kperflab deletes the notebook's workspaces, the
dashboard's included, at kernel exit); then no ``kperflab-*`` namespace made by this run's kernels may be left.
Everything started here (JupyterLab, kernels, chromium, the lab) ends in ``finally``, also on SIGTERM.
Exit status: 0 when everything passed, 1 when a check failed, 124 when ``--timeout`` ran out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
QUICK_LINE = "quick = True  # set by scripts/browser-run.py: the notebook's quick parameters"
DASHBOARD = "04"  # the notebook with the live dashboard (contract: .kperflab-live-top)
VIEWPORT = {"width": 1400, "height": 900}
MAX_SHOT_HEIGHT = 16000  # chromium's largest texture; taller notebooks are cut there


class Stop(BaseException):
    """SIGTERM or the run's --timeout: unwind through every finally."""

    def __init__(self, why: str, status: int) -> None:
        super().__init__(why)
        self.status = status


# -- the notebook copies ----------------------------------------------------------------------------------------------

def quick_source(source: str) -> str:
    """The parameters cell's source with ``quick = True`` (the line ``quick = …`` replaced, else one added)."""
    lines = source.splitlines()
    out, done = [], False
    for line in lines:
        if re.match(r"\s*quick\s*=", line) and not done:
            out.append(QUICK_LINE)
            done = True
        else:
            out.append(line)
    if not done:
        out.append(QUICK_LINE)
    return "\n".join(out)


def quick_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """The notebook (nbformat JSON) with ``quick = True`` in its parameters cell (tag ``parameters``); a notebook
    without one gets a parameters cell first."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            cell["source"] = quick_source(src)
            return nb
    nb["cells"].insert(0, {"cell_type": "code", "execution_count": None, "id": "browser-run-parameters",
                           "metadata": {"tags": ["parameters"]}, "outputs": [], "source": QUICK_LINE})
    return nb


def select(names: str | None, source: Path = ROOT / "notebooks") -> list[Path]:
    every = sorted(source.glob("[0-9][0-9]-*.ipynb"))
    if not names:
        return every
    wanted = [n.strip().zfill(2) for n in names.split(",") if n.strip()]
    chosen = [p for p in every if p.name[:2] in wanted]
    missing = sorted(set(wanted) - {p.name[:2] for p in chosen})
    if missing:
        raise SystemExit(f"browser-run: no notebook {', '.join(missing)} in notebooks/ "
                         f"(there are {', '.join(p.name[:2] for p in every)})")
    return chosen


def make_root(root: Path, notebooks: list[Path]) -> None:
    (root / "notebooks").mkdir(parents=True)
    for src in notebooks:
        nb = quick_notebook(json.loads(src.read_text()))
        (root / "notebooks" / src.name).write_text(json.dumps(nb, indent=1))
    if (ROOT / "images").is_dir():
        shutil.copytree(ROOT / "images", root / "images")


# -- JupyterLab -------------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server of this run (its own session; kernels are found by their parent)."""

    def __init__(self, root: Path, tmp: Path, kubeconfig: Path, home: str | None) -> None:
        self.port, self.token = free_port(), secrets.token_urlsafe(24)
        self.base = f"http://127.0.0.1:{self.port}"
        settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        # no news or update toast over the screenshots (a learner would dismiss it)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "JUPYTER_CONFIG_DIR": str(tmp / "config"),
               "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"), "JUPYTER_DATA_DIR": str(tmp / "data"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("KPERFLAB_HEADLESS", None)
        if home:
            env["KPERFLAB_HOME"] = home
        jupyter_lab = Path(sys.executable).with_name("jupyter-lab")
        cmd = [str(jupyter_lab)] if jupyter_lab.exists() else [sys.executable, "-m", "jupyterlab"]
        cmd += ["--no-browser", "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
                f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
                "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the notebook's model, for the checks
                "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--KernelManager.shutdown_wait_time=60"]  # time for kperflab's atexit hook to delete workspaces
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = open(tmp / "jupyterlab.log", "w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.kernel_pids: set[int] = set()

    def api(self, method: str, path: str, timeout: float = 10) -> Any:
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                self.api("GET", "/api/status", timeout=3)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.3)

    def tail(self, n: int = 30) -> str:
        self.log.flush()
        self.log.seek(0)
        return "\n".join(self.log.read().splitlines()[-n:])

    def note_kernels(self) -> None:
        """Remember the server's kernel processes (their pid names the workspaces they make)."""
        self.kernel_pids |= set(children(self.proc.pid))

    def shutdown_kernel(self, kernel_id: str) -> None:
        """Shut one kernel down as JupyterLab's "Shut Down Kernel" does (a shutdown request, so atexit hooks run)."""
        with contextlib.suppress(urllib.error.HTTPError):
            self.api("DELETE", f"/api/kernels/{kernel_id}", timeout=90)

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(Exception):
                    for k in self.api("GET", "/api/kernels"):
                        self.shutdown_kernel(k["id"])
                left = children(self.proc.pid)
                with contextlib.suppress(Exception):
                    self.api("POST", "/api/shutdown")
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
                for pid in left:  # kernels run in sessions of their own
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        finally:
            self.log.close()


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (d / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                    out.append(int(d.name))
    return out


# -- in the page ------------------------------------------------------------------------------------------------------

# The notebook panel of a path, from the app JupyterLab exposes (--LabApp.expose_app_in_browser).
PANEL_JS = """(path) => {
  for (const w of window.jupyterapp.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.content.model) return w;
  }
  return null;
}"""

PROGRESS_JS = """(path) => {
  const panel = (__PANEL__)(path);
  if (!panel) return null;
  const cells = panel.content.model.cells;
  let code = 0, empty = 0, counted = 0, errors = 0;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    code++;
    if (!c.sharedModel.getSource().trim()) { empty++; continue; }
    if (c.executionCount) counted++;
    for (let j = 0; j < c.outputs.length; j++) if (c.outputs.get(j).type === 'error') errors++;
  }
  const pending = [...panel.node.querySelectorAll('.jp-InputPrompt')].filter(e => e.textContent.includes('*')).length;
  const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {code, empty, counted, errors, pending, indicator: ind ? ind.dataset.status : null,
          kernel: kernel ? kernel.status : null, kernel_id: kernel ? kernel.id : null};
}""".replace("__PANEL__", PANEL_JS)

# Every output of the model (the plotly JSON left out) and what the DOM shows.
INSPECT_JS = """(path) => {
  const panel = (__PANEL__)(path);
  const cells = panel.content.model.cells;
  const outputs = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    for (let j = 0; j < c.outputs.length; j++) {
      const o = c.outputs.get(j).toJSON();
      const item = {cell: i, type: o.output_type, mimes: Object.keys(o.data || {})};
      if (o.output_type === 'error') item.text = (o.ename || '') + ': ' + (o.evalue || '');
      if (o.output_type === 'stream') { item.name = o.name; item.text = [].concat(o.text).join('').slice(0, 300); }
      outputs.push(item);
    }
  }
  const nb = panel.content.node;
  const inWidget = (e) => !!e.closest('.jupyter-widgets');
  const plots = [...nb.querySelectorAll('.jp-OutputArea-output.js-plotly-plot, .jp-OutputArea-output .js-plotly-plot')]
    .filter(e => !inWidget(e)).map(e => {
      const r = e.getBoundingClientRect();
      return {width: r.width, height: r.height, svg: !!e.querySelector('.main-svg .cartesianlayer, .main-svg'),
              title: (e.layout && e.layout.title && e.layout.title.text) || ''};
    });
  const widgets = [...nb.querySelectorAll('.jp-OutputArea-output')].filter(o => {
      const w = o.querySelector(':scope > .jupyter-widgets');
      if (!w) return false;
      const r = w.getBoundingClientRect();
      return r.width > 0 && r.height > 0;
    }).map(o => o.textContent.replace(/\\s+/g, ' ').trim().slice(0, 100));
  const text = nb.textContent;  // off-screen cells too (content-visibility skips their layout)
  const broken = [];
  for (const t of ['Error displaying widget', 'Loading widget...', 'Loading widget\u2026']) if (text.includes(t)) broken.push(t);
  // a tqdm bar closed before its total stays red ("danger") in JupyterLab: not an error, but a learner sees it
  const red = [...nb.querySelectorAll('.jp-OutputArea-output .progress-bar-danger')].map(e => {
      const o = e.closest('.jp-OutputArea-output');
      return o ? o.textContent.replace(/\\s+/g, ' ').trim().slice(0, 100) : '';
    });
  return {outputs, plots, widgets, broken, red};
}""".replace("__PANEL__", PANEL_JS)

LIVE_JS = """() => {
  const box = document.querySelector('.kperflab-live-top');
  if (!box) return {box: false};
  const plot = box.querySelector('.js-plotly-plot');
  const stop = box.querySelector('.kperflab-live-top-stop');
  const empty = box.querySelector('.kperflab-live-top-empty');
  const res = {box: true, empty: empty ? empty.innerText : null,
               button: stop ? {text: stop.innerText.trim(), disabled: stop.disabled} : null};
  if (plot) {
    const r = plot.getBoundingClientRect();
    res.plot = {width: r.width, height: r.height, svg: !!plot.querySelector('.main-svg'),
                title: (plot.layout && plot.layout.title && plot.layout.title.text) || '',
                // the values as drawn (plotly.js decodes the figure's base64 arrays into _fullData)
                data: (plot._fullData || []).map(t => ({x: t.x ? Array.from(t.x) : null, y: t.y ? Array.from(t.y) : null})),
                bars: [...plot.querySelectorAll('.bars .point path')].map(p => p.getAttribute('d'))};
  }
  return res;
}"""


def screenshot(page: Any, panel_path: str, file: Path) -> None:
    """The whole notebook: the window made as tall as the notebook's content, then put back."""
    height = page.evaluate("""(path) => {
      const panel = (__PANEL__)(path);
      const nb = panel.content.node;  // the notebook scrolls in its windowed panel
      const inner = nb.querySelector('.jp-WindowedPanel-outer') || nb;
      return Math.max(nb.scrollHeight, inner.scrollHeight) + panel.node.getBoundingClientRect().top;
    }""".replace("__PANEL__", PANEL_JS), panel_path)
    tall = int(min(max(VIEWPORT["height"], height + 200), MAX_SHOT_HEIGHT))
    page.set_viewport_size({"width": VIEWPORT["width"], "height": tall})
    page.wait_for_timeout(1500)  # plotly relayouts on resize
    page.evaluate("""(path) => {
      const nb = (__PANEL__)(path).content.node;
      for (const e of [nb, nb.querySelector('.jp-WindowedPanel-outer')]) if (e) e.scrollTop = 0;
    }""".replace("__PANEL__", PANEL_JS), panel_path)  # from the top: Run All leaves it at the last cell
    page.wait_for_timeout(500)
    page.screenshot(path=str(file))
    page.set_viewport_size(VIEWPORT)


def accept_dialogs(page: Any, notes: list[str]) -> None:
    """A modal dialog (say "Select Kernel") is what a learner would answer with its default: note it, accept it."""
    for text in page.eval_on_selector_all(".jp-Dialog", "els => els.map(e => e.innerText)"):
        notes.append("dialog: " + " / ".join(text.split("\n")[:3]))
        page.click(".jp-Dialog .jp-mod-accept")
        page.wait_for_timeout(500)


def run_notebook(page: Any, lab: Lab, nb: Path, out: Path, bound: float) -> dict[str, Any]:
    path = f"notebooks/{nb.name}"
    res: dict[str, Any] = {"notebook": nb.stem, "problems": [], "notes": []}
    started = time.monotonic()
    deadline = started + bound
    page.set_default_timeout(60_000)
    page.goto(f"{lab.base}/lab/workspaces/browser-run-{nb.stem}/tree/{path}?token={lab.token}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=90_000)
    page.wait_for_function(f"(path) => !!({PANEL_JS})(path)", arg=path, timeout=90_000)
    page.wait_for_timeout(500)
    accept_dialogs(page, res["notes"])
    page.wait_for_function(f"(path) => {{ const p = ({PROGRESS_JS})(path); return p && p.kernel === 'idle'; }}",
                           arg=path, timeout=120_000)
    # Run → Run All Cells, from the menu bar
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    clicked = time.monotonic()
    quiet_since = None
    prog: dict[str, Any] = {}
    while True:
        page.wait_for_timeout(1000)
        prog = page.evaluate(PROGRESS_JS, path) or {}
        lab.note_kernels()
        idle = prog.get("pending") == 0 and prog.get("kernel") == "idle"
        complete = prog.get("counted") == prog.get("code", 0) - prog.get("empty", 0)
        if idle and (complete or prog.get("errors")):
            if quiet_since and time.monotonic() - quiet_since >= 2:
                break
            quiet_since = quiet_since or time.monotonic()
        elif idle and time.monotonic() - clicked > 15:  # nothing runs, nothing pending, cells left without a count
            if quiet_since and time.monotonic() - quiet_since >= 10:
                break
            quiet_since = quiet_since or time.monotonic()
        else:
            quiet_since = None
        if time.monotonic() > deadline:
            res["problems"].append(f"not done after {bound:.0f} s: {prog}")
            break
    res["seconds"] = round(time.monotonic() - started, 1)
    res["run_seconds"] = round(time.monotonic() - clicked, 1)
    res["kernel_id"] = prog.get("kernel_id")
    runnable = prog.get("code", 0) - prog.get("empty", 0)
    res["cells"] = {"code": runnable, "ran": prog.get("counted", 0)}
    if prog.get("counted") != runnable:
        res["problems"].append(f"{runnable - prog.get('counted', 0)} of {runnable} code cells did not run")

    seen = page.evaluate(INSPECT_JS, path)
    errors = [o for o in seen["outputs"] if o["type"] == "error"]
    res["errors"] = [f"cell {o['cell']}: {o['text']}" for o in errors]
    if errors:
        res["problems"] += [f"error output in {e}" for e in res["errors"]]
    res["stderr"] = [f"cell {o['cell']}: {o['text'].strip().splitlines()[0] if o['text'].strip() else ''}"
                     for o in seen["outputs"] if o["type"] == "stream" and o.get("name") == "stderr"]
    plotly = sum("application/vnd.plotly.v1+json" in o["mimes"] for o in seen["outputs"])
    drawn = [p for p in seen["plots"] if p["width"] > 0 and p["height"] > 0 and p["svg"]]
    res["figures"] = {"outputs": plotly, "drawn": len(drawn), "sizes": [[round(p["width"]), round(p["height"])]
                                                                        for p in seen["plots"]]}
    if len(drawn) != plotly or len(seen["plots"]) != plotly:
        res["problems"].append(f"{plotly} plotly outputs, {len(seen['plots'])} drawn in the page, "
                               f"{len(drawn)} of them with a size and their SVG")
    res["widgets"] = {"outputs": sum("application/vnd.jupyter.widget-view+json" in o["mimes"] for o in seen["outputs"]),
                      "rendered": len(seen["widgets"]), "shown": seen["widgets"], "broken": seen["broken"]}
    res["problems"] += [f"progress bar left red (closed before its total; a learner reads it as an error): {t}" for t in seen["red"]]
    if seen["broken"]:
        res["problems"].append(f"widgets not rendered: {', '.join(seen['broken'])}")

    if nb.name.startswith(DASHBOARD):
        res["dashboard"] = dashboard(page, out, nb.stem, min(120.0, max(30.0, deadline + 120 - time.monotonic())))
        res["problems"] += res["dashboard"]["problems"]
    shot = out / f"{nb.stem}.png"
    screenshot(page, path, shot)
    res["screenshot"] = str(shot)
    res["ok"] = not res["problems"]
    return res


def _same(a: dict[str, Any], b: dict[str, Any]) -> tuple[bool, bool]:
    """(title equal, bar values equal) of two reads of the live figure (the values as plotly.js holds them, else the
    bars' SVG paths)."""
    pa, pb = a["plot"], b["plot"]
    values = pa["data"] == pb["data"] and (any(t["x"] for t in pa["data"]) or pa["bars"] == pb["bars"])
    return pa["title"] == pb["title"], values


def dashboard(page: Any, out: Path, stem: str, bound: float) -> dict[str, Any]:
    """The live dashboard: figure shows within 60 s, changes over ~6 s, stops on its button and then stays."""
    d: dict[str, Any] = {"problems": [], "reads": []}
    deadline = time.monotonic() + min(60.0, bound)
    state = page.evaluate(LIVE_JS)
    while not (state.get("plot") and state["plot"]["width"] > 0 and state["plot"]["svg"]):
        if time.monotonic() > deadline:
            d["problems"].append("live dashboard: " + ("no .kperflab-live-top box" if not state.get("box") else
                                 f"no figure within 60 s (shows: {state.get('empty') or 'nothing'})"))
            return d
        page.wait_for_timeout(1000)
        state = page.evaluate(LIVE_JS)
    box = page.locator(".kperflab-live-top").first
    box.scroll_into_view_if_needed()
    reads = [state]
    changed = False
    for _ in range(3):  # two reads ~6 s apart, at most twice more when the redraw brought the same values
        page.wait_for_timeout(6000)
        reads.append(page.evaluate(LIVE_JS))
        if not reads[-1].get("plot"):
            continue
        same_title, same_data = _same(reads[-2], reads[-1])
        if not same_data:
            changed = True
            break
    d["reads"] += [{"title": r.get("plot", {}).get("title"), "data": r.get("plot", {}).get("data")} for r in reads]
    d["changed"] = changed
    if not changed:
        d["problems"].append(f"live dashboard: the figure's values did not change over {6 * (len(reads) - 1)} s "
                             f"(titles: {[r.get('plot', {}).get('title') for r in reads]})")
    with contextlib.suppress(Exception):
        box.screenshot(path=str(out / f"{stem}-live-top-running.png"))
    button = page.locator(".kperflab-live-top .kperflab-live-top-stop").first
    if not button.count():
        d["problems"].append("live dashboard: no .kperflab-live-top-stop button")
        return d
    button.click()
    try:
        page.wait_for_function("() => { const b = document.querySelector('.kperflab-live-top .kperflab-live-top-stop');"
                               " return b && b.innerText.trim() === 'Stopped'; }", timeout=15_000)
    except Exception:  # noqa: BLE001 - the read below says what it shows
        pass
    page.wait_for_timeout(1000)
    a = page.evaluate(LIVE_JS)
    d["button"] = a.get("button")
    if not a.get("button") or a["button"]["text"] != "Stopped" or not a["button"]["disabled"]:
        d["problems"].append(f"live dashboard: after Stop the button shows {a.get('button')}, not a disabled 'Stopped'")
    page.wait_for_timeout(6000)
    b = page.evaluate(LIVE_JS)
    d["stopped_reads"] = [{"title": r.get("plot", {}).get("title"), "data": r.get("plot", {}).get("data")}
                          for r in (a, b)]
    if not (a.get("plot") and b.get("plot") and all(_same(a, b))):
        d["problems"].append("live dashboard: the figure still changed after Stop "
                             f"({a.get('plot', {}).get('title')!r} → {b.get('plot', {}).get('title')!r})")
    d["stopped"] = not any("after Stop" in p for p in d["problems"])
    with contextlib.suppress(Exception):
        box.screenshot(path=str(out / f"{stem}-live-top-stopped.png"))
    return d


# -- the cluster ------------------------------------------------------------------------------------------------------

def kperflab_namespaces(kubeconfig: Path) -> dict[str, str]:
    """name → holder annotation of every namespace kperflab manages on the cluster."""
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    items = api.list_namespace(label_selector="app.kubernetes.io/managed-by=kperflab", _request_timeout=20).items
    return {n.metadata.name: (n.metadata.annotations or {}).get("kperflab.dev/holder", "") for n in items}


def leftovers(kubeconfig: Path, before: set[str], kernel_pids: set[int], own_cluster: bool,
              wait: float = 120) -> list[str]:
    """The namespaces this run's kernels made that are still there after ``wait`` seconds (a Terminating namespace
    gets that long to go)."""
    host = socket.gethostname()

    def ours() -> list[str]:
        names = kperflab_namespaces(kubeconfig)
        return sorted(n for n, holder in names.items() if n not in before and (
            own_cluster or any(holder.endswith(f"@{host}/{pid}") for pid in kernel_pids)))

    deadline = time.monotonic() + wait
    left = ours()
    while left and time.monotonic() < deadline:
        time.sleep(2)
        left = ours()
    return left


# -- the run ----------------------------------------------------------------------------------------------------------

def run(kubeconfig: Path, notebooks: list[Path], out: Path, timeout: float, started: float,
        home: str | None, own_cluster: bool) -> int:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("*.png"), out / "summary.json"]:  # nothing of an earlier run is taken for this one's
        old.unlink(missing_ok=True)
    quick = QUICK_LINE.startswith("quick = True")
    summary: dict[str, Any] = {"quick": quick, "changed_parameters": {"quick": quick},
                               "unchanged": "everything else: the learner's defaults (solutions = False)",
                               "kubeconfig": str(kubeconfig), "notebooks": [], "ok": False}
    before = set(kperflab_namespaces(kubeconfig))
    lab = None
    try:
        with tempfile.TemporaryDirectory(prefix="kperflab-browser-") as tmp:
            tmpd = Path(tmp)
            make_root(tmpd / "root", notebooks)
            lab = Lab(tmpd / "root", tmpd, kubeconfig, home)
            try:
                lab.wait_ready()
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox", "--disable-dev-shm-usage"])
                    try:
                        for i, nb in enumerate(notebooks):
                            left = timeout - (time.monotonic() - started) - 150  # keep time for the clean-up
                            bound = left / (len(notebooks) - i) if i < len(notebooks) - 1 else left
                            context = browser.new_context(viewport=VIEWPORT)
                            page = context.new_page()
                            res: dict[str, Any] = {"notebook": nb.stem, "problems": []}
                            try:
                                res = run_notebook(page, lab, nb, out, max(60.0, bound))
                            except Stop as exc:
                                res["problems"].append(f"stopped ({exc}) before the notebook was done")
                                res["ok"] = False
                                raise
                            except Exception as exc:  # noqa: BLE001 - this notebook failed; the next one runs
                                res["problems"].append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
                                res["ok"] = False
                                with contextlib.suppress(Exception):
                                    page.screenshot(path=str(out / f"{nb.stem}.png"))
                                    res["screenshot"] = str(out / f"{nb.stem}.png")
                            finally:
                                lab.note_kernels()
                                with contextlib.suppress(Exception):
                                    for k in lab.api("GET", "/api/kernels"):
                                        lab.shutdown_kernel(k["id"])
                                with contextlib.suppress(Exception):
                                    context.close()
                                summary["notebooks"].append(res)
                            print(line(res), flush=True)
                    finally:
                        with contextlib.suppress(Exception):
                            browser.close()
            finally:
                lab.note_kernels()
                lab.stop()
    finally:
        try:
            left = leftovers(kubeconfig, before, lab.kernel_pids if lab else set(), own_cluster)
        except Exception as exc:  # noqa: BLE001 - the cluster did not answer: that is a failure too
            left = [f"(could not list namespaces: {exc})"]
        summary["leftover_namespaces"] = left
        summary["kernel_pids"] = sorted(lab.kernel_pids) if lab else []
        summary["seconds"] = round(time.monotonic() - started, 1)
        summary["ok"] = bool(summary["notebooks"]) and len(summary["notebooks"]) == len(notebooks) and all(
            r.get("ok") for r in summary["notebooks"]) and not left
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        if left:
            print(f"browser-run: left on the cluster: {', '.join(left)}", flush=True)
    print(f"browser-run: {'passed' if summary['ok'] else 'FAILED'} in {summary['seconds']:.0f} s "
          f"(quick = {quick} in each parameters cell, everything else the learner's defaults); {out / 'summary.json'}",
          flush=True)
    return 0 if summary["ok"] else 1


def line(r: dict[str, Any]) -> str:
    cells, figs, w = r.get("cells", {}), r.get("figures", {}), r.get("widgets", {})
    parts = [f"{r['notebook']:<16}", f"{r.get('seconds', 0):5.0f} s",
             f"cells {cells.get('ran', '?')}/{cells.get('code', '?')}",
             f"figures {figs.get('drawn', '?')}/{figs.get('outputs', '?')}",
             f"widgets {w.get('rendered', '?')}", f"errors {len(r.get('errors', []))}",
             f"stderr {len(r.get('stderr', []))}"]
    if "dashboard" in r:
        dash = r["dashboard"]
        parts.append(f"dashboard {'changed' if dash.get('changed') else 'STILL'}"
                     f"/{'stopped' if dash.get('stopped') else 'NOT STOPPED'}")
    parts.append("ok" if r.get("ok") else "FAILED: " + "; ".join(r.get("problems", [])))
    return "  ".join(parts) + "".join(f"\n    note: {n}" for n in r.get("notes", []))


def with_lab(notebooks: list[Path], out: Path, timeout: float, started: float) -> int:
    kperflab = Path(sys.executable).with_name("kperflab")
    with tempfile.TemporaryDirectory(prefix="kperflab-browser-home-") as home:
        env = {**os.environ, "KPERFLAB_HOME": home}
        env.pop("KUBECONFIG", None)
        try:
            up = subprocess.run([str(kperflab), "lab", "up", "--metric-resolution", "5s"], env=env,
                                stdin=subprocess.DEVNULL)
            if up.returncode != 0:
                print("browser-run: `kperflab lab up` failed", file=sys.stderr)
                return up.returncode
            return run(Path(home) / "kubeconfig.yaml", notebooks, out, timeout, started, home, own_cluster=True)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the lab's own clean-up is not cut short
            subprocess.run([str(kperflab), "lab", "down", "--purge"], env=env, stdin=subprocess.DEVNULL, timeout=300)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--kubeconfig", type=Path, help="the cluster to run the notebooks against")
    where.add_argument("--lab", action="store_true", help="start a private lab (kperflab lab up), run, take it down")
    ap.add_argument("--notebooks", help="which notebooks, by number: 01,04 (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "browser", help="screenshots and summary.json")
    ap.add_argument("--timeout", type=float, default=900, help="seconds for the whole run (default 900)")
    ap.add_argument("--source", type=Path, default=ROOT / "notebooks", help=argparse.SUPPRESS)  # tests: other notebooks
    ap.add_argument("--quick", action=argparse.BooleanOptionalAction, default=True,
                    help="quick = True in each parameters cell (default; --no-quick: the notebooks' full defaults)")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        ap.error(f"no chromium at {CHROMIUM}: install Debian's chromium (make setup runs scripts/system-deps.sh)")
    if not args.quick:
        global QUICK_LINE
        QUICK_LINE = "quick = False  # scripts/browser-run.py --no-quick: the notebook's full defaults"
    notebooks = select(args.notebooks, args.source)
    started = time.monotonic()

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.alarm(0)
        if signum == signal.SIGALRM:
            print(f"browser-run: stopped after {args.timeout:.0f} s (--timeout)", file=sys.stderr, flush=True)
            raise Stop("timeout", 124)
        print("browser-run: terminated; cleaning up", file=sys.stderr, flush=True)
        raise Stop("terminated", 143)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(int(args.timeout))
    try:
        if args.lab:
            return with_lab(notebooks, args.out.resolve(), args.timeout, started)
        if not args.kubeconfig.is_file():
            ap.error(f"no kubeconfig at {args.kubeconfig}")
        return run(args.kubeconfig.resolve(), notebooks, args.out.resolve(), args.timeout, started, None,
                   own_cluster=False)
    except Stop as exc:
        return exc.status
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    sys.exit(main())
