//! The four stages of the packet path, in order: [`classify`] →
//! [`replicate`] → [`translate`] → [`transmit`]. Each stage has the same
//! contract: `process(input, output)` moves packets until the input is
//! empty or the output full; a dropped packet is freed and its
//! `DropReason` counted.
//!
//! A stage imports `packet/`, `wire/`, the tables (`nat/`, `race/`), the
//! selection policy (`select/`), `neighbour/` and `topology`, but never
//! another stage's internals: what two stages share lives in one of those,
//! or in [`local`] (not a stage: the ICMP the appliance originates, its rate
//! limit and egress fragmentation, used by classify and transmit).

pub mod classify;
pub mod local;
pub mod replicate;
pub mod translate;
pub mod transmit;
