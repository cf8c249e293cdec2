"""The lab's object store: objects by resource, a global resourceVersion, an event log for watches.

Stored objects are never changed in place: every write stores a new dict. Readers get copies by default
(:func:`clone`, a hand copy of JSON-shaped data, ~3x faster than ``copy.deepcopy``); a reader that only reads asks
for ``copy=False`` and gets the stored dicts themselves, which it must never mutate.
Time comes from a clock passed in, so tests can control it.

With a ``path`` the store is durable (:mod:`.storedb`, SQLite in WAL mode): every object is loaded at construction
(the in-memory maps stay the read path) and each write is committed to the database before the method returns and
before its watch event is sent; resourceVersions go on from the stored one, and a watch from before the start
(``since < floor``) is 410 Expired so the client relists. ``path=None`` keeps everything in memory only.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import errors
from .selectors import Predicate
from .storedb import BALLAST_SIZE, DBError, DiskFull, StoreDB, db_files

Obj = dict[str, Any]
EVENT_LOG_SIZE = 50_000
# run_on_change: the least time between the end of a controller pass and the next one. benchmarks/store_write.py,
# a pass listing 100 pods under 200 writes/s: 0 s → 41-57 passes/s, 56% of a core; 0.02 s → 22, 31%;
# 0.05 s → 12, 16% (a change acted on in 56 ms p50); 0.1 s → 7, 9% (90 ms p50).
MIN_INTERVAL = 0.05
_SCALARS = frozenset({str, int, float, bool, type(None)})


def rfc3339(ts: float) -> str:
    """metav1.Time: RFC 3339, whole seconds, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def clone(o: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars); anything else goes through ``copy.deepcopy``."""
    t = type(o)
    if t is dict:
        return {k: (v if type(v) in _SCALARS else clone(v)) for k, v in o.items()}
    if t is list:
        return [(v if type(v) in _SCALARS else clone(v)) for v in o]
    if t in _SCALARS:
        return o
    return copy.deepcopy(o)


def dumps(obj: Obj) -> str:
    """The compact JSON the store writes (and watch streams can send)."""
    return json.dumps(obj, separators=(",", ":"))


@dataclass(frozen=True)
class Event:
    """One change in the log. ``obj`` (and ``old``) are the stored dicts: read only.
    :meth:`json` is the object's compact JSON as bytes, computed once per event and shared by every watcher
    (a durable store fills it from the database write, so it costs nothing more)."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: str
    obj: Obj
    old: Obj | None
    raw: bytes | None = field(default=None, compare=False, repr=False)

    def json(self) -> bytes:
        raw = self.raw
        if raw is None:  # lock-free memo: two threads racing here compute the same bytes
            raw = dumps(self.obj).encode()
            object.__setattr__(self, "raw", raw)
        return raw


class Store:
    """``Store()`` keeps everything in memory; ``Store(path=state_dir/"store"/"state.db")`` is durable.

    ``restored``: objects were loaded from an existing database (a restart). ``floor``: the resourceVersion at start
    (a watch from before it is 410 Expired). ``disk_full``: a write failed (500, nothing changed) or got through only
    by dropping the reserve, until there is room again. ``synchronous``: SQLite's NORMAL (survives SIGKILL) or FULL
    (an fsync per write: survives a power cut); see :mod:`.storedb` for the measured cost."""

    def __init__(self, clock: Callable[[], float] = time.time, path: Path | None = None, *,
                 synchronous: str = "NORMAL", ballast: int = BALLAST_SIZE) -> None:
        self.clock = clock
        self._cond = threading.Condition(threading.RLock())
        self._rv = 1
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._log: deque[Event] = deque(maxlen=EVENT_LOG_SIZE)
        self._closed = False
        self._db: StoreDB | None = None
        self._db_closed = False
        self.path = Path(path) if path is not None else None
        self.restored = False
        if self.path is not None:
            self._db = StoreDB(self.path, synchronous, ballast)
            rv, rows = self._db.load()
            top = 1
            for resource, ns, name, data in rows:
                obj = self._objects.setdefault(resource, {})[(ns, name)] = json.loads(data)
                top = max(top, int(obj["metadata"]["resourceVersion"]))
            if rv is not None:
                self._rv = max(rv, top)
                self.restored = True
        self.floor = self._rv  # a watch from before this start cannot be served: 410, relist

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def lock(self) -> threading.Condition:
        """The store's lock (re-entrant): hold it to read several objects as one snapshot or to choose-and-store."""
        return self._cond

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    @property
    def disk_full(self) -> bool:
        """True from a write the database could not take for lack of space (or one that only the reserve let
        through) until there is room again (checked at most once a second)."""
        db = self._db
        if db is None or not db.low:
            return False
        db.check_space()
        return db.low

    @staticmethod
    def purge(path: Path) -> None:
        """Remove a durable store's files (database, WAL, shared memory, reserve) and its directory when empty."""
        path = Path(path)
        for p in db_files(path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()

    def _persist(self, resource: str, key: tuple[str, str], obj: Obj | None, rv: int, kind: str) -> bytes | None:
        """Commit one write (``obj`` None: a removal) before anything in memory changes; the JSON written."""
        if self._db is None:
            return None
        if self._db_closed:
            raise errors.APIError(503, "ServiceUnavailable", "the lab is stopping: its store is closed")
        try:
            if obj is None:
                self._db.delete(resource, key[0], key[1], rv)
                return None
            data = dumps(obj)
            self._db.put(resource, key[0], key[1], rv, data)
            return data.encode()
        except DiskFull as e:
            where = self._db.dir
            raise errors.APIError(500, "InternalError",
                                  f'the lab\'s state directory is full: cannot store {kind or resource} "{key[1]}" '
                                  f"({e}); nothing was changed. Free space on the filesystem under {where} "
                                  f"(`df -h {where}`) and retry") from None
        except DBError as e:
            raise errors.APIError(500, "InternalError", f"{e}; nothing was changed") from None
        except (TypeError, ValueError) as e:  # not JSON: a lab component's bug, refused rather than kept in memory only
            raise errors.APIError(500, "InternalError",
                                  f'cannot store {kind or resource} "{key[1]}": {e}; nothing was changed') from None

    def _emit(self, type_: str, resource: str, obj: Obj, old: Obj | None, raw: bytes | None = None) -> None:
        self._log.append(Event(int(obj["metadata"]["resourceVersion"]), type_, resource, obj, old, raw))
        self._cond.notify_all()

    def close(self) -> None:
        """End every watch (the database stays open for the writes of a lab that is stopping: see close_db)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def close_db(self) -> None:
        """Checkpoint and close the database; later writes are refused (503). Call last when the lab stops."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            if self._db is not None and not self._db_closed:
                self._db_closed = True
                self._db.close()

    # -- reads -----------------------------------------------------------------------------------
    def get(self, resource: str, namespace: str, name: str, kind: str = "", group: str = "", *,
            copy: bool = True) -> Obj:
        """The object (a copy; with ``copy=False`` the stored dict, read only) or 404."""
        with self._cond:
            obj = self._objects.get(resource, {}).get((namespace, name))
        if obj is None:
            raise errors.not_found(kind or resource, name, group)
        return clone(obj) if copy else obj  # stored dicts never change in place: copied outside the lock

    def try_get(self, resource: str, namespace: str, name: str, *, copy: bool = True) -> Obj | None:
        with self._cond:
            obj = self._objects.get(resource, {}).get((namespace, name))
        return clone(obj) if copy and obj is not None else obj

    def list(self, resource: str, namespace: str | None = None, pred: Predicate | None = None,
             limit: int = 0, continue_token: str = "", *, copy: bool = True) -> tuple[list[Obj], str, str, int | None]:
        """Items sorted by (namespace, name); returns (items, resourceVersion, continue, remaining).
        With ``copy=False`` the items are the stored dicts, read only."""
        start: tuple[str, str] | None = None
        if continue_token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = (tok["ns"], tok["name"])
            except Exception:  # noqa: BLE001
                raise errors.bad_request("continue key is not valid: invalid continue token") from None
        with self._cond:
            bucket = self._objects.get(resource, {})
            keys = sorted(k for k in bucket if namespace in (None, "", k[0]) and (start is None or k > start))
            rv = str(self._rv)
            chosen = [bucket[k] for k in keys]
            if pred is not None:
                chosen = [o for o in chosen if pred(o)]
            cont, remaining = "", None
            if limit and len(chosen) > limit:
                remaining = len(chosen) - limit
                chosen = chosen[:limit]
                last = chosen[-1]["metadata"]
                cont = base64.urlsafe_b64encode(json.dumps(
                    {"ns": last.get("namespace", ""), "name": last["name"], "rv": rv}).encode()).decode()
        return (clone(chosen) if copy else chosen), rv, cont, remaining

    # -- writes ----------------------------------------------------------------------------------
    def create(self, resource: str, obj: Obj, kind: str = "", group: str = "") -> Obj:
        obj = clone(obj)  # never keep or change the caller's dict
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        with self._cond:
            bucket = self._objects.setdefault(resource, {})
            if key in bucket:
                raise errors.already_exists(kind or resource, meta["name"], group)
            meta["uid"] = meta.get("uid") or str(uuid.uuid4())  # the API server strips client uids
            rv = self._rv + 1
            meta["resourceVersion"] = str(rv)
            meta["creationTimestamp"] = rfc3339(self.clock())
            if "generation" in meta or resource not in ("v1/events",):
                meta["generation"] = 1
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(k, None)
            raw = self._persist(resource, key, obj, rv, kind)
            self._rv = rv
            bucket[key] = obj
            self._emit("ADDED", resource, obj, None, raw)
        return clone(obj)

    def count(self) -> dict[str, int]:
        """How many objects of each resource the store holds."""
        with self._cond:
            return {resource: len(bucket) for resource, bucket in self._objects.items() if bucket}

    def ensure(self, resource: str, obj: Obj, kind: str = "", group: str = "") -> Obj:
        """Create ``obj`` unless an object of that name exists; either way return the stored one (a copy)."""
        meta = obj.get("metadata", {})
        with self._cond:
            cur = self._objects.get(resource, {}).get((meta.get("namespace", ""), meta["name"]))
            if cur is not None:
                return clone(cur)
            return self.create(resource, obj, kind, group)

    def update(self, resource: str, obj: Obj, *, kind: str = "", group: str = "", check_rv: bool = True,
               spec_changed: Callable[[Obj, Obj], bool] | None = None) -> Obj:
        """Replace an object. With ``check_rv`` a stale resourceVersion is a 409 Conflict.
        Immutable metadata (uid, creationTimestamp, deletionTimestamp) is kept from the stored copy."""
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._cond:
            bucket = self._objects.get(resource, {})
            old = bucket.get(key)
            if old is None:
                raise errors.not_found(kind or resource, key[1], group)
            want = meta.get("resourceVersion")
            if check_rv and want and want != old["metadata"]["resourceVersion"]:
                raise errors.conflict(kind or resource, key[1], group)
            if meta.get("uid") and meta["uid"] != old["metadata"]["uid"]:
                raise errors.conflict(kind or resource, key[1], group,
                                      f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: {old['metadata']['uid']}")
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
                else:
                    meta.pop(k, None)
            meta["generation"] = old["metadata"].get("generation", 1)
            if spec_changed and spec_changed(old, obj):
                meta["generation"] += 1
            rv = self._rv + 1
            meta["resourceVersion"] = str(rv)
            if old["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers") \
                    and resource != "v1/pods" and resource != "v1/namespaces":
                self._persist(resource, key, None, rv, kind)
                self._rv = rv
                del bucket[key]
                self._emit("DELETED", resource, obj, old)
            else:
                raw = self._persist(resource, key, obj, rv, kind)
                self._rv = rv
                bucket[key] = obj
                self._emit("MODIFIED", resource, obj, old, raw)
        return clone(obj)

    def mark_deleting(self, resource: str, namespace: str, name: str, grace: int | None,
                      kind: str = "", group: str = "", uid: str | None = None) -> Obj:
        """Set deletionTimestamp (graceful deletion); the owner of the object removes it later."""
        with self._cond:
            old = self._objects.get(resource, {}).get((namespace, name))
            if old is None:
                raise errors.not_found(kind or resource, name, group)
            if uid and old["metadata"]["uid"] != uid:
                raise errors.conflict(kind or resource, name, group,
                                      f"Precondition failed: UID in precondition: {uid}, UID in object meta: {old['metadata']['uid']}")
            meta = old["metadata"]
            if meta.get("deletionTimestamp"):
                cur = meta.get("deletionGracePeriodSeconds")
                if grace is None or (cur is not None and grace >= cur):
                    return clone(old)  # already deleting with a shorter grace
            new = clone(old)
            meta = new["metadata"]
            meta["deletionTimestamp"] = rfc3339(self.clock() + (grace or 0))
            if grace is not None:
                meta["deletionGracePeriodSeconds"] = grace
            rv = self._rv + 1
            meta["resourceVersion"] = str(rv)
            raw = self._persist(resource, (namespace, name), new, rv, kind)
            self._rv = rv
            self._objects[resource][(namespace, name)] = new
            self._emit("MODIFIED", resource, new, old, raw)
            return clone(new)

    def remove(self, resource: str, namespace: str, name: str, kind: str = "", group: str = "",
               uid: str | None = None) -> Obj:
        """Remove an object now and emit DELETED."""
        with self._cond:
            bucket = self._objects.get(resource, {})
            old = bucket.get((namespace, name))
            if old is None:
                raise errors.not_found(kind or resource, name, group)
            if uid and old["metadata"]["uid"] != uid:
                raise errors.conflict(kind or resource, name, group,
                                      f"Precondition failed: UID in precondition: {uid}, UID in object meta: {old['metadata']['uid']}")
            final = clone(old)
            rv = self._rv + 1
            final["metadata"]["resourceVersion"] = str(rv)
            self._persist(resource, (namespace, name), None, rv, kind)
            self._rv = rv
            del bucket[(namespace, name)]
            self._emit("DELETED", resource, final, old)
            return clone(final)

    # -- watch -----------------------------------------------------------------------------------
    def watch(self, resource: str, namespace: str | None, since: str | None, pred: Predicate,
              timeout: float, stop: threading.Event | None = None, *, copy: bool = True) -> Iterator[tuple[str, Obj]]:
        """Yield (type, object) for changes after ``since``. Without ``since`` (or "0") the current
        objects come first as ADDED. An object that stops matching ``pred`` is sent as DELETED.
        With ``copy=False`` the objects are the stored dicts, read only."""
        for type_, ev in self.watch_events(resource, namespace, since, pred, timeout, stop):
            yield type_, (clone(ev.obj) if copy else ev.obj)

    def watch_events(self, resource: str, namespace: str | None, since: str | None, pred: Predicate,
                     timeout: float, stop: threading.Event | None = None) -> Iterator[tuple[str, Event]]:
        """As :meth:`watch`, but yields (type, Event): ``ev.obj`` is the stored dict (read only) and ``ev.json()``
        its compact JSON, serialised once per change for every watcher. ``type`` is the one to send (an object
        that starts or stops matching ``pred`` is ADDED or DELETED), not always ``ev.type``."""
        deadline = time.monotonic() + timeout
        if not since or since == "0":
            items, rv, _, _ = self.list(resource, namespace, pred, copy=False)
            for item in items:
                yield "ADDED", Event(int(item["metadata"]["resourceVersion"]), "ADDED", resource, item, None)
            cursor = int(rv)
        else:
            cursor = self.check_version(since)
        while True:
            batch: list[Event] = []
            with self._cond:
                while not self._closed and not (stop and stop.is_set()):
                    batch = self._since(cursor)
                    if batch:
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self._cond.wait(min(left, 1.0))
                else:
                    return
            for ev in batch:
                cursor = ev.rv
                if ev.resource != resource:
                    continue
                ns = ev.obj["metadata"].get("namespace", "")
                if namespace and ns != namespace:
                    continue
                now_match = pred(ev.obj)
                was_match = ev.old is not None and pred(ev.old)
                if ev.type == "MODIFIED":
                    if now_match and not was_match:
                        yield "ADDED", ev
                    elif was_match and not now_match:
                        yield "DELETED", ev
                    elif now_match:
                        yield "MODIFIED", ev
                elif now_match:
                    yield ev.type, ev
            if time.monotonic() >= deadline:
                return

    def check_version(self, since: str | None) -> int:
        """The watch cursor for ``since``: 400 when it is not a number, 410 Expired when the log no longer
        reaches back to it (or it is from before this store started: the log of an earlier run is gone)."""
        if not since or since == "0":
            return self.resource_version
        try:
            cursor = int(since)
        except ValueError:
            raise errors.bad_request(f'invalid resource version: "{since}"') from None
        with self._cond:
            if cursor < self.floor:
                raise errors.gone(f"too old resource version: {cursor} ({self.floor})")
            oldest = self._log[0].rv if self._log else self._rv
            if cursor < oldest - 1 and len(self._log) == self._log.maxlen:
                raise errors.gone(f"too old resource version: {cursor} ({oldest - 1})")  # as the watch cache says
        return cursor

    def _since(self, cursor: int) -> list[Event]:
        out: list[Event] = []
        for ev in reversed(self._log):
            if ev.rv <= cursor:
                break
            out.append(ev)
        out.reverse()
        return out

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until the resourceVersion passes ``since`` (or timeout); return the current one."""
        with self._cond:
            if self._rv <= since and not self._closed:
                self._cond.wait(timeout)
            return self._rv


def run_on_change(store: Store, stop: threading.Event, reconcile: Callable[[], None], what: str,
                  min_interval: float = MIN_INTERVAL) -> None:
    """A controller's loop: ``reconcile()`` after changes to the store (and at least every second) until ``stop``;
    a pass that fails is logged and never ends the loop (the next change tries again).

    Changes are coalesced: the next pass starts no sooner than ``min_interval`` after the previous one ended, so a
    burst of writes (including the pass's own) costs one more pass, not one per write, and a change is still acted
    on within ``min_interval`` plus a pass."""
    import logging

    rv = 0
    next_pass = 0.0
    while not stop.is_set():
        store.wait_for_change(rv, 1.0)
        wait = next_pass - time.monotonic()
        if wait > 0 and stop.wait(wait):
            return
        rv = store.resource_version  # the pass sees at least this; anything later makes another pass
        try:
            reconcile()
        except Exception:  # noqa: BLE001 - one failed pass must not end the controller for the lab's lifetime
            logging.getLogger("kperflab.lab").exception("%s pass failed", what)
        next_pass = time.monotonic() + min_interval
