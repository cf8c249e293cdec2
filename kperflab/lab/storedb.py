"""The store's database: every live object and the global resourceVersion in one SQLite file, in WAL mode.

Why SQLite and not Debian's etcd-server: it is in the standard library (``sqlite3``), so the lab needs no second
daemon to start, supervise, port-allocate and stop, and no gRPC client; the whole state is one file under the state
dir (0600), easy to keep, copy or purge; and it is what k3s ships by default (kine over SQLite) for a one-node
cluster. The lab keeps its objects in memory for reads (loaded once at start), so the database only takes writes.

Durability: each write is one transaction (the object's row and the ``meta`` row holding the global resourceVersion)
committed before the Store method returns and before its watch event is sent. ``synchronous=NORMAL`` (the default
here): in WAL mode a commit is a write() into the -wal file, which is in the kernel's page cache the moment the call
returns, so it survives the lab's process being killed (SIGKILL, OOM kill, a crash); only a power cut or a kernel crash
can lose the last commits (never corrupt the file). ``FULL`` adds an fsync per commit. Measured with
benchmarks/store_write.py (``Store.update`` of a 3.1 kB pod, 2 vCPU VM, ext4 on virtio, shared with other work at
load ~5): memory only p50 0.13 ms per write (3,700 writes/s); NORMAL p50 0.33 ms, p99 3.8 ms (2,000 writes/s); FULL
p50 1.0 ms, p99 8.5 ms (765 writes/s), and 4 ms p50 when the disk is busy (load 14: FULL 146 writes/s, NORMAL
386). The fsync is paid under the store's one lock, so with FULL every reader and writer waits for the disk. A lab is
a workshop cluster on one machine whose crash mode is the process, not the power: NORMAL keeps every acknowledged
write across a SIGKILL (tests/test_store.py) at a third of FULL's cost, so NORMAL it is; ``Store(synchronous="FULL")``
is there to compare.
Checkpoints (WAL → database, the fsyncs NORMAL does pay) run every 0.5 s on a thread with its own connection, so a
write never waits for one (inline, SQLite's default of 1,000 pages meant one every ~200 pod writes, 20-40 ms each
under the store's lock on a busy disk).

A full disk: SQLite answers SQLITE_FULL, the transaction is rolled back and :class:`DiskFull` raised. A small reserve
file (``ballast``, 8 MiB, made at open when there is room) sits beside the database: the first time the disk is full
it is deleted and the write retried once, so the lab can still record the events and Node condition that tell the
user; it is made again once there is room (:meth:`StoreDB.check_space`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

SCHEMA = 1
BALLAST_SIZE = 8 << 20
CHECKPOINT_EVERY = 0.5  # seconds between the checkpointer's rounds
FALLBACK_CHECKPOINT_PAGES = 20_000  # the writer checkpoints itself past this many WAL pages (80 MiB)
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_FULL_CODES = {13, 10}  # SQLITE_FULL, SQLITE_IOERR (a write() that failed with ENOSPC or EIO)


class DiskFull(OSError):
    """The database could not take a write for lack of space (or a failing disk)."""


class DBError(RuntimeError):
    """Any other database failure (e.g. a corrupt or foreign file)."""


def db_files(path: Path) -> list[Path]:
    """The database, its WAL and shared-memory files, and the ballast."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"), ballast_path(path)]


def ballast_path(path: Path) -> Path:
    return path.with_name(path.name + ".ballast")


def _is_full(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _FULL_CODES:
        return True
    text = str(e).lower()
    return "disk is full" in text or "disk i/o error" in text


class StoreDB:
    """One connection, used under the Store's lock (so from any thread)."""

    def __init__(self, path: Path, synchronous: str = "NORMAL", ballast: int = BALLAST_SIZE) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, not {synchronous!r}")
        self.path = Path(path)
        self.dir = self.path.parent
        self.ballast = ballast_path(self.path)
        self.ballast_size = ballast
        self._space_lock = threading.Lock()
        self._next_space_check = 0.0
        self.low = False  # a write failed for lack of space, or got through only by dropping the reserve
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        # SQLite gives -wal and -shm the database file's mode: create it 0600 before SQLite opens it
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        os.chmod(self.path, 0o600)
        try:
            self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.conn.execute("PRAGMA journal_size_limit=8388608")
            # checkpoints (WAL → database, with fsyncs) run on a thread of their own, not under the store's lock;
            # the writer checkpoints itself only if that thread falls far behind
            self.conn.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_CHECKPOINT_PAGES}")
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            self.conn.execute("CREATE TABLE IF NOT EXISTS objects (resource TEXT NOT NULL, namespace TEXT NOT NULL, "
                              "name TEXT NOT NULL, rv INTEGER NOT NULL, data TEXT NOT NULL, "
                              "PRIMARY KEY (resource, namespace, name)) WITHOUT ROWID")
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA,))
        except sqlite3.DatabaseError as e:
            if _is_full(e):
                raise DiskFull(f"cannot open the lab's store {self.path}: {e}") from None
            raise DBError(f"cannot open the lab's store {self.path}: {e} "
                          "(wipe it with `kperflab lab reset`)") from None
        for p in db_files(self.path)[1:3]:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(p, 0o600)
        self.make_ballast()
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="store-checkpoint", daemon=True)
        self._checkpointer.start()

    # -- reads (once, at start) ------------------------------------------------------------------
    def load(self) -> tuple[int | None, Iterator[tuple[str, str, str, str]]]:
        """(stored global resourceVersion or None for a new database, rows (resource, namespace, name, json))."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
        rows = self.conn.execute("SELECT resource, namespace, name, data FROM objects")
        return (int(row[0]) if row else None), rows

    # -- writes ----------------------------------------------------------------------------------
    def put(self, resource: str, namespace: str, name: str, rv: int, data: str) -> None:
        self._txn([("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)", (resource, namespace, name, rv, data)),
                   ("INSERT OR REPLACE INTO meta VALUES ('rv', ?)", (rv,))])

    def delete(self, resource: str, namespace: str, name: str, rv: int) -> None:
        self._txn([("DELETE FROM objects WHERE resource=? AND namespace=? AND name=?", (resource, namespace, name)),
                   ("INSERT OR REPLACE INTO meta VALUES ('rv', ?)", (rv,))])

    def _txn(self, statements: list[tuple[str, tuple[object, ...]]]) -> None:
        for attempt in (0, 1):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                for sql, args in statements:
                    self.conn.execute(sql, args)
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                if not _is_full(e):
                    raise DBError(f"the lab's store {self.path} failed: {e}") from None
                self.low = True
                self._next_space_check = 0.0
                if attempt == 0 and self.drop_ballast():
                    continue  # the reserve gives room for the writes that report the full disk
                raise DiskFull(str(e)) from None

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL frames into the database every CHECKPOINT_EVERY seconds (PASSIVE: never blocks a
        writer; SQLite releases the GIL meanwhile). A commit under NORMAL is one write() into the WAL; the fsyncs
        a checkpoint needs (20-40 ms for a few MB on a busy disk) are paid here instead of inside a Store write."""
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=0.1)
        except sqlite3.Error:
            return  # the writer's fallback checkpoints still bound the WAL
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            while not self._stop.wait(CHECKPOINT_EVERY):
                with contextlib.suppress(sqlite3.Error):  # busy or a full disk: the next round tries again
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join(5)
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()

    # -- the reserve -----------------------------------------------------------------------------
    def drop_ballast(self) -> bool:
        try:
            self.ballast.unlink()
        except FileNotFoundError:
            return False
        return True

    def has_ballast(self) -> bool:
        return self.ballast.exists()

    def make_ballast(self) -> bool:
        """Create the reserve when the filesystem has room for it and as much again; True when it exists."""
        if self.ballast_size <= 0:
            return False
        with self._space_lock:
            if self.ballast.exists():
                return True
            st = os.statvfs(self.dir)
            if st.f_bavail * st.f_frsize < 2 * self.ballast_size:
                return False
            tmp = self.ballast.with_name(self.ballast.name + ".tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                try:
                    try:
                        os.posix_fallocate(fd, 0, self.ballast_size)  # real blocks, not a sparse file
                    except OSError as e:
                        if e.errno not in (95, 22):  # EOPNOTSUPP / EINVAL: write zeros instead
                            raise
                        block = b"\0" * (1 << 20)
                        for _ in range(self.ballast_size // len(block)):
                            os.write(fd, block)
                finally:
                    os.close(fd)
                os.rename(tmp, self.ballast)
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                return False
            return True

    def check_space(self, every: float = 1.0) -> None:
        """Clear ``low`` once there is room again (the reserve could be made again); at most once per ``every``."""
        now = time.monotonic()
        if not self.low or now < self._next_space_check:
            return
        self._next_space_check = now + every
        if self.ballast_size <= 0:
            st = os.statvfs(self.dir)
            room = st.f_bavail * st.f_frsize >= 2 * BALLAST_SIZE
        else:
            room = self.make_ballast()
        if room:
            self.low = False
