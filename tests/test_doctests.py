"""The examples in docstrings run (those that need a cluster are marked +SKIP)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["kperflab.cluster", "kperflab.session", "kperflab.doctor", "kperflab.host", "kperflab.lab.promtext",
           "kperflab.lab.metrics_server", "kperflab.lab.selectors",
           "kperflab.lab.runtime", "kperflab.lab.pki"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
