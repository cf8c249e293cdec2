"""What storage costs on the lab (or a cluster you name), as two tables:

- image pulls per test image: cold (over the lab's loopback registry), pre-pulled (the pod starts with the image
  present), and cold over the bandwidth-limited registry — seconds from the kubelet's ``Pulled`` events, pod starts
  by the client's clock;
- volumes per kind: disk emptyDir, memory emptyDir, local PVC, remote PVC — sequential MiB/s, 4 KiB random read and
  write IOPS and latency percentiles at queue depth 1.

    .venv/bin/python benchmarks/storage.py [--registry-bandwidth 100mbit] [--slow 10MB,100MB] [--quick]
    .venv/bin/python benchmarks/storage.py --kubeconfig ~/.kube/config     # a cluster of yours (its catalog or public images)

Without ``--kubeconfig`` it starts two private labs one after the other (their own KPERFLAB_HOME): an image is pulled
cold only once per node, so the loopback and the slow-registry pulls of the same images need a node each. Every
number comes from kperflab.experiments.storage, the notebook's own code.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@contextmanager
def private_lab(*args: str) -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="kperflab-bench-storage-"))
    env = {**os.environ, "KPERFLAB_HOME": str(home)}
    env.pop("KUBECONFIG", None)
    up = subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "up", *args], env=env, capture_output=True, text=True,
                        timeout=600)
    if up.returncode:
        sys.exit(f"lab up failed: {up.stdout}{up.stderr}")
    try:
        yield home / "kubeconfig.yaml"
    finally:
        subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "down", "--purge"], env=env, capture_output=True, timeout=300)


def _f(v: object, fmt: str = "{:.2f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt.format(v)


def slow_pulls(kubeconfig: Path, slow: list[str] | None) -> dict[str, dict]:
    """Cold pulls over the catalog's slow registry, on a node that has pulled nothing yet."""
    import kperflab
    from kperflab.experiments import storage as st

    cluster = kperflab.connect(kubeconfig)
    catalog = st.read_catalog(cluster)
    if not catalog.slow_registry:
        return {}
    df = st.pull_time(cluster, images=(), slow=slow or list(catalog.images), catalog=catalog, progress=False).frame
    return {r.image: {"slow_pull_s": r.pull_s, "slow_mbit_s": r.size_mb * 8 / r.pull_s if r.pull_s else None}
            for r in df[df.condition == "cold"].itertuples()}


def pulls(kubeconfig: Path) -> list[dict]:
    import kperflab
    from kperflab.experiments import storage as st

    cluster = kperflab.connect(kubeconfig)
    catalog = st.read_catalog(cluster)
    labels = list(catalog.images)
    r = st.pull_time(cluster, images=labels, catalog=catalog, progress=False)
    df = r.frame
    rows = {}
    for label in labels:
        part = df[df.image == label].set_index("condition")
        cold = part.loc["cold"] if "cold" in part.index else None
        warm = part.loc["warm"] if "warm" in part.index else None
        rows[label] = {"image": label, "layers": part.layers.iloc[0], "size_mb": part.size_mb.iloc[0],
                       "cold_pull_s": cold.pull_s if cold is not None else None,
                       "cold_start_s": cold.start_s if cold is not None else None,
                       "prepulled_start_s": warm.start_s if warm is not None else None}
    return sorted(rows.values(), key=lambda x: (x.get("size_mb") or 0, x.get("layers") or 0))


def volumes(kubeconfig: Path, quick: bool) -> list[dict]:
    import kperflab
    from kperflab.experiments import storage as st

    cluster = kperflab.connect(kubeconfig)
    sizes = st.ProbeSizes.quick() if quick else st.ProbeSizes(size=64 << 20, ops=5000, seconds=5)
    out = []
    for r in (st.emptydir(cluster, sizes, progress=False), st.volume_latency(cluster, sizes=sizes, progress=False)):
        if r.skipped:
            out.append({"kind": "–", "note": r.skipped})
            continue
        out += r.frame.to_dict("records")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubeconfig", help="measure this cluster instead of private labs")
    ap.add_argument("--registry-bandwidth", default="100mbit", help="the slow registry's rate (tc notation, default 100mbit)")
    ap.add_argument("--slow", help="labels to pull over the slow registry (default: all; 500 MB at 100 Mbit/s is 40 s)")
    ap.add_argument("--quick", action="store_true", help="small volume probes")
    a = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    t0 = time.monotonic()
    slow = a.slow.split(",") if a.slow else None
    if a.kubeconfig:
        kc = Path(a.kubeconfig)
        pull_rows, vol_rows = pulls(kc), volumes(kc, a.quick)
    else:
        with private_lab("--registry-bandwidth", a.registry_bandwidth) as kc:
            pull_rows, vol_rows = pulls(kc), volumes(kc, a.quick)
        with private_lab("--registry-bandwidth", a.registry_bandwidth) as kc2:  # a node that has pulled nothing
            slow_rows = slow_pulls(kc2, slow)
        for r in pull_rows:
            r.update(slow_rows.get(r["image"], {}))
    console = Console(width=170)
    t = Table(title=f"Image pulls (slow registry at {a.registry_bandwidth})" if not a.kubeconfig else "Image pulls")
    for col in ("image", "layers", "MB", "cold pull s", "cold start s", "pre-pulled start s", "slow pull s", "slow Mbit/s"):
        t.add_column(col, justify="left" if col == "image" else "right")
    for r in pull_rows:
        t.add_row(r["image"], _f(r.get("layers"), "{:.0f}"), _f(r.get("size_mb"), "{:.1f}"), _f(r.get("cold_pull_s")),
                  _f(r.get("cold_start_s")), _f(r.get("prepulled_start_s")), _f(r.get("slow_pull_s")),
                  _f(r.get("slow_mbit_s"), "{:.0f}"))
    console.print(t)
    v = Table(title="Volumes: 4 KiB random I/O at queue depth 1, sequential in 1 MiB blocks")
    for col in ("kind", "tool", "direct", "seq write MiB/s", "seq read MiB/s", "read IOPS", "read p50 µs", "read p99 µs",
                "write IOPS", "write p50 µs", "write p99 µs"):
        v.add_column(col, justify="left" if col in ("kind", "tool") else "right")
    for r in vol_rows:
        if "note" in r:
            v.add_row(r["kind"], r["note"])
            continue
        if isinstance(r.get("error"), str):
            v.add_row(r["kind"], f"not measured: {r['error']}")
            continue
        v.add_row(r["kind"], r["tool"], "yes" if r["direct_io"] else "no", _f(r["seq_write_mib_s"], "{:.0f}"),
                  _f(r["seq_read_mib_s"], "{:.0f}"), _f(r["randread_iops"], "{:,.0f}"), _f(r["randread_p50_us"], "{:.1f}"),
                  _f(r["randread_p99_us"], "{:.1f}"), _f(r["randwrite_iops"], "{:,.0f}"), _f(r["randwrite_p50_us"], "{:.1f}"),
                  _f(r["randwrite_p99_us"], "{:.1f}"))
    console.print(v)
    console.print(f"{time.monotonic() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
