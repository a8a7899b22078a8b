//! `audit_record`: stored audit records, decoded as the store's readers decode them
//! ([`SealedRecord::event`]) and walked by the chain verifier `handoff audit verify` runs. Each
//! line of the input is one record's body; the columns stored beside it are derived from it (so
//! the verifier gets past the hash check) unless the line starts with `!`, whose columns are
//! taken as they come.

use handoff_core::audit::{ChainVerifier, GENESIS, SealedRecord, seal};
use handoff_core::hash::sha256_hex;
use handoff_core::time::Timestamp;

const MAX_RECORDS: usize = 32;

/// Verification never panics; a record the verifier accepts decodes; the events decoded, sealed
/// again into a fresh chain, verify end to end.
pub fn audit_record(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut verifier = ChainVerifier::default();
    let mut prev = GENESIS.to_owned();
    let mut events = Vec::new();
    for (i, line) in text.split('\n').take(MAX_RECORDS).enumerate() {
        let seq = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
        let record = match line.strip_prefix('!') {
            Some(raw) => SealedRecord {
                seq,
                at: Timestamp::from_millis(0),
                task: None,
                body: raw.to_owned(),
                prev_hash: prev.clone(),
                hash: sha256_hex(raw.as_bytes()),
            },
            None => derived(seq, line, &prev),
        };
        let decoded = record.event();
        if let Ok(event) = &decoded {
            events.push((record.at, event.clone()));
        }
        if verifier.check(&record).is_ok() {
            assert!(decoded.is_ok(), "record {seq} verified but does not decode");
            assert_eq!(verifier.checked(), seq);
            assert_eq!(verifier.head(), record.hash);
        }
        prev = record.hash;
    }
    let mut fresh = ChainVerifier::default();
    let mut prev = GENESIS.to_owned();
    for (seq, (at, event)) in (1..).zip(events) {
        let record = seal(seq, at, &prev, event).expect("a decoded event seals");
        assert_eq!(
            fresh.check(&record),
            Ok(()),
            "a re-sealed record {seq} does not verify"
        );
        prev = record.hash;
    }
}

/// The record a store would hold for `body`: its `at` and `task` columns read from the body.
fn derived(seq: u64, body: &str, prev: &str) -> SealedRecord {
    let value: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |path: &str| value.as_ref().and_then(|v| v.pointer(path));
    SealedRecord {
        seq,
        at: Timestamp::from_millis(
            field("/at")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0),
        ),
        task: field("/event/task")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        body: body.to_owned(),
        prev_hash: prev.to_owned(),
        hash: sha256_hex(body.as_bytes()),
    }
}
