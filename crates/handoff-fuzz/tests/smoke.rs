//! The fuzz smoke CI runs (stable, no libFuzzer): every target gets each committed seed and
//! regression input, then deterministic pseudo-random mutations of its seeds (bit flips,
//! interesting bytes, truncations, deletions, duplications, splices), so a parser change that
//! panics or breaks an invariant on nearby inputs fails `scripts/test`. Real fuzzing is
//! `cargo +nightly fuzz run` (docs/fuzzing.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use handoff_fuzz::{TARGETS, Target};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>`, sorted, or none when the folder is absent.
fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = format!(
                "{kind}/{target}/{}",
                p.file_name().unwrap().to_string_lossy()
            );
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// SplitMix64: small, fast, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Bytes parsers give meaning to.
const INTERESTING: &[u8] = b"\0\xff\x7f\n\r\t \"\\{}[]:,./%=&+-0129eE.{}!#'_";

fn mutate(rng: &mut Rng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].1.clone();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => data.truncate(rng.below(len + 1)),
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                data.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                let chunk = data[at..end].to_vec();
                let tail = data.split_off(rng.below(len + 1));
                data.extend(chunk);
                data.extend(tail);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())].1;
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = rng.below(len + 1);
                data.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
            }
        }
    }
    data
}

fn run_one(target: &Target, origin: &str, data: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| (target.run)(data))).is_err() {
        panic!(
            "fuzz target `{}` failed on {origin}; input as a Rust byte string:\n{:?}\n\
             save it under fuzz/regressions/{}/ and see docs/fuzzing.md",
            target.name,
            String::from_utf8_lossy(data),
            target.name,
        );
    }
}

/// Seeds, regressions, then `mutations` mutations of the seeds.
fn smoke(name: &str, mutations: usize) {
    let target = TARGETS
        .iter()
        .find(|t| t.name == name)
        .expect("a known target");
    let seeds = inputs("corpus", name);
    assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
    for (origin, data) in seeds.iter().chain(&inputs("regressions", name)) {
        run_one(target, origin, data);
    }
    // One fixed seed per target, so every run mutates the same way.
    let mut rng = Rng(name
        .bytes()
        .fold(0xC0FF_EE00, |h, b| h.wrapping_mul(31) ^ u64::from(b)));
    for n in 0..mutations {
        let data = mutate(&mut rng, &seeds);
        run_one(target, &format!("mutation {n}"), &data);
    }
}

macro_rules! smoke_tests {
    ($($target:ident: $mutations:expr,)*) => {
        $(
            #[test]
            fn $target() {
                smoke(stringify!($target), $mutations);
            }
        )*

        #[test]
        fn every_target_has_a_smoke_test() {
            let tested = [$(stringify!($target)),*];
            for target in TARGETS {
                assert!(tested.contains(&target.name), "no smoke test for `{}`", target.name);
            }
        }
    };
}

// Mutation counts keep the whole smoke to a few seconds in a debug build; the loaders are the
// costly ones (each config load also validates the example's policies).
smoke_tests! {
    token_verify: 1500,
    exchange_form: 3000,
    json_body: 3000,
    config_load: 150,
    policy_load: 400,
    audit_record: 2000,
    approval_hash: 3000,
    gateway_path: 3000,
    sse_reader: 2000,
    authorization_header: 3000,
}

#[test]
fn the_token_seeds_are_real_tokens() {
    // Each committed token seed verifies, so the target reaches past the signature check. After
    // a change of the token format, `HANDOFF_REGENERATE_TOKEN_SEEDS=1` rewrites them first.
    let regenerate = std::env::var("HANDOFF_REGENERATE_TOKEN_SEEDS").as_deref() == Ok("1");
    for (name, token) in handoff_fuzz::seed_tokens() {
        let path = fuzz_dir().join("corpus/token_verify").join(name);
        if regenerate {
            std::fs::write(&path, token).unwrap();
        }
        let token = std::fs::read_to_string(&path).unwrap();
        assert!(
            handoff_fuzz::token_seed_verifies(name, &token),
            "{} does not verify (HANDOFF_REGENERATE_TOKEN_SEEDS=1 rewrites the seeds)",
            path.display()
        );
    }
}
