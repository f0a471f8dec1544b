//! The appliance runtime: configuration and its validation into a plan,
//! lcore threads joined by rings, port backends, the management core and
//! the command line. Packet logic lives in the `pipelines` crate.
#![deny(unsafe_code)]

pub mod client;
pub mod config;
pub mod delayline;
pub mod plan;
pub mod ports;
pub mod redirect;
pub mod runtime;
pub mod selection;
pub mod stats;
pub mod worker;
