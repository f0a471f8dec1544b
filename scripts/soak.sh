#!/usr/bin/env bash
# A soak of the appliance in the netns lab (scripts/lab.sh), af_packet backend:
# for SOAK_SECS, several well-behaved LAN hosts make HTTP requests (curl, one
# connection each) and UDP requests from many source ports, while one more
# host floods unanswered SYNs (hping3, bounded count) in the middle. Then the
# traffic stops and the soak waits for the NAT's timeouts to empty the table.
#
#   scripts/soak.sh                 (root; ~SOAK_SECS + the longest timeout)
#
# Prints, every SOAK_SAMPLE_SECS: live sessions (TCP, UDP) and the
# appliance's RSS; at the end one line
#   soak: result tcp_ok=.. tcp_failed=.. udp_ok=.. udp_failed=.. sessions_end=..
#         rss_kb_first=.. rss_kb_mid=.. rss_kb_max=.. rss_kb_end=.. flood_sent=..
# (RSS: at the first sample, at the first sample after the flood, the
# highest, and once sessions are back to 0)
# and exits 1 when a well-behaved host had a failed request or sessions did not
# return to 0 (the RSS numbers are for the reader and the CI test).
#
# Environment:
#   SOAK_SECS (600)             traffic time, seconds
#   SOAK_SAMPLE_SECS (10)       sampling period of sessions and RSS
#   SOAK_HOSTS (4)              well-behaved LAN hosts (10.0.0.2 ..)
#   SOAK_FLOOD_COUNT (100000)   SYNs of the flood (at SOAK_SECS/2, 10,000/s)
#   SOAK_UDP_TIMEOUT_S, SOAK_TCP_TRANSITORY_S, SOAK_TCP_CLOSED_S,
#   SOAK_ICMP_TIMEOUT_S         [nat] timeouts (default: conf/lab-afpacket.toml's)
#   SOAK_OUT (a new temp dir)   where the config, logs and stats JSON go
#   LAB (soak<pid>), APPLIANCE (target/release/appliance)
# Every packet stays in the lab's namespaces; the lab is taken down on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SOAK_SECS=${SOAK_SECS:-600}
SAMPLE=${SOAK_SAMPLE_SECS:-10}
HOSTS=${SOAK_HOSTS:-4}
FLOOD_COUNT=${SOAK_FLOOD_COUNT:-100000}
export LAB=${LAB:-soak$$}
APPLIANCE=${APPLIANCE:-$ROOT/target/release/appliance}
export APPLIANCE
OUT=${SOAK_OUT:-$(mktemp -d /tmp/soak.XXXXXX)}
SERVER=203.0.113.80
BLACKHOLE=203.0.113.99
FLOODER=10.0.0.99
HTTP_PORT=8080
UDP_PORT=9999
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

die() {
    echo "soak.sh: $*" >&2
    exit 2
}

for v in SOAK_SECS SAMPLE HOSTS FLOOD_COUNT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v=${!v}: must be a positive whole number"
done
((HOSTS <= 90)) || die "SOAK_HOSTS=$HOSTS: at most 90"
for v in SOAK_UDP_TIMEOUT_S SOAK_TCP_TRANSITORY_S SOAK_TCP_CLOSED_S SOAK_ICMP_TIMEOUT_S; do
    [[ -z ${!v:-} || ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v}: must be a whole number of seconds"
done
[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
for tool in hping3 nft curl script "$PY"; do
    command -v "$tool" >/dev/null || die "$tool missing: run scripts/install-deps.sh"
done
[[ -x $APPLIANCE ]] || die "APPLIANCE=$APPLIANCE: not built (cargo build --release)"
mkdir -p "$OUT"

nsx() {
    local n=$LAB-$1
    shift
    ip netns exec "$n" "$@"
}

PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    if [[ -n ${APP_PID:-} ]]; then
        kill "$APP_PID" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    bash "$ROOT/scripts/lab.sh" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- the lab, its servers and hosts ---------------------------------------
bash "$ROOT/scripts/lab.sh" up >"$OUT/lab.log" 2>&1 || {
    cat "$OUT/lab.log" >&2
    die "lab.sh up failed"
}
mkdir -p "$OUT/www"
head -c 2048 /dev/zero | tr '\0' 'x' >"$OUT/www/page.txt"
(cd "$OUT/www" && exec ip netns exec "$LAB-srv" "$PY" -m http.server --bind "$SERVER" "$HTTP_PORT" \
    >"$OUT/http.log" 2>&1) &
PIDS+=($!)
ip netns exec "$LAB-srv" "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(b"echo:" + d, a)
' "$SERVER" "$UDP_PORT" >"$OUT/udp-echo.log" 2>&1 &
PIDS+=($!)
# The flood's target: routed to the server namespace, dropped there.
nsx srv ip addr add "$BLACKHOLE/32" dev lo
nsx srv nft "add table inet soak; add chain inet soak pre { type filter hook prerouting priority -300; }; add rule inet soak pre ip daddr $BLACKHOLE counter drop"
GOOD=()
for ((i = 0; i < HOSTS; i++)); do
    GOOD+=("10.0.0.$((2 + i))")
    ((i == 0)) || nsx cli ip addr add "10.0.0.$((2 + i))/24" dev eth0
done
nsx cli ip addr add "$FLOODER/24" dev eth0

# --- the appliance ----------------------------------------------------------
CONFIG=$OUT/soak.toml
sed_args=()
[[ -z ${SOAK_UDP_TIMEOUT_S:-} ]] || sed_args+=(-e "s/^udp_idle_timeout_s = .*/udp_idle_timeout_s = $SOAK_UDP_TIMEOUT_S/")
[[ -z ${SOAK_TCP_TRANSITORY_S:-} ]] || sed_args+=(-e "s/^tcp_transitory_timeout_s = .*/tcp_transitory_timeout_s = $SOAK_TCP_TRANSITORY_S/")
[[ -z ${SOAK_TCP_CLOSED_S:-} ]] || sed_args+=(-e "s/^tcp_closed_timeout_s = .*/tcp_closed_timeout_s = $SOAK_TCP_CLOSED_S/")
[[ -z ${SOAK_ICMP_TIMEOUT_S:-} ]] || sed_args+=(-e "s/^icmp_timeout_s = .*/icmp_timeout_s = $SOAK_ICMP_TIMEOUT_S/")
sed "${sed_args[@]}" -e '' "$ROOT/conf/lab-afpacket.toml" >"$CONFIG"
timeout_of() { sed -n "s/^$1 = \([0-9]*\).*/\1/p" "$CONFIG"; }
LONGEST=0
for k in udp_idle_timeout_s tcp_transitory_timeout_s tcp_closed_timeout_s icmp_timeout_s; do
    t=$(timeout_of "$k")
    ((t > LONGEST)) && LONGEST=$t
done
# The live status line is printed only on a terminal: give it one.
script -qfec "ip netns exec $LAB-app sh -c 'echo \$\$ > $OUT/appliance.pid; exec $APPLIANCE run --config $CONFIG --stats-out $OUT/stats.json'" \
    "$OUT/appliance.tty" >/dev/null 2>&1 &
SCRIPT_PID=$!
PIDS+=("$SCRIPT_PID")
for _ in $(seq 50); do
    [[ -s $OUT/appliance.pid ]] && break
    sleep 0.1
done
APP_PID=$(cat "$OUT/appliance.pid" 2>/dev/null) || die "the appliance did not start: $(cat "$OUT/appliance.tty")"
sleep 2
kill -0 "$APP_PID" 2>/dev/null || die "the appliance exited: $(cat "$OUT/appliance.tty")"

# Live sessions "tcp udp" from the last status line.
sessions() {
    tr '\r' '\n' <"$OUT/appliance.tty" | sed -n 's/.*sessions tcp \([0-9]*\) udp \([0-9]*\).*/\1 \2/p' | tail -1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$APP_PID/status" 2>/dev/null || echo 0; }

# --- traffic ------------------------------------------------------------------
END=$(($(date +%s) + SOAK_SECS))
for h in "${GOOD[@]}"; do
    (
        while (($(date +%s) < END)); do
            code=$(nsx cli curl -s --interface "$h" -m 10 -o /dev/null -w '%{http_code}' \
                "http://$SERVER:$HTTP_PORT/page.txt" || true)
            echo "$code" >>"$OUT/tcp-$h.codes"
            sleep 0.2
        done
    ) &
    PIDS+=($!)
    # UDP: a new source port for every request (cycling through 2,000 per
    # host), 20 requests a second, each answered within 1 s or retried once.
    ip netns exec "$LAB-cli" "$PY" -c '
import socket, sys, time
src, dst, dport, base, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
ok = failed = i = 0
while time.time() < end:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((src, base + i % 2000))
    s.settimeout(1.0)
    msg = b"soak %d" % i
    got = False
    for attempt in range(2):
        s.sendto(msg, (dst, dport))
        try:
            while True:
                d, _ = s.recvfrom(2048)
                if d == b"echo:" + msg:
                    got = True
                    break
        except socket.timeout:
            pass
        if got:
            break
    s.close()
    ok += got
    failed += not got
    i += 1
    time.sleep(0.05)
print("udp ok %d failed %d" % (ok, failed), flush=True)
' "$h" "$SERVER" "$UDP_PORT" "$((20000 + 2000 * ${h##*.}))" "$END" >"$OUT/udp-$h.out" 2>&1 &
    PIDS+=($!)
done
FLOOD_AT=$(($(date +%s) + SOAK_SECS / 2))
(
    sleep $((SOAK_SECS / 2))
    nsx cli timeout 120 hping3 -q -S -i u100 -c "$FLOOD_COUNT" -a "$FLOODER" -p 9 "$BLACKHOLE" \
        >"$OUT/flood.log" 2>&1 || true
) &
FLOOD_PID=$!
PIDS+=("$FLOOD_PID")

printf 'soak: lab %s, %d s of traffic from %d hosts, flood of %d SYNs at +%d s; out %s\n' \
    "$LAB" "$SOAK_SECS" "$HOSTS" "$FLOOD_COUNT" $((SOAK_SECS / 2)) "$OUT"
printf '%8s %8s %8s %10s %s\n' time tcp udp rss_kb phase
START=$(date +%s)
RSS_FIRST=""
RSS_MID=0
RSS_MAX=0
sample() {
    local s r t phase
    s=$(sessions)
    r=$(rss_kb)
    t=$(($(date +%s) - START))
    phase=$1
    [[ -n $RSS_FIRST ]] || RSS_FIRST=$r
    ((r > RSS_MAX)) && RSS_MAX=$r
    printf '%8s %8s %8s %10s %s\n' "${t}s" "${s% *}" "${s#* }" "$r" "$phase" | tee -a "$OUT/samples.txt"
}
while (($(date +%s) < END)); do
    now=$(date +%s)
    if ((now < FLOOD_AT)); then
        phase=traffic
    elif kill -0 "$FLOOD_PID" 2>/dev/null; then
        phase=traffic+flood
    else
        phase=traffic
    fi
    sample "$phase"
    # The first sample once the flood is over.
    if ((RSS_MID == 0 && now >= FLOOD_AT)) && ! kill -0 "$FLOOD_PID" 2>/dev/null; then
        RSS_MID=$(rss_kb)
    fi
    sleep "$SAMPLE"
done
wait "$FLOOD_PID" 2>/dev/null || true
((RSS_MID > 0)) || RSS_MID=$(rss_kb)
# Let the last requests finish (curl -m 10, UDP 2 s).
sleep 11
# --- back to 0 after the timeouts -------------------------------------------
SETTLE_UNTIL=$(($(date +%s) + LONGEST + 15))
while :; do
    s=$(sessions)
    sample idle
    [[ $s == "0 0" ]] && break
    (($(date +%s) >= SETTLE_UNTIL)) && break
    sleep "$(((SAMPLE < 5) ? SAMPLE : 5))"
done
SESSIONS_END=$(sessions)
RSS_END=$(rss_kb)
kill -TERM "$APP_PID"
for _ in $(seq 100); do
    kill -0 "$APP_PID" 2>/dev/null || break
    sleep 0.1
done
APP_PID=""
wait "$SCRIPT_PID" 2>/dev/null || true
[[ -s $OUT/stats.json ]] || die "no stats JSON from the appliance: $(tail -c 2000 "$OUT/appliance.tty")"

# --- results ------------------------------------------------------------------
TCP_OK=0
TCP_FAILED=0
UDP_OK=0
UDP_FAILED=0
for h in "${GOOD[@]}"; do
    ok=$(grep -c '^200$' "$OUT/tcp-$h.codes" || true)
    bad=$(grep -vc '^200$' "$OUT/tcp-$h.codes" || true)
    read -r _ _ uok _ ubad < <(cat "$OUT/udp-$h.out") || die "UDP client of $h: $(cat "$OUT/udp-$h.out")"
    printf 'soak: host %-10s tcp ok %6d failed %d   udp ok %6d failed %d\n' "$h" "$ok" "$bad" "$uok" "$ubad"
    TCP_OK=$((TCP_OK + ok))
    TCP_FAILED=$((TCP_FAILED + bad))
    UDP_OK=$((UDP_OK + uok))
    UDP_FAILED=$((UDP_FAILED + ubad))
done
FLOOD_SENT=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$OUT/flood.log" | tail -1)
"$PY" - "$OUT/stats.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
n = s["nat"]
keys = ["created", "expired", "table_full", "evicted_unanswered", "evicted_closed", "host_sessions_limit",
        "host_rate_limit", "host_races_limit", "mapping_sessions_limit", "tcp_sessions", "udp_sessions"]
print("soak: nat " + " ".join("%s=%s" % (k, n.get(k)) for k in keys))
print("soak: top offenders " + ", ".join("%s (%s refusals)" % (o["host"], o["refusals"])
                                          for o in n.get("top_offenders", [])))
print("soak: races %s, lan rx %s tx %s" % (s["selection"]["races"], s["ports"]["lan"]["rx_packets"],
                                           s["ports"]["lan"]["tx_packets"]))
EOF
echo "soak: result tcp_ok=$TCP_OK tcp_failed=$TCP_FAILED udp_ok=$UDP_OK udp_failed=$UDP_FAILED" \
    "sessions_end=${SESSIONS_END/ /+} rss_kb_first=$RSS_FIRST rss_kb_mid=$RSS_MID rss_kb_max=$RSS_MAX" \
    "rss_kb_end=$RSS_END flood_sent=${FLOOD_SENT:-0}"
if ((TCP_FAILED + UDP_FAILED > 0)) || [[ $SESSIONS_END != "0 0" ]]; then
    echo "soak: FAILED (failed requests of well-behaved hosts, or sessions left)" >&2
    exit 1
fi
echo "soak: ok"
