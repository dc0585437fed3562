#!/usr/bin/env bash
# Deploy driftline's flows and automations to a Prefect server (local or remote).
#
#   PREFECT_API_URL=https://prefect.example/api deployments/deploy.sh
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
echo "deployed to $PREFECT_API_URL; start a worker with: prefect worker start --pool $POOL" >&2
