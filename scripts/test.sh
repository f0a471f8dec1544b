#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
#
# 1. Installs the system packages the tests need if any is missing
#    (scripts/install-deps.sh: DPDK 22.11, iproute2, curl, redis-server, ...).
# 2. The whole workspace in release mode: unit tests, pcap fixtures, the
#    simulated site, the redirection cluster (real redis-server), and the
#    netns lab end to end with the af_packet backend.
# 3. The DPDK backend (`--features dpdk`): its vdev tests and the lab end to
#    end over net_af_packet vdevs.
#
# Steps 2 and 3 need root (network namespaces, raw sockets, DPDK); without it
# those tests fail, they never skip. Release mode: the simulated-site tests
# run in real time and need the optimised build on a 2-core machine.
# Arguments are passed to step 2 only (e.g. a test name filter); with
# arguments step 3 is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --release --workspace "$@"
if (($# == 0)); then
    cargo test --release --features dpdk --test dpdk_ports
    cargo test --release --features dpdk --test lab_e2e dpdk
fi
