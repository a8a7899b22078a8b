//! A load generator for a running Handoff server: N agents over keep-alive HTTP, closed or open
//! loop, with latency percentiles and the server's CPU and memory per exchange.

mod abuse;
mod args;
mod client;
mod driver;
mod identity;
mod mix;
mod procfs;
mod report;
mod upstream;

pub use args::{Args, Mode};

use anyhow::{Context as _, Result, bail};
use client::Connection;
use driver::Agent;
use mix::Workload;

/// Runs what `args` asks for: optionally pre-opens tasks, then one measured run.
pub fn run(args: &Args) -> Result<()> {
    if let Some(address) = &args.serve_upstream {
        return upstream::serve(address);
    }
    if args.agents == 0 {
        bail!("`--agents` must be at least 1");
    }
    if args.mode == Mode::Open && args.rate.unwrap_or(0) == 0 {
        bail!("`--mode open` needs `--rate N` (requests per second, N > 0)");
    }
    let authority = client::authority(&args.url)?;
    if args.abuse {
        return runtime(args)?.block_on(abuse::run(&authority, args));
    }
    let needs_identities = !args.floor || args.tasks > 0;
    let identities = if needs_identities {
        identity::issue_all(args)?
    } else {
        vec![String::new(); args.agents]
    };
    let runtime = runtime(args)?;
    let floor = std::sync::Arc::new(driver::Floor {
        path: args.floor_path.clone(),
        bearer: args.floor_bearer.clone(),
        body: match &args.floor_body {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("cannot read `{}`", path.display()))?
                    .into(),
            ),
            None => None,
        },
        headers: args
            .floor_header
            .iter()
            .map(|text| client::header(text))
            .collect::<Result<_>>()?,
    });
    runtime.block_on(async {
        let agents: Vec<Agent> = identities
            .into_iter()
            .enumerate()
            .map(|(index, identity)| Agent {
                connection: Connection::new(authority.clone()),
                workload: Workload::new(identity, index, args.exchanges_per_task),
                floor: floor.clone(),
            })
            .collect();
        let mut printed_header = args.no_header;
        let mut print = |row: report::Row| {
            if !printed_header {
                println!("{}", report::Row::header());
                printed_header = true;
            }
            println!("{}", row.markdown());
        };
        let agents = if args.tasks > 0 {
            let (agents, row) = driver::preopen(agents, args).await?;
            print(row);
            agents
        } else {
            agents
        };
        if !args.duration.is_zero() {
            let row = match args.mode {
                Mode::Closed => driver::closed(agents, args).await?,
                Mode::Open => driver::open(agents, args).await?,
            };
            print(row);
        }
        Ok(())
    })
}

fn runtime(args: &Args) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the client runtime")
}
