"""The examples in docstrings run, and every module listed here has at least one that runs (examples that need a
cluster are marked +SKIP and live in modules not listed: `kperflab.session`)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["kperflab.cluster", "kperflab.doctor", "kperflab.host", "kperflab.kubeconfig", "kperflab.exercises",
           "kperflab.experiments.networking",
           "kperflab.lab.stats.promtext", "kperflab.lab.stats.metrics_server", "kperflab.lab.selectors", "kperflab.lab.runtime.process",
           "kperflab.lab.pki", "kperflab.lab.node", "kperflab.lab.authn", "kperflab.lab.runtime.oci",
           "kperflab.lab.imagemanager", "kperflab.lab.kubeletconfig", "kperflab.lab.volumes",
           "kperflab.lab.openapi", "kperflab.lab.strict", "kperflab.lab.gnostic"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no docstring example that runs"
