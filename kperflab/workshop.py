"""`make workshop` / `kperflab workshop`: run every notebook with papermill into out/, against the
configured cluster or a lab started for the run (and stopped after it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import cluster
from .errors import ConfigError, KperflabError


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


def run(kubeconfig: str | None, context: str | None, out: str = "out", quick: bool = True) -> int:
    nbs = notebooks()
    started_lab = False
    start_lab, kc, why = configured_cluster(kubeconfig, context)
    if start_lab:
        print(f"{why} Starting the lab for this run.")
        from .lab import control

        control.up(metric_resolution="5s")  # the workshop samples faster than the default 15s
        started_lab = True
        kc = str(control.read_state()["kubeconfig"])  # type: ignore[index]
    failed = 0
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
