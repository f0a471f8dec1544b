//! The management core: threads beside the lcores that never touch the
//! packet path. Selection (RTT estimators, health, snapshots), the
//! redirection database thread, the stats the operator reads and their
//! human views.
//!
//! May import `config`, `dataplane` (counters it reads) and `ports`
//! (backend control); never `lab`.

pub mod redirect;
pub mod report;
pub mod selection;
pub mod stats;
