//! WAL checkpoints off the commit path. SQLite's automatic checkpoint runs inside the commit that
//! crosses its threshold, on the one writer thread, so every write queued behind it waited while
//! it copied some 1,000 pages and fsynced the database (5-12 ms measured: docs/benchmarks.md).
//!
//! Here the writer's connection has automatic checkpoints off, and the copying moves to this
//! thread, on its own connection: `PASSIVE` checkpoints, which never block the writer, every
//! [`RECORDS_PER_CHECKPOINT`] committed records and once a second.
//!
//! A passive checkpoint alone never lets the WAL start over: SQLite rewinds the log only when a
//! write transaction begins with every frame already copied back, and under steady load the
//! writer has always committed again since. So when the log has grown past [`RESET_FRAMES`] the
//! writer, between two commits, runs one passive checkpoint itself ([`Nudge::reset_due`]): what
//! is left to copy is the little committed since this thread's last pass, and its next
//! transaction starts the log over. The log stays bounded (64 MiB), and a commit waits for one
//! small checkpoint every few thousand records instead of a large one every 230.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use handoff_core::store::metric_names;
use rusqlite::Connection;

/// Records committed between the writer's nudges: few, so that little is left to copy when the
/// writer resets the log.
pub const RECORDS_PER_CHECKPOINT: usize = 128;

/// Frames (pages) in the log past which the writer has it start over: 64 MiB of 4 KiB pages.
/// Each reset holds one commit back for a checkpoint (about 4 ms on the benchmark's disk: the log
/// and the database are both fsynced), so the larger the log may grow, the rarer that is: at
/// 1,000 exchanges/s, one commit in about 2,700 (one in 680 with 16 MiB).
pub const RESET_FRAMES: i64 = 16_384;

/// How long the thread waits for a nudge before it checkpoints whatever is left.
const IDLE: Duration = Duration::from_secs(1);

/// The writer's end: counts committed records, nudges the checkpointer (never waiting), and says
/// when the log is due to start over.
pub struct Nudge {
    since: usize,
    wake: SyncSender<()>,
    /// Frames in the log at the checkpointer's last pass.
    frames: Arc<AtomicI64>,
}

impl Nudge {
    /// `committed` more records are durable in the WAL.
    pub fn committed(&mut self, committed: usize) {
        self.since = self.since.saturating_add(committed);
        if self.since >= RECORDS_PER_CHECKPOINT {
            match self.wake.try_send(()) {
                // Full: a nudge is already waiting, and one checkpoint covers both.
                Ok(()) | Err(TrySendError::Full(())) => self.since = 0,
                // The checkpointer has stopped: the writer's resets still bound the log.
                Err(TrySendError::Disconnected(())) => {}
            }
        }
    }

    /// Before the writer's next transaction: when the log has grown past [`RESET_FRAMES`],
    /// checkpoints on the writer's own connection so that the transaction starts the log over.
    pub fn reset_due(&mut self, conn: &Connection) {
        if self.frames.load(Ordering::Relaxed) < RESET_FRAMES {
            return;
        }
        let started = std::time::Instant::now();
        match checkpoint(conn) {
            Ok(_) => {
                metrics::histogram!(metric_names::AUDIT_CHECKPOINT_SECONDS, "by" => "writer")
                    .record(started.elapsed().as_secs_f64());
            }
            Err(error) => tracing::warn!(%error, "WAL checkpoint before a reset failed"),
        }
        // Until the checkpointer measures the log again.
        self.frames.store(0, Ordering::Relaxed);
    }
}

/// A nudge channel: the writer keeps the [`Nudge`], the thread [`run`]s on the receiver.
pub fn channel() -> (Nudge, Woken) {
    let (wake, woken) = std::sync::mpsc::sync_channel(1);
    let frames = Arc::new(AtomicI64::new(0));
    (
        Nudge {
            since: 0,
            wake,
            frames: frames.clone(),
        },
        Woken { woken, frames },
    )
}

/// The checkpointer's end of the channel.
pub struct Woken {
    woken: Receiver<()>,
    frames: Arc<AtomicI64>,
}

/// Checkpoints until the writer's end is dropped (the store closed).
pub fn run(conn: Connection, woken: Woken) {
    // Nudged, or a quiet second: what was committed without reaching a nudge is copied too (a
    // passive checkpoint of a log with nothing new costs almost nothing). Ends when the writer
    // has gone.
    while let Ok(()) | Err(RecvTimeoutError::Timeout) = woken.woken.recv_timeout(IDLE) {
        let started = std::time::Instant::now();
        match checkpoint(&conn) {
            Ok(frames) => {
                woken.frames.store(frames, Ordering::Relaxed);
                metrics::histogram!(metric_names::AUDIT_CHECKPOINT_SECONDS, "by" => "checkpointer")
                    .record(started.elapsed().as_secs_f64());
            }
            // Busy or failed: the records are durable in the log; the next round tries again.
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed; retrying"),
        }
    }
    // The last records, copied back before the store goes.
    let _ = checkpoint(&conn);
}

/// One `PASSIVE` checkpoint (copies what no reader still needs, waits for nobody); the frames
/// in the log.
fn checkpoint(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}
