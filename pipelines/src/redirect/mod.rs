//! Server-cluster rerouting (seed 000 [25]-[66], [75]-[77]): the redirection
//! header and message ([`header`]), the redirection database's decisions
//! ([`db`]), the redirecting client's state machine ([`client`]) and the
//! data-plane side of a service address ([`service`]), and the checks on a
//! peer's load read from the shared store ([`peer_load`]).
//!
//! Like the rest of this crate: no threads, no sockets, no clock reads;
//! everything that needs time takes `now`.

pub mod client;
pub mod db;
pub mod header;
pub mod peer_load;
pub mod service;
