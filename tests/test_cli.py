"""The command line as a user meets it with mistakes: one sentence and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from kperflab import workshop
from kperflab.errors import KperflabError

from .conftest import kperflab

pytestmark = pytest.mark.lab


def _one_line_error(out, *needles: str) -> None:
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text, text
    for n in needles:
        assert n in text, text


@pytest.mark.parametrize("foreground", [True, False], ids=["foreground", "background"])
def test_lab_up_on_a_busy_port(tmp_path, foreground):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = kperflab(tmp_path, "lab", "up", "--port", str(port), *(["--foreground"] if foreground else []), timeout=60)
    _one_line_error(out, f"Port {port} on 127.0.0.1 is already in use")
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("kperflab: Port"), out.stderr
    assert "--port" in out.stderr  # the next step
    assert not (tmp_path / "lab" / "lab.json").exists()


def test_lab_up_with_a_port_that_is_no_port(tmp_path):
    _one_line_error(kperflab(tmp_path, "lab", "up", "--port", "70000"), "--port 70000 is not a TCP port")


def test_bad_and_different_settings_while_the_lab_is_up(lab):
    _one_line_error(kperflab(lab["home"], "lab", "up", "--metric-resolution", "fast"), "is not a duration")
    _one_line_error(kperflab(lab["home"], "lab", "up", "--metric-resolution", "30s"),
                    "already up", "--metric-resolution 5s (you asked for 30s)", "kperflab lab down")
    same = kperflab(lab["home"], "lab", "up", "--metric-resolution", "5000ms")
    assert same.returncode == 0 and "already up" in same.stdout


def test_status_and_up_after_the_kubeconfig_was_deleted(lab):
    kc = Path(lab["kubeconfig"])
    saved = kc.read_text()
    kc.unlink()
    try:
        st = kperflab(lab["home"], "lab", "status")
        assert st.returncode == 0 and "Traceback" not in st.stderr, st.stdout + st.stderr
        assert "missing" in st.stdout and "node: kperflab-lab Ready=True" in st.stdout
        up = kperflab(lab["home"], "lab", "up")
        assert up.returncode == 0 and "wrote it again" in up.stdout, up.stdout
        assert kc.exists() and kc.read_text() == saved
    finally:
        if not kc.exists():
            kc.write_text(saved)


def test_logs_tail_must_not_be_negative(lab):
    _one_line_error(kperflab(lab["home"], "lab", "logs", "--tail", "-5"), "--tail -5 is negative")
    last = kperflab(lab["home"], "lab", "logs", "--tail", "1")
    log = (lab["home"] / "lab" / "lab.log").read_text().splitlines()
    assert last.returncode == 0 and last.stdout.splitlines() == log[-1:]


def test_workshop_finds_its_notebooks_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = workshop.notebooks()
    assert found and all(p.parent == Path(workshop.__file__).resolve().parents[1] / "notebooks" for p in found)
    monkeypatch.setattr(workshop, "notebook_dirs", lambda: [tmp_path / "notebooks"])
    with pytest.raises(KperflabError, match="No workshop notebooks") as err:
        workshop.notebooks()
    assert "kperflab repository" in str(err.value)


def test_lab_down_when_nothing_runs(tmp_path):
    out = kperflab(tmp_path, "lab", "down")
    assert out.returncode == 0 and "not running" in out.stdout and "Traceback" not in out.stderr
    st = kperflab(tmp_path, "lab", "status")
    assert st.returncode == 1 and "is not running" in st.stdout and "Traceback" not in st.stderr
    assert os.path.isdir(tmp_path)


def test_down_stops_a_lab_of_an_older_kperflab(tmp_path):
    """A lab started by an earlier kperflab holds no lock; `lab down` still finds it by lab.json's pid (a `lab serve`
    working in this state dir) and stops it instead of saying nothing runs."""
    import json
    import subprocess
    import sys

    state = tmp_path / "lab"
    state.mkdir()
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "kperflab.cli", "lab", "serve"], cwd=state)
    try:
        (state / "lab.json").write_text(json.dumps({"pid": old.pid, "port": 1, "lab_id": "0123456789abcdef"}))
        out = kperflab(tmp_path, "lab", "down", timeout=60)
        assert out.returncode == 0 and "The lab is down" in out.stdout, out.stdout + out.stderr
        assert old.wait(10) is not None
    finally:
        old.kill()


def test_a_lab_whose_home_is_deleted_stops_itself_and_down_by_id(tmp_path):
    """A lab whose KPERFLAB_HOME was deleted (a test's tmp dir, an `rm -rf`) cannot be managed: it stops itself within
    one node-status period and removes what it made. `lab down --id` stops any listed lab."""
    import json
    import shutil
    import time

    from kperflab.lab import labs

    home = tmp_path / "gone"
    assert kperflab(home, "lab", "up").returncode == 0
    lab_id = json.loads((home / "lab" / "lab.json").read_text())["lab_id"]
    assert lab_id in labs.live_ids()
    shutil.rmtree(home, ignore_errors=True)  # like rm -rf: the lab's image filesystem is mounted there (EBUSY)
    deadline = time.monotonic() + 25
    while lab_id in labs.live_ids() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert lab_id not in labs.live_ids(), "the lab did not notice its state dir was deleted"
    assert labs.census(lab_id).empty()

    other = tmp_path / "other"
    assert kperflab(other, "lab", "up").returncode == 0
    other_id = json.loads((other / "lab" / "lab.json").read_text())["lab_id"]
    out = kperflab(tmp_path / "elsewhere", "lab", "down", "--id", other_id)
    assert out.returncode == 0 and f"The lab {other_id} is down" in out.stdout, out.stdout + out.stderr
    assert other_id not in labs.live_ids() and labs.census(other_id).empty()
    _one_line_error(kperflab(tmp_path, "lab", "down", "--id", "nope"), "is not a lab id")
    _one_line_error(kperflab(tmp_path, "lab", "down", "--id", "0123456789abcdef"), "No lab 0123456789abcdef")


def test_the_state_dir_and_secrets_are_private(tmp_path):
    """Made 0700/0600 from the start (under umask 077, no window of 0644), and tightened when an older kperflab left
    them readable; a kept CA and token are reused."""
    import stat

    from kperflab.lab import control

    home = tmp_path / "home"
    (home / "lab").mkdir(parents=True, mode=0o755)
    (home / "lab" / "tokens.csv").write_text("t,u,1\n")
    os.chmod(home / "lab" / "tokens.csv", 0o644)
    os.chmod(home, 0o755)
    old = os.umask(0o022)
    try:
        os.environ["KPERFLAB_HOME"] = str(home)
        state = control._state_dir()
        control._ensure_credentials(state)
        ca, token = (state / "tls" / "ca.crt").read_bytes(), (state / "token").read_text()
        control._ensure_credentials(state)
        assert (state / "tls" / "ca.crt").read_bytes() == ca and (state / "token").read_text() == token
    finally:
        os.umask(old)
        del os.environ["KPERFLAB_HOME"]
    assert state == home / "lab"
    for d in (home, state, state / "tls"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in ("token", "tokens.csv", "tls/ca.key", "tls/server.key"):
        assert stat.S_IMODE((state / f).stat().st_mode) == 0o600, f


def test_a_kept_state_whose_network_slot_another_lab_holds(tmp_path):
    """`lab up` on a kept store whose slot another live lab holds: one line naming that lab and what to do."""
    import json
    import secrets

    from kperflab.lab import labs

    other = labs.Registration(secrets.token_hex(8), tmp_path / "other")
    try:
        slot = other.claim_network_slot()
        state = tmp_path / "home" / "lab"
        (state / "store").mkdir(parents=True)
        (state / "store" / "state.db").write_bytes(b"")
        (state / "store.json").write_text(json.dumps({"network_slot": slot}))
        out = kperflab(tmp_path / "home", "lab", "up", timeout=60)
        _one_line_error(out, other.lab_id, "kperflab lab reset", f"kperflab lab down --id {other.lab_id}")
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    finally:
        other.release()
