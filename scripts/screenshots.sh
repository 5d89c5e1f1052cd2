#!/usr/bin/env bash
# Screenshots of the Prefect UI as a person sees it: a finished pipeline run's page, its artifacts tab, the
# train stage's artifacts tab, the rendered pipeline summary, quality gate, deploy and release artifacts, and the
# latest monitor run's artifacts (performance, outcomes), and the drift artifacts of the latest run that found drift.
# PNGs go to docs/.
# Needs `make server` (or any Prefect server at PREFECT_API_URL) and Chromium (`apt-get install -y chromium`).
# Usage: scripts/screenshots.sh [FLOW_RUN_ID]   (default: the latest completed train-test-publish-deploy run)
set -euo pipefail
cd "$(dirname "$0")/.."
api=${PREFECT_API_URL:-http://127.0.0.1:4200/api}
ui=${api%/api}
query() { curl -sf -X POST "$api/$1/filter" -H 'Content-Type: application/json' -d "$2"; }
first() { python3 -c "import json, sys; print(json.load(sys.stdin)[0]['$1'])"; }
run_id=${1:-$(query flow_runs '{"flows": {"name": {"any_": ["train-test-publish-deploy"]}},
  "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "sort": "END_TIME_DESC", "limit": 1}' | first id)}
name=$(curl -sf "$api/flow_runs/$run_id" | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])')
version=${name#train-test-publish-deploy-}
stage_run() { query flow_runs "{\"flow_runs\": {\"name\": {\"any_\": [\"pipeline-$1-$version\"]}}, \"limit\": 1}" | first id; }
artifact() {  # key, flow run ids: the newest artifact with that key made by one of those runs
  local key=$1 ids
  shift
  ids=$(printf '"%s",' "$@")
  query artifacts "{\"artifacts\": {\"flow_run_id\": {\"any_\": [${ids%,}]}, \"key\": {\"any_\": [\"$key\"]}},
    \"sort\": \"CREATED_DESC\", \"limit\": 1}" | first id
}
train_id=$(stage_run train)
deploy_id=$(stage_run deploy)
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
shoot() {  # png, url
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
    --window-size=1600,1100 --virtual-time-budget=20000 --screenshot="$1" "$2" 2>/dev/null
  echo "$1: $2"
}
mkdir -p docs
# The classic UI drops a ?tab= that arrives before the run has loaded; the v2 UI honours it.
shoot docs/prefect-flow-run.png "$ui/runs/flow-run/$run_id"
shoot docs/prefect-flow-run-artifacts.png "$ui/v2/runs/flow-run/$run_id?tab=Artifacts"
shoot docs/prefect-train-run-artifacts.png "$ui/v2/runs/flow-run/$train_id?tab=Artifacts"
shoot docs/prefect-pipeline-summary.png "$ui/artifacts/artifact/$(artifact pipeline-summary "$run_id")"
shoot docs/prefect-gate-artifact.png "$ui/artifacts/artifact/$(artifact quality-gate "$train_id")"
shoot docs/prefect-deploy-artifact.png "$ui/artifacts/artifact/$(artifact deploy "$deploy_id")"
shoot docs/prefect-release-artifact.png "$ui/artifacts/artifact/$(artifact release "$run_id" "$train_id" "$deploy_id")"
# The latest completed monitor run: its artifacts tab and its performance and outcomes artifacts.
monitor_id=$(query flow_runs '{"flows": {"name": {"any_": ["monitor"]}},
  "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "sort": "END_TIME_DESC", "limit": 1}' | first id)
shoot docs/prefect-monitor-artifacts.png "$ui/v2/runs/flow-run/$monitor_id?tab=Artifacts"
shoot docs/prefect-performance-artifact.png "$ui/artifacts/artifact/$(artifact performance "$monitor_id")"
shoot docs/prefect-outcomes-artifact.png "$ui/artifacts/artifact/$(artifact outcomes "$monitor_id")"
# The latest monitor run that found drift: its drift table, its chart artifact and the chart itself.
read -r drift_run chart_id chart_url < <(query artifacts '{"artifacts": {"key": {"any_": ["drift-chart"]}},
  "sort": "CREATED_DESC", "limit": 50}' | python3 -c '
import json, sys
found = [a for a in json.load(sys.stdin) if "(drift:" in (a["description"] or "")]
print(*((found[0]["flow_run_id"], found[0]["id"], found[0]["data"]) if found else ("-", "-", "-")))')
if [ "$drift_run" != "-" ]; then
  shoot docs/prefect-drift-artifact.png "$ui/artifacts/artifact/$(artifact drift "$drift_run")"
  shoot docs/prefect-drift-chart-artifact.png "$ui/artifacts/artifact/$chart_id"
  shoot docs/drift-chart.png "$chart_url"
else
  echo "no monitor run has found drift yet: no drift screenshots (see README, the drift watch)"
fi
