//! `handoff-bench`: drives a running Handoff server over HTTP and prints one markdown row per run.

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = handoff_bench::Args::parse();
    match handoff_bench::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("handoff-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
