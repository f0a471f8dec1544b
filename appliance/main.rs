//! The `appliance` command line.
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use appliance::config::{self, plan};
use appliance::control::cli::{self, UplinkOp};
use appliance::control::protocol::UplinkAction;
use appliance::lab::delayline;
use appliance::mgmt::report;
use appliance::runtime;

#[derive(Parser)]
#[command(
    name = "appliance",
    version,
    about = "Multi-uplink packet appliance: SYN racing across uplinks, NAT with artificial UDP sessions"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the appliance until the duration ends, Ctrl-C, or a finite input drains.
    Run {
        /// Site configuration (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Write the final stats JSON here.
        #[arg(long)]
        stats_out: Option<PathBuf>,
        /// Serve the control socket here (else `[control] socket`, else
        /// $XDG_RUNTIME_DIR/appliance.sock or /tmp/appliance-$UID.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Measure the runtime of a configuration (its lcores, placement,
    /// rings and stages) against a built-in generator and sink, with the
    /// NAT tables holding every flow; `--compare` also runs a no-op
    /// forwarder and prints the ratio.
    Bench(appliance::bench::BenchArgs),
    /// Validate a configuration and print the plan it becomes.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Validate for a machine with this many CPUs (default: this one).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
        cpus: Option<u32>,
    },
    /// Carry frames between two interfaces with a delay, jitter and loss (the
    /// netns lab's ISP wire; this kernel has no netem).
    DelayLine(delayline::DelayLineArgs),
    /// A redirecting client (seed 000): request a service, follow
    /// redirections, resend on failure, print each step.
    Client {
        /// A lab site (`backend = "external"`, e.g. conf/redirect-lab.toml)
        /// started in-process to run against; without it the client talks
        /// to a live appliance over real sockets.
        #[arg(long)]
        lab: Option<PathBuf>,
        /// The service address and port.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Use TCP (default UDP).
        #[arg(long)]
        tcp: bool,
        #[arg(long, default_value = "GET /")]
        request: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// The client's address (--lab only).
        #[arg(long, requires = "lab")]
        from: Option<std::net::IpAddr>,
        /// Stop this lab server first (repeatable), to see failure handling
        /// (--lab only).
        #[arg(long, requires = "lab")]
        stop: Vec<String>,
        /// Sends per request before a service failure is reported.
        #[arg(long, default_value_t = 4)]
        attempts: u32,
        /// JSON file keeping remembered (permanent, leased) redirections and
        /// the history between runs (not with --lab).
        #[arg(long, conflicts_with = "lab")]
        state: Option<PathBuf>,
        /// How long each send waits for an answer, in milliseconds (not
        /// with --lab).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        timeout_ms: u64,
    },
    /// A running appliance's stats: the exit summary, live.
    Stats {
        #[command(flatten)]
        socket: SocketArg,
        /// Redraw every SECS seconds with per-second rates.
        #[arg(long, value_name = "SECS")]
        watch: Option<f64>,
        /// The stats JSON (the keys of --stats-out); with --watch one line
        /// per redraw.
        #[arg(long)]
        json: bool,
    },
    /// A running appliance's uplinks: list them, drain, resume, take down,
    /// bring up, change a weight.
    Uplink {
        #[command(flatten)]
        socket: SocketArg,
        /// Print the answer as JSON.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        op: UplinkCmd,
    },
    /// A running appliance's RTT table: per destination prefix and uplink.
    Rtt {
        #[command(flatten)]
        socket: SocketArg,
        /// Only destinations in ADDR[/LEN].
        #[arg(long, value_name = "ADDR[/LEN]")]
        dest: Option<String>,
        /// At most N rows.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
    /// A running appliance's events, live: sessions created, expired,
    /// flushed; races decided (winner, RTTs); limits hit; uplink changes.
    Events {
        #[command(flatten)]
        socket: SocketArg,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Stop after N events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Re-read the running appliance's config and apply what can change
    /// live (as SIGHUP); a change that needs a restart is refused.
    Reload {
        #[command(flatten)]
        socket: SocketArg,
        /// Read this file instead of the one the appliance runs from.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// A running appliance's NAT sessions (`flush`: remove them), filtered.
    Sessions(SessionsArgs),
    /// Captures the frames crossing a port of a running appliance into a
    /// pcap file (like `tcpdump -i PORT -w FILE`).
    Capture(CaptureArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SessionsAction {
    /// Remove the matching sessions (their ports are freed).
    Flush,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProtoArg {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

#[derive(clap::Args)]
struct CaptureArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// The port's name (`[[ports]] name`).
    #[arg(long)]
    port: String,
    /// Frames received (rx), sent (tx) or both.
    #[arg(long, value_parser = ["rx", "tx", "both"], default_value = "both")]
    direction: String,
    /// Stop after N frames.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after S seconds (with neither --count nor --seconds: 10).
    #[arg(long)]
    seconds: Option<f64>,
    /// Bytes kept of each frame (1..=65535).
    #[arg(long, default_value_t = 65_535)]
    snaplen: u32,
    /// The pcap file to write.
    #[arg(short = 'w', value_name = "FILE")]
    write: PathBuf,
}

#[derive(clap::Args)]
struct SessionsArgs {
    /// `flush` removes the matching sessions instead of listing them.
    #[arg(value_enum)]
    action: Option<SessionsAction>,
    #[command(flatten)]
    socket: SocketArg,
    /// Only sessions on this uplink.
    #[arg(long)]
    uplink: Option<String>,
    /// Only sessions of inside clients in ADDR[/LEN].
    #[arg(long, value_name = "ADDR[/LEN]")]
    client: Option<String>,
    /// Only sessions to outside remotes in ADDR[/LEN].
    #[arg(long, value_name = "ADDR[/LEN]")]
    remote: Option<String>,
    #[arg(long, value_enum)]
    proto: Option<ProtoArg>,
    /// syn_sent, syn_received, established, fin_seen, closed, rst, udp, icmp.
    #[arg(long)]
    state: Option<String>,
    /// List at most N sessions.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct SocketArg {
    /// The running appliance's control socket (default:
    /// $XDG_RUNTIME_DIR/appliance.sock, else /tmp/appliance-$UID.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
}

impl SocketArg {
    fn path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(appliance::control::default_socket)
    }
}

#[derive(Subcommand)]
enum UplinkCmd {
    /// Every uplink: admin state, health, weight, sessions, races, RTT.
    List,
    /// No new flows or races on it; its sessions stay until they end.
    Drain { name: String },
    /// Undo a drain.
    Resume { name: String },
    /// Administratively down: as a link down (`on_uplink_down` applies).
    Down { name: String },
    /// Undo a down (or a drain).
    Up { name: String },
    /// Set its selection weight.
    Weight {
        name: String,
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        weight: u32,
    },
}

/// The config file's model and the plan it becomes.
fn load(path: &Path) -> Result<(config::Config, plan::Plan), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cfg = config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let plan = plan::validate(&cfg).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((cfg, plan))
}

/// The plan for a machine with `cpus` CPUs (default: this one).
fn load_for(path: &Path, cpus: Option<u32>) -> Result<plan::Plan, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cfg = config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let cpus = cpus.map_or_else(plan::available_cpus, |n| n as usize);
    plan::validate_with_cpus(&cfg, cpus).map_err(|e| format!("{}: {e}", path.display()))
}

/// Exit 0, or 1 with one `error:` line.
fn done(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Allocations of 2 MiB or more (the NAT tables) on 2 MiB-aligned mappings
/// advised for transparent huge pages (`[runtime] huge_pages`).
#[global_allocator]
static ALLOC: appliance::memory::HugeAlloc = appliance::memory::HugeAlloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config, cpus } => match load_for(&config, cpus) {
            Ok(plan) => {
                print!("{}", plan.describe());
                println!("ok: {} is valid", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run {
            config,
            duration,
            stats_out,
            socket,
        } => {
            let (cfg, plan) = match load(&config) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let socket = control_socket(socket, &plan);
            let source = (config, cfg);
            match run(&plan, source, duration, stats_out.as_deref(), socket) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Bench(args) => match appliance::bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::DelayLine(args) => match delayline::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        cmd @ Cmd::Client { .. } => client(cmd),
        Cmd::Stats {
            socket,
            watch,
            json,
        } => done(cli::stats(&socket.path(), watch, json)),
        Cmd::Sessions(args) => sessions_cmd(args),
        Cmd::Events {
            socket,
            json,
            count,
        } => done(cli::events(&socket.path(), json, count)),
        Cmd::Reload {
            socket,
            config,
            json,
        } => done(cli::reload(&socket.path(), config.as_deref(), json)),
        Cmd::Capture(args) => capture_cmd(args),
        Cmd::Rtt {
            socket,
            dest,
            limit,
            json,
        } => done(cli::rtt(&socket.path(), dest, limit as usize, json)),
        Cmd::Uplink { socket, json, op } => {
            let op = match &op {
                UplinkCmd::List => UplinkOp::List,
                UplinkCmd::Drain { name } => UplinkOp::Set(name, UplinkAction::Drain),
                UplinkCmd::Resume { name } => UplinkOp::Set(name, UplinkAction::Resume),
                UplinkCmd::Down { name } => UplinkOp::Set(name, UplinkAction::Down),
                UplinkCmd::Up { name } => UplinkOp::Set(name, UplinkAction::Up),
                UplinkCmd::Weight { name, weight } => UplinkOp::Weight(name, *weight),
            };
            done(cli::uplink(&socket.path(), op, json))
        }
    }
}

/// `appliance capture`: runs the capture, writes the pcap, says how many
/// frames (and how many the lcores lost).
fn capture_cmd(args: CaptureArgs) -> ExitCode {
    let CaptureArgs {
        socket,
        port,
        direction,
        count,
        seconds,
        snaplen,
        write,
    } = args;
    let seconds = seconds.or(count.is_none().then_some(10.0));
    let start = appliance::control::protocol::Command::CaptureStart {
        port: port.clone(),
        direction: Some(direction),
        snaplen: Some(snaplen),
        count,
        seconds,
    };
    done(
        appliance::control::capture::run_client(&socket.path(), start, &write).map(|a| {
            eprintln!(
                "{} frames of port {port} written to {}, {} lost (capture ring full)",
                a["captured"],
                write.display(),
                a["lost"]
            );
        }),
    )
}

/// `appliance sessions [flush] [filters]`.
fn sessions_cmd(args: SessionsArgs) -> ExitCode {
    let SessionsArgs {
        action,
        socket,
        uplink,
        client,
        remote,
        proto,
        state,
        limit,
        json,
    } = args;
    let filters = appliance::control::protocol::Filters {
        uplink,
        client,
        remote,
        proto: proto.map(|p| {
            match p {
                ProtoArg::Tcp => "tcp",
                ProtoArg::Udp => "udp",
                ProtoArg::Icmp => "icmp",
                ProtoArg::Icmpv6 => "icmpv6",
            }
            .to_string()
        }),
        state,
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let flush = matches!(action, Some(SessionsAction::Flush));
    done(cli::sessions(&socket.path(), filters, limit, flush, json))
}

/// Where `run` serves its control socket: `--socket`, else `[control]
/// socket`, else the default path; when the default path is served by
/// another appliance already, this one runs without a socket (and says
/// so): a second demo next to a first keeps working.
fn control_socket(flag: Option<PathBuf>, plan: &plan::Plan) -> Option<PathBuf> {
    if flag.is_some() || plan.control_socket.is_some() {
        return flag.or_else(|| plan.control_socket.clone());
    }
    let path = appliance::control::default_socket();
    if appliance::control::server::in_use(&path) {
        eprintln!(
            "warning: the control socket {} is served by another appliance; this one runs without one (give --socket)",
            path.display()
        );
        return None;
    }
    Some(path)
}

fn run(
    plan: &plan::Plan,
    source: (PathBuf, config::Config),
    duration: Option<f64>,
    stats_out: Option<&Path>,
    socket: Option<PathBuf>,
) -> anyhow::Result<()> {
    let duration = match duration {
        Some(d) if !(d > 0.0 && d.is_finite()) => {
            anyhow::bail!("--duration must be a positive number of seconds")
        }
        Some(d) => Some(Duration::from_secs_f64(d)),
        None => None,
    };
    // SIGINT and SIGTERM stop the run (final stats printed); SIGHUP
    // reloads the config file; SIGUSR1 reopens the NAT log's file.
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    let reopen = Arc::new(AtomicBool::new(false));
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    signal_hook::flag::register(SIGHUP, reload.clone()).context("installing the SIGHUP handler")?;
    signal_hook::flag::register(SIGUSR1, reopen.clone())
        .context("installing the SIGUSR1 handler")?;
    let opts = runtime::RunOptions {
        duration,
        live_status: true,
        stop: Some(stop),
        socket,
        config: Some(source),
        reload: Some(reload),
        reopen: Some(reopen),
    };
    let stats = runtime::run_report(plan, &opts)?;
    print!("{}", report::summary(&stats));
    if let Some(path) = stats_out {
        let text = serde_json::to_string_pretty(&stats.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("stats written to {}", path.display());
    }
    Ok(())
}

/// `appliance client`: in-process against a lab (`--lab`), else against a
/// live appliance over real sockets.
fn client(cmd: Cmd) -> ExitCode {
    let Cmd::Client {
        lab,
        to,
        tcp,
        request,
        count,
        from,
        stop,
        attempts,
        state,
        timeout_ms,
    } = cmd
    else {
        unreachable!("client() is called with Cmd::Client")
    };
    let proto = if tcp {
        pipelines::redirect::client::Proto::Tcp
    } else {
        pipelines::redirect::client::Proto::Udp
    };
    let r = match lab {
        Some(lab) => appliance::lab::client::run(&appliance::lab::client::ClientArgs {
            lab: &lab,
            to,
            proto,
            request: &request,
            count,
            from: from.unwrap_or(std::net::IpAddr::from([203, 0, 113, 7])),
            stop: &stop,
            max_attempts: attempts,
        }),
        None => appliance::redirect_client::cli::run(&appliance::redirect_client::cli::CliArgs {
            to,
            proto,
            request,
            count,
            max_attempts: attempts,
            timeout: std::time::Duration::from_millis(timeout_ms),
            state,
        }),
    };
    match r {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
