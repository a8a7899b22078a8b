//! Incident queries: `GET /v1/audit/records` and `handoff audit query` return exactly the records
//! matching every filter, across pages, checked against the whole log exported and filtered here.

use crate::harness::{Server, cli, stdout, temp_dir, whole_log};
use serde_json::{Value, json};

/// Two agents, two tasks, two systems, permits and denies.
async fn history(server: &Server) -> (String, String) {
    let mut tasks = Vec::new();
    for (agent, user) in [("release-bot", "alice"), ("other-bot", "bob")] {
        let identity = server.identity(agent);
        let (status, body) = server
            .open_task(
                &identity,
                json!({ "intent": "ship", "purpose": "release", "user": user, "plan": ["ci", "git"] }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let txn = body["txn_token"].as_str().unwrap().to_owned();
        for (system, action) in [
            ("ci", "deploy"),
            ("ci", "run_tests"),
            ("git", "read"),
            ("git", "push"),
            ("ci", "deploy"),
        ] {
            server.exchange(&identity, &txn, system, action, &[]).await;
        }
        tasks.push(body["task_id"].as_str().unwrap().to_owned());
    }
    (tasks[0].clone(), tasks[1].clone())
}

/// Every page of `GET /v1/audit/records?QUERY&limit=2`, followed by its cursor.
async fn pages(server: &Server, query: &str) -> Vec<u64> {
    let mut found = Vec::new();
    let mut after = 0;
    for _ in 0..100 {
        let response = server
            .client
            .get(format!(
                "{}/v1/audit/records?{query}&limit=2&after={after}",
                server.base
            ))
            .bearer_auth(server.operator_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{query}");
        let page: Value = response.json().await.unwrap();
        let records = page["records"].as_array().unwrap();
        assert!(records.len() <= 2, "{page}");
        found.extend(records.iter().map(|r| r["seq"].as_u64().unwrap()));
        match page["next"].as_u64() {
            Some(next) => after = next,
            None => return found,
        }
    }
    panic!("the cursor never reached the end for {query}");
}

fn text(event: &Value, field: &str) -> Option<String> {
    event[field].as_str().map(str::to_owned)
}

fn has(event: &Value, field: &str, want: &str) -> bool {
    event[field]
        .as_array()
        .is_some_and(|items| items.iter().any(|i| i.as_str() == Some(want)))
}

#[tokio::test]
async fn queries_return_exactly_the_matching_records_across_pages() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let (first, second) = history(&server).await;
    let log = whole_log(&server);
    assert_eq!(log.len(), 12);
    let window = (log[2].1, log[8].1);
    let expect = |keep: &dyn Fn(i64, &Value) -> bool| -> Vec<u64> {
        log.iter()
            .filter(|(_, at, event)| keep(*at, event))
            .map(|(seq, _, _)| *seq)
            .collect()
    };
    let is = |event: &Value, field: &str, want: &str| text(event, field).as_deref() == Some(want);
    let cases: Vec<(String, Vec<u64>)> = vec![
        (
            "agent=release-bot&system=ci".to_owned(),
            expect(&|_, e| is(e, "agent", "release-bot") && is(e, "system", "ci")),
        ),
        ("user=bob".to_owned(), expect(&|_, e| is(e, "user", "bob"))),
        (
            "decision=deny".to_owned(),
            expect(&|_, e| is(e, "outcome", "deny")),
        ),
        (
            "decision=deny&reason=no_permit".to_owned(),
            expect(&|_, e| is(e, "outcome", "deny") && is(e, "reason", "no_permit")),
        ),
        (
            "policy=ci-run-tests".to_owned(),
            expect(&|_, e| has(e, "policies", "ci-run-tests")),
        ),
        (
            "action=push".to_owned(),
            expect(&|_, e| has(e, "actions", "git:push")),
        ),
        (
            "action=ci:run_tests&decision=permit".to_owned(),
            expect(&|_, e| has(e, "actions", "ci:run_tests") && is(e, "outcome", "permit")),
        ),
        (
            format!("task={second}"),
            expect(&|_, e| is(e, "task", &second)),
        ),
        (
            format!("task={first}&system=git"),
            expect(&|_, e| is(e, "task", &first) && is(e, "system", "git")),
        ),
        (
            format!("since={}&until={}", window.0, window.1),
            expect(&|at, _| at >= window.0 && at < window.1),
        ),
        ("agent=nobody".to_owned(), Vec::new()),
    ];
    for (query, expected) in &cases {
        assert!(
            query == "agent=nobody" || !expected.is_empty(),
            "{query} must match something"
        );
        assert_eq!(&pages(&server, query).await, expected, "{query}");
    }

    // The CLI answers the same from the data directory.
    let output = cli(&[
        "audit",
        "query",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
        "--agent",
        "release-bot",
        "--system",
        "ci",
        "--json",
    ]);
    assert!(output.status.success());
    let seqs: Vec<u64> = stdout(&output)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, cases[0].1);
}

#[tokio::test]
async fn queries_are_for_operators_and_bounded() {
    let dir = temp_dir();
    let server = Server::start(dir.path());
    let get = |query: &str, operator: bool| {
        let mut request = server
            .client
            .get(format!("{}/v1/audit/records?{query}", server.base));
        if operator {
            request = request.bearer_auth(server.operator_secret());
        }
        request.send()
    };
    assert_eq!(get("", false).await.unwrap().status().as_u16(), 401);
    for bad in [
        "limit=0",
        "limit=501",
        "decision=maybe",
        "since=yesterday",
        "colour=red",
    ] {
        let response = get(bad, true).await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{bad}");
    }
    let response = get("limit=500", true).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["next"], Value::Null, "{page}");
}
