"""`kperflab doctor`: the preflight check an instructor asks every participant to run.

Each check gives a row: ✓ (ok), ✗ (fail, with one hint) or – (information, or skipped because an
earlier check failed). The exit code is 0 only when nothing failed.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass
from importlib import metadata

from . import cluster
from .errors import KperflabError, PermissionDenied
from .host import HostFacts

OK, FAIL, INFO = "ok", "fail", "info"
SYMBOLS = {OK: "✓", FAIL: "✗", INFO: "–"}
KEY_PACKAGES = ("jupyterlab", "ipywidgets", "kubernetes", "plotly", "papermill")


@dataclass
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _python_checks() -> list[Check]:
    rows = []
    ok = sys.version_info >= (3, 11)
    rows.append(Check("python", OK if ok else FAIL, platform.python_version(),
                      "" if ok else "Use Python 3.11 or newer (`make workshop` builds a .venv with python3)."))
    for pkg in KEY_PACKAGES:
        try:
            rows.append(Check(f"package {pkg}", OK, metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            rows.append(Check(f"package {pkg}", FAIL, "not installed", "Run `make workshop` (or `pip install -e .`)."))
    return rows


def _cluster_checks(kubeconfig: str | None, context: str | None, namespace: str | None,
                    timeout: float) -> list[Check]:
    rows: list[Check] = []
    skipped = ("api server", "flavour", "metrics api", "node stats", "create pods")

    def skip_rest(reason: str) -> list[Check]:
        done = {r.name for r in rows}
        return rows + [Check(n, INFO, f"skipped: {reason}") for n in skipped if n not in done]

    try:
        conn = cluster.load(kubeconfig, context, timeout)
    except KperflabError as exc:
        rows.append(Check("kubeconfig", FAIL, exc.message, exc.hint or ""))
        return skip_rest("no usable kubeconfig")
    ns = namespace or conn.namespace
    rows.append(Check("kubeconfig", OK, f"{conn.source} (context {conn.context}, namespace {ns})"))
    try:
        version = cluster.server_version(conn, timeout)
    except KperflabError as exc:
        rows.append(Check("api server", FAIL, exc.message, exc.hint or ""))
        return skip_rest("the API server did not answer")
    rows.append(Check("api server", OK, f"{conn.server} answers, version {cluster.git_version(version)}"))

    try:
        nodes = cluster.list_nodes(conn, timeout)
    except KperflabError:
        nodes = []  # not allowed to list nodes: flavour from the version alone
    flavour = cluster.detect_flavour(version, nodes)
    rows.append(Check("flavour", INFO, f"{flavour} ({len(nodes)} node{'s' if len(nodes) != 1 else ''} visible)"))
    runtimes = sorted({(n.get("metadata", {}).get("annotations") or {}).get("kperflab.dev/runtime")
                       or ((n.get("status") or {}).get("nodeInfo") or {}).get("containerRuntimeVersion") or "unknown"
                       for n in nodes})
    if runtimes:
        rows.append(Check("container runtime", INFO, "; ".join(runtimes)))

    try:
        mv = cluster.metrics_api_version(conn, timeout)
    except KperflabError as exc:
        rows.append(Check("metrics api", FAIL, exc.message, exc.hint or ""))
    else:
        if mv:
            rows.append(Check("metrics api", OK, f"metrics.k8s.io/{mv}"))
        else:
            hint = cluster.metrics_hint(flavour)
            rows.append(Check("metrics api", FAIL, "metrics.k8s.io is not served (kubectl top will say 'Metrics API not available')", hint))

    for name, verb, resource, sub, nsd in (("node stats", "get", "nodes", "proxy", ""), ("create pods", "create", "pods", "", ns)):
        what = f"{verb} {resource}{'/' + sub if sub else ''}{' in ' + nsd if nsd else ''}"
        try:
            allowed = cluster.can_i(conn, verb, resource, subresource=sub, namespace=nsd, timeout=timeout)
        except PermissionDenied as exc:
            rows.append(Check(name, FAIL, f"cannot ask the server ({exc.status} on selfsubjectaccessreviews)",
                              f"Ask your instructor to apply kperflab/manifests/participant-rbac.yaml for you ({what})."))
            continue
        except KperflabError as exc:
            rows.append(Check(name, FAIL, exc.message, exc.hint or ""))
            continue
        rows.append(Check(name, OK if allowed else FAIL, f"{what}: {'allowed' if allowed else 'denied'}",
                          "" if allowed else f"Ask your instructor for RBAC to {what} (see kperflab/manifests/participant-rbac.yaml)."))
    return rows


def _host_checks(facts: HostFacts) -> list[Check]:
    cg = {1: "v1", 2: "v2", None: "not mounted"}[facts.cgroup_version]
    if facts.cgroup_version == 1 and facts.hybrid_controllers:
        cg += (f" (hybrid: the cgroup2 mount holds {facts.hybrid_controllers}, which crun refuses; the lab runs crun in a "
               "private mount namespace without that mount, so crun sees cgroup v1 — nothing on the host changes)")
    oci = [why for ok, why in ((facts.root, "not root"), (facts.crun, "no crun (apt-get install crun)"),
                               (facts.overlay, "no overlayfs"), (facts.cgroup_version, "no cgroups")) if not ok]
    rows = [
        Check("cgroups", INFO, cg),
        Check("root", INFO, "yes" if facts.root else "no: the lab runs pods without cgroup limits"),
        Check("lab runtime", INFO, f"OCI: {facts.crun} runs each container from its image" if not oci else
              f"process runtime ({', '.join(oci)}): containers run as processes on this machine, not from their images"),
        Check("iptables", INFO, facts.iptables or "not found"),
        Check("nft", INFO, facts.nft or "not found"),
        Check("ipvs", INFO, "ip_vs loaded" if facts.ipvs else "no ip_vs module: the IPVS rows of 03-networking are skipped"),
    ]
    if facts.kubectl:
        rows.append(Check("kubectl", OK, facts.kubectl))
    else:
        rows.append(Check("kubectl", FAIL, "not on PATH", "Install it: `apt-get install kubernetes-client` (Debian) or see https://kubernetes.io/docs/tasks/tools/."))
    return rows


def run(kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None,
        timeout: float = cluster.DEFAULT_TIMEOUT, facts: HostFacts | None = None) -> list[Check]:
    """Run every check and return the rows.

    >>> rows = run(kubeconfig="/nonexistent")  # doctest: +SKIP
    """
    return _python_checks() + _cluster_checks(kubeconfig, context, namespace, timeout) + _host_checks(facts or HostFacts.read())


def exit_code(rows: list[Check]) -> int:
    """0 when no check failed; information rows do not count.

    >>> exit_code([Check("python", OK, "3.11.7"), Check("ipvs", INFO, "no ip_vs module")])
    0
    >>> exit_code([Check("kubeconfig", FAIL, "KUBECONFIG names /typo.yaml, and it does not exist.")])
    1
    """
    return 1 if any(r.status == FAIL for r in rows) else 0


def render(rows: list[Check]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="kperflab doctor", show_lines=False)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("result")
    table.add_column("next step")
    for r in rows:
        style = {OK: "green", FAIL: "red", INFO: "dim"}[r.status]
        table.add_row(f"[{style}]{SYMBOLS[r.status]}[/]", r.name, r.detail, r.hint)
    console = Console()
    console.print(table)
    failed = sum(r.status == FAIL for r in rows)
    console.print("Ready for the workshop." if not failed else f"{failed} check(s) failed: see 'next step'.")
