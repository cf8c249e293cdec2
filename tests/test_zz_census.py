"""Runs last: after the session's lab is down, nothing of any lab is left on this machine."""

import pytest

from kperflab.lab import control


@pytest.mark.lab
def test_lab_down_leaves_nothing(lab, request):
    # stop the session lab now (the fixture's own `down` then finds nothing) and count what is left
    from .conftest import kperflab

    assert kperflab(lab["home"], "lab", "down").returncode == 0
    assert control.census() == {"processes": [], "cgroups": [], "mounts": []}
