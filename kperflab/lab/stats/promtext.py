"""Prometheus text exposition (format 0.0.4) written the way the kubelet's Go registry writes it.

prometheus_client's writer prints ``0.0`` and ``100000.0`` where Go prints ``0`` and ``100000``; the lab serves
upstream's exact bytes, so it formats values here. Parsing stays with prometheus_client (tests parse every text
the lab serves with it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def go_float(v: float) -> str:
    """What Prometheus' Go writer prints: 0 and 1 as such, otherwise strconv.AppendFloat(f, 'g', -1, 64), i.e. the
    shortest digits, in exponent form when the decimal exponent is < -4 or >= 6.

    >>> [go_float(x) for x in (0, 1, 4.710169, 12533760, 1633252712, 100000, 1e6, 0.0001, 1e-05, 357.35491)]
    ['0', '1', '4.710169', '1.253376e+07', '1.633252712e+09', '100000', '1e+06', '0.0001', '1e-05', '357.35491']
    """
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    sign, digits, exp10 = Decimal(repr(v)).normalize().as_tuple()
    ds = "".join(map(str, digits))
    exp = len(ds) + int(exp10) - 1  # decimal exponent of the first digit
    s = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{s}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{s}0.{'0' * (-exp - 1)}{ds}"
    if len(ds) <= exp + 1:
        return f"{s}{ds}{'0' * (exp + 1 - len(ds))}"
    return f"{s}{ds[:exp + 1]}.{ds[exp + 1:]}"


def _escape_label(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


@dataclass
class Family:
    name: str
    type: str  # counter, gauge
    help: str
    samples: list[tuple[dict[str, str], float, float | None]] = field(default_factory=list)  # labels, value, ts (s)

    def add(self, labels: dict[str, str], value: float, ts: float | None = None) -> None:
        self.samples.append((labels, value, ts))


def render(families: list[Family]) -> str:
    """Families sorted by name, series sorted by label values, labels sorted by name; ms timestamps."""
    out: list[str] = []
    for fam in sorted(families, key=lambda f: f.name):
        if not fam.samples:
            continue
        if fam.help:
            text = fam.help.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {fam.name} {text}\n")
        out.append(f"# TYPE {fam.name} {fam.type}\n")
        for labels, value, ts in sorted(fam.samples, key=lambda s: [s[0][k] for k in sorted(s[0])]):
            lab = ",".join(f'{k}="{_escape_label(labels[k])}"' for k in sorted(labels))
            line = fam.name + (f"{{{lab}}}" if lab else "") + " " + go_float(value)
            if ts is not None:
                line += f" {int(ts * 1000)}"
            out.append(line + "\n")
    return "".join(out)
