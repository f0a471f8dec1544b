//! Linux kernel port backends: raw `AF_PACKET` sockets ([`rawsock`]) and the
//! `af_packet` backend over TPACKET_V3 rings built on them ([`afpacket`]).
//! With `ports/dpdk`, the only place `unsafe` is allowed; every block
//! carries its `// SAFETY:` argument.

pub mod afpacket;
pub mod ethtool;
pub mod rawsock;
