"""Lab ownership without a lab server: liveness by the lab's abstract socket and record lock, and recovery that
refuses to touch a live lab's things."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from kperflab.errors import LabError
from kperflab.lab import labs


def test_a_lab_is_alive_by_its_socket_even_without_a_readable_record(tmp_path):
    lab_id = secrets.token_hex(8)
    reg = labs.Registration(lab_id, tmp_path / "state")
    proc = subprocess.Popen(["sleep", "60"], env={**os.environ, labs.LAB_ENV: lab_id})
    try:
        assert lab_id in labs.live_ids()
        assert labs.lab_processes(lab_id) == [proc.pid]
        reg.path.unlink()  # as if its record sat in another user's registry, unreadable from here
        assert lab_id not in {c.lab_id for c in labs.dead_labs()}
        with pytest.raises(LabError, match="is running"):
            labs.remove(lab_id)
        assert proc.poll() is None, "a live lab's process was killed"
    finally:
        proc.kill()
        proc.wait()
        reg.release()
    assert lab_id not in labs.live_ids()


def test_a_dead_labs_leftovers_are_found_and_removed(tmp_path):
    lab_id = secrets.token_hex(8)
    state = tmp_path / "state"
    reg = labs.Registration(lab_id, state)
    (labs.run_dir(state, lab_id) / "bundle").mkdir(parents=True)
    code = "import os, signal, subprocess, sys; subprocess.Popen(['sleep', '60'], start_new_session=True); os._exit(0)"
    subprocess.run([os.sys.executable, "-c", code], env={**os.environ, labs.LAB_ENV: lab_id}, check=True)
    left = labs.lab_processes(lab_id)
    assert left, "the orphaned process carries the lab's id"
    reg._socket.close()  # the lab "dies": its socket and its locks go, its record and its processes stay
    os.close(reg._fd)
    os.close(reg._state_fd)
    dead = {c.lab_id: c for c in labs.dead_labs(state)}
    assert lab_id in dead and dead[lab_id].processes == left and dead[lab_id].record is not None
    assert not labs.state_dir_locked(state)
    found = labs.remove(lab_id)
    assert found.processes == left
    assert labs.census(lab_id, state).empty() and labs.census(lab_id).record is None
    assert not labs.run_dir(state, lab_id).exists()


def test_one_lab_per_state_dir(tmp_path):
    reg = labs.Registration(secrets.token_hex(8), tmp_path)
    try:
        with pytest.raises(LabError, match="Another lab is already running"):
            labs.Registration(secrets.token_hex(8), tmp_path)
        assert labs.state_dir_locked(tmp_path)
    finally:
        reg.release()
    assert not labs.state_dir_locked(tmp_path)
