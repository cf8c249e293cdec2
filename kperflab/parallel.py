"""Bounded concurrency for reads that fan out over nodes: 100 nodes that answer in 100 ms each take well under
1.5 s with the default bound, and a slow or dead node costs its timeout once, not once per node."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
MAX_WORKERS = 16  # below cluster.POOL_SIZE, so every worker has a kept-alive connection


def parallel_map(fn: Callable[[T], R], items: Iterable[T], max_workers: int = MAX_WORKERS) -> list[R]:
    """``[fn(x) for x in items]`` with at most ``max_workers`` at once, in order; the first error is raised."""
    items = list(items)
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items)), thread_name_prefix="kperflab-read") as pool:
        return list(pool.map(fn, items))
