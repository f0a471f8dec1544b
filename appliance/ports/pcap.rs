//! pcap backend (placeholder until written).
