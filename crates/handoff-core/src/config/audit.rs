//! `[audit]`: signed checkpoints of the audit chain.
//!
//! ```toml
//! [audit]
//! checkpoint_interval = "5m"                        # a checkpoint this often while serving
//! checkpoint_file = "/var/lib/handoff/checkpoints"  # each checkpoint appended (a witness)
//! ```

use super::check::Ctx;
use super::shape::Shape;
use crate::time::Ttl;
use serde::Deserialize;
use toml::Spanned;

pub const DEFAULT_CHECKPOINT_INTERVAL: Ttl = Ttl::from_seconds(300);

pub(super) const AUDIT_SHAPE: Shape = Shape::Fields(&[
    ("checkpoint_interval", Shape::Leaf),
    ("checkpoint_file", Shape::Leaf),
]);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub checkpoint_interval: Option<Spanned<String>>,
    pub checkpoint_file: Option<Spanned<String>>,
}

/// How the audit chain is checkpointed (`[audit]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// A signed checkpoint is made this often while serving.
    pub checkpoint_interval: Ttl,
    /// Each checkpoint is appended to this file (one compact JWS a line) as it is made: absolute,
    /// or relative to the directory the server runs in.
    pub checkpoint_file: Option<String>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            checkpoint_file: None,
        }
    }
}

pub(super) fn validate_audit(ctx: &mut Ctx<'_>, raw: &RawAudit) -> AuditSettings {
    let checkpoint_interval = raw
        .checkpoint_interval
        .as_ref()
        .and_then(|v| ctx.ttl(v, "audit.checkpoint_interval"))
        .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL);
    let checkpoint_file = raw.checkpoint_file.as_ref().and_then(|file| {
        if file.get_ref().trim().is_empty() {
            ctx.report(file, "audit.checkpoint_file must not be empty");
            None
        } else {
            Some(file.get_ref().clone())
        }
    });
    AuditSettings {
        checkpoint_interval,
        checkpoint_file,
    }
}
