"""Kubernetes quantities for the lab: parsing through `kubernetes.utils`, plus the canonical forms."""

from __future__ import annotations

from decimal import Decimal

from kubernetes.utils import parse_quantity


def parse(value: object) -> Decimal:
    """'250m' → Decimal('0.25'); '64Mi' → Decimal(67108864). Raises ValueError on a bad quantity."""
    if isinstance(value, bool):
        raise ValueError(f"invalid quantity {value!r}")
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        raise ValueError(f"invalid quantity {value!r}") from None


def millicores(value: object) -> int:
    """CPU quantity → millicores, rounded up like Quantity.MilliValue()."""
    d = parse(value) * 1000
    i = int(d)
    return i + 1 if d > i else i


def to_bytes(value: object) -> int:
    d = parse(value)
    i = int(d)
    return i + 1 if d > i else i


def binary_si(n: int) -> str:
    """Canonical BinarySI: an exact multiple of 1024 gets Ki/Mi/Gi…, otherwise plain bytes."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = 1024 ** ("KMGTPE".index(suffix[0]) + 1)
        if n and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)
