"""PromQL as a tidy DataFrame: `Cluster.promql(query, start, end, step)` asks a Prometheus in the cluster.

**Where Prometheus is.** By default Service ``monitoring/prometheus`` port ``web`` (what
``kperflab/manifests/prometheus.yaml`` and ``kperflab lab up --prometheus`` install), reached through the API server's
service proxy (``/api/v1/namespaces/monitoring/services/prometheus:web/proxy/api/v1/query``) with the kubeconfig's
credentials — so it needs nothing but a kubeconfig and RBAC to ``get services/proxy`` in that namespace. When that
Service does not exist, kperflab looks for a Service labelled ``app.kubernetes.io/name=prometheus`` (kube-prometheus,
the prometheus-community chart) or ``operated-prometheus=true`` (the Prometheus Operator's ``prometheus-operated``,
as kube-prometheus-stack installs it) in the namespaces you may list, and uses the best one (``monitoring`` first).
Another one is named by the ``prometheus`` setting — ``kperflab.connect(prometheus=...)``,
``cluster.promql(..., prometheus=...)`` or the ``KPERFLAB_PROMETHEUS`` environment variable — as
``"namespace/service:port"`` (port by name or number; without a namespace: ``monitoring``; without a port: the
Service's ``web``/``http-web``/9090 port, read from the Service) or as a URL (``http://127.0.0.1:9090`` after
``kubectl port-forward -n monitoring svc/prometheus 9090``: plain HTTP from this machine). ``cluster.prometheus_source``
and the frame's ``attrs["prometheus"]`` say which one answered.

The request goes through ``ApiClient.call_api`` (`kperflab.cluster.get_raw`), not the typed
``CoreV1Api.connect_get_namespaced_service_proxy_with_path``: that one percent-encodes the path's ``/`` and ``:`` and
sends no query parameters but ``path``, so the PromQL would never reach Prometheus.

**Times.** ``start``/``end`` are a `datetime` or `pandas.Timestamp` (naive ones are UTC, like every time kperflab
returns), epoch seconds (int/float), an RFC 3339 string (``"2026-11-29T16:00:00Z"``), ``"now"``, or a time relative to
now in Prometheus' duration syntax (``"-5m"``, ``"now-1h30m"``). With ``start`` the query is a range query
(``/api/v1/query_range``; ``end`` defaults to now); without it an instant query (``/api/v1/query``) at ``end``
(default: Prometheus' now). ``step`` is seconds, a duration string (``"15s"``) or a `timedelta`; by default the range
divided into 250 steps, rounded up to whole seconds, at least 1 s. Prometheus refuses more than 11,000 points per
series, and so does kperflab before asking, with the smallest step that fits.

**The frame.** Matrix (range query): one row per (series, timestamp); vector (instant query): one row per series;
columns ``metric`` (the series' ``__name__``, ``""`` where the query dropped it, e.g. after ``rate()``), then one
column per label in alphabetical order (``""`` where a series lacks it; a label called ``metric``, ``time`` or ``value``
becomes ``label_<name>``), then ``time`` (UTC `pandas.Timestamp`, millisecond precision) and ``value`` (float;
Prometheus' ``"NaN"``, ``"+Inf"``, ``"-Inf"`` become ``nan``, ``inf``, ``-inf``). Rows keep Prometheus' order (so
``sort()``/``topk()`` hold). Scalar and string results: one row, columns ``time`` and ``value`` (a float; the text for
a string). ``attrs``: ``query``, ``result_type``, ``prometheus`` (which one answered), ``start``/``end``/``step`` or
``time``, ``warnings`` and ``infos`` (Prometheus' annotations), and ``note`` when the result is empty (why it may be).
Prometheus' warnings and the empty-result note are also issued as a `PromQLWarning`, so a notebook shows them under
the cell. Native-histogram samples are left out (with a warning): wrap them in ``histogram_count()``,
``histogram_sum()`` or ``histogram_quantile()``.

**Errors** (one sentence each, with the next step): no Prometheus (no such Service: 404 through the proxy; no ready
pod: 503; a URL that does not answer) → `PrometheusUnavailable` (a `MetricsUnavailable`, so experiments are skipped
with the reason); a query Prometheus rejects (``bad_data``, ``execution``) → `BadInput` with Prometheus' own text; not
allowed → `PermissionDenied` naming ``services/proxy``; a lost cluster → `ClusterUnreachable` (`kperflab.cluster.guard`).
"""

from __future__ import annotations

import json
import math
import os
import re
import time as _time
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd

from . import cluster as cl
from .errors import BadInput, KperflabError, PermissionDenied, PrometheusUnavailable

DEFAULT_NAMESPACE = "monitoring"
ENV = "KPERFLAB_PROMETHEUS"
LABELS = ("app.kubernetes.io/name=prometheus", "operated-prometheus=true")  # discovery, in this order
PORTS = ("web", "http-web")  # kube-prometheus / the operator, kube-prometheus-stack's Service
MAX_POINTS = 11_000  # Prometheus' limit per series in a range query
STEPS = 250  # default number of steps in a range
SCRAPE_NOTE = "15 s in kperflab's manifest"  # said where the targets cannot be read
MANIFEST = "kperflab/manifests/prometheus.yaml"
RESERVED = ("metric", "time", "value")

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
TIME_FORMS = ('a datetime or pandas Timestamp (naive: UTC), epoch seconds, an RFC 3339 string, "now", or a time '
              'relative to now such as "-5m" or "now-1h30m"')


class PromQLWarning(UserWarning):
    """What Prometheus warned about, or why a result is empty."""


# -- where Prometheus is ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A Prometheus: a Service reached through the API server's proxy, or a URL reached directly."""

    namespace: str = ""
    service: str = ""
    port: str = ""
    url: str = ""
    how: str = ""  # how it was chosen, e.g. "found by its label app.kubernetes.io/name=prometheus"

    def __str__(self) -> str:
        if self.url:
            return self.url
        return f"Service {self.namespace}/{self.service}{':' + self.port if self.port else ''}"

    def describe(self) -> str:
        return f"{self}{f' ({self.how})' if self.how else ''}"

    def proxy_path(self, api: str) -> str:
        port = f":{self.port}" if self.port else ""
        return f"/api/v1/namespaces/{self.namespace}/services/{self.service}{port}/proxy{api}"


def parse_target(value: str) -> Target:
    """The ``prometheus`` setting: ``"[namespace/]service[:port]"`` or an ``http(s)://`` URL.

    >>> str(parse_target("monitoring/prometheus:9090"))
    'Service monitoring/prometheus:9090'
    >>> parse_target("prometheus-k8s:web").namespace
    'monitoring'
    >>> str(parse_target("http://127.0.0.1:9090/"))
    'http://127.0.0.1:9090'
    >>> parse_target("monitoring/Prometheus")
    Traceback (most recent call last):
    ...
    kperflab.errors.BadInput: prometheus="monitoring/Prometheus" is neither "namespace/service:port" nor a URL. ...
    """
    text = str(value).strip()
    if re.match(r"https?://", text, re.I):
        if not re.match(r"https?://[^/\s]+", text, re.I):
            raise _bad_target(value)
        return Target(url=text.rstrip("/"), how="given")
    ns, _, rest = text.rpartition("/")
    name, _, port = rest.partition(":")
    ns = ns or DEFAULT_NAMESPACE
    if not (_NAME.fullmatch(ns) and _NAME.fullmatch(name)) or (port and not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", port)):
        raise _bad_target(value)
    return Target(ns, name, port, how="given")


def _bad_target(value: Any) -> BadInput:
    return BadInput(f'prometheus="{value}" is neither "namespace/service:port" nor a URL.',
                    hint='Write it as "monitoring/prometheus:9090" (port by name or number) or '
                         '"http://127.0.0.1:9090" (after `kubectl port-forward -n monitoring svc/prometheus 9090`).')


def pick_port(ports: list[dict[str, Any]]) -> str | None:
    """The Service port that serves Prometheus' API: named web/http-web, else number 9090, else the only one.

    >>> pick_port([{"name": "reloader-web", "port": 8080}, {"name": "web", "port": 9090}])
    'web'
    >>> pick_port([{"port": 9090}])
    '9090'
    >>> pick_port([{"name": "grpc", "port": 10901}, {"name": "metrics", "port": 8080}]) is None
    True
    """
    for wanted in PORTS:
        if any(p.get("name") == wanted for p in ports):
            return wanted
    for p in ports:
        if p.get("port") == 9090:
            return p.get("name") or "9090"
    if len(ports) == 1:
        return ports[0].get("name") or str(ports[0].get("port"))
    return None


def setting(cluster: Any, prometheus: str | None) -> tuple[Target | None, str]:
    """The Prometheus asked for (argument, then the cluster's setting, then $KPERFLAB_PROMETHEUS) and where that came
    from; None: the default Service, else one found by label."""
    for value, origin in ((prometheus, "prometheus="), (getattr(cluster, "prometheus", None), "connect(prometheus=)"),
                          (os.environ.get(ENV), f"${ENV}")):
        if value:
            t = value if isinstance(value, Target) else parse_target(value)
            return Target(t.namespace, t.service, t.port, t.url, how=f"from {origin}"), origin
    return None, ""


def _list_services(conn: Any, selector: str, timeout: float) -> tuple[list[dict[str, Any]], bool]:
    """Services with this label across the namespaces we may list (all, else ``monitoring``); and whether we may list
    any at all."""
    allowed = False
    for path in ("/api/v1/services", f"/api/v1/namespaces/{DEFAULT_NAMESPACE}/services"):
        status, body = cl.get_raw(conn, path, timeout, query=[("labelSelector", selector)])
        if status == 200:
            return json.loads(body).get("items") or [], True
        allowed = allowed or status not in (401, 403)
    return [], allowed


def discover(conn: Any, timeout: float) -> tuple[Target | None, bool]:
    """The best Prometheus Service found by label (``monitoring`` first, then by label order, namespace and name) and
    whether listing Services was allowed anywhere."""
    found: dict[tuple[str, str], tuple[tuple[Any, ...], Target]] = {}
    may_list = False
    for rank, selector in enumerate(LABELS):
        items, allowed = _list_services(conn, selector, timeout)
        may_list = may_list or allowed
        for svc in items:
            meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
            ns, name = meta.get("namespace") or "", meta.get("name") or ""
            port = pick_port(spec.get("ports") or [])
            if port is None or spec.get("type") == "ExternalName" or (ns, name) in found:
                continue
            found[(ns, name)] = ((ns != DEFAULT_NAMESPACE, rank, ns, name),
                                 Target(ns, name, port, how=f"found by its label {selector}"))
    if not found:
        return None, may_list
    return min(found.values(), key=lambda kv: kv[0])[1], True


def _service_port(conn: Any, t: Target, timeout: float) -> Target:
    """A Service named without a port: its Prometheus port, read from the Service where we may (else none: the API
    server then proxies only to an unnamed port)."""
    status, body = cl.get_raw(conn, f"/api/v1/namespaces/{t.namespace}/services/{t.service}", timeout)
    if status == 200:
        port = pick_port((json.loads(body).get("spec") or {}).get("ports") or [])
        if port:
            return Target(t.namespace, t.service, port, how=t.how)
    return t


# -- times --------------------------------------------------------------------------------------------
def parse_duration(text: str) -> float:
    """Prometheus' duration syntax in seconds.

    >>> parse_duration("1h30m"), parse_duration("500ms"), parse_duration("15s")
    (5400.0, 0.5, 15.0)
    """
    m = _DURATION.fullmatch(text.strip())
    if not text.strip() or not m or not any(m.groups()):
        raise BadInput(f'"{text}" is not a duration.', hint='Write it as Prometheus does: "15s", "5m", "1h30m", "500ms".')
    return float(sum(int(g) * u for g, u in zip(m.groups(), _UNITS, strict=True) if g))


def to_epoch(value: Any, now: float, what: str = "time") -> float:
    """A time as epoch seconds (see the module's "Times").

    >>> to_epoch("-5m", now=1_800_000_000.0), to_epoch("now-1h", now=1_800_000_000.0)
    (1799999700.0, 1799996400.0)
    >>> to_epoch("2024-01-01T00:00:00Z", 0), to_epoch(pd.Timestamp("2024-01-01"), 0), to_epoch(1704067200, 0)
    (1704067200.0, 1704067200.0, 1704067200.0)
    >>> to_epoch(300, 0, "start")
    Traceback (most recent call last):
    ...
    kperflab.errors.BadInput: start=300 is epoch seconds in 1970. ...
    """
    if isinstance(value, bool):
        raise BadInput(f"{what}={value!r} is not a time.", hint=f"Give {TIME_FORMS}.")
    if isinstance(value, int | float):
        v = float(value)
        if not math.isfinite(v):
            raise BadInput(f"{what}={value!r} is not a time.", hint=f"Give {TIME_FORMS}.")
        if v < 1e9:
            raise BadInput(f"{what}={value!r} is epoch seconds in 1970.",
                           hint=f'For a time relative to now write {what}="-5m" (Prometheus\' duration syntax).')
        return v
    if isinstance(value, str):
        text = value.strip().lower()
        m = re.fullmatch(r"(?:now)?\s*-\s*(\S+)", text)
        if text == "now":
            return now
        if m:
            return now - parse_duration(m.group(1))
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise BadInput(f"{what}={value!r} is not a time.", hint=f"Give {TIME_FORMS}.") from None
    if ts is pd.NaT or pd.isna(ts):
        raise BadInput(f"{what}={value!r} is not a time.", hint=f"Give {TIME_FORMS}.")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.timestamp()


def to_step(value: Any) -> float:
    """A step in seconds: a number, a duration string or a timedelta.

    >>> to_step(15), to_step("1m"), to_step(timedelta(seconds=2.5))
    (15.0, 60.0, 2.5)
    """
    if isinstance(value, timedelta | pd.Timedelta):
        seconds = pd.Timedelta(value).total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = float(value) if re.fullmatch(r"\d+(\.\d+)?", value.strip()) else parse_duration(value)
    else:
        raise BadInput(f"step={value!r} is not a duration.", hint='Give seconds (15), a duration ("15s") or a timedelta.')
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadInput(f"step={value!r} is not a positive duration.", hint='Give seconds (15) or a duration ("15s").')
    return seconds


def default_step(seconds: float) -> float:
    """The range in `STEPS` steps, whole seconds, at least 1 s.

    >>> default_step(300), default_step(3600), default_step(10)
    (2.0, 15.0, 1.0)
    """
    return float(max(1, math.ceil(seconds / STEPS)))


def _num(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


def _fmt_duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else f"{s // 60} min {s % 60} s" if s >= 60 else f"{_num(seconds)} s"


def request(query: str, start: Any = None, end: Any = None, step: Any = None,
            now: float | None = None) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    """(API path, query parameters, what to record in the frame's attrs) for this query.

    >>> request("up", start=1_800_000_000, end=1_800_000_300)[:2]
    ('/api/v1/query_range', [('query', 'up'), ('start', '1800000000'), ('end', '1800000300'), ('step', '2')])
    >>> request("up", end=1_800_000_000)[:2]
    ('/api/v1/query', [('query', 'up'), ('time', '1800000000')])
    >>> request("up", start="-1d", end="now", step="1s", now=1_800_000_000)
    Traceback (most recent call last):
    ...
    kperflab.errors.BadInput: A range of 24 h 0 min at a 1 s step is 86,401 points per series; Prometheus refuses more ...
    """
    if not isinstance(query, str) or not query.strip():
        raise BadInput("The PromQL query is empty.", hint='Give one, e.g. cluster.promql("up").')
    now = _time.time() if now is None else now
    if start is None:
        if step is not None:
            raise BadInput("step= applies only to a range query.", hint='Give start= too (e.g. start="-5m"), or drop step=.')
        params = [("query", query)]
        attrs: dict[str, Any] = {}
        if end is not None:
            t = to_epoch(end, now, "end")
            params.append(("time", _num(t)))
            attrs["time"] = pd.Timestamp(round(t * 1000), unit="ms", tz="UTC")
        return "/api/v1/query", params, attrs
    t0 = to_epoch(start, now, "start")
    t1 = now if end is None else to_epoch(end, now, "end")
    if t1 < t0:
        raise BadInput(f"end ({pd.Timestamp(t1, unit='s', tz='UTC')}) is before start ({pd.Timestamp(t0, unit='s', tz='UTC')}).",
                       hint='Give a start before the end, e.g. start="-10m", end="now".')
    span = t1 - t0
    dt = default_step(span) if step is None else to_step(step)
    points = math.floor(span / dt) + 1
    if span / dt > MAX_POINTS:
        raise BadInput(f"A range of {_fmt_duration(span)} at a {_num(dt)} s step is {points:,} points per series; "
                       f"Prometheus refuses more than {MAX_POINTS:,} steps per range.",
                       hint=f"Use step={math.ceil(span / MAX_POINTS)} or more, or a shorter range.")
    params = [("query", query), ("start", _num(t0)), ("end", _num(t1)), ("step", _num(dt))]
    attrs = {"start": pd.Timestamp(round(t0 * 1000), unit="ms", tz="UTC"),
             "end": pd.Timestamp(round(t1 * 1000), unit="ms", tz="UTC"), "step": dt}
    return "/api/v1/query_range", params, attrs


# -- the answer ---------------------------------------------------------------------------------------
def _value(v: Any) -> float:
    return float(v)  # Prometheus sends floats as strings: "1.5", "NaN", "+Inf", "-Inf" all parse


def _times(ts: list[float]) -> pd.DatetimeIndex:
    """Prometheus' epoch seconds (millisecond precision) → UTC times, always at millisecond resolution."""
    return pd.to_datetime(pd.Series([round(float(t) * 1000) for t in ts], dtype="int64"), unit="ms", utc=True).dt.as_unit("ms")


def frame(data: dict[str, Any]) -> tuple[pd.DataFrame, int]:
    """Prometheus' ``data`` (``resultType`` + ``result``) → (the tidy frame, native-histogram samples left out).

    >>> df, _ = frame({"resultType": "vector", "result": [
    ...     {"metric": {"__name__": "up", "job": "a"}, "value": [1800000000.5, "1"]},
    ...     {"metric": {"job": "b", "instance": "x"}, "value": [1800000000.5, "+Inf"]}]})
    >>> df
      metric instance job                          time  value
    0     up            a 2027-01-15 08:00:00.500+00:00    1.0
    1               x   b 2027-01-15 08:00:00.500+00:00    inf
    >>> frame({"resultType": "scalar", "result": [1800000000, "NaN"]})[0]
                           time  value
    0 2027-01-15 08:00:00+00:00    NaN
    """
    rtype, result = data.get("resultType"), data.get("result")
    if rtype in ("scalar", "string"):
        if not (isinstance(result, list) and len(result) == 2):
            raise KperflabError(f"Prometheus answered a {rtype} that kperflab cannot read ({str(result)[:80]}).",
                                hint="Check that the server is Prometheus (or compatible) and its version.")
        ts, v = result
        value = _value(v) if rtype == "scalar" else str(v)
        return pd.DataFrame({"time": _times([ts]), "value": pd.Series([value], dtype=float if rtype == "scalar" else str)}), 0
    if rtype not in ("matrix", "vector") or not isinstance(result, list):
        raise KperflabError(f"Prometheus answered a result of type {rtype!r}, which kperflab does not read.",
                            hint="Check that the server is Prometheus (or compatible) and its version.")
    series = []
    skipped = 0
    for s in result:
        if rtype == "matrix":
            points = s.get("values") or []
            skipped += len(s.get("histograms") or [])
        else:
            points = [s["value"]] if s.get("value") else []
            skipped += 1 if s.get("histogram") else 0
        if points:
            series.append((s.get("metric") or {}, points))
    names = sorted({k for labels, _ in series for k in labels if k != "__name__"})
    col = {k: (f"label_{k}" if k in RESERVED else k) for k in names}
    out: dict[str, list[Any]] = {"metric": [], **{col[k]: [] for k in names}}
    ts: list[float] = []
    values: list[float] = []
    for labels, points in series:
        n = len(points)
        out["metric"].extend([labels.get("__name__", "")] * n)
        for k in names:
            out[col[k]].extend([labels.get(k, "")] * n)
        ts.extend(p[0] for p in points)
        values.extend(_value(p[1]) for p in points)
    df = pd.DataFrame({k: pd.Series(v, dtype=str) for k, v in out.items()})
    df["time"] = _times(ts)
    df["value"] = pd.Series(values, dtype=float)
    return df, skipped


def empty_note(query: str, attrs: dict[str, Any], targets: list[dict[str, Any]] | None = None) -> str:
    """Why a result may be empty, in one sentence, from Prometheus' active targets where we could read them.

    >>> empty_note("up", {}, [{"health": "unknown", "lastScrape": "0001-01-01T00:00:00Z", "scrapeInterval": "15s"}])
    "No series matched 'up' now: Prometheus has not scraped its 1 target(s) yet, ... run it again in a moment."
    """
    def at(ts: pd.Timestamp) -> str:
        return f"{ts:%Y-%m-%d %H:%M:%S} UTC"

    when = (f"between {at(attrs['start'])} and {at(attrs['end'])}" if "start" in attrs else
            f"at {at(attrs['time'])}" if "time" in attrs else "now")
    head = f"No series matched {query!r} {when}"
    every = SCRAPE_NOTE
    if targets is not None:
        interval = next((a.get("scrapeInterval") for a in targets if a.get("scrapeInterval")), "") or "one scrape interval"
        scraped = [a for a in targets if a.get("lastScrape") and not str(a["lastScrape"]).startswith("0001-")]
        down = [a for a in targets if a.get("health") == "down"]
        if not targets:
            return (f"{head}: Prometheus has no active scrape target yet, so it has no data; if that lasts beyond its "
                    "first minute, check its scrape configuration (Status → Targets in its UI).")
        if not scraped:
            return (f"{head}: Prometheus has not scraped its {len(targets)} target(s) yet, the first scrape comes "
                    f"within {interval} of its start, so run it again in a moment.")
        every = interval if interval != "one scrape interval" else every
        if down:
            a = down[0]
            return (f"{head}: {len(down)} of {len(targets)} scrape target(s) are down ({a.get('scrapePool', '')} "
                    f"{a.get('scrapeUrl', '')}: {str(a.get('lastError') or 'no error given').rstrip('.')}).")
    return (f"{head}: rate() and increase() need two samples inside their window (scraped every {every}), "
            "a comparison such as > 0 may leave nothing, and a misspelt metric or label name matches nothing "
            "(list names with cluster.promql('count by (__name__) ({__name__=~\"container_.+\"})')).")


# -- asking -------------------------------------------------------------------------------------------
class _Missing(PrometheusUnavailable):
    """The Service does not exist (404 from the API server)."""


def _hint(cluster: Any) -> str:
    """How to get a Prometheus here: the lab's flag in the lab, else the manifest or naming an existing one."""
    if getattr(cluster, "flavour", "") == "kperflab-lab":
        return f"Start the lab with Prometheus: `kperflab lab up --prometheus` (or `kubectl apply -f {MANIFEST}`)."
    return (f"Install one with `kubectl apply -f {MANIFEST}`, or name yours with "
            'prometheus="namespace/service:port" (or the URL of a `kubectl port-forward`).')


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _first_line(body: bytes) -> str:
    text = body.decode(errors="replace").strip()
    return (text.splitlines() or [""])[0][:160]


def interpret(cluster: Any, t: Target, status: int, body: bytes) -> dict[str, Any]:
    """The decoded answer when Prometheus answered with data; else the error for what happened, with the next step."""
    doc = _decode(body)
    if isinstance(doc, dict) and doc.get("status") in ("success", "error"):  # Prometheus' own envelope
        if doc["status"] == "success" and 200 <= status < 300 and isinstance(doc.get("data"), dict):
            return doc
        etype, err = doc.get("errorType") or "", str(doc.get("error") or "").rstrip(".")
        if etype == "bad_data" or status == 400:
            raise BadInput(f"Prometheus rejected the query: {err}.",
                           hint="Correct the PromQL and run it again (Prometheus' Graph tab shows where it breaks).")
        if etype == "execution" or status == 422:
            raise BadInput(f"Prometheus could not evaluate the query: {err}.",
                           hint="Change the query where Prometheus' message points (for duplicate or many-to-many "
                                "series: match on more labels, or aggregate first with sum by (...)).")
        if etype in ("timeout", "canceled"):
            raise KperflabError(f"Prometheus gave up on the query ({etype}: {err}).",
                                hint="Ask for less (a shorter range, a larger step, fewer series) or give a longer timeout=.")
        raise KperflabError(f"Prometheus at {t} answered {status} ({etype or 'error'}: {err}).",
                            hint=_logs(t))
    if isinstance(doc, dict) and doc.get("kind") == "Status" and not t.url:  # the API server's own answer
        message = str(doc.get("message") or doc.get("reason") or "").rstrip(".")
        if status in (401, 403):
            raise PermissionDenied("get", "services/proxy", status=status,
                                   detail=f"in namespace {t.namespace}, which reading Prometheus through the API server needs"
                                   if status == 403 else "")
        if status == 404:
            raise _Missing(str(t), f"the API server says: {message or 'not found'}", status=404, hint=_hint(cluster))
        if status in (502, 503, 504):
            if "no service port" in message:
                hint = f'Name the Service\'s port: prometheus="{t.namespace}/{t.service}:PORT" (`kubectl get svc -n {t.namespace} {t.service}`).'
            else:
                hint = (f"Check its pod with `kubectl get pods -n {t.namespace}` and wait until it is Ready "
                        "(a Prometheus that just started answers after its readiness probe passes), then run it again.")
            raise PrometheusUnavailable(str(t), f"HTTP {status}: {message}", status=status, hint=hint)
        raise KperflabError(f"The API server answered {status} to the query through {t}: {message}.",
                            hint="Run `kperflab doctor` to check the cluster.")
    if status == 503:  # Prometheus itself, before it is ready, answers plain "Service Unavailable"
        raise PrometheusUnavailable(str(t), f"HTTP 503: {_first_line(body) or 'Service Unavailable'}", status=503,
                                    hint="Prometheus is starting (or shutting down): wait until its pod is Ready, then run it again.")
    raise KperflabError(f"{t} answered HTTP {status}, but not with Prometheus' query API ({_first_line(body) or 'no body'}).",
                        hint="Check that it is Prometheus and that its port and path prefix are right "
                             "(prometheus=\"namespace/service:port\" or a URL).")


def _logs(t: Target) -> str:
    if t.url:
        return "Look at Prometheus' log for the cause."
    return f"Look at Prometheus' log for the cause: `kubectl logs -n {t.namespace} -l app.kubernetes.io/name=prometheus`."


_POOL: Any = None


def _get_url(t: Target, api: str, params: list[tuple[str, str]], timeout: float) -> tuple[int, bytes]:
    import urllib3

    global _POOL
    if _POOL is None:
        _POOL = urllib3.PoolManager(retries=False)
    try:
        resp = _POOL.request("GET", t.url + api, fields=params, headers={"Accept": "application/json"},
                             timeout=urllib3.Timeout(connect=min(5.0, timeout), read=timeout))
    except urllib3.exceptions.HTTPError as exc:
        reason = cl.unreachable(exc, t.url).reason
        raise PrometheusUnavailable(t.url, reason, hint=(
            "Is the port-forward still running? Start it again with "
            "`kubectl port-forward -n monitoring svc/prometheus 9090`, or drop prometheus= to go through the API server."
            if re.match(r"https?://(127\.0\.0\.1|localhost|\[::1\])[:/]", t.url + "/") else
            "Check the URL and that this machine reaches it, or drop prometheus= to go through the API server.")) from None
    return resp.status, resp.data


def _ask(cluster: Any, t: Target, api: str, params: list[tuple[str, str]], timeout: float) -> dict[str, Any]:
    if t.url:
        status, body = _get_url(t, api, params, timeout)
    else:
        status, body = cl.get_raw(cluster.conn, t.proxy_path(api), timeout, query=params)
    return interpret(cluster, t, status, body)


def query(cluster: Any, promql: str, start: Any = None, end: Any = None, step: Any = None, *,
          prometheus: str | None = None, timeout: float = 30.0) -> pd.DataFrame:
    """`Cluster.promql`'s work (see the module's documentation)."""
    api, params, attrs = request(promql, start, end, step)
    # Prometheus gives up a little before we do, so a slow query is said as Prometheus' timeout, not a lost cluster
    params.append(("timeout", f"{max(1, math.floor(timeout) - 2)}s"))
    target, _ = setting(cluster, prometheus)
    if target is None:
        cached = getattr(cluster, "_prometheus_target", None)
        target = cached or Target(DEFAULT_NAMESPACE, "prometheus", "web", how="the default")
    elif not target.url and not target.port:
        target = _service_port(cluster.conn, target, cluster.timeout)
    try:
        doc = _ask(cluster, target, api, params, timeout)
    except _Missing:
        if target is getattr(cluster, "_prometheus_target", None):
            cluster._prometheus_target = None  # the one found before is gone: look again next time
        if target.how != "the default":
            raise
        found, may_list = discover(cluster.conn, cluster.timeout)
        if found is None:
            looked = ("no Service labelled " + " or ".join(LABELS) + " is visible to you" if may_list else
                      "you may not list Services to look for another")
            raise PrometheusUnavailable(str(target), f"it does not exist, and {looked}", status=404,
                                        hint=_hint(cluster)) from None
        found = Target(found.namespace, found.service, found.port,
                       how=f"{found.how}; {target} does not exist")
        doc = _ask(cluster, found, api, params, timeout)
        cluster._prometheus_target = target = found
    cluster.prometheus_source = target.describe()
    df, skipped = frame(doc["data"])
    df.attrs.update({"query": promql, "result_type": doc["data"].get("resultType"), "prometheus": target.describe(),
                     **attrs, "warnings": list(doc.get("warnings") or []), "infos": list(doc.get("infos") or [])})
    for w in df.attrs["warnings"]:
        warnings.warn(f"Prometheus warns: {w}", PromQLWarning, stacklevel=3)
    if skipped:
        msg = (f"{skipped} native-histogram sample(s) were left out: wrap the query in histogram_count(), "
               "histogram_sum() or histogram_quantile() to get numbers.")
        df.attrs["warnings"].append(msg)
        warnings.warn(msg, PromQLWarning, stacklevel=3)
    if df.empty and doc["data"].get("resultType") in ("matrix", "vector"):
        try:  # why: has Prometheus scraped anything yet? (the same permission as the query)
            targets = _ask(cluster, target, "/api/v1/targets", [("state", "active")], timeout)["data"].get("activeTargets")
        except KperflabError:
            targets = None
        df.attrs["note"] = empty_note(promql, attrs, targets if isinstance(targets, list) else None)
        warnings.warn(df.attrs["note"], PromQLWarning, stacklevel=3)
    return df


def targets(cluster: Any, *, prometheus: str | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Prometheus' active targets (``/api/v1/targets``: ``labels``, ``health``, ``lastError``, ``scrapeInterval``,
    ``lastScrapeDuration`` …) from the Prometheus `query` would ask (resolved by one instant query of ``up``)."""
    query(cluster, "up", prometheus=prometheus, timeout=timeout)
    target, _ = setting(cluster, prometheus)
    if target is None:
        target = getattr(cluster, "_prometheus_target", None) or Target(DEFAULT_NAMESPACE, "prometheus", "web", how="the default")
    elif not target.url and not target.port:
        target = _service_port(cluster.conn, target, cluster.timeout)
    found = _ask(cluster, target, "/api/v1/targets", [("state", "active")], timeout)["data"].get("activeTargets")
    return found if isinstance(found, list) else []
