//! The lcores: each runs its stages over bursts, polling RX queues and rings.
//! [`assembly`] builds them and the rings between them from the plan;
//! [`fanout`] spreads their output bursts over rings; [`rings`] holds the
//! bundles of rings between the lcores and the management core.
//!
//! May import `config` (the plan) and `ports`; never `mgmt`, `runtime` or
//! `lab` (the management core imports this, not the other way round).

pub mod assembly;
pub(crate) mod fanout;
pub mod rings;
pub mod worker;
