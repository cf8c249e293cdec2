"""Where kperflab keeps its files. Shared by the client and the lab; no logic beyond paths."""

from __future__ import annotations

import os
from pathlib import Path

LAB_CONTEXT = "kperflab-lab"


def home() -> Path:
    """``$KPERFLAB_HOME``, or ``~/.kperflab``."""
    env = os.environ.get("KPERFLAB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".kperflab"


def lab_kubeconfig() -> Path:
    """The kubeconfig that `kperflab lab up` writes: ``$KPERFLAB_HOME/kubeconfig.yaml`` when
    KPERFLAB_HOME is set, else ``~/.kube/kperflab-lab.yaml``."""
    if os.environ.get("KPERFLAB_HOME"):
        return home() / "kubeconfig.yaml"
    return Path.home() / ".kube" / "kperflab-lab.yaml"


def lab_state_dir() -> Path:
    return home() / "lab"
