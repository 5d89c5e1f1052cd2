"""Injected API failures for tests: the next N matching requests answer an error, before or after taking effect."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class FailureRule:
    """Fail `count` requests with `method` ("*" = any) whose path contains `path_contains`, after `after` pass."""

    method: str
    count: int
    status: int
    after: int
    path_contains: str | None
    applied: bool

    def matches(self, method: str, path: str) -> bool:
        return self.method in (method, "*") and (self.path_contains is None or self.path_contains in path)


class Faults:
    """The rules in force, consumed as requests arrive."""

    def __init__(self) -> None:
        self._rules: list[FailureRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FailureRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def take(self, method: str, path: str) -> FailureRule | None:
        """The rule that fails this request, if any (its count goes down)."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    if rule.after > 0:
                        rule.after -= 1
                        return None
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                    return rule
        return None
