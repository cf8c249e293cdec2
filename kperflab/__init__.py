"""kperflab: a Jupyter workshop on Kubernetes performance.

The public surface is small; heavy modules load only when used, so ``kperflab --help`` stays fast.
"""

from __future__ import annotations

from .errors import (
    BadInput,
    ClusterUnreachable,
    ConfigError,
    ExperimentFailed,
    KperflabError,
    MetricsUnavailable,
    PermissionDenied,
    PrometheusUnavailable,
)

__version__ = "0.1.0"


def __getattr__(name: str):  # connect and Cluster import pandas and the client: load them on first use
    if name in ("connect", "Cluster"):
        import importlib

        return getattr(importlib.import_module("kperflab.session"), name)
    raise AttributeError(name)


__all__ = [
    "BadInput",
    "Cluster",
    "connect",
    "ClusterUnreachable",
    "ConfigError",
    "ExperimentFailed",
    "KperflabError",
    "MetricsUnavailable",
    "PermissionDenied",
    "PrometheusUnavailable",
    "__version__",
]
