//! The metrics thread (`mgmt-metrics`): a small HTTP server answering
//! `GET /metrics` with the text exposition, polled with a timeout so that
//! it ends with the appliance. One request at a time: a scrape reads the
//! counters once and writes some tens of KiB.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use tiny_http::{Header, Method, Response, Server};

use crate::mgmt::reader::StatsReader;

/// The Prometheus text format's content type (version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How often the thread looks at the stop flag while idle.
const POLL: Duration = Duration::from_millis(50);

/// Binds `addr` now (an address in use is an error before the run goes
/// on) and serves `/metrics` on a thread until `stop`.
pub fn spawn(
    addr: SocketAddr,
    reader: Arc<StatsReader>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<Result<(), String>>> {
    let server = Server::http(addr)
        .map_err(|e| anyhow!("telemetry.prometheus: cannot listen on {addr}: {e}"))?;
    let registry = super::registry(reader);
    let t = std::thread::Builder::new()
        .name("mgmt-metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(req) = server
                    .recv_timeout(POLL)
                    .map_err(|e| format!("accepting a scrape: {e}"))?
                else {
                    continue;
                };
                let path = req.url().split('?').next().unwrap_or("");
                let resp = match (req.method(), path) {
                    (Method::Get, "/metrics") => Response::from_string(super::render(&registry))
                        .with_header(header("Content-Type", CONTENT_TYPE)),
                    (Method::Get, "/") => {
                        Response::from_string("appliance metrics: GET /metrics\n")
                    }
                    (Method::Get, _) => Response::from_string("not found\n").with_status_code(404),
                    _ => Response::from_string("method not allowed\n").with_status_code(405),
                };
                // A scraper that hung up is its own business.
                let _ = req.respond(resp);
            }
            Ok(())
        })?;
    Ok(t)
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("a valid static header")
}
