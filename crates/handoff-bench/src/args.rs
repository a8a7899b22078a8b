//! Command-line options.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Each agent sends its next request as soon as the last one is answered: finds the maximum.
    Closed,
    /// Requests on a fixed timetable (`--rate`); latency is measured from the intended send time,
    /// so a slow answer that delays later requests is counted against them too.
    Open,
}

/// Drives a running Handoff server over keep-alive HTTP with N concurrent agents.
#[derive(Debug, Parser)]
#[command(name = "handoff-bench", version)]
pub struct Args {
    /// The server's base URL (plain HTTP).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: Mode,
    /// Measured time (`20s`, `500ms`, `1m`); `0s` skips the run (with `--tasks`: only pre-open).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before the measured window.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Concurrent agents, each with its own identity, tasks and keep-alive connection.
    #[arg(long, default_value_t = 32)]
    pub agents: usize,
    /// Open loop: requests per second, over all agents.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Measure the HTTP floor: `GET /healthz` (no verification, policy, signing or audit).
    #[arg(long)]
    pub floor: bool,
    /// With `--floor`: the path to request instead of `/healthz` (e.g. a gateway route).
    #[arg(long, default_value = "/healthz")]
    pub floor_path: String,
    /// With `--floor`: a bearer token to send (e.g. an access token for a gateway route).
    #[arg(long)]
    pub floor_bearer: Option<String>,
    /// With `--floor`: POST this file's bytes as JSON instead of a GET (a peer's own request, such
    /// as a Cerbos decision or an OpenBao token create, measured by the same client).
    #[arg(long, value_name = "FILE")]
    pub floor_body: Option<PathBuf>,
    /// With `--floor`: a header to send, as `Name: value` (repeatable).
    #[arg(long, value_name = "HEADER")]
    pub floor_header: Vec<String>,
    /// Serve a trivial upstream on this address instead of running a load (`200 {"ok":true}` to
    /// any request): the target of gateway benchmarks, direct and through the gateway.
    #[arg(long, value_name = "ADDR")]
    pub serve_upstream: Option<String>,
    /// The server's process id: its CPU time and memory are read from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The `handoff` binary, to issue each agent a development identity.
    #[arg(long, default_value = "handoff")]
    pub handoff_bin: PathBuf,
    /// The server's data directory (where the dev issuer key is).
    #[arg(long, default_value = ".handoff")]
    pub data_dir: PathBuf,
    /// Exchanges per task before the agent opens a fresh one.
    #[arg(long, default_value_t = 20)]
    pub exchanges_per_task: u32,
    /// Open this many tasks first (spread over the agents) and report the server's memory after.
    #[arg(long, default_value_t = 0)]
    pub tasks: u64,
    /// Client runtime worker threads (the client shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Abuse the server instead of loading it: slow heads, slow bodies, then a flood of malformed
    /// requests, each for `--duration`, reporting the server's memory (needs `--server-pid`).
    #[arg(long)]
    pub abuse: bool,
    /// With `--abuse`: connections held open by the slow-head and slow-body phases.
    #[arg(long, default_value_t = 1000)]
    pub slow_connections: usize,
    /// A name for the run in the table's first column.
    #[arg(long)]
    pub label: Option<String>,
    /// Print rows only.
    #[arg(long)]
    pub no_header: bool,
}

/// `250ms`, `20s`, `2m`, or bare seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 20s, 500ms or 1m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
