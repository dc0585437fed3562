#!/usr/bin/env bash
# Deploy driftline's flows and automations to a Prefect server (local or remote).
#
#   PREFECT_API_URL=https://prefect.example/api deployments/deploy.sh                 # process pool
#   DRIFTLINE_WORK_POOL=driftline-k8s PREFECT_API_URL=https://prefect.example/api deployments/deploy.sh
#   DRIFTLINE_WORK_POOL=driftline-ecs PREFECT_API_URL=https://prefect.example/api deployments/deploy.sh
#   DRIFTLINE_ALERT_WEBHOOK_URL=https://hooks.slack.com/services/T/B/X DRIFTLINE_ALERT_WEBHOOK_KIND=slack \
#     PREFECT_API_URL=https://prefect.example/api deployments/deploy.sh     # with alerts
#
# Every deployment of prefect.yaml goes to the pool named by DRIFTLINE_WORK_POOL (default driftline-process):
# switching to Kubernetes or ECS is that one setting. A missing pool is created: driftline-k8s and
# driftline-ecs (or any name with DRIFTLINE_WORK_POOL_TYPE=kubernetes|ecs) from the base job template in
# infra/, anything else as a process pool whose worker runs the code from this directory. An existing pool is
# left as it is (update it with `prefect work-pool update NAME --base-job-template FILE`).
# Kubernetes/ECS flow runs find the code in the image built from infra/Dockerfile at /opt/driftline, so the
# deployments are made with DRIFTLINE_PROJECT_DIR=/opt/driftline there (prefect.yaml's pull step).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PREFECT_API_URL:?set PREFECT_API_URL to the Prefect API, e.g. http://127.0.0.1:4250/api}"
export DRIFTLINE_WORK_POOL="${DRIFTLINE_WORK_POOL:-driftline-process}"
POOL="$DRIFTLINE_WORK_POOL"
case "$POOL" in
  driftline-k8s) default_type=kubernetes ;;
  driftline-ecs) default_type=ecs ;;
  *) default_type=process ;;
esac
POOL_TYPE="${DRIFTLINE_WORK_POOL_TYPE:-$default_type}"
case "$POOL_TYPE" in
  process) default_project_dir="$PWD" ;;
  kubernetes|ecs) default_project_dir=/opt/driftline ;;
  *) echo "DRIFTLINE_WORK_POOL_TYPE=$POOL_TYPE: expected process, kubernetes or ecs" >&2; exit 2 ;;
esac
export DRIFTLINE_PROJECT_DIR="${DRIFTLINE_PROJECT_DIR:-$default_project_dir}"
PREFECT="${PREFECT:-.venv/bin/prefect}"
if ! "$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1; then
  if [ "$POOL_TYPE" = process ]; then
    echo "work pool $POOL does not exist; creating a process pool" >&2
    "$PREFECT" work-pool create "$POOL" --type process
  else
    template="infra/$POOL_TYPE/base-job-template.json"
    echo "work pool $POOL does not exist; creating a $POOL_TYPE pool from $template" >&2
    "$PREFECT" work-pool create "$POOL" --type "$POOL_TYPE" --base-job-template "$template"
  fi
fi
"$PREFECT" --no-prompt deploy --all
# Alert automations (deployments/automations/) and their webhook block; with DRIFTLINE_ALERT_WEBHOOK_URL unset this
# removes them, so the server always matches the settings. Run it again whenever the URL or a file changes.
DRIFTLINE_PREFECT_API_URL="${DRIFTLINE_PREFECT_API_URL:-$PREFECT_API_URL}" \
  "${DRIFTLINE:-.venv/bin/driftline}" alerts apply --dir deployments/automations
case "$POOL_TYPE" in
  kubernetes) worker="helm install prefect-worker prefect/prefect-worker -f infra/kubernetes/values.yaml (infra/README.md)" ;;
  *) worker="prefect worker start --pool $POOL" ;;
esac
echo "deployed to $PREFECT_API_URL on pool $POOL ($POOL_TYPE); start a worker with: $worker" >&2
