"""Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`, or a `LabelSelector` object) and the field selectors of
the API server (`metadata.name`, `metadata.namespace`, and the fields it indexes for events and pods)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from standins.kube.exceptions import bad_request

JSON = dict[str, Any]

_LABEL = r"[A-Za-z0-9][A-Za-z0-9._/-]*"
_VALUE = r"[A-Za-z0-9._-]*"
_EQUALITY = re.compile(rf"^(?P<key>{_LABEL})\s*(?P<op>==|!=|=)\s*(?P<value>{_VALUE})$")
_SET = re.compile(rf"^(?P<key>{_LABEL})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EXISTS = re.compile(rf"^(?P<neg>!?)\s*(?P<key>{_LABEL})$")

Selector = Callable[[dict[str, str]], bool]


def _split_requirements(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def _equals(key: str, value: str, negate: bool) -> Selector:
    return lambda labels: (labels.get(key) == value) != negate


def _within(key: str, values: frozenset[str], negate: bool) -> Selector:
    return lambda labels: (labels.get(key) in values) != negate


def _exists(key: str, negate: bool) -> Selector:
    return lambda labels: (key in labels) != negate


def parse_label_selector(text: str) -> list[Selector]:
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h` into predicates over a label map."""
    requirements: list[Selector] = []
    for part in _split_requirements(text):
        if match := _EQUALITY.match(part):
            requirements.append(_equals(match["key"], match["value"], match["op"] == "!="))
        elif match := _SET.match(part):
            values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append(_within(match["key"], values, match["op"] == "notin"))
        elif match := _EXISTS.match(part):
            requirements.append(_exists(match["key"], bool(match["neg"])))
        else:
            raise bad_request(f"unable to parse requirement: {part!r} in selector {text!r}")
    return requirements


def label_selector(selector: JSON) -> list[Selector]:
    """A `LabelSelector` object (`matchLabels`, `matchExpressions`) as predicates; an empty one selects everything."""
    requirements = [_equals(key, value, False) for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        if operator in ("In", "NotIn"):
            requirements.append(_within(key, frozenset(expression.get("values") or []), operator == "NotIn"))
        else:
            requirements.append(_exists(key, operator == "DoesNotExist"))
    return requirements


def matches(requirements: list[Selector], labels: dict[str, str] | None) -> bool:
    return all(requirement(labels or {}) for requirement in requirements)


#: The field labels the API server accepts in a `fieldSelector`, beyond `metadata.name` and `metadata.namespace`.
_FIELD_LABELS = {
    "events": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    "pods": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "status.phase", "status.podIP"}),
}
_FIELD = re.compile(r"^(?P<key>[A-Za-z0-9.]+)\s*(?P<op>==|!=|=)\s*(?P<value>.*)$")


def _field(obj: JSON, label: str) -> str:
    """A field's value as a selector compares it: a missing field is the empty string; `source` is its component."""
    value: Any = obj
    for part in ("source.component" if label == "source" else label).split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_filter(items: list[JSON], selector: str | None, resource: str = "") -> Iterator[JSON]:
    """The objects a field selector (`a=b,c!=d`) matches; 400 for a field label the resource does not support."""
    requirements: list[tuple[str, str, bool]] = []
    for part in _split_requirements(selector or ""):
        match = _FIELD.match(part)
        if match is None:
            raise bad_request(f"invalid selector: {selector!r}; can't understand {part!r}")
        label = match["key"]
        if label not in ("metadata.name", "metadata.namespace") and label not in _FIELD_LABELS.get(resource, ()):
            raise bad_request(f'field label not supported: "{label}"')
        requirements.append((label, match["value"].strip(), match["op"] == "!="))
    for obj in items:
        if all((_field(obj, label) == value) != negate for label, value, negate in requirements):
            yield obj
