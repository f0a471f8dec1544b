#!/usr/bin/env bash
# The appliance's forwarding rate on DPDK vdevs beside dpdk-testpmd's io
# forwarding on the same vdevs, cores and input, measured in the same run
# (alternating rounds), printed with the ratios.
#
#   scripts/bench-forwarding.sh [-s SECONDS] [-r ROUNDS] [-f FLOWS,...] [-w WORKERS,...]
#     -s  seconds measured per run, after the warm-up (default 5)
#     -r  rounds (default 2); the summary takes each figure's best round
#     -f  flow counts (default 64,1048576)
#     -w  worker counts (default 1,2)
#
# Input: benches/dpdk_gen.rs, a DPDK process of its own on CPU 0, owns the
# server side of a net_memif vdev and fills it with 60-byte UDP frames of
# FLOWS flows (10.x -> 203.0.113.5:53) as fast as the client takes them. The
# forwarder is the memif client (port 0) and sends out of net_null (port 1,
# no-rx=1: a sink that gives nothing back). Per flow count and worker count:
#   - testpmd rxonly: frames the forwarder's core can take from the input
#     and free: the input's own ceiling (if it exceeds testpmd io, the
#     generator does not cap io);
#   - testpmd io: port 0 -> port 1 untouched (the forwarding ceiling);
#   - the appliance: classify, NAT (the established path, after a warm-up
#     that opens every session), rewrite, out of port 1.
# 1 worker: forwarding on CPU 1, the generator alone on CPU 0. 2 workers:
# CPUs 0 and 1, i.e. one worker shares CPU 0 with the generator on this
# 2-core machine (the generator then takes that worker's time).
# The appliance's site is conf/bench-dpdk.toml, with this run's socket.
# Needs root, DPDK 22.11 (dpdk-testpmd from the dpdk package) and builds
# --features dpdk.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=5
rounds=2
flows_list=64,1048576
workers_list=1,2
while getopts "s:r:f:w:h" o; do
    case $o in
        s) secs=$OPTARG ;;
        r) rounds=$OPTARG ;;
        f) flows_list=$OPTARG ;;
        w) workers_list=$OPTARG ;;
        *) sed -n '2,28p' "$0"; exit 2 ;;
    esac
done
[[ $secs =~ ^[0-9]+$ && $secs -ge 1 ]] || { echo "bench-forwarding.sh: -s takes whole seconds >= 1" >&2; exit 2; }
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 ]] || { echo "bench-forwarding.sh: -r takes a count >= 1" >&2; exit 2; }
[[ $flows_list =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "bench-forwarding.sh: -f takes counts, e.g. 64,1048576" >&2; exit 2; }
[[ $workers_list =~ ^[12](,[12])*$ ]] || { echo "bench-forwarding.sh: -w takes 1 and/or 2" >&2; exit 2; }
command -v dpdk-testpmd >/dev/null || { echo "bench-forwarding.sh: dpdk-testpmd missing (scripts/install-deps.sh)" >&2; exit 1; }

cargo build --release --features dpdk -q
cargo bench --features dpdk --bench dpdk_gen --no-run -q 2>/dev/null
gen=""
for f in target/release/deps/dpdk_gen-*; do # the newest build of the generator
  case "$f" in *.d) continue ;; esac
  if [ -z "$gen" ] || [ "$f" -nt "$gen" ]; then gen=$f; fi
done
app=target/release/appliance
tmp=$(mktemp -d /tmp/bench-fwd.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
sock=$tmp/memif.sock

# The appliance's site: conf/bench-dpdk.toml (32 NAT addresses, a million
# sessions per shard) with this run's memif socket and, for 2 workers, a
# second lcore on core 0 before the one on core 1.
site() { # workers
    local two='s/^core = 1$/core = 0\n[[runtime.lcores]]\ncore = 1/'
    [ "$1" = 1 ] && two=''
    sed -e "s#socket=/tmp/appliance-gen.sock,#socket=$sock,#" -e "$two" conf/bench-dpdk.toml
}

# Starts the generator for $1 flows on $2 queues for $3 seconds.
start_gen() {
    "$gen" --flows "$1" --queues "$2" --seconds "$3" --cpu 0 --socket "$sock" >"$tmp/gen.out" 2>"$tmp/gen.err" &
    gen_pid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && return; sleep 0.1; done
    echo "bench-forwarding.sh: the generator did not open $sock:" >&2; cat "$tmp/gen.err" >&2; exit 1
}
# The generator's exit status: net_memif's server can crash when a client
# leaves while it sends (a race in the PMD); the round is then run again.
stop_gen() { local rc=0; wait "$gen_pid" || rc=$?; rm -f "$sock"; return $rc; }

# testpmd in mode $1 with $2 workers after $3 s of warm-up: Mpps through
# the measured port (rxonly: port 0 RX; io: port 1 TX) over $secs seconds.
testpmd_mpps() {
    local lcores="0@0,1@1" extra=(--nb-cores=1)
    [ "$2" = 2 ] && { lcores="0@0,1@0,2@1"; extra=(--nb-cores=2 --rxq=2 --txq=2); }
    { sleep "$3"; echo "show port stats all"; sleep "$secs"; echo "show port stats all"; sleep 0.3; echo quit; } |
        dpdk-testpmd --lcores "$lcores" --main-lcore 0 --no-huge -m 512 --no-shconf --no-pci --no-telemetry \
            --file-prefix "bench-tp-$$" --log-level lib.eal:warning \
            --vdev "net_memif0,role=client,id=0,socket=$sock,socket-abstract=no,mac=02:00:00:00:00:01" \
            --vdev net_null0,no-rx=1 -- -i --auto-start --forward-mode="$1" "${extra[@]}" \
            --total-num-mbufs=32768 2>/dev/null |
        awk -v mode="$1" '/NIC statistics for port/{port=$(NF-1)} /Rx-pps:/{rx[port]=$2} /Tx-pps:/{tx[port]=$2}
            END{printf "%.2f\n", (mode=="rxonly" ? rx[0] : tx[1])/1e6}'
}

# The appliance with $1 workers after $2 s of warm-up: Mpps out of port 1.
appliance_mpps() {
    local conf=$tmp/site.toml csock=$tmp/ctl.sock a b
    site "$1" >"$conf"
    "$app" run --config "$conf" --socket "$csock" --duration $(( $2 + secs + 2 )) >"$tmp/app.out" 2>"$tmp/app.err" &
    local pid=$!
    sleep "$2"
    a=$("$app" stats --json --socket "$csock") || a='{}'
    sleep "$secs"
    b=$("$app" stats --json --socket "$csock") || b='{}'
    wait "$pid" || true
    grep -m1 '^memory:' "$tmp/app.err" >&2 || true
    python3 - "$a" "$b" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
try:
    d = b["ports"]["wan"]["tx_packets"] - a["ports"]["wan"]["tx_packets"]
    print("%.2f" % (d / (b["uptime_s"] - a["uptime_s"]) / 1e6))
except (KeyError, ZeroDivisionError):
    print("0.00")
PY
}

declare -A best
keep() { best[$1]=$(awk -v a="${best[$1]:-0}" -v b="$2" 'BEGIN{print (b>a)?b:a}'); }
for flows in ${flows_list//,/ }; do
    warm=3
    [ "$flows" -gt 100000 ] && warm=8
    for w in ${workers_list//,/ }; do
        for r in $(seq "$rounds"); do
            for attempt in 1 2 3; do
                start_gen "$flows" "$w" $(( 3 * (warm + secs) + 10 ))
                rx=$(testpmd_mpps rxonly "$w" "$warm"); sleep 1
                io=$(testpmd_mpps io "$w" "$warm"); sleep 1
                ap=$(appliance_mpps "$w" "$warm")
                stop_gen && break
                echo "$flows flows, $w worker(s), round $r: the generator crashed (attempt $attempt), again" >&2
            done
            echo "$flows flows, $w worker(s), round $r: input (testpmd rxonly) $rx Mpps, testpmd io $io Mpps, appliance $ap Mpps"
            grep -h '^dpdk_gen:' "$tmp/gen.out" || true
            keep "rx $flows $w" "$rx"; keep "io $flows $w" "$io"; keep "ap $flows $w" "$ap"
        done
    done
done
echo "best of $rounds rounds, Mpps (appliance / testpmd io):"
for flows in ${flows_list//,/ }; do
    for w in ${workers_list//,/ }; do
        awk -v f="$flows" -v w="$w" -v rx="${best[rx $flows $w]}" -v io="${best[io $flows $w]}" -v ap="${best[ap $flows $w]}" \
            'BEGIN{printf "  %8d flows, %d worker(s): input %6.2f, testpmd io %6.2f, appliance %6.2f, ratio %.2f\n", f, w, rx, io, ap, ap/io}'
    done
done
