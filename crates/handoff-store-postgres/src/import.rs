//! Filling an empty PostgreSQL store with another store's rows (`handoff store copy`): every
//! table as it was, the chain's head row set to the last record, serial counters moved past the
//! copied ids, and the signing keys; in one transaction, so a failed copy leaves the store empty.

use crate::PgStore;
use crate::keys::{StoredKey, insert_key};
use serde_json::Value;
use std::collections::BTreeMap;
use tokio_postgres::types::ToSql;

/// One table to copy: its name, its columns, and its rows (cells `null`, numbers or strings).
#[derive(Clone, Debug)]
pub struct ImportTable {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot copy into the database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("cannot reach the database: {0}")]
    Connect(String),
    #[error(transparent)]
    Store(#[from] handoff_core::store::StoreError),
    #[error(
        "the target store is not empty (table `{0}` has rows): copy only into a new database or schema"
    )]
    NotEmpty(String),
    #[error("the target store has no table `{0}`")]
    UnknownTable(String),
    #[error("table `{table}` has no column `{column}` in the target store")]
    UnknownColumn { table: String, column: String },
    #[error("table `{table}`, column `{column}`: {value} is not a {kind}")]
    BadValue {
        table: String,
        column: String,
        value: String,
        kind: String,
    },
}

/// What was copied: rows by table, and the signing keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub rows: BTreeMap<String, usize>,
    pub keys: usize,
}

type Param = Box<dyn ToSql + Sync + Send>;

impl PgStore {
    /// Copies `tables` and `keys` into this store, which must hold nothing yet (no row in any
    /// table, no record in the chain, no signing key).
    pub async fn import(
        &self,
        tables: &[ImportTable],
        keys: &[StoredKey],
    ) -> Result<ImportReport, ImportError> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| ImportError::Connect(e.to_string()))?;
        let client: &mut tokio_postgres::Client = &mut client;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&crate::keys::KEYS_LOCK],
        )
        .await?;
        tx.query_one("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE", &[])
            .await?;
        let types = column_types(&tx).await?;
        for table in types.keys() {
            if table == "audit_head" || table == "handoff_schema" {
                continue;
            }
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
            if tx.query_one(&sql, &[]).await?.get::<_, bool>(0) {
                return Err(ImportError::NotEmpty(table.clone()));
            }
        }
        let mut report = ImportReport::default();
        for table in tables {
            let Some(columns) = types.get(&table.name) else {
                return Err(ImportError::UnknownTable(table.name.clone()));
            };
            report
                .rows
                .insert(table.name.clone(), copy_table(&tx, table, columns).await?);
            // Serial columns continue after the copied ids.
            for (column, info) in columns {
                if info.serial {
                    let sql = format!(
                        "SELECT setval(pg_get_serial_sequence('{0}', '{1}'), \
                         COALESCE((SELECT max({1}) FROM {0}), 0) + 1, false)",
                        table.name, column
                    );
                    tx.execute(&sql, &[]).await?;
                }
            }
        }
        tx.execute(
            "UPDATE audit_head SET seq = last.seq, hash = last.hash
             FROM (SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1) AS last
             WHERE audit_head.id = 1",
            &[],
        )
        .await?;
        for key in keys {
            insert_key(&tx, key).await?;
        }
        report.keys = keys.len();
        tx.commit().await?;
        Ok(report)
    }
}

struct Column {
    kind: String,
    serial: bool,
}

/// Every table of the current schema, its columns and their types.
async fn column_types(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<BTreeMap<String, BTreeMap<String, Column>>, ImportError> {
    let rows = tx
        .query(
            "SELECT table_name::text, column_name::text, data_type::text,
                    COALESCE(column_default, '') LIKE 'nextval(%'
             FROM information_schema.columns WHERE table_schema = current_schema()",
            &[],
        )
        .await?;
    let mut tables: BTreeMap<String, BTreeMap<String, Column>> = BTreeMap::new();
    for row in rows {
        tables.entry(row.get(0)).or_default().insert(
            row.get(1),
            Column {
                kind: row.get(2),
                serial: row.get(3),
            },
        );
    }
    Ok(tables)
}

async fn copy_table(
    tx: &tokio_postgres::Transaction<'_>,
    table: &ImportTable,
    columns: &BTreeMap<String, Column>,
) -> Result<usize, ImportError> {
    // Columns only this store has, derived from the copied body: the token a record names, the
    // delegate a delegation is for.
    let derived: &[(&str, &[&str])] = match table.name.as_str() {
        "audit" => &[("jti", &["event", "token", "jti"])],
        "delegations" => &[("delegate", &["delegate"])],
        _ => &[],
    };
    let mut names: Vec<&str> = table.columns.iter().map(String::as_str).collect();
    for (column, _) in derived {
        if !names.contains(column) {
            names.push(column);
        }
    }
    for name in &names {
        if !columns.contains_key(*name) {
            return Err(ImportError::UnknownColumn {
                table: table.name.clone(),
                column: (*name).to_owned(),
            });
        }
    }
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        table.name,
        names.join(", "),
        placeholders.join(", ")
    );
    let statement = tx.prepare(&sql).await?;
    let body_at = table.columns.iter().position(|c| c == "body");
    for row in &table.rows {
        let body: Option<Value> = body_at
            .and_then(|i| row.get(i))
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str(text).ok());
        let mut params: Vec<Param> = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let value = match row.get(i) {
                Some(value) if i < table.columns.len() => value.clone(),
                _ => derived
                    .iter()
                    .find(|(column, _)| column == name)
                    .and_then(|(_, path)| {
                        path.iter()
                            .try_fold(body.as_ref()?, |v, key| v.get(key))
                            .cloned()
                    })
                    .unwrap_or(Value::Null),
            };
            let kind = columns.get(*name).map_or("text", |c| c.kind.as_str());
            params.push(param(&table.name, name, kind, value)?);
        }
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        tx.execute(&statement, &refs).await?;
    }
    Ok(table.rows.len())
}

/// `value` as a parameter of the column's PostgreSQL type.
fn param(table: &str, column: &str, kind: &str, value: Value) -> Result<Param, ImportError> {
    let bad = |value: &Value, kind: &str| ImportError::BadValue {
        table: table.to_owned(),
        column: column.to_owned(),
        value: value.to_string(),
        kind: kind.to_owned(),
    };
    Ok(match (kind, value) {
        ("bigint", Value::Null) => Box::new(None::<i64>),
        ("bigint", value) => Box::new(value.as_i64().ok_or_else(|| bad(&value, kind))?),
        ("integer", Value::Null) => Box::new(None::<i32>),
        ("integer", value) => Box::new(
            value
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| bad(&value, kind))?,
        ),
        ("boolean", Value::Null) => Box::new(None::<bool>),
        ("boolean", Value::Bool(b)) => Box::new(b),
        ("boolean", value) => Box::new(value.as_i64().ok_or_else(|| bad(&value, kind))? != 0),
        ("text", Value::Null) => Box::new(None::<String>),
        ("text", Value::String(text)) => Box::new(text),
        (kind, value) => return Err(bad(&value, kind)),
    })
}
