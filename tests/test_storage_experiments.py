"""02-storage: the parsers on the kubelet's real event strings, the computations behind the findings, the volume probe
cross-checked against fio on this machine's filesystems, then each experiment at quick sizes on the lab."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from kperflab import exercises, workloads
from kperflab.errors import BadInput
from kperflab.experiments import storage as st
from kperflab.experiments.storage import Catalog, PullEvent

from .conftest import needs_root

MiB = 1 << 20


# -- the kubelet's Pulled events ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("717ms", 0.717), ("1.315633737s", 1.315633737), ("1m43.249s", 103.249), ("3m10.96s", 190.96), ("49.657983991s", 49.657983991),
    ("0s", 0.0), ("1h0m0s", 3600.0), ("850µs", 0.00085), ("850us", 0.00085), ("12ns", 1.2e-08), ("2h3m", 7380.0),
])
def test_go_durations_as_the_kubelet_writes_them(text, seconds):
    assert st.go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "1", "ms", "1.5", "1x", "1s2", "s1"])
def test_go_duration_rejects_what_go_would_not_write(bad):
    with pytest.raises(ValueError):
        st.go_duration(bad)


@pytest.mark.parametrize(("message", "event"), [
    # v1.30+ (kubernetes#121719): pull, including waiting, size
    ('Successfully pulled image "nginx" in 717ms (718ms including waiting). Image size: 78005565 bytes.',
     PullEvent("nginx", True, 0.717, 0.718, 78005565)),
    ('Successfully pulled image "g1g1/py-kube" in 15.981s (15.981s including waiting). Image size: 129338587 bytes.',
     PullEvent("g1g1/py-kube", True, 15.981, 15.981, 129338587)),
    # v1.26–1.29 (kubernetes#111772): no size
    ('Successfully pulled image "registry.k8s.io/pause:3.9" in 1.315633737s (1.315633737s including waiting)',
     PullEvent("registry.k8s.io/pause:3.9", True, 1.315633737, 1.315633737, None)),
    # v1.19–1.25 (kubernetes#91563)
    ('Successfully pulled image "x" in 1m43.249s', PullEvent("x", True, 103.249)),
    ('Successfully pulled image "mcr.microsoft.com/windows:ltsc2019" in 3m10.96s',
     PullEvent("mcr.microsoft.com/windows:ltsc2019", True, 190.96)),
    # before 1.19: no duration at all
    ('Successfully pulled image "busybox"', PullEvent("busybox", True)),
    # a cache hit, and the 1.33+ wording with KubeletEnsureSecretPulledImages
    ('Container image "x" already present on machine', PullEvent("x", False)),
    ('Container image "busybox:1.37" already present on machine and can be accessed by the pod', PullEvent("busybox:1.37", False)),
])
def test_pulled_messages_in_every_upstream_format(message, event):
    assert st.parse_pulled(message) == event


@pytest.mark.parametrize("message", ['Pulling image "nginx"', 'Failed to pull image "x": not found', "Created container: main",
                                     'Successfully pulled image "x" in soon'])
def test_other_messages_are_not_pulls(message):
    assert st.parse_pulled(message) is None


def _event(reason: str, message: str, path: str, n: int) -> Any:
    return SimpleNamespace(reason=reason, message=message, first_timestamp=n, event_time=None,
                           metadata=SimpleNamespace(resource_version=str(n), creation_timestamp=None),
                           involved_object=SimpleNamespace(field_path=path))


def test_pulled_events_of_a_pod_by_container_in_order():
    items = [_event("Pulled", 'Container image "b" already present on machine', "spec.containers{c1}", 3),
             _event("Pulling", 'Pulling image "a"', "spec.initContainers{pull-0}", 1),
             _event("Pulled", 'Successfully pulled image "a" in 2s (2.5s including waiting). Image size: 5 bytes.',
                    "spec.initContainers{pull-0}", 2)]
    core = SimpleNamespace(list_namespaced_event=lambda ns, field_selector, **kw: SimpleNamespace(items=items))
    cluster = SimpleNamespace(core=core, timeout=1, conn=SimpleNamespace(server="https://x"))
    got = st.pulled_events(cluster, "ns", "p")
    assert got == [("pull-0", PullEvent("a", True, 2.0, 2.5, 5)), ("c1", PullEvent("b", False))]


# -- catalog and image references ------------------------------------------------------------------------------------

def test_catalog_labels_sizes_layers_and_registries():
    assert st.size_label_bytes("500MB") == 500_000_000 and st.size_label_bytes("1GiB") == 1 << 30
    assert st.layers_of("100MB-20layers") == 20 and st.layers_of("500MB") == 1 and st.layers_of("python-slim") is None
    # the same mapping as the lab's catalog writes (kperflab.lab.images.catalog.slow_reference), by the wire format only
    assert st.on_registry("kperflab/size-test:100mb", "slow-registry.kperflab.internal") == \
        "slow-registry.kperflab.internal/kperflab/size-test:100mb"
    assert st.on_registry("busybox:1.37", "slow.example") == "slow.example/library/busybox:1.37"
    assert st.on_registry("localhost:5000/a:1", "slow:5001") == "slow:5001/a:1"
    assert st._present("kperflab/size-test:10mb", {"docker.io/kperflab/size-test:10mb"})
    assert not st._present("kperflab/size-test:10mb", {"docker.io/kperflab/size-test:100mb"})
    with pytest.raises(BadInput, match="no test image"):
        Catalog({"10MB": "a"}, source="ConfigMap x").ref("1GB")


def test_read_catalog_from_the_configmap_or_public_images(monkeypatch):
    answers = {"status": 200, "data": {"10MB": "kperflab/size-test:10mb", "slow-registry": "slow.example/",
                                       "slow-registry-bandwidth": "100mbit", "empty": " "}}
    monkeypatch.setattr(st, "get_raw", lambda conn, path, timeout: (answers["status"], json.dumps({"data": answers["data"]}).encode()))
    cluster = SimpleNamespace(conn=None, timeout=1)
    cat = st.read_catalog(cluster)
    assert cat.images == {"10MB": "kperflab/size-test:10mb"} and cat.slow_registry == "slow.example"
    answers["status"] = 404
    cat = st.read_catalog(cluster)
    assert cat.images == st.PUBLIC_IMAGES and cat.slow_registry is None and "no ConfigMap" in cat.source


def test_lesson_images_never_pull_one_image_cold_twice():
    lab = Catalog({"10MB": "a", "100MB": "b", "500MB": "c", "100MB-20layers": "d"}, "slow", "ConfigMap")
    plan = st.lesson_images(lab)
    assert plan.pull == ("10MB", "100MB", "100MB-20layers") and plan.prepull == ("500MB",) and not plan.slow
    assert "slow registry is not measured" in plan.note
    more = st.lesson_images(Catalog({"10MB": "a", "20MB": "e", "100MB": "b", "500MB": "c"}, "slow", "ConfigMap"))
    assert more.slow == ("20MB",) and not more.note
    for plan in (st.lesson_images(lab), more, st.lesson_images(Catalog(dict(st.PUBLIC_IMAGES), None, "public"))):
        used = plan.pull + plan.slow + plan.prepull
        assert len(used) == len(set(used)), plan
    assert st.lesson_images(Catalog(dict(st.PUBLIC_IMAGES), None, "public")).prepull == ("golang",)


def test_pull_time_refuses_an_image_in_both_sets():
    with pytest.raises(BadInput, match="pulled cold only once"):
        st.pull_time.__wrapped__(None, images=("10MB",), slow=("10MB",))
    with pytest.raises(BadInput, match="no slow registry"):
        st.pull_time.__wrapped__(None, images=(), slow=("10MB",), catalog=Catalog({"10MB": "a"}, None, "ConfigMap x"))


# -- findings computed from the numbers -------------------------------------------------------------------------------

def test_pull_fit_is_a_least_squares_line():
    assert st.pull_fit([10e6, 100e6], [0.3, 1.2]) == (1.0, 0.2)
    per100, floor = st.pull_fit([10e6, 100e6, 500e6], [1.1, 2.0, 6.0])
    assert per100 == pytest.approx(1.0, abs=0.01) and floor == pytest.approx(1.0, abs=0.05)
    assert st.pull_fit([10e6, 10e6], [1, 2]) is None and st.pull_fit([10e6, math.nan], [1, 2]) is None


def _pull_frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["image", "link", "condition", "layers", "size_mb", "pulled", "pull_s", "start_s"]
    return pd.DataFrame([dict(zip(cols, r, strict=True)) for r in rows])


def test_pull_finding_says_what_was_measured():
    df = _pull_frame([("10MB", "registry", "cold", 1, 10.0, True, 0.5, 0.9), ("10MB", "registry", "warm", 1, 10.0, False, 0.0, 0.3),
                      ("100MB", "registry", "cold", 1, 100.0, True, 1.4, 1.8), ("100MB", "registry", "warm", 1, 100.0, False, 0.0, 0.35),
                      ("100MB", "registry", "Always", 1, 100.0, True, 0.02, 0.4),
                      ("100MB-20layers", "registry", "cold", 20, 100.0, True, 2.8, 3.1),
                      ("20MB", "slow registry", "cold", 1, 20.0, True, 1.6, 2.0),
                      ("500MB", "registry", "present before", 1, 500.0, False, 0.0, 0.3)])
    r = st._pull_result(df, Catalog({}, None, "ConfigMap x"))
    assert r.data["seconds_per_100mb"] == pytest.approx(1.0) and r.data["floor_s"] == pytest.approx(0.4)
    f = r.finding
    assert "1.00 s per 100 MB over a 0.40 s floor" in f
    assert "With 20 layers, 100 MB took 2.80 s against 1.40 s in one layer (2.0x)" in f
    assert "the 100MB pod started in 0.35 s instead of 1.80 s" in f
    assert "asked the registry again: 0.02 s for 100MB" in f
    assert "20MB (20 MB) took 1.60 s, 100 Mbit/s" in f
    assert "500MB was on the node before this run" in f and "nan" not in f.lower()
    r.figure.to_json()
    # the same with other numbers says other things: nothing is fixed text
    df2 = df.assign(pull_s=df.pull_s * 3)
    assert "3.00 s per 100 MB" in st._pull_result(df2, Catalog({}, None, "x")).finding


def _probe_event(d: str, read_us: float, iops: float, direct: bool = True, mounted: bool | None = True) -> dict:
    pcts = {str(q): read_us * (1 + q / 100) for q in st.PCTS}
    job = {"ops": 500, "iops": iops, "mean_us": read_us * 1.5, "pcts_us": pcts}
    return {"event": "result", "dir": d, "tool": "python", "direct": direct, "mounted": mounted, "bytes": 8 * MiB,
            "write_mib_s": 300.0, "read_mib_s": 900.0, "randread": job, "randwrite": dict(job)}


def test_volume_finding_and_skips_when_nothing_is_mounted():
    sizes = st.ProbeSizes.quick()
    rows = st.probe_rows([_probe_event("/disk", 50, 20000), _probe_event("/memory", 2.5, 300000), {"event": "done"}],
                         {"/disk": "emptyDir (disk)", "/memory": "emptyDir (Memory)"})
    r = st._volumes_result(pd.DataFrame(rows), "t", sizes)
    assert "emptyDir (disk): 300 MiB/s sequential write, 4 KiB random reads p50 75.0 µs" in r.finding
    assert "took 20.0x as long as on emptyDir (Memory)" in r.finding and "direct I/O" in r.finding
    assert st.latency_check(r, "emptyDir (disk)") == (75.0, "")
    r.figure.to_json()
    # the container's own directory is not a volume: said, not measured
    rows = st.probe_rows([_probe_event("/disk", 50, 20000, mounted=False),
                          {"event": "failed", "dir": "/memory", "error": "/memory is not a directory"}],
                         {"/disk": "emptyDir (disk)", "/memory": "emptyDir (Memory)"})
    r = st._volumes_result(pd.DataFrame(rows), "t", sizes)
    assert r.skipped and "no volume is mounted at /disk" in r.skipped and "/memory is not a directory" in r.skipped
    v, why = st.latency_check(r, "emptyDir (disk)")
    assert v is None and why
    # a class the cluster lacks is said beside what was measured
    rows = st.probe_rows([_probe_event("/data", 80, 12000)], {"/data": "local PVC"})
    r = st._volumes_result(pd.DataFrame(rows), "t", sizes, {"remote PVC": "there is no StorageClass remote here."})
    assert "remote PVC: not measured — there is no StorageClass remote here." in r.finding and not r.skipped


def test_exercise_checks_fail_wrong_answers():
    r = st.Result(pd.DataFrame([{"kind": "emptyDir (disk)", "randread_mean_us": 52.0, "randread_iops": 19000.0}]), None, "")
    measured, why = st.latency_check(r, "emptyDir (disk)")
    right = 1e6 / 19000.0
    assert exercises.check(right, measured, tolerance=0.25 * measured)
    for wrong in (right * 2, right / 2 - 1, right + 1000):
        assert not exercises.check(wrong, measured, tolerance=0.25 * measured)
    oom = st.Result(pd.DataFrame(), None, "", {"killed_after_mib": None, "limits_note": "limits are not enforced on node x"})
    got, why = st.oom_check(oom)
    assert got is None and "not enforced" in why


def test_bad_input_is_refused_with_the_next_step():
    with pytest.raises(BadInput, match="tool must be"):
        workloads.io_bench(tool="dd")
    with pytest.raises(BadInput, match="multiple of 4096"):
        workloads.io_bench(block=1000)
    with pytest.raises(BadInput, match="absolute paths"):
        workloads.io_bench(directories=("data",))
    with pytest.raises(BadInput, match="above the memory limit"):
        st.tmpfs_oom.__wrapped__(None, limit="64Mi", size_limit="32Mi")
    with pytest.raises(BadInput, match="cannot hold"):
        st.pv_lifecycle.__wrapped__(None, size="16Mi", write_mib=16)


def test_prepuller_is_the_init_container_pattern():
    ds = st.prepuller("p", ["a:1", "b:2"])
    spec = ds["spec"]["template"]["spec"]
    assert [c["image"] for c in spec["initContainers"]] == ["a:1", "b:2"]
    assert all(c["command"] == ["sh", "-c", "exit 0"] and c["imagePullPolicy"] == "IfNotPresent" for c in spec["initContainers"])
    assert spec["containers"][0]["image"] == "b:2" and "sleep" in spec["containers"][0]["command"][-1]
    assert spec["tolerations"] == [{"operator": "Exists"}]


# -- the probe, cross-checked against fio on this machine -------------------------------------------------------------

def _probe(dirs: list[str], tool: str, ops: int = 3000) -> dict[str, dict]:
    env = {**os.environ, "DIRS": ",".join(dirs), "SIZE": str(16 * MiB), "BLOCK": str(MiB), "OPS": str(ops),
           "SECONDS": "3", "TOOL": tool}
    out = subprocess.run([sys.executable, "-c", workloads.IO_BENCH], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    evs = workloads.read_events(out.stdout)
    assert not [e for e in evs if e["event"] == "failed"], evs
    return {e["dir"]: e for e in evs if e["event"] == "result"}


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_python_probe_agrees_with_fio_on_disk_and_tmpfs(tmp_path):
    """The portable probe and fio run the same jobs on the same filesystems (ext4 or whatever holds tmp_path, and
    tmpfs): random 4 KiB latency within 2x of fio's, and both see tmpfs faster than the disk."""
    shm = Path("/dev/shm") / f"kperflab-test-{os.getpid()}"
    shm.mkdir()
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        py = _probe([str(disk), str(shm)], "python")
        fio = _probe([str(disk), str(shm)], "fio")
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    for d in (str(disk), str(shm)):
        assert py[d]["tool"] == "python" and fio[d]["tool"] == "fio" and py[d]["direct"] == fio[d]["direct"]
        for job in ("randread", "randwrite"):
            a, b = py[d][job]["pcts_us"]["50"], fio[d][job]["pcts_us"]["50"]
            assert 0.5 <= a / b <= 2.0, (d, job, a, b)
            assert py[d][job]["ops"] > 100 and fio[d][job]["ops"] > 100
        assert py[d]["write_mib_s"] > 0 and py[d]["read_mib_s"] > 0
    for tool in (py, fio):
        assert tool[str(shm)]["randread"]["pcts_us"]["50"] < tool[str(disk)]["randread"]["pcts_us"]["50"]
    assert not list(disk.iterdir())  # the probe removed its files


def test_tmpfs_fill_reports_its_writes_and_refuses_a_directory_that_is_no_mount(tmp_path):
    env = {**os.environ, "DIR": str(tmp_path), "TOTAL": str(8 * MiB), "STEP": str(2 * MiB), "PAUSE": "0", "HOLD_AT": str(1 << 40),
           "HOLD": "0"}
    out = subprocess.run([sys.executable, "-c", workloads.TMPFS_FILL], env=env, capture_output=True, text=True, timeout=60)
    evs = workloads.read_events(out.stdout)
    assert out.returncode == 0 and evs[0]["event"] == "failed" and "no volume is mounted" in evs[0]["error"], (out.stderr, evs)
    env["DIR"] = "/dev/shm"  # a mount point (tmpfs) on any Linux
    before = set(os.listdir("/dev/shm"))
    if "big.bin" in before:
        pytest.skip("/dev/shm/big.bin exists")
    try:
        out = subprocess.run([sys.executable, "-c", workloads.TMPFS_FILL], env=env, capture_output=True, text=True, timeout=60)
    finally:
        Path("/dev/shm/big.bin").unlink(missing_ok=True)
    evs = workloads.read_events(out.stdout)
    assert evs[0]["event"] == "start" and evs[0]["fstype"] == "tmpfs", evs
    assert [e["bytes"] for e in evs if e["event"] == "written"] == [2 * MiB, 4 * MiB, 6 * MiB, 8 * MiB]
    assert evs[-1]["event"] == "complete"


# -- on the lab ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(lab: dict[str, Any]):
    import kperflab

    return kperflab.connect(lab["kubeconfig"])


@pytest.fixture(scope="module")
def fresh(lab: dict[str, Any]) -> dict[str, str]:
    """Test images built into the lab's registry for this module alone (`kperflab lab images --add`), so their first
    pull is cold whatever ran before on the session's lab: label → reference."""
    import uuid

    from .conftest import kperflab

    tag = uuid.uuid4().hex[:8]
    out = {}
    for label, size, layers in (("10MB", "10MB", 1), ("40MB", "40MB", 1), ("40MB-8layers", "40MB", 8), ("20MB", "20MB", 1),
                                ("30MB", "30MB", 1)):
        ref = f"kperflab-test/storage-{tag}:{label.lower()}"
        done = kperflab(lab["home"], "lab", "images", "--add", ref, "--size", size, "--layers", str(layers), timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        out[label] = ref
    return out


@pytest.mark.lab
@needs_root
def test_lab_catalog_names_the_lessons_images(cluster):
    catalog = st.read_catalog(cluster)
    assert catalog.source.startswith("ConfigMap"), f"the lab publishes no test-image catalog: {catalog.source}"
    assert {"10MB", "100MB", "500MB", "100MB-20layers"} <= set(catalog.images) and catalog.slow_registry, catalog
    plan = st.lesson_images(catalog)
    assert plan.pull and plan.prepull and plan.slow, plan  # nothing skipped on the lab
    used = plan.pull + plan.slow + plan.prepull
    assert len(used) == len(set(used))


@pytest.mark.lab
@needs_root
def test_lab_pull_time_reads_the_pulls_from_the_events(cluster, fresh):
    catalog = st.read_catalog(cluster)
    mine = Catalog(fresh, catalog.slow_registry, "test images of this module")
    r = st.pull_time(cluster, images=("10MB", "40MB", "40MB-8layers"), slow=("20MB",), catalog=mine, progress=False)
    assert not r.skipped, r.finding
    df = r.frame
    cold = df[df.condition == "cold"]
    assert set(cold.image) == {"10MB", "40MB", "40MB-8layers", "20MB"}, df  # never pulled before: every one cold
    assert cold.pulled.all() and (cold.pull_s > 0).all(), df
    for label in cold.image:  # the kubelet reports the size of what it pulled: about what was built
        want = st.size_label_bytes(label)
        got = int(cold[cold.image == label].size_bytes.iloc[0])
        assert abs(got - want) <= 0.02 * want, (label, got)
    assert cold.set_index("image").loc["20MB", "link"] == "slow registry"
    assert cold.set_index("image").loc["40MB-8layers", "layers"] == 8
    warm = df[df.condition == "warm"]
    assert len(warm) == len(cold) and not warm.pulled.astype(bool).any() and (warm.event == "already present on machine").all(), df
    assert r.data["seconds_per_100mb"] > 0 and f"{r.data['seconds_per_100mb']:.2f} s per 100 MB" in r.finding
    assert "Over the bandwidth-limited registry 20MB (20 MB)" in r.finding and "With 8 layers, 40 MB took" in r.finding
    assert "nan" not in r.finding.lower()
    again = st.pull_time(cluster, images=("10MB",), catalog=mine, progress=False)  # now present: said so
    assert set(again.frame.condition) == {"present before", "warm", "Always"}, again.frame
    assert "10MB was on the node before this run" in again.finding


@pytest.mark.lab
@needs_root
def test_lab_an_image_that_does_not_exist_is_said_not_pulled(cluster):
    r = st.pull_time(cluster, images=("kperflab-test/no-such-image:1",), progress=False, timeout=60)
    assert r.skipped.startswith("this cluster could not pull the test images — kperflab-test/no-such-image:1"), r.finding


@pytest.mark.lab
@needs_root
def test_lab_prepull_daemonset_takes_the_pull_off_the_pod(cluster, fresh):
    r = st.prepull(cluster, images=("30MB",), catalog=Catalog(fresh, None, "test images of this module"), progress=False)
    assert not r.skipped and not r.data["present_before"], r.finding
    pre, app = r.frame.iloc[0], r.frame.iloc[1]
    assert pre.fetched == 1 and abs(pre.size_bytes - 30e6) <= 0.6e6 and pre.pull_s > 0, r.frame
    assert app.fetched == 0 and app.already_present == 1, r.frame
    assert f"{r.data['saved_s']:.2f} s saved" in r.finding


@pytest.mark.lab
@needs_root
def test_lab_emptydir_disk_and_memory(cluster):
    r = st.emptydir(cluster, st.ProbeSizes.quick(), progress=False)
    assert not r.skipped, r.skipped
    df = r.frame.set_index("kind")
    assert set(df.index) == {"emptyDir (disk)", "emptyDir (Memory)"}, df
    assert (df.randread_ops > 0).all() and (df.seq_write_mib_s > 0).all(), df
    assert st.latency_check(r, "emptyDir (disk)")[0] > 0


@pytest.mark.lab
@needs_root
def test_lab_memory_emptydir_file_is_the_containers_memory(cluster):
    r = st.tmpfs_oom(cluster, limit="64Mi", hold=8, progress=False)
    assert not r.skipped, r.skipped
    oom, full = r.frame.iloc[0], r.frame.iloc[1]
    assert oom.reason == "OOMKilled" and oom.exit_code == 137, r.frame
    assert 24 <= oom.written_mib <= 64, r.frame  # the file's pages were charged to the 64Mi container
    assert oom.peak_working_set_mib >= 0.6 * 64, r.frame  # the cgroup's own working set grew with the file
    assert full.outcome.startswith("ENOSPC") and not full.reason and 24 <= full.written_mib <= 32, r.frame
    assert "OOMKilled" in r.finding and "ENOSPC" in r.finding
    killed, why = st.kill_point(cluster, "96Mi", progress=False)
    assert killed is not None, why
    assert abs(killed - (96 - r.data["start_used_mib"])) <= 10, (killed, r.data)


@pytest.mark.lab
@needs_root
def test_lab_local_and_remote_volumes(cluster):
    r = st.volume_latency(cluster, sizes=st.ProbeSizes.quick(), progress=False)
    assert not r.skipped, r.skipped
    assert set(r.frame.kind) == {"local PVC (default class)", "remote PVC"}, r.frame
    assert "error" not in r.frame or r.frame.error.isna().all(), r.frame
    assert (r.frame.randread_ops > 0).all()


@pytest.mark.lab
@needs_root
def test_lab_pv_lifecycle_binds_on_first_consumer_and_reclaims_by_policy(cluster):
    r = st.pv_lifecycle(cluster, progress=False)
    assert not r.skipped, r.skipped
    steps = list(r.frame.step)
    assert "no pod uses them yet" in steps and st.WFFC_MESSAGE in r.data["wait_for_first_consumer"], r.frame
    assert steps.index("no pod uses them yet") < steps.index("claim bound")
    used = r.data["used_bytes"]
    assert used and all(u >= 16 * MiB for u in used.values()), r.frame
    assert len(r.data["remained"]) == 1, r.frame  # the Retain PV stayed, the Delete PV went
    kept = r.frame[r.frame.step == "the Retain PV stays"].iloc[0]
    assert kept.pv_phase == "Released" and kept.pv == r.data["remained"][0]
    left = [p.metadata.name for p in cluster.core.list_persistent_volume().items]
    assert r.data["remained"][0] not in left  # the experiment deleted what it had retained


def test_an_image_the_cluster_cannot_pull_is_said_not_measured():
    df = _pull_frame([("busybox", "registry", "cold", None, 1.1, True, 0.3, 0.6), ("busybox", "registry", "warm", None, 1.1, False, 0.0, 0.2),
                      ("golang", "registry", "cannot pull", None, math.nan, False, None, None)])
    df["reference"] = ["busybox:1.37", "busybox:1.37", "golang:1.23"]
    df["event"] = ["Successfully pulled", "already present on machine", "ImagePullBackOff: no route to registry"]
    r = st._pull_result(df, Catalog({}, None, "public images"))
    assert "Not pulled here: golang (golang:1.23): ImagePullBackOff: no route to registry." in r.finding
    assert "The cold pull of busybox (1 MB) took 0.30 s" in r.finding and "nan" not in r.finding.lower()
    r = st._pull_result(df[df.condition == "cannot pull"], Catalog({}, None, "public images"))
    assert r.skipped.startswith("this cluster could not pull the test images — golang")


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(st, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 10


@pytest.mark.lab
@needs_root
def test_lab_image_gc_headroom_reads_the_kubelets_thresholds_and_image_filesystem(cluster, lab):
    import json

    node = st.pick_node(cluster)
    r = st.image_gc_headroom(cluster, node=node, catalog=st.read_catalog(cluster))
    assert not r.skipped, r.skipped
    assert (r.data["high"], r.data["low"]) == (85, 80) and "/configz" in r.data["source"]
    # independently: the image filesystem's size is what the lab was started with (4Gi, less ext4's own metadata)
    fs = json.loads(cluster.node_proxy(node, "stats/summary"))["node"]["runtime"]["imageFs"]
    assert r.data["capacity"] == fs["capacityBytes"] and 3.5 * 2**30 < fs["capacityBytes"] <= 4 * 2**30
    assert f"{r.data['headroom'] / 2**30:.2f} GiB more" in r.finding and "85%" in r.finding


def test_image_gc_headroom_over_the_threshold_says_gc_runs():
    class Fake:
        def node_objects(self):
            return [{"metadata": {"name": "n1"}, "spec": {}, "status": {
                "conditions": [{"type": "Ready", "status": "True"}], "images": [{"names": ["a"], "sizeBytes": 900}]}}]

        def node_proxy(self, node, path):
            from kperflab.errors import MetricsUnavailable

            raise MetricsUnavailable(f"/api/v1/nodes/{node}/proxy/{path}", 404)

        def summary(self, node):
            return {"node": {"runtime": {"imageFs": {"capacityBytes": 1000, "availableBytes": 100}}}}

    r = st.image_gc_headroom(Fake())
    assert r.data["high"] == 85 and "kubelet's defaults" in r.data["source"]
    assert "90% full, above the 85%" in r.finding
