//! `token_verify`: a compact JWS through every verifier Handoff has (its own access and
//! Transaction Tokens, agent identities, approvers' tokens) and the NumericDate reader.

use crate::fixtures::{NOW, deployment, issuer, keys};
use handoff_core::identity::IdentityVerifier;
use handoff_core::time::Timestamp;
use handoff_core::token::{
    ACCESS_TOKEN_TYP, AccessClaims, Leeway, MAX_NUMERIC_DATE, NumericDate, TXN_TOKEN_TYP,
    TokenTimes, Unverified, peek_claims, verify_access_token, verify_txn_token,
};

/// A token that verifies re-encodes (signed again) to a token that verifies to the same claims;
/// one that verifies at [`NOW`] also verifies with expiry unchecked; a parsed NumericDate is in
/// range with `floor <= ceil <= floor + 1`; time checks never overflow.
pub fn token_verify(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let token = Unverified::new(text);
    let keys = keys();
    let signer = keys.active();

    let unexpired = verify_access_token(keys, issuer(), token, Some(NOW));
    let any_time = verify_access_token(keys, issuer(), token, None);
    if let Ok(claims) = &unexpired {
        assert_eq!(
            any_time.as_ref().ok(),
            Some(claims),
            "unexpired but not valid"
        );
    }
    if let Ok(claims) = any_time {
        let again = signer
            .sign_jwt(ACCESS_TOKEN_TYP, &claims)
            .expect("verified claims re-encode");
        assert_eq!(
            verify_access_token(keys, issuer(), Unverified::new(&again), None).as_ref(),
            Ok(&claims),
            "re-encoded access token"
        );
        if let Ok(peeked) = peek_claims::<AccessClaims>(token) {
            assert_eq!(peeked, claims, "peeked and verified claims differ");
        }
    }

    if let Ok(txn) = verify_txn_token(keys, issuer(), issuer(), token, NOW) {
        let claims = txn.claims();
        assert_eq!(txn.task().as_str(), claims.txn);
        assert_eq!(txn.agent().as_str(), claims.req_wl);
        let again = signer
            .sign_jwt(TXN_TOKEN_TYP, claims)
            .expect("verified claims re-encode");
        let reverified = verify_txn_token(keys, issuer(), issuer(), Unverified::new(&again), NOW)
            .expect("a re-encoded Transaction Token verifies");
        assert_eq!(reverified.claims(), claims, "re-encoded Transaction Token");
    }

    let config = &deployment().config;
    let now = Timestamp::from_seconds(NOW);
    if let Ok(identity) = IdentityVerifier::new(config, Some(signer)).verify(token, now) {
        assert_eq!(identity.issuer(), config.dev_issuer_name());
        assert!(
            !identity.agent().as_str().is_empty(),
            "an identity names an agent"
        );
    }
    if let Ok(person) =
        IdentityVerifier::for_approvers(config, Some(signer)).verify_person(token, now)
    {
        assert!(!person.user().is_empty(), "a person's token names them");
    }

    if let Ok(claims) = peek_claims::<serde_json::Value>(token) {
        numeric_dates(&claims);
    }
}

fn numeric_dates(claims: &serde_json::Value) {
    for name in ["exp", "nbf", "iat"] {
        if let Some(date) = claims.get(name).and_then(NumericDate::from_json) {
            assert!(
                (0..=MAX_NUMERIC_DATE).contains(&date.floor()),
                "{name} out of range"
            );
            assert!(date.floor() <= date.ceil() && date.ceil() <= date.floor() + 1);
        }
    }
    let Ok(times) = TokenTimes::from_claims(claims) else {
        return;
    };
    for leeway in [
        Leeway::NONE,
        Leeway {
            expiry: i64::MAX,
            issued_at: i64::MAX,
        },
        Leeway {
            expiry: i64::MIN,
            issued_at: i64::MIN,
        },
    ] {
        for now in [i64::MIN, 0, NOW, i64::MAX] {
            let started = times.check_started(now, leeway);
            if times.check(now, leeway).is_ok() {
                assert_eq!(started, Ok(()), "valid but not started");
            }
        }
    }
}

/// Whether `token`, a seed named `name` by [`crate::seed_tokens`], verifies as its kind at [`NOW`].
pub fn token_seed_verifies(name: &str, token: &str) -> bool {
    let (keys, token) = (keys(), Unverified::new(token));
    let config = &deployment().config;
    let now = Timestamp::from_seconds(NOW);
    match name {
        "access" => verify_access_token(keys, issuer(), token, Some(NOW)).is_ok(),
        "txn" | "txn-delegated" => verify_txn_token(keys, issuer(), issuer(), token, NOW).is_ok(),
        "identity" => IdentityVerifier::new(config, Some(keys.active()))
            .verify(token, now)
            .is_ok(),
        "approver" => IdentityVerifier::for_approvers(config, Some(keys.active()))
            .verify_person(token, now)
            .is_ok(),
        _ => false,
    }
}
