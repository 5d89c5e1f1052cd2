"""/metrics: requests by route, method and status, latency, predictions by class, the model served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from oncology_model.bundle import ModelMetadata
from oncology_model.datamodel import EXAMPLE_BENIGN, EXAMPLE_MALIGNANT
from oncology_model.metrics import LATENCY_BUCKETS
from oncology_model.service import ServiceSettings, create_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def client(model_bundle_dir: Path) -> Iterator[TestClient]:
    """A fresh service (its own registry: counters start at zero)."""
    with TestClient(create_app(ServiceSettings(model_dir=model_bundle_dir, max_body_bytes=2048))) as test_client:
        yield test_client


def _samples(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _requests(samples: Samples, route: str, method: str, status: str) -> float:
    labels = frozenset({"route": route, "method": method, "status": status}.items())
    return samples.get(("oncology_http_requests_total", labels), 0.0)


def test_requests_are_counted_by_route_method_and_status(client: TestClient) -> None:
    for _ in range(3):
        client.post("/v1/predictions", json=EXAMPLE_BENIGN)
    client.post("/v1/predictions", json={**EXAMPLE_BENIGN, "mitoses": 0})
    client.post("/v1/predictions/batch", json={"tumors": [EXAMPLE_BENIGN] * 2})
    client.post("/v1/predictions", content=b" " * 4096, headers={"content-type": "application/json"})
    client.get("/healthz")
    client.get("/no/such/path")
    client.get("/v1/predictions")
    samples = _samples(client)
    assert _requests(samples, "/v1/predictions", "POST", "200") == 3
    assert _requests(samples, "/v1/predictions", "POST", "422") == 1
    assert _requests(samples, "/v1/predictions", "POST", "413") == 1
    assert _requests(samples, "/v1/predictions", "GET", "405") == 1
    assert _requests(samples, "/v1/predictions/batch", "POST", "200") == 1
    assert _requests(samples, "/healthz", "GET", "200") == 1
    assert _requests(samples, "other", "GET", "404") == 1, "unknown paths share one label"
    assert not [key for key in samples if ("route", "/no/such/path") in key[1]]


def test_latency_histogram_by_route(client: TestClient) -> None:
    for _ in range(5):
        client.post("/v1/predictions", json=EXAMPLE_MALIGNANT)
    samples = _samples(client)
    route = ("route", "/v1/predictions")
    assert samples[("oncology_http_request_duration_seconds_count", frozenset({route}))] == 5
    assert 0 < samples[("oncology_http_request_duration_seconds_sum", frozenset({route}))] < 5
    buckets = {
        float(dict(labels)["le"]): value
        for (name, labels), value in samples.items()
        if name == "oncology_http_request_duration_seconds_bucket" and route in labels
    }
    assert sorted(buckets) == [*LATENCY_BUCKETS, float("inf")]
    assert buckets[float("inf")] == 5
    assert list(buckets.values()) == sorted(buckets.values()), "cumulative"


def test_predictions_are_counted_by_class(client: TestClient) -> None:
    client.post("/v1/predictions", json=EXAMPLE_MALIGNANT)
    client.post("/v1/predictions", json={**EXAMPLE_BENIGN, "mitoses": 1.0})  # answered by FastAPI, counted too
    client.post("/v1/predictions/batch", json={"tumors": [EXAMPLE_BENIGN, EXAMPLE_MALIGNANT, EXAMPLE_MALIGNANT]})
    client.post("/v1/predictions/batch", json={"tumors": [{**EXAMPLE_BENIGN, "mitoses": 2.0}]})
    client.post("/v1/predictions", json={**EXAMPLE_BENIGN, "mitoses": 0})  # refused: no prediction
    samples = _samples(client)
    assert samples[("oncology_predictions_total", frozenset({("prediction", "malignant")}))] == 3
    assert samples[("oncology_predictions_total", frozenset({("prediction", "benign")}))] == 3


def test_the_model_served_is_named(client: TestClient, model_metadata: ModelMetadata) -> None:
    labels = frozenset({"version": model_metadata.model_version, "estimator": "logistic_regression"}.items())
    assert _samples(client)[("oncology_model_info", labels)] == 1


def test_process_metrics_are_exported(client: TestClient) -> None:
    names = {name for name, _ in _samples(client)}
    assert {"process_resident_memory_bytes", "python_info"} <= names


def test_metrics_are_not_in_the_api_schema(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]
