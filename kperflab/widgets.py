"""A live ``kubectl top`` for people, a static snapshot for papermill.

``live_top(cluster)`` starts a small workload of its own — two pods whose CPU use changes in phases — in a workspace
of its own (``live-top``), and shows their ``kubectl top`` numbers as a bar chart redrawn every few seconds, until its
Stop button is pressed (or the kernel exits: the workspace goes with it, like every open workspace). A notebook's own
clean-up therefore never pulls the ground from under it. ``all_namespaces=True`` follows every pod of the cluster
instead, ``namespace=`` one namespace (its owner keeps it), ``kind="nodes"`` the nodes; those start no workload.

With no person watching — ``KPERFLAB_HEADLESS=1`` (set by `kperflab workshop` and `make test`) or ``live=False`` — it
returns one static figure of what is there now (no workload, no waiting), so an executed notebook still carries the
numbers; nothing to show (yet) or no metrics API is a one-sentence message, never empty axes.

The live widget, for people and for the browser test (CSS classes): a ``VBox`` ``kperflab-live-top`` holding a Stop
``Button`` (``kperflab-live-top-stop``; after a click "Stopped", disabled, no more redraws), a status ``Label``
(``kperflab-live-top-status``: when it read, or one sentence on what went wrong — the loop keeps going), an ``HTML``
message (``kperflab-live-top-empty``) shown until the first metrics arrive, and an ``Output``
(``kperflab-live-top-figure``) holding one plotly figure whose title carries the read time (``… · HH:MM:SS``).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import threading
import time
from typing import Any

import ipywidgets as w

from . import figures, workloads
from .errors import ClusterUnreachable, KperflabError
from .progress import headless

WORKSPACE = "live-top"
# The workload live_top follows: per pod, phases of (cores, seconds) repeated for ever, out of step with each other,
# so its bars change between two reads a few seconds apart. Small on purpose: the lab is one node shared with the
# rest of the notebook (both together use at most 0.3 of a core, 0.25 on average; each requests 50m and 32Mi).
PHASES: dict[str, tuple[tuple[float, float], ...]] = {
    "burner-a": ((0.05, 10), (0.25, 10), (0.1, 10)),
    "burner-b": ((0.2, 10), (0.05, 10), (0.1, 10)),
}
_RUNNING: list[LiveTop] = []  # the live views this kernel started that still run
_RUNNING_LOCK = threading.Lock()


def phases_pod(name: str, phases: tuple[tuple[float, float], ...]) -> dict[str, Any]:
    """A pod that burns ``cores`` (≤ 1, by duty cycle) for ``seconds``, phase after phase, round and round until
    deleted; the CPU burner of `kperflab.workloads` with its phases repeated."""
    return workloads.cpu_phases(name, phases, repeat=True, workload="live-top", cpu_request="50m", memory_request="32Mi",
                                cpu_limit="500m", memory_limit="64Mi")


class Message:
    """One sentence in place of a figure: nothing to draw (yet), or why not. Shows as HTML in a notebook."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_html_(self) -> str:
        return f'<div class="kperflab-live-top-empty">{_html(self.text)}</div>'

    def __repr__(self) -> str:
        return self.text


def _html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def _clock() -> str:
    return dt.datetime.now().strftime("%H:%M:%S")


def _read(cluster: Any, kind: str, namespace: str | None, selector: str | None, all_namespaces: bool) -> Any:
    if kind == "nodes":
        return cluster.top_nodes(selector)
    if all_namespaces:
        df = cluster.top_pods(None, selector, all_namespaces=True)
        if not df.empty and "namespace" in df:  # names repeat across namespaces
            df = df.assign(name=df["namespace"] + "/" + df["name"])
        return df
    return cluster.top_pods(namespace, selector)


def _what(kind: str, namespace: str | None, all_namespaces: bool) -> str:
    if kind == "nodes":
        return "top nodes"
    return f"top pods · {'all namespaces' if all_namespaces else namespace or 'default'}"


_AXES = {"cpu_millicores": "CPU (millicores)", "memory_mib": "memory (MiB)", "cpu_cores": "CPU (cores)",
         "memory_bytes": "memory (bytes)"}


def _bars(df: Any, value: str, title: str, floor: float = 0) -> Any:
    fig = figures.top_bars(df, value, title=title)
    fig.update_xaxes(title=_AXES.get(value, value)).update_yaxes(title=None)
    top = float(df[value].max()) if len(df) else 0.0
    if floor and top < floor:  # a fixed scale for its own workload, so a bar that shrinks looks smaller
        fig.update_xaxes(range=[0, floor])
    return fig.update_layout(height=max(240, 120 + 45 * len(df)))


def _snapshot(cluster: Any, kind: str, namespace: str | None, selector: str | None, value: str,
              all_namespaces: bool = False) -> Any:
    """One read, drawn: a figure, or a `Message` when there is nothing to draw or no metrics API."""
    label = _what(kind, namespace or getattr(cluster, "namespace", None), all_namespaces)
    try:
        df = _read(cluster, kind, namespace, selector, all_namespaces)
    except ClusterUnreachable:  # not a missing capability: the cell fails with the next step
        raise
    except KperflabError as exc:  # no metrics API here: said so, the notebook goes on
        return Message(f"{label}: {exc}")
    if df.empty:
        return Message(f"{label}: no {kind} with metrics (yet): the metrics API has them from its second sample of a "
                       f"running {'node' if kind == 'nodes' else 'pod'}.")
    return _bars(df, value, f"{label} · {_clock()}")


class LiveTop(w.VBox):
    """The live view; `live_top` makes one and starts it. ``stop()`` is what the button does."""

    def __init__(self, cluster: Any, *, kind: str = "pods", namespace: str | None = None, selector: str | None = None,
                 value: str = "cpu_millicores", interval: float = 5.0, all_namespaces: bool = False,
                 workload: bool = True) -> None:
        self.cluster = cluster
        self.kind, self.namespace, self.selector, self.value = kind, namespace, selector, value
        self.all_namespaces, self.workload = all_namespaces, workload
        self.interval = max(1.0, float(interval))
        self.workspace: Any = None  # its own, while it has a workload
        self.pods: list[str] = []
        self.reads = 0  # figures drawn
        self.figure: Any = None  # the last one
        self.error = ""  # the last read's error, "" after a good read
        self.stopped_at: str | None = None  # "HH:MM:SS", and why when it was not the button
        self.resolution: str | None = None  # the metrics API's window as its NodeMetrics say ("5s"); "": unknown
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.RLock()  # a redraw (or status) and a stop never interleave: nothing after Stop
        self._thread: threading.Thread | None = None

        self.button = w.Button(description="Stop", icon="stop", tooltip="Stop reading"
                               + (" and delete its workload" if workload else ""))
        self.button.add_class("kperflab-live-top-stop")
        self.button.on_click(lambda _b: self.stop())
        self.status = w.Label("Starting …")
        self.status.add_class("kperflab-live-top-status")
        self.empty = w.HTML(self._waiting())
        self.empty.add_class("kperflab-live-top-empty")
        self.output = w.Output(layout=w.Layout(display="none"))
        self.output.add_class("kperflab-live-top-figure")
        super().__init__([w.HBox([self.button, self.status]), self.empty, self.output])
        self.add_class("kperflab-live-top")

    # -- lifetime --------------------------------------------------------------------------------
    def start(self) -> LiveTop:
        with _RUNNING_LOCK:
            older = list(_RUNNING)
            _RUNNING.append(self)
        for other in older:  # its output is likely gone from view (the cell ran again): no invisible burners
            other.stop("a newer live_top in this kernel took over")
        self._thread = threading.Thread(target=self._run, daemon=True, name="kperflab-live-top")
        self._thread.start()
        return self

    def stop(self, why: str = "") -> None:
        """End the refresh loop; its workspace (if any) is deleted by the loop's thread, the UI does not wait."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop.set()
        self.stopped_at = _clock() + (f" ({why})" if why else "")
        self.button.description = "Stopped"
        self.button.icon = "check"
        self.button.disabled = True
        ws = self.workspace
        self._say(f"Stopped at {self.stopped_at}" + (f"; deleting its workspace {ws.namespace} …" if ws is not None else "."))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the loop (and the deletion of its workspace) to end; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.refresh()
                self._stop.wait(self.interval)
        finally:
            with _RUNNING_LOCK:
                if self in _RUNNING:
                    _RUNNING.remove(self)
            self._clean_up()

    def _clean_up(self) -> None:
        ws, self.workspace = self.workspace, None
        if ws is None:
            return
        try:
            ws.close()
            self._say(f"Stopped at {self.stopped_at}; its workspace {ws.namespace} is deleted.")
        except KperflabError as exc:
            self._say(f"Stopped at {self.stopped_at}; its workspace {ws.namespace} was not deleted ({exc.message}); "
                      "`kperflab clean` deletes it.")

    # -- one round -------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Start the workload if it is not there yet, read once, redraw; True when a figure was drawn. Errors go to
        the status line (one sentence) and the next round tries again."""
        if self._stop.is_set():
            return False
        try:
            if self.workload and len(self.pods) < len(PHASES):
                self._start_workload()
            df = _read(self.cluster, self.kind, self._namespace(), self.selector, self.all_namespaces)
        except KperflabError as exc:  # ClusterUnreachable too: the lab may come back
            self.error = exc.message
            self._say(f"{_clock()} · {exc.message}", hint=exc.hint or "")
            return False
        except Exception as exc:  # noqa: BLE001 - a widget thread has no one to raise to
            self.error = f"{type(exc).__name__}: {exc}"
            self._say(f"{_clock()} · {self.error}")
            return False
        self.error = ""
        read_at = _clock()
        if df.empty:
            if self.resolution is None:
                self.resolution = self._read_resolution()
            with self._lock:
                if self._stop.is_set():
                    return False
                self.empty.value = self._waiting()
                self.empty.layout.display = None
                self.output.layout.display = "none"
                self._say(f"{read_at} · no metrics yet")
            return False
        fig = _bars(df, self.value, f"{_what(self.kind, self._label(), self.all_namespaces)} · {read_at}",
                    floor=300 if self.workload else 0)
        bundle = {"application/vnd.plotly.v1+json": json.loads(fig.to_json()), "text/plain": f"<{fig.layout.title.text}>"}
        with self._lock:
            if self._stop.is_set():
                return False
            # one assignment: a redraw from this thread never goes through the display hook of the cell running now
            self.output.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)
            self.output.layout.display = None
            self.empty.layout.display = "none"
            self.figure = fig
            self.reads += 1
            self._say(f"Read at {read_at} · {len(df)} {self.kind if len(df) != 1 else self.kind[:-1]} · every "
                      f"{self.interval:g} s" + (f" · workspace {self.workspace.namespace}" if self.workspace is not None else ""))
        return True

    def _start_workload(self) -> None:
        if self.workspace is None:
            self._say("Starting its workload in a workspace of its own …")
            self.workspace = self.cluster.workspace(WORKSPACE).open()
        for name, phases in PHASES.items():
            if name not in self.pods:
                self.pods.append(self.workspace.create(phases_pod(name, phases)))

    def _namespace(self) -> str | None:
        if self.workload:
            return self.workspace.namespace if self.workspace is not None else None
        return self.namespace

    def _label(self) -> str | None:
        return WORKSPACE if self.workload else self.namespace or getattr(self.cluster, "namespace", None)

    def _say(self, text: str, hint: str = "") -> None:
        with self._lock:
            if self._stop.is_set() and not text.startswith("Stopped"):
                return
            self.status.value = text
            self.status.tooltip = hint or None

    def _waiting(self) -> str:
        res = f"one every {self.resolution} here" if self.resolution else "one per resolution, 15 s by default"
        if self.workload:
            where = f" in workspace {self.workspace.namespace}" if self.workspace is not None else ""
            what = f"its workload ({', '.join(PHASES)}{where})"
        elif self.kind == "nodes":
            what = "the nodes"
        else:
            what = "the pods of " + ("every namespace" if self.all_namespaces else f"namespace {self._label()}")
        waited = time.monotonic() - self._started
        text = (f"Waiting for the first metrics of {what}: the metrics API needs two samples of a running "
                f"{'node' if self.kind == 'nodes' else 'pod'} ({res}), so the first bars come a little while after "
                f"{'they start' if self.kind == 'nodes' else 'the pods start'} — {waited:.0f} s so far. "
                "The chart appears here by itself.")
        return f'<div style="padding: 0.6em 0.8em; border: 1px dashed #999; opacity: 0.85">{_html(text)}</div>'

    def _read_resolution(self) -> str | None:
        try:
            window = next((i["window"] for i in self.cluster.node_metrics() if i.get("window")), "")
            return re.sub(r"^([0-9.]+)s$", r"\1 s", window)
        except Exception:  # noqa: BLE001 - only for the message
            return ""


def live_top(cluster: Any, kind: str = "pods", namespace: str | None = None, selector: str | None = None,
             value: str = "cpu_millicores", interval: float = 5.0, live: bool | None = None, *,
             all_namespaces: bool = False, snapshot_namespace: str | None = None) -> Any:
    """A live top view (ipywidgets) or, headless, one static figure of what is there now.

    Live, it follows a workload of its own in a workspace of its own until its Stop button (or kernel exit);
    ``all_namespaces=True``, ``namespace=`` or ``kind="nodes"`` follow what is already there instead (no workload).
    Headless (``KPERFLAB_HEADLESS=1``) or ``live=False``: one snapshot of ``namespace`` (else ``snapshot_namespace``,
    else the cluster's namespace), of every namespace, or of the nodes; a `Message` when there is nothing to draw.
    """
    if live is None:
        live = not headless()
    if not live:
        return _snapshot(cluster, kind, namespace or snapshot_namespace, selector, value, all_namespaces)
    own = kind == "pods" and namespace is None and not all_namespaces
    return LiveTop(cluster, kind=kind, namespace=namespace, selector=selector, value=value, interval=interval,
                   all_namespaces=all_namespaces, workload=own).start()
