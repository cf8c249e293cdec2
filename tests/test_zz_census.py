"""Runs last: after the session's lab is down, nothing of it is left on this machine."""

import pytest

from kperflab.lab import labs


@pytest.mark.lab
def test_lab_down_leaves_nothing(lab, request):
    # stop the session lab now (the fixture's own `down` then finds nothing) and count what is left of it, by its id
    from .conftest import kperflab

    assert labs.census(lab["lab_id"]).record.alive, "the session lab should still be registered and alive here"
    assert kperflab(lab["home"], "lab", "down").returncode == 0
    left = labs.census(lab["lab_id"], lab["home"] / "lab")
    assert left.empty() and left.record is None, left
    assert not (lab["home"] / "lab" / "run" / lab["lab_id"]).exists()
