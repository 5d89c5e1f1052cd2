#!/usr/bin/env bash
# `make server-down`: stop what `make server` started (worker first; a worker may ignore one SIGTERM for 20 s).
set -uo pipefail
cd "$(dirname "$0")/.."
state=.work/server
for name in worker prefect-server stand-ins; do
  pidfile="$state/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    pkill -TERM -P "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 25); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && { pkill -KILL -P "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null; }
    echo "$name: stopped"
  fi
  rm -f "$pidfile"
done
