"""`make workshop` / `kperflab workshop`: run the notebooks with papermill into out/, against the configured cluster
or a lab started for the run (and stopped after it); each executed notebook is also written as HTML that opens offline,
and `out/index.html` (`kperflab.report`) sums up the run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import cluster
from .errors import BadInput, ConfigError, KperflabError


def notebook_dirs() -> list[Path]:
    """Where the workshop notebooks may be: ./notebooks, then the project's own (next to the installed package)."""
    here = Path.cwd() / "notebooks"
    project = Path(__file__).resolve().parents[1] / "notebooks"
    return list(dict.fromkeys([here, project]))


def notebooks() -> list[Path]:
    """The workshop notebooks in order (``NN-name.ipynb``) from the first place that has them."""
    for d in notebook_dirs():
        found = sorted(d.glob("[0-9][0-9]-*.ipynb"))
        if found:
            return found
    raise KperflabError(f"No workshop notebooks (NN-name.ipynb) in {' or '.join(str(d) for d in notebook_dirs())}.",
                        hint="Run `kperflab workshop` from the kperflab repository, where `make workshop` runs.")


def configured_cluster(kubeconfig: str | None, context: str | None) -> tuple[bool, str | None, str]:
    """``(start_the_lab, kubeconfig, why)``: the kubeconfig to run against (a KUBECONFIG value; None in a pod), or
    ``start_the_lab`` with the reason when nothing is configured. A cluster the user configured (--kubeconfig,
    KUBECONFIG, ~/.kube/config, --context) that does not answer is an error, not a reason to quietly run somewhere
    else; only the lab's own kubeconfig of a lab that is down counts as nothing."""
    try:
        conn = cluster.load(kubeconfig, context)
    except ConfigError as exc:
        if kubeconfig or context or os.environ.get("KUBECONFIG"):
            raise
        return True, None, f"No cluster is configured ({exc.message})"
    try:
        cluster.server_version(conn)
    except KperflabError as exc:
        if conn.origin != "lab":
            raise
        return True, None, f"The lab's kubeconfig is there but the lab does not answer ({exc.message})."
    return False, conn.kubeconfig, ""


def select(nbs: list[Path], wanted: str | None) -> list[Path]:
    """The notebooks ``--notebooks 01,03`` names, by number prefix (``1`` is ``01``; a whole name works too), in
    the workshop's order. A name that matches none is one sentence listing what exists (:class:`BadInput`)."""
    if not wanted:
        return nbs
    chosen: list[Path] = []
    for token in (t.strip() for t in wanted.split(",")):
        if not token:
            continue
        key = token.zfill(2) if token.isdigit() else token.removesuffix(".ipynb")
        hits = [nb for nb in nbs if nb.stem == key or nb.stem.split("-", 1)[0] == key]
        if not hits:
            have = ", ".join(f"{nb.stem.split('-', 1)[0]} ({nb.stem})" for nb in nbs)
            raise BadInput(f"--notebooks {wanted}: there is no notebook {token!r} in {nbs[0].parent}; it has {have}.")
        chosen += [h for h in hits if h not in chosen]
    if not chosen:
        raise BadInput(f"--notebooks {wanted!r} names no notebook; give numbers such as 01,03.")
    return [nb for nb in nbs if nb in chosen]


def run(kubeconfig: str | None, context: str | None, out: str = "out", quick: bool = True,
        only: str | None = None, solutions: bool = False, namespace: str | None = None) -> int:
    """Run the chosen notebooks (``only``: ``"01,03"``; default all), one line each (status, time, exercise results,
    findings), each also as offline HTML; then the report ``<out>/index.html``. Exit status 1 when one failed."""
    from . import report

    nbs = select(notebooks(), only)  # a bad selection is said before anything starts
    started_lab = False
    start_lab, kc, why = configured_cluster(kubeconfig, context)
    if start_lab:
        print(f"{why} Starting the lab for this run.")
        from .lab import control

        control.up(metric_resolution="5s")  # the workshop samples faster than the default 15s
        started_lab = True
        kc = str(control.read_state()["kubeconfig"])  # type: ignore[index]
    info = report.run_info(kc, context, quick, solutions)
    os.environ["KPERFLAB_HEADLESS"] = "1"  # nobody watches a batch run: live widgets show one snapshot
    outdir = Path(out)
    runs: list[report.NotebookRun] = []
    try:
        import papermill as pm

        outdir.mkdir(parents=True, exist_ok=True)
        width = max(len(nb.stem) for nb in nbs)
        for nb in nbs:
            t0 = time.monotonic()
            target = outdir / nb.name
            target.unlink(missing_ok=True)  # a result of an earlier run must not pass for this one's
            failure = ""
            try:
                pm.execute_notebook(str(nb), str(target), kernel_name="python3", progress_bar=False, cwd=str(nb.parent),
                                    extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no kernel chatter on stderr
                                    parameters={"kubeconfig": kc, "context": context, "namespace": namespace,
                                                "quick": quick, "solutions": solutions})
            except Exception as exc:  # noqa: BLE001 - papermill raises PapermillExecutionError; any failure is reported
                lines = str(exc).strip().splitlines()
                failure = f"{type(exc).__name__}: {lines[-1] if lines else ''}".strip()
            took = time.monotonic() - t0
            if target.exists():
                try:
                    page: Path | None = report.export_html(target, target.with_suffix(".html"), images_from=nb.parent)
                except Exception as exc:  # noqa: BLE001 - the executed notebook is there; say why its HTML is not
                    page, failure = None, failure or f"its HTML could not be written ({type(exc).__name__}: {exc})"
                r = report.read_run(target, page, seconds=took)
            else:
                r = report.NotebookRun(name=nb.stem, ipynb=target, seconds=took)
            if failure:
                r.ok, r.error = False, r.error or failure
            runs.append(r)
            print(f"{r.status():6} {nb.stem:{width}}  {_took(took):>10}  exercises {r.exercises()}  "
                  f"findings {len(r.findings)}" + (f"  ({r.error})" if r.error else ""), flush=True)
    finally:
        if started_lab:
            from .lab import control

            control.down()
    if runs:
        index = report.write_index(runs, outdir, info)
        print(f"Report: {index}")
    return 1 if any(not r.ok for r in runs) else 0


def _took(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"
