//! The audit chain: every decision as a record whose hash covers the previous record's hash, so an
//! edited, removed or reordered record is found by walking the chain.

use crate::hash::sha256_hex;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    TaskOpen,
    TaskEnd,
    Exchange,
    Revoke,
    Credential,
    Notify,
    /// A call the enforcement gateway forwarded under a token (an HTTP route or an MCP tool).
    Use,
    ApprovalRequest,
    ApprovalDecision,
    ApprovalEscalate,
    Evidence,
    Delegate,
    /// The policy set and config were reloaded (or a reload was refused).
    Reload,
    /// Handoff's signing key was rotated (`previous_kid` to `kid`).
    KeyRotation,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reload => "reload",
            Self::KeyRotation => "key_rotation",
            Self::TaskOpen => "task_open",
            Self::TaskEnd => "task_end",
            Self::Exchange => "exchange",
            Self::Revoke => "revoke",
            Self::Credential => "credential",
            Self::Notify => "notify",
            Self::Use => "use",
            Self::ApprovalRequest => "approval_request",
            Self::ApprovalDecision => "approval_decision",
            Self::ApprovalEscalate => "approval_escalate",
            Self::Evidence => "evidence",
            Self::Delegate => "delegate",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Permit,
    Deny,
}

/// What is kept of a minted token: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub jti: String,
    pub aud: String,
    pub scope: String,
    pub exp: i64,
}

/// One event as the caller describes it; the store seals it into the chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub kind: Option<EventKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// A stable reason code on deny (`no_permit`, `forbidden`, `invalid_target`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_set: Option<String>,
    /// A reload's record: the hash of the policy set it replaced (`policy_set` is the new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_policy_set: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenRecord>,
    /// The key id a record's token was signed under (exchanges, task opens, delegations); a key
    /// rotation's record: the new active key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// A key rotation's record: the key that stopped signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_kid: Option<String>,
    /// Who acted, when not the agent: an operator, a system, Handoff itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What a revocation or freeze named: `task:<id>`, `agent:<id>`, `token:<jti>`, `freeze:<system>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// What the gateway forwarded, for `use` records.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageRecord>,
    /// The approval a record is about, or that released the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The delegation a record is about, or that a delegate acted under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<String>,
    /// Where a piece of evidence came from and what it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceRecord>,
    /// A decision's record: what it saw beyond the request the record names, pinned so that
    /// `handoff audit replay` can decide it again exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_on: Option<DecidedOn>,
}

/// What a decision saw besides its record's request fields (`at`, system, actions, resource,
/// authorization details, the task, the delegation): where the task's facts stood, and the two
/// inputs of the policy context that the chain alone cannot give back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedOn {
    /// The task's facts as they stood after this many permitted exchanges of the task...
    pub exchanges: u64,
    /// ...and this many accepted pieces of its evidence (the facts change on nothing else, so
    /// these two numbers name one point of the task's history).
    pub evidence: u64,
    /// `context.request.lifetime_seconds`; none when containment refused before it was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_seconds: Option<u32>,
    /// `context.counters`: every declared counter's value (task and agent windows) before the
    /// request; none when containment refused before they were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<std::collections::BTreeMap<String, i64>>,
}

/// The provenance of a piece of evidence: which system, which key, when it was signed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    pub id: String,
    pub kind: String,
    /// `jwt` or `hmac`.
    pub signature: String,
    /// The key id (`kid`) for JWT-signed evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub signed_at: i64,
    pub fields: std::collections::BTreeMap<String, String>,
}

/// One forwarded call: what was called, how the upstream answered, how much and how long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// `POST /repos/{owner}/{repo}/pulls` for a route, `tool:NAME` for an MCP tool.
    pub call: String,
    /// The upstream's HTTP status (0 when it was not reached).
    pub status: u16,
    /// Request and response body bytes.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// From the call reaching the gateway to the end of the response, in microseconds.
    pub latency_us: u64,
}

/// A record as stored: its body is the exact bytes that were hashed. Serialized as is by
/// `GET /v1/admin/audit/chain`, and read back so by `handoff audit verify --server`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRecord {
    pub seq: u64,
    pub at: Timestamp,
    pub task: Option<String>,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Serialize, Deserialize)]
struct Body<'a> {
    seq: u64,
    at: Timestamp,
    prev: std::borrow::Cow<'a, str>,
    event: AuditEvent,
}

/// Seals `event` as record `seq` after the record whose hash is `prev_hash`.
pub fn seal(
    seq: u64,
    at: Timestamp,
    prev_hash: &str,
    event: AuditEvent,
) -> Result<SealedRecord, String> {
    let task = event.task.clone();
    let body = Body {
        seq,
        at,
        prev: prev_hash.into(),
        event,
    };
    let body = serde_json::to_string(&body).map_err(|e| e.to_string())?;
    let hash = link_hash(&body);
    Ok(SealedRecord {
        seq,
        at,
        task,
        body,
        prev_hash: prev_hash.to_owned(),
        hash,
    })
}

fn link_hash(body: &str) -> String {
    sha256_hex(body.as_bytes())
}

impl SealedRecord {
    /// The event inside the body.
    pub fn event(&self) -> Result<AuditEvent, String> {
        serde_json::from_str::<Body<'_>>(&self.body)
            .map(|b| b.event)
            .map_err(|e| e.to_string())
    }
}

/// Where and how the chain is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("record {seq} was altered: its hash does not match its contents")]
    Altered { seq: u64 },
    #[error("record {expected} is missing (the next stored record is {found})")]
    Missing { expected: u64, found: u64 },
    #[error("record {seq} is out of place: its contents say it is record {claims}")]
    Reordered { seq: u64, claims: u64 },
    #[error("record {seq} does not follow record {previous}: the link hash differs")]
    Unlinked { seq: u64, previous: u64 },
    #[error("record {seq} cannot be read: {reason}")]
    Unreadable { seq: u64, reason: String },
}

/// Walks records in stored order, checking each against the one before.
#[derive(Debug)]
pub struct ChainVerifier {
    next_seq: u64,
    prev_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS.to_owned(),
        }
    }
}

impl ChainVerifier {
    /// Checks the next record; the first break found is final.
    pub fn check(&mut self, record: &SealedRecord) -> Result<(), ChainBreak> {
        let seq = record.seq;
        if seq != self.next_seq {
            return Err(ChainBreak::Missing {
                expected: self.next_seq,
                found: seq,
            });
        }
        let body: Body<'_> =
            serde_json::from_str(&record.body).map_err(|e| ChainBreak::Unreadable {
                seq,
                reason: e.to_string(),
            })?;
        if link_hash(&record.body) != record.hash {
            return Err(ChainBreak::Altered { seq });
        }
        if body.seq != seq {
            return Err(ChainBreak::Reordered {
                seq,
                claims: body.seq,
            });
        }
        // The columns stored beside the body (read by `trace`) must say what the hashed body says.
        if body.at != record.at || body.event.task != record.task {
            return Err(ChainBreak::Altered { seq });
        }
        if body.prev != self.prev_hash || record.prev_hash != self.prev_hash {
            return Err(ChainBreak::Unlinked {
                seq,
                previous: seq.saturating_sub(1),
            });
        }
        self.next_seq = seq.saturating_add(1);
        self.prev_hash = record.hash.clone();
        Ok(())
    }

    /// How many records have been checked.
    pub fn checked(&self) -> u64 {
        self.next_seq.saturating_sub(1)
    }

    pub fn head(&self) -> &str {
        &self.prev_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<SealedRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let event = AuditEvent {
                    task: Some(format!("t{seq}")),
                    ..AuditEvent::default()
                };
                let record = seal(seq, Timestamp::from_millis(seq as i64), &prev, event).unwrap();
                prev = record.hash.clone();
                record
            })
            .collect()
    }

    fn verify(records: &[SealedRecord]) -> Result<(), ChainBreak> {
        let mut verifier = ChainVerifier::default();
        records.iter().try_for_each(|r| verifier.check(r))
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(()));
    }

    #[test]
    fn an_edited_body_is_named() {
        let mut records = chain(5);
        records[2].body = records[2].body.replace("t3", "tX");
        assert_eq!(verify(&records), Err(ChainBreak::Altered { seq: 3 }));
    }

    #[test]
    fn a_removed_record_is_named() {
        let mut records = chain(5);
        records.remove(1);
        assert_eq!(
            verify(&records),
            Err(ChainBreak::Missing {
                expected: 2,
                found: 3
            })
        );
    }

    #[test]
    fn swapped_records_are_named() {
        let mut records = chain(5);
        let (a, b) = (records[1].clone(), records[2].clone());
        records[1] = SealedRecord { seq: 2, ..b };
        records[2] = SealedRecord { seq: 3, ..a };
        assert_eq!(
            verify(&records),
            Err(ChainBreak::Reordered { seq: 2, claims: 3 })
        );
    }
}
