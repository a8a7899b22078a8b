//! `handoff audit verify`: walk the hash chain from the first record to the last.

use crate::data_dir::DataDir;
use crate::{DataArgs, EXIT_AUDIT_BROKEN};
use handoff_core::audit::ChainVerifier;
use handoff_core::store::Store;
use std::process::ExitCode;

const PAGE: usize = 1000;

pub fn verify(data: &DataArgs) -> anyhow::Result<ExitCode> {
    let dir = DataDir::existing(&data.data_dir)?;
    let store = dir.store()?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let mut verifier = ChainVerifier::default();
        let mut after = 0;
        loop {
            let page = store.audit_page(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in &page {
                if let Err(broken) = verifier.check(record) {
                    println!("audit chain BROKEN: {broken}");
                    println!("{} record(s) before it verified", verifier.checked());
                    return Ok(ExitCode::from(EXIT_AUDIT_BROKEN));
                }
            }
        }
        println!(
            "audit chain intact: {} record(s), head {}",
            verifier.checked(),
            verifier.head()
        );
        Ok(ExitCode::SUCCESS)
    })
}
