//! The lcores: each runs its stages over bursts, polling RX queues and rings.
//! [`assembly`] builds them and the rings between them from the plan;
//! [`fanout`] spreads their output bursts over rings.
//!
//! May import `config` (the plan), `ports` and `mgmt`'s event types; never
//! `lab`.

pub mod assembly;
pub(crate) mod fanout;
pub mod worker;
