//! The `[systems.ID.gateway]` table as written: serde structs (`deny_unknown_fields`) and the
//! shape unknown keys are reported against.

use crate::config::shape::Shape;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub(crate) const GATEWAY_SHAPE: Shape = Shape::Fields(&[
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
