//! The unit that moves between stages, rings and ports: up to [`BURST_MAX`]
//! packets in a fixed-capacity array owned by the caller. Creating, filling
//! and draining a burst never allocates.

use arrayvec::ArrayVec;

/// Largest burst; the configured `burst_size` is at most this.
pub const BURST_MAX: usize = 32;

/// A burst of packets.
pub type Burst<B> = ArrayVec<B, BURST_MAX>;
