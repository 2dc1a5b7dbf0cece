#!/usr/bin/env bash
# Peak memory of `runbook postmortem` (the release binary, measured from outside with
# /usr/bin/time -v) for generated journals of 100 000 and 500 000 events, in the two
# shapes of examples/render_bench.rs: `mixed` (steps of ~50 events: a gated for_each
# over 10 nodes, 10 polls, a note) and `one-step` (one for_each step of EVENTS/2
# operations), plus a journal of one step and N notes. Issue 13 item 3: the
# postmortem streams the journal, so memory must not grow with the events a
# document folds (items past 20, notes past 1 000, polls).
# Usage: scripts/bench-postmortem-rss.sh [EVENTS...]   (default: 100000 500000)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RUNBOOK_BIN:-target/release/runbook}
[ -x "$bin" ] || cargo build --quiet --release
cargo build --quiet --release --example render_bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
measure() { # label state-dir
  local out
  out=$( { /usr/bin/time -v "$bin" --state-dir "$2" postmortem bench >/dev/null; } 2>&1 )
  local rss wall
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' <<<"$out")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' <<<"$out")
  printf '%-28s %8s KiB journal  peak RSS %7d KiB (%5.1f MiB)  wall %s\n' \
    "$1" "$(( $(stat -c %s "$2/runs/bench/journal.ndjson") / 1024 ))" "$rss" "$(echo "$rss/1024" | bc -l)" "$wall"
}
for n in "${@:-100000 500000}"; do
  for n1 in $n; do
    for shape in mixed one-step; do
      d="$work/$shape-$n1"
      RENDER_BENCH_WRITE="$d" target/release/examples/render_bench "$n1" "$([ "$shape" = one-step ] && echo one-step)" >/dev/null
      measure "$shape $n1 events" "$d"
      rm -rf "$d"
    done
    # One step, then N notes.
    d="$work/notes-$n1"
    RENDER_BENCH_WRITE="$d" target/release/examples/render_bench 200 one-step >/dev/null
    python3 - "$d/runs/bench/journal.ndjson" "$n1" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
lines = open(path).read().splitlines()
seq = json.loads(lines[-1])["seq"]
ts = json.loads(lines[-1])["ts"]
with open(path, "a") as f:
    for i in range(n):
        seq += 1
        f.write(json.dumps({"seq": seq, "ts": ts, "event": "note", "text": f"note {i}: the pager went off again, checking the hub", "by": "ana"}) + "\n")
PY
    measure "1 step + $n1 notes" "$d"
    rm -rf "$d"
  done
done
