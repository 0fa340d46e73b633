#!/usr/bin/env bash
# Checks everything that installs and watches strictly in a cluster: the
# Dockerfile, the kustomize overlays, the alerting rules and their tests, and
# the Grafana dashboard.
#
# usage: ci/deploy-checks.sh [METRICS_SAMPLE]
#
# METRICS_SAMPLE (or the STRICTLY_METRICS_SAMPLE variable) is a /metrics answer
# captured from a running strictly; by default tests/deploy/metrics-sample.txt.
# Every metric, label and label value that a rule or a dashboard panel uses
# must appear in it.
#
# The tools come from package registries and are installed when missing:
# promtool from Debian's prometheus package (as root, or through sudo),
# hadolint, kubernetes-validate and kustomize's library into .venv from PyPI,
# TypeScript and Grafana's and the Prometheus Operator's types into
# tests/deploy/node_modules from npm. Prints one line per check and exits
# non-zero when any check fails.

set -uo pipefail

# A sample given by the caller is relative to the caller's directory.
SAMPLE=${1:-${STRICTLY_METRICS_SAMPLE:-}}
[ -n "$SAMPLE" ] && SAMPLE=$(realpath -m "$SAMPLE")

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
SAMPLE=${SAMPLE:-tests/deploy/metrics-sample.txt}
VENV=$ROOT/.venv
KUSTOMIZE_TARGET=$VENV/pykustomize
KUSTOMIZE_LIB=$KUSTOMIZE_TARGET/pykustomize/_lib/linux-amd64/libpykustomize.so
CHECKS=$ROOT/tests/deploy
BUILD=$CHECKS/.build
RENDERED=$BUILD/rendered
LOGS=$BUILD/logs
OVERLAYS=(config/base config/default config/hardened tests/deploy/overlays/podmonitor)

# --- Tools -------------------------------------------------------------------

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    # The lock timeout waits for another apt run to finish instead of failing.
    as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends -o DPkg::Lock::Timeout=600 "$@"
}

install_tools() {
    command -v promtool >/dev/null || apt_install prometheus || return 1
    command -v npm >/dev/null || apt_install nodejs npm || return 1

    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; } || return 1
    fi
    # pip is asked only when the requirements changed since the last install.
    local stamp="$VENV/.deploy-requirements"
    if ! cmp -s ci/deploy/requirements.txt "$stamp"; then
        "$VENV/bin/pip" install -q --disable-pip-version-check -r ci/deploy/requirements.txt &&
            cp ci/deploy/requirements.txt "$stamp" || return 1
    fi
    if [ ! -f "$KUSTOMIZE_LIB" ] && [ "$(uname -m)" = x86_64 ]; then
        "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --only-binary=:all: \
            --ignore-requires-python --require-hashes --target "$KUSTOMIZE_TARGET" \
            -r ci/deploy/kustomize-requirements.txt || return 1
    fi

    if ! cmp -s "$CHECKS/package-lock.json" "$CHECKS/node_modules/.deploy-package-lock.json"; then
        (cd "$CHECKS" && npm ci --no-audit --no-fund --loglevel=error) &&
            cp "$CHECKS/package-lock.json" "$CHECKS/node_modules/.deploy-package-lock.json" || return 1
    fi
}

# --- Running checks ----------------------------------------------------------

passed=0
failed=0

# check NAME COMMAND...: runs COMMAND, prints one line, and the command's
# output only when it failed.
check() {
    local name=$1 log
    shift
    log="$LOGS/$((passed + failed)).log"
    if "$@" >"$log" 2>&1; then
        printf 'ok    %s\n' "$name"
        passed=$((passed + 1))
    else
        printf 'FAIL  %s\n' "$name"
        sed 's/^/      /' "$log"
        failed=$((failed + 1))
    fi
}

py() {
    "$VENV/bin/python" "$@"
}

tsc() {
    "$CHECKS/node_modules/.bin/tsc" "$@"
}

# kubernetes-validate passes a resource whose schema it lacks with a warning.
# Only the Prometheus Operator's kinds may go unchecked here; the TypeScript
# and validate-crds checks cover those.
kubernetes_validate() {
    local version=$1 out
    out=$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$RENDERED"/*.yaml) || {
        echo "$out"
        return 1
    }
    echo "$out"
    # Read whole, not with grep -q: under pipefail an early exit of grep would
    # turn the upstream SIGPIPE into a pass.
    local unexpected
    unexpected=$(echo "$out" | grep -v 'api version monitoring.coreos.com/v1 ' || true)
    [ -z "$unexpected" ]
}

# A mutant is the dashboard with one deliberate mistake; tsc must reject it.
mutants_rejected() {
    local mutant survived=0
    for mutant in "$BUILD"/mutants/*/; do
        if tsc -p "$mutant/tsconfig.json" >/dev/null 2>&1; then
            echo "tsc accepted $(basename "$mutant")"
            survived=1
        fi
    done
    return $survived
}

dashboard_queries_parse() {
    py ci/deploy/promql_check.py rules-file "$BUILD/dashboard-queries.yaml" &&
        promtool check rules "$BUILD/dashboard-queries.yaml"
}

metrics_text_valid() {
    promtool check metrics <"$1"
}

render() {
    py ci/deploy/kustomize_build.py --lib "$KUSTOMIZE_LIB" "$RENDERED" "${OVERLAYS[@]}"
}

main() {
    rm -rf "$BUILD"
    mkdir -p "$LOGS"

    check "install tools" install_tools
    if [ "$failed" != 0 ]; then
        echo "deploy checks: $passed passed, $failed failed"
        exit 1
    fi

    check "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
    check "kustomize builds ${OVERLAYS[*]}" render
    check "kubernetes-validate --strict, Kubernetes 1.25" kubernetes_validate 1.25
    check "kubernetes-validate --strict, Kubernetes 1.37" kubernetes_validate 1.37
    check "manifests keep strictly's deployment rules" py ci/deploy/manifest_rules.py "$RENDERED"/*.yaml
    check "PrometheusRule and dashboard ConfigMap match their sources" py ci/deploy/sync_generated.py --check
    check "write type-check sources" py ci/deploy/gen_type_checks.py "$RENDERED"
    check "tsc: dashboard against @grafana/schema, monitors against prometheus-operator types" \
        tsc -p "$CHECKS/tsconfig.json"
    check "tsc rejects dashboards with planted mistakes" mutants_rejected
    check "operator resources validate against prometheus-operator schemas" \
        node "$CHECKS/validate-crds.mjs" "$BUILD/monitoring.json"
    check "promtool check rules alerts/strictly-rules.yaml" promtool check rules alerts/strictly-rules.yaml
    check "promtool test rules" promtool test rules tests/deploy/strictly-rules.test.yaml
    check "every alert tested firing and quiet" \
        py ci/deploy/rule_test_coverage.py alerts/strictly-rules.yaml tests/deploy/strictly-rules.test.yaml
    check "every alert has for:, severity, summary, description, runbook section" \
        py ci/deploy/alert_metadata.py alerts/strictly-rules.yaml docs/runbook.md
    check "dashboard queries parse (promtool)" dashboard_queries_parse
    check "metrics sample $SAMPLE is valid exposition text" metrics_text_valid "$SAMPLE"
    check "metrics used by rules and panels exist in $SAMPLE" py ci/deploy/promql_check.py names "$SAMPLE"

    echo "deploy checks: $passed passed, $failed failed"
    [ "$failed" = 0 ]
}

main
