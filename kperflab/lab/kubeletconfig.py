"""The lab kubelet's settings, as a `KubeletConfiguration` (kubelet.config.k8s.io/v1beta1) holds them.

Only the fields the lab acts on are here, with the upstream defaults unless a field says why the lab differs (a
shorter ``volumeStatsAggPeriod`` so that an emptyDir over its ``sizeLimit`` is noticed in seconds, not a minute).
The node proxy's ``/configz`` serves them as the kubelet does (``{"kubeletconfig": {...}}``), so a notebook reads the
settings the same way on the lab and on a real node. ``kperflab lab up --kubelet-config FILE`` reads a YAML file
of this kind; a field the lab does not know is an error that names it, as the kubelet's strict decoding is.

>>> c = KubeletConfig.from_dict({"serializeImagePulls": False, "maxParallelImagePulls": 3})
>>> c.parallel_pulls
3
>>> KubeletConfig().parallel_pulls
1
>>> KubeletConfig.from_dict({"maxParallelImagePulls": 2})
Traceback (most recent call last):
...
kperflab.errors.BadInput: maxParallelImagePulls 2 is only valid with serializeImagePulls: false. ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import BadInput
from .network.kubeproxy import parse_duration
from .stats.metrics_server import go_duration


def parse_go_duration(value: str) -> float:
    seconds = parse_duration(value, float("nan"))
    if seconds != seconds or seconds < 0:  # NaN: unreadable
        raise ValueError(value)
    return seconds


API_VERSION, KIND = "kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"
HINT = "See `kperflab lab up --help`; the fields are the kubelet's (KubeletConfiguration, kubelet.config.k8s.io/v1beta1)."


def _eviction_hard() -> dict[str, str]:
    return {"memory.available": "100Mi", "nodefs.available": "10%", "imagefs.available": "15%", "nodefs.inodesFree": "5%"}


@dataclass(frozen=True)
class KubeletConfig:
    serializeImagePulls: bool = True
    maxParallelImagePulls: int | None = None
    imageGCHighThresholdPercent: int = 85
    imageGCLowThresholdPercent: int = 80
    imageMinimumGCAge: str = "2m0s"
    volumeStatsAggPeriod: str = "10s"  # the kubelet's default is 1m0s; the lab checks volumes more often
    evictionHard: dict[str, str] = field(default_factory=_eviction_hard)
    evictionPressureTransitionPeriod: str = "5m0s"
    nodeStatusMaxImages: int = 50
    registryPullQPS: int = 5
    registryBurst: int = 10

    @property
    def parallel_pulls(self) -> int:
        """How many pulls may run at once: 1 when serialized; else maxParallelImagePulls (nil: no limit, 0 here)."""
        if self.serializeImagePulls:
            return 1
        return self.maxParallelImagePulls or 0

    @property
    def image_minimum_gc_age(self) -> float:
        return parse_go_duration(self.imageMinimumGCAge)

    @property
    def volume_stats_period(self) -> float:
        return parse_go_duration(self.volumeStatsAggPeriod)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KubeletConfig:
        data = dict(data or {})
        for k, want in (("apiVersion", API_VERSION), ("kind", KIND)):
            if k in data and data.pop(k) != want:
                raise BadInput(f"The kubelet configuration must be {k} {want}.", hint=HINT)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInput(f'The lab\'s kubelet does not know the field "{unknown[0]}" of KubeletConfiguration.', hint=HINT)
        try:
            cfg = cls(**data)
        except TypeError as exc:
            raise BadInput(f"The kubelet configuration is not valid: {exc}.", hint=HINT) from None
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, path: Path) -> KubeletConfig:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise BadInput(f"Cannot read the kubelet configuration {path}: {exc}.", hint=HINT) from None
        if data is not None and not isinstance(data, dict):
            raise BadInput(f"{path} is not a KubeletConfiguration (a YAML mapping).", hint=HINT)
        return cls.from_dict(data or {})

    def validate(self) -> None:
        """The kubelet's own checks (pkg/kubelet/apis/config/validation) for the fields the lab has."""
        if self.maxParallelImagePulls is not None:
            if self.maxParallelImagePulls < 1:
                raise BadInput(f"maxParallelImagePulls {self.maxParallelImagePulls} must be a positive number.", hint=HINT)
            if self.serializeImagePulls and self.maxParallelImagePulls > 1:
                raise BadInput(f"maxParallelImagePulls {self.maxParallelImagePulls} is only valid with "
                               "serializeImagePulls: false.", hint=HINT)
        for name in ("imageGCHighThresholdPercent", "imageGCLowThresholdPercent"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= 100:
                raise BadInput(f"{name} ({v}) must be between 0 and 100.", hint=HINT)
        if self.imageGCLowThresholdPercent >= self.imageGCHighThresholdPercent and self.imageGCHighThresholdPercent != 100:
            raise BadInput(f"imageGCLowThresholdPercent ({self.imageGCLowThresholdPercent}) must be less than "
                           f"imageGCHighThresholdPercent ({self.imageGCHighThresholdPercent}).", hint=HINT)
        for name in ("imageMinimumGCAge", "volumeStatsAggPeriod", "evictionPressureTransitionPeriod"):
            try:
                parse_go_duration(getattr(self, name))
            except (ValueError, TypeError):
                raise BadInput(f'{name} "{getattr(self, name)}" is not a duration like 10s or 1m0s.', hint=HINT) from None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["maxParallelImagePulls"] is None:
            del out["maxParallelImagePulls"]
        for name in ("imageMinimumGCAge", "volumeStatsAggPeriod", "evictionPressureTransitionPeriod"):
            out[name] = go_duration(parse_go_duration(out[name]))
        return out

    def configz(self) -> dict[str, Any]:
        """What the kubelet's ``/configz`` answers."""
        return {"kubeletconfig": self.to_dict()}
