"""The lab process: store + API server + kubelet + controllers, wired together and run until stopped."""

from __future__ import annotations

import logging
import os
import platform
import secrets
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from . import cgroups
from .apiserver import APIServer, serve
from .cadvisor import Sampler
from .controllers import Controllers
from .kubelet import Kubelet
from .kubelet_server import KubeletServer
from .metrics_server import GROUP as METRICS_GROUP
from .metrics_server import MetricsServer
from .runtime import Runtime
from .store import Store, rfc3339

log = logging.getLogger("kperflab.lab")

K8S_VERSION = "v1.37.0"
GIT_VERSION = f"{K8S_VERSION}+kperflab"
NODE_NAME = "kperflab-lab"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
ANNOTATION_ENFORCED = "kperflab.dev/limits-enforced"


def version_info() -> dict[str, str]:
    return {"major": "1", "minor": K8S_VERSION.split(".")[1], "emulationMajor": "1", "emulationMinor": K8S_VERSION.split(".")[1],
            "minCompatibilityMajor": "1", "minCompatibilityMinor": str(int(K8S_VERSION.split(".")[1]) - 1),
            "gitVersion": GIT_VERSION, "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-11-01T00:00:00Z", "goVersion": f"python{platform.python_version()}",
            "compiler": "cpython", "platform": f"linux/{_arch()}"}


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = int(v.split()[0]) * 1024
    return out


def _machine_labels() -> dict[str, str]:
    def read(path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return ""

    mid = read("/etc/machine-id")
    return {"boot_id": read("/proc/sys/kernel/random/boot_id"), "machine_id": mid, "system_uuid": mid}


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def node_object(state_dir: Path, enforced: bool, cgroup_version: int | None, now: float) -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    mem = _meminfo()["MemTotal"]
    disk = shutil.disk_usage(state_dir)
    capacity = {"cpu": str(cpus), "memory": f"{mem // 1024}Ki", "pods": "110", "ephemeral-storage": f"{disk.total // 1024}Ki",
                "hugepages-2Mi": "0", "hugepages-1Gi": "0"}
    allocatable = dict(capacity, memory=f"{(mem - 100 * 1024 * 1024) // 1024}Ki",  # eviction-hard memory.available<100Mi
                       **{"ephemeral-storage": str(int(disk.total * 0.9))})  # nodefs.available<10%
    ts = rfc3339(now)
    cond = [
        {"type": t, "status": "False", "lastHeartbeatTime": ts, "lastTransitionTime": ts, "reason": r, "message": m}
        for t, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))
    ]
    cond.append({"type": "Ready", "status": "True", "lastHeartbeatTime": ts, "lastTransitionTime": ts, "reason": "KubeletReady",
                 "message": "kubelet is posting ready status" + ("" if enforced else
                                                                 "; WARNING: not root, so pod CPU and memory limits are not enforced")})
    machine_id = Path("/etc/machine-id").read_text().strip() if Path("/etc/machine-id").exists() else ""
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {
            "beta.kubernetes.io/arch": _arch(), "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": _arch(),
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "node-role.kubernetes.io/control-plane": "",
            "kperflab.dev/lab": "true"},
            "annotations": {ANNOTATION_ENFORCED: "true" if enforced else "false",
                            "kperflab.dev/cgroup-version": str(cgroup_version or "none"),
                            "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"providerID": f"kperflab://{NODE_NAME}"},
        "status": {
            "capacity": capacity, "allocatable": allocatable, "conditions": cond,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": machine_id, "systemUUID": machine_id, "bootID": boot_id,
                         "kernelVersion": platform.release(), "osImage": _os_image(),
                         "containerRuntimeVersion": "kperflab://0.1.0", "kubeletVersion": K8S_VERSION,
                         "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": _arch()},
            "images": [],
        },
    }


class Lab:
    """Everything the lab runs, in one process."""

    def __init__(self, state_dir: Path, token: str, tls: tuple[str, str], port: int = 0,
                 lab_id: str | None = None, metric_resolution: float = 15.0) -> None:
        self.state_dir = state_dir
        self.store = Store()
        self.driver = cgroups.detect()
        self.lab_id = lab_id or secrets.token_hex(8)
        self.runtime = Runtime(self.driver, self.lab_id)
        self.stop_event = threading.Event()
        self.metric_resolution = metric_resolution
        self.api = APIServer(self.store, token, version=version_info(), ready=lambda: self._ready)
        self._ready = False
        self.server, _ = serve(self.api, tls[0], tls[1], port)
        self.port = self.server.server_address[1]
        self.kubelet = Kubelet(self.store, NODE_NAME, self.runtime, state_dir, api_port=self.port)
        self.api.logs = self.kubelet.logs
        self.controllers = Controllers(self.store, NODE_NAME)
        self.started = time.time()
        self.sampler = Sampler(self.driver, self.kubelet.stat_targets)
        self.kubelet_server = KubeletServer(self.sampler, NODE_NAME, state_dir, self.started,
                                            _machine_labels(), self._pods_of_node)
        self.metrics_server = MetricsServer(self.store, lambda: self.sampler.snapshot, NODE_NAME, metric_resolution)
        self.api.node_proxy = self.kubelet_server.handle
        self.api.extra_groups = {METRICS_GROUP: self.metrics_server}
        self._threads: list[threading.Thread] = []

    def bootstrap(self) -> None:
        for ns in SYSTEM_NAMESPACES:
            self.store.create("v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                                                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        for ns in SYSTEM_NAMESPACES:
            self.store.create("v1/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                     "metadata": {"name": "default", "namespace": ns}})
        self.store.create("v1/nodes", node_object(self.state_dir, self.driver is not None,
                                                  self.driver.version if self.driver else None, time.time()))
        self.store.create("v1/services", {"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "ports": [
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.port}], "sessionAffinity": "None"},
            "status": {"loadBalancer": {}}})

    def start(self) -> None:
        self.bootstrap()
        for name, target in (("kubelet", self.kubelet.run), ("controllers", self.controllers.run),
                             ("heartbeat", self._heartbeat), ("metrics", self._metrics_loop)):
            t = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self._ready = True

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(10.0):
            node = self.store.try_get("v1/nodes", "", NODE_NAME)
            if node is None:
                continue
            ts = rfc3339(time.time())
            for c in node["status"]["conditions"]:
                c["lastHeartbeatTime"] = ts
            try:
                self.store.update("v1/nodes", node, check_rv=False)
            except Exception:  # noqa: BLE001
                log.exception("heartbeat failed")

    def _pods_of_node(self) -> list[dict[str, Any]]:
        pods, *_ = self.store.list("v1/pods", None, lambda p: p.get("spec", {}).get("nodeName") == NODE_NAME)
        return pods

    def _metrics_loop(self, stop: threading.Event) -> None:
        """cAdvisor housekeeping every min(10 s, resolution); a metrics-server scrape every resolution, right after
        the housekeeping of the same tick so that the scrape sees fresh samples."""
        housekeeping = min(10.0, self.metric_resolution)
        next_sample = next_scrape = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_sample:
                    self.sampler.sample()
                    next_sample = max(next_sample + housekeeping, now + housekeeping / 2)
                if now >= next_scrape:
                    self.metrics_server.scrape()
                    next_scrape = max(next_scrape + self.metric_resolution, now + self.metric_resolution / 2)
            except Exception:  # noqa: BLE001 - a failed round must not end metrics for the lab's lifetime
                log.exception("metrics sampling failed")
            stop.wait(max(0.0, min(next_sample, next_scrape) - time.monotonic()))

    def stop(self) -> None:
        self._ready = False
        self.stop_event.set()
        self.kubelet.wake()
        for t in self._threads:  # a kubelet sync still running could start a container after the shutdown below
            t.join(timeout=10)
        self.store.close()
        self.kubelet.shutdown()
        self.server.shutdown()
        self.server.server_close()
        if self.driver is not None:
            self.driver.kill_all(cgroups.LAB_ROOT)
            self.driver.remove(cgroups.LAB_ROOT)

    def wait(self) -> None:
        done = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            done.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, on_signal)
        while not done.wait(1.0):
            pass
