"""The Service proxy (`/api/v1/namespaces/{ns}/services/{name}:{port}/proxy/{path}`) and a port-forward.

A request goes to a ready pod matching the Service's selector (round robin), at the container port its
`targetPort` names, over the port the runtime published for it: what kube-proxy and the API server's
proxy do on a cluster.
"""

from __future__ import annotations

import http.client
import itertools
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standins.kube.exceptions import ApiError, bad_request
from standins.kube.models import Backend
from standins.kube.runtime import ContainerRuntime

JSON = dict[str, Any]
#: Not passed on by the proxy (hop-by-hop, RFC 9110 7.6.1, and what the connection to the pod sets itself); every
#: other header goes both ways, as through the API server's proxy and a port-forward (e.g. X-Request-ID).
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "authorization",
        "content-length",
        "content-type",
        "date",
        "server",
    }
)


@dataclass
class Reply:
    """An HTTP answer: status, body and content type; or, with `chunks`, a streamed body (a watch) sent in place
    of `body` as HTTP/1.1 chunks, each flushed as it comes."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: Generator[bytes, None, None] | None = None


def _service_port(service: JSON, port: str | None) -> JSON:
    ports: list[JSON] = service["spec"]["ports"]
    if port is None:
        if len(ports) == 1:
            return ports[0]
        raise bad_request(f'service "{service["metadata"]["name"]}" has several ports: name one')
    for candidate in ports:
        if port in (candidate.get("name"), str(candidate.get("port"))):
            return candidate
    raise ApiError(503, f'no endpoints available for service "{service["metadata"]["name"]}:{port}"')


def _container_port(pod_spec: JSON, target: Any) -> tuple[str, int] | None:
    """The container and its port that a `targetPort` (number or name) points at."""
    for container in pod_spec.get("containers", []):
        for port in container.get("ports") or []:
            if target in (port.get("name"), port.get("containerPort")):
                return container["name"], int(port["containerPort"])
    if isinstance(target, int) and pod_spec.get("containers"):
        return pod_spec["containers"][0]["name"], target
    return None


class ServiceProxy:
    """Sends requests for a Service to one of its ready pods."""

    def __init__(self, backend: Backend, runtime: ContainerRuntime) -> None:
        self.backend = backend
        self.runtime = runtime
        self._turn = itertools.count()

    def endpoint(self, namespace: str, service: str, port: str | None) -> tuple[str, int]:
        """Where a request to the Service goes now: (host, port) on this machine; 503 without a ready pod."""
        with self.backend.lock:
            obj = self.backend.get("services", namespace, service)
            target = _service_port(obj, port).get("targetPort")
            ready = self.backend.ready_endpoints(namespace, obj["spec"].get("selector") or {})
            choices = []
            for pod in ready:
                found = _container_port(pod.spec, target)
                container = next((c for c in pod.containers if found and c.name == found[0]), None)
                if found and container and container.container_id:
                    choices.append((container.container_id, found[1]))
        for _ in range(len(choices)):
            container_id, container_port = choices[next(self._turn) % len(choices)]
            address = self.runtime.address(container_id, container_port)
            if address is not None:
                return address
        raise ApiError(503, f'no endpoints available for service "{service}"')

    def forward(
        self,
        method: str,
        namespace: str,
        service: str,
        port: str | None,
        path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        """Forward one request; the pod's answer as it came."""
        host, host_port = self.endpoint(namespace, service, port)
        connection = http.client.HTTPConnection(host, host_port, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _NOT_FORWARDED}
            if "content-type" in headers:
                sent["content-type"] = headers["content-type"]
            connection.request(method, path or "/", body=body or None, headers=sent)
            answer = connection.getresponse()
            passed = [(k, v) for k, v in answer.getheaders() if k.lower() not in _NOT_FORWARDED]
            content_type = answer.getheader("content-type") or "application/octet-stream"
            return Reply(answer.status, answer.read(), content_type, passed)
        except OSError as exc:
            raise ApiError(503, f'error trying to reach service "{service}": {exc}') from exc
        finally:
            connection.close()


class PortForward:
    """`kubectl port-forward service/NAME LOCAL:PORT`: a local HTTP port answered by the Service's pods."""

    def __init__(self, proxy: ServiceProxy, namespace: str, service: str, port: str | None, local_port: int = 0):
        handler = type("_ForwardHandler", (_ForwardHandler,), {"target": (proxy, namespace, service, port)})
        self._server = ThreadingHTTPServer(("127.0.0.1", local_port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ReplyHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive (as urllib3's pool expects) and no access log; subclasses say what to answer."""

    protocol_version = "HTTP/1.1"

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """The reply to one request."""
        raise NotImplementedError

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self.answer(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.chunks is not None:
            self._stream(reply.chunks)
            return
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _stream(self, chunks: Generator[bytes, None, None]) -> None:
        """Send a body as it is made, chunk by chunk; stop when the client has gone (a failed write: a broken pipe,
        a reset connection, a TLS error, all `OSError`)."""
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        finally:
            chunks.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # http.server's naming

    def log_message(self, format: str, *args: Any) -> None:
        """No access log."""


class _ForwardHandler(ReplyHandler):
    target: tuple[ServiceProxy, str, str, str | None]

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        proxy, namespace, service, port = self.target
        try:
            return proxy.forward(method, namespace, service, port, path, headers, body)
        except ApiError as error:
            return Reply(error.code, error.message.encode() + b"\n", "text/plain")
