"""`python -m demo.serve ENV_FILE`: keep the local stand-ins running for a Prefect worker (`make server`).

Writes the ONCOLOGY_* settings that point at them to ENV_FILE, then runs until SIGTERM/SIGINT. Alerts go to a
webhook receiver stand-in that appends each one to .work/server/notifications.jsonl.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from demo.stack import describe_service, local_stack
from standins.webhook import webhook_receiver

MOTO_PORT, STANDIN_PORT = 5050, 8001


def main(env_file: Path) -> int:
    """Run the stand-ins until stopped."""
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    work_dir = Path(".work/server").resolve()
    notifications = work_dir / "notifications.jsonl"
    with local_stack(work_dir, MOTO_PORT, STANDIN_PORT) as stack, webhook_receiver(notifications) as alerts_url:
        stack.env["ONCOLOGY_ALERT_WEBHOOK_URL"] = alerts_url
        stack.stand_ins.append(
            f"Alerts: a webhook receiver STAND-IN at {alerts_url} (in place of Slack/Teams); "
            f"every notification is one JSON line in {notifications}"
        )
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text("".join(f"export {key}={value}\n" for key, value in stack.env.items()))
        sys.stdout.write("".join(f"{line}\n" for line in stack.stand_ins))
        if stack.service_url:
            lines = describe_service(stack.service_url)
            sys.stdout.write(f"{lines[0]} (until make server-down)\n{lines[1]}\n")
        if stack.publish_skipped:
            sys.stdout.write(f"publish will fail until fixed: {stack.publish_skipped}\n")
        sys.stdout.flush()
        stopped.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
