//! Labs and demos built on the runtime: the delay line of the netns lab,
//! the in-process redirection lab and the redirecting client command.
//! Nothing else in the crate imports `lab`.

pub mod client;
pub mod delayline;
pub mod redirect;
