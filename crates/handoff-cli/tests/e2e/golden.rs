//! Golden files for CLI output that scripts and operators read: `handoff check` on the bundled
//! example, and `handoff audit verify` on an intact and on a tampered chain. What must vary (the
//! policy set's content hash, the chain head) is redacted; any other drift fails the test.

use crate::harness::{cli, stderr, stdout, temp_dir};
use rusqlite::Connection;

/// Replaces the word after each of `markers` (up to a space, `)` or line end) with `[redacted]`.
fn redact(text: &str, markers: &[&str]) -> String {
    let mut out = text.to_owned();
    for marker in markers {
        let mut from = 0;
        while let Some(at) = out[from..].find(marker) {
            let start = from + at + marker.len();
            let end = out[start..]
                .find([' ', ')', '\n'])
                .map_or(out.len(), |n| start + n);
            out.replace_range(start..end, "[redacted]");
            from = start + "[redacted]".len();
        }
    }
    out
}

#[test]
fn handoff_check_on_the_bundled_example_prints_the_golden_summary() {
    let output = cli(&["check"]);
    assert!(output.status.success(), "{}", stderr(&output));
    insta::assert_snapshot!(
        "check_bundled_example",
        redact(&stdout(&output), &["(set "])
    );
}

/// Three records written by the CLI's one-shot commands (freeze, unfreeze, freeze).
fn three_records(data_dir: &str) {
    // Only `serve` creates a store; it writes no record itself.
    crate::harness::Server::start(std::path::Path::new(data_dir)).stop();
    for args in [
        ["freeze", "payments", "--reason", "incident 7"],
        ["unfreeze", "payments", "--reason", "resolved"],
        ["freeze", "crm", "--reason", "audit"],
    ] {
        let mut all = args.to_vec();
        all.extend(["--data-dir", data_dir]);
        let output = cli(&all);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn audit_verify_on_an_intact_chain_prints_the_golden_line() {
    let dir = temp_dir();
    let data_dir = dir.path().to_str().unwrap();
    three_records(data_dir);
    let output = cli(&["audit", "verify", "--data-dir", data_dir]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    insta::assert_snapshot!("audit_verify_intact", redact(&stdout(&output), &["head "]));
}

#[test]
fn audit_verify_on_an_edited_record_prints_the_golden_break_and_exits_65() {
    let dir = temp_dir();
    let data_dir = dir.path().to_str().unwrap();
    three_records(data_dir);
    let db = Connection::open(dir.path().join("handoff.db")).unwrap();
    db.execute(
        "UPDATE audit SET body = replace(body, 'incident 7', 'incident 8') WHERE seq = 1",
        [],
    )
    .unwrap();
    let output = cli(&["audit", "verify", "--data-dir", data_dir]);
    assert_eq!(
        output.status.code(),
        Some(handoff_cli::EXIT_AUDIT_BROKEN.into())
    );
    insta::assert_snapshot!(
        "audit_verify_edited",
        format!("stdout:\n{}stderr:\n{}", stdout(&output), stderr(&output))
    );
}
