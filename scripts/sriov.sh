#!/usr/bin/env bash
# Creates SR-IOV virtual functions on a physical function for the DPDK
# backend, optionally binds them to vfio-pci, and prints the config lines
# that use them (see conf/sriov-example.toml).
#
#   scripts/sriov.sh PF NUM_VFS [--bind] [--mac-prefix 02:00:00:00:XX] [--dry-run]
#
#   PF            the PF's interface name (ens1f0) or PCI address (0000:3b:00.0)
#   NUM_VFS       VFs to create, 0..sriov_totalvfs (0 removes them)
#   --bind        bind the VFs to vfio-pci (loads the module if it can)
#   --mac-prefix  five MAC octets; VF i gets PREFIX:<i in hex> (default
#                 02:00:00:00:f0, locally administered)
#   --dry-run     print every action instead of doing it; works without the
#                 PF (VF addresses are then placeholders)
#
# Environment: SYSFS (default /sys) lets the dry run read a fake tree.
set -euo pipefail

SYSFS=${SYSFS:-/sys}
MAX_VFS=256

die() {
    echo "sriov.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '6,16p' "$0" | sed 's|^# \{0,1\}||' >&2
    exit 2
}

pf=
num=
bind=0
dry=0
mac_prefix=02:00:00:00:f0
while (($#)); do
    case $1 in
        --bind) bind=1 ;;
        --dry-run) dry=1 ;;
        --mac-prefix)
            (($# >= 2)) || die "--mac-prefix needs a value (five octets, e.g. 02:00:00:00:f0)"
            mac_prefix=$2
            shift
            ;;
        -h | --help) usage ;;
        -*) die "unknown option $1 (allowed: --bind, --mac-prefix, --dry-run)" ;;
        *)
            if [[ -z $pf ]]; then
                pf=$1
            elif [[ -z $num ]]; then
                num=$1
            else
                die "unexpected argument $1 (usage: PF NUM_VFS [--bind] [--mac-prefix P] [--dry-run])"
            fi
            ;;
    esac
    shift
done
[[ -n $pf && -n $num ]] || usage

PCI_RE='^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$'
IFNAME_RE='^[A-Za-z0-9_.:-]{1,15}$'
[[ $pf =~ $PCI_RE || ($pf =~ $IFNAME_RE && $pf != *:*) ]] ||
    die "PF = $pf: must be an interface name (ens1f0, at most 15 characters) or a PCI address (0000:3b:00.0)"
if ! [[ $num =~ ^[0-9]{1,3}$ ]] || ((10#$num > MAX_VFS)); then
    die "NUM_VFS = $num: must be a whole number from 0 to $MAX_VFS (and at most the PF's sriov_totalvfs)"
fi
num=$((10#$num))
[[ $mac_prefix =~ ^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){4}$ ]] ||
    die "--mac-prefix = $mac_prefix: must be five hex octets like 02:00:00:00:f0"
first_octet=$((16#${mac_prefix%%:*}))
if ((first_octet & 1)); then
    die "--mac-prefix = $mac_prefix: multicast bit set in the first octet; use e.g. 02:..."
fi

# Runs (or, dry, prints) an action. Writes to sysfs go through `put`.
act() {
    if ((dry)); then
        echo "would run: $*"
    else
        echo "run: $*"
        "$@"
    fi
}

put() { # value file
    if ((dry)); then
        echo "would write: echo $1 > $2"
    else
        echo "write: echo $1 > $2"
        echo "$1" >"$2"
    fi
}

# The PF's device directory and PCI address.
if [[ $pf =~ $PCI_RE ]]; then
    pf_pci=${pf,,}
    dev=$SYSFS/bus/pci/devices/$pf_pci
    pf_if=
    for n in "$dev"/net/*; do
        [[ -e $n ]] && pf_if=$(basename "$n") && break
    done
else
    pf_if=$pf
    dev=$SYSFS/class/net/$pf/device
    [[ -e $dev ]] && dev=$(readlink -f "$dev")
    pf_pci=$(basename "$dev")
fi

have_pf=1
if [[ ! -e $dev ]]; then
    ((dry)) || die "PF $pf not found ($dev missing)"
    echo "sriov.sh: PF $pf not found; dry run continues with placeholder VF addresses"
    have_pf=0
elif [[ ! -e $dev/sriov_totalvfs ]]; then
    die "PF $pf ($pf_pci) has no SR-IOV capability, or its driver does not support SR-IOV ($dev/sriov_totalvfs missing)"
fi

if ((have_pf)); then
    total=$(cat "$dev/sriov_totalvfs")
    ((num <= total)) || die "NUM_VFS = $num: PF $pf supports at most $total VFs (sriov_totalvfs)"
    current=$(cat "$dev/sriov_numvfs")
    echo "sriov.sh: PF $pf ($pf_pci${pf_if:+, $pf_if}): $current VFs now, $total at most"
    # The count can only change through 0.
    if ((current != num)); then
        ((current == 0)) || put 0 "$dev/sriov_numvfs"
        ((num == 0)) || put "$num" "$dev/sriov_numvfs"
    fi
else
    put 0 "$dev/sriov_numvfs"
    ((num == 0)) || put "$num" "$dev/sriov_numvfs"
fi
if ((num == 0)); then
    echo "sriov.sh: no VFs on $pf"
    exit 0
fi

# VF i's PCI address: the virtfn<i> link once the VFs exist; before that (dry
# run) the PF's routing ID + sriov_offset + i * sriov_stride.
vf_pci() {
    local i=$1 link=$dev/virtfn$1
    if [[ -e $link ]]; then
        basename "$(readlink -f "$link")"
    elif ((have_pf)) && [[ -r $dev/sriov_offset && -r $dev/sriov_stride && $pf_pci =~ $PCI_RE ]]; then
        local domain=${pf_pci%%:*} rest=${pf_pci#*:}
        local bus=$((16#${rest%%:*})) df=${rest#*:}
        local devfn=$(((16#${df%%.*} << 3) | ${df#*.}))
        local rid=$(((bus << 8) + devfn + $(cat "$dev/sriov_offset") + i * $(cat "$dev/sriov_stride")))
        printf '%s:%02x:%02x.%x\n' "$domain" $((rid >> 8 & 0xff)) $((rid >> 3 & 0x1f)) $((rid & 7))
    else
        echo "<pci-address-of-vf$i>"
    fi
}

vfs=()
macs=()
for ((i = 0; i < num; i++)); do
    vfs+=("$(vf_pci "$i")")
    macs+=("$(printf '%s:%02x' "$mac_prefix" "$i")")
    # A fixed MAC (the appliance's port MAC), spoof check off (it forwards
    # frames of the LAN clients' flows), trusted (promiscuous/multicast).
    act ip link set "${pf_if:-$pf}" vf "$i" mac "${macs[i]}"
    act ip link set "${pf_if:-$pf}" vf "$i" spoofchk off trust on
done

if ((bind)); then
    if [[ ! -d $SYSFS/bus/pci/drivers/vfio-pci ]]; then
        if ((dry)); then
            echo "would run: modprobe vfio-pci"
        elif [[ ! -e /proc/modules ]]; then
            die "vfio-pci is not loaded and this kernel cannot load modules (no /proc/modules): use a kernel with CONFIG_VFIO_PCI=y, or leave the VFs on their kernel driver and use DPDK's net_af_packet/net_af_xdp vdevs on their interfaces"
        elif ! modprobe vfio-pci; then
            die "modprobe vfio-pci failed (module not installed for $(uname -r)?): install it, or leave the VFs on their kernel driver and use DPDK's net_af_packet/net_af_xdp vdevs on their interfaces"
        fi
    fi
    groups=("$SYSFS"/kernel/iommu_groups/*)
    if [[ ! -e ${groups[0]} ]]; then
        echo "sriov.sh: warning: no IOMMU groups: enable the IOMMU (intel_iommu=on / amd_iommu=on iommu=pt)," \
            "or, for a lab only, echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode" >&2
    fi
    for vf in "${vfs[@]}"; do
        put vfio-pci "$SYSFS/bus/pci/devices/$vf/driver_override"
        if ((dry)) || [[ -e $SYSFS/bus/pci/devices/$vf/driver ]]; then
            put "$vf" "$SYSFS/bus/pci/devices/$vf/driver/unbind"
        fi
        put "$vf" "$SYSFS/bus/pci/drivers_probe"
    done
fi

echo
echo "# Config lines for these VFs (name the ports for your site, e.g. lan, wan-a, ...):"
for ((i = 0; i < num; i++)); do
    cat <<EOF
[[ports]]
name = "vf$i"
device = "${vfs[i]}"
mac = "${macs[i]}"

EOF
done
printf '[dpdk]\nallow = ['
for ((i = 0; i < num; i++)); do
    ((i == 0)) || printf ', '
    printf '"%s"' "${vfs[i]}"
done
printf ']\n'
