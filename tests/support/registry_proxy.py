"""A TCP proxy in front of the local registry that refuses pushes or breaks them off mid-stream.

The Docker engine pushes to it as to any registry at `127.0.0.1:<port>` (loopback registries need no TLS); bytes
pass through unchanged unless a rule matches a request line the engine sends: then the proxy answers the
registry's own 403 `DENIED` error, or forwards only the first `after_bytes` bytes of that request and closes both
connections (what a dropped link or a crashed load balancer does to an upload).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

#: Request lines of blob uploads (start, chunks, commit) and of manifest pushes.
BLOB_UPLOAD = rb"(POST|PATCH|PUT) /v2/\S+/blobs/uploads/"
MANIFEST_PUT = rb"PUT /v2/\S+/manifests/"
_REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|PATCH|DELETE) (/v2/\S*) HTTP/1\.[01]\r\n")
_DENIED = json.dumps(
    {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied", "detail": None}]}
).encode()


@dataclass
class Rule:
    """Refuse (`after_bytes` None) or cut after `after_bytes` the next `count` requests matching `pattern`."""

    pattern: re.Pattern[bytes]
    after_bytes: int | None
    count: int
    hits: int = 0


@dataclass
class RegistryProxy:
    """The proxy's rules and the request lines (`METHOD /v2/...`) it saw."""

    upstream: tuple[str, int]
    address: str = ""
    rules: list[Rule] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse(self, pattern: bytes = BLOB_UPLOAD, *, count: int = 1_000_000) -> Rule:
        """Answer matching requests with the registry's 403 DENIED."""
        return self._add(Rule(re.compile(pattern), None, count))

    def cut(self, pattern: bytes = BLOB_UPLOAD, *, after_bytes: int, count: int = 1_000_000) -> Rule:
        """Forward `after_bytes` bytes of matching requests (request line included), then close the connection."""
        return self._add(Rule(re.compile(pattern), after_bytes, count))

    def clear(self) -> None:
        """Forget the rules and the request log."""
        with self.lock:
            self.rules.clear()
            self.requests.clear()

    def seen(self, pattern: bytes) -> list[str]:
        """The request lines seen that match `pattern`."""
        with self.lock:
            return [line for line in self.requests if re.match(pattern, line.encode())]

    def _add(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def _take(self, line: bytes) -> Rule | None:
        with self.lock:
            self.requests.append(line.decode(errors="replace").strip())
            for rule in self.rules:
                if rule.hits < rule.count and rule.pattern.match(line):
                    rule.hits += 1
                    return rule
        return None


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


def _to_registry(proxy: RegistryProxy, client: socket.socket, upstream: socket.socket) -> None:
    """Client -> registry: watch request lines; refuse or cut where a rule says so."""
    cutting: int | None = None  # bytes still to forward before the cut
    tail = b""
    try:
        while True:
            data = client.recv(65536)
            if not data:
                break
            if cutting is None:
                window = tail + data
                for match in _REQUEST_LINE.finditer(window):
                    if match.end() <= len(tail):
                        continue  # seen with the previous chunk
                    rule = proxy._take(match.group(0))
                    if rule is None:
                        continue
                    start = max(0, match.start() - len(tail))
                    if rule.after_bytes is None:
                        upstream.sendall(data[:start])
                        head = "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
                        head += "Docker-Distribution-Api-Version: registry/2.0\r\n"
                        head += f"Content-Length: {len(_DENIED)}\r\nConnection: close\r\n\r\n"
                        client.sendall(head.encode() + _DENIED)
                        return
                    cutting = rule.after_bytes + start
                    break
                tail = window[-1024:]
            if cutting is not None:
                upstream.sendall(data[:cutting])
                if len(data) >= cutting:
                    return
                cutting -= len(data)
            else:
                upstream.sendall(data)
    except OSError:
        pass
    finally:
        _close(client, upstream)


def _to_client(client: socket.socket, upstream: socket.socket) -> None:
    """Registry -> client, unchanged."""
    try:
        while True:
            data = upstream.recv(65536)
            if not data:
                break
            client.sendall(data)
    except OSError:
        pass
    finally:
        _close(client, upstream)


@contextlib.contextmanager
def registry_proxy(upstream: str) -> Iterator[RegistryProxy]:
    """Run a proxy to `upstream` (`host:port`) on a free loopback port; `proxy.address` is `127.0.0.1:<port>`."""
    host, _, port = upstream.rpartition(":")
    proxy = RegistryProxy(upstream=(host, int(port)))
    listener = socket.create_server(("127.0.0.1", 0))
    proxy.address = f"127.0.0.1:{listener.getsockname()[1]}"
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream_socket = socket.create_connection(proxy.upstream, timeout=10)
            except OSError:
                _close(client)
                continue
            upstream_socket.settimeout(None)
            threading.Thread(target=_to_registry, args=(proxy, client, upstream_socket), daemon=True).start()
            threading.Thread(target=_to_client, args=(client, upstream_socket), daemon=True).start()

    thread = threading.Thread(target=serve, name="registry-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        stop.set()
        _close(listener)
        thread.join(timeout=5)
