//! `json_body`: the JSON request bodies of the HTTP API, each read by its route's parser. The
//! first byte picks the body type (`b % 6`: open task, delegate, revoke, freeze, credential,
//! approval reason); the rest is the body.

use handoff_server::fuzzing::{JsonBody, json_request};

/// Parsing never panics and is deterministic.
pub fn json_body(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let kinds = JsonBody::ALL;
    let Some(&kind) = kinds.get(usize::from(pick) % kinds.len()) else {
        return;
    };
    let once = json_request(kind, body).map_err(|e| e.to_string());
    let twice = json_request(kind, body).map_err(|e| e.to_string());
    assert_eq!(once, twice, "parsing {kind:?} is not deterministic");
}
