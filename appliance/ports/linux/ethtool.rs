//! Offloads and MTU of the af_packet backend's interfaces, through the
//! SIOCETHTOOL ioctl's legacy commands (`ETHTOOL_G/S{GRO,GSO,TSO}` and
//! `ETHTOOL_G/SFLAGS` for LRO; `ethtool -K` uses the newer feature bitmaps,
//! but every driver that has a feature answers the legacy command too) and
//! SIOCGIFMTU.
//!
//! With GRO or LRO on, the kernel hands an AF_PACKET socket merged frames of
//! up to 64 KiB, larger than a packet buffer; with GSO/TSO on, nothing the
//! appliance sends needs them (it sends whole frames). So at start the
//! backend turns the four off on each interface, logs what it changed, and
//! turns them back on when it stops. A driver without the command (veth has
//! no LRO, say) is skipped; a refusal (no CAP_NET_ADMIN) is logged, and
//! what GRO then makes is counted as `rx_oversize`.
#![allow(unsafe_code)]

use std::io;
use std::mem::zeroed;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// linux/ethtool.h
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGSO: u32 = 0x23;
const ETHTOOL_SGSO: u32 = 0x24;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETH_FLAG_LRO: u32 = 1 << 15;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// One offload and how to read and set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offload {
    /// `ethtool -k`'s name of it.
    pub name: &'static str,
    get: u32,
    set: u32,
    /// The bit of the value that is the offload (all of it: `!0`).
    bit: u32,
}

/// The offloads turned off at start.
pub const OFFLOADS: [Offload; 4] = [
    Offload {
        name: "generic-receive-offload",
        get: ETHTOOL_GGRO,
        set: ETHTOOL_SGRO,
        bit: !0,
    },
    Offload {
        name: "large-receive-offload",
        get: ETHTOOL_GFLAGS,
        set: ETHTOOL_SFLAGS,
        bit: ETH_FLAG_LRO,
    },
    Offload {
        name: "generic-segmentation-offload",
        get: ETHTOOL_GGSO,
        set: ETHTOOL_SGSO,
        bit: !0,
    },
    Offload {
        name: "tcp-segmentation-offload",
        get: ETHTOOL_GTSO,
        set: ETHTOOL_STSO,
        bit: !0,
    },
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

/// Runs ethtool command `cmd` with `data` on `ifname`; returns the data the
/// kernel wrote back.
fn ethtool(sock: &OwnedFd, ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let mut v = EthtoolValue { cmd, data };
    let mut ifr = ifreq(ifname)?;
    ifr.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL with a G*/S* value command reads and writes
    // exactly one `struct ethtool_value` at `ifru_data`, which points at
    // the live `v` for the whole call.
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
    Ok(v.data)
}

/// Whether `o` is on on `ifname` (`None`: the driver lacks the command).
pub fn offload_on(ifname: &str, o: Offload) -> io::Result<Option<bool>> {
    let sock = ioctl_socket()?;
    match ethtool(&sock, ifname, o.get, 0) {
        Ok(v) => Ok(Some(v & o.bit != 0)),
        Err(e) if unsupported(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
    )
}

/// Sets offload `o` of `ifname` on or off.
pub fn set_offload(ifname: &str, o: Offload, on: bool) -> io::Result<()> {
    let sock = ioctl_socket()?;
    let value = if o.bit == !0 {
        u32::from(on)
    } else {
        let cur = ethtool(&sock, ifname, o.get, 0)?;
        if on {
            cur | o.bit
        } else {
            cur & !o.bit
        }
    };
    ethtool(&sock, ifname, o.set, value).map(|_| ())
}

/// Turns every offload of [`OFFLOADS`] off on `ifname`; returns those it
/// turned off (to turn back on at stop) and a log line per change or
/// refusal.
pub fn disable_offloads(ifname: &str) -> (Vec<Offload>, Vec<String>) {
    let mut changed = Vec::new();
    let mut log = Vec::new();
    for o in OFFLOADS {
        match offload_on(ifname, o) {
            Ok(Some(true)) => match set_offload(ifname, o, false) {
                Ok(()) => {
                    changed.push(o);
                    log.push(format!("af_packet: {ifname}: {} off", o.name));
                }
                Err(e) if unsupported(&e) => {}
                Err(e) => log.push(format!(
                    "af_packet: {ifname}: cannot turn {} off ({e}); merged frames larger than a buffer are counted rx_oversize",
                    o.name
                )),
            },
            Ok(_) => {}
            Err(e) => log.push(format!("af_packet: {ifname}: cannot read {}: {e}", o.name)),
        }
    }
    (changed, log)
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
            let gro = OFFLOADS[0];
            set_offload("v0", gro, true).unwrap();
            assert_eq!(offload_on("v0", gro).unwrap(), Some(true));
            let (changed, log) = disable_offloads("v0");
            assert!(changed.contains(&gro), "{log:?}");
            assert!(log
                .iter()
                .any(|l| l.contains("generic-receive-offload off")));
            for o in OFFLOADS {
                assert_ne!(offload_on("v0", o).unwrap(), Some(true), "{}", o.name);
            }
            for o in &changed {
                set_offload("v0", *o, true).unwrap();
            }
            assert_eq!(offload_on("v0", gro).unwrap(), Some(true));
            assert_eq!(mtu("v0").unwrap(), 1500);
            assert!(offload_on("nonexistent0", gro).is_err());
        });
    }
}
