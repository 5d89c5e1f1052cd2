"""`python -m standins.kube`: run the Kubernetes STAND-IN until interrupted (SIGINT/SIGTERM)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import docker.errors

from standins.kube.dockerruntime import DockerRuntime
from standins.kube.server import KubeStandIn


def main(argv: list[str] | None = None) -> int:
    """Serve the stand-in, apply manifests, write a kubeconfig; remove every container on exit."""
    parser = argparse.ArgumentParser(description="Kubernetes STAND-IN (not Kubernetes): pods are Docker containers.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--token", default="standin-token", help="the bearer token clients must send")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig pointing at the stand-in here")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--apply", type=Path, action="append", default=[], help="create the objects it holds")
    parser.add_argument("--progress-deadline", type=float, default=None, help="seconds (overrides the spec)")
    parser.add_argument(
        "--ca-dir", type=Path, help="keep the TLS CA here, so that a restarted stand-in's kubeconfig stays valid"
    )
    args = parser.parse_args(argv)

    runtime = DockerRuntime()
    try:
        runtime.client.ping()
    except docker.errors.DockerException as exc:
        runtime.close()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(
            f"standins.kube: no Docker engine is reachable, and the stand-in's pods are Docker containers: {reason}\n"
        )
        return 1

    stopped = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with KubeStandIn(
        args.token, runtime=runtime, port=args.port, progress_deadline=args.progress_deadline, ca_dir=args.ca_dir
    ) as standin:
        for manifest in args.apply:
            for created in standin.apply(manifest, args.namespace):
                sys.stdout.write(f"{created} created\n")
        if args.kubeconfig:
            standin.write_kubeconfig(args.kubeconfig, namespace=args.namespace)
        sys.stdout.write(f"Kubernetes API STAND-IN (not a cluster) listening on {standin.url}\n")
        sys.stdout.flush()
        stopped.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
