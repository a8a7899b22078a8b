//! `approval_hash`: authorization details (any JSON) through the canonicalization and hash an
//! approval is bound to.

use handoff_core::approval::{canonical_json, request_hash};
use handoff_core::ids::{SystemId, TaskId};
use serde_json::Value;

/// Canonical JSON is deterministic and is JSON that parses back to the same value (floats within
/// two ULPs: see [`same`]); the request hash ignores the order of actions and covers the details
/// (other than `null`).
pub fn approval_hash(data: &[u8]) {
    let Ok(details) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let canonical = canonical_json(&details);
    assert_eq!(
        canonical,
        canonical_json(&details),
        "canonical JSON is not deterministic"
    );
    let reparsed: Value = serde_json::from_str(&canonical).expect("canonical JSON parses");
    assert!(
        same(&reparsed, &details),
        "canonical JSON reads back as another value"
    );

    let (task, system) = (TaskId::new("task-1"), SystemId::new("payments"));
    let actions = ["payments:refund".to_owned(), "payments:pay".to_owned()];
    let reversed = ["payments:pay".to_owned(), "payments:refund".to_owned()];
    let hash = request_hash(&task, &system, &actions, Some("r"), Some(&details));
    assert_eq!(
        hash,
        request_hash(&task, &system, &reversed, Some("r"), Some(&details))
    );
    assert_eq!(hash.len(), 64);
    // `null` details are no details: the exchange treats both alike, and so does the hash.
    if !details.is_null() {
        assert_ne!(
            hash,
            request_hash(&task, &system, &actions, Some("r"), None)
        );
    }
}

/// Equal values, except that floats may differ in their last bits. FINDING (docs/fuzzing.md):
/// serde_json without its `float_roundtrip` feature does not parse every float to the nearest
/// double, so a float's canonical text can read back one or two ULPs away
/// (`fuzz/regressions/approval_hash/float-roundtrip`). Exact equality holds once that feature is on.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x != y => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_sign_negative() == y.is_sign_negative() => {
                x.to_bits().abs_diff(y.to_bits()) <= 2
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
