//! `handoff audit replay SEQ`: decide a recorded decision again, offline on the data directory
//! (or `--store URL`), under the policy set its record names, and show the recorded and the
//! replayed decision with their determining policies (core's `replay`). Exit 0 when they agree,
//! [`EXIT_REPLAY_DIFFERS`] when they differ, [`EXIT_CANNOT_REPLAY`] (with the reason) when the
//! record cannot be decided again.

use crate::data_dir::DataDir;
use crate::{DataArgs, DeploymentArgs};
use handoff_core::replay::{Replay, Replayer};
use std::process::ExitCode;

/// The replayed decision differs from the recorded one.
pub const EXIT_REPLAY_DIFFERS: u8 = 1;
/// The record cannot be decided again (not a decision, no such record, its policy set not kept, ...).
pub const EXIT_CANNOT_REPLAY: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The record's sequence number (`handoff audit query` shows them).
    pub seq: u64,
    #[command(flatten)]
    pub deployment: DeploymentArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: crate::StoreArg,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let deployment = match super::load_or_report(&args.deployment) {
        Ok(deployment) => deployment,
        Err(code) => return Ok(code),
    };
    let dir = DataDir::for_store(&args.data.data_dir, args.store.store.as_deref())?;
    let outcome = super::runtime()?.block_on(async {
        let store = crate::shared_store::open_store(&dir, args.store.store.as_deref()).await?;
        let mut replayer = Replayer::pinned(&deployment.config, store.as_ref());
        anyhow::Ok(replayer.replay_seq(args.seq).await)
    })?;
    match outcome {
        Ok(replay) => {
            print(&replay, args.json);
            Ok(if replay.agrees() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REPLAY_DIFFERS)
            })
        }
        Err(cannot) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "seq": args.seq,
                        "cannot_replay": { "cause": cannot.cause(), "reason": cannot.to_string() },
                    })
                );
            }
            eprintln!("cannot replay: {cannot}");
            Ok(ExitCode::from(EXIT_CANNOT_REPLAY))
        }
    }
}

fn print(replay: &Replay, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "seq": replay.seq,
                "policy_set": replay.policy_set,
                "recorded": replay.recorded,
                "replayed": replay.replayed,
                "agrees": replay.agrees(),
            })
        );
        return;
    }
    println!(
        "record {} under policy set {}",
        replay.seq, replay.policy_set
    );
    println!("  recorded: {}", replay.recorded.describe());
    println!("  replayed: {}", replay.replayed.describe());
    if replay.agrees() {
        println!("the replay agrees with the record");
    } else {
        println!("the replay DIFFERS from the record");
    }
}
