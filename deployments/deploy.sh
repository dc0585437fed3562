#!/usr/bin/env bash
# Deploy driftline's flows and automations to a Prefect server (local or remote).
#
#   PREFECT_API_URL=https://prefect.example/api deployments/deploy.sh
#   DRIFTLINE_ALERT_WEBHOOK_URL=https://hooks.slack.com/services/T/B/X DRIFTLINE_ALERT_WEBHOOK_KIND=slack \
#     PREFECT_API_URL=https://prefect.example/api deployments/deploy.sh     # with alerts
#
# Deployments come from prefect.yaml (work pool alias in its `definitions:`). Code is pulled from this
# directory on the worker's machine (DRIFTLINE_PROJECT_DIR); for Kubernetes/ECS pools, build an image
# containing this project and set the pool's job variables (see README, "Environments").
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PREFECT_API_URL:?set PREFECT_API_URL to the Prefect API, e.g. http://127.0.0.1:4250/api}"
POOL="${DRIFTLINE_WORK_POOL:-driftline-process}"
export DRIFTLINE_PROJECT_DIR="${DRIFTLINE_PROJECT_DIR:-$PWD}"
PREFECT="${PREFECT:-.venv/bin/prefect}"
if ! "$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1; then
  echo "work pool $POOL does not exist; creating a process pool (create a kubernetes/ecs one yourself for those)" >&2
  "$PREFECT" work-pool create "$POOL" --type process
fi
"$PREFECT" --no-prompt deploy --all
# Alert automations (deployments/automations/) and their webhook block; with DRIFTLINE_ALERT_WEBHOOK_URL unset this
# removes them, so the server always matches the settings. Run it again whenever the URL or a file changes.
DRIFTLINE_PREFECT_API_URL="${DRIFTLINE_PREFECT_API_URL:-$PREFECT_API_URL}" \
  "${DRIFTLINE:-.venv/bin/driftline}" alerts apply --dir deployments/automations
echo "deployed to $PREFECT_API_URL; start a worker with: prefect worker start --pool $POOL" >&2
