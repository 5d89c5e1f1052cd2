"""Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) and the metadata field selectors of the API server."""

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


def matches(requirements: list[Selector], labels: dict[str, str] | None) -> bool:
    return all(requirement(labels or {}) for requirement in requirements)


def field_filter(items: list[JSON], selector: str | None) -> Iterator[JSON]:
    wanted: dict[str, str] = {}
    for part in _split_requirements(selector or ""):
        key, _, value = part.partition("=")
        if key.rstrip("=") not in ("metadata.name", "metadata.namespace"):
            raise bad_request(f'field label not supported: "{key}"')
        wanted[key.rstrip("=").split(".")[1]] = value.lstrip("=")
    for obj in items:
        if all(obj["metadata"].get(k) == v for k, v in wanted.items()):
            yield obj
