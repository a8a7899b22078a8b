//! The runs: closed loop (as fast as answers come), open loop (a fixed timetable, latency from the
//! intended send time), and pre-opening tasks.

use crate::args::Args;
use crate::client::{Body, Connection};
use crate::mix::{Expect, Op, Workload};
use crate::procfs::{self, Sample};
use crate::report::{Outcome, Row, Stats, Window};
use anyhow::{Context as _, Result, anyhow};
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long answers still in flight may take after an open-loop timetable ends.
const DRAIN: Duration = Duration::from_secs(60);

/// One simulated agent: an identity, its tasks, and its own keep-alive connection.
pub struct Agent {
    pub connection: Connection,
    pub workload: Workload,
    /// What `--floor` requests.
    pub floor: Arc<Floor>,
}

/// The one fixed request `--floor` repeats: `GET path`, or a POST of a JSON body, with an
/// optional bearer token and further headers.
pub struct Floor {
    pub path: String,
    pub bearer: Option<String>,
    pub body: Option<Bytes>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Agent {
    async fn step(&mut self, floor: bool) -> (Outcome, &'static str) {
        if floor {
            let floor = &*self.floor;
            let path = floor.path.as_str();
            let (method, body) = match &floor.body {
                Some(bytes) => (
                    Method::POST,
                    Body {
                        content_type: Some("application/json"),
                        bearer: floor.bearer.as_deref(),
                        bytes: bytes.clone(),
                        headers: &floor.headers,
                    },
                ),
                None => (
                    Method::GET,
                    Body {
                        bearer: floor.bearer.as_deref(),
                        headers: &floor.headers,
                        ..Body::empty()
                    },
                ),
            };
            let outcome = match self.connection.send(method, path, body).await {
                Ok((StatusCode::OK, _)) => Outcome::Floor,
                Ok((status, _)) => Outcome::Error(format!("{path} answered {status}")),
                Err(e) => Outcome::Error(format!("{path}: {e:#}")),
            };
            return (outcome, "floor");
        }
        match self.workload.next() {
            Op::Open(body) => (self.open(body).await, "open task"),
            Op::Exchange(body, expect, name) => (self.exchange(body, expect).await, name),
        }
    }

    async fn open(&mut self, body: Bytes) -> Outcome {
        let body = Body {
            content_type: Some("application/json"),
            bearer: Some(self.workload.identity()),
            bytes: body,
            headers: &[],
        };
        match self.connection.send(Method::POST, "/v1/tasks", body).await {
            Ok((StatusCode::CREATED, answer)) => match self.workload.opened(&answer) {
                Ok(()) => Outcome::Opened,
                Err(e) => Outcome::Error(format!("open: {e:#}")),
            },
            Ok((status, answer)) => {
                Outcome::Error(format!("open answered {status} {}", describe(&answer)))
            }
            Err(e) => Outcome::Error(format!("open: {e:#}")),
        }
    }

    async fn exchange(&mut self, body: Bytes, expect: Expect) -> Outcome {
        let body = Body {
            content_type: Some("application/x-www-form-urlencoded"),
            bearer: None,
            bytes: body,
            headers: &[],
        };
        match self
            .connection
            .send(Method::POST, "/oauth/token", body)
            .await
        {
            Ok((StatusCode::OK, _)) if expect == Expect::Permit => Outcome::Permit,
            Ok((StatusCode::FORBIDDEN, _)) if expect == Expect::Deny => Outcome::Deny,
            Ok((status, answer)) => {
                // The task may be spent or ended: carry on with a fresh one.
                self.workload.forget_task();
                Outcome::Error(format!(
                    "exchange expected {expect:?}, answered {status} {}",
                    describe(&answer)
                ))
            }
            Err(e) => Outcome::Error(format!("exchange: {e:#}")),
        }
    }
}

/// The error code and reason of an error answer (not its decision id, so kinds group together).
fn describe(answer: &[u8]) -> String {
    match serde_json::from_slice::<Value>(answer) {
        Ok(json) => {
            let field = |name: &str| {
                json.get(name)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            format!("{} {}", field("error"), field("reason"))
        }
        Err(_) => String::from_utf8_lossy(answer).chars().take(80).collect(),
    }
}

fn label(args: &Args, default: &str) -> String {
    args.label.clone().unwrap_or_else(|| default.to_owned())
}

fn what(args: &Args) -> &'static str {
    if args.floor { "floor" } else { "exchange" }
}

/// The server, this process and the whole machine, at one instant.
struct Samples {
    server: Option<Sample>,
    client: Sample,
    machine: f64,
}

fn samples(args: &Args) -> Result<Samples> {
    Ok(Samples {
        server: args
            .server_pid
            .map(|pid| procfs::sample(Some(pid)))
            .transpose()?,
        client: procfs::sample(None)?,
        machine: procfs::machine_busy_seconds()?,
    })
}

fn window(seconds: f64, start: Samples, end: Samples) -> Window {
    Window {
        seconds,
        server: start.server.zip(end.server),
        client: (start.client, end.client),
        machine: (start.machine, end.machine),
    }
}

async fn gather<T>(handles: Vec<JoinHandle<Result<(T, Stats)>>>) -> Result<(Vec<T>, Stats)> {
    let mut total = Stats::new()?;
    let mut items = Vec::with_capacity(handles.len());
    for handle in handles {
        let (item, stats) = handle.await.context("an agent task failed")??;
        total.merge(&stats)?;
        items.push(item);
    }
    Ok((items, total))
}

fn print_details(row: &Row) {
    eprintln!("{}", row.details());
}

/// Every agent sends its next request as soon as the previous is answered.
pub async fn closed(agents: Vec<Agent>, args: &Args) -> Result<Row> {
    let recording = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let floor = args.floor;
    let count = agents.len();
    let handles = agents
        .into_iter()
        .map(|mut agent| {
            let recording = recording.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut stats = Stats::new()?;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let (outcome, step) = agent.step(floor).await;
                    if recording.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                        stats.record(outcome, step, sent.elapsed());
                    }
                }
                Ok(((), stats))
            })
        })
        .collect();
    tokio::time::sleep(args.warmup).await;
    let start = samples(args)?;
    let began = Instant::now();
    recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(args.duration).await;
    stop.store(true, Ordering::Relaxed);
    let seconds = began.elapsed().as_secs_f64();
    let end = samples(args)?;
    let (_, stats) = gather(handles).await?;
    let row = Row {
        label: label(args, what(args)),
        mode: "closed".to_owned(),
        agents: count,
        rate: None,
        stats,
        window: window(seconds, start, end),
    };
    print_details(&row);
    Ok(row)
}

/// Requests on a fixed timetable of `--rate` per second, dealt round-robin to the agents. Each
/// latency runs from the slot's intended send time, so an agent still waiting on a slow answer
/// makes its next slots late, and that lateness is counted (no coordinated omission).
pub async fn open(agents: Vec<Agent>, args: &Args) -> Result<Row> {
    let rate = args.rate.unwrap_or(1).max(1);
    let floor = args.floor;
    let count = agents.len();
    let begin = Instant::now() + Duration::from_millis(20);
    let measured_from = begin + args.warmup;
    let until = measured_from + args.duration;
    let mut senders = Vec::with_capacity(count);
    let mut handles = Vec::with_capacity(count);
    for mut agent in agents {
        let (sender, mut slots) = mpsc::unbounded_channel::<Instant>();
        senders.push(sender);
        handles.push(tokio::spawn(async move {
            let mut stats = Stats::new()?;
            while let Some(intended) = slots.recv().await {
                let (outcome, step) = agent.step(floor).await;
                if intended >= measured_from {
                    stats.record(outcome, step, intended.elapsed());
                }
            }
            Ok(((), stats))
        }));
    }
    let timetable = std::thread::Builder::new()
        .name("timetable".to_owned())
        .spawn(move || timetable(&senders, begin, rate, until))
        .context("cannot start the timetable thread")?;
    tokio::time::sleep_until(measured_from.into()).await;
    let start = samples(args)?;
    tokio::time::sleep_until(until.into()).await;
    let slots = tokio::task::spawn_blocking(move || timetable.join())
        .await?
        .map_err(|_| anyhow!("the timetable thread failed"))?;
    let (_, stats) = tokio::time::timeout(DRAIN, gather(handles))
        .await
        .context("answers still missing long after the timetable ended")??;
    let seconds = measured_from.elapsed().as_secs_f64();
    let end = samples(args)?;
    let row = Row {
        label: label(args, what(args)),
        mode: "open".to_owned(),
        agents: count,
        rate: Some(rate),
        stats,
        window: window(seconds, start, end),
    };
    eprintln!("{}: {slots} slots scheduled (warm-up included)", row.label);
    print_details(&row);
    Ok(row)
}

/// Hands out slots at their intended times until `until`; returns how many. A thread that
/// sleeps (rather than Tokio's millisecond timer) keeps the slots within tens of microseconds.
fn timetable(
    senders: &[mpsc::UnboundedSender<Instant>],
    begin: Instant,
    rate: u64,
    until: Instant,
) -> u64 {
    let interval_ns = 1e9 / rate as f64;
    let mut slot: u64 = 0;
    loop {
        let intended = begin + Duration::from_nanos((slot as f64 * interval_ns) as u64);
        if intended >= until {
            return slot;
        }
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        let agent = usize::try_from(slot).unwrap_or(0) % senders.len().max(1);
        if let Some(sender) = senders.get(agent) {
            let _ = sender.send(intended);
        }
        slot += 1;
    }
}

/// Opens `--tasks` tasks over all agents as fast as they are answered, then reads the server's
/// memory: tasks live in the store, so memory should not grow with them.
pub async fn preopen(agents: Vec<Agent>, args: &Args) -> Result<(Vec<Agent>, Row)> {
    let count = agents.len();
    let each = args.tasks / count as u64;
    let extra = args.tasks % count as u64;
    let start = samples(args)?;
    let began = Instant::now();
    let handles = agents
        .into_iter()
        .enumerate()
        .map(|(index, mut agent)| {
            let tasks = each + u64::from((index as u64) < extra);
            tokio::spawn(async move {
                let mut stats = Stats::new()?;
                for _ in 0..tasks {
                    let sent = Instant::now();
                    let body = agent.workload.open_body();
                    let outcome = agent.open(body).await;
                    stats.record(outcome, "open task", sent.elapsed());
                }
                Ok((agent, stats))
            })
        })
        .collect();
    let (agents, stats) = gather(handles).await?;
    let seconds = began.elapsed().as_secs_f64();
    let end = samples(args)?;
    let row = Row {
        label: label(args, &format!("{} tasks", args.tasks)),
        mode: "open-tasks".to_owned(),
        agents: count,
        rate: None,
        stats,
        window: window(seconds, start, end),
    };
    print_details(&row);
    Ok((agents, row))
}
