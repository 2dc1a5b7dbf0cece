#!/usr/bin/env bash
# Time rendering a postmortem from a journal of 10 000 events (generated in memory by
# examples/render_bench.rs; nothing big is written to disk). Target: well under 1 s.
# Usage: scripts/bench-render.sh [EVENTS] [one-step]
#   one-step: the journal is one for_each step of EVENTS/2 operations (issue 18's
#   quadratic case). A microbenchmark of the library (no process start, no disk).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release --example render_bench -- "${1:-10000}" ${2:+"$2"}
