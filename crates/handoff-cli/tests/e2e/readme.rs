//! README.md's shell blocks run as written, in order, in one bash, against a fresh
//! `handoff serve` started the way the README says (in the folder the blocks run in, default
//! data directory and config), with the built binary first on the PATH, in a temporary copy of
//! what the blocks need (`examples/`, `scripts/`).
//!
//! A block is left out only when the line before its fence is the visible marker
//! `<!-- readme-runner: skip (why) -->`; the test keeps that set to the two blocks that install
//! the binary or start the server (which this test does itself). The server listens on a free
//! port, so the runner points the blocks' `localhost:8080` at it (the blocks name the server
//! wherever they talk to it, `--server http://localhost:8080` for the CLI); nothing else in a
//! block is changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const SKIP: &str = "<!-- readme-runner: skip (";
/// The set of blocks the runner may leave out; a new marker fails the test until it is justified
/// here.
const SKIPPED: usize = 2;
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README's ```sh / ```bash blocks, in order: (first line number, text, skipped).
fn blocks(readme: &str) -> Vec<(usize, String, bool)> {
    let mut blocks = Vec::new();
    let mut previous = "";
    let mut open: Option<(usize, String, bool)> = None;
    for (number, line) in readme.lines().enumerate() {
        match &mut open {
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(open.take()),
            Some((_, text, _)) => {
                text.push_str(line);
                text.push('\n');
            }
            None if matches!(line.trim(), "```sh" | "```bash") => {
                open = Some((number + 2, String::new(), previous.starts_with(SKIP)));
            }
            None => {}
        }
        if !line.trim().is_empty() {
            previous = line.trim();
        }
    }
    blocks
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The blocks as one bash script: stops at the first failing command or unset variable and
/// names the README line of the block it was in.
fn script(readme: &str, address: &str) -> String {
    let mut script = String::from(
        "set -euo pipefail\n\
         trap 'echo \"README block at line $BLOCK failed: $BASH_COMMAND\" >&2' ERR\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n",
    );
    let mut skipped = 0;
    for (line, text, skip) in blocks(readme) {
        if skip {
            skipped += 1;
            continue;
        }
        script.push_str(&format!("BLOCK={line}\n"));
        script.push_str(&text.replace("localhost:8080", address));
        script.push_str(&format!("echo \"== README block at line {line} ran\"\n"));
    }
    assert_eq!(skipped, SKIPPED, "a new skip marker in README.md");
    script.push_str("echo '== every README block ran'\n");
    script
}

#[test]
fn every_shell_block_in_the_readme_runs_in_order_against_a_fresh_server() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        blocks(&readme).len() >= 8,
        "the README's blocks were not found"
    );
    let dir = crate::harness::temp_dir();
    for folder in ["examples", "scripts"] {
        copy_dir(&repo().join(folder), &dir.path().join(folder));
    }
    let bin = Path::new(crate::harness::binary()).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // `handoff serve` as the README's first block says, in the folder the blocks run in.
    let mut serve = Command::new(crate::harness::binary());
    serve
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = KillOnDrop(serve.spawn().expect("handoff serve starts"));
    let first = crate::bounded::first_line(&mut server.0, crate::bounded::START_TIMEOUT)
        .unwrap_or_else(|hung| panic!("handoff serve: {hung}"));
    let base = first
        .trim()
        .strip_prefix("handoff listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();
    let address = base.trim_start_matches("http://").to_owned();

    let script_file = dir.path().join("readme-blocks.sh");
    std::fs::write(&script_file, script(&readme, &address)).unwrap();
    let mut bash = Command::new("bash");
    bash.arg(&script_file)
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("HANDOFF_SERVER")
        .env_remove("HANDOFF_TOKEN")
        .env_remove("HANDOFF_OPERATOR_TOKEN");
    let output = crate::bounded::output(bash, RUN_TIMEOUT)
        .unwrap_or_else(|hung| panic!("the README's blocks: {hung}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("== every README block ran"),
        "a README block failed:\n{stdout}\n{stderr}"
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
