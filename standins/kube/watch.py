"""Watch (`GET <collection>?watch=true`): list-then-watch from a `resourceVersion`, as the API server serves it.

The answer is a chunked stream of newline-delimited JSON events `{"type": ..., "object": ...}`:

- `resourceVersion` absent or "0" (or `sendInitialEvents=true`): an ADDED event for each current object first,
  then the changes; a version: the changes strictly after it. A version older than the backend's `ChangeLog`
  keeps is one ERROR event with a 410 `Expired` Status, as the API server's watch cache answers it.
- `labelSelector` and `fieldSelector` filter the events; an object whose labels stop (start) matching the selector
  is reported DELETED (ADDED), as the watch cache reports it.
- `allowWatchBookmarks=true`: a BOOKMARK (only kind, apiVersion and `metadata.resourceVersion`) every
  `bookmark_interval` seconds; with `sendInitialEvents=true` also one marked `k8s.io/initial-events-end` after the
  initial events, as client-go's watch-list expects. (The API server's watch cache sends one about every minute.)
- `timeoutSeconds` ends the stream (default `DEFAULT_TIMEOUT`); the stand-in's stop ends every stream at once.
- An `Accept` header asking for `as=Table` (what `kubectl get -w` sends) makes each event's object a Table of one
  row (`standins.kube.tables`), as the API server converts watch events.

A watch waits on the log's condition: no polling. Watching a single object (`.../deployments/NAME?watch=true`) is
not served: watch the collection with `fieldSelector=metadata.name=NAME`, as kubectl does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from standins.kube import urls
from standins.kube.exceptions import ApiError, bad_request, not_served
from standins.kube.models import ADDED, API_VERSIONS, DELETED, KINDS, MODIFIED, Backend, Change
from standins.kube.proxy import Reply
from standins.kube.selectors import Selector, field_filter, matches, parse_label_selector
from standins.kube.tables import table, table_version

JSON = dict[str, Any]
#: Seconds a watch lasts without `timeoutSeconds` (the API server picks 30 to 60 minutes; a stand-in, a few).
DEFAULT_TIMEOUT = 300.0
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True)
class _Watch:
    """What one watch asked for."""

    resource: str
    namespace: str | None
    labels: list[Selector]
    fields: str | None
    version: int | None  # None: from the current state (initial ADDED events)
    initial_events_end: bool
    bookmarks: bool
    timeout: float
    table: str | None  # the Table version asked for (None: plain objects)
    include_object: str | None

    def selects(self, obj: JSON, labels: dict[str, str] | None) -> bool:
        """Whether `obj`, with these labels, is one this watch reports."""
        return matches(self.labels, labels) and any(field_filter([obj], self.fields, self.resource))

    def event(self, change: Change) -> bytes | None:
        """The event a change makes for this watch, if any."""
        if change.resource != self.resource or self.namespace not in (None, change.namespace):
            return None
        now = self.selects(change.object, change.object["metadata"].get("labels"))
        before = change.previous_labels is not None and self.selects(change.object, change.previous_labels)
        if change.type == DELETED:
            kind = DELETED if now else None
        else:
            kind = MODIFIED if now and before else ADDED if now else DELETED if before else None
        return None if kind is None else self.line(kind, change.object)

    def line(self, kind: str, obj: JSON) -> bytes:
        """An event about an object, as a Table row if one was asked for."""
        if self.table is None:
            return _line(kind, obj)
        rows = table(
            self.resource,
            [obj],
            resource_version=obj["metadata"]["resourceVersion"],
            api_version=API_VERSIONS[self.resource],
            kind=KINDS[self.resource],
            version=self.table,
            include_object=self.include_object,
        )
        return _line(kind, rows)

    def bookmark(self, version: int, *, initial_events_end: bool = False) -> bytes:
        """A BOOKMARK: every change up to `version` has been sent."""
        meta: JSON = {"resourceVersion": str(version)}
        if initial_events_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return _line(
            "BOOKMARK", {"kind": KINDS[self.resource], "apiVersion": API_VERSIONS[self.resource], "metadata": meta}
        )


def _line(kind: str, obj: JSON) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _expired(version: int, compacted: int) -> bytes:
    error = ApiError(410, f"too old resource version: {version} ({compacted})", reason="Expired")
    return _line("ERROR", error.status())


def _number(query: dict[str, str], name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(str(value))
    except ValueError:
        raise bad_request(f"{name}: not an integer: {value!r}") from None


def respond(backend: Backend, method: str, path: str, query: dict[str, str], accept: str) -> Reply:
    """The streamed answer to a watch request (its parameters checked now: a bad one is a 400, not an event)."""
    found = urls.resolve(path)
    if method != "GET" or found is None or found[0] != "collection":
        raise not_served(method, f"{path}?watch=true (watch a collection, with fieldSelector=metadata.name=NAME)")
    params = found[1]
    resource = str(params["resource"])
    if resource not in KINDS:
        raise not_served(method, f"{path}?watch=true (this stand-in watches {', '.join(KINDS)})")
    fields = query.get("fieldSelector") or None
    list(field_filter([], fields, resource))  # a field label the resource does not support: 400
    version = _number(query, "resourceVersion")
    initial = query.get("sendInitialEvents")
    timeout = _number(query, "timeoutSeconds")
    watch = _Watch(
        resource=resource,
        namespace=params["ns"],
        labels=parse_label_selector(query["labelSelector"]) if query.get("labelSelector") else [],
        fields=fields,
        version=None if version in (None, 0) or initial == "true" else version,
        initial_events_end=initial == "true",
        bookmarks=query.get("allowWatchBookmarks") == "true",
        timeout=DEFAULT_TIMEOUT if not timeout or timeout < 0 else float(timeout),
        table=table_version(accept),
        include_object=query.get("includeObject"),
    )
    if watch.table is not None:  # an unknown includeObject: 400
        table(resource, [], resource_version="", api_version="", kind="", include_object=watch.include_object)
    return Reply(200, b"", chunks=_events(backend, watch))


def _events(backend: Backend, watch: _Watch) -> Generator[bytes, None, None]:
    """The event lines of one watch, until its timeout or the stand-in's stop (no line is sent holding the lock)."""
    log = backend.changes
    deadline = time.monotonic() + watch.timeout
    with log.changed:
        if watch.version is None:
            current = backend.select(watch.resource, watch.namespace, None)
            first = [watch.line(ADDED, obj) for obj in current if watch.selects(obj, obj["metadata"].get("labels"))]
            cursor = backend.resource_version
            if watch.initial_events_end:
                first.append(watch.bookmark(cursor, initial_events_end=True))
        else:
            first, cursor = [], watch.version
    yield from first
    next_bookmark = time.monotonic() + log.bookmark_interval
    while True:
        wake = min(deadline, next_bookmark) if watch.bookmarks else deadline
        with log.changed:
            changes = log.since(cursor)
            while changes == [] and not log.closed and time.monotonic() < wake:
                log.changed.wait(wake - time.monotonic())
                changes = log.since(cursor)
            if log.closed:
                return
            compacted = log.compacted
        if changes is None:  # from a version older than the history kept, or fallen behind it
            yield _expired(cursor, compacted)
            return
        for change in changes:
            if line := watch.event(change):
                yield line
        if changes:
            cursor = changes[-1].version
        now = time.monotonic()
        if watch.bookmarks and now >= next_bookmark:
            yield watch.bookmark(cursor)
            next_bookmark = now + log.bookmark_interval
        if now >= deadline:
            return
