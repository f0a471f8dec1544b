//! Why a packet was dropped. The enum indexes per-stage counter arrays
//! ([`crate::StageCounters`]); its `as_str` names are the keys of
//! `stages.NAME.drops` in the stats JSON and are never renamed.

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Reason a stage dropped a packet. `Copy`, allocation-free, and an
        /// index into [`crate::StageCounters`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// Stable snake_case name used in stats.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    Empty => "empty", "zero-length frame";
    TruncatedEthernet => "truncated_ethernet", "shorter than an Ethernet header";
    TruncatedVlan => "truncated_vlan", "802.1Q tag cut short";
    UnknownEthertype => "unknown_ethertype", "EtherType that is neither IPv4, IPv6, ARP nor 802.1Q";
    UnexpectedVlan => "unexpected_vlan", "VLAN tag that does not match the ingress port's VLAN";
    ArpUnhandled => "arp_unhandled", "ARP request the appliance does not answer: not for one of its addresses on that port";
    ArpMalformed => "arp_malformed", "ARP frame cut short or not Ethernet/IPv4";
    NeighbourConsumed => "neighbour_consumed", "ARP reply or neighbour advertisement taken in by the appliance (a next hop's MAC learned from it when it is one)";
    NdMalformed => "nd_malformed", "neighbour discovery message with a hop limit other than 255, a bad checksum or bad options";
    NextHopUnresolved => "next_hop_unresolved", "the uplink's next hop has no MAC yet (ARP / neighbour discovery still asking)";
    TruncatedIpv4 => "truncated_ipv4", "shorter than a minimal IPv4 header";
    BadIpVersion => "bad_ip_version", "IP version field disagrees with the EtherType";
    BadIhl => "bad_ihl", "IPv4 IHL below 5 or past the end of the frame";
    BadTotalLength => "bad_total_length", "IPv4 total length smaller than the header or larger than the frame";
    BadIpv4Checksum => "bad_ipv4_checksum", "IPv4 header checksum does not verify";
    TruncatedIpv6 => "truncated_ipv6", "shorter than an IPv6 header";
    BadPayloadLength => "bad_payload_length", "IPv6 payload length past the end of the frame";
    Ipv6ExtensionHeader => "ipv6_extension_header", "IPv6 extension header chains are not translated";
    Fragment => "fragment", "IP fragment that cannot be translated: a later fragment whose flow has no session (its first fragment was refused), of an ICMP error, of a TCP SYN, hairpinned, or a non-last fragment whose length is not a multiple of 8";
    FragmentLimit => "fragment_limit", "fragment refused by a fragment limit ([fragments] max_held_per_shard, max_datagrams_per_shard, max_fragments_per_datagram)";
    FragmentTimeout => "fragment_timeout", "fragment held for its first fragment, freed when the datagram's timeout passed ([fragments] timeout_ms)";
    FragmentOverlap => "fragment_overlap", "fragment overlapping another of its datagram, or past its last one's end: the datagram is refused whole (RFC 5722)";
    FragmentDuplicate => "fragment_duplicate", "exact copy of a fragment already seen (same offset and length): the first copy went on";
    FragmentTooBig => "fragment_too_big", "fragment ending past 65,535 bytes of datagram: the datagram is refused whole";
    FragmentTiny => "fragment_tiny", "first fragment not holding the whole transport header (RFC 1858): dropped; its later fragments find no first fragment and time out";
    TruncatedTcp => "truncated_tcp", "TCP header cut short or data offset invalid";
    TruncatedUdp => "truncated_udp", "UDP header cut short or length field invalid";
    TruncatedIcmp => "truncated_icmp", "ICMP header cut short";
    UnsupportedIcmp => "unsupported_icmp", "ICMP type that is not translated";
    IcmpErrorMalformed => "icmp_error_malformed", "ICMP error whose embedded IP header or first 8 transport bytes are cut short or invalid";
    IcmpErrorNested => "icmp_error_nested", "ICMP error about an ICMP error (RFC 1122 3.2.2, RFC 4443 2.4 (e): never answered, not translated)";
    IcmpErrorMismatch => "icmp_error_mismatch", "ICMP error whose outer addresses do not fit its embedded packet";
    NeighborDiscovery => "neighbor_discovery", "IPv6 neighbour discovery the appliance does not answer: router solicitations and advertisements, redirects, solicitations for other addresses";
    UnsupportedProtocol => "unsupported_protocol", "IP protocol other than TCP, UDP, ICMP";
    SpoofedSource => "spoofed_source", "LAN packet whose source is outside the LAN prefixes";
    LocalDestination => "local_destination", "addressed to the appliance itself";
    NotNatAddress => "not_nat_address", "uplink packet not addressed to one of the uplink's NAT addresses";
    PortOutOfRange => "port_out_of_range", "uplink packet to a port outside the NAT port range";
    UnknownPort => "unknown_port", "packet on a port with no role in the topology";
    TtlExpired => "ttl_expired", "TTL or hop limit would reach zero";
    NoUplink => "no_uplink", "no healthy uplink for an outbound flow";
    NoNatAddress => "no_nat_address", "the chosen uplink has no NAT address of the packet's IP version";
    NoSession => "no_session", "inbound packet matching no NAT session";
    Filtered => "filtered", "unsolicited inbound packet refused by the NAT filtering mode";
    PortExhausted => "port_exhausted", "no free NAT port on the uplink address";
    TableFull => "table_full", "NAT shard at its session capacity";
    RingFull => "ring_full", "next stage's ring was full";
    TxFull => "tx_full", "port TX queue did not take the packet";
    TxOversize => "tx_oversize", "larger than the egress port can send (af_packet: its MTU plus the Ethernet header and VLAN tags, or the 2,000-byte TX frame); dropped alone, the rest of its burst goes on";
    RxOversize => "rx_oversize", "received frame larger than a packet buffer (af_packet: a frame merged by GRO/LRO when the offloads could not be turned off)";
    NoTxPort => "no_tx_port", "no egress port decided for the packet";
    NoBuffer => "no_buffer", "the buffer pool had no buffer for a copy the appliance makes (a race copy)";
    RaceSuppressed => "race_suppressed", "a SYN copy for a race that is already settled or already has a copy on that uplink (a retransmitted SYN does not start a second race)";
    RaceLoser => "race_loser", "a segment from an uplink that lost the race (its SYN+ACK is answered with an RST instead)";
    RaceNegative => "race_negative", "a negative answer (RST, or ICMP error) to a race copy while another copy can still answer: the client does not see it";
    RaceCopyFailed => "race_copy_failed", "a copy the appliance makes for a race (a first-payload copy for another uplink, a replayed client segment, an RST to a losing copy) that could not be written into its buffer";
    RacePending => "race_pending", "a segment on a racing uplink before the race is decided that cannot be delivered to the client";
    NoServer => "no_server", "a first request to a service address that no local server can take (a plain request to a service without local servers)";
    RedirectDone => "redirect_done", "a segment of a redirected TCP exchange that needs no answer (the client acknowledged the redirection)";
    HostSessionsLimit => "host_sessions_limit", "new flow of an inside host at its live-session limit in the shard ([nat] host_max_sessions)";
    HostRateLimit => "host_rate_limit", "new flow of an inside host past its new-sessions rate ([nat] host_new_per_second, host_new_burst)";
    HostsTableFull => "hosts_table_full", "new flow of an inside host the shard does not track while its host table is full ([nat] max_hosts)";
    TcpOutOfWindow => "tcp_out_of_window", "TCP segment from outside outside the inside host's window (an RST not in [RCV.NXT, RCV.NXT+RCV.WND), data or FIN past the window, an ACK of unsent data): the session is not refreshed";
    NotForUs => "not_for_us", "frame whose destination MAC is not the port's, broadcast (ARP only), IPv6 all-nodes or the solicited-node group of one of the port's addresses";
    MartianDestination => "martian_destination", "LAN packet to a multicast, broadcast (255.255.255.255 or a LAN subnet's), loopback, link-local or unspecified address: not translated";
    MartianSource => "martian_source", "uplink packet from a LAN prefix, a NAT address, loopback, multicast, broadcast or unspecified source";
    IcmpRateLimited => "icmp_rate_limited", "echo request to the appliance not answered: its ICMP rate limit ([icmp] rate_per_second, burst) is spent";
    TooBig => "too_big", "packet larger than the egress port's MTU that may not be fragmented (IPv4 DF, any IPv6) and gets no fragmentation needed / packet too big in its place (an ICMP error, a non-first fragment, a special source, the ICMP rate limit spent), or fragments that found no room";
    TcpInvalidFlags => "tcp_invalid_flags", "TCP segment with an invalid flag combination (SYN+FIN, SYN+RST, FIN+RST, no flags, FIN or data without ACK)";
    MappingSessionsLimit => "mapping_sessions_limit", "new flow on a mapping (an inside endpoint's NAT address and port) that has its most live sessions ([nat] mapping_max_sessions)";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert!(names.iter().all(|n| n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())));
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        assert_eq!(
            DropReason::ALL[DropReason::RingFull as usize],
            DropReason::RingFull
        );
    }
}
