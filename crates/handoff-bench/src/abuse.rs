//! `--abuse`: the server's memory while it is abused, over raw TCP. Each phase runs for
//! `--duration` while the server's resident memory is sampled every 50 ms; a row gives it before,
//! at its highest during, and after the phase (once the attackers are gone), with how the server
//! answered. The phases:
//!
//! - `slow heads`: `--slow-connections` connections each send most of a large head (16 KiB of a
//!   header value, under the 32 KiB limit) and then nothing;
//! - `slow bodies`: as many send a complete head announcing 60 KiB of body (under the 64 KiB
//!   limit), then 1 byte a second;
//! - `malformed flood`: `--agents` keep-alive connections send malformed requests back to back
//!   (broken JSON, a form that is not UTF-8, a forged token, a head over the limit, a body over
//!   the limit, a bare-LF head, conflicting lengths), each answered before the next.
//!
//! Bounded means: memory during the phase stays within a fixed amount above the baseline however
//! long it runs, memory after returns near the baseline, and no request gets a 5xx.

use crate::args::Args;
use crate::procfs;
use anyhow::{Context as _, Result, bail};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One phase's figures.
struct Row {
    phase: &'static str,
    load: String,
    before_kib: u64,
    peak_kib: u64,
    after_kib: u64,
    answers: BTreeMap<u16, u64>,
    closed_by_server: u64,
}

impl Row {
    fn header() -> &'static str {
        "| phase | load | RSS before | RSS peak during | RSS after | answers by status | closed by the server |\n\
         |---|---|---|---|---|---|---|"
    }

    fn markdown(&self) -> String {
        let answers = if self.answers.is_empty() {
            "none".to_owned()
        } else {
            self.answers
                .iter()
                .map(|(status, count)| match status {
                    0 => format!("closed unanswered: {count}"),
                    status => format!("{status}: {count}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {} |",
            self.phase,
            self.load,
            mib(self.before_kib),
            mib(self.peak_kib),
            mib(self.after_kib),
            answers,
            self.closed_by_server
        )
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs every phase against the server at `authority`; fails if any request got a 5xx.
pub async fn run(authority: &str, args: &Args) -> Result<()> {
    let Some(pid) = args.server_pid else {
        bail!("`--abuse` needs `--server-pid` to read the server's memory");
    };
    if !args.no_header {
        println!("{}", Row::header());
    }
    let slow = args.slow_connections;
    let rows = [
        phase(
            "slow heads",
            format!("{slow} connections"),
            pid,
            args,
            || slow_heads(authority, slow, args.duration),
        )
        .await?,
        phase(
            "slow bodies",
            format!("{slow} connections"),
            pid,
            args,
            || slow_bodies(authority, slow, args.duration),
        )
        .await?,
        phase(
            "malformed flood",
            format!("{} connections", args.agents),
            pid,
            args,
            || flood(authority, args.agents, args.duration),
        )
        .await?,
    ];
    let server_errors: u64 = rows
        .iter()
        .flat_map(|row| row.answers.iter())
        .filter(|(status, _)| **status >= 500)
        .map(|(_, count)| count)
        .sum();
    if server_errors > 0 {
        bail!("{server_errors} request(s) got a 5xx");
    }
    Ok(())
}

/// What a phase's attack reports back.
#[derive(Default)]
struct Outcome {
    answers: BTreeMap<u16, u64>,
    closed_by_server: u64,
    load: Option<String>,
}

async fn phase<F, Fut>(
    name: &'static str,
    load: String,
    pid: u32,
    args: &Args,
    attack: F,
) -> Result<Row>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Outcome>>,
{
    let before = procfs::sample(Some(pid))?.rss_kib;
    let running = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (running, peak) = (running.clone(), peak.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                if let Ok(now) = procfs::sample(Some(pid)) {
                    peak.fetch_max(now.rss_kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let outcome = attack().await;
    running.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let outcome = outcome?;
    // Memory once the attackers are gone and the server has had a moment to drop what it held.
    tokio::time::sleep(args.warmup.max(Duration::from_secs(1))).await;
    let after = procfs::sample(Some(pid))?.rss_kib;
    Ok(print(Row {
        phase: name,
        load: outcome.load.unwrap_or(load),
        before_kib: before,
        peak_kib: peak.load(Ordering::Relaxed),
        after_kib: after,
        answers: outcome.answers,
        closed_by_server: outcome.closed_by_server,
    }))
}

fn print(row: Row) -> Row {
    println!("{}", row.markdown());
    row
}

/// Opens `count` connections (one at a time, so the accept backlog is not the limit measured).
async fn open(authority: &str, count: usize) -> Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let stream = TcpStream::connect(authority)
            .await
            .with_context(|| format!("cannot connect to {authority}"))?;
        streams.push(stream);
    }
    Ok(streams)
}

/// Holds each connection until `until`, reading whatever the server answers; counts a connection
/// the server closed, and the status it answered with, if any.
async fn hold<R: AsyncRead + Unpin>(mut stream: R, until: Instant) -> (Option<u16>, bool) {
    let mut buffer = vec![0u8; 4096];
    let mut seen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (status_of(&seen), false);
        }
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return (status_of(&seen), false),
            Ok(Ok(0) | Err(_)) => return (status_of(&seen), true),
            Ok(Ok(n)) => seen.extend_from_slice(buffer.get(..n).unwrap_or_default()),
        }
    }
}

fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..bytes.len().min(12))?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

async fn slow_heads(authority: &str, count: usize, duration: Duration) -> Result<Outcome> {
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nhost: x\r\nx-pad: {}",
        "a".repeat(16 * 1024)
    );
    let streams = open(authority, count).await?;
    let until = Instant::now() + duration;
    let mut held = Vec::with_capacity(count);
    for mut stream in streams {
        // A write the server refuses (it already closed) still counts below as closed.
        let _ = stream.write_all(head.as_bytes()).await;
        held.push(tokio::spawn(hold(stream, until)));
    }
    collect(held).await
}

async fn slow_bodies(authority: &str, count: usize, duration: Duration) -> Result<Outcome> {
    let head = "POST /v1/tasks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 61440\r\n\r\n{";
    let streams = open(authority, count).await?;
    let until = Instant::now() + duration;
    let mut held = Vec::with_capacity(count);
    for mut stream in streams {
        let _ = stream.write_all(head.as_bytes()).await;
        held.push(tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let trickle = tokio::spawn(async move {
                while Instant::now() < until {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if write.write_all(b" ").await.is_err() {
                        break;
                    }
                }
            });
            let outcome = hold(read, until).await;
            trickle.abort();
            outcome
        }));
    }
    collect(held).await
}

async fn collect(held: Vec<tokio::task::JoinHandle<(Option<u16>, bool)>>) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    for handle in held {
        let (status, closed) = handle.await.context("a held connection panicked")?;
        if let Some(status) = status {
            *outcome.answers.entry(status).or_default() += 1;
        }
        outcome.closed_by_server += u64::from(closed);
    }
    Ok(outcome)
}

/// The malformed requests of the flood, sent in turn. Each ends with `connection: close` or is
/// one the server closes after, so every request gets its own connection.
fn malformed() -> Vec<Vec<u8>> {
    let form = |body: &[u8]| {
        let mut request = format!(
            "POST /oauth/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    };
    let json = |path: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             authorization: Bearer eyJhbGciOiJub25lIn0.e30.\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    vec![
        json("/v1/tasks", "{\"intent\": \"x\", \"plan\": [\"git\""),
        json("/v1/tasks", &nested),
        json("/v1/delegations", "{\"a\":1,\"a\":2}"),
        form(b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&resource=%FF"),
        form(b"grant_type=x&grant_type=y&subject_token=a.b.c"),
        format!(
            "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-pad: {}\r\n\r\n",
            "b".repeat(40 * 1024)
        )
        .into_bytes(),
        b"POST /v1/tasks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\nconnection: close\r\n\r\n"
            .to_vec(),
        b"GET /healthz HTTP/1.1\nhost: x\nconnection: close\n\n".to_vec(),
        b"POST /v1/tasks HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n"
            .to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n".to_vec(),
    ]
}

async fn flood(authority: &str, connections: usize, duration: Duration) -> Result<Outcome> {
    let requests = Arc::new(malformed());
    let until = Instant::now() + duration;
    let mut workers = Vec::with_capacity(connections);
    for worker in 0..connections {
        let (requests, authority) = (requests.clone(), authority.to_owned());
        workers.push(tokio::spawn(async move {
            let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
            let mut sent = 0u64;
            let mut next = worker;
            while Instant::now() < until {
                let Some(request) = requests.get(next % requests.len()) else {
                    break;
                };
                next += 1;
                let Ok(mut stream) = TcpStream::connect(&authority).await else {
                    continue;
                };
                sent += 1;
                if stream.write_all(request).await.is_err() {
                    continue;
                }
                let mut answer = Vec::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer))
                        .await;
                let status = match read {
                    Ok(_) => status_of(&answer).unwrap_or(0),
                    Err(_) => 0,
                };
                *answers.entry(status).or_default() += 1;
            }
            (answers, sent)
        }));
    }
    let mut outcome = Outcome::default();
    let mut sent = 0;
    for worker in workers {
        let (answers, count) = worker.await.context("a flood worker panicked")?;
        sent += count;
        for (status, count) in answers {
            *outcome.answers.entry(status).or_default() += count;
        }
    }
    outcome.load = Some(format!(
        "{connections} connections, {sent} requests in {:.0} s",
        duration.as_secs_f64()
    ));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn the_status_is_read_from_the_first_line() {
        assert_eq!(
            status_of(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            Some(431)
        );
        assert_eq!(status_of(b"HTTP/1.1 2"), None);
        assert_eq!(status_of(b""), None);
    }
}
