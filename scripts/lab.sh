#!/usr/bin/env bash
# The network-namespace lab: a LAN client, the appliance's namespace, three
# ISPs (each a delay line: this kernel has no netem) and an internet server.
#
#   scripts/lab.sh up [--kernel-router]    build the lab (root)
#   scripts/lab.sh set isp-b delay_ms=40 loss=0.1
#   scripts/lab.sh status
#   scripts/lab.sh down                    idempotent
#
#   <LAB>-cli  eth0 02:00:00:00:00:02 10.0.0.2/24 fd00:1::2/64
#        |                         (default routes via 10.0.0.1, fd00:1::1)
#   <LAB>-app  lan0 02:00:00:00:00:01                (no address)
#              wan-a 02:00:00:00:0a:01  wan-b ..:0b:01  wan-c ..:0c:01
#        |             |                      |                |
#   <LAB>-isp-a up0 ~ down0   <LAB>-isp-b up0 ~ down0   <LAB>-isp-c ...
#        |  (delay line: pure L2 wire, no IP)
#   <LAB>-srv  isp-a0 02:00:00:00:0a:fe 100.64.1.1/24 2001:db8:a::1/64
#              isp-b0 02:00:00:00:0b:fe 100.64.2.1/24 2001:db8:b::1/64
#              isp-c0 02:00:00:00:0c:fe 100.64.3.1/24 2001:db8:c::1/64
#              lo     203.0.113.80/32 2001:db8:80::80/128   (the "internet")
#
# The appliance's NAT addresses are 100.64.{1,2,3}.10 and 2001:db8:{a,b,c}::10;
# the server reaches them over its connected routes (ARP/ND through the delay
# lines, answered by the appliance).
#
# --kernel-router makes <LAB>-app a plain Linux router instead (addresses on
# every port, nftables masquerade out of wan-a, default routes via isp-a), to
# check the wiring and the delay lines without the appliance.
#
# Environment: LAB (namespace prefix, default apl), DELAY_A/B/C (one-way ms,
# default 2/15/30), JITTER_A/B/C (ms, default 0), LOSS_A/B/C (0..1, default
# 0), APPLIANCE (binary; default target/release/appliance, built if missing),
# DELAY_LINE_NICE (niceness of the delay lines, default -10).
# Delay lines keep their pid, control, stats and log files in /run/<LAB>/.
set -euo pipefail

LAB=${LAB:-apl}
RUN_DIR=/run/$LAB
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ISPS=(a b c)
DELAY_LINE_NICE=${DELAY_LINE_NICE:--10}

die() {
    echo "lab.sh: $*" >&2
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: $0 up [--kernel-router] | down | status | set isp-X key=value...
  set keys: delay_ms, jitter_ms, loss (optionally a_to_b. / b_to_a. prefixed)
  env: LAB=$LAB DELAY_A/B/C JITTER_A/B/C LOSS_A/B/C APPLIANCE
EOF
    exit 2
}

# The Python with the standard library (pyenv's may lack modules).
python() {
    if [[ -x /usr/bin/python3 ]]; then /usr/bin/python3 "$@"; else python3 "$@"; fi
}

ns() { echo "$LAB-$1"; }

# Runs a command in lab namespace $1.
nsx() {
    local n
    n=$(ns "$1")
    shift
    ip netns exec "$n" "$@"
}

check_lab_name() {
    [[ $LAB =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$ ]] ||
        die "LAB=$LAB: must be 1-32 characters from A-Z a-z 0-9 _ . - (starting alphanumeric)"
}

is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }

# Offloads off (software checksums and segmentation: what AF_PACKET reads is
# what is on the wire), rx checksum offload off too so a receiver verifies
# checksums instead of trusting its veth peer; MTU 1500.
wire_up() {
    local n=$1 ifname=$2
    nsx "$n" ip link set "$ifname" mtu 1500 up
    nsx "$n" ethtool -K "$ifname" rx off tx off tso off gso off gro off >/dev/null 2>&1 ||
        nsx "$n" ethtool -K "$ifname" tx off tso off gso off gro off >/dev/null
}

# A veth pair: $1:$2 (MAC $3, or random if "-") <-> $4:$5 (MAC $6).
veth() {
    local ns1=$1 if1=$2 mac1=$3 ns2=$4 if2=$5 mac2=$6
    local a1=() a2=()
    [[ $mac1 != - ]] && a1=(address "$mac1")
    [[ $mac2 != - ]] && a2=(address "$mac2")
    ip -n "$(ns "$ns1")" link add "$if1" "${a1[@]}" type veth \
        peer name "$if2" "${a2[@]}" netns "$(ns "$ns2")"
    wire_up "$ns1" "$if1"
    wire_up "$ns2" "$if2"
}

wait_carrier() {
    local n=$1 ifname=$2 tries=0
    until ip -n "$(ns "$n")" -o link show "$ifname" | grep -q "state UP"; do
        ((++tries <= 250)) || die "$(ns "$n") $ifname has no carrier after 5 s"
        sleep 0.02
    done
}

sysctl_in() {
    local n=$1
    shift
    nsx "$n" sysctl -qw "$@" >/dev/null
}

find_appliance() {
    if [[ -n ${APPLIANCE:-} ]]; then
        [[ -x $APPLIANCE ]] || die "APPLIANCE=$APPLIANCE is not an executable file"
        echo "$APPLIANCE"
        return
    fi
    local bin=${CARGO_TARGET_DIR:-$ROOT/target}/release/appliance
    if [[ ! -x $bin ]]; then
        echo "lab.sh: $bin missing: cargo build --release" >&2
        (cd "$ROOT" && cargo build --release --bin appliance >&2)
    fi
    echo "$bin"
}

lab_namespaces() {
    ip netns list | awk '{print $1}' | grep -E "^${LAB//./\\.}-(cli|app|isp-[abc]|srv)$" || true
}

# --- up -------------------------------------------------------------------

start_delay_line() {
    local x=$1 delay=$2 jitter=$3 loss=$4 bin=$5
    local name=isp-$x
    is_number "$delay" || die "DELAY_${x^^}=$delay: must be a number of milliseconds"
    is_number "$jitter" || die "JITTER_${x^^}=$jitter: must be a number of milliseconds"
    is_number "$loss" || die "LOSS_${x^^}=$loss: must be a probability from 0 to 1"
    printf 'delay_ms = %s\njitter_ms = %s\nloss = %s\n' "$delay" "$jitter" "$loss" \
        >"$RUN_DIR/$name.control"
    # setsid: its own session, so a terminal's Ctrl-C does not reach it; it
    # does not fork here (not a group leader), so $! is the delay line's pid
    # (nice and ip netns exec exec the command too). nice: on a loaded
    # machine a delay line woken for a due frame runs before builders.
    setsid nice -n "$DELAY_LINE_NICE" ip netns exec "$(ns "$name")" "$bin" delay-line --a up0 --b down0 \
        --delay-ms "$delay" --jitter-ms "$jitter" --loss "$loss" \
        --control "$RUN_DIR/$name.control" --stats "$RUN_DIR/$name.stats.json" \
        </dev/null >"$RUN_DIR/$name.log" 2>&1 &
    echo $! >"$RUN_DIR/$name.pid"
}

cmd_up() {
    local kernel_router=0
    for arg in "$@"; do
        case $arg in
            --kernel-router) kernel_router=1 ;;
            *) die "up: unknown option $arg (allowed: --kernel-router)" ;;
        esac
    done
    local v var
    for v in A B C; do
        for var in "DELAY_$v" "JITTER_$v" "LOSS_$v"; do
            [[ -z ${!var:-} ]] || is_number "${!var}" ||
                die "$var=${!var}: must be a non-negative number (ms for DELAY/JITTER, 0..1 for LOSS)"
        done
    done
    [[ $(id -u) == 0 ]] || die "up needs root (network namespaces)"
    local existing
    existing=$(lab_namespaces)
    [[ -z $existing ]] || die "lab $LAB is already up ($(echo "$existing" | tr '\n' ' ')); run: LAB=$LAB $0 down"
    local bin
    bin=$(find_appliance)
    "$bin" delay-line --help >/dev/null 2>&1 || die "$bin has no delay-line subcommand"

    # A half-built lab is taken down again, whatever failed.
    trap 'echo "lab.sh: up failed; taking the lab down" >&2; cmd_down >/dev/null 2>&1 || true' EXIT
    mkdir -p "$RUN_DIR"
    local n
    for n in cli app isp-a isp-b isp-c srv; do
        ip netns add "$(ns "$n")"
    done
    # No IPv6 at all where the kernel must stay silent: the ISP wires, and
    # the appliance's namespace (the appliance does its own ND). Set before
    # the interfaces exist so they inherit it.
    for n in isp-a isp-b isp-c app; do
        sysctl_in "$n" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    for n in cli srv app; do
        sysctl_in "$n" net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    done
    # Client and server: no SLAAC/RS noise; ARP requests use the address of
    # the asking interface's subnet.
    for n in cli srv; do
        sysctl_in "$n" net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
            net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.all.router_solicitations=0
    done
    sysctl_in srv net.ipv4.conf.all.arp_announce=2

    veth cli eth0 02:00:00:00:00:02 app lan0 02:00:00:00:00:01
    local x
    for x in "${ISPS[@]}"; do
        veth app "wan-$x" "02:00:00:00:0$x:01" "isp-$x" up0 -
        veth "isp-$x" down0 - srv "isp-${x}0" "02:00:00:00:0$x:fe"
    done

    # Carrier follows `up` after a moment (linkwatch); frames sent before it
    # are dropped, so the lab is up only once every end has it.
    local pair
    for pair in cli:eth0 app:lan0 app:wan-a app:wan-b app:wan-c srv:isp-a0 srv:isp-b0 srv:isp-c0 \
        isp-a:up0 isp-a:down0 isp-b:up0 isp-b:down0 isp-c:up0 isp-c:down0; do
        wait_carrier "${pair%%:*}" "${pair#*:}"
    done

    nsx cli ip link set lo up
    nsx cli ip addr add 10.0.0.2/24 dev eth0
    nsx cli ip -6 addr add fd00:1::2/64 dev eth0 nodad
    nsx cli ip route add default via 10.0.0.1
    nsx cli ip -6 route add default via fd00:1::1

    nsx srv ip link set lo up
    nsx srv ip addr add 203.0.113.80/32 dev lo
    nsx srv ip -6 addr add 2001:db8:80::80/128 dev lo
    local i=1
    for x in "${ISPS[@]}"; do
        nsx srv ip addr add "100.64.$i.1/24" dev "isp-${x}0"
        nsx srv ip -6 addr add "2001:db8:$x::1/64" dev "isp-${x}0" nodad
        sysctl_in srv "net.ipv4.conf.isp-${x}0.rp_filter=0"
        i=$((i + 1))
    done

    nsx app ip link set lo up
    if ((kernel_router)); then
        setup_kernel_router
    fi

    start_delay_line a "${DELAY_A:-2}" "${JITTER_A:-0}" "${LOSS_A:-0}" "$bin"
    start_delay_line b "${DELAY_B:-15}" "${JITTER_B:-0}" "${LOSS_B:-0}" "$bin"
    start_delay_line c "${DELAY_C:-30}" "${JITTER_C:-0}" "${LOSS_C:-0}" "$bin"
    # Up once each has written its first stats (sockets open, promiscuous).
    for x in "${ISPS[@]}"; do
        local tries=0
        until [[ -s $RUN_DIR/isp-$x.stats.json ]]; do
            if ! kill -0 "$(cat "$RUN_DIR/isp-$x.pid")" 2>/dev/null || ((++tries > 100)); then
                cat "$RUN_DIR/isp-$x.log" >&2 || true
                die "delay line isp-$x did not start"
            fi
            sleep 0.05
        done
    done
    trap - EXIT
    if ((kernel_router)); then
        echo "lab $LAB up (kernel-router mode: $(ns app) routes and masquerades out of wan-a)"
    else
        echo "lab $LAB up: run the appliance in $(ns app) (lan0, wan-a, wan-b, wan-c)"
    fi
    cmd_status
}

setup_kernel_router() {
    sysctl_in app net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 \
        net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    local ifname
    for ifname in lan0 wan-a wan-b wan-c; do
        sysctl_in app "net.ipv6.conf.$ifname.disable_ipv6=0" "net.ipv4.conf.$ifname.rp_filter=0"
    done
    nsx app ip addr add 10.0.0.1/24 dev lan0
    nsx app ip -6 addr add fd00:1::1/64 dev lan0 nodad
    local i=1 x
    for x in "${ISPS[@]}"; do
        nsx app ip addr add "100.64.$i.10/24" dev "wan-$x"
        nsx app ip -6 addr add "2001:db8:$x::10/64" dev "wan-$x" nodad
        i=$((i + 1))
    done
    nsx app ip route add default via 100.64.1.1
    nsx app ip -6 route add default via 2001:db8:a::1
    nsx app nft -f - <<'EOF'
table inet lab {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan-a" masquerade
    }
}
EOF
}

# --- set ------------------------------------------------------------------

stats_field() { # file key -> value (first match) or empty
    grep -o "\"$2\": [^,]*" "$1" 2>/dev/null | head -n1 | sed 's/^[^:]*: //' || true
}

cmd_set() {
    (($# >= 2)) || usage
    local name=${1#isp-}
    shift
    [[ $name =~ ^[abc]$ ]] || die "set: unknown ISP $name (allowed: isp-a, isp-b, isp-c)"
    name=isp-$name
    local control=$RUN_DIR/$name.control stats=$RUN_DIR/$name.stats.json
    [[ -f $control ]] || die "set: $control missing: is lab $LAB up?"
    local -A new=()
    local kv key value
    for kv in "$@"; do
        [[ $kv == *=* ]] || die "set: $kv is not key=value"
        key=${kv%%=*}
        value=${kv#*=}
        [[ $key =~ ^((a_to_b|b_to_a)[.])?(delay_ms|jitter_ms|loss)$ ]] ||
            die "set: unknown key $key (allowed: delay_ms, jitter_ms, loss, optionally prefixed a_to_b. or b_to_a.)"
        is_number "$value" || die "set: $key=$value: must be a non-negative number"
        new[$key]=$value
    done
    local before
    before=$(stats_field "$stats" control_reloads)
    # Keep the keys not being set, replace the others; rename so the delay
    # line never reads half a file.
    local tmp=$control.tmp line
    : >"$tmp"
    while IFS= read -r line || [[ -n $line ]]; do
        key=$(echo "${line%%=*}" | tr -d '[:space:]')
        [[ -n ${new[$key]+x} ]] && continue
        echo "$line" >>"$tmp"
    done <"$control"
    for key in "${!new[@]}"; do
        echo "$key = ${new[$key]}" >>"$tmp"
    done
    mv -f "$tmp" "$control"
    # Wait until the delay line has read it (it checks every 50 ms).
    local tries=0 now
    while :; do
        now=$(stats_field "$stats" control_reloads)
        [[ -n $now && $now != "${before:-0}" ]] && break
        ((++tries > 60)) && die "set: $name did not pick up $control within 3 s (see $RUN_DIR/$name.log)"
        sleep 0.05
    done
    local err
    err=$(stats_field "$stats" control_error)
    [[ $err == null ]] || die "set: $name rejected the control file: $err"
    echo "$name: $(tr '\n' ' ' <"$control")"
}

# --- status ---------------------------------------------------------------

cmd_status() {
    local namespaces
    namespaces=$(lab_namespaces)
    if [[ -z $namespaces ]]; then
        echo "lab $LAB: down"
        return 0
    fi
    echo "lab $LAB namespaces: $(echo "$namespaces" | tr '\n' ' ')"
    local x name pid state
    for x in "${ISPS[@]}"; do
        name=isp-$x
        pid=$(cat "$RUN_DIR/$name.pid" 2>/dev/null || echo "?")
        if [[ $pid != "?" ]] && kill -0 "$pid" 2>/dev/null; then state=running; else state=STOPPED; fi
        echo "$name: delay line pid $pid $state"
        if [[ -f $RUN_DIR/$name.stats.json ]]; then
            python - "$RUN_DIR/$name.stats.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
for d in ("a_to_b", "b_to_a"):
    x = s[d]
    print(f"  {d}: delay {x['delay_ms']:g} ms jitter {x['jitter_ms']:g} ms loss {x['loss']:g}"
          f" | in {x['frames_in']} out {x['frames_out']} lost {x['lost']}"
          f" overflow {x['overflow']} queued {x['queued']} tx_err {x['tx_errors']}"
          f" kernel_drops {x['kernel_drops']}")
if s.get("control_error"):
    print(f"  control error: {s['control_error']}")
EOF
        fi
    done
}

# --- down -----------------------------------------------------------------

# Stops pid $1 if it is still the process named by $2 in its command line.
stop_pid() {
    local pid=$1 what=$2 i
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$what" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 40); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_down() {
    local f n pid
    for f in "$RUN_DIR"/isp-?.pid; do
        [[ -f $f ]] || continue
        stop_pid "$(cat "$f")" delay-line
    done
    # Anything else still running inside the lab's namespaces (servers a
    # test started, an appliance) goes too, so the namespaces really vanish.
    for n in $(lab_namespaces); do
        for pid in $(ip netns pids "$n" 2>/dev/null); do
            kill -TERM "$pid" 2>/dev/null || true
        done
    done
    for n in $(lab_namespaces); do
        for pid in $(ip netns pids "$n" 2>/dev/null); do
            stop_pid "$pid" ""
        done
        ip netns del "$n"
    done
    rm -rf "$RUN_DIR"
    echo "lab $LAB down"
}

main() {
    (($# >= 1)) || usage
    check_lab_name
    local cmd=$1
    shift
    case $cmd in
        up) cmd_up "$@" ;;
        down) cmd_down ;;
        set) cmd_set "$@" ;;
        status) cmd_status ;;
        *) usage ;;
    esac
}

main "$@"
