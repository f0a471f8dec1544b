//! The lcores: each runs its stages over bursts, polling RX queues and rings.
//!
//! May import `config` (the plan), `ports` and `mgmt`'s event types; never
//! `lab`.

pub mod worker;
