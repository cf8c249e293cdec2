"""kperflab: a Jupyter workshop on Kubernetes performance.

The public surface is small; heavy modules load only when used, so ``kperflab --help`` stays fast.
"""

from __future__ import annotations

from .errors import (
    ClusterUnreachable,
    ConfigError,
    ExperimentFailed,
    KperflabError,
    MetricsUnavailable,
    PermissionDenied,
)

__version__ = "0.1.0"

__all__ = [
    "ClusterUnreachable",
    "ConfigError",
    "ExperimentFailed",
    "KperflabError",
    "MetricsUnavailable",
    "PermissionDenied",
    "__version__",
]
