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

use super::shape::Shape;
use super::{Problem, line_of};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// Longest template, path or pointer accepted in config.
const MAX_TEMPLATE_CHARS: usize = 512;

pub(super) const GATEWAY_SHAPE: Shape = Shape::Fields(&[
    ("upstream", Shape::Leaf),
    ("mcp", Shape::Leaf),
    ("ca_file", Shape::Leaf),
    ("credential", CREDENTIAL_SHAPE),
    ("routes", Shape::ArrayOf(&ROUTE_SHAPE)),
    ("tools", Shape::ArrayOf(&TOOL_SHAPE)),
    ("danger_allow_encoded_slashes", Shape::Leaf),
]);
const CREDENTIAL_SHAPE: Shape = Shape::Fields(&[
    ("header", Shape::Leaf),
    ("prefix", Shape::Leaf),
    ("value_env", Shape::Leaf),
    ("value_file", Shape::Leaf),
    ("token_url", Shape::Leaf),
    ("client_id", Shape::Leaf),
    ("client_secret_env", Shape::Leaf),
    ("client_secret_file", Shape::Leaf),
    ("scopes", Shape::MapOf(&Shape::Leaf)),
]);
const ROUTE_SHAPE: Shape = Shape::Fields(&[
    ("method", Shape::Leaf),
    ("path", Shape::Leaf),
    ("action", Shape::Leaf),
    ("resource", Shape::Leaf),
    ("details", Shape::MapOf(&Shape::Leaf)),
]);
const TOOL_SHAPE: Shape = Shape::Fields(&[
    ("name", Shape::Leaf),
    ("action", Shape::Leaf),
    ("resource", Shape::Leaf),
    ("details", Shape::MapOf(&Shape::Leaf)),
]);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub upstream: Option<Spanned<String>>,
    pub mcp: Option<Spanned<String>>,
    /// PEM certificates of private CAs the upstream's TLS certificate may chain to.
    pub ca_file: Option<Spanned<String>>,
    pub credential: Option<Spanned<RawCredential>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub tools: Vec<Spanned<RawTool>>,
    pub danger_allow_encoded_slashes: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub value_env: Option<String>,
    pub value_file: Option<String>,
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<String>,
    #[serde(default)]
    pub scopes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub method: String,
    pub path: String,
    pub action: String,
    pub resource: Option<String>,
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTool {
    pub name: String,
    pub action: String,
    pub resource: Option<String>,
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

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

/// One piece of a template: literal text or a `{name}` placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Var(String),
}

/// `repo:{owner}/{repo}`: text with placeholders filled from a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let (head, tail) = rest.split_at(open);
            if head.contains('}') {
                return Err(format!("unbalanced `}}` in `{text}`"));
            }
            if !head.is_empty() {
                parts.push(Part::Text(head.to_owned()));
            }
            let tail = tail.trim_start_matches('{');
            let Some(close) = tail.find('}') else {
                return Err(format!("unclosed `{{` in `{text}`"));
            };
            let (name, after) = tail.split_at(close);
            if !is_var(name) {
                return Err(format!("placeholder `{{{name}}}` must be an identifier"));
            }
            parts.push(Part::Var(name.to_owned()));
            rest = after.trim_start_matches('}');
        }
        if rest.contains('}') {
            return Err(format!("unbalanced `}}` in `{text}`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text with each placeholder's value, or `None` when one has no value.
    pub fn render(&self, value: impl Fn(&str) -> Option<String>) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(name) => out.push_str(&value(name)?),
            }
        }
        Some(out)
    }
}

/// One segment of a route's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{name}`: exactly one non-empty segment.
    Var(String),
}

/// `/repos/{owner}/{repo}/pulls`, matched segment by segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    segments: Vec<Segment>,
}

impl PathTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(body) = text.strip_prefix('/') else {
            return Err(format!("path `{text}` must start with `/`"));
        };
        let mut segments = Vec::new();
        for piece in body.split('/') {
            if let Some(name) = piece.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if !is_var(name) {
                    return Err(format!("placeholder `{{{name}}}` must be an identifier"));
                }
                // Two segments bound to one name would keep only the last value, so a token
                // scoped to one resource would reach another: refuse the route instead.
                if segments.contains(&Segment::Var(name.to_owned())) {
                    return Err(format!(
                        "path `{text}`: placeholder `{{{name}}}` appears more than once"
                    ));
                }
                segments.push(Segment::Var(name.to_owned()));
            } else if piece.contains('{') || piece.contains('}') {
                return Err(format!(
                    "path `{text}`: a placeholder must be a whole segment"
                ));
            } else {
                segments.push(Segment::Literal(piece.to_owned()));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The placeholders' values when `path` (no query) matches, or `None`.
    pub fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let body = path.strip_prefix('/')?;
        let mut values = BTreeMap::new();
        let mut pieces = body.split('/');
        for segment in &self.segments {
            let piece = pieces.next()?;
            match segment {
                Segment::Literal(text) if text == piece => {}
                Segment::Literal(_) => return None,
                Segment::Var(_) if piece.is_empty() => return None,
                Segment::Var(name) => {
                    values.insert(name.clone(), piece.to_owned());
                }
            }
        }
        pieces.next().is_none().then_some(values)
    }
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
        validate_credential(reader, id, c.get_ref(), actions)
            .map_err(|message| report(c.span(), message))
            .ok()
    });
    let mut routes = Vec::new();
    for spanned in &raw.routes {
        let route = spanned.get_ref();
        let at = spanned.span();
        let method = route.method.to_ascii_uppercase();
        if !matches!(
            method.as_str(),
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS"
        ) {
            report(
                at.clone(),
                format!(
                    "systems.{id}.gateway.routes: method `{}` is not supported",
                    route.method
                ),
            );
            continue;
        }
        let path = match checked(&route.path).and_then(PathTemplate::parse) {
            Ok(path) => path,
            Err(e) => {
                report(at.clone(), format!("systems.{id}.gateway.routes: {e}"));
                continue;
            }
        };
        let path_vars: BTreeSet<&str> = path.vars().collect();
        let resource = match route
            .resource
            .as_deref()
            .map(|r| checked(r).and_then(Template::parse))
        {
            None => None,
            Some(Ok(template)) => {
                if let Some(missing) = template.vars().find(|v| !path_vars.contains(v)) {
                    report(
                        at.clone(),
                        format!(
                            "systems.{id}.gateway.routes `{}`: resource placeholder `{{{missing}}}` is not in the path",
                            route.path
                        ),
                    );
                    continue;
                }
                Some(template)
            }
            Some(Err(e)) => {
                report(at.clone(), format!("systems.{id}.gateway.routes: {e}"));
                continue;
            }
        };
        if let Err(e) = check_mapping(id, &route.action, &route.details, actions, details) {
            report(at.clone(), e);
            continue;
        }
        if routes
            .iter()
            .any(|r: &Route| r.method == method && r.path == path)
        {
            report(
                at.clone(),
                format!(
                    "systems.{id}.gateway.routes: `{method} {}` is declared twice",
                    route.path
                ),
            );
            continue;
        }
        routes.push(Route {
            method,
            path,
            action: route.action.clone(),
            resource,
            details: route.details.clone(),
        });
    }
    if !raw.routes.is_empty() && raw.upstream.is_none() {
        report(
            raw.routes.first().map_or(0..0, Spanned::span),
            format!("systems.{id}.gateway: routes need an `upstream`"),
        );
    }
    let mut tools: Vec<Tool> = Vec::new();
    for spanned in &raw.tools {
        let tool = spanned.get_ref();
        let at = spanned.span();
        if tool.name.trim().is_empty() || tool.name.len() > 128 {
            report(
                at.clone(),
                format!("systems.{id}.gateway.tools: a tool needs a name of at most 128 bytes"),
            );
            continue;
        }
        let resource = match tool
            .resource
            .as_deref()
            .map(|r| checked(r).and_then(Template::parse))
        {
            None => None,
            Some(Ok(template)) => Some(template),
            Some(Err(e)) => {
                report(at.clone(), format!("systems.{id}.gateway.tools: {e}"));
                continue;
            }
        };
        if let Err(e) = check_mapping(id, &tool.action, &tool.details, actions, details) {
            report(at.clone(), e);
            continue;
        }
        if tools.iter().any(|t| t.name == tool.name) {
            report(
                at.clone(),
                format!(
                    "systems.{id}.gateway.tools: `{}` is declared twice",
                    tool.name
                ),
            );
            continue;
        }
        tools.push(Tool {
            name: tool.name.clone(),
            action: tool.action.clone(),
            resource,
            details: tool.details.clone(),
        });
    }
    if !raw.tools.is_empty() && raw.mcp.is_none() {
        report(
            raw.tools.first().map_or(0..0, Spanned::span),
            format!("systems.{id}.gateway: tools need an `mcp` upstream"),
        );
    }
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

fn validate_credential(
    reader: &dyn super::SourceReader,
    id: &str,
    raw: &RawCredential,
    actions: &BTreeSet<String>,
) -> Result<UpstreamCredential, String> {
    let source = |env: &Option<String>, file: &Option<String>, what: &str| match (env, file) {
        (Some(name), None) if !name.trim().is_empty() => Ok(SecretSource::Env(name.clone())),
        (None, Some(path)) => reader
            .read(path)
            .map(|text| SecretSource::File(Secret::new(text.trim().to_owned())))
            .map_err(|e| format!("systems.{id}.gateway.credential: {e}")),
        _ => Err(format!(
            "systems.{id}.gateway.credential: name exactly one of `{what}_env` and `{what}_file`"
        )),
    };
    match &raw.token_url {
        None => {
            if raw.client_id.is_some()
                || raw.client_secret_env.is_some()
                || raw.client_secret_file.is_some()
                || !raw.scopes.is_empty()
            {
                return Err(format!(
                    "systems.{id}.gateway.credential: client_id, client_secret and scopes need a `token_url`"
                ));
            }
            let header = raw
                .header
                .clone()
                .unwrap_or_else(|| "authorization".to_owned());
            if header.is_empty()
                || !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "systems.{id}.gateway.credential: `{header}` is not a header name"
                ));
            }
            Ok(UpstreamCredential::Header {
                header: header.to_ascii_lowercase(),
                prefix: raw.prefix.clone().unwrap_or_default(),
                secret: source(&raw.value_env, &raw.value_file, "value")?,
            })
        }
        Some(token_url) => {
            if raw.header.is_some()
                || raw.prefix.is_some()
                || raw.value_env.is_some()
                || raw.value_file.is_some()
            {
                return Err(format!(
                    "systems.{id}.gateway.credential: a client-credentials grant takes no header, prefix or value"
                ));
            }
            if !token_url.starts_with("http://") && !token_url.starts_with("https://") {
                return Err(format!(
                    "systems.{id}.gateway.credential.token_url must be an http(s) URL"
                ));
            }
            let Some(client_id) = raw.client_id.clone().filter(|c| !c.is_empty()) else {
                return Err(format!(
                    "systems.{id}.gateway.credential: `client_id` is required"
                ));
            };
            if let Some(unknown) = raw.scopes.keys().find(|a| !actions.contains(*a)) {
                return Err(format!(
                    "systems.{id}.gateway.credential.scopes: `{unknown}` is not an action of `{id}`"
                ));
            }
            Ok(UpstreamCredential::ClientCredentials {
                token_url: token_url.clone(),
                client_id,
                client_secret: source(
                    &raw.client_secret_env,
                    &raw.client_secret_file,
                    "client_secret",
                )?,
                scopes: raw.scopes.clone(),
            })
        }
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

fn checked(text: &str) -> Result<&str, String> {
    if text.len() > MAX_TEMPLATE_CHARS {
        Err(format!(
            "a template is longer than {MAX_TEMPLATE_CHARS} bytes"
        ))
    } else {
        Ok(text)
    }
}

fn is_var(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_template_matches_whole_segments_and_captures_them() {
        let path = PathTemplate::parse("/repos/{owner}/{repo}/pulls").unwrap();
        let values = path.matches("/repos/acme/app/pulls").unwrap();
        assert_eq!(values.get("owner").map(String::as_str), Some("acme"));
        assert_eq!(values.get("repo").map(String::as_str), Some("app"));
        assert!(path.matches("/repos/acme/app/pulls/1").is_none());
        assert!(path.matches("/repos/acme//pulls").is_none());
        assert!(path.matches("/repos/acme/app").is_none());
    }

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

    #[test]
    fn a_template_renders_placeholders_and_refuses_missing_ones() {
        let template = Template::parse("repo:{owner}/{repo}").unwrap();
        let values: BTreeMap<&str, &str> = [("owner", "acme"), ("repo", "app")].into();
        assert_eq!(
            template.render(|n| values.get(n).map(|v| (*v).to_owned())),
            Some("repo:acme/app".to_owned())
        );
        assert_eq!(template.render(|_| None), None);
        assert!(Template::parse("repo:{owner").is_err());
        assert!(Template::parse("repo:owner}").is_err());
        assert!(PathTemplate::parse("/a/x{b}").is_err());
        let repeated = PathTemplate::parse("/repos/{repo}/{repo}").unwrap_err();
        assert!(repeated.contains("more than once"), "{repeated}");
    }
}
