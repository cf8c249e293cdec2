"""The `kperflab` command: a thin shell over the library and the lab.

    kperflab doctor [--json]
    kperflab lab up|down [--purge]|reset|status|logs
    kperflab lab user add|list|remove
    kperflab clean
    kperflab sizing [--participants N] [--quick]
    kperflab workshop [--notebooks 01,03] [--quick|--full] [--context C] [--kubeconfig K] [--solutions] [--out DIR]

User mistakes print one line with the next step and exit 1 (2 for bad usage); never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import KperflabError


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then the lab's)")
    p.add_argument("--context", help="kubeconfig context to use")
    p.add_argument("--namespace", "-n", help="namespace for the permission checks (default: the context's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kperflab", description="Kubernetes performance workshop tools.")
    parser.add_argument("--version", action="version", version=f"kperflab {__import__('kperflab').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("doctor", help="check this machine and the cluster before the workshop")
    _add_cluster_args(p)
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the API server (default 5)")

    lab = sub.add_parser("lab", help="the embedded one-node lab cluster")
    labsub = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    labsub.required = True
    up = labsub.add_parser("up", help="start the lab and write its kubeconfig")
    up.add_argument("--kubeconfig", help="where to write the kubeconfig (default ~/.kube/kperflab-lab.yaml)")
    up.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C stops the lab")
    up.add_argument("--port", type=int, default=0, help="API server port on 127.0.0.1 (default: a free one)")
    up.add_argument("--metric-resolution", help="metrics API resolution (default 15s)")
    up.add_argument("--timeout", type=float, default=30.0, help="seconds to wait until the lab is ready")
    up.add_argument("--runtime", choices=("auto", "oci", "process"), default="auto",
                    help="oci: containers from images by crun (needs root); process: containers as processes on this "
                         "machine; auto (default): oci where it can run")
    up.add_argument("--no-limits", action="store_true",
                    help="run pods without cgroup limits, as the lab must without root (to see what such a laptop shows)")
    up.add_argument("--kubelet-config", metavar="FILE",
                    help="a KubeletConfiguration YAML (kubelet.config.k8s.io/v1beta1) for the lab's kubelet: "
                         "serializeImagePulls, maxParallelImagePulls, imageGCHighThresholdPercent, …")
    up.add_argument("--registry-bandwidth", metavar="RATE",
                    help="rate of the slow registry link (tc tbf), e.g. 100mbit (default), 1gbit, 20mbit")
    up.add_argument("--imagefs-size", metavar="SIZE",
                    help="size of the lab's image filesystem (its own ext4), e.g. 4Gi (default), 1Gi")
    up.add_argument("--prometheus", action="store_true",
                    help="also run Prometheus in namespace monitoring (kperflab/manifests/prometheus.yaml; its image is "
                         "built once from Debian's prometheus package); on a running lab, installs it")
    down = labsub.add_parser("down", help="stop the lab (its objects are kept for the next `lab up`)")
    down.add_argument("--id", help="stop another lab listed by `kperflab lab status` (by its id) instead of this home's")
    down.add_argument("--purge", action="store_true",
                      help="also wipe its state: objects, CA, tokens, participants' kubeconfigs (same as `lab reset`)")
    labsub.add_parser("reset", help="stop the lab and wipe its state, as if it had never started (`down --purge`)")
    labsub.add_parser("status", help="list every lab on this machine; this one's health, node and pods")
    images = labsub.add_parser("images", help="what the lab's registry holds; --add builds a test image into it")
    images.add_argument("--add", metavar="NAME", help="build a test image named NAME (e.g. big:100mb) into the registry")
    images.add_argument("--size", help="its size, e.g. 10MB, 100MB, 500MB (incompressible bytes)")
    images.add_argument("--layers", type=int, default=1, help="how many layers it has (default 1)")
    images.add_argument("--compressible", action="store_true", help="compressible bytes instead of random ones")
    user = labsub.add_parser("user", help="participant users: ServiceAccount-backed tokens and kubeconfigs, under RBAC")
    usersub = user.add_subparsers(dest="user_command", metavar="ACTION")
    usersub.required = True
    add = usersub.add_parser("add", help="make (or refresh) a user and write $KPERFLAB_HOME/users/NAME.kubeconfig")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--namespace", "-n", help="its namespace, made if missing (default kperflab-users)")
    add.add_argument("--clusterrole", help="bind this ClusterRole to it (in --namespace, else cluster-wide)")
    usersub.add_parser("list", help="the users `user add` made")
    rm = usersub.add_parser("remove", help="delete a user's ServiceAccount, bindings and kubeconfig")
    rm.add_argument("name", metavar="NAME")
    logs = labsub.add_parser("logs", help="show the lab's own log")
    logs.add_argument("--tail", type=int, default=100, help="lines from the end (0: all)")
    serve = labsub.add_parser("serve", help=argparse.SUPPRESS)
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--metric-resolution", default="15s")
    serve.add_argument("--kubeconfig")
    serve.add_argument("--no-limits", action="store_true")
    serve.add_argument("--runtime", default="auto")
    serve.add_argument("--kubelet-config")
    serve.add_argument("--registry-bandwidth", default="100mbit")
    serve.add_argument("--imagefs-size", default="4Gi")

    p = sub.add_parser("clean", help="delete your stale kperflab workspaces (namespaces a dead kernel left)")
    _add_cluster_args(p)
    p.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    p.add_argument("--all-stale", action="store_true",
                   help="also other users' stale workspaces (for an instructor); live ones are never deleted")

    p = sub.add_parser("sizing", help="the pods, CPU and memory the notebooks request at their peak, for a group of N")
    p.add_argument("--participants", "-N", type=int, default=1, metavar="N",
                   help="participants running the notebooks at the same time (default 1)")
    p.add_argument("--quick", action="store_true", help="the notebooks' quick parameters instead of their defaults")

    p = sub.add_parser("workshop", help="run the notebooks with papermill into out/, with offline HTML and a report "
                                        "out/index.html (starts the lab if no cluster is configured)")
    _add_cluster_args(p)
    p.add_argument("--notebooks", metavar="01,03", help="run only these notebooks, by number (default: all)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="full", action="store_false", default=False,
                      help="small, fast experiments (the default)")
    size.add_argument("--full", dest="full", action="store_true", default=False,
                      help="full-size experiments instead of quick ones")
    p.add_argument("--solutions", action="store_true", help="run the solution cells, so every exercise is answered")
    p.add_argument("--out", default="out", help="output folder (default out/)")
    return parser


def _doctor(args: argparse.Namespace) -> int:
    from . import doctor

    rows = doctor.run(args.kubeconfig, args.context, args.namespace, timeout=args.timeout)
    if args.json:
        print(json.dumps({"checks": [r.to_dict() for r in rows], "ok": doctor.exit_code(rows) == 0}, indent=2))
    else:
        doctor.render(rows)
    return doctor.exit_code(rows)


def _lab(args: argparse.Namespace) -> int:
    from .errors import BadInput
    from .lab import control

    if args.lab_command == "up":
        try:
            control.lab_settings(args.kubelet_config, args.registry_bandwidth, args.imagefs_size)
        except BadInput as exc:  # bad usage: one line, exit 2
            print(f"kperflab: {exc}", file=sys.stderr)
            return 2
        rc = control.up(kubeconfig=args.kubeconfig, foreground=args.foreground, port=args.port,
                        metric_resolution=args.metric_resolution, timeout=args.timeout, limits=not args.no_limits,
                        runtime=args.runtime, kubelet_config=args.kubelet_config,
                        registry_bandwidth=args.registry_bandwidth, imagefs_size=args.imagefs_size,
                        prometheus=args.prometheus)
        if rc == 0 and not args.foreground:
            _clean_after_restart()
        return rc
    if args.lab_command == "down":
        if args.id and args.purge:
            print("kperflab: --purge wipes this KPERFLAB_HOME's state; it does not go with --id. Run `kperflab lab "
                  "down --id ID`, then `kperflab lab reset` from that lab's KPERFLAB_HOME.", file=sys.stderr)
            return 2
        return control.down_by_id(args.id) if args.id else control.down(purge=args.purge)
    if args.lab_command == "reset":
        return control.reset()
    if args.lab_command == "status":
        return control.status()
    if args.lab_command == "logs":
        return control.logs(args.tail)
    if args.lab_command == "user":
        try:
            if args.user_command == "add":
                return control.user_add(args.name, args.namespace, args.clusterrole)
            if args.user_command == "remove":
                return control.user_remove(args.name)
        except BadInput as exc:  # a bad name: one line, exit 2
            print(f"kperflab: {exc}", file=sys.stderr)
            return 2
        return control.user_list()
    if args.lab_command == "images":
        return control.images(args.add, args.size, args.layers, args.compressible)
    if args.lab_command == "serve":
        return control.serve(port=args.port, metric_resolution=args.metric_resolution, kubeconfig=args.kubeconfig,
                             limits=not args.no_limits, runtime=args.runtime, kubelet_config=args.kubelet_config,
                             registry_bandwidth=args.registry_bandwidth, imagefs_size=args.imagefs_size)
    raise AssertionError(args.lab_command)


def _clean_after_restart() -> None:
    """After `lab up` brought back a kept store: delete the workspaces whose notebooks died with the lab (their
    leases are no longer renewed), and say so in one line. A failure here never fails `lab up`."""
    from .lab import control

    st = control.read_state()
    if not st or not st.get("restored"):
        return
    try:
        from . import cluster, workspace

        # most restarts have no workspace at all: ask with the lab's own client before loading the kubernetes one
        found = control.admin_get(f"/api/v1/namespaces?labelSelector={workspace.MANAGED_BY}%3Dkperflab&limit=1")
        if not (found or {}).get("items"):
            return
        report = workspace.clean(cluster.load(st.get("kubeconfig")), all_stale=True)
        print(f"Workspaces of notebooks that ran before: {report.summary()}")
    except Exception as exc:  # noqa: BLE001 - the lab is up; cleaning is a courtesy
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"Could not clean stale workspaces ({first}); `kperflab clean --all-stale` tries again.")


def _clean(args: argparse.Namespace) -> int:
    from . import cluster, workspace

    conn = cluster.load(args.kubeconfig, args.context)
    report = workspace.clean(conn, all_stale=args.all_stale, dry_run=args.dry_run)
    print("\n".join(report.lines(args.dry_run)))
    return 0


def _sizing(args: argparse.Namespace) -> int:
    from . import sizing

    print(sizing.table(args.participants, quick=args.quick))
    return 0


def _workshop(args: argparse.Namespace) -> int:
    from . import workshop
    from .errors import BadInput

    try:
        return workshop.run(args.kubeconfig, args.context, out=args.out, quick=not args.full, only=args.notebooks,
                            solutions=args.solutions, namespace=args.namespace)
    except BadInput as exc:  # a --notebooks that names none: one sentence with what exists, exit 2
        print(f"kperflab: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"doctor": _doctor, "lab": _lab, "clean": _clean, "sizing": _sizing, "workshop": _workshop}[args.command]
    try:
        return handler(args)
    except KperflabError as exc:
        print(f"kperflab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kperflab: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `kperflab lab status | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
