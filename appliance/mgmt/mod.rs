//! The management core: threads beside the lcores that never touch the
//! packet path. Selection (RTT estimators, health, snapshots), the
//! redirection database thread, and the stats the operator reads.
//!
//! May import `config`, `dataplane` (counters it reads) and `ports`
//! (backend control); never `lab`.

pub mod redirect;
pub mod selection;
pub mod stats;
