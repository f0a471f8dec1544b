#!/usr/bin/env bash
# Installs, non-interactively, the Debian/Ubuntu packages the project needs to
# build, test and run its labs. Idempotent: packages already installed are
# skipped, and nothing is fetched when none is missing. CI calls it.
#
#   scripts/install-deps.sh             install what is missing (root or sudo)
#   scripts/install-deps.sh --dry-run   list what would be installed
#
# The Rust toolchain comes from rustup (see rust-version in Cargo.toml), not
# from apt.
set -euo pipefail

PACKAGES=(
    # Building: the C toolchain (DPDK shim), pkg-config for libdpdk. (Add
    # libclang-dev if the DPDK bindings move to bindgen.)
    build-essential pkg-config
    # DPDK 22.11: headers and libraries, PMDs, dpdk-testpmd; libbsd for a
    # static link.
    dpdk dpdk-dev libdpdk-dev libbsd-dev
    # The netns lab and its checks (scripts/lab.sh, tests/lab_selftest.rs).
    iproute2 ethtool nftables iputils-ping tcpdump iperf3 curl procps util-linux
    # The lab's SYN flood (tests/lab_hostile.rs).
    hping3
    # SR-IOV setup (scripts/sriov.sh): modprobe, lspci.
    kmod pciutils
    # The shared redirection store the cluster tests start on loopback;
    # openssl makes the certificates of its TLS test.
    redis-server openssl
    # Prometheus and promtool: tests/telemetry.rs checks the metrics
    # endpoint with `promtool check metrics` and scrapes it with a real
    # server it starts on loopback.
    prometheus
    # nfdump's nfcapd and nfdump: tests/nat_log.rs sends the NAT event log's
    # IPFIX to a real collector on loopback and reads the records back.
    nfdump
    # Debian's Python with scapy for packet fixtures; the lab's HTTP server.
    python3 python3-scapy
    # Instruction counts of the benchmarks; script linting.
    valgrind shellcheck
)

dry_run=0
for arg in "$@"; do
    case $arg in
        --dry-run) dry_run=1 ;;
        -h | --help)
            sed -n '2,10p' "$0"
            exit 0
            ;;
        *)
            echo "install-deps.sh: unknown argument $arg (allowed: --dry-run)" >&2
            exit 2
            ;;
    esac
done

command -v apt-get >/dev/null || {
    echo "install-deps.sh: needs apt-get (Debian 12 / Ubuntu 22.04 or later)" >&2
    exit 1
}

missing=()
for p in "${PACKAGES[@]}"; do
    if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) != "install ok installed" ]]; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-deps.sh: all ${#PACKAGES[@]} packages installed"
else
    echo "install-deps.sh: missing: ${missing[*]}"
    if ((dry_run)); then
        exit 0
    fi
    sudo=()
    if (($(id -u) != 0)); then
        command -v sudo >/dev/null || {
            echo "install-deps.sh: run as root (or install sudo)" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    echo "install-deps.sh: installed ${#missing[@]} packages"
fi

if ! command -v cargo >/dev/null; then
    echo "install-deps.sh: no cargo on PATH: install Rust with rustup (https://rustup.rs)" >&2
fi
