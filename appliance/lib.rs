//! The appliance runtime: configuration and its validation into a plan,
//! lcore threads joined by rings, port backends, the management core and
//! the command line. Packet logic lives in the `pipelines` crate.
#![deny(unsafe_code)]

pub mod bench;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod lab;
pub mod memory;
pub mod mgmt;
pub mod ports;
pub mod redirect_client;
pub mod runtime;
