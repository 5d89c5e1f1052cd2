"""A STAND-IN for a Kubernetes cluster: the API over real HTTP, a deployment controller, and a kubelet whose
pods are real Docker containers.

This is NOT Kubernetes. No API server can be installed on this machine, so the deploy code runs against this focused
double. It speaks the REST protocol of the official `kubernetes` client for what the project uses: apps/v1
Deployments and ReplicaSets; v1 Pods, Services and the Service proxy; v1 Secrets, which pods' containers read through
`env[].valueFrom.secretKeyRef` and `envFrom[].secretRef`; v1 ConfigMaps and ServiceAccounts; policy/v1
PodDisruptionBudgets, whose status counts the ready pods they select; Events. Every kind is read (get, list by
`labelSelector`) and watched (`watch.py`); Deployments, Services, Secrets, ConfigMaps, ServiceAccounts and
PodDisruptionBudgets are written (create, replace, the three PATCH types, delete) in JSON (not protobuf). Writes keep
the API server's semantics: optimistic concurrency on `metadata.resourceVersion` (409 Conflict), decoding against the
schema of the Kubernetes minor it claims with `fieldValidation` (`schema.py`, `openapi.py`), validation with field
causes (422 Invalid, `validation.py`). Errors are `Status` objects (401 without the bearer token, 400, 404, 409, 415,
422). It serves HTTPS as an API server does
(kubectl sends its token over TLS only), with a CA of its own (`tls.py`) that its kubeconfig carries; a
port-forward (`port_forward`) is plain HTTP, as kubectl's is. Its pods run the pod template's image in
Docker (pulled by digest with the node's registry credentials), probed for real, and end gracefully when deleted
(preStop, SIGTERM, SIGKILL after the grace period; `DELETE pod` with `gracePeriodSeconds`); see `kubelet.py`,
`pods.py` and `controller.py` for what is honoured.

Run it on its own: `python -m standins.kube --port 8001 --token demo --kubeconfig .work/kubeconfig.yaml
--apply deployments/webservice.yaml`, then `KUBECONFIG=.work/kubeconfig.yaml kubectl get pods`.
"""

from __future__ import annotations

import base64
import copy
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from standins.kube.controller import Controller
from standins.kube.dockerruntime import DockerRuntime
from standins.kube.faults import FailureRule
from standins.kube.kubelet import Kubelet
from standins.kube.models import RESOURCES, WRITABLE, Backend, owner_of
from standins.kube.proxy import PortForward, Reply, ReplyHandler, ServiceProxy
from standins.kube.responses import Api
from standins.kube.runtime import ContainerRuntime
from standins.kube.tls import Authority, kept_authority, process_authority, server_context

JSON = dict[str, Any]


class KubeStandIn:
    """The stand-in on 127.0.0.1: API server, controller and kubelet (see the module docstring)."""

    def __init__(
        self,
        token: str = "standin-token",
        *,
        runtime: ContainerRuntime | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        step_interval: float = 0.1,
        progress_deadline: float | None = None,
        backoff: float = 10.0,
        ca_dir: Path | None = None,
        bookmark_interval: float = 60.0,
    ) -> None:
        """`ca_dir`: keep the CA there (made on first use), so that a restarted stand-in's kubeconfig is the same;
        without it, one CA per process (in memory). `bookmark_interval`: seconds between watches' BOOKMARKs."""
        self.token = token
        self.runtime: ContainerRuntime = runtime if runtime is not None else DockerRuntime()
        self.step_interval = step_interval
        self.backend = Backend()
        self.backend.changes.bookmark_interval = bookmark_interval
        self.authority: Authority = kept_authority(ca_dir) if ca_dir is not None else process_authority()
        self.kubelet = Kubelet(
            self.runtime,
            self.backend.lock,
            backoff=backoff,
            events=self.backend.events,
            on_change=self.backend.bump_pod,
            secrets=self.backend.find_secret,
        )
        self.controller = Controller(self.backend, self.kubelet, progress_deadline)
        self.proxy = ServiceProxy(self.backend, self.runtime)
        self.api = Api(self.backend, self.proxy, token)
        self._server = _TlsServer((host, port), _Handler, server_context(self.authority, host))
        self._server.api = self.api  # type: ignore[attr-defined]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._forwards: list[PortForward] = []

    # lifecycle

    @property
    def url(self) -> str:
        """`https://127.0.0.1:PORT` (its certificate signed by `ca_pem`)."""
        host, port = self._server.server_address[:2]
        return f"https://{host!s}:{port}"

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate (PEM) that clients trust for `url`."""
        return self.authority.pem

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the stand-in (for urllib and http.client)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    def start(self) -> KubeStandIn:
        """Remove containers left by a stand-in that was killed, then serve and reconcile in the background."""
        if isinstance(self.runtime, DockerRuntime):
            self.runtime.remove_leftovers()
        self._threads = [
            threading.Thread(target=self._server.serve_forever, args=(0.05,), name="kube-standin-http", daemon=True),
            threading.Thread(target=self._reconcile, name="kube-standin-controller", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, stop the controller, and remove every container this stand-in started (at once, terminating
        pods' too: no grace period is waited for)."""
        self._stop.set()
        self.backend.changes.close()
        for forward in self._forwards:
            forward.stop()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.kubelet.stop()
        if isinstance(self.runtime, DockerRuntime):
            self.runtime.remove_leftovers(everything_of_mine=True)
        self.runtime.close()

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _reconcile(self) -> None:
        while not self._stop.wait(self.step_interval):
            self.controller.step()

    def reset(self) -> None:
        """Forget every object; their pods terminate (gracefully, in the background)."""
        for pod in self.backend.reset():
            pod.terminate()

    def wait_for_terminations(self, timeout: float = 60.0) -> bool:
        """Wait until no deleted pod is still terminating (every container of theirs has exited and is removed)."""
        return self.wait_until(lambda: self.kubelet.terminating() == 0, timeout)

    def write_kubeconfig(
        self, path: str | Path, *, token: str | None = None, context: str = "kube-standin", namespace: str = "default"
    ) -> Path:
        """Write a kubeconfig (server = this stand-in, its CA, a token user) as real users have one."""
        cluster = {"server": self.url, "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": f"{context}-user", "user": {"token": self.token if token is None else token}}],
            "contexts": [
                {"name": context, "context": {"cluster": context, "user": f"{context}-user", "namespace": namespace}}
            ],
            "current-context": context,
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # seeding (Python side, as `kubectl apply` would)

    def add_deployment(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        containers: list[JSON] | dict[str, str],
        replicas: int = 1,
        *,
        settle: bool = True,
    ) -> JSON:
        """Create a Deployment (`containers`: container objects or `{name: image}`); `settle` waits for its rollout."""
        if isinstance(containers, dict):
            containers = [{"name": cname, "image": image} for cname, image in containers.items()]
        manifest: JSON = {
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": containers}},
            },
        }
        return self.add_manifest(manifest, namespace=namespace, settle=settle)

    def add_manifest(
        self, manifest: JSON, *, namespace: str | None = None, settle: bool = True, timeout: float = 120.0
    ) -> JSON:
        """Create an object of a writable kind from a manifest (a Deployment without `kind`); `settle` waits until a
        Deployment has rolled out."""
        ns = namespace or manifest.get("metadata", {}).get("namespace") or "default"
        resource = RESOURCES[manifest.get("kind") or "Deployment"]
        with self.backend.lock:
            created = copy.deepcopy(self.backend.write(resource, ns, manifest))
        if resource != "deployments":
            return created
        name = created["metadata"]["name"]
        if settle and not self.wait_until(lambda: self.controller.complete(ns, name), timeout):
            raise RuntimeError(f"deployment {ns}/{name} did not roll out within {timeout:g} s: {self.pods(ns)}")
        return self.deployment(ns, name)

    def apply(
        self, path: str | Path, namespace: str, *, settle: bool = False, edit: Callable[[JSON], None] | None = None
    ) -> list[str]:
        """Create the objects of a manifest file of the writable kinds (others are skipped); their names."""
        created = []
        for document in yaml.safe_load_all(Path(path).read_text()):
            if isinstance(document, dict) and RESOURCES.get(document.get("kind", "")) in WRITABLE:
                if edit is not None:
                    edit(document)
                self.add_manifest(document, namespace=namespace, settle=settle)
                created.append(f"{document['kind'].lower()}/{document['metadata']['name']}")
        return created

    # inspection

    def deployment(self, namespace: str, name: str) -> JSON:
        """A copy of a stored Deployment."""
        with self.backend.lock:
            return copy.deepcopy(self.backend.get("deployments", namespace, name))

    def replicasets(self, namespace: str, deployment: str | None = None) -> list[JSON]:
        """Copies of the ReplicaSets in a namespace (of one Deployment if named), oldest revision first."""
        with self.backend.lock:
            found = [
                copy.deepcopy(rs)
                for rs in self.backend.select("replicasets", namespace, None)
                if deployment is None or owner_of(rs) == deployment
            ]
        return sorted(found, key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))

    def pods(self, namespace: str, selector: str | None = None) -> list[JSON]:
        """The Pod objects in a namespace, as the API answers them."""
        with self.backend.lock:
            return self.backend.select("pods", namespace, selector)

    def fail_requests(
        self,
        method: str,
        count: int = 1,
        *,
        status: int = 500,
        after: int = 0,
        path_contains: str | None = None,
        applied: bool = False,
    ) -> None:
        """Let the next `count` requests with `method` ("*" = any) fail with `status`, after `after` pass.

        `applied=True`: the request takes effect and only its answer is the error (a reply lost on the way).
        """
        self.api.faults.add(FailureRule(method.upper(), count, status, after, path_contains, applied))

    def requests_made(self, method: str) -> list[str]:
        """Paths of the requests received with `method` (authorized or not), in order."""
        with self.backend.lock:
            return [path for m, path in self.api.requests if m == method]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll `predicate` until true or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    def port_forward(self, namespace: str, service: str, port: str | None = None, local_port: int = 0) -> str:
        """`kubectl port-forward service/<service>`: a local URL answered by the Service's ready pods."""
        forward = PortForward(self.proxy, namespace, service, port, local_port)
        self._forwards.append(forward)
        return forward.url


class _TlsServer(ThreadingHTTPServer):
    """An HTTPS server: each connection's TLS handshake is made in its own thread (never in the accepting one)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[ReplyHandler], context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Answer plain HTTP as Go's TLS servers do (with a 400 that says so); else serve the connection over TLS."""
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if first and first != b"\x16":  # not a TLS handshake record
                request.sendall(_PLAIN_HTTP_ANSWER)
                return
            connection = self.context.wrap_socket(request, server_side=True)
        except OSError:  # the client went away, or the handshake failed (e.g. it does not trust our CA)
            return
        with connection:
            super().finish_request(connection, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that breaks (a client gone mid-request) is no error of the server's; others are printed."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


_PLAIN_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)


class _Handler(ReplyHandler):
    """The API server's HTTP side: every request goes to the stand-in's `Api`."""

    server_version = "kube-standin/2"

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        api: Api = self.server.api  # type: ignore[attr-defined]
        return api.handle(method, path, headers, body)
