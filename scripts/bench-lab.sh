#!/usr/bin/env bash
# Benchmark the lab's simulated API server (release build): force-deleting 1 000 pods
# stuck on a lost node one DELETE at a time (lab CPU time, in-process and over TCP;
# target: well under 1 ms each), 1 000 pods listed with a field selector (target: well
# under 50 ms), 50 concurrent clients without errors, and a 10 000-pod scenario with
# capacity that loads, schedules and serves a field-selector list. Figures: docs/lab.md.
# If a kubectl is available ($RUNBOOK_KUBECTL or .venv/bin/kubectl), also times
# `kubectl get pods -A --field-selector` end to end (process start included).
#
# Sizes (environment): PODS=N sets the big scenario's pod count (default 10000; its
# load and 50-client rounds dominate the run on a loaded machine), SKIP_BIG=1 skips
# that part, SKIP_KUBECTL=1 the kubectl timing. Each part prints its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --example lab_bench --example lab_scale --bin runbook
part_start=$(date +%s%N)
part_end() { echo "($1: $(( ($(date +%s%N) - part_start) / 1000000 )) ms wall)"; part_start=$(date +%s%N); }

echo "== lab API server, in-process benchmark (examples/lab_bench.rs) =="
./target/release/examples/lab_bench
part_end "in-process benchmark"

# The lab at 10 000 pods (issue 18): a scenario written like the shipped ones, loaded by
# `runbook lab` (time to its first line, peak RSS), then field-selector lists and
# 50 concurrent clients against one (examples/lab_scale.rs).
PODS=${PODS:-10000}
if [ "${SKIP_BIG:-0}" != 1 ]; then
scale=$(mktemp -d)
python3 scripts/gen-scenario.py "$PODS" >"$scale/big.scenario.yaml"
echo "== runbook lab with $PODS pods ($(du -h "$scale/big.scenario.yaml" | cut -f1) scenario) =="
t0=$(date +%s%N)
./target/release/runbook lab "$scale/big.scenario.yaml" --port 0 >"$scale/out" 2>&1 &
big_pid=$!
for _ in $(seq 1200); do grep -q '^port:' "$scale/out" && break; sleep 0.01; done
t1=$(date +%s%N)
echo "loaded and serving in $(( (t1 - t0) / 1000000 )) ms (process start included), peak RSS $(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$big_pid/status)"
kill "$big_pid"
./target/release/examples/lab_scale "$scale/big.scenario.yaml"
rm -rf "$scale"
part_end "$PODS-pod scenario"
fi

kubectl="${RUNBOOK_KUBECTL:-.venv/bin/kubectl}"
if [ "${SKIP_KUBECTL:-0}" != 1 ] && [ -x "$kubectl" ]; then
  echo "== kubectl $("$kubectl" version --client -o json | grep -m1 gitVersion | tr -d ' ",' | cut -d: -f2) against runbook lab (seed scenario) =="
  tmp=$(mktemp -d)
  ./target/release/runbook lab --port 0 --write-kubeconfig "$tmp/kubeconfig" >"$tmp/out" 2>&1 &
  lab_pid=$!
  trap 'kill "$lab_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
  for _ in $(seq 50); do grep -q '^export KUBECONFIG' "$tmp/out" && break; sleep 0.1; done
  export KUBECONFIG="$tmp/kubeconfig" HOME="$tmp"
  "$kubectl" get pods -A >/dev/null   # fills kubectl's discovery cache
  start=$(date +%s%N)
  for _ in $(seq 20); do
    "$kubectl" get pods -A --field-selector spec.nodeName=gke-prod-a-ssd-pool-32-134a959a-n2sk >/dev/null
  done
  end=$(date +%s%N)
  echo "kubectl get pods -A --field-selector spec.nodeName=...: $(( (end - start) / 20000000 )) ms per call (20 calls, process start included)"
  part_end "kubectl timing"
else
  echo "(no kubectl found: skipped the kubectl timing; run scripts/test.sh once to install it)"
fi
