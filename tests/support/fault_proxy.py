"""A fault-injecting HTTP proxy in front of a real server (moto): 5xx answers, connection resets, stalls, and
AWS's 403 for unknown access keys, on the requests a test chooses. Everything else is forwarded unchanged."""

from __future__ import annotations

import contextlib
import http.client
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
_AKID = re.compile(r"Credential=([^/]+)/")
_ERROR_CODES = {403: "AccessDenied", 500: "InternalError", 502: "BadGateway", 503: "SlowDown", 504: "GatewayTimeout"}


STALL = -1  # a Fault's status: hold the request (its body read, nothing forwarded) until released, then drop it


@dataclass
class Fault:
    """Answer `count` matching requests with `status` (reset the connection when `status` is 0, or hold it
    without forwarding when it is STALL: `reached` is set when one arrives, `released` lets it go)."""

    method: str | None
    path: str | None
    status: int
    count: int
    hits: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.count
            and (self.method is None or self.method == method)
            and (self.path is None or self.path in path)
        )


@dataclass
class FaultProxy:
    """The proxy's controls and its record of what passed through."""

    upstream: str
    url: str = ""
    faults: list[Fault] = field(default_factory=list)
    denied_keys: set[str] = field(default_factory=set)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, status: int = 503, *, method: str | None = None, path: str | None = None, count: int = 1) -> Fault:
        """Answer the next `count` matching requests with `status`."""
        fault = Fault(method, path, status, count)
        with self.lock:
            self.faults.append(fault)
        return fault

    def reset(self, *, method: str | None = None, path: str | None = None, count: int = 1) -> Fault:
        """Drop the connection of the next `count` matching requests without answering."""
        return self.fail(0, method=method, path=path, count=count)

    def stall(self, *, method: str | None = None, path: str | None = None, count: int = 1) -> Fault:
        """Hold the next `count` matching requests (body read, nothing forwarded) until `fault.released` is set
        (or `clear()`), then drop their connections: an upload whose sender dies mid-transfer never lands."""
        return self.fail(STALL, method=method, path=path, count=count)

    def deny_access_key(self, access_key_id: str) -> None:
        """Answer every request signed with this access key id with AWS's 403 InvalidAccessKeyId."""
        self.denied_keys.add(access_key_id)

    def clear(self) -> None:
        """Forget faults, denied keys and the request log."""
        with self.lock:
            for fault in self.faults:
                fault.released.set()
            self.faults.clear()
            self.denied_keys.clear()
            self.log.clear()

    def count(self, method: str, path: str) -> int:
        """How many requests with this method reached the proxy for a path containing `path`."""
        return sum(1 for m, p, _ in self.log if m == method and path in p)

    def _take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def _error(self, status: int, code: str, message: str) -> None:
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            )
            data = b"" if self.command == "HEAD" else body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body.encode())))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            akid = _AKID.search(self.headers.get("Authorization", ""))
            fault = proxy._take(self.command, self.path)
            if akid and akid.group(1) in proxy.denied_keys:
                proxy.log.append((self.command, self.path, 403))
                self._error(
                    403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
                )
                return
            if fault is not None:
                proxy.log.append((self.command, self.path, fault.status))
                if fault.status == STALL:
                    fault.reached.set()
                    fault.released.wait(timeout=600)
                if fault.status in (0, STALL):
                    self.close_connection = True
                    with contextlib.suppress(OSError):  # a stalled sender may be gone already
                        self.connection.shutdown(2)
                    return
                self._error(fault.status, _ERROR_CODES.get(fault.status, "ServiceUnavailable"), "injected fault")
                return
            connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            proxy.log.append((self.command, self.path, response.status))
            self.send_response(response.status)
            head = self.command == "HEAD"  # a HEAD answer keeps the upstream Content-Length of the object
            for key, value in response.getheaders():
                if key.lower() not in _HOP_HEADERS and (head or key.lower() != "content-length"):
                    self.send_header(key, value)
            if not head:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _serve

    return Handler


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """Run a proxy to `upstream` on a free loopback port."""
    proxy = FaultProxy(upstream=upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
