#!/usr/bin/env bash
# Engine overhead per step, side by side with its floor and with Ansible, in one run.
#
#   - N `true` action steps through `runbook run` (release build, `gate: auto`): each
#     journals its start and fsyncs it before running (the crash-safety promise), on
#     this disk and with the state dir on tmpfs (where fsync costs ~nothing);
#   - N `true` check steps (read-only: nothing to make durable before running them;
#     their events ride along with the run's final fsync);
#   - a shell script running the same N commands (the floor: fork + exec);
#   - ansible-playbook running N=100 `command: true` tasks on localhost (ansible-core
#     from PyPI in .venv-bench/, connection local, no facts).
#
# The machine is shared and noisy: every configuration runs ROUNDS times (default 7),
# interleaved, and the median is reported.
#
# Usage: scripts/bench-engine.sh            (N = 100 and 500)
#        SKIP_ANSIBLE=1 ROUNDS=11 scripts/bench-engine.sh
#        RUNBOOK_BIN=/path/to/runbook scripts/bench-engine.sh   (no build)
#        BASELINE_BIN=/path/to/old/runbook scripts/bench-engine.sh
#          also runs an older build (say, a release build of an earlier commit) on the
#          same runbooks, interleaved round by round with this one, and prints the
#          ratio of their per-step overheads: a before/after comparison in one run.
set -euo pipefail
cd "$(dirname "$0")/.."

# RUNBOOK_BIN=path measures that binary instead of building this checkout's.
if [ -n "${RUNBOOK_BIN:-}" ]; then
  bin="$RUNBOOK_BIN"
else
  cargo build --release --quiet
  bin="$PWD/target/release/runbook"
fi
work="$(mktemp -d)"
# The same runs with the state dir on tmpfs: what the engine itself costs, apart
# from the disk.
shm="$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)"
trap 'rm -rf "$work" "$shm"' EXIT
ROUNDS="${ROUNDS:-7}"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
per_step_ms() { awk -v t="$1" -v n="$2" 'BEGIN { printf "%.3f", t * 1000 / n }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
timed() { # FILE CMD...: appends CMD's wall seconds to FILE and its CPU seconds
  # (user + system, its children included) to FILE.cpu. Bash's own clock and `times`
  # builtin: no process is forked between the two readings but CMD itself.
  local out=$1 t0 t1
  shift
  times >"$work/cpu0"
  t0=$EPOCHREALTIME
  "$@" >/dev/null 2>&1
  t1=$EPOCHREALTIME
  times >"$work/cpu1"
  secs "$t0" "$t1" >>"$out"
  echo >>"$out"
  # The second line of `times` is the children's "user system", e.g. 0m1.250s 0m0.310s.
  awk 'FNR == 2 { for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); c[FILENAME] += p[1] * 60 + p[2] } }
       END { printf "%.3f\n", c[ARGV[2]] - c[ARGV[1]] }' "$work/cpu0" "$work/cpu1" >>"$out.cpu"
}

# The steps run the same program as the floor: /usr/bin/true, forked and exec'd
# (`true` alone would be the shell builtin).
true_bin="$(type -P true)"
runbook_file() { # KIND N FILE
  {
    echo "version: 1"
    echo "name: bench"
    echo "title: N true steps"
    echo "steps:"
    for i in $(seq 1 "$2"); do
      echo "  - $1: step $i"
      echo "    id: s$i"
      if [ "$1" = action ]; then echo "    gate: auto"; fi
      echo "    shell: { argv: [\"$true_bin\"] }"
    done
  } >"$3"
}
floor_file() { # N FILE
  {
    echo "#!/bin/sh"
    for _ in $(seq 1 "$1"); do echo "$true_bin"; done
  } >"$2"
  chmod +x "$2"
}

echo "fdatasync of one journal line on this disk: $(python3 - "$work" <<'PY'
import os, sys, time
f = open(os.path.join(sys.argv[1], "fsync-probe"), "wb")
t = time.time()
for _ in range(100):
    f.write(b"x" * 300); f.flush(); os.fdatasync(f.fileno())
print("%.2f ms" % ((time.time() - t) * 10))
PY
)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; $ROUNDS rounds, medians"

configs=(actions-disk actions-tmpfs checks-disk floor)
base="${BASELINE_BIN:-}"
if [ -n "$base" ]; then
  [ -x "$base" ] || { echo "BASELINE_BIN=$base is not an executable" >&2; exit 2; }
  echo "baseline: $base ($("$base" --version 2>/dev/null | head -1))"
  configs+=(base-actions-disk base-actions-tmpfs base-checks-disk)
fi
declare -A total ms
for n in 100 500; do
  runbook_file action "$n" "$work/actions-$n.yaml"
  runbook_file check "$n" "$work/checks-$n.yaml"
  floor_file "$n" "$work/floor-$n.sh"
  # Warm the page cache and the binary once.
  "$bin" --state-dir "$work/state-warm" --quiet run "$work/actions-$n.yaml" >/dev/null 2>&1
  for c in "${configs[@]}"; do : >"$work/t-$c-$n"; : >"$work/t-$c-$n.cpu"; done
  this_build() { # ROUND
    timed "$work/t-actions-disk-$n" "$bin" --state-dir "$work/a-$n-$1" --quiet run "$work/actions-$n.yaml"
    timed "$work/t-actions-tmpfs-$n" "$bin" --state-dir "$shm/a-$n-$1" --quiet run "$work/actions-$n.yaml"
    timed "$work/t-checks-disk-$n" "$bin" --state-dir "$work/c-$n-$1" --quiet run "$work/checks-$n.yaml"
  }
  baseline_build() { # ROUND
    timed "$work/t-base-actions-disk-$n" "$base" --state-dir "$work/ba-$n-$1" --quiet run "$work/actions-$n.yaml"
    timed "$work/t-base-actions-tmpfs-$n" "$base" --state-dir "$shm/ba-$n-$1" --quiet run "$work/actions-$n.yaml"
    timed "$work/t-base-checks-disk-$n" "$base" --state-dir "$work/bc-$n-$1" --quiet run "$work/checks-$n.yaml"
  }
  for r in $(seq 1 "$ROUNDS"); do
    timed "$work/t-floor-$n" "$work/floor-$n.sh"
    # Which build goes first alternates from round to round, so neither one
    # always runs on a warmer (or busier) machine than the other.
    if [ -n "$base" ] && [ $((r % 2)) -eq 0 ]; then
      baseline_build "$r"
      this_build "$r"
    else
      this_build "$r"
      [ -n "$base" ] && baseline_build "$r"
    fi
  done
  for c in "${configs[@]}"; do
    total[$c-$n]=$(median <"$work/t-$c-$n")
    ms[$c-$n]=$(per_step_ms "${total[$c-$n]}" "$n")
  done
done

label() {
  case "$1" in
    actions-disk) echo "runbook run, N actions, disk" ;;
    actions-tmpfs) echo "runbook run, N actions, tmpfs" ;;
    checks-disk) echo "runbook run, N checks, disk" ;;
    floor) echo "shell script (floor)" ;;
    base-actions-disk) echo "baseline, N actions, disk" ;;
    base-actions-tmpfs) echo "baseline, N actions, tmpfs" ;;
    base-checks-disk) echo "baseline, N checks, disk" ;;
  esac
}
echo
printf "%-34s %6s %12s %12s\n" "what" "N" "total s" "per step ms"
for n in 100 500; do
  for c in "${configs[@]}"; do
    printf "%-34s %6s %12s %12s\n" "$(label "$c")" "$n" "${total[$c-$n]}" "${ms[$c-$n]}"
  done
done
j="$(ls "$work"/a-500-1/runs/*/journal.ndjson)"
echo "  journal of N=500 actions: $(wc -l <"$j") events, $(grep -c '"op_started"' "$j") op starts, each fsynced before it ran"

if [ -z "${SKIP_ANSIBLE:-}" ]; then
  venv=.venv-bench
  if [ ! -x "$venv/bin/ansible-playbook" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet ansible-core
  fi
  pb="$work/bench.yml"
  {
    echo "- hosts: localhost"
    echo "  connection: local"
    echo "  gather_facts: false"
    echo "  tasks:"
    for i in $(seq 1 100); do
      echo "    - name: step $i"
      echo "      command: \"true\""
    done
  } >"$pb"
  export ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false
  t0=$(now)
  "$venv/bin/ansible-playbook" -i localhost, \
    -e "ansible_python_interpreter=$PWD/$venv/bin/python" "$pb" >/dev/null
  t1=$(now)
  a=$(secs "$t0" "$t1")
  ansible_ms=$(per_step_ms "$a" 100)
  printf "%-34s %6s %12s %12s\n" "ansible-playbook (command: true)" 100 "$a" "$ansible_ms"
fi

echo
echo "engine time per step beyond the command (runbook minus the floor):"
overheads=(actions-disk actions-tmpfs checks-disk)
[ -n "$base" ] && overheads+=(base-actions-disk base-actions-tmpfs base-checks-disk)
for c in "${overheads[@]}"; do
  for n in 100 500; do
    awk -v e="${ms[$c-$n]}" -v f="${ms[floor-$n]}" -v l="$(label "$c")" -v n="$n" \
      'BEGIN { printf "  %-32s N=%-4s %.3f ms (process start included)\n", l, n, e - f }'
  done
  # N=100 -> 500 leaves out what a run costs once (process start, lint, the run
  # directory) and keeps what each step costs.
  awk -v e5="${total[$c-500]}" -v e1="${total[$c-100]}" -v f5="${total[floor-500]}" \
    -v f1="${total[floor-100]}" -v l="$(label "$c")" \
    'BEGIN { printf "  %-32s marginal %.3f ms\n", l, ((e5 - e1) - (f5 - f1)) * 1000 / 400 }'
done
if [ -n "${ansible_ms:-}" ]; then
  awk -v a="$ansible_ms" -v e="${ms[actions-disk-100]}" -v c="${ms[checks-disk-100]}" \
    'BEGIN { printf "N=100: ansible-playbook takes %.0fx the time of runbook per step (actions, fsync on, disk); %.0fx (checks)\n", a / e, a / c }'
fi
if [ -n "$base" ]; then
  # Paired: in each round the two builds ran back to back on the same machine state,
  # so the per-round difference (this minus baseline, N=500) cancels most of what a
  # shared machine adds to both; its median is the steadier figure. It is given per
  # step and against the baseline's own overhead beyond the floor at N=500.
  echo
  echo "paired rounds, N=500 (median over $ROUNDS rounds of this build minus baseline, same round):"
  for k in actions-disk actions-tmpfs checks-disk; do
    d=$(paste "$work/t-$k-500" "$work/t-base-$k-500" | awk '{ print $1 - $2 }' | median)
    awk -v d="$d" -v b="${total[base-$k-500]}" -v f="${total[floor-500]}" -v k="$k" \
      'BEGIN { o = (b - f) * 1000 / 500; dd = d * 1000 / 500;
               printf "  %-14s %+.3f ms per step; baseline overhead %.3f ms per step; this / baseline = %.2f\n", k, dd, o, (o > 0 ? (o + dd) / o : 0) }'
  done
  echo
  # CPU time (user + system of the runbook process and the commands it ran; the
  # commands are the same for both builds) is what the engine costs, with far less of
  # the noise a shared machine adds to wall time: a step that waits for the CPU is
  # slower but has not cost more.
  echo "paired rounds, CPU, N=500 (median over $ROUNDS rounds of this build minus baseline, same round):"
  for k in actions-disk actions-tmpfs checks-disk; do
    d=$(paste "$work/t-$k-500.cpu" "$work/t-base-$k-500.cpu" | awk '{ print $1 - $2 }' | median)
    this=$(median <"$work/t-$k-500.cpu")
    b=$(median <"$work/t-base-$k-500.cpu")
    f=$(median <"$work/t-floor-500.cpu")
    awk -v d="$d" -v t="$this" -v b="$b" -v f="$f" -v k="$k" \
      'BEGIN { printf "  %-14s %+.3f ms per step; CPU per step beyond the floor: this %.3f ms, baseline %.3f ms (this / baseline = %.2f)\n", k, d * 1000 / 500, (t - f) * 1000 / 500, (b - f) * 1000 / 500, (b > f ? (t - f) / (b - f) : 0) }'
  done
  echo
  # actions-tmpfs: the engine without the disk's fsync latency, which on a shared
  # machine varies more than the engine's own cost.
  for k in actions-disk actions-tmpfs checks-disk; do
    awk -v e5="${total[$k-500]}" -v e1="${total[$k-100]}" \
      -v b5="${total[base-$k-500]}" -v b1="${total[base-$k-100]}" \
      -v f5="${total[floor-500]}" -v f1="${total[floor-100]}" -v k="$k" \
      'BEGIN { e = ((e5 - e1) - (f5 - f1)) * 1000 / 400; b = ((b5 - b1) - (f5 - f1)) * 1000 / 400;
               printf "marginal overhead per step, %s: this build %.3f ms, baseline %.3f ms (this / baseline = %.2f)\n", k, e, b, (b > 0 ? e / b : 0) }'
  done
fi
