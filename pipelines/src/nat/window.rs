//! TCP window tracking, in the spirit of Linux conntrack's `tcp_in_window`
//! with RFC 5961's rule for resets.
//!
//! The NAT sees both directions of a connection, so it knows what the
//! inside host acknowledged (`rcv_nxt`: the highest ACK it sent), how far
//! it let the outside send (`rcv_nxt` + its largest window, scaled by the
//! shift its SYN announced when both SYNs carried the option, RFC 7323
//! 2.2), and the highest sequence end it sent (`snd_end`). A segment from
//! outside is accepted when
//! - an RST: its sequence number is in `[rcv_nxt, rcv_nxt + window)`
//!   (RFC 5961 3.2; the session then closes);
//! - otherwise: it starts at most `window` past `rcv_nxt` and ends at most
//!   `window` before it (a retransmission of acknowledged data), and its
//!   ACK (when set) acknowledges nothing past `snd_end` and not more than
//!   1 GiB before it.
//!
//! Segments dropped here are counted `tcp_out_of_window` and do not
//! refresh the session. All comparisons are wrap-around safe (the `i32`
//! of a difference). Where the tracker does not know enough it is liberal,
//! as conntrack is: before the session saw a packet from outside, on SYNs,
//! and for a connection picked up mid-stream (no SYN seen), whose window is
//! read with the largest shift (14) until it closes.
//!
//! State (in the session's cold half): `rcv_nxt` and `snd_end` reuse the
//! two links of the eviction list, which a session leaves at its first
//! packet from outside and joins again only when its connection has ended
//! (FINs both ways, or an RST; the checks are liberal from then on); `win_max` (u16, in the inside host's scaled
//! unit) and `wscale` (both shifts, a nibble each) took 4 bytes from the
//! byte counters, now 48 bits each.

use super::create::ADF_WALK_MAX;
use super::index::{out_eq, Tuple};
use super::session::{seen, SessionCold, NONE, SENT, UNANSWERED, WIN};
use super::shard::NatShard;
use crate::packet::drop::DropReason;
use crate::topology::UplinkId;
use crate::wire::tcp::{Segment, TCP_ACK, TCP_RST, TCP_SYN};

/// How far behind `snd_end` an inbound ACK may be (conntrack bounds it by
/// the sender's window; the largest scaled window is below 2^30).
const ACK_BEHIND: i32 = 1 << 30;

/// A shift read from a SYN: RFC 7323 2.3 caps it at 14.
const NO_SCALE: u8 = 15;

impl SessionCold {
    /// The shift of the inside host's window field.
    #[inline]
    pub(super) fn out_shift(&self, tcp: u8) -> u32 {
        use seen::{SYN_IN, SYN_OUT};
        let (o, i) = (self.wscale & 15, self.wscale >> 4);
        if tcp & (SYN_OUT | SYN_IN) != SYN_OUT | SYN_IN {
            // Picked up mid-stream: unknown, be liberal.
            14
        } else if o != NO_SCALE && i != NO_SCALE {
            u32::from(o)
        } else {
            // RFC 7323 2.2: scaling only when both sides sent the option.
            0
        }
    }

    /// The inside host's receive window in bytes (at least 1): its largest
    /// advertised window, or 64 KiB scaled before it advertised one.
    #[inline]
    pub(super) fn rcv_window(&self, tcp: u8) -> u32 {
        let w = if self.win_max == 0 {
            0xffff
        } else {
            self.win_max
        };
        (u32::from(w) << self.out_shift(tcp)).max(1)
    }

    /// Whether an inbound segment is acceptable (see the module notes).
    #[inline]
    pub(super) fn in_window(&self, flags: u8, tcp: u8, seg: &Segment) -> bool {
        if flags & WIN == 0 || seg.flags & TCP_SYN != 0 {
            return true;
        }
        let rcv_nxt = self.older;
        let w = self.rcv_window(tcp);
        let d = seg.seq.wrapping_sub(rcv_nxt);
        if seg.flags & TCP_RST != 0 {
            return d < w;
        }
        let w = w as i32;
        if d as i32 > w || (seg.end().wrapping_sub(rcv_nxt) as i32) < -w {
            return false;
        }
        if flags & SENT != 0 && seg.flags & TCP_ACK != 0 {
            let a = seg.ack.wrapping_sub(self.newer) as i32;
            return (-ACK_BEHIND..=0).contains(&a);
        }
        true
    }

    /// Learns from an inbound segment that was accepted and counted
    /// (the session is off the unanswered list by then).
    #[inline]
    pub(super) fn learn_in(&mut self, flags: &mut u8, seg: &Segment) {
        if *flags & UNANSWERED != 0 {
            return;
        }
        if *flags & WIN == 0 {
            // The inside host has acknowledged nothing of it yet.
            self.older = seg.seq.wrapping_add(u32::from(seg.flags & TCP_SYN != 0));
            *flags |= WIN;
        }
        if *flags & SENT == 0 && seg.flags & TCP_ACK != 0 {
            self.newer = seg.ack;
            *flags |= SENT;
        }
    }

    /// Learns from an outbound segment that leaves by this session.
    #[inline]
    pub(super) fn learn_out(&mut self, flags: &mut u8, seg: &Segment) {
        if seg.flags & TCP_SYN != 0 {
            let shift = seg.wscale.map_or(NO_SCALE, |s| s.min(14));
            self.wscale = (self.wscale & 0xf0) | shift;
        }
        if seg.flags & (TCP_SYN | TCP_ACK) == TCP_ACK {
            self.win_max = self.win_max.max(seg.window);
        }
        if *flags & UNANSWERED != 0 {
            return;
        }
        if seg.flags & TCP_ACK != 0 {
            if *flags & WIN == 0 {
                self.older = seg.ack;
                *flags |= WIN;
            } else if (seg.ack.wrapping_sub(self.older) as i32) > 0 {
                self.older = seg.ack;
            }
        }
        let end = seg.end();
        if *flags & SENT == 0 {
            self.newer = end;
            *flags |= SENT;
        } else if (end.wrapping_sub(self.newer) as i32) > 0 {
            self.newer = end;
        }
    }
}

impl NatShard {
    /// Checks an inbound segment of live TCP session `idx` against its
    /// window before anything else sees it (a race, the refresh): an
    /// out-of-window segment is `tcp_out_of_window` and changes nothing.
    /// Records the outside's window scale from a SYN.
    #[inline]
    pub fn tcp_check_in(&mut self, idx: u32, seg: &Segment) -> Result<(), DropReason> {
        let Some(s) = self.slots.get(idx as usize).filter(|s| s.is_live()) else {
            return Ok(());
        };
        let c = &mut self.cold[idx as usize];
        if !c.in_window(s.flags, s.tcp, seg) {
            return Err(DropReason::TcpOutOfWindow);
        }
        if seg.flags & TCP_SYN != 0 {
            let shift = seg.wscale.map_or(NO_SCALE, |s| s.min(14));
            c.wscale = (c.wscale & 0x0f) | shift << 4;
        }
        Ok(())
    }

    /// Learns from an inbound segment after it refreshed session `idx`.
    #[inline]
    pub fn tcp_learn_in(&mut self, idx: u32, seg: &Segment) {
        if let Some(s) = self.slots.get_mut(idx as usize).filter(|s| s.is_live()) {
            self.cold[idx as usize].learn_in(&mut s.flags, seg);
        }
    }

    /// Learns from an outbound segment sent by session `idx`.
    #[inline]
    pub fn tcp_learn_out(&mut self, idx: u32, seg: &Segment) {
        if let Some(s) = self.slots.get_mut(idx as usize).filter(|s| s.is_live()) {
            self.cold[idx as usize].learn_out(&mut s.flags, seg);
        }
    }

    /// Makes way for a new connection on the 5-tuple of closed session
    /// `idx` (see [`tcp_reusable`](Self::tcp_reusable)): removes it and the
    /// other uplinks' sessions of the same outbound 5-tuple (race copies
    /// kept for the race timeout, which hold the inbound 5-tuple the new
    /// race's copy on their uplink takes). Returns how many went.
    pub fn tcp_replace(&mut self, idx: u32) -> usize {
        let Some(s) = self.session(idx) else {
            return 0;
        };
        let t = Tuple::of(&s.outbound_key());
        let mut stale = [NONE; 64];
        let mut n = 0;
        for u in 0..self.uplink_addrs.len().min(usize::from(UplinkId::MAX)) {
            let mut i = self.find_mapping(&t, u as UplinkId).unwrap_or(NONE);
            let mut walked = 0;
            while i != NONE && walked < ADF_WALK_MAX && n < stale.len() {
                if i != idx && out_eq(&self.slots[i as usize], &t) {
                    stale[n] = i;
                    n += 1;
                }
                i = self.cold[i as usize].next;
                walked += 1;
            }
        }
        let mut gone = usize::from(self.remove(idx).is_some());
        for &i in &stale[..n] {
            gone += usize::from(self.remove(i).is_some());
        }
        gone
    }

    /// The inside host's receive window of live session `idx` (tests).
    #[cfg(test)]
    pub(super) fn rcv_window(&self, idx: u32) -> u32 {
        let s = &self.slots[idx as usize];
        self.cold[idx as usize].rcv_window(s.tcp)
    }

    /// Whether an inbound segment is in session `idx`'s window (tests).
    #[cfg(test)]
    pub(super) fn in_window(&self, idx: u32, seg: &Segment) -> bool {
        let s = &self.slots[idx as usize];
        self.cold[idx as usize].in_window(s.flags, s.tcp, seg)
    }

    /// Whether session `idx` is a closing or closed TCP connection (FINs
    /// both ways, or an RST) that a new SYN from inside replaces.
    pub fn tcp_reusable(&self, idx: u32) -> bool {
        use super::TcpState;
        self.session(idx).is_some_and(|s| {
            s.proto == crate::packet::flow::proto::TCP
                && matches!(s.tcp_state(), TcpState::Closed | TcpState::Rst)
        })
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
