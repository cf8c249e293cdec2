"""Static plotly figures for the workshop: time series, top bars, throttling, latency curves and distributions.

They are plain ``plotly.graph_objects.Figure`` objects, so they render in JupyterLab, in papermill's executed
notebooks (as plotly's JSON, see `setup_notebook`) and in the offline HTML `kperflab.report` makes from them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

TEMPLATE = "plotly_white"


def setup_notebook() -> None:
    """Figures are outputs of plotly's own MIME type (``application/vnd.plotly.v1+json``) and nothing else: JupyterLab
    draws them with the jupyterlab-plotly extension (installed with plotly), so an executed notebook keeps a few KB of
    JSON per figure instead of 4.8 MB of plotly.js. The offline HTML (`kperflab.report.export_html`) draws the same
    JSON with one inlined copy of plotly.js per file. A ``text/html`` fallback is left out on purpose: it repeats the
    JSON (about 1.1 × its size: 43–64 KB more per notebook) and draws nothing without plotly.js on the page anyway."""
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype"


def _finish(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(template=TEMPLATE, title=title, margin={"l": 60, "r": 20, "t": 60, "b": 50}, height=380,
                      legend={"orientation": "h", "y": -0.2})
    return fig


def timeseries(df: pd.DataFrame, y: str, color: str = "pod", title: str = "", hlines: dict[str, float] | None = None,
               x: str = "time") -> go.Figure:
    """One line per ``color`` value; ``hlines`` draws labelled horizontal lines (limits, requests)."""
    data = df.dropna(subset=[y])
    fig = px.line(data, x=x, y=y, color=color if color in data else None, markers=True)
    for label, value in (hlines or {}).items():
        fig.add_hline(y=value, line_dash="dash", annotation_text=label, annotation_position="top left")
    return _finish(fig, title or y)


def top_bars(df: pd.DataFrame, value: str = "cpu_millicores", name: str = "name", title: str = "") -> go.Figure:
    """Horizontal bars of a top table, largest first."""
    data = df.sort_values(value)
    fig = px.bar(data, x=value, y=name, orientation="h", text=value)
    return _finish(fig, title or value)


def throttling(df: pd.DataFrame, color: str = "pod", title: str = "CPU use and throttling") -> go.Figure:
    """CPU cores used (top) and the throttled-period ratio (bottom) from a sampler frame."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("CPU (cores)", "throttled periods / periods"))
    for i, (key, part) in enumerate(df.groupby(color, sort=True)):
        colour = px.colors.qualitative.Plotly[i % 10]
        fig.add_trace(go.Scatter(x=part["time"], y=part["cpu_cores"], name=str(key), mode="lines+markers",
                                 line={"color": colour}, legendgroup=str(key)), row=1, col=1)
        if "throttled_ratio" in part:
            fig.add_trace(go.Scatter(x=part["time"], y=part["throttled_ratio"], name=str(key), mode="lines+markers",
                                     line={"color": colour}, legendgroup=str(key), showlegend=False), row=2, col=1)
    fig.update_yaxes(range=[0, 1.05], row=2, col=1)
    return _finish(fig, title).update_layout(height=520)


def latency(df: pd.DataFrame, x: str, y: str, title: str = "", log_y: bool = False, **kw: Any) -> go.Figure:
    """A latency curve: ``y`` (ms) against ``x`` (a limit, a size …), points joined in ``x`` order."""
    fig = px.line(df.sort_values(x), x=x, y=y, markers=True, log_y=log_y, **kw)
    return _finish(fig, title or f"{y} by {x}")


def latency_percentiles(df: pd.DataFrame, pcts: tuple[float, ...], panels: dict[str, str], title: str,
                        name: str = "kind") -> go.Figure:
    """Latency distributions as percentile curves, one panel per job (``panels``: column prefix → panel title), one
    line per row of ``df`` (named by column ``name``); each row's ``<prefix>_pcts_us`` lists the latency (µs) at each
    of ``pcts``. The x axis is logarithmic: a network round trip and a page-cache hit fit in one picture."""
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=tuple(panels.values()), shared_yaxes=True)
    palette = px.colors.qualitative.Plotly
    for i, row in enumerate(df.to_dict("records")):
        for col, prefix in enumerate(panels, start=1):
            pts = [(x, q) for x, q in zip(row.get(f"{prefix}_pcts_us") or [], pcts, strict=False) if x is not None and x > 0]
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=str(row[name]),
                                     line={"color": palette[i % len(palette)]}, legendgroup=str(row[name]),
                                     showlegend=col == 1), 1, col)
    fig.update_xaxes(type="log", title_text="latency (µs, log scale)")
    fig.update_yaxes(title_text="percentile of operations", row=1, col=1)
    return _finish(fig, title)


def autoscaling(df: pd.DataFrame, target: float, load_on: float | None = None, load_off: float | None = None,
                title: str = "An HPA under a load step") -> go.Figure:
    """Utilisation (% of request: the metrics API's readings, the HPA's status) above, replicas (the Deployment's
    spec, ready pods) below, the target as a dashed line and the load step shaded. ``df``: time, series, value."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("CPU utilisation (% of request)", "replicas"))
    for i, (series, part) in enumerate(df.groupby("series", sort=True)):
        row = 1 if series.startswith("utilisation") else 2
        step = series.startswith("replicas") or "HPA" in series
        line = {"color": px.colors.qualitative.Plotly[i % 10], **({"shape": "hv"} if step else {})}
        fig.add_trace(go.Scatter(x=part["time"], y=part["value"], name=str(series), mode="lines" if step else "lines+markers",
                                 line=line, marker={"size": 5}), row=row, col=1)
    fig.add_hline(y=target, line_dash="dash", annotation_text=f"target {target:g}%", annotation_position="top left",
                  row=1, col=1)
    if load_on is not None:
        end = pd.Timestamp(load_off, unit="s", tz="UTC") if load_off is not None else df["time"].max()
        fig.add_vrect(x0=pd.Timestamp(load_on, unit="s", tz="UTC"), x1=end, fillcolor="gray", opacity=0.15, line_width=0,
                      annotation_text="load", annotation_position="top left", row="all", col=1)
    fig.update_yaxes(title="%", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title="pods", row=2, col=1, rangemode="tozero", dtick=1)
    fig.update_xaxes(title="time (UTC)", row=2, col=1)
    return _finish(fig, title).update_layout(height=520)
