//! `redirection.redis*`: the shared store's address, credentials and
//! timeouts, as the management core's store client uses them.
//!
//! Invariants: the URL is `redis://` or `rediss://` with a host; the
//! password comes from one place (the URL, `redis_password` or the
//! environment variable `redis_password_env` names) and is never shown: the
//! plan keeps it as a [`Secret`] and shows the URL with `***` for it.
//! May import `crate::config`, `super` (err) and the `redis` crate's URL
//! parsing; nothing else.

use std::net::SocketAddr;
use std::time::Duration;

use redis::IntoConnectionInfo;

use super::{err, ConfigError};
use crate::config::RedirectionSection;

/// Text that must never be shown (a password): `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that needs it (AUTH).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A Redis store: where, as whom, and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStore {
    /// The URL as configured (`host:port` becomes `redis://host:port`); it
    /// may hold the password.
    pub url: Secret,
    /// The URL with any password replaced by `***` (stats, errors).
    pub shown: String,
    /// `redis_username`, when the URL has none.
    pub username: Option<String>,
    /// `redis_password` or the environment variable's value.
    pub password: Option<Secret>,
    /// `redis_tls_ca_file`'s PEM text (read when the plan is made).
    pub tls_ca: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    /// The longest wait between attempts after failures.
    pub backoff_max: Duration,
}

impl RedisStore {
    /// The longest one exchange (connect, writes, reads) may take before
    /// the redirection thread counts the store as stalled.
    pub fn exchange_deadline(&self) -> Duration {
        self.connect_timeout + 2 * self.io_timeout
    }

    /// The connection parameters, credentials included.
    pub fn connection_info(&self) -> redis::RedisResult<redis::ConnectionInfo> {
        let info = self.url.expose().into_connection_info()?;
        let mut rs = info.redis_settings().clone();
        if let Some(u) = &self.username {
            rs = rs.set_username(u);
        }
        if let Some(p) = &self.password {
            rs = rs.set_password(p.expose());
        }
        Ok(info.set_redis_settings(rs))
    }

    /// A client for it: with the configured CA for `rediss://`, else the
    /// system's and the Web PKI's roots.
    pub fn client(&self) -> redis::RedisResult<redis::Client> {
        let info = self.connection_info()?;
        match &self.tls_ca {
            Some(ca) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
            None => redis::Client::open(info),
        }
    }
}

fn at(f: &str) -> String {
    format!("redirection.{f}")
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
pub fn redact(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let end = text[start..].find('/').map_or(text.len(), |i| start + i);
    let Some(atsign) = text[start..end].rfind('@').map(|i| start + i) else {
        return text.to_string();
    };
    match text[start..atsign].find(':') {
        Some(c) => format!("{}***{}", &text[..start + c + 1], &text[atsign..]),
        None => text.to_string(),
    }
}

/// Validates the Redis store's keys.
pub fn plan_redis(r: &RedirectionSection) -> Result<RedisStore, ConfigError> {
    let text = r.redis.trim();
    let shown = redact(text);
    let url_text = if text.contains("://") {
        text.to_string()
    } else if text.parse::<SocketAddr>().is_ok() {
        format!("redis://{text}")
    } else {
        return err(
            at("redis"),
            format!(
                "`{shown}` is not host:port of a Redis server (e.g. 127.0.0.1:6379) nor a redis:// or rediss:// URL"
            ),
        );
    };
    let url = redis::parse_redis_url(&url_text)
        .filter(|u| matches!(u.scheme(), "redis" | "rediss") && u.host().is_some());
    let Some(url) = url else {
        return err(
            at("redis"),
            format!("`{shown}`: allowed: host:port, redis://[user[:password]@]host[:port][/db], rediss://... (TLS)"),
        );
    };
    if let Err(e) = url_text.as_str().into_connection_info() {
        return err(at("redis"), format!("`{shown}`: {e}"));
    }
    let url_user = !url.username().is_empty();
    let url_password = url.password().is_some();
    if url_user && r.redis_username.is_some() {
        return err(
            at("redis_username"),
            "the redis URL already names a user; give it once",
        );
    }
    let password = plan_password(r, url_password)?;
    let tls_ca = match &r.redis_tls_ca_file {
        None => None,
        Some(_) if url.scheme() != "rediss" => {
            return err(
                at("redis_tls_ca_file"),
                "a CA file is for TLS: the redis URL must be rediss://",
            )
        }
        Some(f) => Some(read_ca_file(f).map_err(|msg| ConfigError {
            path: at("redis_tls_ca_file"),
            msg,
        })?),
    };
    for (name, v, lo, hi) in [
        (
            "redis_connect_timeout_ms",
            r.redis_connect_timeout_ms,
            10,
            60_000,
        ),
        ("redis_io_timeout_ms", r.redis_io_timeout_ms, 10, 60_000),
        (
            "redis_backoff_max_ms",
            r.redis_backoff_max_ms,
            10,
            3_600_000,
        ),
    ] {
        if !(lo..=hi).contains(&v) {
            return err(at(name), format!("{v}; allowed: {lo}..={hi}"));
        }
    }
    Ok(RedisStore {
        url: Secret::new(url_text.clone()),
        shown: redact(&url_text),
        username: r.redis_username.clone().filter(|u| !u.is_empty()),
        password,
        tls_ca,
        connect_timeout: Duration::from_millis(r.redis_connect_timeout_ms),
        io_timeout: Duration::from_millis(r.redis_io_timeout_ms),
        backoff_max: Duration::from_millis(r.redis_backoff_max_ms),
    })
}

/// The password from `redis_password` or `redis_password_env`, at most one
/// source (the URL counts as one).
/// Largest CA file read (a bundle of a few hundred certificates fits).
const CA_FILE_MAX: u64 = 4 << 20;

/// Reads CA file `f`, refusing one larger than [`CA_FILE_MAX`] (a path such
/// as `/dev/zero` must not make validation allocate without bound).
fn read_ca_file(f: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(f).map_err(|e| format!("cannot read `{f}`: {e}"))?;
    let mut bytes = Vec::new();
    file.take(CA_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{f}`: {e}"))?;
    if bytes.len() as u64 > CA_FILE_MAX {
        return Err(format!(
            "`{f}` is larger than {CA_FILE_MAX} bytes; allowed: a PEM CA bundle up to 4 MiB"
        ));
    }
    Ok(bytes)
}

fn plan_password(
    r: &RedirectionSection,
    url_password: bool,
) -> Result<Option<Secret>, ConfigError> {
    let sources = [
        url_password,
        r.redis_password.is_some(),
        r.redis_password_env.is_some(),
    ];
    if sources.iter().filter(|x| **x).count() > 1 {
        return err(
            at("redis_password"),
            "the password is given more than once (redis URL, redis_password, redis_password_env): give it in one place",
        );
    }
    if let Some(p) = &r.redis_password {
        return Ok(Some(Secret::new(p.clone())));
    }
    let Some(var) = &r.redis_password_env else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
        _ => err(
            at("redis_password_env"),
            format!("the environment variable `{var}` is not set (or empty or not UTF-8): it must hold the Redis password"),
        ),
    }
}

#[cfg(test)]
#[path = "redis_store_tests.rs"]
mod tests;
