"""`make workshop` / `kperflab workshop`: run every notebook with papermill into out/, against the
configured cluster or a lab started for the run (and stopped after it)."""

from __future__ import annotations

import time
from pathlib import Path

from . import cluster
from .errors import KperflabError


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


def run(kubeconfig: str | None, context: str | None, out: str = "out", quick: bool = True) -> int:
    nbs = notebooks()
    started_lab = False
    try:
        conn = cluster.load(kubeconfig, context)
        cluster.server_version(conn)
        kc = str(conn.kubeconfig) if conn.kubeconfig else None
    except KperflabError as exc:
        if kubeconfig:
            raise
        print(f"No reachable cluster: {exc.message} Starting the lab for this run.")
        from .lab import control

        control.up(metric_resolution="5s")  # the workshop samples faster than the default 15s
        started_lab = True
        kc = str(control.read_state()["kubeconfig"])  # type: ignore[index]
    failed = 0
    import os

    os.environ["KPERFLAB_HEADLESS"] = "1"  # nobody watches a batch run: live widgets show one snapshot
    try:
        import papermill as pm

        outdir = Path(out)
        outdir.mkdir(parents=True, exist_ok=True)
        for nb in nbs:
            t0 = time.monotonic()
            target = outdir / nb.name
            try:
                pm.execute_notebook(str(nb), str(target), parameters={"kubeconfig": kc, "context": context, "quick": quick},
                                    kernel_name="python3", progress_bar=False, cwd=str(nb.parent))
                ok = True
            except Exception as exc:  # noqa: BLE001 - papermill raises PapermillExecutionError; any failure is reported
                ok = False
                print(f"  {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}")
            _html(target)
            failed += not ok
            print(f"{'ok    ' if ok else 'FAILED'} {nb.name} ({time.monotonic() - t0:.1f}s) → {target}")
    finally:
        if started_lab:
            from .lab import control

            control.down()
    return 1 if failed else 0


def _html(nb: Path) -> None:
    if not nb.exists():
        return
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(nb), as_version=4))
    nb.with_suffix(".html").write_text(body)
