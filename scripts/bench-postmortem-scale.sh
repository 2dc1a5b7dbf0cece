#!/usr/bin/env bash
# End to end (issue 18): `runbook postmortem` of real journals, written by `runbook run`
# of generated runbooks (process start, lint, journal on disk), timed from outside:
#
#   tiny     a runbook of one `echo` check: the constant (what any postmortem costs)
#   steps    STEPS (2 500) `echo` checks: 4 events a step, 10 002 events
#   one-step one `check` with `for_each` over ITEMS (50 000) items (`true`, CONCURRENCY
#            at once): 2 events an item, ~100 000 events in one step
#
# For each: the journal's size, then ROUNDS (3) renders of `runbook postmortem last -o
# FILE` with `/usr/bin/time -f '%e %U %S %M'` (wall, user, sys, peak RSS), and the
# ratio of the peak RSS above the tiny run's to the journal's size (issue 18's target:
# under 3× the journal plus a constant; 10 000 events under 0.3 s; 100 000 events in
# one step under 1 s and 200 MiB).
#
#   scripts/bench-postmortem-scale.sh
#   RUNBOOK_BIN=target/release/runbook STEPS=2500 ITEMS=50000 ROUNDS=3 scripts/bench-postmortem-scale.sh
#   SHAPES="tiny steps" scripts/bench-postmortem-scale.sh     # skip the 50 000-item run
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-2500}
ITEMS=${ITEMS:-50000}
CONCURRENCY=${CONCURRENCY:-8}
ROUNDS=${ROUNDS:-3}
SHAPES=${SHAPES:-tiny steps one-step}
if [ -z "${RUNBOOK_BIN:-}" ]; then
  cargo build --release --quiet --bin runbook
fi
bin=$(realpath "${RUNBOOK_BIN:-./target/release/runbook}")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gen() { # SHAPE FILE
  python3 - "$1" "$2" "$STEPS" "$ITEMS" "$CONCURRENCY" <<'PY'
import sys
shape, path, steps, items, conc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
with open(path, "w") as f:
    f.write(f"version: 1\nname: pm-{shape}\ntitle: A postmortem benchmark ({shape})\nsteps:\n")
    if shape == "tiny":
        f.write('  - check: Step 0\n    id: s0\n    shell: { argv: ["echo", "step 0"] }\n')
    elif shape == "steps":
        for i in range(steps):
            f.write(f'  - check: Step {i}\n    id: s{i}\n    shell: {{ argv: ["echo", "step {i}"] }}\n')
    else:
        f.write(f'  - check: The items\n    id: items\n    shell: {{ argv: ["seq", "1", "{items}"] }}\n    save: items\n')
        f.write("  - check: Every item\n    id: every\n"
                r"""    for_each: 'items.stdout.trim().split("\n")'""" "\n"
                f"    concurrency: {conc}\n"
                '    shell: { argv: ["true", "{{item}}"] }\n')
PY
}

echo "runbook postmortem, end to end: $bin"
echo "date $(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
base_kib=""
for shape in $SHAPES; do
  gen "$shape" "$tmp/$shape.yaml"
  state="$tmp/state-$shape"
  if ! "$bin" --state-dir "$state" run "$tmp/$shape.yaml" --yes -q >/dev/null 2>"$tmp/run.err"; then
    cat "$tmp/run.err" >&2
    echo "runbook run of the $shape runbook failed" >&2
    exit 1
  fi
  journal=$(echo "$state"/runs/*/journal.ndjson)
  bytes=$(stat -c %s "$journal")
  events=$(wc -l <"$journal")
  printf '%-8s journal %7d events %9d bytes (%.2f MB)\n' "$shape" "$events" "$bytes" "$(echo "$bytes / 1000000" | bc -l)"
  for round in $(seq "$ROUNDS"); do
    rm -f "$tmp/pm.md"
    /usr/bin/time -o "$tmp/time" -f '%e %U %S %M' \
      "$bin" --state-dir "$state" postmortem last -o "$tmp/pm.md" >/dev/null 2>"$tmp/pm.err" || {
      cat "$tmp/pm.err" >&2
      echo "runbook postmortem of the $shape run failed" >&2
      exit 1
    }
    read -r wall user sys rss <"$tmp/time"
    ratio=""
    if [ "$shape" = tiny ]; then
      [ -n "$base_kib" ] && [ "$rss" -ge "$base_kib" ] || base_kib=$rss
    elif [ -n "$base_kib" ]; then
      ratio=$(printf '(RSS - tiny) / journal = %.1f' "$(echo "($rss - $base_kib) * 1024 / $bytes" | bc -l)")
    fi
    printf '  round %d: wall %5.2f s  cpu %5.2f s  peak RSS %6.1f MiB  document %7d bytes  %s\n' \
      "$round" "$wall" "$(echo "$user + $sys" | bc -l)" "$(echo "$rss / 1024" | bc -l)" \
      "$(stat -c %s "$tmp/pm.md")" "$ratio"
  done
  [ "$shape" = tiny ] && printf '  constant (smallest tiny peak RSS): %.1f MiB\n' "$(echo "$base_kib / 1024" | bc -l)"
  rm -rf "$state"
done
