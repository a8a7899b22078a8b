//! A revocation or freeze that commits between a request's checks and its write wins: the
//! re-checks inside the write's transaction refuse the grant, and nothing is handed out.
//! The kit's store slips the revocation in just before the request's own write.

use crate::harness::Harness;
use handoff_core::audit::{AuditEvent, EventKind};
use handoff_core::containment::{Revocation, RevocationKind};
use handoff_core::store::{Effect, TaskWrite, Write};
use serde_json::json;

/// A revocation written straight to the store, as another node or the CLI would.
fn revocation(harness: &Harness, kind: RevocationKind, subject: &str) -> Write {
    let mut write = Write::new(
        harness.kit.handoff.now(),
        AuditEvent {
            kind: Some(EventKind::Revoke),
            ..AuditEvent::default()
        },
        TaskWrite::None,
    );
    write.effects.push(Effect::Revoke(Revocation {
        kind,
        subject: subject.to_owned(),
        reason: "raced".to_owned(),
        actor: "operator".to_owned(),
    }));
    write
}

#[tokio::test]
async fn an_exchange_that_raced_a_freeze_of_its_system_is_refused() {
    let harness = Harness::example();
    let agent = harness.identity("release-bot");
    let (_, txn) = harness.task(&agent, "release", &["ci"]).await;
    harness
        .kit
        .store
        .race_next_write(revocation(&harness, RevocationKind::Freeze, "ci"));
    let answer = harness.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(answer.code(), (403, "access_denied"), "{}", answer.body);
    assert_eq!(answer.body["reason"], "system_frozen", "{}", answer.body);
    assert!(answer.body.get("access_token").is_none());
    assert!(
        harness
            .kit
            .store
            .inner()
            .is_frozen(&handoff_core::ids::SystemId::new("ci"))
            .await
            .unwrap(),
        "the freeze did land first"
    );
}

#[tokio::test]
async fn a_task_opened_for_an_agent_revoked_meanwhile_is_refused() {
    let harness = Harness::example();
    let agent = harness.identity("release-bot");
    harness
        .kit
        .store
        .race_next_write(revocation(&harness, RevocationKind::Agent, "release-bot"));
    let answer = harness
        .open_task(
            &agent,
            json!({ "intent": "ship", "purpose": "release", "user": "alice", "plan": ["ci"] }),
        )
        .await;
    assert_eq!(answer.code(), (403, "access_denied"), "{}", answer.body);
    assert_eq!(answer.body["reason"], "agent_revoked", "{}", answer.body);
    assert!(answer.body.get("txn_token").is_none());
}

#[tokio::test]
async fn an_exchange_that_raced_its_agents_revocation_is_decided_again_and_refused() {
    let harness = Harness::example();
    let agent = harness.identity("release-bot");
    let (_, txn) = harness.task(&agent, "release", &["ci"]).await;
    harness
        .kit
        .store
        .race_next_write(revocation(&harness, RevocationKind::Agent, "release-bot"));
    let answer = harness.exchange(&agent, &txn, "ci", "run_tests", &[]).await;
    assert_eq!(answer.code(), (403, "access_denied"), "{}", answer.body);
    assert_eq!(answer.body["reason"], "task_revoked", "{}", answer.body);
    assert!(answer.body.get("access_token").is_none());
}
