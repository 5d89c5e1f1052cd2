#!/usr/bin/env bash
# `make server`: the local stand-ins, a Prefect server with its UI, a process worker, every deployment of
# prefect.yaml applied, and the alert automations (`python -m alerts`) sending to a local webhook receiver, so
# that nightly-style runs can be started and watched in the UI. Stop everything with `make server-down`.
set -euo pipefail
cd "$(dirname "$0")/.."
read -ra UV_CMD <<<"${UV:-uv}"  # make passes the uv it found (`uv` or `python3 -m uv`)
# An absolute path, so that the commands printed below also work in a shell whose PATH lacks ~/.local/bin.
UV_CMD[0]=$(command -v "${UV_CMD[0]}") || { echo "${UV:-uv}: not found; run \`make install\`" >&2; exit 1; }
RUN=("${UV_CMD[@]}" run --frozen --all-extras)
HINT="${UV_CMD[*]} run --project $PWD --frozen --all-extras"  # the same, from any directory
state=.work/server
mkdir -p "$state"
export ONCOLOGY_PROJECT_DIR="$PWD"
export PREFECT_HOME="$PWD/.work/prefect"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_API_URL=http://127.0.0.1:4200/api
# Flow runs (the worker's children, nested stage runs included) send a heartbeat this often (s; Prefect's minimum 30,
# default 180); `python -m alerts` below reads the same variable and marks a run that missed three Crashed.
export PREFECT_FLOWS_HEARTBEAT_FREQUENCY="${PREFECT_FLOWS_HEARTBEAT_FREQUENCY:-30}"

alive() {  # name: its pid file names a live process
  [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null
}

start() {  # name, command...: start in the background unless its pid file names a live process
  local name=$1; shift
  if alive "$name"; then
    echo "$name: already running (pid $(cat "$state/$name.pid"))"; return
  fi
  nohup "$@" >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
  echo "$name: started (pid $!, log $state/$name.log)"
}

wait_for() {  # what, seconds, command...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "$what did not come up in ${seconds} s; see $state/*.log" >&2; exit 1
}

alive stand-ins || rm -f "$state/stack.env"  # running stand-ins keep theirs (they write it once)
start stand-ins "${RUN[@]}" python -m demo.serve "$state/stack.env"
wait_for "the local stand-ins" 60 test -s "$state/stack.env"
start prefect-server "${RUN[@]}" prefect server start --host 127.0.0.1 --port 4200
wait_for "the Prefect server" 60 curl -sf "$PREFECT_API_URL/health"

"${RUN[@]}" prefect work-pool inspect local >/dev/null 2>&1 || "${RUN[@]}" prefect work-pool create local --type process
"${RUN[@]}" prefect global-concurrency-limit inspect deploy >/dev/null 2>&1 \
  || "${RUN[@]}" prefect global-concurrency-limit create deploy --limit 1
"${RUN[@]}" prefect global-concurrency-limit inspect model-registry >/dev/null 2>&1 \
  || "${RUN[@]}" prefect global-concurrency-limit create model-registry --limit 1
# shellcheck disable=SC1091
source "$state/stack.env"
# A worker left running keeps the heartbeat frequency it started with; the alerts' window must fit it.
beat="PREFECT_FLOWS_HEARTBEAT_FREQUENCY=$PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
if alive worker && ! tr '\0' '\n' <"/proc/$(cat "$state/worker.pid")/environ" | grep -qx "$beat"; then
  echo "worker: running without $beat (its live runs would be marked Crashed); run \`make server-down\` first" >&2
  exit 1
fi
start worker "${RUN[@]}" prefect worker start --pool local
"${RUN[@]}" prefect --no-prompt deploy --all
# The alerts: a failed/crashed/timed-out pipeline run, a nightly not Completed in time -> ONCOLOGY_ALERT_WEBHOOK_URL
# (the receiver of stack.env); a run without heartbeats -> Crashed. Idempotent: automations are replaced by name.
alerts=$("${RUN[@]}" python -m alerts) || { echo "python -m alerts failed (see above)" >&2; exit 1; }

echo
echo "Stand-ins (log: $state/stand-ins.log):"
grep -vE '^[0-9.]+ - - \[' "$state/stand-ins.log" | sed 's/^/  /'  # without moto's access log
cat <<TEXT

$alerts

Prefect UI:   http://127.0.0.1:4200   (nightly schedule: 02:00 Europe/Berlin)
Run now:      PREFECT_API_URL=$PREFECT_API_URL $HINT prefect deployment run 'train-test-publish-deploy/nightly'
              PREFECT_API_URL=$PREFECT_API_URL $HINT prefect deployment run 'train/on-demand'
Alerts:       PREFECT_API_URL=$PREFECT_API_URL $HINT prefect automation ls
              tail -f $PWD/$state/notifications.jsonl
Stop:         make server-down
TEXT
