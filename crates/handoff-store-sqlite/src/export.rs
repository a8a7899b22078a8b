//! Every row of a SQLite store, for `handoff store copy` to move a deployment to another store.

use rusqlite::types::Value as Cell;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::path::Path;

/// One table: its name, its columns, and its rows (each cell `null`, a number or a string), in
/// insertion order.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportedTable {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read the SQLite store: {0}")]
    Read(#[from] rusqlite::Error),
    #[error("table `{0}` holds a value that is neither null, a number nor text")]
    Unsupported(String),
}

/// Every table of the store at `path` (read only, in one read transaction, so the rows are one
/// consistent state), without SQLite's own.
pub fn export(path: &Path) -> Result<Vec<ExportedTable>, ExportError> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let tx = conn.transaction()?;
    let names: Vec<String> = {
        let mut statement = tx.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )?;
        statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?
    };
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        // Names come from the schema itself, quoted as identifiers.
        let mut statement = tx.prepare(&format!(
            "SELECT * FROM \"{}\" ORDER BY rowid",
            name.replace('"', "\"\"")
        ))?;
        let columns: Vec<String> = statement.column_names().map(str::to_owned).collect();
        let width = columns.len();
        let mut rows = Vec::new();
        let mut cursor = statement.query([])?;
        while let Some(row) = cursor.next()? {
            let mut cells = Vec::with_capacity(width);
            for i in 0..width {
                cells.push(match row.get::<_, Cell>(i)? {
                    Cell::Null => Value::Null,
                    Cell::Integer(n) => Value::from(n),
                    Cell::Real(x) => Value::from(x),
                    Cell::Text(text) => Value::String(text),
                    Cell::Blob(_) => return Err(ExportError::Unsupported(name)),
                });
            }
            rows.push(cells);
        }
        tables.push(ExportedTable {
            name,
            columns,
            rows,
        });
    }
    Ok(tables)
}
