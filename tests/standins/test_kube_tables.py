"""`kubectl get` gets Tables with the API server's columns, and `-o json/yaml` gets the objects themselves.

One stand-in with scripted containers serves every test; each test reads the objects it made or the ones every test
shares (`web`, its Service, a crashing and an unpullable Deployment).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from standins.kube import KubeStandIn, ScriptedRuntime
from standins.kube.tables import format_selector, human_duration, since, table_version

TOKEN = "tables-token"
NS = "shown"
WEB = "registry.local/web@sha256:" + "1" * 64
CRASHING = "registry.local/crash:1"
UNPULLABLE = "registry.local/absent:1"
SLOW_TO_STOP = "registry.local/slow:1"
#: What kubectl get sends.
TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


@pytest.fixture(scope="module")
def standin() -> Iterator[KubeStandIn]:
    runtime = ScriptedRuntime(crashing={CRASHING}, unpullable={UNPULLABLE}, stop_seconds={SLOW_TO_STOP: math.inf})
    with KubeStandIn(TOKEN, runtime=runtime, step_interval=0.02, backoff=0.05) as server:
        server.add_deployment(NS, "web", {"app": "web", "tier": "front"}, {"web": WEB, "sidecar": "proxy:1"}, 2)
        server.add_manifest(
            {
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8000}]},
            },
            namespace=NS,
        )
        server.add_deployment(NS, "crash", {"app": "crash"}, {"crash": CRASHING}, settle=False)
        server.add_deployment(NS, "absent", {"app": "absent"}, {"absent": UNPULLABLE}, settle=False)
        yield server


def get(standin: KubeStandIn, path: str, accept: str = TABLE, method: str = "GET") -> tuple[int, Any]:
    """A request as kubectl sends it (by default a GET with Accept: Table first, then plain JSON)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": accept}
    request = urllib.request.Request(standin.url + path, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5, context=standin.client_context()) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def rows(standin: KubeStandIn, path: str) -> dict[str, list[Any]]:
    """The cells of a Table's rows by the object's name."""
    code, body = get(standin, path)
    assert (code, body["kind"], body["apiVersion"]) == (200, "Table", "meta.k8s.io/v1")
    return {row["object"]["metadata"]["name"]: row["cells"] for row in body["rows"]}


def pod_named(standin: KubeStandIn, app: str) -> str:
    """The name of the Deployment's pod (waiting for the controller to make it)."""
    assert standin.wait_until(lambda: bool(standin.pods(NS, f"app={app}")))
    name: str = standin.pods(NS, f"app={app}")[0]["metadata"]["name"]
    return name


def test_deployments_show_ready_up_to_date_available_and_wide_columns(standin: KubeStandIn) -> None:
    code, body = get(standin, f"/apis/apps/v1/namespaces/{NS}/deployments")
    assert code == 200 and int(body["metadata"]["resourceVersion"]) > 0
    columns = [(c["name"], c["type"], c["priority"]) for c in body["columnDefinitions"]]
    assert columns == [
        ("Name", "string", 0),
        ("Ready", "string", 0),
        ("Up-to-date", "string", 0),
        ("Available", "string", 0),
        ("Age", "string", 0),
        ("Containers", "string", 1),
        ("Images", "string", 1),
        ("Selector", "string", 1),
    ]
    web = next(row for row in body["rows"] if row["cells"][0] == "web")
    name, ready, updated, available, age, containers, images, selector = web["cells"]
    assert (name, ready, updated, available) == ("web", "2/2", 2, 2)
    assert age.endswith("s") or age.endswith("m")
    assert (containers, images, selector) == ("web,sidecar", f"{WEB},proxy:1", "app=web,tier=front")
    assert web["object"]["kind"] == "PartialObjectMetadata" and web["object"]["apiVersion"] == "meta.k8s.io/v1"
    assert web["object"]["metadata"]["uid"] == standin.deployment(NS, "web")["metadata"]["uid"]


def test_replicasets_show_desired_current_and_ready(standin: KubeStandIn) -> None:
    (name,) = [rs["metadata"]["name"] for rs in standin.replicasets(NS, "web")]
    cells = rows(standin, f"/apis/apps/v1/namespaces/{NS}/replicasets")[name]
    assert cells[:4] == [name, 2, 2, 2]
    assert cells[5:] == [
        "web,sidecar",
        f"{WEB},proxy:1",
        f"app=web,pod-template-hash={name.rsplit('-', 1)[1]},tier=front",
    ]


def test_pods_show_ready_status_and_restarts_as_kubectl_computes_them(standin: KubeStandIn) -> None:
    pod_named(standin, "crash")
    assert standin.wait_until(
        lambda: standin.pods(NS, "app=crash")[0]["status"]["containerStatuses"][0]["restartCount"] >= 2
    )
    assert standin.wait_until(
        lambda: rows(standin, f"/api/v1/namespaces/{NS}/pods")[pod_named(standin, "absent")][2] == "ImagePullBackOff"
    )
    shown = rows(standin, f"/api/v1/namespaces/{NS}/pods")
    web = shown[pod_named(standin, "web")]
    assert web[1:4] == ["2/2", "Running", "0"]
    (ip,) = [p["status"]["podIP"] for p in standin.pods(NS) if p["metadata"]["name"] == pod_named(standin, "web")]
    assert web[5:] == [ip, "kube-standin", "<none>", "<none>"]  # IP, NODE, NOMINATED NODE, READINESS GATES
    crash = shown[pod_named(standin, "crash")]
    assert crash[1:3] == ["0/1", "CrashLoopBackOff"]
    restarts, _, ago = crash[3].partition(" ")
    assert int(restarts) >= 2 and ago.startswith("(") and ago.endswith(" ago)")


def test_a_deleted_pod_is_terminating_until_its_containers_stop(standin: KubeStandIn) -> None:
    standin.add_deployment(NS, "slow", {"app": "slow"}, {"slow": SLOW_TO_STOP})
    name = pod_named(standin, "slow")
    assert get(standin, f"/api/v1/namespaces/{NS}/pods/{name}", method="DELETE")[0] == 200
    assert rows(standin, f"/api/v1/namespaces/{NS}/pods")[name][2] == "Terminating"


def test_services_show_type_cluster_ip_and_ports(standin: KubeStandIn) -> None:
    code, body = get(standin, f"/api/v1/namespaces/{NS}/services")
    assert code == 200
    assert [c["name"] for c in body["columnDefinitions"] if c["priority"] == 0] == [
        "Name",
        "Type",
        "Cluster-IP",
        "External-IP",
        "Port(s)",
        "Age",
    ]
    (row,) = body["rows"]
    assert row["cells"][:5] == ["web", "ClusterIP", "None", "<none>", "80/TCP"]
    assert row["cells"][6] == "app=web"


def test_one_object_is_a_table_of_one_row_and_include_object_sends_it_whole(standin: KubeStandIn) -> None:
    deployment = standin.deployment(NS, "web")
    code, body = get(standin, f"/apis/apps/v1/namespaces/{NS}/deployments/web?includeObject=Object")
    assert code == 200 and body["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]
    (row,) = body["rows"]
    assert (row["object"]["apiVersion"], row["object"]["kind"]) == ("apps/v1", "Deployment")
    assert row["object"]["spec"] == deployment["spec"]
    assert (
        "object" not in get(standin, f"/apis/apps/v1/namespaces/{NS}/deployments/web?includeObject=None")[1]["rows"][0]
    )
    assert get(standin, f"/apis/apps/v1/namespaces/{NS}/deployments/web?includeObject=Everything")[0] == 400


def test_without_a_table_kubectl_gets_the_objects_for_json_yaml_and_jsonpath(standin: KubeStandIn) -> None:
    code, listed = get(standin, f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dweb", accept="application/json")
    assert (code, listed["kind"], listed["apiVersion"]) == (200, "PodList", "v1")
    assert {"metadata", "spec", "status"} <= set(listed["items"][0])
    code, pod = get(
        standin, f"/api/v1/namespaces/{NS}/pods/{pod_named(standin, 'web')}", accept="application/json, */*"
    )
    assert (pod["apiVersion"], pod["kind"], pod["status"]["phase"]) == ("v1", "Pod", "Running")
    code, scale = get(standin, f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale", accept="application/json")
    assert (scale["apiVersion"], scale["kind"], scale["spec"]["replicas"]) == ("autoscaling/v1", "Scale", 2)


def test_the_scale_subresource_has_a_table_too(standin: KubeStandIn) -> None:
    code, body = get(standin, f"/apis/apps/v1/namespaces/{NS}/deployments/web/scale")  # get deploy --subresource=scale
    assert (code, body["kind"]) == (200, "Table")
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Desired", "Available", "Age"]
    assert body["rows"][0]["cells"][:3] == ["web", 2, 2]


def test_discovery_names_events_logs_and_the_scale_subresource(standin: KubeStandIn) -> None:
    core = {r["name"]: r for r in get(standin, "/api/v1", accept="application/json")[1]["resources"]}
    apps = {r["name"]: r for r in get(standin, "/apis/apps/v1", accept="application/json")[1]["resources"]}
    assert (core["events"]["kind"], core["events"]["shortNames"], core["pods/log"]["verbs"]) == (
        "Event",
        ["ev"],
        ["get"],
    )
    scale = apps["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert {"get", "patch", "update"} <= set(scale["verbs"])


def test_namespaces_in_use_are_listed_and_any_namespace_can_be_read(standin: KubeStandIn) -> None:
    assert rows(standin, "/api/v1/namespaces")[NS][1] == "Active"
    code, namespace = get(standin, "/api/v1/namespaces/elsewhere", accept="application/json")
    assert (code, namespace["kind"], namespace["metadata"]["name"]) == (200, "Namespace", "elsewhere")
    # kubectl reads the namespace after a 404, and says `pods "x" not found` only if it exists
    assert (
        get(standin, f"/api/v1/namespaces/{NS}/pods/gone", accept="application/json")[1]["message"]
        == 'pods "gone" not found'
    )


@pytest.mark.parametrize(
    ("accept", "version"),
    [
        (TABLE, "v1"),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", "v1beta1"),
        ("application/json, */*", None),
        ("application/json;as=Table;v=v1;g=other.group", None),
        ("", None),
    ],
)
def test_the_accept_header_decides_between_a_table_and_the_objects(accept: str, version: str | None) -> None:
    assert table_version(accept) == version


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (5, "5s"),
        (119, "119s"),
        (182, "3m2s"),
        (300, "5m"),
        (720, "12m"),
        (5 * 3600 + 180, "5h3m"),
        (20 * 3600, "20h"),
        (2 * 86400 + 3600, "2d1h"),
        (2 * 86400, "2d"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_ages_are_human_durations_as_kubectl_prints_them(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_an_age_counts_from_a_timestamp() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert since((now - timedelta(seconds=182)).strftime("%Y-%m-%dT%H:%M:%SZ"), now) == "3m2s"
    assert since(None, now) == "<unknown>"


def test_selectors_print_sorted_by_key_with_their_operators() -> None:
    selector = {
        "matchLabels": {"tier": "front", "app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert format_selector(selector) == "app=web,env in (dev,prod),!legacy,tier=front"
    assert format_selector({}) == "<none>"
