"""The lab's object store: objects by resource, a global resourceVersion, an event log for watches.

Stored objects are never changed in place: every write stores a new dict, readers get deep copies.
Time comes from a clock passed in, so tests can control it.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import errors
from .selectors import Predicate

Obj = dict[str, Any]
EVENT_LOG_SIZE = 50_000


def rfc3339(ts: float) -> str:
    """metav1.Time: RFC 3339, whole seconds, UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: str
    obj: Obj
    old: Obj | None


class Store:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._cond = threading.Condition(threading.RLock())
        self._rv = 1
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._log: deque[Event] = deque(maxlen=EVENT_LOG_SIZE)
        self._closed = False

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(self, type_: str, resource: str, obj: Obj, old: Obj | None) -> None:
        self._log.append(Event(int(obj["metadata"]["resourceVersion"]), type_, resource, obj, old))
        self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- reads -----------------------------------------------------------------------------------
    def get(self, resource: str, namespace: str, name: str, kind: str = "", group: str = "") -> Obj:
        with self._cond:
            obj = self._objects.get(resource, {}).get((namespace, name))
            if obj is None:
                raise errors.not_found(kind or resource, name, group)
            return copy.deepcopy(obj)

    def try_get(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self._cond:
            obj = self._objects.get(resource, {}).get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, resource: str, namespace: str | None = None, pred: Predicate | None = None,
             limit: int = 0, continue_token: str = "") -> tuple[list[Obj], str, str, int | None]:
        """Items sorted by (namespace, name); returns (items, resourceVersion, continue, remaining)."""
        start: tuple[str, str] | None = None
        if continue_token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = (tok["ns"], tok["name"])
            except Exception:  # noqa: BLE001
                raise errors.bad_request("continue key is not valid: invalid continue token") from None
        with self._cond:
            keys = sorted(k for k in self._objects.get(resource, {}) if namespace in (None, "", k[0]))
            rv = str(self._rv)
            chosen = [self._objects[resource][k] for k in keys if start is None or k > start]
            if pred is not None:
                chosen = [o for o in chosen if pred(o)]
            cont, remaining = "", None
            if limit and len(chosen) > limit:
                remaining = len(chosen) - limit
                chosen = chosen[:limit]
                last = chosen[-1]["metadata"]
                cont = base64.urlsafe_b64encode(json.dumps(
                    {"ns": last.get("namespace", ""), "name": last["name"], "rv": rv}).encode()).decode()
            return copy.deepcopy(chosen), rv, cont, remaining

    # -- writes ----------------------------------------------------------------------------------
    def create(self, resource: str, obj: Obj, kind: str = "", group: str = "") -> Obj:
        obj = copy.deepcopy(obj)  # never keep or change the caller's dict
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace", ""), meta["name"])
        with self._cond:
            bucket = self._objects.setdefault(resource, {})
            if key in bucket:
                raise errors.already_exists(kind or resource, meta["name"], group)
            meta["uid"] = meta.get("uid") or str(uuid.uuid4())  # the API server strips client uids
            meta["resourceVersion"] = self._bump()
            meta["creationTimestamp"] = rfc3339(self.clock())
            if "generation" in meta or resource not in ("v1/events",):
                meta["generation"] = 1
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(k, None)
            stored = obj
            bucket[key] = stored
            self._emit("ADDED", resource, stored, None)
            return copy.deepcopy(stored)

    def update(self, resource: str, obj: Obj, *, kind: str = "", group: str = "", check_rv: bool = True,
               spec_changed: Callable[[Obj, Obj], bool] | None = None) -> Obj:
        """Replace an object. With ``check_rv`` a stale resourceVersion is a 409 Conflict.
        Immutable metadata (uid, creationTimestamp, deletionTimestamp) is kept from the stored copy."""
        obj = copy.deepcopy(obj)
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
            meta["resourceVersion"] = self._bump()
            stored = obj
            if old["metadata"].get("deletionTimestamp") and not stored["metadata"].get("finalizers") \
                    and resource != "v1/pods" and resource != "v1/namespaces":
                del bucket[key]
                self._emit("DELETED", resource, stored, old)
            else:
                bucket[key] = stored
                self._emit("MODIFIED", resource, stored, old)
            return copy.deepcopy(stored)

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
            new = copy.deepcopy(old)
            meta = new["metadata"]
            now = self.clock()
            if meta.get("deletionTimestamp"):
                cur = meta.get("deletionGracePeriodSeconds")
                if grace is None or (cur is not None and grace >= cur):
                    return copy.deepcopy(old)  # already deleting with a shorter grace
            meta["deletionTimestamp"] = rfc3339(now + (grace or 0))
            if grace is not None:
                meta["deletionGracePeriodSeconds"] = grace
            meta["resourceVersion"] = self._bump()
            self._objects[resource][(namespace, name)] = new
            self._emit("MODIFIED", resource, new, old)
            return copy.deepcopy(new)

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
            del bucket[(namespace, name)]
            final = copy.deepcopy(old)
            final["metadata"]["resourceVersion"] = self._bump()
            self._emit("DELETED", resource, final, old)
            return copy.deepcopy(final)

    # -- watch -----------------------------------------------------------------------------------
    def watch(self, resource: str, namespace: str | None, since: str | None, pred: Predicate,
              timeout: float, stop: threading.Event | None = None) -> Iterator[tuple[str, Obj]]:
        """Yield (type, object) for changes after ``since``. Without ``since`` (or "0") the current
        objects come first as ADDED. An object that stops matching ``pred`` is sent as DELETED."""
        deadline = time.monotonic() + timeout
        if not since or since == "0":
            items, rv, _, _ = self.list(resource, namespace, pred)
            for item in items:
                yield "ADDED", item
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
                        yield "ADDED", copy.deepcopy(ev.obj)
                    elif was_match and not now_match:
                        yield "DELETED", copy.deepcopy(ev.obj)
                    elif now_match:
                        yield "MODIFIED", copy.deepcopy(ev.obj)
                elif now_match:
                    yield ev.type, copy.deepcopy(ev.obj)
            if time.monotonic() >= deadline:
                return

    def check_version(self, since: str | None) -> int:
        """The watch cursor for ``since``: 400 when it is not a number, 410 Expired when the log no longer
        reaches back to it."""
        if not since or since == "0":
            return self.resource_version
        try:
            cursor = int(since)
        except ValueError:
            raise errors.bad_request(f'invalid resource version: "{since}"') from None
        with self._cond:
            oldest = self._log[0].rv if self._log else self._rv
            if cursor < oldest - 1 and len(self._log) == self._log.maxlen:
                raise errors.gone(f"too old resource version: {cursor} ({oldest})")
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


def run_on_change(store: Store, stop: threading.Event, reconcile: Callable[[], None], what: str) -> None:
    """A controller's loop: ``reconcile()`` after every change to the store (and at least every second) until
    ``stop``; a pass that fails is logged and never ends the loop (the next change tries again)."""
    import logging

    rv = 0
    while not stop.is_set():
        rv = store.wait_for_change(rv, 1.0)
        try:
            reconcile()
        except Exception:  # noqa: BLE001 - one failed pass must not end the controller for the lab's lifetime
            logging.getLogger("kperflab.lab").exception("%s pass failed", what)
