//! `config_load`: TOML text as `handoff.toml`, through the loader `handoff check` runs (config,
//! then the example's policy folder and files, read from memory).

use handoff_cli::deployment::BundledReader;
use handoff_core::config::{Problems, load_deployment};

/// Loading never panics; a refused config names at least one problem, each in a known file and
/// (when it has one) on a line the text has.
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let reader = BundledReader::with_config(text);
    if let Err(Problems(problems)) = load_deployment(&reader, "handoff.toml") {
        assert!(!problems.is_empty(), "a refusal without a problem");
        let lines = text.lines().count().max(1) + 1;
        for problem in &problems {
            if problem.file == "handoff.toml"
                && let Some(line) = problem.line
            {
                assert!(
                    (1..=lines).contains(&line),
                    "problem on line {line} of {lines}: {problem}"
                );
            }
        }
    }
}
