//! `[server]`: how the HTTP listener protects itself from slow and oversized clients. Every
//! limit has a default; `handoff check` reports the values in force.
//!
//! ```toml
//! [server]
//! header_read_timeout = "10s"   # the request head must arrive within this (also idle keep-alive)
//! body_read_timeout = "30s"     # the whole body must arrive within this of the head
//! max_header_bytes = 32768      # request line plus headers; larger gets 431
//! max_connections = 1024        # past this, new connections wait in the accept backlog
//! public_url = "https://handoff.example.com"  # the issuer; default: http://<listen address>
//! shutdown_drain = "5s"         # on SIGTERM/SIGINT, in-flight requests get this long to finish
//! ```

use super::check::Ctx;
use super::shape::Shape;
use crate::time::Ttl;
use serde::Deserialize;
use toml::Spanned;

pub const DEFAULT_HEADER_READ_TIMEOUT: Ttl = Ttl::from_seconds(10);
pub const DEFAULT_BODY_READ_TIMEOUT: Ttl = Ttl::from_seconds(30);
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const MIN_MAX_HEADER_BYTES: usize = 1024;
pub const MAX_MAX_HEADER_BYTES: usize = 1024 * 1024;
pub const MAX_MAX_CONNECTIONS: usize = 65_536;
pub const DEFAULT_SHUTDOWN_DRAIN: Ttl = Ttl::from_seconds(5);

pub(super) const SERVER_SHAPE: Shape = Shape::Fields(&[
    ("header_read_timeout", Shape::Leaf),
    ("body_read_timeout", Shape::Leaf),
    ("max_header_bytes", Shape::Leaf),
    ("max_connections", Shape::Leaf),
    ("public_url", Shape::Leaf),
    ("shutdown_drain", Shape::Leaf),
]);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub header_read_timeout: Option<Spanned<String>>,
    pub body_read_timeout: Option<Spanned<String>>,
    pub max_header_bytes: Option<Spanned<u64>>,
    pub max_connections: Option<Spanned<u64>>,
    pub public_url: Option<Spanned<String>>,
    pub shutdown_drain: Option<Spanned<String>>,
}

/// The listener's limits (`[server]`), each with a documented default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// The request line and headers must arrive within this; it also closes a keep-alive
    /// connection that sends no next request (the timer starts when the server waits for one).
    pub header_read_timeout: Ttl,
    /// The whole request body must arrive within this of the request head (408 otherwise).
    pub body_read_timeout: Ttl,
    /// Largest request line plus headers; larger gets 431.
    pub max_header_bytes: usize,
    /// Connections served at once; past this, new ones wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// The URL clients reach Handoff at: the issuer of its metadata and tokens, and the base of
    /// every endpoint URL it advertises. Without one, `handoff serve` uses
    /// `http://<listen address>`.
    pub public_url: Option<String>,
    /// On SIGTERM or SIGINT, requests in flight get this long to finish before the process exits.
    pub shutdown_drain: Ttl,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            public_url: None,
            shutdown_drain: DEFAULT_SHUTDOWN_DRAIN,
        }
    }
}

pub(super) fn validate_server(ctx: &mut Ctx<'_>, raw: &RawServer) -> ServerSettings {
    let defaults = ServerSettings::default();
    let mut ttl = |value: &Option<Spanned<String>>, what: &str, default: Ttl| {
        value
            .as_ref()
            .and_then(|v| ctx.ttl(v, what))
            .unwrap_or(default)
    };
    let header_read_timeout = ttl(
        &raw.header_read_timeout,
        "server.header_read_timeout",
        defaults.header_read_timeout,
    );
    let body_read_timeout = ttl(
        &raw.body_read_timeout,
        "server.body_read_timeout",
        defaults.body_read_timeout,
    );
    let shutdown_drain = ttl(
        &raw.shutdown_drain,
        "server.shutdown_drain",
        defaults.shutdown_drain,
    );
    let max_header_bytes = bounded(
        ctx,
        raw.max_header_bytes.as_ref(),
        "server.max_header_bytes",
        (MIN_MAX_HEADER_BYTES, MAX_MAX_HEADER_BYTES),
        defaults.max_header_bytes,
    );
    let max_connections = bounded(
        ctx,
        raw.max_connections.as_ref(),
        "server.max_connections",
        (1, MAX_MAX_CONNECTIONS),
        defaults.max_connections,
    );
    let public_url =
        raw.public_url
            .as_ref()
            .and_then(|url| match normalize_public_url(url.get_ref()) {
                Ok(url) => Some(url),
                Err(problem) => {
                    ctx.report(url, format!("server.public_url {problem}"));
                    None
                }
            });
    ServerSettings {
        header_read_timeout,
        body_read_timeout,
        max_header_bytes,
        max_connections,
        public_url,
        shutdown_drain,
    }
}

/// A public URL as Handoff uses it: `http(s)://host[:port][/path]`, without a trailing slash,
/// query or fragment; the problem otherwise (completing "server.public_url ...").
pub fn normalize_public_url(url: &str) -> Result<String, &'static str> {
    let url = url.trim_end_matches('/');
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err("must be an http(s) URL");
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err("must name a host");
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must have no query, fragment or whitespace");
    }
    Ok(url.to_owned())
}

fn bounded(
    ctx: &mut Ctx<'_>,
    value: Option<&Spanned<u64>>,
    what: &str,
    (low, high): (usize, usize),
    default: usize,
) -> usize {
    let Some(value) = value else {
        return default;
    };
    match usize::try_from(*value.get_ref()) {
        Ok(n) if (low..=high).contains(&n) => n,
        _ => {
            ctx.report(value, format!("{what} must be between {low} and {high}"));
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::test_support::NoFiles;

    const BASE: &str = r#"
trust_domain = "https://handoff.local"
[dev_issuer]
enabled = true
[purposes.release]
lifetime = "1h"
[systems.git]
audience = "https://git.example.com"
owner = "platform"
escalation = "mailto:x@example.com"
risk = "low"
actions = { read = ["read"] }
"#;

    fn load(extra: &str) -> (Option<crate::config::Config>, Vec<String>) {
        let text = format!("{BASE}{extra}");
        let (config, problems) = crate::config::load_config(&NoFiles, "handoff.toml", &text);
        (
            config,
            problems.into_iter().map(|p| p.to_string()).collect(),
        )
    }

    #[test]
    fn the_server_limits_default_when_the_table_is_absent() {
        let (config, problems) = load("");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.unwrap().server, ServerSettings::default());
    }

    #[test]
    fn server_limits_are_read_and_every_bad_one_is_reported_with_its_line() {
        let (config, problems) = load(
            "[server]\nheader_read_timeout = \"2s\"\nbody_read_timeout = \"1m\"\nmax_header_bytes = 16384\nmax_connections = 8\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let server = config.unwrap().server;
        assert_eq!(server.header_read_timeout, Ttl::from_seconds(2));
        assert_eq!(server.body_read_timeout, Ttl::from_seconds(60));
        assert_eq!(
            (server.max_header_bytes, server.max_connections),
            (16384, 8)
        );
        assert_eq!(server.public_url, None);
        assert_eq!(server.shutdown_drain, DEFAULT_SHUTDOWN_DRAIN);

        let (_, problems) = load(
            "[server]\nheader_read_timeout = \"0s\"\nmax_header_bytes = 100\nmax_connections = 0\nidle = 3\n",
        );
        let all = problems.join("\n");
        for expected in [
            "handoff.toml:14: server.header_read_timeout",
            "handoff.toml:15: server.max_header_bytes must be between 1024 and 1048576",
            "handoff.toml:16: server.max_connections must be between 1 and 65536",
            "handoff.toml:17: unknown key `server.idle`",
        ] {
            assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
        }
    }

    #[test]
    fn the_public_url_and_the_drain_are_read_and_a_bad_url_is_reported() {
        let (config, problems) = load(
            "[server]\npublic_url = \"https://handoff.example.com/\"\nshutdown_drain = \"2s\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let server = config.unwrap().server;
        assert_eq!(
            server.public_url.as_deref(),
            Some("https://handoff.example.com")
        );
        assert_eq!(server.shutdown_drain, Ttl::from_seconds(2));

        for bad in [
            "handoff.example.com",
            "https://",
            "https://h.example.com/?x=1",
        ] {
            let (_, problems) = load(&format!("[server]\npublic_url = \"{bad}\"\n"));
            let all = problems.join("\n");
            assert!(
                all.contains("handoff.toml:14: server.public_url"),
                "{bad}: {all}"
            );
        }
    }
}
