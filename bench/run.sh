#!/usr/bin/env bash
# Runs strictly's benchmarks and prints the figures BENCHMARKS.md records, with
# their ratios. Steps can be run alone:
#
#   bench/run.sh [parser] [cycle] [shell] [memory] [state]   (default: all)
#
# RUNS (default 3) is how many times each step runs; the medians are printed.
# SHELL_10K=1 also times the shell method at 10,000 dataplanes (about four
# minutes); otherwise that figure is extrapolated from 1,000.
#
# Needs curl and jq, and a Linux /proc for the memory figures. The machine's
# load average is printed before each step: on a shared machine the figures move
# with it, and only figures taken under a similar load compare.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
target=${CARGO_TARGET_DIR:-target}
release="$target/release"
port=19714
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(parser cycle shell memory state)

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

load() {
  echo "-- $1 ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
}

median() {
  sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

# Starts the simulated control plane with these arguments; sets sim_url, sim_pid.
start_sim() {
  local out
  out=$(mktemp)
  "$release/examples/sim" "$@" >"$out" &
  sim_pid=$!
  pids+=("$sim_pid")
  until [ -s "$out" ]; do sleep 0.2; done
  sim_url=$(head -1 "$out")
  rm -f "$out"
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

cycles_done() {
  curl -sf "127.0.0.1:$port/metrics" |
    awk '/^strictly_poll_duration_seconds_count/ {print $2}' || echo 0
}

parser() {
  load "parser throughput"
  for _ in $(seq "$runs"); do
    cargo bench --quiet --bench stats_read
  done
}

cycle() {
  load "poll cycle, simulated control plane in process"
  for _ in $(seq "$runs"); do
    cargo bench --quiet --bench cycle -- --sizes 10,1000,10000
  done
  load "poll cycle, stats answers 5 ms late"
  cargo bench --quiet --bench cycle -- --sizes 1000,10000 --latency-ms 5
}

# The Kuma guide's method in shell against the same simulated control plane as
# strictly and the bare fetch, in another process.
shell() {
  cargo build --quiet --release --example sim
  cargo bench --quiet --bench cycle --no-run
  load "the Kuma guide's method in shell, 1,000 dataplanes"
  start_sim --dataplanes 1000 --inbounds 1
  local times=() seconds
  for _ in $(seq "$runs"); do
    seconds=$( { /usr/bin/time -f %e bench/kuma-guide.sh "$sim_url" default 8 >/dev/null; } 2>&1)
    times+=("$seconds")
  done
  local guide
  guide=$(printf '%s\n' "${times[@]}" | median)
  echo "shell, 8 at a time: ${times[*]} s (median $guide s)"
  seconds=$( { /usr/bin/time -f %e bench/kuma-guide.sh "$sim_url" default 1 >/dev/null; } 2>&1)
  echo "shell, one at a time: $seconds s"

  local line strictly
  line=$(cargo bench --quiet --bench cycle -- --url "$sim_url" --sizes 1000 | tail -1)
  echo "$line"
  strictly=$(sed -E 's/.*strictly ([0-9.]+) s .*/\1/' <<<"$line")
  echo "shell (8 at a time) / strictly at 1,000: $(awk -v g="$guide" -v s="$strictly" 'BEGIN {printf "%.0fx", g / s}')"
  stop "$sim_pid"

  if [ "${SHELL_10K:-0}" = 1 ]; then
    load "the Kuma guide's method in shell, 10,000 dataplanes"
    start_sim --dataplanes 10000 --inbounds 1
    seconds=$( { /usr/bin/time -f %e bench/kuma-guide.sh "$sim_url" default 8 >/dev/null; } 2>&1)
    echo "shell, 8 at a time, 10,000: $seconds s"
    stop "$sim_pid"
  else
    echo "shell at 10,000: not run; about $(awk -v g="$guide" 'BEGIN {printf "%.0f", g * 10}') s extrapolated (it grows linearly)"
  fi
}

# Peak resident memory of `strictly run` against 10,000 sidecars with two
# inbounds each, scraped every two seconds, after six poll cycles; then the size
# and fetch time of /metrics.
memory() {
  cargo build --quiet --release --bin strictly --example sim
  start_sim --dataplanes 10000 --inbounds 2
  local flags
  for flags in "" "--per-dataplane"; do
    load "memory at 10,000 dataplanes x 2 inbounds ${flags:-(default)}"
    local peaks=() fetches=() pid hwm size
    for _ in $(seq "$runs"); do
      "$release/strictly" run --kuma-url "$sim_url" --listen "127.0.0.1:$port" \
        --poll-interval 5s $flags >/dev/null 2>&1 &
      pid=$!
      pids+=("$pid")
      until [ "$(cycles_done)" -ge 6 ] 2>/dev/null; do sleep 2; done
      hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
      peaks+=("$hwm")
      for _ in 1 2 3 4 5; do
        fetches+=("$(curl -sf -o /dev/null -w '%{time_total} %{size_download}' "127.0.0.1:$port/metrics")")
      done
      stop "$pid"
    done
    echo "peak resident (VmHWM): ${peaks[*]} kB (median $(printf '%s\n' "${peaks[@]}" | median) kB)"
    size=$(printf '%s\n' "${fetches[@]}" | awk '{print $2}' | median)
    echo "/metrics: $size bytes, fetched in $(printf '%s\n' "${fetches[@]}" | awk '{print $1 * 1000}' | median) ms (median of ${#fetches[@]})"
  done
  stop "$sim_pid"
}

state() {
  load "engine state and /metrics rendering"
  for _ in $(seq "$runs"); do
    cargo bench --quiet --bench state
  done
}

for step in "${steps[@]}"; do
  "$step"
done
