"""core/v1 Events, recorded the way the kubelet and controllers do (with counts for repeats)."""

from __future__ import annotations

import secrets
from typing import Any

from . import errors
from .store import Store, rfc3339


class Recorder:
    def __init__(self, store: Store, component: str, host: str = "") -> None:
        self.store = store
        self.component = component
        self.host = host

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str, field_path: str = "") -> None:
        meta = obj.get("metadata", {})
        ns = meta.get("namespace") or "default"
        now = rfc3339(self.store.clock())
        involved = {"kind": obj.get("kind", ""), "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                    "uid": meta.get("uid", ""), "apiVersion": obj.get("apiVersion", ""),
                    "resourceVersion": meta.get("resourceVersion", "")}
        if field_path:
            involved["fieldPath"] = field_path
        # a repeat of the same (object, reason, message) bumps count instead of adding an event
        items, *_ = self.store.list("v1/events", ns, lambda e: (
            e.get("involvedObject", {}).get("uid") == involved["uid"] and e.get("reason") == reason
            and e.get("message") == message))
        if items:
            ev = items[0]
            ev["count"] = ev.get("count", 1) + 1
            ev["lastTimestamp"] = now
            try:
                self.store.update("v1/events", ev, check_rv=False)
                return
            except errors.APIError:
                pass
        source = {"component": self.component}
        if self.host:
            source["host"] = self.host
        body = {
            "kind": "Event", "apiVersion": "v1",
            "metadata": {"name": f"{meta.get('name', 'object')}.{secrets.token_hex(8)}", "namespace": ns},
            "involvedObject": involved, "reason": reason, "message": message, "source": source,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": type_, "eventTime": None,
            "reportingComponent": self.component, "reportingInstance": self.host,
        }
        try:
            self.store.create("v1/events", body)
        except errors.APIError:
            pass  # namespace gone while recording: events are best effort, as in Kubernetes
