"""A live ``kubectl top`` for people, a static snapshot for papermill.

``live_top(cluster)`` shows a start/stop button, a refresh-interval slider and a bar chart refreshed from the metrics
API. With no person watching — ``KPERFLAB_HEADLESS=1`` (set by `kperflab workshop` and `make test`) or
``live=False`` — it shows one static figure instead, so an executed notebook still carries the numbers.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from . import figures


def headless() -> bool:
    return os.environ.get("KPERFLAB_HEADLESS", "") not in ("", "0", "false")


def _snapshot(cluster: Any, kind: str, namespace: str | None, selector: str | None, value: str) -> Any:
    import plotly.graph_objects as go

    from .errors import ClusterUnreachable, KperflabError

    try:
        df = cluster.top_nodes(selector) if kind == "nodes" else cluster.top_pods(namespace, selector)
    except ClusterUnreachable:  # not a missing capability: the cell fails with the next step
        raise
    except KperflabError as exc:  # no metrics API here: the figure says so, the notebook goes on
        return figures._finish(go.Figure(), str(exc))
    if df.empty:
        return figures._finish(go.Figure(), f"no {kind} metrics yet (the metrics API needs two samples)")
    return figures.top_bars(df, value, title=f"top {kind}: {value}")


def live_top(cluster: Any, kind: str = "pods", namespace: str | None = None, selector: str | None = None,
             value: str = "cpu_millicores", interval: float = 5.0, live: bool | None = None) -> Any:
    """A live top view (ipywidgets) or, headless, the static figure of one snapshot."""
    if live is None:
        live = not headless()
    if not live:
        return _snapshot(cluster, kind, namespace, selector, value)
    import ipywidgets as w
    from IPython.display import display

    out = w.Output()
    toggle = w.ToggleButton(value=True, description="live", icon="refresh")
    slider = w.FloatSlider(value=interval, min=1, max=60, step=1, description="every (s)")
    status = w.Label()
    stop = threading.Event()

    def show(fig: Any) -> None:
        with out:
            out.clear_output(wait=True)
            display(fig)
        status.value = ""

    def refresh() -> None:
        try:
            show(_snapshot(cluster, kind, namespace, selector, value))
        except Exception as exc:  # noqa: BLE001 - shown in the widget (the cluster gone too), the loop keeps going
            status.value = str(exc)

    def loop() -> None:
        while not stop.is_set():
            if toggle.value:
                refresh()
            stop.wait(slider.value)

    def on_toggle(change: dict[str, Any]) -> None:
        toggle.description = "live" if change["new"] else "paused"

    toggle.observe(on_toggle, names="value")
    box = w.VBox([w.HBox([toggle, slider, status]), out])
    box.stop = stop.set  # type: ignore[attr-defined]
    show(_snapshot(cluster, kind, namespace, selector, value))  # a cluster that does not answer fails the cell here
    threading.Thread(target=loop, daemon=True, name="kperflab-live-top").start()
    return box
