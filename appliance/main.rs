//! The `appliance` command line.
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use appliance::config::{self, plan};
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
    },
    /// Validate a configuration and print the plan it becomes.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Carry frames between two interfaces with a delay, jitter and loss (the
    /// netns lab's ISP wire; this kernel has no netem).
    DelayLine(delayline::DelayLineArgs),
    /// A redirecting client (seed 000): request a service, follow
    /// redirections, resend on failure, print each step.
    Client {
        /// A lab site (`backend = "external"`, e.g. conf/redirect-lab.toml)
        /// started in-process to run against.
        #[arg(long)]
        lab: PathBuf,
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
        /// The client's address.
        #[arg(long, default_value = "203.0.113.7")]
        from: std::net::IpAddr,
        /// Stop this lab server first (repeatable), to see failure handling.
        #[arg(long)]
        stop: Vec<String>,
        /// Sends per request before a service failure is reported.
        #[arg(long, default_value_t = 4)]
        attempts: u32,
    },
    /// Benchmark the packet path (reserved: arrives with the benchmark issue).
    Bench,
    /// Query a running appliance's stats (reserved: arrives with the control socket).
    Stats,
}

fn load(path: &Path) -> Result<plan::Plan, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cfg = config::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    plan::validate(&cfg).map_err(|e| format!("{}: {e}", path.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config } => match load(&config) {
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
        } => {
            let plan = match load(&config) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match run(&plan, duration, stats_out.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::DelayLine(args) => match delayline::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Client {
            lab,
            to,
            tcp,
            request,
            count,
            from,
            stop,
            attempts,
        } => {
            let args = appliance::lab::client::ClientArgs {
                lab: &lab,
                to,
                proto: if tcp {
                    pipelines::redirect::client::Proto::Tcp
                } else {
                    pipelines::redirect::client::Proto::Udp
                },
                request: &request,
                count,
                from,
                stop: &stop,
                max_attempts: attempts,
            };
            match appliance::lab::client::run(&args) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Bench | Cmd::Stats => {
            eprintln!("error: this subcommand is reserved and not available in this version");
            ExitCode::from(2)
        }
    }
}

fn run(plan: &plan::Plan, duration: Option<f64>, stats_out: Option<&Path>) -> anyhow::Result<()> {
    let duration = match duration {
        Some(d) if !(d > 0.0 && d.is_finite()) => {
            anyhow::bail!("--duration must be a positive number of seconds")
        }
        Some(d) => Some(Duration::from_secs_f64(d)),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("installing the Ctrl-C handler")?;
    let opts = runtime::RunOptions {
        duration,
        live_status: true,
        stop: Some(stop),
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
