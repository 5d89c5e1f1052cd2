"""Secrets canary of a run refused by AWS: its exception, state, logs and database name no secret. The canary over
whole runs (image layers, builder images, Prefect, S3, local files) is the README sequence's
(tests/flows/test_pipeline.py), which runs with canary secrets from its first night on."""

from __future__ import annotations

import traceback

import pytest
from prefect.client.schemas.objects import StateType

from flows.train import train
from oncology_pipeline.errors import ConfigurationError
from tests.support.canaries import PrivateIndex, Sinks, flow_run_tree, plant_canaries, search_prefect
from tests.support.stacks import Stack, s3_data_uri


def test_the_error_of_a_run_refused_by_aws_names_no_secret(
    stack: Stack, private_index: PrivateIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    canaries = plant_canaries(monkeypatch, private_index.url)
    stack.proxy.deny_access_key(canaries["AWS access key id"].decode())

    state = train(overrides=stack.overrides, return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(ConfigurationError) as failure:
        state.result()
    assert "403" in str(failure.value)

    run_id = state.state_details.flow_run_id
    assert run_id is not None
    sinks = Sinks(canaries, control=s3_data_uri(stack))
    sinks.search("exception", "str", str(failure.value))
    sinks.search("exception", "repr", repr(failure.value))
    sinks.search("exception", "traceback", "".join(traceback.format_exception(failure.value)))
    sinks.search("state message", "train", state.message or "")
    search_prefect(sinks, flow_run_tree(run_id))
    assert sinks.found == []
    assert {"exception", "state message", "log", "task run", "flow run", "Prefect database"} <= sinks.controlled
