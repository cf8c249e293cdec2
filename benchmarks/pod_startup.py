"""Pod create → Running on the lab, against a bare spawn of the same command. Prints the ratio (target ≤ 3x), the
container runtime the lab used (crun from images, or the process runtime) and, with ``--build``, the one-time build
of the lab's images from Debian packages into a fresh cache (about a minute).

    .venv/bin/python benchmarks/pod_startup.py [--pods 20] [--build]

Starts a private lab (its own KPERFLAB_HOME), measures, and stops it. The image is pulled once before the timed
pods (they then find it present: IfNotPresent), so the times are container starts, not pulls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODE = "import time; print('up', flush=True); time.sleep(30)"
RUNTIME = "?"
CRUN: list[float] = []


def bare(n: int) -> list[float]:
    """Time from spawn until the process has printed its first line (it is running Python code)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", CODE], stdout=subprocess.PIPE)
        p.stdout.readline()
        out.append(time.perf_counter() - t0)
        p.kill()
        p.wait()
    return out


def lab(n: int) -> list[float]:
    from kubernetes import client, config, watch

    home = Path(tempfile.mkdtemp(prefix="kperflab-bench-"))
    env = {**os.environ, "KPERFLAB_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "up"], env=env, check=True, capture_output=True)
    try:
        v1 = client.CoreV1Api(config.new_client_from_config(str(home / "kubeconfig.yaml")))
        out = []
        for i in range(-1, n):  # -1: a warm-up that pulls the image; not counted
            name = f"bench-{i + 1}"
            pod = client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=client.V1PodSpec(
                termination_grace_period_seconds=0, containers=[client.V1Container(
                    name="c", image="python:3.13-slim", command=["python", "-c", CODE])]))
            rv = v1.list_namespaced_pod("default").metadata.resource_version
            t0 = time.perf_counter()
            v1.create_namespaced_pod("default", pod)
            for ev in watch.Watch().stream(v1.list_namespaced_pod, "default", field_selector=f"metadata.name={name}",
                                           resource_version=rv, timeout_seconds=30):
                if ev["object"].status.phase == "Running":
                    break
            if i >= 0:
                out.append(time.perf_counter() - t0)
            v1.delete_namespaced_pod(name, "default", grace_period_seconds=0)
            deadline = time.time() + 30
            while time.time() < deadline and v1.list_namespaced_pod("default", field_selector=f"metadata.name={name}").items:
                time.sleep(0.02)
        return out
    finally:
        subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "down", "--purge"], env=env, capture_output=True)


def lab_raw(n: int) -> list[float]:
    """The same, over one keep-alive HTTPS connection and one open watch: the lab's own latency, without the
    official client's per-call cost (connection set-up, model parsing)."""
    import http.client
    import json
    import ssl

    home = Path(tempfile.mkdtemp(prefix="kperflab-bench-"))
    env = {**os.environ, "KPERFLAB_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "up"], env=env, check=True, capture_output=True)
    try:
        import yaml

        kc = yaml.safe_load((home / "kubeconfig.yaml").read_text())
        port = int(kc["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])
        token = kc["users"][0]["user"]["token"]
        ctx = ssl.create_default_context(cafile=str(home / "lab" / "tls" / "ca.crt"))
        hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        api = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
        w = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
        api.request("GET", "/api/v1/namespaces/default/pods", headers=hdr)
        rv = json.loads(api.getresponse().read())["metadata"]["resourceVersion"]
        w.request("GET", f"/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}", headers=hdr)
        stream = w.getresponse()
        out = []
        global RUNTIME
        RUNTIME = json.loads((home / "lab" / "lab.json").read_text()).get("runtime", "?")
        for i in range(-1, n):  # -1: a warm-up that pulls the image; not counted
            name = f"raw-{i + 1}"
            body = {"metadata": {"name": name}, "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                {"name": "c", "image": "python:3.13-slim", "command": ["python", "-c", CODE]}]}}
            t0 = time.perf_counter()
            api.request("POST", "/api/v1/namespaces/default/pods", body=json.dumps(body).encode(), headers=hdr)  # bytes: one send, no Nagle wait
            api.getresponse().read()
            while True:
                ev = json.loads(stream.readline())
                o = ev["object"]
                if o["metadata"]["name"] == name and o.get("status", {}).get("phase") == "Running":
                    break
            if i >= 0:
                out.append(time.perf_counter() - t0)
            api.request("DELETE", f"/api/v1/namespaces/default/pods/{name}?gracePeriodSeconds=0", headers=hdr)
            api.getresponse().read()
            while True:  # gone (the kubelet has torn it down) before the next one, so each start is measured alone
                ev = json.loads(stream.readline())
                if ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == name:
                    break
        if RUNTIME.startswith("crun"):
            global CRUN
            CRUN = bare_crun(home, n)
        return out
    finally:
        subprocess.run([sys.executable, "-m", "kperflab.cli", "lab", "down", "--purge"], env=env, capture_output=True)


def bare_crun(home: Path, n: int) -> list[float]:
    """The same command in a container started by hand: ``crun run`` of a bundle on an overlay of the lab's unpacked
    python image (new PID, mount, IPC, UTS and network namespaces), until its first output — the container's own cost,
    without the kubelet, the sandbox, the pod network or the API."""
    import json
    import secrets

    from kperflab.lab.images import ImageStore

    lab = json.loads((home / "lab" / "lab.json").read_text())
    image = ImageStore(home / "lab" / "run" / lab["lab_id"] / "images").get("python:3.13-slim")
    assert image is not None, "the lab has not pulled python:3.13-slim"
    work = Path(tempfile.mkdtemp(prefix="kperflab-bench-crun-"))
    out = []
    try:
        subprocess.run(["crun", "spec"], cwd=work, check=True, capture_output=True)
        spec = json.loads((work / "config.json").read_text())
        spec["process"].update(terminal=False, args=["python", "-c", CODE],
                               env=["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED=1"])
        spec["root"] = {"path": "rootfs", "readonly": False}
        for i in range(n):
            b = work / f"b{i}"
            for d in ("rootfs", "upper", "work"):
                (b / d).mkdir(parents=True)
            (b / "config.json").write_text(json.dumps(spec))
            lower = ":".join(str(p) for p in image.lowerdirs)
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={lower},upperdir={b / 'upper'},workdir={b / 'work'}", str(b / "rootfs")], check=True)
            cid = f"bench-{secrets.token_hex(4)}"
            try:
                t0 = time.perf_counter()
                # as the lab's shim: in a private mount namespace without the cgroup2 mount where the layout is
                # hybrid (crun refuses it otherwise); exec keeps crun itself the process timed
                p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                      'umount /sys/fs/cgroup/unified 2>/dev/null; exec crun run --bundle "$0" "$1"',
                                      str(b), cid], stdout=subprocess.PIPE)
                p.stdout.readline()
                out.append(time.perf_counter() - t0)
                subprocess.run(["crun", "kill", cid, "KILL"], capture_output=True)
                p.wait(10)
                subprocess.run(["crun", "delete", "-f", cid], capture_output=True)
            finally:
                subprocess.run(["umount", str(b / "rootfs")], capture_output=True)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return out


def build_time() -> float:
    """Seconds to build the base images from Debian packages into an empty cache (what the first `lab up` does)."""
    import shutil

    from kperflab.lab.images import ensure_base_images

    cache = Path(tempfile.mkdtemp(prefix="kperflab-bench-cache-"))
    try:
        t0 = time.perf_counter()
        ensure_base_images(cache)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--build", action="store_true", help="also time the one-time image build (about a minute)")
    args = ap.parse_args()
    n = args.pods
    if args.build:
        print(f"one-time build of the lab's images from Debian packages: {build_time():.1f} s")
    b, r, k = bare(n), lab_raw(n), lab(n)
    mb, mr, mk = statistics.median(b), statistics.median(r), statistics.median(k)
    print(f"bare spawn until first output:                median {mb * 1000:.1f} ms (n={n})")
    print(f"lab create → Running (keep-alive HTTPS, watch): median {mr * 1000:.1f} ms, p90 {sorted(r)[int(n * .9) - 1] * 1000:.1f} ms")
    print(f"lab create → Running (official client):       median {mk * 1000:.1f} ms, p90 {sorted(k)[int(n * .9) - 1] * 1000:.1f} ms")
    print(f"ratio, lab/bare: {mr / mb:.2f}x (target ≤ 3x); with the official client's own cost: {mk / mb:.2f}x")
    if CRUN:
        mc = statistics.median(CRUN)
        print(f"bare `crun run` of the same command on the same image, until first output: median {mc * 1000:.1f} ms")
        print(f"ratio, lab/bare container: {mr / mc:.2f}x (target ≤ 3x); with the official client: {mk / mc:.2f}x")
    print(f"container runtime: {RUNTIME}")


if __name__ == "__main__":
    main()
