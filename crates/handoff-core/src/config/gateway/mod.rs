//! `[systems.ID.gateway]`: how the enforcement gateway fronts a system that never verifies Handoff
//! tokens itself. An HTTP upstream with a route table, an MCP upstream with a tool table, and the
//! credential the gateway injects (the agent never holds it).
//!
//! ```toml
//! [systems.git.gateway]
//! upstream = "https://git.internal"                  # HTTP API base URL
//! credential = { header = "authorization", prefix = "Bearer ", value_env = "GIT_TOKEN" }
//!
//! [[systems.git.gateway.routes]]
//! method = "POST"
//! path = "/repos/{owner}/{repo}/pulls"
//! action = "open_pr"
//! resource = "repo:{owner}/{repo}"
//! details = { title = "/title" }                     # detail field = JSON pointer into the body
//! ```

mod credential;
pub(super) mod raw;
mod routes;
mod tools;

use super::{Problem, line_of};
use crate::template::{MAX_TEMPLATE_CHARS, PathTemplate, Template};
use raw::RawGateway;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// A secret read when the gateway starts, never held in config.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's name.
    Env(String),
    /// The secret's text, read from a file named in config (relative to the config's folder).
    File(Secret),
}

/// A secret's text; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(name) => write!(f, "Env({name})"),
            Self::File(_) => f.write_str("File(..)"),
        }
    }
}

/// What the gateway puts on each upstream request in place of the agent's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamCredential {
    /// A static secret sent as `header: prefix + secret`.
    Header {
        header: String,
        prefix: String,
        secret: SecretSource,
    },
    /// An OAuth 2.0 client-credentials grant at the upstream's token endpoint, asking for the
    /// scope configured for the action (`scopes`), sent as `authorization: Bearer ...`.
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: SecretSource,
        /// Upstream scope per action (short name); an action without one asks for no scope.
        scopes: BTreeMap<String, String>,
    },
}

/// One HTTP route: a method and path template mapped to an action and resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Upper-case HTTP method.
    pub method: String,
    pub path: PathTemplate,
    /// The action's short name (`open_pr`).
    pub action: String,
    pub resource: Option<Template>,
    /// Authorization-details field → JSON pointer into the request body.
    pub details: BTreeMap<String, String>,
}

/// One MCP tool mapped to an action; resource and details come from its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub name: String,
    pub action: String,
    /// Placeholders name top-level arguments.
    pub resource: Option<Template>,
    /// Authorization-details field → JSON pointer into the arguments object.
    pub details: BTreeMap<String, String>,
}

/// A system as the gateway fronts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The HTTP API's base URL (no trailing slash).
    pub upstream: Option<String>,
    /// The MCP server's Streamable HTTP endpoint.
    pub mcp: Option<String>,
    /// PEM text of extra trusted CAs for `https://` upstreams (besides the system's roots).
    pub ca_pem: Option<String>,
    pub credential: Option<UpstreamCredential>,
    pub routes: Vec<Route>,
    pub tools: Vec<Tool>,
    /// Forward `%2F` and `%5C` inside a path segment (refused by default: an upstream that decodes
    /// before routing would see another path than the one matched). For APIs that take an
    /// encoded path as one segment, such as GitLab's `projects/group%2Fproject`.
    pub danger_allow_encoded_slashes: bool,
}

/// Validates every system's gateway table and attaches it to the validated system.
pub(super) fn attach(
    file: &str,
    text: &str,
    reader: &dyn super::SourceReader,
    raw: &BTreeMap<String, Spanned<super::raw::RawSystem>>,
    systems: &mut BTreeMap<crate::ids::SystemId, super::SystemConfig>,
    problems: &mut Vec<Problem>,
) {
    let mut tool_names: BTreeMap<String, String> = BTreeMap::new();
    for (id, spanned) in raw {
        let Some(gateway) = &spanned.get_ref().gateway else {
            continue;
        };
        let Some(system) = systems.get_mut(&crate::ids::SystemId::new(id.as_str())) else {
            continue;
        };
        let actions: BTreeSet<String> = system.actions.keys().cloned().collect();
        let details: BTreeSet<String> = system.details.keys().cloned().collect();
        system.gateway = validate_gateway(
            file,
            text,
            reader,
            id,
            gateway.get_ref(),
            &actions,
            &details,
            problems,
        );
        // One MCP endpoint serves every system's tools, so a tool name names one system.
        for tool in gateway.get_ref().tools.iter().map(Spanned::get_ref) {
            if let Some(other) = tool_names.insert(tool.name.clone(), id.clone())
                && other != *id
            {
                problems.push(Problem::at(
                    file,
                    line_of(text, gateway.span().start),
                    format!(
                        "tool `{}` is declared by systems `{other}` and `{id}`",
                        tool.name
                    ),
                ));
            }
        }
    }
}

/// Validates one system's gateway table; `actions` and `details` are the system's own.
#[allow(clippy::too_many_arguments)]
fn validate_gateway(
    file: &str,
    text: &str,
    reader: &dyn super::SourceReader,
    id: &str,
    raw: &RawGateway,
    actions: &BTreeSet<String>,
    details: &BTreeSet<String>,
    problems: &mut Vec<Problem>,
) -> Option<GatewayConfig> {
    let before = problems.len();
    let mut report = |at: std::ops::Range<usize>, message: String| {
        problems.push(Problem::at(file, line_of(text, at.start), message));
    };
    let upstream = gateway_url(raw.upstream.as_ref(), id, "upstream", &mut report);
    let mcp = gateway_url(raw.mcp.as_ref(), id, "mcp", &mut report);
    let ca_pem = raw
        .ca_file
        .as_ref()
        .and_then(|file| match reader.read(file.get_ref()) {
            Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => Some(text),
            Ok(_) => {
                report(
                    file.span(),
                    format!("systems.{id}.gateway.ca_file holds no PEM certificate"),
                );
                None
            }
            Err(e) => {
                report(file.span(), format!("systems.{id}.gateway.ca_file: {e}"));
                None
            }
        });
    let credential = raw.credential.as_ref().and_then(|c| {
        credential::validate_credential(reader, id, c.get_ref(), actions)
            .map_err(|message| report(c.span(), message))
            .ok()
    });
    let routes = routes::validate_routes(id, raw, actions, details, &mut report);
    let tools = tools::validate_tools(id, raw, actions, details, &mut report);
    (problems.len() == before).then_some(GatewayConfig {
        upstream,
        mcp,
        ca_pem,
        credential,
        routes,
        tools,
        danger_allow_encoded_slashes: raw.danger_allow_encoded_slashes.unwrap_or(false),
    })
}

fn gateway_url(
    value: Option<&Spanned<String>>,
    id: &str,
    what: &str,
    report: &mut impl FnMut(std::ops::Range<usize>, String),
) -> Option<String> {
    let value = value?;
    let text = value.get_ref().trim_end_matches('/');
    if text.starts_with("http://") || text.starts_with("https://") {
        Some(text.to_owned())
    } else {
        report(
            value.span(),
            format!("systems.{id}.gateway.{what} must be an http(s) URL"),
        );
        None
    }
}

fn check_mapping(
    id: &str,
    action: &str,
    mapping: &BTreeMap<String, String>,
    actions: &BTreeSet<String>,
    details: &BTreeSet<String>,
) -> Result<(), String> {
    if !actions.contains(action) {
        return Err(format!(
            "systems.{id}.gateway: `{action}` is not an action of `{id}`"
        ));
    }
    for (field, pointer) in mapping {
        if !details.contains(field) {
            return Err(format!(
                "systems.{id}.gateway: detail `{field}` is not declared in systems.{id}.details"
            ));
        }
        if !(pointer.is_empty() || pointer.starts_with('/')) || pointer.len() > MAX_TEMPLATE_CHARS {
            return Err(format!(
                "systems.{id}.gateway: `{pointer}` is not a JSON pointer (RFC 6901)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
actions = { read = ["read"], open_pr = ["write"] }
[systems.git.details]
title = "string"
"#;

    fn problems(extra: &str) -> Vec<String> {
        let text = format!("{BASE}{extra}");
        let (_, problems) = crate::config::load_config(&NoFiles, "handoff.toml", &text);
        problems.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_valid_gateway_table_is_attached_to_its_system() {
        let text = format!(
            "{BASE}{}",
            r#"
[systems.git.gateway]
upstream = "http://127.0.0.1:9000/"
credential = { header = "x-token", value_env = "GIT_TOKEN" }
[[systems.git.gateway.routes]]
method = "post"
path = "/repos/{owner}/{repo}/pulls"
action = "open_pr"
resource = "repo:{owner}/{repo}"
details = { title = "/title" }
"#
        );
        let (config, problems) = crate::config::load_config(&NoFiles, "handoff.toml", &text);
        assert!(problems.is_empty(), "{problems:?}");
        let config = config.unwrap();
        let gateway = config
            .systems
            .values()
            .next()
            .and_then(|s| s.gateway.clone())
            .unwrap();
        assert_eq!(gateway.upstream.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            gateway.routes.first().map(|r| r.method.as_str()),
            Some("POST")
        );
    }

    #[test]
    fn every_gateway_problem_is_reported_at_once_with_its_line() {
        let found = problems(
            r#"
[systems.git.gateway]
mcp = "ftp://nope"
credential = { value_env = "A", value_file = "b" }
[[systems.git.gateway.routes]]
method = "GET"
path = "/repos/{owner}"
action = "delete"
[[systems.git.gateway.routes]]
method = "GET"
path = "/repos/{owner}"
action = "read"
resource = "repo:{repo}"
details = { amount = "/amount" }
[[systems.git.gateway.tools]]
name = "t"
action = "read"
colour = "blue"
"#,
        );
        let all = found.join("\n");
        for expected in [
            "gateway.mcp must be an http(s) URL",
            "name exactly one of `value_env` and `value_file`",
            "`delete` is not an action of `git`",
            "resource placeholder `{repo}` is not in the path",
            "routes need an `upstream`",
            "unknown key `systems.git.gateway.tools[0].colour`",
        ] {
            assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
        }
        assert!(
            found.iter().all(|p| p.starts_with("handoff.toml:")),
            "{all}"
        );
    }
}
