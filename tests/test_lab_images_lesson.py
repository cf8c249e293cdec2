"""The storage lesson's images in the lab, as a Kubernetes user meets them: test images of known size in every lab's
registry (ConfigMap kube-public/kperflab-test-images), a pull that moves their bytes and reports their size in the
Pulled event, the same images over a registry link shaped by tc tbf, serial and parallel pulls as the kubelet's
settings say, and image garbage collection by the image filesystem's thresholds."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client, config

from kperflab.lab.labs import processes_by_lab

from .conftest import kperflab, needs_root, wait_pod

pytestmark = [pytest.mark.lab, needs_root]
CM_NS, CM_NAME = "kube-public", "kperflab-test-images"
PULLED = re.compile(r'Successfully pulled image "(?P<image>[^"]+)" in (?P<took>\S+) \((?P<total>\S+) including waiting\)\. '
                    r"Image size: (?P<size>\d+) bytes\.")


def go_seconds(d: str) -> float:
    """Go's Duration.String() → seconds: 903ms, 8.763s, 1m2.5s."""
    total = 0.0
    for num, unit in re.findall(r"([0-9.]+)(ms|h|m|s)", d):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def pod(name: str, image: str, cmd: str = "sleep 3600", restart: str = "Always") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 1, "restartPolicy": restart,
                     "containers": [{"name": "main", "image": image, "command": ["sh", "-c", cmd]}]}}


def wait(k8s, ns, name, pred, timeout=90):
    return wait_pod(k8s, ns, name, pred, timeout, every=0.3)


def events(k8s, ns, name):
    return [(e.reason, e.message) for e in k8s.list_namespaced_event(ns).items if e.involved_object.name == name]


def pulled(k8s, ns, name) -> dict:
    msgs = [m for r, m in events(k8s, ns, name) if r == "Pulled"]
    assert msgs, events(k8s, ns, name)
    m = PULLED.match(msgs[0])
    assert m, msgs[0]
    return {"image": m["image"], "took": go_seconds(m["took"]), "total": go_seconds(m["total"]), "size": int(m["size"])}


def first_line(k8s, ns, name, timeout=20) -> str:
    """The first word of a running container's log (it may take a moment to write it)."""
    deadline = time.time() + timeout
    while not (words := k8s.read_namespaced_pod_log(name, ns).split()):
        assert time.time() < deadline, f"{name} wrote nothing"
        time.sleep(0.3)
    return words[0]


def lesson(k8s) -> tuple[dict, dict]:
    cm = k8s.read_namespaced_config_map(CM_NAME, CM_NS)
    return cm.data, json.loads(cm.metadata.annotations["kperflab.dev/sizes"])


@pytest.fixture(scope="module")
def oci(lab):
    st = json.loads((lab["home"] / "lab" / "lab.json").read_text())
    if not st.get("registry"):
        pytest.skip(f"the session lab runs the process runtime: {st.get('runtime')}")
    return {**lab, "state": st}


def test_every_lab_publishes_its_test_images_and_the_cli_lists_them(oci, k8s):
    data, sizes = lesson(k8s)
    assert {k: v for k, v in data.items() if not k.startswith("slow-registry")} == {
        "10MB": "kperflab/size-test:10mb", "100MB": "kperflab/size-test:100mb", "100MB-b": "kperflab/size-test:100mb-b",
        "500MB": "kperflab/size-test:500mb", "100MB-20layers": "kperflab/size-test:100mb-20layers"}
    assert data["slow-registry"] == "slow-registry.kperflab.internal" and data["slow-registry-bandwidth"] == "100mbit"
    for label, want in (("10MB", 10e6), ("100MB", 100e6), ("100MB-b", 100e6), ("500MB", 500e6), ("100MB-20layers", 100e6)):
        assert abs(sizes[label] - want) < 0.01 * want, sizes
    out = kperflab(oci["home"], "lab", "images")
    assert out.returncode == 0, out.stderr
    assert re.search(r"kperflab/size-test:100mb-20layers\s+\w{12}\s+99\.9 MB\s+20", out.stdout), out.stdout
    assert "100MB-20layers  kperflab/size-test:100mb-20layers" in out.stdout
    assert "slow-registry.kperflab.internal/kperflab/size-test:10mb" in out.stdout


def _tbf_sent(lab_id: str) -> tuple[str, int]:
    """The slow registry's side of its link: its eth0 qdisc (rate) and the bytes the qdisc has sent."""
    pids = [p for p in processes_by_lab().get(lab_id, [])
            if b"registry-slow" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(pids) == 1, pids
    out = subprocess.run(["nsenter", f"--net=/proc/{pids[0]}/ns/net", "tc", "-s", "qdisc", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"qdisc tbf .* rate (\S+) .*\n\s*Sent (\d+) bytes", out)
    assert m, out
    return m[1], int(m[2])


def test_a_pull_moves_the_bytes_and_the_slow_registry_is_as_slow_as_its_rate(oci, k8s, namespace):
    """A cold pull of the 100 MB image through the 100 Mbit/s link takes at least 8 s (its bytes cross the tbf qdisc);
    the 100 MB image in 20 layers from the lab's own registry, asked at the same moment, comes much faster, and as
    the session lab serializes pulls (the kubelet's default) one of the two waited for the other."""
    data, sizes = lesson(k8s)
    slow_ref = f"{data['slow-registry']}/{data['100MB']}"
    rate, sent_before = _tbf_sent(oci["lab_id"])
    assert rate == "100Mbit"
    k8s.create_namespaced_pod(namespace, pod("slow", slow_ref, "wc -c /kperflab/data/layer-01.bin; sleep 3600"))
    k8s.create_namespaced_pod(namespace, pod("fast", data["100MB-20layers"], "ls /kperflab/data | wc -l; sleep 3600"))
    for name in ("slow", "fast"):
        wait(k8s, namespace, name, lambda p: p.status.phase == "Running")
    slow, fast = pulled(k8s, namespace, "slow"), pulled(k8s, namespace, "fast")
    assert slow["image"] == slow_ref and slow["size"] == sizes["100MB"]
    assert fast["size"] == sizes["100MB-20layers"]
    _, sent_after = _tbf_sent(oci["lab_id"])
    assert sent_after - sent_before >= sizes["100MB"], "the image's bytes crossed the shaped link"
    assert slow["took"] >= 0.95 * sizes["100MB"] * 8 / 100e6, slow  # no faster than 100 Mbit/s
    assert fast["took"] < slow["took"], (fast, slow)
    first, second = sorted((slow, fast), key=lambda x: x["total"])
    # serialized, the second waited for most of the first (less the time between the two pods' sandboxes: the first
    # may be short, 0.7 s); in parallel it would not have waited at all
    assert second["total"] - second["took"] >= 0.5 * first["took"], "serialized: the second pull waited for the first"
    assert int(first_line(k8s, namespace, "slow")) > 95_000_000  # the data, unpacked in the container's rootfs
    assert first_line(k8s, namespace, "fast") == "19"  # busybox below 19 data layers


# -- a second lab with other kubelet settings: parallel pulls, image GC on a 1 GiB image filesystem -----------------

KUBELET_CONFIG = """apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
serializeImagePulls: false
maxParallelImagePulls: 2
imageGCHighThresholdPercent: 36
imageGCLowThresholdPercent: 34
imageMinimumGCAge: 0s
"""


@pytest.fixture(scope="module")
def lab2(tmp_path_factory):
    home = tmp_path_factory.mktemp("kperflab-home-images")
    (home / "kubelet.yaml").write_text(KUBELET_CONFIG)
    up = kperflab(home, "lab", "up", "--kubelet-config", str(home / "kubelet.yaml"), "--imagefs-size", "1Gi",
                  "--registry-bandwidth", "200mbit", "--kubeconfig", str(home / "kube.yaml"))
    assert up.returncode == 0, up.stdout + up.stderr
    st = json.loads((home / "lab" / "lab.json").read_text())
    try:
        yield {"home": home, "lab_id": st["lab_id"], "state": st,
               "k8s": client.CoreV1Api(config.new_client_from_config(str(home / "kube.yaml")))}
    finally:
        down = kperflab(home, "lab", "down", "--purge")
        assert down.returncode == 0, down.stdout + down.stderr
        assert not (home / "lab" / "run" / st["lab_id"]).exists()


def test_settings_reach_the_lab_and_another_up_with_other_settings_is_refused(lab2, tmp_path):
    assert lab2["state"]["kubelet_config"]["serializeImagePulls"] is False
    assert _tbf_sent(lab2["lab_id"])[0] == "200Mbit"
    assert lesson(lab2["k8s"])[0]["slow-registry-bandwidth"] == "200mbit"
    df = subprocess.run(["df", "-B1", "--output=size", str(lab2["home"] / "lab" / "run" / lab2["lab_id"] / "images")],
                        capture_output=True, text=True, check=True).stdout.split()
    assert 0.9 * (1 << 30) < int(df[-1]) <= 1 << 30, df  # the image store is on its own 1 GiB filesystem
    for flag, value, want in (("--registry-bandwidth", "100mbit", "--registry-bandwidth 200mbit (you asked for 100mbit)"),
                              ("--imagefs-size", "2Gi", "--imagefs-size 1Gi (you asked for 2Gi)")):
        out = kperflab(lab2["home"], "lab", "up", flag, value)
        assert out.returncode == 1 and "already up" in out.stderr and want in out.stderr, out.stderr
    other = tmp_path / "kubelet.yaml"
    other.write_text("serializeImagePulls: true\n")
    out = kperflab(lab2["home"], "lab", "up", "--kubelet-config", str(other))
    assert out.returncode == 1 and "another kubelet configuration" in out.stderr, out.stderr
    same = kperflab(lab2["home"], "lab", "up", "--kubelet-config", str(lab2["home"] / "kubelet.yaml"))
    assert same.returncode == 0 and "already up" in same.stdout, same.stdout + same.stderr


def test_parallel_pulls_do_not_wait_for_each_other(lab2):
    """serializeImagePulls: false, maxParallelImagePulls: 2: two pods' pulls asked at once both start at once."""
    k8s = lab2["k8s"]
    data, _ = lesson(k8s)
    k8s.create_namespaced_pod("default", pod("p-slow", f"{data['slow-registry']}/{data['10MB']}"))
    k8s.create_namespaced_pod("default", pod("p-fast", data["100MB"]))
    for name in ("p-slow", "p-fast"):
        wait(k8s, "default", name, lambda p: p.status.phase == "Running")
    a, b = pulled(k8s, "default", "p-slow"), pulled(k8s, "default", "p-fast")
    for x, other in ((a, b), (b, a)):
        assert x["total"] - x["took"] < 0.5 * other["took"], (a, b)  # neither waited for the other's pull
    for name in ("p-slow", "p-fast"):
        k8s.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def _node_image_names(k8s) -> set[str]:
    return {n for img in k8s.read_node("kperflab-lab").status.images or [] for n in img.names}


def test_an_unused_pre_pulled_image_is_garbage_collected_at_the_threshold(lab2):
    """The 100 MB image pulled above is no container's now. A pod of another 100 MB image takes the 1 GiB image
    filesystem over imageGCHighThresholdPercent (36 %): image GC removes the unused one (least recently used first)
    to get under the low threshold, node.status.images loses it, and the next pod that uses it pulls it again."""
    k8s = lab2["k8s"]
    data, _ = lesson(k8s)
    name = f"docker.io/{data['100MB']}"
    deadline = time.time() + 30
    while any(p.metadata.name.startswith("p-") for p in k8s.list_namespaced_pod("default").items):
        assert time.time() < deadline, "the pods of the parallel test are not gone"
        time.sleep(0.5)
    deadline = time.time() + 30  # node status every 10 s
    while name not in _node_image_names(k8s):
        assert time.time() < deadline, ("the node does not list the pre-pulled image", _node_image_names(k8s))
        time.sleep(1)
    k8s.create_namespaced_pod("default", pod("hold", data["100MB-20layers"]))
    wait(k8s, "default", "hold", lambda p: p.status.phase == "Running")
    held = f"docker.io/{data['100MB-20layers']}"
    deadline = time.time() + 60  # GC every 15 s, node status every 10 s
    while name in _node_image_names(k8s) or held not in _node_image_names(k8s):  # the image in use stays
        assert time.time() < deadline, _node_image_names(k8s)
        time.sleep(1)
    node_events = [(e.reason, e.message) for e in k8s.list_namespaced_event("default").items
                   if e.involved_object.kind == "Node"]
    assert not [e for e in node_events if e[0] in ("FreeDiskSpaceFailed", "ImageGCFailed")], node_events
    k8s.create_namespaced_pod("default", pod("again", data["100MB"], "true", restart="Never"))
    wait(k8s, "default", "again", lambda p: p.status.phase == "Succeeded")
    reasons = events(k8s, "default", "again")
    assert ("Pulling", f'Pulling image "{data["100MB"]}"') in reasons, reasons
    assert not [m for r, m in reasons if "already present" in m], reasons


def test_bad_settings_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "kubelet.yaml"
    bad.write_text("imageGCHighThresholdPercent: 50\nimageGCLowThresholdPercent: 60\n")
    for args, needle in ((["--registry-bandwidth", "fast"], "--registry-bandwidth 'fast' is not a rate"),
                         (["--registry-bandwidth", "100gbit"], "--registry-bandwidth 100gbit is out of range"),
                         (["--imagefs-size", "lots"], "--imagefs-size 'lots' is not a size"),
                         (["--kubelet-config", str(bad)], "imageGCLowThresholdPercent (60) must be less than"),
                         (["--kubelet-config", str(tmp_path / "missing.yaml")], "Cannot read the kubelet configuration")):
        out = kperflab(tmp_path, "lab", "up", *args)
        text = out.stdout + out.stderr
        assert out.returncode == 2 and "Traceback" not in text and len(text.strip().splitlines()) == 1, text
        assert needle in text, text
    assert not (tmp_path / "lab" / "lab.json").exists()
