//! Separation of duties across delegation: nobody who acts in a task (its agent, a delegate at
//! any depth) approves its requests, nor a person named like one of them, nor the user it acts
//! for unless the system allows it; each refusal is recorded. A legitimate owner still can.

use crate::delegation::{delegate, reason};
use crate::gateway::wait_for_trace;
use crate::harness::{Server, example_config, temp_dir};
use serde_json::{Value, json};

const LARGE: &str =
    r#"[{"type":"payments","amount":250000,"currency":"EUR","creditor":"ACME GmbH"}]"#;
const OTHER: &str =
    r#"[{"type":"payments","amount":260000,"currency":"EUR","creditor":"ACME GmbH"}]"#;

/// A payments task of `payments-agent` (for `alice`), delegated to `pay-worker` and on to
/// `sub-worker`; the first delegate's large payment waits for approval.
struct Delegated {
    task: String,
    worker: String,
    child: String,
    /// The delegate's pending approval.
    approval: String,
    /// A pending approval of the agent's own request.
    agents_approval: String,
}

async fn delegated_payment(server: &Server) -> Delegated {
    let agent = server.identity("payments-agent");
    let (task, txn) = server.task(&agent, "payments", &["payments"]).await;
    let (status, first) = delegate(
        server,
        &agent,
        &txn,
        "pay-worker",
        &["payments:create"],
        None,
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let child = first["txn_token"].as_str().unwrap().to_owned();
    let worker = server.identity("pay-worker");
    let (status, second) = delegate(
        server,
        &worker,
        &child,
        "sub-worker",
        &["payments:create"],
        None,
    )
    .await;
    assert_eq!(status, 201, "{second}");
    let pending = |body: &Value| {
        assert_eq!(body["error"], "authorization_pending", "{body}");
        body["approval_id"].as_str().unwrap().to_owned()
    };
    let (_, body) = server
        .exchange(
            &worker,
            &child,
            "payments",
            "create",
            &[("authorization_details", LARGE)],
        )
        .await;
    let approval = pending(&body);
    let (_, body) = server
        .exchange(
            &agent,
            &txn,
            "payments",
            "create",
            &[("authorization_details", OTHER)],
        )
        .await;
    let agents_approval = pending(&body);
    Delegated {
        task,
        worker,
        child,
        approval,
        agents_approval,
    }
}

async fn approve(server: &Server, person: &str, approval: &str) -> (u16, Value) {
    let token = server.approver(person, &["payments-owners"]);
    server
        .approvals(
            &token,
            "POST",
            &format!("/{approval}/approve"),
            Some(json!({ "reason": "looks fine" })),
        )
        .await
}

#[tokio::test]
async fn nobody_acting_in_the_task_nor_named_like_an_actor_nor_its_user_approves_a_delegates_request()
 {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let d = delegated_payment(&server).await;

    // The task's agent, the delegate itself, a delegate one level further down, the same names
    // in another case, and the user the task acts for: all refused with one stable code.
    for person in [
        "payments-agent",
        "pay-worker",
        "sub-worker",
        "Pay-Worker",
        "alice",
    ] {
        let (status, body) = approve(&server, person, &d.approval).await;
        assert_eq!(
            (status, reason(&body)),
            (403, "separation_of_duties"),
            "{person}: {body}"
        );
    }
    // A person named like a delegate cannot approve the agent's own request either.
    let (status, body) = approve(&server, "pay-worker", &d.agents_approval).await;
    assert_eq!(
        (status, reason(&body)),
        (403, "separation_of_duties"),
        "{body}"
    );

    // Each refusal is on the audit chain, with who tried.
    let trace = wait_for_trace(&server, &d.task, "separation_of_duties").await;
    assert!(trace.contains("pay-worker"), "{trace}");

    // A legitimate owner approves, and the delegate releases exactly that request.
    let (status, body) = approve(&server, "olivia", &d.approval).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .exchange(
            &d.worker,
            &d.child,
            "payments",
            "create",
            &[
                ("authorization_details", LARGE),
                ("approval_id", &d.approval),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_user_approves_a_delegates_request_only_where_the_system_allows_it() {
    let dir = temp_dir();
    let config = example_config(dir.path(), |text| {
        text.replace(
            "[systems.payments.details]",
            "user_may_approve = true\n\n[systems.payments.details]",
        )
    });
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let d = delegated_payment(&server).await;
    // Actors stay refused...
    let (status, body) = approve(&server, "payments-agent", &d.approval).await;
    assert_eq!(
        (status, reason(&body)),
        (403, "separation_of_duties"),
        "{body}"
    );
    // ...while the user, now allowed, approves.
    let (status, body) = approve(&server, "alice", &d.approval).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved", "{body}");
}
