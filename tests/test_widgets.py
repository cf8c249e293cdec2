"""live_top: the live dashboard's logic against a fake cluster (empty state, redraws, Stop, errors, headless), and
once for real against the lab, outside a browser (ipywidgets work without a frontend)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from kperflab import widgets
from kperflab.errors import ClusterUnreachable, MetricsUnavailable

EMPTY = pd.DataFrame(columns=["name", "cpu_millicores", "memory_mib"])


def frame(a: int, b: int) -> pd.DataFrame:
    return pd.DataFrame({"name": ["burner-a", "burner-b"], "cpu_millicores": [a, b], "memory_mib": [9, 9]})


class FakeWorkspace:
    def __init__(self, name: str) -> None:
        self.namespace = f"kperflab-{name}-0f0f0"
        self.pods: list[dict] = []
        self.closed = threading.Event()

    def open(self) -> FakeWorkspace:
        return self

    def create(self, manifest: dict) -> str:
        self.pods.append(manifest)
        return manifest["metadata"]["name"]

    def close(self) -> None:
        self.closed.set()


class FakeCluster:
    """Answers each read with the next of ``reads`` (a frame, or an exception to raise); the last one repeats."""

    namespace = "default"

    def __init__(self, *reads: object) -> None:
        self.reads = list(reads)
        self.asked: list[tuple] = []
        self.workspaces: list[FakeWorkspace] = []

    def workspace(self, name: str) -> FakeWorkspace:
        self.workspaces.append(FakeWorkspace(name))
        return self.workspaces[-1]

    def top_pods(self, namespace=None, selector=None, all_namespaces=False):
        self.asked.append((namespace, all_namespaces))
        r = self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]
        if isinstance(r, Exception):
            raise r
        return r

    def node_metrics(self):
        return [{"metadata": {"name": "n1"}, "window": "5s"}]


def title(view: widgets.LiveTop) -> str:
    (out,) = view.output.outputs
    return out["data"]["application/vnd.plotly.v1+json"]["layout"]["title"]["text"]


def wait(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_until_the_first_metrics_it_says_why_and_draws_no_axes():
    c = FakeCluster(EMPTY)
    view = widgets.LiveTop(c)
    assert not view.refresh()
    assert "kperflab-live-top-empty" in view.empty._dom_classes and view.empty.layout.display is None
    assert "Waiting for the first metrics of its workload (burner-a, burner-b in workspace kperflab-live-top-0f0f0)" \
        in view.empty.value and "two samples" in view.empty.value and "one every 5 s here" in view.empty.value
    assert view.output.outputs == () and view.output.layout.display == "none" and view.figure is None
    # its own workload, small: two pods of the CPU burner's image, 50m and 32Mi requested each
    (ws,) = c.workspaces
    assert [p["metadata"]["name"] for p in ws.pods] == ["burner-a", "burner-b"]
    for p in ws.pods:
        (ctr,) = p["spec"]["containers"]
        assert ctr["image"] == "python:3.13-slim" and ctr["resources"]["requests"] == {"cpu": "50m", "memory": "32Mi"}
    assert c.asked == [(ws.namespace, False)], "it reads its own workspace"
    view.refresh()
    assert len(ws.pods) == 2 and len(c.workspaces) == 1, "the workload is started once"


def test_each_redraw_is_a_new_figure_titled_with_its_read_time(monkeypatch):
    clock = iter(["10:00:00", "10:00:06"])
    monkeypatch.setattr(widgets, "_clock", lambda: next(clock))
    view = widgets.LiveTop(FakeCluster(frame(50, 200), frame(250, 50)))
    assert view._dom_classes == ("kperflab-live-top",) and "kperflab-live-top-stop" in view.button._dom_classes
    assert view.button.description == "Stop"
    assert view.refresh()
    assert title(view) == "top pods · live-top · 10:00:00" and view.empty.layout.display == "none"
    assert view.output.layout.display is None
    first = list(view.figure.data[0].x)
    assert view.refresh()
    assert title(view) == "top pods · live-top · 10:00:06" and view.reads == 2
    assert sorted(first) != sorted(view.figure.data[0].x) and len(view.output.outputs) == 1
    assert view.status.value.startswith("Read at 10:00:06 · 2 pods · every 5 s")


def test_stop_ends_the_loop_and_deletes_its_workspace():
    c = FakeCluster(frame(50, 200), frame(250, 50))
    view = widgets.live_top(c, live=True, interval=1)
    try:
        wait(lambda: view.reads >= 1)
        view.stop()
        assert view.button.description == "Stopped" and view.button.disabled
        assert view.status.value.startswith(f"Stopped at {view.stopped_at}")
        assert view.join(5), "the loop ended"
        (ws,) = c.workspaces
        assert ws.closed.is_set() and view.workspace is None
        assert view.status.value == f"Stopped at {view.stopped_at}; its workspace {ws.namespace} is deleted."
        reads = view.reads
        assert not view.refresh() and view.reads == reads, "no redraw after Stop"
    finally:
        view.stop()


def test_errors_go_to_the_status_and_the_loop_keeps_going():
    gone = ClusterUnreachable("https://127.0.0.1:6443", "connection refused")
    c = FakeCluster(gone, MetricsUnavailable("metrics.k8s.io"), frame(50, 200))
    view = widgets.LiveTop(c, interval=1)
    assert not view.refresh()
    assert view.status.value.endswith("The API server at https://127.0.0.1:6443 is not reachable (connection refused).")
    assert view.status.tooltip and "kperflab lab up" in view.status.tooltip and "\n" not in view.status.value
    assert not view.refresh() and "Metrics are not available from metrics.k8s.io." in view.status.value
    assert view.refresh() and view.error == "" and view.status.value.startswith("Read at")
    c2 = FakeCluster(gone, frame(50, 200))
    looping = widgets.live_top(c2, live=True, interval=1)
    try:
        wait(lambda: looping.reads >= 1)  # the thread survived the cluster being gone
    finally:
        looping.stop()
        looping.join(5)


def test_a_newer_live_top_stops_the_older_one():
    old = widgets.live_top(FakeCluster(frame(50, 200)), live=True, interval=1)
    new = widgets.live_top(FakeCluster(frame(50, 200)), live=True, interval=1)
    try:
        assert old.join(5) and "a newer live_top in this kernel took over" in old.status.value
        assert new.running
    finally:
        new.stop()
        new.join(5)


def test_headless_is_one_snapshot_and_an_empty_one_is_a_message(monkeypatch):
    import plotly.graph_objects as go

    monkeypatch.setenv("KPERFLAB_HEADLESS", "1")
    c = FakeCluster(frame(50, 200))
    t0 = time.monotonic()
    fig = widgets.live_top(c, snapshot_namespace="kperflab-measuring-12345")
    assert time.monotonic() - t0 < 1 and isinstance(fig, go.Figure) and not c.workspaces, "no workload, no wait"
    assert c.asked == [("kperflab-measuring-12345", False)]
    assert fig.layout.title.text.startswith("top pods · kperflab-measuring-12345 · ")
    msg = widgets.live_top(FakeCluster(EMPTY))
    assert isinstance(msg, widgets.Message) and "top pods · default: no pods with metrics (yet)" in msg.text
    assert msg._repr_html_().startswith('<div class="kperflab-live-top-empty">')
    missing = widgets.live_top(FakeCluster(MetricsUnavailable("metrics.k8s.io")), live=False)
    assert isinstance(missing, widgets.Message) and "Install metrics-server" in missing.text
    with pytest.raises(ClusterUnreachable):  # the cell fails with the next step, as every cell does
        widgets.live_top(FakeCluster(ClusterUnreachable("https://x", "refused")), live=False)


AT_EXIT = """import sys, time, kperflab
from kperflab.widgets import live_top
view = live_top(kperflab.connect(sys.argv[1]), live=True)
deadline = time.monotonic() + 30
while len(view.pods) < 2 and time.monotonic() < deadline:
    time.sleep(0.1)
print(view.workspace.namespace)
"""


@pytest.mark.lab
def test_live_top_against_the_lab(lab):
    import kperflab

    c = kperflab.connect(lab["kubeconfig"])
    exits = subprocess.Popen([sys.executable, "-c", AT_EXIT, str(lab["kubeconfig"])], stdout=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    view = widgets.live_top(c, live=True, interval=2)
    assert time.monotonic() - t0 < 1, "the cell returns at once; the workload starts in the widget's thread"
    seen: list[tuple[str, tuple]] = []
    first = None
    try:
        deadline = time.monotonic() + 35
        while time.monotonic() < deadline:
            if view.figure is not None and (not seen or seen[-1][0] != title(view)):
                first = first or time.monotonic() - t0
                bars = view.figure.data[0]
                seen.append((title(view), tuple(sorted(zip(bars.y, bars.x, strict=True)))))
            if len({s[0] for s in seen}) >= 2 and len({s[1] for s in seen}) >= 2:
                break
            if view.figure is None:
                assert "Waiting for the first metrics" in view.empty.value
            time.sleep(0.2)
        print(f"first figure after {first or 0:.0f} s; reads: {seen}; status: {view.status.value}")
        assert len({s[1] for s in seen}) >= 2, f"the bars did not change: {seen} ({view.status.value})"
        assert all(t.startswith("top pods · live-top · ") for t, _ in seen)
        ns = view.workspace.namespace
    finally:
        view.stop()
    assert view.join(60), "the loop and the deletion ended"
    assert view.status.value.endswith(f"its workspace {ns} is deleted.")
    with pytest.raises(Exception) as gone:
        c.core.read_namespace(ns)
    assert getattr(gone.value, "status", None) == 404
    # a kernel that exits while its live_top runs: the atexit hook of every open workspace deletes this one too
    out, _ = exits.communicate(timeout=60)
    assert exits.returncode == 0 and out.startswith("kperflab-live-top-"), out
    try:
        left = c.core.read_namespace(out.strip())
        assert left.metadata.deletion_timestamp is not None, f"{out.strip()} outlived its process"
    except Exception as exc:  # noqa: BLE001
        assert getattr(exc, "status", None) == 404, exc
