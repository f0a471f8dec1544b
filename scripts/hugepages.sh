#!/usr/bin/env bash
# Reserves 2 MiB hugepages for DPDK and mounts hugetlbfs on /dev/hugepages.
#
#   scripts/hugepages.sh [N]     reserve N pages (default 512 = 1 GiB), mount
#   scripts/hugepages.sh --off   release the pages; unmount /dev/hugepages
#                                once no page is held any more
#
# Prints what it did and the HugePages_* lines of /proc/meminfo. The kernel
# may reserve fewer pages than asked when memory is fragmented; the script
# then says so and fails. Without hugepages, run DPDK with
# `hugepages = false` (EAL --no-huge) instead.
set -euo pipefail

NR=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
MOUNT=/dev/hugepages
MAX_PAGES=1048576 # 2 TiB: a larger count is a typo

die() {
    echo "hugepages.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 [N | --off]   (N: number of 2 MiB pages, 1..$MAX_PAGES, default 512)" >&2
    exit 2
}

off=0
pages=512
case $# in
    0) ;;
    1)
        case $1 in
            --off) off=1 ;;
            -h | --help) usage ;;
            *)
                if ! [[ $1 =~ ^[0-9]{1,9}$ ]] || ((10#$1 < 1 || 10#$1 > MAX_PAGES)); then
                    die "N = $1: must be a whole number of 2 MiB pages from 1 to $MAX_PAGES (or --off)"
                fi
                pages=$((10#$1))
                ;;
        esac
        ;;
    *) usage ;;
esac

[[ -w $NR ]] || die "$NR is not writable: run as root, on a kernel with 2 MiB hugepages"

if ((off)); then
    echo 0 >"$NR"
    held=$(cat "$NR")
    echo "hugepages.sh: released 2 MiB hugepages ($held still held by running processes)"
    if ((held == 0)) && [[ $(findmnt -n -o FSTYPE "$MOUNT" 2>/dev/null || true) == hugetlbfs ]]; then
        umount "$MOUNT"
        echo "hugepages.sh: unmounted $MOUNT"
    fi
else
    before=$(cat "$NR")
    echo "$pages" >"$NR"
    got=$(cat "$NR")
    echo "hugepages.sh: 2 MiB hugepages: $before -> $got (asked $pages)"
    if ! mountpoint -q "$MOUNT"; then
        mkdir -p "$MOUNT"
        mount -t hugetlbfs -o pagesize=2M nodev "$MOUNT"
        echo "hugepages.sh: mounted hugetlbfs on $MOUNT"
    else
        echo "hugepages.sh: $MOUNT already mounted ($(findmnt -n -o FSTYPE "$MOUNT"))"
    fi
fi
grep '^HugePages_' /proc/meminfo
if ((!off && got < pages)); then
    die "only $got of $pages pages could be reserved (memory fragmented?): try fewer, or at boot (hugepages=$pages)"
fi
