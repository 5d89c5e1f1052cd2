#!/usr/bin/env bash
# Stop what scripts/provision.sh started (registry, dockerd), by the PIDs it recorded.
# Services it did not start (no pid file) are left alone.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICES_DIR="${REPO_DIR}/.work/services"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"

# stop NAME EXPECTED_COMMAND: SIGTERM the recorded PID, wait up to STOP_TIMEOUT s, then SIGKILL.
stop() {
    local name="$1" expected="$2" pidfile="${SERVICES_DIR}/$1.pid" pid
    if [ ! -f "${pidfile}" ]; then
        echo "${name}: not started by provision (no pid file)"
        return
    fi
    pid="$(cat "${pidfile}")"
    # Never signal a recycled PID: the process must still be the one we started.
    if ! kill -0 "${pid}" 2>/dev/null || [ "$(cat "/proc/${pid}/comm" 2>/dev/null)" != "${expected}" ]; then
        echo "${name}: not running (stale pid ${pid})"
        rm -f "${pidfile}"
        return
    fi
    kill -TERM "${pid}"
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "${pid}" 2>/dev/null; do
        if [ "${SECONDS}" -ge "${deadline}" ]; then
            echo "${name}: still running after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
            kill -KILL "${pid}" 2>/dev/null || true
            break
        fi
        sleep 0.5
    done
    rm -f "${pidfile}"
    echo "${name}: stopped (pid ${pid})"
}

stop registry docker-registry
stop dockerd dockerd
