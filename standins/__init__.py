"""Local STAND-INS for the cloud (not part of the pipeline): moto for AWS, the local registry for ECR, and a
Kubernetes-API stand-in whose pods are real Docker containers. Used by the demo, `make server` and the tests."""
