"""The service's Prometheus metrics: requests by route and status, latency, predictions by class, the model."""

from __future__ import annotations

from collections.abc import Iterator

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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from oncology_model.datamodel import Prediction
from oncology_model.predictionlog import LogCounts

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

    def prediction_log(self, counts: LogCounts) -> None:
        """Export the prediction log's counts (read at each scrape; the request path only adds to them)."""
        self.registry.register(_LogCollector(counts))

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)


class _LogCollector(Collector):
    """The prediction log's counts as metrics."""

    def __init__(self, counts: LogCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self.counts
        records = CounterMetricFamily(
            "oncology_prediction_log_records",
            "Prediction-log records: logged (buffered), written to S3, dropped (buffer cap, or unwritten at shutdown).",
            labels=["outcome"],
        )
        for outcome, value in (("logged", counts.logged), ("written", counts.written), ("dropped", counts.dropped)):
            records.add_metric([outcome], value)
        yield records
        yield CounterMetricFamily(
            "oncology_prediction_log_failed_writes",
            "S3 writes of the prediction log that failed (each is retried).",
            value=counts.failed_writes,
        )
        yield GaugeMetricFamily(
            "oncology_prediction_log_buffered_records", "Records waiting to be written to S3.", value=counts.buffered
        )
