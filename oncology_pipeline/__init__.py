"""Pipeline code for the outside world (S3, ECR, Docker, Kubernetes); knows nothing of Prefect."""
