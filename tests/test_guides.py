"""The guides cannot rot: every shell command in docs/instructor.md and docs/self-paced.md runs here against the
session lab, from a working directory laid out like a checkout (`.venv` and `kperflab/` of this one, and small
notebooks in `./notebooks`, which `kperflab workshop` takes before the project's own). A ```console block either runs
or is marked ``<!-- not run here: REASON -->`` on the line above it; the instructor's sizing table is what
`kperflab sizing` prints; every message the troubleshooting table quotes occurs in kperflab's source."""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GUIDES = (ROOT / "docs" / "instructor.md", ROOT / "docs" / "self-paced.md")
NOT_RUN = re.compile(r"^<!-- not run here: (?P<why>.+\S) -->$")
SHELL_LANGS = {"", "bash", "sh", "shell", "console", "shell-session", "zsh"}


@dataclass
class Block:
    guide: str
    line: int
    lang: str
    body: list[str]
    not_run: str | None

    def commands(self) -> list[str]:
        """The `$ ` lines (a line ending in a backslash goes on); the lines between them are output."""
        cmds: list[str] = []
        cont = False
        for ln in self.body:
            if cont:
                cmds[-1] += "\n" + ln
            elif ln.startswith("$ "):
                cmds.append(ln[2:])
            else:
                continue
            cont = ln.endswith("\\")
        return cmds


def blocks(path: Path) -> list[Block]:
    out: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = NOT_RUN.match(lines[i - 1]) if i else None
        out.append(Block(path.name, i + 1, m[1], lines[i + 1:end], marker["why"] if marker else None))
        i = end + 1
    return out


def test_every_shell_block_is_console_and_run_or_marked() -> None:
    for guide in GUIDES:
        text = guide.read_text().splitlines()
        found = blocks(guide)
        for b in found:
            where = f"{b.guide}:{b.line}"
            assert b.lang not in SHELL_LANGS - {"console"}, f"{where}: shell commands go in ```console blocks"
            if b.lang == "console":
                assert b.commands(), f"{where}: a console block without a `$ ` command"
        markers = [n for n, ln in enumerate(text) if ln.startswith("<!-- not run here")]
        for n in markers:  # a marker names its reason and sits right above a console block
            assert NOT_RUN.match(text[n]) and text[n + 1] == "```console", f"{guide.name}:{n + 1}: a stray marker"
        assert any(b.not_run is None for b in found if b.lang == "console"), f"{guide.name}: nothing is run"


# -- the troubleshooting table ------------------------------------------------------------------------------------

@functools.cache
def _source_strings() -> list[str]:
    """Every string literal in kperflab's source; an f-string with ``…`` where its values go (adjacent literals are
    one string, as Python joins them)."""
    out: list[str] = []
    for f in (ROOT / "kperflab").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.JoinedStr):
                out.append("".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append(node.value)
    return out


def troubleshooting_quotes() -> list[str]:
    text = (ROOT / "docs" / "instructor.md").read_text()
    table = text[text.index("## 4. Troubleshooting"):]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| kperflab says")]
    quotes = []
    for row in rows:
        cells = [c for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        for cell in cells[:2]:  # what kperflab says, and the next step it prints
            quotes += re.findall(r"``\s(.+?)\s``", cell)
    return quotes


def in_source(quote: str, strings: list[str]) -> bool:
    """``quote`` with ``…`` for the varying parts: its fixed parts occur, in order, in one string of the source."""
    parts = [p for p in (s.strip() for s in quote.split("…")) if p]
    for s in strings:
        at = 0
        for p in parts:
            at = s.find(p, at)
            if at < 0:
                break
            at += len(p)
        else:
            return True
    return False


def test_troubleshooting_messages_occur_in_the_source() -> None:
    quotes = troubleshooting_quotes()
    assert len(quotes) >= 30, quotes
    strings = _source_strings()
    missing = [q for q in quotes if not in_source(q, strings)]
    assert not missing, f"docs/instructor.md §4 quotes messages kperflab no longer prints: {missing}"


def test_the_check_finds_a_message_that_is_not_there() -> None:
    strings = _source_strings()
    assert in_source("The API server at … is not reachable (…).", strings)
    assert not in_source("The API server at … is unreachable (…).", strings)
    assert not in_source("The kubeconfig … does not exist. Really.", strings)


# -- kperflab sizing: computed from the pod specs -----------------------------------------------------------------

def test_sizing_counts_the_specs_the_experiments_build() -> None:
    from kperflab import sizing, workloads

    # a request is the container's request, else its limit (as kube-apiserver defaults it)
    n = sizing.need([workloads.cpu_requests(cpu_limit="500m"), workloads.memory_allocator(memory_limit="64Mi"),
                     workloads.cpu_burner(cpu_request="250m", cpu_limit="1")])
    assert (n.pods, n.cpu, n.memory) == (3, 0.75, 64 << 20)
    # the notebooks' own parameters decide: 01's quick run has 3 CPU limits ("none", "500m", "100m"), its full run 5
    quick, full = sizing.notebook_peaks(quick=True), sizing.notebook_peaks(quick=False)
    assert (quick[0].need.pods, round(quick[0].need.cpu, 3)) == (4, 0.6)  # data_structures' 4 pods; 0.5 + 0.1 CPU
    assert (full[0].need.pods, round(full[0].need.cpu, 3)) == (5, 1.8)


# -- running the guides against the lab -----------------------------------------------------------------------------

def _tiny_notebook(title: str) -> dict[str, Any]:
    def code(src: str, tags: list[str] | None = None) -> dict[str, Any]:
        return {"cell_type": "code", "execution_count": None, "id": f"c{abs(hash(src)) % 10**8}",
                "metadata": {"tags": tags or []}, "outputs": [], "source": src}

    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "language_info": {"name": "python"}},
            "cells": [{"cell_type": "markdown", "id": "m0", "metadata": {}, "source": f"# {title}"},
                      code("kubeconfig = None\ncontext = None\nnamespace = None\nquick = False\nsolutions = False",
                           ["parameters"]),
                      code("import kperflab\nfrom IPython.display import Markdown, display\n"
                           "cluster = kperflab.connect(kubeconfig, context)\n"
                           "display(Markdown(f'**Measured:** {len(cluster.nodes)} node(s) answered.'))\n"
                           "print('✓ the cluster answered' if cluster.nodes else '✗ no node')")]}


def checkout(tmp: Path) -> Path:
    """A working directory like a checkout: this `.venv` and `kperflab/`, and two small notebooks."""
    work = tmp / "checkout"
    (work / "notebooks").mkdir(parents=True)
    for name in (".venv", "kperflab", "images"):
        (work / name).symlink_to(ROOT / name)
    for nb in ("01-tiny", "02-tiny"):
        (work / "notebooks" / f"{nb}.ipynb").write_text(json.dumps(_tiny_notebook(nb)))
    return work


def _cleanup(env: dict[str, str], work: Path) -> None:
    """What the guides' set-up made, in case a command failed before their clean-up ran (best effort, quiet)."""
    for cmd in (".venv/bin/kperflab lab user remove alice", "kubectl delete clusterrolebinding kperflab-bob",
                "kubectl delete -f kperflab/manifests/participant-rbac.yaml", "kubectl delete namespace kperflab-prepull"):
        subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True, timeout=60)


def _run_guide(guide: Path, work: Path, env: dict[str, str]) -> dict[str, str]:
    """Every command of ``guide``'s runnable console blocks, in order; each must exit 0. Command → its stdout."""
    ran: dict[str, str] = {}
    for b in blocks(guide):
        if b.lang != "console" or b.not_run:
            continue
        for cmd in b.commands():
            t0 = time.monotonic()
            res = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True, text=True, timeout=300)
            print(f"{time.monotonic() - t0:6.1f} s  {b.guide}: {cmd[:100]}")
            assert res.returncode == 0, (f"{b.guide}:{b.line}: `{cmd}` exited {res.returncode}\n"
                                         f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
            ran[cmd] = res.stdout
    return ran


def test_every_command_in_the_guides_runs(lab: dict[str, Any], tmp_path: Path) -> None:
    """The two guides run side by side (they touch different things: the instructor's users, roles and pre-puller,
    the learner's own workspaces; `kperflab clean --all-stale` never deletes a live workspace), each in its order."""
    from concurrent.futures import ThreadPoolExecutor

    work = checkout(tmp_path)
    env = {**os.environ, "KUBECONFIG": str(lab["kubeconfig"]), "KPERFLAB_HOME": str(lab["home"])}
    env.pop("KPERFLAB_HEADLESS", None)
    ran: dict[str, str] = {}
    try:
        with ThreadPoolExecutor(len(GUIDES)) as pool:
            for done in [pool.submit(_run_guide, g, work, env) for g in GUIDES]:
                ran.update(done.result())
    finally:
        _cleanup(env, work)

    # the instructor's sizing table is the command's output, word for word
    sizing = next(c for c in ran if " sizing " in c)
    text = (ROOT / "docs" / "instructor.md").read_text()
    shown = text.split("<!-- sizing:begin -->\n", 1)[1].split("<!-- sizing:end -->", 1)[0]
    assert shown.strip() == ran[sizing].strip(), "docs/instructor.md §1.5 differs from `" + sizing + "`"
    # `kperflab workshop` ran the small notebooks of ./notebooks and wrote the report it promises
    assert (work / "out" / "index.html").is_file()
    assert (work / "out" / "rehearsal" / "index.html").is_file()
    assert any("workshop" in c and "01-tiny" in out for c, out in ran.items()), "the workshop ran other notebooks"
    # the participant's kubeconfig really is the participant: doctor ran as bob, and bob may create pods
    assert any("can-i create pods" in c and out.strip() == "yes" for c, out in ran.items())
    # §1.3: the role grants what the notebooks create (04's HPAs too), but not PV deletion (the optional role does)
    assert any("can-i create horizontalpodautoscalers" in c and out.strip() == "yes" for c, out in ran.items())
    assert any("can-i delete persistentvolumes" in c and out.strip() == "no" for c, out in ran.items())
