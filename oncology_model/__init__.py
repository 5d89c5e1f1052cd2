"""The breast-cancer (Wisconsin original) classifier: data model, validation, training, evaluation, service.

Knows nothing of Prefect, S3, Docker or Kubernetes; ships inside the serving image.
"""

__version__ = "0.1.0"
