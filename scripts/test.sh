#!/usr/bin/env bash
# The project's test command (the README's second command; CI runs it too).
#
# 1. Installs the system packages the tests need if any is missing
#    (scripts/install-deps.sh: DPDK 22.11, iproute2, curl, redis-server, ...).
# 2. The whole workspace in release mode, built once with the DPDK backend
#    (`--features dpdk`): unit tests, pcap fixtures, the simulated site, the
#    redirection cluster (real redis-server), the netns lab end to end with
#    the af_packet backend, and the DPDK backend's vdev tests and the lab end
#    to end over net_af_packet vdevs. One build serves both backends (a
#    second release build without the feature would cost CI minutes and
#    test nothing more: the feature only adds the DPDK backend).
#
# Step 2 needs root (network namespaces, raw sockets, DPDK); without it those
# tests fail, they never skip. Release mode: the simulated-site tests run in
# real time and need the optimised build on a 2-core machine.
# Arguments are passed to cargo test (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --release --workspace --features dpdk "$@"
