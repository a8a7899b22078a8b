//! Schema migrations, numbered in `handoff_schema`; applied at start under an advisory lock so
//! nodes starting together migrate once, and a schema newer than this binary is refused.

use tokio_postgres::Client;

/// Serializes migrations between nodes (an arbitrary, fixed advisory-lock key).
const MIGRATION_LOCK: i64 = 0x0068_616e_646f_6666;

const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite store's migrations 1-7 hold, plus the chain's head row, which
    //    every commit locks (`FOR UPDATE`) so all nodes append in one total order.
    "CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        agent_issuer TEXT NOT NULL,
        agent TEXT NOT NULL,
        user_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        intent TEXT NOT NULL,
        plan TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        state TEXT NOT NULL,
        facts TEXT NOT NULL,
        version BIGINT NOT NULL
    );
    CREATE INDEX tasks_by_agent ON tasks (agent, state);
    CREATE TABLE audit (
        seq BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
        task TEXT,
        jti TEXT,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_by_task ON audit (task, seq);
    CREATE INDEX audit_by_jti ON audit (jti);
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    );
    INSERT INTO audit_head (id, seq, hash)
        VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
    CREATE TABLE revocations (
        seq BIGSERIAL PRIMARY KEY,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        at BIGINT NOT NULL,
        reason TEXT NOT NULL,
        actor TEXT NOT NULL
    );
    CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, at BIGINT NOT NULL);
    CREATE TABLE revoked_agents (agent TEXT PRIMARY KEY, at BIGINT NOT NULL);
    CREATE TABLE frozen_systems (system TEXT PRIMARY KEY, at BIGINT NOT NULL);
    CREATE TABLE credentials (system TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, at BIGINT NOT NULL);
    CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        task TEXT NOT NULL,
        agent TEXT NOT NULL,
        user_id TEXT NOT NULL,
        system TEXT NOT NULL,
        actions TEXT NOT NULL,
        resource TEXT,
        details TEXT,
        request_hash TEXT NOT NULL,
        grp TEXT NOT NULL,
        risk TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        decided_by TEXT,
        decided_at BIGINT,
        reason TEXT,
        consumed_by TEXT,
        escalated BOOLEAN NOT NULL DEFAULT FALSE,
        last_poll BIGINT
    );
    CREATE INDEX approvals_by_task ON approvals (task, request_hash, status);
    CREATE INDEX approvals_by_status ON approvals (status, created_at);
    CREATE TABLE agent_facts (key TEXT PRIMARY KEY, facts TEXT NOT NULL, version BIGINT NOT NULL);
    CREATE TABLE evidence_seen (
        system TEXT NOT NULL,
        id TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (system, id)
    );
    CREATE INDEX evidence_seen_by_expiry ON evidence_seen (expires_at);
    CREATE TABLE delegations (
        n BIGSERIAL UNIQUE,
        id TEXT PRIMARY KEY,
        task TEXT NOT NULL,
        delegate TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX delegations_by_task ON delegations (task);
    CREATE INDEX delegations_by_delegate ON delegations (delegate);
    CREATE TABLE revoked_delegations (id TEXT PRIMARY KEY, at BIGINT NOT NULL);
    CREATE TABLE checkpoints (
        id BIGSERIAL PRIMARY KEY,
        seq BIGINT NOT NULL,
        head TEXT NOT NULL,
        at BIGINT NOT NULL,
        jws TEXT NOT NULL
    );",
    // 2: the deployment's signing keys, shared by every node: the private halves sealed by the
    //    CLI with the operator's key-encryption key (this store never sees them in the clear).
    //    The last position is the active key.
    "CREATE TABLE signing_keys (
        position BIGSERIAL PRIMARY KEY,
        kid TEXT NOT NULL UNIQUE,
        algorithm TEXT NOT NULL,
        sealed BYTEA NOT NULL,
        published_until BIGINT
    );",
    // 3: every policy set served, by content hash (outside the chain), for `audit replay`;
    //    the same table as the SQLite store's migration 8 (`files`: JSON [name, text] pairs).
    "CREATE TABLE policy_sets (hash TEXT PRIMARY KEY, files TEXT NOT NULL);",
];

/// The newest schema this binary knows.
pub const CURRENT: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot migrate the database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error(
        "the database schema is version {found}, newer than this binary's {CURRENT}: upgrade Handoff"
    )]
    TooNew { found: i64 },
}

pub async fn migrate(client: &mut Client) -> Result<(), MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS handoff_schema (version BIGINT NOT NULL)")
        .await?;
    let found: Option<i64> = tx
        .query_opt("SELECT max(version) FROM handoff_schema", &[])
        .await?
        .and_then(|row| row.get(0));
    let found = found.unwrap_or(0);
    if found > CURRENT {
        return Err(MigrateError::TooNew { found });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        if version > found {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO handoff_schema (version) VALUES ($1)",
                &[&version],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
