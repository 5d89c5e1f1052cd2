"""The service's Prometheus metrics: requests by route and status, latency, predictions by class, the model."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from oncology_model.datamodel import Prediction

#: The media type of `ServiceMetrics.exposition()`.
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Latency buckets in seconds: fine below a millisecond, where a prediction is answered.
LATENCY_BUCKETS = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    """One registry per app (so tests can build several); each worker process exports its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._requests = Counter(
            "oncology_http_requests",
            "HTTP requests answered, by route (path template), method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "oncology_http_request_duration_seconds",
            "Time from the request's arrival to the last byte of the answer, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        predictions = Counter(
            "oncology_predictions", "Predictions made, by predicted class.", ["prediction"], registry=self.registry
        )
        self._predictions = {label: predictions.labels(label.value) for label in Prediction}
        self._model = Info("oncology_model", "The model being served.", registry=self.registry)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency (`route`: a path template, from a bounded set)."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(route, method, str(status)),
                self._latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def predicted(self, label: Prediction, count: int = 1) -> None:
        """Count predictions of one class."""
        self._predictions[label].inc(count)

    def model(self, version: str, estimator: str) -> None:
        """Name the model being served."""
        self._model.info({"version": version, "estimator": estimator})

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)
