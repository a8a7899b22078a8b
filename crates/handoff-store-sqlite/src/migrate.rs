//! Schema migrations, keyed by SQLite's `user_version`.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: tasks with their facts, and the audit chain.
    "CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        agent_issuer TEXT NOT NULL,
        agent TEXT NOT NULL,
        user_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        intent TEXT NOT NULL,
        plan TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        state TEXT NOT NULL,
        facts TEXT NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE INDEX tasks_by_agent ON tasks (agent, state);
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        task TEXT,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_by_task ON audit (task, seq);",
    // 2: revocation, freezes and system credentials.
    "CREATE TABLE revocations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        at INTEGER NOT NULL,
        reason TEXT NOT NULL,
        actor TEXT NOT NULL
    );
    CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, at INTEGER NOT NULL);
    CREATE TABLE revoked_agents (agent TEXT PRIMARY KEY, at INTEGER NOT NULL);
    CREATE TABLE frozen_systems (system TEXT PRIMARY KEY, at INTEGER NOT NULL);
    CREATE TABLE credentials (system TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, at INTEGER NOT NULL);",
    // 3: approvals.
    "CREATE TABLE approvals (
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
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        decided_by TEXT,
        decided_at INTEGER,
        reason TEXT,
        consumed_by TEXT,
        escalated INTEGER NOT NULL DEFAULT 0,
        last_poll INTEGER
    );
    CREATE INDEX approvals_by_task ON approvals (task, request_hash, status);
    CREATE INDEX approvals_by_status ON approvals (status, created_at);",
    // 4: per-agent facts (windowed counters across tasks), evidence replay protection,
    //    delegations and their revocation.
    "CREATE TABLE agent_facts (key TEXT PRIMARY KEY, facts TEXT NOT NULL, version INTEGER NOT NULL);
    CREATE TABLE evidence_seen (
        system TEXT NOT NULL,
        id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (system, id)
    );
    CREATE INDEX evidence_seen_by_expiry ON evidence_seen (expires_at);
    CREATE TABLE delegations (id TEXT PRIMARY KEY, task TEXT NOT NULL, body TEXT NOT NULL);
    CREATE TABLE revoked_delegations (id TEXT PRIMARY KEY, at INTEGER NOT NULL);",
    // 5: a task's delegations, read when an approval is decided (separation of duties).
    "CREATE INDEX delegations_by_task ON delegations (task);",
    // 6: records by the token they name, so an operator's revocation of a token id Handoff
    //    never minted is refused (`Store::token_known`). A body that is not JSON (a tampered
    //    row, which `audit verify` reports) indexes as NULL rather than failing its write.
    "CREATE INDEX audit_by_jti ON audit (
        CASE WHEN json_valid(body) THEN json_extract(body, '$.event.token.jti') END
    );",
    // 7: signed checkpoints of the audit chain (outside the chain).
    "CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        seq INTEGER NOT NULL,
        head TEXT NOT NULL,
        at INTEGER NOT NULL,
        jws TEXT NOT NULL
    );",
    // 8: every policy set served, by content hash (outside the chain), for `audit replay`.
    //    `files`: a JSON array of [name, text] pairs.
    "CREATE TABLE policy_sets (hash TEXT PRIMARY KEY, files TEXT NOT NULL);",
    // 9: the token a record names kept in its own column, written with the record, in place of
    //    migration 6's index over the body's JSON: that index parsed every record's body again on
    //    the writer's commit path, and held an entry for records that name no token.
    "ALTER TABLE audit ADD COLUMN jti TEXT;
    UPDATE audit SET jti = CASE WHEN json_valid(body) THEN json_extract(body, '$.event.token.jti') END;
    DROP INDEX audit_by_jti;
    CREATE INDEX audit_by_token ON audit (jti) WHERE jti IS NOT NULL;",
];

pub fn migrate(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let tx = conn.transaction()?;
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        if version > current {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
        }
    }
    tx.commit()
}
