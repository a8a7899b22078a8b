//! The `handoff` command line: serve, check, identity, audit and trace. Every subcommand is a
//! function here so it can be tested without spawning a process.

pub mod commands;
pub mod data_dir;
pub mod deployment;
pub mod shared_store;
pub mod signals;

use clap::{Parser, Subcommand};
use handoff_core::containment::RevocationKind;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for a bad config or bad usage (EX_USAGE / EX_CONFIG family, as `handoff check` documents).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code when the audit chain does not verify.
pub const EXIT_AUDIT_BROKEN: u8 = 65;

#[derive(Debug, Parser)]
#[command(
    name = "handoff",
    version,
    about = "Per-handoff authorization for AI agents"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args, Clone)]
pub struct DeploymentArgs {
    /// The deployment's config file; the bundled example when omitted.
    #[arg(long, value_name = "FILE", env = "HANDOFF_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args, Clone)]
pub struct DataArgs {
    /// Where the store and keys live (only `serve` creates one; other commands refuse a folder
    /// without a store).
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".handoff",
        env = "HANDOFF_DATA_DIR"
    )]
    pub data_dir: PathBuf,
}

/// The store a read-only offline command reads: PostgreSQL, for a deployment of several nodes;
/// else the data directory's SQLite store.
#[derive(Debug, clap::Args, Clone)]
pub struct StoreArg {
    /// Read this PostgreSQL store (`postgres://...`) instead of the data directory's SQLite
    /// store (the data directory is then only checked to be a node's).
    #[arg(long, value_name = "URL", env = "HANDOFF_STORE")]
    pub store: Option<String>,
}

/// A running server and the operator credential to call its admin API with.
#[derive(Debug, clap::Args, Clone)]
pub struct RemoteArgs {
    /// The running server's base URL: the command goes through its admin API instead of a
    /// data directory.
    #[arg(long, env = "HANDOFF_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// A file holding the operator credential (the server's `<data-dir>/keys/operator-secret`);
    /// else `HANDOFF_OPERATOR_TOKEN`.
    #[arg(long, value_name = "FILE")]
    pub operator_token_file: Option<PathBuf>,
}

impl RemoteArgs {
    /// The server to call, if one was named.
    pub fn remote(&self) -> anyhow::Result<Option<commands::remote::Remote>> {
        self.server
            .as_deref()
            .map(|server| {
                commands::remote::Remote::new(server, self.operator_token_file.as_deref())
            })
            .transpose()
    }
}

/// How the long-running commands log (to stderr).
#[derive(Debug, clap::Args, Clone)]
pub struct LogArgs {
    /// `text` (one readable line per event) or `json` (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "HANDOFF_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// The level or filter (`info`, `warn`, `handoff::request=info,warn`); overrides `RUST_LOG`.
    /// Default: `RUST_LOG`, else `info`.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Export OpenTelemetry traces over OTLP/HTTP (protobuf) to this collector URL (spans go to
    /// `<URL>/v1/traces`); the service name is `OTEL_SERVICE_NAME`, else `handoff`.
    /// Default: no traces.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How `handoff serve` listens, names itself and stops.
#[derive(Debug, clap::Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "HANDOFF_LISTEN")]
    pub listen: String,
    /// The URL clients reach Handoff at (its issuer); overrides `[server] public_url`. Without
    /// either, `http://<listen address>`.
    #[arg(long, value_name = "URL", env = "HANDOFF_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long in-flight requests get to finish on SIGTERM/SIGINT (`5s`); overrides
    /// `[server] shutdown_drain`.
    #[arg(long, value_name = "DURATION", env = "HANDOFF_DRAIN")]
    pub drain: Option<String>,
    /// Also serve `GET /metrics` (Prometheus) on this address, e.g. one only the scraper
    /// reaches; the main listener serves it too.
    #[arg(long, value_name = "ADDRESS", env = "HANDOFF_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// The PostgreSQL store several nodes share (`postgres://user@host/db`); overrides
    /// `[store] url`. Without either, the SQLite store in the data directory.
    #[arg(long, value_name = "URL", env = "HANDOFF_STORE")]
    pub store: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Handoff server.
    Serve {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        options: ServeArgs,
    },
    /// Run the enforcement gateway alone, in front of the HTTP APIs in the config's
    /// `[systems.ID.gateway]` tables, verifying tokens offline against Handoff's JWKS.
    Gateway {
        #[command(flatten)]
        deployment: DeploymentArgs,
        /// Handoff's base URL (for its JWKS and revocation feed).
        #[arg(long, value_name = "URL")]
        handoff: String,
        /// The system whose credential reads the revocation feed.
        #[arg(long)]
        feed_system: String,
        /// That system's secret (`handoff credentials issue --system ID`).
        #[arg(long, env = "HANDOFF_FEED_SECRET", hide_env_values = true)]
        feed_secret: String,
        /// How often the revocation feed is read; a revocation takes effect within this.
        #[arg(long, default_value_t = 1)]
        poll_seconds: u64,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Write a commented starter deployment (config, policies, policy tests) into a new or
    /// empty DIR.
    Init { dir: PathBuf },
    /// Make the running server read its config and policies again: checked as `handoff check`
    /// checks them and swapped in, or refused with every problem listed (the old set keeps
    /// serving). `SIGHUP` to the server does the same.
    Reload {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Handoff's own signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Validate a deployment (config and policies) without serving.
    Check {
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Development identities from Handoff's built-in issuer.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Policy tooling.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Move a deployment between stores.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Revoke a token (by jti), a task or an agent: everything minted under it stops working.
    Revoke {
        /// What to revoke.
        #[arg(value_enum)]
        kind: RevokeKind,
        /// The token's jti, the task id, the agent id or the delegation id.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Freeze a system: no new tokens for it, and its live tokens introspect inactive.
    Freeze {
        system: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Unfreeze a system.
    Unfreeze {
        system: String,
        #[arg(long, default_value = "unfrozen by an operator")]
        reason: String,
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Development tokens for people who approve (from the dev issuer).
    Approver {
        #[command(subcommand)]
        command: ApproverCommand,
    },
    /// List, show, approve or deny approval requests on a running server.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
        /// The server's base URL.
        #[arg(
            long,
            global = true,
            env = "HANDOFF_SERVER",
            default_value = "http://127.0.0.1:8080"
        )]
        server: String,
        /// Your approver token (or set HANDOFF_TOKEN).
        #[arg(long, global = true, env = "HANDOFF_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Credentials of registered systems.
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
    /// Signed evidence: sign a report as a registered system (CI), or send one to a server.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Reports drawn from the audit log.
    Report {
        #[command(subcommand)]
        command: commands::report::ReportCommand,
    },
    /// Print a task's story as a tree: its intent and user, every handoff with target, scope,
    /// decision and why, each gateway use under its grant, each delegation under its parent.
    Trace {
        /// The task id.
        task: String,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print the trace as one JSON document (the tree `GET /v1/tasks/{id}/trace` answers).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key active at once; the old public key stays in the JWKS until every
    /// token it signed has expired. Through the running server with --server (or
    /// HANDOFF_SERVER), else on the data directory (the server picks it up when it restarts).
    Rotate {
        /// The new key's algorithm (default: the active key's).
        #[arg(long, value_enum)]
        algorithm: Option<commands::keys::AlgorithmArg>,
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Print a development identity JWT for an agent.
    Issue {
        /// The agent id (the JWT's `sub`).
        #[arg(long)]
        agent: String,
        /// How long the identity is valid (`90s`, `15m`, `1h`).
        #[arg(long, default_value = "1h")]
        lifetime: String,
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RevokeKind {
    Token,
    Task,
    Agent,
    /// A delegation, and every delegation below it.
    Delegation,
}

#[derive(Debug, Subcommand)]
pub enum ApproverCommand {
    /// Print a one-time sign-in link to the web console (`/console`) for a person in the given
    /// groups, made by the running server (operator credential: `HANDOFF_OPERATOR_TOKEN`,
    /// `--operator-token-file`, else the data directory's `keys/operator-secret`).
    Login {
        #[arg(long)]
        user: String,
        /// A group the person belongs to (repeatable), e.g. `payments-owners`.
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        /// The running server's base URL.
        #[arg(
            long,
            env = "HANDOFF_SERVER",
            value_name = "URL",
            default_value = "http://127.0.0.1:8080"
        )]
        server: String,
        /// A file holding the operator credential.
        #[arg(long, value_name = "FILE")]
        operator_token_file: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print a development token for a person in the given groups.
    Issue {
        #[arg(long)]
        user: String,
        /// A group the person belongs to (repeatable), e.g. `payments-owners`.
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        #[arg(long, default_value = "8h")]
        lifetime: String,
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Approvals of your groups.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        system: Option<String>,
    },
    /// One approval, with the task's intent and history.
    Show { id: String },
    Approve {
        id: String,
        #[arg(long)]
        reason: String,
    },
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Register a new introspection credential for a system and print its secret.
    Issue {
        /// The system id.
        #[arg(long)]
        system: String,
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Print an evidence JWT signed ES256 with a system's key (the one registered in
    /// `[systems.ID.evidence]`), e.g. CI reporting `tests_passed` for a commit.
    Sign {
        /// The reporting system's id (`iss`).
        #[arg(long)]
        system: String,
        /// The task the evidence is about.
        #[arg(long)]
        task: String,
        /// What happened: a kind the system may report (`tests_passed`).
        #[arg(long)]
        kind: String,
        /// A data field, `NAME=VALUE` (repeatable), e.g. `commit=abc123`.
        #[arg(long = "field", value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// The system's private signing key (PKCS#8 PEM, P-256).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The key's id in the system's JWKS (may be left out when it has one key).
        #[arg(long)]
        kid: Option<String>,
        /// The evidence id (`jti`, unique per system); a random one when omitted.
        #[arg(long)]
        id: Option<String>,
        /// Handoff's trust domain (`aud`); else the `--config` deployment's.
        #[arg(long, value_name = "URL")]
        audience: Option<String>,
        /// How long the statement may be used (`exp`), e.g. `5m`.
        #[arg(long)]
        lifetime: Option<String>,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Post an evidence JWT (the argument, or standard input) to a running server.
    Send {
        /// The JWT; `-` or nothing reads it from standard input.
        jwt: Option<String>,
        /// The server's base URL.
        #[arg(long, env = "HANDOFF_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run the declarative test cases (*.toml) in DIR against the deployment's policies.
    Test {
        dir: PathBuf,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Decide every recorded decision again under the policies in NEW_POLICY_DIR and list those
    /// that would change (allow->deny, deny->allow, a gate added or removed), counted by policy.
    Diff(commands::policy::DiffArgs),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped SQLite deployment (tasks, facts, approvals, revocations, evidence, the
    /// whole audit chain, its checkpoints and the signing keys) into an empty PostgreSQL store.
    Copy {
        #[command(flatten)]
        deployment: DeploymentArgs,
        /// The SQLite deployment's data directory.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL store (`postgres://...`); it must be empty.
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum AuditCommand {
    /// Walk the hash chain and name the first record that was altered, removed or reordered;
    /// check every stored checkpoint (signature, and the head at its record).
    Verify {
        #[command(flatten)]
        data: DataArgs,
        /// Read the chain and checkpoints through this running server's admin API (the
        /// checkpoint key from its JWKS) instead of a data directory; verified here all the same.
        #[command(flatten)]
        remote: RemoteArgs,
        /// A file of checkpoints (one compact JWS a line, as `[audit] checkpoint_file` writes):
        /// prove the log only grew since each (the record it covers still has its head).
        #[arg(long, value_name = "CHECKPOINT_FILE")]
        against: Option<PathBuf>,
        /// Verify the chain in this PostgreSQL store (`postgres://...`) instead of the data
        /// directory's SQLite store (the data directory still gives the checkpoint key).
        #[arg(long, value_name = "URL", env = "HANDOFF_STORE")]
        store: Option<String>,
    },
    /// Write the chain (or the stored checkpoints) to stdout, one JSON line a record, for an
    /// independent verifier (`docs/audit-format.md`).
    Export {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        store: StoreArg,
        #[arg(long, value_enum, default_value = "chain")]
        format: commands::audit::ExportFormat,
        /// Only records with a sequence number above this.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// `--format ocsf`: only records written at or after this (RFC 3339 UTC, or epoch
        /// milliseconds).
        #[arg(long)]
        since: Option<String>,
        /// `--format ocsf`: keep running, writing each new record as it commits, until SIGINT,
        /// SIGTERM or stdout closes.
        #[arg(long)]
        follow: bool,
    },
    /// Incident queries: every record matching all the filters given, oldest first.
    Query {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        filters: commands::audit::QueryArgs,
    },
    /// Decide record SEQ again under the policy set it names, on the facts and request it saw;
    /// exit 0 when the decision and its policies agree with the record.
    Replay(commands::replay::ReplayArgs),
    /// Sign a checkpoint of the chain's head now and print it (kept in the store too).
    Checkpoint {
        #[command(flatten)]
        deployment: DeploymentArgs,
        #[command(flatten)]
        data: DataArgs,
    },
}

/// A revocation or freeze through the server when one is named, else on the data directory.
fn revoke(
    deployment: &DeploymentArgs,
    data: &DataArgs,
    remote: &RemoteArgs,
    kind: RevocationKind,
    id: &str,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    match remote.remote()? {
        Some(remote) => commands::revoke::revoke_remote(&remote, kind, id, reason),
        None => commands::revoke::revoke(deployment, data, kind, id, reason),
    }
}

/// Parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    run(cli)
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve {
            deployment,
            data,
            options,
        } => commands::serve::run(&deployment, &data, &options),
        Command::Check { deployment } => commands::check::run(&deployment),
        Command::Keys {
            command:
                KeysCommand::Rotate {
                    algorithm,
                    deployment,
                    data,
                    remote,
                },
        } => match remote.remote() {
            Ok(Some(remote)) => commands::keys::rotate_remote(&remote, algorithm),
            Ok(None) => commands::keys::rotate(&deployment, &data, algorithm),
            Err(error) => Err(error),
        },
        Command::Init { dir } => commands::init::run(&dir),
        Command::Reload { remote } => {
            let server = remote
                .server
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
            commands::remote::Remote::new(&server, remote.operator_token_file.as_deref())
                .and_then(|remote| commands::reload::run(&remote))
        }
        Command::Gateway {
            deployment,
            handoff,
            feed_system,
            feed_secret,
            poll_seconds,
            listen,
            log,
        } => commands::gateway::run(
            &deployment,
            &commands::gateway::Upstream {
                handoff: &handoff,
                system: &feed_system,
                secret: &feed_secret,
                poll: std::time::Duration::from_secs(poll_seconds.max(1)),
            },
            &listen,
            &log,
        ),
        Command::Policy {
            command: PolicyCommand::Test { dir, deployment },
        } => commands::policy::test(&deployment, &dir),
        Command::Policy {
            command: PolicyCommand::Diff(args),
        } => commands::policy::diff(&args),
        Command::Identity {
            command:
                IdentityCommand::Issue {
                    agent,
                    lifetime,
                    deployment,
                    data,
                },
        } => commands::identity::issue(&deployment, &data, &agent, &lifetime),
        Command::Evidence {
            command:
                EvidenceCommand::Sign {
                    system,
                    task,
                    kind,
                    fields,
                    key,
                    kid,
                    id,
                    audience,
                    lifetime,
                    deployment,
                },
        } => commands::evidence::sign(
            &deployment,
            &commands::evidence::Sign {
                system: &system,
                task: &task,
                kind: &kind,
                fields: &fields,
                key: &key,
                kid: kid.as_deref(),
                id: id.as_deref(),
                audience: audience.as_deref(),
                lifetime: lifetime.as_deref(),
            },
        ),
        Command::Evidence {
            command: EvidenceCommand::Send { jwt, server },
        } => commands::evidence::send(&server, jwt.as_deref()),
        Command::Store {
            command:
                StoreCommand::Copy {
                    deployment,
                    from,
                    to,
                },
        } => commands::store::copy(&deployment, &from, &to),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    data,
                    remote,
                    against,
                    store,
                },
        } => match remote.remote() {
            Ok(Some(remote)) => commands::audit::verify_remote(remote, against.as_deref()),
            Ok(None) => commands::audit::verify(&data, against.as_deref(), store.as_deref()),
            Err(error) => Err(error),
        },
        Command::Audit {
            command:
                AuditCommand::Export {
                    data,
                    store,
                    format,
                    after,
                    since,
                    follow,
                },
        } => commands::audit::export_any(
            &data,
            store.store.as_deref(),
            format,
            after,
            since.as_deref(),
            follow,
        ),
        Command::Audit {
            command:
                AuditCommand::Query {
                    data,
                    store,
                    filters,
                },
        } => commands::audit::query(&data, store.store.as_deref(), &filters),
        Command::Audit {
            command: AuditCommand::Replay(args),
        } => commands::replay::run(&args),
        Command::Audit {
            command: AuditCommand::Checkpoint { deployment, data },
        } => commands::audit::checkpoint(&deployment, &data),
        Command::Report { command } => commands::report::run(&command),
        Command::Trace {
            task,
            data,
            store,
            remote,
            json,
        } => match remote.remote() {
            Ok(Some(remote)) => commands::trace::run_remote(&remote, &task, json),
            Ok(None) => commands::trace::run(&data, store.store.as_deref(), &task, json),
            Err(error) => Err(error),
        },
        Command::Revoke {
            kind,
            id,
            reason,
            deployment,
            data,
            remote,
        } => {
            let kind = match kind {
                RevokeKind::Token => RevocationKind::Token,
                RevokeKind::Task => RevocationKind::Task,
                RevokeKind::Agent => RevocationKind::Agent,
                RevokeKind::Delegation => RevocationKind::Delegation,
            };
            revoke(&deployment, &data, &remote, kind, &id, &reason)
        }
        Command::Freeze {
            system,
            reason,
            deployment,
            data,
            remote,
        } => revoke(
            &deployment,
            &data,
            &remote,
            RevocationKind::Freeze,
            &system,
            &reason,
        ),
        Command::Unfreeze {
            system,
            reason,
            deployment,
            data,
            remote,
        } => revoke(
            &deployment,
            &data,
            &remote,
            RevocationKind::Unfreeze,
            &system,
            &reason,
        ),
        Command::Approver {
            command:
                ApproverCommand::Issue {
                    user,
                    groups,
                    lifetime,
                    deployment,
                    data,
                },
        } => commands::approvals::issue(&deployment, &data, &user, &groups, &lifetime),
        Command::Approver {
            command:
                ApproverCommand::Login {
                    user,
                    groups,
                    server,
                    operator_token_file,
                    data,
                },
        } => commands::approvals::login(
            &server,
            operator_token_file.as_deref(),
            &data,
            &user,
            &groups,
        ),
        Command::Approvals {
            command,
            server,
            token,
        } => {
            let Some(token) = token else {
                eprintln!("error: give your approver token with --token or HANDOFF_TOKEN");
                return ExitCode::from(EXIT_CONFIG);
            };
            let call = match &command {
                ApprovalsCommand::List { status, system } => commands::approvals::Call::List {
                    status: status.as_deref(),
                    system: system.as_deref(),
                },
                ApprovalsCommand::Show { id } => commands::approvals::Call::Show(id),
                ApprovalsCommand::Approve { id, reason } => {
                    commands::approvals::Call::Approve(id, reason)
                }
                ApprovalsCommand::Deny { id, reason } => {
                    commands::approvals::Call::Deny(id, reason)
                }
            };
            commands::approvals::call(&server, &token, call)
        }
        Command::Credentials {
            command:
                CredentialsCommand::Issue {
                    system,
                    deployment,
                    data,
                    remote,
                },
        } => match remote.remote() {
            Ok(Some(remote)) => commands::revoke::credential_remote(&remote, &system),
            Ok(None) => commands::revoke::credential(&deployment, &data, &system),
            Err(error) => Err(error),
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
