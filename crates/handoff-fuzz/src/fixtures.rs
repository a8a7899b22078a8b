//! What the targets verify and load against: a fixed signing key and the bundled example
//! deployment (the binary's own compiled-in copy, `handoff_cli::deployment::BundledReader`). Built once per process.

use handoff_cli::deployment::BundledReader;
use handoff_core::config::{Deployment, SigningAlgorithm, load_deployment};
use handoff_core::keys::{KeyRing, SigningKey};
use handoff_core::token::{
    ACCESS_TOKEN_TYP, AccessClaims, Actor, TXN_TOKEN_TYP, TaskContext, TxnClaims,
};
use serde_json::json;
use std::sync::OnceLock;

/// The time every target verifies at (2027-01-15), so committed seed tokens stay valid.
pub const NOW: i64 = 1_800_000_000;

/// A P-256 PKCS#8 key made for fuzzing only; it signs the seed tokens.
const FUZZ_KEY: &[u8] = include_bytes!("fuzz-signing-key.pk8");

pub(crate) fn keys() -> &'static KeyRing {
    static KEYS: OnceLock<KeyRing> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = SigningKey::from_pkcs8(SigningAlgorithm::Es256, FUZZ_KEY).expect("the fuzz key");
        KeyRing::new(key, Vec::new())
    })
}

pub(crate) fn deployment() -> &'static Deployment {
    static DEPLOYMENT: OnceLock<Deployment> = OnceLock::new();
    DEPLOYMENT.get_or_init(|| {
        load_deployment(&BundledReader::new(), "handoff.toml").expect("the bundled example loads")
    })
}

/// Handoff's issuer name in the example (its trust domain).
pub(crate) fn issuer() -> &'static str {
    &deployment().config.trust_domain
}

/// Valid tokens for the token target's corpus, as (file name, token): an access token, a
/// Transaction Token, a delegate's Transaction Token, an agent identity and an approver's token
/// from the development issuer, all signed with the fuzz key and valid at [`NOW`].
pub fn seed_tokens() -> Vec<(&'static str, String)> {
    let keys = keys().active();
    let config = &deployment().config;
    let (iat, exp) = (NOW - 60, NOW + 240);
    let access = AccessClaims {
        iss: issuer().to_owned(),
        aud: "https://git.internal".to_owned(),
        sub: "alice".to_owned(),
        client_id: "release-bot".to_owned(),
        scope: "git:push git:open_pr".to_owned(),
        act: Actor {
            sub: "release-bot".to_owned(),
            iss: Some(config.dev_issuer_name()),
            act: None,
        },
        txn: "task-1".to_owned(),
        jti: "tok-1".to_owned(),
        iat,
        exp,
        resource: Some("repo:acme/web".to_owned()),
        authorization_details: Some(json!([{"type": "payment", "amount": 5, "currency": "EUR"}])),
        del: None,
    };
    let txn = TxnClaims {
        iss: issuer().to_owned(),
        aud: issuer().to_owned(),
        iat,
        exp,
        txn: "task-1".to_owned(),
        sub: "alice".to_owned(),
        scope: "release".to_owned(),
        req_wl: "release-bot".to_owned(),
        tctx: TaskContext {
            intent: "ship 1.2".to_owned(),
            purpose: "release".to_owned(),
            plan: vec!["git:push".to_owned()],
            parent: None,
            delegation: None,
            actions: None,
        },
        act: None,
    };
    let mut delegated = txn.clone();
    delegated.req_wl = "test-runner".to_owned();
    delegated.tctx.parent = Some("task-1".to_owned());
    delegated.tctx.delegation = Some("del-1".to_owned());
    delegated.tctx.actions = Some(vec!["ci:run".to_owned()]);
    delegated.act = Some(Actor {
        sub: "test-runner".to_owned(),
        iss: None,
        act: Some(Box::new(Actor {
            sub: "release-bot".to_owned(),
            iss: None,
            act: None,
        })),
    });
    let identity = json!({
        "iss": config.dev_issuer_name(), "aud": config.trust_domain, "sub": "release-bot",
        "iat": iat, "exp": exp, "nbf": iat,
    });
    let approver = json!({
        "iss": config.dev_issuer_name(),
        "aud": handoff_core::identity::approvals_audience(config),
        "sub": "bob", "groups": ["release-managers"], "iat": iat, "exp": exp,
    });
    let sign = |typ: &str, claims: serde_json::Value| {
        keys.sign_jwt(typ, &claims).expect("a seed token signs")
    };
    let value = |claims: serde_json::Result<serde_json::Value>| claims.expect("claims serialize");
    vec![
        (
            "access",
            sign(ACCESS_TOKEN_TYP, value(serde_json::to_value(&access))),
        ),
        (
            "txn",
            sign(TXN_TOKEN_TYP, value(serde_json::to_value(&txn))),
        ),
        (
            "txn-delegated",
            sign(TXN_TOKEN_TYP, value(serde_json::to_value(&delegated))),
        ),
        ("identity", sign("JWT", identity)),
        ("approver", sign("JWT", approver)),
    ]
}
