//! What every stage handles: packet buffers and their metadata, fixed
//! bursts, single-writer counters, drop reasons, flow keys and time.
//!
//! May import: `wire/` only. Knows nothing of stages, tables or selection.

pub mod buf;
pub mod burst;
pub mod counter;
pub mod drop;
pub mod flow;
pub mod time;
