//! The site configuration as written by the operator (TOML): the serde
//! model, separate from the runtime types. Every struct denies unknown
//! fields, and every address, prefix, MAC, mode and algorithm is typed
//! (read by `values`), so a bad one is refused while parsing with its
//! field's path. Keys and defaults are the config file format: renaming
//! one breaks every site file.
//!
//! What this does NOT check: ranges, cross-references between sections
//! and backend-specific rules; [`crate::config::plan`] does that when it
//! validates a `Config` into a `Plan`.
//! May import `values`, std, serde and pipelines' value types; never the
//! plan or anything that runs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use pipelines::nat::Filtering;
use pipelines::select::policy::RaceMode;
use pipelines::select::Algorithm;
use pipelines::topology::IpPrefix;
use serde::Deserialize;

mod telemetry;
pub use telemetry::*;

use super::values::{
    next_hop_v4, opt_text, text, unicast_mac, vec_text, OnUplinkDown, PersistenceKind,
    PolicyProtocol, RedirectStoreKind, ReturnSteering, SelectionMode, ServiceProtocol, Stage,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// The embedded simulated site (no NIC, no DPDK).
    Sim,
    /// Read a capture per input port, write a capture per output port.
    Pcap,
    /// Linux interfaces through memory-mapped AF_PACKET rings (no DPDK).
    AfPacket,
    /// DPDK ports: PCI devices (SR-IOV VFs) or vdevs (cargo feature `dpdk`).
    Dpdk,
    /// Ports attached by the program that embeds the appliance
    /// (`Runtime::start_with_ports`: tests, the redirection lab).
    External,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub backend: BackendKind,
    pub lan: LanConfig,
    pub ports: Vec<PortConfig>,
    pub uplinks: Vec<UplinkConfig>,
    #[serde(default)]
    pub nat: NatSection,
    /// IP fragments (virtual reassembly): per-shard limits and timeout.
    #[serde(default)]
    pub fragments: FragmentsSection,
    #[serde(default)]
    pub selection: SelectionSection,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// How next hops' MACs learned by ARP / neighbour discovery may change.
    #[serde(default)]
    pub neighbours: NeighboursSection,
    /// Server-cluster rerouting (seed 000): service addresses, the servers
    /// behind them, the redirection database.
    #[serde(default)]
    pub redirection: RedirectionSection,
    /// The operator's control socket (`appliance stats`, `uplink`, ...).
    #[serde(default)]
    pub control: ControlSection,
    /// The rate limit of the ICMP the appliance originates.
    #[serde(default)]
    pub icmp: IcmpSection,
    /// What operators plug into: the Prometheus endpoint.
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// Required when `backend = "sim"`.
    pub sim: Option<SimConfig>,
    /// Only with `backend = "af-packet"` (all keys defaulted).
    pub af_packet: Option<AfPacketConfig>,
    /// Only with `backend = "dpdk"` (all keys defaulted).
    pub dpdk: Option<DpdkConfig>,
}

/// `[neighbours]`: who may change a next hop's learned MAC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NeighboursSection {
    /// After a next hop's MAC is set, gratuitous ARPs, unsolicited ARP
    /// replies and NAs with Override cannot change it for this long
    /// (Linux's `locktime`); answers to the appliance's own requests are
    /// always accepted. 0 disables the hold-down.
    pub lock_time_ms: u64,
}

impl Default for NeighboursSection {
    fn default() -> Self {
        NeighboursSection {
            lock_time_ms: pipelines::neighbour::LOCK_TIME.as_nanos() / 1_000_000,
        }
    }
}

/// The af_packet backend's rings (TPACKET_V3), per port and queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AfPacketConfig {
    /// RX ring: blocks of `block_kib` KiB each; a block is handed to the
    /// appliance when full or after `block_timeout_ms`.
    pub rx_blocks: u32,
    pub block_kib: u32,
    pub block_timeout_ms: u32,
    /// TX ring: frames of 2 KiB.
    pub tx_frames: u32,
}

impl Default for AfPacketConfig {
    fn default() -> Self {
        AfPacketConfig {
            rx_blocks: 64,
            block_kib: 256,
            block_timeout_ms: 1,
            tx_frames: 2048,
        }
    }
}

/// The DPDK backend: EAL, mempools, port queues.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpdkConfig {
    /// Virtual devices to create, as EAL `--vdev` values
    /// ("net_af_packet0,iface=lan0", "net_null0", "net_tap0,iface=tap0").
    pub vdevs: Vec<String>,
    /// PCI devices the EAL may use (`-a`); empty with only vdevs.
    pub allow: Vec<String>,
    /// Use hugepages (false: `--no-huge`, for labs and CI).
    pub hugepages: bool,
    /// Memory the EAL reserves, MiB.
    pub memory_mb: u32,
    /// Mbufs per NUMA socket's pool.
    pub mbufs_per_socket: u32,
    /// Per-lcore mbuf cache.
    pub mbuf_cache: u32,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// How return traffic reaches the lcore owning its NAT shard when
    /// several lcores receive: "software" (hand-off rings; any NIC) or
    /// "flow" (rte_flow rules on the NAT port slices; NICs with flow
    /// steering).
    pub return_steering: ReturnSteering,
    /// Extra EAL arguments, passed last.
    pub eal_args: Vec<String>,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig {
            vdevs: Vec::new(),
            allow: Vec::new(),
            hugepages: true,
            memory_mb: 1024,
            mbufs_per_socket: 32_768,
            mbuf_cache: 256,
            rx_desc: 1024,
            tx_desc: 1024,
            return_steering: ReturnSteering::Software,
            eal_args: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanConfig {
    /// Name of the port facing the LAN.
    pub port: String,
    /// Inside prefixes (e.g. "10.0.0.0/16"): the clients' addresses.
    #[serde(deserialize_with = "vec_text")]
    pub prefixes: Vec<IpPrefix>,
    /// The appliance's own addresses on the LAN (the clients' gateway).
    #[serde(default, deserialize_with = "vec_text")]
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    /// The port's MAC address, "aa:bb:cc:dd:ee:ff". Required with the sim
    /// and pcap backends; with af-packet and dpdk, omitted means the
    /// interface's / device's own MAC.
    #[serde(default, deserialize_with = "opt_text")]
    pub mac: Option<[u8; 6]>,
    /// af-packet: the Linux interface this port is.
    pub interface: Option<String>,
    /// dpdk: the DPDK device name: a PCI address ("0000:3b:02.0") or a
    /// vdev's name ("net_af_packet0").
    pub device: Option<String>,
    /// 802.1Q VLAN id (1..=4094) if the port's frames are tagged.
    pub vlan: Option<u16>,
    /// pcap backend: capture replayed as this port's received traffic.
    pub pcap_in: Option<PathBuf>,
    /// pcap backend: capture written with this port's transmitted traffic.
    pub pcap_out: Option<PathBuf>,
    /// Largest IP datagram the port sends (default 1500; 68..=9000, at
    /// least 1280 on a port that carries IPv6). Checked against the
    /// interface's / device's MTU at start.
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    pub name: String,
    /// Name of the port this uplink leaves through.
    pub port: String,
    /// Source-NAT addresses: single addresses or prefixes, IPv4 and/or IPv6.
    #[serde(deserialize_with = "vec_text")]
    pub nat_addresses: Vec<IpPrefix>,
    /// MAC of the next hop (the ISP's router), fixed; a unicast MAC. Omit
    /// it to resolve `next_hop` / `next_hop_v6` by ARP / neighbour
    /// discovery instead.
    #[serde(default, deserialize_with = "unicast_mac")]
    pub next_hop_mac: Option<[u8; 6]>,
    /// IPv4 address of the next hop (needed without `next_hop_mac` when
    /// the uplink has IPv4 NAT addresses).
    #[serde(default, deserialize_with = "next_hop_v4")]
    pub next_hop: Option<Ipv4Addr>,
    /// IPv6 address of the next hop (likewise for IPv6 NAT addresses).
    #[serde(default, deserialize_with = "opt_text")]
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Relative capacity, for weighted algorithms (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Whether echo requests to the uplink's NAT addresses are answered
    /// (default true).
    #[serde(default = "yes")]
    pub answer_ping: bool,
}

fn one() -> u32 {
    1
}

/// `[icmp]`: the rate limit of the ICMP the appliance originates (echo
/// replies, time exceeded, fragmentation needed, packet too big).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IcmpSection {
    /// Messages per second to one destination (token bucket refill).
    pub rate_per_second: u32,
    /// Messages one destination may get at once (bucket size).
    pub burst: u32,
    /// Destinations with a bucket of their own, per stage instance.
    pub max_destinations: usize,
    /// Messages per second shared by destinations that find the table full.
    pub global_per_second: u32,
}

impl Default for IcmpSection {
    fn default() -> Self {
        let d = pipelines::topology::IcmpLimits::default();
        IcmpSection {
            rate_per_second: d.rate_per_second,
            burst: d.burst,
            max_destinations: d.max_destinations,
            global_per_second: d.global_per_second,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatSection {
    /// Inclusive NAT port range [first, last], split evenly between shards.
    pub port_range: [u16; 2],
    pub max_sessions_per_shard: usize,
    pub udp_idle_timeout_s: u64,
    pub tcp_established_timeout_s: u64,
    pub tcp_transitory_timeout_s: u64,
    pub tcp_closed_timeout_s: u64,
    pub icmp_timeout_s: u64,
    /// Which unsolicited inbound packets reach a mapping: one of
    /// `Filtering::NAMES`.
    #[serde(deserialize_with = "text")]
    pub filtering: Filtering,
    /// Every session is looked at by the sweep at least this often.
    pub sweep_interval_ms: u64,
    /// Keep the inside port as the NAT port when it is free.
    pub port_preservation: bool,
    /// Keys the NAT hashes and port randomisation. Absent: random per run,
    /// except with the pcap backend (fixed, so replays are identical).
    pub seed: Option<u64>,
    /// Most live sessions one inside host holds, for the whole appliance
    /// (each shard allows its share, rounded up: a host's flows spread over
    /// the shards by their 5-tuple hash).
    pub host_max_sessions: u32,
    /// New outbound sessions one inside host may open per second, and in a
    /// burst (a token bucket; each shard refills its share).
    pub host_new_per_second: u32,
    pub host_new_burst: u32,
    /// Race copies one inside host may have waiting for an answer (a race
    /// over n uplinks counts n); past it its SYNs leave by one uplink.
    pub host_max_races: u32,
    /// Inside hosts with live sessions each shard tracks (every shard sees
    /// every active host); a further host's new flows are refused.
    pub max_hosts_per_shard: usize,
    /// Most live sessions one mapping (an inside endpoint's NAT address and
    /// port on an uplink) holds; further new sessions on it are refused.
    pub mapping_max_sessions: u32,
}

impl Default for NatSection {
    fn default() -> Self {
        NatSection {
            port_range: [1024, 65535],
            max_sessions_per_shard: 65_536,
            udp_idle_timeout_s: 180,
            tcp_established_timeout_s: 7_440,
            tcp_transitory_timeout_s: 240,
            tcp_closed_timeout_s: 10,
            icmp_timeout_s: 60,
            filtering: Filtering::AddressAndPortDependent,
            sweep_interval_ms: 1_000,
            port_preservation: true,
            seed: None,
            host_max_sessions: 4_096,
            host_new_per_second: 2_000,
            host_new_burst: 4_000,
            host_max_races: 1_024,
            max_hosts_per_shard: 8_192,
            mapping_max_sessions: 256,
        }
    }
}

/// `[fragments]`: the fragment tracker of each NAT shard (virtual
/// reassembly: fragments are translated one by one with the first
/// fragment's ports, never joined).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FragmentsSection {
    /// Later fragments a shard holds while their first fragment has not
    /// arrived (packet buffers taken from the pool).
    pub max_held_per_shard: usize,
    /// Datagrams a shard tracks at once.
    pub max_datagrams_per_shard: usize,
    /// A datagram is forgotten this long after its first fragment seen;
    /// fragments still held are then dropped (`fragment_timeout`).
    pub timeout_ms: u64,
    /// Fragments one datagram may have.
    pub max_fragments_per_datagram: usize,
}

impl Default for FragmentsSection {
    fn default() -> Self {
        FragmentsSection {
            max_held_per_shard: 256,
            max_datagrams_per_shard: 1_024,
            timeout_ms: 2_000,
            max_fragments_per_datagram: 64,
        }
    }
}

/// Uplink selection (seed 001): SYN racing, the RTT cache, RFC 2391
/// algorithms and uplink health.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionSection {
    /// "syn-ack" (race; the first SYN+ACK wins), "first-payload" (race; the
    /// first payload wins) or "off" (no race; `algorithm` for everything).
    pub mode: SelectionMode,
    /// RFC 2391 algorithm for traffic that does not race and for ties: one
    /// of `Algorithm::NAMES`.
    #[serde(deserialize_with = "text")]
    pub algorithm: Algorithm,
    /// A race's measurements let later connections to its destination skip
    /// racing this long.
    pub rtt_cache_ttl_s: u64,
    /// Destinations sharing this prefix share one RTT entry.
    pub dest_prefix_v4: u8,
    pub dest_prefix_v6: u8,
    /// Most destinations the RTT cache holds.
    pub cache_entries: usize,
    /// A losing race copy waits this long for its SYN+ACK (to reset it).
    pub race_timeout_ms: u64,
    /// Races in progress per shard.
    pub max_races_per_shard: usize,
    /// On a cache hit, uplinks within this percentage of the best RTT tie.
    pub tie_margin_pct: u32,
    /// Weighted least load: the weight of one TCP / one UDP session.
    pub tcp_session_weight: u32,
    pub udp_session_weight: u32,
    /// Distinct destinations toward which race copies failed (no answer in
    /// between) that mark an uplink down.
    pub unanswered_limit: u32,
    /// A down uplink gets one race copy this often; its answer brings the
    /// uplink back.
    pub probe_interval_s: u64,
    /// Sessions on an uplink that goes down: "keep" or "reset".
    pub on_uplink_down: OnUplinkDown,
    /// How often the management core publishes a snapshot to the lcores.
    pub publish_interval_ms: u64,
    /// Rules, first match wins.
    pub policies: Vec<PolicyConfig>,
}

impl Default for SelectionSection {
    fn default() -> Self {
        SelectionSection {
            mode: SelectionMode::Race(RaceMode::SynAck),
            algorithm: Algorithm::WeightedLeastLoad,
            rtt_cache_ttl_s: 60,
            dest_prefix_v4: 32,
            dest_prefix_v6: 128,
            cache_entries: 65_536,
            race_timeout_ms: 3_000,
            max_races_per_shard: 16_384,
            tie_margin_pct: 10,
            tcp_session_weight: 1,
            udp_session_weight: 1,
            unanswered_limit: 3,
            probe_interval_s: 5,
            on_uplink_down: OnUplinkDown::Keep,
            publish_interval_ms: 50,
            policies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// "tcp", "udp", "icmp" or "any".
    #[serde(default = "any")]
    pub protocol: PolicyProtocol,
    /// Destination ports [first, last] (default: all).
    #[serde(default = "all_ports")]
    pub ports: [u16; 2],
    /// Whether new TCP connections matching the rule race.
    #[serde(default = "yes")]
    pub race: bool,
    /// Algorithm for what the rule matches (default: the section's).
    #[serde(default, deserialize_with = "opt_text")]
    pub algorithm: Option<Algorithm>,
}

fn any() -> PolicyProtocol {
    PolicyProtocol::Any
}

fn all_ports() -> [u16; 2] {
    [0, 65535]
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Stages on separate lcores joined by rings.
    Pipeline,
    /// Every worker runs all stages; hand-off rings carry packets to the
    /// worker owning their NAT shard.
    RunToCompletion,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub mode: Mode,
    /// Packets per burst, 1..=32.
    pub burst_size: usize,
    /// Slots (bursts) per ring; a power of two.
    pub ring_size: usize,
    /// Packet buffers in the pool (software backends).
    pub pool_size: usize,
    /// Allow more lcores than the machine has CPUs (labs only: threads share
    /// CPUs and back off when idle; pinning is then refused).
    pub oversubscribe: bool,
    /// Large tables on transparent huge pages (`crate::memory`).
    pub huge_pages: crate::memory::HugePages,
    pub lcores: Vec<LcoreConfig>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            mode: Mode::RunToCompletion,
            burst_size: 32,
            ring_size: 1024,
            pool_size: 32_768,
            oversubscribe: false,
            huge_pages: crate::memory::HugePages::Auto,
            lcores: vec![LcoreConfig::default()],
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LcoreConfig {
    /// CPU to pin this lcore's thread to; unpinned when absent.
    pub core: Option<usize>,
    /// Pipeline mode: the contiguous stages this lcore runs. Omitted (or all
    /// four) in run-to-completion mode.
    #[serde(default)]
    pub stages: Vec<Stage>,
}

/// The embedded simulated site: LAN clients and internet servers speaking
/// real TCP and UDP (smoltcp), joined to the appliance through virtual
/// ports, with per-uplink delay, jitter and loss.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seed of every random choice in the site (reproducible runs).
    pub seed: u64,
    pub clients: usize,
    pub servers: usize,
    /// Clients get consecutive addresses from here (inside the LAN prefixes).
    #[serde(deserialize_with = "text")]
    pub client_base: Ipv4Addr,
    /// Servers get consecutive addresses from here (outside every local prefix).
    #[serde(deserialize_with = "text")]
    pub server_base: Ipv4Addr,
    /// TCP port the servers listen on.
    pub tcp_port: u16,
    /// UDP port the servers answer on.
    pub udp_port: u16,
    /// Mean interval between a client's TCP connections (exponential).
    pub tcp_interval_ms: u64,
    /// Mean interval between a client's UDP requests (exponential); 0 = no UDP.
    pub udp_interval_ms: u64,
    pub tcp_request_bytes: usize,
    pub tcp_response_bytes: usize,
    pub udp_request_bytes: usize,
    pub udp_response_bytes: usize,
    /// A TCP exchange not complete after this long counts as failed.
    pub tcp_timeout_ms: u64,
    /// A UDP request without a reply after this long counts as lost.
    pub udp_timeout_ms: u64,
    /// Conditions of each uplink's path; every uplink must appear once.
    pub uplinks: Vec<SimUplinkConfig>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            clients: 200,
            servers: 20,
            client_base: Ipv4Addr::new(10, 0, 1, 1),
            server_base: Ipv4Addr::new(203, 0, 113, 1),
            tcp_port: 80,
            udp_port: 53,
            tcp_interval_ms: 1000,
            udp_interval_ms: 1000,
            tcp_request_bytes: 200,
            tcp_response_bytes: 4000,
            udp_request_bytes: 64,
            udp_response_bytes: 256,
            tcp_timeout_ms: 5000,
            udp_timeout_ms: 2000,
            uplinks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimUplinkConfig {
    /// Name of the uplink (as in `[[uplinks]]`).
    pub name: String,
    /// One-way delay in each direction between the appliance and the servers.
    pub delay_ms: f64,
    /// Extra random delay, uniform in [0, jitter_ms]; per-direction order is kept.
    #[serde(default)]
    pub jitter_ms: f64,
    /// Probability that a frame is lost, in each direction, 0.0..=1.0.
    #[serde(default)]
    pub loss: f64,
    /// A transparent TCP proxy (a SYN proxy) sits on this uplink near the
    /// appliance: it answers SYNs itself and opens the connection to the
    /// server only once the client completed the handshake with it. The
    /// uplink's `delay_ms`, `jitter_ms` and `loss` then apply between the
    /// proxy and the servers.
    #[serde(default)]
    pub proxy: bool,
    /// One-way delay between the appliance and the proxy (no jitter, no
    /// loss); only with `proxy = true`. Default 1 ms.
    pub proxy_delay_ms: Option<f64>,
}

/// Server-cluster rerouting (seed 000 [25]-[66], `docs/redirection.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedirectionSection {
    /// This appliance's name in the shared store.
    pub appliance: String,
    /// Where loads are shared: "embedded" (this appliance alone) or "redis".
    pub store: RedirectStoreKind,
    /// The Redis server with `store = "redis"`: `host:port`, or a URL
    /// `redis://[user[:password]@]host[:port][/db]` (`rediss://` for TLS).
    /// Checked only when the store is Redis; a password in it is never shown.
    pub redis: String,
    /// The Redis ACL user (AUTH username), unless the URL names one.
    pub redis_username: Option<String>,
    /// The Redis password, written in the file (prefer `redis_password_env`).
    pub redis_password: Option<String>,
    /// The environment variable holding the Redis password
    /// (e.g. "APPLIANCE_REDIS_PASSWORD"); it must be set when named.
    pub redis_password_env: Option<String>,
    /// With `rediss://`: a PEM file of the CA(s) that signed the store's
    /// certificate, instead of the system's and the Web PKI's roots.
    pub redis_tls_ca_file: Option<String>,
    /// Connecting (TCP, TLS and AUTH) to the store gives up after this.
    pub redis_connect_timeout_ms: u64,
    /// One read or write on the store's connection gives up after this;
    /// a whole exchange (connect + writes + reads) after
    /// `redis_connect_timeout_ms + 2 * redis_io_timeout_ms`.
    pub redis_io_timeout_ms: u64,
    /// After a failed exchange the store is retried after a backoff that
    /// doubles from `report_interval_ms` up to this.
    pub redis_backoff_max_ms: u64,
    /// How often the management core recounts loads and publishes a
    /// decision snapshot to the lcores.
    pub publish_interval_ms: u64,
    /// How often loads are written to and read from the shared store
    /// (seed 000 [65]: "every N seconds").
    pub report_interval_ms: u64,
    /// A load in the shared store expires after this (a dead appliance
    /// disappears).
    pub load_ttl_ms: u64,
    /// Failure reports within `failure_window_ms` that make a target avoided.
    pub failure_threshold: u32,
    pub failure_window_ms: u64,
    /// How long an avoided target is left out (seed 000 [62]).
    pub avoid_ms: u64,
    /// Weight of one TCP / one artificial UDP session in a load.
    pub tcp_session_weight: u64,
    pub udp_session_weight: u64,
    pub servers: Vec<ServerConfig>,
    pub services: Vec<ServiceConfig>,
    pub peers: Vec<PeerConfig>,
}

impl Default for RedirectionSection {
    fn default() -> Self {
        RedirectionSection {
            appliance: "appliance".into(),
            store: RedirectStoreKind::Embedded,
            redis: "127.0.0.1:6379".into(),
            redis_username: None,
            redis_password: None,
            redis_password_env: None,
            redis_tls_ca_file: None,
            redis_connect_timeout_ms: 300,
            redis_io_timeout_ms: 300,
            redis_backoff_max_ms: 5_000,
            publish_interval_ms: 100,
            report_interval_ms: 1_000,
            load_ttl_ms: 5_000,
            failure_threshold: 3,
            failure_window_ms: 30_000,
            avoid_ms: 30_000,
            tcp_session_weight: 1,
            udp_session_weight: 1,
            servers: Vec::new(),
            services: Vec::new(),
            peers: Vec::new(),
        }
    }
}

/// A server behind the appliance, on the LAN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub name: String,
    /// Its LAN address and service port, e.g. "10.0.2.1:7000".
    #[serde(deserialize_with = "text")]
    pub address: SocketAddr,
    /// Its MAC; absent: broadcast until ARP arrives.
    #[serde(default, deserialize_with = "opt_text")]
    pub mac: Option<[u8; 6]>,
}

/// A service address on an uplink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    /// Address and port, e.g. "198.51.100.10:7000".
    #[serde(deserialize_with = "text")]
    pub address: SocketAddr,
    /// The uplink the address is reached over.
    pub uplink: String,
    /// "tcp", "udp".
    #[serde(default = "both_protocols")]
    pub protocols: Vec<ServiceProtocol>,
    /// What its redirections tell the client: "once", "permanent",
    /// "leased" or "none".
    #[serde(default = "once")]
    pub persistence: PersistenceKind,
    /// The lease of `persistence = "leased"`, seconds.
    #[serde(default = "hour")]
    pub lease_s: u32,
    pub members: Vec<MemberConfig>,
}

fn both_protocols() -> Vec<ServiceProtocol> {
    vec![ServiceProtocol::Tcp, ServiceProtocol::Udp]
}

fn once() -> PersistenceKind {
    PersistenceKind::Once
}

fn hour() -> u32 {
    3600
}

/// One member of a service: exactly one of `server`, `service`, `peer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub server: Option<String>,
    pub service: Option<String>,
    pub peer: Option<String>,
    #[serde(default = "one")]
    pub weight: u32,
    /// Client prefixes the member is for (default: all).
    #[serde(default, deserialize_with = "vec_text")]
    pub clients: Vec<IpPrefix>,
}

/// A service of another appliance, its load read from the shared store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// "APPLIANCE/SERVICE": its key in the shared store.
    pub name: String,
    /// Where redirections to it send the client.
    #[serde(deserialize_with = "text")]
    pub address: SocketAddr,
}
