//! Offloads and MTU of the af_packet backend's interfaces, through the
//! SIOCETHTOOL ioctl's feature commands (what `ethtool -K` uses:
//! `ETHTOOL_GSSET_INFO` + `ETHTOOL_GSTRINGS` for the names of the
//! interface's features, `ETHTOOL_GFEATURES` / `ETHTOOL_SFEATURES` for their
//! bits) and SIOCGIFMTU.
//!
//! With GRO or LRO on, the kernel hands an AF_PACKET socket merged frames of
//! up to 64 KiB, larger than a packet buffer; segmentation offloads are of
//! no use to a sender of whole frames. So at start the backend turns the
//! features of [`OFFLOADS`] off on each interface (those it has and may
//! change), logs what it changed, and turns them back on when it stops. A
//! refusal (no CAP_NET_ADMIN) is logged, and what GRO then makes is counted
//! as `rx_oversize`.
#![allow(unsafe_code)]

use std::io;
use std::mem::zeroed;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// linux/ethtool.h
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;
/// Feature names read at most (Linux has about 70).
const FEATURES_MAX: usize = 1024;

/// The features turned off at start (kernel names, as `ethtool -k -V`
/// would not show them: `rx-gro` is "generic-receive-offload", the
/// `tx-tcp*` ones together "tcp-segmentation-offload"). A name the
/// interface lacks is skipped.
pub const OFFLOADS: &[&str] = &[
    "rx-gro",
    "rx-lro",
    "rx-gro-hw",
    "rx-gro-list",
    "rx-udp-gro-forwarding",
    "tx-generic-segmentation",
    "tx-tcp-segmentation",
    "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation",
    "tx-tcp6-segmentation",
    "tx-tcp-accecn-segmentation",
    "tx-udp-segmentation",
];

/// A datagram socket of the calling thread's namespace for the ioctls.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn ifreq(ifname: &str) -> io::Result<libc::ifreq> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name `{ifname}`"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    Ok(ifr)
}

/// Runs the ethtool command at the start of `buf` (its first word) on
/// `ifname`; the kernel reads and writes `buf` in place.
fn ethtool(sock: &OwnedFd, ifname: &str, buf: &mut [u64]) -> io::Result<()> {
    let mut ifr = ifreq(ifname)?;
    ifr.ifr_ifru.ifru_data = buf.as_mut_ptr().cast();
    // SAFETY: `buf` is sized by the caller for the command in its first
    // word (the header plus the entries the command's count asks for), is
    // 8-aligned (the structures hold at most u64s), and lives through the
    // call; the kernel touches nothing beyond what the command says.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCETHTOOL,
            &mut ifr as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Views `buf` as native-endian u32 words.
fn words(buf: &mut [u64]) -> &mut [u32] {
    // SAFETY: u64 storage reinterpreted as twice as many u32s: same
    // memory, stricter alignment than needed, every bit pattern valid.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u32>(), buf.len() * 2) }
}

/// The names of `ifname`'s features, in bit order.
fn feature_names(sock: &OwnedFd, ifname: &str) -> io::Result<Vec<String>> {
    // struct ethtool_sset_info { u32 cmd; u32 reserved; u64 sset_mask; u32 data[1]; }
    let mut info = [0u64; 3];
    words(&mut info)[0] = ETHTOOL_GSSET_INFO;
    info[1] = 1 << ETH_SS_FEATURES;
    ethtool(sock, ifname, &mut info)?;
    let n = if info[1] & (1 << ETH_SS_FEATURES) != 0 {
        (words(&mut info)[4] as usize).min(FEATURES_MAX)
    } else {
        0
    };
    // struct ethtool_gstrings { u32 cmd; u32 string_set; u32 len; u8 data[]; }
    let bytes = 12 + n * ETH_GSTRING_LEN;
    let mut buf = vec![0u64; bytes.div_ceil(8)];
    {
        let w = words(&mut buf);
        w[0] = ETHTOOL_GSTRINGS;
        w[1] = ETH_SS_FEATURES;
        w[2] = n as u32;
    }
    ethtool(sock, ifname, &mut buf)?;
    // SAFETY: the u64 storage viewed as bytes: same memory, any value valid.
    let raw = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), bytes) };
    Ok(raw[12..]
        .chunks(ETH_GSTRING_LEN)
        .map(|s| {
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        })
        .collect())
}

/// Per 32-feature block: (available, active, never changeable) bits.
fn feature_blocks(sock: &OwnedFd, ifname: &str, n: usize) -> io::Result<Vec<(u32, u32, u32)>> {
    let blocks = n.div_ceil(32);
    // struct ethtool_gfeatures { u32 cmd; u32 size; {available, requested,
    // active, never_changed}[size]; }
    let mut buf = vec![0u64; (8 + blocks * 16).div_ceil(8)];
    {
        let w = words(&mut buf);
        w[0] = ETHTOOL_GFEATURES;
        w[1] = blocks as u32;
    }
    ethtool(sock, ifname, &mut buf)?;
    let w = words(&mut buf);
    Ok((0..blocks)
        .map(|b| (w[2 + 4 * b], w[2 + 4 * b + 2], w[2 + 4 * b + 3]))
        .collect())
}

/// Sets features `names` of `ifname` to `on` where the interface has them
/// and may change them; returns the names whose state changed.
pub fn set_features(ifname: &str, names: &[&str], on: bool) -> io::Result<Vec<String>> {
    let sock = ioctl_socket()?;
    let all = feature_names(&sock, ifname)?;
    let blocks = feature_blocks(&sock, ifname, all.len())?;
    // struct ethtool_sfeatures { u32 cmd; u32 size; {valid, requested}[size]; }
    let mut buf = vec![0u64; 1 + blocks.len()];
    let mut changed = Vec::new();
    {
        let w = words(&mut buf);
        w[0] = ETHTOOL_SFEATURES;
        w[1] = blocks.len() as u32;
        for (i, name) in all.iter().enumerate() {
            let (b, bit) = (i / 32, 1u32 << (i % 32));
            let (available, active, fixed) = blocks[b];
            let wanted = names.contains(&name.as_str());
            if wanted && available & bit != 0 && fixed & bit == 0 && (active & bit != 0) != on {
                w[2 + 2 * b] |= bit;
                if on {
                    w[2 + 2 * b + 1] |= bit;
                }
                changed.push(name.clone());
            }
        }
    }
    if !changed.is_empty() {
        ethtool(&sock, ifname, &mut buf)?;
    }
    Ok(changed)
}

/// Whether feature `name` of `ifname` is active (`None`: it has none).
pub fn feature_on(ifname: &str, name: &str) -> io::Result<Option<bool>> {
    let sock = ioctl_socket()?;
    let all = feature_names(&sock, ifname)?;
    let blocks = feature_blocks(&sock, ifname, all.len())?;
    Ok(all
        .iter()
        .position(|n| n == name)
        .map(|i| blocks[i / 32].1 & (1 << (i % 32)) != 0))
}

/// Turns the features of [`OFFLOADS`] off on `ifname`; returns those it
/// turned off (to turn back on at stop) and the log lines to print.
pub fn disable_offloads(ifname: &str) -> (Vec<String>, Vec<String>) {
    match set_features(ifname, OFFLOADS, false) {
        Ok(changed) if changed.is_empty() => (changed, Vec::new()),
        Ok(changed) => {
            let line = format!("af_packet: {ifname}: offloads turned off: {}", changed.join(", "));
            (changed, vec![line])
        }
        Err(e) => (
            Vec::new(),
            vec![format!(
                "af_packet: {ifname}: cannot turn GRO/LRO/GSO/TSO off ({e}); frames they merge beyond a buffer are counted rx_oversize"
            )],
        ),
    }
}

/// The MTU of `ifname` (SIOCGIFMTU).
pub fn mtu(ifname: &str) -> io::Result<u32> {
    let sock = ioctl_socket()?;
    let mut ifr = ifreq(ifname)?;
    // SAFETY: SIOCGIFMTU writes the `ifru_mtu` member of the live `ifr`.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFMTU,
            &mut ifr as *mut libc::ifreq,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU filled `ifru_mtu`.
    let m = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(m).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    //! Root and `ip netns` needed (a veth pair in a namespace of its own).
    use super::*;
    use crate::ports::linux::rawsock::tests::VethNs;

    #[test]
    fn offloads_go_off_and_come_back() {
        let ns = VethNs::new();
        ns.run(|| {
            set_features("v0", &["rx-gro", "tx-tcp-segmentation"], true).unwrap();
            assert_eq!(feature_on("v0", "rx-gro").unwrap(), Some(true));
            let (changed, log) = disable_offloads("v0");
            assert!(changed.iter().any(|c| c == "rx-gro"), "{log:?}");
            assert!(log[0].contains("rx-gro"), "{log:?}");
            for o in OFFLOADS {
                assert_ne!(feature_on("v0", o).unwrap(), Some(true), "{o}");
            }
            assert_eq!(feature_on("v0", "no-such-feature").unwrap(), None);
            let names: Vec<&str> = changed.iter().map(String::as_str).collect();
            let back = set_features("v0", &names, true).unwrap();
            assert_eq!(back, changed);
            assert_eq!(feature_on("v0", "rx-gro").unwrap(), Some(true));
            assert_eq!(mtu("v0").unwrap(), 1500);
            assert!(feature_on("nonexistent0", "rx-gro").is_err());
        });
    }
}
