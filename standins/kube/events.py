"""core/v1 Events, recorded as client-go's event recorder records them and kept as the API server keeps them.

A repeated event (same source, object, type, reason and message) is not stored again: the stored one counts it
(`count`, `lastTimestamp`), as the recorder's EventCorrelator does. The log keeps the newest `limit` events (the
API server lets them expire after an hour; a bound serves a stand-in as well). Every change of an event (ADDED,
MODIFIED when counted again, DELETED when it expires or the log is cleared) goes to `changed`, which gives it its
resource version: the backend records it in its change log, so that events can be watched (`kubectl get events -w`).
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from standins.kube.pods import now_text

JSON = dict[str, Any]
NODE_NAME = "kube-standin"
_Key = tuple[str, str, str, str, str, str, str, str]


def reference(obj: JSON, field_path: str = "") -> JSON:
    """An `ObjectReference` to a stored object (as `involvedObject`), optionally to a field of it (a container)."""
    meta = obj["metadata"]
    ref = {
        "kind": obj["kind"],
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
        "apiVersion": obj["apiVersion"],
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if field_path:
        ref["fieldPath"] = field_path
    return ref


#: Called with ADDED, MODIFIED or DELETED and the event (which it gives its `metadata.resourceVersion`).
Changed = Callable[[str, JSON], None]


class EventLog:
    """The events of the stand-in, newest last; `record`, `select` and `clear` take `lock` (the backend's), and
    report each change of an event to `changed` (see the module docstring)."""

    def __init__(self, lock: threading.RLock, changed: Changed, limit: int = 1000) -> None:
        self._lock = lock
        self._changed = changed
        self.limit = limit
        self._events: OrderedDict[_Key, JSON] = OrderedDict()

    def record(self, involved: JSON, kind: str, reason: str, message: str, component: str) -> JSON:
        """Record an event (`kind`: Normal or Warning) about `involved` (an ObjectReference) from `component`
        (kubelet, replicaset-controller, ...); a repeat of a stored event counts it instead."""
        host = NODE_NAME if component == "kubelet" else ""
        key: _Key = (
            component,
            host,
            involved.get("kind", ""),
            involved.get("namespace", ""),
            involved.get("name", ""),
            involved.get("uid", ""),
            involved.get("fieldPath", ""),
            f"{kind}\0{reason}\0{message}",
        )
        now = now_text()
        with self._lock:
            event = self._events.pop(key, None)
            change = "MODIFIED" if event is not None else "ADDED"
            if event is not None:
                event["count"] += 1
                event["lastTimestamp"] = now
            else:
                source = {"component": component, **({"host": host} if host else {})}
                event = {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {
                        "name": f"{involved.get('name', '')}.{time.time_ns():x}",
                        "namespace": involved.get("namespace") or "default",
                        "uid": str(uuid.uuid4()),
                        "creationTimestamp": now,
                    },
                    "involvedObject": dict(involved),
                    "reason": reason,
                    "message": message,
                    "source": source,
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                    "type": kind,
                    "eventTime": None,
                    "reportingComponent": component,
                    "reportingInstance": host,
                }
            self._changed(change, event)
            self._events[key] = event
            while len(self._events) > self.limit:
                self._changed("DELETED", self._events.popitem(last=False)[1])
            return copy.deepcopy(event)

    def clear(self) -> None:
        """Forget every event (each reported DELETED)."""
        with self._lock:
            while self._events:
                self._changed("DELETED", self._events.popitem(last=False)[1])

    def select(self, namespace: str | None) -> list[JSON]:
        """Copies of the events in a namespace (every namespace: None), ordered by name as the API server lists."""
        with self._lock:
            found = [
                copy.deepcopy(event)
                for event in self._events.values()
                if namespace is None or event["metadata"]["namespace"] == namespace
            ]
        return sorted(found, key=lambda event: (event["metadata"]["namespace"], event["metadata"]["name"]))

    def get(self, namespace: str, name: str) -> JSON | None:
        """A copy of one event, or None."""
        return next((event for event in self.select(namespace) if event["metadata"]["name"] == name), None)
