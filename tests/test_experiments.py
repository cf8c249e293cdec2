"""The experiments' physics on the lab: what each lesson claims must be what the kernel did."""

from __future__ import annotations

from typing import Any

import pytest

import kperflab
from kperflab import workloads
from kperflab.experiments import foundations, wait_event

from .conftest import needs_root

pytestmark = [pytest.mark.lab, needs_root]


@pytest.fixture(scope="module")
def cluster(lab: dict[str, Any]):
    return kperflab.connect(lab["kubeconfig"])


def test_throttled_requests_are_slower(cluster):
    r = foundations.cpu_limits(cluster, limits=("none", "100m"), requests=3, progress=False)
    rows = r.frame.set_index("limit")
    assert rows.loc["100m", "median_ms"] > 3 * rows.loc["none", "median_ms"], r.frame
    assert rows.loc["100m", "throttled_ratio"] > 0.3
    assert "100m" in r.finding and f"{rows.loc['100m', 'median_ms'] / rows.loc['none', 'median_ms']:.1f}x" in r.finding


def test_oom_happens_above_the_limit_and_not_below(cluster):
    r = foundations.memory_oom(cluster, limit="48Mi", step=8 << 20, pause=0.3, progress=False)
    assert (r.data["reason"], r.data["exit_code"]) == ("OOMKilled", 137)
    assert r.data["last_allocated"] <= r.data["limit_bytes"] and "OOMKilled" in r.finding
    with cluster.workspace("below-limit") as ws:
        ws.create(workloads.memory_allocator("small", total=16 << 20, step=8 << 20, pause=0.1, memory_limit="48Mi"))
        wait_event(ws, "small", "holding", 60, progress=False)
        pod = ws.pod("small")
        assert pod.status.phase == "Running" and pod.status.container_statuses[0].restart_count == 0


def test_list_uses_more_memory_than_array(cluster):
    r = foundations.data_structures(cluster, n=1_000_000, limit="256Mi", kinds=("list", "array"), progress=False)
    rows = r.frame.set_index("structure")
    assert rows.fits.all(), r.frame
    assert rows.loc["list", "working_set_mib"] > 2 * rows.loc["array", "working_set_mib"], r.frame


def test_recursion_fails_as_the_lesson_says(cluster):
    r = foundations.stack_depth(cluster, stacks=(256 << 10, 1 << 20), memory_limit="96Mi", progress=False)
    py, lifted, small, big = (r.frame.iloc[i] for i in range(4))
    assert "RecursionError" in py.outcome and 900 <= py.depth <= 1000
    assert lifted.reason == "OOMKilled" and lifted.depth > 10 * py.depth
    assert small.exit_code == 139 and big.exit_code == 139 and big.depth > 2 * small.depth, r.frame
