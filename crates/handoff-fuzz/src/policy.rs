//! `policy_load`: Cedar text as one more policy file of the example deployment, through Handoff's
//! policy loader (parse, annotations, validation against the deployment's schema).

use crate::fixtures::deployment;
use handoff_core::policy::PolicyEngine;

/// Loading never panics, a refusal names a problem, and a policy set that loads hashes the same
/// every time it is loaded.
pub fn policy_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = &deployment().config;
    let files = [("policies/fuzz.cedar".to_owned(), text.to_owned())];
    match PolicyEngine::load(config, &files) {
        Ok(engine) => {
            let again = PolicyEngine::load(config, &files).expect("a policy set that loaded loads");
            assert_eq!(
                engine.hash(),
                again.hash(),
                "policy set hash is not deterministic"
            );
        }
        Err(problems) => assert!(!problems.is_empty(), "a refusal without a problem"),
    }
}
