"""Where kperflab keeps its files, and how it makes them private (0700 directories, 0600 secrets). Shared by the
client and the lab."""

from __future__ import annotations

import os
from pathlib import Path

LAB_CONTEXT = "kperflab-lab"


def home() -> Path:
    """``$KPERFLAB_HOME``, or ``~/.kperflab``."""
    env = os.environ.get("KPERFLAB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".kperflab"


def lab_kubeconfig() -> Path:
    """The kubeconfig that `kperflab lab up` writes: ``$KPERFLAB_HOME/kubeconfig.yaml`` when
    KPERFLAB_HOME is set, else ``~/.kube/kperflab-lab.yaml``."""
    if os.environ.get("KPERFLAB_HOME"):
        return home() / "kubeconfig.yaml"
    return Path.home() / ".kube" / "kperflab-lab.yaml"


def lab_state_dir() -> Path:
    return home() / "lab"


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner may enter (0700): made so when missing (no window with wider modes),
    tightened when it exists with wider ones. Returns ``path``."""
    with private_umask():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: str | bytes) -> None:
    """Write a secret file: created 0600 under a temporary name, then renamed over ``path`` (never readable by others,
    never half-written)."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode only applies to a new file
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class private_umask:  # noqa: N801 - used like a function: ``with private_umask(): …``
    """Within it, new files and directories get no permission for group and others (umask 077). Process-wide: use it
    where no other thread creates files meant for others."""

    def __enter__(self) -> None:
        self._old = os.umask(0o077)

    def __exit__(self, *exc: object) -> None:
        os.umask(self._old)


def lab_store_db(state_dir: Path | None = None) -> Path:
    """The lab's durable store (SQLite): ``<state dir>/store/state.db``."""
    return (state_dir or lab_state_dir()) / "store" / "state.db"
