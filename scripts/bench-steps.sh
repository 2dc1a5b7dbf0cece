#!/usr/bin/env bash
# End-to-end benchmark (issue 18): a runbook of STEPS (20 000) steps, generated here,
# linted and run by the release binary the way a user does it (process start, lint,
# journal on disk in a state folder under $TMPDIR). Each step is a `true` check, so
# the run's time is the engine's per-step cost plus one process spawn per step.
# Prints wall time, CPU time (user + sys, children included) and peak RSS of
# `runbook lint` and of `runbook run`, ROUNDS times (median printed last).
#
# Also checks the limit a bigger runbook reaches: a runbook of BIG_STEPS (200 000)
# steps is over the input-size limit, and `runbook lint` must say so, naming the
# limit and the variable that raises it (it is not an anchors-and-aliases budget).
#
#   scripts/bench-steps.sh                   # STEPS=20000 ROUNDS=1 BIG_STEPS=200000
#   RUNBOOK_BIN=target/release/runbook STEPS=5000 ROUNDS=3 scripts/bench-steps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-20000}
ROUNDS=${ROUNDS:-1}
BIG_STEPS=${BIG_STEPS:-200000}
if [ -z "${RUNBOOK_BIN:-}" ]; then
  cargo build --release --quiet --bin runbook
fi
bin=$(realpath "${RUNBOOK_BIN:-./target/release/runbook}")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gen() { # N FILE
  python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write(f"version: 1\nname: steps-{n}\ntitle: A runbook of {n} steps\nsteps:\n")
    for i in range(n):
        f.write(f"  - check: Step {i}\n    id: s{i}\n    shell: {{ argv: [\"true\"] }}\n")
PY
}

gen "$STEPS" "$tmp/steps.yaml"
echo "runbook of $STEPS steps: $(stat -c %s "$tmp/steps.yaml") bytes; load average $(cut -d' ' -f1-3 /proc/loadavg)"

measure() { # LABEL CMD...
  local label=$1
  shift
  /usr/bin/time -o "$tmp/time" -f '%e %U %S %M' "$@" >/dev/null 2>"$tmp/err" || {
    cat "$tmp/err" >&2
    echo "$label failed" >&2
    exit 1
  }
  read -r wall user sys rss <"$tmp/time"
  printf '%-6s wall %7.2f s  cpu %7.2f s  peak RSS %6.0f MiB\n' "$label" "$wall" \
    "$(echo "$user + $sys" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
}

for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  measure lint "$bin" lint "$tmp/steps.yaml"
  rm -rf "$tmp/state"
  measure run "$bin" --state-dir "$tmp/state" run "$tmp/steps.yaml" --yes -q
  lines=$(cat "$tmp"/state/runs/*/journal.ndjson | wc -l)
  [ "$lines" -eq $((STEPS * 4 + 2)) ] || {
    echo "journal has $lines lines, expected $((STEPS * 4 + 2))" >&2
    exit 1
  }
done

gen "$BIG_STEPS" "$tmp/big.yaml"
if "$bin" lint "$tmp/big.yaml" >"$tmp/big.out" 2>&1; then
  echo "a runbook of $BIG_STEPS steps ($(stat -c %s "$tmp/big.yaml") bytes) passed lint: no limit reached"
else
  echo "a runbook of $BIG_STEPS steps ($(stat -c %s "$tmp/big.yaml") bytes) is refused:"
  sed 's/^/  /' "$tmp/big.out"
  grep -q 'RUNBOOK_MAX_INPUT_BYTES' "$tmp/big.out" || {
    echo "the message does not name the limit's variable" >&2
    exit 1
  }
fi
