"""Facts about the machine kperflab runs on: cgroup version, root, kernel features, tools on PATH.

Pure reads of /proc, /sys and PATH; every function takes its roots as arguments so tests can point them
at a fake tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def cgroup_version(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """2 when the unified hierarchy is mounted at ``root``, 1 for v1 controllers, None when neither.

    >>> cgroup_version(Path("/nonexistent"))
    """
    if (root / "cgroup.controllers").exists():
        return 2
    if (root / "memory").is_dir() or (root / "cpu").is_dir() or (root / "cpu,cpuacct").is_dir():
        return 1
    return None


def is_root() -> bool:
    return os.geteuid() == 0


def ipvs_available(proc: Path = Path("/proc"), sys: Path = Path("/sys")) -> bool:
    """Whether the kernel has IPVS loaded (the ``ip_vs`` module or built in)."""
    return (proc / "net" / "ip_vs").exists() or (sys / "module" / "ip_vs").exists()


def tool_version(name: str, *args: str) -> str | None:
    """First line of ``name --version`` (or ``args``), or None when the tool is not on PATH."""
    path = shutil.which(name)
    if not path:
        return None
    try:
        out = subprocess.run([path, *(args or ("--version",))], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else path


def hybrid_cgroup2_controllers(root: Path = Path("/sys/fs/cgroup")) -> str:
    """The controllers a hybrid layout's cgroup2 mount (``<root>/unified``) holds: crun refuses to run there unless
    that mount is out of its way ("" when there is no such mount or it is empty).

    >>> hybrid_cgroup2_controllers(Path("/nonexistent"))
    ''
    """
    try:
        return (root / "unified" / "cgroup.controllers").read_text().strip()
    except OSError:
        return ""


def overlayfs() -> bool:
    try:
        return any(line.split()[-1] == "overlay" for line in Path("/proc/filesystems").read_text().splitlines())
    except OSError:
        return False


@dataclass(frozen=True)
class HostFacts:
    cgroup_version: int | None
    root: bool
    iptables: str | None
    nft: str | None
    ipvs: bool
    kubectl: str | None
    crun: str | None = None
    overlay: bool = False
    hybrid_controllers: str = ""

    @classmethod
    def read(cls) -> HostFacts:
        return cls(
            cgroup_version=cgroup_version(),
            root=is_root(),
            iptables=tool_version("iptables"),
            nft=tool_version("nft"),
            ipvs=ipvs_available(),
            kubectl=tool_version("kubectl", "version", "--client"),
            crun=tool_version("crun"),
            overlay=overlayfs(),
            hybrid_controllers=hybrid_cgroup2_controllers(),
        )
