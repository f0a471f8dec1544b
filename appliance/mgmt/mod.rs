//! The management core: threads beside the lcores that never touch the
//! packet path. Selection (RTT estimators, health, snapshots), the
//! redirection database thread, the stats the operator reads and their
//! human views.
//!
//! May import `config`, `dataplane` (counters it reads) and `ports`
//! (backend control); never `runtime` or `lab`.

pub mod events;
pub mod metrics;
pub mod natlog;
pub mod reader;
pub mod redirect;
pub mod report;
pub mod selection;
pub mod stats;

/// A panic's message (`&str` or `String` payloads), else a placeholder.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
