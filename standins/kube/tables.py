"""`meta.k8s.io/v1` Table answers, the columns and cells `kubectl get` prints, as the API server builds them.

The API server's printers (kubernetes `pkg/printers/internalversion/printers.go`) are followed column by column: it
always fills the wide (`priority: 1`) cells, and kubectl shows them with `-o wide`. Ages are `HumanDuration`s
(`k8s.io/apimachinery/pkg/util/duration`) of the time since a timestamp.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from standins.kube.exceptions import bad_request

JSON = dict[str, Any]
Cells = list[Any]

_TABLE_GROUP = "meta.k8s.io"
_TABLE_VERSIONS = ("v1", "v1beta1")


def table_version(accept: str) -> str | None:
    """The version of the Table an `Accept` header asks for first (`v1`, `v1beta1`), or None for plain objects."""
    for media in accept.split(","):
        kind, *parameters = (part.strip() for part in media.split(";"))
        params = dict(p.partition("=")[::2] for p in parameters)
        if kind in ("application/json", "*/*") and params.get("as") != "Table":
            return None  # a plain object is preferred to what follows
        if params.get("as") == "Table" and params.get("g") == _TABLE_GROUP and params.get("v") in _TABLE_VERSIONS:
            return params["v"]
    return None


def human_duration(seconds: float) -> str:
    """Go's `duration.HumanDuration`: ~2-3 significant figures ("5s", "3m2s", "12m", "5h3m", "2d", "3y")."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m{whole % 60}s" if whole % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def since(timestamp: str | None, now: datetime | None = None) -> str:
    """`translateTimestampSince`: the human duration from an API timestamp to now, `<unknown>` without one."""
    if not timestamp:
        return "<unknown>"
    when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return human_duration(((now or datetime.now(UTC)) - when).total_seconds())


def format_labels(labels: dict[str, str] | None) -> str:
    """`labels.FormatLabels`: `k=v` sorted by key, joined by commas; `<none>` when empty."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def format_selector(selector: JSON | None) -> str:
    """`metav1.FormatLabelSelector`: a label selector as a selector string, sorted by key; `<none>` when empty."""
    requirements = [(key, f"{key}={value}") for key, value in ((selector or {}).get("matchLabels") or {}).items()]
    for expression in (selector or {}).get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], sorted(expression.get("values") or [])
        text = {
            "In": f"{key} in ({','.join(values)})",
            "NotIn": f"{key} notin ({','.join(values)})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(operator, "<error>")
        requirements.append((key, text))
    return ",".join(text for _, text in sorted(requirements)) or "<none>"


def _containers(template_spec: JSON) -> tuple[str, str]:
    """`layoutContainerCells`: the containers' names and images, each joined by commas."""
    containers = template_spec.get("containers") or []
    return ",".join(c["name"] for c in containers), ",".join(c["image"] for c in containers)


def _column(name: str, kind: str, description: str, priority: int = 0, fmt: str = "") -> JSON:
    return {"name": name, "type": kind, "format": fmt, "description": description, "priority": priority}


_NAME = _column("Name", "string", "Name must be unique within a namespace.", fmt="name")
_AGE = _column(
    "Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created."
)
_WIDE_CONTAINERS = [
    _column("Containers", "string", "Names of each container in the template.", 1),
    _column("Images", "string", "Images referenced by each container in the template.", 1),
    _column("Selector", "string", "Label query over pods that should match the replica count.", 1),
]


def _deployment(obj: JSON) -> Cells:
    spec, status = obj["spec"], obj.get("status") or {}
    names, images = _containers(spec["template"]["spec"])
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        since(obj["metadata"].get("creationTimestamp")),
        names,
        images,
        format_selector(spec.get("selector")),
    ]


def _replicaset(obj: JSON) -> Cells:
    spec, status = obj["spec"], obj.get("status") or {}
    names, images = _containers(spec["template"]["spec"])
    return [
        obj["metadata"]["name"],
        spec.get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        since(obj["metadata"].get("creationTimestamp")),
        names,
        images,
        format_selector(spec.get("selector")),
    ]


def _pod_status(pod: JSON) -> tuple[str, int, int, str | None]:
    """`printPod` for pods without init containers: the STATUS reason, the ready containers, the restarts and the
    latest restart's `finishedAt` (None without a restart)."""
    status = pod.get("status") or {}
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    ready = restarts = 0
    last_restart: str | None = None
    has_running = False
    for container in reversed(status.get("containerStatuses") or []):
        restarts += int(container.get("restartCount", 0))
        finished = ((container.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        if finished and (last_restart is None or finished > last_restart):
            last_restart = finished
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated")
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated is not None and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated is not None:
            signal = terminated.get("signal")
            reason = f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode', 0)}"
        elif container.get("ready") and "running" in state:
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        conditions = status.get("conditions") or []
        ready_condition = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        reason = "Running" if ready_condition else "NotReady"
    if pod["metadata"].get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, restarts, last_restart


def _pod(obj: JSON) -> Cells:
    reason, ready, restarts, last_restart = _pod_status(obj)
    restarts_text = f"{restarts} ({since(last_restart)} ago)" if restarts and last_restart else str(restarts)
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
        gates_text = f"{sum(g.get('conditionType') in true for g in gates)}/{len(gates)}"
    ips = status.get("podIPs") or []
    return [
        obj["metadata"]["name"],
        f"{ready}/{len(spec.get('containers') or [])}",
        reason,
        restarts_text,
        since(obj["metadata"].get("creationTimestamp")),
        (ips[0].get("ip") if ips else None) or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]


def _external_ip(spec: JSON, status: JSON) -> str:
    """`getServiceExternalIP`, for the wide output (load balancer addresses not clipped)."""
    external = list(spec.get("externalIPs") or [])
    kind = spec.get("type", "ClusterIP")
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        ingress = (status.get("loadBalancer") or {}).get("ingress") or []
        balancers = sorted({i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")})
        return ",".join([*balancers, *external]) or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def _service(obj: JSON) -> Cells:
    spec = obj.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = ",".join(
        f"{p['port']}:{p['nodePort']}/{p.get('protocol', 'TCP')}"
        if p.get("nodePort")
        else f"{p['port']}/{p['protocol']}"
        for p in spec.get("ports") or []
    )
    return [
        obj["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        cluster_ips[0] if cluster_ips else "<none>",
        _external_ip(spec, obj.get("status") or {}),
        ports or "<none>",
        since(obj["metadata"].get("creationTimestamp")),
        format_labels(spec.get("selector")),
    ]


def _secret(obj: JSON) -> Cells:
    return [
        obj["metadata"]["name"],
        obj.get("type", "Opaque"),
        len(obj.get("data") or {}),
        since(obj["metadata"].get("creationTimestamp")),
    ]


def _configmap(obj: JSON) -> Cells:
    data = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [obj["metadata"]["name"], data, since(obj["metadata"].get("creationTimestamp"))]


def _serviceaccount(obj: JSON) -> Cells:
    return [obj["metadata"]["name"], len(obj.get("secrets") or []), since(obj["metadata"].get("creationTimestamp"))]


def _disruption_budget(obj: JSON) -> Cells:
    spec = obj.get("spec") or {}
    return [
        obj["metadata"]["name"],
        str(spec.get("minAvailable", "N/A")),
        str(spec.get("maxUnavailable", "N/A")),
        (obj.get("status") or {}).get("disruptionsAllowed", 0),
        since(obj["metadata"].get("creationTimestamp")),
    ]


def _event(obj: JSON) -> Cells:
    first = since(obj.get("firstTimestamp") or obj.get("eventTime"))
    last = since(obj["lastTimestamp"]) if obj.get("lastTimestamp") else first
    involved, source = obj.get("involvedObject") or {}, obj.get("source") or {}
    target = involved.get("kind", "").lower()
    if involved.get("name"):
        target = f"{target}/{involved['name']}"
    component = source.get("component") or obj.get("reportingComponent", "")
    host = source.get("host") or obj.get("reportingInstance", "")
    return [
        last,
        obj.get("type", ""),
        obj.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        f"{component}, {host}" if host else component,
        (obj.get("message") or "").strip(),
        first,
        obj.get("count") or 1,
        obj["metadata"]["name"],
    ]


def _scale(obj: JSON) -> Cells:
    return [
        obj["metadata"]["name"],
        obj["spec"]["replicas"],
        obj["status"]["replicas"],
        since(obj["metadata"].get("creationTimestamp")),
    ]


def _namespace(obj: JSON) -> Cells:
    return [obj["metadata"]["name"], obj["status"]["phase"], since(obj["metadata"].get("creationTimestamp"))]


_PRINTERS: dict[str, tuple[list[JSON], Callable[[JSON], Cells]]] = {
    "deployments": (
        [
            _NAME,
            _column("Ready", "string", "Number of the pod with ready state"),
            _column(
                "Up-to-date",
                "string",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            _column(
                "Available",
                "string",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            _AGE,
            *_WIDE_CONTAINERS,
        ],
        _deployment,
    ),
    "replicasets": (
        [
            _NAME,
            _column("Desired", "integer", "Replicas is the number of desired replicas."),
            _column("Current", "integer", "Replicas is the most recently observed number of replicas."),
            _column("Ready", "integer", "The number of ready replicas for this replica set."),
            _AGE,
            *_WIDE_CONTAINERS,
        ],
        _replicaset,
    ),
    "pods": (
        [
            _NAME,
            _column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            _column("Status", "string", "The aggregate status of the containers in this pod."),
            _column(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and "
                "when the last container in this pod has restarted.",
            ),
            _AGE,
            _column("IP", "string", "podIP address allocated to the pod.", 1),
            _column("Node", "string", "NodeName is a request to schedule this pod onto a specific node.", 1),
            _column("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods.", 1),
            _column(
                "Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.", 1
            ),
        ],
        _pod,
    ),
    "services": (
        [
            _NAME,
            _column("Type", "string", "type determines how the Service is exposed."),
            _column("Cluster-IP", "string", "clusterIP is the IP address of the service."),
            _column(
                "External-IP",
                "string",
                "externalIPs is a list of IP addresses for which nodes in the cluster "
                "will also accept traffic for this service.",
            ),
            _column("Port(s)", "string", "The list of ports that are exposed by this service."),
            _AGE,
            _column(
                "Selector",
                "string",
                "Route service traffic to pods with label keys and values matching this selector.",
                1,
            ),
        ],
        _service,
    ),
    "secrets": (
        [
            _NAME,
            _column("Type", "string", "Used to facilitate programmatic handling of secret data."),
            _column("Data", "string", "Data contains the secret data."),
            _AGE,
        ],
        _secret,
    ),
    "configmaps": (
        [
            _NAME,
            _column("Data", "string", "Data contains the configuration data."),
            _AGE,
        ],
        _configmap,
    ),
    "serviceaccounts": (
        [
            _NAME,
            _column(
                "Secrets",
                "string",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount "
                "are allowed to use.",
            ),
            _AGE,
        ],
        _serviceaccount,
    ),
    "poddisruptionbudgets": (
        [
            _NAME,
            _column("Min Available", "string", "The minimum number of pods that must be available."),
            _column("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
            _column("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
            _AGE,
        ],
        _disruption_budget,
    ),
    "deployments/scale": (
        [
            _column("Name", "string", "Name must be unique within a namespace."),
            _column("Desired", "integer", "desired number of instances for the scaled object."),
            _column("Available", "integer", "actual number of observed instances of the scaled object."),
            _AGE,
        ],
        _scale,
    ),
    "namespaces": ([_NAME, _column("Status", "string", "The status of the namespace"), _AGE], _namespace),
    "events": (
        [
            _column("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
            _column("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
            _column(
                "Reason",
                "string",
                "This should be a short, machine understandable string that gives the reason "
                "for the transition into the object's current status.",
            ),
            _column("Object", "string", "The object that this event is about."),
            _column("Subobject", "string", "The field of the object the event is about, e.g. a container.", 1),
            _column("Source", "string", "The component reporting this event.", 1),
            _column("Message", "string", "A human-readable description of the status of this operation."),
            _column("First Seen", "string", "The time at which the event was first recorded.", 1),
            _column("Count", "string", "The number of times this event has occurred.", 1),
            _column("Name", "string", "Name must be unique within a namespace.", 1, "name"),
        ],
        _event,
    ),
}


def _row_object(obj: JSON, include: str, api_version: str, kind: str) -> JSON | None:
    if include == "None":
        return None
    if include == "Object":
        return {"apiVersion": api_version, "kind": kind, **copy.deepcopy(obj)}
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": copy.deepcopy(obj["metadata"]),
    }


def table(
    resource: str,
    objects: list[JSON],
    *,
    resource_version: str,
    api_version: str,
    kind: str,
    version: str = "v1",
    include_object: str | None = None,
) -> JSON:
    """The Table of `objects` of one resource: every column (wide ones with priority 1) and one row per object, whose
    `object` is as `includeObject` asks (`Metadata`: PartialObjectMetadata, the default; `Object`; `None`)."""
    include = include_object or "Metadata"
    if include not in ("None", "Metadata", "Object"):
        raise bad_request(
            f'includeObject: Unsupported value: "{include}": supported values: "Metadata", "None", "Object"'
        )
    columns, cells = _PRINTERS[resource]
    rows = []
    for obj in objects:
        row: JSON = {"cells": cells(obj)}
        row_object = _row_object(obj, include, api_version, kind)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"{_TABLE_GROUP}/{version}",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": copy.deepcopy(columns),
        "rows": rows,
    }
