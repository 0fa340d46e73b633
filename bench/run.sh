#!/usr/bin/env bash
# Runs strictly's benchmarks and prints the figures BENCHMARKS.md records, with
# their ratios. Steps can be run alone:
#
#   bench/run.sh [parser] [cycle] [shell] [memory] [state]   (default: all)
#
# RUNS (default 3) is how many times each step runs; the medians are printed.
# SHELL_10K=1 also times the shell method at 10,000 dataplanes (about four
# minutes).
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
# strictly and the bare fetch, in another process, at 10 and 1,000 dataplanes,
# and at 10,000 with SHELL_10K=1 (one run: about four minutes).
shell() {
  cargo build --quiet --release --example sim
  cargo bench --quiet --bench cycle --no-run
  local sizes=(10 1000)
  [ "${SHELL_10K:-0}" = 1 ] && sizes+=(10000)
  local size
  for size in "${sizes[@]}"; do
    shell_at "$size"
  done
  [ "${SHELL_10K:-0}" = 1 ] ||
    echo "shell at 10,000: not run; it grows linearly with the dataplanes (SHELL_10K=1 runs it)"
}

# The shell method and strictly's cycle at one size, and their ratio.
shell_at() {
  local size=$1 shell_runs=$runs
  [ "$size" -ge 10000 ] && shell_runs=1
  load "the Kuma guide's method in shell, $size dataplanes"
  start_sim --dataplanes "$size" --inbounds 1
  local times=() seconds
  for _ in $(seq "$shell_runs"); do
    seconds=$( { /usr/bin/time -f %e bench/kuma-guide.sh "$sim_url" default 8 >/dev/null; } 2>&1)
    times+=("$seconds")
  done
  local guide
  guide=$(printf '%s\n' "${times[@]}" | median)
  echo "shell, 8 at a time: ${times[*]} s (median $guide s)"
  if [ "$size" -eq 1000 ]; then
    seconds=$( { /usr/bin/time -f %e bench/kuma-guide.sh "$sim_url" default 1 >/dev/null; } 2>&1)
    echo "shell, one at a time: $seconds s"
  fi

  local line strictly
  line=$(cargo bench --quiet --bench cycle -- --url "$sim_url" --sizes "$size" | grep dataplanes)
  echo "$line"
  strictly=$(sed -E 's/.*strictly ([0-9.]+) s .*/\1/' <<<"$line")
  echo "shell (8 at a time) / strictly at $size: $(awk -v g="$guide" -v s="$strictly" 'BEGIN {printf "%.0fx", g / s}')"
  stop "$sim_pid"
}

# Peak resident memory of `strictly run` against 10,000 sidecars with two
# inbounds each, polled every five seconds and scraped every two, after six poll
# cycles; then the size and fetch time of /metrics. Run as the image runs it
# (glibc's mmap threshold fixed, see the Dockerfile), and once more with glibc's
# defaults, as a binary started by hand would be.
memory() {
  cargo build --quiet --release --bin strictly --example sim
  start_sim --dataplanes 10000 --inbounds 2
  local image_malloc="glibc.malloc.mmap_threshold=131072"
  measure_memory "" "$image_malloc"
  measure_memory "" ""
  measure_memory "--per-dataplane" "$image_malloc"
  stop "$sim_pid"
}

# One memory figure: strictly run with these flags and this GLIBC_TUNABLES.
measure_memory() {
  local flags=$1 tunables=$2
  load "memory at 10,000 dataplanes x 2 inbounds, ${flags:-default flags}, GLIBC_TUNABLES=${tunables:-(unset)}"
  local peaks=() fetches=() pid hwm size
  for _ in $(seq "$runs"); do
    GLIBC_TUNABLES=$tunables "$release/strictly" run --kuma-url "$sim_url" \
      --listen "127.0.0.1:$port" --poll-interval 5s $flags >/dev/null 2>&1 &
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
