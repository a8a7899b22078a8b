//! `handoff audit verify`: walk the hash chain from the first record to the last, and check every
//! signed checkpoint against it (those in the store and, with `--against`, those a witness kept).
//! `handoff audit checkpoint`: sign one now.

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs, EXIT_AUDIT_BROKEN};
use anyhow::Context as _;
use handoff_core::audit::{ChainVerifier, GENESIS};
use handoff_core::checkpoint::{Checkpoint, CheckpointClaims, Witness, verify_checkpoint};
use handoff_core::store::Store;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const PAGE: usize = 1000;

/// Appends each checkpoint's compact JWS as one line to a file (created if missing, mode 0600).
pub struct FileWitness {
    path: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl FileWitness {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: std::sync::Mutex::new(()),
        }
    }
}

impl Witness for FileWitness {
    fn witness(&self, checkpoint: &Checkpoint) -> Result<(), String> {
        let _turn = self
            .lock
            .lock()
            .map_err(|_| "the witness file lock is poisoned")?;
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let describe = |e: std::io::Error| format!("`{}`: {e}", self.path.display());
        let mut file = options.open(&self.path).map_err(describe)?;
        file.write_all(format!("{}\n", checkpoint.jws).as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(describe)
    }
}

/// One checkpoint to hold the chain to, and where it came from (for the report).
struct Expected {
    claims: CheckpointClaims,
    from: String,
}

/// Where `audit verify` reads the chain and the checkpoints: the data directory's store (the
/// checkpoint key from its keys folder), or a running server's admin API (the checkpoint key
/// from its JWKS). Either way the verification happens here, over the records as stored.
enum Source {
    Local {
        store: std::sync::Arc<dyn Store>,
        key: handoff_core::keys::SigningKey,
    },
    Remote {
        remote: super::remote::Remote,
        jwks: jsonwebtoken::jwk::JwkSet,
    },
}

#[derive(serde::Deserialize)]
struct ChainPage {
    records: Vec<handoff_core::audit::SealedRecord>,
}

#[derive(serde::Deserialize)]
struct CheckpointPage {
    checkpoints: Vec<ServedCheckpoint>,
}

#[derive(serde::Deserialize)]
struct ServedCheckpoint {
    seq: u64,
    head: String,
    checkpoint: String,
}

impl Source {
    async fn checkpoints(&self, after: u64) -> anyhow::Result<Vec<(u64, String, String)>> {
        match self {
            Self::Local { store, .. } => Ok(store
                .checkpoints(after, PAGE)
                .await?
                .into_iter()
                .map(|c| (c.seq, c.head, c.jws))
                .collect()),
            Self::Remote { remote, .. } => {
                let page: CheckpointPage = remote
                    .get(&format!(
                        "/v1/admin/audit/checkpoints?after={after}&limit={PAGE}"
                    ))
                    .await?;
                Ok(page
                    .checkpoints
                    .into_iter()
                    .map(|c| (c.seq, c.head, c.checkpoint))
                    .collect())
            }
        }
    }

    async fn audit_page(
        &self,
        after: u64,
    ) -> anyhow::Result<Vec<handoff_core::audit::SealedRecord>> {
        match self {
            Self::Local { store, .. } => Ok(store.audit_page(after, PAGE).await?),
            Self::Remote { remote, .. } => {
                let page: ChainPage = remote
                    .get(&format!("/v1/admin/audit/chain?after={after}&limit={PAGE}"))
                    .await?;
                Ok(page.records)
            }
        }
    }

    fn verify_checkpoint(
        &self,
        jws: &str,
    ) -> Result<CheckpointClaims, handoff_core::checkpoint::CheckpointError> {
        match self {
            Self::Local { key, .. } => verify_checkpoint(jws, &[key]),
            Self::Remote { jwks, .. } => {
                handoff_core::checkpoint::verify_checkpoint_public(jws, jwks)
            }
        }
    }
}

pub fn verify(
    data: &DataArgs,
    against: Option<&Path>,
    store_url: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let dir = DataDir::for_store(&data.data_dir, store_url)?;
    let key = dir.checkpoint_key()?;
    super::runtime()?.block_on(async {
        let store = crate::shared_store::open_store(&dir, store_url).await?;
        verify_source(&Source::Local { store, key }, against).await
    })
}

/// `handoff audit verify --server URL`: the chain and checkpoints read through the server's admin
/// API, the checkpoint key from its JWKS; verified here exactly as on a data directory.
pub fn verify_remote(
    remote: super::remote::Remote,
    against: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        let jwks = remote.get("/.well-known/jwks.json").await?;
        verify_source(&Source::Remote { remote, jwks }, against).await
    })
}

async fn verify_source(source: &Source, against: Option<&Path>) -> anyhow::Result<ExitCode> {
    {
        // The checkpoints first: each must carry the checkpoint key's signature.
        let mut expected: BTreeMap<u64, Vec<Expected>> = BTreeMap::new();
        let mut stored = 0_u64;
        loop {
            let page = source.checkpoints(stored).await?;
            if page.is_empty() {
                break;
            }
            for (seq, head, jws) in page {
                stored += 1;
                let from = format!("stored checkpoint {stored}");
                let claims = match source.verify_checkpoint(&jws) {
                    Ok(claims) => claims,
                    Err(error) => return Ok(broken_checkpoint(&from, &error.to_string())),
                };
                if claims.seq != seq || claims.head != head {
                    return Ok(broken_checkpoint(
                        &from,
                        "its stored columns differ from what it signed",
                    ));
                }
                expected
                    .entry(claims.seq)
                    .or_default()
                    .push(Expected { claims, from });
            }
        }
        let mut witnessed = 0_usize;
        let mut latest_witnessed = None;
        if let Some(file) = against {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            for (line, jws) in text.lines().enumerate() {
                let jws = jws.trim();
                if jws.is_empty() {
                    continue;
                }
                let from = format!("checkpoint on line {} of `{}`", line + 1, file.display());
                let claims = match source.verify_checkpoint(jws) {
                    Ok(claims) => claims,
                    Err(error) => return Ok(broken_checkpoint(&from, &error.to_string())),
                };
                witnessed += 1;
                latest_witnessed = latest_witnessed.max(Some(claims.seq));
                expected
                    .entry(claims.seq)
                    .or_default()
                    .push(Expected { claims, from });
            }
            anyhow::ensure!(witnessed > 0, "`{}` holds no checkpoint", file.display());
        }
        for genesis in expected.get(&0).into_iter().flatten() {
            if genesis.claims.head != GENESIS {
                return Ok(broken_checkpoint(
                    &genesis.from,
                    "an empty log's head is not GENESIS",
                ));
            }
        }

        // Then the chain, holding each record to every checkpoint of its sequence number.
        let mut verifier = ChainVerifier::default();
        let mut after = 0;
        loop {
            let page = source.audit_page(after).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in &page {
                if let Err(broken) = verifier.check(record) {
                    println!("audit chain BROKEN: {broken}");
                    println!("{} record(s) before it verified", verifier.checked());
                    return Ok(ExitCode::from(EXIT_AUDIT_BROKEN));
                }
                for checkpoint in expected.get(&record.seq).into_iter().flatten() {
                    if checkpoint.claims.head != record.hash {
                        return Ok(broken_checkpoint(
                            &checkpoint.from,
                            &format!(
                                "record {} does not have the head it signed: the log was rewritten",
                                record.seq
                            ),
                        ));
                    }
                }
            }
        }
        // A checkpoint past the end: the newest records were removed.
        if let Some((seq, checkpoints)) = expected.range(verifier.checked() + 1..).next() {
            let from = checkpoints
                .first()
                .map_or("a checkpoint", |c| c.from.as_str());
            return Ok(broken_checkpoint(
                from,
                &format!(
                    "it covers record {seq}, but the log ends at record {}: records were removed from its end",
                    verifier.checked()
                ),
            ));
        }
        println!(
            "audit chain intact: {} record(s), head {}",
            verifier.checked(),
            verifier.head()
        );
        println!("{stored} stored checkpoint(s) verified");
        if let (Some(file), Some(seq)) = (against, latest_witnessed) {
            println!(
                "the log only grew since the {witnessed} checkpoint(s) of `{}` (the latest covers record {seq})",
                file.display()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn broken_checkpoint(from: &str, why: &str) -> ExitCode {
    println!("audit checkpoint BROKEN: {from}: {why}");
    ExitCode::from(EXIT_AUDIT_BROKEN)
}

/// `handoff audit checkpoint`: sign a checkpoint of the chain's head now, keep it in the store
/// (and the configured witness file), and print it.
pub fn checkpoint(deployment: &DeploymentArgs, data: &DataArgs) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let dir = DataDir::existing(&data.data_dir)?;
    let handoff = super::serve::build(deployment, &dir, false)?;
    let checkpoint = super::runtime()?
        .block_on(handoff.checkpoint())
        .map_err(|e| anyhow::Error::new(e).context("cannot make a checkpoint"))?;
    println!("{}", checkpoint.jws);
    eprintln!(
        "checkpoint of record {} (head {})",
        checkpoint.seq, checkpoint.head
    );
    Ok(ExitCode::SUCCESS)
}

/// What `handoff audit export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The chain as stored: one JSON object a line (`seq`, `at`, `task`, `prev_hash`, `hash`,
    /// and `body`, the exact text that was hashed), as `docs/audit-format.md` specifies.
    Chain,
    /// The stored checkpoints: one compact JWS a line.
    Checkpoints,
    /// OCSF 1.4.0 events for a SIEM, one JSON object a line (`docs/audit-format.md`).
    Ocsf,
}

/// `handoff audit export`: OCSF (with `--since` and `--follow`) or the formats below.
pub fn export_any(
    data: &DataArgs,
    store_url: Option<&str>,
    format: ExportFormat,
    after: u64,
    since: Option<&str>,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    if format != ExportFormat::Ocsf {
        if since.is_some() || follow {
            eprintln!("error: --since and --follow go with --format ocsf");
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        }
        return export(data, store_url, format, after);
    }
    let since = match since.map(handoff_core::time::Timestamp::parse).transpose() {
        Ok(since) => since,
        Err(error) => {
            eprintln!("error: --since: {error}");
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        }
    };
    let selection = super::ocsf::Selection {
        after,
        since,
        follow,
    };
    super::ocsf::export(data, store_url, selection)
}

/// `handoff audit export`: the records with `seq > after` (or every checkpoint) on stdout.
pub fn export(
    data: &DataArgs,
    store_url: Option<&str>,
    format: ExportFormat,
    after: u64,
) -> anyhow::Result<ExitCode> {
    let dir = DataDir::for_store(&data.data_dir, store_url)?;
    let runtime = super::runtime()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    runtime.block_on(async {
        let store = crate::shared_store::open_store(&dir, store_url).await?;
        let mut cursor = match format {
            ExportFormat::Chain | ExportFormat::Ocsf => after,
            ExportFormat::Checkpoints => 0,
        };
        loop {
            let lines: Vec<String> = match format {
                ExportFormat::Chain | ExportFormat::Ocsf => {
                    let page = store.audit_page(cursor, PAGE).await?;
                    if let Some(last) = page.last() {
                        cursor = last.seq;
                    }
                    page.iter()
                        .map(|r| {
                            serde_json::json!({
                                "seq": r.seq,
                                "at": r.at.millis(),
                                "task": r.task,
                                "prev_hash": r.prev_hash,
                                "hash": r.hash,
                                "body": r.body,
                            })
                            .to_string()
                        })
                        .collect()
                }
                ExportFormat::Checkpoints => {
                    let page = store.checkpoints(cursor, PAGE).await?;
                    cursor += page.len() as u64;
                    page.into_iter().map(|c| c.jws).collect()
                }
            };
            if lines.is_empty() {
                break;
            }
            for line in lines {
                writeln!(out, "{line}")?;
            }
        }
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The filters of `handoff audit query`.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    #[arg(long)]
    pub agent: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub system: Option<String>,
    /// `git:push`, or `push` for that action of any system.
    #[arg(long)]
    pub action: Option<String>,
    #[arg(long)]
    pub task: Option<String>,
    #[arg(long, value_parser = ["permit", "deny"])]
    pub decision: Option<String>,
    /// A deny's reason code (`no_permit`, `forbidden`, ...).
    #[arg(long)]
    pub reason: Option<String>,
    /// A policy id among the determining policies.
    #[arg(long)]
    pub policy: Option<String>,
    /// Records written at or after this (RFC 3339 UTC, or epoch milliseconds).
    #[arg(long)]
    pub since: Option<String>,
    /// Records written before this.
    #[arg(long)]
    pub until: Option<String>,
    /// Print the records as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// `handoff audit query`: every record matching the filters, oldest first.
pub fn query(
    data: &DataArgs,
    store_url: Option<&str>,
    args: &QueryArgs,
) -> anyhow::Result<ExitCode> {
    use handoff_core::audit::Outcome;
    use handoff_core::audit_query::{self, AuditQuery, MAX_QUERY_LIMIT};
    use handoff_core::time::Timestamp;
    let time = |value: &Option<String>, what: &str| -> anyhow::Result<Option<Timestamp>> {
        value
            .as_deref()
            .map(Timestamp::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--{what}: {e}"))
    };
    let query = AuditQuery {
        agent: args.agent.clone(),
        user: args.user.clone(),
        system: args.system.clone(),
        action: args.action.clone(),
        task: args.task.clone(),
        decision: match args.decision.as_deref() {
            Some("permit") => Some(Outcome::Permit),
            Some(_) => Some(Outcome::Deny),
            None => None,
        },
        reason: args.reason.clone(),
        policy: args.policy.clone(),
        since: time(&args.since, "since")?,
        until: time(&args.until, "until")?,
    };
    let dir = DataDir::for_store(&data.data_dir, store_url)?;
    let runtime = super::runtime()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    runtime.block_on(async {
        let store = crate::shared_store::open_store(&dir, store_url).await?;
        let mut after = 0;
        let mut found = 0_usize;
        loop {
            let page = audit_query::query(store.as_ref(), &query, after, MAX_QUERY_LIMIT).await?;
            for (record, event) in &page.records {
                found += 1;
                if args.json {
                    let line = serde_json::json!({
                        "seq": record.seq,
                        "at": record.at.rfc3339(),
                        "hash": record.hash,
                        "event": event,
                    });
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(
                        out,
                        "{}  agent={} task={}",
                        super::trace::line(record.seq, record.at, event),
                        event.agent.as_deref().unwrap_or("-"),
                        event.task.as_deref().unwrap_or("-")
                    )?;
                }
            }
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
        out.flush()?;
        if !args.json {
            eprintln!("{found} record(s)");
        }
        Ok(ExitCode::SUCCESS)
    })
}
