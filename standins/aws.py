"""Local stand-ins for AWS: a moto server (real HTTP S3/ECR/EKS/STS APIs) on a free port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server(port: int | None = None, address: str = "127.0.0.1") -> Iterator[str]:
    """Run a moto server on `address` (loopback; the Docker bridge's gateway when pods must reach it) and yield
    its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = port or free_port()
    server = ThreadedMotoServer(ip_address=address, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{address}:{port}"
    finally:
        server.stop()
