#!/usr/bin/env bash
# The machine's DPDK I/O ceiling and ours beside it, in one run.
#
# Reference: dpdk-testpmd io forwarding over two net_null vdevs on one
# forwarding core. Then every other measurement runs under the same
# conditions (same CPU, same EAL memory mode) and is printed with its ratio
# to the reference:
#   - "ffi": the DPDK backend's own rx->tx loop (benches/dpdk_io.rs), built
#     with `--features dpdk`;
#   - any NAME=COMMAND given as an argument: COMMAND is run through `bash -c`
#     with $SECS, $CPU and $EAL_MEM exported, and must print a line
#     `mpps: X.XX` (the appliance's own run goes here).
#
# Usage: scripts/bench-dpdk.sh [-s SECONDS] [-c CPU] [-r ROUNDS] [--huge] [NAME=COMMAND ...]
#   -s  seconds measured per run (default 5)
#   -c  CPU of the forwarding core (default: the last CPU)
#   -r  rounds; each round runs every measurement once (default 2); the
#       summary takes each measurement's best round (least disturbed by
#       other load on the machine)
#   --huge  use hugepages (set up beforehand: echo 512 > /proc/sys/vm/nr_hugepages
#           and hugetlbfs mounted on /dev/hugepages); default --no-huge -m 512
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=5
CPU=$(( $(nproc) - 1 ))
ROUNDS=2
HUGE=0
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    -s) SECS=$2; shift 2 ;;
    -c) CPU=$2; shift 2 ;;
    -r) ROUNDS=$2; shift 2 ;;
    --huge) HUGE=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *=*) EXTRA+=("$1"); shift ;;
    *) echo "bench-dpdk: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$HUGE" = 1 ]; then EAL_MEM=""; else EAL_MEM="--no-huge -m 512"; fi
export SECS CPU EAL_MEM
MAIN_CPU=0
[ "$CPU" = 0 ] && MAIN_CPU=1

command -v dpdk-testpmd >/dev/null || {
  echo "bench-dpdk: dpdk-testpmd not found; apt-get install dpdk (package dpdk-dev on some releases)" >&2
  exit 1
}

# testpmd io forwarding: start, show stats (baseline), wait SECS, show stats
# again: the second "Rx-pps" of each port is the rate over those SECS.
# Forwarded packets per second = the sum over both ports.
measure_testpmd() {
  local out
  # shellcheck disable=SC2086
  out=$( { sleep 2; echo "show port stats all"; sleep "$SECS"; echo "show port stats all"; sleep 0.2; echo "quit"; } |
    dpdk-testpmd $EAL_MEM --no-shconf --no-pci --no-telemetry --log-level lib.eal:warning \
      -l "$MAIN_CPU,$CPU" --main-lcore "$MAIN_CPU" --vdev net_null0 --vdev net_null1 -- \
      -i --auto-start --forward-mode=io --nb-cores=1 --total-num-mbufs=32768 2>&1 ) || true
  local pps
  pps=$(printf '%s\n' "$out" | awk '/Rx-pps:/ { v[n++] = $2 } END { if (n >= 4) printf "%.2f", (v[n-1] + v[n-2]) / 1e6 }')
  if [ -z "$pps" ]; then
    printf '%s\n' "$out" | tail -20 >&2
    echo "bench-dpdk: could not read testpmd's rates (above)" >&2
    return 1
  fi
  echo "mpps: $pps"
}

measure_ffi() {
  local args=(--seconds "$SECS" --cpu "$CPU")
  [ "$HUGE" = 1 ] && args+=(--huge)
  cargo bench -q --features dpdk --bench dpdk_io -- "${args[@]}" 2>/dev/null
}

# Measurements in order: the two built-in ones, then NAME=COMMAND arguments.
NAMES=(testpmd ffi)
for e in "${EXTRA[@]+"${EXTRA[@]}"}"; do
  NAMES+=("${e%%=*}")
done

echo "building the ffi bench (cargo bench --features dpdk --bench dpdk_io)..." >&2
cargo bench -q --features dpdk --bench dpdk_io --no-run >&2

declare -A BEST
for ((r = 1; r <= ROUNDS; r++)); do
  for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]}
    case $i in
      0) out=$(measure_testpmd) ;;
      1) out=$(measure_ffi) ;;
      *) out=$(bash -c "${EXTRA[$((i - 2))]#*=}") ;;
    esac
    m=$(printf '%s\n' "$out" | awk '/^mpps:/ { v = $2 } END { print v }')
    if [ -z "$m" ]; then echo "bench-dpdk: $name printed no 'mpps:' line" >&2; exit 1; fi
    printf 'round %d  %-10s %8.2f Mpps\n' "$r" "$name" "$m"
    if [ -z "${BEST[$name]:-}" ] || awk -v a="$m" -v b="${BEST[$name]}" 'BEGIN { exit !(a > b) }'; then
      BEST[$name]=$m
    fi
  done
done

mem=$([ "$HUGE" = 1 ] && echo hugepages || echo "--no-huge -m 512")
echo "best of $ROUNDS rounds, ${SECS} s each, forwarding core CPU $CPU, $mem, 2 x net_null, io forwarding:"
for name in "${NAMES[@]}"; do
  ratio=$(awk -v a="${BEST[$name]}" -v b="${BEST[testpmd]}" 'BEGIN { printf "%.2f", a / b }')
  printf '  %-10s %8.2f Mpps   %s x testpmd\n' "$name" "${BEST[$name]}" "$ratio"
done
