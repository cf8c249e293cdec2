"""02-storage: what storage choices cost — image size against pull and start time, what pre-pulling saves, emptyDir
on disk against emptyDir in memory (and that memory-backed files count against the container's memory limit), local
against remote persistent volumes, and how a persistent volume is provisioned, bound, used and reclaimed — each
measured in pods on whatever cluster ``cluster`` points at.

Pull times are read as on any cluster, from the kubelet's ``Pulled`` events (``Successfully pulled image "x" in 717ms
(718ms including waiting). Image size: 78005565 bytes.``; older kubelets: ``… in 1m43.249s``; a cache hit: ``Container
image "x" already present on machine``). Test images come from the ConfigMap ``kube-public/kperflab-test-images`` where
the cluster has one (the lab builds it; an instructor may create one), else from public images of known sizes. Volume
figures come from a probe in the pod (fio where the image has it, else a Python probe that does the same jobs at
queue depth 1), volume usage from the kubelet's Summary API (``pods[].volume[]`` with ``pvcRef``).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import figures, workloads
from ..cluster import get_raw, translate
from ..errors import (
    BadInput,
    ClusterUnreachable,
    ExperimentFailed,
    KperflabError,
    MetricsUnavailable,
    PermissionDenied,
)
from ..progress import quiet
from ..workspace import terminated
from . import MiB, Result, carry_on, events, parse_bytes

Obj = dict[str, Any]
CATALOG = ("kube-public", "kperflab-test-images")  # namespace, name of the test-image catalog ConfigMap
SLOW_KEY = "slow-registry"
# Public images of known sizes, used where a cluster has no catalog (sizes are what the registry serves compressed;
# the kubelet's Pulled event reports the size the runtime stores, which the rows use).
PUBLIC_IMAGES = {"busybox": "busybox:1.37", "python-slim": "python:3.13-slim", "golang": "golang:1.23"}
PCTS = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9)
WFFC_MESSAGE = "waiting for first consumer to be created before binding"


# -- the kubelet's Pulled events ---------------------------------------------------------------------------------

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def go_duration(text: str) -> float:
    """Seconds in a Go duration string, as Go's ``time.Duration.String`` writes them (the kubelet's events do).

    >>> go_duration("717ms"), go_duration("1.315633737s"), go_duration("1m43.249s"), go_duration("3m10.96s")
    (0.717, 1.315633737, 103.249, 190.96)
    >>> go_duration("1h2m0.5s"), go_duration("0s"), go_duration("850µs")
    (3720.5, 0.0, 0.00085)
    """
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _GO_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"not a Go duration: {text!r}")
    return round(sign * total, 9)


@dataclass(frozen=True)
class PullEvent:
    """One ``Pulled`` event, parsed. ``pulled`` False: the image was already present (nothing was fetched).
    ``pull_s``: the pull itself; ``total_s``: including the wait behind other pulls (kubelet ≥ 1.26), else None;
    ``size_bytes``: the size the kubelet reported (≥ 1.30), else None."""

    image: str
    pulled: bool
    pull_s: float | None = None
    total_s: float | None = None
    size_bytes: int | None = None


_PULLED = re.compile(r'^Successfully pulled image "(?P<image>[^"]*)"'
                     r'(?: in (?P<pull>[0-9.]+[a-zµμ]+(?:[0-9.]+[a-zµμ]+)*)'
                     r'(?: \((?P<total>[0-9.]+[a-zµμ]+(?:[0-9.]+[a-zµμ]+)*) including waiting\))?)?'
                     r'(?:\.? Image size: (?P<size>\d+) bytes\.?)?\s*$')
_PRESENT = re.compile(r'^Container image "(?P<image>[^"]*)" already present on machine(?: and can be accessed by the pod)?\s*$')


def parse_pulled(message: str) -> PullEvent | None:
    """A ``Pulled`` event's message in any of the kubelet's formats, or None when it is not one.

    >>> parse_pulled('Successfully pulled image "nginx" in 717ms (718ms including waiting). Image size: 78005565 bytes.')
    PullEvent(image='nginx', pulled=True, pull_s=0.717, total_s=0.718, size_bytes=78005565)
    >>> parse_pulled('Successfully pulled image "x" in 1m43.249s')
    PullEvent(image='x', pulled=True, pull_s=103.249, total_s=None, size_bytes=None)
    >>> parse_pulled('Container image "x" already present on machine')
    PullEvent(image='x', pulled=False, pull_s=None, total_s=None, size_bytes=None)
    """
    msg = message.strip()
    m = _PULLED.match(msg)
    if m:
        return PullEvent(m["image"], True, go_duration(m["pull"]) if m["pull"] else None,
                         go_duration(m["total"]) if m["total"] else None, int(m["size"]) if m["size"] else None)
    m = _PRESENT.match(msg)
    return PullEvent(m["image"], False) if m else None


def pulled_events(cluster: Any, namespace: str, pod: str) -> list[tuple[str, PullEvent]]:
    """(container, parsed event) for every ``Pulled`` event of a pod, in the order they happened."""
    try:
        evs = cluster.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod}",
                                                 _request_timeout=cluster.timeout).items
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster.conn.server, verb="list", resource=f"events in {namespace}") from None
    out = []
    for ev in sorted(evs, key=lambda e: (e.first_timestamp or e.event_time or e.metadata.creation_timestamp or 0,
                                         e.metadata.resource_version or "")):
        if ev.reason != "Pulled":
            continue
        parsed = parse_pulled(ev.message or "")
        if parsed is not None:
            path = (ev.involved_object.field_path or "") if ev.involved_object else ""
            m = re.search(r"\{(.+)\}", path)
            out.append((m.group(1) if m else path, parsed))
    return out


def pod_events(cluster: Any, namespace: str, name: str) -> list[Any]:
    try:
        return cluster.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}",
                                                  _request_timeout=cluster.timeout).items
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster.conn.server, verb="list", resource=f"events in {namespace}") from None


# -- the test-image catalog ------------------------------------------------------------------------------------

@dataclass
class Catalog:
    """Test images by label (``"10MB"`` → a reference the cluster can pull), the registry host that serves them over
    a bandwidth-limited link where there is one, and where the list came from."""

    images: dict[str, str]
    slow_registry: str | None = None
    source: str = ""

    def ref(self, label: str) -> str:
        if label in self.images:
            return self.images[label]
        raise BadInput(f"There is no test image {label!r} in {self.source}.",
                       hint=f"Pick one of: {', '.join(sorted(self.images)) or 'none'}.")


def read_catalog(cluster: Any) -> Catalog:
    """The ConfigMap ``kube-public/kperflab-test-images`` where the cluster has one, else public images."""
    ns, name = CATALOG
    status, body = get_raw(cluster.conn, f"/api/v1/namespaces/{ns}/configmaps/{name}", cluster.timeout)
    if status == 200:
        data = dict(json.loads(body).get("data") or {})
        slow = (data.pop(SLOW_KEY, "") or "").strip().rstrip("/") or None
        images = {k: v.strip() for k, v in data.items() if v.strip() and not k.startswith(SLOW_KEY)}
        return Catalog(images, slow, f"ConfigMap {ns}/{name}")
    why = "no ConfigMap" if status == 404 else f"ConfigMap not readable (HTTP {status})"
    return Catalog(dict(PUBLIC_IMAGES), None, f"public images ({why} {ns}/{name})")


def size_label_bytes(label: str) -> int | None:
    """The size a label names (``"100MB"``, ``"100MB-20layers"``, ``"1GiB"``), or None.

    >>> size_label_bytes("100MB-20layers"), size_label_bytes("10MB"), size_label_bytes("busybox")
    (100000000, 10000000, None)
    """
    m = re.match(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB|KiB|MiB|GiB)\b", label, re.I)
    if not m:
        return None
    scale = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def layers_of(label: str) -> int | None:
    """How many layers a label says the image has (``"100MB-20layers"`` → 20; a size alone → 1), or None.

    >>> layers_of("100MB-20layers"), layers_of("10MB"), layers_of("golang")
    (20, 1, None)
    """
    m = re.search(r"(\d+)[-_ ]?layers?\b", label, re.I)
    if m:
        return int(m.group(1))
    return 1 if size_label_bytes(label) is not None else None


@dataclass
class LessonImages:
    """Which catalog images each experiment pulls: an image is pulled cold only once per node, so the sets differ."""

    pull: tuple[str, ...]
    slow: tuple[str, ...]
    prepull: tuple[str, ...]
    note: str = ""


def lesson_images(catalog: Catalog) -> LessonImages:
    """Split the catalog between the experiments: the largest one-layer image for the pre-puller, with the slow
    registry the middle one of the rest (the smallest and largest stay for the size → time line), the others
    (several layers too) for the cold and warm pulls. Public images: all but the largest pulled, the largest pre-pulled.

    >>> lesson_images(Catalog({"10MB": "a", "100MB": "b", "500MB": "c", "100MB-20layers": "d"}, "slow", "ConfigMap"))
    LessonImages(pull=('10MB', '100MB', '100MB-20layers'), slow=(), prepull=('500MB',), note='the slow registry is not measured: the catalog has no image left for it (an image is pulled cold only once per node)')
    >>> lesson_images(Catalog({"10MB": "a", "20MB": "e", "100MB": "b", "500MB": "c"}, "slow", "ConfigMap"))
    LessonImages(pull=('10MB', '100MB'), slow=('20MB',), prepull=('500MB',), note='')
    """
    labels = list(catalog.images)
    sized = [x for x in labels if size_label_bytes(x) is not None]
    if len(sized) < 2:  # public images of unknown size: keep the catalog's order, the last (largest) pre-pulled
        return LessonImages(tuple(labels[:-1]) or tuple(labels), (), tuple(labels[-1:]) if len(labels) > 1 else ())
    singles = sorted((x for x in sized if layers_of(x) == 1), key=lambda x: size_label_bytes(x) or 0)
    multis = tuple(x for x in sized if (layers_of(x) or 1) > 1)
    prepull = tuple(singles[-1:]) if len(singles) >= 3 else ()
    rest = [x for x in singles if x not in prepull]
    slow: tuple[str, ...] = ()
    note = ""
    if catalog.slow_registry:
        if len(rest) >= 3:
            slow = (rest[1],)
        else:
            note = ("the slow registry is not measured: the catalog has no image left for it (an image is pulled cold "
                    "only once per node)")
    return LessonImages(tuple(x for x in rest if x not in slow) + multis, slow, prepull, note)


def on_registry(ref: str, host: str) -> str:
    """The same image reference served by another registry host (``host`` may carry a path prefix).

    >>> on_registry("127.0.0.1:5000/kperflab/size:10mb", "127.0.0.1:5001")
    '127.0.0.1:5001/kperflab/size:10mb'
    >>> on_registry("python:3.13-slim", "slow.example:5000"), on_registry("ghcr.io/a/b:1", "mirror.local/ghcr")
    ('slow.example:5000/library/python:3.13-slim', 'mirror.local/ghcr/a/b:1')
    """
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        path = rest
    else:
        path = ref if "/" in ref else f"library/{ref}"
    return f"{host.rstrip('/')}/{path}"


def node_images(cluster: Any, node: str | None = None) -> set[str]:
    """Every image name a node (default: every node) reports holding (``node.status.images``; up to
    ``nodeStatusMaxImages`` per node, the largest first)."""
    names: set[str] = set()
    for n in cluster.node_objects():
        if node is None or n["metadata"]["name"] == node:
            for img in (n.get("status") or {}).get("images") or []:
                names.update(img.get("names") or [])
    return names


def pick_node(cluster: Any) -> str | None:
    """A Ready node that takes ordinary pods (no NoSchedule or NoExecute taint), the first by name; None if none.
    Pods that compare cold and warm starts must all run there: an image is cold or warm per node."""
    ok = []
    for n in cluster.node_objects():
        conds = {c.get("type"): c.get("status") for c in (n.get("status") or {}).get("conditions") or []}
        taints = [t for t in (n.get("spec") or {}).get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
        if conds.get("Ready") == "True" and not taints and not (n.get("spec") or {}).get("unschedulable"):
            ok.append(n["metadata"]["name"])
    return sorted(ok)[0] if ok else None


def _present(ref: str, names: set[str]) -> bool:
    if ref in names:
        return True
    short = ref.split("/", 1)[1] if "/" in ref and ("." in ref.split("/")[0] or ":" in ref.split("/")[0]) else ref
    return any(n.endswith("/" + short) or n.endswith("/library/" + short) for n in names)


# -- pods: creation to running, by the client's clock ----------------------------------------------------------

def _started(pod: Any) -> bool:
    """Every container has started (running, or already finished)."""
    statuses = pod.status.container_statuses or []
    if len(statuses) < len(pod.spec.containers):
        return False
    return all(cs.state and (cs.state.running or cs.state.terminated) for cs in statuses)


PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


class PullFailed(ExperimentFailed):
    """The node could not get an image (the kubelet's waiting reason and message): the cluster cannot pull it."""


def _pull_failure(pod: Any) -> str | None:
    for cs in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or []):
        w = cs.state.waiting if cs.state else None
        if w and w.reason in PULL_FAILURES:
            return f"{w.reason}: {w.message or ''}".strip()
    return None


def _stuck(pod: Any) -> str | None:
    for cs in (pod.status.init_container_statuses or []) + (pod.status.container_statuses or []):
        w = cs.state.waiting if cs.state else None
        if w and w.reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                              "CreateContainerConfigError", "CreateContainerError"):
            return f"container {cs.name}: {w.reason}: {w.message or ''}".strip()
    if pod.status.phase == "Failed" and not _started(pod):
        return f"the pod failed: {pod.status.reason or ''} {pod.status.message or ''}".strip()
    return None


def timed_start(ws: Any, manifest: Obj, timeout: float, what: str = "") -> float:
    """Create a pod and return the seconds until every container has started, by this process's clock (polled
    every 50 ms: finer than the API's one-second timestamps)."""
    t0 = time.perf_counter()
    name = ws.create(manifest)
    deadline = time.monotonic() + timeout
    while True:
        pod = ws.pod(name)
        if _started(pod):
            return time.perf_counter() - t0
        pull = _pull_failure(pod)
        if pull:
            raise PullFailed(f"pull the image of {name}", pull)
        why = _stuck(pod)
        if why:
            raise ExperimentFailed(f"start {name}{' (' + what + ')' if what else ''}", why,
                                   hint=f"See `kubectl describe pod {name} -n {ws.namespace}`.")
        if time.monotonic() > deadline:
            raise ExperimentFailed(f"start {name}", f"not started after {timeout:.0f} s (phase {pod.status.phase})",
                                   hint=f"See `kubectl describe pod {name} -n {ws.namespace}`.")
        time.sleep(0.05)


def _delete_and_wait(ws: Any, name: str, timeout: float = 30.0) -> None:
    ws.delete(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _gone_pod(ws, name):
        time.sleep(0.05)


def _wait_pulled(cluster: Any, ns: str, pod: str, want: int, timeout: float = 15.0) -> list[tuple[str, PullEvent]]:
    deadline = time.monotonic() + timeout
    while True:
        got = pulled_events(cluster, ns, pod)
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def _image_pod(name: str, images: Sequence[str], policy: str = "IfNotPresent", command: Sequence[str] = ("sh", "-c", "exit 0"),
               restart: str = "Never") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "image-pull", "app.kubernetes.io/part-of": "kperflab"}},
            "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": f"c{i}", "image": ref, "imagePullPolicy": policy, "command": list(command)}
                                    for i, ref in enumerate(images)]}}


# -- 1. image size → pull time -------------------------------------------------------------------------------------

def pull_fit(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float] | None:
    """(seconds per 100 MB, fixed floor in seconds) of a least-squares line through (bytes, seconds); None with
    fewer than two distinct sizes.

    >>> pull_fit([10e6, 100e6], [0.3, 1.2])
    (1.0, 0.2)
    """
    x, y = np.asarray(sizes, float), np.asarray(seconds, float)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(set(x.tolist())) < 2:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    return round(float(slope) * 1e8, 6), round(float(intercept), 6)


@carry_on
def pull_time(cluster: Any, images: Sequence[str] = ("10MB", "100MB", "100MB-20layers"), slow: Sequence[str] = (),
              catalog: Catalog | None = None, timeout: float = 300, progress: bool = True) -> Result:
    """Each image (a catalog label, or an image reference) pulled cold — by a pod on a node that does not hold it —
    then started again warm (already present), and once more with ``imagePullPolicy: Always`` (the registry is asked
    again; nothing moves if the layers are there). ``slow`` images are pulled cold over the catalog's bandwidth-
    limited registry. An image can be pulled cold only once per node, so ``images`` and ``slow`` must differ.
    Pull seconds and sizes come from the kubelet's ``Pulled`` events; start seconds from creation to started."""
    from tqdm.auto import tqdm

    if not images and not slow:
        raise BadInput("images and slow are both empty.", hint='Pass images=("10MB", "100MB").')
    both = set(images) & set(slow)
    if both:
        raise BadInput(f"{', '.join(sorted(both))} in both images and slow: an image is pulled cold only once per node, "
                       "so the second pull would move nothing.", hint="Give slow other images than images.")
    catalog = catalog or read_catalog(cluster)
    if slow and not catalog.slow_registry:
        raise BadInput(f"slow images were asked for, but {catalog.source} names no slow registry ({SLOW_KEY}).",
                       hint="Pass slow=() on this cluster.")

    def resolve(label: str) -> str:
        return catalog.images.get(label) or (label if ("/" in label or ":" in label) else catalog.ref(label))

    plan = [(lab_, resolve(lab_), "registry") for lab_ in images]
    plan += [(lab_, on_registry(resolve(lab_), catalog.slow_registry or ""), "slow registry") for lab_ in slow]
    node = pick_node(cluster)
    held = node_images(cluster, node)
    rows = []
    planned = sum(2 if link == "slow registry" else 3 for _, _, link in plan)  # pods per image: cold, warm (, Always)
    with cluster.workspace("pull-time") as ws, tqdm(total=planned, desc="pulls", disable=quiet(progress), leave=False) as bar:
        for i, (label, ref, link) in enumerate(plan):
            already = _present(ref, held)
            runs = [("cold", "IfNotPresent"), ("warm", "IfNotPresent")] + ([("Always", "Always")] if link != "slow registry" else [])
            for cond, policy in runs:
                name = f"img-{i}-{cond.lower()}"
                manifest = _image_pod(name, [ref], policy)
                if node:
                    manifest["spec"]["nodeName"] = node  # cold, then warm on the same node
                try:
                    start = timed_start(ws, manifest, timeout, f"{label} {cond}")
                except PullFailed as exc:
                    rows.append({"image": label, "reference": ref, "link": link, "condition": "cannot pull",
                                 "layers": layers_of(label), "size_bytes": None, "pulled": False, "pull_s": None,
                                 "with_waiting_s": None, "start_s": None, "event": exc.detail})
                    _delete_and_wait(ws, name)
                    bar.update(len(runs))
                    break
                evs = _wait_pulled(cluster, ws.namespace, name, 1)
                ev = evs[-1][1] if evs else None
                kind = cond
                if cond == "cold" and (already or (ev is not None and not ev.pulled)):
                    kind = "present before"  # an earlier run pulled it: nothing to learn about a cold pull
                rows.append({"image": label, "reference": ref, "link": link, "condition": kind,
                             "layers": layers_of(label), "size_bytes": ev.size_bytes if ev else None,
                             "pulled": ev.pulled if ev else None, "pull_s": ev.pull_s if ev and ev.pulled else 0.0 if ev else None,
                             "with_waiting_s": ev.total_s if ev else None, "start_s": start,
                             "event": ("Successfully pulled" if ev.pulled else "already present on machine") if ev else "no Pulled event"})
                _delete_and_wait(ws, name)  # each start measured alone, not beside the last pod's teardown
                bar.update(1)
    df = pd.DataFrame(rows)
    sizes = {r["image"]: r["size_bytes"] for r in rows if r["size_bytes"]}  # the cold row's size names the image's size
    df["size_mb"] = [sizes.get(i, math.nan) / 1e6 if sizes.get(i) else math.nan for i in df.image]
    return _pull_result(df, catalog, node)


def _pull_result(df: pd.DataFrame, catalog: Catalog, node: str | None = None) -> Result:
    failed = df[df.condition == "cannot pull"]
    why_not = "; ".join(f"{r.image} ({r.reference}): {r.event}" for r in failed.itertuples())
    if len(failed) == len(df):
        return Result.skip(f"this cluster could not pull the test images — {why_not}")
    df = df.assign(pulled=df.pulled.astype(object))
    cold = df[(df.condition == "cold") & (df.link != "slow registry") & df.pulled.fillna(False).astype(bool)]
    single = cold[cold.layers.fillna(1) == 1] if cold.layers.notna().any() else cold
    fit = pull_fit(single.size_mb * 1e6, single.pull_s) if len(single) >= 2 else None
    parts = []
    if fit:
        per100, floor = fit
        parts.append(f"Cold pulls took {per100:.2f} s per 100 MB over a {max(0.0, floor):.2f} s floor "
                     f"({', '.join(f'{r.image}: {r.pull_s:.2f} s for {r.size_mb:.0f} MB' for r in single.itertuples())}).")
    elif len(cold):
        r = cold.iloc[0]
        parts.append(f"The cold pull of {r.image} ({r.size_mb:.0f} MB) took {r.pull_s:.2f} s "
                     f"({r.size_mb / r.pull_s if r.pull_s else math.nan:.0f} MB/s).")
    multi = cold[cold.layers.fillna(1) > 1]
    for r in multi.itertuples():
        same = single[(single.size_mb - r.size_mb).abs() <= 0.2 * r.size_mb]
        if len(same):
            s = same.iloc[0]
            parts.append(f"With {int(r.layers)} layers, {r.size_mb:.0f} MB took {r.pull_s:.2f} s against {s.pull_s:.2f} s "
                         f"in one layer ({r.pull_s / s.pull_s:.1f}x)." if s.pull_s else "")
    warm = df[df.condition == "warm"]
    if len(cold) and len(warm):
        both = cold.merge(warm, on="image", suffixes=("_cold", "_warm"))
        if len(both):
            big = both.loc[both.size_mb_cold.idxmax()]
            parts.append(f"Already present, the {big.image} pod started in {big.start_s_warm:.2f} s instead of "
                         f"{big.start_s_cold:.2f} s.")
    always = df[df.condition == "Always"]
    if len(always):
        a = always.iloc[-1]
        parts.append(f"With imagePullPolicy Always and the image present, the kubelet asked the registry again: "
                     f"{a.pull_s:.2f} s for {a.image}, nothing re-fetched." if a.pulled else
                     f"With imagePullPolicy Always the {a.image} pod started in {a.start_s:.2f} s.")
    slow = df[(df.link == "slow registry") & (df.condition == "cold") & df.pulled.fillna(False).astype(bool)]
    for r in slow.itertuples():
        mbit = r.size_mb * 8 / r.pull_s if r.pull_s else math.nan
        parts.append(f"Over the bandwidth-limited registry {r.image} ({r.size_mb:.0f} MB) took {r.pull_s:.2f} s, "
                     f"{mbit:.0f} Mbit/s.")
    before = df[df.condition == "present before"]
    if len(before):
        parts.append(f"{', '.join(sorted(set(before.image)))} {'was' if before.image.nunique() == 1 else 'were'} on the "
                     "node before this run (an earlier run pulled them), so no cold pull of them was measured.")
    if len(failed):
        parts.append(f"Not pulled here: {why_not}.")
    if not parts:
        parts.append("No pull was measured.")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("pull time (Pulled event)", "pod start (create → started)"))
    colours = {"cold": "#1f77b4", "warm": "#2ca02c", "Always": "#ff7f0e", "present before": "#7f7f7f"}
    for cond, part in df.groupby("condition", sort=False):
        name = f"{cond}" if not (part.link == "slow registry").all() else "cold, slow registry"
        x = [f"{i} ({s:.0f} MB)" if not math.isnan(s) else i for i, s in zip(part.image, part.size_mb, strict=True)]
        fig.add_trace(go.Bar(x=x, y=part.pull_s, name=name, marker_color=colours.get(str(cond)), legendgroup=name), 1, 1)
        fig.add_trace(go.Bar(x=x, y=part.start_s, name=name, marker_color=colours.get(str(cond)), legendgroup=name,
                             showlegend=False), 1, 2)
    fig.update_yaxes(title_text="seconds", row=1, col=1)
    fig.update_yaxes(title_text="seconds", row=1, col=2)
    fig.update_layout(barmode="group")
    data = {"catalog": catalog.source, "node": node}
    if fit:
        data.update(seconds_per_100mb=fit[0], floor_s=fit[1])
    return Result(df, figures._finish(fig, "Image size against pull and start time"), " ".join(p for p in parts if p), data)


# -- 2. pre-pulling with a DaemonSet --------------------------------------------------------------------------------

def prepuller(name: str, images: Sequence[str]) -> Obj:
    """A pre-puller DaemonSet: one init container per image with a trivial command (pulled one after another, as the
    kubelet pulls a pod's images), and a main container that sleeps in the last image, so the pod stays Running
    cheaply and its containers keep the images in use (image GC removes only unused images). Tolerates every taint."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "kperflab"}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"matchLabels": labels},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "terminationGracePeriodSeconds": 0, "tolerations": [{"operator": "Exists"}],
                         "initContainers": [{"name": f"pull-{i}", "image": ref, "imagePullPolicy": "IfNotPresent",
                                             "command": ["sh", "-c", "exit 0"]} for i, ref in enumerate(images)],
                         "containers": [{"name": "hold", "image": images[-1], "imagePullPolicy": "IfNotPresent",
                                         "command": ["sh", "-c", "exec sleep 3600"],
                                         "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}}}]}}}}


@carry_on
def prepull(cluster: Any, images: Sequence[str] = ("500MB",), catalog: Catalog | None = None, timeout: float = 300,
            progress: bool = True) -> Result:
    """The pre-puller pattern: a DaemonSet whose init containers pull ``images`` on every node (off any workload's
    critical path), then a pod that uses them. The pre-puller's own pod on that node shows what a pod needing the
    images cold waits (created → running, and the pull seconds in its ``Pulled`` events); the pod after it shows what
    is left once they are there."""
    from kubernetes import client

    if not images:
        return Result.skip("no image was given to pre-pull (every test image of the catalog is used by the pull "
                           "experiment, and an image is pulled cold only once per node).")
    catalog = catalog or read_catalog(cluster)
    refs = [catalog.images.get(i) or (i if ("/" in i or ":" in i) else catalog.ref(i)) for i in images]
    held = node_images(cluster)
    before = [i for i, r in zip(images, refs, strict=True) if _present(r, held)]
    apps = client.AppsV1Api(cluster.api)
    with cluster.workspace("prepull") as ws:
        t0 = time.perf_counter()
        try:
            apps.create_namespaced_daemon_set(ws.namespace, prepuller("prepuller", refs), _request_timeout=cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, cluster.conn.server, verb="create", resource="daemonsets") from None
        ds_pods: dict[str, float] = {}  # node → seconds from the DaemonSet's creation to its pod running there
        names: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        from tqdm.auto import tqdm

        with tqdm(desc="pre-pulling", bar_format="{desc} {elapsed}", disable=quiet(progress), leave=False) as bar:
            while True:
                ds = apps.read_namespaced_daemon_set("prepuller", ws.namespace, _request_timeout=cluster.timeout)
                want = (ds.status.desired_number_scheduled or 0) if ds.status else 0
                pods = cluster.core.list_namespaced_pod(ws.namespace, label_selector="app.kubernetes.io/name=prepuller",
                                                        _request_timeout=cluster.timeout).items
                for p in pods:
                    if p.spec.node_name and p.spec.node_name not in ds_pods and p.status.phase == "Running" and _started(p):
                        ds_pods[p.spec.node_name] = time.perf_counter() - t0
                        names[p.spec.node_name] = p.metadata.name
                    pull = _pull_failure(p)
                    if pull:
                        return Result.skip(f"the pre-puller could not pull {', '.join(images)} here — {pull}")
                    why = _stuck(p)
                    if why:
                        raise ExperimentFailed("pre-pull", f"pod {p.metadata.name}: {why}")
                if want and len(ds_pods) >= want:
                    break
                if time.monotonic() > deadline:
                    raise ExperimentFailed("pre-pull", f"{len(ds_pods)} of {want or '?'} pre-puller pods running after {timeout:.0f} s")
                bar.update(0)
                time.sleep(0.05)
        usual = pick_node(cluster)  # a node that takes ordinary pods (the pre-puller also runs on tainted ones)
        node = usual if usual in ds_pods else sorted(ds_pods)[0]
        ds_evs = _wait_pulled(cluster, ws.namespace, names[node], len(refs) + 1)
        app = _image_pod("app", refs, command=("sh", "-c", "exec sleep 3600"), restart="Always")
        app["spec"]["nodeName"] = node  # the node the pre-puller's pod measured (every node has the images now)
        t_app = timed_start(ws, app, timeout, "after pre-pulling")
        app_evs = _wait_pulled(cluster, ws.namespace, "app", len(refs))
    pulled = [e for _, e in ds_evs if e.pulled]
    pull_sum = sum(e.pull_s or 0.0 for e in pulled)
    size = sum(e.size_bytes or 0 for e in pulled)
    rows = [{"pod": f"pre-puller on {node} (images cold)", "start_s": ds_pods[node], "pull_s": pull_sum,
             "fetched": len(pulled), "already_present": sum(1 for _, e in ds_evs if not e.pulled), "size_bytes": size},
            {"pod": "app pod after pre-pulling", "start_s": t_app, "pull_s": sum(e.pull_s or 0.0 for _, e in app_evs if e.pulled),
             "fetched": sum(1 for _, e in app_evs if e.pulled), "already_present": sum(1 for _, e in app_evs if not e.pulled),
             "size_bytes": sum(e.size_bytes or 0 for _, e in app_evs if e.pulled)}]
    df = pd.DataFrame(rows)
    cold, warm = df.iloc[0], df.iloc[1]
    if before or not pulled:
        finding = (f"{', '.join(before or images)} {'was' if len(before or images) == 1 else 'were'} already on the node "
                   f"before the pre-puller ran (an earlier run pulled {'it' if len(before or images) == 1 else 'them'}): "
                   f"its pod started in {cold.start_s:.2f} s and the app pod in {warm.start_s:.2f} s; no cold start was measured.")
    else:
        finding = (f"The pre-puller's pod, which needed {', '.join(images)} cold ({size / 1e6:.0f} MB), took {cold.start_s:.2f} s "
                   f"to run, {pull_sum:.2f} s of it pulling; after it, a pod using the same images started in "
                   f"{warm.start_s:.2f} s ({int(warm.already_present)} of {len(refs)} already present): "
                   f"{cold.start_s - warm.start_s:.2f} s saved on the pod's start.")
    fig = go.Figure(go.Bar(x=df.pod, y=df.start_s, name="create → started", text=[f"{v:.2f} s" for v in df.start_s]))
    fig.add_trace(go.Bar(x=df.pod, y=df.pull_s, name="of which pulling (Pulled events)"))
    fig.update_yaxes(title="seconds")
    fig.update_layout(barmode="overlay")
    return Result(df, figures._finish(fig, "What pre-pulling saves on a pod's start"), finding,
                  {"node": node, "saved_s": float(cold.start_s - warm.start_s), "present_before": before})


# -- 3. volumes: the probe ---------------------------------------------------------------------------------------------

@dataclass
class ProbeSizes:
    """How much the volume probe does: ``size`` bytes written and read sequentially in ``block``s, then up to ``ops``
    4 KiB random reads and writes (or ``seconds``, whichever ends first)."""

    size: int = 32 << 20
    block: int = 1 << 20
    ops: int = 2000
    seconds: float = 3.0
    tool: str = "auto"

    @classmethod
    def quick(cls) -> ProbeSizes:
        return cls(size=8 << 20, ops=500, seconds=1.5)


def probe_rows(evs: list[Obj], kinds: dict[str, str]) -> list[Obj]:
    """One row per directory the probe measured (``kinds`` maps its directory to a label), flattened."""
    rows = []
    for e in evs:
        if e.get("event") == "failed":
            rows.append({"kind": kinds.get(e["dir"], e["dir"]), "error": e.get("error", "")})
        if e.get("event") != "result":
            continue
        if e.get("mounted") is False:  # the directory is the container's own: the kubelet mounted no volume there
            rows.append({"kind": kinds.get(e["dir"], e["dir"]),
                         "error": f"no volume is mounted at {e['dir']} in the container (the kubelet did not mount it)"})
            continue
        row = {"kind": kinds.get(e["dir"], e["dir"]), "tool": e["tool"], "direct_io": e["direct"],
               "seq_write_mib_s": e.get("write_mib_s"), "seq_read_mib_s": e.get("read_mib_s")}
        for job in ("randread", "randwrite"):
            j = e.get(job) or {}
            p = j.get("pcts_us") or {}
            row.update({f"{job}_iops": j.get("iops"), f"{job}_mean_us": j.get("mean_us"), f"{job}_p50_us": p.get("50"),
                        f"{job}_p99_us": p.get("99"), f"{job}_ops": j.get("ops"),
                        f"{job}_pcts_us": [p.get(str(q)) for q in PCTS]})
        rows.append(row)
    return rows


def _run_probe(ws: Any, name: str, manifest: Obj, timeout: float, progress: bool) -> list[Obj]:
    from . import wait_event

    ws.create(manifest)
    try:
        return wait_event(ws, name, "done", timeout, progress, "probing")
    except ExperimentFailed:
        pod = ws.pod(name)
        why = _stuck(pod) or _volume_wait(ws, pod)
        if why:
            raise ExperimentFailed(f"probe {name}", why, hint=f"See `kubectl describe pod {name} -n {ws.namespace}`.") from None
        raise


def _volume_wait(ws: Any, pod: Any) -> str | None:
    if pod.status.phase != "Pending":
        return None
    try:
        evs = pod_events(ws.cluster, ws.namespace, pod.metadata.name)
    except ClusterUnreachable:
        raise
    except KperflabError:
        return None
    bad = [e for e in evs if e.type == "Warning"]
    return f"{bad[-1].reason}: {bad[-1].message}" if bad else None


def _fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} µs"


# -- 3a. emptyDir on disk and in memory ---------------------------------------------------------------------------------

@carry_on
def emptydir(cluster: Any, sizes: ProbeSizes | None = None, image: str = workloads.IMAGE, timeout: float = 180,
             progress: bool = True) -> Result:
    """The same probe on an emptyDir on the node's disk and one in memory (``medium: Memory``, tmpfs): sequential
    MiB/s, 4 KiB random read and write latency and IOPS at queue depth 1."""
    sizes = sizes or ProbeSizes()
    limit = f"{(sizes.size * 2 + (32 << 20)) >> 20}Mi"
    man = workloads.io_bench("emptydir", ("/disk", "/memory"), sizes.size, sizes.block, sizes.ops, sizes.seconds,
                             sizes.tool, image=image)
    man = workloads.with_volume(man, "disk", {"emptyDir": {}}, "/disk")
    man = workloads.with_volume(man, "memory", {"emptyDir": {"medium": "Memory", "sizeLimit": limit}}, "/memory")
    with cluster.workspace("emptydir") as ws:
        evs = _run_probe(ws, "emptydir", man, timeout, progress)
    rows = probe_rows(evs, {"/disk": "emptyDir (disk)", "/memory": "emptyDir (Memory)"})
    df = pd.DataFrame(rows)
    return _volumes_result(df, "emptyDir on the node's disk and in memory", sizes)


def _volumes_result(df: pd.DataFrame, title: str, sizes: ProbeSizes, why: dict[str, str] | None = None) -> Result:
    ok = df.dropna(subset=["randread_iops"]) if "randread_iops" in df else df.iloc[0:0]
    errors = df.dropna(subset=["error"]) if "error" in df else df.iloc[0:0]
    if ok.empty and (len(errors) or why):
        return Result.skip("; ".join([f"{r.kind}: {r.error}" for r in errors.itertuples()]
                                     + [f"{k}: {v.rstrip('.')}" for k, v in (why or {}).items()]) + ".")
    parts = []
    for r in ok.itertuples():
        parts.append(f"{r.kind}: {r.seq_write_mib_s:.0f} MiB/s sequential write, 4 KiB random reads p50 "
                     f"{_fmt_us(r.randread_p50_us)} (p99 {_fmt_us(r.randread_p99_us)}, {r.randread_iops:,.0f} IOPS), "
                     f"random writes p50 {_fmt_us(r.randwrite_p50_us)}")
    finding = "; ".join(parts) + "." if parts else "No volume could be probed."
    if len(ok) >= 2:
        fast = ok.loc[ok.randread_p50_us.idxmin()]
        slow = ok.loc[ok.randread_p50_us.idxmax()]
        if slow.randread_p50_us > 0 and fast.kind != slow.kind:
            finding += (f" A random read on {slow.kind} took {slow.randread_p50_us / fast.randread_p50_us:.1f}x as long as on "
                        f"{fast.kind} (median).")
        tools = set(ok.tool)
        modes = {"direct I/O" if d else "buffered (the filesystem refused O_DIRECT)" for d in ok.direct_io}
        finding += f" Measured by {' and '.join(sorted(tools))}, queue depth 1, {' and '.join(sorted(modes))}."
    for kind, reason in (why or {}).items():
        finding += f" {kind}: not measured — {reason}"
    for r in errors.itertuples():
        finding += f" {r.kind}: not measured ({r.error})."
    fig = figures.latency_percentiles(ok, PCTS, {"randread": "4 KiB random read", "randwrite": "4 KiB random write"},
                                      title) if len(ok) else go.Figure()
    return Result(df, fig, finding, {"probe": sizes.__dict__})


# -- 3b. a big file in a memory-backed emptyDir -------------------------------------------------------------------------

@carry_on
def tmpfs_oom(cluster: Any, limit: str = "64Mi", size_limit: str = "256Mi", small_size_limit: str = "32Mi",
              step: int = 4 * MiB, hold: float = 12.0, timeout: float = 120, progress: bool = True) -> Result:
    """Two pods with ``limits.memory: limit`` write one big file into a ``medium: Memory`` emptyDir: one whose
    ``sizeLimit`` is above the memory limit (the file's pages count against the container's memory, so the kernel
    OOM-kills it), one whose ``sizeLimit`` is below it (the tmpfs fills first: ENOSPC, the pod lives). Each reports
    bytes written and its cgroup's working set after every step; the kubelet's reading of the working set (cAdvisor)
    is taken while the first holds its file at about half the limit."""
    from . import cadvisor_after

    limit_b = parse_bytes(workloads.quantity(limit, "memory limit"))
    big_b = parse_bytes(workloads.quantity(size_limit, "sizeLimit"))
    small_b = parse_bytes(workloads.quantity(small_size_limit, "sizeLimit"))
    if big_b <= limit_b or small_b >= limit_b:
        raise BadInput(f"size_limit ({size_limit}) must be above the memory limit ({limit}) and small_size_limit "
                       f"({small_size_limit}) below it.", hint='Pass limit="64Mi", size_limit="256Mi", small_size_limit="32Mi".')
    cases = {"oom": big_b, "full": small_b}
    with cluster.workspace("tmpfs-oom") as ws:
        for case, sl in cases.items():
            man = workloads.tmpfs_fill(f"fill-{case}", "/scratch", total=min(sl, 3 * limit_b) + step, step=step,
                                       pause=0.05, hold_at=limit_b // 2 if case == "oom" else 0,
                                       hold=hold if case == "oom" else 0, memory_limit=limit)
            ws.create(workloads.with_volume(man, "scratch", {"emptyDir": {"medium": "Memory", "sizeLimit": _mi(sl)}},
                                            "/scratch"))
        from . import wait_event

        hold_evs = wait_event(ws, "fill-oom", lambda e: e.get("event") in ("holding", "failed", "complete"), timeout,
                              progress, f"writing {_mi(limit_b // 2)}")
        failed = next((e for e in hold_evs if e["event"] == "failed"), None)
        if failed:
            return Result.skip(f"{failed['error']}: this cluster does not give pods a medium: Memory emptyDir.")
        if not any(e["event"] == "holding" for e in hold_evs):  # wrote it all before the hold: nothing was enforced
            hold_evs = hold_evs + [{"event": "holding", "bytes": limit_b // 2, "t": time.time()}]
        held_at = next(e for e in hold_evs if e["event"] == "holding")
        kubelet_ws, kubelet_why = None, ""
        try:
            cad = cadvisor_after(cluster, ws, ["fill-oom"], held_at["t"], ["container_cpu_usage_seconds_total",
                                                                           "container_memory_working_set_bytes"],
                                 timeout=max(1.0, hold - 1))
            s = cad[cad.metric == "container_memory_working_set_bytes"]
            kubelet_ws = float(s.value.iloc[-1]) if len(s) else None
        except (MetricsUnavailable, PermissionDenied, ExperimentFailed) as exc:
            kubelet_why = exc.message if isinstance(exc, KperflabError) else str(exc)
        outcome: dict[str, Obj] = {}
        deadline = time.monotonic() + timeout
        while len(outcome) < len(cases):
            for case in cases:
                if case in outcome:
                    continue
                name = f"fill-{case}"
                pod = ws.pod(name)
                evs = events(ws, name)
                term = terminated(pod)
                end = next((e for e in evs if e["event"] in ("nospace", "complete")), None)
                if term is not None or end is not None:
                    outcome[case] = {"pod": pod, "events": evs, "term": term, "end": end}
            if time.monotonic() > deadline:
                raise ExperimentFailed("fill the memory-backed emptyDir", f"no outcome for {sorted(set(cases) - set(outcome))} "
                                       f"after {timeout:.0f} s")
            time.sleep(0.2)
    rows, curve = [], []
    for case, sl in cases.items():
        o = outcome[case]
        evs = o["events"]
        written = [e for e in evs if e["event"] == "written"]
        start = next((e for e in evs if e["event"] == "start"), {})
        term, end = o["term"], o["end"]
        last = written[-1]["bytes"] if written else 0
        if end and end["event"] == "nospace":
            result = f"ENOSPC ({end.get('error', 'No space left on device')})"
            last = end["bytes"]
        elif term is not None:
            result = term.reason or f"exit code {term.exit_code}"
        else:
            result = "wrote it all, not killed"
        rows.append({"case": f"sizeLimit {_mi(sl)}", "size_limit_mib": sl / MiB, "memory_limit_mib": limit_b / MiB,
                     "outcome": result, "reason": term.reason if term else "", "exit_code": term.exit_code if term else None,
                     "written_mib": last / MiB, "start_working_set_mib": (start.get("working_set") or math.nan) / MiB,
                     "start_rss_mib": (start.get("rss") or math.nan) / MiB,
                     "peak_working_set_mib": max((e["working_set"] or 0 for e in written), default=math.nan) / MiB})
        for e in written:
            curve.append({"case": f"sizeLimit {_mi(sl)}", "written_mib": e["bytes"] / MiB,
                          "working_set_mib": e["working_set"] / MiB if e.get("working_set") is not None else math.nan})
    df = pd.DataFrame(rows)
    oom, full = df.iloc[0], df.iloc[1]
    note = getattr(cluster, "limits_note", "")
    parts = []
    if oom.reason == "OOMKilled":
        parts.append(f"With a {limit} memory limit, the pod writing into a memory-backed emptyDir (sizeLimit {size_limit}) was "
                     f"OOMKilled (exit code {int(oom.exit_code)}) after {oom.written_mib:.0f} MiB: the file's pages counted as its memory")
        if not math.isnan(oom.peak_working_set_mib):
            parts[-1] += f" (its cgroup's working set reached {oom.peak_working_set_mib:.0f} MiB)"
        parts[-1] += "."
    elif note:
        parts.append(f"{note[0].upper()}{note[1:]}. The pod wrote {oom.written_mib:.0f} MiB into its memory-backed emptyDir, "
                     f"past its {limit} memory limit, and was not killed ({oom.outcome}).")
    else:
        parts.append(f"The pod writing into a memory-backed emptyDir (sizeLimit {size_limit}) under a {limit} limit ended: "
                     f"{oom.outcome} after {oom.written_mib:.0f} MiB.")
    if kubelet_ws is not None:
        parts.append(f"Holding {held_at['bytes'] / MiB:.0f} MiB of file, the kubelet (cAdvisor) read its working set as "
                     f"{kubelet_ws / MiB:.0f} MiB.")
    elif kubelet_why:
        parts.append(f"The kubelet's reading of its working set was not available ({kubelet_why.rstrip('.')}).")
    parts.append(f"With sizeLimit {small_size_limit} the tmpfs filled first: {full.outcome} after {full.written_mib:.0f} MiB, "
                 + ("and the pod was not killed." if not full.reason else f"and the pod ended {full.reason}."))
    cdf = pd.DataFrame(curve)
    fig = go.Figure()
    for case, part in cdf.groupby("case", sort=False) if len(cdf) else []:
        fig.add_trace(go.Scatter(x=part.written_mib, y=part.working_set_mib, mode="lines+markers", name=str(case)))
    fig.add_hline(y=limit_b / MiB, line_dash="dash", annotation_text=f"memory limit {limit}")
    fig.update_xaxes(title="file written into the emptyDir (MiB)")
    fig.update_yaxes(title="working set of the container's cgroup (MiB)")
    killed_after = float(oom.written_mib) if oom.reason == "OOMKilled" else None
    return Result(df, figures._finish(fig, "A file in a memory-backed emptyDir is the container's memory"), " ".join(parts),
                  {"limit": limit, "killed_after_mib": killed_after, "start_working_set_mib": float(oom.start_working_set_mib),
                   "start_rss_mib": float(oom.start_rss_mib),
                   "start_used_mib": float(oom.start_rss_mib if math.isnan(oom.start_working_set_mib)
                                           else oom.start_working_set_mib),
                   "start_used_from": "process RSS" if math.isnan(oom.start_working_set_mib) else "cgroup working set",
                   "kubelet_working_set_mib": kubelet_ws / MiB if kubelet_ws else None,
                   "step_mib": step / MiB, "limits_note": note})


def kill_point(cluster: Any, limit: str, size_limit: str = "512Mi", step: int = 4 * MiB, timeout: float = 90,
               progress: bool = True) -> tuple[float | None, str]:
    """How many MiB a pod with ``limits.memory: limit`` wrote into a memory-backed emptyDir before it was OOM-killed,
    as the pod itself reported: what the exercise checks a prediction against. ``(None, why)`` where no kill came."""
    from . import wait_event

    limit_b = parse_bytes(workloads.quantity(limit, "memory limit"))
    size_b = max(parse_bytes(workloads.quantity(size_limit, "sizeLimit")), 2 * limit_b)
    note = getattr(cluster, "limits_note", "")
    with cluster.workspace("tmpfs-kill") as ws:
        man = workloads.tmpfs_fill("fill", "/scratch", total=2 * limit_b, step=step, pause=0.05, memory_limit=limit)
        ws.create(workloads.with_volume(man, "scratch", {"emptyDir": {"medium": "Memory", "sizeLimit": _mi(size_b)}},
                                        "/scratch"))
        try:
            evs = wait_event(ws, "fill", lambda e: e.get("event") in ("complete", "nospace", "failed"), timeout, progress,
                             f"filling under {limit}")
        except ExperimentFailed as exc:
            if "ended" not in exc.detail:
                raise
            evs = events(ws, "fill")
        pod = ws.pod("fill")
    failed = next((e for e in evs if e["event"] == "failed"), None)
    if failed:
        return None, failed["error"]
    term = terminated(pod)
    if term is None or term.reason != "OOMKilled":
        return None, (f"{note}, so nothing killed the pod" if note else
                      f"the pod was not OOM-killed ({term.reason if term else 'it wrote it all'})")
    written = [e["bytes"] for e in evs if e["event"] == "written"]
    return (written[-1] / MiB if written else 0.0), ""


def _mi(n: int) -> str:
    return f"{n >> 20}Mi"


def oom_check(result: Result) -> tuple[float | None, str]:
    """What the exercise compares an answer with: the MiB the pod had written when it was OOM-killed, as it reported
    itself; ``(None, why)`` where there was no kill to measure."""
    if result.skipped:
        return None, result.skipped
    got = result.data.get("killed_after_mib")
    if got is None:
        note = result.data.get("limits_note")
        return None, (f"{note}, so nothing killed the pod" if note else "the pod was not OOM-killed here")
    return float(got), ""


def describe(cluster: Any, catalog: Catalog, plan: LessonImages) -> str:
    """A few lines for the notebook's connect cell: where the test images come from, and the storage classes."""
    lines = [f"Test images from {catalog.source}: " + ", ".join(f"{k} = {v}" for k, v in catalog.images.items())]
    lines.append(f"  cold and warm pulls: {', '.join(plan.pull) or 'none'}; pre-pulled: {', '.join(plan.prepull) or 'none'}; "
                 + (f"over the slow registry {catalog.slow_registry}: {', '.join(plan.slow)}" if plan.slow else
                    (plan.note or "no slow registry here")))
    try:
        have = storage_classes(cluster)
        default = default_class(have)
        lines.append("StorageClasses: " + (", ".join(
            f"{sc['metadata']['name']}{' (default)' if sc['metadata']['name'] == default else ''}: "
            f"{sc.get('provisioner')}, {sc.get('volumeBindingMode', 'Immediate')}, reclaim {sc.get('reclaimPolicy', 'Delete')}"
            for sc in have) or "none, so the persistent-volume sections are skipped"))
    except ClusterUnreachable:
        raise
    except KperflabError as exc:
        lines.append(f"StorageClasses: not readable ({exc.message})")
    return "\n".join(lines)


# -- image garbage collection: how far off it is ------------------------------------------------------------------

GC_DEFAULTS = {"imageGCHighThresholdPercent": 85, "imageGCLowThresholdPercent": 80}  # the kubelet's defaults


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


@carry_on
def image_gc_headroom(cluster: Any, node: str | None = None, catalog: Catalog | None = None) -> Result:
    """How much more image data the node's image filesystem takes before the kubelet's image GC starts removing unused
    images (pre-pulled ones included): the thresholds from the kubelet's own ``/configz`` (its defaults when the
    kubelet does not serve it), the filesystem from the Summary API's ``node.runtime.imageFs``, the images from
    ``node.status.images``. Needs ``nodes/proxy``, as the Summary API does."""
    node = node or pick_node(cluster)
    if node is None:
        return Result.skip("no Ready node that takes ordinary pods")
    try:
        cfg = json.loads(cluster.node_proxy(node, "configz")).get("kubeletconfig") or {}
        source = f"the kubelet's /configz on {node}"
    except MetricsUnavailable:
        cfg, source = {}, f"the kubelet's defaults (node {node} does not serve /configz)"
    high = int(cfg.get("imageGCHighThresholdPercent", GC_DEFAULTS["imageGCHighThresholdPercent"]))
    low = int(cfg.get("imageGCLowThresholdPercent", GC_DEFAULTS["imageGCLowThresholdPercent"]))
    fs = ((cluster.summary(node).get("node") or {}).get("runtime") or {}).get("imageFs") or {}
    cap, avail = fs.get("capacityBytes"), fs.get("availableBytes")
    if not cap or avail is None:
        return Result.skip(f"the kubelet of {node} reports no image filesystem (node.runtime.imageFs) in its Summary API")
    used = cap - avail  # the kubelet's GC counts usage as capacity - available
    images = next((n.get("status", {}).get("images") or [] for n in cluster.node_objects()
                   if n["metadata"]["name"] == node), [])
    held = sum(int(i.get("sizeBytes") or 0) for i in images)
    at_high, at_low = cap * high / 100, cap * low / 100
    headroom = at_high - used
    rows = [{"what": "image filesystem", "bytes": cap}, {"what": "used now", "bytes": used},
            {"what": f"GC starts ({high}%)", "bytes": at_high}, {"what": f"GC frees down to ({low}%)", "bytes": at_low},
            {"what": f"images on the node ({len(images)})", "bytes": held}]
    df = pd.DataFrame(rows)
    df["GiB"] = df["bytes"] / 2**30
    fig = go.Figure(go.Bar(x=df["GiB"], y=df["what"], orientation="h", marker_color="#4a6fa5"))
    fig.update_layout(title=f"Image filesystem of {node} and the kubelet's image GC thresholds",
                      xaxis_title="GiB", yaxis_title="", yaxis={"autorange": "reversed"}, height=320)
    if headroom > 0:
        big = None
        if catalog is not None:
            sizes = [size_label_bytes(label) for label in catalog.images]
            big = max((x for x in sizes if x), default=None)
        more = f" (about {int(headroom // big)} more of the {big / 1e6:.0f} MB test image)" if big else ""
        finding = (f"Image GC on {node} starts when its image filesystem is {high}% full: at {_gib(at_high)} of "
                   f"{_gib(cap)}. {_gib(used)} are used now, so about {_gib(headroom)} more of images{more} fit before the "
                   f"kubelet removes images no container uses, least recently used first, until usage is below {low}% "
                   f"({_gib(at_low)}). Thresholds from {source}.")
    else:
        finding = (f"The image filesystem of {node} is {used / cap:.0%} full, above the {high}% at which image GC starts: "
                   f"the kubelet is removing images no container uses (least recently used first) down to {low}%. "
                   f"Thresholds from {source}.")
    return Result(df, fig, finding, data={"high": high, "low": low, "capacity": cap, "used": used,
                                          "headroom": headroom, "images": len(images), "source": source})


# -- 4. local against remote persistent volumes -----------------------------------------------------------------------

def storage_classes(cluster: Any) -> list[Obj]:
    from kubernetes import client

    try:
        items = client.StorageV1Api(cluster.api).list_storage_class(_request_timeout=cluster.timeout).items
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, cluster.conn.server, verb="list", resource="storageclasses") from None
    return [cluster.api.sanitize_for_serialization(sc) for sc in items]


def default_class(classes: list[Obj]) -> str | None:
    for sc in classes:
        ann = (sc.get("metadata") or {}).get("annotations") or {}
        if ann.get("storageclass.kubernetes.io/is-default-class") == "true":
            return sc["metadata"]["name"]
    return None


def pvc(name: str, storage_class: str | None, size: str = "64Mi", mode: str = "ReadWriteOnce") -> Obj:
    spec: Obj = {"accessModes": [mode], "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def _create_pvc(cluster: Any, ns: str, manifest: Obj) -> None:
    try:
        cluster.core.create_namespaced_persistent_volume_claim(ns, manifest, _request_timeout=cluster.timeout)
    except Exception as exc:  # noqa: BLE001
        err = translate(exc, cluster.conn.server, verb="create", resource="persistentvolumeclaims")
        if isinstance(err, (PermissionDenied, ClusterUnreachable)):
            raise err from None
        raise ExperimentFailed(f"create claim {manifest['metadata']['name']}", err.message, hint=err.hint) from None


@carry_on
def volume_latency(cluster: Any, classes: Sequence[str | None] | None = None, size: str = "256Mi",
                   sizes: ProbeSizes | None = None, image: str = workloads.IMAGE, timeout: float = 240,
                   progress: bool = True) -> Result:
    """The same probe on a claim of each storage class (None in the list: the cluster's default class), one after
    another so the pods do not compete; a figure of the 4 KiB latency distributions. ``classes`` None: ``local`` and
    ``remote`` where the cluster has both (the lab), else its default class. A class the cluster lacks is said."""
    sizes = sizes or ProbeSizes()
    have = storage_classes(cluster)
    names = {sc["metadata"]["name"] for sc in have}
    default = default_class(have)
    if classes is None:
        classes = ("local", "remote") if {"local", "remote"} <= names else (None,)
    if not classes:
        raise BadInput("classes is empty.", hint='Pass classes=("local", "remote"), or (None,) for the default class.')
    why: dict[str, str] = {}
    frames = []
    with cluster.workspace("volume-latency") as ws:
        for i, sc in enumerate(classes):
            cls_name = sc or default
            label = f"{cls_name or 'default'} PVC" + (" (default class)" if sc is None or sc == default else "")
            if cls_name is None:
                why[label] = "the cluster has no default StorageClass."
                continue
            if cls_name not in names:
                why[label] = f"there is no StorageClass {cls_name} here (there are: {', '.join(sorted(names)) or 'none'})."
                continue
            claim = f"data-{i}"
            _create_pvc(cluster, ws.namespace, pvc(claim, cls_name, size))
            man = workloads.io_bench(f"probe-{i}", ("/data",), sizes.size, sizes.block, sizes.ops, sizes.seconds,
                                     sizes.tool, image=image)
            man = workloads.with_volume(man, "data", {"persistentVolumeClaim": {"claimName": claim}}, "/data")
            evs = _run_probe(ws, f"probe-{i}", man, timeout, progress)
            frames += probe_rows(evs, {"/data": label})
            ws.delete(f"probe-{i}")
    df = pd.DataFrame(frames)
    return _volumes_result(df, "Local and remote volumes: 4 KiB latency distributions", sizes, why)


def latency_check(result: Result, kind: str, job: str = "randread") -> tuple[float | None, str]:
    """The mean latency (µs) of ``kind``'s 4 KiB operations from the per-operation timings: what an answer computed
    from the operation count per second is checked against; ``(None, why)`` when not measured."""
    if result.skipped:
        return None, result.skipped
    if result.frame.empty or "kind" not in result.frame:
        return None, result.finding
    rows = result.frame[result.frame.kind.str.startswith(kind)]
    if rows.empty or pd.isna(rows[f"{job}_mean_us"].iloc[0]):
        return None, f"{kind} was not measured here"
    return float(rows[f"{job}_mean_us"].iloc[0]), ""


# -- 5. persistent volume management -----------------------------------------------------------------------------------

@dataclass
class _Timeline:
    t0: float = field(default_factory=time.perf_counter)
    rows: list[Obj] = field(default_factory=list)

    def add(self, step: str, claim: str = "", pvc_phase: str = "", pv: str = "", pv_phase: str = "", detail: str = "") -> None:
        self.rows.append({"t_s": round(time.perf_counter() - self.t0, 3), "step": step, "claim": claim,
                          "pvc_phase": pvc_phase, "pv": pv, "pv_phase": pv_phase, "detail": detail})


def _read_pvc(cluster: Any, ns: str, name: str) -> Any:
    try:
        return cluster.core.read_namespaced_persistent_volume_claim(name, ns, _request_timeout=cluster.timeout)
    except Exception as exc:  # noqa: BLE001
        if getattr(exc, "status", None) == 404:
            return None
        raise translate(exc, cluster.conn.server, resource=f"persistentvolumeclaim {name}") from None


def _read_pv(cluster: Any, name: str) -> Any:
    try:
        return cluster.core.read_persistent_volume(name, _request_timeout=cluster.timeout)
    except Exception as exc:  # noqa: BLE001
        if getattr(exc, "status", None) == 404:
            return None
        raise translate(exc, cluster.conn.server, resource=f"persistentvolume {name}") from None


def _until(what: str, fn: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise ExperimentFailed(what, f"not after {timeout:.0f} s")
        time.sleep(every)


def volume_stats(cluster: Any, node: str, ns: str, pod: str) -> list[Obj]:
    """The Summary API's ``volume`` entries of one pod (``pvcRef`` on PVC-backed ones)."""
    summary = json.loads(cluster.node_proxy(node, "stats/summary"))
    for p in summary.get("pods") or []:
        ref = p.get("podRef") or {}
        if ref.get("namespace") == ns and ref.get("name") == pod:
            return list(p.get("volume") or [])
    return []


WRITER = workloads._PRELUDE + """mib = int(os.environ["MIB"])
mounts = {line.split()[4] for line in open("/proc/self/mountinfo")}
for d in os.environ["DIRS"].split(","):
    if d not in mounts:
        emit(event="failed", error=f"no volume is mounted at {d} in the container (the kubelet did not mount it)")
        time.sleep(3600)
    with open(os.path.join(d, "data.bin"), "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    emit(event="wrote", dir=d, bytes=mib << 20)
emit(event="done")
time.sleep(3600)
"""


@carry_on
def pv_lifecycle(cluster: Any, storage_class: str | None = "local", size: str = "64Mi", write_mib: int = 16,
                 stats_timeout: float = 90, timeout: float = 120, progress: bool = True) -> Result:
    """Two claims of ``storage_class`` (None: the default class) through a volume's life: Pending until a pod uses
    them where the class binds on first consumer, provisioned and bound, written, their usage read from the Summary
    API (``pvcRef``), then deleted — one PV with the class's reclaim policy (Delete), the other switched to Retain
    first — and what remains is shown. The retained PV is deleted at the end (its policy put back to Delete)."""

    if not isinstance(write_mib, int) or write_mib <= 0:
        raise BadInput(f"write_mib must be a positive whole number, not {write_mib!r}.", hint="Pass write_mib=16.")
    if parse_bytes(workloads.quantity(size, "claim size")) < (write_mib + 8) * MiB:
        raise BadInput(f"A {size} claim cannot hold {write_mib} MiB and its filesystem.", hint=f"Pass size=\"{write_mib + 48}Mi\".")
    have = storage_classes(cluster)
    byname = {sc["metadata"]["name"]: sc for sc in have}
    name = storage_class or default_class(have)
    if name is None or name not in byname:
        return Result.skip(f"there is no StorageClass {name or '(default)'} here (there are: {', '.join(sorted(byname)) or 'none'}).")
    sc = byname[name]
    wffc = sc.get("volumeBindingMode") == "WaitForFirstConsumer"
    tl = _Timeline()
    claims = {"keep": "claim-retain", "drop": "claim-delete"}
    retained: str | None = None
    with cluster.workspace("pv-lifecycle") as ws:
        ns = ws.namespace
        try:
            for c in claims.values():
                _create_pvc(cluster, ns, pvc(c, name, size))
            tl.add("create two claims", ", ".join(claims.values()), "", "", "", f"StorageClass {name} "
                   f"(volumeBindingMode {sc.get('volumeBindingMode', 'Immediate')}, reclaimPolicy {sc.get('reclaimPolicy', 'Delete')})")
            waited = ""
            if wffc:
                def wffc_event() -> str:
                    for e in pod_events(cluster, ns, claims["drop"]):
                        if e.reason == "WaitForFirstConsumer":
                            return e.message or e.reason
                    return ""
                waited = _until("see the claim wait for its first consumer", wffc_event, 15, 0.2)
                p = _read_pvc(cluster, ns, claims["drop"])
                tl.add("no pod uses them yet", claims["drop"], p.status.phase, "", "", f"event WaitForFirstConsumer: {waited}")
            writer = workloads.pod("writer", WRITER, {"MIB": write_mib, "DIRS": "/keep,/drop"}, workload="pv-writer",
                                   restart="Never")
            for key, c in claims.items():
                writer = workloads.with_volume(writer, key, {"persistentVolumeClaim": {"claimName": c}}, f"/{key}")
            ws.create(writer)
            tl.add("create a pod that uses both", "", "", "", "", "pod writer")
            pv_names: dict[str, str] = {}
            for key, c in claims.items():
                bound = _until(f"bind claim {c}", lambda c=c: (lambda p: p if p and p.status.phase == "Bound" else None)(
                    _read_pvc(cluster, ns, c)), timeout)
                pv_names[key] = bound.spec.volume_name
                prov = [e for e in pod_events(cluster, ns, c) if e.reason == "ProvisioningSucceeded"]
                pv = _read_pv(cluster, pv_names[key])
                tl.add("claim bound", c, "Bound", pv_names[key], pv.status.phase if pv else "?",
                       (f"ProvisioningSucceeded: {prov[-1].message}" if prov else "bound")
                       + (f"; capacity {pv.spec.capacity.get('storage')}, reclaimPolicy {pv.spec.persistent_volume_reclaim_policy}" if pv else ""))
            from . import wait_event

            wrote = wait_event(ws, "writer", lambda e: e.get("event") in ("done", "failed"), timeout, progress,
                               f"writing {write_mib} MiB into each volume")
            node = ws.pod("writer").spec.node_name
            failed = next((e for e in wrote if e["event"] == "failed"), None)
            tl.add("pod wrote its data" if not failed else "pod could not write", "", "", "", "",
                   failed["error"] if failed else f"{write_mib} MiB into each volume, on node {node}")
            stats: dict[str, Obj] = {}
            stats_why = f"the pod wrote nothing ({failed['error']})" if failed else ""
            try:
                if failed:
                    raise ExperimentFailed("write", stats_why)
                def read_stats() -> dict[str, Obj]:
                    vols = {v.get("pvcRef", {}).get("name"): v for v in volume_stats(cluster, node, ns, "writer") if v.get("pvcRef")}
                    full = all((vols.get(c) or {}).get("usedBytes", 0) >= write_mib * MiB for c in claims.values())
                    return vols if full else {}
                stats = _until("read the volumes' usage from the Summary API", read_stats, stats_timeout, 1.0)
            except ExperimentFailed as exc:
                stats_why = stats_why or (f"the Summary API did not report {write_mib} MiB used on both claims within {stats_timeout:.0f} s "
                             f"({exc.detail}); the kubelet refreshes volume usage every volumeStatsAggPeriod")
            except (MetricsUnavailable, PermissionDenied) as exc:
                stats_why = exc.message
            for c in claims.values():
                v = stats.get(c)
                if v:
                    tl.add("Summary API volume stats", c, "Bound", "", "",
                           f"pvcRef {v['pvcRef'].get('namespace')}/{v['pvcRef'].get('name')}: usedBytes {v.get('usedBytes')}, "
                           f"capacityBytes {v.get('capacityBytes')}, availableBytes {v.get('availableBytes')}")
            retained = pv_names["keep"]  # from here on, the finally below deletes it whatever happens
            try:
                cluster.core.patch_persistent_volume(retained, {"spec": {"persistentVolumeReclaimPolicy": "Retain"}},
                                                     _request_timeout=cluster.timeout)
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, cluster.conn.server, verb="patch", resource="persistentvolumes") from None
            tl.add("switch one PV to Retain", claims["keep"], "Bound", retained, "Bound",
                   "kubectl patch pv … -p '{\"spec\":{\"persistentVolumeReclaimPolicy\":\"Retain\"}}'")
            ws.delete("writer")
            _until("delete the writer pod", lambda: _gone_pod(ws, "writer"), timeout)
            for c in claims.values():
                cluster.core.delete_namespaced_persistent_volume_claim(c, ns, _request_timeout=cluster.timeout)
            tl.add("delete the pod and both claims", ", ".join(claims.values()))
            gone = _until(f"PV {pv_names['drop']} reclaimed", lambda: _read_pv(cluster, pv_names["drop"]) is None or None,
                          timeout)
            tl.add("the Delete PV is reclaimed", claims["drop"], "", pv_names["drop"], "gone" if gone else "?",
                   "the provisioner deleted the volume and its data")
            kept = _until(f"PV {retained} released", lambda: (lambda p: p if p and p.status.phase in ("Released", "Failed")
                                                              else None)(_read_pv(cluster, retained)), timeout)
            ref = kept.spec.claim_ref
            tl.add("the Retain PV stays", claims["keep"], "", retained, kept.status.phase,
                   f"claimRef still {ref.namespace}/{ref.name}: not bindable again until an administrator clears it; "
                   f"{kept.spec.capacity.get('storage')} kept" if ref else "kept")
            remains = [p.metadata.name for p in cluster.core.list_persistent_volume(_request_timeout=cluster.timeout).items
                       if p.metadata.name in pv_names.values()]
        finally:
            if retained:
                _release(cluster, retained)
    df = pd.DataFrame(tl.rows)
    t = {r["step"]: r["t_s"] for r in tl.rows}
    parts = []
    if wffc:
        parts.append(f"The claims stayed Pending ({waited}) until a pod used them; bound "
                     f"{t.get('claim bound', 0) - t.get('create a pod that uses both', 0):.2f} s after the pod was created.")
    else:
        parts.append(f"The class binds immediately: the claims were Bound {t.get('claim bound', 0):.2f} s after creation.")
    used = {c: v.get("usedBytes") for c, v in stats.items() if c in claims.values()}
    if used:
        parts.append(f"After writing {write_mib} MiB into each, the Summary API reported usedBytes "
                     + ", ".join(f"{u / MiB:.1f} MiB ({c})" for c, u in used.items()) + " with their pvcRef.")
    else:
        parts.append(f"No volume usage was read: {stats_why}.")
    parts.append(f"Deleting the claims, the Delete PV was gone after "
                 f"{t.get('the Delete PV is reclaimed', 0) - t.get('delete the pod and both claims', 0):.2f} s, while the Retain PV "
                 f"stayed {kept.status.phase}, its volume kept ({', '.join(remains)} remained).")
    fig = go.Figure(go.Table(header={"values": ["t (s)", "step", "claim", "PVC", "PV", "PV phase", "detail"], "align": "left"},
                             cells={"values": [df[c] for c in ("t_s", "step", "claim", "pvc_phase", "pv", "pv_phase", "detail")],
                                    "align": "left"}, columnwidth=[0.5, 1.6, 1.1, 0.6, 1.6, 0.7, 4]))
    fig = figures._finish(fig, f"A persistent volume's life: StorageClass {name}")
    fig.update_layout(height=140 + 40 * len(df))
    return Result(df, fig, " ".join(parts), {"storage_class": name, "used_bytes": used, "write_mib": write_mib,
                                             "remained": remains, "wait_for_first_consumer": waited})


def _gone_pod(ws: Any, name: str) -> bool:
    try:
        ws.pod(name)
        return False
    except ClusterUnreachable:
        raise
    except KperflabError:  # not found (404) is gone
        return True


def _release(cluster: Any, pv: str, timeout: float = 60) -> None:
    """Delete a retained PV: put its policy back to Delete (the PV controller then reclaims it, data included)."""
    try:
        cluster.core.patch_persistent_volume(pv, {"spec": {"persistentVolumeReclaimPolicy": "Delete"}},
                                             _request_timeout=cluster.timeout)
    except Exception as exc:  # noqa: BLE001
        if getattr(exc, "status", None) == 404:
            return
        raise translate(exc, cluster.conn.server, verb="patch", resource="persistentvolumes") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _read_pv(cluster, pv) is not None:
        time.sleep(0.2)
    if _read_pv(cluster, pv) is not None:  # released but not reclaimed (a controller that did not act): delete it
        try:
            cluster.core.delete_persistent_volume(pv, _request_timeout=cluster.timeout)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) != 404:
                raise translate(exc, cluster.conn.server, verb="delete", resource=f"persistentvolume {pv}") from None


__all__ = ["Catalog", "ProbeSizes", "PullEvent", "emptydir", "go_duration", "latency_check", "on_registry", "oom_check",
           "parse_pulled", "prepull", "prepuller", "pull_fit", "pull_time", "pv_lifecycle", "read_catalog", "tmpfs_oom",
           "volume_latency"]
