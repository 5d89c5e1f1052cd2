"""Pod logs (`GET /api/v1/namespaces/NS/pods/NAME/log`), as the API server and the kubelet answer them.

The current container's output comes from the runtime while it runs; `previous=true` asks for the last exited
instance's, which the kubelet kept (`Container.last_log`) and which is also the answer while no instance runs (a
crash loop), as the kubelet answers. The options:
`container` (required when the pod has several), `tailLines`, `sinceSeconds` / `sinceTime`, `timestamps`
(RFC 3339 with nanoseconds before each line), `limitBytes`, and `follow`: the output so far, then each new line
until the container stops, the pod goes, or the client leaves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from standins.kube.exceptions import bad_request, invalid
from standins.kube.pods import Container, Pod

JSON = dict[str, Any]
FOLLOW_INTERVAL = 0.2  # seconds between two reads of a followed container's output

_WAITING = {
    "ErrImagePull": "image can't be pulled",
    "ImagePullBackOff": "trying and failing to pull image",
}


def _count(query: dict[str, str], name: str, minimum: int) -> int | None:
    text = query.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"{name}: not an integer: {text!r}") from None
    if value < minimum:
        raise invalid(f"PodLogOptions is invalid: {name}: Invalid value: {value}: must be at least {minimum}")
    return value


def _time(stamp: str) -> datetime:
    """An RFC 3339 time (nanoseconds cut to microseconds)."""
    main, _, rest = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{main}.{(rest + '000000')[:6]}+00:00" if rest else f"{main}+00:00")


def _stamp(line: str) -> datetime:
    """When a timestamped log line was written."""
    return _time(line.partition(" ")[0])


def _fixed(stamp: str) -> str:
    """A log timestamp with nine fraction digits, as the kubelet writes them (Docker drops trailing zeros)."""
    main, _, fraction = stamp.rstrip("Z").partition(".")
    return f"{main}.{(fraction + '000000000')[:9]}Z"


@dataclass(frozen=True)
class LogOptions:
    """The query of a log request (`PodLogOptions`)."""

    container: str | None
    follow: bool
    previous: bool
    timestamps: bool
    tail_lines: int | None
    since: datetime | None
    limit_bytes: int | None

    @classmethod
    def parse(cls, query: dict[str, str]) -> LogOptions:
        since_seconds = _count(query, "sinceSeconds", 1)
        since = datetime.now(UTC) - timedelta(seconds=since_seconds) if since_seconds else None
        if "sinceTime" in query:
            if since is not None:
                raise invalid("PodLogOptions is invalid: sinceTime: at most one of `sinceTime` or `sinceSeconds`")
            try:
                since = _time(query["sinceTime"])
            except ValueError:
                raise bad_request(f"sinceTime: not an RFC 3339 time: {query['sinceTime']!r}") from None
        return cls(
            container=query.get("container") or None,
            follow=query.get("follow") in ("true", "1"),
            previous=query.get("previous") in ("true", "1"),
            timestamps=query.get("timestamps") in ("true", "1"),
            tail_lines=_count(query, "tailLines", 0),
            since=since,
            limit_bytes=_count(query, "limitBytes", 1),
        )

    def select(self, lines: list[str]) -> list[str]:
        """The timestamped lines the client asked for (`sinceSeconds`/`sinceTime`, then `tailLines`)."""
        if self.since is not None:
            since = self.since
            lines = [line for line in lines if _stamp(line) >= since]
        if self.tail_lines is not None:
            lines = lines[len(lines) - self.tail_lines :] if self.tail_lines else []
        return lines

    def text(self, lines: list[str]) -> bytes:
        """Timestamped lines as sent: a line each, with the timestamp only if asked for (`timestamps`)."""
        return "".join(
            f"{_fixed(stamp)} {rest}\n" if self.timestamps else f"{rest}\n"
            for stamp, _, rest in (line.partition(" ") for line in lines)
        ).encode()

    def answer(self, lines: list[str]) -> bytes:
        """The log as answered at once: the lines selected, at most `limitBytes` of them."""
        return self.text(self.select(lines))[: self.limit_bytes]


def container_of(pod: Pod, name: str | None) -> Container:
    """The container a log request names, or the pod's only one (400 otherwise, worded as the API server)."""
    if name is None:
        if len(pod.containers) == 1:
            return pod.containers[0]
        names = " ".join(c.name for c in pod.containers)
        raise bad_request(f"a container name must be specified for pod {pod.name}, choose one of: [{names}]")
    found = next((c for c in pod.containers if c.name == name), None)
    if found is None:
        raise bad_request(f"container {name} is not valid for pod {pod.name}")
    return found


def source(pod: Pod, container: Container, previous: bool) -> tuple[str | None, list[str]]:
    """Where the log comes from, as the kubelet chooses (call it holding the backend's lock): the running container's
    ID, whose output the runtime has; or None and the kept output of the last exited instance, for `previous` and
    while no instance runs (a crash loop). 400 when there is none, worded as the kubelet words it."""
    if previous or container.container_id is None:
        if container.last_log is not None:
            return None, container.last_log
        if previous:
            raise bad_request(f'previous terminated container "{container.name}" in pod "{pod.name}" not found')
        reason = (container.state.get("waiting") or {}).get("reason", "ContainerCreating")
        raise bad_request(
            f'container "{container.name}" in pod "{pod.name}" is waiting to start: {_WAITING.get(reason, reason)}'
        )
    return container.container_id, []


def follow(
    read: Callable[[], list[str]], options: LogOptions, still_running: Callable[[], bool]
) -> Generator[bytes, None, None]:
    """The output so far (`read()`: timestamped lines), then new lines as they come, until `still_running()` turns
    false (the container exited and the kubelet has kept its output, or the pod is gone) or `limitBytes` are sent."""
    left = options.limit_bytes
    first, seen = True, None  # the last line read so far
    while left is None or left > 0:
        running = still_running()  # asked before reading, so that a stopped container's last lines are sent
        lines = read()
        if first:
            new = options.select(lines)
        elif seen is None:
            new = lines
        elif seen in lines:
            new = lines[len(lines) - lines[::-1].index(seen) :]
        else:  # more new lines than the runtime keeps
            new = [line for line in lines if _stamp(line) > _stamp(seen)]
        first, seen = False, lines[-1] if lines else seen
        chunk = options.text(new)[:left]
        if left is not None:
            left -= len(chunk)
        if chunk:
            yield chunk
        if not running:
            return
        time.sleep(FOLLOW_INTERVAL)
