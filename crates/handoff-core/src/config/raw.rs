//! The config file as written: serde structs that only [`super::validate`] turns into a `Config`.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub trust_domain: Spanned<String>,
    pub policies: Option<Spanned<String>>,
    #[serde(default)]
    pub tokens: RawTokens,
    pub dev_issuer: Option<RawDevIssuer>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub systems: BTreeMap<String, Spanned<RawSystem>>,
    #[serde(default)]
    pub purposes: BTreeMap<String, Spanned<RawPurpose>>,
    pub notifications: Option<RawNotifications>,
    #[serde(default)]
    pub approvals: RawApprovals,
    #[serde(default)]
    pub approver_issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub counters: BTreeMap<String, Spanned<RawCounter>>,
    #[serde(default)]
    pub delegation: RawDelegation,
    #[serde(default)]
    pub server: super::server::RawServer,
    #[serde(default)]
    pub audit: super::audit::RawAudit,
    #[serde(default)]
    pub console: super::console::RawConsole,
    #[serde(default)]
    pub store: super::store::RawStore,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCounter {
    pub actions: Spanned<Vec<String>>,
    pub window: Spanned<String>,
    pub per: Option<Spanned<String>>,
    pub sum: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelegation {
    pub max_depth: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvidence {
    pub jwks_file: Option<Spanned<String>>,
    pub hmac_secret_env: Option<Spanned<String>>,
    pub max_age: Option<Spanned<String>>,
    pub kinds: Spanned<BTreeMap<String, Spanned<Vec<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    pub ttl: Option<Spanned<String>>,
    pub poll_interval_seconds: Option<u32>,
    pub escalate_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    pub webhook_url: Spanned<String>,
    pub format: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    pub default_lifetime: Option<Spanned<String>>,
    pub max_lifetime: Option<Spanned<String>>,
    pub algorithm: Option<Spanned<String>>,
    pub rotate_every: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevIssuer {
    pub enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub id: Spanned<String>,
    pub issuer: Spanned<String>,
    pub jwks_file: Option<Spanned<String>>,
    pub jwks_url: Option<Spanned<String>>,
    pub discovery: Option<Spanned<bool>>,
    pub optional: Option<Spanned<bool>>,
    pub min_refresh: Option<Spanned<String>>,
    pub max_refresh: Option<Spanned<String>>,
    pub min_refetch_interval: Option<Spanned<String>>,
    pub danger_allow_http: Option<Spanned<bool>>,
    pub ca_file: Option<Spanned<String>>,
    pub audience: Spanned<String>,
    pub agent_claim: Option<Spanned<String>>,
    pub algorithms: Option<Spanned<Vec<String>>>,
    pub typ: Option<Spanned<String>>,
    pub leeway_seconds: Option<Spanned<u32>>,
    pub iat_leeway_seconds: Option<Spanned<u32>>,
    pub groups_claim: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    pub audience: Spanned<String>,
    pub description: Option<String>,
    pub owner: Spanned<String>,
    pub escalation: Spanned<String>,
    pub risk: Spanned<String>,
    pub max_token_lifetime: Option<Spanned<String>>,
    pub actions: Spanned<BTreeMap<String, Spanned<Vec<String>>>>,
    #[serde(default)]
    pub details: BTreeMap<String, Spanned<String>>,
    pub require_approval: Option<Spanned<Vec<String>>>,
    pub user_may_approve: Option<bool>,
    pub gateway: Option<Spanned<super::gateway::raw::RawGateway>>,
    pub evidence: Option<Spanned<RawEvidence>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPurpose {
    pub description: Option<String>,
    pub lifetime: Spanned<String>,
    pub max_exchanges: Option<u64>,
    pub max_systems: Option<u64>,
    pub max_writes: Option<u64>,
    pub max_live_tokens: Option<u64>,
    pub off_plan: Option<Spanned<String>>,
}
