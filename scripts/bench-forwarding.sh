#!/usr/bin/env bash
# The appliance's forwarding rate on DPDK vdevs beside dpdk-testpmd's io
# forwarding on the same vdevs and the same forwarding core, measured in the
# same run (alternating rounds), printed with the ratio.
#
#   scripts/bench-forwarding.sh [-s SECONDS] [-r ROUNDS]
#
# The vdevs (see conf/bench-dpdk.toml): port 0 is net_pcap replaying a
# capture of 64 UDP flows in an endless loop, port 1 is net_null. The figure
# is the rate of frames taken from port 0 and sent out of port 1: testpmd
# moves them untouched; the appliance classifies, NATs (established path)
# and rewrites each. Both also poll port 1, whose all-zero frames testpmd
# forwards and the appliance drops at classify. Needs root, DPDK 22.11
# (dpdk-testpmd from the dpdk-dev package) and a --features dpdk build.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=10
rounds=2
while getopts "s:r:h" o; do
    case $o in
        s) secs=$OPTARG ;;
        r) rounds=$OPTARG ;;
        *) sed -n '2,15p' "$0"; exit 2 ;;
    esac
done
[[ $secs =~ ^[0-9]+$ && $secs -ge 1 ]] || { echo "bench-forwarding.sh: -s takes whole seconds >= 1" >&2; exit 2; }
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 ]] || { echo "bench-forwarding.sh: -r takes a count >= 1" >&2; exit 2; }
command -v dpdk-testpmd >/dev/null || { echo "bench-forwarding.sh: dpdk-testpmd missing (scripts/install-deps.sh)" >&2; exit 1; }

cargo build --release --features dpdk -q
app=target/release/appliance
pcap=/tmp/appliance-bench-flows.pcap

# 64 UDP flows 10.0.0.(2..17):(40000+i) -> 203.0.113.5:53, 60-byte frames.
/usr/bin/python3 - "$pcap" <<'PY'
import struct, sys
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
with open(sys.argv[1], 'wb') as f:
    f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    for i in range(64):
        payload = b'x' * 18
        udp = struct.pack('!HHHH', 40000 + i, 53, 8 + len(payload), 0) + payload
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         bytes([10, 0, 0, 2 + i % 16]), bytes([203, 0, 113, 5]))
        ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
        frame = bytes.fromhex('020000000001' '0200000000aa' '0800') + ip + udp
        f.write(struct.pack('<IIII', 0, 0, len(frame), len(frame)) + frame)
PY

testpmd_mpps() {
    { sleep 2; echo start; sleep "$secs"; echo stop; sleep 1; echo quit; } |
        dpdk-testpmd -l 0-1 --no-huge -m 512 --no-pci --file-prefix "bench-tp-$$" \
            --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1,tx_pcap=/dev/null" --vdev net_null0 \
            -- --forward-mode=io --total-num-mbufs 32768 -i 2>/dev/null |
        awk -v s="$secs" '/Forward statistics for port 0/{p=1} p && /RX-packets/{printf "%.2f\n", $2/s/1e6; exit}'
}

appliance_mpps() {
    "$app" run --config conf/bench-dpdk.toml --duration "$secs" 2>/dev/null |
        awk '/^ran /{d=$2} /^  lan /{n=$3} END{printf "%.2f\n", n/d/1e6}'
}

best_tp=0
best_app=0
for r in $(seq "$rounds"); do
    tp=$(testpmd_mpps)
    ap=$(appliance_mpps)
    echo "round $r: testpmd io ${tp} Mpps, appliance ${ap} Mpps"
    best_tp=$(awk -v a="$best_tp" -v b="$tp" 'BEGIN{print (b>a)?b:a}')
    best_app=$(awk -v a="$best_app" -v b="$ap" 'BEGIN{print (b>a)?b:a}')
done
awk -v t="$best_tp" -v a="$best_app" 'BEGIN{printf "best of rounds: testpmd %.2f Mpps, appliance %.2f Mpps, ratio %.2f\n", t, a, a/t}'
