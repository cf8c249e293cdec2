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


def test_a_kept_network_slot_is_taken_again_or_refused(tmp_path):
    """A lab takes the slot its kept state had when free; when another live lab holds it, a kept store (required)
    refuses with what to do, and a new one takes another slot."""
    first = labs.Registration(secrets.token_hex(8), tmp_path / "a")
    try:
        held = first.claim_network_slot()
        second = labs.Registration(secrets.token_hex(8), tmp_path / "b")
        try:
            with pytest.raises(LabError, match="kperflab lab reset") as err:
                second.claim_network_slot(want=held, required=True)
            assert first.lab_id in str(err.value) and labs.slot_cidrs(held)[1] in str(err.value)
            assert labs.slot_holder(held) is not None and labs.slot_holder(held, tmp_path / "a") is None
            assert second.claim_network_slot(want=held) != held
        finally:
            second.release()
        free = next(k for k in range(labs.NETWORK_SLOTS) if labs.slot_holder(k) is None and k != held)
        third = labs.Registration(secrets.token_hex(8), tmp_path / "c")
        try:
            assert third.claim_network_slot(want=free, required=True) == free
        finally:
            third.release()
    finally:
        first.release()


def test_a_new_lab_leaves_the_slot_of_a_stopped_labs_kept_state(tmp_path, monkeypatch):
    registry = tmp_path / "registry"  # a registry of its own: other labs' kept states on this machine would fill the slots
    registry.mkdir()
    monkeypatch.setattr(labs, "registry_dir", lambda uid=None: registry)
    stopped = labs.Registration(secrets.token_hex(8), tmp_path / "a")
    slot = stopped.claim_network_slot()
    stopped.reserve_network_slot(slot)
    (tmp_path / "a" / "store").mkdir()
    (tmp_path / "a" / "store" / "state.db").write_bytes(b"")
    stopped.release()
    new = labs.Registration(secrets.token_hex(8), tmp_path / "b")
    try:
        assert new.claim_network_slot() != slot
    finally:
        new.release()
    (tmp_path / "a" / "store" / "state.db").unlink()  # wiped (`lab reset`): the slot is anyone's again
    assert slot not in labs._kept_slots(labs.registry_dir(), tmp_path / "b")
