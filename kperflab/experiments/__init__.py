"""The workshop's experiments. Each one runs in a workspace of its own (deleted when it ends, fails or is
interrupted) and returns a `Result`: a tidy frame, a figure and a finding computed from this run's numbers."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from .. import workloads
from ..errors import ExperimentFailed, MetricsUnavailable, PermissionDenied
from ..progress import quiet

MiB = 1 << 20


@dataclass
class Result:
    """What an experiment measured: ``frame`` (tidy, units in column names), ``figure`` (plotly), ``finding`` (a
    sentence computed from the numbers). ``skipped`` holds the reason when this cluster could not run it."""

    frame: pd.DataFrame
    figure: Any  # plotly Figure
    finding: str
    data: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""

    def __repr__(self) -> str:
        return f"Result({len(self.frame)} rows) — {self.finding}"

    def show(self, table: bool = False) -> None:
        """In a notebook: the figure, then the finding (and the table when asked)."""
        from IPython.display import Markdown, display

        if self.skipped:
            display(Markdown(f"**Skipped here:** {self.skipped}"))
            return
        display(self.figure)
        display(Markdown(f"**Measured:** {self.finding}"))
        if table:
            display(self.frame)

    def value(self, key: str, column: str, by: str | None = None) -> Any:
        """One cell of the frame (row where column ``by`` — default the first column — equals ``key``), or None."""
        if self.frame.empty:
            return None
        by = by or str(self.frame.columns[0])
        rows = self.frame[self.frame[by] == key]
        return None if rows.empty or column not in rows else rows[column].iloc[0]

    def to_dict(self) -> dict[str, Any]:
        return {"finding": self.finding, "skipped": self.skipped,
                "frame": json.loads(self.frame.to_json(orient="records", date_format="iso")),
                "data": json.loads(json.dumps(self.data, default=str))}

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON (the figure is not included: it is rebuilt from the frame)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def skip(cls, reason: str) -> Result:
        import plotly.graph_objects as go

        return cls(pd.DataFrame(), go.Figure(), f"Skipped: {reason}", skipped=reason)


F = TypeVar("F", bound=Callable[..., Result])


def carry_on(fn: F) -> F:
    """A capability this cluster lacks (no metrics API, no nodes/proxy) makes the experiment a skipped `Result`
    saying why and how to fix it, so the notebook goes on; anything else still raises."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Result:
        try:
            return fn(*args, **kw)
        except (MetricsUnavailable, PermissionDenied) as exc:
            return Result.skip(str(exc))

    return wrapper  # type: ignore[return-value]


def events(ws: Any, name: str) -> list[dict[str, Any]]:
    return workloads.read_events(ws.logs(name))


def wait_event(ws: Any, name: str, event: str | Callable[[dict[str, Any]], bool], timeout: float, progress: bool = True,
               what: str = "") -> list[dict[str, Any]]:
    """Poll a workload's log until it printed ``event``; fail early when the pod ended without it."""
    from tqdm.auto import tqdm

    want = (lambda e: e.get("event") == event) if isinstance(event, str) else event
    deadline = time.monotonic() + timeout
    with tqdm(desc=f"{name}: {what or event}", bar_format="{desc} {elapsed}", disable=quiet(progress), leave=False) as bar:
        while True:
            evs = events(ws, name) if ws.pod(name).status.phase != "Pending" else []
            if any(want(e) for e in evs):
                return evs
            pod = ws.pod(name)
            if pod.status.phase in ("Failed", "Succeeded"):
                evs = events(ws, name)
                if any(want(e) for e in evs):
                    return evs
                raise ExperimentFailed(f"wait for {name}: {what or event}", f"the pod ended {pod.status.phase} first")
            if time.monotonic() > deadline:
                raise ExperimentFailed(f"wait for {name}: {what or event}", f"nothing after {timeout:.0f} s")
            bar.update(0)
            time.sleep(0.3)


def wait_for_metrics(cluster: Any, namespace: str, pods: list[str], timeout: float = 90, progress: bool = True) -> pd.DataFrame:
    """Poll the metrics API until every pod has PodMetrics (it needs two kubelet samples)."""
    from tqdm.auto import tqdm

    deadline = time.monotonic() + timeout
    with tqdm(desc="waiting for the metrics API (two samples)", bar_format="{desc} {elapsed}", disable=quiet(progress), leave=False) as bar:
        while True:
            top = cluster.top_pods(namespace)
            if len(top) and set(pods) <= set(top.name):
                return top
            if time.monotonic() > deadline:  # served but silent about these pods: as good as unavailable for the lesson
                raise MetricsUnavailable(f"metrics.k8s.io (no PodMetrics for {', '.join(pods)} after {timeout:.0f} s)", None,
                                         hint=f"Check `kubectl top pods -n {namespace}` and metrics-server's logs "
                                              "(`kubectl -n kube-system logs deploy/metrics-server`).")
            bar.update(0)
            time.sleep(0.5)


def node_of(ws: Any, name: str) -> str:
    return ws.pod(name).spec.node_name


def cadvisor_after(cluster: Any, ws: Any, pods: list[str], after: float, families: list[str], timeout: float = 60,
                   container: str = "main") -> pd.DataFrame:
    """The cAdvisor series of these pods' containers from a kubelet sample taken after ``after`` (epoch s)."""
    nodes = {node_of(ws, p) for p in pods}
    deadline = time.monotonic() + timeout
    while True:
        parts = [cluster.cadvisor(n, families) for n in nodes]
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if not df.empty and "pod" in df:
            df = df[(df["namespace"] == ws.namespace) & df["pod"].isin(pods) & (df["container"] == container)]
            cpu = df[df.metric == "container_cpu_usage_seconds_total"] if "container_cpu_usage_seconds_total" in families else df
            stamped = cpu.dropna(subset=["timestamp"])
            fresh = stamped[stamped.timestamp >= pd.Timestamp(after, unit="s", tz="UTC")]
            if set(fresh.pod) >= set(pods):
                return df
        if time.monotonic() > deadline:
            raise ExperimentFailed("read cAdvisor metrics", f"no sample newer than the workload's end for {', '.join(pods)} "
                                   f"after {timeout:.0f} s", hint="Check `kubectl get --raw /api/v1/nodes/<node>/proxy/metrics/cadvisor`.")
        time.sleep(0.5)


def series_value(df: pd.DataFrame, metric: str, pod: str) -> float:
    s = df[(df.metric == metric) & (df.pod == pod)]
    return float(s.value.iloc[-1]) if len(s) else float("nan")


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def parse_bytes(q: Any) -> int:
    from decimal import Decimal

    from kubernetes.utils import parse_quantity

    return int(Decimal(parse_quantity(q)))


__all__ = ["Result", "cadvisor_after", "carry_on", "events", "mib", "parse_bytes", "series_value", "wait_event",
           "wait_for_metrics"]
