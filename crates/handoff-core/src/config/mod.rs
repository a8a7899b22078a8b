//! A deployment described in one TOML file plus a folder of Cedar policies, loaded and validated
//! in one pass that reports every problem at once.

mod approvals;
mod audit;
mod check;
mod console;
mod counters;
mod delegation;
mod evidence;
mod gateway;
mod issuers;
mod notifications;
mod purposes;
mod raw;
mod server;
mod shape;
mod store;
mod systems;
mod tokens;
mod validate;

use crate::ids::{ActionName, Purpose, SystemId};
use crate::policy::PolicyEngine;
use crate::time::Ttl;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use audit::AuditSettings;
pub use console::{ConsoleSettings, OidcSettings};
pub use gateway::{GatewayConfig, Route, Secret, SecretSource, Tool, UpstreamCredential};
pub use server::{ServerSettings, normalize_public_url};
pub use store::{StoreSettings, store_url_problem};
pub use validate::load_config;

/// Seconds of clock skew allowed past an identity's `exp` and before its `nbf`, by default.
pub const DEFAULT_LEEWAY_SECONDS: u32 = 30;
/// Seconds an identity's `iat` may be ahead of Handoff's clock, by default.
pub const DEFAULT_IAT_LEEWAY_SECONDS: u32 = 60;
/// The most either leeway may be configured to: beyond it a clock is broken, not skewed.
pub const MAX_LEEWAY_SECONDS: u32 = 600;

/// Reads the files a deployment names, relative to the config file's folder.
///
/// The core never touches the file system itself: the CLI passes a reader over a folder, and the
/// bundled example passes one over files compiled into the binary.
pub trait SourceReader {
    /// The text of `path` (relative to the config's folder), or why it cannot be read.
    fn read(&self, path: &str) -> Result<String, String>;
    /// The `.cedar` files in `folder`, sorted, as (path, text).
    fn policy_files(&self, folder: &str) -> Result<Vec<(String, String)>, String>;
}

/// One problem found while loading, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn at(file: &str, line: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: Some(line),
            message: message.into(),
        }
    }

    pub fn in_file(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem a load found; never empty.
#[derive(Debug, thiserror::Error)]
#[error("the deployment has {} problem(s)", .0.len())]
pub struct Problems(pub Vec<Problem>);

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .get(..end)
        .map_or(0, |head| head.iter().filter(|b| **b == b'\n').count())
        + 1
}

/// How risky acting on a system is; shown to approvers and visible to policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RiskTier {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskTier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// The type of one field of a system's authorization details, as policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailType {
    String,
    Long,
    Bool,
}

/// The algorithm Handoff signs its own tokens with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningAlgorithm {
    Es256,
    EdDsa,
}

impl SigningAlgorithm {
    pub fn jws_name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm named `name` in JWS (`ES256`, `EdDSA`).
    pub fn from_jws_name(name: &str) -> Option<Self> {
        [Self::Es256, Self::EdDsa]
            .into_iter()
            .find(|a| a.jws_name() == name)
    }
}

#[derive(Clone, Debug)]
pub struct TokenSettings {
    /// Lifetime of an access token when the request names none.
    pub default_lifetime: Ttl,
    /// No access token lives longer, whatever the system allows.
    pub max_lifetime: Ttl,
    pub algorithm: SigningAlgorithm,
    /// `serve` rotates the signing key this often (counted from its start); `None`: only
    /// `handoff keys rotate` does.
    pub rotate_every: Option<Ttl>,
}

/// A trusted issuer of workload identities.
#[derive(Clone, Debug)]
pub struct IssuerConfig {
    pub id: String,
    pub issuer: String,
    pub audience: String,
    /// Where the issuer's keys come from: a file read at load, or a URL fetched by `serve`.
    pub keys: IssuerKeySource,
    /// The claim that names the agent (`sub` by default; a SPIFFE ID for JWT-SVIDs).
    pub agent_claim: String,
    pub algorithms: Vec<Algorithm>,
    /// The `typ` header the issuer must set, when it sets one.
    pub typ: Option<String>,
    /// Skew allowed past `exp` and before `nbf` (default [`DEFAULT_LEEWAY_SECONDS`]).
    pub leeway_seconds: u32,
    /// How far `iat` may be in the future (default [`DEFAULT_IAT_LEEWAY_SECONDS`]).
    pub iat_leeway_seconds: u32,
    /// For approver issuers: the claim listing the person's groups.
    pub groups_claim: String,
}

/// Where an issuer's keys come from.
#[derive(Clone, Debug)]
pub enum IssuerKeySource {
    /// `jwks_file`: read (and checked) when the config loads; changes with a reload.
    File(JwkSet),
    /// `jwks_url` or `discovery`: fetched by `serve` at start and kept fresh in the background
    /// (see `handoff-issuers`); the core only reads the key set the fetcher publishes.
    Remote(RemoteJwks),
}

/// An issuer's keys fetched over HTTP(S).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteJwks {
    pub location: JwksLocation,
    /// Start without the keys (refusing the issuer's tokens until they arrive) instead of
    /// refusing to start.
    pub optional: bool,
    /// The freshness a response declares (`Cache-Control: max-age`, `Expires`) is clamped to
    /// `min_refresh..=max_refresh`; a failed fetch is retried after `min_refresh`.
    pub min_refresh: Ttl,
    pub max_refresh: Ttl,
    /// At most one refetch per this interval is triggered by tokens naming an unknown `kid`.
    pub min_refetch_interval: Ttl,
    /// `http://` URLs are refused unless this is set (development only).
    pub danger_allow_http: bool,
    /// A PEM bundle of private CAs trusted besides the platform's roots (`ca_file`, read at load).
    pub ca_pem: Option<String>,
}

/// Where the JWKS is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksLocation {
    /// `jwks_url`: the JWKS itself.
    Url(String),
    /// `discovery = true`: `<issuer>/.well-known/openid-configuration` names the `jwks_uri`.
    Discovery,
}

impl RemoteJwks {
    pub const DEFAULT_MIN_REFRESH: Ttl = Ttl::from_seconds(60);
    pub const DEFAULT_MAX_REFRESH: Ttl = Ttl::from_seconds(86_400);
    pub const DEFAULT_MIN_REFETCH_INTERVAL: Ttl = Ttl::from_seconds(30);
}

/// How approvals behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// How long an approval request waits for a decision, and how long an approval stays usable.
    pub ttl: Ttl,
    /// The polling interval agents are told; faster polls get `slow_down`.
    pub poll_interval_seconds: u32,
    /// Undecided this long, an approval is escalated to the system's escalation contact.
    pub escalate_after: Ttl,
}

#[derive(Clone, Debug)]
pub struct ActionConfig {
    pub name: ActionName,
    /// The name within its system (`push`).
    pub short: String,
    pub labels: BTreeSet<String>,
}

#[derive(Clone, Debug)]
pub struct SystemConfig {
    pub id: SystemId,
    pub audience: String,
    pub description: Option<String>,
    pub owner: String,
    pub escalation: String,
    pub risk: RiskTier,
    pub max_token_lifetime: Ttl,
    pub actions: BTreeMap<String, ActionConfig>,
    pub details: BTreeMap<String, DetailType>,
    /// Actions (short names) that always wait for the owner group's approval.
    pub require_approval: BTreeSet<String>,
    /// Separation of duties: may the user a task acts for approve its requests? (default no)
    pub user_may_approve: bool,
    /// How the enforcement gateway fronts the system, when it does (`[systems.ID.gateway]`).
    pub gateway: Option<GatewayConfig>,
    /// How this system signs the evidence it reports about tasks; `None` accepts none.
    pub evidence: Option<EvidenceConfig>,
}

/// The keys a system signs evidence with, and the kinds of event it may report.
#[derive(Clone, Debug)]
pub struct EvidenceConfig {
    /// Public keys for JWT-signed evidence.
    pub jwks: Option<JwkSet>,
    /// The environment variable holding the HMAC-SHA256 key for webhook-signed evidence.
    pub hmac_secret_env: Option<String>,
    /// Older evidence is refused; ids are remembered this long, so a replay is always caught.
    pub max_age: Ttl,
    /// Event kind -> the string fields policy sees.
    pub kinds: BTreeMap<String, BTreeSet<String>>,
}

/// Whose grants a windowed counter adds up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterScope {
    /// Grants in the task being decided.
    Task,
    /// Grants to the same agent across all its tasks.
    Agent,
}

/// A counter over a sliding window, visible to policy as `context.counters.<name>`.
#[derive(Clone, Debug)]
pub struct CounterConfig {
    pub name: String,
    pub actions: BTreeSet<ActionName>,
    pub window: Ttl,
    pub per: CounterScope,
    /// A `long` authorization-details field to add up instead of counting grants.
    pub sum: Option<String>,
}

/// How far work may be handed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelegationSettings {
    /// Delegations below a task (1: the agent may delegate, a delegate may not).
    pub max_depth: u32,
}

/// Per-purpose containment: how far one task may reach. `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budgets {
    pub max_exchanges: Option<u64>,
    pub max_systems: Option<u64>,
    pub max_writes: Option<u64>,
    pub max_live_tokens: Option<u64>,
}

/// What happens to a request for a system outside the task's declared plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffPlan {
    /// Denied, and the system's owner notified (the default).
    #[default]
    Deny,
    /// Decided by policy alone.
    Allow,
}

#[derive(Clone, Debug)]
pub struct PurposeConfig {
    pub id: Purpose,
    pub description: Option<String>,
    pub lifetime: Ttl,
    pub budgets: Budgets,
    pub off_plan: OffPlan,
}

/// The payload shape a webhook receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Handoff's own JSON notice.
    Json,
    /// A Slack-compatible incoming-webhook payload (`{"text": ...}`).
    Slack,
}

/// Where notices to owners and escalation contacts go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationConfig {
    pub webhook_url: String,
    pub format: WebhookFormat,
    /// The environment variable holding the HMAC-SHA256 key that signs each payload.
    pub secret_env: Option<String>,
}

/// A validated deployment config; it cannot hold a value the rules reject.
#[derive(Clone, Debug)]
pub struct Config {
    /// The audience of Handoff's Transaction Tokens and the base of its other names (the dev
    /// issuer, the approvals audience); the issuer is [`Config::issuer`].
    pub trust_domain: String,
    pub policy_folder: String,
    pub tokens: TokenSettings,
    pub dev_issuer: bool,
    pub issuers: Vec<IssuerConfig>,
    pub systems: BTreeMap<SystemId, SystemConfig>,
    pub purposes: BTreeMap<Purpose, PurposeConfig>,
    pub notifications: Option<NotificationConfig>,
    pub approvals: ApprovalSettings,
    /// Issuers of people's tokens (approvers), with a groups claim.
    pub approver_issuers: Vec<IssuerConfig>,
    pub counters: BTreeMap<String, CounterConfig>,
    pub delegation: DelegationSettings,
    /// The HTTP listener's limits (`[server]`).
    pub server: ServerSettings,
    /// Checkpoints of the audit chain (`[audit]`).
    pub audit: AuditSettings,
    /// The web console (`[console]`).
    pub console: ConsoleSettings,
    /// Where the state lives (`[store]`): SQLite in the data directory, or PostgreSQL.
    pub store: StoreSettings,
}

/// The system and action a qualified name (`git:push`) names in `systems`, if both are declared.
pub fn qualified_action<'a>(
    systems: &'a BTreeMap<SystemId, SystemConfig>,
    qualified: &str,
) -> Option<(&'a SystemConfig, &'a ActionConfig)> {
    let (system, action) = qualified.split_once(':')?;
    let system = systems.get(&SystemId::new(system))?;
    system.actions.get(action).map(|action| (system, action))
}

impl Config {
    /// The system and action a qualified name (`git:push`) names, if both are declared.
    pub fn action(&self, qualified: &str) -> Option<(&SystemConfig, &ActionConfig)> {
        qualified_action(&self.systems, qualified)
    }

    /// The system a request's `audience` names, by id or by audience URI.
    pub fn system_for_audience(&self, audience: &str) -> Option<&SystemConfig> {
        self.systems
            .get(&SystemId::new(audience))
            .or_else(|| self.systems.values().find(|s| s.audience == audience))
    }

    /// Whether any counter spans an agent's tasks (then its facts are read on every exchange).
    pub fn has_agent_counters(&self) -> bool {
        self.counters.values().any(|c| c.per == CounterScope::Agent)
    }

    /// Handoff's issuer identifier (RFC 8414): the `iss` of every token it mints, and the base of
    /// the URLs its metadata advertises: `[server] public_url` (which `handoff serve` fills in
    /// from the listen address when the config has none), else the trust domain.
    pub fn issuer(&self) -> &str {
        self.server
            .public_url
            .as_deref()
            .unwrap_or(&self.trust_domain)
    }

    /// The issuer name of Handoff's development identities.
    pub fn dev_issuer_name(&self) -> String {
        format!("{}/dev-issuer", self.trust_domain.trim_end_matches('/'))
    }
}

/// A config and the policies it is enforced with.
pub struct Deployment {
    pub config: Config,
    pub policies: PolicyEngine,
}

/// Loads `config_file` and its policy folder through `reader`, reporting every problem at once.
pub fn load_deployment(
    reader: &dyn SourceReader,
    config_file: &str,
) -> Result<Deployment, Problems> {
    let text = reader
        .read(config_file)
        .map_err(|e| Problems(vec![Problem::in_file(config_file, e)]))?;
    let (config, mut problems) = load_config(reader, config_file, &text);
    let Some(config) = config else {
        return Err(sorted(problems));
    };
    let files = match reader.policy_files(&config.policy_folder) {
        Ok(files) => files,
        Err(e) => {
            problems.push(Problem::in_file(&config.policy_folder, e));
            return Err(Problems(problems));
        }
    };
    match PolicyEngine::load(&config, &files) {
        Ok(policies) if problems.is_empty() => Ok(Deployment { config, policies }),
        Ok(_) => Err(sorted(problems)),
        Err(mut policy_problems) => {
            problems.append(&mut policy_problems);
            Err(sorted(problems))
        }
    }
}

fn sorted(mut problems: Vec<Problem>) -> Problems {
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Problems(problems)
}

/// A `SourceReader` with no files, for config unit tests that load inline TOML.
#[cfg(test)]
pub(crate) mod test_support {
    pub(crate) struct NoFiles;

    impl super::SourceReader for NoFiles {
        fn read(&self, path: &str) -> Result<String, String> {
            Err(format!("`{path}` does not exist"))
        }
        fn policy_files(&self, _folder: &str) -> Result<Vec<(String, String)>, String> {
            Ok(Vec::new())
        }
    }
}
