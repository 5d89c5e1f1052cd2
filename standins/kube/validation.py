"""What the API server checks of an object beyond its schema, worded as its validation words it (`field.Error`s).

A slice of kubernetes `pkg/apis/apps/validation`, `pkg/apis/core/validation` and `pkg/apis/policy/validation`: object
names, a Deployment's selector, template, containers, replicas and strategy, a Service's ports, a PodDisruptionBudget's
spec (a Secret's and a ConfigMap's keys: `standins.kube.secretdata`). Each check gives `Cause`s; a write with any is
refused as 422 `Invalid` (`standins.kube.exceptions.invalid_object`), the schema's missing fields with them.
"""

from __future__ import annotations

import re
from typing import Any

from standins.kube.exceptions import Cause

JSON = dict[str, Any]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_ERROR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_ERROR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
PERCENT_ERROR = (
    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used "
    "for validation is '[0-9]+%')"
)
NEGATIVE = "must be greater than or equal to 0"
IMMUTABLE = "field is immutable"
EVICTION_POLICIES = ("AlwaysAllow", "IfHealthyBudget")


def name_causes(meta: JSON) -> list[Cause]:
    """`metadata.name`: required, an RFC 1123 subdomain of at most 253 characters."""
    name = meta.get("name")
    if not name:
        return [Cause.required("metadata.name", "name or generateName is required")]
    if len(name) > 253:
        return [Cause.invalid("metadata.name", name, "must be no more than 253 characters")]
    if not _DNS_SUBDOMAIN.match(name):
        return [Cause.invalid("metadata.name", name, SUBDOMAIN_ERROR)]
    return []


def _non_negative(spec: JSON, field: str, where: str) -> list[Cause]:
    value = spec.get(field)
    return [Cause.invalid(f"{where}.{field}", value, NEGATIVE)] if isinstance(value, int) and value < 0 else []


def _int_or_percent(value: Any) -> int | None:
    """An int-or-string's number (`25%`: 25), as the validation compares it with 0."""
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return int(value[:-1])
    return value if isinstance(value, int) else None


def _int_or_percent_causes(value: Any, where: str) -> list[Cause]:
    """An int-or-string that must be a non-negative number or a percentage (ValidatePositiveIntOrPercent)."""
    if isinstance(value, str) and _int_or_percent(value) is None:
        return [Cause.invalid(where, value, PERCENT_ERROR)]
    if (_int_or_percent(value) or 0) < 0:
        return [Cause.invalid(where, value, NEGATIVE)]
    return []


def _containers(pod_spec: JSON, where: str) -> list[Cause]:
    containers = pod_spec.get("containers")
    if not containers:
        return [Cause.required(f"{where}.containers")]
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, container in enumerate(containers):
        at = f"{where}.containers[{i}]"
        name = container.get("name")
        if not name:
            causes.append(Cause.required(f"{at}.name"))
        elif name in seen:
            causes.append(Cause.duplicate(f"{at}.name", name))
        elif not _DNS_LABEL.match(name) or len(name) > 63:
            causes.append(Cause.invalid(f"{at}.name", name, LABEL_ERROR))
        seen.add(name or "")
        if not container.get("image"):
            causes.append(Cause.required(f"{at}.image"))
        policy = container.get("imagePullPolicy")
        if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
            causes.append(Cause.not_supported(f"{at}.imagePullPolicy", policy, ["Always", "IfNotPresent", "Never"]))
    return causes


def deployment_causes(obj: JSON, previous: JSON | None = None) -> list[Cause]:
    """A Deployment's field errors beyond its name (ValidateDeployment / ValidateDeploymentUpdate), the defaults
    already set."""
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector:
        causes.append(Cause.required("spec.selector"))
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        causes.append(Cause.invalid("spec.selector", selector, "empty selector is invalid for deployment"))
    elif any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        causes.append(
            Cause.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
        )
    if previous is not None and selector != previous["spec"]["selector"]:
        causes.append(Cause.invalid("spec.selector", selector, IMMUTABLE))
    for field in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        causes += _non_negative(spec, field, "spec")
    deadline, min_ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds", 0)
    if isinstance(deadline, int) and isinstance(min_ready, int) and deadline <= min_ready:
        causes.append(Cause.invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    strategy = spec.get("strategy") or {}
    kind = strategy.get("type")
    if kind not in ("Recreate", "RollingUpdate"):
        causes.append(Cause.not_supported("spec.strategy.type", kind, ["Recreate", "RollingUpdate"]))
    elif kind == "Recreate" and strategy.get("rollingUpdate") is not None:
        causes.append(
            Cause.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
        )
    elif kind == "RollingUpdate":
        rolling = strategy.get("rollingUpdate") or {}
        surge, unavailable = rolling.get("maxSurge"), rolling.get("maxUnavailable")
        for field, value in (("maxSurge", surge), ("maxUnavailable", unavailable)):
            causes += _int_or_percent_causes(value, f"spec.strategy.rollingUpdate.{field}")
        if isinstance(unavailable, str) and (_int_or_percent(unavailable) or 0) > 100:
            where = "spec.strategy.rollingUpdate.maxUnavailable"
            causes.append(Cause.invalid(where, unavailable, "must not be greater than 100%"))
        if _int_or_percent(surge) == 0 and _int_or_percent(unavailable) == 0:
            where = "spec.strategy.rollingUpdate.maxUnavailable"
            causes.append(Cause.invalid(where, unavailable, "may not be 0 when `maxSurge` is 0"))
    pod_spec = template.get("spec") or {}
    causes += _containers(pod_spec, "spec.template.spec")
    restart = pod_spec.get("restartPolicy")
    if restart not in (None, "Always"):
        causes.append(Cause.not_supported("spec.template.spec.restartPolicy", restart, ["Always"]))
    return causes


def service_causes(obj: JSON) -> list[Cause]:
    """A Service's field errors beyond its name: ports (required, in range, unique names)."""
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    ports = spec.get("ports") or []
    if not ports and spec.get("type") != "ExternalName":
        causes.append(Cause.required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            causes.append(Cause.invalid(f"spec.ports[{i}].port", number, "must be between 1 and 65535, inclusive"))
        name = port.get("name", "")
        if len(ports) > 1 and not name:
            causes.append(Cause.required(f"spec.ports[{i}].name"))
        elif name in names:
            causes.append(Cause.duplicate(f"spec.ports[{i}].name", name))
        names.add(name)
    return causes


def selector_causes(selector: JSON | None, where: str) -> list[Cause]:
    """A label selector's expressions (ValidateLabelSelector): a known operator, values for In and NotIn only."""
    causes: list[Cause] = []
    for i, expression in enumerate((selector or {}).get("matchExpressions") or []):
        at, operator, values = f"{where}.matchExpressions[{i}]", expression.get("operator"), expression.get("values")
        if operator in ("In", "NotIn") and not values:
            causes.append(Cause.required(f"{at}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif operator in ("Exists", "DoesNotExist") and values:
            detail = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            causes.append(Cause.forbidden(f"{at}.values", detail))
        elif operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            causes.append(Cause.invalid(f"{at}.operator", operator, "not a valid selector operator"))
    return causes


def disruption_budget_causes(obj: JSON) -> list[Cause]:
    """A PodDisruptionBudget's field errors beyond its name (ValidatePodDisruptionBudgetSpec): `minAvailable` or
    `maxUnavailable`, not both, each a non-negative number or a percentage up to 100%; its selector; the eviction
    policy. (The API server prints the whole spec as a Go struct where this prints it as JSON.)"""
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if "minAvailable" in spec and "maxUnavailable" in spec:
        causes.append(Cause.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    for field in ("minAvailable", "maxUnavailable"):
        value = spec.get(field)
        causes += _int_or_percent_causes(value, f"spec.{field}")
        if isinstance(value, str) and (_int_or_percent(value) or 0) > 100:
            causes.append(Cause.invalid(f"spec.{field}", value, "must not be greater than 100%"))
    causes += selector_causes(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in EVICTION_POLICIES:
        causes.append(Cause.not_supported("spec.unhealthyPodEvictionPolicy", policy, list(EVICTION_POLICIES)))
    return causes
