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
    def count(line: str, what: str) -> int:
        m = re.search(rf"(\d+) {what}", line)
        return int(m.group(1)) if m else 0

    # scripts/client-e2e.py runs failed tests once more (an informer's stop can hang on a client race, see there):
    # then every test of the first run that failed passed in the second
    passed = count(summary[0], "passed") + (count(summary[-1], "passed") if len(summary) > 1 else 0)
    assert passed >= 51 and "failed" not in summary[-1] and "error" not in summary[-1], summary
    if len(summary) > 1:
        assert count(summary[-1], "passed") == count(summary[0], "failed") + count(summary[0], "error"), summary
        print("passed on a second run:", [line for line in out.splitlines() if line.startswith("PASSED")][-count(
            summary[-1], "passed"):])
