"""Run the official Python client's own end-to-end tests (vendored in tests/upstream/kubernetes-client-python) against
a cluster: a kubeconfig you give, or a lab this script starts and stops.

    .venv/bin/python scripts/client-e2e.py --kubeconfig ~/.kube/config        # a cluster of yours
    .venv/bin/python scripts/client-e2e.py --lab                               # a private lab, down afterwards
    .venv/bin/python scripts/client-e2e.py --lab -- -k portforward -x          # after --: arguments for pytest

Nothing is fetched. The tests import ``kubernetes.e2e_test`` and read ``kubernetes/e2e_test/test_yaml/…`` from the
working directory, so the script builds, in a temporary directory, a ``kubernetes/`` package made of links to the
installed client's modules plus the vendored ``e2e_test`` directories (sync and ``aio``), and runs pytest there with
this interpreter, as the client's CI does (``pytest kubernetes/e2e_test kubernetes/aio/e2e_test``). The tests create
their objects in the ``default`` namespace and in namespaces of their own, and use the images ``nginx``, ``busybox``
and ``python``. Exit status: pytest's (0: all passed), 124 when ``--timeout`` ran out (the whole run is killed).

``test_utils.py::test_metrics_utilities_integration`` reads a new pod's metrics 10 s after it runs. metrics-server
(and the lab, which computes as it does) serves a new container at its first scrape once the container is 10 s old,
and scrapes every resolution (15 s by default): the pod shows up 10 to 25 s after it started, so at the default
resolution the test fails most of the time (on a cluster without metrics-server it skips). ``--lab`` therefore starts
the lab with ``--metric-resolution 1s`` (``--metric-resolution`` changes it); a lab of yours needs
``kperflab lab up --metric-resolution 1s`` for that test. The suite takes about 65 s on a lab.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDORED = ROOT / "tests" / "upstream" / "kubernetes-client-python" / "kubernetes"
SUITES = ("e2e_test", "aio/e2e_test")


def build_tree(work: Path) -> Path:
    """``work/kubernetes``: the installed client's entries linked, plus the vendored test directories."""
    spec = importlib.util.find_spec("kubernetes")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("The official Python client (package kubernetes) is not installed in this interpreter.")
    installed = Path(next(iter(spec.submodule_search_locations)))
    pkg = work / "kubernetes"
    pkg.mkdir()
    for entry in installed.iterdir():
        if entry.name not in ("e2e_test", "aio", "__pycache__"):
            (pkg / entry.name).symlink_to(entry)
    (pkg / "e2e_test").symlink_to(VENDORED / "e2e_test")
    aio = pkg / "aio"
    aio.mkdir()
    for entry in (installed / "aio").iterdir():
        if entry.name not in ("e2e_test", "__pycache__"):
            (aio / entry.name).symlink_to(entry)
    (aio / "e2e_test").symlink_to(VENDORED / "aio" / "e2e_test")
    return pkg


TEST_TIMEOUT = 120  # seconds for one test: a hang becomes that test's failure, not the whole run's timeout

# The run's conftest.py: a per-test alarm. SharedInformer.stop() can hang for good when it comes while the informer's
# thread is between its list and its watch: Watch.stream() resets the stop flag Watch.stop() just set, and the watch
# then waits for an event that never comes (kube-apiserver sends none either on a quiet watch). The tests that stop an
# informer right after its first list meet this race now and then on a loaded machine.
CONFTEST = f"""
import signal

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def expired(signum, frame):
        pytest.fail("no result after {TEST_TIMEOUT} s: the test hung (see scripts/client-e2e.py)", pytrace=False)

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm({TEST_TIMEOUT})
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
"""


def run(kubeconfig: Path, pytest_args: list[str], timeout: float, rerun: bool = True) -> int:
    """pytest over the suites; with ``rerun``, the tests that failed are run once more (the race above), and the
    run says which. Exit status: the first run's when it passed, else the second's."""
    with tempfile.TemporaryDirectory(prefix="kperflab-client-e2e-") as tmp:
        work = Path(tmp)
        build_tree(work)
        (work / "conftest.py").write_text(CONFTEST)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        targets = [f"kubernetes/{s}" for s in SUITES]
        cmd = [sys.executable, "-m", "pytest", "-o", f"cache_dir={work / '.cache'}", "-v", "-rA", "--durations=10",
               *(pytest_args or targets)]
        if pytest_args and not any(a.startswith("kubernetes/") for a in pytest_args):
            cmd += targets
        started = time.monotonic()
        rc = _pytest(cmd, work, env, timeout)
        if rc == 1 and rerun:  # some tests failed (not an error of pytest itself, not the timeout): once more
            print("client-e2e: some tests failed; running the failed ones again (--last-failed)", file=sys.stderr,
                  flush=True)
            rc = _pytest([*cmd, "--last-failed", "--last-failed-no-failures", "none"], work, env,
                         max(60.0, timeout - (time.monotonic() - started)))
            print(f"client-e2e: second run of the failed tests: exit status {rc}", file=sys.stderr)
        print(f"client-e2e: {time.monotonic() - started:.0f} s, exit status {rc}", file=sys.stderr)
        return rc


def _pytest(cmd: list[str], work: Path, env: dict[str, str], timeout: float) -> int:
    proc = subprocess.Popen(cmd, cwd=work, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: pytest and anything it started
        proc.wait()
        print(f"client-e2e: stopped after {timeout:.0f} s (--timeout)", file=sys.stderr)
        return 124
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def with_lab(pytest_args: list[str], timeout: float, resolution: str) -> int:
    """Start a lab under a private KPERFLAB_HOME, run the suite against it, take it down."""
    kperflab = Path(sys.executable).with_name("kperflab")
    with tempfile.TemporaryDirectory(prefix="kperflab-client-e2e-home-") as home:
        env = {**os.environ, "KPERFLAB_HOME": home}
        up = subprocess.run([str(kperflab), "lab", "up", "--metric-resolution", resolution], env=env)
        try:
            if up.returncode != 0:
                return up.returncode
            return run(Path(home) / "kubeconfig.yaml", pytest_args, timeout)
        finally:
            subprocess.run([str(kperflab), "lab", "down", "--purge"], env=env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--kubeconfig", type=Path, help="the cluster to test")
    where.add_argument("--lab", action="store_true", help="start a private lab (kperflab lab up), test it, take it down")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds for the whole run (default 1200)")
    ap.add_argument("--metric-resolution", default="1s", help="the lab's metrics resolution with --lab (default 1s)")
    ap.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest (test paths, -k, -x, ...)")
    args = ap.parse_args()
    if args.lab:
        return with_lab(args.pytest_args, args.timeout, args.metric_resolution)
    if not args.kubeconfig.is_file():
        ap.error(f"no kubeconfig at {args.kubeconfig}")
    return run(args.kubeconfig.resolve(), args.pytest_args, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
