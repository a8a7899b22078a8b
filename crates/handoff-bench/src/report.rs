//! What a run measured, and its markdown table row.

use crate::procfs::Sample;
use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// How one request ended.
pub enum Outcome {
    /// 200 where the step expected a permit.
    Permit,
    /// 403 where the step expected a deny.
    Deny,
    /// A task was opened (201).
    Opened,
    /// `GET /healthz` answered 200.
    Floor,
    /// Anything else: an unexpected status, or no answer at all.
    Error(String),
}

/// Latencies (microseconds) and counts of one agent or of a whole run.
pub struct Stats {
    /// Exchanges (or `/healthz` requests for the floor).
    pub latency: Histogram<u64>,
    /// Task opens.
    pub open_latency: Histogram<u64>,
    pub permits: u64,
    pub denies: u64,
    pub opens: u64,
    pub floor: u64,
    pub errors: u64,
    /// Error kinds with a count, for the report on stderr.
    pub error_kinds: BTreeMap<String, u64>,
    /// Latency by step (`git push`, `open task`, ...), for the report on stderr.
    pub by_step: BTreeMap<&'static str, Histogram<u64>>,
}

fn histogram() -> Result<Histogram<u64>> {
    // 1 µs to 100 s, three significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).context("histogram bounds")
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Stats {
    pub fn new() -> Result<Self> {
        Ok(Self {
            latency: histogram()?,
            open_latency: histogram()?,
            permits: 0,
            denies: 0,
            opens: 0,
            floor: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            by_step: BTreeMap::new(),
        })
    }

    pub fn record(&mut self, outcome: Outcome, step: &'static str, elapsed: Duration) {
        let us = micros(elapsed);
        if !matches!(outcome, Outcome::Error(_)) {
            if let Some(histogram) = self.by_step.get_mut(step) {
                histogram.saturating_record(us);
            } else if let Ok(mut histogram) = histogram() {
                histogram.saturating_record(us);
                self.by_step.insert(step, histogram);
            }
        }
        match outcome {
            Outcome::Permit => {
                self.permits += 1;
                self.latency.saturating_record(us);
            }
            Outcome::Deny => {
                self.denies += 1;
                self.latency.saturating_record(us);
            }
            Outcome::Floor => {
                self.floor += 1;
                self.latency.saturating_record(us);
            }
            Outcome::Opened => {
                self.opens += 1;
                self.open_latency.saturating_record(us);
            }
            Outcome::Error(kind) => {
                self.errors += 1;
                *self.error_kinds.entry(kind).or_default() += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &Self) -> Result<()> {
        self.latency
            .add(&other.latency)
            .context("merging latencies")?;
        self.open_latency
            .add(&other.open_latency)
            .context("merging latencies")?;
        self.permits += other.permits;
        self.denies += other.denies;
        self.opens += other.opens;
        self.floor += other.floor;
        self.errors += other.errors;
        for (kind, count) in &other.error_kinds {
            *self.error_kinds.entry(kind.clone()).or_default() += count;
        }
        for (step, histogram) in &other.by_step {
            match self.by_step.get_mut(step) {
                Some(mine) => mine.add(histogram).context("merging latencies")?,
                None => {
                    self.by_step.insert(step, histogram.clone());
                }
            }
        }
        Ok(())
    }

    /// Exchanges (permits and denies).
    pub fn exchanges(&self) -> u64 {
        self.permits + self.denies
    }

    /// Every answered request (opens and errors included).
    pub fn requests(&self) -> u64 {
        self.exchanges() + self.opens + self.floor + self.errors
    }
}

/// Process samples at the start and end of the measured window.
pub struct Window {
    /// Wall time from the window's start to its last answer.
    pub seconds: f64,
    pub server: Option<(Sample, Sample)>,
    pub client: (Sample, Sample),
    /// Busy CPU seconds of the whole machine at the start and end.
    pub machine: (f64, f64),
}

/// One line of the results table.
pub struct Row {
    pub label: String,
    pub mode: String,
    pub agents: usize,
    pub rate: Option<u64>,
    pub stats: Stats,
    pub window: Window,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

impl Row {
    pub fn header() -> String {
        let columns = [
            "run",
            "mode",
            "agents",
            "target/s",
            "secs",
            "ops/s",
            "opens/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "permits",
            "denies",
            "errors",
            "srv CPU µs/req",
            "srv CPU s/10k ops",
            "srv cores",
            "client CPU µs/req",
            "other cores",
            "RSS MiB",
            "peak RSS MiB",
        ];
        let mut text = format!("| {} |\n|", columns.join(" | "));
        for _ in columns {
            text.push_str("---|");
        }
        text
    }

    pub fn markdown(&self) -> String {
        let stats = &self.stats;
        let seconds = self.window.seconds.max(f64::EPSILON);
        // "ops" are what the run measures: exchanges, `/healthz` requests, or task opens.
        let (latency, ops) = if self.mode == "open-tasks" {
            (&stats.open_latency, stats.opens)
        } else {
            (&stats.latency, stats.exchanges() + stats.floor)
        };
        let requests = stats.requests().max(1) as f64;
        let (client_start, client_end) = self.window.client;
        let client_us = (client_end.cpu_seconds - client_start.cpu_seconds) * 1e6 / requests;

        let client_cpu = client_end.cpu_seconds - client_start.cpu_seconds;
        let machine = self.window.machine.1 - self.window.machine.0;
        let server_cpu = self
            .window
            .server
            .map_or(0.0, |(start, end)| end.cpu_seconds - start.cpu_seconds);
        // Cores used by everything else on the machine meanwhile (another build, say).
        let others = ((machine - client_cpu - server_cpu) / seconds).max(0.0);
        let (server_us, server_10k, cores, rss, peak) = match self.window.server {
            Some((_, end)) => {
                let cpu = server_cpu;
                (
                    format!("{:.1}", cpu * 1e6 / requests),
                    format!("{:.2}", cpu * 10_000.0 / (ops.max(1) as f64)),
                    format!("{:.2}", cpu / seconds),
                    format!("{:.1}", end.rss_kib as f64 / 1024.0),
                    format!("{:.1}", end.peak_kib as f64 / 1024.0),
                )
            }
            None => (
                "n/a".to_owned(),
                "n/a".to_owned(),
                "n/a".to_owned(),
                "n/a".to_owned(),
                "n/a".to_owned(),
            ),
        };
        let mut row = String::new();
        let _ = write!(
            row,
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.2} | {} | {} |",
            self.label,
            self.mode,
            self.agents,
            self.rate
                .map_or_else(|| "max".to_owned(), |r| r.to_string()),
            seconds,
            ops as f64 / seconds,
            stats.opens as f64 / seconds,
            ms(latency.value_at_quantile(0.50)),
            ms(latency.value_at_quantile(0.90)),
            ms(latency.value_at_quantile(0.99)),
            ms(latency.value_at_quantile(0.999)),
            ms(latency.max()),
            stats.permits,
            stats.denies,
            stats.errors,
            server_us,
            server_10k,
            cores,
            client_us,
            others,
            rss,
            peak,
        );
        row
    }

    /// Details that do not fit the table: task-open latency and error kinds.
    pub fn details(&self) -> String {
        let open = &self.stats.open_latency;
        let mut text = format!(
            "{}: {} task opens, open latency p50 {} ms, p99 {} ms, max {} ms",
            self.label,
            self.stats.opens,
            ms(open.value_at_quantile(0.5)),
            ms(open.value_at_quantile(0.99)),
            ms(open.max()),
        );
        for (step, latency) in &self.stats.by_step {
            let _ = write!(
                text,
                "\n  {step:<20} n={:<8} p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
                latency.len(),
                ms(latency.value_at_quantile(0.5)),
                ms(latency.value_at_quantile(0.9)),
                ms(latency.value_at_quantile(0.99)),
                ms(latency.max()),
            );
        }
        for (kind, count) in &self.stats.error_kinds {
            let _ = write!(text, "\n  error x{count}: {kind}");
        }
        text
    }
}
