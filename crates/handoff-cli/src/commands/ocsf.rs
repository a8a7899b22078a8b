//! `handoff audit export --format ocsf`: the audit records as OCSF events, one JSON object a line
//! (the mapping is core's `ocsf::event`), from a sequence number or a time, once or following the
//! store as new records commit until SIGINT/SIGTERM or until stdout closes.

use crate::DataArgs;
use crate::data_dir::DataDir;
use handoff_core::time::Timestamp;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

const PAGE: usize = 1000;
/// How often `--follow` asks the store for records past the last one written.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Which records to write, and whether to keep following.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    /// Only records with a sequence number above this.
    pub after: u64,
    /// Only records written at or after this.
    pub since: Option<Timestamp>,
    pub follow: bool,
}

/// Writes the selected records to stdout as OCSF events.
pub fn export(
    data: &DataArgs,
    store_url: Option<&str>,
    selection: Selection,
) -> anyhow::Result<ExitCode> {
    let dir = DataDir::for_store(&data.data_dir, store_url)?;
    let runtime = super::runtime()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    runtime.block_on(async {
        let store = crate::shared_store::open_store(&dir, store_url).await?;
        let stop = crate::signals::shutdown();
        tokio::pin!(stop);
        let mut cursor = selection.after;
        loop {
            let page = store.audit_page(cursor, PAGE).await?;
            let full = page.len() == PAGE;
            for record in &page {
                cursor = record.seq;
                if selection.since.is_some_and(|since| record.at < since) {
                    continue;
                }
                let event = handoff_core::ocsf::event(record, env!("CARGO_PKG_VERSION"))?;
                if writeln!(out, "{event}").is_err() {
                    // Whoever read the events has gone: nothing more to do.
                    return Ok(ExitCode::SUCCESS);
                }
            }
            if out.flush().is_err() {
                return Ok(ExitCode::SUCCESS);
            }
            if full {
                continue;
            }
            if !selection.follow {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::select! {
                () = &mut stop => return Ok(ExitCode::SUCCESS),
                () = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    })
}
