"""The Kubernetes stand-in: API server, controller and a kubelet running pods as Docker containers."""

from standins.kube.dockerruntime import DockerRuntime
from standins.kube.runtime import ContainerRuntime, ScriptedRuntime
from standins.kube.server import KubeStandIn

__all__ = ["ContainerRuntime", "DockerRuntime", "KubeStandIn", "ScriptedRuntime"]
