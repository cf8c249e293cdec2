"""How big a cluster a group needs: the pods, CPU and memory each notebook's experiments ask for at their peak.

Nothing here is a typed-in figure. Each step below builds the manifests its experiment creates — with the same
builders (`kperflab.workloads`, `storage.prepuller`, `measuring.hpa_manifests`), the experiment function's own default
arguments (read with `inspect.signature`) and the notebook's own parameters (its ``parameters`` cell and its
``if quick:`` block, read from the notebook file) — and the scheduler's arithmetic is done on those manifests: a
container's request is its ``requests``, else its ``limits`` (as kube-apiserver defaults them), a pod's is the sum of
its containers or its largest init container, whichever is larger.

A step lists the pods its experiment has alive at the same time; the steps of a notebook run one after another, so a
notebook's peak is the largest step in each column (plus what stays up for the whole notebook: 04's ``pipeline``
burner). The group's need assumes every participant is at the same notebook's heaviest step at the same moment — the
worst case of a class that follows the instructor.

    >>> rows = notebook_peaks(quick=True)
    >>> [r.notebook for r in rows]
    ['01-foundations', '02-storage', '03-networking', '04-measuring']
"""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput

Obj = dict[str, Any]
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
MAX_PODS_PER_NODE = 110  # the kubelet's default maxPods


# -- the arithmetic -----------------------------------------------------------------------------------------------

def _cores(q: Any) -> float:
    from kubernetes.utils import parse_quantity

    return float(parse_quantity(q))


def _bytes(q: Any) -> int:
    from kubernetes.utils import parse_quantity

    return int(parse_quantity(q))


def _container(c: Obj) -> tuple[float, int, float | None, int | None]:
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    cpu = req.get("cpu", lim.get("cpu"))
    mem = req.get("memory", lim.get("memory"))
    return (_cores(cpu) if cpu is not None else 0.0, _bytes(mem) if mem is not None else 0,
            _cores(lim["cpu"]) if "cpu" in lim else None, _bytes(lim["memory"]) if "memory" in lim else None)


@dataclass
class Need:
    """What some pods ask of the cluster. ``*_limit`` None: at least one container has no such limit (unbounded)."""

    pods: int = 0
    cpu: float = 0.0
    memory: int = 0
    cpu_limit: float | None = 0.0
    memory_limit: int | None = 0
    storage: int = 0
    services: int = 0

    @classmethod
    def of_pod(cls, spec: Obj, count: int = 1) -> Need:
        main = [_container(c) for c in spec.get("containers") or []]
        init = [_container(c) for c in spec.get("initContainers") or []]
        cpu = max([sum(m[0] for m in main)] + [i[0] for i in init])
        mem = max([sum(m[1] for m in main)] + [i[1] for i in init])
        cl = None if any(m[2] is None for m in main) else sum(m[2] for m in main)
        ml = None if any(m[3] is None for m in main) else sum(m[3] for m in main)
        return cls(count, cpu * count, mem * count, None if cl is None else cl * count, None if ml is None else ml * count)

    def __add__(self, o: Need) -> Need:
        return Need(self.pods + o.pods, self.cpu + o.cpu, self.memory + o.memory,
                    None if self.cpu_limit is None or o.cpu_limit is None else self.cpu_limit + o.cpu_limit,
                    None if self.memory_limit is None or o.memory_limit is None else self.memory_limit + o.memory_limit,
                    self.storage + o.storage, self.services + o.services)

    def times(self, n: int) -> Need:
        return Need(self.pods * n, self.cpu * n, self.memory * n, None if self.cpu_limit is None else self.cpu_limit * n,
                    None if self.memory_limit is None else self.memory_limit * n, self.storage * n, self.services * n)


def need(manifests: Iterable[Obj], storage: int = 0, services: int = 0) -> Need:
    """The pods of ``manifests`` (Pods; Deployments at their ``replicas``; DaemonSets as one pod per node, one node)."""
    total = Need(storage=storage, services=services)
    for m in manifests:
        kind = m.get("kind")
        if kind == "Pod":
            total = total + Need.of_pod(m["spec"])
        elif kind in ("Deployment", "DaemonSet"):
            count = m["spec"].get("replicas", 1) if kind == "Deployment" else 1
            total = total + Need.of_pod(m["spec"]["template"]["spec"], count)
        else:
            raise BadInput(f"sizing cannot count a {kind}.", hint="Count Pods, Deployments or DaemonSets.")
    return total


def _peak(needs: Iterable[Need]) -> Need:
    out = Need()
    for n in needs:
        out = Need(max(out.pods, n.pods), max(out.cpu, n.cpu), max(out.memory, n.memory),
                   None if out.cpu_limit is None or n.cpu_limit is None else max(out.cpu_limit, n.cpu_limit),
                   None if out.memory_limit is None or n.memory_limit is None else max(out.memory_limit, n.memory_limit),
                   max(out.storage, n.storage), max(out.services, n.services))
    return out


# -- the notebooks' parameters --------------------------------------------------------------------------------------

def notebook_parameters(path: Path, quick: bool) -> dict[str, Any]:
    """The values a notebook runs with: its ``parameters`` cell, then (``quick``) the assignments of its ``if quick:``
    block. Only literal assignments are evaluated (``ast.literal_eval``), nothing is executed."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    idx = next((i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if idx is None:
        raise BadInput(f"{path.name} has no cell tagged 'parameters'.", hint="Tag its parameters cell 'parameters'.")
    values: dict[str, Any] = {}

    def assign(stmts: list[ast.stmt]) -> None:
        for st in stmts:
            if isinstance(st, ast.Assign):
                try:
                    val = ast.literal_eval(st.value)
                except ValueError:
                    continue
                for t in st.targets:
                    if isinstance(t, ast.Name):
                        values[t.id] = val
                    elif isinstance(t, ast.Tuple) and isinstance(val, tuple) and len(t.elts) == len(val):
                        values.update({e.id: v for e, v in zip(t.elts, val, strict=True) if isinstance(e, ast.Name)})

    assign(ast.parse("".join(cells[idx]["source"])).body)
    if quick and idx + 1 < len(cells):
        for st in ast.parse("".join(cells[idx + 1]["source"])).body:
            if isinstance(st, ast.If) and isinstance(st.test, ast.Name) and st.test.id == "quick":
                assign(st.body)
    return values


def _defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


# -- each notebook's steps, built with the experiments' own builders ------------------------------------------------

@dataclass
class Step:
    notebook: str
    experiment: str
    need: Need
    note: str = ""


def _steps_01(p: dict[str, Any]) -> list[Step]:
    from . import workloads as w
    from .experiments import foundations as f

    nb = "01-foundations"
    d = _defaults(f.cpu_limits)
    limits = p.get("cpu_limits", d["limits"])
    cpu = [w.cpu_requests(f"limit-{lim.lower()}", requests=p.get("requests", d["requests"]), work=d["work"], pause=0.02,
                          hold=3600, cpu_limit=None if lim == "none" else lim) for lim in limits]
    mem_limit = p.get("memory_limit", _defaults(f.memory_oom)["limit"])
    ds = _defaults(f.data_structures)
    sd = _defaults(f.stack_depth)
    stacks = (256 << 10, 1 << 20) if p.get("quick") else (256 << 10, 1 << 20, 4 << 20)  # the notebook's own call
    stack_cases = ["python", "python-unlimited"] + [f"c-{s >> 10}k" for s in stacks]
    return [
        Step(nb, "cpu_limits", need(cpu), "side by side where they fit on a node, else one at a time"),
        Step(nb, "measured_quota", need([w.cpu_burner("quota", cores=0.1, cpu_limit="250m")])),
        Step(nb, "memory_oom", need([w.memory_allocator("oom", memory_limit=mem_limit)])),
        Step(nb, "data_structures", need([w.pod(f"hold-{k}", f.STRUCTURES, {}, workload="data-structures",
                                                memory_limit=p.get("memory_limit", ds["limit"])) for k in ds["kinds"]])),
        Step(nb, "stack_depth", need([w.pod(f"stack-{k}", f.STACK, {}, workload="stack-depth",
                                            memory_limit=sd["memory_limit"]) for k in stack_cases])),
    ]


def _steps_02(p: dict[str, Any]) -> list[Step]:
    from . import workloads as w
    from .experiments import storage as s

    nb = "02-storage"
    sizes = s.ProbeSizes(size=p.get("probe_mib", 32) << 20)
    limit = f"{(sizes.size * 2 + (32 << 20)) >> 20}Mi"
    ed = w.with_volume(w.io_bench("emptydir", ("/disk", "/memory"), sizes.size), "memory",
                       {"emptyDir": {"medium": "Memory", "sizeLimit": limit}}, "/memory")
    t = _defaults(s.tmpfs_oom)
    mem_limit = p.get("memory_limit", t["limit"])
    fills = [w.tmpfs_fill(f"fill-{case}", memory_limit=mem_limit) for case in ("oom", "full")]
    vl = _defaults(s.volume_latency)
    pv = _defaults(s.pv_lifecycle)
    classes = 2  # the lab has `local` and `remote`; another cluster measures its default class only
    return [
        Step(nb, "pull_time", need([s._image_pod("pull", ["image"])]), "one image pod at a time"),
        Step(nb, "prepull", need([s.prepuller("prepuller", ["image"]), s._image_pod("app", ["image"])]),
             "the DaemonSet puts one pod on every node: counted for one node"),
        Step(nb, "emptydir", need([ed]), f"its Memory emptyDir may hold {limit} of RAM outside any limit"),
        Step(nb, "tmpfs_oom", need(fills)),
        Step(nb, "kill_point", need([w.tmpfs_fill("fill", memory_limit=p.get("exercise_limit", mem_limit))])),
        Step(nb, "volume_latency", need([w.io_bench("probe-0", ("/data",), sizes.size)],
                                        storage=classes * _bytes(vl["size"])), "one claim per class, probed one at a time"),
        Step(nb, "pv_lifecycle", need([w.pod("writer", "", {}, workload="pv-writer")], storage=2 * _bytes(pv["size"]))),
    ]


def _steps_03(p: dict[str, Any]) -> list[Step]:
    from . import workloads as w
    from .experiments import networking as n

    nb = "03-networking"
    backends = [w.http_echo(f"echo-{i}", port=n.BACKEND_PORT, memory_limit="64Mi")
                for i in range(_defaults(n.start_backends)["n"])]
    probe = n._pod("probe", "", {}, "net-probe")
    sl, st, ka = _defaults(n.service_latency), _defaults(n.sync_time), _defaults(n.keepalive_vs_new_connections)
    return [
        Step(nb, "service_latency", need(backends + [probe], services=max(p.get("sizes", sl["sizes"]))),
             "Services in the participant's namespace, every one in every node's kube-proxy rules"),
        Step(nb, "sync_time", need(backends, services=max(p.get("sync_sizes", st["sizes"])))),
        Step(nb, "keepalive_vs_new_connections", need(backends + [probe],
                                                      services=p.get("keepalive_services", ka["n_services"]))),
        Step(nb, "dns_lookups", need([probe]), "one probe pod at a time"),
    ]


def _steps_04(p: dict[str, Any]) -> list[Step]:
    from . import workloads as w
    from .experiments import measuring as m

    nb = "04-measuring"
    cache = p.get("cache_mib", _defaults(m.page_cache)["size"] >> 20) << 20
    hp = m.HPAParams()
    dep, _ = m.hpa_manifests("hpa", hp, 0.0)
    dep["spec"]["replicas"] = hp.max_replicas
    return [
        Step(nb, "changing_load", need([w.cpu_phases("phases", cpu_limit="1")])),
        Step(nb, "page_cache", need([w.page_cache("cache", cache, memory_limit=f"{max(512, 2 * cache >> 20)}Mi")])),
        Step(nb, "short_spike", need([w.memory_spike("spike", memory_limit=_defaults(m.short_spike)["limit"])])),
        Step(nb, "autoscaling", need([dep]), f"the HPA's maxReplicas ({hp.max_replicas}) pods"),
        Step(nb, "prometheus_view", need([m.prometheus_spinner(limit=_defaults(m.prometheus_view)["limit"])]),
             "one spinner (Prometheus itself runs once per cluster, in `monitoring`)"),
    ]


def _standing_04() -> Need:
    """What 04 keeps running from its first cell to its last: the burner `measuring.stages` starts in the notebook's
    own workspace (read again by later cells), and the workload `live_top` follows until its Stop button (in
    JupyterLab; a headless run starts none)."""
    from . import widgets
    from . import workloads as w
    from .experiments import measuring as m

    return need([w.cpu_burner("pipeline", cores=_defaults(m.stages)["cores"], cpu_limit="1", memory_limit="128Mi"),
                 widgets.phases_pod("live-top", ((1.0, 1.0),))])


STEPS = {"01-foundations": _steps_01, "02-storage": _steps_02, "03-networking": _steps_03, "04-measuring": _steps_04}


@dataclass
class Row:
    notebook: str
    need: Need
    heaviest: dict[str, str] = field(default_factory=dict)  # column → the step that sets it


def steps(quick: bool = False) -> list[Step]:
    out = []
    for nb, fn in STEPS.items():
        path = NOTEBOOKS / f"{nb}.ipynb"
        params = {**notebook_parameters(path, quick), "quick": quick} if path.exists() else {"quick": quick}
        out += fn(params)
    return out


def notebook_peaks(quick: bool = False) -> list[Row]:
    rows = []
    all_steps = steps(quick)
    for nb in STEPS:
        mine = [s for s in all_steps if s.notebook == nb]
        peak = _peak(s.need for s in mine)
        if nb == "04-measuring":
            peak = peak + _standing_04()
        heaviest = {col: max(mine, key=lambda s, c=col: getattr(s.need, c)).experiment for col in ("pods", "cpu", "memory")}
        rows.append(Row(nb, peak, heaviest))
    return rows


# -- the table ------------------------------------------------------------------------------------------------------

def _mi(b: int | None) -> str:
    return "no limit" if b is None else f"{b / 2**20:,.0f} Mi" if b < 10 * 2**30 else f"{b / 2**30:,.1f} Gi"


def _cpu(c: float | None) -> str:
    return "no limit" if c is None else f"{c:g}" if c >= 10 else f"{c:.3f}".rstrip("0").rstrip(".")


def table(participants: int, quick: bool = False) -> str:
    """The Markdown table `kperflab sizing` prints: each notebook's peak for one participant and for the group."""
    if not isinstance(participants, int) or participants < 1:
        raise BadInput(f"--participants must be a whole number of at least 1, not {participants!r}.",
                       hint="Pass for example --participants 20.")
    rows = notebook_peaks(quick)
    standing = _standing_04()
    group = _peak(r.need for r in rows).times(participants)
    lines = [
        f"Peak requests per participant, from the experiments' pod specs ({'quick' if quick else 'full'} parameters):",
        "",
        "| notebook | pods | CPU requests | memory requests | PVC storage | Services | heaviest step (pods / CPU / memory) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        n = r.need
        lines.append(f"| {r.notebook} | {n.pods} | {_cpu(n.cpu)} | {_mi(n.memory)} | "
                     f"{_mi(n.storage) if n.storage else '–'} | {n.services or '–'} | "
                     f"{r.heaviest['pods']} / {r.heaviest['cpu']} / {r.heaviest['memory']} |")
    nodes = -(-group.pods // MAX_PODS_PER_NODE)
    lines += [
        f"| **{participants} participant{'s' if participants != 1 else ''}, same step at once** | **{group.pods}** | "
        f"**{_cpu(group.cpu)}** | **{_mi(group.memory)}** | "
        f"**{_mi(group.storage) if group.storage else '–'}** | **{group.services}** | largest of each column × {participants} |",
        "",
        f"Allocatable the group needs at least: {_cpu(group.cpu)} CPU and {_mi(group.memory)} of requests, "
        f"{group.pods} pods (≥ {nodes} node{'s' if nodes != 1 else ''} at the kubelet's default maxPods "
        f"{MAX_PODS_PER_NODE}), {_mi(group.storage)} of PersistentVolumes, {group.services} Services.",
        f"04-measuring includes what runs from its first cell to its last: its `pipeline` burner and the workload "
        f"`live_top` follows ({_cpu(standing.cpu)} CPU, {_mi(standing.memory)} together).",
        "Requests are what the scheduler reserves, not what the pods use: a pod without a CPU limit (01's `limit-none`, "
        "02's probes, 03's clients) may use a whole core while it runs, so leave CPU to spare beyond the requests.",
    ]
    return "\n".join(lines)
