"""The official Python client's own end-to-end suite (vendored in tests/upstream/kubernetes-client-python, run by
scripts/client-e2e.py) passes against a lab of its own: what `pytest kubernetes/e2e_test kubernetes/aio/e2e_test`
checks in the client's CI, here on the lab (nginx, busybox and python images, port-forward, exec, apply, watches,
informers, Deployments, DaemonSets, Jobs, APIServices, the metrics API). The run starts in the background when the
session starts (tests/conftest.py) and is judged here."""

from __future__ import annotations

import re

import pytest

from .conftest import needs_root


@pytest.mark.lab
@needs_root
def test_the_official_clients_e2e_suite_passes_on_a_lab(client_e2e_run):
    rc, out = client_e2e_run
    summary = [line for line in out.splitlines() if re.search(r"=+ .*\d+ (passed|failed|error)", line)]
    assert rc == 0 and summary, "\n".join(out.splitlines()[-80:])
    passed = int(re.search(r"(\d+) passed", summary[-1]).group(1))
    assert passed >= 51 and "failed" not in summary[-1] and "error" not in summary[-1], summary
