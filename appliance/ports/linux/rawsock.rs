//! A minimal AF_PACKET raw socket on one Linux interface, plus the interface
//! queries the live backends need (index, MAC, link state) and a `ppoll`
//! wrapper.
//!
//! This module is the I/O layer: it is the one place in the crate allowed
//! `unsafe`, and every `unsafe` block says why it holds. Nothing here panics on
//! a received frame; a frame longer than the caller's buffer is reported as a
//! [`Truncated`] error (see [`truncated_len`]), never as a length past the
//! buffer.
//!
//! All queries use the calling thread's network namespace (ioctls on a socket
//! of that namespace, never `/sys`, whose view belongs to whoever mounted it),
//! so they stay right for a thread moved by [`enter_netns`].
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::{size_of, size_of_val, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `ETH_P_ALL` in network byte order, as `sockaddr_ll.sll_protocol` wants it.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

/// An AF_PACKET/SOCK_RAW socket bound to one interface: non-blocking, not
/// reading back its own transmissions, the interface promiscuous while it is
/// open (the kernel drops the membership when the socket closes).
#[derive(Debug)]
pub struct RawSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// The error payload of a [`RawSocket::recv`] whose frame did not fit: the
/// frame's real length. The part that fit is in the buffer; the rest is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated {
    pub frame_len: usize,
    pub buf_len: usize,
}

impl std::fmt::Display for Truncated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frame of {} bytes truncated to the {}-byte buffer",
            self.frame_len, self.buf_len
        )
    }
}

impl std::error::Error for Truncated {}

/// `Some(frame length)` when `e` is the truncation error of
/// [`RawSocket::recv`] (kind `InvalidData`, payload [`Truncated`]).
pub fn truncated_len(e: &io::Error) -> Option<usize> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Truncated>())
        .map(|t| t.frame_len)
}

/// `err` with `what` in front, keeping its kind.
fn context(err: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

impl RawSocket {
    /// AF_PACKET/SOCK_RAW/ETH_P_ALL socket bound to `ifname`, non-blocking,
    /// PACKET_IGNORE_OUTGOING set (so frames we send are not read back),
    /// promiscuous via PACKET_ADD_MEMBERSHIP/PACKET_MR_PROMISC.
    pub fn open(ifname: &str) -> io::Result<RawSocket> {
        let ifindex = ifindex(ifname)?;
        // Protocol 0 at creation: the socket receives nothing until bind()
        // names the interface and ETH_P_ALL, so no frame of another
        // interface can slip in between the two calls.
        // SAFETY: plain syscall with constant arguments; no pointers.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(context(
                io::Error::last_os_error(),
                format!("AF_PACKET socket for {ifname} (needs CAP_NET_RAW)"),
            ));
        }
        // SAFETY: `raw` is a descriptor socket() just returned and nothing
        // else owns it; OwnedFd closes it exactly once.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sock = RawSocket { fd, ifindex };

        let one: libc::c_int = 1;
        sock.setsockopt(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)
            .map_err(|e| context(e, format!("PACKET_IGNORE_OUTGOING on {ifname}")))?;
        // The stripped VLAN tag of each frame, so recv can put it back.
        sock.setsockopt(libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)
            .map_err(|e| context(e, format!("PACKET_AUXDATA on {ifname}")))?;
        // SAFETY: packet_mreq is plain old data; all-zero is a valid value.
        let mut mreq: libc::packet_mreq = unsafe { zeroed() };
        mreq.mr_ifindex = ifindex;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        sock.setsockopt(libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| context(e, format!("promiscuous mode on {ifname}")))?;

        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL_BE;
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a live, initialised sockaddr_ll and the length
        // passed is its exact size; the fd is open.
        let rc = unsafe {
            libc::bind(
                sock.fd(),
                (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(context(
                io::Error::last_os_error(),
                format!("binding the AF_PACKET socket to {ifname}"),
            ));
        }
        Ok(sock)
    }

    /// One frame into `buf`; `Ok(None)` when nothing is queued (EAGAIN).
    /// A frame longer than `buf` is consumed and reported as an
    /// `InvalidData` error carrying [`Truncated`] (see [`truncated_len`]);
    /// `buf` then holds its first bytes.
    ///
    /// The frame is as it was on the wire: the kernel strips an 802.1Q/802.1ad
    /// tag into metadata before packet sockets see the frame, so the tag is
    /// put back after the MAC addresses (it then counts in the length).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // Room for one cmsghdr + tpacket_auxdata, 8-byte aligned.
        let mut control = [0u64; 8];
        loop {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast::<libc::c_void>(),
                iov_len: buf.len(),
            };
            // SAFETY: msghdr is plain old data; all-zero is a valid value.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast::<libc::c_void>();
            msg.msg_controllen = size_of_val(&control) as _;
            // SAFETY: `msg` points at one iovec covering exactly `buf`
            // (valid for writes of `buf.len()` bytes) and at `control`
            // (writable for `msg_controllen` bytes), all live for the call.
            // MSG_TRUNC makes the kernel return the real frame length but
            // never write past the buffers.
            let n = unsafe { libc::recvmsg(self.fd(), &mut msg, libc::MSG_TRUNC) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok(None),
                    _ => return Err(err),
                }
            }
            let vlan = vlan_tag(&msg);
            let stripped = n as usize;
            let frame_len = stripped + if vlan.is_some() { 4 } else { 0 };
            if frame_len > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    Truncated {
                        frame_len,
                        buf_len: buf.len(),
                    },
                ));
            }
            if let Some((tpid, tci)) = vlan {
                if stripped < 12 {
                    // No room for a tag in a runt: hand it over as it came.
                    return Ok(Some(stripped));
                }
                buf.copy_within(12..stripped, 16);
                buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                buf[14..16].copy_from_slice(&tci.to_be_bytes());
            }
            return Ok(Some(frame_len));
        }
    }

    /// Sends one frame (Ethernet header included); `Ok(false)` when the
    /// socket's queue is full (EAGAIN/ENOBUFS) and the frame was not sent.
    /// A frame the interface cannot carry (longer than its MTU plus the
    /// Ethernet header) is an error (EMSGSIZE).
    pub fn send(&self, frame: &[u8]) -> io::Result<bool> {
        loop {
            // SAFETY: `frame` is valid for reads of `frame.len()` bytes for
            // the duration of the call.
            let n = unsafe {
                libc::send(
                    self.fd(),
                    frame.as_ptr().cast::<libc::c_void>(),
                    frame.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(true);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => return Ok(false),
                _ => return Err(err),
            }
        }
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Sets a socket option whose value is the plain struct or integer `T`
    /// (the af_packet backend sets PACKET_VERSION, PACKET_RX_RING, ...).
    pub fn setsockopt<T: Copy>(&self, level: i32, name: i32, value: &T) -> io::Result<()> {
        // SAFETY: `value` points at a live `T` of exactly `size_of::<T>()`
        // bytes, which the kernel only reads during the call.
        let rc = unsafe {
            libc::setsockopt(
                self.fd(),
                level,
                name,
                (value as *const T).cast::<libc::c_void>(),
                size_of::<T>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The kernel's PACKET_STATISTICS since the previous call (reading
    /// resets them): (frames received, frames dropped because the socket's
    /// receive buffer was full).
    pub fn kernel_stats(&self) -> io::Result<(u32, u32)> {
        // SAFETY: tpacket_stats is plain old data; all-zero is valid.
        let mut st: libc::tpacket_stats = unsafe { zeroed() };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes and `len` is a live
        // socklen_t the kernel updates.
        let rc = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast::<libc::c_void>(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((st.tp_packets, st.tp_drops))
    }
}

/// The VLAN tag (TPID, TCI) the kernel stripped from the frame `msg`
/// received, from its PACKET_AUXDATA control message.
fn vlan_tag(msg: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR only
    // walk within msg_control/msg_controllen, which the kernel set.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null cmsg pointers from CMSG_FIRSTHDR/NXTHDR point at a
        // complete cmsghdr inside the control buffer.
        let hdr = unsafe { &*cmsg };
        let aux_len = size_of::<libc::tpacket_auxdata>();
        if hdr.cmsg_level == libc::SOL_PACKET
            && hdr.cmsg_type == libc::PACKET_AUXDATA
            // SAFETY: CMSG_LEN is arithmetic on its argument.
            && hdr.cmsg_len as usize >= unsafe { libc::CMSG_LEN(aux_len as u32) } as usize
        {
            // SAFETY: the length check above guarantees a whole
            // tpacket_auxdata at CMSG_DATA; it may be unaligned.
            let aux: libc::tpacket_auxdata = unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::tpacket_auxdata>())
            };
            // A TCI of 0 without VLAN_VALID means no tag (old kernels set
            // only the TCI).
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 || aux.tp_vlan_tci != 0 {
                let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.tp_vlan_tpid
                } else {
                    0x8100
                };
                return Some((tpid, aux.tp_vlan_tci));
            }
            return None;
        }
        // SAFETY: as for CMSG_FIRSTHDR; returns null past the last header.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    None
}

/// `ifname` as a NUL-terminated C string, rejecting names the kernel could
/// never have (empty, too long, NUL or '/' inside).
fn c_ifname(ifname: &str) -> io::Result<CString> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {ifname:?} is invalid: 1 to {} bytes, no '/'",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    CString::new(ifname).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?} contains a NUL byte"),
        )
    })
}

/// The index of interface `ifname` in the calling thread's namespace.
pub fn ifindex(ifname: &str) -> io::Result<i32> {
    let name = c_ifname(ifname)?;
    // SAFETY: `name` is a valid NUL-terminated string for the call.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(context(
            io::Error::last_os_error(),
            format!("interface {ifname}"),
        ));
    }
    Ok(idx as i32)
}

/// An `ifreq` naming `ifname`, filled by ioctl `request` on a throwaway
/// datagram socket of the calling thread's namespace.
fn ifreq_ioctl(ifname: &str, request: libc::Ioctl, what: &str) -> io::Result<libc::ifreq> {
    let name = c_ifname(ifname)?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain syscall with constant arguments.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(context(io::Error::last_os_error(), "ioctl socket"));
    }
    // SAFETY: fresh descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: the request is one of the SIOCGIF* reads, which write at most
    // one `ifreq` into the live, writable `ifr`.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut ifr as *mut libc::ifreq) };
    if rc < 0 {
        return Err(context(
            io::Error::last_os_error(),
            format!("{what} of interface {ifname}"),
        ));
    }
    Ok(ifr)
}

/// The hardware address of `ifname` (SIOCGIFHWADDR).
pub fn if_mac(ifname: &str) -> io::Result<[u8; 6]> {
    let ifr = ifreq_ioctl(ifname, libc::SIOCGIFHWADDR, "hardware address")?;
    // SAFETY: SIOCGIFHWADDR fills the `ifru_hwaddr` member of the union.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "interface {ifname} is not Ethernet (ARPHRD type {})",
                hw.sa_family
            ),
        ));
    }
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *dst = *src as u8;
    }
    Ok(mac)
}

/// The MTU of `ifname` (SIOCGIFMTU).
pub fn if_mtu(ifname: &str) -> io::Result<u32> {
    let ifr = ifreq_ioctl(ifname, libc::SIOCGIFMTU, "MTU")?;
    // SAFETY: SIOCGIFMTU fills the `ifru_mtu` member of the union.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(mtu.max(0) as u32)
}

/// Whether `ifname` is administratively up and has carrier (IFF_UP and
/// IFF_RUNNING): the link state uplink health watches.
pub fn if_up(ifname: &str) -> io::Result<bool> {
    let ifr = ifreq_ioctl(ifname, libc::SIOCGIFFLAGS, "flags")?;
    // SAFETY: SIOCGIFFLAGS fills the `ifru_flags` member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags } as libc::c_int;
    Ok(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
}

/// Most descriptors one [`poll_readable`] call takes.
pub const MAX_POLL_FDS: usize = 64;

/// Waits until any fd is readable (or has an error to report, which the
/// next read returns) or the timeout passes; returns which are readable.
/// Nanosecond timeout (ppoll), so a delay line can sleep to a due time. A
/// signal cuts the wait short and returns all `false`. At most
/// [`MAX_POLL_FDS`] descriptors.
pub fn poll_readable(fds: &[RawFd], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut readable = vec![false; fds.len()];
    poll_readable_into(fds, timeout, &mut readable)?;
    Ok(readable)
}

/// [`poll_readable`] without allocating, for loops that poll per frame:
/// sets `readable[i]` for `fds[i]` (the slices must be equally long) and
/// returns how many are readable.
pub fn poll_readable_into(
    fds: &[RawFd],
    timeout: Duration,
    readable: &mut [bool],
) -> io::Result<usize> {
    if fds.len() > MAX_POLL_FDS || readable.len() != fds.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "poll_readable: {} descriptors and {} result slots: at most {MAX_POLL_FDS}, equally many",
                fds.len(),
                readable.len()
            ),
        ));
    }
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_POLL_FDS];
    for (p, &fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `pfds` is a live array of at least `fds.len()` pollfds the
    // kernel may update; `ts` is a valid timespec; a null sigmask keeps the
    // current one.
    let rc = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    readable.fill(false);
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINTR) {
            return Ok(0);
        }
        return Err(err);
    }
    let mut count = 0;
    for (r, p) in readable.iter_mut().zip(&pfds[..fds.len()]) {
        *r = p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
        count += usize::from(*r);
    }
    Ok(count)
}

/// Sets the calling thread's timer slack (how late the kernel may wake a
/// sleeping `ppoll` to batch wake-ups; 50 us by default) to `ns`
/// nanoseconds. The delay line sets it to 1 ns so a frame leaves when due.
pub fn set_timer_slack_ns(ns: u64) -> io::Result<()> {
    let ns = libc::c_ulong::try_from(ns.max(1)).unwrap_or(libc::c_ulong::MAX);
    // SAFETY: PR_SET_TIMERSLACK takes its value by integer; no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves the calling thread (only it) into the network namespace
/// `/run/netns/<name>` made by `ip netns add`. Sockets it opens afterwards
/// belong to that namespace for their whole life, whichever thread uses
/// them. Tests use it to open raw sockets inside the namespaces they made.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).map_err(|e| context(e, &path))?;
    // SAFETY: `file` is an open namespace file for the call; setns changes
    // only the calling thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        return Err(context(io::Error::last_os_error(), format!("setns {path}")));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    //! These tests need root: each makes its own namespace with a veth pair
    //! (`ip netns add`), so all traffic stays inside it. Without root they
    //! fail, by design.
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    static SEQ: AtomicUsize = AtomicUsize::new(0);

    fn sh(args: &[&str]) {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("spawn");
        assert!(
            out.status.success(),
            "{args:?} failed (these tests need root and `ip netns`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A namespace holding veth `v0` (02:00:00:00:99:00) ⟷ `v1`
    /// (02:00:00:00:99:01), both up, IPv6 off so the kernel sends nothing.
    pub(crate) struct VethNs(pub(crate) String);

    impl VethNs {
        pub(crate) fn new() -> VethNs {
            let name = format!(
                "rawsock-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            sh(&["ip", "netns", "add", &name]);
            let ns = VethNs(name);
            let n = ns.0.as_str();
            let x = |cmd: &[&str]| {
                let mut full = vec!["ip", "netns", "exec", n];
                full.extend_from_slice(cmd);
                sh(&full);
            };
            x(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            x(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
            x(&[
                "ip",
                "link",
                "add",
                "v0",
                "address",
                "02:00:00:00:99:00",
                "type",
                "veth",
                "peer",
                "name",
                "v1",
                "address",
                "02:00:00:00:99:01",
            ]);
            x(&["ip", "link", "set", "v0", "up"]);
            x(&["ip", "link", "set", "v1", "up"]);
            // Carrier comes a moment after `up` (linkwatch); a frame sent
            // before it would be dropped by the veth.
            let until = Instant::now() + Duration::from_secs(5);
            for v in ["v0", "v1"] {
                loop {
                    let out = Command::new("ip")
                        .args(["-n", n, "-o", "link", "show", v])
                        .output()
                        .expect("ip link show");
                    if String::from_utf8_lossy(&out.stdout).contains("state UP") {
                        break;
                    }
                    assert!(Instant::now() < until, "{v} in {n} never got carrier");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            ns
        }

        /// Runs `f` on a thread inside the namespace.
        pub(crate) fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
            let name = self.0.clone();
            std::thread::spawn(move || {
                enter_netns(&name).expect("setns");
                f()
            })
            .join()
            .expect("test thread panicked")
        }
    }

    impl Drop for VethNs {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    /// An Ethernet frame from v0's MAC to v1's with the local experimental
    /// EtherType 0x88b5 and `len` bytes in all, marked with `tag`.
    fn test_frame(tag: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len.max(15)];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0x99, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0x99, 0]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f[14] = tag;
        f
    }

    /// The next 0x88b5 frame on `s` within `wait` (other traffic skipped).
    fn recv_test_frame(s: &RawSocket, buf: &mut [u8], wait: Duration) -> io::Result<Option<usize>> {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            poll_readable(&[s.fd()], Duration::from_millis(20))?;
            while let Some(n) = s.recv(buf)? {
                if n >= 14 && buf[12..14] == [0x88, 0xb5] {
                    return Ok(Some(n));
                }
            }
        }
        Ok(None)
    }

    #[test]
    fn frame_crosses_the_veth_and_is_not_read_back() {
        let ns = VethNs::new();
        ns.run(|| {
            let a = RawSocket::open("v0").unwrap();
            let b = RawSocket::open("v1").unwrap();
            assert_eq!(a.ifindex(), ifindex("v0").unwrap());
            assert_ne!(a.ifindex(), b.ifindex());
            let sent = test_frame(7, 60);
            assert!(a.send(&sent).unwrap());
            let mut buf = [0u8; 2048];
            let n = recv_test_frame(&b, &mut buf, Duration::from_secs(2))
                .unwrap()
                .expect("frame arrives on v1");
            assert_eq!(&buf[..n], &sent[..]);
            // PACKET_IGNORE_OUTGOING: the sender does not see its own frame.
            assert_eq!(
                recv_test_frame(&a, &mut buf, Duration::from_millis(200)).unwrap(),
                None
            );
            // Nothing queued now: Ok(None), not an error or a block.
            assert_eq!(b.recv(&mut buf).unwrap(), None);
        });
    }

    #[test]
    fn truncated_frame_is_an_error_with_the_real_length() {
        let ns = VethNs::new();
        ns.run(|| {
            let a = RawSocket::open("v0").unwrap();
            let b = RawSocket::open("v1").unwrap();
            assert!(a.send(&test_frame(1, 300)).unwrap());
            let mut small = [0u8; 64];
            let until = Instant::now() + Duration::from_secs(2);
            let err = loop {
                assert!(Instant::now() < until, "no truncated frame arrived");
                poll_readable(&[b.fd()], Duration::from_millis(20)).unwrap();
                match b.recv(&mut small) {
                    Err(e) => break e,
                    Ok(_) => continue, // other (short) traffic, or nothing yet
                }
            };
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert_eq!(truncated_len(&err), Some(300));
            assert_eq!(&small[12..15], &[0x88, 0xb5, 1]);
            // An unrelated error is not mistaken for truncation.
            assert_eq!(truncated_len(&io::Error::other("x")), None);
        });
    }

    #[test]
    fn vlan_tag_survives_the_kernel() {
        let ns = VethNs::new();
        ns.run(|| {
            let a = RawSocket::open("v0").unwrap();
            let b = RawSocket::open("v1").unwrap();
            #[rustfmt::skip]
            let sent: Vec<u8> = [
                &[2, 0, 0, 0, 0x99, 1][..],  // destination
                &[2, 0, 0, 0, 0x99, 0],      // source
                &[0x81, 0x00],               // TPID 802.1Q
                &[0x20, 0x64],               // PCP 1, VID 100
                &[0x88, 0xb5],               // inner EtherType
                &[0xab; 50],                 // payload
            ]
            .concat();
            assert!(a.send(&sent).unwrap());
            let mut buf = [0u8; 2048];
            let until = Instant::now() + Duration::from_secs(2);
            let n = loop {
                assert!(Instant::now() < until, "tagged frame did not arrive");
                poll_readable(&[b.fd()], Duration::from_millis(20)).unwrap();
                if let Some(n) = b.recv(&mut buf).unwrap() {
                    if n > 16 && buf[16..18] == [0x88, 0xb5] {
                        break n;
                    }
                }
            };
            assert_eq!(&buf[..n], &sent[..], "tag restored in place");
            // The restored tag counts toward truncation.
            assert!(a.send(&sent).unwrap());
            let mut exact = [0u8; 66]; // 68-byte frame: 64 without its tag
            let until = Instant::now() + Duration::from_secs(2);
            let err = loop {
                assert!(Instant::now() < until, "tagged frame did not arrive");
                poll_readable(&[b.fd()], Duration::from_millis(20)).unwrap();
                match b.recv(&mut exact) {
                    Err(e) => break e,
                    Ok(_) => continue,
                }
            };
            assert_eq!(truncated_len(&err), Some(68));
        });
    }

    #[test]
    fn oversized_send_is_an_error() {
        let ns = VethNs::new();
        ns.run(|| {
            let a = RawSocket::open("v0").unwrap();
            // MTU 1500 + 14-byte header is the largest frame.
            assert!(a.send(&test_frame(2, 1514)).unwrap());
            let err = a.send(&test_frame(3, 1515)).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE));
        });
    }

    #[test]
    fn poll_reports_which_fd_is_readable() {
        let ns = VethNs::new();
        ns.run(|| {
            let a = RawSocket::open("v0").unwrap();
            let b = RawSocket::open("v1").unwrap();
            let mut buf = [0u8; 2048];
            // Drain whatever the kernel sent when the links came up.
            while b.recv(&mut buf).unwrap().is_some() {}
            while a.recv(&mut buf).unwrap().is_some() {}
            let t0 = Instant::now();
            let r = poll_readable(&[a.fd(), b.fd()], Duration::from_millis(50)).unwrap();
            assert_eq!(r, vec![false, false]);
            assert!(t0.elapsed() >= Duration::from_millis(50));
            assert!(a.send(&test_frame(4, 60)).unwrap());
            let r = poll_readable(&[a.fd(), b.fd()], Duration::from_secs(2)).unwrap();
            assert_eq!(r, vec![false, true]);
            let mut into = [true, false];
            let n = poll_readable_into(&[a.fd(), b.fd()], Duration::ZERO, &mut into).unwrap();
            assert_eq!((n, into), (1, [false, true]));
            let err = poll_readable_into(&[a.fd()], Duration::ZERO, &mut into).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            let many = vec![a.fd(); MAX_POLL_FDS + 1];
            assert!(poll_readable(&many, Duration::ZERO).is_err());
        });
    }

    #[test]
    fn timer_slack_is_set_for_this_thread() {
        std::thread::spawn(|| {
            set_timer_slack_ns(1000).unwrap();
            // SAFETY: PR_GET_TIMERSLACK takes no pointers; it returns the value.
            let slack = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
            assert_eq!(slack, 1000);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn interface_queries() {
        let ns = VethNs::new();
        let name = ns.0.clone();
        ns.run(|| {
            assert_eq!(if_mac("v0").unwrap(), [2, 0, 0, 0, 0x99, 0]);
            assert_eq!(if_mac("v1").unwrap(), [2, 0, 0, 0, 0x99, 1]);
            assert!(if_up("v0").unwrap());
            assert!(!if_up("lo").unwrap(), "lo of a fresh namespace is down");
            // Loopback is not Ethernet.
            assert_eq!(if_mac("lo").unwrap_err().kind(), io::ErrorKind::Unsupported);
            let err = RawSocket::open("nosuch0").unwrap_err();
            assert!(err.to_string().contains("nosuch0"), "{err}");
            let err = ifindex("a/b").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(ifindex("waytoolonginterfacename").is_err());
        });
        // Taking the peer down removes v0's carrier: not up any more (the
        // kernel's linkwatch applies carrier changes within about a second).
        sh(&["ip", "-n", &name, "link", "set", "v1", "down"]);
        ns.run(|| {
            let until = Instant::now() + Duration::from_secs(3);
            while if_up("v0").unwrap() {
                assert!(Instant::now() < until, "v0 still up with its peer down");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
}
