#!/usr/bin/env bash
# Engine overhead per step, side by side with its floor and with Ansible.
#
#   N `true` shell steps through `runbook run` (release build, gates auto, journal
#   fsynced), a shell script running the same N commands (the floor: fork+exec),
#   and ansible-playbook running N=100 `command: true` tasks on localhost
#   (ansible-core from PyPI in .venv-bench/, connection local, no facts).
#
# Usage: scripts/bench-engine.sh            (N = 100 and 500)
#        SKIP_ANSIBLE=1 scripts/bench-engine.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
bin="$PWD/target/release/runbook"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
per_step_ms() { awk -v t="$1" -v n="$2" 'BEGIN { printf "%.3f", t * 1000 / n }'; }

runbook_file() { # N FILE
  {
    echo "version: 1"
    echo "name: bench"
    echo "title: N true steps"
    echo "steps:"
    for i in $(seq 1 "$1"); do
      echo "  - action: step $i"
      echo "    id: s$i"
      echo "    gate: auto"
      echo "    shell: { argv: [\"$true_bin\"] }"
    done
  } >"$2"
}

# The floor runs the same program the steps run: /usr/bin/true, forked and exec'd
# (`true` alone would be the shell builtin).
true_bin="$(type -P true)"
floor_file() { # N FILE
  {
    echo "#!/bin/sh"
    for _ in $(seq 1 "$1"); do echo "$true_bin"; done
  } >"$2"
  chmod +x "$2"
}

# The same run with the state dir on tmpfs, where fsync costs nothing: what the
# engine itself costs, apart from the disk.
shm="$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)"
trap 'rm -rf "$work" "$shm"' EXIT

echo "fdatasync of one journal line on this disk: $(python3 - "$work" <<'PY'
import os, sys, time
f = open(os.path.join(sys.argv[1], "fsync-probe"), "wb")
t = time.time()
for _ in range(100):
    f.write(b"x" * 300); f.flush(); os.fdatasync(f.fileno())
print("%.2f ms" % ((time.time() - t) * 10))
PY
)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
# This machine is shared and noisy: every configuration runs $ROUNDS times,
# interleaved, and the median is reported.
ROUNDS="${ROUNDS:-7}"
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
timed() { # prints the wall seconds of "$@"
  local t0 t1
  t0=$(now)
  "$@" >/dev/null 2>&1
  t1=$(now)
  secs "$t0" "$t1"
  echo
}
declare -A engine_ms floor_ms shm_ms engine_s floor_s shm_s
for n in 100 500; do
  rb="$work/bench-$n.yaml"
  runbook_file "$n" "$rb"
  floor_file "$n" "$work/floor-$n.sh"
  # Warm the page cache and the binary once.
  "$bin" --state-dir "$work/state-warm" --quiet run "$rb" >/dev/null 2>&1
  : >"$work/t-disk" && : >"$work/t-shm" && : >"$work/t-floor"
  for r in $(seq 1 "$ROUNDS"); do
    timed "$bin" --state-dir "$work/state-$n-$r" --quiet run "$rb" >>"$work/t-disk"
    timed "$work/floor-$n.sh" >>"$work/t-floor"
    timed "$bin" --state-dir "$shm/state-$n-$r" --quiet run "$rb" >>"$work/t-shm"
  done
  engine_s[$n]=$(median <"$work/t-disk")
  floor_s[$n]=$(median <"$work/t-floor")
  shm_s[$n]=$(median <"$work/t-shm")
  engine_ms[$n]=$(per_step_ms "${engine_s[$n]}" "$n")
  floor_ms[$n]=$(per_step_ms "${floor_s[$n]}" "$n")
  shm_ms[$n]=$(per_step_ms "${shm_s[$n]}" "$n")
done
echo
printf "%-34s %6s %12s %12s\n" "what (median of $ROUNDS)" "N" "total s" "per step ms"
for n in 100 500; do
  printf "%-34s %6s %12s %12s\n" "runbook run (fsync on, disk)" "$n" "${engine_s[$n]}" "${engine_ms[$n]}"
  printf "%-34s %6s %12s %12s\n" "runbook run (fsync on, tmpfs)" "$n" "${shm_s[$n]}" "${shm_ms[$n]}"
  printf "%-34s %6s %12s %12s\n" "shell script (floor)" "$n" "${floor_s[$n]}" "${floor_ms[$n]}"
done
j="$(ls "$work"/state-500-1/runs/*/journal.ndjson)"
echo "  journal of N=500: $(wc -l <"$j") events, $(grep -c '"op_started"' "$j") fsynced op starts"

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
  printf "%-34s %6s %10s %12s\n" "ansible-playbook (command: true)" 100 "$a" "$ansible_ms"
fi

echo
for n in 100 500; do
  over=$(awk -v e="${engine_ms[$n]}" -v f="${floor_ms[$n]}" 'BEGIN { printf "%.3f", e - f }')
  over_shm=$(awk -v e="${shm_ms[$n]}" -v f="${floor_ms[$n]}" 'BEGIN { printf "%.3f", e - f }')
  echo "N=$n: engine time per step beyond the command, process start included: $over ms on this disk, $over_shm ms on tmpfs"
done
# The difference between N=500 and N=100 leaves out what a run costs once
# (process start, lint, creating the run directory) and keeps what each step costs.
awk -v e5="${engine_s[500]}" -v e1="${engine_s[100]}" -v f5="${floor_s[500]}" -v f1="${floor_s[100]}" \
  -v m5="${shm_s[500]}" -v m1="${shm_s[100]}" 'BEGIN {
    printf "marginal engine time per step (N=100 -> 500) beyond the command: %.3f ms on this disk, %.3f ms on tmpfs\n",
      ((e5 - e1) - (f5 - f1)) * 1000 / 400, ((m5 - m1) - (f5 - f1)) * 1000 / 400 }'
if [ -n "${ansible_ms:-}" ]; then
  awk -v a="$ansible_ms" -v e="${engine_ms[100]}" \
    'BEGIN { printf "N=100: ansible-playbook takes %.0fx the time of runbook per step (fsync on, disk)\n", a / e }'
fi
